//! Load balancers: a real HTTP/1.1 reverse proxy (or TCP relay) per listener on a loopback
//! port, forwarding by weight to target groups with health checks.
//!
//! Definitions (target groups, their registered targets, load balancers with their listeners,
//! weights and actual ports, and the security groups recorded for targets) are one small JSON
//! document ([`JsonState`]): control-plane changes are rare and must survive a restart, so a
//! reopened cloud starts its listeners again, on the same ports when they are free.
//! Everything else — health, in-flight counts, draining — is run-time state rebuilt on open
//! (targets start `Initial` again, as after an ELB restart).
//!
//! Listeners, health checkers and the telemetry flushers are tokio tasks holding only weak
//! references (or a stop channel whose sender the service owns): dropping the service or
//! deleting the load balancer stops them and frees the ports. A flusher hands each second's
//! formatting and storing to the blocking pool, so listeners never wait for telemetry.
//!
//! Routing follows ELBv2: healthy targets get traffic; when a group has none it *fails open*
//! to every target that is not draining (see `lb/balance.rs`); a group with no such target
//! answers 503. A deregistered target drains: no new requests, in-flight ones finish, and it
//! disappears when they are done or the deregistration delay has passed.

mod balance;
mod health;
mod proxy;
mod telemetry;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use mvi_core::lb::{
    LoadBalancerInfo, LoadBalancerSpec, LoadBalancers, Protocol, TargetGroupSpec, TargetHealth,
    TargetStatus, validate_name,
};
use mvi_core::metric::MetricId;
use mvi_core::{ErrorKind, Logs, Metrics, Op, Result, Service};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::storage::{Ctx, JsonState};
use crate::vpc::LocalNetworks;

use balance::{GroupRt, TargetRt, Weighted};
use health::CheckClient;
use proxy::ListenerRt;
use telemetry::Telemetry;

fn op(name: &'static str) -> Op {
    Op::new(Service::LoadBalancer, name)
}

/// Largest listener weight (as ELBv2).
const MAX_WEIGHT: u32 = 999;
/// Longest deregistration delay (as ELBv2).
const MAX_DEREGISTRATION_DELAY: Duration = Duration::from_secs(3600);
/// How often batched metrics and access lines are sent.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    groups: BTreeMap<String, GroupDef>,
    lbs: BTreeMap<String, LbDef>,
    /// Security groups recorded for targets (`ip:port` → group ids).
    target_security_groups: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct GroupDef {
    spec: TargetGroupSpec,
    targets: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LbDef {
    spec: LoadBalancerSpec,
    /// The port each listener actually listens on (a picked one for port 0).
    ports: Vec<u16>,
}

/// The local Load Balancer service.
pub struct LocalLoadBalancers {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for LocalLoadBalancers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalLoadBalancers")
            .field("dir", &self.inner.ctx.dir)
            .finish_non_exhaustive()
    }
}

/// What the service and its tasks share.
pub(crate) struct Inner {
    ctx: Ctx,
    state: JsonState<State>,
    networks: Arc<LocalNetworks>,
    metrics: Arc<dyn Metrics>,
    logs: Arc<dyn Logs>,
    groups: RwLock<HashMap<String, Arc<GroupRt>>>,
    lbs: Mutex<HashMap<String, LbRt>>,
    pub(crate) check_client: CheckClient,
    /// Serialises control-plane changes that bind ports and start tasks, so the JSON state
    /// and the running listeners never disagree.
    control: tokio::sync::Mutex<()>,
}

/// A running load balancer.
struct LbRt {
    listeners: Vec<Arc<ListenerRt>>,
    urls: Vec<String>,
    telemetry: Arc<Telemetry>,
    /// Dropping it stops the listeners and their connections.
    _stop: watch::Sender<()>,
}

impl LocalLoadBalancers {
    /// Opens the service: loads the definitions and starts every listener and health checker.
    pub async fn open(
        ctx: Ctx,
        networks: Arc<LocalNetworks>,
        metrics: Arc<dyn Metrics>,
        logs: Arc<dyn Logs>,
    ) -> Result<Self> {
        let state: JsonState<State> = JsonState::open(&ctx, op("open"), "lb.json")?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let check_client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(connector);
        let inner = Arc::new(Inner {
            ctx,
            state,
            networks,
            metrics,
            logs,
            groups: RwLock::new(HashMap::new()),
            lbs: Mutex::new(HashMap::new()),
            check_client,
            control: tokio::sync::Mutex::new(()),
        });
        let snapshot = inner.state.lock().clone();
        for def in snapshot.groups.values() {
            let g = inner.start_group(def.spec.clone());
            for t in &def.targets {
                if let Ok(t) = parse_target(op("open"), t) {
                    g.targets.write().unwrap_or_else(|e| e.into_inner()).push(t);
                }
            }
        }
        for (name, def) in &snapshot.lbs {
            let mut listeners = Vec::new();
            for (i, l) in def.spec.listeners.iter().enumerate() {
                let old = def.ports.get(i).copied().unwrap_or(l.port);
                // The same port if it is still free, else a new one (the URL then changes).
                let bound = match TcpListener::bind(("127.0.0.1", old)).await {
                    Ok(b) => b,
                    Err(_) => bind(op("open"), name, 0).await?,
                };
                listeners.push(bound);
            }
            let ports = inner.start_lb(&def.spec, listeners)?;
            if ports != def.ports {
                inner.state.mutate(op("open"), |s| {
                    if let Some(d) = s.lbs.get_mut(name) {
                        d.ports = ports;
                    }
                    Ok(())
                })?;
            }
        }
        Ok(LocalLoadBalancers { inner })
    }

    /// Records the security groups of `target` (`ip:port`), as the container service does
    /// for its replicas. A target with groups gets traffic only if one of them admits TCP on
    /// its port from one of the load balancer's groups; otherwise it is reported Unhealthy,
    /// "blocked by security groups". An empty list forgets the record.
    pub fn set_target_security_groups(&self, target: &str, groups: Vec<String>) -> Result<()> {
        let op = op("set_target_security_groups");
        parse_target(op, target)?;
        self.inner.state.mutate(op, |s| {
            if groups.is_empty() {
                s.target_security_groups.remove(target);
            } else {
                s.target_security_groups.insert(target.to_owned(), groups);
            }
            Ok(())
        })?;
        let groups: Vec<Arc<GroupRt>> = self.inner.groups_read().values().cloned().collect();
        for g in groups {
            self.inner.update_blocked(&g);
        }
        Ok(())
    }
}

impl Inner {
    fn groups_read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<GroupRt>>> {
        self.groups.read().unwrap_or_else(|e| e.into_inner())
    }

    fn lbs_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, LbRt>> {
        self.lbs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn group(&self, op: Op, name: &str) -> Result<Arc<GroupRt>> {
        self.groups_read()
            .get(name)
            .cloned()
            .ok_or_else(|| op.not_found(name, "no such target group"))
    }

    /// Makes the run-time group and starts its health checker.
    fn start_group(self: &Arc<Self>, spec: TargetGroupSpec) -> Arc<GroupRt> {
        let name = spec.name.clone();
        let g = Arc::new(GroupRt::new(spec));
        self.groups
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name, g.clone());
        health::spawn_checker(Arc::downgrade(self), Arc::downgrade(&g));
        g
    }

    /// Marks the targets of `g` whose security groups shut out every load balancer that
    /// forwards to `g`. With no load balancer using the group, nothing is blocked yet.
    pub(crate) fn update_blocked(&self, g: &GroupRt) {
        let (lb_groups, records) = {
            let state = self.state.lock();
            let mut lb_groups: Option<Vec<String>> = None;
            for lb in state.lbs.values() {
                let uses = lb
                    .spec
                    .listeners
                    .iter()
                    .any(|l| l.forward.iter().any(|(n, _)| *n == g.spec.name));
                if uses {
                    lb_groups
                        .get_or_insert_with(Vec::new)
                        .extend(lb.spec.security_groups.iter().cloned());
                }
            }
            (lb_groups, state.target_security_groups.clone())
        };
        for t in g.targets() {
            let blocked = match (&lb_groups, records.get(&t.addr)) {
                (Some(from), Some(to)) => !to
                    .iter()
                    .any(|to| self.networks.allows(from, None, to, t.sock.port())),
                _ => false,
            };
            let was = t.blocked.swap(blocked, std::sync::atomic::Ordering::AcqRel);
            if blocked && !was {
                t.set_health(TargetHealth::Unhealthy, health::BLOCKED);
            } else if !blocked && was {
                t.set_health(
                    TargetHealth::Initial,
                    "security groups admit the load balancer",
                );
            }
        }
    }

    /// Starts the listeners of a load balancer on bound sockets; returns their ports.
    fn start_lb(
        self: &Arc<Self>,
        spec: &LoadBalancerSpec,
        bound: Vec<TcpListener>,
    ) -> Result<Vec<u16>> {
        let op = op("create_load_balancer");
        let (stop, stop_rx) = watch::channel(());
        let telemetry = Arc::new(Telemetry::default());
        let mut listeners = Vec::new();
        let mut urls = Vec::new();
        let mut ports = Vec::new();
        for (l, socket) in spec.listeners.iter().zip(bound) {
            let port = socket
                .local_addr()
                .map_err(|e| crate::storage::io_error(op, std::path::Path::new("listener"), e))?
                .port();
            let forward = self.weighted(op, &l.forward, &telemetry)?;
            let rt = Arc::new(ListenerRt {
                lb: spec.name.clone(),
                port,
                protocol: l.protocol,
                forward: RwLock::new(Arc::new(forward)),
                telemetry: telemetry.clone(),
                sim: self.ctx.sim.clone(),
            });
            proxy::spawn(socket, rt.clone(), stop_rx.clone());
            let scheme = match l.protocol {
                Protocol::Http => "http",
                Protocol::Tcp => "tcp",
            };
            urls.push(format!("{scheme}://127.0.0.1:{port}"));
            ports.push(port);
            listeners.push(rt);
        }
        spawn_flusher(
            Arc::downgrade(self),
            Arc::downgrade(&telemetry),
            spec.name.clone(),
            ports.clone(),
        );
        self.lbs_lock().insert(
            spec.name.clone(),
            LbRt {
                listeners,
                urls,
                telemetry,
                _stop: stop,
            },
        );
        Ok(ports)
    }

    fn weighted(
        &self,
        op: Op,
        forward: &[(String, u32)],
        telemetry: &Telemetry,
    ) -> Result<Weighted> {
        let mut entries = Vec::new();
        for (name, w) in forward {
            entries.push((self.group(op, name)?, *w, telemetry.group(name)));
        }
        Ok(Weighted::new(entries))
    }

    fn info(&self, def: &LbDef) -> LoadBalancerInfo {
        let urls = self
            .lbs_lock()
            .get(&def.spec.name)
            .map(|r| r.urls.clone())
            .unwrap_or_default();
        LoadBalancerInfo {
            spec: def.spec.clone(),
            dns_name: "127.0.0.1".into(),
            urls,
        }
    }

    /// Checks listeners against the groups: known groups, matching protocols, weights.
    fn validate_forward(
        &self,
        op: Op,
        lb: &str,
        protocol: Protocol,
        forward: &[(String, u32)],
    ) -> Result<()> {
        if forward.is_empty() {
            return Err(op.invalid(lb, "a listener must forward to at least one target group"));
        }
        let state = self.state.lock();
        let mut seen = BTreeSet::new();
        for (name, w) in forward {
            if *w > MAX_WEIGHT {
                return Err(op.invalid(name, format!("weight {w} is above {MAX_WEIGHT}")));
            }
            if !seen.insert(name) {
                return Err(op.invalid(name, "the target group is listed twice"));
            }
            let g = state
                .groups
                .get(name)
                .ok_or_else(|| op.not_found(name, "no such target group"))?;
            if g.spec.protocol != protocol {
                return Err(op.invalid(
                    name,
                    format!(
                        "the target group's protocol is {:?}, the listener's {protocol:?}",
                        g.spec.protocol
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Sends a load balancer's batched telemetry every second until it or the service is gone.
fn spawn_flusher(inner: Weak<Inner>, telemetry: Weak<Telemetry>, lb: String, ports: Vec<u16>) {
    tokio::spawn(async move {
        if let Some(inner) = inner.upgrade() {
            let logs = inner.logs.clone();
            drop(inner);
            let group = telemetry::log_group(&lb);
            for port in &ports {
                telemetry::ensure_log_stream(logs.as_ref(), &group, &telemetry::log_stream(*port))
                    .await;
            }
        }
        loop {
            tokio::time::sleep(FLUSH_EVERY).await;
            let (Some(inner), Some(t)) = (inner.upgrade(), telemetry.upgrade()) else {
                break;
            };
            let (metrics, logs, now) = (
                inner.metrics.clone(),
                inner.logs.clone(),
                inner.ctx.sim.now(),
            );
            drop(inner);
            // Formatting and storing a second's access lines takes milliseconds at full load:
            // on a blocking thread, so the listeners' threads never wait for it (a current-
            // thread runtime would otherwise stall every connection meanwhile: that was the
            // load balancer's p99).
            let (handle, name) = (tokio::runtime::Handle::current(), lb.clone());
            let flushed = tokio::task::spawn_blocking(move || {
                handle.block_on(t.flush(&name, now, metrics.as_ref(), logs.as_ref()));
            })
            .await;
            match flushed {
                Ok(()) => {}
                // The runtime is shutting down.
                Err(e) if e.is_cancelled() => break,
                Err(e) => tracing::warn!("load balancer {lb}: telemetry flush failed: {e}"),
            }
        }
    });
}

/// Parses a target `ip:port` (port not 0).
fn parse_target(op: Op, target: &str) -> Result<Arc<TargetRt>> {
    let sock: SocketAddr = target
        .parse()
        .map_err(|_| op.invalid(target, "targets must be IP:port, such as 127.0.0.1:8080"))?;
    if sock.port() == 0 {
        return Err(op.invalid(target, "the target's port must not be 0"));
    }
    let authority = target
        .parse()
        .map_err(|_| op.invalid(target, "the target is not a valid URI authority"))?;
    Ok(Arc::new(TargetRt::new(target.to_owned(), sock, authority)))
}

async fn bind(op: Op, lb: &str, port: u16) -> Result<TcpListener> {
    TcpListener::bind(("127.0.0.1", port)).await.map_err(|e| {
        let kind = if e.kind() == std::io::ErrorKind::AddrInUse {
            ErrorKind::Unavailable
        } else {
            ErrorKind::Internal
        };
        op.err(kind, lb, format!("cannot listen on 127.0.0.1:{port}: {e}"))
            .with_source(e)
    })
}

#[async_trait]
impl LoadBalancers for LocalLoadBalancers {
    async fn metric(&self, lb: &str, group: Option<&str>, name: &str) -> Result<MetricId> {
        let op = op("metric");
        validate_name(op, "load balancer", lb)?;
        let mut id = MetricId::new(telemetry::NAMESPACE, name).dimension("LoadBalancer", lb);
        if let Some(g) = group {
            validate_name(op, "target group", g)?;
            id = id.dimension("TargetGroup", g);
        }
        Ok(id)
    }

    async fn create_target_group(&self, spec: TargetGroupSpec) -> Result<()> {
        let op = op("create_target_group");
        validate_name(op, "target group", &spec.name)?;
        let hc = &spec.health_check;
        let name = spec.name.as_str();
        if !hc.path.starts_with('/') || hc.path.len() > 1024 {
            return Err(op.invalid(
                name,
                "the health check path must start with '/' (at most 1024 characters)",
            ));
        }
        if hc.interval.is_zero() || hc.timeout.is_zero() || hc.timeout > hc.interval {
            return Err(op.invalid(name, "the health check interval and timeout must be above 0, the timeout at most the interval"));
        }
        if !(1..=10).contains(&hc.healthy_threshold) || !(1..=10).contains(&hc.unhealthy_threshold)
        {
            return Err(op.invalid(name, "health check thresholds must be 1 to 10"));
        }
        if spec.deregistration_delay > MAX_DEREGISTRATION_DELAY {
            return Err(op.invalid(name, "the deregistration delay is at most 3600 s"));
        }
        if let Some(vpc) = &spec.vpc
            && !mvi_core::Networks::list_vpcs(self.inner.networks.as_ref())
                .await?
                .iter()
                .any(|v| v.id == *vpc)
        {
            return Err(op.not_found(vpc, "no such VPC"));
        }
        let _control = self.inner.control.lock().await;
        self.inner.state.mutate(op, |s| {
            if s.groups.contains_key(name) {
                return Err(op.already_exists(name, "the target group exists"));
            }
            s.groups.insert(
                name.to_owned(),
                GroupDef {
                    spec: spec.clone(),
                    targets: Vec::new(),
                },
            );
            Ok(())
        })?;
        self.inner.start_group(spec);
        Ok(())
    }

    async fn delete_target_group(&self, name: &str) -> Result<()> {
        let op = op("delete_target_group");
        let _control = self.inner.control.lock().await;
        self.inner.state.mutate(op, |s| {
            if !s.groups.contains_key(name) {
                return Err(op.not_found(name, "no such target group"));
            }
            if let Some(lb) = s.lbs.values().find(|lb| {
                lb.spec
                    .listeners
                    .iter()
                    .any(|l| l.forward.iter().any(|(g, _)| g == name))
            }) {
                return Err(op.precondition(
                    name,
                    format!("load balancer {} forwards to it", lb.spec.name),
                ));
            }
            s.groups.remove(name);
            Ok(())
        })?;
        self.inner
            .groups
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        Ok(())
    }

    async fn register_targets(&self, group: &str, targets: Vec<String>) -> Result<()> {
        let op = op("register_targets");
        let parsed = targets
            .iter()
            .map(|t| parse_target(op, t))
            .collect::<Result<Vec<_>>>()?;
        let _control = self.inner.control.lock().await;
        let g = self.inner.group(op, group)?;
        self.inner.state.mutate(op, |s| {
            let def = s
                .groups
                .get_mut(group)
                .ok_or_else(|| op.not_found(group, "no such target group"))?;
            for t in &targets {
                if !def.targets.contains(t) {
                    def.targets.push(t.clone());
                }
            }
            Ok(())
        })?;
        {
            let mut live = g.targets.write().unwrap_or_else(|e| e.into_inner());
            for t in parsed {
                match live.iter().find(|l| l.addr == t.addr) {
                    // Registering a draining target again keeps it.
                    Some(l) => l
                        .draining
                        .store(false, std::sync::atomic::Ordering::Release),
                    None => live.push(t),
                }
            }
        }
        self.inner.update_blocked(&g);
        Ok(())
    }

    async fn deregister_targets(&self, group: &str, targets: Vec<String>) -> Result<()> {
        let op = op("deregister_targets");
        let _control = self.inner.control.lock().await;
        let g = self.inner.group(op, group)?;
        self.inner.state.mutate(op, |s| {
            let def = s
                .groups
                .get_mut(group)
                .ok_or_else(|| op.not_found(group, "no such target group"))?;
            for t in &targets {
                if !def.targets.contains(t) {
                    return Err(op.not_found(t, format!("not a target of {group}")));
                }
            }
            def.targets.retain(|t| !targets.contains(t));
            Ok(())
        })?;
        for t in g.targets() {
            if targets.contains(&t.addr) {
                t.draining.store(true, std::sync::atomic::Ordering::Release);
                health::spawn_drain(Arc::downgrade(&g), t, g.spec.deregistration_delay);
            }
        }
        Ok(())
    }

    async fn target_health(&self, group: &str) -> Result<Vec<TargetStatus>> {
        let g = self.inner.group(op("target_health"), group)?;
        Ok(g.targets()
            .iter()
            .map(|t| TargetStatus {
                target: t.addr.clone(),
                health: t.health(),
                reason: t.reason(),
            })
            .collect())
    }

    async fn create_load_balancer(&self, spec: LoadBalancerSpec) -> Result<LoadBalancerInfo> {
        let op = op("create_load_balancer");
        let name = spec.name.as_str();
        validate_name(op, "load balancer", name)?;
        if spec.listeners.is_empty() {
            return Err(op.invalid(name, "a load balancer needs at least one listener"));
        }
        let mut ports = BTreeSet::new();
        for l in &spec.listeners {
            if l.port != 0 && !ports.insert(l.port) {
                return Err(op.invalid(name, format!("two listeners on port {}", l.port)));
            }
            self.inner
                .validate_forward(op, name, l.protocol, &l.forward)?;
        }
        for sg in &spec.security_groups {
            if self.inner.networks.security_group(sg).is_none() {
                return Err(op.not_found(sg, "no such security group"));
            }
        }
        for sn in &spec.subnets {
            if self.inner.networks.subnet(sn).is_none() {
                return Err(op.not_found(sn, "no such subnet"));
            }
        }
        let _control = self.inner.control.lock().await;
        if self.inner.state.lock().lbs.contains_key(name) {
            return Err(op.already_exists(name, "the load balancer exists"));
        }
        let mut bound = Vec::new();
        for l in &spec.listeners {
            bound.push(bind(op, name, l.port).await?);
        }
        let sockets_ports: Vec<u16> = bound
            .iter()
            .map(|b| b.local_addr().map(|a| a.port()).unwrap_or(0))
            .collect();
        self.inner.state.mutate(op, |s| {
            s.lbs.insert(
                name.to_owned(),
                LbDef {
                    spec: spec.clone(),
                    ports: sockets_ports,
                },
            );
            Ok(())
        })?;
        if let Err(e) = self.inner.start_lb(&spec, bound) {
            let _ = self.inner.state.mutate(op, |s| {
                s.lbs.remove(name);
                Ok(())
            });
            return Err(e);
        }
        let def = self.inner.state.lock().lbs.get(name).cloned();
        let groups: Vec<Arc<GroupRt>> = self.inner.groups_read().values().cloned().collect();
        for g in groups {
            self.inner.update_blocked(&g);
        }
        def.map(|d| self.inner.info(&d))
            .ok_or_else(|| op.not_found(name, "the load balancer was deleted meanwhile"))
    }

    async fn set_weights(&self, lb: &str, port: u16, forward: Vec<(String, u32)>) -> Result<()> {
        let op = op("set_weights");
        let _control = self.inner.control.lock().await;
        let def = self
            .inner
            .state
            .lock()
            .lbs
            .get(lb)
            .cloned()
            .ok_or_else(|| op.not_found(lb, "no such load balancer"))?;
        let index = def
            .ports
            .iter()
            .zip(&def.spec.listeners)
            .position(|(p, l)| *p == port || (l.port != 0 && l.port == port))
            .ok_or_else(|| op.not_found(format!("{lb}:{port}"), "no listener on that port"))?;
        let protocol = def
            .spec
            .listeners
            .get(index)
            .map(|l| l.protocol)
            .unwrap_or(Protocol::Http);
        self.inner.validate_forward(op, lb, protocol, &forward)?;
        let telemetry = self
            .inner
            .lbs_lock()
            .get(lb)
            .map(|r| r.telemetry.clone())
            .ok_or_else(|| op.not_found(lb, "the load balancer is not running"))?;
        let weighted = self.inner.weighted(op, &forward, &telemetry)?;
        self.inner.state.mutate(op, |s| {
            let l = s
                .lbs
                .get_mut(lb)
                .and_then(|d| d.spec.listeners.get_mut(index))
                .ok_or_else(|| op.not_found(lb, "no such load balancer"))?;
            l.forward = forward.clone();
            Ok(())
        })?;
        if let Some(rt) = self
            .inner
            .lbs_lock()
            .get(lb)
            .and_then(|r| r.listeners.get(index))
        {
            *rt.forward.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(weighted);
        }
        let groups: Vec<Arc<GroupRt>> = self.inner.groups_read().values().cloned().collect();
        for g in groups {
            self.inner.update_blocked(&g);
        }
        Ok(())
    }

    async fn describe_load_balancer(&self, name: &str) -> Result<LoadBalancerInfo> {
        let def = self
            .inner
            .state
            .lock()
            .lbs
            .get(name)
            .cloned()
            .ok_or_else(|| op("describe_load_balancer").not_found(name, "no such load balancer"))?;
        Ok(self.inner.info(&def))
    }

    async fn list_load_balancers(&self) -> Result<Vec<LoadBalancerInfo>> {
        let defs: Vec<LbDef> = self.inner.state.lock().lbs.values().cloned().collect();
        Ok(defs.iter().map(|d| self.inner.info(d)).collect())
    }

    async fn delete_load_balancer(&self, name: &str) -> Result<()> {
        let op = op("delete_load_balancer");
        let _control = self.inner.control.lock().await;
        self.inner.state.mutate(op, |s| {
            s.lbs
                .remove(name)
                .map(|_| ())
                .ok_or_else(|| op.not_found(name, "no such load balancer"))
        })?;
        let rt = self.inner.lbs_lock().remove(name);
        if let Some(rt) = rt {
            // Stops the listeners (the sender drops), then sends what they counted.
            let LbRt { telemetry, .. } = rt;
            telemetry
                .flush(
                    name,
                    self.inner.ctx.sim.now(),
                    self.inner.metrics.as_ref(),
                    self.inner.logs.as_ref(),
                )
                .await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use mvi_core::lb::ListenerSpec;
    use mvi_core::log::GetEvents;
    use mvi_core::metric::{GetStatistics, MetricId, Statistic};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    /// The status of `GET path` through `url`.
    async fn get(url: &str, path: &str) -> u16 {
        let host = url.trim_start_matches("http://").trim_end_matches('/');
        let mut s = TcpStream::connect(host).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out.split(' ').nth(1).unwrap().parse().unwrap()
    }

    /// Polls `check` every 100 ms until it returns `Some`, for at most 20 s.
    async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        for _ in 0..200 {
            if let Some(v) = check().await {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{what} never happened");
    }

    /// The sum of a load balancer metric of `front` over the last minutes.
    async fn sum(metrics: &Arc<dyn Metrics>, name: &str, bucket: Option<&str>) -> f64 {
        let mut id = MetricId::new("mvi/LoadBalancer", name).dimension("LoadBalancer", "front");
        if let Some(b) = bucket {
            id = id.dimension(mvi_core::lb::metric_names::BUCKET_DIMENSION, b);
        }
        let now = chrono::Utc::now();
        let req = GetStatistics::new(
            id,
            now - chrono::Duration::minutes(5),
            now + chrono::Duration::minutes(1),
            Duration::from_secs(600),
            [Statistic::Sum],
        );
        let points = metrics.get_statistics(req).await.unwrap();
        points.iter().filter_map(|p| p.get(Statistic::Sum)).sum()
    }

    /// Requests through a listener show up as metrics (counts, 5xx, the response-time mean
    /// and histogram) and as one access line each in the load balancer's log group.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn traffic_is_counted_in_metrics_and_logged_line_by_line() {
        let cloud = crate::LocalCloud::builder()
            .in_memory()
            .build()
            .await
            .unwrap();
        let lbs = cloud.load_balancers().unwrap().clone();
        let mut group = TargetGroupSpec::new("web", Protocol::Http);
        group.health_check.path = "/".into();
        group.health_check.interval = Duration::from_millis(100);
        group.health_check.timeout = Duration::from_millis(100);
        group.health_check.healthy_threshold = 2;
        lbs.create_target_group(group).await.unwrap();
        // Its `/health` answers 500: a target error the load balancer passes on.
        let target = mvi_conformance::lb::http_target("web", false)
            .await
            .unwrap();
        lbs.register_targets("web", vec![target]).await.unwrap();
        let info = lbs
            .create_load_balancer(LoadBalancerSpec::new(
                "front",
                vec![ListenerSpec {
                    protocol: Protocol::Http,
                    port: 0,
                    forward: vec![("web".into(), 1)],
                }],
            ))
            .await
            .unwrap();
        eventually("the target healthy", || async {
            let health = lbs.target_health("web").await.unwrap();
            health
                .iter()
                .any(|t| t.health == TargetHealth::Healthy)
                .then_some(())
        })
        .await;
        let url = &info.urls[0];
        let statuses = [
            get(url, "/a").await,
            get(url, "/b").await,
            get(url, "/health").await,
        ];
        assert_eq!(statuses, [200, 200, 500]);

        let port = url.rsplit(':').next().unwrap().trim_end_matches('/');
        let logs = cloud.logs().unwrap().clone();
        let lines = eventually("three access lines", || async {
            let req = GetEvents::new("/mvi/lb/front", format!("listener-{port}"));
            let page = logs.get_events(req).await.ok()?;
            (page.items.len() >= 3).then_some(page.items)
        })
        .await;
        let lines: Vec<&str> = lines.iter().map(|l| l.message.as_str()).collect();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(
            lines[2].contains(" 500 \"GET /health HTTP/1.1\""),
            "{lines:?}"
        );
        assert!(lines[0].contains(" 200 \"GET /a HTTP/1.1\""), "{lines:?}");

        let metrics = cloud.metrics().unwrap().clone();
        eventually("RequestCount 3", || async {
            (sum(&metrics, "RequestCount", None).await == 3.0).then_some(())
        })
        .await;
        assert_eq!(sum(&metrics, "HTTPCode_Target_5XX_Count", None).await, 1.0);
        assert_eq!(sum(&metrics, "HTTPCode_ELB_5XX_Count", None).await, 0.0);
        let mut in_buckets = 0.0;
        for i in 0..=telemetry::BUCKETS_US.len() {
            let bucket = telemetry::bucket_label(i);
            in_buckets += sum(
                &metrics,
                mvi_core::lb::metric_names::RESPONSE_TIME_HISTOGRAM,
                Some(&bucket),
            )
            .await;
        }
        assert_eq!(in_buckets, 3.0, "every response is in one histogram bucket");
        let mean = metrics
            .get_statistics(GetStatistics::new(
                MetricId::new("mvi/LoadBalancer", "TargetResponseTime")
                    .dimension("LoadBalancer", "front"),
                chrono::Utc::now() - chrono::Duration::minutes(5),
                chrono::Utc::now() + chrono::Duration::minutes(1),
                Duration::from_secs(600),
                [Statistic::Average],
            ))
            .await
            .unwrap();
        assert!(
            mean.iter()
                .any(|p| p.get(Statistic::Average).is_some_and(|v| v > 0.0)),
            "no TargetResponseTime: {mean:?}"
        );
    }
}
