//! VM on Amazon EC2: one EC2 instance per VM.
//!
//! Mapping:
//! - id: the instance id (`i-…`); name: the instance's `Name` tag (a `Name` entry in the tags
//!   is overridden by the name); tags: the instance's other tags.
//! - size: the EC2 instance type itself (`t3.micro`, `m5.large`, `m7g.medium`, …). Any type
//!   EC2 offers is accepted; vCPUs and memory come from `DescribeInstanceTypes` (kept per type
//!   for the handle's life), and a type EC2 does not know is InvalidArgument naming it. (The
//!   local simulator knows a table of common x86 types, with the same figures.)
//! - image: an AMI id (`ami-…`), used as given; `resolve:ssm:<parameter>`, which EC2 resolves
//!   at launch (e.g. `resolve:ssm:/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64`);
//!   or `amazon-linux` (also `al2023`), resolved here with `DescribeImages` to the newest
//!   available Amazon Linux 2023 AMI owned by Amazon for the size's architecture (x86_64, else
//!   arm64 for Graviton types). When the image given is not the AMI id itself, it is kept in
//!   the `mvi:image` tag so that a VM reads back as it was defined. Other images are refused.
//! - subnet and security groups: EC2's. Groups must exist and be in the subnet's VPC. With no
//!   group given, EC2 puts the instance in its VPC's `default` group, and the VM reads back
//!   with that group.
//! - user data: sent base64-encoded, at most 16 KiB (as EC2 and the local backend), and read
//!   back with `DescribeInstanceAttribute`.
//! - state: EC2's, with `shutting-down` read as `Terminated` (the instance is on its way
//!   there and cannot come back). Listing leaves terminated and shutting-down instances out.
//!
//! Starting a VM that is still stopping waits until it has stopped, and stopping one that is
//! still pending waits until it runs, as EC2 refuses both in between (the local backend's VMs
//! change state at once).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::poll::Backoff;
use async_trait::async_trait;
use aws_sdk_ec2::Client;
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{
    ArchitectureType, Image, Instance, InstanceAttributeName, InstanceStateName, InstanceType,
    ResourceType,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, TryStreamExt};
use mvi_core::vm::{VmInfo, VmSpec, VmState, Vms};
use mvi_core::{ErrorKind, Op, Result, Service, Tags, Timestamp};

use crate::error::map;
use crate::vpc::{filter, has_code, is_ec2_id, tag_spec, tags_of};

const fn op(name: &'static str) -> Op {
    Op::new(Service::Vm, name)
}

/// The tag holding the image a VM was defined with, when that is not the AMI id.
const IMAGE_TAG: &str = "mvi:image";
/// The tag holding a VM's name.
const NAME_TAG: &str = "Name";
/// The images resolved to the newest Amazon Linux 2023 AMI.
const AMAZON_LINUX: &[&str] = &["amazon-linux", "al2023"];
/// The name pattern of Amazon Linux 2023 standard AMIs (not `minimal`, not ECS-optimized).
const AMAZON_LINUX_NAMES: &str = "al2023-ami-2023.*";
/// EC2's limit on user data (before base64), which the local backend applies too.
const MAX_USER_DATA: usize = 16 * 1024;
/// How long start and stop wait for a VM between states.
const STATE_WAIT: Duration = Duration::from_secs(600);

/// What mvi needs of an instance type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TypeInfo {
    vcpus: u32,
    memory_mib: u32,
    /// The architecture its AMIs must have: `x86_64`, or `arm64` for Graviton types.
    arch: &'static str,
}

/// The VM service on Amazon EC2 (or an EC2-compatible endpoint).
#[derive(Debug)]
pub struct Ec2Vms {
    client: Client,
    types: Mutex<HashMap<String, TypeInfo>>,
}

impl Ec2Vms {
    /// The VM service with an EC2 client built from `config`.
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        Ec2Vms {
            client: Client::new(config),
            types: Mutex::new(HashMap::new()),
        }
    }

    fn cached_type(&self, size: &str) -> Option<TypeInfo> {
        // A poisoned lock only means another thread panicked while inserting; the map of
        // plain values is still usable.
        self.types
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(size)
            .copied()
    }

    /// The vCPUs, memory and architecture of an instance type; InvalidArgument naming it if
    /// EC2 has no such type.
    async fn instance_type(&self, op: Op, size: &str) -> Result<TypeInfo> {
        if let Some(t) = self.cached_type(size) {
            return Ok(t);
        }
        let unknown = || {
            op.invalid(
                size,
                "unknown instance type; use an EC2 instance type such as t3.micro or m5.large",
            )
        };
        // An instance type is a family and a size (`t3.micro`); anything else is refused
        // without asking.
        let well_formed = size.split_once('.').is_some_and(|(family, rest)| {
            !family.is_empty()
                && !rest.is_empty()
                && size
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        });
        if !well_formed {
            return Err(unknown());
        }
        let out = match self
            .client
            .describe_instance_types()
            .instance_types(InstanceType::from(size))
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if has_code(&e, "InvalidInstanceType") => return Err(unknown()),
            Err(e) => {
                let err = map(op, size, e);
                return Err(match err.kind() {
                    ErrorKind::InvalidArgument | ErrorKind::NotFound => unknown(),
                    _ => err,
                });
            }
        };
        let info = out
            .instance_types()
            .iter()
            .find(|t| t.instance_type().map(InstanceType::as_str) == Some(size))
            .ok_or_else(unknown)?;
        let archs = info
            .processor_info()
            .map(|p| p.supported_architectures())
            .unwrap_or_default();
        let t = TypeInfo {
            vcpus: info
                .v_cpu_info()
                .and_then(|v| v.default_v_cpus())
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(0),
            memory_mib: info
                .memory_info()
                .and_then(|m| m.size_in_mib())
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(0),
            arch: if !archs.contains(&ArchitectureType::X8664)
                && archs.contains(&ArchitectureType::Arm64)
            {
                "arm64"
            } else {
                "x86_64"
            },
        };
        self.types
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(size.to_owned(), t);
        Ok(t)
    }

    /// The image id to launch for `image` on a type of architecture `arch`.
    async fn image_id(&self, op: Op, image: &str, arch: &str) -> Result<String> {
        if image.starts_with("ami-") || image.starts_with("resolve:ssm:") {
            return Ok(image.to_owned());
        }
        if !AMAZON_LINUX.contains(&image) {
            return Err(op.invalid(
                image,
                "unknown image; use an AMI id (ami-…), resolve:ssm:<parameter>, or amazon-linux \
                 (the newest Amazon Linux 2023)",
            ));
        }
        let pages = self
            .client
            .describe_images()
            .owners("amazon")
            .filters(filter("name", &[AMAZON_LINUX_NAMES]))
            .filters(filter("architecture", &[arch]))
            .filters(filter("state", &["available"]))
            .into_paginator()
            .send()
            .try_collect()
            .await
            .map_err(|e| map(op, image, e))?;
        let images: Vec<Image> = pages
            .iter()
            .flat_map(|p| p.images().iter().cloned())
            .collect();
        newest(&images).map(str::to_owned).ok_or_else(|| {
            op.err(
                ErrorKind::NotFound,
                image,
                format!("no Amazon Linux 2023 AMI for {arch} in this region"),
            )
        })
    }

    /// The instance `id` as EC2 describes it, or NotFound.
    async fn instance(&self, op: Op, id: &str) -> Result<Instance> {
        if !is_ec2_id("i", id) {
            return Err(op.not_found(id, "no such VM"));
        }
        let out = self
            .client
            .describe_instances()
            .instance_ids(id)
            .send()
            .await
            .map_err(|e| map(op, id, e))?;
        out.reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find(|i| i.instance_id() == Some(id))
            .cloned()
            .ok_or_else(|| op.not_found(id, "no such VM"))
    }

    /// The user data of instance `id`, decoded.
    async fn user_data(&self, op: Op, id: &str) -> Result<Option<String>> {
        let out = self
            .client
            .describe_instance_attribute()
            .instance_id(id)
            .attribute(InstanceAttributeName::UserData)
            .send()
            .await
            .map_err(|e| map(op, id, e))?;
        let Some(encoded) = out.user_data().and_then(|u| u.value()) else {
            return Ok(None);
        };
        if encoded.is_empty() {
            return Ok(None);
        }
        let bytes = STANDARD
            .decode(encoded)
            .map_err(|e| op.internal(id, format!("user data is not base64: {e}")))?;
        Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// An instance as an mvi VM, with its user data and its type's figures.
    async fn info(&self, op: Op, i: &Instance) -> Result<VmInfo> {
        let id = i.instance_id().unwrap_or_default();
        let state = state_of(i);
        let user_data = match self.user_data(op, id).await {
            Ok(u) => u,
            // A terminated instance may be past describing its attributes.
            Err(_) if state == VmState::Terminated => None,
            Err(e) => return Err(e),
        };
        let size = i
            .instance_type()
            .map(InstanceType::as_str)
            .unwrap_or_default();
        let t = self.instance_type(op, size).await?;
        Ok(vm_info(i, state, user_data, t))
    }

    /// Describes `id` again until it has left state `from` (EC2 refuses some changes while
    /// a VM is between states), or the wait runs out.
    async fn wait_while(&self, op: Op, id: &str, from: VmState) -> Result<Instance> {
        // A steady look every 2 s: EC2's state changes take tens of seconds.
        let every = Duration::from_secs(2);
        let mut poll = Backoff::new(every, every, STATE_WAIT);
        loop {
            let i = self.instance(op, id).await?;
            if state_of(&i) != from {
                return Ok(i);
            }
            if poll.expired() {
                return Err(op.err(
                    ErrorKind::Timeout,
                    id,
                    format!("the VM stayed {from:?} for {} s", STATE_WAIT.as_secs()),
                ));
            }
            poll.wait().await;
        }
    }
}

/// The newest image by creation date (then by name, which carries the release date).
fn newest(images: &[Image]) -> Option<&str> {
    images
        .iter()
        .filter(|i| i.image_id().is_some())
        .max_by(|a, b| (a.creation_date(), a.name()).cmp(&(b.creation_date(), b.name())))
        .and_then(|i| i.image_id())
}

fn state_of(i: &Instance) -> VmState {
    match i.state().and_then(|s| s.name()) {
        Some(InstanceStateName::Pending) => VmState::Pending,
        Some(InstanceStateName::Running) => VmState::Running,
        Some(InstanceStateName::Stopping) => VmState::Stopping,
        Some(InstanceStateName::Stopped) => VmState::Stopped,
        Some(InstanceStateName::ShuttingDown | InstanceStateName::Terminated) => {
            VmState::Terminated
        }
        // A state this SDK does not know yet: report what is least likely to mislead.
        _ => VmState::Pending,
    }
}

fn time(t: Option<&aws_smithy_types::DateTime>) -> Timestamp {
    t.and_then(|t| chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
        .unwrap_or_default()
}

fn vm_info(i: &Instance, state: VmState, user_data: Option<String>, t: TypeInfo) -> VmInfo {
    let mut tags = tags_of(i.tags());
    let name = tags.remove(NAME_TAG).unwrap_or_default();
    let image = tags
        .remove(IMAGE_TAG)
        .unwrap_or_else(|| i.image_id().unwrap_or_default().to_owned());
    let mut spec = VmSpec::new(
        name,
        i.instance_type()
            .map(InstanceType::as_str)
            .unwrap_or_default(),
        image,
        i.subnet_id().unwrap_or_default(),
    );
    spec.security_groups = i
        .security_groups()
        .iter()
        .filter_map(|g| g.group_id().map(str::to_owned))
        .collect();
    spec.user_data = user_data;
    spec.tags = tags;
    VmInfo {
        id: i.instance_id().unwrap_or_default().to_owned(),
        spec,
        state,
        zone: i
            .placement()
            .and_then(|p| p.availability_zone())
            .unwrap_or_default()
            .to_owned(),
        vcpus: t.vcpus,
        memory_mib: t.memory_mib,
        private_ip: i.private_ip_address().unwrap_or_default().to_owned(),
        launched: time(i.launch_time()),
    }
}

#[async_trait]
impl Vms for Ec2Vms {
    async fn run_instance(&self, spec: VmSpec) -> Result<VmInfo> {
        let op = op("run_instance");
        mvi_core::vm::validate_name(op, &spec.name)?;
        let t = self.instance_type(op, &spec.size).await?;
        if !is_ec2_id("subnet", &spec.subnet) {
            return Err(op.not_found(&spec.subnet, "no such subnet"));
        }
        let subnets = self
            .client
            .describe_subnets()
            .subnet_ids(&spec.subnet)
            .send()
            .await
            .map_err(|e| map(op, &spec.subnet, e))?;
        let subnet = subnets
            .subnets()
            .iter()
            .find(|s| s.subnet_id() == Some(spec.subnet.as_str()))
            .ok_or_else(|| op.not_found(&spec.subnet, "no such subnet"))?;
        let vpc = subnet.vpc_id().unwrap_or_default();
        if let Some(g) = spec.security_groups.iter().find(|g| !is_ec2_id("sg", g)) {
            return Err(op.not_found(g.as_str(), "no such security group"));
        }
        if !spec.security_groups.is_empty() {
            let groups = self
                .client
                .describe_security_groups()
                .set_group_ids(Some(spec.security_groups.clone()))
                .send()
                .await
                .map_err(|e| map(op, spec.security_groups.join(","), e))?;
            for g in &spec.security_groups {
                let group = groups
                    .security_groups()
                    .iter()
                    .find(|x| x.group_id() == Some(g.as_str()))
                    .ok_or_else(|| op.not_found(g.as_str(), "no such security group"))?;
                if group.vpc_id() != Some(vpc) {
                    return Err(op.invalid(
                        g.as_str(),
                        format!("the security group is not in the subnet's VPC {vpc}"),
                    ));
                }
            }
        }
        if spec
            .user_data
            .as_ref()
            .is_some_and(|u| u.len() > MAX_USER_DATA)
        {
            return Err(op.invalid(&spec.name, "user data is limited to 16 KiB (as EC2)"));
        }
        let image_id = self.image_id(op, &spec.image, t.arch).await?;

        let mut tags: Tags = spec.tags.clone();
        tags.insert(NAME_TAG.to_owned(), spec.name.clone());
        if !spec.image.starts_with("ami-") {
            tags.insert(IMAGE_TAG.to_owned(), spec.image.clone());
        }
        let out = self
            .client
            .run_instances()
            .image_id(&image_id)
            .instance_type(InstanceType::from(spec.size.as_str()))
            .min_count(1)
            .max_count(1)
            .subnet_id(&spec.subnet)
            .set_security_group_ids(
                (!spec.security_groups.is_empty()).then(|| spec.security_groups.clone()),
            )
            .set_user_data(spec.user_data.as_ref().map(|u| STANDARD.encode(u)))
            .set_tag_specifications(
                tag_spec(
                    ResourceType::Instance,
                    tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                )
                .map(|t| vec![t]),
            )
            .send()
            .await
            .map_err(|e| {
                // An AMI that does not exist (or is malformed) is the image's fault: name it.
                let about_image = e
                    .as_service_error()
                    .and_then(|s| s.code())
                    .is_some_and(|c| c.starts_with("InvalidAMIID"));
                map(op, if about_image { &spec.image } else { &spec.name }, e)
            })?;
        let instance = out
            .instances()
            .first()
            .ok_or_else(|| op.internal(&spec.name, "RunInstances answered no instance"))?;
        let mut info = vm_info(instance, state_of(instance), spec.user_data.clone(), t);
        // The launch answer may leave out the tags and groups; they are as asked.
        let mut given = spec.tags.clone();
        given.remove(NAME_TAG);
        info.spec.name = spec.name.clone();
        info.spec.image = spec.image.clone();
        info.spec.tags = given;
        if info.spec.security_groups.is_empty() {
            info.spec.security_groups = spec.security_groups.clone();
        }
        Ok(info)
    }

    async fn describe_instance(&self, id: &str) -> Result<VmInfo> {
        let op = op("describe_instance");
        let i = self.instance(op, id).await?;
        self.info(op, &i).await
    }

    async fn list_instances(&self) -> Result<Vec<VmInfo>> {
        let op = op("list_instances");
        let pages = self
            .client
            .describe_instances()
            .filters(filter(
                "instance-state-name",
                &["pending", "running", "stopping", "stopped"],
            ))
            .into_paginator()
            .send()
            .try_collect()
            .await
            .map_err(|e| map(op, "instances", e))?;
        let instances: Vec<Instance> = pages
            .iter()
            .flat_map(|p| p.reservations())
            .flat_map(|r| r.instances().iter().cloned())
            .collect();
        // One user data request per instance: a few at a time. (Boxed as `dyn Future + Send`
        // so the stream's future is provably Send for `async_trait`.)
        let lookups: Vec<BoxFuture<'_, Result<VmInfo>>> =
            instances.iter().map(|i| self.info(op, i).boxed()).collect();
        futures::stream::iter(lookups)
            .buffered(8)
            .try_collect()
            .await
    }

    async fn start_instance(&self, id: &str) -> Result<VmInfo> {
        let op = op("start_instance");
        let mut i = self.instance(op, id).await?;
        match state_of(&i) {
            VmState::Terminated => return Err(op.precondition(id, "a terminated VM cannot start")),
            VmState::Running | VmState::Pending => return self.info(op, &i).await,
            VmState::Stopping => i = self.wait_while(op, id, VmState::Stopping).await?,
            VmState::Stopped => {}
        }
        if state_of(&i) == VmState::Stopped {
            self.client
                .start_instances()
                .instance_ids(id)
                .send()
                .await
                .map_err(|e| map(op, id, e))?;
            i = self.instance(op, id).await?;
        }
        self.info(op, &i).await
    }

    async fn stop_instance(&self, id: &str) -> Result<VmInfo> {
        let op = op("stop_instance");
        let mut i = self.instance(op, id).await?;
        match state_of(&i) {
            VmState::Terminated => return Err(op.precondition(id, "a terminated VM cannot stop")),
            VmState::Stopped | VmState::Stopping => return self.info(op, &i).await,
            VmState::Pending => i = self.wait_while(op, id, VmState::Pending).await?,
            VmState::Running => {}
        }
        if state_of(&i) == VmState::Running {
            self.client
                .stop_instances()
                .instance_ids(id)
                .send()
                .await
                .map_err(|e| map(op, id, e))?;
            i = self.instance(op, id).await?;
        }
        self.info(op, &i).await
    }

    async fn terminate_instance(&self, id: &str) -> Result<()> {
        let op = op("terminate_instance");
        if !is_ec2_id("i", id) {
            return Err(op.not_found(id, "no such VM"));
        }
        self.client
            .terminate_instances()
            .instance_ids(id)
            .send()
            .await
            .map_err(|e| map(op, id, e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::types::{InstanceState, Tag};

    #[test]
    fn newest_image_wins() {
        let image = |id: &str, date: &str, name: &str| {
            Image::builder()
                .image_id(id)
                .creation_date(date)
                .name(name)
                .build()
        };
        let images = [
            image(
                "ami-1",
                "2025-01-01T00:00:00.000Z",
                "al2023-ami-2023.6.20250101.0-kernel-6.1-x86_64",
            ),
            image(
                "ami-2",
                "2025-06-01T00:00:00.000Z",
                "al2023-ami-2023.7.20250601.0-kernel-6.1-x86_64",
            ),
            image(
                "ami-3",
                "2025-03-01T00:00:00.000Z",
                "al2023-ami-2023.6.20250301.0-kernel-6.1-x86_64",
            ),
        ];
        assert_eq!(newest(&images), Some("ami-2"));
        assert_eq!(newest(&[]), None);
    }

    #[test]
    fn instances_read_back_as_defined() {
        let i = Instance::builder()
            .instance_id("i-1")
            .image_id("ami-9")
            .instance_type(InstanceType::T3Micro)
            .subnet_id("subnet-1")
            .private_ip_address("10.0.0.5")
            .state(
                InstanceState::builder()
                    .name(InstanceStateName::ShuttingDown)
                    .build(),
            )
            .tags(Tag::builder().key("Name").value("web").build())
            .tags(Tag::builder().key(IMAGE_TAG).value("amazon-linux").build())
            .tags(Tag::builder().key("team").value("pay").build())
            .build();
        let t = TypeInfo {
            vcpus: 2,
            memory_mib: 1024,
            arch: "x86_64",
        };
        let vm = vm_info(&i, state_of(&i), None, t);
        assert_eq!(vm.state, VmState::Terminated);
        assert_eq!(vm.spec.name, "web");
        assert_eq!(vm.spec.image, "amazon-linux");
        assert_eq!(vm.spec.size, "t3.micro");
        assert_eq!(vm.spec.tags, Tags::from([("team".into(), "pay".into())]));
    }
}
