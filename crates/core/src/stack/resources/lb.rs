//! Load balancer resources: target groups and load balancers.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{Input, Output, declare, found, gone_ok, map_input, push_input, resource_args};
use crate::container::HealthCheck;
use crate::error::{Op, Result, Service};
use crate::lb::{
    Algorithm, ListenerSpec, LoadBalancerInfo, LoadBalancerSpec, Protocol, TargetGroupSpec,
};
use crate::stack::{Cx, Resource, ResourceOptions, Stack};

fn check_lb_name(op: Op, what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !ok {
        return Err(op.invalid(
            name,
            format!("property \"name\": {what} names are 1 to 32 letters, digits and hyphens"),
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Target group

resource_args! {
    /// Arguments of a [`TargetGroup`].
    pub struct TargetGroupArgs => TargetGroupSpecArgs {
        /// Its name (1–32 letters, digits and hyphens).
        name: String,
        /// Protocol to the targets.
        protocol: Option<Protocol>,
        /// VPC of the targets.
        vpc: Option<String>,
        /// Health check.
        health_check: HealthCheck,
        /// Algorithm.
        algorithm: Algorithm,
        /// Time a deregistered target keeps serving in-flight requests.
        deregistration_delay: Duration,
    }
}

impl TargetGroupArgs {
    /// A group from a definition.
    pub fn new(spec: TargetGroupSpec) -> Self {
        TargetGroupArgs {
            name: Input::Value(spec.name),
            protocol: Input::Value(Some(spec.protocol)),
            vpc: Input::Value(spec.vpc),
            health_check: Input::Value(spec.health_check),
            algorithm: Input::Value(spec.algorithm),
            deregistration_delay: Input::Value(spec.deregistration_delay),
        }
    }

    /// Places its targets in `vpc` (an id).
    pub fn vpc(mut self, vpc: impl Into<Input<String>>) -> Self {
        self.vpc = map_input(vpc.into(), Some);
        self
    }
}

/// A target group.
#[derive(Debug, Clone)]
pub struct TargetGroup {
    /// Its URN.
    pub urn: String,
    /// Its name.
    pub name: Output<String>,
}

impl TargetGroup {
    /// Declares a target group.
    pub fn new(stack: &Stack, name: &str, args: TargetGroupArgs) -> Result<TargetGroup> {
        Self::with(stack, name, args, ResourceOptions::default())
    }

    /// Declares a target group with options.
    pub fn with(
        stack: &Stack,
        name: &str,
        args: TargetGroupArgs,
        opts: ResourceOptions,
    ) -> Result<TargetGroup> {
        let h = declare::<TargetGroupResource>(stack, name, &args, opts)?;
        Ok(TargetGroup {
            name: h.output("name"),
            urn: h.urn().to_string(),
        })
    }
}

/// Outputs of a target group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetGroupOutputs {
    /// Its name.
    pub name: String,
}

/// The provider of [`TargetGroup`].
#[derive(Debug)]
pub struct TargetGroupResource;

async fn target_group_exists(cx: Cx<'_>, name: &str) -> Result<bool> {
    Ok(found(cx.cloud.load_balancers()?.target_health(name).await)?.is_some())
}

#[async_trait]
impl Resource for TargetGroupResource {
    const TYPE: &'static str = "mvi:lb:TargetGroup";
    // The service has no call that changes a target group.
    const REPLACE_ON: &'static [&'static str] = &[
        "name",
        "protocol",
        "vpc",
        "health_check",
        "algorithm",
        "deregistration_delay",
    ];
    type Args = TargetGroupSpecArgs;
    type Outputs = TargetGroupOutputs;

    fn check(args: &TargetGroupSpecArgs) -> Result<()> {
        let op = Op::new(Service::Stack, "check");
        check_lb_name(op, "target group", &args.name)?;
        if args.protocol.is_none() {
            return Err(op.invalid(&args.name, "property \"protocol\" is required"));
        }
        let hc = &args.health_check;
        if hc.interval.is_zero() || hc.timeout.is_zero() || hc.timeout > hc.interval {
            return Err(op.invalid(
                &args.name,
                "property \"health_check\": interval and timeout must be positive, the timeout \
                 no longer than the interval",
            ));
        }
        if hc.healthy_threshold == 0 || hc.unhealthy_threshold == 0 {
            return Err(op.invalid(
                &args.name,
                "property \"health_check\": thresholds must be at least 1",
            ));
        }
        Ok(())
    }

    async fn create(
        cx: Cx<'_>,
        args: &TargetGroupSpecArgs,
    ) -> Result<(String, TargetGroupOutputs)> {
        let op = Op::new(Service::Stack, "create");
        let protocol = args
            .protocol
            .ok_or_else(|| op.invalid(&args.name, "property \"protocol\" is required"))?;
        let mut spec = TargetGroupSpec::new(&args.name, protocol);
        spec.vpc = args.vpc.clone();
        spec.health_check = args.health_check.clone();
        spec.algorithm = args.algorithm;
        spec.deregistration_delay = args.deregistration_delay;
        cx.cloud.load_balancers()?.create_target_group(spec).await?;
        Ok((
            args.name.clone(),
            TargetGroupOutputs {
                name: args.name.clone(),
            },
        ))
    }

    async fn find(cx: Cx<'_>, args: &TargetGroupSpecArgs) -> Result<Option<String>> {
        Ok(target_group_exists(cx, &args.name)
            .await?
            .then(|| args.name.clone()))
    }

    async fn read(
        cx: Cx<'_>,
        id: &str,
        args: &TargetGroupSpecArgs,
    ) -> Result<Option<(TargetGroupSpecArgs, TargetGroupOutputs)>> {
        // The service does not describe a group's settings: only whether it exists.
        Ok(target_group_exists(cx, id).await?.then(|| {
            (
                args.clone(),
                TargetGroupOutputs {
                    name: id.to_string(),
                },
            )
        }))
    }

    async fn update(
        _: Cx<'_>,
        id: &str,
        _: &TargetGroupSpecArgs,
        _: &TargetGroupSpecArgs,
    ) -> Result<TargetGroupOutputs> {
        Ok(TargetGroupOutputs {
            name: id.to_string(),
        })
    }

    async fn delete(cx: Cx<'_>, id: &str, _: &TargetGroupSpecArgs) -> Result<()> {
        gone_ok(cx.cloud.load_balancers()?.delete_target_group(id).await)
    }
}

// ---------------------------------------------------------------------------------------
// Load balancer

/// A listener of a [`LoadBalancer`]: what it listens on and the target groups it forwards to.
/// The weights are a separate argument, which changes in place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listener {
    /// Protocol.
    pub protocol: Protocol,
    /// Port (0 locally: pick a free one).
    pub port: u16,
    /// Target group names.
    pub target_groups: Vec<String>,
}

resource_args! {
    /// Arguments of a [`LoadBalancer`].
    pub struct LoadBalancerArgs => LoadBalancerSpecArgs {
        /// Its name (1–32 letters, digits and hyphens).
        name: String,
        /// Subnets it serves from.
        subnets: Vec<String>,
        /// Its security groups.
        security_groups: Vec<String>,
        /// Listeners (a change replaces the load balancer).
        listeners: Vec<Listener>,
        /// Per listener, the weight of each of its target groups (changed in place).
        weights: Vec<Vec<u32>>,
    }
}

impl LoadBalancerArgs {
    /// A load balancer named `name` with no listeners yet.
    pub fn new(name: impl Into<Input<String>>) -> Self {
        LoadBalancerArgs {
            name: name.into(),
            subnets: Input::Value(Vec::new()),
            security_groups: Input::Value(Vec::new()),
            listeners: Input::Value(Vec::new()),
            weights: Input::Value(Vec::new()),
        }
    }

    /// A listener on `port` forwarding to target groups (names, e.g. a [`TargetGroup`]'s
    /// `name` output) by weight.
    pub fn listener<G: Into<Input<String>>>(
        mut self,
        protocol: Protocol,
        port: u16,
        forward: impl IntoIterator<Item = (G, u32)>,
    ) -> Self {
        let mut groups: Input<Vec<String>> = Input::Value(Vec::new());
        let mut weights = Vec::new();
        for (g, w) in forward {
            groups = push_input(groups, g.into());
            weights.push(w);
        }
        let listener = map_input(groups, move |target_groups| Listener {
            protocol,
            port,
            target_groups,
        });
        self.listeners = push_input(self.listeners, listener);
        self.weights = push_input(self.weights, Input::Value(weights));
        self
    }

    /// Adds a subnet (an id).
    pub fn subnet(mut self, id: impl Into<Input<String>>) -> Self {
        self.subnets = push_input(self.subnets, id.into());
        self
    }

    /// Adds a security group (an id).
    pub fn security_group(mut self, id: impl Into<Input<String>>) -> Self {
        self.security_groups = push_input(self.security_groups, id.into());
        self
    }
}

/// A load balancer.
#[derive(Debug, Clone)]
pub struct LoadBalancer {
    /// Its URN.
    pub urn: String,
    /// Its DNS name (`127.0.0.1` locally).
    pub dns_name: Output<String>,
    /// Its listeners' URLs.
    pub urls: Output<Vec<String>>,
    /// The first listener's URL.
    pub url: Output<String>,
}

impl LoadBalancer {
    /// Declares a load balancer.
    pub fn new(stack: &Stack, name: &str, args: LoadBalancerArgs) -> Result<LoadBalancer> {
        Self::with(stack, name, args, ResourceOptions::default())
    }

    /// Declares a load balancer with options.
    pub fn with(
        stack: &Stack,
        name: &str,
        args: LoadBalancerArgs,
        opts: ResourceOptions,
    ) -> Result<LoadBalancer> {
        let h = declare::<LoadBalancerResource>(stack, name, &args, opts)?;
        Ok(LoadBalancer {
            dns_name: h.output("dns_name"),
            urls: h.output("urls"),
            url: h.output("url"),
            urn: h.urn().to_string(),
        })
    }
}

/// Outputs of a load balancer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadBalancerOutputs {
    /// Its DNS name.
    pub dns_name: String,
    /// Its listeners' URLs.
    pub urls: Vec<String>,
    /// The first URL.
    pub url: String,
}

fn lb_outputs(info: LoadBalancerInfo) -> LoadBalancerOutputs {
    LoadBalancerOutputs {
        url: info.urls.first().cloned().unwrap_or_default(),
        dns_name: info.dns_name,
        urls: info.urls,
    }
}

fn forward(l: &Listener, weights: Option<&Vec<u32>>) -> Vec<(String, u32)> {
    l.target_groups
        .iter()
        .enumerate()
        .map(|(i, g)| {
            (
                g.clone(),
                weights.and_then(|w| w.get(i)).copied().unwrap_or(1),
            )
        })
        .collect()
}

/// The provider of [`LoadBalancer`].
#[derive(Debug)]
pub struct LoadBalancerResource;

#[async_trait]
impl Resource for LoadBalancerResource {
    const TYPE: &'static str = "mvi:lb:LoadBalancer";
    const REPLACE_ON: &'static [&'static str] =
        &["name", "subnets", "security_groups", "listeners"];
    type Args = LoadBalancerSpecArgs;
    type Outputs = LoadBalancerOutputs;

    fn check(args: &LoadBalancerSpecArgs) -> Result<()> {
        let op = Op::new(Service::Stack, "check");
        check_lb_name(op, "load balancer", &args.name)?;
        if args.listeners.is_empty() {
            return Err(op.invalid(&args.name, "property \"listeners\": add at least one"));
        }
        if args.weights.len() != args.listeners.len() {
            return Err(op.invalid(
                &args.name,
                "property \"weights\" must hold one list per listener",
            ));
        }
        for (i, (l, w)) in args.listeners.iter().zip(&args.weights).enumerate() {
            if l.target_groups.is_empty() {
                return Err(op.invalid(
                    &args.name,
                    format!("property \"listeners\"[{i}] forwards to no target group"),
                ));
            }
            if l.target_groups.iter().any(String::is_empty) {
                return Err(op.invalid(
                    &args.name,
                    format!("property \"listeners\"[{i}] names an empty target group"),
                ));
            }
            if w.len() != l.target_groups.len() {
                return Err(op.invalid(
                    &args.name,
                    format!("property \"weights\"[{i}] must hold one weight per target group"),
                ));
            }
            if w.iter().any(|w| *w > 999) {
                return Err(op.invalid(
                    &args.name,
                    format!("property \"weights\"[{i}]: weights are 0 to 999"),
                ));
            }
        }
        Ok(())
    }

    async fn create(
        cx: Cx<'_>,
        args: &LoadBalancerSpecArgs,
    ) -> Result<(String, LoadBalancerOutputs)> {
        let listeners = args
            .listeners
            .iter()
            .enumerate()
            .map(|(i, l)| ListenerSpec {
                protocol: l.protocol,
                port: l.port,
                forward: forward(l, args.weights.get(i)),
            })
            .collect();
        let mut spec = LoadBalancerSpec::new(&args.name, listeners);
        spec.subnets = args.subnets.clone();
        spec.security_groups = args.security_groups.clone();
        let info = cx
            .cloud
            .load_balancers()?
            .create_load_balancer(spec)
            .await?;
        Ok((args.name.clone(), lb_outputs(info)))
    }

    async fn find(cx: Cx<'_>, args: &LoadBalancerSpecArgs) -> Result<Option<String>> {
        let lb = found(
            cx.cloud
                .load_balancers()?
                .describe_load_balancer(&args.name)
                .await,
        )?;
        Ok(lb.map(|_| args.name.clone()))
    }

    async fn read(
        cx: Cx<'_>,
        id: &str,
        args: &LoadBalancerSpecArgs,
    ) -> Result<Option<(LoadBalancerSpecArgs, LoadBalancerOutputs)>> {
        let Some(info) = found(cx.cloud.load_balancers()?.describe_load_balancer(id).await)? else {
            return Ok(None);
        };
        let s = &info.spec;
        let listeners = s
            .listeners
            .iter()
            .zip(
                args.listeners
                    .iter()
                    .map(Some)
                    .chain(std::iter::repeat(None)),
            )
            .map(|(l, declared)| Listener {
                protocol: l.protocol,
                // A port picked by the backend (declared 0) stays 0 as an argument.
                port: match declared {
                    Some(d) if d.port == 0 => 0,
                    _ => l.port,
                },
                target_groups: l.forward.iter().map(|(g, _)| g.clone()).collect(),
            })
            .collect();
        let weights = s
            .listeners
            .iter()
            .map(|l| l.forward.iter().map(|(_, w)| *w).collect())
            .collect();
        let spec = LoadBalancerSpecArgs {
            name: s.name.clone(),
            subnets: s.subnets.clone(),
            security_groups: s.security_groups.clone(),
            listeners,
            weights,
        };
        Ok(Some((spec, lb_outputs(info))))
    }

    async fn update(
        cx: Cx<'_>,
        id: &str,
        old: &LoadBalancerSpecArgs,
        new: &LoadBalancerSpecArgs,
    ) -> Result<LoadBalancerOutputs> {
        // Only the weights differ (a listener change replaces the load balancer).
        let lbs = cx.cloud.load_balancers()?;
        let info = lbs.describe_load_balancer(id).await?;
        for (i, l) in new.listeners.iter().enumerate() {
            if old.weights.get(i) == new.weights.get(i) {
                continue;
            }
            // The actual port: declared, or picked by the backend (from the listener's URL).
            let port = if l.port != 0 {
                l.port
            } else {
                info.urls
                    .get(i)
                    .and_then(|u| u.trim_end_matches('/').rsplit(':').next())
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0)
            };
            lbs.set_weights(id, port, forward(l, new.weights.get(i)))
                .await?;
        }
        Ok(lb_outputs(lbs.describe_load_balancer(id).await?))
    }

    async fn delete(cx: Cx<'_>, id: &str, _: &LoadBalancerSpecArgs) -> Result<()> {
        gone_ok(cx.cloud.load_balancers()?.delete_load_balancer(id).await)
    }
}
