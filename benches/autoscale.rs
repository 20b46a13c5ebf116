//! How long from the metric point that crosses a scaler's target to the scale call, on the
//! local backend's own scaler loop (`Containers::put_scaler`), real clock.
//!
//! Run: `cargo bench --bench autoscale` (release; about a minute). A service of one replica
//! (examples/webapp), a scaler on a custom metric (`Bench/Load`, whole-service value, target
//! 100) evaluated every `PERIOD`; each round writes one point at 300 (3× the target) at a
//! random moment of the period and times until the service's desired count changes, then
//! writes 0s and waits until it is back to 1 (a 0 s down window, so rounds do not wait 5
//! minutes). Prints the latencies and their ratio to the period; the target is at most one
//! evaluation period.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark program: fail loudly

use std::time::{Duration, Instant};

use mvi::autoscale::{Behavior, MetricTarget, ScalerSpec};
use mvi::container::{ContainerSpec, ServiceSpec};
use mvi::image::{ImageConfig, build_from_dir};
use mvi::metric::{Datum, MetricId, Statistic};

#[path = "../tests/common/repo.rs"]
mod repo;

const PERIOD: Duration = Duration::from_secs(2);
const ROUNDS: usize = 12;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(run());
}

async fn run() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = mvi::local::LocalCloud::builder()
        .root(dir.path())
        .build()
        .await
        .unwrap();
    let images = cloud.images().unwrap();
    images.create_repository("web").await.unwrap();
    build_from_dir(
        images.as_ref(),
        "web",
        &repo::package_path("examples/webapp"),
        &ImageConfig::new(["python3", "app.py"]).working_dir("/"),
        Some("v1"),
    )
    .await
    .unwrap();
    let containers = cloud.containers().unwrap();
    containers
        .create_service(ServiceSpec::new("web", ContainerSpec::new("web:v1"), 1))
        .await
        .unwrap();
    let metric = MetricId::new("Bench", "Load");
    let mut behavior = Behavior::default();
    behavior.scale_down.stabilization = Duration::ZERO;
    let spec = ScalerSpec::new("web", 1, 10)
        .track(MetricTarget::Custom {
            metric: metric.clone(),
            statistic: Statistic::Maximum,
            target: 100.0,
            per_replica: false,
        })
        .behavior(behavior)
        .period(PERIOD);
    containers.put_scaler(spec).await.unwrap();
    let metrics = cloud.metrics().unwrap();
    let put = |v: f64| {
        let metrics = metrics.clone();
        let metric = metric.clone();
        async move {
            metrics
                .put_data(
                    &metric.namespace,
                    vec![Datum::new(&metric.name, v, chrono::Utc::now())],
                )
                .await
                .unwrap();
        }
    };
    let replicas = || async {
        containers
            .describe_service("web")
            .await
            .unwrap()
            .spec
            .replicas
    };
    let mut latencies = Vec::new();
    for round in 0..ROUNDS {
        // A random moment of the period (spread over it by the round number).
        tokio::time::sleep(PERIOD.mul_f64((round as f64 * 0.37) % 1.0)).await;
        let t0 = Instant::now();
        put(300.0).await;
        while replicas().await == 1 {
            if t0.elapsed() > PERIOD * 5 {
                let info = containers.describe_scaler("web").await.unwrap();
                let lines: Vec<String> = info.decisions.iter().map(|d| d.to_string()).collect();
                panic!(
                    "round {round}: no scale within 5 periods:\n{}",
                    lines.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        latencies.push(t0.elapsed());
        // Back down before the next round.
        let t = Instant::now();
        while replicas().await != 1 {
            put(0.0).await;
            assert!(t.elapsed() < PERIOD * 10, "no scale-down");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    latencies.sort();
    let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
    println!(
        "metric point over the target → scale call, {ROUNDS} rounds, period {} ms:",
        PERIOD.as_millis()
    );
    println!(
        "  min {:.0} ms, median {:.0} ms, max {:.0} ms; max / period = {:.2} (target ≤ 1)",
        ms(&latencies[0]),
        ms(&latencies[ROUNDS / 2]),
        ms(&latencies[ROUNDS - 1]),
        latencies[ROUNDS - 1].as_secs_f64() / PERIOD.as_secs_f64()
    );
    containers.delete_service("web").await.unwrap();
}
