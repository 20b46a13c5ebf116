//! Deployments under load on the local backend: real replicas (Python processes) behind the
//! real load balancer, 8 keep-alive clients sending requests through it while the service
//! moves to a new revision. Every request must succeed, and after the deployment every
//! answer must come from the revision it ended on.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::time::Duration;

use mvi::container::{ContainerSpec, RevisionState, RolloutState, ServiceSpec};
use mvi::deploy::{
    Analysis, BlueGreen, Count, Deployer, Deployment, Rolling, Step, Strategy, TrafficShift,
};
use mvi::lb::{ListenerSpec, LoadBalancerSpec, Protocol, TargetGroupSpec};
use mvi::local::LocalCloud;
use mvi::stack::resources::{ContainerService, ContainerServiceArgs};
use mvi::stack::{FileStore, Stack, StepOp};
use mvi::{Cloud, ErrorKind};

mod common;
use common::fast_check;
use common::load::{Load, Report};

/// Requests the load must have sent, at least, for a run to count.
const MIN_REQUESTS: usize = 2_000;
const CLIENTS: usize = 8;
const PAUSE: Duration = Duration::from_millis(2);

/// A local cloud with the test app's image, a target group `app` behind the load balancer
/// `front`, and nothing running yet.
struct Rig {
    _dir: tempfile::TempDir,
    local: LocalCloud,
    url: String,
}

impl Rig {
    async fn new(seed: u64) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalCloud::builder()
            .root(dir.path().join("cloud"))
            .seed(seed)
            .build_local()
            .await
            .unwrap();
        local.containers().set_grace_period(Duration::from_secs(2));
        let cloud = local.cloud();
        common::build_test_app(cloud).await;
        let lbs = cloud.load_balancers().unwrap();
        // The service's group, and the second group blue-green and canary use.
        for name in ["app", "app-next"] {
            let mut tg = TargetGroupSpec::new(name, Protocol::Http);
            tg.health_check = fast_check();
            tg.health_check.unhealthy_threshold = 2;
            tg.deregistration_delay = Duration::from_secs(5);
            lbs.create_target_group(tg).await.unwrap();
        }
        let listener = |group: &str| ListenerSpec {
            protocol: Protocol::Http,
            port: 0,
            forward: vec![(group.into(), 1)],
        };
        // The production listener, and a test listener on the second group only.
        let lb = lbs
            .create_load_balancer(LoadBalancerSpec::new(
                "front",
                vec![listener("app"), listener("app-next")],
            ))
            .await
            .unwrap();
        Rig {
            _dir: dir,
            url: lb.urls[0].clone(),
            local,
        }
    }

    /// The production listener's forward list.
    async fn forward(&self) -> Vec<(String, u32)> {
        let lb = self
            .cloud()
            .load_balancers()
            .unwrap()
            .describe_load_balancer("front")
            .await
            .unwrap();
        lb.spec.listeners[0].forward.clone()
    }

    fn cloud(&self) -> &Cloud {
        self.local.cloud()
    }

    /// Service `app`: 3 replicas of version `version`, with `env` set too.
    fn spec(&self, version: &str, env: &[(&str, &str)]) -> ServiceSpec {
        let mut c = ContainerSpec::new("app:v1");
        c.cpu_millis = 128;
        c.memory_mib = 64;
        c.env.insert("APP_VERSION".into(), version.into());
        // Requests take a while, so some are in flight whenever a replica is stopped.
        c.env.insert("RESPONSE_DELAY_MS".into(), "10".into());
        for (k, v) in env {
            c.env.insert((*k).into(), (*v).into());
        }
        let mut s = ServiceSpec::new("app", c, 3);
        s.target_group = Some("app".into());
        s.deployment = Deployment::default().progress_deadline(Duration::from_secs(20));
        s
    }

    /// Creates the service at `version` and waits until its 3 targets are healthy.
    async fn start(&self, version: &str) {
        let containers = self.cloud().containers().unwrap();
        containers
            .create_service(self.spec(version, &[]))
            .await
            .unwrap();
        self.wait_healthy(3).await;
    }

    /// The set ids and target groups of the service's revision sets, and its replicas'
    /// revisions.
    async fn sets(&self) -> (Vec<String>, Vec<u64>) {
        let info = self
            .cloud()
            .containers()
            .unwrap()
            .describe_service("app")
            .await
            .unwrap();
        let mut revisions: Vec<u64> = info.instances.iter().map(|i| i.revision).collect();
        revisions.sort();
        (info.sets.iter().map(|s| s.id.clone()).collect(), revisions)
    }

    async fn wait_healthy(&self, n: usize) {
        common::wait_healthy(self.cloud(), "app", n).await;
    }

    fn load(&self) -> Load {
        Load::start(&self.url, "/", CLIENTS, PAUSE)
    }
}

/// Lets `load` run until it has sent `MIN_REQUESTS` (and at least `after` more time).
async fn finish(load: Load, after: Duration) -> Report {
    tokio::time::sleep(after).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while load.sent() < MIN_REQUESTS && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let report = load.stop().await;
    assert!(
        report.samples.len() >= MIN_REQUESTS,
        "the load sent too little to judge: {}",
        report.summary()
    );
    report
}

fn versions<'a>(samples: impl Iterator<Item = &'a common::load::Sample>) -> Vec<String> {
    let mut v: Vec<String> = samples
        .filter_map(|s| s.version().map(str::to_string))
        .collect();
    v.sort();
    v.dedup();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_under_load_drops_no_request() {
    let rig = Rig::new(11).await;
    rig.start("v1").await;
    let containers = rig.cloud().containers().unwrap();
    let load = rig.load();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let began = load.elapsed();
    // One replica at a time: start one of v2, wait until the load balancer finds it
    // healthy, drain and stop one of v1, and so on.
    let mut v2 = rig.spec("v2", &[]);
    v2.deployment = Deployment::new(Strategy::Rolling(Rolling::new(
        Count::Replicas(1),
        Count::Replicas(0),
    )))
    .progress_deadline(Duration::from_secs(20));
    let info = containers.update_service(v2).await.unwrap();
    let ended = load.elapsed();
    let report = finish(load, Duration::from_millis(500)).await;
    assert!(report.failed().is_empty(), "{}", report.summary());
    assert_eq!(info.revision, 2);
    assert!(info.stable, "not stable after the update: {info:?}");
    assert!(info.instances.iter().all(|i| i.revision == 2), "{info:?}");
    let during = report.sent_between(began, ended).count();
    assert!(during > 0, "no request was sent during the rollout");
    assert_eq!(
        versions(report.sent_after(ended)),
        ["v2"],
        "after the update: {}",
        report.summary()
    );
    assert_eq!(versions(report.samples.iter().take(10)), ["v1"]);
    let revisions = containers.list_revisions("app").await.unwrap();
    let states: Vec<_> = revisions.iter().map(|r| (r.number, r.state)).collect();
    assert_eq!(
        states,
        [(1, RevisionState::Superseded), (2, RevisionState::Active)]
    );
    // The load balancer only has the new replicas.
    let targets = rig
        .cloud()
        .load_balancers()
        .unwrap()
        .target_health("app")
        .await
        .unwrap();
    let addresses: Vec<String> = info
        .instances
        .iter()
        .filter_map(|i| i.address.clone())
        .collect();
    assert_eq!(targets.len(), 3, "{targets:?}");
    assert!(targets.iter().all(|t| addresses.contains(&t.target)));
    eprintln!(
        "rolling: {} during the rollout, {}",
        during,
        report.summary()
    );
}

/// Deploys v2 with `env` over a running v1 under load; the update must fail and be rolled
/// back with no request failed and every answer from v1. Returns the error's sentence.
async fn rolled_back_under_load(seed: u64, env: &[(&str, &str)]) -> String {
    let rig = Rig::new(seed).await;
    rig.start("v1").await;
    let containers = rig.cloud().containers().unwrap();
    let load = rig.load();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let e = containers
        .update_service(rig.spec("v2", env))
        .await
        .unwrap_err();
    let report = finish(load, Duration::from_millis(300)).await;
    assert_eq!(e.kind(), ErrorKind::DeploymentFailed, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("\"app\"")
            && msg.contains("revision 2")
            && msg.contains("rolled back to revision 1"),
        "{msg}"
    );
    assert!(report.failed().is_empty(), "{}", report.summary());
    assert_eq!(
        versions(report.samples.iter()),
        ["v1"],
        "{}",
        report.summary()
    );
    let info = containers.describe_service("app").await.unwrap();
    assert_eq!(info.revision, 1);
    assert_eq!(info.spec.container.env["APP_VERSION"], "v1");
    assert_eq!(info.instances.len(), 3, "{info:?}");
    assert!(info.instances.iter().all(|i| i.revision == 1), "{info:?}");
    let revisions = containers.list_revisions("app").await.unwrap();
    assert_eq!(revisions[1].state, RevisionState::RolledBack);
    msg
}

/// A new version whose health path answers 500 never gets traffic: the load balancer finds
/// it unhealthy, the circuit breaker trips, the service is rolled back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhealthy_version_is_rolled_back_under_load() {
    let msg = rolled_back_under_load(12, &[("HEALTH_STATUS", "500")]).await;
    assert!(
        msg.contains("health check"),
        "the cause is not named: {msg}"
    );
}

/// A new version that exits at once: its replicas fail to start 3 times, the circuit
/// breaker's threshold for 3 replicas, and v1 keeps serving throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_that_exits_at_once_is_rolled_back_under_load() {
    let msg = rolled_back_under_load(13, &[("EXIT_AT_ONCE", "1")]).await;
    assert!(
        msg.contains("circuit breaker") && msg.contains("exited with code 1"),
        "{msg}"
    );
}

/// Through a stack: a failed deployment fails `up` naming the service and the rollback; the
/// state keeps the running definition, so the next `up` tries the new version again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_deployment_fails_up_and_the_next_up_tries_again() {
    let rig = Rig::new(14).await;
    let stacks = rig._dir.path().join("stacks");
    let program = |env: &[(&str, &str)], version: &str| {
        let s = Stack::new("web", rig.cloud().clone(), FileStore::new(&stacks)).unwrap();
        let mut args = ContainerServiceArgs::new("app", "app:v1", 2)
            .resources(128, 64)
            .env("APP_VERSION", version)
            .target_group("app")
            .deployment(Deployment::default().progress_deadline(Duration::from_secs(20)));
        for (k, v) in env {
            args = args.env(*k, *v);
        }
        ContainerService::new(&s, "app", args).unwrap();
        s
    };
    program(&[], "v1").up().await.unwrap();
    let bad = [("EXIT_AT_ONCE", "1")];
    let stack = program(&bad, "v2");
    let mut events = stack.events();
    let e = stack.up().await.unwrap_err();
    let mut progress = Vec::new();
    while let Ok(ev) = events.try_recv() {
        if let mvi::stack::Event::Progress { message, .. } = ev {
            progress.push(message);
        }
    }
    let progress = progress.join("\n");
    assert!(
        progress.contains("deploying revision 2") && progress.contains("rolled back to revision 1"),
        "the deployment's steps are not on the stack's event stream:\n{progress}"
    );
    assert_eq!(e.kind(), ErrorKind::DeploymentFailed, "{e}");
    assert!(e.to_string().contains("rolled back to revision 1"), "{e}");
    let plan = program(&bad, "v2").preview().await.unwrap();
    assert_eq!(
        plan.step("app").map(|s| s.op),
        Some(StepOp::Update),
        "the failed version is not tried again:\n{plan}"
    );
    let e = program(&bad, "v2").up().await.unwrap_err();
    assert!(e.to_string().contains("revision 3"), "{e}");
    // A good version then goes through.
    program(&[], "v3").up().await.unwrap();
    let info = rig
        .cloud()
        .containers()
        .unwrap()
        .describe_service("app")
        .await
        .unwrap();
    assert_eq!(info.spec.container.env["APP_VERSION"], "v3");
    assert_eq!(info.revision, 4);
}

fn blue_green(scale_down: Duration) -> Deployment {
    let mut b = BlueGreen::new("app-next");
    b.preview_path = Some("/healthz".into());
    b.scale_down_delay = scale_down;
    Deployment::new(Strategy::BlueGreen(b)).progress_deadline(Duration::from_secs(20))
}

fn fast_analysis() -> Analysis {
    let mut a = Analysis::default();
    a.interval = Duration::from_secs(2);
    a.min_requests = 10;
    a
}

/// After a traffic deployment the load balancer is as declared and the service as it was,
/// but on one revision: one set, the production listener forwarding to `app` alone.
async fn assert_settled(rig: &Rig, revision: u64) {
    assert_eq!(rig.forward().await, [("app".to_string(), 1)]);
    let (sets, revisions) = rig.sets().await;
    assert_eq!(sets, ["primary"], "sets left over");
    assert_eq!(revisions, [revision; 3], "replicas of other revisions");
    let lbs = rig.cloud().load_balancers().unwrap();
    assert!(lbs.target_health("app-next").await.unwrap().is_empty());
    assert_eq!(lbs.target_health("app").await.unwrap().len(), 3);
}

/// Blue-green v1→v2 under load, checked through the test listener, promoted at once; then
/// v3, rolled back to v2 during its scale-down window: no request fails, and every answer
/// after each step comes from the revision it ended on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_then_a_rollback_under_load_drops_no_request() {
    let rig = Rig::new(15).await;
    let mut spec = rig.spec("v1", &[]);
    spec.deployment = blue_green(Duration::from_millis(500));
    rig.cloud()
        .containers()
        .unwrap()
        .create_service(spec)
        .await
        .unwrap();
    rig.wait_healthy(3).await;
    let load = rig.load();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut v2 = rig.spec("v2", &[]);
    v2.deployment = blue_green(Duration::from_millis(500));
    let info = mvi::deploy::deploy(rig.cloud(), v2).await.unwrap();
    let promoted = load.elapsed();
    assert_eq!(info.revision, 2);
    assert_settled(&rig, 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // v3 with a long scale-down window, rolled back during it.
    let mut v3 = rig.spec("v3", &[]);
    v3.deployment = blue_green(Duration::from_secs(60));
    let cloud = rig.cloud().clone();
    let v3_started = load.elapsed();
    let deploying = tokio::spawn(async move { mvi::deploy::deploy(&cloud, v3).await });
    let containers = rig.cloud().containers().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while containers
        .describe_service("app")
        .await
        .unwrap()
        .rollout
        .is_none_or(|r| r.state != RolloutState::Promoted)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "v3 was never promoted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let on_v3 = load.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let back = Deployer::new(rig.cloud()).rollback("app").await.unwrap();
    let rolled_back = load.elapsed();
    let e = deploying.await.unwrap().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DeploymentFailed, "{e}");
    assert!(e.to_string().contains("rollback was asked for"), "{e}");
    assert_eq!(back.revision, 2);
    let report = finish(load, Duration::from_millis(500)).await;
    assert!(report.failed().is_empty(), "{}", report.summary());
    assert_eq!(versions(report.sent_between(promoted, v3_started)), ["v2"]);
    let during = versions(report.sent_between(on_v3 + Duration::from_millis(50), rolled_back));
    assert!(
        during.contains(&"v3".to_string()),
        "v3 got no traffic: {during:?}"
    );
    assert_eq!(
        versions(report.sent_after(rolled_back)),
        ["v2"],
        "{}",
        report.summary()
    );
    assert_settled(&rig, 2).await;
    let revisions = containers.list_revisions("app").await.unwrap();
    assert_eq!(revisions.last().unwrap().state, RevisionState::RolledBack);
}

/// A canary through every step to 100 %, under load: no request fails, and every answer
/// after it comes from the new revision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_through_every_step_drops_no_request() {
    let rig = Rig::new(16).await;
    rig.start("v1").await;
    let load = rig.load();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut v2 = rig.spec("v2", &[]);
    let mut shift = TrafficShift::canary("app-next", 20, Duration::from_secs(2));
    shift.steps.insert(
        1,
        Step {
            weight: 50,
            bake: Duration::from_secs(2),
        },
    );
    shift.analysis = fast_analysis();
    v2.deployment =
        Deployment::new(Strategy::Canary(shift)).progress_deadline(Duration::from_secs(20));
    let steps = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = steps.clone();
    let info = Deployer::new(rig.cloud())
        .progress(std::sync::Arc::new(move |_, m| {
            seen.lock().unwrap().push(m.to_string())
        }))
        .deploy(v2)
        .await
        .unwrap();
    let ended = load.elapsed();
    let report = finish(load, Duration::from_millis(500)).await;
    assert!(report.failed().is_empty(), "{}", report.summary());
    assert_eq!(info.revision, 2);
    assert_eq!(
        versions(report.sent_after(ended)),
        ["v2"],
        "{}",
        report.summary()
    );
    assert_settled(&rig, 2).await;
    let steps = steps.lock().unwrap().join("\n");
    for want in [
        "20 % of the traffic",
        "50 % of the traffic",
        "100 % of the traffic",
        "analysis of revision 2 passed",
    ] {
        assert!(steps.contains(want), "no progress event {want:?}:\n{steps}");
    }
}

/// A canary that answers 500 to a fifth of its requests is aborted at its first step by the
/// success-rate analysis: its share of the answers stays within the step's weight, and the
/// error gives the measured rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_canary_is_aborted_at_its_first_step() {
    let rig = Rig::new(17).await;
    rig.start("v1").await;
    let load = rig.load();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let began = load.elapsed();
    let mut v2 = rig.spec("v2", &[("FAIL_ONE_IN", "5")]);
    let mut shift = TrafficShift::canary("app-next", 10, Duration::from_secs(30));
    shift.analysis = fast_analysis();
    v2.deployment =
        Deployment::new(Strategy::Canary(shift)).progress_deadline(Duration::from_secs(20));
    let e = mvi::deploy::deploy(rig.cloud(), v2).await.unwrap_err();
    let ended = load.elapsed();
    let report = finish(load, Duration::from_millis(500)).await;
    assert_eq!(e.kind(), ErrorKind::DeploymentFailed, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("success rate of target group app-next was"),
        "{msg}"
    );
    assert!(msg.contains("rolled back to revision 1"), "{msg}");
    let during: Vec<_> = report.sent_between(began, ended).collect();
    let on_v2 = during.iter().filter(|s| s.version() == Some("v2")).count();
    let share = on_v2 as f64 / during.len() as f64;
    // The step's weight is 10 %; a tolerance of 5 points for requests in flight when the
    // weight moved.
    assert!(
        share <= 0.15,
        "{on_v2} of {} answers from the canary",
        during.len()
    );
    assert!(on_v2 > 0, "the canary got no traffic");
    assert_eq!(
        versions(report.sent_after(ended)),
        ["v1"],
        "{}",
        report.summary()
    );
    // The only failures are the canary's own 500s.
    assert!(
        report
            .failed()
            .iter()
            .all(|s| s.status == 500 && s.version() == Some("v2"))
    );
    assert_settled(&rig, 1).await;
}

/// A custom metric condition fails the analysis even when the load balancer's figures are
/// good: the canary is aborted naming the condition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_metric_condition_aborts_a_canary() {
    use mvi::deploy::MetricCondition;
    use mvi::metric::{Comparison, Datum, MetricId, Statistic};
    let rig = Rig::new(18).await;
    rig.start("v1").await;
    let load = rig.load();
    // The app's own error counter, reporting errors all along.
    let metrics = rig.cloud().metrics().unwrap().clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reporting = {
        let stop = stop.clone();
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                let d = Datum::new("Errors", 3.0, chrono::Utc::now());
                metrics.put_data("App", vec![d]).await.unwrap();
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let mut shift = TrafficShift::canary("app-next", 20, Duration::from_secs(30));
    shift.analysis = fast_analysis();
    shift.analysis.conditions.push(MetricCondition {
        name: "app errors".into(),
        metric: MetricId::new("App", "Errors"),
        statistic: Statistic::Sum,
        fails_when: Comparison::GreaterThan,
        threshold: 0.0,
    });
    let mut v2 = rig.spec("v2", &[]);
    v2.deployment =
        Deployment::new(Strategy::Canary(shift)).progress_deadline(Duration::from_secs(20));
    let e = mvi::deploy::deploy(rig.cloud(), v2).await.unwrap_err();
    stop.store(true, std::sync::atomic::Ordering::Release);
    reporting.await.unwrap();
    let report = finish(load, Duration::from_millis(200)).await;
    assert_eq!(e.kind(), ErrorKind::DeploymentFailed, "{e}");
    assert!(e.to_string().contains("app errors"), "{e}");
    assert!(report.failed().is_empty(), "{}", report.summary());
    assert_settled(&rig, 1).await;
}
