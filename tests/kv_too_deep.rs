//! A KV table holding an item nested 2,000 levels deep, written before the depth limit
//! existed (the fixture `tests/fixtures/kv-too-deep`, made by a build that accepted it):
//! every process that read it used to abort with a stack overflow. Now it opens, the other
//! items read, the deep one is reported unreadable with a clear error, and it is deleted.

#![allow(clippy::unwrap_used)]

#[path = "common/repo.rs"]
mod repo;

use mvi::ErrorKind;
use mvi::kv::{DeleteItem, Key, Scan, Value};

#[tokio::test]
async fn a_table_with_a_too_deep_item_opens_scans_and_deletes_without_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = repo::package_path("tests/fixtures/kv-too-deep");
    std::fs::create_dir_all(dir.path().join("kv")).unwrap();
    for f in ["kv.redb", "wal.log"] {
        std::fs::copy(fixture.join(f), dir.path().join("kv").join(f)).unwrap();
    }
    let cloud = mvi::local::LocalCloud::builder()
        .root(dir.path())
        .build()
        .await
        .unwrap();
    let kv = cloud.kv().unwrap();
    let shallow = kv
        .get_item("deep", Key::new(Value::Str("shallow".into())))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(shallow["n"], Value::Int(1));
    let e = kv
        .get_item("deep", Key::new(Value::Str("deep".into())))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Internal, "{e}");
    assert!(
        e.message().contains("more than 128 levels deep") && e.message().contains("deleted"),
        "{e}"
    );
    let e = kv.scan(Scan::new("deep")).await.unwrap_err();
    assert!(e.message().contains("cannot be read"), "{e}");
    let gone = kv
        .delete_item(DeleteItem::new("deep", Key::new(Value::Str("deep".into()))))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(gone.len(), 1, "answered by its key alone: {gone:?}");
    let left = kv.scan(Scan::new("deep")).await.unwrap();
    assert_eq!(left.items.len(), 1);
    assert_eq!(left.items[0]["id"], Value::Str("shallow".into()));
}
