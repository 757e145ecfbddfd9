//! One connection under the listener's deadlines: where it is between its requests,
//! the header and idle timeouts its reads are held to, and the problem answers its
//! writes put in place of hyper's bare ones.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use axum::http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use crate::problem::Problem;

use super::ConnectionLimits;

/// How much of a request's head is kept, to name the header hyper could not parse.
const HEAD_KEPT: usize = 8 * 1024;

/// Where a connection is between its requests, which decides the deadline it reads under.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// No request in flight and none begun, since this instant; `first` until the
    /// connection's first request (whose head is held to the header timeout from the
    /// opening).
    Waiting { since: Instant, first: bool },
    /// A head is arriving, since its first byte (or the opening, for the first request).
    Head { since: Instant },
    /// This many requests are in the service; no deadline of the listener's applies.
    Busy(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    Idle,
    Header,
}

pub(super) struct ConnState {
    inner: Mutex<Shared>,
}

/// What the reader, the writer and the service of one connection share.
struct Shared {
    phase: Phase,
    /// The task reading the connection, woken when the phase moves to a new deadline.
    reader: Option<Waker>,
    /// The start of the head being read and not yet in the service, to name a header
    /// hyper could not parse.
    head: Vec<u8>,
    /// A response's body ended but its last bytes may not be flushed yet: until they are,
    /// what is written is the response's, never an answer of hyper's own.
    finishing: bool,
}

impl ConnState {
    pub(super) fn new() -> Self {
        Self {
            inner: Mutex::new(Shared {
                phase: Phase::Waiting {
                    since: Instant::now(),
                    first: true,
                },
                reader: None,
                head: Vec::new(),
                finishing: false,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Bytes arrived: a head begins if none was under way, and its start is kept. Bytes
    /// that arrive while a request is in the service (its body, or a pipelined request)
    /// are not: hyper reads them as it will.
    fn bytes_arrived(&self, bytes: &[u8]) {
        let mut inner = self.lock();
        match inner.phase {
            Phase::Waiting { since, first } => {
                inner.phase = Phase::Head {
                    since: if first { since } else { Instant::now() },
                };
                inner.head.clear();
            }
            Phase::Head { .. } => {}
            Phase::Busy(_) => return,
        }
        let room = HEAD_KEPT.saturating_sub(inner.head.len());
        inner
            .head
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    /// Every byte written so far has been flushed.
    fn flushed(&self) {
        self.lock().finishing = false;
    }

    /// The deadline the reader waits under now, if any; remembers the reader to wake.
    fn deadline(&self, reader: &Waker, timeouts: &Timeouts) -> Option<(Instant, Expiry)> {
        let mut inner = self.lock();
        if !inner.reader.as_ref().is_some_and(|w| w.will_wake(reader)) {
            inner.reader = Some(reader.clone());
        }
        match inner.phase {
            Phase::Waiting { since, first: true } | Phase::Head { since } => {
                Some((since + timeouts.header, Expiry::Header))
            }
            Phase::Waiting {
                since,
                first: false,
            } => Some((since + timeouts.idle, Expiry::Idle)),
            Phase::Busy(_) => None,
        }
    }
}

/// A request in the service, from its head to the drop of its response body.
pub(super) struct InFlight(Arc<ConnState>);

impl InFlight {
    pub(super) fn begin(state: Arc<ConnState>) -> Self {
        {
            let mut inner = state.lock();
            inner.phase = match inner.phase {
                Phase::Busy(n) => Phase::Busy(n + 1),
                Phase::Waiting { .. } | Phase::Head { .. } => Phase::Busy(1),
            };
            // The head was read whole: it names nothing any more, and may hold a token.
            inner.head = Vec::new();
        }
        Self(state)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut inner = self.0.lock();
        inner.phase = match inner.phase {
            Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
            _ => Phase::Waiting {
                since: Instant::now(),
                first: false,
            },
        };
        inner.finishing = true;
        // The reader may be parked with no deadline; it must arm the idle one.
        if let Some(reader) = inner.reader.take() {
            reader.wake();
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Timeouts {
    header: Duration,
    idle: Duration,
}

// --- The connection's bytes -------------------------------------------------------------------

/// A TCP stream under the listener's deadlines, whose reads note where the connection is
/// and whose writes put problem answers in place of hyper's bare ones.
pub(super) struct Guarded {
    inner: TcpStream,
    state: Arc<ConnState>,
    timeouts: Timeouts,
    timer: Pin<Box<Sleep>>,
    peer: SocketAddr,
    /// An answer of ours still to be written, and how much of it is.
    pending: Option<(Vec<u8>, usize)>,
}

impl Guarded {
    pub(super) fn new(
        inner: TcpStream,
        peer: SocketAddr,
        state: Arc<ConnState>,
        limits: &ConnectionLimits,
    ) -> Self {
        Self {
            inner,
            peer,
            state,
            timeouts: Timeouts {
                header: limits.header_timeout,
                idle: limits.idle_timeout,
            },
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            pending: None,
        }
    }

    /// The deadline passed: the connection ends as if the client had closed it. A head
    /// cut short is told why first (HTTP/1 only: an HTTP/2 preface gets no HTTP/1 bytes).
    fn expire(&mut self, cx: &mut Context<'_>, expiry: Expiry) -> Poll<io::Result<()>> {
        let started = {
            let inner = self.state.lock();
            !inner.head.is_empty() && !inner.head.starts_with(b"PRI ")
        };
        let reason = match expiry {
            Expiry::Header => "header_timeout",
            Expiry::Idle => "idle_timeout",
        };
        metrics::counter!("http_connections_closed_total", "reason" => reason).increment(1);
        if expiry == Expiry::Header && started {
            let seconds = self.timeouts.header.as_secs_f64();
            let problem = Problem::typed(
                StatusCode::REQUEST_TIMEOUT,
                "header-timeout",
                "Request header timeout",
                format!("the request's head did not arrive whole within {seconds} s"),
            );
            let request_id = uuid::Uuid::now_v7().to_string();
            tracing::info!(status = 408, request_id, peer = %self.peer, "answered a head that did not arrive in time");
            // Best effort: a small answer to a fresh socket is written at once.
            let answer = problem.http1_closing(&request_id);
            let _ = Pin::new(&mut self.inner).poll_write(cx, &answer);
        } else {
            tracing::debug!(reason, peer = %self.peer, "closing a connection past its deadline");
        }
        Poll::Ready(Ok(()))
    }

    /// Writes what is left of our own answer before anything else.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = &mut self.pending {
            if *written == bytes.len() {
                self.pending = None;
                break;
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        Poll::Ready(Ok(()))
    }

    /// Our answer in place of one hyper writes on its own. What is written while no
    /// request is in the service and the last response is flushed is hyper's, and its
    /// answers to an unreadable head are these statuses with an empty body.
    fn replacement(&self, written: &[u8]) -> Option<Vec<u8>> {
        if !written.starts_with(b"HTTP/1.1 4") {
            return None;
        }
        let status = written.get(9..12)?;
        if !matches!(status, b"400" | b"414" | b"431")
            || !contains(written, b"\r\ncontent-length: 0\r\n")
        {
            return None;
        }
        let problem = {
            let inner = self.state.lock();
            if matches!(inner.phase, Phase::Busy(_)) || inner.finishing {
                return None;
            }
            unreadable_head(status, &inner.head)
        };
        let request_id = uuid::Uuid::now_v7().to_string();
        tracing::info!(status = problem.status, request_id, peer = %self.peer, "answered a head that could not be read");
        Some(problem.http1_closing(&request_id))
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The problem answer to a head hyper refused, naming what was wrong with it.
fn unreadable_head(status: &[u8], head: &[u8]) -> Problem {
    match status {
        b"431" => Problem::typed(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "header-too-large",
            "Request header too large",
            "the request's header section is larger than this service reads",
        ),
        b"414" => Problem::typed(
            StatusCode::URI_TOO_LONG,
            "uri-too-long",
            "URI too long",
            "the request's target is longer than this service reads",
        ),
        _ => match malformed_line(head) {
            Malformed::Header(name) if name.eq_ignore_ascii_case("authorization") => {
                crate::auth::unreadable_authorization()
            }
            Malformed::Header(name) => Problem::typed(
                StatusCode::BAD_REQUEST,
                "malformed-request",
                "Malformed request",
                format!(
                    "the {name} header holds a character that HTTP does not allow in a header (RFC 9110, section 5.5)"
                ),
            ),
            Malformed::RequestLine => Problem::typed(
                StatusCode::BAD_REQUEST,
                "malformed-request",
                "Malformed request",
                "the request line is not `METHOD target HTTP/1.1` with characters HTTP allows (RFC 9112, section 3)",
            ),
            Malformed::Unknown => Problem::typed(
                StatusCode::BAD_REQUEST,
                "malformed-request",
                "Malformed request",
                "the request's head is not valid HTTP/1.1 (RFC 9112)",
            ),
        },
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Malformed {
    RequestLine,
    Header(String),
    Unknown,
}

/// The first line of `head` that HTTP does not allow: the request line, or a header line
/// whose name is not a token or whose value holds a control character.
fn malformed_line(head: &[u8]) -> Malformed {
    let end = head
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(head.len(), |i| i + 2);
    let mut lines = head[..end].split(|&b| b == b'\n').map(|line| match line {
        [rest @ .., b'\r'] => rest,
        line => line,
    });
    let Some(request_line) = lines.next() else {
        return Malformed::Unknown;
    };
    if request_line
        .iter()
        .any(|&b| b.is_ascii_control() || !b.is_ascii())
    {
        return Malformed::RequestLine;
    }
    for line in lines.filter(|line| !line.is_empty()) {
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => (&line[..colon], &line[colon + 1..]),
            None => (line, &[][..]),
        };
        let name_ok = !name.is_empty() && name.iter().all(|&b| is_token(b));
        let value_ok = value
            .iter()
            .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80);
        if !name_ok || !value_ok || line.len() == name.len() {
            let shown: String = name
                .iter()
                .take(64)
                .map(|&b| if is_token(b) { b as char } else { '?' })
                .collect();
            return Malformed::Header(shown);
        }
    }
    Malformed::Unknown
}

/// A character of an HTTP token (RFC 9110, section 5.6.2).
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let read = &buf.filled()[before..];
                if !read.is_empty() {
                    this.state.bytes_arrived(read);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let Some((deadline, expiry)) = this.state.deadline(cx.waker(), &this.timeouts)
                else {
                    return Poll::Pending;
                };
                if Instant::now() >= deadline {
                    return this.expire(cx, expiry);
                }
                this.timer.as_mut().reset(deadline);
                if this.timer.as_mut().poll(cx).is_ready() {
                    return this.expire(cx, expiry);
                }
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        if let Some(answer) = this.replacement(buf) {
            // hyper takes its answer as written; ours goes out in its place, by flush.
            this.pending = Some((answer, 0));
            let _ = this.poll_pending(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| b);
        if let Some(answer) = this.replacement(first) {
            this.pending = Some((answer, 0));
            let _ = this.poll_pending(cx)?;
            return Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()));
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        ready!(Pin::new(&mut this.inner).poll_flush(cx))?;
        this.state.flushed();
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_malformed_line_of_a_head_is_named() {
        let cases: [(&[u8], Malformed); 6] = [
            (
                b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a\0b\r\n\r\n",
                Malformed::Header("Authorization".into()),
            ),
            (
                b"PATCH /v1/accounts/1 HTTP/1.1\r\nIf-Match: \x01\x02\r\n\r\n",
                Malformed::Header("If-Match".into()),
            ),
            (b"GET /\0 HTTP/1.1\r\n\r\n", Malformed::RequestLine),
            (
                b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
                Malformed::Header("Bad?Name".into()),
            ),
            (
                b"GET / HTTP/1.1\r\nno colon\r\n\r\n",
                Malformed::Header("no?colon".into()),
            ),
            (
                b"GET / HTTP/1.1\r\nHost: ok\xff\r\n\r\n",
                Malformed::Unknown,
            ),
        ];
        for (head, want) in cases {
            assert_eq!(
                malformed_line(head),
                want,
                "{}",
                String::from_utf8_lossy(head)
            );
        }
    }

    #[test]
    fn only_hypers_empty_answers_to_an_unreadable_head_are_replaced() {
        let hyper_400 = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/problem+json\r\ncontent-length: 120\r\n\r\n";
        assert!(contains(hyper_400, b"\r\ncontent-length: 0\r\n"));
        assert!(!contains(ours, b"\r\ncontent-length: 0\r\n"));
        let problem = unreadable_head(b"400", b"GET / HTTP/1.1\r\nAuthorization: \0\r\n\r\n");
        assert_eq!(problem.status, 401);
        assert_eq!(unreadable_head(b"431", b"").status, 431);
    }
}
