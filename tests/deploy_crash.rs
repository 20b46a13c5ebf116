//! A program killed with SIGKILL in the middle of a deployment, at 30 seeded points during
//! rolling and blue-green deployments, and then run again: the service converges to one
//! revision, with no replica, no target and no revision set left over, the listeners as
//! declared, and no process of a dead run still alive.
//!
//! The test runs itself as a child process applying a stack (two target groups, a load
//! balancer, a container service of two real replicas), kills it after a delay drawn from a
//! seeded generator between nothing and a whole deployment, and repeats on the same state
//! with the next version; then it runs `up` to completion and checks everything through the
//! services.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use mvi::container::{InstanceState, RevisionState};
use mvi::deploy::{BlueGreen, Deployment, Strategy};
use mvi::lb::{Protocol, TargetGroupSpec, TargetHealth};
use mvi::local::LocalCloud;
use mvi::stack::resources::{
    ContainerService, ContainerServiceArgs, LoadBalancer, LoadBalancerArgs, TargetGroup,
    TargetGroupArgs,
};
use mvi::stack::{FileStore, Stack, StepOp};
use rand::{Rng, SeedableRng};

mod common;

const CHILD_ROOT: &str = "MVI_DEPLOY_CRASH_ROOT";
const CHILD_STRATEGY: &str = "MVI_DEPLOY_CRASH_STRATEGY";
const CHILD_VERSION: &str = "MVI_DEPLOY_CRASH_VERSION";
const KILLS_PER_STRATEGY: usize = 15;
const SEED: u64 = 20261202;

async fn open(root: &Path) -> LocalCloud {
    let local = LocalCloud::builder()
        .root(root.join("cloud"))
        .seed(21)
        .build_local()
        .await
        .unwrap();
    local.containers().set_grace_period(Duration::from_secs(1));
    local
}

fn deployment(strategy: &str) -> Deployment {
    let d = match strategy {
        "blue-green" => {
            let mut b = BlueGreen::new("app-next");
            b.scale_down_delay = Duration::from_millis(200);
            Deployment::new(Strategy::BlueGreen(b))
        }
        _ => Deployment::default(),
    };
    d.progress_deadline(Duration::from_secs(30))
}

/// The program: the service's two target groups, the load balancer forwarding to the first
/// (the second declared with weight 0, as a blue-green production listener is), and the
/// service at `version`.
fn declare(local: &LocalCloud, root: &Path, strategy: &str, version: &str) -> Stack {
    let s = Stack::new(
        "crash",
        local.cloud().clone(),
        FileStore::new(root.join("stacks")),
    )
    .unwrap();
    let group = |name: &str| {
        let mut tg = TargetGroupSpec::new(name, Protocol::Http);
        tg.health_check = common::fast_check();
        tg.health_check.unhealthy_threshold = 2;
        tg.deregistration_delay = Duration::from_secs(1);
        TargetGroup::new(&s, &format!("tg-{name}"), TargetGroupArgs::new(tg)).unwrap()
    };
    let app = group("app");
    let next = group("app-next");
    LoadBalancer::new(
        &s,
        "front",
        LoadBalancerArgs::new("front").listener(
            Protocol::Http,
            0,
            [(app.name.clone(), 1), (next.name.clone(), 0)],
        ),
    )
    .unwrap();
    ContainerService::new(
        &s,
        "svc",
        ContainerServiceArgs::new("app", "app:v1", 2)
            .resources(128, 64)
            .env("APP_VERSION", version)
            .target_group(app.name.clone())
            .deployment(deployment(strategy)),
    )
    .unwrap();
    s
}

fn spawn_child(root: &Path, strategy: &str, version: &str) -> std::process::Child {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sigkill_during_deployments_converges",
            "--nocapture",
        ])
        .env(CHILD_ROOT, root)
        .env(CHILD_STRATEGY, strategy)
        .env(CHILD_VERSION, version)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// Runs a child to the end; how long it took.
fn run_child(root: &Path, strategy: &str, version: &str) -> Duration {
    let started = Instant::now();
    let status = spawn_child(root, strategy, version).wait().unwrap();
    assert!(
        status.success(),
        "an uninterrupted {strategy} run of {version} failed"
    );
    started.elapsed()
}

/// Processes running from this state root's unpacked images (every replica's working
/// directory is inside it).
fn processes_under(root: &Path) -> usize {
    let root = root.canonicalize().unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| {
            std::fs::read_link(e.path().join("cwd")).is_ok_and(|cwd| cwd.starts_with(&root))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_deployments_converges() {
    if let Some(root) = std::env::var_os(CHILD_ROOT) {
        let root = Path::new(&root);
        let strategy = std::env::var(CHILD_STRATEGY).unwrap();
        let version = std::env::var(CHILD_VERSION).unwrap();
        let local = open(root).await;
        declare(&local, root, &strategy, &version)
            .up()
            .await
            .unwrap();
        return;
    }

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    {
        let local = open(root).await;
        common::build_test_app(local.cloud()).await;
    }
    run_child(root, "rolling", "v0");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(SEED);
    let mut n = 0;
    let mut kills = Vec::new();
    for strategy in ["rolling", "blue-green"] {
        // How long a whole deployment (and the program around it) takes here, to spread
        // the kills over it.
        n += 1;
        let whole = run_child(root, strategy, &format!("v{n}"));
        for _ in 0..KILLS_PER_STRATEGY {
            n += 1;
            let mut child = spawn_child(root, strategy, &format!("v{n}"));
            let delay = Duration::from_micros(rng.random_range(0..whole.as_micros() as u64));
            tokio::time::sleep(delay).await;
            let _ = child.kill(); // SIGKILL: it may have finished already, which is fine too.
            child.wait().unwrap();
            kills.push(format!("{strategy} v{n} at {delay:.0?}"));
            // A killed run leaves its stack lock behind, as a crashed program would: the
            // next run takes it over (its process is gone).
        }
    }
    eprintln!("killed: {}", kills.join(", "));

    // The next run converges.
    let local = open(root).await;
    let last = format!("v{}", n + 1);
    let stack = declare(&local, root, "blue-green", &last);
    stack.up().await.unwrap();
    let state = stack.state().await.unwrap();
    assert!(state.pending.is_empty(), "pending: {:?}", state.pending);
    let plan = stack.preview().await.unwrap();
    assert!(
        plan.steps.iter().all(|s| s.op == StepOp::Same),
        "not converged:\n{plan}"
    );

    let cloud = local.cloud();
    let containers = cloud.containers().unwrap();
    let services = containers.list_services().await.unwrap();
    assert_eq!(services.len(), 1);
    let info = containers.describe_service("app").await.unwrap();
    assert_eq!(info.spec.container.env["APP_VERSION"], last);
    assert!(info.rollout.is_none(), "{:?}", info.rollout);
    assert_eq!(
        info.sets.len(),
        1,
        "revision sets left over: {:?}",
        info.sets
    );
    assert_eq!(info.instances.len(), 2, "{:?}", info.instances);
    assert!(
        info.instances
            .iter()
            .all(|i| i.revision == info.revision && i.state == InstanceState::Running),
        "{:?}",
        info.instances
    );
    let revisions = containers.list_revisions("app").await.unwrap();
    assert!(
        revisions
            .iter()
            .all(|r| (r.number == info.revision) == (r.state == RevisionState::Active)),
        "{revisions:?}"
    );

    // The load balancer: the service's group holds exactly its replicas, healthy; the
    // second group nothing; the listener as declared.
    let lbs = cloud.load_balancers().unwrap();
    let replicas: BTreeSet<String> = info
        .instances
        .iter()
        .filter_map(|i| i.address.clone())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let targets = lbs.target_health("app").await.unwrap();
        let listed: BTreeSet<String> = targets.iter().map(|t| t.target.clone()).collect();
        let healthy = targets.iter().all(|t| t.health == TargetHealth::Healthy);
        if listed == replicas && healthy {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "targets {targets:?}, replicas {replicas:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(lbs.target_health("app-next").await.unwrap().is_empty());
    let front = lbs.describe_load_balancer("front").await.unwrap();
    assert_eq!(
        front.spec.listeners[0].forward,
        [("app".to_string(), 1), ("app-next".to_string(), 0)]
    );
    // No process of a dead run is left: only the two replicas run from this state root.
    assert_eq!(local.containers().pids().len(), 2);
    assert_eq!(processes_under(root), 2, "orphaned processes");
    let (status, body) = common::http_get(&front.urls[0], "/").await.unwrap();
    assert_eq!(status, 200);
    assert!(body.contains(&format!("version={last}")), "{body}");
}
