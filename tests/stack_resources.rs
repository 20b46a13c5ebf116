//! The resource types of the remaining services, end to end on the local backend: a network
//! stack (VPC, subnets, a security group, VMs) and an app stack (repository, image built from
//! a directory, target group, load balancer, database, container service fed the database's
//! secret URL).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::path::Path;
use std::time::{Duration, Instant};

mod common;
use common::{fast_check, http_get};

use mvi::image::ImageConfig;
use mvi::lb::{Protocol, TargetGroupSpec};
use mvi::stack::resources::{
    ContainerService, ContainerServiceArgs, Database, DatabaseArgs, Image, ImageArgs, LoadBalancer,
    LoadBalancerArgs, Repository, RepositoryArgs, SecurityGroup, SecurityGroupArgs, Subnet,
    SubnetArgs, TargetGroup, TargetGroupArgs, Vm, VmArgs, Vpc, VpcArgs,
};
use mvi::stack::{FileStore, Stack, StepOp};
use mvi::{Cloud, ErrorKind};

struct World {
    dir: tempfile::TempDir,
    cloud: Cloud,
    stacks: std::path::PathBuf,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let cloud = mvi::local::LocalCloud::builder()
        .root(dir.path().join("cloud"))
        .seed(5)
        .build()
        .await
        .unwrap();
    let stacks = dir.path().join("stacks");
    World { dir, cloud, stacks }
}

impl World {
    fn stack(&self, name: &str) -> Stack {
        Stack::new(name, self.cloud.clone(), FileStore::new(&self.stacks)).unwrap()
    }
}

// ---------------------------------------------------------------------------------------
// Network

/// The network program: a knob for the security group's port (an update) and for the second
/// VM's size (a replacement).
fn network(w: &World, zones: &[String], port: u16, size: &str) -> Stack {
    let s = w.stack("net");
    let vpc = Vpc::new(&s, "vpc", VpcArgs::new("10.0.0.0/16").tag("team", "infra")).unwrap();
    let a = Subnet::new(
        &s,
        "subnet-a",
        SubnetArgs::new(&vpc.id, "10.0.1.0/24")
            .zone(zones[0].as_str())
            .public(),
    )
    .unwrap();
    let b = Subnet::new(
        &s,
        "subnet-b",
        SubnetArgs::new(&vpc.id, "10.0.2.0/24").zone(zones[1 % zones.len()].as_str()),
    )
    .unwrap();
    let sg = SecurityGroup::new(
        &s,
        "web-sg",
        SecurityGroupArgs::new(&vpc.id, "web").ingress(port, port, "0.0.0.0/0"),
    )
    .unwrap();
    let vm0 = Vm::new(
        &s,
        "vm-0",
        VmArgs::new("web-0", "t3.small", "ami-local", &a.id).security_group(&sg.id),
    )
    .unwrap();
    Vm::new(
        &s,
        "vm-1",
        VmArgs::new("web-1", size, "ami-local", &b.id)
            .security_group(&sg.id)
            .tag("role", "web"),
    )
    .unwrap();
    s.export("vm0_ip", &vm0.private_ip).unwrap();
    s.export("zone_b", &b.zone).unwrap();
    s
}

#[tokio::test]
async fn network_stack_up_update_replace_and_destroy() {
    let w = world().await;
    let net = w.cloud.networks().unwrap();
    let zones = net.list_zones().await.unwrap();

    let plan = network(&w, &zones, 80, "t3.small").preview().await.unwrap();
    assert_eq!(plan.count(StepOp::Create), 6, "{plan}");
    let report = network(&w, &zones, 80, "t3.small").up().await.unwrap();
    assert_eq!(report.plan.count(StepOp::Create), 6, "{}", report.plan);
    assert!(
        report.outputs["vm0_ip"]
            .as_str()
            .is_some_and(|ip| ip.starts_with("10.0.1.")),
        "{:?}",
        report.outputs
    );
    assert_eq!(
        report.outputs["zone_b"],
        zones[1 % zones.len()].as_str(),
        "{:?}",
        report.outputs
    );

    // Verified through the service APIs: tagged with the URN, rules and placement as declared.
    let vpcs = net.list_vpcs().await.unwrap();
    assert_eq!(vpcs.len(), 1);
    assert_eq!(vpcs[0].tags["team"], "infra");
    assert_eq!(vpcs[0].tags["mvi:urn"], "net::mvi:vpc:Vpc::vpc");
    assert_eq!(net.list_subnets(&vpcs[0].id).await.unwrap().len(), 2);
    let groups = net.list_security_groups(&vpcs[0].id).await.unwrap();
    let web = groups.iter().find(|g| g.name == "web").unwrap();
    assert_eq!(web.rules.len(), 1);
    assert_eq!(web.rules[0].from_port, 80);
    let vms = w.cloud.vms().unwrap().list_instances().await.unwrap();
    assert_eq!(vms.len(), 2);
    let vm0 = vms.iter().find(|v| v.spec.name == "web-0").unwrap().clone();
    let vm1 = vms.iter().find(|v| v.spec.name == "web-1").unwrap().clone();
    assert_eq!(vm1.spec.security_groups, vec![web.id.clone()]);
    assert_eq!(vm1.spec.tags["role"], "web");

    // Nothing changed: an empty preview.
    let again = network(&w, &zones, 80, "t3.small").preview().await.unwrap();
    assert!(again.is_empty(), "{again}");

    // A rule changes in place; a VM size replaces the VM.
    let plan = network(&w, &zones, 443, "t3.medium")
        .preview()
        .await
        .unwrap();
    assert_eq!(plan.step("web-sg").unwrap().op, StepOp::Update, "{plan}");
    assert_eq!(plan.step("vm-1").unwrap().op, StepOp::Replace, "{plan}");
    let size = plan
        .step("vm-1")
        .unwrap()
        .diffs
        .iter()
        .find(|d| d.name == "size");
    assert!(size.is_some_and(|d| d.replaces), "{plan}");
    assert_eq!(plan.count(StepOp::Update), 1, "{plan}");
    // An update in place keeps the group's id, which the preview knows: vm-0, which names
    // the group, is unchanged.
    assert_eq!(plan.step("vm-0").unwrap().op, StepOp::Same, "{plan}");
    let report = network(&w, &zones, 443, "t3.medium").up().await.unwrap();
    let ops: Vec<(String, StepOp)> = report
        .plan
        .steps
        .iter()
        .map(|s| (s.name.clone(), s.op))
        .collect();
    assert_eq!(
        report.plan.step("web-sg").unwrap().op,
        StepOp::Update,
        "{ops:?}"
    );
    assert_eq!(
        report.plan.step("vm-1").unwrap().op,
        StepOp::Replace,
        "{ops:?}"
    );
    assert_eq!(
        report.plan.step("vm-0").unwrap().op,
        StepOp::Same,
        "{ops:?}"
    );

    let web = net.describe_security_group(&web.id).await.unwrap();
    assert_eq!(web.rules.len(), 1, "{:?}", web.rules);
    assert_eq!(web.rules[0].from_port, 443);
    let vms = w.cloud.vms().unwrap().list_instances().await.unwrap();
    assert_eq!(vms.len(), 2, "the old VM is terminated");
    let new1 = vms.iter().find(|v| v.spec.name == "web-1").unwrap();
    assert_eq!(new1.spec.size, "t3.medium");
    assert_ne!(new1.id, vm1.id);
    assert!(vms.iter().any(|v| v.id == vm0.id), "vm-0 is kept");
    let again = network(&w, &zones, 443, "t3.medium")
        .preview()
        .await
        .unwrap();
    assert!(again.is_empty(), "{again}");

    // Bad input is refused by the check, naming the property, before anything is touched.
    let s = w.stack("bad");
    Vpc::new(&s, "vpc", VpcArgs::new("10.0.0.1/16")).unwrap();
    let err = s.preview().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.to_string().contains("cidr"), "{err}");

    network(&w, &zones, 443, "t3.medium")
        .destroy()
        .await
        .unwrap();
    assert!(net.list_vpcs().await.unwrap().is_empty());
    assert!(
        w.cloud
            .vms()
            .unwrap()
            .list_instances()
            .await
            .unwrap()
            .is_empty()
    );
    // Deletes of what is already gone succeed: a second destroy is a no-op.
    network(&w, &zones, 443, "t3.medium")
        .destroy()
        .await
        .unwrap();
}

// ---------------------------------------------------------------------------------------
// App

/// Waits until `url` answers 200 on `path`; returns the body.
async fn wait_200(url: &str, path: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok((200, body)) = http_get(url, path).await {
            return body;
        }
        assert!(Instant::now() < deadline, "{url}{path} never answered 200");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The app program over the image directory `dir`.
fn app(w: &World, dir: &Path) -> (Stack, LoadBalancer) {
    let s = w.stack("app");
    let repo = Repository::new(&s, "repo", RepositoryArgs::new("web").force_destroy()).unwrap();
    let image = Image::new(
        &s,
        "image",
        ImageArgs::new(
            &repo.name,
            dir,
            ImageConfig::new(["python3", "app.py"]).working_dir("/"),
        )
        .unwrap()
        .tag("v1"),
    )
    .unwrap();
    let mut tg = TargetGroupSpec::new("web", Protocol::Http);
    tg.health_check = fast_check();
    tg.deregistration_delay = Duration::from_millis(200);
    let tg = TargetGroup::new(&s, "tg", TargetGroupArgs::new(tg)).unwrap();
    let lb = LoadBalancer::new(
        &s,
        "lb",
        LoadBalancerArgs::new("front").listener(Protocol::Http, 0, [(&tg.name, 1)]),
    )
    .unwrap();
    let db = Database::new(&s, "db", DatabaseArgs::postgres("appdb")).unwrap();
    assert!(db.url.is_secret());
    ContainerService::new(
        &s,
        "web",
        ContainerServiceArgs::new("web", &image.reference, 2)
            .env("GREETING", "hello")
            .secret_env("DATABASE_URL", &db.url)
            .health_check(fast_check())
            .target_group(&tg.name),
    )
    .unwrap();
    s.export("url", &lb.url).unwrap();
    s.export("db_url", &db.url).unwrap();
    (s, lb)
}

/// Every byte of every file under `dir`, concatenated.
fn read_tree(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.extend(std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[tokio::test]
async fn app_stack_serves_keeps_the_database_password_secret_and_rolls_out_new_files() {
    let w = world().await;
    let src = w.dir.path().join("webapp");
    std::fs::create_dir(&src).unwrap();
    let app_py = common::repo::package_path("examples/webapp/app.py");
    std::fs::copy(&app_py, src.join("app.py")).unwrap();

    let (s, _) = app(&w, &src);
    let plan = s.preview().await.unwrap();
    assert_eq!(plan.count(StepOp::Create), 6, "{plan}");
    let report = s.up().await.unwrap();
    let url = report.outputs["url"].as_str().unwrap().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let body = wait_200(&url, "/").await;
    assert!(body.contains("Hello from mvi"), "{body}");
    // The replicas got the secret URL (decrypted at start): they reach the database.
    let db = wait_200(&url, "/db").await;
    assert!(db.contains("database says hello"), "{db}");

    let containers = w.cloud.containers().unwrap();
    let info = containers.describe_service("web").await.unwrap();
    assert_eq!(info.spec.replicas, 2);
    assert!(info.spec.container.image.starts_with("web@sha256:"));
    assert_eq!(info.spec.container.secrets.len(), 1);
    assert!(!info.spec.container.env.contains_key("DATABASE_URL"));

    // No plaintext password in the stack's state, nor in the service's definition.
    let password = w
        .cloud
        .databases()
        .unwrap()
        .credentials("appdb")
        .await
        .unwrap()
        .password
        .expose()
        .to_string();
    assert!(password.len() >= 8);
    let state = read_tree(&w.stacks);
    assert!(!state.is_empty());
    assert!(
        !state
            .windows(password.len())
            .any(|win| win == password.as_bytes()),
        "the database password is in the state in plaintext"
    );
    assert!(!format!("{:?}", info.spec).contains(&password));
    // But the stack hands it out to the program, decrypted.
    assert!(
        report.outputs["db_url"]
            .as_str()
            .is_some_and(|u| u.contains(&password))
    );

    // Unchanged files: nothing to do.
    let (s, _) = app(&w, &src);
    let again = s.preview().await.unwrap();
    assert!(again.is_empty(), "{again}");

    // New files: the image is rebuilt and the service rolls out the new build.
    let text = std::fs::read_to_string(src.join("app.py"))
        .unwrap()
        .replace("Hello from mvi", "Hello again from mvi");
    std::fs::write(src.join("app.py"), text).unwrap();
    let (s, _) = app(&w, &src);
    let plan = s.preview().await.unwrap();
    assert_eq!(plan.step("image").unwrap().op, StepOp::Update, "{plan}");
    assert_eq!(plan.step("web").unwrap().op, StepOp::Update, "{plan}");
    assert_eq!(plan.count(StepOp::Update), 2, "{plan}");
    assert_eq!(plan.count(StepOp::Replace), 0, "{plan}");
    let report = s.up().await.unwrap();
    assert_eq!(report.plan.count(StepOp::Update), 2, "{}", report.plan);
    let new_image = containers
        .describe_service("web")
        .await
        .unwrap()
        .spec
        .container
        .image;
    assert_ne!(new_image, info.spec.container.image);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok((200, body)) = http_get(&url, "/").await
            && body.contains("Hello again")
        {
            break;
        }
        assert!(Instant::now() < deadline, "the new build never served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (s, _) = app(&w, &src);
    s.destroy().await.unwrap();
    assert!(containers.list_services().await.unwrap().is_empty());
    assert!(
        w.cloud
            .databases()
            .unwrap()
            .list_databases()
            .await
            .unwrap()
            .is_empty()
    );
    let lbs = w.cloud.load_balancers().unwrap();
    assert!(lbs.list_load_balancers().await.unwrap().is_empty());
    assert_eq!(
        lbs.target_health("web").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert!(
        w.cloud
            .images()
            .unwrap()
            .list_repositories()
            .await
            .unwrap()
            .is_empty()
    );
}
