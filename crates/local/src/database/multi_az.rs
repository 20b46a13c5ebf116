//! Multi-AZ instances: a synchronous streaming standby in a second zone, failover, and zone
//! failures.
//!
//! - **The standby** is `pg_basebackup` of the primary (WAL streamed alongside), started as a
//!   hot standby (`standby.signal`) streaming from the primary over the primary's private
//!   socket as the superuser. Once it streams, the primary names it in
//!   `synchronous_standby_names` (`synchronous_commit` is `on`, PostgreSQL's default): a commit
//!   is acknowledged only once the standby has flushed its WAL, so a failover loses no
//!   acknowledged commit.
//! - **The endpoint** is a relay (`relay.rs`) on a port of the instance's own, recorded in the
//!   state so it stays the same across restarts; it forwards to whichever server is the
//!   primary.
//! - **Failover** (the primary's zone fails, or `reboot_database(.., true)`): the primary is
//!   stopped at once (`immediate`: as a lost zone, it finishes nothing), the standby is
//!   promoted (`pg_ctl promote`), told to wait for no standby until it has one again, and the
//!   relay moves to it. A new standby is then built in another available zone, in the
//!   background. Each failover is an event of the instance, a line in the log group
//!   `/mvi/databases/<name>` and the metrics `Failovers` and `FailoverTime` (namespace
//!   `mvi/Database`, dimension `Database`).
//! - **Zones**: the instance's servers are placed in the simulator's zones (`local-1a`, ...);
//!   a zone failure (`LocalVms::fail_zone`) takes down the servers in it. A standby lost with
//!   its zone is replaced elsewhere (the primary stops waiting for it first); a single-AZ
//!   instance in a failed zone is stopped until the zone is restored.

#[allow(clippy::wildcard_imports)]
use super::*;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use mvi_core::database::{DatabaseEvent, MAX_EVENTS};
use mvi_core::log::LogEvent;
use mvi_core::metric::{Datum, Unit};

/// How long a new standby may take to start streaming.
const STREAMING_DEADLINE: Duration = Duration::from_secs(60);
/// The application name the standby streams as.
const STANDBY_NAME: &str = "standby";

/// A server of an instance other than its primary: a multi-AZ instance's standby.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Server {
    pub(super) dir: PathBuf,
    pub(super) port: u16,
    pub(super) pid: Option<i32>,
    pub(super) zone: String,
}

/// The zones servers are placed in.
pub(super) fn zones() -> Vec<String> {
    crate::vpc::DEFAULT_ZONES
        .iter()
        .map(|z| (*z).to_string())
        .collect()
}

impl LocalDatabases {
    /// The zones not failed now.
    pub(super) fn available_zones(&self) -> Vec<String> {
        let failed = self.failed_zones();
        zones()
            .into_iter()
            .filter(|z| !failed.contains(z))
            .collect()
    }

    /// Runs `script` as the superuser on the server of `dir` (port `port`), statement by
    /// statement (ALTER SYSTEM refuses a transaction block); its output, unaligned.
    pub(super) async fn superuser_sql(
        &self,
        o: Op,
        pg: &Pg,
        name: &str,
        dir: &Path,
        port: u16,
        script: &str,
    ) -> Result<String> {
        let data = dir.join("data");
        let socket = socket_dir(&data)
            .ok_or_else(|| o.err(ErrorKind::Unavailable, name, "the server is not running"))?;
        let mut psql = pg.run_as.command(&pg.install.tool("psql"));
        psql.args(["-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-U", SUPERUSER])
            .args(["-d", "postgres", "-h"])
            .arg(&socket)
            .arg("-p")
            .arg(port.to_string());
        let out = postgres::run_with_input(o, name, "psql", psql, script.as_bytes()).await?;
        Ok(String::from_utf8_lossy(&out).trim().to_string())
    }

    /// Builds a standby of the primary of `name` in `zone` and waits until it streams
    /// synchronously. The caller holds the failover lock.
    pub(super) async fn build_standby(&self, o: Op, pg: &Pg, name: &str, zone: &str) -> Result<()> {
        let primary = self.instance(o, name)?;
        let dir = self.clusters.join(format!("{name}@{zone}"));
        stop(o, pg, &dir, "immediate").await.ok();
        remove_dir(o, &dir)?;
        std::fs::create_dir(&dir).map_err(|e| io_error(o, &dir, e))?;
        pg.run_as.own(o, &dir, 0o700)?;
        let built = async {
            let socket = socket_dir(&primary.dir.join("data")).ok_or_else(|| {
                o.err(ErrorKind::Unavailable, name, "the primary is not running")
            })?;
            let mut backup = pg.run_as.command(&pg.install.tool("pg_basebackup"));
            backup
                .arg("-D")
                .arg(dir.join("data"))
                .args(["-U", SUPERUSER, "-X", "stream", "-R", "-c", "fast", "-h"])
                .arg(&socket)
                .arg("-p")
                .arg(primary.port.to_string());
            postgres::run(o, name, "pg_basebackup", backup).await?;
            let port = start(o, pg, name, &dir, None).await?;
            self.point_standby(o, pg, name, &dir, port, &primary.dir, primary.port)
                .await?;
            self.wait_streaming(o, pg, name, &primary).await?;
            // From now on every commit waits for the standby's flush.
            self.superuser_sql(
                o,
                pg,
                name,
                &primary.dir,
                primary.port,
                &format!(
                    "ALTER SYSTEM SET synchronous_standby_names = '{STANDBY_NAME}';\nSELECT pg_reload_conf();\n"
                ),
            )
            .await?;
            let pid = postgres::running_postmaster(&dir.join("data")).map(|p| p.0);
            Ok::<_, Error>(Server {
                dir: dir.clone(),
                port,
                pid,
                zone: zone.to_string(),
            })
        }
        .await;
        match built {
            Ok(server) => {
                self.state.mutate(o, |s| {
                    if let Some(i) = s.databases.get_mut(name) {
                        i.info.standby_zone = Some(server.zone.clone());
                        i.standby = Some(server.clone());
                    }
                    Ok(())
                })?;
                self.note(name, format!("a synchronous standby runs in zone {zone}"))
                    .await;
                Ok(())
            }
            Err(e) => {
                stop(o, pg, &dir, "immediate").await.ok();
                remove_dir(o, &dir).ok();
                Err(e)
            }
        }
    }

    /// Tells the standby in `dir` where its primary is (the primary's socket folder changes
    /// when it restarts).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn point_standby(
        &self,
        o: Op,
        pg: &Pg,
        name: &str,
        dir: &Path,
        port: u16,
        primary_dir: &Path,
        primary_port: u16,
    ) -> Result<()> {
        let socket = socket_dir(&primary_dir.join("data"))
            .ok_or_else(|| o.err(ErrorKind::Unavailable, name, "the primary is not running"))?;
        let conninfo = format!(
            "host={} port={primary_port} user={SUPERUSER} application_name={STANDBY_NAME}",
            socket.display()
        );
        self.superuser_sql(
            o,
            pg,
            name,
            dir,
            port,
            &format!(
                "ALTER SYSTEM SET primary_conninfo = '{conninfo}';\n\
                 ALTER SYSTEM RESET synchronous_standby_names;\n\
                 SELECT pg_reload_conf();\n"
            ),
        )
        .await
        .map(drop)
    }

    /// Waits until the primary sees its standby streaming.
    async fn wait_streaming(&self, o: Op, pg: &Pg, name: &str, primary: &Instance) -> Result<()> {
        let deadline = Instant::now() + STREAMING_DEADLINE;
        let query = format!(
            "SELECT count(*) FROM pg_stat_replication WHERE application_name = '{STANDBY_NAME}' AND state = 'streaming';\n"
        );
        loop {
            let n = self
                .superuser_sql(o, pg, name, &primary.dir, primary.port, &query)
                .await?;
            if n != "0" {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(o.err(
                    ErrorKind::Timeout,
                    name,
                    format!(
                        "the standby did not stream within {} s",
                        STREAMING_DEADLINE.as_secs()
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Promotes the standby of `name` and moves the endpoint to it (see the module doc).
    /// The caller holds the failover lock.
    pub(super) async fn fail_over(&self, o: Op, pg: &Pg, name: &str, why: &str) -> Result<()> {
        let began = Instant::now();
        let inst = self.instance(o, name)?;
        let standby = inst.standby.clone().ok_or_else(|| {
            o.precondition(
                name,
                "the database has no standby to fail over to (a new one is being built)",
            )
        })?;
        self.point_relay(name, 0);
        // The old primary is gone, as with its zone: it finishes nothing.
        stop(o, pg, &inst.dir, "immediate").await.ok();
        let mut promote = pg.run_as.command(&pg.install.bin.join("pg_ctl"));
        promote
            .arg("-D")
            .arg(standby.dir.join("data"))
            .args(["promote", "-w", "-t", "60"]);
        postgres::run(o, name, "pg_ctl promote", promote).await?;
        // No standby yet: commits must not wait for one.
        self.superuser_sql(
            o,
            pg,
            name,
            &standby.dir,
            standby.port,
            "ALTER SYSTEM RESET synchronous_standby_names;\nSELECT pg_reload_conf();\n",
        )
        .await?;
        self.point_relay(name, standby.port);
        let from = inst.zone.clone();
        self.state.mutate(o, |s| {
            if let Some(i) = s.databases.get_mut(name) {
                i.dir = standby.dir.clone();
                i.port = standby.port;
                i.pid = standby.pid;
                i.zone = standby.zone.clone();
                i.info.zone = Some(standby.zone.clone());
                i.info.standby_zone = None;
                i.standby = None;
            }
            Ok(())
        })?;
        remove_dir(o, &inst.dir).ok();
        let took = began.elapsed();
        self.note(
            name,
            format!(
                "failed over from zone {from} to zone {} in {} ms: {why}",
                standby.zone,
                took.as_millis()
            ),
        )
        .await;
        if let Some(metrics) = &self.metrics {
            let at = self.sim.now();
            let data = vec![
                Datum::new("Failovers", 1.0, at)
                    .unit(Unit::Count)
                    .dimension("Database", name),
                Datum::new("FailoverTime", took.as_secs_f64() * 1000.0, at)
                    .unit(Unit::Milliseconds)
                    .dimension("Database", name),
            ];
            if let Err(e) = metrics.put_data("mvi/Database", data).await {
                tracing::warn!(database = name, error = %e, "failover metrics not recorded");
            }
        }
        Ok(())
    }

    /// Loses the standby of `name` (its zone failed): the primary stops waiting for it first,
    /// so commits go on.
    async fn lose_standby(&self, o: Op, pg: &Pg, name: &str, why: &str) -> Result<()> {
        let inst = self.instance(o, name)?;
        let Some(standby) = inst.standby.clone() else {
            return Ok(());
        };
        self.superuser_sql(
            o,
            pg,
            name,
            &inst.dir,
            inst.port,
            "ALTER SYSTEM RESET synchronous_standby_names;\nSELECT pg_reload_conf();\n",
        )
        .await?;
        stop(o, pg, &standby.dir, "immediate").await.ok();
        remove_dir(o, &standby.dir).ok();
        self.state.mutate(o, |s| {
            if let Some(i) = s.databases.get_mut(name) {
                i.standby = None;
                i.info.standby_zone = None;
            }
            Ok(())
        })?;
        self.note(
            name,
            format!("lost its standby in zone {}: {why}", standby.zone),
        )
        .await;
        Ok(())
    }

    /// A zone other than the primary's for a new standby: `prefer` if it is available.
    fn standby_zone_for(&self, inst: &Instance, prefer: Option<&str>) -> Option<String> {
        let available = self.available_zones();
        if let Some(p) = prefer
            && p != inst.zone
            && available.iter().any(|z| z == p)
        {
            return Some(p.to_string());
        }
        available.into_iter().find(|z| *z != inst.zone)
    }

    /// Settles every instance with the zones failed now (see the module doc); then builds the
    /// standbys multi-AZ instances lack. Errors are events and traces: a zone failure has
    /// no caller to report to.
    pub(super) async fn settle_zones(&self) {
        let o = op("zone_failure");
        // Nothing failed and nothing waits for a zone or a standby (a cloud opening, say):
        // return at once. Finding PostgreSQL can take a while, and this task holds the
        // service meanwhile, so a program that closes its cloud at once would find its state
        // root still locked when it opens it again.
        let nothing_to_do = self.failed_zones().is_empty()
            && self.state.lock().databases.values().all(|i| {
                let lacks_standby = i.info.spec.multi_az
                    && i.standby.is_none()
                    && i.info.state == DatabaseState::Available;
                !i.zone_down && !lacks_standby
            });
        if nothing_to_do {
            return;
        }
        let Ok(pg) = self.pg(o) else { return };
        let _lock = self.failover.lock().await;
        let failed: BTreeSet<String> = self.failed_zones();
        let instances: Vec<Instance> = self.state.lock().databases.values().cloned().collect();
        for inst in instances {
            let name = inst.info.spec.name.clone();
            if !matches!(
                inst.info.state,
                DatabaseState::Available | DatabaseState::Stopped
            ) {
                continue;
            }
            let why = format!("zone {} failed", inst.zone);
            let result = async {
                if let Some(sb) = &inst.standby
                    && failed.contains(&sb.zone)
                {
                    let why = format!("zone {} failed", sb.zone);
                    self.lose_standby(o, pg, &name, &why).await?;
                }
                let inst = self.instance(o, &name)?;
                if failed.contains(&inst.zone) && inst.info.state == DatabaseState::Available {
                    if inst.standby.is_some() {
                        self.fail_over(o, pg, &name, &why).await?;
                    } else {
                        stop(o, pg, &inst.dir, "immediate").await.ok();
                        self.point_relay(&name, 0);
                        self.set_state(o, &name, DatabaseState::Stopped, true)?;
                        self.note(&name, format!("stopped: {why}")).await;
                    }
                } else if !failed.contains(&inst.zone)
                    && inst.info.state == DatabaseState::Stopped
                    && inst.zone_down
                {
                    let port = start(o, pg, &name, &inst.dir, Some(inst.port)).await?;
                    let pid = postgres::running_postmaster(&inst.dir.join("data")).map(|p| p.0);
                    self.record_running(o, &name, port, pid)?;
                    self.set_state(o, &name, DatabaseState::Available, false)?;
                    self.point_relay(&name, port);
                    self.note(&name, format!("started again: zone {} is back", inst.zone))
                        .await;
                }
                let inst = self.instance(o, &name)?;
                if inst.info.spec.multi_az
                    && inst.standby.is_none()
                    && inst.info.state == DatabaseState::Available
                    && let Some(zone) = self.standby_zone_for(&inst, None)
                {
                    self.build_standby(o, pg, &name, &zone).await?;
                }
                Ok::<_, Error>(())
            }
            .await;
            if let Err(e) = result {
                tracing::warn!(database = %name, error = %e, "zone change not settled");
                self.note(&name, format!("zone change not settled: {}", e.message()))
                    .await;
            }
        }
    }

    /// Reboots `name` (see `Databases::reboot_database`).
    pub(super) async fn reboot(&self, name: &str, force_failover: bool) -> Result<DatabaseInfo> {
        let o = op("reboot_database");
        let pg = self.pg(o)?;
        let _lock = self.failover.lock().await;
        let inst = self.instance(o, name)?;
        if inst.info.state != DatabaseState::Available {
            return Err(o.precondition(
                name,
                format!("the database is {:?}, not available", inst.info.state),
            ));
        }
        if force_failover {
            if !inst.info.spec.multi_az {
                return Err(o.precondition(
                    name,
                    "only a multi-AZ database can fail over: it has no standby",
                ));
            }
            self.fail_over(o, pg, name, "rebooted with failover")
                .await?;
            // As RDS: the old primary's zone gets the new standby.
            let now = self.instance(o, name)?;
            if let Some(zone) = self.standby_zone_for(&now, Some(&inst.zone)) {
                self.spawn_standby(name, zone);
            }
        } else {
            self.point_relay(name, 0);
            stop(o, pg, &inst.dir, "fast").await?;
            let port = start(o, pg, name, &inst.dir, Some(inst.port)).await?;
            let pid = postgres::running_postmaster(&inst.dir.join("data")).map(|p| p.0);
            self.record_running(o, name, port, pid)?;
            self.point_relay(name, port);
            if let Some(sb) = &inst.standby {
                self.point_standby(o, pg, name, &sb.dir, sb.port, &inst.dir, port)
                    .await?;
            }
            self.note(name, "rebooted".into()).await;
        }
        self.instance(o, name).map(|i| i.info)
    }

    /// Builds a standby of `name` in `zone` in the background (after a failover, which must
    /// not wait for it).
    fn spawn_standby(&self, name: &str, zone: String) {
        let Some(me) = self.me.get().and_then(std::sync::Weak::upgrade) else {
            return;
        };
        let name = name.to_string();
        tokio::spawn(async move {
            let o = op("build_standby");
            let Ok(pg) = me.pg(o) else { return };
            let _lock = me.failover.lock().await;
            let Ok(inst) = me.instance(o, &name) else {
                return;
            };
            if inst.standby.is_some() || inst.info.state != DatabaseState::Available {
                return;
            }
            if let Err(e) = me.build_standby(o, pg, &name, &zone).await {
                tracing::warn!(database = %name, error = %e, "no new standby");
                me.note(
                    &name,
                    format!("no new standby in zone {zone}: {}", e.message()),
                )
                .await;
            }
        });
    }

    /// Points the endpoint of `name` (if it has one) at `port`.
    pub(super) fn point_relay(&self, name: &str, port: u16) {
        if let Some(r) = lock(&self.relays).get(name) {
            r.point(port);
        }
    }

    pub(super) fn set_state(
        &self,
        o: Op,
        name: &str,
        state: DatabaseState,
        zone_down: bool,
    ) -> Result<()> {
        self.state.mutate(o, |s| {
            if let Some(i) = s.databases.get_mut(name) {
                i.info.state = state;
                i.zone_down = zone_down;
            }
            Ok(())
        })
    }

    /// Records an event of `name`: in its info, and a line in its log group.
    pub(super) async fn note(&self, name: &str, message: String) {
        let at = self.sim.now();
        tracing::info!(database = name, "{message}");
        let recorded = self.state.mutate(op("event"), |s| {
            if let Some(i) = s.databases.get_mut(name) {
                i.info.events.push(DatabaseEvent {
                    at,
                    message: message.clone(),
                });
                let over = i.info.events.len().saturating_sub(MAX_EVENTS);
                i.info.events.drain(..over);
            }
            Ok(())
        });
        if let Err(e) = recorded {
            tracing::warn!(database = name, error = %e, "event not recorded");
        }
        if let Some(logs) = &self.logs {
            let group = format!("/mvi/databases/{name}");
            let put = async {
                for made in [
                    logs.create_group(&group, None).await.map(drop),
                    logs.create_stream(&group, "events").await.map(drop),
                ] {
                    match made {
                        Err(e) if e.kind() != ErrorKind::AlreadyExists => return Err(e),
                        _ => {}
                    }
                }
                logs.put_events(&group, "events", vec![LogEvent::new(at, message.clone())])
                    .await
            };
            if let Err(e) = put.await {
                tracing::warn!(database = name, error = %e, "event not logged");
            }
        }
    }
}

/// Locks a std mutex, through poisoning (its data is plain).
pub(super) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
