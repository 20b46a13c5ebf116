//! mvi: Minimum Viable Infrastructure from code.
//!
//! The eleven services of an app's cloud (VM, VPC, Crypto, Image, Container, Load Balancer,
//! Database, Log, Metric, KV, Blob) behind one set of traits, with a local simulator and an
//! AWS backend. This facade re-exports the contracts ([`mvi_core`]) and, by cargo feature,
//! the backends: `local` (default) as [`local`], `aws` as `aws`.
//!
//! ```no_run
//! use mvi::prelude::*;
//!
//! # async fn demo() -> mvi::Result<()> {
//! let cloud = mvi::local::LocalCloud::builder().root(".mvi").build().await?;
//! let blob = cloud.blob()?;
//! blob.create_bucket("photos").await?;
//! blob.put("photos", "cat.txt", "meow").await?;
//! assert_eq!(blob.get("photos", "cat.txt").await?.as_ref(), b"meow");
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub use mvi_core::*;

/// The local simulator backend.
#[cfg(feature = "local")]
pub use mvi_local as local;

/// The AWS backend.
#[cfg(feature = "aws")]
pub use mvi_aws as aws;

#[cfg(feature = "cli")]
pub mod cli;

/// The traits and their extension traits, for `use mvi::prelude::*`.
pub mod prelude {
    pub use mvi_core::{
        Blob, BlobExt, Cloud, Containers, Crypto, Databases, Images, Kv, KvExt, LoadBalancers,
        Logs, Metrics, Networks, Vms,
    };
}
