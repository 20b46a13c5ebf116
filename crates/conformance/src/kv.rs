//! KV cases.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use mvi_core::kv::expr::{Bindings, Path, Update, parse_condition, parse_update};
use mvi_core::kv::{
    Condition, DeleteItem, Item, Key, KeyAttr, KeyType, MAX_ITEM_SIZE, PutItem, Query,
    ReturnValues, Scan, SortCondition, TableSpec, TransactWrite, TransactionCanceled, UpdateItem,
    Value,
};
use mvi_core::{ErrorKind, Kv, KvExt, item};

use crate::{Ctx, Failure, Outcome, ensure, expect_err};

/// Every KV case, as tests against `$target`.
#[macro_export]
macro_rules! kv_cases {
    ($target:expr) => {
        $crate::__cases! { $target;
            kv_put_get_roundtrip_all_types => $crate::kv::put_get_roundtrip_all_types;
            kv_get_missing_is_none => $crate::kv::get_missing_is_none;
            kv_put_if_absent_conflicts => $crate::kv::put_if_absent_conflicts;
            kv_version_check_rejects_stale_writer => $crate::kv::version_check_rejects_stale_writer;
            kv_concurrent_put_if_absent_one_wins => $crate::kv::concurrent_put_if_absent_one_wins;
            kv_concurrent_increments_are_exact => $crate::kv::concurrent_increments_are_exact;
            kv_query_range_descending_paginated => $crate::kv::query_range_descending_paginated;
            kv_query_begins_with => $crate::kv::query_begins_with;
            kv_number_sort_keys_order_exactly => $crate::kv::number_sort_keys_order_exactly;
            kv_scan_pages_cover_every_item_once => $crate::kv::scan_pages_cover_every_item_once;
            kv_batch_get_and_put => $crate::kv::batch_get_and_put;
            kv_batch_limits_and_atomicity => $crate::kv::batch_limits_and_atomicity;
            kv_oversize_item_rejected => $crate::kv::oversize_item_rejected;
            kv_nesting_past_32_levels_rejected => $crate::kv::nesting_past_32_levels_rejected;
            kv_invalid_table_name_rejected => $crate::kv::invalid_table_name_rejected;
            kv_wrong_key_rejected => $crate::kv::wrong_key_rejected;
            kv_unknown_table_is_not_found => $crate::kv::unknown_table_is_not_found;
            kv_delete_with_condition => $crate::kv::delete_with_condition;
            kv_update_creates_and_counts => $crate::kv::update_creates_and_counts;
            kv_update_conditions_and_paths => $crate::kv::update_conditions_and_paths;
            kv_concurrent_updates_are_exact => $crate::kv::concurrent_updates_are_exact;
            kv_expression_conditions_on_put_and_delete => $crate::kv::expression_conditions_on_put_and_delete;
            kv_transaction_all_or_nothing => $crate::kv::transaction_all_or_nothing;
            kv_describe_list_delete_table => $crate::kv::describe_list_delete_table;
            kv_state_survives_reopen => $crate::kv::state_survives_reopen [Reopen];
        }
    };
}

type Result<T> = std::result::Result<T, Failure>;

/// The KV service of the case's cloud.
fn kv(ctx: &Ctx) -> Result<Arc<dyn Kv>> {
    Ok(ctx.cloud().kv()?.clone())
}

/// Creates a table `base` keyed by string `id`.
async fn simple_table(ctx: &Ctx, base: &str) -> Result<(Arc<dyn Kv>, String)> {
    let kv = kv(ctx)?;
    let name = ctx.name(base);
    kv.create_table(TableSpec::new(&name, KeyAttr::new("id", KeyType::Str)))
        .await?;
    Ok((kv, name))
}

/// Creates a table `base` keyed by string `pk` and sort key `sk` of type `sort`.
async fn sorted_table(ctx: &Ctx, base: &str, sort: KeyType) -> Result<(Arc<dyn Kv>, String)> {
    let kv = kv(ctx)?;
    let name = ctx.name(base);
    kv.create_table(
        TableSpec::new(&name, KeyAttr::new("pk", KeyType::Str)).sort_key(KeyAttr::new("sk", sort)),
    )
    .await?;
    Ok((kv, name))
}

/// The sort key values of `items`, as i64.
fn sort_ints(items: &[Item]) -> Vec<i64> {
    items
        .iter()
        .filter_map(|i| i.get("sk").and_then(Value::as_i64))
        .collect()
}

/// Every attribute type reads back exactly as written.
pub async fn put_get_roundtrip_all_types(ctx: &mut Ctx) -> Outcome {
    let (kv, table) = simple_table(ctx, "types").await?;
    let mut nested = BTreeMap::new();
    nested.insert(
        "inner".to_string(),
        Value::List(vec![Value::Int(-7), Value::Null]),
    );
    let mut item = item! {
        "id" => "all",
        "flag" => true,
        "count" => 42,
        "big" => i64::MAX,
        "ratio" => 0.25,
        "name" => "Zoë ✓",
        "raw" => Bytes::from_static(&[0, 1, 2, 255]),
        "list" => vec![Value::from("a"), Value::from(1), Value::from(false)],
        "map" => nested,
    };
    item.insert("nothing".into(), Value::Null);
    kv.put(&table, item.clone()).await?;
    let got = kv.get_item(&table, Key::new("all")).await?;
    ensure!(
        got.as_ref() == Some(&item),
        "read back {got:?}, wrote {item:?}"
    );
    kv.delete_table(&table).await?;
    Ok(())
}

/// Reading a key nobody wrote is `None`, not an error.
pub async fn get_missing_is_none(ctx: &mut Ctx) -> Outcome {
    let (kv, table) = simple_table(ctx, "missing").await?;
    let got = kv.get_item(&table, Key::new("nobody")).await?;
    ensure!(got.is_none(), "expected None, got {got:?}");
    kv.delete_table(&table).await?;
    Ok(())
}

/// A put with `NotExists` fails once the key exists, and leaves the first item in place.
pub async fn put_if_absent_conflicts(ctx: &mut Ctx) -> Outcome {
    let (kv, table) = simple_table(ctx, "absent").await?;
    let first = item! { "id" => "k", "v" => "first" };
    kv.put_item(PutItem::new(&table, first.clone()).condition(Condition::NotExists))
        .await?;
    let err = expect_err!(
        kv.put_item(
            PutItem::new(&table, item! { "id" => "k", "v" => "second" })
                .condition(Condition::NotExists)
        )
        .await,
        PreconditionFailed
    );
    ensure!(
        err.to_string().contains(&table),
        "error does not name the table: {err}"
    );
    let got = kv.get_item(&table, Key::new("k")).await?;
    ensure!(
        got == Some(first),
        "the failed put changed the item: {got:?}"
    );
    // Exists is the opposite: it fails on a missing key.
    expect_err!(
        kv.put_item(PutItem::new(&table, item! { "id" => "other" }).condition(Condition::Exists))
            .await,
        PreconditionFailed
    );
    kv.put_item(
        PutItem::new(&table, item! { "id" => "k", "v" => "third" }).condition(Condition::Exists),
    )
    .await?;
    kv.delete_table(&table).await?;
    Ok(())
}

/// Optimistic concurrency: a writer holding a stale version is refused.
pub async fn version_check_rejects_stale_writer(ctx: &mut Ctx) -> Outcome {
    let (kv, table) = simple_table(ctx, "version").await?;
    kv.put(
        &table,
        item! { "id" => "doc", "version" => 1, "body" => "v1" },
    )
    .await?;
    // Two writers read version 1; the first to write wins.
    kv.put_item(
        PutItem::new(
            &table,
            item! { "id" => "doc", "version" => 2, "body" => "A" },
        )
        .condition(Condition::equals("version", 1)),
    )
    .await?;
    expect_err!(
        kv.put_item(
            PutItem::new(
                &table,
                item! { "id" => "doc", "version" => 2, "body" => "B" }
            )
            .condition(Condition::equals("version", 1))
        )
        .await,
        PreconditionFailed
    );
    let got = kv.get_item(&table, Key::new("doc")).await?;
    ensure!(
        got.as_ref().and_then(|i| i.get("body")) == Some(&Value::from("A")),
        "the stale writer overwrote the item: {got:?}"
    );
    // Equals on a missing item fails too.
    expect_err!(
        kv.put_item(
            PutItem::new(&table, item! { "id" => "nope", "version" => 2 })
                .condition(Condition::equals("version", 1))
        )
        .await,
        PreconditionFailed
    );
    kv.delete_table(&table).await?;
    Ok(())
}

/// 16 tasks race to create the same key with `NotExists`: exactly one wins, and the stored
/// item is the winner's.
pub async fn concurrent_put_if_absent_one_wins(ctx: &mut Ctx) -> Outcome {
    let (kv, table) = simple_table(ctx, "race").await?;
    let mut tasks = Vec::new();
    for n in 0..16_i64 {
        let (kv, table) = (kv.clone(), table.clone());
        tasks.push(tokio::spawn(async move {
            let put = PutItem::new(&table, item! { "id" => "lock", "owner" => n })
                .condition(Condition::NotExists);
            (n, kv.put_item(put).await)
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        let (n, res) = task.await?;
        match res {
            Ok(()) => winners.push(n),
            Err(e) if e.kind() == ErrorKind::PreconditionFailed => {}
            Err(e) => return Err(format!("task {n}: unexpected error {e}").into()),
        }
    }
    ensure!(winners.len() == 1, "winners: {winners:?}");
    let got = kv.get_item(&table, Key::new("lock")).await?;
    let owner = got.as_ref().and_then(|i| i.get("owner")).cloned();
    ensure!(
        owner == Some(Value::Int(winners[0])),
        "stored owner {owner:?}, winner {winners:?}"
    );
    kv.delete_table(&table).await?;
    Ok(())
}

/// 16 tasks increment one counter with read + conditional put, retrying on conflict: no
/// increment is lost.
pub async fn concurrent_increments_are_exact(ctx: &mut Ctx) -> Outcome {
    let (kv, table) = simple_table(ctx, "counter").await?;
    kv.put(&table, item! { "id" => "c", "n" => 0 }).await?;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (kv, table) = (kv.clone(), table.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let current = kv.get_item(&table, Key::new("c")).await?;
                let n = current
                    .as_ref()
                    .and_then(|i| i.get("n"))
                    .and_then(Value::as_i64)
                    .unwrap_or(-1);
                let put = PutItem::new(&table, item! { "id" => "c", "n" => n + 1 })
                    .condition(Condition::equals("n", n));
                match kv.put_item(put).await {
                    Ok(()) => return Ok::<_, mvi_core::Error>(()),
                    Err(e) if e.kind() == ErrorKind::PreconditionFailed => continue,
                    Err(e) => return Err(e),
                }
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    let got = kv.get_item(&table, Key::new("c")).await?;
    let n = got.as_ref().and_then(|i| i.get("n")).cloned();
    ensure!(n == Some(Value::Int(16)), "counter is {n:?}, expected 16");
    kv.delete_table(&table).await?;
    Ok(())
}

/// A query returns one partition's items in a sort-key range, highest first, page by page,
/// and never items of a neighbouring partition.
pub async fn query_range_descending_paginated(ctx: &mut Ctx) -> Outcome {
    let (kv, table) = sorted_table(ctx, "query", KeyType::Number).await?;
    let mut items = Vec::new();
    for ts in 0..10 {
        items.push(item! { "pk" => "u1", "sk" => ts, "n" => ts * 10 });
        // Neighbouring partitions: longer names (one continuing with a NUL character) and
        // one sorting just before.
        items.push(item! { "pk" => "u1x", "sk" => ts });
        items.push(item! { "pk" => "u1\u{0}", "sk" => ts });
        items.push(item! { "pk" => "u0", "sk" => ts });
    }
    for chunk in items.chunks(20) {
        kv.batch_put(&table, chunk.to_vec()).await?;
    }
    let q = Query::new(&table, "u1")
        .sort(SortCondition::Between(2.into(), 8.into()))
        .descending()
        .limit(3);
    let mut pages = Vec::new();
    let mut cursor = None;
    loop {
        let page = kv.query(q.clone().cursor(cursor)).await?;
        ensure!(
            page.items.len() <= 3,
            "page of {} > limit 3",
            page.items.len()
        );
        pages.push(sort_ints(&page.items));
        cursor = page.next;
        if cursor.is_none() {
            break;
        }
        ensure!(pages.len() < 10, "pagination does not end");
    }
    let all: Vec<i64> = pages.concat();
    ensure!(
        all == vec![8, 7, 6, 5, 4, 3, 2],
        "got {all:?} in pages {pages:?}"
    );
    ensure!(
        pages[0] == vec![8, 7, 6],
        "first page {:?} != [8, 7, 6]",
        pages[0]
    );
    let lt = kv
        .query_all(Query::new(&table, "u1").sort(SortCondition::Lt(3.into())))
        .await?;
    ensure!(
        sort_ints(&lt) == vec![0, 1, 2],
        "Lt 3: {:?}",
        sort_ints(&lt)
    );
    let ge = kv
        .query_all(Query::new(&table, "u1").sort(SortCondition::Ge(8.into())))
        .await?;
    ensure!(sort_ints(&ge) == vec![8, 9], "Ge 8: {:?}", sort_ints(&ge));
    let eq = kv
        .query_all(Query::new(&table, "u1").sort(SortCondition::Eq(5.into())))
        .await?;
    ensure!(
        eq.len() == 1 && eq[0].get("n") == Some(&Value::Int(50)),
        "Eq 5: {eq:?}"
    );
    let whole = kv.query_all(Query::new(&table, "u1")).await?;
    ensure!(
        sort_ints(&whole) == (0..10).collect::<Vec<_>>(),
        "whole partition: {:?}",
        sort_ints(&whole)
    );
    ensure!(
        whole
            .iter()
            .all(|i| i.get("pk") == Some(&Value::from("u1"))),
        "items of another partition leaked into the query"
    );
    // Bad queries: bounds the wrong way round, a zero page size, a cursor nobody issued.
    expect_err!(
        kv.query(Query::new(&table, "u1").sort(SortCondition::Between(8.into(), 2.into())))
            .await,
        InvalidArgument
    );
    expect_err!(
        kv.query(Query::new(&table, "u1").limit(0)).await,
        InvalidArgument
    );
    expect_err!(
        kv.query(Query::new(&table, "u1").cursor(Some("not a cursor!".into())))
            .await,
        InvalidArgument
    );
    let none = kv.query(Query::new(&table, "nobody")).await?;
    ensure!(
        none.items.is_empty() && none.next.is_none(),
        "empty partition: {none:?}"
    );
    kv.delete_table(&table).await?;
    Ok(())
}

/// `BeginsWith` selects the sort keys with a prefix, in order; it is refused on numbers.
pub async fn query_begins_with(ctx: &mut Ctx) -> Outcome {
    let (kv, table) = sorted_table(ctx, "prefix", KeyType::Str).await?;
    for sk in [
        "2024-01-31",
        "2024-02",
        "2024-02-15",
        "2024-02-01",
        "2024-03-01",
        "2025-02-01",
    ] {
        kv.put(&table, item! { "pk" => "log", "sk" => sk }).await?;
    }
    let got = kv
        .query_all(Query::new(&table, "log").sort(SortCondition::BeginsWith("2024-02".into())))
        .await?;
    let keys: Vec<&str> = got
        .iter()
        .filter_map(|i| i.get("sk").and_then(Value::as_str))
        .collect();
    ensure!(
        keys == ["2024-02", "2024-02-01", "2024-02-15"],
        "BeginsWith 2024-02: {keys:?}"
    );
    let (kv2, numbers) = sorted_table(ctx, "prefixnum", KeyType::Number).await?;
    expect_err!(
        kv2.query(Query::new(&numbers, "p").sort(SortCondition::BeginsWith(Value::Int(1))))
            .await,
        InvalidArgument
    );
    kv.delete_table(&table).await?;
    kv.delete_table(&numbers).await?;
    Ok(())
}

/// Numeric sort keys order as numbers: integers and fractions interleave, and integers
/// beyond 2^53 stay distinct.
pub async fn number_sort_keys_order_exactly(ctx: &mut Ctx) -> Outcome {
    let (kv, table) = sorted_table(ctx, "numbers", KeyType::Number).await?;
    let big = 1_i64 << 53;
    let values = [
        Value::Int(big + 1),
        Value::Int(-3),
        Value::Float(2.5),
        Value::Int(big),
        Value::Float(-0.5),
        Value::Int(10),
        Value::Int(2),
        Value::Int(-100),
    ];
    for (n, v) in values.iter().enumerate() {
        let mut item = item! { "pk" => "p", "n" => n as i64 };
        item.insert("sk".into(), v.clone());
        kv.put(&table, item).await?;
    }
    let got = kv.query_all(Query::new(&table, "p")).await?;
    let order: Vec<Value> = got.iter().filter_map(|i| i.get("sk").cloned()).collect();
    let expected = vec![
        Value::Int(-100),
        Value::Int(-3),
        Value::Float(-0.5),
        Value::Int(2),
        Value::Float(2.5),
        Value::Int(10),
        Value::Int(big),
        Value::Int(big + 1),
    ];
    ensure!(order == expected, "order {order:?}, expected {expected:?}");
    let above = kv
        .query_all(Query::new(&table, "p").sort(SortCondition::Gt(Value::Int(big))))
        .await?;
    ensure!(
        above.len() == 1 && above[0].get("sk") == Some(&Value::Int(big + 1)),
        "Gt 2^53: {above:?}"
    );
    kv.delete_table(&table).await?;
    Ok(())
}

/// Following scan cursors visits every item exactly once.
pub async fn scan_pages_cover_every_item_once(ctx: &mut Ctx) -> Outcome {
    let (kv, table) = sorted_table(ctx, "scan", KeyType::Number).await?;
    let mut expected = BTreeSet::new();
    let mut batch = Vec::new();
    for p in 0..5 {
        for s in 0..5 {
            if p * 5 + s >= 23 {
                break;
            }
            batch.push(item! { "pk" => format!("p{p}"), "sk" => s });
            expected.insert((format!("p{p}"), s as i64));
        }
    }
    kv.batch_put(&table, batch).await?;
    let mut seen = Vec::new();
    let mut cursor = None;
    for _ in 0..20 {
        let page = kv.scan(Scan::new(&table).limit(5).cursor(cursor)).await?;
        ensure!(page.items.len() <= 5, "page of {} > 5", page.items.len());
        for i in &page.items {
            let pk = i
                .get("pk")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let sk = i.get("sk").and_then(Value::as_i64).unwrap_or(-1);
            seen.push((pk, sk));
        }
        cursor = page.next;
        if cursor.is_none() {
            break;
        }
    }
    ensure!(cursor.is_none(), "scan did not end after 20 pages");
    let unique: BTreeSet<_> = seen.iter().cloned().collect();
    ensure!(
        seen.len() == 23 && unique == expected,
        "scan saw {} items ({} distinct), expected 23",
        seen.len(),
        unique.len()
    );
    kv.delete_table(&table).await?;
    Ok(())
}

/// batch_put writes every item; batch_get returns found items in the order asked, leaving
/// out missing ones.
pub async fn batch_get_and_put(ctx: &mut Ctx) -> Outcome {
    let (kv, table) = simple_table(ctx, "batch").await?;
    let items: Vec<Item> = (0..25)
        .map(|n| item! { "id" => format!("k{n:02}"), "n" => n })
        .collect();
    kv.batch_put(&table, items).await?;
    let keys = vec![
        Key::new("k20"),
        Key::new("missing"),
        Key::new("k03"),
        Key::new("k24"),
        Key::new("k00"),
    ];
    let got = kv.batch_get(&table, keys).await?;
    let ids: Vec<&str> = got
        .iter()
        .filter_map(|i| i.get("id").and_then(Value::as_str))
        .collect();
    ensure!(
        ids == ["k20", "k03", "k24", "k00"],
        "batch_get returned {ids:?}"
    );
    ensure!(
        got[1].get("n") == Some(&Value::Int(3)),
        "k03 has {:?}",
        got[1]
    );
    let hundred: Vec<Key> = (0..100).map(|n| Key::new(format!("k{n:02}"))).collect();
    let got = kv.batch_get(&table, hundred).await?;
    ensure!(got.len() == 25, "100-key batch_get found {}", got.len());
    kv.delete_table(&table).await?;
    Ok(())
}

/// Batches over the limits are refused, and a batch_put with one bad item writes nothing.
pub async fn batch_limits_and_atomicity(ctx: &mut Ctx) -> Outcome {
    let (kv, table) = simple_table(ctx, "batchlimits").await?;
    let items: Vec<Item> = (0..26).map(|n| item! { "id" => format!("k{n}") }).collect();
    let err = expect_err!(kv.batch_put(&table, items).await, InvalidArgument);
    ensure!(
        err.to_string().contains(&table),
        "error does not name the table: {err}"
    );
    let keys: Vec<Key> = (0..101).map(|n| Key::new(format!("k{n}"))).collect();
    expect_err!(kv.batch_get(&table, keys).await, InvalidArgument);
    let mut items: Vec<Item> = (0..5).map(|n| item! { "id" => format!("k{n}") }).collect();
    items.push(item! { "id" => 5, "note" => "wrong key type" });
    expect_err!(kv.batch_put(&table, items).await, InvalidArgument);
    let page = kv.scan(Scan::new(&table)).await?;
    ensure!(
        page.items.is_empty(),
        "a refused batch wrote {} items",
        page.items.len()
    );
    kv.delete_table(&table).await?;
    Ok(())
}

/// Items over 400 KiB are refused; items just under the limit are stored.
pub async fn oversize_item_rejected(ctx: &mut Ctx) -> Outcome {
    let (kv, table) = simple_table(ctx, "oversize").await?;
    let big = item! { "id" => "big", "data" => Bytes::from(vec![7_u8; MAX_ITEM_SIZE + 1]) };
    let err = expect_err!(kv.put(&table, big).await, InvalidArgument);
    ensure!(
        err.to_string().contains(&table),
        "error does not name the table: {err}"
    );
    ensure!(
        kv.get_item(&table, Key::new("big")).await?.is_none(),
        "the oversize item was stored"
    );
    let fits = item! { "id" => "fits", "data" => Bytes::from(vec![7_u8; 390 * 1024]) };
    kv.put(&table, fits.clone()).await?;
    let got = kv.get_item(&table, Key::new("fits")).await?;
    ensure!(got == Some(fits), "the 390 KiB item did not read back");
    kv.delete_table(&table).await?;
    Ok(())
}

/// Lists and maps nested 32 levels deep (DynamoDB's limit) are stored and read back; 33 are
/// InvalidArgument naming the attribute, in an item and in a condition, and nothing is
/// stored.
pub async fn nesting_past_32_levels_rejected(ctx: &mut Ctx) -> Outcome {
    use mvi_core::kv::{Condition, MAX_DEPTH, PutItem, Value};
    let (kv, table) = simple_table(ctx, "nesting").await?;
    let nest = |n: usize| {
        let mut v = Value::Int(1);
        for i in 0..n {
            v = if i % 2 == 0 {
                Value::List(vec![v])
            } else {
                Value::Map([("m".to_string(), v)].into_iter().collect())
            };
        }
        v
    };
    let ok = item! { "id" => "ok", "tree" => nest(MAX_DEPTH) };
    kv.put(&table, ok.clone()).await?;
    let got = kv.get_item(&table, Key::new("ok")).await?;
    ensure!(got == Some(ok), "the 32-level item did not read back");
    let deep = item! { "id" => "deep", "tree" => nest(MAX_DEPTH + 1) };
    let err = expect_err!(kv.put(&table, deep).await, InvalidArgument);
    ensure!(
        err.message().contains("\"tree\"") && err.message().contains("33 levels"),
        "the error does not name the attribute and its depth: {err}"
    );
    ensure!(
        kv.get_item(&table, Key::new("deep")).await?.is_none(),
        "the too-deep item was stored"
    );
    let guarded = PutItem::new(&table, item! { "id" => "ok", "n" => 2 })
        .condition(Condition::equals("tree", nest(MAX_DEPTH + 1)));
    expect_err!(kv.put_item(guarded).await, InvalidArgument);
    kv.delete_table(&table).await?;
    Ok(())
}

/// Bad table names are InvalidArgument, naming the table.
pub async fn invalid_table_name_rejected(ctx: &mut Ctx) -> Outcome {
    let kv = kv(ctx)?;
    for bad in ["ab", "has space", "slash/name", &"x".repeat(256)] {
        let err = expect_err!(
            kv.create_table(TableSpec::new(bad, KeyAttr::new("id", KeyType::Str)))
                .await,
            InvalidArgument
        );
        ensure!(
            err.to_string().contains(bad),
            "error does not name {bad:?}: {err}"
        );
        expect_err!(kv.get_item(bad, Key::new("k")).await, InvalidArgument);
    }
    Ok(())
}

/// Keys of the wrong type, missing key attributes and empty key strings are InvalidArgument.
pub async fn wrong_key_rejected(ctx: &mut Ctx) -> Outcome {
    let (kv, table) = sorted_table(ctx, "wrongkey", KeyType::Number).await?;
    let err = expect_err!(
        kv.put(&table, item! { "pk" => 1, "sk" => 1 }).await,
        InvalidArgument
    );
    ensure!(
        err.to_string().contains(&table),
        "error does not name the table: {err}"
    );
    expect_err!(
        kv.put(&table, item! { "pk" => "a", "sk" => "not a number" })
            .await,
        InvalidArgument
    );
    expect_err!(kv.put(&table, item! { "pk" => "a" }).await, InvalidArgument);
    expect_err!(
        kv.put(&table, item! { "sk" => 1, "other" => "x" }).await,
        InvalidArgument
    );
    expect_err!(
        kv.put(&table, item! { "pk" => "", "sk" => 1 }).await,
        InvalidArgument
    );
    expect_err!(kv.get_item(&table, Key::new("a")).await, InvalidArgument);
    expect_err!(
        kv.get_item(&table, Key::with_sort(1, 1)).await,
        InvalidArgument
    );
    expect_err!(kv.query(Query::new(&table, 5)).await, InvalidArgument);
    expect_err!(
        kv.query(Query::new(&table, "a").sort(SortCondition::Eq("x".into())))
            .await,
        InvalidArgument
    );
    kv.delete_table(&table).await?;
    Ok(())
}

/// Every operation on a table that does not exist is NotFound, naming the table.
pub async fn unknown_table_is_not_found(ctx: &mut Ctx) -> Outcome {
    let kv = kv(ctx)?;
    let table = ctx.name("nosuchtable");
    let err = expect_err!(kv.describe_table(&table).await, NotFound);
    ensure!(
        err.to_string().contains(&table),
        "error does not name the table: {err}"
    );
    expect_err!(kv.get_item(&table, Key::new("k")).await, NotFound);
    expect_err!(kv.put(&table, item! { "id" => "k" }).await, NotFound);
    expect_err!(
        kv.delete_item(DeleteItem::new(&table, Key::new("k"))).await,
        NotFound
    );
    expect_err!(kv.query(Query::new(&table, "k")).await, NotFound);
    expect_err!(kv.scan(Scan::new(&table)).await, NotFound);
    expect_err!(kv.batch_get(&table, vec![Key::new("k")]).await, NotFound);
    expect_err!(
        kv.batch_put(&table, vec![item! { "id" => "k" }]).await,
        NotFound
    );
    expect_err!(kv.delete_table(&table).await, NotFound);
    Ok(())
}

/// A conditional delete removes the item only if the condition holds, and returns it.
pub async fn delete_with_condition(ctx: &mut Ctx) -> Outcome {
    let (kv, table) = simple_table(ctx, "delete").await?;
    let item = item! { "id" => "k", "v" => 1 };
    kv.put(&table, item.clone()).await?;
    expect_err!(
        kv.delete_item(DeleteItem::new(&table, Key::new("k")).condition(Condition::equals("v", 2)))
            .await,
        PreconditionFailed
    );
    ensure!(
        kv.get_item(&table, Key::new("k")).await?.is_some(),
        "a failed conditional delete removed the item"
    );
    let deleted = kv
        .delete_item(DeleteItem::new(&table, Key::new("k")).condition(Condition::equals("v", 1)))
        .await?;
    ensure!(deleted == Some(item), "delete returned {deleted:?}");
    ensure!(
        kv.get_item(&table, Key::new("k")).await?.is_none(),
        "the item is still there"
    );
    let again = kv
        .delete_item(DeleteItem::new(&table, Key::new("k")))
        .await?;
    ensure!(
        again.is_none(),
        "deleting a missing item returned {again:?}"
    );
    expect_err!(
        kv.delete_item(DeleteItem::new(&table, Key::new("k")).condition(Condition::Exists))
            .await,
        PreconditionFailed
    );
    kv.delete_table(&table).await?;
    Ok(())
}

/// Tables can be described, listed, deleted and created again empty; names are unique.
pub async fn describe_list_delete_table(ctx: &mut Ctx) -> Outcome {
    let (kv, table) = sorted_table(ctx, "lifecycle", KeyType::Bytes).await?;
    let info = kv.describe_table(&table).await?;
    ensure!(info.spec.name == table, "describe named {}", info.spec.name);
    ensure!(
        info.spec.partition_key == KeyAttr::new("pk", KeyType::Str)
            && info.spec.sort_key == Some(KeyAttr::new("sk", KeyType::Bytes)),
        "describe returned keys {:?} / {:?}",
        info.spec.partition_key,
        info.spec.sort_key
    );
    ensure!(
        info.item_count == 0,
        "new table has {} items",
        info.item_count
    );
    expect_err!(
        kv.create_table(TableSpec::new(&table, KeyAttr::new("id", KeyType::Str)))
            .await,
        AlreadyExists
    );
    let names = kv.list_tables().await?;
    ensure!(
        names.contains(&table),
        "list_tables lacks {table}: {names:?}"
    );
    let mut sorted = names.clone();
    sorted.sort();
    ensure!(sorted == names, "list_tables is not sorted: {names:?}");
    kv.put(
        &table,
        item! { "pk" => "a", "sk" => Bytes::from_static(b"\x00\x01") },
    )
    .await?;
    kv.delete_table(&table).await?;
    let names = kv.list_tables().await?;
    ensure!(!names.contains(&table), "deleted table still listed");
    expect_err!(kv.describe_table(&table).await, NotFound);
    // A table created again under the same name starts empty.
    kv.create_table(TableSpec::new(&table, KeyAttr::new("pk", KeyType::Str)))
        .await?;
    let page = kv.scan(Scan::new(&table)).await?;
    ensure!(
        page.items.is_empty(),
        "recreated table holds old items: {page:?}"
    );
    kv.delete_table(&table).await?;
    Ok(())
}

/// Tables and items survive a restart.
pub async fn state_survives_reopen(ctx: &mut Ctx) -> Outcome {
    let (kv, table) = sorted_table(ctx, "reopen", KeyType::Number).await?;
    for n in 0..5 {
        kv.put(
            &table,
            item! { "pk" => "p", "sk" => n, "v" => format!("v{n}") },
        )
        .await?;
    }
    drop(kv);
    ctx.reopen().await?;
    let kv = self::kv(ctx)?;
    let info = kv.describe_table(&table).await?;
    ensure!(
        info.spec.sort_key == Some(KeyAttr::new("sk", KeyType::Number)),
        "schema lost: {:?}",
        info.spec
    );
    let got = kv.get_item(&table, Key::with_sort("p", 3)).await?;
    ensure!(
        got.as_ref().and_then(|i| i.get("v")) == Some(&Value::from("v3")),
        "item lost: {got:?}"
    );
    let all = kv.query_all(Query::new(&table, "p")).await?;
    ensure!(
        sort_ints(&all) == vec![0, 1, 2, 3, 4],
        "after reopen: {:?}",
        sort_ints(&all)
    );
    // Writes and conditions work on the reopened state.
    expect_err!(
        kv.put_item(
            PutItem::new(&table, item! { "pk" => "p", "sk" => 0 }).condition(Condition::NotExists)
        )
        .await,
        PreconditionFailed
    );
    kv.put(&table, item! { "pk" => "p", "sk" => 5 }).await?;
    kv.delete_table(&table).await?;
    Ok(())
}

/// Placeholders `:name → value` for the expressions of the cases below.
fn values(pairs: &[(&str, Value)]) -> Bindings {
    Bindings::new(
        BTreeMap::new(),
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    )
}

/// An update expression parsed with `pairs` as its values.
fn update_expr(src: &str, pairs: &[(&str, Value)]) -> Result<Update> {
    parse_update(src, &mut values(pairs)).map_err(|e| Failure::from(format!("{src}: {e}")))
}

/// A condition expression parsed with `pairs` as its values.
fn cond_expr(src: &str, pairs: &[(&str, Value)]) -> Result<Condition> {
    parse_condition("ConditionExpression", src, &mut values(pairs))
        .map(Condition::Expr)
        .map_err(|e| Failure::from(format!("{src}: {e}")))
}

/// An update creates a missing item from its key, counts from nothing, and returns what is
/// asked for (the whole new item, or the touched attributes as they were).
pub async fn update_creates_and_counts(ctx: &mut Ctx) -> Outcome {
    let (kv, table) = simple_table(ctx, "update").await?;
    let bump = update_expr(
        "SET visits = if_not_exists(visits, :zero) + :one, page = :p",
        &[
            (":zero", 0.into()),
            (":one", 1.into()),
            (":p", "/home".into()),
        ],
    )?;
    let first = kv
        .update_item(
            UpdateItem::new(&table, Key::new("u1"), bump.clone()).returns(ReturnValues::AllNew),
        )
        .await?;
    ensure!(
        first == Some(item! { "id" => "u1", "visits" => 1, "page" => "/home" }),
        "the first update returned {first:?}"
    );
    // Both attributes change here: what UPDATED_OLD returns for an attribute set to the value
    // it had differs between DynamoDB emulations.
    let bump_about = update_expr(
        "SET visits = if_not_exists(visits, :zero) + :one, page = :p",
        &[
            (":zero", 0.into()),
            (":one", 1.into()),
            (":p", "/about".into()),
        ],
    )?;
    let old = kv
        .update_item(
            UpdateItem::new(&table, Key::new("u1"), bump_about).returns(ReturnValues::UpdatedOld),
        )
        .await?;
    ensure!(
        old == Some(item! { "visits" => 1, "page" => "/home" }),
        "UPDATED_OLD returned {old:?}"
    );
    let none = kv
        .update_item(UpdateItem::new(&table, Key::new("u1"), bump))
        .await?;
    ensure!(none.is_none(), "ReturnValues NONE returned {none:?}");
    let got = kv.get_item(&table, Key::new("u1")).await?;
    let visits = got.as_ref().and_then(|i| i.get("visits")).cloned();
    ensure!(
        visits == Some(Value::Int(3)),
        "visits is {visits:?} after 3 updates"
    );
    // ADD counts from zero too, and a number may go negative.
    let add = Update::default().add(Path::attr("score"), -5);
    let new = kv
        .update_item(UpdateItem::new(&table, Key::new("u2"), add).returns(ReturnValues::UpdatedNew))
        .await?;
    // (moto also returns the new item's key attributes here; DynamoDB returns the updated ones.)
    let score = new.as_ref().and_then(|i| i.get("score")).cloned();
    ensure!(score == Some(Value::Int(-5)), "ADD returned {new:?}");
    kv.delete_table(&table).await?;
    Ok(())
}

/// An update's condition is checked against the item before it (a failed one changes
/// nothing); nested paths, list appends and removals apply; key attributes, overlapping paths
/// and paths through missing maps are refused.
pub async fn update_conditions_and_paths(ctx: &mut Ctx) -> Outcome {
    let (kv, table) = simple_table(ctx, "paths").await?;
    let doc = item! { "id" => "d", "version" => 1, "tags" => vec![Value::from("a")],
    "meta" => Value::Map(BTreeMap::new()), "draft" => true };
    kv.put(&table, doc.clone()).await?;
    let stale = cond_expr("version = :v", &[(":v", 7.into())])?;
    let change = update_expr("SET version = :two", &[(":two", 2.into())])?;
    expect_err!(
        kv.update_item(UpdateItem::new(&table, Key::new("d"), change.clone()).condition(stale))
            .await,
        PreconditionFailed
    );
    ensure!(
        kv.get_item(&table, Key::new("d")).await? == Some(doc.clone()),
        "a failed conditional update changed the item"
    );
    let edit = update_expr(
        "SET version = version + :one, tags = list_append(tags, :more), meta.author = :who \
         REMOVE draft",
        &[
            (":one", 1.into()),
            (":more", vec![Value::from("b")].into()),
            (":who", "ann".into()),
        ],
    )?;
    let current = cond_expr(
        "version = :v AND attribute_exists(draft)",
        &[(":v", 1.into())],
    )?;
    let new = kv
        .update_item(
            UpdateItem::new(&table, Key::new("d"), edit)
                .condition(current)
                .returns(ReturnValues::AllNew),
        )
        .await?;
    let want = item! { "id" => "d", "version" => 2,
    "tags" => vec![Value::from("a"), Value::from("b")],
    "meta" => Value::Map([("author".to_owned(), Value::from("ann"))].into()) };
    ensure!(new == Some(want), "the update gave {new:?}");
    expect_err!(
        kv.update_item(UpdateItem::new(
            &table,
            Key::new("d"),
            update_expr("SET id = :x", &[(":x", "e".into())])?
        ))
        .await,
        InvalidArgument
    );
    expect_err!(
        kv.update_item(UpdateItem::new(
            &table,
            Key::new("d"),
            update_expr("SET meta = :x, meta.author = :x", &[(":x", "e".into())])?
        ))
        .await,
        InvalidArgument
    );
    expect_err!(
        kv.update_item(UpdateItem::new(
            &table,
            Key::new("d"),
            update_expr("SET nothing.here = :x", &[(":x", "e".into())])?
        ))
        .await,
        InvalidArgument
    );
    kv.delete_table(&table).await?;
    Ok(())
}

/// Concurrent `ADD`s on one counter lose none: each update is atomic.
pub async fn concurrent_updates_are_exact(ctx: &mut Ctx) -> Outcome {
    let (kv, table) = simple_table(ctx, "adds").await?;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (kv, table) = (kv.clone(), table.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..5 {
                let add = Update::default().add(Path::attr("n"), 1);
                kv.update_item(UpdateItem::new(&table, Key::new("c"), add))
                    .await?;
            }
            Ok::<_, mvi_core::Error>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let got = kv.get_item(&table, Key::new("c")).await?;
    let n = got.as_ref().and_then(|i| i.get("n")).cloned();
    ensure!(n == Some(Value::Int(40)), "counter is {n:?} after 40 adds");
    kv.delete_table(&table).await?;
    Ok(())
}

/// Puts and deletes take any condition expression.
pub async fn expression_conditions_on_put_and_delete(ctx: &mut Ctx) -> Outcome {
    let (kv, table) = simple_table(ctx, "exprs").await?;
    let newer = |v: i64| -> Result<Condition> {
        cond_expr(
            "attribute_not_exists(id) OR version < :v",
            &[(":v", v.into())],
        )
    };
    kv.put_item(PutItem::new(&table, item! { "id" => "x", "version" => 2 }).condition(newer(2)?))
        .await?;
    expect_err!(
        kv.put_item(
            PutItem::new(&table, item! { "id" => "x", "version" => 1 }).condition(newer(1)?)
        )
        .await,
        PreconditionFailed
    );
    kv.put_item(PutItem::new(&table, item! { "id" => "x", "version" => 3 }).condition(newer(3)?))
        .await?;
    let only_old = cond_expr("version IN (:a, :b)", &[(":a", 1.into()), (":b", 2.into())])?;
    expect_err!(
        kv.delete_item(DeleteItem::new(&table, Key::new("x")).condition(only_old))
            .await,
        PreconditionFailed
    );
    let is_three = cond_expr(
        "version BETWEEN :lo AND :hi",
        &[(":lo", 3.into()), (":hi", 9.into())],
    )?;
    let gone = kv
        .delete_item(DeleteItem::new(&table, Key::new("x")).condition(is_three))
        .await?;
    ensure!(
        gone == Some(item! { "id" => "x", "version" => 3 }),
        "delete returned {gone:?}"
    );
    kv.delete_table(&table).await?;
    Ok(())
}

/// A transaction applies every write or none: a failed condition anywhere cancels all, and
/// the error says which action failed.
pub async fn transaction_all_or_nothing(ctx: &mut Ctx) -> Outcome {
    let (kv, table) = simple_table(ctx, "txn").await?;
    kv.put(&table, item! { "id" => "from", "balance" => 10 })
        .await?;
    kv.put(&table, item! { "id" => "to", "balance" => 0 })
        .await?;
    kv.put(&table, item! { "id" => "lock", "held" => false })
        .await?;
    let transfer = |n: i64| -> Result<Vec<TransactWrite>> {
        Ok(vec![
            TransactWrite::Update(
                UpdateItem::new(
                    &table,
                    Key::new("from"),
                    update_expr("SET balance = balance - :n", &[(":n", n.into())])?,
                )
                .condition(cond_expr("balance >= :n", &[(":n", n.into())])?),
            ),
            TransactWrite::Update(UpdateItem::new(
                &table,
                Key::new("to"),
                update_expr("SET balance = balance + :n", &[(":n", n.into())])?,
            )),
            TransactWrite::Check {
                table: table.clone(),
                key: Key::new("lock"),
                condition: cond_expr("held = :f", &[(":f", false.into())])?,
            },
            TransactWrite::Put(PutItem::new(
                &table,
                item! { "id" => format!("log-{n}"), "amount" => n },
            )),
        ])
    };
    kv.transact_write(transfer(4)?).await?;
    let balance = |item: Option<Item>| item.and_then(|i| i.get("balance").cloned());
    ensure!(
        balance(kv.get_item(&table, Key::new("from")).await?) == Some(Value::Int(6))
            && balance(kv.get_item(&table, Key::new("to")).await?) == Some(Value::Int(4))
            && kv.get_item(&table, Key::new("log-4")).await?.is_some(),
        "the transaction was not applied whole"
    );
    // Too much: the first condition fails, and nothing of the rest is applied.
    let err = expect_err!(kv.transact_write(transfer(7)?).await, PreconditionFailed);
    let reasons = TransactionCanceled::of(&err).map(|c| {
        c.reasons
            .iter()
            .map(|r| r.as_ref().map(|(code, _)| code.clone()))
            .collect::<Vec<_>>()
    });
    ensure!(
        reasons
            == Some(vec![
                Some("ConditionalCheckFailed".to_owned()),
                None,
                None,
                None
            ]),
        "cancellation reasons {reasons:?} from {err}"
    );
    ensure!(
        balance(kv.get_item(&table, Key::new("to")).await?) == Some(Value::Int(4))
            && kv.get_item(&table, Key::new("log-7")).await?.is_none(),
        "a cancelled transaction applied a write"
    );
    // One item twice is refused before anything is applied.
    let twice = vec![
        TransactWrite::Put(PutItem::new(&table, item! { "id" => "dup", "n" => 1 })),
        TransactWrite::Delete(DeleteItem::new(&table, Key::new("dup"))),
    ];
    expect_err!(kv.transact_write(twice).await, InvalidArgument);
    ensure!(
        kv.get_item(&table, Key::new("dup")).await?.is_none(),
        "a refused transaction wrote"
    );
    kv.delete_table(&table).await?;
    Ok(())
}
