//! Database cases. Each case makes its own instances and deletes them, even when it fails
//! (a guard deletes in the background on drop), so no server outlives its case.
//!
//! Cases that talk to the server itself, or need a snapshot restore to carry real data, need
//! [`Capability::RealDatabase`](crate::Capability::RealDatabase); they use `psql` (on PATH)
//! with the password in `PGPASSWORD`, never on its command line.

use std::sync::Arc;

use mvi_core::Databases;
use mvi_core::Timestamp;
use mvi_core::database::{Credentials, DatabaseInfo, DatabaseSpec, DatabaseState, RestoreTime};

use crate::{Ctx, Failure, Outcome, ensure, expect_err};

/// Every Database case, as tests against `$target`.
#[macro_export]
macro_rules! database_cases {
    ($target:expr) => {
        $crate::__cases! { $target;
            database_create_describe_list_delete => $crate::database::create_describe_list_delete;
            database_invalid_names_refused => $crate::database::invalid_names_refused;
            database_wrong_engine_unsupported => $crate::database::wrong_engine_unsupported;
            database_wrong_version_refused => $crate::database::wrong_version_refused;
            database_duplicate_already_exists => $crate::database::duplicate_already_exists;
            database_concurrent_creates_one_wins => $crate::database::concurrent_creates_one_wins;
            database_unknown_not_found => $crate::database::unknown_not_found;
            database_reboot_keeps_the_endpoint => $crate::database::reboot_keeps_the_endpoint;
            database_multi_az_failover_keeps_data => $crate::database::multi_az_failover_keeps_data [RealDatabase];
            database_multi_az_reboot_with_failover => $crate::database::multi_az_reboot_with_failover;
            database_credentials_redacted_and_work => $crate::database::credentials_redacted_and_work [RealDatabase];
            database_snapshot_restore_keeps_data => $crate::database::snapshot_restore_keeps_data [RealDatabase];
            database_snapshot_list_delete => $crate::database::snapshot_list_delete;
            database_point_in_time_restore_checked => $crate::database::point_in_time_restore_checked;
            database_point_in_time_restore_keeps_exactly_earlier_rows => $crate::database::point_in_time_restore_keeps_exactly_earlier_rows [RealDatabase];
            database_survives_reopen => $crate::database::survives_reopen [Reopen, RealDatabase];
        }
    };
}

/// Deletes the named databases and snapshots when dropped, so a failing case leaves no
/// server running. Deleting what is already gone is fine.
struct Cleanup {
    db: Arc<dyn Databases>,
    databases: Vec<String>,
    snapshots: Vec<String>,
}

impl Cleanup {
    fn new(db: &Arc<dyn Databases>) -> Self {
        Cleanup {
            db: db.clone(),
            databases: Vec::new(),
            snapshots: Vec::new(),
        }
    }

    /// Ends the case: deletes everything now, reporting failures other than NotFound.
    async fn finish(mut self) -> Outcome {
        let dbs = std::mem::take(&mut self.databases);
        let snaps = std::mem::take(&mut self.snapshots);
        for s in snaps {
            match self.db.delete_snapshot(&s).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        for d in dbs {
            match self.db.delete_database(&d).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.databases.is_empty() && self.snapshots.is_empty() {
            return;
        }
        // The case failed before `finish`: delete on a thread of its own, with its own
        // runtime, and wait, so the servers are gone before the test ends.
        let db = self.db.clone();
        let dbs = std::mem::take(&mut self.databases);
        let snaps = std::mem::take(&mut self.snapshots);
        let t = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                for s in snaps {
                    let _ = db.delete_snapshot(&s).await;
                }
                for d in dbs {
                    let _ = db.delete_database(&d).await;
                }
            });
        });
        let _ = t.join();
    }
}

/// `info` without its latest restorable time, which moves on by itself.
fn without_restorable_time(mut info: DatabaseInfo) -> DatabaseInfo {
    info.latest_restorable_time = None;
    info
}

fn databases(ctx: &Ctx) -> Result<Arc<dyn Databases>, Failure> {
    Ok(ctx.cloud().databases()?.clone())
}

/// Runs `sql` as the credentials' user; returns psql's unaligned, tuples-only output.
async fn psql(creds: &Credentials, sql: &str) -> Result<String, Failure> {
    let out = tokio::process::Command::new("psql")
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
        .arg("-h")
        .arg(&creds.host)
        .arg("-p")
        .arg(creds.port.to_string())
        .arg("-U")
        .arg(&creds.user)
        .arg("-d")
        .arg(&creds.database)
        .arg("-c")
        .arg(sql)
        .env("PGPASSWORD", creds.password.expose())
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run psql (is the PostgreSQL client on PATH?): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "psql {sql:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Create makes an available instance that describe and list show; delete removes it.
pub async fn create_describe_list_delete(ctx: &mut Ctx) -> Outcome {
    let db = databases(ctx)?;
    let mut guard = Cleanup::new(&db);
    let name = ctx.name("crud");
    guard.databases.push(name.clone());
    let info = db.create_database(DatabaseSpec::postgres(&name)).await?;
    ensure!(
        info.state == DatabaseState::Available,
        "state {:?}",
        info.state
    );
    ensure!(info.spec.name == name, "name {}", info.spec.name);
    ensure!(
        info.spec.engine == "postgres",
        "engine {}",
        info.spec.engine
    );
    ensure!(!info.endpoint.is_empty(), "no endpoint");
    // The latest restorable time moves on as backups are taken: compare the rest.
    let described = without_restorable_time(db.describe_database(&name).await?);
    let info = without_restorable_time(info);
    ensure!(
        described == info,
        "describe {described:?} != create {info:?}"
    );
    let listed = db.list_databases().await?;
    ensure!(
        listed.iter().any(|d| d.spec.name == name),
        "{name} not listed"
    );
    db.delete_database(&name).await?;
    expect_err!(db.describe_database(&name).await, NotFound);
    let listed = db.list_databases().await?;
    ensure!(
        !listed.iter().any(|d| d.spec.name == name),
        "{name} still listed after delete"
    );
    expect_err!(db.delete_database(&name).await, NotFound);
    guard.finish().await
}

/// Identifiers outside RDS's rules are refused with InvalidArgument.
pub async fn invalid_names_refused(ctx: &mut Ctx) -> Outcome {
    let db = databases(ctx)?;
    let long = format!("a{}", "b".repeat(63));
    for bad in [
        "",
        "1abc",
        "has_underscore",
        "has space",
        "ends-",
        "two--hyphens",
        long.as_str(),
    ] {
        expect_err!(
            db.create_database(DatabaseSpec::postgres(bad)).await,
            InvalidArgument
        );
    }
    Ok(())
}

/// An engine other than postgres is Unsupported.
pub async fn wrong_engine_unsupported(ctx: &mut Ctx) -> Outcome {
    let db = databases(ctx)?;
    let mut spec = DatabaseSpec::postgres(ctx.name("engine"));
    spec.engine = "oracle-ee".into();
    let e = expect_err!(db.create_database(spec).await, Unsupported);
    ensure!(
        e.to_string().contains("oracle-ee"),
        "error names no engine: {e}"
    );
    Ok(())
}

/// A PostgreSQL major version that does not exist is refused.
pub async fn wrong_version_refused(ctx: &mut Ctx) -> Outcome {
    let db = databases(ctx)?;
    let mut spec = DatabaseSpec::postgres(ctx.name("version"));
    spec.version = "3".into();
    expect_err!(db.create_database(spec).await, InvalidArgument);
    Ok(())
}

/// A second create of the same name is AlreadyExists and leaves the first untouched.
pub async fn duplicate_already_exists(ctx: &mut Ctx) -> Outcome {
    let db = databases(ctx)?;
    let mut guard = Cleanup::new(&db);
    let name = ctx.name("dup");
    guard.databases.push(name.clone());
    let first = db.create_database(DatabaseSpec::postgres(&name)).await?;
    expect_err!(
        db.create_database(DatabaseSpec::postgres(&name)).await,
        AlreadyExists
    );
    let now = without_restorable_time(db.describe_database(&name).await?);
    let first = without_restorable_time(first);
    ensure!(now == first, "the duplicate changed the instance: {now:?}");
    guard.finish().await
}

/// Four tasks race to create one name: exactly one wins, the others get AlreadyExists.
pub async fn concurrent_creates_one_wins(ctx: &mut Ctx) -> Outcome {
    let db = databases(ctx)?;
    let mut guard = Cleanup::new(&db);
    let name = ctx.name("race");
    guard.databases.push(name.clone());
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let db = db.clone();
            let name = name.clone();
            tokio::spawn(async move { db.create_database(DatabaseSpec::postgres(name)).await })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        match t.await? {
            Ok(_) => won += 1,
            Err(e) if e.kind() == mvi_core::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e.into()),
        }
    }
    ensure!(won == 1, "{won} creates won");
    guard.finish().await
}

/// Every operation on an unknown database or snapshot is NotFound.
pub async fn unknown_not_found(ctx: &mut Ctx) -> Outcome {
    let db = databases(ctx)?;
    let name = ctx.name("nosuch");
    expect_err!(db.describe_database(&name).await, NotFound);
    expect_err!(db.credentials(&name).await, NotFound);
    expect_err!(db.delete_database(&name).await, NotFound);
    expect_err!(db.reboot_database(&name, false).await, NotFound);
    expect_err!(db.create_snapshot(&name, &ctx.name("snap")).await, NotFound);
    expect_err!(db.delete_snapshot(&ctx.name("nosnap")).await, NotFound);
    expect_err!(
        db.restore_snapshot(
            &ctx.name("nosnap"),
            DatabaseSpec::postgres(ctx.name("restored"))
        )
        .await,
        NotFound
    );
    let snaps = db.list_snapshots(Some(&name)).await?;
    ensure!(
        snaps.is_empty(),
        "snapshots of an unknown database: {snaps:?}"
    );
    Ok(())
}

/// A reboot returns an available instance at the same endpoint; failing over a single-AZ
/// instance is refused (it has no standby).
pub async fn reboot_keeps_the_endpoint(ctx: &mut Ctx) -> Outcome {
    let db = databases(ctx)?;
    let mut guard = Cleanup::new(&db);
    let name = ctx.name("reboot");
    guard.databases.push(name.clone());
    let info = db.create_database(DatabaseSpec::postgres(&name)).await?;
    let rebooted = db.reboot_database(&name, false).await?;
    ensure!(
        rebooted.state == DatabaseState::Available,
        "state after a reboot {:?}",
        rebooted.state
    );
    ensure!(
        rebooted.endpoint == info.endpoint,
        "endpoint {} after a reboot, {} before",
        rebooted.endpoint,
        info.endpoint
    );
    let e = expect_err!(db.reboot_database(&name, true).await, PreconditionFailed);
    ensure!(
        e.to_string().contains("multi-AZ"),
        "the refusal does not say why: {e}"
    );
    guard.finish().await
}

/// A multi-AZ instance fails over on a reboot with failover: it is available again at the
/// same endpoint, with its standby in another zone where the backend says.
pub async fn multi_az_reboot_with_failover(ctx: &mut Ctx) -> Outcome {
    let db = databases(ctx)?;
    let mut guard = Cleanup::new(&db);
    let name = ctx.name("maz");
    guard.databases.push(name.clone());
    let mut spec = DatabaseSpec::postgres(&name);
    spec.multi_az = true;
    let info = db.create_database(spec).await?;
    ensure!(info.spec.multi_az, "not multi-AZ: {info:?}");
    if let (Some(a), Some(b)) = (&info.zone, &info.standby_zone) {
        ensure!(a != b, "the standby is in the primary's zone {a}");
    }
    let after = db.reboot_database(&name, true).await?;
    ensure!(
        after.state == DatabaseState::Available && after.endpoint == info.endpoint,
        "after the failover: {after:?}, before: {info:?}"
    );
    guard.finish().await
}

/// Rows committed before a failover are there after it, through the same credentials.
pub async fn multi_az_failover_keeps_data(ctx: &mut Ctx) -> Outcome {
    let db = databases(ctx)?;
    let mut guard = Cleanup::new(&db);
    let name = ctx.name("mazdata");
    guard.databases.push(name.clone());
    let mut spec = DatabaseSpec::postgres(&name);
    spec.multi_az = true;
    let info = db.create_database(spec).await?;
    let creds = db.credentials(&name).await?;
    psql(&creds, "create table t (x int); insert into t values (42)").await?;
    let after = db.reboot_database(&name, true).await?;
    ensure!(
        after.zone.is_none() || after.zone == info.standby_zone,
        "the primary is in {:?}, the standby was in {:?}",
        after.zone,
        info.standby_zone
    );
    psql(&creds, "insert into t values (7)").await?;
    let rows = psql(&creds, "select string_agg(x::text, ',' order by x) from t").await?;
    ensure!(rows == "7,42", "rows after the failover: {rows}");
    guard.finish().await
}

/// Credentials connect (the password works) and never show the password in Debug/Display.
pub async fn credentials_redacted_and_work(ctx: &mut Ctx) -> Outcome {
    let db = databases(ctx)?;
    let mut guard = Cleanup::new(&db);
    let name = ctx.name("creds");
    guard.databases.push(name.clone());
    db.create_database(DatabaseSpec::postgres(&name)).await?;
    let creds = db.credentials(&name).await?;
    let secret = creds.password.expose().to_string();
    ensure!(
        secret.len() >= 16,
        "a weak password: {} characters",
        secret.len()
    );
    let url = creds.url();
    ensure!(url.expose().contains(&secret), "the URL lacks the password");
    ensure!(
        url.expose().starts_with("postgres://"),
        "not a postgres URL"
    );
    for shown in [format!("{url:?}"), format!("{url}"), format!("{creds:?}")] {
        ensure!(!shown.contains(&secret), "the password shows in {shown}");
    }
    ensure!(
        psql(&creds, "select 1").await? == "1",
        "select 1 did not answer 1"
    );
    let mut wrong = creds.clone();
    wrong.password = "not-the-password".into();
    ensure!(
        psql(&wrong, "select 1").await.is_err(),
        "a wrong password was accepted"
    );
    let again = db.credentials(&name).await?;
    ensure!(again.password.expose() == secret, "the password changed");
    guard.finish().await
}

/// Data written before a snapshot is in the instance restored from it; the source is untouched
/// by later writes to the copy.
pub async fn snapshot_restore_keeps_data(ctx: &mut Ctx) -> Outcome {
    let db = databases(ctx)?;
    let mut guard = Cleanup::new(&db);
    let src = ctx.name("src");
    let copy = ctx.name("copy");
    let snap = ctx.name("snap");
    guard.databases.extend([src.clone(), copy.clone()]);
    guard.snapshots.push(snap.clone());
    db.create_database(DatabaseSpec::postgres(&src)).await?;
    let creds = db.credentials(&src).await?;
    psql(
        &creds,
        "create table t (x int); insert into t values (42), (7)",
    )
    .await?;
    let info = db.create_snapshot(&src, &snap).await?;
    ensure!(
        info.database == src && info.name == snap,
        "snapshot info {info:?}"
    );
    psql(&creds, "insert into t values (1000)").await?;
    expect_err!(
        db.restore_snapshot(&snap, DatabaseSpec::postgres(&src))
            .await,
        AlreadyExists
    );
    let restored = db
        .restore_snapshot(&snap, DatabaseSpec::postgres(&copy))
        .await?;
    ensure!(
        restored.state == DatabaseState::Available,
        "state {:?}",
        restored.state
    );
    let copy_creds = db.credentials(&copy).await?;
    let sum = psql(&copy_creds, "select sum(x) from t").await?;
    ensure!(sum == "49", "restored sum {sum}, want 49");
    psql(&copy_creds, "insert into t values (5)").await?;
    let sum = psql(&creds, "select sum(x) from t").await?;
    ensure!(sum == "1049", "source sum {sum}, want 1049");
    guard.finish().await
}

/// Snapshots are listed (all, and by database), refuse a duplicate or bad name, and are gone
/// once deleted; they outlive their database.
pub async fn snapshot_list_delete(ctx: &mut Ctx) -> Outcome {
    let db = databases(ctx)?;
    let mut guard = Cleanup::new(&db);
    let name = ctx.name("snaps");
    let (a, b) = (ctx.name("snap-a"), ctx.name("snap-b"));
    guard.databases.push(name.clone());
    guard.snapshots.extend([a.clone(), b.clone()]);
    db.create_database(DatabaseSpec::postgres(&name)).await?;
    db.create_snapshot(&name, &a).await?;
    db.create_snapshot(&name, &b).await?;
    expect_err!(db.create_snapshot(&name, &a).await, AlreadyExists);
    expect_err!(db.create_snapshot(&name, "bad_name").await, InvalidArgument);
    let mine: Vec<String> = db
        .list_snapshots(Some(&name))
        .await?
        .into_iter()
        .map(|s| s.name)
        .collect();
    ensure!(mine.contains(&a) && mine.contains(&b), "listed {mine:?}");
    ensure!(
        mine.iter().all(|s| s.starts_with(&ctx.name(""))),
        "another database's snapshot in {mine:?}"
    );
    let all = db.list_snapshots(None).await?;
    ensure!(all.iter().any(|s| s.name == a), "{a} not in the full list");
    db.delete_snapshot(&a).await?;
    expect_err!(db.delete_snapshot(&a).await, NotFound);
    db.delete_database(&name).await?;
    let left: Vec<String> = db
        .list_snapshots(None)
        .await?
        .into_iter()
        .map(|s| s.name)
        .collect();
    ensure!(!left.contains(&a), "{a} still listed");
    ensure!(
        left.contains(&b),
        "{b} did not outlive its database: {left:?}"
    );
    guard.finish().await
}

/// An instance and its data survive a restart of the program; credentials still work.
pub async fn survives_reopen(ctx: &mut Ctx) -> Outcome {
    let name = ctx.name("durable");
    {
        let db = databases(ctx)?;
        let mut guard = Cleanup::new(&db);
        guard.databases.push(name.clone());
        db.create_database(DatabaseSpec::postgres(&name)).await?;
        let creds = db.credentials(&name).await?;
        psql(
            &creds,
            "create table t (x text); insert into t values ('kept')",
        )
        .await?;
        // Written: from here the instance must outlive this handle.
        guard.databases.clear();
    }
    ctx.reopen().await?;
    let db = databases(ctx)?;
    let mut guard = Cleanup::new(&db);
    guard.databases.push(name.clone());
    let info = db.describe_database(&name).await?;
    ensure!(
        info.state == DatabaseState::Available,
        "state {:?}",
        info.state
    );
    let creds = db.credentials(&name).await?;
    let got = psql(&creds, "select x from t").await?;
    ensure!(got == "kept", "after reopen: {got:?}");
    guard.finish().await
}

/// Waits until `name`'s latest restorable time is at or after `at` (continuous backups
/// archive within seconds; RDS reports within minutes, moto at once); that time.
async fn restorable_by(
    db: &Arc<dyn Databases>,
    name: &str,
    at: Timestamp,
) -> Result<Timestamp, Failure> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let info = db.describe_database(name).await?;
        match info.latest_restorable_time {
            Some(t) if t >= at => return Ok(t),
            seen if std::time::Instant::now() > deadline => {
                return Err(format!(
                    "the latest restorable time of {name} is {seen:?} after 60 s, not yet {at}"
                )
                .into());
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
        }
    }
}

/// A point-in-time restore of an instance with backups makes a new available instance at
/// its own endpoint; one from an instance without backups, to a time after the latest
/// restorable one, from an unknown instance or onto a name in use is refused.
pub async fn point_in_time_restore_checked(ctx: &mut Ctx) -> Outcome {
    let db = databases(ctx)?;
    let mut guard = Cleanup::new(&db);
    let (src, bare, copy) = (
        ctx.name("pitr"),
        ctx.name("nobackup"),
        ctx.name("pitr-copy"),
    );
    guard
        .databases
        .extend([src.clone(), bare.clone(), copy.clone()]);
    let info = db.create_database(DatabaseSpec::postgres(&src)).await?;
    ensure!(
        info.spec.backup_retention_days > 0,
        "backups are off by default: {info:?}"
    );
    let mut no_backups = DatabaseSpec::postgres(&bare);
    no_backups.backup_retention_days = 0;
    let bare_info = db.create_database(no_backups).await?;
    ensure!(
        bare_info.latest_restorable_time.is_none(),
        "an instance without backups reports a restorable time: {bare_info:?}"
    );
    let latest = restorable_by(&db, &src, Timestamp::MIN_UTC).await?;
    let e = expect_err!(
        db.restore_to_point_in_time(&bare, RestoreTime::Latest, DatabaseSpec::postgres(&copy))
            .await,
        PreconditionFailed
    );
    ensure!(
        e.to_string().contains("backup"),
        "the refusal does not say why: {e}"
    );
    let later = latest + chrono::Duration::hours(1);
    let e = expect_err!(
        db.restore_to_point_in_time(&src, RestoreTime::At(later), DatabaseSpec::postgres(&copy))
            .await,
        InvalidArgument
    );
    ensure!(
        e.to_string().contains("latest restorable"),
        "the refusal does not say why: {e}"
    );
    expect_err!(
        db.restore_to_point_in_time(
            &ctx.name("missing"),
            RestoreTime::Latest,
            DatabaseSpec::postgres(&copy)
        )
        .await,
        NotFound
    );
    expect_err!(
        db.restore_to_point_in_time(&src, RestoreTime::Latest, DatabaseSpec::postgres(&bare))
            .await,
        AlreadyExists
    );
    let restored = db
        .restore_to_point_in_time(&src, RestoreTime::Latest, DatabaseSpec::postgres(&copy))
        .await?;
    ensure!(
        restored.state == DatabaseState::Available && restored.spec.name == copy,
        "restored {restored:?}"
    );
    ensure!(
        restored.endpoint != info.endpoint,
        "the copy answers at its source's endpoint {}",
        info.endpoint
    );
    let names: Vec<String> = db
        .list_databases()
        .await?
        .into_iter()
        .map(|d| d.spec.name)
        .collect();
    ensure!(names.contains(&copy), "{copy} not listed: {names:?}");
    guard.finish().await
}

/// The server's clock now, as a timestamp: PostgreSQL stamps commits with it.
async fn server_now(creds: &Credentials) -> Result<Timestamp, Failure> {
    let text = psql(
        creds,
        "select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
    )
    .await?;
    text.parse()
        .map_err(|e| format!("the server's time {text:?}: {e}").into())
}

/// A restore to a time between two commits holds exactly the rows committed before it; a
/// restore to the latest restorable time holds both; each copy has its own password.
pub async fn point_in_time_restore_keeps_exactly_earlier_rows(ctx: &mut Ctx) -> Outcome {
    let db = databases(ctx)?;
    let mut guard = Cleanup::new(&db);
    let (src, at, latest) = (
        ctx.name("pitr"),
        ctx.name("pitr-at"),
        ctx.name("pitr-latest"),
    );
    guard
        .databases
        .extend([src.clone(), at.clone(), latest.clone()]);
    db.create_database(DatabaseSpec::postgres(&src)).await?;
    let creds = db.credentials(&src).await?;
    psql(&creds, "create table t (x int); insert into t values (1)").await?;
    let between = server_now(&creds).await?;
    psql(&creds, "insert into t values (2)").await?;
    let after = server_now(&creds).await?;
    restorable_by(&db, &src, after).await?;
    psql(&creds, "insert into t values (3)").await?;

    let rows = |c: Credentials| async move {
        psql(&c, "select string_agg(x::text, ',' order by x) from t").await
    };
    db.restore_to_point_in_time(&src, RestoreTime::At(between), DatabaseSpec::postgres(&at))
        .await?;
    let at_creds = db.credentials(&at).await?;
    ensure!(
        at_creds.password.expose() != creds.password.expose(),
        "the copy has its source's password"
    );
    let got = rows(at_creds.clone()).await?;
    ensure!(got == "1", "restored to {between}: rows {got}, want 1");
    // The copy is a database of its own: it takes writes, its source does not see them.
    psql(&at_creds, "insert into t values (10)").await?;
    let got = rows(creds.clone()).await?;
    ensure!(
        got == "1,2,3",
        "the source after a write to its copy: rows {got}"
    );

    let restored = db
        .restore_to_point_in_time(&src, RestoreTime::Latest, DatabaseSpec::postgres(&latest))
        .await?;
    let got = rows(db.credentials(&latest).await?).await?;
    ensure!(
        got.starts_with("1,2"),
        "restored to the latest restorable time: rows {got}, want 1,2 and perhaps 3"
    );
    ensure!(
        restored.state == DatabaseState::Available,
        "state {:?}",
        restored.state
    );
    guard.finish().await
}
