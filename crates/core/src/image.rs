//! Image: a registry of content-addressed images (ECR on AWS, an OCI-layout store locally).
//!
//! An image is a manifest naming a config blob and layer blobs by sha256 digest
//! (`sha256:<64 hex>`). Blobs are pushed first, then the manifest, then tags point at it.

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::common::Timestamp;
use crate::error::Result;

/// A repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repository {
    /// Its name (`shop/web`): lower-case letters, digits, `._-/`, 2–256 characters.
    pub name: String,
    /// Where it is pulled from (`127.0.0.1:5000/shop/web`, `123.dkr.ecr...`).
    pub uri: String,
    /// When it was created.
    pub created: Timestamp,
}

/// What an image runs: OCI image config's essentials.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ImageConfig {
    /// The program and its first arguments.
    pub entrypoint: Vec<String>,
    /// Default arguments (after the entrypoint).
    pub cmd: Vec<String>,
    /// Environment.
    pub env: BTreeMap<String, String>,
    /// The port the program listens on, if it serves.
    pub exposed_port: Option<u16>,
    /// Working directory inside the image.
    pub working_dir: Option<String>,
}

/// A layer or config blob referenced by a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    /// Media type.
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
}

/// An image manifest (OCI image manifest, schema 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The config blob.
    pub config: Descriptor,
    /// The layer blobs, bottom first.
    pub layers: Vec<Descriptor>,
}

/// An image in a repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// The repository.
    pub repository: String,
    /// The manifest's digest.
    pub digest: String,
    /// Tags pointing at it.
    pub tags: Vec<String>,
    /// Total size of config and layers.
    pub size: u64,
    /// When it was pushed.
    pub pushed: Timestamp,
}

/// A reference to an image: by tag or by digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ImageRef {
    /// A tag (`v1`, `latest`).
    Tag(String),
    /// A manifest digest (`sha256:...`).
    Digest(String),
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageRef::Tag(t) => write!(f, ":{t}"),
            ImageRef::Digest(d) => write!(f, "@{d}"),
        }
    }
}

/// The image registry.
#[async_trait]
pub trait Images: fmt::Debug + Send + Sync + 'static {
    /// Creates a repository.
    async fn create_repository(&self, name: &str) -> Result<Repository>;
    /// Deletes a repository; with `force`, even if it holds images.
    async fn delete_repository(&self, name: &str, force: bool) -> Result<()>;
    /// Every repository.
    async fn list_repositories(&self) -> Result<Vec<Repository>>;

    /// Uploads a blob (layer or config); its digest must be `digest`, else InvalidArgument.
    async fn push_blob(&self, repository: &str, digest: &str, data: Bytes) -> Result<()>;
    /// Downloads a blob, verified against its digest (a corrupt blob is Internal).
    async fn pull_blob(&self, repository: &str, digest: &str) -> Result<Bytes>;
    /// Stores a manifest whose blobs were pushed, under `tag` if given; returns its digest.
    async fn push_manifest(
        &self,
        repository: &str,
        manifest: &Manifest,
        tag: Option<&str>,
    ) -> Result<String>;
    /// Reads a manifest by tag or digest.
    async fn pull_manifest(
        &self,
        repository: &str,
        reference: &ImageRef,
    ) -> Result<(String, Manifest)>;
    /// Points `tag` at an existing manifest digest.
    async fn tag(&self, repository: &str, digest: &str, tag: &str) -> Result<()>;
    /// Images in a repository.
    async fn list_images(&self, repository: &str) -> Result<Vec<ImageInfo>>;
    /// Deletes an image (by digest: with all its tags; by tag: just the tag).
    async fn delete_image(&self, repository: &str, reference: &ImageRef) -> Result<()>;
}
