//! The quickstart app as a stack: shared by the quickstart example (local simulator), the
//! AWS example and the test that applies it to moto, so all three run the same program.
#![allow(dead_code)] // each program uses its own subset

use std::path::PathBuf;
use std::time::Duration;

use mvi::container::{ContainerSpec, HealthCheck, ScheduleSpec};
use mvi::image::ImageConfig;
use mvi::kv::{KeyAttr, KeyType};
use mvi::lb::{Protocol, TargetGroupSpec};
use mvi::metric::{AlarmSpec, Comparison, MetricId, Statistic};
use mvi::stack::resources::*;
use mvi::stack::{Stack, StateStore};
use mvi::{Cloud, Result};

pub fn fast_check() -> HealthCheck {
    HealthCheck {
        path: "/healthz".into(),
        interval: Duration::from_millis(200),
        timeout: Duration::from_millis(150),
        healthy_threshold: 1,
        unhealthy_threshold: 3,
    }
}

/// Where the app is deployed: what differs between the local simulator and an AWS region.
#[derive(Debug, Clone)]
pub struct Site {
    /// Two availability zones (`local-1a`, `eu-west-1a`).
    pub zones: [String; 2],
    /// The machine image of the VMs (any name locally; an AMI id on AWS).
    pub vm_image: String,
    /// The web app's directory, built into the service's image (`examples/webapp`).
    pub app_dir: PathBuf,
}

impl Site {
    /// The local simulator's zones; the app from `app_dir`.
    pub fn local(app_dir: impl Into<PathBuf>) -> Self {
        Site {
            zones: ["local-1a".into(), "local-1b".into()],
            vm_image: "ami-local".into(),
            app_dir: app_dir.into(),
        }
    }

    /// Zones `a` and `b` of an AWS region, and an AMI; the app from `app_dir`.
    pub fn aws(region: &str, ami: &str, app_dir: impl Into<PathBuf>) -> Self {
        Site {
            zones: [format!("{region}a"), format!("{region}b")],
            vm_image: ami.into(),
            app_dir: app_dir.into(),
        }
    }
}

/// The program: every resource of the app, wired by outputs, with its state in `store`.
pub fn declare(cloud: &Cloud, store: impl StateStore, site: &Site) -> Result<Stack> {
    let s = Stack::new("quickstart", cloud.clone(), store)?;
    declare_into(&s, site)?;
    Ok(s)
}

/// Declares every resource of the app into `s` (what `mvi::cli` programs are given).
#[allow(dead_code)] // not every example that shares this module is a command line
pub fn declare_into(s: &Stack, site: &Site) -> Result<()> {
    let s = s.clone();

    // Network: a VPC, a public subnet per zone, a group for the load balancer and one for the app.
    let vpc = Vpc::new(&s, "vpc", VpcArgs::new("10.0.0.0/16"))?;
    let [zone_a, zone_b] = &site.zones;
    let subnets =
        [("a", "10.0.0.0/24", zone_a), ("b", "10.0.1.0/24", zone_b)].map(|(n, cidr, zone)| {
            Subnet::new(
                &s,
                &format!("subnet-{n}"),
                SubnetArgs::new(&vpc.id, cidr).zone(zone.as_str()).public(),
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
                site.vm_image.as_str(),
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
    let config = ImageConfig::new(["python3", "app.py"])
        .port(8080)
        .working_dir("/");
    let image = Image::new(
        &web,
        "image",
        ImageArgs::new(&repo.name, &site.app_dir, config)?.tag("v1"),
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
    let app_secret = key.id.map(|_| "s3cr3t-api-token".to_string()).as_secret();
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
    Ok(())
}

/// Everything the cloud holds, one line per resource (`vpc vpc-1234`): compared before `up`
/// and after `destroy`, it shows that nothing was left behind. Keys scheduled for deletion
/// count as gone (neither KMS nor the simulator deletes a key at once). mvi's own keys
/// (`alias/mvi-stack-state`, which seals stack secrets, and `alias/mvi-databases`, which
/// seals database passwords) are left out: they serve every stack and database of the
/// account and outlive any one of them.
pub async fn inventory(cloud: &Cloud) -> Result<std::collections::BTreeSet<String>> {
    use mvi::crypto::KeyState;
    let mut all = std::collections::BTreeSet::new();
    for b in cloud.blob()?.list_buckets().await? {
        all.insert(format!("bucket {}", b.name));
    }
    for t in cloud.kv()?.list_tables().await? {
        all.insert(format!("table {t}"));
    }
    for k in cloud.crypto()?.list_keys().await? {
        let own = k.aliases.iter().any(|a| a.starts_with("alias/mvi-"));
        if k.state != KeyState::PendingDeletion && !own {
            all.insert(format!("key {} {:?}", k.id, k.aliases));
        }
    }
    for g in cloud.logs()?.list_groups().await? {
        all.insert(format!("log group {}", g.name));
    }
    for a in cloud.metrics()?.describe_alarms(None).await? {
        all.insert(format!("alarm {}", a.spec.name));
    }
    for r in cloud.images()?.list_repositories().await? {
        all.insert(format!("repository {}", r.name));
    }
    for s in cloud.containers()?.list_services().await? {
        all.insert(format!("container service {}", s.spec.name));
    }
    for s in cloud.containers()?.list_schedules().await? {
        all.insert(format!("schedule {}", s.name));
    }
    for lb in cloud.load_balancers()?.list_load_balancers().await? {
        all.insert(format!("load balancer {}", lb.spec.name));
    }
    for d in cloud.databases()?.list_databases().await? {
        all.insert(format!("database {}", d.spec.name));
    }
    for s in cloud.databases()?.list_snapshots(None).await? {
        all.insert(format!("snapshot {}", s.name));
    }
    for vm in cloud.vms()?.list_instances().await? {
        all.insert(format!("vm {}", vm.id));
    }
    let networks = cloud.networks()?;
    for vpc in networks.list_vpcs().await? {
        for s in networks.list_subnets(&vpc.id).await? {
            all.insert(format!("subnet {}", s.id));
        }
        for g in networks.list_security_groups(&vpc.id).await? {
            all.insert(format!("security group {}", g.id));
        }
        all.insert(format!("vpc {}", vpc.id));
    }
    Ok(all)
}
