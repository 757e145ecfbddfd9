//! Who runs the cluster: this process's user, or an unprivileged one when this is root.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use nix::unistd::{Gid, Uid, User, chown, geteuid};

use crate::Error;

#[derive(Debug, Clone)]
pub struct ClusterUser {
    /// `None` when the cluster runs as this process's own user.
    switch_to: Option<User>,
}

impl ClusterUser {
    /// This process's user, unless it is root: then `name_when_root`.
    pub fn resolve(name_when_root: &str) -> Result<Self, Error> {
        if !geteuid().is_root() {
            return Ok(Self { switch_to: None });
        }
        match User::from_name(name_when_root) {
            Ok(Some(user)) if !user.uid.is_root() => Ok(Self {
                switch_to: Some(user),
            }),
            _ => Err(Error::UnknownUser(name_when_root.to_string())),
        }
    }

    /// Runs `command` as the cluster's user.
    pub fn apply(&self, command: &mut Command) {
        if let Some(user) = &self.switch_to {
            command
                .uid(user.uid.as_raw())
                .gid(user.gid.as_raw())
                .env("USER", &user.name)
                .env("HOME", &user.dir);
        }
    }

    /// Gives `path` to the cluster's user.
    pub fn own(&self, path: &Path) -> Result<(), Error> {
        if let Some(user) = &self.switch_to {
            chown(path, Some(user.uid), Some(user.gid)).map_err(|e| Error::Io {
                context: format!("giving {} to {}", path.display(), user.name),
                source: e.into(),
            })?;
        }
        Ok(())
    }

    /// Fails, naming the directory that blocks the way, when the user cannot reach `dir`.
    pub fn check_reaches(&self, dir: &Path) -> Result<(), Error> {
        let Some(user) = &self.switch_to else {
            return Ok(());
        };
        if self.can_enter(user.uid, user.gid, dir) {
            return Ok(());
        }
        let blocked = dir
            .ancestors()
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .find(|d| !self.can_enter(user.uid, user.gid, d))
            .unwrap_or(dir)
            .to_path_buf();
        Err(Error::Unreachable {
            user: user.name.clone(),
            data_dir: dir.to_path_buf(),
            blocked,
        })
    }

    /// Asks the kernel rather than reading mode bits, so ACLs and groups count.
    fn can_enter(&self, uid: Uid, gid: Gid, dir: &Path) -> bool {
        Command::new("test")
            .arg("-x")
            .arg(dir)
            .uid(uid.as_raw())
            .gid(gid.as_raw())
            .current_dir("/")
            .stdin(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }
}
