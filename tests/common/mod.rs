//! Helpers shared by the end-to-end tests.
#![allow(dead_code)] // each test crate uses its own subset

pub mod load;
pub mod repo;
pub mod sql;

use std::time::Duration;

use mvi::container::HealthCheck;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A health check fast enough for tests: every 100 ms, one answer decides.
pub fn fast_check() -> HealthCheck {
    HealthCheck {
        path: "/healthz".into(),
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(90),
        healthy_threshold: 1,
        unhealthy_threshold: 1,
    }
}

/// Builds the test app (`tests/fixtures/versioned`, see its `app.py`) as image `app:v1`.
pub async fn build_test_app(cloud: &mvi::Cloud) {
    build_app(cloud, "app", "tests/fixtures/versioned").await;
}

/// Builds the Python app in `dir` (its `app.py`, run by `python3`) as image `repository:v1`.
pub async fn build_app(cloud: &mvi::Cloud, repository: &str, dir: &str) {
    let images = cloud.images().expect("an image service");
    images
        .create_repository(repository)
        .await
        .expect("the repository");
    let app = repo::package_path(dir);
    let config = mvi::image::ImageConfig::new(["python3", "app.py"]).working_dir("/");
    mvi::image::build_from_dir(images.as_ref(), repository, &app, &config, Some("v1"))
        .await
        .expect("the app's image");
}

/// Target group `group` with [`fast_check`] and `deregistration_delay`, behind a new load
/// balancer `lb` with one HTTP listener forwarding to it; returns the listener's URL.
pub async fn front(
    cloud: &mvi::Cloud,
    lb: &str,
    group: &str,
    deregistration_delay: Duration,
) -> String {
    use mvi::lb::{ListenerSpec, LoadBalancerSpec, Protocol, TargetGroupSpec};
    let lbs = cloud.load_balancers().expect("a load balancer service");
    let mut tg = TargetGroupSpec::new(group, Protocol::Http);
    tg.health_check = fast_check();
    tg.deregistration_delay = deregistration_delay;
    lbs.create_target_group(tg).await.expect("the target group");
    let listener = ListenerSpec {
        protocol: Protocol::Http,
        port: 0,
        forward: vec![(group.into(), 1)],
    };
    let info = lbs
        .create_load_balancer(LoadBalancerSpec::new(lb, vec![listener]))
        .await
        .expect("the load balancer");
    info.urls[0].clone()
}

/// Waits (at most 30 s, else fails the test) until exactly `n` targets of target group
/// `group` are healthy.
pub async fn wait_healthy(cloud: &mvi::Cloud, group: &str, n: usize) {
    let lbs = cloud.load_balancers().expect("a load balancer service");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let healthy = lbs
            .target_health(group)
            .await
            .expect("target health")
            .iter()
            .filter(|t| t.health == mvi::lb::TargetHealth::Healthy)
            .count();
        if healthy == n {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{healthy} of {n} targets of {group} healthy"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A plain HTTP/1.1 GET of `path` on `url` (`http://host:port`): the status and the body.
pub async fn http_get(url: &str, path: &str) -> std::io::Result<(u16, String)> {
    http_request(url, "GET", path, b"").await
}

/// A plain HTTP/1.1 request with `body`: the status and the body of the answer.
pub async fn http_request(
    url: &str,
    method: &str,
    path: &str,
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    let host = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let io = async {
        let mut s = tokio::net::TcpStream::connect(&host).await?;
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        s.write_all(req.as_bytes()).await?;
        s.write_all(body).await?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await?;
        Ok::<_, std::io::Error>(out)
    };
    let out = tokio::time::timeout(Duration::from_secs(15), io)
        .await
        .map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, "the request timed out")
        })??;
    let text = String::from_utf8_lossy(&out);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((
        status,
        text.split("\r\n\r\n")
            .nth(1)
            .unwrap_or("")
            .trim()
            .to_string(),
    ))
}
