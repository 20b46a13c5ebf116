//! Fault experiments, shaped like AWS Fault Injection Service (FIS): a [`Template`] names
//! targets (VMs by tag or zone, a service's replicas, a database, the API calls of services),
//! actions on them (crash or stop VMs, fail a zone, stop replicas, fail over or reboot a
//! database, inject API errors or latency, wait), each held for a duration and ordered with
//! `start_after`, and stop conditions (alarms). [`Experiment::run`] carries it out and returns
//! a [`Report`]: what was done to what and when, which alarms fired, and how long the
//! system took to return to its declared steady state.
//!
//! ```no_run
//! # async fn demo(cloud: mvi_core::Cloud, faults: mvi_core::fault::Faults,
//! #     hosts: std::sync::Arc<dyn mvi_core::experiment::HostFaults>) -> mvi_core::Result<()> {
//! use std::time::Duration;
//! use mvi_core::Service;
//! use mvi_core::experiment::{Action, Experiment, SteadyState, Target, Template};
//!
//! let template = Template::new("zone-outage")
//!     .target("kv-calls", Target::api([Service::Kv]))
//!     .action("fail-zone", Action::fail_zone("local-1a").duration(Duration::from_secs(30)))
//!     .action(
//!         "kv-errors",
//!         Action::api_errors("kv-calls", 20.0)
//!             .duration(Duration::from_secs(10))
//!             .start_after(["fail-zone"]),
//!     )
//!     .stop_when_alarm("web-5xx")
//!     .steady_state(SteadyState::service_stable("web"));
//! let report = Experiment::new(template).faults(faults).hosts(hosts).run(&cloud).await?;
//! println!("{report}");
//! # Ok(()) }
//! ```
//!
//! Semantics, as FIS has them where it has them:
//! - An action starts once every action it names in `start_after` has completed; one with a
//!   duration holds its fault that long, then reverts it (VMs started again, the zone
//!   restored, the API rules withdrawn) and completes. One-shot actions (a crash or stop
//!   without a duration, stopped replicas, a failover, a reboot) complete when done; their
//!   effect is the system's to recover from.
//! - Targets are resolved when their action starts: running VMs with every tag given (and in
//!   the zone, if given), running replicas of the service; the selection (all, a count, a
//!   percentage rounded up) is drawn from the experiment's seed. A target matching nothing
//!   fails the experiment.
//! - Before anything is injected the template is checked whole (names, references, cycles,
//!   durations, rates, what each action needs), every service and database a target names must
//!   exist, every stop-condition alarm must exist and not be in ALARM, and the steady state
//!   must hold. Any of these refuses the run with an error naming what was wrong; nothing has
//!   been done.
//! - While it runs, the stop conditions and the steady state are looked at every tick
//!   (100 ms by default). A stop-condition alarm in ALARM stops the experiment: every action
//!   holding a fault is reverted at once and the actions not started are cancelled. So is an
//!   action that fails, and so are stop conditions that cannot be read three looks in a row
//!   (an experiment that cannot see its alarms is not run blind).
//! - Recovery is measured against the steady state: from the first fault injected to the
//!   first look at which the steady state held again after it had been seen not to. After the
//!   last action the experiment waits for it (`recovery_timeout`, 60 s by default).
//! - Dropping the future of `run` part way reverts what it holds, in a task of its own.
//!
//! Host faults (crashing VMs, failing zones, killing replicas) are the local backend's
//! ([`HostFaults`], from `LocalCloud::host_faults`). Stopping VMs, database failovers and
//! reboots go through the cloud's own services, and API errors and latency through the
//! [`Faults`] layer, so those run on the AWS backend too.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::container::InstanceState;
use crate::database::DatabaseState;
use crate::error::quote;
use crate::fault::{FaultRule, Faults, Injection};
use crate::lb::TargetHealth;
use crate::metric::AlarmState;
use crate::vm::VmState;
use crate::{Clock, Cloud, ErrorKind, Op, Result, Service, SystemClock, Tags, Timestamp};

fn op() -> Op {
    Op::new(Service::Backend, "run_experiment")
}

/// The longest an action may hold its fault (FIS's longest action is 12 hours).
pub const MAX_DURATION: Duration = Duration::from_secs(12 * 3600);
/// The most latency an action may add to a call.
pub const MAX_LATENCY: Duration = Duration::from_secs(60);
/// Stop-condition reads that may fail in a row before the experiment stops.
const BLIND_LOOKS: u32 = 3;

/// Failures of hosts, which only a simulator can cause on demand (on AWS, FIS does it).
#[async_trait]
pub trait HostFaults: fmt::Debug + Send + Sync + 'static {
    /// VM `id` stops at once, without shutting down; the replicas placed on it die with it.
    async fn crash_vm(&self, id: &str) -> Result<()>;
    /// Every running VM of `zone` stops and none starts there until
    /// [`HostFaults::restore_zone`]; returns the VMs it stopped.
    async fn fail_zone(&self, zone: &str) -> Result<Vec<String>>;
    /// Ends a zone failure.
    async fn restore_zone(&self, zone: &str) -> Result<()>;
    /// Replica `instance` of `service` is killed (SIGKILL); its service replaces it.
    async fn kill_replica(&self, service: &str, instance: &str) -> Result<()>;
}

/// Which of the resources a target matches are acted on (FIS's `selectionMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// Every one.
    All,
    /// This many, drawn from the experiment's seed (all of them if fewer match).
    Count(u32),
    /// This percentage (1–100), rounded up, drawn from the experiment's seed.
    Percent(u32),
}

/// What a target is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetKind {
    /// VMs.
    Vms,
    /// The replicas of a container service.
    Replicas(String),
    /// A database instance.
    Database(String),
    /// The API calls of these services (through the [`Faults`] layer).
    Api(Vec<Service>),
}

/// A set of resources actions act on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Target {
    /// What it is.
    pub kind: TargetKind,
    /// VMs only: the tags a VM must have, every one.
    pub tags: Tags,
    /// VMs only: the zone a VM must be in.
    pub zone: Option<String>,
    /// API targets only: the operations (`put_item`); empty means every one.
    pub operations: Vec<String>,
    /// Which of those matched are acted on.
    pub selection: Selection,
}

impl Target {
    fn of(kind: TargetKind) -> Self {
        Target {
            kind,
            tags: Tags::new(),
            zone: None,
            operations: Vec::new(),
            selection: Selection::All,
        }
    }

    /// Running VMs (narrow them with [`Target::tag`] and [`Target::zone`]).
    pub fn vms() -> Self {
        Target::of(TargetKind::Vms)
    }

    /// The running replicas of container service `service`.
    pub fn replicas(service: impl Into<String>) -> Self {
        Target::of(TargetKind::Replicas(service.into()))
    }

    /// Database instance `name`.
    pub fn database(name: impl Into<String>) -> Self {
        Target::of(TargetKind::Database(name.into()))
    }

    /// The API calls of `services`.
    pub fn api(services: impl IntoIterator<Item = Service>) -> Self {
        Target::of(TargetKind::Api(services.into_iter().collect()))
    }

    /// VMs with tag `key` = `value` (and every other tag given).
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.insert(key.into(), value.into());
        self
    }

    /// VMs in `zone`.
    pub fn zone(mut self, zone: impl Into<String>) -> Self {
        self.zone = Some(zone.into());
        self
    }

    /// Only these operations of the API target's services.
    pub fn operations<S: Into<String>>(mut self, operations: impl IntoIterator<Item = S>) -> Self {
        self.operations = operations.into_iter().map(Into::into).collect();
        self
    }

    /// Acts on `n` of the matches.
    pub fn count(mut self, n: u32) -> Self {
        self.selection = Selection::Count(n);
        self
    }

    /// Acts on `percent` % of the matches, rounded up.
    pub fn percent(mut self, percent: u32) -> Self {
        self.selection = Selection::Percent(percent);
        self
    }
}

/// What an action does.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Crash the target's VMs (FIS `aws:ec2:stop-instances` without a shutdown); with a
    /// duration they are started again after it.
    CrashVms,
    /// Stop the target's VMs through the VM service (FIS `aws:ec2:stop-instances`); with a
    /// duration they are started again after it.
    StopVms,
    /// Fail a whole zone for the duration (FIS's AZ power interruption).
    FailZone(String),
    /// Kill the target's replicas (FIS `aws:ecs:stop-task`); their service replaces them.
    StopReplicas,
    /// Reboot the target database with a failover to its standby (FIS
    /// `aws:rds:reboot-db-instances` with `forceFailover`).
    FailoverDatabase,
    /// Reboot the target database in place.
    RebootDatabase,
    /// Fail this percentage (0–100] of the target's API calls with `kind` for the duration
    /// (FIS `aws:fis:inject-api-internal-error`, `-unavailable-error`, `-throttle-error`).
    ApiErrors {
        /// The percentage of calls that fail.
        percent: f64,
        /// The error they fail with.
        kind: ErrorKind,
    },
    /// Add this latency to every API call of the target for the duration.
    ApiLatency(Duration),
    /// Do nothing for the duration (FIS `aws:fis:wait`), to order other actions.
    Wait,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::CrashVms => write!(f, "crash VMs"),
            Fault::StopVms => write!(f, "stop VMs"),
            Fault::FailZone(zone) => write!(f, "fail zone {zone}"),
            Fault::StopReplicas => write!(f, "stop replicas"),
            Fault::FailoverDatabase => write!(f, "fail over database"),
            Fault::RebootDatabase => write!(f, "reboot database"),
            Fault::ApiErrors { percent, kind } => {
                write!(f, "fail {percent}% of API calls with {}", kind.as_str())
            }
            Fault::ApiLatency(d) => write!(f, "add {} ms to API calls", d.as_millis()),
            Fault::Wait => write!(f, "wait"),
        }
    }
}

/// One step of an experiment.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Action {
    /// What it does.
    pub fault: Fault,
    /// The target it acts on, by name (none for a zone failure or a wait).
    pub target: Option<String>,
    /// How long it holds its fault before reverting it.
    pub duration: Option<Duration>,
    /// The actions that must have completed before it starts.
    pub start_after: Vec<String>,
}

impl Action {
    fn of(fault: Fault, target: Option<String>) -> Self {
        Action {
            fault,
            target,
            duration: None,
            start_after: Vec::new(),
        }
    }

    /// Crashes the VMs of `target`.
    pub fn crash_vms(target: impl Into<String>) -> Self {
        Action::of(Fault::CrashVms, Some(target.into()))
    }

    /// Stops the VMs of `target`.
    pub fn stop_vms(target: impl Into<String>) -> Self {
        Action::of(Fault::StopVms, Some(target.into()))
    }

    /// Fails `zone` (give it a duration).
    pub fn fail_zone(zone: impl Into<String>) -> Self {
        Action::of(Fault::FailZone(zone.into()), None)
    }

    /// Kills the replicas of `target`.
    pub fn stop_replicas(target: impl Into<String>) -> Self {
        Action::of(Fault::StopReplicas, Some(target.into()))
    }

    /// Fails the database of `target` over to its standby.
    pub fn failover_database(target: impl Into<String>) -> Self {
        Action::of(Fault::FailoverDatabase, Some(target.into()))
    }

    /// Reboots the database of `target`.
    pub fn reboot_database(target: impl Into<String>) -> Self {
        Action::of(Fault::RebootDatabase, Some(target.into()))
    }

    /// Fails `percent` % of the API calls of `target` with `Unavailable` (see
    /// [`Action::kind`]); give it a duration.
    pub fn api_errors(target: impl Into<String>, percent: f64) -> Self {
        Action::of(
            Fault::ApiErrors {
                percent,
                kind: ErrorKind::Unavailable,
            },
            Some(target.into()),
        )
    }

    /// Adds `latency` to the API calls of `target`; give it a duration.
    pub fn api_latency(target: impl Into<String>, latency: Duration) -> Self {
        Action::of(Fault::ApiLatency(latency), Some(target.into()))
    }

    /// Waits for `duration`.
    pub fn wait(duration: Duration) -> Self {
        Action::of(Fault::Wait, None).duration(duration)
    }

    /// Holds the fault for `duration`, then reverts it.
    pub fn duration(mut self, duration: Duration) -> Self {
        self.duration = Some(duration);
        self
    }

    /// Starts only once every one of `actions` has completed.
    pub fn start_after<S: Into<String>>(mut self, actions: impl IntoIterator<Item = S>) -> Self {
        self.start_after.extend(actions.into_iter().map(Into::into));
        self
    }

    /// The kind of the errors an [`Action::api_errors`] injects (`RateLimited` for throttling,
    /// `Internal`, `Timeout`, ...).
    pub fn kind(mut self, kind: ErrorKind) -> Self {
        if let Fault::ApiErrors { kind: k, .. } = &mut self.fault {
            *k = kind;
        }
        self
    }
}

/// What "working" means for the system under the experiment, looked at before, during and
/// after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SteadyState {
    /// The service is stable: its desired count of replicas running, no deployment.
    ServiceStable(String),
    /// At least this many targets of the target group are healthy.
    HealthyTargets {
        /// The target group.
        group: String,
        /// How many must be healthy.
        at_least: usize,
    },
    /// The database is available.
    DatabaseAvailable(String),
    /// The alarm is not in ALARM.
    AlarmNotFiring(String),
}

impl SteadyState {
    /// Service `name` is stable.
    pub fn service_stable(name: impl Into<String>) -> Self {
        SteadyState::ServiceStable(name.into())
    }

    /// At least `at_least` targets of `group` are healthy.
    pub fn healthy_targets(group: impl Into<String>, at_least: usize) -> Self {
        SteadyState::HealthyTargets {
            group: group.into(),
            at_least,
        }
    }

    /// Database `name` is available.
    pub fn database_available(name: impl Into<String>) -> Self {
        SteadyState::DatabaseAvailable(name.into())
    }

    /// Alarm `name` is not in ALARM.
    pub fn alarm_not_firing(name: impl Into<String>) -> Self {
        SteadyState::AlarmNotFiring(name.into())
    }

    /// `None` when it holds, else why not.
    async fn check(&self, cloud: &Cloud) -> Option<String> {
        let failing = async {
            Ok::<_, crate::Error>(match self {
                SteadyState::ServiceStable(name) => {
                    let info = cloud.containers()?.describe_service(name).await?;
                    let running = info
                        .instances
                        .iter()
                        .filter(|i| {
                            matches!(i.state, InstanceState::Running | InstanceState::Healthy)
                        })
                        .count();
                    (!info.stable).then(|| {
                        format!(
                            "service {name} is not stable ({running} of {} replicas running)",
                            info.spec.replicas
                        )
                    })
                }
                SteadyState::HealthyTargets { group, at_least } => {
                    let healthy = cloud
                        .load_balancers()?
                        .target_health(group)
                        .await?
                        .iter()
                        .filter(|t| t.health == TargetHealth::Healthy)
                        .count();
                    (healthy < *at_least).then(|| {
                        format!("{healthy} targets of {group} healthy, fewer than {at_least}")
                    })
                }
                SteadyState::DatabaseAvailable(name) => {
                    let info = cloud.databases()?.describe_database(name).await?;
                    (info.state != DatabaseState::Available)
                        .then(|| format!("database {name} is {:?}", info.state))
                }
                SteadyState::AlarmNotFiring(name) => {
                    let alarm = find_alarm(cloud, name).await?;
                    (alarm.state == AlarmState::Alarm)
                        .then(|| format!("alarm {name} is in ALARM ({})", alarm.reason))
                }
            })
        };
        match failing.await {
            Ok(failing) => failing,
            Err(e) => Some(format!("cannot tell ({e})")),
        }
    }
}

async fn find_alarm(cloud: &Cloud, name: &str) -> Result<crate::metric::Alarm> {
    cloud
        .metrics()?
        .describe_alarms(Some(name))
        .await?
        .into_iter()
        .find(|a| a.spec.name == name)
        .ok_or_else(|| op().not_found(name, format!("there is no alarm {}", quote(name))))
}

/// A fault experiment's definition (FIS's experiment template).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Template {
    /// Its name (1–64 letters, digits, `-` and `_`).
    pub name: String,
    /// The targets, by name.
    pub targets: BTreeMap<String, Target>,
    /// The actions, by name.
    pub actions: BTreeMap<String, Action>,
    /// Alarms that stop the experiment when in ALARM.
    pub stop_conditions: Vec<String>,
    /// What must hold before the experiment, and what recovery is measured against.
    pub steady_state: Vec<SteadyState>,
    /// How long to wait after the last action for the steady state to hold again.
    pub recovery_timeout: Duration,
}

impl Template {
    /// An empty template `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Template {
            name: name.into(),
            targets: BTreeMap::new(),
            actions: BTreeMap::new(),
            stop_conditions: Vec::new(),
            steady_state: Vec::new(),
            recovery_timeout: Duration::from_secs(60),
        }
    }

    /// Adds target `name`.
    pub fn target(mut self, name: impl Into<String>, target: Target) -> Self {
        self.targets.insert(name.into(), target);
        self
    }

    /// Adds action `name`.
    pub fn action(mut self, name: impl Into<String>, action: Action) -> Self {
        self.actions.insert(name.into(), action);
        self
    }

    /// Stops the experiment (and reverts every fault) when alarm `name` is in ALARM.
    pub fn stop_when_alarm(mut self, name: impl Into<String>) -> Self {
        self.stop_conditions.push(name.into());
        self
    }

    /// Adds a condition of the steady state.
    pub fn steady_state(mut self, condition: SteadyState) -> Self {
        self.steady_state.push(condition);
        self
    }

    /// Waits up to `timeout` after the last action for the steady state to hold again.
    pub fn recovery_timeout(mut self, timeout: Duration) -> Self {
        self.recovery_timeout = timeout;
        self
    }

    /// Checks the template on its own: names, references, the order of actions (no cycle),
    /// durations, rates, and that each action has a target of the kind it acts on.
    pub fn validate(&self) -> Result<()> {
        let op = op();
        let resource = format!("experiment template {}", quote(&self.name));
        let bad = |message: String| op.invalid(resource.clone(), message);
        if !valid_name(&self.name) {
            return Err(bad(format!(
                "the name {} is not 1–64 letters, digits, hyphens and underscores",
                quote(&self.name)
            )));
        }
        if self.actions.is_empty() {
            return Err(bad("it has no action".into()));
        }
        for name in self.targets.keys().chain(self.actions.keys()) {
            if !valid_name(name) {
                return Err(bad(format!(
                    "the name {} is not 1–64 letters, digits, hyphens and underscores",
                    quote(name)
                )));
            }
        }
        for (name, target) in &self.targets {
            validate_target(name, target).map_err(&bad)?;
            if !self
                .actions
                .values()
                .any(|a| a.target.as_deref() == Some(name))
            {
                return Err(bad(format!("target {} is used by no action", quote(name))));
            }
        }
        for (name, action) in &self.actions {
            self.validate_action(name, action).map_err(&bad)?;
        }
        if let Some(name) = self.cycle() {
            return Err(bad(format!(
                "action {} waits for itself through start_after",
                quote(&name)
            )));
        }
        if self.recovery_timeout > MAX_DURATION {
            return Err(bad("recovery_timeout is longer than 12 hours".into()));
        }
        for alarm in &self.stop_conditions {
            if alarm.is_empty() {
                return Err(bad("a stop condition names no alarm".into()));
            }
        }
        Ok(())
    }

    fn validate_action(&self, name: &str, action: &Action) -> std::result::Result<(), String> {
        let want = |what: &str| -> std::result::Result<&Target, String> {
            let Some(t) = &action.target else {
                return Err(format!(
                    "action {} ({}) needs a {what} target",
                    quote(name),
                    action.fault
                ));
            };
            let target = self.targets.get(t).ok_or_else(|| {
                format!(
                    "action {} names target {}, which is not defined",
                    quote(name),
                    quote(t)
                )
            })?;
            let matches = matches!(
                (&target.kind, what),
                (TargetKind::Vms, "VM")
                    | (TargetKind::Replicas(_), "replica")
                    | (TargetKind::Database(_), "database")
                    | (TargetKind::Api(_), "API")
            );
            if !matches {
                return Err(format!(
                    "action {} ({}) needs a {what} target; {} is not one",
                    quote(name),
                    action.fault,
                    quote(t)
                ));
            }
            Ok(target)
        };
        let no_target = || match &action.target {
            Some(t) => Err(format!(
                "action {} ({}) takes no target, yet names {}",
                quote(name),
                action.fault,
                quote(t)
            )),
            None => Ok(()),
        };
        let needs_duration = || match action.duration {
            None => Err(format!(
                "action {} ({}) needs a duration: it holds its fault until then",
                quote(name),
                action.fault
            )),
            Some(_) => Ok(()),
        };
        let no_duration = |why: &str| match action.duration {
            Some(_) => Err(format!(
                "action {} ({}) takes no duration: {why}",
                quote(name),
                action.fault
            )),
            None => Ok(()),
        };
        match &action.fault {
            Fault::CrashVms | Fault::StopVms => {
                want("VM")?;
            }
            Fault::FailZone(zone) => {
                no_target()?;
                needs_duration()?;
                if zone.is_empty() {
                    return Err(format!("action {} names no zone", quote(name)));
                }
            }
            Fault::StopReplicas => {
                want("replica")?;
                no_duration("the service replaces its replicas")?;
            }
            Fault::FailoverDatabase | Fault::RebootDatabase => {
                want("database")?;
                no_duration("a reboot is over when the database is back")?;
            }
            Fault::ApiErrors { percent, .. } => {
                want("API")?;
                needs_duration()?;
                if !(*percent > 0.0 && *percent <= 100.0) {
                    return Err(format!(
                        "action {}: the percentage of failed calls must be above 0 and at most 100, not {percent}",
                        quote(name)
                    ));
                }
            }
            Fault::ApiLatency(latency) => {
                want("API")?;
                needs_duration()?;
                if latency.is_zero() || *latency > MAX_LATENCY {
                    return Err(format!(
                        "action {}: the latency must be above 0 and at most {} s, not {latency:?}",
                        quote(name),
                        MAX_LATENCY.as_secs()
                    ));
                }
            }
            Fault::Wait => {
                no_target()?;
                needs_duration()?;
            }
        }
        if let Some(d) = action.duration
            && (d.is_zero() || d > MAX_DURATION)
        {
            return Err(format!(
                "action {}: a duration is above 0 and at most 12 hours, not {d:?}",
                quote(name)
            ));
        }
        for after in &action.start_after {
            if !self.actions.contains_key(after) {
                return Err(format!(
                    "action {} starts after {}, which is not an action of the template",
                    quote(name),
                    quote(after)
                ));
            }
        }
        Ok(())
    }

    /// An action on a cycle of `start_after`, if there is one.
    fn cycle(&self) -> Option<String> {
        let mut done: BTreeSet<&str> = BTreeSet::new();
        loop {
            let ready: Vec<&str> = self
                .actions
                .iter()
                .filter(|(n, a)| {
                    !done.contains(n.as_str())
                        && a.start_after.iter().all(|d| done.contains(d.as_str()))
                })
                .map(|(n, _)| n.as_str())
                .collect();
            if ready.is_empty() {
                return self
                    .actions
                    .keys()
                    .find(|n| !done.contains(n.as_str()))
                    .cloned();
            }
            done.extend(ready);
        }
    }
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn validate_target(name: &str, t: &Target) -> std::result::Result<(), String> {
    let is_vms = t.kind == TargetKind::Vms;
    if !is_vms && (!t.tags.is_empty() || t.zone.is_some()) {
        return Err(format!(
            "target {}: only VM targets filter by tag or zone",
            quote(name)
        ));
    }
    let is_api = matches!(t.kind, TargetKind::Api(_));
    if !is_api && !t.operations.is_empty() {
        return Err(format!(
            "target {}: only API targets name operations",
            quote(name)
        ));
    }
    let selects = matches!(t.kind, TargetKind::Vms | TargetKind::Replicas(_));
    match t.selection {
        Selection::All => {}
        _ if !selects => {
            return Err(format!(
                "target {}: only VM and replica targets select some of their matches",
                quote(name)
            ));
        }
        Selection::Count(0) => {
            return Err(format!(
                "target {}: a count selects at least 1",
                quote(name)
            ));
        }
        Selection::Percent(p) if !(1..=100).contains(&p) => {
            return Err(format!(
                "target {}: a percentage is 1–100, not {p}",
                quote(name)
            ));
        }
        _ => {}
    }
    match &t.kind {
        TargetKind::Replicas(s) | TargetKind::Database(s) if s.is_empty() => {
            Err(format!("target {} names no resource", quote(name)))
        }
        TargetKind::Api(services) if services.is_empty() => {
            Err(format!("target {} names no service", quote(name)))
        }
        _ => Ok(()),
    }
}

/// How an experiment ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every action ran to its end.
    Completed,
    /// Stopped early: a stop-condition alarm went to ALARM (`alarm`), or the stop conditions
    /// could not be read (`alarm` is `None`; `reason` says what failed).
    Stopped {
        /// The alarm that stopped it.
        alarm: Option<String>,
        /// Why.
        reason: String,
    },
    /// An action failed (`error`), which stopped the experiment.
    Failed {
        /// The action.
        action: String,
        /// What went wrong.
        error: String,
    },
}

/// What became of an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionState {
    /// It ran to its end (and reverted its fault, if it held one).
    Completed,
    /// The experiment stopped while it held its fault; the fault was reverted then.
    Stopped,
    /// It never started: the experiment ended first.
    Cancelled,
    /// It failed (the message says how).
    Failed(String),
}

/// One action, as it went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionReport {
    /// Its name.
    pub name: String,
    /// What it does (`fail zone local-1a`).
    pub fault: String,
    /// What it acted on (VM ids, replica ids, a database, services).
    pub resources: Vec<String>,
    /// When it started, since the experiment started.
    pub started: Option<Duration>,
    /// When it ended (its fault reverted), since the experiment started.
    pub ended: Option<Duration>,
    /// What became of it.
    pub state: ActionState,
}

/// An alarm seen in ALARM during the experiment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmFired {
    /// The alarm.
    pub name: String,
    /// When it was first seen in ALARM, since the experiment started.
    pub at: Duration,
    /// Whether it is one of the template's stop conditions.
    pub stop_condition: bool,
    /// Its reason then.
    pub reason: String,
}

/// How the system came back to its steady state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// The template declares no steady state.
    NotWatched,
    /// It held at every look.
    Held,
    /// It was seen not to hold at `departed` and held again at `restored` (both since the
    /// experiment started); `took` is from the first fault to `restored`.
    Recovered {
        /// When it was first seen not to hold.
        departed: Duration,
        /// When it held again.
        restored: Duration,
        /// From the first fault injected to `restored`.
        took: Duration,
    },
    /// It had not held again `recovery_timeout` after the last action.
    NotRecovered {
        /// When it was first seen not to hold.
        departed: Duration,
        /// What still failed at the last look.
        failing: String,
    },
}

/// What an experiment did and saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The template's name.
    pub name: String,
    /// When it started.
    pub started: Timestamp,
    /// How long it ran, the recovery wait included.
    pub duration: Duration,
    /// How it ended.
    pub outcome: Outcome,
    /// Every action, in the order they started (those never started last).
    pub actions: Vec<ActionReport>,
    /// Every alarm seen in ALARM, in the order seen.
    pub alarms: Vec<AlarmFired>,
    /// The steady state's recovery.
    pub recovery: Recovery,
    /// What happened, in order: (since the start, what).
    pub timeline: Vec<(Duration, String)>,
    /// Faults that could not be reverted (empty when every one was).
    pub revert_errors: Vec<String>,
}

impl Report {
    /// The report of action `name`.
    pub fn action(&self, name: &str) -> Option<&ActionReport> {
        self.actions.iter().find(|a| a.name == name)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let outcome = match &self.outcome {
            Outcome::Completed => "completed".to_string(),
            Outcome::Stopped { reason, .. } => format!("stopped: {reason}"),
            Outcome::Failed { action, error } => format!("failed: action {action}: {error}"),
        };
        writeln!(
            f,
            "experiment {} ({}): {outcome}, {:.1} s",
            self.name,
            self.started.format("%Y-%m-%dT%H:%M:%SZ"),
            self.duration.as_secs_f64()
        )?;
        for (at, what) in &self.timeline {
            writeln!(f, "  {:>8.3} s  {what}", at.as_secs_f64())?;
        }
        let recovery = match &self.recovery {
            Recovery::NotWatched => "no steady state declared".to_string(),
            Recovery::Held => "the steady state held throughout".to_string(),
            Recovery::Recovered { took, .. } => {
                format!(
                    "recovered {:.3} s after the first fault",
                    took.as_secs_f64()
                )
            }
            Recovery::NotRecovered { failing, .. } => format!("not recovered: {failing}"),
        };
        write!(f, "  {recovery}")?;
        for e in &self.revert_errors {
            write!(f, "\n  NOT REVERTED: {e}")?;
        }
        Ok(())
    }
}

/// How to undo what an action holds.
#[derive(Debug, Clone)]
enum Undo {
    StartVms(Vec<String>),
    RestoreZone { zone: String, vms: Vec<String> },
    Withdraw(Vec<Injection>),
}

/// The faults held now, shared with the guard that reverts them if `run` is dropped.
#[derive(Debug, Default)]
struct Held {
    undos: BTreeMap<String, Undo>,
}

/// What reverting needs, cheap to clone into a task.
#[derive(Debug, Clone)]
struct Reverter {
    cloud: Cloud,
    faults: Option<Faults>,
    hosts: Option<Arc<dyn HostFaults>>,
}

impl Reverter {
    /// Undoes one fault; the errors of what could not be undone.
    async fn undo(&self, undo: Undo) -> Vec<String> {
        let mut errors = Vec::new();
        match undo {
            Undo::Withdraw(injections) => {
                if let Some(faults) = &self.faults {
                    for i in injections {
                        faults.withdraw(i);
                    }
                }
            }
            Undo::StartVms(vms) => self.start_vms(&vms, &mut errors).await,
            Undo::RestoreZone { zone, vms } => {
                match &self.hosts {
                    Some(hosts) => {
                        if let Err(e) = retry(|| hosts.restore_zone(&zone)).await {
                            errors.push(format!("zone {zone}: {e}"));
                        }
                    }
                    None => errors.push(format!("zone {zone}: no host faults to restore it")),
                }
                self.start_vms(&vms, &mut errors).await;
            }
        }
        errors
    }

    async fn start_vms(&self, vms: &[String], errors: &mut Vec<String>) {
        let service = match self.cloud.vms() {
            Ok(s) => s.clone(),
            Err(e) => {
                errors.push(e.to_string());
                return;
            }
        };
        for id in vms {
            let started = retry(|| service.start_instance(id)).await;
            // A VM terminated meanwhile is not one to bring back.
            if let Err(e) = started
                && !e.is_not_found()
            {
                errors.push(format!("VM {id}: {e}"));
            }
        }
    }
}

/// Retries `call` while it fails with a retryable error (an API fault of another action),
/// a few times.
async fn retry<T, F, Fut>(mut call: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut attempt = 0;
    loop {
        match call().await {
            Err(e) if e.is_retryable() && attempt < 20 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            r => return r,
        }
    }
}

/// Reverts, in a task of its own, whatever is still held when `run`'s future is dropped.
struct DropGuard {
    held: Arc<Mutex<Held>>,
    reverter: Reverter,
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        let undos = std::mem::take(&mut lock(&self.held).undos);
        if undos.is_empty() {
            return;
        }
        let reverter = self.reverter.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    for (name, undo) in undos {
                        for e in reverter.undo(undo).await {
                            tracing::error!(action = %name, "experiment dropped: cannot revert: {e}");
                        }
                    }
                });
            }
            Err(_) => tracing::error!(
                "experiment dropped outside a runtime: {} faults are not reverted",
                undos.len()
            ),
        }
    }
}

fn lock(held: &Mutex<Held>) -> std::sync::MutexGuard<'_, Held> {
    // Every update leaves the map whole.
    held.lock().unwrap_or_else(|e| e.into_inner())
}

/// A run of a template (see the module doc).
#[derive(Debug, Clone)]
pub struct Experiment {
    template: Template,
    faults: Option<Faults>,
    hosts: Option<Arc<dyn HostFaults>>,
    seed: u64,
    tick: Duration,
    clock: Arc<dyn Clock>,
}

impl Experiment {
    /// A run of `template`.
    pub fn new(template: Template) -> Self {
        Experiment {
            template,
            faults: None,
            hosts: None,
            seed: 0,
            tick: Duration::from_millis(100),
            clock: Arc::new(SystemClock),
        }
    }

    /// The [`Faults`] layer the cloud is wrapped in: API error and latency actions inject
    /// their rules into it.
    pub fn faults(mut self, faults: Faults) -> Self {
        self.faults = Some(faults);
        self
    }

    /// Host faults (the local backend's): crashing VMs, failing zones, killing replicas.
    pub fn hosts(mut self, hosts: Arc<dyn HostFaults>) -> Self {
        self.hosts = Some(hosts);
        self
    }

    /// The seed selections are drawn from (default 0).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// How often the stop conditions and the steady state are looked at (default 100 ms).
    pub fn tick(mut self, tick: Duration) -> Self {
        self.tick = tick.max(Duration::from_millis(1));
        self
    }

    /// The clock the report's start time is read from.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Checks everything that can be checked without injecting anything (see the module doc).
    async fn preflight(&self, cloud: &Cloud) -> Result<()> {
        let t = &self.template;
        t.validate()?;
        let op = op();
        let resource = format!("experiment {}", quote(&t.name));
        for (name, action) in &t.actions {
            let needs_hosts = matches!(
                action.fault,
                Fault::CrashVms | Fault::FailZone(_) | Fault::StopReplicas
            );
            if needs_hosts && self.hosts.is_none() {
                return Err(op.unsupported(format!(
                    "{resource}: action {} ({}) needs host faults, which the {} backend does \
                     not give (the local backend's LocalCloud::host_faults does)",
                    quote(name),
                    action.fault,
                    cloud.backend()
                )));
            }
            let needs_faults =
                matches!(action.fault, Fault::ApiErrors { .. } | Fault::ApiLatency(_));
            if needs_faults && self.faults.is_none() {
                return Err(op.precondition(
                    resource.clone(),
                    format!(
                        "action {} ({}) injects API faults: give the experiment the Faults layer \
                         the cloud is wrapped in (Experiment::faults)",
                        quote(name),
                        action.fault
                    ),
                ));
            }
        }
        for (name, target) in &t.targets {
            let exists = match &target.kind {
                TargetKind::Replicas(s) => {
                    cloud.containers()?.describe_service(s).await.map(|_| ())
                }
                TargetKind::Database(d) => {
                    cloud.databases()?.describe_database(d).await.map(|_| ())
                }
                TargetKind::Vms => cloud.vms().map(|_| ()),
                TargetKind::Api(_) => Ok(()),
            };
            exists.map_err(|e| {
                op.err(
                    e.kind(),
                    resource.clone(),
                    format!("target {}: {}", quote(name), e.message()),
                )
            })?;
        }
        for alarm in &t.stop_conditions {
            let a = find_alarm(cloud, alarm).await.map_err(|e| {
                op.err(
                    e.kind(),
                    resource.clone(),
                    format!("stop condition: {}", e.message()),
                )
            })?;
            if a.state == AlarmState::Alarm {
                return Err(op.precondition(
                    resource.clone(),
                    format!(
                        "stop condition alarm {} is in ALARM already ({}); the experiment would stop at once",
                        quote(alarm),
                        a.reason
                    ),
                ));
            }
        }
        for condition in &t.steady_state {
            if let Some(failing) = condition.check(cloud).await {
                return Err(op.precondition(
                    resource.clone(),
                    format!("the steady state does not hold before the experiment: {failing}"),
                ));
            }
        }
        Ok(())
    }

    /// Runs the experiment on `cloud` (see the module doc). An error means it did not start:
    /// nothing was injected. Once started it always returns its report, whatever happened.
    pub async fn run(&self, cloud: &Cloud) -> Result<Report> {
        self.preflight(cloud).await?;
        let held = Arc::new(Mutex::new(Held::default()));
        let reverter = Reverter {
            cloud: cloud.clone(),
            faults: self.faults.clone(),
            hosts: self.hosts.clone(),
        };
        let _guard = DropGuard {
            held: held.clone(),
            reverter: reverter.clone(),
        };
        let mut run = Run {
            exp: self,
            cloud,
            reverter,
            held,
            rng: ChaCha8Rng::seed_from_u64(self.seed),
            t0: Instant::now(),
            started: self.clock.now(),
            timeline: Vec::new(),
            reports: BTreeMap::new(),
            order: Vec::new(),
            ends: BTreeMap::new(),
            completed: BTreeSet::new(),
            alarms: Vec::new(),
            blind: 0,
            first_fault: None,
            departed: None,
            restored: None,
            revert_errors: Vec::new(),
        };
        Ok(run.go().await)
    }
}

/// The state of one run.
struct Run<'a> {
    exp: &'a Experiment,
    cloud: &'a Cloud,
    reverter: Reverter,
    held: Arc<Mutex<Held>>,
    rng: ChaCha8Rng,
    t0: Instant,
    started: Timestamp,
    timeline: Vec<(Duration, String)>,
    reports: BTreeMap<String, ActionReport>,
    /// Actions in the order they started.
    order: Vec<String>,
    /// When each action holding a fault reverts it.
    ends: BTreeMap<String, Instant>,
    completed: BTreeSet<String>,
    alarms: Vec<AlarmFired>,
    /// Stop-condition reads failed in a row.
    blind: u32,
    first_fault: Option<Instant>,
    departed: Option<Duration>,
    restored: Option<Duration>,
    revert_errors: Vec<String>,
}

impl Run<'_> {
    fn since(&self) -> Duration {
        self.t0.elapsed()
    }

    fn note(&mut self, what: String) {
        tracing::info!(experiment = %self.exp.template.name, "{what}");
        self.timeline.push((self.since(), what));
    }

    async fn go(&mut self) -> Report {
        let t = &self.exp.template;
        self.note(format!("experiment {} started", t.name));
        for (name, action) in &t.actions {
            self.reports.insert(
                name.clone(),
                ActionReport {
                    name: name.clone(),
                    fault: action.fault.to_string(),
                    resources: Vec::new(),
                    started: None,
                    ended: None,
                    state: ActionState::Cancelled,
                },
            );
        }
        let outcome = self.drive().await;
        // Whatever is still held goes back now.
        let held: Vec<String> = self.ends.keys().cloned().collect();
        for name in held {
            self.end_action(&name, ActionState::Stopped).await;
        }
        match &outcome {
            Outcome::Completed => self.note("every action completed".into()),
            Outcome::Stopped { reason, .. } => self.note(format!("stopped: {reason}")),
            Outcome::Failed { action, error } => {
                self.note(format!("action {action} failed: {error}"))
            }
        }
        let recovery = self.await_recovery().await;
        let mut actions: Vec<ActionReport> = self
            .order
            .iter()
            .filter_map(|n| self.reports.get(n).cloned())
            .collect();
        actions.extend(
            self.reports
                .values()
                .filter(|r| r.started.is_none())
                .cloned(),
        );
        Report {
            name: t.name.clone(),
            started: self.started,
            duration: self.since(),
            outcome,
            actions,
            alarms: std::mem::take(&mut self.alarms),
            recovery,
            timeline: std::mem::take(&mut self.timeline),
            revert_errors: std::mem::take(&mut self.revert_errors),
        }
    }

    /// Starts and ends actions until all are done or the experiment must stop.
    async fn drive(&mut self) -> Outcome {
        let t = &self.exp.template;
        loop {
            if let Some(stop) = self.look().await {
                return stop;
            }
            let now = Instant::now();
            let due: Vec<String> = self
                .ends
                .iter()
                .filter(|(_, end)| **end <= now)
                .map(|(n, _)| n.clone())
                .collect();
            for name in due {
                self.end_action(&name, ActionState::Completed).await;
            }
            // Start every action whose predecessors are done (one-shot actions complete at
            // once, which may free others in the same pass).
            loop {
                let ready: Vec<String> = t
                    .actions
                    .iter()
                    .filter(|(n, a)| {
                        self.reports[n.as_str()].started.is_none()
                            && a.start_after.iter().all(|d| self.completed.contains(d))
                    })
                    .map(|(n, _)| n.clone())
                    .collect();
                if ready.is_empty() {
                    break;
                }
                for name in ready {
                    if let Err(error) = self.start_action(&name).await {
                        if let Some(r) = self.reports.get_mut(&name) {
                            r.state = ActionState::Failed(error.clone());
                            r.ended = Some(self.t0.elapsed());
                        }
                        return Outcome::Failed {
                            action: name,
                            error,
                        };
                    }
                }
            }
            if self.completed.len() == t.actions.len() {
                return Outcome::Completed;
            }
            let next_end = self.ends.values().min().copied();
            let wake = match next_end {
                Some(end) => end
                    .saturating_duration_since(Instant::now())
                    .min(self.exp.tick),
                None => self.exp.tick,
            };
            tokio::time::sleep(wake).await;
        }
    }

    /// Looks at the alarms and the steady state; `Some` when the experiment must stop.
    async fn look(&mut self) -> Option<Outcome> {
        self.look_steady().await;
        let t = &self.exp.template;
        let metrics = match self.cloud.metrics() {
            Ok(m) => m.clone(),
            Err(_) if t.stop_conditions.is_empty() => return None,
            Err(e) => return Some(self.blind_stop(e.to_string())),
        };
        let alarms = match metrics.describe_alarms(None).await {
            Ok(a) => a,
            Err(e) if !t.stop_conditions.is_empty() => {
                self.blind += 1;
                if self.blind >= BLIND_LOOKS {
                    return Some(self.blind_stop(e.to_string()));
                }
                return None;
            }
            Err(_) => return None,
        };
        self.blind = 0;
        let mut stop = None;
        for a in alarms.iter().filter(|a| a.state == AlarmState::Alarm) {
            let name = &a.spec.name;
            let is_stop = t.stop_conditions.contains(name);
            if !self.alarms.iter().any(|f| &f.name == name) {
                self.alarms.push(AlarmFired {
                    name: name.clone(),
                    at: self.since(),
                    stop_condition: is_stop,
                    reason: a.reason.clone(),
                });
                self.note(format!("alarm {name} in ALARM: {}", a.reason));
            }
            if is_stop && stop.is_none() {
                stop = Some(Outcome::Stopped {
                    alarm: Some(name.clone()),
                    reason: format!("stop condition alarm {name} is in ALARM"),
                });
            }
        }
        stop
    }

    fn blind_stop(&mut self, error: String) -> Outcome {
        Outcome::Stopped {
            alarm: None,
            reason: format!("the stop conditions cannot be read ({error})"),
        }
    }

    /// `None` when the whole steady state holds, else the first condition failing.
    async fn steady_failing(&self) -> Option<String> {
        for condition in &self.exp.template.steady_state {
            if let Some(failing) = condition.check(self.cloud).await {
                return Some(failing);
            }
        }
        None
    }

    /// Records the steady state's departure and return.
    async fn look_steady(&mut self) -> Option<String> {
        if self.exp.template.steady_state.is_empty() || self.first_fault.is_none() {
            return None;
        }
        let failing = self.steady_failing().await;
        let at = self.since();
        match (&failing, self.departed, self.restored) {
            (Some(why), None, _) => {
                self.departed = Some(at);
                self.note(format!("steady state lost: {why}"));
            }
            (None, Some(_), None) => {
                self.restored = Some(at);
                self.note("steady state back".into());
            }
            (Some(why), Some(_), Some(_)) => {
                // Lost again after it came back: recovery is measured to the last return.
                self.restored = None;
                self.note(format!("steady state lost again: {why}"));
            }
            _ => {}
        }
        failing
    }

    async fn await_recovery(&mut self) -> Recovery {
        if self.exp.template.steady_state.is_empty() {
            return Recovery::NotWatched;
        }
        let deadline = Instant::now() + self.exp.template.recovery_timeout;
        let mut failing = self.look_steady().await;
        while failing.is_some() && Instant::now() < deadline {
            tokio::time::sleep(self.exp.tick).await;
            failing = self.look_steady().await;
        }
        match (self.departed, self.restored, failing) {
            (None, _, None) => Recovery::Held,
            (Some(departed), Some(restored), None) => Recovery::Recovered {
                departed,
                restored,
                took: restored.saturating_sub(
                    self.first_fault
                        .map(|f| f.duration_since(self.t0))
                        .unwrap_or_default(),
                ),
            },
            (departed, _, failing) => Recovery::NotRecovered {
                departed: departed.unwrap_or_default(),
                failing: failing.unwrap_or_else(|| "the steady state".into()),
            },
        }
    }

    /// Resolves an action's target and injects its fault; an error says why it could not.
    async fn start_action(&mut self, name: &str) -> std::result::Result<(), String> {
        let action = self.exp.template.actions[name].clone();
        let at = self.since();
        if let Some(r) = self.reports.get_mut(name) {
            r.started = Some(at);
        }
        self.order.push(name.to_string());
        let target = action
            .target
            .as_ref()
            .map(|t| (t.clone(), self.exp.template.targets[t].clone()));
        let resources = match &target {
            Some((t, target)) => self.resolve(t, target).await?,
            None => Vec::new(),
        };
        if let Some(r) = self.reports.get_mut(name) {
            r.resources = resources.clone();
        }
        if action.fault != Fault::Wait && self.first_fault.is_none() {
            self.first_fault = Some(Instant::now());
        }
        let undo = self
            .inject(&action, target.as_ref().map(|(_, t)| t), &resources)
            .await?;
        let on = if resources.is_empty() {
            String::new()
        } else {
            format!(" on {}", resources.join(", "))
        };
        match action.duration {
            Some(d) => {
                if let Some(undo) = undo {
                    lock(&self.held).undos.insert(name.to_string(), undo);
                }
                self.ends.insert(name.to_string(), Instant::now() + d);
                self.note(format!(
                    "action {name} started: {}{on}, for {:.1} s",
                    action.fault,
                    d.as_secs_f64()
                ));
            }
            None => {
                self.note(format!("action {name}: {}{on}", action.fault));
                self.complete(name, ActionState::Completed);
            }
        }
        Ok(())
    }

    fn complete(&mut self, name: &str, state: ActionState) {
        let at = self.since();
        if let Some(r) = self.reports.get_mut(name) {
            r.ended = Some(at);
            r.state = state;
        }
        self.completed.insert(name.to_string());
    }

    /// Reverts what action `name` holds and marks it `state`.
    async fn end_action(&mut self, name: &str, state: ActionState) {
        self.ends.remove(name);
        let undo = lock(&self.held).undos.remove(name);
        if let Some(undo) = undo {
            let errors = self.reverter.undo(undo).await;
            for e in &errors {
                self.note(format!("action {name}: cannot revert: {e}"));
            }
            self.revert_errors
                .extend(errors.into_iter().map(|e| format!("action {name}: {e}")));
        }
        let how = if state == ActionState::Stopped {
            "reverted early"
        } else {
            "ended"
        };
        self.note(format!("action {name} {how}"));
        self.complete(name, state);
    }

    /// The resources `target` selects now.
    async fn resolve(
        &mut self,
        name: &str,
        target: &Target,
    ) -> std::result::Result<Vec<String>, String> {
        let mut matched: Vec<String> = match &target.kind {
            TargetKind::Vms => self
                .cloud
                .vms()
                .map_err(|e| e.to_string())?
                .list_instances()
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .filter(|vm| vm.state == VmState::Running)
                .filter(|vm| target.zone.as_ref().is_none_or(|z| &vm.zone == z))
                .filter(|vm| {
                    target
                        .tags
                        .iter()
                        .all(|(k, v)| vm.spec.tags.get(k) == Some(v))
                })
                .map(|vm| vm.id)
                .collect(),
            TargetKind::Replicas(service) => self
                .cloud
                .containers()
                .map_err(|e| e.to_string())?
                .describe_service(service)
                .await
                .map_err(|e| e.to_string())?
                .instances
                .into_iter()
                .filter(|i| matches!(i.state, InstanceState::Running | InstanceState::Healthy))
                .map(|i| i.id)
                .collect(),
            TargetKind::Database(db) => vec![db.clone()],
            TargetKind::Api(services) => services.iter().map(|s| s.as_str().to_string()).collect(),
        };
        if matched.is_empty() {
            return Err(format!("target {} matched nothing running", quote(name)));
        }
        matched.sort();
        let n = matched.len();
        let keep = match target.selection {
            Selection::All => n,
            Selection::Count(c) => (c as usize).min(n),
            Selection::Percent(p) => (n * p as usize).div_ceil(100),
        };
        if keep < n {
            matched.shuffle(&mut self.rng);
            matched.truncate(keep);
            matched.sort();
        }
        Ok(matched)
    }

    /// Injects `action`'s fault into `resources`; what undoes it, if anything does.
    async fn inject(
        &self,
        action: &Action,
        target: Option<&Target>,
        resources: &[String],
    ) -> std::result::Result<Option<Undo>, String> {
        let hosts = || self.exp.hosts.clone().ok_or("no host faults".to_string());
        let restart = action.duration.is_some();
        match &action.fault {
            Fault::CrashVms => {
                let hosts = hosts()?;
                let mut crashed = Vec::new();
                for id in resources {
                    if let Err(e) = hosts.crash_vm(id).await {
                        // Those crashed already come back with the revert.
                        self.held_partial(&crashed, restart).await;
                        return Err(format!("crash VM {id}: {e}"));
                    }
                    crashed.push(id.clone());
                }
                Ok(restart.then_some(Undo::StartVms(crashed)))
            }
            Fault::StopVms => {
                let vms = self.cloud.vms().map_err(|e| e.to_string())?;
                let mut stopped = Vec::new();
                for id in resources {
                    if let Err(e) = vms.stop_instance(id).await {
                        self.held_partial(&stopped, restart).await;
                        return Err(format!("stop VM {id}: {e}"));
                    }
                    stopped.push(id.clone());
                }
                Ok(restart.then_some(Undo::StartVms(stopped)))
            }
            Fault::FailZone(zone) => {
                let vms = hosts()?
                    .fail_zone(zone)
                    .await
                    .map_err(|e| format!("fail zone {zone}: {e}"))?;
                Ok(Some(Undo::RestoreZone {
                    zone: zone.clone(),
                    vms,
                }))
            }
            Fault::StopReplicas => {
                let Some(Target {
                    kind: TargetKind::Replicas(service),
                    ..
                }) = target
                else {
                    return Err("no replica target".into());
                };
                let hosts = hosts()?;
                for id in resources {
                    hosts
                        .kill_replica(service, id)
                        .await
                        .map_err(|e| format!("stop replica {id}: {e}"))?;
                }
                Ok(None)
            }
            Fault::FailoverDatabase | Fault::RebootDatabase => {
                let failover = action.fault == Fault::FailoverDatabase;
                let dbs = self.cloud.databases().map_err(|e| e.to_string())?;
                for db in resources {
                    dbs.reboot_database(db, failover)
                        .await
                        .map_err(|e| format!("reboot database {db}: {e}"))?;
                }
                Ok(None)
            }
            Fault::ApiErrors { .. } | Fault::ApiLatency(_) => {
                let Some(Target {
                    kind: TargetKind::Api(services),
                    operations,
                    ..
                }) = target
                else {
                    return Err("no API target".into());
                };
                let faults = self.exp.faults.as_ref().ok_or("no Faults layer")?;
                let rule = match &action.fault {
                    Fault::ApiErrors { percent, kind } => {
                        FaultRule::errors(percent / 100.0).kind(*kind)
                    }
                    Fault::ApiLatency(latency) => FaultRule::delay(*latency),
                    _ => unreachable!("matched above"),
                }
                .operations(operations.clone());
                let mut injections = Vec::new();
                for service in services {
                    match faults.inject(*service, rule.clone()) {
                        Ok(i) => injections.push(i),
                        Err(e) => {
                            for i in injections {
                                faults.withdraw(i);
                            }
                            return Err(e.to_string());
                        }
                    }
                }
                Ok(Some(Undo::Withdraw(injections)))
            }
            Fault::Wait => Ok(None),
        }
    }

    /// After a VM action failed part way: starts again the VMs it had stopped, when it was
    /// to hold them only for a while.
    async fn held_partial(&self, vms: &[String], restart: bool) {
        if restart && !vms.is_empty() {
            for e in self.reverter.undo(Undo::StartVms(vms.to_vec())).await {
                tracing::error!("experiment: cannot revert: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Template {
        Template::new("t")
            .target("web", Target::vms().tag("role", "web"))
            .action(
                "crash",
                Action::crash_vms("web").duration(Duration::from_secs(5)),
            )
    }

    fn refused(t: Template, needle: &str) {
        let e = t.validate().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        assert!(e.to_string().contains(needle), "{e} lacks {needle:?}");
    }

    #[test]
    fn a_good_template_passes() {
        base().validate().unwrap();
    }

    #[test]
    fn bad_templates_are_refused_naming_what_is_wrong() {
        refused(Template::new("t"), "no action");
        refused(
            Template::new("bad name").action("w", Action::wait(Duration::from_secs(1))),
            "bad name",
        );
        refused(
            base().action("x", Action::crash_vms("nope")),
            "target \"nope\", which is not defined",
        );
        refused(
            base()
                .target("db", Target::database("orders"))
                .action("x", Action::crash_vms("db")),
            "needs a VM target",
        );
        refused(base().target("idle", Target::vms()), "used by no action");
        refused(
            base().action("z", Action::fail_zone("local-1a")),
            "needs a duration",
        );
        refused(
            base().action(
                "w",
                Action::wait(Duration::from_secs(1)).start_after(["ghost"]),
            ),
            "starts after \"ghost\"",
        );
        refused(
            base()
                .action("a", Action::wait(Duration::from_secs(1)).start_after(["b"]))
                .action("b", Action::wait(Duration::from_secs(1)).start_after(["a"])),
            "waits for itself",
        );
        refused(
            base().target("kv", Target::api([Service::Kv])).action(
                "e",
                Action::api_errors("kv", 150.0).duration(Duration::from_secs(1)),
            ),
            "at most 100",
        );
        refused(
            base().target("kv", Target::api([Service::Kv])).action(
                "e",
                Action::api_latency("kv", Duration::from_secs(61)).duration(Duration::from_secs(1)),
            ),
            "latency",
        );
        refused(
            base().target("app", Target::replicas("app")).action(
                "k",
                Action::stop_replicas("app").duration(Duration::from_secs(1)),
            ),
            "takes no duration",
        );
        refused(
            base()
                .target("db", Target::database("x").zone("a"))
                .action("r", Action::reboot_database("db")),
            "only VM targets",
        );
        refused(
            base()
                .target("some", Target::vms().percent(0))
                .action("s", Action::stop_vms("some")),
            "1–100",
        );
        refused(base().action("w", Action::wait(Duration::ZERO)), "above 0");
    }
}
