//! The local Container service: services, one-off tasks and scheduled tasks as real OS
//! processes started from images of the local Image service.
//!
//! An image is unpacked once per manifest digest into `container/rootfs/<hex>/` (a temporary
//! directory when the cloud is in memory) and its program runs with its working directory
//! inside that tree, an environment made of the image's, the spec's, `PORT` (a free loopback
//! port per replica) and the secrets, decrypted through the Crypto service at each start
//! (empty encryption context) and given only to the child's environment. Processes are not
//! isolated: they run as the current user with the host's binaries on `PATH`.
//!
//! Each replica has a supervisor task: it places the replica on a simulated VM with spare
//! capacity (`container/placement.rs`; with no VM at all, replicas run unplaced, as on Fargate), starts
//! the process in its own process group, sends its output line by line to the Log service
//! (group `/mvi/containers/<service>`, one stream per replica; tasks go to
//! `/mvi/tasks/<name>`), samples its CPU and memory into the Metric service (namespace
//! `mvi/Container`), health-checks it over HTTP, registers it with the load balancer's target
//! group once ready, and restarts it after a crash with exponential backoff (100 ms doubling
//! to 30 s, reset once it has stayed up 10 s). A stop deregisters first, then sends SIGTERM to
//! the group and SIGKILL after a grace period. A VM that stops takes its replicas with it;
//! they are placed again on the running VMs if capacity allows.
//!
//! State (service and schedule definitions, and the pid of every live process) is one JSON
//! document rewritten atomically. The pids are what makes a `kill -9` of the program safe:
//! the next open kills every recorded process that still lives (matched by pid and start
//! time), then starts the declared services again. Dropping the service kills its processes.

mod placement;
mod process;
mod rollout;
mod rootfs;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use mvi_core::autoscale::{Controller, ScalerInfo, ScalerSpec, Services};
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use mvi_core::access::{Grant, Policy};
use mvi_core::container::{
    ContainerInstance, ContainerSpec, Containers, InstanceState, MAX_EVENTS, MAX_REVISIONS,
    PRIMARY_SET, Revision, RevisionSet, RevisionState, Rollout, ScheduleSpec, ServiceEvent,
    ServiceInfo, ServiceSpec, TaskResult, parse_cron, validate_container, validate_name,
    validate_replicas, validate_service, validate_set_deletion,
};
use mvi_core::crypto::{Crypto, EncryptionContext};
use mvi_core::lb::LoadBalancers;
use mvi_core::log::{LogEvent, Logs};
use mvi_core::metric::Metrics;
use mvi_core::{ErrorKind, Op, Result, Service, Timestamp};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::endpoint::{AccessKey, Endpoints};
use crate::image::LocalImages;
use crate::storage::{Ctx, JsonState, io_error};
use crate::vm::LocalVms;
use placement::{Hold, Need};
use process::{Launch, PidRecord, SecretEnv};
use rootfs::Resolved;

const STATE_FILE: &str = "state.json";
pub use mvi_core::container::MAX_REPLICAS;
/// First restart delay after a crash.
const BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest restart delay.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A replica up this long has recovered: its next crash restarts it quickly again.
const STABLE_AFTER: Duration = Duration::from_secs(10);
/// Default time between SIGTERM and SIGKILL.
const DEFAULT_GRACE: Duration = Duration::from_secs(10);
/// How often CPU and memory are sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(2);
/// How often the scheduler looks (in real time) whether a schedule is due (by the sim clock).
const SCHEDULER_TICK: Duration = Duration::from_millis(200);
/// The time-out of a scheduled run.
const SCHEDULED_TIMEOUT: Duration = Duration::from_secs(3600);
/// How often a replica that found no capacity tries again.
const PLACEMENT_RETRY: Duration = Duration::from_secs(1);
/// The longest a stopping replica waits for the load balancer to drain it (ELBv2's longest
/// deregistration delay, and a little).
const MAX_DRAIN: Duration = Duration::from_secs(3605);
/// How often draining and readiness are looked at.
const DRAIN_POLL: Duration = Duration::from_millis(10);

/// A hook called before a replica's address is registered with its target group, with the
/// address and the service's security groups (the local load balancer uses it to apply
/// security group rules to the target).
pub type TargetSecurityGroupsHook =
    Arc<dyn Fn(String, Vec<String>) -> BoxFuture<'static, Result<()>> + Send + Sync>;

fn op(name: &'static str) -> Op {
    Op::new(Service::Container, name)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ServiceRecord {
    /// The recorded definition: the last good revision's (what runs when no deployment is
    /// in progress, and what a reopened cloud starts).
    spec: ServiceSpec,
    /// The image of that revision, resolved when it was made: restarts and reopens run
    /// exactly it.
    image: Resolved,
    /// The number of that revision (0 in state written before revisions: read as 1).
    #[serde(default)]
    revision: u64,
    /// The revisions, oldest first, at most `MAX_REVISIONS`.
    #[serde(default)]
    revisions: Vec<RevisionRecord>,
    /// The deployment in progress. Found on open with the simulator's own (rolling)
    /// strategy, it was interrupted by the program's end: its revision is marked rolled back
    /// and the recorded one runs. A controller's (blue-green, canary) is left for the
    /// controller to recover from.
    #[serde(default)]
    rollout: Option<Rollout>,
    /// Revision sets beside the service's own replicas (a controller's), by id.
    #[serde(default)]
    sets: BTreeMap<String, SetRecord>,
}

/// A revision set beside a service's own replicas.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SetRecord {
    revision: u64,
    target_group: Option<String>,
    replicas: u32,
}

impl ServiceRecord {
    fn new(spec: ServiceSpec, image: Resolved, created: Timestamp) -> Self {
        let revisions = vec![RevisionRecord {
            number: 1,
            container: spec.container.clone(),
            image: image.clone(),
            target_group: spec.target_group.clone(),
            created,
            state: RevisionState::Active,
            reason: None,
        }];
        ServiceRecord {
            spec,
            image,
            revision: 1,
            revisions,
            rollout: None,
            sets: BTreeMap::new(),
        }
    }

    /// The recorded revision's number (state written before revisions has none: 1).
    fn revision(&self) -> u64 {
        self.revision.max(1)
    }

    fn plan(&self) -> Plan {
        Plan {
            spec: self.spec.clone(),
            image: self.image.clone(),
            revision: self.revision(),
        }
    }

    /// What the replicas of set `s` run: its revision's definition, registering with its
    /// target group.
    fn set_plan(&self, s: &SetRecord) -> Option<Plan> {
        let r = self.revisions.iter().find(|r| r.number == s.revision)?;
        let mut spec = self.spec.clone();
        spec.container = r.container.clone();
        spec.target_group = s.target_group.clone();
        spec.replicas = s.replicas;
        Some(Plan {
            spec,
            image: r.image.clone(),
            revision: s.revision,
        })
    }

    /// The public view of the service's sets.
    fn public_sets(&self) -> Vec<RevisionSet> {
        let mut out = vec![RevisionSet {
            id: PRIMARY_SET.to_string(),
            revision: self.revision(),
            target_group: self.spec.target_group.clone(),
            replicas: self.spec.replicas,
        }];
        out.extend(self.sets.iter().map(|(id, s)| RevisionSet {
            id: id.clone(),
            revision: s.revision,
            target_group: s.target_group.clone(),
            replicas: s.replicas,
        }));
        out
    }

    fn next_revision(&self) -> u64 {
        self.revisions
            .iter()
            .map(|r| r.number)
            .max()
            .unwrap_or(0)
            .max(self.revision())
            + 1
    }

    fn set_revision_state(&mut self, number: u64, state: RevisionState, reason: Option<String>) {
        if let Some(r) = self.revisions.iter_mut().find(|r| r.number == number) {
            r.state = state;
            r.reason = reason;
        }
    }

    fn push_revision(&mut self, r: RevisionRecord) {
        self.revisions.push(r);
        let excess = self.revisions.len().saturating_sub(MAX_REVISIONS);
        self.revisions.drain(..excess);
    }
}

/// One revision of a service as recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RevisionRecord {
    number: u64,
    container: ContainerSpec,
    image: Resolved,
    target_group: Option<String>,
    created: Timestamp,
    state: RevisionState,
    reason: Option<String>,
}

impl RevisionRecord {
    fn public(&self) -> Revision {
        Revision {
            number: self.number,
            container: self.container.clone(),
            created: self.created,
            state: self.state,
            reason: self.reason.clone(),
        }
    }
}

/// A replica's registration with a target group, recorded before the load balancer is
/// told and forgotten after it is told otherwise: the next open deregisters whatever a
/// killed program left registered, so no target outlives its replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Registration {
    group: String,
    address: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ScheduleRecord {
    spec: ScheduleSpec,
    /// The schedule is due at its first occurrence after this instant.
    since: Timestamp,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct State {
    services: BTreeMap<String, ServiceRecord>,
    schedules: BTreeMap<String, ScheduleRecord>,
    /// Every live process (replica or task id → pid), so a restarted program kills orphans.
    pids: BTreeMap<String, PidRecord>,
    /// Every replica registered with a target group (replica id → registration).
    #[serde(default)]
    registrations: BTreeMap<String, Registration>,
    /// Each service's scaler, by service.
    #[serde(default)]
    scalers: BTreeMap<String, ScalerSpec>,
}

/// What one replica runs (shared by the replicas of one revision).
#[derive(Debug)]
struct Plan {
    spec: ServiceSpec,
    image: Resolved,
    revision: u64,
}

#[derive(Debug, Clone)]
struct Status {
    state: InstanceState,
    vm: Option<String>,
    restarts: u32,
    started: Option<Timestamp>,
    pid: i32,
    registered: bool,
    /// Ready for traffic: its health check passed, or (without one) its port accepts
    /// connections, or (not serving) it runs.
    ready: bool,
    /// Failed starts and crashes of this replica, and whether the health checks found it
    /// unhealthy after it was ready (for the deployment's circuit breaker).
    failures: u32,
    /// The last failure, for messages.
    last_failure: Option<String>,
    /// The revision set it belongs to (`PRIMARY_SET` for the service's own replicas).
    set: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Control {
    /// Stop gracefully and end.
    Stop,
    /// The VM died: kill now and be placed again.
    Evict,
}

#[derive(Debug)]
struct Replica {
    id: String,
    port: u16,
    plan: Arc<Plan>,
    status: Mutex<Status>,
    control: mpsc::UnboundedSender<Control>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
}

impl Replica {
    fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_state(&self, state: InstanceState) {
        self.status().state = state;
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn serves(&self) -> bool {
        let c = &self.plan.spec.container;
        c.port.is_some()
            || c.health_check.is_some()
            || self.plan.spec.target_group.is_some()
            || self.plan.image.config.exposed_port.is_some()
    }

    fn info(&self) -> ContainerInstance {
        let s = self.status().clone();
        ContainerInstance {
            id: self.id.clone(),
            state: s.state,
            vm: s.vm,
            address: self.serves().then(|| self.address()),
            restarts: s.restarts,
            started: s.started,
            revision: self.plan.revision,
            set: s.set,
        }
    }

    fn in_set(&self, set: &str) -> bool {
        self.status().set == set
    }

    fn fail(&self, why: String) {
        let mut s = self.status();
        s.failures += 1;
        s.last_failure = Some(why);
    }
}

#[derive(Debug, Default)]
struct Live {
    services: BTreeMap<String, Vec<Arc<Replica>>>,
    /// Each service's last events (`MAX_EVENTS`), oldest first.
    events: BTreeMap<String, VecDeque<ServiceEvent>>,
    /// Running tasks: their hold on a VM (if placed) and pid.
    tasks: BTreeMap<String, (Option<Hold>, i32)>,
}

impl Live {
    fn holds(&self) -> Vec<Hold> {
        let replicas = self.services.iter().flat_map(|(name, rs)| {
            rs.iter().filter_map(move |r| {
                let vm = r.status().vm.clone()?;
                Some(Hold {
                    vm,
                    cpu_millis: r.plan.spec.container.cpu_millis,
                    memory_mib: r.plan.spec.container.memory_mib,
                    service: Some(name.clone()),
                })
            })
        });
        replicas
            .chain(self.tasks.values().filter_map(|(h, _)| h.clone()))
            .collect()
    }
}

struct Inner {
    ctx: Ctx,
    images: Arc<LocalImages>,
    crypto: Arc<dyn Crypto>,
    logs: Arc<dyn Logs>,
    metrics: Arc<dyn Metrics>,
    vms: Arc<LocalVms>,
    load_balancers: Option<Arc<dyn LoadBalancers>>,
    security_groups_hook: OnceLock<TargetSecurityGroupsHook>,
    /// The AWS-compatible endpoints: replicas whose spec has grants get their address and
    /// an access key of their service's own.
    endpoints: Endpoints,
    /// The key of each service (or task) and set of grants, issued on first use: the
    /// replicas of one revision share one, as the tasks of one task definition share a role.
    keys: Mutex<HashMap<(String, Vec<Grant>), AccessKey>>,
    state: JsonState<State>,
    rootfs: PathBuf,
    /// Holds the unpacked images of an in-memory cloud.
    _rootfs_tmp: Option<tempfile::TempDir>,
    live: Mutex<Live>,
    /// Serialises changes of services (create, update, scale, delete).
    changes: tokio::sync::Mutex<()>,
    grace: Mutex<Duration>,
    /// Dropped with the service: every background task sees it close and ends.
    shutdown: watch::Sender<()>,
    /// The scalers' controllers, by service (their definitions are in the state).
    scalers: tokio::sync::Mutex<BTreeMap<String, Controller>>,
    /// The replica count of each service whose rolling deployment is running: the roll reads
    /// it every step and `scale_service` sets it, so a count changed during a deployment
    /// applies to the revision being rolled out, as on ECS.
    rolling: Mutex<BTreeMap<String, u32>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalContainers")
            .field("dir", &self.ctx.dir)
            .field("rootfs", &self.rootfs)
            .finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Nothing outlives the service: kill every process group it started.
        let live = self.live.get_mut().unwrap_or_else(|e| e.into_inner());
        for r in live.services.values().flatten() {
            process::signal_group(r.status().pid, nix::sys::signal::Signal::SIGKILL);
        }
        for (_, pid) in live.tasks.values() {
            process::signal_group(*pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// The local Container service.
#[derive(Debug)]
pub struct LocalContainers {
    inner: Arc<Inner>,
}

impl LocalContainers {
    /// Opens the service: kills processes left by a previous run that was killed, then starts
    /// the declared services again.
    // One argument per service the containers use; a struct of them would only rename this.
    #[allow(clippy::too_many_arguments)]
    pub async fn open(
        ctx: Ctx,
        images: Arc<LocalImages>,
        crypto: Arc<dyn Crypto>,
        logs: Arc<dyn Logs>,
        metrics: Arc<dyn Metrics>,
        vms: Arc<LocalVms>,
        load_balancers: Option<Arc<dyn LoadBalancers>>,
        endpoints: Endpoints,
    ) -> Result<Self> {
        let op = op("open");
        let state: JsonState<State> = JsonState::open(&ctx, op, STATE_FILE)?;
        let orphans: Vec<(String, PidRecord)> = state
            .lock()
            .pids
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (id, record) in &orphans {
            if process::kill_orphan(record) {
                tracing::warn!("killed {id} (pid {}), left by a previous run", record.pid);
            }
        }
        if !orphans.is_empty() {
            state.mutate(op, |s| {
                s.pids.clear();
                Ok(())
            })?;
        }
        let (rootfs, tmp) = match &ctx.dir {
            Some(dir) => (dir.join("rootfs"), None),
            None => {
                let tmp = tempfile::Builder::new()
                    .prefix("mvi-rootfs-")
                    .tempdir()
                    .map_err(|e| io_error(op, &std::env::temp_dir(), e))?;
                (tmp.path().to_path_buf(), Some(tmp))
            }
        };
        std::fs::create_dir_all(&rootfs).map_err(|e| io_error(op, &rootfs, e))?;
        let inner = Arc::new(Inner {
            ctx,
            images,
            crypto,
            logs,
            metrics,
            vms,
            load_balancers,
            security_groups_hook: OnceLock::new(),
            endpoints,
            keys: Mutex::default(),
            state,
            rootfs,
            _rootfs_tmp: tmp,
            live: Mutex::default(),
            changes: tokio::sync::Mutex::new(()),
            grace: Mutex::new(DEFAULT_GRACE),
            shutdown: watch::channel(()).0,
            scalers: Default::default(),
            rolling: Mutex::default(),
        });
        tokio::spawn(watch_vms(
            Arc::downgrade(&inner),
            inner.vms.subscribe(),
            inner.shutdown.subscribe(),
        ));
        tokio::spawn(run_scheduler(
            Arc::downgrade(&inner),
            inner.shutdown.subscribe(),
        ));
        {
            let specs: Vec<ScalerSpec> = inner.state.lock().scalers.values().cloned().collect();
            let mut scalers = inner.scalers.lock().await;
            for spec in specs {
                // Checked when it was put; a spec a newer rule refuses is left out, loudly.
                match Controller::new(spec.clone()) {
                    Ok(c) => {
                        scalers.insert(spec.service.clone(), c);
                    }
                    Err(e) => {
                        tracing::warn!(service = %spec.service, error = %e, "scaler not restarted")
                    }
                }
            }
        }
        tokio::spawn(run_scalers(
            Arc::downgrade(&inner),
            inner.shutdown.subscribe(),
        ));
        inner.forget_stale_registrations().await;
        inner.end_interrupted_rollouts().await?;
        let services: Vec<ServiceRecord> = inner.state.lock().services.values().cloned().collect();
        for record in services {
            let plan = Arc::new(record.plan());
            let mut replicas = Vec::new();
            for _ in 0..record.spec.replicas {
                // A replica that finds no room now keeps trying (Pending).
                replicas.push(spawn_replica(&inner, plan.clone(), None, PRIMARY_SET)?);
            }
            for (id, set) in &record.sets {
                let Some(plan) = record.set_plan(set) else {
                    continue;
                };
                let plan = Arc::new(plan);
                for _ in 0..set.replicas {
                    replicas.push(spawn_replica(&inner, plan.clone(), None, id)?);
                }
            }
            lock(&inner.live)
                .services
                .insert(record.spec.name.clone(), replicas);
        }
        Ok(LocalContainers { inner })
    }

    /// Sets the hook called with a replica's address and its service's security groups before
    /// it is registered with a target group (set once; later calls are ignored).
    pub fn set_target_security_groups_hook(&self, hook: TargetSecurityGroupsHook) {
        let _ = self.inner.security_groups_hook.set(hook);
    }

    /// Sets the time a stopping process gets between SIGTERM and SIGKILL (default 10 s).
    pub fn set_grace_period(&self, grace: Duration) {
        *lock(&self.inner.grace) = grace;
    }

    /// The process id of every live replica and task (for tests of orphan clean-up).
    pub fn pids(&self) -> Vec<i32> {
        self.inner
            .state
            .lock()
            .pids
            .values()
            .map(|r| r.pid)
            .collect()
    }

    /// Fault injection: kills replica `instance` of `service` at once (SIGKILL to its
    /// process group), as a crash would; its supervisor notices, deregisters it and starts
    /// it again after the usual backoff.
    pub fn kill_replica(&self, service: &str, instance: &str) -> Result<()> {
        let op = op("kill_replica");
        let pid = {
            let live = lock(&self.inner.live);
            let replicas = live.services.get(service).ok_or_else(|| {
                op.not_found(
                    service,
                    format!("there is no service {}", mvi_core::error::quote(service)),
                )
            })?;
            let replica = replicas.iter().find(|r| r.id == instance).ok_or_else(|| {
                op.not_found(
                    instance,
                    format!(
                        "service {service} has no replica {}",
                        mvi_core::error::quote(instance)
                    ),
                )
            })?;
            replica.status().pid
        };
        if pid <= 1 {
            return Err(op.precondition(instance, "the replica has no process running now"));
        }
        process::signal_group(pid, nix::sys::signal::Signal::SIGKILL);
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every change under these locks is a single assignment or insert: a poisoned lock
    // still guards a consistent value.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---- starting processes ----

impl Inner {
    fn grace(&self) -> Duration {
        *lock(&self.grace)
    }

    /// SIGTERM to SIGKILL for a replica of `plan`.
    fn stop_timeout(&self, plan: &Plan) -> Duration {
        plan.spec
            .container
            .stop_timeout
            .unwrap_or_else(|| self.grace())
    }

    /// Deregisters the targets a previous run left registered: their replicas are gone
    /// (killed as orphans), and a reused port must never route to someone else.
    async fn forget_stale_registrations(&self) {
        let stale: Vec<(String, Registration)> = self
            .state
            .lock()
            .registrations
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if stale.is_empty() {
            return;
        }
        if let Some(lbs) = &self.load_balancers {
            for (id, r) in &stale {
                match lbs
                    .deregister_targets(&r.group, vec![r.address.clone()])
                    .await
                {
                    Ok(()) => tracing::info!(
                        "deregistered {} of {id} from {}, left by a previous run",
                        r.address,
                        r.group
                    ),
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => {
                        tracing::warn!("cannot deregister {} from {}: {e}", r.address, r.group)
                    }
                }
            }
        }
        let r = self.state.mutate(op("open"), |s| {
            s.registrations.clear();
            Ok(())
        });
        if let Err(e) = r {
            tracing::warn!("cannot forget stale registrations: {e}");
        }
    }

    /// A deployment recorded as in progress was cut short by the program's end: its
    /// revision is marked rolled back, and the recorded (last good) revision runs again.
    async fn end_interrupted_rollouts(&self) -> Result<()> {
        let interrupted: Vec<(String, Rollout)> = self
            .state
            .lock()
            .services
            .iter()
            .filter_map(|(n, r)| r.rollout.clone().map(|ro| (n.clone(), ro)))
            // A controller's deployment (blue-green, canary) is the controller's to recover.
            .filter(|(_, ro)| ro.strategy == "rolling")
            .collect();
        if interrupted.is_empty() {
            return Ok(());
        }
        let why = "the deployment was interrupted (the program stopped)".to_string();
        self.state.mutate(op("open"), |s| {
            for (name, ro) in &interrupted {
                if let Some(r) = s.services.get_mut(name) {
                    r.set_revision_state(ro.revision, RevisionState::RolledBack, Some(why.clone()));
                    r.rollout = None;
                }
            }
            Ok(())
        })?;
        for (name, ro) in interrupted {
            self.event(
                &name,
                format!(
                    "revision {} was not deployed: {why}; running revision {}",
                    ro.revision, ro.from
                ),
            )
            .await;
        }
        Ok(())
    }

    /// Builds what to start: unpacks the image, decrypts the secrets, assembles the
    /// environment.
    async fn prepare(
        &self,
        op: Op,
        principal: &str,
        container: &ContainerSpec,
        image: &Resolved,
        hostname: &str,
        port: u16,
    ) -> Result<Launch> {
        let rootfs = rootfs::unpack(op, &self.images, &self.rootfs, image).await?;
        let config = &image.config;
        let mut argv = config.entrypoint.clone();
        // As Docker and ECS: a command replaces the image's CMD, after its ENTRYPOINT.
        if container.command.is_empty() {
            argv.extend(config.cmd.iter().cloned());
        } else {
            argv.extend(container.command.iter().cloned());
        }
        let working_dir = match &config.working_dir {
            Some(wd) => rootfs::inside(&rootfs, wd),
            None => rootfs.clone(),
        };
        let mut env: BTreeMap<String, zeroize::Zeroizing<String>> = BTreeMap::new();
        env.insert("HOSTNAME".into(), hostname.to_string().into());
        if !container.grants.is_empty() {
            // As a task role's credentials: the endpoints and a key limited to the grants (the
            // spec's own environment comes after, and wins).
            let key = self.key_for(principal, &container.grants);
            for (k, v) in self.endpoints.env(&key) {
                env.insert(k, v.into());
            }
        }
        for (k, v) in config.env.iter().chain(&container.env) {
            env.insert(k.clone(), v.clone().into());
        }
        env.insert("PORT".into(), port.to_string().into());
        for secret in &container.secrets {
            let plain = self
                .crypto
                .decrypt(&secret.ciphertext, &EncryptionContext::new())
                .await
                .map_err(|e| {
                    op.err(
                        e.kind(),
                        &secret.env,
                        format!("cannot decrypt the secret: {}", e.message()),
                    )
                })?;
            let text = String::from_utf8(plain.plaintext.expose().to_vec())
                .map_err(|_| op.invalid(&secret.env, "the secret's plaintext is not UTF-8 text"))?;
            env.insert(secret.env.clone(), text.into());
        }
        Ok(Launch {
            argv,
            rootfs,
            working_dir,
            env: SecretEnv(env),
        })
    }

    /// Stops accepting the keys issued to `principal` (a deleted service's).
    fn revoke_keys(&self, principal: &str) {
        lock(&self.keys).retain(|(p, _), key| {
            let keep = p != principal;
            if !keep {
                self.endpoints.keys().revoke(&key.id);
            }
            keep
        });
    }

    /// The access key of `principal` with `grants`, issued the first time.
    fn key_for(&self, principal: &str, grants: &[Grant]) -> AccessKey {
        lock(&self.keys)
            .entry((principal.to_owned(), grants.to_vec()))
            .or_insert_with(|| {
                let policy = Policy::of_grants(self.endpoints.account(), grants);
                self.endpoints.keys().issue(principal, policy)
            })
            .clone()
    }

    fn record_pid(&self, id: &str, record: &PidRecord) {
        let r = self.state.mutate(op("start"), |s| {
            s.pids.insert(id.to_string(), record.clone());
            Ok(())
        });
        if let Err(e) = r {
            tracing::warn!("cannot record the pid of {id}: {e}");
        }
    }

    fn forget_pid(&self, id: &str) {
        let r = self.state.mutate(op("stop"), |s| {
            s.pids.remove(id);
            Ok(())
        });
        if let Err(e) = r {
            tracing::warn!("cannot forget the pid of {id}: {e}");
        }
    }

    async fn ensure_log(&self, group: &str, stream: &str) -> Result<()> {
        match self.logs.create_group(group, None).await {
            Err(e) if e.kind() != ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        match self.logs.create_stream(group, stream).await {
            Err(e) if e.kind() != ErrorKind::AlreadyExists => Err(e),
            _ => Ok(()),
        }
    }

    /// Records one event of a service: kept for `describe_service` and written as a line to
    /// the service's `events` log stream (crashes, restarts, placement, deployments).
    async fn event(&self, service: &str, message: String) {
        {
            let mut live = lock(&self.live);
            let events = live.events.entry(service.to_string()).or_default();
            if events.len() >= MAX_EVENTS {
                events.pop_front();
            }
            events.push_back(ServiceEvent {
                at: self.ctx.sim.now(),
                message: message.clone(),
            });
        }
        let group = service_group(service);
        if self.ensure_log(&group, "events").await.is_ok() {
            let _ = self
                .logs
                .put_events(
                    &group,
                    "events",
                    vec![LogEvent::new(self.ctx.sim.now(), message)],
                )
                .await;
        }
    }

    /// Places `replica` if it has no running VM (and VMs exist).
    fn ensure_placed(&self, replica: &Replica) -> Result<()> {
        let running = self.vms.running();
        let fleet = self.vms.has_vms();
        let live = lock(&self.live);
        let current = replica.status().vm.clone();
        if let Some(vm) = &current
            && running.iter().any(|v| &v.id == vm)
        {
            return Ok(());
        }
        replica.status().vm = None;
        let spec = &replica.plan.spec;
        let vm = placement::place(
            op("place"),
            &replica.id,
            &running,
            fleet,
            &live.holds(),
            Need {
                cpu_millis: spec.container.cpu_millis,
                memory_mib: spec.container.memory_mib,
                service: Some(&spec.name),
                subnets: &spec.subnets,
            },
        )?;
        // Set while `live` is locked, so the next placement sees this hold.
        replica.status().vm = vm;
        drop(live);
        Ok(())
    }

    /// Registers a ready replica with its target group (once). The registration is recorded
    /// first, so a program killed right after still has it to undo on the next open.
    async fn register(&self, replica: &Replica) {
        let (Some(lbs), Some(group)) = (&self.load_balancers, &replica.plan.spec.target_group)
        else {
            return;
        };
        if replica.status().registered {
            return;
        }
        if let Some(hook) = self.security_groups_hook.get()
            && let Err(e) = hook(replica.address(), replica.plan.spec.security_groups.clone()).await
        {
            tracing::warn!("security groups of {}: {e}", replica.id);
        }
        let recorded = self.state.mutate(op("register"), |s| {
            s.registrations.insert(
                replica.id.clone(),
                Registration {
                    group: group.clone(),
                    address: replica.address(),
                },
            );
            Ok(())
        });
        let registered = match recorded {
            Ok(()) => lbs.register_targets(group, vec![replica.address()]).await,
            Err(e) => Err(e),
        };
        match registered {
            Ok(()) => {
                replica.status().registered = true;
                self.event(
                    &replica.plan.spec.name,
                    format!(
                        "{} (revision {}) registered with target group {group}",
                        replica.id, replica.plan.revision
                    ),
                )
                .await;
            }
            Err(e) => {
                self.event(
                    &replica.plan.spec.name,
                    format!(
                        "{}: cannot register with target group {group}: {e}",
                        replica.id
                    ),
                )
                .await
            }
        }
    }

    /// Deregisters a replica from its target group. Returns what to watch to know when the
    /// load balancer has drained it (see [`wait_drained`]), if it was registered.
    async fn deregister(&self, replica: &Replica) -> Option<Draining> {
        let (Some(lbs), Some(group)) = (&self.load_balancers, &replica.plan.spec.target_group)
        else {
            return None;
        };
        if !std::mem::take(&mut replica.status().registered) {
            return None;
        }
        let address = replica.address();
        let draining = match lbs.deregister_targets(group, vec![address.clone()]).await {
            Ok(()) => Some(Draining {
                lbs: lbs.clone(),
                group: group.clone(),
                address,
            }),
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => {
                tracing::warn!("deregistering {}: {e}", replica.id);
                None
            }
        };
        let r = self.state.mutate(op("deregister"), |s| {
            s.registrations.remove(&replica.id);
            Ok(())
        });
        if let Err(e) = r {
            tracing::warn!("cannot forget the registration of {}: {e}", replica.id);
        }
        draining
    }
}

/// A target being drained by its load balancer.
struct Draining {
    lbs: Arc<dyn LoadBalancers>,
    group: String,
    address: String,
}

/// Waits until the load balancer has let a deregistered target go: its in-flight requests
/// done or the group's deregistration delay over (or the service closed).
async fn wait_drained(d: &Draining, shutdown: &mut watch::Receiver<()>) {
    let deadline = tokio::time::Instant::now() + MAX_DRAIN;
    loop {
        let listed = match d.lbs.target_health(&d.group).await {
            Ok(targets) => targets.iter().any(|t| t.target == d.address),
            Err(_) => false,
        };
        if !listed || tokio::time::Instant::now() >= deadline {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(DRAIN_POLL) => {}
            _ = shutdown.changed() => return,
        }
    }
}

fn service_group(service: &str) -> String {
    format!("/mvi/containers/{service}")
}

fn task_group(name: &str) -> String {
    format!("/mvi/tasks/{name}")
}

/// Creates a replica of `plan` (placed on `vm` if already chosen) and starts its supervisor.
fn spawn_replica(
    inner: &Arc<Inner>,
    plan: Arc<Plan>,
    vm: Option<String>,
    set: &str,
) -> Result<Arc<Replica>> {
    let port = process::free_port(op("start"))?;
    let (control, rx) = mpsc::unbounded_channel();
    let replica = Arc::new(Replica {
        id: inner.ctx.sim.id("ctr"),
        port,
        plan,
        status: Mutex::new(Status {
            state: InstanceState::Pending,
            vm,
            restarts: 0,
            started: None,
            pid: 0,
            registered: false,
            ready: false,
            failures: 0,
            last_failure: None,
            set: set.to_string(),
        }),
        control,
        supervisor: Mutex::new(None),
    });
    let handle = tokio::spawn(supervise(
        Arc::downgrade(inner),
        replica.clone(),
        rx,
        inner.shutdown.subscribe(),
    ));
    *lock(&replica.supervisor) = Some(handle);
    Ok(replica)
}

/// Stops a replica gracefully and waits until it is gone.
async fn stop_replica(replica: &Replica) {
    let _ = replica.control.send(Control::Stop);
    let handle = lock(&replica.supervisor).take();
    if let Some(handle) = handle {
        let _ = handle.await;
    }
    replica.set_state(InstanceState::Stopped);
}

/// Runs, watches and restarts one replica until told to stop or the service is dropped.
async fn supervise(
    weak: Weak<Inner>,
    replica: Arc<Replica>,
    mut control: mpsc::UnboundedReceiver<Control>,
    mut shutdown: watch::Receiver<()>,
) {
    let service = replica.plan.spec.name.clone();
    let group = service_group(&service);
    let mut backoff = BACKOFF_START;
    loop {
        // Place and start, holding the service only for these steps.
        let started = {
            let Some(inner) = weak.upgrade() else { return };
            match inner.ensure_placed(&replica) {
                Err(e) => Err((e, true)),
                Ok(()) => {
                    let op = op("start");
                    let spec = &replica.plan.spec.container;
                    let launch = match inner.ensure_log(&group, &replica.id).await {
                        Ok(()) => {
                            inner
                                .prepare(
                                    op,
                                    &replica.plan.spec.name,
                                    spec,
                                    &replica.plan.image,
                                    &replica.id,
                                    replica.port,
                                )
                                .await
                        }
                        Err(e) => Err(e),
                    };
                    launch
                        .and_then(|launch| {
                            process::start(
                                op,
                                &launch,
                                inner.logs.clone(),
                                inner.ctx.sim.clone(),
                                group.clone(),
                                replica.id.clone(),
                            )
                        })
                        .inspect(|running| {
                            inner.record_pid(&replica.id, &running.record);
                        })
                        .map_err(|e| (e, false))
                }
            }
        };
        let mut running = match started {
            Ok(r) => r,
            Err((e, placement)) => {
                if let Some(inner) = weak.upgrade() {
                    inner
                        .event(&service, format!("{}: cannot start: {e}", replica.id))
                        .await;
                }
                let delay = if placement {
                    replica.set_state(InstanceState::Pending);
                    PLACEMENT_RETRY
                } else {
                    replica.fail(format!("cannot start: {e}"));
                    replica.status().restarts += 1;
                    replica.set_state(InstanceState::BackingOff);
                    let d = backoff;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    d
                };
                tokio::select! {
                    _ = tokio::time::sleep(delay) => continue,
                    c = control.recv() => match c {
                        Some(Control::Evict) => continue,
                        _ => return,
                    },
                    _ = shutdown.changed() => return,
                }
            }
        };
        let up_since = tokio::time::Instant::now();
        {
            let mut s = replica.status();
            s.pid = running.record.pid;
            s.state = InstanceState::Running;
            s.started = weak.upgrade().map(|i| i.ctx.sim.now());
        }
        if let Some(inner) = weak.upgrade() {
            let on = match replica.status().vm.clone() {
                Some(vm) => format!(" on {vm}"),
                None => String::new(),
            };
            inner
                .event(
                    &service,
                    format!(
                        "{} (revision {}) started{on}",
                        replica.id, replica.plan.revision
                    ),
                )
                .await;
        }
        let helpers = start_helpers(&weak, &replica, running.record.pid).await;
        enum End {
            Exited(Option<std::process::ExitStatus>),
            Stop,
            Evict,
            Shutdown,
        }
        let end = tokio::select! {
            status = running.child.wait() => End::Exited(status.ok()),
            c = control.recv() => match c {
                Some(Control::Evict) => End::Evict,
                _ => End::Stop,
            },
            _ = shutdown.changed() => End::Shutdown,
        };
        for h in helpers {
            h.abort();
        }
        if matches!(end, End::Shutdown) {
            // The service is gone; Inner's drop kills the group.
            return;
        }
        replica.status().ready = false;
        let draining = match weak.upgrade() {
            Some(inner) => inner.deregister(&replica).await,
            None => None,
        };
        if let (End::Stop, Some(d)) = (&end, &draining) {
            // In-flight requests finish on the old process before it gets SIGTERM.
            wait_drained(d, &mut shutdown).await;
            if let Some(inner) = weak.upgrade() {
                inner
                    .event(
                        &service,
                        format!("{} drained from target group {}", replica.id, d.group),
                    )
                    .await;
            }
        }
        let grace = weak
            .upgrade()
            .map(|i| i.stop_timeout(&replica.plan))
            .unwrap_or_default();
        let status = match end {
            End::Stop => process::stop(&mut running, grace).await,
            End::Evict => process::stop(&mut running, Duration::ZERO).await,
            End::Exited(status) => {
                // Whatever the program left behind in its group goes with it.
                process::signal_group(running.record.pid, nix::sys::signal::Signal::SIGKILL);
                status
            }
            End::Shutdown => None,
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut running.pump).await;
        replica.status().pid = 0;
        let Some(inner) = weak.upgrade() else { return };
        inner.forget_pid(&replica.id);
        match end {
            End::Stop | End::Shutdown => {
                replica.set_state(InstanceState::Stopped);
                inner
                    .event(
                        &service,
                        format!(
                            "{} (revision {}) stopped",
                            replica.id, replica.plan.revision
                        ),
                    )
                    .await;
                return;
            }
            End::Evict => {
                replica.set_state(InstanceState::Pending);
                inner
                    .event(
                        &service,
                        format!("{}: its VM stopped; placing it again", replica.id),
                    )
                    .await;
                continue;
            }
            End::Exited(_) => {}
        }
        if up_since.elapsed() >= STABLE_AFTER {
            backoff = BACKOFF_START;
        }
        let restarts = {
            let mut s = replica.status();
            s.restarts += 1;
            s.state = InstanceState::BackingOff;
            s.restarts
        };
        let how = match status.and_then(|s| s.code()) {
            Some(code) => format!("exited with code {code}"),
            None => "was killed by a signal".to_string(),
        };
        replica.fail(how.clone());
        inner
            .event(
                &service,
                format!(
                    "{} {how}; restart {restarts} in {} ms",
                    replica.id,
                    backoff.as_millis()
                ),
            )
            .await;
        drop(inner);
        let delay = backoff;
        backoff = (backoff * 2).min(BACKOFF_MAX);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            c = control.recv() => match c {
                Some(Control::Evict) => {}
                _ => { replica.set_state(InstanceState::Stopped); return; }
            },
            _ = shutdown.changed() => return,
        }
    }
}

/// Starts a running replica's metric sampler and health checker (or registers it with its
/// target group at once when it has no health check).
async fn start_helpers(
    weak: &Weak<Inner>,
    replica: &Arc<Replica>,
    pid: i32,
) -> Vec<JoinHandle<()>> {
    let Some(inner) = weak.upgrade() else {
        return Vec::new();
    };
    let mut helpers = vec![tokio::spawn(process::sample(
        pid,
        SAMPLE_EVERY,
        replica.plan.spec.container.cpu_millis,
        inner.metrics.clone(),
        inner.ctx.sim.clone(),
        replica.plan.spec.name.clone(),
        replica.id.clone(),
    ))];
    match replica.plan.spec.container.health_check.clone() {
        None if replica.serves() => {
            helpers.push(tokio::spawn(until_listening(weak.clone(), replica.clone())))
        }
        None => replica.status().ready = true,
        Some(check) => helpers.push(tokio::spawn(health_check(
            weak.clone(),
            replica.clone(),
            check,
        ))),
    }
    helpers
}

/// A serving replica without a health check is ready once its port accepts connections;
/// then it is registered with its target group (never before it listens).
async fn until_listening(weak: Weak<Inner>, replica: Arc<Replica>) {
    while tokio::net::TcpStream::connect(("127.0.0.1", replica.port))
        .await
        .is_err()
    {
        tokio::time::sleep(DRAIN_POLL * 2).await;
    }
    replica.status().ready = true;
    if let Some(inner) = weak.upgrade() {
        inner.register(&replica).await;
    }
}

/// Checks a replica's health until aborted. Until its first answer it is checked every
/// 50 ms (at most every interval), so a replica is healthy as soon as it listens.
async fn health_check(
    weak: Weak<Inner>,
    replica: Arc<Replica>,
    check: mvi_core::container::HealthCheck,
) {
    let (mut ok, mut failed, mut answered) = (0u32, 0u32, false);
    loop {
        let healthy = process::http_ok(replica.port, &check.path, check.timeout).await;
        answered |= healthy;
        if healthy {
            ok += 1;
            failed = 0;
        } else {
            failed += 1;
            ok = 0;
        }
        let current = replica.status().state;
        if healthy && ok >= check.healthy_threshold && current != InstanceState::Healthy {
            {
                let mut s = replica.status();
                s.state = InstanceState::Healthy;
                s.ready = true;
            }
            if let Some(inner) = weak.upgrade() {
                inner.register(&replica).await;
            }
        } else if !healthy
            && answered
            && failed >= check.unhealthy_threshold
            && current != InstanceState::Unhealthy
        {
            replica.set_state(InstanceState::Unhealthy);
            replica.fail(format!("its health check {} failed", check.path));
        }
        let pause = if answered {
            check.interval
        } else {
            check.interval.min(Duration::from_millis(50))
        };
        tokio::time::sleep(pause).await;
    }
}

/// Evicts the replicas of VMs that are no longer running.
async fn watch_vms(
    weak: Weak<Inner>,
    mut events: tokio::sync::broadcast::Receiver<crate::vm::VmEvent>,
    mut shutdown: watch::Receiver<()>,
) {
    loop {
        tokio::select! {
            e = events.recv() => {
                if matches!(e, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                    return;
                }
            }
            _ = shutdown.changed() => return,
        }
        let Some(inner) = weak.upgrade() else { return };
        let running: Vec<String> = inner.vms.running().into_iter().map(|v| v.id).collect();
        let live = lock(&inner.live);
        for r in live.services.values().flatten() {
            let vm = r.status().vm.clone();
            if let Some(vm) = vm
                && !running.contains(&vm)
            {
                let _ = r.control.send(Control::Evict);
            }
        }
    }
}

/// How often the scalers' task looks at the simulator's clock (real time): a scaler
/// evaluates at the first tick a period after its last evaluation, so a manual clock moved
/// on is seen within this.
const SCALER_TICK: Duration = Duration::from_millis(20);

/// Evaluates the scalers that are due on the simulator's clock (see [`crate::container`]'s
/// `put_scaler`). A failed evaluation is traced; the next period tries again.
async fn run_scalers(weak: Weak<Inner>, mut shutdown: watch::Receiver<()>) {
    let mut tick = tokio::time::interval(SCALER_TICK);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let Some(inner) = weak.upgrade() else { return };
        let now = inner.ctx.sim.now();
        let services = Services {
            containers: Arc::new(LocalContainers {
                inner: inner.clone(),
            }),
            metrics: inner.metrics.clone(),
            load_balancers: inner.load_balancers.clone(),
            logs: Some(inner.logs.clone()),
        };
        let mut scalers = inner.scalers.lock().await;
        for (service, c) in scalers.iter_mut() {
            if !c.due(now) {
                continue;
            }
            if let Err(e) = c.evaluate(&services, now).await {
                tracing::warn!(%service, error = %e, "scaler evaluation failed");
            }
        }
    }
}

/// Starts the runs of due schedules: every tick (real time), a schedule whose next
/// occurrence after its last run is not after the simulator's now runs once.
async fn run_scheduler(weak: Weak<Inner>, mut shutdown: watch::Receiver<()>) {
    let mut tick = tokio::time::interval(SCHEDULER_TICK);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let Some(inner) = weak.upgrade() else { return };
        let now = inner.ctx.sim.now();
        let schedules: Vec<ScheduleRecord> =
            inner.state.lock().schedules.values().cloned().collect();
        for s in schedules {
            let Ok(cron) = parse_cron(op("schedule"), &s.spec.name, &s.spec.cron) else {
                continue;
            };
            let due = cron
                .find_next_occurrence(&s.since, false)
                .is_ok_and(|next| next <= now);
            if !due {
                continue;
            }
            let name = s.spec.name.clone();
            let marked = inner.state.mutate(op("schedule"), |st| {
                if let Some(r) = st.schedules.get_mut(&name) {
                    r.since = now;
                }
                Ok(())
            });
            if marked.is_err() {
                continue;
            }
            let task = inner.clone();
            let spec = s.spec.container.clone();
            tokio::spawn(async move {
                match start_task(&task, op("schedule"), &name, &spec).await {
                    Ok(started) => {
                        let weak = Arc::downgrade(&task);
                        drop(task);
                        let _ = finish_task(weak, started, SCHEDULED_TIMEOUT).await;
                    }
                    Err(e) => tracing::warn!("scheduled task {name} did not start: {e}"),
                }
            });
        }
    }
}

// ---- tasks ----

struct StartedTask {
    id: String,
    group: String,
    /// Who its endpoint key belongs to (one run's own: revoked when the run ends).
    principal: String,
    running: process::Running,
    started: Timestamp,
    shutdown: watch::Receiver<()>,
}

async fn start_task(
    inner: &Arc<Inner>,
    op: Op,
    name: &str,
    spec: &ContainerSpec,
) -> Result<StartedTask> {
    validate_name(op, "task", name, 255)?;
    validate_container(op, name, spec)?;
    let image = rootfs::resolve(op, &inner.images, &spec.image).await?;
    let id = inner.ctx.sim.id("task");
    let hold = {
        let running = inner.vms.running();
        let fleet = inner.vms.has_vms();
        let mut live = lock(&inner.live);
        let vm = placement::place(
            op,
            name,
            &running,
            fleet,
            &live.holds(),
            Need {
                cpu_millis: spec.cpu_millis,
                memory_mib: spec.memory_mib,
                service: None,
                subnets: &[],
            },
        )?;
        let hold = vm.map(|vm| Hold {
            vm,
            cpu_millis: spec.cpu_millis,
            memory_mib: spec.memory_mib,
            service: None,
        });
        live.tasks.insert(id.clone(), (hold.clone(), 0));
        hold
    };
    let _ = hold;
    let result = async {
        let group = task_group(name);
        inner.ensure_log(&group, &id).await?;
        let port = process::free_port(op)?;
        let launch = inner
            .prepare(op, &task_principal(name, &id), spec, &image, &id, port)
            .await?;
        let running = process::start(
            op,
            &launch,
            inner.logs.clone(),
            inner.ctx.sim.clone(),
            group.clone(),
            id.clone(),
        )?;
        inner.record_pid(&id, &running.record);
        if let Some(t) = lock(&inner.live).tasks.get_mut(&id) {
            t.1 = running.record.pid;
        }
        Ok(StartedTask {
            id: id.clone(),
            group,
            principal: task_principal(name, &id),
            running,
            started: inner.ctx.sim.now(),
            shutdown: inner.shutdown.subscribe(),
        })
    }
    .await;
    if result.is_err() {
        lock(&inner.live).tasks.remove(&id);
        inner.revoke_keys(&task_principal(name, &id));
    }
    result
}

/// The principal of one run of task `name`: its key is its own (never a service's of the
/// same name) and dies with the run.
fn task_principal(name: &str, id: &str) -> String {
    format!("task/{name}/{id}")
}

/// Waits for a task (killing it at `timeout`), collects its output, releases its hold.
async fn finish_task(
    weak: Weak<Inner>,
    mut task: StartedTask,
    timeout: Duration,
) -> Result<TaskResult> {
    let op = op("run_task");
    let waited = tokio::select! {
        w = tokio::time::timeout(timeout, task.running.child.wait()) => Some(w),
        _ = task.shutdown.changed() => None,
    };
    let pid = task.running.record.pid;
    let outcome = match waited {
        Some(Ok(status)) => {
            process::signal_group(pid, nix::sys::signal::Signal::SIGKILL);
            Ok(status.ok())
        }
        Some(Err(_)) => {
            process::stop(&mut task.running, Duration::ZERO).await;
            Err(op.err(
                ErrorKind::Timeout,
                &task.id,
                format!(
                    "the task ran longer than {timeout:?} and was killed; its output is in {}/{}",
                    task.group, task.id
                ),
            ))
        }
        None => Err(op.err(
            ErrorKind::Unavailable,
            &task.id,
            "the container service was closed while the task ran",
        )),
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), &mut task.running.pump).await;
    let inner = weak.upgrade();
    if let Some(inner) = &inner {
        inner.forget_pid(&task.id);
        lock(&inner.live).tasks.remove(&task.id);
        inner.revoke_keys(&task.principal);
    }
    let status = outcome?;
    Ok(TaskResult {
        id: task.id.clone(),
        exit_code: status.and_then(|s| s.code()),
        log_stream: (task.group.clone(), task.id.clone()),
        started: task.started,
        finished: inner.map(|i| i.ctx.sim.now()).unwrap_or(task.started),
    })
}

impl Inner {
    /// Sets the count of a running rolling deployment (and the service's recorded count);
    /// false when the service has none.
    fn set_rolling_count(&self, op: Op, name: &str, replicas: u32) -> Result<bool> {
        let mut rolling = lock(&self.rolling);
        let Some(count) = rolling.get_mut(name) else {
            return Ok(false);
        };
        self.state.mutate(op, |s| {
            if let Some(r) = s.services.get_mut(name) {
                r.spec.replicas = replicas;
            }
            Ok(())
        })?;
        *count = replicas;
        Ok(true)
    }

    /// The count a rolling deployment of `name` rolls to now.
    fn rolling_count(&self, name: &str) -> Option<u32> {
        lock(&self.rolling).get(name).copied()
    }

    /// Sets the replica count of service `name`: new replicas run the recorded revision; the
    /// newest replicas go first.
    async fn scale(self: &Arc<Self>, op: Op, name: &str, replicas: u32) -> Result<()> {
        let record = self
            .state
            .lock()
            .services
            .get(name)
            .cloned()
            .ok_or_else(|| op.not_found(name, "no such service"))?;
        let current: Vec<Arc<Replica>> = self
            .replicas(name)
            .into_iter()
            .filter(|r| r.in_set(PRIMARY_SET))
            .collect();
        let have = u32::try_from(current.len()).unwrap_or(u32::MAX);
        if replicas > have {
            // New replicas run the recorded revision.
            let plan = current
                .iter()
                .rev()
                .find(|r| r.plan.revision == record.revision())
                .map(|r| r.plan.clone())
                .unwrap_or_else(|| Arc::new(record.plan()));
            let vms = self.place_many(op, &plan, replicas - have)?;
            self.state.mutate(op, |s| {
                if let Some(r) = s.services.get_mut(name) {
                    r.spec.replicas = replicas;
                }
                Ok(())
            })?;
            self.add_replicas(&plan, vms, PRIMARY_SET)?;
        } else {
            self.state.mutate(op, |s| {
                if let Some(r) = s.services.get_mut(name) {
                    r.spec.replicas = replicas;
                }
                Ok(())
            })?;
            // The newest go first.
            let surplus: Vec<Arc<Replica>> = current.into_iter().skip(replicas as usize).collect();
            for r in &surplus {
                self.remove_replica(name, &r.id);
            }
            futures::future::join_all(surplus.iter().map(|r| stop_replica(r))).await;
        }
        Ok(())
    }

    /// Checks that what `spec` names exists, before anything is made: its target group,
    /// subnets and security groups (NotFound naming the missing one).
    async fn check_references(&self, op: Op, spec: &ServiceSpec) -> Result<()> {
        if let (Some(lbs), Some(group)) = (&self.load_balancers, &spec.target_group) {
            match lbs.target_health(group).await {
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    return Err(op.not_found(group, "no such target group"));
                }
                Err(e) => return Err(e),
                Ok(_) => {}
            }
        }
        let networks = self.vms.networks();
        if let Some(s) = spec.subnets.iter().find(|s| networks.subnet(s).is_none()) {
            return Err(op.not_found(s, "no such subnet"));
        }
        if let Some(g) = spec
            .security_groups
            .iter()
            .find(|g| networks.security_group(g).is_none())
        {
            return Err(op.not_found(g, "no such security group"));
        }
        Ok(())
    }

    /// Checks that every secret decrypts before anything starts.
    async fn check_secrets(&self, op: Op, c: &ContainerSpec) -> Result<()> {
        for s in &c.secrets {
            self.crypto
                .decrypt(&s.ciphertext, &EncryptionContext::new())
                .await
                .map_err(|e| {
                    op.err(
                        e.kind(),
                        &s.env,
                        format!("cannot decrypt the secret: {}", e.message()),
                    )
                })?;
        }
        Ok(())
    }

    /// Places `n` new replicas of `plan` all at once (all or none), returning their VMs.
    fn place_many(&self, op: Op, plan: &Plan, n: u32) -> Result<Vec<Option<String>>> {
        let running = self.vms.running();
        let fleet = self.vms.has_vms();
        let live = lock(&self.live);
        let mut holds = live.holds();
        let mut out = Vec::new();
        for _ in 0..n {
            let vm = placement::place(
                op,
                &plan.spec.name,
                &running,
                fleet,
                &holds,
                Need {
                    cpu_millis: plan.spec.container.cpu_millis,
                    memory_mib: plan.spec.container.memory_mib,
                    service: Some(&plan.spec.name),
                    subnets: &plan.spec.subnets,
                },
            )?;
            if let Some(vm) = &vm {
                holds.push(Hold {
                    vm: vm.clone(),
                    cpu_millis: plan.spec.container.cpu_millis,
                    memory_mib: plan.spec.container.memory_mib,
                    service: Some(plan.spec.name.clone()),
                });
            }
            out.push(vm);
        }
        Ok(out)
    }

    /// Starts `n` replicas of `plan` on `vms`, adding them to the service.
    fn add_replicas(
        self: &Arc<Self>,
        plan: &Arc<Plan>,
        vms: Vec<Option<String>>,
        set: &str,
    ) -> Result<()> {
        for vm in vms {
            let r = spawn_replica(self, plan.clone(), vm, set)?;
            lock(&self.live)
                .services
                .entry(plan.spec.name.clone())
                .or_default()
                .push(r);
        }
        Ok(())
    }

    fn replicas(&self, name: &str) -> Vec<Arc<Replica>> {
        lock(&self.live)
            .services
            .get(name)
            .cloned()
            .unwrap_or_default()
    }

    fn remove_replica(&self, name: &str, id: &str) {
        if let Some(rs) = lock(&self.live).services.get_mut(name) {
            rs.retain(|r| r.id != id);
        }
    }
}

// ---- the trait ----

impl LocalContainers {
    fn describe(&self, name: &str) -> Option<ServiceInfo> {
        let (spec, revision, rollout, sets) = {
            let state = self.inner.state.lock();
            let r = state.services.get(name)?;
            (
                r.spec.clone(),
                r.revision(),
                r.rollout.clone(),
                r.public_sets(),
            )
        };
        let live = lock(&self.inner.live);
        let replicas = live.services.get(name).cloned().unwrap_or_default();
        let instances: Vec<ContainerInstance> = replicas.iter().map(|r| r.info()).collect();
        let checked = spec.container.health_check.is_some();
        let available = replicas
            .iter()
            .filter(|r| {
                let s = r.status();
                r.plan.revision == revision
                    && s.ready
                    && (s.state == InstanceState::Healthy
                        || (!checked && s.state == InstanceState::Running))
            })
            .count();
        let stable = rollout.is_none()
            && sets.len() == 1
            && replicas.iter().all(|r| r.plan.revision == revision)
            && available == spec.replicas as usize
            && replicas.len() == spec.replicas as usize;
        let events = live
            .events
            .get(name)
            .map(|e| e.iter().cloned().collect())
            .unwrap_or_default();
        Some(ServiceInfo {
            spec,
            revision,
            instances,
            sets,
            rollout,
            stable,
            events,
        })
    }

    fn check_service(&self, op: Op, spec: &ServiceSpec) -> Result<()> {
        validate_service(op, spec)?;
        if spec.target_group.is_some() && self.inner.load_balancers.is_none() {
            return Err(op.invalid(
                &spec.name,
                "the service names a target group but this cloud has no load balancer service",
            ));
        }
        Ok(())
    }

    /// The recorded state of service `name`.
    fn record(&self, op: Op, name: &str) -> Result<ServiceRecord> {
        self.inner
            .state
            .lock()
            .services
            .get(name)
            .cloned()
            .ok_or_else(|| Self::no_service(op, name))
    }

    fn no_service(op: Op, name: &str) -> mvi_core::Error {
        op.not_found(name, "no such service")
    }
}

#[async_trait]
impl Containers for LocalContainers {
    async fn create_service(&self, spec: ServiceSpec) -> Result<ServiceInfo> {
        let op = op("create_service");
        self.check_service(op, &spec)?;
        let _changes = self.inner.changes.lock().await;
        if self.inner.state.lock().services.contains_key(&spec.name) {
            return Err(op.already_exists(&spec.name, "the service exists"));
        }
        self.inner.check_references(op, &spec).await?;
        let image = rootfs::resolve(op, &self.inner.images, &spec.container.image).await?;
        self.inner.check_secrets(op, &spec.container).await?;
        let record = ServiceRecord::new(spec.clone(), image, self.inner.ctx.sim.now());
        let plan = Arc::new(record.plan());
        let vms = self.inner.place_many(op, &plan, spec.replicas)?;
        self.inner.state.mutate(op, |s| {
            s.services.insert(spec.name.clone(), record);
            Ok(())
        })?;
        lock(&self.inner.live)
            .services
            .insert(spec.name.clone(), Vec::new());
        self.inner.add_replicas(&plan, vms, PRIMARY_SET)?;
        self.describe(&spec.name)
            .ok_or_else(|| Self::no_service(op, &spec.name))
    }

    async fn update_service(&self, spec: ServiceSpec) -> Result<ServiceInfo> {
        let op = op("update_service");
        self.check_service(op, &spec)?;
        let name = spec.name.clone();
        let _changes = self.inner.changes.lock().await;
        rollout::update(&self.inner, op, spec).await?;
        self.describe(&name)
            .ok_or_else(|| Self::no_service(op, &name))
    }

    async fn scale_service(&self, name: &str, replicas: u32) -> Result<ServiceInfo> {
        let op = op("scale_service");
        validate_replicas(op, name, replicas)?;
        // A rolling deployment holds the change lock until it ends: its count changes
        // without it, and the roll starts or stops replicas of the new revision.
        if self.inner.set_rolling_count(op, name, replicas)? {
            self.inner
                .event(
                    name,
                    format!("scaled to {replicas} replica(s) during the deployment"),
                )
                .await;
            return self
                .describe(name)
                .ok_or_else(|| Self::no_service(op, name));
        }
        let _changes = self.inner.changes.lock().await;
        self.inner.scale(op, name, replicas).await?;
        self.describe(name)
            .ok_or_else(|| Self::no_service(op, name))
    }

    async fn describe_service(&self, name: &str) -> Result<ServiceInfo> {
        self.describe(name)
            .ok_or_else(|| Self::no_service(op("describe_service"), name))
    }

    async fn list_revisions(&self, name: &str) -> Result<Vec<Revision>> {
        let state = self.inner.state.lock();
        let r = state
            .services
            .get(name)
            .ok_or_else(|| Self::no_service(op("list_revisions"), name))?;
        Ok(r.revisions.iter().map(RevisionRecord::public).collect())
    }

    async fn create_revision_set(&self, spec: ServiceSpec) -> Result<RevisionSet> {
        let op = op("create_revision_set");
        self.check_service(op, &spec)?;
        let _changes = self.inner.changes.lock().await;
        let record = self.record(op, &spec.name)?;
        self.inner.check_references(op, &spec).await?;
        // The revision of this definition: the same container, subnets and groups (the
        // target group is the set's own) is the same revision.
        let runs_same = |r: &RevisionRecord| r.container == spec.container;
        let same_place = record.spec.subnets == spec.subnets
            && record.spec.security_groups == spec.security_groups;
        let existing = record
            .revisions
            .iter()
            .rev()
            .find(|r| runs_same(r) && same_place)
            .cloned();
        let (number, image) = match existing {
            Some(r) => (r.number, r.image),
            None => {
                let image = rootfs::resolve(op, &self.inner.images, &spec.container.image).await?;
                self.inner.check_secrets(op, &spec.container).await?;
                (record.next_revision(), image)
            }
        };
        let id = self.inner.ctx.sim.id("set");
        let set = SetRecord {
            revision: number,
            target_group: spec.target_group.clone(),
            replicas: spec.replicas,
        };
        let now = self.inner.ctx.sim.now();
        self.inner.state.mutate(op, |s| {
            let r = s
                .services
                .get_mut(&spec.name)
                .ok_or_else(|| Self::no_service(op, &spec.name))?;
            if !r.revisions.iter().any(|x| x.number == number) {
                r.push_revision(RevisionRecord {
                    number,
                    container: spec.container.clone(),
                    image: image.clone(),
                    target_group: spec.target_group.clone(),
                    created: now,
                    state: RevisionState::Deploying,
                    reason: None,
                });
            }
            r.sets.insert(id.clone(), set.clone());
            Ok(())
        })?;
        let plan = Arc::new(Plan {
            spec: spec.clone(),
            image,
            revision: number,
        });
        // No room on the VMs: the replicas wait Pending (the controller's deadline bounds it).
        let vms = self
            .inner
            .place_many(op, &plan, spec.replicas)
            .unwrap_or_else(|_| vec![None; spec.replicas as usize]);
        self.inner.add_replicas(&plan, vms, &id)?;
        self.inner
            .event(
                &spec.name,
                format!(
                    "set {id}: {} replica(s) of revision {number} in target group {}",
                    spec.replicas,
                    spec.target_group.as_deref().unwrap_or("-")
                ),
            )
            .await;
        Ok(RevisionSet {
            id,
            revision: number,
            target_group: spec.target_group,
            replicas: spec.replicas,
        })
    }

    async fn delete_revision_set(&self, service: &str, set: &str) -> Result<()> {
        let op = op("delete_revision_set");
        validate_set_deletion(op, service, set)?;
        let _changes = self.inner.changes.lock().await;
        let known = self
            .inner
            .state
            .lock()
            .services
            .get(service)
            .ok_or_else(|| Self::no_service(op, service))?
            .sets
            .contains_key(set);
        if !known {
            return Err(op.not_found(format!("{service}/{set}"), "no such revision set"));
        }
        let doomed: Vec<Arc<Replica>> = self
            .inner
            .replicas(service)
            .into_iter()
            .filter(|r| r.in_set(set))
            .collect();
        for r in &doomed {
            self.inner.remove_replica(service, &r.id);
        }
        // Each is drained from its target group before it stops.
        futures::future::join_all(doomed.iter().map(|r| stop_replica(r))).await;
        self.inner.state.mutate(op, |s| {
            if let Some(r) = s.services.get_mut(service) {
                r.sets.remove(set);
            }
            Ok(())
        })?;
        self.inner
            .event(
                service,
                format!("set {set}: {} replica(s) drained and stopped", doomed.len()),
            )
            .await;
        Ok(())
    }

    async fn promote_revision_set(&self, service: &str, set: &str) -> Result<RevisionSet> {
        let op = op("promote_revision_set");
        let _changes = self.inner.changes.lock().await;
        let record = self.record(op, service)?;
        let promoted = record
            .sets
            .get(set)
            .cloned()
            .ok_or_else(|| op.not_found(format!("{service}/{set}"), "no such revision set"))?;
        let plan = record
            .set_plan(&promoted)
            .ok_or_else(|| op.internal(service, "the set's revision is not recorded"))?;
        let demoted_id = self.inner.ctx.sim.id("set");
        let demoted = SetRecord {
            revision: record.revision(),
            target_group: record.spec.target_group.clone(),
            replicas: record.spec.replicas,
        };
        let old_revision = record.revision();
        self.inner.state.mutate(op, |s| {
            let r = s
                .services
                .get_mut(service)
                .ok_or_else(|| Self::no_service(op, service))?;
            r.sets.remove(set);
            r.sets.insert(demoted_id.clone(), demoted.clone());
            let deployment = r.spec.deployment.clone();
            r.spec = plan.spec.clone();
            r.spec.deployment = deployment;
            r.image = plan.image.clone();
            r.revision = promoted.revision;
            if old_revision != promoted.revision {
                r.set_revision_state(old_revision, RevisionState::Superseded, None);
            }
            r.set_revision_state(promoted.revision, RevisionState::Active, None);
            Ok(())
        })?;
        for r in self.inner.replicas(service) {
            let mut st = r.status();
            if st.set == PRIMARY_SET {
                st.set = demoted_id.clone();
            } else if st.set == set {
                st.set = PRIMARY_SET.to_string();
            }
        }
        self.inner
            .event(
                service,
                format!(
                    "set {set} (revision {}) is now the service's own; revision {old_revision} is set {demoted_id}",
                    promoted.revision
                ),
            )
            .await;
        Ok(RevisionSet {
            id: demoted_id,
            revision: demoted.revision,
            target_group: demoted.target_group,
            replicas: demoted.replicas,
        })
    }

    async fn record_rollout(&self, service: &str, rollout: Option<Rollout>) -> Result<()> {
        let op = op("record_rollout");
        self.inner.state.mutate(op, |s| {
            let r = s
                .services
                .get_mut(service)
                .ok_or_else(|| Self::no_service(op, service))?;
            r.rollout = rollout;
            Ok(())
        })
    }

    async fn mark_revision(
        &self,
        service: &str,
        revision: u64,
        state: RevisionState,
        reason: Option<String>,
    ) -> Result<()> {
        let op = op("mark_revision");
        self.inner.state.mutate(op, |s| {
            let r = s
                .services
                .get_mut(service)
                .ok_or_else(|| Self::no_service(op, service))?;
            if !r.revisions.iter().any(|x| x.number == revision) {
                return Err(op.not_found(format!("{service}/{revision}"), "no such revision"));
            }
            r.set_revision_state(revision, state, reason);
            Ok(())
        })
    }

    async fn list_services(&self) -> Result<Vec<ServiceInfo>> {
        let names: Vec<String> = self.inner.state.lock().services.keys().cloned().collect();
        Ok(names.iter().filter_map(|n| self.describe(n)).collect())
    }

    async fn delete_service(&self, name: &str) -> Result<()> {
        let op = op("delete_service");
        // Its scaler goes first, before the changes lock (a scaler's evaluation holds the
        // scalers while it scales, which takes the changes lock).
        self.inner.scalers.lock().await.remove(name);
        let _changes = self.inner.changes.lock().await;
        if !self.inner.state.lock().services.contains_key(name) {
            return Err(Self::no_service(op, name));
        }
        let replicas = lock(&self.inner.live)
            .services
            .remove(name)
            .unwrap_or_default();
        futures::future::join_all(replicas.iter().map(|r| stop_replica(r))).await;
        // Its replicas are gone: so is what they could do through the endpoints.
        self.inner.revoke_keys(name);
        self.inner.state.mutate(op, |s| {
            s.services.remove(name);
            s.scalers.remove(name);
            Ok(())
        })
    }

    async fn run_task(
        &self,
        name: &str,
        spec: ContainerSpec,
        timeout: Duration,
    ) -> Result<TaskResult> {
        let op = op("run_task");
        if timeout.is_zero() {
            return Err(op.invalid(name, "the time-out must be positive"));
        }
        self.inner.check_secrets(op, &spec).await?;
        let started = start_task(&self.inner, op, name, &spec).await?;
        finish_task(Arc::downgrade(&self.inner), started, timeout).await
    }

    async fn put_schedule(&self, spec: ScheduleSpec) -> Result<()> {
        let op = op("put_schedule");
        validate_name(op, "schedule", &spec.name, 64)?;
        parse_cron(op, &spec.name, &spec.cron)?;
        validate_container(op, &spec.name, &spec.container)?;
        rootfs::parse_reference(op, &spec.container.image)?;
        let now = self.inner.ctx.sim.now();
        self.inner.state.mutate(op, |s| {
            s.schedules.insert(
                spec.name.clone(),
                ScheduleRecord {
                    spec: spec.clone(),
                    since: now,
                },
            );
            Ok(())
        })
    }

    async fn delete_schedule(&self, name: &str) -> Result<()> {
        let op = op("delete_schedule");
        self.inner.state.mutate(op, |s| {
            s.schedules
                .remove(name)
                .map(|_| ())
                .ok_or_else(|| op.not_found(name, "no such schedule"))
        })
    }

    async fn list_schedules(&self) -> Result<Vec<ScheduleSpec>> {
        Ok(self
            .inner
            .state
            .lock()
            .schedules
            .values()
            .map(|s| s.spec.clone())
            .collect())
    }

    async fn put_scaler(&self, spec: ScalerSpec) -> Result<ScalerInfo> {
        let op = op("put_scaler");
        let controller = Controller::new(spec.clone())?;
        if !self.inner.state.lock().services.contains_key(&spec.service) {
            return Err(Self::no_service(op, &spec.service));
        }
        let mut scalers = self.inner.scalers.lock().await;
        self.inner.state.mutate(op, |s| {
            s.scalers.insert(spec.service.clone(), spec.clone());
            Ok(())
        })?;
        let info = controller.info();
        scalers.insert(spec.service.clone(), controller);
        Ok(info)
    }

    async fn describe_scaler(&self, service: &str) -> Result<ScalerInfo> {
        self.inner
            .scalers
            .lock()
            .await
            .get(service)
            .map(Controller::info)
            .ok_or_else(|| op("describe_scaler").not_found(service, "the service has no scaler"))
    }

    async fn delete_scaler(&self, service: &str) -> Result<()> {
        let op = op("delete_scaler");
        let mut scalers = self.inner.scalers.lock().await;
        if !scalers.contains_key(service) {
            return Err(op.not_found(service, "the service has no scaler"));
        }
        self.inner.state.mutate(op, |s| {
            s.scalers.remove(service);
            Ok(())
        })?;
        scalers.remove(service);
        Ok(())
    }

    async fn access_policy(&self, grants: &[Grant]) -> Result<Policy> {
        Ok(Policy::of_grants(self.inner.endpoints.account(), grants))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt;

    use super::*;

    /// A program killed with -9 leaves its containers running; the next open finds them by
    /// their recorded pid and start time and kills them.
    #[tokio::test]
    async fn next_open_kills_orphans_of_a_killed_program() {
        let dir = tempfile::tempdir().unwrap();
        let mut orphan = std::process::Command::new("sleep")
            .arg("300")
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = i32::try_from(orphan.id()).unwrap();
        let record = PidRecord {
            pid,
            start_ticks: process::start_ticks(pid).unwrap(),
        };
        // A stale record (same pid, other start time) must not be acted on.
        let stale = PidRecord {
            pid: i32::try_from(std::process::id()).unwrap(),
            start_ticks: 1,
        };
        let mut state = State::default();
        state.pids.insert("ctr-orphan".into(), record);
        state.pids.insert("ctr-stale".into(), stale);
        std::fs::create_dir_all(dir.path().join("container")).unwrap();
        std::fs::write(
            dir.path().join("container").join(STATE_FILE),
            serde_json::to_vec(&state).unwrap(),
        )
        .unwrap();

        let cloud = crate::LocalCloud::builder()
            .root(dir.path())
            .build()
            .await
            .unwrap();
        let status = orphan.wait().unwrap();
        assert!(
            status.code().is_none(),
            "the orphan was not killed: {status}"
        );
        let saved: State = serde_json::from_slice(
            &std::fs::read(dir.path().join("container").join(STATE_FILE)).unwrap(),
        )
        .unwrap();
        assert!(saved.pids.is_empty(), "{:?}", saved.pids);
        drop(cloud);
    }
}
