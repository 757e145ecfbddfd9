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

mod admission;
mod guarded;

use admission::{Admission, Refusal, refuse, refuse_now};
use guarded::{ConnState, Guarded, InFlight};

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

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
