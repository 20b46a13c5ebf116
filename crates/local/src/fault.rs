//! API fault injection on the local backend: core's [`Faults`] layer, which
//! `LocalCloud::builder().faults(faults.clone())` wraps every service in (see
//! [`mvi_core::fault`]). Host failures (a crashed VM, a failed zone, a killed replica) are the
//! VM and container services' ([`crate::LocalCloud::host_faults`]).

use std::sync::Arc;

use async_trait::async_trait;
use mvi_core::Result;
use mvi_core::experiment::HostFaults;

pub use mvi_core::fault::{FaultRule, Faults};

use crate::container::LocalContainers;
use crate::vm::LocalVms;

/// The local backend's host faults, for fault experiments ([`mvi_core::experiment`]): VMs
/// crash and zones fail on the VM service, replicas are killed on the container service.
#[derive(Debug, Clone)]
pub struct LocalHostFaults {
    pub(crate) vms: Arc<LocalVms>,
    pub(crate) containers: Arc<LocalContainers>,
}

#[async_trait]
impl HostFaults for LocalHostFaults {
    async fn crash_vm(&self, id: &str) -> Result<()> {
        self.vms.crash_instance(id).map(|_| ())
    }

    async fn fail_zone(&self, zone: &str) -> Result<Vec<String>> {
        self.vms.fail_zone(zone)
    }

    async fn restore_zone(&self, zone: &str) -> Result<()> {
        self.vms.restore_zone(zone)
    }

    async fn kill_replica(&self, service: &str, instance: &str) -> Result<()> {
        self.containers.kill_replica(service, instance)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LocalCloud;
    use mvi_core::KvExt;
    use mvi_core::kv::{KeyAttr, KeyType, TableSpec};
    use mvi_core::{ErrorKind, Service};
    use std::time::Duration;

    /// An in-memory cloud wrapped in new faults seeded `seed`.
    async fn faulty_cloud(seed: u64) -> (Faults, mvi_core::Cloud) {
        let faults = Faults::new(seed);
        let cloud = LocalCloud::builder()
            .in_memory()
            .faults(faults.clone())
            .build()
            .await
            .unwrap();
        (faults, cloud)
    }

    async fn outcomes(seed: u64) -> Vec<bool> {
        let (faults, cloud) = faulty_cloud(seed).await;
        let kv = cloud.kv().unwrap();
        kv.create_table(TableSpec::new("faulty", KeyAttr::new("id", KeyType::Str)))
            .await
            .unwrap();
        faults.set(Service::Kv, FaultRule::errors(0.5)).unwrap();
        let mut out = Vec::new();
        for i in 0..40 {
            let r = kv
                .put("faulty", mvi_core::item! { "id" => format!("k{i}") })
                .await;
            if let Err(e) = &r {
                assert_eq!(e.kind(), ErrorKind::Unavailable);
                assert!(e.is_retryable());
                assert!(e.to_string().contains("injected fault"), "{e}");
            }
            out.push(r.is_ok());
        }
        assert_eq!(
            faults.injected() as usize,
            out.iter().filter(|ok| !**ok).count()
        );
        // Other services are untouched, and clearing heals.
        cloud.blob().unwrap().create_bucket("fine").await.unwrap();
        faults.clear();
        kv.put("faulty", mvi_core::item! { "id" => "after" })
            .await
            .unwrap();
        out
    }

    #[tokio::test]
    async fn same_seed_same_failures() {
        let a = outcomes(7).await;
        assert_eq!(a, outcomes(7).await);
        assert!(a.iter().any(|ok| *ok) && a.iter().any(|ok| !*ok), "{a:?}");
        assert_ne!(a, outcomes(8).await);
    }

    #[tokio::test]
    async fn every_call_fails_at_rate_one_and_latency_is_added() {
        let (faults, cloud) = faulty_cloud(1).await;
        faults
            .set_all(FaultRule::errors(1.0).kind(ErrorKind::Timeout))
            .unwrap();
        let err = cloud.blob().unwrap().list_buckets().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout);
        assert_eq!(err.operation(), "list_buckets");
        faults
            .set_all(FaultRule::delay(Duration::from_millis(30)))
            .unwrap();
        let start = std::time::Instant::now();
        cloud.blob().unwrap().list_buckets().await.unwrap();
        assert!(start.elapsed() >= Duration::from_millis(30));
        assert!(faults.set_all(FaultRule::errors(1.5)).is_err());
    }

    #[tokio::test]
    async fn injected_rules_stack_on_the_own_rule_and_withdraw_alone() {
        let (faults, cloud) = faulty_cloud(3).await;
        let blob = cloud.blob().unwrap();
        blob.create_bucket("first").await.unwrap();
        // The service's own rule only delays; an injection fails one operation only.
        faults
            .set(Service::Blob, FaultRule::delay(Duration::from_millis(1)))
            .unwrap();
        let injection = faults
            .inject(
                Service::Blob,
                FaultRule::errors(1.0).operations(["list_buckets"]),
            )
            .unwrap();
        assert_eq!(faults.injections(), 1);
        let err = blob.list_buckets().await.unwrap_err();
        assert_eq!(err.operation(), "list_buckets");
        // Other operations of the service run.
        blob.create_bucket("second").await.unwrap();
        faults.withdraw(injection);
        blob.list_buckets().await.unwrap();
        // The own rule is still there.
        assert_eq!(
            faults.rule(Service::Blob),
            Some(FaultRule::delay(Duration::from_millis(1)))
        );
        let bad = faults.inject(
            Service::Blob,
            FaultRule::errors(0.5).operations(["Put Object"]),
        );
        assert!(bad.unwrap_err().to_string().contains("\"Put Object\""));
    }
}
