//! Feature flags: a percentage rollout moved from 5 % to 100 % while an app keeps asking.
//!
//! A flags table in KV (the local backend, in memory), the flag `new-checkout` saved at 5 %,
//! a running client (every flag in memory, refreshed every 250 ms) asked for 10,000 users;
//! then the rollout goes to 25 %, 50 % and 100 %, and each time the program prints how many
//! users have the new checkout and how long the change took to reach the client. Users who
//! had it keep it as the share grows (the buckets are Unleash's: MurmurHash3 of
//! "new-checkout:<user>"). A targeting rule gives it to staff first, whatever the share.
//!
//! Run: `cargo run --example flags`

use std::time::{Duration, Instant};

use mvi::flags::{Condition, EvalContext, Flag, Flags, Operator, Rollout};

const USERS: usize = 10_000;

#[tokio::main]
async fn main() -> mvi::Result<()> {
    let cloud = mvi::local::LocalCloud::builder()
        .in_memory()
        .build()
        .await?;
    let flags = Flags::of(&cloud, "flags")?;
    flags.create_table().await?;

    let at = |percent: u32| {
        Flag::boolean("new-checkout")
            .description("the one-page checkout")
            .rule(
                vec![Condition::new("email", Operator::EndsWith, "@example.com")],
                "on",
            )
            .rollout(Rollout::new([("on", percent), ("off", 100 - percent)]))
    };
    flags.save(&at(5)).await?;
    let client = flags.client().await;

    let users: Vec<EvalContext> = (0..USERS)
        .map(|i| EvalContext::key(format!("user-{i}")).with("email", format!("u{i}@mail.test")))
        .collect();
    let with_it = |client: &mvi::flags::FlagClient| -> Vec<bool> {
        users
            .iter()
            .map(|u| client.bool_value("new-checkout", false, u))
            .collect()
    };
    let mut had = with_it(&client);
    let count = |v: &[bool]| v.iter().filter(|b| **b).count();
    println!(
        "  5 %: {:>5} of {USERS} users have the new checkout",
        count(&had)
    );
    let staff = EvalContext::key("user-1").with("email", "ana@example.com");
    let e = client.evaluate("new-checkout", false, &staff);
    println!(
        "       staff (ana@example.com): {} ({}, variant {:?})",
        e.value, e.reason, e.variant
    );

    for percent in [25, 50, 100] {
        let version = flags.save(&at(percent)).await?;
        let saved = Instant::now();
        let before = client.changes();
        while client.changes() == before {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let took = saved.elapsed();
        let now = with_it(&client);
        let kept = had.iter().zip(&now).filter(|(a, b)| **a && **b).count();
        println!(
            "{percent:>3} %: {:>5} of {USERS} users have it (version {version}, seen by the client {} ms after the save; all {} who had it kept it: {})",
            count(&now),
            took.as_millis(),
            count(&had),
            kept == count(&had)
        );
        had = now;
    }
    let off = flags.save(&at(100).enabled(false)).await?;
    while client.bool_value("new-checkout", false, &users[0]) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "off (version {off}): {} users have it; reason {}",
        count(&with_it(&client)),
        client.evaluate("new-checkout", false, &users[0]).reason
    );
    Ok(())
}
