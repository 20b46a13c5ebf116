//! The local VPC service: networks, subnets and security groups as a simulated control plane.
//!
//! Nothing here touches the host's network: a VPC is a CIDR block, subnets are blocks inside it
//! (no overlap, at most /16, at least /28, as AWS), and security groups are sets of TCP allow
//! rules that the simulator's other services consult ([`LocalNetworks::allows`]; the load
//! balancer only forwards to targets whose group admits it).
//!
//! State is one small JSON document, rewritten atomically (temp file, fsync, rename) after
//! every change under the service's lock, so a crash leaves either the old or the new state.

use std::collections::BTreeMap;

use async_trait::async_trait;
use mvi_core::vpc::{
    Cidr, Direction, Networks, Peer, Rule, SecurityGroupInfo, SubnetInfo, VpcInfo,
};
use mvi_core::{Op, Result, Service, Tags};
use serde::{Deserialize, Serialize};

use crate::storage::{Ctx, JsonState};

/// The zones of the simulated region.
pub const DEFAULT_ZONES: &[&str] = &["local-1a", "local-1b", "local-1c"];

const STATE_FILE: &str = "state.json";

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct State {
    vpcs: BTreeMap<String, VpcInfo>,
    subnets: BTreeMap<String, SubnetInfo>,
    groups: BTreeMap<String, SecurityGroupInfo>,
}

/// The local VPC service.
#[derive(Debug)]
pub struct LocalNetworks {
    ctx: Ctx,
    zones: Vec<String>,
    state: JsonState<State>,
}

fn op(name: &'static str) -> Op {
    Op::new(Service::Vpc, name)
}

impl LocalNetworks {
    /// Opens the service's state (or starts empty).
    pub async fn open(ctx: Ctx) -> Result<Self> {
        Ok(LocalNetworks {
            state: JsonState::open(&ctx, op("open"), STATE_FILE)?,
            ctx,
            zones: DEFAULT_ZONES.iter().map(|z| z.to_string()).collect(),
        })
    }

    /// Whether traffic from a member of `from_groups` (or from address `from_addr`) may reach
    /// TCP `port` on a member of `to_group`: some ingress rule of `to_group` admits it.
    pub fn allows(
        &self,
        from_groups: &[String],
        from_addr: Option<std::net::Ipv4Addr>,
        to_group: &str,
        port: u16,
    ) -> bool {
        let state = self.lock();
        let Some(group) = state.groups.get(to_group) else {
            return false;
        };
        group.rules.iter().any(|r| {
            r.direction == Direction::Ingress
                && (r.from_port..=r.to_port).contains(&port)
                && match &r.peer {
                    Peer::Group(g) => from_groups.iter().any(|f| f == g),
                    Peer::Cidr(c) => match (Cidr::parse(op("allows"), c), from_addr) {
                        (Ok(c), Some(a)) => c.contains_addr(a),
                        _ => false,
                    },
                }
        })
    }

    /// The subnet `id`, if it exists.
    pub fn subnet(&self, id: &str) -> Option<SubnetInfo> {
        self.lock().subnets.get(id).cloned()
    }

    /// The security group `id`, if it exists.
    pub fn security_group(&self, id: &str) -> Option<SecurityGroupInfo> {
        self.lock().groups.get(id).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock()
    }

    fn mutate<T>(&self, op: Op, f: impl FnOnce(&mut State) -> Result<T>) -> Result<T> {
        self.state.mutate(op, f)
    }
}

fn check_rule(op: Op, state: &State, group: &SecurityGroupInfo, rule: &Rule) -> Result<()> {
    if rule.from_port > rule.to_port {
        return Err(op.invalid(
            &group.id,
            format!(
                "from_port {} is greater than to_port {}",
                rule.from_port, rule.to_port
            ),
        ));
    }
    match &rule.peer {
        Peer::Cidr(c) => Cidr::parse(op, c).map(|_| ()),
        Peer::Group(g) => match state.groups.get(g) {
            Some(peer) if peer.vpc == group.vpc => Ok(()),
            Some(_) => Err(op.invalid(g.as_str(), "the peer security group is in another VPC")),
            None => Err(op.not_found(g.as_str(), "no such security group")),
        },
    }
}

#[async_trait]
impl Networks for LocalNetworks {
    async fn list_zones(&self) -> Result<Vec<String>> {
        Ok(self.zones.clone())
    }

    async fn create_vpc(&self, cidr: &str, tags: Tags) -> Result<VpcInfo> {
        let op = op("create_vpc");
        let block = Cidr::parse(op, cidr)?;
        if !(16..=28).contains(&block.prefix) {
            return Err(op.invalid(cidr, "a VPC's block must be between /16 and /28"));
        }
        let vpc = VpcInfo {
            id: self.ctx.sim.id("vpc"),
            cidr: block.to_string(),
            tags,
        };
        self.mutate(op, |s| {
            s.vpcs.insert(vpc.id.clone(), vpc.clone());
            Ok(vpc.clone())
        })
    }

    async fn delete_vpc(&self, id: &str) -> Result<()> {
        let op = op("delete_vpc");
        self.mutate(op, |s| {
            if !s.vpcs.contains_key(id) {
                return Err(op.not_found(id, "no such VPC"));
            }
            let subnets = s.subnets.values().filter(|n| n.vpc == id).count();
            let groups = s.groups.values().filter(|g| g.vpc == id).count();
            if subnets + groups > 0 {
                return Err(op.precondition(
                    id,
                    format!("the VPC still has {subnets} subnet(s) and {groups} security group(s); delete them first"),
                ));
            }
            s.vpcs.remove(id);
            Ok(())
        })
    }

    async fn list_vpcs(&self) -> Result<Vec<VpcInfo>> {
        Ok(self.lock().vpcs.values().cloned().collect())
    }

    async fn create_subnet(
        &self,
        vpc: &str,
        cidr: &str,
        zone: &str,
        public: bool,
    ) -> Result<SubnetInfo> {
        let op = op("create_subnet");
        let block = Cidr::parse(op, cidr)?;
        if !self.zones.iter().any(|z| z == zone) {
            return Err(op.invalid(
                zone,
                format!("unknown availability zone; use one of {:?}", self.zones),
            ));
        }
        let id = self.ctx.sim.id("subnet");
        self.mutate(op, |s| {
            let parent = s
                .vpcs
                .get(vpc)
                .ok_or_else(|| op.not_found(vpc, "no such VPC"))?;
            let parent_block = Cidr::parse(op, &parent.cidr)?;
            if !parent_block.contains(&block) {
                return Err(op.invalid(
                    cidr,
                    format!("the subnet is not inside the VPC's block {}", parent.cidr),
                ));
            }
            if !(16..=28).contains(&block.prefix) {
                return Err(op.invalid(cidr, "a subnet's block must be between /16 and /28"));
            }
            if let Some(other) = s
                .subnets
                .values()
                .filter(|n| n.vpc == vpc)
                .find(|n| Cidr::parse(op, &n.cidr).is_ok_and(|c| c.overlaps(&block)))
            {
                return Err(op.invalid(
                    cidr,
                    format!("the block overlaps subnet {} ({})", other.id, other.cidr),
                ));
            }
            let subnet = SubnetInfo {
                id: id.clone(),
                vpc: vpc.to_string(),
                cidr: block.to_string(),
                zone: zone.to_string(),
                public,
            };
            s.subnets.insert(id.clone(), subnet.clone());
            Ok(subnet)
        })
    }

    async fn delete_subnet(&self, id: &str) -> Result<()> {
        let op = op("delete_subnet");
        self.mutate(op, |s| {
            s.subnets
                .remove(id)
                .map(|_| ())
                .ok_or_else(|| op.not_found(id, "no such subnet"))
        })
    }

    async fn list_subnets(&self, vpc: &str) -> Result<Vec<SubnetInfo>> {
        let state = self.lock();
        if !state.vpcs.contains_key(vpc) {
            return Err(op("list_subnets").not_found(vpc, "no such VPC"));
        }
        Ok(state
            .subnets
            .values()
            .filter(|n| n.vpc == vpc)
            .cloned()
            .collect())
    }

    async fn create_security_group(&self, vpc: &str, name: &str) -> Result<SecurityGroupInfo> {
        let op = op("create_security_group");
        if name.is_empty() || name.len() > 255 {
            return Err(op.invalid(
                name,
                "security group names must be 1 to 255 characters long",
            ));
        }
        let id = self.ctx.sim.id("sg");
        self.mutate(op, |s| {
            if !s.vpcs.contains_key(vpc) {
                return Err(op.not_found(vpc, "no such VPC"));
            }
            if s.groups.values().any(|g| g.vpc == vpc && g.name == name) {
                return Err(op.already_exists(
                    name,
                    format!("a security group of that name exists in {vpc}"),
                ));
            }
            let group = SecurityGroupInfo {
                id: id.clone(),
                name: name.to_string(),
                vpc: vpc.to_string(),
                rules: Vec::new(),
            };
            s.groups.insert(id.clone(), group.clone());
            Ok(group)
        })
    }

    async fn authorize(&self, group: &str, rule: Rule) -> Result<()> {
        let op = op("authorize");
        self.mutate(op, |s| {
            let current = s
                .groups
                .get(group)
                .ok_or_else(|| op.not_found(group, "no such security group"))?;
            check_rule(op, s, current, &rule)?;
            if current.rules.contains(&rule) {
                return Err(op.already_exists(group, format!("the rule {rule:?} already exists")));
            }
            if let Some(g) = s.groups.get_mut(group) {
                g.rules.push(rule);
            }
            Ok(())
        })
    }

    async fn revoke(&self, group: &str, rule: Rule) -> Result<()> {
        let op = op("revoke");
        self.mutate(op, |s| {
            let g = s
                .groups
                .get_mut(group)
                .ok_or_else(|| op.not_found(group, "no such security group"))?;
            let before = g.rules.len();
            g.rules.retain(|r| r != &rule);
            if g.rules.len() == before {
                return Err(op.not_found(group, format!("the group has no rule {rule:?}")));
            }
            Ok(())
        })
    }

    async fn describe_security_group(&self, id: &str) -> Result<SecurityGroupInfo> {
        self.security_group(id)
            .ok_or_else(|| op("describe_security_group").not_found(id, "no such security group"))
    }

    async fn list_security_groups(&self, vpc: &str) -> Result<Vec<SecurityGroupInfo>> {
        let state = self.lock();
        if !state.vpcs.contains_key(vpc) {
            return Err(op("list_security_groups").not_found(vpc, "no such VPC"));
        }
        Ok(state
            .groups
            .values()
            .filter(|g| g.vpc == vpc)
            .cloned()
            .collect())
    }

    async fn delete_security_group(&self, id: &str) -> Result<()> {
        let op = op("delete_security_group");
        self.mutate(op, |s| {
            if !s.groups.contains_key(id) {
                return Err(op.not_found(id, "no such security group"));
            }
            if let Some(user) = s.groups.values().find(|g| {
                g.id != id
                    && g.rules
                        .iter()
                        .any(|r| r.peer == Peer::Group(id.to_string()))
            }) {
                return Err(op.precondition(
                    id,
                    format!(
                        "security group {} has a rule referring to it; revoke it first",
                        user.id
                    ),
                ));
            }
            s.groups.remove(id);
            Ok(())
        })
    }
}
