//! Flags and environment variables, read once at start. The README's configuration
//! table lists the same.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "jointeval",
    version,
    about = "The system of record for joint AI safety evaluations"
)]
pub struct Cli {
    /// How log lines are written (to standard error).
    #[arg(long, env = "JOINTEVAL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API (on a private PostgreSQL when DATABASE_URL is unset).
    Serve(Box<ServeArgs>),
    /// Apply pending migrations and exit.
    Migrate(DatabaseArgs),
    /// Print the OpenAPI contract as YAML.
    Openapi,
    /// Administer the service itself.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Check the audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute every hash of the audit chain and report the first broken link; exits
    /// non-zero when the chain does not hold.
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// A checkpoint saved from GET /v1/audit/checkpoint: also check its signature, and
    /// that the chain still passes through it (the history up to it was not rewritten).
    #[arg(long, value_name = "FILE")]
    pub from_checkpoint: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create the institutes and one admin for each, printing each one-time password
    /// once. Institutes and admins that exist are left as they are.
    Bootstrap(BootstrapArgs),
    /// Add a new token signing key; tokens signed by the previous one verify until
    /// they expire.
    RotateSigningKey(DatabaseArgs),
}

#[derive(Debug, Args)]
pub struct BootstrapArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// An institute to create, as CODE=Name (repeatable). Default: US and UK.
    #[arg(long = "institute", value_name = "CODE=NAME")]
    pub institutes: Vec<String>,
    /// The first admin's e-mail address at an institute, as CODE=EMAIL (repeatable).
    /// Default: admin@<code>.jointeval.invalid. Their password is taken from
    /// JOINTEVAL_ADMIN_PASSWORD_<CODE> when set, else generated and printed once.
    #[arg(long = "admin", value_name = "CODE=EMAIL")]
    pub admins: Vec<String>,
}

/// Where the data lives.
#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL to use. Unset: a private cluster in --data-dir, from the machine's
    /// own PostgreSQL binaries.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<Secret>,
    /// PostgreSQL as the owner of the tables, for migrations, when DATABASE_URL connects
    /// as the service's own role (a member of jointeval_app). Unset: DATABASE_URL.
    #[arg(long, env = "JOINTEVAL_OWNER_DATABASE_URL")]
    pub owner_database_url: Option<Secret>,
    /// Folder of the private cluster (created on first start, reused after).
    #[arg(long, env = "JOINTEVAL_DATA_DIR", default_value = ".jointeval")]
    pub data_dir: PathBuf,
    /// Unprivileged user that runs the private cluster when jointeval runs as root.
    #[arg(long, env = "JOINTEVAL_PG_USER", default_value = "postgres")]
    pub pg_user: String,
    /// Folder of the PostgreSQL binaries (initdb, postgres) for the private cluster;
    /// found on PATH, by pg_config or under /usr/lib/postgresql when unset.
    #[arg(long, env = "JOINTEVAL_PG_BIN_DIR")]
    pub pg_bin_dir: Option<PathBuf>,
    /// Most connections the service holds open to PostgreSQL.
    #[arg(long, env = "JOINTEVAL_MAX_CONNECTIONS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_connections: u32,
    /// Seconds one SQL statement of the service may run (statement_timeout).
    #[arg(long, env = "JOINTEVAL_DB_STATEMENT_TIMEOUT", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub db_statement_timeout: u64,
    /// Seconds a statement may wait for a lock (lock_timeout).
    #[arg(long, env = "JOINTEVAL_DB_LOCK_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub db_lock_timeout: u64,
    /// Seconds a transaction may sit idle before the server ends it
    /// (idle_in_transaction_session_timeout).
    #[arg(long, env = "JOINTEVAL_DB_IDLE_IN_TRANSACTION_TIMEOUT", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub db_idle_in_transaction_timeout: u64,
    /// Seconds a request waits for a database connection before it is answered 503.
    #[arg(long, env = "JOINTEVAL_DB_ACQUIRE_TIMEOUT", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub db_acquire_timeout: u64,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Address the API listens on.
    #[arg(long, env = "JOINTEVAL_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// Do not apply pending migrations at start.
    #[arg(long, env = "JOINTEVAL_NO_MIGRATE")]
    pub no_migrate: bool,
    /// Serve even though the database role can bypass row-level security (a superuser,
    /// BYPASSRLS, or the tables' owner), with a warning. Without it the service refuses.
    #[arg(long, env = "JOINTEVAL_ALLOW_RLS_BYPASS")]
    pub allow_rls_bypass: bool,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "JOINTEVAL_BODY_LIMIT", default_value_t = 16 * 1024 * 1024)]
    pub body_limit: usize,
    /// Largest streamed NDJSON body of per-sample scores, in bytes.
    #[arg(long, env = "JOINTEVAL_INGEST_LIMIT", default_value_t = 1024 * 1024 * 1024)]
    pub ingest_limit: usize,
    /// Seconds after which a request still running is answered 503.
    #[arg(long, env = "JOINTEVAL_REQUEST_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub request_timeout: u64,
    /// Seconds after which a bulk upload (per-sample scores, an Inspect log) still running
    /// is answered 503.
    #[arg(long, env = "JOINTEVAL_INGEST_TIMEOUT", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub ingest_timeout: u64,
    /// Seconds a client has to send a request's whole head, from the connection's opening
    /// or from the first byte of a later request; past it the connection is closed.
    #[arg(long, env = "JOINTEVAL_HEADER_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub header_timeout: u64,
    /// Seconds a keep-alive connection may wait for its next request before it is closed.
    #[arg(long, env = "JOINTEVAL_IDLE_TIMEOUT", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub idle_timeout: u64,
    /// Most client connections held open at once; past it a new one is answered 503.
    /// Lowered at start, with a warning, to what the process's descriptor limit leaves
    /// after the database pool and some headroom.
    #[arg(long, env = "JOINTEVAL_MAX_CLIENT_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_client_connections: u64,
    /// Most connections held open for one client address (0: no such cap); past it a new
    /// one is answered 429. Behind a reverse proxy every client has the proxy's address.
    #[arg(
        long,
        env = "JOINTEVAL_MAX_CONNECTIONS_PER_CLIENT",
        default_value_t = 256
    )]
    pub max_connections_per_client: u64,
    /// Seconds in-flight requests get to finish after SIGINT or SIGTERM.
    #[arg(long, env = "JOINTEVAL_SHUTDOWN_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub shutdown_timeout: u64,
    /// Browser origins allowed to call the API (CORS); none by default.
    #[arg(
        long = "cors-origin",
        env = "JOINTEVAL_CORS_ORIGINS",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,
    /// Serve Prometheus metrics at /metrics on this separate address.
    #[arg(long, env = "JOINTEVAL_METRICS_BIND")]
    pub metrics_bind: Option<SocketAddr>,
    /// Serve /metrics on the API address to holders of this bearer token.
    #[arg(long, env = "JOINTEVAL_METRICS_TOKEN")]
    pub metrics_token: Option<Secret>,
    /// Seconds an access token lives.
    #[arg(long, env = "JOINTEVAL_TOKEN_TTL", default_value_t = 900, value_parser = clap::value_parser!(u64).range(60..=86400))]
    pub token_ttl: u64,
    /// Seconds the clocks of the instances may disagree: a token is still taken at most
    /// this long after its `exp`, and at most this long before its `nbf` or `iat`.
    #[arg(long, env = "JOINTEVAL_TOKEN_CLOCK_SKEW", default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=10))]
    pub token_clock_skew: u64,
    /// `iss` of the tokens this service issues and accepts.
    #[arg(long, env = "JOINTEVAL_TOKEN_ISSUER", default_value = "jointeval")]
    pub token_issuer: String,
    /// `aud` of the tokens this service issues and accepts.
    #[arg(
        long,
        env = "JOINTEVAL_TOKEN_AUDIENCE",
        default_value = "jointeval-api"
    )]
    pub token_audience: String,
}

/// A value that must not reach a log line.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}
