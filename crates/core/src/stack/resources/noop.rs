//! A resource that exists only in the stack's state: for tests, benchmarks and as the
//! smallest example of a resource type.

use async_trait::async_trait;

use super::{Input, Output, declare, resource_args};
use crate::error::Result;
use crate::stack::{Cx, Resource, ResourceOptions, Stack};

resource_args! {
    /// Arguments of a [`Noop`].
    pub struct NoopArgs => NoopSpec {
        /// Any value; changing it updates the resource.
        value: String,
        /// Any value; changing it replaces the resource.
        key: String,
    }
}

impl NoopArgs {
    /// A no-op resource holding `value`.
    pub fn new(value: impl Into<Input<String>>) -> Self {
        NoopArgs {
            value: value.into(),
            key: Input::Value(String::new()),
        }
    }

    /// Sets the replace-forcing key.
    pub fn key(mut self, key: impl Into<Input<String>>) -> Self {
        self.key = key.into();
        self
    }
}

/// A no-op resource.
#[derive(Debug, Clone)]
pub struct Noop {
    /// Its URN.
    pub urn: String,
    /// Its value, once applied.
    pub value: Output<String>,
}

impl Noop {
    /// Declares a no-op resource.
    pub fn new(stack: &Stack, name: &str, args: NoopArgs) -> Result<Noop> {
        Self::with(stack, name, args, ResourceOptions::default())
    }

    /// Declares a no-op resource with options.
    pub fn with(stack: &Stack, name: &str, args: NoopArgs, opts: ResourceOptions) -> Result<Noop> {
        let h = declare::<NoopResource>(stack, name, &args, opts)?;
        Ok(Noop {
            value: h.output("value"),
            urn: h.urn().to_string(),
        })
    }
}

/// The provider of [`Noop`].
#[derive(Debug)]
pub struct NoopResource;

#[async_trait]
impl Resource for NoopResource {
    const TYPE: &'static str = "mvi:test:Noop";
    const REPLACE_ON: &'static [&'static str] = &["key"];
    const FIXED_NAME: bool = false;
    type Args = NoopSpec;
    type Outputs = NoopSpec;

    async fn create(cx: Cx<'_>, args: &NoopSpec) -> Result<(String, NoopSpec)> {
        Ok((cx.urn.to_string(), args.clone()))
    }
    async fn find(_: Cx<'_>, _: &NoopSpec) -> Result<Option<String>> {
        Ok(None)
    }
    async fn read(_: Cx<'_>, _: &str, args: &NoopSpec) -> Result<Option<(NoopSpec, NoopSpec)>> {
        Ok(Some((args.clone(), args.clone())))
    }
    async fn update(_: Cx<'_>, _: &str, _: &NoopSpec, new: &NoopSpec) -> Result<NoopSpec> {
        Ok(new.clone())
    }
    async fn delete(_: Cx<'_>, _: &str, _: &NoopSpec) -> Result<()> {
        Ok(())
    }
}
