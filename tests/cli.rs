//! The command line of a stack program (`mvi::cli`): every command on a test stack, run as
//! a process (no terminal), with its output and exit code.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::path::Path;

use clap::Parser;
use mvi::cli::{Cli, Program};
use mvi::stack::Output;
use mvi::stack::resources::{Bucket, BucketArgs, Noop, NoopArgs};
use serde_json::Value;

const ARGS: &str = "MVI_CLI_TEST_ARGS";
/// The secret output's value: shown only with `--show-secrets`.
const SECRET: &str = "cli-secret-4d2c9e";

/// The program: a bucket, and a resource holding a secret; `MVI_CLI_TEST_VALUE` changes the
/// plain resource's value (an update).
fn declare(s: &mvi::stack::Stack) -> mvi::Result<()> {
    let value = std::env::var("MVI_CLI_TEST_VALUE").unwrap_or_else(|_| "one".into());
    let bucket = Bucket::new(s, "assets", BucketArgs::new("cli-assets"))?;
    let plain = Noop::new(s, "plain", NoopArgs::new(value))?;
    let token = Noop::new(
        s,
        "token",
        NoopArgs::new(Output::secret(SECRET.to_string())),
    )?;
    s.export("bucket", &bucket.name)?;
    s.export("value", &plain.value)?;
    s.export("token", &token.value)
}

#[tokio::test]
async fn child() {
    // Run as a child by `cli` below: the program with the given arguments.
    let Ok(args) = std::env::var(ARGS) else {
        return;
    };
    let args: Vec<String> = serde_json::from_str(&args).unwrap();
    let cli = Cli::parse_from(std::iter::once("clitest".to_string()).chain(args));
    let mut out = Vec::new();
    let code = Program::new("clitest").run(cli, declare, &mut out).await;
    // Between markers: the test harness prints lines of its own.
    use std::io::Write;
    let mut stdout = std::io::stdout();
    stdout.write_all(b"<<<mvi\n").unwrap();
    stdout.write_all(&out).unwrap();
    stdout.write_all(b">>>mvi\n").unwrap();
    stdout.flush().unwrap();
    std::process::exit(i32::from(code));
}

/// Runs the program with `args` in a process with no terminal; its exit code and output.
fn cli(root: &Path, value: &str, args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "--quiet"])
        .env(ARGS, serde_json::to_string(args).unwrap())
        .env("MVI_CLI_TEST_VALUE", value)
        .env("MVI_LOCAL_ROOT", root.join("cloud"))
        .env("MVI_STATE", root.join("stacks"))
        .env_remove("MVI_BACKEND")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let program = text
        .split_once("<<<mvi\n")
        .and_then(|(_, rest)| rest.split_once(">>>mvi\n"))
        .map_or_else(
            || format!("(no program output) {text}"),
            |(o, _)| o.to_string(),
        );
    (out.status.code().unwrap_or(-1), program)
}

fn json_of(text: &str) -> Value {
    let start = text.find(['{', '[']).unwrap();
    let end = text.rfind(['}', ']']).unwrap();
    serde_json::from_str(&text[start..=end]).unwrap()
}

#[tokio::test]
async fn every_command_and_its_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();

    // preview: the plan; with --expect-no-changes, 2 since there are changes.
    let (code, text) = cli(root, "one", &["preview"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("3 to create"), "{text}");
    let (code, _) = cli(root, "one", &["preview", "--expect-no-changes"]);
    assert_eq!(code, 2);
    let (code, text) = cli(root, "one", &["preview", "--json"]);
    assert_eq!(code, 0, "{text}");
    let plan = json_of(&text);
    assert_eq!(plan["steps"].as_array().unwrap().len(), 3, "{plan}");
    assert!(
        plan["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["op"] == "create")
    );
    assert!(!text.contains(SECRET), "{text}");

    // up without --yes and without a terminal: refused, nothing changed.
    let (code, text) = cli(root, "one", &["up"]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("--yes"), "{text}");
    let (_, text) = cli(root, "one", &["state", "list"]);
    assert!(text.trim().is_empty(), "nothing was applied: {text}");

    // up --yes applies, shows progress and a summary, masks the secret.
    let (code, text) = cli(root, "one", &["up", "--yes"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("Resources: 3 created"), "{text}");
    assert!(
        text.contains("create") && text.contains("done in"),
        "{text}"
    );
    assert!(
        text.contains("[secret]") && !text.contains(SECRET),
        "{text}"
    );
    let (code, _) = cli(root, "one", &["preview", "--expect-no-changes"]);
    assert_eq!(code, 0, "in sync");

    // outputs: masked unless --show-secrets; JSON parses.
    let (code, text) = cli(root, "one", &["outputs", "--json"]);
    assert_eq!(code, 0);
    let outputs = json_of(&text);
    assert_eq!(outputs["bucket"], "cli-assets");
    assert_eq!(outputs["token"], "[secret]");
    let (_, text) = cli(root, "one", &["outputs", "--json", "--show-secrets"]);
    assert_eq!(json_of(&text)["token"], SECRET);
    let (_, text) = cli(root, "one", &["outputs"]);
    assert!(
        text.contains("cli-assets") && !text.contains(SECRET),
        "{text}"
    );

    // state list: every resource, as text and JSON.
    let (_, text) = cli(root, "one", &["state", "list", "--json"]);
    let list = json_of(&text);
    assert_eq!(list.as_array().unwrap().len(), 3, "{list}");
    // state unlock: nothing to remove; a stale lock is removed.
    let (code, text) = cli(root, "one", &["state", "unlock"]);
    assert_eq!((code, text.trim()), (0, "the stack is not locked"));

    // A change: preview --diff names the property; up --json prints events and a result.
    let (code, text) = cli(root, "two", &["preview", "--diff", "--expect-no-changes"]);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("plain value") && text.contains("two"),
        "{text}"
    );
    let (code, text) = cli(root, "two", &["up", "--yes", "--json"]);
    assert_eq!(code, 0, "{text}");
    let lines: Vec<Value> = text
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["kind"] == "finished" && l["op"] == "update"),
        "{text}"
    );
    let done = lines.iter().find(|l| l["kind"] == "done").unwrap();
    assert_eq!(done["outputs"]["value"], "two");
    assert_eq!(done["outputs"]["token"], "[secret]");

    // refresh: drift detection. In sync: 0; a bucket deleted out of band: 2.
    let (code, text) = cli(root, "two", &["refresh", "--expect-no-changes"]);
    assert_eq!(code, 0, "{text}");
    {
        let cloud = mvi::local::LocalCloud::builder()
            .root(root.join("cloud"))
            .build()
            .await
            .unwrap();
        cloud
            .blob()
            .unwrap()
            .delete_bucket("cli-assets")
            .await
            .unwrap();
    }
    let (code, text) = cli(root, "two", &["refresh", "--expect-no-changes"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("assets"), "{text}");

    // destroy without --yes: refused; with it, everything goes.
    let (code, _) = cli(root, "two", &["destroy"]);
    assert_eq!(code, 1);
    let (code, text) = cli(root, "two", &["destroy", "--yes"]);
    assert_eq!(code, 0, "{text}");
    // The bucket deleted out of band was dropped by the refresh: two are left to delete.
    assert!(text.contains("2 deleted"), "{text}");
    let (_, text) = cli(root, "two", &["state", "list"]);
    assert!(text.trim().is_empty(), "{text}");

    // Bad input: a clear error, exit 1 (clap's own usage errors exit 2 as clap does).
    let (code, text) = cli(root, "two", &["--state", "s3:///x", "preview"]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("must name a bucket"), "{text}");
}

#[tokio::test]
async fn targets_and_import() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();

    // A bucket made by hand, adopted by `import` as the program's `assets`.
    {
        let cloud = mvi::local::LocalCloud::builder()
            .root(root.join("cloud"))
            .build()
            .await
            .unwrap();
        cloud
            .blob()
            .unwrap()
            .create_bucket("cli-assets")
            .await
            .unwrap();
    }
    let (code, text) = cli(root, "one", &["import", "mvi:blob:Bucket", "nope", "x"]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("declares no resource"), "{text}");
    let (code, text) = cli(
        root,
        "one",
        &["import", "mvi:blob:Bucket", "assets", "cli-assets"],
    );
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("imported") && text.contains("protected"),
        "{text}"
    );
    let (code, text) = cli(
        root,
        "one",
        &["import", "mvi:blob:Bucket", "assets", "cli-assets"],
    );
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("already manages"), "{text}");
    let (_, text) = cli(root, "one", &["state", "list", "--json"]);
    let list = json_of(&text);
    assert_eq!(list[0]["id"], "cli-assets", "{list}");

    // --target: one resource (by name); a target naming nothing is an error.
    let (code, text) = cli(root, "one", &["preview", "--json", "--target", "plain"]);
    assert_eq!(code, 0, "{text}");
    let plan = json_of(&text);
    let steps = plan["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1, "{plan}");
    assert_eq!(steps[0]["name"], "plain");
    let (code, text) = cli(root, "one", &["up", "--yes", "-t", "plain"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("Resources: 1 created"), "{text}");
    let (code, text) = cli(root, "one", &["up", "--yes", "--target", "nope"]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("no resource of the stack"), "{text}");
    // The rest, the imported bucket as it is: nothing to change there.
    let (code, text) = cli(root, "one", &["up", "--yes"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("Resources: 1 created"), "{text}");
    // A targeted destroy: only the token goes.
    let (code, text) = cli(
        root,
        "one",
        &[
            "destroy",
            "--yes",
            "--target",
            "clitest::mvi:test:Noop::token",
        ],
    );
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("Resources: 1 deleted"), "{text}");
    let (_, text) = cli(root, "one", &["state", "list", "--json"]);
    assert_eq!(json_of(&text).as_array().unwrap().len(), 2, "{text}");
}
