//! Autoscaling resources: a container service's scaler (see [`crate::autoscale`]).

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{Input, Output, declare, gone_ok, resource_args};
use crate::autoscale::{Behavior, MetricTarget, ScalerSpec, ScheduledAction, TOLERANCE};
use crate::error::{ErrorKind, Result};
use crate::stack::{Cx, Resource, ResourceOptions, Stack};

resource_args! {
    /// Arguments of an [`AutoScaler`].
    pub struct AutoScalerArgs => AutoScalerSpec {
        /// The container service it scales.
        service: String,
        /// At least this many replicas.
        min: u32,
        /// At most this many.
        max: u32,
        /// What it tracks (the largest proposal wins).
        metrics: Vec<MetricTarget>,
        /// How fast it may scale (HPA's defaults when absent).
        behavior: Option<Behavior>,
        /// Scheduled changes of the bounds.
        schedules: Vec<ScheduledAction>,
        /// How often it evaluates (15 s when absent).
        period: Option<Duration>,
        /// The tolerance (0.1 when absent).
        tolerance: Option<f64>,
    }
}

impl AutoScalerArgs {
    /// Scales `service` between `min` and `max` replicas on `metrics`.
    pub fn new(
        service: impl Into<Input<String>>,
        min: u32,
        max: u32,
        metrics: Vec<MetricTarget>,
    ) -> Self {
        AutoScalerArgs {
            service: service.into(),
            min: Input::Value(min),
            max: Input::Value(max),
            metrics: Input::Value(metrics),
            behavior: Input::Value(None),
            schedules: Input::Value(Vec::new()),
            period: Input::Value(None),
            tolerance: Input::Value(None),
        }
    }

    /// Sets the behavior.
    pub fn behavior(mut self, behavior: Behavior) -> Self {
        self.behavior = Input::Value(Some(behavior));
        self
    }

    /// Adds a scheduled action.
    pub fn schedule(mut self, action: ScheduledAction) -> Self {
        self.schedules = super::push_input(self.schedules, Input::Value(action));
        self
    }

    /// Sets the evaluation period.
    pub fn period(mut self, period: Duration) -> Self {
        self.period = Input::Value(Some(period));
        self
    }
}

impl AutoScalerSpec {
    /// The scaler these arguments declare.
    pub fn scaler(&self) -> ScalerSpec {
        let mut s = ScalerSpec::new(&self.service, self.min, self.max);
        s.metrics = self.metrics.clone();
        s.behavior = self.behavior.clone().unwrap_or_default();
        s.schedules = self.schedules.clone();
        s.period = self.period.unwrap_or(Duration::from_secs(15));
        s.tolerance = self.tolerance.unwrap_or(TOLERANCE);
        s
    }
}

/// A container service's scaler, run by the backend (see
/// [`crate::Containers::put_scaler`]).
#[derive(Debug, Clone)]
pub struct AutoScaler {
    /// Its URN.
    pub urn: String,
    /// The service it scales.
    pub service: Output<String>,
}

impl AutoScaler {
    /// Declares a scaler.
    pub fn new(stack: &Stack, name: &str, args: AutoScalerArgs) -> Result<AutoScaler> {
        Self::with(stack, name, args, ResourceOptions::default())
    }

    /// Declares a scaler with options.
    pub fn with(
        stack: &Stack,
        name: &str,
        args: AutoScalerArgs,
        opts: ResourceOptions,
    ) -> Result<AutoScaler> {
        let h = declare::<AutoScalerResource>(stack, name, &args, opts)?;
        Ok(AutoScaler {
            service: h.output("service"),
            urn: h.urn().to_string(),
        })
    }
}

/// Outputs of a scaler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutoScalerOutputs {
    /// The service it scales.
    pub service: String,
}

/// The provider of [`AutoScaler`]. Its id is the service's name.
#[derive(Debug)]
pub struct AutoScalerResource;

#[async_trait]
impl Resource for AutoScalerResource {
    const TYPE: &'static str = "mvi:autoscale:AutoScaler";
    const REPLACE_ON: &'static [&'static str] = &["service"];
    const STABLE_OUTPUTS: &'static [&'static str] = &["service"];
    type Args = AutoScalerSpec;
    type Outputs = AutoScalerOutputs;

    fn check(args: &AutoScalerSpec) -> Result<()> {
        args.scaler().check()
    }

    async fn create(cx: Cx<'_>, args: &AutoScalerSpec) -> Result<(String, AutoScalerOutputs)> {
        cx.cloud.containers()?.put_scaler(args.scaler()).await?;
        Ok((
            args.service.clone(),
            AutoScalerOutputs {
                service: args.service.clone(),
            },
        ))
    }

    async fn find(cx: Cx<'_>, args: &AutoScalerSpec) -> Result<Option<String>> {
        match cx.cloud.containers()?.describe_scaler(&args.service).await {
            Ok(_) => Ok(Some(args.service.clone())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn read(
        cx: Cx<'_>,
        id: &str,
        _: &AutoScalerSpec,
    ) -> Result<Option<(AutoScalerSpec, AutoScalerOutputs)>> {
        let info = match cx.cloud.containers()?.describe_scaler(id).await {
            Ok(info) => info,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let s = info.spec;
        let default = ScalerSpec::new(&s.service, s.min, s.max);
        Ok(Some((
            AutoScalerSpec {
                service: s.service.clone(),
                min: s.min,
                max: s.max,
                metrics: s.metrics,
                behavior: (s.behavior != default.behavior).then_some(s.behavior),
                schedules: s.schedules,
                period: (s.period != default.period).then_some(s.period),
                tolerance: (s.tolerance != default.tolerance).then_some(s.tolerance),
            },
            AutoScalerOutputs { service: s.service },
        )))
    }

    async fn update(
        cx: Cx<'_>,
        _: &str,
        _: &AutoScalerSpec,
        new: &AutoScalerSpec,
    ) -> Result<AutoScalerOutputs> {
        cx.cloud.containers()?.put_scaler(new.scaler()).await?;
        Ok(AutoScalerOutputs {
            service: new.service.clone(),
        })
    }

    async fn delete(cx: Cx<'_>, id: &str, _: &AutoScalerSpec) -> Result<()> {
        gone_ok(cx.cloud.containers()?.delete_scaler(id).await)
    }
}
