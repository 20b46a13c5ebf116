//! Task definitions: one per service revision, task run and schedule, and how a container spec
//! maps to and from them (Fargate sizes, health checks, Docker labels for what ECS has no field
//! for).

#[allow(clippy::wildcard_imports)]
use super::*;

impl EcsContainers {
    pub(super) fn family(&self, kind: Kind, name: &str) -> String {
        family(&self.cluster, kind, name)
    }

    /// Registers a Fargate task definition of one container.
    pub(super) async fn register(
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
        // The program's own permissions: a role made of the spec's grants, or none.
        let task_role = match spec.grants.is_empty() {
            true => None,
            false => Some(self.task_role(op, resource, family, &spec.grants).await?),
        };
        let out = self
            .ecs
            .register_task_definition()
            .family(family)
            .requires_compatibilities(Compatibility::Fargate)
            .network_mode(NetworkMode::Awsvpc)
            .cpu(cpu.to_string())
            .memory(memory.to_string())
            .execution_role_arn(role)
            .set_task_role_arn(task_role)
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
    pub(super) async fn definition(
        &self,
        op: Op,
        resource: &str,
        arn: &str,
    ) -> Result<TaskDefinition> {
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
    pub(super) async fn active_revisions(
        &self,
        op: Op,
        resource: &str,
        family: &str,
    ) -> Result<Vec<String>> {
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
    pub(super) async fn retire(
        &self,
        op: Op,
        resource: &str,
        family: &str,
        keep: Option<&str>,
        delete: bool,
    ) {
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
    pub(super) async fn drop_definitions(
        &self,
        op: Op,
        resource: &str,
        arns: &[String],
        delete: bool,
    ) {
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

    /// The container definition of `spec`, running `image`, logging to `group`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn container_definition(
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
        if !spec.grants.is_empty() {
            let json = serde_json::to_string(&spec.grants).map_err(|e| op.internal(name, e))?;
            labels.insert(L_GRANTS.into(), json);
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
}

/// The smallest Fargate size (CPU units, MiB) holding `cpu` units and `memory` MiB.
pub(super) fn fargate_size(cpu: u32, memory: u32) -> Option<(u32, u32)> {
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
pub(super) fn family(cluster: &str, kind: Kind, name: &str) -> String {
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
pub(super) fn arn_family(arn: &str) -> Option<&str> {
    arn.rsplit_once('/')
        .and_then(|(_, fr)| fr.rsplit_once(':'))
        .map(|(f, _)| f)
}

pub(super) fn arn_revision(arn: &str) -> u64 {
    arn.rsplit_once(':')
        .and_then(|(_, r)| r.parse().ok())
        .unwrap_or(0)
}

pub(super) fn task_id(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// Whether a container serves (its port is mapped and its address reported).
pub(super) fn serves(c: &ContainerSpec, behind_balancer: bool) -> bool {
    c.port.is_some() || c.health_check.is_some() || behind_balancer
}

/// `s` as one single-quoted shell word.
pub(super) fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// An ECS container health check doing an HTTP GET of `h.path` with curl, else wget, its
/// timings rounded into ECS's ranges.
pub(super) fn ecs_health_check(op: Op, name: &str, h: &HealthCheck, port: u16) -> Result<EcsCheck> {
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

pub(super) fn labels(def: &TaskDefinition) -> HashMap<String, String> {
    def.container_definitions()
        .iter()
        .find(|c| c.name() == Some(CONTAINER))
        .and_then(|c| c.docker_labels())
        .cloned()
        .unwrap_or_default()
}

/// The container spec a task definition was registered from.
pub(super) fn spec_from_definition(
    op: Op,
    resource: &str,
    def: &TaskDefinition,
) -> Result<ContainerSpec> {
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
    if let Some(json) = labels.get(L_GRANTS) {
        spec.grants = serde_json::from_str(json).map_err(|e| op.internal(resource, e))?;
    }
    spec.health_check = match labels.get(L_HEALTH) {
        Some(json) => Some(serde_json::from_str(json).map_err(|e| op.internal(resource, e))?),
        None => None,
    };
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
