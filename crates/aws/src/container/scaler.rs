//! Scalers on Application Auto Scaling: a scalable target on the ECS service's desired count,
//! one target-tracking policy per tracked metric, and a scheduled action per schedule.
//!
//! - **Target.** `RegisterScalableTarget` of namespace `ecs`, resource
//!   `service/<cluster>/<service>`, dimension `ecs:service:DesiredCount`, with the spec's
//!   bounds (a put replaces the scaler, so the bounds in force go back to the spec's).
//! - **Policies.** Metric `i` is the target-tracking policy `mvi-<i>`:
//!   CPU is `ECSServiceAverageCPUUtilization`; requests per replica is
//!   `ALBRequestCountPerTarget` with the label of the load balancer forwarding to the target
//!   group, and a target 60 times the spec's (AWS counts requests per minute, the spec per
//!   second); a custom metric is a customized metric specification with its namespace,
//!   name, dimensions and statistic (`Sum` and `SampleCount` are per second in the spec, so
//!   their target is multiplied by 60 too: target tracking reads one-minute data points).
//! - **Behavior.** Application Auto Scaling has cooldowns, not HPA's windows and policies: the
//!   up and down stabilization windows become `ScaleOutCooldown` and `ScaleInCooldown` (whole
//!   seconds), `select: Disabled` when scaling down becomes `DisableScaleIn`. Any other
//!   behavior (Pods/Percent policies of its own, scale-up disabled), a tolerance other than
//!   0.1, a per-replica custom metric (target tracking divides nothing by the task count) and
//!   a percentile statistic are `Unsupported`, refused before any request.
//! - **Schedules.** `PutScheduledAction` with the cron expression translated as for
//!   EventBridge Scheduler (`cron(...)`, six fields), time zone UTC, setting the target's
//!   minimum and maximum.
//! - **What AWS cannot hold** (the spec's own bounds once a schedule has changed the target's,
//!   the evaluation period, the cron expressions and target groups as spelt) is the spec as
//!   put, a JSON document in SSM (`/mvi/<cluster>/scaler/<service>`). `describe_scaler` reads
//!   the scaler back from Application Auto Scaling and takes from that document only what
//!   AWS agrees with, so a change made outside mvi shows. AWS evaluates on its own cadence
//!   (the alarms of target tracking), not the spec's period; its decisions are its scaling
//!   activities (DescribeScalingActivities, the console), so `decisions` is empty here.
//! - **Deployments.** Application Auto Scaling suspends scaling in while an ECS deployment is in
//!   progress and keeps scaling out, applied to the service's desired count.
//!
//! Deleting the scaler deletes its policies, its scheduled actions and the target (the desired
//! count stays where it is); deleting the service deletes its scaler first.

#[allow(clippy::wildcard_imports)]
use super::*;

use aws_sdk_applicationautoscaling::types::{
    CustomizedMetricSpecification, MetricDimension, MetricStatistic, MetricType, PolicyType,
    PredefinedMetricSpecification, ScalableDimension, ScalableTarget, ScalableTargetAction,
    ScalingPolicy, ServiceNamespace, TargetTrackingScalingPolicyConfiguration,
};
use mvi_core::autoscale::{Behavior, MetricTarget, ScheduledAction, Select, TOLERANCE};
use mvi_core::metric::{MetricId, Statistic};

/// Target tracking reads one-minute data points: a rate per second is 60 times it a minute.
const PER_MINUTE: f64 = 60.0;
/// The prefix of the policies a scaler writes.
const POLICY_PREFIX: &str = "mvi-";

const fn dimension() -> ScalableDimension {
    ScalableDimension::EcsServiceDesiredCount
}

/// Checks that Application Auto Scaling can do what `spec` says, before any request.
pub(super) fn check_expressible(op: Op, spec: &ScalerSpec) -> Result<()> {
    let no = |why: String| Err(op.unsupported(format!("scaler of {}: {why}", spec.service)));
    if spec.tolerance != TOLERANCE {
        return no(format!(
            "Application Auto Scaling has no tolerance setting (its own is fixed); the spec asks for {}",
            spec.tolerance
        ));
    }
    let default = Behavior::default();
    let b = &spec.behavior;
    if b.scale_up.policies != default.scale_up.policies
        || b.scale_up.select != Select::Max
        || b.scale_down.policies != default.scale_down.policies
        || !matches!(b.scale_down.select, Select::Max | Select::Disabled)
    {
        return no(
            "Application Auto Scaling has no scaling policies per period: on AWS a behavior may set the stabilization windows (as cooldowns) and disable scaling down, nothing else"
                .into(),
        );
    }
    for (dir, w) in [
        ("up", b.scale_up.stabilization),
        ("down", b.scale_down.stabilization),
    ] {
        if w.subsec_nanos() != 0 {
            return no(format!(
                "the scale-{dir} window {w:?} is not whole seconds (AWS cooldowns are)"
            ));
        }
    }
    for m in &spec.metrics {
        if let MetricTarget::Custom {
            statistic,
            per_replica,
            metric,
            ..
        } = m
        {
            if *per_replica {
                return no(format!(
                    "{metric} is per replica; target tracking on AWS takes a metric that already falls as tasks are added (publish it per task, and track it with per_replica false)"
                ));
            }
            if metric_statistic(*statistic).is_none() {
                return no(format!(
                    "target tracking on AWS takes Sum, Average, Minimum, Maximum or SampleCount, not {statistic:?}"
                ));
            }
        }
    }
    for s in &spec.schedules {
        scheduler_expression(op, &s.name, &s.cron)?;
    }
    Ok(())
}

fn metric_statistic(s: Statistic) -> Option<MetricStatistic> {
    Some(match s {
        Statistic::Sum => MetricStatistic::Sum,
        Statistic::Average => MetricStatistic::Average,
        Statistic::Minimum => MetricStatistic::Minimum,
        Statistic::Maximum => MetricStatistic::Maximum,
        Statistic::SampleCount => MetricStatistic::SampleCount,
        Statistic::Percentile(_) => return None,
    })
}

fn statistic_of(s: &MetricStatistic) -> Option<Statistic> {
    Some(match s {
        MetricStatistic::Sum => Statistic::Sum,
        MetricStatistic::Average => Statistic::Average,
        MetricStatistic::Minimum => Statistic::Minimum,
        MetricStatistic::Maximum => Statistic::Maximum,
        MetricStatistic::SampleCount => Statistic::SampleCount,
        _ => return None,
    })
}

/// How much AWS's target is of the spec's: counts are per second in the spec, per minute on
/// AWS.
fn scale_of(m: &MetricTarget) -> f64 {
    match m {
        MetricTarget::Cpu { .. } => 1.0,
        MetricTarget::RequestsPerReplica { .. } => PER_MINUTE,
        MetricTarget::Custom { statistic, .. } => match statistic {
            Statistic::Sum | Statistic::SampleCount => PER_MINUTE,
            _ => 1.0,
        },
    }
}

fn target_of(m: &MetricTarget) -> f64 {
    match m {
        MetricTarget::Cpu { target }
        | MetricTarget::RequestsPerReplica { target, .. }
        | MetricTarget::Custom { target, .. } => *target,
    }
}

/// The target group named in a load balancer's resource label
/// (`app/<lb>/<id>/targetgroup/<name>/<id>`).
fn label_group(label: &str) -> Option<&str> {
    label.split_once("/targetgroup/")?.1.split('/').next()
}

/// The name part of a target group given by name or ARN.
fn group_name(group: &str) -> &str {
    group
        .rsplit_once(":targetgroup/")
        .and_then(|(_, rest)| rest.split('/').next())
        .unwrap_or(group)
}

fn secs(d: Duration) -> i32 {
    i32::try_from(d.as_secs()).unwrap_or(i32::MAX)
}

fn capacity(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn count(n: Option<i32>) -> u32 {
    n.and_then(|n| u32::try_from(n).ok()).unwrap_or(0)
}

/// The index of a policy mvi wrote.
fn policy_index(name: &str) -> Option<usize> {
    name.strip_prefix(POLICY_PREFIX)?.parse().ok()
}

/// What AWS holds of a policy as a tracked metric; `put` is the spec's metric at its index,
/// whose spelling (of the target group, of the target) is kept where AWS agrees with it.
fn metric_of(p: &ScalingPolicy, put: Option<&MetricTarget>) -> Option<MetricTarget> {
    let c = p.target_tracking_scaling_policy_configuration()?;
    let value = c.target_value();
    let m = if let Some(pre) = c.predefined_metric_specification() {
        match pre.predefined_metric_type() {
            MetricType::EcsServiceAverageCpuUtilization => MetricTarget::Cpu { target: value },
            MetricType::AlbRequestCountPerTarget => {
                let group = label_group(pre.resource_label().unwrap_or_default())?.to_owned();
                let target_group = match put {
                    Some(MetricTarget::RequestsPerReplica { target_group, .. })
                        if group_name(target_group) == group =>
                    {
                        target_group.clone()
                    }
                    _ => group,
                };
                MetricTarget::RequestsPerReplica {
                    target_group,
                    target: value / PER_MINUTE,
                }
            }
            _ => return None,
        }
    } else {
        let custom = c.customized_metric_specification()?;
        let mut metric = MetricId::new(custom.namespace()?, custom.metric_name()?);
        for d in custom.dimensions() {
            metric = metric.dimension(d.name(), d.value());
        }
        let statistic = statistic_of(custom.statistic()?)?;
        let mut m = MetricTarget::Custom {
            metric,
            statistic,
            target: value,
            per_replica: false,
        };
        let scale = scale_of(&m);
        if let MetricTarget::Custom { target, .. } = &mut m {
            *target = value / scale;
        }
        m
    };
    // Multiplying by 60 and dividing again may not give back the same float: keep the
    // spec's target when it is the one AWS holds.
    Some(match put {
        Some(p) if same_metric(p, &m) => p.clone(),
        _ => m,
    })
}

/// Whether two tracked metrics are the same but for float rounding of the target.
fn same_metric(a: &MetricTarget, b: &MetricTarget) -> bool {
    let (ta, tb) = (target_of(a), target_of(b));
    let close = (ta - tb).abs() <= 1e-9 * ta.abs().max(tb.abs());
    let mut b = b.clone();
    match &mut b {
        MetricTarget::Cpu { target }
        | MetricTarget::RequestsPerReplica { target, .. }
        | MetricTarget::Custom { target, .. } => *target = ta,
    }
    close && *a == b
}

impl EcsContainers {
    fn scaler_resource(&self, service: &str) -> String {
        format!("service/{}/{service}", self.cluster)
    }

    fn scaler_doc(&self, service: &str) -> String {
        format!("/mvi/{}/scaler/{service}", self.cluster)
    }

    /// The service's scalable target, if it has one.
    async fn scalable_target(&self, op: Op, service: &str) -> Result<Option<ScalableTarget>> {
        let out = self
            .autoscaling
            .describe_scalable_targets()
            .service_namespace(ServiceNamespace::Ecs)
            .resource_ids(self.scaler_resource(service))
            .scalable_dimension(dimension())
            .send()
            .await
            .map_err(|e| map(op, service, e))?;
        Ok(out.scalable_targets().first().cloned())
    }

    async fn scaling_policies(&self, op: Op, service: &str) -> Result<Vec<ScalingPolicy>> {
        let mut all = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .autoscaling
                .describe_scaling_policies()
                .service_namespace(ServiceNamespace::Ecs)
                .resource_id(self.scaler_resource(service))
                .scalable_dimension(dimension())
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| map(op, service, e))?;
            all.extend(out.scaling_policies().iter().cloned());
            token = out.next_token;
            if token.is_none() {
                return Ok(all);
            }
        }
    }

    async fn scheduled_actions(
        &self,
        op: Op,
        service: &str,
    ) -> Result<Vec<aws_sdk_applicationautoscaling::types::ScheduledAction>> {
        let mut all = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .autoscaling
                .describe_scheduled_actions()
                .service_namespace(ServiceNamespace::Ecs)
                .resource_id(self.scaler_resource(service))
                .scalable_dimension(dimension())
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| map(op, service, e))?;
            all.extend(out.scheduled_actions().iter().cloned());
            token = out.next_token;
            if token.is_none() {
                return Ok(all);
            }
        }
    }

    /// The label `ALBRequestCountPerTarget` needs: the load balancer forwarding to `group`
    /// and the group (`app/<lb>/<id>/targetgroup/<name>/<id>`).
    #[cfg(feature = "elbv2")]
    async fn request_count_label(&self, op: Op, service: &str, group: &str) -> Result<String> {
        let arn = self.target_group_arn(op, service, group).await?;
        let out = self
            .elb
            .describe_target_groups()
            .target_group_arns(&arn)
            .send()
            .await
            .map_err(|e| map(op, group, e))?;
        let lb = out
            .target_groups()
            .first()
            .and_then(|g| g.load_balancer_arns().first())
            .ok_or_else(|| {
                op.invalid(
                    service,
                    format!(
                        "target group {group} is behind no load balancer: requests per replica count a load balancer's requests"
                    ),
                )
            })?;
        let lb_part = lb.split_once(":loadbalancer/").map(|(_, r)| r);
        let group_part = arn.rsplit_once(':').map(|(_, r)| r);
        match (lb_part, group_part) {
            (Some(l), Some(g)) => Ok(format!("{l}/{g}")),
            _ => Err(op.internal(group, format!("unexpected ARNs {lb} and {arn}"))),
        }
    }

    #[cfg(not(feature = "elbv2"))]
    async fn request_count_label(&self, op: Op, service: &str, _group: &str) -> Result<String> {
        Err(op.unsupported(format!(
            "scaler of {service}: requests per replica need the load balancer service (feature `elbv2`)"
        )))
    }

    /// The policy configuration of one tracked metric.
    async fn tracking(
        &self,
        op: Op,
        spec: &ScalerSpec,
        m: &MetricTarget,
    ) -> Result<TargetTrackingScalingPolicyConfiguration> {
        let b = &spec.behavior;
        let config = TargetTrackingScalingPolicyConfiguration::builder()
            .target_value(target_of(m) * scale_of(m))
            .scale_out_cooldown(secs(b.scale_up.stabilization))
            .scale_in_cooldown(secs(b.scale_down.stabilization))
            .disable_scale_in(b.scale_down.select == Select::Disabled);
        let predefined = |kind, label: Option<String>| {
            PredefinedMetricSpecification::builder()
                .predefined_metric_type(kind)
                .set_resource_label(label)
                .build()
                .map_err(|e| op.internal(&spec.service, e))
        };
        let config = match m {
            MetricTarget::Cpu { .. } => config.predefined_metric_specification(predefined(
                MetricType::EcsServiceAverageCpuUtilization,
                None,
            )?),
            MetricTarget::RequestsPerReplica { target_group, .. } => {
                let label = self
                    .request_count_label(op, &spec.service, target_group)
                    .await?;
                config.predefined_metric_specification(predefined(
                    MetricType::AlbRequestCountPerTarget,
                    Some(label),
                )?)
            }
            MetricTarget::Custom {
                metric, statistic, ..
            } => {
                let mut custom = CustomizedMetricSpecification::builder()
                    .namespace(&metric.namespace)
                    .metric_name(&metric.name)
                    .set_statistic(metric_statistic(*statistic));
                for (name, value) in &metric.dimensions {
                    custom = custom.dimensions(
                        MetricDimension::builder()
                            .name(name)
                            .value(value)
                            .build()
                            .map_err(|e| op.internal(&spec.service, e))?,
                    );
                }
                config.customized_metric_specification(custom.build())
            }
        };
        config.build().map_err(|e| op.internal(&spec.service, e))
    }

    pub(super) async fn put_scaler_aws(&self, spec: ScalerSpec) -> Result<ScalerInfo> {
        let op = op("put_scaler");
        spec.check()?;
        check_expressible(op, &spec)?;
        let service = spec.service.as_str();
        self.active_service(op, service).await?;
        // Everything is worked out before the first write: a metric or schedule AWS cannot
        // take fails the call with nothing changed.
        let mut policies = Vec::with_capacity(spec.metrics.len());
        for (i, m) in spec.metrics.iter().enumerate() {
            policies.push((
                format!("{POLICY_PREFIX}{i}"),
                self.tracking(op, &spec, m).await?,
            ));
        }
        let mut actions = Vec::with_capacity(spec.schedules.len());
        for s in &spec.schedules {
            actions.push((s, scheduler_expression(op, &s.name, &s.cron)?));
        }
        let resource = self.scaler_resource(service);
        self.autoscaling
            .register_scalable_target()
            .service_namespace(ServiceNamespace::Ecs)
            .resource_id(&resource)
            .scalable_dimension(dimension())
            .min_capacity(capacity(spec.min))
            .max_capacity(capacity(spec.max))
            .send()
            .await
            .map_err(|e| map(op, service, e))?;
        let existing = self.scaling_policies(op, service).await?;
        for (name, config) in policies.iter().cloned() {
            self.autoscaling
                .put_scaling_policy()
                .service_namespace(ServiceNamespace::Ecs)
                .resource_id(&resource)
                .scalable_dimension(dimension())
                .policy_name(name)
                .policy_type(PolicyType::TargetTrackingScaling)
                .target_tracking_scaling_policy_configuration(config)
                .send()
                .await
                .map_err(|e| map(op, service, e))?;
        }
        for p in existing {
            let name = p.policy_name();
            if policy_index(name).is_some() && !policies.iter().any(|(n, _)| n == name) {
                self.delete_policy(op, service, name).await?;
            }
        }
        let existing = self.scheduled_actions(op, service).await?;
        for (s, expression) in &actions {
            self.autoscaling
                .put_scheduled_action()
                .service_namespace(ServiceNamespace::Ecs)
                .resource_id(&resource)
                .scalable_dimension(dimension())
                .scheduled_action_name(&s.name)
                .schedule(expression)
                .timezone("UTC")
                .scalable_target_action(
                    ScalableTargetAction::builder()
                        .set_min_capacity(s.min.map(capacity))
                        .set_max_capacity(s.max.map(capacity))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| map(op, service, e))?;
        }
        for a in existing {
            let name = a.scheduled_action_name();
            if !spec.schedules.iter().any(|s| s.name == name) {
                self.delete_action(op, service, name).await?;
            }
        }
        self.put_document(
            op,
            service,
            &self.scaler_doc(service),
            "mvi: the scaler of an ECS service as it was put",
            &spec,
        )
        .await?;
        self.describe_scaler_aws(op, service).await
    }

    async fn delete_policy(&self, op: Op, service: &str, name: &str) -> Result<()> {
        self.autoscaling
            .delete_scaling_policy()
            .service_namespace(ServiceNamespace::Ecs)
            .resource_id(self.scaler_resource(service))
            .scalable_dimension(dimension())
            .policy_name(name)
            .send()
            .await
            .map_err(|e| map(op, service, e))?;
        Ok(())
    }

    async fn delete_action(&self, op: Op, service: &str, name: &str) -> Result<()> {
        self.autoscaling
            .delete_scheduled_action()
            .service_namespace(ServiceNamespace::Ecs)
            .resource_id(self.scaler_resource(service))
            .scalable_dimension(dimension())
            .scheduled_action_name(name)
            .send()
            .await
            .map_err(|e| map(op, service, e))?;
        Ok(())
    }

    pub(super) async fn describe_scaler_aws(&self, op: Op, service: &str) -> Result<ScalerInfo> {
        validate_name(op, "service", service, 255)?;
        let target = self
            .scalable_target(op, service)
            .await?
            .ok_or_else(|| op.not_found(service, "the service has no scaler"))?;
        let put: Option<ScalerSpec> = self
            .get_document(op, service, &self.scaler_doc(service), "the scaler's spec")
            .await?;
        let (min, max) = (
            count(Some(target.min_capacity())),
            count(Some(target.max_capacity())),
        );
        let mut spec = put
            .clone()
            .unwrap_or_else(|| ScalerSpec::new(service, min, max));
        let mut policies: Vec<(usize, ScalingPolicy)> = self
            .scaling_policies(op, service)
            .await?
            .into_iter()
            .filter_map(|p| Some((policy_index(p.policy_name())?, p)))
            .collect();
        policies.sort_by_key(|(i, _)| *i);
        spec.metrics = policies
            .iter()
            .filter_map(|(i, p)| {
                let put = put.as_ref().and_then(|s| s.metrics.get(*i));
                let m = metric_of(p, put);
                if m.is_none() {
                    tracing::warn!(
                        service,
                        policy = p.policy_name(),
                        "a scaling policy mvi cannot read"
                    );
                }
                m
            })
            .collect();
        if let Some(c) = policies
            .first()
            .and_then(|(_, p)| p.target_tracking_scaling_policy_configuration())
        {
            let window = |s: Option<i32>| Duration::from_secs(count(s).into());
            let mut b = Behavior::default();
            b.scale_up.stabilization = window(c.scale_out_cooldown());
            b.scale_down.stabilization = window(c.scale_in_cooldown());
            if c.disable_scale_in() == Some(true) {
                b.scale_down.select = Select::Disabled;
            }
            spec.behavior = b;
        }
        let mut schedules: Vec<ScheduledAction> = self
            .scheduled_actions(op, service)
            .await?
            .into_iter()
            .map(|a| {
                let name = a.scheduled_action_name().to_owned();
                let given = put
                    .as_ref()
                    .and_then(|s| s.schedules.iter().find(|s| s.name == name));
                // The cron as given when it is what AWS runs; else AWS's own expression.
                let cron = match given {
                    Some(g)
                        if scheduler_expression(op, &g.name, &g.cron).ok().as_deref()
                            == Some(a.schedule()) =>
                    {
                        g.cron.clone()
                    }
                    _ => a.schedule().to_owned(),
                };
                let bounds = a.scalable_target_action();
                ScheduledAction {
                    name,
                    cron,
                    min: bounds
                        .and_then(|b| b.min_capacity())
                        .map(|n| count(Some(n))),
                    max: bounds
                        .and_then(|b| b.max_capacity())
                        .map(|n| count(Some(n))),
                }
            })
            .collect();
        let order = |a: &ScheduledAction| {
            put.as_ref()
                .and_then(|s| s.schedules.iter().position(|s| s.name == a.name))
                .unwrap_or(usize::MAX)
        };
        schedules.sort_by(|a, b| order(a).cmp(&order(b)).then(a.name.cmp(&b.name)));
        spec.schedules = schedules;
        Ok(ScalerInfo {
            spec,
            min,
            max,
            last: None,
            decisions: Vec::new(),
        })
    }

    pub(super) async fn delete_scaler_aws(&self, op: Op, service: &str) -> Result<()> {
        validate_name(op, "service", service, 255)?;
        if self.scalable_target(op, service).await?.is_none() {
            return Err(op.not_found(service, "the service has no scaler"));
        }
        // Deregistering the target deletes its policies and actions on AWS; deleting them
        // first leaves nothing behind on any endpoint that does not.
        for p in self.scaling_policies(op, service).await? {
            self.delete_policy(op, service, p.policy_name()).await?;
        }
        for a in self.scheduled_actions(op, service).await? {
            self.delete_action(op, service, a.scheduled_action_name())
                .await?;
        }
        self.autoscaling
            .deregister_scalable_target()
            .service_namespace(ServiceNamespace::Ecs)
            .resource_id(self.scaler_resource(service))
            .scalable_dimension(dimension())
            .send()
            .await
            .map_err(|e| map(op, service, e))?;
        self.delete_document(op, service, &self.scaler_doc(service))
            .await
    }

    /// Deletes the scaler of a service being deleted, if it has one.
    pub(super) async fn drop_scaler(&self, op: Op, service: &str) -> Result<()> {
        match self.delete_scaler_aws(op, service).await {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mvi_core::autoscale::Policy;

    fn op() -> Op {
        Op::new(Service::Container, "put_scaler")
    }

    #[test]
    fn what_aws_can_express() {
        let base = ScalerSpec::new("web", 1, 10).track(MetricTarget::Cpu { target: 50.0 });
        assert!(check_expressible(op(), &base).is_ok());
        let mut b = Behavior::default();
        b.scale_down.select = Select::Disabled;
        b.scale_up.stabilization = Duration::from_secs(30);
        assert!(check_expressible(op(), &base.clone().behavior(b)).is_ok());

        let unsupported = |spec: ScalerSpec, says: &str| {
            let e = check_expressible(op(), &spec).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
            assert!(e.to_string().contains(says), "{e}");
        };
        let mut b = Behavior::default();
        b.scale_up.policies = vec![Policy::pods(1, Duration::from_secs(60))];
        unsupported(base.clone().behavior(b), "no scaling policies per period");
        let mut b = Behavior::default();
        b.scale_up.select = Select::Disabled;
        unsupported(base.clone().behavior(b), "no scaling policies per period");
        let mut b = Behavior::default();
        b.scale_down.stabilization = Duration::from_millis(1500);
        unsupported(base.clone().behavior(b), "not whole seconds");
        let mut tolerant = base.clone();
        tolerant.tolerance = 0.2;
        unsupported(tolerant, "no tolerance setting");
        let custom = |statistic, per_replica| {
            ScalerSpec::new("web", 1, 10).track(MetricTarget::Custom {
                metric: MetricId::new("app", "Depth"),
                statistic,
                target: 5.0,
                per_replica,
            })
        };
        unsupported(custom(Statistic::Average, true), "per replica");
        unsupported(custom(Statistic::P99, false), "not Percentile");
        assert!(check_expressible(op(), &custom(Statistic::Maximum, false)).is_ok());
        let both_days = base.schedule(ScheduledAction {
            name: "odd".into(),
            cron: "0 8 1 * 1".into(),
            min: Some(2),
            max: None,
        });
        assert_eq!(
            check_expressible(op(), &both_days).unwrap_err().kind(),
            ErrorKind::Unsupported
        );
    }

    #[test]
    fn targets_per_minute_and_labels() {
        let requests = MetricTarget::RequestsPerReplica {
            target_group: "web".into(),
            target: 10.0,
        };
        assert_eq!(scale_of(&requests), 60.0);
        assert_eq!(scale_of(&MetricTarget::Cpu { target: 50.0 }), 1.0);
        assert_eq!(
            label_group("app/front/50dc6c495c0c9188/targetgroup/web/73e2d6bc24d8a067"),
            Some("web")
        );
        assert_eq!(
            group_name("arn:aws:elasticloadbalancing:eu-west-1:1:targetgroup/web/73e2"),
            "web"
        );
        assert_eq!(group_name("web"), "web");
        assert_eq!(policy_index("mvi-3"), Some(3));
        assert_eq!(policy_index("mine"), None);
        let a = MetricTarget::Cpu { target: 0.1 + 0.2 };
        let b = MetricTarget::Cpu { target: 0.3 };
        assert!(same_metric(&a, &b));
        assert!(!same_metric(&a, &MetricTarget::Cpu { target: 0.31 }));
    }
}
