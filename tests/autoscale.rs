//! Autoscaling end to end on the local backend: real replicas behind the real load balancer,
//! the controller driven on a manual clock. Bounded load raises requests per replica above
//! the target and the replicas grow to the expected count; once the load stops and the clock
//! passes the down window they shrink; a metric oscillating around its target does not make
//! the count flap.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::sync::Arc;
use std::time::Duration;

use mvi::autoscale::{AutoScaler, Behavior, Limit, MetricTarget, ScalerSpec, ScheduledAction};
use mvi::container::{ContainerSpec, HealthCheck, ServiceSpec};
use mvi::local::LocalCloud;
use mvi::metric::{Datum, GetStatistics, MetricId, Statistic};
use mvi::{Cloud, ManualClock, Timestamp};

mod common;

struct Rig {
    _dir: tempfile::TempDir,
    local: LocalCloud,
    clock: Arc<ManualClock>,
    url: String,
}

fn start_time() -> Timestamp {
    // A whole minute, so cron schedules fire where the test says.
    chrono::DateTime::parse_from_rfc3339("2026-12-03T07:59:00Z")
        .unwrap()
        .to_utc()
}

impl Rig {
    /// The test app's image, target group `app` behind load balancer `front`, and service
    /// `app` with `replicas` healthy replicas.
    async fn new(seed: u64, replicas: u32) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(start_time()));
        let local = LocalCloud::builder()
            .root(dir.path().join("cloud"))
            .seed(seed)
            .clock(clock.clone())
            .build_local()
            .await
            .unwrap();
        local.containers().set_grace_period(Duration::from_secs(1));
        let cloud = local.cloud();
        common::build_test_app(cloud).await;
        let url = common::front(cloud, "front", "app", Duration::from_secs(1)).await;
        let mut c = ContainerSpec::new("app:v1");
        c.cpu_millis = 128;
        c.memory_mib = 64;
        c.env.insert("APP_VERSION".into(), "v1".into());
        let mut s = ServiceSpec::new("app", c, replicas);
        s.target_group = Some("app".into());
        cloud.containers().unwrap().create_service(s).await.unwrap();
        let rig = Rig {
            _dir: dir,
            url,
            local,
            clock,
        };
        rig.wait_healthy(replicas as usize).await;
        rig
    }

    fn cloud(&self) -> &Cloud {
        self.local.cloud()
    }

    async fn wait_healthy(&self, n: usize) {
        common::wait_healthy(self.cloud(), "app", n).await;
    }

    async fn replicas(&self) -> u32 {
        let info = self
            .cloud()
            .containers()
            .unwrap()
            .describe_service("app")
            .await
            .unwrap();
        info.spec.replicas
    }

    /// Requests through the load balancer counted in its metrics at the clock's time.
    async fn counted(&self) -> f64 {
        let lbs = self.cloud().load_balancers().unwrap();
        let id = lbs
            .metric("front", Some("app"), "RequestCount")
            .await
            .unwrap();
        let now = self.clock.now();
        let points = self
            .cloud()
            .metrics()
            .unwrap()
            .get_statistics(GetStatistics::new(
                id,
                now,
                now + chrono::Duration::seconds(1),
                Duration::from_secs(1),
                [Statistic::Sum],
            ))
            .await
            .unwrap();
        points.iter().filter_map(|p| p.get(Statistic::Sum)).sum()
    }

    /// `n` requests through the load balancer, 4 at a time, every one answered 200; then
    /// waits (bounded) until the load balancer's metrics count them.
    async fn send(&self, n: usize) {
        let before = self.counted().await;
        let per_client = n / 4;
        let clients: Vec<_> = (0..4)
            .map(|_| {
                let url = self.url.clone();
                tokio::spawn(async move {
                    for _ in 0..per_client {
                        let (status, _) = common::http_get(&url, "/").await.unwrap();
                        assert_eq!(status, 200);
                    }
                })
            })
            .collect();
        for c in clients {
            c.await.unwrap();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.counted().await < before + (per_client * 4) as f64 {
            assert!(
                std::time::Instant::now() < deadline,
                "the requests were not counted"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

use mvi::Clock as _;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_per_replica_scale_up_then_down_after_the_window() {
    let rig = Rig::new(31, 1).await;
    let spec = ScalerSpec::new("app", 1, 6).track(MetricTarget::RequestsPerReplica {
        target_group: "app".into(),
        target: 10.0,
    });
    let mut scaler = AutoScaler::new(rig.cloud(), spec, rig.clock.clone())
        .await
        .unwrap();
    let mut decisions = scaler.subscribe();

    // No traffic: 0 requests a second propose 0, the minimum holds.
    let d = scaler.evaluate().await.unwrap();
    assert_eq!((d.current, d.desired, d.scaled), (1, 1, false), "{d}");

    // 600 requests in a second; read once that second is over, in the 15 s window: 40 a
    // second, 10 per replica wanted: 4 replicas.
    rig.send(600).await;
    rig.clock.advance(Duration::from_secs(1));
    let d = scaler.evaluate().await.unwrap();
    assert_eq!(d.proposals, [Some(4)], "{d}");
    assert_eq!((d.current, d.desired, d.scaled), (1, 4, true), "{d}");
    assert_eq!(rig.replicas().await, 4);
    rig.wait_healthy(4).await;

    // The load stops. Within the 300 s down window the count holds.
    rig.clock.advance(Duration::from_secs(15));
    let d = scaler.evaluate().await.unwrap();
    assert_eq!(d.proposals, [Some(0)], "{d}");
    assert_eq!(
        (d.desired, d.limit, d.scaled),
        (4, Limit::ScaleDownStabilized, false),
        "{d}"
    );
    rig.clock.advance(Duration::from_secs(200));
    assert_eq!(scaler.evaluate().await.unwrap().desired, 4);
    // Past it: down to the minimum (100 % a period may go).
    rig.clock.advance(Duration::from_secs(101));
    let d = scaler.evaluate().await.unwrap();
    assert_eq!((d.current, d.desired, d.scaled), (4, 1, true), "{d}");
    rig.wait_healthy(1).await;

    // Every decision was sent, logged and graphed.
    let mut sent = 0;
    while decisions.try_recv().is_ok() {
        sent += 1;
    }
    assert_eq!(sent, 5);
    let logs = rig.cloud().logs().unwrap();
    let lines = logs
        .get_events(mvi::log::GetEvents::new(
            mvi::autoscale::log_group("app"),
            "decisions",
        ))
        .await
        .unwrap();
    assert_eq!(lines.items.len(), 5);
    assert!(
        lines.items[1].message.contains("1 → 4 replicas"),
        "{:?}",
        lines.items[1]
    );
    let desired = rig
        .cloud()
        .metrics()
        .unwrap()
        .get_statistics(GetStatistics::new(
            MetricId::new("mvi/AutoScaling", "DesiredReplicas").dimension("Service", "app"),
            start_time(),
            rig.clock.now() + chrono::Duration::seconds(1),
            Duration::from_secs(1),
            [Statistic::Maximum],
        ))
        .await
        .unwrap();
    let graphed: Vec<f64> = desired
        .iter()
        .filter_map(|p| p.get(Statistic::Maximum))
        .collect();
    assert_eq!(graphed, [1.0, 4.0, 4.0, 4.0, 1.0]);
}

/// A service whose load (a custom metric, per replica) swings ±15 % around what 4 replicas
/// carry at the target: with HPA's default behavior the count moves at most twice over 20
/// evaluations (5 minutes of clock); without a down window it moves at every swing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oscillating_metric_does_not_flap() {
    let rig = Rig::new(32, 4).await;
    let metric = MetricId::new("App/Work", "JobsPerSecond");
    let spec = ScalerSpec::new("app", 1, 8).track(MetricTarget::Custom {
        metric: metric.clone(),
        statistic: Statistic::Average,
        target: 25.0,
        per_replica: true,
    });
    let events = |behavior: Behavior, seed: u64| {
        let spec = spec.clone().behavior(behavior);
        let rig = &rig;
        let metric = metric.clone();
        async move {
            let mut scaler = AutoScaler::new(rig.cloud(), spec, rig.clock.clone())
                .await
                .unwrap();
            let mut moves = 0;
            for i in 0..20u64 {
                // 100 jobs a second, ± 15 %: 4 replicas at 25 each, give or take.
                let load = if (i + seed).is_multiple_of(2) {
                    115.0
                } else {
                    85.0
                };
                rig.cloud()
                    .metrics()
                    .unwrap()
                    .put_data(
                        &metric.namespace,
                        vec![Datum::new(&metric.name, load, rig.clock.now())],
                    )
                    .await
                    .unwrap();
                // Read once its second is over.
                rig.clock.advance(Duration::from_secs(1));
                let d = scaler.evaluate().await.unwrap();
                moves += usize::from(d.scaled);
                rig.clock.advance(Duration::from_secs(14));
            }
            moves
        }
    };
    let stable = events(Behavior::default(), 0).await;
    assert!(
        stable <= 2,
        "{stable} scale events with the default behavior"
    );
    // The same swings with no down window: every swing moves the count (the bound above
    // is what the window buys).
    let mut eager = Behavior::default();
    eager.scale_down.stabilization = Duration::ZERO;
    let flapping = events(eager, 1).await;
    assert!(
        flapping >= 10,
        "{flapping} scale events without a down window"
    );
}

/// A scheduled action raises the minimum before a known peak, and the count follows at the
/// next evaluation, with no metric saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_raises_the_minimum_before_a_peak() {
    let rig = Rig::new(33, 1).await;
    let spec = ScalerSpec::new("app", 1, 4)
        .track(MetricTarget::RequestsPerReplica {
            target_group: "app".into(),
            target: 50.0,
        })
        .schedule(ScheduledAction {
            name: "morning".into(),
            cron: "0 8 * * *".into(),
            min: Some(3),
            max: None,
        });
    let mut scaler = AutoScaler::new(rig.cloud(), spec, rig.clock.clone())
        .await
        .unwrap();
    assert_eq!(scaler.evaluate().await.unwrap().desired, 1);
    // 07:59 → 08:00:30: the action fired.
    rig.clock.advance(Duration::from_secs(90));
    let d = scaler.evaluate().await.unwrap();
    assert_eq!(
        (d.min, d.desired, d.limit),
        (3, 3, Limit::TooFewReplicas),
        "{d}"
    );
    assert_eq!(scaler.bounds(), (3, 4));
    rig.wait_healthy(3).await;
}

/// Bad definitions are refused before anything runs, naming what is wrong.
#[tokio::test]
async fn bad_scalers_are_refused() {
    let cloud = LocalCloud::builder().in_memory().build().await.unwrap();
    let clock: Arc<dyn mvi::Clock> = Arc::new(ManualClock::new(start_time()));
    let cpu = MetricTarget::Cpu { target: 60.0 };
    let cases = [
        (
            ScalerSpec::new("app", 5, 2).track(cpu.clone()),
            "min 5 is above max 2",
        ),
        (ScalerSpec::new("app", 1, 2), "at least one metric"),
        (
            ScalerSpec::new("app", 1, 2).track(MetricTarget::Cpu { target: 0.0 }),
            "above 0",
        ),
        (
            ScalerSpec::new("app", 1, 2)
                .track(cpu.clone())
                .schedule(ScheduledAction {
                    name: "x".into(),
                    cron: "every morning".into(),
                    min: Some(1),
                    max: None,
                }),
            "cron",
        ),
        (ScalerSpec::new("nope", 1, 2).track(cpu.clone()), "nope"),
    ];
    for (spec, says) in cases {
        let e = AutoScaler::new(&cloud, spec, clock.clone())
            .await
            .unwrap_err();
        assert!(e.to_string().contains(says), "{e}");
    }
}

/// A scaler put on the local backend's container service runs there, on the simulator's
/// clock: it evaluates when the clock has moved a period on, scales, and reports its
/// decisions; deleting the service deletes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scaler_put_on_the_local_backend_runs_on_its_clock() {
    let rig = Rig::new(34, 1).await;
    let containers = rig.cloud().containers().unwrap();
    let spec = ScalerSpec::new("app", 1, 6).track(MetricTarget::RequestsPerReplica {
        target_group: "app".into(),
        target: 10.0,
    });
    let info = containers.put_scaler(spec.clone()).await.unwrap();
    assert_eq!((info.min, info.max, info.spec), (1, 6, spec.clone()));
    // Its first evaluation, at once (no traffic: 1 stays).
    let decisions = || async { containers.describe_scaler("app").await.unwrap().decisions };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while decisions().await.is_empty() {
        assert!(std::time::Instant::now() < deadline, "no first evaluation");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Traffic 10 s into the period; the next evaluation, 15 s after the first, scales.
    rig.clock.advance(Duration::from_secs(10));
    rig.send(600).await;
    assert_eq!(
        decisions().await.len(),
        1,
        "evaluated before its period was up"
    );
    rig.clock.advance(Duration::from_secs(5));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while rig.replicas().await != 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            decisions().await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let last = decisions().await.pop().unwrap();
    assert_eq!(
        (last.current, last.desired, last.scaled),
        (1, 4, true),
        "{last}"
    );

    // Bad input is refused before anything changes.
    let e = containers
        .put_scaler(ScalerSpec::new("nope", 1, 2).track(MetricTarget::Cpu { target: 50.0 }))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), mvi::ErrorKind::NotFound, "{e}");
    let e = containers
        .put_scaler(ScalerSpec::new("app", 3, 2).track(MetricTarget::Cpu { target: 50.0 }))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), mvi::ErrorKind::InvalidArgument, "{e}");
    assert_eq!(containers.describe_scaler("app").await.unwrap().spec, spec);

    containers.delete_service("app").await.unwrap();
    let e = containers.describe_scaler("app").await.unwrap_err();
    assert_eq!(e.kind(), mvi::ErrorKind::NotFound, "{e}");
}

/// A scaler declared in a stack: `up` puts it, a changed declaration puts the new one, a
/// preview after is in sync, `destroy` removes it and leaves the service as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scaler_in_a_stack() {
    use mvi::stack::resources::{AutoScaler as ScalerResource, AutoScalerArgs};
    use mvi::stack::{FileStore, Stack, StepOp};
    let rig = Rig::new(35, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let declare = |max: u32| {
        let s = Stack::new("scale", rig.cloud().clone(), FileStore::new(dir.path())).unwrap();
        let metrics = vec![MetricTarget::Cpu { target: 60.0 }];
        ScalerResource::new(
            &s,
            "app",
            AutoScalerArgs::new("app", 1, max, metrics).period(Duration::from_secs(30)),
        )
        .unwrap();
        s
    };
    let report = declare(4).up().await.unwrap();
    assert_eq!(report.plan.count(StepOp::Create), 1);
    let containers = rig.cloud().containers().unwrap();
    let info = containers.describe_scaler("app").await.unwrap();
    assert_eq!(
        (info.spec.max, info.spec.period),
        (4, Duration::from_secs(30))
    );
    assert!(declare(4).preview().await.unwrap().is_empty());
    let report = declare(8).up().await.unwrap();
    assert_eq!(report.plan.count(StepOp::Update), 1);
    assert_eq!(containers.describe_scaler("app").await.unwrap().max, 8);
    // Refused before anything changes: min above max.
    let s = Stack::new("scale", rig.cloud().clone(), FileStore::new(dir.path())).unwrap();
    ScalerResource::new(
        &s,
        "app",
        AutoScalerArgs::new("app", 9, 8, vec![MetricTarget::Cpu { target: 60.0 }]),
    )
    .unwrap();
    let e = s.up().await.unwrap_err();
    assert!(e.to_string().contains("min 9 is above max 8"), "{e}");
    assert_eq!(containers.describe_scaler("app").await.unwrap().max, 8);
    declare(8).destroy().await.unwrap();
    assert_eq!(
        containers.describe_scaler("app").await.unwrap_err().kind(),
        mvi::ErrorKind::NotFound
    );
    assert_eq!(rig.replicas().await, 1);
}

/// A deployment in progress is not fought, as Application Auto Scaling does not fight ECS's:
/// a scale-out during a rolling deployment goes ahead and applies to the revision being
/// rolled out (every replica runs it when the deployment ends); a scale-in waits for the
/// deployment to finish, and the next evaluation after it makes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_in_progress_is_not_fought() {
    let rig = Rig::new(36, 2).await;
    let metric = MetricId::new("App/Work", "Queue");
    let mut behavior = Behavior::default();
    behavior.scale_down.stabilization = Duration::ZERO;
    let spec = ScalerSpec::new("app", 1, 8)
        .track(MetricTarget::Custom {
            metric: metric.clone(),
            statistic: Statistic::Maximum,
            target: 100.0,
            per_replica: false,
        })
        .behavior(behavior);
    let mut scaler = AutoScaler::new(rig.cloud(), spec, rig.clock.clone())
        .await
        .unwrap();
    let containers = rig.cloud().containers().unwrap().clone();
    let put = |v: f64| {
        let metrics = rig.cloud().metrics().unwrap().clone();
        let (metric, at) = (metric.clone(), rig.clock.now());
        async move {
            metrics
                .put_data(&metric.namespace, vec![Datum::new(&metric.name, v, at)])
                .await
                .unwrap();
        }
    };
    // A health check first, so a replica still starting is not ready (as a pod with a
    // readiness probe).
    let mut checked = containers.describe_service("app").await.unwrap().spec;
    checked.container.health_check = Some(HealthCheck {
        path: "/healthz".into(),
        interval: Duration::from_millis(200),
        timeout: Duration::from_secs(1),
        healthy_threshold: 1,
        unhealthy_threshold: 3,
    });
    containers.update_service(checked).await.unwrap();
    // Scaling out during the deployment to v2: the queue says twice the ready replicas.
    let gates = tempfile::tempdir().unwrap();
    let deploying = start_rollout(&containers, "v2", &gates.path().join("v2")).await;
    put(200.0).await;
    rig.clock.advance(Duration::from_secs(1));
    let d = scaler.evaluate().await.unwrap();
    // The new revision's replicas wait for their gate: not ready, so 2 ready × 200 / 100.
    assert!(d.held.is_none(), "{d}");
    assert_eq!((d.current, d.desired, d.scaled), (2, 4, true), "{d}");
    let wanted = d.desired;
    std::fs::write(gates.path().join("v2"), "").unwrap();
    deploying.await.unwrap().unwrap();
    let info = containers.describe_service("app").await.unwrap();
    assert_eq!(info.spec.replicas, wanted);
    let v2 = info.revision;
    assert_eq!(
        info.instances.len(),
        wanted as usize,
        "{:?}",
        info.instances
    );
    assert!(
        info.instances.iter().all(|r| r.revision == v2),
        "every replica runs the deployed revision: {:?}",
        info.instances
    );
    let during = format!("scaled to {wanted} replica(s) during the deployment");
    assert!(
        info.events.iter().any(|e| e.message == during),
        "{:?}",
        info.events
    );

    // Scaling in during the deployment to v3 waits for it: the queue says a tenth.
    let deploying = start_rollout(&containers, "v3", &gates.path().join("v3")).await;
    rig.clock.advance(Duration::from_secs(14));
    put(10.0).await;
    rig.clock.advance(Duration::from_secs(1));
    let d = scaler.evaluate().await.unwrap();
    assert!(!d.scaled, "{d}");
    let held = d.held.as_deref().unwrap_or("");
    assert!(
        held.contains("scaling in to") && held.contains("waits for it to finish"),
        "{d}"
    );
    assert_eq!((d.current, d.desired), (wanted, wanted), "{d}");
    std::fs::write(gates.path().join("v3"), "").unwrap();
    deploying.await.unwrap().unwrap();
    assert_eq!(rig.replicas().await, wanted);
    // After it: the count the scaler wants.
    rig.clock.advance(Duration::from_secs(14));
    put(10.0).await;
    rig.clock.advance(Duration::from_secs(1));
    let d = scaler.evaluate().await.unwrap();
    assert_eq!((d.current, d.desired, d.scaled), (wanted, 1, true), "{d}");
}

/// Starts a rolling deployment of `app` to `version` and returns once it shows as in
/// progress. Its replicas listen only once `gate` exists, so it stays in progress until the
/// caller creates it.
async fn start_rollout(
    containers: &Arc<dyn mvi::Containers>,
    version: &str,
    gate: &std::path::Path,
) -> tokio::task::JoinHandle<mvi::Result<mvi::container::ServiceInfo>> {
    let mut next = containers.describe_service("app").await.unwrap().spec;
    let env = &mut next.container.env;
    env.insert("APP_VERSION".into(), version.into());
    env.insert("LISTEN_WHEN_FILE".into(), gate.display().to_string());
    let deploying = {
        let containers = containers.clone();
        tokio::spawn(async move { containers.update_service(next).await })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while containers
        .describe_service("app")
        .await
        .unwrap()
        .rollout
        .is_none()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the rollout never showed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    deploying
}
