//! Deployments: the quickstart's web app rolled to a new version with each strategy and
//! back, on the local simulator, with traffic flowing through the load balancer all along.
//!
//! ```text
//! cargo run --example deploy
//! ```
//!
//! Three replicas of `examples/webapp` behind a load balancer whose listener forwards to the
//! service's target group `web` (and, with weight 0, to `web-next`, the group blue-green
//! and canary use); a second listener forwards to `web-next` only, as a test listener. Then:
//! rolling to v2, blue-green to v3 (checked through the test listener first), a linear
//! canary to v4 (three steps, each analysed), and rolling back to v1. Every step of every
//! deployment is printed as it happens; at the end, how many requests the clients sent and
//! how many failed. State lives under `.mvi/deploy`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mvi::container::{ContainerSpec, HealthCheck, ServiceSpec};
use mvi::deploy::{Analysis, BlueGreen, Deployer, Deployment, Rolling, Strategy, TrafficShift};
use mvi::image::{ImageConfig, build_from_dir};
use mvi::lb::{ListenerSpec, LoadBalancerSpec, Protocol, TargetGroupSpec};
use mvi::{Cloud, Result};

mod common;
use common::{failed, http_get};

const ROOT: &str = ".mvi/deploy";

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("deploy failed: {e}");
        std::process::exit(1);
    }
}

fn check() -> HealthCheck {
    HealthCheck {
        path: "/healthz".into(),
        interval: Duration::from_millis(500),
        timeout: Duration::from_millis(400),
        healthy_threshold: 1,
        unhealthy_threshold: 2,
    }
}

fn spec(version: &str, strategy: Strategy) -> ServiceSpec {
    let mut c = ContainerSpec::new("web:v1");
    c.env.insert("APP_VERSION".into(), version.into());
    c.health_check = Some(check());
    let mut s = ServiceSpec::new("web", c, 3);
    s.target_group = Some("web".into());
    s.deployment = Deployment::new(strategy).progress_deadline(Duration::from_secs(60));
    s
}

async fn run() -> Result<()> {
    let root = std::path::Path::new(ROOT);
    let cloud: Cloud = common::fresh_cloud(root).await?;
    let images = cloud.images()?;
    images.create_repository("web").await?;
    let app = common::repo::package_path("examples/webapp");
    build_from_dir(
        images.as_ref(),
        "web",
        &app,
        &ImageConfig::new(["python3", "app.py"]).working_dir("/"),
        Some("v1"),
    )
    .await?;
    let lbs = cloud.load_balancers()?;
    for name in ["web", "web-next"] {
        let mut tg = TargetGroupSpec::new(name, Protocol::Http);
        tg.health_check = check();
        tg.deregistration_delay = Duration::from_secs(2);
        lbs.create_target_group(tg).await?;
    }
    let lb = lbs
        .create_load_balancer(LoadBalancerSpec::new(
            "front",
            vec![
                ListenerSpec {
                    protocol: Protocol::Http,
                    port: 0,
                    forward: vec![("web".into(), 1), ("web-next".into(), 0)],
                },
                ListenerSpec {
                    protocol: Protocol::Http,
                    port: 0,
                    forward: vec![("web-next".into(), 1)],
                },
            ],
        ))
        .await?;
    let url = lb.urls[0].clone();
    println!("load balancer: {url} (test listener {})", lb.urls[1]);

    let started = Instant::now();
    let deployer = Deployer::new(&cloud).progress(Arc::new(move |_, message| {
        println!("  {:>6.1}s  {message}", started.elapsed().as_secs_f64());
    }));
    println!("\n== v1: three replicas");
    deployer
        .deploy(spec("v1", Strategy::Rolling(Rolling::default())))
        .await?;
    // Until the load balancer has found them healthy.
    while lbs
        .target_health("web")
        .await?
        .iter()
        .filter(|t| t.health == mvi::lb::TargetHealth::Healthy)
        .count()
        < 3
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients = common::traffic(url.clone(), 4, Duration::from_millis(10), stop.clone());

    let mut blue_green = BlueGreen::new("web-next");
    blue_green.preview_path = Some("/healthz".into());
    blue_green.scale_down_delay = Duration::from_secs(2);
    let mut linear = TrafficShift::linear("web-next", 34, Duration::from_secs(2));
    let mut analysis = Analysis::default();
    analysis.interval = Duration::from_secs(1);
    analysis.min_requests = 5;
    linear.analysis = analysis;
    for (title, version, strategy) in [
        ("rolling", "v2", Strategy::Rolling(Rolling::default())),
        ("blue-green", "v3", Strategy::BlueGreen(blue_green)),
        ("linear canary", "v4", Strategy::Canary(linear)),
        ("rolling, back", "v1", Strategy::Rolling(Rolling::default())),
    ] {
        println!("\n== {title} to {version}");
        let info = deployer.deploy(spec(version, strategy)).await?;
        let (_, body) = http_get(&url, "/")
            .await
            .map_err(|e| failed("the load balancer did not answer", e))?;
        println!("  revision {} runs; the app says: {body}", info.revision);
    }
    stop.store(true, Ordering::Release);
    let (sent, failures) = clients
        .await
        .map_err(|e| failed("the clients did not finish", e))?;
    println!(
        "\n{sent} requests through the load balancer during the deployments, {failures} failed"
    );
    println!("\nrevisions:");
    for r in cloud.containers()?.list_revisions("web").await? {
        println!(
            "  {:>2} {:<10} {}",
            r.number,
            format!("{:?}", r.state),
            r.container
                .env
                .get("APP_VERSION")
                .map(String::as_str)
                .unwrap_or("-")
        );
    }
    cloud.containers()?.delete_service("web").await?;
    if failures > 0 {
        return Err(mvi::Op::new(mvi::Service::Container, "deploy").err(
            mvi::ErrorKind::Internal,
            "web",
            format!("{failures} of {sent} requests failed"),
        ));
    }
    Ok(())
}
