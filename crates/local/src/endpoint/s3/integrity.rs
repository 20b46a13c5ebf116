//! The integrity of an upload's body: `Content-MD5` and S3's additional checksums
//! (`x-amz-checksum-crc32`, `-crc32c`, `-sha1`, `-sha256`, `-crc64nvme`), given as headers or
//! as trailers of an aws-chunked body.
//!
//! The body is hashed as it streams to the store; at its end the digests are compared with
//! what the client sent, and a mismatch ends the stream with an error instead, so the store
//! (which commits only at the end of a body) keeps nothing. The checksums computed are handed
//! back for the response, as S3 returns them.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use md5::{Digest, Md5};
use mvi_core::{ByteStream, Op, Service};
use s3s::checksum::ChecksumHasher;
use s3s::crypto::{Checksum as _, Crc32, Crc32c, Crc64Nvme, Sha1, Sha256};
use s3s::dto::{Checksum, ChecksumAlgorithm};
use s3s::{S3Error, S3ErrorCode, S3Result, TrailingHeaders};

/// One of S3's additional checksum algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Algorithm {
    Crc32,
    Crc32c,
    Sha1,
    Sha256,
    Crc64Nvme,
}

impl Algorithm {
    const ALL: [Algorithm; 5] = [
        Algorithm::Crc32,
        Algorithm::Crc32c,
        Algorithm::Sha1,
        Algorithm::Sha256,
        Algorithm::Crc64Nvme,
    ];

    fn name(self) -> &'static str {
        match self {
            Algorithm::Crc32 => ChecksumAlgorithm::CRC32,
            Algorithm::Crc32c => ChecksumAlgorithm::CRC32C,
            Algorithm::Sha1 => ChecksumAlgorithm::SHA1,
            Algorithm::Sha256 => ChecksumAlgorithm::SHA256,
            Algorithm::Crc64Nvme => ChecksumAlgorithm::CRC64NVME,
        }
    }

    /// The header (or trailer) carrying its value.
    fn header(self) -> String {
        format!("x-amz-checksum-{}", self.name().to_ascii_lowercase())
    }

    fn value(self, c: &Checksum) -> Option<&String> {
        match self {
            Algorithm::Crc32 => c.checksum_crc32.as_ref(),
            Algorithm::Crc32c => c.checksum_crc32c.as_ref(),
            Algorithm::Sha1 => c.checksum_sha1.as_ref(),
            Algorithm::Sha256 => c.checksum_sha256.as_ref(),
            Algorithm::Crc64Nvme => c.checksum_crc64nvme.as_ref(),
        }
    }

    fn enable(self, h: &mut ChecksumHasher) {
        match self {
            Algorithm::Crc32 => h.crc32 = Some(Crc32::new()),
            Algorithm::Crc32c => h.crc32c = Some(Crc32c::new()),
            Algorithm::Sha1 => h.sha1 = Some(Sha1::new()),
            Algorithm::Sha256 => h.sha256 = Some(Sha256::new()),
            Algorithm::Crc64Nvme => h.crc64nvme = Some(Crc64Nvme::new()),
        }
    }
}

/// What a body must match, from the request's headers.
pub(crate) struct Expected {
    /// `Content-MD5`, base64.
    pub(crate) md5: Option<String>,
    /// `x-amz-checksum-*` values sent as headers.
    pub(crate) checksums: Checksum,
    /// `x-amz-sdk-checksum-algorithm` (or the operation's `ChecksumAlgorithm`).
    pub(crate) algorithm: Option<ChecksumAlgorithm>,
    /// `x-amz-trailer`: the checksum header sent after an aws-chunked body.
    pub(crate) trailer: Option<String>,
    /// Where the trailers appear once the body has been read.
    pub(crate) trailers: Option<TrailingHeaders>,
}

/// The checksums of a body, once it has been read to its end and matched.
#[derive(Clone, Default)]
pub(crate) struct Computed(Arc<Mutex<Option<Checksum>>>);

impl Computed {
    /// The checksums computed (none before the body's end, or when none was asked for).
    pub(crate) fn take(&self) -> Checksum {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .unwrap_or_default()
    }
}

/// `body`, checked against `expected` as it ends.
pub(crate) fn checked(body: ByteStream, expected: Expected) -> S3Result<(ByteStream, Computed)> {
    let md5 = match &expected.md5 {
        None => None,
        Some(b64) => {
            use base64::Engine as _;
            let digest = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .ok()
                .filter(|d| d.len() == 16)
                .ok_or_else(|| {
                    S3Error::with_message(
                        S3ErrorCode::InvalidDigest,
                        "the Content-MD5 header is not the base64 of 16 bytes",
                    )
                })?;
            Some((Md5::new(), digest))
        }
    };
    let trailer = expected.trailer.as_deref().map(str::to_ascii_lowercase);
    let algorithms: Vec<Algorithm> = Algorithm::ALL
        .into_iter()
        .filter(|a| {
            a.value(&expected.checksums).is_some()
                || expected
                    .algorithm
                    .as_ref()
                    .is_some_and(|x| x.as_str().eq_ignore_ascii_case(a.name()))
                || trailer.as_deref() == Some(a.header().as_str())
        })
        .collect();
    if let Some(t) = &trailer
        && !algorithms.iter().any(|a| a.header() == *t)
    {
        return Err(S3Error::with_message(
            S3ErrorCode::InvalidArgument,
            format!("the trailer {t:?} is not a checksum this endpoint knows"),
        ));
    }
    let hasher = (!algorithms.is_empty()).then(|| {
        let mut h = ChecksumHasher::default();
        for a in &algorithms {
            a.enable(&mut h);
        }
        h
    });
    let computed = Computed::default();
    let stream = Checked {
        inner: body,
        md5,
        hasher,
        algorithms,
        expected: expected.checksums,
        trailers: expected.trailers,
        computed: computed.clone(),
    };
    Ok((Box::pin(stream), computed))
}

struct Checked {
    inner: ByteStream,
    md5: Option<(Md5, Vec<u8>)>,
    hasher: Option<ChecksumHasher>,
    algorithms: Vec<Algorithm>,
    expected: Checksum,
    trailers: Option<TrailingHeaders>,
    computed: Computed,
}

fn mismatch(what: &str) -> mvi_core::Error {
    mvi_core::blob::Reason::BadDigest.tag(
        Op::new(Service::Blob, "put_object")
            .invalid("body", format!("the body does not match its {what}")),
    )
}

impl Checked {
    /// Compares the digests with what the client sent; the checksums, when they match.
    fn finish(&mut self) -> mvi_core::Result<()> {
        if let Some((hasher, want)) = self.md5.take()
            && hasher.finalize().as_slice() != want.as_slice()
        {
            return Err(mismatch("Content-MD5 header"));
        }
        let Some(hasher) = self.hasher.take() else {
            return Ok(());
        };
        let got = hasher.finalize();
        for a in &self.algorithms {
            let want = match a.value(&self.expected) {
                Some(v) => Some(v.clone()),
                None => self.trailers.as_ref().and_then(|t| {
                    t.read(|h| {
                        h.get(a.header().as_str())
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned)
                    })
                    .flatten()
                }),
            };
            if let Some(want) = want
                && a.value(&got) != Some(&want)
            {
                return Err(mismatch(&format!("{} value", a.header())));
            }
        }
        *self
            .computed
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(got);
        Ok(())
    }
}

impl Stream for Checked {
    type Item = mvi_core::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match this.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                if let Some((h, _)) = this.md5.as_mut() {
                    h.update(&chunk);
                }
                if let Some(h) = this.hasher.as_mut() {
                    h.update(&chunk);
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(None) if this.md5.is_some() || this.hasher.is_some() => {
                match this.finish() {
                    Ok(()) => Poll::Ready(None),
                    Err(e) => Poll::Ready(Some(Err(e))),
                }
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn expected() -> Expected {
        Expected {
            md5: None,
            checksums: Checksum::default(),
            algorithm: None,
            trailer: None,
            trailers: None,
        }
    }

    async fn drain(s: ByteStream) -> mvi_core::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut s = s;
        while let Some(chunk) = s.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn checksums_are_computed_matched_and_returned() {
        let body = || mvi_core::common::once_stream(Bytes::from_static(b"hello"));
        // CRC32 of "hello", base64 (as S3 and the SDKs give it).
        let crc = "NhCmhg==";
        let (s, computed) = checked(
            body(),
            Expected {
                algorithm: Some(ChecksumAlgorithm::from_static(ChecksumAlgorithm::CRC32)),
                ..expected()
            },
        )
        .expect("a checked body");
        assert_eq!(drain(s).await.expect("the body"), b"hello");
        assert_eq!(computed.take().checksum_crc32.as_deref(), Some(crc));

        let wrong = Checksum {
            checksum_crc32: Some("AAAAAA==".into()),
            ..Default::default()
        };
        let (s, computed) = checked(
            body(),
            Expected {
                checksums: wrong,
                ..expected()
            },
        )
        .expect("a checked body");
        let err = drain(s).await.expect_err("a mismatch");
        assert!(err.message().contains("x-amz-checksum-crc32"), "{err}");
        assert!(computed.take().checksum_crc32.is_none());

        let (s, _) = checked(
            body(),
            Expected {
                md5: Some("XUFAKrxLKna5cZ2REBfFkg==".into()),
                ..expected()
            },
        )
        .expect("a checked body");
        drain(s).await.expect("MD5 of hello matches");
        let (s, _) = checked(
            body(),
            Expected {
                md5: Some("AAAAAAAAAAAAAAAAAAAAAA==".into()),
                ..expected()
            },
        )
        .expect("a checked body");
        assert!(drain(s).await.is_err());
        assert!(
            checked(
                body(),
                Expected {
                    md5: Some("nope".into()),
                    ..expected()
                }
            )
            .is_err()
        );
    }
}
