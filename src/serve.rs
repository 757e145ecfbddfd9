use std::time::Duration;

use anyhow::Context;
use axum::http::HeaderValue;
use jointeval_api::{
    AppState, AuthSettings, ConnectionLimits, HttpSettings, MetricsAccess, TokenSettings,
};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::cli::ServeArgs;
use crate::database::Database;

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let settings = http_settings(&args)?;
    let database = Database::open(&args.database).await?;
    let result = serve(&args, settings, &database).await;
    database.close().await;
    result
}

async fn serve(
    args: &ServeArgs,
    settings: HttpSettings,
    database: &Database,
) -> anyhow::Result<()> {
    if args.no_migrate {
        tracing::info!("not applying migrations (--no-migrate)");
    } else {
        database.migrate().await?;
    }
    database.check_rls(args.allow_rls_bypass).await?;
    jointeval_api::auth::tokens::ensure_signing_key(&database.pool)
        .await
        .context("creating the token signing key")?;
    if database.is_embedded() {
        crate::admin::bootstrap_if_empty(&database.pool).await?;
    }
    let state = AppState::new(database.pool.clone(), settings, auth_settings(args));
    let limits = connection_limits(args)?;
    let listener = TcpListener::bind(args.bind)
        .await
        .with_context(|| format!("listening on {}", args.bind))?;
    let addr = listener.local_addr()?;

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });

    if let Some(metrics_bind) = args.metrics_bind {
        let metrics_listener = TcpListener::bind(metrics_bind)
            .await
            .with_context(|| format!("listening on {metrics_bind} for metrics"))?;
        println!(
            "metrics at http://{}/metrics",
            metrics_listener.local_addr()?
        );
        let router = jointeval_api::with_middleware(
            jointeval_api::metrics::router(state.clone()),
            &state.settings,
        );
        let metrics_limits = ConnectionLimits {
            max_connections: METRICS_CONNECTIONS,
            max_per_client: METRICS_CONNECTIONS,
            ..limits.clone()
        };
        tokio::spawn(jointeval_api::serve(
            metrics_listener,
            router,
            metrics_limits,
            stopped(stop_rx.clone()),
        ));
    }

    println!("jointeval listening on http://{addr}");
    tracing::info!(%addr, "listening");
    let server = jointeval_api::serve(
        listener,
        jointeval_api::router(state),
        limits,
        stopped(stop_rx.clone()),
    );
    let grace = Duration::from_secs(args.shutdown_timeout);
    tokio::select! {
        result = server => result.context("serving")?,
        () = async { stopped(stop_rx).await; tokio::time::sleep(grace).await } => {
            tracing::warn!(?grace, "in-flight requests did not finish in time; stopping anyway");
        }
    }
    tracing::info!("stopped serving");
    Ok(())
}

fn auth_settings(args: &ServeArgs) -> AuthSettings {
    AuthSettings {
        tokens: TokenSettings {
            issuer: args.token_issuer.clone(),
            audience: args.token_audience.clone(),
            lifetime: Duration::from_secs(args.token_ttl),
            clock_skew: Duration::from_secs(args.token_clock_skew),
        },
        ..AuthSettings::default()
    }
}

/// Descriptors kept beside client connections, on top of the database pool's: the
/// refused connections answered at once (256), the metrics listener's
/// ([`METRICS_CONNECTIONS`]), logs and the private cluster's pipes.
const DESCRIPTOR_HEADROOM: u64 = 512;

/// Connections the separate metrics listener holds at most: scrapers are few.
const METRICS_CONNECTIONS: usize = 64;

/// Fewer client connections than this is no service: refuse to start instead.
const MIN_CLIENT_CONNECTIONS: u64 = 64;

/// The listener's limits. The cap on client connections must leave descriptors for the
/// database pool and for answering refusals: the soft descriptor limit is raised to the
/// hard one, and a cap it cannot hold is lowered with a warning.
fn connection_limits(args: &ServeArgs) -> anyhow::Result<ConnectionLimits> {
    let descriptors = raise_descriptor_limit();
    let reserved = DESCRIPTOR_HEADROOM + u64::from(args.database.max_connections);
    let room = descriptors.saturating_sub(reserved);
    if room < MIN_CLIENT_CONNECTIONS.min(args.max_client_connections) {
        anyhow::bail!(
            "the descriptor limit ({descriptors}) leaves room for {room} client connections \
             beside the database pool and {DESCRIPTOR_HEADROOM} spare; raise it (ulimit -n)"
        );
    }
    let max_connections = if args.max_client_connections > room {
        tracing::warn!(
            asked = args.max_client_connections,
            descriptors,
            lowered_to = room,
            "--max-client-connections leaves no descriptors for the database pool and refusals; lowered"
        );
        room
    } else {
        args.max_client_connections
    };
    Ok(ConnectionLimits {
        header_timeout: Duration::from_secs(args.header_timeout),
        idle_timeout: Duration::from_secs(args.idle_timeout),
        max_connections: usize::try_from(max_connections).unwrap_or(usize::MAX),
        max_per_client: usize::try_from(args.max_connections_per_client).unwrap_or(usize::MAX),
    })
}

/// Raises the soft limit on open descriptors to the hard one; answers the limit in force.
fn raise_descriptor_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        // An unlimited hard limit is still bounded by the kernel's nr_open.
        Ok((soft, hard)) if soft < hard => {
            match setrlimit(Resource::RLIMIT_NOFILE, hard.min(1 << 20), hard) {
                Ok(()) => hard.min(1 << 20),
                Err(e) => {
                    tracing::warn!(error = %e, soft, hard, "could not raise the descriptor limit");
                    soft
                }
            }
        }
        Ok((soft, _)) => soft,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the descriptor limit");
            1024
        }
    }
}

fn http_settings(args: &ServeArgs) -> anyhow::Result<HttpSettings> {
    let cors_origins = args
        .cors_origins
        .iter()
        .filter(|o| !o.is_empty())
        .map(|o| {
            HeaderValue::from_str(o).with_context(|| format!("CORS origin {o:?} is not valid"))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(HttpSettings {
        body_limit: args.body_limit,
        ingest_limit: args.ingest_limit,
        request_timeout: Duration::from_secs(args.request_timeout),
        work_budget: Duration::from_secs(args.request_timeout) / 2,
        ingest_timeout: Duration::from_secs(args.ingest_timeout),
        cors_origins,
        metrics: match &args.metrics_token {
            Some(token) => MetricsAccess::Token(token.expose().to_owned()),
            None => MetricsAccess::Closed,
        },
        ..HttpSettings::default()
    })
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutting down: no new connections, finishing requests in flight");
}
