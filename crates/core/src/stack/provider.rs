//! How the engine drives one type of resource: check, create, find, read, update, delete,
//! over the service traits of a `Cloud`.
//!
//! A resource type implements the typed [`Resource`] trait; the engine works with the
//! type-erased [`Provider`] made from it, on JSON properties, so one engine drives every type
//! and every backend.

use std::collections::BTreeSet;
use std::marker::PhantomData;

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::output::Props;
use crate::cloud::Cloud;
use crate::error::{Op, Result, Service};

/// What a provider call gets: the backend and where in the stack the resource is.
#[derive(Debug, Clone, Copy)]
pub struct Cx<'a> {
    /// The backend's services.
    pub cloud: &'a Cloud,
    /// The stack's name.
    pub stack: &'a str,
    /// The resource's URN (`<stack>::<type>::<name>`), unique and stable: providers tag what
    /// they create with it where the service has tags, so a create interrupted by a crash can
    /// be found again.
    pub urn: &'a str,
    /// The stack's event stream: a provider sends [`super::Event::Progress`] on it to say how
    /// a long step is going.
    pub events: &'a tokio::sync::broadcast::Sender<super::Event>,
    /// Ids a [`Resource::find`] must not return: resources this one replaced that still exist
    /// (carrying the same URN tag) until they are deleted at the end of the run.
    pub taken: &'a [String],
}

impl Cx<'_> {
    /// Whether `id` belongs to another record (see [`Cx::taken`]).
    pub fn is_taken(&self, id: &str) -> bool {
        self.taken.iter().any(|t| t == id)
    }
}

/// A type of resource, typed. See the module doc.
#[async_trait]
pub trait Resource: Send + Sync + 'static {
    /// The type's name (`mvi:blob:Bucket`).
    const TYPE: &'static str;
    /// Argument properties whose change needs the resource replaced (deleted and created).
    const REPLACE_ON: &'static [&'static str];
    /// Output properties that are secret.
    const SECRET_OUTPUTS: &'static [&'static str] = &[];
    /// Argument properties that are secret whatever the value given (such as a container's
    /// `secret_env`): sealed in state and masked everywhere, like a secret output.
    const SECRET_INPUTS: &'static [&'static str] = &[];
    /// Output properties an in-place update never changes (so a preview knows them while
    /// the resource is updated, and its dependents do not look changed).
    const STABLE_OUTPUTS: &'static [&'static str] = &["id", "name"];
    /// Output properties always equal to the argument of the same name (a bucket's `name`):
    /// a preview knows them as soon as the argument is known, before the resource exists.
    const ECHOED_OUTPUTS: &'static [&'static str] = &[];
    /// Whether the resource keeps a name its arguments fix (so a replacement must delete the
    /// old one before creating the new one, or the names would collide).
    const FIXED_NAME: bool = true;

    /// The arguments, resolved.
    type Args: Serialize + DeserializeOwned + Send + Sync;
    /// The outputs.
    type Outputs: Serialize + DeserializeOwned + Send + Sync;

    /// Checks the arguments before anything is touched (clear errors, naming the property).
    fn check(args: &Self::Args) -> Result<()> {
        let _ = args;
        Ok(())
    }

    /// Creates the resource; returns its id and outputs.
    async fn create(cx: Cx<'_>, args: &Self::Args) -> Result<(String, Self::Outputs)>;

    /// Finds a resource these arguments would have created (after a crash interrupted a
    /// create, or to import an existing resource): its id, if it exists.
    async fn find(cx: Cx<'_>, args: &Self::Args) -> Result<Option<String>>;

    /// Reads the resource as it is now: its arguments as the cloud sees them (to detect
    /// drift) and its outputs, or `None` if it no longer exists.
    async fn read(
        cx: Cx<'_>,
        id: &str,
        args: &Self::Args,
    ) -> Result<Option<(Self::Args, Self::Outputs)>>;

    /// Updates the resource in place from `old` to `new` arguments (only properties not in
    /// `REPLACE_ON` differ); returns its new outputs.
    async fn update(
        cx: Cx<'_>,
        id: &str,
        old: &Self::Args,
        new: &Self::Args,
    ) -> Result<Self::Outputs>;

    /// Deletes the resource. Deleting one that is already gone succeeds.
    async fn delete(cx: Cx<'_>, id: &str, args: &Self::Args) -> Result<()>;

    /// Outputs a preview can tell before anything is applied, computed from the arguments
    /// without changing anything (a service's access policy). `args` holds the arguments
    /// known so far; those computed from outputs not known yet are named in `unknown` (and
    /// hold their defaults). An output answered `None` is shown as known after apply. None
    /// by default.
    async fn preview_outputs(
        _cx: Cx<'_>,
        _args: &Self::Args,
        _unknown: &BTreeSet<String>,
    ) -> Result<Vec<(&'static str, Option<serde_json::Value>)>> {
        Ok(Vec::new())
    }
}

/// A resource type, type-erased for the engine.
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// The type's name.
    fn type_name(&self) -> &'static str;
    /// Argument properties whose change needs a replacement.
    fn replace_on(&self) -> &'static [&'static str];
    /// Secret output properties.
    fn secret_outputs(&self) -> &'static [&'static str];
    /// See [`Resource::SECRET_INPUTS`].
    fn secret_inputs(&self) -> &'static [&'static str];
    /// Whether a replacement must delete first.
    fn fixed_name(&self) -> bool;
    /// See [`Resource::STABLE_OUTPUTS`].
    fn stable_outputs(&self) -> &'static [&'static str];
    /// See [`Resource::check`].
    fn check(&self, urn: &str, args: &Props) -> Result<()>;
    /// See [`Resource::create`].
    async fn create(&self, cx: Cx<'_>, args: &Props) -> Result<(String, Props)>;
    /// See [`Resource::find`].
    async fn find(&self, cx: Cx<'_>, args: &Props) -> Result<Option<String>>;
    /// See [`Resource::read`].
    async fn read(&self, cx: Cx<'_>, id: &str, args: &Props) -> Result<Option<(Props, Props)>>;
    /// See [`Resource::update`].
    async fn update(&self, cx: Cx<'_>, id: &str, old: &Props, new: &Props) -> Result<Props>;
    /// See [`Resource::delete`].
    async fn delete(&self, cx: Cx<'_>, id: &str, args: &Props) -> Result<()>;
    /// See [`Resource::preview_outputs`].
    async fn preview_outputs(
        &self,
        cx: Cx<'_>,
        args: &Props,
        unknown: &BTreeSet<String>,
    ) -> Result<Vec<(&'static str, Option<serde_json::Value>)>>;
    /// See [`Resource::ECHOED_OUTPUTS`].
    fn echoed_outputs(&self) -> &'static [&'static str];
}

/// The erased provider of a [`Resource`] type.
pub(crate) struct Erased<R>(PhantomData<fn() -> R>);

impl<R> Erased<R> {
    pub(crate) fn new() -> Self {
        Erased(PhantomData)
    }
}

fn op(operation: &'static str) -> Op {
    Op::new(Service::Stack, operation)
}

fn decode<T: DeserializeOwned>(
    operation: &'static str,
    urn: &str,
    what: &str,
    props: &Props,
) -> Result<T> {
    serde_json::from_value(serde_json::Value::Object(props.clone())).map_err(|e| {
        op(operation).invalid(urn, format!("{what} do not fit the resource type: {e}"))
    })
}

fn encode<T: Serialize>(operation: &'static str, urn: &str, value: &T) -> Result<Props> {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        Ok(other) => {
            Err(op(operation).internal(urn, format!("properties must be an object, got {other}")))
        }
        Err(e) => Err(op(operation).internal(urn, e)),
    }
}

#[async_trait]
impl<R: Resource> Provider for Erased<R> {
    fn type_name(&self) -> &'static str {
        R::TYPE
    }
    fn replace_on(&self) -> &'static [&'static str] {
        R::REPLACE_ON
    }
    fn secret_outputs(&self) -> &'static [&'static str] {
        R::SECRET_OUTPUTS
    }
    fn secret_inputs(&self) -> &'static [&'static str] {
        R::SECRET_INPUTS
    }
    fn fixed_name(&self) -> bool {
        R::FIXED_NAME
    }
    fn stable_outputs(&self) -> &'static [&'static str] {
        R::STABLE_OUTPUTS
    }
    fn check(&self, urn: &str, args: &Props) -> Result<()> {
        R::check(&decode("check", urn, "the arguments", args)?)
    }
    async fn create(&self, cx: Cx<'_>, args: &Props) -> Result<(String, Props)> {
        let args: R::Args = decode("create", cx.urn, "the arguments", args)?;
        let (id, outputs) = R::create(cx, &args).await?;
        Ok((id, encode("create", cx.urn, &outputs)?))
    }
    async fn find(&self, cx: Cx<'_>, args: &Props) -> Result<Option<String>> {
        R::find(cx, &decode("find", cx.urn, "the arguments", args)?).await
    }
    async fn read(&self, cx: Cx<'_>, id: &str, args: &Props) -> Result<Option<(Props, Props)>> {
        let args: R::Args = decode("read", cx.urn, "the arguments", args)?;
        match R::read(cx, id, &args).await? {
            Some((a, o)) => Ok(Some((
                encode("read", cx.urn, &a)?,
                encode("read", cx.urn, &o)?,
            ))),
            None => Ok(None),
        }
    }
    async fn update(&self, cx: Cx<'_>, id: &str, old: &Props, new: &Props) -> Result<Props> {
        let old: R::Args = decode("update", cx.urn, "the old arguments", old)?;
        let new: R::Args = decode("update", cx.urn, "the arguments", new)?;
        encode("update", cx.urn, &R::update(cx, id, &old, &new).await?)
    }
    async fn delete(&self, cx: Cx<'_>, id: &str, args: &Props) -> Result<()> {
        R::delete(cx, id, &decode("delete", cx.urn, "the arguments", args)?).await
    }
    async fn preview_outputs(
        &self,
        cx: Cx<'_>,
        args: &Props,
        unknown: &BTreeSet<String>,
    ) -> Result<Vec<(&'static str, Option<serde_json::Value>)>> {
        R::preview_outputs(
            cx,
            &decode("preview", cx.urn, "the arguments", args)?,
            unknown,
        )
        .await
    }
    fn echoed_outputs(&self) -> &'static [&'static str] {
        R::ECHOED_OUTPUTS
    }
}
