//! The local KV service: DynamoDB-style tables in one redb database (`kv/kv.redb`).
//!
//! Layout of the database:
//! - `tables`: table name → its definition, creation time and a numeric id (postcard).
//! - `meta`: the counter the next table id is drawn from.
//! - `items/<id>`: one redb table per KV table, stored key → item (postcard). Stored keys
//!   are the order-preserving encoding of `(partition, sort)` described in `kv/keys.rs`,
//!   so a query is one contiguous range scan and redb's own ordering is DynamoDB's order.
//!
//! Why this shape:
//! - A redb table per KV table makes the item count exact and free (redb keeps each tree's
//!   length) and makes deleting a table one operation. Naming it by an id rather than by
//!   the table's name means a reader that raced a delete-and-recreate finds no table rather
//!   than items of another schema. Ids come from a persisted counter, not from the seeded
//!   simulator, because a reopened simulator replays the same ids.
//! - Every item write runs inside a redb write transaction: its condition is evaluated
//!   against the item read in that same transaction, and redb admits one writer at a time,
//!   so conditional writes are race-free across tasks. A write is acknowledged only once it
//!   is durable: its changes are appended to a write-ahead log (`kv/wal.log`) and synced
//!   with one fdatasync, and the transaction is then committed without an fsync of its own;
//!   the log is checkpointed into the database every 16 MiB and replayed on open, so a crash
//!   loses no acknowledged write. Concurrent writes share one log record and one sync (group
//!   commit, `kv/commit.rs`). Commits block on the sync, so they run on tokio's blocking pool;
//!   in memory there is no sync, and a commit runs on the writer's own task.
//!   Table creation and deletion commit durably on their own.
//! - Reads run inline: a read transaction is a cheap snapshot and a point read touches a few
//!   cached pages. Table definitions are cached in memory (the database belongs to this
//!   process alone, and the cache is updated under the same lock as the definitions), so a
//!   get does no lookup of its table's schema.

mod commit;
mod keys;

use std::collections::{HashMap, HashSet};
use std::ops::Bound;
use std::sync::{Arc, Mutex, RwLock};

use mvi_core::common::Page;
use mvi_core::kv::{
    Condition, DeleteItem, Item, Key, KeyAttr, KeyType, MAX_BATCH_GET, MAX_BATCH_PUT, MAX_DEPTH,
    MAX_READ_DEPTH, PutItem, Query, Scan, SortCondition, TableInfo, TableSpec, TransactWrite,
    TransactionCanceled, UpdateItem, Value, check_batch, check_condition, check_item, check_key,
    check_transaction, check_update, update_returns, validate_table_name,
};
use mvi_core::{Error, Kv, Op, Result, Service};
use redb::{
    ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, TableError,
    WriteTransaction,
};
use serde::{Deserialize, Serialize};

use crate::storage::{Ctx, db_error};
use commit::{Effect, GroupCommit};

/// Table name → postcard of [`StoredTable`].
const TABLES: TableDefinition<&str, &[u8]> = TableDefinition::new("tables");
/// Counters (`next_table_id`).
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const NEXT_TABLE_ID: &str = "next_table_id";
/// The most bytes of items one query or scan page returns (as DynamoDB's 1 MB).
const MAX_PAGE_BYTES: usize = 1024 * 1024;

const fn op(operation: &'static str) -> Op {
    Op::new(Service::Kv, operation)
}

/// A table's definition as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredTable {
    spec: TableSpec,
    id: u64,
    created_micros: i64,
}

impl StoredTable {
    /// The name of the redb table holding the items.
    fn items_name(&self) -> String {
        format!("items/{}", self.id)
    }
}

/// The local KV service.
#[derive(Debug, Clone)]
pub struct LocalKv {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: Arc<redb::Database>,
    /// Item writes: grouped into shared durable commits.
    group: GroupCommit,
    ctx: Ctx,
    /// Table name → definition: the `tables` table, kept in memory for reads.
    cache: RwLock<HashMap<String, Arc<StoredTable>>>,
    /// Held across create/delete table and their cache update, so the cache follows the
    /// committed order of definition changes.
    ddl: Mutex<()>,
}

impl LocalKv {
    /// Opens (or creates) the service's database and loads the table definitions.
    pub async fn open(ctx: Ctx) -> Result<Self> {
        let op = op("open");
        let db = ctx.open_redb(op, "kv.redb")?;
        let fail = |e: redb::Error| db_error(op, "kv.redb", e);
        // Create the fixed tables up front, so read transactions can always open them.
        let txn = db.begin_write().map_err(|e| fail(e.into()))?;
        txn.open_table(TABLES).map_err(|e| fail(e.into()))?;
        txn.open_table(META).map_err(|e| fail(e.into()))?;
        txn.commit().map_err(|e| fail(e.into()))?;

        let mut cache = HashMap::new();
        let txn = db.begin_read().map_err(|e| fail(e.into()))?;
        let tables = txn.open_table(TABLES).map_err(|e| fail(e.into()))?;
        for entry in tables.iter().map_err(|e| fail(e.into()))? {
            let (name, bytes) = entry.map_err(|e| fail(e.into()))?;
            let stored = decode_table(op, name.value(), bytes.value())?;
            cache.insert(name.value().to_string(), Arc::new(stored));
        }
        drop(tables);
        drop(txn);
        let wal = match &ctx.dir {
            Some(dir) => Some(commit::replay(op, &db, &dir.join("wal.log"))?),
            None => None,
        };
        let db = Arc::new(db);
        Ok(LocalKv {
            inner: Arc::new(Inner {
                group: GroupCommit::new(&db, wal),
                db,
                ctx,
                cache: RwLock::new(cache),
                ddl: Mutex::new(()),
            }),
        })
    }

    /// The cached definition of `table`, or NotFound.
    fn table(&self, op: Op, table: &str) -> Result<Arc<StoredTable>> {
        validate_table_name(op, table)?;
        let cache = self.inner.cache.read().unwrap_or_else(|e| e.into_inner());
        cache.get(table).cloned().ok_or_else(|| no_table(op, table))
    }

    /// Runs `f` on tokio's blocking pool (writes wait for redb's writer lock and an fsync).
    async fn blocking<T, F>(&self, op: Op, resource: &str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => rt
                .spawn_blocking(move || f(&inner))
                .await
                .map_err(|e| op.internal(resource, e))?,
            // Polled outside tokio: block here rather than panic.
            Err(_) => f(&inner),
        }
    }

    /// Runs `f` in a write transaction, possibly shared with concurrent writes (see
    /// `kv/commit.rs`), and returns once the write is durable. `f` reports each change it
    /// makes to an items table in the effects it is given (they are what the log holds).
    async fn write<T, F>(&self, op: Op, resource: &str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction, &mut Vec<Effect>) -> Result<T> + Send + 'static,
    {
        self.inner.group.write(op, resource, f).await
    }
}

impl Inner {
    /// Runs `f` in one write transaction and commits it durably, or aborts it if `f` fails.
    fn transact<T>(
        &self,
        op: Op,
        resource: &str,
        f: impl FnOnce(&WriteTransaction) -> Result<T>,
    ) -> Result<T> {
        let txn = self
            .db
            .begin_write()
            .map_err(|e| db_error(op, resource, e))?;
        match f(&txn) {
            Ok(out) => {
                txn.commit().map_err(|e| db_error(op, resource, e))?;
                Ok(out)
            }
            Err(e) => {
                // Nothing of a failed write may become visible.
                txn.abort().map_err(|e| db_error(op, resource, e))?;
                Err(e)
            }
        }
    }
}

fn no_table(op: Op, table: &str) -> Error {
    op.not_found(table, "no such table")
}

fn decode_table(op: Op, name: &str, bytes: &[u8]) -> Result<StoredTable> {
    postcard::from_bytes(bytes)
        .map_err(|e| op.internal(name, format!("corrupt table definition: {e}")))
}

fn encode_item(op: Op, table: &str, item: &Item) -> Result<Vec<u8>> {
    postcard::to_allocvec(item).map_err(|e| op.internal(table, e))
}

fn decode_item(op: Op, table: &str, bytes: &[u8]) -> Result<Item> {
    mvi_core::kv::decode_was_too_deep();
    postcard::from_bytes(bytes).map_err(|e| {
        let why = if mvi_core::kv::decode_was_too_deep() {
            format!(
                "it nests lists and maps more than {MAX_READ_DEPTH} levels deep (written before the limit of {MAX_DEPTH})"
            )
        } else {
            e.to_string()
        };
        op.internal(
            table,
            format!("an item cannot be read: {why}; it can still be deleted by its key"),
        )
    })
}

/// The item stored under a key, for a write: decoded, or (when it cannot be read, as an item
/// nested deeper than reads go, written before the depth limit) its key attributes alone,
/// unless the write needs the whole item (an update, or a condition on more than existence).
fn current_item(
    op: Op,
    table: &str,
    spec: &TableSpec,
    key: &Key,
    bytes: Option<&[u8]>,
    needs_whole: bool,
) -> Result<Option<Item>> {
    let Some(bytes) = bytes else { return Ok(None) };
    match decode_item(op, table, bytes) {
        Ok(item) => Ok(Some(item)),
        Err(_) if !needs_whole => Ok(Some(key_item(spec, key))),
        Err(e) => Err(e),
    }
}

fn info(stored: &StoredTable, item_count: u64) -> TableInfo {
    TableInfo {
        spec: stored.spec.clone(),
        item_count,
        created: chrono::DateTime::from_timestamp_micros(stored.created_micros).unwrap_or_default(),
    }
}

/// The definition of `table` as committed in (or before) `txn`, or NotFound.
fn load_table(op: Op, txn: &WriteTransaction, table: &str) -> Result<StoredTable> {
    let tables = txn.open_table(TABLES).map_err(|e| db_error(op, table, e))?;
    let bytes = tables
        .get(table)
        .map_err(|e| db_error(op, table, e))?
        .ok_or_else(|| no_table(op, table))?;
    decode_table(op, table, bytes.value())
}

/// Checks one key attribute's value (type, non-empty, finite) with core's rules.
fn check_attr(op: Op, table: &str, attr: &KeyAttr, v: &Value) -> Result<()> {
    let one = TableSpec::new(table, attr.clone());
    check_key(op, &one, &Key::new(v.clone()))
}

fn check_key_attr_name(op: Op, table: &str, attr: &KeyAttr) -> Result<()> {
    if attr.name.is_empty() || attr.name.len() > 255 {
        return Err(op.invalid(
            table,
            format!(
                "key attribute name {:?} must be 1 to 255 bytes long",
                attr.name
            ),
        ));
    }
    Ok(())
}

/// Turns a page size into a count, refusing 0.
fn page_limit(op: Op, table: &str, limit: Option<usize>) -> Result<usize> {
    match limit {
        Some(0) => Err(op.invalid(table, "limit must be at least 1")),
        Some(n) => Ok(n),
        None => Ok(usize::MAX),
    }
}

/// The cursor of a query or scan that continues after the item with `key` (pages end with
/// such a cursor; the DynamoDB endpoint turns `ExclusiveStartKey` into one).
pub(crate) fn cursor_after(key: &Key) -> String {
    hex::encode(keys::item_key(key))
}

fn decode_cursor(op: Op, table: &str, cursor: &str) -> Result<Vec<u8>> {
    hex::decode(cursor).map_err(|_| op.invalid(table, "the cursor is not one this service issued"))
}

/// A range of stored keys: lower and upper bound.
type KeyRange = (Bound<Vec<u8>>, Bound<Vec<u8>>);

/// The tighter of two lower bounds.
fn max_lower(a: Bound<Vec<u8>>, b: Bound<Vec<u8>>) -> Bound<Vec<u8>> {
    use Bound::*;
    match (&a, &b) {
        (Unbounded, _) => b,
        (_, Unbounded) => a,
        (Included(x) | Excluded(x), Included(y) | Excluded(y)) => {
            if x > y || (x == y && matches!(a, Excluded(_))) {
                a
            } else {
                b
            }
        }
    }
}

/// The tighter of two upper bounds.
fn min_upper(a: Bound<Vec<u8>>, b: Bound<Vec<u8>>) -> Bound<Vec<u8>> {
    use Bound::*;
    match (&a, &b) {
        (Unbounded, _) => b,
        (_, Unbounded) => a,
        (Included(x) | Excluded(x), Included(y) | Excluded(y)) => {
            if x < y || (x == y && matches!(a, Excluded(_))) {
                a
            } else {
                b
            }
        }
    }
}

/// Whether no key lies between `lo` and `hi` (redb wants ordered bounds).
fn is_empty_range(lo: &Bound<Vec<u8>>, hi: &Bound<Vec<u8>>) -> bool {
    use Bound::*;
    match (lo, hi) {
        (Included(a), Included(b)) => a > b,
        (Included(a), Excluded(b)) | (Excluded(a), Included(b)) | (Excluded(a), Excluded(b)) => {
            a >= b
        }
        _ => false,
    }
}

/// The key range a query covers within its partition.
fn query_range(op: Op, stored: &StoredTable, req: &Query) -> Result<KeyRange> {
    let table = &stored.spec.name;
    let prefix = keys::partition_prefix(&req.partition);
    let whole = (Bound::Included(prefix.clone()), keys::prefix_end(&prefix));
    let Some(cond) = &req.sort else {
        return Ok(whole);
    };
    let Some(sort_attr) = &stored.spec.sort_key else {
        return Err(op.invalid(
            table,
            "the table has no sort key, so a query cannot have a sort condition",
        ));
    };
    let at = |v: &Value| -> Result<Vec<u8>> {
        check_attr(op, table, sort_attr, v)?;
        let mut k = prefix.clone();
        keys::encode(&mut k, v);
        Ok(k)
    };
    use Bound::*;
    Ok(match cond {
        SortCondition::Eq(v) => {
            let k = at(v)?;
            (Included(k.clone()), Included(k))
        }
        SortCondition::Lt(v) => (whole.0, Excluded(at(v)?)),
        SortCondition::Le(v) => (whole.0, Included(at(v)?)),
        SortCondition::Gt(v) => (Excluded(at(v)?), whole.1),
        SortCondition::Ge(v) => (Included(at(v)?), whole.1),
        SortCondition::Between(lo, hi) => {
            let (a, b) = (at(lo)?, at(hi)?);
            if a > b {
                return Err(op.invalid(
                    table,
                    "Between needs its lower bound first; here it is above the upper bound",
                ));
            }
            (Included(a), Included(b))
        }
        SortCondition::BeginsWith(p) => {
            check_attr(op, table, sort_attr, p)?;
            if sort_attr.kind == KeyType::Number {
                return Err(op.invalid(
                    table,
                    format!(
                        "BeginsWith applies to string and binary sort keys; {:?} is a number",
                        sort_attr.name
                    ),
                ));
            }
            let mut k = prefix.clone();
            keys::encode_prefix(&mut k, p);
            let end = keys::prefix_end(&k);
            (Included(k), end)
        }
    })
}

impl Inner {
    /// Opens the items of `stored` in a fresh read snapshot; NotFound if the table was
    /// deleted since the caller looked it up.
    fn read_items(
        &self,
        op: Op,
        stored: &StoredTable,
    ) -> Result<redb::ReadOnlyTable<&'static [u8], &'static [u8]>> {
        let table = &stored.spec.name;
        let txn = self.db.begin_read().map_err(|e| db_error(op, table, e))?;
        let name = stored.items_name();
        txn.open_table(TableDefinition::<&[u8], &[u8]>::new(&name))
            .map_err(|e| match e {
                TableError::TableDoesNotExist(_) => no_table(op, table),
                e => db_error(op, table, e),
            })
    }

    /// One page of items in `[lo, hi]`, in key order or reversed, continuing after `cursor`.
    fn page(
        &self,
        op: Op,
        stored: &StoredTable,
        (mut lo, mut hi): KeyRange,
        descending: bool,
        limit: Option<usize>,
        cursor: Option<&str>,
    ) -> Result<Page<Item>> {
        let table = stored.spec.name.as_str();
        let limit = page_limit(op, table, limit)?;
        if let Some(cursor) = cursor {
            let after = decode_cursor(op, table, cursor)?;
            if descending {
                hi = min_upper(hi, Bound::Excluded(after));
            } else {
                lo = max_lower(lo, Bound::Excluded(after));
            }
        }
        if is_empty_range(&lo, &hi) {
            return Ok(Page::last(Vec::new()));
        }
        let items = self.read_items(op, stored)?;
        let bounds = (
            lo.as_ref().map(Vec::as_slice),
            hi.as_ref().map(Vec::as_slice),
        );
        let range = items
            .range::<&[u8]>(bounds)
            .map_err(|e| db_error(op, table, e))?;
        let mut iter: Box<dyn Iterator<Item = _>> = if descending {
            Box::new(range.rev())
        } else {
            Box::new(range)
        };
        let mut out = Vec::new();
        let mut bytes = 0;
        let mut last_key = Vec::new();
        for entry in iter.by_ref() {
            let (k, v) = entry.map_err(|e| db_error(op, table, e))?;
            out.push(decode_item(op, table, v.value())?);
            bytes += v.value().len();
            last_key = k.value().to_vec();
            if out.len() >= limit || bytes >= MAX_PAGE_BYTES {
                break;
            }
        }
        // A cursor only when something is left, so the last page says it is the last.
        let more = match iter.next() {
            Some(entry) => {
                entry.map_err(|e| db_error(op, table, e))?;
                true
            }
            None => false,
        };
        Ok(Page {
            items: out,
            next: more.then(|| hex::encode(last_key)),
        })
    }
}

#[async_trait::async_trait]
impl Kv for LocalKv {
    async fn create_table(&self, spec: TableSpec) -> Result<TableInfo> {
        let op = op("create_table");
        validate_table_name(op, &spec.name)?;
        check_key_attr_name(op, &spec.name, &spec.partition_key)?;
        if let Some(sort) = &spec.sort_key {
            check_key_attr_name(op, &spec.name, sort)?;
            if sort.name == spec.partition_key.name {
                return Err(op.invalid(
                    &spec.name,
                    format!(
                        "the sort key and the partition key are both named {:?}",
                        sort.name
                    ),
                ));
            }
        }
        let name = spec.name.clone();
        let created_micros = self.inner.ctx.sim.now().timestamp_micros();
        self.blocking(op, &name, move |inner| {
            // Definitions change one at a time, and the cache is updated after each commit
            // while still holding the lock, so it follows commit order.
            let _ddl = inner.ddl.lock().unwrap_or_else(|e| e.into_inner());
            let table = spec.name.clone();
            let stored = inner.transact(op, &table, |txn| {
                let fail = |e: redb::Error| db_error(op, &table, e);
                let mut tables = txn.open_table(TABLES).map_err(|e| fail(e.into()))?;
                if tables
                    .get(table.as_str())
                    .map_err(|e| fail(e.into()))?
                    .is_some()
                {
                    return Err(op.already_exists(&table, "a table with this name exists"));
                }
                let mut meta = txn.open_table(META).map_err(|e| fail(e.into()))?;
                let id = meta
                    .get(NEXT_TABLE_ID)
                    .map_err(|e| fail(e.into()))?
                    .map_or(1, |g| g.value());
                meta.insert(NEXT_TABLE_ID, id + 1)
                    .map_err(|e| fail(e.into()))?;
                let stored = StoredTable {
                    spec,
                    id,
                    created_micros,
                };
                let bytes = postcard::to_allocvec(&stored).map_err(|e| op.internal(&table, e))?;
                tables
                    .insert(table.as_str(), bytes.as_slice())
                    .map_err(|e| fail(e.into()))?;
                // Create the (empty) items table now, so reads of an empty table find it.
                let items_name = stored.items_name();
                txn.open_table(TableDefinition::<&[u8], &[u8]>::new(&items_name))
                    .map_err(|e| fail(e.into()))?;
                Ok(stored)
            })?;
            let out = info(&stored, 0);
            let mut cache = inner.cache.write().unwrap_or_else(|e| e.into_inner());
            cache.insert(table, Arc::new(stored));
            Ok(out)
        })
        .await
    }

    async fn delete_table(&self, table: &str) -> Result<()> {
        let op = op("delete_table");
        validate_table_name(op, table)?;
        let name = table.to_string();
        self.blocking(op, table, move |inner| {
            let _ddl = inner.ddl.lock().unwrap_or_else(|e| e.into_inner());
            inner.transact(op, &name, |txn| {
                let stored = load_table(op, txn, &name)?;
                let fail = |e: redb::Error| db_error(op, &name, e);
                txn.open_table(TABLES)
                    .map_err(|e| fail(e.into()))?
                    .remove(name.as_str())
                    .map_err(|e| fail(e.into()))?;
                let items_name = stored.items_name();
                txn.delete_table(TableDefinition::<&[u8], &[u8]>::new(&items_name))
                    .map_err(|e| fail(e.into()))?;
                Ok(())
            })?;
            let mut cache = inner.cache.write().unwrap_or_else(|e| e.into_inner());
            cache.remove(&name);
            Ok(())
        })
        .await
    }

    async fn describe_table(&self, table: &str) -> Result<TableInfo> {
        let op = op("describe_table");
        let stored = self.table(op, table)?;
        let items = self.inner.read_items(op, &stored)?;
        let count = items.len().map_err(|e| db_error(op, table, e))?;
        Ok(info(&stored, count))
    }

    async fn list_tables(&self) -> Result<Vec<String>> {
        let op = op("list_tables");
        let fail = |e: redb::Error| db_error(op, "tables", e);
        let txn = self.inner.db.begin_read().map_err(|e| fail(e.into()))?;
        let tables = txn.open_table(TABLES).map_err(|e| fail(e.into()))?;
        let mut names = Vec::new();
        for entry in tables.iter().map_err(|e| fail(e.into()))? {
            let (name, _) = entry.map_err(|e| fail(e.into()))?;
            names.push(name.value().to_string());
        }
        Ok(names)
    }

    async fn put_item(&self, req: PutItem) -> Result<()> {
        let op = op("put_item");
        validate_table_name(op, &req.table)?;
        check_condition(op, &req.table, &req.condition)?;
        let table = req.table.clone();
        self.write(op, &table, move |txn, log| {
            let planned = plan(op, txn, &TransactWrite::Put(req))?;
            planned.require(op)?;
            planned.apply(op, txn, log)
        })
        .await
    }

    async fn get_item(&self, table: &str, key: Key) -> Result<Option<Item>> {
        let op = op("get_item");
        let stored = self.table(op, table)?;
        check_key(op, &stored.spec, &key)?;
        let items = self.inner.read_items(op, &stored)?;
        let got = items
            .get(keys::item_key(&key).as_slice())
            .map_err(|e| db_error(op, table, e))?;
        got.map(|g| decode_item(op, table, g.value())).transpose()
    }

    async fn delete_item(&self, req: DeleteItem) -> Result<Option<Item>> {
        let op = op("delete_item");
        validate_table_name(op, &req.table)?;
        check_condition(op, &req.table, &req.condition)?;
        let table = req.table.clone();
        self.write(op, &table, move |txn, log| {
            let planned = plan(op, txn, &TransactWrite::Delete(req))?;
            planned.require(op)?;
            // Kept in the plan: applying a delete of nothing writes nothing.
            let old = planned.old.clone();
            planned.apply(op, txn, log)?;
            Ok(old)
        })
        .await
    }

    async fn query(&self, req: Query) -> Result<Page<Item>> {
        let op = op("query");
        let stored = self.table(op, &req.table)?;
        check_attr(op, &req.table, &stored.spec.partition_key, &req.partition)?;
        let range = query_range(op, &stored, &req)?;
        if let Some(cursor) = &req.cursor {
            // A cursor from another partition would silently read the wrong items.
            let prefix = keys::partition_prefix(&req.partition);
            if !decode_cursor(op, &req.table, cursor)?.starts_with(&prefix) {
                return Err(op.invalid(&req.table, "the cursor belongs to another query"));
            }
        }
        self.inner.page(
            op,
            &stored,
            range,
            req.descending,
            req.limit,
            req.cursor.as_deref(),
        )
    }

    async fn scan(&self, req: Scan) -> Result<Page<Item>> {
        let op = op("scan");
        let stored = self.table(op, &req.table)?;
        self.inner.page(
            op,
            &stored,
            (Bound::Unbounded, Bound::Unbounded),
            false,
            req.limit,
            req.cursor.as_deref(),
        )
    }

    async fn batch_get(&self, table: &str, keys: Vec<Key>) -> Result<Vec<Item>> {
        let op = op("batch_get");
        let stored = self.table(op, table)?;
        check_batch(op, table, keys.len(), MAX_BATCH_GET, "keys")?;
        let mut stored_keys = Vec::with_capacity(keys.len());
        let mut seen = HashSet::with_capacity(keys.len());
        for key in &keys {
            check_key(op, &stored.spec, key)?;
            let k = keys::item_key(key);
            if !seen.insert(k.clone()) {
                return Err(op.invalid(table, format!("key {key} appears twice in the batch")));
            }
            stored_keys.push(k);
        }
        if stored_keys.is_empty() {
            return Ok(Vec::new());
        }
        // One snapshot for the whole batch.
        let items = self.inner.read_items(op, &stored)?;
        let mut out = Vec::with_capacity(stored_keys.len());
        for k in &stored_keys {
            if let Some(g) = items
                .get(k.as_slice())
                .map_err(|e| db_error(op, table, e))?
            {
                out.push(decode_item(op, table, g.value())?);
            }
        }
        Ok(out)
    }

    async fn batch_put(&self, table: &str, items: Vec<Item>) -> Result<()> {
        let op = op("batch_put");
        validate_table_name(op, table)?;
        check_batch(op, table, items.len(), MAX_BATCH_PUT, "items")?;
        if items.is_empty() {
            return Ok(());
        }
        let name = table.to_string();
        self.write(op, table, move |txn, log| {
            let stored = load_table(op, txn, &name)?;
            // Check every item before writing any: all or nothing.
            let mut rows = Vec::with_capacity(items.len());
            let mut seen = HashSet::with_capacity(items.len());
            for item in &items {
                let key = check_item(op, &stored.spec, item)?;
                let k = keys::item_key(&key);
                if !seen.insert(k.clone()) {
                    return Err(op.invalid(&name, format!("key {key} appears twice in the batch")));
                }
                rows.push((k, encode_item(op, &name, item)?));
            }
            let items_name = stored.items_name();
            let mut items = txn
                .open_table(TableDefinition::<&[u8], &[u8]>::new(&items_name))
                .map_err(|e| db_error(op, &name, e))?;
            for (k, v) in &rows {
                items
                    .insert(k.as_slice(), v.as_slice())
                    .map_err(|e| db_error(op, &name, e))?;
            }
            log.extend(rows.into_iter().map(|(key, value)| Effect {
                table: items_name.clone(),
                key,
                value: Some(value),
            }));
            Ok(())
        })
        .await
    }

    async fn update_item(&self, req: UpdateItem) -> Result<Option<Item>> {
        let op = op("update_item");
        validate_table_name(op, &req.table)?;
        let table = req.table.clone();
        let returns = req.returns;
        self.write(op, &table, move |txn, log| {
            let update = req.update.clone();
            let mut planned = plan(op, txn, &TransactWrite::Update(req))?;
            planned.require(op)?;
            let (old, new) = (planned.old.take(), planned.new.take());
            planned.apply(op, txn, log)?;
            Ok(new.and_then(|new| update_returns(returns, &update, old.as_ref(), &new)))
        })
        .await
    }

    async fn transact_write(&self, writes: Vec<TransactWrite>) -> Result<()> {
        let op = op("transact_write");
        check_transaction(op, &writes)?;
        for w in &writes {
            validate_table_name(op, w.table())?;
            check_condition(op, w.table(), w.condition())?;
        }
        self.write(op, "transaction", move |txn, log| {
            // Every condition is evaluated against the items as they were before the
            // transaction (no item is acted on twice), then every write is applied.
            let mut plans = Vec::with_capacity(writes.len());
            let mut seen = HashSet::with_capacity(writes.len());
            for w in &writes {
                let planned = plan(op, txn, w)?;
                if !seen.insert((planned.items_name.clone(), planned.stored_key.clone())) {
                    return Err(op.invalid(
                        w.table(),
                        format!(
                            "Transaction request cannot include multiple operations on one \
                             item (item {} of table {})",
                            planned.key,
                            w.table()
                        ),
                    ));
                }
                plans.push(planned);
            }
            let reasons: Vec<Option<(String, String)>> = plans
                .iter()
                .map(|p| {
                    (!p.holds).then(|| {
                        (
                            "ConditionalCheckFailed".to_owned(),
                            "The conditional request failed".to_owned(),
                        )
                    })
                })
                .collect();
            if reasons.iter().any(Option::is_some) {
                let canceled = TransactionCanceled { reasons };
                return Err(op
                    .precondition("transaction", canceled.to_string())
                    .with_source(canceled));
            }
            for p in plans {
                p.apply(op, txn, log)?;
            }
            Ok(())
        })
        .await
    }
}

/// One item write, checked and evaluated inside a write transaction but not yet applied.
struct Planned {
    table: String,
    items_name: String,
    key: Key,
    stored_key: Vec<u8>,
    condition: Condition,
    /// Whether the write's condition holds.
    holds: bool,
    /// The item as stored before (its key attributes alone if it cannot be read and the
    /// condition needs no more: such an item can still be replaced or deleted).
    old: Option<Item>,
    /// The item as it will be; `None` for a delete or a check.
    new: Option<Item>,
    /// The stored bytes to write (`Some(None)` deletes; `None` writes nothing).
    write: Option<Option<Vec<u8>>>,
}

impl Planned {
    /// Fails with ConditionalCheckFailed unless the condition holds.
    fn require(&self, op: Op) -> Result<()> {
        if self.holds {
            return Ok(());
        }
        Err(condition_failed(
            op,
            &self.table,
            &self.key,
            &self.condition,
        ))
    }

    fn apply(self, op: Op, txn: &WriteTransaction, log: &mut Vec<Effect>) -> Result<()> {
        let Some(write) = self.write else {
            return Ok(());
        };
        let mut items = txn
            .open_table(TableDefinition::<&[u8], &[u8]>::new(&self.items_name))
            .map_err(|e| db_error(op, &self.table, e))?;
        match &write {
            Some(bytes) => {
                items
                    .insert(self.stored_key.as_slice(), bytes.as_slice())
                    .map_err(|e| db_error(op, &self.table, e))?;
            }
            // Deleting nothing writes nothing (and logs nothing).
            None if self.old.is_none() => return Ok(()),
            None => {
                items
                    .remove(self.stored_key.as_slice())
                    .map_err(|e| db_error(op, &self.table, e))?;
            }
        }
        log.push(Effect {
            table: self.items_name,
            key: self.stored_key,
            value: write,
        });
        Ok(())
    }
}

/// Checks one write against its table and the item it would replace.
fn plan(op: Op, txn: &WriteTransaction, w: &TransactWrite) -> Result<Planned> {
    let table = w.table();
    let stored = load_table(op, txn, table)?;
    let spec = &stored.spec;
    let key = match w {
        TransactWrite::Put(p) => check_item(op, spec, &p.item)?,
        TransactWrite::Delete(DeleteItem { key, .. }) | TransactWrite::Check { key, .. } => {
            check_key(op, spec, key)?;
            key.clone()
        }
        TransactWrite::Update(u) => {
            check_update(op, spec, u)?;
            u.key.clone()
        }
    };
    let condition = w.condition().clone();
    let stored_key = keys::item_key(&key);
    let items_name = stored.items_name();
    // An unconditional put need not read what it replaces.
    let blind = matches!(w, TransactWrite::Put(_)) && condition == Condition::None;
    let old = if blind {
        None
    } else {
        let items = txn
            .open_table(TableDefinition::<&[u8], &[u8]>::new(&items_name))
            .map_err(|e| db_error(op, table, e))?;
        let raw = items
            .get(stored_key.as_slice())
            .map_err(|e| db_error(op, table, e))?
            .map(|g| g.value().to_vec());
        // An update needs the whole item, as does any condition but on existence.
        let needs_whole = matches!(w, TransactWrite::Update(_))
            || !matches!(
                condition,
                Condition::None | Condition::Exists | Condition::NotExists
            );
        current_item(op, table, spec, &key, raw.as_deref(), needs_whole)?
    };
    let holds = condition.holds(old.as_ref());
    let (new, write) = match w {
        TransactWrite::Put(p) => (
            Some(p.item.clone()),
            Some(Some(encode_item(op, table, &p.item)?)),
        ),
        TransactWrite::Delete(_) => (None, Some(None)),
        TransactWrite::Check { .. } => (None, None),
        TransactWrite::Update(u) => {
            let mut item = old.clone().unwrap_or_else(|| key_item(spec, &key));
            u.update
                .apply(&mut item)
                .map_err(|e| op.invalid(table, e.0))?;
            check_item(op, spec, &item)?;
            let bytes = encode_item(op, table, &item)?;
            (Some(item), Some(Some(bytes)))
        }
    };
    Ok(Planned {
        table: table.to_owned(),
        items_name,
        key,
        stored_key,
        condition,
        holds,
        old,
        new,
        write,
    })
}

/// An item holding only `key`'s attributes.
fn key_item(spec: &TableSpec, key: &Key) -> Item {
    let mut item = Item::new();
    item.insert(spec.partition_key.name.clone(), key.partition.clone());
    if let (Some(attr), Some(sort)) = (&spec.sort_key, &key.sort) {
        item.insert(attr.name.clone(), sort.clone());
    }
    item
}

fn condition_failed(op: Op, table: &str, key: &Key, condition: &Condition) -> Error {
    let why = match condition {
        Condition::NotExists => "an item with this key exists".to_string(),
        Condition::Exists => "no item has this key".to_string(),
        Condition::Equals(name, value) => format!("attribute {name:?} is not {value:?}"),
        Condition::Expr(_) => "the condition expression does not hold".to_string(),
        other => format!("{other:?} does not hold"),
    };
    op.precondition(table, format!("item {key}: the condition failed: {why}"))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use mvi_core::kv::{DeleteItem, Key, KeyAttr, KeyType, TableSpec};
    use mvi_core::{Kv, KvExt, Result, Service, SystemClock, item};

    use super::LocalKv;
    use crate::sim::Sim;
    use crate::storage::Ctx;

    async fn count(kv: &LocalKv, table: &str) -> Result<u64> {
        Ok(kv.describe_table(table).await?.item_count)
    }

    /// The item count is exact: overwrites do not add, deletes (even of missing items) do
    /// not go wrong, batches count each item once.
    #[tokio::test]
    async fn item_count_is_exact() -> Result<()> {
        let sim = Arc::new(Sim::new(1, Arc::new(SystemClock), "test".into()));
        let kv = LocalKv::open(Ctx::new(None, Service::Kv, sim)?).await?;
        kv.create_table(TableSpec::new("counted", KeyAttr::new("id", KeyType::Str)))
            .await?;
        kv.put("counted", item! { "id" => "a" }).await?;
        kv.put("counted", item! { "id" => "a", "v" => 2 }).await?;
        assert_eq!(count(&kv, "counted").await?, 1);
        kv.batch_put(
            "counted",
            vec![
                item! { "id" => "a" },
                item! { "id" => "b" },
                item! { "id" => "c" },
            ],
        )
        .await?;
        assert_eq!(count(&kv, "counted").await?, 3);
        kv.delete_item(DeleteItem::new("counted", Key::new("b")))
            .await?;
        kv.delete_item(DeleteItem::new("counted", Key::new("zzz")))
            .await?;
        assert_eq!(count(&kv, "counted").await?, 2);
        Ok(())
    }

    /// Polled by an executor other than tokio, the service blocks instead of panicking.
    #[test]
    fn works_outside_tokio() -> Result<()> {
        futures::executor::block_on(async {
            let sim = Arc::new(Sim::new(1, Arc::new(SystemClock), "test".into()));
            let kv = LocalKv::open(Ctx::new(None, Service::Kv, sim)?).await?;
            kv.create_table(TableSpec::new("plain", KeyAttr::new("id", KeyType::Str)))
                .await?;
            kv.put("plain", item! { "id" => "a" }).await?;
            assert!(kv.get_item("plain", Key::new("a")).await?.is_some());
            Ok(())
        })
    }

    /// Overwrites and deletes across many checkpoints of the write-ahead log come back
    /// exactly after a reopen, and the log stays small.
    #[tokio::test]
    async fn writes_across_checkpoints_survive_reopen() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| {
            crate::storage::io_error(super::op("test"), std::path::Path::new("tmp"), e)
        })?;
        {
            let kv = LocalKv::open(on_disk(dir.path())?).await?;
            kv.create_table(TableSpec::new("ckpt", KeyAttr::new("id", KeyType::Number)))
                .await?;
            for n in 0..300_i64 {
                kv.put("ckpt", item! { "id" => n % 100, "v" => n }).await?;
                if n % 7 == 0 {
                    kv.delete_item(DeleteItem::new("ckpt", Key::new(n % 100 + 1000)))
                        .await?;
                }
            }
            for n in (0..100_i64).step_by(3) {
                kv.delete_item(DeleteItem::new("ckpt", Key::new(n))).await?;
            }
        }
        let wal = std::fs::metadata(dir.path().join("kv/wal.log"))
            .map(|m| m.len())
            .ok();
        assert!(
            wal.is_some_and(|len| len <= 2 * super::commit::CHECKPOINT_BYTES),
            "{wal:?}"
        );
        let kv = LocalKv::open(on_disk(dir.path())?).await?;
        assert_eq!(count(&kv, "ckpt").await?, 66);
        for n in 0..100_i64 {
            let got = kv.get_item("ckpt", Key::new(n)).await?;
            if n % 3 == 0 {
                assert!(got.is_none(), "{n} was deleted");
            } else {
                let v = got.and_then(|i| i.get("v").cloned());
                assert_eq!(v, Some(mvi_core::kv::Value::Int(200 + n)), "{n}");
            }
        }
        Ok(())
    }

    const CHILD_DIR: &str = "MVI_KV_CRASH_CHILD_DIR";

    fn on_disk(dir: &std::path::Path) -> Result<Ctx> {
        let sim = Arc::new(Sim::new(1, Arc::new(SystemClock), "test".into()));
        Ctx::new(Some(dir), Service::Kv, sim)
    }

    /// Every write acknowledged before a `kill -9` is there after it. The test runs itself
    /// as a child process that writes and prints each acknowledged key, kills it at an
    /// arbitrary point, and reopens the state.
    #[tokio::test]
    async fn acknowledged_writes_survive_kill()
    -> std::result::Result<(), Box<dyn std::error::Error>> {
        use std::io::{BufRead, Write};

        if let Some(dir) = std::env::var_os(CHILD_DIR) {
            // The child: write until killed, acknowledging each write on stdout.
            let kv = LocalKv::open(on_disk(dir.as_ref())?).await?;
            kv.create_table(TableSpec::new("crash", KeyAttr::new("id", KeyType::Number)))
                .await?;
            for n in 0_i64.. {
                kv.put("crash", item! { "id" => n }).await?;
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "acked {n}");
                let _ = out.flush();
            }
            return Ok(());
        }

        let dir = tempfile::tempdir()?;
        let mut child = std::process::Command::new(std::env::current_exe()?)
            .args([
                "--exact",
                "kv::tests::acknowledged_writes_survive_kill",
                "--nocapture",
            ])
            .env(CHILD_DIR, dir.path())
            .stdout(std::process::Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("the child has no stdout")?;
        let mut last = None;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(n) = line
                .strip_prefix("acked ")
                .and_then(|n| n.parse::<i64>().ok())
            {
                last = Some(n);
                if n >= 200 {
                    break;
                }
            }
        }
        // SIGKILL: no destructors, no flush, as a crash.
        let _ = child.kill();
        let _ = child.wait();
        let last = last.ok_or("the child acknowledged nothing")?;

        let kv = LocalKv::open(on_disk(dir.path())?).await?;
        for n in 0..=last {
            assert!(
                kv.get_item("crash", Key::new(n)).await?.is_some(),
                "acknowledged write {n} of {last} was lost"
            );
        }
        Ok(())
    }
}
