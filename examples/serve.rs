//! Opens a local cloud on a state root and serves its AWS-compatible endpoints until Ctrl-C,
//! printing the `export` lines that point the AWS CLI, boto3, Terraform's S3 backend or an
//! app of your own at it, with admin credentials.
//!
//! ```text
//! cargo run --example serve -- [STATE_ROOT | --memory] [--port PORT] [--once]
//! ```
//!
//! `--memory` keeps everything in memory (nothing written, gone at exit, as moto_server);
//! `--port` picks the loopback port (default: a free one); `AWS_ACCESS_KEY_ID` and
//! `AWS_SECRET_ACCESS_KEY`, when set, become the admin credentials (so a configured tool keeps
//! working across restarts), otherwise fresh ones are generated. `--once` prints the exports
//! and exits without serving.

use mvi::Result;
use mvi::local::LocalCloud;

mod common;

use common::failed;

/// A server's allocator: mimalloc answers the many small allocations of a request (headers,
/// JSON values, redb pages) faster than the system's, which here was 3-4 µs of a PutItem.
/// A program that embeds the cloud chooses its own.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<()> {
    let mut root = std::path::PathBuf::from(".mvi");
    let mut port = 0u16;
    let mut once = false;
    let mut memory = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => {
                let value = args.next().unwrap_or_default();
                port = value.parse().map_err(|e| {
                    failed(&format!("--port takes a port number, not {value:?}"), e)
                })?;
            }
            "--once" => once = true,
            "--memory" => memory = true,
            other if other.starts_with('-') => {
                return Err(failed(
                    "usage: serve [STATE_ROOT | --memory] [--port PORT] [--once]",
                    format!("unknown option {other}"),
                ));
            }
            other => root = other.into(),
        }
    }
    let mut builder = LocalCloud::builder().endpoint_port(port);
    builder = if memory {
        builder.in_memory()
    } else {
        builder.root(&root)
    };
    if let (Ok(id), Ok(secret)) = (
        std::env::var("AWS_ACCESS_KEY_ID"),
        std::env::var("AWS_SECRET_ACCESS_KEY"),
    ) {
        builder = builder.admin_credentials(id, secret);
    }
    let local = builder.build_local().await?;
    let endpoints = local.endpoints();
    print!("{}", endpoints.exports(endpoints.admin()));
    if once {
        return Ok(());
    }
    let state = if memory {
        "in memory".to_owned()
    } else {
        format!("state root {}", root.display())
    };
    eprintln!(
        "# serving S3, DynamoDB, KMS, CloudWatch Logs and CloudWatch on {} ({state}); Ctrl-C stops",
        endpoints.url()
    );
    tokio::signal::ctrl_c()
        .await
        .map_err(|e| failed("waiting for Ctrl-C", e))?;
    eprintln!("# stopped");
    Ok(())
}
