//! mvi-local: the local simulator of mvi's services.
//!
//! ```no_run
//! # async fn demo() -> mvi_core::Result<()> {
//! use mvi_local::LocalCloud;
//! let cloud = LocalCloud::builder().root(".mvi").seed(42).build().await?;
//! cloud.blob()?.create_bucket("photos").await?;
//! # Ok(()) }
//! ```
//!
//! Everything lives under one state root directory (default `.mvi/`) and survives a restart
//! of the process; `in_memory()` keeps it in memory instead, for tests. Each service keeps its
//! state in its own subdirectory named after the service (`blob/`, `kv/`, `crypto/`, `log/`,
//! `metric/`, `database/`).
#![deny(missing_docs)]

pub mod blob;
pub mod crypto;
pub mod database;
pub mod image;
pub mod kv;
pub mod log;
pub mod metric;
pub mod sim;
pub mod storage;
pub mod vm;
pub mod vpc;

use std::path::PathBuf;
use std::sync::Arc;

use mvi_core::{Clock, Cloud, Result, Service, SystemClock};

pub use sim::Sim;

/// The local backend.
#[derive(Debug)]
pub struct LocalCloud;

impl LocalCloud {
    /// A builder: state root `.mvi/` in the working directory, a random seed, the system clock.
    pub fn builder() -> LocalCloudBuilder {
        LocalCloudBuilder::default()
    }
}

/// Builds a local [`Cloud`].
#[derive(Debug, Default)]
pub struct LocalCloudBuilder {
    root: Option<PathBuf>,
    in_memory: bool,
    seed: Option<u64>,
    clock: Option<Arc<dyn Clock>>,
    principal: Option<String>,
}

impl LocalCloudBuilder {
    /// Keeps state under `root` (created if missing).
    pub fn root(mut self, root: impl Into<PathBuf>) -> Self {
        self.root = Some(root.into());
        self.in_memory = false;
        self
    }

    /// Keeps state in memory only: nothing touches the disk, everything is gone on drop.
    pub fn in_memory(mut self) -> Self {
        self.in_memory = true;
        self.root = None;
        self
    }

    /// Makes generated ids deterministic.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Reads time from `clock` (a [`mvi_core::ManualClock`] in tests).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The identity recorded in audit trails (default: `$USER@local`).
    pub fn principal(mut self, principal: impl Into<String>) -> Self {
        self.principal = Some(principal.into());
        self
    }

    /// Opens every service.
    pub async fn build(self) -> Result<Cloud> {
        let seed = self.seed.unwrap_or_else(rand::random);
        let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let principal = self.principal.unwrap_or_else(|| {
            format!(
                "{}@local",
                std::env::var("USER").unwrap_or_else(|_| "user".into())
            )
        });
        let sim = Arc::new(Sim::new(seed, clock, principal));
        let root = if self.in_memory {
            None
        } else {
            Some(self.root.unwrap_or_else(|| PathBuf::from(".mvi")))
        };
        let root = root.as_deref();
        let ctx = |service| storage::Ctx::new(root, service, sim.clone());
        let networks = Arc::new(vpc::LocalNetworks::open(ctx(Service::Vpc)?).await?);
        let vms = Arc::new(vm::LocalVms::open(ctx(Service::Vm)?, networks.clone()).await?);
        let crypto = Arc::new(crypto::LocalCrypto::open(ctx(Service::Crypto)?).await?);
        let databases = database::LocalDatabases::open(ctx(Service::Database)?, crypto.clone());
        let cloud = Cloud::new("local")
            .with_blob(Arc::new(blob::LocalBlob::open(ctx(Service::Blob)?).await?))
            .with_kv(Arc::new(kv::LocalKv::open(ctx(Service::Kv)?).await?))
            .with_crypto(crypto)
            .with_databases(Arc::new(databases.await?))
            .with_logs(Arc::new(log::LocalLogs::open(ctx(Service::Log)?).await?))
            .with_metrics(Arc::new(
                metric::LocalMetrics::open(ctx(Service::Metric)?).await?,
            ))
            .with_images(Arc::new(
                image::LocalImages::open(ctx(Service::Image)?).await?,
            ))
            .with_networks(networks)
            .with_vms(vms);
        Ok(cloud)
    }
}
