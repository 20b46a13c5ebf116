//! Deployments on ECS.
//!
//! - **Rolling** services use ECS's own deployment controller (`ECS`): the service's
//!   `deploymentConfiguration` carries the bounds (`maximumPercent` = 100 + surge,
//!   `minimumHealthyPercent` = 100 − unavailable, each a percent of the desired count) and the
//!   deployment circuit breaker with rollback. An update waits until ECS calls the new
//!   deployment `COMPLETED`, or `FAILED` (the circuit breaker then rolls it back: the call
//!   waits until the last good deployment is steady again and fails with
//!   `DeploymentFailed`), or until the progress deadline, after which the service is put back
//!   on its last good task definition by us.
//! - **Blue-green and canary** services use the `EXTERNAL` controller: each revision set is an
//!   ECS task set (CreateTaskSet with its target group and a scale of the desired count,
//!   DeleteTaskSet, UpdateServicePrimaryTaskSet), driven by core's controller.
//! - **Revisions** are the task definition revisions of the service's family. The last
//!   [`KEPT_REVISIONS`] stay ACTIVE (with their secrets) so ECS can roll back to them.
//! - What ECS has no place for, the deployment in progress as a controller records it and
//!   what became of each revision (rolled back, and why), is one JSON document in SSM
//!   Parameter Store, `/mvi/<cluster>/deploy/<service>`.

#[allow(clippy::wildcard_imports)]
use super::*;

use aws_sdk_ecs::types::{DeploymentController, DeploymentRolloutState, Scale, ScaleUnit};
use mvi_core::deploy::{Deployment, Strategy};

/// Revisions kept ACTIVE, with their secrets, for ECS to roll back to.
pub(super) const KEPT_REVISIONS: usize = 5;

/// The longest a reason is kept in the deployment document (SSM's 4 KB per parameter).
const MAX_REASON: usize = 160;

/// What a controller records of a service's deployments.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct DeployDoc {
    /// The service's deployment settings (ECS keeps the rolling bounds, not the rest).
    #[serde(default)]
    pub(super) deployment: Option<Deployment>,
    pub(super) rollout: Option<Rollout>,
    /// What became of revisions, where the task definitions alone do not say.
    pub(super) revisions: BTreeMap<u64, (RevisionState, Option<String>)>,
}

/// The ECS deployment controller a strategy needs.
pub(super) fn controller_of(d: &Deployment) -> DeploymentControllerType {
    match d.strategy {
        Strategy::Rolling(_) => DeploymentControllerType::Ecs,
        _ => DeploymentControllerType::External,
    }
}

/// Whether the service uses the `EXTERNAL` controller.
pub(super) fn is_external(svc: &EcsService) -> bool {
    svc.deployment_controller().map(|c| c.r#type()) == Some(&DeploymentControllerType::External)
}

/// ECS's deployment configuration for `d` with `desired` replicas.
pub(super) fn deployment_configuration(d: &Deployment, desired: u32) -> DeploymentConfiguration {
    let rolling = d.rolling().copied().unwrap_or_default();
    let (surge, unavailable) = rolling.bounds(desired.max(1));
    let pct = |n: u32| -> i32 {
        let d = desired.max(1);
        i32::try_from((u64::from(n) * 100).div_ceil(u64::from(d))).unwrap_or(i32::MAX)
    };
    DeploymentConfiguration::builder()
        .maximum_percent((100 + pct(surge)).clamp(100, 200))
        .minimum_healthy_percent((100 - pct(unavailable)).clamp(0, 100))
        .deployment_circuit_breaker(
            DeploymentCircuitBreaker::builder()
                .enable(true)
                .rollback(true)
                .build(),
        )
        .build()
}

/// `DeploymentController` of `d`.
pub(super) fn deployment_controller(d: &Deployment) -> Option<DeploymentController> {
    DeploymentController::builder()
        .r#type(controller_of(d))
        .build()
        .ok()
}

impl EcsContainers {
    fn doc_name(&self, name: &str) -> String {
        format!("/mvi/{}/deploy/{name}", self.cluster)
    }

    /// The deployment document of service `name` (empty if none was written).
    pub(super) async fn read_doc(&self, op: Op, name: &str) -> Result<DeployDoc> {
        Ok(self
            .get_document(op, name, &self.doc_name(name), "the deployment document")
            .await?
            .unwrap_or_default())
    }

    /// Writes the deployment document of service `name` (the newest revisions first when it
    /// must be cut to fit).
    pub(super) async fn write_doc(&self, op: Op, name: &str, doc: &DeployDoc) -> Result<()> {
        let mut doc = doc.clone();
        for (_, reason) in doc.revisions.values_mut() {
            if let Some(r) = reason
                && r.len() > MAX_REASON
            {
                let mut cut = MAX_REASON;
                while !r.is_char_boundary(cut) {
                    cut -= 1;
                }
                r.truncate(cut);
                r.push('…');
            }
        }
        while doc.revisions.len() > mvi_core::container::MAX_REVISIONS {
            let oldest = doc.revisions.keys().next().copied().unwrap_or_default();
            doc.revisions.remove(&oldest);
        }
        self.put_document(
            op,
            name,
            &self.doc_name(name),
            "mvi: the deployments of an ECS service",
            &doc,
        )
        .await
    }

    /// Deletes the deployment document of a deleted service (best effort).
    pub(super) async fn drop_doc(&self, name: &str) {
        let op = op("delete_service");
        if let Err(e) = self.delete_document(op, name, &self.doc_name(name)).await {
            tracing::warn!("cannot delete the deployment document of {name}: {e}");
        }
    }

    /// Records the service's deployment settings.
    pub(super) async fn note_deployment(&self, op: Op, name: &str, d: &Deployment) -> Result<()> {
        let mut doc = self.read_doc(op, name).await?;
        if doc.deployment.as_ref() == Some(d) {
            return Ok(());
        }
        doc.deployment = Some(d.clone());
        self.write_doc(op, name, &doc).await
    }

    /// Records what became of `revision`.
    pub(super) async fn note_revision(
        &self,
        op: Op,
        name: &str,
        revision: u64,
        state: RevisionState,
        reason: Option<String>,
    ) -> Result<()> {
        let mut doc = self.read_doc(op, name).await?;
        doc.revisions.insert(revision, (state, reason));
        self.write_doc(op, name, &doc).await
    }

    /// The service's task sets (EXTERNAL controller), primary first.
    pub(super) async fn task_sets(&self, op: Op, name: &str) -> Result<Vec<TaskSet>> {
        let out = self
            .ecs
            .describe_task_sets()
            .cluster(&self.cluster)
            .service(name)
            .send()
            .await
            .map_err(|e| self.fail(op, name, e))?;
        let mut sets: Vec<TaskSet> = out
            .task_sets()
            .iter()
            .filter(|s| s.status() != Some("DRAINING"))
            .cloned()
            .collect();
        sets.sort_by_key(|s| s.status() != Some("PRIMARY"));
        Ok(sets)
    }

    /// Starts a task set of `arn` in `name`, registering with `spec.target_group`, of
    /// `spec.replicas` of the service's `desired` count.
    pub(super) async fn start_task_set(
        &self,
        op: Op,
        spec: &ServiceSpec,
        arn: &str,
        desired: u32,
    ) -> Result<TaskSet> {
        let name = &spec.name;
        let network = self
            .network(op, name, &spec.subnets, &spec.security_groups)
            .await?;
        let balancers = self.balancers(op, spec).await?;
        let percent = if desired == 0 {
            100.0
        } else {
            (f64::from(spec.replicas) * 100.0 / f64::from(desired)).min(100.0)
        };
        let out = self
            .ecs
            .create_task_set()
            .cluster(&self.cluster)
            .service(name)
            .task_definition(arn)
            .launch_type(LaunchType::Fargate)
            .network_configuration(network)
            .set_load_balancers((!balancers.is_empty()).then_some(balancers))
            .scale(
                Scale::builder()
                    .value(percent)
                    .unit(ScaleUnit::Percent)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| self.fail(op, name, e))?;
        out.task_set
            .ok_or_else(|| op.internal(name, "CreateTaskSet answered no task set"))
    }

    /// Waits until the deployment `id` of service `name` has completed (the answer), failed
    /// and been rolled back by ECS's circuit breaker (a cause), or made no progress by
    /// `deadline` (a cause: then the caller rolls back).
    pub(super) async fn wait_deployment(
        &self,
        op: Op,
        name: &str,
        id: &str,
        deadline: Duration,
    ) -> Result<std::result::Result<EcsService, String>> {
        let mut poll = Backoff::new(Duration::from_millis(250), POLL_MAX, deadline);
        loop {
            let svc = self.active_service(op, name).await?;
            let deployments = svc.deployments();
            let ours = deployments.iter().find(|d| d.id() == Some(id));
            match ours {
                Some(d) => match d.rollout_state() {
                    Some(DeploymentRolloutState::Completed) if deployments.len() == 1 => {
                        return Ok(Ok(svc));
                    }
                    Some(DeploymentRolloutState::Failed) => {
                        let why = d
                            .rollout_state_reason()
                            .unwrap_or("ECS's deployment circuit breaker failed it")
                            .to_owned();
                        // ECS rolls back on its own: wait for the last good one to settle.
                        self.wait_steady(op, name, deadline).await?;
                        return Ok(Err(why));
                    }
                    // No rollout state (an endpoint that does not report one): ECS's
                    // services-stable condition.
                    None if deployments.len() == 1 && d.running_count() == svc.desired_count() => {
                        return Ok(Ok(svc));
                    }
                    _ => {}
                },
                // Replaced by a rollback deployment.
                None => {
                    self.wait_steady(op, name, deadline).await?;
                    return Ok(Err("ECS rolled the deployment back".into()));
                }
            }
            if poll.expired() {
                let running = ours.map(|d| d.running_count()).unwrap_or(0);
                return Ok(Err(format!(
                    "{running} of {} task(s) of the new revision were running when the progress deadline of {deadline:?} passed",
                    svc.desired_count()
                )));
            }
            poll.wait().await;
        }
    }

    /// Waits (at most `limit`) until the service has one deployment, steady.
    async fn wait_steady(&self, op: Op, name: &str, limit: Duration) -> Result<EcsService> {
        let mut poll = Backoff::new(Duration::from_millis(250), POLL_MAX, limit);
        loop {
            let svc = self.active_service(op, name).await?;
            let d = svc.deployments();
            if d.len() == 1
                && d.first()
                    .is_some_and(|d| d.rollout_state() != Some(&DeploymentRolloutState::InProgress))
            {
                return Ok(svc);
            }
            if poll.expired() {
                return Err(op.err(
                    ErrorKind::Timeout,
                    name,
                    format!("the service did not settle within {limit:?}"),
                ));
            }
            poll.wait().await;
        }
    }

    /// Keeps the newest [`KEPT_REVISIONS`] task definitions of the service (and the one it
    /// runs), deregisters the rest, and deletes the secrets none of the kept ones uses.
    pub(super) async fn prune_revisions(&self, op: Op, name: &str, running: &str) {
        let family = self.family(Kind::Service, name);
        let arns = match self.active_revisions(op, name, &family).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("cannot list the task definitions of {family}: {e}");
                return;
            }
        };
        // Newest first.
        let mut keep = Vec::new();
        let mut old = Vec::new();
        for (i, a) in arns.into_iter().enumerate() {
            if i < KEPT_REVISIONS || a == running {
                keep.push(a);
            } else {
                old.push(a);
            }
        }
        self.drop_definitions(op, name, &old, false).await;
        let mut secrets = Vec::new();
        for arn in &keep {
            if let Ok(def) = self.definition(op, name, arn).await {
                for c in def.container_definitions() {
                    secrets.extend(c.secrets().iter().cloned());
                }
            }
        }
        let path = self.secret_path(Kind::Service, name, None);
        self.prune_secrets(op, name, &path, &secrets).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mvi_core::deploy::{Count, Rolling};

    #[test]
    fn rolling_bounds_become_ecs_percents() {
        let conf = |surge, unavailable, desired| {
            let d = Deployment::new(Strategy::Rolling(Rolling::new(surge, unavailable)));
            let c = deployment_configuration(&d, desired);
            let b = c
                .deployment_circuit_breaker()
                .map(|b| (b.enable(), b.rollback()));
            assert_eq!(b, Some((true, true)), "the circuit breaker rolls back");
            (c.maximum_percent(), c.minimum_healthy_percent())
        };
        // ECS's defaults.
        assert_eq!(
            conf(Count::Percent(100), Count::Percent(0), 3),
            (Some(200), Some(100))
        );
        // One more of 2 is 150 %, one fewer leaves 50 %.
        assert_eq!(
            conf(Count::Replicas(1), Count::Percent(50), 2),
            (Some(150), Some(50))
        );
        // One more of 3 rounds up to 134 %; ECS's maximum is at most 200 %.
        assert_eq!(
            conf(Count::Replicas(1), Count::Replicas(0), 3),
            (Some(134), Some(100))
        );
        assert_eq!(
            conf(Count::Replicas(9), Count::Replicas(0), 3),
            (Some(200), Some(100))
        );
        assert_eq!(
            controller_of(&Deployment::default()),
            DeploymentControllerType::Ecs
        );
        let bg = Deployment::new(Strategy::BlueGreen(mvi_core::deploy::BlueGreen::new("g")));
        assert_eq!(controller_of(&bg), DeploymentControllerType::External);
    }
}
