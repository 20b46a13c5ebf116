//! The eleven services. Each method converts its arguments, calls the trait method of
//! mvi-core, and converts the result; the same list of methods makes both flavours: the
//! blocking class (`Blob`) and the asyncio class (`AsyncBlob`), whose methods return awaitables.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use mvi_core::autoscale::ScalerSpec;
use mvi_core::blob::Blob as BlobTrait;
use mvi_core::blob::{ByteRange, CompletedPart, GetObject, ListObjects, PutMode, PutObject};
use mvi_core::common::BoxStream;
use mvi_core::container::{ContainerSpec, ScheduleSpec, ServiceSpec};
use mvi_core::crypto::{AuditQuery, CreateKey, EncryptionContext};
use mvi_core::database::{DatabaseSpec, RestoreTime};
use mvi_core::image::{ImageConfig, ImageRef, Manifest};
use mvi_core::kv::expr::{self, Bindings};
use mvi_core::kv::{
    Condition, DeleteItem, Key, KeyAttr, KeyType, PutItem, Query, ReturnValues, Scan,
    SortCondition, TableSpec, UpdateItem,
};
use mvi_core::lb::{LoadBalancerSpec, Protocol, TargetGroupSpec};
use mvi_core::log::{FilterEvents, GetEvents, LogEvent, LogRecord, TailEvents};
use mvi_core::metric::{AlarmSpec, Datum, GetStatistics, MetricId, Statistic};
use mvi_core::vm::VmSpec;
use mvi_core::vpc::Rule;
use mvi_core::{
    BlobExt, Containers, Crypto, Databases, Images, Kv, KvExt, LoadBalancers, Logs, Metrics,
    Networks, SecretBytes, Tags, Timestamp, Vms,
};
use pyo3::exceptions::{PyStopAsyncIteration, PyStopIteration, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};
use tokio::sync::Mutex;

use crate::conv::{self, Rec, With, bytes_of, dict, from_py, item_of, json_to_py, rec, value};
use crate::rt::{block, spawn};

/// Declares the blocking and the asyncio class of one service from one list of methods.
/// Each method body runs with the GIL held (argument conversion) and evaluates to a future
/// returning `mvi_core::Result<impl Out>`.
macro_rules! service {
    (
        $(#[$cm:meta])*
        $sync:ident / $asy:ident ($pyname:literal, $apyname:literal): $tr:ident, $svc:ident;
        $(
            $(#[$m:meta])*
            fn $f:ident($py:ident $(, $a:ident : $t:ty)* $(,)?) $body:block
        )*
    ) => {
        $(#[$cm])*
        #[pyclass(frozen, name = $pyname, module = "mvi")]
        #[derive(Debug)]
        pub struct $sync {
            pub(crate) svc: Arc<dyn $tr>,
        }

        #[pymethods]
        impl $sync {
            $(
                $(#[$m])*
                // One Rust parameter per Python keyword argument.
                #[allow(clippy::too_many_arguments)]
                fn $f(&self, $py: Python<'_> $(, $a: $t)*) -> PyResult<Py<PyAny>> {
                    let $svc = self.svc.clone();
                    let fut = $body;
                    block($py, fut)
                }
            )*

            fn __repr__(&self) -> String {
                format!("<mvi.{} service {:?}>", $pyname, self.svc)
            }
        }

        $(#[$cm])*
        #[doc = ""]
        #[doc = "The asyncio flavour: every method returns an awaitable."]
        #[pyclass(frozen, name = $apyname, module = "mvi")]
        #[derive(Debug)]
        pub struct $asy {
            pub(crate) svc: Arc<dyn $tr>,
        }

        #[pymethods]
        impl $asy {
            $(
                $(#[$m])*
                #[allow(clippy::too_many_arguments)]
                fn $f<'py>(&self, $py: Python<'py> $(, $a: $t)*) -> PyResult<Bound<'py, PyAny>> {
                    let $svc = self.svc.clone();
                    let fut = $body;
                    spawn($py, fut)
                }
            )*

            fn __repr__(&self) -> String {
                format!("<mvi.{} service {:?}>", $apyname, self.svc)
            }
        }
    };
}

fn opt_map(d: Option<&Bound<'_, PyDict>>, what: &str) -> PyResult<BTreeMap<String, String>> {
    match d {
        Some(d) => d
            .extract()
            .map_err(|_| PyTypeError::new_err(format!("{what} must be a dict of str to str"))),
        None => Ok(BTreeMap::new()),
    }
}

fn key_of(py_partition: &Bound<'_, PyAny>, sort: Option<&Bound<'_, PyAny>>) -> PyResult<Key> {
    Ok(Key {
        partition: value(py_partition, "partition")?,
        sort: sort.map(|s| value(s, "sort")).transpose()?,
    })
}

/// The placeholders of an expression: `names` (`#n` → attribute name) and `values`
/// (`:v` → a Python value).
fn bindings(
    names: Option<&Bound<'_, PyDict>>,
    values: Option<&Bound<'_, PyDict>>,
) -> PyResult<Bindings> {
    let names = opt_map(names, "names")?;
    let mut vals = BTreeMap::new();
    if let Some(d) = values {
        for (k, v) in d.iter() {
            let k: String = k
                .extract()
                .map_err(|_| PyTypeError::new_err("values must be a dict keyed by str"))?;
            let v = value(&v, &format!("values[{k:?}]"))?;
            vals.insert(k, v);
        }
    }
    Ok(Bindings::new(names, vals))
}

/// A condition expression with its placeholders, every one of which it must use.
fn condition_expr(src: &str, bind: &mut Bindings) -> PyResult<Condition> {
    expr::parse_condition("ConditionExpression", src, bind)
        .map(Condition::Expr)
        .map_err(|e| crate::errors::invalid(e.0))
}

/// The condition a write takes: the simple flags, or an expression (not both).
fn write_condition(
    if_not_exists: bool,
    if_exists: bool,
    if_equals: Option<&Bound<'_, PyAny>>,
    expression: Option<&str>,
    names: Option<&Bound<'_, PyDict>>,
    values: Option<&Bound<'_, PyDict>>,
) -> PyResult<Condition> {
    let simple = condition(if_not_exists, if_exists, if_equals)?;
    let Some(src) = expression else {
        if names.is_some() || values.is_some() {
            return Err(PyValueError::new_err(
                "names and values go with a condition expression",
            ));
        }
        return Ok(simple);
    };
    if simple != Condition::None {
        return Err(PyValueError::new_err(
            "give either a condition expression or if_not_exists / if_exists / if_equals",
        ));
    }
    let mut bind = bindings(names, values)?;
    let c = condition_expr(src, &mut bind)?;
    bind.check_all_used()
        .map_err(|e| crate::errors::invalid(e.0))?;
    Ok(c)
}

fn returns_of(r: &str) -> PyResult<ReturnValues> {
    Ok(match r {
        "none" => ReturnValues::None,
        "all_old" => ReturnValues::AllOld,
        "updated_old" => ReturnValues::UpdatedOld,
        "all_new" => ReturnValues::AllNew,
        "updated_new" => ReturnValues::UpdatedNew,
        other => {
            return Err(PyValueError::new_err(format!(
                "returns {other:?}: one of none, all_old, updated_old, all_new, updated_new"
            )));
        }
    })
}

fn condition(
    if_not_exists: bool,
    if_exists: bool,
    if_equals: Option<&Bound<'_, PyAny>>,
) -> PyResult<Condition> {
    let given =
        usize::from(if_not_exists) + usize::from(if_exists) + usize::from(if_equals.is_some());
    if given > 1 {
        return Err(PyValueError::new_err(
            "give at most one of if_not_exists, if_exists and if_equals",
        ));
    }
    if if_not_exists {
        return Ok(Condition::NotExists);
    }
    if if_exists {
        return Ok(Condition::Exists);
    }
    match if_equals {
        Some(pair) => {
            let (name, v): (String, Bound<'_, PyAny>) = pair.extract().map_err(|_| {
                PyTypeError::new_err("if_equals must be a pair (attribute name, value)")
            })?;
            Ok(Condition::equals(name, value(&v, "if_equals")?))
        }
        None => Ok(Condition::None),
    }
}

fn sort_condition(sort: &Bound<'_, PyAny>) -> PyResult<SortCondition> {
    let (op, arg): (String, Bound<'_, PyAny>) = sort.extract().map_err(|_| {
        PyTypeError::new_err(
            "sort must be a pair (operator, value), e.g. (\"begins_with\", \"2024-\")",
        )
    })?;
    let v = |x: &Bound<'_, PyAny>| value(x, "sort");
    Ok(match op.as_str() {
        "eq" | "==" => SortCondition::Eq(v(&arg)?),
        "lt" | "<" => SortCondition::Lt(v(&arg)?),
        "le" | "<=" => SortCondition::Le(v(&arg)?),
        "gt" | ">" => SortCondition::Gt(v(&arg)?),
        "ge" | ">=" => SortCondition::Ge(v(&arg)?),
        "begins_with" => SortCondition::BeginsWith(v(&arg)?),
        "between" => {
            let (lo, hi): (Bound<'_, PyAny>, Bound<'_, PyAny>) = arg.extract().map_err(|_| {
                PyTypeError::new_err("sort (\"between\", ...) needs a pair (low, high)")
            })?;
            SortCondition::Between(v(&lo)?, v(&hi)?)
        }
        other => {
            return Err(PyValueError::new_err(format!(
                "unknown sort operator {other:?}: use eq, lt, le, gt, ge, between or begins_with"
            )));
        }
    })
}

fn key_attr(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<KeyAttr> {
    if let Ok(name) = obj.extract::<String>() {
        return Ok(KeyAttr::new(name, KeyType::Str));
    }
    from_py(obj, what, None)
}

fn items_page(py: Python<'_>, page: mvi_core::Page<mvi_core::kv::Item>) -> PyResult<Py<PyAny>> {
    let items = page
        .items
        .iter()
        .map(|i| conv::item_to_py(py, i))
        .collect::<PyResult<Vec<_>>>()?;
    let d = dict(
        py,
        vec![
            ("items", PyList::new(py, items)?.into_any()),
            ("next", page.next.into_pyobject(py)?.into_any()),
        ],
    )?;
    conv::build(py, "ItemPage", d)
}

fn image_ref(reference: &str) -> ImageRef {
    if reference.starts_with("sha256:") {
        ImageRef::Digest(reference.to_string())
    } else {
        ImageRef::Tag(reference.to_string())
    }
}

fn duration(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Duration> {
    if let Ok(secs) = obj.extract::<f64>() {
        return Duration::try_from_secs_f64(secs)
            .map_err(|_| PyValueError::new_err(format!("{what}: {secs} is not a valid duration")));
    }
    from_py(obj, what, None)
}

fn statistic(obj: &Bound<'_, PyAny>) -> PyResult<Statistic> {
    let json = conv::types(obj.py())?.call_method1("_stat_to_rust", (obj,))?;
    from_py(&json, "statistic", None)
}

service! {
    /// Object storage (S3 on AWS). Data is `bytes`; times are `datetime`s.
    BlobSvc / AsyncBlobSvc ("Blob", "AsyncBlob"): BlobTrait, svc;

    /// Creates a bucket (S3 naming rules).
    fn create_bucket(py, bucket: String) {
        async move { svc.create_bucket(&bucket).await.map(rec("BucketInfo")) }
    }
    /// Deletes an empty bucket.
    fn delete_bucket(py, bucket: String) {
        async move { svc.delete_bucket(&bucket).await }
    }
    /// Every bucket.
    fn list_buckets(py) {
        async move { svc.list_buckets().await.map(rec("BucketInfo")) }
    }
    /// Stores `data` under `key`; returns its metadata.
    #[pyo3(signature = (bucket, key, data, *, content_type=None, metadata=None, if_none_match=false, if_match=None))]
    fn put(
        py,
        bucket: String,
        key: String,
        data: &Bound<'_, PyAny>,
        content_type: Option<String>,
        metadata: Option<&Bound<'_, PyDict>>,
        if_none_match: bool,
        if_match: Option<String>,
    ) {
        let body = bytes_of(data, "data")?;
        let mut req = PutObject::new(bucket, key, body);
        req.content_type = content_type;
        req.metadata = opt_map(metadata, "metadata")?;
        req.mode = match (if_none_match, if_match) {
            (true, Some(_)) => return Err(PyValueError::new_err("give if_none_match or if_match, not both")),
            (true, None) => PutMode::Create,
            (false, Some(etag)) => PutMode::Update(etag),
            (false, None) => PutMode::Overwrite,
        };
        async move { svc.put_object(req).await.map(rec("ObjectMeta")) }
    }
    /// The whole content of `key`.
    fn get(py, bucket: String, key: String) {
        async move { svc.get(&bucket, &key).await }
    }
    /// Reads `key` with options: a byte range (`start`/`end`, end exclusive, or the last
    /// `suffix` bytes) and conditions on its ETag.
    #[pyo3(signature = (bucket, key, *, start=None, end=None, suffix=None, if_match=None, if_none_match=None))]
    fn get_object(
        py,
        bucket: String,
        key: String,
        start: Option<u64>,
        end: Option<u64>,
        suffix: Option<u64>,
        if_match: Option<String>,
        if_none_match: Option<String>,
    ) {
        let mut req = GetObject::new(bucket, key);
        req.range = match (start, end, suffix) {
            (None, None, None) => None,
            (Some(start), Some(end), None) => Some(ByteRange::Bounded { start, end }),
            (Some(start), None, None) => Some(ByteRange::From(start)),
            (None, None, Some(n)) => Some(ByteRange::Suffix(n)),
            _ => return Err(PyValueError::new_err("give start (and end), or suffix alone")),
        };
        req.if_match = if_match;
        req.if_none_match = if_none_match;
        async move {
            let out = svc.get_object(req).await?;
            let meta = out.meta.clone();
            let range = out.range;
            let body = out.bytes().await?;
            Ok(With((meta, range, body), |py, (meta, range, body)| {
                let d = dict(py, vec![
                    ("meta", json_to_py(py, &serde_json::to_value(&meta).map_err(|e| PyValueError::new_err(e.to_string()))?)?),
                    ("range", range.into_pyobject(py)?.into_any()),
                    ("body", PyBytes::new(py, &body).into_any()),
                ])?;
                conv::build(py, "ObjectBody", d)
            }))
        }
    }
    /// The metadata of `key`.
    fn head_object(py, bucket: String, key: String) {
        async move { svc.head_object(&bucket, &key).await.map(rec("ObjectMeta")) }
    }
    /// Deletes `key` (deleting a missing key succeeds, as on S3).
    fn delete_object(py, bucket: String, key: String) {
        async move { svc.delete_object(&bucket, &key).await }
    }
    /// Copies an object.
    fn copy_object(py, from_bucket: String, from_key: String, to_bucket: String, to_key: String) {
        async move { svc.copy_object(&from_bucket, &from_key, &to_bucket, &to_key).await.map(rec("ObjectMeta")) }
    }
    /// One page of a listing.
    #[pyo3(signature = (bucket, *, prefix=None, delimiter=None, max_keys=None, continuation=None))]
    fn list_objects(
        py,
        bucket: String,
        prefix: Option<String>,
        delimiter: Option<String>,
        max_keys: Option<usize>,
        continuation: Option<String>,
    ) {
        let mut req = ListObjects::new(bucket);
        req.prefix = prefix;
        req.delimiter = delimiter;
        req.max_keys = max_keys;
        req.continuation = continuation;
        async move {
            let page = svc.list_objects(req).await?;
            Ok(Rec("ListPage", serde_json::json!({
                "objects": page.objects, "common_prefixes": page.common_prefixes, "next": page.next,
            })))
        }
    }
    /// Every object under `prefix`, all pages.
    #[pyo3(signature = (bucket, prefix=String::new()))]
    fn list_all(py, bucket: String, prefix: String) {
        async move { svc.list_all(&bucket, &prefix).await.map(rec("ObjectMeta")) }
    }
    /// Starts a multipart upload; returns its id.
    #[pyo3(signature = (bucket, key, content_type=None))]
    fn create_multipart_upload(py, bucket: String, key: String, content_type: Option<String>) {
        async move { svc.create_multipart_upload(&bucket, &key, content_type).await }
    }
    /// Uploads part `number` (1–10000); returns its ETag.
    fn upload_part(py, bucket: String, key: String, upload_id: String, number: u32, data: &Bound<'_, PyAny>) {
        let body = bytes_of(data, "data")?;
        async move { svc.upload_part(&bucket, &key, &upload_id, number, body.into()).await }
    }
    /// Completes an upload from its parts (`CompletedPart`s or `(number, etag)` pairs).
    fn complete_multipart_upload(py, bucket: String, key: String, upload_id: String, parts: &Bound<'_, PyAny>) {
        let parts: Vec<CompletedPart> = from_py(parts, "parts", None)?;
        async move { svc.complete_multipart_upload(&bucket, &key, &upload_id, parts).await.map(rec("ObjectMeta")) }
    }
    /// Abandons an upload.
    fn abort_multipart_upload(py, bucket: String, key: String, upload_id: String) {
        async move { svc.abort_multipart_upload(&bucket, &key, &upload_id).await }
    }
}

service! {
    /// Tables of items (DynamoDB on AWS). An item is a dict of attribute name to `None`,
    /// `bool`, `int`, `float`, `str`, `bytes`, `list` or `dict`.
    KvSvc / AsyncKvSvc ("Kv", "AsyncKv"): Kv, svc;

    /// Creates a table. Keys are `KeyAttr(name, kind)`, `(name, kind)` or a bare name (a
    /// string key); kind is `"Str"`, `"Number"` or `"Bytes"`.
    #[pyo3(signature = (name, partition_key, sort_key=None))]
    fn create_table(py, name: String, partition_key: &Bound<'_, PyAny>, sort_key: Option<&Bound<'_, PyAny>>) {
        let mut spec = TableSpec::new(name, key_attr(partition_key, "partition_key")?);
        spec.sort_key = sort_key.map(|k| key_attr(k, "sort_key")).transpose()?;
        async move { svc.create_table(spec).await.map(rec("TableInfo")) }
    }
    /// Deletes a table and its items.
    fn delete_table(py, name: String) {
        async move { svc.delete_table(&name).await }
    }
    /// A table's spec and item count.
    fn describe_table(py, name: String) {
        async move { svc.describe_table(&name).await.map(rec("TableInfo")) }
    }
    /// Every table's name.
    fn list_tables(py) {
        async move { svc.list_tables().await }
    }
    /// Writes `item`, optionally only if a condition holds on the current one
    /// (`PreconditionFailed` otherwise): a flag, or a DynamoDB condition expression
    /// (`condition="attribute_not_exists(id) OR #v < :v"`) with its `names` and `values`.
    #[pyo3(signature = (table, item, *, if_not_exists=false, if_exists=false, if_equals=None, condition=None, names=None, values=None))]
    fn put_item(
        py,
        table: String,
        item: &Bound<'_, PyDict>,
        if_not_exists: bool,
        if_exists: bool,
        if_equals: Option<&Bound<'_, PyAny>>,
        condition: Option<String>,
        names: Option<&Bound<'_, PyDict>>,
        values: Option<&Bound<'_, PyDict>>,
    ) {
        let cond = write_condition(if_not_exists, if_exists, if_equals, condition.as_deref(), names, values)?;
        let req = PutItem::new(table, item_of(item, "item")?).condition(cond);
        async move { svc.put_item(req).await }
    }
    /// Updates the item with this key in place (creating it from its key if there is none),
    /// atomically: `update` is a DynamoDB update expression (`"SET n = if_not_exists(n, :z) +
    /// :one REMOVE draft"`), `condition` an optional condition expression on the item before,
    /// `names` and `values` their placeholders. Returns what `returns` asks for: `none`,
    /// `all_old`, `updated_old`, `all_new` or `updated_new`.
    #[pyo3(signature = (table, partition, sort=None, *, update, condition=None, names=None, values=None, returns="none"))]
    fn update_item(
        py,
        table: String,
        partition: &Bound<'_, PyAny>,
        sort: Option<&Bound<'_, PyAny>>,
        update: String,
        condition: Option<String>,
        names: Option<&Bound<'_, PyDict>>,
        values: Option<&Bound<'_, PyDict>>,
        returns: &str,
    ) {
        let mut bind = bindings(names, values)?;
        let actions = expr::parse_update(&update, &mut bind).map_err(|e| crate::errors::invalid(e.0))?;
        let cond = condition.as_deref().map(|c| condition_expr(c, &mut bind)).transpose()?;
        bind.check_all_used().map_err(|e| crate::errors::invalid(e.0))?;
        let req = UpdateItem::new(table, key_of(partition, sort)?, actions)
            .condition(cond.unwrap_or_default())
            .returns(returns_of(returns)?);
        async move { svc.update_item(req).await }
    }
    /// The item with this key, or None.
    #[pyo3(signature = (table, partition, sort=None))]
    fn get_item(py, table: String, partition: &Bound<'_, PyAny>, sort: Option<&Bound<'_, PyAny>>) {
        let key = key_of(partition, sort)?;
        async move { svc.get_item(&table, key).await }
    }
    /// Deletes the item with this key (optionally under a condition: a flag, or a condition
    /// expression with its `names` and `values`); returns the old item.
    #[pyo3(signature = (table, partition, sort=None, *, if_exists=false, if_equals=None, condition=None, names=None, values=None))]
    fn delete_item(
        py,
        table: String,
        partition: &Bound<'_, PyAny>,
        sort: Option<&Bound<'_, PyAny>>,
        if_exists: bool,
        if_equals: Option<&Bound<'_, PyAny>>,
        condition: Option<String>,
        names: Option<&Bound<'_, PyDict>>,
        values: Option<&Bound<'_, PyDict>>,
    ) {
        let cond = write_condition(false, if_exists, if_equals, condition.as_deref(), names, values)?;
        let req = DeleteItem::new(table, key_of(partition, sort)?).condition(cond);
        async move { svc.delete_item(req).await }
    }
    /// One page of the items of a partition, in sort key order. `sort` is `(op, value)`
    /// with op `eq`, `lt`, `le`, `gt`, `ge`, `begins_with`, or `("between", (low, high))`.
    #[pyo3(signature = (table, partition, *, sort=None, descending=false, limit=None, cursor=None))]
    fn query(
        py,
        table: String,
        partition: &Bound<'_, PyAny>,
        sort: Option<&Bound<'_, PyAny>>,
        descending: bool,
        limit: Option<usize>,
        cursor: Option<String>,
    ) {
        let mut q = Query::new(table, value(partition, "partition")?);
        q.sort = sort.map(sort_condition).transpose()?;
        q.descending = descending;
        q.limit = limit;
        q.cursor = cursor;
        async move { svc.query(q).await.map(|p| With(p, items_page)) }
    }
    /// Every item of a partition (all pages), as `query`.
    #[pyo3(signature = (table, partition, *, sort=None, descending=false))]
    fn query_all(py, table: String, partition: &Bound<'_, PyAny>, sort: Option<&Bound<'_, PyAny>>, descending: bool) {
        let mut q = Query::new(table, value(partition, "partition")?);
        q.sort = sort.map(sort_condition).transpose()?;
        q.descending = descending;
        async move { svc.query_all(q).await }
    }
    /// One page of every item of the table.
    #[pyo3(signature = (table, *, limit=None, cursor=None))]
    fn scan(py, table: String, limit: Option<usize>, cursor: Option<String>) {
        let mut s = Scan::new(table);
        s.limit = limit;
        s.cursor = cursor;
        async move { svc.scan(s).await.map(|p| With(p, items_page)) }
    }
    /// The items with these keys (partition values, or `(partition, sort)` pairs); missing
    /// ones are left out.
    fn batch_get(py, table: String, keys: &Bound<'_, PyList>) {
        let mut ks = Vec::with_capacity(keys.len());
        for k in keys.iter() {
            ks.push(match k.extract::<(Bound<'_, PyAny>, Bound<'_, PyAny>)>() {
                Ok((p, s)) if !k.is_instance_of::<pyo3::types::PyBytes>() => key_of(&p, Some(&s))?,
                _ => key_of(&k, None)?,
            });
        }
        async move { svc.batch_get(&table, ks).await }
    }
    /// Writes up to 25 items at once.
    fn batch_put(py, table: String, items: &Bound<'_, PyList>) {
        let items = items
            .iter()
            .enumerate()
            .map(|(i, x)| item_of(x.cast::<PyDict>().map_err(|_| PyTypeError::new_err(format!("items[{i}] must be a dict")))?, &format!("items[{i}]")))
            .collect::<PyResult<Vec<_>>>()?;
        async move { svc.batch_put(&table, items).await }
    }
}

fn context_of(d: Option<&Bound<'_, PyDict>>) -> PyResult<EncryptionContext> {
    opt_map(d, "context")
}

service! {
    /// Keys and envelope encryption (KMS on AWS).
    CryptoSvc / AsyncCryptoSvc ("Crypto", "AsyncCrypto"): Crypto, svc;

    /// Creates a key (with an optional `alias/...`).
    #[pyo3(signature = (description=String::new(), *, alias=None))]
    fn create_key(py, description: String, alias: Option<String>) {
        let mut req = CreateKey::new(description);
        req.alias = alias;
        async move { svc.create_key(req).await.map(rec("KeyMetadata")) }
    }
    /// Imports 32 bytes of key material as a key.
    #[pyo3(signature = (material, description=String::new(), *, alias=None))]
    fn import_key(py, material: &Bound<'_, PyAny>, description: String, alias: Option<String>) {
        let material = SecretBytes::new(bytes_of(material, "material")?.to_vec());
        let mut req = CreateKey::new(description);
        req.alias = alias;
        async move { svc.import_key(req, material).await.map(rec("KeyMetadata")) }
    }
    /// A key by id or alias.
    fn describe_key(py, key: String) {
        async move { svc.describe_key(&key).await.map(rec("KeyMetadata")) }
    }
    /// Every key.
    fn list_keys(py) {
        async move { svc.list_keys().await.map(rec("KeyMetadata")) }
    }
    /// Enables a key.
    fn enable_key(py, key: String) {
        async move { svc.enable_key(&key).await }
    }
    /// Disables a key (it can no longer encrypt or decrypt).
    fn disable_key(py, key: String) {
        async move { svc.disable_key(&key).await }
    }
    /// Schedules deletion in 7–30 days; returns the deletion date.
    #[pyo3(signature = (key, pending_days=30))]
    fn schedule_key_deletion(py, key: String, pending_days: u32) {
        async move { svc.schedule_key_deletion(&key, pending_days).await }
    }
    /// Cancels a scheduled deletion.
    fn cancel_key_deletion(py, key: String) {
        async move { svc.cancel_key_deletion(&key).await }
    }
    /// Removes an alias from its key, freeing the name.
    fn delete_alias(py, alias: String) {
        async move { svc.delete_alias(&alias).await }
    }
    /// Adds a new key version; returns the number of versions.
    fn rotate_key(py, key: String) {
        async move { svc.rotate_key(&key).await }
    }
    /// Encrypts up to 4 KiB under `key`; returns the ciphertext.
    #[pyo3(signature = (key, plaintext, context=None))]
    fn encrypt(py, key: String, plaintext: &Bound<'_, PyAny>, context: Option<&Bound<'_, PyDict>>) {
        let plaintext = bytes_of(plaintext, "plaintext")?;
        let ctx = context_of(context)?;
        async move { svc.encrypt(&key, &plaintext, &ctx).await }
    }
    /// Decrypts a ciphertext (the same context as at encryption is required).
    #[pyo3(signature = (ciphertext, context=None))]
    fn decrypt(py, ciphertext: &Bound<'_, PyAny>, context: Option<&Bound<'_, PyDict>>) {
        let ciphertext = bytes_of(ciphertext, "ciphertext")?;
        let ctx = context_of(context)?;
        async move {
            let d = svc.decrypt(&ciphertext, &ctx).await?;
            Ok(With(d, |py, d| {
                let data = dict(py, vec![
                    ("key_id", d.key_id.into_pyobject(py)?.into_any()),
                    ("plaintext", PyBytes::new(py, d.plaintext.expose()).into_any()),
                ])?;
                conv::build(py, "Decrypted", data)
            }))
        }
    }
    /// A fresh data key: its plaintext and its ciphertext under `key`.
    #[pyo3(signature = (key, context=None))]
    fn generate_data_key(py, key: String, context: Option<&Bound<'_, PyDict>>) {
        let ctx = context_of(context)?;
        async move {
            let k = svc.generate_data_key(&key, &ctx).await?;
            Ok(With(k, |py, k| {
                let data = dict(py, vec![
                    ("key_id", k.key_id.into_pyobject(py)?.into_any()),
                    ("plaintext", PyBytes::new(py, k.plaintext.expose()).into_any()),
                    ("ciphertext", PyBytes::new(py, &k.ciphertext).into_any()),
                ])?;
                conv::build(py, "DataKey", data)
            }))
        }
    }
    /// The audit trail, newest last.
    #[pyo3(signature = (*, key_id=None, since=None, limit=None))]
    fn audit_events(py, key_id: Option<String>, since: Option<Timestamp>, limit: Option<usize>) {
        let mut q = AuditQuery::all();
        q.key_id = key_id;
        q.since = since;
        q.limit = limit;
        async move { svc.audit_events(q).await.map(rec("AuditEvent")) }
    }
}

/// A live tail of a log group: iterate it with `for` (blocking) or `async for`.
#[pyclass(frozen, module = "mvi")]
pub struct LogTail {
    stream: Arc<Mutex<BoxStream<LogRecord>>>,
}

impl std::fmt::Debug for LogTail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogTail")
    }
}

impl LogTail {
    async fn next_record(
        stream: Arc<Mutex<BoxStream<LogRecord>>>,
    ) -> mvi_core::Result<Option<LogRecord>> {
        stream.lock().await.next().await.transpose()
    }
}

#[pymethods]
impl LogTail {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        // Waits in slices, so Ctrl-C (a pending signal) interrupts a quiet tail.
        loop {
            let stream = self.stream.clone();
            let next = crate::rt::wait(py, async move {
                match tokio::time::timeout(Duration::from_millis(100), Self::next_record(stream))
                    .await
                {
                    Ok(r) => r.map(Some),
                    Err(_) => Ok(None),
                }
            })?;
            match next {
                Some(Some(r)) => return conv::record(py, "LogRecord", &r),
                Some(None) => return Err(PyStopIteration::new_err(())),
                None => py.check_signals()?,
            }
        }
    }

    fn __aiter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let stream = self.stream.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let next = Self::next_record(stream)
                .await
                .map_err(crate::errors::to_py)?;
            Python::attach(|py| match next {
                Some(r) => conv::record(py, "LogRecord", &r),
                None => Err(PyStopAsyncIteration::new_err(())),
            })
        })
    }
}

fn tail_of(s: BoxStream<LogRecord>) -> With<BoxStream<LogRecord>> {
    With(s, |py, s| {
        Ok(Py::new(
            py,
            LogTail {
                stream: Arc::new(Mutex::new(s)),
            },
        )?
        .into_any())
    })
}

service! {
    /// Log groups and streams (CloudWatch Logs on AWS).
    LogsSvc / AsyncLogsSvc ("Logs", "AsyncLogs"): Logs, svc;

    /// Creates a log group (retention in days: 1, 3, 5, 7, 14, 30, ... or None to keep).
    #[pyo3(signature = (group, retention_days=None))]
    fn create_group(py, group: String, retention_days: Option<u32>) {
        async move { svc.create_group(&group, retention_days).await.map(rec("LogGroup")) }
    }
    /// Deletes a group and its streams.
    fn delete_group(py, group: String) {
        async move { svc.delete_group(&group).await }
    }
    /// Every group.
    fn list_groups(py) {
        async move { svc.list_groups().await.map(rec("LogGroup")) }
    }
    /// Sets (or with None removes) a group's retention.
    #[pyo3(signature = (group, retention_days=None))]
    fn set_retention(py, group: String, retention_days: Option<u32>) {
        async move { svc.set_retention(&group, retention_days).await }
    }
    /// Creates a stream in a group.
    fn create_stream(py, group: String, stream: String) {
        async move { svc.create_stream(&group, &stream).await.map(rec("LogStream")) }
    }
    /// A group's streams.
    fn list_streams(py, group: String) {
        async move { svc.list_streams(&group).await.map(rec("LogStream")) }
    }
    /// Appends events (`LogEvent`s or `(datetime, message)` pairs).
    fn put_events(py, group: String, stream: String, events: &Bound<'_, PyAny>) {
        let events: Vec<LogEvent> = from_py(events, "events", None)?;
        async move { svc.put_events(&group, &stream, events).await }
    }
    /// One page of a stream's events, oldest first.
    #[pyo3(signature = (group, stream, *, start=None, end=None, limit=None, cursor=None))]
    fn get_events(
        py,
        group: String,
        stream: String,
        start: Option<Timestamp>,
        end: Option<Timestamp>,
        limit: Option<usize>,
        cursor: Option<String>,
    ) {
        let mut req = GetEvents::new(group, stream);
        req.start = start;
        req.end = end;
        req.limit = limit;
        req.cursor = cursor;
        async move {
            let p = svc.get_events(req).await?;
            Ok(Rec("RecordPage", serde_json::json!({"items": p.items, "next": p.next})))
        }
    }
    /// One page of the events of a group matching a CloudWatch Logs filter pattern.
    #[pyo3(signature = (group, pattern=String::new(), *, streams=None, start=None, end=None, limit=None, cursor=None))]
    fn filter_events(
        py,
        group: String,
        pattern: String,
        streams: Option<Vec<String>>,
        start: Option<Timestamp>,
        end: Option<Timestamp>,
        limit: Option<usize>,
        cursor: Option<String>,
    ) {
        let mut req = FilterEvents::new(group, pattern);
        req.streams = streams.unwrap_or_default();
        req.start = start;
        req.end = end;
        req.limit = limit;
        req.cursor = cursor;
        async move {
            let p = svc.filter_events(req).await?;
            Ok(Rec("RecordPage", serde_json::json!({"items": p.items, "next": p.next})))
        }
    }
    /// A live tail of the group (events from `since`, then new ones as they come): a
    /// `LogTail`, iterable with `for` or `async for`.
    #[pyo3(signature = (group, *, pattern=String::new(), streams=None, since=None))]
    fn tail(py, group: String, pattern: String, streams: Option<Vec<String>>, since: Option<Timestamp>) {
        let mut req = TailEvents::new(group).pattern(pattern);
        req.streams = streams.unwrap_or_default();
        req.since = since;
        async move { svc.tail(req).await.map(tail_of) }
    }
}

fn datapoints(py: Python<'_>, points: Vec<mvi_core::metric::Datapoint>) -> PyResult<Py<PyAny>> {
    let out = PyList::empty(py);
    for p in points {
        let values = PyDict::new(py);
        for (stat, v) in &p.values {
            values.set_item(stat.to_string(), v)?;
        }
        let unit =
            serde_json::to_value(p.unit).map_err(|e| PyValueError::new_err(e.to_string()))?;
        let d = dict(
            py,
            vec![
                ("timestamp", p.timestamp.into_pyobject(py)?.into_any()),
                ("values", values.into_any()),
                ("unit", json_to_py(py, &unit)?),
            ],
        )?;
        out.append(conv::build(py, "Datapoint", d)?)?;
    }
    Ok(out.into_any().unbind())
}

service! {
    /// Metrics and alarms (CloudWatch on AWS).
    MetricsSvc / AsyncMetricsSvc ("Metrics", "AsyncMetrics"): Metrics, svc;

    /// Stores samples (`Datum`s) under a namespace.
    fn put_data(py, namespace: String, data: &Bound<'_, PyAny>) {
        let data: Vec<Datum> = from_py(data, "data", None)?;
        async move { svc.put_data(&namespace, data).await }
    }
    /// Statistics of a metric per period (`statistics`: "Sum", "Average", "Minimum",
    /// "Maximum", "SampleCount", "p50", "p99", ...).
    fn get_statistics(
        py,
        metric: &Bound<'_, PyAny>,
        start: Timestamp,
        end: Timestamp,
        period: &Bound<'_, PyAny>,
        statistics: Vec<Bound<'_, PyAny>>,
    ) {
        let metric: MetricId = from_py(metric, "metric", None)?;
        let stats = statistics.iter().map(statistic).collect::<PyResult<Vec<_>>>()?;
        let req = GetStatistics::new(metric, start, end, duration(period, "period")?, stats);
        async move { svc.get_statistics(req).await.map(|p| With(p, datapoints)) }
    }
    /// The metrics stored, optionally of one namespace and name.
    #[pyo3(signature = (namespace=None, name=None))]
    fn list_metrics(py, namespace: Option<String>, name: Option<String>) {
        async move { svc.list_metrics(namespace.as_deref(), name.as_deref()).await.map(rec("MetricId")) }
    }
    /// Creates or replaces an alarm (`AlarmSpec`).
    fn put_alarm(py, spec: &Bound<'_, PyAny>) {
        let spec: AlarmSpec = from_py(spec, "spec", None)?;
        async move { svc.put_alarm(spec).await }
    }
    /// Deletes an alarm.
    fn delete_alarm(py, name: String) {
        async move { svc.delete_alarm(&name).await }
    }
    /// The alarms whose name starts with `prefix`, with their state.
    #[pyo3(signature = (prefix=None))]
    fn describe_alarms(py, prefix: Option<String>) {
        async move { svc.describe_alarms(prefix.as_deref()).await.map(rec("Alarm")) }
    }
    /// An alarm's state changes.
    fn alarm_history(py, name: String) {
        async move { svc.alarm_history(&name).await.map(rec("AlarmTransition")) }
    }
}

service! {
    /// Image repositories (ECR on AWS): content-addressed blobs and manifests.
    ImagesSvc / AsyncImagesSvc ("Images", "AsyncImages"): Images, svc;

    /// Creates a repository.
    fn create_repository(py, name: String) {
        async move { svc.create_repository(&name).await.map(rec("Repository")) }
    }
    /// Deletes a repository (`force`: with its images).
    #[pyo3(signature = (name, force=false))]
    fn delete_repository(py, name: String, force: bool) {
        async move { svc.delete_repository(&name, force).await }
    }
    /// Every repository.
    fn list_repositories(py) {
        async move { svc.list_repositories().await.map(rec("Repository")) }
    }
    /// Uploads a blob under its digest (`sha256:<hex>`, checked).
    fn push_blob(py, repository: String, digest: String, data: &Bound<'_, PyAny>) {
        let body = bytes_of(data, "data")?;
        async move { svc.push_blob(&repository, &digest, body).await }
    }
    /// Downloads a blob.
    fn pull_blob(py, repository: String, digest: String) {
        async move { svc.pull_blob(&repository, &digest).await }
    }
    /// Uploads a manifest (optionally tagging it); returns its digest.
    #[pyo3(signature = (repository, manifest, tag=None))]
    fn push_manifest(py, repository: String, manifest: &Bound<'_, PyAny>, tag: Option<String>) {
        let manifest: Manifest = from_py(manifest, "manifest", None)?;
        async move { svc.push_manifest(&repository, &manifest, tag.as_deref()).await }
    }
    /// The manifest of a tag or digest (`sha256:...`): `(digest, Manifest)`.
    fn pull_manifest(py, repository: String, reference: String) {
        let r = image_ref(&reference);
        async move {
            let (digest, manifest) = svc.pull_manifest(&repository, &r).await?;
            Ok(With((digest, manifest), |py, (digest, manifest)| {
                let m = conv::record(py, "Manifest", &manifest)?;
                Ok((digest, m).into_pyobject(py)?.into_any().unbind())
            }))
        }
    }
    /// Tags a digest.
    fn tag(py, repository: String, digest: String, tag: String) {
        async move { svc.tag(&repository, &digest, &tag).await }
    }
    /// The images of a repository.
    fn list_images(py, repository: String) {
        async move { svc.list_images(&repository).await.map(rec("ImageInfo")) }
    }
    /// Builds an image from a local directory (its files as one layer, `config` an
    /// `ImageConfig`) and pushes it, tagged `tag`; returns its digest.
    #[pyo3(signature = (repository, dir, config=None, tag=None))]
    fn build_from_dir(py, repository: String, dir: std::path::PathBuf, config: Option<&Bound<'_, PyAny>>, tag: Option<String>) {
        let config: ImageConfig = match config {
            Some(c) => from_py(c, "config", None)?,
            None => ImageConfig::default(),
        };
        async move { mvi_core::image::build_from_dir(svc.as_ref(), &repository, &dir, &config, tag.as_deref()).await }
    }
    /// Deletes an image by tag or digest.
    fn delete_image(py, repository: String, reference: String) {
        let r = image_ref(&reference);
        async move { svc.delete_image(&repository, &r).await }
    }
}

fn container_spec(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<ContainerSpec> {
    from_py(obj, what, Some(ContainerSpec::new("")))
}

pub(crate) fn service_spec(obj: &Bound<'_, PyAny>) -> PyResult<ServiceSpec> {
    from_py(
        obj,
        "spec",
        Some(ServiceSpec::new("", ContainerSpec::new(""), 1)),
    )
}

service! {
    /// Container services, tasks and schedules (ECS on AWS; real processes locally).
    ContainersSvc / AsyncContainersSvc ("Containers", "AsyncContainers"): Containers, svc;

    /// Starts a service (`ServiceSpec`); returns once it is created.
    fn create_service(py, spec: &Bound<'_, PyAny>) {
        let spec = service_spec(spec)?;
        async move { svc.create_service(spec).await.map(rec("ServiceInfo")) }
    }
    /// Deploys a new spec by a rolling update (blue-green and canary: `Cloud.deploy`);
    /// a revision that fails is rolled back and raises `DeploymentFailed`.
    fn update_service(py, spec: &Bound<'_, PyAny>) {
        let spec = service_spec(spec)?;
        async move { svc.update_service(spec).await.map(rec("ServiceInfo")) }
    }
    /// Changes the number of replicas.
    fn scale_service(py, name: String, replicas: u32) {
        async move { svc.scale_service(&name, replicas).await.map(rec("ServiceInfo")) }
    }
    /// A service and its instances.
    fn describe_service(py, name: String) {
        async move { svc.describe_service(&name).await.map(rec("ServiceInfo")) }
    }
    /// The service's revisions, oldest first.
    fn list_revisions(py, name: String) {
        async move { svc.list_revisions(&name).await.map(rec("Revision")) }
    }
    /// Every service.
    fn list_services(py) {
        async move { svc.list_services().await.map(rec("ServiceInfo")) }
    }
    /// Stops and deletes a service.
    fn delete_service(py, name: String) {
        async move { svc.delete_service(&name).await }
    }
    /// Runs a one-off task to completion (or `timeout`, a timedelta or seconds).
    fn run_task(py, name: String, spec: &Bound<'_, PyAny>, timeout: &Bound<'_, PyAny>) {
        let spec = container_spec(spec, "spec")?;
        let timeout = duration(timeout, "timeout")?;
        async move { svc.run_task(&name, spec, timeout).await.map(rec("TaskResult")) }
    }
    /// Creates or replaces a cron schedule (`ScheduleSpec`).
    fn put_schedule(py, spec: &Bound<'_, PyAny>) {
        let spec: ScheduleSpec = from_py(spec, "spec", Some(ScheduleSpec::new("", "", ContainerSpec::new(""))))?;
        async move { svc.put_schedule(spec).await }
    }
    /// Deletes a schedule.
    fn delete_schedule(py, name: String) {
        async move { svc.delete_schedule(&name).await }
    }
    /// Every schedule.
    fn list_schedules(py) {
        async move { svc.list_schedules().await.map(rec("ScheduleSpec")) }
    }
    /// Hands a scaler to the backend (a dict: `service`, `min`, `max`, `metrics`, and
    /// optionally `behavior`, `schedules`, `period`, `tolerance`; see docs/autoscaling.md);
    /// returns its state, a `ScalerInfo`.
    fn put_scaler(py, spec: &Bound<'_, PyAny>) {
        let spec: ScalerSpec = from_py(spec, "spec", Some(ScalerSpec::new("", 1, 1)))?;
        async move { svc.put_scaler(spec).await.map(rec("ScalerInfo")) }
    }
    /// The service's scaler: its spec, the bounds in force, its last decisions.
    fn describe_scaler(py, service: String) {
        async move { svc.describe_scaler(&service).await.map(rec("ScalerInfo")) }
    }
    /// Removes the service's scaler.
    fn delete_scaler(py, service: String) {
        async move { svc.delete_scaler(&service).await }
    }
}

service! {
    /// Load balancers and target groups (ELBv2 on AWS; a real HTTP/TCP proxy locally).
    LoadBalancersSvc / AsyncLoadBalancersSvc ("LoadBalancers", "AsyncLoadBalancers"): LoadBalancers, svc;

    /// Creates a target group (`TargetGroupSpec`).
    fn create_target_group(py, spec: &Bound<'_, PyAny>) {
        let spec: TargetGroupSpec = from_py(spec, "spec", Some(TargetGroupSpec::new("", Protocol::Http)))?;
        async move { svc.create_target_group(spec).await }
    }
    /// Deletes a target group.
    fn delete_target_group(py, name: String) {
        async move { svc.delete_target_group(&name).await }
    }
    /// Registers targets (`host:port`).
    fn register_targets(py, group: String, targets: Vec<String>) {
        async move { svc.register_targets(&group, targets).await }
    }
    /// Deregisters targets (they drain first).
    fn deregister_targets(py, group: String, targets: Vec<String>) {
        async move { svc.deregister_targets(&group, targets).await }
    }
    /// The health of each target.
    fn target_health(py, group: String) {
        async move { svc.target_health(&group).await.map(rec("TargetStatus")) }
    }
    /// Creates a load balancer (`LoadBalancerSpec`); its `urls` are where it listens.
    fn create_load_balancer(py, spec: &Bound<'_, PyAny>) {
        let spec: LoadBalancerSpec = from_py(spec, "spec", Some(LoadBalancerSpec::new("", Vec::new())))?;
        async move { svc.create_load_balancer(spec).await.map(rec("LoadBalancerInfo")) }
    }
    /// Sets the weights of a listener's target groups: `[(group, weight), ...]`.
    fn set_weights(py, lb: String, port: u16, forward: Vec<(String, u32)>) {
        async move { svc.set_weights(&lb, port, forward).await }
    }
    /// A load balancer.
    fn describe_load_balancer(py, name: String) {
        async move { svc.describe_load_balancer(&name).await.map(rec("LoadBalancerInfo")) }
    }
    /// Every load balancer.
    fn list_load_balancers(py) {
        async move { svc.list_load_balancers().await.map(rec("LoadBalancerInfo")) }
    }
    /// Deletes a load balancer.
    fn delete_load_balancer(py, name: String) {
        async move { svc.delete_load_balancer(&name).await }
    }
}

fn database_spec(obj: &Bound<'_, PyAny>) -> PyResult<DatabaseSpec> {
    from_py(obj, "spec", Some(DatabaseSpec::postgres("")))
}

service! {
    /// Managed PostgreSQL databases (RDS on AWS; a real PostgreSQL server locally).
    DatabasesSvc / AsyncDatabasesSvc ("Databases", "AsyncDatabases"): Databases, svc;

    /// Creates a database (`DatabaseSpec`; PostgreSQL 15 by default) and waits until it is
    /// available.
    fn create_database(py, spec: &Bound<'_, PyAny>) {
        let spec = database_spec(spec)?;
        async move { svc.create_database(spec).await.map(rec("DatabaseInfo")) }
    }
    /// A database.
    fn describe_database(py, name: String) {
        async move { svc.describe_database(&name).await.map(rec("DatabaseInfo")) }
    }
    /// Every database.
    fn list_databases(py) {
        async move { svc.list_databases().await.map(rec("DatabaseInfo")) }
    }
    /// How to connect: host, port, user, password, database and `url`.
    fn credentials(py, name: String) {
        async move {
            let c = svc.credentials(&name).await?;
            Ok(With(c, |py, c| {
                let d = dict(py, vec![
                    ("host", c.host.clone().into_pyobject(py)?.into_any()),
                    ("port", c.port.into_pyobject(py)?.into_any()),
                    ("user", c.user.clone().into_pyobject(py)?.into_any()),
                    ("password", c.password.expose().into_pyobject(py)?.into_any()),
                    ("database", c.database.clone().into_pyobject(py)?.into_any()),
                    ("url", c.url().expose().into_pyobject(py)?.into_any()),
                ])?;
                conv::build(py, "Credentials", d)
            }))
        }
    }
    /// Deletes a database.
    fn delete_database(py, name: String) {
        async move { svc.delete_database(&name).await }
    }
    /// Reboots a database; with `force_failover` (multi-AZ only) its standby takes over.
    fn reboot_database(py, name: String, force_failover: bool) {
        async move { svc.reboot_database(&name, force_failover).await.map(rec("DatabaseInfo")) }
    }
    /// Snapshots a database.
    fn create_snapshot(py, database: String, snapshot: String) {
        async move { svc.create_snapshot(&database, &snapshot).await.map(rec("SnapshotInfo")) }
    }
    /// Snapshots, of one database or all.
    #[pyo3(signature = (database=None))]
    fn list_snapshots(py, database: Option<String>) {
        async move { svc.list_snapshots(database.as_deref()).await.map(rec("SnapshotInfo")) }
    }
    /// A new database from a snapshot.
    fn restore_snapshot(py, snapshot: String, spec: &Bound<'_, PyAny>) {
        let spec = database_spec(spec)?;
        async move { svc.restore_snapshot(&snapshot, spec).await.map(rec("DatabaseInfo")) }
    }
    /// A new database (`spec`) from the continuous backups of `source`, as it was at `time`
    /// (a timezone-aware `datetime`; the latest restorable time when omitted).
    #[pyo3(signature = (source, spec, *, time=None))]
    fn restore_to_point_in_time(py, source: String, spec: &Bound<'_, PyAny>, time: Option<Timestamp>) {
        let spec = database_spec(spec)?;
        let to = time.map_or(RestoreTime::Latest, RestoreTime::At);
        async move { svc.restore_to_point_in_time(&source, to, spec).await.map(rec("DatabaseInfo")) }
    }
    /// Deletes a snapshot.
    fn delete_snapshot(py, snapshot: String) {
        async move { svc.delete_snapshot(&snapshot).await }
    }
}

service! {
    /// Virtual machines (EC2 on AWS; simulated hosts locally).
    VmsSvc / AsyncVmsSvc ("Vms", "AsyncVms"): Vms, svc;

    /// Launches an instance (`VmSpec`).
    fn run_instance(py, spec: &Bound<'_, PyAny>) {
        let spec: VmSpec = from_py(spec, "spec", Some(VmSpec::new("", "", "", "")))?;
        async move { svc.run_instance(spec).await.map(rec("VmInfo")) }
    }
    /// An instance.
    fn describe_instance(py, id: String) {
        async move { svc.describe_instance(&id).await.map(rec("VmInfo")) }
    }
    /// Every instance.
    fn list_instances(py) {
        async move { svc.list_instances().await.map(rec("VmInfo")) }
    }
    /// Starts a stopped instance.
    fn start_instance(py, id: String) {
        async move { svc.start_instance(&id).await.map(rec("VmInfo")) }
    }
    /// Stops an instance.
    fn stop_instance(py, id: String) {
        async move { svc.stop_instance(&id).await.map(rec("VmInfo")) }
    }
    /// Terminates an instance.
    fn terminate_instance(py, id: String) {
        async move { svc.terminate_instance(&id).await }
    }
}

fn tags_of(d: Option<&Bound<'_, PyDict>>) -> PyResult<Tags> {
    opt_map(d, "tags")
}

service! {
    /// VPCs, subnets and security groups (EC2 VPC on AWS).
    NetworksSvc / AsyncNetworksSvc ("Networks", "AsyncNetworks"): Networks, svc;

    /// The availability zones.
    fn list_zones(py) {
        async move { svc.list_zones().await }
    }
    /// Creates a VPC with a CIDR block (`10.0.0.0/16`).
    #[pyo3(signature = (cidr, tags=None))]
    fn create_vpc(py, cidr: String, tags: Option<&Bound<'_, PyDict>>) {
        let tags = tags_of(tags)?;
        async move { svc.create_vpc(&cidr, tags).await.map(rec("VpcInfo")) }
    }
    /// Deletes a VPC.
    fn delete_vpc(py, id: String) {
        async move { svc.delete_vpc(&id).await }
    }
    /// Every VPC.
    fn list_vpcs(py) {
        async move { svc.list_vpcs().await.map(rec("VpcInfo")) }
    }
    /// Creates a subnet of a VPC in a zone.
    #[pyo3(signature = (vpc, cidr, zone, public=false))]
    fn create_subnet(py, vpc: String, cidr: String, zone: String, public: bool) {
        async move { svc.create_subnet(&vpc, &cidr, &zone, public).await.map(rec("SubnetInfo")) }
    }
    /// Deletes a subnet.
    fn delete_subnet(py, id: String) {
        async move { svc.delete_subnet(&id).await }
    }
    /// A VPC's subnets.
    fn list_subnets(py, vpc: String) {
        async move { svc.list_subnets(&vpc).await.map(rec("SubnetInfo")) }
    }
    /// Creates a security group in a VPC.
    fn create_security_group(py, vpc: String, name: String) {
        async move { svc.create_security_group(&vpc, &name).await.map(rec("SecurityGroupInfo")) }
    }
    /// Adds a rule (`Rule`) to a group.
    fn authorize(py, group: String, rule: &Bound<'_, PyAny>) {
        let rule: Rule = from_py(rule, "rule", None)?;
        async move { svc.authorize(&group, rule).await }
    }
    /// Removes a rule from a group.
    fn revoke(py, group: String, rule: &Bound<'_, PyAny>) {
        let rule: Rule = from_py(rule, "rule", None)?;
        async move { svc.revoke(&group, rule).await }
    }
    /// A security group and its rules.
    fn describe_security_group(py, id: String) {
        async move { svc.describe_security_group(&id).await.map(rec("SecurityGroupInfo")) }
    }
    /// A VPC's security groups.
    fn list_security_groups(py, vpc: String) {
        async move { svc.list_security_groups(&vpc).await.map(rec("SecurityGroupInfo")) }
    }
    /// Deletes a security group.
    fn delete_security_group(py, id: String) {
        async move { svc.delete_security_group(&id).await }
    }
}
