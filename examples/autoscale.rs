//! Autoscaling: load through the load balancer makes a service grow, and it shrinks when the
//! load stops, every decision printed as it happens.
//!
//! ```text
//! cargo run --example autoscale
//! ```
//!
//! One replica of `examples/webapp` behind a load balancer, and a scaler the local backend
//! runs (`Containers::put_scaler`): between 1 and 5 replicas, 20 requests a second per
//! replica, evaluated every 2 s, with a 6 s scale-down window (HPA's default is 300 s; short
//! here so the demo ends in about half a minute). Clients send about 80 requests a second for
//! 12 s, then stop. State lives under `.mvi/autoscale`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mvi::autoscale::{Behavior, MetricTarget, ScalerSpec};
use mvi::container::{ContainerSpec, HealthCheck, ServiceSpec};
use mvi::image::{ImageConfig, build_from_dir};
use mvi::lb::{ListenerSpec, LoadBalancerSpec, Protocol, TargetGroupSpec};
use mvi::{Cloud, Result};

mod common;
use common::failed;

const ROOT: &str = ".mvi/autoscale";

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("autoscale failed: {e}");
        std::process::exit(1);
    }
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
    let check = HealthCheck {
        path: "/healthz".into(),
        interval: Duration::from_millis(300),
        timeout: Duration::from_millis(250),
        healthy_threshold: 1,
        unhealthy_threshold: 2,
    };
    let lbs = cloud.load_balancers()?;
    let mut tg = TargetGroupSpec::new("web", Protocol::Http);
    tg.health_check = check.clone();
    tg.deregistration_delay = Duration::from_secs(1);
    lbs.create_target_group(tg).await?;
    let lb = lbs
        .create_load_balancer(LoadBalancerSpec::new(
            "front",
            vec![ListenerSpec {
                protocol: Protocol::Http,
                port: 0,
                forward: vec![("web".into(), 1)],
            }],
        ))
        .await?;
    let url = lb.urls[0].clone();
    let mut c = ContainerSpec::new("web:v1");
    c.health_check = Some(check);
    let mut s = ServiceSpec::new("web", c, 1);
    s.target_group = Some("web".into());
    let containers = cloud.containers()?;
    containers.create_service(s).await?;
    let healthy = Instant::now();
    while !lbs
        .target_health("web")
        .await?
        .iter()
        .any(|t| t.health == mvi::lb::TargetHealth::Healthy)
    {
        if healthy.elapsed() > Duration::from_secs(30) {
            return Err(failed("the first replica", "not healthy within 30 s"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("load balancer: {url}; service web: 1 replica, healthy");

    let mut behavior = Behavior::default();
    behavior.scale_down.stabilization = Duration::from_secs(6);
    let spec = ScalerSpec::new("web", 1, 5)
        .track(MetricTarget::RequestsPerReplica {
            target_group: "web".into(),
            target: 20.0,
        })
        .behavior(behavior)
        .period(Duration::from_secs(2));
    containers.put_scaler(spec).await?;
    println!("scaler: 1..=5 replicas, 20 requests/s per replica, every 2 s, 6 s down window\n");

    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    // 8 clients, one request every 100 ms each: about 80 a second.
    let load = common::traffic(url.clone(), 8, Duration::from_millis(100), stop.clone());
    let mut printed = 0;
    let mut stopped_at = None;
    let mut peak = 1;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let info = containers.describe_scaler("web").await?;
        // Decisions are kept 20 deep: print those not printed yet.
        let fresh: Vec<_> = info
            .decisions
            .iter()
            .filter(|d| d.at.timestamp_millis() > printed)
            .collect();
        for d in fresh {
            printed = d.at.timestamp_millis();
            let mark = if d.scaled { "scaled" } else { "kept  " };
            println!("  {:>5.1}s  {mark}  {d}", started.elapsed().as_secs_f64());
        }
        let replicas = containers.describe_service("web").await?.spec.replicas;
        peak = peak.max(replicas);
        if stopped_at.is_none() && started.elapsed() > Duration::from_secs(12) {
            stop.store(true, Ordering::Release);
            stopped_at = Some(Instant::now());
            println!(
                "  {:>5.1}s  the load stops ({replicas} replicas)",
                started.elapsed().as_secs_f64()
            );
        }
        if let Some(at) = stopped_at {
            if replicas == 1 {
                println!(
                    "  {:>5.1}s  back to 1 replica, {:.1}s after the load stopped",
                    started.elapsed().as_secs_f64(),
                    at.elapsed().as_secs_f64()
                );
                break;
            }
            if at.elapsed() > Duration::from_secs(40) {
                return Err(failed(
                    "the service did not shrink",
                    format!("{replicas} replicas 40 s after the load stopped"),
                ));
            }
        }
        if started.elapsed() > Duration::from_secs(90) {
            return Err(failed("the demo took too long", "90 s"));
        }
    }
    let (sent, bad) = load.await.map_err(|e| failed("the clients", e))?;
    println!("\n{sent} requests sent, {bad} failed; at most {peak} replicas");
    if peak < 3 || bad > 0 {
        return Err(failed(
            "the demo",
            format!("at most {peak} replicas, {bad} failed requests"),
        ));
    }
    containers.delete_service("web").await?;
    Ok(())
}
