//! A container spec's grants become the task role of its task definitions on ECS, as moto
//! simulates IAM and ECS: the role trusts ECS tasks, its one inline policy lists exactly the
//! granted actions and ARNs, the task definition names it, a new revision's grants rewrite
//! it, and deleting the service deletes it.
#![cfg(all(feature = "ecs", feature = "ecr"))]
#![allow(clippy::unwrap_used)]

#[path = "../../../tests/common/repo.rs"]
mod repo;

use mvi_aws::moto::MotoServer;
use mvi_core::access::{Account, Grant, Policy};
use mvi_core::container::{ContainerSpec, ServiceSpec};
use mvi_core::image::{ImageConfig, build_from_dir};

const REGION: &str = "eu-west-1";

/// IAM answers policy documents URL-encoded (RFC 3986); moto may not.
fn decoded(doc: &str) -> String {
    let bytes = doc.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = doc
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// The role's `mvi-grants` policy document.
async fn grants_policy(iam: &aws_sdk_iam::Client, role: &str) -> serde_json::Value {
    let policy = iam
        .get_role_policy()
        .role_name(role)
        .policy_name("mvi-grants")
        .send()
        .await
        .unwrap();
    serde_json::from_str(&decoded(policy.policy_document())).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_become_the_task_role_and_its_policy() {
    let moto = MotoServer::options()
        .env("MOTO_ECS_SERVICE_RUNNING", "1")
        .start()
        .unwrap();
    let cloud = moto.cloud(REGION).build().await.unwrap();
    let config = moto.sdk_config(REGION).await;
    let iam = aws_sdk_iam::Client::new(&config);
    let ecs = aws_sdk_ecs::Client::new(&config);
    let images = cloud.images().unwrap();
    images.create_repository("web").await.unwrap();
    let app = repo::package_path("../../examples/webapp");
    let image = ImageConfig::new(["python3", "app.py"]).working_dir("/");
    build_from_dir(images.as_ref(), "web", &app, &image, Some("v1"))
        .await
        .unwrap();

    let grants = vec![
        Grant::bucket_read_write("uploads"),
        Grant::table_read_write("visits"),
    ];
    let mut c = ContainerSpec::new("web:v1");
    c.grants = grants.clone();
    let containers = cloud.containers().unwrap();
    let info = containers
        .create_service(ServiceSpec::new("web", c.clone(), 1))
        .await
        .unwrap();
    assert_eq!(info.spec.container.grants, grants, "the grants read back");

    // The task definition names a role trusted by ECS tasks...
    let services = ecs
        .describe_services()
        .cluster("mvi")
        .services("web")
        .send()
        .await
        .unwrap();
    let definition = services.services()[0].task_definition().unwrap().to_owned();
    let def = ecs
        .describe_task_definition()
        .task_definition(&definition)
        .send()
        .await
        .unwrap();
    let role_arn = def
        .task_definition()
        .unwrap()
        .task_role_arn()
        .unwrap()
        .to_owned();
    let role_name = role_arn.rsplit('/').next().unwrap().to_owned();
    let role = iam.get_role().role_name(&role_name).send().await.unwrap();
    assert_eq!(role.role().unwrap().arn(), role_arn);
    let trust = decoded(role.role().unwrap().assume_role_policy_document().unwrap());
    assert!(trust.contains("ecs-tasks.amazonaws.com"), "{trust}");

    // ... whose one inline policy is exactly the grants' actions on their ARNs.
    let account = role_arn.split(':').nth(4).unwrap().to_owned();
    let expected =
        |grants: &[Grant]| Policy::of_grants(&Account::new(REGION, &account), grants).to_document();
    let policies = iam
        .list_role_policies()
        .role_name(&role_name)
        .send()
        .await
        .unwrap();
    assert_eq!(policies.policy_names(), ["mvi-grants"]);
    let document = grants_policy(&iam, &role_name).await;
    assert_eq!(document, expected(&grants));
    // What a stack's preview and `policy` output show is the role's policy, exactly.
    let told = cloud
        .containers()
        .unwrap()
        .access_policy(&grants)
        .await
        .unwrap()
        .to_document();
    assert_eq!(
        told, document,
        "access_policy differs from the role's inline policy"
    );
    let actions: Vec<&str> = document["Statement"][0]["Action"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert!(actions.contains(&"s3:PutObject") && !actions.contains(&"s3:DeleteBucket"));
    assert_eq!(
        document["Statement"][0]["Resource"][0],
        "arn:aws:s3:::uploads"
    );

    // A revision with fewer grants rewrites the policy.
    let mut c2 = c.clone();
    c2.grants = vec![Grant::bucket_read("uploads")];
    containers
        .update_service(ServiceSpec::new("web", c2.clone(), 1))
        .await
        .unwrap();
    let document = grants_policy(&iam, &role_name).await;
    assert_eq!(document, expected(&c2.grants));

    // Deleting the service deletes the role.
    containers.delete_service("web").await.unwrap();
    let gone = iam.get_role().role_name(&role_name).send().await;
    assert!(gone.is_err(), "the task role outlived its service");
}
