//! Benchmark of deployments on the local backend: the tutorial web app (`examples/webapp`,
//! python3) behind the local load balancer.
//!
//! Figures (`cargo bench --bench deploy`; `ROUNDS=n` rounds, medians printed):
//! - **rolling overhead**: a rolling deploy of 3 replicas, one at a time (max surge 1, max
//!   unavailable 0), target group health checks every 200 ms and no deregistration delay:
//!   the wall time from the call to the last old replica stopped, minus 3 × one replica's
//!   start-to-healthy (measured the same way, in the same run). Target: at most 1 s.
//! - **canary abort**: a canary whose new revision (the deployment test app,
//!   `tests/fixtures/versioned`) answers 500 to every 5th request; from
//!   the moment its traffic weight is set to the moment every listener is back on the last
//!   good revision. Target: at most one analysis interval (2 s here) + 100 ms.
//! - **requests failed** during a rolling, a blue-green and a canary deployment under 8
//!   keep-alive clients: with the request counts. Target: 0.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mvi::container::{ContainerSpec, HealthCheck, ServiceSpec};
use mvi::deploy::{
    Analysis, BlueGreen, Count, Deployer, Deployment, Rolling, Strategy, TrafficShift,
};
use mvi::image::{ImageConfig, build_from_dir};
use mvi::lb::{ListenerSpec, LoadBalancerSpec, Protocol, TargetGroupSpec, TargetHealth};

#[path = "../tests/common/load.rs"]
#[allow(dead_code)]
mod load;
#[path = "../tests/common/repo.rs"]
mod repo;

struct Rig {
    _dir: tempfile::TempDir,
    local: mvi::local::LocalCloud,
    url: String,
}

fn check() -> HealthCheck {
    HealthCheck {
        path: "/healthz".into(),
        interval: Duration::from_millis(200),
        timeout: Duration::from_millis(150),
        healthy_threshold: 1,
        unhealthy_threshold: 2,
    }
}

async fn rig() -> Rig {
    let dir = tempfile::tempdir().expect("temp dir");
    let local = mvi::local::LocalCloud::builder()
        .root(dir.path())
        .seed(1)
        .build_local()
        .await
        .expect("local cloud");
    local.containers().set_grace_period(Duration::from_secs(2));
    let cloud = local.cloud();
    let images = cloud.images().expect("images");
    images.create_repository("web").await.expect("repo");
    let app = repo::package_path("examples/webapp");
    build_from_dir(
        images.as_ref(),
        "web",
        &app,
        &ImageConfig::new(["python3", "app.py"]).working_dir("/"),
        Some("v1"),
    )
    .await
    .expect("image");
    images.create_repository("vers").await.expect("repo");
    let vers = repo::package_path("tests/fixtures/versioned");
    build_from_dir(
        images.as_ref(),
        "vers",
        &vers,
        &ImageConfig::new(["python3", "app.py"]).working_dir("/"),
        Some("v1"),
    )
    .await
    .expect("image");
    let lbs = cloud.load_balancers().expect("lbs");
    for name in ["web", "web-next"] {
        let mut tg = TargetGroupSpec::new(name, Protocol::Http);
        tg.health_check = check();
        tg.deregistration_delay = Duration::ZERO;
        lbs.create_target_group(tg).await.expect("group");
    }
    let listener = |g: &str| ListenerSpec {
        protocol: Protocol::Http,
        port: 0,
        forward: vec![(g.into(), 1)],
    };
    let lb = lbs
        .create_load_balancer(LoadBalancerSpec::new(
            "front",
            vec![listener("web"), listener("web-next")],
        ))
        .await
        .expect("lb");
    Rig {
        _dir: dir,
        url: lb.urls[0].clone(),
        local,
    }
}

fn spec(name: &str, version: &str, replicas: u32, d: Deployment) -> ServiceSpec {
    let mut c = ContainerSpec::new("web:v1");
    c.cpu_millis = 128;
    c.memory_mib = 64;
    c.env.insert("APP_VERSION".into(), version.into());
    let mut s = ServiceSpec::new(name, c, replicas);
    s.target_group = Some("web".into());
    s.deployment = d.progress_deadline(Duration::from_secs(30));
    s
}

impl Rig {
    async fn healthy(&self, n: usize) {
        let lbs = self.local.cloud().load_balancers().expect("lbs");
        loop {
            let h = lbs.target_health("web").await.expect("health");
            if h.iter()
                .filter(|t| t.health == TargetHealth::Healthy)
                .count()
                == n
                && h.len() == n
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let rig = rig().await;
        let containers = rig.local.cloud().containers().expect("containers");

        // One replica's start to healthy in the target group.
        let mut single = Vec::new();
        for i in 0..rounds {
            let t = Instant::now();
            containers
                .create_service(spec("one", &format!("s{i}"), 1, Deployment::default()))
                .await
                .expect("create");
            rig.healthy(1).await;
            single.push(t.elapsed());
            containers.delete_service("one").await.expect("delete");
            rig.healthy(0).await;
        }
        let single = median(single);

        // Rolling 3 replicas, one at a time.
        let one_at_a_time = Deployment::new(Strategy::Rolling(Rolling::new(
            Count::Replicas(1),
            Count::Replicas(0),
        )));
        containers
            .create_service(spec("web", "v0", 3, one_at_a_time.clone()))
            .await
            .expect("create");
        rig.healthy(3).await;
        let mut rolling = Vec::new();
        for i in 0..rounds {
            let t = Instant::now();
            containers
                .update_service(spec("web", &format!("v{}", i + 1), 3, one_at_a_time.clone()))
                .await
                .expect("deploy");
            rolling.push(t.elapsed());
            rig.healthy(3).await;
        }
        let rolling = median(rolling);
        let overhead = rolling.as_secs_f64() - 3.0 * single.as_secs_f64();
        println!(
            "rolling 3 replicas: {:.0} ms; one replica start to healthy {:.0} ms; overhead {:.0} ms (target <= 1000 ms)",
            ms(rolling),
            ms(single),
            overhead * 1000.0
        );

        // Requests failed under load, per strategy.
        let mut n = 100;
        let mut next = || {
            n += 1;
            format!("v{n}")
        };
        let mut bg = BlueGreen::new("web-next");
        bg.preview_path = Some("/healthz".into());
        bg.scale_down_delay = Duration::from_secs(1);
        let mut canary = TrafficShift::canary("web-next", 20, Duration::from_secs(2));
        let mut analysis = Analysis::default();
        analysis.interval = Duration::from_secs(2);
        analysis.min_requests = 10;
        canary.analysis = analysis.clone();
        for (label, d) in [
            ("rolling", Deployment::default()),
            ("blue-green", Deployment::new(Strategy::BlueGreen(bg))),
            ("canary", Deployment::new(Strategy::Canary(canary))),
        ] {
            // The deployment settings first (no new revision), then a new version.
            Deployer::new(rig.local.cloud())
                .deploy(spec("web", &format!("{label}-settings"), 3, d.clone()))
                .await
                .expect("settings");
            rig.healthy(3).await;
            let load = load::Load::start(&rig.url, "/", 8, Duration::from_millis(2));
            tokio::time::sleep(Duration::from_millis(300)).await;
            let t = Instant::now();
            Deployer::new(rig.local.cloud())
                .deploy(spec("web", &next(), 3, d))
                .await
                .expect("deploy");
            let took = t.elapsed();
            tokio::time::sleep(Duration::from_millis(300)).await;
            let report = load.stop().await;
            println!(
                "{label}: {:.0} ms, {} requests, {} failed",
                ms(took),
                report.samples.len(),
                report.failed().len()
            );
        }

        // An aborted canary: weight set to all traffic back.
        let mut aborts = Vec::new();
        for _ in 0..rounds.min(3) {
            let mut shift = TrafficShift::canary("web-next", 10, Duration::from_secs(30));
            shift.analysis = analysis.clone();
            let mut bad = spec("web", &next(), 3, Deployment::new(Strategy::Canary(shift)));
            // The deployment test app, answering 500 to every 5th request.
            bad.container.image = "vers:v1".into();
            bad.container.env.insert("FAIL_ONE_IN".into(), "5".into());
            let marks: Arc<Mutex<(Option<Instant>, Option<Instant>)>> = Arc::default();
            let m = marks.clone();
            let load = load::Load::start(&rig.url, "/", 8, Duration::from_millis(2));
            let r = Deployer::new(rig.local.cloud())
                .progress(Arc::new(move |_, msg| {
                    let mut m = m.lock().expect("marks");
                    if msg.contains("% of the traffic") {
                        m.0 = Some(Instant::now());
                    }
                    if msg.contains("all traffic back") {
                        m.1 = Some(Instant::now());
                    }
                }))
                .deploy(bad)
                .await;
            load.stop().await;
            assert!(r.is_err(), "the failing canary was promoted");
            let (set, back) = *marks.lock().expect("marks");
            if let (Some(set), Some(back)) = (set, back) {
                aborts.push(back - set);
            }
        }
        if !aborts.is_empty() {
            println!(
                "canary abort: weight set to all traffic back {:.0} ms (target <= {:.0} ms)",
                ms(median(aborts)),
                ms(analysis.interval) + 100.0
            );
        }
    });
}
