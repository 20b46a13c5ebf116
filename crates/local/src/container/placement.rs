//! Where a replica or task runs: a running VM with spare CPU and memory, in the zone holding
//! the fewest replicas of the same service, within the service's subnets if it names any.

use std::collections::BTreeMap;

use mvi_core::vm::VmInfo;
use mvi_core::{ErrorKind, Op, Result};

/// CPU and memory held on a VM by one replica or task.
#[derive(Debug, Clone)]
pub(crate) struct Hold {
    pub vm: String,
    pub cpu_millis: u32,
    pub memory_mib: u32,
    /// The service it belongs to (`None` for tasks).
    pub service: Option<String>,
}

/// What to place.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Need<'a> {
    pub cpu_millis: u32,
    pub memory_mib: u32,
    pub service: Option<&'a str>,
    pub subnets: &'a [String],
}

/// Picks a VM for `need` among `vms` (the running ones) given what `holds` already use.
/// `Ok(None)` means "run unplaced": the cloud has no VM at all (`fleet` false) and no
/// subnet was asked for. VMs that exist but do not run (an outage) give no room: the
/// replica waits until one runs again.
pub(crate) fn place(
    op: Op,
    resource: &str,
    vms: &[VmInfo],
    fleet: bool,
    holds: &[Hold],
    need: Need<'_>,
) -> Result<Option<String>> {
    if !fleet && vms.is_empty() && need.subnets.is_empty() {
        return Ok(None);
    }
    let mut used: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    let mut mine_per_vm: BTreeMap<&str, usize> = BTreeMap::new();
    for h in holds {
        let u = used.entry(h.vm.as_str()).or_default();
        u.0 += u64::from(h.cpu_millis);
        u.1 += u64::from(h.memory_mib);
        if need.service.is_some() && h.service.as_deref() == need.service {
            *mine_per_vm.entry(h.vm.as_str()).or_default() += 1;
        }
    }
    let mut mine_per_zone: BTreeMap<&str, usize> = BTreeMap::new();
    for vm in vms {
        *mine_per_zone.entry(vm.zone.as_str()).or_default() +=
            mine_per_vm.get(vm.id.as_str()).copied().unwrap_or(0);
    }
    let free = |vm: &VmInfo| {
        let (cpu, mem) = used.get(vm.id.as_str()).copied().unwrap_or((0, 0));
        (
            (u64::from(vm.vcpus) * 1000).saturating_sub(cpu),
            u64::from(vm.memory_mib).saturating_sub(mem),
        )
    };
    let eligible: Vec<&VmInfo> = vms
        .iter()
        .filter(|vm| need.subnets.is_empty() || need.subnets.contains(&vm.spec.subnet))
        .collect();
    let best = eligible
        .iter()
        .filter(|vm| {
            let (cpu, mem) = free(vm);
            cpu >= u64::from(need.cpu_millis) && mem >= u64::from(need.memory_mib)
        })
        .min_by_key(|vm| {
            let (cpu, _) = free(vm);
            (
                mine_per_zone.get(vm.zone.as_str()).copied().unwrap_or(0),
                mine_per_vm.get(vm.id.as_str()).copied().unwrap_or(0),
                std::cmp::Reverse(cpu),
                vm.id.clone(),
            )
        });
    if let Some(vm) = best {
        return Ok(Some(vm.id.clone()));
    }
    let where_ = if need.subnets.is_empty() {
        "any running VM".to_string()
    } else {
        format!("a running VM in subnets {:?}", need.subnets)
    };
    let free_list: Vec<String> = eligible
        .iter()
        .map(|vm| {
            let (cpu, mem) = free(vm);
            format!("{} ({}): {cpu} CPU millis, {mem} MiB free", vm.id, vm.zone)
        })
        .collect();
    let free_text = if free_list.is_empty() {
        "there is none".to_string()
    } else {
        free_list.join("; ")
    };
    Err(op.err(
        ErrorKind::Unavailable,
        resource,
        format!(
            "no capacity: needs {} CPU millis and {} MiB on {where_}; {free_text}",
            need.cpu_millis, need.memory_mib
        ),
    ))
}
