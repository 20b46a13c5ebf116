//! Health checks and deregistration draining.
//!
//! One task per target group checks every target each interval (HTTP GET of the path for
//! HTTP groups, 2xx passes; a TCP connect for TCP groups), all targets at once, so a slow
//! target does not delay the others. Consecutive results move a target to Healthy or
//! Unhealthy by the group's thresholds. The task holds only weak references: it stops when
//! the group is deleted or the service dropped.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::Uri;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use mvi_core::lb::{Protocol, TargetHealth};
use tokio::net::TcpStream;

use super::Inner;
use super::balance::{GroupRt, TargetRt};

/// The client that sends health checks (no pooling: a check should see a fresh connect).
pub(crate) type CheckClient = Client<HttpConnector, Empty<Bytes>>;

/// The reason reported for a target its security groups shut out.
pub(crate) const BLOCKED: &str = "blocked by security groups";

/// Starts the checker of `group`.
pub(crate) fn spawn_checker(inner: Weak<Inner>, group: Weak<GroupRt>) {
    tokio::spawn(async move {
        loop {
            let Some(g) = group.upgrade() else { break };
            let client = {
                // Hold the service only briefly, never across a check: dropping the cloud
                // must release it at once.
                let Some(inner) = inner.upgrade() else { break };
                inner.update_blocked(&g);
                inner.check_client.clone()
            };
            let targets: Vec<Arc<TargetRt>> = g
                .targets()
                .into_iter()
                .filter(|t| !t.draining.load(Ordering::Acquire))
                .collect();
            let checks = targets.iter().map(|t| check(&g, t, &client));
            futures::future::join_all(checks).await;
            let interval = g.spec.health_check.interval;
            drop(g);
            tokio::time::sleep(interval).await;
        }
    });
}

async fn check(group: &GroupRt, target: &TargetRt, client: &CheckClient) {
    let hc = &group.spec.health_check;
    if target.blocked.load(Ordering::Acquire) {
        target.passes.store(0, Ordering::Release);
        target.failures.store(0, Ordering::Release);
        target.set_health(TargetHealth::Unhealthy, BLOCKED);
        return;
    }
    let result = match group.spec.protocol {
        Protocol::Http => {
            let uri = format!("http://{}{}", target.addr, hc.path);
            match uri.parse::<Uri>() {
                Err(e) => Err(format!("bad health check URI {uri}: {e}")),
                Ok(uri) => match tokio::time::timeout(hc.timeout, client.get(uri)).await {
                    Err(_) => Err(format!("health check timed out after {:?}", hc.timeout)),
                    Ok(Err(e)) => Err(format!("health check failed: {e}")),
                    Ok(Ok(resp)) if resp.status().is_success() => {
                        Ok(format!("HTTP {} from {}", resp.status().as_u16(), hc.path))
                    }
                    Ok(Ok(resp)) => Err(format!(
                        "HTTP {} from {} (2xx expected)",
                        resp.status().as_u16(),
                        hc.path
                    )),
                },
            }
        }
        Protocol::Tcp => {
            match tokio::time::timeout(hc.timeout, TcpStream::connect(target.sock)).await {
                Err(_) => Err(format!("TCP connect timed out after {:?}", hc.timeout)),
                Ok(Err(e)) => Err(format!("TCP connect failed: {e}")),
                Ok(Ok(_)) => Ok("TCP connect succeeded".into()),
            }
        }
    };
    let current = target.health();
    match result {
        Ok(why) => {
            target.failures.store(0, Ordering::Release);
            let passes = target
                .passes
                .fetch_add(1, Ordering::AcqRel)
                .saturating_add(1);
            let next = if current == TargetHealth::Healthy || passes >= hc.healthy_threshold {
                TargetHealth::Healthy
            } else {
                current
            };
            target.set_health(next, why);
        }
        Err(why) => {
            target.passes.store(0, Ordering::Release);
            let failures = target
                .failures
                .fetch_add(1, Ordering::AcqRel)
                .saturating_add(1);
            let next = if current == TargetHealth::Unhealthy || failures >= hc.unhealthy_threshold {
                TargetHealth::Unhealthy
            } else {
                current
            };
            target.set_health(next, why);
        }
    }
}

/// Removes `target` from `group` once its in-flight requests are done or `delay` has passed,
/// unless it was registered again meanwhile.
pub(crate) fn spawn_drain(group: Weak<GroupRt>, target: Arc<TargetRt>, delay: Duration) {
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + delay;
        loop {
            if !target.draining.load(Ordering::Acquire) {
                return;
            }
            let Some(g) = group.upgrade() else { return };
            {
                // Under the write lock no request can be picking the target (picks count
                // themselves under the read lock), so "nothing in flight" stays true.
                let mut targets = g.targets.write().unwrap_or_else(|e| e.into_inner());
                if target.in_flight.load(Ordering::Acquire) == 0
                    || tokio::time::Instant::now() >= deadline
                {
                    targets.retain(|t| !Arc::ptr_eq(t, &target));
                    return;
                }
            }
            drop(g);
            // Polling a counter every few milliseconds is simpler than waking on every
            // request end, and draining is rare.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
}
