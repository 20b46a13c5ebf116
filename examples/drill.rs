//! A restore drill: a database with data and an app writing to it is restored from its
//! latest point in time into a copy, which is checked, measured (RTO, RPO) and deleted; then
//! the same from a snapshot. The program prints the reports and the answer to "when did we
//! last prove we can restore, and how long did it take".
//!
//! ```text
//! cargo run --example drill [STATE_ROOT] [MB]
//! ```
//!
//! Needs PostgreSQL's server binaries and `psql` (the README's set-up installs them).

use std::time::Duration;

use mvi::Result;
use mvi::database::DatabaseSpec;
use mvi::drill::{self, Drill, DrillReport, DrillSource};
use mvi::local::LocalCloud;

mod common;
#[path = "../tests/common/sql.rs"]
mod sql;

use common::failed;

fn show(report: &DrillReport) {
    println!(
        "  restored from {} into {} (deleted): {}",
        report.restored_from,
        report.copy,
        if report.passed() { "passed" } else { "FAILED" }
    );
    println!(
        "  RTO {:.2} s (request to restored and verified), RPO {}",
        report.rto.as_secs_f64(),
        report.rpo.map_or_else(
            || "unknown (no heartbeat in the copy)".to_string(),
            |d| format!(
                "{:.2} s (the newest data's age at the request)",
                d.as_secs_f64()
            )
        )
    );
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let root = args
        .next()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("mvi-drill-example"));
    let mb: u32 = match args.next() {
        Some(n) => n.parse().map_err(|e| failed("MB", e))?,
        None => 10,
    };
    if root.exists() {
        mvi::local::database::purge(&root);
        std::fs::remove_dir_all(&root).map_err(|e| failed("cannot clear the state root", e))?;
    }
    let local = LocalCloud::builder().root(&root).build_local().await?;
    let cloud = local.cloud().clone();
    let dbs = cloud.databases()?.clone();
    dbs.create_database(DatabaseSpec::postgres("orders"))
        .await?;
    let url = dbs.credentials("orders").await?.url().expose().to_string();
    // About `mb` MB of rows of 1 kB.
    sql::psql(
        &url,
        &format!(
            "create table payload (id int primary key, body text); \
             insert into payload select g, repeat('x', 1000) from generate_series(1, {}) g; \
             create table rows (id bigint primary key)",
            mb * 1000
        ),
    )
    .map_err(|e| failed("loading the data", e))?;
    println!(
        "database orders: {mb} MB of rows, continuous backups on, an app writing a row per request"
    );
    let writer = sql::Writer::start(&url, "rows");

    println!("drill 1: the latest restorable time");
    let check = format!("select count(*) = {} from payload", mb * 1000);
    let report = drill::drill(&cloud, Drill::new("orders", &check)).await?;
    show(&report);

    dbs.create_snapshot("orders", "orders-nightly").await?;
    println!("drill 2: snapshot orders-nightly");
    let report = drill::drill(
        &cloud,
        Drill::new("orders", &check)
            .source(DrillSource::Snapshot(Some("orders-nightly".into())))
            .heartbeats(1, Duration::ZERO),
    )
    .await?;
    show(&report);
    let acked = writer.stop();

    let last = drill::last_drill(&cloud, "orders").await?;
    if let Some(last) = last {
        println!(
            "\nlast proven restore of orders: {} ({}), RTO {:.2} s; {} drills on record; the app committed {} rows meanwhile",
            last.requested.format("%Y-%m-%d %H:%M:%S UTC"),
            last.restored_from,
            last.rto.as_secs_f64(),
            drill::drill_history(&cloud, "orders", 100).await?.len(),
            acked.len()
        );
    }
    dbs.delete_database("orders").await?;
    Ok(())
}
