use std::fmt;
use std::time::Duration;

use axum::http::HeaderValue;

/// How the HTTP layer behaves; set once at start from flags and environment.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Largest request body accepted, in bytes; larger bodies are answered 413.
    pub body_limit: usize,
    /// Largest body of a bulk upload (streamed NDJSON scores, an evaluation log), in bytes.
    pub ingest_limit: usize,
    /// A request still running after this is answered 503.
    pub request_timeout: Duration,
    /// The same for bulk uploads (per-sample scores, evaluation logs), which take longer.
    pub ingest_timeout: Duration,
    /// How long a request that does many pieces of work (an exercise's comparisons)
    /// starts new ones: past it, it answers what it has done and says what it left, well
    /// before `request_timeout` would answer 503.
    pub work_budget: Duration,
    /// Origins allowed to call the API from a browser; empty means CORS is closed.
    pub cors_origins: Vec<HeaderValue>,
    /// Who may read the Prometheus metrics on the API's own address.
    pub metrics: MetricsAccess,
    /// `Retry-After` (seconds) sent when the database is unavailable.
    pub retry_after: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            body_limit: 16 * 1024 * 1024,
            ingest_limit: 1024 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            ingest_timeout: Duration::from_secs(600),
            work_budget: Duration::from_secs(15),
            cors_origins: Vec::new(),
            metrics: MetricsAccess::Closed,
            retry_after: Duration::from_secs(5),
        }
    }
}

/// `/metrics` on the API address: absent (404), or open to holders of a token.
/// A separate listen address for metrics is the binary's business, not the router's.
#[derive(Clone, Default)]
pub enum MetricsAccess {
    #[default]
    Closed,
    Token(String),
}

impl fmt::Debug for MetricsAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetricsAccess::Closed => f.write_str("Closed"),
            MetricsAccess::Token(_) => f.write_str("Token(<redacted>)"),
        }
    }
}
