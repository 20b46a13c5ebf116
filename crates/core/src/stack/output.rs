//! Outputs and inputs: values that may not be known until the resource they come from exists.
//!
//! An [`Output<T>`] is a promise of a `T` held by a resource (a bucket's name, a database's
//! URL). It carries the resources it depends on and whether it is secret. Passing it (as an
//! [`Input<T>`]) into another resource's arguments is how dependencies are recorded: nobody
//! lists them by hand. During a preview an output whose resource is not created yet is
//! *unknown*; during `up` it is known once its resource is applied.

use std::collections::BTreeSet;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Properties of a resource: top-level name → JSON value.
pub type Props = serde_json::Map<String, Value>;

/// What an output evaluates against: the outputs of resources known so far.
pub(crate) trait Env: Sync {
    /// The output `prop` of resource `urn`: known (applied, or unchanged in state), or not
    /// known yet.
    fn output(&self, urn: &str, prop: &str) -> Eval;
}

/// The value of an output, or the fact that it is not known yet.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Eval {
    Known(Value),
    Unknown,
}

type EvalFn = dyn Fn(&dyn Env) -> Result<Eval, String> + Send + Sync;

/// The stack of an output made from a plain value ([`Output::secret`]): it belongs to none,
/// so any stack may use it.
pub(crate) const ANY_STACK: &str = "";

/// The stack of an output made of two: the one that is not [`ANY_STACK`].
fn either_stack(a: &Arc<str>, b: &Arc<str>) -> Arc<str> {
    if a.is_empty() { b.clone() } else { a.clone() }
}

/// The type-erased part of an output or input.
#[derive(Clone)]
pub(crate) struct Node {
    /// The stack the output belongs to (outputs cannot cross stacks except through exports).
    pub stack: Arc<str>,
    /// Resources (URNs) whose outputs this depends on.
    pub deps: BTreeSet<String>,
    /// Whether the value is secret.
    pub secret: bool,
    pub eval: Arc<EvalFn>,
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("stack", &self.stack)
            .field("deps", &self.deps)
            .field("secret", &self.secret)
            .finish_non_exhaustive()
    }
}

/// A value a resource will have: known after the resource is applied.
pub struct Output<T> {
    pub(crate) node: Node,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for Output<T> {
    fn clone(&self) -> Self {
        Output {
            node: self.node.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Output<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the value: it may be secret, and it is not known here anyway.
        write!(
            f,
            "Output<{}>(depends on {:?}{})",
            std::any::type_name::<T>(),
            self.node.deps,
            if self.node.secret { ", secret" } else { "" }
        )
    }
}

impl<T: Serialize + DeserializeOwned + 'static> Output<T> {
    pub(crate) fn from_node(node: Node) -> Self {
        Output {
            node,
            _t: PhantomData,
        }
    }

    /// The output property `prop` of resource `urn` of `stack`.
    pub(crate) fn of_resource(
        stack: Arc<str>,
        urn: &str,
        prop: &'static str,
        secret: bool,
    ) -> Self {
        let key = urn.to_string();
        Output::from_node(Node {
            stack,
            deps: [urn.to_string()].into(),
            secret,
            eval: Arc::new(move |env: &dyn Env| Ok(env.output(&key, prop))),
        })
    }

    /// A transformed output: `f` runs on the value once it is known. Dependencies and the
    /// secret flag carry over.
    pub fn map<U, F>(&self, f: F) -> Output<U>
    where
        U: Serialize + DeserializeOwned + 'static,
        F: Fn(T) -> U + Send + Sync + 'static,
    {
        self.try_map(move |t| Ok(f(t)))
    }

    /// Like [`Output::map`], for a transformation that may fail: its error fails the
    /// operation that evaluates the output, naming the resource whose argument it is (the
    /// Python binding's `Output.apply` runs Python functions through it).
    pub fn try_map<U, F>(&self, f: F) -> Output<U>
    where
        U: Serialize + DeserializeOwned + 'static,
        F: Fn(T) -> Result<U, String> + Send + Sync + 'static,
    {
        let inner = self.node.eval.clone();
        Output::from_node(Node {
            stack: self.node.stack.clone(),
            deps: self.node.deps.clone(),
            secret: self.node.secret,
            eval: Arc::new(move |env: &dyn Env| match inner(env)? {
                Eval::Known(v) => {
                    let t: T = serde_json::from_value(v).map_err(|e| e.to_string())?;
                    serde_json::to_value(f(t)?)
                        .map(Eval::Known)
                        .map_err(|e| e.to_string())
                }
                Eval::Unknown => Ok(Eval::Unknown),
            }),
        })
    }

    /// Both values, once both are known.
    pub fn zip<U>(&self, other: &Output<U>) -> Output<(T, U)>
    where
        U: Serialize + DeserializeOwned + 'static,
    {
        let (a, b) = (self.node.eval.clone(), other.node.eval.clone());
        Output::from_node(Node {
            stack: either_stack(&self.node.stack, &other.node.stack),
            deps: self.node.deps.union(&other.node.deps).cloned().collect(),
            secret: self.node.secret || other.node.secret,
            eval: Arc::new(move |env: &dyn Env| match (a(env)?, b(env)?) {
                (Eval::Known(x), Eval::Known(y)) => Ok(Eval::Known(Value::Array(vec![x, y]))),
                _ => Ok(Eval::Unknown),
            }),
        })
    }

    /// A secret made from a plain value (a token read from the environment, say): encrypted
    /// in state, masked in previews, errors, events and `Debug`. Usable in any stack.
    pub fn secret(value: T) -> Output<T> {
        let value = serde_json::to_value(value);
        Output::from_node(Node {
            stack: ANY_STACK.into(),
            deps: BTreeSet::new(),
            secret: true,
            eval: Arc::new(move |_: &dyn Env| match &value {
                Ok(v) => Ok(Eval::Known(v.clone())),
                Err(e) => Err(e.to_string()),
            }),
        })
    }

    /// The same value, marked secret: encrypted in state, masked in previews.
    pub fn as_secret(&self) -> Output<T> {
        let mut node = self.node.clone();
        node.secret = true;
        Output::from_node(node)
    }

    /// Whether the value is secret.
    pub fn is_secret(&self) -> bool {
        self.node.secret
    }

    /// The resources this output depends on (their URNs).
    pub fn dependencies(&self) -> impl Iterator<Item = &str> {
        self.node.deps.iter().map(String::as_str)
    }
}

impl Output<String> {
    /// `format!`-style interpolation of one output into a template: `{}` is replaced.
    pub fn format(&self, template: &str) -> Output<String> {
        let template = template.to_string();
        self.map(move |v| template.replacen("{}", &v, 1))
    }
}

/// An argument of a resource: a plain value, or an output of another resource.
pub enum Input<T> {
    /// Known when the program runs.
    Value(T),
    /// Known once another resource is applied.
    Output(Output<T>),
}

impl<T: Clone> Clone for Input<T> {
    fn clone(&self) -> Self {
        match self {
            Input::Value(v) => Input::Value(v.clone()),
            Input::Output(o) => Input::Output(o.clone()),
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Input<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Input::Value(v) => v.fmt(f),
            Input::Output(o) => o.fmt(f),
        }
    }
}

impl<T> From<T> for Input<T> {
    fn from(v: T) -> Self {
        Input::Value(v)
    }
}

impl From<&str> for Input<String> {
    fn from(v: &str) -> Self {
        Input::Value(v.to_string())
    }
}

impl<T> From<Output<T>> for Input<T> {
    fn from(o: Output<T>) -> Self {
        Input::Output(o)
    }
}

impl<T> From<&Output<T>> for Input<T> {
    fn from(o: &Output<T>) -> Self {
        Input::Output(o.clone())
    }
}

impl<T: Serialize + DeserializeOwned + Send + Sync + 'static> Input<T> {
    /// The type-erased input, for the engine. `stack` is the declaring stack (for a plain value).
    pub(crate) fn erase(&self, stack: &Arc<str>) -> Node {
        match self {
            Input::Output(o) => o.node.clone(),
            Input::Value(v) => {
                let value = serde_json::to_value(v);
                Node {
                    stack: stack.clone(),
                    deps: BTreeSet::new(),
                    secret: false,
                    eval: Arc::new(move |_: &dyn Env| match &value {
                        Ok(v) => Ok(Eval::Known(v.clone())),
                        Err(e) => Err(e.to_string()),
                    }),
                }
            }
        }
    }
}

/// Arguments of a resource type: its top-level properties as inputs.
pub trait Args: Send + Sync + 'static {
    /// Each property's name and input, erased.
    fn props(&self, stack: &Arc<str>) -> Vec<(&'static str, ErasedInput)>;
}

/// One erased property input (built with [`erase`]).
#[derive(Debug, Clone)]
pub struct ErasedInput(pub(crate) Node);

/// Erases a property's input, for [`Args::props`].
pub fn erase<T: Serialize + DeserializeOwned + Send + Sync + 'static>(
    stack: &Arc<str>,
    input: &Input<T>,
) -> ErasedInput {
    ErasedInput(input.erase(stack))
}
