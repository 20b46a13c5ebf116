//! Deployments against moto_server: the API calls each strategy makes and what ECS, ELBv2
//! and SSM hold afterwards, read back through the SDK itself.
//!
//! Declared capability skips (moto cannot show them, so nothing here pretends it does):
//! - tasks that really run, and traffic: moto's ECS starts no container and registers no
//!   task with a target group, so a revision set never becomes healthy. The traffic
//!   controller is therefore checked up to its first wait (the set started in its target
//!   group, the rollout recorded) and through its abort (weights restored, sets deleted,
//!   the revision marked rolled back); promotion with real traffic is proven on the local
//!   backend (`tests/deploy.rs` of the facade).
//! - ECS's circuit breaker and rollback: moto reports a deployment COMPLETED as soon as it
//!   counts the desired tasks running (`MOTO_ECS_SERVICE_RUNNING`), and never fails one.
//! - the deployment configuration: moto keeps none, so it cannot be read back; how the
//!   bounds map to it is unit-tested (`container/deploy.rs`).
#![cfg(all(
    feature = "ecs",
    feature = "elbv2",
    feature = "ecr",
    feature = "cloudwatch"
))]
#![allow(clippy::unwrap_used)]

#[path = "../../../tests/common/repo.rs"]
mod repo;

use std::time::Duration;

use aws_sdk_ecs::types::DeploymentControllerType;
use mvi_aws::moto::MotoServer;
use mvi_core::container::{ContainerSpec, PRIMARY_SET, RevisionState, ServiceSpec};
use mvi_core::deploy::{BlueGreen, Count, Deployment, Rolling, Strategy, TrafficShift};
use mvi_core::image::{ImageConfig, build_from_dir};
use mvi_core::lb::{ListenerSpec, LoadBalancerSpec, Protocol, TargetGroupSpec, metric_names};
use mvi_core::{Cloud, ErrorKind};

const REGION: &str = "eu-west-1";

struct Rig {
    _moto: MotoServer,
    cloud: Cloud,
    ecs: aws_sdk_ecs::Client,
    elb: aws_sdk_elasticloadbalancingv2::Client,
}

async fn rig() -> Rig {
    let moto = MotoServer::options()
        // moto's ECS runs nothing; with this it counts the tasks a service wants as running
        // and calls its deployments completed, as a steady service on AWS is.
        .env("MOTO_ECS_SERVICE_RUNNING", "2")
        .start()
        .unwrap();
    let cloud = moto.cloud(REGION).build().await.unwrap();
    let config = moto.sdk_config(REGION).await;
    let images = cloud.images().unwrap();
    images.create_repository("web").await.unwrap();
    let app = repo::package_path("../../examples/webapp");
    let image = ImageConfig::new(["python3", "app.py"]).working_dir("/");
    build_from_dir(images.as_ref(), "web", &app, &image, Some("v1"))
        .await
        .unwrap();
    let lbs = cloud.load_balancers().unwrap();
    for group in ["web", "web-next"] {
        lbs.create_target_group(TargetGroupSpec::new(group, Protocol::Http))
            .await
            .unwrap();
    }
    let listener = |port, group: &str| ListenerSpec {
        protocol: Protocol::Http,
        port,
        forward: vec![(group.into(), 1)],
    };
    lbs.create_load_balancer(LoadBalancerSpec::new(
        "front",
        vec![listener(80, "web"), listener(81, "web-next")],
    ))
    .await
    .unwrap();
    Rig {
        cloud,
        ecs: aws_sdk_ecs::Client::new(&config),
        elb: aws_sdk_elasticloadbalancingv2::Client::new(&config),
        _moto: moto,
    }
}

fn spec(version: &str, deployment: Deployment) -> ServiceSpec {
    let mut c = ContainerSpec::new("web:v1");
    c.env.insert("APP_VERSION".into(), version.into());
    c.port = Some(8080);
    let mut s = ServiceSpec::new("app", c, 2);
    s.target_group = Some("web".into());
    s.deployment = deployment.progress_deadline(Duration::from_secs(3));
    s
}

impl Rig {
    async fn service(&self) -> aws_sdk_ecs::types::Service {
        let out = self
            .ecs
            .describe_services()
            .cluster("mvi")
            .services("app")
            .send()
            .await
            .unwrap();
        out.services()[0].clone()
    }

    /// The weights of the listener on `port` of `front`, by target group name.
    async fn weights(&self, port: i32) -> Vec<(String, i32)> {
        let lbs = self.elb.describe_load_balancers().send().await.unwrap();
        let arn = lbs.load_balancers()[0]
            .load_balancer_arn()
            .unwrap()
            .to_owned();
        let listeners = self
            .elb
            .describe_listeners()
            .load_balancer_arn(arn)
            .send()
            .await
            .unwrap();
        let l = listeners
            .listeners()
            .iter()
            .find(|l| l.port() == Some(port))
            .unwrap();
        let action = &l.default_actions()[0];
        let mut out: Vec<(String, i32)> = match action.forward_config() {
            Some(f) => f
                .target_groups()
                .iter()
                .map(|t| {
                    let arn = t.target_group_arn().unwrap_or_default();
                    let name = arn.split('/').nth(1).unwrap_or_default().to_owned();
                    (name, t.weight().unwrap_or(1))
                })
                .collect(),
            None => vec![(
                action
                    .target_group_arn()
                    .unwrap_or_default()
                    .split('/')
                    .nth(1)
                    .unwrap_or_default()
                    .to_owned(),
                1,
            )],
        };
        out.sort();
        out
    }
}

/// Rolling: the bounds become ECS's deployment configuration with the circuit breaker, an
/// update is a new task definition revision with secrets of its own, and waits until ECS
/// calls the deployment completed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_maps_to_ecs_deployment_configuration() {
    let rig = rig().await;
    let containers = rig.cloud.containers().unwrap();
    let bounds = Deployment::new(Strategy::Rolling(Rolling::new(
        Count::Replicas(1),
        Count::Percent(50),
    )));
    containers
        .create_service(spec("v1", bounds.clone()))
        .await
        .unwrap();
    let svc = rig.service().await;
    assert_eq!(
        svc.deployment_controller().map(|c| c.r#type()),
        Some(&DeploymentControllerType::Ecs)
    );
    // moto keeps no deploymentConfiguration (a declared skip): the bounds' mapping to it is
    // unit-tested in `container/deploy.rs`.

    let info = containers
        .update_service(spec("v2", bounds.clone()))
        .await
        .unwrap();
    assert_eq!(info.revision, 2);
    assert_eq!(info.spec.deployment, spec("v2", bounds).deployment);
    assert!(info.rollout.is_none(), "{:?}", info.rollout);
    assert!(
        rig.service()
            .await
            .task_definition()
            .unwrap()
            .ends_with(":2")
    );
    let revisions = containers.list_revisions("app").await.unwrap();
    let states: Vec<_> = revisions.iter().map(|r| (r.number, r.state)).collect();
    assert_eq!(
        states,
        [(1, RevisionState::Superseded), (2, RevisionState::Active)]
    );
    // A traffic strategy cannot take over a service made for rolling: ECS fixes the
    // controller when the service is made.
    let bg = Deployment::new(Strategy::BlueGreen(BlueGreen::new("web-next")));
    let e = containers.update_service(spec("v3", bg)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(e.to_string().contains("deployment controller"), "{e}");
    containers.delete_service("app").await.unwrap();
}

/// Blue-green and canary: the service has the EXTERNAL controller and one primary task set
/// in its target group; the controller starts a task set of the new revision in the second
/// group, and (the set never healthy on moto) aborts: the listeners' weights are as
/// before, the extra task set is gone, the revision is recorded rolled back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_strategies_use_task_sets_and_listener_weights() {
    let rig = rig().await;
    let containers = rig.cloud.containers().unwrap();
    let mut shift = TrafficShift::canary("web-next", 10, Duration::from_secs(1));
    shift.analysis.interval = Duration::from_secs(1);
    let canary = Deployment::new(Strategy::Canary(shift));
    let created = containers
        .create_service(spec("v1", canary.clone()))
        .await
        .unwrap();
    assert_eq!(created.revision, 1);
    let svc = rig.service().await;
    assert_eq!(
        svc.deployment_controller().map(|c| c.r#type()),
        Some(&DeploymentControllerType::External)
    );
    let sets = rig
        .ecs
        .describe_task_sets()
        .cluster("mvi")
        .service("app")
        .send()
        .await
        .unwrap();
    assert_eq!(sets.task_sets().len(), 1);
    assert_eq!(sets.task_sets()[0].status(), Some("PRIMARY"));
    assert!(
        sets.task_sets()[0].load_balancers()[0]
            .target_group_arn()
            .unwrap()
            .contains(":targetgroup/web/")
    );
    let info = containers.describe_service("app").await.unwrap();
    assert_eq!(info.spec.target_group.as_deref(), Some("web"));
    assert_eq!(info.sets.len(), 1);

    // The primitives the controller uses, one by one.
    let mut next = spec("v2", Deployment::default());
    next.target_group = Some("web-next".into());
    let set = containers.create_revision_set(next).await.unwrap();
    assert_eq!(
        (set.revision, set.target_group.as_deref()),
        (2, Some("web-next"))
    );
    let sets = containers.describe_service("app").await.unwrap().sets;
    assert_eq!(sets.len(), 2, "{sets:?}");
    rig.cloud
        .load_balancers()
        .unwrap()
        .set_weights(
            "front",
            80,
            vec![("web".into(), 90), ("web-next".into(), 10)],
        )
        .await
        .unwrap();
    assert_eq!(
        rig.weights(80).await,
        [("web".into(), 90), ("web-next".into(), 10)]
    );
    let old = containers
        .promote_revision_set("app", &set.id)
        .await
        .unwrap();
    assert_eq!(old.revision, 1);
    let info = containers.describe_service("app").await.unwrap();
    assert_eq!(info.revision, 2);
    assert_eq!(info.spec.target_group.as_deref(), Some("web-next"));
    containers
        .delete_revision_set("app", &old.id)
        .await
        .unwrap();
    let e = containers
        .delete_revision_set("app", PRIMARY_SET)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    let left = rig
        .ecs
        .describe_task_sets()
        .cluster("mvi")
        .service("app")
        .send()
        .await
        .unwrap();
    assert_eq!(left.task_sets().len(), 1);
    containers.delete_service("app").await.unwrap();

    // The controller end to end, up to what moto can show.
    rig.cloud
        .load_balancers()
        .unwrap()
        .set_weights("front", 80, vec![("web".into(), 1)])
        .await
        .unwrap();
    // ECS never numbers a family's revisions twice: the new service's first is not 1.
    let first = containers
        .create_service(spec("v1", canary.clone()))
        .await
        .unwrap()
        .revision;
    let e = mvi_core::deploy::deploy(&rig.cloud, spec("v2", canary))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DeploymentFailed, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("became healthy in target group web-next")
            && msg.contains(&format!("rolled back to revision {first}")),
        "{msg}"
    );
    assert_eq!(rig.weights(80).await, [("web".into(), 1)]);
    let info = containers.describe_service("app").await.unwrap();
    assert_eq!(info.sets.len(), 1, "{:?}", info.sets);
    assert!(info.rollout.is_none());
    assert_eq!(info.revision, first);
    let revisions = containers.list_revisions("app").await.unwrap();
    let failed = revisions.iter().find(|r| r.number == first + 1).unwrap();
    assert_eq!(failed.state, RevisionState::RolledBack);
    assert!(
        failed
            .reason
            .as_deref()
            .unwrap_or_default()
            .contains("healthy")
    );
    // CloudWatch names ELBv2's metrics by the ARNs' ends.
    let id = rig
        .cloud
        .load_balancers()
        .unwrap()
        .metric("front", Some("web-next"), metric_names::REQUESTS)
        .await
        .unwrap();
    assert_eq!(id.namespace, "AWS/ApplicationELB");
    assert!(id.dimensions["LoadBalancer"].starts_with("app/front/"));
    assert!(id.dimensions["TargetGroup"].starts_with("targetgroup/web-next/"));
    containers.delete_service("app").await.unwrap();
}
