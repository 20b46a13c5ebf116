//! Fault experiments on the AWS backend, against moto_server: the actions that go through
//! the cloud's own services (stopping VMs with EC2, rebooting a database with RDS) and
//! through the `Faults` layer (API errors on DynamoDB calls) run the same as locally.
//!
//! Declared capability skips (moto cannot show them):
//! - host faults (crashing VMs, failing zones, killing replicas) are the simulator's; on AWS
//!   they are FIS's, which moto does not emulate. The experiment refuses them before it
//!   starts, and this test checks that refusal.
//! - stop conditions: moto keeps alarms but never evaluates them against data, so an alarm
//!   never goes to ALARM by itself; they are proven on the local backend
//!   (`tests/experiment.rs` of the facade).
#![cfg(all(feature = "ec2", feature = "dynamodb", feature = "rds"))]
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use mvi_aws::moto::MotoServer;
use mvi_core::database::DatabaseSpec;
use mvi_core::experiment::{Action, ActionState, Experiment, Outcome, Target, Template};
use mvi_core::fault::Faults;
use mvi_core::kv::{Key, KeyAttr, KeyType, TableSpec};
use mvi_core::vm::{VmSpec, VmState};
use mvi_core::{ErrorKind, KvExt, Service};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_database_and_api_actions_run_on_aws() {
    let moto = MotoServer::options().start().unwrap();
    let faults = Faults::new(9);
    let cloud = moto
        .cloud("eu-west-1")
        .build()
        .await
        .unwrap()
        .layer(Arc::new(faults.clone()));
    let net = cloud.networks().unwrap();
    let vpc = net
        .create_vpc("10.2.0.0/16", Default::default())
        .await
        .unwrap();
    let zone = net.list_zones().await.unwrap().remove(0);
    let subnet = net
        .create_subnet(&vpc.id, "10.2.0.0/24", &zone, false)
        .await
        .unwrap();
    let vms = cloud.vms().unwrap();
    let mut ids = Vec::new();
    for i in 0..2 {
        let mut spec = VmSpec::new(
            format!("web-{i}"),
            "t3.micro",
            "ami-0123456789abcdef0",
            &subnet.id,
        );
        spec.tags.insert("role".into(), "web".into());
        ids.push(vms.run_instance(spec).await.unwrap().id);
    }
    let kv = cloud.kv().unwrap();
    kv.create_table(TableSpec::new("orders", KeyAttr::new("id", KeyType::Str)))
        .await
        .unwrap();
    cloud
        .databases()
        .unwrap()
        .create_database(DatabaseSpec::postgres("orders"))
        .await
        .unwrap();

    let template = Template::new("aws-actions")
        .target("web", Target::vms().tag("role", "web"))
        .target("kv", Target::api([Service::Kv]))
        .target("db", Target::database("orders"))
        .action(
            "stop-web",
            Action::stop_vms("web").duration(Duration::from_secs(2)),
        )
        .action(
            "kv-errors",
            Action::api_errors("kv", 100.0).duration(Duration::from_secs(2)),
        )
        .action(
            "reboot-db",
            Action::reboot_database("db").start_after(["stop-web"]),
        );
    let experiment = Experiment::new(template)
        .faults(faults.clone())
        .tick(Duration::from_millis(50));
    let run = experiment.run(&cloud);
    let probe = async {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = (None, None);
        while seen.0.is_none() || seen.1.is_none() {
            assert!(
                Instant::now() < deadline,
                "the faults never showed: {seen:?}"
            );
            if seen.0.is_none() {
                let all_stopped = {
                    let mut all = true;
                    for id in &ids {
                        all &= vms.describe_instance(id).await.unwrap().state == VmState::Stopped;
                    }
                    all
                };
                if all_stopped {
                    seen.0 = Some(());
                }
            }
            if seen.1.is_none()
                && let Err(e) = kv.get_item("orders", Key::new("1")).await
            {
                seen.1 = Some(e);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        seen.1.unwrap()
    };
    let (report, kv_error) = tokio::join!(run, probe);
    let report = report.unwrap();
    println!("{report}");
    assert_eq!(report.outcome, Outcome::Completed, "{report}");
    assert_eq!(kv_error.kind(), ErrorKind::Unavailable);
    assert!(
        kv_error.to_string().contains("injected fault"),
        "{kv_error}"
    );
    let mut stopped = report.action("stop-web").unwrap().resources.clone();
    stopped.sort();
    ids.sort();
    assert_eq!(stopped, ids);
    assert_eq!(
        report.action("reboot-db").unwrap().state,
        ActionState::Completed
    );
    assert!(report.revert_errors.is_empty(), "{report}");
    // Reverted: the VMs run again, DynamoDB answers.
    for id in &ids {
        assert_eq!(
            vms.describe_instance(id).await.unwrap().state,
            VmState::Running
        );
    }
    kv.put("orders", mvi_core::item! { "id" => "after" })
        .await
        .unwrap();
    assert_eq!(faults.injections(), 0);

    // Host faults are the simulator's: refused before anything is done.
    let zone_failure = Template::new("zone").action(
        "fail",
        Action::fail_zone(zone).duration(Duration::from_secs(1)),
    );
    let e = Experiment::new(zone_failure).run(&cloud).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(e.to_string().contains("aws backend"), "{e}");
}
