//! The local Kv service (being written: not yet registered in `LocalCloud`).

use mvi_core::Result;

use crate::storage::Ctx;

/// The local Kv service.
#[derive(Debug)]
pub struct LocalKv {
    _ctx: Ctx,
}

impl LocalKv {
    /// Opens the service's state.
    pub async fn open(ctx: Ctx) -> Result<Self> {
        Ok(LocalKv { _ctx: ctx })
    }
}
