//! What exists in a cloud, read back for a test's assertions.
#![allow(dead_code)] // each test crate uses its own subset

use mvi::Cloud;

/// The names of the cloud's buckets, sorted.
pub async fn bucket_names(cloud: &Cloud) -> Vec<String> {
    let mut names: Vec<String> = cloud
        .blob()
        .expect("a blob service")
        .list_buckets()
        .await
        .expect("list buckets")
        .into_iter()
        .map(|b| b.name)
        .collect();
    names.sort();
    names
}
