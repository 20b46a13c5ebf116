//! VM: virtual machines (EC2 on AWS, simulated hosts with capacity and a zone locally).

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::common::{Tags, Timestamp};
use crate::error::{Op, Result};

/// The longest VM name: EC2 keeps it as the `Name` tag, whose values are at most 256
/// characters.
pub const MAX_NAME: usize = 256;

/// Checks a VM name: 1 to [`MAX_NAME`] characters, no control characters (EC2's rule for
/// the `Name` tag it is kept in; both backends apply it).
pub fn validate_name(op: Op, name: &str) -> Result<()> {
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_NAME || name.chars().any(char::is_control) {
        return Err(op.invalid(
            name,
            format!("a VM name is 1 to {MAX_NAME} characters, without control characters ({chars} given)"),
        ));
    }
    Ok(())
}

/// A VM's definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct VmSpec {
    /// Name (a `Name` tag on EC2).
    pub name: String,
    /// Size (`t3.small`): gives vCPU and memory.
    pub size: String,
    /// Machine image (an AMI id on AWS; free-form locally).
    pub image: String,
    /// Subnet, which fixes the zone.
    pub subnet: String,
    /// Security groups.
    pub security_groups: Vec<String>,
    /// User data run at first boot.
    pub user_data: Option<String>,
    /// Tags.
    pub tags: Tags,
}

impl VmSpec {
    /// A VM named `name` of instance type `size` from `image` in `subnet`.
    pub fn new(
        name: impl Into<String>,
        size: impl Into<String>,
        image: impl Into<String>,
        subnet: impl Into<String>,
    ) -> Self {
        VmSpec {
            name: name.into(),
            size: size.into(),
            image: image.into(),
            subnet: subnet.into(),
            security_groups: Vec::new(),
            user_data: None,
            tags: Tags::new(),
        }
    }
}

/// A VM's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum VmState {
    /// Starting.
    Pending,
    /// Running.
    Running,
    /// Stopping.
    Stopping,
    /// Stopped.
    Stopped,
    /// Terminated.
    Terminated,
}

/// A VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmInfo {
    /// Its id.
    pub id: String,
    /// Its definition.
    pub spec: VmSpec,
    /// State.
    pub state: VmState,
    /// Availability zone.
    pub zone: String,
    /// vCPUs.
    pub vcpus: u32,
    /// Memory, MiB.
    pub memory_mib: u32,
    /// Private IP address.
    pub private_ip: String,
    /// When it was launched.
    pub launched: Timestamp,
}

/// Virtual machines.
#[async_trait]
pub trait Vms: fmt::Debug + Send + Sync + 'static {
    /// Launches a VM.
    async fn run_instance(&self, spec: VmSpec) -> Result<VmInfo>;
    /// Describes a VM.
    async fn describe_instance(&self, id: &str) -> Result<VmInfo>;
    /// Every VM not terminated.
    async fn list_instances(&self) -> Result<Vec<VmInfo>>;
    /// Starts a stopped VM.
    async fn start_instance(&self, id: &str) -> Result<VmInfo>;
    /// Stops a running VM.
    async fn stop_instance(&self, id: &str) -> Result<VmInfo>;
    /// Terminates a VM.
    async fn terminate_instance(&self, id: &str) -> Result<()>;
}
