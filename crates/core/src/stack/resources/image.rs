//! Image resources: repositories, and images built from a local directory.

use std::path::Path;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{Input, Output, declare, found, gone_ok, resource_args};
use crate::error::{Op, Result, Service};
use crate::image::{
    ImageConfig, ImageRef, build_from_dir, sha256_digest, tar_directory, validate_repository_name,
    validate_tag,
};
use crate::stack::{Cx, Resource, ResourceOptions, Stack};

// ---------------------------------------------------------------------------------------
// Repository

resource_args! {
    /// Arguments of a [`Repository`].
    pub struct RepositoryArgs => RepositorySpec {
        /// Its name (`shop/web`).
        name: String,
        /// On delete, delete the images it holds too (else a repository holding images is
        /// refused).
        force_destroy: bool,
    }
}

impl RepositoryArgs {
    /// A repository named `name`.
    pub fn new(name: impl Into<Input<String>>) -> Self {
        RepositoryArgs {
            name: name.into(),
            force_destroy: Input::Value(false),
        }
    }

    /// Deletes its images when it is deleted.
    pub fn force_destroy(mut self) -> Self {
        self.force_destroy = Input::Value(true);
        self
    }
}

/// A repository.
#[derive(Debug, Clone)]
pub struct Repository {
    /// Its URN.
    pub urn: String,
    /// Its name.
    pub name: Output<String>,
    /// Where it is pulled from.
    pub uri: Output<String>,
}

impl Repository {
    /// Declares a repository.
    pub fn new(stack: &Stack, name: &str, args: RepositoryArgs) -> Result<Repository> {
        Self::with(stack, name, args, ResourceOptions::default())
    }

    /// Declares a repository with options.
    pub fn with(
        stack: &Stack,
        name: &str,
        args: RepositoryArgs,
        opts: ResourceOptions,
    ) -> Result<Repository> {
        let h = declare::<RepositoryResource>(stack, name, &args, opts)?;
        Ok(Repository {
            name: h.output("name"),
            uri: h.output("uri"),
            urn: h.urn().to_string(),
        })
    }
}

/// Outputs of a repository.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepositoryOutputs {
    /// Its name.
    pub name: String,
    /// Where it is pulled from.
    pub uri: String,
}

/// The provider of [`Repository`].
#[derive(Debug)]
pub struct RepositoryResource;

async fn repository(cx: Cx<'_>, name: &str) -> Result<Option<crate::image::Repository>> {
    let repos = cx.cloud.images()?.list_repositories().await?;
    Ok(repos.into_iter().find(|r| r.name == name))
}

#[async_trait]
impl Resource for RepositoryResource {
    const TYPE: &'static str = "mvi:image:Repository";
    const REPLACE_ON: &'static [&'static str] = &["name"];
    type Args = RepositorySpec;
    type Outputs = RepositoryOutputs;

    fn check(args: &RepositorySpec) -> Result<()> {
        validate_repository_name(Op::new(Service::Stack, "check"), &args.name)
    }

    async fn create(cx: Cx<'_>, args: &RepositorySpec) -> Result<(String, RepositoryOutputs)> {
        let r = cx.cloud.images()?.create_repository(&args.name).await?;
        Ok((
            r.name.clone(),
            RepositoryOutputs {
                name: r.name,
                uri: r.uri,
            },
        ))
    }

    async fn find(cx: Cx<'_>, args: &RepositorySpec) -> Result<Option<String>> {
        Ok(repository(cx, &args.name).await?.map(|r| r.name))
    }

    async fn read(
        cx: Cx<'_>,
        id: &str,
        args: &RepositorySpec,
    ) -> Result<Option<(RepositorySpec, RepositoryOutputs)>> {
        Ok(repository(cx, id).await?.map(|r| {
            (
                RepositorySpec {
                    name: r.name.clone(),
                    force_destroy: args.force_destroy,
                },
                RepositoryOutputs {
                    name: r.name,
                    uri: r.uri,
                },
            )
        }))
    }

    async fn update(
        cx: Cx<'_>,
        id: &str,
        _: &RepositorySpec,
        _: &RepositorySpec,
    ) -> Result<RepositoryOutputs> {
        // Only `force_destroy` changes in place; it lives in the state alone.
        let uri = repository(cx, id).await?.map(|r| r.uri).unwrap_or_default();
        Ok(RepositoryOutputs {
            name: id.to_string(),
            uri,
        })
    }

    async fn delete(cx: Cx<'_>, id: &str, args: &RepositorySpec) -> Result<()> {
        gone_ok(
            cx.cloud
                .images()?
                .delete_repository(id, args.force_destroy)
                .await,
        )
    }
}

// ---------------------------------------------------------------------------------------
// Image

/// The content hash of a directory, as an image layer built from it would have
/// (`sha256:<hex>` of [`tar_directory`]'s reproducible tar).
pub fn context_digest(dir: &Path) -> Result<String> {
    let op = Op::new(Service::Stack, "context_digest");
    Ok(sha256_digest(&tar_directory(op, dir)?))
}

resource_args! {
    /// Arguments of an [`Image`].
    pub struct ImageArgs => ImageSpec {
        /// The repository's name.
        repository: String,
        /// The local directory the image is built from (it becomes one layer).
        dir: String,
        /// What the image runs.
        config: ImageConfig,
        /// The tag it is pushed under.
        tag: String,
        /// The content hash of `dir` when the program ran (see [`context_digest`]): a change
        /// of the files is a change of this argument, so it shows in a preview.
        context_digest: String,
    }
}

impl ImageArgs {
    /// An image of `repository` built from `dir` with `config`, tagged `latest`. Hashes the
    /// directory now (NotFound if it does not exist).
    pub fn new(
        repository: impl Into<Input<String>>,
        dir: impl AsRef<Path>,
        config: ImageConfig,
    ) -> Result<Self> {
        let dir = dir.as_ref();
        Ok(ImageArgs {
            repository: repository.into(),
            dir: Input::Value(dir.display().to_string()),
            config: Input::Value(config),
            tag: Input::Value("latest".into()),
            context_digest: Input::Value(context_digest(dir)?),
        })
    }

    /// Pushes it under `tag` instead of `latest`.
    pub fn tag(mut self, tag: impl Into<Input<String>>) -> Self {
        self.tag = tag.into();
        self
    }
}

/// An image built from a local directory.
#[derive(Debug, Clone)]
pub struct Image {
    /// Its URN.
    pub urn: String,
    /// Its manifest's digest.
    pub digest: Output<String>,
    /// `repository@digest`: what a container runs, pinned to this build.
    pub reference: Output<String>,
}

impl Image {
    /// Declares an image.
    pub fn new(stack: &Stack, name: &str, args: ImageArgs) -> Result<Image> {
        Self::with(stack, name, args, ResourceOptions::default())
    }

    /// Declares an image with options.
    pub fn with(
        stack: &Stack,
        name: &str,
        args: ImageArgs,
        opts: ResourceOptions,
    ) -> Result<Image> {
        let h = declare::<ImageResource>(stack, name, &args, opts)?;
        Ok(Image {
            digest: h.output("digest"),
            reference: h.output("reference"),
            urn: h.urn().to_string(),
        })
    }
}

/// Outputs of an image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageOutputs {
    /// Its manifest's digest.
    pub digest: String,
    /// `repository@digest`.
    pub reference: String,
}

fn image_outputs(repository: &str, digest: String) -> ImageOutputs {
    ImageOutputs {
        reference: format!("{repository}@{digest}"),
        digest,
    }
}

/// The provider of [`Image`]. Its id is `repository:tag`.
#[derive(Debug)]
pub struct ImageResource;

async fn build(cx: Cx<'_>, args: &ImageSpec) -> Result<ImageOutputs> {
    let op = Op::new(Service::Stack, "build");
    let images = cx.cloud.images()?;
    let dir = Path::new(&args.dir);
    // Built from the files as they are now: refuse if they changed since the program hashed
    // them, or the state would record a digest of other files than the preview showed.
    let dir_owned = dir.to_path_buf();
    let now = tokio::task::spawn_blocking(move || context_digest(&dir_owned))
        .await
        .map_err(|e| op.internal(&args.dir, e))??;
    if now != args.context_digest {
        return Err(op.precondition(
            &args.dir,
            "the directory's files changed since the program hashed them; run again",
        ));
    }
    let digest = build_from_dir(
        images.as_ref(),
        &args.repository,
        dir,
        &args.config,
        Some(&args.tag),
    )
    .await?;
    Ok(image_outputs(&args.repository, digest))
}

#[async_trait]
impl Resource for ImageResource {
    const TYPE: &'static str = "mvi:image:Image";
    const REPLACE_ON: &'static [&'static str] = &["repository", "tag"];
    type Args = ImageSpec;
    type Outputs = ImageOutputs;

    fn check(args: &ImageSpec) -> Result<()> {
        let op = Op::new(Service::Stack, "check");
        validate_repository_name(op, &args.repository)?;
        validate_tag(op, &args.tag)?;
        if !Path::new(&args.dir).is_dir() {
            return Err(op.invalid(
                &args.dir,
                "property \"dir\" must name an existing directory",
            ));
        }
        if args.config.entrypoint.is_empty() && args.config.cmd.is_empty() {
            return Err(op.invalid(
                &args.dir,
                "property \"config\" needs an entrypoint or a cmd",
            ));
        }
        Ok(())
    }

    async fn create(cx: Cx<'_>, args: &ImageSpec) -> Result<(String, ImageOutputs)> {
        let out = build(cx, args).await?;
        Ok((format!("{}:{}", args.repository, args.tag), out))
    }

    async fn find(cx: Cx<'_>, args: &ImageSpec) -> Result<Option<String>> {
        let r = cx
            .cloud
            .images()?
            .pull_manifest(&args.repository, &ImageRef::Tag(args.tag.clone()))
            .await;
        Ok(found(r)?.map(|_| format!("{}:{}", args.repository, args.tag)))
    }

    async fn read(
        cx: Cx<'_>,
        _: &str,
        args: &ImageSpec,
    ) -> Result<Option<(ImageSpec, ImageOutputs)>> {
        let images = cx.cloud.images()?;
        let r = images
            .pull_manifest(&args.repository, &ImageRef::Tag(args.tag.clone()))
            .await;
        let Some((digest, manifest)) = found(r)? else {
            return Ok(None);
        };
        // Content addressing: if the config the program declares hashes to the manifest's
        // config digest, that is the config stored, and reading it back would only repeat
        // it. Only a config that changed under the stack is pulled (and parsed) to show how.
        let layers = manifest.layers.iter().map(|l| l.digest.clone()).collect();
        let config = if sha256_digest(&args.config.to_oci_json(layers)) == manifest.config.digest {
            args.config.clone()
        } else {
            let op = Op::new(Service::Stack, "read");
            let bytes = images
                .pull_blob(&args.repository, &manifest.config.digest)
                .await?;
            ImageConfig::from_oci_json(op, &bytes)?
        };
        // The layer's digest is the content hash of the directory it was built from.
        let context_digest = manifest
            .layers
            .first()
            .map(|l| l.digest.clone())
            .unwrap_or_default();
        Ok(Some((
            ImageSpec {
                repository: args.repository.clone(),
                dir: args.dir.clone(),
                config,
                tag: args.tag.clone(),
                context_digest,
            },
            image_outputs(&args.repository, digest),
        )))
    }

    async fn update(cx: Cx<'_>, _: &str, _: &ImageSpec, new: &ImageSpec) -> Result<ImageOutputs> {
        // The old build stays in the repository (replicas may still run it) until the
        // repository goes.
        build(cx, new).await
    }

    async fn delete(cx: Cx<'_>, _: &str, args: &ImageSpec) -> Result<()> {
        let images = cx.cloud.images()?;
        let r = images
            .pull_manifest(&args.repository, &ImageRef::Tag(args.tag.clone()))
            .await;
        let Some((digest, _)) = found(r)? else {
            return Ok(());
        };
        gone_ok(
            images
                .delete_image(&args.repository, &ImageRef::Digest(digest))
                .await,
        )
    }
}
