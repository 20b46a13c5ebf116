//! Blob resources: buckets.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{Input, Output, declare, resource_args};
use crate::blob::{BlobExt, validate_bucket_name};
use crate::error::{ErrorKind, Op, Result, Service};
use crate::stack::{Cx, Resource, ResourceOptions, Stack};

resource_args! {
    /// Arguments of a [`Bucket`].
    pub struct BucketArgs => BucketSpec {
        /// The bucket's name (S3 rules).
        name: String,
        /// On delete, delete the objects first (else a bucket holding objects is refused).
        force_destroy: bool,
    }
}

impl BucketArgs {
    /// A bucket named `name`.
    pub fn new(name: impl Into<Input<String>>) -> Self {
        BucketArgs {
            name: name.into(),
            force_destroy: Input::Value(false),
        }
    }

    /// Deletes the objects when the bucket is deleted.
    pub fn force_destroy(mut self) -> Self {
        self.force_destroy = Input::Value(true);
        self
    }
}

/// A bucket.
#[derive(Debug, Clone)]
pub struct Bucket {
    /// Its URN.
    pub urn: String,
    /// Its name.
    pub name: Output<String>,
}

impl Bucket {
    /// A grant of reading its objects (`s3:GetObject`, `s3:ListBucket`), for [`ContainerServiceArgs::grant`](super::ContainerServiceArgs::grant).
    pub fn grant_read(&self) -> Output<crate::access::Grant> {
        self.name.map(crate::access::Grant::bucket_read)
    }

    /// A grant of reading and writing its objects, for [`ContainerServiceArgs::grant`](super::ContainerServiceArgs::grant).
    pub fn grant_read_write(&self) -> Output<crate::access::Grant> {
        self.name.map(crate::access::Grant::bucket_read_write)
    }

    /// Declares a bucket.
    pub fn new(stack: &Stack, name: &str, args: BucketArgs) -> Result<Bucket> {
        Self::with(stack, name, args, ResourceOptions::default())
    }

    /// Declares a bucket with options.
    pub fn with(
        stack: &Stack,
        name: &str,
        args: BucketArgs,
        opts: ResourceOptions,
    ) -> Result<Bucket> {
        let h = declare::<BucketResource>(stack, name, &args, opts)?;
        Ok(Bucket {
            name: h.output("name"),
            urn: h.urn().to_string(),
        })
    }
}

/// Outputs of a bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BucketOutputs {
    /// Its name.
    pub name: String,
}

/// The provider of [`Bucket`].
#[derive(Debug)]
pub struct BucketResource;

async fn exists(cx: Cx<'_>, name: &str) -> Result<bool> {
    Ok(cx
        .cloud
        .blob()?
        .list_buckets()
        .await?
        .iter()
        .any(|b| b.name == name))
}

#[async_trait]
impl Resource for BucketResource {
    const TYPE: &'static str = "mvi:blob:Bucket";
    const ECHOED_OUTPUTS: &'static [&'static str] = &["name"];
    const REPLACE_ON: &'static [&'static str] = &["name"];
    type Args = BucketSpec;
    type Outputs = BucketOutputs;

    fn check(args: &BucketSpec) -> Result<()> {
        validate_bucket_name(Op::new(Service::Stack, "check"), &args.name)
    }

    async fn create(cx: Cx<'_>, args: &BucketSpec) -> Result<(String, BucketOutputs)> {
        cx.cloud.blob()?.create_bucket(&args.name).await?;
        Ok((
            args.name.clone(),
            BucketOutputs {
                name: args.name.clone(),
            },
        ))
    }

    async fn find(cx: Cx<'_>, args: &BucketSpec) -> Result<Option<String>> {
        Ok(exists(cx, &args.name).await?.then(|| args.name.clone()))
    }

    async fn read(
        cx: Cx<'_>,
        id: &str,
        args: &BucketSpec,
    ) -> Result<Option<(BucketSpec, BucketOutputs)>> {
        if !exists(cx, id).await? {
            return Ok(None);
        }
        let spec = BucketSpec {
            name: id.to_string(),
            force_destroy: args.force_destroy,
        };
        Ok(Some((
            spec,
            BucketOutputs {
                name: id.to_string(),
            },
        )))
    }

    async fn update(_: Cx<'_>, id: &str, _: &BucketSpec, _: &BucketSpec) -> Result<BucketOutputs> {
        // Only `force_destroy` can change in place, and it lives in the state alone.
        Ok(BucketOutputs {
            name: id.to_string(),
        })
    }

    async fn delete(cx: Cx<'_>, id: &str, args: &BucketSpec) -> Result<()> {
        let blob = cx.cloud.blob()?;
        if args.force_destroy {
            match blob.list_all(id, "").await {
                Ok(objects) => {
                    for o in objects {
                        blob.delete_object(id, &o.key).await?;
                    }
                }
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        match blob.delete_bucket(id).await {
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
}
