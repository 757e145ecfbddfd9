use std::time::Duration;

use anyhow::Context;
use axum::http::HeaderValue;
use jointeval_api::{AppState, AuthSettings, HttpSettings, MetricsAccess, TokenSettings};
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
        tokio::spawn(jointeval_api::serve(
            metrics_listener,
            router,
            stopped(stop_rx.clone()),
        ));
    }

    println!("jointeval listening on http://{addr}");
    tracing::info!(%addr, "listening");
    let server = jointeval_api::serve(
        listener,
        jointeval_api::router(state),
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
