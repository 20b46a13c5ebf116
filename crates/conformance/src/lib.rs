//! mvi-conformance: the contract tests every mvi backend must pass.
//!
//! Every behaviour of a service contract is a public async case function in the service's
//! module (`blob::put_get_roundtrip`, `kv::conditional_put_conflict`, ...). A backend runs
//! them all with one test file:
//!
//! ```ignore
//! struct MyTarget { /* ... */ }
//! impl mvi_conformance::Target for MyTarget { /* open, reopen, capabilities */ }
//! mvi_conformance::conformance_tests!(MyTarget::new());
//! ```
//!
//! which expands to one `#[test]` per case, named after its service first
//! (`blob_put_get_roundtrip`), so the test list shows what each backend honours. A case that
//! needs something the backend cannot give (a restart, a manual clock, an audit trail) is
//! skipped by a declared [`Capability`], printing why, never deleted.
//!
//! Resources are named with a per-run random prefix ([`Ctx::name`]) so runs never collide on
//! a shared endpoint, and each case deletes what it made.
#![allow(clippy::unwrap_used)]

pub mod blob;
pub mod container;
pub mod crypto;
pub mod database;
pub mod image;
pub mod kv;
pub mod lb;
pub mod log;
pub mod metric;
pub mod vm;
pub mod vpc;

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use mvi_core::{Cloud, ManualClock};

pub use mvi_core;

/// What a case may need beyond the plain contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Capability {
    /// State outlives the handle: the target can reopen it, as a restarted program would.
    Reopen,
    /// The target's clock is a [`ManualClock`] the case can move (alarms, retention).
    ManualClock,
    /// The Crypto service keeps a queryable audit trail.
    CryptoAudit,
    /// Key deletion actually happens once its waiting period has passed.
    KeyDeletion,
    /// The Crypto service imports caller-supplied key material (KMS's
    /// `GetParametersForImport` and `ImportKeyMaterial`, which moto 5.2.5 does not implement).
    KeyImport,
    /// Alarms are evaluated by the backend as data arrives and time passes.
    AlarmEvaluation,
    /// Metric statistics are computed as CloudWatch computes them: percentiles, and a series
    /// chosen by its exact set of dimensions. moto 5.2.5's CloudWatch computes no percentiles
    /// (GetMetricData answers HTTP 500, GetMetricStatistics ignores them), answers a query
    /// without dimensions with the points of every dimension set, and has no alarm history.
    ExactStatistics,
    /// The image registry serves the bytes of pushed blobs back. moto 5.2.5's ECR keeps only
    /// each layer's digest and size and does not implement GetDownloadUrlForLayer.
    LayerDownload,
    /// Containers are real processes on this machine: their output, exit codes, health and
    /// restarts can be observed within seconds.
    RealProcesses,
    /// Containers are placed on the cloud's VMs: a replica names its VM, the VMs' CPU and
    /// memory bound what fits, and a stopped VM's replicas move (the local simulator). ECS on
    /// Fargate places tasks on capacity of its own, which no VM of the cloud hosts or limits.
    VmPlacement,
    /// Targets are told apart by address and port, so one host can serve as several targets
    /// (ELBv2 does; moto 5.2.5 keeps one target per IP address and drops the port).
    TargetPorts,
    /// Listeners carry real traffic to targets on this machine and health checks really run
    /// (the local simulator; not an AWS endpoint the test's loopback backends cannot reach).
    RealTraffic,
    /// Each database instance is a real server: connections work, and a snapshot restore
    /// carries the data (RDS on moto has no server behind its endpoints).
    RealDatabase,
    /// A conditional write is atomic under concurrency: of racing create-only puts exactly
    /// one wins (S3 guarantees it; moto 5.2.5 checks `If-None-Match` and then stores, in two
    /// steps without a lock, so racing writers can both succeed).
    AtomicConditionalWrites,
    /// The Crypto service refuses a disabled key, or one pending deletion, on encrypt, decrypt
    /// and generate_data_key (KMS does; moto 5.2.5 goes on using it).
    KeyStateEnforced,
}

/// The capabilities a target declares.
pub type Capabilities = BTreeSet<Capability>;

/// A backend under test.
#[mvi_core::async_trait]
pub trait Target: Send + Sync + 'static {
    /// Opens the backend's services for one case.
    async fn open(&self) -> mvi_core::Result<Cloud>;

    /// Drops `cloud` and opens the same state again, as a restarted program would. Only
    /// called when the target declares [`Capability::Reopen`].
    async fn reopen(&self, cloud: Cloud) -> mvi_core::Result<Cloud> {
        drop(cloud);
        self.open().await
    }

    /// The manual clock the target's services read, with [`Capability::ManualClock`].
    fn clock(&self) -> Option<ManualClock> {
        None
    }

    /// What the target can honour, with the reason for each missing capability.
    fn capabilities(&self) -> Capabilities;
}

/// A case's failure.
pub type Failure = Box<dyn std::error::Error + Send + Sync>;
/// What a case returns.
pub type Outcome = Result<(), Failure>;

/// What a case gets: the backend's services, a unique name prefix, and the target.
pub struct Ctx {
    cloud: Cloud,
    prefix: String,
    target: Arc<dyn Target>,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Ctx {
    /// The backend's services.
    pub fn cloud(&self) -> &Cloud {
        &self.cloud
    }

    /// A resource name unique to this run: `<prefix>-<base>`, lower-case, so it suits S3
    /// bucket rules as well as table, group and alias names.
    pub fn name(&self, base: &str) -> String {
        format!("{}-{base}", self.prefix)
    }

    /// Restarts the backend on the same state (the case must require [`Capability::Reopen`]).
    pub async fn reopen(&mut self) -> Outcome {
        let old = std::mem::take(&mut self.cloud);
        self.cloud = self.target.reopen(old).await?;
        Ok(())
    }

    /// The manual clock (the case must require [`Capability::ManualClock`]).
    pub fn clock(&self) -> ManualClock {
        self.target
            .clock()
            .expect("the case requires Capability::ManualClock")
    }

    /// Now, as the backend sees it: the manual clock if there is one, else the system clock.
    pub fn now(&self) -> mvi_core::Timestamp {
        use mvi_core::Clock;
        match self.target.clock() {
            Some(c) => c.now(),
            None => mvi_core::SystemClock.now(),
        }
    }
}

/// A boxed case future.
pub type CaseFuture<'a> = Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>;

/// Runs one case: opens the target, checks capabilities, runs the case on a fresh runtime,
/// and panics (failing the test) with the case's error.
pub fn run_case<T: Target>(
    target: T,
    name: &str,
    requires: &[Capability],
    case: for<'a> fn(&'a mut Ctx) -> CaseFuture<'a>,
) {
    let caps = target.capabilities();
    if let Some(missing) = requires.iter().find(|c| !caps.contains(c)) {
        println!("SKIPPED {name}: the target lacks {missing:?}");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let target: Arc<dyn Target> = Arc::new(target);
        let cloud = match target.open().await {
            Ok(c) => c,
            Err(e) => panic!("{name}: cannot open the target: {e}"),
        };
        let prefix = format!("t{:08x}", rand::random::<u32>());
        let mut ctx = Ctx {
            cloud,
            prefix,
            target,
        };
        if let Err(e) = case(&mut ctx).await {
            panic!("{name} failed: {e}");
        }
    });
}

/// Fails the case with a message unless `cond` holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+).into());
        }
    };
}

/// Fails the case unless `$result` is an error of kind `$kind`; evaluates to the error.
#[macro_export]
macro_rules! expect_err {
    ($result:expr, $kind:ident) => {
        match $result {
            Ok(v) => {
                return Err(format!(
                    "expected {:?}, got Ok({:?}) from `{}`",
                    $crate::mvi_core::ErrorKind::$kind,
                    v,
                    stringify!($result)
                )
                .into())
            }
            Err(e) if e.kind() == $crate::mvi_core::ErrorKind::$kind => e,
            Err(e) => {
                return Err(format!(
                    "expected {:?}, got {e} from `{}`",
                    $crate::mvi_core::ErrorKind::$kind,
                    stringify!($result)
                )
                .into())
            }
        }
    };
}

/// Expands to one `#[test]` per case: `$name` runs `$module::$case` with `$target`, unless
/// the target lacks one of the listed capabilities.
#[doc(hidden)]
#[macro_export]
macro_rules! __cases {
    ($target:expr; $($name:ident => $path:path $([$($cap:ident),*])?;)*) => {$(
        #[test]
        fn $name() {
            $crate::run_case(
                $target,
                stringify!($name),
                &[$($($crate::Capability::$cap),*)?],
                |ctx| Box::pin($path(ctx)),
            );
        }
    )*};
}

/// Every case of every service, as tests against the target built by `$target` (an
/// expression evaluated afresh for each test).
#[macro_export]
macro_rules! conformance_tests {
    ($target:expr) => {
        $crate::blob_cases!($target);
        $crate::kv_cases!($target);
        $crate::crypto_cases!($target);
        $crate::log_cases!($target);
        $crate::metric_cases!($target);
        $crate::vpc_cases!($target);
        $crate::vm_cases!($target);
        $crate::image_cases!($target);
        $crate::container_cases!($target);
        $crate::lb_cases!($target);
        $crate::database_cases!($target);
    };
}
