//! Benchmark of the local Container service, on disk in a temporary directory.
//!
//! Figures:
//! - `container/start_to_healthy`: from `create_service` to the replica reported Healthy, for
//!   the tutorials' web app (`examples/webapp`, python3), its image already unpacked. The
//!   target is under 200 ms plus the app's own start time.
//! - the app's own start time: `python3 app.py` started directly, until it answers `/healthz`
//!   (printed), so the service's overhead is the difference.
//! - `container/start_to_running`: from `create_service` to the replica's process running
//!   (`sleep`), the runner's overhead alone.

#[path = "../tests/common/repo.rs"]
mod repo;

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use mvi::Containers;
use mvi::container::{ContainerSpec, HealthCheck, InstanceState, ServiceSpec};
use mvi::image::{ImageConfig, build_from_dir};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn webapp_dir() -> std::path::PathBuf {
    repo::package_path("examples/webapp")
}

struct Setup {
    _dir: tempfile::TempDir,
    _cloud: mvi::Cloud,
    containers: Arc<dyn Containers>,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    let cloud = mvi::local::LocalCloud::builder()
        .root(dir.path())
        .seed(1)
        .build()
        .await
        .expect("local cloud");
    let images = cloud.images().expect("images").clone();
    images.create_repository("webapp").await.expect("repo");
    build_from_dir(
        images.as_ref(),
        "webapp",
        &webapp_dir(),
        &ImageConfig::new(["python3", "app.py"]).working_dir("/"),
        Some("v1"),
    )
    .await
    .expect("webapp image");
    let sleep_dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(sleep_dir.path().join("keep"), "").expect("file");
    images.create_repository("sleeper").await.expect("repo");
    build_from_dir(
        images.as_ref(),
        "sleeper",
        sleep_dir.path(),
        &ImageConfig::new(["sleep", "300"]),
        Some("v1"),
    )
    .await
    .expect("sleeper image");
    let containers = cloud.containers().expect("containers").clone();
    Setup {
        _dir: dir,
        _cloud: cloud,
        containers,
    }
}

fn webapp_spec(name: &str) -> ServiceSpec {
    let mut c = ContainerSpec::new("webapp:v1");
    c.cpu_millis = 128;
    c.memory_mib = 64;
    c.health_check = Some(HealthCheck {
        path: "/healthz".into(),
        interval: Duration::from_millis(5),
        timeout: Duration::from_secs(1),
        healthy_threshold: 1,
        unhealthy_threshold: 3,
    });
    ServiceSpec::new(name, c, 1)
}

/// Creates the service, waits for `want`, returns the time taken, deletes the service.
async fn one_start(
    containers: &Arc<dyn Containers>,
    spec: ServiceSpec,
    want: InstanceState,
) -> Duration {
    let name = spec.name.clone();
    let start = Instant::now();
    containers.create_service(spec).await.expect("create");
    loop {
        let info = containers.describe_service(&name).await.expect("describe");
        if info.instances.iter().all(|i| i.state == want) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let took = start.elapsed();
    containers.delete_service(&name).await.expect("delete");
    took
}

/// `python3 app.py` started directly, until `/healthz` answers.
fn app_alone() -> Duration {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let start = Instant::now();
    let mut child = std::process::Command::new("python3")
        .arg("app.py")
        .current_dir(webapp_dir())
        .env("PORT", port.to_string())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("python3");
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            let _ = s.write_all(b"GET /healthz HTTP/1.0\r\n\r\n");
            let mut buf = [0u8; 12];
            if s.read_exact(&mut buf).is_ok() && buf.ends_with(b"200") {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let took = start.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    took
}

fn start(c: &mut Criterion) {
    let rt = runtime();
    let s = rt.block_on(setup());
    // Unpack both images once, as the figure is for an image already unpacked.
    rt.block_on(one_start(
        &s.containers,
        webapp_spec("warm"),
        InstanceState::Healthy,
    ));
    let mut alone: Vec<Duration> = (0..10).map(|_| app_alone()).collect();
    alone.sort();
    println!(
        "webapp alone (python3 app.py until /healthz answers): median {:?}, min {:?}",
        alone[alone.len() / 2],
        alone[0]
    );
    let mut group = c.benchmark_group("container");
    group.sample_size(10);
    let mut n = 0u32;
    group.bench_function("start_to_healthy", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let containers = s.containers.clone();
            n += 1;
            let round = n;
            async move {
                let mut total = Duration::ZERO;
                for i in 0..iters {
                    total += one_start(
                        &containers,
                        webapp_spec(&format!("web-{round}-{i}")),
                        InstanceState::Healthy,
                    )
                    .await;
                }
                total
            }
        })
    });
    group.bench_function("start_to_running", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let containers = s.containers.clone();
            n += 1;
            let round = n;
            async move {
                let mut total = Duration::ZERO;
                for i in 0..iters {
                    let mut c = ContainerSpec::new("sleeper:v1");
                    c.cpu_millis = 128;
                    c.memory_mib = 64;
                    let spec = ServiceSpec::new(format!("sleep-{round}-{i}"), c, 1);
                    total += one_start(&containers, spec, InstanceState::Running).await;
                }
                total
            }
        })
    });
    group.finish();
}

criterion_group!(benches, start);
criterion_main!(benches);
