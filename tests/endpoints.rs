//! The local cloud's AWS-compatible endpoints, driven by clients no one here wrote: the
//! AWS CLI (`aws s3`, `aws s3api`, `aws dynamodb`) and boto3. Each case checks what the CLI saw and, through the
//! program's own Blob handle, what the store holds (one store, whichever door).

use std::process::{Command, Output};

use mvi::access::{Grant, Policy};
use mvi::blob::BlobExt;
use mvi::local::LocalCloud;
use mvi::local::endpoint::AccessKey;

mod common;

/// Runs the AWS CLI with `env` only (no profile, no instance metadata) and `args`.
fn aws(env: &[(String, String)], args: &[&str]) -> Output {
    let mut cmd = Command::new("aws");
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_MAX_ATTEMPTS", "1")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("http_proxy")
        .env_remove("https_proxy");
    cmd.output()
        .expect("the AWS CLI (`aws`) runs; scripts/setup.sh installs it")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `aws` and requires success, returning its standard output.
fn ok(env: &[(String, String)], args: &[&str]) -> String {
    let o = aws(env, args);
    assert!(
        o.status.success(),
        "aws {args:?} failed: {}{}",
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// Runs `aws` and requires failure, returning its standard error.
fn fails(env: &[(String, String)], args: &[&str]) -> String {
    let o = aws(env, args);
    assert!(
        !o.status.success(),
        "aws {args:?} should have failed: {}",
        stdout(&o)
    );
    stderr(&o)
}

async fn cloud() -> (LocalCloud, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let local = LocalCloud::builder()
        .root(dir.path().join("cloud"))
        .seed(7)
        .build_local()
        .await
        .expect("a local cloud");
    (local, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_cli_copies_lists_and_removes_through_the_one_store() {
    let (local, dir) = cloud().await;
    let env = local.endpoints().env(local.endpoints().admin());
    let blob = local.cloud().blob().expect("blob").clone();
    let file = dir.path().join("hello.txt");
    std::fs::write(&file, "hello from the CLI\n").expect("a file");

    tokio::task::block_in_place(|| {
        ok(&env, &["s3", "mb", "s3://photos"]);
        ok(
            &env,
            &[
                "s3",
                "cp",
                file.to_str().expect("utf-8"),
                "s3://photos/dir/hello.txt",
            ],
        );
    });
    // What the CLI wrote, the program reads.
    let got = blob
        .get("photos", "dir/hello.txt")
        .await
        .expect("the object");
    assert_eq!(&got[..], b"hello from the CLI\n");
    // What the program writes, the CLI lists and reads.
    blob.put("photos", "dir/other.txt", "from the program")
        .await
        .expect("a put");
    tokio::task::block_in_place(|| {
        let listing = ok(&env, &["s3", "ls", "s3://photos/dir/"]);
        assert!(
            listing.contains("hello.txt") && listing.contains("other.txt"),
            "{listing}"
        );
        assert_eq!(
            ok(&env, &["s3", "cp", "s3://photos/dir/other.txt", "-"]),
            "from the program"
        );
        let buckets = ok(&env, &["s3", "ls"]);
        assert!(buckets.contains("photos"), "{buckets}");
        ok(&env, &["s3", "rm", "--recursive", "s3://photos/dir/"]);
    });
    assert!(
        blob.list_all("photos", "")
            .await
            .expect("a listing")
            .is_empty()
    );
    tokio::task::block_in_place(|| {
        let missing = fails(
            &env,
            &[
                "s3api",
                "get-object",
                "--bucket",
                "photos",
                "--key",
                "gone",
                "/dev/null",
            ],
        );
        assert!(missing.contains("NoSuchKey"), "{missing}");
        let no_bucket = fails(&env, &["s3", "ls", "s3://nope-nope/"]);
        assert!(no_bucket.contains("NoSuchBucket"), "{no_bucket}");
        ok(&env, &["s3", "rb", "s3://photos"]);
    });
    assert!(blob.list_buckets().await.expect("buckets").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_cli_multipart_ranges_and_conditional_requests() {
    let (local, dir) = cloud().await;
    let env = local.endpoints().env(local.endpoints().admin());
    let blob = local.cloud().blob().expect("blob").clone();
    blob.create_bucket("data").await.expect("a bucket");
    // Two parts: 5 MiB (the smallest a non-last part may be) and a short last one.
    let first: Vec<u8> = (0..5 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let (p1, p2) = (dir.path().join("p1"), dir.path().join("p2"));
    std::fs::write(&p1, &first).expect("part 1");
    std::fs::write(&p2, b"the end").expect("part 2");

    let etag = |json: &str| -> String {
        let v: serde_json::Value = serde_json::from_str(json).expect("json");
        v["ETag"].as_str().expect("an ETag").to_owned()
    };
    let meta = tokio::task::block_in_place(|| {
        let created = ok(
            &env,
            &[
                "s3api",
                "create-multipart-upload",
                "--bucket",
                "data",
                "--key",
                "big.bin",
            ],
        );
        let v: serde_json::Value = serde_json::from_str(&created).expect("json");
        let id = v["UploadId"].as_str().expect("an upload id").to_owned();
        let mut parts = Vec::new();
        for (n, path) in [(1, &p1), (2, &p2)] {
            let out = ok(
                &env,
                &[
                    "s3api",
                    "upload-part",
                    "--bucket",
                    "data",
                    "--key",
                    "big.bin",
                    "--upload-id",
                    &id,
                    "--part-number",
                    &n.to_string(),
                    "--body",
                    path.to_str().expect("utf-8"),
                ],
            );
            parts.push(serde_json::json!({ "PartNumber": n, "ETag": etag(&out) }));
        }
        let parts = serde_json::json!({ "Parts": parts }).to_string();
        let done = ok(
            &env,
            &[
                "s3api",
                "complete-multipart-upload",
                "--bucket",
                "data",
                "--key",
                "big.bin",
                "--upload-id",
                &id,
                "--multipart-upload",
                &parts,
            ],
        );
        etag(&done)
    });
    assert!(
        meta.trim_matches('"').ends_with("-2"),
        "a multipart ETag: {meta}"
    );
    let stored = blob
        .get("data", "big.bin")
        .await
        .expect("the assembled object");
    assert_eq!(stored.len(), first.len() + 7);
    assert_eq!(&stored[first.len()..], b"the end");

    tokio::task::block_in_place(|| {
        // A range: bytes 5 MiB .. end, i.e. the second part.
        let out = dir.path().join("range");
        let got = ok(
            &env,
            &[
                "s3api",
                "get-object",
                "--bucket",
                "data",
                "--key",
                "big.bin",
                "--range",
                &format!("bytes={}-", first.len()),
                out.to_str().expect("utf-8"),
            ],
        );
        assert!(got.contains("ContentRange"), "{got}");
        assert_eq!(std::fs::read(&out).expect("the range"), b"the end");
        let past = fails(
            &env,
            &[
                "s3api",
                "get-object",
                "--bucket",
                "data",
                "--key",
                "big.bin",
                "--range",
                "bytes=99999999-",
                out.to_str().expect("utf-8"),
            ],
        );
        assert!(past.contains("InvalidRange"), "{past}");

        // A body that does not match its checksum or its Content-MD5 is refused and not stored.
        let body = p2.to_str().expect("utf-8");
        for (flag, value) in [
            ("--checksum-crc32", "AAAAAA=="),
            ("--content-md5", "AAAAAAAAAAAAAAAAAAAAAA=="),
        ] {
            let bad = fails(
                &env,
                &[
                    "s3api",
                    "put-object",
                    "--bucket",
                    "data",
                    "--key",
                    "corrupt",
                    "--body",
                    body,
                    flag,
                    value,
                ],
            );
            assert!(bad.contains("BadDigest"), "{flag}: {bad}");
        }
        let checked = ok(
            &env,
            &[
                "s3api",
                "put-object",
                "--bucket",
                "data",
                "--key",
                "checked",
                "--body",
                body,
                "--checksum-algorithm",
                "SHA256",
            ],
        );
        assert!(
            checked.contains("ChecksumSHA256"),
            "the checksum comes back: {checked}"
        );

        // If-None-Match: * creates once, then refuses.
        ok(
            &env,
            &[
                "s3api",
                "put-object",
                "--bucket",
                "data",
                "--key",
                "once",
                "--body",
                body,
                "--if-none-match",
                "*",
            ],
        );
        let again = fails(
            &env,
            &[
                "s3api",
                "put-object",
                "--bucket",
                "data",
                "--key",
                "once",
                "--body",
                body,
                "--if-none-match",
                "*",
            ],
        );
        assert!(again.contains("PreconditionFailed"), "{again}");
        // If-Match on a read: a wrong ETag fails, the right one reads.
        let wrong = fails(
            &env,
            &[
                "s3api",
                "get-object",
                "--bucket",
                "data",
                "--key",
                "big.bin",
                "--if-match",
                "\"0000\"",
                out.to_str().expect("utf-8"),
            ],
        );
        assert!(wrong.contains("PreconditionFailed"), "{wrong}");
        ok(
            &env,
            &[
                "s3api",
                "get-object",
                "--bucket",
                "data",
                "--key",
                "big.bin",
                "--if-match",
                &meta,
                out.to_str().expect("utf-8"),
            ],
        );
    });
    assert!(
        blob.head_object("data", "corrupt").await.is_err(),
        "a refused body is not stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_and_policies_are_enforced() {
    let (local, dir) = cloud().await;
    let endpoints = local.endpoints().clone();
    let blob = local.cloud().blob().expect("blob").clone();
    for b in ["photos", "secrets"] {
        blob.create_bucket(b).await.expect("a bucket");
    }
    blob.put("photos", "cat.jpg", "meow").await.expect("a put");
    blob.put("secrets", "key", "hush").await.expect("a put");
    let out = dir.path().join("out");
    let out = out.to_str().expect("utf-8");

    // A wrong secret: the signature does not match, nothing is read.
    let mut forged = endpoints.admin().clone();
    forged.secret = mvi::SecretString::new("not-the-secret-not-the-secret-not-the-se");
    let forged_env = endpoints.env(&forged);
    // An unknown key id.
    let unknown_env = endpoints.env(&AccessKey::new("AKIAUNKNOWNUNKNOWN00", "x".repeat(40)));
    // A key that may only read bucket photos.
    let reader = endpoints.keys().issue(
        "web",
        Policy::of_grants(endpoints.account(), &[Grant::bucket_read("photos")]),
    );
    let reader_env = endpoints.env(&reader);
    tokio::task::block_in_place(|| {
        let bad = fails(
            &forged_env,
            &[
                "s3api",
                "get-object",
                "--bucket",
                "photos",
                "--key",
                "cat.jpg",
                out,
            ],
        );
        assert!(bad.contains("SignatureDoesNotMatch"), "{bad}");
        let who = fails(&unknown_env, &["s3", "ls"]);
        assert!(who.contains("InvalidAccessKeyId"), "{who}");

        ok(
            &reader_env,
            &[
                "s3api",
                "get-object",
                "--bucket",
                "photos",
                "--key",
                "cat.jpg",
                out,
            ],
        );
        assert_eq!(std::fs::read(out).expect("the object"), b"meow");
        assert!(ok(&reader_env, &["s3", "ls", "s3://photos/"]).contains("cat.jpg"));
        let write = fails(
            &reader_env,
            &[
                "s3api",
                "put-object",
                "--bucket",
                "photos",
                "--key",
                "dog.jpg",
            ],
        );
        assert!(
            write.contains("AccessDenied")
                && write.contains("s3:PutObject")
                && write.contains("arn:aws:s3:::photos/dog.jpg"),
            "{write}"
        );
        let other = fails(
            &reader_env,
            &[
                "s3api",
                "get-object",
                "--bucket",
                "secrets",
                "--key",
                "key",
                out,
            ],
        );
        assert!(
            other.contains("AccessDenied") && other.contains("arn:aws:s3:::secrets/key"),
            "{other}"
        );
        let list_all = fails(&reader_env, &["s3", "ls"]);
        assert!(list_all.contains("AccessDenied"), "{list_all}");
    });
    // Nothing the refused requests asked for happened.
    assert!(blob.head_object("photos", "dog.jpg").await.is_err());

    // A revoked key is refused from then on.
    assert!(endpoints.keys().revoke(&reader.id));
    tokio::task::block_in_place(|| {
        let revoked = fails(&reader_env, &["s3", "ls", "s3://photos/"]);
        assert!(revoked.contains("InvalidAccessKeyId"), "{revoked}");
    });
}

/// A presigned URL split into its path and query, checked to be on the endpoint.
fn split_url<'a>(base: &str, url: &'a str) -> (&'a str, &'a str) {
    url.trim()
        .strip_prefix(base)
        .and_then(|rest| rest.split_once('?'))
        .expect("a presigned URL on the endpoint")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_urls_work_until_they_expire() {
    let (local, dir) = cloud().await;
    let base = local.endpoints().url();
    let admin = local.endpoints().env(local.endpoints().admin());
    // The AWS CLI presigns with SigV2 unless told to use SigV4: check both.
    let v4_config = dir.path().join("s3v4.ini");
    std::fs::write(&v4_config, "[default]\ns3 =\n  signature_version = s3v4\n").expect("a config");
    let mut v4 = admin.clone();
    v4.push((
        "AWS_CONFIG_FILE".into(),
        v4_config.to_str().expect("utf-8").into(),
    ));
    let blob = local.cloud().blob().expect("blob").clone();
    blob.create_bucket("share").await.expect("a bucket");
    blob.put("share", "note.txt", "shared")
        .await
        .expect("a put");

    for (version, env, signature) in [
        ("SigV4", &v4, "X-Amz-Signature="),
        ("SigV2", &admin, "&Signature="),
    ] {
        let url = tokio::task::block_in_place(|| {
            ok(
                env,
                &[
                    "s3",
                    "presign",
                    "s3://share/note.txt",
                    "--expires-in",
                    "300",
                ],
            )
        });
        let (path, query) = split_url(&base, &url);
        assert!(query.contains(signature), "{version}: {url}");
        let (status, body) = common::http_get(&base, &format!("{path}?{query}"))
            .await
            .expect("a GET of the presigned URL");
        assert_eq!((status, body.as_str()), (200, "shared"), "{version}");
        // The same URL with its signature altered is refused.
        let at = query.find(signature).expect("a signature") + signature.len();
        let flipped = if query.as_bytes()[at] == b'0' {
            "1"
        } else {
            "0"
        };
        let tampered = format!("{}{flipped}{}", &query[..at], &query[at + 1..]);
        let (status, body) = common::http_get(&base, &format!("{path}?{tampered}"))
            .await
            .expect("a GET");
        assert_eq!(status, 403, "{version}: {body}");
        // So is a key the signature does not name.
        let (status, _) = common::http_get(&base, &format!("{}?{tampered}", "/share/other.txt"))
            .await
            .expect("a GET");
        assert_eq!(status, 403, "{version}");

        let short = tokio::task::block_in_place(|| {
            ok(
                env,
                &["s3", "presign", "s3://share/note.txt", "--expires-in", "1"],
            )
        });
        // Past its expiry (a bounded wait: the URL expires after 1 s whatever the load).
        tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
        let (path, query) = split_url(&base, &short);
        let (status, body) = common::http_get(&base, &format!("{path}?{query}"))
            .await
            .expect("a GET");
        assert_eq!(status, 403, "{version}: {body}");
        assert!(body.contains("expired"), "{version}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_stop_with_the_cloud_and_release_its_root() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let root = dir.path().join("cloud");
    let local = LocalCloud::builder()
        .root(&root)
        .build_local()
        .await
        .expect("a local cloud");
    let addr = local.endpoints().addr();
    drop(local);
    // The port closes and the state root can be opened again at once.
    let mut closed = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(closed, "the endpoint at {addr} still accepts connections");
    LocalCloud::builder()
        .root(&root)
        .build_local()
        .await
        .expect("the root reopens");
}

/// The tutorial web app (`examples/webapp`) in a container: `/upload` and `/visits` use S3 and
/// DynamoDB through boto3 with what the container service gives it (the endpoints and a key of
/// the service's own, limited to its grants): the same code runs on AWS with a task role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_app_uploads_and_counts_with_exactly_its_grants() {
    use mvi::container::{ContainerSpec, ServiceSpec};
    use mvi::kv::{Key, KeyAttr, KeyType, TableSpec, Value};
    let (local, _dir) = cloud().await;
    let cloud = local.cloud().clone();
    let blob = cloud.blob().expect("blob").clone();
    for b in ["uploads", "private"] {
        blob.create_bucket(b).await.expect("a bucket");
    }
    blob.put("private", "plans.txt", "not for the app")
        .await
        .expect("a put");
    let kv = cloud.kv().expect("kv").clone();
    kv.create_table(TableSpec::new("visits", KeyAttr::new("page", KeyType::Str)))
        .await
        .expect("a table");
    common::build_app(&cloud, "webapp", "examples/webapp").await;
    let url = common::front(&cloud, "front", "webapp", std::time::Duration::ZERO).await;
    let mut c = ContainerSpec::new("webapp:v1")
        .grant(Grant::bucket_read_write("uploads"))
        .grant(Grant::table_read_write("visits"));
    c.cpu_millis = 128;
    c.memory_mib = 64;
    c.port = Some(8080);
    c.health_check = Some(common::fast_check());
    c.env.insert("UPLOAD_BUCKET".into(), "uploads".into());
    c.env.insert("VISITS_TABLE".into(), "visits".into());
    let mut spec = ServiceSpec::new("webapp", c, 1);
    spec.target_group = Some("webapp".into());
    cloud
        .containers()
        .expect("containers")
        .create_service(spec)
        .await
        .expect("the service");
    common::wait_healthy(&cloud, "webapp", 1).await;

    // Upload, read back (through the endpoint and through the program's own handle).
    let (status, etag) = common::http_request(&url, "POST", "/upload/hello.txt", b"hello, bucket")
        .await
        .expect("a POST");
    assert_eq!(status, 201, "{etag}");
    let stored = blob
        .head_object("uploads", "hello.txt")
        .await
        .expect("stored");
    assert_eq!(etag.trim_matches('"'), stored.etag);
    let (status, body) = common::http_get(&url, "/upload/hello.txt")
        .await
        .expect("a GET");
    assert_eq!((status, body.as_str()), (200, "hello, bucket"));

    // The counter increments, atomically, in the one table.
    for n in 1..=3 {
        let (status, body) = common::http_get(&url, "/visits").await.expect("a GET");
        assert_eq!((status, body), (200, format!("visits: {n}")));
    }
    let counted = kv
        .get_item("visits", Key::new("/visits"))
        .await
        .expect("get")
        .and_then(|i| i.get("visits").cloned());
    assert_eq!(counted, Some(Value::Int(3)));

    // Outside its grants, AccessDenied naming the action and the resource; nothing changes.
    let (status, body) = common::http_get(&url, "/upload/plans.txt?bucket=private")
        .await
        .expect("a GET");
    assert_eq!(status, 403, "{body}");
    assert!(
        body.starts_with("AccessDenied")
            && body.contains("webapp")
            && body.contains("s3:GetObject")
            && body.contains("arn:aws:s3:::private/plans.txt"),
        "{body}"
    );
    let (status, body) = common::http_request(
        &url,
        "POST",
        "/upload/plans.txt?bucket=private",
        b"overwritten",
    )
    .await
    .expect("a POST");
    assert!(status == 403 && body.starts_with("AccessDenied"), "{body}");
    assert_eq!(
        &blob.get("private", "plans.txt").await.expect("kept")[..],
        b"not for the app"
    );

    // The service's key dies with it.
    let keys = local.endpoints().keys();
    assert_eq!(keys.ids_of("webapp").len(), 1, "one key for the service");
    cloud
        .containers()
        .expect("containers")
        .delete_service("webapp")
        .await
        .expect("deleted");
    assert!(keys.ids_of("webapp").is_empty(), "the key was not revoked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_aws_errors_and_stores_nothing() {
    let (local, _dir) = cloud().await;
    let text = bad_input(&local, "tests/fixtures/s3_bad_input.py").await;
    let answers = answers(&text);
    for (case, status, code) in [
        ("malformed-xml", "400", "MalformedXML"),
        ("not-xml", "400", "MalformedXML"),
        ("oversized-xml", "400", "MaxMessageLengthExceeded"),
        ("unknown-json-operation", "400", "UnknownOperationException"),
        ("query-protocol", "400", "InvalidAction"),
        ("unsigned", "403", "AccessDenied"),
        ("bad-bucket-name", "400", "InvalidBucketName"),
        ("after", "200", "-"),
    ] {
        assert_eq!(answers.get(case), Some(&(status, code)), "{case}: {text}");
    }
    let blob = local.cloud().blob().expect("blob");
    assert!(
        blob.head_object("bad", "k").await.is_err(),
        "nothing was completed"
    );
}

/// Runs a bad-input fixture script (`python3 SCRIPT URL KEY SECRET`, admin credentials)
/// against the cloud's endpoints; its standard output, once it succeeded.
async fn bad_input(local: &LocalCloud, script: &str) -> String {
    let endpoints = local.endpoints().clone();
    let script = common::repo::package_path(script);
    let admin = endpoints.admin().clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(script)
            .args([
                endpoints.url(),
                admin.id.clone(),
                admin.secret.expose().to_owned(),
            ])
            .output()
            .expect("python3 runs (scripts/setup.sh installs boto3)")
    })
    .await
    .expect("the script");
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    text
}

/// A fixture's `<case> <status> <code>` lines, by case.
fn answers(text: &str) -> std::collections::BTreeMap<&str, (&str, &str)> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?, (w.next()?, w.next()?)))
        })
        .collect()
}

/// Parses the AWS CLI's JSON output.
fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_cli_dynamodb_items_expressions_and_pages_through_the_one_store() {
    use mvi::kv::{Key, Value};
    let (local, _dir) = cloud().await;
    let endpoints = local.endpoints().clone();
    let env = endpoints.env(endpoints.admin());
    let t = "visits";
    ok(
        &env,
        &[
            "dynamodb",
            "create-table",
            "--table-name",
            t,
            "--attribute-definitions",
            "AttributeName=page,AttributeType=S",
            "AttributeName=day,AttributeType=N",
            "--key-schema",
            "AttributeName=page,KeyType=HASH",
            "AttributeName=day,KeyType=RANGE",
            "--billing-mode",
            "PAY_PER_REQUEST",
        ],
    );
    let described = json(&ok(
        &env,
        &["dynamodb", "describe-table", "--table-name", t],
    ));
    assert_eq!(described["Table"]["TableStatus"], "ACTIVE");
    assert_eq!(
        described["Table"]["TableArn"],
        "arn:aws:dynamodb:us-east-1:000000000000:table/visits"
    );
    let item = r#"{"page": {"S": "/home"}, "day": {"N": "1"}, "tags": {"L": [{"S": "a"}]}}"#;
    let absent = "attribute_not_exists(page)";
    ok(
        &env,
        &[
            "dynamodb",
            "put-item",
            "--table-name",
            t,
            "--item",
            item,
            "--condition-expression",
            absent,
        ],
    );
    let again = fails(
        &env,
        &[
            "dynamodb",
            "put-item",
            "--table-name",
            t,
            "--item",
            item,
            "--condition-expression",
            absent,
        ],
    );
    assert!(again.contains("ConditionalCheckFailedException"), "{again}");

    // A counter, through a placeholder for the reserved word `count`.
    let key = r#"{"page": {"S": "/home"}, "day": {"N": "1"}}"#;
    let bump = [
        "dynamodb",
        "update-item",
        "--table-name",
        t,
        "--key",
        key,
        "--update-expression",
        "SET #c = if_not_exists(#c, :zero) + :one",
        "--expression-attribute-names",
        r##"{"#c": "count"}"##,
        "--expression-attribute-values",
        r#"{":zero": {"N": "0"}, ":one": {"N": "1"}}"#,
        "--return-values",
        "UPDATED_NEW",
    ];
    for want in ["1", "2"] {
        let out = json(&ok(&env, &bump));
        assert_eq!(out["Attributes"]["count"]["N"], want, "{out}");
    }
    let bare = fails(
        &env,
        &[
            "dynamodb",
            "update-item",
            "--table-name",
            t,
            "--key",
            key,
            "--update-expression",
            "SET count = :one",
            "--expression-attribute-values",
            r#"{":one": {"N": "1"}}"#,
        ],
    );
    assert!(
        bare.contains("ValidationException") && bare.contains("reserved keyword: count"),
        "{bare}"
    );
    // One store: the program reads what the CLI wrote.
    let kv = local.cloud().kv().expect("kv");
    let stored = kv
        .get_item(t, Key::with_sort("/home", 1))
        .await
        .expect("get")
        .expect("the item");
    assert_eq!(stored.get("count"), Some(&Value::Int(2)));

    let got = json(&ok(
        &env,
        &[
            "dynamodb",
            "get-item",
            "--table-name",
            t,
            "--key",
            key,
            "--projection-expression",
            "tags[0], #c",
            "--expression-attribute-names",
            r##"{"#c": "count"}"##,
        ],
    ));
    assert_eq!(
        got["Item"],
        json(r#"{"tags": {"L": [{"S": "a"}]}, "count": {"N": "2"}}"#)
    );

    // Days 2..=9 of /home in one batch, one of /about.
    let mut puts: Vec<String> = (2..=9)
        .map(|d| {
            format!(
                r#"{{"PutRequest": {{"Item": {{"page": {{"S": "/home"}}, "day": {{"N": "{d}"}}, "n": {{"N": "{}"}}}}}}}}"#,
                d * 10
            )
        })
        .collect();
    puts.push(
        r#"{"PutRequest": {"Item": {"page": {"S": "/about"}, "day": {"N": "5"}, "n": {"N": "50"}}}}"#
            .to_owned(),
    );
    let batch = format!(r#"{{"{t}": [{}]}}"#, puts.join(","));
    let out = json(&ok(
        &env,
        &["dynamodb", "batch-write-item", "--request-items", &batch],
    ));
    assert_eq!(out["UnprocessedItems"], json("{}"));

    // A key range, a filter, and pages of 3 evaluated items, highest day first.
    let query = |start: Option<&str>| {
        let mut args = vec![
            "dynamodb",
            "query",
            "--table-name",
            t,
            "--key-condition-expression",
            "page = :p AND #d BETWEEN :lo AND :hi",
            "--filter-expression",
            "n >= :min",
            "--expression-attribute-names",
            r##"{"#d": "day"}"##,
            "--expression-attribute-values",
            r#"{":p": {"S": "/home"}, ":lo": {"N": "2"}, ":hi": {"N": "8"}, ":min": {"N": "40"}}"#,
            "--no-scan-index-forward",
            "--limit",
            "3",
            "--no-paginate",
        ];
        if let Some(s) = start {
            args.extend(["--exclusive-start-key", s]);
        }
        json(&ok(&env, &args))
    };
    let mut days = Vec::new();
    let mut scanned = 0;
    let mut start: Option<String> = None;
    loop {
        let page = query(start.as_deref());
        scanned += page["ScannedCount"].as_u64().expect("ScannedCount");
        for i in page["Items"].as_array().expect("Items") {
            days.push(
                i["day"]["N"]
                    .as_str()
                    .expect("day")
                    .parse::<i64>()
                    .expect("n"),
            );
        }
        match page.get("LastEvaluatedKey") {
            Some(k) => start = Some(k.to_string()),
            None => break,
        }
    }
    assert_eq!(
        days,
        vec![8, 7, 6, 5, 4],
        "days 2..=8 with n >= 40, descending"
    );
    assert_eq!(scanned, 7, "each of days 2..=8 evaluated once");

    let scan = json(&ok(
        &env,
        &[
            "dynamodb",
            "scan",
            "--table-name",
            t,
            "--filter-expression",
            "page = :a",
            "--expression-attribute-values",
            r#"{":a": {"S": "/about"}}"#,
        ],
    ));
    assert_eq!(scan["Count"], 1, "{scan}");

    let keys = r#"{"visits": {"Keys": [{"page": {"S": "/about"}, "day": {"N": "5"}}, {"page": {"S": "/none"}, "day": {"N": "1"}}]}}"#;
    let got = json(&ok(
        &env,
        &["dynamodb", "batch-get-item", "--request-items", keys],
    ));
    assert_eq!(
        got["Responses"][t].as_array().map(Vec::len),
        Some(1),
        "{got}"
    );

    // A transaction whose check fails applies none of its writes.
    let txn = r#"[
        {"Put": {"TableName": "visits", "Item": {"page": {"S": "/txn"}, "day": {"N": "1"}}}},
        {"ConditionCheck": {"TableName": "visits", "Key": {"page": {"S": "/about"}, "day": {"N": "5"}},
            "ConditionExpression": "n = :wrong", "ExpressionAttributeValues": {":wrong": {"N": "1"}}}}
    ]"#;
    let err = fails(
        &env,
        &["dynamodb", "transact-write-items", "--transact-items", txn],
    );
    assert!(
        err.contains("TransactionCanceledException")
            && err.contains("[None, ConditionalCheckFailed]"),
        "{err}"
    );
    assert!(
        kv.get_item(t, Key::with_sort("/txn", 1))
            .await
            .expect("get")
            .is_none(),
        "a cancelled transaction wrote"
    );
    let ok_txn = txn.replace(r#"":wrong": {"N": "1"}"#, r#"":wrong": {"N": "50"}"#);
    ok(
        &env,
        &[
            "dynamodb",
            "transact-write-items",
            "--transact-items",
            &ok_txn,
        ],
    );
    assert!(
        kv.get_item(t, Key::with_sort("/txn", 1))
            .await
            .expect("get")
            .is_some()
    );

    let old = json(&ok(
        &env,
        &[
            "dynamodb",
            "delete-item",
            "--table-name",
            t,
            "--key",
            key,
            "--return-values",
            "ALL_OLD",
        ],
    ));
    assert_eq!(old["Attributes"]["count"]["N"], "2");
    let listed = json(&ok(&env, &["dynamodb", "list-tables"]));
    assert_eq!(listed["TableNames"], json(r#"["visits"]"#));
    ok(&env, &["dynamodb", "delete-table", "--table-name", t]);
    let gone = fails(&env, &["dynamodb", "describe-table", "--table-name", t]);
    assert!(gone.contains("ResourceNotFoundException"), "{gone}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_signatures_and_grants_are_enforced() {
    let (local, _dir) = cloud().await;
    let endpoints = local.endpoints().clone();
    let admin = endpoints.env(endpoints.admin());
    for t in ["open", "closed"] {
        ok(
            &admin,
            &[
                "dynamodb",
                "create-table",
                "--table-name",
                t,
                "--attribute-definitions",
                "AttributeName=id,AttributeType=S",
                "--key-schema",
                "AttributeName=id,KeyType=HASH",
                "--billing-mode",
                "PAY_PER_REQUEST",
            ],
        );
    }
    let item = r#"{"id": {"S": "a"}}"#;
    ok(
        &admin,
        &[
            "dynamodb",
            "put-item",
            "--table-name",
            "open",
            "--item",
            item,
        ],
    );
    let policy = Policy::of_grants(endpoints.account(), &[Grant::table_read("open")]);
    let reader = endpoints.keys().issue("reader", policy);
    let env = endpoints.env(&reader);
    let got = json(&ok(
        &env,
        &[
            "dynamodb",
            "get-item",
            "--table-name",
            "open",
            "--key",
            item,
        ],
    ));
    assert_eq!(got["Item"]["id"]["S"], "a");
    let denied = fails(
        &env,
        &[
            "dynamodb",
            "put-item",
            "--table-name",
            "open",
            "--item",
            item,
        ],
    );
    assert!(
        denied.contains("AccessDeniedException")
            && denied.contains("reader is not authorized to perform: dynamodb:PutItem")
            && denied.contains("arn:aws:dynamodb:us-east-1:000000000000:table/open"),
        "{denied}"
    );
    let other = fails(
        &env,
        &[
            "dynamodb",
            "get-item",
            "--table-name",
            "closed",
            "--key",
            item,
        ],
    );
    assert!(
        other.contains("AccessDeniedException") && other.contains("table/closed"),
        "{other}"
    );

    let wrong_secret = endpoints.env(&AccessKey::new(reader.id.clone(), "not-the-secret"));
    let err = fails(&wrong_secret, &["dynamodb", "list-tables"]);
    assert!(err.contains("InvalidSignatureException"), "{err}");
    let unknown = endpoints.env(&AccessKey::new("AKIAUNKNOWNUNKNOWN00", "secret"));
    let err = fails(&unknown, &["dynamodb", "list-tables"]);
    assert!(err.contains("UnrecognizedClientException"), "{err}");
    assert!(endpoints.keys().revoke(&reader.id));
    let err = fails(
        &env,
        &[
            "dynamodb",
            "get-item",
            "--table-name",
            "open",
            "--key",
            item,
        ],
    );
    assert!(err.contains("UnrecognizedClientException"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_bad_input_gets_aws_errors_and_stores_nothing() {
    let (local, _dir) = cloud().await;
    let text = bad_input(&local, "tests/fixtures/dynamodb_bad_input.py").await;
    let answers = answers(&text);
    for (case, status, code) in [
        ("malformed-json", "400", "SerializationException"),
        ("not-an-object", "400", "SerializationException"),
        ("too-deep", "400", "ValidationException"),
        ("deepest-allowed", "200", "-"),
        (
            "json-deeper-than-parsers-go",
            "400",
            "SerializationException",
        ),
        ("two-types", "400", "ValidationException"),
        ("bad-number", "400", "ValidationException"),
        ("set-type", "400", "ValidationException"),
        ("reserved-word", "400", "ValidationException"),
        ("unused-value", "400", "ValidationException"),
        ("expression-too-long", "400", "ValidationException"),
        ("unknown-table", "400", "ResourceNotFoundException"),
        ("wrong-key", "400", "ValidationException"),
        ("unknown-operation", "400", "UnknownOperationException"),
        ("unsigned", "400", "MissingAuthenticationTokenException"),
        ("wrong-secret", "400", "InvalidSignatureException"),
        ("stale-date", "400", "InvalidSignatureException"),
        ("recent-date", "200", "-"),
        ("unknown-key", "400", "UnrecognizedClientException"),
        ("oversized", "413", "RequestEntityTooLarge"),
        ("after", "200", "ok32"),
    ] {
        assert_eq!(answers.get(case), Some(&(status, code)), "{case}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_cli_kms_encrypts_and_decrypts_with_the_one_key_store() {
    use base64::Engine;
    use mvi::crypto::CreateKey;
    let b64 = base64::engine::general_purpose::STANDARD;
    let (local, dir) = cloud().await;
    let endpoints = local.endpoints().clone();
    let env = endpoints.env(endpoints.admin());
    let crypto = local.cloud().crypto().expect("crypto").clone();
    let key = crypto
        .create_key(CreateKey::new("app secrets").alias("alias/app"))
        .await
        .expect("a key");
    let plain = dir.path().join("plain");
    std::fs::write(&plain, b"the launch codes").expect("write");
    let plain_arg = format!("fileb://{}", plain.display());
    let ciphertext = ok(
        &env,
        &[
            "kms",
            "encrypt",
            "--key-id",
            "alias/app",
            "--plaintext",
            &plain_arg,
            "--encryption-context",
            "purpose=test",
            "--output",
            "text",
            "--query",
            "CiphertextBlob",
        ],
    );
    let ct = b64.decode(ciphertext.trim()).expect("base64 ciphertext");
    // The program decrypts what the CLI encrypted: one key store.
    let mut context = mvi::crypto::EncryptionContext::new();
    context.insert("purpose".into(), "test".into());
    let back = crypto.decrypt(&ct, &context).await.expect("decrypt");
    assert_eq!(back.plaintext.expose(), b"the launch codes");
    assert_eq!(back.key_id, key.id);

    let ct_file = dir.path().join("ct");
    std::fs::write(&ct_file, &ct).expect("write");
    let ct_arg = format!("fileb://{}", ct_file.display());
    let decrypted = ok(
        &env,
        &[
            "kms",
            "decrypt",
            "--ciphertext-blob",
            &ct_arg,
            "--encryption-context",
            "purpose=test",
            "--output",
            "text",
            "--query",
            "Plaintext",
        ],
    );
    assert_eq!(
        b64.decode(decrypted.trim()).expect("b64"),
        b"the launch codes"
    );
    let wrong = fails(
        &env,
        &[
            "kms",
            "decrypt",
            "--ciphertext-blob",
            &ct_arg,
            "--encryption-context",
            "purpose=other",
        ],
    );
    assert!(wrong.contains("InvalidCiphertextException"), "{wrong}");

    let described = json(&ok(&env, &["kms", "describe-key", "--key-id", "alias/app"]));
    let arn = format!("arn:aws:kms:us-east-1:000000000000:key/{}", key.id);
    assert_eq!(described["KeyMetadata"]["Arn"], arn.as_str());
    assert_eq!(described["KeyMetadata"]["KeyState"], "Enabled");
    let by_arn = json(&ok(&env, &["kms", "describe-key", "--key-id", &arn]));
    assert_eq!(by_arn["KeyMetadata"]["KeyId"], key.id.as_str());

    let dk = json(&ok(
        &env,
        &[
            "kms",
            "generate-data-key",
            "--key-id",
            &key.id,
            "--key-spec",
            "AES_256",
        ],
    ));
    let dk_plain = b64
        .decode(dk["Plaintext"].as_str().expect("Plaintext"))
        .expect("b64");
    assert_eq!(dk_plain.len(), 32);
    let dk_ct = b64
        .decode(dk["CiphertextBlob"].as_str().expect("blob"))
        .expect("b64");
    let unwrapped = crypto
        .decrypt(&dk_ct, &mvi::crypto::EncryptionContext::new())
        .await
        .expect("the data key decrypts");
    assert_eq!(unwrapped.plaintext.expose(), dk_plain.as_slice());

    // A decrypt-only key may decrypt, not encrypt.
    let policy = Policy::of_grants(endpoints.account(), &[Grant::key_decrypt(key.id.clone())]);
    let reader = endpoints.keys().issue("reader", policy);
    let renv = endpoints.env(&reader);
    ok(
        &renv,
        &[
            "kms",
            "decrypt",
            "--ciphertext-blob",
            &ct_arg,
            "--encryption-context",
            "purpose=test",
        ],
    );
    let denied = fails(
        &renv,
        &[
            "kms",
            "encrypt",
            "--key-id",
            "alias/app",
            "--plaintext",
            &plain_arg,
        ],
    );
    assert!(
        denied.contains("AccessDeniedException")
            && denied.contains("kms:Encrypt")
            && denied.contains(&arn),
        "{denied}"
    );
    crypto.disable_key(&key.id).await.expect("disable");
    let disabled = fails(
        &env,
        &[
            "kms",
            "encrypt",
            "--key-id",
            "alias/app",
            "--plaintext",
            &plain_arg,
        ],
    );
    assert!(disabled.contains("DisabledException"), "{disabled}");
    let missing = fails(&env, &["kms", "describe-key", "--key-id", "alias/nope"]);
    assert!(missing.contains("NotFoundException"), "{missing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_cli_logs_put_get_and_filter_through_the_one_store() {
    use mvi::log::GetEvents;
    let (local, _dir) = cloud().await;
    let endpoints = local.endpoints().clone();
    let env = endpoints.env(endpoints.admin());
    ok(
        &env,
        &["logs", "create-log-group", "--log-group-name", "web"],
    );
    ok(
        &env,
        &[
            "logs",
            "create-log-stream",
            "--log-group-name",
            "web",
            "--log-stream-name",
            "r1",
        ],
    );
    let dup = fails(
        &env,
        &["logs", "create-log-group", "--log-group-name", "web"],
    );
    assert!(dup.contains("ResourceAlreadyExistsException"), "{dup}");
    let now = chrono::Utc::now().timestamp_millis();
    let events = format!(
        r#"[{{"timestamp": {now}, "message": "GET / 200"}}, {{"timestamp": {}, "message": "ERROR db timeout"}}, {{"timestamp": {}, "message": "GET /a 200"}}]"#,
        now + 1,
        now + 2
    );
    ok(
        &env,
        &[
            "logs",
            "put-log-events",
            "--log-group-name",
            "web",
            "--log-stream-name",
            "r1",
            "--log-events",
            &events,
        ],
    );
    // The program reads what the CLI wrote.
    let logs = local.cloud().logs().expect("logs").clone();
    let page = logs
        .get_events(GetEvents::new("web", "r1"))
        .await
        .expect("events");
    let messages: Vec<&str> = page.items.iter().map(|r| r.message.as_str()).collect();
    assert_eq!(messages, ["GET / 200", "ERROR db timeout", "GET /a 200"]);

    let got = json(&ok(
        &env,
        &[
            "logs",
            "get-log-events",
            "--log-group-name",
            "web",
            "--log-stream-name",
            "r1",
            "--start-from-head",
        ],
    ));
    let got: Vec<&str> = got["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert_eq!(got, ["GET / 200", "ERROR db timeout", "GET /a 200"]);
    let newest = json(&ok(
        &env,
        &[
            "logs",
            "get-log-events",
            "--log-group-name",
            "web",
            "--log-stream-name",
            "r1",
            "--limit",
            "1",
            "--no-paginate",
        ],
    ));
    assert_eq!(newest["events"][0]["message"], "GET /a 200", "{newest}");

    let filtered = json(&ok(
        &env,
        &[
            "logs",
            "filter-log-events",
            "--log-group-name",
            "web",
            "--filter-pattern",
            "ERROR",
        ],
    ));
    let hits: Vec<&str> = filtered["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert_eq!(hits, ["ERROR db timeout"], "{filtered}");
    assert_eq!(filtered["events"][0]["logStreamName"], "r1");

    let streams = json(&ok(
        &env,
        &["logs", "describe-log-streams", "--log-group-name", "web"],
    ));
    assert_eq!(streams["logStreams"][0]["logStreamName"], "r1");

    // A group's write grant allows putting, not reading another group.
    ok(
        &env,
        &["logs", "create-log-group", "--log-group-name", "other"],
    );
    let policy = Policy::of_grants(endpoints.account(), &[Grant::log_group_write("web")]);
    let writer = endpoints.keys().issue("writer", policy);
    let wenv = endpoints.env(&writer);
    ok(
        &wenv,
        &[
            "logs",
            "put-log-events",
            "--log-group-name",
            "web",
            "--log-stream-name",
            "r1",
            "--log-events",
            &format!(r#"[{{"timestamp": {}, "message": "more"}}]"#, now + 3),
        ],
    );
    let denied = fails(
        &wenv,
        &["logs", "filter-log-events", "--log-group-name", "other"],
    );
    assert!(
        denied.contains("AccessDeniedException") && denied.contains("logs:FilterLogEvents"),
        "{denied}"
    );
    let missing = fails(
        &env,
        &["logs", "filter-log-events", "--log-group-name", "nope"],
    );
    assert!(missing.contains("ResourceNotFoundException"), "{missing}");
}

/// A stack grants its service exactly the bucket and table it declares: `preview` shows the
/// policy document before anything exists, `up` gives the app a key with that very policy
/// (and the stack an output of it), and the app uses both through the endpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_grants_its_service_what_it_declares() {
    use mvi::image::ImageConfig;
    use mvi::kv::{KeyAttr, KeyType};
    use mvi::stack::resources::{
        Bucket, BucketArgs, ContainerService, ContainerServiceArgs, Image, ImageArgs, Repository,
        RepositoryArgs, Table, TableArgs,
    };
    use mvi::stack::{FileStore, Stack, StepOp};
    let (local, dir) = cloud().await;
    let declare = || {
        let s = Stack::new(
            "app",
            local.cloud().clone(),
            FileStore::new(dir.path().join("stacks")),
        )
        .expect("a stack");
        let bucket = Bucket::new(
            &s,
            "uploads",
            BucketArgs::new("app-uploads").force_destroy(),
        )
        .expect("bucket");
        let table = Table::new(
            &s,
            "visits",
            TableArgs::new("app-visits", KeyAttr::new("page", KeyType::Str)),
        )
        .expect("table");
        let repo =
            Repository::new(&s, "repo", RepositoryArgs::new("web").force_destroy()).expect("repo");
        let image = Image::new(
            &s,
            "image",
            ImageArgs::new(
                &repo.name,
                common::repo::package_path("examples/webapp"),
                ImageConfig::new(["python3", "app.py"]).working_dir("/"),
            )
            .expect("image args")
            .tag("v1"),
        )
        .expect("image");
        let web = ContainerService::new(
            &s,
            "web",
            ContainerServiceArgs::new("web", &image.reference, 1)
                .port(8080)
                .resources(128, 64)
                .health_check(common::fast_check())
                .env("UPLOAD_BUCKET", &bucket.name)
                .env("VISITS_TABLE", &table.name)
                .grant(bucket.grant_read_write())
                .grant(table.grant_read()),
        )
        .expect("service");
        s.export("policy", &web.policy).expect("export");
        (s, web)
    };
    let (s, _) = declare();
    let plan = s.preview().await.expect("preview");
    let step = plan.step("web").expect("the service's step");
    assert_eq!(step.op, StepOp::Create);
    let shown = step
        .diffs
        .iter()
        .find(|d| d.name == "outputs.policy")
        .unwrap_or_else(|| panic!("no policy in the preview: {plan}"));
    let mvi::stack::Shown::Value(previewed) = &shown.new else {
        panic!("the policy is not known in the preview: {shown}");
    };
    let want = Policy::of_grants(
        local.endpoints().account(),
        &[
            Grant::bucket_read_write("app-uploads"),
            Grant::table_read("app-visits"),
        ],
    )
    .to_document();
    assert_eq!(previewed, &want);
    let text = plan.to_string();
    assert!(
        text.contains("outputs.policy") && text.contains("dynamodb:Query"),
        "{text}"
    );

    s.up().await.expect("up");
    let outputs = s.outputs().await.expect("outputs");
    assert_eq!(outputs.get("policy"), Some(&want));
    let keys = local.endpoints().keys();
    let ids = keys.ids_of("web");
    assert_eq!(ids.len(), 1, "one key for the service");
    let principal = keys.principal(&ids[0]).expect("its principal");
    assert_eq!(
        principal.policy.to_document(),
        want,
        "the key has the stack's policy"
    );

    // The app uploads, and may read the table but not write it.
    let info = local
        .cloud()
        .containers()
        .expect("containers")
        .describe_service("web")
        .await
        .expect("described");
    let addr = info.instances[0].address.clone().expect("an address");
    let url = format!("http://{addr}");
    let (status, body) = common::http_request(&url, "POST", "/upload/a.txt", b"from the stack")
        .await
        .expect("a POST");
    assert_eq!(status, 201, "{body}");
    let (status, body) = common::http_get(&url, "/visits").await.expect("a GET");
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("dynamodb:UpdateItem") && body.contains("table/app-visits"),
        "{body}"
    );

    // Declared again unchanged: nothing to do, the policy included.
    let (again, _) = declare();
    let plan = again.preview().await.expect("preview");
    assert!(plan.is_empty(), "{plan}");
    again.destroy().await.expect("destroy");
    assert!(
        keys.ids_of("web").is_empty(),
        "the key outlived the service"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_cli_cloudwatch_puts_metrics_and_reads_statistics() {
    use mvi::metric::{GetStatistics, MetricId, Statistic};
    let (local, _dir) = cloud().await;
    let endpoints = local.endpoints().clone();
    let env = endpoints.env(endpoints.admin());
    let now = chrono::Utc::now();
    let at = now.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    for v in ["10", "20", "90"] {
        ok(
            &env,
            &[
                "cloudwatch",
                "put-metric-data",
                "--namespace",
                "App",
                "--metric-name",
                "Latency",
                "--value",
                v,
                "--unit",
                "Milliseconds",
                "--dimensions",
                "Service=web",
                "--timestamp",
                &at,
            ],
        );
    }
    // The program reads what the CLI put.
    let metric = MetricId::new("App", "Latency").dimension("Service", "web");
    let window = (
        now - chrono::Duration::minutes(5),
        now + chrono::Duration::minutes(5),
    );
    let stats = local
        .cloud()
        .metrics()
        .expect("metrics")
        .get_statistics(GetStatistics::new(
            metric,
            window.0,
            window.1,
            std::time::Duration::from_secs(600),
            [Statistic::Sum],
        ))
        .await
        .expect("statistics");
    assert_eq!(
        stats
            .iter()
            .filter_map(|p| p.get(Statistic::Sum))
            .sum::<f64>(),
        120.0
    );

    let (start, end) = (
        window.0.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        window.1.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    );
    let query = |stats: &[&str]| {
        let mut args = vec![
            "cloudwatch",
            "get-metric-statistics",
            "--namespace",
            "App",
            "--metric-name",
            "Latency",
            "--dimensions",
            "Name=Service,Value=web",
            "--start-time",
            &start,
            "--end-time",
            &end,
            "--period",
            "600",
        ];
        args.extend_from_slice(stats);
        let o = aws(&env, &args);
        if o.status.success() {
            Ok(json(&stdout(&o)))
        } else {
            Err(stderr(&o))
        }
    };
    let got = query(&["--statistics", "Average", "Maximum", "SampleCount"]).expect("statistics");
    let points = got["Datapoints"].as_array().expect("Datapoints");
    let total: f64 = points
        .iter()
        .filter_map(|p| p["SampleCount"].as_f64())
        .sum();
    let max = points
        .iter()
        .filter_map(|p| p["Maximum"].as_f64())
        .fold(0.0, f64::max);
    assert_eq!((total, max), (3.0, 90.0), "{got}");
    assert_eq!(points[0]["Unit"], "Milliseconds");
    let got = query(&["--extended-statistics", "p50"]).expect("a percentile");
    assert!(
        got["Datapoints"][0]["ExtendedStatistics"]["p50"]
            .as_f64()
            .is_some(),
        "{got}"
    );
    let both = query(&["--statistics", "Sum", "--extended-statistics", "p99"])
        .expect_err("both kinds at once are refused");
    assert!(both.contains("InvalidParameterCombination"), "{both}");

    // A namespace's write grant puts there and nowhere else, as on AWS.
    let policy = Policy::of_grants(endpoints.account(), &[Grant::metric_namespace_write("App")]);
    let writer = endpoints.keys().issue("writer", policy);
    let wenv = endpoints.env(&writer);
    let put = |ns: &str| {
        aws(
            &wenv,
            &[
                "cloudwatch",
                "put-metric-data",
                "--namespace",
                ns,
                "--metric-name",
                "Hits",
                "--value",
                "1",
            ],
        )
    };
    assert!(put("App").status.success());
    let denied = put("Other");
    assert!(!denied.status.success());
    let text = stderr(&denied);
    assert!(
        text.contains("AccessDenied") && text.contains("cloudwatch:PutMetricData"),
        "{text}"
    );
}

/// An app that opens more slow uploads than its key's share is told to slow down, and only
/// it: another app is served all along, and once the hostile uploads are dropped the key is
/// served again, none of them stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_app_gets_its_share_and_no_more() {
    let (local, _dir) = cloud().await;
    let endpoints = local.endpoints().clone();
    let blob = local.cloud().blob().expect("blob").clone();
    blob.create_bucket("shared").await.expect("a bucket");
    let grants = [Grant::bucket_read_write("shared")];
    let policy = Policy::of_grants(endpoints.account(), &grants);
    let hostile = endpoints.keys().issue("hostile", policy.clone());
    let good = endpoints.keys().issue("good", policy);
    let script = common::repo::package_path("tests/fixtures/hostile_client.py");
    let url = endpoints.url();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(script)
            .args([
                url,
                hostile.id.clone(),
                hostile.secret.expose().to_owned(),
                good.id.clone(),
                good.secret.expose().to_owned(),
                mvi::local::endpoint::fairness::MAX_IN_FLIGHT.to_string(),
            ])
            .output()
            .expect("python3 runs (scripts/setup.sh installs boto3)")
    })
    .await
    .expect("the script");
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    for line in [
        "hostile-beyond-share 503 SlowDown",
        "other-key 200 -",
        "hostile-after 200 -",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} not in:\n{text}");
    }
    let stored: Vec<String> = blob
        .list_objects(mvi::blob::ListObjects::new("shared"))
        .await
        .expect("listed")
        .objects
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(
        stored,
        ["after", "fine"],
        "only the complete uploads are stored"
    );
}

/// Terraform keeps its state in the local S3 endpoint: its S3 backend (the AWS SDK for Go)
/// writes the state and a lock file (`use_lockfile`, conditional writes), reads it back for a
/// plan with no changes, and removes the lock. Skipped, saying so, where `terraform` is not on
/// PATH (it is not a package the project's scripts can install offline).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terraform_keeps_its_state_and_lock_in_the_local_s3() {
    if Command::new("terraform").arg("version").output().is_err() {
        eprintln!("skipped: terraform is not on PATH");
        return;
    }
    let (local, dir) = cloud().await;
    let endpoints = local.endpoints().clone();
    let blob = local.cloud().blob().expect("blob").clone();
    blob.create_bucket("tfstate").await.expect("a bucket");
    let work = dir.path().join("tf");
    std::fs::create_dir_all(&work).expect("a dir");
    std::fs::write(
        work.join("main.tf"),
        format!(
            r#"terraform {{
  backend "s3" {{
    bucket                      = "tfstate"
    key                         = "app/terraform.tfstate"
    region                      = "us-east-1"
    use_path_style              = true
    use_lockfile                = true
    skip_credentials_validation = true
    skip_requesting_account_id  = true
    skip_metadata_api_check     = true
    skip_region_validation      = true
    endpoints = {{ s3 = "{}" }}
  }}
}}

resource "terraform_data" "greeting" {{
  input = "hello from mvi"
}}

output "greeting" {{
  value = terraform_data.greeting.output
}}
"#,
            endpoints.url()
        ),
    )
    .expect("main.tf");
    let env = endpoints.env(endpoints.admin());
    let check = |o: &Output, what: &str| {
        assert!(
            o.status.success(),
            "terraform {what}: {}{}",
            stdout(o),
            stderr(o)
        );
    };
    // Terraform runs on the blocking pool: the endpoints are tasks of this runtime.
    let run = |args: Vec<&'static str>| {
        let (work, env) = (work.clone(), env.clone());
        tokio::task::spawn_blocking(move || {
            Command::new("terraform")
                .args(args)
                .current_dir(&work)
                .env("CHECKPOINT_DISABLE", "1")
                .env("TF_IN_AUTOMATION", "1")
                .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .output()
                .expect("terraform runs")
        })
    };
    let o = run(vec!["init", "-input=false", "-no-color"])
        .await
        .expect("init");
    check(&o, "init");
    let o = run(vec!["apply", "-auto-approve", "-input=false", "-no-color"])
        .await
        .expect("apply");
    check(&o, "apply");
    let state = blob
        .get("tfstate", "app/terraform.tfstate")
        .await
        .expect("the state is in the bucket");
    let state = String::from_utf8_lossy(&state).into_owned();
    assert!(
        state.contains("terraform_data") && state.contains("hello from mvi"),
        "{state}"
    );
    let keys: Vec<String> = blob
        .list_all("tfstate", "")
        .await
        .expect("listed")
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(keys, ["app/terraform.tfstate"], "the lock file was removed");
    // Read back: nothing to change.
    let o = run(vec![
        "plan",
        "-detailed-exitcode",
        "-input=false",
        "-no-color",
    ])
    .await
    .expect("plan");
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let o = run(vec![
        "destroy",
        "-auto-approve",
        "-input=false",
        "-no-color",
    ])
    .await
    .expect("destroy");
    check(&o, "destroy");
}

/// A one-off task with grants gets a key of its own run, never a service's of the same name,
/// and the key is revoked when the run ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_run_gets_its_own_key_for_the_run() {
    use mvi::container::ContainerSpec;
    use mvi::log::GetEvents;
    let (local, _dir) = cloud().await;
    let cloud = local.cloud().clone();
    // An image whose entrypoint is python3 alone, so the command is the script.
    let images = cloud.images().expect("images");
    images.create_repository("py").await.expect("a repository");
    let config = mvi::image::ImageConfig::new(["python3"]).working_dir("/");
    let app = common::repo::package_path("examples/webapp");
    mvi::image::build_from_dir(images.as_ref(), "py", &app, &config, Some("v1"))
        .await
        .expect("an image");
    let mut c = ContainerSpec::new("py:v1").grant(Grant::bucket_read("reports"));
    c.command = vec![
        "-c".into(),
        "import os; print('key', os.environ['AWS_ACCESS_KEY_ID'])".into(),
    ];
    c.cpu_millis = 128;
    c.memory_mib = 64;
    let done = cloud
        .containers()
        .expect("containers")
        .run_task("report", c, std::time::Duration::from_secs(60))
        .await
        .expect("the task ran");
    assert_eq!(done.exit_code, Some(0));
    let (group, stream) = done.log_stream.clone();
    let logs = cloud
        .logs()
        .expect("logs")
        .get_events(GetEvents::new(group, stream))
        .await
        .expect("its output");
    let id = logs
        .items
        .iter()
        .find_map(|r| r.message.strip_prefix("key "))
        .unwrap_or_else(|| panic!("no key in the task's output: {:?}", logs.items))
        .trim()
        .to_owned();
    assert!(id.starts_with("AKIA"), "{id}");
    let keys = local.endpoints().keys();
    assert!(
        keys.principal(&id).is_none(),
        "the run's key outlived the run"
    );
    assert!(
        keys.ids_of("report").is_empty(),
        "a service named report would share it"
    );
}
