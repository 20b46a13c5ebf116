//! The quickstart stack (`examples/common/app_stack.rs`, the very program the quickstart runs
//! on the local simulator) previewed, applied and destroyed against moto_server; afterwards
//! nothing is left, checked by listing every service and, for what the traits cannot list
//! (target groups, task definitions), through the SDK itself.
#![cfg(all(
    feature = "s3",
    feature = "dynamodb",
    feature = "kms",
    feature = "logs",
    feature = "cloudwatch",
    feature = "ecr",
    feature = "ecs",
    feature = "elbv2",
    feature = "rds",
    feature = "ec2"
))]
#![allow(clippy::unwrap_used)]

// The shared program says `mvi::...`, as users of the facade crate do.
extern crate mvi_core as mvi;

#[path = "../../../examples/common/app_stack.rs"]
mod app_stack;
#[path = "../../../tests/common/repo.rs"]
mod repo;

use std::time::Instant;

use mvi_aws::moto::MotoServer;
use mvi_core::stack::{FileStore, StepOp};

const REGION: &str = "eu-west-1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_stack_up_and_destroy_on_moto() {
    let moto = MotoServer::options()
        // moto's ECS never runs tasks; this makes services report their replicas running,
        // as a steady service on AWS does.
        .env("MOTO_ECS_SERVICE_RUNNING", "2")
        .record_requests()
        .start()
        .unwrap();
    let cloud = moto.cloud(REGION).build().await.unwrap();
    let state = tempfile::tempdir().unwrap();
    let app = repo::package_path("../../examples/webapp");
    let site = app_stack::Site::aws(REGION, "ami-12c6146b", app);
    let declare = || app_stack::declare(&cloud, FileStore::new(state.path()), &site).unwrap();

    let before = app_stack::inventory(&cloud).await.unwrap();
    let plan = declare().preview().await.unwrap();
    let creates = plan.count(StepOp::Create);
    assert!(creates >= 20, "the plan creates every resource:\n{plan}");
    assert_eq!(
        plan.steps.len(),
        creates,
        "a fresh stack only creates:\n{plan}"
    );

    let calls = moto.request_count().unwrap();
    let started = Instant::now();
    let report = declare().up().await.unwrap();
    let took = started.elapsed();
    let calls = moto.request_count().unwrap() - calls;
    eprintln!("up: {creates} resources in {took:.2?}, {calls} AWS API calls");
    let url = report.outputs["url"].as_str().unwrap();
    assert!(url.starts_with("http://"), "{url}");
    assert!(
        report.outputs["image"]
            .as_str()
            .unwrap()
            .contains("quickstart/web"),
        "{:?}",
        report.outputs["image"]
    );
    let during = app_stack::inventory(&cloud).await.unwrap();
    let made: Vec<_> = during.difference(&before).collect();
    for kind in [
        "bucket ",
        "table ",
        "key ",
        "log group ",
        "alarm ",
        "repository ",
        "container service ",
        "schedule ",
        "load balancer ",
        "database ",
        "snapshot ",
        "vm ",
        "vpc ",
        "subnet ",
        "security group ",
    ] {
        assert!(
            made.iter().any(|r| r.starts_with(kind)),
            "no {kind}was created: {made:?}"
        );
    }

    // The same program again changes nothing.
    let again = declare().preview().await.unwrap();
    assert!(again.is_empty(), "second preview:\n{again}");

    let destroyed = declare().destroy().await.unwrap();
    assert_eq!(destroyed.plan.count(StepOp::Delete), creates);
    let after = app_stack::inventory(&cloud).await.unwrap();
    let left: Vec<_> = after.difference(&before).collect();
    assert!(left.is_empty(), "left behind: {left:?}");

    // What the traits cannot list, through the SDK.
    let config = moto.sdk_config(REGION).await;
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&config);
    let groups = elb.describe_target_groups().send().await.unwrap();
    assert!(
        groups.target_groups().is_empty(),
        "target groups left: {:?}",
        groups.target_groups()
    );
    let ecs = aws_sdk_ecs::Client::new(&config);
    let active = ecs
        .list_task_definitions()
        .status(aws_sdk_ecs::types::TaskDefinitionStatus::Active)
        .send()
        .await
        .unwrap();
    assert!(
        active.task_definition_arns().is_empty(),
        "task definitions left active: {:?}",
        active.task_definition_arns()
    );
}
