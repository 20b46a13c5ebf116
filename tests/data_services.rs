//! End to end through the facade: the five data services working together on one state root,
//! across a restart of the program.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use mvi::crypto::{CreateKey, EncryptionContext};
use mvi::kv::{Key, KeyAttr, KeyType, TableSpec, Value};
use mvi::log::{GetEvents, LogEvent};
use mvi::metric::{Datum, GetStatistics, MetricId, Statistic};
use mvi::prelude::*;
use mvi::{Cloud, item};

async fn open(dir: &std::path::Path) -> Cloud {
    mvi::local::LocalCloud::builder()
        .root(dir)
        .seed(1)
        .build()
        .await
        .expect("open local cloud")
}

/// A document is encrypted with a data key (envelope encryption), stored in Blob with the
/// wrapped data key in KV, written about in Log and counted in Metric; after a restart every
/// piece is still there and the document decrypts.
#[tokio::test]
async fn envelope_encrypted_document_survives_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let document = b"quarterly numbers: 42".repeat(1000);
    let context: EncryptionContext = [("doc".to_string(), "q3".to_string())].into();
    let now = chrono::Utc::now();
    let key_id;
    {
        let cloud = open(dir.path()).await;
        let crypto = cloud.crypto().unwrap();
        let key = crypto
            .create_key(CreateKey::new("documents").alias("alias/docs"))
            .await
            .unwrap();
        key_id = key.id.clone();
        let data_key = crypto.generate_data_key(&key.id, &context).await.unwrap();
        let cipher = Aes256Gcm::new_from_slice(data_key.plaintext.expose()).unwrap();
        let nonce = [7u8; 12];
        let sealed = cipher
            .encrypt(Nonce::from_slice(&nonce), document.as_slice())
            .unwrap();

        let blob = cloud.blob().unwrap();
        blob.create_bucket("documents").await.unwrap();
        blob.put("documents", "q3.bin", sealed).await.unwrap();

        let kv = cloud.kv().unwrap();
        kv.create_table(TableSpec::new(
            "doc-keys",
            KeyAttr::new("doc", KeyType::Str),
        ))
        .await
        .unwrap();
        kv.put(
            "doc-keys",
            item! { "doc" => "q3", "wrapped" => data_key.ciphertext.clone(), "nonce" => bytes::Bytes::from(nonce.to_vec()) },
        )
        .await
        .unwrap();

        let logs = cloud.logs().unwrap();
        logs.create_group("/docs", None).await.unwrap();
        logs.create_stream("/docs", "writer").await.unwrap();
        logs.put_events("/docs", "writer", vec![LogEvent::new(now, "stored q3")])
            .await
            .unwrap();

        cloud
            .metrics()
            .unwrap()
            .put_data("Docs", vec![Datum::new("Stored", 1.0, now)])
            .await
            .unwrap();
    }

    // The program restarts: everything is read back from disk.
    let cloud = open(dir.path()).await;
    let item = cloud
        .kv()
        .unwrap()
        .get_item("doc-keys", Key::new("q3"))
        .await
        .unwrap()
        .expect("wrapped key kept");
    let (Some(Value::Bytes(wrapped)), Some(Value::Bytes(nonce))) =
        (item.get("wrapped"), item.get("nonce"))
    else {
        panic!("item lost its attributes: {item:?}");
    };
    let data_key = cloud
        .crypto()
        .unwrap()
        .decrypt(wrapped, &context)
        .await
        .unwrap();
    assert_eq!(data_key.key_id, key_id);
    let sealed = cloud
        .blob()
        .unwrap()
        .get("documents", "q3.bin")
        .await
        .unwrap();
    let cipher = Aes256Gcm::new_from_slice(data_key.plaintext.expose()).unwrap();
    let opened = cipher
        .decrypt(Nonce::from_slice(nonce), sealed.as_ref())
        .unwrap();
    assert_eq!(opened, document);

    let events = cloud
        .logs()
        .unwrap()
        .get_events(GetEvents::new("/docs", "writer"))
        .await
        .unwrap();
    assert_eq!(events.items.len(), 1);
    assert_eq!(events.items[0].message, "stored q3");

    let stats = cloud
        .metrics()
        .unwrap()
        .get_statistics(GetStatistics::new(
            MetricId::new("Docs", "Stored"),
            now - chrono::Duration::hours(1),
            now + chrono::Duration::hours(1),
            std::time::Duration::from_secs(7200),
            [Statistic::Sum],
        ))
        .await
        .unwrap();
    let total: f64 = stats.iter().filter_map(|d| d.get(Statistic::Sum)).sum();
    assert_eq!(total, 1.0);
}

/// The same state root cannot be opened twice at once: the second open says why.
#[tokio::test]
async fn second_open_of_the_same_root_is_refused_clearly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let _first = open(dir.path()).await;
    let err = mvi::local::LocalCloud::builder()
        .root(dir.path())
        .build()
        .await
        .expect_err("second open must fail");
    assert_eq!(err.kind(), mvi::ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains("already open"), "{err}");
}
