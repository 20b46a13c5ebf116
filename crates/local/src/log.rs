//! The local Logs service (being written: not yet registered in `LocalCloud`).

use mvi_core::Result;

use crate::storage::Ctx;

/// The local Logs service.
#[derive(Debug)]
pub struct LocalLogs {
    _ctx: Ctx,
}

impl LocalLogs {
    /// Opens the service's state.
    pub async fn open(ctx: Ctx) -> Result<Self> {
        Ok(LocalLogs { _ctx: ctx })
    }
}
