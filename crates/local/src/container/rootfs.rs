//! Images to run: resolving a reference to a manifest digest, and unpacking its layers once
//! per digest into `rootfs/<hex>/`.
//!
//! A layer is extracted into a temporary directory beside the final one and renamed into
//! place only when complete, so a half-unpacked tree (a crash, a full disk, a refused entry)
//! is never used; two replicas unpacking the same image at once both succeed, the second
//! rename finding the first one's tree. Entries that would land outside the tree (absolute
//! paths, `..`, links pointing out) refuse the whole image.

use std::path::{Component, Path, PathBuf};

use mvi_core::image::{
    ImageConfig, ImageRef, Images, MEDIA_LAYER_TAR, Manifest, pull_config, split_reference,
};
use mvi_core::{Op, Result};

use crate::image::LocalImages;
use crate::storage::io_error;

/// An image reference split into repository and tag or digest.
pub(crate) fn parse_reference(op: Op, image: &str) -> Result<(String, ImageRef)> {
    // `mvi.local/<repo>` is the URI the Image service hands out; accept it as well.
    let bare = image.strip_prefix("mvi.local/").unwrap_or(image);
    split_reference(op, image, bare)
}

/// A resolved image: its manifest digest and what it runs.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Resolved {
    pub repository: String,
    pub digest: String,
    pub manifest: Manifest,
    pub config: ImageConfig,
}

/// Resolves `image` to a manifest digest and config (NotFound if it does not exist).
pub(crate) async fn resolve(op: Op, images: &LocalImages, image: &str) -> Result<Resolved> {
    let (repository, reference) = parse_reference(op, image)?;
    let (digest, manifest, config) =
        pull_config(images, &repository, &reference)
            .await
            .map_err(|e| {
                if e.is_not_found() {
                    op.not_found(image, format!("no such image: {}", e.message()))
                } else {
                    e
                }
            })?;
    Ok(Resolved {
        repository,
        digest,
        manifest,
        config,
    })
}

/// The unpacked tree of `image` under `root`, unpacking it first if needed.
pub(crate) async fn unpack(
    op: Op,
    images: &LocalImages,
    root: &Path,
    image: &Resolved,
) -> Result<PathBuf> {
    let hex = image.digest.trim_start_matches("sha256:");
    let target = root.join(hex);
    if target.is_dir() {
        return Ok(target);
    }
    let mut layers = Vec::new();
    for layer in &image.manifest.layers {
        if layer.media_type != MEDIA_LAYER_TAR {
            return Err(op.invalid(
                &image.digest,
                format!(
                    "layer {} is {}; only uncompressed tar layers ({MEDIA_LAYER_TAR}) run locally",
                    layer.digest, layer.media_type
                ),
            ));
        }
        // pull_blob checks the bytes against the digest.
        layers.push(images.pull_blob(&image.repository, &layer.digest).await?);
    }
    let root = root.to_path_buf();
    let digest = image.digest.clone();
    tokio::task::spawn_blocking(move || extract(op, &root, &digest, &layers))
        .await
        .map_err(|e| op.internal(&image.digest, e))?
}

fn extract(op: Op, root: &Path, digest: &str, layers: &[bytes::Bytes]) -> Result<PathBuf> {
    let target = root.join(digest.trim_start_matches("sha256:"));
    std::fs::create_dir_all(root).map_err(|e| io_error(op, root, e))?;
    let tmp = tempfile::Builder::new()
        .prefix(".unpacking-")
        .tempdir_in(root)
        .map_err(|e| io_error(op, root, e))?;
    for layer in layers {
        let mut archive = tar::Archive::new(layer.as_ref());
        archive.set_preserve_permissions(true);
        let entries = archive
            .entries()
            .map_err(|e| op.invalid(digest, format!("a layer is not a tar archive: {e}")))?;
        for entry in entries {
            let mut entry =
                entry.map_err(|e| op.invalid(digest, format!("a layer entry is damaged: {e}")))?;
            let path = entry
                .path()
                .map_err(|e| op.invalid(digest, format!("a layer entry has a bad path: {e}")))?
                .into_owned();
            check_inside(op, digest, &path)?;
            if let Some(link) = entry.link_name().ok().flatten() {
                let escapes = link.is_absolute()
                    || link.components().any(|c| matches!(c, Component::ParentDir));
                if escapes {
                    return Err(op.invalid(
                        digest,
                        format!(
                            "layer entry {} links to {}, outside the image; refusing the image",
                            path.display(),
                            link.display()
                        ),
                    ));
                }
            }
            // OCI whiteouts: `.wh.<name>` deletes <name> from the layers below.
            if let Some(name) = path.file_name().and_then(|n| n.to_str())
                && let Some(hidden) = name.strip_prefix(".wh.")
            {
                let dir = tmp.path().join(path.parent().unwrap_or(Path::new("")));
                if hidden == ".wh..opq" {
                    let _ = std::fs::remove_dir_all(&dir);
                    let _ = std::fs::create_dir_all(&dir);
                } else {
                    let victim = dir.join(hidden);
                    let _ = std::fs::remove_dir_all(&victim);
                    let _ = std::fs::remove_file(&victim);
                }
                continue;
            }
            let ok = entry.unpack_in(tmp.path()).map_err(|e| {
                op.invalid(
                    digest,
                    format!("cannot unpack layer entry {}: {e}", path.display()),
                )
            })?;
            if !ok {
                return Err(op.invalid(
                    digest,
                    format!("layer entry {} escapes the image", path.display()),
                ));
            }
        }
    }
    let tmp = tmp.keep();
    match std::fs::rename(&tmp, &target) {
        Ok(()) => Ok(target),
        // Another replica unpacked the same image first: use its tree.
        Err(_) if target.is_dir() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(target)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(io_error(op, &target, e))
        }
    }
}

fn check_inside(op: Op, digest: &str, path: &Path) -> Result<()> {
    let escapes = path.components().any(|c| {
        matches!(
            c,
            Component::ParentDir | Component::RootDir | Component::Prefix(_)
        )
    });
    if escapes {
        return Err(op.invalid(
            digest,
            format!(
                "layer entry {} points outside the image; refusing the image",
                path.display()
            ),
        ));
    }
    Ok(())
}

/// Maps a path of the image (`/app`, `app`) to the unpacked tree.
pub(crate) fn inside(rootfs: &Path, path: &str) -> PathBuf {
    let rel: PathBuf = Path::new(path)
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    rootfs.join(rel)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mvi_core::Service;

    fn op() -> Op {
        Op::new(Service::Container, "test")
    }

    #[test]
    fn references() {
        let (r, t) = parse_reference(op(), "web:v1").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((r.as_str(), t), ("web", ImageRef::Tag("v1".into())));
        let (r, t) = parse_reference(op(), "mvi.local/a/b").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((r.as_str(), t), ("a/b", ImageRef::Tag("latest".into())));
        let (r, t) = parse_reference(op(), "web@sha256:ab").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (r.as_str(), t),
            ("web", ImageRef::Digest("sha256:ab".into()))
        );
        assert!(parse_reference(op(), "").is_err());
        assert!(parse_reference(op(), "web:").is_err());
    }

    #[test]
    fn traversal_is_refused_and_nothing_is_left() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_mode(0o644);
        // `append_data` refuses `..` itself, so write the name into the header raw.
        let name = b"../evil";
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_cksum();
        b.append(&h, &b"hi"[..]).unwrap_or_else(|e| panic!("{e}"));
        let layer = bytes::Bytes::from(b.into_inner().unwrap_or_else(|e| panic!("{e}")));
        let err = extract(op(), dir.path(), "sha256:00", &[layer]).unwrap_err();
        assert!(err.to_string().contains("outside"), "{err}");
        assert_eq!(
            std::fs::read_dir(dir.path())
                .map(|d| d.count())
                .unwrap_or(9),
            0
        );
        assert!(
            !dir.path()
                .parent()
                .unwrap_or(dir.path())
                .join("evil")
                .exists()
        );
    }

    #[test]
    fn paths_map_into_the_tree() {
        let root = Path::new("/r");
        assert_eq!(inside(root, "/app"), Path::new("/r/app"));
        assert_eq!(inside(root, "/../x"), Path::new("/r/x"));
        assert_eq!(inside(root, "/"), Path::new("/r"));
    }
}
