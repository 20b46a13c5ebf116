//! VPC: networks, subnets and security groups (EC2 VPC on AWS, simulated address allocation
//! and rule checks locally).

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::common::Tags;
use crate::error::Result;

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
    /// Deletes a security group.
    async fn delete_security_group(&self, id: &str) -> Result<()>;
}
