//! The DynamoDB door: DynamoDB's JSON protocol over the local KV service.
//!
//! Items travel as DynamoDB's attribute values (`{"S": ..}`, `{"N": ..}`, `{"M": ..}`, ...)
//! and become [`Value`]s; expressions are parsed with core's [`expr`] parser (so a reserved
//! word, an undefined or unused placeholder is refused as DynamoDB refuses it) and evaluated
//! by the KV service inside its write transaction. Filters and projections are applied here to
//! each page the KV service returns, after `Limit`, as DynamoDB applies them; a page's
//! `LastEvaluatedKey` is the key of its last item, which the next request's
//! `ExclusiveStartKey` continues after.
//!
//! Refused with a ValidationException naming what is not supported: sets (`SS`, `NS`, `BS`),
//! secondary indexes, parallel scans, the legacy parameters (`AttributesToGet`, `Expected`,
//! `KeyConditions`, `ScanFilter`, `AttributeUpdates`), and `ReturnValues` other than `NONE`
//! on PutItem.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use mvi_core::kv::expr::{self, Bindings, Cmp, Cond, Operand, Path};
use mvi_core::kv::{
    Condition, DeleteItem, Item, Key, KeyAttr, KeyType, Kv, MAX_BATCH_GET, PutItem, Query,
    ReturnValues, Scan, SortCondition, TableInfo, TableSpec, TransactWrite, TransactionCanceled,
    UpdateItem, Value, dynamodb_number, parse_dynamodb_number,
};
use mvi_core::{Error, ErrorKind, Page};
use serde_json::{Map, Value as Json, json};

use super::json::{Caller, Input, JsonError, JsonResult};

/// The most writes in one BatchWriteItem (DynamoDB's limit).
const MAX_BATCH_WRITE: usize = 25;
/// The most tables ListTables returns at once (DynamoDB's limit).
const MAX_LIST_TABLES: usize = 100;

/// Runs one DynamoDB operation.
pub(crate) async fn call(kv: &dyn Kv, caller: &Caller, operation: &str, input: Json) -> JsonResult {
    let req = Input(input);
    match operation {
        "CreateTable" => create_table(kv, caller, &req).await,
        "DescribeTable" => {
            let table = req.table(caller, "dynamodb:DescribeTable")?;
            let info = kv.describe_table(&table).await.map_err(error)?;
            Ok(json!({ "Table": describe(caller, &info, "ACTIVE") }))
        }
        "DeleteTable" => {
            let table = req.table(caller, "dynamodb:DeleteTable")?;
            let info = kv.describe_table(&table).await.map_err(error)?;
            kv.delete_table(&table).await.map_err(error)?;
            Ok(json!({ "TableDescription": describe(caller, &info, "DELETING") }))
        }
        "ListTables" => list_tables(kv, caller, &req).await,
        "PutItem" => put_item(kv, caller, &req).await,
        "GetItem" => get_item(kv, caller, &req).await,
        "DeleteItem" => delete_item(kv, caller, &req).await,
        "UpdateItem" => update_item(kv, caller, &req).await,
        "Query" => query(kv, caller, &req).await,
        "Scan" => scan(kv, caller, &req).await,
        "BatchGetItem" => batch_get(kv, caller, &req).await,
        "BatchWriteItem" => batch_write(kv, caller, &req).await,
        "TransactWriteItems" => transact_write(kv, caller, &req).await,
        other => Err(JsonError::new(
            "UnknownOperationException",
            format!("this endpoint does not serve the DynamoDB operation {other:?}"),
        )),
    }
}

/// DynamoDB's answer to a KV error.
fn error(e: Error) -> JsonError {
    if let Some(canceled) = TransactionCanceled::of(&e) {
        let reasons: Vec<Json> = canceled
            .reasons
            .iter()
            .map(|r| match r {
                Some((code, message)) => json!({ "Code": code, "Message": message }),
                None => json!({ "Code": "None" }),
            })
            .collect();
        return JsonError {
            extra: Some(("CancellationReasons", Json::Array(reasons))),
            ..JsonError::new("TransactionCanceledException", canceled.to_string())
        };
    }
    match e.kind() {
        ErrorKind::NotFound => JsonError::new(
            "ResourceNotFoundException",
            format!("Requested resource not found: {}", e.message()),
        ),
        ErrorKind::AlreadyExists => JsonError::new("ResourceInUseException", e.message()),
        ErrorKind::PreconditionFailed => JsonError::new(
            "ConditionalCheckFailedException",
            "The conditional request failed",
        ),
        _ => JsonError::of_kind(&e),
    }
}

impl Input {
    /// The table the request names, after checking the caller may do `action` on it.
    fn table(&self, caller: &Caller, action: &str) -> Result<String, JsonError> {
        let table = self.required_str("TableName")?.to_owned();
        caller.require(action, &caller.account.table_arn(&table))?;
        Ok(table)
    }

    /// Refuses the legacy parameters DynamoDB replaced with expressions.
    fn no_legacy(&self, fields: &[&str]) -> Result<(), JsonError> {
        match fields.iter().find(|f| self.get(f).is_some()) {
            Some(f) => Err(JsonError::validation(format!(
                "the legacy parameter {f} is not supported by this endpoint: use expressions"
            ))),
            None => Ok(()),
        }
    }

    /// The placeholders (`ExpressionAttributeNames`, `ExpressionAttributeValues`).
    fn bindings(&self) -> Result<Bindings, JsonError> {
        let names = match self.get("ExpressionAttributeNames") {
            None => BTreeMap::new(),
            Some(Json::Object(m)) => m
                .iter()
                .map(|(k, v)| match v {
                    Json::String(s) => Ok((k.clone(), s.clone())),
                    _ => Err(JsonError::serialization(
                        "ExpressionAttributeNames maps placeholders to strings",
                    )),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(JsonError::serialization(
                    "ExpressionAttributeNames must be an object",
                ));
            }
        };
        let values = match self.get("ExpressionAttributeValues") {
            None => BTreeMap::new(),
            Some(v) => attrs(v)?.into_iter().collect(),
        };
        if self.get("ExpressionAttributeNames").is_some() && names.is_empty() {
            return Err(JsonError::validation(
                "ExpressionAttributeNames can only be specified when using expressions and \
                 must not be empty",
            ));
        }
        if self.get("ExpressionAttributeValues").is_some() && values.is_empty() {
            return Err(JsonError::validation(
                "ExpressionAttributeValues must not be empty",
            ));
        }
        Ok(Bindings::new(names, values))
    }

    fn condition(
        &self,
        field: &'static str,
        bind: &mut Bindings,
    ) -> Result<Option<Cond>, JsonError> {
        self.str(field)?
            .map(|src| expr::parse_condition(field, src, bind).map_err(expr_error))
            .transpose()
    }

    fn projection(&self, bind: &mut Bindings) -> Result<Option<Vec<Path>>, JsonError> {
        self.str("ProjectionExpression")?
            .map(|src| expr::parse_projection(src, bind).map_err(expr_error))
            .transpose()
    }

    fn returns(&self, allowed: &[&str]) -> Result<ReturnValues, JsonError> {
        let r = self.str("ReturnValues")?.unwrap_or("NONE");
        if !allowed.contains(&r) {
            return Err(JsonError::validation(format!(
                "ReturnValues {r:?} is not valid here; it takes one of {}",
                allowed.join(", ")
            )));
        }
        Ok(match r {
            "ALL_OLD" => ReturnValues::AllOld,
            "UPDATED_OLD" => ReturnValues::UpdatedOld,
            "ALL_NEW" => ReturnValues::AllNew,
            "UPDATED_NEW" => ReturnValues::UpdatedNew,
            _ => ReturnValues::None,
        })
    }
}

fn expr_error(e: expr::ExprError) -> JsonError {
    JsonError::validation(e.0)
}

/// Every placeholder given was used (checked after all of a request's expressions are read).
fn all_used(bind: &Bindings) -> Result<(), JsonError> {
    bind.check_all_used().map_err(expr_error)
}

/// Reads one attribute value.
fn attr(v: &Json) -> Result<Value, JsonError> {
    let Json::Object(m) = v else {
        return Err(JsonError::serialization(format!(
            "an attribute value must be an object such as {{\"S\": \"text\"}}, not {v}"
        )));
    };
    let mut fields = m.iter();
    let (Some((kind, inner)), None) = (fields.next(), fields.next()) else {
        return Err(JsonError::validation(
            "Supplied AttributeValue has more than one datatypes set, must contain exactly one \
             of the supported datatypes",
        ));
    };
    let wrong =
        || JsonError::serialization(format!("the {kind} attribute value {inner} is mistyped"));
    Ok(match (kind.as_str(), inner) {
        ("S", Json::String(s)) => Value::Str(s.clone()),
        ("N", Json::String(n)) => parse_dynamodb_number(n).ok_or_else(|| {
            JsonError::validation(format!(
                "The parameter cannot be converted to a numeric value: {n}"
            ))
        })?,
        ("B", Json::String(b)) => Value::Bytes(
            BASE64
                .decode(b)
                .map_err(|_| JsonError::serialization("a B attribute value must be base64"))?
                .into(),
        ),
        ("BOOL", Json::Bool(b)) => Value::Bool(*b),
        ("NULL", Json::Bool(true)) => Value::Null,
        ("NULL", Json::Bool(false)) => {
            return Err(JsonError::validation(
                "One or more parameter values were invalid: Null attribute value types must \
                 have the value of true",
            ));
        }
        ("L", Json::Array(l)) => Value::List(l.iter().map(attr).collect::<Result<_, _>>()?),
        ("M", Json::Object(_)) => Value::Map(attrs(inner)?),
        ("SS" | "NS" | "BS", _) => {
            return Err(JsonError::validation(format!(
                "set attribute values ({kind}) are not supported by this endpoint: use a list (L)"
            )));
        }
        ("S" | "N" | "B" | "BOOL" | "NULL" | "L" | "M", _) => return Err(wrong()),
        (other, _) => {
            return Err(JsonError::serialization(format!(
                "unknown attribute value type {other:?}"
            )));
        }
    })
}

/// Reads a map of attribute values (an item, a key).
fn attrs(v: &Json) -> Result<Item, JsonError> {
    let Json::Object(m) = v else {
        return Err(JsonError::serialization(format!(
            "expected a map of attribute values, not {v}"
        )));
    };
    m.iter().map(|(k, v)| Ok((k.clone(), attr(v)?))).collect()
}

/// Writes one attribute value.
fn to_json(v: &Value) -> Json {
    match v {
        Value::Null => json!({ "NULL": true }),
        Value::Bool(b) => json!({ "BOOL": b }),
        Value::Int(_) | Value::Float(_) => json!({ "N": dynamodb_number(v) }),
        Value::Str(s) => json!({ "S": s }),
        Value::Bytes(b) => json!({ "B": BASE64.encode(b) }),
        Value::List(l) => json!({ "L": l.iter().map(to_json).collect::<Vec<_>>() }),
        Value::Map(m) => json!({ "M": item_json(m) }),
    }
}

fn item_json(item: &Item) -> Json {
    Json::Object(item.iter().map(|(k, v)| (k.clone(), to_json(v))).collect())
}

/// A key map as a [`Key`] of a table keyed as `spec`: exactly its key attributes.
fn key_of(spec: &TableSpec, map: &Item) -> Result<Key, JsonError> {
    let mismatch = || JsonError::validation("The provided key element does not match the schema");
    let expected = 1 + usize::from(spec.sort_key.is_some());
    if map.len() != expected {
        return Err(mismatch());
    }
    let partition = map.get(&spec.partition_key.name).ok_or_else(mismatch)?;
    let sort = match &spec.sort_key {
        Some(s) => Some(map.get(&s.name).ok_or_else(mismatch)?.clone()),
        None => None,
    };
    Ok(Key {
        partition: partition.clone(),
        sort,
    })
}

fn key_json(spec: &TableSpec, item: &Item) -> Json {
    let mut m = Map::new();
    for attr in std::iter::once(&spec.partition_key).chain(spec.sort_key.as_ref()) {
        if let Some(v) = item.get(&attr.name) {
            m.insert(attr.name.clone(), to_json(v));
        }
    }
    Json::Object(m)
}

async fn spec(kv: &dyn Kv, table: &str) -> Result<TableSpec, JsonError> {
    Ok(kv.describe_table(table).await.map_err(error)?.spec)
}

fn describe(caller: &Caller, info: &TableInfo, status: &str) -> Json {
    let spec = &info.spec;
    let type_name = |k: KeyType| match k {
        KeyType::Str => "S",
        KeyType::Number => "N",
        KeyType::Bytes => "B",
    };
    let mut schema = vec![json!({ "AttributeName": spec.partition_key.name, "KeyType": "HASH" })];
    let mut defs = vec![json!({
        "AttributeName": spec.partition_key.name,
        "AttributeType": type_name(spec.partition_key.kind),
    })];
    if let Some(s) = &spec.sort_key {
        schema.push(json!({ "AttributeName": s.name, "KeyType": "RANGE" }));
        defs.push(json!({ "AttributeName": s.name, "AttributeType": type_name(s.kind) }));
    }
    json!({
        "TableName": spec.name,
        "TableArn": caller.account.table_arn(&spec.name),
        "TableStatus": status,
        "KeySchema": schema,
        "AttributeDefinitions": defs,
        "ItemCount": info.item_count,
        "TableSizeBytes": 0,
        "CreationDateTime": info.created.timestamp_millis() as f64 / 1000.0,
        "BillingModeSummary": { "BillingMode": "PAY_PER_REQUEST" },
        "ProvisionedThroughput": {
            "NumberOfDecreasesToday": 0, "ReadCapacityUnits": 0, "WriteCapacityUnits": 0
        },
    })
}

async fn create_table(kv: &dyn Kv, caller: &Caller, req: &Input) -> JsonResult {
    let table = req.table(caller, "dynamodb:CreateTable")?;
    if let Some(f) = ["GlobalSecondaryIndexes", "LocalSecondaryIndexes"]
        .iter()
        .find(|f| req.get(f).is_some())
    {
        return Err(JsonError::validation(format!(
            "{f} are not supported by this endpoint"
        )));
    }
    let list = |field: &str| -> Result<Vec<(String, String)>, JsonError> {
        let (a, b) = match field {
            "KeySchema" => ("AttributeName", "KeyType"),
            _ => ("AttributeName", "AttributeType"),
        };
        req.get(field)
            .and_then(Json::as_array)
            .ok_or_else(|| JsonError::validation(format!("{field} is required")))?
            .iter()
            .map(|e| {
                let name = e.get(a).and_then(Json::as_str);
                let kind = e.get(b).and_then(Json::as_str);
                match (name, kind) {
                    (Some(n), Some(k)) => Ok((n.to_owned(), k.to_owned())),
                    _ => Err(JsonError::serialization(format!(
                        "each of {field} has {a} and {b}"
                    ))),
                }
            })
            .collect()
    };
    let schema = list("KeySchema")?;
    let defs = list("AttributeDefinitions")?;
    let kind_of = |name: &str| -> Result<KeyType, JsonError> {
        match defs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, k)| k.as_str())
        {
            Some("S") => Ok(KeyType::Str),
            Some("N") => Ok(KeyType::Number),
            Some("B") => Ok(KeyType::Bytes),
            Some(other) => Err(JsonError::validation(format!(
                "Member must satisfy enum value set: [B, N, S]; got {other:?}"
            ))),
            None => Err(JsonError::validation(format!(
                "One or more parameter values were invalid: Some index key attributes are not \
                 defined in AttributeDefinitions. Keys: [{name}]"
            ))),
        }
    };
    let key = |role: &str| {
        schema
            .iter()
            .find(|(_, k)| k == role)
            .map(|(n, _)| n.as_str())
    };
    let (Some(hash), true) = (key("HASH"), schema.len() <= 2 && !schema.is_empty()) else {
        return Err(JsonError::validation(
            "KeySchema has one HASH key and at most one RANGE key",
        ));
    };
    if defs.len() != schema.len() {
        return Err(JsonError::validation(
            "One or more parameter values were invalid: Number of attributes in KeySchema does \
             not exactly match number of attributes defined in AttributeDefinitions",
        ));
    }
    let mut spec = TableSpec::new(&table, KeyAttr::new(hash, kind_of(hash)?));
    if schema.len() == 2 {
        let range = key("RANGE").ok_or_else(|| {
            JsonError::validation("KeySchema has one HASH key and at most one RANGE key")
        })?;
        spec = spec.sort_key(KeyAttr::new(range, kind_of(range)?));
    }
    let info = kv.create_table(spec).await.map_err(|e| match e.kind() {
        ErrorKind::AlreadyExists => JsonError::new(
            "ResourceInUseException",
            format!("Table already exists: {table}"),
        ),
        _ => error(e),
    })?;
    Ok(json!({ "TableDescription": describe(caller, &info, "ACTIVE") }))
}

async fn list_tables(kv: &dyn Kv, caller: &Caller, req: &Input) -> JsonResult {
    caller.require("dynamodb:ListTables", "*")?;
    let limit = req
        .limit("Limit")?
        .unwrap_or(MAX_LIST_TABLES)
        .min(MAX_LIST_TABLES);
    let after = req.str("ExclusiveStartTableName")?;
    let names = kv.list_tables().await.map_err(error)?;
    let rest: Vec<&String> = names
        .iter()
        .filter(|n| after.is_none_or(|a| n.as_str() > a))
        .collect();
    let page: Vec<&String> = rest.iter().take(limit).copied().collect();
    let mut out = json!({ "TableNames": page });
    if rest.len() > limit
        && let (Some(last), Some(map)) = (page.last(), out.as_object_mut())
    {
        map.insert("LastEvaluatedTableName".into(), json!(last));
    }
    Ok(out)
}

async fn put_item(kv: &dyn Kv, caller: &Caller, req: &Input) -> JsonResult {
    let table = req.table(caller, "dynamodb:PutItem")?;
    req.no_legacy(&["Expected", "ConditionalOperator"])?;
    if req.returns(&["NONE", "ALL_OLD"])? != ReturnValues::None {
        return Err(JsonError::validation(
            "ReturnValues ALL_OLD on PutItem is not supported by this endpoint",
        ));
    }
    let item = attrs(
        req.get("Item")
            .ok_or_else(|| JsonError::validation("Item is required"))?,
    )?;
    let mut bind = req.bindings()?;
    let cond = req.condition("ConditionExpression", &mut bind)?;
    all_used(&bind)?;
    let mut put = PutItem::new(table, item);
    if let Some(c) = cond {
        put = put.condition(Condition::Expr(c));
    }
    kv.put_item(put).await.map_err(error)?;
    Ok(json!({}))
}

async fn get_item(kv: &dyn Kv, caller: &Caller, req: &Input) -> JsonResult {
    let table = req.table(caller, "dynamodb:GetItem")?;
    req.no_legacy(&["AttributesToGet"])?;
    let spec = spec(kv, &table).await?;
    let key = key_of(
        &spec,
        &attrs(
            req.get("Key")
                .ok_or_else(|| JsonError::validation("Key is required"))?,
        )?,
    )?;
    let mut bind = req.bindings()?;
    let projection = req.projection(&mut bind)?;
    all_used(&bind)?;
    let item = kv.get_item(&table, key).await.map_err(error)?;
    Ok(match item {
        Some(item) => {
            let item = match &projection {
                Some(p) => expr::project(&item, p),
                None => item,
            };
            json!({ "Item": item_json(&item) })
        }
        None => json!({}),
    })
}

async fn delete_item(kv: &dyn Kv, caller: &Caller, req: &Input) -> JsonResult {
    let table = req.table(caller, "dynamodb:DeleteItem")?;
    req.no_legacy(&["Expected", "ConditionalOperator"])?;
    let returns = req.returns(&["NONE", "ALL_OLD"])?;
    let spec = spec(kv, &table).await?;
    let key = key_of(
        &spec,
        &attrs(
            req.get("Key")
                .ok_or_else(|| JsonError::validation("Key is required"))?,
        )?,
    )?;
    let mut bind = req.bindings()?;
    let cond = req.condition("ConditionExpression", &mut bind)?;
    all_used(&bind)?;
    let mut del = DeleteItem::new(table, key);
    if let Some(c) = cond {
        del = del.condition(Condition::Expr(c));
    }
    let old = kv.delete_item(del).await.map_err(error)?;
    Ok(match (returns, old) {
        (ReturnValues::AllOld, Some(old)) => json!({ "Attributes": item_json(&old) }),
        _ => json!({}),
    })
}

/// An UpdateItem (or a transaction's Update) as a core update.
fn update_of(spec: &TableSpec, req: &Input, bind: &mut Bindings) -> Result<UpdateItem, JsonError> {
    req.no_legacy(&["AttributeUpdates", "Expected", "ConditionalOperator"])?;
    let key = key_of(
        spec,
        &attrs(
            req.get("Key")
                .ok_or_else(|| JsonError::validation("Key is required"))?,
        )?,
    )?;
    let src = req
        .str("UpdateExpression")?
        .ok_or_else(|| JsonError::validation("UpdateExpression is required by this endpoint"))?;
    let update = expr::parse_update(src, bind).map_err(expr_error)?;
    let mut out = UpdateItem::new(&spec.name, key, update);
    if let Some(c) = req.condition("ConditionExpression", bind)? {
        out = out.condition(Condition::Expr(c));
    }
    Ok(out)
}

async fn update_item(kv: &dyn Kv, caller: &Caller, req: &Input) -> JsonResult {
    let table = req.table(caller, "dynamodb:UpdateItem")?;
    let returns = req.returns(&["NONE", "ALL_OLD", "UPDATED_OLD", "ALL_NEW", "UPDATED_NEW"])?;
    let spec = spec(kv, &table).await?;
    let mut bind = req.bindings()?;
    let update = update_of(&spec, req, &mut bind)?.returns(returns);
    all_used(&bind)?;
    let out = kv.update_item(update).await.map_err(error)?;
    Ok(match out {
        Some(item) => json!({ "Attributes": item_json(&item) }),
        None => json!({}),
    })
}

/// A KeyConditionExpression as a partition value and a sort condition.
fn key_condition(
    spec: &TableSpec,
    cond: Cond,
) -> Result<(Value, Option<SortCondition>), JsonError> {
    let unsupported = || JsonError::validation("Query key condition not supported");
    let parts = match cond {
        Cond::And(parts) if parts.len() == 2 => parts,
        other => vec![other],
    };
    let is_attr = |o: &Operand, name: &str| matches!(o, Operand::Path(p) if *p == Path::attr(name));
    let sort_name = spec.sort_key.as_ref().map(|s| s.name.as_str());
    let (mut partition, mut sort) = (None, None);
    for part in parts {
        match part {
            Cond::Compare(a, Cmp::Eq, Operand::Value(v))
                if is_attr(&a, &spec.partition_key.name) =>
            {
                if partition.replace(v).is_some() {
                    return Err(unsupported());
                }
            }
            Cond::Compare(a, cmp, Operand::Value(v))
                if sort_name.is_some_and(|s| is_attr(&a, s)) =>
            {
                let c = match cmp {
                    Cmp::Eq => SortCondition::Eq(v),
                    Cmp::Lt => SortCondition::Lt(v),
                    Cmp::Le => SortCondition::Le(v),
                    Cmp::Gt => SortCondition::Gt(v),
                    Cmp::Ge => SortCondition::Ge(v),
                    Cmp::Ne => return Err(unsupported()),
                };
                if sort.replace(c).is_some() {
                    return Err(unsupported());
                }
            }
            Cond::Between(a, Operand::Value(lo), Operand::Value(hi))
                if sort_name.is_some_and(|s| is_attr(&a, s)) =>
            {
                if sort.replace(SortCondition::Between(lo, hi)).is_some() {
                    return Err(unsupported());
                }
            }
            Cond::BeginsWith(p, Operand::Value(v))
                if sort_name.is_some_and(|s| p == Path::attr(s)) =>
            {
                if sort.replace(SortCondition::BeginsWith(v)).is_some() {
                    return Err(unsupported());
                }
            }
            _ => return Err(unsupported()),
        }
    }
    let partition = partition.ok_or_else(|| {
        JsonError::validation(format!(
            "Query condition missed key schema element: {}",
            spec.partition_key.name
        ))
    })?;
    Ok((partition, sort))
}

/// The cursor of the KV service that continues after `ExclusiveStartKey`.
fn start_after(spec: &TableSpec, req: &Input) -> Result<Option<String>, JsonError> {
    req.get("ExclusiveStartKey")
        .map(|k| Ok(crate::kv::cursor_after(&key_of(spec, &attrs(k)?)?)))
        .transpose()
}

/// A page as DynamoDB answers it: filtered and projected items, counts, the last key.
fn page_json(
    spec: &TableSpec,
    req: &Input,
    page: Page<Item>,
    filter: Option<&Cond>,
    projection: Option<&[Path]>,
) -> Result<Json, JsonError> {
    let scanned = page.items.len();
    let last = page
        .next
        .is_some()
        .then(|| page.items.last().map(|i| key_json(spec, i)))
        .flatten();
    let kept: Vec<Item> = page
        .items
        .into_iter()
        .filter(|i| filter.is_none_or(|f| f.holds(Some(i))))
        .collect();
    let count = req.str("Select")?.unwrap_or("ALL_ATTRIBUTES");
    let mut out = Map::new();
    out.insert("Count".into(), json!(kept.len()));
    out.insert("ScannedCount".into(), json!(scanned));
    match count {
        "COUNT" => {}
        "ALL_ATTRIBUTES" | "SPECIFIC_ATTRIBUTES" => {
            let items: Vec<Json> = kept
                .iter()
                .map(|i| match projection {
                    Some(p) => item_json(&expr::project(i, p)),
                    None => item_json(i),
                })
                .collect();
            out.insert("Items".into(), Json::Array(items));
        }
        other => {
            return Err(JsonError::validation(format!(
                "Select {other:?} is not supported by this endpoint (no indexes)"
            )));
        }
    }
    if let Some(last) = last {
        out.insert("LastEvaluatedKey".into(), last);
    }
    Ok(Json::Object(out))
}

async fn query(kv: &dyn Kv, caller: &Caller, req: &Input) -> JsonResult {
    let table = req.table(caller, "dynamodb:Query")?;
    req.no_legacy(&[
        "KeyConditions",
        "QueryFilter",
        "AttributesToGet",
        "ConditionalOperator",
    ])?;
    if req.get("IndexName").is_some() {
        return Err(JsonError::validation(
            "secondary indexes are not supported by this endpoint",
        ));
    }
    let spec = spec(kv, &table).await?;
    let mut bind = req.bindings()?;
    let key_cond = req
        .condition("KeyConditionExpression", &mut bind)?
        .ok_or_else(|| {
            JsonError::validation(
                "Either the KeyConditions or KeyConditionExpression parameter must be specified \
                 in the request.",
            )
        })?;
    let filter = req.condition("FilterExpression", &mut bind)?;
    let projection = req.projection(&mut bind)?;
    all_used(&bind)?;
    let (partition, sort) = key_condition(&spec, key_cond)?;
    let mut q = Query::new(&table, partition).cursor(start_after(&spec, req)?);
    if let Some(s) = sort {
        q = q.sort(s);
    }
    if let Some(n) = req.limit("Limit")? {
        q = q.limit(n);
    }
    if req.get("ScanIndexForward") == Some(&Json::Bool(false)) {
        q = q.descending();
    }
    let page = kv.query(q).await.map_err(error)?;
    page_json(&spec, req, page, filter.as_ref(), projection.as_deref())
}

async fn scan(kv: &dyn Kv, caller: &Caller, req: &Input) -> JsonResult {
    let table = req.table(caller, "dynamodb:Scan")?;
    req.no_legacy(&["ScanFilter", "AttributesToGet", "ConditionalOperator"])?;
    if req.get("IndexName").is_some() {
        return Err(JsonError::validation(
            "secondary indexes are not supported by this endpoint",
        ));
    }
    match req.get("TotalSegments").and_then(Json::as_u64) {
        None | Some(1) => {}
        Some(_) => {
            return Err(JsonError::validation(
                "parallel scans (TotalSegments > 1) are not supported by this endpoint",
            ));
        }
    }
    let spec = spec(kv, &table).await?;
    let mut bind = req.bindings()?;
    let filter = req.condition("FilterExpression", &mut bind)?;
    let projection = req.projection(&mut bind)?;
    all_used(&bind)?;
    let mut s = Scan::new(&table).cursor(start_after(&spec, req)?);
    if let Some(n) = req.limit("Limit")? {
        s = s.limit(n);
    }
    let page = kv.scan(s).await.map_err(error)?;
    page_json(&spec, req, page, filter.as_ref(), projection.as_deref())
}

/// The `RequestItems` of a batch: table name → its request.
fn request_items(req: &Input) -> Result<&Map<String, Json>, JsonError> {
    match req.get("RequestItems") {
        Some(Json::Object(m)) if !m.is_empty() => Ok(m),
        _ => Err(JsonError::validation(
            "1 validation error detected: Value at 'requestItems' failed to satisfy \
             constraint: Member must have length greater than or equal to 1",
        )),
    }
}

async fn batch_get(kv: &dyn Kv, caller: &Caller, req: &Input) -> JsonResult {
    let tables = request_items(req)?;
    let total: usize = tables
        .values()
        .map(|t| t.get("Keys").and_then(Json::as_array).map_or(0, Vec::len))
        .sum();
    if total > MAX_BATCH_GET {
        return Err(JsonError::validation(format!(
            "Too many items requested for the BatchGetItem call: {total}; at most \
             {MAX_BATCH_GET}"
        )));
    }
    let mut responses = Map::new();
    for (table, request) in tables {
        caller.require("dynamodb:BatchGetItem", &caller.account.table_arn(table))?;
        let request = Input(request.clone());
        request.no_legacy(&["AttributesToGet"])?;
        let spec = spec(kv, table).await?;
        let mut bind = request.bindings()?;
        let projection = request.projection(&mut bind)?;
        all_used(&bind)?;
        let keys = request
            .get("Keys")
            .and_then(Json::as_array)
            .ok_or_else(|| JsonError::validation(format!("the request for {table} has no Keys")))?
            .iter()
            .map(|k| key_of(&spec, &attrs(k)?))
            .collect::<Result<Vec<_>, _>>()?;
        let items = kv.batch_get(table, keys).await.map_err(error)?;
        let items: Vec<Json> = items
            .iter()
            .map(|i| match &projection {
                Some(p) => item_json(&expr::project(i, p)),
                None => item_json(i),
            })
            .collect();
        responses.insert(table.clone(), Json::Array(items));
    }
    Ok(json!({ "Responses": responses, "UnprocessedKeys": {} }))
}

async fn batch_write(kv: &dyn Kv, caller: &Caller, req: &Input) -> JsonResult {
    let tables = request_items(req)?;
    let mut writes = Vec::new();
    for (table, requests) in tables {
        caller.require("dynamodb:BatchWriteItem", &caller.account.table_arn(table))?;
        let spec = spec(kv, table).await?;
        let requests = requests.as_array().ok_or_else(|| {
            JsonError::serialization(format!("the requests for {table} must be a list"))
        })?;
        for r in requests {
            match (r.get("PutRequest"), r.get("DeleteRequest")) {
                (Some(p), None) => {
                    let item = attrs(p.get("Item").unwrap_or(&Json::Null))?;
                    writes.push(TransactWrite::Put(PutItem::new(table, item)));
                }
                (None, Some(d)) => {
                    let key = key_of(&spec, &attrs(d.get("Key").unwrap_or(&Json::Null))?)?;
                    writes.push(TransactWrite::Delete(DeleteItem::new(table, key)));
                }
                _ => {
                    return Err(JsonError::validation(
                        "each write request has exactly one of PutRequest and DeleteRequest",
                    ));
                }
            }
        }
    }
    if writes.len() > MAX_BATCH_WRITE {
        return Err(JsonError::validation(format!(
            "1 validation error detected: Value at 'requestItems' failed to satisfy \
             constraint: Member must have length less than or equal to {MAX_BATCH_WRITE} \
             (this batch has {})",
            writes.len()
        )));
    }
    // Applied as one transaction: stronger than DynamoDB (which may apply part of a batch and
    // return the rest as unprocessed), so nothing is ever left unprocessed.
    kv.transact_write(writes)
        .await
        .map_err(|e| match e.kind() {
            ErrorKind::InvalidArgument
                if e.message().contains("multiple operations on one item") =>
            {
                JsonError::validation("Provided list of item keys contains duplicates")
            }
            _ => error(e),
        })?;
    Ok(json!({ "UnprocessedItems": {} }))
}

async fn transact_write(kv: &dyn Kv, caller: &Caller, req: &Input) -> JsonResult {
    let items = req
        .get("TransactItems")
        .and_then(Json::as_array)
        .ok_or_else(|| JsonError::validation("TransactItems is required"))?;
    let mut writes = Vec::with_capacity(items.len());
    for entry in items {
        let Json::Object(m) = entry else {
            return Err(JsonError::serialization(
                "each TransactItem must be an object",
            ));
        };
        let mut fields = m.iter();
        let (Some((kind, body)), None) = (fields.next(), fields.next()) else {
            return Err(JsonError::validation(
                "each TransactItem has exactly one of Put, Update, Delete and ConditionCheck",
            ));
        };
        let body = Input(body.clone());
        let action = match kind.as_str() {
            "Put" => "dynamodb:PutItem",
            "Update" => "dynamodb:UpdateItem",
            "Delete" => "dynamodb:DeleteItem",
            "ConditionCheck" => "dynamodb:ConditionCheckItem",
            other => {
                return Err(JsonError::validation(format!(
                    "unknown TransactItem {other:?}"
                )));
            }
        };
        let table = body.table(caller, action)?;
        let spec = spec(kv, &table).await?;
        let mut bind = body.bindings()?;
        let write = match kind.as_str() {
            "Update" => TransactWrite::Update(update_of(&spec, &body, &mut bind)?),
            _ => {
                let cond = body
                    .condition("ConditionExpression", &mut bind)?
                    .map(Condition::Expr)
                    .unwrap_or_default();
                match kind.as_str() {
                    "Put" => {
                        let item = attrs(body.get("Item").unwrap_or(&Json::Null))?;
                        TransactWrite::Put(PutItem::new(&table, item).condition(cond))
                    }
                    _ => {
                        let key = key_of(&spec, &attrs(body.get("Key").unwrap_or(&Json::Null))?)?;
                        if kind == "Delete" {
                            TransactWrite::Delete(DeleteItem::new(&table, key).condition(cond))
                        } else if cond == Condition::None {
                            return Err(JsonError::validation(
                                "a ConditionCheck needs a ConditionExpression",
                            ));
                        } else {
                            TransactWrite::Check {
                                table: table.clone(),
                                key,
                                condition: cond,
                            }
                        }
                    }
                }
            }
        };
        all_used(&bind)?;
        writes.push(write);
    }
    kv.transact_write(writes).await.map_err(error)?;
    Ok(json!({}))
}
