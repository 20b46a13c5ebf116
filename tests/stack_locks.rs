//! Locks you can trust: a lock is a lease naming its holder; a second run is refused naming
//! it; a lock whose process was killed is taken over with a message, one from another host
//! once its lease ran out; a run that lost its lock cannot write (fencing); a dropped run
//! releases its lock; a reader never changes the journal a running `up` appends to.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::io::BufRead;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mvi::stack::resources::{Noop, NoopArgs};
use mvi::stack::{
    Args, BlobStore, Cx, ErasedInput, Event, FileStore, Input, LockHolder, Resource,
    ResourceOptions, Stack, StateStore, erase,
};
use mvi::{BlobExt, Cloud, ErrorKind};
use sha2::Digest;

const HOLDER: &str = "MVI_STACK_LOCK_HOLDER_ROOT";

async fn cloud(root: &Path) -> Cloud {
    mvi::local::LocalCloud::builder()
        .root(root.join("cloud"))
        .seed(3)
        .build()
        .await
        .unwrap()
}

fn stack(cloud: &Cloud, root: &Path, n: usize) -> Stack {
    let s = Stack::new("locks", cloud.clone(), FileStore::new(root.join("stacks"))).unwrap();
    for i in 0..n {
        Noop::new(&s, &format!("n{i}"), NoopArgs::new(format!("v{i}"))).unwrap();
    }
    s
}

fn notices(events: &mut tokio::sync::broadcast::Receiver<Event>) -> Vec<String> {
    let mut out = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let Event::Notice { message } = e {
            out.push(message);
        }
    }
    out
}

#[tokio::test]
async fn a_second_run_is_refused_naming_the_holder_and_a_killed_holder_is_taken_over() {
    if let Some(root) = std::env::var_os(HOLDER) {
        // The holder: takes the lock as a run would, says so, and stays.
        let store = FileStore::new(Path::new(&root).join("stacks"));
        store.lock("locks", &LockHolder::me("up")).await.unwrap();
        println!("locked");
        tokio::time::sleep(Duration::from_secs(60)).await;
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut holder = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_second_run_is_refused_naming_the_holder_and_a_killed_holder_is_taken_over",
            "--nocapture",
        ])
        .env(HOLDER, root)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(holder.stdout.take().unwrap()).lines();
    assert!(lines.any(|l| l.is_ok_and(|l| l.contains("locked"))));

    let cloud = cloud(root).await;
    let err = stack(&cloud, root, 3).up().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PreconditionFailed, "{err}");
    assert!(
        err.to_string().contains(&format!("pid {}", holder.id())),
        "{err}"
    );
    // Its holder may be running: unlocking needs force.
    let refused = stack(&cloud, root, 3).unlock(false).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::PreconditionFailed, "{refused}");

    holder.kill().unwrap(); // SIGKILL: the lock file stays behind
    holder.wait().unwrap();
    let s = stack(&cloud, root, 3);
    let mut events = s.events();
    s.up().await.unwrap();
    let said = notices(&mut events);
    assert!(
        said.iter()
            .any(|m| m.contains("took over the lock") && m.contains("is gone")),
        "{said:?}"
    );
    assert_eq!(s.lock_holder().await.unwrap(), None, "released at the end");
}

#[tokio::test]
async fn a_lock_from_another_host_is_refused_until_its_lease_expires() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let cloud = cloud(root).await;
    let lock = root.join("stacks/locks/lock.json");
    std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
    let write = |expires: chrono::DateTime<chrono::Utc>| {
        let other = LockHolder {
            host: "build-agent-7".into(),
            pid: 1234,
            expires: Some(expires),
            generation: 99,
            ..LockHolder::me("up")
        };
        std::fs::write(&lock, serde_json::to_vec(&other).unwrap()).unwrap();
    };
    write(chrono::Utc::now() + chrono::Duration::seconds(60));
    let err = stack(&cloud, root, 1).up().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PreconditionFailed, "{err}");
    assert!(err.to_string().contains("build-agent-7"), "{err}");

    write(chrono::Utc::now() - chrono::Duration::seconds(1));
    let s = stack(&cloud, root, 1);
    let mut events = s.events();
    s.up().await.unwrap();
    let said = notices(&mut events);
    assert!(
        said.iter()
            .any(|m| m.contains("build-agent-7") && m.contains("lease expired")),
        "{said:?}"
    );
}

/// Takes the lock with `a`, loses it to `b` (forced unlock, then a whole `up` through `b`),
/// and checks every write `a` tries is refused and leaves `b`'s state as it was.
async fn lost_lock_is_fenced(
    a: Arc<dyn StateStore>,
    b: Arc<dyn StateStore>,
    cloud: &Cloud,
    state: impl Fn() -> futures::future::BoxFuture<'static, Vec<u8>>,
) {
    a.lock("fenced", &LockHolder::me("up")).await.unwrap();
    a.load("fenced").await.unwrap();
    let newer = Stack::with_store("fenced", cloud.clone(), b.clone()).unwrap();
    Noop::new(&newer, "kept", NoopArgs::new("newer")).unwrap();
    assert_eq!(
        newer.up().await.unwrap_err().kind(),
        ErrorKind::PreconditionFailed,
        "the lock is still held"
    );
    newer.unlock(true).await.unwrap();
    newer.up().await.unwrap();
    let before = state().await;

    let doc = br#"{"version":1,"stack":"fenced","serial":999,"resources":{}}"#;
    let e = a.snapshot("fenced", doc).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PreconditionFailed, "{e}");
    assert!(e.to_string().contains("no longer holds"), "{e}");
    if a.journaled() {
        let entry = br#"{"entry":"remove","urn":"fenced::mvi:test:Noop::kept"}"#.to_vec();
        let e = a.append("fenced", &[entry]).await.unwrap_err();
        assert!(e.to_string().contains("no longer holds"), "{e}");
    }
    // Its release does not remove the other run's lock either.
    newer.unlock(true).await.unwrap();
    b.lock("fenced", &LockHolder::me("up")).await.unwrap();
    a.unlock("fenced").await.unwrap();
    assert!(b.holder("fenced").await.unwrap().is_some());
    b.unlock("fenced").await.unwrap();

    assert_eq!(state().await, before, "the newer state was changed");
    assert!(newer.state().await.unwrap().resources.len() == 1);
    assert!(newer.preview().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_run_that_lost_its_lock_cannot_write_file_store() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let cloud = cloud(&root).await;
    let a: Arc<dyn StateStore> = Arc::new(FileStore::new(root.join("stacks")));
    let b: Arc<dyn StateStore> = Arc::new(FileStore::new(root.join("stacks")));
    let path = root.join("stacks/fenced");
    lost_lock_is_fenced(a, b, &cloud, || {
        let path = path.clone();
        Box::pin(async move {
            let mut all = std::fs::read(path.join("state.json")).unwrap();
            all.extend(std::fs::read(path.join("journal.log")).unwrap_or_default());
            all
        })
    })
    .await;
}

#[tokio::test]
async fn a_run_that_lost_its_lock_cannot_write_blob_store() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = cloud(dir.path()).await;
    let blob = cloud.blob().unwrap();
    blob.create_bucket("states").await.unwrap();
    let a: Arc<dyn StateStore> = Arc::new(BlobStore::new(blob.clone(), "states", "s/"));
    let b: Arc<dyn StateStore> = Arc::new(BlobStore::new(blob.clone(), "states", "s/"));
    lost_lock_is_fenced(a, b, &cloud, move || {
        let blob = blob.clone();
        Box::pin(async move {
            blob.get("states", "s/fenced/state.json")
                .await
                .unwrap()
                .to_vec()
        })
    })
    .await;
}

// A resource whose create takes long: a run can be dropped in the middle of it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct SlowSpec {
    key: String,
}

struct SlowArgs(Input<String>);

impl Args for SlowArgs {
    fn props(&self, stack: &Arc<str>) -> Vec<(&'static str, ErasedInput)> {
        vec![("key", erase(stack, &self.0))]
    }
}

struct Slow;

/// Whether [`Slow`]'s create takes its time.
static SLOW: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

#[mvi::async_trait]
impl Resource for Slow {
    const TYPE: &'static str = "test:slow:Thing";
    const REPLACE_ON: &'static [&'static str] = &["key"];
    type Args = SlowSpec;
    type Outputs = SlowSpec;

    async fn create(_: Cx<'_>, args: &SlowSpec) -> mvi::Result<(String, SlowSpec)> {
        if SLOW.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        Ok(("slow-1".into(), args.clone()))
    }
    async fn find(_: Cx<'_>, _: &SlowSpec) -> mvi::Result<Option<String>> {
        Ok(None)
    }
    async fn read(_: Cx<'_>, _: &str, a: &SlowSpec) -> mvi::Result<Option<(SlowSpec, SlowSpec)>> {
        Ok(Some((a.clone(), a.clone())))
    }
    async fn update(_: Cx<'_>, _: &str, _: &SlowSpec, n: &SlowSpec) -> mvi::Result<SlowSpec> {
        Ok(n.clone())
    }
    async fn delete(_: Cx<'_>, _: &str, _: &SlowSpec) -> mvi::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_dropped_run_releases_its_lock() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let cloud = cloud(root).await;
    let s = stack(&cloud, root, 2);
    s.declare::<Slow>("slow", &SlowArgs("k".into()), ResourceOptions::default())
        .unwrap();
    let run = s.up();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), run)
            .await
            .is_err(),
        "the run is still in its slow create"
    );
    // Dropped: the lock is released, and the next run resolves what it left pending.
    assert_eq!(s.lock_holder().await.unwrap(), None);
    let state = s.state().await.unwrap();
    assert!(
        state.pending.keys().any(|k| k.ends_with("::slow")),
        "{state:?}"
    );
    SLOW.store(false, std::sync::atomic::Ordering::SeqCst);
    let next = stack(&cloud, root, 2);
    next.declare::<Slow>("slow", &SlowArgs("k".into()), ResourceOptions::default())
        .unwrap();
    next.up().await.unwrap();
    let state = next.state().await.unwrap();
    assert_eq!(state.resources.len(), 3);
    assert!(state.pending.is_empty(), "{state:?}");
}

#[tokio::test]
async fn a_reader_during_an_up_never_changes_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let cloud = cloud(root).await;
    let s = stack(&cloud, root, 400);
    let up = tokio::spawn(async move {
        s.up_with(mvi::stack::Options::default().parallelism(2))
            .await
    });
    // Readers, as often as they can while it runs: each sees a consistent prefix.
    let journal = root.join("stacks/locks/journal.log");
    let mut reads = 0;
    while !up.is_finished() {
        let reader = stack(&cloud, root, 400);
        reader.outputs().await.unwrap();
        let state = reader.state().await.unwrap();
        assert!(state.resources.len() <= 400);
        reads += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    up.await.unwrap().unwrap();
    assert!(reads > 0);
    let s = stack(&cloud, root, 400);
    assert_eq!(
        s.state().await.unwrap().resources.len(),
        400,
        "nothing was cut"
    );
    assert!(s.preview().await.unwrap().is_empty());

    // And a torn tail under a live lock: the reader reads past it and leaves it.
    let holder = FileStore::new(root.join("stacks"));
    holder.lock("locks", &LockHolder::me("up")).await.unwrap();
    holder.load("locks").await.unwrap();
    let entry = br#"{"entry":"resolved","urn":"locks::mvi:test:Noop::n0"}"#.to_vec();
    holder.append("locks", &[entry]).await.unwrap();
    let mut bytes = std::fs::read(&journal).unwrap();
    // An append in progress, over the preallocated zeros after the last record (which
    // ends in JSON, not a zero).
    let end = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    bytes[end..end + 6].copy_from_slice(&[0x30, 0, 0, 0, 1, 2]);
    std::fs::write(&journal, &bytes).unwrap();
    let digest = || hex::encode(sha2::Sha256::digest(std::fs::read(&journal).unwrap()));
    let before = digest();
    stack(&cloud, root, 400).preview().await.unwrap();
    stack(&cloud, root, 400).state().await.unwrap();
    assert_eq!(digest(), before, "a reader changed the journal");
    holder.unlock("locks").await.unwrap();
}
