//! Stacks: typed infrastructure programs with preview, up, destroy and refresh.
//!
//! A program makes a [`Stack`], declares resources with typed arguments and gets typed
//! handles back whose fields are [`Output`]s; passing an output into another resource's
//! arguments records the dependency. [`Stack::preview`] shows the plan, [`Stack::up`] applies
//! it (independent resources in parallel), [`Stack::destroy`] deletes everything in reverse
//! order, [`Stack::refresh`] reads the real resources and reports drift. State is saved after
//! every step, locked against concurrent runs, and keeps secrets encrypted.
//!
//! ```no_run
//! # async fn demo(cloud: mvi_core::Cloud) -> mvi_core::Result<()> {
//! use mvi_core::stack::{FileStore, Stack, resources::{Bucket, BucketArgs}};
//! let stack = Stack::new("shop", cloud, FileStore::new(".mvi/stacks"))?;
//! let assets = Bucket::new(&stack, "assets", BucketArgs::new("shop-assets"))?;
//! stack.export("assets_bucket", &assets.name)?;
//! println!("{}", stack.preview().await?);
//! stack.up().await?;
//! # Ok(()) }
//! ```

mod engine;
mod output;
mod plan;
mod provider;
pub mod resources;
mod state;
mod store;
mod targets;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use engine::{Options, Report};
pub use output::{Args, ErasedInput, Input, Output, Props, erase};
pub use plan::{Drift, Event, Plan, PropDiff, Shown, Step, StepOp};
pub use provider::{Cx, Provider, Resource};
pub use state::{
    PendingKind, PendingOp, ResourceState, STATE_KEY_ALIAS, STATE_VERSION, StateDoc, masked,
};
pub use store::{BlobStore, FileStore, LEASE, LockHolder, StateStore};

use crate::cloud::Cloud;
use crate::error::{Op, Result, Service};
use output::Node;

fn op(operation: &'static str) -> Op {
    Op::new(Service::Stack, operation)
}

/// Options of one resource.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ResourceOptions {
    /// Refuse to delete it (destroy, replace, or removing it from the program fail clearly).
    pub protect: bool,
    /// Argument properties whose changes are ignored after creation.
    pub ignore_changes: Vec<String>,
    /// Argument properties whose change replaces the resource (beyond its type's own).
    pub replace_on_changes: Vec<String>,
    /// Replace by deleting first, then creating (default for types with fixed names).
    pub delete_before_replace: bool,
    /// Time allowed for each create, update or delete (default: no limit).
    pub timeout: Option<Duration>,
    /// Adopt the existing resource with this id instead of creating one.
    pub import: Option<String>,
    /// Extra dependencies (URNs), beyond those recorded through outputs.
    pub depends_on: Vec<String>,
}

impl ResourceOptions {
    /// Protects the resource from deletion.
    pub fn protect(mut self) -> Self {
        self.protect = true;
        self
    }

    /// Ignores changes of `prop` after creation.
    pub fn ignore_changes(mut self, prop: impl Into<String>) -> Self {
        self.ignore_changes.push(prop.into());
        self
    }

    /// Replaces the resource when `prop` changes.
    pub fn replace_on_changes(mut self, prop: impl Into<String>) -> Self {
        self.replace_on_changes.push(prop.into());
        self
    }

    /// Deletes before creating on replacement.
    pub fn delete_before_replace(mut self) -> Self {
        self.delete_before_replace = true;
        self
    }

    /// Limits each provider call.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Adopts the existing resource `id`.
    pub fn import(mut self, id: impl Into<String>) -> Self {
        self.import = Some(id.into());
        self
    }

    /// Depends on the resource `urn` too.
    pub fn depends_on(mut self, urn: impl Into<String>) -> Self {
        self.depends_on.push(urn.into());
        self
    }
}

/// One declared resource.
#[derive(Clone)]
pub(crate) struct Declared {
    pub urn: String,
    pub name: String,
    pub parent: Option<String>,
    pub provider: Arc<dyn Provider>,
    pub props: Vec<(&'static str, Node)>,
    pub deps: BTreeSet<String>,
    pub opts: ResourceOptions,
}

#[derive(Default)]
pub(crate) struct Declarations {
    pub resources: Vec<Declared>,
    pub index: BTreeMap<String, usize>,
    /// The declared resources' full names (unique in the stack).
    pub names: BTreeSet<String>,
    /// URNs of the declared components (groups of resources shown as one node).
    pub components: Vec<String>,
    pub exports: Vec<(String, Node)>,
}

pub(crate) struct Inner {
    pub name: String,
    /// Identifies this stack object: outputs carry it, so an output of another stack used
    /// here without an export is refused.
    pub id: Arc<str>,
    pub cloud: Cloud,
    pub store: Arc<dyn StateStore>,
    pub decl: Mutex<Declarations>,
    pub events: tokio::sync::broadcast::Sender<Event>,
}

/// A stack (or, from [`Stack::component`], a component inside one). Cheap to clone.
#[derive(Clone)]
pub struct Stack {
    pub(crate) inner: Arc<Inner>,
    /// The component this view declares into: its URN and its name prefix.
    scope: Option<(String, String)>,
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("name", &self.inner.name)
            .field("component", &self.scope.as_ref().map(|s| &s.0))
            .finish_non_exhaustive()
    }
}

/// Checks a stack or resource name: 1–100 letters, digits, `-`, `_` and `.`.
fn check_name(op: Op, what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !ok {
        return Err(op.invalid(
            name,
            format!("{what} names must be 1 to 100 letters, digits, '-', '_' or '.'"),
        ));
    }
    Ok(())
}

impl Stack {
    /// A stack named `name` over `cloud`, keeping its state in `store`.
    pub fn new(name: &str, cloud: Cloud, store: impl StateStore) -> Result<Stack> {
        Self::with_store(name, cloud, Arc::new(store))
    }

    /// Like [`Stack::new`], with a shared store.
    pub fn with_store(name: &str, cloud: Cloud, store: Arc<dyn StateStore>) -> Result<Stack> {
        check_name(op("new"), "stack", name)?;
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Stack {
            inner: Arc::new(Inner {
                name: name.to_string(),
                id: format!("{name}#{}#{n}", std::process::id()).into(),
                cloud,
                store,
                decl: Mutex::new(Declarations::default()),
                events: tokio::sync::broadcast::channel(4096).0,
            }),
            scope: None,
        })
    }

    /// The stack's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The backend.
    pub fn cloud(&self) -> &Cloud {
        &self.inner.cloud
    }

    /// Progress events of the operations that run from now on.
    pub fn events(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    fn decl(&self) -> std::sync::MutexGuard<'_, Declarations> {
        // Declarations are only appended whole, so a poisoned lock still guards valid ones.
        self.inner.decl.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A component named `name` (e.g. a `WebService` made of several resources): resources
    /// declared through the returned view are its children, named `<component>/<name>`, and
    /// shown under it in previews.
    pub fn component(&self, type_name: &str, name: &str) -> Result<Stack> {
        let op = op("component");
        check_name(op, "component", name)?;
        let full = self.full_name(name);
        let urn = format!("{}::mvi:component:{type_name}::{full}", self.inner.name);
        let mut decl = self.decl();
        if decl.components.contains(&urn) || decl.index.contains_key(&urn) {
            return Err(op.already_exists(&full, "a component with this name is already declared"));
        }
        decl.components.push(urn.clone());
        Ok(Stack {
            inner: self.inner.clone(),
            scope: Some((urn, format!("{full}/"))),
        })
    }

    fn full_name(&self, name: &str) -> String {
        match &self.scope {
            Some((_, prefix)) => format!("{prefix}{name}"),
            None => name.to_string(),
        }
    }

    /// Declares a resource of type `R` (the typed constructors in [`resources`] call this).
    /// Errors: a duplicate name, an output of another stack, an unknown `depends_on`.
    pub fn declare<R: Resource>(
        &self,
        name: &str,
        args: &impl Args,
        opts: ResourceOptions,
    ) -> Result<Handle> {
        let op = op("declare");
        check_name(op, "resource", name)?;
        let full = self.full_name(name);
        let urn = format!("{}::{}::{}", self.inner.name, R::TYPE, full);
        let props = args.props(&self.inner.id);
        let mut deps = BTreeSet::new();
        for (prop, input) in &props {
            if input.0.stack != self.inner.id && &*input.0.stack != output::ANY_STACK {
                return Err(op.invalid(
                    &full,
                    format!(
                        "argument {prop:?} uses an output of another stack ({:?}); export it there \
                         and read it here with Stack::reference",
                        input.0.deps
                    ),
                ));
            }
            deps.extend(input.0.deps.iter().cloned());
        }
        // Arguments given as secrets, and those the type declares secret whatever the value.
        let secret_inputs: BTreeSet<&'static str> = props
            .iter()
            .filter(|(k, i)| i.0.secret || R::SECRET_INPUTS.contains(k))
            .map(|(k, _)| *k)
            .collect();
        let mut decl = self.decl();
        if decl.index.contains_key(&urn) || decl.names.contains(&full) {
            return Err(op.already_exists(
                &full,
                "a resource with this name is already declared in the stack",
            ));
        }
        for d in &opts.depends_on {
            if !decl.index.contains_key(d) {
                return Err(op.not_found(
                    &full,
                    format!("depends_on names {d:?}, which is not declared (yet) in this stack"),
                ));
            }
            deps.insert(d.clone());
        }
        // Outputs only come from resources declared before, so the graph is acyclic by
        // construction; this guards the invariant the engine relies on.
        if let Some(missing) = deps.iter().find(|d| !decl.index.contains_key(*d)) {
            return Err(op.invalid(
                &full,
                format!("it depends on {missing}, which is not declared before it (a cycle?)"),
            ));
        }
        let i = decl.resources.len();
        decl.index.insert(urn.clone(), i);
        decl.names.insert(full.clone());
        decl.resources.push(Declared {
            urn: urn.clone(),
            name: full,
            parent: self.scope.as_ref().map(|s| s.0.clone()),
            provider: Arc::new(provider::Erased::<R>::new()),
            props: props
                .into_iter()
                .map(|(k, v)| {
                    let mut node = v.0;
                    node.secret |= R::SECRET_INPUTS.contains(&k);
                    (k, node)
                })
                .collect(),
            deps,
            opts,
        });
        Ok(Handle {
            stack: self.inner.id.clone(),
            urn,
            secret_outputs: R::SECRET_OUTPUTS,
            secret_inputs,
        })
    }

    /// Exports `output` as the stack output `name`, readable after `up` with
    /// [`Stack::outputs`] and from other stacks with [`Stack::reference`].
    pub fn export<T>(&self, name: &str, output: &Output<T>) -> Result<()> {
        let op = op("export");
        check_name(op, "output", name)?;
        if output.node.stack != self.inner.id && &*output.node.stack != output::ANY_STACK {
            return Err(op.invalid(name, "the output belongs to another stack"));
        }
        let mut decl = self.decl();
        if decl.exports.iter().any(|(n, _)| n == name) {
            return Err(op.already_exists(name, "an output of this name is already exported"));
        }
        decl.exports.push((name.to_string(), output.node.clone()));
        Ok(())
    }

    /// Reads the exported outputs of the stack `other` from the same store, for use here.
    pub async fn reference(&self, other: &str) -> Result<StackReference> {
        let doc = engine::load_doc(&self.inner, other).await?;
        Ok(StackReference {
            stack: self.inner.id.clone(),
            name: other.to_string(),
            exports: doc.exports,
            secret: doc.secret_exports,
        })
    }
}

/// The handle of a declared resource: its URN, and its outputs by property.
#[derive(Debug, Clone)]
pub struct Handle {
    stack: Arc<str>,
    urn: String,
    secret_outputs: &'static [&'static str],
    /// Arguments given as secrets: outputs of the same name are secret too.
    secret_inputs: BTreeSet<&'static str>,
}

impl Handle {
    /// The resource's URN.
    pub fn urn(&self) -> &str {
        &self.urn
    }

    /// The output property `prop` (secret if the type says so, or if it carries an argument
    /// given as a secret).
    pub fn output<T: Serialize + DeserializeOwned + 'static>(
        &self,
        prop: &'static str,
    ) -> Output<T> {
        let secret = self.secret_outputs.contains(&prop) || self.secret_inputs.contains(prop);
        Output::of_resource(self.stack.clone(), &self.urn, prop, secret)
    }
}

/// The exported outputs of another stack.
#[derive(Debug, Clone)]
pub struct StackReference {
    stack: Arc<str>,
    name: String,
    exports: Props,
    secret: BTreeSet<String>,
}

impl StackReference {
    /// The exported output `name` (NotFound if the other stack does not export it).
    pub fn output<T: Serialize + DeserializeOwned + 'static>(
        &self,
        name: &str,
    ) -> Result<Output<T>> {
        let value = self.exports.get(name).cloned().ok_or_else(|| {
            op("reference").not_found(
                format!("{}.{name}", self.name),
                "the stack exports no output of this name (has it been applied?)",
            )
        })?;
        Ok(Output::from_node(Node {
            stack: self.stack.clone(),
            deps: BTreeSet::new(),
            secret: self.secret.contains(name),
            eval: Arc::new(move |_: &dyn output::Env| Ok(output::Eval::Known(value.clone()))),
        }))
    }
}
