//! Load Balancer: listeners forwarding to weighted target groups with health checks (ELBv2 on
//! AWS, a real HTTP/TCP proxy on a loopback port locally).

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::container::HealthCheck;
use crate::error::{Op, Result};
use crate::metric::MetricId;

/// The names of the metrics every backend's load balancers report (ELBv2's).
pub mod metric_names {
    /// Requests (TCP: connections).
    pub const REQUESTS: &str = "RequestCount";
    /// Target answers with a 5xx status.
    pub const TARGET_5XX: &str = "HTTPCode_Target_5XX_Count";
    /// 5xx answers of the load balancer itself (no target, target unreachable).
    pub const ELB_5XX: &str = "HTTPCode_ELB_5XX_Count";
    /// Time to the target's response.
    pub const RESPONSE_TIME: &str = "TargetResponseTime";
    /// The response-time histogram (where a backend keeps one): a `Count` per bucket.
    pub const RESPONSE_TIME_HISTOGRAM: &str = "TargetResponseTimeHistogram";
    /// The histogram's bucket dimension: the bucket's upper bound in milliseconds, `+Inf`.
    pub const BUCKET_DIMENSION: &str = "UpperBoundMs";
}

/// Listener protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Protocol {
    /// HTTP/1.1 (an application load balancer).
    Http,
    /// Raw TCP (a network load balancer).
    Tcp,
}

/// How a target group spreads requests over its healthy targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Algorithm {
    /// In turn.
    #[default]
    RoundRobin,
    /// To the target with the fewest requests in flight.
    LeastOutstandingRequests,
}

/// A target group's definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TargetGroupSpec {
    /// Name (1–32 letters, digits and hyphens).
    pub name: String,
    /// Protocol to the targets.
    pub protocol: Protocol,
    /// VPC of the targets.
    pub vpc: Option<String>,
    /// Health check.
    pub health_check: HealthCheck,
    /// Algorithm.
    pub algorithm: Algorithm,
    /// Time a deregistered target keeps serving in-flight requests.
    pub deregistration_delay: std::time::Duration,
}

impl TargetGroupSpec {
    /// A group named `name` of `protocol` targets: the default health check, round robin, and
    /// a 300 s deregistration delay (ELBv2's defaults).
    pub fn new(name: impl Into<String>, protocol: Protocol) -> Self {
        TargetGroupSpec {
            name: name.into(),
            protocol,
            vpc: None,
            health_check: HealthCheck::default(),
            algorithm: Algorithm::RoundRobin,
            deregistration_delay: std::time::Duration::from_secs(300),
        }
    }
}

/// A listener forwarding to target groups by weight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerSpec {
    /// Protocol.
    pub protocol: Protocol,
    /// Port (0 locally: pick a free one).
    pub port: u16,
    /// `(target group, weight)`; weights are relative, 0–999.
    pub forward: Vec<(String, u32)>,
}

/// A load balancer's definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LoadBalancerSpec {
    /// Name (1–32 letters, digits and hyphens).
    pub name: String,
    /// Subnets it serves from.
    pub subnets: Vec<String>,
    /// Its security groups.
    pub security_groups: Vec<String>,
    /// Listeners.
    pub listeners: Vec<ListenerSpec>,
}

impl LoadBalancerSpec {
    /// A load balancer named `name` with `listeners`, no subnets and no security groups.
    pub fn new(name: impl Into<String>, listeners: Vec<ListenerSpec>) -> Self {
        LoadBalancerSpec {
            name: name.into(),
            subnets: Vec::new(),
            security_groups: Vec::new(),
            listeners,
        }
    }
}

/// A load balancer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadBalancerInfo {
    /// Its definition.
    pub spec: LoadBalancerSpec,
    /// DNS name or `127.0.0.1`.
    pub dns_name: String,
    /// The listeners' actual addresses (`http://127.0.0.1:PORT`).
    pub urls: Vec<String>,
}

/// A target's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TargetHealth {
    /// Being checked for the first time.
    Initial,
    /// Gets traffic.
    Healthy,
    /// Gets no traffic.
    Unhealthy,
    /// Deregistered, finishing in-flight requests.
    Draining,
}

/// A target (`host:port`) and its health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetStatus {
    /// `host:port`.
    pub target: String,
    /// Health.
    pub health: TargetHealth,
    /// Why (last check result).
    pub reason: String,
}

/// Load balancers and target groups.
#[async_trait]
pub trait LoadBalancers: fmt::Debug + Send + Sync + 'static {
    /// Creates a target group.
    async fn create_target_group(&self, spec: TargetGroupSpec) -> Result<()>;
    /// Deletes a target group (not while a listener forwards to it).
    async fn delete_target_group(&self, name: &str) -> Result<()>;
    /// Registers targets (`host:port`).
    async fn register_targets(&self, group: &str, targets: Vec<String>) -> Result<()>;
    /// Deregisters targets; they drain in-flight requests first.
    async fn deregister_targets(&self, group: &str, targets: Vec<String>) -> Result<()>;
    /// Targets of a group and their health.
    async fn target_health(&self, group: &str) -> Result<Vec<TargetStatus>>;

    /// Creates a load balancer and starts its listeners.
    async fn create_load_balancer(&self, spec: LoadBalancerSpec) -> Result<LoadBalancerInfo>;
    /// Changes the weights of a listener's target groups (canary, blue-green).
    async fn set_weights(&self, lb: &str, port: u16, forward: Vec<(String, u32)>) -> Result<()>;
    /// Describes a load balancer.
    async fn describe_load_balancer(&self, name: &str) -> Result<LoadBalancerInfo>;
    /// Every load balancer.
    async fn list_load_balancers(&self) -> Result<Vec<LoadBalancerInfo>>;
    /// Stops and deletes a load balancer.
    async fn delete_load_balancer(&self, name: &str) -> Result<()>;
    /// The identity of metric `name` (see [`metric_names`]) of load balancer `lb`, for
    /// target group `group` or (`None`) the whole load balancer, as this backend stores it
    /// in the Metric service (locally namespace `mvi/LoadBalancer` with the names as
    /// dimensions; on AWS `AWS/ApplicationELB` with ELBv2's ARN suffixes).
    async fn metric(&self, lb: &str, group: Option<&str>, name: &str) -> Result<MetricId>;
}

/// Checks a load balancer or target group name: 1–32 letters, digits and hyphens, not
/// starting or ending with a hyphen (ELBv2's rule; both backends apply it).
pub fn validate_name(op: Op, what: &str, name: &str) -> Result<()> {
    let ok = (1..=32).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(op.invalid(
            name,
            format!("{what} names must be 1 to 32 letters, digits and hyphens, not starting or ending with a hyphen"),
        ))
    }
}
