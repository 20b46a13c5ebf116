//! Container resources: long-running services and scheduled tasks.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{
    Input, Output, declare, found, gone_ok, insert_input, map_input, push_input, resource_args,
    zip_inputs,
};
use crate::access::Grant;
use crate::container::{
    ContainerSpec, HealthCheck, ScheduleSpec, SecretRef, ServiceInfo, ServiceSpec,
};
use crate::crypto::{CreateKey, EncryptionContext};
use crate::deploy::Deployment;
use crate::error::{ErrorKind, Op, Result, Service};
use crate::stack::{Cx, Resource, ResourceOptions, STATE_KEY_ALIAS, Stack};

// ---------------------------------------------------------------------------------------
// Service

resource_args! {
    /// Arguments of a [`ContainerService`]: a service definition with its container's fields
    /// as separate arguments, so that any of them can come from outputs.
    pub struct ContainerServiceArgs => ContainerServiceSpecArgs {
        /// The service's name.
        name: String,
        /// The image (`repository:tag` or `repository@sha256:...`, e.g. an [`Image`]'s
        /// `reference`).
        ///
        /// [`Image`]: super::Image
        image: String,
        /// Overrides the image's command, if not empty.
        command: Vec<String>,
        /// Environment, added to the image's.
        env: BTreeMap<String, String>,
        /// Secret environment: kept encrypted in the stack's state, and given to the service
        /// encrypted with the Crypto service (decrypted at each start), never in plaintext.
        secret_env: BTreeMap<String, String>,
        /// The Crypto key (id or alias) the secret environment is encrypted under for the
        /// service (`None`: the stack's state key).
        secrets_key: Option<String>,
        /// The port the program listens on (given to it as `PORT`).
        port: Option<u16>,
        /// CPU, in thousandths of a vCPU.
        cpu_millis: u32,
        /// Memory, in MiB.
        memory_mib: u32,
        /// Health check, if any.
        health_check: Option<HealthCheck>,
        /// How many replicas.
        replicas: u32,
        /// Target group the replicas register with.
        target_group: Option<String>,
        /// Subnets (hence zones) to place replicas in; empty means anywhere.
        subnets: Vec<String>,
        /// Security groups of the replicas.
        security_groups: Vec<String>,
        /// How replicas move to a new revision (default: rolling, as ECS).
        deployment: Deployment,
        /// Time between SIGTERM and SIGKILL when a replica stops (`None`: the backend's).
        stop_timeout: Option<std::time::Duration>,
        /// What the service's app may do with the cloud's services (`None`: nothing): its
        /// replicas' credentials locally, its task role on AWS (see `docs/access.md`).
        grants: Option<Vec<Grant>>,
    }
}

impl ContainerServiceArgs {
    /// `replicas` replicas of `image` named `name`, with a quarter vCPU and 512 MiB each.
    pub fn new(
        name: impl Into<Input<String>>,
        image: impl Into<Input<String>>,
        replicas: u32,
    ) -> Self {
        ContainerServiceArgs {
            name: name.into(),
            image: image.into(),
            command: Input::Value(Vec::new()),
            env: Input::Value(BTreeMap::new()),
            secret_env: Input::Value(BTreeMap::new()),
            secrets_key: Input::Value(None),
            port: Input::Value(None),
            cpu_millis: Input::Value(256),
            memory_mib: Input::Value(512),
            health_check: Input::Value(None),
            replicas: Input::Value(replicas),
            target_group: Input::Value(None),
            subnets: Input::Value(Vec::new()),
            security_groups: Input::Value(Vec::new()),
            deployment: Input::Value(Deployment::default()),
            stop_timeout: Input::Value(None),
            grants: Input::Value(None),
        }
    }

    /// Grants the service's app `grant`: `bucket.grant_read_write()`, `table.grant_read()`,
    /// `key.grant_decrypt()`, `log_group.grant_write()` (their names may be outputs), or a
    /// [`Grant`] value.
    pub fn grant(mut self, grant: impl Into<Input<Grant>>) -> Self {
        self.grants = zip_inputs(self.grants, grant.into(), |list, g| {
            let mut list = list.unwrap_or_default();
            list.push(g);
            Some(list)
        });
        self
    }

    /// How replicas move to a new revision.
    pub fn deployment(mut self, deployment: Deployment) -> Self {
        self.deployment = Input::Value(deployment);
        self
    }

    /// Time between SIGTERM and SIGKILL when a replica stops.
    pub fn stop_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.stop_timeout = Input::Value(Some(timeout));
        self
    }

    /// Overrides the image's command.
    pub fn command(mut self, command: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.command = Input::Value(command.into_iter().map(Into::into).collect());
        self
    }

    /// Sets an environment variable (its value may be an output).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<Input<String>>) -> Self {
        self.env = insert_input(self.env, key, value.into());
        self
    }

    /// Sets a secret environment variable (e.g. a [`Database`]'s `url`). The whole secret
    /// environment is secret, whatever the value's own flag.
    ///
    /// [`Database`]: super::Database
    pub fn secret_env(mut self, key: impl Into<String>, value: impl Into<Input<String>>) -> Self {
        let env = insert_input(self.secret_env, key, value.into());
        // The type declares `secret_env` secret: a plain value is sealed in state too.
        self.secret_env = match env {
            Input::Output(o) => Input::Output(o.as_secret()),
            v => v,
        };
        self
    }

    /// Encrypts the secret environment for the service under this key (id or alias).
    pub fn secrets_key(mut self, key: impl Into<Input<String>>) -> Self {
        self.secrets_key = map_input(key.into(), Some);
        self
    }

    /// The port the program listens on.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Input::Value(Some(port));
        self
    }

    /// CPU and memory of each replica.
    pub fn resources(mut self, cpu_millis: u32, memory_mib: u32) -> Self {
        self.cpu_millis = Input::Value(cpu_millis);
        self.memory_mib = Input::Value(memory_mib);
        self
    }

    /// Health check of each replica.
    pub fn health_check(mut self, check: HealthCheck) -> Self {
        self.health_check = Input::Value(Some(check));
        self
    }

    /// Registers the replicas with the target group `name`.
    pub fn target_group(mut self, name: impl Into<Input<String>>) -> Self {
        self.target_group = map_input(name.into(), Some);
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

/// A container service.
#[derive(Debug, Clone)]
pub struct ContainerService {
    /// Its URN.
    pub urn: String,
    /// Its name.
    pub name: Output<String>,
    /// Its replicas' addresses (`host:port`), as of the last change.
    pub addresses: Output<Vec<String>>,
    /// The IAM policy document its app is given (null without grants): the key's policy
    /// locally, the task role's inline policy on AWS. `preview` shows it too.
    pub policy: Output<serde_json::Value>,
}

impl ContainerService {
    /// Declares a service.
    pub fn new(stack: &Stack, name: &str, args: ContainerServiceArgs) -> Result<ContainerService> {
        Self::with(stack, name, args, ResourceOptions::default())
    }

    /// Declares a service with options.
    pub fn with(
        stack: &Stack,
        name: &str,
        args: ContainerServiceArgs,
        opts: ResourceOptions,
    ) -> Result<ContainerService> {
        let h = declare::<ContainerServiceResource>(stack, name, &args, opts)?;
        Ok(ContainerService {
            name: h.output("name"),
            addresses: h.output("addresses"),
            policy: h.output("policy"),
            urn: h.urn().to_string(),
        })
    }
}

/// Outputs of a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerServiceOutputs {
    /// Its name.
    pub name: String,
    /// Its replicas' addresses.
    pub addresses: Vec<String>,
    /// The policy document of its grants (null without grants).
    #[serde(default)]
    pub policy: serde_json::Value,
}

/// The policy document the backend gives an app with `grants` (null for none).
async fn policy_of(cx: Cx<'_>, grants: &[Grant]) -> Result<serde_json::Value> {
    if grants.is_empty() {
        return Ok(serde_json::Value::Null);
    }
    Ok(cx
        .cloud
        .containers()?
        .access_policy(grants)
        .await?
        .to_document())
}

/// The outputs of a service as the backend describes it (its grants read back too).
async fn service_outputs(cx: Cx<'_>, info: &ServiceInfo) -> Result<ContainerServiceOutputs> {
    Ok(ContainerServiceOutputs {
        name: info.spec.name.clone(),
        addresses: info
            .instances
            .iter()
            .filter_map(|i| i.address.clone())
            .collect(),
        policy: policy_of(cx, &info.spec.container.grants).await?,
    })
}

/// Encrypts `plaintext` for a container under `key` (the stack's state key, created if
/// missing, when `key` is `None`).
async fn encrypt_secret(cx: Cx<'_>, key: Option<&str>, plaintext: &str) -> Result<bytes::Bytes> {
    let crypto = cx.cloud.crypto()?;
    let context = EncryptionContext::new();
    let alias = key.unwrap_or(STATE_KEY_ALIAS);
    match crypto.encrypt(alias, plaintext.as_bytes(), &context).await {
        Err(e) if e.kind() == ErrorKind::NotFound && key.is_none() => {
            match crypto
                .create_key(CreateKey::new("mvi stack state secrets").alias(STATE_KEY_ALIAS))
                .await
            {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            crypto.encrypt(alias, plaintext.as_bytes(), &context).await
        }
        other => other,
    }
}

async fn service_spec(cx: Cx<'_>, a: &ContainerServiceSpecArgs) -> Result<ServiceSpec> {
    let mut c = ContainerSpec::new(&a.image);
    c.command = a.command.clone();
    c.env = a.env.clone();
    for (k, v) in &a.secret_env {
        c.secrets.push(SecretRef {
            env: k.clone(),
            ciphertext: encrypt_secret(cx, a.secrets_key.as_deref(), v).await?,
        });
    }
    c.port = a.port;
    c.cpu_millis = a.cpu_millis;
    c.memory_mib = a.memory_mib;
    c.health_check = a.health_check.clone();
    c.stop_timeout = a.stop_timeout;
    c.grants = a.grants.clone().unwrap_or_default();
    let mut s = ServiceSpec::new(&a.name, c, a.replicas);
    s.target_group = a.target_group.clone();
    s.subnets = a.subnets.clone();
    s.security_groups = a.security_groups.clone();
    s.deployment = a.deployment.clone();
    Ok(s)
}

/// The provider of [`ContainerService`].
#[derive(Debug)]
pub struct ContainerServiceResource;

#[async_trait]
impl Resource for ContainerServiceResource {
    const TYPE: &'static str = "mvi:container:Service";
    const ECHOED_OUTPUTS: &'static [&'static str] = &["name"];
    const REPLACE_ON: &'static [&'static str] = &["name"];
    const SECRET_INPUTS: &'static [&'static str] = &["secret_env"];
    type Args = ContainerServiceSpecArgs;
    type Outputs = ContainerServiceOutputs;

    fn check(a: &ContainerServiceSpecArgs) -> Result<()> {
        let op = Op::new(Service::Stack, "check");
        if a.name.is_empty() {
            return Err(op.invalid(&a.name, "property \"name\" must not be empty"));
        }
        if a.image.is_empty() {
            return Err(op.invalid(&a.name, "property \"image\" must not be empty"));
        }
        if a.cpu_millis == 0 || a.memory_mib == 0 {
            return Err(op.invalid(
                &a.name,
                "properties \"cpu_millis\" and \"memory_mib\" must be positive",
            ));
        }
        if let Some(k) = a
            .env
            .keys()
            .chain(a.secret_env.keys())
            .find(|k| k.is_empty() || k.contains('=') || k.contains('\0'))
        {
            return Err(op.invalid(
                &a.name,
                format!("property \"env\": {k:?} is not a valid variable name"),
            ));
        }
        if let Some(k) = a.secret_env.keys().find(|k| a.env.contains_key(*k)) {
            return Err(op.invalid(
                &a.name,
                format!("{k:?} is in both \"env\" and \"secret_env\""),
            ));
        }
        Ok(())
    }

    async fn create(
        cx: Cx<'_>,
        args: &ContainerServiceSpecArgs,
    ) -> Result<(String, ContainerServiceOutputs)> {
        let spec = service_spec(cx, args).await?;
        deployer(cx).deploy(spec).await?;
        let info = steady(cx, &args.name, args.replicas).await?;
        Ok((args.name.clone(), service_outputs(cx, &info).await?))
    }

    async fn find(cx: Cx<'_>, args: &ContainerServiceSpecArgs) -> Result<Option<String>> {
        let s = found(cx.cloud.containers()?.describe_service(&args.name).await)?;
        Ok(s.map(|_| args.name.clone()))
    }

    async fn read(
        cx: Cx<'_>,
        id: &str,
        args: &ContainerServiceSpecArgs,
    ) -> Result<Option<(ContainerServiceSpecArgs, ContainerServiceOutputs)>> {
        let Some(info) = found(cx.cloud.containers()?.describe_service(id).await)? else {
            return Ok(None);
        };
        let out = service_outputs(cx, &info).await?;
        let s = info.spec;
        let c = s.container;
        // The secrets are encrypted in the service: whether the same variables are set is
        // what can be read back.
        let secret_names: Vec<&String> = c.secrets.iter().map(|r| &r.env).collect();
        let secret_env = if secret_names == args.secret_env.keys().collect::<Vec<_>>() {
            args.secret_env.clone()
        } else {
            c.secrets
                .iter()
                .map(|r| (r.env.clone(), String::new()))
                .collect()
        };
        Ok(Some((
            ContainerServiceSpecArgs {
                name: s.name,
                image: c.image,
                command: c.command,
                env: c.env,
                secret_env,
                secrets_key: args.secrets_key.clone(),
                port: c.port,
                cpu_millis: c.cpu_millis,
                memory_mib: c.memory_mib,
                health_check: c.health_check,
                replicas: s.replicas,
                target_group: s.target_group,
                subnets: s.subnets,
                security_groups: s.security_groups,
                deployment: s.deployment,
                stop_timeout: c.stop_timeout,
                grants: (!c.grants.is_empty()).then_some(c.grants),
            },
            out,
        )))
    }

    async fn update(
        cx: Cx<'_>,
        id: &str,
        old: &ContainerServiceSpecArgs,
        new: &ContainerServiceSpecArgs,
    ) -> Result<ContainerServiceOutputs> {
        let containers = cx.cloud.containers()?;
        let same_revision = ContainerServiceSpecArgs {
            replicas: new.replicas,
            deployment: new.deployment.clone(),
            ..old.clone()
        } == *new;
        if same_revision {
            // The count or the deployment settings only: the running definition with them
            // (encrypting the secrets again would make a new revision of the same thing).
            let mut spec = containers.describe_service(id).await?.spec;
            spec.replicas = new.replicas;
            spec.deployment = new.deployment.clone();
            deployer(cx).deploy(spec).await?;
        } else {
            deployer(cx).deploy(service_spec(cx, new).await?).await?;
        }
        service_outputs(cx, &steady(cx, id, new.replicas).await?).await
    }

    async fn delete(cx: Cx<'_>, id: &str, _: &ContainerServiceSpecArgs) -> Result<()> {
        gone_ok(cx.cloud.containers()?.delete_service(id).await)
    }

    async fn preview_outputs(
        cx: Cx<'_>,
        args: &ContainerServiceSpecArgs,
        unknown: &std::collections::BTreeSet<String>,
    ) -> Result<Vec<(&'static str, Option<serde_json::Value>)>> {
        if unknown.contains("grants") {
            return Ok(vec![("policy", None)]);
        }
        let grants = args.grants.as_deref().unwrap_or_default();
        Ok(vec![("policy", Some(policy_of(cx, grants).await?))])
    }
}

/// Deployments of the stack's cloud, their steps on the stack's event stream.
fn deployer(cx: Cx<'_>) -> crate::deploy::Deployer {
    let (events, urn) = (cx.events.clone(), cx.urn.to_string());
    crate::deploy::Deployer::new(cx.cloud).progress(std::sync::Arc::new(move |_, message| {
        let _ = events.send(crate::stack::Event::Progress {
            urn: urn.clone(),
            message: message.to_string(),
        });
    }))
}

/// How long a create or update waits for the service to reach a steady state.
const STEADY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Waits until the deployment is over and `replicas` replicas of the recorded revision are
/// up (healthy, when it has a health check), as ECS's "services stable" waiter: dependents
/// (and the program) then find it serving the new revision, not the old. A replica
/// crash-looping past the time limit is a Timeout naming the service.
async fn steady(cx: Cx<'_>, name: &str, replicas: u32) -> Result<ServiceInfo> {
    use crate::container::InstanceState::{Healthy, Running};
    let containers = cx.cloud.containers()?;
    let deadline = std::time::Instant::now() + STEADY_TIMEOUT;
    loop {
        let info = containers.describe_service(name).await?;
        let up = info
            .instances
            .iter()
            .filter(|i| i.revision == info.revision && [Running, Healthy].contains(&i.state))
            .count();
        if info.stable && info.spec.replicas == replicas {
            return Ok(info);
        }
        if std::time::Instant::now() > deadline {
            return Err(
                crate::error::Op::new(crate::error::Service::Stack, "create").err(
                    crate::error::ErrorKind::Timeout,
                    name,
                    format!(
                        "only {up} of {replicas} replica(s) of revision {} came up within {STEADY_TIMEOUT:?}",
                        info.revision
                    ),
                ),
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Scheduled task

resource_args! {
    /// Arguments of a [`ScheduledTask`].
    pub struct ScheduledTaskArgs => ScheduledTaskSpecArgs {
        /// Its name.
        name: String,
        /// Cron expression (five fields, UTC).
        cron: String,
        /// What to run.
        container: Option<ContainerSpec>,
    }
}

impl ScheduledTaskArgs {
    /// A scheduled task from a definition.
    pub fn new(spec: ScheduleSpec) -> Self {
        ScheduledTaskArgs {
            name: Input::Value(spec.name),
            cron: Input::Value(spec.cron),
            container: Input::Value(Some(spec.container)),
        }
    }
}

/// A scheduled task.
#[derive(Debug, Clone)]
pub struct ScheduledTask {
    /// Its URN.
    pub urn: String,
    /// Its name.
    pub name: Output<String>,
}

impl ScheduledTask {
    /// Declares a scheduled task.
    pub fn new(stack: &Stack, name: &str, args: ScheduledTaskArgs) -> Result<ScheduledTask> {
        Self::with(stack, name, args, ResourceOptions::default())
    }

    /// Declares a scheduled task with options.
    pub fn with(
        stack: &Stack,
        name: &str,
        args: ScheduledTaskArgs,
        opts: ResourceOptions,
    ) -> Result<ScheduledTask> {
        let h = declare::<ScheduledTaskResource>(stack, name, &args, opts)?;
        Ok(ScheduledTask {
            name: h.output("name"),
            urn: h.urn().to_string(),
        })
    }
}

/// Outputs of a scheduled task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduledTaskOutputs {
    /// Its name.
    pub name: String,
}

/// The provider of [`ScheduledTask`].
#[derive(Debug)]
pub struct ScheduledTaskResource;

async fn put_schedule(cx: Cx<'_>, a: &ScheduledTaskSpecArgs) -> Result<ScheduledTaskOutputs> {
    let op = Op::new(Service::Stack, "put_schedule");
    let container = a
        .container
        .clone()
        .ok_or_else(|| op.invalid(&a.name, "property \"container\" is required"))?;
    cx.cloud
        .containers()?
        .put_schedule(ScheduleSpec::new(&a.name, &a.cron, container))
        .await?;
    Ok(ScheduledTaskOutputs {
        name: a.name.clone(),
    })
}

#[async_trait]
impl Resource for ScheduledTaskResource {
    const TYPE: &'static str = "mvi:container:ScheduledTask";
    const REPLACE_ON: &'static [&'static str] = &["name"];
    type Args = ScheduledTaskSpecArgs;
    type Outputs = ScheduledTaskOutputs;

    fn check(a: &ScheduledTaskSpecArgs) -> Result<()> {
        let op = Op::new(Service::Stack, "check");
        if a.name.is_empty() {
            return Err(op.invalid(&a.name, "property \"name\" must not be empty"));
        }
        if a.cron.split_whitespace().count() != 5 {
            return Err(op.invalid(
                &a.name,
                format!("property \"cron\": {:?} must have five fields", a.cron),
            ));
        }
        match &a.container {
            None => Err(op.invalid(&a.name, "property \"container\" is required")),
            Some(c) if c.image.is_empty() => Err(op.invalid(
                &a.name,
                "property \"container\": the image must not be empty",
            )),
            Some(_) => Ok(()),
        }
    }

    async fn create(
        cx: Cx<'_>,
        args: &ScheduledTaskSpecArgs,
    ) -> Result<(String, ScheduledTaskOutputs)> {
        let out = put_schedule(cx, args).await?;
        Ok((args.name.clone(), out))
    }

    async fn find(cx: Cx<'_>, args: &ScheduledTaskSpecArgs) -> Result<Option<String>> {
        let all = cx.cloud.containers()?.list_schedules().await?;
        Ok(all
            .iter()
            .any(|s| s.name == args.name)
            .then(|| args.name.clone()))
    }

    async fn read(
        cx: Cx<'_>,
        id: &str,
        _: &ScheduledTaskSpecArgs,
    ) -> Result<Option<(ScheduledTaskSpecArgs, ScheduledTaskOutputs)>> {
        let all = cx.cloud.containers()?.list_schedules().await?;
        Ok(all.into_iter().find(|s| s.name == id).map(|s| {
            (
                ScheduledTaskSpecArgs {
                    name: s.name.clone(),
                    cron: s.cron,
                    container: Some(s.container),
                },
                ScheduledTaskOutputs { name: s.name },
            )
        }))
    }

    async fn update(
        cx: Cx<'_>,
        _: &str,
        _: &ScheduledTaskSpecArgs,
        new: &ScheduledTaskSpecArgs,
    ) -> Result<ScheduledTaskOutputs> {
        put_schedule(cx, new).await
    }

    async fn delete(cx: Cx<'_>, id: &str, _: &ScheduledTaskSpecArgs) -> Result<()> {
        gone_ok(cx.cloud.containers()?.delete_schedule(id).await)
    }
}
