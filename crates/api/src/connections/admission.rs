//! Which connections are admitted: a cap in all and one per client address, and the
//! answer a refused connection gets before it is closed.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::ConnectionLimits;
use crate::problem::Problem;

/// How long a refused connection is read from after its answer.
const REFUSAL_LINGER: Duration = Duration::from_millis(250);

/// The open connections, in all and by client address.
pub(super) struct Admission {
    max_connections: usize,
    max_per_client: usize,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Refusal {
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
pub(super) struct Ticket {
    admission: Arc<Admission>,
    client: IpAddr,
}

impl Admission {
    pub(super) fn new(limits: &ConnectionLimits) -> Self {
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

    pub(super) fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Ticket, Refusal> {
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
pub(super) async fn refuse(mut stream: TcpStream, refusal: Refusal) {
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
pub(super) fn refuse_now(stream: &TcpStream, refusal: Refusal) {
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
