//! The AWS backend's own conformance cases with the AWS backend pointed at the local cloud's
//! AWS-compatible endpoints instead of AWS: the AWS SDK for Rust is the client, the local
//! simulator the server (S3 for Blob, DynamoDB for KV). Each test opens an in-memory local
//! cloud of its own.

use mvi_conformance::{Capabilities, Capability, Target};
use mvi_core::Cloud;
use mvi_local::LocalCloud;
use tokio::sync::OnceCell;

/// A local cloud, opened on the first use inside the case's runtime (its endpoints are
/// tasks of that runtime), and the AWS backend pointed at its endpoints.
struct LocalEndpoints(OnceCell<LocalCloud>);

impl LocalEndpoints {
    fn new() -> Self {
        LocalEndpoints(OnceCell::new())
    }
}

#[mvi_core::async_trait]
impl Target for LocalEndpoints {
    async fn open(&self) -> mvi_core::Result<Cloud> {
        let local = self
            .0
            .get_or_try_init(|| LocalCloud::builder().in_memory().build_local())
            .await?;
        let endpoints = local.endpoints();
        mvi_aws::AwsCloud::from_env()
            .region(endpoints.region())
            .endpoint_url(endpoints.url())
            .credentials(
                endpoints.admin().id.clone(),
                endpoints.admin().secret.expose(),
            )
            .build()
            .await
    }

    fn capabilities(&self) -> Capabilities {
        // State lives in the local cloud the target holds, so a new handle sees it; the local
        // store makes a conditional write atomic.
        [Capability::Reopen, Capability::AtomicConditionalWrites].into()
    }
}

#[cfg(feature = "s3")]
mvi_conformance::blob_cases!(LocalEndpoints::new());

#[cfg(feature = "dynamodb")]
mvi_conformance::kv_cases!(LocalEndpoints::new());
