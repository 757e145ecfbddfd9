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
    pub pool: PgPool,
    /// The private cluster, when there is one; stop it with [`Database::close`].
    cluster: Option<Cluster>,
}

impl Database {
    pub async fn open(args: &DatabaseArgs) -> anyhow::Result<Database> {
        let settings = PoolSettings {
            max_connections: args.max_connections,
            acquire_timeout: Duration::from_secs(args.db_acquire_timeout),
        };
        match &args.database_url {
            Some(url) => {
                let options = PgConnectOptions::from_str(url.expose())
                    .context("DATABASE_URL is not a PostgreSQL connection URL")?;
                Ok(Database {
                    pool: jointeval_store::connect(options, &settings),
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
                let database = Database {
                    pool: jointeval_store::connect(
                        cluster.connect_options(EMBEDDED_DATABASE),
                        &settings,
                    ),
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

    pub async fn migrate(&self) -> anyhow::Result<()> {
        jointeval_store::migrate(&self.pool)
            .await
            .context("applying migrations")
    }

    /// Closes the pool, then stops the private cluster cleanly.
    pub async fn close(self) {
        self.pool.close().await;
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
