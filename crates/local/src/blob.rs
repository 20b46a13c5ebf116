//! The local Blob service (being written: not yet registered in `LocalCloud`).

use mvi_core::Result;

use crate::storage::Ctx;

/// The local Blob service.
#[derive(Debug)]
pub struct LocalBlob {
    _ctx: Ctx,
}

impl LocalBlob {
    /// Opens the service's state.
    pub async fn open(ctx: Ctx) -> Result<Self> {
        Ok(LocalBlob { _ctx: ctx })
    }
}
