//! Stacks end to end on the local backend: preview, up, idempotence, updates and
//! replacements, drift, destroy, protection, locking, secrets, exports and references.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns
use mvi::kv::{KeyAttr, KeyType};
use mvi::stack::resources::{
    Bucket, BucketArgs, Key, KeyArgs, LogGroup, LogGroupArgs, Noop, NoopArgs, Table, TableArgs,
};
use mvi::stack::{FileStore, LockHolder, Options, ResourceOptions, Stack, StateStore, StepOp};
use mvi::{Cloud, ErrorKind};

struct World {
    _dir: tempfile::TempDir,
    cloud: Cloud,
    stacks: std::path::PathBuf,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let cloud = mvi::local::LocalCloud::builder()
        .root(dir.path().join("cloud"))
        .seed(3)
        .build()
        .await
        .unwrap();
    let stacks = dir.path().join("stacks");
    World {
        _dir: dir,
        cloud,
        stacks,
    }
}

impl World {
    fn stack(&self, name: &str) -> Stack {
        Stack::new(name, self.cloud.clone(), FileStore::new(&self.stacks)).unwrap()
    }
}

/// The program of the shop stack, with a knob for the log retention (an in-place update)
/// and for the table's sort key (a replacement).
fn shop(w: &World, retention: u32, sorted: bool) -> Stack {
    let s = w.stack("shop");
    let assets = Bucket::new(&s, "assets", BucketArgs::new("shop-assets").force_destroy()).unwrap();
    let mut table = TableArgs::new("shop-orders", KeyAttr::new("id", KeyType::Str));
    if sorted {
        table = table.sort_key(KeyAttr::new("at", KeyType::Number));
    }
    Table::new(&s, "orders", table).unwrap();
    LogGroup::new(
        &s,
        "logs",
        LogGroupArgs::new("/shop/app").retention_days(retention),
    )
    .unwrap();
    // Depends on the bucket through its output.
    let cfg = Noop::new(
        &s,
        "config",
        NoopArgs::new(assets.name.format("s3://{}/config")),
    )
    .unwrap();
    s.export("bucket", &assets.name).unwrap();
    s.export("config", &cfg.value).unwrap();
    s
}

#[tokio::test]
async fn preview_up_is_idempotent_then_updates_replaces_and_destroys() {
    let w = world().await;

    let plan = shop(&w, 7, false).preview().await.unwrap();
    assert_eq!(plan.count(StepOp::Create), 4, "{plan}");
    let config = plan.step("config").unwrap();
    assert!(
        config.diffs.iter().any(
            |d| d.new == mvi::stack::Shown::Value(serde_json::json!("s3://shop-assets/config"))
        ),
        "a bucket's name is its argument, so it is known in preview before the bucket \
         exists:\n{plan}"
    );
    let text = plan.to_string();
    assert!(
        text.contains("mvi:blob:Bucket") && text.contains("4 to create"),
        "{text}"
    );

    let report = shop(&w, 7, false).up().await.unwrap();
    assert_eq!(report.plan.count(StepOp::Create), 4);
    assert_eq!(report.outputs["config"], "s3://shop-assets/config");
    // Verified through the service APIs, not the state.
    assert!(
        w.cloud
            .blob()
            .unwrap()
            .list_buckets()
            .await
            .unwrap()
            .iter()
            .any(|b| b.name == "shop-assets")
    );
    assert!(
        w.cloud
            .kv()
            .unwrap()
            .list_tables()
            .await
            .unwrap()
            .contains(&"shop-orders".to_string())
    );

    // Nothing changed: an empty preview, and an up that does nothing.
    let again = shop(&w, 7, false).preview().await.unwrap();
    assert!(again.is_empty(), "{again}");
    let report = shop(&w, 7, false).up().await.unwrap();
    assert!(report.plan.is_empty(), "{}", report.plan);

    // Outputs are readable without re-running the program.
    assert_eq!(
        w.stack("shop").outputs().await.unwrap()["bucket"],
        "shop-assets"
    );

    // Retention changes in place; the sort key forces a replacement.
    let plan = shop(&w, 14, true).preview().await.unwrap();
    assert_eq!(plan.step("logs").unwrap().op, StepOp::Update, "{plan}");
    let orders = plan.step("orders").unwrap();
    assert_eq!(orders.op, StepOp::Replace, "{plan}");
    assert!(
        orders
            .diffs
            .iter()
            .any(|d| d.name == "sort_key" && d.replaces),
        "{plan}"
    );
    shop(&w, 14, true).up().await.unwrap();
    let groups = w.cloud.logs().unwrap().list_groups().await.unwrap();
    assert_eq!(
        groups
            .iter()
            .find(|g| g.name == "/shop/app")
            .unwrap()
            .retention_days,
        Some(14)
    );
    let table = w
        .cloud
        .kv()
        .unwrap()
        .describe_table("shop-orders")
        .await
        .unwrap();
    assert!(table.spec.sort_key.is_some());

    // Destroy leaves nothing.
    let report = shop(&w, 14, true).destroy().await.unwrap();
    assert_eq!(report.plan.count(StepOp::Delete), 4);
    assert!(
        !w.cloud
            .blob()
            .unwrap()
            .list_buckets()
            .await
            .unwrap()
            .iter()
            .any(|b| b.name == "shop-assets")
    );
    assert!(
        w.cloud
            .kv()
            .unwrap()
            .list_tables()
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        w.cloud
            .logs()
            .unwrap()
            .list_groups()
            .await
            .unwrap()
            .is_empty()
    );
    assert!(w.stack("shop").state().await.unwrap().resources.is_empty());
}

#[tokio::test]
async fn drift_is_reported_and_up_heals_it() {
    let w = world().await;
    shop(&w, 7, false).up().await.unwrap();

    // Out of band: the bucket is deleted, the retention changed.
    w.cloud
        .blob()
        .unwrap()
        .delete_bucket("shop-assets")
        .await
        .unwrap();
    w.cloud
        .logs()
        .unwrap()
        .set_retention("/shop/app", Some(30))
        .await
        .unwrap();

    let report = w.stack("shop").refresh().await.unwrap();
    let drift = &report.plan.drift;
    assert!(
        drift
            .iter()
            .any(|d| d.urn.ends_with("::assets") && d.deleted),
        "{drift:?}"
    );
    let logs = drift
        .iter()
        .find(|d| d.urn.ends_with("::logs"))
        .expect("log drift");
    assert!(
        logs.diffs.iter().any(|p| p.name == "retention_days"),
        "{logs:?}"
    );

    let plan = shop(&w, 7, false).preview().await.unwrap();
    assert_eq!(plan.step("assets").unwrap().op, StepOp::Create, "{plan}");
    assert_eq!(plan.step("logs").unwrap().op, StepOp::Update, "{plan}");

    shop(&w, 7, false).up().await.unwrap();
    assert!(
        w.cloud
            .blob()
            .unwrap()
            .list_buckets()
            .await
            .unwrap()
            .iter()
            .any(|b| b.name == "shop-assets")
    );
    let groups = w.cloud.logs().unwrap().list_groups().await.unwrap();
    assert_eq!(groups[0].retention_days, Some(7));
    assert!(shop(&w, 7, false).preview().await.unwrap().is_empty());
}

#[tokio::test]
async fn removed_resources_are_deleted_and_protected_ones_refused() {
    let w = world().await;
    let s = w.stack("p");
    Bucket::with(
        &s,
        "keep",
        BucketArgs::new("p-keep"),
        ResourceOptions::default().protect(),
    )
    .unwrap();
    Bucket::new(&s, "temp", BucketArgs::new("p-temp")).unwrap();
    s.up().await.unwrap();

    // The program no longer declares "temp": up deletes it.
    let s = w.stack("p");
    Bucket::with(
        &s,
        "keep",
        BucketArgs::new("p-keep"),
        ResourceOptions::default().protect(),
    )
    .unwrap();
    let report = s.up().await.unwrap();
    assert_eq!(report.plan.count(StepOp::Delete), 1);
    let names: Vec<String> = w
        .cloud
        .blob()
        .unwrap()
        .list_buckets()
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert_eq!(names, ["p-keep"]);

    let err = s.destroy().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(err.to_string().contains("protected"), "{err}");
    assert_eq!(
        w.cloud.blob().unwrap().list_buckets().await.unwrap().len(),
        1
    );
}

#[tokio::test]
async fn a_failure_stops_dependents_and_lets_independent_work_finish() {
    let w = world().await;
    let s = w.stack("f");
    // The bucket name is invalid: its create fails at check time.
    let bad = Bucket::new(&s, "bad", BucketArgs::new("Not_A_Valid_Bucket")).unwrap();
    Noop::new(&s, "downstream", NoopArgs::new(bad.name.clone())).unwrap();
    Bucket::new(&s, "good", BucketArgs::new("f-good")).unwrap();
    let mut events = s.events();
    let err = s.up().await.unwrap_err();
    assert!(
        err.to_string().contains("1 step(s) failed") && err.to_string().contains("bad"),
        "{err}"
    );
    assert!(
        w.cloud
            .blob()
            .unwrap()
            .list_buckets()
            .await
            .unwrap()
            .iter()
            .any(|b| b.name == "f-good")
    );
    let state = w.stack("f").state().await.unwrap();
    assert_eq!(
        state.resources.len(),
        1,
        "only the independent bucket is recorded"
    );
    let mut skipped = false;
    while let Ok(e) = events.try_recv() {
        if let mvi::stack::Event::Skipped { urn, .. } = e {
            skipped |= urn.ends_with("::downstream");
        }
    }
    assert!(skipped, "the dependent resource is reported skipped");
}

#[tokio::test]
async fn a_second_run_is_refused_while_the_lock_is_held() {
    let w = world().await;
    let store = FileStore::new(&w.stacks);
    // Held by a live process (this one, through another store): not stale.
    let holder = LockHolder::me("a-deploy-elsewhere");
    store.lock("locked", &holder).await.unwrap();
    let s = w.stack("locked");
    Noop::new(&s, "a", NoopArgs::new("x")).unwrap();
    let err = s.up().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PreconditionFailed);
    assert!(err.to_string().contains("a-deploy-elsewhere"), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    // Unlocking a live holder's lock needs force.
    let refused = s.unlock(false).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::PreconditionFailed, "{refused}");
    assert!(
        refused.to_string().contains("may still be running"),
        "{refused}"
    );
    let broken = s.unlock(true).await.unwrap().unwrap();
    assert_eq!(broken.operation, "a-deploy-elsewhere");
    s.up().await.unwrap();
}

#[tokio::test]
async fn secrets_are_encrypted_in_state_and_masked_in_previews() {
    let w = world().await;
    let s = w.stack("sec");
    let key = Key::new(&s, "k", KeyArgs::new("alias/sec-app")).unwrap();
    let token = key
        .id
        .map(|_| "hunter2-super-secret".to_string())
        .as_secret();
    Noop::new(&s, "holder", NoopArgs::new(token.clone())).unwrap();
    s.export("token", &token).unwrap();
    let plan = s.preview().await.unwrap();
    assert!(!plan.to_string().contains("hunter2"), "{plan}");
    s.up().await.unwrap();

    // On disk: no plaintext in the snapshot nor the journal.
    for entry in walk(&w.stacks) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains("hunter2"),
            "plaintext secret in {}",
            entry.display()
        );
    }
    // Through the API the owner reads it back.
    assert_eq!(
        w.stack("sec").outputs().await.unwrap()["token"],
        "hunter2-super-secret"
    );
    let state = w.stack("sec").state().await.unwrap();
    assert!(!format!("{:?}", w.stack("sec")).contains("hunter2"));
    assert!(
        state
            .resources
            .values()
            .any(|r| r.secret_inputs.contains("value"))
    );

    // A changed secret shows as changed, never its value.
    let s = w.stack("sec");
    let key = Key::new(&s, "k", KeyArgs::new("alias/sec-app")).unwrap();
    Noop::new(
        &s,
        "holder",
        NoopArgs::new(key.id.map(|_| "new-secret-value".to_string()).as_secret()),
    )
    .unwrap();
    let plan = s.preview().await.unwrap();
    let text = plan.to_string();
    assert!(
        text.contains("[secret]")
            && !text.contains("new-secret-value")
            && !text.contains("hunter2"),
        "{text}"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn outputs_cross_stacks_only_through_exports() {
    let w = world().await;
    let net = w.stack("network");
    let b = Bucket::new(&net, "b", BucketArgs::new("net-bucket")).unwrap();
    net.export("bucket", &b.name).unwrap();
    net.up().await.unwrap();

    let app = w.stack("app");
    // Using the other stack's output object directly is refused at declaration.
    let err = Noop::new(&app, "direct", NoopArgs::new(b.name.clone())).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("another stack"), "{err}");
    // Through a reference it works.
    let r = app.reference("network").await.unwrap();
    let name: mvi::stack::Output<String> = r.output("bucket").unwrap();
    Noop::new(&app, "via-ref", NoopArgs::new(name)).unwrap();
    let report = app.up().await.unwrap();
    assert_eq!(report.plan.count(StepOp::Create), 1);
    assert!(r.output::<String>("nope").is_err());
}

#[tokio::test]
async fn declaration_errors_name_the_resource() {
    let w = world().await;
    let s = w.stack("d");
    Noop::new(&s, "a", NoopArgs::new("x")).unwrap();
    let err = Noop::new(&s, "a", NoopArgs::new("y")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    assert!(err.to_string().contains("\"a\""), "{err}");
    let err = Noop::with(
        &s,
        "b",
        NoopArgs::new("y"),
        ResourceOptions::default().depends_on("d::mvi:test:Noop::zzz"),
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(Stack::new("bad name!", w.cloud.clone(), FileStore::new(&w.stacks)).is_err());
}

#[tokio::test]
async fn components_group_their_children() {
    let w = world().await;
    let s = w.stack("c");
    let web = s.component("WebService", "web").unwrap();
    Noop::new(&web, "image", NoopArgs::new("v1")).unwrap();
    Noop::new(&web, "service", NoopArgs::new("v1")).unwrap();
    let plan = s.preview().await.unwrap();
    let step = plan
        .step("web/image")
        .expect("children are named under the component");
    assert!(
        step.parent
            .as_deref()
            .is_some_and(|p| p.contains("mvi:component:WebService::web"))
    );
    assert!(
        plan.to_string().contains("mvi:component:WebService"),
        "{plan}"
    );
    s.up_with(Options::default().no_refresh()).await.unwrap();
}

#[tokio::test]
async fn unknown_or_corrupt_state_is_refused_and_left_untouched() {
    let w = world().await;
    let dir = w.stacks.join("old");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("state.json"),
        br#"{"version": 99, "stack": "old"}"#,
    )
    .unwrap();
    let s = w.stack("old");
    Noop::new(&s, "a", NoopArgs::new("x")).unwrap();
    let err = s.up().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(err.to_string().contains("version 99"), "{err}");
    std::fs::write(dir.join("state.json"), b"{not json").unwrap();
    let err = s.up().await.unwrap_err();
    assert!(err.to_string().contains("not valid JSON"), "{err}");
    assert_eq!(std::fs::read(dir.join("state.json")).unwrap(), b"{not json");
}

#[tokio::test]
async fn state_can_live_in_the_blob_service() {
    use mvi::stack::BlobStore;
    let w = world().await;
    let blob = w.cloud.blob().unwrap().clone();
    blob.create_bucket("mvi-state").await.unwrap();
    let store = std::sync::Arc::new(BlobStore::new(blob.clone(), "mvi-state", "stacks/"));
    let declare = || {
        let s = Stack::with_store("remote", w.cloud.clone(), store.clone()).unwrap();
        let b = Bucket::new(&s, "data", BucketArgs::new("remote-data")).unwrap();
        Noop::new(
            &s,
            "token",
            NoopArgs::new(
                b.name
                    .map(|_| "remote-secret-token".to_string())
                    .as_secret(),
            ),
        )
        .unwrap();
        s
    };
    declare().up().await.unwrap();
    let saved = mvi::BlobExt::get(blob.as_ref(), "mvi-state", "stacks/remote/state.json")
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&saved);
    assert!(
        text.contains("remote-data") && !text.contains("remote-secret-token"),
        "{text}"
    );
    assert!(declare().preview().await.unwrap().is_empty());

    // The lock is a create-only object: a second holder is refused, naming the first.
    let holder = LockHolder::me("remote-up-777");
    store.lock("remote", &holder).await.unwrap();
    let err = declare().up().await.unwrap_err();
    assert!(err.to_string().contains("remote-up-777"), "{err}");
    declare().unlock(true).await.unwrap();
    declare().destroy().await.unwrap();
    assert!(
        !w.cloud
            .blob()
            .unwrap()
            .list_buckets()
            .await
            .unwrap()
            .iter()
            .any(|b| b.name == "remote-data")
    );
}

/// A user-defined resource type: creating it takes `millis` milliseconds.
struct Slow;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct SlowSpec {
    millis: u64,
}

struct SlowArgs(u64);

impl mvi::stack::Args for SlowArgs {
    fn props(&self, stack: &std::sync::Arc<str>) -> Vec<(&'static str, mvi::stack::ErasedInput)> {
        vec![(
            "millis",
            mvi::stack::erase(stack, &mvi::stack::Input::Value(self.0)),
        )]
    }
}

#[mvi::async_trait]
impl mvi::stack::Resource for Slow {
    const TYPE: &'static str = "test:Slow";
    const REPLACE_ON: &'static [&'static str] = &[];
    type Args = SlowSpec;
    type Outputs = SlowSpec;

    async fn create(cx: mvi::stack::Cx<'_>, args: &SlowSpec) -> mvi::Result<(String, SlowSpec)> {
        tokio::time::sleep(std::time::Duration::from_millis(args.millis)).await;
        Ok((cx.urn.to_string(), args.clone()))
    }
    async fn find(_: mvi::stack::Cx<'_>, _: &SlowSpec) -> mvi::Result<Option<String>> {
        Ok(None)
    }
    async fn read(
        _: mvi::stack::Cx<'_>,
        _: &str,
        a: &SlowSpec,
    ) -> mvi::Result<Option<(SlowSpec, SlowSpec)>> {
        Ok(Some((a.clone(), a.clone())))
    }
    async fn update(
        _: mvi::stack::Cx<'_>,
        _: &str,
        _: &SlowSpec,
        n: &SlowSpec,
    ) -> mvi::Result<SlowSpec> {
        Ok(n.clone())
    }
    async fn delete(_: mvi::stack::Cx<'_>, _: &str, _: &SlowSpec) -> mvi::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn resource_options_ignore_replace_import_and_time_out() {
    let w = world().await;
    let declare = |value: &str| {
        let s = w.stack("opts");
        Noop::with(
            &s,
            "ignored",
            NoopArgs::new(value),
            ResourceOptions::default().ignore_changes("value"),
        )
        .unwrap();
        Noop::with(
            &s,
            "replaced",
            NoopArgs::new(value),
            ResourceOptions::default().replace_on_changes("value"),
        )
        .unwrap();
        Noop::new(&s, "plain", NoopArgs::new(value)).unwrap();
        s
    };
    declare("one").up().await.unwrap();
    let plan = declare("two").preview().await.unwrap();
    assert_eq!(plan.step("ignored").unwrap().op, StepOp::Same, "{plan}");
    assert_eq!(plan.step("replaced").unwrap().op, StepOp::Replace, "{plan}");
    assert_eq!(plan.step("plain").unwrap().op, StepOp::Update, "{plan}");
    declare("two").up().await.unwrap();
    let state = w.stack("opts").state().await.unwrap();
    let ignored = state
        .resources
        .values()
        .find(|r| r.name == "ignored")
        .unwrap();
    assert_eq!(
        ignored.inputs["value"], "one",
        "an ignored change is not applied"
    );

    // Import: a bucket made outside the stack is adopted, then managed (and destroyed).
    w.cloud
        .blob()
        .unwrap()
        .create_bucket("made-by-hand")
        .await
        .unwrap();
    let s = w.stack("adopt");
    Bucket::with(
        &s,
        "b",
        BucketArgs::new("made-by-hand"),
        ResourceOptions::default().import("made-by-hand"),
    )
    .unwrap();
    assert_eq!(
        s.preview().await.unwrap().step("b").unwrap().op,
        StepOp::Import
    );
    assert_eq!(
        s.up().await.unwrap().plan.step("b").unwrap().op,
        StepOp::Import
    );
    assert!(s.preview().await.unwrap().is_empty());
    s.destroy().await.unwrap();
    assert!(
        !w.cloud
            .blob()
            .unwrap()
            .list_buckets()
            .await
            .unwrap()
            .iter()
            .any(|b| b.name == "made-by-hand")
    );
    let s = w.stack("adopt2");
    Bucket::with(
        &s,
        "b",
        BucketArgs::new("nowhere-bucket"),
        ResourceOptions::default().import("nowhere-bucket"),
    )
    .unwrap();
    assert_eq!(s.up().await.unwrap_err().kind(), ErrorKind::NotFound);

    // A custom time limit turns a slow provider call into a Timeout naming the resource;
    // user-defined resource types work like the built-in ones.
    let s = w.stack("slow");
    s.declare::<Slow>("fast", &SlowArgs(1), ResourceOptions::default())
        .unwrap();
    s.declare::<Slow>(
        "slow",
        &SlowArgs(5_000),
        ResourceOptions::default().timeout(std::time::Duration::from_millis(50)),
    )
    .unwrap();
    let err = s.up().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(err.to_string().contains("::slow"), "{err}");
    let state = w.stack("slow").state().await.unwrap();
    assert!(state.resources.values().any(|r| r.name == "fast"));
    assert!(!state.resources.values().any(|r| r.name == "slow"));
}

/// A journal damaged in the middle (valid records after the damage) is refused by every
/// reader, with or without the lock, and left byte for byte as it was; a torn last record is
/// ignored by a preview (which never writes) and cut by the next `up`.
#[tokio::test]
async fn a_journal_damaged_in_the_middle_is_refused_and_left_as_it_was() {
    let w = world().await;
    let declare = || {
        let s = w.stack("journal");
        Noop::new(&s, "n", NoopArgs::new("x")).unwrap();
        s
    };
    declare().up().await.unwrap();
    // Three journal records after the snapshot, as a run killed before compacting leaves.
    let store = FileStore::new(&w.stacks);
    store
        .lock("journal", &LockHolder::me("test"))
        .await
        .unwrap();
    store.load("journal").await.unwrap();
    for _ in 0..3 {
        let entry = br#"{"entry":"resolved","urn":"journal::mvi:test:Noop::gone"}"#.to_vec();
        store.append("journal", &[entry]).await.unwrap();
    }
    store.unlock("journal").await.unwrap();
    let path = w.stacks.join("journal").join("journal.log");
    let mut bytes = std::fs::read(&path).unwrap();
    let whole = bytes.clone();
    bytes[20] ^= 0x01; // inside the first record's payload
    std::fs::write(&path, &bytes).unwrap();
    let digest = |p: &std::path::Path| hex::encode(sha2::Sha256::digest(std::fs::read(p).unwrap()));
    use sha2::Digest;
    let before = digest(&path);
    let e = declare().preview().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Internal, "{e}");
    assert!(
        e.to_string().contains("journal.log") && e.to_string().contains("at byte 0"),
        "{e}"
    );
    let e = declare().up().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Internal, "{e}");
    assert_eq!(digest(&path), before, "the damaged journal was changed");

    // A torn tail instead: a preview leaves it, `up` cuts it. The journal grows in
    // preallocated zeros: the records end at its last non-zero byte (a record ends in JSON).
    let end = whole.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    let mut torn = whole.clone();
    torn.truncate(end - 5);
    std::fs::write(&path, &torn).unwrap();
    declare().preview().await.unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        torn,
        "a preview changed the journal"
    );
    declare().up().await.unwrap();
    assert!(std::fs::read(&path).unwrap().len() < torn.len());
}

/// A secret given where a name is wanted is refused by the name's rule, and the error names
/// the property, never the value: in a preview and in `up`.
#[tokio::test]
async fn a_secret_in_an_error_is_named_never_shown() {
    let w = world().await;
    let declare = || {
        let s = w.stack("leaky");
        let value = Noop::new(&s, "source", NoopArgs::new("Not A Valid Bucket Name 9f3k"))
            .unwrap()
            .value
            .as_secret();
        Bucket::new(&s, "bucket", BucketArgs::new(value)).unwrap();
        s
    };
    let e = declare().up().await.unwrap_err();
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains("9f3k"), "the secret is shown: {shown}");
    assert!(shown.contains("[secret name]"), "{shown}");
}

#[tokio::test]
async fn stack_import_adopts_an_existing_resource_without_changing_it() {
    let w = world().await;
    let logs = w.cloud.logs().unwrap();
    logs.create_group("/by/hand", None).await.unwrap();
    // The program declares it with a retention the real one does not have yet.
    let program = || {
        let s = w.stack("adopt");
        LogGroup::new(&s, "logs", LogGroupArgs::new("/by/hand").retention_days(7)).unwrap();
        s
    };
    let s = program();

    // Refused, clearly, and nothing recorded: an undeclared name, a wrong type, no such id.
    let e = s
        .import("mvi:log:Group", "other", "/by/hand", true)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(e.to_string().contains("declares no resource"), "{e}");
    let e = s
        .import("mvi:blob:Bucket", "logs", "/by/hand", true)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(e.to_string().contains("mvi:log:Group"), "{e}");
    let e = s
        .import("mvi:log:Group", "logs", "/nowhere", true)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(s.state().await.unwrap().resources.is_empty());

    let adopted = s
        .import("mvi:log:Group", "logs", "/by/hand", true)
        .await
        .unwrap();
    assert_eq!(adopted.id, "/by/hand");
    assert!(
        adopted.protect,
        "imported resources are protected until declared otherwise"
    );
    let state = s.state().await.unwrap();
    assert_eq!(state.resources["adopt::mvi:log:Group::logs"].id, "/by/hand");
    let e = s
        .import("mvi:log:Group", "logs", "/by/hand", true)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");

    // Recorded as it is, so the next preview shows the way to the declaration: an update.
    let plan = program().preview().await.unwrap();
    assert_eq!(plan.step("logs").unwrap().op, StepOp::Update, "{plan}");
    assert_eq!(plan.count(StepOp::Create), 0, "{plan}");
    let report = program().up().await.unwrap();
    assert_eq!(report.plan.step("logs").unwrap().op, StepOp::Update);
    let groups = logs.list_groups().await.unwrap();
    let group = groups.iter().find(|g| g.name == "/by/hand").unwrap();
    assert_eq!(group.retention_days, Some(7));
    let state = program().state().await.unwrap();
    assert!(!state.resources["adopt::mvi:log:Group::logs"].protect);
    assert!(program().preview().await.unwrap().is_empty());
}

/// An output that is not an argument of its resource is unknown in a preview until the
/// resource exists, and so is what is computed from it.
#[tokio::test]
async fn outputs_not_known_before_apply_stay_unknown_in_preview() {
    let w = world().await;
    let s = w.stack("chain");
    let first = Noop::new(&s, "first", NoopArgs::new("a")).unwrap();
    Noop::new(&s, "second", NoopArgs::new(first.value.format("{}/b"))).unwrap();
    let plan = s.preview().await.unwrap();
    let second = plan.step("second").unwrap();
    assert!(
        second
            .diffs
            .iter()
            .any(|d| d.new == mvi::stack::Shown::Unknown),
        "{plan}"
    );
}
