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
pub mod container;
pub mod crypto;
pub mod database;
pub mod endpoint;
pub mod fault;
#[cfg(test)]
mod fuzz;
pub mod image;
pub mod kv;
pub mod lb;
pub mod log;
pub mod metric;
pub mod sim;
pub mod storage;
pub mod vm;
pub mod vpc;

use std::path::PathBuf;
use std::sync::Arc;

use mvi_core::{Clock, Cloud, Result, Service, SystemClock};

pub use fault::{FaultRule, Faults, LocalHostFaults};
pub use sim::Sim;

/// The local backend: the [`Cloud`] handle, plus the simulator-only controls of the
/// services that have them (fault injection on VMs, process ids of containers, stopping
/// database servers). Get it from [`LocalCloudBuilder::build_local`].
#[derive(Debug, Clone)]
pub struct LocalCloud {
    cloud: Cloud,
    vms: Arc<vm::LocalVms>,
    containers: Arc<container::LocalContainers>,
    databases: Arc<database::LocalDatabases>,
    load_balancers: Arc<lb::LocalLoadBalancers>,
    endpoints: endpoint::Endpoints,
}

impl LocalCloud {
    /// A builder: state root `.mvi/` in the working directory, a random seed, the system clock.
    pub fn builder() -> LocalCloudBuilder {
        LocalCloudBuilder::default()
    }

    /// Every service, behind the traits.
    pub fn cloud(&self) -> &Cloud {
        &self.cloud
    }

    /// The VM service: `crash_instance`, `fail_zone`, `restore_zone`, `subscribe`.
    pub fn vms(&self) -> &Arc<vm::LocalVms> {
        &self.vms
    }

    /// The container service: process ids, grace period.
    pub fn containers(&self) -> &Arc<container::LocalContainers> {
        &self.containers
    }

    /// The database service: `shutdown` of its servers.
    pub fn databases(&self) -> &Arc<database::LocalDatabases> {
        &self.databases
    }

    /// The load balancer service.
    pub fn load_balancers(&self) -> &Arc<lb::LocalLoadBalancers> {
        &self.load_balancers
    }

    /// The AWS-compatible endpoints on loopback (S3 over Blob): their URL, the admin
    /// credentials and the access keys they accept. They stop with the last handle on the
    /// cloud.
    pub fn endpoints(&self) -> &endpoint::Endpoints {
        &self.endpoints
    }

    /// Host faults for fault experiments ([`mvi_core::experiment::Experiment::hosts`]):
    /// crashing VMs, failing zones, killing replicas.
    pub fn host_faults(&self) -> Arc<dyn mvi_core::experiment::HostFaults> {
        Arc::new(fault::LocalHostFaults {
            vms: self.vms.clone(),
            containers: self.containers.clone(),
        })
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
    faults: Option<Faults>,
    endpoint: endpoint::EndpointConfig,
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

    /// Wraps every service in `faults` (error and latency injection; see [`Faults`]).
    pub fn faults(mut self, faults: Faults) -> Self {
        self.faults = Some(faults);
        self
    }

    /// Serves the AWS-compatible endpoints on this loopback port (default: a free one).
    pub fn endpoint_port(mut self, port: u16) -> Self {
        self.endpoint.port = port;
        self
    }

    /// Accepts these admin credentials at the endpoints instead of generating fresh ones
    /// (for a tool configured once, such as Terraform's S3 backend).
    pub fn admin_credentials(mut self, id: impl Into<String>, secret: impl Into<String>) -> Self {
        self.endpoint.admin = Some(endpoint::AccessKey::new(id, secret));
        self
    }

    /// Opens every service and returns the [`Cloud`] handle.
    pub async fn build(self) -> Result<Cloud> {
        Ok(self.build_local().await?.cloud)
    }

    /// Opens every service and returns the local handle (the `Cloud` and the simulator's
    /// own controls, such as fault injection on VMs).
    pub async fn build_local(self) -> Result<LocalCloud> {
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
            // Absolute, since processes the simulator starts (containers, PostgreSQL) run in
            // other working directories and as other users.
            let root = self.root.unwrap_or_else(|| PathBuf::from(".mvi"));
            let op = mvi_core::Op::new(Service::Backend, "open");
            std::fs::create_dir_all(&root).map_err(|e| storage::io_error(op, &root, e))?;
            Some(std::fs::canonicalize(&root).map_err(|e| storage::io_error(op, &root, e))?)
        };
        let root = root.as_deref();
        if let Some(root) = root {
            sim.persist(root)?;
        }
        let ctx = |service| storage::Ctx::new(root, service, sim.clone());
        let networks = Arc::new(vpc::LocalNetworks::open(ctx(Service::Vpc)?).await?);
        let vms = Arc::new(vm::LocalVms::open(ctx(Service::Vm)?, networks.clone()).await?);
        let crypto: Arc<dyn mvi_core::crypto::Crypto> =
            Arc::new(crypto::LocalCrypto::open(ctx(Service::Crypto)?).await?);
        let logs: Arc<dyn mvi_core::log::Logs> =
            Arc::new(log::LocalLogs::open(ctx(Service::Log)?).await?);
        let metrics: Arc<dyn mvi_core::metric::Metrics> =
            Arc::new(metric::LocalMetrics::open(ctx(Service::Metric)?).await?);
        let images = Arc::new(image::LocalImages::open(ctx(Service::Image)?).await?);
        let lbs = Arc::new(
            lb::LocalLoadBalancers::open(
                ctx(Service::LoadBalancer)?,
                networks.clone(),
                metrics.clone(),
                logs.clone(),
            )
            .await?,
        );
        let databases = Arc::new(
            database::LocalDatabases::open(ctx(Service::Database)?, crypto.clone())
                .await?
                .with_telemetry(logs.clone(), metrics.clone()),
        );
        databases.attach(vms.watch_failed_zones());
        let cloud = Cloud::new("local")
            .with_blob(Arc::new(blob::LocalBlob::open(ctx(Service::Blob)?).await?))
            .with_kv(Arc::new(kv::LocalKv::open(ctx(Service::Kv)?).await?))
            .with_crypto(crypto.clone())
            .with_databases(databases.clone())
            .with_logs(logs.clone())
            .with_metrics(metrics.clone())
            .with_load_balancers(lbs.clone())
            .with_images(images.clone())
            .with_networks(networks)
            .with_vms(vms.clone());
        // The endpoints listen before the containers start, so every replica gets their
        // address; the services go behind them once the cloud is assembled.
        let endpoints = endpoint::Endpoints::start(self.endpoint).await?;
        let containers = container::LocalContainers::open(
            ctx(Service::Container)?,
            images,
            crypto,
            logs,
            metrics,
            vms.clone(),
            cloud.load_balancers().ok().cloned(),
            endpoints.clone(),
        )
        .await?;
        // Replicas behind a load balancer carry their service's security groups, which the
        // load balancer checks before forwarding to them.
        let lb_for_hook = Arc::downgrade(&lbs);
        containers.set_target_security_groups_hook(Arc::new(move |target, groups| {
            let lbs = lb_for_hook.upgrade();
            Box::pin(async move {
                match lbs {
                    Some(lbs) => lbs.set_target_security_groups(&target, groups),
                    None => Ok(()),
                }
            })
        }));
        let containers = Arc::new(containers);
        let cloud = cloud.with_containers(containers.clone());
        let cloud = match self.faults {
            Some(faults) => cloud.layer(Arc::new(faults)),
            None => cloud,
        };
        // The endpoints reach the services through the same (possibly fault-layered) handles
        // as the program.
        endpoints.attach(&cloud)?;
        Ok(LocalCloud {
            cloud,
            vms,
            containers,
            databases,
            load_balancers: lbs,
            endpoints,
        })
    }
}
