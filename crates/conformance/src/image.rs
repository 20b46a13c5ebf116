//! Image cases.

use bytes::Bytes;
use mvi_core::image::{
    Descriptor, ImageConfig, ImageRef, MEDIA_CONFIG, MEDIA_LAYER_TAR, Manifest, build_from_dir,
    pull_config, sha256_digest,
};

use crate::{Ctx, Outcome, ensure, expect_err};

/// Every Image case, as tests against `$target`.
#[macro_export]
macro_rules! image_cases {
    ($target:expr) => {
        $crate::__cases! { $target;
            image_repository_lifecycle => $crate::image::repository_lifecycle;
            image_invalid_repository_name_refused => $crate::image::invalid_repository_name_refused;
            image_blob_roundtrip => $crate::image::blob_roundtrip [LayerDownload];
            image_blob_digest_mismatch_refused => $crate::image::blob_digest_mismatch_refused;
            image_manifest_by_tag_and_digest => $crate::image::manifest_by_tag_and_digest;
            image_manifest_with_missing_blob_refused => $crate::image::manifest_with_missing_blob_refused;
            image_retag_and_list => $crate::image::retag_and_list;
            image_delete_by_tag_and_digest => $crate::image::delete_by_tag_and_digest;
            image_delete_nonempty_repository_needs_force => $crate::image::delete_nonempty_repository_needs_force;
            image_unknown_repository_not_found => $crate::image::unknown_repository_not_found;
            image_invalid_tag_and_digest_refused => $crate::image::invalid_tag_and_digest_refused;
            image_build_from_directory => $crate::image::build_from_directory [LayerDownload];
            image_state_survives_reopen => $crate::image::state_survives_reopen [Reopen, LayerDownload];
        }
    };
}

/// Pushes a one-layer image (layer `content`) to `repo` under `tag`; returns its digest.
async fn push_image(
    ctx: &Ctx,
    repo: &str,
    content: &[u8],
    tag: Option<&str>,
) -> Result<(String, Manifest), crate::Failure> {
    let images = ctx.cloud().images()?.clone();
    let layer = Bytes::copy_from_slice(content);
    let config =
        Bytes::from(ImageConfig::new(["/bin/true"]).to_oci_json(vec![sha256_digest(&layer)]));
    let manifest = Manifest {
        config: Descriptor {
            media_type: MEDIA_CONFIG.into(),
            digest: sha256_digest(&config),
            size: config.len() as u64,
        },
        layers: vec![Descriptor {
            media_type: MEDIA_LAYER_TAR.into(),
            digest: sha256_digest(&layer),
            size: layer.len() as u64,
        }],
    };
    images
        .push_blob(repo, &manifest.layers[0].digest, layer)
        .await?;
    images
        .push_blob(repo, &manifest.config.digest, config)
        .await?;
    let digest = images.push_manifest(repo, &manifest, tag).await?;
    Ok((digest, manifest))
}

/// A repository is created (twice is AlreadyExists), listed and deleted.
pub async fn repository_lifecycle(ctx: &mut Ctx) -> Outcome {
    let images = ctx.cloud().images()?.clone();
    let name = ctx.name("app/web");
    let repo = images.create_repository(&name).await?;
    ensure!(
        repo.name == name && repo.uri.ends_with(&name),
        "repository {repo:?}"
    );
    expect_err!(images.create_repository(&name).await, AlreadyExists);
    ensure!(
        images
            .list_repositories()
            .await?
            .iter()
            .any(|r| r.name == name),
        "not listed"
    );
    images.delete_repository(&name, false).await?;
    ensure!(
        !images
            .list_repositories()
            .await?
            .iter()
            .any(|r| r.name == name),
        "still listed"
    );
    Ok(())
}

/// Upper case, bad characters and bad lengths are refused.
pub async fn invalid_repository_name_refused(ctx: &mut Ctx) -> Outcome {
    let images = ctx.cloud().images()?.clone();
    for bad in ["Web", "a", "web app", "-web", "web/", &"a".repeat(257)] {
        expect_err!(images.create_repository(bad).await, InvalidArgument);
    }
    Ok(())
}

/// A blob pushed by digest pulls back byte for byte.
pub async fn blob_roundtrip(ctx: &mut Ctx) -> Outcome {
    let images = ctx.cloud().images()?.clone();
    let name = ctx.name("blobs");
    images.create_repository(&name).await?;
    let data = Bytes::from(vec![42u8; 100_000]);
    let digest = sha256_digest(&data);
    images.push_blob(&name, &digest, data.clone()).await?;
    ensure!(
        images.pull_blob(&name, &digest).await? == data,
        "pulled blob differs"
    );
    images.delete_repository(&name, true).await?;
    Ok(())
}

/// A blob whose content does not hash to the given digest is refused.
pub async fn blob_digest_mismatch_refused(ctx: &mut Ctx) -> Outcome {
    let images = ctx.cloud().images()?.clone();
    let name = ctx.name("mismatch");
    images.create_repository(&name).await?;
    let wrong = sha256_digest(b"something else");
    expect_err!(
        images
            .push_blob(&name, &wrong, Bytes::from_static(b"content"))
            .await,
        InvalidArgument
    );
    expect_err!(images.pull_blob(&name, &wrong).await, NotFound);
    images.delete_repository(&name, true).await?;
    Ok(())
}

/// A manifest pulls back by tag and by digest, with the digest push_manifest returned.
pub async fn manifest_by_tag_and_digest(ctx: &mut Ctx) -> Outcome {
    let images = ctx.cloud().images()?.clone();
    let name = ctx.name("manifests");
    images.create_repository(&name).await?;
    let (digest, manifest) = push_image(ctx, &name, b"layer one", Some("v1")).await?;
    ensure!(
        digest == manifest.digest(),
        "digest {digest} is not the manifest's"
    );
    let (d1, m1) = images
        .pull_manifest(&name, &ImageRef::Tag("v1".into()))
        .await?;
    let (d2, m2) = images
        .pull_manifest(&name, &ImageRef::Digest(digest.clone()))
        .await?;
    ensure!(d1 == digest && d2 == digest, "digests {d1} {d2}");
    ensure!(m1 == manifest && m2 == manifest, "manifest changed");
    expect_err!(
        images
            .pull_manifest(&name, &ImageRef::Tag("v2".into()))
            .await,
        NotFound
    );
    images.delete_repository(&name, true).await?;
    Ok(())
}

/// A manifest naming a blob that was never pushed is refused.
pub async fn manifest_with_missing_blob_refused(ctx: &mut Ctx) -> Outcome {
    let images = ctx.cloud().images()?.clone();
    let name = ctx.name("missing");
    images.create_repository(&name).await?;
    let config = Bytes::from_static(b"{}");
    images
        .push_blob(&name, &sha256_digest(&config), config.clone())
        .await?;
    let manifest = Manifest {
        config: Descriptor {
            media_type: MEDIA_CONFIG.into(),
            digest: sha256_digest(&config),
            size: 2,
        },
        layers: vec![Descriptor {
            media_type: MEDIA_LAYER_TAR.into(),
            digest: sha256_digest(b"never pushed"),
            size: 12,
        }],
    };
    expect_err!(
        images.push_manifest(&name, &manifest, Some("v1")).await,
        InvalidArgument
    );
    ensure!(
        images.list_images(&name).await?.is_empty(),
        "a refused manifest was kept"
    );
    images.delete_repository(&name, true).await?;
    Ok(())
}

/// A second tag points at an existing image; listing shows both tags and the size.
pub async fn retag_and_list(ctx: &mut Ctx) -> Outcome {
    let images = ctx.cloud().images()?.clone();
    let name = ctx.name("retag");
    images.create_repository(&name).await?;
    let (digest, manifest) = push_image(ctx, &name, b"layer", Some("v1")).await?;
    images.tag(&name, &digest, "latest").await?;
    let listed = images.list_images(&name).await?;
    ensure!(listed.len() == 1, "one image expected, got {listed:?}");
    let mut tags = listed[0].tags.clone();
    tags.sort();
    ensure!(tags == ["latest", "v1"], "tags {tags:?}");
    let size = manifest.config.size + manifest.layers[0].size;
    ensure!(listed[0].size == size, "size {} != {size}", listed[0].size);
    images.delete_repository(&name, true).await?;
    Ok(())
}

/// Deleting by tag removes the tag (and the image with its last tag); by digest, the image.
pub async fn delete_by_tag_and_digest(ctx: &mut Ctx) -> Outcome {
    let images = ctx.cloud().images()?.clone();
    let name = ctx.name("delete");
    images.create_repository(&name).await?;
    let (a, _) = push_image(ctx, &name, b"a", Some("a1")).await?;
    images.tag(&name, &a, "a2").await?;
    let (b, _) = push_image(ctx, &name, b"b", Some("b1")).await?;
    images
        .delete_image(&name, &ImageRef::Tag("a1".into()))
        .await?;
    ensure!(
        images
            .pull_manifest(&name, &ImageRef::Digest(a.clone()))
            .await
            .is_ok(),
        "image went with one of two tags"
    );
    images
        .delete_image(&name, &ImageRef::Tag("a2".into()))
        .await?;
    expect_err!(
        images.pull_manifest(&name, &ImageRef::Digest(a)).await,
        NotFound
    );
    images
        .delete_image(&name, &ImageRef::Digest(b.clone()))
        .await?;
    expect_err!(
        images
            .pull_manifest(&name, &ImageRef::Tag("b1".into()))
            .await,
        NotFound
    );
    expect_err!(
        images.delete_image(&name, &ImageRef::Digest(b)).await,
        NotFound
    );
    images.delete_repository(&name, false).await?;
    Ok(())
}

/// A repository holding images is deleted only with force.
pub async fn delete_nonempty_repository_needs_force(ctx: &mut Ctx) -> Outcome {
    let images = ctx.cloud().images()?.clone();
    let name = ctx.name("force");
    images.create_repository(&name).await?;
    push_image(ctx, &name, b"x", Some("v1")).await?;
    expect_err!(
        images.delete_repository(&name, false).await,
        PreconditionFailed
    );
    images.delete_repository(&name, true).await?;
    expect_err!(images.list_images(&name).await, NotFound);
    Ok(())
}

/// Every operation on a repository that does not exist is NotFound.
pub async fn unknown_repository_not_found(ctx: &mut Ctx) -> Outcome {
    let images = ctx.cloud().images()?.clone();
    let name = ctx.name("nope");
    let d = sha256_digest(b"x");
    expect_err!(
        images.push_blob(&name, &d, Bytes::from_static(b"x")).await,
        NotFound
    );
    expect_err!(images.pull_blob(&name, &d).await, NotFound);
    expect_err!(
        images
            .pull_manifest(&name, &ImageRef::Tag("v1".into()))
            .await,
        NotFound
    );
    expect_err!(images.list_images(&name).await, NotFound);
    expect_err!(images.delete_repository(&name, true).await, NotFound);
    Ok(())
}

/// Malformed tags and digests are refused.
pub async fn invalid_tag_and_digest_refused(ctx: &mut Ctx) -> Outcome {
    let images = ctx.cloud().images()?.clone();
    let name = ctx.name("invalid");
    images.create_repository(&name).await?;
    expect_err!(
        images
            .push_blob(&name, "md5:abc", Bytes::from_static(b"x"))
            .await,
        InvalidArgument
    );
    let (digest, _) = push_image(ctx, &name, b"x", None).await?;
    expect_err!(images.tag(&name, &digest, "-bad").await, InvalidArgument);
    expect_err!(
        images.tag(&name, &digest, "has space").await,
        InvalidArgument
    );
    images.delete_repository(&name, true).await?;
    Ok(())
}

/// An image built from a directory keeps its files and its config.
pub async fn build_from_directory(ctx: &mut Ctx) -> Outcome {
    let images = ctx.cloud().images()?.clone();
    let name = ctx.name("built");
    images.create_repository(&name).await?;
    let dir = std::env::temp_dir().join(format!("{}-build", ctx.name("img")));
    std::fs::create_dir_all(dir.join("static"))?;
    std::fs::write(dir.join("app.py"), "print('hi')\n")?;
    std::fs::write(dir.join("static/index.html"), "<h1>hi</h1>")?;
    let config = ImageConfig::new(["python3", "app.py"])
        .port(8080)
        .env("MODE", "prod")
        .working_dir("/app");
    let built = build_from_dir(images.as_ref(), &name, &dir, &config, Some("v1")).await;
    std::fs::remove_dir_all(&dir)?;
    let digest = built?;
    let (d, manifest, back) =
        pull_config(images.as_ref(), &name, &ImageRef::Tag("v1".into())).await?;
    ensure!(d == digest, "tag points at {d}, built {digest}");
    ensure!(back == config, "config changed: {back:?}");
    let layer = images.pull_blob(&name, &manifest.layers[0].digest).await?;
    let text = String::from_utf8_lossy(&layer);
    ensure!(
        text.contains("app.py") && text.contains("static/index.html"),
        "layer lacks the files"
    );
    images.delete_repository(&name, true).await?;
    Ok(())
}

/// Repositories, images and tags survive a restart.
pub async fn state_survives_reopen(ctx: &mut Ctx) -> Outcome {
    let name = ctx.name("persist");
    ctx.cloud().images()?.create_repository(&name).await?;
    let (digest, manifest) = push_image(ctx, &name, b"persisted layer", Some("v1")).await?;
    ctx.reopen().await?;
    let images = ctx.cloud().images()?.clone();
    let (d, m) = images
        .pull_manifest(&name, &ImageRef::Tag("v1".into()))
        .await?;
    ensure!(d == digest && m == manifest, "image changed across restart");
    ensure!(
        images
            .pull_blob(&name, &manifest.layers[0].digest)
            .await?
            .as_ref()
            == b"persisted layer",
        "layer changed"
    );
    images.delete_repository(&name, true).await?;
    Ok(())
}
