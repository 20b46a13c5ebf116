//! Fault experiments on the local backend: a zone failing under load with replicas in two
//! zones behind the load balancer (the requests lost are counted and bounded, the service
//! recovers to its full count in the surviving zone), a stop condition on the load
//! balancer's 5xx count ending an experiment early with every fault reverted, API faults
//! and their ordering, selections, and the checks made before anything is injected.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::time::{Duration, Instant};

use mvi::container::{ContainerSpec, ServiceSpec};
use mvi::experiment::{
    Action, ActionState, Experiment, Outcome, Recovery, SteadyState, Target, Template,
};
use mvi::fault::Faults;
use mvi::kv::{Key, KeyAttr, KeyType, TableSpec};
use mvi::lb::metric_names;
use mvi::local::LocalCloud;
use mvi::metric::{AlarmSpec, Comparison, MetricId, Statistic};
use mvi::vm::{VmSpec, VmState};
use mvi::{Cloud, ErrorKind, KvExt, Service};

mod common;
use common::load::Load;

const ZONE_A: &str = "local-1a";
const ZONE_B: &str = "local-1b";
/// Load clients; each has one request in flight at a time.
const CLIENTS: usize = 4;

/// A local cloud wrapped in a `Faults` layer, with a subnet in two zones, the test app's
/// image, and the load balancer `front` on target group `app`.
struct Rig {
    _dir: tempfile::TempDir,
    local: LocalCloud,
    faults: Faults,
    subnets: Vec<String>,
    url: String,
}

impl Rig {
    async fn new(seed: u64) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let faults = Faults::new(seed);
        let local = LocalCloud::builder()
            .root(dir.path().join("cloud"))
            .seed(seed)
            .faults(faults.clone())
            .build_local()
            .await
            .unwrap();
        local.containers().set_grace_period(Duration::from_secs(1));
        let cloud = local.cloud();
        let net = cloud.networks().unwrap();
        let vpc = net
            .create_vpc("10.0.0.0/16", Default::default())
            .await
            .unwrap();
        let mut subnets = Vec::new();
        for (i, zone) in [ZONE_A, ZONE_B].iter().enumerate() {
            let s = net
                .create_subnet(&vpc.id, &format!("10.0.{i}.0/24"), zone, true)
                .await
                .unwrap();
            subnets.push(s.id);
        }
        common::build_test_app(cloud).await;
        let url = common::front(cloud, "front", "app", Duration::from_millis(200)).await;
        Rig {
            _dir: dir,
            url,
            local,
            faults,
            subnets,
        }
    }

    fn cloud(&self) -> &Cloud {
        self.local.cloud()
    }

    /// A VM with room for every replica, in the subnet of zone `i`.
    async fn vm(&self, i: usize) -> String {
        let spec = VmSpec::new(
            format!("host-{i}"),
            "t3.medium",
            "ami-local",
            &self.subnets[i],
        );
        self.cloud()
            .vms()
            .unwrap()
            .run_instance(spec)
            .await
            .unwrap()
            .id
    }

    /// Service `app` with `replicas` replicas behind the load balancer, healthy.
    async fn service(&self, replicas: u32) {
        let mut c = ContainerSpec::new("app:v1");
        c.cpu_millis = 128;
        c.memory_mib = 64;
        c.env.insert("APP_VERSION".into(), "v1".into());
        // Requests take a while, so some are in flight when a zone fails.
        c.env.insert("RESPONSE_DELAY_MS".into(), "5".into());
        let mut s = ServiceSpec::new("app", c, replicas);
        s.target_group = Some("app".into());
        s.subnets = self.subnets.clone();
        self.cloud()
            .containers()
            .unwrap()
            .create_service(s)
            .await
            .unwrap();
        common::wait_healthy(self.cloud(), "app", replicas as usize).await;
    }

    /// The VM each replica of `app` is on.
    async fn placement(&self) -> Vec<Option<String>> {
        let info = self
            .cloud()
            .containers()
            .unwrap()
            .describe_service("app")
            .await
            .unwrap();
        info.instances.into_iter().map(|i| i.vm).collect()
    }

    async fn vm_state(&self, id: &str) -> VmState {
        let vms = self.cloud().vms().unwrap();
        vms.describe_instance(id).await.unwrap().state
    }

    fn experiment(&self, template: Template) -> Experiment {
        Experiment::new(template)
            .faults(self.faults.clone())
            .hosts(self.local.host_faults())
            .seed(7)
            .tick(Duration::from_millis(20))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_zone_failure_under_load_loses_a_bounded_number_of_requests_and_the_service_recovers() {
    let rig = Rig::new(11).await;
    let (vm_a, vm_b) = (rig.vm(0).await, rig.vm(1).await);
    rig.service(4).await;
    let before = rig.placement().await;
    let in_a = before
        .iter()
        .filter(|v| v.as_deref() == Some(&vm_a))
        .count();
    assert_eq!(
        in_a, 2,
        "placement spreads the replicas over the zones: {before:?}"
    );

    let load = Load::start(&rig.url, "/", CLIENTS, Duration::from_millis(2));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let template = Template::new("zone-a-outage")
        .action(
            "fail-zone-a",
            Action::fail_zone(ZONE_A).duration(Duration::from_secs(8)),
        )
        .steady_state(SteadyState::service_stable("app"))
        .steady_state(SteadyState::healthy_targets("app", 4));
    let report = rig.experiment(template).run(rig.cloud()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let traffic = load.stop().await;
    println!("{report}\n{}", traffic.summary());

    assert_eq!(report.outcome, Outcome::Completed, "{report}");
    let action = report.action("fail-zone-a").unwrap();
    assert_eq!(action.state, ActionState::Completed);
    assert!(report.revert_errors.is_empty(), "{report}");
    // The service came back to its full count while the zone was still down.
    let Recovery::Recovered { restored, took, .. } = report.recovery else {
        panic!("the steady state must be lost and recovered: {report}");
    };
    assert!(restored < action.ended.unwrap(), "{report}");
    assert!(took > Duration::ZERO);
    let after = rig.placement().await;
    assert_eq!(after.len(), 4, "{after:?}");
    assert!(
        after.iter().all(|v| v.as_deref() == Some(&vm_b)),
        "every replica runs in the surviving zone: {after:?}"
    );
    // Reverted: the zone's VM runs again.
    assert_eq!(rig.vm_state(&vm_a).await, VmState::Running);

    // The bound: a replica in the failed zone is deregistered from the load balancer before
    // its process is killed, so only requests in flight on it at that moment fail, and each
    // client has one request in flight at a time: at most CLIENTS per replica of the zone.
    let failed = traffic.failed().len();
    assert!(
        failed <= CLIENTS * in_a,
        "{failed} requests failed, more than {CLIENTS} clients × {in_a} replicas: {}",
        traffic.summary()
    );
    assert!(traffic.samples.len() >= 500, "{}", traffic.summary());
    let late = traffic
        .sent_after(
            traffic
                .samples
                .last()
                .unwrap()
                .sent
                .saturating_sub(Duration::from_millis(200)),
        )
        .filter(|s| !s.ok())
        .count();
    assert_eq!(late, 0, "the service answers again: {}", traffic.summary());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stop_condition_alarm_ends_the_experiment_early_and_every_fault_is_reverted() {
    let rig = Rig::new(12).await;
    // Both replicas in zone A (the only zone with a VM when the service starts), so failing
    // it leaves the load balancer without targets until replicas start in zone B: it answers
    // 503 meanwhile, which the alarm counts.
    let vm_a = rig.vm(0).await;
    rig.service(2).await;
    let vm_b = rig.vm(1).await;
    let kv = rig.cloud().kv().unwrap().clone();
    kv.create_table(TableSpec::new("orders", KeyAttr::new("id", KeyType::Str)))
        .await
        .unwrap();
    let metrics = rig.cloud().metrics().unwrap();
    let alarm = AlarmSpec::new(
        "front-5xx",
        MetricId::new("mvi/LoadBalancer", metric_names::ELB_5XX).dimension("LoadBalancer", "front"),
        Statistic::Sum,
        Comparison::GreaterThanOrEqual,
        1.0,
        Duration::from_secs(1),
        1,
    );
    metrics.put_alarm(alarm).await.unwrap();

    let load = Load::start(&rig.url, "/", CLIENTS, Duration::from_millis(2));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let long = Duration::from_secs(120);
    let template = Template::new("stopped-by-alarm")
        .target("kv-calls", Target::api([Service::Kv]))
        .action("fail-zone-a", Action::fail_zone(ZONE_A).duration(long))
        .action(
            "kv-errors",
            Action::api_errors("kv-calls", 100.0).duration(long),
        )
        .action("hold", Action::wait(long))
        .action(
            "after-hold",
            Action::wait(Duration::from_secs(1)).start_after(["hold"]),
        )
        .stop_when_alarm("front-5xx")
        .steady_state(SteadyState::healthy_targets("app", 2));
    let started = Instant::now();
    let experiment = rig.experiment(template);
    let run = experiment.run(rig.cloud());
    // While it runs, KV calls fail with the injected fault.
    let kv_probe = poll("an injected KV error", || async {
        kv.get_item("orders", Key::new("1")).await.err()
    });
    let (report, during) = tokio::join!(run, kv_probe);
    let report = report.unwrap();
    let elapsed = started.elapsed();
    let traffic = load.stop().await;
    println!("{report}\n{}", traffic.summary());

    assert!(during.to_string().contains("injected fault"), "{during}");
    assert_eq!(
        report.outcome,
        Outcome::Stopped {
            alarm: Some("front-5xx".into()),
            reason: "stop condition alarm front-5xx is in ALARM".into()
        },
        "{report}"
    );
    assert!(elapsed < long, "stopped early: {elapsed:?}");
    for held in ["fail-zone-a", "kv-errors", "hold"] {
        let a = report.action(held).unwrap();
        assert_eq!(a.state, ActionState::Stopped, "{held}: {report}");
        assert!(a.ended.unwrap() < long);
    }
    assert_eq!(
        report.action("after-hold").unwrap().state,
        ActionState::Cancelled
    );
    let fired = &report.alarms[0];
    assert_eq!(fired.name, "front-5xx");
    assert!(fired.stop_condition);
    assert!(report.revert_errors.is_empty(), "{report}");
    assert!(
        !traffic.failed().is_empty(),
        "the outage was seen by clients"
    );

    // Every fault reverted: no API rule left, KV answers, the zone's VM runs again and VMs
    // start there.
    assert_eq!(rig.faults.injections(), 0);
    kv.put("orders", mvi::item! { "id" => "after" })
        .await
        .unwrap();
    assert_eq!(rig.vm_state(&vm_a).await, VmState::Running);
    assert_eq!(rig.vm_state(&vm_b).await, VmState::Running);
    assert!(rig.local.vms().watch_failed_zones().borrow().is_empty());
}

/// Calls `check` every 10 ms until it gives something (at most 20 s, else fails the test).
async fn poll<T, F, Fut>(what: &str, check: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An in-memory cloud with three tagged VMs over two zones, wrapped in `faults`.
async fn small_cloud(faults: &Faults) -> (LocalCloud, Vec<String>) {
    let local = LocalCloud::builder()
        .in_memory()
        .seed(5)
        .faults(faults.clone())
        .build_local()
        .await
        .unwrap();
    let cloud = local.cloud();
    let net = cloud.networks().unwrap();
    let vpc = net
        .create_vpc("10.1.0.0/16", Default::default())
        .await
        .unwrap();
    let mut ids = Vec::new();
    for (i, zone) in [ZONE_A, ZONE_A, ZONE_B].iter().enumerate() {
        let s = net
            .create_subnet(&vpc.id, &format!("10.1.{i}.0/24"), zone, true)
            .await
            .unwrap();
        let mut spec = VmSpec::new(format!("web-{i}"), "t3.micro", "ami-local", &s.id);
        spec.tags.insert("role".into(), "web".into());
        ids.push(cloud.vms().unwrap().run_instance(spec).await.unwrap().id);
    }
    (local, ids)
}

async fn states(cloud: &Cloud, ids: &[String]) -> Vec<VmState> {
    let mut out = Vec::new();
    for id in ids {
        out.push(
            cloud
                .vms()
                .unwrap()
                .describe_instance(id)
                .await
                .unwrap()
                .state,
        );
    }
    out
}

#[tokio::test]
async fn actions_run_in_order_select_what_they_say_and_revert_after_their_duration() {
    let faults = Faults::new(1);
    let (local, ids) = small_cloud(&faults).await;
    let cloud = local.cloud();
    let kv = cloud.kv().unwrap();
    kv.create_table(TableSpec::new("things", KeyAttr::new("id", KeyType::Str)))
        .await
        .unwrap();
    let template = Template::new("ordered")
        .target(
            "one-web",
            Target::vms().tag("role", "web").zone(ZONE_A).count(1),
        )
        .target(
            "kv-puts",
            Target::api([Service::Kv]).operations(["put_item"]),
        )
        .action(
            "crash-one",
            Action::crash_vms("one-web").duration(Duration::from_secs(1)),
        )
        .action(
            "kv-errors",
            Action::api_errors("kv-puts", 100.0)
                .kind(ErrorKind::RateLimited)
                .duration(Duration::from_secs(1))
                .start_after(["crash-one"]),
        );
    let experiment = Experiment::new(template)
        .faults(faults.clone())
        .hosts(local.host_faults())
        .seed(3)
        .tick(Duration::from_millis(10));
    let run = experiment.run(cloud);
    let probe = async {
        // During the crash: which VMs are down.
        let during_crash = poll("a crashed VM", || async {
            let now = states(cloud, &ids).await;
            now.contains(&VmState::Stopped).then_some(now)
        })
        .await;
        // During the KV fault: puts throttled, gets fine.
        let put = poll("a throttled put", || async {
            kv.put("things", mvi::item! { "id" => "b" }).await.err()
        })
        .await;
        let get = kv.get_item("things", Key::new("a")).await;
        (during_crash, put, get)
    };
    let (report, (during_crash, put, get)) = tokio::join!(run, probe);
    let report = report.unwrap();
    println!("{report}");
    assert_eq!(report.outcome, Outcome::Completed);
    let crash = report.action("crash-one").unwrap();
    assert_eq!(crash.resources.len(), 1);
    let crashed = ids.iter().position(|id| id == &crash.resources[0]).unwrap();
    assert!(crashed < 2, "the VM is one of zone A's: {crash:?}");
    let stopped = during_crash
        .iter()
        .filter(|s| **s == VmState::Stopped)
        .count();
    assert_eq!(stopped, 1, "{during_crash:?}");
    assert_eq!(during_crash[crashed], VmState::Stopped);
    assert_eq!(put.kind(), ErrorKind::RateLimited, "{put}");
    assert!(get.is_ok(), "only put_item is targeted");
    let errors = report.action("kv-errors").unwrap();
    assert!(errors.started.unwrap() >= crash.ended.unwrap(), "{report}");
    // After: every VM runs again and puts work.
    assert_eq!(states(cloud, &ids).await, vec![VmState::Running; 3]);
    kv.put("things", mvi::item! { "id" => "c" }).await.unwrap();
    assert_eq!(faults.injections(), 0);

    // The same seed picks the same VM.
    let again = experiment.run(cloud).await.unwrap();
    assert_eq!(
        again.action("crash-one").unwrap().resources,
        crash.resources
    );
}

#[tokio::test]
async fn a_dropped_experiment_reverts_what_it_held() {
    let faults = Faults::new(2);
    let (local, ids) = small_cloud(&faults).await;
    let template = Template::new("dropped")
        .target("kv-calls", Target::api([Service::Kv]))
        .action(
            "fail-zone-a",
            Action::fail_zone(ZONE_A).duration(Duration::from_secs(60)),
        )
        .action(
            "kv-latency",
            Action::api_latency("kv-calls", Duration::from_secs(1))
                .duration(Duration::from_secs(60)),
        );
    let experiment = Experiment::new(template)
        .faults(faults.clone())
        .hosts(local.host_faults());
    let cloud = local.cloud().clone();
    let task = tokio::spawn(async move { experiment.run(&cloud).await });
    let cloud = local.cloud();
    let deadline = Instant::now() + Duration::from_secs(10);
    while states(cloud, &ids).await[0] != VmState::Stopped || faults.injections() == 0 {
        assert!(Instant::now() < deadline, "the faults never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    let deadline = Instant::now() + Duration::from_secs(10);
    while states(cloud, &ids).await != vec![VmState::Running; 3] || faults.injections() > 0 {
        assert!(Instant::now() < deadline, "the faults were not reverted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(local.vms().watch_failed_zones().borrow().is_empty());
}

#[tokio::test]
async fn nothing_is_injected_when_the_checks_before_the_run_fail() {
    let faults = Faults::new(3);
    let (local, ids) = small_cloud(&faults).await;
    let cloud = local.cloud();
    let crash = |target: Target| {
        Template::new("checked")
            .target("t", target)
            .action("a", Action::crash_vms("t"))
    };
    let refused = |e: mvi::Error, kind: ErrorKind, needle: &str| {
        assert_eq!(e.kind(), kind, "{e}");
        assert!(e.to_string().contains(needle), "{e} lacks {needle:?}");
    };
    // No host faults given.
    let e = Experiment::new(crash(Target::vms()))
        .run(cloud)
        .await
        .unwrap_err();
    refused(e, ErrorKind::Unsupported, "needs host faults");
    // No Faults layer given.
    let api = Template::new("api")
        .target("kv", Target::api([Service::Kv]))
        .action(
            "e",
            Action::api_errors("kv", 50.0).duration(Duration::from_secs(1)),
        );
    let e = Experiment::new(api).run(cloud).await.unwrap_err();
    refused(e, ErrorKind::PreconditionFailed, "Faults layer");
    let hosts = local.host_faults();
    let with_hosts = |t: Template| Experiment::new(t).hosts(hosts.clone());
    // A target naming a service or database that does not exist.
    let stop = Template::new("s")
        .target("r", Target::replicas("ghost"))
        .action("k", Action::stop_replicas("r"));
    let e = with_hosts(stop).run(cloud).await.unwrap_err();
    refused(e, ErrorKind::NotFound, "target \"r\"");
    // A stop condition naming no alarm, and one in ALARM already.
    let e = with_hosts(crash(Target::vms()).stop_when_alarm("nope"))
        .run(cloud)
        .await
        .unwrap_err();
    refused(e, ErrorKind::NotFound, "stop condition");
    let metrics = cloud.metrics().unwrap();
    let id = MetricId::new("app", "Errors");
    metrics
        .put_alarm(AlarmSpec::new(
            "firing",
            id.clone(),
            Statistic::Sum,
            Comparison::GreaterThanOrEqual,
            1.0,
            Duration::from_secs(60),
            1,
        ))
        .await
        .unwrap();
    metrics
        .put_data(
            "app",
            // Points 40 s apart over the last two minutes: the last complete period has one.
            [30, 70, 110]
                .iter()
                .map(|ago| {
                    let at = std::time::SystemTime::now() - Duration::from_secs(*ago);
                    mvi::metric::Datum::new("Errors", 5.0, mvi::Timestamp::from(at))
                })
                .collect(),
        )
        .await
        .unwrap();
    let e = with_hosts(crash(Target::vms()).stop_when_alarm("firing"))
        .run(cloud)
        .await
        .unwrap_err();
    refused(e, ErrorKind::PreconditionFailed, "in ALARM already");
    // A steady state that does not hold.
    let e = with_hosts(crash(Target::vms()).steady_state(SteadyState::alarm_not_firing("firing")))
        .run(cloud)
        .await
        .unwrap_err();
    refused(
        e,
        ErrorKind::PreconditionFailed,
        "steady state does not hold",
    );
    // A bad template.
    let e = with_hosts(crash(Target::vms().percent(101)))
        .run(cloud)
        .await
        .unwrap_err();
    refused(e, ErrorKind::InvalidArgument, "1–100");
    // None of it touched a VM.
    assert_eq!(states(cloud, &ids).await, vec![VmState::Running; 3]);

    // A target matching nothing fails the run when its action starts: reported, nothing held.
    let none = with_hosts(crash(Target::vms().tag("role", "db")))
        .run(cloud)
        .await
        .unwrap();
    let Outcome::Failed { action, error } = &none.outcome else {
        panic!("{none}");
    };
    assert_eq!(action, "a");
    assert!(error.contains("matched nothing"), "{error}");
    assert_eq!(states(cloud, &ids).await, vec![VmState::Running; 3]);
}
