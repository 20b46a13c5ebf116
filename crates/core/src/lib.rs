//! mvi-core: the contracts of mvi.
//!
//! One module per service of "Minimum Viable Infrastructure", each with an object-safe async
//! trait and its request/response types; the one [`Error`] type they all return; and the
//! [`Cloud`] handle through which a program reaches every service of a backend.
//!
//! | service | trait | module |
//! |---|---|---|
//! | Blob | [`Blob`] | [`blob`] |
//! | KV | [`Kv`] | [`kv`] |
//! | Crypto | [`Crypto`] | [`crypto`] |
//! | Log | [`Logs`] | [`log`] |
//! | Metric | [`Metrics`] | [`metric`] |
//! | Image | [`Images`] | [`image`] |
//! | Container | [`Containers`] | [`container`] |
//! | Load Balancer | [`LoadBalancers`] | [`lb`] |
//! | Database | [`Databases`] | [`database`] |
//! | VM | [`Vms`] | [`vm`] |
//! | VPC | [`Networks`] | [`vpc`] |
#![deny(missing_docs)]

pub mod access;
pub mod autoscale;
pub mod blob;
pub mod cloud;
pub mod common;
pub mod container;
pub mod crypto;
pub mod database;
pub mod deploy;
pub mod drill;
pub mod error;
pub mod experiment;
pub mod fault;
pub mod flags;
pub mod image;
pub mod kv;
pub mod layer;
pub mod lb;
pub mod log;
pub mod metric;
pub mod records;
pub mod stack;
pub mod vm;
pub mod vpc;

pub use blob::{Blob, BlobExt};
pub use cloud::Cloud;
pub use common::{
    BoxStream, ByteStream, Clock, ManualClock, Page, SecretBytes, SecretString, SystemClock, Tags,
    Timestamp,
};
pub use container::Containers;
pub use crypto::Crypto;
pub use database::Databases;
pub use error::{Error, ErrorKind, Op, Result, Service};
pub use image::Images;
pub use kv::{Kv, KvExt};
pub use layer::Layer;
pub use lb::LoadBalancers;
pub use log::Logs;
pub use metric::Metrics;
pub use vm::Vms;
pub use vpc::Networks;

pub use async_trait::async_trait;
pub use bytes::Bytes;
