//! A stack `up` killed with SIGKILL at many points converges on the next run: the real
//! resources are exactly the declared ones, with no orphan and no duplicate.
//!
//! The test runs itself as a child process that applies the stack, kills it after a delay
//! drawn from a seeded generator (between nothing and a whole run), and repeats on the same
//! state; then it runs `up` to completion and checks the resources through the service APIs.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

#[path = "common/inventory.rs"]
mod inventory;
#[path = "common/repo.rs"]
mod repo;

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
    let buckets = inventory::bucket_names(&cloud).await;
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

// ---------------------------------------------------------------------------------------
// Updates, replacements and deletes under SIGKILL, with secrets that must never show.

const SECRETS_CHILD: &str = "MVI_STACK_SECRETS_ROOT";
const GENERATION: &str = "MVI_STACK_SECRETS_GENERATION";
/// Appears in secret inputs and outputs; must appear in plaintext nowhere.
const CANARY: &str = "canary-7f3a9c1e-do-not-leak";

/// Generation `g` of the program: a secret that changes every time (an update), a resource
/// whose key changes every time (a replacement), a bucket in even generations only (a create
/// or a delete), and a container service given a plain literal as `secret_env`.
fn secrets_program(cloud: &Cloud, root: &Path, g: u32) -> Stack {
    use mvi::image::ImageConfig;
    use mvi::stack::Output;
    use mvi::stack::resources::{
        ContainerService, ContainerServiceArgs, Image, ImageArgs, Repository, RepositoryArgs,
    };
    let s = Stack::new(
        "secrets",
        cloud.clone(),
        FileStore::new(root.join("stacks")),
    )
    .unwrap();
    let token = Noop::new(
        &s,
        "token",
        NoopArgs::new(Output::secret(format!("{CANARY}-token-{g}"))),
    )
    .unwrap();
    Noop::new(
        &s,
        "rotated",
        NoopArgs::new(token.value.clone()).key(format!("k{g}")),
    )
    .unwrap();
    if g.is_multiple_of(2) {
        Bucket::new(&s, "extra", BucketArgs::new("secrets-extra")).unwrap();
    }
    let repo = Repository::new(&s, "repo", RepositoryArgs::new("canary").force_destroy()).unwrap();
    let app = repo::package_path("examples/webapp");
    let image = Image::new(
        &s,
        "image",
        ImageArgs::new(&repo.name, &app, ImageConfig::new(["python3", "app.py"]))
            .unwrap()
            .tag("v1"),
    )
    .unwrap();
    ContainerService::new(
        &s,
        "svc",
        ContainerServiceArgs::new("canary-svc", &image.reference, 0)
            .env("GENERATION", format!("{g}"))
            .secret_env("API_TOKEN", format!("{CANARY}-literal")),
    )
    .unwrap();
    s.export("token", &token.value).unwrap();
    s
}

/// Whether `needle` is in any file under `dir`.
fn found_in_files(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if std::fs::read(&p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
            {
                hits.push(p.display().to_string());
            }
        }
    }
    hits
}

#[tokio::test]
async fn sigkill_during_updates_replacements_and_deletes_converges_and_shows_no_secret() {
    if let Some(root) = std::env::var_os(SECRETS_CHILD) {
        let root = Path::new(&root);
        let cloud = open(root).await;
        let g = std::env::var(GENERATION).unwrap().parse().unwrap();
        secrets_program(&cloud, root, g).up().await.unwrap();
        return;
    }
    let spawn = |root: &Path, g: u32| {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "sigkill_during_updates_replacements_and_deletes_converges_and_shows_no_secret",
                "--nocapture",
            ])
            .env(SECRETS_CHILD, root)
            .env(GENERATION, g.to_string())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    assert!(spawn(root, 0).wait().unwrap().success());
    let started = Instant::now();
    assert!(spawn(root, 1).wait().unwrap().success());
    let whole = started.elapsed();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(SEED + 1);
    let mut g = 1;
    for _ in 0..30 {
        g += 1;
        let mut child = spawn(root, g);
        let delay = Duration::from_micros(rng.random_range(0..whole.as_micros() as u64));
        tokio::time::sleep(delay).await;
        let _ = child.kill();
        child.wait().unwrap();
    }
    g += 1;
    let cloud = open(root).await;
    let stack = secrets_program(&cloud, root, g);
    let mut events = stack.events();
    let report = stack.up().await.unwrap();
    let state = stack.state().await.unwrap();
    assert!(state.pending.is_empty(), "{:?}", state.pending);
    // token, rotated, repo, image, svc, and the bucket in even generations.
    assert_eq!(
        state.resources.len(),
        5 + usize::from(g.is_multiple_of(2)),
        "{state:?}"
    );
    assert!(stack.preview().await.unwrap().is_empty());
    assert_eq!(
        report.outputs["token"].as_str(),
        Some(format!("{CANARY}-token-{g}").as_str())
    );

    // No orphan, no duplicate: one bucket at most, one service.
    let buckets = cloud.blob().unwrap().list_buckets().await.unwrap();
    let extra = buckets.iter().filter(|b| b.name == "secrets-extra").count();
    assert_eq!(extra, usize::from(g.is_multiple_of(2)), "{buckets:?}");
    let services = cloud.containers().unwrap().list_services().await.unwrap();
    assert_eq!(services.len(), 1, "{services:?}");

    // The canary in plaintext: nowhere in the state folder, Debug output or events.
    let hits = found_in_files(&root.join("stacks"), CANARY.as_bytes());
    assert!(hits.is_empty(), "the secret is in plaintext in {hits:?}");
    for shown in [format!("{state:?}"), format!("{report:?}")] {
        assert!(!shown.contains(CANARY), "Debug shows the secret: {shown}");
    }
    while let Ok(e) = events.try_recv() {
        assert!(
            !format!("{e:?}").contains(CANARY),
            "an event shows it: {e:?}"
        );
    }
}
