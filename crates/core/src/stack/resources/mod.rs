//! Resource types over the service traits, one module per service.
//!
//! Each type has an arguments struct whose fields are [`Input`]s (plain values or outputs of
//! other resources), a resolved arguments struct the provider works on, a handle with
//! [`Output`]s, and a [`Resource`] implementation.

use std::sync::Arc;

use super::output::{Args, Input, Output};
use super::provider::{Erased, Provider, Resource};
use super::{Handle, ResourceOptions, Stack};
use crate::error::Result;

mod blob;
mod crypto;
mod kv;
mod log;
mod noop;

pub use blob::{Bucket, BucketArgs, BucketResource, BucketSpec};
pub use crypto::{Key, KeyArgs, KeyResource, KeySpec};
pub use kv::{Table, TableArgs, TableResource, TableSpecArgs};
pub use log::{LogGroup, LogGroupArgs, LogGroupResource, LogGroupSpec};
pub use noop::{Noop, NoopArgs, NoopResource, NoopSpec};

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
        t if t == KeyResource::TYPE => p::<KeyResource>(),
        t if t == LogGroupResource::TYPE => p::<LogGroupResource>(),
        t if t == NoopResource::TYPE => p::<NoopResource>(),
        _ => return None,
    })
}
