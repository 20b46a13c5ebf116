//! The local Image service: a content-addressed registry under the state root.
//!
//! Blobs (layers, configs, manifests) are stored once, by digest, in the OCI image-layout
//! shape `image/blobs/sha256/<hex>` (shared by every repository, so a layer pushed to two
//! repositories is stored once); repositories, the blobs each may use, their manifests and tags
//! are one JSON document rewritten atomically after every change. Every blob read is checked
//! against its digest: a corrupt or missing blob is reported and never handed to a runner.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;
use mvi_core::image::{
    ImageInfo, ImageRef, Images, Manifest, Repository, sha256_digest, validate_digest,
    validate_repository_name, validate_tag,
};
use mvi_core::{ErrorKind, Op, Result, Service, Timestamp};
use serde::{Deserialize, Serialize};

use crate::storage::{Ctx, JsonState, atomic_write, io_error};

const STATE_FILE: &str = "index.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Repo {
    created: Timestamp,
    /// Blobs pushed to this repository (a manifest may only use these).
    blobs: BTreeSet<String>,
    /// Manifest digest → when pushed.
    manifests: BTreeMap<String, Timestamp>,
    /// Tag → manifest digest.
    tags: BTreeMap<String, String>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct State {
    repos: BTreeMap<String, Repo>,
}

/// Where blob bytes live: files by digest, or memory.
#[derive(Debug)]
enum BlobStore {
    Dir(PathBuf),
    Memory(Mutex<HashMap<String, Bytes>>),
}

impl BlobStore {
    fn path(dir: &std::path::Path, digest: &str) -> PathBuf {
        dir.join("sha256")
            .join(digest.trim_start_matches("sha256:"))
    }

    fn write(&self, op: Op, digest: &str, data: &Bytes) -> Result<()> {
        match self {
            BlobStore::Dir(dir) => {
                let path = Self::path(dir, digest);
                if path.exists() {
                    return Ok(());
                }
                atomic_write(op, &path, data)
            }
            BlobStore::Memory(m) => {
                m.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(digest.to_string(), data.clone());
                Ok(())
            }
        }
    }

    /// Reads a blob and checks it against its digest.
    fn read(&self, op: Op, digest: &str) -> Result<Bytes> {
        let data = match self {
            BlobStore::Dir(dir) => {
                let path = Self::path(dir, digest);
                std::fs::read(&path).map(Bytes::from).map_err(|e| {
                    if e.kind() == std::io::ErrorKind::NotFound {
                        op.err(
                            ErrorKind::Internal,
                            digest,
                            "the blob is missing from the registry's storage",
                        )
                    } else {
                        io_error(op, &path, e)
                    }
                })?
            }
            BlobStore::Memory(m) => m
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(digest)
                .cloned()
                .ok_or_else(|| {
                    op.err(
                        ErrorKind::Internal,
                        digest,
                        "the blob is missing from the registry's storage",
                    )
                })?,
        };
        let actual = sha256_digest(&data);
        if actual != digest {
            return Err(op.err(
                ErrorKind::Internal,
                digest,
                format!("the stored blob is corrupt (its content hashes to {actual}); refusing to use it"),
            ));
        }
        Ok(data)
    }
}

/// The local Image service.
#[derive(Debug)]
pub struct LocalImages {
    ctx: Ctx,
    blobs: BlobStore,
    state: JsonState<State>,
}

fn op(name: &'static str) -> Op {
    Op::new(Service::Image, name)
}

impl LocalImages {
    /// Opens the registry.
    pub async fn open(ctx: Ctx) -> Result<Self> {
        let op = op("open");
        let blobs = match &ctx.dir {
            Some(dir) => {
                let blob_dir = dir.join("blobs");
                std::fs::create_dir_all(blob_dir.join("sha256"))
                    .map_err(|e| io_error(op, &blob_dir, e))?;
                BlobStore::Dir(blob_dir)
            }
            None => BlobStore::Memory(Mutex::default()),
        };
        Ok(LocalImages {
            state: JsonState::open(&ctx, op, STATE_FILE)?,
            ctx,
            blobs,
        })
    }

    /// Where blob `digest` is stored on disk (for tests of corruption detection).
    pub fn blob_path(&self, digest: &str) -> Option<PathBuf> {
        match &self.blobs {
            BlobStore::Dir(dir) => Some(BlobStore::path(dir, digest)),
            BlobStore::Memory(_) => None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock()
    }

    fn mutate<T>(&self, op: Op, f: impl FnOnce(&mut State) -> Result<T>) -> Result<T> {
        self.state.mutate(op, f)
    }

    fn repo_uri(name: &str) -> String {
        format!("mvi.local/{name}")
    }

    fn info(&self, op: Op, name: &str, repo: &Repo, digest: &str) -> Result<ImageInfo> {
        let manifest = Manifest::from_json(op, &self.blobs.read(op, digest)?)?;
        Ok(ImageInfo {
            repository: name.to_string(),
            digest: digest.to_string(),
            tags: repo
                .tags
                .iter()
                .filter(|(_, d)| *d == digest)
                .map(|(t, _)| t.clone())
                .collect(),
            size: manifest.config.size + manifest.layers.iter().map(|l| l.size).sum::<u64>(),
            pushed: repo.manifests.get(digest).copied().unwrap_or_default(),
        })
    }
}

fn no_repo(op: Op, name: &str) -> mvi_core::Error {
    op.not_found(name, "no such repository")
}

#[async_trait]
impl Images for LocalImages {
    async fn create_repository(&self, name: &str) -> Result<Repository> {
        let op = op("create_repository");
        validate_repository_name(op, name)?;
        let created = self.ctx.sim.now();
        self.mutate(op, |s| {
            if s.repos.contains_key(name) {
                return Err(op.already_exists(name, "the repository exists"));
            }
            s.repos.insert(
                name.to_string(),
                Repo {
                    created,
                    blobs: BTreeSet::new(),
                    manifests: BTreeMap::new(),
                    tags: BTreeMap::new(),
                },
            );
            Ok(Repository {
                name: name.to_string(),
                uri: Self::repo_uri(name),
                created,
            })
        })
    }

    async fn delete_repository(&self, name: &str, force: bool) -> Result<()> {
        let op = op("delete_repository");
        self.mutate(op, |s| {
            let repo = s.repos.get(name).ok_or_else(|| no_repo(op, name))?;
            if !force && !repo.manifests.is_empty() {
                return Err(op.precondition(
                    name,
                    format!(
                        "the repository holds {} image(s); delete them or force",
                        repo.manifests.len()
                    ),
                ));
            }
            s.repos.remove(name);
            Ok(())
        })
    }

    async fn list_repositories(&self) -> Result<Vec<Repository>> {
        Ok(self
            .lock()
            .repos
            .iter()
            .map(|(name, r)| Repository {
                name: name.clone(),
                uri: Self::repo_uri(name),
                created: r.created,
            })
            .collect())
    }

    async fn push_blob(&self, repository: &str, digest: &str, data: Bytes) -> Result<()> {
        let op = op("push_blob");
        validate_digest(op, digest)?;
        if !self.lock().repos.contains_key(repository) {
            return Err(no_repo(op, repository));
        }
        let actual = sha256_digest(&data);
        if actual != digest {
            return Err(op.invalid(
                digest,
                format!("the content's digest is {actual}, not the one given"),
            ));
        }
        self.blobs.write(op, digest, &data)?;
        self.mutate(op, |s| {
            let repo = s
                .repos
                .get_mut(repository)
                .ok_or_else(|| no_repo(op, repository))?;
            repo.blobs.insert(digest.to_string());
            Ok(())
        })
    }

    async fn pull_blob(&self, repository: &str, digest: &str) -> Result<Bytes> {
        let op = op("pull_blob");
        validate_digest(op, digest)?;
        {
            let state = self.lock();
            let repo = state
                .repos
                .get(repository)
                .ok_or_else(|| no_repo(op, repository))?;
            if !repo.blobs.contains(digest) && !repo.manifests.contains_key(digest) {
                return Err(op.not_found(
                    format!("{repository}@{digest}"),
                    "no such blob in the repository",
                ));
            }
        }
        self.blobs.read(op, digest)
    }

    async fn push_manifest(
        &self,
        repository: &str,
        manifest: &Manifest,
        tag: Option<&str>,
    ) -> Result<String> {
        let op = op("push_manifest");
        if let Some(tag) = tag {
            validate_tag(op, tag)?;
        }
        for d in std::iter::once(&manifest.config).chain(&manifest.layers) {
            validate_digest(op, &d.digest)?;
        }
        let json = Bytes::from(manifest.to_json());
        let digest = sha256_digest(&json);
        {
            let state = self.lock();
            let repo = state
                .repos
                .get(repository)
                .ok_or_else(|| no_repo(op, repository))?;
            if let Some(missing) = std::iter::once(&manifest.config)
                .chain(&manifest.layers)
                .find(|d| !repo.blobs.contains(&d.digest))
            {
                return Err(op.invalid(
                    format!("{repository}@{}", missing.digest),
                    "the manifest refers to a blob that was not pushed to the repository",
                ));
            }
        }
        self.blobs.write(op, &digest, &json)?;
        let now = self.ctx.sim.now();
        self.mutate(op, |s| {
            let repo = s
                .repos
                .get_mut(repository)
                .ok_or_else(|| no_repo(op, repository))?;
            repo.manifests.entry(digest.clone()).or_insert(now);
            if let Some(tag) = tag {
                repo.tags.insert(tag.to_string(), digest.clone());
            }
            Ok(digest.clone())
        })
    }

    async fn pull_manifest(
        &self,
        repository: &str,
        reference: &ImageRef,
    ) -> Result<(String, Manifest)> {
        let op = op("pull_manifest");
        let digest = {
            let state = self.lock();
            let repo = state
                .repos
                .get(repository)
                .ok_or_else(|| no_repo(op, repository))?;
            match reference {
                ImageRef::Tag(t) => repo.tags.get(t).cloned(),
                ImageRef::Digest(d) => repo.manifests.contains_key(d).then(|| d.clone()),
            }
            .ok_or_else(|| op.not_found(format!("{repository}{reference}"), "no such image"))?
        };
        let manifest = Manifest::from_json(op, &self.blobs.read(op, &digest)?)?;
        Ok((digest, manifest))
    }

    async fn tag(&self, repository: &str, digest: &str, tag: &str) -> Result<()> {
        let op = op("tag");
        validate_tag(op, tag)?;
        self.mutate(op, |s| {
            let repo = s
                .repos
                .get_mut(repository)
                .ok_or_else(|| no_repo(op, repository))?;
            if !repo.manifests.contains_key(digest) {
                return Err(op.not_found(format!("{repository}@{digest}"), "no such image"));
            }
            repo.tags.insert(tag.to_string(), digest.to_string());
            Ok(())
        })
    }

    async fn list_images(&self, repository: &str) -> Result<Vec<ImageInfo>> {
        let op = op("list_images");
        let repo = self
            .lock()
            .repos
            .get(repository)
            .cloned()
            .ok_or_else(|| no_repo(op, repository))?;
        repo.manifests
            .keys()
            .map(|d| self.info(op, repository, &repo, d))
            .collect()
    }

    async fn delete_image(&self, repository: &str, reference: &ImageRef) -> Result<()> {
        let op = op("delete_image");
        self.mutate(op, |s| {
            let repo = s
                .repos
                .get_mut(repository)
                .ok_or_else(|| no_repo(op, repository))?;
            let missing = || op.not_found(format!("{repository}{reference}"), "no such image");
            match reference {
                ImageRef::Tag(t) => {
                    let digest = repo.tags.remove(t).ok_or_else(missing)?;
                    // As ECR: an image whose last tag goes is deleted with it.
                    if !repo.tags.values().any(|d| *d == digest) {
                        repo.manifests.remove(&digest);
                    }
                    Ok(())
                }
                ImageRef::Digest(d) => {
                    repo.manifests.remove(d).ok_or_else(missing)?;
                    repo.tags.retain(|_, v| v != d);
                    Ok(())
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use mvi_core::SystemClock;

    #[tokio::test]
    async fn corrupt_or_missing_blobs_are_reported_never_served() {
        let dir = tempfile::tempdir().unwrap();
        let sim = Arc::new(crate::Sim::new(1, Arc::new(SystemClock), "test".into()));
        let images = LocalImages::open(Ctx::new(Some(dir.path()), Service::Image, sim).unwrap())
            .await
            .unwrap();
        images.create_repository("web").await.unwrap();
        let layer = Bytes::from_static(b"layer bytes");
        let digest = sha256_digest(&layer);
        images.push_blob("web", &digest, layer).await.unwrap();

        let path = images.blob_path(&digest).unwrap();
        std::fs::write(&path, b"layer bytez").unwrap();
        let err = images.pull_blob("web", &digest).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Internal);
        assert!(err.to_string().contains("corrupt"), "{err}");

        std::fs::remove_file(&path).unwrap();
        let err = images.pull_blob("web", &digest).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Internal);
        assert!(err.to_string().contains("missing"), "{err}");
    }
}
