//! The system's PostgreSQL: finding its binaries, running them as a user PostgreSQL accepts,
//! and the few server operations the database service needs (template cluster, start, stop,
//! health check, role setup, dump and restore).
//!
//! Every program is started with arguments that hold no secret: the application password is
//! sent to `psql` on its standard input, and the statement that carries it runs with
//! `log_min_error_statement = panic`, so not even a failing statement puts it in the server log.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use mvi_core::{Error, ErrorKind, Op, Result};
use tokio::process::Command;

use crate::storage::io_error;

/// How to install the binaries, said in every "not found" error.
const INSTALL_HINT: &str = "install PostgreSQL's server binaries (on Debian or Ubuntu: \
     `apt-get install postgresql-15`; elsewhere the `postgresql` server package) so that \
     `initdb`, `pg_ctl` and `postgres` are on PATH, under `pg_config --bindir`, or in \
     /usr/lib/postgresql/<version>/bin";

/// The superuser `initdb` creates; reached only over the instance's private socket.
pub const SUPERUSER: &str = "postgres";

/// The OS user the server processes run as.
#[derive(Debug, Clone)]
pub enum RunAs {
    /// The current user (not root).
    Current,
    /// An unprivileged user, through `runuser` (we are root, which PostgreSQL refuses).
    User {
        /// Its name.
        name: String,
        /// Its uid.
        uid: nix::unistd::Uid,
        /// Its primary gid.
        gid: nix::unistd::Gid,
    },
}

impl RunAs {
    /// The user to run as: the current one, or `postgres` when we are root.
    pub fn detect(op: Op) -> Result<Self> {
        if !nix::unistd::geteuid().is_root() {
            return Ok(RunAs::Current);
        }
        match nix::unistd::User::from_name("postgres") {
            Ok(Some(u)) => Ok(RunAs::User {
                name: u.name,
                uid: u.uid,
                gid: u.gid,
            }),
            _ => Err(op.err(
                ErrorKind::Unavailable,
                "postgresql",
                "PostgreSQL refuses to run as root and there is no `postgres` system user to \
                 run it as: create one (`useradd --system postgres`) or run as a normal user",
            )),
        }
    }

    /// A command running `program` as this user, in `/` (the caller's directory may not be
    /// readable by that user).
    pub fn command(&self, program: &Path) -> Command {
        let mut cmd = match self {
            RunAs::Current => Command::new(program),
            RunAs::User { name, .. } => {
                let mut c = Command::new("runuser");
                c.arg("-u").arg(name).arg("--").arg(program);
                c
            }
        };
        cmd.current_dir("/")
            .env_remove("PGPASSWORD")
            .env_remove("PGDATABASE")
            .env_remove("PGUSER")
            .env_remove("PGHOST")
            .env_remove("PGPORT")
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .kill_on_drop(false);
        cmd
    }

    /// The same as [`RunAs::command`], for synchronous use (in `Drop`).
    pub fn std_command(&self, program: &Path) -> std::process::Command {
        let mut cmd = match self {
            RunAs::Current => std::process::Command::new(program),
            RunAs::User { name, .. } => {
                let mut c = std::process::Command::new("runuser");
                c.arg("-u").arg(name).arg("--").arg(program);
                c
            }
        };
        cmd.current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd
    }

    /// Gives `path` to this user (no-op for the current user) with mode `mode`.
    pub fn own(&self, op: Op, path: &Path, mode: u32) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        if let RunAs::User { uid, gid, .. } = self {
            nix::unistd::chown(path, Some(*uid), Some(*gid))
                .map_err(|e| io_error(op, path, std::io::Error::from(e)))?;
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| io_error(op, path, e))
    }

    /// Whether this user can reach `dir` (search permission on it and every ancestor).
    pub fn can_traverse(&self, dir: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        let RunAs::User { uid, gid, .. } = self else {
            return true;
        };
        let Ok(dir) = dir.canonicalize() else {
            return false;
        };
        dir.ancestors().all(|p| match std::fs::metadata(p) {
            Ok(m) => {
                let mode = m.mode();
                if m.uid() == uid.as_raw() {
                    mode & 0o100 != 0
                } else if m.gid() == gid.as_raw() {
                    mode & 0o010 != 0
                } else {
                    mode & 0o001 != 0
                }
            }
            Err(_) => false,
        })
    }

    /// The uid files of the cluster belong to.
    pub fn uid(&self) -> u32 {
        match self {
            RunAs::Current => nix::unistd::geteuid().as_raw(),
            RunAs::User { uid, .. } => uid.as_raw(),
        }
    }
}

/// An installed PostgreSQL.
#[derive(Debug, Clone)]
pub struct Install {
    /// The directory holding initdb, pg_ctl, postgres, psql, pg_dump, pg_restore.
    pub bin: PathBuf,
    /// Its major version (`15`).
    pub major: u32,
}

impl Install {
    /// Finds the binaries: `initdb` on PATH, then `pg_config --bindir`, then the highest
    /// version under /usr/lib/postgresql.
    pub fn find(op: Op) -> Result<Self> {
        let usable = |bin: &Path| -> Option<Install> {
            let complete = ["initdb", "pg_ctl", "postgres"]
                .iter()
                .all(|p| bin.join(p).is_file());
            let major = complete.then(|| server_major(&bin.join("postgres")))??;
            Some(Install {
                bin: bin.to_path_buf(),
                major,
            })
        };
        let mut candidates: Vec<PathBuf> = Vec::new();
        if let Some(path) = std::env::var_os("PATH") {
            for dir in std::env::split_paths(&path) {
                let initdb = dir.join("initdb");
                if initdb.is_file() {
                    // /usr/local/bin/initdb is often a link into the real bin directory,
                    // where pg_dump and psql of the same version live too.
                    if let Some(real) = initdb
                        .canonicalize()
                        .ok()
                        .and_then(|p| p.parent().map(Path::to_path_buf))
                    {
                        candidates.push(real);
                    }
                    candidates.push(dir);
                }
            }
        }
        // Stop at the first usable one: each lookup runs a program.
        for bin in &candidates {
            if let Some(found) = usable(bin) {
                return Ok(found);
            }
        }
        candidates.clear();
        if let Ok(out) = std::process::Command::new("pg_config")
            .arg("--bindir")
            .stderr(Stdio::null())
            .output()
            && out.status.success()
        {
            let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if !dir.is_empty() {
                candidates.push(PathBuf::from(dir));
            }
        }
        let mut versioned: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let v = e.file_name().to_str()?.parse::<u32>().ok()?;
                Some((v, e.path().join("bin")))
            })
            .collect();
        versioned.sort_by_key(|v| std::cmp::Reverse(v.0));
        candidates.extend(versioned.into_iter().map(|(_, p)| p));

        for bin in &candidates {
            if let Some(found) = usable(bin) {
                return Ok(found);
            }
        }
        Err(op.err(
            ErrorKind::Unavailable,
            "postgresql",
            format!("no PostgreSQL server binaries found: {INSTALL_HINT}"),
        ))
    }

    /// The path of the tool `name`: in the server's bin directory, else on PATH.
    pub fn tool(&self, name: &str) -> PathBuf {
        let p = self.bin.join(name);
        if p.is_file() { p } else { PathBuf::from(name) }
    }
}

/// The major version `postgres --version` reports (`postgres (PostgreSQL) 15.18 (Debian ...)`).
fn server_major(postgres: &Path) -> Option<u32> {
    let out = std::process::Command::new(postgres)
        .arg("--version")
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text
        .split_whitespace()
        .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))?;
    version
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Runs `cmd`, turning a failure into an Internal error naming `what` with its stderr.
pub async fn run(op: Op, resource: &str, what: &str, mut cmd: Command) -> Result<Vec<u8>> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let out = cmd.output().await.map_err(|e| {
        op.err(
            ErrorKind::Unavailable,
            resource,
            format!("cannot run {what}: {e}"),
        )
        .with_source(e)
    })?;
    if out.status.success() {
        return Ok(out.stdout);
    }
    Err(op.err(
        ErrorKind::Internal,
        resource,
        format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    ))
}

/// Runs `cmd` with `input` on its standard input (how SQL holding a secret reaches psql);
/// its standard output.
pub async fn run_with_input(
    op: Op,
    resource: &str,
    what: &str,
    mut cmd: Command,
    input: &[u8],
) -> Result<Vec<u8>> {
    use tokio::io::AsyncWriteExt;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let spawn_err = |e: std::io::Error| {
        op.err(
            ErrorKind::Unavailable,
            resource,
            format!("cannot run {what}: {e}"),
        )
        .with_source(e)
    };
    let mut child = cmd.spawn().map_err(spawn_err)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input).await.map_err(spawn_err)?;
        drop(stdin);
    }
    let out = child.wait_with_output().await.map_err(spawn_err)?;
    if out.status.success() {
        return Ok(out.stdout);
    }
    Err(op.err(
        ErrorKind::Internal,
        resource,
        format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    ))
}

/// A free loopback port, as the OS hands one out (it may be taken again before the server
/// binds it: the caller retries on "address in use").
pub fn free_port(op: Op) -> Result<u16> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0))
        .map_err(|e| op.err(ErrorKind::Unavailable, "127.0.0.1", e.to_string()))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| op.internal("127.0.0.1", e))
}

/// The last `n` lines of a server log, for errors.
pub fn log_tail(path: &Path, n: usize) -> String {
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The pid and port a running postmaster wrote in `data/postmaster.pid`, if it is alive.
pub fn running_postmaster(data: &Path) -> Option<(i32, u16)> {
    let text = std::fs::read_to_string(data.join("postmaster.pid")).ok()?;
    let mut lines = text.lines();
    let pid: i32 = lines.next()?.trim().parse().ok()?;
    let port: u16 = lines.nth(2)?.trim().parse().ok()?;
    let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
    alive.then_some((pid, port))
}

/// Whether a server accepts connections on 127.0.0.1:`port` (`pg_isready`).
pub async fn is_ready(install: &Install, port: u16) -> bool {
    let mut cmd = Command::new(install.tool("pg_isready"));
    cmd.args(["-q", "-h", "127.0.0.1", "-t", "3", "-p"])
        .arg(port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    matches!(cmd.status().await, Ok(s) if s.success())
}

/// Whether a start failed because the port was taken.
pub fn port_taken(log: &str) -> bool {
    log.contains("Address already in use") || log.contains("could not create any TCP/IP sockets")
}

/// An error saying that `what` about `resource` failed, for an internal step that has no
/// native error value.
pub fn failed(op: Op, resource: &str, what: String) -> Error {
    op.err(ErrorKind::Internal, resource, what)
}
