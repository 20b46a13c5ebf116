//! Load Balancer on Elastic Load Balancing v2.
//!
//! # How the contract maps onto ELBv2
//!
//! - A load balancer whose listeners are all [`Protocol::Http`] is an *application* load
//!   balancer; all [`Protocol::Tcp`] makes a *network* load balancer. ELBv2 has no load
//!   balancer that serves both, so mixing them is [`ErrorKind::Unsupported`] (use two).
//! - Target groups have target type `ip`: a target is `ip:port`, and each target carries its
//!   own port (the group's port, 80, is only ELBv2's default for targets without one). A group
//!   lives in its spec's VPC, or in the region's default VPC.
//! - A load balancer serves from its spec's subnets, or from the default subnets of the
//!   default VPC (one per zone). An application load balancer without security groups gets
//!   the VPC's default group (ELBv2's rule). Finding the defaults is the only use of EC2.
//! - Health checks: HTTP `GET path` answering 2xx for HTTP groups, a TCP connect for TCP
//!   groups. ELBv2 counts in whole seconds with floors of its own (interval 5–300 s, timeout
//!   2–120 s and below the interval, thresholds 2–10): durations are rounded up and raised
//!   to those floors, so a spec that is valid locally (200 ms checks in tests) runs on AWS
//!   with ELBv2's fastest checks instead of failing.
//! - [`Algorithm`] is the `load_balancing.algorithm.type` attribute of HTTP groups. A network
//!   load balancer spreads flows by hash and has no such attribute: TCP groups accept the
//!   default, [`Algorithm::RoundRobin`], and refuse `LeastOutstandingRequests` as Unsupported.
//! - A listener asking for port 0 ("pick one", as locally) gets the lowest free port from 80
//!   up on its load balancer.
//!
//! # What is kept in tags, and why
//!
//! [`LoadBalancers::describe_load_balancer`] must give back the spec that was asked for, but
//! ELBv2 does not know which listeners asked for port 0, in which order the listeners came,
//! or that the subnets and security groups were defaults chosen here. The load balancer's
//! tags record exactly that: `mvi:listeners` (the actual ports in spec order, `0=80` for a
//! picked one; continued in `mvi:listeners:2`, ... past ELBv2's 256-character value limit),
//! and `mvi:subnets` / `mvi:security-groups` set to `default`. A load balancer made
//! elsewhere has none of them and is described as ELBv2 reports it.
//!
//! # Exactly one creator
//!
//! ELBv2's `CreateTargetGroup` and `CreateLoadBalancer` are idempotent: a second call with
//! the same name and settings *succeeds* and returns the existing resource. Each create here
//! sends a random `mvi:token` tag and reads it back: a different token means somebody else
//! made it, and the call is [`ErrorKind::AlreadyExists`], as the contract says.
//!
//! # Waiting
//!
//! Creating a load balancer waits until ELBv2 says it is active (its listeners serve);
//! deleting one waits until it is gone, so its target groups can be deleted right after.
//!
//! # On moto (5.2.5)
//!
//! moto keeps one registration per target *address*: registering `127.0.0.1:1` and
//! `127.0.0.1:2` leaves only the later one (ELBv2 keeps both; a target is address and port).
//! No faithful workaround exists, so the conformance case that registers two ports of one
//! address fails there. moto also forgets which groups a listener forwards to after
//! `ModifyListener`, so refusing to delete such a group quotes ELBv2's message instead of
//! naming the load balancer. Targets are healthy at once and no traffic flows (the
//! `RealTraffic` cases).

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::poll::Backoff;
use async_trait::async_trait;
use aws_sdk_elasticloadbalancingv2::Client;
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ForwardActionConfig, Listener, LoadBalancer, LoadBalancerStateEnum,
    LoadBalancerTypeEnum, Matcher, ProtocolEnum, Tag, TargetDescription, TargetGroup,
    TargetGroupAttribute, TargetGroupTuple, TargetHealthDescription, TargetHealthReasonEnum,
    TargetHealthStateEnum, TargetTypeEnum,
};
use mvi_core::error::found;
use mvi_core::lb::{
    Algorithm, ListenerSpec, LoadBalancerInfo, LoadBalancerSpec, LoadBalancers, Protocol,
    TargetGroupSpec, TargetHealth, TargetStatus, validate_name,
};
use mvi_core::metric::MetricId;
use mvi_core::{ErrorKind, Op, Result, Service};
use tokio::sync::OnceCell;

use crate::error::map;

const fn op(name: &'static str) -> Op {
    Op::new(Service::LoadBalancer, name)
}

/// Largest listener weight (ELBv2's).
const MAX_WEIGHT: u32 = 999;
/// Longest deregistration delay (ELBv2's).
const MAX_DEREGISTRATION_DELAY: Duration = Duration::from_secs(3600);
/// The first port tried for a listener that asks for port 0.
const FIRST_PICKED_PORT: u16 = 80;
/// The group's own port: only ELBv2's default for targets registered without one, which
/// never happens here.
const GROUP_PORT: i32 = 80;

/// Tag with the creator's random token.
const TOKEN: &str = "mvi:token";
/// Tag with the listeners' ports in spec order (`0=80` for a picked one).
const LISTENERS: &str = "mvi:listeners";
/// Tag saying the subnets are the default VPC's, chosen here.
const SUBNETS: &str = "mvi:subnets";
/// Tag saying no security groups were asked for.
const SECURITY_GROUPS: &str = "mvi:security-groups";
/// The value of [`SUBNETS`] and [`SECURITY_GROUPS`].
const DEFAULT: &str = "default";
/// ELBv2's longest tag value.
const MAX_TAG_VALUE: usize = 256;

/// How long a new load balancer may take to become active.
const ACTIVE_DEADLINE: Duration = Duration::from_secs(15 * 60);
/// How long a deleted load balancer may take to disappear.
const GONE_DEADLINE: Duration = Duration::from_secs(5 * 60);
/// The first and the longest pause between two polls.
const FIRST_POLL: Duration = Duration::from_millis(250);
const MAX_POLL: Duration = Duration::from_secs(10);

/// The Load Balancer service on Elastic Load Balancing v2 (or an ELBv2-compatible endpoint).
#[derive(Debug)]
pub struct ElbLoadBalancers {
    elb: Client,
    ec2: aws_sdk_ec2::Client,
    /// The default VPC and its default subnets, looked up on first need.
    defaults: OnceCell<DefaultNetwork>,
    /// Held while creating a target group. ELBv2 itself never holds two groups of one name,
    /// but moto checks for a duplicate and inserts in two steps, so racing creators on its
    /// threaded server can each make one; creators sharing this handle take turns instead
    /// (across processes, only AWS guarantees a single winner; see docs/parity.md).
    creating_group: tokio::sync::Mutex<()>,
}

/// The region's default VPC and one default subnet per zone.
#[derive(Debug, Clone)]
struct DefaultNetwork {
    vpc: String,
    subnets: Vec<String>,
}

impl ElbLoadBalancers {
    /// Load balancers through the ELBv2 (and, for default subnets, EC2) clients made from
    /// `config`.
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        ElbLoadBalancers {
            elb: Client::new(config),
            ec2: aws_sdk_ec2::Client::new(config),
            defaults: OnceCell::new(),
            creating_group: tokio::sync::Mutex::new(()),
        }
    }

    /// The default VPC and its default subnets (sorted by zone).
    async fn defaults(&self, op: Op) -> Result<&DefaultNetwork> {
        self.defaults
            .get_or_try_init(|| async {
                let what = "the default VPC";
                let vpcs = self
                    .ec2
                    .describe_vpcs()
                    .filters(filter("is-default", "true"))
                    .send()
                    .await
                    .map_err(|e| map(op, what, e))?;
                let vpc = vpcs
                    .vpcs()
                    .iter()
                    .find_map(|v| v.vpc_id())
                    .ok_or_else(|| {
                        op.precondition(
                            what,
                            "the region has no default VPC: give the load balancer subnets \
                             and the target group a VPC",
                        )
                    })?
                    .to_owned();
                let mut by_zone = std::collections::BTreeMap::new();
                let mut token: Option<String> = None;
                loop {
                    let out = self
                        .ec2
                        .describe_subnets()
                        .filters(filter("vpc-id", &vpc))
                        .filters(filter("default-for-az", "true"))
                        .set_next_token(token.take())
                        .send()
                        .await
                        .map_err(|e| map(op, what, e))?;
                    for s in out.subnets() {
                        if let (Some(zone), Some(id)) = (s.availability_zone(), s.subnet_id()) {
                            by_zone.insert(zone.to_owned(), id.to_owned());
                        }
                    }
                    match out.next_token() {
                        Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                        _ => break,
                    }
                }
                if by_zone.is_empty() {
                    return Err(op.precondition(
                        what,
                        format!("{vpc} has no default subnets: give the load balancer subnets"),
                    ));
                }
                Ok(DefaultNetwork {
                    vpc,
                    subnets: by_zone.into_values().collect(),
                })
            })
            .await
    }

    /// The target group `name`.
    async fn group(&self, op: Op, name: &str) -> Result<TargetGroup> {
        // A name ELBv2 would refuse cannot exist; say so as the local backend does.
        if validate_name(op, "target group", name).is_err() {
            return Err(op.not_found(name, "no such target group"));
        }
        let out = self
            .elb
            .describe_target_groups()
            .names(name)
            .send()
            .await
            .map_err(|e| map(op, name, e))?;
        out.target_groups()
            .iter()
            .find(|g| g.target_group_name() == Some(name))
            .cloned()
            .ok_or_else(|| op.not_found(name, "no such target group"))
    }

    /// The load balancer `name`, if it exists.
    async fn find_lb(&self, op: Op, name: &str) -> Result<Option<LoadBalancer>> {
        if validate_name(op, "load balancer", name).is_err() {
            return Ok(None);
        }
        let out = self.elb.describe_load_balancers().names(name).send().await;
        Ok(found(out.map_err(|e| map(op, name, e)))?.and_then(|out| {
            out.load_balancers()
                .iter()
                .find(|l| l.load_balancer_name() == Some(name))
                .cloned()
        }))
    }

    /// The load balancer `name`, or NotFound.
    async fn lb(&self, op: Op, name: &str) -> Result<LoadBalancer> {
        self.find_lb(op, name)
            .await?
            .ok_or_else(|| op.not_found(name, "no such load balancer"))
    }

    /// The tags of one resource.
    async fn tags(&self, op: Op, resource: &str, arn: &str) -> Result<HashMap<String, String>> {
        let out = self
            .elb
            .describe_tags()
            .resource_arns(arn)
            .send()
            .await
            .map_err(|e| map(op, resource, e))?;
        Ok(out
            .tag_descriptions()
            .iter()
            .filter(|d| d.resource_arn() == Some(arn))
            .flat_map(|d| d.tags())
            .filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or("").to_owned())))
            .collect())
    }

    /// Every listener of a load balancer.
    async fn listeners(&self, op: Op, name: &str, arn: &str) -> Result<Vec<Listener>> {
        let mut all = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let out = self
                .elb
                .describe_listeners()
                .load_balancer_arn(arn)
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|e| map(op, name, e))?;
            all.extend(out.listeners().iter().cloned());
            match out.next_marker() {
                Some(m) if !m.is_empty() => marker = Some(m.to_owned()),
                _ => break,
            }
        }
        Ok(all)
    }

    /// Checks a listener's forward list against the groups (weights, duplicates, existence,
    /// protocol); returns `(group ARN, weight)` in the same order.
    async fn resolve_forward(
        &self,
        op: Op,
        lb: &str,
        protocol: Protocol,
        forward: &[(String, u32)],
    ) -> Result<Vec<(String, u32)>> {
        if forward.is_empty() {
            return Err(op.invalid(lb, "a listener must forward to at least one target group"));
        }
        let mut seen = BTreeSet::new();
        let mut out = Vec::with_capacity(forward.len());
        for (name, w) in forward {
            if *w > MAX_WEIGHT {
                return Err(op.invalid(name, format!("weight {w} is above {MAX_WEIGHT}")));
            }
            if !seen.insert(name) {
                return Err(op.invalid(name, "the target group is listed twice"));
            }
            let g = self.group(op, name).await?;
            let theirs = g.protocol().and_then(protocol_of);
            if theirs != Some(protocol) {
                return Err(op.invalid(
                    name,
                    format!(
                        "the target group's protocol is {}, the listener's {protocol:?}",
                        g.protocol().map(|p| p.as_str()).unwrap_or("unknown")
                    ),
                ));
            }
            let arn = g
                .target_group_arn()
                .ok_or_else(|| op.internal(name, "ELBv2 described a target group without ARN"))?;
            out.push((arn.to_owned(), *w));
        }
        Ok(out)
    }

    /// The targets of a group and their health.
    async fn health(&self, op: Op, group: &str, arn: &str) -> Result<Vec<TargetStatus>> {
        let out = self
            .elb
            .describe_target_health()
            .target_group_arn(arn)
            .send()
            .await
            .map_err(|e| map(op, group, e))?;
        Ok(out
            .target_health_descriptions()
            .iter()
            .filter_map(status_of)
            .collect())
    }

    /// Describes a load balancer as the spec that made it (see the module docs).
    async fn info(&self, op: Op, lb: &LoadBalancer) -> Result<LoadBalancerInfo> {
        let name = lb.load_balancer_name().unwrap_or_default();
        let arn = lb
            .load_balancer_arn()
            .ok_or_else(|| op.internal(name, "ELBv2 described a load balancer without ARN"))?;
        let tags = self.tags(op, name, arn).await?;
        let mut listeners = self.listeners(op, name, arn).await?;
        listeners.sort_by_key(|l| l.port());
        let dns = lb.dns_name().unwrap_or_default().to_owned();
        let mut specs = Vec::new();
        let mut urls = Vec::new();
        let mut push = |l: &Listener, port: u16| {
            let Some(protocol) = l.protocol().and_then(protocol_of) else {
                // HTTPS, TLS, UDP: listeners the contract cannot express are left out.
                return;
            };
            let actual = l.port().and_then(|p| u16::try_from(p).ok()).unwrap_or(0);
            let scheme = match protocol {
                Protocol::Http => "http",
                Protocol::Tcp => "tcp",
            };
            urls.push(format!("{scheme}://{dns}:{actual}"));
            specs.push(ListenerSpec {
                protocol,
                port,
                forward: forward_of(l),
            });
        };
        // The recorded order first, then whatever was added elsewhere, by port.
        for (actual, picked) in parse_layout(&chunked(&tags, LISTENERS)) {
            if let Some(i) = listeners
                .iter()
                .position(|l| l.port() == Some(i32::from(actual)))
            {
                let l = listeners.remove(i);
                push(&l, if picked { 0 } else { actual });
            }
        }
        for l in &listeners {
            let port = l.port().and_then(|p| u16::try_from(p).ok()).unwrap_or(0);
            push(l, port);
        }
        let mut spec = LoadBalancerSpec::new(name, specs);
        if tags.get(SUBNETS).map(String::as_str) != Some(DEFAULT) {
            spec.subnets = lb
                .availability_zones()
                .iter()
                .filter_map(|z| z.subnet_id().map(str::to_owned))
                .collect();
        }
        if tags.get(SECURITY_GROUPS).map(String::as_str) != Some(DEFAULT) {
            spec.security_groups = lb.security_groups().to_vec();
        }
        Ok(LoadBalancerInfo {
            spec,
            dns_name: dns,
            urls,
        })
    }

    /// Polls until the load balancer is active (or impaired but serving).
    async fn wait_active(&self, op: Op, name: &str) -> Result<LoadBalancer> {
        let mut poll = Backoff::new(FIRST_POLL, MAX_POLL, ACTIVE_DEADLINE);
        loop {
            let lb = self
                .find_lb(op, name)
                .await?
                .ok_or_else(|| op.not_found(name, "the load balancer was deleted meanwhile"))?;
            let state = lb.state().and_then(|s| s.code()).cloned();
            match state {
                Some(LoadBalancerStateEnum::Active | LoadBalancerStateEnum::ActiveImpaired) => {
                    return Ok(lb);
                }
                Some(LoadBalancerStateEnum::Failed) => {
                    let why = lb.state().and_then(|s| s.reason()).unwrap_or("no reason");
                    return Err(op.err(
                        ErrorKind::Unavailable,
                        name,
                        format!("ELBv2 failed to provision the load balancer: {why}"),
                    ));
                }
                _ => {}
            }
            if poll.expired() {
                return Err(op.err(
                    ErrorKind::Timeout,
                    name,
                    format!("not active after {} s", ACTIVE_DEADLINE.as_secs()),
                ));
            }
            poll.wait().await;
        }
    }

    /// Polls until the load balancer is gone.
    async fn wait_gone(&self, op: Op, name: &str) -> Result<()> {
        let mut poll = Backoff::new(FIRST_POLL, MAX_POLL, GONE_DEADLINE);
        while self.find_lb(op, name).await?.is_some() {
            if poll.expired() {
                return Err(op.err(
                    ErrorKind::Timeout,
                    name,
                    format!("still there {} s after deletion", GONE_DEADLINE.as_secs()),
                ));
            }
            poll.wait().await;
        }
        Ok(())
    }

    /// Deletes a load balancer made by a create that then failed; best effort.
    async fn roll_back(&self, arn: &str) {
        if let Err(e) = self
            .elb
            .delete_load_balancer()
            .load_balancer_arn(arn)
            .send()
            .await
        {
            tracing::warn!(load_balancer = arn, error = %e, "cannot delete the half-made load balancer");
        }
    }
}

fn filter(name: &str, value: &str) -> aws_sdk_ec2::types::Filter {
    aws_sdk_ec2::types::Filter::builder()
        .name(name)
        .values(value)
        .build()
}

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}

fn attribute(key: &str, value: impl Into<String>) -> TargetGroupAttribute {
    TargetGroupAttribute::builder()
        .key(key)
        .value(value)
        .build()
}

fn random_token() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Sleeps `pause`; returns the next, longer pause.
fn elb_protocol(p: Protocol) -> ProtocolEnum {
    match p {
        Protocol::Http => ProtocolEnum::Http,
        Protocol::Tcp => ProtocolEnum::Tcp,
    }
}

fn protocol_of(p: &ProtocolEnum) -> Option<Protocol> {
    match p {
        ProtocolEnum::Http => Some(Protocol::Http),
        ProtocolEnum::Tcp => Some(Protocol::Tcp),
        _ => None,
    }
}

/// The name inside a target group ARN (`...:targetgroup/NAME/ID`).
fn group_name_of(arn: &str) -> String {
    arn.split_once(":targetgroup/")
        .and_then(|(_, rest)| rest.split('/').next())
        .unwrap_or(arn)
        .to_owned()
}

/// The `(group, weight)` list of a listener's forward action.
fn forward_of(l: &Listener) -> Vec<(String, u32)> {
    let Some(action) = l
        .default_actions()
        .iter()
        .find(|a| a.r#type() == Some(&ActionTypeEnum::Forward))
    else {
        return Vec::new();
    };
    if let Some(cfg) = action.forward_config()
        && !cfg.target_groups().is_empty()
    {
        return cfg
            .target_groups()
            .iter()
            .filter_map(|t| {
                let weight = t.weight().and_then(|w| u32::try_from(w).ok()).unwrap_or(1);
                Some((group_name_of(t.target_group_arn()?), weight))
            })
            .collect();
    }
    action
        .target_group_arn()
        .map(|arn| vec![(group_name_of(arn), 1)])
        .unwrap_or_default()
}

/// A forward action to `(group ARN, weight)`s.
fn forward_action(groups: &[(String, u32)]) -> Action {
    let mut cfg = ForwardActionConfig::builder();
    for (arn, w) in groups {
        cfg = cfg.target_groups(
            TargetGroupTuple::builder()
                .target_group_arn(arn)
                // At most MAX_WEIGHT, checked before.
                .weight(i32::try_from(*w).unwrap_or(i32::MAX))
                .build(),
        );
    }
    Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .forward_config(cfg.build())
        .build()
}

/// One target's status in mvi's terms.
fn status_of(d: &TargetHealthDescription) -> Option<TargetStatus> {
    let t = d.target()?;
    let id = t.id()?;
    let port = t.port().and_then(|p| u16::try_from(p).ok()).unwrap_or(0);
    let target = match id.parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, port).to_string(),
        Err(_) => format!("{id}:{port}"),
    };
    let h = d.target_health();
    let state = h.and_then(|h| h.state());
    let reason_code = h.and_then(|h| h.reason());
    let health = match state {
        Some(TargetHealthStateEnum::Initial) => TargetHealth::Initial,
        Some(TargetHealthStateEnum::Healthy) => TargetHealth::Healthy,
        Some(TargetHealthStateEnum::Draining) => TargetHealth::Draining,
        // Not used by any load balancer yet, so not checked yet either.
        Some(TargetHealthStateEnum::Unused)
            if reason_code == Some(&TargetHealthReasonEnum::NotInUse) =>
        {
            TargetHealth::Initial
        }
        _ => TargetHealth::Unhealthy,
    };
    let reason = h
        .and_then(|h| h.description())
        .map(str::to_owned)
        .or_else(|| reason_code.map(|r| r.as_str().to_owned()))
        .or_else(|| state.map(|s| s.as_str().to_owned()))
        .unwrap_or_default();
    Some(TargetStatus {
        target,
        health,
        reason,
    })
}

/// Checks a target group spec by the local backend's rules.
fn check_group(op: Op, spec: &TargetGroupSpec) -> Result<()> {
    validate_name(op, "target group", &spec.name)?;
    let name = spec.name.as_str();
    let hc = &spec.health_check;
    if !hc.path.starts_with('/') || hc.path.len() > 1024 {
        return Err(op.invalid(
            name,
            "the health check path must start with '/' (at most 1024 characters)",
        ));
    }
    if hc.interval.is_zero() || hc.timeout.is_zero() || hc.timeout > hc.interval {
        return Err(op.invalid(
            name,
            "the health check interval and timeout must be above 0, the timeout at most the \
             interval",
        ));
    }
    if !(1..=10).contains(&hc.healthy_threshold) || !(1..=10).contains(&hc.unhealthy_threshold) {
        return Err(op.invalid(name, "health check thresholds must be 1 to 10"));
    }
    if spec.deregistration_delay > MAX_DEREGISTRATION_DELAY {
        return Err(op.invalid(name, "the deregistration delay is at most 3600 s"));
    }
    if spec.protocol == Protocol::Tcp && spec.algorithm == Algorithm::LeastOutstandingRequests {
        return Err(op.unsupported(format!(
            "target group {name}: a network load balancer (TCP) spreads flows by hash; \
             least outstanding requests exists only for HTTP target groups"
        )));
    }
    Ok(())
}

/// Whole seconds, rounded up.
fn secs_up(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// ELBv2's health check settings for a spec: `(interval, timeout, healthy, unhealthy)`,
/// raised to ELBv2's floors (see the module docs).
fn health_settings(spec: &TargetGroupSpec) -> (i32, i32, i32, i32) {
    let hc = &spec.health_check;
    let clamp = |v: u64, lo: u64, hi: u64| i32::try_from(v.clamp(lo, hi)).unwrap_or(i32::MAX);
    let interval = clamp(secs_up(hc.interval), 5, 300);
    let mut timeout = clamp(secs_up(hc.timeout), 2, 120);
    if timeout >= interval {
        // HTTP checks need the timeout strictly below the interval; interval >= 5.
        timeout = interval - 1;
    }
    let threshold = |t: u32| clamp(u64::from(t), 2, 10);
    (
        interval,
        timeout,
        threshold(hc.healthy_threshold),
        threshold(hc.unhealthy_threshold),
    )
}

/// Parses a target `ip:port` (port not 0).
fn parse_target(op: Op, target: &str) -> Result<SocketAddr> {
    let sock: SocketAddr = target
        .parse()
        .map_err(|_| op.invalid(target, "targets must be IP:port, such as 127.0.0.1:8080"))?;
    if sock.port() == 0 {
        return Err(op.invalid(target, "the target's port must not be 0"));
    }
    Ok(sock)
}

fn describe_target(sock: &SocketAddr) -> TargetDescription {
    TargetDescription::builder()
        .id(sock.ip().to_string())
        .port(i32::from(sock.port()))
        .build()
}

/// The actual port of each listener: its own, or for port 0 the lowest port from 80 up that
/// no other listener of the spec uses.
fn pick_ports(op: Op, lb: &str, listeners: &[ListenerSpec]) -> Result<Vec<u16>> {
    let mut used: BTreeSet<u16> = listeners
        .iter()
        .map(|l| l.port)
        .filter(|p| *p != 0)
        .collect();
    let mut next = FIRST_PICKED_PORT;
    let mut out = Vec::with_capacity(listeners.len());
    for l in listeners {
        if l.port != 0 {
            out.push(l.port);
            continue;
        }
        while used.contains(&next) {
            next = next
                .checked_add(1)
                .ok_or_else(|| op.invalid(lb, "no free port left for a listener"))?;
        }
        used.insert(next);
        out.push(next);
    }
    Ok(out)
}

/// The `mvi:listeners` value: actual ports in spec order, `0=PORT` for picked ones.
fn layout(listeners: &[ListenerSpec], ports: &[u16]) -> String {
    listeners
        .iter()
        .zip(ports)
        .map(|(l, p)| {
            if l.port == 0 {
                format!("0={p}")
            } else {
                p.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `(actual port, picked)` from an `mvi:listeners` value; unreadable entries are skipped.
fn parse_layout(value: &str) -> Vec<(u16, bool)> {
    value
        .split_whitespace()
        .filter_map(|e| match e.strip_prefix("0=") {
            Some(p) => p.parse().ok().map(|p| (p, true)),
            None => e.parse().ok().map(|p| (p, false)),
        })
        .collect()
}

/// Splits a space-separated value over tags `key`, `key:2`, ... within ELBv2's value limit.
fn chunk_tags(key: &str, value: &str) -> Vec<Tag> {
    let mut tags = Vec::new();
    let mut current = String::new();
    for word in value.split_whitespace() {
        if !current.is_empty() && current.len() + 1 + word.len() > MAX_TAG_VALUE {
            tags.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(word);
    }
    tags.push(current);
    tags.iter()
        .enumerate()
        .map(|(i, v)| {
            let k = if i == 0 {
                key.to_owned()
            } else {
                format!("{key}:{}", i + 1)
            };
            tag(&k, v)
        })
        .collect()
}

/// The value split by [`chunk_tags`], joined again.
fn chunked(tags: &HashMap<String, String>, key: &str) -> String {
    let mut parts = Vec::new();
    let mut i = 1;
    loop {
        let k = if i == 1 {
            key.to_owned()
        } else {
            format!("{key}:{i}")
        };
        match tags.get(&k) {
            Some(v) => parts.push(v.as_str()),
            None => break,
        }
        i += 1;
    }
    parts.join(" ")
}

#[async_trait]
impl LoadBalancers for ElbLoadBalancers {
    async fn create_target_group(&self, spec: TargetGroupSpec) -> Result<()> {
        let op = op("create_target_group");
        check_group(op, &spec)?;
        let name = spec.name.as_str();
        let vpc = match &spec.vpc {
            Some(vpc) => {
                // Asked here so an unknown VPC is NotFound, as locally (ELBv2 would call it
                // a validation error).
                self.ec2
                    .describe_vpcs()
                    .vpc_ids(vpc)
                    .send()
                    .await
                    .map_err(|e| map(op, vpc, e))?;
                vpc.clone()
            }
            None => self.defaults(op).await?.vpc.clone(),
        };
        let (interval, timeout, healthy, unhealthy) = health_settings(&spec);
        let protocol = elb_protocol(spec.protocol);
        let token = random_token();
        let _turn = self.creating_group.lock().await;
        let mut req = self
            .elb
            .create_target_group()
            .name(name)
            .protocol(protocol.clone())
            .port(GROUP_PORT)
            .vpc_id(vpc)
            .target_type(TargetTypeEnum::Ip)
            .health_check_enabled(true)
            .health_check_protocol(protocol)
            .health_check_interval_seconds(interval)
            .health_check_timeout_seconds(timeout)
            .healthy_threshold_count(healthy)
            .unhealthy_threshold_count(unhealthy)
            .tags(tag(TOKEN, &token));
        if spec.protocol == Protocol::Http {
            req = req
                .health_check_path(&spec.health_check.path)
                .matcher(Matcher::builder().http_code("200-299").build());
        }
        let out = req.send().await.map_err(|e| map(op, name, e))?;
        let arn = out
            .target_groups()
            .first()
            .and_then(|g| g.target_group_arn())
            .ok_or_else(|| op.internal(name, "CreateTargetGroup answered no target group"))?
            .to_owned();
        if self.tags(op, name, &arn).await?.get(TOKEN) != Some(&token) {
            // ELBv2 handed back a group somebody else made with the same settings.
            return Err(op.already_exists(name, "the target group exists"));
        }
        let mut attributes = vec![attribute(
            "deregistration_delay.timeout_seconds",
            secs_up(spec.deregistration_delay).to_string(),
        )];
        if spec.protocol == Protocol::Http {
            let algorithm = match spec.algorithm {
                Algorithm::RoundRobin => "round_robin",
                Algorithm::LeastOutstandingRequests => "least_outstanding_requests",
            };
            attributes.push(attribute("load_balancing.algorithm.type", algorithm));
        }
        if let Err(e) = self
            .elb
            .modify_target_group_attributes()
            .target_group_arn(&arn)
            .set_attributes(Some(attributes))
            .send()
            .await
        {
            // Half made: take it away again so the name is free for a corrected spec.
            let _ = self
                .elb
                .delete_target_group()
                .target_group_arn(&arn)
                .send()
                .await;
            return Err(map(op, name, e));
        }
        Ok(())
    }

    async fn delete_target_group(&self, name: &str) -> Result<()> {
        let op = op("delete_target_group");
        let g = self.group(op, name).await?;
        let arn = g
            .target_group_arn()
            .ok_or_else(|| op.internal(name, "ELBv2 described a target group without ARN"))?;
        let err = match self
            .elb
            .delete_target_group()
            .target_group_arn(arn)
            .send()
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) => map(op, name, e),
        };
        // ResourceInUse: name the load balancers ELBv2 says use the group, when it says so
        // (its ARNs end in `/NAME/ID`).
        let users: Vec<&str> = g
            .load_balancer_arns()
            .iter()
            .filter_map(|a| a.split('/').nth(2))
            .collect();
        if err.kind() == ErrorKind::PreconditionFailed && !users.is_empty() {
            return Err(op
                .precondition(
                    name,
                    format!("load balancer {} forwards to it", users.join(", ")),
                )
                .with_source(err));
        }
        Err(err)
    }

    async fn register_targets(&self, group: &str, targets: Vec<String>) -> Result<()> {
        let op = op("register_targets");
        let parsed = targets
            .iter()
            .map(|t| parse_target(op, t))
            .collect::<Result<Vec<_>>>()?;
        let g = self.group(op, group).await?;
        if parsed.is_empty() {
            return Ok(());
        }
        let arn = g
            .target_group_arn()
            .ok_or_else(|| op.internal(group, "ELBv2 described a target group without ARN"))?;
        let descriptions = parsed.iter().map(describe_target).collect();
        self.elb
            .register_targets()
            .target_group_arn(arn)
            .set_targets(Some(descriptions))
            .send()
            .await
            .map_err(|e| map(op, group, e))?;
        Ok(())
    }

    async fn deregister_targets(&self, group: &str, targets: Vec<String>) -> Result<()> {
        let op = op("deregister_targets");
        let g = self.group(op, group).await?;
        let arn = g
            .target_group_arn()
            .ok_or_else(|| op.internal(group, "ELBv2 described a target group without ARN"))?;
        // Only registered targets can leave (as locally); a draining one already left.
        let registered: Vec<SocketAddr> = self
            .health(op, group, arn)
            .await?
            .iter()
            .filter(|s| s.health != TargetHealth::Draining)
            .filter_map(|s| s.target.parse().ok())
            .collect();
        let mut leaving = Vec::with_capacity(targets.len());
        for t in &targets {
            match t.parse::<SocketAddr>() {
                Ok(sock) if registered.contains(&sock) => leaving.push(sock),
                _ => return Err(op.not_found(t, format!("not a target of {group}"))),
            }
        }
        if leaving.is_empty() {
            return Ok(());
        }
        self.elb
            .deregister_targets()
            .target_group_arn(arn)
            .set_targets(Some(leaving.iter().map(describe_target).collect()))
            .send()
            .await
            .map_err(|e| map(op, group, e))?;
        Ok(())
    }

    async fn target_health(&self, group: &str) -> Result<Vec<TargetStatus>> {
        let op = op("target_health");
        let g = self.group(op, group).await?;
        let arn = g
            .target_group_arn()
            .ok_or_else(|| op.internal(group, "ELBv2 described a target group without ARN"))?;
        self.health(op, group, arn).await
    }

    async fn create_load_balancer(&self, spec: LoadBalancerSpec) -> Result<LoadBalancerInfo> {
        let op = op("create_load_balancer");
        let name = spec.name.as_str();
        validate_name(op, "load balancer", name)?;
        let Some(first) = spec.listeners.first() else {
            return Err(op.invalid(name, "a load balancer needs at least one listener"));
        };
        let protocol = first.protocol;
        if spec.listeners.iter().any(|l| l.protocol != protocol) {
            return Err(op.unsupported(format!(
                "load balancer {name}: an ELBv2 load balancer is either an application (HTTP) \
                 or a network (TCP) load balancer; put HTTP and TCP listeners on two"
            )));
        }
        let mut explicit = BTreeSet::new();
        for l in &spec.listeners {
            if l.port != 0 && !explicit.insert(l.port) {
                return Err(op.invalid(name, format!("two listeners on port {}", l.port)));
            }
        }
        let mut forwards = Vec::with_capacity(spec.listeners.len());
        for l in &spec.listeners {
            forwards.push(
                self.resolve_forward(op, name, l.protocol, &l.forward)
                    .await?,
            );
        }
        if self.find_lb(op, name).await?.is_some() {
            return Err(op.already_exists(name, "the load balancer exists"));
        }
        let ports = pick_ports(op, name, &spec.listeners)?;
        let (subnets, default_subnets) = if spec.subnets.is_empty() {
            (self.defaults(op).await?.subnets.clone(), true)
        } else {
            (spec.subnets.clone(), false)
        };
        let token = random_token();
        let mut tags = vec![tag(TOKEN, &token)];
        tags.extend(chunk_tags(LISTENERS, &layout(&spec.listeners, &ports)));
        if default_subnets {
            tags.push(tag(SUBNETS, DEFAULT));
        }
        if spec.security_groups.is_empty() {
            tags.push(tag(SECURITY_GROUPS, DEFAULT));
        }
        let kind = match protocol {
            Protocol::Http => LoadBalancerTypeEnum::Application,
            Protocol::Tcp => LoadBalancerTypeEnum::Network,
        };
        let mut req = self
            .elb
            .create_load_balancer()
            .name(name)
            .r#type(kind)
            .set_subnets(Some(subnets))
            .set_tags(Some(tags));
        if !spec.security_groups.is_empty() {
            req = req.set_security_groups(Some(spec.security_groups.clone()));
        }
        let out = req.send().await.map_err(|e| map(op, name, e))?;
        let arn = out
            .load_balancers()
            .first()
            .and_then(|l| l.load_balancer_arn())
            .ok_or_else(|| op.internal(name, "CreateLoadBalancer answered no load balancer"))?
            .to_owned();
        if self.tags(op, name, &arn).await?.get(TOKEN) != Some(&token) {
            return Err(op.already_exists(name, "the load balancer exists"));
        }
        for ((l, port), forward) in spec.listeners.iter().zip(&ports).zip(&forwards) {
            let made = self
                .elb
                .create_listener()
                .load_balancer_arn(&arn)
                .protocol(elb_protocol(l.protocol))
                .port(i32::from(*port))
                .default_actions(forward_action(forward))
                .send()
                .await;
            if let Err(e) = made {
                self.roll_back(&arn).await;
                return Err(map(op, format!("{name}:{port}"), e));
            }
        }
        let lb = match self.wait_active(op, name).await {
            Ok(lb) => lb,
            Err(e) => {
                if e.kind() != ErrorKind::Timeout {
                    self.roll_back(&arn).await;
                }
                return Err(e);
            }
        };
        self.info(op, &lb).await
    }

    async fn set_weights(&self, lb: &str, port: u16, forward: Vec<(String, u32)>) -> Result<()> {
        let op = op("set_weights");
        let found = self.lb(op, lb).await?;
        let arn = found
            .load_balancer_arn()
            .ok_or_else(|| op.internal(lb, "ELBv2 described a load balancer without ARN"))?;
        let listeners = self.listeners(op, lb, arn).await?;
        let listener = listeners
            .iter()
            .find(|l| l.port() == Some(i32::from(port)))
            .ok_or_else(|| op.not_found(format!("{lb}:{port}"), "no listener on that port"))?;
        let protocol = listener.protocol().and_then(protocol_of).ok_or_else(|| {
            op.unsupported(format!(
                "listener {lb}:{port} is neither HTTP nor TCP, which mvi does not manage"
            ))
        })?;
        let groups = self.resolve_forward(op, lb, protocol, &forward).await?;
        let listener_arn = listener
            .listener_arn()
            .ok_or_else(|| op.internal(lb, "ELBv2 described a listener without ARN"))?;
        self.elb
            .modify_listener()
            .listener_arn(listener_arn)
            .default_actions(forward_action(&groups))
            .send()
            .await
            .map_err(|e| map(op, format!("{lb}:{port}"), e))?;
        Ok(())
    }

    async fn metric(&self, lb: &str, group: Option<&str>, name: &str) -> Result<MetricId> {
        let op = op("metric");
        validate_name(op, "load balancer", lb)?;
        let found = self.lb(op, lb).await?;
        let arn = found
            .load_balancer_arn()
            .ok_or_else(|| op.internal(lb, "ELBv2 described a load balancer without ARN"))?;
        let namespace = match found.r#type() {
            Some(LoadBalancerTypeEnum::Network) => "AWS/NetworkELB",
            _ => "AWS/ApplicationELB",
        };
        // CloudWatch names them by the ARN's end: `app/<name>/<id>`, `targetgroup/<name>/<id>`.
        let mut id = MetricId::new(namespace, name)
            .dimension("LoadBalancer", arn_suffix(arn, ":loadbalancer/"));
        if let Some(g) = group {
            let tg = self.group(op, g).await?;
            let tg_arn = tg
                .target_group_arn()
                .ok_or_else(|| op.internal(g, "ELBv2 described a target group without ARN"))?;
            id = id.dimension("TargetGroup", arn_suffix(tg_arn, ":"));
        }
        Ok(id)
    }

    async fn describe_load_balancer(&self, name: &str) -> Result<LoadBalancerInfo> {
        let op = op("describe_load_balancer");
        let lb = self.lb(op, name).await?;
        self.info(op, &lb).await
    }

    async fn list_load_balancers(&self) -> Result<Vec<LoadBalancerInfo>> {
        let op = op("list_load_balancers");
        let mut all = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let out = self
                .elb
                .describe_load_balancers()
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|e| map(op, "load balancers", e))?;
            all.extend(out.load_balancers().iter().cloned());
            match out.next_marker() {
                Some(m) if !m.is_empty() => marker = Some(m.to_owned()),
                _ => break,
            }
        }
        let mut infos = Vec::with_capacity(all.len());
        for lb in &all {
            // Gateway load balancers carry no HTTP or TCP listeners: not ours to show.
            if !matches!(
                lb.r#type(),
                Some(LoadBalancerTypeEnum::Application | LoadBalancerTypeEnum::Network)
            ) {
                continue;
            }
            match self.info(op, lb).await {
                Ok(info) => infos.push(info),
                // Deleted between the listing and its description.
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(infos)
    }

    async fn delete_load_balancer(&self, name: &str) -> Result<()> {
        let op = op("delete_load_balancer");
        let lb = self.lb(op, name).await?;
        let arn = lb
            .load_balancer_arn()
            .ok_or_else(|| op.internal(name, "ELBv2 described a load balancer without ARN"))?;
        self.elb
            .delete_load_balancer()
            .load_balancer_arn(arn)
            .send()
            .await
            .map_err(|e| map(op, name, e))?;
        self.wait_gone(op, name).await
    }
}

/// What follows `after` in an ARN (its last occurrence): the name CloudWatch gives the
/// resource in its dimensions.
fn arn_suffix(arn: &str, after: &str) -> String {
    arn.rsplit_once(after)
        .map(|(_, rest)| rest.to_string())
        .unwrap_or_else(|| arn.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mvi_core::container::HealthCheck;

    fn listener(port: u16) -> ListenerSpec {
        ListenerSpec {
            protocol: Protocol::Http,
            port,
            forward: vec![("g".into(), 1)],
        }
    }

    #[test]
    fn picked_ports_skip_taken_ones_and_round_trip() {
        let o = op("test");
        let ls = vec![listener(0), listener(80), listener(0), listener(443)];
        let ports = pick_ports(o, "lb", &ls).unwrap();
        assert_eq!(ports, vec![81, 80, 82, 443]);
        let value = layout(&ls, &ports);
        assert_eq!(value, "0=81 80 0=82 443");
        assert_eq!(
            parse_layout(&value),
            vec![(81, true), (80, false), (82, true), (443, false)]
        );
    }

    #[test]
    fn long_values_split_over_tags_and_join_again() {
        let value = (0..100)
            .map(|i| format!("0={}", 1000 + i))
            .collect::<Vec<_>>();
        let value = value.join(" ");
        let tags = chunk_tags(LISTENERS, &value);
        assert!(tags.len() > 1);
        assert!(
            tags.iter()
                .all(|t| t.value().unwrap_or("").len() <= MAX_TAG_VALUE)
        );
        let map: HashMap<String, String> = tags
            .iter()
            .map(|t| {
                (
                    t.key().unwrap_or("").to_owned(),
                    t.value().unwrap_or("").to_owned(),
                )
            })
            .collect();
        assert_eq!(chunked(&map, LISTENERS), value);
    }

    #[test]
    fn health_checks_are_raised_to_elbv2_floors() {
        let mut spec = TargetGroupSpec::new("g", Protocol::Http);
        spec.health_check = HealthCheck {
            path: "/health".into(),
            interval: Duration::from_millis(200),
            timeout: Duration::from_millis(200),
            healthy_threshold: 1,
            unhealthy_threshold: 2,
        };
        assert_eq!(health_settings(&spec), (5, 2, 2, 2));
        spec.health_check.interval = Duration::from_secs(6);
        spec.health_check.timeout = Duration::from_secs(6);
        assert_eq!(health_settings(&spec), (6, 5, 2, 2));
        spec.health_check = HealthCheck::default();
        assert_eq!(health_settings(&spec), (5, 2, 2, 2));
    }

    #[test]
    fn cloudwatch_dimensions_are_arn_suffixes() {
        let lb = "arn:aws:elasticloadbalancing:eu-west-1:1:loadbalancer/app/front/50dc6c495c0c9188";
        assert_eq!(
            arn_suffix(lb, ":loadbalancer/"),
            "app/front/50dc6c495c0c9188"
        );
        let tg = "arn:aws:elasticloadbalancing:eu-west-1:1:targetgroup/web/73e2d6bc24d8a067";
        assert_eq!(arn_suffix(tg, ":"), "targetgroup/web/73e2d6bc24d8a067");
    }

    #[test]
    fn group_names_come_out_of_arns() {
        assert_eq!(
            group_name_of("arn:aws:elasticloadbalancing:eu-west-1:1:targetgroup/blue-1/abc"),
            "blue-1"
        );
    }
}
