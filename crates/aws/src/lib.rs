//! mvi-aws: the AWS backend. Each service sits behind its cargo feature (`s3` for Blob,
//! `dynamodb` for KV), so a program compiles only the SDK crates it uses.
//!
//! ```no_run
//! # async fn demo() -> mvi_core::Result<()> {
//! let cloud = mvi_aws::AwsCloud::from_env()
//!     .region("eu-west-1")
//!     .endpoint_url("http://127.0.0.1:5000") // moto, MinIO, LocalStack; omit for AWS
//!     .credentials("test", "test")
//!     .build()
//!     .await?;
//! # let _ = cloud; Ok(()) }
//! ```
#![deny(missing_docs)]

#[cfg(feature = "s3")]
pub mod blob;
#[cfg(any(feature = "s3", feature = "dynamodb"))]
mod cloud;
#[cfg(any(feature = "s3", feature = "dynamodb"))]
pub mod error;
#[cfg(feature = "dynamodb")]
pub mod kv;

#[cfg(any(feature = "s3", feature = "dynamodb"))]
pub use cloud::{AwsCloud, AwsCloudBuilder};
