//! Log resources: log groups.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{Input, Output, declare, resource_args};
use crate::error::{ErrorKind, Op, Result, Service};
use crate::log::{validate_group_name, validate_retention};
use crate::stack::{Cx, Resource, ResourceOptions, Stack};

resource_args! {
    /// Arguments of a [`LogGroup`].
    pub struct LogGroupArgs => LogGroupSpec {
        /// The group's name.
        name: String,
        /// Days events are kept (`None`: forever).
        retention_days: Option<u32>,
    }
}

impl LogGroupArgs {
    /// A group named `name`, kept forever.
    pub fn new(name: impl Into<Input<String>>) -> Self {
        LogGroupArgs {
            name: name.into(),
            retention_days: Input::Value(None),
        }
    }

    /// Keeps events `days` days.
    pub fn retention_days(mut self, days: u32) -> Self {
        self.retention_days = Input::Value(Some(days));
        self
    }
}

/// A log group.
#[derive(Debug, Clone)]
pub struct LogGroup {
    /// Its URN.
    pub urn: String,
    /// Its name.
    pub name: Output<String>,
}

impl LogGroup {
    /// A grant of writing its streams (`logs:PutLogEvents`, ...), for [`ContainerServiceArgs::grant`](super::ContainerServiceArgs::grant).
    pub fn grant_write(&self) -> Output<crate::access::Grant> {
        self.name.map(crate::access::Grant::log_group_write)
    }

    /// Declares a log group.
    pub fn new(stack: &Stack, name: &str, args: LogGroupArgs) -> Result<LogGroup> {
        Self::with(stack, name, args, ResourceOptions::default())
    }

    /// Declares a log group with options.
    pub fn with(
        stack: &Stack,
        name: &str,
        args: LogGroupArgs,
        opts: ResourceOptions,
    ) -> Result<LogGroup> {
        let h = declare::<LogGroupResource>(stack, name, &args, opts)?;
        Ok(LogGroup {
            name: h.output("name"),
            urn: h.urn().to_string(),
        })
    }
}

/// Outputs of a log group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogGroupOutputs {
    /// Its name.
    pub name: String,
}

/// The provider of [`LogGroup`].
#[derive(Debug)]
pub struct LogGroupResource;

#[async_trait]
impl Resource for LogGroupResource {
    const TYPE: &'static str = "mvi:log:Group";
    const ECHOED_OUTPUTS: &'static [&'static str] = &["name"];
    const REPLACE_ON: &'static [&'static str] = &["name"];
    type Args = LogGroupSpec;
    type Outputs = LogGroupOutputs;

    fn check(args: &LogGroupSpec) -> Result<()> {
        let op = Op::new(Service::Stack, "check");
        validate_group_name(op, &args.name)?;
        validate_retention(op, &args.name, args.retention_days)
    }

    async fn create(cx: Cx<'_>, args: &LogGroupSpec) -> Result<(String, LogGroupOutputs)> {
        cx.cloud
            .logs()?
            .create_group(&args.name, args.retention_days)
            .await?;
        Ok((
            args.name.clone(),
            LogGroupOutputs {
                name: args.name.clone(),
            },
        ))
    }

    async fn find(cx: Cx<'_>, args: &LogGroupSpec) -> Result<Option<String>> {
        let groups = cx.cloud.logs()?.list_groups().await?;
        Ok(groups
            .iter()
            .any(|g| g.name == args.name)
            .then(|| args.name.clone()))
    }

    async fn read(
        cx: Cx<'_>,
        id: &str,
        _: &LogGroupSpec,
    ) -> Result<Option<(LogGroupSpec, LogGroupOutputs)>> {
        let groups = cx.cloud.logs()?.list_groups().await?;
        Ok(groups.into_iter().find(|g| g.name == id).map(|g| {
            (
                LogGroupSpec {
                    name: g.name.clone(),
                    retention_days: g.retention_days,
                },
                LogGroupOutputs { name: g.name },
            )
        }))
    }

    async fn update(
        cx: Cx<'_>,
        id: &str,
        _: &LogGroupSpec,
        new: &LogGroupSpec,
    ) -> Result<LogGroupOutputs> {
        cx.cloud
            .logs()?
            .set_retention(id, new.retention_days)
            .await?;
        Ok(LogGroupOutputs {
            name: id.to_string(),
        })
    }

    async fn delete(cx: Cx<'_>, id: &str, _: &LogGroupSpec) -> Result<()> {
        match cx.cloud.logs()?.delete_group(id).await {
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
}
