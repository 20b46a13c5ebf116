//! Resource types over the service traits, one module per service.
//!
//! Each type has an arguments struct whose fields are [`Input`]s (plain values or outputs of
//! other resources), a resolved arguments struct the provider works on, a handle with
//! [`Output`]s, and a [`Resource`] implementation.

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::output::{Args, Input, Output};
use super::provider::{Erased, Provider, Resource};
use super::{Handle, ResourceOptions, Stack};
use crate::error::{ErrorKind, Result};

mod autoscale;
mod blob;
mod container;
mod crypto;
mod database;
mod flags;
mod image;
mod kv;
mod lb;
mod log;
mod metric;
mod noop;
mod vm;
mod vpc;

pub use autoscale::{
    AutoScaler, AutoScalerArgs, AutoScalerOutputs, AutoScalerResource, AutoScalerSpec,
};
pub use blob::{Bucket, BucketArgs, BucketResource, BucketSpec};
pub use container::{
    ContainerService, ContainerServiceArgs, ContainerServiceResource, ContainerServiceSpecArgs,
    ScheduledTask, ScheduledTaskArgs, ScheduledTaskResource, ScheduledTaskSpecArgs,
};
pub use crypto::{Key, KeyArgs, KeyResource, KeySpec};
pub use database::{
    Database, DatabaseArgs, DatabaseResource, DatabaseSpecArgs, Snapshot, SnapshotArgs,
    SnapshotResource, SnapshotSpec,
};
pub use flags::{Flag, FlagArgs, FlagOutputs, FlagResource, FlagSpec};
pub use image::{
    Image, ImageArgs, ImageResource, ImageSpec, Repository, RepositoryArgs, RepositoryResource,
    RepositorySpec, context_digest,
};
pub use kv::{Table, TableArgs, TableResource, TableSpecArgs};
pub use lb::{
    Listener, LoadBalancer, LoadBalancerArgs, LoadBalancerResource, LoadBalancerSpecArgs,
    TargetGroup, TargetGroupArgs, TargetGroupResource, TargetGroupSpecArgs,
};
pub use log::{LogGroup, LogGroupArgs, LogGroupResource, LogGroupSpec};
pub use metric::{Alarm, AlarmArgs, AlarmResource, AlarmSpecArgs};
pub use noop::{Noop, NoopArgs, NoopResource, NoopSpec};
pub use vm::{Vm, VmArgs, VmResource, VmSpecArgs};
pub use vpc::{
    SecurityGroup, SecurityGroupArgs, SecurityGroupResource, SecurityGroupSpec, Subnet, SubnetArgs,
    SubnetResource, SubnetSpec, Vpc, VpcArgs, VpcResource, VpcSpec,
};

/// The tag that marks what a resource created, with the resource's URN, where the service has
/// tags: how a create interrupted by a crash is found again.
pub const URN_TAG: &str = "mvi:urn";

/// `f` applied to an input's value: now for a plain value, once known for an output (whose
/// dependencies and secret flag carry over).
pub fn map_input<T, U, F>(input: Input<T>, f: F) -> Input<U>
where
    T: Serialize + DeserializeOwned + 'static,
    U: Serialize + DeserializeOwned + 'static,
    F: Fn(T) -> U + Send + Sync + 'static,
{
    match input {
        Input::Value(v) => Input::Value(f(v)),
        Input::Output(o) => Input::Output(o.map(f)),
    }
}

/// `f` applied to two inputs' values, once both are known (dependencies and secret flags of
/// both carry over).
pub fn zip_inputs<A, B, U, F>(a: Input<A>, b: Input<B>, f: F) -> Input<U>
where
    A: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    B: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    U: Serialize + DeserializeOwned + 'static,
    F: Fn(A, B) -> U + Send + Sync + 'static,
{
    match (a, b) {
        (Input::Value(a), Input::Value(b)) => Input::Value(f(a, b)),
        (Input::Value(a), Input::Output(b)) => Input::Output(b.map(move |b| f(a.clone(), b))),
        (Input::Output(a), Input::Value(b)) => Input::Output(a.map(move |a| f(a, b.clone()))),
        (Input::Output(a), Input::Output(b)) => Input::Output(a.zip(&b).map(move |(a, b)| f(a, b))),
    }
}

/// `list` with `item` appended (either may be an output).
pub fn push_input<T>(list: Input<Vec<T>>, item: Input<T>) -> Input<Vec<T>>
where
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    zip_inputs(list, item, |mut l, i| {
        l.push(i);
        l
    })
}

/// `map` with `key` set to `value` (either may be an output).
pub fn insert_input<V>(
    map: Input<std::collections::BTreeMap<String, V>>,
    key: impl Into<String>,
    value: Input<V>,
) -> Input<std::collections::BTreeMap<String, V>>
where
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    let key = key.into();
    zip_inputs(map, value, move |mut m, v| {
        m.insert(key.clone(), v);
        m
    })
}

pub(crate) use crate::error::found;

/// A delete of something already gone succeeds.
pub(crate) fn gone_ok(r: Result<()>) -> Result<()> {
    match r {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Declares an arguments struct of `Input` fields and its resolved twin.
macro_rules! resource_args {
    (
        $(#[$meta:meta])*
        pub struct $args:ident => $spec:ident {
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone)]
        pub struct $args {
            $( $(#[$fmeta])* pub $field: Input<$ty>, )*
        }

        impl $crate::stack::Args for $args {
            fn props(&self, stack: &std::sync::Arc<str>) -> Vec<(&'static str, $crate::stack::ErasedInput)> {
                vec![$( (stringify!($field), $crate::stack::erase(stack, &self.$field)) ),*]
            }
        }

        #[doc = concat!("The resolved arguments of [`", stringify!($args), "`], as providers see them.")]
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        pub struct $spec {
            $( $(#[$fmeta])* #[serde(default)] pub $field: $ty, )*
        }
    };
}
pub(crate) use resource_args;

/// Declares `R` in `stack` and builds its handle.
pub(crate) fn declare<R: Resource>(
    stack: &Stack,
    name: &str,
    args: &impl Args,
    opts: ResourceOptions,
) -> Result<Handle> {
    stack.declare::<R>(name, args, opts)
}

/// The provider of a built-in type by name (for resources in a state that the program no
/// longer declares).
pub(crate) fn builtin(type_name: &str) -> Option<Arc<dyn Provider>> {
    fn p<R: Resource>() -> Arc<dyn Provider> {
        Arc::new(Erased::<R>::new())
    }
    Some(match type_name {
        t if t == BucketResource::TYPE => p::<BucketResource>(),
        t if t == TableResource::TYPE => p::<TableResource>(),
        t if t == FlagResource::TYPE => p::<FlagResource>(),
        t if t == AutoScalerResource::TYPE => p::<AutoScalerResource>(),
        t if t == KeyResource::TYPE => p::<KeyResource>(),
        t if t == LogGroupResource::TYPE => p::<LogGroupResource>(),
        t if t == NoopResource::TYPE => p::<NoopResource>(),
        t if t == VpcResource::TYPE => p::<VpcResource>(),
        t if t == SubnetResource::TYPE => p::<SubnetResource>(),
        t if t == SecurityGroupResource::TYPE => p::<SecurityGroupResource>(),
        t if t == VmResource::TYPE => p::<VmResource>(),
        t if t == RepositoryResource::TYPE => p::<RepositoryResource>(),
        t if t == ImageResource::TYPE => p::<ImageResource>(),
        t if t == AlarmResource::TYPE => p::<AlarmResource>(),
        t if t == ContainerServiceResource::TYPE => p::<ContainerServiceResource>(),
        t if t == ScheduledTaskResource::TYPE => p::<ScheduledTaskResource>(),
        t if t == TargetGroupResource::TYPE => p::<TargetGroupResource>(),
        t if t == LoadBalancerResource::TYPE => p::<LoadBalancerResource>(),
        t if t == DatabaseResource::TYPE => p::<DatabaseResource>(),
        t if t == SnapshotResource::TYPE => p::<SnapshotResource>(),
        _ => return None,
    })
}
