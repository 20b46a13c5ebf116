//! The engine: preview, up, destroy and refresh over the declared graph and the saved state.
//!
//! Every change to the state is journaled as it happens: before a provider call a *pending*
//! entry (what is about to be done, with the arguments), after it the result. A run killed
//! at any moment leaves pending entries that the next run resolves by reading the real
//! resource (a create is looked for with [`Provider::find`]), so it converges with no orphan
//! and no duplicate.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{Mutex, Semaphore};

use super::output::{Env, Eval, Props};
use super::plan::{Drift, Event, Plan, PropDiff, Shown, Step, StepOp};
use super::provider::{Cx, Provider};
use super::resources;
use super::state::{self, Entry, PendingKind, PendingOp, ResourceState, Sealer, StateDoc};
use super::store::LockHolder;
use super::targets::Selection;
use super::{Declared, Inner, Stack};
use crate::error::{Error, ErrorKind, Op, Result, Service};

fn op(operation: &'static str) -> Op {
    Op::new(Service::Stack, operation)
}

/// How an operation runs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// Read the real resources first and plan against them (default: true). Drift is then
    /// reported, and `up` brings drifted resources back to their declaration.
    pub refresh: bool,
    /// At most this many provider calls at once (default 16).
    pub parallelism: usize,
    /// Only these resources (default: all), each named by URN, by name, by a `*` pattern of
    /// URNs, or by a component it is in; see [`Options::target`].
    pub targets: Vec<String>,
    /// With `targets`: the resources that depend on them too.
    pub target_dependents: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            refresh: true,
            parallelism: 16,
            targets: Vec::new(),
            target_dependents: false,
        }
    }
}

impl Options {
    /// Skips the refresh.
    pub fn no_refresh(mut self) -> Self {
        self.refresh = false;
        self
    }

    /// Sets the parallelism (at least 1).
    pub fn parallelism(mut self, n: usize) -> Self {
        self.parallelism = n.max(1);
        self
    }

    /// Limits the run to `target` (and the other targets given): its URN, its name in the
    /// program, a pattern of URNs where `*` stands for any characters, or a component (all
    /// of its resources). Everything else is left as recorded. A target that names nothing
    /// is NotFound; a run that would break what it leaves alone is refused before it starts
    /// (a target that needs a resource not made yet, or whose replacement or delete would
    /// strand resources that depend on it: see [`Options::target_dependents`]).
    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.targets.push(target.into());
        self
    }

    /// Selects, with the targets, every resource that depends on them.
    pub fn target_dependents(mut self) -> Self {
        self.target_dependents = true;
        self
    }
}

/// What an `up`, `destroy` or `refresh` did. Its `Debug` shows secret outputs as `[secret]`.
#[derive(Clone)]
pub struct Report {
    /// The steps done, in order of completion, and the drift found first.
    pub plan: Plan,
    /// The stack's outputs after the operation (secrets included: handle with care).
    pub outputs: Props,
    /// The names of the outputs that are secret.
    pub secret_outputs: BTreeSet<String>,
    /// How long it took.
    pub duration: Duration,
}

impl std::fmt::Debug for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Report")
            .field("plan", &self.plan)
            .field(
                "outputs",
                &state::masked(&self.outputs, &self.secret_outputs),
            )
            .field("secret_outputs", &self.secret_outputs)
            .field("duration", &self.duration)
            .finish()
    }
}

/// Outputs of applied resources: a property they lack is null.
struct MapEnv<'a>(&'a HashMap<String, Props>);

impl Env for MapEnv<'_> {
    fn output(&self, urn: &str, prop: &str) -> Eval {
        match self.0.get(urn) {
            Some(outputs) => Eval::Known(outputs.get(prop).cloned().unwrap_or(Value::Null)),
            None => Eval::Unknown,
        }
    }
}

/// What a preview knows: every output of unchanged resources, and the stable outputs (an id,
/// a name) of resources that will be updated in place; everything else is unknown.
/// The recorded outputs are borrowed: a preview of an in-sync stack copies none of them.
#[derive(Default)]
struct PreviewEnv<'a> {
    same: HashMap<&'a str, &'a Props>,
    updated: HashMap<&'a str, Props>,
}

impl Env for PreviewEnv<'_> {
    fn output(&self, urn: &str, prop: &str) -> Eval {
        if let Some(outputs) = self.same.get(urn) {
            return Eval::Known(outputs.get(prop).cloned().unwrap_or(Value::Null));
        }
        match self.updated.get(urn).and_then(|o| o.get(prop)) {
            Some(v) => Eval::Known(v.clone()),
            None => Eval::Unknown,
        }
    }
}

/// A declared resource's arguments, evaluated.
struct Resolved {
    props: Props,
    unknown: BTreeSet<String>,
    secret: BTreeSet<String>,
}

fn resolve(d: &Declared, env: &dyn Env) -> Result<Resolved> {
    let mut r = Resolved {
        props: Props::new(),
        unknown: BTreeSet::new(),
        secret: BTreeSet::new(),
    };
    for (name, node) in &d.props {
        if node.secret {
            r.secret.insert(name.to_string());
        }
        match (node.eval)(env).map_err(|e| {
            op("resolve").invalid(
                &d.name,
                format!("argument {name:?} cannot be computed: {e}"),
            )
        })? {
            Eval::Known(v) => {
                r.props.insert(name.to_string(), v);
            }
            Eval::Unknown => {
                r.unknown.insert(name.to_string());
            }
        }
    }
    Ok(r)
}

fn shown(v: Option<&Value>, secret: bool) -> Shown {
    match (v, secret) {
        (None, _) => Shown::None,
        (Some(_), true) => Shown::Secret,
        (Some(v), false) => Shown::Value(v.clone()),
    }
}

/// Property-level differences between recorded and wanted arguments.
fn diff_props(
    old: &Props,
    old_secret: &BTreeSet<String>,
    new: &Props,
    new_secret: &BTreeSet<String>,
    unknown: &BTreeSet<String>,
    replace_on: &dyn Fn(&str) -> bool,
) -> Vec<PropDiff> {
    let names: BTreeSet<&String> = old.keys().chain(new.keys()).chain(unknown.iter()).collect();
    let mut out = Vec::new();
    for name in names {
        let secret = old_secret.contains(name) || new_secret.contains(name);
        let (o, n) = (old.get(name), new.get(name));
        if unknown.contains(name) {
            out.push(PropDiff {
                name: name.clone(),
                old: shown(o, secret),
                new: Shown::Unknown,
                replaces: replace_on(name),
            });
        } else if o != n
            && !(o.is_none() && n == Some(&Value::Null))
            && !(n.is_none() && o == Some(&Value::Null))
        {
            out.push(PropDiff {
                name: name.clone(),
                old: shown(o, secret),
                new: shown(n, secret),
                replaces: replace_on(name),
            });
        }
    }
    out
}

/// What to do with a declared resource, given its evaluated arguments and its record.
/// Also returns the arguments to apply (ignored properties keep their recorded values).
fn decide(d: &Declared, r: &mut Resolved, old: Option<&ResourceState>) -> (StepOp, Vec<PropDiff>) {
    let provider = &d.provider;
    let Some(old) = old else {
        let op = if d.opts.import.is_some() {
            StepOp::Import
        } else {
            StepOp::Create
        };
        let diffs = diff_props(
            &Props::new(),
            &BTreeSet::new(),
            &r.props,
            &r.secret,
            &r.unknown,
            &|_| false,
        );
        return (op, diffs);
    };
    for name in &d.opts.ignore_changes {
        r.unknown.remove(name);
        match old.inputs.get(name) {
            Some(v) => {
                r.props.insert(name.clone(), v.clone());
            }
            None => {
                r.props.remove(name);
            }
        }
    }
    let replace_on = |name: &str| {
        provider.replace_on().contains(&name) || d.opts.replace_on_changes.iter().any(|p| p == name)
    };
    let diffs = diff_props(
        &old.inputs,
        &old.secret_inputs,
        &r.props,
        &r.secret,
        &r.unknown,
        &replace_on,
    );
    let op = if old.type_name != provider.type_name() || diffs.iter().any(|d| d.replaces) {
        StepOp::Replace
    } else if diffs.is_empty() {
        StepOp::Same
    } else {
        StepOp::Update
    };
    (op, diffs)
}

/// What the state records of declared resource `d`, made with `inputs` (those named in
/// `secret_inputs` secret) and given `id` and `outputs`. An output named like a secret
/// argument carries that argument: secret too, as are the outputs the type declares secret.
fn record_state(
    d: &Declared,
    id: String,
    inputs: Props,
    outputs: Props,
    secret_inputs: BTreeSet<String>,
    protect: bool,
) -> ResourceState {
    ResourceState {
        type_name: d.provider.type_name().to_string(),
        name: d.name.clone(),
        parent: d.parent.clone(),
        id,
        inputs,
        outputs,
        deps: d.deps.clone(),
        secret_outputs: d
            .provider
            .secret_outputs()
            .iter()
            .map(|s| s.to_string())
            .chain(secret_inputs.iter().cloned())
            .collect(),
        secret_inputs,
        protect,
    }
}

fn step(d: &Declared, op: StepOp, diffs: Vec<PropDiff>) -> Step {
    Step {
        urn: d.urn.clone(),
        type_name: d.provider.type_name().to_string(),
        name: d.name.clone(),
        parent: d.parent.clone(),
        op,
        diffs,
    }
}

/// Loads and decrypts the state of `stack` from `inner`'s store.
pub(super) async fn load_doc(inner: &Inner, stack: &str) -> Result<StateDoc> {
    let (snapshot, journal) = inner.store.load(stack).await?;
    let mut doc = state::decode(stack, snapshot.as_deref(), &journal)?;
    Sealer::new(inner.cloud.clone(), stack)
        .open_doc(&mut doc)
        .await?;
    Ok(doc)
}

/// `e` with the text of every secret argument (each string of 4 or more characters inside
/// a property in `secret`) replaced by `[secret <property>]`, in its message and resource:
/// a secret given where a name is wanted is refused by a rule that quotes the name, and the
/// error must name the property, never show the value. The cause is dropped when anything
/// was replaced (it could show it too).
fn redact(e: crate::Error, props: &Props, secret: &BTreeSet<String>) -> crate::Error {
    let mut texts: Vec<(String, &str)> = Vec::new();
    for name in secret {
        let Some(v) = props.get(name) else { continue };
        let mut todo = vec![v];
        while let Some(v) = todo.pop() {
            match v {
                Value::String(t) if t.chars().count() >= 4 => texts.push((t.clone(), name)),
                Value::Array(a) => todo.extend(a.iter()),
                Value::Object(o) => todo.extend(o.values()),
                _ => {}
            }
        }
    }
    // Longest first, so a secret inside another is not left half shown.
    texts.sort_by_key(|(t, _)| std::cmp::Reverse(t.len()));
    let hide = |s: &str| -> String {
        let mut out = s.to_string();
        for (t, name) in &texts {
            out = out.replace(t.as_str(), &format!("[secret {name}]"));
        }
        out
    };
    let message = hide(e.message());
    let resource = e.resource().map(hide);
    if message == e.message() && resource.as_deref() == e.resource() {
        return e;
    }
    let mut out = crate::Error::new(e.kind(), e.service(), e.operation().to_string(), message);
    if let Some(r) = resource {
        out = out.with_resource(r);
    }
    out
}

/// The providers of the declared resource types, by type name.
struct Providers(HashMap<&'static str, Arc<dyn Provider>>);

impl Providers {
    fn of(decls: &[Declared]) -> Self {
        let mut map = HashMap::new();
        for d in decls {
            map.entry(d.provider.type_name())
                .or_insert_with(|| d.provider.clone());
        }
        Providers(map)
    }
}

/// The provider of a recorded resource type: the declared one, or a built-in type.
fn provider_for(providers: &Providers, type_name: &str, urn: &str) -> Result<Arc<dyn Provider>> {
    providers
        .0
        .get(type_name)
        .cloned()
        .or_else(|| resources::builtin(type_name))
        .ok_or_else(|| {
            op("load_state").err(
                ErrorKind::Unsupported,
                urn,
                format!("the state holds a resource of type {type_name}, which this program neither declares nor mvi knows"),
            )
        })
}

/// One running operation: the state, and how it is saved.
struct Run {
    inner: Arc<Inner>,
    sealer: Sealer,
    doc: Mutex<StateDoc>,
    /// Held while a delete-before-replace deletes the dependents that must go first, so two
    /// replacements sharing dependents do not delete them twice.
    replacing: Mutex<()>,
    /// Declared resources deleted this run because a resource they depend on is replaced by
    /// deleting it first: their create is reported as a replacement.
    deleted_for_replace: std::sync::Mutex<HashSet<String>>,
}

/// The key a resource replaced by create-before-delete waits under until it is deleted:
/// `<urn>#replaced#<n>`, the first free `n`.
fn replaced_key(doc: &StateDoc, urn: &str) -> String {
    (1u64..)
        .map(|n| format!("{urn}#replaced#{n}"))
        .find(|k| !doc.resources.contains_key(k) && !doc.pending.contains_key(k))
        .unwrap_or_else(|| format!("{urn}#replaced"))
}

/// The records waiting for deletion that `urn` replaced (see [`replaced_key`]).
fn replaced_of<'a>(
    doc: &'a StateDoc,
    urn: &str,
) -> impl Iterator<Item = (&'a String, &'a ResourceState)> {
    let prefix = format!("{urn}#replaced");
    doc.resources
        .range(prefix.clone()..)
        .take_while(move |(k, _)| k.starts_with(&prefix))
}

/// The records `r` (recorded under `urn`) keeps from being deleted before it: what it
/// depends on, and, when it is itself to be deleted (`doomed`), the replaced copies of what
/// it depends on too: it was made against those, so it must go before them (an old subnet
/// before the old VPC it is in).
fn holds(doc: &StateDoc, urn: &str, r: &ResourceState, doomed: bool) -> Vec<String> {
    let mut out = Vec::new();
    for d in &r.deps {
        if d == urn {
            continue;
        }
        out.push(d.clone());
        if doomed {
            out.extend(replaced_of(doc, d).map(|(k, _)| k.clone()));
        }
    }
    out
}

impl Run {
    async fn open(inner: Arc<Inner>) -> Result<Run> {
        let doc = load_doc(&inner, &inner.name).await?;
        Ok(Run {
            sealer: Sealer::new(inner.cloud.clone(), &inner.name),
            inner,
            doc: Mutex::new(doc),
            replacing: Mutex::new(()),
            deleted_for_replace: Default::default(),
        })
    }

    fn cx<'a>(&'a self, urn: &'a str) -> Cx<'a> {
        self.cx_taken(urn, &[])
    }

    fn cx_taken<'a>(&'a self, urn: &'a str, taken: &'a [String]) -> Cx<'a> {
        Cx {
            cloud: &self.inner.cloud,
            stack: &self.inner.name,
            urn,
            events: &self.inner.events,
            taken,
        }
    }

    fn emit(&self, e: Event) {
        // Nobody listening is fine.
        let _ = self.inner.events.send(e);
    }

    /// Applies `entry` to the state and saves it durably before returning.
    ///
    /// Journaled entries of concurrent steps are appended without holding the state's lock,
    /// so the store can make them durable together (one sync for several); they concern
    /// different resources (one resource's entries come from one task, in order), so their
    /// order in the journal does not matter.
    async fn record(&self, entry: Entry) -> Result<()> {
        let store = &self.inner.store;
        if store.journaled() {
            let bytes = if self.sealer.has_secrets(&entry) {
                serde_json::to_vec(&self.sealer.seal_entry(&entry).await?)
            } else {
                serde_json::to_vec(&entry)
            }
            .map_err(|e| op("save_state").internal(&self.inner.name, e))?;
            self.doc.lock().await.apply(entry);
            store.append(&self.inner.name, &[bytes]).await
        } else {
            let mut doc = self.doc.lock().await;
            doc.apply(entry);
            self.save_snapshot(&doc).await
        }
    }

    async fn save_snapshot(&self, doc: &StateDoc) -> Result<()> {
        // Sealing copies the document: only worth it when it holds secrets.
        let bytes = if Sealer::doc_has_secrets(doc) {
            serde_json::to_vec_pretty(&self.sealer.seal_doc(doc).await?)
        } else {
            serde_json::to_vec_pretty(doc)
        }
        .map_err(|e| op("save_state").internal(&doc.stack, e))?;
        self.inner.store.snapshot(&doc.stack, &bytes).await
    }

    /// Compacts the journal into a snapshot.
    async fn compact(&self) -> Result<()> {
        let doc = self.doc.lock().await;
        self.save_snapshot(&doc).await
    }

    async fn timed<T>(
        &self,
        limit: Option<Duration>,
        urn: &str,
        f: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        match limit {
            None => f.await,
            Some(limit) => tokio::time::timeout(limit, f).await.unwrap_or_else(|_| {
                Err(op("apply").err(
                    ErrorKind::Timeout,
                    urn,
                    format!("the provider did not finish within {limit:?}"),
                ))
            }),
        }
    }

    /// Resolves what the last run left pending by reading the real resources. Each pending
    /// entry carries the whole record (dependencies, parent, protection, secret properties),
    /// so what is recovered is recorded exactly as a finished step would have recorded it.
    async fn resolve_pending(&self, decls: &[Declared]) -> Result<()> {
        let pending: Vec<(String, PendingOp)> =
            self.doc.lock().await.pending.clone().into_iter().collect();
        let providers = Providers::of(decls);
        for (key, p) in pending {
            let urn = key.split('#').next().unwrap_or(&key).to_string();
            let provider = provider_for(&providers, &p.type_name, &urn)?;
            let recorded = self.doc.lock().await.resources.get(&key).cloned();
            match p.op {
                PendingKind::Create => {
                    // A resource it replaces carries the same URN tag: never take it for the
                    // new one.
                    let taken: Vec<String> = {
                        let doc = self.doc.lock().await;
                        replaced_of(&doc, &key).map(|(_, r)| r.id.clone()).collect()
                    };
                    let cx = self.cx_taken(&urn, &taken);
                    let read = match provider.find(cx, &p.inputs).await? {
                        Some(id) => provider
                            .read(cx, &id, &p.inputs)
                            .await?
                            .map(|(inputs, outputs)| (id, inputs, outputs)),
                        None => None,
                    };
                    match read {
                        Some((id, inputs, outputs)) => {
                            let resource = p.record(id, inputs, outputs);
                            self.record(Entry::Put { urn: key, resource }).await?;
                        }
                        None => self.record(Entry::Resolved { urn: key }).await?,
                    }
                }
                PendingKind::Update | PendingKind::Delete => {
                    let id = p.id.clone().unwrap_or_default();
                    let read = provider.read(self.cx(&urn), &id, &p.inputs).await?;
                    let entry = match (read, recorded) {
                        (None, _) => Entry::Remove { urn: key },
                        // An update stopped half way: record what the resource is now (the
                        // next plan compares it with the declaration).
                        (Some((inputs, outputs)), Some(mut r)) if p.op == PendingKind::Update => {
                            r.inputs = inputs;
                            r.outputs = outputs;
                            Entry::Put {
                                urn: key,
                                resource: r,
                            }
                        }
                        // A delete that did not happen: the record stays, and the resource is
                        // deleted when the plan says so again.
                        (Some(_), Some(_)) => Entry::Resolved { urn: key },
                        // The resource exists and nothing records it (a replaced resource of
                        // an older state format): record it, so it is deleted, not orphaned.
                        (Some((inputs, outputs)), None) => Entry::Put {
                            urn: key,
                            resource: p.record(id, inputs, outputs),
                        },
                    };
                    self.record(entry).await?;
                }
            }
        }
        Ok(())
    }

    /// Reads every recorded resource; records what changed out of band and returns it.
    /// Without `record` (a preview), the run's state is moved into the result, not copied:
    /// the run is not used afterwards.
    async fn refresh(
        &self,
        decls: &[Declared],
        record: bool,
        parallelism: usize,
    ) -> Result<(Vec<Drift>, StateDoc)> {
        use futures::StreamExt as _;
        let doc = if record {
            self.doc.lock().await.clone()
        } else {
            let mut guard = self.doc.lock().await;
            std::mem::replace(&mut *guard, StateDoc::empty(&self.inner.name))
        };
        let mut reads = Vec::with_capacity(doc.resources.len());
        let providers = Providers::of(decls);
        for (urn, r) in &doc.resources {
            let provider = provider_for(&providers, &r.type_name, urn)?;
            reads.push(async move {
                // Only what changed is kept (the read of an in-sync resource is dropped here).
                let changed = match provider.read(self.cx(urn), &r.id, &r.inputs).await? {
                    None => Some((urn.clone(), None)),
                    Some((inputs, outputs)) => {
                        let diffs = diff_props(
                            &r.inputs,
                            &r.secret_inputs,
                            &inputs,
                            &r.secret_inputs,
                            &BTreeSet::new(),
                            &|_| false,
                        );
                        if diffs.is_empty() && outputs == r.outputs {
                            None
                        } else {
                            let mut updated = r.clone();
                            updated.inputs = inputs;
                            updated.outputs = outputs;
                            Some((urn.clone(), Some((updated, diffs))))
                        }
                    }
                };
                Ok::<_, Error>(changed)
            });
        }
        // At most `parallelism` reads at once, results in URN order.
        let changes: Vec<Result<_>> = futures::stream::iter(reads)
            .buffered(parallelism.max(1))
            .collect()
            .await;
        let mut drift = Vec::new();
        let mut refreshed = doc;
        for change in changes {
            let Some((urn, change)) = change? else {
                continue;
            };
            match change {
                None => {
                    drift.push(Drift {
                        urn: urn.clone(),
                        deleted: true,
                        diffs: Vec::new(),
                    });
                    refreshed.resources.remove(&urn);
                    if record {
                        self.record(Entry::Remove { urn }).await?;
                    }
                }
                Some((updated, diffs)) => {
                    if !diffs.is_empty() {
                        drift.push(Drift {
                            urn: urn.clone(),
                            deleted: false,
                            diffs,
                        });
                    }
                    refreshed.resources.insert(urn.clone(), updated.clone());
                    if record {
                        self.record(Entry::Put {
                            urn,
                            resource: updated,
                        })
                        .await?;
                    }
                }
            }
        }
        Ok((drift, refreshed))
    }

    /// Applies one declared resource; returns the step done and its outputs. An error never
    /// shows a secret argument (see [`redact`]).
    async fn apply_one(
        &self,
        d: &Declared,
        decls: &[Declared],
        env: &HashMap<String, Props>,
    ) -> Result<(Step, Props)> {
        let r = resolve(d, &MapEnv(env))?;
        let (props, secret) = (r.props.clone(), r.secret.clone());
        self.apply_resolved(d, decls, r)
            .await
            .map_err(|e| redact(e, &props, &secret))
    }

    async fn apply_resolved(
        &self,
        d: &Declared,
        decls: &[Declared],
        mut r: Resolved,
    ) -> Result<(Step, Props)> {
        if let Some(name) = r.unknown.iter().next() {
            return Err(op("apply").internal(
                &d.name,
                format!("argument {name:?} is still unknown after its dependencies were applied"),
            ));
        }
        d.provider.check(&d.name, &r.props)?;
        let old = self.doc.lock().await.resources.get(&d.urn).cloned();
        let (mut op_kind, diffs) = decide(d, &mut r, old.as_ref());
        let cx = self.cx(&d.urn);
        let record_of = |id: String, outputs: Props| {
            record_state(
                d,
                id,
                r.props.clone(),
                outputs,
                r.secret.clone(),
                d.opts.protect,
            )
        };
        // A create, bracketed by journal entries: pending (durable before the provider is
        // called, so a crash leaves a trace the next run resolves, with the whole record to
        // be), then the result.
        let create = async || -> Result<Props> {
            let to_be = record_of(String::new(), Props::new());
            self.record(Entry::Pending {
                urn: d.urn.clone(),
                op: pending_of(PendingKind::Create, &to_be),
            })
            .await?;
            let (id, outputs) = self
                .timed(d.opts.timeout, &d.urn, d.provider.create(cx, &r.props))
                .await?;
            self.record(Entry::Put {
                urn: d.urn.clone(),
                resource: record_of(id, outputs.clone()),
            })
            .await?;
            Ok(outputs)
        };
        if op_kind != StepOp::Same {
            self.emit(Event::Started {
                urn: d.urn.clone(),
                op: op_kind,
            });
        }
        let outputs = match (op_kind, &old) {
            (StepOp::Same, Some(old)) => {
                // Flags such as `protect` may change without touching the resource.
                if old.protect != d.opts.protect || old.deps != d.deps || old.parent != d.parent {
                    let mut updated = old.clone();
                    updated.protect = d.opts.protect;
                    updated.deps = d.deps.clone();
                    updated.parent = d.parent.clone();
                    self.record(Entry::Put {
                        urn: d.urn.clone(),
                        resource: updated,
                    })
                    .await?;
                }
                old.outputs.clone()
            }
            (StepOp::Import, _) => {
                let id = d.opts.import.clone().unwrap_or_default();
                let (_, outputs) = d.provider.read(cx, &id, &r.props).await?.ok_or_else(|| {
                    op("import").not_found(&d.name, format!("no resource with id {id:?} to import"))
                })?;
                self.record(Entry::Put {
                    urn: d.urn.clone(),
                    resource: record_of(id, outputs.clone()),
                })
                .await?;
                outputs
            }
            (StepOp::Create, _) => {
                let replacing = self
                    .deleted_for_replace
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&d.urn);
                if replacing {
                    op_kind = StepOp::Replace;
                }
                create().await?
            }
            (StepOp::Update, Some(old)) => {
                self.record(Entry::Pending {
                    urn: d.urn.clone(),
                    op: pending_of(PendingKind::Update, old),
                })
                .await?;
                let outputs = self
                    .timed(
                        d.opts.timeout,
                        &d.urn,
                        d.provider.update(cx, &old.id, &old.inputs, &r.props),
                    )
                    .await?;
                self.record(Entry::Put {
                    urn: d.urn.clone(),
                    resource: record_of(old.id.clone(), outputs.clone()),
                })
                .await?;
                outputs
            }
            (StepOp::Replace, Some(old)) => {
                if old.protect || d.opts.protect {
                    return Err(op("replace").denied(&d.name, "the resource is protected; it would have to be replaced (unprotect it first)"));
                }
                let delete_first = d.opts.delete_before_replace
                    || d.provider.fixed_name()
                    || old.type_name != d.provider.type_name();
                if delete_first {
                    let old_provider = provider_for(
                        &Providers::of(std::slice::from_ref(d)),
                        &old.type_name,
                        &d.urn,
                    )?;
                    // What must go with it goes first (dependents it cannot be deleted under,
                    // whose replacement its own forces).
                    self.delete_dependents(&d.urn, decls).await?;
                    self.record(Entry::Pending {
                        urn: d.urn.clone(),
                        op: pending_of(PendingKind::Delete, old),
                    })
                    .await?;
                    self.timed(
                        d.opts.timeout,
                        &d.urn,
                        old_provider.delete(cx, &old.id, &old.inputs),
                    )
                    .await?;
                    self.record(Entry::Remove { urn: d.urn.clone() }).await?;
                    create().await?
                } else {
                    // Create the new one first. The old one's record moves (in one journal
                    // entry) to `<urn>#replaced#<n>`: undeclared, it is deleted at the end
                    // of the run, once every dependent has moved to the new one; until then
                    // (and after a crash or a failed delete) the state keeps it.
                    let to = replaced_key(&*self.doc.lock().await, &d.urn);
                    self.record(Entry::Move {
                        from: d.urn.clone(),
                        to,
                    })
                    .await?;
                    create().await?
                }
            }
            (_, None) => {
                return Err(op("apply").internal(&d.name, "no record of the resource to change"));
            }
            (StepOp::Delete | StepOp::Refresh, _) => old.map(|o| o.outputs).unwrap_or_default(),
        };
        Ok((step(d, op_kind, diffs), outputs))
    }

    /// Deletes recorded resources not in `keep`, dependents first, independent ones in
    /// parallel. Protected resources are refused (with their dependencies kept).
    async fn delete_unwanted(
        &self,
        decls: &[Declared],
        keep: &BTreeSet<String>,
        parallelism: usize,
        steps: &mut Vec<Step>,
        failures: &mut Vec<(String, Error)>,
    ) {
        let sem = Arc::new(Semaphore::new(parallelism));
        let providers = Providers::of(decls);
        let mut blocked: BTreeSet<String> = BTreeSet::new();
        loop {
            let wave: Vec<(String, ResourceState)> = {
                let doc = self.doc.lock().await;
                // A resource can go once nothing still recorded depends on it (a resource
                // whose delete failed or was refused still holds what it depends on).
                let held: HashSet<String> = doc
                    .resources
                    .iter()
                    .flat_map(|(other, r)| holds(&doc, other, r, !keep.contains(other)))
                    .collect();
                let doomed: Vec<(&String, &ResourceState)> = doc
                    .resources
                    .iter()
                    .filter(|(u, _)| !keep.contains(*u) && !blocked.contains(*u))
                    .collect();
                if doomed.is_empty() {
                    return;
                }
                let wave: Vec<(String, ResourceState)> = doomed
                    .iter()
                    .filter(|(u, _)| !held.contains(*u))
                    .map(|(u, r)| ((*u).clone(), (*r).clone()))
                    .collect();
                if wave.is_empty() {
                    // Only resources others (kept or protected) depend on are left.
                    for (u, _) in doomed {
                        blocked.insert(u.clone());
                    }
                    continue;
                }
                wave
            };
            let mut tasks = Vec::new();
            for (urn, r) in wave {
                let (sem, providers) = (sem.clone(), &providers);
                tasks.push(async move {
                    let _permit = sem.acquire().await;
                    let outcome = self.delete_one(providers, &urn, &r).await;
                    (urn, r, outcome)
                });
            }
            for (urn, r, outcome) in futures::future::join_all(tasks).await {
                match outcome {
                    Ok(()) => steps.push(delete_step(urn, &r)),
                    Err(e) => {
                        self.emit(Event::Failed {
                            urn: urn.clone(),
                            op: StepOp::Delete,
                            error: e.to_string(),
                        });
                        blocked.insert(urn.clone());
                        // What it depends on stays: deleting it would break it.
                        let doc = self.doc.lock().await;
                        blocked.extend(holds(&doc, &urn, &r, true));
                        failures.push((urn, e));
                    }
                }
            }
        }
    }

    /// Before `urn` is deleted to be replaced: deletes, dependents first, the recorded
    /// resources that cannot outlive it: those no longer declared, and declared ones with an
    /// argument computed from it that replaces them when it changes (a VM in a subnet), and
    /// so on down. The declared ones are created again when their turn comes.
    async fn delete_dependents(&self, urn: &str, decls: &[Declared]) -> Result<()> {
        let _one_at_a_time = self.replacing.lock().await;
        let must_go = |q: &str, on: &str| match decls.iter().find(|d| d.urn == q) {
            None => true,
            Some(d) => d.props.iter().any(|(p, node)| {
                node.deps.contains(on)
                    && (d.provider.replace_on().contains(p)
                        || d.opts.replace_on_changes.iter().any(|r| r == p))
            }),
        };
        let doomed: Vec<(String, ResourceState)> = {
            let doc = self.doc.lock().await;
            let mut doomed: BTreeSet<String> = BTreeSet::new();
            let mut todo = vec![urn.to_string()];
            while let Some(x) = todo.pop() {
                for (q, r) in &doc.resources {
                    if q != &x
                        && q != urn
                        && r.deps.contains(&x)
                        && !doomed.contains(q)
                        && must_go(q, &x)
                    {
                        doomed.insert(q.clone());
                        todo.push(q.clone());
                    }
                }
            }
            doomed
                .into_iter()
                .filter_map(|q| doc.resources.get(&q).map(|r| (q, r.clone())))
                .collect()
        };
        if doomed.is_empty() {
            return Ok(());
        }
        let providers = Providers::of(decls);
        let mut left = doomed;
        while !left.is_empty() {
            // Those no other doomed resource depends on go first.
            let (ready, rest): (Vec<_>, Vec<_>) = left
                .iter()
                .cloned()
                .partition(|(q, _)| !left.iter().any(|(o, r)| o != q && r.deps.contains(q)));
            if ready.is_empty() {
                return Err(op("replace").internal(urn, "its dependents depend on each other"));
            }
            for (q, r) in &ready {
                self.delete_one(&providers, q, r).await?;
                if decls.iter().any(|d| &d.urn == q) {
                    self.deleted_for_replace
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(q.clone());
                }
            }
            left = rest;
        }
        Ok(())
    }

    async fn delete_one(&self, providers: &Providers, urn: &str, r: &ResourceState) -> Result<()> {
        if r.protect {
            return Err(op("delete").denied(
                &r.name,
                "the resource is protected; unprotect it (and run up) before deleting it",
            ));
        }
        let provider = provider_for(providers, &r.type_name, urn)?;
        self.emit(Event::Started {
            urn: urn.to_string(),
            op: StepOp::Delete,
        });
        let started = Instant::now();
        self.record(Entry::Pending {
            urn: urn.to_string(),
            op: pending_of(PendingKind::Delete, r),
        })
        .await?;
        provider.delete(self.cx(urn), &r.id, &r.inputs).await?;
        self.record(Entry::Remove {
            urn: urn.to_string(),
        })
        .await?;
        self.emit(Event::Finished {
            urn: urn.to_string(),
            op: StepOp::Delete,
            duration: started.elapsed(),
        });
        Ok(())
    }
}

/// The pending entry of an operation of `kind` on the resource recorded (or to be recorded)
/// as `r`: all of its record, so a recovery rebuilds it exactly.
fn pending_of(kind: PendingKind, r: &ResourceState) -> PendingOp {
    PendingOp {
        op: kind,
        type_name: r.type_name.clone(),
        name: r.name.clone(),
        id: (kind != PendingKind::Create).then(|| r.id.clone()),
        inputs: r.inputs.clone(),
        secret_inputs: r.secret_inputs.clone(),
        secret_outputs: r.secret_outputs.clone(),
        deps: r.deps.clone(),
        parent: r.parent.clone(),
        protect: r.protect,
        started: chrono::Utc::now(),
    }
}

/// Joins failures into one error naming each.
fn failed(operation: &'static str, stack: &str, failures: Vec<(String, Error)>) -> Error {
    let kind = failures
        .first()
        .map_or(ErrorKind::Internal, |(_, e)| e.kind());
    let list: Vec<String> = failures
        .iter()
        .map(|(urn, e)| format!("{urn}: {e}"))
        .collect();
    Error::new(
        kind,
        Service::Stack,
        operation,
        format!(
            "{} step(s) failed; the state records what was done. {}",
            failures.len(),
            list.join("; ")
        ),
    )
    .with_resource(stack)
}

/// The stack's lock while an operation runs: renewed in the background, released when the
/// operation ends, fails, or its future is dropped.
struct LockGuard {
    store: Arc<dyn super::StateStore>,
    stack: String,
    renewal: tokio::task::JoinHandle<()>,
    released: bool,
}

impl LockGuard {
    async fn release(mut self) -> Result<()> {
        self.released = true;
        self.renewal.abort();
        self.store.unlock(&self.stack).await
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.renewal.abort();
        if self.released || self.store.unlock_now(&self.stack) {
            return;
        }
        // A store that needs the network to release: do it on the runtime, if one is left.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let (store, stack) = (self.store.clone(), self.stack.clone());
            rt.spawn(async move {
                if let Err(e) = store.unlock(&stack).await {
                    tracing::warn!(stack, error = %e, "could not release the stack's lock");
                }
            });
        }
    }
}

/// Takes the stack's lock (over from a stale holder, saying so) and keeps renewing it.
async fn take_lock(inner: &Arc<Inner>, operation: &str) -> Result<LockGuard> {
    let store = inner.store.clone();
    let previous = store.lock(&inner.name, &LockHolder::me(operation)).await?;
    if let Some(p) = previous {
        let why = p.stale().unwrap_or_else(|| "it was stale".into());
        let message = format!("took over the lock of stack {} from {p}: {why}", inner.name);
        tracing::warn!(stack = %inner.name, "{message}");
        let _ = inner.events.send(Event::Notice { message });
    }
    let renewal = {
        let (store, stack) = (store.clone(), inner.name.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(super::store::LEASE / 3).await;
                if let Err(e) = store.renew(&stack).await {
                    // The run's own writes are fenced: they fail from now on, clearly.
                    tracing::warn!(stack, error = %e, "the stack's lock could not be renewed");
                    return;
                }
            }
        })
    };
    Ok(LockGuard {
        store,
        stack: inner.name.clone(),
        renewal,
        released: false,
    })
}

/// Holds the stack's lock for one operation; releases it when the operation ends (or is
/// dropped).
async fn locked<T, F, Fut>(stack: &Stack, operation: &str, f: F) -> Result<T>
where
    F: FnOnce(Arc<Inner>) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let inner = stack.inner.clone();
    let guard = take_lock(&inner, operation).await?;
    let out = f(inner.clone()).await;
    let unlocked = guard.release().await;
    match (out, unlocked) {
        (Ok(v), Ok(())) => Ok(v),
        (Err(e), _) => Err(e),
        (Ok(_), Err(e)) => Err(e),
    }
}

impl Stack {
    fn declarations(&self) -> (Vec<Declared>, Vec<(String, super::output::Node)>) {
        let decl = self.decl();
        (decl.resources.clone(), decl.exports.clone())
    }

    /// The plan: what `up` would do, with property-level diffs (secrets masked). Reads the
    /// real resources first unless `Options::no_refresh`; changes nothing.
    pub async fn preview(&self) -> Result<Plan> {
        self.preview_with(Options::default()).await
    }

    /// [`Stack::preview`] with options.
    pub async fn preview_with(&self, opts: Options) -> Result<Plan> {
        let (decls, _) = self.declarations();
        let run = Run::open(self.inner.clone()).await?;
        let (drift, doc) = if opts.refresh {
            run.refresh(&decls, false, opts.parallelism).await?
        } else {
            (Vec::new(), run.doc.lock().await.clone())
        };
        let selection = Selection::of(&opts.targets, opts.target_dependents, &decls, &doc)?;
        let (mut steps, known) = plan_steps_with_args(&decls, &doc, &selection)?;
        selection.check(&decls, &doc, &steps)?;
        // Outputs a provider can tell before applying (a service's access policy), shown as
        // `outputs.<name>` properties of the step.
        for (i, d, props, unknown) in known {
            let Some(step) = steps.get_mut(i) else {
                continue;
            };
            let outputs = d
                .provider
                .preview_outputs(run.cx(&d.urn), &props, &unknown)
                .await?;
            let old = doc.resources.get(&d.urn).map(|r| &r.outputs);
            for (name, value) in outputs {
                let was = old.and_then(|o| o.get(name));
                let absent = |v: Option<&Value>| v.is_none_or(Value::is_null);
                if was == value.as_ref() || (absent(was) && absent(value.as_ref())) {
                    continue;
                }
                step.diffs.push(PropDiff {
                    name: format!("outputs.{name}"),
                    old: was.map_or(Shown::None, |v| Shown::Value(v.clone())),
                    new: value.map_or(Shown::Unknown, Shown::Value),
                    replaces: false,
                });
            }
        }
        Ok(Plan {
            stack: self.inner.name.clone(),
            steps,
            drift,
        })
    }

    /// Applies the declarations: creates, updates, replaces and deletes in dependency order,
    /// independent resources in parallel. A failure stops what depends on it; independent
    /// work goes on; every failure is reported. A second `up` with no change does nothing.
    pub async fn up(&self) -> Result<Report> {
        self.up_with(Options::default()).await
    }

    /// [`Stack::up`] with options.
    pub async fn up_with(&self, opts: Options) -> Result<Report> {
        let (decls, exports) = self.declarations();
        let started = Instant::now();
        locked(self, "up", |inner| async move {
            let run = Arc::new(Run::open(inner.clone()).await?);
            run.resolve_pending(&decls).await?;
            let drift = if opts.refresh {
                run.refresh(&decls, true, opts.parallelism).await?.0
            } else {
                Vec::new()
            };
            let selection = if opts.targets.is_empty() {
                Selection::all()
            } else {
                // Refused before anything changes if it would break what it leaves alone.
                let doc = run.doc.lock().await;
                let selection = Selection::of(&opts.targets, opts.target_dependents, &decls, &doc)?;
                selection.check(&decls, &doc, &plan_steps(&decls, &doc, &selection)?)?;
                selection
            };
            let (mut steps, mut failures, env) =
                apply_graph(&run, &decls, &selection, opts.parallelism).await;
            // After the applies: what they replaced (`<urn>#replaced#<n>`) is not kept.
            let keep = selection.keep(&*run.doc.lock().await, decls.iter().map(|d| d.urn.clone()));
            if failures.is_empty() {
                run.delete_unwanted(&decls, &keep, opts.parallelism, &mut steps, &mut failures)
                    .await;
            }
            let (outputs, secret_outputs) = export(&run, &exports, &env).await?;
            run.compact().await?;
            let plan = Plan {
                stack: inner.name.clone(),
                steps,
                drift,
            };
            if failures.is_empty() {
                Ok(Report {
                    plan,
                    outputs,
                    secret_outputs,
                    duration: started.elapsed(),
                })
            } else {
                Err(failed("up", &inner.name, failures))
            }
        })
        .await
    }

    /// Deletes every resource of the stack, dependents first. Protected resources are refused
    /// clearly (and what they depend on is kept).
    pub async fn destroy(&self) -> Result<Report> {
        self.destroy_with(Options::default()).await
    }

    /// [`Stack::destroy`] with options.
    pub async fn destroy_with(&self, opts: Options) -> Result<Report> {
        let (decls, _) = self.declarations();
        let started = Instant::now();
        locked(self, "destroy", |inner| async move {
            let run = Run::open(inner.clone()).await?;
            run.resolve_pending(&decls).await?;
            let keep = {
                let doc = run.doc.lock().await;
                let selection = Selection::of(&opts.targets, opts.target_dependents, &decls, &doc)?;
                let keep = selection.keep(&doc, []);
                let steps: Vec<Step> = delete_order(&doc, &keep)
                    .into_iter()
                    .map(|(urn, r)| delete_step(urn, r))
                    .collect();
                selection.check(&decls, &doc, &steps)?;
                keep
            };
            let mut steps = Vec::new();
            let mut failures = Vec::new();
            run.delete_unwanted(&decls, &keep, opts.parallelism, &mut steps, &mut failures)
                .await;
            // A targeted destroy leaves the rest of the stack, and its outputs, as they are.
            if failures.is_empty() && opts.targets.is_empty() {
                run.record(Entry::Exports {
                    exports: Props::new(),
                    secret: BTreeSet::new(),
                })
                .await?;
            }
            run.compact().await?;
            let plan = Plan {
                stack: inner.name.clone(),
                steps,
                drift: Vec::new(),
            };
            if failures.is_empty() {
                Ok(Report {
                    plan,
                    outputs: Props::new(),
                    secret_outputs: BTreeSet::new(),
                    duration: started.elapsed(),
                })
            } else {
                Err(failed("destroy", &inner.name, failures))
            }
        })
        .await
    }

    /// Reads every real resource and records what changed out of band (drift), property by
    /// property; a resource deleted out of band is dropped from the state (the next `up`
    /// creates it again).
    pub async fn refresh(&self) -> Result<Report> {
        let (decls, _) = self.declarations();
        let started = Instant::now();
        locked(self, "refresh", |inner| async move {
            let run = Run::open(inner.clone()).await?;
            run.resolve_pending(&decls).await?;
            let (drift, doc) = run
                .refresh(&decls, true, Options::default().parallelism)
                .await?;
            run.compact().await?;
            Ok(Report {
                plan: Plan {
                    stack: inner.name.clone(),
                    steps: Vec::new(),
                    drift,
                },
                outputs: doc.exports,
                secret_outputs: doc.secret_exports,
                duration: started.elapsed(),
            })
        })
        .await
    }

    /// Adopts the existing resource `id` as the resource `name` the program declares (of
    /// type `type_name`, such as `mvi:blob:Bucket`), as `pulumi import` does: it is read with
    /// the declared arguments and recorded; nothing is changed. The next `up` brings it to
    /// its declaration (`preview` shows how). With `protect` (`pulumi import`'s default) it
    /// is recorded protected until an `up` records the declaration's own setting.
    ///
    /// Errors: a name the program does not declare, or declares with another type
    /// (InvalidArgument: its arguments are needed to read it); a name the stack already
    /// manages (AlreadyExists); no such resource (NotFound).
    pub async fn import(
        &self,
        type_name: &str,
        name: &str,
        id: &str,
        protect: bool,
    ) -> Result<ResourceState> {
        let op = op("import");
        if id.is_empty() {
            return Err(op.invalid(name, "import needs the id of the resource to adopt"));
        }
        let (decls, _) = self.declarations();
        let Some(d) = decls.iter().find(|d| d.name == name).cloned() else {
            return Err(op.invalid(
                name,
                "the program declares no resource of this name: declare it (its arguments are \
                 needed to read it), then import it",
            ));
        };
        if d.provider.type_name() != type_name {
            return Err(op.invalid(
                name,
                format!(
                    "the program declares it as a {}, not a {type_name}",
                    d.provider.type_name()
                ),
            ));
        }
        let provider = d.provider.clone();
        let urn = d.urn.clone();
        let id = id.to_string();
        locked(self, "import", |inner| async move {
            let run = Run::open(inner.clone()).await?;
            run.resolve_pending(&decls).await?;
            let (args, secret) = {
                let doc = run.doc.lock().await;
                if let Some(r) = doc.resources.get(&urn) {
                    return Err(op.already_exists(
                        name,
                        format!("the stack already manages it (id {:?})", r.id),
                    ));
                }
                // What it takes from other resources is known once they are recorded.
                let known: HashMap<String, Props> = d
                    .deps
                    .iter()
                    .filter_map(|u| doc.resources.get(u).map(|r| (u.clone(), r.outputs.clone())))
                    .collect();
                let r = resolve(&d, &MapEnv(&known))?;
                if let Some(prop) = r.unknown.iter().next() {
                    return Err(op.precondition(
                        name,
                        format!("its argument {prop:?} comes from a resource the stack does not manage yet: create or import that one first"),
                    ));
                }
                (r.props, r.secret)
            };
            let read = provider.read(run.cx(&urn), &id, &args).await?;
            let (inputs, outputs) = read.ok_or_else(|| {
                op.not_found(&id, format!("there is no {type_name} with this id to import"))
            })?;
            let resource = record_state(&d, id, inputs, outputs, secret, protect || d.opts.protect);
            run.record(Entry::Put {
                urn: urn.clone(),
                resource: resource.clone(),
            })
            .await?;
            run.compact().await?;
            run.emit(Event::Finished {
                urn,
                op: StepOp::Import,
                duration: Duration::ZERO,
            });
            Ok(resource)
        })
        .await
    }

    /// The stack's outputs as of its last `up`, without running the program's declarations.
    pub async fn outputs(&self) -> Result<Props> {
        Ok(load_doc(&self.inner, &self.inner.name).await?.exports)
    }

    /// The saved state (secrets decrypted): what the stack manages.
    pub async fn state(&self) -> Result<StateDoc> {
        load_doc(&self.inner, &self.inner.name).await
    }

    /// Who holds the stack's lock now, if anyone.
    pub async fn lock_holder(&self) -> Result<Option<LockHolder>> {
        self.inner.store.holder(&self.inner.name).await
    }

    /// Removes the stack's lock and returns who held it. Without `force` only a stale lock
    /// (its process gone on this host, or its lease expired) is removed, and a holder that
    /// may still be running is PreconditionFailed; with `force`, whoever holds it. A run
    /// takes a stale lock over by itself: this is for a lock held from another host that
    /// is known to be dead before its lease runs out.
    pub async fn unlock(&self, force: bool) -> Result<Option<LockHolder>> {
        self.inner.store.break_lock(&self.inner.name, force).await
    }
}

/// The steps `up` would take, from the declarations and the state `doc` (the real resources
/// are not read): the selected declared resources in declaration order, then the deletes.
/// What a step's arguments take from a resource being created or replaced is unknown.
fn plan_steps(decls: &[Declared], doc: &StateDoc, selection: &Selection) -> Result<Vec<Step>> {
    Ok(plan_steps_with_args(decls, doc, selection)?.0)
}

/// A step to create, update or replace a resource: its index in the plan, its declaration,
/// its arguments known so far and the names of those not known yet.
type KnownArgs<'d> = Vec<(usize, &'d Declared, Props, BTreeSet<String>)>;

/// The plan's steps, and the resolved arguments of the steps that change a resource.
fn plan_steps_with_args<'d>(
    decls: &'d [Declared],
    doc: &StateDoc,
    selection: &Selection,
) -> Result<(Vec<Step>, KnownArgs<'d>)> {
    let mut env = PreviewEnv::default();
    let mut known = Vec::new();
    let mut steps = Vec::with_capacity(decls.len());
    for d in decls {
        if !selection.contains(&d.urn) {
            // Left as recorded: what it recorded feeds the selected ones.
            if let Some(old) = doc.resources.get(&d.urn) {
                env.same.insert(&d.urn, &old.outputs);
            }
            continue;
        }
        let mut r = resolve(d, &env)?;
        if r.unknown.is_empty() {
            d.provider
                .check(&d.name, &r.props)
                .map_err(|e| redact(e, &r.props, &r.secret))?;
        }
        let old = doc.resources.get(&d.urn);
        let (op_kind, diffs) = decide(d, &mut r, old);
        match (op_kind, old) {
            (StepOp::Same, Some(old)) => {
                env.same.insert(&d.urn, &old.outputs);
            }
            (StepOp::Update, Some(old)) => {
                let stable = d.provider.stable_outputs();
                let kept = old
                    .outputs
                    .iter()
                    .filter(|(k, _)| stable.contains(&k.as_str()));
                env.updated
                    .insert(&d.urn, kept.map(|(k, v)| (k.clone(), v.clone())).collect());
            }
            _ => {}
        }
        if matches!(op_kind, StepOp::Create | StepOp::Update | StepOp::Replace) {
            // Outputs equal to known arguments are known to what depends on them.
            let echoed = d.provider.echoed_outputs();
            let entry = env.updated.entry(&d.urn).or_default();
            for name in echoed.iter().filter(|n| !r.unknown.contains(**n)) {
                if let Some(v) = r.props.get(*name) {
                    entry.insert((*name).to_owned(), v.clone());
                }
            }
            known.push((steps.len(), d, r.props.clone(), r.unknown.clone()));
        }
        steps.push(step(d, op_kind, diffs));
    }
    let keep = selection.keep(doc, decls.iter().map(|d| d.urn.clone()));
    steps.extend(
        delete_order(doc, &keep)
            .into_iter()
            .map(|(urn, r)| delete_step(urn, r)),
    );
    Ok((steps, known))
}

/// The step of deleting the resource recorded as `r` under `urn`.
fn delete_step(urn: String, r: &ResourceState) -> Step {
    Step {
        urn,
        type_name: r.type_name.clone(),
        name: r.name.clone(),
        parent: r.parent.clone(),
        op: StepOp::Delete,
        diffs: Vec::new(),
    }
}

/// The order `up` would delete `doc`'s resources that are not in `keep`: dependents first,
/// in waves (each in URN order) of resources no other doomed resource still depends on.
fn delete_order<'a>(
    doc: &'a StateDoc,
    keep: &BTreeSet<String>,
) -> Vec<(String, &'a ResourceState)> {
    let mut left: Vec<&String> = doc
        .resources
        .keys()
        .filter(|u| !keep.contains(*u))
        .collect();
    // What each doomed resource holds, and how many doomed resources hold each.
    let holding: HashMap<&String, Vec<String>> = left
        .iter()
        .filter_map(|u| doc.resources.get(*u).map(|r| (*u, holds(doc, u, r, true))))
        .collect();
    let mut held: HashMap<&str, usize> = HashMap::new();
    for deps in holding.values() {
        for d in deps {
            if !keep.contains(d) && doc.resources.contains_key(d) {
                *held.entry(d.as_str()).or_default() += 1;
            }
        }
    }
    let mut out = Vec::new();
    while !left.is_empty() {
        let (ready, rest): (Vec<&String>, Vec<&String>) = left
            .iter()
            .partition(|u| held.get(u.as_str()).is_none_or(|n| *n == 0));
        for u in &ready {
            for d in holding.get(*u).into_iter().flatten() {
                if let Some(n) = held.get_mut(d.as_str()) {
                    *n -= 1;
                }
            }
        }
        if ready.is_empty() {
            out.extend(
                rest.iter()
                    .filter_map(|u| doc.resources.get(*u).map(|r| ((*u).clone(), r))),
            );
            break;
        }
        out.extend(
            ready
                .iter()
                .filter_map(|u| doc.resources.get(*u).map(|r| ((*u).clone(), r))),
        );
        left = rest;
    }
    out
}

/// A finished apply task: the resource's index, the outcome, how long it took.
type Applied = (usize, Result<(Step, Props)>, Duration);

/// Applies every declared resource in dependency order, `parallelism` at a time. Returns the
/// steps done, the failures, and the outputs known at the end.
async fn apply_graph(
    run: &Arc<Run>,
    decls: &[Declared],
    selection: &Selection,
    parallelism: usize,
) -> (
    Vec<super::plan::Step>,
    Vec<(String, Error)>,
    HashMap<String, Props>,
) {
    let n = decls.len();
    let index: HashMap<&str, usize> = decls
        .iter()
        .enumerate()
        .map(|(i, d)| (d.urn.as_str(), i))
        .collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut waiting: Vec<usize> = vec![0; n];
    for (i, d) in decls.iter().enumerate() {
        for dep in &d.deps {
            if let Some(&j) = index.get(dep.as_str()) {
                dependents[j].push(i);
                waiting[i] += 1;
            }
        }
    }
    let env: Arc<RwLock<HashMap<String, Props>>> = Arc::default();
    let mut tasks = tokio::task::JoinSet::new();
    let decls: Arc<Vec<Declared>> = Arc::new(decls.to_vec());
    // Ready resources wait here, not as spawned tasks: at most `parallelism` run at once,
    // so a large apply holds a few tasks in memory, not one per resource.
    let mut ready: std::collections::VecDeque<usize> = std::collections::VecDeque::new();
    let parallelism = parallelism.max(1);
    let spawn = |tasks: &mut tokio::task::JoinSet<Applied>, i: usize| {
        let (run, env, decls) = (run.clone(), env.clone(), decls.clone());
        tasks.spawn(async move {
            let started = Instant::now();
            // Only the outputs of its dependencies: copying all known outputs for every
            // resource made a large apply quadratic.
            let d = &decls[i];
            let known: HashMap<String, Props> = {
                let env = env.read().unwrap_or_else(|e| e.into_inner());
                d.deps
                    .iter()
                    .filter_map(|u| env.get(u).map(|p| (u.clone(), p.clone())))
                    .collect()
            };
            let out = run.apply_one(d, &decls, &known).await;
            (i, out, started.elapsed())
        });
    };
    // Resources left alone by a targeted run: their recorded outputs, if they have any.
    let left_alone: HashMap<usize, Option<Props>> = {
        let doc = run.doc.lock().await;
        (0..n)
            .filter(|i| !selection.contains(&decls[*i].urn))
            .map(|i| {
                (
                    i,
                    doc.resources.get(&decls[i].urn).map(|r| r.outputs.clone()),
                )
            })
            .collect()
    };
    ready.extend((0..n).filter(|i| waiting[*i] == 0));
    let mut steps = Vec::new();
    let mut failures = Vec::new();
    let mut skipped = vec![false; n];
    loop {
        while tasks.len() < parallelism
            && let Some(i) = ready.pop_front()
        {
            let Some(recorded) = left_alone.get(&i) else {
                spawn(&mut tasks, i);
                continue;
            };
            // Done at once, with no step: what depends on it sees what it recorded.
            if let Some(outputs) = recorded {
                env.write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(decls[i].urn.clone(), outputs.clone());
            }
            release(&dependents[i], &mut waiting, &skipped, &mut ready);
        }
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        let (i, out, duration) = match joined {
            Ok(v) => v,
            Err(e) => {
                failures.push(("(engine)".to_string(), op("up").internal("task", e)));
                continue;
            }
        };
        let d = &decls[i];
        match out {
            Ok((step, outputs)) => {
                if step.op != StepOp::Same {
                    run.emit(Event::Finished {
                        urn: d.urn.clone(),
                        op: step.op,
                        duration,
                    });
                }
                env.write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(d.urn.clone(), outputs);
                steps.push(step);
                release(&dependents[i], &mut waiting, &skipped, &mut ready);
            }
            Err(e) => {
                run.emit(Event::Failed {
                    urn: d.urn.clone(),
                    op: StepOp::Update,
                    error: e.to_string(),
                });
                failures.push((d.urn.clone(), e));
                // Everything downstream is skipped.
                let mut stack = dependents[i].clone();
                while let Some(j) = stack.pop() {
                    if !skipped[j] {
                        skipped[j] = true;
                        run.emit(Event::Skipped {
                            urn: decls[j].urn.clone(),
                            because: d.urn.clone(),
                        });
                        stack.extend(dependents[j].iter().copied());
                    }
                }
            }
        }
    }
    let env = env.read().unwrap_or_else(|e| e.into_inner()).clone();
    (steps, failures, env)
}

/// A resource is done: each of its `dependents` waits for one less, and is ready when it
/// waits for none (unless it was skipped).
fn release(
    dependents: &[usize],
    waiting: &mut [usize],
    skipped: &[bool],
    ready: &mut std::collections::VecDeque<usize>,
) {
    for &j in dependents {
        waiting[j] -= 1;
        if waiting[j] == 0 && !skipped[j] {
            ready.push_back(j);
        }
    }
}

/// Evaluates and records the stack outputs; an output whose resource failed is left out.
async fn export(
    run: &Run,
    exports: &[(String, super::output::Node)],
    env: &HashMap<String, Props>,
) -> Result<(Props, BTreeSet<String>)> {
    let mut out = Props::new();
    let mut secret = BTreeSet::new();
    for (name, node) in exports {
        if let Ok(Eval::Known(v)) = (node.eval)(&MapEnv(env)) {
            if node.secret {
                secret.insert(name.clone());
            }
            out.insert(name.clone(), v);
        }
    }
    let current = run.doc.lock().await.exports.clone();
    if current != out {
        run.record(Entry::Exports {
            exports: out.clone(),
            secret: secret.clone(),
        })
        .await?;
    }
    Ok((out, secret))
}
