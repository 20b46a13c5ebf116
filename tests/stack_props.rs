//! Property tests of the stack engine over random graphs of `Noop` resources: `up` applies
//! every resource after all it depends on, `destroy` deletes every resource before all it
//! depends on, and a preview of what was just applied changes nothing.
//!
//! Each resource depends on a random subset of the ones declared before it, each edge made
//! either through its `value` output (`Output::map`, several combined with `Output::zip`) or
//! through `ResourceOptions::depends_on`.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::collections::HashMap;

use mvi::stack::resources::{Noop, NoopArgs};
use mvi::stack::{Event, FileStore, Options, Output, ResourceOptions, Stack, StepOp};
use proptest::prelude::*;

/// A random DAG: for each resource, the earlier ones it depends on and whether each edge
/// goes through an output (`true`) or `depends_on` (`false`).
#[derive(Debug, Clone)]
struct Graph {
    deps: Vec<Vec<(usize, bool)>>,
    parallelism: usize,
}

fn graph() -> impl Strategy<Value = Graph> {
    (1usize..=10, 1usize..=6).prop_flat_map(|(n, parallelism)| {
        proptest::collection::vec((any::<u16>(), any::<u16>()), n).prop_map(move |masks| Graph {
            deps: masks
                .iter()
                .enumerate()
                .map(|(i, (edges, via_output))| {
                    (0..i)
                        .filter(|j| edges & (1 << j) != 0)
                        .map(|j| (j, via_output & (1 << j) != 0))
                        .collect()
                })
                .collect(),
            parallelism,
        })
    })
}

/// Declares the graph in a fresh `Stack` object over `store_dir`.
fn program(cloud: &mvi::Cloud, store_dir: &std::path::Path, g: &Graph) -> (Stack, Vec<String>) {
    let s = Stack::new("props", cloud.clone(), FileStore::new(store_dir)).unwrap();
    let mut made: Vec<Noop> = Vec::new();
    for (i, deps) in g.deps.iter().enumerate() {
        let mut value: Option<Output<String>> = None;
        let mut opts = ResourceOptions::default();
        for &(j, via_output) in deps {
            if via_output {
                value = Some(match value {
                    None => made[j].value.map(|v| v.len().to_string()),
                    Some(acc) => acc
                        .zip(&made[j].value)
                        .map(|(a, b)| (a.len() + b.len()).to_string()),
                });
            } else {
                opts = opts.depends_on(made[j].urn.clone());
            }
        }
        let args = match value {
            Some(v) => NoopArgs::new(v.map(move |v| format!("{i}:{v}"))),
            None => NoopArgs::new(format!("{i}")),
        };
        made.push(Noop::with(&s, &format!("r{i}"), args, opts).unwrap());
    }
    let urns = made.into_iter().map(|n| n.urn).collect();
    (s, urns)
}

/// The resources whose `op` finished, in order, as positions by URN.
fn finished(events: &mut tokio::sync::broadcast::Receiver<Event>, op: StepOp) -> Vec<String> {
    let mut out = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let Event::Finished { urn, op: o, .. } = e
            && o == op
        {
            out.push(urn);
        }
    }
    out
}

fn positions(order: &[String]) -> HashMap<&str, usize> {
    order
        .iter()
        .enumerate()
        .map(|(i, u)| (u.as_str(), i))
        .collect()
}

fn check(g: &Graph) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let cloud = mvi::local::LocalCloud::builder()
            .in_memory()
            .build()
            .await
            .unwrap();
        let opts = Options::default().parallelism(g.parallelism);
        let n = g.deps.len();

        let (s, urns) = program(&cloud, dir.path(), g);
        let mut events = s.events();
        let report = s.up_with(opts.clone()).await.unwrap();
        prop_assert_eq!(report.plan.count(StepOp::Create), n);
        let up = finished(&mut events, StepOp::Create);
        prop_assert_eq!(up.len(), n, "every create finishes once: {:?}", up);
        let at = positions(&up);
        for (i, deps) in g.deps.iter().enumerate() {
            for &(j, _) in deps {
                prop_assert!(
                    at[urns[j].as_str()] < at[urns[i].as_str()],
                    "r{} was applied before r{}, which it depends on: {:?}",
                    i,
                    j,
                    up
                );
            }
        }

        // A new run of the same program finds nothing to do.
        let (s, _) = program(&cloud, dir.path(), g);
        let plan = s.preview_with(opts.clone()).await.unwrap();
        prop_assert!(plan.is_empty(), "{}", plan);
        prop_assert_eq!(plan.steps.len(), n);

        let mut events = s.events();
        let report = s.destroy_with(opts).await.unwrap();
        prop_assert_eq!(report.plan.count(StepOp::Delete), n);
        let down = finished(&mut events, StepOp::Delete);
        prop_assert_eq!(down.len(), n, "every delete finishes once: {:?}", down);
        let at = positions(&down);
        for (i, deps) in g.deps.iter().enumerate() {
            for &(j, _) in deps {
                prop_assert!(
                    at[urns[i].as_str()] < at[urns[j].as_str()],
                    "r{} was deleted after r{}, which depends on it: {:?}",
                    j,
                    i,
                    down
                );
            }
        }
        prop_assert!(s.state().await.unwrap().resources.is_empty());
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn up_destroy_and_preview_respect_the_graph(g in graph()) {
        check(&g)?;
    }
}
