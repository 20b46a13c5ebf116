//! The conformance cases of every enabled service against AWS as moto_server simulates it.
//!
//! Each test starts its own moto_server on a free loopback port, in its own process group,
//! and kills the whole group when the test's target is dropped (moto_server is a wrapper
//! script: killing only it would leave the Python server holding the port). Needs
//! `moto_server` ≥ 5.2.5 on PATH (`scripts/setup.sh` installs it).

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mvi_aws::AwsCloud;
use mvi_conformance::{Capabilities, Capability, Target};
use mvi_core::Cloud;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// A moto_server of its own, and the AWS backend pointed at it.
struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    fn start() -> Self {
        for _ in 0..5 {
            let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let child = Command::new("moto_server")
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .expect("moto_server on PATH (run scripts/setup.sh)");
            let mut moto = Moto { child, port };
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
                    return moto;
                }
                if matches!(moto.child.try_wait(), Ok(Some(_))) {
                    break; // the port was taken after all: try another
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            drop(moto);
        }
        panic!("moto_server did not start");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let group = Pid::from_raw(self.child.id() as i32);
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

#[mvi_core::async_trait]
impl Target for Moto {
    async fn open(&self) -> mvi_core::Result<Cloud> {
        AwsCloud::from_env()
            .region("eu-west-1")
            .endpoint_url(format!("http://127.0.0.1:{}", self.port))
            .credentials("testing", "testing")
            .build()
            .await
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
