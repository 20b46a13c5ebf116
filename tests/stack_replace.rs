//! Replacements ordered as Pulumi orders them: a resource replaced by creating the new one
//! first is deleted only at the end of the run, once every dependent has moved to the new
//! one; one replaced by deleting it first takes the dependents that must go with it first.
//! A delete that fails stays recorded and is retried by every later run; a run killed at any
//! point of a replacement converges on the next with no orphan.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mvi::stack::resources::{
    SecurityGroup, SecurityGroupArgs, Subnet, SubnetArgs, Vm, VmArgs, Vpc, VpcArgs,
};
use mvi::stack::{
    Args, Cx, ErasedInput, FileStore, Input, Resource, ResourceOptions, Stack, StepOp, erase,
};
use mvi::vm::VmState;
use mvi::{Cloud, ErrorKind};
use rand::{Rng, SeedableRng};

const CHILD: &str = "MVI_STACK_REPLACE_ROOT";
const TAG: &str = "MVI_STACK_REPLACE_TAG";
const KILLS: usize = 30;
const SEED: u64 = 20261202;

async fn open(root: &Path) -> Cloud {
    mvi::local::LocalCloud::builder()
        .root(root.join("cloud"))
        .seed(12)
        .build()
        .await
        .unwrap()
}

/// A VPC whose `generation` tag replaces it, with two subnets, a security group and a VM in
/// each subnet: every one of them has to move to the new VPC.
fn network(cloud: &Cloud, root: &Path, generation: &str) -> Stack {
    let s = Stack::new("net", cloud.clone(), FileStore::new(root.join("stacks"))).unwrap();
    let vpc = Vpc::new(
        &s,
        "vpc",
        VpcArgs::new("10.0.0.0/16").tag("generation", generation),
    )
    .unwrap();
    let sg = SecurityGroup::new(
        &s,
        "web-sg",
        SecurityGroupArgs::new(&vpc.id, "web").ingress(80, 80, "0.0.0.0/0"),
    )
    .unwrap();
    for (i, cidr) in ["10.0.1.0/24", "10.0.2.0/24"].iter().enumerate() {
        let subnet =
            Subnet::new(&s, &format!("subnet-{i}"), SubnetArgs::new(&vpc.id, *cidr)).unwrap();
        Vm::new(
            &s,
            &format!("vm-{i}"),
            VmArgs::new(format!("web-{i}"), "t3.small", "ami-local", &subnet.id)
                .security_group(&sg.id),
        )
        .unwrap();
    }
    s
}

/// What exists, through the service APIs: VPCs with their subnets and groups, live VMs.
#[derive(Debug, PartialEq)]
struct Inventory {
    vpcs: Vec<(String, BTreeMap<String, String>)>,
    subnets: Vec<(String, String)>,
    groups: Vec<(String, String)>,
    vms: Vec<(String, String)>,
}

async fn inventory(cloud: &Cloud) -> Inventory {
    let net = cloud.networks().unwrap();
    let mut inv = Inventory {
        vpcs: Vec::new(),
        subnets: Vec::new(),
        groups: Vec::new(),
        vms: Vec::new(),
    };
    for v in net.list_vpcs().await.unwrap() {
        for s in net.list_subnets(&v.id).await.unwrap() {
            inv.subnets.push((v.id.clone(), s.id));
        }
        for g in net.list_security_groups(&v.id).await.unwrap() {
            if g.name == "web" {
                inv.groups.push((v.id.clone(), g.id));
            }
        }
        inv.vpcs.push((v.id, v.tags));
    }
    for vm in cloud.vms().unwrap().list_instances().await.unwrap() {
        if vm.state != VmState::Terminated {
            inv.vms.push((vm.spec.subnet.clone(), vm.id));
        }
    }
    inv
}

/// Exactly one VPC, tagged `generation`, holding both subnets, the group and both VMs.
fn assert_converged(inv: &Inventory, generation: &str) {
    assert_eq!(inv.vpcs.len(), 1, "orphaned VPCs: {inv:?}");
    let (vpc, tags) = &inv.vpcs[0];
    assert_eq!(tags["generation"], generation, "{inv:?}");
    assert_eq!(inv.subnets.len(), 2, "{inv:?}");
    assert!(inv.subnets.iter().all(|(v, _)| v == vpc), "{inv:?}");
    assert_eq!(inv.groups.len(), 1, "{inv:?}");
    assert_eq!(&inv.groups[0].0, vpc, "{inv:?}");
    assert_eq!(inv.vms.len(), 2, "orphaned or missing VMs: {inv:?}");
    for (subnet, _) in &inv.vms {
        assert!(
            inv.subnets.iter().any(|(_, s)| s == subnet),
            "a VM is in a subnet of no live VPC: {inv:?}"
        );
    }
}

#[tokio::test]
async fn replacing_a_vpc_moves_its_dependents_and_deletes_the_old_one_last() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let cloud = open(root).await;
    network(&cloud, root, "one").up().await.unwrap();
    // From a restarted program, as a new run is.
    drop(cloud);
    let cloud = open(root).await;
    let before = inventory(&cloud).await;
    assert_converged(&before, "one");

    let stack = network(&cloud, root, "two");
    let plan = stack.preview().await.unwrap();
    assert_eq!(plan.step("vpc").unwrap().op, StepOp::Replace, "{plan}");
    let report = stack.up().await.unwrap();
    for name in ["vpc", "subnet-0", "subnet-1", "web-sg", "vm-0", "vm-1"] {
        assert_eq!(
            report.plan.step(name).map(|s| s.op),
            Some(StepOp::Replace),
            "{name}: {}",
            report.plan
        );
    }
    // The old VPC is deleted once, at the end, after everything in it.
    let deletes: Vec<&str> = report
        .plan
        .steps
        .iter()
        .filter(|s| s.op == StepOp::Delete)
        .map(|s| s.urn.as_str())
        .collect();
    assert_eq!(deletes.len(), 1, "{deletes:?}");
    assert!(
        deletes[0].starts_with("net::mvi:vpc:Vpc::vpc#replaced#"),
        "{deletes:?}"
    );
    assert_eq!(
        report.plan.steps.last().map(|s| s.op),
        Some(StepOp::Delete),
        "{}",
        report.plan
    );

    let after = inventory(&cloud).await;
    assert_converged(&after, "two");
    assert_ne!(after.vpcs[0].0, before.vpcs[0].0, "the VPC was replaced");
    let state = stack.state().await.unwrap();
    assert_eq!(state.resources.len(), 6, "{:?}", state.resources.keys());
    assert!(state.pending.is_empty(), "{:?}", state.pending);
    assert!(stack.preview().await.unwrap().is_empty());
}

#[tokio::test]
async fn sigkill_during_a_vpc_replacement_converges_with_no_orphan() {
    if let Some(root) = std::env::var_os(CHILD) {
        let root = Path::new(&root);
        let cloud = open(root).await;
        let generation = std::env::var(TAG).unwrap();
        network(&cloud, root, &generation).up().await.unwrap();
        return;
    }
    let spawn = |root: &Path, generation: &str| {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "sigkill_during_a_vpc_replacement_converges_with_no_orphan",
                "--nocapture",
            ])
            .env(CHILD, root)
            .env(TAG, generation)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // A whole replacement, timed, to spread the kills over one.
    assert!(spawn(root, "g0").wait().unwrap().success());
    let started = Instant::now();
    assert!(spawn(root, "g1").wait().unwrap().success());
    let whole = started.elapsed();

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(SEED);
    let mut last = String::new();
    for k in 0..KILLS {
        // Each run replaces the VPC again (a new tag), from wherever the last one stopped.
        last = format!("g{}", k + 2);
        let mut child = spawn(root, &last);
        let delay = Duration::from_micros(rng.random_range(0..whole.as_micros() as u64));
        tokio::time::sleep(delay).await;
        let _ = child.kill(); // SIGKILL; it may have finished, which is fine too.
        child.wait().unwrap();
    }
    let cloud = open(root).await;
    let stack = network(&cloud, root, &last);
    stack.up().await.unwrap();
    assert_converged(&inventory(&cloud).await, &last);
    let state = stack.state().await.unwrap();
    assert!(state.pending.is_empty(), "{:?}", state.pending);
    assert_eq!(state.resources.len(), 6, "{:?}", state.resources.keys());
    assert!(stack.preview().await.unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------
// A resource type whose delete fails on demand.

/// What exists of the flaky type (id → key), and whether deletes fail.
static FLAKY: Mutex<(BTreeMap<String, String>, bool)> = Mutex::new((BTreeMap::new(), false));

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct FlakySpec {
    key: String,
}

struct FlakyArgs {
    key: Input<String>,
}

impl Args for FlakyArgs {
    fn props(&self, stack: &std::sync::Arc<str>) -> Vec<(&'static str, ErasedInput)> {
        vec![("key", erase(stack, &self.key))]
    }
}

struct Flaky;

#[mvi::async_trait]
impl Resource for Flaky {
    const TYPE: &'static str = "test:flaky:Thing";
    const REPLACE_ON: &'static [&'static str] = &["key"];
    const FIXED_NAME: bool = false;
    type Args = FlakySpec;
    type Outputs = FlakySpec;

    async fn create(_: Cx<'_>, args: &FlakySpec) -> mvi::Result<(String, FlakySpec)> {
        let mut f = FLAKY.lock().unwrap();
        let id = format!("thing-{}", f.0.len() + 100);
        f.0.insert(id.clone(), args.key.clone());
        Ok((id, args.clone()))
    }
    async fn find(_: Cx<'_>, _: &FlakySpec) -> mvi::Result<Option<String>> {
        Ok(None)
    }
    async fn read(
        _: Cx<'_>,
        id: &str,
        _: &FlakySpec,
    ) -> mvi::Result<Option<(FlakySpec, FlakySpec)>> {
        let f = FLAKY.lock().unwrap();
        Ok(f.0.get(id).map(|k| {
            let s = FlakySpec { key: k.clone() };
            (s.clone(), s)
        }))
    }
    async fn update(_: Cx<'_>, _: &str, _: &FlakySpec, new: &FlakySpec) -> mvi::Result<FlakySpec> {
        Ok(new.clone())
    }
    async fn delete(_: Cx<'_>, id: &str, _: &FlakySpec) -> mvi::Result<()> {
        let mut f = FLAKY.lock().unwrap();
        if f.1 {
            return Err(mvi::Error::new(
                ErrorKind::Unavailable,
                mvi::Service::Stack,
                "delete",
                format!("{id} cannot be deleted right now"),
            ));
        }
        f.0.remove(id);
        Ok(())
    }
}

#[tokio::test]
async fn a_replaced_resource_whose_delete_fails_stays_recorded_and_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let cloud = open(root).await;
    let declare = |key: &str| {
        let s = Stack::new("flaky", cloud.clone(), FileStore::new(root.join("stacks"))).unwrap();
        s.declare::<Flaky>(
            "thing",
            &FlakyArgs { key: key.into() },
            ResourceOptions::default(),
        )
        .unwrap();
        s
    };
    declare("a").up().await.unwrap();
    FLAKY.lock().unwrap().1 = true;
    let err = declare("b").up().await.unwrap_err();
    assert!(err.to_string().contains("cannot be deleted"), "{err}");
    // Both exist; the old one stays recorded, so no run forgets it.
    assert_eq!(FLAKY.lock().unwrap().0.len(), 2);
    let state = declare("b").state().await.unwrap();
    let old: Vec<&String> = state
        .resources
        .keys()
        .filter(|k| k.contains("#replaced#"))
        .collect();
    assert_eq!(old.len(), 1, "{:?}", state.resources.keys());
    // Every later run shows and retries the delete: refresh, preview, up.
    let plan = declare("b").preview().await.unwrap();
    assert_eq!(plan.count(StepOp::Delete), 1, "{plan}");
    assert!(declare("b").up().await.is_err());
    assert_eq!(FLAKY.lock().unwrap().0.len(), 2);
    FLAKY.lock().unwrap().1 = false;
    let report = declare("b").up().await.unwrap();
    assert_eq!(report.plan.count(StepOp::Delete), 1, "{}", report.plan);
    let left: Vec<String> = FLAKY.lock().unwrap().0.values().cloned().collect();
    assert_eq!(left, ["b"]);
    let state = declare("b").state().await.unwrap();
    assert_eq!(state.resources.len(), 1, "{:?}", state.resources.keys());
    assert!(declare("b").preview().await.unwrap().is_empty());
}
