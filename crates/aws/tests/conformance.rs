//! The conformance cases of every enabled service against AWS as moto_server simulates it.
//!
//! Each test starts its own moto_server on a free loopback port, in its own process group,
//! and kills the whole group when the test's target is dropped (moto_server is a wrapper
//! script: killing only it would leave the Python server holding the port). Needs
//! `moto_server` ≥ 5.2.5 on PATH (`scripts/setup.sh` installs it).

use mvi_aws::moto::MotoServer;
use mvi_conformance::{Capabilities, Capability, Target};
use mvi_core::Cloud;

/// A moto_server of its own, and the AWS backend pointed at it.
struct Moto(MotoServer);

impl Moto {
    fn start() -> Self {
        Moto(MotoServer::start().expect("moto_server starts (run scripts/setup.sh)"))
    }
}

#[mvi_core::async_trait]
impl Target for Moto {
    async fn open(&self) -> mvi_core::Result<Cloud> {
        self.0.cloud("eu-west-1").build().await
    }

    fn capabilities(&self) -> Capabilities {
        // State lives in the server, so a new handle sees it. No manual clock: the server
        // keeps its own time.
        [Capability::Reopen].into()
    }
}

// One invocation per service, each behind its cargo feature:
// `cargo test -p mvi-aws --no-default-features --features kms --test conformance`.
#[cfg(feature = "s3")]
mvi_conformance::blob_cases!(Moto::start());
#[cfg(feature = "dynamodb")]
mvi_conformance::kv_cases!(Moto::start());
#[cfg(feature = "kms")]
mvi_conformance::crypto_cases!(Moto::start());
#[cfg(feature = "logs")]
mvi_conformance::log_cases!(Moto::start());
#[cfg(feature = "cloudwatch")]
mvi_conformance::metric_cases!(Moto::start());
#[cfg(feature = "ecr")]
mvi_conformance::image_cases!(Moto::start());
#[cfg(feature = "ecs")]
mvi_conformance::container_cases!(Moto::start());
#[cfg(feature = "elbv2")]
mvi_conformance::lb_cases!(Moto::start());
#[cfg(feature = "rds")]
mvi_conformance::database_cases!(Moto::start());
#[cfg(feature = "ec2")]
mvi_conformance::vm_cases!(Moto::start());
#[cfg(feature = "ec2")]
mvi_conformance::vpc_cases!(Moto::start());
