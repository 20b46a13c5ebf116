//! VM cases. Each case makes its own VPC and subnets, and removes them.

use std::sync::Arc;

use mvi_core::vm::{VmSpec, VmState};
use mvi_core::vpc::{Networks, SubnetInfo, VpcInfo};

use crate::{Ctx, Outcome, ensure, expect_err};

/// Every VM case, as tests against `$target`.
#[macro_export]
macro_rules! vm_cases {
    ($target:expr) => {
        $crate::__cases! { $target;
            vm_run_describe_terminate => $crate::vm::run_describe_terminate;
            vm_zone_and_address_from_subnet => $crate::vm::zone_and_address_from_subnet;
            vm_stop_start => $crate::vm::stop_start;
            vm_terminated_cannot_start => $crate::vm::terminated_cannot_start;
            vm_list_excludes_terminated => $crate::vm::list_excludes_terminated;
            vm_unknown_size_refused => $crate::vm::unknown_size_refused;
            vm_bad_names_refused => $crate::vm::bad_names_refused;
            vm_unknown_subnet_not_found => $crate::vm::unknown_subnet_not_found;
            vm_group_of_other_vpc_refused => $crate::vm::group_of_other_vpc_refused;
            vm_unknown_instance_not_found => $crate::vm::unknown_instance_not_found;
            vm_tags_and_user_data_kept => $crate::vm::tags_and_user_data_kept;
            vm_state_survives_reopen => $crate::vm::state_survives_reopen [Reopen];
        }
    };
}

/// A placeholder machine image id; the local backend and moto accept any.
pub const IMAGE: &str = "ami-0123456789abcdef0";

struct Net {
    net: Arc<dyn Networks>,
    vpc: VpcInfo,
    subnets: Vec<SubnetInfo>,
}

impl Net {
    /// A VPC `10.<n>.0.0/16` with one /24 subnet in each of the first two zones.
    async fn new(ctx: &Ctx, n: u8) -> Result<Net, crate::Failure> {
        let net = ctx.cloud().networks()?.clone();
        let zones = net.list_zones().await?;
        let vpc = net
            .create_vpc(&format!("10.{n}.0.0/16"), Default::default())
            .await?;
        let mut subnets = Vec::new();
        for (i, zone) in zones.iter().take(2).enumerate() {
            subnets.push(
                net.create_subnet(&vpc.id, &format!("10.{n}.{i}.0/24"), zone, false)
                    .await?,
            );
        }
        Ok(Net { net, vpc, subnets })
    }

    async fn remove(self) -> Outcome {
        for s in &self.subnets {
            self.net.delete_subnet(&s.id).await?;
        }
        self.net.delete_vpc(&self.vpc.id).await?;
        Ok(())
    }
}

fn spec(ctx: &Ctx, subnet: &str) -> VmSpec {
    let mut s = VmSpec::new(ctx.name("vm"), "t3.micro", IMAGE, subnet);
    s.tags.insert("case".into(), ctx.name("vm"));
    s
}

/// A VM runs with its size's vCPUs and memory, is described, and terminates.
pub async fn run_describe_terminate(ctx: &mut Ctx) -> Outcome {
    let net = Net::new(ctx, 1).await?;
    let vms = ctx.cloud().vms()?.clone();
    let vm = vms.run_instance(spec(ctx, &net.subnets[0].id)).await?;
    ensure!(
        vm.state == VmState::Running || vm.state == VmState::Pending,
        "state {:?}",
        vm.state
    );
    ensure!(
        vm.vcpus == 2 && vm.memory_mib == 1024,
        "t3.micro is 2 vCPU / 1 GiB, got {} / {}",
        vm.vcpus,
        vm.memory_mib
    );
    let described = vms.describe_instance(&vm.id).await?;
    ensure!(
        described.spec.size == "t3.micro",
        "size {}",
        described.spec.size
    );
    vms.terminate_instance(&vm.id).await?;
    let gone = vms.describe_instance(&vm.id).await?;
    ensure!(
        gone.state == VmState::Terminated,
        "state after terminate {:?}",
        gone.state
    );
    net.remove().await
}

/// A VM takes the zone of its subnet and an address inside the subnet's block; two VMs get
/// different addresses.
pub async fn zone_and_address_from_subnet(ctx: &mut Ctx) -> Outcome {
    let net = Net::new(ctx, 2).await?;
    let vms = ctx.cloud().vms()?.clone();
    let a = vms.run_instance(spec(ctx, &net.subnets[0].id)).await?;
    let b = vms.run_instance(spec(ctx, &net.subnets[0].id)).await?;
    let c = vms.run_instance(spec(ctx, &net.subnets[1].id)).await?;
    ensure!(
        a.zone == net.subnets[0].zone && c.zone == net.subnets[1].zone,
        "zones {} {}",
        a.zone,
        c.zone
    );
    ensure!(
        a.private_ip.starts_with("10.2.0.") && c.private_ip.starts_with("10.2.1."),
        "addresses {} {}",
        a.private_ip,
        c.private_ip
    );
    ensure!(
        a.private_ip != b.private_ip,
        "two VMs share {}",
        a.private_ip
    );
    for vm in [a, b, c] {
        vms.terminate_instance(&vm.id).await?;
    }
    net.remove().await
}

/// A running VM stops and starts again.
pub async fn stop_start(ctx: &mut Ctx) -> Outcome {
    let net = Net::new(ctx, 3).await?;
    let vms = ctx.cloud().vms()?.clone();
    let vm = vms.run_instance(spec(ctx, &net.subnets[0].id)).await?;
    let stopped = vms.stop_instance(&vm.id).await?;
    ensure!(
        matches!(stopped.state, VmState::Stopped | VmState::Stopping),
        "after stop: {:?}",
        stopped.state
    );
    let started = vms.start_instance(&vm.id).await?;
    ensure!(
        matches!(started.state, VmState::Running | VmState::Pending),
        "after start: {:?}",
        started.state
    );
    vms.terminate_instance(&vm.id).await?;
    net.remove().await
}

/// A terminated VM cannot be started.
pub async fn terminated_cannot_start(ctx: &mut Ctx) -> Outcome {
    let net = Net::new(ctx, 4).await?;
    let vms = ctx.cloud().vms()?.clone();
    let vm = vms.run_instance(spec(ctx, &net.subnets[0].id)).await?;
    vms.terminate_instance(&vm.id).await?;
    expect_err!(vms.start_instance(&vm.id).await, PreconditionFailed);
    net.remove().await
}

/// Terminated VMs are not listed.
pub async fn list_excludes_terminated(ctx: &mut Ctx) -> Outcome {
    let net = Net::new(ctx, 5).await?;
    let vms = ctx.cloud().vms()?.clone();
    let keep = vms.run_instance(spec(ctx, &net.subnets[0].id)).await?;
    let gone = vms.run_instance(spec(ctx, &net.subnets[0].id)).await?;
    vms.terminate_instance(&gone.id).await?;
    let listed: Vec<String> = vms
        .list_instances()
        .await?
        .into_iter()
        .map(|v| v.id)
        .collect();
    ensure!(listed.contains(&keep.id), "running VM not listed");
    ensure!(!listed.contains(&gone.id), "terminated VM listed");
    vms.terminate_instance(&keep.id).await?;
    net.remove().await
}

/// An instance type that does not exist is InvalidArgument, naming it.
pub async fn unknown_size_refused(ctx: &mut Ctx) -> Outcome {
    let net = Net::new(ctx, 6).await?;
    let vms = ctx.cloud().vms()?.clone();
    let mut s = spec(ctx, &net.subnets[0].id);
    s.size = "t9.gigantic".into();
    let err = expect_err!(vms.run_instance(s).await, InvalidArgument);
    ensure!(
        err.to_string().contains("t9.gigantic"),
        "error does not name the size: {err}"
    );
    net.remove().await
}

/// Names are 1 to 256 characters without control characters; anything else is refused
/// before a VM is made.
pub async fn bad_names_refused(ctx: &mut Ctx) -> Outcome {
    let net = Net::new(ctx, 9).await?;
    let vms = ctx.cloud().vms()?.clone();
    let before = vms.list_instances().await?.len();
    for bad in [String::new(), "x".repeat(10_000), "tab\there".into()] {
        let mut s = spec(ctx, &net.subnets[0].id);
        s.name = bad.clone();
        let err = expect_err!(vms.run_instance(s).await, InvalidArgument);
        ensure!(
            err.to_string().len() < 2_000,
            "the error quotes the whole name: {} bytes",
            err.to_string().len()
        );
    }
    ensure!(vms.list_instances().await?.len() == before, "a VM was made");
    let mut s = spec(ctx, &net.subnets[0].id);
    s.name = "n".repeat(256);
    let vm = vms.run_instance(s).await?;
    vms.terminate_instance(&vm.id).await?;
    net.remove().await
}

/// A subnet that does not exist is NotFound.
pub async fn unknown_subnet_not_found(ctx: &mut Ctx) -> Outcome {
    let vms = ctx.cloud().vms()?.clone();
    expect_err!(
        vms.run_instance(spec(ctx, "subnet-0123456789abcdef0"))
            .await,
        NotFound
    );
    Ok(())
}

/// A security group of another VPC is refused.
pub async fn group_of_other_vpc_refused(ctx: &mut Ctx) -> Outcome {
    let net = Net::new(ctx, 7).await?;
    let other = net
        .net
        .create_vpc("10.8.0.0/16", Default::default())
        .await?;
    let group = net
        .net
        .create_security_group(&other.id, &ctx.name("other"))
        .await?;
    let vms = ctx.cloud().vms()?.clone();
    let mut s = spec(ctx, &net.subnets[0].id);
    s.security_groups.push(group.id.clone());
    expect_err!(vms.run_instance(s).await, InvalidArgument);
    net.net.delete_security_group(&group.id).await?;
    net.net.delete_vpc(&other.id).await?;
    net.remove().await
}

/// Operations on a VM that does not exist are NotFound.
pub async fn unknown_instance_not_found(ctx: &mut Ctx) -> Outcome {
    let vms = ctx.cloud().vms()?.clone();
    expect_err!(vms.describe_instance("i-0123456789abcdef0").await, NotFound);
    expect_err!(vms.stop_instance("i-0123456789abcdef0").await, NotFound);
    expect_err!(vms.start_instance("i-0123456789abcdef0").await, NotFound);
    Ok(())
}

/// Tags and user data are kept as given.
pub async fn tags_and_user_data_kept(ctx: &mut Ctx) -> Outcome {
    let net = Net::new(ctx, 9).await?;
    let vms = ctx.cloud().vms()?.clone();
    let mut s = spec(ctx, &net.subnets[1].id);
    s.user_data = Some("#!/bin/sh\necho hello\n".into());
    s.tags.insert("team".into(), "payments".into());
    let vm = vms.run_instance(s.clone()).await?;
    let described = vms.describe_instance(&vm.id).await?;
    ensure!(
        described.spec.tags.get("team").map(String::as_str) == Some("payments"),
        "tags {:?}",
        described.spec.tags
    );
    ensure!(
        described.spec.user_data == s.user_data,
        "user data {:?}",
        described.spec.user_data
    );
    vms.terminate_instance(&vm.id).await?;
    net.remove().await
}

/// VMs and their states survive a restart.
pub async fn state_survives_reopen(ctx: &mut Ctx) -> Outcome {
    let net = Net::new(ctx, 10).await?;
    let vms = ctx.cloud().vms()?.clone();
    let running = vms.run_instance(spec(ctx, &net.subnets[0].id)).await?;
    let stopped = vms.run_instance(spec(ctx, &net.subnets[1].id)).await?;
    vms.stop_instance(&stopped.id).await?;
    drop(vms);
    let (vpc, subnets) = (net.vpc.clone(), net.subnets.clone());
    drop(net);
    ctx.reopen().await?;
    let vms = ctx.cloud().vms()?.clone();
    let a = vms.describe_instance(&running.id).await?;
    let b = vms.describe_instance(&stopped.id).await?;
    ensure!(
        a.state == VmState::Running && a.private_ip == running.private_ip,
        "running VM changed: {a:?}"
    );
    ensure!(
        matches!(b.state, VmState::Stopped | VmState::Stopping),
        "stopped VM is {:?}",
        b.state
    );
    vms.terminate_instance(&a.id).await?;
    vms.terminate_instance(&b.id).await?;
    let net = Net {
        net: ctx.cloud().networks()?.clone(),
        vpc,
        subnets,
    };
    net.remove().await
}
