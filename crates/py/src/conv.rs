//! Conversions between Python objects and the Rust types of mvi-core.
//!
//! Hot paths (KV items, blob bytes) convert directly. Request and result records go through
//! their serde JSON form: a result is built into the dataclass of the same name in
//! `mvi._types` (`_build`), a request dataclass is turned into JSON there (`_to_json`) and
//! deserialized here, so a wrong field is reported by serde, naming it.

use std::collections::BTreeMap;

use bytes::Bytes;
use mvi_core::kv::{Item, Value};
use pyo3::IntoPyObjectExt;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value as Json;

static TYPES: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// The Python module `mvi._types`.
pub fn types(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    Ok(TYPES
        .get_or_try_init(py, || py.import("mvi._types").map(Bound::unbind))?
        .bind(py))
}

/// A JSON value as plain Python (dict, list, str, int, float, bool, None).
pub fn json_to_py<'py>(py: Python<'py>, v: &Json) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Json::Null => py.None().into_bound(py),
        Json::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i.into_pyobject(py)?.into_any(),
            (None, Some(u)) => u.into_pyobject(py)?.into_any(),
            _ => n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any(),
        },
        Json::String(s) => PyString::new(py, s).into_any(),
        Json::Array(a) => {
            let items = a
                .iter()
                .map(|x| json_to_py(py, x))
                .collect::<PyResult<Vec<_>>>()?;
            PyList::new(py, items)?.into_any()
        }
        Json::Object(m) => {
            let d = PyDict::new(py);
            for (k, x) in m {
                d.set_item(k, json_to_py(py, x)?)?;
            }
            d.into_any()
        }
    })
}

/// A Python value as JSON: plain values, dicts, lists and tuples, the dataclasses of
/// `mvi._types` (over the Rust defaults of their type), datetimes, timedeltas and bytes.
/// `what` names the argument in errors. Outputs are refused (only stack arguments take them).
pub fn py_to_json(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Json> {
    let mut outs = Vec::new();
    let json = template(obj, what, &mut outs)?;
    if !outs.is_empty() {
        return Err(PyTypeError::new_err(format!(
            "{what}: an Output can only be an argument of a stack resource"
        )));
    }
    Ok(json)
}

/// The key marking where an output goes in a [`template`].
pub const SLOT: &str = "$mvi.output";

/// [`py_to_json`], with each `Output` found inside replaced by `{SLOT: i}` and pushed to `outs`.
pub fn template(
    obj: &Bound<'_, PyAny>,
    what: &str,
    outs: &mut Vec<mvi_core::stack::Output<Json>>,
) -> PyResult<Json> {
    template_at(obj, what, outs, 0)
}

/// The most lists, dicts and records a value given to mvi may nest (JSON's own limit in the
/// state it ends up in): deeper is refused before any recursion could run out of stack.
const MAX_NESTING: usize = 128;

fn template_at(
    obj: &Bound<'_, PyAny>,
    what: &str,
    outs: &mut Vec<mvi_core::stack::Output<Json>>,
    depth: usize,
) -> PyResult<Json> {
    if depth > MAX_NESTING {
        return Err(crate::errors::invalid(format!(
            "{what}: the value nests lists, dicts and records more than {MAX_NESTING} levels deep"
        )));
    }
    if obj.is_none() {
        return Ok(Json::Null);
    }
    if let Ok(o) = obj.cast::<crate::stack::PyOutput>() {
        outs.push(o.get().out.clone());
        return Ok(serde_json::json!({ SLOT: outs.len() - 1 }));
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Json::Bool(b.is_true()));
    }
    if obj.is_instance_of::<PyInt>() {
        if let Ok(i) = obj.extract::<i64>() {
            return Ok(Json::from(i));
        }
        if let Ok(u) = obj.extract::<u64>() {
            return Ok(Json::from(u));
        }
        return Err(PyValueError::new_err(format!(
            "{what}: integer {obj} is out of range"
        )));
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        return serde_json::Number::from_f64(f.value())
            .map(Json::Number)
            .ok_or_else(|| PyValueError::new_err(format!("{what}: {obj} is not a finite number")));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Json::String(s.to_cow()?.into_owned()));
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        let mut m = serde_json::Map::new();
        for (k, v) in d.iter() {
            let key: String = k.extract().map_err(|_| {
                PyTypeError::new_err(format!("{what}: dictionary keys must be str, got {k:?}"))
            })?;
            let v = template_at(&v, what, outs, depth + 1)?;
            m.insert(key, v);
        }
        return Ok(Json::Object(m));
    }
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        let mut a = Vec::new();
        for x in obj.try_iter()? {
            a.push(template_at(&x?, what, outs, depth + 1)?);
        }
        return Ok(Json::Array(a));
    }
    let types = types(obj.py())?;
    if types.call_method1("_is_record", (obj,))?.is_truthy()? {
        // Its fields in the Rust shape, one level deep (they may hold outputs), over the
        // Rust defaults of its type.
        let class = obj.get_type().name()?.to_cow()?.into_owned();
        let shallow = types.call_method1("_shallow", (obj,))?;
        let json = template_at(&shallow, what, outs, depth + 1)?;
        return Ok(match record_base(&class) {
            Some(mut base) => {
                merge(&mut base, json);
                base
            }
            None => json,
        });
    }
    // Datetimes, timedeltas, bytes: `_to_json` knows them.
    let plain = types.call_method1("_to_json", (obj,))?;
    if plain.is(obj) {
        return Err(PyTypeError::new_err(format!(
            "{what}: cannot use a value of type {}",
            obj.get_type().name()?
        )));
    }
    template_at(&plain, what, outs, depth + 1)
}

/// The Rust defaults of a request record, for the fields a Python dataclass leaves `None`:
/// each type's own constructor (required fields are always given by the dataclass).
fn record_base(class: &str) -> Option<Json> {
    use mvi_core::container::{ContainerSpec, HealthCheck, ScheduleSpec, ServiceSpec};
    use mvi_core::lb::{LoadBalancerSpec, Protocol, TargetGroupSpec};
    let v = match class {
        "HealthCheck" => serde_json::to_value(HealthCheck::default()),
        "ContainerSpec" => serde_json::to_value(ContainerSpec::new("")),
        "ServiceSpec" => serde_json::to_value(ServiceSpec::new("", ContainerSpec::new(""), 1)),
        "ScheduleSpec" => serde_json::to_value(ScheduleSpec::new("", "", ContainerSpec::new(""))),
        "TargetGroupSpec" => serde_json::to_value(TargetGroupSpec::new("", Protocol::Http)),
        "LoadBalancerSpec" => serde_json::to_value(LoadBalancerSpec::new("", Vec::new())),
        "DatabaseSpec" => serde_json::to_value(mvi_core::database::DatabaseSpec::postgres("")),
        "VmSpec" => serde_json::to_value(mvi_core::vm::VmSpec::new("", "", "", "")),
        "ImageConfig" => serde_json::to_value(mvi_core::image::ImageConfig::default()),
        _ => return None,
    };
    v.ok()
}

/// A Python request value (a dataclass of `mvi._types`, a dict, a tuple) as the Rust type
/// `T`. `base`, when given, supplies the Rust constructor's defaults for fields left out.
pub fn from_py<T: DeserializeOwned + Serialize>(
    obj: &Bound<'_, PyAny>,
    what: &str,
    base: Option<T>,
) -> PyResult<T> {
    let mut json = py_to_json(obj, what)?;
    fill_defaults(&mut json);
    if let Some(base) = base {
        let mut b = serde_json::to_value(base).map_err(|e| PyValueError::new_err(e.to_string()))?;
        merge(&mut b, json);
        json = b;
    }
    from_json(json, what)
}

/// JSON as `T`, with serde's error naming the field.
pub fn from_json<T: DeserializeOwned>(json: Json, what: &str) -> PyResult<T> {
    serde_json::from_value(json).map_err(|e| crate::errors::invalid(format!("{what}: {e}")))
}

/// Whether `m` is serde's form of an enum variant with data: one key naming the variant
/// (`{"Rolling": {...}}`).
fn is_variant(m: &serde_json::Map<String, Json>) -> bool {
    m.len() == 1
        && m.keys()
            .all(|k| k.starts_with(|c: char| c.is_ascii_uppercase()))
}

/// Deep merge: objects key by key, anything else replaced; an enum variant replaces another
/// variant whole (merged, the two would make no value of the enum).
pub fn merge(base: &mut Json, over: Json) {
    match (base, over) {
        (Json::Object(b), Json::Object(o))
            if is_variant(b) && is_variant(&o) && b.keys().ne(o.keys()) =>
        {
            *b = o;
        }
        (Json::Object(b), Json::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) if slot.is_object() => merge(slot, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, over) => *slot = over,
    }
}

/// Nested records whose Rust type has a `Default`: a partial one (fields left `None` in
/// Python) is completed from it wherever it appears.
pub fn fill_defaults(json: &mut Json) {
    match json {
        Json::Object(m) => {
            for (k, v) in m.iter_mut() {
                if k == "health_check"
                    && v.is_object()
                    && let Ok(mut d) =
                        serde_json::to_value(mvi_core::container::HealthCheck::default())
                {
                    merge(&mut d, std::mem::take(v));
                    *v = d;
                }
                fill_defaults(v);
            }
        }
        Json::Array(a) => a.iter_mut().for_each(fill_defaults),
        _ => {}
    }
}

/// The dataclass `name` of `mvi._types` built from plain Python data.
pub fn build<'py>(py: Python<'py>, name: &str, data: Bound<'py, PyAny>) -> PyResult<Py<PyAny>> {
    Ok(types(py)?.call_method1("_build", (name, data))?.unbind())
}

/// A serializable Rust value as the dataclass `name` (a list of them for a `Vec`).
pub fn record<T: Serialize>(py: Python<'_>, name: &str, v: &T) -> PyResult<Py<PyAny>> {
    let json = serde_json::to_value(v).map_err(|e| PyValueError::new_err(e.to_string()))?;
    build(py, name, json_to_py(py, &json)?)
}

/// Bytes from `bytes`, `bytearray` or `str` (encoded as UTF-8).
pub fn bytes_of(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Bytes> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Bytes::copy_from_slice(b.as_bytes()));
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        return Ok(Bytes::from(b.to_vec()));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Bytes::copy_from_slice(s.to_cow()?.as_bytes()));
    }
    Err(PyTypeError::new_err(format!(
        "{what} must be bytes, bytearray or str, got {}",
        obj.get_type().name()?
    )))
}

/// A KV attribute value from Python.
pub fn value(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Value> {
    value_at(obj, what, 0)
}

/// `obj` as a KV value, `depth` lists and dicts down: deeper than a KV value may nest is
/// refused here, before any recursion could run out of stack.
fn value_at(obj: &Bound<'_, PyAny>, what: &str, depth: usize) -> PyResult<Value> {
    if depth > mvi_core::kv::MAX_DEPTH {
        return Err(crate::errors::invalid(format!(
            "{what}: lists and dicts nest more than {} levels deep (DynamoDB's limit)",
            mvi_core::kv::MAX_DEPTH
        )));
    }
    if obj.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if obj.is_instance_of::<PyInt>() {
        return obj.extract::<i64>().map(Value::Int).map_err(|_| {
            PyValueError::new_err(format!("{what}: integer {obj} does not fit in 64 bits"))
        });
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        return Ok(Value::Float(f.value()));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Value::Str(s.to_cow()?.into_owned()));
    }
    if obj.is_instance_of::<PyBytes>() || obj.is_instance_of::<PyByteArray>() {
        return Ok(Value::Bytes(bytes_of(obj, what)?));
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        let mut m = std::collections::BTreeMap::new();
        for (k, v) in d.iter() {
            let key: String = k.extract().map_err(|_| {
                PyTypeError::new_err(format!("{what}: attribute names must be str, got {k:?}"))
            })?;
            m.insert(key, value_at(&v, what, depth + 1)?);
        }
        return Ok(Value::Map(m));
    }
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        let mut out = Vec::new();
        for x in obj.try_iter()? {
            out.push(value_at(&x?, what, depth + 1)?);
        }
        return Ok(Value::List(out));
    }
    Err(PyTypeError::new_err(format!(
        "{what}: a KV value must be None, bool, int, float, str, bytes, list or dict, got {}",
        obj.get_type().name()?
    )))
}

/// A KV item (a dict of attribute name to value) from Python.
pub fn item_of(d: &Bound<'_, PyDict>, what: &str) -> PyResult<Item> {
    let mut m = BTreeMap::new();
    for (k, v) in d.iter() {
        let key: String = k.extract().map_err(|_| {
            PyTypeError::new_err(format!("{what}: attribute names must be str, got {k:?}"))
        })?;
        let v = value(&v, &format!("{what}[{key:?}]"))?;
        m.insert(key, v);
    }
    Ok(m)
}

/// A KV attribute value as Python.
pub fn value_to_py<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Int(i) => i.into_pyobject(py)?.into_any(),
        Value::Float(f) => f.into_pyobject(py)?.into_any(),
        Value::Str(s) => PyString::new(py, s).into_any(),
        Value::Bytes(b) => PyBytes::new(py, b).into_any(),
        Value::List(l) => {
            let items = l
                .iter()
                .map(|x| value_to_py(py, x))
                .collect::<PyResult<Vec<_>>>()?;
            PyList::new(py, items)?.into_any()
        }
        Value::Map(m) => item_to_py(py, m)?.into_any(),
    })
}

/// A KV item as a Python dict.
pub fn item_to_py<'py>(py: Python<'py>, item: &Item) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (k, v) in item {
        d.set_item(k, value_to_py(py, v)?)?;
    }
    Ok(d)
}

/// What a Rust call returns, turned into Python once the call is done.
pub trait Out: Send + 'static {
    /// The Python value.
    fn out(self, py: Python<'_>) -> PyResult<Py<PyAny>>;
}

impl Out for () {
    fn out(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(py.None())
    }
}

macro_rules! out_via_into_pyobject {
    ($($t:ty),*) => {$(
        impl Out for $t {
            fn out(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
                self.into_py_any(py)
            }
        }
    )*};
}
out_via_into_pyobject!(String, u32, u64, bool, Vec<String>, mvi_core::Timestamp);

impl Out for Bytes {
    fn out(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(PyBytes::new(py, &self).into_any().unbind())
    }
}

impl Out for Py<PyAny> {
    fn out(self, _py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(self)
    }
}

impl Out for Option<Item> {
    fn out(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        match self {
            Some(i) => Ok(item_to_py(py, &i)?.into_any().unbind()),
            None => Ok(py.None()),
        }
    }
}

impl Out for Vec<Item> {
    fn out(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let items = self
            .iter()
            .map(|i| item_to_py(py, i))
            .collect::<PyResult<Vec<_>>>()?;
        Ok(PyList::new(py, items)?.into_any().unbind())
    }
}

/// A serializable result turned into the dataclass named `.0`.
#[derive(Debug)]
pub struct Rec<T>(pub &'static str, pub T);

impl<T: Serialize + Send + 'static> Out for Rec<T> {
    fn out(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        record(py, self.0, &self.1)
    }
}

/// A result built by a closure once the GIL is held (records that are not serializable).
#[derive(Debug)]
pub struct With<T>(pub T, pub fn(Python<'_>, T) -> PyResult<Py<PyAny>>);

impl<T: Send + 'static> Out for With<T> {
    fn out(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        (self.1)(py, self.0)
    }
}

/// `f` for `Result::map`: wraps a result as the dataclass `name`.
pub fn rec<T>(name: &'static str) -> impl FnOnce(T) -> Rec<T> {
    move |v| Rec(name, v)
}

/// A Python dict from `(key, value)` pairs.
pub fn dict<'py>(
    py: Python<'py>,
    pairs: Vec<(&str, Bound<'py, PyAny>)>,
) -> PyResult<Bound<'py, PyAny>> {
    let d = PyDict::new(py);
    for (k, v) in pairs {
        d.set_item(k, v)?;
    }
    Ok(d.into_any())
}
