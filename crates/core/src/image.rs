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
use crate::error::{Op, Result, Service};

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
#[serde(rename_all = "camelCase")]
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
    /// Deletes an image: by digest, with all its tags; by tag, the tag, and the image too
    /// once no tag points at it (as ECR).
    async fn delete_image(&self, repository: &str, reference: &ImageRef) -> Result<()>;
}

/// Media type of an OCI image manifest.
pub const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of an OCI image config.
pub const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Media type of an uncompressed tar layer.
pub const MEDIA_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// Checks a digest: `sha256:` and 64 lower-case hex digits.
pub fn validate_digest(op: Op, digest: &str) -> Result<()> {
    match digest.strip_prefix("sha256:") {
        Some(h)
            if h.len() == 64
                && h.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            Ok(())
        }
        _ => Err(op.invalid(
            digest,
            "digests are \"sha256:\" and 64 lower-case hex digits",
        )),
    }
}

/// Checks a repository name (ECR's rule): 2–256 characters, lower-case letters and digits in
/// components separated by `.`, `_`, `-` or `/`.
pub fn validate_repository_name(op: Op, name: &str) -> Result<()> {
    let ok_len = (2..=256).contains(&name.len());
    let ok_chars = name.bytes().all(|b| {
        b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-' | b'/')
    });
    let ok_ends = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_alphanumeric());
    if !(ok_len && ok_chars && ok_ends) {
        return Err(op.invalid(
            name,
            "repository names are 2 to 256 lower-case letters, digits and '._-/', starting and ending with a letter or digit",
        ));
    }
    Ok(())
}

/// Checks a tag (the OCI rule): 1–128 characters of letters, digits, `_`, `.`, `-`, not
/// starting with `.` or `-`.
pub fn validate_tag(op: Op, tag: &str) -> Result<()> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && !tag.starts_with(['.', '-'])
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !ok {
        return Err(op.invalid(
            tag,
            "tags are 1 to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'",
        ));
    }
    Ok(())
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OciManifest {
    schema_version: u32,
    media_type: String,
    config: Descriptor,
    layers: Vec<Descriptor>,
}

impl Manifest {
    /// The manifest as OCI image manifest JSON: the bytes its digest is computed over.
    pub fn to_json(&self) -> Vec<u8> {
        let oci = OciManifest {
            schema_version: 2,
            media_type: MEDIA_MANIFEST.into(),
            config: self.config.clone(),
            layers: self.layers.clone(),
        };
        // Serializing plain strings and numbers cannot fail.
        serde_json::to_vec(&oci).unwrap_or_default()
    }

    /// Parses OCI image manifest JSON.
    pub fn from_json(op: Op, bytes: &[u8]) -> Result<Manifest> {
        let oci: OciManifest = serde_json::from_slice(bytes)
            .map_err(|e| op.invalid("manifest", format!("not an OCI image manifest: {e}")))?;
        if oci.schema_version != 2 {
            return Err(op.invalid(
                "manifest",
                format!("schemaVersion {} is not 2", oci.schema_version),
            ));
        }
        Ok(Manifest {
            config: oci.config,
            layers: oci.layers,
        })
    }

    /// The manifest's digest.
    pub fn digest(&self) -> String {
        sha256_digest(&self.to_json())
    }
}

#[derive(Serialize, Deserialize, Default)]
struct OciConfig {
    architecture: String,
    os: String,
    #[serde(default)]
    config: OciRunConfig,
    #[serde(default)]
    rootfs: OciRootfs,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct OciRunConfig {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    entrypoint: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    cmd: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    env: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    exposed_ports: BTreeMap<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    working_dir: Option<String>,
}

#[derive(Serialize, Deserialize, Default)]
struct OciRootfs {
    #[serde(rename = "type")]
    kind: String,
    diff_ids: Vec<String>,
}

impl ImageConfig {
    /// A config running `entrypoint`.
    pub fn new(entrypoint: impl IntoIterator<Item = impl Into<String>>) -> Self {
        ImageConfig {
            entrypoint: entrypoint.into_iter().map(Into::into).collect(),
            ..Default::default()
        }
    }

    /// Sets the exposed port.
    pub fn port(mut self, port: u16) -> Self {
        self.exposed_port = Some(port);
        self
    }

    /// Adds an environment variable.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(key.into(), value.into());
        self
    }

    /// Sets the working directory.
    pub fn working_dir(mut self, dir: impl Into<String>) -> Self {
        self.working_dir = Some(dir.into());
        self
    }

    /// The config as OCI image config JSON, for layers whose uncompressed digests are
    /// `diff_ids`.
    pub fn to_oci_json(&self, diff_ids: Vec<String>) -> Vec<u8> {
        let oci = OciConfig {
            architecture: "amd64".into(),
            os: "linux".into(),
            config: OciRunConfig {
                entrypoint: self.entrypoint.clone(),
                cmd: self.cmd.clone(),
                env: self.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
                exposed_ports: self
                    .exposed_port
                    .map(|p| (format!("{p}/tcp"), serde_json::json!({})))
                    .into_iter()
                    .collect(),
                working_dir: self.working_dir.clone(),
            },
            rootfs: OciRootfs {
                kind: "layers".into(),
                diff_ids,
            },
        };
        serde_json::to_vec(&oci).unwrap_or_default()
    }

    /// Parses OCI image config JSON.
    pub fn from_oci_json(op: Op, bytes: &[u8]) -> Result<ImageConfig> {
        let oci: OciConfig = serde_json::from_slice(bytes)
            .map_err(|e| op.invalid("config", format!("not an OCI image config: {e}")))?;
        let c = oci.config;
        Ok(ImageConfig {
            entrypoint: c.entrypoint,
            cmd: c.cmd,
            env: c
                .env
                .iter()
                .filter_map(|kv| {
                    kv.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                })
                .collect(),
            exposed_port: c
                .exposed_ports
                .keys()
                .find_map(|p| p.split('/').next().and_then(|n| n.parse().ok())),
            working_dir: c.working_dir,
        })
    }
}

/// Packs `dir` as one uncompressed, reproducible tar layer: entries sorted by path, owner 0,
/// modification time 0, permission bits kept (so scripts stay executable), symlinks kept.
pub fn tar_directory(op: Op, dir: &std::path::Path) -> Result<Vec<u8>> {
    let fail = |e: &dyn std::fmt::Display| {
        op.invalid(
            dir.display().to_string(),
            format!("cannot pack the directory: {e}"),
        )
    };
    if !dir.is_dir() {
        return Err(op.not_found(dir.display().to_string(), "no such directory"));
    }
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    for entry in walkdir::WalkDir::new(dir).min_depth(1).sort_by_file_name() {
        let entry = entry.map_err(|e| fail(&e))?;
        let rel = entry.path().strip_prefix(dir).map_err(|e| fail(&e))?;
        let meta = entry.path().symlink_metadata().map_err(|e| fail(&e))?;
        let mut header = tar::Header::new_gnu();
        header.set_metadata_in_mode(&meta, tar::HeaderMode::Deterministic);
        header.set_mtime(0);
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(entry.path()).map_err(|e| fail(&e))?;
            builder
                .append_link(&mut header, rel, target)
                .map_err(|e| fail(&e))?;
        } else if meta.is_dir() {
            builder
                .append_data(&mut header, rel, std::io::empty())
                .map_err(|e| fail(&e))?;
        } else {
            let file = std::fs::File::open(entry.path()).map_err(|e| fail(&e))?;
            builder
                .append_data(&mut header, rel, file)
                .map_err(|e| fail(&e))?;
        }
    }
    builder.into_inner().map_err(|e| fail(&e))
}

/// Splits `repository:tag`, `repository@sha256:<hex>` or a bare `repository` (tag `latest`)
/// into repository and reference, the way both backends read an image a container names
/// (after taking off their registry prefix). `image` is the name as given, for the message.
pub fn split_reference(op: Op, image: &str, bare: &str) -> Result<(String, ImageRef)> {
    let (repo, reference) = if let Some((repo, digest)) = bare.split_once('@') {
        (repo, ImageRef::Digest(digest.to_owned()))
    } else {
        match bare.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => (repo, ImageRef::Tag(tag.to_owned())),
            _ => (bare, ImageRef::Tag("latest".into())),
        }
    };
    if repo.is_empty()
        || matches!(&reference, ImageRef::Tag(t) | ImageRef::Digest(t) if t.is_empty())
    {
        return Err(op.invalid(
            image,
            "an image is `repository:tag` or `repository@sha256:<hex>`",
        ));
    }
    Ok((repo.to_owned(), reference))
}

/// Builds an image from a local directory ("Build a Custom Image") and pushes it to
/// `repository` on any backend: the directory becomes one tar layer, `config` the image
/// config. Returns the manifest's digest. Works the same against the simulator and ECR.
pub async fn build_from_dir(
    images: &dyn Images,
    repository: &str,
    dir: &std::path::Path,
    config: &ImageConfig,
    tag: Option<&str>,
) -> Result<String> {
    let op = Op::new(Service::Image, "build_from_dir");
    let dir_owned = dir.to_path_buf();
    let layer = tokio::task::spawn_blocking(move || tar_directory(op, &dir_owned))
        .await
        .map_err(|e| op.internal(dir.display().to_string(), e))??;
    let layer_digest = sha256_digest(&layer);
    let config_json = config.to_oci_json(vec![layer_digest.clone()]);
    let config_digest = sha256_digest(&config_json);
    let manifest = Manifest {
        config: Descriptor {
            media_type: MEDIA_CONFIG.into(),
            digest: config_digest.clone(),
            size: config_json.len() as u64,
        },
        layers: vec![Descriptor {
            media_type: MEDIA_LAYER_TAR.into(),
            digest: layer_digest.clone(),
            size: layer.len() as u64,
        }],
    };
    images
        .push_blob(repository, &layer_digest, layer.into())
        .await?;
    images
        .push_blob(repository, &config_digest, config_json.into())
        .await?;
    images.push_manifest(repository, &manifest, tag).await
}

/// Pulls an image's manifest and parses its config.
pub async fn pull_config(
    images: &dyn Images,
    repository: &str,
    reference: &ImageRef,
) -> Result<(String, Manifest, ImageConfig)> {
    let op = Op::new(Service::Image, "pull_config");
    let (digest, manifest) = images.pull_manifest(repository, reference).await?;
    let config = images
        .pull_blob(repository, &manifest.config.digest)
        .await?;
    Ok((
        digest,
        manifest.clone(),
        ImageConfig::from_oci_json(op, &config)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_json_roundtrip_and_digest() {
        let op = Op::new(Service::Image, "test");
        let d = |n: u8| Descriptor {
            media_type: MEDIA_LAYER_TAR.into(),
            digest: sha256_digest(&[n]),
            size: 1,
        };
        let m = Manifest {
            config: d(0),
            layers: vec![d(1), d(2)],
        };
        let json = m.to_json();
        assert!(String::from_utf8_lossy(&json).contains("\"schemaVersion\":2"));
        assert_eq!(Manifest::from_json(op, &json).ok(), Some(m.clone()));
        assert_eq!(m.digest(), sha256_digest(&json));
        assert!(Manifest::from_json(op, b"{}").is_err());
    }

    #[test]
    fn config_roundtrip() {
        let op = Op::new(Service::Image, "test");
        let c = ImageConfig::new(["python3", "app.py"])
            .port(8080)
            .env("MODE", "prod")
            .working_dir("/app");
        let back = ImageConfig::from_oci_json(op, &c.to_oci_json(vec![])).ok();
        assert_eq!(back, Some(c));
    }

    #[test]
    fn tar_is_reproducible_and_keeps_modes() {
        use std::os::unix::fs::PermissionsExt;
        let op = Op::new(Service::Image, "test");
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("run.sh"), "#!/bin/sh\necho hi\n")
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::set_permissions(
            dir.path().join("run.sh"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir(dir.path().join("static")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("static/index.html"), "<h1>hi</h1>")
            .unwrap_or_else(|e| panic!("{e}"));
        let a = tar_directory(op, dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let b = tar_directory(op, dir.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(sha256_digest(&a), sha256_digest(&b));
        let mut archive = tar::Archive::new(a.as_slice());
        let modes: Vec<(String, u32)> = archive
            .entries()
            .unwrap_or_else(|e| panic!("{e}"))
            .map(|e| {
                let e = e.unwrap_or_else(|e| panic!("{e}"));
                (
                    e.path()
                        .unwrap_or_else(|e| panic!("{e}"))
                        .display()
                        .to_string(),
                    e.header().mode().unwrap_or(0),
                )
            })
            .collect();
        assert!(modes.contains(&("run.sh".into(), 0o755)), "{modes:?}");
        assert!(
            modes.iter().any(|(p, _)| p == "static/index.html"),
            "{modes:?}"
        );
        assert!(tar_directory(op, &dir.path().join("missing")).is_err());
    }
}
