//! The local Metrics service (being written: not yet registered in `LocalCloud`).

use mvi_core::Result;

use crate::storage::Ctx;

/// The local Metrics service.
#[derive(Debug)]
pub struct LocalMetrics {
    _ctx: Ctx,
}

impl LocalMetrics {
    /// Opens the service's state.
    pub async fn open(ctx: Ctx) -> Result<Self> {
        Ok(LocalMetrics { _ctx: ctx })
    }
}
