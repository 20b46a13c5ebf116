//! Container: long-running services, one-off tasks and scheduled tasks (ECS on AWS, real OS
//! processes placed on simulated VMs locally).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::common::Timestamp;
use crate::error::{Op, Result};

/// A secret given to a container as an environment variable, decrypted at start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRef {
    /// The environment variable.
    pub env: String,
    /// The ciphertext, made by the Crypto service (its key id is inside).
    pub ciphertext: bytes::Bytes,
}

/// An HTTP health check of a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// Path to GET (`/healthz`); 2xx is healthy.
    pub path: String,
    /// Time between checks.
    pub interval: Duration,
    /// Time a check may take.
    pub timeout: Duration,
    /// Consecutive successes to become healthy.
    pub healthy_threshold: u32,
    /// Consecutive failures to become unhealthy.
    pub unhealthy_threshold: u32,
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            path: "/".into(),
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            healthy_threshold: 2,
            unhealthy_threshold: 2,
        }
    }
}

/// What a service or task runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ContainerSpec {
    /// The image (`repository:tag` or `repository@sha256:...`).
    pub image: String,
    /// Overrides the image's command, if not empty.
    pub command: Vec<String>,
    /// Environment, added to the image's.
    pub env: BTreeMap<String, String>,
    /// Secrets, decrypted into the environment at start.
    pub secrets: Vec<SecretRef>,
    /// The port the program listens on (given to it as `PORT`), if it serves.
    pub port: Option<u16>,
    /// CPU, in thousandths of a vCPU (256 = a quarter).
    pub cpu_millis: u32,
    /// Memory, in MiB.
    pub memory_mib: u32,
    /// Health check, if any.
    pub health_check: Option<HealthCheck>,
}

impl ContainerSpec {
    /// Runs `image` with a quarter vCPU and 512 MiB.
    pub fn new(image: impl Into<String>) -> Self {
        ContainerSpec {
            image: image.into(),
            command: Vec::new(),
            env: BTreeMap::new(),
            secrets: Vec::new(),
            port: None,
            cpu_millis: 256,
            memory_mib: 512,
            health_check: None,
        }
    }
}

/// A long-running service's definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ServiceSpec {
    /// Name.
    pub name: String,
    /// What each replica runs.
    pub container: ContainerSpec,
    /// How many replicas.
    pub replicas: u32,
    /// Target group the replicas register with, if behind a load balancer.
    pub target_group: Option<String>,
    /// Subnets (hence zones) to place replicas in; empty means anywhere.
    pub subnets: Vec<String>,
    /// Security groups of the replicas.
    pub security_groups: Vec<String>,
}

impl ServiceSpec {
    /// `replicas` replicas of `container`, named `name`.
    pub fn new(name: impl Into<String>, container: ContainerSpec, replicas: u32) -> Self {
        ServiceSpec {
            name: name.into(),
            container,
            replicas,
            target_group: None,
            subnets: Vec::new(),
            security_groups: Vec::new(),
        }
    }
}

/// State of one replica or task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum InstanceState {
    /// Being placed or started.
    Pending,
    /// Running; health not (yet) known or no health check.
    Running,
    /// Running and passing its health check.
    Healthy,
    /// Running and failing its health check.
    Unhealthy,
    /// Crashed and waiting to restart (with backoff).
    BackingOff,
    /// Stopped.
    Stopped,
}

/// One replica of a service, or one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerInstance {
    /// Its id.
    pub id: String,
    /// State.
    pub state: InstanceState,
    /// The VM it is placed on.
    pub vm: Option<String>,
    /// Where it listens (`127.0.0.1:PORT`), if it serves.
    pub address: Option<String>,
    /// Restarts after crashes.
    pub restarts: u32,
    /// When it started.
    pub started: Option<Timestamp>,
}

/// A service and its replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInfo {
    /// Its definition.
    pub spec: ServiceSpec,
    /// Its replicas.
    pub instances: Vec<ContainerInstance>,
}

/// The result of a one-off task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskResult {
    /// Task id.
    pub id: String,
    /// Exit code (`None` if killed by a signal).
    pub exit_code: Option<i32>,
    /// Log group and stream holding its output.
    pub log_stream: (String, String),
    /// Start and end.
    pub started: Timestamp,
    /// End.
    pub finished: Timestamp,
}

/// A task run on a cron schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ScheduleSpec {
    /// Name.
    pub name: String,
    /// Cron expression (`*/5 * * * *`, five fields, UTC).
    pub cron: String,
    /// What to run.
    pub container: ContainerSpec,
}

impl ScheduleSpec {
    /// Runs `container` on the cron schedule `cron`, named `name`.
    pub fn new(name: impl Into<String>, cron: impl Into<String>, container: ContainerSpec) -> Self {
        ScheduleSpec {
            name: name.into(),
            cron: cron.into(),
            container,
        }
    }
}

/// Container services and tasks.
#[async_trait]
pub trait Containers: fmt::Debug + Send + Sync + 'static {
    /// Creates a service and starts its replicas.
    async fn create_service(&self, spec: ServiceSpec) -> Result<ServiceInfo>;
    /// Replaces a service's definition (new image, env, ...): replicas are replaced in turn.
    async fn update_service(&self, spec: ServiceSpec) -> Result<ServiceInfo>;
    /// Changes the number of replicas.
    async fn scale_service(&self, name: &str, replicas: u32) -> Result<ServiceInfo>;
    /// Describes a service and its replicas.
    async fn describe_service(&self, name: &str) -> Result<ServiceInfo>;
    /// Every service.
    async fn list_services(&self) -> Result<Vec<ServiceInfo>>;
    /// Stops the replicas gracefully and deletes the service.
    async fn delete_service(&self, name: &str) -> Result<()>;

    /// Runs a one-off task to completion (or `timeout`) and returns its exit code.
    async fn run_task(
        &self,
        name: &str,
        spec: ContainerSpec,
        timeout: Duration,
    ) -> Result<TaskResult>;
    /// Creates or replaces a scheduled task.
    async fn put_schedule(&self, spec: ScheduleSpec) -> Result<()>;
    /// Deletes a scheduled task.
    async fn delete_schedule(&self, name: &str) -> Result<()>;
    /// Every scheduled task.
    async fn list_schedules(&self) -> Result<Vec<ScheduleSpec>>;
}

/// Replicas of one service at most, on every backend.
pub const MAX_REPLICAS: u32 = 100;

/// At most [`MAX_REPLICAS`] replicas for service `name`.
pub fn validate_replicas(op: Op, name: &str, replicas: u32) -> Result<()> {
    if replicas > MAX_REPLICAS {
        return Err(op.invalid(name, format!("at most {MAX_REPLICAS} replicas per service")));
    }
    Ok(())
}

/// Checks a service, task or schedule name: 1–`max` ASCII letters, digits, `-` and `_`
/// (the rule both backends apply, before any other work).
pub fn validate_name(op: Op, kind: &str, name: &str, max: usize) -> Result<()> {
    let ok = (1..=max).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !ok {
        return Err(op.invalid(
            name,
            format!("a {kind} name is 1–{max} letters, digits, hyphens and underscores"),
        ));
    }
    Ok(())
}

/// Checks a container spec: resources above zero, environment and secret variable names
/// without `=` or NUL, no NUL in the command, a health check with a path and non-zero
/// timings. Backends add their own limits after this (Fargate sizes on ECS).
pub fn validate_container(op: Op, resource: &str, c: &ContainerSpec) -> Result<()> {
    if c.cpu_millis == 0 || c.memory_mib == 0 {
        return Err(op.invalid(resource, "cpu_millis and memory_mib must be at least 1"));
    }
    let bad_name = |k: &str| k.is_empty() || k.contains('=') || k.contains('\0');
    for (k, v) in &c.env {
        if bad_name(k) || v.contains('\0') {
            return Err(op.invalid(
                resource,
                format!("bad environment variable {k:?}: names are non-empty, without '=' or NUL"),
            ));
        }
    }
    for s in &c.secrets {
        if bad_name(&s.env) {
            return Err(op.invalid(resource, format!("bad secret variable name {:?}", s.env)));
        }
    }
    if c.command.iter().any(|a| a.contains('\0')) {
        return Err(op.invalid(resource, "a command argument holds a NUL byte"));
    }
    if let Some(h) = &c.health_check
        && (!h.path.starts_with('/')
            || h.interval.is_zero()
            || h.timeout.is_zero()
            || h.healthy_threshold == 0
            || h.unhealthy_threshold == 0)
    {
        return Err(op.invalid(
                resource,
                "a health check needs a path starting with '/', a non-zero interval and timeout, and thresholds of at least 1",
            ));
    }
    Ok(())
}
