//! Quickstart: a whole web app on the local simulator, declared as a stack.
//!
//! ```text
//! cargo run --example quickstart                  # preview, up, use it, destroy
//! cargo run --example quickstart -- --keep        # ... and keep serving until Ctrl-C
//! cargo run --example quickstart -- preview       # or any `mvi::cli` command:
//! cargo run --example quickstart -- up --serve    #   up, serve until Ctrl-C
//! cargo run --example quickstart -- destroy --yes #   and destroy (docs/cli.md)
//! ```
//!
//! The stack uses every service: a VPC with subnets in two zones and security groups, two VMs,
//! an image built from `examples/webapp` in a repository, a PostgreSQL database (and a
//! snapshot of it), an encryption key for the app's secrets, a container service of two
//! replicas behind an HTTP load balancer (the database URL given as a secret), a scheduled
//! task, a log group, an alarm on the load balancer's latency, a bucket and a table for
//! releases. The program previews the plan, applies it with a live progress display, sends
//! requests through the load balancer, shows the app's logs and metrics, shows that a second
//! preview has nothing to do, and destroys the stack. State lives under `.mvi/quickstart`.

use std::path::Path;
use std::time::Instant;

mod common;
use common::app_stack::{self, Site};
use common::{failed, http_get, show_progress, show_telemetry};

use mvi::stack::{FileStore, Stack, StepOp};
use mvi::{Cloud, Result};

const ROOT: &str = ".mvi/quickstart";

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a != "--keep") {
        // A command: the same stack as a command-line program, state under `ROOT`.
        let app = common::repo::package_path("examples/webapp");
        return mvi::cli::Program::new("quickstart")
            .root(Path::new(ROOT).join("cloud"))
            .state(Path::new(ROOT).join("stacks").display().to_string())
            .seed(42)
            .main(|s| app_stack::declare_into(s, &Site::local(&app)))
            .await;
    }
    if let Err(e) = run().await {
        eprintln!("quickstart failed: {e}");
        return std::process::ExitCode::FAILURE;
    }
    std::process::ExitCode::SUCCESS
}

/// The app's stack on the local simulator, with its state under `ROOT`.
fn declare(cloud: &Cloud) -> Result<Stack> {
    let store = FileStore::new(Path::new(ROOT).join("stacks"));
    let app = common::repo::package_path("examples/webapp");
    app_stack::declare(cloud, store, &Site::local(app))
}

/// Starts from an empty state root: a previous run that was killed may have left processes
/// and database servers behind; opening its root finds and stops them first.
async fn fresh_root(root: &Path) -> Result<()> {
    if root.exists() {
        drop(
            mvi::local::LocalCloud::builder()
                .root(root.join("cloud"))
                .build()
                .await?,
        );
        mvi::local::database::purge(&root.join("cloud"));
        std::fs::remove_dir_all(root).map_err(|e| failed("cannot clear the state root", e))?;
    }
    Ok(())
}

async fn run() -> Result<()> {
    let keep = std::env::args().any(|a| a == "--keep");
    let started = Instant::now();
    fresh_root(Path::new(ROOT)).await?;
    let cloud = mvi::local::LocalCloud::builder()
        .root(Path::new(ROOT).join("cloud"))
        .seed(42)
        .build()
        .await?;
    let stack = declare(&cloud)?;

    let plan = stack.preview().await?;
    println!("{plan}");
    println!("applying:");
    let progress = show_progress(&stack);
    let applied = stack.up().await;
    let outcome = match applied {
        Ok(report) => use_app(&cloud, &report.outputs, started, keep).await,
        Err(e) => Err(e),
    };
    // A second run of the program would change nothing.
    if outcome.is_ok() {
        let again = declare(&cloud)?.preview().await?;
        println!(
            "second preview: {}",
            if again.is_empty() {
                "no changes"
            } else {
                "changes!"
            }
        );
    }
    println!("destroying:");
    let destroyed = declare(&cloud)?.destroy().await;
    progress.abort();
    println!("[{:>6.0?}] everything shut down", started.elapsed());
    outcome.and(destroyed.map(|r| {
        println!("{} resources deleted", r.plan.count(StepOp::Delete));
    }))
}

async fn use_app(
    cloud: &Cloud,
    outputs: &mvi::stack::Props,
    started: Instant,
    keep: bool,
) -> Result<()> {
    let url = outputs
        .get("url")
        .and_then(|v| v.as_str())
        .ok_or_else(|| failed("stack", "no url output"))?;
    println!("[{:>6.0?}] up: the app is at {url}", started.elapsed());
    let (status, body) = http_get(url, "/").await?;
    println!(
        "[{:>6.0?}] first request through the load balancer: {status} {body}",
        started.elapsed()
    );
    for path in ["/", "/", "/db", "/secret"] {
        let (status, body) = http_get(url, path).await?;
        println!("  GET {path:<8} -> {status} {body}");
    }
    show_telemetry(cloud, "GET /", 4).await?;
    if keep {
        println!("serving {url} until Ctrl-C ...");
        tokio::signal::ctrl_c()
            .await
            .map_err(|e| failed("waiting for Ctrl-C", e))?;
    }
    Ok(())
}
