//! A writer keeps committing rows while the zone of its multi-AZ database's primary fails,
//! and the program prints what it saw: the failover, when writes resumed through the same
//! endpoint, and how many acknowledged rows were lost (none).
//!
//! ```text
//! cargo run --example failover [STATE_ROOT]
//! ```
//!
//! Needs PostgreSQL's server binaries and `psql` (the README's set-up installs them).

use std::time::Duration;

use mvi::Result;
use mvi::database::DatabaseSpec;
use mvi::local::LocalCloud;

mod common;
#[path = "../tests/common/sql.rs"]
mod sql;

use common::failed;

#[tokio::main]
async fn main() -> Result<()> {
    let root = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("mvi-failover-example"));
    if root.exists() {
        mvi::local::database::purge(&root);
        std::fs::remove_dir_all(&root).map_err(|e| failed("cannot clear the state root", e))?;
    }
    let local = LocalCloud::builder().root(&root).build_local().await?;
    let dbs = local.cloud().databases()?.clone();
    let mut spec = DatabaseSpec::postgres("orders");
    spec.multi_az = true;
    let info = dbs.create_database(spec).await?;
    println!(
        "database orders: primary in {}, synchronous standby in {}, endpoint {}",
        info.zone.as_deref().unwrap_or("?"),
        info.standby_zone.as_deref().unwrap_or("?"),
        info.endpoint
    );
    let url = dbs.credentials("orders").await?.url().expose().to_string();
    sql::psql(&url, "create table rows (id bigint primary key)")
        .map_err(|e| failed("create table", e))?;

    let writer = sql::Writer::start(&url, "rows");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let zone = info.zone.clone().unwrap_or_default();
    let failed_at = writer.elapsed();
    println!("{:6.2}s  zone {zone} fails", failed_at.as_secs_f64());
    local.vms().fail_zone(&zone)?;
    let mut seen = info.events.len();
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = dbs.describe_database("orders").await?;
        for e in now.events.iter().skip(seen) {
            println!("{:6.2}s  {}", writer.elapsed().as_secs_f64(), e.message);
        }
        seen = now.events.len();
    }
    let acked = writer.stop();
    let t = sql::tally(&url, "rows", &acked, failed_at).map_err(|e| failed("count the rows", e))?;
    println!(
        "\n{} rows acknowledged ({} before the zone failed); the first write after it was acknowledged {} ms later, through the same endpoint; acknowledged rows lost: {}",
        t.acked,
        t.before,
        t.resumed.map_or("-".into(), |d| d.as_millis().to_string()),
        t.lost.len()
    );
    let now = dbs.describe_database("orders").await?;
    println!(
        "now: primary in {}, standby in {}",
        now.zone.as_deref().unwrap_or("?"),
        now.standby_zone.as_deref().unwrap_or("(being built)")
    );
    dbs.delete_database("orders").await?;
    if !t.lost.is_empty() {
        return Err(failed(
            "acknowledged rows were lost",
            format!("{:?}", t.lost),
        ));
    }
    Ok(())
}
