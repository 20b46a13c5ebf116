//! Container cases. Images are built from small shell scripts written to a temporary
//! directory; output is checked through the Log service, never through files. Cases that
//! need processes really running carry [`crate::Capability::RealProcesses`]; those about
//! placement on the cloud's VMs carry [`crate::Capability::VmPlacement`].

use std::sync::Arc;
use std::time::Duration;

use mvi_core::container::{
    ContainerSpec, Containers, HealthCheck, InstanceState, RevisionState, ScheduleSpec, SecretRef,
    ServiceInfo, ServiceSpec,
};
use mvi_core::deploy::{BlueGreen, Count, Deployment, Rolling, Strategy, TrafficShift};
use mvi_core::image::{ImageConfig, Images, build_from_dir};
use mvi_core::log::{FilterEvents, Logs};

use crate::{Ctx, Failure, Outcome, ensure, expect_err};

/// Every Container case, as tests against `$target`.
#[macro_export]
macro_rules! container_cases {
    ($target:expr) => {
        $crate::__cases! { $target;
            container_create_describe_list_delete => $crate::container::create_describe_list_delete;
            container_invalid_names_refused => $crate::container::invalid_names_refused;
            container_unknown_image_not_found => $crate::container::unknown_image_not_found;
            container_duplicate_service_refused => $crate::container::duplicate_service_refused;
            container_bad_cron_refused => $crate::container::bad_cron_refused;
            container_schedules_put_list_delete => $crate::container::schedules_put_list_delete;
            container_beyond_capacity_unavailable => $crate::container::beyond_capacity_unavailable [VmPlacement];
            container_replicas_spread_across_zones => $crate::container::replicas_spread_across_zones [VmPlacement];
            container_scale_up_down => $crate::container::scale_up_down [RealProcesses];
            container_update_to_new_image => $crate::container::update_to_new_image [RealProcesses];
            container_updates_make_numbered_revisions => $crate::container::updates_make_numbered_revisions [RealProcesses];
            container_failed_update_rolls_back => $crate::container::failed_update_rolls_back [RealProcesses];
            container_bad_deployment_settings_refused => $crate::container::bad_deployment_settings_refused;
            container_unknown_references_not_found => $crate::container::unknown_references_not_found;
            container_run_task_exit_codes_and_output => $crate::container::run_task_exit_codes_and_output [RealProcesses];
            container_run_task_timeout => $crate::container::run_task_timeout [RealProcesses];
            container_env_port_and_secret_reach_process => $crate::container::env_port_and_secret_reach_process [RealProcesses];
            container_service_output_reaches_logs => $crate::container::service_output_reaches_logs [RealProcesses];
            container_health_check_makes_healthy => $crate::container::health_check_makes_healthy [RealProcesses];
            container_crash_loop_backs_off => $crate::container::crash_loop_backs_off [RealProcesses];
            container_stopped_vm_moves_replicas => $crate::container::stopped_vm_moves_replicas [RealProcesses, VmPlacement];
            container_replicas_return_to_vms_after_a_full_outage => $crate::container::replicas_return_to_vms_after_a_full_outage [RealProcesses, VmPlacement];
            container_schedule_runs_on_manual_clock => $crate::container::schedule_runs_on_manual_clock [ManualClock, RealProcesses];
            container_service_survives_reopen => $crate::container::service_survives_reopen [Reopen, RealProcesses];
        }
    };
}

const DEADLINE: Duration = Duration::from_secs(15);

/// A scratch directory, removed on drop.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new(ctx: &Ctx, base: &str) -> Result<Scratch, Failure> {
        let dir =
            std::env::temp_dir().join(format!("{}-{}", ctx.name(base), rand::random::<u32>()));
        std::fs::create_dir_all(&dir)?;
        Ok(Scratch(dir))
    }

    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Builds an image whose program is `sh run.sh` with `script` as run.sh; returns its
/// `repository:tag`.
async fn image(ctx: &Ctx, base: &str, tag: &str, script: &str) -> Result<String, Failure> {
    let images = ctx.cloud().images()?.clone();
    let repo = ctx.name(base);
    if let Err(e) = images.create_repository(&repo).await
        && e.kind() != mvi_core::ErrorKind::AlreadyExists
    {
        return Err(e.into());
    }
    let dir = Scratch::new(ctx, base)?;
    std::fs::create_dir(dir.path().join("app"))?;
    std::fs::write(dir.path().join("app/run.sh"), script)?;
    let config = ImageConfig::new(["sh", "run.sh"]).working_dir("/app");
    build_from_dir(images.as_ref(), &repo, dir.path(), &config, Some(tag)).await?;
    Ok(format!("{repo}:{tag}"))
}

async fn drop_repo(ctx: &Ctx, base: &str) -> Outcome {
    let images: Arc<dyn Images> = ctx.cloud().images()?.clone();
    images.delete_repository(&ctx.name(base), true).await?;
    Ok(())
}

fn small(image: &str) -> ContainerSpec {
    let mut c = ContainerSpec::new(image);
    c.cpu_millis = 128;
    c.memory_mib = 64;
    c
}

/// Polls `describe_service` until `done` holds (or the deadline passes: an error naming
/// what was last seen).
async fn wait_service(
    containers: &Arc<dyn Containers>,
    name: &str,
    what: &str,
    done: impl Fn(&ServiceInfo) -> bool,
) -> Result<ServiceInfo, Failure> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let info = containers.describe_service(name).await?;
        if done(&info) {
            return Ok(info);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(
                format!("{name}: timed out waiting for {what}: {:?}", info.instances).into(),
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn all_in(info: &ServiceInfo, n: usize, states: &[InstanceState]) -> bool {
    info.instances.len() == n && info.instances.iter().all(|i| states.contains(&i.state))
}

/// Polls the log group until an event holds `text`; returns the messages found.
async fn wait_log(logs: &Arc<dyn Logs>, group: &str, text: &str) -> Result<Vec<String>, Failure> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Ok(page) = logs
            .filter_events(FilterEvents::new(group, format!("\"{text}\"")))
            .await
            && !page.items.is_empty()
        {
            return Ok(page.items.into_iter().map(|r| r.message).collect());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("no log event holding {text:?} in {group}").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A service is created with its replicas, described, listed and deleted.
pub async fn create_describe_list_delete(ctx: &mut Ctx) -> Outcome {
    let img = image(ctx, "cdld", "v1", "exec sleep 300\n").await?;
    let containers = ctx.cloud().containers()?.clone();
    let name = ctx.name("svc");
    let info = containers
        .create_service(ServiceSpec::new(&name, small(&img), 2))
        .await?;
    ensure!(info.spec.name == name, "name {}", info.spec.name);
    // Replicas are the ones that exist: a backend may start them a moment later (ECS), but
    // never lists more than asked or replicas nobody can name.
    ensure!(
        info.spec.replicas == 2 && info.instances.len() <= 2,
        "{} replicas listed, {} wanted",
        info.instances.len(),
        info.spec.replicas
    );
    ensure!(info.revision == 1, "first revision {}", info.revision);
    let described = containers.describe_service(&name).await?;
    ensure!(described.spec.replicas == 2, "spec {:?}", described.spec);
    let listed = containers.list_services().await?;
    ensure!(
        listed.iter().any(|s| s.spec.name == name),
        "service not listed"
    );
    containers.delete_service(&name).await?;
    expect_err!(containers.describe_service(&name).await, NotFound);
    expect_err!(containers.delete_service(&name).await, NotFound);
    drop_repo(ctx, "cdld").await
}

/// Bad names are InvalidArgument: empty, too long, with spaces.
pub async fn invalid_names_refused(ctx: &mut Ctx) -> Outcome {
    let img = image(ctx, "names", "v1", "exec sleep 300\n").await?;
    let containers = ctx.cloud().containers()?.clone();
    for bad in ["", "has space", &"x".repeat(256)] {
        expect_err!(
            containers
                .create_service(ServiceSpec::new(bad, small(&img), 1))
                .await,
            InvalidArgument
        );
    }
    expect_err!(
        containers
            .run_task("", small(&img), Duration::from_secs(5))
            .await,
        InvalidArgument
    );
    drop_repo(ctx, "names").await
}

/// An image that does not exist is NotFound, for services and tasks.
pub async fn unknown_image_not_found(ctx: &mut Ctx) -> Outcome {
    let containers = ctx.cloud().containers()?.clone();
    let missing = format!("{}:v1", ctx.name("no-such-repo"));
    expect_err!(
        containers
            .create_service(ServiceSpec::new(ctx.name("svc"), small(&missing), 1))
            .await,
        NotFound
    );
    expect_err!(
        containers
            .run_task(&ctx.name("task"), small(&missing), Duration::from_secs(5))
            .await,
        NotFound
    );
    let img = image(ctx, "unknown", "v1", "true\n").await?;
    let wrong_tag = img.replace(":v1", ":v9");
    expect_err!(
        containers
            .create_service(ServiceSpec::new(ctx.name("svc"), small(&wrong_tag), 1))
            .await,
        NotFound
    );
    drop_repo(ctx, "unknown").await
}

/// A second service of the same name is AlreadyExists; the first keeps running.
pub async fn duplicate_service_refused(ctx: &mut Ctx) -> Outcome {
    let img = image(ctx, "dup", "v1", "exec sleep 300\n").await?;
    let containers = ctx.cloud().containers()?.clone();
    let name = ctx.name("svc");
    containers
        .create_service(ServiceSpec::new(&name, small(&img), 1))
        .await?;
    expect_err!(
        containers
            .create_service(ServiceSpec::new(&name, small(&img), 1))
            .await,
        AlreadyExists
    );
    let first = containers.describe_service(&name).await?;
    ensure!(
        first.spec.replicas == 1 && first.instances.len() <= 1 && first.revision == 1,
        "the first service changed: {first:?}"
    );
    containers.delete_service(&name).await?;
    drop_repo(ctx, "dup").await
}

/// A cron expression that does not parse, or has six fields, is InvalidArgument.
pub async fn bad_cron_refused(ctx: &mut Ctx) -> Outcome {
    let containers = ctx.cloud().containers()?.clone();
    for cron in ["not a cron", "61 * * * *", "* * * * * *", ""] {
        let spec = ScheduleSpec::new(ctx.name("sched"), cron, small("repo:v1"));
        expect_err!(containers.put_schedule(spec).await, InvalidArgument);
    }
    ensure!(
        containers.list_schedules().await?.is_empty(),
        "a refused schedule was kept"
    );
    Ok(())
}

/// Schedules are put, replaced, listed and deleted.
pub async fn schedules_put_list_delete(ctx: &mut Ctx) -> Outcome {
    let containers = ctx.cloud().containers()?.clone();
    let name = ctx.name("sched");
    let mut spec = ScheduleSpec::new(name.clone(), "0 3 * * *", small("repo:v1"));
    containers.put_schedule(spec.clone()).await?;
    spec.cron = "*/5 * * * *".into();
    containers.put_schedule(spec.clone()).await?;
    let listed = containers.list_schedules().await?;
    ensure!(
        listed.iter().filter(|s| s.name == name).count() == 1,
        "listed {listed:?}"
    );
    ensure!(
        listed
            .iter()
            .any(|s| s.name == name && s.cron == "*/5 * * * *"),
        "the schedule was not replaced: {listed:?}"
    );
    containers.delete_schedule(&name).await?;
    expect_err!(containers.delete_schedule(&name).await, NotFound);
    ensure!(
        !containers
            .list_schedules()
            .await?
            .iter()
            .any(|s| s.name == name),
        "deleted schedule listed"
    );
    Ok(())
}

/// A VPC with one /24 subnet in each of the first two zones, and `per_zone` t3.nano VMs
/// (2 vCPU, 512 MiB) in each.
struct Hosts {
    vpc: String,
    subnets: Vec<String>,
    vms: Vec<String>,
}

impl Hosts {
    async fn new(ctx: &Ctx, n: u8, per_zone: usize) -> Result<Hosts, Failure> {
        let net = ctx.cloud().networks()?.clone();
        let vms = ctx.cloud().vms()?.clone();
        let zones = net.list_zones().await?;
        let vpc = net
            .create_vpc(&format!("10.{n}.0.0/16"), Default::default())
            .await?;
        let mut out = Hosts {
            vpc: vpc.id,
            subnets: Vec::new(),
            vms: Vec::new(),
        };
        for (i, zone) in zones.iter().take(2).enumerate() {
            let s = net
                .create_subnet(&out.vpc, &format!("10.{n}.{i}.0/24"), zone, false)
                .await?;
            for _ in 0..per_zone {
                let vm = vms
                    .run_instance(mvi_core::vm::VmSpec::new(
                        ctx.name("host"),
                        "t3.nano",
                        crate::vm::IMAGE,
                        &s.id,
                    ))
                    .await?;
                out.vms.push(vm.id);
            }
            out.subnets.push(s.id);
        }
        Ok(out)
    }

    async fn remove(self, ctx: &Ctx) -> Outcome {
        let net = ctx.cloud().networks()?.clone();
        let vms = ctx.cloud().vms()?.clone();
        for vm in &self.vms {
            vms.terminate_instance(vm).await?;
        }
        for s in &self.subnets {
            net.delete_subnet(s).await?;
        }
        net.delete_vpc(&self.vpc).await?;
        Ok(())
    }
}

/// Replicas that do not fit on the VMs are refused with Unavailable, and nothing starts.
pub async fn beyond_capacity_unavailable(ctx: &mut Ctx) -> Outcome {
    let hosts = Hosts::new(ctx, 41, 1).await?;
    let img = image(ctx, "cap", "v1", "exec sleep 300\n").await?;
    let containers = ctx.cloud().containers()?.clone();
    let name = ctx.name("svc");
    let mut c = small(&img);
    c.memory_mib = 400;
    // Two VMs of 512 MiB: two replicas of 400 MiB fit, three do not.
    let err = expect_err!(
        containers
            .create_service(ServiceSpec::new(&name, c.clone(), 3))
            .await,
        Unavailable
    );
    ensure!(
        err.to_string().contains("400"),
        "the error does not say what was needed: {err}"
    );
    expect_err!(containers.describe_service(&name).await, NotFound);
    containers
        .create_service(ServiceSpec::new(&name, c, 2))
        .await?;
    expect_err!(containers.scale_service(&name, 3).await, Unavailable);
    containers.delete_service(&name).await?;
    drop_repo(ctx, "cap").await?;
    hosts.remove(ctx).await
}

/// Replicas spread over the zones of the service's subnets.
pub async fn replicas_spread_across_zones(ctx: &mut Ctx) -> Outcome {
    let hosts = Hosts::new(ctx, 42, 2).await?;
    let img = image(ctx, "spread", "v1", "exec sleep 300\n").await?;
    let containers = ctx.cloud().containers()?.clone();
    let vms = ctx.cloud().vms()?.clone();
    let name = ctx.name("svc");
    let mut spec = ServiceSpec::new(&name, small(&img), 4);
    spec.subnets = hosts.subnets.clone();
    let info = containers.create_service(spec).await?;
    let mut zones = std::collections::BTreeMap::<String, usize>::new();
    for i in &info.instances {
        let vm = i.vm.clone().ok_or("a replica was not placed")?;
        *zones
            .entry(vms.describe_instance(&vm).await?.zone)
            .or_default() += 1;
    }
    ensure!(
        zones.len() == 2 && zones.values().all(|n| *n == 2),
        "replicas per zone {zones:?}"
    );
    containers.delete_service(&name).await?;
    drop_repo(ctx, "spread").await?;
    hosts.remove(ctx).await
}

/// Scaling up starts replicas, scaling down stops the surplus.
pub async fn scale_up_down(ctx: &mut Ctx) -> Outcome {
    let img = image(ctx, "scale", "v1", "exec sleep 300\n").await?;
    let containers = ctx.cloud().containers()?.clone();
    let name = ctx.name("svc");
    containers
        .create_service(ServiceSpec::new(&name, small(&img), 1))
        .await?;
    containers.scale_service(&name, 3).await?;
    wait_service(&containers, &name, "3 running", |i| {
        all_in(i, 3, &[InstanceState::Running])
    })
    .await?;
    let info = containers.scale_service(&name, 1).await?;
    ensure!(
        info.instances.len() == 1,
        "{} replicas",
        info.instances.len()
    );
    ensure!(info.spec.replicas == 1, "spec says {}", info.spec.replicas);
    containers.scale_service(&name, 0).await?;
    ensure!(
        containers
            .describe_service(&name)
            .await?
            .instances
            .is_empty(),
        "replicas left at zero"
    );
    expect_err!(
        containers.scale_service(&ctx.name("nope"), 1).await,
        NotFound
    );
    containers.delete_service(&name).await?;
    drop_repo(ctx, "scale").await
}

/// An update replaces every replica with one running the new image.
pub async fn update_to_new_image(ctx: &mut Ctx) -> Outcome {
    let v1 = image(ctx, "upd", "v1", "echo running-v1\nexec sleep 300\n").await?;
    let v2 = image(ctx, "upd", "v2", "echo running-v2\nexec sleep 300\n").await?;
    let containers = ctx.cloud().containers()?.clone();
    let logs = ctx.cloud().logs()?.clone();
    let name = ctx.name("svc");
    let before = containers
        .create_service(ServiceSpec::new(&name, small(&v1), 2))
        .await?;
    let group = format!("/mvi/containers/{name}");
    wait_log(&logs, &group, "running-v1").await?;
    let after = containers
        .update_service(ServiceSpec::new(&name, small(&v2), 2))
        .await?;
    ensure!(after.spec.container.image == v2, "spec {:?}", after.spec);
    ensure!(
        after.instances.len() == 2,
        "{} replicas",
        after.instances.len()
    );
    for i in &after.instances {
        ensure!(
            !before.instances.iter().any(|b| b.id == i.id),
            "replica {} was not replaced",
            i.id
        );
    }
    wait_log(&logs, &group, "running-v2").await?;
    containers.delete_service(&name).await?;
    expect_err!(
        containers
            .update_service(ServiceSpec::new(&name, small(&v2), 1))
            .await,
        NotFound
    );
    logs.delete_group(&group).await?;
    drop_repo(ctx, "upd").await
}

/// Every change of what runs is a numbered revision; a change of the count alone is not.
pub async fn updates_make_numbered_revisions(ctx: &mut Ctx) -> Outcome {
    let v1 = image(ctx, "rev", "v1", "exec sleep 300\n").await?;
    let v2 = image(ctx, "rev", "v2", "echo v2\nexec sleep 300\n").await?;
    let containers = ctx.cloud().containers()?.clone();
    let name = ctx.name("svc");
    let created = containers
        .create_service(ServiceSpec::new(&name, small(&v1), 2))
        .await?;
    ensure!(created.revision == 1, "first revision {}", created.revision);
    let after = containers
        .update_service(ServiceSpec::new(&name, small(&v2), 2))
        .await?;
    ensure!(
        after.revision == 2,
        "revision after an update: {}",
        after.revision
    );
    ensure!(
        after.rollout.is_none(),
        "rollout still shown: {:?}",
        after.rollout
    );
    ensure!(
        after.instances.iter().all(|i| i.revision == 2),
        "replicas of another revision: {:?}",
        after.instances
    );
    let scaled = containers
        .update_service(ServiceSpec::new(&name, small(&v2), 3))
        .await?;
    ensure!(
        scaled.revision == 2,
        "a count change made revision {}",
        scaled.revision
    );
    let revisions = containers.list_revisions(&name).await?;
    let seen: Vec<(u64, RevisionState)> = revisions.iter().map(|r| (r.number, r.state)).collect();
    ensure!(
        seen == [(1, RevisionState::Superseded), (2, RevisionState::Active)],
        "revisions {seen:?}"
    );
    ensure!(
        revisions[1].container.image == v2,
        "{:?}",
        revisions[1].container
    );
    containers.delete_service(&name).await?;
    expect_err!(containers.list_revisions(&name).await, NotFound);
    drop_repo(ctx, "rev").await
}

/// A revision whose replicas exit at once trips the circuit breaker: the service is rolled
/// back to the last good revision, which stays recorded, and the error says so.
pub async fn failed_update_rolls_back(ctx: &mut Ctx) -> Outcome {
    let good = image(ctx, "rb", "good", "echo good\nexec sleep 300\n").await?;
    let bad = image(ctx, "rb", "bad", "echo bad\nexit 3\n").await?;
    let containers = ctx.cloud().containers()?.clone();
    let name = ctx.name("svc");
    containers
        .create_service(ServiceSpec::new(&name, small(&good), 2))
        .await?;
    wait_service(&containers, &name, "2 running", |i| {
        all_in(i, 2, &[InstanceState::Running])
    })
    .await?;
    let mut spec = ServiceSpec::new(&name, small(&bad), 2);
    spec.deployment = Deployment::default().progress_deadline(Duration::from_secs(60));
    let e = expect_err!(
        containers.update_service(spec.clone()).await,
        DeploymentFailed
    );
    let msg = e.to_string();
    ensure!(
        msg.contains("revision 2") && msg.contains("rolled back to revision 1"),
        "the error does not name the revision and the rollback: {msg}"
    );
    ensure!(
        msg.contains("circuit breaker"),
        "the error does not give the cause: {msg}"
    );
    let info = containers.describe_service(&name).await?;
    ensure!(
        info.revision == 1 && info.spec.container.image == good,
        "recorded after the rollback: revision {} {:?}",
        info.revision,
        info.spec.container.image
    );
    wait_service(&containers, &name, "2 replicas of revision 1", |i| {
        i.instances.len() == 2
            && i.instances
                .iter()
                .all(|r| r.revision == 1 && r.state == InstanceState::Running)
    })
    .await?;
    let revisions = containers.list_revisions(&name).await?;
    let failed = revisions.iter().find(|r| r.number == 2);
    ensure!(
        failed.is_some_and(|r| r.state == RevisionState::RolledBack && r.reason.is_some()),
        "revision 2 not recorded as rolled back: {revisions:?}"
    );
    // Trying again is a new attempt (a new revision), not "no change".
    let again = expect_err!(containers.update_service(spec).await, DeploymentFailed);
    ensure!(again.to_string().contains("revision 3"), "{again}");
    containers.delete_service(&name).await?;
    drop_repo(ctx, "rb").await
}

/// A service naming a target group, subnet or security group that does not exist is
/// NotFound naming it, and nothing is made.
pub async fn unknown_references_not_found(ctx: &mut Ctx) -> Outcome {
    let img = image(ctx, "refs", "v1", "exec sleep 300\n").await?;
    let containers = ctx.cloud().containers()?.clone();
    let name = ctx.name("svc");
    let mut tg = ServiceSpec::new(&name, small(&img), 1);
    tg.target_group = Some(ctx.name("nogroup"));
    let mut subnet = ServiceSpec::new(&name, small(&img), 1);
    subnet.subnets = vec!["subnet-0123456789abcdef0".into()];
    let mut group = ServiceSpec::new(&name, small(&img), 1);
    group.security_groups = vec!["sg-0123456789abcdef0".into()];
    for (spec, missing) in [
        (tg, ctx.name("nogroup")),
        (subnet, "subnet-0123456789abcdef0".to_string()),
        (group, "sg-0123456789abcdef0".to_string()),
    ] {
        let e = expect_err!(containers.create_service(spec).await, NotFound);
        ensure!(
            e.to_string().contains(&missing),
            "the error does not name {missing}: {e}"
        );
        expect_err!(containers.describe_service(&name).await, NotFound);
    }
    drop_repo(ctx, "refs").await
}

/// Deployment settings that cannot work are refused before anything changes.
pub async fn bad_deployment_settings_refused(ctx: &mut Ctx) -> Outcome {
    let containers = ctx.cloud().containers()?.clone();
    let name = ctx.name("svc");
    let c = small("nothing:v1");
    let mut spec = ServiceSpec::new(&name, c.clone(), 1);
    spec.deployment = Deployment::new(Strategy::Rolling(Rolling::new(
        Count::Replicas(0),
        Count::Replicas(0),
    )));
    expect_err!(containers.create_service(spec).await, InvalidArgument);
    let mut spec = ServiceSpec::new(&name, c.clone(), 1);
    spec.deployment = Deployment::new(Strategy::Canary(TrafficShift::canary(
        "canary",
        10,
        Duration::from_secs(1),
    )));
    let e = expect_err!(containers.create_service(spec).await, InvalidArgument);
    ensure!(e.message().contains("target group"), "{e}");
    let mut spec = ServiceSpec::new(&name, c.clone(), 1);
    spec.target_group = Some("web".into());
    spec.deployment = Deployment::new(Strategy::BlueGreen(BlueGreen::new("web")));
    let e = expect_err!(containers.create_service(spec).await, InvalidArgument);
    ensure!(e.message().contains("must differ"), "{e}");
    let mut spec = ServiceSpec::new(&name, c, 1);
    spec.deployment = Deployment::default().progress_deadline(Duration::ZERO);
    expect_err!(containers.update_service(spec).await, InvalidArgument);
    expect_err!(containers.describe_service(&name).await, NotFound);
    Ok(())
}

/// A task's exit code comes back, and its output is in the log stream named.
pub async fn run_task_exit_codes_and_output(ctx: &mut Ctx) -> Outcome {
    let ok = image(
        ctx,
        "task",
        "ok",
        "echo hello from task\necho to stderr >&2\n",
    )
    .await?;
    let bad = image(ctx, "task", "bad", "echo failing\nexit 3\n").await?;
    let containers = ctx.cloud().containers()?.clone();
    let logs = ctx.cloud().logs()?.clone();
    let name = ctx.name("task");
    let done = containers.run_task(&name, small(&ok), DEADLINE).await?;
    ensure!(done.exit_code == Some(0), "exit code {:?}", done.exit_code);
    let (group, stream) = done.log_stream.clone();
    let events = logs
        .get_events(mvi_core::log::GetEvents::new(&group, &stream))
        .await?;
    let lines: Vec<&str> = events.items.iter().map(|e| e.message.as_str()).collect();
    ensure!(
        lines.contains(&"hello from task") && lines.contains(&"to stderr"),
        "output {lines:?}"
    );
    let failed = containers.run_task(&name, small(&bad), DEADLINE).await?;
    ensure!(
        failed.exit_code == Some(3),
        "exit code {:?}",
        failed.exit_code
    );
    ensure!(failed.id != done.id, "two runs share an id");
    let events = logs
        .get_events(mvi_core::log::GetEvents::new(
            &failed.log_stream.0,
            &failed.log_stream.1,
        ))
        .await?;
    ensure!(
        events.items.iter().any(|e| e.message == "failing"),
        "output of the failed run missing"
    );
    logs.delete_group(&group).await?;
    drop_repo(ctx, "task").await
}

/// A task that outlives its time-out is killed and reported as Timeout.
pub async fn run_task_timeout(ctx: &mut Ctx) -> Outcome {
    let img = image(ctx, "slow", "v1", "echo started\nexec sleep 300\n").await?;
    let containers = ctx.cloud().containers()?.clone();
    let name = ctx.name("slow");
    expect_err!(
        containers
            .run_task(&name, small(&img), Duration::from_millis(500))
            .await,
        Timeout
    );
    expect_err!(
        containers
            .run_task(&name, small(&img), Duration::ZERO)
            .await,
        InvalidArgument
    );
    drop_repo(ctx, "slow").await
}

/// The spec's environment, `PORT` and a decrypted secret reach the process.
pub async fn env_port_and_secret_reach_process(ctx: &mut Ctx) -> Outcome {
    let img = image(
        ctx,
        "env",
        "v1",
        "echo \"greeting=$GREETING port=$PORT secret=$APP_SECRET\"\n",
    )
    .await?;
    let crypto = ctx.cloud().crypto()?.clone();
    let key = crypto
        .create_key(mvi_core::crypto::CreateKey::new("container secret"))
        .await?;
    let ciphertext = crypto
        .encrypt(&key.id, b"s3cr3t-value", &Default::default())
        .await?;
    let containers = ctx.cloud().containers()?.clone();
    let logs = ctx.cloud().logs()?.clone();
    let mut c = small(&img);
    c.env.insert("GREETING".into(), "hi there".into());
    c.secrets.push(SecretRef {
        env: "APP_SECRET".into(),
        ciphertext,
    });
    let done = containers.run_task(&ctx.name("env"), c, DEADLINE).await?;
    ensure!(done.exit_code == Some(0), "exit code {:?}", done.exit_code);
    let events = logs
        .get_events(mvi_core::log::GetEvents::new(
            &done.log_stream.0,
            &done.log_stream.1,
        ))
        .await?;
    let line = events
        .items
        .first()
        .map(|e| e.message.clone())
        .ok_or("no output")?;
    ensure!(line.contains("greeting=hi there"), "env missing: {line}");
    ensure!(
        line.contains("secret=s3cr3t-value"),
        "secret missing: {line}"
    );
    let port = line
        .split("port=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse::<u16>().ok());
    ensure!(port.is_some_and(|p| p > 0), "no PORT: {line}");
    let mut bad = small(&img);
    bad.secrets.push(SecretRef {
        env: "APP_SECRET".into(),
        ciphertext: bytes::Bytes::from_static(b"not a ciphertext"),
    });
    ensure!(
        containers
            .run_task(&ctx.name("env"), bad, DEADLINE)
            .await
            .is_err(),
        "a secret that does not decrypt was accepted"
    );
    logs.delete_group(&done.log_stream.0).await?;
    drop_repo(ctx, "env").await
}

/// A service's output reaches its log group.
pub async fn service_output_reaches_logs(ctx: &mut Ctx) -> Outcome {
    let img = image(
        ctx,
        "out",
        "v1",
        "i=0\nwhile [ $i -lt 50 ]; do echo line-$i; i=$((i+1)); done\nexec sleep 300\n",
    )
    .await?;
    let containers = ctx.cloud().containers()?.clone();
    let logs = ctx.cloud().logs()?.clone();
    let name = ctx.name("svc");
    containers
        .create_service(ServiceSpec::new(&name, small(&img), 1))
        .await?;
    let group = format!("/mvi/containers/{name}");
    wait_log(&logs, &group, "line-49").await?;
    let all = wait_log(&logs, &group, "line-").await?;
    ensure!(all.len() == 50, "{} lines of 50", all.len());
    containers.delete_service(&name).await?;
    logs.delete_group(&group).await?;
    drop_repo(ctx, "out").await
}

/// A replica answering its HTTP health check becomes Healthy.
pub async fn health_check_makes_healthy(ctx: &mut Ctx) -> Outcome {
    let img = image(
        ctx,
        "web",
        "v1",
        "exec python3 -m http.server --bind 127.0.0.1 \"$PORT\"\n",
    )
    .await?;
    let containers = ctx.cloud().containers()?.clone();
    let name = ctx.name("web");
    let mut c = small(&img);
    c.port = Some(8080);
    c.health_check = Some(HealthCheck {
        path: "/".into(),
        interval: Duration::from_millis(200),
        timeout: Duration::from_secs(1),
        healthy_threshold: 2,
        unhealthy_threshold: 2,
    });
    containers
        .create_service(ServiceSpec::new(&name, c, 2))
        .await?;
    let info = wait_service(&containers, &name, "2 healthy", |i| {
        all_in(i, 2, &[InstanceState::Healthy])
    })
    .await?;
    let addrs: Vec<_> = info
        .instances
        .iter()
        .filter_map(|i| i.address.clone())
        .collect();
    ensure!(
        addrs.len() == 2 && addrs[0] != addrs[1],
        "addresses {addrs:?}"
    );
    containers.delete_service(&name).await?;
    drop_repo(ctx, "web").await
}

/// A replica that keeps crashing backs off and is reported, while the others keep running.
pub async fn crash_loop_backs_off(ctx: &mut Ctx) -> Outcome {
    // The first replica to take the lock directory stays up; the others crash at once.
    let lock = Scratch::new(ctx, "lock")?;
    let img = image(
        ctx,
        "crash",
        "v1",
        "if mkdir \"$LOCKDIR/first\" 2>/dev/null; then exec sleep 300; fi\necho crashing\nexit 1\n",
    )
    .await?;
    let containers = ctx.cloud().containers()?.clone();
    let name = ctx.name("svc");
    let mut c = small(&img);
    c.env
        .insert("LOCKDIR".into(), lock.path().display().to_string());
    containers
        .create_service(ServiceSpec::new(&name, c, 2))
        .await?;
    let info = wait_service(&containers, &name, "one replica crash-looping", |i| {
        i.instances.iter().any(|r| r.restarts >= 3)
    })
    .await?;
    let stable: Vec<_> = info.instances.iter().filter(|r| r.restarts == 0).collect();
    ensure!(
        stable.len() == 1 && stable[0].state == InstanceState::Running,
        "the healthy replica was affected: {:?}",
        info.instances
    );
    let looping = info
        .instances
        .iter()
        .find(|r| r.restarts >= 3)
        .ok_or("no crash-looping replica")?;
    ensure!(
        matches!(
            looping.state,
            InstanceState::BackingOff | InstanceState::Running | InstanceState::Pending
        ),
        "crash-looping replica is {:?}",
        looping.state
    );
    containers.delete_service(&name).await?;
    drop_repo(ctx, "crash").await
}

/// Replicas of a VM that stops are placed again on the running VMs.
pub async fn stopped_vm_moves_replicas(ctx: &mut Ctx) -> Outcome {
    let hosts = Hosts::new(ctx, 43, 1).await?;
    let img = image(ctx, "move", "v1", "exec sleep 300\n").await?;
    let containers = ctx.cloud().containers()?.clone();
    let vms = ctx.cloud().vms()?.clone();
    let name = ctx.name("svc");
    let info = containers
        .create_service(ServiceSpec::new(&name, small(&img), 2))
        .await?;
    let victim = info.instances[0].vm.clone().ok_or("replica not placed")?;
    vms.stop_instance(&victim).await?;
    let moved = wait_service(&containers, &name, "replicas off the stopped VM", |i| {
        all_in(i, 2, &[InstanceState::Running])
            && i.instances.iter().all(|r| r.vm.as_deref() != Some(&victim))
    })
    .await?;
    ensure!(
        moved.instances.iter().all(|r| r.vm.is_some()),
        "{:?}",
        moved.instances
    );
    containers.delete_service(&name).await?;
    drop_repo(ctx, "move").await?;
    hosts.remove(ctx).await
}

/// When every VM stops, the replicas wait (Pending, on no VM) instead of running unplaced;
/// when the VMs run again, every replica is placed on one and runs.
pub async fn replicas_return_to_vms_after_a_full_outage(ctx: &mut Ctx) -> Outcome {
    let hosts = Hosts::new(ctx, 44, 1).await?;
    let img = image(ctx, "outage", "v1", "exec sleep 300\n").await?;
    let containers = ctx.cloud().containers()?.clone();
    let vms = ctx.cloud().vms()?.clone();
    let name = ctx.name("svc");
    containers
        .create_service(ServiceSpec::new(&name, small(&img), 2))
        .await?;
    wait_service(&containers, &name, "2 running on VMs", |i| {
        all_in(i, 2, &[InstanceState::Running]) && i.instances.iter().all(|r| r.vm.is_some())
    })
    .await?;
    for vm in &hosts.vms {
        vms.stop_instance(vm).await?;
    }
    wait_service(
        &containers,
        &name,
        "replicas waiting during the outage",
        |i| {
            i.instances.len() == 2
                && i.instances
                    .iter()
                    .all(|r| r.state == InstanceState::Pending && r.vm.is_none())
        },
    )
    .await?;
    for vm in &hosts.vms {
        vms.start_instance(vm).await?;
    }
    let back = wait_service(&containers, &name, "replicas on VMs again", |i| {
        all_in(i, 2, &[InstanceState::Running])
            && i.instances
                .iter()
                .all(|r| r.vm.as_ref().is_some_and(|v| hosts.vms.contains(v)))
    })
    .await?;
    ensure!(back.instances.len() == 2, "{:?}", back.instances);
    containers.delete_service(&name).await?;
    drop_repo(ctx, "outage").await?;
    hosts.remove(ctx).await
}

/// A schedule runs once its time comes on the (manual) clock, and not before.
pub async fn schedule_runs_on_manual_clock(ctx: &mut Ctx) -> Outcome {
    let img = image(ctx, "cron", "v1", "echo scheduled-run\n").await?;
    let containers = ctx.cloud().containers()?.clone();
    let logs = ctx.cloud().logs()?.clone();
    let name = ctx.name("cron");
    containers
        .put_schedule(ScheduleSpec::new(name.clone(), "0 * * * *", small(&img)))
        .await?;
    let group = format!("/mvi/tasks/{name}");
    ctx.clock().advance(Duration::from_secs(3600));
    wait_log(&logs, &group, "scheduled-run").await?;
    containers.delete_schedule(&name).await?;
    logs.delete_group(&group).await?;
    drop_repo(ctx, "cron").await
}

/// Services and schedules survive a restart, and the service runs again.
pub async fn service_survives_reopen(ctx: &mut Ctx) -> Outcome {
    let img = image(ctx, "reopen", "v1", "exec sleep 300\n").await?;
    let name = ctx.name("svc");
    let sched = ctx.name("sched");
    {
        let containers = ctx.cloud().containers()?.clone();
        containers
            .create_service(ServiceSpec::new(&name, small(&img), 2))
            .await?;
        wait_service(&containers, &name, "2 running", |i| {
            all_in(i, 2, &[InstanceState::Running])
        })
        .await?;
        containers
            .put_schedule(ScheduleSpec::new(sched.clone(), "0 3 * * *", small(&img)))
            .await?;
    }
    ctx.reopen().await?;
    let containers = ctx.cloud().containers()?.clone();
    wait_service(&containers, &name, "2 running after reopen", |i| {
        all_in(i, 2, &[InstanceState::Running])
    })
    .await?;
    ensure!(
        containers
            .list_schedules()
            .await?
            .iter()
            .any(|s| s.name == sched),
        "schedule lost"
    );
    containers.delete_schedule(&sched).await?;
    containers.delete_service(&name).await?;
    drop_repo(ctx, "reopen").await
}
