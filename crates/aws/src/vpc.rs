//! VPC on Amazon EC2: VPCs, subnets, an internet gateway for public subnets, and security
//! groups.
//!
//! mvi's ids are EC2's (`vpc-…`, `subnet-…`, `sg-…`); a VPC's mvi tags are its EC2 tags (the
//! `Name` tag is its name in the console), a security group's name is its EC2 group name.
//! Blocks, zones, overlaps, port ranges and peers are checked before any request, with core's
//! [`Cidr`] and the local backend's rules, so both backends refuse the same input the same way.
//!
//! Public subnets: the first public subnet of a VPC gets the VPC an internet gateway (tagged
//! `mvi:vpc`) and a route table (tagged `mvi:role=public-routes`) whose `0.0.0.0/0` route goes
//! to it; each public subnet is associated with that table and maps a public address to the
//! instances launched in it. Private subnets keep the VPC's main route table (no route out).
//! Whether a listed subnet is public is read back from its route table (a default route to an
//! internet gateway), so subnets made outside mvi read truly too. Deleting the VPC removes the
//! gateway and the table it made.
//!
//! Rules: mvi's rules are TCP allow rules, so a group shows its TCP permissions. Every new EC2
//! group also has EC2's default egress rule (all protocols to `0.0.0.0/0`); it is left in place
//! (instances need a way out, and the local simulator does not restrict egress either) and, not
//! being a TCP rule, is not listed. The same holds for the rules of each VPC's `default` group,
//! which EC2 makes with the VPC, lists with the others, and deletes with the VPC.
//!
//! Dependents: a VPC with subnets or security groups (other than its `default` group), and a
//! group that another group's rule refers to, are refused (`PreconditionFailed`) before asking
//! EC2, as locally (moto does not check either). Right after an instance is terminated, EC2
//! still holds its network interface in the subnet and its groups for a minute or so; deleting
//! those then waits for such instances to finish shutting down and tries once more.

use std::time::Duration;

use crate::poll::Backoff;
use async_trait::async_trait;
use aws_sdk_ec2::Client;
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{
    AttributeBooleanValue, Filter, IpPermission, IpRange, ResourceType, RouteTable, SecurityGroup,
    Subnet, Tag, TagSpecification, UserIdGroupPair, Vpc,
};
use mvi_core::vpc::{
    Cidr, Direction, Networks, Peer, Rule, SecurityGroupInfo, SubnetInfo, VpcInfo,
};
use mvi_core::{Op, Result, Service, Tags};

use crate::error::map;

const fn op(name: &'static str) -> Op {
    Op::new(Service::Vpc, name)
}

/// The tag on the route table mvi makes for a VPC's public subnets.
const ROLE_TAG: &str = "mvi:role";
/// Its value.
const PUBLIC_ROUTES: &str = "public-routes";
/// The tag on the internet gateway mvi makes for a VPC: the VPC's id.
const VPC_TAG: &str = "mvi:vpc";
/// The name of the group EC2 makes with every VPC.
const DEFAULT_GROUP: &str = "default";
/// How long a delete waits for terminated instances to let go of a subnet or group.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(600);

/// The VPC service on Amazon EC2 (or an EC2-compatible endpoint).
#[derive(Debug)]
pub struct Ec2Networks {
    client: Client,
    /// Serializes making a VPC's internet gateway and public route table, so two public
    /// subnets created at once through this handle do not make two of each.
    public_routes: tokio::sync::Mutex<()>,
}

impl Ec2Networks {
    /// The VPC service with an EC2 client built from `config`.
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        Ec2Networks {
            client: Client::new(config),
            public_routes: tokio::sync::Mutex::new(()),
        }
    }
}

/// An EC2 filter.
pub(crate) fn filter(name: &str, values: &[&str]) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values.iter().map(|v| v.to_string()).collect()))
        .build()
}

/// EC2 tags as mvi tags.
pub(crate) fn tags_of(tags: &[Tag]) -> Tags {
    tags.iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_owned(),
                t.value().unwrap_or_default().to_owned(),
            ))
        })
        .collect()
}

/// A tag specification for a new resource, or none if there are no tags (EC2 refuses an
/// empty one).
pub(crate) fn tag_spec<'a>(
    kind: ResourceType,
    tags: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Option<TagSpecification> {
    let tags: Vec<Tag> = tags
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect();
    (!tags.is_empty()).then(|| {
        TagSpecification::builder()
            .resource_type(kind)
            .set_tags(Some(tags))
            .build()
    })
}

/// Whether `id` has the shape of an EC2 id with this prefix (`vpc-0a1b…`). Anything else
/// names nothing, so it is NotFound without a request, as on the local backend (EC2 would
/// call it malformed).
pub(crate) fn is_ec2_id(prefix: &str, id: &str) -> bool {
    id.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|hex| !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Whether an SDK error carries this EC2 error code.
pub(crate) fn has_code<E: ProvideErrorMetadata>(
    err: &aws_sdk_ec2::error::SdkError<E>,
    code: &str,
) -> bool {
    err.as_service_error().and_then(|e| e.code()) == Some(code)
}

fn vpc_info(v: &Vpc) -> VpcInfo {
    VpcInfo {
        id: v.vpc_id().unwrap_or_default().to_owned(),
        cidr: v.cidr_block().unwrap_or_default().to_owned(),
        tags: tags_of(v.tags()),
    }
}

/// Whether a route table sends `0.0.0.0/0` to an internet gateway.
fn routes_to_internet(t: &RouteTable) -> bool {
    t.routes().iter().any(|r| {
        r.destination_cidr_block() == Some("0.0.0.0/0")
            && r.gateway_id().is_some_and(|g| g.starts_with("igw-"))
    })
}

/// A subnet, public if the route table it uses (its own association, else the VPC's main
/// table) routes to an internet gateway.
fn subnet_info(s: &Subnet, tables: &[RouteTable]) -> SubnetInfo {
    let id = s.subnet_id().unwrap_or_default();
    let explicit = tables
        .iter()
        .find(|t| t.associations().iter().any(|a| a.subnet_id() == Some(id)));
    let main = || {
        tables
            .iter()
            .find(|t| t.associations().iter().any(|a| a.main() == Some(true)))
    };
    SubnetInfo {
        id: id.to_owned(),
        vpc: s.vpc_id().unwrap_or_default().to_owned(),
        cidr: s.cidr_block().unwrap_or_default().to_owned(),
        zone: s.availability_zone().unwrap_or_default().to_owned(),
        public: explicit.or_else(main).is_some_and(routes_to_internet),
    }
}

/// The mvi rules of a set of EC2 permissions: each TCP permission's every IPv4 block and
/// group is one rule. Other protocols, IPv6 blocks and prefix lists are outside mvi's model.
fn rules_of(direction: Direction, perms: &[IpPermission]) -> Vec<Rule> {
    let mut rules = Vec::new();
    for p in perms {
        if !matches!(p.ip_protocol(), Some("tcp" | "6")) {
            continue;
        }
        let (Some(from), Some(to)) = (
            p.from_port().and_then(|n| u16::try_from(n).ok()),
            p.to_port().and_then(|n| u16::try_from(n).ok()),
        ) else {
            continue;
        };
        let peers = p
            .ip_ranges()
            .iter()
            .filter_map(|r| r.cidr_ip().map(|c| Peer::Cidr(c.to_owned())))
            .chain(
                p.user_id_group_pairs()
                    .iter()
                    .filter_map(|g| g.group_id().map(|g| Peer::Group(g.to_owned()))),
            );
        for peer in peers {
            rules.push(Rule {
                direction,
                from_port: from,
                to_port: to,
                peer,
            });
        }
    }
    rules
}

fn group_info(g: &SecurityGroup) -> SecurityGroupInfo {
    let mut rules = rules_of(Direction::Ingress, g.ip_permissions());
    rules.extend(rules_of(Direction::Egress, g.ip_permissions_egress()));
    SecurityGroupInfo {
        id: g.group_id().unwrap_or_default().to_owned(),
        name: g.group_name().unwrap_or_default().to_owned(),
        vpc: g.vpc_id().unwrap_or_default().to_owned(),
        rules,
    }
}

/// Whether any permission of `g` (any protocol, either direction) names group `id`.
fn refers_to(g: &SecurityGroup, id: &str) -> bool {
    g.ip_permissions()
        .iter()
        .chain(g.ip_permissions_egress())
        .flat_map(|p| p.user_id_group_pairs())
        .any(|pair| pair.group_id() == Some(id))
}

/// The EC2 permission of one mvi rule.
fn permission(rule: &Rule) -> IpPermission {
    let p = IpPermission::builder()
        .ip_protocol("tcp")
        .from_port(i32::from(rule.from_port))
        .to_port(i32::from(rule.to_port));
    match &rule.peer {
        Peer::Cidr(c) => p.ip_ranges(IpRange::builder().cidr_ip(c).build()),
        Peer::Group(g) => p.user_id_group_pairs(UserIdGroupPair::builder().group_id(g).build()),
    }
    .build()
}

impl Ec2Networks {
    /// The VPC `id`, or NotFound.
    async fn vpc(&self, op: Op, id: &str) -> Result<Vpc> {
        if !is_ec2_id("vpc", id) {
            return Err(op.not_found(id, "no such VPC"));
        }
        let out = self
            .client
            .describe_vpcs()
            .vpc_ids(id)
            .send()
            .await
            .map_err(|e| map(op, id, e))?;
        out.vpcs()
            .iter()
            .find(|v| v.vpc_id() == Some(id))
            .cloned()
            .ok_or_else(|| op.not_found(id, "no such VPC"))
    }

    /// The subnets of a VPC, as EC2 describes them.
    async fn subnets_of(&self, op: Op, vpc: &str) -> Result<Vec<Subnet>> {
        let pages = self
            .client
            .describe_subnets()
            .filters(filter("vpc-id", &[vpc]))
            .into_paginator()
            .send()
            .try_collect()
            .await
            .map_err(|e| map(op, vpc, e))?;
        Ok(pages
            .iter()
            .flat_map(|p| p.subnets().iter().cloned())
            .collect())
    }

    /// The route tables of a VPC, optionally only those with a tag.
    async fn route_tables(
        &self,
        op: Op,
        vpc: &str,
        tag: Option<(&str, &str)>,
    ) -> Result<Vec<RouteTable>> {
        let mut req = self
            .client
            .describe_route_tables()
            .filters(filter("vpc-id", &[vpc]));
        if let Some((k, v)) = tag {
            req = req.filters(filter(&format!("tag:{k}"), &[v]));
        }
        let pages = req
            .into_paginator()
            .send()
            .try_collect()
            .await
            .map_err(|e| map(op, vpc, e))?;
        Ok(pages
            .iter()
            .flat_map(|p| p.route_tables().iter().cloned())
            .collect())
    }

    /// The security groups of a VPC.
    async fn groups_of(&self, op: Op, vpc: &str) -> Result<Vec<SecurityGroup>> {
        let pages = self
            .client
            .describe_security_groups()
            .filters(filter("vpc-id", &[vpc]))
            .into_paginator()
            .send()
            .try_collect()
            .await
            .map_err(|e| map(op, vpc, e))?;
        Ok(pages
            .iter()
            .flat_map(|p| p.security_groups().iter().cloned())
            .collect())
    }

    /// The security group `id`, or NotFound.
    async fn group(&self, op: Op, id: &str) -> Result<SecurityGroup> {
        if !is_ec2_id("sg", id) {
            return Err(op.not_found(id, "no such security group"));
        }
        let out = self
            .client
            .describe_security_groups()
            .group_ids(id)
            .send()
            .await
            .map_err(|e| map(op, id, e))?;
        out.security_groups()
            .iter()
            .find(|g| g.group_id() == Some(id))
            .cloned()
            .ok_or_else(|| op.not_found(id, "no such security group"))
    }

    /// The route table of `vpc` that sends traffic to the internet, made (with the internet
    /// gateway) on first use.
    async fn public_route_table(&self, op: Op, vpc: &str) -> Result<String> {
        let _one_at_a_time = self.public_routes.lock().await;
        let existing = self
            .route_tables(op, vpc, Some((ROLE_TAG, PUBLIC_ROUTES)))
            .await?;
        let table = match existing.into_iter().next() {
            Some(t) if routes_to_internet(&t) => {
                return t
                    .route_table_id()
                    .map(str::to_owned)
                    .ok_or_else(|| op.internal(vpc, "DescribeRouteTables answered no id"));
            }
            Some(t) => t,
            None => {
                let out = self
                    .client
                    .create_route_table()
                    .vpc_id(vpc)
                    .set_tag_specifications(
                        tag_spec(
                            ResourceType::RouteTable,
                            [(ROLE_TAG, PUBLIC_ROUTES), (VPC_TAG, vpc)],
                        )
                        .map(|t| vec![t]),
                    )
                    .send()
                    .await
                    .map_err(|e| map(op, vpc, e))?;
                out.route_table()
                    .cloned()
                    .ok_or_else(|| op.internal(vpc, "CreateRouteTable answered no table"))?
            }
        };
        let table_id = table
            .route_table_id()
            .ok_or_else(|| op.internal(vpc, "the route table has no id"))?
            .to_owned();
        let gateway = self.internet_gateway(op, vpc).await?;
        self.client
            .create_route()
            .route_table_id(&table_id)
            .destination_cidr_block("0.0.0.0/0")
            .gateway_id(&gateway)
            .send()
            .await
            .map_err(|e| map(op, vpc, e))?;
        Ok(table_id)
    }

    /// The internet gateway attached to `vpc`, made and attached if it has none.
    async fn internet_gateway(&self, op: Op, vpc: &str) -> Result<String> {
        let attached = self
            .client
            .describe_internet_gateways()
            .filters(filter("attachment.vpc-id", &[vpc]))
            .send()
            .await
            .map_err(|e| map(op, vpc, e))?;
        if let Some(id) = attached
            .internet_gateways()
            .iter()
            .find_map(|g| g.internet_gateway_id())
        {
            return Ok(id.to_owned());
        }
        let created = self
            .client
            .create_internet_gateway()
            .set_tag_specifications(
                tag_spec(ResourceType::InternetGateway, [(VPC_TAG, vpc)]).map(|t| vec![t]),
            )
            .send()
            .await
            .map_err(|e| map(op, vpc, e))?;
        let id = created
            .internet_gateway()
            .and_then(|g| g.internet_gateway_id())
            .ok_or_else(|| op.internal(vpc, "CreateInternetGateway answered no id"))?
            .to_owned();
        self.client
            .attach_internet_gateway()
            .internet_gateway_id(&id)
            .vpc_id(vpc)
            .send()
            .await
            .map_err(|e| map(op, vpc, e))?;
        Ok(id)
    }

    /// Routes a new subnet through the VPC's internet gateway and gives its instances public
    /// addresses.
    async fn make_public(&self, op: Op, vpc: &str, subnet: &str) -> Result<()> {
        let table = self.public_route_table(op, vpc).await?;
        self.client
            .associate_route_table()
            .route_table_id(&table)
            .subnet_id(subnet)
            .send()
            .await
            .map_err(|e| map(op, subnet, e))?;
        self.client
            .modify_subnet_attribute()
            .subnet_id(subnet)
            .map_public_ip_on_launch(AttributeBooleanValue::builder().value(true).build())
            .send()
            .await
            .map_err(|e| map(op, subnet, e))?;
        Ok(())
    }

    /// Removes the route tables and internet gateway that mvi made for `vpc`.
    async fn remove_public_routes(&self, op: Op, vpc: &str) -> Result<()> {
        for table in self
            .route_tables(op, vpc, Some((ROLE_TAG, PUBLIC_ROUTES)))
            .await?
        {
            let Some(table_id) = table.route_table_id() else {
                continue;
            };
            // EC2 drops a subnet's association when the subnet goes; moto keeps it and then
            // refuses to delete the table, so let go of any left.
            for assoc in table.associations() {
                if assoc.main() == Some(true) {
                    continue;
                }
                if let Some(a) = assoc.route_table_association_id() {
                    self.client
                        .disassociate_route_table()
                        .association_id(a)
                        .send()
                        .await
                        .map_err(|e| map(op, vpc, e))?;
                }
            }
            self.client
                .delete_route_table()
                .route_table_id(table_id)
                .send()
                .await
                .map_err(|e| map(op, vpc, e))?;
        }
        let gateways = self
            .client
            .describe_internet_gateways()
            .filters(filter("attachment.vpc-id", &[vpc]))
            .filters(filter(&format!("tag:{VPC_TAG}"), &[vpc]))
            .send()
            .await
            .map_err(|e| map(op, vpc, e))?;
        for g in gateways.internet_gateways() {
            let Some(id) = g.internet_gateway_id() else {
                continue;
            };
            self.client
                .detach_internet_gateway()
                .internet_gateway_id(id)
                .vpc_id(vpc)
                .send()
                .await
                .map_err(|e| map(op, vpc, e))?;
            self.client
                .delete_internet_gateway()
                .internet_gateway_id(id)
                .send()
                .await
                .map_err(|e| map(op, vpc, e))?;
        }
        Ok(())
    }

    /// Waits while instances matching `which` are shutting down (terminated, but still
    /// holding their network interface). Whether there were any: then the caller retries.
    async fn wait_for_shutdown(&self, op: Op, resource: &str, which: Filter) -> Result<bool> {
        let every = Duration::from_secs(5);
        let mut poll = Backoff::new(every, every, SHUTDOWN_WAIT);
        let mut waited = false;
        loop {
            let out = self
                .client
                .describe_instances()
                .filters(which.clone())
                .filters(filter("instance-state-name", &["shutting-down"]))
                .send()
                .await
                .map_err(|e| map(op, resource, e))?;
            let busy = out.reservations().iter().any(|r| !r.instances().is_empty());
            if !busy || poll.expired() {
                return Ok(waited && !busy);
            }
            waited = true;
            poll.wait().await;
        }
    }

    /// Checks a rule against group `group` (already described): ports in order, a valid
    /// block, a peer group that exists in the same VPC.
    async fn check_rule(&self, op: Op, group: &SecurityGroup, rule: &Rule) -> Result<()> {
        let id = group.group_id().unwrap_or_default();
        if rule.from_port > rule.to_port {
            return Err(op.invalid(
                id,
                format!(
                    "from_port {} is greater than to_port {}",
                    rule.from_port, rule.to_port
                ),
            ));
        }
        match &rule.peer {
            Peer::Cidr(c) => Cidr::parse(op, c).map(|_| ()),
            Peer::Group(g) => {
                let peer = self.group(op, g).await?;
                if peer.vpc_id() == group.vpc_id() {
                    Ok(())
                } else {
                    Err(op.invalid(g.as_str(), "the peer security group is in another VPC"))
                }
            }
        }
    }
}

#[async_trait]
impl Networks for Ec2Networks {
    async fn list_zones(&self) -> Result<Vec<String>> {
        let op = op("list_zones");
        let out = self
            .client
            .describe_availability_zones()
            .send()
            .await
            .map_err(|e| map(op, "zones", e))?;
        // Only the region's own zones: Local Zones and Wavelength Zones are opt-in extras.
        let mut zones: Vec<String> = out
            .availability_zones()
            .iter()
            .filter(|z| z.zone_type().is_none_or(|t| t == "availability-zone"))
            .filter(|z| z.state().is_none_or(|s| s.as_str() == "available"))
            .filter_map(|z| z.zone_name().map(str::to_owned))
            .collect();
        zones.sort();
        Ok(zones)
    }

    async fn create_vpc(&self, cidr: &str, tags: Tags) -> Result<VpcInfo> {
        let op = op("create_vpc");
        let block = Cidr::parse(op, cidr)?;
        if !(16..=28).contains(&block.prefix) {
            return Err(op.invalid(cidr, "a VPC's block must be between /16 and /28"));
        }
        let out = self
            .client
            .create_vpc()
            .cidr_block(block.to_string())
            .set_tag_specifications(
                tag_spec(
                    ResourceType::Vpc,
                    tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                )
                .map(|t| vec![t]),
            )
            .send()
            .await
            .map_err(|e| map(op, cidr, e))?;
        let vpc = out
            .vpc()
            .ok_or_else(|| op.internal(cidr, "CreateVpc answered no VPC"))?;
        Ok(VpcInfo {
            id: vpc.vpc_id().unwrap_or_default().to_owned(),
            cidr: block.to_string(),
            tags,
        })
    }

    async fn delete_vpc(&self, id: &str) -> Result<()> {
        let op = op("delete_vpc");
        self.vpc(op, id).await?;
        let subnets = self.subnets_of(op, id).await?.len();
        let groups = self
            .groups_of(op, id)
            .await?
            .iter()
            .filter(|g| g.group_name() != Some(DEFAULT_GROUP))
            .count();
        if subnets + groups > 0 {
            return Err(op.precondition(
                id,
                format!(
                    "the VPC still has {subnets} subnet(s) and {groups} security group(s); delete them first"
                ),
            ));
        }
        self.remove_public_routes(op, id).await?;
        self.client
            .delete_vpc()
            .vpc_id(id)
            .send()
            .await
            .map_err(|e| map(op, id, e))?;
        Ok(())
    }

    async fn list_vpcs(&self) -> Result<Vec<VpcInfo>> {
        let op = op("list_vpcs");
        let pages = self
            .client
            .describe_vpcs()
            .into_paginator()
            .send()
            .try_collect()
            .await
            .map_err(|e| map(op, "vpcs", e))?;
        Ok(pages
            .iter()
            .flat_map(|p| p.vpcs().iter().map(vpc_info))
            .collect())
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
        let zones = self.list_zones().await?;
        if !zones.iter().any(|z| z == zone) {
            return Err(op.invalid(
                zone,
                format!("unknown availability zone; use one of {zones:?}"),
            ));
        }
        let parent = self.vpc(op, vpc).await?;
        let parent_cidr = parent.cidr_block().unwrap_or_default();
        let parent_block = Cidr::parse(op, parent_cidr)?;
        if !parent_block.contains(&block) {
            return Err(op.invalid(
                cidr,
                format!("the subnet is not inside the VPC's block {parent_cidr}"),
            ));
        }
        if !(16..=28).contains(&block.prefix) {
            return Err(op.invalid(cidr, "a subnet's block must be between /16 and /28"));
        }
        if let Some(other) = self.subnets_of(op, vpc).await?.iter().find(|n| {
            n.cidr_block()
                .and_then(|c| Cidr::parse(op, c).ok())
                .is_some_and(|c| c.overlaps(&block))
        }) {
            return Err(op.invalid(
                cidr,
                format!(
                    "the block overlaps subnet {} ({})",
                    other.subnet_id().unwrap_or_default(),
                    other.cidr_block().unwrap_or_default()
                ),
            ));
        }
        let out = self
            .client
            .create_subnet()
            .vpc_id(vpc)
            .cidr_block(block.to_string())
            .availability_zone(zone)
            .send()
            .await
            .map_err(|e| map(op, cidr, e))?;
        let id = out
            .subnet()
            .and_then(|s| s.subnet_id())
            .ok_or_else(|| op.internal(cidr, "CreateSubnet answered no id"))?
            .to_owned();
        if public && let Err(e) = self.make_public(op, vpc, &id).await {
            // Half a public subnet is worse than none: take it back, and report why.
            let _ = self.client.delete_subnet().subnet_id(&id).send().await;
            return Err(e);
        }
        Ok(SubnetInfo {
            id,
            vpc: vpc.to_owned(),
            cidr: block.to_string(),
            zone: zone.to_owned(),
            public,
        })
    }

    async fn delete_subnet(&self, id: &str) -> Result<()> {
        let op = op("delete_subnet");
        if !is_ec2_id("subnet", id) {
            return Err(op.not_found(id, "no such subnet"));
        }
        let mut retried = false;
        loop {
            match self.client.delete_subnet().subnet_id(id).send().await {
                Ok(_) => break,
                Err(e)
                    if !retried
                        && has_code(&e, "DependencyViolation")
                        && self
                            .wait_for_shutdown(op, id, filter("subnet-id", &[id]))
                            .await? =>
                {
                    retried = true;
                }
                Err(e) => return Err(map(op, id, e)),
            }
        }
        // EC2 drops the subnet's route table association with it; moto keeps it, which later
        // blocks deleting the table and the VPC. Let go of any left over.
        let tables = self
            .client
            .describe_route_tables()
            .filters(filter("association.subnet-id", &[id]))
            .send()
            .await
            .map_err(|e| map(op, id, e))?;
        for assoc in tables
            .route_tables()
            .iter()
            .flat_map(|t| t.associations())
            .filter(|a| a.subnet_id() == Some(id))
        {
            if let Some(a) = assoc.route_table_association_id() {
                self.client
                    .disassociate_route_table()
                    .association_id(a)
                    .send()
                    .await
                    .map_err(|e| map(op, id, e))?;
            }
        }
        Ok(())
    }

    async fn list_subnets(&self, vpc: &str) -> Result<Vec<SubnetInfo>> {
        let op = op("list_subnets");
        self.vpc(op, vpc).await?;
        let subnets = self.subnets_of(op, vpc).await?;
        let tables = self.route_tables(op, vpc, None).await?;
        Ok(subnets.iter().map(|s| subnet_info(s, &tables)).collect())
    }

    async fn create_security_group(&self, vpc: &str, name: &str) -> Result<SecurityGroupInfo> {
        let op = op("create_security_group");
        if name.is_empty() || name.len() > 255 {
            return Err(op.invalid(
                name,
                "security group names must be 1 to 255 characters long",
            ));
        }
        if !is_ec2_id("vpc", vpc) {
            return Err(op.not_found(vpc, "no such VPC"));
        }
        // EC2 answers InvalidVpcID.NotFound for a missing VPC and InvalidGroup.Duplicate for a
        // name taken in the VPC, which map to NotFound and AlreadyExists.
        let out = self
            .client
            .create_security_group()
            .vpc_id(vpc)
            .group_name(name)
            .description("managed by mvi")
            .send()
            .await
            .map_err(|e| {
                let resource = if has_code(&e, "InvalidVpcID.NotFound") {
                    vpc
                } else {
                    name
                };
                map(op, resource, e)
            })?;
        let id = out
            .group_id()
            .ok_or_else(|| op.internal(name, "CreateSecurityGroup answered no id"))?;
        Ok(SecurityGroupInfo {
            id: id.to_owned(),
            name: name.to_owned(),
            vpc: vpc.to_owned(),
            rules: Vec::new(),
        })
    }

    async fn authorize(&self, group: &str, rule: Rule) -> Result<()> {
        let op = op("authorize");
        let current = self.group(op, group).await?;
        self.check_rule(op, &current, &rule).await?;
        if group_info(&current).rules.contains(&rule) {
            return Err(op.already_exists(group, format!("the rule {rule:?} already exists")));
        }
        let perm = permission(&rule);
        match rule.direction {
            Direction::Ingress => self
                .client
                .authorize_security_group_ingress()
                .group_id(group)
                .ip_permissions(perm)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| map(op, group, e)),
            Direction::Egress => self
                .client
                .authorize_security_group_egress()
                .group_id(group)
                .ip_permissions(perm)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| map(op, group, e)),
        }
    }

    async fn revoke(&self, group: &str, rule: Rule) -> Result<()> {
        let op = op("revoke");
        let current = self.group(op, group).await?;
        if !group_info(&current).rules.contains(&rule) {
            return Err(op.not_found(group, format!("the group has no rule {rule:?}")));
        }
        let perm = permission(&rule);
        match rule.direction {
            Direction::Ingress => self
                .client
                .revoke_security_group_ingress()
                .group_id(group)
                .ip_permissions(perm)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| map(op, group, e)),
            Direction::Egress => self
                .client
                .revoke_security_group_egress()
                .group_id(group)
                .ip_permissions(perm)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| map(op, group, e)),
        }
    }

    async fn describe_security_group(&self, id: &str) -> Result<SecurityGroupInfo> {
        let op = op("describe_security_group");
        Ok(group_info(&self.group(op, id).await?))
    }

    async fn list_security_groups(&self, vpc: &str) -> Result<Vec<SecurityGroupInfo>> {
        let op = op("list_security_groups");
        self.vpc(op, vpc).await?;
        Ok(self
            .groups_of(op, vpc)
            .await?
            .iter()
            .map(group_info)
            .collect())
    }

    async fn delete_security_group(&self, id: &str) -> Result<()> {
        let op = op("delete_security_group");
        let group = self.group(op, id).await?;
        if group.group_name() == Some(DEFAULT_GROUP) {
            return Err(op.precondition(
                id,
                "a VPC's default security group goes with its VPC; it cannot be deleted alone",
            ));
        }
        let vpc = group.vpc_id().unwrap_or_default();
        if let Some(user) = self
            .groups_of(op, vpc)
            .await?
            .iter()
            .find(|g| g.group_id() != Some(id) && refers_to(g, id))
        {
            return Err(op.precondition(
                id,
                format!(
                    "security group {} has a rule referring to it; revoke it first",
                    user.group_id().unwrap_or_default()
                ),
            ));
        }
        let mut retried = false;
        loop {
            match self
                .client
                .delete_security_group()
                .group_id(id)
                .send()
                .await
            {
                Ok(_) => return Ok(()),
                Err(e)
                    if !retried
                        && has_code(&e, "DependencyViolation")
                        && self
                            .wait_for_shutdown(op, id, filter("instance.group-id", &[id]))
                            .await? =>
                {
                    retried = true;
                }
                Err(e) => return Err(map(op, id, e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::types::{Route, RouteTableAssociation};

    #[test]
    fn ids_are_recognised_by_shape() {
        assert!(is_ec2_id("vpc", "vpc-0123456789abcdef0"));
        assert!(is_ec2_id("sg", "sg-12ab"));
        assert!(!is_ec2_id("vpc", "vpc-"));
        assert!(!is_ec2_id("vpc", "subnet-12ab"));
        assert!(!is_ec2_id("sg", "sgx-12ab"));
        assert!(!is_ec2_id("sg", "sg-../x"));
    }

    #[test]
    fn tcp_permissions_become_rules_and_back() {
        let rule = Rule {
            direction: Direction::Ingress,
            from_port: 80,
            to_port: 443,
            peer: Peer::Group("sg-1".into()),
        };
        let perm = permission(&rule);
        assert_eq!(rules_of(Direction::Ingress, &[perm]), vec![rule]);
        // EC2's default egress rule (all protocols) is outside mvi's model.
        let all = IpPermission::builder()
            .ip_protocol("-1")
            .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
            .build();
        assert!(rules_of(Direction::Egress, &[all]).is_empty());
    }

    #[test]
    fn a_subnet_is_public_when_its_table_routes_to_a_gateway() {
        let main = RouteTable::builder()
            .associations(RouteTableAssociation::builder().main(true).build())
            .build();
        let public = RouteTable::builder()
            .associations(
                RouteTableAssociation::builder()
                    .subnet_id("subnet-a")
                    .build(),
            )
            .routes(
                Route::builder()
                    .destination_cidr_block("0.0.0.0/0")
                    .gateway_id("igw-1")
                    .build(),
            )
            .build();
        let tables = [main, public];
        let a = Subnet::builder().subnet_id("subnet-a").build();
        let b = Subnet::builder().subnet_id("subnet-b").build();
        assert!(subnet_info(&a, &tables).public);
        assert!(!subnet_info(&b, &tables).public);
    }
}
