//! Timing of the local Database service on disk (a temporary state root), release build.
//!
//! Each step starts or stops real PostgreSQL servers, so it is timed a few times with a
//! wall clock rather than sampled by criterion:
//!
//! - `open (cold)`: the first open of a fresh state root (finds the binaries, no servers).
//! - `create_database`: end to end — template copy, access rules, server start, application
//!   user and database — for the first instance (which may pay the one-time `initdb` of the
//!   machine-wide template, if none exists yet) and for later ones.
//! - `reopen (reattach)`: drop the cloud and open the same root while its servers run on.
//! - `reopen (restart)`: the same after [`LocalDatabases::shutdown`], so every server starts.
//! - `snapshot` and `restore`: `pg_dump -Fc` of a small database, and a new instance from it.
//!
//! Run: `cargo bench --bench database` (about 10 s). Prints one line per figure.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mvi::Service;
use mvi::database::DatabaseSpec;
use mvi::local::database::LocalDatabases;
use mvi::local::storage::Ctx;
use mvi::local::{LocalCloud, Sim};

const INSTANCES: usize = 3;

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

async fn open(root: &std::path::Path) -> (Arc<Sim>, LocalDatabases) {
    let sim = Arc::new(Sim::new(1, Arc::new(mvi::SystemClock), "bench".into()));
    let crypto = Arc::new(
        mvi::local::crypto::LocalCrypto::open(
            Ctx::new(Some(root), Service::Crypto, sim.clone()).expect("ctx"),
        )
        .await
        .expect("crypto"),
    );
    let db = LocalDatabases::open(
        Ctx::new(Some(root), Service::Database, sim.clone()).expect("ctx"),
        crypto,
    )
    .await
    .expect("open databases");
    (sim, db)
}

fn main() {
    use mvi::Databases;
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().to_path_buf();
    rt.block_on(async {
        let t = Instant::now();
        let cloud = LocalCloud::builder()
            .root(&root)
            .build()
            .await
            .expect("cloud");
        println!("database/open (cold, whole cloud): {}", ms(t.elapsed()));
        drop(cloud);

        let (_, db) = open(&root).await;
        for i in 0..INSTANCES {
            let t = Instant::now();
            db.create_database(DatabaseSpec::postgres(format!("bench{i}")))
                .await
                .expect("create");
            println!("database/create_database #{i}: {}", ms(t.elapsed()));
        }
        let t = Instant::now();
        db.create_snapshot("bench0", "snap0")
            .await
            .expect("snapshot");
        println!("database/create_snapshot: {}", ms(t.elapsed()));
        let t = Instant::now();
        db.restore_snapshot("snap0", DatabaseSpec::postgres("restored"))
            .await
            .expect("restore");
        println!("database/restore_snapshot: {}", ms(t.elapsed()));
        drop(db);

        let t = Instant::now();
        let (_, db) = open(&root).await;
        println!(
            "database/reopen (reattach {} running servers): {}",
            INSTANCES + 1,
            ms(t.elapsed())
        );
        db.shutdown().await.expect("shutdown");
        drop(db);
        let t = Instant::now();
        let (_, db) = open(&root).await;
        println!(
            "database/reopen (restart {} stopped servers): {}",
            INSTANCES + 1,
            ms(t.elapsed())
        );
        for name in db.list_databases().await.expect("list") {
            db.delete_database(&name.spec.name).await.expect("delete");
        }
    });
    mvi::local::database::purge(&root);
}
