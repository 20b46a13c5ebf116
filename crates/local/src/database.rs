//! The local Database service: a real PostgreSQL server per database instance, run from the
//! system's PostgreSQL binaries.
//!
//! # How it is stored, and why
//!
//! ```text
//! database/state.json              instances (spec, port, folder, pid, password ciphertext)
//!                                  and snapshots; rewritten atomically on every change
//! database/clusters/<name>/data    the instance's PostgreSQL data directory
//! database/clusters/<name>/postgres.log   its server log
//! database/snapshots/<name>.dump   a snapshot: `pg_dump -Fc` of the application database
//! ```
//!
//! Each instance is its own cluster so it behaves like an RDS instance: its own port, its own
//! users, deleted as a whole. A new instance is a copy of a template cluster made once per
//! machine and PostgreSQL version by `initdb` (in the temp directory, owned by the user the
//! servers run as), which takes a fresh instance from ≈ 1 s to a few hundred ms. The server
//! listens on 127.0.0.1 only, on a free port (retried if taken meanwhile), with password
//! (SCRAM) authentication for TCP; the superuser is reachable only over a Unix socket in a
//! private 0700 folder under the temp directory (a socket path must stay under 108 bytes).
//!
//! The application user's password is 32 random characters from the OS-seeded CSPRNG. It
//! is encrypted through the Crypto service under the key `alias/mvi-databases` (created on
//! first use) with the database's name as encryption context; only the ciphertext is kept.
//! [`Databases::credentials`] decrypts it. It reaches PostgreSQL on psql's standard input,
//! never on a command line, in a file or in a log.
//!
//! PostgreSQL refuses to run as root. When the program is root, every server program runs as
//! the `postgres` system user (through `runuser`), which owns the clusters. If that user
//! cannot reach the state root (a root under `/root`, or a 0700 temp dir), the clusters live
//! in a folder of their own under the temp directory instead (`/tmp/mvi-db-XXXXXX`, recorded
//! in `state.json`); snapshots and state stay under the state root.
//!
//! # Lifetime of the servers
//!
//! Servers of an on-disk state root keep running when the service is dropped, so a restarted
//! program finds them: at open, each known instance is reattached if its postmaster is alive
//! on its port and accepts connections, or started again (on a new port if its old one was
//! taken). [`LocalDatabases::shutdown`] stops them all. In memory mode the clusters live in a
//! temp folder owned by the service; dropping the service stops the servers (immediate
//! shutdown) and removes it.
//!
//! Snapshots are logical dumps (`pg_dump -Fc` of the application database): consistent while
//! the server runs, compact, and restorable into any instance of the same major version. A
//! restore creates a new instance and runs `pg_restore` into it.

mod backups;
mod multi_az;
mod postgres;
mod relay;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use mvi_core::crypto::{CreateKey, Crypto, EncryptionContext};
use mvi_core::database::{
    Credentials, DatabaseInfo, DatabaseSpec, DatabaseState, Databases, RestoreTime, SnapshotInfo,
    validate_name,
};
use mvi_core::log::Logs;
use mvi_core::metric::Metrics;
use mvi_core::{Error, ErrorKind, Op, Result, SecretString, Service};
use rand::Rng;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::storage::{Ctx, JsonState, io_error};
use backups::Source;
use multi_az::{Server, lock};
use postgres::{Install, RunAs, SUPERUSER};
use relay::Relay;

const STATE_FILE: &str = "state.json";
/// The Crypto key that encrypts every instance's password.
pub const KEY_ALIAS: &str = "alias/mvi-databases";
/// The application user and database every instance gets.
pub const APP: &str = "app";
/// Start attempts before giving up when the chosen port keeps being taken.
const START_ATTEMPTS: usize = 5;

fn op(name: &'static str) -> Op {
    Op::new(Service::Database, name)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Instance {
    info: DatabaseInfo,
    port: u16,
    /// The instance's folder (`data/` and `postgres.log` inside).
    dir: PathBuf,
    /// The postmaster's pid when last seen running.
    pid: Option<i32>,
    /// The password, encrypted under [`KEY_ALIAS`], hex.
    password: String,
    /// The primary's zone.
    #[serde(default)]
    zone: String,
    /// A multi-AZ instance's standby (none while a new one is built).
    #[serde(default)]
    standby: Option<Server>,
    /// A multi-AZ instance's endpoint: the port of its relay.
    #[serde(default)]
    relay_port: Option<u16>,
    /// Stopped because its zone failed: started again when the zone is back.
    #[serde(default)]
    zone_down: bool,
    /// Its continuous backups (base backup and archived WAL), when it keeps them.
    #[serde(default)]
    backups: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Snapshot {
    info: SnapshotInfo,
    /// False while the dump is being written.
    ready: bool,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct State {
    /// Where the clusters live when the server user cannot reach the state root.
    clusters: Option<PathBuf>,
    databases: BTreeMap<String, Instance>,
    snapshots: BTreeMap<String, Snapshot>,
}

/// The PostgreSQL installation and the user it runs as.
#[derive(Debug)]
struct Pg {
    install: Install,
    run_as: RunAs,
}

/// The local Database service.
#[derive(Debug)]
pub struct LocalDatabases {
    sim: Arc<crate::sim::Sim>,
    crypto: Arc<dyn Crypto>,
    state: JsonState<State>,
    /// The installation, or why there is none (reported by every operation that needs it).
    /// Looked up on first need (it runs `postgres --version`), so opening a cloud that
    /// never uses a database costs nothing here.
    pg: std::sync::OnceLock<std::result::Result<Pg, Error>>,
    clusters: PathBuf,
    snapshots: PathBuf,
    /// In memory mode: the folder holding clusters and snapshots, removed on drop.
    temp: Option<tempfile::TempDir>,
    template: tokio::sync::OnceCell<PathBuf>,
    key: tokio::sync::OnceCell<()>,
    /// Where failovers and other events are logged and graphed.
    logs: Option<Arc<dyn Logs>>,
    metrics: Option<Arc<dyn Metrics>>,
    /// The endpoints of multi-AZ instances, by name.
    relays: std::sync::Mutex<BTreeMap<String, Relay>>,
    /// Serialises failovers, standby builds and reboots.
    failover: tokio::sync::Mutex<()>,
    /// The zones failed now, from the VM service (none until [`LocalDatabases::attach`]).
    zones: std::sync::OnceLock<tokio::sync::watch::Receiver<BTreeSet<String>>>,
    /// This service, for the tasks it starts (set by [`LocalDatabases::attach`]).
    me: std::sync::OnceLock<std::sync::Weak<LocalDatabases>>,
}

/// What a new server needs recorded.
struct Provisioned {
    port: u16,
    pid: Option<i32>,
    password: String,
}

impl LocalDatabases {
    /// Opens the service: finds PostgreSQL (its absence is reported by `create_database`, not
    /// here, so the other services work without it) and reattaches to or restarts every known
    /// instance. Passwords are encrypted through `crypto`.
    pub async fn open(ctx: Ctx, crypto: Arc<dyn Crypto>) -> Result<Self> {
        let o = op("open");
        let state: JsonState<State> = JsonState::open(&ctx, o, STATE_FILE)?;
        let (temp, clusters, snapshots) = match &ctx.dir {
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("mvi-db-")
                    .tempdir()
                    .map_err(|e| io_error(o, &std::env::temp_dir(), e))?;
                set_mode(o, temp.path(), 0o711)?;
                let clusters = temp.path().join("clusters");
                let snapshots = temp.path().join("snapshots");
                (Some(temp), clusters, snapshots)
            }
            Some(dir) => {
                let recorded = state.lock().clusters.clone();
                let run_as = RunAs::detect(o);
                let clusters = match (recorded, &run_as) {
                    (Some(p), _) => p,
                    (None, Ok(run_as)) if !run_as.can_traverse(dir) => {
                        let outside = tempfile::Builder::new()
                            .prefix("mvi-db-")
                            .tempdir()
                            .map_err(|e| io_error(o, &std::env::temp_dir(), e))?
                            .keep();
                        set_mode(o, &outside, 0o711)?;
                        state.mutate(o, |s| {
                            s.clusters = Some(outside.clone());
                            Ok(())
                        })?;
                        outside
                    }
                    _ => dir.join("clusters"),
                };
                (None, clusters, dir.join("snapshots"))
            }
        };
        for d in [&clusters, &snapshots] {
            std::fs::create_dir_all(d).map_err(|e| io_error(o, d, e))?;
        }
        set_mode(o, &clusters, 0o711)?;
        let svc = LocalDatabases {
            sim: ctx.sim.clone(),
            crypto,
            state,
            pg: std::sync::OnceLock::new(),
            clusters,
            snapshots,
            temp,
            template: tokio::sync::OnceCell::new(),
            key: tokio::sync::OnceCell::new(),
            logs: None,
            metrics: None,
            relays: std::sync::Mutex::default(),
            failover: tokio::sync::Mutex::new(()),
            zones: std::sync::OnceLock::new(),
            me: std::sync::OnceLock::new(),
        };
        svc.recover().await?;
        Ok(svc)
    }

    /// Logs events to `logs` and graphs failovers in `metrics`.
    pub fn with_telemetry(mut self, logs: Arc<dyn Logs>, metrics: Arc<dyn Metrics>) -> Self {
        self.logs = Some(logs);
        self.metrics = Some(metrics);
        self
    }

    /// Follows the zones that fail and come back (the VM service's `fail_zone` and
    /// `restore_zone`): multi-AZ instances fail over, standbys are replaced, single-AZ
    /// instances stop and start again (see `database/multi_az.rs`).
    pub fn attach(self: &Arc<Self>, mut zones: tokio::sync::watch::Receiver<BTreeSet<String>>) {
        let _ = self.me.set(Arc::downgrade(self));
        zones.mark_changed();
        let _ = self.zones.set(zones.clone());
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            while zones.changed().await.is_ok() {
                let Some(me) = weak.upgrade() else { return };
                me.settle_zones().await;
            }
        });
    }

    /// The zones failed now.
    fn failed_zones(&self) -> BTreeSet<String> {
        self.zones
            .get()
            .map(|z| z.borrow().clone())
            .unwrap_or_default()
    }

    /// Stops every server (fast shutdown: sessions are cut, committed data is kept). Their
    /// instances stay known: the next open starts them again.
    pub async fn shutdown(&self) -> Result<()> {
        let pg = self.pg(op("shutdown"))?;
        let dirs: Vec<PathBuf> = self
            .state
            .lock()
            .databases
            .values()
            .flat_map(|i| {
                std::iter::once(i.dir.clone()).chain(i.standby.iter().map(|s| s.dir.clone()))
            })
            .collect();
        for dir in dirs {
            stop(op("shutdown"), pg, &dir, "fast").await?;
        }
        Ok(())
    }

    fn pg(&self, o: Op) -> Result<&Pg> {
        self.pg.get_or_init(find).as_ref().map_err(|e| {
            Error::new(e.kind(), Service::Database, o.operation, e.message())
                .with_resource("postgresql")
        })
    }

    /// Settles what a previous run left: unfinished creations and deletions are undone or
    /// finished, and every instance is reattached or started.
    async fn recover(&self) -> Result<()> {
        let o = op("open");
        let nothing_to_do = {
            let s = self.state.lock();
            s.databases.is_empty() && s.snapshots.values().all(|s| s.ready)
        };
        if nothing_to_do {
            return Ok(());
        }
        let Ok(pg) = self.pg(o) else {
            return Ok(());
        };
        let instances: Vec<Instance> = self.state.lock().databases.values().cloned().collect();
        for inst in instances {
            let name = inst.info.spec.name.clone();
            match inst.info.state {
                DatabaseState::Creating | DatabaseState::Deleting => {
                    stop(o, pg, &inst.dir, "immediate").await.ok();
                    remove_dir(o, &inst.dir)?;
                    self.state.mutate(o, |s| {
                        s.databases.remove(&name);
                        Ok(())
                    })?;
                }
                DatabaseState::Available | DatabaseState::Stopped => {
                    let data = inst.dir.join("data");
                    let running = match postgres::running_postmaster(&data) {
                        Some((pid, port))
                            if port == inst.port && postgres::is_ready(&pg.install, port).await =>
                        {
                            Ok((port, Some(pid)))
                        }
                        _ => start(o, pg, &name, &inst.dir, Some(inst.port))
                            .await
                            .map(|port| (port, postgres::running_postmaster(&data).map(|p| p.0))),
                    };
                    match running {
                        Ok((port, pid)) => self.record_running(o, &name, port, pid)?,
                        Err(e) => {
                            tracing::warn!(database = %name, error = %e, "cannot restart the database server");
                            self.state.mutate(o, |s| {
                                if let Some(i) = s.databases.get_mut(&name) {
                                    i.info.state = DatabaseState::Stopped;
                                }
                                Ok(())
                            })?;
                        }
                    }
                    if inst.info.spec.multi_az {
                        self.recover_multi_az(o, pg, &name).await;
                    }
                }
            }
        }
        let unfinished: Vec<String> = self
            .state
            .lock()
            .snapshots
            .iter()
            .filter(|(_, s)| !s.ready)
            .map(|(n, _)| n.clone())
            .collect();
        for name in unfinished {
            let file = self.snapshot_file(&name);
            remove_file(o, &file)?;
            self.state.mutate(o, |s| {
                s.snapshots.remove(&name);
                Ok(())
            })?;
        }
        Ok(())
    }

    /// A multi-AZ instance after a restart: its endpoint listens again on its port, its
    /// standby runs and streams from the primary. A primary that did not start fails over to
    /// the standby; a missing standby is built again once zones are known (`attach`).
    async fn recover_multi_az(&self, o: Op, pg: &Pg, name: &str) {
        let Ok(inst) = self.instance(o, name) else {
            return;
        };
        let target = if inst.info.state == DatabaseState::Available {
            inst.port
        } else {
            0
        };
        match Relay::start(inst.relay_port.unwrap_or(0), target).await {
            Ok(relay) => {
                let port = relay.port();
                lock(&self.relays).insert(name.to_string(), relay);
                let moved = self.state.mutate(o, |s| {
                    if let Some(i) = s.databases.get_mut(name) {
                        i.relay_port = Some(port);
                        i.info.endpoint = format!("127.0.0.1:{port}");
                    }
                    Ok(())
                });
                if let Err(e) = moved {
                    tracing::warn!(database = name, error = %e, "endpoint not recorded");
                }
            }
            Err(e) => {
                tracing::warn!(database = name, error = %e, "no endpoint for the database");
            }
        }
        let Some(sb) = inst.standby.clone() else {
            return;
        };
        let data = sb.dir.join("data");
        let standby = match postgres::running_postmaster(&data) {
            Some((_, port)) if port == sb.port => Ok(port),
            _ => start(o, pg, name, &sb.dir, Some(sb.port)).await,
        };
        let settled = async {
            let port = standby?;
            self.state.mutate(o, |s| {
                if let Some(i) = s.databases.get_mut(name)
                    && let Some(sb) = i.standby.as_mut()
                {
                    sb.port = port;
                    sb.pid = postgres::running_postmaster(&data).map(|p| p.0);
                }
                Ok(())
            })?;
            if inst.info.state == DatabaseState::Available {
                self.point_standby(o, pg, name, &sb.dir, port, &inst.dir, inst.port)
                    .await
            } else {
                self.fail_over(o, pg, name, "the primary did not start again")
                    .await?;
                self.set_state(o, name, DatabaseState::Available, false)
            }
        };
        if let Err(e) = settled.await {
            tracing::warn!(database = name, error = %e, "the standby did not come back");
            self.note(
                name,
                format!("the standby did not come back: {}", e.message()),
            )
            .await;
        }
    }

    fn record_running(&self, o: Op, name: &str, port: u16, pid: Option<i32>) -> Result<()> {
        self.state.mutate(o, |s| {
            if let Some(i) = s.databases.get_mut(name) {
                i.port = port;
                i.pid = pid;
                if i.relay_port.is_none() {
                    i.info.endpoint = format!("127.0.0.1:{port}");
                }
                i.info.state = DatabaseState::Available;
            }
            Ok(())
        })
    }

    fn snapshot_file(&self, name: &str) -> PathBuf {
        self.snapshots.join(format!("{name}.dump"))
    }

    /// Checks a spec against what this machine can run.
    fn check_spec(&self, o: Op, spec: &DatabaseSpec) -> Result<&Pg> {
        validate_name(o, &spec.name, 63)?;
        if spec.engine != "postgres" {
            return Err(o.unsupported(format!(
                "engine {:?} is not supported locally: only \"postgres\"",
                spec.engine
            )));
        }
        let pg = self.pg(o)?;
        let major = pg.install.major.to_string();
        if spec.version != major && !spec.version.starts_with(&format!("{major}.")) {
            return Err(o.invalid(
                &spec.name,
                format!(
                    "PostgreSQL version {:?} is not installed; the installed version is {major}",
                    spec.version
                ),
            ));
        }
        Ok(pg)
    }

    /// Creates (or restores from `dump`) the instance `spec` describes, reserving its name
    /// first so concurrent creations of one name cannot both proceed.
    async fn create(&self, o: Op, spec: DatabaseSpec, source: Source) -> Result<DatabaseInfo> {
        let pg = self.check_spec(o, &spec)?;
        let name = spec.name.clone();
        let dir = self.clusters.join(&name);
        let backups = (spec.backup_retention_days > 0).then(|| self.backups_dir(&name));
        let zones = self.available_zones();
        let zone = match (zones.len(), spec.multi_az) {
            (0, _) => {
                return Err(o.err(
                    ErrorKind::Unavailable,
                    &name,
                    "every zone has failed: no database can start",
                ));
            }
            (1, true) => {
                return Err(o.err(
                    ErrorKind::Unavailable,
                    &name,
                    format!(
                        "a multi-AZ database needs two available zones; only {} is",
                        zones[0]
                    ),
                ));
            }
            _ => zones[0].clone(),
        };
        let info = DatabaseInfo {
            spec,
            state: DatabaseState::Creating,
            endpoint: String::new(),
            created: self.ctx_now(),
            zone: Some(zone.clone()),
            standby_zone: None,
            events: Vec::new(),
            latest_restorable_time: None,
        };
        self.state.mutate(o, |s| {
            if s.databases.contains_key(&name) {
                return Err(o.already_exists(&name, "a database with this name exists"));
            }
            s.databases.insert(
                name.clone(),
                Instance {
                    info: info.clone(),
                    port: 0,
                    dir: dir.clone(),
                    pid: None,
                    password: String::new(),
                    zone: zone.clone(),
                    standby: None,
                    relay_port: None,
                    zone_down: false,
                    backups: backups.clone(),
                },
            );
            Ok(())
        })?;
        let made = async {
            let p = self
                .provision(o, pg, &name, &dir, &source, backups.as_deref())
                .await?;
            let relay = if info.spec.multi_az {
                let relay = Relay::start(0, p.port).await.map_err(|e| {
                    o.err(ErrorKind::Unavailable, &name, format!("no endpoint: {e}"))
                })?;
                Some(relay)
            } else {
                None
            };
            self.state.mutate(o, |s| {
                let i = s
                    .databases
                    .get_mut(&name)
                    .ok_or_else(|| o.not_found(&name, "the database vanished while created"))?;
                i.port = p.port;
                i.pid = p.pid;
                i.password = p.password.clone();
                i.relay_port = relay.as_ref().map(Relay::port);
                i.info.endpoint =
                    format!("127.0.0.1:{}", relay.as_ref().map_or(p.port, Relay::port));
                Ok(())
            })?;
            if let Some(relay) = relay {
                lock(&self.relays).insert(name.clone(), relay);
                let _lock = self.failover.lock().await;
                let standby = zones[1].clone();
                self.build_standby(o, pg, &name, &standby).await?;
            }
            self.state.mutate(o, |s| {
                let i = s
                    .databases
                    .get_mut(&name)
                    .ok_or_else(|| o.not_found(&name, "the database vanished while created"))?;
                i.info.state = DatabaseState::Available;
                Ok(i.info.clone())
            })
        };
        match made.await {
            Ok(info) => Ok(info),
            Err(e) => {
                lock(&self.relays).remove(&name);
                stop(o, pg, &dir, "immediate").await.ok();
                remove_dir(o, &dir).ok();
                if let Some(b) = &backups {
                    remove_dir(o, b).ok();
                }
                let standby = self
                    .state
                    .lock()
                    .databases
                    .get(&name)
                    .and_then(|i| i.standby.clone());
                if let Some(sb) = standby {
                    stop(o, pg, &sb.dir, "immediate").await.ok();
                    remove_dir(o, &sb.dir).ok();
                }
                self.state
                    .mutate(o, |s| {
                        s.databases.remove(&name);
                        Ok(())
                    })
                    .ok();
                Err(e)
            }
        }
    }

    fn ctx_now(&self) -> mvi_core::Timestamp {
        self.sim.now()
    }

    /// The cluster (a template copy, or a base backup in recovery), access rules, backups,
    /// start, the application user and database (or its new password), and the restore.
    async fn provision(
        &self,
        o: Op,
        pg: &Pg,
        name: &str,
        dir: &Path,
        source: &Source,
        backups: Option<&Path>,
    ) -> Result<Provisioned> {
        let base = match source {
            Source::PointInTime { backups, .. } => backups.join("base"),
            _ => self.template(o, pg).await?,
        };
        remove_dir(o, dir)?;
        std::fs::create_dir(dir).map_err(|e| io_error(o, dir, e))?;
        pg.run_as.own(o, dir, 0o700)?;
        let data = dir.join("data");
        let mut cp = pg.run_as.command(Path::new("cp"));
        cp.arg("-a").arg(&base).arg(&data);
        postgres::run(o, name, "copying the template cluster", cp).await?;
        let hba = data.join("pg_hba.conf");
        std::fs::write(
            &hba,
            format!(
                "# Written by mvi: the superuser only over the private socket (a standby\n\
                 # streams that way too), everyone else with a password over TCP on the\n\
                 # loopback address.\n\
                 local all {SUPERUSER} trust\n\
                 local replication {SUPERUSER} trust\n\
                 host all all 127.0.0.1/32 scram-sha-256\n"
            ),
        )
        .map_err(|e| io_error(o, &hba, e))?;
        pg.run_as.own(o, &hba, 0o600)?;

        let password: Zeroizing<String> = Zeroizing::new(
            rand::rng()
                .sample_iter(&rand::distr::Alphanumeric)
                .take(32)
                .map(char::from)
                .collect(),
        );
        self.ensure_key(o).await?;
        let ciphertext = self
            .crypto
            .encrypt(KEY_ALIAS, password.as_bytes(), &context(name))
            .await?;

        // A restored cluster's base is still in recovery: it gets its own base once
        // promoted.
        let restoring = matches!(source, Source::PointInTime { .. });
        self.set_up_backups(o, pg, name, &data, backups, !restoring)
            .await?;
        let port = match source {
            Source::PointInTime { backups: from, to } => {
                let latest = self.latest_restorable(from);
                self.set_up_recovery(o, pg, &data, from, *to)?;
                let port = self.recover_to(o, pg, name, dir, latest, *to).await?;
                if let Some(own) = backups {
                    stop(o, pg, dir, "fast").await?;
                    self.copy_base(o, pg, name, &data, own).await?;
                    start(o, pg, name, dir, Some(port)).await?
                } else {
                    port
                }
            }
            _ => start(o, pg, name, dir, None).await?,
        };
        let socket = socket_dir(&data)
            .ok_or_else(|| postgres::failed(o, name, "the server wrote no socket folder".into()))?;
        let sql = Zeroizing::new(if restoring {
            format!(
                "SET log_min_error_statement = panic;\n\
                 SET log_statement = 'none';\n\
                 ALTER ROLE {APP} PASSWORD '{}';\n",
                password.as_str()
            )
        } else {
            format!(
                "SET log_min_error_statement = panic;\n\
                 SET log_statement = 'none';\n\
                 CREATE ROLE {APP} LOGIN PASSWORD '{}';\n\
                 CREATE DATABASE {APP} OWNER {APP};\n",
                password.as_str()
            )
        });
        let mut psql = pg.run_as.command(&pg.install.tool("psql"));
        psql.args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-U",
            SUPERUSER,
            "-d",
            "postgres",
        ])
        .arg("-h")
        .arg(&socket)
        .arg("-p")
        .arg(port.to_string());
        postgres::run_with_input(
            o,
            name,
            "setting the application user's password",
            psql,
            sql.as_bytes(),
        )
        .await?;
        if let Source::Dump(dump) = source {
            let file = std::fs::File::open(dump).map_err(|e| io_error(o, dump, e))?;
            let mut restore = pg.run_as.command(&pg.install.tool("pg_restore"));
            restore
                .args(["--no-owner", "--exit-on-error", "-U", SUPERUSER, "-d", APP])
                .arg(format!("--role={APP}"))
                .arg("-h")
                .arg(&socket)
                .arg("-p")
                .arg(port.to_string())
                .stdin(std::process::Stdio::from(file));
            postgres::run(o, name, "pg_restore", restore).await?;
        }
        let pid = postgres::running_postmaster(&data).map(|p| p.0);
        Ok(Provisioned {
            port,
            pid,
            password: hex::encode(&ciphertext),
        })
    }

    /// The template cluster: made by `initdb` once per machine, PostgreSQL version and server
    /// user, in the temp directory (`mvi-pg-template-<major>-w1-<uid>`); a private one if that place is held by someone else.
    async fn template(&self, o: Op, pg: &Pg) -> Result<PathBuf> {
        self.template
            .get_or_try_init(|| async {
                let uid = pg.run_as.uid();
                let shared = std::env::temp_dir()
                    .join(format!("mvi-pg-template-{}-w1-{uid}", pg.install.major));
                if template_ok(&shared, uid) {
                    return Ok(shared);
                }
                let target = if shared.exists() {
                    self.clusters.join(".template")
                } else {
                    shared
                };
                if template_ok(&target, uid) {
                    return Ok(target);
                }
                let tmp = PathBuf::from(format!(
                    "{}.{:016x}",
                    target.display(),
                    rand::random::<u64>()
                ));
                let mut initdb = pg.run_as.command(&pg.install.bin.join("initdb"));
                initdb.arg("-D").arg(&tmp).args([
                    "-U",
                    SUPERUSER,
                    "-A",
                    "trust",
                    "--no-locale",
                    "-E",
                    "UTF8",
                    // 1 MiB WAL segments instead of 16: every new instance copies the
                    // template, and a smaller one (28 MB instead of 39) copies faster.
                    "--wal-segsize=1",
                ]);
                if let Err(e) = postgres::run(o, "template", "initdb", initdb).await {
                    remove_dir(o, &tmp).ok();
                    return Err(e);
                }
                // Another process may have made it meanwhile: theirs is as good as ours.
                if std::fs::rename(&tmp, &target).is_err() {
                    remove_dir(o, &tmp)?;
                }
                if template_ok(&target, uid) {
                    Ok(target)
                } else {
                    Err(postgres::failed(
                        o,
                        "template",
                        format!("{} is not a usable template cluster", target.display()),
                    ))
                }
            })
            .await
            .cloned()
    }

    /// Creates the password key on first use.
    async fn ensure_key(&self, o: Op) -> Result<()> {
        self.key
            .get_or_try_init(|| async {
                match self.crypto.describe_key(KEY_ALIAS).await {
                    Ok(_) => Ok(()),
                    Err(e) if e.kind() == ErrorKind::NotFound => {
                        match self
                            .crypto
                            .create_key(CreateKey::new("mvi: database passwords").alias(KEY_ALIAS))
                            .await
                        {
                            Ok(_) => Ok(()),
                            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
                            Err(e) => Err(e),
                        }
                    }
                    Err(e) => Err(Error::new(
                        e.kind(),
                        Service::Database,
                        o.operation,
                        format!("cannot use the password key {KEY_ALIAS}: {}", e.message()),
                    )),
                }
            })
            .await
            .copied()
    }

    /// What `describe_database` says of an instance: its info, with the latest restorable
    /// time read from its backups.
    fn info_of(&self, inst: &Instance) -> DatabaseInfo {
        let mut info = inst.info.clone();
        info.latest_restorable_time = inst
            .backups
            .as_deref()
            .and_then(|b| self.latest_restorable(b));
        info
    }

    fn instance(&self, o: Op, name: &str) -> Result<Instance> {
        self.state
            .lock()
            .databases
            .get(name)
            .cloned()
            .ok_or_else(|| o.not_found(name, "no such database"))
    }
}

impl Drop for LocalDatabases {
    fn drop(&mut self) {
        // Servers of an on-disk root keep running for the next open; in memory mode they
        // belong to this service and go with it.
        if self.temp.is_none() {
            return;
        }
        // Never looked up: no server was started.
        let Some(Ok(pg)) = self.pg.get() else {
            return;
        };
        let dirs: Vec<PathBuf> = self
            .state
            .lock()
            .databases
            .values()
            .flat_map(|i| {
                std::iter::once(i.dir.clone()).chain(i.standby.iter().map(|s| s.dir.clone()))
            })
            .collect();
        for dir in dirs {
            stop_now(pg, &dir);
        }
    }
}

/// Stops every server of the state root `root` at once and removes their clusters, including
/// those kept outside the root. For test harnesses and uninstallers: a program that crashed
/// mid-test leaves no postgres processes behind. Best effort; errors are ignored.
pub fn purge(root: &Path) {
    let file = root.join(Service::Database.as_str()).join(STATE_FILE);
    let Ok(bytes) = std::fs::read(&file) else {
        return;
    };
    let Ok(state) = serde_json::from_slice::<State>(&bytes) else {
        return;
    };
    let Ok(pg) = find() else {
        return;
    };
    for inst in state.databases.values() {
        for dir in std::iter::once(&inst.dir).chain(inst.standby.iter().map(|s| &s.dir)) {
            stop_now(&pg, dir);
            std::fs::remove_dir_all(dir).ok();
        }
    }
    if let Some(outside) = state.clusters {
        std::fs::remove_dir_all(outside).ok();
    }
}

/// Finds PostgreSQL and the user to run it as.
fn find() -> Result<Pg> {
    let o = op("open");
    Ok(Pg {
        install: Install::find(o)?,
        run_as: RunAs::detect(o)?,
    })
}

/// Immediate shutdown, synchronously (for `Drop`), and removal of the socket folder.
fn stop_now(pg: &Pg, dir: &Path) {
    let data = dir.join("data");
    if postgres::running_postmaster(&data).is_none() {
        return;
    }
    let socket = socket_dir(&data);
    let mut cmd = pg.run_as.std_command(&pg.install.bin.join("pg_ctl"));
    cmd.arg("-D")
        .arg(&data)
        .args(["stop", "-m", "immediate", "-w"]);
    let _ = cmd.status();
    if let Some(s) = socket {
        std::fs::remove_dir_all(s).ok();
    }
}

/// Stops the server of the cluster in `dir`, if it runs, and removes its socket folder.
async fn stop(o: Op, pg: &Pg, dir: &Path, mode: &str) -> Result<()> {
    let data = dir.join("data");
    if postgres::running_postmaster(&data).is_none() {
        return Ok(());
    }
    let socket = socket_dir(&data);
    let mut cmd = pg.run_as.command(&pg.install.bin.join("pg_ctl"));
    cmd.arg("-D").arg(&data).args(["stop", "-m", mode, "-w"]);
    postgres::run(o, &dir.display().to_string(), "pg_ctl stop", cmd).await?;
    if let Some(s) = socket {
        std::fs::remove_dir_all(s).ok();
    }
    Ok(())
}

/// Starts the server of the cluster in `dir` on `prefer` (its port before, so its address
/// stays), else a free loopback port, with a fresh private socket folder; returns the port.
/// Retries with another port if it was taken meanwhile.
async fn start(o: Op, pg: &Pg, name: &str, dir: &Path, prefer: Option<u16>) -> Result<u16> {
    let data = dir.join("data");
    let log = dir.join("postgres.log");
    let mut last = String::new();
    for attempt in 0..START_ATTEMPTS {
        let port = match prefer {
            Some(p) if attempt == 0 && p != 0 => p,
            _ => postgres::free_port(o)?,
        };
        let socket = tempfile::Builder::new()
            .prefix("mvi-pgs-")
            .tempdir()
            .map_err(|e| io_error(o, &std::env::temp_dir(), e))?
            .keep();
        pg.run_as.own(o, &socket, 0o700)?;
        let before = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        let mut cmd = pg.run_as.command(&pg.install.bin.join("pg_ctl"));
        cmd.arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "start", "-o"])
            .arg(format!(
                "-h 127.0.0.1 -p {port} -k {} -c unix_socket_permissions=0700",
                socket.display()
            ));
        match postgres::run(o, name, "pg_ctl start", cmd).await {
            Ok(_) => {
                // The checkpointer's first sleep is computed while the server still starts
                // up (in recovery, to PostgreSQL), which leaves `archive_timeout` out: it
                // sleeps a whole `checkpoint_timeout` (5 min) and archives no segment
                // meanwhile. A reload wakes it, and from then on it switches segments on
                // time (seen with PostgreSQL 15: no switch in 60 s of commits without it).
                let mut reload = pg.run_as.command(&pg.install.bin.join("pg_ctl"));
                reload.arg("-D").arg(&data).arg("reload");
                postgres::run(o, name, "pg_ctl reload", reload).await?;
                return Ok(port);
            }
            Err(e) => {
                std::fs::remove_dir_all(&socket).ok();
                let tail = postgres::log_tail(&log, 10);
                let new = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0) > before;
                if new && postgres::port_taken(&tail) {
                    last = tail;
                    continue;
                }
                return Err(postgres::failed(
                    o,
                    name,
                    format!("{}; server log: {tail}", e.message()),
                ));
            }
        }
    }
    Err(o.err(
        ErrorKind::Unavailable,
        name,
        format!("no free port after {START_ATTEMPTS} attempts; server log: {last}"),
    ))
}

/// The socket folder a running postmaster recorded (line 5 of `postmaster.pid`).
fn socket_dir(data: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(data.join("postmaster.pid")).ok()?;
    let line = text.lines().nth(4)?.trim();
    (!line.is_empty()).then(|| PathBuf::from(line))
}

fn template_ok(path: &Path, uid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    match std::fs::symlink_metadata(path) {
        Ok(m) => {
            m.is_dir()
                && m.uid() == uid
                && path.join("PG_VERSION").is_file()
                && path.join("global").join("pg_control").is_file()
        }
        Err(_) => false,
    }
}

fn context(name: &str) -> EncryptionContext {
    [
        ("service".to_string(), "database".to_string()),
        ("database".to_string(), name.to_string()),
    ]
    .into()
}

fn set_mode(o: Op, path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| io_error(o, path, e))
}

fn remove_dir(o: Op, path: &Path) -> Result<()> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error(o, path, e)),
    }
}

fn remove_file(o: Op, path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error(o, path, e)),
    }
}

#[async_trait]
impl Databases for LocalDatabases {
    async fn create_database(&self, spec: DatabaseSpec) -> Result<DatabaseInfo> {
        self.create(op("create_database"), spec, Source::Empty)
            .await
    }

    async fn describe_database(&self, name: &str) -> Result<DatabaseInfo> {
        let inst = self.instance(op("describe_database"), name)?;
        Ok(self.info_of(&inst))
    }

    async fn list_databases(&self) -> Result<Vec<DatabaseInfo>> {
        let all: Vec<Instance> = self.state.lock().databases.values().cloned().collect();
        Ok(all.iter().map(|i| self.info_of(i)).collect())
    }

    async fn credentials(&self, name: &str) -> Result<Credentials> {
        let o = op("credentials");
        let inst = self.instance(o, name)?;
        if inst.info.state != DatabaseState::Available {
            return Err(o.precondition(
                name,
                format!("the database is {:?}, not available", inst.info.state),
            ));
        }
        let ciphertext = hex::decode(&inst.password)
            .map_err(|e| o.internal(name, format!("stored password is corrupt: {e}")))?;
        let plain = self.crypto.decrypt(&ciphertext, &context(name)).await?;
        let password = String::from_utf8(plain.plaintext.expose().to_vec())
            .map_err(|_| o.internal(name, "stored password is not text"))?;
        Ok(Credentials {
            host: "127.0.0.1".into(),
            port: inst.relay_port.unwrap_or(inst.port),
            user: APP.into(),
            password: SecretString::new(password),
            database: APP.into(),
        })
    }

    async fn delete_database(&self, name: &str) -> Result<()> {
        let o = op("delete_database");
        let pg = self.pg(o)?;
        self.state.mutate(o, |s| {
            let i = s
                .databases
                .get_mut(name)
                .ok_or_else(|| o.not_found(name, "no such database"))?;
            if matches!(
                i.info.state,
                DatabaseState::Creating | DatabaseState::Deleting
            ) {
                return Err(o.precondition(name, format!("the database is {:?}", i.info.state)));
            }
            i.info.state = DatabaseState::Deleting;
            Ok(())
        })?;
        let _lock = self.failover.lock().await;
        let inst = self.instance(o, name)?;
        lock(&self.relays).remove(name);
        if let Some(sb) = &inst.standby {
            stop(o, pg, &sb.dir, "immediate").await?;
            remove_dir(o, &sb.dir)?;
        }
        stop(o, pg, &inst.dir, "fast").await?;
        remove_dir(o, &inst.dir)?;
        // As RDS by default: the automated backups go with the instance.
        if let Some(b) = &inst.backups {
            remove_dir(o, b)?;
        }
        self.state.mutate(o, |s| {
            s.databases.remove(name);
            Ok(())
        })
    }

    async fn reboot_database(&self, name: &str, force_failover: bool) -> Result<DatabaseInfo> {
        self.reboot(name, force_failover).await
    }

    async fn create_snapshot(&self, database: &str, snapshot: &str) -> Result<SnapshotInfo> {
        let o = op("create_snapshot");
        validate_name(o, snapshot, 255)?;
        let pg = self.pg(o)?;
        let info = SnapshotInfo {
            name: snapshot.to_string(),
            database: database.to_string(),
            created: self.ctx_now(),
            size: 0,
        };
        let inst = self.state.mutate(o, |s| {
            let i = s
                .databases
                .get(database)
                .ok_or_else(|| o.not_found(database, "no such database"))?;
            if i.info.state != DatabaseState::Available {
                return Err(o.precondition(
                    database,
                    format!("the database is {:?}, not available", i.info.state),
                ));
            }
            if s.snapshots.contains_key(snapshot) {
                return Err(o.already_exists(snapshot, "a snapshot with this name exists"));
            }
            let i = i.clone();
            s.snapshots.insert(
                snapshot.to_string(),
                Snapshot {
                    info: info.clone(),
                    ready: false,
                },
            );
            Ok(i)
        })?;
        let file = self.snapshot_file(snapshot);
        match dump(o, pg, &inst, &file).await {
            Ok(size) => self.state.mutate(o, |s| {
                let snap = s
                    .snapshots
                    .get_mut(snapshot)
                    .ok_or_else(|| o.not_found(snapshot, "the snapshot vanished while taken"))?;
                snap.ready = true;
                snap.info.size = size;
                Ok(snap.info.clone())
            }),
            Err(e) => {
                remove_file(o, &file).ok();
                self.state
                    .mutate(o, |s| {
                        s.snapshots.remove(snapshot);
                        Ok(())
                    })
                    .ok();
                Err(e)
            }
        }
    }

    async fn list_snapshots(&self, database: Option<&str>) -> Result<Vec<SnapshotInfo>> {
        Ok(self
            .state
            .lock()
            .snapshots
            .values()
            .filter(|s| s.ready && database.is_none_or(|d| s.info.database == d))
            .map(|s| s.info.clone())
            .collect())
    }

    async fn restore_snapshot(&self, snapshot: &str, spec: DatabaseSpec) -> Result<DatabaseInfo> {
        let o = op("restore_snapshot");
        let ready = self
            .state
            .lock()
            .snapshots
            .get(snapshot)
            .is_some_and(|s| s.ready);
        if !ready {
            return Err(o.not_found(snapshot, "no such snapshot"));
        }
        self.create(o, spec, Source::Dump(self.snapshot_file(snapshot)))
            .await
    }

    async fn restore_to_point_in_time(
        &self,
        source: &str,
        to: RestoreTime,
        spec: DatabaseSpec,
    ) -> Result<DatabaseInfo> {
        let o = op("restore_to_point_in_time");
        let (backups, _) = self.check_restore(o, source, to)?;
        self.create(o, spec, Source::PointInTime { backups, to })
            .await
    }

    async fn delete_snapshot(&self, snapshot: &str) -> Result<()> {
        let o = op("delete_snapshot");
        self.state.mutate(o, |s| match s.snapshots.get(snapshot) {
            Some(snap) if snap.ready => {
                s.snapshots.remove(snapshot);
                Ok(())
            }
            Some(_) => Err(o.precondition(snapshot, "the snapshot is still being taken")),
            None => Err(o.not_found(snapshot, "no such snapshot")),
        })?;
        remove_file(o, &self.snapshot_file(snapshot))
    }
}

/// `pg_dump -Fc` of the application database into `file` (via a temp file renamed into
/// place, fsynced, so a crash never leaves half a dump under the snapshot's name); its size.
async fn dump(o: Op, pg: &Pg, inst: &Instance, file: &Path) -> Result<u64> {
    let name = &inst.info.spec.name;
    let data = inst.dir.join("data");
    let socket = socket_dir(&data)
        .ok_or_else(|| o.err(ErrorKind::Unavailable, name, "the server is not running"))?;
    let dir = file.parent().unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| io_error(o, dir, e))?;
    let out = tmp.reopen().map_err(|e| io_error(o, tmp.path(), e))?;
    let mut cmd = pg.run_as.command(&pg.install.tool("pg_dump"));
    cmd.args(["-Fc", "-U", SUPERUSER, "-d", APP])
        .arg("-h")
        .arg(&socket)
        .arg("-p")
        .arg(inst.port.to_string());
    cmd.stdout(std::process::Stdio::from(out))
        .stderr(std::process::Stdio::piped());
    // Not `output()`: tokio pipes stdout there, and the dump must go to the file.
    let res = cmd
        .spawn()
        .map_err(|e| {
            o.err(
                ErrorKind::Unavailable,
                name,
                format!("cannot run pg_dump: {e}"),
            )
        })?
        .wait_with_output()
        .await
        .map_err(|e| o.internal(name, e))?;
    if !res.status.success() {
        return Err(postgres::failed(
            o,
            name,
            format!(
                "pg_dump failed ({}): {}",
                res.status,
                String::from_utf8_lossy(&res.stderr).trim()
            ),
        ));
    }
    tmp.as_file().sync_all().map_err(|e| io_error(o, file, e))?;
    let size = tmp
        .as_file()
        .metadata()
        .map_err(|e| io_error(o, file, e))?
        .len();
    tmp.persist(file).map_err(|e| io_error(o, file, e.error))?;
    crate::storage::sync_dir(dir).map_err(|e| io_error(o, dir, e))?;
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn open(root: &Path) -> LocalDatabases {
        let sim = Arc::new(crate::sim::Sim::new(
            1,
            Arc::new(mvi_core::SystemClock),
            "test".into(),
        ));
        let crypto = Arc::new(
            crate::crypto::LocalCrypto::open(
                Ctx::new(Some(root), Service::Crypto, sim.clone()).unwrap(),
            )
            .await
            .unwrap(),
        );
        LocalDatabases::open(
            Ctx::new(Some(root), Service::Database, sim).unwrap(),
            crypto,
        )
        .await
        .unwrap()
    }

    /// Stops every server of the root even if the test fails.
    struct Purge(PathBuf);
    impl Drop for Purge {
        fn drop(&mut self) {
            purge(&self.0);
        }
    }

    /// After `shutdown`, the next open starts the stopped server again with the same data
    /// and password; the password is not stored in plaintext anywhere under the root.
    #[tokio::test]
    async fn restarts_stopped_servers_and_keeps_the_password_secret() {
        let dir = tempfile::tempdir().unwrap();
        let _purge = Purge(dir.path().to_path_buf());
        let db = open(dir.path()).await;
        db.create_database(DatabaseSpec::postgres("kept"))
            .await
            .unwrap();
        let before = db.credentials("kept").await.unwrap();
        db.shutdown().await.unwrap();
        let pg = db.pg(op("test")).unwrap();
        assert!(!postgres::is_ready(&pg.install, before.port).await);
        drop(db);

        let db = open(dir.path()).await;
        let info = db.describe_database("kept").await.unwrap();
        assert_eq!(info.state, DatabaseState::Available);
        let after = db.credentials("kept").await.unwrap();
        assert_eq!(after.password, before.password);
        let pg = db.pg(op("test")).unwrap();
        assert!(postgres::is_ready(&pg.install, after.port).await);

        let state = std::fs::read_to_string(dir.path().join("database").join(STATE_FILE)).unwrap();
        assert!(!state.contains(after.password.expose()));
        db.delete_database("kept").await.unwrap();
        assert!(!postgres::is_ready(&pg.install, after.port).await);
    }
}
