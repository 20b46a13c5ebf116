//! The quickstart's app as an imperative infra script: the same services called one by one.
//!
//! ```text
//! cargo run --example app_script            # bring it up, use it, tear it down
//! cargo run --example app_script -- --keep  # ... and keep serving until Ctrl-C
//! ```
//!
//! It brings up a VPC with subnets in two zones, two VMs, an image built from
//! `examples/webapp`, a PostgreSQL database, a container service of two replicas (the
//! database URL and an app secret given as encrypted secrets) behind an HTTP load balancer,
//! records the release in KV and Blob, then sends requests through the load balancer, shows
//! the app's logs and the load balancer's metrics, and shuts everything down cleanly.
//! State lives under `.mvi/quickstart` (started afresh on every run).

use std::path::Path;
use std::time::{Duration, Instant};

mod common;
use common::{failed, http_get, show_telemetry};

use mvi::container::{ContainerSpec, HealthCheck, InstanceState, SecretRef, ServiceSpec};
use mvi::crypto::{CreateKey, EncryptionContext};
use mvi::database::DatabaseSpec;
use mvi::image::{ImageConfig, build_from_dir};
use mvi::kv::{KeyAttr, KeyType, TableSpec};
use mvi::lb::{ListenerSpec, LoadBalancerSpec, Protocol, TargetGroupSpec, TargetHealth};
use mvi::prelude::*;
use mvi::vm::VmSpec;
use mvi::vpc::{Direction, Peer, Rule};
use mvi::{ErrorKind, Result, item};

const ROOT: &str = ".mvi/app_script";

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("quickstart failed: {e}");
        std::process::exit(1);
    }
}

/// Starts from an empty state root: a previous run that was killed may have left processes
/// and database servers behind; opening its root finds and stops them first.
async fn fresh_root(root: &Path) -> Result<()> {
    if root.exists() {
        drop(mvi::local::LocalCloud::builder().root(root).build().await?);
        mvi::local::database::purge(root);
        std::fs::remove_dir_all(root).map_err(|e| failed("cannot clear the state root", e))?;
    }
    Ok(())
}

async fn run() -> Result<()> {
    let started = Instant::now();
    let root = Path::new(ROOT);
    fresh_root(root).await?;
    let cloud = mvi::local::LocalCloud::builder()
        .root(root)
        .seed(42)
        .build()
        .await?;
    let outcome = app(&cloud, started).await;
    // Shut down cleanly whether or not the app came up: nothing is left running.
    let teardown = teardown(&cloud).await;
    println!("[{:>6.0?}] everything shut down", started.elapsed());
    outcome.and(teardown)
}

async fn app(cloud: &mvi::Cloud, started: Instant) -> Result<()> {
    let keep = std::env::args().any(|a| a == "--keep");
    let step = |what: &str| println!("[{:>6.0?}] {what}", started.elapsed());

    // Network: a VPC, a subnet per zone, a group for the load balancer and one for the app.
    let net = cloud.networks()?;
    let vpc = net.create_vpc("10.0.0.0/16", Default::default()).await?;
    let zones = net.list_zones().await?;
    let mut subnets = Vec::new();
    for (i, zone) in zones.iter().take(2).enumerate() {
        subnets.push(
            net.create_subnet(&vpc.id, &format!("10.0.{i}.0/24"), zone, true)
                .await?,
        );
    }
    let lb_sg = net.create_security_group(&vpc.id, "quickstart-lb").await?;
    let app_sg = net.create_security_group(&vpc.id, "quickstart-app").await?;
    net.authorize(
        &app_sg.id,
        Rule {
            direction: Direction::Ingress,
            from_port: 1024,
            to_port: 65535,
            peer: Peer::Group(lb_sg.id.clone()),
        },
    )
    .await?;
    step(&format!(
        "network: {} with subnets in {} and {}",
        vpc.cidr, subnets[0].zone, subnets[1].zone
    ));

    // Two VMs, one per zone: the replicas are placed on them.
    let vms = cloud.vms()?;
    for (i, s) in subnets.iter().enumerate() {
        let vm = vms
            .run_instance(VmSpec::new(
                format!("quickstart-{i}"),
                "t3.medium",
                "ami-local",
                &s.id,
            ))
            .await?;
        step(&format!(
            "vm: {} ({}, {} vCPU) in {}",
            vm.id, vm.spec.size, vm.vcpus, vm.zone
        ));
    }

    // The app's image, built from examples/webapp.
    let images = cloud.images()?;
    images.create_repository("quickstart/web").await?;
    let app_dir = common::repo::package_path("examples/webapp");
    let config = ImageConfig::new(["python3", "app.py"])
        .port(8080)
        .working_dir("/");
    let digest = build_from_dir(
        images.as_ref(),
        "quickstart/web",
        &app_dir,
        &config,
        Some("v1"),
    )
    .await?;
    step(&format!("image: quickstart/web:v1 = {}", &digest[..19]));

    // The database, and the secrets the app gets: encrypted, decrypted only into its env.
    let db = cloud
        .databases()?
        .create_database(DatabaseSpec::postgres("quickstart-db"))
        .await?;
    let creds = cloud.databases()?.credentials("quickstart-db").await?;
    step(&format!(
        "database: {} at {} (password kept encrypted)",
        db.spec.name, db.endpoint
    ));
    let crypto = cloud.crypto()?;
    let key = crypto
        .create_key(CreateKey::new("quickstart app secrets").alias("alias/quickstart"))
        .await?;
    let none = EncryptionContext::new();
    let secrets = vec![
        SecretRef {
            env: "DATABASE_URL".into(),
            ciphertext: crypto
                .encrypt(&key.id, creds.url().expose().as_bytes(), &none)
                .await?,
        },
        SecretRef {
            env: "APP_SECRET".into(),
            ciphertext: crypto.encrypt(&key.id, b"s3cr3t-api-token", &none).await?,
        },
    ];

    // The load balancer and its target group.
    let lbs = cloud.load_balancers()?;
    let mut tg = TargetGroupSpec::new("quickstart-web", Protocol::Http);
    tg.health_check = HealthCheck {
        path: "/healthz".into(),
        interval: Duration::from_millis(200),
        timeout: Duration::from_millis(150),
        healthy_threshold: 1,
        unhealthy_threshold: 2,
    };
    lbs.create_target_group(tg).await?;
    let listener = ListenerSpec {
        protocol: Protocol::Http,
        port: 0,
        forward: vec![("quickstart-web".into(), 1)],
    };
    let mut lb_spec = LoadBalancerSpec::new("quickstart", vec![listener]);
    lb_spec.security_groups = vec![lb_sg.id.clone()];
    lb_spec.subnets = subnets.iter().map(|s| s.id.clone()).collect();
    let lb = lbs.create_load_balancer(lb_spec).await?;
    let url = lb
        .urls
        .first()
        .cloned()
        .ok_or_else(|| failed("load balancer", "no listener URL"))?;
    step(&format!("load balancer: {url}"));

    // Two replicas of the app behind it.
    let mut container = ContainerSpec::new("quickstart/web:v1");
    container.secrets = secrets;
    container.health_check = Some(HealthCheck {
        path: "/healthz".into(),
        interval: Duration::from_millis(200),
        timeout: Duration::from_millis(150),
        healthy_threshold: 1,
        unhealthy_threshold: 3,
    });
    let mut service = ServiceSpec::new("web", container, 2);
    service.target_group = Some("quickstart-web".into());
    service.security_groups = vec![app_sg.id.clone()];
    service.subnets = subnets.iter().map(|s| s.id.clone()).collect();
    cloud.containers()?.create_service(service).await?;
    wait_until("two healthy targets", Duration::from_secs(30), || async {
        let health = lbs.target_health("quickstart-web").await?;
        Ok(health
            .iter()
            .filter(|t| t.health == TargetHealth::Healthy)
            .count()
            == 2)
    })
    .await?;
    let (status, body) = http_get(&url, "/").await?;
    step(&format!(
        "first request through the load balancer: {status} {body}"
    ));
    let cold_start = started.elapsed();

    // Requests through the load balancer reach both replicas, the database and the secret.
    for path in ["/", "/", "/db", "/secret"] {
        let (status, body) = http_get(&url, path).await?;
        println!("  GET {path:<8} -> {status} {body}");
    }
    for r in cloud.containers()?.describe_service("web").await?.instances {
        let state = if r.state == InstanceState::Healthy {
            "healthy"
        } else {
            "not healthy"
        };
        println!(
            "  replica {} on {} at {} is {state}",
            r.id,
            r.vm.unwrap_or_default(),
            r.address.unwrap_or_default()
        );
    }

    // The release, recorded in KV and Blob.
    let kv = cloud.kv()?;
    kv.create_table(TableSpec::new(
        "quickstart-releases",
        KeyAttr::new("release", KeyType::Str),
    ))
    .await?;
    kv.put(
        "quickstart-releases",
        item! { "release" => "v1", "image" => digest.as_str(), "url" => url.as_str() },
    )
    .await?;
    let blob = cloud.blob()?;
    blob.create_bucket("quickstart-artifacts").await?;
    blob.put(
        "quickstart-artifacts",
        "releases/v1.json",
        format!("{{\"image\":\"{digest}\",\"url\":\"{url}\"}}"),
    )
    .await?;
    step("release v1 recorded in KV (quickstart-releases) and Blob (quickstart-artifacts)");

    // Logs and metrics flowed meanwhile.
    show_telemetry(cloud, "GET", 5).await?;
    println!("cold start to first request through the load balancer: {cold_start:.2?}");

    if keep {
        println!("serving {url} until Ctrl-C ...");
        tokio::signal::ctrl_c()
            .await
            .map_err(|e| failed("waiting for Ctrl-C", e))?;
    }

    Ok(())
}

/// Deletes what the quickstart made, whatever got made; what is already gone is fine.
async fn teardown(cloud: &mvi::Cloud) -> Result<()> {
    let gone = |r: Result<()>| match r {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        other => other,
    };
    gone(cloud.containers()?.delete_service("web").await)?;
    gone(
        cloud
            .load_balancers()?
            .delete_load_balancer("quickstart")
            .await,
    )?;
    gone(
        cloud
            .load_balancers()?
            .delete_target_group("quickstart-web")
            .await,
    )?;
    gone(cloud.databases()?.delete_database("quickstart-db").await)?;
    let vms = cloud.vms()?;
    for vm in vms.list_instances().await? {
        vms.terminate_instance(&vm.id).await?;
    }
    let net = cloud.networks()?;
    for vpc in net.list_vpcs().await? {
        for g in net.list_security_groups(&vpc.id).await? {
            // The app's group refers to the load balancer's: revoke before deleting.
            for rule in g.rules.clone() {
                net.revoke(&g.id, rule).await?;
            }
        }
        for g in net.list_security_groups(&vpc.id).await? {
            net.delete_security_group(&g.id).await?;
        }
        for s in net.list_subnets(&vpc.id).await? {
            net.delete_subnet(&s.id).await?;
        }
        net.delete_vpc(&vpc.id).await?;
    }
    Ok(())
}

/// Polls `check` until it holds or `limit` passes.
async fn wait_until<F, Fut>(what: &str, limit: Duration, check: F) -> Result<()>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + limit;
    while !check().await? {
        if Instant::now() > deadline {
            return Err(failed(what, format!("not reached within {limit:?}")));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
