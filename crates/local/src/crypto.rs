//! The local Crypto service (being written: not yet registered in `LocalCloud`).

use mvi_core::Result;

use crate::storage::Ctx;

/// The local Crypto service.
#[derive(Debug)]
pub struct LocalCrypto {
    _ctx: Ctx,
}

impl LocalCrypto {
    /// Opens the service's state.
    pub async fn open(ctx: Ctx) -> Result<Self> {
        Ok(LocalCrypto { _ctx: ctx })
    }
}
