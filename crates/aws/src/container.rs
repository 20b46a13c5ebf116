//! Container on Amazon ECS with the Fargate launch type, secrets in SSM Parameter Store and
//! schedules in EventBridge Scheduler.
//!
//! - **Cluster.** Every service and task of one handle lives in one ECS cluster (`mvi` unless
//!   [`EcsContainers::with_cluster`] names another, one per mvi scope), created on the first
//!   change that needs it. Reads of a cluster that does not exist find nothing.
//! - **Task definitions.** Each service version, task run and schedule is a Fargate task
//!   definition (`awsvpc` networking) of one container, `app`, in the family
//!   `<cluster>-svc-<name>`, `<cluster>-task-<name>` or `<cluster>-sched-<name>`. Its image is
//!   the Image service's (ECR) image resolved to its digest when the service is created or
//!   updated or the task run, so restarts run exactly it (schedules keep the tag: each run takes
//!   what it names then). The spec's command replaces the image's CMD; its environment is given
//!   with `PORT` (the spec's port, else 8080, mapped when the container serves). The task's CPU
//!   and memory are the smallest Fargate size holding the container's (`cpu_millis` count as
//!   ECS CPU units: 256 is a quarter vCPU in both). Output goes to CloudWatch Logs through the
//!   `awslogs` driver: group `/mvi/containers/<service>` or `/mvi/tasks/<name>`, stream
//!   `mvi/app/<task id>`, the group created by the driver. What ECS has no field for (the
//!   image as the program named it, the port, the mvi health check, the target group name,
//!   whether the network was the default) is kept in the container's Docker labels (`mvi.*`),
//!   so a describe gives back the spec that was put.
//! - **Health.** A health check becomes an ECS container health check running
//!   `curl`, else `wget`, inside the container against `http://127.0.0.1:PORT<path>`: the image
//!   must carry one of them. ECS checks every 5–300 s with a time-out of 2–60 s and 1–10
//!   retries, so the spec's values are rounded into those ranges (the spec itself is kept as
//!   given).
//! - **Services.** An ECS service of `replicas` desired tasks on Fargate, in the spec's subnets
//!   and security groups (else the default VPC's default subnets and the VPC's default security
//!   group), with a public IP when every subnet gives one (so tasks reach ECR without a NAT),
//!   behind the target group if one is named, deployed in rolling fashion (100 % minimum
//!   healthy, 200 % maximum, with the deployment circuit breaker rolling back a deployment
//!   whose tasks do not become healthy). An update registers a new revision and starts a new
//!   deployment; it returns once ECS has accepted it, and describes show the old tasks until
//!   ECS has replaced them. A scale-down returns once ECS has picked the tasks to stop (at most
//!   a minute). A delete drains the tasks (SIGTERM, SIGKILL after ECS's stop time-out) and
//!   deregisters the service's task definitions.
//! - **Replicas.** A service's replicas are its tasks that ECS means to keep running, plus one
//!   `<deployment>/running-<n>` replica for each task ECS counts as running that ListTasks did
//!   not show yet (Healthy once ECS calls the deployment completed), plus one
//!   `Pending` replica (id `<deployment>/pending-<n>`) for each task the current deployment
//!   still lacks: ECS starts tasks a moment after it accepts a service, and the contract
//!   lists a service's replicas from the start. A crashed task is replaced by a new task (a new
//!   id) rather than restarted, so `restarts` stays 0. Fargate places tasks on capacity of its
//!   own: a replica has no VM, and the cloud's VMs neither host nor limit replicas.
//! - **Tasks.** `run_task` runs one task and polls it until it stops: its exit code is the
//!   container's (`None` when it was killed or never started; a task that failed to start is
//!   `Unavailable` with ECS's reason); past the time-out it is stopped and the call is
//!   `Timeout`.
//! - **Schedules.** EventBridge Scheduler schedules, in the schedule group named as the
//!   cluster (`mvi` by default; created on the first `put_schedule`, tagged `mvi:managed`),
//!   named as the mvi schedule. `put_schedule` registers the task definition (family
//!   `<cluster>-sched-<name>`; the image keeps its tag, so each run pulls what it names
//!   then), then creates the schedule or updates it: expression `cron(...)` in UTC with no
//!   flexible window, target ECS `RunTask` of that definition in the cluster (one Fargate
//!   task, awsvpc networking in the default VPC's default subnets and security group, a
//!   public IP when the subnets give one). Earlier revisions and secrets no longer used are
//!   removed afterwards. `list_schedules` lists the group's schedules with the Scheduler API
//!   and reads each spec back from the task definition its target names (the five-field
//!   cron as given is kept in a label); `delete_schedule` deletes the schedule, its task
//!   definitions and its secrets. **Cron translation**: Scheduler's cron has six fields
//!   (`min hour day-of-month month day-of-week year`), wants `?` in one day field and numbers
//!   weekdays 1–7 from Sunday (cron: 0–7 with 0 and 7 Sunday). Each field is rebuilt from
//!   the set of values it matches (`*`, `start/step`, or a list of values and ranges),
//!   weekdays by name (`SUN`..`SAT`), year `*`: `0 3 * * *` is `cron(0 3 * * ? *)`,
//!   `*/5 * * * 1-5` is `cron(0/5 * ? * MON-FRI *)`. An expression restricting both the day
//!   of month and the day of week (cron runs when either matches, which one Scheduler
//!   expression cannot say) and `L`, `W` and `#` are `Unsupported` here (the local backend
//!   takes them). **Role**: Scheduler starts the tasks as `arn:<partition>:iam::<account>:
//!   role/mvi-scheduler` unless [`EcsContainers::with_scheduler_role_arn`] names another; it
//!   must trust `scheduler.amazonaws.com` and allow `ecs:RunTask` and `iam:PassRole` of the
//!   task execution role.
//! - **Secrets.** Each secret's ciphertext (made by the Crypto service, KMS) is decrypted
//!   with KMS (empty encryption context, as locally) before anything is changed, so a
//!   secret that does not decrypt fails the call with the Crypto error's kind. The plaintext
//!   (UTF-8, as locally) is stored as an SSM Parameter Store `SecureString`
//!   `/mvi/<cluster>/<svc|sched>/<name>/<VAR>` (tasks: `/mvi/<cluster>/task/<name>/<run id>/
//!   <VAR>`, one per run; a variable name that SSM cannot spell becomes `-` and a hash of
//!   it), encrypted with the KMS key of the ciphertext (else SSM's `alias/aws/ssm`), and the
//!   container's `secrets` refer to it by ARN: ECS fetches and decrypts it when a task
//!   starts. A secret wins over an environment variable of the same name, as locally. The
//!   task definition keeps the ciphertexts (label `mvi.secrets`), never the plaintext, so a
//!   describe gives back the spec as put; no plaintext is written to a task definition,
//!   tag, label or log. An update rewrites the parameters in place (tasks of the old version
//!   started afterwards, as in a rollback, get the new values) and deletes those no longer
//!   used; deleting a service or schedule deletes its parameters, and a task's are deleted
//!   when its run ends.
//! - **Scalers** (feature `autoscaling`) are Application Auto Scaling's: a scalable target on
//!   the service's desired count, a target-tracking policy per metric and a scheduled action
//!   per schedule, the spec as put kept in SSM; see `container/scaler.rs`. Deleting a
//!   service deletes its scaler first.
//! - **Roles.** Fargate pulls images from ECR, reads secrets and writes logs with the task
//!   execution role: `ecsTaskExecutionRole` of the account (AWS's usual name) unless
//!   [`EcsContainers::with_execution_role_arn`] names another. It needs the managed policy
//!   `AmazonECSTaskExecutionRolePolicy`, `logs:CreateLogGroup`, and for secrets
//!   `ssm:GetParameters` on `/mvi/*` and `kms:Decrypt` on the secrets' keys.
//!
//! Names, container specs, replica counts, time-outs and cron expressions are checked before
//! any request with the local backend's rules, so both backends refuse the same input.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::poll::Backoff;
use async_trait::async_trait;
use aws_sdk_ecs::types::Secret as EcsSecret;
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, Compatibility, ContainerDefinition,
    DeploymentCircuitBreaker, DeploymentConfiguration, DesiredStatus, HealthCheck as EcsCheck,
    HealthStatus, KeyValuePair, LaunchType, LoadBalancer, LogConfiguration, LogDriver,
    NetworkConfiguration, NetworkMode, PortMapping, Service as EcsService, Task, TaskDefinition,
    TaskDefinitionStatus, TaskStopCode, TransportProtocol,
};
use aws_sdk_ecs::types::{DeploymentControllerType, TaskSet};
use aws_sdk_ssm::types::ParameterType;
use mvi_core::autoscale::{ScalerInfo, ScalerSpec};
use mvi_core::container::{
    ContainerInstance, ContainerSpec, Containers, HealthCheck, InstanceState, PRIMARY_SET,
    Revision, RevisionSet, RevisionState, Rollout, RolloutState, ScheduleSpec, ServiceEvent,
    ServiceInfo, ServiceSpec, TaskResult, parse_cron, same_revision, validate_name,
    validate_replicas, validate_service, validate_set_deletion,
};
use mvi_core::image::ImageRef;
use mvi_core::{Error, ErrorKind, Op, Result, SecretBytes, Service, Timestamp};

use crate::error::map;

/// Why the scaler calls are refused without Application Auto Scaling.
#[cfg(not(feature = "autoscaling"))]
const NO_SCALERS: &str = "this build of the AWS backend has no Application Auto Scaling (feature `autoscaling`); enable it, or run an mvi::autoscale::AutoScaler in the program";

mod definition;
mod deploy;
mod documents;
mod iam;
mod network;
#[cfg(feature = "autoscaling")]
mod scaler;
mod schedule;
mod secrets;

use definition::{arn_revision, fargate_size, labels, serves, spec_from_definition, task_id};
use deploy::{controller_of, deployment_configuration, deployment_controller, is_external};
use schedule::{scheduler_expression, scheduler_target};
use secrets::Plain;

const fn op(name: &'static str) -> Op {
    Op::new(Service::Container, name)
}

pub use mvi_core::container::MAX_REPLICAS;
/// The cluster of a handle that names none.
pub const DEFAULT_CLUSTER: &str = "mvi";
/// `PORT` of a container whose spec gives no port.
pub const DEFAULT_PORT: u16 = 8080;
/// The one container of every task definition.
const CONTAINER: &str = "app";
/// The `awslogs` stream prefix: streams are `mvi/app/<task id>`.
const LOG_PREFIX: &str = "mvi";
/// The task execution role's name when none is given.
const EXECUTION_ROLE: &str = "ecsTaskExecutionRole";
/// The role EventBridge Scheduler assumes to start scheduled tasks, when none is given.
pub const SCHEDULER_ROLE: &str = "mvi-scheduler";
/// SSM's own KMS key, for secrets whose key KMS does not name.
const SSM_DEFAULT_KEY: &str = "alias/aws/ssm";
/// How long a scale-down waits for ECS to pick the tasks it stops.
const SCALE_SETTLE: Duration = Duration::from_secs(60);
/// Longest pause between two polls of a running task.
const POLL_MAX: Duration = Duration::from_secs(5);

// Docker labels holding what ECS has no field for.
const L_KIND: &str = "mvi.kind";
const L_CLUSTER: &str = "mvi.cluster";
const L_NAME: &str = "mvi.name";
const L_IMAGE: &str = "mvi.image";
const L_PORT: &str = "mvi.port";
const L_HEALTH: &str = "mvi.health-check";
const L_ENV_PORT: &str = "mvi.env.PORT";
const L_CRON: &str = "mvi.cron";
const L_TARGET_GROUP: &str = "mvi.target-group";
const L_DEFAULT_SUBNETS: &str = "mvi.default-subnets";
const L_DEFAULT_GROUPS: &str = "mvi.default-security-groups";
/// The secrets as given: `[[env, base64 ciphertext], ...]` (ciphertext only, never plaintext).
const L_SECRETS: &str = "mvi.secrets";
/// Variables of the spec that a secret of the same name replaces (JSON object).
const L_ENV_SHADOWED: &str = "mvi.env-shadowed";
/// The spec's grants (JSON), which the task role's policy is made of.
const L_GRANTS: &str = "mvi.grants";

/// Fargate's task sizes: CPU units, and the memory (MiB) allowed with it: from, to, step.
const FARGATE_SIZES: &[(u32, u32, u32, u32)] = &[
    (256, 512, 2048, 512),
    (512, 1024, 4096, 1024),
    (1024, 2048, 8192, 1024),
    (2048, 4096, 16384, 1024),
    (4096, 8192, 30720, 1024),
    (8192, 16384, 61440, 4096),
    (16384, 32768, 122_880, 8192),
];

/// What a task definition is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Service,
    Task,
    Schedule,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Service => "svc",
            Kind::Task => "task",
            Kind::Schedule => "sched",
        }
    }
}

/// The Container service on Amazon ECS (Fargate), with images from ECR and networking from
/// EC2.
#[derive(Debug)]
pub struct EcsContainers {
    ecs: aws_sdk_ecs::Client,
    ecr: aws_sdk_ecr::Client,
    ec2: aws_sdk_ec2::Client,
    kms: aws_sdk_kms::Client,
    ssm: aws_sdk_ssm::Client,
    scheduler: aws_sdk_scheduler::Client,
    iam: aws_sdk_iam::Client,
    #[cfg(feature = "elbv2")]
    elb: aws_sdk_elasticloadbalancingv2::Client,
    #[cfg(feature = "autoscaling")]
    autoscaling: aws_sdk_applicationautoscaling::Client,
    region: String,
    cluster: String,
    execution_role: Option<String>,
    scheduler_role: Option<String>,
    /// The account (ECR registry id), read once.
    account: tokio::sync::OnceCell<String>,
    /// The cluster is known to exist.
    cluster_ready: AtomicBool,
    /// The schedule group is known to exist.
    group_ready: AtomicBool,
    /// Task definitions by ARN: they never change once registered.
    definitions: Mutex<HashMap<String, TaskDefinition>>,
}

impl EcsContainers {
    /// The Container service of the shared AWS configuration, in the cluster `mvi`.
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        EcsContainers {
            ecs: aws_sdk_ecs::Client::new(config),
            ecr: aws_sdk_ecr::Client::new(config),
            ec2: aws_sdk_ec2::Client::new(config),
            kms: aws_sdk_kms::Client::new(config),
            ssm: aws_sdk_ssm::Client::new(config),
            scheduler: aws_sdk_scheduler::Client::new(config),
            iam: aws_sdk_iam::Client::new(config),
            #[cfg(feature = "elbv2")]
            elb: aws_sdk_elasticloadbalancingv2::Client::new(config),
            #[cfg(feature = "autoscaling")]
            autoscaling: aws_sdk_applicationautoscaling::Client::new(config),
            region: config.region().map(|r| r.to_string()).unwrap_or_default(),
            cluster: DEFAULT_CLUSTER.to_owned(),
            execution_role: None,
            scheduler_role: None,
            account: tokio::sync::OnceCell::new(),
            cluster_ready: AtomicBool::new(false),
            group_ready: AtomicBool::new(false),
            definitions: Mutex::new(HashMap::new()),
        }
    }

    /// Puts the services and tasks of this handle in the cluster `name` (1–64 letters, digits,
    /// hyphens and underscores) instead of `mvi`: one cluster per scope.
    pub fn with_cluster(mut self, name: &str) -> Result<Self> {
        validate_name(op("with_cluster"), "cluster", name, 64)?;
        self.cluster = name.to_owned();
        self.cluster_ready = AtomicBool::new(false);
        self.group_ready = AtomicBool::new(false);
        Ok(self)
    }

    /// Runs tasks with this task execution role (an IAM role ARN) instead of the account's
    /// `ecsTaskExecutionRole`.
    pub fn with_execution_role_arn(mut self, arn: impl Into<String>) -> Self {
        self.execution_role = Some(arn.into());
        self
    }

    /// Starts scheduled tasks with this IAM role (an ARN) instead of the account's
    /// `mvi-scheduler`. EventBridge Scheduler assumes it to call ECS `RunTask`: it must trust
    /// `scheduler.amazonaws.com` and allow `ecs:RunTask` on the cluster's task definitions and
    /// `iam:PassRole` of the task execution role.
    pub fn with_scheduler_role_arn(mut self, arn: impl Into<String>) -> Self {
        self.scheduler_role = Some(arn.into());
        self
    }

    /// The ECS cluster of this handle.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    async fn cluster_arn(&self, op: Op) -> Result<String> {
        let account = self.account(op).await?;
        Ok(format!(
            "arn:{}:ecs:{}:{account}:cluster/{}",
            self.partition(),
            self.region,
            self.cluster
        ))
    }

    /// Creates the cluster unless it is known to exist (CreateCluster of an existing cluster
    /// would do no harm on AWS, but one describe is cheaper than a create per change).
    async fn ensure_cluster(&self, op: Op) -> Result<()> {
        if self.cluster_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let out = self
            .ecs
            .describe_clusters()
            .clusters(&self.cluster)
            .send()
            .await
            .map_err(|e| map(op, &self.cluster, e))?;
        let active = out.clusters().iter().any(|c| c.status() == Some("ACTIVE"));
        if !active {
            self.ecs
                .create_cluster()
                .cluster_name(&self.cluster)
                .tags(
                    aws_sdk_ecs::types::Tag::builder()
                        .key("mvi:managed")
                        .value("true")
                        .build(),
                )
                .send()
                .await
                .map_err(|e| map(op, &self.cluster, e))?;
        }
        self.cluster_ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Maps an ECS error; a cluster that vanished is looked for again next time.
    fn fail<E>(&self, op: Op, resource: &str, err: aws_sdk_ecs::error::SdkError<E>) -> Error
    where
        E: aws_sdk_ecs::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let e = map(op, resource, err);
        if e.message().starts_with("ClusterNotFoundException") {
            self.cluster_ready.store(false, Ordering::Release);
        }
        e
    }

    // ---- images ----

    /// Splits an image reference into repository and tag or digest, dropping this account's
    /// ECR registry host if the reference names it.
    async fn parse_reference(&self, op: Op, image: &str) -> Result<(String, ImageRef)> {
        let mut bare = image;
        if let Some((host, rest)) = image.split_once('/')
            && host.contains(".dkr.ecr.")
        {
            let account = self.account(op).await?;
            if host != self.registry_host(&account) {
                return Err(op.invalid(
                    image,
                    format!(
                        "images come from this account's ECR registry {}",
                        self.registry_host(&account)
                    ),
                ));
            }
            bare = rest;
        }
        mvi_core::image::split_reference(op, image, bare)
    }

    /// The image's pull reference by digest (NotFound if it does not exist).
    async fn resolve_image(&self, op: Op, image: &str) -> Result<String> {
        let (repo, reference) = self.parse_reference(op, image).await?;
        let id = match &reference {
            ImageRef::Tag(t) => aws_sdk_ecr::types::ImageIdentifier::builder().image_tag(t),
            ImageRef::Digest(d) => aws_sdk_ecr::types::ImageIdentifier::builder().image_digest(d),
        }
        .build();
        let out = self
            .ecr
            .describe_images()
            .repository_name(&repo)
            .image_ids(id)
            .send()
            .await
            .map_err(|e| {
                let e = map(op, image, e);
                if e.is_not_found() {
                    op.not_found(image, format!("no such image: {}", e.message()))
                } else {
                    e
                }
            })?;
        let detail = out
            .image_details()
            .first()
            .ok_or_else(|| op.not_found(image, "no such image"))?;
        let digest = detail
            .image_digest()
            .ok_or_else(|| op.internal(image, "DescribeImages answered no digest"))?;
        let registry = match detail.registry_id() {
            Some(r) => r.to_owned(),
            None => self.account(op).await?,
        };
        Ok(format!("{}/{repo}@{digest}", self.registry_host(&registry)))
    }

    /// The image's pull reference as named (tag or digest), without looking it up: what a
    /// scheduled run pulls when it starts.
    async fn image_reference(&self, op: Op, image: &str) -> Result<String> {
        let (repo, reference) = self.parse_reference(op, image).await?;
        let account = self.account(op).await?;
        Ok(format!(
            "{}/{repo}{reference}",
            self.registry_host(&account)
        ))
    }

    // ---- networking ----

    // ---- task definitions ----

    // ---- secrets ----

    // ---- schedules ----

    // ---- services ----

    /// The service named `name` whatever its status, if ECS knows it.
    async fn find_service(&self, op: Op, name: &str) -> Result<Option<EcsService>> {
        let out = match self
            .ecs
            .describe_services()
            .cluster(&self.cluster)
            .services(name)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                let e = self.fail(op, name, e);
                // No cluster, no service.
                if e.message().starts_with("ClusterNotFoundException") {
                    return Ok(None);
                }
                return Err(e);
            }
        };
        Ok(out
            .services
            .unwrap_or_default()
            .into_iter()
            .find(|s| s.service_name() == Some(name)))
    }

    /// The active service named `name` (NotFound otherwise: a deleted service stays visible
    /// as DRAINING, then INACTIVE, for a while).
    async fn active_service(&self, op: Op, name: &str) -> Result<EcsService> {
        match self.find_service(op, name).await? {
            Some(s) if s.status() == Some("ACTIVE") => Ok(s),
            _ => Err(op.not_found(name, "no such service")),
        }
    }

    /// The service's tasks that ECS means to keep running (not those it is stopping).
    async fn service_tasks(&self, op: Op, name: &str) -> Result<Vec<Task>> {
        let mut arns = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .ecs
                .list_tasks()
                .cluster(&self.cluster)
                .service_name(name)
                .desired_status(DesiredStatus::Running)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| self.fail(op, name, e))?;
            arns.extend(out.task_arns().iter().cloned());
            token = out.next_token;
            if token.is_none() {
                break;
            }
        }
        let group = format!("service:{name}");
        let mut tasks: Vec<Task> = self
            .describe_tasks(op, name, &arns)
            .await?
            .into_iter()
            // moto ignores the service filter of ListTasks; the group names the service.
            .filter(|t| t.group() == Some(group.as_str()))
            .filter(|t| t.desired_status() == Some("RUNNING"))
            .collect();
        tasks.sort_by_key(|t| t.created_at().map(|d| (d.secs(), d.subsec_nanos())));
        Ok(tasks)
    }

    async fn describe_tasks(&self, op: Op, resource: &str, arns: &[String]) -> Result<Vec<Task>> {
        let mut tasks = Vec::new();
        for chunk in arns.chunks(100) {
            let out = self
                .ecs
                .describe_tasks()
                .cluster(&self.cluster)
                .set_tasks(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| self.fail(op, resource, e))?;
            tasks.extend(out.tasks.unwrap_or_default());
        }
        Ok(tasks)
    }

    /// A service as the contract shows it.
    async fn info(&self, op: Op, svc: &EcsService) -> Result<ServiceInfo> {
        let name = svc.service_name().unwrap_or_default().to_owned();
        let external = is_external(svc);
        let sets = if external {
            self.task_sets(op, &name).await?
        } else {
            Vec::new()
        };
        let primary_set = sets.iter().find(|s| s.status() == Some("PRIMARY"));
        let arn = match (external, primary_set) {
            (true, Some(p)) => p.task_definition(),
            _ => svc.task_definition(),
        }
        .ok_or_else(|| op.internal(&name, "the service has no task definition"))?
        .to_owned();
        let def = self.definition(op, &name, &arn).await?;
        let labels = labels(&def);
        let container = spec_from_definition(op, &name, &def)?;
        let replicas = u32::try_from(svc.desired_count()).unwrap_or(0);
        let mut spec = ServiceSpec::new(&name, container, replicas);
        let doc = self.read_doc(op, &name).await?;
        spec.deployment = doc.deployment.clone().unwrap_or_default();
        let vpc = if external {
            primary_set.and_then(|s| s.network_configuration())
        } else {
            svc.network_configuration()
        }
        .and_then(|n| n.awsvpc_configuration());
        spec.target_group = if external {
            // A set's definition may have been made for another group: the set says.
            match primary_set {
                Some(p) => self.set_target_group(op, p).await?,
                None => None,
            }
        } else {
            labels.get(L_TARGET_GROUP).cloned()
        };
        if !labels.contains_key(L_DEFAULT_SUBNETS) {
            spec.subnets = vpc.map(|v| v.subnets().to_vec()).unwrap_or_default();
        }
        if !labels.contains_key(L_DEFAULT_GROUPS) {
            spec.security_groups = vpc
                .map(|v| v.security_groups().to_vec())
                .unwrap_or_default();
        }
        let serves = serves(&spec.container, spec.target_group.is_some());
        let port = spec.container.port.unwrap_or(DEFAULT_PORT);
        let tasks = self.service_tasks(op, &name).await?;
        // The tasks that exist, and nothing else: ECS's counts lag its task list, and a
        // replica nobody can name is not one.
        let set_of = |t: &Task| -> String {
            match t.started_by() {
                Some(by) if external && sets.iter().any(|s| s.id() == Some(by)) => {
                    if primary_set.and_then(|p| p.id()) == Some(by) {
                        PRIMARY_SET.to_string()
                    } else {
                        by.to_string()
                    }
                }
                _ => PRIMARY_SET.to_string(),
            }
        };
        let instances: Vec<ContainerInstance> = tasks
            .iter()
            .map(|t| {
                let mut i = instance(t, serves.then_some(port));
                i.set = set_of(t);
                i
            })
            .collect();
        let revision = arn_revision(&arn);
        let mut revision_sets = vec![RevisionSet {
            id: PRIMARY_SET.to_string(),
            revision,
            target_group: spec.target_group.clone(),
            replicas,
        }];
        for s in sets.iter().filter(|s| s.status() != Some("PRIMARY")) {
            revision_sets.push(RevisionSet {
                id: s.id().unwrap_or_default().to_owned(),
                revision: s.task_definition().map(arn_revision).unwrap_or(0),
                target_group: self.set_target_group(op, s).await?,
                replicas: u32::try_from(s.computed_desired_count()).unwrap_or(0),
            });
        }
        let (rollout, stable) = if external {
            let steady = primary_set.is_some_and(|p| {
                p.stability_status() == Some(&aws_sdk_ecs::types::StabilityStatus::SteadyState)
                    && p.running_count() == p.computed_desired_count()
            });
            let rollout = doc.rollout.clone();
            let stable = rollout.is_none() && revision_sets.len() == 1 && steady;
            (rollout, stable)
        } else {
            let deployments = svc.deployments();
            let primary = deployments.iter().find(|d| d.status() == Some("PRIMARY"));
            let rollout_state = primary.and_then(|d| d.rollout_state());
            use aws_sdk_ecs::types::DeploymentRolloutState as Ros;
            let in_progress = deployments.len() > 1 || rollout_state == Some(&Ros::InProgress);
            let rollout = in_progress.then(|| {
                let target = primary
                    .and_then(|d| d.task_definition())
                    .map(arn_revision)
                    .unwrap_or(revision);
                let from = deployments
                    .iter()
                    .find(|d| d.status() == Some("ACTIVE"))
                    .and_then(|d| d.task_definition())
                    .map(arn_revision)
                    .unwrap_or(revision);
                Rollout {
                    revision: target,
                    from,
                    strategy: "rolling".into(),
                    state: RolloutState::InProgress,
                    weight: None,
                    restore: Vec::new(),
                }
            });
            // ECS's services-stable: one deployment, running the desired count.
            let stable = !in_progress
                && primary.is_some_and(|d| {
                    i64::from(d.running_count()) == i64::from(svc.desired_count())
                        && d.desired_count() == svc.desired_count()
                });
            (rollout, stable)
        };
        let events = svc
            .events()
            .iter()
            .rev()
            .filter_map(|e| {
                Some(ServiceEvent {
                    at: e.created_at().and_then(timestamp)?,
                    message: e.message()?.to_owned(),
                })
            })
            .collect();
        Ok(ServiceInfo {
            spec,
            revision,
            instances,
            sets: revision_sets,
            rollout,
            stable,
            events,
        })
    }

    /// The name of the target group a task set registers with (as mvi names it: the
    /// group's name, or its ARN when the service was given one).
    async fn set_target_group(&self, _op: Op, set: &TaskSet) -> Result<Option<String>> {
        Ok(set
            .load_balancers()
            .first()
            .and_then(|l| l.target_group_arn())
            .map(|arn| {
                arn.rsplit_once(":targetgroup/")
                    .and_then(|(_, rest)| rest.split('/').next())
                    .map(str::to_owned)
                    .unwrap_or_else(|| arn.to_owned())
            }))
    }

    /// Checks a service spec as the local backend does, before any request.
    fn check_service(&self, op: Op, spec: &ServiceSpec) -> Result<()> {
        validate_service(op, spec)?;
        if fargate_size(spec.container.cpu_millis, spec.container.memory_mib).is_none() {
            return Err(too_big(op, &spec.name, &spec.container));
        }
        #[cfg(not(feature = "elbv2"))]
        if let Some(group) = &spec.target_group
            && !group.starts_with("arn:")
        {
            return Err(no_balancers(op, &spec.name));
        }
        Ok(())
    }

    /// Everything a service version needs: its image, network, target group, secrets (stored
    /// in SSM) and task definition (registered last).
    async fn prepare_service(
        &self,
        op: Op,
        spec: &ServiceSpec,
        plain: &[Plain],
    ) -> Result<(
        TaskDefinition,
        NetworkConfiguration,
        Vec<LoadBalancer>,
        Vec<EcsSecret>,
    )> {
        let name = &spec.name;
        let image = self.resolve_image(op, &spec.container.image).await?;
        let network = self
            .network(op, name, &spec.subnets, &spec.security_groups)
            .await?;
        let balancers = self.balancers(op, spec).await?;
        let mut extra = BTreeMap::new();
        if let Some(group) = &spec.target_group {
            extra.insert(L_TARGET_GROUP, group.clone());
        }
        if spec.subnets.is_empty() {
            extra.insert(L_DEFAULT_SUBNETS, "true".into());
        }
        if spec.security_groups.is_empty() {
            extra.insert(L_DEFAULT_GROUPS, "true".into());
        }
        // Each revision's secrets have parameters of their own: tasks of an older revision
        // (a rollback) start with that revision's values.
        let version = format!("{:08x}", rand::random::<u32>());
        let secrets = self
            .put_secrets(
                op,
                &format!("service {name}"),
                &self.secret_path(Kind::Service, name, Some(&version)),
                plain,
            )
            .await?;
        let container = self.container_definition(
            op,
            Kind::Service,
            name,
            &spec.container,
            &image,
            &format!("/mvi/containers/{name}"),
            spec.target_group.is_some(),
            extra,
            secrets.clone(),
        )?;
        let def = self
            .register(
                op,
                name,
                &self.family(Kind::Service, name),
                &spec.container,
                container,
            )
            .await?;
        Ok((def, network, balancers, secrets))
    }

    /// The load balancer attachment of a service (or task set) of `spec`.
    async fn balancers(&self, op: Op, spec: &ServiceSpec) -> Result<Vec<LoadBalancer>> {
        let port = spec.container.port.unwrap_or(DEFAULT_PORT);
        let mut balancers = Vec::new();
        if let Some(group) = &spec.target_group {
            let arn = self.target_group_arn(op, &spec.name, group).await?;
            balancers.push(
                LoadBalancer::builder()
                    .target_group_arn(arn)
                    .container_name(CONTAINER)
                    .container_port(i32::from(port))
                    .build(),
            );
        }
        Ok(balancers)
    }

    /// Waits (at most [`SCALE_SETTLE`]) until ECS keeps no more than `replicas` tasks of the
    /// service, so a scale-down's answer no longer lists the surplus.
    async fn settle(&self, op: Op, name: &str, replicas: u32) -> Result<()> {
        let mut poll = Backoff::new(Duration::from_millis(250), POLL_MAX, SCALE_SETTLE);
        loop {
            let live = self.service_tasks(op, name).await?.len();
            if live <= replicas as usize || poll.expired() {
                return Ok(());
            }
            poll.wait().await;
        }
    }

    // ---- tasks ----

    /// Polls a task until it stops or `timeout` passes (then stops it).
    async fn wait_task(&self, op: Op, name: &str, arn: &str, timeout: Duration) -> Result<Task> {
        let mut poll = Backoff::new(Duration::from_millis(200), POLL_MAX, timeout);
        loop {
            let task = self
                .describe_tasks(op, name, &[arn.to_owned()])
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| op.internal(name, format!("task {arn} vanished")))?;
            if task.last_status() == Some("STOPPED") {
                return Ok(task);
            }
            if poll.expired() {
                let id = task_id(arn);
                if let Err(e) = self
                    .ecs
                    .stop_task()
                    .cluster(&self.cluster)
                    .task(arn)
                    .reason(format!("mvi: ran longer than {timeout:?}"))
                    .send()
                    .await
                {
                    tracing::warn!("cannot stop task {arn}: {}", map(op, name, e));
                }
                return Err(op.err(
                    ErrorKind::Timeout,
                    id,
                    format!(
                        "the task ran longer than {timeout:?} and was stopped; its output is in /mvi/tasks/{name}/{LOG_PREFIX}/{CONTAINER}/{id}"
                    ),
                ));
            }
            poll.wait().await;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The cache holds whole values inserted at once: a poisoned lock guards a consistent map.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---- validation (core's rules, as the local backend applies them) ----

/// Core's container rules, then what Fargate adds: a size it offers.
fn validate_container(op: Op, resource: &str, c: &ContainerSpec) -> Result<()> {
    mvi_core::container::validate_container(op, resource, c)?;
    if fargate_size(c.cpu_millis, c.memory_mib).is_none() {
        return Err(too_big(op, resource, c));
    }
    Ok(())
}

fn too_big(op: Op, resource: &str, c: &ContainerSpec) -> Error {
    op.invalid(
        resource,
        format!(
            "no Fargate task size holds {} CPU units and {} MiB (at most 16384 units and 122880 MiB)",
            c.cpu_millis, c.memory_mib
        ),
    )
}

#[cfg(not(feature = "elbv2"))]
fn no_balancers(op: Op, resource: &str) -> Error {
    op.invalid(
        resource,
        "the service names a target group but this cloud has no load balancer service (feature `elbv2`); name it by ARN",
    )
}

// ---- mapping ----

fn timestamp(t: &aws_smithy_types::DateTime) -> Option<Timestamp> {
    chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

/// A task as a replica; `port` if it serves.
fn instance(t: &Task, port: Option<u16>) -> ContainerInstance {
    let state = match t.last_status().unwrap_or("PROVISIONING") {
        "RUNNING" => match t.health_status() {
            Some(HealthStatus::Healthy) => InstanceState::Healthy,
            Some(HealthStatus::Unhealthy) => InstanceState::Unhealthy,
            _ => InstanceState::Running,
        },
        "DEACTIVATING" | "STOPPING" | "DEPROVISIONING" | "STOPPED" | "DELETED" => {
            InstanceState::Stopped
        }
        // PROVISIONING, PENDING, ACTIVATING
        _ => InstanceState::Pending,
    };
    let ip = t
        .attachments()
        .iter()
        .flat_map(|a| a.details())
        .find(|kv| kv.name() == Some("privateIPv4Address"))
        .and_then(|kv| kv.value());
    ContainerInstance {
        id: task_id(t.task_arn().unwrap_or_default()).to_owned(),
        state,
        vm: None,
        address: port.and_then(|p| ip.map(|ip| format!("{ip}:{p}"))),
        restarts: 0,
        started: t.started_at().and_then(timestamp),
        revision: t.task_definition_arn().map(arn_revision).unwrap_or(0),
        set: PRIMARY_SET.to_string(),
    }
}

#[async_trait]
impl Containers for EcsContainers {
    async fn create_service(&self, spec: ServiceSpec) -> Result<ServiceInfo> {
        let op = op("create_service");
        self.check_service(op, &spec)?;
        let name = &spec.name;
        match self.find_service(op, name).await? {
            Some(s) if s.status() == Some("ACTIVE") => {
                return Err(op.already_exists(name, "the service exists"));
            }
            Some(s) if s.status() == Some("DRAINING") => {
                return Err(op.precondition(
                    name,
                    "a service of this name is still being deleted (DRAINING); try again once it is gone",
                ));
            }
            _ => {}
        }
        let plain = self.decrypt_secrets(op, &spec.container).await?;
        self.ensure_cluster(op).await?;
        let path = self.secret_path(Kind::Service, name, None);
        let (def, network, balancers, _) = match self.prepare_service(op, &spec, &plain).await {
            Ok(prepared) => prepared,
            Err(e) => {
                // No service: none of its secrets is of use.
                self.prune_secrets(op, name, &path, &[]).await;
                return Err(e);
            }
        };
        drop(plain);
        let arn = def.task_definition_arn().unwrap_or_default().to_owned();
        let external = controller_of(&spec.deployment) == DeploymentControllerType::External;
        let desired = i32::try_from(spec.replicas).unwrap_or(i32::MAX);
        if let Err(e) = self.note_deployment(op, name, &spec.deployment).await {
            self.drop_definitions(op, name, &[arn], true).await;
            self.prune_secrets(op, name, &path, &[]).await;
            return Err(e);
        }
        let created = if external {
            // Blue-green and canary: the service only holds the count; its replicas are
            // task sets, the first one made primary below.
            self.ecs
                .create_service()
                .cluster(&self.cluster)
                .service_name(name)
                .desired_count(desired)
                .set_deployment_controller(deployment_controller(&spec.deployment))
                .send()
                .await
        } else {
            self.ecs
                .create_service()
                .cluster(&self.cluster)
                .service_name(name)
                .task_definition(&arn)
                .desired_count(desired)
                .launch_type(LaunchType::Fargate)
                .network_configuration(network)
                .set_load_balancers((!balancers.is_empty()).then_some(balancers))
                .set_deployment_controller(deployment_controller(&spec.deployment))
                .deployment_configuration(deployment_configuration(&spec.deployment, spec.replicas))
                .send()
                .await
        };
        let svc = match created {
            Ok(out) => out
                .service
                .ok_or_else(|| op.internal(name, "CreateService answered no service"))?,
            Err(e) => {
                let e = self.fail(op, name, e);
                self.drop_definitions(op, name, &[arn], true).await;
                self.prune_secrets(op, name, &path, &[]).await;
                self.drop_doc(name).await;
                return Err(e);
            }
        };
        if external {
            let primary = async {
                let set = self.start_task_set(op, &spec, &arn, spec.replicas).await?;
                let set_arn = set.task_set_arn().unwrap_or_default().to_owned();
                self.ecs
                    .update_service_primary_task_set()
                    .cluster(&self.cluster)
                    .service(name)
                    .primary_task_set(set_arn)
                    .send()
                    .await
                    .map_err(|e| self.fail(op, name, e))?;
                self.active_service(op, name).await
            }
            .await;
            return match primary {
                Ok(svc) => self.info(op, &svc).await,
                Err(e) => {
                    // No half-made service: it goes, with its definition and secrets.
                    let _ = self
                        .ecs
                        .delete_service()
                        .cluster(&self.cluster)
                        .service(name)
                        .force(true)
                        .send()
                        .await;
                    self.drop_definitions(op, name, &[arn], true).await;
                    self.prune_secrets(op, name, &path, &[]).await;
                    self.drop_doc(name).await;
                    Err(e)
                }
            };
        }
        self.info(op, &svc).await
    }

    async fn update_service(&self, spec: ServiceSpec) -> Result<ServiceInfo> {
        let op = op("update_service");
        self.check_service(op, &spec)?;
        let name = &spec.name;
        let before = self.active_service(op, name).await?;
        let current = self.info(op, &before).await?;
        let external = is_external(&before);
        if external != (controller_of(&spec.deployment) == DeploymentControllerType::External) {
            return Err(op.invalid(
                name,
                "an ECS service's deployment controller is chosen when it is made (ECS for rolling, EXTERNAL for blue-green and canary): delete and create the service to change between them",
            ));
        }
        let desired = i32::try_from(spec.replicas).unwrap_or(i32::MAX);
        if same_revision(&current.spec, &spec) {
            // The count or the deployment settings only: no new revision.
            let mut update = self
                .ecs
                .update_service()
                .cluster(&self.cluster)
                .service(name)
                .desired_count(desired);
            if !external {
                update = update.deployment_configuration(deployment_configuration(
                    &spec.deployment,
                    spec.replicas,
                ));
            }
            update.send().await.map_err(|e| self.fail(op, name, e))?;
            self.note_deployment(op, name, &spec.deployment).await?;
            if spec.replicas < current.spec.replicas {
                self.settle(op, name, spec.replicas).await?;
            }
            return self.describe_service(name).await;
        }
        if external {
            return Err(op.invalid(
                name,
                format!(
                    "a {} deployment moves load balancer traffic, which the container service alone does not: deploy with mvi::deploy::deploy(&cloud, spec)",
                    spec.deployment.strategy.name()
                ),
            ));
        }
        if current.rollout.is_some() {
            return Err(op.precondition(name, "a deployment is in progress; wait for it to finish"));
        }
        let plain = self.decrypt_secrets(op, &spec.container).await?;
        let (def, network, balancers, _) = self.prepare_service(op, &spec, &plain).await?;
        drop(plain);
        let arn = def.task_definition_arn().unwrap_or_default().to_owned();
        let from_arn = before.task_definition().unwrap_or_default().to_owned();
        let updated = self
            .ecs
            .update_service()
            .cluster(&self.cluster)
            .service(name)
            .task_definition(&arn)
            .desired_count(desired)
            .network_configuration(network)
            // An empty list takes the service off a load balancer it was behind.
            .set_load_balancers(Some(balancers))
            .deployment_configuration(deployment_configuration(&spec.deployment, spec.replicas))
            .force_new_deployment(true)
            .send()
            .await;
        let svc = match updated {
            Ok(out) => out
                .service
                .ok_or_else(|| op.internal(name, "UpdateService answered no service"))?,
            Err(e) => {
                let e = self.fail(op, name, e);
                self.drop_definitions(op, name, &[arn], true).await;
                self.prune_revisions(op, name, &from_arn).await;
                return Err(e);
            }
        };
        let (number, from) = (arn_revision(&arn), arn_revision(&from_arn));
        let id = svc
            .deployments()
            .iter()
            .find(|d| d.status() == Some("PRIMARY"))
            .and_then(|d| d.id())
            .unwrap_or_default()
            .to_owned();
        // `up` and the caller go on once ECS has finished, not when it has accepted.
        let cause = match self
            .wait_deployment(op, name, &id, spec.deployment.progress_deadline)
            .await?
        {
            Ok(svc) => {
                self.note_revision(op, name, number, RevisionState::Active, None)
                    .await?;
                self.note_deployment(op, name, &spec.deployment).await?;
                self.prune_revisions(op, name, &arn).await;
                return self.info(op, &svc).await;
            }
            Err(cause) => cause,
        };
        // ECS rolled it back, or it ran out of time and we put the last good one back.
        let back = self.active_service(op, name).await?;
        if back.task_definition() != Some(from_arn.as_str()) {
            self.ecs
                .update_service()
                .cluster(&self.cluster)
                .service(name)
                .task_definition(&from_arn)
                .force_new_deployment(true)
                .send()
                .await
                .map_err(|e| self.fail(op, name, e))?;
        }
        self.note_revision(
            op,
            name,
            number,
            RevisionState::RolledBack,
            Some(cause.clone()),
        )
        .await?;
        Err(op.err(
            ErrorKind::DeploymentFailed,
            name,
            format!("revision {number} failed and was rolled back to revision {from}: {cause}"),
        ))
    }

    async fn scale_service(&self, name: &str, replicas: u32) -> Result<ServiceInfo> {
        let op = op("scale_service");
        validate_replicas(op, name, replicas)?;
        let before = self.active_service(op, name).await?;
        let out = self
            .ecs
            .update_service()
            .cluster(&self.cluster)
            .service(name)
            .desired_count(i32::try_from(replicas).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|e| self.fail(op, name, e))?;
        if i64::from(replicas) < i64::from(before.desired_count()) {
            self.settle(op, name, replicas).await?;
        }
        let svc = match out.service {
            Some(s) => s,
            None => self.active_service(op, name).await?,
        };
        self.info(op, &svc).await
    }

    async fn describe_service(&self, name: &str) -> Result<ServiceInfo> {
        let op = op("describe_service");
        let svc = self.active_service(op, name).await?;
        self.info(op, &svc).await
    }

    async fn list_revisions(&self, name: &str) -> Result<Vec<Revision>> {
        let op = op("list_revisions");
        let svc = self.active_service(op, name).await?;
        let current = svc.task_definition().map(arn_revision).unwrap_or(0);
        let doc = self.read_doc(op, name).await?;
        let family = self.family(Kind::Service, name);
        let mut arns = self.active_revisions(op, name, &family).await?;
        arns.sort_by_key(|a| arn_revision(a));
        let mut out = Vec::new();
        for arn in &arns {
            let def = self.definition(op, name, arn).await?;
            let number = arn_revision(arn);
            let (state, reason) = match doc.revisions.get(&number) {
                _ if number == current => (RevisionState::Active, None),
                Some((RevisionState::RolledBack, why)) => (RevisionState::RolledBack, why.clone()),
                _ if doc.rollout.as_ref().is_some_and(|r| r.revision == number) => {
                    (RevisionState::Deploying, None)
                }
                _ if number > current => (RevisionState::Deploying, None),
                _ => (RevisionState::Superseded, None),
            };
            out.push(Revision {
                number,
                container: spec_from_definition(op, name, &def)?,
                created: def.registered_at().and_then(timestamp).unwrap_or_default(),
                state,
                reason,
            });
        }
        Ok(out)
    }

    async fn create_revision_set(&self, spec: ServiceSpec) -> Result<RevisionSet> {
        let op = op("create_revision_set");
        validate_name(op, "service", &spec.name, 255)?;
        validate_container(op, &spec.name, &spec.container)?;
        validate_replicas(op, &spec.name, spec.replicas)?;
        let name = &spec.name;
        let svc = self.active_service(op, name).await?;
        if !is_external(&svc) {
            return Err(op.invalid(
                name,
                "revision sets are ECS task sets, which need a service made with a blue-green or canary deployment (the EXTERNAL controller)",
            ));
        }
        // The revision that runs this container, if one is kept; else a new one.
        let family = self.family(Kind::Service, name);
        let mut arn = None;
        for a in self.active_revisions(op, name, &family).await? {
            let def = self.definition(op, name, &a).await?;
            if spec_from_definition(op, name, &def).is_ok_and(|c| c == spec.container) {
                arn = Some(a);
                break;
            }
        }
        let arn = match arn {
            Some(a) => a,
            None => {
                let plain = self.decrypt_secrets(op, &spec.container).await?;
                let (def, ..) = self.prepare_service(op, &spec, &plain).await?;
                def.task_definition_arn().unwrap_or_default().to_owned()
            }
        };
        let desired = u32::try_from(svc.desired_count()).unwrap_or(0);
        let set = self.start_task_set(op, &spec, &arn, desired).await?;
        Ok(RevisionSet {
            id: set.id().unwrap_or_default().to_owned(),
            revision: arn_revision(&arn),
            target_group: spec.target_group.clone(),
            replicas: spec.replicas,
        })
    }

    async fn delete_revision_set(&self, service: &str, set: &str) -> Result<()> {
        let op = op("delete_revision_set");
        validate_set_deletion(op, service, set)?;
        self.active_service(op, service).await?;
        if !self
            .task_sets(op, service)
            .await?
            .iter()
            .any(|s| s.id() == Some(set))
        {
            return Err(op.not_found(format!("{service}/{set}"), "no such revision set"));
        }
        // ECS drains the set's tasks from their target group, then stops them.
        self.ecs
            .delete_task_set()
            .cluster(&self.cluster)
            .service(service)
            .task_set(set)
            .send()
            .await
            .map_err(|e| self.fail(op, service, e))?;
        let mut poll = Backoff::new(
            Duration::from_millis(250),
            POLL_MAX,
            Duration::from_secs(3600),
        );
        while self
            .task_sets(op, service)
            .await?
            .iter()
            .any(|s| s.id() == Some(set))
        {
            if poll.expired() {
                return Err(op.err(
                    ErrorKind::Timeout,
                    format!("{service}/{set}"),
                    "the task set was not gone within an hour",
                ));
            }
            poll.wait().await;
        }
        Ok(())
    }

    async fn promote_revision_set(&self, service: &str, set: &str) -> Result<RevisionSet> {
        let op = op("promote_revision_set");
        self.active_service(op, service).await?;
        let sets = self.task_sets(op, service).await?;
        let old = sets
            .iter()
            .find(|s| s.status() == Some("PRIMARY"))
            .cloned()
            .ok_or_else(|| op.internal(service, "the service has no primary task set"))?;
        let new = sets
            .iter()
            .find(|s| s.id() == Some(set))
            .cloned()
            .ok_or_else(|| op.not_found(format!("{service}/{set}"), "no such revision set"))?;
        self.ecs
            .update_service_primary_task_set()
            .cluster(&self.cluster)
            .service(service)
            .primary_task_set(new.task_set_arn().unwrap_or(set))
            .send()
            .await
            .map_err(|e| self.fail(op, service, e))?;
        let revision = new.task_definition().map(arn_revision).unwrap_or(0);
        self.note_revision(op, service, revision, RevisionState::Active, None)
            .await?;
        let old_group = self.set_target_group(op, &old).await?;
        Ok(RevisionSet {
            id: old.id().unwrap_or_default().to_owned(),
            revision: old.task_definition().map(arn_revision).unwrap_or(0),
            target_group: old_group,
            replicas: u32::try_from(old.computed_desired_count()).unwrap_or(0),
        })
    }

    async fn record_rollout(&self, service: &str, rollout: Option<Rollout>) -> Result<()> {
        let op = op("record_rollout");
        self.active_service(op, service).await?;
        let mut doc = self.read_doc(op, service).await?;
        doc.rollout = rollout;
        self.write_doc(op, service, &doc).await
    }

    async fn mark_revision(
        &self,
        service: &str,
        revision: u64,
        state: RevisionState,
        reason: Option<String>,
    ) -> Result<()> {
        let op = op("mark_revision");
        self.active_service(op, service).await?;
        self.note_revision(op, service, revision, state, reason)
            .await
    }

    async fn list_services(&self) -> Result<Vec<ServiceInfo>> {
        let op = op("list_services");
        let mut arns = Vec::new();
        let mut token = None;
        loop {
            let out = match self
                .ecs
                .list_services()
                .cluster(&self.cluster)
                .set_next_token(token)
                .send()
                .await
            {
                Ok(out) => out,
                Err(e) => {
                    let e = self.fail(op, &self.cluster, e);
                    if e.message().starts_with("ClusterNotFoundException") {
                        return Ok(Vec::new());
                    }
                    return Err(e);
                }
            };
            arns.extend(out.service_arns().iter().cloned());
            token = out.next_token;
            if token.is_none() {
                break;
            }
        }
        let mut infos = Vec::new();
        for chunk in arns.chunks(10) {
            let out = self
                .ecs
                .describe_services()
                .cluster(&self.cluster)
                .set_services(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| self.fail(op, &self.cluster, e))?;
            for svc in out.services() {
                if svc.status() == Some("ACTIVE") {
                    infos.push(self.info(op, svc).await?);
                }
            }
        }
        infos.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        Ok(infos)
    }

    async fn delete_service(&self, name: &str) -> Result<()> {
        let op = op("delete_service");
        self.active_service(op, name).await?;
        // The scaler goes first: a target left on a deleted service would scale nothing.
        #[cfg(feature = "autoscaling")]
        self.drop_scaler(op, name).await?;
        // With `force`, ECS scales the service to zero itself: it stops the tasks (SIGTERM,
        // then SIGKILL after the stop time-out) and the service drains away.
        self.ecs
            .delete_service()
            .cluster(&self.cluster)
            .service(name)
            .force(true)
            .send()
            .await
            .map_err(|e| self.fail(op, name, e))?;
        // Running tasks keep their (now inactive) definition until they stop, and the
        // secrets they were started with.
        self.retire(op, name, &self.family(Kind::Service, name), None, false)
            .await;
        self.drop_task_role(&self.family(Kind::Service, name)).await;
        let path = self.secret_path(Kind::Service, name, None);
        self.prune_secrets(op, name, &path, &[]).await;
        self.drop_doc(name).await;
        Ok(())
    }

    async fn run_task(
        &self,
        name: &str,
        spec: ContainerSpec,
        timeout: Duration,
    ) -> Result<TaskResult> {
        let op = op("run_task");
        validate_name(op, "task", name, 255)?;
        if timeout.is_zero() {
            return Err(op.invalid(name, "the time-out must be positive"));
        }
        validate_container(op, name, &spec)?;
        let image = self.resolve_image(op, &spec.image).await?;
        let plain = self.decrypt_secrets(op, &spec).await?;
        self.ensure_cluster(op).await?;
        let network = self.network(op, name, &[], &[]).await?;
        let group = format!("/mvi/tasks/{name}");
        // Each run has secrets of its own: runs of the same name may overlap.
        let run = format!("{:016x}", rand::random::<u64>());
        let path = self.secret_path(Kind::Task, name, Some(&run));
        let registered = async {
            let secrets = self
                .put_secrets(op, &format!("task {name}"), &path, &plain)
                .await?;
            let container = self.container_definition(
                op,
                Kind::Task,
                name,
                &spec,
                &image,
                &group,
                false,
                BTreeMap::new(),
                secrets,
            )?;
            let family = self.family(Kind::Task, name);
            self.register(op, name, &family, &spec, container).await
        }
        .await;
        drop(plain);
        let def = match registered {
            Ok(def) => def,
            Err(e) => {
                self.prune_secrets(op, name, &path, &[]).await;
                return Err(e);
            }
        };
        let def_arn = def.task_definition_arn().unwrap_or_default().to_owned();
        let result = async {
            let out = self
                .ecs
                .run_task()
                .cluster(&self.cluster)
                .task_definition(&def_arn)
                .launch_type(LaunchType::Fargate)
                .network_configuration(network)
                .count(1)
                .started_by("mvi")
                .send()
                .await
                .map_err(|e| self.fail(op, name, e))?;
            let Some(arn) = out.tasks().first().and_then(|t| t.task_arn()) else {
                let why: Vec<String> = out
                    .failures()
                    .iter()
                    .map(|f| {
                        format!(
                            "{} {}",
                            f.reason().unwrap_or("failed"),
                            f.detail().unwrap_or_default()
                        )
                    })
                    .collect();
                return Err(op.err(
                    ErrorKind::Unavailable,
                    name,
                    format!("ECS started no task: {}", why.join("; ")),
                ));
            };
            let arn = arn.to_owned();
            let task = self.wait_task(op, name, &arn, timeout).await?;
            let id = task_id(&arn).to_owned();
            let exit_code = task
                .containers()
                .iter()
                .find(|c| c.name() == Some(CONTAINER))
                .and_then(|c| c.exit_code());
            if exit_code.is_none() && task.stop_code() == Some(&TaskStopCode::TaskFailedToStart) {
                return Err(op.err(
                    ErrorKind::Unavailable,
                    &id,
                    format!(
                        "the task did not start: {}",
                        task.stopped_reason().unwrap_or("no reason given")
                    ),
                ));
            }
            let started = task
                .started_at()
                .or(task.created_at())
                .and_then(timestamp)
                .unwrap_or_else(chrono::Utc::now);
            let finished = task
                .stopped_at()
                .and_then(timestamp)
                .unwrap_or_else(chrono::Utc::now);
            Ok(TaskResult {
                log_stream: (group.clone(), format!("{LOG_PREFIX}/{CONTAINER}/{id}")),
                id,
                exit_code,
                started,
                finished,
            })
        }
        .await;
        // The run is over (or stopped): its definition and secrets are of no further use.
        // Only this run's: another run of the same name may be under way.
        self.drop_definitions(op, name, &[def_arn], true).await;
        self.prune_secrets(op, name, &path, &[]).await;
        result
    }

    async fn put_schedule(&self, spec: ScheduleSpec) -> Result<()> {
        let op = op("put_schedule");
        let name = &spec.name;
        validate_name(op, "schedule", name, 64)?;
        let expression = scheduler_expression(op, name, &spec.cron)?;
        validate_container(op, name, &spec.container)?;
        let image = self.image_reference(op, &spec.container.image).await?;
        let plain = self.decrypt_secrets(op, &spec.container).await?;
        self.ensure_cluster(op).await?;
        self.ensure_group(op).await?;
        let network = self.network(op, name, &[], &[]).await?;
        let cluster_arn = self.cluster_arn(op).await?;
        let role = self.scheduler_role(op).await?;
        let existed = self.schedule_target(op, name).await?.is_some();
        let path = self.secret_path(Kind::Schedule, name, None);
        let family = self.family(Kind::Schedule, name);
        let put = async {
            let secrets = self
                .put_secrets(op, &format!("schedule {name}"), &path, &plain)
                .await?;
            let mut extra = BTreeMap::new();
            extra.insert(L_CRON, spec.cron.clone());
            let container = self.container_definition(
                op,
                Kind::Schedule,
                name,
                &spec.container,
                &image,
                &format!("/mvi/tasks/{name}"),
                false,
                extra,
                secrets.clone(),
            )?;
            let def = self
                .register(op, name, &family, &spec.container, container)
                .await?;
            let def_arn = def.task_definition_arn().unwrap_or_default().to_owned();
            let sent = self
                .send_schedule(
                    op,
                    name,
                    &expression,
                    &spec.cron,
                    scheduler_target(op, name, &cluster_arn, &role, &def_arn, &network)?,
                    existed,
                )
                .await;
            if let Err(e) = sent {
                self.drop_definitions(op, name, &[def_arn], true).await;
                return Err(e);
            }
            Ok((def_arn, secrets))
        }
        .await;
        drop(plain);
        match put {
            Ok((def_arn, secrets)) => {
                // Earlier versions: their definitions and the secrets the new one lacks.
                self.retire(op, name, &family, Some(&def_arn), true).await;
                self.prune_secrets(op, name, &path, &secrets).await;
                Ok(())
            }
            Err(e) => {
                if !existed {
                    self.prune_secrets(op, name, &path, &[]).await;
                }
                Err(e)
            }
        }
    }

    async fn delete_schedule(&self, name: &str) -> Result<()> {
        let op = op("delete_schedule");
        if validate_name(op, "schedule", name, 64).is_err() {
            return Err(op.not_found(name, "no such schedule"));
        }
        match self
            .scheduler
            .delete_schedule()
            .group_name(self.group())
            .name(name)
            .send()
            .await
        {
            Ok(_) => {}
            // No schedule, or not even the group.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                return Err(op.not_found(name, "no such schedule"));
            }
            Err(e) => return Err(map(op, name, e)),
        }
        // A run under way keeps its (now inactive) definition and its secrets' values.
        self.retire(op, name, &self.family(Kind::Schedule, name), None, true)
            .await;
        let path = self.secret_path(Kind::Schedule, name, None);
        self.prune_secrets(op, name, &path, &[]).await;
        Ok(())
    }

    async fn list_schedules(&self) -> Result<Vec<ScheduleSpec>> {
        let op = op("list_schedules");
        let mut schedules = Vec::new();
        for name in self.schedule_names(op).await? {
            // Gone meanwhile, or not one of this backend's (no ECS target).
            let Some(arn) = self.schedule_target(op, &name).await? else {
                continue;
            };
            if arn.is_empty() {
                continue;
            }
            let def = self.definition(op, &name, &arn).await?;
            let l = labels(&def);
            if l.get(L_KIND).map(String::as_str) != Some(Kind::Schedule.as_str())
                || l.get(L_CLUSTER) != Some(&self.cluster)
                || l.get(L_NAME) != Some(&name)
            {
                continue;
            }
            let Some(cron) = l.get(L_CRON) else { continue };
            let container = spec_from_definition(op, &name, &def)?;
            schedules.push(ScheduleSpec::new(name.clone(), cron.clone(), container));
        }
        schedules.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(schedules)
    }

    // Application Auto Scaling (a scalable target on the service's desired count, target
    // tracking policies, scheduled actions) is not wired in yet: refused, never faked.
    #[cfg(feature = "autoscaling")]
    async fn put_scaler(&self, spec: ScalerSpec) -> Result<ScalerInfo> {
        self.put_scaler_aws(spec).await
    }

    #[cfg(feature = "autoscaling")]
    async fn describe_scaler(&self, service: &str) -> Result<ScalerInfo> {
        self.describe_scaler_aws(op("describe_scaler"), service)
            .await
    }

    #[cfg(feature = "autoscaling")]
    async fn delete_scaler(&self, service: &str) -> Result<()> {
        self.delete_scaler_aws(op("delete_scaler"), service).await
    }

    #[cfg(not(feature = "autoscaling"))]
    async fn put_scaler(&self, spec: ScalerSpec) -> Result<ScalerInfo> {
        spec.check()?;
        Err(op("put_scaler").unsupported(NO_SCALERS))
    }

    #[cfg(not(feature = "autoscaling"))]
    async fn describe_scaler(&self, _service: &str) -> Result<ScalerInfo> {
        Err(op("describe_scaler").unsupported(NO_SCALERS))
    }

    #[cfg(not(feature = "autoscaling"))]
    async fn delete_scaler(&self, _service: &str) -> Result<()> {
        Err(op("delete_scaler").unsupported(NO_SCALERS))
    }

    async fn access_policy(
        &self,
        grants: &[mvi_core::access::Grant],
    ) -> Result<mvi_core::access::Policy> {
        self.grants_policy(op("access_policy"), grants).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mvi_core::container::SecretRef;

    impl EcsContainers {
        /// The names of the SSM parameters under `path`.
        async fn secret_names(&self, path: &str) -> Result<Vec<String>> {
            let out = self
                .ssm
                .get_parameters_by_path()
                .path(path)
                .recursive(true)
                .send()
                .await
                .map_err(|e| map(op("test"), path, e))?;
            let mut names: Vec<String> = out
                .parameters()
                .iter()
                .filter_map(|p| p.name().map(str::to_owned))
                .collect();
            names.sort();
            Ok(names)
        }

        async fn get_schedule(
            &self,
            name: &str,
        ) -> Result<aws_sdk_scheduler::operation::get_schedule::GetScheduleOutput> {
            self.scheduler
                .get_schedule()
                .group_name(self.group())
                .name(name)
                .send()
                .await
                .map_err(|e| map(op("test"), name, e))
        }
    }

    /// Services, tasks and schedules go through ECS and come back as they were put (moto's
    /// ECS runs nothing, so replicas stay pending and a task's fake run ends at once).
    #[tokio::test]
    async fn specs_round_trip_through_ecs_on_moto() -> Result<()> {
        let t = op("test");
        // With as many tasks "running" as the services want, ECS (moto) calls their
        // deployments completed.
        let moto = crate::moto::MotoOptions::default()
            .env("MOTO_ECS_SERVICE_RUNNING", "2")
            .start()?;
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("eu-west-1"))
            .endpoint_url(moto.endpoint_url())
            .credentials_provider(aws_credential_types::Credentials::new(
                "testing", "testing", None, None, "test",
            ))
            .load()
            .await;
        let ecs = EcsContainers::new(&config);
        ecs.ecr
            .create_repository()
            .repository_name("web")
            .send()
            .await
            .map_err(|e| map(t, "web", e))?;
        let manifest = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":2},"layers":[]}"#;
        ecs.ecr
            .put_image()
            .repository_name("web")
            .image_tag("v1")
            .image_manifest(manifest)
            .send()
            .await
            .map_err(|e| map(t, "web", e))?;

        let mut c = ContainerSpec::new("web:v1");
        c.command = vec!["serve".into(), "--fast".into()];
        c.env.insert("GREETING".into(), "hi there".into());
        c.env.insert("PORT".into(), "1".into());
        c.port = Some(3000);
        c.cpu_millis = 512;
        c.memory_mib = 1536;
        c.health_check = Some(HealthCheck {
            path: "/healthz".into(),
            ..HealthCheck::default()
        });
        let spec = ServiceSpec::new("api", c.clone(), 2);
        let created = ecs.create_service(spec.clone()).await?;
        assert_eq!(created.spec, spec);
        assert_eq!(created.revision, 1);
        // Only tasks that exist are replicas (moto never starts a service's tasks).
        assert!(created.instances.len() <= 2, "{:?}", created.instances);
        assert!(
            created
                .instances
                .iter()
                .all(|i| i.revision == 1 && i.vm.is_none() && !i.id.contains("pending"))
        );
        let e = ecs
            .create_service(spec.clone())
            .await
            .err()
            .map(|e| e.kind());
        assert_eq!(e, Some(ErrorKind::AlreadyExists));

        // What ECS was given.
        let svc = ecs.active_service(t, "api").await?;
        let def = ecs
            .definition(t, "api", svc.task_definition().unwrap_or_default())
            .await?;
        assert_eq!(def.family(), Some("mvi-svc-api"));
        assert_eq!((def.cpu(), def.memory()), (Some("512"), Some("2048")));
        assert_eq!(def.network_mode(), Some(&NetworkMode::Awsvpc));
        let cd = &def.container_definitions()[0];
        let image = cd.image().unwrap_or_default();
        assert!(
            image.starts_with("123456789012.dkr.ecr.eu-west-1.amazonaws.com/web@sha256:"),
            "{image}"
        );
        let port = cd.environment().iter().find(|kv| kv.name() == Some("PORT"));
        assert_eq!(port.and_then(|kv| kv.value()), Some("3000"));
        assert_eq!(cd.port_mappings()[0].container_port(), Some(3000));
        let logs = cd.log_configuration().map(|l| l.options());
        assert_eq!(
            logs.and_then(|o| o.and_then(|o| o.get("awslogs-group").cloned())),
            Some("/mvi/containers/api".to_owned())
        );
        let vpc = svc
            .network_configuration()
            .and_then(|n| n.awsvpc_configuration());
        assert!(vpc.is_some_and(|v| !v.subnets().is_empty() && v.security_groups().len() == 1));

        assert_eq!(ecs.describe_service("api").await?.spec, spec);
        let listed = ecs.list_services().await?;
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].spec, spec);

        let mut next = spec.clone();
        next.container.env.insert("GREETING".into(), "hello".into());
        let updated = ecs.update_service(next.clone()).await?;
        assert_eq!(updated.spec, next);
        assert!(
            updated
                .instances
                .iter()
                .all(|i| !created.instances.iter().any(|b| b.id == i.id)),
            "{:?} after {:?}",
            updated.instances,
            created.instances
        );
        assert_eq!(updated.revision, 2);
        let scaled = ecs.scale_service("api", 5).await?;
        assert_eq!(scaled.spec.replicas, 5);
        assert!(scaled.instances.len() <= 5);
        let scaled = ecs.scale_service("api", 0).await?;
        assert_eq!((scaled.spec.replicas, scaled.instances.len()), (0, 0));
        ecs.delete_service("api").await?;
        for e in [
            ecs.describe_service("api").await.err(),
            ecs.delete_service("api").await.err(),
            ecs.scale_service("api", 1).await.err(),
        ] {
            assert_eq!(e.map(|e| e.kind()), Some(ErrorKind::NotFound));
        }
        assert!(ecs.list_services().await?.is_empty());
        assert!(
            ecs.active_revisions(t, "api", "mvi-svc-api")
                .await?
                .is_empty()
        );

        // Explicit subnets and groups are kept as given.
        let subnets = ecs
            .ec2
            .describe_subnets()
            .send()
            .await
            .map_err(|e| map(t, "subnets", e))?;
        let subnet = subnets.subnets()[0]
            .subnet_id()
            .unwrap_or_default()
            .to_owned();
        let groups = ecs
            .ec2
            .describe_security_groups()
            .send()
            .await
            .map_err(|e| map(t, "groups", e))?;
        let group = groups.security_groups()[0]
            .group_id()
            .unwrap_or_default()
            .to_owned();
        let mut placed = ServiceSpec::new("placed", ContainerSpec::new("web:v1"), 1);
        placed.subnets = vec![subnet];
        placed.security_groups = vec![group];
        assert_eq!(ecs.create_service(placed.clone()).await?.spec, placed);
        ecs.delete_service("placed").await?;

        let done = ecs
            .run_task("job", ContainerSpec::new("web:v1"), Duration::from_secs(30))
            .await?;
        assert_eq!(done.log_stream.0, "/mvi/tasks/job");
        assert_eq!(done.log_stream.1, format!("mvi/app/{}", done.id));
        assert!(
            ecs.active_revisions(t, "job", "mvi-task-job")
                .await?
                .is_empty()
        );

        // A secret: decrypted with KMS, kept in SSM, referred to by the task definition.
        let key = ecs
            .kms
            .create_key()
            .send()
            .await
            .map_err(|e| map(t, "key", e))?;
        let key_arn = key
            .key_metadata()
            .and_then(|m| m.arn())
            .unwrap_or_default()
            .to_owned();
        let encrypt = |plain: &'static [u8]| {
            let kms = ecs.kms.clone();
            let key = key_arn.clone();
            async move {
                let out = kms
                    .encrypt()
                    .key_id(key)
                    .plaintext(aws_sdk_kms::primitives::Blob::new(plain))
                    .send()
                    .await
                    .map_err(|e| map(t, "encrypt", e))?;
                Ok::<_, Error>(bytes::Bytes::from(
                    out.ciphertext_blob
                        .map(|b| b.into_inner())
                        .unwrap_or_default(),
                ))
            }
        };
        let token = encrypt(b"s3cr3t-value").await?;
        let other = encrypt(b"other-value").await?;
        let mut vault = ContainerSpec::new("web:v1");
        vault.env.insert("MODE".into(), "prod".into());
        // A secret wins over a variable of the same name; the spec keeps both.
        vault.env.insert("TOKEN".into(), "not-used".into());
        vault.secrets.push(SecretRef {
            env: "TOKEN".into(),
            ciphertext: token.clone(),
        });
        let spec = ServiceSpec::new("vault", vault.clone(), 1);
        assert_eq!(ecs.create_service(spec.clone()).await?.spec, spec);
        assert_eq!(ecs.describe_service("vault").await?.spec, spec);
        let read = |name: String| {
            let ssm = ecs.ssm.clone();
            async move {
                let out = ssm
                    .get_parameter()
                    .name(&name)
                    .with_decryption(true)
                    .send()
                    .await
                    .map_err(|e| map(t, &name, e))?;
                let p = out
                    .parameter
                    .ok_or_else(|| t.internal(&name, "no parameter"))?;
                Ok::<_, Error>((p.r#type, p.value))
            }
        };
        // ECS as it answers (not this handle's cache): a reference, never the plaintext.
        let refs = |ecs: &EcsContainers| {
            let (ecs, ssm_arn) = (
                ecs.ecs.clone(),
                "arn:aws:ssm:eu-west-1:123456789012:parameter",
            );
            async move {
                let svc = ecs
                    .describe_services()
                    .cluster("mvi")
                    .services("vault")
                    .send()
                    .await
                    .map_err(|e| map(t, "vault", e))?;
                let arn = svc.services()[0]
                    .task_definition()
                    .unwrap_or_default()
                    .to_owned();
                let def = ecs
                    .describe_task_definition()
                    .task_definition(arn)
                    .send()
                    .await
                    .map_err(|e| map(t, "vault", e))?
                    .task_definition
                    .ok_or_else(|| t.internal("vault", "no definition"))?;
                let shown = format!("{def:?}");
                assert!(!shown.contains("s3cr3t-value"), "plaintext in {shown}");
                let cd = &def.container_definitions()[0];
                // A secret wins over the environment variable of the same name.
                let shadowed = cd.secrets().iter().any(|s| s.name() == "TOKEN");
                assert!(!shadowed || cd.environment().iter().all(|kv| kv.name() != Some("TOKEN")));
                Ok::<_, Error>(
                    cd.secrets()
                        .iter()
                        .map(|s| {
                            let name = s.value_from().strip_prefix(ssm_arn).unwrap_or_default();
                            (s.name().to_owned(), name.to_owned())
                        })
                        .collect::<Vec<(String, String)>>(),
                )
            }
        };
        let first = refs(&ecs).await?;
        assert_eq!(first.len(), 1);
        let (var, token_param) = first[0].clone();
        assert_eq!(var, "TOKEN");
        assert!(
            token_param.starts_with("/mvi/mvi/svc/vault/") && token_param.ends_with("/TOKEN"),
            "{token_param}: a parameter of the revision's own"
        );
        assert_eq!(
            read(token_param.clone()).await?,
            (
                Some(ParameterType::SecureString),
                Some("s3cr3t-value".to_owned())
            )
        );
        let described = ecs
            .ssm
            .describe_parameters()
            .parameter_filters(
                aws_sdk_ssm::types::ParameterStringFilter::builder()
                    .key("Name")
                    .values(&token_param)
                    .build()
                    .map_err(|e| t.internal("filter", e))?,
            )
            .send()
            .await
            .map_err(|e| map(t, "params", e))?;
        assert_eq!(
            described.parameters()[0].key_id(),
            Some(key_arn.as_str()),
            "the parameter is encrypted with the secret's own key"
        );
        // An update that changes the secrets makes parameters of its own; the old revision
        // keeps its values (a rollback starts its tasks with them).
        let mut next = spec.clone();
        next.container.secrets = vec![SecretRef {
            env: "OTHER".into(),
            ciphertext: other.clone(),
        }];
        assert_eq!(ecs.update_service(next.clone()).await?.spec, next);
        let second = refs(&ecs).await?;
        let other_param = second[0].1.clone();
        assert!(
            other_param.ends_with("/OTHER")
                && !other_param.starts_with(token_param.trim_end_matches("TOKEN"))
        );
        let mut names = vec![token_param.clone(), other_param.clone()];
        names.sort();
        assert_eq!(ecs.secret_names("/mvi/mvi/svc/vault").await?, names);
        assert_eq!(
            read(token_param.clone()).await?.1.as_deref(),
            Some("s3cr3t-value")
        );
        assert_eq!(
            read(other_param.clone()).await?.1.as_deref(),
            Some("other-value")
        );
        // Once no kept revision uses a parameter, it goes.
        for i in 0..deploy::KEPT_REVISIONS {
            let mut later = next.clone();
            later.container.env.insert("ROUND".into(), i.to_string());
            ecs.update_service(later).await?;
        }
        let left = ecs.secret_names("/mvi/mvi/svc/vault").await?;
        assert!(!left.contains(&token_param), "{left:?}");
        let revisions = ecs.list_revisions("vault").await?;
        assert_eq!(revisions.len(), deploy::KEPT_REVISIONS);
        assert_eq!(
            revisions.last().map(|r| r.state),
            Some(RevisionState::Active)
        );
        ecs.delete_service("vault").await?;
        assert!(ecs.secret_names("/mvi/mvi").await?.is_empty());
        // A secret that does not decrypt is refused before anything is made.
        let mut bad = ServiceSpec::new("bad", ContainerSpec::new("web:v1"), 1);
        bad.container.secrets.push(SecretRef {
            env: "TOKEN".into(),
            ciphertext: bytes::Bytes::from_static(b"not a ciphertext"),
        });
        let e = ecs.create_service(bad).await.err().map(|e| e.kind());
        assert_eq!(e, Some(ErrorKind::InvalidArgument));
        assert!(ecs.list_services().await?.is_empty());
        assert!(ecs.secret_names("/mvi/mvi").await?.is_empty());
        // A task's secrets live as long as its run.
        let mut job = ContainerSpec::new("web:v1");
        job.secrets.push(SecretRef {
            env: "TOKEN".into(),
            ciphertext: token.clone(),
        });
        ecs.run_task("job", job, Duration::from_secs(30)).await?;
        assert!(ecs.secret_names("/mvi/mvi").await?.is_empty());

        // Schedules: EventBridge Scheduler schedules (group `mvi`) starting Fargate tasks.
        let mut sched = ScheduleSpec::new("nightly", "0 3 * * *", c.clone());
        sched.container.image = "not-pushed:v7".into();
        sched.container.secrets.push(SecretRef {
            env: "TOKEN".into(),
            ciphertext: token.clone(),
        });
        ecs.put_schedule(sched.clone()).await?;
        let got = ecs.get_schedule("nightly").await?;
        assert_eq!(got.schedule_expression(), Some("cron(0 3 * * ? *)"));
        assert_eq!(got.schedule_expression_timezone(), Some("UTC"));
        let target = got
            .target()
            .ok_or_else(|| t.internal("nightly", "no target"))?;
        assert_eq!(
            target.arn(),
            "arn:aws:ecs:eu-west-1:123456789012:cluster/mvi"
        );
        assert_eq!(
            target.role_arn(),
            "arn:aws:iam::123456789012:role/mvi-scheduler"
        );
        let params = target
            .ecs_parameters()
            .ok_or_else(|| t.internal("nightly", "no ECS parameters"))?;
        let revisions = ecs
            .active_revisions(t, "nightly", "mvi-sched-nightly")
            .await?;
        assert_eq!(revisions.len(), 1);
        assert_eq!(params.task_definition_arn(), revisions[0]);
        assert_eq!(
            params.launch_type(),
            Some(&aws_sdk_scheduler::types::LaunchType::Fargate)
        );
        assert_eq!(params.task_count(), Some(1));
        let vpc = params
            .network_configuration()
            .and_then(|n| n.awsvpc_configuration());
        assert!(vpc.is_some_and(|v| !v.subnets().is_empty() && v.security_groups().len() == 1));
        assert_eq!(
            read("/mvi/mvi/sched/nightly/TOKEN".to_owned())
                .await?
                .1
                .as_deref(),
            Some("s3cr3t-value")
        );
        assert_eq!(ecs.list_schedules().await?, vec![sched.clone()]);
        // Replaced: a new expression and definition, the old revision and secret gone.
        sched.cron = "*/5 * * * 1-5".into();
        sched.container.secrets.clear();
        ecs.put_schedule(sched.clone()).await?;
        let got = ecs.get_schedule("nightly").await?;
        assert_eq!(got.schedule_expression(), Some("cron(0/5 * ? * MON-FRI *)"));
        let revisions = ecs
            .active_revisions(t, "nightly", "mvi-sched-nightly")
            .await?;
        assert_eq!(revisions.len(), 1);
        assert_eq!(
            got.target()
                .and_then(|t| t.ecs_parameters())
                .map(|p| p.task_definition_arn()),
            Some(revisions[0].as_str())
        );
        assert!(ecs.secret_names("/mvi/mvi").await?.is_empty());
        assert_eq!(ecs.list_schedules().await?, vec![sched.clone()]);
        let def = ecs.definition(t, "nightly", &revisions[0]).await?;
        assert_eq!(
            def.container_definitions()[0].image(),
            Some("123456789012.dkr.ecr.eu-west-1.amazonaws.com/not-pushed:v7")
        );
        // Both day fields restricted: cron's "either" has no Scheduler equivalent.
        let both = ScheduleSpec::new("both", "0 0 1 * 1", c.clone());
        let e = ecs.put_schedule(both).await.err().map(|e| e.kind());
        assert_eq!(e, Some(ErrorKind::Unsupported));
        ecs.delete_schedule("nightly").await?;
        assert!(ecs.list_schedules().await?.is_empty());
        assert!(ecs.schedule_names(t).await?.is_empty());
        assert!(
            ecs.active_revisions(t, "nightly", "mvi-sched-nightly")
                .await?
                .is_empty()
        );
        let e = ecs.delete_schedule("nightly").await.err().map(|e| e.kind());
        assert_eq!(e, Some(ErrorKind::NotFound));
        Ok(())
    }
}
