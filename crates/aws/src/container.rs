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
use aws_sdk_ssm::types::ParameterType;
use mvi_core::container::{
    ContainerInstance, ContainerSpec, Containers, HealthCheck, InstanceState, ScheduleSpec,
    ServiceInfo, ServiceSpec, TaskResult, validate_name, validate_replicas,
};
use mvi_core::image::ImageRef;
use mvi_core::{Error, ErrorKind, Op, Result, SecretBytes, Service, Timestamp};

use crate::error::map;

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

/// A decrypted secret, held only until it is stored in SSM (no `Debug`: it is never shown).
struct Plain {
    env: String,
    /// UTF-8, not empty.
    text: SecretBytes,
    /// The KMS key that decrypted it (an ARN), if KMS named it.
    key: Option<String>,
}

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
    #[cfg(feature = "elbv2")]
    elb: aws_sdk_elasticloadbalancingv2::Client,
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
            #[cfg(feature = "elbv2")]
            elb: aws_sdk_elasticloadbalancingv2::Client::new(config),
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

    fn partition(&self) -> &'static str {
        if self.region.starts_with("cn-") {
            "aws-cn"
        } else if self.region.starts_with("us-gov-") {
            "aws-us-gov"
        } else {
            "aws"
        }
    }

    fn registry_host(&self, account: &str) -> String {
        let suffix = if self.region.starts_with("cn-") {
            "amazonaws.com.cn"
        } else {
            "amazonaws.com"
        };
        format!("{account}.dkr.ecr.{}.{suffix}", self.region)
    }

    /// The account id (ECR's registry id), read once.
    async fn account(&self, op: Op) -> Result<String> {
        self.account
            .get_or_try_init(|| async {
                let out = self
                    .ecr
                    .describe_registry()
                    .send()
                    .await
                    .map_err(|e| map(op, "registry", e))?;
                out.registry_id()
                    .map(str::to_owned)
                    .ok_or_else(|| op.internal("registry", "DescribeRegistry answered no id"))
            })
            .await
            .cloned()
    }

    async fn execution_role(&self, op: Op) -> Result<String> {
        if let Some(arn) = &self.execution_role {
            return Ok(arn.clone());
        }
        let account = self.account(op).await?;
        Ok(format!(
            "arn:{}:iam::{account}:role/{EXECUTION_ROLE}",
            self.partition()
        ))
    }

    async fn scheduler_role(&self, op: Op) -> Result<String> {
        if let Some(arn) = &self.scheduler_role {
            return Ok(arn.clone());
        }
        let account = self.account(op).await?;
        Ok(format!(
            "arn:{}:iam::{account}:role/{SCHEDULER_ROLE}",
            self.partition()
        ))
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

    /// The awsvpc configuration of `subnets` and `groups`, each defaulting to the default
    /// VPC's default subnets and the VPC's default security group. Security groups are always
    /// named, as ECS would choose them: moto answers a configuration without them with an
    /// HTTP 500 (a KeyError in its RunTask).
    async fn network(
        &self,
        op: Op,
        resource: &str,
        subnets: &[String],
        groups: &[String],
    ) -> Result<NetworkConfiguration> {
        use aws_sdk_ec2::types::Filter;
        let mut request = self.ec2.describe_subnets();
        if subnets.is_empty() {
            request = request.filters(
                Filter::builder()
                    .name("default-for-az")
                    .values("true")
                    .build(),
            );
        } else {
            request = request.set_subnet_ids(Some(subnets.to_vec()));
        }
        let found = request
            .send()
            .await
            .map_err(|e| map(op, resource, e))?
            .subnets
            .unwrap_or_default();
        if found.is_empty() {
            return Err(op.precondition(
                resource,
                "the account has no default VPC in this region: name the subnets",
            ));
        }
        let vpcs: std::collections::BTreeSet<&str> =
            found.iter().filter_map(|s| s.vpc_id()).collect();
        let vpc = match vpcs.len() {
            1 => vpcs.into_iter().next().unwrap_or_default().to_owned(),
            _ => {
                return Err(op.invalid(
                    resource,
                    format!(
                        "the subnets are in {} VPCs; a task's are in one",
                        vpcs.len()
                    ),
                ));
            }
        };
        let public = found
            .iter()
            .all(|s| s.map_public_ip_on_launch() == Some(true));
        let subnet_ids: Vec<String> = found
            .iter()
            .filter_map(|s| s.subnet_id().map(str::to_owned))
            .collect();
        let group_ids = if groups.is_empty() {
            let out = self
                .ec2
                .describe_security_groups()
                .filters(Filter::builder().name("vpc-id").values(&vpc).build())
                .filters(
                    Filter::builder()
                        .name("group-name")
                        .values("default")
                        .build(),
                )
                .send()
                .await
                .map_err(|e| map(op, resource, e))?;
            let id = out
                .security_groups()
                .iter()
                .find_map(|g| g.group_id())
                .ok_or_else(|| {
                    op.precondition(
                        resource,
                        format!("VPC {vpc} has no default security group: name the groups"),
                    )
                })?;
            vec![id.to_owned()]
        } else {
            groups.to_vec()
        };
        let config = AwsVpcConfiguration::builder()
            .set_subnets(Some(subnet_ids))
            .set_security_groups(Some(group_ids))
            .assign_public_ip(if public {
                AssignPublicIp::Enabled
            } else {
                AssignPublicIp::Disabled
            })
            .build()
            .map_err(|e| op.internal(resource, e))?;
        Ok(NetworkConfiguration::builder()
            .awsvpc_configuration(config)
            .build())
    }

    /// The ARN of the target group `group` (a name, or already an ARN).
    async fn target_group_arn(&self, op: Op, resource: &str, group: &str) -> Result<String> {
        if group.starts_with("arn:") {
            return Ok(group.to_owned());
        }
        #[cfg(feature = "elbv2")]
        {
            let _ = resource;
            let out = self
                .elb
                .describe_target_groups()
                .names(group)
                .send()
                .await
                .map_err(|e| map(op, group, e))?;
            out.target_groups()
                .iter()
                .find_map(|g| g.target_group_arn())
                .map(str::to_owned)
                .ok_or_else(|| op.not_found(group, "no such target group"))
        }
        #[cfg(not(feature = "elbv2"))]
        {
            Err(no_balancers(op, resource))
        }
    }

    // ---- task definitions ----

    fn family(&self, kind: Kind, name: &str) -> String {
        family(&self.cluster, kind, name)
    }

    /// Registers a Fargate task definition of one container.
    async fn register(
        &self,
        op: Op,
        resource: &str,
        family: &str,
        spec: &ContainerSpec,
        container: ContainerDefinition,
    ) -> Result<TaskDefinition> {
        let (cpu, memory) = fargate_size(spec.cpu_millis, spec.memory_mib)
            .ok_or_else(|| too_big(op, resource, spec))?;
        let role = self.execution_role(op).await?;
        let out = self
            .ecs
            .register_task_definition()
            .family(family)
            .requires_compatibilities(Compatibility::Fargate)
            .network_mode(NetworkMode::Awsvpc)
            .cpu(cpu.to_string())
            .memory(memory.to_string())
            .execution_role_arn(role)
            .container_definitions(container)
            .send()
            .await
            .map_err(|e| map(op, resource, e))?;
        let def = out
            .task_definition
            .ok_or_else(|| op.internal(resource, "RegisterTaskDefinition answered nothing"))?;
        if let Some(arn) = def.task_definition_arn() {
            lock(&self.definitions).insert(arn.to_owned(), def.clone());
        }
        Ok(def)
    }

    /// A task definition by ARN.
    async fn definition(&self, op: Op, resource: &str, arn: &str) -> Result<TaskDefinition> {
        if let Some(def) = lock(&self.definitions).get(arn) {
            return Ok(def.clone());
        }
        let out = self
            .ecs
            .describe_task_definition()
            .task_definition(arn)
            .send()
            .await
            .map_err(|e| map(op, resource, e))?;
        let def = out
            .task_definition
            .ok_or_else(|| op.internal(resource, "DescribeTaskDefinition answered nothing"))?;
        lock(&self.definitions).insert(arn.to_owned(), def.clone());
        Ok(def)
    }

    /// The ARNs of the family's active revisions, newest first.
    async fn active_revisions(&self, op: Op, resource: &str, family: &str) -> Result<Vec<String>> {
        let mut arns = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .ecs
                .list_task_definitions()
                .family_prefix(family)
                .status(TaskDefinitionStatus::Active)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| map(op, resource, e))?;
            arns.extend(
                out.task_definition_arns()
                    .iter()
                    // The prefix is a whole family on AWS; make sure of it.
                    .filter(|a| arn_family(a) == Some(family))
                    .cloned(),
            );
            token = out.next_token;
            if token.is_none() {
                break;
            }
        }
        arns.sort_by_key(|a| std::cmp::Reverse(arn_revision(a)));
        Ok(arns)
    }

    /// Deregisters every active revision of `family` but `keep`; with `delete`, deletes them
    /// too. Best effort: what fails is logged and left.
    async fn retire(&self, op: Op, resource: &str, family: &str, keep: Option<&str>, delete: bool) {
        match self.active_revisions(op, resource, family).await {
            Ok(arns) => {
                let arns: Vec<String> = arns
                    .into_iter()
                    .filter(|a| Some(a.as_str()) != keep)
                    .collect();
                self.drop_definitions(op, resource, &arns, delete).await;
            }
            Err(e) => tracing::warn!("cannot list the task definitions of {family}: {e}"),
        }
    }

    /// Deregisters the task definitions `arns`; with `delete`, deletes them too (running
    /// tasks keep theirs until they stop). Best effort: what fails is logged and left.
    async fn drop_definitions(&self, op: Op, resource: &str, arns: &[String], delete: bool) {
        let mut gone = Vec::new();
        for arn in arns {
            match self
                .ecs
                .deregister_task_definition()
                .task_definition(arn)
                .send()
                .await
            {
                Ok(_) => gone.push(arn.clone()),
                Err(e) => tracing::warn!("cannot deregister {arn}: {}", map(op, resource, e)),
            }
        }
        if delete {
            for chunk in gone.chunks(10) {
                if let Err(e) = self
                    .ecs
                    .delete_task_definitions()
                    .set_task_definitions(Some(chunk.to_vec()))
                    .send()
                    .await
                {
                    tracing::warn!(
                        "cannot delete task definitions {chunk:?}: {}",
                        map(op, resource, e)
                    );
                }
            }
        }
    }

    // ---- secrets ----

    /// Decrypts every secret of `c` with KMS (empty encryption context, as the local backend
    /// does), before anything changes: a secret that does not decrypt fails the call. When a
    /// variable is named twice the later secret wins, as locally.
    async fn decrypt_secrets(&self, op: Op, c: &ContainerSpec) -> Result<Vec<Plain>> {
        let mut plain: Vec<Plain> = Vec::with_capacity(c.secrets.len());
        for s in &c.secrets {
            let out = self
                .kms
                .decrypt()
                .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(s.ciphertext.to_vec()))
                .send()
                .await
                .map_err(|e| {
                    let e = map(op, &s.env, e);
                    op.err(
                        e.kind(),
                        &s.env,
                        format!("cannot decrypt the secret: {}", e.message()),
                    )
                })?;
            let text = SecretBytes::new(
                out.plaintext
                    .map(aws_sdk_kms::primitives::Blob::into_inner)
                    .unwrap_or_default(),
            );
            if std::str::from_utf8(text.expose()).is_err() {
                return Err(op.invalid(&s.env, "the secret's plaintext is not UTF-8 text"));
            }
            if text.is_empty() {
                return Err(op.invalid(&s.env, "the secret's plaintext is empty"));
            }
            plain.retain(|p| p.env != s.env);
            plain.push(Plain {
                env: s.env.clone(),
                text,
                key: out.key_id,
            });
        }
        Ok(plain)
    }

    /// The SSM path holding the secrets of `kind` `name` (and of one run of a task).
    fn secret_path(&self, kind: Kind, name: &str, run: Option<&str>) -> String {
        let mut path = format!("/mvi/{}/{}/{name}", self.cluster, kind.as_str());
        if let Some(run) = run {
            path.push('/');
            path.push_str(run);
        }
        path
    }

    /// Stores each secret as a `SecureString` parameter under `path` (encrypted with the key
    /// of its ciphertext, else SSM's own), replacing what was there, and answers the ECS
    /// secrets referring to them, in the spec's order.
    async fn put_secrets(
        &self,
        op: Op,
        resource: &str,
        path: &str,
        plain: &[Plain],
    ) -> Result<Vec<EcsSecret>> {
        if plain.is_empty() {
            return Ok(Vec::new());
        }
        let account = self.account(op).await?;
        let mut refs = Vec::with_capacity(plain.len());
        for p in plain {
            let name = format!("{path}/{}", param_segment(&p.env));
            // Checked when decrypted; the SDK takes the value as text.
            let value = std::str::from_utf8(p.text.expose())
                .map_err(|_| op.invalid(&p.env, "the secret's plaintext is not UTF-8 text"))?;
            self.ssm
                .put_parameter()
                .name(&name)
                .description(format!(
                    "mvi: a secret of {resource} in ECS cluster {}",
                    self.cluster
                ))
                .value(value)
                .r#type(ParameterType::SecureString)
                .key_id(p.key.as_deref().unwrap_or(SSM_DEFAULT_KEY))
                .overwrite(true)
                .send()
                .await
                .map_err(|e| {
                    // Only the error's code and kind: a service message could quote the
                    // value.
                    use aws_sdk_ssm::error::ProvideErrorMetadata;
                    let code = e.code().unwrap_or("no error code").to_owned();
                    let kind = map(op, &p.env, e).kind();
                    op.err(
                        kind,
                        &p.env,
                        format!("cannot store the secret in SSM Parameter Store: {code}"),
                    )
                })?;
            let arn = format!(
                "arn:{}:ssm:{}:{account}:parameter{name}",
                self.partition(),
                self.region
            );
            refs.push(
                EcsSecret::builder()
                    .name(&p.env)
                    .value_from(arn)
                    .build()
                    .map_err(|e| op.internal(resource, e))?,
            );
        }
        Ok(refs)
    }

    /// Deletes the parameters under `path` that `keep` (ECS secrets) does not refer to. Best
    /// effort: what fails is logged and left.
    async fn prune_secrets(&self, op: Op, resource: &str, path: &str, keep: &[EcsSecret]) {
        use aws_sdk_ssm::types::ParameterStringFilter;
        let kept: Vec<&str> = keep
            .iter()
            .map(|s| s.value_from())
            .filter_map(|arn| arn.split_once(":parameter").map(|(_, n)| n))
            .collect();
        let filter = match ParameterStringFilter::builder()
            .key("Path")
            .option("Recursive")
            .values(path)
            .build()
        {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!("cannot list the secrets of {resource}: {e}");
                return;
            }
        };
        // DescribeParameters gives names only: no value leaves SSM to be deleted.
        let mut names = Vec::new();
        let mut token = None;
        loop {
            match self
                .ssm
                .describe_parameters()
                .parameter_filters(filter.clone())
                .set_next_token(token)
                .send()
                .await
            {
                Ok(out) => {
                    names.extend(
                        out.parameters()
                            .iter()
                            .filter_map(|p| p.name())
                            .filter(|n| !kept.contains(n))
                            .map(str::to_owned),
                    );
                    token = out.next_token;
                    if token.is_none() {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(
                        "cannot list the secrets of {resource}: {}",
                        map(op, resource, e)
                    );
                    return;
                }
            }
        }
        for chunk in names.chunks(10) {
            if let Err(e) = self
                .ssm
                .delete_parameters()
                .set_names(Some(chunk.to_vec()))
                .send()
                .await
            {
                tracing::warn!(
                    "cannot delete the parameters {chunk:?}: {}",
                    map(op, resource, e)
                );
            }
        }
    }

    // ---- schedules ----

    /// The schedule group of this handle's schedules: one per cluster, named as it.
    fn group(&self) -> &str {
        &self.cluster
    }

    /// Creates the schedule group unless it exists. It is looked up first: CreateScheduleGroup
    /// of an existing group is a conflict on AWS (and moto replaces the group, dropping its
    /// schedules).
    async fn ensure_group(&self, op: Op) -> Result<()> {
        if self.group_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let group = self.group();
        match self.scheduler.get_schedule_group().name(group).send().await {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                let created = self
                    .scheduler
                    .create_schedule_group()
                    .name(group)
                    .tags(
                        aws_sdk_scheduler::types::Tag::builder()
                            .key("mvi:managed")
                            .value("true")
                            .build()
                            .map_err(|e| op.internal(group, e))?,
                    )
                    .send()
                    .await;
                match created {
                    Ok(_) => {}
                    // Another handle made it meanwhile.
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|e| e.is_conflict_exception()) => {}
                    Err(e) => return Err(map(op, group, e)),
                }
            }
            Err(e) => return Err(map(op, group, e)),
        }
        self.group_ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Creates the schedule `name` (or updates it when `exists`), firing at `expression` (UTC,
    /// no flexible window) with `target`. A create that finds the schedule made meanwhile
    /// updates it, and an update that finds it gone creates it.
    async fn send_schedule(
        &self,
        op: Op,
        name: &str,
        expression: &str,
        cron: &str,
        target: aws_sdk_scheduler::types::Target,
        exists: bool,
    ) -> Result<()> {
        use aws_sdk_scheduler::types::{FlexibleTimeWindow, FlexibleTimeWindowMode, ScheduleState};
        let window = FlexibleTimeWindow::builder()
            .mode(FlexibleTimeWindowMode::Off)
            .build()
            .map_err(|e| op.internal(name, e))?;
        let description = format!(
            "mvi schedule `{cron}` (UTC) of ECS cluster {}",
            self.cluster
        );
        // Create and update take the same fields, through builders of distinct types.
        macro_rules! send {
            ($request:expr) => {
                $request
                    .group_name(self.group())
                    .name(name)
                    .description(&description)
                    .schedule_expression(expression)
                    .schedule_expression_timezone("UTC")
                    .flexible_time_window(window.clone())
                    .state(ScheduleState::Enabled)
                    .target(target.clone())
                    .send()
                    .await
            };
        }
        let mut update = exists;
        for _ in 0..2 {
            if update {
                match send!(self.scheduler.update_schedule()) {
                    Ok(_) => return Ok(()),
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|e| e.is_resource_not_found_exception()) =>
                    {
                        update = false;
                    }
                    Err(e) => return Err(map(op, name, e)),
                }
            } else {
                match send!(self.scheduler.create_schedule()) {
                    Ok(_) => return Ok(()),
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|e| e.is_conflict_exception()) =>
                    {
                        update = true;
                    }
                    Err(e) => {
                        let e = map(op, name, e);
                        if e.is_not_found() {
                            // The group vanished: made again next time.
                            self.group_ready.store(false, Ordering::Release);
                        }
                        return Err(e);
                    }
                }
            }
        }
        Err(op.precondition(
            name,
            "the schedule was created and deleted concurrently; try again",
        ))
    }

    /// The task definition a schedule starts, if the schedule exists.
    async fn schedule_target(&self, op: Op, name: &str) -> Result<Option<String>> {
        match self
            .scheduler
            .get_schedule()
            .group_name(self.group())
            .name(name)
            .send()
            .await
        {
            Ok(out) => Ok(Some(
                out.target()
                    .and_then(|t| t.ecs_parameters())
                    .map(|p| p.task_definition_arn().to_owned())
                    .unwrap_or_default(),
            )),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(map(op, name, e)),
        }
    }

    /// The names of this handle's schedules (none if its group does not exist).
    async fn schedule_names(&self, op: Op) -> Result<Vec<String>> {
        let mut names = Vec::new();
        let mut token = None;
        loop {
            let out = match self
                .scheduler
                .list_schedules()
                .group_name(self.group())
                .set_next_token(token)
                .send()
                .await
            {
                Ok(out) => out,
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_resource_not_found_exception()) =>
                {
                    return Ok(Vec::new());
                }
                Err(e) => return Err(map(op, self.group(), e)),
            };
            names.extend(
                out.schedules()
                    .iter()
                    .filter(|s| s.group_name() == Some(self.group()))
                    .filter_map(|s| s.name().map(str::to_owned)),
            );
            token = out.next_token;
            if token.is_none() {
                break;
            }
        }
        names.sort();
        names.dedup();
        Ok(names)
    }

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
        let arn = svc
            .task_definition()
            .ok_or_else(|| op.internal(&name, "the service has no task definition"))?;
        let def = self.definition(op, &name, arn).await?;
        let labels = labels(&def);
        let container = spec_from_definition(op, &name, &def)?;
        let replicas = u32::try_from(svc.desired_count()).unwrap_or(0);
        let mut spec = ServiceSpec::new(&name, container, replicas);
        spec.target_group = labels.get(L_TARGET_GROUP).cloned();
        let vpc = svc
            .network_configuration()
            .and_then(|n| n.awsvpc_configuration());
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
        let mut instances: Vec<ContainerInstance> = tasks
            .iter()
            .map(|t| instance(t, serves.then_some(port)))
            .collect();
        // Replicas the current deployment has no task for yet: ECS starts them shortly.
        let primary = svc
            .deployments()
            .iter()
            .find(|d| d.status() == Some("PRIMARY"));
        let primary_id = primary.and_then(|d| d.id());
        let started = match primary_id {
            Some(id) => tasks.iter().filter(|t| t.started_by() == Some(id)).count(),
            None => tasks.len(),
        };
        // Tasks ECS counts as running that ListTasks has not shown (it lags; moto, run with
        // MOTO_ECS_SERVICE_RUNNING, counts tasks it never creates). A deployment ECS calls
        // completed has its tasks healthy (its circuit breaker watches the health check).
        let counted = primary
            .map(|d| usize::try_from(d.running_count()).unwrap_or(0))
            .unwrap_or(0)
            .min(replicas as usize);
        let completed = primary.and_then(|d| d.rollout_state())
            == Some(&aws_sdk_ecs::types::DeploymentRolloutState::Completed);
        for n in started..counted {
            instances.push(ContainerInstance {
                id: format!("{}/running-{}", primary_id.unwrap_or("service"), n + 1),
                state: if completed {
                    InstanceState::Healthy
                } else {
                    InstanceState::Running
                },
                vm: None,
                address: None,
                restarts: 0,
                started: None,
            });
        }
        for n in started.max(counted)..replicas as usize {
            instances.push(ContainerInstance {
                id: format!("{}/pending-{}", primary_id.unwrap_or("service"), n + 1),
                state: InstanceState::Pending,
                vm: None,
                address: None,
                restarts: 0,
                started: None,
            });
        }
        Ok(ServiceInfo { spec, instances })
    }

    /// Checks a service spec as the local backend does, before any request.
    fn check_service(&self, op: Op, spec: &ServiceSpec) -> Result<()> {
        validate_name(op, "service", &spec.name, 255)?;
        validate_container(op, &spec.name, &spec.container)?;
        validate_replicas(op, &spec.name, spec.replicas)?;
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
        let port = spec.container.port.unwrap_or(DEFAULT_PORT);
        let mut balancers = Vec::new();
        if let Some(group) = &spec.target_group {
            let arn = self.target_group_arn(op, name, group).await?;
            balancers.push(
                LoadBalancer::builder()
                    .target_group_arn(arn)
                    .container_name(CONTAINER)
                    .container_port(i32::from(port))
                    .build(),
            );
        }
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
        let secrets = self
            .put_secrets(
                op,
                &format!("service {name}"),
                &self.secret_path(Kind::Service, name, None),
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

    /// The container definition of `spec`, running `image`, logging to `group`.
    #[allow(clippy::too_many_arguments)]
    fn container_definition(
        &self,
        op: Op,
        kind: Kind,
        name: &str,
        spec: &ContainerSpec,
        image: &str,
        group: &str,
        behind_balancer: bool,
        extra: BTreeMap<&'static str, String>,
        secrets: Vec<EcsSecret>,
    ) -> Result<ContainerDefinition> {
        let port = spec.port.unwrap_or(DEFAULT_PORT);
        let mut labels: HashMap<String, String> = HashMap::new();
        labels.insert(L_KIND.into(), kind.as_str().into());
        labels.insert(L_CLUSTER.into(), self.cluster.clone());
        labels.insert(L_NAME.into(), name.to_owned());
        labels.insert(L_IMAGE.into(), spec.image.clone());
        if let Some(p) = spec.port {
            labels.insert(L_PORT.into(), p.to_string());
        }
        if let Some(h) = &spec.health_check {
            let json = serde_json::to_string(h).map_err(|e| op.internal(name, e))?;
            labels.insert(L_HEALTH.into(), json);
        }
        if let Some(p) = spec.env.get("PORT") {
            // As locally, the service's PORT wins; the spec's is kept to be given back.
            labels.insert(L_ENV_PORT.into(), p.clone());
        }
        for (k, v) in extra {
            labels.insert(k.into(), v);
        }
        if !spec.secrets.is_empty() {
            // The ciphertexts, so a describe gives back the spec: never the plaintext, which
            // is in SSM only.
            use base64::Engine;
            let given: Vec<[String; 2]> = spec
                .secrets
                .iter()
                .map(|s| {
                    [
                        s.env.clone(),
                        base64::engine::general_purpose::STANDARD.encode(&s.ciphertext),
                    ]
                })
                .collect();
            let json = serde_json::to_string(&given).map_err(|e| op.internal(name, e))?;
            labels.insert(L_SECRETS.into(), json);
        }
        // A secret wins over a variable of the same name, as locally: ECS is given the secret
        // only.
        let secret = |k: &str| secrets.iter().any(|s| s.name() == k);
        let mut env: Vec<KeyValuePair> = spec
            .env
            .iter()
            .filter(|(k, _)| k.as_str() != "PORT")
            .filter(|(k, _)| !secret(k))
            .map(|(k, v)| KeyValuePair::builder().name(k).value(v).build())
            .collect();
        let shadowed: BTreeMap<&String, &String> = spec
            .env
            .iter()
            .filter(|(k, _)| k.as_str() != "PORT" && secret(k))
            .collect();
        if !shadowed.is_empty() {
            let json = serde_json::to_string(&shadowed).map_err(|e| op.internal(name, e))?;
            labels.insert(L_ENV_SHADOWED.into(), json);
        }
        if !secret("PORT") {
            env.push(
                KeyValuePair::builder()
                    .name("PORT")
                    .value(port.to_string())
                    .build(),
            );
        }
        let logs = LogConfiguration::builder()
            .log_driver(LogDriver::Awslogs)
            .options("awslogs-group", group)
            .options("awslogs-region", &self.region)
            .options("awslogs-stream-prefix", LOG_PREFIX)
            .options("awslogs-create-group", "true")
            .build()
            .map_err(|e| op.internal(name, e))?;
        let mut def = ContainerDefinition::builder()
            .name(CONTAINER)
            .image(image)
            .essential(true)
            .cpu(i32::try_from(spec.cpu_millis).unwrap_or(i32::MAX))
            .memory(i32::try_from(spec.memory_mib).unwrap_or(i32::MAX))
            .set_environment(Some(env))
            .set_docker_labels(Some(labels))
            .log_configuration(logs);
        if !spec.command.is_empty() {
            def = def.set_command(Some(spec.command.clone()));
        }
        if !secrets.is_empty() {
            def = def.set_secrets(Some(secrets));
        }
        if serves(spec, behind_balancer) {
            def = def.port_mappings(
                PortMapping::builder()
                    .container_port(i32::from(port))
                    .protocol(TransportProtocol::Tcp)
                    .build(),
            );
        }
        if let Some(h) = &spec.health_check {
            def = def.health_check(ecs_health_check(op, name, h, port)?);
        }
        Ok(def.build())
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

/// The last part of a secret's SSM parameter name: the variable itself when it is made of
/// letters, digits and underscores (as variables usually are), else `-` and a hash of it
/// (SSM names allow fewer characters than variables; `-` starts no plain name).
fn param_segment(env: &str) -> String {
    if (1..=128).contains(&env.len()) && env.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return env.to_owned();
    }
    use sha2::Digest;
    format!(
        "-{}",
        &hex::encode(sha2::Sha256::digest(env.as_bytes()))[..32]
    )
}

/// An EventBridge Scheduler target running one Fargate task of `definition` in the cluster,
/// with the awsvpc configuration of `network`, started with `role`.
fn scheduler_target(
    op: Op,
    name: &str,
    cluster_arn: &str,
    role: &str,
    definition: &str,
    network: &NetworkConfiguration,
) -> Result<aws_sdk_scheduler::types::Target> {
    use aws_sdk_scheduler::types as sch;
    let vpc = network.awsvpc_configuration();
    let public = vpc.and_then(|v| v.assign_public_ip()) == Some(&AssignPublicIp::Enabled);
    let awsvpc = sch::AwsVpcConfiguration::builder()
        .set_subnets(vpc.map(|v| v.subnets().to_vec()))
        .set_security_groups(vpc.map(|v| v.security_groups().to_vec()))
        .assign_public_ip(if public {
            sch::AssignPublicIp::Enabled
        } else {
            sch::AssignPublicIp::Disabled
        })
        .build()
        .map_err(|e| op.internal(name, e))?;
    let ecs = sch::EcsParameters::builder()
        .task_definition_arn(definition)
        .task_count(1)
        .launch_type(sch::LaunchType::Fargate)
        .network_configuration(
            sch::NetworkConfiguration::builder()
                .awsvpc_configuration(awsvpc)
                .build(),
        )
        .build()
        .map_err(|e| op.internal(name, e))?;
    sch::Target::builder()
        .arn(cluster_arn)
        .role_arn(role)
        .ecs_parameters(ecs)
        .build()
        .map_err(|e| op.internal(name, e))
}

/// The EventBridge Scheduler expression of a five-field cron expression (UTC), checked with
/// the local backend's rules first. Scheduler's cron has six fields (`min hour day-of-month
/// month day-of-week year`), wants `?` in one day field, and numbers weekdays 1–7 from
/// Sunday (cron: 0–7, Sunday being 0 and 7): each field is rebuilt from the set of values it
/// matches, weekdays by name. Unsupported: both day fields restricted (cron runs when either
/// matches; Scheduler cannot say that) and `L`, `W` and `#`.
fn scheduler_expression(op: Op, name: &str, cron: &str) -> Result<String> {
    let parsed = parse_cron(op, name, cron)?;
    let p = &parsed.pattern;
    let values = |c: &croner::CronComponent| -> Result<Vec<u16>> {
        if c.has_modifiers() {
            return Err(op.unsupported(format!(
                "schedule {name}: cron expression {cron:?} uses L, W or #, which this backend does not translate for EventBridge Scheduler"
            )));
        }
        Ok(c.values())
    };
    let minutes = render_field(&values(&p.minutes)?, 0, 59);
    let hours = render_field(&values(&p.hours)?, 0, 23);
    let months = render_field(&values(&p.months)?, 1, 12);
    let dom = values(&p.days)?;
    let dow = values(&p.days_of_week)?;
    let (dom, dow) = match (p.is_dom_wildcard(), p.is_dow_wildcard()) {
        (_, true) => (render_field(&dom, 1, 31), "?".to_owned()),
        (true, false) => ("?".to_owned(), render_weekdays(&dow)),
        (false, false) => {
            return Err(op.unsupported(format!(
                "schedule {name}: cron expression {cron:?} restricts both the day of month and the day of week (cron runs when either matches); EventBridge Scheduler takes one of them only"
            )));
        }
    };
    Ok(format!("cron({minutes} {hours} {dom} {months} {dow} *)"))
}

/// A field matching `vals` (sorted) of `lo..=hi`: `*`, `start/step` for a progression running
/// to the end, else a list of values and ranges.
fn render_field(vals: &[u16], lo: u16, hi: u16) -> String {
    if vals.len() == usize::from(hi - lo + 1) {
        return "*".into();
    }
    if let [a, b, ..] = vals {
        let step = b - a;
        if step > 1
            && vals.windows(2).all(|w| w[1] - w[0] == step)
            && vals.last().is_some_and(|l| l + step > hi)
        {
            return format!("{a}/{step}");
        }
    }
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < vals.len() {
        let mut j = i;
        while j + 1 < vals.len() && vals[j + 1] == vals[j] + 1 {
            j += 1;
        }
        if j >= i + 2 {
            parts.push(format!("{}-{}", vals[i], vals[j]));
        } else {
            parts.extend(vals[i..=j].iter().map(u16::to_string));
        }
        i = j + 1;
    }
    parts.join(",")
}

/// Weekdays (cron's 0–6 from Sunday) by name: `*` for all, else names and ranges, which
/// mean the same in Scheduler's numbering (1–7 from Sunday).
fn render_weekdays(days: &[u16]) -> String {
    const NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
    if days.len() == 7 {
        return "*".into();
    }
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < days.len() {
        let mut j = i;
        while j + 1 < days.len() && days[j + 1] == days[j] + 1 {
            j += 1;
        }
        let name = |d: u16| NAMES[usize::from(d % 7)];
        if j >= i + 2 {
            parts.push(format!("{}-{}", name(days[i]), name(days[j])));
        } else {
            parts.extend(days[i..=j].iter().map(|d| name(*d).to_owned()));
        }
        i = j + 1;
    }
    parts.join(",")
}

fn parse_cron(op: Op, name: &str, cron: &str) -> Result<croner::Cron> {
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

// ---- mapping ----

/// The smallest Fargate size (CPU units, MiB) holding `cpu` units and `memory` MiB.
fn fargate_size(cpu: u32, memory: u32) -> Option<(u32, u32)> {
    FARGATE_SIZES
        .iter()
        .filter(|(units, ..)| *units >= cpu)
        .find_map(|&(units, from, to, step)| {
            let mem = if memory <= from {
                from
            } else {
                from + (memory - from).div_ceil(step) * step
            };
            (mem <= to).then_some((units, mem))
        })
}

/// The family of a task definition: `<cluster>-<kind>-<name>`, shortened with a hash of the
/// name past ECS's 255 characters.
fn family(cluster: &str, kind: Kind, name: &str) -> String {
    let full = format!("{cluster}-{}-{name}", kind.as_str());
    if full.len() <= 255 {
        return full;
    }
    use sha2::Digest;
    let hash = hex::encode(sha2::Sha256::digest(name.as_bytes()));
    let keep = 255 - cluster.len() - kind.as_str().len() - 2 - 13;
    // Names are ASCII (validated), so any byte index is a char boundary.
    format!(
        "{cluster}-{}-{}-{}",
        kind.as_str(),
        &name[..keep.min(name.len())],
        &hash[..12]
    )
}

/// The family of a task definition ARN (`...:task-definition/<family>:<revision>`).
fn arn_family(arn: &str) -> Option<&str> {
    arn.rsplit_once('/')
        .and_then(|(_, fr)| fr.rsplit_once(':'))
        .map(|(f, _)| f)
}

fn arn_revision(arn: &str) -> u64 {
    arn.rsplit_once(':')
        .and_then(|(_, r)| r.parse().ok())
        .unwrap_or(0)
}

fn task_id(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// Whether a container serves (its port is mapped and its address reported).
fn serves(c: &ContainerSpec, behind_balancer: bool) -> bool {
    c.port.is_some() || c.health_check.is_some() || behind_balancer
}

/// `s` as one single-quoted shell word.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// An ECS container health check doing an HTTP GET of `h.path` with curl, else wget, its
/// timings rounded into ECS's ranges.
fn ecs_health_check(op: Op, name: &str, h: &HealthCheck, port: u16) -> Result<EcsCheck> {
    let url = shell_quote(&format!("http://127.0.0.1:{port}{}", h.path));
    let secs = |d: Duration| i32::try_from(d.as_secs_f64().ceil() as u64).unwrap_or(i32::MAX);
    let timeout = secs(h.timeout).clamp(2, 60);
    let script = format!(
        "curl -fs -o /dev/null --max-time {timeout} {url} || wget -q -O /dev/null -T {timeout} {url} || exit 1"
    );
    EcsCheck::builder()
        .command("CMD-SHELL")
        .command(script)
        .interval(secs(h.interval).clamp(5, 300))
        .timeout(timeout)
        .retries(
            i32::try_from(h.unhealthy_threshold)
                .unwrap_or(10)
                .clamp(1, 10),
        )
        .build()
        .map_err(|e| op.internal(name, e))
}

fn labels(def: &TaskDefinition) -> HashMap<String, String> {
    def.container_definitions()
        .iter()
        .find(|c| c.name() == Some(CONTAINER))
        .and_then(|c| c.docker_labels())
        .cloned()
        .unwrap_or_default()
}

/// The container spec a task definition was registered from.
fn spec_from_definition(op: Op, resource: &str, def: &TaskDefinition) -> Result<ContainerSpec> {
    let c = def
        .container_definitions()
        .iter()
        .find(|c| c.name() == Some(CONTAINER))
        .ok_or_else(|| {
            op.internal(
                resource,
                format!("task definition without a container named {CONTAINER}"),
            )
        })?;
    let labels = c.docker_labels().cloned().unwrap_or_default();
    let image = labels
        .get(L_IMAGE)
        .cloned()
        .or_else(|| c.image().map(str::to_owned))
        .unwrap_or_default();
    let mut spec = ContainerSpec::new(image);
    spec.command = c.command().to_vec();
    spec.env = c
        .environment()
        .iter()
        .filter(|kv| kv.name() != Some("PORT"))
        .filter_map(|kv| {
            Some((
                kv.name()?.to_owned(),
                kv.value().unwrap_or_default().to_owned(),
            ))
        })
        .collect();
    if let Some(p) = labels.get(L_ENV_PORT) {
        spec.env.insert("PORT".into(), p.clone());
    }
    if let Some(json) = labels.get(L_ENV_SHADOWED) {
        let shadowed: BTreeMap<String, String> =
            serde_json::from_str(json).map_err(|e| op.internal(resource, e))?;
        spec.env.extend(shadowed);
    }
    if let Some(json) = labels.get(L_SECRETS) {
        use base64::Engine;
        let given: Vec<[String; 2]> =
            serde_json::from_str(json).map_err(|e| op.internal(resource, e))?;
        for [env, ciphertext] in given {
            let ciphertext = base64::engine::general_purpose::STANDARD
                .decode(ciphertext)
                .map_err(|e| op.internal(resource, e))?;
            spec.secrets.push(mvi_core::container::SecretRef {
                env,
                ciphertext: ciphertext.into(),
            });
        }
    }
    spec.port = labels.get(L_PORT).and_then(|p| p.parse().ok());
    spec.cpu_millis = u32::try_from(c.cpu()).unwrap_or(0);
    spec.memory_mib = c.memory().and_then(|m| u32::try_from(m).ok()).unwrap_or(0);
    spec.health_check = match labels.get(L_HEALTH) {
        Some(json) => Some(serde_json::from_str(json).map_err(|e| op.internal(resource, e))?),
        None => None,
    };
    Ok(spec)
}

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
        let created = self
            .ecs
            .create_service()
            .cluster(&self.cluster)
            .service_name(name)
            .task_definition(&arn)
            .desired_count(i32::try_from(spec.replicas).unwrap_or(i32::MAX))
            .launch_type(LaunchType::Fargate)
            .network_configuration(network)
            .set_load_balancers((!balancers.is_empty()).then_some(balancers))
            .deployment_configuration(
                DeploymentConfiguration::builder()
                    .minimum_healthy_percent(100)
                    .maximum_percent(200)
                    .deployment_circuit_breaker(
                        DeploymentCircuitBreaker::builder()
                            .enable(true)
                            .rollback(true)
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await;
        let svc = match created {
            Ok(out) => out
                .service
                .ok_or_else(|| op.internal(name, "CreateService answered no service"))?,
            Err(e) => {
                let e = self.fail(op, name, e);
                self.drop_definitions(op, name, &[arn], true).await;
                self.prune_secrets(op, name, &path, &[]).await;
                return Err(e);
            }
        };
        self.info(op, &svc).await
    }

    async fn update_service(&self, spec: ServiceSpec) -> Result<ServiceInfo> {
        let op = op("update_service");
        self.check_service(op, &spec)?;
        let name = &spec.name;
        self.active_service(op, name).await?;
        let plain = self.decrypt_secrets(op, &spec.container).await?;
        // The secrets' parameters are rewritten in place: tasks of the old version that start
        // from now on (a rollback) get the new values.
        let (def, network, balancers, secrets) = self.prepare_service(op, &spec, &plain).await?;
        drop(plain);
        let arn = def.task_definition_arn().unwrap_or_default().to_owned();
        let updated = self
            .ecs
            .update_service()
            .cluster(&self.cluster)
            .service(name)
            .task_definition(&arn)
            .desired_count(i32::try_from(spec.replicas).unwrap_or(i32::MAX))
            .network_configuration(network)
            // An empty list takes the service off a load balancer it was behind.
            .set_load_balancers(Some(balancers))
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
                return Err(e);
            }
        };
        // Secrets the new version no longer has.
        let path = self.secret_path(Kind::Service, name, None);
        self.prune_secrets(op, name, &path, &secrets).await;
        self.info(op, &svc).await
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
        let path = self.secret_path(Kind::Service, name, None);
        self.prune_secrets(op, name, &path, &[]).await;
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

    #[test]
    fn scheduler_expressions() {
        let x = |cron: &str| scheduler_expression(op("t"), "s", cron);
        for (cron, want) in [
            ("0 3 * * *", "cron(0 3 * * ? *)"),
            ("*/5 * * * *", "cron(0/5 * * * ? *)"),
            ("*/7 * * * *", "cron(0/7 * * * ? *)"),
            ("1-10/3 * * * *", "cron(1,4,7,10 * * * ? *)"),
            ("15,45 */2 * * *", "cron(15/30 0/2 * * ? *)"),
            ("30 2 * * 1-5", "cron(30 2 ? * MON-FRI *)"),
            ("0 0 * * 0", "cron(0 0 ? * SUN *)"),
            ("0 0 * * 7", "cron(0 0 ? * SUN *)"),
            ("0 0 * * 5-7", "cron(0 0 ? * SUN,FRI,SAT *)"),
            ("0 0 * * 0-6", "cron(0 0 ? * * *)"),
            ("0 12 1,15 * *", "cron(0 12 1,15 * ? *)"),
            ("0 12 ? * *", "cron(0 12 * * ? *)"),
            ("0 9-17 * JAN-MAR sat", "cron(0 9-17 ? 1-3 SAT *)"),
            ("5 4 1-3,5 */2 *", "cron(5 4 1-3,5 1/2 ? *)"),
        ] {
            assert_eq!(x(cron).ok().as_deref(), Some(want), "{cron}");
        }
        for unsupported in [
            "0 0 1 * 1",
            "0 0 L * *",
            "0 0 * * 5L",
            "0 0 * * 1#2",
            "0 0 15W * *",
        ] {
            assert_eq!(
                x(unsupported).err().map(|e| e.kind()),
                Some(ErrorKind::Unsupported),
                "{unsupported}"
            );
        }
        assert_eq!(
            x("61 * * * *").err().map(|e| e.kind()),
            Some(ErrorKind::InvalidArgument)
        );
    }

    #[test]
    fn parameter_names() {
        assert_eq!(param_segment("API_TOKEN"), "API_TOKEN");
        let odd = param_segment("my token");
        assert!(odd.starts_with('-') && odd.len() == 33, "{odd}");
        assert_ne!(odd, param_segment("my-token"));
    }

    #[test]
    fn fargate_sizes() {
        assert_eq!(fargate_size(128, 64), Some((256, 512)));
        assert_eq!(fargate_size(256, 512), Some((256, 512)));
        assert_eq!(fargate_size(256, 600), Some((256, 1024)));
        assert_eq!(fargate_size(256, 3000), Some((512, 3072)));
        assert_eq!(fargate_size(300, 100), Some((512, 1024)));
        assert_eq!(fargate_size(1024, 9000), Some((2048, 9216)));
        assert_eq!(fargate_size(8192, 20000), Some((8192, 20480)));
        assert_eq!(fargate_size(16384, 122_880), Some((16384, 122_880)));
        assert_eq!(fargate_size(16385, 1), None);
        assert_eq!(fargate_size(1, 122_881), None);
    }

    #[test]
    fn families_fit() {
        assert_eq!(family("mvi", Kind::Service, "web"), "mvi-svc-web");
        let long = "x".repeat(255);
        let f = family("mvi", Kind::Service, &long);
        assert_eq!(f.len(), 255);
        assert_ne!(f, family("mvi", Kind::Service, &"x".repeat(254)));
    }

    #[test]
    fn arns() {
        let arn = "arn:aws:ecs:eu-west-1:123456789012:task-definition/mvi-svc-web:12";
        assert_eq!(arn_family(arn), Some("mvi-svc-web"));
        assert_eq!(arn_revision(arn), 12);
        assert_eq!(task_id("arn:aws:ecs:eu-west-1:1:task/mvi/abc"), "abc");
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("/a'b"), r"'/a'\''b'");
        let h = HealthCheck {
            path: "/healthz".into(),
            interval: Duration::from_millis(200),
            timeout: Duration::from_secs(1),
            healthy_threshold: 2,
            unhealthy_threshold: 20,
        };
        let c = ecs_health_check(op("t"), "t", &h, 8080).expect("a health check");
        assert_eq!(c.interval(), Some(5));
        assert_eq!(c.timeout(), Some(2));
        assert_eq!(c.retries(), Some(10));
        assert!(c.command()[1].contains("'http://127.0.0.1:8080/healthz'"));
    }

    #[test]
    fn crons_as_locally() {
        for bad in ["not a cron", "61 * * * *", "* * * * * *", ""] {
            assert!(parse_cron(op("t"), "s", bad).is_err(), "{bad}");
        }
        for good in ["0 3 * * *", "*/5 * * * *"] {
            assert!(parse_cron(op("t"), "s", good).is_ok(), "{good}");
        }
    }

    /// Services, tasks and schedules go through ECS and come back as they were put (moto's
    /// ECS runs nothing, so replicas stay pending and a task's fake run ends at once).
    #[tokio::test]
    async fn specs_round_trip_through_ecs_on_moto() -> Result<()> {
        let t = op("test");
        let moto = crate::moto::MotoServer::start()?;
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
        assert_eq!(created.instances.len(), 2);
        assert!(
            created
                .instances
                .iter()
                .all(|i| i.state == InstanceState::Pending && i.vm.is_none())
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
        let scaled = ecs.scale_service("api", 5).await?;
        assert_eq!((scaled.spec.replicas, scaled.instances.len()), (5, 5));
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
        let read = |name: &'static str| {
            let ssm = ecs.ssm.clone();
            async move {
                let out = ssm
                    .get_parameter()
                    .name(name)
                    .with_decryption(true)
                    .send()
                    .await
                    .map_err(|e| map(t, name, e))?;
                let p = out
                    .parameter
                    .ok_or_else(|| t.internal(name, "no parameter"))?;
                Ok::<_, Error>((p.r#type, p.value))
            }
        };
        assert_eq!(
            read("/mvi/mvi/svc/vault/TOKEN").await?,
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
                    .values("/mvi/mvi/svc/vault/TOKEN")
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
        // ECS as it answers (not this handle's cache): a reference, never the plaintext.
        let svc = ecs.active_service(t, "vault").await?;
        let def = ecs
            .ecs
            .describe_task_definition()
            .task_definition(svc.task_definition().unwrap_or_default())
            .send()
            .await
            .map_err(|e| map(t, "vault", e))?
            .task_definition
            .ok_or_else(|| t.internal("vault", "no definition"))?;
        let cd = &def.container_definitions()[0];
        let refs: Vec<(&str, &str)> = cd
            .secrets()
            .iter()
            .map(|s| (s.name(), s.value_from()))
            .collect();
        assert_eq!(
            refs,
            vec![(
                "TOKEN",
                "arn:aws:ssm:eu-west-1:123456789012:parameter/mvi/mvi/svc/vault/TOKEN"
            )]
        );
        assert!(cd.environment().iter().all(|kv| kv.name() != Some("TOKEN")));
        let shown = format!("{def:?}");
        assert!(!shown.contains("s3cr3t-value"), "plaintext in {shown}");
        // An update that changes the secrets removes the parameter no longer used.
        let mut next = spec.clone();
        next.container.secrets = vec![SecretRef {
            env: "OTHER".into(),
            ciphertext: other.clone(),
        }];
        assert_eq!(ecs.update_service(next.clone()).await?.spec, next);
        assert_eq!(
            ecs.secret_names("/mvi/mvi/svc/vault").await?,
            vec!["/mvi/mvi/svc/vault/OTHER".to_owned()]
        );
        assert_eq!(
            read("/mvi/mvi/svc/vault/OTHER").await?.1.as_deref(),
            Some("other-value")
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
            read("/mvi/mvi/sched/nightly/TOKEN").await?.1.as_deref(),
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
