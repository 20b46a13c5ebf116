//! Rolling deployments of the local container service, with the circuit breaker and the
//! automatic rollback.
//!
//! `update` makes a new revision when what the replicas run changes (container, target
//! group, subnets, security groups), records it as deploying *beside* the recorded one, and
//! rolls the replicas to it: new replicas start within the surge bound; an old replica is
//! stopped only while enough replicas stay available (the unavailable bound), and stopping
//! means deregister, wait for the load balancer to drain it, SIGTERM, SIGKILL after the stop
//! timeout. A new replica is available when the load balancer's own health check reports it
//! healthy in its target group (without one: when it is ready, see `Status::ready`).
//!
//! The deployment fails when its replicas fail to start or are found unhealthy
//! `circuit_breaker_threshold` times, or when it makes no progress (no replica newly
//! available, no old one stopped) for the progress deadline. Then the same roll runs back to
//! the recorded revision, which stays the recorded one: the service's definition is always
//! what actually runs, and the call fails with `DeploymentFailed`. Only a deployment that
//! finished records its revision as the service's.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use mvi_core::container::{
    PRIMARY_SET, RevisionState, Rollout, RolloutState, ServiceSpec, same_revision,
};
use mvi_core::deploy::{Deployment, Strategy, circuit_breaker_threshold};
use mvi_core::lb::TargetHealth;
use mvi_core::{ErrorKind, Op, Result};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{
    DRAIN_POLL, Inner, InstanceState, Plan, Replica, RevisionRecord, ServiceRecord, rootfs,
    stop_replica,
};

/// Deploys `spec` (see the module doc). The caller holds the service's change lock.
pub(super) async fn update(inner: &Arc<Inner>, op: Op, spec: ServiceSpec) -> Result<()> {
    let name = spec.name.clone();
    let record: ServiceRecord = inner
        .state
        .lock()
        .services
        .get(&name)
        .cloned()
        .ok_or_else(|| op.not_found(&name, "no such service"))?;
    if same_revision(&record.spec, &spec) {
        if record.rollout.is_some() || !record.sets.is_empty() {
            return Err(op.precondition(
                &name,
                "a deployment is in progress (revision sets run beside the service's own); finish or roll it back first",
            ));
        }
        // Only the count or the deployment settings change: no new revision.
        inner.state.mutate(op, |s| {
            if let Some(r) = s.services.get_mut(&name) {
                r.spec.deployment = spec.deployment.clone();
            }
            Ok(())
        })?;
        return inner.scale(op, &name, spec.replicas).await;
    }
    if !matches!(spec.deployment.strategy, Strategy::Rolling(_)) {
        return Err(op.invalid(
            &name,
            format!(
                "a {} deployment moves load balancer traffic, which the container service alone does not: deploy with mvi::deploy::deploy(&cloud, spec)",
                spec.deployment.strategy.name()
            ),
        ));
    }
    if record.rollout.is_some() || !record.sets.is_empty() {
        return Err(op.precondition(
            &name,
            "a deployment is in progress (revision sets run beside the service's own); finish or roll it back first",
        ));
    }
    inner.check_references(op, &spec).await?;
    let image = rootfs::resolve(op, &inner.images, &spec.container.image).await?;
    inner.check_secrets(op, &spec.container).await?;
    let number = record.next_revision();
    let from = record.revision();
    let rollout = Rollout {
        revision: number,
        from,
        strategy: spec.deployment.strategy.name().to_string(),
        state: RolloutState::InProgress,
        weight: None,
        restore: Vec::new(),
    };
    // The count is in place before the rollout is recorded: a `scale_service` that sees the
    // rollout (in `describe_service`) must find the count, not wait behind the change lock
    // this deployment holds until its progress deadline.
    let count = RollingCount::start(inner, &name, spec.replicas);
    inner.state.mutate(op, |s| {
        let r = s
            .services
            .get_mut(&name)
            .ok_or_else(|| op.not_found(&name, "no such service"))?;
        r.push_revision(RevisionRecord {
            number,
            container: spec.container.clone(),
            image: image.clone(),
            target_group: spec.target_group.clone(),
            created: inner.ctx.sim.now(),
            state: RevisionState::Deploying,
            reason: None,
        });
        r.rollout = Some(rollout.clone());
        Ok(())
    })?;
    inner
        .event(
            &name,
            format!(
                "deploying revision {number} ({}, {} replica(s), from revision {from}): image {}",
                rollout.strategy, spec.replicas, spec.container.image
            ),
        )
        .await;
    let new_plan = Arc::new(Plan {
        spec: spec.clone(),
        image: image.clone(),
        revision: number,
    });
    let cause = match roll(inner, &new_plan, spec.replicas, &spec.deployment).await {
        Ok(()) => {
            let mut spec = spec.clone();
            spec.replicas = count.finish();
            inner.state.mutate(op, |s| {
                if let Some(r) = s.services.get_mut(&name) {
                    r.set_revision_state(from, RevisionState::Superseded, None);
                    r.set_revision_state(number, RevisionState::Active, None);
                    r.spec = spec.clone();
                    r.image = image.clone();
                    r.revision = number;
                    r.rollout = None;
                }
                Ok(())
            })?;
            inner
                .event(
                    &name,
                    format!(
                        "revision {number} is deployed: {} replica(s) run it",
                        spec.replicas
                    ),
                )
                .await;
            return Ok(());
        }
        Err(cause) => cause,
    };
    inner
        .event(
            &name,
            format!("revision {number} failed: {cause}; rolling back to revision {from}"),
        )
        .await;
    inner.state.mutate(op, |s| {
        if let Some(ro) = s.services.get_mut(&name).and_then(|r| r.rollout.as_mut()) {
            ro.state = RolloutState::RollingBack;
        }
        Ok(())
    })?;
    let old_plan = Arc::new(record.plan());
    let back = roll(inner, &old_plan, count.now(), &record.spec.deployment).await;
    let replicas = count.finish();
    inner.state.mutate(op, |s| {
        if let Some(r) = s.services.get_mut(&name) {
            r.set_revision_state(number, RevisionState::RolledBack, Some(cause.clone()));
            r.spec.replicas = replicas;
            r.rollout = None;
        }
        Ok(())
    })?;
    let rollback = match &back {
        Ok(()) => format!("rolled back to revision {from}"),
        Err(e) => format!("the rollback to revision {from} did not complete either: {e}"),
    };
    inner
        .event(&name, format!("revision {number}: {rollback}"))
        .await;
    Err(op.err(
        ErrorKind::DeploymentFailed,
        &name,
        format!("revision {number} failed and was {rollback}: {cause}"),
    ))
}

/// The replica count of a rolling deployment while it runs (see `Inner::rolling`); the
/// service has none once this is dropped.
struct RollingCount<'a> {
    inner: &'a Inner,
    name: &'a str,
}

impl<'a> RollingCount<'a> {
    fn start(inner: &'a Inner, name: &'a str, replicas: u32) -> Self {
        super::lock(&inner.rolling).insert(name.to_owned(), replicas);
        RollingCount { inner, name }
    }

    /// The count now (`scale_service` may have changed it).
    fn now(&self) -> u32 {
        self.inner.rolling_count(self.name).unwrap_or_default()
    }

    /// Ends the rolling count and says where it ended. A `scale_service` from here on waits
    /// for the change lock the deployment holds and then scales the recorded revision, so no
    /// count set between reading it and recording it is lost.
    fn finish(self) -> u32 {
        super::lock(&self.inner.rolling)
            .remove(self.name)
            .unwrap_or_default()
    }
}

impl Drop for RollingCount<'_> {
    fn drop(&mut self) {
        super::lock(&self.inner.rolling).remove(self.name);
    }
}

/// Rolls the replicas of `plan`'s service to `plan` (see the module doc), to `desired`
/// replicas or the count `scale_service` set since. `Err` is the cause of the failure, one
/// sentence.
async fn roll(
    inner: &Arc<Inner>,
    plan: &Arc<Plan>,
    desired: u32,
    deployment: &Deployment,
) -> Result<(), String> {
    let name = plan.spec.name.as_str();
    let target = plan.revision;
    let mut deadline = Instant::now() + deployment.progress_deadline;
    let mut stopping: JoinSet<()> = JoinSet::new();
    // Failures of replicas of this revision that were replaced (no longer listed).
    let mut replaced_failures = 0u32;
    let mut last_failure: Option<String> = None;
    let mut announced: BTreeSet<String> = BTreeSet::new();
    loop {
        let desired = inner.rolling_count(name).unwrap_or(desired);
        let (surge, unavailable) = deployment
            .rolling()
            .copied()
            .unwrap_or_default()
            .bounds(desired);
        let threshold = circuit_breaker_threshold(desired);
        let desired_n = desired as usize;
        while stopping.try_join_next().is_some() {}
        let replicas = inner.replicas(name);
        let (new, old): (Vec<Arc<Replica>>, Vec<Arc<Replica>>) = replicas
            .into_iter()
            .partition(|r| r.plan.revision == target);
        let failures = replaced_failures
            + new
                .iter()
                .map(|r| {
                    let s = r.status();
                    if s.last_failure.is_some() {
                        last_failure.clone_from(&s.last_failure);
                    }
                    s.failures
                })
                .sum::<u32>();
        if failures >= threshold {
            stopping.detach_all();
            return Err(format!(
                "its replicas failed {failures} time(s), the circuit breaker's threshold for {desired} replica(s) (last: {})",
                last_failure.as_deref().unwrap_or("unknown")
            ));
        }
        let health = target_health(inner, plan).await;
        let available = |r: &Replica| -> bool {
            if !r.status().ready {
                return false;
            }
            match &health {
                Some(h) => h.get(&r.address()) == Some(&TargetHealth::Healthy),
                None => true,
            }
        };
        let mut progressed = false;
        // New replicas the load balancer found unhealthy are failures: replace them.
        for r in &new {
            let lb_unhealthy = r.status().registered
                && health
                    .as_ref()
                    .is_some_and(|h| h.get(&r.address()) == Some(&TargetHealth::Unhealthy));
            let unhealthy = lb_unhealthy || r.status().state == InstanceState::Unhealthy;
            if unhealthy {
                if lb_unhealthy {
                    r.fail(format!(
                        "the load balancer's health check in target group {} failed",
                        plan.spec.target_group.as_deref().unwrap_or("-")
                    ));
                }
                let s = r.status().clone();
                replaced_failures += s.failures;
                last_failure = s.last_failure;
                inner.remove_replica(name, &r.id);
                inner
                    .event(
                        name,
                        format!("{} (revision {target}) is unhealthy: replacing it", r.id),
                    )
                    .await;
                let r = r.clone();
                stopping.spawn(async move { stop_replica(&r).await });
            }
        }
        let new: Vec<Arc<Replica>> = new
            .into_iter()
            .filter(|r| inner.replicas(name).iter().any(|x| x.id == r.id))
            .collect();
        let mut avail_new = 0usize;
        for r in &new {
            if available(r) {
                avail_new += 1;
                if announced.insert(r.id.clone()) {
                    progressed = true;
                    let where_ = match &plan.spec.target_group {
                        Some(g) => format!("healthy in target group {g}"),
                        None => "ready".to_string(),
                    };
                    inner
                        .event(name, format!("{} (revision {target}) is {where_}", r.id))
                        .await;
                }
            }
        }
        if old.is_empty() && new.len() == desired_n && avail_new == desired_n {
            while stopping.join_next().await.is_some() {}
            return Ok(());
        }
        // Too many of the new revision (the count went down): the newest go first.
        if new.len() > desired_n {
            for r in new.iter().rev().take(new.len() - desired_n) {
                inner.remove_replica(name, &r.id);
                let r = r.clone();
                stopping.spawn(async move { stop_replica(&r).await });
            }
            continue;
        }
        // Start new replicas within the surge bound (replicas still stopping count).
        let running = old.len() + new.len() + stopping.len();
        let room = (desired_n + surge as usize).saturating_sub(running);
        let missing = desired_n - new.len();
        for _ in 0..room.min(missing) {
            // No room on any VM: the replica waits Pending and keeps trying, which the
            // progress deadline bounds.
            let vm = inner
                .place_many(Op::new(mvi_core::Service::Container, "deploy"), plan, 1)
                .ok()
                .and_then(|mut v| v.pop().flatten());
            if let Err(e) = inner.add_replicas(plan, vec![vm], PRIMARY_SET) {
                stopping.detach_all();
                return Err(format!("cannot start a replica: {e}"));
            }
            progressed = true;
        }
        // Stop old replicas while enough stay available. An old replica that is ready counts
        // as serving even if the load balancer has not judged it yet (it may be getting
        // traffic); those that are not ready (crash-looping, pending) go first, for free.
        let serving = |r: &Replica| r.status().ready;
        let mut avail_old = old.iter().filter(|r| serving(r)).count();
        let floor = desired_n.saturating_sub(unavailable as usize);
        let mut by_cost: Vec<&Arc<Replica>> = old.iter().collect();
        by_cost.sort_by_key(|r| serving(r));
        for r in by_cost {
            let serving = serving(r);
            if serving && avail_new + avail_old <= floor {
                break;
            }
            if serving {
                avail_old -= 1;
            }
            inner.remove_replica(name, &r.id);
            let r = r.clone();
            stopping.spawn(async move { stop_replica(&r).await });
            progressed = true;
        }
        if progressed {
            deadline = Instant::now() + deployment.progress_deadline;
        } else if Instant::now() >= deadline {
            stopping.detach_all();
            let states: BTreeMap<String, usize> = new.iter().fold(BTreeMap::new(), |mut m, r| {
                *m.entry(format!("{:?}", r.status().state)).or_default() += 1;
                m
            });
            let states: Vec<String> = states.iter().map(|(k, n)| format!("{n} {k}")).collect();
            return Err(format!(
                "{avail_new} of {desired} replica(s) became available within the progress deadline of {:?} (new replicas: {})",
                deployment.progress_deadline,
                if states.is_empty() {
                    "none".to_string()
                } else {
                    states.join(", ")
                }
            ));
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
}

/// The health of `plan`'s target group's targets by address, if the replicas register with
/// one (`None`: availability is readiness alone).
async fn target_health(inner: &Inner, plan: &Plan) -> Option<BTreeMap<String, TargetHealth>> {
    let (Some(lbs), Some(group)) = (&inner.load_balancers, &plan.spec.target_group) else {
        return None;
    };
    let targets = lbs.target_health(group).await.unwrap_or_default();
    Some(targets.into_iter().map(|t| (t.target, t.health)).collect())
}
