//! Blue-green and canary deployments: one controller over the service traits, the same on
//! every backend. It drives the Container service's revision sets (ECS task sets), the load
//! balancer's listener weights and the Metric service.
//!
//! The new revision runs as a second set of replicas in the strategy's target group (the
//! preview or canary group). Blue-green checks it and then moves all traffic to it at once;
//! canary moves the traffic in weighted steps, analysing the canary group's requests at each.
//! Once all traffic is on the new set, the deployment *returns the load balancer to its
//! declared shape*: a set of the new revision is started in the service's own target group
//! (which gets no traffic meanwhile), the old replicas are drained from it and stopped, the
//! listeners get their weights from before the deployment back, and the canary set is
//! drained and stopped. So the service's target group and the listeners look as declared
//! before and after, and only the revision changed.
//!
//! Every change is recorded first ([`Containers::record_rollout`]), with the listeners'
//! weights from before: a failure anywhere, or the next deployment after a crash, restores
//! them, deletes the extra sets, and leaves the last good revision serving all traffic.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::analysis::{self, Source, Verdict};
use super::{Analysis, BlueGreen, Deployment, Progress, Strategy, TrafficShift};
use crate::cloud::Cloud;
use crate::common::{Clock, SystemClock};
use crate::container::{
    Containers, ListenerForward, PRIMARY_SET, RevisionSet, RevisionState, Rollout, RolloutState,
    ServiceInfo, ServiceSpec,
};
use crate::error::{ErrorKind, Op, Result, Service};
use crate::lb::LoadBalancers;
use crate::log::{LogEvent, Logs};
use crate::metric::Metrics;

fn op() -> Op {
    Op::new(Service::Container, "deploy")
}

/// How often the controller looks at the services while it waits.
const POLL: Duration = Duration::from_millis(20);

/// What a deployment drives.
pub(crate) struct Controller {
    containers: Arc<dyn Containers>,
    lbs: Arc<dyn LoadBalancers>,
    metrics: Option<Arc<dyn Metrics>>,
    logs: Option<Arc<dyn Logs>>,
    clock: Arc<dyn Clock>,
    progress: Option<Progress>,
    name: String,
}

/// Why a deployment is being aborted.
struct Abort(String);

impl Controller {
    pub(crate) fn new(
        cloud: &Cloud,
        name: &str,
        progress: Option<Progress>,
        clock: Option<Arc<dyn Clock>>,
    ) -> Result<Self> {
        Ok(Controller {
            containers: cloud.containers()?.clone(),
            lbs: cloud.load_balancers()?.clone(),
            metrics: cloud.metrics().ok().cloned(),
            logs: cloud.logs().ok().cloned(),
            clock: clock.unwrap_or_else(|| Arc::new(SystemClock)),
            progress,
            name: name.to_string(),
        })
    }

    /// One step of the deployment: to the progress callback and the log group
    /// `/mvi/deploy/<service>` (stream `events`).
    async fn event(&self, message: String) {
        tracing::info!("deploy {}: {message}", self.name);
        if let Some(p) = &self.progress {
            p(&self.name, &message);
        }
        let Some(logs) = &self.logs else { return };
        let group = log_group(&self.name);
        let put = |logs: Arc<dyn Logs>, group: String, message: String, at| async move {
            logs.put_events(&group, "events", vec![LogEvent::new(at, message)])
                .await
        };
        let now = self.clock.now();
        if let Err(e) = put(logs.clone(), group.clone(), message.clone(), now).await
            && e.kind() == ErrorKind::NotFound
        {
            let _ = logs.create_group(&group, None).await;
            let _ = logs.create_stream(&group, "events").await;
            let _ = put(logs.clone(), group, message, now).await;
        }
    }

    async fn describe(&self) -> Result<ServiceInfo> {
        self.containers.describe_service(&self.name).await
    }

    async fn record(&self, rollout: &Rollout) -> Result<()> {
        self.containers
            .record_rollout(&self.name, Some(rollout.clone()))
            .await
    }

    /// Undoes what a deployment that did not finish left (a crash, or a failure to abort):
    /// the listeners' weights from before it, and no set but the primary.
    pub(crate) async fn recover(&self, info: &ServiceInfo) -> Result<()> {
        let leftover: Vec<&RevisionSet> =
            info.sets.iter().filter(|s| s.id != PRIMARY_SET).collect();
        if info.rollout.is_none() && leftover.is_empty() {
            return Ok(());
        }
        if let Some(r) = &info.rollout {
            self.event(format!(
                "revision {} ({}) did not finish: restoring the listeners and the last good revision {}",
                r.revision, r.strategy, r.from
            ))
            .await;
            self.restore(&r.restore).await?;
        }
        for s in leftover {
            self.containers
                .delete_revision_set(&self.name, &s.id)
                .await?;
        }
        if let Some(r) = &info.rollout
            && r.revision != info.revision
        {
            let marked = self
                .containers
                .mark_revision(
                    &self.name,
                    r.revision,
                    RevisionState::RolledBack,
                    Some("the deployment was interrupted".into()),
                )
                .await;
            // Killed after recording the rollout but before its revision was made: there is
            // no revision to mark (the service itself was just described), and the rollout
            // must still be cleared.
            match marked {
                Err(e) if e.is_not_found() => {}
                other => other?,
            }
        }
        self.containers.record_rollout(&self.name, None).await
    }

    /// Sets every listener back to its weights from before the deployment.
    async fn restore(&self, restore: &[ListenerForward]) -> Result<()> {
        for l in restore {
            self.lbs
                .set_weights(&l.load_balancer, l.port, l.forward.clone())
                .await?;
        }
        Ok(())
    }

    /// Moves `percent` of every listener's traffic to `to`, the rest to `from`.
    async fn shift(
        &self,
        restore: &[ListenerForward],
        from: &str,
        to: &str,
        percent: u32,
    ) -> Result<()> {
        for l in restore {
            let mut forward: Vec<(String, u32)> = l
                .forward
                .iter()
                .filter(|(g, _)| g != from && g != to)
                .cloned()
                .collect();
            forward.push((from.to_string(), 100 - percent.min(100)));
            forward.push((to.to_string(), percent.min(100)));
            self.lbs
                .set_weights(&l.load_balancer, l.port, forward)
                .await?;
        }
        Ok(())
    }

    /// The listeners forwarding to `group`, as they are now.
    async fn listeners_of(&self, group: &str) -> Result<Vec<ListenerForward>> {
        let mut out = Vec::new();
        for lb in self.lbs.list_load_balancers().await? {
            for (i, l) in lb.spec.listeners.iter().enumerate() {
                if !l.forward.iter().any(|(g, w)| g == group && *w > 0) {
                    continue;
                }
                out.push(ListenerForward {
                    load_balancer: lb.spec.name.clone(),
                    port: listener_port(l.port, lb.urls.get(i)),
                    forward: l.forward.clone(),
                });
            }
        }
        Ok(out)
    }

    /// A listener URL forwarding to `group` only (a test listener), if there is one.
    async fn test_listener(&self, group: &str) -> Result<Option<String>> {
        for lb in self.lbs.list_load_balancers().await? {
            for (i, l) in lb.spec.listeners.iter().enumerate() {
                let only = l.forward.iter().all(|(g, w)| g == group || *w == 0)
                    && l.forward.iter().any(|(g, w)| g == group && *w > 0);
                if only {
                    let url = lb
                        .urls
                        .get(i)
                        .cloned()
                        .unwrap_or_else(|| format!("http://{}:{}", lb.dns_name, l.port));
                    return Ok(Some(url));
                }
            }
        }
        Ok(None)
    }

    /// Waits until every replica of `set` is healthy in its target group. The circuit
    /// breaker counts restarts; the progress deadline bounds a set that stops progressing.
    async fn wait_available(&self, set: &RevisionSet, d: &Deployment) -> Result<(), Abort> {
        let group = set.target_group.clone().unwrap_or_default();
        let threshold = super::circuit_breaker_threshold(set.replicas);
        let mut deadline = Instant::now() + d.progress_deadline;
        let mut best = 0usize;
        loop {
            let info = self.describe().await.map_err(|e| Abort(e.to_string()))?;
            let mine: Vec<_> = info.instances.iter().filter(|i| i.set == set.id).collect();
            let restarts: u32 = mine.iter().map(|i| i.restarts).sum();
            if restarts >= threshold {
                return Err(Abort(format!(
                    "its replicas failed to start or crashed {restarts} time(s), the circuit breaker's threshold for {} replica(s)",
                    set.replicas
                )));
            }
            let health = self
                .lbs
                .target_health(&group)
                .await
                .map_err(|e| Abort(e.to_string()))?;
            let healthy = mine
                .iter()
                .filter(|i| {
                    i.address.as_ref().is_some_and(|a| {
                        health
                            .iter()
                            .any(|t| &t.target == a && t.health == crate::lb::TargetHealth::Healthy)
                    })
                })
                .count();
            if healthy >= set.replicas as usize {
                return Ok(());
            }
            if healthy > best {
                best = healthy;
                deadline = Instant::now() + d.progress_deadline;
            }
            if Instant::now() >= deadline {
                return Err(Abort(format!(
                    "{healthy} of {} replica(s) became healthy in target group {group} within the progress deadline of {:?}",
                    set.replicas, d.progress_deadline
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn source(&self, group: &str, restore: &[ListenerForward]) -> Result<Source> {
        let metrics = self.metrics.clone().ok_or_else(|| {
            op().unsupported("an analysis reads the Metric service, which this cloud lacks")
        })?;
        let mut lbs: Vec<String> = restore.iter().map(|l| l.load_balancer.clone()).collect();
        lbs.sort();
        lbs.dedup();
        Ok(Source {
            lbs: self.lbs.clone(),
            metrics,
            load_balancers: lbs,
            group: group.to_string(),
        })
    }

    /// Runs analyses of `group` every interval until `hold` has passed with at least one
    /// passing (or, for `hold` zero, until one passes). Failed analyses beyond the failure
    /// limit abort; inconclusive ones wait, up to the progress deadline.
    async fn judge(
        &self,
        src: &Source,
        a: &Analysis,
        hold: Duration,
        d: &Deployment,
        rollout: &Rollout,
    ) -> Result<(), Abort> {
        let began = Instant::now();
        let mut deadline = Instant::now() + d.progress_deadline;
        let mut failures = 0u32;
        let mut passed = false;
        loop {
            let window_start = self.clock.now();
            if self.sleep_watching(a.interval, rollout).await? {
                return Err(Abort("a rollback was asked for".into()));
            }
            let window_end = self.clock.now();
            let verdict = analysis::analyse(src, a, window_start, window_end)
                .await
                .map_err(|e| Abort(format!("the analysis could not read the metrics: {e}")))?;
            match verdict {
                Verdict::Pass(figures) => {
                    passed = true;
                    deadline = Instant::now() + d.progress_deadline;
                    self.event(format!(
                        "analysis of revision {} passed: {figures}",
                        rollout.revision
                    ))
                    .await;
                }
                Verdict::Fail(why) => {
                    failures += 1;
                    self.event(format!(
                        "analysis of revision {} failed ({failures} of {} tolerated + 1): {why}",
                        rollout.revision, a.failure_limit
                    ))
                    .await;
                    if failures > a.failure_limit {
                        return Err(Abort(format!("the analysis failed: {why}")));
                    }
                }
                Verdict::Inconclusive(why) => {
                    self.event(format!(
                        "analysis of revision {} inconclusive: {why}",
                        rollout.revision
                    ))
                    .await;
                    if Instant::now() >= deadline {
                        return Err(Abort(format!(
                            "the analysis stayed inconclusive for the progress deadline of {:?}: {why}",
                            d.progress_deadline
                        )));
                    }
                }
            }
            if passed && began.elapsed() >= hold {
                return Ok(());
            }
        }
    }

    /// Sleeps `d` (real time) while watching for a requested rollback; true if one was.
    async fn sleep_watching(&self, d: Duration, rollout: &Rollout) -> Result<bool, Abort> {
        let until = Instant::now() + d;
        while Instant::now() < until {
            let info = self.describe().await.map_err(|e| Abort(e.to_string()))?;
            if info.rollout.as_ref().is_some_and(|r| {
                r.revision == rollout.revision && r.state == RolloutState::RollbackRequested
            }) {
                return Ok(true);
            }
            tokio::time::sleep(POLL.min(until.saturating_duration_since(Instant::now()))).await;
        }
        Ok(false)
    }

    /// Runs a blue-green or canary deployment of `spec`.
    pub(crate) async fn run(&self, spec: ServiceSpec) -> Result<ServiceInfo> {
        let info = self.describe().await?;
        self.recover(&info).await?;
        if crate::container::same_revision(&info.spec, &spec) {
            // What a dead run left is undone, and the service already runs this revision.
            return self.containers.update_service(spec).await;
        }
        let stable = spec
            .target_group
            .clone()
            .ok_or_else(|| op().invalid(&self.name, "the service has no target group"))?;
        let (side, strategy) = match &spec.deployment.strategy {
            Strategy::BlueGreen(b) => (b.preview_target_group.clone(), "blue-green"),
            Strategy::Canary(c) => (c.canary_target_group.clone(), "canary"),
            Strategy::Rolling(_) => {
                return Err(op().invalid(&self.name, "a rolling deployment is the backend's own"));
            }
        };
        // The side group must exist before anything changes.
        self.lbs.target_health(&side).await?;
        let restore = self.listeners_of(&stable).await?;
        if restore.is_empty() {
            return Err(op().invalid(
                &self.name,
                format!("no listener forwards to target group {stable}: a {strategy} deployment moves listener traffic"),
            ));
        }
        let preview_url = match &spec.deployment.strategy {
            Strategy::BlueGreen(BlueGreen {
                preview_path: Some(_),
                ..
            }) => Some(self.test_listener(&side).await?.ok_or_else(|| {
                op().invalid(
                    &self.name,
                    format!("a preview check goes through a listener forwarding to target group {side} only; there is none"),
                )
            })?),
            _ => None,
        };
        let mut rollout = Rollout {
            revision: 0,
            from: info.revision,
            strategy: strategy.to_string(),
            state: RolloutState::InProgress,
            weight: Some(0),
            restore: restore.clone(),
        };
        self.record(&rollout).await?;
        let mut side_spec = spec.clone();
        side_spec.target_group = Some(side.clone());
        // A set has no deployment of its own.
        side_spec.deployment = Deployment::default();
        let set = match self.containers.create_revision_set(side_spec).await {
            Ok(set) => set,
            Err(e) => {
                self.containers.record_rollout(&self.name, None).await?;
                return Err(e);
            }
        };
        rollout.revision = set.revision;
        self.record(&rollout).await?;
        self.event(format!(
            "deploying revision {} ({strategy}, {} replica(s), from revision {}): image {}, in target group {side}",
            set.revision, spec.replicas, info.revision, spec.container.image
        ))
        .await;
        let outcome = match &spec.deployment.strategy {
            Strategy::BlueGreen(b) => {
                self.blue_green(&spec, b, &set, &stable, preview_url, &mut rollout)
                    .await
            }
            Strategy::Canary(c) => self.canary(&spec, c, &set, &stable, &mut rollout).await,
            Strategy::Rolling(_) => Ok(Phase::Done),
        };
        match outcome {
            Ok(Phase::Done) => self.finish(&spec, &set, &stable, &rollout).await,
            Ok(Phase::AwaitingPromotion) => self.describe().await,
            Err(Abort(cause)) => Err(self.abort(&rollout, &cause).await),
        }
    }

    async fn blue_green(
        &self,
        spec: &ServiceSpec,
        b: &BlueGreen,
        set: &RevisionSet,
        stable: &str,
        preview_url: Option<String>,
        rollout: &mut Rollout,
    ) -> Result<Phase, Abort> {
        self.wait_available(set, &spec.deployment).await?;
        self.event(format!(
            "revision {}: {} replica(s) healthy in preview target group {}",
            set.revision, set.replicas, b.preview_target_group
        ))
        .await;
        if let (Some(url), Some(path)) = (preview_url, &b.preview_path) {
            match http_status(&url, path, Duration::from_secs(10)).await {
                Ok(status) if (200..300).contains(&status) => {
                    self.event(format!("preview check {url}{path}: HTTP {status}"))
                        .await
                }
                Ok(status) => {
                    return Err(Abort(format!(
                        "the preview check {url}{path} answered HTTP {status} (2xx wanted)"
                    )));
                }
                Err(e) => {
                    return Err(Abort(format!("the preview check {url}{path} failed: {e}")));
                }
            }
        }
        if let Some(a) = &b.analysis {
            let src = self
                .source(&b.preview_target_group, &rollout.restore)
                .map_err(|e| Abort(e.to_string()))?;
            self.judge(&src, a, Duration::ZERO, &spec.deployment, rollout)
                .await?;
        }
        if !b.auto_promote {
            rollout.state = RolloutState::AwaitingPromotion;
            self.record(rollout)
                .await
                .map_err(|e| Abort(e.to_string()))?;
            self.event(format!(
                "revision {} is ready in preview target group {}: waiting to be promoted",
                set.revision, b.preview_target_group
            ))
            .await;
            return Ok(Phase::AwaitingPromotion);
        }
        self.promote_blue_green(b, set, stable, rollout).await?;
        Ok(Phase::Done)
    }

    /// Moves all traffic to the preview set at once, then keeps the old replicas for the
    /// scale-down delay, during which a requested rollback moves it back at once.
    async fn promote_blue_green(
        &self,
        b: &BlueGreen,
        set: &RevisionSet,
        stable: &str,
        rollout: &mut Rollout,
    ) -> Result<(), Abort> {
        self.shift(&rollout.restore, stable, &b.preview_target_group, 100)
            .await
            .map_err(|e| Abort(e.to_string()))?;
        rollout.state = RolloutState::Promoted;
        rollout.weight = Some(100);
        self.record(rollout)
            .await
            .map_err(|e| Abort(e.to_string()))?;
        self.event(format!(
            "revision {} promoted: all traffic to target group {}; revision {} kept for {:?}",
            set.revision, b.preview_target_group, rollout.from, b.scale_down_delay
        ))
        .await;
        if self.sleep_watching(b.scale_down_delay, rollout).await? {
            return Err(Abort("a rollback was asked for".into()));
        }
        Ok(())
    }

    async fn canary(
        &self,
        spec: &ServiceSpec,
        c: &TrafficShift,
        set: &RevisionSet,
        stable: &str,
        rollout: &mut Rollout,
    ) -> Result<Phase, Abort> {
        self.wait_available(set, &spec.deployment).await?;
        self.event(format!(
            "revision {}: {} replica(s) healthy in canary target group {}",
            set.revision, set.replicas, c.canary_target_group
        ))
        .await;
        let src = self
            .source(&c.canary_target_group, &rollout.restore)
            .map_err(|e| Abort(e.to_string()))?;
        for step in &c.steps {
            self.shift(
                &rollout.restore,
                stable,
                &c.canary_target_group,
                step.weight,
            )
            .await
            .map_err(|e| Abort(e.to_string()))?;
            rollout.weight = Some(step.weight);
            self.record(rollout)
                .await
                .map_err(|e| Abort(e.to_string()))?;
            self.event(format!(
                "revision {}: {} % of the traffic to target group {}",
                set.revision, step.weight, c.canary_target_group
            ))
            .await;
            if step.weight < 100 || !step.bake.is_zero() {
                self.judge(&src, &c.analysis, step.bake, &spec.deployment, rollout)
                    .await?;
            }
        }
        Ok(Phase::Done)
    }

    /// All traffic is on `set`: give the service's own target group the new revision, the
    /// listeners their weights from before, and stop what is left.
    async fn finish(
        &self,
        spec: &ServiceSpec,
        set: &RevisionSet,
        stable: &str,
        rollout: &Rollout,
    ) -> Result<ServiceInfo> {
        let side = set.target_group.clone().unwrap_or_default();
        let own = self.containers.create_revision_set(spec.clone()).await;
        let own = match own {
            Ok(own) => own,
            Err(e) => {
                return Err(self
                    .abort(
                        rollout,
                        &format!("cannot start it in target group {stable}: {e}"),
                    )
                    .await);
            }
        };
        if let Err(Abort(cause)) = self.wait_available(&own, &spec.deployment).await {
            return Err(self
                .abort(rollout, &format!("in target group {stable}: {cause}"))
                .await);
        }
        // The old replicas get no traffic (their group's weight is 0): promote the new set
        // and drain the old one before the weights come back.
        let old = self
            .containers
            .promote_revision_set(&self.name, &own.id)
            .await?;
        self.containers
            .delete_revision_set(&self.name, &old.id)
            .await?;
        self.restore(&rollout.restore).await?;
        self.event(format!(
            "revision {}: target group {stable} serves it; listeners as before the deployment",
            set.revision
        ))
        .await;
        self.containers
            .delete_revision_set(&self.name, &set.id)
            .await?;
        self.containers.record_rollout(&self.name, None).await?;
        // The same revision now: this records the count and the deployment settings.
        let info = self.containers.update_service(spec.clone()).await?;
        self.event(format!(
            "revision {} is deployed: {} replica(s) run it (set {} in {side} drained and stopped)",
            set.revision, spec.replicas, set.id
        ))
        .await;
        Ok(info)
    }

    /// Moves all traffic back to the last good revision, stops the new sets, records the
    /// revision as rolled back, and returns the error to report.
    async fn abort(&self, rollout: &Rollout, cause: &str) -> crate::Error {
        let started = Instant::now();
        let restored = self.restore(&rollout.restore).await;
        let mut back = rollout.clone();
        back.state = RolloutState::RollingBack;
        back.weight = Some(0);
        let _ = self.record(&back).await;
        self.event(format!(
            "revision {} failed: {cause}; all traffic back to revision {} in {:.0} ms",
            rollout.revision,
            rollout.from,
            started.elapsed().as_secs_f64() * 1000.0
        ))
        .await;
        let mut problems = Vec::new();
        if let Err(e) = &restored {
            problems.push(format!("restoring the listeners failed: {e}"));
        }
        match self.describe().await {
            Ok(info) => {
                for s in info.sets.iter().filter(|s| s.id != PRIMARY_SET) {
                    if let Err(e) = self.containers.delete_revision_set(&self.name, &s.id).await {
                        problems.push(format!("stopping set {}: {e}", s.id));
                    }
                }
            }
            Err(e) => problems.push(e.to_string()),
        }
        if rollout.revision != rollout.from
            && let Err(e) = self
                .containers
                .mark_revision(
                    &self.name,
                    rollout.revision,
                    RevisionState::RolledBack,
                    Some(cause.to_string()),
                )
                .await
        {
            problems.push(e.to_string());
        }
        // A rollback that did not complete stays recorded, for the next run to finish.
        if problems.is_empty()
            && let Err(e) = self.containers.record_rollout(&self.name, None).await
        {
            problems.push(e.to_string());
        }
        let rollback = if problems.is_empty() {
            format!("rolled back to revision {}", rollout.from)
        } else {
            format!(
                "the rollback to revision {} did not complete ({})",
                rollout.from,
                problems.join("; ")
            )
        };
        self.event(format!("revision {}: {rollback}", rollout.revision))
            .await;
        op().err(
            ErrorKind::DeploymentFailed,
            &self.name,
            format!(
                "revision {} ({}) failed and was {rollback}: {cause}",
                rollout.revision, rollout.strategy
            ),
        )
    }

    /// Promotes a blue-green deployment waiting for it.
    pub(crate) async fn promote(&self) -> Result<ServiceInfo> {
        let info = self.describe().await?;
        let Some(mut rollout) = info.rollout.clone() else {
            return Err(op().precondition(&self.name, "no deployment is waiting to be promoted"));
        };
        if rollout.state != RolloutState::AwaitingPromotion {
            return Err(op().precondition(
                &self.name,
                format!(
                    "the deployment of revision {} is {:?}, not waiting to be promoted",
                    rollout.revision, rollout.state
                ),
            ));
        }
        let set = info
            .sets
            .iter()
            .find(|s| s.id != PRIMARY_SET && s.revision == rollout.revision)
            .cloned()
            .ok_or_else(|| op().internal(&self.name, "the preview set is gone"))?;
        let revisions = self.containers.list_revisions(&self.name).await?;
        let revision = revisions
            .iter()
            .find(|r| r.number == rollout.revision)
            .ok_or_else(|| op().internal(&self.name, "the deployed revision is not listed"))?;
        let stable = info
            .spec
            .target_group
            .clone()
            .ok_or_else(|| op().invalid(&self.name, "the service has no target group"))?;
        let b = match &info.spec.deployment.strategy {
            Strategy::BlueGreen(b) => b.clone(),
            _ => {
                return Err(
                    op().precondition(&self.name, "the service's deployment is not blue-green")
                );
            }
        };
        let mut spec = info.spec.clone();
        spec.container = revision.container.clone();
        if let Err(Abort(cause)) = self
            .promote_blue_green(&b, &set, &stable, &mut rollout)
            .await
        {
            return Err(self.abort(&rollout, &cause).await);
        }
        self.finish(&spec, &set, &stable, &rollout).await
    }

    /// Rolls back a deployment in progress: at once if nothing runs it (waiting for
    /// promotion), else by asking the controller running it (blue-green's scale-down
    /// window), which moves the traffic back.
    pub(crate) async fn rollback(&self) -> Result<ServiceInfo> {
        let info = self.describe().await?;
        let Some(mut rollout) = info.rollout.clone() else {
            return Err(op().precondition(&self.name, "no deployment is in progress"));
        };
        match rollout.state {
            RolloutState::Promoted | RolloutState::InProgress => {
                rollout.state = RolloutState::RollbackRequested;
                self.record(&rollout).await?;
                let until = Instant::now() + Duration::from_secs(30);
                while Instant::now() < until {
                    let now = self.describe().await?;
                    if now
                        .rollout
                        .as_ref()
                        .is_none_or(|r| r.revision != rollout.revision)
                    {
                        return Ok(now);
                    }
                    tokio::time::sleep(POLL).await;
                }
                // Nobody acted on it (the program running the deployment is gone).
                let _ = self.abort(&rollout, "rolled back on request").await;
                self.describe().await
            }
            _ => {
                let _ = self.abort(&rollout, "rolled back on request").await;
                self.describe().await
            }
        }
    }
}

enum Phase {
    Done,
    AwaitingPromotion,
}

/// The port `set_weights` knows a listener by: its declared one, or the one it got.
fn listener_port(declared: u16, url: Option<&String>) -> u16 {
    if declared != 0 {
        return declared;
    }
    url.and_then(|u| u.rsplit(':').next())
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .unwrap_or(0)
}

/// The log group of a service's deployments.
pub fn log_group(service: &str) -> String {
    format!("/mvi/deploy/{service}")
}

/// One HTTP/1.1 `GET path` on `url` (`http://host:port`): the status.
async fn http_status(url: &str, path: &str, timeout: Duration) -> Result<u16, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let io = async {
        let mut s = tokio::net::TcpStream::connect(&host)
            .await
            .map_err(|e| e.to_string())?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut head = vec![0u8; 64];
        let n = s.read(&mut head).await.map_err(|e| e.to_string())?;
        let line = String::from_utf8_lossy(&head[..n]).to_string();
        line.split(' ')
            .nth(1)
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| format!("not an HTTP answer: {line:?}"))
    };
    tokio::time::timeout(timeout, io)
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
}
