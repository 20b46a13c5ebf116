//! Feature flags end to end on the local backend: saved whole or not at all, evaluated from
//! memory, a change seen by a running client, and defaults with reason ERROR when KV fails.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::time::{Duration, Instant};

use mvi::flags::{
    Condition, ErrorCode, EvalContext, Flag, FlagType, Flags, Operator, Reason, Rollout,
};
use mvi::local::{FaultRule, Faults, LocalCloud};
use mvi::{Cloud, ErrorKind, KvExt, Service};

async fn cloud(faults: &Faults) -> Cloud {
    LocalCloud::builder()
        .in_memory()
        .faults(faults.clone())
        .build()
        .await
        .expect("local cloud")
}

async fn flags(cloud: &Cloud) -> Flags {
    let flags = Flags::of(cloud, "flags").unwrap();
    flags.create_table().await.unwrap();
    flags
}

/// Waits (bounded) until `f` holds, polling.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{what}: not within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    start.elapsed()
}

#[tokio::test]
async fn flags_are_saved_whole_or_not_at_all() {
    let faults = Faults::new(1);
    let cloud = cloud(&faults).await;
    let flags = flags(&cloud).await;
    assert_eq!(
        flags.save(&Flag::percentage("checkout", 5)).await.unwrap(),
        1
    );
    assert_eq!(
        flags.save(&Flag::percentage("checkout", 50)).await.unwrap(),
        2
    );

    // Refused flags leave the stored one as it was.
    let bad = [
        (
            Flag::boolean("checkout").rollout(Rollout::new([("on", 60), ("off", 30)])),
            "the weights sum to 90 %",
        ),
        (
            Flag::boolean("checkout").default_variant("maybe"),
            "default_variant",
        ),
        (
            Flag::boolean("checkout").rule(vec![Condition::new("age", Operator::Lt, "ten")], "on"),
            "lt compares numbers",
        ),
    ];
    for (flag, says) in bad {
        let e = flags.save(&flag).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        assert!(
            e.to_string().contains(says) && e.to_string().contains("checkout"),
            "{e}"
        );
    }
    assert_eq!(
        flags.get("checkout").await.unwrap(),
        Some(Flag::percentage("checkout", 50))
    );
    flags.save(&Flag::boolean("dark-mode")).await.unwrap();
    let keys: Vec<String> = flags
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.key)
        .collect();
    assert_eq!(keys, ["checkout", "dark-mode"]);
    assert!(flags.delete("dark-mode").await.unwrap());
    assert!(!flags.delete("dark-mode").await.unwrap());
    assert_eq!(flags.get("dark-mode").await.unwrap(), None);

    // Concurrent saves of one flag all land, one version each.
    let saves: Vec<_> = (0..8u32)
        .map(|i| {
            let flags = flags.clone();
            tokio::spawn(async move { flags.save(&Flag::percentage("race", i * 10)).await })
        })
        .collect();
    let mut versions = Vec::new();
    for s in saves {
        versions.push(s.await.unwrap().unwrap());
    }
    versions.sort();
    assert_eq!(versions, (1..=8).collect::<Vec<i64>>());

    // An item that is not a flag is reported, not taken for one.
    cloud
        .kv()
        .unwrap()
        .put(
            "flags",
            mvi::item! {"key" => "junk", "flag" => "{not json", "version" => 1},
        )
        .await
        .unwrap();
    let e = flags.get("junk").await.unwrap_err();
    assert!(e.to_string().contains("does not parse"), "{e}");
    let eval = flags.evaluate("junk", true, &EvalContext::new()).await;
    assert_eq!(
        (eval.value, eval.error_code),
        (true, Some(ErrorCode::ParseError))
    );
}

#[tokio::test]
async fn a_client_evaluates_from_memory_and_sees_changes() {
    let faults = Faults::new(2);
    let cloud = cloud(&faults).await;
    let flags = flags(&cloud).await;
    let theme = Flag::new("theme", FlagType::String)
        .variant("dark", "dark")
        .variant("light", "light")
        .default_variant("light")
        .rule(
            vec![
                Condition::new("country", Operator::OneOf, vec!["NL", "BE"]),
                Condition::new("app_version", Operator::SemverGte, "2.3.0"),
            ],
            "dark",
        );
    flags.save(&theme).await.unwrap();
    flags.save(&Flag::percentage("checkout", 5)).await.unwrap();
    let client = flags.client_every(Duration::from_millis(100)).await;
    assert!(client.is_ready());

    let nl = EvalContext::key("u-1")
        .with("country", "NL")
        .with("app_version", "2.10.0");
    let e = client.evaluate("theme", String::from("?"), &nl);
    assert_eq!(e.value, "dark");
    assert_eq!(e.reason, Reason::TargetingMatch);
    assert_eq!(e.variant.as_deref(), Some("dark"));
    let old_app = nl.clone().with("app_version", "2.2.9");
    assert_eq!(client.string_value("theme", "?", &old_app), "light");
    assert_eq!(
        client.evaluate("theme", String::new(), &old_app).reason,
        Reason::Default
    );
    let e = client.evaluate("nope", 7i64, &nl);
    assert_eq!(
        (e.value, e.reason, e.error_code),
        (7, Reason::Error, Some(ErrorCode::FlagNotFound))
    );
    let e = client.evaluate("theme", false, &nl);
    assert_eq!(e.error_code, Some(ErrorCode::TypeMismatch));

    // 5 %, then everyone: the users in the first 5 % stay in.
    let users: Vec<EvalContext> = (0..2_000)
        .map(|i| EvalContext::key(format!("user-{i}")))
        .collect();
    let on = |c: &mvi::flags::FlagClient| {
        users
            .iter()
            .filter(|u| c.bool_value("checkout", false, u))
            .count()
    };
    let early: Vec<usize> = (0..users.len())
        .filter(|i| client.bool_value("checkout", false, &users[*i]))
        .collect();
    assert!(
        (60..=140).contains(&early.len()),
        "{} of 2,000 at 5 %",
        early.len()
    );
    flags
        .save(&Flag::percentage("checkout", 100))
        .await
        .unwrap();
    let took = eventually("the change reaches the client", || {
        on(&client) == users.len()
    })
    .await;
    eprintln!("the change reached the client in {took:?} (poll every 100 ms)");
    flags.save(&Flag::percentage("checkout", 20)).await.unwrap();
    eventually("20 %", || on(&client) < 600).await;
    assert!(
        early
            .iter()
            .all(|i| client.bool_value("checkout", false, &users[*i])),
        "a user in the first 5 % left the rollout at 20 %"
    );

    // Off: the caller's default, reason DISABLED.
    flags
        .save(&Flag::percentage("checkout", 100).enabled(false))
        .await
        .unwrap();
    eventually("off", || on(&client) == 0).await;
    let e = client.evaluate("checkout", false, &users[0]);
    assert_eq!((e.reason, e.variant), (Reason::Disabled, None));
    flags.delete("theme").await.unwrap();
    eventually("the deleted flag goes", || client.keys() == ["checkout"]).await;
}

#[tokio::test]
async fn when_kv_fails_evaluations_give_defaults_with_reason_error() {
    let faults = Faults::new(3);
    let cloud = cloud(&faults).await;
    let flags = flags(&cloud).await;
    flags
        .save(&Flag::boolean("beta").default_variant("on"))
        .await
        .unwrap();
    faults.set(Service::Kv, FaultRule::errors(1.0)).unwrap();

    // Read through the store: the default, ERROR, GENERAL.
    let e = flags.evaluate("beta", false, &EvalContext::key("u")).await;
    assert_eq!((e.value, e.reason), (false, Reason::Error));
    assert_eq!(e.error_code, Some(ErrorCode::General));
    assert!(e.error_message.unwrap().contains("injected"));

    // A client started while KV fails: the default, ERROR, PROVIDER_NOT_READY; ready once
    // KV answers again.
    let client = flags.client_every(Duration::from_millis(50)).await;
    assert!(!client.is_ready());
    let e = client.evaluate("beta", false, &EvalContext::key("u"));
    assert_eq!((e.value, e.reason), (false, Reason::Error));
    assert_eq!(e.error_code, Some(ErrorCode::ProviderNotReady));
    assert!(client.last_error().is_some());
    faults.clear();
    eventually("ready", || client.is_ready()).await;
    assert!(client.bool_value("beta", false, &EvalContext::key("u")));

    // A loaded client keeps serving what it read while KV fails, and says why.
    faults.set(Service::Kv, FaultRule::errors(1.0)).unwrap();
    eventually("the refresh fails", || client.last_error().is_some()).await;
    assert!(client.bool_value("beta", false, &EvalContext::key("u")));
    faults.clear();
    eventually("recovered", || client.last_error().is_none()).await;
}

/// The client as an OpenFeature provider: values, variants and reasons through the
/// `open-feature` crate's client; failures as its errors.
#[cfg(feature = "openfeature")]
#[tokio::test]
async fn an_openfeature_provider() {
    use open_feature::{EvaluationContext, EvaluationErrorCode, EvaluationReason, OpenFeature};
    let faults = Faults::new(4);
    let cloud = cloud(&faults).await;
    let flags = flags(&cloud).await;
    flags
        .save(
            &Flag::boolean("beta")
                .rule(vec![Condition::new("plan", Operator::Equals, "pro")], "on"),
        )
        .await
        .unwrap();
    flags
        .save(
            &Flag::new("limits", FlagType::Object)
                .variant("v1", serde_json::json!({"rps": 10, "burst": 2.5}))
                .default_variant("v1"),
        )
        .await
        .unwrap();
    let mut api = OpenFeature::singleton_mut().await;
    api.set_provider(flags.client().await).await;
    let client = api.create_client();
    drop(api);
    let pro = EvaluationContext::default()
        .with_targeting_key("u-1")
        .with_custom_field("plan", "pro");
    let d = client
        .get_bool_details("beta", Some(&pro), None)
        .await
        .unwrap();
    assert!(d.value);
    assert_eq!(d.reason, Some(EvaluationReason::TargetingMatch));
    assert_eq!(d.variant.as_deref(), Some("on"));
    let free = EvaluationContext::default().with_targeting_key("u-2");
    assert!(
        !client
            .get_bool_value("beta", Some(&free), None)
            .await
            .unwrap()
    );
    let e = client
        .get_bool_value("nope", Some(&free), None)
        .await
        .unwrap_err();
    assert_eq!(e.code, EvaluationErrorCode::FlagNotFound);
    let e = client
        .get_string_value("beta", Some(&free), None)
        .await
        .unwrap_err();
    assert_eq!(e.code, EvaluationErrorCode::TypeMismatch);
    let limits = client
        .get_struct_details::<open_feature::StructValue>("limits", None, None)
        .await
        .unwrap();
    assert_eq!(limits.value.fields["rps"], open_feature::Value::Int(10));
}

/// A flag declared in a stack: `up` saves it, a changed declaration saves the new one, an
/// out-of-band change shows as drift, `destroy` deletes it.
#[tokio::test]
async fn flags_in_a_stack() {
    use mvi::kv::{KeyAttr, KeyType};
    use mvi::stack::resources::{Flag as FlagResource, FlagArgs, Table, TableArgs};
    use mvi::stack::{FileStore, Stack, StepOp};
    let faults = Faults::new(5);
    let cloud = cloud(&faults).await;
    let dir = tempfile::tempdir().unwrap();
    let declare = |percent: u32| {
        let s = Stack::new("flags", cloud.clone(), FileStore::new(dir.path())).unwrap();
        let table = Table::new(
            &s,
            "flags",
            TableArgs::new("app-flags", KeyAttr::new("key", KeyType::Str)),
        )
        .unwrap();
        let f = FlagResource::new(
            &s,
            "checkout",
            FlagArgs::new(table.name, Flag::percentage("checkout", percent)),
        )
        .unwrap();
        s.export("version", &f.version).unwrap();
        s
    };
    let report = declare(5).up().await.unwrap();
    assert_eq!(report.plan.count(StepOp::Create), 2);
    let store = Flags::of(&cloud, "app-flags").unwrap();
    assert_eq!(
        store.get("checkout").await.unwrap(),
        Some(Flag::percentage("checkout", 5))
    );
    assert!(declare(5).preview().await.unwrap().is_empty());

    let report = declare(50).up().await.unwrap();
    assert_eq!(report.plan.count(StepOp::Update), 1);
    assert_eq!(report.outputs["version"], 2);
    assert_eq!(
        store.get("checkout").await.unwrap(),
        Some(Flag::percentage("checkout", 50))
    );

    // Changed by hand: the refresh sees it, `up` puts the declaration back.
    store.save(&Flag::percentage("checkout", 99)).await.unwrap();
    let plan = declare(50).preview().await.unwrap();
    assert_eq!(plan.drift.len(), 1, "{plan}");
    assert_eq!(plan.count(StepOp::Update), 1, "{plan}");
    declare(50).up().await.unwrap();
    assert_eq!(
        store.get("checkout").await.unwrap(),
        Some(Flag::percentage("checkout", 50))
    );

    // A bad flag is refused before anything changes.
    let s = Stack::new("flags", cloud.clone(), FileStore::new(dir.path())).unwrap();
    let table = Table::new(
        &s,
        "flags",
        TableArgs::new("app-flags", KeyAttr::new("key", KeyType::Str)),
    )
    .unwrap();
    let bad = Flag::boolean("checkout").default_variant("maybe");
    FlagResource::new(&s, "checkout", FlagArgs::new(table.name, bad)).unwrap();
    let e = s.up().await.unwrap_err();
    assert!(e.to_string().contains("default_variant"), "{e}");
    assert_eq!(
        store.get("checkout").await.unwrap(),
        Some(Flag::percentage("checkout", 50))
    );

    declare(50).destroy().await.unwrap();
    assert!(cloud.kv().unwrap().list_tables().await.unwrap().is_empty());
}
