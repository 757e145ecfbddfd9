//! The database the service uses: the server DATABASE_URL names, or a private cluster.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use jointeval_embedded_pg::{Cluster, ClusterConfig};
use jointeval_store::{PgPool, PoolSettings};
use sqlx::postgres::PgConnectOptions;

use crate::cli::DatabaseArgs;

/// The name of the database inside the private cluster.
const EMBEDDED_DATABASE: &str = "jointeval";

pub struct Database {
    /// The service's own role, held by row-level security.
    pub pool: PgPool,
    /// The tables' owner, for migrations (DATABASE_URL's when no owner URL is given).
    owner: PgPool,
    /// The private cluster, when there is one; stop it with [`Database::close`].
    cluster: Option<Cluster>,
}

impl Database {
    pub async fn open(args: &DatabaseArgs) -> anyhow::Result<Database> {
        // Migrations, as the owner, are not held to the limits a request is.
        let owner_settings = PoolSettings {
            max_connections: 2,
            acquire_timeout: Duration::from_secs(args.db_acquire_timeout),
            ..PoolSettings::default()
        };
        let settings = PoolSettings {
            max_connections: args.max_connections,
            acquire_timeout: Duration::from_secs(args.db_acquire_timeout),
            statement_timeout: Some(Duration::from_secs(args.db_statement_timeout)),
            lock_timeout: Some(Duration::from_secs(args.db_lock_timeout)),
            idle_in_transaction_timeout: Some(Duration::from_secs(
                args.db_idle_in_transaction_timeout,
            )),
        };
        match &args.database_url {
            Some(url) => {
                let options = PgConnectOptions::from_str(url.expose())
                    .context("DATABASE_URL is not a PostgreSQL connection URL")?;
                let pool = jointeval_store::connect(options.clone(), &settings);
                let owner = match &args.owner_database_url {
                    Some(owner) => jointeval_store::connect(
                        PgConnectOptions::from_str(owner.expose()).context(
                            "JOINTEVAL_OWNER_DATABASE_URL is not a PostgreSQL connection URL",
                        )?,
                        &owner_settings,
                    ),
                    None => jointeval_store::connect(options, &owner_settings),
                };
                Ok(Database {
                    pool,
                    owner,
                    cluster: None,
                })
            }
            None => {
                let config = ClusterConfig {
                    data_dir: args.data_dir.clone(),
                    user_when_root: args.pg_user.clone(),
                    bin_dir: args.pg_bin_dir.clone(),
                    durable: true,
                };
                let cluster = Cluster::start(&config)
                    .await
                    .context("starting the private PostgreSQL")?;
                tracing::info!(data_dir = %args.data_dir.display(), "using the private PostgreSQL (DATABASE_URL is unset)");
                // The cluster's superuser owns the tables; the service connects as a
                // login role of its own, which `migrate` creates.
                let owner = cluster.connect_options(EMBEDDED_DATABASE);
                let database = Database {
                    pool: jointeval_store::connect(
                        owner
                            .clone()
                            .username(jointeval_store::roles::SERVICE_LOGIN),
                        &settings,
                    ),
                    owner: jointeval_store::connect(owner, &owner_settings),
                    cluster: Some(cluster),
                };
                if let Err(e) = database.cluster_ensure_database().await {
                    database.close().await;
                    return Err(e);
                }
                Ok(database)
            }
        }
    }

    async fn cluster_ensure_database(&self) -> anyhow::Result<()> {
        if let Some(cluster) = &self.cluster {
            cluster
                .ensure_database(EMBEDDED_DATABASE)
                .await
                .context("creating the database in the private PostgreSQL")?;
        }
        Ok(())
    }

    /// Whether this is the private cluster of the embedded default.
    pub fn is_embedded(&self) -> bool {
        self.cluster.is_some()
    }

    /// Applies pending migrations as the owner; in the private cluster, also creates the
    /// service's login role.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        jointeval_store::migrate(&self.owner)
            .await
            .context("applying migrations")?;
        if self.is_embedded() {
            jointeval_store::roles::ensure_service_login(
                &self.owner,
                jointeval_store::roles::SERVICE_LOGIN,
            )
            .await
            .context("creating the service's database role")?;
        }
        Ok(())
    }

    /// Refuses a service role that row-level security would not hold, unless allowed.
    pub async fn check_rls(&self, allow_bypass: bool) -> anyhow::Result<()> {
        let reasons = jointeval_store::roles::rls_bypass(&self.pool)
            .await
            .context("checking the service's database role")?;
        if reasons.is_empty() {
            return Ok(());
        }
        let why = reasons.join(", ");
        if allow_bypass {
            tracing::warn!(
                why,
                "the service's database role bypasses row-level security (--allow-rls-bypass)"
            );
            return Ok(());
        }
        anyhow::bail!(
            "the database role of DATABASE_URL {why}, so row-level security would not hold \
             it. Connect DATABASE_URL as a member of {} and give the owner's URL in \
             JOINTEVAL_OWNER_DATABASE_URL for migrations (README, \"Database roles\"), or \
             pass --allow-rls-bypass to serve without that protection",
            jointeval_store::roles::SERVICE_GROUP
        )
    }

    /// Closes the pools, then stops the private cluster cleanly.
    pub async fn close(self) {
        self.pool.close().await;
        self.owner.close().await;
        if let Some(cluster) = self.cluster {
            let pid = cluster.pid();
            match cluster.stop().await {
                Ok(()) => tracing::info!(pid, "private PostgreSQL stopped"),
                Err(e) => tracing::error!(pid, error = %e, "stopping the private PostgreSQL"),
            }
        }
    }
}

pub async fn migrate_and_exit(args: &DatabaseArgs) -> anyhow::Result<()> {
    let database = Database::open(args).await?;
    let result = database.migrate().await;
    database.close().await;
    result?;
    println!("migrations applied");
    Ok(())
}
