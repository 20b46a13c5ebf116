//! Benchmark of the local Crypto service, on disk (a temporary state root), release build.
//!
//! Two paths, measured separately because the service's `encrypt` takes at most 4 KiB (as
//! KMS):
//!
//! - `crypto/service_4KiB/{encrypt,decrypt}`: the service's own encrypt and decrypt of 4 KiB
//!   (key lookup, AES-256-GCM, and an audit event appended to `crypto/audit.jsonl`).
//! - `crypto/envelope_1MiB/{encrypt,decrypt}`: envelope encryption as a user does it for
//!   large data: one `generate_data_key`, then AES-256-GCM (the `aes-gcm` crate) over 1 MiB
//!   with that data key, in the program. The target is >= 1 GB/s.
//! - `crypto/generate_data_key`: the per-object cost of envelope encryption.
//!
//! Run: `cargo bench --bench crypto` (about 30 s). Criterion prints each throughput.

use std::hint::black_box;
use std::time::Duration;

use aes_gcm::aead::{Aead, AeadCore, OsRng, Payload};
use aes_gcm::{Aes256Gcm, KeyInit};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mvi::crypto::{CreateKey, EncryptionContext};
use mvi::local::LocalCloud;

const SMALL: usize = 4096;
const LARGE: usize = 1 << 20;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let cloud = rt
        .block_on(LocalCloud::builder().root(dir.path()).seed(1).build())
        .expect("local cloud");
    let crypto = cloud.crypto().expect("crypto service").clone();
    let key = rt
        .block_on(crypto.create_key(CreateKey::new("bench")))
        .expect("create key");
    let context: EncryptionContext = [("bench".to_string(), "crypto".to_string())].into();

    let small: Vec<u8> = (0..SMALL).map(|i| i as u8).collect();
    let small_ct = rt
        .block_on(crypto.encrypt(&key.id, &small, &context))
        .expect("encrypt");
    let mut group = c.benchmark_group("crypto/service_4KiB");
    group
        .throughput(Throughput::Bytes(SMALL as u64))
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    group.bench_function("encrypt", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(
                crypto
                    .encrypt(&key.id, &small, &context)
                    .await
                    .expect("encrypt"),
            )
        })
    });
    group.bench_function("decrypt", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(crypto.decrypt(&small_ct, &context).await.expect("decrypt"))
        })
    });
    group.finish();

    c.bench_function("crypto/generate_data_key", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(
                crypto
                    .generate_data_key(&key.id, &context)
                    .await
                    .expect("data key"),
            )
        })
    });

    // Envelope encryption: the data key is made once by the service; the bulk data is
    // encrypted by the program with it.
    let data_key = rt
        .block_on(crypto.generate_data_key(&key.id, &context))
        .expect("data key");
    let cipher = Aes256Gcm::new_from_slice(data_key.plaintext.expose()).expect("32-byte key");
    let large: Vec<u8> = (0..LARGE).map(|i| (i % 251) as u8).collect();
    let aad: &[u8] = b"object: backups/2024.tar";
    let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
    let large_ct = cipher
        .encrypt(&nonce, Payload { msg: &large, aad })
        .expect("seal");
    let mut group = c.benchmark_group("crypto/envelope_1MiB");
    group
        .throughput(Throughput::Bytes(LARGE as u64))
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    group.bench_function("encrypt", |b| {
        b.iter(|| {
            // A fresh nonce per message, as a user must.
            let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
            black_box(
                cipher
                    .encrypt(&nonce, Payload { msg: &large, aad })
                    .expect("seal"),
            )
        })
    });
    group.bench_function("decrypt", |b| {
        b.iter(|| {
            black_box(
                cipher
                    .decrypt(
                        &nonce,
                        Payload {
                            msg: &large_ct,
                            aad,
                        },
                    )
                    .expect("open"),
            )
        })
    });
    group.finish();

    let trail = dir.path().join("crypto/audit.jsonl");
    let events = std::fs::read(&trail).map(|b| b.iter().filter(|&&c| c == b'\n').count());
    println!(
        "\nservice_4KiB = the service's encrypt/decrypt (audited); envelope_1MiB = AES-256-GCM \
         with a data key in the program. Audit events written during the run: {}",
        events.map_or_else(|e| e.to_string(), |n| n.to_string())
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
