//! The five data services of the local backend, end to end.
//!
//! ```text
//! cargo run --example data_services             # state under .mvi/ (kept between runs)
//! cargo run --example data_services -- --memory # state in memory only
//! ```
//!
//! It stores a page in Blob, counts visits in KV with optimistic concurrency, keeps the app's
//! secret encrypted with Crypto (envelope encryption), writes and filters Log events, records
//! request latencies in Metric and watches them with an alarm. Run it twice: the state from
//! the first run is still there (the visit counter goes on).

use std::time::{Duration, Instant};

use mvi::crypto::{AuditQuery, CreateKey, EncryptionContext};
use mvi::kv::{Condition, Key, KeyAttr, KeyType, PutItem, TableSpec, Value};
use mvi::log::{FilterEvents, LogEvent};
use mvi::metric::{AlarmSpec, Comparison, Datum, GetStatistics, MetricId, Statistic, Unit};
use mvi::prelude::*;
use mvi::{ErrorKind, Result, item};

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("quickstart failed: {e}");
        std::process::exit(1);
    }
}

/// Treats "already exists" as success, so the quickstart can run again on the same state.
fn exists_ok<T>(r: Result<T>) -> Result<()> {
    match r {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

async fn run() -> Result<()> {
    let started = Instant::now();
    let memory = std::env::args().any(|a| a == "--memory");
    let builder = mvi::local::LocalCloud::builder().seed(42);
    let cloud = if memory {
        println!("state: in memory");
        builder.in_memory().build().await?
    } else {
        println!("state: .mvi/ (delete it to start over)");
        builder.root(".mvi").build().await?
    };

    // Crypto: one managed key; the app's secret is kept only as ciphertext.
    let crypto = cloud.crypto()?;
    let key = match crypto.describe_key("alias/quickstart").await {
        Ok(k) => k,
        Err(e) if e.is_not_found() => {
            crypto
                .create_key(CreateKey::new("quickstart app secrets").alias("alias/quickstart"))
                .await?
        }
        Err(e) => return Err(e),
    };
    let context: EncryptionContext = [("app".to_string(), "quickstart".to_string())].into();
    let secret = crypto
        .encrypt(&key.id, b"s3cr3t-api-token", &context)
        .await?;
    let back = crypto.decrypt(&secret, &context).await?;
    println!(
        "crypto: key {} (v{}), secret encrypted to {} bytes, decrypts: {}",
        key.id,
        key.versions,
        secret.len(),
        back.plaintext.expose() == b"s3cr3t-api-token"
    );

    // Blob: the site's page, and the encrypted secret beside it.
    let blob = cloud.blob()?;
    exists_ok(blob.create_bucket("quickstart-site").await)?;
    let page = blob
        .put_object(
            mvi::blob::PutObject::new("quickstart-site", "index.html", "<h1>Hello from mvi</h1>")
                .content_type("text/html"),
        )
        .await?;
    blob.put("quickstart-site", "secrets/api-token.enc", secret.clone())
        .await?;
    let listed = blob.list_all("quickstart-site", "").await?;
    println!(
        "blob: put index.html ({} bytes, etag {}), bucket holds {} objects",
        page.size,
        page.etag,
        listed.len()
    );

    // KV: a visit counter, incremented with a conditional write (optimistic concurrency).
    let kv = cloud.kv()?;
    exists_ok(
        kv.create_table(TableSpec::new(
            "quickstart-visits",
            KeyAttr::new("page", KeyType::Str),
        ))
        .await,
    )?;
    let visits = increment(kv.as_ref(), "/index.html").await?;
    println!("kv: /index.html visited {visits} time(s) (across runs)");

    // Log: app events, then a filter for errors.
    let logs = cloud.logs()?;
    exists_ok(logs.create_group("/quickstart/app", Some(7)).await)?;
    let stream = format!("run-{visits}");
    logs.create_stream("/quickstart/app", &stream).await?;
    let now = chrono::Utc::now();
    logs.put_events(
        "/quickstart/app",
        &stream,
        vec![
            LogEvent::new(now, "INFO served /index.html"),
            LogEvent::new(now, "ERROR upstream timed out"),
            LogEvent::new(now, "INFO served /index.html"),
        ],
    )
    .await?;
    let errors = logs
        .filter_events(FilterEvents::new("/quickstart/app", "ERROR").streams([stream.as_str()]))
        .await?;
    println!(
        "log: 3 events written to /quickstart/app/{stream}; filter \"ERROR\" found {}: {:?}",
        errors.items.len(),
        errors.items.iter().map(|r| &r.message).collect::<Vec<_>>()
    );

    // Metric: request latencies, their percentiles, and an alarm on the p99. The points are
    // stamped a minute ago so they fall in the last complete minute, which the alarm reads.
    let metrics = cloud.metrics()?;
    let minute_ago = now - chrono::Duration::seconds(60);
    let latency = MetricId::new("Quickstart/Web", "Latency").dimension("Page", "/index.html");
    let points: Vec<Datum> = (1..=100)
        .map(|i| {
            Datum::new("Latency", f64::from(i), minute_ago)
                .dimension("Page", "/index.html")
                .unit(Unit::Milliseconds)
        })
        .collect();
    metrics.put_data("Quickstart/Web", points).await?;
    let stats = metrics
        .get_statistics(GetStatistics::new(
            latency.clone(),
            now - chrono::Duration::minutes(2),
            now + chrono::Duration::minutes(1),
            Duration::from_secs(3600),
            [Statistic::SampleCount, Statistic::P50, Statistic::P99],
        ))
        .await?;
    for dp in &stats {
        println!(
            "metric: {latency}: count {:?}, p50 {:?} ms, p99 {:?} ms",
            dp.get(Statistic::SampleCount),
            dp.get(Statistic::P50),
            dp.get(Statistic::P99)
        );
    }
    metrics
        .put_alarm(AlarmSpec::new(
            "quickstart-slow-p99",
            latency,
            Statistic::P99,
            Comparison::GreaterThan,
            250.0,
            Duration::from_secs(60),
            1,
        ))
        .await?;
    for alarm in metrics.describe_alarms(Some("quickstart-")).await? {
        println!(
            "metric: alarm {} is {:?} ({})",
            alarm.spec.name, alarm.state, alarm.reason
        );
    }

    let audit = crypto
        .audit_events(AuditQuery::key(&key.id).limit(5))
        .await?;
    println!("crypto: last {} audit events of the key:", audit.len());
    for e in audit {
        println!(
            "  {} {} {:?} {:?}",
            e.time.format("%H:%M:%S%.3f"),
            e.principal,
            e.operation,
            e.outcome
        );
    }
    println!("done in {:.0?}", started.elapsed());
    Ok(())
}

/// Adds one to a page's counter: read, then write only if nobody changed it in between.
async fn increment(kv: &dyn Kv, page: &str) -> Result<i64> {
    loop {
        let current = kv.get_item("quickstart-visits", Key::new(page)).await?;
        let (count, condition) = match current.as_ref().and_then(|i| i.get("count")) {
            Some(Value::Int(n)) => (*n, Condition::equals("count", *n)),
            _ => (0, Condition::NotExists),
        };
        let next = item! { "page" => page, "count" => count + 1 };
        match kv
            .put_item(PutItem::new("quickstart-visits", next).condition(condition))
            .await
        {
            Ok(()) => return Ok(count + 1),
            Err(e) if e.kind() == ErrorKind::PreconditionFailed => continue,
            Err(e) => return Err(e),
        }
    }
}
