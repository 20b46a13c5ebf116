//! KV on DynamoDB.
//!
//! Table names, items, keys, batch sizes and query arguments are checked with core's
//! validators before any request, so they fail the same way as on the local backend. The
//! key schema needed for those checks is read with `DescribeTable` once per table and kept
//! (forgotten when the table is deleted through this handle or DynamoDB says it is gone).
//! Tables are created on demand (`PAY_PER_REQUEST`). Numbers travel as DynamoDB's decimal
//! strings and read back as [`Value::Int`] when integral and within `i64`, else as
//! [`Value::Float`]. Cursors are the base64 of the JSON of DynamoDB's `LastEvaluatedKey`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::primitives::Blob as DdbBlob;
use aws_sdk_dynamodb::types::ReturnValue as DdbReturnValue;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType as DdbKeyType,
    KeysAndAttributes, PutRequest, ScalarAttributeType, TableDescription, TableStatus,
    WriteRequest,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mvi_core::kv::expr::Render;
use mvi_core::kv::{
    Condition, DeleteItem, Item, Key, KeyAttr, KeyType, Kv, MAX_BATCH_GET, MAX_BATCH_PUT,
    MAX_READ_DEPTH, PutItem, Query, ReturnValues, Scan, SortCondition, TableInfo, TableSpec,
    TransactWrite, TransactionCanceled, UpdateItem, Value, check_batch, check_condition,
    check_item, check_key, check_transaction, check_update, dynamodb_number, parse_dynamodb_number,
    validate_table_name,
};
use mvi_core::{ErrorKind, Op, Page, Result, Service};

use crate::error::map;

const fn op(name: &'static str) -> Op {
    Op::new(Service::Kv, name)
}

type Attrs = HashMap<String, AttributeValue>;

/// The KV service on Amazon DynamoDB (or a DynamoDB-compatible endpoint).
#[derive(Debug)]
pub struct DynamoKv {
    client: Client,
    specs: Mutex<HashMap<String, TableSpec>>,
}

impl DynamoKv {
    /// KV over a DynamoDB client.
    pub fn new(client: Client) -> Self {
        DynamoKv {
            client,
            specs: Mutex::new(HashMap::new()),
        }
    }

    fn forget(&self, table: &str) {
        self.specs.lock().expect("specs lock").remove(table);
    }

    /// Maps an SDK error, forgetting the table's schema if DynamoDB says it is gone.
    fn fail<E>(
        &self,
        op: Op,
        table: &str,
        err: aws_sdk_dynamodb::error::SdkError<E>,
    ) -> mvi_core::Error
    where
        E: aws_sdk_dynamodb::error::ProvideErrorMetadata
            + std::error::Error
            + Send
            + Sync
            + 'static,
    {
        let e = map(op, table, err);
        if e.kind() == ErrorKind::NotFound {
            self.forget(table);
        }
        e
    }

    /// The table's schema, after checking its name.
    async fn spec(&self, op: Op, table: &str) -> Result<TableSpec> {
        validate_table_name(op, table)?;
        if let Some(spec) = self.specs.lock().expect("specs lock").get(table) {
            return Ok(spec.clone());
        }
        let out = self
            .client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| self.fail(op, table, e))?;
        let desc = out
            .table
            .ok_or_else(|| op.internal(table, "DescribeTable answered no table"))?;
        let info = info(op, table, &desc)?;
        self.specs
            .lock()
            .expect("specs lock")
            .insert(table.to_owned(), info.spec.clone());
        Ok(info.spec)
    }
}

fn scalar(kind: KeyType) -> ScalarAttributeType {
    match kind {
        KeyType::Str => ScalarAttributeType::S,
        KeyType::Number => ScalarAttributeType::N,
        KeyType::Bytes => ScalarAttributeType::B,
    }
}

fn info(op: Op, table: &str, desc: &TableDescription) -> Result<TableInfo> {
    let types: HashMap<&str, KeyType> = desc
        .attribute_definitions()
        .iter()
        .filter_map(|d| {
            let kind = match d.attribute_type() {
                ScalarAttributeType::S => KeyType::Str,
                ScalarAttributeType::N => KeyType::Number,
                ScalarAttributeType::B => KeyType::Bytes,
                _ => return None,
            };
            Some((d.attribute_name(), kind))
        })
        .collect();
    let attr = |role: DdbKeyType| -> Result<Option<KeyAttr>> {
        let Some(el) = desc.key_schema().iter().find(|k| *k.key_type() == role) else {
            return Ok(None);
        };
        let kind = types.get(el.attribute_name()).copied().ok_or_else(|| {
            op.internal(table, format!("no type for key {:?}", el.attribute_name()))
        })?;
        Ok(Some(KeyAttr::new(el.attribute_name(), kind)))
    };
    let partition = attr(DdbKeyType::Hash)?
        .ok_or_else(|| op.internal(table, "the table has no partition key"))?;
    let mut spec = TableSpec::new(desc.table_name().unwrap_or(table), partition);
    if let Some(sort) = attr(DdbKeyType::Range)? {
        spec = spec.sort_key(sort);
    }
    let created = desc
        .creation_date_time()
        .and_then(|t| chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
        .unwrap_or_else(chrono::Utc::now);
    Ok(TableInfo {
        spec,
        item_count: desc.item_count().unwrap_or(0).max(0) as u64,
        created,
    })
}

fn to_attr(v: &Value) -> AttributeValue {
    match v {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Int(_) | Value::Float(_) => AttributeValue::N(dynamodb_number(v)),
        Value::Str(s) => AttributeValue::S(s.clone()),
        Value::Bytes(b) => AttributeValue::B(DdbBlob::new(b.to_vec())),
        Value::List(l) => AttributeValue::L(l.iter().map(to_attr).collect()),
        Value::Map(m) => {
            AttributeValue::M(m.iter().map(|(k, v)| (k.clone(), to_attr(v))).collect())
        }
    }
}

fn from_attr(op: Op, table: &str, a: &AttributeValue) -> Result<Value> {
    from_attr_at(op, table, a, 0)
}

/// `a` as a value, `depth` lists and maps down; deeper than reads go is refused, never
/// walked (DynamoDB stores at most 32 levels; another endpoint might not).
fn from_attr_at(op: Op, table: &str, a: &AttributeValue, depth: usize) -> Result<Value> {
    if depth > MAX_READ_DEPTH {
        return Err(op.internal(
            table,
            format!("an item nests lists and maps more than {MAX_READ_DEPTH} levels deep"),
        ));
    }
    Ok(match a {
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::N(n) => parse_dynamodb_number(n)
            .ok_or_else(|| op.internal(table, format!("unreadable number {n:?}")))?,
        AttributeValue::S(s) => Value::Str(s.clone()),
        AttributeValue::B(b) => Value::Bytes(bytes::Bytes::copy_from_slice(b.as_ref())),
        AttributeValue::L(l) => Value::List(
            l.iter()
                .map(|v| from_attr_at(op, table, v, depth + 1))
                .collect::<Result<_>>()?,
        ),
        AttributeValue::M(m) => Value::Map(
            m.iter()
                .map(|(k, v)| Ok((k.clone(), from_attr_at(op, table, v, depth + 1)?)))
                .collect::<Result<_>>()?,
        ),
        other => {
            return Err(op.internal(
                table,
                format!("attribute type mvi does not model: {other:?}"),
            ));
        }
    })
}

fn to_attrs(item: &Item) -> Attrs {
    item.iter().map(|(k, v)| (k.clone(), to_attr(v))).collect()
}

fn from_attrs(op: Op, table: &str, attrs: &Attrs) -> Result<Item> {
    attrs
        .iter()
        .map(|(k, v)| Ok((k.clone(), from_attr(op, table, v)?)))
        .collect()
}

fn key_attrs(spec: &TableSpec, key: &Key) -> Attrs {
    let mut m = Attrs::new();
    m.insert(spec.partition_key.name.clone(), to_attr(&key.partition));
    if let (Some(attr), Some(v)) = (&spec.sort_key, &key.sort) {
        m.insert(attr.name.clone(), to_attr(v));
    }
    m
}

/// Expressions of one request and their placeholders, as the SDK takes them.
#[derive(Default)]
struct Expressions {
    render: Render,
}

impl Expressions {
    /// The condition's text, if there is a condition.
    fn condition(&mut self, spec: &TableSpec, cond: &Condition) -> Option<String> {
        cond.to_expr(spec).map(|c| self.render.condition(&c))
    }

    /// The placeholders used so far (`None` when there are none: DynamoDB refuses empty maps).
    fn placeholders(self) -> (Option<HashMap<String, String>>, Option<Attrs>) {
        let Render { names, values, .. } = self.render;
        let names = (!names.is_empty()).then(|| names.into_iter().collect());
        let values = (!values.is_empty()).then(|| {
            values
                .iter()
                .map(|(k, v)| (k.clone(), to_attr(v)))
                .collect()
        });
        (names, values)
    }
}

fn return_values(r: ReturnValues) -> DdbReturnValue {
    match r {
        ReturnValues::None => DdbReturnValue::None,
        ReturnValues::AllOld => DdbReturnValue::AllOld,
        ReturnValues::UpdatedOld => DdbReturnValue::UpdatedOld,
        ReturnValues::AllNew => DdbReturnValue::AllNew,
        ReturnValues::UpdatedNew => DdbReturnValue::UpdatedNew,
    }
}

fn encode_cursor(op: Op, table: &str, key: &Attrs) -> Result<String> {
    let item = from_attrs(op, table, key)?;
    let json = serde_json::to_vec(&item).map_err(|e| op.internal(table, e))?;
    Ok(URL_SAFE_NO_PAD.encode(json))
}

fn decode_cursor(op: Op, table: &str, spec: &TableSpec, cursor: &str) -> Result<Attrs> {
    let bad = || op.invalid(table, format!("not a cursor of this table: {cursor:?}"));
    let json = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let item: Item = serde_json::from_slice(&json).map_err(|_| bad())?;
    let key = Key {
        partition: item
            .get(&spec.partition_key.name)
            .cloned()
            .ok_or_else(bad)?,
        sort: match &spec.sort_key {
            Some(a) => Some(item.get(&a.name).cloned().ok_or_else(bad)?),
            None => None,
        },
    };
    check_key(op, spec, &key).map_err(|_| bad())?;
    Ok(to_attrs(&item))
}

fn check_limit(op: Op, table: &str, limit: Option<usize>) -> Result<Option<i32>> {
    match limit {
        None => Ok(None),
        Some(0) => Err(op.invalid(table, "the page size must be at least 1")),
        Some(n) => Ok(Some(n.min(i32::MAX as usize) as i32)),
    }
}

/// A sort condition as a key-condition fragment on `#sk`, with its values.
fn sort_condition(
    op: Op,
    spec: &TableSpec,
    cond: &SortCondition,
) -> Result<(String, Vec<(&'static str, Value)>)> {
    let table = &spec.name;
    let attr = spec
        .sort_key
        .as_ref()
        .ok_or_else(|| op.invalid(table, "the table has no sort key"))?;
    let check = |v: &Value| -> Result<()> {
        if v.key_type() != Some(attr.kind) {
            return Err(op.invalid(
                table,
                format!(
                    "sort key {:?} is of type {:?}; the condition has {v:?}",
                    attr.name, attr.kind
                ),
            ));
        }
        Ok(())
    };
    let one = |expr: &str, v: &Value| -> Result<(String, Vec<(&'static str, Value)>)> {
        check(v)?;
        Ok((expr.to_owned(), vec![(":s1", v.clone())]))
    };
    match cond {
        SortCondition::Eq(v) => one("#sk = :s1", v),
        SortCondition::Lt(v) => one("#sk < :s1", v),
        SortCondition::Le(v) => one("#sk <= :s1", v),
        SortCondition::Gt(v) => one("#sk > :s1", v),
        SortCondition::Ge(v) => one("#sk >= :s1", v),
        SortCondition::Between(lo, hi) => {
            check(lo)?;
            check(hi)?;
            if lo.key_cmp(hi) == Some(std::cmp::Ordering::Greater) {
                return Err(op.invalid(table, "between: the lower bound is above the upper"));
            }
            Ok((
                "#sk BETWEEN :s1 AND :s2".to_owned(),
                vec![(":s1", lo.clone()), (":s2", hi.clone())],
            ))
        }
        SortCondition::BeginsWith(p) => {
            if attr.kind == KeyType::Number {
                return Err(op.invalid(table, "begins_with needs a string or binary sort key"));
            }
            one("begins_with(#sk, :s1)", p)
        }
    }
}

#[async_trait]
impl Kv for DynamoKv {
    async fn create_table(&self, spec: TableSpec) -> Result<TableInfo> {
        let op = op("create_table");
        let table = spec.name.clone();
        validate_table_name(op, &table)?;
        if spec.sort_key.as_ref().map(|s| &s.name) == Some(&spec.partition_key.name) {
            return Err(op.invalid(&table, "the sort key must differ from the partition key"));
        }
        let build = |name: &str, role: DdbKeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(role)
                .build()
                .map_err(|e| op.internal(&table, e))
        };
        let def = |attr: &KeyAttr| {
            AttributeDefinition::builder()
                .attribute_name(&attr.name)
                .attribute_type(scalar(attr.kind))
                .build()
                .map_err(|e| op.internal(&table, e))
        };
        let mut req = self
            .client
            .create_table()
            .table_name(&table)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(build(&spec.partition_key.name, DdbKeyType::Hash)?)
            .attribute_definitions(def(&spec.partition_key)?);
        if let Some(sort) = &spec.sort_key {
            req = req
                .key_schema(build(&sort.name, DdbKeyType::Range)?)
                .attribute_definitions(def(sort)?);
        }
        let out = req.send().await.map_err(|e| map(op, &table, e))?;
        let mut desc = out
            .table_description
            .ok_or_else(|| op.internal(&table, "CreateTable answered no table"))?;
        // AWS creates asynchronously: wait until the table is usable (moto is at once).
        for _ in 0..240 {
            if desc.table_status() != Some(&TableStatus::Creating) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            if let Some(d) = self
                .client
                .describe_table()
                .table_name(&table)
                .send()
                .await
                .map_err(|e| map(op, &table, e))?
                .table
            {
                desc = d;
            }
        }
        let info = info(op, &table, &desc)?;
        self.specs
            .lock()
            .expect("specs lock")
            .insert(table, info.spec.clone());
        Ok(info)
    }

    async fn delete_table(&self, table: &str) -> Result<()> {
        let op = op("delete_table");
        validate_table_name(op, table)?;
        self.forget(table);
        self.client
            .delete_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| self.fail(op, table, e))?;
        Ok(())
    }

    async fn describe_table(&self, table: &str) -> Result<TableInfo> {
        let op = op("describe_table");
        validate_table_name(op, table)?;
        let out = self
            .client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| self.fail(op, table, e))?;
        let desc = out
            .table
            .ok_or_else(|| op.internal(table, "DescribeTable answered no table"))?;
        info(op, table, &desc)
    }

    async fn list_tables(&self) -> Result<Vec<String>> {
        let op = op("list_tables");
        let mut names = Vec::new();
        let mut start: Option<String> = None;
        loop {
            let out = self
                .client
                .list_tables()
                .set_exclusive_start_table_name(start.take())
                .send()
                .await
                .map_err(|e| map(op, "", e))?;
            names.extend(out.table_names().iter().cloned());
            match out.last_evaluated_table_name {
                Some(last) => start = Some(last),
                None => break,
            }
        }
        names.sort();
        names.dedup();
        Ok(names)
    }

    async fn put_item(&self, req: PutItem) -> Result<()> {
        let op = op("put_item");
        let table = req.table.as_str();
        let spec = self.spec(op, table).await?;
        check_item(op, &spec, &req.item)?;
        check_condition(op, table, &req.condition)?;
        let mut call = self
            .client
            .put_item()
            .table_name(table)
            .set_item(Some(to_attrs(&req.item)));
        let mut e = Expressions::default();
        let cond = e.condition(&spec, &req.condition);
        let (names, values) = e.placeholders();
        call = call
            .set_condition_expression(cond)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values);
        call.send().await.map_err(|e| self.fail(op, table, e))?;
        Ok(())
    }

    async fn get_item(&self, table: &str, key: Key) -> Result<Option<Item>> {
        let op = op("get_item");
        let spec = self.spec(op, table).await?;
        check_key(op, &spec, &key)?;
        let out = self
            .client
            .get_item()
            .table_name(table)
            .set_key(Some(key_attrs(&spec, &key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.fail(op, table, e))?;
        out.item
            .as_ref()
            .map(|i| from_attrs(op, table, i))
            .transpose()
    }

    async fn delete_item(&self, req: DeleteItem) -> Result<Option<Item>> {
        let op = op("delete_item");
        let table = req.table.as_str();
        let spec = self.spec(op, table).await?;
        check_key(op, &spec, &req.key)?;
        check_condition(op, table, &req.condition)?;
        let mut call = self
            .client
            .delete_item()
            .table_name(table)
            .set_key(Some(key_attrs(&spec, &req.key)))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld);
        let mut e = Expressions::default();
        let cond = e.condition(&spec, &req.condition);
        let (names, values) = e.placeholders();
        call = call
            .set_condition_expression(cond)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values);
        let out = call.send().await.map_err(|e| self.fail(op, table, e))?;
        match out.attributes {
            Some(a) if !a.is_empty() => Ok(Some(from_attrs(op, table, &a)?)),
            _ => Ok(None),
        }
    }

    async fn query(&self, req: Query) -> Result<Page<Item>> {
        let op = op("query");
        let table = req.table.as_str();
        let spec = self.spec(op, table).await?;
        if req.partition.key_type() != Some(spec.partition_key.kind) {
            return Err(op.invalid(
                table,
                format!(
                    "partition key {:?} is of type {:?}; the query has {:?}",
                    spec.partition_key.name, spec.partition_key.kind, req.partition
                ),
            ));
        }
        // check_key covers emptiness and bad floats of the partition value.
        if spec.sort_key.is_none() {
            check_key(op, &spec, &Key::new(req.partition.clone()))?;
        }
        let limit = check_limit(op, table, req.limit)?;
        let mut expr = "#pk = :pk".to_owned();
        let mut names = HashMap::from([("#pk".to_owned(), spec.partition_key.name.clone())]);
        let mut values = HashMap::from([(":pk".to_owned(), to_attr(&req.partition))]);
        if let Some(cond) = &req.sort {
            let (frag, vals) = sort_condition(op, &spec, cond)?;
            expr.push_str(" AND ");
            expr.push_str(&frag);
            if let Some(sk) = &spec.sort_key {
                names.insert("#sk".to_owned(), sk.name.clone());
            }
            for (k, v) in vals {
                values.insert(k.to_owned(), to_attr(&v));
            }
        }
        let start = req
            .cursor
            .as_deref()
            .map(|c| decode_cursor(op, table, &spec, c))
            .transpose()?;
        let out = self
            .client
            .query()
            .table_name(table)
            .key_condition_expression(expr)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .scan_index_forward(!req.descending)
            .consistent_read(true)
            .set_limit(limit)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| self.fail(op, table, e))?;
        page(op, table, out.items(), out.last_evaluated_key())
    }

    async fn scan(&self, req: Scan) -> Result<Page<Item>> {
        let op = op("scan");
        let table = req.table.as_str();
        let spec = self.spec(op, table).await?;
        let limit = check_limit(op, table, req.limit)?;
        let start = req
            .cursor
            .as_deref()
            .map(|c| decode_cursor(op, table, &spec, c))
            .transpose()?;
        let out = self
            .client
            .scan()
            .table_name(table)
            .consistent_read(true)
            .set_limit(limit)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| self.fail(op, table, e))?;
        page(op, table, out.items(), out.last_evaluated_key())
    }

    async fn batch_get(&self, table: &str, keys: Vec<Key>) -> Result<Vec<Item>> {
        let op = op("batch_get");
        validate_table_name(op, table)?;
        check_batch(op, table, keys.len(), MAX_BATCH_GET, "keys")?;
        let spec = self.spec(op, table).await?;
        for key in &keys {
            check_key(op, &spec, key)?;
        }
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        // DynamoDB refuses duplicate keys in one request: ask for each key once.
        let ident = |k: &Key| serde_json::to_string(k).unwrap_or_default();
        let mut pending: Vec<Attrs> = Vec::new();
        let mut asked = std::collections::HashSet::new();
        for key in &keys {
            if asked.insert(ident(key)) {
                pending.push(key_attrs(&spec, key));
            }
        }
        let mut found: HashMap<String, Item> = HashMap::new();
        let mut delay = Duration::from_millis(50);
        while !pending.is_empty() {
            let ka = KeysAndAttributes::builder()
                .set_keys(Some(std::mem::take(&mut pending)))
                .consistent_read(true)
                .build()
                .map_err(|e| op.internal(table, e))?;
            let out = self
                .client
                .batch_get_item()
                .request_items(table, ka)
                .send()
                .await
                .map_err(|e| self.fail(op, table, e))?;
            for attrs in out
                .responses()
                .and_then(|r| r.get(table))
                .into_iter()
                .flatten()
            {
                let item = from_attrs(op, table, attrs)?;
                let key = Key {
                    partition: item
                        .get(&spec.partition_key.name)
                        .cloned()
                        .unwrap_or(Value::Null),
                    sort: spec
                        .sort_key
                        .as_ref()
                        .and_then(|a| item.get(&a.name).cloned()),
                };
                found.insert(ident(&key), item);
            }
            if let Some(rest) = out.unprocessed_keys().and_then(|u| u.get(table))
                && !rest.keys().is_empty()
            {
                pending = rest.keys().to_vec();
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
        Ok(keys
            .iter()
            .filter_map(|k| found.get(&ident(k)).cloned())
            .collect())
    }

    async fn batch_put(&self, table: &str, items: Vec<Item>) -> Result<()> {
        let op = op("batch_put");
        validate_table_name(op, table)?;
        check_batch(op, table, items.len(), MAX_BATCH_PUT, "items")?;
        let spec = self.spec(op, table).await?;
        for item in &items {
            check_item(op, &spec, item)?;
        }
        if items.is_empty() {
            return Ok(());
        }
        let mut pending = items
            .iter()
            .map(|item| {
                let put = PutRequest::builder()
                    .set_item(Some(to_attrs(item)))
                    .build()
                    .map_err(|e| op.internal(table, e))?;
                Ok(WriteRequest::builder().put_request(put).build())
            })
            .collect::<Result<Vec<_>>>()?;
        let mut delay = Duration::from_millis(50);
        while !pending.is_empty() {
            let out = self
                .client
                .batch_write_item()
                .request_items(table, std::mem::take(&mut pending))
                .send()
                .await
                .map_err(|e| self.fail(op, table, e))?;
            if let Some(rest) = out.unprocessed_items().and_then(|u| u.get(table))
                && !rest.is_empty()
            {
                pending = rest.to_vec();
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
        Ok(())
    }

    async fn update_item(&self, req: UpdateItem) -> Result<Option<Item>> {
        let op = op("update_item");
        let table = req.table.as_str();
        let spec = self.spec(op, table).await?;
        check_update(op, &spec, &req)?;
        let mut e = Expressions::default();
        let update = e.render.update(&req.update);
        let cond = e.condition(&spec, &req.condition);
        let (names, values) = e.placeholders();
        let out = self
            .client
            .update_item()
            .table_name(table)
            .set_key(Some(key_attrs(&spec, &req.key)))
            .update_expression(update)
            .set_condition_expression(cond)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .return_values(return_values(req.returns))
            .send()
            .await
            .map_err(|e| self.fail(op, table, e))?;
        match out.attributes {
            Some(a) if req.returns != ReturnValues::None && !a.is_empty() => {
                Ok(Some(from_attrs(op, table, &a)?))
            }
            _ => Ok(None),
        }
    }

    async fn transact_write(&self, writes: Vec<TransactWrite>) -> Result<()> {
        use aws_sdk_dynamodb::types::{
            ConditionCheck, Delete as DdbDelete, Put as DdbPut, TransactWriteItem,
            Update as DdbUpdate,
        };
        let op = op("transact_write");
        check_transaction(op, &writes)?;
        let mut items = Vec::with_capacity(writes.len());
        for w in &writes {
            let table = w.table();
            let spec = self.spec(op, table).await?;
            check_condition(op, table, w.condition())?;
            let mut e = Expressions::default();
            let built = match w {
                TransactWrite::Put(p) => {
                    check_item(op, &spec, &p.item)?;
                    let cond = e.condition(&spec, &p.condition);
                    let (names, values) = e.placeholders();
                    DdbPut::builder()
                        .table_name(table)
                        .set_item(Some(to_attrs(&p.item)))
                        .set_condition_expression(cond)
                        .set_expression_attribute_names(names)
                        .set_expression_attribute_values(values)
                        .build()
                        .map(|x| TransactWriteItem::builder().put(x).build())
                }
                TransactWrite::Delete(d) => {
                    check_key(op, &spec, &d.key)?;
                    let cond = e.condition(&spec, &d.condition);
                    let (names, values) = e.placeholders();
                    DdbDelete::builder()
                        .table_name(table)
                        .set_key(Some(key_attrs(&spec, &d.key)))
                        .set_condition_expression(cond)
                        .set_expression_attribute_names(names)
                        .set_expression_attribute_values(values)
                        .build()
                        .map(|x| TransactWriteItem::builder().delete(x).build())
                }
                TransactWrite::Update(u) => {
                    check_update(op, &spec, u)?;
                    let update = e.render.update(&u.update);
                    let cond = e.condition(&spec, &u.condition);
                    let (names, values) = e.placeholders();
                    DdbUpdate::builder()
                        .table_name(table)
                        .set_key(Some(key_attrs(&spec, &u.key)))
                        .update_expression(update)
                        .set_condition_expression(cond)
                        .set_expression_attribute_names(names)
                        .set_expression_attribute_values(values)
                        .build()
                        .map(|x| TransactWriteItem::builder().update(x).build())
                }
                TransactWrite::Check { key, condition, .. } => {
                    check_key(op, &spec, key)?;
                    let Some(cond) = e.condition(&spec, condition) else {
                        return Err(op.invalid(table, "a condition check needs a condition"));
                    };
                    let (names, values) = e.placeholders();
                    ConditionCheck::builder()
                        .table_name(table)
                        .set_key(Some(key_attrs(&spec, key)))
                        .condition_expression(cond)
                        .set_expression_attribute_names(names)
                        .set_expression_attribute_values(values)
                        .build()
                        .map(|x| TransactWriteItem::builder().condition_check(x).build())
                }
            };
            items.push(built.map_err(|e| op.internal(table, e))?);
        }
        let sent = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        let err = match sent {
            Ok(_) => return Ok(()),
            Err(err) => err,
        };
        let reasons = err
            .as_service_error()
            .and_then(|e| match e {
                aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c) => {
                    Some(c.cancellation_reasons())
                }
                _ => None,
            })
            .map(|reasons| {
                reasons
                    .iter()
                    .map(|r| match r.code() {
                        None | Some("None") => None,
                        Some(code) => Some((
                            code.to_owned(),
                            r.message().unwrap_or_default().to_owned(),
                        )),
                    })
                    .collect::<Vec<_>>()
            });
        match reasons {
            Some(reasons)
                if reasons
                    .iter()
                    .flatten()
                    .any(|(code, _)| code == "ConditionalCheckFailed") =>
            {
                let canceled = TransactionCanceled { reasons };
                Err(op
                    .precondition("transaction", canceled.to_string())
                    .with_source(canceled))
            }
            _ => Err(map(op, "transaction", err)),
        }
    }
}

fn page(op: Op, table: &str, items: &[Attrs], last: Option<&Attrs>) -> Result<Page<Item>> {
    let items = items
        .iter()
        .map(|i| from_attrs(op, table, i))
        .collect::<Result<Vec<_>>>()?;
    let next = match last {
        Some(k) if !k.is_empty() => Some(encode_cursor(op, table, k)?),
        _ => None,
    };
    Ok(Page { items, next })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_roundtrip() {
        for v in [
            Value::Int(0),
            Value::Int(i64::MAX),
            Value::Int(i64::MIN),
            Value::Float(0.25),
            Value::Float(-0.5),
            Value::Float(1.5e300),
            Value::Float(2.5e-10),
        ] {
            assert_eq!(
                parse_dynamodb_number(&dynamodb_number(&v)),
                Some(v.clone()),
                "{v:?}"
            );
        }
        assert_eq!(parse_dynamodb_number("2.0"), Some(Value::Int(2)));
        assert_eq!(parse_dynamodb_number("1E+2"), Some(Value::Int(100)));
        assert_eq!(parse_dynamodb_number("1e19"), Some(Value::Float(1e19)));
    }

    #[test]
    fn cursors_roundtrip_and_refuse_garbage() {
        let spec = TableSpec::new("tbl", KeyAttr::new("pk", KeyType::Str))
            .sort_key(KeyAttr::new("sk", KeyType::Number));
        let key = key_attrs(&spec, &Key::with_sort("a", 7));
        let c = encode_cursor(op("query"), "tbl", &key).unwrap();
        assert_eq!(decode_cursor(op("query"), "tbl", &spec, &c).unwrap(), key);
        let e = decode_cursor(op("query"), "tbl", &spec, "not a cursor!").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    }
}
