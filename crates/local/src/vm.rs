//! The local VM service: simulated hosts with a size, a zone and an address.
//!
//! A VM is a record, not a virtual machine: it has the vCPUs and memory of its instance type
//! (the container service places replicas on VMs with spare capacity), the zone of its subnet,
//! a private address allocated from the subnet's block (the first four and the last address
//! are reserved, as on AWS), and a state that moves as EC2's does. Boot is instant.
//!
//! Faults are injected here ([`LocalVms::crash_instance`], [`LocalVms::fail_zone`]): a crashed
//! VM, or every VM of a failed zone, goes to `Stopped`, and every subscriber
//! ([`LocalVms::subscribe`]) hears of it, which is how the containers placed on it die. The
//! database service follows the failed zones ([`LocalVms::watch_failed_zones`]): its servers
//! in a failed zone go down with it.
//!
//! State is one small JSON document rewritten atomically after every change.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use mvi_core::vm::{VmInfo, VmSpec, VmState, Vms};
use mvi_core::vpc::Cidr;
use mvi_core::{Op, Result, Service};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::storage::{Ctx, JsonState};
use crate::vpc::LocalNetworks;

/// Instance types the simulator knows: (name, vCPUs, memory MiB), as EC2's.
pub const SIZES: &[(&str, u32, u32)] = &[
    ("t3.nano", 2, 512),
    ("t3.micro", 2, 1024),
    ("t3.small", 2, 2048),
    ("t3.medium", 2, 4096),
    ("t3.large", 2, 8192),
    ("t3.xlarge", 4, 16384),
    ("m5.large", 2, 8192),
    ("m5.xlarge", 4, 16384),
    ("m5.2xlarge", 8, 32768),
    ("c5.large", 2, 4096),
    ("c5.xlarge", 4, 8192),
];

const STATE_FILE: &str = "state.json";

/// A change of a VM's state, as heard by subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmEvent {
    /// The VM.
    pub id: String,
    /// Its zone.
    pub zone: String,
    /// Its new state.
    pub state: VmState,
    /// Why (`stopped by user`, `crashed (fault injection)`, `zone local-1a failed`).
    pub reason: String,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct State {
    vms: BTreeMap<String, VmInfo>,
    failed_zones: BTreeSet<String>,
}

/// The local VM service.
#[derive(Debug)]
pub struct LocalVms {
    ctx: Ctx,
    networks: Arc<LocalNetworks>,
    state: JsonState<State>,
    events: broadcast::Sender<VmEvent>,
    /// The zones failed now (the database service follows it).
    failed_zones: tokio::sync::watch::Sender<BTreeSet<String>>,
}

fn op(name: &'static str) -> Op {
    Op::new(Service::Vm, name)
}

impl LocalVms {
    /// Opens the service's state; subnets and groups are checked against `networks`.
    pub async fn open(ctx: Ctx, networks: Arc<LocalNetworks>) -> Result<Self> {
        let state: JsonState<State> = JsonState::open(&ctx, op("open"), STATE_FILE)?;
        let failed = state.lock().failed_zones.clone();
        Ok(LocalVms {
            state,
            ctx,
            networks,
            events: broadcast::channel(1024).0,
            failed_zones: tokio::sync::watch::channel(failed).0,
        })
    }

    /// The zones failed now, and each change from now on.
    pub fn watch_failed_zones(&self) -> tokio::sync::watch::Receiver<BTreeSet<String>> {
        self.failed_zones.subscribe()
    }

    /// The VPC service VMs are checked against.
    pub(crate) fn networks(&self) -> &Arc<LocalNetworks> {
        &self.networks
    }

    /// Hears every state change of every VM from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<VmEvent> {
        self.events.subscribe()
    }

    /// Fault injection: the VM fails at once (to `Stopped`); its containers die with it.
    pub fn crash_instance(&self, id: &str) -> Result<VmInfo> {
        let op = op("crash_instance");
        self.transition(op, id, "crashed (fault injection)", |vm| match vm.state {
            VmState::Running | VmState::Pending => Ok(VmState::Stopped),
            other => Err(op.precondition(
                &vm.id,
                format!("only a running VM can crash; it is {other:?}"),
            )),
        })
    }

    /// Fault injection: every running VM of `zone` stops, and no VM starts there until
    /// [`LocalVms::restore_zone`].
    pub fn fail_zone(&self, zone: &str) -> Result<Vec<String>> {
        let op = op("fail_zone");
        let reason = format!("zone {zone} failed (fault injection)");
        let (events, crashed) = self.mutate(op, |s| {
            s.failed_zones.insert(zone.to_string());
            let mut events = Vec::new();
            for vm in s.vms.values_mut().filter(|v| v.zone == zone) {
                if matches!(vm.state, VmState::Running | VmState::Pending) {
                    vm.state = VmState::Stopped;
                    events.push(event(vm, &reason));
                }
            }
            let crashed = events.iter().map(|e: &VmEvent| e.id.clone()).collect();
            Ok((events, crashed))
        })?;
        self.publish(events);
        self.failed_zones.send_modify(|z| {
            z.insert(zone.to_string());
        });
        Ok(crashed)
    }

    /// Ends a zone failure: VMs can start there again (stopped ones stay stopped).
    pub fn restore_zone(&self, zone: &str) -> Result<()> {
        self.mutate(op("restore_zone"), |s| {
            s.failed_zones.remove(zone);
            Ok(())
        })?;
        self.failed_zones.send_modify(|z| {
            z.remove(zone);
        });
        Ok(())
    }

    /// Whether the cloud has VMs at all (in any state but terminated): with none, replicas
    /// run unplaced, as on Fargate; with some but none running (an outage), they wait.
    pub fn has_vms(&self) -> bool {
        self.lock()
            .vms
            .values()
            .any(|v| v.state != VmState::Terminated)
    }

    /// Running VMs, for placement.
    pub fn running(&self) -> Vec<VmInfo> {
        self.lock()
            .vms
            .values()
            .filter(|v| v.state == VmState::Running)
            .cloned()
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock()
    }

    fn mutate<T>(&self, op: Op, f: impl FnOnce(&mut State) -> Result<T>) -> Result<T> {
        self.state.mutate(op, f)
    }

    fn publish(&self, events: Vec<VmEvent>) {
        for e in events {
            // No subscriber is fine: nobody is placed on the VM.
            let _ = self.events.send(e);
        }
    }

    /// Moves one VM to the state `next` decides, persists, and tells subscribers.
    fn transition(
        &self,
        op: Op,
        id: &str,
        reason: &str,
        next: impl FnOnce(&VmInfo) -> Result<VmState>,
    ) -> Result<VmInfo> {
        let (info, changed) = self.mutate(op, |s| {
            let failed = s.failed_zones.clone();
            let vm = s
                .vms
                .get_mut(id)
                .ok_or_else(|| op.not_found(id, "no such VM"))?;
            let to = next(vm)?;
            if to == VmState::Running && failed.contains(&vm.zone) {
                return Err(op.err(
                    mvi_core::ErrorKind::Unavailable,
                    id,
                    format!("zone {} has failed; the VM cannot start there", vm.zone),
                ));
            }
            let changed = vm.state != to;
            vm.state = to;
            Ok((vm.clone(), changed))
        })?;
        if changed {
            self.publish(vec![event(&info, reason)]);
        }
        Ok(info)
    }
}

fn event(vm: &VmInfo, reason: &str) -> VmEvent {
    VmEvent {
        id: vm.id.clone(),
        zone: vm.zone.clone(),
        state: vm.state,
        reason: reason.to_string(),
    }
}

/// The lowest free host address of `block`, skipping the first four and the last (reserved
/// by AWS in every subnet).
fn allocate_ip(op: Op, block: &Cidr, taken: &BTreeSet<String>) -> Result<String> {
    let (first, last) = block.range();
    (first.saturating_add(4)..last)
        .map(|n| std::net::Ipv4Addr::from(n).to_string())
        .find(|ip| !taken.contains(ip))
        .ok_or_else(|| {
            op.err(
                mvi_core::ErrorKind::Unavailable,
                block.to_string(),
                "the subnet has no free address left",
            )
        })
}

#[async_trait]
impl Vms for LocalVms {
    async fn run_instance(&self, spec: VmSpec) -> Result<VmInfo> {
        let op = op("run_instance");
        mvi_core::vm::validate_name(op, &spec.name)?;
        let &(_, vcpus, memory_mib) =
            SIZES
                .iter()
                .find(|(n, ..)| *n == spec.size)
                .ok_or_else(|| {
                    let names: Vec<&str> = SIZES.iter().map(|(n, ..)| *n).collect();
                    op.invalid(
                        &spec.size,
                        format!("unknown instance type; use one of {names:?}"),
                    )
                })?;
        let subnet = self
            .networks
            .subnet(&spec.subnet)
            .ok_or_else(|| op.not_found(&spec.subnet, "no such subnet"))?;
        for g in &spec.security_groups {
            let group = self
                .networks
                .security_group(g)
                .ok_or_else(|| op.not_found(g.as_str(), "no such security group"))?;
            if group.vpc != subnet.vpc {
                return Err(op.invalid(
                    g.as_str(),
                    format!(
                        "the security group is not in the subnet's VPC {}",
                        subnet.vpc
                    ),
                ));
            }
        }
        if spec.user_data.as_ref().is_some_and(|u| u.len() > 16 * 1024) {
            return Err(op.invalid(&spec.name, "user data is limited to 16 KiB (as EC2)"));
        }
        let block = Cidr::parse(op, &subnet.cidr)?;
        let id = self.ctx.sim.id("i");
        let launched = self.ctx.sim.now();
        let info = self.mutate(op, |s| {
            if s.failed_zones.contains(&subnet.zone) {
                return Err(op.err(
                    mvi_core::ErrorKind::Unavailable,
                    &subnet.zone,
                    "the zone has failed; launch in another subnet",
                ));
            }
            let taken: BTreeSet<String> = s
                .vms
                .values()
                .filter(|v| v.spec.subnet == subnet.id && v.state != VmState::Terminated)
                .map(|v| v.private_ip.clone())
                .collect();
            let info = VmInfo {
                id: id.clone(),
                zone: subnet.zone.clone(),
                private_ip: allocate_ip(op, &block, &taken)?,
                spec: spec.clone(),
                state: VmState::Running,
                vcpus,
                memory_mib,
                launched,
            };
            s.vms.insert(id.clone(), info.clone());
            Ok(info)
        })?;
        self.publish(vec![event(&info, "launched")]);
        Ok(info)
    }

    async fn describe_instance(&self, id: &str) -> Result<VmInfo> {
        self.lock()
            .vms
            .get(id)
            .cloned()
            .ok_or_else(|| op("describe_instance").not_found(id, "no such VM"))
    }

    async fn list_instances(&self) -> Result<Vec<VmInfo>> {
        Ok(self
            .lock()
            .vms
            .values()
            .filter(|v| v.state != VmState::Terminated)
            .cloned()
            .collect())
    }

    async fn start_instance(&self, id: &str) -> Result<VmInfo> {
        let op = op("start_instance");
        self.transition(op, id, "started by user", |vm| match vm.state {
            VmState::Terminated => Err(op.precondition(id, "a terminated VM cannot start")),
            _ => Ok(VmState::Running),
        })
    }

    async fn stop_instance(&self, id: &str) -> Result<VmInfo> {
        let op = op("stop_instance");
        self.transition(op, id, "stopped by user", |vm| match vm.state {
            VmState::Terminated => Err(op.precondition(id, "a terminated VM cannot stop")),
            _ => Ok(VmState::Stopped),
        })
    }

    async fn terminate_instance(&self, id: &str) -> Result<()> {
        self.transition(op("terminate_instance"), id, "terminated by user", |_| {
            Ok(VmState::Terminated)
        })
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mvi_core::vpc::Networks;
    use mvi_core::{ErrorKind, SystemClock};

    async fn setup() -> (LocalVms, Vec<String>) {
        let sim = Arc::new(crate::Sim::new(1, Arc::new(SystemClock), "test".into()));
        let net = Arc::new(
            LocalNetworks::open(Ctx::new(None, Service::Vpc, sim.clone()).unwrap())
                .await
                .unwrap(),
        );
        let vpc = net
            .create_vpc("10.0.0.0/16", Default::default())
            .await
            .unwrap();
        let mut subnets = Vec::new();
        for (i, zone) in ["local-1a", "local-1b"].iter().enumerate() {
            let s = net
                .create_subnet(&vpc.id, &format!("10.0.{i}.0/24"), zone, false)
                .await
                .unwrap();
            subnets.push(s.id);
        }
        let vms = LocalVms::open(Ctx::new(None, Service::Vm, sim).unwrap(), net)
            .await
            .unwrap();
        (vms, subnets)
    }

    #[tokio::test]
    async fn crash_and_zone_failure_stop_vms_and_tell_subscribers() {
        let (vms, subnets) = setup().await;
        let a = vms
            .run_instance(VmSpec::new("a", "t3.small", "img", &subnets[0]))
            .await
            .unwrap();
        let b = vms
            .run_instance(VmSpec::new("b", "t3.small", "img", &subnets[1]))
            .await
            .unwrap();
        let c = vms
            .run_instance(VmSpec::new("c", "t3.small", "img", &subnets[1]))
            .await
            .unwrap();
        let mut events = vms.subscribe();

        vms.crash_instance(&a.id).unwrap();
        let e = events.recv().await.unwrap();
        assert_eq!((e.id.as_str(), e.state), (a.id.as_str(), VmState::Stopped));
        assert!(e.reason.contains("crashed"), "{}", e.reason);
        assert_eq!(
            vms.crash_instance(&a.id).unwrap_err().kind(),
            ErrorKind::PreconditionFailed
        );

        let mut crashed = vms.fail_zone("local-1b").unwrap();
        crashed.sort();
        let mut want = vec![b.id.clone(), c.id.clone()];
        want.sort();
        assert_eq!(crashed, want);
        for _ in 0..2 {
            let e = events.recv().await.unwrap();
            assert_eq!(e.zone, "local-1b");
            assert_eq!(e.state, VmState::Stopped);
        }
        assert!(vms.running().is_empty());
        let err = vms.start_instance(&b.id).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
        let err = vms
            .run_instance(VmSpec::new("d", "t3.small", "img", &subnets[1]))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");

        vms.restore_zone("local-1b").unwrap();
        vms.start_instance(&b.id).await.unwrap();
        assert_eq!(vms.running().len(), 1);
    }
}
