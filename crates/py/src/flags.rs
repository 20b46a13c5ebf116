//! Feature flags from Python: `Flags` (the store in a KV table), `FlagClient` (every flag in
//! memory) and `EvalContext`. Flags are dicts of the same JSON the Rust `Flag` reads and
//! writes (`mvi.flags` builds them).

use std::time::Duration;

use mvi_core::flags::{self as core, ErrorCode, Evaluation as CoreEvaluation, FlagValue};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyString};
use serde_json::Value as Json;

use crate::cloud::Cloud;
use crate::conv::{json_to_py, py_to_json};
use crate::errors::to_py;
use crate::rt::wait;

/// What an evaluation is about: the targeting key and attributes. Build it once per user and
/// reuse it: evaluations with a ready context cost least.
#[pyclass(frozen, module = "mvi", name = "EvalContext")]
#[derive(Debug, Clone)]
pub struct PyEvalContext {
    ctx: core::EvalContext,
}

#[pymethods]
impl PyEvalContext {
    #[new]
    #[pyo3(signature = (targeting_key = None, **attributes))]
    fn new(
        targeting_key: Option<String>,
        attributes: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let mut ctx = core::EvalContext {
            targeting_key,
            attributes: Default::default(),
        };
        if let Some(attrs) = attributes {
            for (k, v) in attrs.iter() {
                let name: String = k.extract()?;
                let value = py_to_json(&v, &format!("attribute {name:?}"))?;
                ctx.attributes.insert(name, value);
            }
        }
        Ok(PyEvalContext { ctx })
    }

    /// The targeting key.
    #[getter]
    fn targeting_key(&self) -> Option<String> {
        self.ctx.targeting_key.clone()
    }

    /// The attributes, as a dict.
    #[getter]
    fn attributes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_to_py(
            py,
            &Json::Object(self.ctx.attributes.clone().into_iter().collect()),
        )
    }

    fn __repr__(&self) -> String {
        format!(
            "EvalContext({:?}, {} attributes)",
            self.ctx.targeting_key,
            self.ctx.attributes.len()
        )
    }
}

/// A context argument: an `EvalContext`, a targeting key (str), a dict of attributes (with
/// `targeting_key` among them, if any) or None.
enum Ctx<'a> {
    Ready(&'a PyEvalContext),
    Made(core::EvalContext),
}

impl std::ops::Deref for Ctx<'_> {
    type Target = core::EvalContext;
    fn deref(&self) -> &core::EvalContext {
        match self {
            Ctx::Ready(c) => &c.ctx,
            Ctx::Made(c) => c,
        }
    }
}

fn ctx<'a>(obj: Option<&'a Bound<'_, PyAny>>) -> PyResult<Ctx<'a>> {
    let Some(obj) = obj else {
        return Ok(Ctx::Made(core::EvalContext::new()));
    };
    if obj.is_none() {
        return Ok(Ctx::Made(core::EvalContext::new()));
    }
    if let Ok(c) = obj.cast::<PyEvalContext>() {
        return Ok(Ctx::Ready(c.get()));
    }
    if obj.cast::<PyString>().is_ok() {
        return Ok(Ctx::Made(core::EvalContext::key(obj.extract::<String>()?)));
    }
    if obj.cast::<PyDict>().is_ok() {
        let mut c = core::EvalContext::new();
        let Json::Object(m) = py_to_json(obj, "context")? else {
            unreachable!("a dict is a JSON object")
        };
        for (k, v) in m {
            if k == "targeting_key" {
                c.targeting_key = v.as_str().map(str::to_string);
            } else {
                c.attributes.insert(k, v);
            }
        }
        return Ok(Ctx::Made(c));
    }
    Err(PyTypeError::new_err(
        "context: an EvalContext, a targeting key (str), a dict of attributes or None",
    ))
}

/// The result of an evaluation: `value`, `variant`, `reason` (OpenFeature's: STATIC,
/// DEFAULT, TARGETING_MATCH, SPLIT, DISABLED, ERROR), `error_code` and `error_message`.
#[pyclass(frozen, get_all, module = "mvi", name = "Evaluation")]
#[derive(Debug)]
pub struct PyEvaluation {
    key: String,
    value: Py<PyAny>,
    variant: Option<String>,
    reason: &'static str,
    error_code: Option<&'static str>,
    error_message: Option<String>,
}

#[pymethods]
impl PyEvaluation {
    fn __repr__(&self, py: Python<'_>) -> String {
        let value = self
            .value
            .bind(py)
            .repr()
            .map(|r| r.to_string())
            .unwrap_or_default();
        match self.error_code {
            Some(code) => format!(
                "Evaluation({:?}, value={value}, reason={}, error_code={code})",
                self.key, self.reason
            ),
            None => format!(
                "Evaluation({:?}, value={value}, variant={:?}, reason={})",
                self.key, self.variant, self.reason
            ),
        }
    }
}

fn evaluation<T>(
    e: CoreEvaluation<T>,
    value: impl FnOnce(T) -> PyResult<Py<PyAny>>,
) -> PyResult<PyEvaluation> {
    Ok(PyEvaluation {
        key: e.key,
        value: value(e.value)?,
        variant: e.variant,
        reason: e.reason.as_str(),
        error_code: e.error_code.map(ErrorCode::as_str),
        error_message: e.error_message,
    })
}

/// A default value, typed: its type is the flag type asked for.
enum Typed {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Object(serde_json::Map<String, Json>),
}

/// `default` typed: bool, int, float, str or dict (a JSON object flag).
fn default_of(default: &Bound<'_, PyAny>) -> PyResult<Typed> {
    // bool before int: a Python bool is an int.
    if let Ok(b) = default.cast::<PyBool>() {
        return Ok(Typed::Bool(b.is_true()));
    }
    if default.cast::<PyInt>().is_ok() {
        return Ok(Typed::Int(default.extract()?));
    }
    if let Ok(x) = default.cast::<PyFloat>() {
        return Ok(Typed::Float(x.value()));
    }
    if default.cast::<PyString>().is_ok() {
        return Ok(Typed::Str(default.extract()?));
    }
    if default.cast::<PyDict>().is_ok() {
        let Json::Object(m) = py_to_json(default, "default")? else {
            unreachable!("a dict is a JSON object")
        };
        return Ok(Typed::Object(m));
    }
    Err(PyTypeError::new_err(
        "default: a bool, int, float, str or dict (its type says the flag's type)",
    ))
}

fn out_of<T: FlagValue + IntoPyJson>(
    py: Python<'_>,
    e: CoreEvaluation<T>,
) -> PyResult<PyEvaluation> {
    evaluation(e, |v| v.into_py_json(py))
}

/// A flag value as Python.
trait IntoPyJson {
    fn into_py_json(self, py: Python<'_>) -> PyResult<Py<PyAny>>;
}

macro_rules! into_py_json {
    ($($t:ty),*) => {$(
        impl IntoPyJson for $t {
            fn into_py_json(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
                Ok(self.into_pyobject(py)?.to_owned().into_any().unbind())
            }
        }
    )*};
}
into_py_json!(bool, i64, f64, String);

impl IntoPyJson for serde_json::Map<String, Json> {
    fn into_py_json(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(json_to_py(py, &Json::Object(self))?.unbind())
    }
}

/// Evaluates with `client` for the typed `default`.
fn client_eval(
    py: Python<'_>,
    client: &core::FlagClient,
    key: &str,
    d: Typed,
    ctx: &core::EvalContext,
) -> PyResult<PyEvaluation> {
    match d {
        Typed::Bool(v) => out_of(py, client.evaluate(key, v, ctx)),
        Typed::Int(v) => out_of(py, client.evaluate(key, v, ctx)),
        Typed::Float(v) => out_of(py, client.evaluate(key, v, ctx)),
        Typed::Str(v) => out_of(py, client.evaluate(key, v, ctx)),
        Typed::Object(v) => out_of(py, client.evaluate(key, v, ctx)),
    }
}

/// Feature flags kept in a KV table of a cloud (`Flags(cloud, "flags")`).
#[pyclass(frozen, module = "mvi")]
#[derive(Debug)]
pub struct Flags {
    flags: core::Flags,
}

fn flag_from(obj: &Bound<'_, PyAny>) -> PyResult<core::Flag> {
    let json = py_to_json(obj, "flag")?;
    serde_json::from_value(json).map_err(|e| crate::errors::invalid(format!("flag: {e}")))
}

fn flag_to(py: Python<'_>, f: &core::Flag) -> PyResult<Py<PyAny>> {
    let json = serde_json::to_value(f).map_err(|e| crate::errors::invalid(e.to_string()))?;
    Ok(json_to_py(py, &json)?.unbind())
}

#[pymethods]
impl Flags {
    #[new]
    fn new(cloud: &Bound<'_, Cloud>, table: String) -> PyResult<Self> {
        Ok(Flags {
            flags: core::Flags::of(&cloud.get().cloud, table).map_err(to_py)?,
        })
    }

    /// The table's name.
    #[getter]
    fn table(&self) -> String {
        self.flags.table().to_string()
    }

    /// Creates the table unless it exists.
    fn create_table(&self, py: Python<'_>) -> PyResult<()> {
        wait(py, self.flags.create_table())
    }

    /// Saves a flag (a dict, see `mvi.flags`) once it is checked whole; returns its version.
    fn save(&self, py: Python<'_>, flag: &Bound<'_, PyAny>) -> PyResult<i64> {
        let flag = flag_from(flag)?;
        wait(py, self.flags.save(&flag))
    }

    /// The flag `key` as a dict, or None.
    fn get(&self, py: Python<'_>, key: String) -> PyResult<Option<Py<PyAny>>> {
        let f = wait(py, self.flags.get(&key))?;
        f.map(|f| flag_to(py, &f)).transpose()
    }

    /// Every flag, by key.
    fn list(&self, py: Python<'_>) -> PyResult<Vec<Py<PyAny>>> {
        let all = wait(py, self.flags.list())?;
        all.iter().map(|f| flag_to(py, f)).collect()
    }

    /// Deletes the flag `key`; whether there was one.
    fn delete(&self, py: Python<'_>, key: String) -> PyResult<bool> {
        wait(py, self.flags.delete(&key))
    }

    /// Evaluates flag `key` reading the store now; never raises for the flag's sake: on
    /// failure the `default`, with reason ERROR.
    #[pyo3(signature = (key, default, context = None))]
    fn evaluate(
        &self,
        py: Python<'_>,
        key: String,
        default: &Bound<'_, PyAny>,
        context: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyEvaluation> {
        let c: core::EvalContext = (*ctx(context)?).clone();
        let flags = &self.flags;
        // The store's read runs with the GIL released; the value is turned into Python after.
        macro_rules! eval {
            ($v:expr) => {{
                let e = wait(py, async { Ok(flags.evaluate(&key, $v, &c).await) })?;
                out_of(py, e)
            }};
        }
        match default_of(default)? {
            Typed::Bool(v) => eval!(v),
            Typed::Int(v) => eval!(v),
            Typed::Float(v) => eval!(v),
            Typed::Str(v) => eval!(v),
            Typed::Object(v) => eval!(v),
        }
    }

    /// A client holding every flag in memory, reading the store every `poll` seconds.
    #[pyo3(signature = (poll = 0.25))]
    fn client(&self, py: Python<'_>, poll: f64) -> PyResult<FlagClient> {
        if !(poll.is_finite() && poll > 0.0) {
            return Err(crate::errors::invalid(format!(
                "poll: a positive number of seconds, not {poll}"
            )));
        }
        let flags = self.flags.clone();
        let client = wait(py, async move {
            Ok(flags.client_every(Duration::from_secs_f64(poll)).await)
        })?;
        Ok(FlagClient { client })
    }

    fn __repr__(&self) -> String {
        format!("Flags({:?})", self.flags.table())
    }
}

/// Every flag in memory; evaluations do no I/O. The `*_value` methods give the value alone
/// (the fastest); `evaluate` gives the whole `Evaluation`.
#[pyclass(frozen, module = "mvi")]
#[derive(Debug)]
pub struct FlagClient {
    client: core::FlagClient,
}

#[pymethods]
impl FlagClient {
    /// A boolean flag's value for `context`, or `default`.
    #[pyo3(signature = (key, default, context = None))]
    fn bool_value(
        &self,
        key: &str,
        default: bool,
        context: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        Ok(self.client.bool_value(key, default, &*ctx(context)?))
    }

    /// A string flag's value for `context`, or `default`.
    #[pyo3(signature = (key, default, context = None))]
    fn string_value(
        &self,
        key: &str,
        default: &str,
        context: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<String> {
        Ok(self.client.string_value(key, default, &*ctx(context)?))
    }

    /// A number flag's value for `context`, or `default`.
    #[pyo3(signature = (key, default, context = None))]
    fn number_value(
        &self,
        key: &str,
        default: f64,
        context: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<f64> {
        Ok(self.client.number_value(key, default, &*ctx(context)?))
    }

    /// An integer flag's value for `context`, or `default`.
    #[pyo3(signature = (key, default, context = None))]
    fn int_value(
        &self,
        key: &str,
        default: i64,
        context: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<i64> {
        Ok(self.client.value(key, default, &*ctx(context)?))
    }

    /// An object flag's value (a dict) for `context`, or `default`.
    #[pyo3(signature = (key, default, context = None))]
    fn object_value(
        &self,
        py: Python<'_>,
        key: &str,
        default: &Bound<'_, PyDict>,
        context: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let Json::Object(d) = py_to_json(default, "default")? else {
            unreachable!("a dict is a JSON object")
        };
        let v = self.client.value(key, d, &*ctx(context)?);
        v.into_py_json(py)
    }

    /// The whole evaluation of flag `key`; the type of `default` (bool, int, float, str,
    /// dict) is the type asked for.
    #[pyo3(signature = (key, default, context = None))]
    fn evaluate(
        &self,
        py: Python<'_>,
        key: &str,
        default: &Bound<'_, PyAny>,
        context: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyEvaluation> {
        client_eval(py, &self.client, key, default_of(default)?, &*ctx(context)?)
    }

    /// Whether the store has been read at least once.
    fn is_ready(&self) -> bool {
        self.client.is_ready()
    }

    /// Why the last refresh failed, if it did.
    fn last_error(&self) -> Option<String> {
        self.client.last_error()
    }

    /// The keys of the flags held.
    fn keys(&self) -> Vec<String> {
        self.client.keys()
    }

    /// How many refreshes have changed the flags held.
    fn changes(&self) -> u64 {
        self.client.changes()
    }

    fn __repr__(&self) -> String {
        format!("FlagClient({} flags)", self.client.keys().len())
    }
}
