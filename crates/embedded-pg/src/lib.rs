//! A private PostgreSQL cluster run from the machine's own PostgreSQL binaries.
//!
//! The cluster lives in `<data dir>/pg`, listens only on a Unix socket inside that
//! folder (no TCP port, so two copies never collide), and is a direct child of this
//! process: it is asked to shut down when the process that started it dies, so a
//! crash never leaves a cluster that blocks the next start.

mod binaries;
mod lockfile;
mod user;

use std::fs::{self, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};
use tokio::sync::oneshot;

pub use binaries::find_bin_dir;
pub use user::ClusterUser;

/// The port only names the socket file (`.s.PGSQL.5432`); nothing listens on TCP.
const PORT: u16 = 5432;
const SOCKET_FILE: &str = ".s.PGSQL.5432";
/// `sun_path` holds 108 bytes on Linux, one of which is the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;
const SUPERUSER: &str = "postgres";
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "no PostgreSQL binaries found (looked for initdb and postgres on PATH, in `pg_config --bindir` \
         and in /usr/lib/postgresql/*/bin). Either install PostgreSQL (e.g. `apt-get install postgresql`), \
         or point jointeval at a running server with DATABASE_URL (or use `docker compose up`)"
    )]
    NoBinaries,
    #[error("{0} does not hold the PostgreSQL server programs initdb and postgres")]
    NotBinDir(PathBuf),
    #[error(
        "the cluster must not run as root and the user `{0}` that should run it does not exist; \
         name an existing unprivileged user with --pg-user"
    )]
    UnknownUser(String),
    #[error(
        "the PostgreSQL cluster runs as user `{user}`, who cannot reach the data folder {data_dir}: \
         {blocked} is closed to it. Open that directory to `{user}` (e.g. chmod o+x), or choose \
         another --data-dir"
    )]
    Unreachable {
        user: String,
        data_dir: PathBuf,
        blocked: PathBuf,
    },
    #[error(
        "the socket path {path} is {len} bytes, longer than the {max} the operating system allows \
         for a Unix socket; choose a shorter --data-dir"
    )]
    SocketPathTooLong {
        path: PathBuf,
        len: usize,
        max: usize,
    },
    #[error(
        "the data folder {data_dir} is in use by PostgreSQL process {pid}; is another jointeval \
         running on it?"
    )]
    InUse { data_dir: PathBuf, pid: i32 },
    #[error("{what} failed: {detail}")]
    Command { what: String, detail: String },
    #[error("PostgreSQL did not accept connections within {0:?}; see {1}")]
    NotReady(Duration, PathBuf),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io {
        context: context.into(),
        source,
    }
}

/// How to run a private cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The folder that holds the cluster (`pg/`) and its log (`postgres.log`).
    pub data_dir: PathBuf,
    /// Who runs the cluster when this process is root (PostgreSQL refuses root).
    pub user_when_root: String,
    /// Where the PostgreSQL binaries are; found on the machine when `None`.
    pub bin_dir: Option<PathBuf>,
    /// `false` trades crash safety for speed (fsync off): for throwaway test clusters.
    pub durable: bool,
}

/// A running private cluster. Stop it with [`Cluster::stop`]; if this process dies
/// instead, the kernel asks PostgreSQL to shut down.
#[derive(Debug)]
pub struct Cluster {
    pid: Pid,
    socket_dir: PathBuf,
    log_path: PathBuf,
    exited: oneshot::Receiver<ExitStatus>,
}

impl Cluster {
    /// Creates the cluster on first use, then starts it and waits until it accepts connections.
    pub async fn start(config: &ClusterConfig) -> Result<Cluster, Error> {
        let bin_dir = match &config.bin_dir {
            Some(dir) if binaries::is_server_bin_dir(dir) => dir.clone(),
            Some(dir) => return Err(Error::NotBinDir(dir.clone())),
            None => find_bin_dir().ok_or(Error::NoBinaries)?,
        };
        let user = ClusterUser::resolve(&config.user_when_root)?;
        fs::create_dir_all(&config.data_dir)
            .map_err(io(format!("creating {}", config.data_dir.display())))?;
        let data_dir = fs::canonicalize(&config.data_dir)
            .map_err(io(format!("resolving {}", config.data_dir.display())))?;
        let cluster_dir = data_dir.join("pg");
        check_socket_path(&cluster_dir)?;
        user.check_reaches(&data_dir)?;

        if !cluster_dir.join("PG_VERSION").exists() {
            init_cluster(&bin_dir, &cluster_dir, &user)?;
        }
        lockfile::clear_stale(&cluster_dir).await?;

        let log_path = data_dir.join("postgres.log");
        let cluster = spawn_postmaster(&bin_dir, &cluster_dir, &log_path, &user, config.durable)?;
        cluster.wait_until_ready().await?;
        Ok(cluster)
    }

    /// Options that reach the cluster's superuser over its socket, on `database`.
    pub fn connect_options(&self, database: &str) -> PgConnectOptions {
        PgConnectOptions::new()
            .socket(&self.socket_dir)
            .port(PORT)
            .username(SUPERUSER)
            .database(database)
    }

    /// The postmaster's process id.
    pub fn pid(&self) -> i32 {
        self.pid.as_raw()
    }

    /// Creates `name` unless it exists.
    pub async fn ensure_database(&self, name: &str) -> Result<(), Error> {
        let mut conn = self.connect_options("postgres").connect().await?;
        let exists: bool =
            sqlx::query_scalar("select exists(select 1 from pg_database where datname = $1)")
                .bind(name)
                .fetch_one(&mut conn)
                .await?;
        if !exists {
            let quoted = name.replace('"', "\"\"");
            sqlx::raw_sql(&format!("create database \"{quoted}\""))
                .execute(&mut conn)
                .await?;
        }
        conn.close().await?;
        Ok(())
    }

    /// Fast shutdown: clients are disconnected, the data is flushed, the process exits.
    pub async fn stop(mut self) -> Result<(), Error> {
        if self.exited.try_recv().is_ok() {
            return Ok(());
        }
        let _ = kill(self.pid, Signal::SIGINT);
        match tokio::time::timeout(STOP_TIMEOUT, &mut self.exited).await {
            Ok(_) => Ok(()),
            Err(_) => {
                tracing::warn!(pid = %self.pid, "PostgreSQL did not stop in time; stopping it immediately");
                let _ = kill(self.pid, Signal::SIGQUIT);
                let _ = (&mut self.exited).await;
                Ok(())
            }
        }
    }

    async fn wait_until_ready(&self) -> Result<(), Error> {
        let started = Instant::now();
        let options = self.connect_options("postgres");
        loop {
            if let Ok(conn) = options.connect().await {
                let _ = conn.close().await;
                return Ok(());
            }
            if self.has_exited() {
                return Err(Error::Command {
                    what: "starting PostgreSQL".into(),
                    detail: format!("it exited; its log says:\n{}", log_tail(&self.log_path)),
                });
            }
            if started.elapsed() > READY_TIMEOUT {
                return Err(Error::NotReady(READY_TIMEOUT, self.log_path.clone()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn has_exited(&self) -> bool {
        !matches!(kill(self.pid, None), Ok(()))
    }
}

fn check_socket_path(cluster_dir: &Path) -> Result<(), Error> {
    let path = cluster_dir.join(SOCKET_FILE);
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(Error::SocketPathTooLong {
            path,
            len,
            max: MAX_SOCKET_PATH,
        });
    }
    Ok(())
}

fn init_cluster(bin_dir: &Path, cluster_dir: &Path, user: &ClusterUser) -> Result<(), Error> {
    if !cluster_dir.exists() {
        fs::DirBuilder::new()
            .mode(0o700)
            .create(cluster_dir)
            .map_err(io(format!("creating {}", cluster_dir.display())))?;
    }
    fs::set_permissions(cluster_dir, fs::Permissions::from_mode(0o700)).map_err(io(format!(
        "setting permissions on {}",
        cluster_dir.display()
    )))?;
    user.own(cluster_dir)?;
    let mut initdb = Command::new(bin_dir.join("initdb"));
    initdb
        .arg("--pgdata")
        .arg(cluster_dir)
        .args(["--username", SUPERUSER, "--auth", "trust"])
        .args(["--encoding", "UTF8", "--locale", "C", "--no-instructions"])
        .current_dir(cluster_dir);
    user.apply(&mut initdb);
    let output = initdb.output().map_err(io("running initdb"))?;
    if !output.status.success() {
        return Err(Error::Command {
            what: "initdb".into(),
            detail: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok(())
}

fn spawn_postmaster(
    bin_dir: &Path,
    cluster_dir: &Path,
    log_path: &Path,
    user: &ClusterUser,
    durable: bool,
) -> Result<Cluster, Error> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .map_err(io(format!("opening {}", log_path.display())))?;
    let log_err = log
        .try_clone()
        .map_err(io(format!("opening {}", log_path.display())))?;

    let mut postgres = Command::new(bin_dir.join("postgres"));
    postgres
        .arg("-D")
        .arg(cluster_dir)
        .arg("-k")
        .arg(cluster_dir)
        .args(["-p", &PORT.to_string(), "-c", "listen_addresses="])
        .current_dir(cluster_dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    if !durable {
        postgres.args(["-c", "fsync=off", "-c", "synchronous_commit=off"]);
        postgres.args(["-c", "full_page_writes=off", "-c", "max_connections=300"]);
    }
    user.apply(&mut postgres);
    ask_for_shutdown_when_parent_dies(&mut postgres);

    // The parent-death signal fires when the spawning *thread* exits, so the postmaster
    // is spawned, and reaped, by a thread that lives exactly as long as it does.
    let (spawned_tx, spawned_rx) = std::sync::mpsc::channel();
    let (exited_tx, exited_rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("postgres-keeper".into())
        .spawn(move || match postgres.spawn() {
            Ok(mut child) => {
                let _ = spawned_tx.send(Ok(child.id()));
                if let Ok(status) = child.wait() {
                    let _ = exited_tx.send(status);
                }
            }
            Err(e) => {
                let _ = spawned_tx.send(Err(e));
            }
        })
        .map_err(io("starting the postgres keeper thread"))?;
    let pid = spawned_rx
        .recv()
        .map_err(|_| Error::Command {
            what: "starting PostgreSQL".into(),
            detail: "the keeper thread ended before reporting".into(),
        })?
        .map_err(io("starting postgres"))?;
    tracing::info!(pid, dir = %cluster_dir.display(), "private PostgreSQL started");
    Ok(Cluster {
        pid: Pid::from_raw(pid as i32),
        socket_dir: cluster_dir.to_path_buf(),
        log_path: log_path.to_path_buf(),
        exited: exited_rx,
    })
}

#[allow(unsafe_code)]
fn ask_for_shutdown_when_parent_dies(command: &mut Command) {
    // SAFETY: the closure runs between fork and exec and only makes the prctl system
    // call, which is async-signal-safe; it allocates nothing and takes no lock. It runs
    // after the uid change, which would otherwise clear the setting.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGINT).map_err(std::io::Error::from)
        });
    }
}

fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
