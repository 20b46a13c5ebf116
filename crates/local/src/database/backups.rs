//! Continuous backups and point-in-time restore.
//!
//! An instance with `backup_retention_days` above 0 keeps `<clusters>/<name>.backups/`:
//! - `base/`: its cluster as it was before its first start (a cleanly shut-down copy of the
//!   template, so a consistent base backup);
//! - `wal/`: every WAL segment it completes, archived by PostgreSQL itself
//!   (`archive_mode = on`, `archive_command` copying to a temp name and renaming, so a segment
//!   is whole or absent), with `archive_timeout = 2 s`, so a segment with commits is archived
//!   at most 2 s after them.
//!
//! The latest restorable time is the time the newest segment was archived. A restore copies
//! `base/`, sets `restore_command` to read `wal/` and `recovery_target_time`, and starts the
//! server in recovery. PostgreSQL replays every transaction committed at or before the
//! target, across the timelines failovers made, then promotes. A target after the last
//! commit in the archive ends recovery with no later commit to stop at, which PostgreSQL
//! calls a failure. The state at the end of the archive is then the state at the target, so
//! the restore replays to that end. Times are the machine's clock: PostgreSQL stamps its
//! commits with it, not with the simulator's.

#[allow(clippy::wildcard_imports)]
use super::*;

use std::time::{Duration, Instant};

use mvi_core::Timestamp;
use mvi_core::database::RestoreTime;

/// How long a segment with commits may wait before it is archived.
const ARCHIVE_TIMEOUT_S: u32 = 2;
/// How long a recovery may take.
const RECOVERY_DEADLINE: Duration = Duration::from_secs(300);
/// The file in a backups folder that says when its base backup was taken.
const BASE_TAKEN: &str = "base.taken";
/// What PostgreSQL says when the archive ends before the recovery target.
const ENDED_BEFORE_TARGET: &str = "recovery ended before configured recovery target was reached";

/// Where a new instance's data comes from.
#[derive(Debug, Clone)]
pub(super) enum Source {
    /// A new, empty database.
    Empty,
    /// A snapshot (a `pg_dump -Fc` file).
    Dump(PathBuf),
    /// Another instance's backups folder, at a time.
    PointInTime { backups: PathBuf, to: RestoreTime },
}

/// `value` as a quoted PostgreSQL configuration string.
fn quoted(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

impl LocalDatabases {
    /// The backups folder of instance `name`.
    pub(super) fn backups_dir(&self, name: &str) -> PathBuf {
        self.clusters.join(format!("{name}.backups"))
    }

    /// Appends settings to the cluster's `postgresql.auto.conf` (the last of a name wins).
    fn configure(&self, o: Op, pg: &Pg, data: &Path, lines: &[(&str, String)]) -> Result<()> {
        use std::io::Write;
        let file = data.join("postgresql.auto.conf");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&file)
            .map_err(|e| io_error(o, &file, e))?;
        for (key, value) in lines {
            writeln!(f, "{key} = {value}").map_err(|e| io_error(o, &file, e))?;
        }
        pg.run_as.own(o, &file, 0o600)
    }

    /// Sets up the cluster in `data` (not started yet) to archive into `backups`, or not
    /// to archive at all; with `base`, copies it as the base backup first.
    pub(super) async fn set_up_backups(
        &self,
        o: Op,
        pg: &Pg,
        name: &str,
        data: &Path,
        backups: Option<&Path>,
        base: bool,
    ) -> Result<()> {
        let Some(backups) = backups else {
            return self.configure(o, pg, data, &[("archive_mode", "'off'".into())]);
        };
        remove_dir(o, backups)?;
        let wal = backups.join("wal");
        std::fs::create_dir_all(&wal).map_err(|e| io_error(o, &wal, e))?;
        pg.run_as.own(o, backups, 0o700)?;
        pg.run_as.own(o, &wal, 0o700)?;
        let w = wal.display();
        self.configure(
            o,
            pg,
            data,
            &[
                ("archive_mode", "'on'".into()),
                (
                    "archive_command",
                    quoted(&format!(
                        "test ! -f {w}/%f && cp %p {w}/%f.part && mv {w}/%f.part {w}/%f"
                    )),
                ),
                ("archive_timeout", ARCHIVE_TIMEOUT_S.to_string()),
            ],
        )?;
        if base {
            self.copy_base(o, pg, name, data, backups).await?;
        }
        Ok(())
    }

    /// Copies the (stopped) cluster in `data` as the base backup in `backups`.
    pub(super) async fn copy_base(
        &self,
        o: Op,
        pg: &Pg,
        name: &str,
        data: &Path,
        backups: &Path,
    ) -> Result<()> {
        let base = backups.join("base");
        remove_dir(o, &base)?;
        let mut cp = pg.run_as.command(Path::new("cp"));
        cp.arg("-a").arg(data).arg(&base);
        postgres::run(o, name, "copying the base backup", cp).await?;
        // The earliest restorable time, on the machine's clock as the commits are.
        let taken = backups.join(BASE_TAKEN);
        std::fs::write(&taken, chrono::Utc::now().to_rfc3339()).map_err(|e| io_error(o, &taken, e))
    }

    /// The earliest time a restore of the instance with `backups` can reach: when its base
    /// backup was taken.
    fn earliest_restorable(&self, backups: &Path) -> Option<Timestamp> {
        let text = std::fs::read_to_string(backups.join(BASE_TAKEN)).ok()?;
        chrono::DateTime::parse_from_rfc3339(text.trim())
            .ok()
            .map(|t| t.with_timezone(&chrono::Utc))
    }

    /// The latest time a restore of the instance with `backups` can reach: when its newest
    /// WAL segment was archived.
    pub(super) fn latest_restorable(&self, backups: &Path) -> Option<Timestamp> {
        std::fs::read_dir(backups.join("wal"))
            .ok()?
            .flatten()
            .filter(|e| {
                let n = e.file_name();
                let n = n.to_string_lossy();
                n.len() == 24 && n.bytes().all(|b| b.is_ascii_hexdigit())
            })
            .filter_map(|e| e.metadata().ok()?.modified().ok())
            .max()
            .map(Timestamp::from)
    }

    /// Puts the cluster in `data` (a copy of a base backup) in recovery from `backups` up to
    /// `to`.
    pub(super) fn set_up_recovery(
        &self,
        o: Op,
        pg: &Pg,
        data: &Path,
        backups: &Path,
        to: RestoreTime,
    ) -> Result<()> {
        let w = backups.join("wal");
        let mut lines = vec![
            (
                "restore_command",
                quoted(&format!("cp {}/%f %p", w.display())),
            ),
            ("recovery_target_action", "'promote'".into()),
            ("recovery_target_timeline", "'latest'".into()),
        ];
        if let RestoreTime::At(t) = to {
            lines.push((
                "recovery_target_time",
                quoted(&t.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string()),
            ));
        }
        self.configure(o, pg, data, &lines)?;
        let signal = data.join("recovery.signal");
        std::fs::write(&signal, "").map_err(|e| io_error(o, &signal, e))?;
        pg.run_as.own(o, &signal, 0o600)
    }

    /// Starts a cluster set up for recovery and waits until it has recovered and been
    /// promoted; its port. An archive that ends before the target is the state at the target
    /// (see the module doc): recovery then runs to the end of the archive.
    pub(super) async fn recover_to(
        &self,
        o: Op,
        pg: &Pg,
        name: &str,
        dir: &Path,
        latest: Option<Timestamp>,
        to: RestoreTime,
    ) -> Result<u16> {
        let data = dir.join("data");
        let log = dir.join("postgres.log");
        let mut to = to;
        loop {
            let outcome = match start(o, pg, name, dir, None).await {
                Ok(port) => self
                    .wait_promoted(o, pg, name, dir, port)
                    .await
                    .map(|()| port),
                Err(e) => Err(e),
            };
            match outcome {
                Ok(port) => return Ok(port),
                Err(e) => {
                    let ended = postgres::log_tail(&log, 20).contains(ENDED_BEFORE_TARGET);
                    let reachable =
                        matches!(to, RestoreTime::At(t) if latest.is_some_and(|l| t <= l));
                    stop(o, pg, dir, "immediate").await.ok();
                    if !(ended && reachable) {
                        return Err(e);
                    }
                    // No commit after the target in the archive: its end is the target's state.
                    self.configure(o, pg, &data, &[("recovery_target_time", "''".into())])?;
                    to = RestoreTime::Latest;
                }
            }
        }
    }

    async fn wait_promoted(&self, o: Op, pg: &Pg, name: &str, dir: &Path, port: u16) -> Result<()> {
        let deadline = Instant::now() + RECOVERY_DEADLINE;
        let data = dir.join("data");
        loop {
            if postgres::running_postmaster(&data).is_none() {
                return Err(postgres::failed(
                    o,
                    name,
                    format!(
                        "the restore stopped: {}",
                        postgres::log_tail(&dir.join("postgres.log"), 5)
                    ),
                ));
            }
            if let Ok(out) = self
                .superuser_sql(o, pg, name, dir, port, "SELECT pg_is_in_recovery();\n")
                .await
                && out == "f"
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(o.err(
                    ErrorKind::Timeout,
                    name,
                    format!(
                        "the restore did not finish within {} s",
                        RECOVERY_DEADLINE.as_secs()
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Checks a point-in-time restore of `source` to `to` before anything is made; the
    /// source's backups folder and its latest restorable time.
    pub(super) fn check_restore(
        &self,
        o: Op,
        source: &str,
        to: RestoreTime,
    ) -> Result<(PathBuf, Option<Timestamp>)> {
        let inst = self.instance(o, source)?;
        let Some(backups) = inst.backups.clone() else {
            return Err(o.precondition(
                source,
                "the database keeps no backups (backup_retention_days is 0): nothing to restore from",
            ));
        };
        let latest = self.latest_restorable(&backups);
        if latest.is_none() {
            return Err(o.precondition(
                source,
                format!(
                    "no WAL has been archived yet (it is, at most {ARCHIVE_TIMEOUT_S} s after a commit): nothing is restorable so far"
                ),
            ));
        }
        if let RestoreTime::At(t) = to {
            if let Some(earliest) = self.earliest_restorable(&backups)
                && t < earliest
            {
                return Err(o.invalid(
                    source,
                    format!("{t} is before the earliest restorable time, {earliest}"),
                ));
            }
            if let Some(l) = latest
                && t > l
            {
                return Err(o.invalid(
                    source,
                    format!("{t} is after the latest restorable time, {l}"),
                ));
            }
        }
        Ok((backups, latest))
    }
}
