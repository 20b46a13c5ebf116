//! Quickstart: a whole web app on the local simulator, declared as a stack.
//!
//! ```text
//! cargo run --example quickstart            # preview, up, use it, destroy
//! cargo run --example quickstart -- --keep  # ... and keep serving until Ctrl-C
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
use std::time::{Duration, Instant};

mod common;
use common::{failed, http_get, show_telemetry};

use mvi::container::{ContainerSpec, HealthCheck, ScheduleSpec};
use mvi::image::ImageConfig;
use mvi::kv::{KeyAttr, KeyType};
use mvi::lb::{Protocol, TargetGroupSpec};
use mvi::metric::{AlarmSpec, Comparison, MetricId, Statistic};
use mvi::stack::resources::*;
use mvi::stack::{Event, FileStore, Stack, StepOp};
use mvi::{Cloud, Result};

const ROOT: &str = ".mvi/quickstart";

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("quickstart failed: {e}");
        std::process::exit(1);
    }
}

fn fast_check() -> HealthCheck {
    HealthCheck {
        path: "/healthz".into(),
        interval: Duration::from_millis(200),
        timeout: Duration::from_millis(150),
        healthy_threshold: 1,
        unhealthy_threshold: 3,
    }
}

/// The program: every resource of the app, wired by outputs.
fn declare(cloud: &Cloud) -> Result<Stack> {
    let s = Stack::new(
        "quickstart",
        cloud.clone(),
        FileStore::new(Path::new(ROOT).join("stacks")),
    )?;

    // Network: a VPC, a public subnet per zone, a group for the load balancer and one for the app.
    let vpc = Vpc::new(&s, "vpc", VpcArgs::new("10.0.0.0/16"))?;
    let subnets = [
        ("a", "10.0.0.0/24", "local-1a"),
        ("b", "10.0.1.0/24", "local-1b"),
    ]
    .map(|(n, cidr, zone)| {
        Subnet::new(
            &s,
            &format!("subnet-{n}"),
            SubnetArgs::new(&vpc.id, cidr).zone(zone).public(),
        )
    });
    let [subnet_a, subnet_b] = subnets;
    let (subnet_a, subnet_b) = (subnet_a?, subnet_b?);
    let lb_sg = SecurityGroup::new(
        &s,
        "lb-sg",
        SecurityGroupArgs::new(&vpc.id, "quickstart-lb").ingress(80, 80, "0.0.0.0/0"),
    )?;
    let app_sg = SecurityGroup::new(
        &s,
        "app-sg",
        SecurityGroupArgs::new(&vpc.id, "quickstart-app")
            .ingress_from_group(1024, 65535, &lb_sg.id),
    )?;

    // Hosts: one VM per zone.
    for (n, subnet) in [("a", &subnet_a), ("b", &subnet_b)] {
        Vm::new(
            &s,
            &format!("vm-{n}"),
            VmArgs::new(
                format!("quickstart-{n}"),
                "t3.medium",
                "ami-local",
                &subnet.id,
            ),
        )?;
    }

    // Data: the database (and a snapshot of it), a key for the app's secrets, releases.
    let db = Database::new(&s, "db", DatabaseArgs::postgres("quickstart-db"))?;
    Snapshot::new(
        &s,
        "db-initial",
        SnapshotArgs::new(&db.name, "quickstart-db-initial"),
    )?;
    let key = Key::new(
        &s,
        "app-key",
        KeyArgs::new("alias/quickstart").description("quickstart app secrets"),
    )?;
    Bucket::new(
        &s,
        "artifacts",
        BucketArgs::new("quickstart-artifacts").force_destroy(),
    )?;
    Table::new(
        &s,
        "releases",
        TableArgs::new("quickstart-releases", KeyAttr::new("release", KeyType::Str)),
    )?;
    LogGroup::new(
        &s,
        "app-logs",
        LogGroupArgs::new("/quickstart/app").retention_days(7),
    )?;

    // The web service, as one component: image, target group, load balancer, replicas.
    let web = s.component("WebService", "web")?;
    let repo = Repository::new(
        &web,
        "repo",
        RepositoryArgs::new("quickstart/web").force_destroy(),
    )?;
    let app_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/webapp");
    let config = ImageConfig::new(["python3", "app.py"])
        .port(8080)
        .working_dir("/");
    let image = Image::new(
        &web,
        "image",
        ImageArgs::new(&repo.name, &app_dir, config)?.tag("v1"),
    )?;
    let mut tg = TargetGroupSpec::new("quickstart-web", Protocol::Http);
    tg.health_check = fast_check();
    tg.deregistration_delay = Duration::from_millis(200);
    let tg = TargetGroup::new(&web, "tg", TargetGroupArgs::new(tg).vpc(&vpc.id))?;
    let lb = LoadBalancer::new(
        &web,
        "lb",
        LoadBalancerArgs::new("quickstart")
            .listener(Protocol::Http, 0, [(&tg.name, 1)])
            .subnet(&subnet_a.id)
            .subnet(&subnet_b.id)
            .security_group(&lb_sg.id),
    )?;
    let app_secret = key.id.map(|_| "s3cr3t-api-token".to_string()).secret();
    ContainerService::new(
        &web,
        "service",
        ContainerServiceArgs::new("web", &image.reference, 2)
            .secret_env("DATABASE_URL", &db.url)
            .secret_env("APP_SECRET", app_secret)
            .secrets_key(&key.id)
            .health_check(fast_check())
            .target_group(&tg.name)
            .subnet(&subnet_a.id)
            .subnet(&subnet_b.id)
            .security_group(&app_sg.id),
    )?;

    // A nightly job from the same image, and an alarm on the load balancer's latency.
    let mut job = ContainerSpec::new("quickstart/web:v1");
    job.command = vec![
        "python3".into(),
        "-c".into(),
        "print('nightly report')".into(),
    ];
    ScheduledTask::new(
        &s,
        "nightly",
        ScheduledTaskArgs::new(ScheduleSpec::new("quickstart-nightly", "0 3 * * *", job)),
    )?;
    let latency = MetricId::new("mvi/LoadBalancer", "TargetResponseTime")
        .dimension("LoadBalancer", "quickstart");
    Alarm::new(
        &s,
        "slow",
        AlarmArgs::new(AlarmSpec::new(
            "quickstart-slow",
            latency,
            Statistic::Average,
            Comparison::GreaterThan,
            500.0,
            Duration::from_secs(60),
            3,
        )),
    )?;

    s.export("url", &lb.url)?;
    s.export("image", &image.reference)?;
    s.export("database_url", &db.url)?;
    Ok(s)
}

/// Prints each step as it starts and finishes: a live progress display.
fn show_progress(stack: &Stack) -> tokio::task::JoinHandle<()> {
    let mut events = stack.events();
    tokio::spawn(async move {
        while let Ok(e) = events.recv().await {
            match e {
                Event::Started { urn, op } => println!("    {op:<8} {} ...", short(&urn)),
                Event::Finished { urn, op, duration } => {
                    println!("    {op:<8} {} done in {duration:.0?}", short(&urn))
                }
                Event::Failed { urn, op, error } => {
                    println!("    {op:<8} {} FAILED: {error}", short(&urn))
                }
                Event::Skipped { urn, because } => println!(
                    "    skipped  {} (because {} failed)",
                    short(&urn),
                    short(&because)
                ),
            }
        }
    })
}

fn short(urn: &str) -> &str {
    urn.rsplit("::").next().unwrap_or(urn)
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
