//! VPC resources: networks, subnets and security groups.

use std::collections::BTreeSet;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{
    Input, Output, URN_TAG, declare, found, gone_ok, insert_input, map_input, push_input,
    resource_args,
};
use crate::common::Tags;
use crate::error::{ErrorKind, Op, Result, Service};
use crate::stack::{Cx, Resource, ResourceOptions, Stack};
use crate::vpc::{Cidr, Direction, Peer, Rule};

fn check_op() -> Op {
    Op::new(Service::Stack, "check")
}

fn check_tags(op: Op, tags: &Tags) -> Result<()> {
    if tags.contains_key(URN_TAG) {
        return Err(op.invalid(
            URN_TAG,
            "property \"tags\": the tag mvi:urn is reserved (the stack sets it)",
        ));
    }
    Ok(())
}

fn without_urn(mut tags: Tags) -> Tags {
    tags.remove(URN_TAG);
    tags
}

// ---------------------------------------------------------------------------------------
// VPC

resource_args! {
    /// Arguments of a [`Vpc`].
    pub struct VpcArgs => VpcSpec {
        /// Its IPv4 block (`10.0.0.0/16`, /16 to /28).
        cidr: String,
        /// Tags (the stack adds `mvi:urn`).
        tags: Tags,
    }
}

impl VpcArgs {
    /// A VPC over `cidr`.
    pub fn new(cidr: impl Into<Input<String>>) -> Self {
        VpcArgs {
            cidr: cidr.into(),
            tags: Input::Value(Tags::new()),
        }
    }

    /// Adds a tag.
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<Input<String>>) -> Self {
        self.tags = insert_input(self.tags, key, value.into());
        self
    }
}

/// A VPC.
#[derive(Debug, Clone)]
pub struct Vpc {
    /// Its URN.
    pub urn: String,
    /// Its id.
    pub id: Output<String>,
    /// Its block.
    pub cidr: Output<String>,
}

impl Vpc {
    /// Declares a VPC.
    pub fn new(stack: &Stack, name: &str, args: VpcArgs) -> Result<Vpc> {
        Self::with(stack, name, args, ResourceOptions::default())
    }

    /// Declares a VPC with options.
    pub fn with(stack: &Stack, name: &str, args: VpcArgs, opts: ResourceOptions) -> Result<Vpc> {
        let h = declare::<VpcResource>(stack, name, &args, opts)?;
        Ok(Vpc {
            id: h.output("id"),
            cidr: h.output("cidr"),
            urn: h.urn().to_string(),
        })
    }
}

/// Outputs of a VPC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VpcOutputs {
    /// Its id.
    pub id: String,
    /// Its block.
    pub cidr: String,
}

/// The provider of [`Vpc`].
#[derive(Debug)]
pub struct VpcResource;

#[async_trait]
impl Resource for VpcResource {
    const TYPE: &'static str = "mvi:vpc:Vpc";
    // No service call changes a VPC's block or tags.
    const REPLACE_ON: &'static [&'static str] = &["cidr", "tags"];
    const FIXED_NAME: bool = false;
    type Args = VpcSpec;
    type Outputs = VpcOutputs;

    fn check(args: &VpcSpec) -> Result<()> {
        let op = check_op();
        let block = Cidr::parse(op, &args.cidr)
            .map_err(|e| op.invalid("cidr", format!("property \"cidr\": {e}")))?;
        if !(16..=28).contains(&block.prefix) {
            return Err(op.invalid(
                &args.cidr,
                "property \"cidr\": a VPC's block must be between /16 and /28",
            ));
        }
        check_tags(op, &args.tags)
    }

    async fn create(cx: Cx<'_>, args: &VpcSpec) -> Result<(String, VpcOutputs)> {
        let mut tags = args.tags.clone();
        tags.insert(URN_TAG.into(), cx.urn.into());
        let vpc = cx.cloud.networks()?.create_vpc(&args.cidr, tags).await?;
        Ok((
            vpc.id.clone(),
            VpcOutputs {
                id: vpc.id,
                cidr: vpc.cidr,
            },
        ))
    }

    async fn find(cx: Cx<'_>, _: &VpcSpec) -> Result<Option<String>> {
        let vpcs = cx.cloud.networks()?.list_vpcs().await?;
        Ok(vpcs
            .into_iter()
            .find(|v| {
                v.tags.get(URN_TAG).map(String::as_str) == Some(cx.urn) && !cx.is_taken(&v.id)
            })
            .map(|v| v.id))
    }

    async fn read(cx: Cx<'_>, id: &str, _: &VpcSpec) -> Result<Option<(VpcSpec, VpcOutputs)>> {
        let vpcs = cx.cloud.networks()?.list_vpcs().await?;
        Ok(vpcs.into_iter().find(|v| v.id == id).map(|v| {
            (
                VpcSpec {
                    cidr: v.cidr.clone(),
                    tags: without_urn(v.tags),
                },
                VpcOutputs {
                    id: v.id,
                    cidr: v.cidr,
                },
            )
        }))
    }

    async fn update(_: Cx<'_>, id: &str, _: &VpcSpec, new: &VpcSpec) -> Result<VpcOutputs> {
        Ok(VpcOutputs {
            id: id.to_string(),
            cidr: new.cidr.clone(),
        })
    }

    async fn delete(cx: Cx<'_>, id: &str, _: &VpcSpec) -> Result<()> {
        gone_ok(cx.cloud.networks()?.delete_vpc(id).await)
    }
}

// ---------------------------------------------------------------------------------------
// Subnet

resource_args! {
    /// Arguments of a [`Subnet`].
    pub struct SubnetArgs => SubnetSpec {
        /// The VPC's id.
        vpc: String,
        /// Its block, inside the VPC's.
        cidr: String,
        /// Its zone (`None`: the first zone the backend lists).
        zone: Option<String>,
        /// Public (routed to an internet gateway) or private.
        public: bool,
    }
}

impl SubnetArgs {
    /// A private subnet `cidr` of `vpc` in the first zone.
    pub fn new(vpc: impl Into<Input<String>>, cidr: impl Into<Input<String>>) -> Self {
        SubnetArgs {
            vpc: vpc.into(),
            cidr: cidr.into(),
            zone: Input::Value(None),
            public: Input::Value(false),
        }
    }

    /// Places it in `zone`.
    pub fn zone(mut self, zone: impl Into<Input<String>>) -> Self {
        self.zone = map_input(zone.into(), Some);
        self
    }

    /// Makes it public.
    pub fn public(mut self) -> Self {
        self.public = Input::Value(true);
        self
    }
}

/// A subnet.
#[derive(Debug, Clone)]
pub struct Subnet {
    /// Its URN.
    pub urn: String,
    /// Its id.
    pub id: Output<String>,
    /// Its zone.
    pub zone: Output<String>,
}

impl Subnet {
    /// Declares a subnet.
    pub fn new(stack: &Stack, name: &str, args: SubnetArgs) -> Result<Subnet> {
        Self::with(stack, name, args, ResourceOptions::default())
    }

    /// Declares a subnet with options.
    pub fn with(
        stack: &Stack,
        name: &str,
        args: SubnetArgs,
        opts: ResourceOptions,
    ) -> Result<Subnet> {
        let h = declare::<SubnetResource>(stack, name, &args, opts)?;
        Ok(Subnet {
            id: h.output("id"),
            zone: h.output("zone"),
            urn: h.urn().to_string(),
        })
    }
}

/// Outputs of a subnet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubnetOutputs {
    /// Its id.
    pub id: String,
    /// Its zone.
    pub zone: String,
}

/// The provider of [`Subnet`].
#[derive(Debug)]
pub struct SubnetResource;

async fn subnets_of(cx: Cx<'_>, vpc: &str) -> Result<Vec<crate::vpc::SubnetInfo>> {
    Ok(found(cx.cloud.networks()?.list_subnets(vpc).await)?.unwrap_or_default())
}

#[async_trait]
impl Resource for SubnetResource {
    const TYPE: &'static str = "mvi:vpc:Subnet";
    const REPLACE_ON: &'static [&'static str] = &["vpc", "cidr", "zone", "public"];
    type Args = SubnetSpec;
    type Outputs = SubnetOutputs;

    fn check(args: &SubnetSpec) -> Result<()> {
        let op = check_op();
        if args.vpc.is_empty() {
            return Err(op.invalid("vpc", "property \"vpc\" must name a VPC"));
        }
        Cidr::parse(op, &args.cidr)
            .map_err(|e| op.invalid("cidr", format!("property \"cidr\": {e}")))?;
        if args.zone.as_deref() == Some("") {
            return Err(op.invalid("zone", "property \"zone\" must not be empty"));
        }
        Ok(())
    }

    async fn create(cx: Cx<'_>, args: &SubnetSpec) -> Result<(String, SubnetOutputs)> {
        let net = cx.cloud.networks()?;
        let zone = match &args.zone {
            Some(z) => z.clone(),
            None => net.list_zones().await?.into_iter().next().ok_or_else(|| {
                Op::new(Service::Stack, "create").not_found(cx.urn, "the backend has no zones")
            })?,
        };
        let s = net
            .create_subnet(&args.vpc, &args.cidr, &zone, args.public)
            .await?;
        Ok((
            s.id.clone(),
            SubnetOutputs {
                id: s.id,
                zone: s.zone,
            },
        ))
    }

    async fn find(cx: Cx<'_>, args: &SubnetSpec) -> Result<Option<String>> {
        Ok(subnets_of(cx, &args.vpc)
            .await?
            .into_iter()
            .find(|s| s.cidr == args.cidr && !cx.is_taken(&s.id))
            .map(|s| s.id))
    }

    async fn read(
        cx: Cx<'_>,
        id: &str,
        args: &SubnetSpec,
    ) -> Result<Option<(SubnetSpec, SubnetOutputs)>> {
        Ok(subnets_of(cx, &args.vpc)
            .await?
            .into_iter()
            .find(|s| s.id == id)
            .map(|s| {
                (
                    SubnetSpec {
                        vpc: s.vpc.clone(),
                        cidr: s.cidr.clone(),
                        // A subnet placed in the default zone keeps "default" as its argument.
                        zone: args.zone.as_ref().map(|_| s.zone.clone()),
                        public: s.public,
                    },
                    SubnetOutputs {
                        id: s.id,
                        zone: s.zone,
                    },
                )
            }))
    }

    async fn update(
        cx: Cx<'_>,
        id: &str,
        _: &SubnetSpec,
        new: &SubnetSpec,
    ) -> Result<SubnetOutputs> {
        let zone = subnets_of(cx, &new.vpc)
            .await?
            .into_iter()
            .find(|s| s.id == id)
            .map(|s| s.zone)
            .unwrap_or_default();
        Ok(SubnetOutputs {
            id: id.to_string(),
            zone,
        })
    }

    async fn delete(cx: Cx<'_>, id: &str, _: &SubnetSpec) -> Result<()> {
        gone_ok(cx.cloud.networks()?.delete_subnet(id).await)
    }
}

// ---------------------------------------------------------------------------------------
// Security group

resource_args! {
    /// Arguments of a [`SecurityGroup`].
    pub struct SecurityGroupArgs => SecurityGroupSpec {
        /// The VPC's id.
        vpc: String,
        /// Its name, unique in the VPC.
        name: String,
        /// Its rules.
        rules: Vec<Rule>,
    }
}

impl SecurityGroupArgs {
    /// A group `name` in `vpc`, with no rules.
    pub fn new(vpc: impl Into<Input<String>>, name: impl Into<Input<String>>) -> Self {
        SecurityGroupArgs {
            vpc: vpc.into(),
            name: name.into(),
            rules: Input::Value(Vec::new()),
        }
    }

    /// Adds a rule (which may come from an output, e.g. naming another group).
    pub fn rule(mut self, rule: impl Into<Input<Rule>>) -> Self {
        self.rules = push_input(self.rules, rule.into());
        self
    }

    /// Allows incoming TCP on `from_port..=to_port` from `cidr`.
    pub fn ingress(self, from_port: u16, to_port: u16, cidr: impl Into<String>) -> Self {
        self.rule(Rule {
            direction: Direction::Ingress,
            from_port,
            to_port,
            peer: Peer::Cidr(cidr.into()),
        })
    }

    /// Allows incoming TCP on `from_port..=to_port` from members of the group `group` (an id).
    pub fn ingress_from_group(
        self,
        from_port: u16,
        to_port: u16,
        group: impl Into<Input<String>>,
    ) -> Self {
        let rule = map_input(group.into(), move |g| Rule {
            direction: Direction::Ingress,
            from_port,
            to_port,
            peer: Peer::Group(g),
        });
        self.rule(rule)
    }
}

/// A security group.
#[derive(Debug, Clone)]
pub struct SecurityGroup {
    /// Its URN.
    pub urn: String,
    /// Its id.
    pub id: Output<String>,
}

impl SecurityGroup {
    /// Declares a security group.
    pub fn new(stack: &Stack, name: &str, args: SecurityGroupArgs) -> Result<SecurityGroup> {
        Self::with(stack, name, args, ResourceOptions::default())
    }

    /// Declares a security group with options.
    pub fn with(
        stack: &Stack,
        name: &str,
        args: SecurityGroupArgs,
        opts: ResourceOptions,
    ) -> Result<SecurityGroup> {
        let h = declare::<SecurityGroupResource>(stack, name, &args, opts)?;
        Ok(SecurityGroup {
            id: h.output("id"),
            urn: h.urn().to_string(),
        })
    }
}

/// Outputs of a security group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecurityGroupOutputs {
    /// Its id.
    pub id: String,
}

/// The provider of [`SecurityGroup`].
#[derive(Debug)]
pub struct SecurityGroupResource;

fn unique(rules: &[Rule]) -> Vec<Rule> {
    let mut seen = BTreeSet::new();
    rules
        .iter()
        .filter(|r| seen.insert(format!("{r:?}")))
        .cloned()
        .collect()
}

#[async_trait]
impl Resource for SecurityGroupResource {
    const TYPE: &'static str = "mvi:vpc:SecurityGroup";
    const REPLACE_ON: &'static [&'static str] = &["vpc", "name"];
    type Args = SecurityGroupSpec;
    type Outputs = SecurityGroupOutputs;

    fn check(args: &SecurityGroupSpec) -> Result<()> {
        let op = check_op();
        if args.vpc.is_empty() {
            return Err(op.invalid("vpc", "property \"vpc\" must name a VPC"));
        }
        if args.name.is_empty() || args.name.len() > 255 {
            return Err(op.invalid(
                &args.name,
                "property \"name\" must be 1 to 255 characters long",
            ));
        }
        for (i, r) in args.rules.iter().enumerate() {
            if r.from_port > r.to_port {
                return Err(op.invalid(
                    &args.name,
                    format!(
                        "property \"rules\"[{i}]: from_port {} is above to_port {}",
                        r.from_port, r.to_port
                    ),
                ));
            }
            match &r.peer {
                Peer::Cidr(c) => {
                    Cidr::parse(op, c).map_err(|e| {
                        op.invalid(&args.name, format!("property \"rules\"[{i}]: {e}"))
                    })?;
                }
                Peer::Group(g) if g.is_empty() => {
                    return Err(op.invalid(
                        &args.name,
                        format!("property \"rules\"[{i}]: the peer group is empty"),
                    ));
                }
                Peer::Group(_) => {}
            }
        }
        Ok(())
    }

    async fn create(
        cx: Cx<'_>,
        args: &SecurityGroupSpec,
    ) -> Result<(String, SecurityGroupOutputs)> {
        let net = cx.cloud.networks()?;
        let g = net.create_security_group(&args.vpc, &args.name).await?;
        for rule in unique(&args.rules) {
            net.authorize(&g.id, rule).await?;
        }
        Ok((g.id.clone(), SecurityGroupOutputs { id: g.id }))
    }

    async fn find(cx: Cx<'_>, args: &SecurityGroupSpec) -> Result<Option<String>> {
        let groups = found(cx.cloud.networks()?.list_security_groups(&args.vpc).await)?;
        Ok(groups
            .unwrap_or_default()
            .into_iter()
            .find(|g| g.name == args.name && !cx.is_taken(&g.id))
            .map(|g| g.id))
    }

    async fn read(
        cx: Cx<'_>,
        id: &str,
        args: &SecurityGroupSpec,
    ) -> Result<Option<(SecurityGroupSpec, SecurityGroupOutputs)>> {
        let Some(g) = found(cx.cloud.networks()?.describe_security_group(id).await)? else {
            return Ok(None);
        };
        // Rules are a set: the declared order is kept when the sets agree.
        let have: BTreeSet<String> = g.rules.iter().map(|r| format!("{r:?}")).collect();
        let want: BTreeSet<String> = args.rules.iter().map(|r| format!("{r:?}")).collect();
        let rules = if have == want {
            args.rules.clone()
        } else {
            g.rules
        };
        Ok(Some((
            SecurityGroupSpec {
                vpc: g.vpc,
                name: g.name,
                rules,
            },
            SecurityGroupOutputs { id: g.id },
        )))
    }

    async fn update(
        cx: Cx<'_>,
        id: &str,
        old: &SecurityGroupSpec,
        new: &SecurityGroupSpec,
    ) -> Result<SecurityGroupOutputs> {
        let net = cx.cloud.networks()?;
        for r in unique(&old.rules) {
            if !new.rules.contains(&r) {
                gone_ok(net.revoke(id, r).await)?;
            }
        }
        for r in unique(&new.rules) {
            if !old.rules.contains(&r) {
                match net.authorize(id, r).await {
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                    other => other?,
                }
            }
        }
        Ok(SecurityGroupOutputs { id: id.to_string() })
    }

    async fn delete(cx: Cx<'_>, id: &str, _: &SecurityGroupSpec) -> Result<()> {
        gone_ok(cx.cloud.networks()?.delete_security_group(id).await)
    }
}
