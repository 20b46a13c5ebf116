//! mvi-aws: the AWS backend. Each service sits behind its cargo feature, so a program
//! compiles only the SDK crates it uses:
//!
//! | feature | service | AWS |
//! |---|---|---|
//! | `s3` | Blob | S3 |
//! | `dynamodb` | KV | DynamoDB |
//! | `kms` | Crypto | KMS |
//! | `logs` | Log | CloudWatch Logs |
//! | `cloudwatch` | Metric | CloudWatch |
//! | `ecr` | Image | ECR |
//! | `ecs` | Container | ECS (Fargate) |
//! | `elbv2` | Load Balancer | Elastic Load Balancing v2 |
//! | `rds` | Database | RDS for PostgreSQL |
//! | `ec2` | VM and VPC | EC2 |
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
#[cfg(feature = "sdk")]
mod cloud;
#[cfg(feature = "ecs")]
pub mod container;
#[cfg(feature = "kms")]
pub mod crypto;
#[cfg(feature = "rds")]
pub mod database;
#[cfg(feature = "sdk")]
pub mod error;
#[cfg(feature = "ecr")]
pub mod image;
#[cfg(feature = "dynamodb")]
pub mod kv;
#[cfg(feature = "elbv2")]
pub mod lb;
#[cfg(feature = "logs")]
pub mod log;
#[cfg(feature = "cloudwatch")]
pub mod metric;
#[cfg(feature = "sdk")]
pub mod moto;
#[cfg(any(feature = "ecs", feature = "elbv2", feature = "rds", feature = "ec2"))]
mod poll;
#[cfg(feature = "ec2")]
pub mod vm;
#[cfg(feature = "ec2")]
pub mod vpc;

#[cfg(feature = "sdk")]
pub use cloud::{AwsCloud, AwsCloudBuilder};
