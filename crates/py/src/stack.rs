//! Stacks from Python: `Stack`, `Output`, and declaring the built-in resource types.
//!
//! A resource is declared through its Rust arguments type, built with its constructor (so
//! defaults come from Rust), with the arguments given in Python put over it property by
//! property. A Python argument may be a plain value, an `Output`, or a structure holding
//! outputs (a list of target group names, say): the engine then knows the dependency.

use std::sync::Arc;
use std::time::Duration;

use mvi_core::container::{ContainerSpec, ScheduleSpec};
use mvi_core::kv::{KeyAttr, KeyType};
use mvi_core::lb::{Protocol, TargetGroupSpec};
use mvi_core::metric::{AlarmSpec, Comparison, MetricId, Statistic};
use mvi_core::stack::resources::*;
use mvi_core::stack::{
    Args, ErasedInput, Event, FileStore, Input, Options, Output, Plan, Report, ResourceOptions,
    Stack as CoreStack, erase,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use serde_json::Value as Json;

use crate::cloud::Cloud;
use crate::conv::{self, SLOT, dict, json_to_py, py_to_json, template};
use crate::errors::to_py;
use crate::rt::{block, spawn, wait};

/// A value known once the resource it comes from exists (a bucket's name, a database's URL).
/// Pass it as an argument of another resource to depend on it; `apply(fn)` transforms it.
#[pyclass(frozen, name = "Output", module = "mvi")]
#[derive(Clone, Debug)]
pub struct PyOutput {
    pub(crate) out: Output<Json>,
}

fn call_py(f: &Py<PyAny>, v: Json) -> Result<Json, String> {
    Python::attach(|py| {
        let run = || -> PyResult<Json> {
            let arg = json_to_py(py, &v)?;
            let r = f.bind(py).call1((arg,))?;
            py_to_json(&r, "the result of an apply function")
        };
        run().map_err(|e| format!("the apply function raised {e}"))
    })
}

#[pymethods]
impl PyOutput {
    /// An output of `fn(value)`, computed once the value is known. The function gets plain
    /// Python data (str, int, list, dict, ...) and returns the same kind.
    fn apply(&self, f: Py<PyAny>) -> PyOutput {
        PyOutput {
            out: self.out.try_map(move |v: Json| call_py(&f, v)),
        }
    }

    /// A secret made from a plain value (a token read from the environment): encrypted in
    /// the state, masked in previews, errors and events. Usable in any stack.
    #[staticmethod]
    fn of_secret(value: &Bound<'_, PyAny>) -> PyResult<PyOutput> {
        Ok(PyOutput {
            out: Output::secret(py_to_json(value, "a secret value")?),
        })
    }

    /// The same value, marked secret: encrypted in the state, masked in previews.
    fn secret(&self) -> PyOutput {
        PyOutput {
            out: self.out.as_secret(),
        }
    }

    /// Whether the value is secret.
    #[getter]
    fn is_secret(&self) -> bool {
        self.out.is_secret()
    }

    /// The URNs of the resources this output depends on.
    #[getter]
    fn dependencies(&self) -> Vec<String> {
        self.out.dependencies().map(str::to_string).collect()
    }

    /// An output of the list of the values of `outputs` (plain values are taken as they are).
    #[staticmethod]
    #[pyo3(signature = (*values))]
    fn all(values: &Bound<'_, PyTuple>) -> PyResult<PyOutput> {
        let list = PyList::new(values.py(), values.iter())?;
        match input_of(list.as_any(), "Output.all")? {
            Input::Output(out) => Ok(PyOutput { out }),
            Input::Value(_) => Err(PyValueError::new_err(
                "Output.all needs at least one Output among its values",
            )),
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "Output(depends on {:?}{})",
            self.out.dependencies().collect::<Vec<_>>(),
            if self.out.is_secret() { ", secret" } else { "" }
        )
    }

    fn __bool__(&self) -> PyResult<bool> {
        Err(PyTypeError::new_err(
            "an Output has no value yet: use .apply(fn) to work with its value",
        ))
    }
}

/// A Python argument as an input: a plain JSON value, or one output combining every
/// `Output` found inside it (substituted into the structure once all are known).
fn input_of(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Input<Json>> {
    let mut outs: Vec<Output<Json>> = Vec::new();
    let template = template(obj, what, &mut outs)?;
    let mut it = outs.into_iter();
    let Some(first) = it.next() else {
        return Ok(Input::Value(template));
    };
    // One output of all their values, as a JSON list.
    let mut all: Output<Json> = first.try_map(|v: Json| Ok(Json::Array(vec![v])));
    for o in it {
        all = all.zip(&o).try_map(|(list, v): (Json, Json)| match list {
            Json::Array(mut l) => {
                l.push(v);
                Ok(Json::Array(l))
            }
            other => Err(format!("internal: expected a list, got {other}")),
        });
    }
    Ok(Input::Output(all.try_map(move |values: Json| {
        let values = match values {
            Json::Array(v) => v,
            other => return Err(format!("internal: expected a list, got {other}")),
        };
        Ok(substitute(&template, &values))
    })))
}

fn substitute(t: &Json, values: &[Json]) -> Json {
    match t {
        Json::Object(m) => {
            if m.len() == 1
                && let Some(i) = m.get(SLOT).and_then(Json::as_u64)
            {
                return values.get(i as usize).cloned().unwrap_or(Json::Null);
            }
            Json::Object(
                m.iter()
                    .map(|(k, v)| (k.clone(), substitute(v, values)))
                    .collect(),
            )
        }
        Json::Array(a) => Json::Array(a.iter().map(|v| substitute(v, values)).collect()),
        other => other.clone(),
    }
}

/// A resource's arguments: its Rust arguments (from its constructor) with the Python ones
/// put over them.
struct PyArgs {
    base: Box<dyn Args>,
    set: Vec<(String, Input<Json>)>,
}

impl Args for PyArgs {
    fn props(&self, stack: &Arc<str>) -> Vec<(&'static str, ErasedInput)> {
        let mut props = self.base.props(stack);
        for (name, input) in &self.set {
            if let Some(slot) = props.iter_mut().find(|(n, _)| n == name) {
                slot.1 = erase(stack, input);
            }
        }
        props
    }
}

/// The property names of an arguments type.
fn prop_names(args: &dyn Args) -> Vec<&'static str> {
    args.props(&Arc::from(""))
        .into_iter()
        .map(|(n, _)| n)
        .collect()
}

/// The output property names of a resource type, from its outputs struct.
fn output_names<R: mvi_core::stack::Resource>() -> &'static [&'static str] {
    crate::introspect::fields::<R::Outputs>()
}

/// `json` as the property `prop` of `R`'s arguments reads and writes it (every property of
/// an arguments type has a serde default, so one property alone deserializes).
fn canonical<R: mvi_core::stack::Resource>(prop: &str, json: Json, what: &str) -> PyResult<Json> {
    let mut one = serde_json::Map::new();
    one.insert(prop.to_string(), json);
    let args: R::Args = conv::from_json(Json::Object(one), what)?;
    match serde_json::to_value(&args) {
        Ok(Json::Object(mut m)) => Ok(m.remove(prop).unwrap_or(Json::Null)),
        Ok(_) | Err(_) => Err(PyValueError::new_err(format!(
            "{what}: cannot be represented"
        ))),
    }
}

type Declared = (String, Vec<(&'static str, Output<Json>)>);

fn go<R: mvi_core::stack::Resource>(
    stack: &CoreStack,
    ty: &str,
    name: &str,
    base: impl Args,
    required: &[&str],
    kw: &Bound<'_, PyDict>,
    opts: ResourceOptions,
) -> PyResult<Declared> {
    let names = prop_names(&base);
    let mut set = Vec::new();
    for (k, v) in kw.iter() {
        let k: String = k.extract()?;
        if !names.contains(&k.as_str()) {
            return Err(PyTypeError::new_err(format!(
                "{ty}() got an unexpected argument {k:?}; its arguments are: {}",
                names.join(", ")
            )));
        }
        let what = format!("{ty} {name:?} argument {k:?}");
        let input = match input_of(&v, &what)? {
            // A plain value in the canonical form of the Rust type (a `(name, kind)` pair
            // becomes a key attribute object), checked now: a wrong type fails here, naming it.
            Input::Value(json) => Input::Value(canonical::<R>(&k, json, &what)?),
            output => output,
        };
        set.push((k, input));
    }
    let missing: Vec<&str> = required
        .iter()
        .copied()
        .filter(|r| !set.iter().any(|(k, _)| k == r))
        .collect();
    if !missing.is_empty() {
        return Err(PyTypeError::new_err(format!(
            "{ty}() is missing required argument(s): {}",
            missing.join(", ")
        )));
    }
    let args = PyArgs {
        base: Box::new(base),
        set,
    };
    let h = stack.declare::<R>(name, &args, opts).map_err(to_py)?;
    let outputs = output_names::<R>()
        .iter()
        .map(|p| (*p, h.output::<Json>(p)))
        .collect();
    Ok((h.urn().to_string(), outputs))
}

/// The built-in types: Python name, provider, arguments from the Rust constructor (its
/// defaults; the placeholders of required arguments are always overwritten), and the
/// arguments Python must give.
macro_rules! builtin_types {
    ($($py:literal => $r:ty, $base:expr, [$($req:literal),*];)*) => {
        /// The built-in types, by their Python name.
        pub const TYPES: &[&str] = &[$($py,)* "Image"];

        fn declare(
            stack: &CoreStack,
            ty: &str,
            name: &str,
            kw: &Bound<'_, PyDict>,
            opts: ResourceOptions,
        ) -> PyResult<Declared> {
            match ty {
                $($py => go::<$r>(stack, ty, name, $base, &[$($req),*], kw, opts),)*
                "Image" => declare_image(stack, name, kw, opts),
                other => Err(PyValueError::new_err(format!(
                    "unknown resource type {other:?}; the types are: {}",
                    TYPES.join(", ")
                ))),
            }
        }
    };
}

builtin_types! {
    "Bucket" => BucketResource, BucketArgs::new(""), ["name"];
    "Table" => TableResource, TableArgs::new("", KeyAttr::new("", KeyType::Str)), ["name", "partition_key"];
    "Key" => KeyResource, KeyArgs::new(""), ["alias"];
    "LogGroup" => LogGroupResource, LogGroupArgs::new(""), ["name"];
    "Alarm" => AlarmResource, AlarmArgs::new(AlarmSpec::new(
        "", MetricId::new("", ""), Statistic::Sum, Comparison::GreaterThan, 0.0, Duration::from_secs(60), 1,
    )), ["name", "metric", "statistic", "comparison", "threshold", "period", "evaluation_periods"];
    "Vpc" => VpcResource, VpcArgs::new(""), ["cidr"];
    "Subnet" => SubnetResource, SubnetArgs::new("", ""), ["vpc", "cidr"];
    "SecurityGroup" => SecurityGroupResource, SecurityGroupArgs::new("", ""), ["vpc", "name"];
    "Vm" => VmResource, VmArgs::new("", "", "", ""), ["name", "size", "image", "subnet"];
    "Repository" => RepositoryResource, RepositoryArgs::new(""), ["name"];
    "ContainerService" => ContainerServiceResource, ContainerServiceArgs::new("", "", 1), ["name", "image"];
    "ScheduledTask" => ScheduledTaskResource,
        ScheduledTaskArgs::new(ScheduleSpec::new("", "", ContainerSpec::new(""))), ["name", "cron", "container"];
    "TargetGroup" => TargetGroupResource, TargetGroupArgs::new(TargetGroupSpec::new("", Protocol::Http)), ["name"];
    "LoadBalancer" => LoadBalancerResource, LoadBalancerArgs::new(""), ["name"];
    "Database" => DatabaseResource, DatabaseArgs::postgres(""), ["name"];
    "Snapshot" => SnapshotResource, SnapshotArgs::new("", ""), ["database", "name"];
    "Noop" => NoopResource, NoopArgs::new(""), ["value"];
    "AutoScaler" => AutoScalerResource, AutoScalerArgs::new("", 1, 1, Vec::new()), ["service", "min", "max"];
    "Flag" => FlagResource, FlagArgs::new("", mvi_core::flags::Flag::boolean("placeholder")), ["table", "key", "flag"];
}

/// An image: the digest of its directory is computed here, from the files, when declared.
fn declare_image(
    stack: &CoreStack,
    name: &str,
    kw: &Bound<'_, PyDict>,
    opts: ResourceOptions,
) -> PyResult<Declared> {
    let dir: String = kw
        .get_item("dir")?
        .ok_or_else(|| PyTypeError::new_err("Image() is missing required argument: dir"))?
        .extract()
        .map_err(|_| PyTypeError::new_err("Image(): dir must be a path (str)"))?;
    let config = match kw.get_item("config")? {
        Some(c) => conv::from_py(&c, "Image config", None)?,
        None => mvi_core::image::ImageConfig::default(),
    };
    let base = ImageArgs::new("", &dir, config).map_err(to_py)?;
    let rest = kw.copy()?;
    rest.del_item("dir")?;
    if rest.contains("config")? {
        rest.del_item("config")?;
    }
    go::<ImageResource>(stack, "Image", name, base, &["repository"], &rest, opts)
}

fn resource_options(opts: Option<&Bound<'_, PyAny>>) -> PyResult<ResourceOptions> {
    let mut o = ResourceOptions::default();
    let Some(opts) = opts.filter(|o| !o.is_none()) else {
        return Ok(o);
    };
    let get = |name: &str| -> PyResult<Option<Bound<'_, PyAny>>> {
        let v = opts.getattr(name)?;
        Ok((!v.is_none()).then_some(v))
    };
    o.protect = get("protect")?
        .map(|v| v.extract())
        .transpose()?
        .unwrap_or(false);
    o.ignore_changes = get("ignore_changes")?
        .map(|v| v.extract())
        .transpose()?
        .unwrap_or_default();
    o.replace_on_changes = get("replace_on_changes")?
        .map(|v| v.extract())
        .transpose()?
        .unwrap_or_default();
    o.delete_before_replace = get("delete_before_replace")?
        .map(|v| v.extract())
        .transpose()?
        .unwrap_or(false);
    o.timeout = get("timeout")?
        .map(|v| v.extract::<Duration>())
        .transpose()?;
    o.import = get("import_")?.map(|v| v.extract()).transpose()?;
    if let Some(deps) = get("depends_on")? {
        for d in deps.try_iter()? {
            let d = d?;
            // A resource object (with its urn) or a URN.
            let urn = match d.getattr("urn") {
                Ok(u) => u.extract::<String>()?,
                Err(_) => d.extract::<String>()?,
            };
            o.depends_on.push(urn);
        }
    }
    Ok(o)
}

fn plan_py(py: Python<'_>, plan: Plan) -> PyResult<Py<PyAny>> {
    conv::build(py, "Plan", json_to_py(py, &plan.to_json())?)
}

fn report_py(py: Python<'_>, r: Report) -> PyResult<Py<PyAny>> {
    let d = dict(
        py,
        vec![
            ("plan", plan_py(py, r.plan)?.into_bound(py)),
            ("outputs", json_to_py(py, &Json::Object(r.outputs))?),
            ("duration", r.duration.into_pyobject(py)?.into_any()),
        ],
    )?;
    conv::build(py, "Report", d)
}

fn event_py(py: Python<'_>, e: &Event) -> PyResult<Py<PyAny>> {
    let j = e.to_json();
    conv::build(py, "Event", json_to_py(py, &j)?)
}

/// Runs a stack operation, calling `on_event` (if given) with each progress event.
async fn with_events<T>(
    stack: CoreStack,
    on_event: Option<Py<PyAny>>,
    op: impl std::future::Future<Output = mvi_core::Result<T>>,
) -> mvi_core::Result<T> {
    let Some(cb) = on_event else {
        return op.await;
    };
    let mut rx = stack.events();
    let call = |e: Event| {
        Python::attach(|py| {
            let r = event_py(py, &e).and_then(|ev| cb.bind(py).call1((ev,)).map(|_| ()));
            if let Err(err) = r {
                err.write_unraisable(py, Some(cb.bind(py)));
            }
        })
    };
    tokio::pin!(op);
    loop {
        tokio::select! {
            r = &mut op => {
                while let Ok(e) = rx.try_recv() {
                    call(e);
                }
                return r;
            }
            e = rx.recv() => {
                if let Ok(e) = e {
                    call(e);
                }
            }
        }
    }
}

fn options(
    refresh: bool,
    parallelism: Option<usize>,
    targets: Option<Vec<String>>,
    target_dependents: bool,
) -> Options {
    let mut o = Options::default();
    if !refresh {
        o = o.no_refresh();
    }
    if let Some(n) = parallelism {
        o = o.parallelism(n);
    }
    for t in targets.unwrap_or_default() {
        o = o.target(t);
    }
    if target_dependents {
        o = o.target_dependents();
    }
    o
}

/// A stack: resources declared by the program, previewed, applied, refreshed, destroyed.
/// `Stack(name, cloud, state_dir=".mvi/stacks")`. A component of a stack is a `Stack` too
/// (from `stack.component(type, name)`): resources declared through it are its children.
#[pyclass(frozen, module = "mvi", subclass)]
#[derive(Debug)]
pub struct Stack {
    pub(crate) inner: CoreStack,
}

type Op<T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = mvi_core::Result<conv::With<T>>> + Send>>;

/// Each operation once, as a future both the blocking and the awaitable method run.
impl Stack {
    fn preview_op(&self, opts: Options) -> Op<Plan> {
        let s = self.inner.clone();
        Box::pin(async move {
            let plan = s.preview_with(opts).await?;
            Ok(conv::With(plan, plan_py))
        })
    }

    fn up_op(&self, opts: Options, on_event: Option<Py<PyAny>>) -> Op<Report> {
        let s = self.inner.clone();
        Box::pin(async move {
            let r = with_events(s.clone(), on_event, s.up_with(opts)).await?;
            Ok(conv::With(r, report_py))
        })
    }

    fn destroy_op(&self, opts: Options, on_event: Option<Py<PyAny>>) -> Op<Report> {
        let s = self.inner.clone();
        Box::pin(async move {
            let r = with_events(s.clone(), on_event, s.destroy_with(opts)).await?;
            Ok(conv::With(r, report_py))
        })
    }

    fn refresh_op(&self) -> Op<Report> {
        let s = self.inner.clone();
        Box::pin(async move {
            let r = s.refresh().await?;
            Ok(conv::With(r, report_py))
        })
    }
}

#[pymethods]
impl Stack {
    #[new]
    #[pyo3(signature = (name, cloud, state_dir=".mvi/stacks".to_string()))]
    fn new(name: &str, cloud: &Bound<'_, Cloud>, state_dir: String) -> PyResult<Self> {
        let inner = CoreStack::new(name, cloud.get().cloud.clone(), FileStore::new(state_dir))
            .map_err(to_py)?;
        Ok(Stack { inner })
    }

    /// The stack's name.
    #[getter]
    fn name(&self) -> String {
        self.inner.name().to_string()
    }

    /// A component: a view of the stack whose resources are children of `type_name`
    /// `name`, named `<name>/<resource>`.
    fn component(&self, type_name: &str, name: &str) -> PyResult<Stack> {
        Ok(Stack {
            inner: self.inner.component(type_name, name).map_err(to_py)?,
        })
    }

    /// Declares a built-in resource of type `type_name` (see `mvi.resources`); returns its
    /// URN and its outputs by property.
    #[pyo3(signature = (type_name, name, args, opts=None))]
    fn _declare(
        &self,
        py: Python<'_>,
        type_name: &str,
        name: &str,
        args: &Bound<'_, PyDict>,
        opts: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<(String, Py<PyDict>)> {
        let (urn, outputs) = declare(&self.inner, type_name, name, args, resource_options(opts)?)?;
        let d = PyDict::new(py);
        for (prop, out) in outputs {
            d.set_item(prop, PyOutput { out })?;
        }
        Ok((urn, d.unbind()))
    }

    /// Exports `output` as the stack output `name` (read after `up` with `outputs()`).
    fn export(&self, name: &str, output: &Bound<'_, PyAny>) -> PyResult<()> {
        match input_of(output, &format!("export {name:?}"))? {
            Input::Output(o) => self.inner.export(name, &o).map_err(to_py),
            Input::Value(_) => Err(PyTypeError::new_err(format!(
                "export {name:?}: give an Output (a resource's attribute, or Output.all(...))"
            ))),
        }
    }

    /// What `up` would do: a `Plan` (`print(plan)` shows it like `pulumi preview`).
    #[pyo3(signature = (*, refresh=true, targets=None, target_dependents=false))]
    fn preview(
        &self,
        py: Python<'_>,
        refresh: bool,
        targets: Option<Vec<String>>,
        target_dependents: bool,
    ) -> PyResult<Py<PyAny>> {
        block(
            py,
            self.preview_op(options(refresh, None, targets, target_dependents)),
        )
    }

    /// Applies the stack; `on_event(event)` is called with each progress `Event`.
    #[pyo3(signature = (*, refresh=true, parallelism=None, on_event=None, targets=None, target_dependents=false))]
    fn up(
        &self,
        py: Python<'_>,
        refresh: bool,
        parallelism: Option<usize>,
        on_event: Option<Py<PyAny>>,
        targets: Option<Vec<String>>,
        target_dependents: bool,
    ) -> PyResult<Py<PyAny>> {
        let opts = options(refresh, parallelism, targets, target_dependents);
        block(py, self.up_op(opts, on_event))
    }

    /// Deletes every resource of the stack, dependents first.
    #[pyo3(signature = (*, parallelism=None, on_event=None, targets=None, target_dependents=false))]
    fn destroy(
        &self,
        py: Python<'_>,
        parallelism: Option<usize>,
        on_event: Option<Py<PyAny>>,
        targets: Option<Vec<String>>,
        target_dependents: bool,
    ) -> PyResult<Py<PyAny>> {
        let opts = options(true, parallelism, targets, target_dependents);
        block(py, self.destroy_op(opts, on_event))
    }

    /// Reads every real resource and records drift (the report's plan lists it).
    fn refresh(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        block(py, self.refresh_op())
    }

    /// Adopts the existing resource `id` as the resource `name` the program declares (of
    /// `type_name`, such as "mvi:blob:Bucket"): read and recorded, nothing changed; the
    /// next `up` brings it to its declaration. Returns (URN, id). `protect` (the default, as
    /// `pulumi import`) records it protected until an `up` records the declaration's own.
    #[pyo3(signature = (type_name, name, id, *, protect=true))]
    fn import_resource(
        &self,
        py: Python<'_>,
        type_name: String,
        name: String,
        id: String,
        protect: bool,
    ) -> PyResult<(String, String)> {
        let s = self.inner.clone();
        let r = wait(py, async move {
            s.import(&type_name, &name, &id, protect).await
        })?;
        Ok((
            format!("{}::{}::{}", self.inner.name(), r.type_name, r.name),
            r.id,
        ))
    }

    /// Removes the stack's lock and returns who held it (a description), or None. Without
    /// `force`, only a stale lock (its process gone, or its lease expired); with it, whoever
    /// holds it.
    #[pyo3(signature = (*, force=false))]
    fn unlock(&self, py: Python<'_>, force: bool) -> PyResult<Option<String>> {
        let s = self.inner.clone();
        let h = wait(py, async move { s.unlock(force).await })?;
        Ok(h.map(|h| h.to_string()))
    }

    /// The names of the exported outputs that are secret.
    fn secret_outputs(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        let s = self.inner.clone();
        let doc = wait(py, async move { s.state().await })?;
        Ok(doc.secret_exports.into_iter().collect())
    }

    /// The resources the stack manages: (URN, type, id) for each.
    fn resources(&self, py: Python<'_>) -> PyResult<Vec<(String, String, String)>> {
        let s = self.inner.clone();
        let doc = wait(py, async move { s.state().await })?;
        Ok(doc
            .resources
            .into_iter()
            .map(|(urn, r)| (urn, r.type_name, r.id))
            .collect())
    }

    /// The stack's exported outputs as saved by the last `up`.
    fn outputs(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let s = self.inner.clone();
        let o = wait(py, async move { s.outputs().await })?;
        Ok(json_to_py(py, &Json::Object(o))?.unbind())
    }

    /// `preview` as an awaitable.
    #[pyo3(signature = (*, refresh=true, targets=None, target_dependents=false))]
    fn preview_async<'py>(
        &self,
        py: Python<'py>,
        refresh: bool,
        targets: Option<Vec<String>>,
        target_dependents: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        spawn(
            py,
            self.preview_op(options(refresh, None, targets, target_dependents)),
        )
    }

    /// `up` as an awaitable.
    #[pyo3(signature = (*, refresh=true, parallelism=None, on_event=None, targets=None, target_dependents=false))]
    fn up_async<'py>(
        &self,
        py: Python<'py>,
        refresh: bool,
        parallelism: Option<usize>,
        on_event: Option<Py<PyAny>>,
        targets: Option<Vec<String>>,
        target_dependents: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let opts = options(refresh, parallelism, targets, target_dependents);
        spawn(py, self.up_op(opts, on_event))
    }

    /// `destroy` as an awaitable.
    #[pyo3(signature = (*, parallelism=None, on_event=None, targets=None, target_dependents=false))]
    fn destroy_async<'py>(
        &self,
        py: Python<'py>,
        parallelism: Option<usize>,
        on_event: Option<Py<PyAny>>,
        targets: Option<Vec<String>>,
        target_dependents: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let opts = options(true, parallelism, targets, target_dependents);
        spawn(py, self.destroy_op(opts, on_event))
    }

    /// `refresh` as an awaitable.
    fn refresh_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        spawn(py, self.refresh_op())
    }

    fn __repr__(&self) -> String {
        format!("Stack({:?})", self.inner.name())
    }
}
