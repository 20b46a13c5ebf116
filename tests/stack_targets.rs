//! Targeted runs (`Options::target`, the CLI's `--target`): only the named resources are
//! created, updated, replaced or deleted; everything else stays as recorded. A run that would
//! break what it leaves alone is refused before it changes anything.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

#[path = "common/inventory.rs"]
mod inventory;

use std::path::Path;

use mvi::stack::resources::{Bucket, BucketArgs, Subnet, SubnetArgs, Vpc, VpcArgs};
use mvi::stack::{FileStore, Options, Stack, StepOp};
use mvi::{Cloud, ErrorKind};

async fn open(root: &Path) -> Cloud {
    mvi::local::LocalCloud::builder()
        .root(root.join("cloud"))
        .seed(3)
        .build()
        .await
        .unwrap()
}

fn stack(cloud: &Cloud, root: &Path) -> Stack {
    Stack::new("t", cloud.clone(), FileStore::new(root.join("stacks"))).unwrap()
}

/// Buckets `names`, the first one exported.
fn with_buckets(cloud: &Cloud, root: &Path, names: &[&str]) -> Stack {
    let s = stack(cloud, root);
    for (i, n) in names.iter().enumerate() {
        let b = Bucket::new(&s, n, BucketArgs::new(format!("tt-{n}"))).unwrap();
        if i == 0 {
            s.export("first", &b.name).unwrap();
        }
    }
    s
}

/// A VPC (its `generation` tag replaces it) and a subnet in it.
fn network(cloud: &Cloud, root: &Path, generation: &str) -> Stack {
    let s = stack(cloud, root);
    let vpc = Vpc::new(
        &s,
        "vpc",
        VpcArgs::new("10.1.0.0/16").tag("generation", generation),
    )
    .unwrap();
    Subnet::new(&s, "subnet", SubnetArgs::new(&vpc.id, "10.1.1.0/24")).unwrap();
    s.export("vpc", &vpc.id).unwrap();
    s
}

async fn vpcs(cloud: &Cloud) -> Vec<(String, usize)> {
    let net = cloud.networks().unwrap();
    let mut out = Vec::new();
    for v in net.list_vpcs().await.unwrap() {
        let subnets = net.list_subnets(&v.id).await.unwrap().len();
        out.push((v.id, subnets));
    }
    out
}

#[tokio::test]
async fn a_targeted_up_creates_and_deletes_only_its_targets() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let cloud = open(root).await;

    let s = with_buckets(&cloud, root, &["a", "b", "c"]);
    let plan = s
        .preview_with(Options::default().target("b"))
        .await
        .unwrap();
    let names: Vec<(&str, StepOp)> = plan.steps.iter().map(|s| (&*s.name, s.op)).collect();
    assert_eq!(names, [("b", StepOp::Create)], "{plan}");

    // By name, and by a pattern of URNs.
    let report = s
        .up_with(
            Options::default()
                .target("b")
                .target("t::mvi:blob:Bucket::c*"),
        )
        .await
        .unwrap();
    assert_eq!(report.plan.count(StepOp::Create), 2, "{}", report.plan);
    assert_eq!(inventory::bucket_names(&cloud).await, ["tt-b", "tt-c"]);
    // `a`, left alone, is not made: its output is not there either.
    assert!(
        !report.outputs.contains_key("first"),
        "{:?}",
        report.outputs
    );

    // The rest comes with a full run.
    let report = s.up().await.unwrap();
    assert_eq!(report.plan.count(StepOp::Create), 1, "{}", report.plan);
    assert_eq!(
        inventory::bucket_names(&cloud).await,
        ["tt-a", "tt-b", "tt-c"]
    );

    // `b` and `c` leave the program; a run targeting `a` deletes neither.
    let s = with_buckets(&cloud, root, &["a"]);
    let report = s.up_with(Options::default().target("a")).await.unwrap();
    assert!(report.plan.is_empty(), "{}", report.plan);
    assert_eq!(
        inventory::bucket_names(&cloud).await,
        ["tt-a", "tt-b", "tt-c"]
    );
    assert_eq!(report.outputs["first"], "tt-a");
    // Targeting `c` (recorded, no longer declared) deletes it alone.
    let report = s.up_with(Options::default().target("c")).await.unwrap();
    let names: Vec<(&str, StepOp)> = report.plan.steps.iter().map(|s| (&*s.name, s.op)).collect();
    assert_eq!(names, [("c", StepOp::Delete)], "{}", report.plan);
    assert_eq!(inventory::bucket_names(&cloud).await, ["tt-a", "tt-b"]);

    // A targeted destroy: `b` goes, `a` and the outputs stay.
    let report = s
        .destroy_with(Options::default().target("t::mvi:blob:Bucket::b"))
        .await
        .unwrap();
    assert_eq!(report.plan.count(StepOp::Delete), 1, "{}", report.plan);
    assert_eq!(inventory::bucket_names(&cloud).await, ["tt-a"]);
    assert_eq!(s.outputs().await.unwrap()["first"], "tt-a");
}

#[tokio::test]
async fn a_target_that_names_nothing_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let cloud = open(root).await;
    let s = with_buckets(&cloud, root, &["a"]);
    for run in [
        s.preview_with(Options::default().target("nope"))
            .await
            .err(),
        s.up_with(Options::default().target("a").target("nope"))
            .await
            .err(),
        s.destroy_with(Options::default().target("t::mvi:kv:*"))
            .await
            .err(),
    ] {
        let e = run.expect("a target naming nothing must be refused");
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
        assert!(e.to_string().contains("no resource of the stack"), "{e}");
    }
    // Nothing was made by the refused up, though `a` was a good target.
    assert!(inventory::bucket_names(&cloud).await.is_empty());
}

#[tokio::test]
async fn a_targeted_run_that_would_break_what_it_leaves_alone_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let cloud = open(root).await;

    // A subnet needs its VPC: targeting the subnet alone on a fresh stack is refused.
    let s = network(&cloud, root, "one");
    let e = s
        .up_with(Options::default().target("subnet"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PreconditionFailed, "{e}");
    assert!(e.to_string().contains("t::mvi:vpc:Vpc::vpc"), "{e}");
    assert!(vpcs(&cloud).await.is_empty());
    s.up().await.unwrap();
    let before = vpcs(&cloud).await;
    assert_eq!(before.len(), 1);

    // A tag change replaces the VPC: targeting it alone would leave the subnet in the old one.
    let s = network(&cloud, root, "two");
    for e in [
        s.preview_with(Options::default().target("vpc"))
            .await
            .unwrap_err(),
        s.up_with(Options::default().target("vpc"))
            .await
            .unwrap_err(),
    ] {
        assert_eq!(e.kind(), ErrorKind::PreconditionFailed, "{e}");
        assert!(e.to_string().contains("replaced"), "{e}");
        assert!(e.to_string().contains("subnet"), "{e}");
        assert!(e.to_string().contains("--target-dependents"), "{e}");
    }
    assert_eq!(
        vpcs(&cloud).await,
        before,
        "a refused run changed something"
    );
    // Nor can the VPC be destroyed from under it.
    let e = s
        .destroy_with(Options::default().target("vpc"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PreconditionFailed, "{e}");
    assert_eq!(vpcs(&cloud).await, before);

    // With its dependents, the replacement goes through: the subnet moves, the old VPC goes.
    let report = s
        .up_with(Options::default().target("vpc").target_dependents())
        .await
        .unwrap();
    assert_eq!(report.plan.count(StepOp::Replace), 2, "{}", report.plan);
    let after = vpcs(&cloud).await;
    assert_eq!(after.len(), 1, "{after:?}");
    assert_ne!(after[0].0, before[0].0);
    assert_eq!(after[0].1, 1, "the subnet is in the new VPC");
    assert!(s.preview().await.unwrap().is_empty());

    // A targeted destroy with dependents takes both, dependents first.
    let report = s
        .destroy_with(Options::default().target("vpc").target_dependents())
        .await
        .unwrap();
    let order: Vec<&str> = report.plan.steps.iter().map(|s| &*s.name).collect();
    assert_eq!(order, ["subnet", "vpc"]);
    assert!(vpcs(&cloud).await.is_empty());
}
