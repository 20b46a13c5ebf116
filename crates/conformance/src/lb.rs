//! Load Balancer cases.
//!
//! The control-plane cases run anywhere. Cases that send real traffic through a listener, or
//! wait for real health checks, need [`Capability::RealTraffic`](crate::Capability): they
//! start tiny HTTP and TCP backends on `127.0.0.1:0` in the test itself (raw tokio sockets,
//! so the suite needs no HTTP library) and poll `target_health` with a generous deadline.

use std::sync::Arc;
use std::time::Duration;

use mvi_core::LoadBalancers;
use mvi_core::container::HealthCheck;
use mvi_core::lb::{
    Algorithm, ListenerSpec, LoadBalancerInfo, LoadBalancerSpec, Protocol, TargetGroupSpec,
    TargetHealth,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};

use crate::{Ctx, Outcome, ensure, expect_err};

/// Every Load Balancer case, as tests against `$target`.
#[macro_export]
macro_rules! lb_cases {
    ($target:expr) => {
        $crate::__cases! { $target;
            lb_target_group_create_delete => $crate::lb::target_group_create_delete;
            lb_invalid_names_refused => $crate::lb::invalid_names_refused;
            lb_duplicate_names_refused => $crate::lb::duplicate_names_refused;
            lb_unknown_resources_not_found => $crate::lb::unknown_resources_not_found;
            lb_create_describe_list_delete => $crate::lb::create_describe_list_delete;
            lb_register_deregister_targets => $crate::lb::register_deregister_targets;
            lb_targets_told_apart_by_port => $crate::lb::targets_told_apart_by_port [TargetPorts];
            lb_bad_targets_refused => $crate::lb::bad_targets_refused;
            lb_delete_group_in_use_refused => $crate::lb::delete_group_in_use_refused;
            lb_set_weights_validation => $crate::lb::set_weights_validation;
            lb_concurrent_create_one_wins => $crate::lb::concurrent_create_one_wins;
            lb_state_survives_reopen => $crate::lb::state_survives_reopen [Reopen];
            lb_round_robin_reaches_both => $crate::lb::round_robin_reaches_both [RealTraffic];
            lb_unhealthy_target_gets_no_traffic => $crate::lb::unhealthy_target_gets_no_traffic [RealTraffic];
            lb_weights_route_to_one_group => $crate::lb::weights_route_to_one_group [RealTraffic];
            lb_deregistration_drains => $crate::lb::deregistration_drains [RealTraffic];
            lb_tcp_listener_relays => $crate::lb::tcp_listener_relays [RealTraffic];
            lb_no_target_answers_503 => $crate::lb::no_target_answers_503 [RealTraffic];
            lb_traffic_after_reopen => $crate::lb::traffic_after_reopen [Reopen, RealTraffic];
        }
    };
}

/// How long a case waits for health checks or draining before failing.
const DEADLINE: Duration = Duration::from_secs(10);

fn lbs(ctx: &Ctx) -> Result<Arc<dyn LoadBalancers>, crate::Failure> {
    Ok(ctx.cloud().load_balancers()?.clone())
}

/// A group with fast health checks, so traffic cases do not wait long.
fn group_spec(name: &str, protocol: Protocol, delay: Duration) -> TargetGroupSpec {
    let mut spec = TargetGroupSpec::new(name, protocol);
    spec.health_check = HealthCheck {
        path: "/health".into(),
        interval: Duration::from_millis(200),
        timeout: Duration::from_millis(200),
        healthy_threshold: 2,
        unhealthy_threshold: 2,
    };
    spec.deregistration_delay = delay;
    spec
}

fn listener(protocol: Protocol, forward: Vec<(String, u32)>) -> ListenerSpec {
    ListenerSpec {
        protocol,
        port: 0,
        forward,
    }
}

/// The port of the listener behind `info.urls[i]`.
fn port_of(info: &LoadBalancerInfo, i: usize) -> Result<u16, crate::Failure> {
    let url = info.urls.get(i).ok_or("no listener URL")?;
    let port = url.rsplit(':').next().ok_or("URL without port")?;
    Ok(port.trim_end_matches('/').parse()?)
}

fn host_of(url: &str) -> String {
    url.split("://")
        .nth(1)
        .unwrap_or(url)
        .trim_end_matches('/')
        .to_string()
}

/// Polls until `group` has `n` targets and all are `health`.
async fn wait_health(
    lb: &dyn LoadBalancers,
    group: &str,
    want: &[(&str, TargetHealth)],
) -> Outcome {
    let start = tokio::time::Instant::now();
    loop {
        let now = lb.target_health(group).await?;
        let ok = want
            .iter()
            .all(|(t, h)| now.iter().any(|s| s.target == *t && s.health == *h));
        if ok {
            return Ok(());
        }
        if start.elapsed() > DEADLINE {
            return Err(format!("targets of {group} never reached {want:?}: {now:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Something a test backend lets the case observe and control.
struct Gate {
    /// Names of backends that received a `/slow` request.
    entered: mpsc::UnboundedSender<String>,
    /// Permits to finish `/slow` requests.
    release: Semaphore,
}

/// Starts an HTTP/1.1 backend answering its `name` on every path, `/health` with 200 (or
/// 500 if not `healthy`), and `/slow` only once the gate releases it. Keep-alive.
async fn http_backend(
    name: &str,
    healthy: bool,
    gate: Option<Arc<Gate>>,
) -> Result<String, crate::Failure> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let name = name.to_string();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let name = name.clone();
            let gate = gate.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_string();
                    buf.drain(..end + 4);
                    let path = head.split(' ').nth(1).unwrap_or("/").to_string();
                    let (status, body) = match path.as_str() {
                        "/health" if healthy => ("200 OK", "ok".to_string()),
                        "/health" => ("500 Internal Server Error", "sick".to_string()),
                        "/slow" => {
                            if let Some(g) = &gate {
                                let _ = g.entered.send(name.clone());
                                if let Ok(p) = g.release.acquire().await {
                                    p.forget();
                                }
                            }
                            ("200 OK", name.clone())
                        }
                        _ => ("200 OK", name.clone()),
                    };
                    let resp = format!(
                        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n{body}",
                        body.len()
                    );
                    if s.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(addr)
}

/// An HTTP/1.1 target on `127.0.0.1:0` for tests outside the suite: every path answers `name`
/// with 200, except `/health`, which answers 500 unless `healthy`. Returns its `ip:port`.
pub async fn http_target(name: &str, healthy: bool) -> Result<String, crate::Failure> {
    http_backend(name, healthy, None).await
}

/// Starts a TCP echo server.
async fn echo_backend() -> Result<String, crate::Failure> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    Ok(addr)
}

/// `GET path` on `url` with `Connection: close`: the status and the body.
async fn get(url: &str, path: &str) -> Result<(u16, String), crate::Failure> {
    let host = host_of(url);
    let fut = async {
        let mut s = TcpStream::connect(&host).await?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await?;
        Ok::<_, std::io::Error>(out)
    };
    let out = tokio::time::timeout(DEADLINE, fut).await??;
    let text = String::from_utf8_lossy(&out);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {text:?}"))?;
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Ok((status, body))
}

/// Names of the backends that answered `n` requests.
async fn answers(url: &str, n: usize) -> Result<Vec<String>, crate::Failure> {
    let mut out = Vec::new();
    for _ in 0..n {
        let (status, body) = get(url, "/").await?;
        ensure!(status == 200, "status {status}: {body}");
        out.push(body);
    }
    Ok(out)
}

/// A target group is created, lists no targets, and is deleted.
pub async fn target_group_create_delete(ctx: &mut Ctx) -> Outcome {
    let lb = lbs(ctx)?;
    let g = ctx.name("tg");
    lb.create_target_group(TargetGroupSpec::new(&g, Protocol::Http))
        .await?;
    ensure!(
        lb.target_health(&g).await?.is_empty(),
        "new group has targets"
    );
    lb.delete_target_group(&g).await?;
    expect_err!(lb.target_health(&g).await, NotFound);
    Ok(())
}

/// Names must be 1–32 letters, digits and hyphens, not starting or ending with '-'.
pub async fn invalid_names_refused(ctx: &mut Ctx) -> Outcome {
    let lb = lbs(ctx)?;
    let long = "a".repeat(33);
    for bad in ["", "-ab", "ab-", "a_b", "a.b", long.as_str()] {
        expect_err!(
            lb.create_target_group(TargetGroupSpec::new(bad, Protocol::Http))
                .await,
            InvalidArgument
        );
        let g = ctx.name("tg");
        lb.create_target_group(TargetGroupSpec::new(&g, Protocol::Http))
            .await?;
        let spec = LoadBalancerSpec::new(bad, vec![listener(Protocol::Http, vec![(g.clone(), 1)])]);
        expect_err!(lb.create_load_balancer(spec).await, InvalidArgument);
        lb.delete_target_group(&g).await?;
    }
    Ok(())
}

/// A second group or load balancer with a taken name is AlreadyExists.
pub async fn duplicate_names_refused(ctx: &mut Ctx) -> Outcome {
    let lb = lbs(ctx)?;
    let g = ctx.name("tg");
    let n = ctx.name("lb");
    lb.create_target_group(TargetGroupSpec::new(&g, Protocol::Http))
        .await?;
    expect_err!(
        lb.create_target_group(TargetGroupSpec::new(&g, Protocol::Http))
            .await,
        AlreadyExists
    );
    let spec = LoadBalancerSpec::new(&n, vec![listener(Protocol::Http, vec![(g.clone(), 1)])]);
    lb.create_load_balancer(spec.clone()).await?;
    expect_err!(lb.create_load_balancer(spec).await, AlreadyExists);
    lb.delete_load_balancer(&n).await?;
    lb.delete_target_group(&g).await?;
    Ok(())
}

/// Unknown groups and load balancers are NotFound, wherever they are named.
pub async fn unknown_resources_not_found(ctx: &mut Ctx) -> Outcome {
    let lb = lbs(ctx)?;
    let g = ctx.name("nogroup");
    let n = ctx.name("nolb");
    let spec = LoadBalancerSpec::new(&n, vec![listener(Protocol::Http, vec![(g.clone(), 1)])]);
    expect_err!(lb.create_load_balancer(spec).await, NotFound);
    expect_err!(lb.describe_load_balancer(&n).await, NotFound);
    expect_err!(lb.delete_load_balancer(&n).await, NotFound);
    expect_err!(lb.delete_target_group(&g).await, NotFound);
    expect_err!(lb.target_health(&g).await, NotFound);
    expect_err!(
        lb.register_targets(&g, vec!["127.0.0.1:8080".into()]).await,
        NotFound
    );
    expect_err!(lb.set_weights(&n, 80, vec![(g.clone(), 1)]).await, NotFound);
    ensure!(
        !lb.list_load_balancers()
            .await?
            .iter()
            .any(|i| i.spec.name == n),
        "a refused load balancer is listed"
    );
    Ok(())
}

/// A load balancer is created with a listener URL, described, listed and deleted.
pub async fn create_describe_list_delete(ctx: &mut Ctx) -> Outcome {
    let lb = lbs(ctx)?;
    let g = ctx.name("tg");
    let n = ctx.name("lb");
    lb.create_target_group(TargetGroupSpec::new(&g, Protocol::Http))
        .await?;
    let spec = LoadBalancerSpec::new(&n, vec![listener(Protocol::Http, vec![(g.clone(), 1)])]);
    let info = lb.create_load_balancer(spec.clone()).await?;
    ensure!(info.spec == spec, "spec changed: {:?}", info.spec);
    ensure!(info.urls.len() == 1, "urls {:?}", info.urls);
    ensure!(port_of(&info, 0)? != 0, "no port in {:?}", info.urls);
    ensure!(!info.dns_name.is_empty(), "no DNS name");
    let described = lb.describe_load_balancer(&n).await?;
    ensure!(
        described == info,
        "describe differs: {described:?} vs {info:?}"
    );
    ensure!(
        lb.list_load_balancers()
            .await?
            .iter()
            .any(|i| i.spec.name == n),
        "not listed"
    );
    lb.delete_load_balancer(&n).await?;
    expect_err!(lb.describe_load_balancer(&n).await, NotFound);
    ensure!(
        !lb.list_load_balancers()
            .await?
            .iter()
            .any(|i| i.spec.name == n),
        "deleted load balancer listed"
    );
    lb.delete_target_group(&g).await?;
    Ok(())
}

/// Registered targets are listed (not Draining); deregistered ones leave.
pub async fn register_deregister_targets(ctx: &mut Ctx) -> Outcome {
    let lb = lbs(ctx)?;
    let g = ctx.name("tg");
    let mut spec = TargetGroupSpec::new(&g, Protocol::Http);
    spec.deregistration_delay = Duration::ZERO;
    lb.create_target_group(spec).await?;
    let (a, b) = ("127.0.0.1:1".to_string(), "127.0.0.2:2".to_string());
    lb.register_targets(&g, vec![a.clone(), b.clone()]).await?;
    // Registering again is harmless.
    lb.register_targets(&g, vec![a.clone()]).await?;
    let health = lb.target_health(&g).await?;
    ensure!(health.len() == 2, "targets {health:?}");
    ensure!(
        health.iter().all(|s| s.health != TargetHealth::Draining),
        "new target draining: {health:?}"
    );
    lb.deregister_targets(&g, vec![a.clone()]).await?;
    let start = tokio::time::Instant::now();
    loop {
        let health = lb.target_health(&g).await?;
        let a_state = health.iter().find(|s| s.target == a).map(|s| s.health);
        ensure!(
            a_state.is_none() || a_state == Some(TargetHealth::Draining),
            "deregistered target is {a_state:?}"
        );
        ensure!(
            health.iter().any(|s| s.target == b),
            "other target gone: {health:?}"
        );
        if a_state.is_none() {
            break;
        }
        ensure!(start.elapsed() < DEADLINE, "deregistered target never left");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    expect_err!(lb.deregister_targets(&g, vec![a.clone()]).await, NotFound);
    lb.delete_target_group(&g).await?;
    Ok(())
}

/// Two ports of one host are two targets, deregistered one at a time.
pub async fn targets_told_apart_by_port(ctx: &mut Ctx) -> Outcome {
    let lb = lbs(ctx)?;
    let g = ctx.name("tg");
    let mut spec = TargetGroupSpec::new(&g, Protocol::Http);
    spec.deregistration_delay = Duration::ZERO;
    lb.create_target_group(spec).await?;
    let (a, b) = ("127.0.0.1:1".to_string(), "127.0.0.1:2".to_string());
    lb.register_targets(&g, vec![a.clone(), b.clone()]).await?;
    let mut targets: Vec<_> = lb
        .target_health(&g)
        .await?
        .into_iter()
        .map(|s| s.target)
        .collect();
    targets.sort();
    ensure!(targets == [a.clone(), b.clone()], "targets {targets:?}");
    lb.deregister_targets(&g, vec![a.clone()]).await?;
    let start = tokio::time::Instant::now();
    loop {
        let health = lb.target_health(&g).await?;
        ensure!(
            health.iter().any(|s| s.target == b),
            "the other port went too: {health:?}"
        );
        if !health.iter().any(|s| s.target == a) {
            break;
        }
        ensure!(start.elapsed() < DEADLINE, "deregistered target never left");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    lb.delete_target_group(&g).await?;
    Ok(())
}

/// Targets that are not `ip:port` are InvalidArgument, and nothing is registered.
pub async fn bad_targets_refused(ctx: &mut Ctx) -> Outcome {
    let lb = lbs(ctx)?;
    let g = ctx.name("tg");
    lb.create_target_group(TargetGroupSpec::new(&g, Protocol::Http))
        .await?;
    for bad in [
        "nope",
        "127.0.0.1",
        "127.0.0.1:0",
        "127.0.0.1:99999",
        "1.2.3:80",
    ] {
        expect_err!(
            lb.register_targets(&g, vec!["127.0.0.1:8080".into(), bad.into()])
                .await,
            InvalidArgument
        );
    }
    ensure!(
        lb.target_health(&g).await?.is_empty(),
        "a refused batch registered targets"
    );
    let mut spec = TargetGroupSpec::new(ctx.name("tg2"), Protocol::Http);
    spec.health_check.path = "health".into();
    expect_err!(lb.create_target_group(spec).await, InvalidArgument);
    lb.delete_target_group(&g).await?;
    Ok(())
}

/// A group a listener forwards to cannot be deleted until the load balancer is.
pub async fn delete_group_in_use_refused(ctx: &mut Ctx) -> Outcome {
    let lb = lbs(ctx)?;
    let g = ctx.name("tg");
    let n = ctx.name("lb");
    lb.create_target_group(TargetGroupSpec::new(&g, Protocol::Http))
        .await?;
    let spec = LoadBalancerSpec::new(&n, vec![listener(Protocol::Http, vec![(g.clone(), 1)])]);
    lb.create_load_balancer(spec).await?;
    expect_err!(lb.delete_target_group(&g).await, PreconditionFailed);
    lb.target_health(&g).await?;
    lb.delete_load_balancer(&n).await?;
    lb.delete_target_group(&g).await?;
    Ok(())
}

/// Weights above 999, unknown groups, listeners or load balancers are refused; valid
/// weights are kept.
pub async fn set_weights_validation(ctx: &mut Ctx) -> Outcome {
    let lb = lbs(ctx)?;
    let (g1, g2) = (ctx.name("blue"), ctx.name("green"));
    let n = ctx.name("lb");
    lb.create_target_group(TargetGroupSpec::new(&g1, Protocol::Http))
        .await?;
    lb.create_target_group(TargetGroupSpec::new(&g2, Protocol::Http))
        .await?;
    let spec = LoadBalancerSpec::new(&n, vec![listener(Protocol::Http, vec![(g1.clone(), 1)])]);
    let info = lb.create_load_balancer(spec).await?;
    let port = port_of(&info, 0)?;
    expect_err!(
        lb.set_weights(&n, port, vec![(g1.clone(), 1000)]).await,
        InvalidArgument
    );
    expect_err!(
        lb.set_weights(&n, port, vec![(ctx.name("nogroup"), 1)])
            .await,
        NotFound
    );
    let other = if port == 1 { 2 } else { port - 1 };
    expect_err!(
        lb.set_weights(&n, other, vec![(g1.clone(), 1)]).await,
        NotFound
    );
    let forward = vec![(g1.clone(), 90), (g2.clone(), 10)];
    lb.set_weights(&n, port, forward.clone()).await?;
    let described = lb.describe_load_balancer(&n).await?;
    let now = described.spec.listeners.first().map(|l| l.forward.clone());
    ensure!(now == Some(forward), "weights not kept: {now:?}");
    // The second group is in use now too.
    expect_err!(lb.delete_target_group(&g2).await, PreconditionFailed);
    lb.delete_load_balancer(&n).await?;
    lb.delete_target_group(&g1).await?;
    lb.delete_target_group(&g2).await?;
    Ok(())
}

/// Sixteen tasks racing to create one target group: exactly one wins.
pub async fn concurrent_create_one_wins(ctx: &mut Ctx) -> Outcome {
    let lb = lbs(ctx)?;
    let g = ctx.name("race");
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let lb = lb.clone();
            let g = g.clone();
            tokio::spawn(async move {
                lb.create_target_group(TargetGroupSpec::new(g, Protocol::Http))
                    .await
            })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        match t.await? {
            Ok(()) => won += 1,
            Err(e) if e.kind() == mvi_core::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e.into()),
        }
    }
    ensure!(won == 1, "{won} creators won");
    lb.delete_target_group(&g).await?;
    Ok(())
}

/// Groups, targets, load balancers and weights survive a restart.
pub async fn state_survives_reopen(ctx: &mut Ctx) -> Outcome {
    let lb = lbs(ctx)?;
    let g = ctx.name("tg");
    let n = ctx.name("lb");
    let mut spec = TargetGroupSpec::new(&g, Protocol::Http);
    spec.algorithm = Algorithm::LeastOutstandingRequests;
    lb.create_target_group(spec.clone()).await?;
    lb.register_targets(&g, vec!["127.0.0.1:3".into()]).await?;
    let lspec = LoadBalancerSpec::new(&n, vec![listener(Protocol::Http, vec![(g.clone(), 1)])]);
    let info = lb.create_load_balancer(lspec).await?;
    lb.set_weights(&n, port_of(&info, 0)?, vec![(g.clone(), 7)])
        .await?;
    drop(lb);
    ctx.reopen().await?;
    let lb = lbs(ctx)?;
    let again = lb.describe_load_balancer(&n).await?;
    let forward = again.spec.listeners.first().map(|l| l.forward.clone());
    ensure!(
        forward == Some(vec![(g.clone(), 7)]),
        "weights lost: {forward:?}"
    );
    ensure!(
        again.urls.len() == 1,
        "listener not restarted: {:?}",
        again.urls
    );
    let targets = lb.target_health(&g).await?;
    ensure!(
        targets.len() == 1 && targets.iter().all(|t| t.target == "127.0.0.1:3"),
        "targets lost: {targets:?}"
    );
    expect_err!(lb.create_target_group(spec).await, AlreadyExists);
    lb.delete_load_balancer(&n).await?;
    lb.delete_target_group(&g).await?;
    Ok(())
}

/// Sets up one HTTP group with `backends`, a load balancer in front, and waits for health.
async fn http_setup(
    ctx: &Ctx,
    backends: &[(String, TargetHealth)],
    delay: Duration,
) -> Result<(String, String, LoadBalancerInfo), crate::Failure> {
    let lb = lbs(ctx)?;
    let g = ctx.name("tg");
    let n = ctx.name("lb");
    lb.create_target_group(group_spec(&g, Protocol::Http, delay))
        .await?;
    lb.register_targets(&g, backends.iter().map(|(a, _)| a.clone()).collect())
        .await?;
    let spec = LoadBalancerSpec::new(&n, vec![listener(Protocol::Http, vec![(g.clone(), 1)])]);
    let info = lb.create_load_balancer(spec).await?;
    let want: Vec<(&str, TargetHealth)> = backends.iter().map(|(a, h)| (a.as_str(), *h)).collect();
    wait_health(lb.as_ref(), &g, &want).await?;
    Ok((g, n, info))
}

async fn teardown(ctx: &Ctx, g: &str, n: &str) -> Outcome {
    let lb = lbs(ctx)?;
    lb.delete_load_balancer(n).await?;
    lb.delete_target_group(g).await?;
    Ok(())
}

/// Requests through the listener reach both healthy backends.
pub async fn round_robin_reaches_both(ctx: &mut Ctx) -> Outcome {
    let a = http_backend("alpha", true, None).await?;
    let b = http_backend("beta", true, None).await?;
    let (g, n, info) = http_setup(
        ctx,
        &[(a, TargetHealth::Healthy), (b, TargetHealth::Healthy)],
        Duration::ZERO,
    )
    .await?;
    let url = info.urls.first().ok_or("no url")?.clone();
    let seen = answers(&url, 10).await?;
    ensure!(
        seen.iter().any(|s| s == "alpha"),
        "alpha never answered: {seen:?}"
    );
    ensure!(
        seen.iter().any(|s| s == "beta"),
        "beta never answered: {seen:?}"
    );
    teardown(ctx, &g, &n).await
}

/// A backend failing its health check is Unhealthy and gets no traffic.
pub async fn unhealthy_target_gets_no_traffic(ctx: &mut Ctx) -> Outcome {
    let a = http_backend("alpha", true, None).await?;
    let b = http_backend("beta", false, None).await?;
    let (g, n, info) = http_setup(
        ctx,
        &[
            (a, TargetHealth::Healthy),
            (b.clone(), TargetHealth::Unhealthy),
        ],
        Duration::ZERO,
    )
    .await?;
    let reason = lbs(ctx)?
        .target_health(&g)
        .await?
        .into_iter()
        .find(|s| s.target == b)
        .map(|s| s.reason)
        .unwrap_or_default();
    ensure!(!reason.is_empty(), "an unhealthy target without a reason");
    let url = info.urls.first().ok_or("no url")?.clone();
    let seen = answers(&url, 10).await?;
    ensure!(
        seen.iter().all(|s| s == "alpha"),
        "unhealthy beta answered: {seen:?}"
    );
    teardown(ctx, &g, &n).await
}

/// Weights 100/0 send everything to one group; swapping them sends everything to the other.
pub async fn weights_route_to_one_group(ctx: &mut Ctx) -> Outcome {
    let lb = lbs(ctx)?;
    let a = http_backend("blue", true, None).await?;
    let b = http_backend("green", true, None).await?;
    let (g1, g2) = (ctx.name("blue"), ctx.name("green"));
    let n = ctx.name("lb");
    for (g, t) in [(&g1, &a), (&g2, &b)] {
        lb.create_target_group(group_spec(g, Protocol::Http, Duration::ZERO))
            .await?;
        lb.register_targets(g, vec![t.clone()]).await?;
    }
    let spec = LoadBalancerSpec::new(
        &n,
        vec![listener(
            Protocol::Http,
            vec![(g1.clone(), 100), (g2.clone(), 0)],
        )],
    );
    let info = lb.create_load_balancer(spec).await?;
    wait_health(lb.as_ref(), &g1, &[(a.as_str(), TargetHealth::Healthy)]).await?;
    wait_health(lb.as_ref(), &g2, &[(b.as_str(), TargetHealth::Healthy)]).await?;
    let url = info.urls.first().ok_or("no url")?.clone();
    let seen = answers(&url, 8).await?;
    ensure!(
        seen.iter().all(|s| s == "blue"),
        "weight 0 got traffic: {seen:?}"
    );
    lb.set_weights(
        &n,
        port_of(&info, 0)?,
        vec![(g1.clone(), 0), (g2.clone(), 100)],
    )
    .await?;
    let seen = answers(&url, 8).await?;
    ensure!(
        seen.iter().all(|s| s == "green"),
        "old weights still used: {seen:?}"
    );
    lb.delete_load_balancer(&n).await?;
    lb.delete_target_group(&g1).await?;
    lb.delete_target_group(&g2).await?;
    Ok(())
}

/// A deregistered target gets no new requests, finishes its in-flight one, then leaves.
pub async fn deregistration_drains(ctx: &mut Ctx) -> Outcome {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let gate = Arc::new(Gate {
        entered: tx,
        release: Semaphore::new(0),
    });
    let a = http_backend("alpha", true, Some(gate.clone())).await?;
    let b = http_backend("beta", true, Some(gate.clone())).await?;
    let (g, n, info) = http_setup(
        ctx,
        &[
            (a.clone(), TargetHealth::Healthy),
            (b.clone(), TargetHealth::Healthy),
        ],
        Duration::from_secs(60),
    )
    .await?;
    let url = info.urls.first().ok_or("no url")?.clone();
    let slow = {
        let url = url.clone();
        tokio::spawn(async move { get(&url, "/slow").await.map_err(|e| e.to_string()) })
    };
    let busy = tokio::time::timeout(DEADLINE, rx.recv())
        .await?
        .ok_or("no backend got the slow request")?;
    let (busy_addr, other) = if busy == "alpha" {
        (a, "beta")
    } else {
        (b, "alpha")
    };
    let lb = lbs(ctx)?;
    lb.deregister_targets(&g, vec![busy_addr.clone()]).await?;
    let state = lb.target_health(&g).await?;
    ensure!(
        state
            .iter()
            .any(|s| s.target == busy_addr && s.health == TargetHealth::Draining),
        "busy target not draining: {state:?}"
    );
    let seen = answers(&url, 6).await?;
    ensure!(
        seen.iter().all(|s| s == other),
        "draining target got new requests: {seen:?}"
    );
    gate.release.add_permits(1);
    let (status, body) = slow.await??;
    ensure!(
        status == 200 && body == busy,
        "in-flight request cut: {status} {body}"
    );
    let start = tokio::time::Instant::now();
    while lb
        .target_health(&g)
        .await?
        .iter()
        .any(|s| s.target == busy_addr)
    {
        ensure!(start.elapsed() < DEADLINE, "drained target never left");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    teardown(ctx, &g, &n).await
}

/// A TCP listener relays bytes both ways to a healthy target.
pub async fn tcp_listener_relays(ctx: &mut Ctx) -> Outcome {
    let lb = lbs(ctx)?;
    let echo = echo_backend().await?;
    let g = ctx.name("tcp");
    let n = ctx.name("nlb");
    lb.create_target_group(group_spec(&g, Protocol::Tcp, Duration::ZERO))
        .await?;
    lb.register_targets(&g, vec![echo.clone()]).await?;
    let spec = LoadBalancerSpec::new(&n, vec![listener(Protocol::Tcp, vec![(g.clone(), 1)])]);
    let info = lb.create_load_balancer(spec).await?;
    wait_health(lb.as_ref(), &g, &[(echo.as_str(), TargetHealth::Healthy)]).await?;
    let host = host_of(info.urls.first().ok_or("no url")?);
    let mut s = TcpStream::connect(&host).await?;
    let msg = b"hello through the load balancer";
    s.write_all(msg).await?;
    let mut back = vec![0u8; msg.len()];
    tokio::time::timeout(DEADLINE, s.read_exact(&mut back)).await??;
    ensure!(
        back == msg,
        "echo differs: {:?}",
        String::from_utf8_lossy(&back)
    );
    drop(s);
    // An HTTP group cannot serve a TCP listener.
    let h = ctx.name("http");
    lb.create_target_group(TargetGroupSpec::new(&h, Protocol::Http))
        .await?;
    expect_err!(
        lb.set_weights(&n, port_of(&info, 0)?, vec![(h.clone(), 1)])
            .await,
        InvalidArgument
    );
    lb.delete_target_group(&h).await?;
    teardown(ctx, &g, &n).await
}

/// With no target to send to, the listener answers 503 with a body saying why.
pub async fn no_target_answers_503(ctx: &mut Ctx) -> Outcome {
    let (g, n, info) = http_setup(ctx, &[], Duration::ZERO).await?;
    let (status, body) = get(info.urls.first().ok_or("no url")?, "/").await?;
    ensure!(status == 503, "status {status}");
    ensure!(
        body.contains(&g),
        "503 body does not name the group: {body:?}"
    );
    teardown(ctx, &g, &n).await
}

/// After a restart the listener serves again (its URL may have changed).
pub async fn traffic_after_reopen(ctx: &mut Ctx) -> Outcome {
    let a = http_backend("alpha", true, None).await?;
    let (g, n, _) = http_setup(ctx, &[(a.clone(), TargetHealth::Healthy)], Duration::ZERO).await?;
    ctx.reopen().await?;
    let lb = lbs(ctx)?;
    wait_health(lb.as_ref(), &g, &[(a.as_str(), TargetHealth::Healthy)]).await?;
    let info = lb.describe_load_balancer(&n).await?;
    let seen = answers(info.urls.first().ok_or("no url")?, 3).await?;
    ensure!(seen.iter().all(|s| s == "alpha"), "answers {seen:?}");
    teardown(ctx, &g, &n).await
}
