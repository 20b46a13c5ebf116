//! A stack `up` killed with SIGKILL at many points converges on the next run: the real
//! resources are exactly the declared ones, with no orphan and no duplicate.
//!
//! The test runs itself as a child process that applies the stack, kills it after a delay
//! drawn from a seeded generator (between nothing and a whole run), and repeats on the same
//! state; then it runs `up` to completion and checks the resources through the service APIs.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::path::Path;
use std::time::{Duration, Instant};

use mvi::Cloud;
use mvi::kv::{KeyAttr, KeyType};
use mvi::stack::resources::{
    Bucket, BucketArgs, Key, KeyArgs, LogGroup, LogGroupArgs, Noop, NoopArgs, Table, TableArgs,
};
use mvi::stack::{FileStore, Options, Stack, StepOp};
use rand::{Rng, SeedableRng};

const CHILD: &str = "MVI_STACK_CRASH_ROOT";
const KILLS: usize = 50;
const SEED: u64 = 20261122;

/// The stack: four families of resources, some depending on others.
fn declare(cloud: &Cloud, root: &Path) -> Stack {
    let s = Stack::new("crash", cloud.clone(), FileStore::new(root.join("stacks"))).unwrap();
    for i in 0..4 {
        let b = Bucket::new(
            &s,
            &format!("b{i}"),
            BucketArgs::new(format!("crash-bucket-{i}")),
        )
        .unwrap();
        Table::new(
            &s,
            &format!("t{i}"),
            TableArgs::new(format!("crash-table-{i}"), KeyAttr::new("id", KeyType::Str)),
        )
        .unwrap();
        LogGroup::new(
            &s,
            &format!("g{i}"),
            LogGroupArgs::new(format!("/crash/{i}")),
        )
        .unwrap();
        Noop::new(&s, &format!("n{i}"), NoopArgs::new(b.name.clone())).unwrap();
    }
    Key::new(&s, "k", KeyArgs::new("alias/crash-key")).unwrap();
    s
}

async fn open(root: &Path) -> Cloud {
    mvi::local::LocalCloud::builder()
        .root(root.join("cloud"))
        .seed(9)
        .build()
        .await
        .unwrap()
}

fn spawn_child(root: &Path) -> std::process::Child {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "sigkill_at_any_point_converges", "--nocapture"])
        .env(CHILD, root)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn sigkill_at_any_point_converges() {
    if let Some(root) = std::env::var_os(CHILD) {
        let root = Path::new(&root);
        let cloud = open(root).await;
        declare(&cloud, root)
            .up_with(Options::default().parallelism(4))
            .await
            .unwrap();
        return;
    }

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // How long a whole run takes here, to spread the kills over it.
    let started = Instant::now();
    let mut child = spawn_child(&dir.path().join("probe"));
    assert!(
        child.wait().unwrap().success(),
        "an uninterrupted run must succeed"
    );
    let whole = started.elapsed();

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(SEED);
    for _ in 0..KILLS {
        let mut child = spawn_child(root);
        let delay = Duration::from_micros(rng.random_range(0..whole.as_micros() as u64));
        tokio::time::sleep(delay).await;
        let _ = child.kill(); // SIGKILL: it may have finished already, which is fine too.
        child.wait().unwrap();
        // A killed run leaves its lock behind, as a crashed program would: the next run
        // takes it over, its process being gone.
    }

    // The next run converges.
    let cloud = open(root).await;
    let stack = declare(&cloud, root);
    stack.up().await.unwrap();
    let state = stack.state().await.unwrap();
    assert!(
        state.pending.is_empty(),
        "pending operations left: {:?}",
        state.pending
    );
    assert_eq!(state.resources.len(), 17);
    assert!(
        stack
            .preview()
            .await
            .unwrap()
            .steps
            .iter()
            .all(|s| s.op == StepOp::Same)
    );

    // Exactly the declared resources exist: no orphan, no duplicate.
    let mut buckets: Vec<String> = cloud
        .blob()
        .unwrap()
        .list_buckets()
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.name)
        .collect();
    buckets.sort();
    assert_eq!(
        buckets,
        (0..4)
            .map(|i| format!("crash-bucket-{i}"))
            .collect::<Vec<_>>()
    );
    let tables = cloud.kv().unwrap().list_tables().await.unwrap();
    assert_eq!(
        tables,
        (0..4)
            .map(|i| format!("crash-table-{i}"))
            .collect::<Vec<_>>()
    );
    let groups: Vec<String> = cloud
        .logs()
        .unwrap()
        .list_groups()
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.name)
        .collect();
    assert_eq!(
        groups,
        (0..4).map(|i| format!("/crash/{i}")).collect::<Vec<_>>()
    );
    let live_keys: Vec<_> = cloud
        .crypto()
        .unwrap()
        .list_keys()
        .await
        .unwrap()
        .into_iter()
        .filter(|k| {
            k.state != mvi::crypto::KeyState::PendingDeletion
                && k.aliases.iter().any(|a| a == "alias/crash-key")
        })
        .collect();
    assert_eq!(live_keys.len(), 1, "{live_keys:?}");
}
