//! KV: tables of items addressed by a partition key and an optional sort key (DynamoDB on
//! AWS, redb locally).
//!
//! An [`Item`] is a map of attribute names to [`Value`]s. Items are at most 400 KiB
//! ([`MAX_ITEM_SIZE`], measured as DynamoDB does: attribute names plus values). Writes can be
//! conditional ([`Condition`]), which is how optimistic concurrency is built: keep a `version`
//! attribute and put with `Condition::equals("version", old)`.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::common::Page;
use crate::error::{Op, Result};

/// The largest item, in bytes (as DynamoDB).
pub const MAX_ITEM_SIZE: usize = 400 * 1024;
/// The most items in one `batch_put` (as DynamoDB's BatchWriteItem).
pub const MAX_BATCH_PUT: usize = 25;
/// The most keys in one `batch_get` (as DynamoDB's BatchGetItem).
pub const MAX_BATCH_GET: usize = 100;

/// An attribute value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    /// Null.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer (DynamoDB number).
    Int(i64),
    /// A float (DynamoDB number); NaN and infinities are refused.
    Float(f64),
    /// A string.
    Str(String),
    /// Binary.
    Bytes(Bytes),
    /// A list.
    List(Vec<Value>),
    /// A map.
    Map(BTreeMap<String, Value>),
}

impl Value {
    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is one.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The size DynamoDB would count for this value.
    pub fn size(&self) -> usize {
        match self {
            Value::Null | Value::Bool(_) => 1,
            Value::Int(_) | Value::Float(_) => 21,
            Value::Str(s) => s.len(),
            Value::Bytes(b) => b.len(),
            Value::List(l) => 3 + l.iter().map(|v| 1 + v.size()).sum::<usize>(),
            Value::Map(m) => 3 + m.iter().map(|(k, v)| 1 + k.len() + v.size()).sum::<usize>(),
        }
    }

    /// The key type of this value, if it can be a key (string, number or binary).
    pub fn key_type(&self) -> Option<KeyType> {
        match self {
            Value::Str(_) => Some(KeyType::Str),
            Value::Int(_) | Value::Float(_) => Some(KeyType::Number),
            Value::Bytes(_) => Some(KeyType::Bytes),
            _ => None,
        }
    }

    /// Orders two key values of the same type as DynamoDB does (numbers numerically,
    /// strings and binary bytewise). `None` for values of different or non-key types.
    pub fn key_cmp(&self, other: &Value) -> Option<Ordering> {
        match (self, other) {
            (Value::Str(a), Value::Str(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
            (Value::Bytes(a), Value::Bytes(b)) => Some(a.cmp(b)),
            // Exact, not through f64: integers beyond 2^53 must not compare equal to their
            // neighbours (DynamoDB numbers are exact decimals).
            (Value::Int(a), Value::Int(b)) => Some(a.cmp(b)),
            (Value::Float(a), Value::Float(b)) => a.partial_cmp(b),
            (Value::Int(a), Value::Float(b)) => int_float_cmp(*a, *b),
            (Value::Float(a), Value::Int(b)) => int_float_cmp(*b, *a).map(Ordering::reverse),
            _ => None,
        }
    }
}

/// Compares an integer with a float exactly (`None` for NaN).
fn int_float_cmp(i: i64, f: f64) -> Option<Ordering> {
    // 2^63 is exactly representable; every finite float in [-2^63, 2^63) truncates to an i64
    // without loss, and its fractional part breaks ties.
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    if f.is_nan() {
        return None;
    }
    if f >= TWO_63 {
        return Some(Ordering::Less);
    }
    if f < -TWO_63 {
        return Some(Ordering::Greater);
    }
    let whole = f.trunc() as i64;
    Some(i.cmp(&whole).then_with(|| {
        // Same whole part: the float's fraction decides (i has none).
        let frac = f.fract();
        if frac > 0.0 {
            Ordering::Less
        } else if frac < 0.0 {
            Ordering::Greater
        } else {
            Ordering::Equal
        }
    }))
}

macro_rules! value_from {
    ($($t:ty => $v:ident $(as $cast:ty)?),* $(,)?) => {$(
        impl From<$t> for Value {
            fn from(x: $t) -> Self { Value::$v(x $(as $cast)?.into()) }
        }
    )*};
}
value_from!(bool => Bool, i64 => Int, i32 => Int, u32 => Int, f64 => Float, String => Str,
    &str => Str, Bytes => Bytes, Vec<Value> => List, BTreeMap<String, Value> => Map);

/// An item: attribute name → value. It includes its key attributes.
pub type Item = BTreeMap<String, Value>;

/// Builds an [`Item`] from `name => value` pairs: `item! { "id" => "u1", "age" => 42 }`.
#[macro_export]
macro_rules! item {
    ($($k:expr => $v:expr),* $(,)?) => {{
        #[allow(unused_mut)]
        let mut m = $crate::kv::Item::new();
        $( m.insert(::std::string::String::from($k), $crate::kv::Value::from($v)); )*
        m
    }};
}

/// The type of a key attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyType {
    /// String (DynamoDB `S`).
    Str,
    /// Number (DynamoDB `N`).
    Number,
    /// Binary (DynamoDB `B`).
    Bytes,
}

/// A key attribute's name and type.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeyAttr {
    /// The attribute's name.
    pub name: String,
    /// Its type.
    pub kind: KeyType,
}

impl KeyAttr {
    /// A key attribute named `name` of type `kind`.
    pub fn new(name: impl Into<String>, kind: KeyType) -> Self {
        KeyAttr {
            name: name.into(),
            kind,
        }
    }
}

/// A table's definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TableSpec {
    /// The table's name: 3–255 characters of letters, digits, `_`, `-` and `.`.
    pub name: String,
    /// The partition (hash) key.
    pub partition_key: KeyAttr,
    /// The sort (range) key, if items of one partition are ordered.
    pub sort_key: Option<KeyAttr>,
}

impl TableSpec {
    /// A table keyed by `partition_key` alone.
    pub fn new(name: impl Into<String>, partition_key: KeyAttr) -> Self {
        TableSpec {
            name: name.into(),
            partition_key,
            sort_key: None,
        }
    }

    /// Adds a sort key.
    pub fn sort_key(mut self, sort_key: KeyAttr) -> Self {
        self.sort_key = Some(sort_key);
        self
    }
}

/// What is known of a table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableInfo {
    /// Its definition.
    pub spec: TableSpec,
    /// Approximate number of items.
    pub item_count: u64,
    /// When it was created.
    pub created: crate::common::Timestamp,
}

/// The key of one item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Key {
    /// The partition key's value.
    pub partition: Value,
    /// The sort key's value, for tables that have one.
    pub sort: Option<Value>,
}

impl Key {
    /// A key with a partition value only.
    pub fn new(partition: impl Into<Value>) -> Self {
        Key {
            partition: partition.into(),
            sort: None,
        }
    }

    /// A key with partition and sort values.
    pub fn with_sort(partition: impl Into<Value>, sort: impl Into<Value>) -> Self {
        Key {
            partition: partition.into(),
            sort: Some(sort.into()),
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn show(v: &Value, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match v {
                Value::Str(s) => f.write_str(s),
                Value::Int(i) => write!(f, "{i}"),
                Value::Float(x) => write!(f, "{x}"),
                Value::Bytes(b) => write!(f, "<{} bytes>", b.len()),
                other => write!(f, "{other:?}"),
            }
        }
        show(&self.partition, f)?;
        if let Some(s) = &self.sort {
            f.write_str("/")?;
            show(s, f)?;
        }
        Ok(())
    }
}

/// A condition on the current item that a write requires.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub enum Condition {
    /// No condition.
    #[default]
    None,
    /// No item has this key (`attribute_not_exists(pk)`).
    NotExists,
    /// An item has this key (`attribute_exists(pk)`).
    Exists,
    /// The item exists and its attribute equals the value (`#a = :v`), e.g. a version number.
    Equals(String, Value),
}

impl Condition {
    /// `Condition::Equals(name, value)`.
    pub fn equals(name: impl Into<String>, value: impl Into<Value>) -> Self {
        Condition::Equals(name.into(), value.into())
    }

    /// Whether `current` (the item now stored, if any) satisfies the condition.
    pub fn holds(&self, current: Option<&Item>) -> bool {
        match self {
            Condition::None => true,
            Condition::NotExists => current.is_none(),
            Condition::Exists => current.is_some(),
            Condition::Equals(name, value) => current.and_then(|i| i.get(name)) == Some(value),
        }
    }
}

/// A put.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PutItem {
    /// The table.
    pub table: String,
    /// The item, key attributes included.
    pub item: Item,
    /// A condition on the item being replaced.
    pub condition: Condition,
}

impl PutItem {
    /// An unconditional put of `item` into `table`.
    pub fn new(table: impl Into<String>, item: Item) -> Self {
        PutItem {
            table: table.into(),
            item,
            condition: Condition::None,
        }
    }

    /// Requires `condition`.
    pub fn condition(mut self, condition: Condition) -> Self {
        self.condition = condition;
        self
    }
}

/// A delete.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DeleteItem {
    /// The table.
    pub table: String,
    /// The key.
    pub key: Key,
    /// A condition on the item being deleted.
    pub condition: Condition,
}

impl DeleteItem {
    /// An unconditional delete.
    pub fn new(table: impl Into<String>, key: Key) -> Self {
        DeleteItem {
            table: table.into(),
            key,
            condition: Condition::None,
        }
    }

    /// Requires `condition`.
    pub fn condition(mut self, condition: Condition) -> Self {
        self.condition = condition;
        self
    }
}

/// A condition on the sort key in a query.
#[derive(Debug, Clone, PartialEq)]
pub enum SortCondition {
    /// Equal to.
    Eq(Value),
    /// Less than.
    Lt(Value),
    /// Less than or equal.
    Le(Value),
    /// Greater than.
    Gt(Value),
    /// Greater than or equal.
    Ge(Value),
    /// Between, both inclusive.
    Between(Value, Value),
    /// String or binary prefix.
    BeginsWith(Value),
}

impl SortCondition {
    /// Whether the sort key value `v` satisfies the condition.
    pub fn matches(&self, v: &Value) -> bool {
        use Ordering::*;
        let cmp = |b: &Value| v.key_cmp(b);
        match self {
            SortCondition::Eq(b) => cmp(b) == Some(Equal),
            SortCondition::Lt(b) => cmp(b) == Some(Less),
            SortCondition::Le(b) => matches!(cmp(b), Some(Less | Equal)),
            SortCondition::Gt(b) => cmp(b) == Some(Greater),
            SortCondition::Ge(b) => matches!(cmp(b), Some(Greater | Equal)),
            SortCondition::Between(lo, hi) => {
                matches!(cmp(lo), Some(Greater | Equal)) && matches!(cmp(hi), Some(Less | Equal))
            }
            SortCondition::BeginsWith(p) => match (v, p) {
                (Value::Str(s), Value::Str(p)) => s.starts_with(p.as_str()),
                (Value::Bytes(s), Value::Bytes(p)) => s.starts_with(p),
                _ => false,
            },
        }
    }
}

/// A query: the items of one partition, in sort-key order.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Query {
    /// The table.
    pub table: String,
    /// The partition key's value.
    pub partition: Value,
    /// Only sort keys matching this.
    pub sort: Option<SortCondition>,
    /// Highest sort key first.
    pub descending: bool,
    /// At most this many items per page.
    pub limit: Option<usize>,
    /// The `next` token of the previous page.
    pub cursor: Option<String>,
}

impl Query {
    /// All items of partition `partition` of `table`.
    pub fn new(table: impl Into<String>, partition: impl Into<Value>) -> Self {
        Query {
            table: table.into(),
            partition: partition.into(),
            sort: None,
            descending: false,
            limit: None,
            cursor: None,
        }
    }

    /// Only sort keys matching `cond`.
    pub fn sort(mut self, cond: SortCondition) -> Self {
        self.sort = Some(cond);
        self
    }

    /// Highest sort key first.
    pub fn descending(mut self) -> Self {
        self.descending = true;
        self
    }

    /// Page size.
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }

    /// Continues after a previous page.
    pub fn cursor(mut self, cursor: Option<String>) -> Self {
        self.cursor = cursor;
        self
    }
}

/// A scan: every item of a table, page by page, in no particular order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Scan {
    /// The table.
    pub table: String,
    /// At most this many items per page.
    pub limit: Option<usize>,
    /// The `next` token of the previous page.
    pub cursor: Option<String>,
}

impl Scan {
    /// A scan of `table`.
    pub fn new(table: impl Into<String>) -> Self {
        Scan {
            table: table.into(),
            limit: None,
            cursor: None,
        }
    }

    /// Page size.
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }

    /// Continues after a previous page.
    pub fn cursor(mut self, cursor: Option<String>) -> Self {
        self.cursor = cursor;
        self
    }
}

/// Key-value tables.
#[async_trait]
pub trait Kv: fmt::Debug + Send + Sync + 'static {
    /// Creates a table.
    async fn create_table(&self, spec: TableSpec) -> Result<TableInfo>;
    /// Deletes a table and its items.
    async fn delete_table(&self, table: &str) -> Result<()>;
    /// Describes a table.
    async fn describe_table(&self, table: &str) -> Result<TableInfo>;
    /// All table names, sorted.
    async fn list_tables(&self) -> Result<Vec<String>>;

    /// Writes an item, replacing any item with the same key, if the condition holds.
    async fn put_item(&self, req: PutItem) -> Result<()>;
    /// Reads an item; `None` if there is none.
    async fn get_item(&self, table: &str, key: Key) -> Result<Option<Item>>;
    /// Deletes an item if the condition holds; returns the deleted item, if there was one.
    async fn delete_item(&self, req: DeleteItem) -> Result<Option<Item>>;
    /// One page of a query.
    async fn query(&self, req: Query) -> Result<Page<Item>>;
    /// One page of a scan.
    async fn scan(&self, req: Scan) -> Result<Page<Item>>;
    /// Reads up to 100 items; missing ones are left out. Order follows `keys`.
    async fn batch_get(&self, table: &str, keys: Vec<Key>) -> Result<Vec<Item>>;
    /// Writes up to 25 items unconditionally, all or nothing.
    async fn batch_put(&self, table: &str, items: Vec<Item>) -> Result<()>;
}

/// Conveniences over [`Kv`].
#[async_trait]
pub trait KvExt: Kv {
    /// Unconditional put.
    async fn put(&self, table: &str, item: Item) -> Result<()> {
        self.put_item(PutItem::new(table, item)).await
    }

    /// Every item of a partition, following pagination.
    async fn query_all(&self, req: Query) -> Result<Vec<Item>> {
        let mut out = Vec::new();
        let mut req = req;
        loop {
            let page = self.query(req.clone()).await?;
            out.extend(page.items);
            match page.next {
                Some(next) => req.cursor = Some(next),
                None => return Ok(out),
            }
        }
    }
}

impl<T: Kv + ?Sized> KvExt for T {}

/// Checks a table name against DynamoDB's rules.
pub fn validate_table_name(op: Op, name: &str) -> Result<()> {
    if name.len() < 3 || name.len() > 255 {
        return Err(op.invalid(name, "table names must be 3 to 255 characters long"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err(op.invalid(
            name,
            "table names may contain only letters, digits, '_', '-' and '.'",
        ));
    }
    Ok(())
}

/// Checks a batch's size against its limit ([`MAX_BATCH_GET`] keys, [`MAX_BATCH_PUT`]
/// items), so every backend refuses an oversize batch the same way before any request.
pub fn check_batch(op: Op, table: &str, len: usize, max: usize, what: &str) -> Result<()> {
    if len > max {
        return Err(op.invalid(
            table,
            format!("{len} {what} in one {}; the limit is {max}", op.operation),
        ));
    }
    Ok(())
}

/// The size of an item as DynamoDB counts it.
pub fn item_size(item: &Item) -> usize {
    item.iter().map(|(k, v)| k.len() + v.size()).sum()
}

/// Checks an item against a table's key schema and the size limit, and extracts its key.
pub fn check_item(op: Op, spec: &TableSpec, item: &Item) -> Result<Key> {
    let size = item_size(item);
    if size > MAX_ITEM_SIZE {
        return Err(op.invalid(
            &spec.name,
            format!("item is {size} bytes; the limit is {MAX_ITEM_SIZE} (400 KiB)"),
        ));
    }
    if let Some((name, _)) = item.iter().find(|(_, v)| has_bad_float(v)) {
        return Err(op.invalid(
            &spec.name,
            format!("attribute {name:?}: NaN and infinite numbers are not allowed"),
        ));
    }
    let take = |attr: &KeyAttr| -> Result<Value> {
        let v = item.get(&attr.name).ok_or_else(|| {
            op.invalid(
                &spec.name,
                format!("item is missing key attribute {:?}", attr.name),
            )
        })?;
        check_key_value(op, spec, attr, v)?;
        Ok(v.clone())
    };
    Ok(Key {
        partition: take(&spec.partition_key)?,
        sort: spec.sort_key.as_ref().map(take).transpose()?,
    })
}

/// Checks a key against a table's key schema.
pub fn check_key(op: Op, spec: &TableSpec, key: &Key) -> Result<()> {
    check_key_value(op, spec, &spec.partition_key, &key.partition)?;
    match (&spec.sort_key, &key.sort) {
        (Some(attr), Some(v)) => check_key_value(op, spec, attr, v),
        (None, None) => Ok(()),
        (Some(attr), None) => Err(op.invalid(
            &spec.name,
            format!("the key is missing sort key {:?}", attr.name),
        )),
        (None, Some(_)) => Err(op.invalid(&spec.name, "the table has no sort key")),
    }
}

fn check_key_value(op: Op, spec: &TableSpec, attr: &KeyAttr, v: &Value) -> Result<()> {
    if v.key_type() != Some(attr.kind) {
        return Err(op.invalid(
            &spec.name,
            format!(
                "key attribute {:?} must be of type {:?}, got {v:?}",
                attr.name, attr.kind
            ),
        ));
    }
    let empty =
        matches!(v, Value::Str(s) if s.is_empty()) || matches!(v, Value::Bytes(b) if b.is_empty());
    if empty {
        return Err(op.invalid(
            &spec.name,
            format!("key attribute {:?} must not be empty", attr.name),
        ));
    }
    if has_bad_float(v) {
        return Err(op.invalid(
            &spec.name,
            format!("key attribute {:?} is not a finite number", attr.name),
        ));
    }
    Ok(())
}

fn has_bad_float(v: &Value) -> bool {
    match v {
        Value::Float(f) => !f.is_finite(),
        Value::List(l) => l.iter().any(has_bad_float),
        Value::Map(m) => m.values().any(has_bad_float),
        _ => false,
    }
}
