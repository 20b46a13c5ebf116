//! Metric resources: alarms.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{Input, Output, declare, gone_ok, resource_args};
use crate::error::{Op, Result, Service};
use crate::metric::{
    AlarmSpec, Comparison, MetricId, Statistic, validate_namespace, validate_period,
};
use crate::stack::{Cx, Resource, ResourceOptions, Stack};

resource_args! {
    /// Arguments of an [`Alarm`].
    pub struct AlarmArgs => AlarmSpecArgs {
        /// Its name (1–255 characters).
        name: String,
        /// The metric watched.
        metric: Option<MetricId>,
        /// The statistic compared.
        statistic: Option<Statistic>,
        /// Period of each evaluation.
        period: Duration,
        /// How many consecutive periods must breach.
        evaluation_periods: u32,
        /// The threshold.
        threshold: f64,
        /// The comparison.
        comparison: Option<Comparison>,
    }
}

impl AlarmArgs {
    /// An alarm from a definition (every field a plain value).
    pub fn new(spec: AlarmSpec) -> Self {
        AlarmArgs {
            name: Input::Value(spec.name),
            metric: Input::Value(Some(spec.metric)),
            statistic: Input::Value(Some(spec.statistic)),
            period: Input::Value(spec.period),
            evaluation_periods: Input::Value(spec.evaluation_periods),
            threshold: Input::Value(spec.threshold),
            comparison: Input::Value(Some(spec.comparison)),
        }
    }
}

/// An alarm.
#[derive(Debug, Clone)]
pub struct Alarm {
    /// Its URN.
    pub urn: String,
    /// Its name.
    pub name: Output<String>,
}

impl Alarm {
    /// Declares an alarm.
    pub fn new(stack: &Stack, name: &str, args: AlarmArgs) -> Result<Alarm> {
        Self::with(stack, name, args, ResourceOptions::default())
    }

    /// Declares an alarm with options.
    pub fn with(
        stack: &Stack,
        name: &str,
        args: AlarmArgs,
        opts: ResourceOptions,
    ) -> Result<Alarm> {
        let h = declare::<AlarmResource>(stack, name, &args, opts)?;
        Ok(Alarm {
            name: h.output("name"),
            urn: h.urn().to_string(),
        })
    }
}

/// Outputs of an alarm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlarmOutputs {
    /// Its name.
    pub name: String,
}

/// The provider of [`Alarm`].
#[derive(Debug)]
pub struct AlarmResource;

fn to_spec(op: Op, a: &AlarmSpecArgs) -> Result<AlarmSpec> {
    let missing = |p: &str| op.invalid(&a.name, format!("property {p:?} is required"));
    Ok(AlarmSpec::new(
        &a.name,
        a.metric.clone().ok_or_else(|| missing("metric"))?,
        a.statistic.ok_or_else(|| missing("statistic"))?,
        a.comparison.ok_or_else(|| missing("comparison"))?,
        a.threshold,
        a.period,
        a.evaluation_periods,
    ))
}

async fn put(cx: Cx<'_>, args: &AlarmSpecArgs) -> Result<AlarmOutputs> {
    let spec = to_spec(Op::new(Service::Stack, "put_alarm"), args)?;
    cx.cloud.metrics()?.put_alarm(spec).await?;
    Ok(AlarmOutputs {
        name: args.name.clone(),
    })
}

#[async_trait]
impl Resource for AlarmResource {
    const TYPE: &'static str = "mvi:metric:Alarm";
    const REPLACE_ON: &'static [&'static str] = &["name"];
    type Args = AlarmSpecArgs;
    type Outputs = AlarmOutputs;

    fn check(args: &AlarmSpecArgs) -> Result<()> {
        let op = Op::new(Service::Stack, "check");
        if args.name.is_empty() || args.name.len() > 255 {
            return Err(op.invalid(
                &args.name,
                "property \"name\" must be 1 to 255 characters long",
            ));
        }
        let spec = to_spec(op, args)?;
        validate_namespace(op, &spec.metric.namespace)
            .map_err(|e| op.invalid(&args.name, format!("property \"metric\": {e}")))?;
        validate_period(op, &args.name, args.period)
            .map_err(|e| op.invalid(&args.name, format!("property \"period\": {e}")))?;
        if args.evaluation_periods == 0 {
            return Err(op.invalid(
                &args.name,
                "property \"evaluation_periods\" must be at least 1",
            ));
        }
        if !args.threshold.is_finite() {
            return Err(op.invalid(&args.name, "property \"threshold\" must be finite"));
        }
        Ok(())
    }

    async fn create(cx: Cx<'_>, args: &AlarmSpecArgs) -> Result<(String, AlarmOutputs)> {
        let out = put(cx, args).await?;
        Ok((args.name.clone(), out))
    }

    async fn find(cx: Cx<'_>, args: &AlarmSpecArgs) -> Result<Option<String>> {
        let alarms = cx
            .cloud
            .metrics()?
            .describe_alarms(Some(&args.name))
            .await?;
        Ok(alarms
            .iter()
            .any(|a| a.spec.name == args.name)
            .then(|| args.name.clone()))
    }

    async fn read(
        cx: Cx<'_>,
        id: &str,
        _: &AlarmSpecArgs,
    ) -> Result<Option<(AlarmSpecArgs, AlarmOutputs)>> {
        let alarms = cx.cloud.metrics()?.describe_alarms(Some(id)).await?;
        Ok(alarms.into_iter().find(|a| a.spec.name == id).map(|a| {
            let s = a.spec;
            (
                AlarmSpecArgs {
                    name: s.name.clone(),
                    metric: Some(s.metric),
                    statistic: Some(s.statistic),
                    period: s.period,
                    evaluation_periods: s.evaluation_periods,
                    threshold: s.threshold,
                    comparison: Some(s.comparison),
                },
                AlarmOutputs { name: s.name },
            )
        }))
    }

    async fn update(
        cx: Cx<'_>,
        _: &str,
        _: &AlarmSpecArgs,
        new: &AlarmSpecArgs,
    ) -> Result<AlarmOutputs> {
        put(cx, new).await
    }

    async fn delete(cx: Cx<'_>, id: &str, _: &AlarmSpecArgs) -> Result<()> {
        gone_ok(cx.cloud.metrics()?.delete_alarm(id).await)
    }
}
