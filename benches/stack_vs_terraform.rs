//! The stack engine side by side with Terraform, on this machine, in one run.
//!
//! Run: `cargo bench --bench stack_vs_terraform` (release build; needs `terraform` on PATH,
//! else the Terraform column reads n/a). Nothing touches the network: Terraform only uses
//! its built-in `terraform_data` resource (no providers block), and the engine uses `Noop`
//! resources (`mvi:test:Noop`, which exist only in state) in a `FileStore` in a temporary
//! directory, over an in-memory local cloud, with the default options (refresh on).
//!
//! Figures:
//! - apply of 1,000 new independent resources: `Stack::up` vs `terraform apply -auto-approve`;
//! - preview of an in-sync stack: `Stack::preview` (a fresh `Stack` declaring the same
//!   program, as a new run of the program would) vs `terraform plan` (refresh on in both);
//!   the engine at 10,000 resources and at the size Terraform is measured at;
//! - the state of 10,000 resources: load (`Stack::state`: read, parse, replay the journal,
//!   open secrets) and save (serialize and `StateStore::snapshot`, an atomic durable write),
//!   and the peak resident memory (VmHWM) of the process running the engine figures.
//!
//! The engine figures run in a child process of this program (the same binary, re-executed)
//! so its peak memory is the engine's alone. Terraform's plan at 10,000 resources takes
//! minutes, so by default Terraform's preview figure is taken at 2,000 resources (the table
//! says so); set `MVI_BENCH_TF_PREVIEW=10000` to measure it at 10,000.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark program: fail loudly

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use mvi::stack::resources::{Noop, NoopArgs};
use mvi::stack::{FileStore, LockHolder, Stack, StateStore, StepOp};

const APPLY_N: usize = 1_000;
const PREVIEW_N: usize = 10_000;
const CHILD_ENV: &str = "MVI_BENCH_STACK_CHILD";

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is ignored.
    if std::env::var_os(CHILD_ENV).is_some() {
        let tf_n: usize = std::env::args()
            .nth(1)
            .and_then(|a| a.parse().ok())
            .unwrap_or(2_000);
        engine_figures(tf_n);
        return;
    }
    let tf_n: usize = std::env::var("MVI_BENCH_TF_PREVIEW")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);

    eprintln!("engine figures (child process)...");
    let out = Command::new(std::env::current_exe().expect("own path"))
        .arg(tf_n.to_string())
        .env(CHILD_ENV, "1")
        .output()
        .expect("run the engine figures");
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        panic!("the engine figures failed: {}", out.status);
    }
    let engine: BTreeMap<String, f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect();
    let e = |k: &str| {
        *engine
            .get(k)
            .unwrap_or_else(|| panic!("no engine figure {k}"))
    };

    let tf = terraform_figures(tf_n);

    let ms = |d: f64| format!("{d:.1} ms");
    let secs = |d: Option<f64>| d.map_or("n/a".to_string(), |d| format!("{:.2} s", d / 1000.0));
    let ratio = |tf: Option<f64>, engine: f64| {
        tf.map_or("n/a".to_string(), |t| format!("{:.0}×", t / engine))
    };
    println!();
    println!(
        "| figure | resources | mvi engine | terraform {} | terraform / engine | target |",
        tf.as_ref().map_or("(not found)", |t| t.version.as_str())
    );
    println!("|---|---:|---:|---:|---:|---|");
    let t = tf.as_ref();
    println!(
        "| apply (create) | {APPLY_N} | {} | {} | {} | ≥ 100× |",
        ms(e("apply_ms")),
        secs(t.map(|t| t.apply_ms)),
        ratio(t.map(|t| t.apply_ms), e("apply_ms")),
    );
    println!(
        "| preview (in sync, refresh on) | {tf_n} | {} | {} | {} | - |",
        ms(e("preview_small_ms")),
        secs(t.map(|t| t.plan_ms)),
        ratio(t.map(|t| t.plan_ms), e("preview_small_ms")),
    );
    println!(
        "| preview (in sync, refresh on) | {PREVIEW_N} | {} | {} | {} | ≥ 1000× |",
        ms(e("preview_ms")),
        if tf_n == PREVIEW_N {
            secs(t.map(|t| t.plan_ms))
        } else {
            "not measured".to_string()
        },
        if tf_n == PREVIEW_N {
            ratio(t.map(|t| t.plan_ms), e("preview_ms"))
        } else {
            "-".to_string()
        },
    );
    println!(
        "| setup: apply (create) | {tf_n} | {} | {} | {} | - |",
        ms(e("apply_small_ms")),
        secs(t.map(|t| t.setup_apply_ms)),
        ratio(t.map(|t| t.setup_apply_ms), e("apply_small_ms")),
    );
    println!(
        "| setup: apply (create) | {PREVIEW_N} | {} | - | - | - |",
        ms(e("apply_big_ms"))
    );
    println!(
        "| state load | {PREVIEW_N} | {} | - | - | < 50 ms |",
        ms(e("load_ms"))
    );
    println!(
        "| state save | {PREVIEW_N} | {} | - | - | < 50 ms |",
        ms(e("save_ms"))
    );
    println!(
        "| engine process peak memory (VmHWM) | {PREVIEW_N} | {:.1} MiB | - | - | < 100 MiB |",
        e("vmhwm_kib") / 1024.0
    );
    println!(
        "| state file size | {PREVIEW_N} | {:.2} MiB | - | - | - |",
        e("state_bytes") / (1024.0 * 1024.0)
    );
    if tf_n != PREVIEW_N {
        println!();
        println!(
            "Terraform's preview was measured at {tf_n} resources, not {PREVIEW_N} \
             (set MVI_BENCH_TF_PREVIEW=10000 to measure it there; it takes minutes)."
        );
    }
}

/// The engine's figures, printed as `name value` lines for the parent.
fn engine_figures(tf_n: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let cloud = mvi::local::LocalCloud::builder()
            .in_memory()
            .build()
            .await
            .expect("local cloud");
        let stacks = dir.path().join("stacks");
        let program = |name: &str, n: usize| {
            let s = Stack::new(name, cloud.clone(), FileStore::new(&stacks)).unwrap();
            for i in 0..n {
                Noop::new(&s, &format!("r{i}"), NoopArgs::new(format!("value-{i}"))).unwrap();
            }
            s
        };
        let timed = |d: Duration| d.as_secs_f64() * 1000.0;

        // Apply of new independent resources (declaring them is not timed).
        let s = program("apply", APPLY_N);
        let t = Instant::now();
        let report = s.up().await.expect("up");
        println!("apply_ms {}", timed(t.elapsed()));
        eprintln!("after up of 1k: VmHWM {} KiB", vm_hwm_kib());
        assert_eq!(report.plan.count(StepOp::Create), APPLY_N);

        // Preview of an in-sync stack, at Terraform's size and at 10,000.
        drop(s);
        let s = program("small", tf_n);
        let t = Instant::now();
        s.up().await.expect("up");
        drop(s);
        println!("apply_small_ms {}", timed(t.elapsed()));
        let s = program("small", tf_n);
        let t = Instant::now();
        let plan = s.preview().await.expect("preview");
        println!("preview_small_ms {}", timed(t.elapsed()));
        eprintln!("after small: VmHWM {} KiB", vm_hwm_kib());
        assert!(plan.is_empty() && plan.steps.len() == tf_n, "{plan}");

        drop(s);
        let s = program("big", PREVIEW_N);
        let t = Instant::now();
        s.up().await.expect("up");
        drop(s);
        println!("apply_big_ms {}", timed(t.elapsed()));
        eprintln!("after up of 10k: VmHWM {} KiB", vm_hwm_kib());
        let s = program("big", PREVIEW_N);
        let t = Instant::now();
        let plan = s.preview().await.expect("preview");
        println!("preview_ms {}", timed(t.elapsed()));
        eprintln!("after preview of 10k: VmHWM {} KiB", vm_hwm_kib());
        assert!(plan.is_empty() && plan.steps.len() == PREVIEW_N);

        // The state of 10,000 resources: load, and save as the engine does.
        let t = Instant::now();
        let doc = s.state().await.expect("state");
        println!("load_ms {}", timed(t.elapsed()));
        assert_eq!(doc.resources.len(), PREVIEW_N);
        // A snapshot is written under the stack's lock (and fenced by it), as a run does.
        let store = FileStore::new(&stacks);
        store
            .lock("big", &LockHolder::me("bench"))
            .await
            .expect("lock");
        store.load("big").await.expect("load");
        let t = Instant::now();
        let bytes = serde_json::to_vec_pretty(&doc).expect("serialize");
        store.snapshot("big", &bytes).await.expect("snapshot");
        println!("save_ms {}", timed(t.elapsed()));
        store.unlock("big").await.expect("unlock");
        println!(
            "state_bytes {}",
            std::fs::metadata(stacks.join("big/state.json"))
                .expect("state file")
                .len()
        );
        println!("vmhwm_kib {}", vm_hwm_kib());
    });
}

/// Peak resident memory of this process, in KiB.
fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

struct Terraform {
    version: String,
    apply_ms: f64,
    setup_apply_ms: f64,
    plan_ms: f64,
}

fn terraform(dir: &Path, args: &[&str]) -> (Duration, std::process::ExitStatus, String) {
    let t = Instant::now();
    let out = Command::new("terraform")
        .args(args)
        .current_dir(dir)
        .env("TF_IN_AUTOMATION", "1")
        .env("TF_INPUT", "0")
        .env("CHECKPOINT_DISABLE", "1")
        .output()
        .expect("run terraform");
    let took = t.elapsed();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (took, out.status, text)
}

/// A Terraform configuration of `n` `terraform_data` resources, initialized.
fn tf_dir(n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("main.tf"),
        format!(
            "resource \"terraform_data\" \"r\" {{\n  count = {n}\n  input = \"value-${{count.index}}\"\n}}\n"
        ),
    )
    .expect("main.tf");
    let (_, status, text) = terraform(dir.path(), &["init", "-input=false", "-no-color"]);
    assert!(status.success(), "terraform init failed:\n{text}");
    dir
}

fn terraform_figures(tf_n: usize) -> Option<Terraform> {
    let (_, status, version) = terraform(Path::new("."), &["version"]);
    if !status.success() {
        eprintln!("terraform not found: its column reads n/a");
        return None;
    }
    let version = version.split_whitespace().nth(1).unwrap_or("?").to_string();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let apply = ["apply", "-auto-approve", "-input=false", "-no-color"];

    eprintln!("terraform apply of {APPLY_N}...");
    let dir = tf_dir(APPLY_N);
    let (took, status, text) = terraform(dir.path(), &apply);
    assert!(status.success(), "terraform apply failed:\n{text}");
    assert!(
        text.contains(&format!("{APPLY_N} added")),
        "unexpected apply:\n{text}"
    );
    let apply_ms = ms(took);

    eprintln!("terraform apply of {tf_n} (setup)...");
    let dir = tf_dir(tf_n);
    let (took, status, text) = terraform(dir.path(), &apply);
    assert!(status.success(), "terraform apply failed:\n{text}");
    let setup_apply_ms = ms(took);
    eprintln!("terraform plan of {tf_n}...");
    let (took, status, text) = terraform(
        dir.path(),
        &["plan", "-input=false", "-no-color", "-detailed-exitcode"],
    );
    // -detailed-exitcode: 0 means no changes.
    assert!(status.success(), "terraform plan found changes:\n{text}");
    Some(Terraform {
        version,
        apply_ms,
        setup_apply_ms,
        plan_ms: ms(took),
    })
}
