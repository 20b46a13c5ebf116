//! Scalers on Application Auto Scaling against moto_server: the scalable target, policies
//! and scheduled actions a scaler becomes, read back through the SDK itself, and the spec
//! read back through `describe_scaler`.
//!
//! Declared capability skips (moto cannot show them, so nothing here pretends it does):
//! - scaling itself: moto stores target-tracking policies (and makes their two CloudWatch
//!   alarms) but never evaluates them, and runs no scheduled action; the decisions are
//!   proven on the local backend (`tests/autoscale.rs` of the facade).
//! - scaling activities: moto has no DescribeScalingActivities.
//! - AWS's own checks of a policy (a target group label naming a real ALB pair, a metric
//!   that exists): moto accepts any configuration, so the tests check what mvi sends.
#![cfg(all(
    feature = "autoscaling",
    feature = "elbv2",
    feature = "ecr",
    feature = "cloudwatch"
))]
#![allow(clippy::unwrap_used)]

#[path = "../../../tests/common/repo.rs"]
mod repo;

use std::time::Duration;

use aws_sdk_applicationautoscaling::Client as Aas;
use aws_sdk_applicationautoscaling::types::{MetricType, ScalableDimension, ServiceNamespace};
use mvi_aws::moto::MotoServer;
use mvi_core::autoscale::{Behavior, MetricTarget, Policy, ScalerSpec, ScheduledAction, Select};
use mvi_core::container::{ContainerSpec, ServiceSpec};
use mvi_core::image::{ImageConfig, build_from_dir};
use mvi_core::lb::{ListenerSpec, LoadBalancerSpec, Protocol, TargetGroupSpec};
use mvi_core::metric::{MetricId, Statistic};
use mvi_core::{Cloud, ErrorKind};

const REGION: &str = "eu-west-1";
const RESOURCE: &str = "service/mvi/app";

struct Rig {
    _moto: MotoServer,
    cloud: Cloud,
    aas: Aas,
}

async fn rig() -> Rig {
    let moto = MotoServer::options().start().unwrap();
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
    lbs.create_target_group(TargetGroupSpec::new("web", Protocol::Http))
        .await
        .unwrap();
    lbs.create_load_balancer(LoadBalancerSpec::new(
        "front",
        vec![ListenerSpec {
            protocol: Protocol::Http,
            port: 80,
            forward: vec![("web".into(), 1)],
        }],
    ))
    .await
    .unwrap();
    let mut c = ContainerSpec::new("web:v1");
    c.port = Some(8080);
    let mut s = ServiceSpec::new("app", c, 2);
    s.target_group = Some("web".into());
    cloud.containers().unwrap().create_service(s).await.unwrap();
    Rig {
        cloud,
        aas: Aas::new(&config),
        _moto: moto,
    }
}

fn queue() -> MetricId {
    MetricId::new("app/jobs", "Enqueued").dimension("Queue", "mail")
}

fn full_spec() -> ScalerSpec {
    let mut behavior = Behavior::default();
    behavior.scale_up.stabilization = Duration::from_secs(30);
    behavior.scale_down.stabilization = Duration::from_secs(600);
    ScalerSpec::new("app", 2, 10)
        .track(MetricTarget::Cpu { target: 60.0 })
        .track(MetricTarget::RequestsPerReplica {
            target_group: "web".into(),
            target: 25.0,
        })
        .track(MetricTarget::Custom {
            metric: queue(),
            statistic: Statistic::Sum,
            target: 0.5,
            per_replica: false,
        })
        .behavior(behavior)
        .schedule(ScheduledAction {
            name: "weekday-peak".into(),
            cron: "30 7 * * 1-5".into(),
            min: Some(6),
            max: Some(20),
        })
        .schedule(ScheduledAction {
            name: "night".into(),
            cron: "0 22 * * *".into(),
            min: Some(1),
            max: None,
        })
        .period(Duration::from_secs(5))
}

impl Rig {
    async fn policies(&self) -> Vec<aws_sdk_applicationautoscaling::types::ScalingPolicy> {
        let mut p = self
            .aas
            .describe_scaling_policies()
            .service_namespace(ServiceNamespace::Ecs)
            .resource_id(RESOURCE)
            .send()
            .await
            .unwrap()
            .scaling_policies()
            .to_vec();
        p.sort_by(|a, b| a.policy_name().cmp(b.policy_name()));
        p
    }

    async fn actions(&self) -> Vec<aws_sdk_applicationautoscaling::types::ScheduledAction> {
        let mut a = self
            .aas
            .describe_scheduled_actions()
            .service_namespace(ServiceNamespace::Ecs)
            .resource_id(RESOURCE)
            .send()
            .await
            .unwrap()
            .scheduled_actions()
            .to_vec();
        a.sort_by(|a, b| a.scheduled_action_name().cmp(b.scheduled_action_name()));
        a
    }

    async fn targets(&self) -> Vec<aws_sdk_applicationautoscaling::types::ScalableTarget> {
        self.aas
            .describe_scalable_targets()
            .service_namespace(ServiceNamespace::Ecs)
            .send()
            .await
            .unwrap()
            .scalable_targets()
            .to_vec()
    }
}

/// A scaler becomes a scalable target on the desired count, one target-tracking policy per
/// metric (targets per minute where AWS counts per minute), cooldowns from the windows, and
/// scheduled actions in AWS's cron; the spec reads back exactly as it was put.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaler_maps_to_application_auto_scaling() {
    let rig = rig().await;
    let containers = rig.cloud.containers().unwrap();
    let spec = full_spec();
    let info = containers.put_scaler(spec.clone()).await.unwrap();
    assert_eq!(info.spec, spec);
    assert_eq!((info.min, info.max), (2, 10));

    let targets = rig.targets().await;
    assert_eq!(targets.len(), 1);
    let t = &targets[0];
    assert_eq!(t.resource_id(), RESOURCE);
    assert_eq!(
        t.scalable_dimension(),
        &ScalableDimension::EcsServiceDesiredCount
    );
    assert_eq!((t.min_capacity(), t.max_capacity()), (2, 10));

    let policies = rig.policies().await;
    let names: Vec<&str> = policies.iter().map(|p| p.policy_name()).collect();
    assert_eq!(names, ["mvi-0", "mvi-1", "mvi-2"]);
    let config = |i: usize| {
        policies[i]
            .target_tracking_scaling_policy_configuration()
            .unwrap()
    };
    for i in 0..3 {
        assert_eq!(config(i).scale_out_cooldown(), Some(30));
        assert_eq!(config(i).scale_in_cooldown(), Some(600));
        assert_eq!(config(i).disable_scale_in(), Some(false));
    }
    let cpu = config(0).predefined_metric_specification().unwrap();
    assert_eq!(
        cpu.predefined_metric_type(),
        &MetricType::EcsServiceAverageCpuUtilization
    );
    assert_eq!(config(0).target_value(), 60.0);
    let requests = config(1).predefined_metric_specification().unwrap();
    assert_eq!(
        requests.predefined_metric_type(),
        &MetricType::AlbRequestCountPerTarget
    );
    // 25 requests a second per replica are 1,500 a minute per target.
    assert_eq!(config(1).target_value(), 1500.0);
    let label = requests.resource_label().unwrap();
    assert!(
        label.starts_with("app/front/") && label.contains("/targetgroup/web/"),
        "{label}"
    );
    let custom = config(2).customized_metric_specification().unwrap();
    assert_eq!(custom.namespace(), Some("app/jobs"));
    assert_eq!(custom.metric_name(), Some("Enqueued"));
    assert_eq!(custom.dimensions()[0].name(), "Queue");
    assert_eq!(custom.dimensions()[0].value(), "mail");
    assert_eq!(custom.statistic().unwrap().as_str(), "Sum");
    assert_eq!(config(2).target_value(), 30.0);

    let actions = rig.actions().await;
    let got: Vec<(&str, &str, Option<i32>, Option<i32>)> = actions
        .iter()
        .map(|a| {
            let b = a.scalable_target_action().unwrap();
            (
                a.scheduled_action_name(),
                a.schedule(),
                b.min_capacity(),
                b.max_capacity(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("night", "cron(0 22 * * ? *)", Some(1), None),
            (
                "weekday-peak",
                "cron(30 7 ? * MON-FRI *)",
                Some(6),
                Some(20)
            ),
        ]
    );
    assert!(actions.iter().all(|a| a.timezone() == Some("UTC")));

    let read = containers.describe_scaler("app").await.unwrap();
    assert_eq!(read.spec, spec);
    assert!(read.decisions.is_empty());
}

/// A put replaces the scaler: policies and actions no longer in the spec are deleted, the
/// bounds are the new spec's. A change made outside mvi shows in the spec read back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_replaces_and_describe_shows_outside_changes() {
    let rig = rig().await;
    let containers = rig.cloud.containers().unwrap();
    containers.put_scaler(full_spec()).await.unwrap();
    let mut behavior = Behavior::default();
    behavior.scale_down.select = Select::Disabled;
    let smaller = ScalerSpec::new("app", 1, 4)
        .track(MetricTarget::Cpu { target: 70.0 })
        .behavior(behavior)
        .schedule(ScheduledAction {
            name: "night".into(),
            cron: "0 23 * * *".into(),
            min: None,
            max: Some(2),
        });
    let info = containers.put_scaler(smaller.clone()).await.unwrap();
    assert_eq!(info.spec, smaller);
    let policies = rig.policies().await;
    assert_eq!(policies.len(), 1);
    let c = policies[0]
        .target_tracking_scaling_policy_configuration()
        .unwrap();
    assert_eq!(c.target_value(), 70.0);
    assert_eq!(c.disable_scale_in(), Some(true));
    let actions = rig.actions().await;
    assert_eq!(actions.len(), 1);
    assert_eq!(actions[0].schedule(), "cron(0 23 * * ? *)");
    let t = &rig.targets().await[0];
    assert_eq!((t.min_capacity(), t.max_capacity()), (1, 4));

    // Someone changes the scaler in the console: the target and a schedule.
    rig.aas
        .register_scalable_target()
        .service_namespace(ServiceNamespace::Ecs)
        .resource_id(RESOURCE)
        .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
        .min_capacity(3)
        .max_capacity(4)
        .send()
        .await
        .unwrap();
    rig.aas
        .put_scheduled_action()
        .service_namespace(ServiceNamespace::Ecs)
        .resource_id(RESOURCE)
        .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
        .scheduled_action_name("night")
        .schedule("cron(0 1 * * ? *)")
        .send()
        .await
        .unwrap();
    let read = containers.describe_scaler("app").await.unwrap();
    assert_eq!((read.min, read.max), (3, 4), "the bounds in force");
    assert_eq!((read.spec.min, read.spec.max), (1, 4), "the bounds as put");
    assert_eq!(read.spec.schedules[0].cron, "cron(0 1 * * ? *)");
    assert_eq!(read.spec.metrics, smaller.metrics);
}

/// What Application Auto Scaling cannot do is refused before any request; a scaler of a
/// missing service is NotFound; both leave nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_scalers_leave_nothing() {
    let rig = rig().await;
    let containers = rig.cloud.containers().unwrap();
    let mut behavior = Behavior::default();
    behavior.scale_up.policies = vec![Policy::pods(1, Duration::from_secs(60))];
    let e = containers
        .put_scaler(full_spec().behavior(behavior))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(
        e.to_string().contains("no scaling policies per period"),
        "{e}"
    );
    let e = containers
        .put_scaler(
            ScalerSpec::new("app", 1, 4).track(MetricTarget::RequestsPerReplica {
                target_group: "nowhere".into(),
                target: 5.0,
            }),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    let e = containers
        .put_scaler(ScalerSpec::new("ghost", 1, 4).track(MetricTarget::Cpu { target: 50.0 }))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    let e = containers
        .put_scaler(ScalerSpec::new("app", 5, 4).track(MetricTarget::Cpu { target: 50.0 }))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(rig.targets().await.is_empty());
    assert!(rig.policies().await.is_empty());
    assert!(rig.actions().await.is_empty());
    let e = containers.describe_scaler("app").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}

/// Deleting the scaler deletes its target, policies, actions and document; deleting the
/// service deletes its scaler first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_scaler_and_service_leave_nothing() {
    let rig = rig().await;
    let containers = rig.cloud.containers().unwrap();
    containers.put_scaler(full_spec()).await.unwrap();
    containers.delete_scaler("app").await.unwrap();
    assert!(rig.targets().await.is_empty());
    assert!(rig.policies().await.is_empty());
    assert!(rig.actions().await.is_empty());
    let e = containers.describe_scaler("app").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    let e = containers.delete_scaler("app").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");

    containers.put_scaler(full_spec()).await.unwrap();
    containers.delete_service("app").await.unwrap();
    assert!(rig.targets().await.is_empty());
    assert!(rig.policies().await.is_empty());
    assert!(rig.actions().await.is_empty());
}
