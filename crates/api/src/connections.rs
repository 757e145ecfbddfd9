//! The listener: which connections are admitted, how long each may take to say what it
//! wants, and the answers given before any route runs. OWASP API4 (unrestricted resource
//! consumption) at the connection level:
//!
//! - a cap on open connections, and one per client address, so that a client that opens
//!   thousands and sends nothing cannot use up the process's file descriptors; a refused
//!   connection gets a problem answer (503, or 429 for one address) and is closed;
//! - a header timeout: a request's head must arrive whole within it, counted from the
//!   connection's opening or from the first byte of a later request;
//! - an idle timeout: a keep-alive connection waiting for its next request is closed.
//!
//! hyper answers a head it cannot parse (a NUL in a header, say) with a bare 400 of its
//! own and no way to change it; the connection puts a problem body in its place, naming
//! the header, and a 401 with `WWW-Authenticate` when that header is `Authorization`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

use crate::problem::Problem;

/// How many connections the listener holds, and for how long.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// A request's head must arrive whole within this, from the connection's opening or
    /// from the first byte of a later request.
    pub header_timeout: Duration,
    /// A keep-alive connection with no request for this long is closed.
    pub idle_timeout: Duration,
    /// Connections held open at most; a new one past it is answered 503 and closed.
    pub max_connections: usize,
    /// Connections held open for one client address at most (0: no such cap); a new one
    /// past it is answered 429 and closed.
    pub max_per_client: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            max_per_client: 256,
        }
    }
}

/// Refused connections answered at once by a task of their own, which reads what the
/// client sends for a moment before closing; past this many, a refusal is answered with
/// what one write can do and closed straight away.
const REFUSALS_AT_ONCE: usize = 256;

/// How long a refused connection is read from after its answer.
const REFUSAL_LINGER: Duration = Duration::from_millis(250);

/// How much of a request's head is kept, to name the header hyper could not parse.
const HEAD_KEPT: usize = 8 * 1024;

/// Serves `router` on `listener` until `shutdown` completes, then lets in-flight
/// requests finish. Accepted sockets get `TCP_NODELAY`: without it a keep-alive
/// answer can wait about 40 ms behind Nagle's algorithm.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let admission = Arc::new(Admission::new(&limits));
    let refusals = Arc::new(Semaphore::new(REFUSALS_AT_ONCE));
    let graceful = GracefulShutdown::new();
    // hyper's own header timer is left off (it has no timer here): the connection keeps
    // the header and idle timeouts itself, which hyper cannot tell apart.
    let builder = hyper::server::conn::http1::Builder::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::warn!(error = %e, "could not set TCP_NODELAY");
        }
        let ticket = match admission.admit(peer.ip()) {
            Ok(ticket) => ticket,
            Err(refusal) => {
                let reason = match refusal {
                    Refusal::Full(_) => "service_full",
                    Refusal::Client(_) => "client_full",
                };
                metrics::counter!("http_connections_refused_total", "reason" => reason)
                    .increment(1);
                tracing::debug!(%peer, reason, "connection refused");
                match refusals.clone().try_acquire_owned() {
                    Ok(permit) => {
                        tokio::spawn(async move {
                            refuse(stream, refusal).await;
                            drop(permit);
                        });
                    }
                    Err(_) => refuse_now(&stream, refusal),
                }
                continue;
            }
        };
        let state = Arc::new(ConnState::new());
        let service = TowerToHyperService::new(tracked(router.clone(), peer, state.clone()));
        let io = TokioIo::new(Guarded::new(stream, peer, state, &limits));
        let connection = graceful.watch(builder.serve_connection(io, service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
            drop(ticket);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// A failed `accept`: a connection that went away before it was taken is nothing; out of
/// descriptors (or any other failure), the loop waits a little instead of spinning.
async fn accept_failed(e: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accepting a connection failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// The router as a connection's service: each request carries the peer's address and
/// counts as in flight until its response body is dropped.
fn tracked(
    router: Router,
    peer: SocketAddr,
    state: Arc<ConnState>,
) -> impl tower::Service<
    Request<Incoming>,
    Response = axum::response::Response,
    Error = Infallible,
    Future = impl Future<Output = Result<axum::response::Response, Infallible>> + Send,
> + Clone {
    tower::service_fn(move |request: Request<Incoming>| {
        let in_flight = InFlight::begin(state.clone());
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(ConnectInfo(peer));
        let answer = router.clone().oneshot(request);
        async move {
            let response = answer.await?;
            Ok(response.map(|body| {
                Body::new(body.map_frame(move |frame| {
                    let _ = &in_flight;
                    frame
                }))
            }))
        }
    })
}

// --- Admission -----------------------------------------------------------------------------

/// The open connections, in all and by client address.
struct Admission {
    max_connections: usize,
    max_per_client: usize,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

#[derive(Debug, Clone, Copy)]
enum Refusal {
    /// The service holds as many connections as it keeps.
    Full(usize),
    /// This client address holds as many as one address may.
    Client(usize),
}

/// The client a connection counts against: its IPv4 address, or the /64 network of an
/// IPv6 one, since a single IPv6 host commonly holds a whole /64.
fn client_of(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V4(_) => peer,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(
                u128::from(v6) & !((1u128 << 64) - 1),
            )),
        },
    }
}

/// An admitted connection's place, given back when it closes.
struct Ticket {
    admission: Arc<Admission>,
    client: IpAddr,
}

impl Admission {
    fn new(limits: &ConnectionLimits) -> Self {
        Self {
            max_connections: limits.max_connections,
            max_per_client: limits.max_per_client,
            open: Mutex::new((0, HashMap::new())),
        }
    }

    fn lock(&self) -> MutexGuard<'_, (usize, HashMap<IpAddr, usize>)> {
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Ticket, Refusal> {
        let client = client_of(peer);
        let mut open = self.lock();
        let (total, by_client) = &mut *open;
        if *total >= self.max_connections {
            return Err(Refusal::Full(self.max_connections));
        }
        let mine = by_client.entry(client).or_default();
        if self.max_per_client > 0 && *mine >= self.max_per_client {
            return Err(Refusal::Client(self.max_per_client));
        }
        *mine += 1;
        *total += 1;
        metrics::gauge!("http_connections_open").set(*total as f64);
        Ok(Ticket {
            admission: self.clone(),
            client,
        })
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut open = self.admission.lock();
        let (total, by_client) = &mut *open;
        *total = total.saturating_sub(1);
        metrics::gauge!("http_connections_open").set(*total as f64);
        if let Some(mine) = by_client.get_mut(&self.client) {
            *mine = mine.saturating_sub(1);
            if *mine == 0 {
                by_client.remove(&self.client);
            }
        }
    }
}

/// Answers a refused connection and closes it. What the client sends is read and dropped
/// for a moment, so that the close does not reset the connection before the client has
/// read the answer.
async fn refuse(mut stream: TcpStream, refusal: Refusal) {
    let answer = async {
        stream.write_all(&refusal_answer(refusal)).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut drained = 0;
        while drained < 64 * 1024 {
            match stream.read(&mut sink).await? {
                0 => break,
                n => drained += n,
            }
        }
        io::Result::Ok(())
    };
    let _ = tokio::time::timeout(REFUSAL_LINGER, answer).await;
}

/// The same without waiting: what the client sent so far is read, the answer written as
/// far as the socket takes it at once, and the connection closed.
fn refuse_now(stream: &TcpStream, refusal: Refusal) {
    let mut sink = [0u8; 4096];
    while matches!(stream.try_read(&mut sink), Ok(n) if n > 0) {}
    let _ = stream.try_write(&refusal_answer(refusal));
}

fn refusal_answer(refusal: Refusal) -> Vec<u8> {
    let problem = match refusal {
        Refusal::Full(max) => Problem::typed(
            StatusCode::SERVICE_UNAVAILABLE,
            "too-many-connections",
            "Too many connections",
            format!("the service holds the {max} connections it keeps open; retry later"),
        ),
        Refusal::Client(max) => Problem::typed(
            StatusCode::TOO_MANY_REQUESTS,
            "too-many-connections-from-client",
            "Too many connections from this address",
            format!(
                "this address holds the {max} connections the service keeps for one client; \
                 reuse them, or close some and retry"
            ),
        ),
    }
    .with_header(header::RETRY_AFTER, HeaderValue::from_static("1"));
    problem.http1_closing(&uuid::Uuid::now_v7().to_string())
}

// --- One connection's phases ------------------------------------------------------------------

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

struct ConnState {
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
    fn new() -> Self {
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
struct InFlight(Arc<ConnState>);

impl InFlight {
    fn begin(state: Arc<ConnState>) -> Self {
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
struct Guarded {
    inner: TcpStream,
    state: Arc<ConnState>,
    timeouts: Timeouts,
    timer: Pin<Box<Sleep>>,
    peer: SocketAddr,
    /// An answer of ours still to be written, and how much of it is.
    pending: Option<(Vec<u8>, usize)>,
}

impl Guarded {
    fn new(
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
