//! Image on Amazon ECR.
//!
//! Everything goes through the ECR API, no Docker registry client:
//!
//! - A blob (layer or config) is pushed as an ECR layer: BatchCheckLayerAvailability first
//!   (a blob already in the repository is not sent again, as `docker push` does), then
//!   InitiateLayerUpload, UploadLayerPart in parts of the size ECR asks for, and
//!   CompleteLayerUpload, which checks the bytes against the digest. The digest is checked
//!   before anything is sent, so a mismatch leaves nothing behind.
//! - A blob is pulled with GetDownloadUrlForLayer and an HTTP GET of the presigned URL it
//!   returns (through the SDK's own HTTP connector, the same TLS stack as every other request).
//!   The bytes are checked against the digest, as the local backend does: a corrupt blob is
//!   Internal and never returned. Pulling an image's digest gives its manifest, as locally.
//! - A manifest is pushed with PutImage (OCI media type, the digest mvi computed, which ECR
//!   checks), after BatchCheckLayerAvailability confirms that every blob it names is in the
//!   repository, so a refused manifest names the missing blob and stores nothing. It is read
//!   with BatchGetImage, accepting only the OCI and Docker v2 manifest types so ECR never
//!   converts it, and checked against its digest.
//! - Tagging pushes the image's own manifest again under the new tag (ECR's way to retag).
//!   Listing is DescribeImages; an image's size is the sum of its config and layers as its
//!   manifest states them (ECR's `imageSizeInBytes` counts compressed layers only).
//!
//! Repository names are checked with core's validator on create; for every other operation a
//! name core refuses cannot exist, so it is NotFound without a request (as locally), and the
//! same holds for malformed tags and digests used as references.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::OnceLock;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ecr::Client;
use aws_sdk_ecr::primitives::Blob as EcrBlob;
use aws_sdk_ecr::types::{ImageFailureCode, ImageIdentifier, LayerAvailability};
use aws_smithy_runtime_api::client::http::{
    HttpConnector, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_types::byte_stream::ByteStream;
use bytes::Bytes;
use mvi_core::image::{
    ImageInfo, ImageRef, Images, MEDIA_MANIFEST, Manifest, Repository, sha256_digest,
    validate_digest, validate_repository_name, validate_tag,
};
use mvi_core::{ErrorKind, Op, Result, Service, Timestamp};

use crate::error::{kind_of_status, map};

const fn op(name: &'static str) -> Op {
    Op::new(Service::Image, name)
}

/// Media type of a Docker image manifest (schema 2), which ECR may hold for images pushed
/// by Docker; read but never written by mvi.
const MEDIA_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// The most ids in one BatchGetImage or BatchCheckLayerAvailability call.
const MAX_BATCH_IDS: usize = 100;
/// The part size used when ECR does not suggest a usable one.
const DEFAULT_PART: usize = 10 * 1024 * 1024;
/// The largest part sent, whatever ECR suggests (its limit on one UploadLayerPart).
const MAX_PART: usize = 20 * 1024 * 1024;
/// How long a layer download may take to connect, and to wait for the next bytes.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// The Image service on Amazon ECR (or an ECR-compatible endpoint).
#[derive(Debug)]
pub struct EcrImages {
    client: Client,
    /// The sleep implementation of the SDK configuration, for download timeouts.
    sleep: Option<aws_sdk_ecr::config::SharedAsyncSleep>,
    /// Fetches layer bytes from presigned URLs; made on the first pull that needs it.
    downloader: OnceLock<Option<SharedHttpConnector>>,
}

impl EcrImages {
    /// Images over an ECR client built from `config`.
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        EcrImages {
            client: Client::new(config),
            sleep: config.sleep_impl(),
            downloader: OnceLock::new(),
        }
    }

    fn downloader(&self) -> Option<&SharedHttpConnector> {
        self.downloader
            .get_or_init(|| {
                // Timeouts need a sleep implementation; without one, none are set (the
                // connector would refuse them).
                let settings = match &self.sleep {
                    Some(_) => HttpConnectorSettings::builder()
                        .connect_timeout(CONNECT_TIMEOUT)
                        .read_timeout(READ_TIMEOUT)
                        .build(),
                    None => HttpConnectorSettings::builder().build(),
                };
                aws_smithy_http_client::default_connector(&settings, self.sleep.clone())
            })
            .as_ref()
    }

    /// The sizes of those of `digests` that are available as layers of `repository`.
    async fn layer_sizes(
        &self,
        op: Op,
        repository: &str,
        digests: &[&str],
    ) -> Result<HashMap<String, u64>> {
        let mut sizes = HashMap::new();
        for chunk in digests.chunks(MAX_BATCH_IDS) {
            let out = self
                .client
                .batch_check_layer_availability()
                .repository_name(repository)
                .set_layer_digests(Some(chunk.iter().map(|d| (*d).to_owned()).collect()))
                .send()
                .await
                .map_err(|e| map(op, repository, e))?;
            for layer in out.layers() {
                if layer.layer_availability() != Some(&LayerAvailability::Available) {
                    continue;
                }
                if let Some(d) = layer.layer_digest() {
                    let size = layer.layer_size().unwrap_or(0).max(0).unsigned_abs();
                    sizes.insert(d.to_owned(), size);
                }
            }
        }
        Ok(sizes)
    }

    /// The image `reference` names: `(digest, manifest JSON, media type)`, the manifest
    /// checked against its digest.
    async fn get_image(
        &self,
        op: Op,
        repository: &str,
        reference: &ImageRef,
    ) -> Result<(String, String, Option<String>)> {
        let resource = format!("{repository}{reference}");
        let id = image_id(op, repository, reference)?;
        let out = self
            .client
            .batch_get_image()
            .repository_name(repository)
            .image_ids(id)
            .accepted_media_types(MEDIA_MANIFEST)
            .accepted_media_types(MEDIA_DOCKER_MANIFEST)
            .send()
            .await
            .map_err(|e| map(op, repository, e))?;
        if let Some(image) = out.images().first() {
            let json = image
                .image_manifest()
                .ok_or_else(|| op.internal(resource.as_str(), "ECR returned no manifest"))?;
            let named = match reference {
                ImageRef::Digest(d) => Some(d.as_str()),
                ImageRef::Tag(_) => image.image_id().and_then(|i| i.image_digest()),
            };
            let digest = verify_manifest(op, &resource, json, named)?;
            return Ok((
                digest,
                json.to_owned(),
                image.image_manifest_media_type().map(str::to_owned),
            ));
        }
        Err(image_failure(
            op,
            &resource,
            out.failures()
                .first()
                .map(|f| (f.failure_code(), f.failure_reason())),
        ))
    }

    /// PutImage of `json` (whose digest is `digest`) under `tag`. Pushing what is already
    /// there (the same manifest, the same tag) succeeds, as locally.
    async fn put_image(
        &self,
        op: Op,
        repository: &str,
        json: &str,
        media_type: &str,
        digest: &str,
        tag: Option<&str>,
    ) -> Result<()> {
        let resource = format!("{repository}@{digest}");
        let out = self
            .client
            .put_image()
            .repository_name(repository)
            .image_manifest(json)
            .image_manifest_media_type(media_type)
            .image_digest(digest)
            .set_image_tag(tag.map(str::to_owned))
            .send()
            .await;
        match out {
            Ok(out) => {
                let stored = out
                    .image()
                    .and_then(|i| i.image_id())
                    .and_then(|i| i.image_digest());
                match stored {
                    Some(d) if d != digest => Err(op.internal(
                        resource,
                        format!("ECR stored the manifest as {d}, not as its digest"),
                    )),
                    _ => Ok(()),
                }
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_image_already_exists_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(map(op, resource, e)),
        }
    }

    /// Downloads `url` (a presigned layer URL) and checks the bytes against `digest`.
    async fn download(&self, op: Op, resource: &str, url: &str, digest: &str) -> Result<Bytes> {
        let connector = self.downloader().ok_or_else(|| {
            op.unsupported("this build has no HTTP client to download layers with")
        })?;
        let request = HttpRequest::get(url).map_err(|e| op.internal(resource, e))?;
        let response = connector.call(request).await.map_err(|e| {
            let kind = if e.is_timeout() {
                ErrorKind::Timeout
            } else if e.is_io() {
                ErrorKind::Unavailable
            } else {
                ErrorKind::Internal
            };
            op.err(kind, resource, format!("cannot download the layer: {e}"))
        })?;
        let status = response.status().as_u16();
        if !response.status().is_success() {
            // ECR listed the layer a moment ago: a 404 from its storage is a fault, not a
            // missing blob.
            let kind = match status {
                404 => ErrorKind::Internal,
                s if s >= 500 => ErrorKind::Unavailable,
                s => kind_of_status(s).unwrap_or(ErrorKind::Internal),
            };
            return Err(op.err(
                kind,
                resource,
                format!("the layer download answered HTTP {status}"),
            ));
        }
        let data = ByteStream::new(response.into_body())
            .collect()
            .await
            .map_err(|e| {
                op.err(
                    ErrorKind::Unavailable,
                    resource,
                    format!("the layer download broke off: {e}"),
                )
            })?
            .into_bytes();
        verify_blob(op, resource, digest, data)
    }
}

/// A reference as ECR's image id. References core would refuse cannot name an image.
fn image_id(op: Op, repository: &str, reference: &ImageRef) -> Result<ImageIdentifier> {
    let missing = || op.not_found(format!("{repository}{reference}"), "no such image");
    Ok(match reference {
        ImageRef::Tag(t) => {
            validate_tag(op, t).map_err(|_| missing())?;
            ImageIdentifier::builder().image_tag(t).build()
        }
        ImageRef::Digest(d) => {
            validate_digest(op, d).map_err(|_| missing())?;
            ImageIdentifier::builder().image_digest(d).build()
        }
    })
}

/// The error of an image ECR did not return.
fn image_failure(
    op: Op,
    resource: &str,
    failure: Option<(Option<&ImageFailureCode>, Option<&str>)>,
) -> mvi_core::Error {
    let Some((code, reason)) = failure else {
        return op.internal(resource, "ECR returned neither the image nor a failure");
    };
    let reason = reason.unwrap_or("no reason given");
    match code {
        Some(
            ImageFailureCode::ImageNotFound
            | ImageFailureCode::ImageTagDoesNotMatchDigest
            | ImageFailureCode::InvalidImageDigest
            | ImageFailureCode::InvalidImageTag
            | ImageFailureCode::MissingDigestAndTag,
        ) => op.not_found(resource, format!("no such image ({reason})")),
        Some(ImageFailureCode::ImageReferencedByManifestList) => op.precondition(
            resource,
            format!("the image is part of a manifest list ({reason})"),
        ),
        Some(other) => op.internal(resource, format!("{}: {reason}", other.as_str())),
        None => op.internal(resource, reason.to_owned()),
    }
}

/// A repository name that core refuses names no repository.
fn check_repo(op: Op, name: &str) -> Result<()> {
    validate_repository_name(op, name).map_err(|_| op.not_found(name, "no such repository"))
}

/// Checks manifest JSON against the digest it is known by (if any); returns its digest.
fn verify_manifest(op: Op, resource: &str, json: &str, named: Option<&str>) -> Result<String> {
    let digest = sha256_digest(json.as_bytes());
    if let Some(named) = named
        && named != digest
    {
        return Err(op.err(
            ErrorKind::Internal,
            resource,
            format!("the manifest ECR returned for {named} hashes to {digest}; refusing to use it"),
        ));
    }
    Ok(digest)
}

/// Checks downloaded bytes against their digest.
fn verify_blob(op: Op, resource: &str, digest: &str, data: Bytes) -> Result<Bytes> {
    let actual = sha256_digest(&data);
    if actual != digest {
        return Err(op.err(
            ErrorKind::Internal,
            resource,
            format!("the blob is corrupt (its content hashes to {actual}); refusing to use it"),
        ));
    }
    Ok(data)
}

fn time(t: Option<&aws_smithy_types::DateTime>) -> Timestamp {
    t.and_then(|t| chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
        .unwrap_or(Timestamp::UNIX_EPOCH)
}

fn repository_from(r: &aws_sdk_ecr::types::Repository) -> Option<Repository> {
    Some(Repository {
        name: r.repository_name()?.to_owned(),
        uri: r.repository_uri().unwrap_or_default().to_owned(),
        created: time(r.created_at()),
    })
}

/// The size of the image a manifest describes: its config and layers.
fn manifest_size(op: Op, json: &str) -> Option<u64> {
    let m = Manifest::from_json(op, json.as_bytes()).ok()?;
    Some(m.config.size + m.layers.iter().map(|l| l.size).sum::<u64>())
}

#[async_trait]
impl Images for EcrImages {
    async fn create_repository(&self, name: &str) -> Result<Repository> {
        let op = op("create_repository");
        validate_repository_name(op, name)?;
        let out = self
            .client
            .create_repository()
            .repository_name(name)
            .send()
            .await
            .map_err(|e| map(op, name, e))?;
        out.repository()
            .and_then(repository_from)
            .ok_or_else(|| op.internal(name, "CreateRepository returned no repository"))
    }

    async fn delete_repository(&self, name: &str, force: bool) -> Result<()> {
        let op = op("delete_repository");
        check_repo(op, name)?;
        self.client
            .delete_repository()
            .repository_name(name)
            .force(force)
            .send()
            .await
            .map_err(|e| map(op, name, e))?;
        Ok(())
    }

    async fn list_repositories(&self) -> Result<Vec<Repository>> {
        let op = op("list_repositories");
        let mut repos = BTreeMap::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .describe_repositories()
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| map(op, "*", e))?;
            for r in out.repositories().iter().filter_map(repository_from) {
                repos.insert(r.name.clone(), r);
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => break,
            }
        }
        Ok(repos.into_values().collect())
    }

    async fn push_blob(&self, repository: &str, digest: &str, data: Bytes) -> Result<()> {
        let op = op("push_blob");
        validate_digest(op, digest)?;
        check_repo(op, repository)?;
        let actual = sha256_digest(&data);
        if actual != digest {
            return Err(op.invalid(
                digest,
                format!("the content's digest is {actual}, not the one given"),
            ));
        }
        let resource = format!("{repository}@{digest}");
        // Already in the repository (pushed before, or shared with another image).
        if self
            .layer_sizes(op, repository, &[digest])
            .await?
            .contains_key(digest)
        {
            return Ok(());
        }
        let upload = self
            .client
            .initiate_layer_upload()
            .repository_name(repository)
            .send()
            .await
            .map_err(|e| map(op, repository, e))?;
        let upload_id = upload.upload_id().ok_or_else(|| {
            op.internal(resource.as_str(), "InitiateLayerUpload gave no upload id")
        })?;
        let part = upload
            .part_size()
            .and_then(|s| usize::try_from(s).ok())
            .filter(|s| *s > 0)
            .map_or(DEFAULT_PART, |s| s.min(MAX_PART));
        let mut first = 0i64;
        for chunk in data.chunks(part) {
            // A part is at most MAX_PART bytes, so these sums cannot overflow an i64.
            let last = first + chunk.len() as i64 - 1;
            self.client
                .upload_layer_part()
                .repository_name(repository)
                .upload_id(upload_id)
                .part_first_byte(first)
                .part_last_byte(last)
                .layer_part_blob(EcrBlob::new(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| map(op, resource.as_str(), e))?;
            first = last + 1;
        }
        let done = self
            .client
            .complete_layer_upload()
            .repository_name(repository)
            .upload_id(upload_id)
            .layer_digests(digest)
            .send()
            .await;
        match done {
            Ok(out) => match out.layer_digest() {
                Some(d) if d != digest => Err(op.internal(
                    resource,
                    format!("ECR stored the layer as {d}, not as its digest"),
                )),
                _ => Ok(()),
            },
            // Another writer pushed the same bytes meanwhile.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_layer_already_exists_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(map(op, resource, e)),
        }
    }

    async fn pull_blob(&self, repository: &str, digest: &str) -> Result<Bytes> {
        let op = op("pull_blob");
        validate_digest(op, digest)?;
        check_repo(op, repository)?;
        let resource = format!("{repository}@{digest}");
        if !self
            .layer_sizes(op, repository, &[digest])
            .await?
            .contains_key(digest)
        {
            // Not a layer: perhaps an image's manifest, which is a blob too.
            return match self
                .get_image(op, repository, &ImageRef::Digest(digest.to_owned()))
                .await
            {
                Ok((_, json, _)) => Ok(Bytes::from(json)),
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    Err(op.not_found(resource, "no such blob in the repository"))
                }
                Err(e) => Err(e),
            };
        }
        let out = self
            .client
            .get_download_url_for_layer()
            .repository_name(repository)
            .layer_digest(digest)
            .send()
            .await
            .map_err(|e| map(op, resource.as_str(), e))?;
        let url = out
            .download_url()
            .ok_or_else(|| op.internal(resource.as_str(), "ECR gave no download URL"))?;
        self.download(op, &resource, url, digest).await
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
        let blobs: BTreeSet<&str> = std::iter::once(&manifest.config)
            .chain(&manifest.layers)
            .map(|d| d.digest.as_str())
            .collect();
        for d in &blobs {
            validate_digest(op, d)?;
        }
        check_repo(op, repository)?;
        let json = String::from_utf8(manifest.to_json()).map_err(|e| op.internal(repository, e))?;
        let digest = sha256_digest(json.as_bytes());
        // Every blob must be in the repository; checked first so a refused manifest names
        // the missing blob and leaves nothing behind.
        let blobs: Vec<&str> = blobs.into_iter().collect();
        let present = self.layer_sizes(op, repository, &blobs).await?;
        if let Some(missing) = blobs.iter().find(|d| !present.contains_key(**d)) {
            return Err(op.invalid(
                format!("{repository}@{missing}"),
                "the manifest refers to a blob that was not pushed to the repository",
            ));
        }
        self.put_image(op, repository, &json, MEDIA_MANIFEST, &digest, tag)
            .await?;
        Ok(digest)
    }

    async fn pull_manifest(
        &self,
        repository: &str,
        reference: &ImageRef,
    ) -> Result<(String, Manifest)> {
        let op = op("pull_manifest");
        check_repo(op, repository)?;
        let (digest, json, _) = self.get_image(op, repository, reference).await?;
        let manifest = Manifest::from_json(op, json.as_bytes())?;
        Ok((digest, manifest))
    }

    async fn tag(&self, repository: &str, digest: &str, tag: &str) -> Result<()> {
        let op = op("tag");
        validate_tag(op, tag)?;
        check_repo(op, repository)?;
        let (digest, json, media_type) = self
            .get_image(op, repository, &ImageRef::Digest(digest.to_owned()))
            .await?;
        let media_type = media_type.as_deref().unwrap_or(MEDIA_MANIFEST);
        self.put_image(op, repository, &json, media_type, &digest, Some(tag))
            .await
    }

    async fn list_images(&self, repository: &str) -> Result<Vec<ImageInfo>> {
        let op = op("list_images");
        check_repo(op, repository)?;
        let mut details = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .describe_images()
                .repository_name(repository)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| map(op, repository, e))?;
            details.extend(out.image_details().iter().cloned());
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => break,
            }
        }

        // The manifests, for the sizes they state; each checked against its digest.
        let digests: Vec<&str> = details.iter().filter_map(|d| d.image_digest()).collect();
        let mut manifests: HashMap<String, String> = HashMap::new();
        for chunk in digests.chunks(MAX_BATCH_IDS) {
            let out = self
                .client
                .batch_get_image()
                .repository_name(repository)
                .set_image_ids(Some(
                    chunk
                        .iter()
                        .map(|d| ImageIdentifier::builder().image_digest(*d).build())
                        .collect(),
                ))
                .accepted_media_types(MEDIA_MANIFEST)
                .accepted_media_types(MEDIA_DOCKER_MANIFEST)
                .send()
                .await
                .map_err(|e| map(op, repository, e))?;
            for image in out.images() {
                let (Some(json), Some(named)) = (
                    image.image_manifest(),
                    image.image_id().and_then(|i| i.image_digest()),
                ) else {
                    continue;
                };
                let resource = format!("{repository}@{named}");
                verify_manifest(op, &resource, json, Some(named))?;
                manifests.insert(named.to_owned(), json.to_owned());
            }
        }

        let mut images: Vec<ImageInfo> = details
            .iter()
            .filter_map(|d| {
                let digest = d.image_digest()?;
                // Deleted between the two calls: not an image any more.
                let json = manifests.get(digest)?;
                let size = manifest_size(op, json)
                    .or_else(|| d.image_size_in_bytes().map(i64::unsigned_abs))
                    .unwrap_or(0);
                let mut tags = d.image_tags().to_vec();
                tags.sort();
                Some(ImageInfo {
                    repository: repository.to_owned(),
                    digest: digest.to_owned(),
                    tags,
                    size,
                    pushed: time(d.image_pushed_at()),
                })
            })
            .collect();
        images.sort_by(|a, b| a.digest.cmp(&b.digest));
        Ok(images)
    }

    async fn delete_image(&self, repository: &str, reference: &ImageRef) -> Result<()> {
        let op = op("delete_image");
        check_repo(op, repository)?;
        let resource = format!("{repository}{reference}");
        let id = image_id(op, repository, reference)?;
        let out = self
            .client
            .batch_delete_image()
            .repository_name(repository)
            .image_ids(id)
            .send()
            .await
            .map_err(|e| map(op, repository, e))?;
        if out.image_ids().is_empty() || !out.failures().is_empty() {
            return Err(image_failure(
                op,
                &resource,
                out.failures()
                    .first()
                    .map(|f| (f.failure_code(), f.failure_reason())),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Serves `body` once, as an HTTP/1.1 answer to any request, on a loopback port.
    async fn serve_once(body: &'static [u8]) -> std::io::Result<String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/layer", listener.local_addr()?);
        tokio::spawn(async move {
            if let Ok((mut sock, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(body).await;
            }
        });
        Ok(url)
    }

    async fn images() -> EcrImages {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("eu-west-1"))
            .load()
            .await;
        EcrImages::new(&config)
    }

    #[tokio::test]
    async fn download_is_checked_against_the_digest() -> Result<()> {
        let images = images().await;
        let op = op("test");
        let good: &'static [u8] = b"layer bytes";
        let digest = sha256_digest(good);
        let url = serve_once(good).await.map_err(|e| op.internal("test", e))?;
        let data = images.download(op, "repo@x", &url, &digest).await?;
        assert_eq!(data.as_ref(), good);

        let url = serve_once(b"layer bytez")
            .await
            .map_err(|e| op.internal("test", e))?;
        let err = images
            .download(op, "repo@x", &url, &digest)
            .await
            .err()
            .ok_or_else(|| op.internal("test", "a corrupt layer was returned"))?;
        assert_eq!(err.kind(), ErrorKind::Internal);
        assert!(err.to_string().contains("corrupt"), "{err}");
        Ok(())
    }

    #[test]
    fn malformed_references_name_no_image() {
        let op = op("test");
        for r in [
            ImageRef::Tag("-bad".into()),
            ImageRef::Digest("md5:abc".into()),
        ] {
            let err = image_id(op, "repo", &r).err().map(|e| e.kind());
            assert_eq!(err, Some(ErrorKind::NotFound), "{r}");
        }
        let manifest = r#"{"schemaVersion":2}"#;
        assert!(verify_manifest(op, "r", manifest, Some(&sha256_digest(b"x"))).is_err());
        assert!(verify_manifest(op, "r", manifest, None).is_ok());
    }
}
