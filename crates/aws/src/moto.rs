//! A `moto_server` of the program's own on a free loopback port: an AWS API endpoint for
//! tests and examples, no account needed.
//!
//! ```no_run
//! # async fn demo() -> mvi_core::Result<()> {
//! let moto = mvi_aws::moto::MotoServer::start()?;
//! let cloud = moto.cloud("eu-west-1").build().await?;
//! // ... use `cloud`; the server stops when `moto` is dropped.
//! # Ok(()) }
//! ```
//!
//! moto_server (`pip install 'moto[server]>=5.2.5'`) is a wrapper script around a Python
//! server, so it is started in a process group of its own and the whole group is killed on
//! drop; killing only the script would leave the server holding the port.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mvi_core::{Error, ErrorKind, Op, Result, Service};

/// How long moto_server may take to answer on its port (it takes ≈ 0.7 s).
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running moto_server; stopped (with its children) when dropped.
#[derive(Debug)]
pub struct MotoServer {
    child: Child,
    port: u16,
    /// Where moto records every request, when started with [`MotoServer::recording`].
    recording: Option<tempfile::TempPath>,
}

/// Options of a moto_server to start.
#[derive(Debug, Default)]
pub struct MotoOptions {
    env: Vec<(String, String)>,
    record: bool,
}

impl MotoOptions {
    /// Sets an environment variable of the server (moto reads several, such as
    /// `MOTO_ECS_SERVICE_RUNNING`).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Records every request the server receives, so [`MotoServer::request_count`] can tell
    /// how many AWS API calls a program made.
    pub fn record_requests(mut self) -> Self {
        self.record = true;
        self
    }

    /// Starts the server.
    pub fn start(self) -> Result<MotoServer> {
        let op = Op::new(Service::Backend, "start_moto");
        let mut last = String::from("no attempt");
        // A free port can be taken between our probe and moto's bind: try a few.
        for _ in 0..5 {
            let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .and_then(|l| l.local_addr())
                .map_err(|e| op.err(ErrorKind::Unavailable, "127.0.0.1", e.to_string()))?
                .port();
            let recording = if self.record {
                let file = tempfile::NamedTempFile::new()
                    .map_err(|e| op.err(ErrorKind::Internal, "recording file", e.to_string()))?;
                Some(file.into_temp_path())
            } else {
                None
            };
            let mut cmd = Command::new("moto_server");
            cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0);
            for (k, v) in &self.env {
                cmd.env(k, v);
            }
            if let Some(path) = &recording {
                cmd.env("MOTO_ENABLE_RECORDING", "True")
                    .env("MOTO_RECORDER_FILEPATH", path.as_os_str());
            }
            let child = cmd.spawn().map_err(|e| {
                op.err(
                    ErrorKind::Unavailable,
                    "moto_server",
                    format!(
                        "cannot run moto_server ({e}); install it with \
                         `pip install 'moto[server]>=5.2.5'` (scripts/setup.sh does)"
                    ),
                )
            })?;
            let mut moto = MotoServer {
                child,
                port,
                recording,
            };
            let deadline = Instant::now() + START_TIMEOUT;
            while Instant::now() < deadline {
                if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
                    return Ok(moto);
                }
                if let Ok(Some(status)) = moto.child.try_wait() {
                    last = format!("moto_server exited ({status}) on port {port}");
                    break; // the port was taken after all: try another
                }
                std::thread::sleep(Duration::from_millis(25));
            }
            if Instant::now() >= deadline {
                last = format!("moto_server did not answer within {START_TIMEOUT:?}");
            }
        }
        Err(Error::new(
            ErrorKind::Unavailable,
            Service::Backend,
            "start_moto",
            last,
        ))
    }
}

impl MotoServer {
    /// Starts a plain moto_server.
    pub fn start() -> Result<MotoServer> {
        MotoOptions::default().start()
    }

    /// Options for a server with settings.
    pub fn options() -> MotoOptions {
        MotoOptions::default()
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A builder for an AWS [`mvi_core::Cloud`] pointed at this server, with the dummy
    /// credentials moto accepts.
    pub fn cloud(&self, region: &str) -> crate::AwsCloudBuilder {
        crate::AwsCloud::from_env()
            .region(region)
            .endpoint_url(self.endpoint_url())
            .credentials("testing", "testing")
    }

    /// The AWS SDK configuration of this server, for a test's own SDK clients (to look at
    /// what the backend made, with the dummy credentials moto accepts).
    #[cfg(feature = "sdk")]
    pub async fn sdk_config(&self, region: &str) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(region.to_owned()))
            .endpoint_url(self.endpoint_url())
            .credentials_provider(aws_credential_types::Credentials::new(
                "testing", "testing", None, None, "moto",
            ))
            .load()
            .await
    }

    /// How many requests the server has received, when started with
    /// [`MotoOptions::record_requests`] (moto writes one line per request).
    pub fn request_count(&self) -> Result<u64> {
        let Some(path) = &self.recording else {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                Service::Backend,
                "request_count",
                "this moto_server was not started with record_requests()",
            ));
        };
        let text = std::fs::read(PathBuf::from(path.as_os_str())).unwrap_or_default();
        Ok(text.iter().filter(|b| **b == b'\n').count() as u64)
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let group = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}
