//! VPC: networks, subnets and security groups (EC2 VPC on AWS, simulated address allocation
//! and rule checks locally).

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::common::Tags;
use crate::error::{Op, Result};

/// A VPC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VpcInfo {
    /// Its id.
    pub id: String,
    /// Its IPv4 CIDR block (`10.0.0.0/16`, prefix /16 to /28).
    pub cidr: String,
    /// Tags.
    pub tags: Tags,
}

/// A subnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetInfo {
    /// Its id.
    pub id: String,
    /// The VPC.
    pub vpc: String,
    /// CIDR block inside the VPC's, overlapping no other subnet.
    pub cidr: String,
    /// Availability zone.
    pub zone: String,
    /// Public (routed to an internet gateway) or private.
    pub public: bool,
}

/// Traffic direction of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Direction {
    /// Incoming.
    Ingress,
    /// Outgoing.
    Egress,
}

/// Where a rule allows traffic from or to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Peer {
    /// An IPv4 CIDR block.
    Cidr(String),
    /// Members of a security group.
    Group(String),
}

/// A security group rule: allow TCP on a port range from or to a peer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rule {
    /// Direction.
    pub direction: Direction,
    /// First port.
    pub from_port: u16,
    /// Last port.
    pub to_port: u16,
    /// Peer.
    pub peer: Peer,
}

/// A security group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroupInfo {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The VPC.
    pub vpc: String,
    /// Rules.
    pub rules: Vec<Rule>,
}

/// Networks.
#[async_trait]
pub trait Networks: fmt::Debug + Send + Sync + 'static {
    /// The availability zones subnets can be placed in.
    async fn list_zones(&self) -> Result<Vec<String>>;
    /// Creates a VPC.
    async fn create_vpc(&self, cidr: &str, tags: Tags) -> Result<VpcInfo>;
    /// Deletes an empty VPC.
    async fn delete_vpc(&self, id: &str) -> Result<()>;
    /// Every VPC.
    async fn list_vpcs(&self) -> Result<Vec<VpcInfo>>;
    /// Creates a subnet.
    async fn create_subnet(
        &self,
        vpc: &str,
        cidr: &str,
        zone: &str,
        public: bool,
    ) -> Result<SubnetInfo>;
    /// Deletes a subnet.
    async fn delete_subnet(&self, id: &str) -> Result<()>;
    /// Subnets of a VPC.
    async fn list_subnets(&self, vpc: &str) -> Result<Vec<SubnetInfo>>;
    /// Creates a security group.
    async fn create_security_group(&self, vpc: &str, name: &str) -> Result<SecurityGroupInfo>;
    /// Adds a rule.
    async fn authorize(&self, group: &str, rule: Rule) -> Result<()>;
    /// Removes a rule.
    async fn revoke(&self, group: &str, rule: Rule) -> Result<()>;
    /// Describes a security group.
    async fn describe_security_group(&self, id: &str) -> Result<SecurityGroupInfo>;
    /// Security groups of a VPC.
    async fn list_security_groups(&self, vpc: &str) -> Result<Vec<SecurityGroupInfo>>;
    /// Deletes a security group.
    async fn delete_security_group(&self, id: &str) -> Result<()>;
}

/// An IPv4 CIDR block (`10.0.0.0/16`), parsed and checked: the address has no bits set past
/// the prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    /// The network address.
    pub addr: std::net::Ipv4Addr,
    /// The prefix length, 0–32.
    pub prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n`. Errors name the block and say what is wrong.
    pub fn parse(op: Op, s: &str) -> Result<Cidr> {
        let bad = |why: &str| op.invalid(s, format!("invalid CIDR block: {why}"));
        let (addr, prefix) = s.split_once('/').ok_or_else(|| bad("expected a.b.c.d/n"))?;
        let addr: std::net::Ipv4Addr = addr.parse().map_err(|_| bad("the address is not IPv4"))?;
        // As EC2: plain decimal, no sign and no leading zero (`/016` is not `/16`).
        let canonical = !prefix.is_empty()
            && prefix.bytes().all(|b| b.is_ascii_digit())
            && (prefix == "0" || !prefix.starts_with('0'));
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 32 && canonical)
            .ok_or_else(|| {
                bad("the prefix length must be 0 to 32, written without leading zeros")
            })?;
        let cidr = Cidr { addr, prefix };
        if u32::from(addr) & !cidr.mask() != 0 {
            return Err(bad(&format!(
                "the address has host bits set; did you mean {}/{prefix}?",
                std::net::Ipv4Addr::from(u32::from(addr) & cidr.mask())
            )));
        }
        Ok(cidr)
    }

    /// The netmask as a number.
    pub fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        }
    }

    /// The first and last address, as numbers.
    pub fn range(&self) -> (u32, u32) {
        let first = u32::from(self.addr);
        (first, first | !self.mask())
    }

    /// Number of addresses.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    /// Whether `other` lies wholly inside this block.
    pub fn contains(&self, other: &Cidr) -> bool {
        let (a, b) = self.range();
        let (c, d) = other.range();
        a <= c && d <= b
    }

    /// Whether the address lies inside this block.
    pub fn contains_addr(&self, addr: std::net::Ipv4Addr) -> bool {
        let (a, b) = self.range();
        (a..=b).contains(&u32::from(addr))
    }

    /// Whether the two blocks share any address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        let (a, b) = self.range();
        let (c, d) = other.range();
        a <= d && c <= b
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Service;

    #[test]
    fn prefixes_and_addresses_are_written_as_ec2_writes_them() {
        let op = Op::new(crate::error::Service::Vpc, "create_vpc");
        for bad in [
            "10.0.0.0/016",
            "10.0.0.0/+16",
            "10.0.0.0/",
            "10.0.0.0/33",
            "010.0.0.0/16",
            "10.0.0.0/1 6",
        ] {
            assert!(Cidr::parse(op, bad).is_err(), "{bad} accepted");
        }
        assert_eq!(
            Cidr::parse(op, "10.0.0.0/16").map(|c| c.prefix).ok(),
            Some(16)
        );
        assert_eq!(Cidr::parse(op, "0.0.0.0/0").map(|c| c.prefix).ok(), Some(0));
    }

    #[test]
    fn cidr_math() {
        let op = Op::new(Service::Vpc, "create_subnet");
        let vpc = Cidr::parse(op, "10.0.0.0/16").unwrap_or_else(|e| panic!("{e}"));
        let a = Cidr::parse(op, "10.0.1.0/24").unwrap_or_else(|e| panic!("{e}"));
        let b = Cidr::parse(op, "10.0.1.128/25").unwrap_or_else(|e| panic!("{e}"));
        let c = Cidr::parse(op, "10.1.0.0/24").unwrap_or_else(|e| panic!("{e}"));
        assert!(vpc.contains(&a) && a.overlaps(&b) && !vpc.contains(&c) && !a.overlaps(&c));
        assert_eq!(a.size(), 256);
        for bad in [
            "10.0.0.1/16",
            "10.0.0.0",
            "10.0.0.0/33",
            "300.0.0.0/8",
            "::1/128",
        ] {
            assert!(Cidr::parse(op, bad).is_err(), "{bad}");
        }
    }
}
