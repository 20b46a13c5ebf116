//! Layers: cross-cutting behaviour wrapped around every service of a `Cloud`, written once
//! instead of in every backend.
//!
//! A [`Layer`] is asked before each operation of each service whether (and when) it may
//! proceed: it can delay the call (latency injection), fail it (error injection), count it or
//! trace it. [`crate::Cloud::layer`] wraps every service the cloud has; the simulator's fault
//! injection (`mvi_local::Faults`) is such a layer.

use std::fmt;
use std::sync::Arc;

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::common::*;
use crate::error::{Result, Service};

/// Behaviour run before every operation of the services it wraps.
#[async_trait]
pub trait Layer: fmt::Debug + Send + Sync + 'static {
    /// Called before `service`'s `operation` runs; an error is returned to the caller
    /// instead of running the operation.
    async fn before(&self, service: Service, operation: &'static str) -> Result<()>;
}

/// A service wrapped in a layer.
pub struct Layered<T: ?Sized> {
    inner: Arc<T>,
    layer: Arc<dyn Layer>,
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for Layered<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Layered")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

impl<T: ?Sized> Layered<T> {
    /// Wraps `inner` in `layer`.
    pub fn new(inner: Arc<T>, layer: Arc<dyn Layer>) -> Self {
        Layered { inner, layer }
    }
}

macro_rules! layered {
    ($trait:ident, $service:ident; $(fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {
        #[async_trait]
        impl $trait for Layered<dyn $trait> {
            $(
                async fn $name(&self, $($arg: $ty),*) -> $ret {
                    self.layer.before(Service::$service, stringify!($name)).await?;
                    self.inner.$name($($arg),*).await
                }
            )*
        }
    };
}

mod blob {
    use super::*;
    use crate::blob::*;

    layered! { Blob, Blob;
        fn create_bucket(bucket: &str) -> Result<BucketInfo>;
        fn delete_bucket(bucket: &str) -> Result<()>;
        fn list_buckets() -> Result<Vec<BucketInfo>>;
        fn put_object(req: PutObject) -> Result<ObjectMeta>;
        fn get_object(req: GetObject) -> Result<GetObjectOutput>;
        fn head_object(bucket: &str, key: &str) -> Result<ObjectMeta>;
        fn delete_object(bucket: &str, key: &str) -> Result<()>;
        fn copy_object(from_bucket: &str, from_key: &str, to_bucket: &str, to_key: &str) -> Result<ObjectMeta>;
        fn list_objects(req: ListObjects) -> Result<ListPage>;
        fn create_multipart_upload(bucket: &str, key: &str, content_type: Option<String>) -> Result<String>;
        fn upload_part(bucket: &str, key: &str, upload_id: &str, number: u32, body: Body) -> Result<String>;
        fn complete_multipart_upload(bucket: &str, key: &str, upload_id: &str, parts: Vec<CompletedPart>) -> Result<ObjectMeta>;
        fn abort_multipart_upload(bucket: &str, key: &str, upload_id: &str) -> Result<()>;
    }
}

mod kv {
    use super::*;
    use crate::kv::*;

    layered! { Kv, Kv;
        fn create_table(spec: TableSpec) -> Result<TableInfo>;
        fn delete_table(table: &str) -> Result<()>;
        fn describe_table(table: &str) -> Result<TableInfo>;
        fn list_tables() -> Result<Vec<String>>;
        fn put_item(req: PutItem) -> Result<()>;
        fn get_item(table: &str, key: Key) -> Result<Option<Item>>;
        fn delete_item(req: DeleteItem) -> Result<Option<Item>>;
        fn query(req: Query) -> Result<Page<Item>>;
        fn scan(req: Scan) -> Result<Page<Item>>;
        fn batch_get(table: &str, keys: Vec<Key>) -> Result<Vec<Item>>;
        fn batch_put(table: &str, items: Vec<Item>) -> Result<()>;
        fn update_item(req: UpdateItem) -> Result<Option<Item>>;
        fn transact_write(writes: Vec<TransactWrite>) -> Result<()>;
    }
}

mod crypto {
    use super::*;
    use crate::crypto::*;

    layered! { Crypto, Crypto;
        fn create_key(req: CreateKey) -> Result<KeyMetadata>;
        fn import_key(req: CreateKey, material: SecretBytes) -> Result<KeyMetadata>;
        fn describe_key(key: &str) -> Result<KeyMetadata>;
        fn list_keys() -> Result<Vec<KeyMetadata>>;
        fn enable_key(key: &str) -> Result<()>;
        fn disable_key(key: &str) -> Result<()>;
        fn schedule_key_deletion(key: &str, pending_days: u32) -> Result<Timestamp>;
        fn cancel_key_deletion(key: &str) -> Result<()>;
        fn delete_alias(alias: &str) -> Result<()>;
        fn rotate_key(key: &str) -> Result<u32>;
        fn encrypt(key: &str, plaintext: &[u8], context: &EncryptionContext) -> Result<Bytes>;
        fn decrypt(ciphertext: &[u8], context: &EncryptionContext) -> Result<Decrypted>;
        fn generate_data_key(key: &str, context: &EncryptionContext) -> Result<DataKey>;
        fn audit_events(query: AuditQuery) -> Result<Vec<AuditEvent>>;
    }
}

mod log {
    use super::*;
    use crate::log::*;

    layered! { Logs, Log;
        fn create_group(group: &str, retention_days: Option<u32>) -> Result<LogGroup>;
        fn delete_group(group: &str) -> Result<()>;
        fn list_groups() -> Result<Vec<LogGroup>>;
        fn set_retention(group: &str, retention_days: Option<u32>) -> Result<()>;
        fn create_stream(group: &str, stream: &str) -> Result<LogStream>;
        fn list_streams(group: &str) -> Result<Vec<LogStream>>;
        fn put_events(group: &str, stream: &str, events: Vec<LogEvent>) -> Result<()>;
        fn get_events(req: GetEvents) -> Result<Page<LogRecord>>;
        fn filter_events(req: FilterEvents) -> Result<Page<LogRecord>>;
        fn tail(req: TailEvents) -> Result<BoxStream<LogRecord>>;
    }
}

mod metric {
    use super::*;
    use crate::metric::*;

    layered! { Metrics, Metric;
        fn put_data(namespace: &str, data: Vec<Datum>) -> Result<()>;
        fn get_statistics(req: GetStatistics) -> Result<Vec<Datapoint>>;
        fn list_metrics(namespace: Option<&str>, name: Option<&str>) -> Result<Vec<MetricId>>;
        fn put_alarm(spec: AlarmSpec) -> Result<()>;
        fn delete_alarm(name: &str) -> Result<()>;
        fn describe_alarms(prefix: Option<&str>) -> Result<Vec<Alarm>>;
        fn alarm_history(name: &str) -> Result<Vec<AlarmTransition>>;
    }
}

mod image {
    use super::*;
    use crate::image::*;

    layered! { Images, Image;
        fn create_repository(name: &str) -> Result<Repository>;
        fn delete_repository(name: &str, force: bool) -> Result<()>;
        fn list_repositories() -> Result<Vec<Repository>>;
        fn push_blob(repository: &str, digest: &str, data: Bytes) -> Result<()>;
        fn pull_blob(repository: &str, digest: &str) -> Result<Bytes>;
        fn push_manifest(repository: &str, manifest: &Manifest, tag: Option<&str>) -> Result<String>;
        fn pull_manifest(repository: &str, reference: &ImageRef) -> Result<(String, Manifest)>;
        fn tag(repository: &str, digest: &str, tag: &str) -> Result<()>;
        fn list_images(repository: &str) -> Result<Vec<ImageInfo>>;
        fn delete_image(repository: &str, reference: &ImageRef) -> Result<()>;
    }
}

mod container {
    use super::*;
    use crate::container::*;

    layered! { Containers, Container;
        fn create_service(spec: ServiceSpec) -> Result<ServiceInfo>;
        fn update_service(spec: ServiceSpec) -> Result<ServiceInfo>;
        fn scale_service(name: &str, replicas: u32) -> Result<ServiceInfo>;
        fn describe_service(name: &str) -> Result<ServiceInfo>;
        fn list_revisions(name: &str) -> Result<Vec<Revision>>;
        fn create_revision_set(spec: ServiceSpec) -> Result<RevisionSet>;
        fn delete_revision_set(service: &str, set: &str) -> Result<()>;
        fn promote_revision_set(service: &str, set: &str) -> Result<RevisionSet>;
        fn record_rollout(service: &str, rollout: Option<Rollout>) -> Result<()>;
        fn mark_revision(service: &str, revision: u64, state: RevisionState, reason: Option<String>) -> Result<()>;
        fn list_services() -> Result<Vec<ServiceInfo>>;
        fn delete_service(name: &str) -> Result<()>;
        fn run_task(name: &str, spec: ContainerSpec, timeout: Duration) -> Result<TaskResult>;
        fn put_schedule(spec: ScheduleSpec) -> Result<()>;
        fn delete_schedule(name: &str) -> Result<()>;
        fn list_schedules() -> Result<Vec<ScheduleSpec>>;
        fn put_scaler(spec: crate::autoscale::ScalerSpec) -> Result<crate::autoscale::ScalerInfo>;
        fn describe_scaler(service: &str) -> Result<crate::autoscale::ScalerInfo>;
        fn delete_scaler(service: &str) -> Result<()>;
        fn access_policy(grants: &[crate::access::Grant]) -> Result<crate::access::Policy>;
    }
}

mod lb {
    use super::*;
    use crate::lb::*;
    use crate::metric::MetricId;

    layered! { LoadBalancers, LoadBalancer;
        fn create_target_group(spec: TargetGroupSpec) -> Result<()>;
        fn delete_target_group(name: &str) -> Result<()>;
        fn register_targets(group: &str, targets: Vec<String>) -> Result<()>;
        fn deregister_targets(group: &str, targets: Vec<String>) -> Result<()>;
        fn target_health(group: &str) -> Result<Vec<TargetStatus>>;
        fn create_load_balancer(spec: LoadBalancerSpec) -> Result<LoadBalancerInfo>;
        fn set_weights(lb: &str, port: u16, forward: Vec<(String, u32)>) -> Result<()>;
        fn describe_load_balancer(name: &str) -> Result<LoadBalancerInfo>;
        fn list_load_balancers() -> Result<Vec<LoadBalancerInfo>>;
        fn delete_load_balancer(name: &str) -> Result<()>;
        fn metric(lb: &str, group: Option<&str>, name: &str) -> Result<MetricId>;
    }
}

mod database {
    use super::*;
    use crate::database::*;

    layered! { Databases, Database;
        fn create_database(spec: DatabaseSpec) -> Result<DatabaseInfo>;
        fn describe_database(name: &str) -> Result<DatabaseInfo>;
        fn list_databases() -> Result<Vec<DatabaseInfo>>;
        fn credentials(name: &str) -> Result<Credentials>;
        fn delete_database(name: &str) -> Result<()>;
        fn reboot_database(name: &str, force_failover: bool) -> Result<DatabaseInfo>;
        fn create_snapshot(database: &str, snapshot: &str) -> Result<SnapshotInfo>;
        fn list_snapshots(database: Option<&str>) -> Result<Vec<SnapshotInfo>>;
        fn restore_snapshot(snapshot: &str, spec: DatabaseSpec) -> Result<DatabaseInfo>;
        fn delete_snapshot(snapshot: &str) -> Result<()>;
        fn restore_to_point_in_time(source: &str, to: RestoreTime, spec: DatabaseSpec) -> Result<DatabaseInfo>;
    }
}

mod vm {
    use super::*;
    use crate::vm::*;

    layered! { Vms, Vm;
        fn run_instance(spec: VmSpec) -> Result<VmInfo>;
        fn describe_instance(id: &str) -> Result<VmInfo>;
        fn list_instances() -> Result<Vec<VmInfo>>;
        fn start_instance(id: &str) -> Result<VmInfo>;
        fn stop_instance(id: &str) -> Result<VmInfo>;
        fn terminate_instance(id: &str) -> Result<()>;
    }
}

mod vpc {
    use super::*;
    use crate::vpc::*;

    layered! { Networks, Vpc;
        fn list_zones() -> Result<Vec<String>>;
        fn create_vpc(cidr: &str, tags: Tags) -> Result<VpcInfo>;
        fn delete_vpc(id: &str) -> Result<()>;
        fn list_vpcs() -> Result<Vec<VpcInfo>>;
        fn create_subnet(vpc: &str, cidr: &str, zone: &str, public: bool) -> Result<SubnetInfo>;
        fn delete_subnet(id: &str) -> Result<()>;
        fn list_subnets(vpc: &str) -> Result<Vec<SubnetInfo>>;
        fn create_security_group(vpc: &str, name: &str) -> Result<SecurityGroupInfo>;
        fn authorize(group: &str, rule: Rule) -> Result<()>;
        fn revoke(group: &str, rule: Rule) -> Result<()>;
        fn describe_security_group(id: &str) -> Result<SecurityGroupInfo>;
        fn list_security_groups(vpc: &str) -> Result<Vec<SecurityGroupInfo>>;
        fn delete_security_group(id: &str) -> Result<()>;
    }
}
