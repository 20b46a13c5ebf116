//! VM resources: virtual machines.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{
    Input, Output, URN_TAG, declare, found, gone_ok, insert_input, map_input, push_input,
    resource_args,
};
use crate::common::Tags;
use crate::error::{ErrorKind, Op, Result, Service};
use crate::stack::{Cx, Resource, ResourceOptions, Stack};
use crate::vm::{VmInfo, VmSpec, VmState};

resource_args! {
    /// Arguments of a [`Vm`].
    pub struct VmArgs => VmSpecArgs {
        /// Its name (a `Name` tag on EC2).
        name: String,
        /// Its size (`t3.small`).
        size: String,
        /// Its machine image.
        image: String,
        /// The subnet's id (which fixes the zone).
        subnet: String,
        /// Security group ids.
        security_groups: Vec<String>,
        /// User data run at first boot.
        user_data: Option<String>,
        /// Tags (the stack adds `mvi:urn`).
        tags: Tags,
    }
}

impl VmArgs {
    /// A VM `name` of `size` from `image` in `subnet`.
    pub fn new(
        name: impl Into<Input<String>>,
        size: impl Into<Input<String>>,
        image: impl Into<Input<String>>,
        subnet: impl Into<Input<String>>,
    ) -> Self {
        VmArgs {
            name: name.into(),
            size: size.into(),
            image: image.into(),
            subnet: subnet.into(),
            security_groups: Input::Value(Vec::new()),
            user_data: Input::Value(None),
            tags: Input::Value(Tags::new()),
        }
    }

    /// Adds a security group (an id).
    pub fn security_group(mut self, id: impl Into<Input<String>>) -> Self {
        self.security_groups = push_input(self.security_groups, id.into());
        self
    }

    /// Sets the user data.
    pub fn user_data(mut self, data: impl Into<Input<String>>) -> Self {
        self.user_data = map_input(data.into(), Some);
        self
    }

    /// Adds a tag.
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<Input<String>>) -> Self {
        self.tags = insert_input(self.tags, key, value.into());
        self
    }
}

/// A VM.
#[derive(Debug, Clone)]
pub struct Vm {
    /// Its URN.
    pub urn: String,
    /// Its id.
    pub id: Output<String>,
    /// Its private IP address.
    pub private_ip: Output<String>,
    /// Its zone.
    pub zone: Output<String>,
}

impl Vm {
    /// Declares a VM.
    pub fn new(stack: &Stack, name: &str, args: VmArgs) -> Result<Vm> {
        Self::with(stack, name, args, ResourceOptions::default())
    }

    /// Declares a VM with options.
    pub fn with(stack: &Stack, name: &str, args: VmArgs, opts: ResourceOptions) -> Result<Vm> {
        let h = declare::<VmResource>(stack, name, &args, opts)?;
        Ok(Vm {
            id: h.output("id"),
            private_ip: h.output("private_ip"),
            zone: h.output("zone"),
            urn: h.urn().to_string(),
        })
    }
}

/// Outputs of a VM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmOutputs {
    /// Its id.
    pub id: String,
    /// Its private IP address.
    pub private_ip: String,
    /// Its zone.
    pub zone: String,
}

fn outputs(vm: &VmInfo) -> VmOutputs {
    VmOutputs {
        id: vm.id.clone(),
        private_ip: vm.private_ip.clone(),
        zone: vm.zone.clone(),
    }
}

/// The provider of [`Vm`].
#[derive(Debug)]
pub struct VmResource;

#[async_trait]
impl Resource for VmResource {
    const TYPE: &'static str = "mvi:vm:Vm";
    // The service changes nothing of a running VM but its state.
    const REPLACE_ON: &'static [&'static str] = &[
        "name",
        "size",
        "image",
        "subnet",
        "security_groups",
        "user_data",
        "tags",
    ];
    const FIXED_NAME: bool = false;
    type Args = VmSpecArgs;
    type Outputs = VmOutputs;

    fn check(args: &VmSpecArgs) -> Result<()> {
        let op = Op::new(Service::Stack, "check");
        for (prop, v) in [
            ("name", &args.name),
            ("size", &args.size),
            ("image", &args.image),
            ("subnet", &args.subnet),
        ] {
            if v.is_empty() {
                return Err(op.invalid(&args.name, format!("property {prop:?} must not be empty")));
            }
        }
        if args.security_groups.iter().any(String::is_empty) {
            return Err(op.invalid(&args.name, "property \"security_groups\" holds an empty id"));
        }
        if args.tags.contains_key(URN_TAG) {
            return Err(op.invalid(
                &args.name,
                "property \"tags\": the tag mvi:urn is reserved (the stack sets it)",
            ));
        }
        Ok(())
    }

    async fn create(cx: Cx<'_>, args: &VmSpecArgs) -> Result<(String, VmOutputs)> {
        let mut spec = VmSpec::new(&args.name, &args.size, &args.image, &args.subnet);
        spec.security_groups = args.security_groups.clone();
        spec.user_data = args.user_data.clone();
        spec.tags = args.tags.clone();
        spec.tags.insert(URN_TAG.into(), cx.urn.into());
        let vm = cx.cloud.vms()?.run_instance(spec).await?;
        Ok((vm.id.clone(), outputs(&vm)))
    }

    async fn find(cx: Cx<'_>, _: &VmSpecArgs) -> Result<Option<String>> {
        let vms = cx.cloud.vms()?.list_instances().await?;
        Ok(vms
            .into_iter()
            .find(|v| {
                v.state != VmState::Terminated
                    && v.spec.tags.get(URN_TAG).map(String::as_str) == Some(cx.urn)
                    && !cx.is_taken(&v.id)
            })
            .map(|v| v.id))
    }

    async fn read(cx: Cx<'_>, id: &str, _: &VmSpecArgs) -> Result<Option<(VmSpecArgs, VmOutputs)>> {
        let Some(vm) = found(cx.cloud.vms()?.describe_instance(id).await)? else {
            return Ok(None);
        };
        if vm.state == VmState::Terminated {
            return Ok(None);
        }
        let mut tags = vm.spec.tags.clone();
        tags.remove(URN_TAG);
        let out = outputs(&vm);
        let s = vm.spec;
        Ok(Some((
            VmSpecArgs {
                name: s.name,
                size: s.size,
                image: s.image,
                subnet: s.subnet,
                security_groups: s.security_groups,
                user_data: s.user_data,
                tags,
            },
            out,
        )))
    }

    async fn update(cx: Cx<'_>, id: &str, _: &VmSpecArgs, _: &VmSpecArgs) -> Result<VmOutputs> {
        // Every argument replaces the VM; nothing to change in place.
        Ok(outputs(&cx.cloud.vms()?.describe_instance(id).await?))
    }

    async fn delete(cx: Cx<'_>, id: &str, _: &VmSpecArgs) -> Result<()> {
        match cx.cloud.vms()?.terminate_instance(id).await {
            // Already terminated.
            Err(e) if e.kind() == ErrorKind::PreconditionFailed => Ok(()),
            other => gone_ok(other),
        }
    }
}
