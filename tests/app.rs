//! The whole app on the local backend, and what must hold when things fail: a request
//! through the load balancer reaches the app and its database; a crashed VM's replicas are
//! rescheduled while traffic keeps flowing; a program killed with SIGKILL leaves nothing
//! orphaned and loses no database.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::path::Path;
use std::time::{Duration, Instant};

use mvi::container::{ContainerSpec, InstanceState, SecretRef, ServiceSpec};
use mvi::crypto::{CreateKey, EncryptionContext};
use mvi::database::DatabaseSpec;
use mvi::image::{ImageConfig, build_from_dir};
use mvi::lb::{ListenerSpec, LoadBalancerSpec, Protocol, TargetGroupSpec, TargetHealth};
use mvi::local::LocalCloud;
use mvi::vm::VmSpec;
use mvi::{Cloud, Result};

mod common;
use common::{fast_check, http_get};

async fn wait_for<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Two VMs in two zones, the web app image, a database, and (optionally) a load balancer.
struct App {
    cloud: Cloud,
    url: Option<String>,
}

async fn up_app(cloud: &Cloud, with_lb: bool) -> Result<App> {
    let net = cloud.networks()?;
    let vpc = net.create_vpc("10.0.0.0/16", Default::default()).await?;
    let zones = net.list_zones().await?;
    let mut subnets = Vec::new();
    for (i, zone) in zones.iter().take(2).enumerate() {
        let s = net
            .create_subnet(&vpc.id, &format!("10.0.{i}.0/24"), zone, true)
            .await?;
        cloud
            .vms()?
            .run_instance(VmSpec::new(
                format!("host-{i}"),
                "t3.medium",
                "ami-local",
                &s.id,
            ))
            .await?;
        subnets.push(s.id);
    }
    let images = cloud.images()?;
    images.create_repository("web").await?;
    let dir = common::repo::package_path("examples/webapp");
    let config = ImageConfig::new(["python3", "app.py"]).working_dir("/");
    build_from_dir(images.as_ref(), "web", &dir, &config, Some("v1")).await?;

    cloud
        .databases()?
        .create_database(DatabaseSpec::postgres("appdb"))
        .await?;
    let url = cloud.databases()?.credentials("appdb").await?.url();
    let crypto = cloud.crypto()?;
    let key = crypto
        .create_key(CreateKey::new("app").alias("alias/app"))
        .await?;
    let ciphertext = crypto
        .encrypt(&key.id, url.expose().as_bytes(), &EncryptionContext::new())
        .await?;

    let mut lb_url = None;
    if with_lb {
        let lbs = cloud.load_balancers()?;
        let mut tg = TargetGroupSpec::new("web", Protocol::Http);
        tg.health_check = fast_check();
        tg.deregistration_delay = Duration::from_millis(200);
        lbs.create_target_group(tg).await?;
        let listener = ListenerSpec {
            protocol: Protocol::Http,
            port: 0,
            forward: vec![("web".into(), 1)],
        };
        let lb = lbs
            .create_load_balancer(LoadBalancerSpec::new("front", vec![listener]))
            .await?;
        lb_url = lb.urls.first().cloned();
    }
    let mut container = ContainerSpec::new("web:v1");
    container.secrets.push(SecretRef {
        env: "DATABASE_URL".into(),
        ciphertext,
    });
    container.health_check = Some(fast_check());
    let mut service = ServiceSpec::new("web", container, 2);
    service.subnets = subnets;
    if with_lb {
        service.target_group = Some("web".into());
    }
    cloud.containers()?.create_service(service).await?;
    Ok(App {
        cloud: cloud.clone(),
        url: lb_url,
    })
}

impl App {
    async fn healthy_targets(&self) -> usize {
        let health = self
            .cloud
            .load_balancers()
            .unwrap()
            .target_health("web")
            .await
            .unwrap();
        health
            .iter()
            .filter(|t| t.health == TargetHealth::Healthy)
            .count()
    }

    async fn healthy_replicas(&self) -> Vec<mvi::container::ContainerInstance> {
        let info = self
            .cloud
            .containers()
            .unwrap()
            .describe_service("web")
            .await
            .unwrap();
        info.instances
            .into_iter()
            .filter(|i| i.state == InstanceState::Healthy)
            .collect()
    }

    async fn tear_down(&self) {
        let c = &self.cloud;
        let _ = c.containers().unwrap().delete_service("web").await;
        if self.url.is_some() {
            let _ = c
                .load_balancers()
                .unwrap()
                .delete_load_balancer("front")
                .await;
            let _ = c.load_balancers().unwrap().delete_target_group("web").await;
        }
        let _ = c.databases().unwrap().delete_database("appdb").await;
    }
}

#[tokio::test]
async fn a_request_through_the_load_balancer_reaches_the_app_and_its_database() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = LocalCloud::builder()
        .root(dir.path())
        .seed(1)
        .build()
        .await
        .unwrap();
    let app = up_app(&cloud, true).await.unwrap();
    wait_for("two healthy targets", || async {
        app.healthy_targets().await == 2
    })
    .await;
    let url = app.url.clone().unwrap();
    let (status, body) = http_get(&url, "/db").await.unwrap();
    app.tear_down().await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("database says hello"), "{body}");
}

/// A VM crashes under steady traffic: its replica dies with it and is rescheduled on the
/// other VM; once the load balancer has marked the dead target, every request succeeds.
#[tokio::test]
async fn a_crashed_vm_under_traffic_is_survived() {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalCloud::builder()
        .root(dir.path())
        .seed(2)
        .build_local()
        .await
        .unwrap();
    let app = up_app(local.cloud(), true).await.unwrap();
    wait_for("two healthy replicas behind the LB", || async {
        app.healthy_targets().await == 2 && app.healthy_replicas().await.len() == 2
    })
    .await;
    let url = app.url.clone().unwrap();
    let replicas = app.healthy_replicas().await;
    let doomed_vm = replicas[0].vm.clone().unwrap();
    let doomed_addr = replicas[0].address.clone().unwrap();

    // Steady traffic in the background, recording when each request started and its status.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let (url, stop) = (url.clone(), stop.clone());
        tokio::spawn(async move {
            let mut outcomes = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && outcomes.len() < 50_000 {
                let started = Instant::now();
                let status = http_get(&url, "/").await.map(|(s, _)| s).unwrap_or(0);
                outcomes.push((started, status));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            outcomes
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    local.vms().crash_instance(&doomed_vm).unwrap();

    // The dead target leaves the healthy set; the replica comes back on the other VM.
    wait_for("the dead target to be out of rotation", || async {
        let health = app
            .cloud
            .load_balancers()
            .unwrap()
            .target_health("web")
            .await
            .unwrap();
        !health
            .iter()
            .any(|t| t.target == doomed_addr && t.health == TargetHealth::Healthy)
    })
    .await;
    let marked = Instant::now();
    wait_for("two healthy replicas again", || async {
        app.healthy_replicas().await.len() == 2
    })
    .await;
    wait_for("two healthy targets again", || async {
        app.healthy_targets().await == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let outcomes = traffic.await.unwrap();
    let replicas = app.healthy_replicas().await;
    app.tear_down().await;

    assert!(
        replicas
            .iter()
            .all(|r| r.vm.as_deref() != Some(doomed_vm.as_str())),
        "rescheduled onto the crashed VM: {replicas:?}"
    );
    let after: Vec<u16> = outcomes
        .iter()
        .filter(|(t, _)| *t > marked)
        .map(|(_, s)| *s)
        .collect();
    assert!(
        after.len() >= 10,
        "too little traffic after the target was marked: {}",
        after.len()
    );
    let failed = after.iter().filter(|s| **s != 200).count();
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed after the dead target was marked",
        after.len()
    );
    assert!(
        outcomes
            .iter()
            .filter(|(t, _)| *t <= marked)
            .any(|(_, s)| *s == 200),
        "traffic flowed before the crash"
    );
}

/// The child of `kill9_leaves_nothing_orphaned_and_loses_no_database`: brings the app up on
/// the root named by the environment, writes a row, puts a scaler and saves a flag, says
/// so, and waits to be killed.
const CHILD_ROOT: &str = "MVI_APP_KILL9_ROOT";

fn processes_under(root: &Path) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(cwd) = std::fs::read_link(entry.path().join("cwd"))
            && cwd.starts_with(root)
        {
            out.push(pid);
        }
    }
    out
}

fn psql(url: &str, sql: &str) -> String {
    let out = std::process::Command::new("psql")
        .args([url, "-tAc", sql])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The scaler the killed program put: it must be running again after the restart.
fn kept_scaler() -> mvi::autoscale::ScalerSpec {
    mvi::autoscale::ScalerSpec::new("web", 2, 4)
        .track(mvi::autoscale::MetricTarget::Cpu { target: 80.0 })
        .period(Duration::from_secs(1))
}

/// The flag the killed program saved.
fn kept_flag() -> mvi::flags::Flag {
    mvi::flags::Flag::percentage("new-checkout", 5)
}

#[tokio::test]
async fn kill9_leaves_nothing_orphaned_and_loses_no_database() {
    use std::io::BufRead;

    if let Some(root) = std::env::var_os(CHILD_ROOT) {
        let cloud = LocalCloud::builder()
            .root(&root)
            .seed(5)
            .build()
            .await
            .unwrap();
        let app = up_app(&cloud, false).await.unwrap();
        wait_for("two healthy replicas", || async {
            app.healthy_replicas().await.len() == 2
        })
        .await;
        let url = cloud
            .databases()
            .unwrap()
            .credentials("appdb")
            .await
            .unwrap()
            .url();
        psql(
            url.expose(),
            "create table kept (x int); insert into kept values (42)",
        );
        // A scaler and a flag, as an app that scales and releases gradually has.
        cloud
            .containers()
            .unwrap()
            .put_scaler(kept_scaler())
            .await
            .unwrap();
        let flags = mvi::flags::Flags::of(&cloud, "flags").unwrap();
        flags.create_table().await.unwrap();
        flags.save(&kept_flag()).await.unwrap();
        println!("ready");
        tokio::time::sleep(Duration::from_secs(600)).await;
        return;
    }

    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "kill9_leaves_nothing_orphaned_and_loses_no_database",
            "--nocapture",
        ])
        .env(CHILD_ROOT, &root)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let ready = std::io::BufReader::new(stdout)
        .lines()
        .map_while(|l| l.ok())
        .any(|l| l == "ready");
    // SIGKILL: no destructors run in the program.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(ready, "the child never brought the app up");
    // The app's replicas (under the container service's folder) and the database server
    // (under the database service's) outlive the SIGKILLed program, as they would.
    let replicas = processes_under(&root.join("container"));
    assert!(!replicas.is_empty(), "no replica was running");
    assert!(
        !processes_under(&root.join("database")).is_empty(),
        "no database server was running"
    );

    // The next start finds what the killed program left.
    let local = LocalCloud::builder()
        .root(&root)
        .seed(6)
        .build_local()
        .await
        .unwrap();
    let cloud = local.cloud().clone();
    let alive = |pid: &i32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| {
                !stat
                    .rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
            .unwrap_or(false)
    };
    // Its replicas are stopped (and the service's replicas started anew); its database
    // server is found again (reattached, or restarted on the same data: either is fine).
    wait_for("the killed program's replicas to be stopped", || async {
        !replicas.iter().any(alive)
    })
    .await;
    let app = App {
        cloud: cloud.clone(),
        url: None,
    };
    wait_for("the service's replicas running again", || async {
        app.healthy_replicas().await.len() == 2
    })
    .await;
    let url = cloud
        .databases()
        .unwrap()
        .credentials("appdb")
        .await
        .unwrap()
        .url();
    assert_eq!(
        psql(url.expose(), "select x from kept"),
        "42",
        "the database lost its data"
    );
    // The scaler is back and evaluating again; the flag reads as saved.
    let containers = cloud.containers().unwrap();
    let scaler = containers.describe_scaler("web").await.unwrap();
    assert_eq!(scaler.spec, kept_scaler());
    wait_for("the restored scaler to evaluate", || async {
        !containers
            .describe_scaler("web")
            .await
            .unwrap()
            .decisions
            .is_empty()
    })
    .await;
    let flags = mvi::flags::Flags::of(&cloud, "flags").unwrap();
    assert_eq!(flags.get("new-checkout").await.unwrap(), Some(kept_flag()));
    app.tear_down().await;
    drop(local);
    // Nothing of this root runs any more.
    wait_for("no process left under the root", || async {
        processes_under(&root).is_empty()
    })
    .await;
}
