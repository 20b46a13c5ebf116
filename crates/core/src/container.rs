//! Container: long-running services, one-off tasks and scheduled tasks (ECS on AWS, real OS
//! processes placed on simulated VMs locally).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::common::Timestamp;
pub use crate::deploy::Deployment;
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
    /// Time between SIGTERM and SIGKILL when a replica stops (`None`: the backend's
    /// default, 10 s locally, 30 s on ECS).
    #[serde(default)]
    pub stop_timeout: Option<Duration>,
    /// What the program may do with the cloud's services through their AWS APIs: on AWS the
    /// task role's policy, locally the policy of an access key of the service's own, given
    /// to it with the endpoints' environment (docs/access.md). None: no credentials.
    #[serde(default)]
    pub grants: Vec<crate::access::Grant>,
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
            stop_timeout: None,
            grants: Vec::new(),
        }
    }

    /// Allows the program `grant` (a bucket, a table, a key, a log group, a namespace).
    pub fn grant(mut self, grant: crate::access::Grant) -> Self {
        self.grants.push(grant);
        self
    }
}

/// A long-running service's definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// How replicas move to a new revision (default: rolling, ECS's bounds).
    #[serde(default)]
    pub deployment: Deployment,
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
            deployment: Deployment::default(),
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
    /// The revision it runs.
    #[serde(default)]
    pub revision: u64,
    /// The revision set it belongs to ([`PRIMARY_SET`] for the service's own replicas).
    #[serde(default = "primary_set")]
    pub set: String,
}

fn primary_set() -> String {
    PRIMARY_SET.to_string()
}

/// A service and its replicas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceInfo {
    /// Its definition: the revision that runs when no deployment is in progress (the last
    /// good one).
    pub spec: ServiceSpec,
    /// The number of that revision.
    #[serde(default)]
    pub revision: u64,
    /// Its replicas, of every revision running.
    pub instances: Vec<ContainerInstance>,
    /// Its revision sets: the primary one (its own replicas) and any a deployment runs
    /// beside it.
    #[serde(default)]
    pub sets: Vec<RevisionSet>,
    /// The deployment in progress, if any.
    #[serde(default)]
    pub rollout: Option<Rollout>,
    /// Steady: no deployment in progress and the desired count of replicas of the recorded
    /// revision running and available (what ECS's `services-stable` waiter waits for: one
    /// deployment, its running count the desired count).
    #[serde(default)]
    pub stable: bool,
    /// What happened to the service lately (replicas started, healthy, drained, stopped,
    /// deployments and rollbacks), oldest first; at most [`MAX_EVENTS`].
    #[serde(default)]
    pub events: Vec<ServiceEvent>,
}

/// Events kept per service (as ECS keeps a service's last 100).
pub const MAX_EVENTS: usize = 100;

/// One thing that happened to a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceEvent {
    /// When.
    pub at: Timestamp,
    /// What, one sentence.
    pub message: String,
}

/// A deployment in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollout {
    /// The revision being deployed.
    pub revision: u64,
    /// The revision it replaces (the last good one).
    pub from: u64,
    /// `rolling`, `blue-green` or `canary`.
    pub strategy: String,
    /// Where it stands.
    pub state: RolloutState,
    /// The new revision's share of the traffic, in percent, when the strategy moves traffic.
    pub weight: Option<u32>,
    /// The listeners whose weights the deployment moves, as they were before it: what an
    /// abort (or the next deployment, after a crash) restores.
    #[serde(default)]
    pub restore: Vec<ListenerForward>,
}

/// A listener's forward list (which target groups, by which weights).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerForward {
    /// The load balancer.
    pub load_balancer: String,
    /// The listener's port.
    pub port: u16,
    /// `(target group, weight)`.
    pub forward: Vec<(String, u32)>,
}

/// A set of replicas of one revision, registered with one target group. A service's own
/// replicas are its primary set; a deployment controller (blue-green, canary) runs others
/// beside them (ECS task sets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionSet {
    /// Its id (`primary` for the service's own replicas).
    pub id: String,
    /// The revision its replicas run.
    pub revision: u64,
    /// The target group its replicas register with.
    pub target_group: Option<String>,
    /// How many replicas it has.
    pub replicas: u32,
}

/// The id of a service's own set of replicas.
pub const PRIMARY_SET: &str = "primary";

/// Where a deployment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RolloutState {
    /// Replicas of the new revision are being started and old ones replaced.
    InProgress,
    /// The new revision is ready and waits for an explicit promotion (blue-green).
    AwaitingPromotion,
    /// All traffic is on the new revision; the old replicas stay for the scale-down delay.
    Promoted,
    /// The new revision failed: the service is moving back to the last good one.
    RollingBack,
    /// A rollback was asked for while the deployment runs (blue-green's scale-down window):
    /// the controller moves the traffic back.
    RollbackRequested,
}

/// One revision of a service: what its replicas run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revision {
    /// Its number, counting from 1 per service.
    pub number: u64,
    /// What it runs.
    pub container: ContainerSpec,
    /// When it was made.
    pub created: Timestamp,
    /// What became of it.
    pub state: RevisionState,
    /// Why, when it failed.
    pub reason: Option<String>,
}

/// What became of a revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RevisionState {
    /// Being deployed.
    Deploying,
    /// The one the service runs (its last good revision).
    Active,
    /// Ran once, replaced by a newer one.
    Superseded,
    /// Failed its deployment and was rolled back.
    RolledBack,
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
    /// Deploys a new definition (image, environment, ...) as a new revision with a rolling
    /// update by `spec.deployment` (see [`crate::deploy`]); returns when every replica runs
    /// it. A definition that differs only in its replica count or deployment settings makes
    /// no new revision. A revision that does not become available in time, or whose replicas
    /// keep failing to start, is rolled back: the error is
    /// [`ErrorKind::DeploymentFailed`](crate::ErrorKind::DeploymentFailed) and the service
    /// runs (and records) its last good revision. Blue-green and canary deployments move
    /// load balancer traffic too, so they run through [`crate::deploy::deploy`], which
    /// drives this service, the load balancer and the metrics; given one, this method
    /// refuses with InvalidArgument.
    async fn update_service(&self, spec: ServiceSpec) -> Result<ServiceInfo>;
    /// Changes the number of replicas.
    async fn scale_service(&self, name: &str, replicas: u32) -> Result<ServiceInfo>;
    /// Describes a service and its replicas.
    async fn describe_service(&self, name: &str) -> Result<ServiceInfo>;
    /// The service's revisions, oldest first (the last [`MAX_REVISIONS`] at least).
    async fn list_revisions(&self, name: &str) -> Result<Vec<Revision>>;

    /// Starts a revision set beside the service's own replicas, for a deployment controller:
    /// `spec` names the service and gives the set's definition (container, subnets, security
    /// groups), its `replicas` and its `target_group`. The set runs the revision of that
    /// definition (a new one unless a revision of the service has the same); the service's
    /// recorded definition does not change. (ECS: CreateTaskSet.)
    async fn create_revision_set(&self, spec: ServiceSpec) -> Result<RevisionSet>;
    /// Stops a revision set's replicas, each drained from its target group first, and forgets
    /// the set. The primary set cannot be deleted. (ECS: DeleteTaskSet.)
    async fn delete_revision_set(&self, service: &str, set: &str) -> Result<()>;
    /// Makes a revision set the service's own: its revision becomes the recorded one, its
    /// definition the service's. The replicas that were the service's own become a set of
    /// their own, returned, for the controller to delete. (ECS:
    /// UpdateServicePrimaryTaskSet.)
    async fn promote_revision_set(&self, service: &str, set: &str) -> Result<RevisionSet>;
    /// Records the state of a deployment a controller runs (shown in
    /// [`ServiceInfo::rollout`]), or clears it.
    async fn record_rollout(&self, service: &str, rollout: Option<Rollout>) -> Result<()>;
    /// Records what became of a revision a controller deployed (rolled back, and why).
    async fn mark_revision(
        &self,
        service: &str,
        revision: u64,
        state: RevisionState,
        reason: Option<String>,
    ) -> Result<()>;
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

    /// Keeps `spec.service` between its bounds on its metrics (see [`crate::autoscale`]),
    /// evaluated every `spec.period` by the backend; replaces the service's scaler if it has
    /// one. The spec is checked whole first; the service must exist.
    async fn put_scaler(
        &self,
        spec: crate::autoscale::ScalerSpec,
    ) -> Result<crate::autoscale::ScalerInfo>;
    /// The service's scaler: its spec, the bounds in force, its last decisions.
    async fn describe_scaler(&self, service: &str) -> Result<crate::autoscale::ScalerInfo>;
    /// Removes the service's scaler (the replica count stays where it is).
    async fn delete_scaler(&self, service: &str) -> Result<()>;
    /// The IAM policy a service whose spec has `grants` is given, with the backend's
    /// partition, region and account in its ARNs: locally its endpoint key's policy, on AWS
    /// its task role's inline policy. Changes nothing.
    async fn access_policy(&self, grants: &[crate::access::Grant])
    -> Result<crate::access::Policy>;
}

/// Whether two definitions of a service run the same revision: the same container, target
/// group, subnets and security groups (the count and the deployment settings are not part
/// of a revision).
pub fn same_revision(a: &ServiceSpec, b: &ServiceSpec) -> bool {
    a.container == b.container
        && a.target_group == b.target_group
        && a.subnets == b.subnets
        && a.security_groups == b.security_groups
}

/// Replicas of one service at most, on every backend.
pub const MAX_REPLICAS: u32 = 100;

/// Revisions a service keeps at least (older ones may be forgotten).
pub const MAX_REVISIONS: usize = 20;

/// At most [`MAX_REPLICAS`] replicas for service `name`.
pub fn validate_replicas(op: Op, name: &str, replicas: u32) -> Result<()> {
    if replicas > MAX_REPLICAS {
        return Err(op.invalid(name, format!("at most {MAX_REPLICAS} replicas per service")));
    }
    Ok(())
}

/// Parses a schedule's cron expression: five fields (minute, hour, day of month, month, day
/// of week), UTC, no seconds or years (the syntax both backends accept).
pub fn parse_cron(op: Op, name: &str, cron: &str) -> Result<croner::Cron> {
    use croner::parser::{CronParser, Seconds, Year};
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(cron)
        .map_err(|e| {
            op.invalid(
                name,
                format!("bad cron expression {cron:?} (five fields, UTC: `*/5 * * * *`): {e}"),
            )
        })
}

/// Checks a service definition: its name, container, replica count and deployment settings
/// (the rules both backends apply before anything changes; ECS adds Fargate's sizes).
pub fn validate_service(op: Op, spec: &ServiceSpec) -> Result<()> {
    validate_name(op, "service", &spec.name, 255)?;
    validate_container(op, &spec.name, &spec.container)?;
    validate_replicas(op, &spec.name, spec.replicas)?;
    crate::deploy::validate(
        op,
        &spec.name,
        &spec.deployment,
        spec.target_group.as_deref(),
    )
}

/// A revision set that may be deleted: any but the service's own replicas.
pub fn validate_set_deletion(op: Op, service: &str, set: &str) -> Result<()> {
    if set == PRIMARY_SET {
        return Err(op.invalid(
            service,
            "the primary set is the service's own replicas: delete the service",
        ));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Service;

    #[test]
    fn crons_have_five_fields_without_seconds_or_years() {
        let op = Op::new(Service::Container, "put_schedule");
        for bad in ["not a cron", "61 * * * *", "* * * * * *", ""] {
            assert!(parse_cron(op, "s", bad).is_err(), "{bad}");
        }
        for good in ["0 3 * * *", "*/5 * * * *", "0 9-17 * JAN-MAR sat"] {
            assert!(parse_cron(op, "s", good).is_ok(), "{good}");
        }
    }

    #[test]
    fn a_revision_is_what_runs_not_how_many() {
        let a = ServiceSpec::new("web", ContainerSpec::new("web:v1"), 2);
        let mut b = a.clone();
        b.replicas = 5;
        b.deployment = Deployment::default().progress_deadline(Duration::from_secs(1));
        assert!(same_revision(&a, &b));
        b.container.env.insert("K".into(), "v".into());
        assert!(!same_revision(&a, &b));
    }
}
