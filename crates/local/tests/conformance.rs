//! The conformance suite against the local backend, twice: state in memory and on disk.

use std::sync::Arc;

use mvi_conformance::{Capabilities, Capability, Target};
use mvi_core::{Cloud, ManualClock};
use mvi_local::LocalCloud;

/// A local cloud on a manual clock, in memory or in a temporary directory.
struct Local {
    dir: Option<tempfile::TempDir>,
    clock: ManualClock,
}

impl Local {
    fn memory() -> Self {
        Local {
            dir: None,
            clock: ManualClock::new(chrono::Utc::now()),
        }
    }

    fn disk() -> Self {
        Local {
            dir: Some(tempfile::tempdir().expect("temp dir")),
            clock: ManualClock::new(chrono::Utc::now()),
        }
    }
}

#[mvi_core::async_trait]
impl Target for Local {
    async fn open(&self) -> mvi_core::Result<Cloud> {
        let builder = LocalCloud::builder()
            .seed(7)
            .clock(Arc::new(self.clock.clone()));
        match &self.dir {
            Some(dir) => builder.root(dir.path()).build().await,
            None => builder.in_memory().build().await,
        }
    }

    fn clock(&self) -> Option<ManualClock> {
        Some(self.clock.clone())
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps: Capabilities = [
            Capability::ManualClock,
            Capability::CryptoAudit,
            Capability::KeyDeletion,
            Capability::KeyImport,
            Capability::AlarmEvaluation,
            Capability::ExactStatistics,
            Capability::LayerDownload,
            Capability::RealProcesses,
            Capability::VmPlacement,
            Capability::TargetPorts,
            Capability::RealTraffic,
            Capability::AtomicConditionalWrites,
            Capability::KeyStateEnforced,
            Capability::RealDatabase,
        ]
        .into();
        if self.dir.is_some() {
            caps.insert(Capability::Reopen);
        }
        caps
    }
}

impl Drop for Local {
    /// Stops any database server a failed case left running under the state root.
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            mvi_local::database::purge(dir.path());
        }
    }
}

mod memory {
    use super::*;
    mvi_conformance::conformance_tests!(Local::memory());
}

mod disk {
    use super::*;
    mvi_conformance::conformance_tests!(Local::disk());
}
