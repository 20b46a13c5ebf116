//! Memory of a 1 GiB object through the local S3 endpoint: one streamed PUT (`aws s3api
//! put-object`) and one download (`aws s3 cp s3://.. -`, ranged GETs) by the AWS CLI, while this
//! process serves them; prints the peak RSS growth of each and the throughput. A benchmark,
//! not a test: it prints the figures for docs/benchmarks.md.
//!
//! ```text
//! cargo bench --bench endpoints_memory
//! ```

use std::process::{Command, Stdio};
use std::time::Instant;

use mvi::local::LocalCloud;

const SIZE: u64 = 1024 * 1024 * 1024;

/// A field of /proc/self/status in KiB.
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Resets the peak RSS (VmHWM) to the current RSS (Linux ≥ 4.0).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn aws(env: &[(String, String)], args: &[String], stdout: Stdio) {
    let status = Command::new("aws")
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .stdout(stdout)
        .status()
        .expect("the AWS CLI runs");
    assert!(status.success(), "aws {args:?}: {status}");
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let local = LocalCloud::builder()
        .root(dir.path().join("cloud"))
        .build_local()
        .await
        .expect("a local cloud");
    let endpoints = local.endpoints();
    let env = endpoints.env(endpoints.admin());
    local
        .cloud()
        .blob()
        .expect("blob")
        .create_bucket("big")
        .await
        .expect("a bucket");
    // A sparse file: the CLI reads 1 GiB of zeros without the disk holding them twice.
    let file = dir.path().join("one-gib");
    std::fs::File::create(&file)
        .and_then(|f| f.set_len(SIZE))
        .expect("the input file");
    let path = file.to_str().expect("utf-8").to_owned();

    for (what, args, out) in [
        (
            "PUT (one streamed request)",
            vec![
                "s3api",
                "put-object",
                "--bucket",
                "big",
                "--key",
                "one-gib",
                "--body",
                &path,
            ],
            Stdio::null(),
        ),
        (
            "GET (aws s3 cp to stdout)",
            vec!["s3", "cp", "s3://big/one-gib", "-"],
            Stdio::null(),
        ),
    ] {
        reset_peak();
        let before = status_kib("VmRSS:");
        let start = Instant::now();
        let env = env.clone();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        tokio::task::spawn_blocking(move || aws(&env, &args, out))
            .await
            .expect("the CLI task");
        let elapsed = start.elapsed();
        let growth = status_kib("VmHWM:").saturating_sub(before);
        println!(
            "1 GiB {what}: peak RSS growth {:.1} MiB, {:.1} s ({:.0} MiB/s)",
            growth as f64 / 1024.0,
            elapsed.as_secs_f64(),
            1024.0 / elapsed.as_secs_f64()
        );
    }
}
