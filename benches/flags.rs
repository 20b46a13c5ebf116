//! Benchmark of feature-flag evaluation from memory (`FlagClient`), release build, one thread.
//!
//! Figures, printed by criterion as time per evaluation and throughput (evaluations/s):
//! - `flags/static`: a boolean flag with no rules (the default variant for everyone);
//! - `flags/rollout_5pct`: a percentage rollout, bucketed by the targeting key (MurmurHash3
//!   of "group:key" per call);
//! - `flags/rules_then_rollout`: two rules (a `one_of` on the country and a `semver_gte` on the
//!   app version) that do not match, then the rollout;
//! - `flags/details`: the whole evaluation (value, variant, reason) of the rollout.
//!
//! Target (issue "autoscaling and feature flags"): at least 5 M evaluations/s on one core.
//! Run: `cargo bench --bench flags` (add `-- --quick` for a short check).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mvi::flags::{Condition, EvalContext, Flag, Flags, Operator, Rollout};

fn bench(c: &mut Criterion) {
    // One worker: the refresh task shares the thread, and waits 250 ms between reads.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let client = rt.block_on(async {
        let cloud = mvi::local::LocalCloud::builder()
            .in_memory()
            .build()
            .await
            .expect("local cloud");
        let flags = Flags::of(&cloud, "flags").expect("flags");
        flags.create_table().await.expect("table");
        flags.save(&Flag::boolean("static")).await.expect("save");
        flags
            .save(&Flag::percentage("rollout", 5))
            .await
            .expect("save");
        flags
            .save(
                &Flag::boolean("targeted")
                    .rule(
                        vec![Condition::new("country", Operator::OneOf, vec!["NL", "BE"])],
                        "on",
                    )
                    .rule(
                        vec![Condition::new("app_version", Operator::SemverGte, "3.0.0")],
                        "on",
                    )
                    .rollout(Rollout::new([("on", 5), ("off", 95)])),
            )
            .await
            .expect("save");
        flags.client().await
    });
    let _guard = rt.enter();
    let user = EvalContext::key("user-1234567")
        .with("country", "DE")
        .with("app_version", "2.9.1");

    let mut g = c.benchmark_group("flags");
    g.throughput(Throughput::Elements(1));
    g.bench_function("static", |b| {
        b.iter(|| black_box(client.bool_value(black_box("static"), false, &user)))
    });
    g.bench_function("rollout_5pct", |b| {
        b.iter(|| black_box(client.bool_value(black_box("rollout"), false, &user)))
    });
    g.bench_function("rules_then_rollout", |b| {
        b.iter(|| black_box(client.bool_value(black_box("targeted"), false, &user)))
    });
    g.bench_function("details", |b| {
        b.iter(|| black_box(client.evaluate(black_box("rollout"), false, &user)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
