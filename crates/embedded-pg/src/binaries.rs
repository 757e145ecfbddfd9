//! Finding the machine's PostgreSQL server binaries.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The first folder holding both `initdb` and `postgres`: on `PATH`, then at
/// `pg_config --bindir`, then the newest of `/usr/lib/postgresql/*/bin`.
pub fn find_bin_dir() -> Option<PathBuf> {
    let pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    search(
        std::env::var_os("PATH"),
        pg_config,
        Path::new("/usr/lib/postgresql"),
    )
}

/// Whether `dir` holds the two programs a private cluster needs.
pub fn is_server_bin_dir(dir: &Path) -> bool {
    dir.join("initdb").is_file() && dir.join("postgres").is_file()
}

fn search(
    path: Option<OsString>,
    pg_config: Option<PathBuf>,
    debian_root: &Path,
) -> Option<PathBuf> {
    // Links on PATH (e.g. /usr/local/bin/initdb) are followed to the real folder, so
    // that `postgres` is taken from the same installation as `initdb`.
    let on_path =
        path.iter().flat_map(std::env::split_paths).map(|dir| {
            match std::fs::canonicalize(dir.join("initdb")) {
                Ok(real) => real.parent().map(Path::to_path_buf).unwrap_or(dir),
                Err(_) => dir,
            }
        });
    on_path
        .chain(pg_config)
        .chain(debian_bin_dirs(debian_root))
        .find(|dir| is_server_bin_dir(dir))
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

#[cfg(test)]
mod tests {
    use super::*;

    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir()
                .join(format!("jointeval-bin-test-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("mkdir");
            Self(dir)
        }

        fn server_bin(&self, sub: &str) -> PathBuf {
            let bin = self.0.join(sub);
            std::fs::create_dir_all(&bin).expect("mkdir");
            for program in ["initdb", "postgres"] {
                std::fs::write(bin.join(program), "").expect("write");
            }
            bin
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn the_newest_debian_major_wins() {
        let root = Scratch::new("debian");
        for major in ["9", "15", "16"] {
            root.server_bin(&format!("{major}/bin"));
        }
        std::fs::create_dir_all(root.0.join("not-a-version/bin")).expect("mkdir");
        assert_eq!(
            debian_bin_dirs(&root.0),
            [
                root.0.join("16/bin"),
                root.0.join("15/bin"),
                root.0.join("9/bin")
            ]
        );
        assert_eq!(search(None, None, &root.0), Some(root.0.join("16/bin")));
    }

    #[test]
    fn path_comes_before_pg_config_before_debian_folders() {
        let scratch = Scratch::new("order");
        let on_path = scratch.server_bin("path");
        let from_pg_config = scratch.server_bin("pg_config");
        let debian = scratch.0.join("debian");
        scratch.server_bin("debian/17/bin");
        let path = std::env::join_paths([scratch.0.join("empty"), on_path.clone()]).ok();
        assert_eq!(
            search(path, Some(from_pg_config.clone()), &debian),
            Some(on_path)
        );
        assert_eq!(
            search(None, Some(from_pg_config.clone()), &debian),
            Some(from_pg_config)
        );
    }

    #[test]
    fn nothing_found_when_no_folder_has_both_programs() {
        let scratch = Scratch::new("none");
        std::fs::create_dir_all(scratch.0.join("half")).expect("mkdir");
        std::fs::write(scratch.0.join("half/initdb"), "").expect("write");
        let path = std::env::join_paths([scratch.0.join("half")]).ok();
        assert_eq!(search(path, None, &scratch.0.join("missing")), None);
    }

    #[test]
    fn the_not_found_error_names_both_ways_out() {
        let message = crate::Error::NoBinaries.to_string();
        assert!(message.contains("install PostgreSQL"), "{message}");
        assert!(message.contains("DATABASE_URL"), "{message}");
        assert!(message.contains("docker compose"), "{message}");
    }
}
