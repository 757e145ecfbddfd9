//! Finding the machine's PostgreSQL server binaries.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The first folder holding both `initdb` and `postgres`: on `PATH`, then at
/// `pg_config --bindir`, then the newest of `/usr/lib/postgresql/*/bin`.
pub fn find_bin_dir() -> Option<PathBuf> {
    candidates().into_iter().find(|dir| is_server_bin_dir(dir))
}

fn candidates() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default();
    // Links on PATH (e.g. /usr/local/bin/initdb) are followed to the real folder, so
    // that `postgres` is taken from the same installation as `initdb`.
    dirs = dirs
        .into_iter()
        .map(|dir| match std::fs::canonicalize(dir.join("initdb")) {
            Ok(real) => real.parent().map(Path::to_path_buf).unwrap_or(dir),
            Err(_) => dir,
        })
        .collect();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        dirs.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    }
    dirs.extend(debian_bin_dirs(Path::new("/usr/lib/postgresql")));
    dirs
}

/// `/usr/lib/postgresql/<major>/bin`, newest major first.
fn debian_bin_dirs(root: &Path) -> Vec<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((major, entry.path().join("bin")))
        })
        .collect();
    versions.sort_by_key(|(major, _)| std::cmp::Reverse(*major));
    versions.into_iter().map(|(_, dir)| dir).collect()
}

fn is_server_bin_dir(dir: &Path) -> bool {
    dir.join("initdb").is_file() && dir.join("postgres").is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_folders_are_ordered_newest_major_first() {
        let root = tempfile_dir();
        for major in ["9", "15", "16", "not-a-version"] {
            std::fs::create_dir_all(root.join(major).join("bin")).expect("mkdir");
        }
        let found = debian_bin_dirs(&root);
        assert_eq!(
            found,
            vec![root.join("16/bin"), root.join("15/bin"), root.join("9/bin")]
        );
        std::fs::remove_dir_all(root).expect("cleanup");
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("jointeval-bin-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        dir
    }
}
