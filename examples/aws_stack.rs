//! The quickstart app on AWS: the very stack `examples/quickstart.rs` runs on the local
//! simulator (`examples/common/app_stack.rs`), pointed at moto or at an AWS account.
//!
//! ```text
//! # against a moto_server of its own (pip install 'moto[server]>=5.2.5'):
//! cargo run --example aws_stack --features aws -- --moto
//! # against any AWS-compatible endpoint:
//! cargo run --example aws_stack --features aws -- --endpoint http://127.0.0.1:5000
//! # against your account (the usual AWS_PROFILE / AWS_REGION / credentials chain):
//! AWS_PROFILE=dev cargo run --example aws_stack --features aws -- --region eu-west-1 --ami ami-0abc... --keep
//! ```
//!
//! It previews the plan, applies it with a live progress display (independent resources in
//! parallel), prints the outputs, the wall time and (on moto) the number of AWS API calls,
//! then destroys everything and checks that nothing is left, unless `--keep` is given.
//! State lives in `.mvi/aws_stack/<region>`; on moto (in memory) in a temporary folder.
//!
//! On a real account, note: the image is built from `examples/webapp` alone, with no base
//! layer, so Fargate has no `python3` to run it; give the service an image with a runtime
//! (a `python:3.12-slim` base) for real traffic. Everything else is created as declared.

use std::path::Path;
use std::time::Instant;

mod common;
use common::app_stack::{self, Site};
use common::{failed, show_progress};

use mvi::Result;
use mvi::aws::moto::MotoServer;
use mvi::stack::{FileStore, StepOp};

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("aws_stack failed: {e}");
        std::process::exit(1);
    }
}

/// Command-line settings.
struct Args {
    moto: bool,
    endpoint: Option<String>,
    region: String,
    ami: String,
    keep: bool,
}

fn args() -> Result<Args> {
    let mut a = Args {
        moto: false,
        endpoint: None,
        region: std::env::var("AWS_REGION").unwrap_or_else(|_| "eu-west-1".into()),
        ami: std::env::var("MVI_AMI").unwrap_or_else(|_| "ami-12c6146b".into()),
        keep: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .ok_or_else(|| failed("arguments", format!("{name} needs a value")))
        };
        match arg.as_str() {
            "--moto" => a.moto = true,
            "--endpoint" => a.endpoint = Some(value("--endpoint")?),
            "--region" => a.region = value("--region")?,
            "--ami" => a.ami = value("--ami")?,
            "--keep" => a.keep = true,
            other => {
                return Err(failed(
                    "arguments",
                    format!(
                        "unknown argument {other:?}; use --moto, --endpoint URL, --region R, \
                         --ami AMI, --keep"
                    ),
                ));
            }
        }
    }
    Ok(a)
}

async fn run() -> Result<()> {
    let args = args()?;
    // moto is in memory: it runs only as long as this program, and so does the state.
    let moto = if args.moto {
        let server = MotoServer::options()
            // moto's ECS never runs tasks; this makes its services report their replicas
            // running, so `up` sees the service steady as it would on AWS.
            .env("MOTO_ECS_SERVICE_RUNNING", "2")
            .record_requests()
            .start()?;
        println!("moto_server at {}", server.endpoint_url());
        Some(server)
    } else {
        None
    };
    let mut builder = mvi::aws::AwsCloud::from_env().region(&args.region);
    if let Some(url) = moto.as_ref().map(|m| m.endpoint_url()).or(args.endpoint) {
        builder = builder.endpoint_url(url).credentials("testing", "testing");
    }
    let cloud = builder.build().await?;

    let scratch = tempfile::tempdir().map_err(|e| failed("temporary folder", e))?;
    let state_dir = if moto.is_some() {
        scratch.path().to_path_buf()
    } else {
        Path::new(".mvi/aws_stack").join(&args.region)
    };
    let app = common::repo::package_path("examples/webapp");
    let site = Site::aws(&args.region, &args.ami, app);
    let declare = || app_stack::declare(&cloud, FileStore::new(&state_dir), &site);

    let before = app_stack::inventory(&cloud).await?;
    let stack = declare()?;
    let plan = stack.preview().await?;
    println!("{plan}");
    println!("applying:");
    let progress = show_progress(&stack);
    let calls_before = moto.as_ref().map(|m| m.request_count()).transpose()?;
    let started = Instant::now();
    let report = stack.up().await?;
    let took = started.elapsed();
    progress.abort();
    let calls = match (&moto, calls_before) {
        (Some(m), Some(n)) => format!(", {} AWS API calls", m.request_count()? - n),
        _ => String::new(),
    };
    println!(
        "up: {} resources in {took:.2?}{calls}",
        report.plan.count(StepOp::Create)
    );
    // `database_url` is a secret output: shown only as present.
    for name in ["url", "image"] {
        let value = report
            .outputs
            .get(name)
            .and_then(|v| v.as_str())
            .unwrap_or("-");
        println!("  {name} = {value}");
    }
    if report.outputs.contains_key("database_url") {
        println!("  database_url = [secret]");
    }
    if args.keep {
        println!("kept; run again without --keep to destroy (state in {state_dir:?})");
        return Ok(());
    }
    println!("destroying:");
    let destroyed = declare()?.destroy().await?;
    println!("{} resources deleted", destroyed.plan.count(StepOp::Delete));
    let after = app_stack::inventory(&cloud).await?;
    let left: Vec<_> = after.difference(&before).collect();
    if !left.is_empty() {
        return Err(failed("destroy", format!("left behind: {left:?}")));
    }
    println!("nothing left behind");
    Ok(())
}
