//! A `postmaster.pid` left behind by a cluster whose process is gone.

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::kill;
use nix::unistd::Pid;

use crate::Error;

/// How long a postmaster of this folder that is still shutting down (its parent died
/// and asked it to) is given before the folder is declared in use.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Removes `postmaster.pid` when no PostgreSQL process holds it; waits for one that is
/// still shutting down; refuses when a live one keeps running.
pub async fn clear_stale(cluster_dir: &Path) -> Result<(), Error> {
    let lock = cluster_dir.join("postmaster.pid");
    let Ok(text) = std::fs::read_to_string(&lock) else {
        return Ok(());
    };
    let Some(pid) = text
        .lines()
        .next()
        .and_then(|l| l.trim().parse::<i32>().ok())
    else {
        return remove(&lock);
    };
    let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    while is_postgres(pid) {
        if tokio::time::Instant::now() > deadline {
            return Err(Error::InUse {
                data_dir: cluster_dir.to_path_buf(),
                pid,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if lock.exists() {
        tracing::warn!(
            pid,
            "removing the stale postmaster.pid of a PostgreSQL that is gone"
        );
        remove(&lock)?;
    }
    Ok(())
}

fn is_postgres(pid: i32) -> bool {
    if kill(Pid::from_raw(pid), None).is_err() {
        return false;
    }
    // A live process with a recycled pid is not our postmaster.
    std::fs::read(format!("/proc/{pid}/comm"))
        .map(|comm| comm.starts_with(b"postgres"))
        .unwrap_or(false)
}

fn remove(lock: &Path) -> Result<(), Error> {
    match std::fs::remove_file(lock) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Io {
            context: format!("removing {}", lock.display()),
            source,
        }),
    }
}
