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

pub mod expr;

/// The most actions in one `transact_write` (as DynamoDB's TransactWriteItems).
pub const MAX_TRANSACT_ITEMS: usize = 100;

/// The largest item, in bytes (as DynamoDB).
pub const MAX_ITEM_SIZE: usize = 400 * 1024;
/// The most items in one `batch_put` (as DynamoDB's BatchWriteItem).
pub const MAX_BATCH_PUT: usize = 25;
/// The most keys in one `batch_get` (as DynamoDB's BatchGetItem).
pub const MAX_BATCH_GET: usize = 100;

/// How deeply lists and maps may nest in a value that is written (DynamoDB's limit): a
/// list is 1 level, a list in it 2, and so on.
pub const MAX_DEPTH: usize = 32;
/// How deeply a value that is read back may nest. A store written before [`MAX_DEPTH`] was
/// checked may hold deeper values; beyond this one they are reported unreadable, never
/// walked (which could overflow the stack).
pub const MAX_READ_DEPTH: usize = 128;

thread_local! {
    /// Lists and maps being decoded on this thread, around the one being decoded now.
    static DECODING: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// Set when a decode on this thread was refused for its depth.
    static TOO_DEEP: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the last failed decode of a value on this thread failed for its depth (past
/// [`MAX_READ_DEPTH`]); reading it resets it. For decoders whose errors drop serde's
/// message (postcard's do).
pub fn decode_was_too_deep() -> bool {
    TOO_DEEP.with(|c| c.replace(false))
}

/// Decodes a list's or map's contents one level deeper, refusing past [`MAX_READ_DEPTH`]:
/// serde's derived decoder recurses once per level, so the limit bounds the stack it uses.
fn nested<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Leave;
    impl Drop for Leave {
        fn drop(&mut self) {
            DECODING.with(|c| c.set(c.get().saturating_sub(1)));
        }
    }
    let depth = DECODING.with(|c| {
        let n = c.get() + 1;
        c.set(n);
        n
    });
    let _leave = Leave;
    if depth > MAX_READ_DEPTH {
        TOO_DEEP.with(|c| c.set(true));
        return Err(serde::de::Error::custom(format!(
            "a value nests lists and maps more than {MAX_READ_DEPTH} levels deep"
        )));
    }
    T::deserialize(d)
}

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
    List(#[serde(deserialize_with = "nested")] Vec<Value>),
    /// A map.
    Map(#[serde(deserialize_with = "nested")] BTreeMap<String, Value>),
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
        // A walk with a stack of its own, not recursion: a value of any depth is measured.
        let mut total = 0;
        let mut todo = vec![self];
        while let Some(v) = todo.pop() {
            total += match v {
                Value::Null | Value::Bool(_) => 1,
                Value::Int(_) | Value::Float(_) => 21,
                Value::Str(s) => s.len(),
                Value::Bytes(b) => b.len(),
                Value::List(l) => {
                    todo.extend(l.iter());
                    3 + l.len()
                }
                Value::Map(m) => {
                    todo.extend(m.values());
                    3 + m.keys().map(|k| 1 + k.len()).sum::<usize>()
                }
            };
        }
        total
    }

    /// How deeply lists and maps nest in it: 0 for a scalar, 1 for `[1]`, 2 for `[[1]]`.
    /// Measured without recursion, whatever the depth.
    pub fn depth(&self) -> usize {
        let mut deepest = 0;
        let mut todo = vec![(self, 0usize)];
        while let Some((v, d)) = todo.pop() {
            match v {
                Value::List(l) => todo.extend(l.iter().map(|x| (x, d + 1))),
                Value::Map(m) => todo.extend(m.values().map(|x| (x, d + 1))),
                _ => {}
            }
            if matches!(v, Value::List(_) | Value::Map(_)) {
                deepest = deepest.max(d + 1);
            }
        }
        deepest
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

/// A number as DynamoDB's decimal string (`N`); any other value as its debug form.
pub fn dynamodb_number(v: &Value) -> String {
    match v {
        Value::Int(i) => i.to_string(),
        Value::Float(f) => {
            let a = f.abs();
            if a != 0.0 && !(1e-7..1e21).contains(&a) {
                format!("{f:e}")
            } else {
                f.to_string()
            }
        }
        other => format!("{other:?}"),
    }
}

/// Reads DynamoDB's decimal string: an integer when integral and within `i64`, else a float
/// (so `"1E+2"` and `"2.0"` are integers); `None` if it is not a finite number.
pub fn parse_dynamodb_number(s: &str) -> Option<Value> {
    if let Ok(i) = s.parse::<i64>() {
        return Some(Value::Int(i));
    }
    let f = s.parse::<f64>().ok().filter(|f| f.is_finite())?;
    // Integral and within i64 (2^63 itself is out): an integer.
    if f.fract() == 0.0 && (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&f)
    {
        return Some(Value::Int(f as i64));
    }
    Some(Value::Float(f))
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
    /// Any condition DynamoDB's expression language can state
    /// ([`expr::parse_condition`] reads one).
    Expr(expr::Cond),
}

impl Condition {
    /// `Condition::Equals(name, value)`.
    pub fn equals(name: impl Into<String>, value: impl Into<Value>) -> Self {
        Condition::Equals(name.into(), value.into())
    }

    /// The condition as an expression on items of a table keyed as `spec` (`None` for no
    /// condition), for backends that send expressions.
    pub fn to_expr(&self, spec: &TableSpec) -> Option<expr::Cond> {
        let pk = || expr::Path::attr(&spec.partition_key.name);
        Some(match self {
            Condition::None => return None,
            Condition::NotExists => expr::Cond::NotExists(pk()),
            Condition::Exists => expr::Cond::Exists(pk()),
            Condition::Equals(name, v) => expr::Cond::Compare(
                expr::Operand::Path(expr::Path::attr(name)),
                expr::Cmp::Eq,
                expr::Operand::Value(v.clone()),
            ),
            Condition::Expr(c) => c.clone(),
        })
    }

    /// Whether `current` (the item now stored, if any) satisfies the condition.
    pub fn holds(&self, current: Option<&Item>) -> bool {
        match self {
            Condition::None => true,
            Condition::NotExists => current.is_none(),
            Condition::Exists => current.is_some(),
            Condition::Equals(name, value) => current.and_then(|i| i.get(name)) == Some(value),
            Condition::Expr(c) => c.holds(current),
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

/// What an update returns (DynamoDB's `ReturnValues`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReturnValues {
    /// Nothing.
    #[default]
    None,
    /// The item as it was, if there was one.
    AllOld,
    /// The attributes the update wrote, as they were.
    UpdatedOld,
    /// The item as it is now.
    AllNew,
    /// The attributes the update wrote, as they are now.
    UpdatedNew,
}

/// An update of one item in place: an [`expr::Update`] applied atomically, creating the item
/// (from its key) if there is none and the condition allows.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct UpdateItem {
    /// The table.
    pub table: String,
    /// The item's key.
    pub key: Key,
    /// The actions.
    pub update: expr::Update,
    /// A condition on the item before the update.
    pub condition: Condition,
    /// What to return.
    pub returns: ReturnValues,
}

impl UpdateItem {
    /// Applies `update` to the item at `key` of `table`.
    pub fn new(table: impl Into<String>, key: Key, update: expr::Update) -> Self {
        UpdateItem {
            table: table.into(),
            key,
            update,
            condition: Condition::None,
            returns: ReturnValues::None,
        }
    }

    /// Requires `condition`.
    pub fn condition(mut self, condition: Condition) -> Self {
        self.condition = condition;
        self
    }

    /// Returns `returns`.
    pub fn returns(mut self, returns: ReturnValues) -> Self {
        self.returns = returns;
        self
    }
}

/// One action of a transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum TransactWrite {
    /// A put.
    Put(PutItem),
    /// A delete.
    Delete(DeleteItem),
    /// An update (its `returns` is ignored).
    Update(UpdateItem),
    /// Only a condition that must hold on an item the transaction does not write.
    Check {
        /// The table.
        table: String,
        /// The item's key.
        key: Key,
        /// What must hold.
        condition: Condition,
    },
}

impl TransactWrite {
    /// The table it acts on.
    pub fn table(&self) -> &str {
        match self {
            TransactWrite::Put(p) => &p.table,
            TransactWrite::Delete(d) => &d.table,
            TransactWrite::Update(u) => &u.table,
            TransactWrite::Check { table, .. } => table,
        }
    }

    /// Its condition.
    pub fn condition(&self) -> &Condition {
        match self {
            TransactWrite::Put(p) => &p.condition,
            TransactWrite::Delete(d) => &d.condition,
            TransactWrite::Update(u) => &u.condition,
            TransactWrite::Check { condition, .. } => condition,
        }
    }
}

/// Why a transaction was cancelled: for each of its actions, in order, the reason it failed
/// (`None` for those that would have succeeded). The source of the
/// [`PreconditionFailed`](crate::ErrorKind::PreconditionFailed) error `transact_write`
/// returns, as DynamoDB's `CancellationReasons`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionCanceled {
    /// Per action: `None`, or the reason code (`ConditionalCheckFailed`) and a message.
    pub reasons: Vec<Option<(String, String)>>,
}

impl fmt::Display for TransactionCanceled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let codes: Vec<&str> = self
            .reasons
            .iter()
            .map(|r| r.as_ref().map_or("None", |(code, _)| code.as_str()))
            .collect();
        write!(
            f,
            "Transaction cancelled, please refer cancellation reasons for specific reasons [{}]",
            codes.join(", ")
        )
    }
}

impl std::error::Error for TransactionCanceled {}

impl TransactionCanceled {
    /// The cancellation a transaction's error carries, if it is one.
    pub fn of(e: &crate::Error) -> Option<&TransactionCanceled> {
        std::error::Error::source(e)?.downcast_ref()
    }
}

/// Computes what an update returns from the item before and after it.
pub fn update_returns(
    returns: ReturnValues,
    update: &expr::Update,
    old: Option<&Item>,
    new: &Item,
) -> Option<Item> {
    let touched = |item: &Item| -> Item {
        let tops: std::collections::BTreeSet<&str> = update.paths().map(|p| p.top()).collect();
        item.iter()
            .filter(|(k, _)| tops.contains(k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    match returns {
        ReturnValues::None => None,
        ReturnValues::AllOld => old.cloned(),
        ReturnValues::UpdatedOld => old.map(touched),
        ReturnValues::AllNew => Some(new.clone()),
        ReturnValues::UpdatedNew => Some(touched(new)),
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
    /// Updates an item in place if the condition holds (creating it if there is none);
    /// returns what `req.returns` asks for.
    async fn update_item(&self, req: UpdateItem) -> Result<Option<Item>>;
    /// Up to 100 writes and checks, on distinct items of any tables, all or nothing: if any
    /// condition fails none is applied, and the error's source is a [`TransactionCanceled`].
    async fn transact_write(&self, writes: Vec<TransactWrite>) -> Result<()>;
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
    for (name, v) in item {
        check_value(op, &spec.name, name, v)?;
    }
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
    let mut todo = vec![v];
    while let Some(v) = todo.pop() {
        match v {
            Value::Float(f) if !f.is_finite() => return true,
            Value::List(l) => todo.extend(l.iter()),
            Value::Map(m) => todo.extend(m.values()),
            _ => {}
        }
    }
    false
}

/// Checks a value given for attribute `name` of `table` (an item's, a condition's): lists
/// and maps nested at most [`MAX_DEPTH`] levels, as DynamoDB, so nothing walks deeper ones.
pub fn check_value(op: Op, table: &str, name: &str, v: &Value) -> Result<()> {
    let depth = v.depth();
    if depth > MAX_DEPTH {
        return Err(op.invalid(
            table,
            format!(
                "attribute {}: lists and maps nest {depth} levels deep; at most {MAX_DEPTH} (as DynamoDB)",
                crate::error::quote(name)
            ),
        ));
    }
    Ok(())
}

/// Checks a write's condition: its value nested at most [`MAX_DEPTH`] levels.
pub fn check_condition(op: Op, table: &str, c: &Condition) -> Result<()> {
    match c {
        Condition::Equals(name, v) => check_value(op, table, name, v),
        Condition::Expr(e) => e
            .values()
            .into_iter()
            .try_for_each(|v| check_value(op, table, "expression value", v)),
        _ => Ok(()),
    }
}

/// Checks an update before any item is read: its values, its paths (none on a key attribute,
/// no two overlapping) and the condition.
pub fn check_update(op: Op, spec: &TableSpec, req: &UpdateItem) -> Result<()> {
    let table = &spec.name;
    check_key(op, spec, &req.key)?;
    check_condition(op, table, &req.condition)?;
    for v in req.update.values() {
        check_value(op, table, "expression value", v)?;
    }
    let mut keys = vec![spec.partition_key.name.as_str()];
    if let Some(s) = &spec.sort_key {
        keys.push(&s.name);
    }
    req.update.check(&keys).map_err(|e| op.invalid(table, e.0))
}

/// Checks a transaction's shape: its size, and that no item is acted on twice.
pub fn check_transaction(op: Op, writes: &[TransactWrite]) -> Result<()> {
    if writes.is_empty() || writes.len() > MAX_TRANSACT_ITEMS {
        return Err(op.invalid(
            "transaction",
            format!(
                "a transaction has 1 to {MAX_TRANSACT_ITEMS} actions; this one has {}",
                writes.len()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Service;
    use proptest::prelude::*;

    /// Runs `f` on a thread with a 256 KiB stack, so unbounded recursion shows as a crash.
    fn small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(f)
            .expect("thread")
            .join()
            .expect("the walk overflowed a small stack")
    }

    /// `n` lists around a string, built and taken apart without recursion.
    fn nest(n: usize) -> Value {
        let mut v = Value::Str("bottom".into());
        for _ in 0..n {
            v = Value::List(vec![v]);
        }
        v
    }

    fn dismantle(v: Value) {
        let mut todo = vec![v];
        while let Some(v) = todo.pop() {
            match v {
                Value::List(l) => todo.extend(l),
                Value::Map(m) => todo.extend(m.into_values()),
                _ => {}
            }
        }
    }

    /// postcard's bytes of `n` nested one-element lists around a null (variant 6 = List,
    /// length 1; variant 0 = Null), made without serializing anything that deep.
    fn nested_postcard(n: usize) -> Vec<u8> {
        let mut b = Vec::with_capacity(2 * n + 1);
        for _ in 0..n {
            b.extend_from_slice(&[6, 1]);
        }
        b.push(0);
        b
    }

    #[test]
    fn depth_size_and_checks_walk_any_depth_without_recursion() {
        small_stack(|| {
            let deep = nest(100_000);
            assert_eq!(deep.depth(), 100_000);
            assert!(deep.size() > 100_000);
            assert!(!has_bad_float(&deep));
            let spec = TableSpec::new("t", KeyAttr::new("id", KeyType::Str));
            let mut item = Item::new();
            item.insert("id".into(), Value::Str("a".into()));
            item.insert("deep".into(), deep);
            let op = Op::new(Service::Kv, "put_item");
            let e = check_item(op, &spec, &item).unwrap_err();
            assert!(
                e.message().contains("100000 levels deep; at most 32"),
                "{e}"
            );
            let c = Condition::Equals("v".into(), item.remove("deep").unwrap_or(Value::Null));
            assert!(check_condition(op, "t", &c).is_err());
            if let Condition::Equals(_, v) = c {
                dismantle(v);
            }
            dismantle(item.remove("id").unwrap_or(Value::Null));
            // The limit itself is fine.
            let ok = nest(MAX_DEPTH);
            assert_eq!(ok.depth(), MAX_DEPTH);
            check_value(op, "t", "ok", &ok).unwrap();
            assert!(check_value(op, "t", "one more", &nest(MAX_DEPTH + 1)).is_err());
        });
    }

    #[test]
    fn decoding_refuses_values_nested_past_the_read_limit() {
        small_stack(|| {
            let e = postcard::from_bytes::<Value>(&nested_postcard(100_000)).unwrap_err();
            assert!(e.to_string().contains("Serde"), "{e}");
            // Decoding may go on after a refusal: the depth count is back to zero.
            let v: Value = postcard::from_bytes(&nested_postcard(MAX_READ_DEPTH)).unwrap();
            assert_eq!(v.depth(), MAX_READ_DEPTH);
            let json = format!("{}\"Null\"{}", "{\"List\":[".repeat(200), "]}".repeat(200));
            assert!(serde_json::from_str::<Value>(&json).is_err());
        });
    }

    proptest! {
        /// Whatever the bytes (random, truncated, bit-flipped encodings of real values), an
        /// item decodes or is refused: never a panic, never a stack overflow.
        #[test]
        fn any_bytes_decode_or_are_refused(
            depth in 0usize..400,
            noise in proptest::collection::vec(any::<u8>(), 0..64),
            cut in any::<prop::sample::Index>(),
            flip in any::<prop::sample::Index>(),
        ) {
            let bytes = small_stack(move || {
                let mut b = nested_postcard(depth);
                b.extend_from_slice(&noise);
                let at = cut.index(b.len() + 1);
                let mut truncated = b[..at].to_vec();
                if !truncated.is_empty() {
                    let i = flip.index(truncated.len());
                    truncated[i] ^= 0x40;
                }
                for input in [&b, &truncated] {
                    if let Ok(v) = postcard::from_bytes::<Item>(input) {
                        for (_, v) in v {
                            dismantle(v);
                        }
                    }
                    if let Ok(v) = postcard::from_bytes::<Value>(input) {
                        prop_assert!(v.depth() <= MAX_READ_DEPTH);
                        dismantle(v);
                    }
                }
                Ok(b.len())
            });
            prop_assert!(bytes.is_ok());
        }
    }
}
