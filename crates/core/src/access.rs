//! Access: what a caller of the services' AWS-compatible APIs may do, as IAM policies.
//!
//! One [`Policy`] type serves both backends. On AWS it is the document of a task role's
//! inline policy; on the local backend the endpoints evaluate the very same document for every
//! request, so a grant that works locally works on AWS and a request refused on AWS is refused
//! locally. [`Grant`]s are the typed way to write one ("this service reads and writes this
//! bucket"); they expand to the actions and ARNs AWS documents for each operation.
//!
//! Evaluation is IAM's for allow-only policies: a request is allowed when some statement lists
//! its action (`s3:GetObject`, case-insensitive; `*` and `?` wildcards) and its resource ARN
//! (`*` and `?` wildcards), and the statement's conditions hold; everything else is denied.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The ARNs of one AWS account in one region (the local backend uses `000000000000`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The partition (`aws`).
    pub partition: String,
    /// The region (`us-east-1`).
    pub region: String,
    /// The 12-digit account id.
    pub id: String,
}

impl Account {
    /// The account `id` in `region` of the `aws` partition.
    pub fn new(region: impl Into<String>, id: impl Into<String>) -> Self {
        Account {
            partition: "aws".into(),
            region: region.into(),
            id: id.into(),
        }
    }

    /// The ARN of a bucket (S3 ARNs name neither region nor account).
    pub fn bucket_arn(&self, bucket: &str) -> String {
        format!("arn:{}:s3:::{bucket}", self.partition)
    }

    /// The ARN of an object, or of every object matching `key` (`*` for all).
    pub fn object_arn(&self, bucket: &str, key: &str) -> String {
        format!("arn:{}:s3:::{bucket}/{key}", self.partition)
    }

    /// The ARN of a DynamoDB table.
    pub fn table_arn(&self, table: &str) -> String {
        format!(
            "arn:{}:dynamodb:{}:{}:table/{table}",
            self.partition, self.region, self.id
        )
    }

    /// The ARN of a KMS key, by key id.
    pub fn key_arn(&self, key_id: &str) -> String {
        format!(
            "arn:{}:kms:{}:{}:key/{key_id}",
            self.partition, self.region, self.id
        )
    }

    /// The ARN of a CloudWatch Logs group.
    pub fn log_group_arn(&self, group: &str) -> String {
        format!(
            "arn:{}:logs:{}:{}:log-group:{group}",
            self.partition, self.region, self.id
        )
    }
}

/// A condition on a request's context (IAM's `StringEquals`), such as CloudWatch's
/// `cloudwatch:namespace`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condition {
    /// The context key (`cloudwatch:namespace`).
    pub key: String,
    /// The values it may have.
    pub values: Vec<String>,
}

/// One allow statement: these actions on these resources, when the conditions hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    /// Actions, `service:Operation` (`s3:GetObject`); wildcards allowed.
    pub actions: Vec<String>,
    /// Resource ARNs; wildcards allowed.
    pub resources: Vec<String>,
    /// Conditions, all of which must hold (`StringEquals`).
    pub conditions: Vec<Condition>,
}

impl Statement {
    /// Allows `actions` on `resources`.
    pub fn allow<A, R>(actions: A, resources: R) -> Self
    where
        A: IntoIterator,
        A::Item: Into<String>,
        R: IntoIterator,
        R::Item: Into<String>,
    {
        Statement {
            actions: actions.into_iter().map(Into::into).collect(),
            resources: resources.into_iter().map(Into::into).collect(),
            conditions: Vec::new(),
        }
    }

    /// Adds a `StringEquals` condition on `key`.
    pub fn when(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.conditions.push(Condition {
            key: key.into(),
            values: vec![value.into()],
        });
        self
    }

    fn allows(&self, request: &Request<'_>) -> bool {
        self.actions.iter().any(|a| {
            wildcard_match(
                &a.to_ascii_lowercase(),
                &request.action.to_ascii_lowercase(),
            )
        }) && self
            .resources
            .iter()
            .any(|r| wildcard_match(r, request.resource))
            && self.conditions.iter().all(|c| {
                request
                    .context
                    .iter()
                    .any(|(k, v)| k.eq_ignore_ascii_case(&c.key) && c.values.iter().any(|x| x == v))
            })
    }
}

/// One request, as a policy sees it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The action (`s3:GetObject`).
    pub action: &'a str,
    /// The resource's ARN (`arn:aws:s3:::photos/cat.jpg`), or `*` for actions on none.
    pub resource: &'a str,
    /// Condition keys and their values for this request (`cloudwatch:namespace`).
    pub context: &'a [(&'a str, &'a str)],
}

impl<'a> Request<'a> {
    /// `action` on `resource`, without condition keys.
    pub fn new(action: &'a str, resource: &'a str) -> Self {
        Request {
            action,
            resource,
            context: &[],
        }
    }
}

/// An allow-only IAM policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// The statements; a request is allowed when any of them allows it.
    pub statements: Vec<Statement>,
}

impl Policy {
    /// A policy that allows nothing.
    pub fn new() -> Self {
        Policy::default()
    }

    /// A policy that allows everything (the local backend's admin credentials).
    pub fn admin() -> Self {
        Policy {
            statements: vec![Statement::allow(["*"], ["*"])],
        }
    }

    /// The policy of `grants` in `account`, with statements in the grants' order.
    pub fn of_grants(account: &Account, grants: &[Grant]) -> Self {
        Policy {
            statements: grants.iter().flat_map(|g| g.statements(account)).collect(),
        }
    }

    /// Adds a statement.
    pub fn with(mut self, statement: Statement) -> Self {
        self.statements.push(statement);
        self
    }

    /// Whether the policy allows `request`.
    pub fn allows(&self, request: &Request<'_>) -> bool {
        self.statements.iter().any(|s| s.allows(request))
    }

    /// The policy as an IAM policy document (`{"Version": "2012-10-17", "Statement": [..]}`).
    pub fn to_document(&self) -> serde_json::Value {
        let statements: Vec<serde_json::Value> = self
            .statements
            .iter()
            .map(|s| {
                let mut st = serde_json::json!({
                    "Effect": "Allow",
                    "Action": s.actions,
                    "Resource": s.resources,
                });
                if !s.conditions.is_empty() {
                    let equals: BTreeMap<&str, &Vec<String>> = s
                        .conditions
                        .iter()
                        .map(|c| (c.key.as_str(), &c.values))
                        .collect();
                    st["Condition"] = serde_json::json!({ "StringEquals": equals });
                }
                st
            })
            .collect();
        serde_json::json!({ "Version": "2012-10-17", "Statement": statements })
    }
}

/// What a grant allows on its resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Access {
    /// Read (objects, items, log events, decryption with a key).
    Read,
    /// Write (objects, items, log events, metric data, encryption with a key).
    Write,
    /// Both.
    ReadWrite,
}

impl Access {
    fn reads(self) -> bool {
        matches!(self, Access::Read | Access::ReadWrite)
    }
    fn writes(self) -> bool {
        matches!(self, Access::Write | Access::ReadWrite)
    }
}

/// The resource a grant is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Resource {
    /// A bucket and its objects.
    Bucket(String),
    /// A KV table (and its indexes).
    Table(String),
    /// A crypto key, by id.
    Key(String),
    /// A log group and its streams.
    LogGroup(String),
    /// A metric namespace.
    MetricNamespace(String),
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resource::Bucket(b) => write!(f, "bucket {b}"),
            Resource::Table(t) => write!(f, "table {t}"),
            Resource::Key(k) => write!(f, "key {k}"),
            Resource::LogGroup(g) => write!(f, "log group {g}"),
            Resource::MetricNamespace(n) => write!(f, "metric namespace {n}"),
        }
    }
}

/// A typed grant: `access` to `resource`, expanding to the IAM actions its operations need.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Grant {
    /// What it is about.
    pub resource: Resource,
    /// What it allows.
    pub access: Access,
}

impl Grant {
    /// `access` to `resource`.
    pub fn new(resource: Resource, access: Access) -> Self {
        Grant { resource, access }
    }

    /// Listing a bucket and reading its objects.
    pub fn bucket_read(bucket: impl Into<String>) -> Self {
        Grant::new(Resource::Bucket(bucket.into()), Access::Read)
    }

    /// Reading, writing and deleting a bucket's objects.
    pub fn bucket_read_write(bucket: impl Into<String>) -> Self {
        Grant::new(Resource::Bucket(bucket.into()), Access::ReadWrite)
    }

    /// Reading a table's items (get, query, scan).
    pub fn table_read(table: impl Into<String>) -> Self {
        Grant::new(Resource::Table(table.into()), Access::Read)
    }

    /// Reading and writing a table's items.
    pub fn table_read_write(table: impl Into<String>) -> Self {
        Grant::new(Resource::Table(table.into()), Access::ReadWrite)
    }

    /// Decrypting with a key.
    pub fn key_decrypt(key_id: impl Into<String>) -> Self {
        Grant::new(Resource::Key(key_id.into()), Access::Read)
    }

    /// Encrypting (and generating data keys) with a key.
    pub fn key_encrypt(key_id: impl Into<String>) -> Self {
        Grant::new(Resource::Key(key_id.into()), Access::Write)
    }

    /// Writing events to a log group's streams.
    pub fn log_group_write(group: impl Into<String>) -> Self {
        Grant::new(Resource::LogGroup(group.into()), Access::Write)
    }

    /// Publishing metric data to a namespace.
    pub fn metric_namespace_write(namespace: impl Into<String>) -> Self {
        Grant::new(Resource::MetricNamespace(namespace.into()), Access::Write)
    }

    /// The IAM actions the grant allows, in a fixed order.
    pub fn actions(&self) -> Vec<&'static str> {
        let (read, write): (&[&str], &[&str]) = match self.resource {
            Resource::Bucket(_) => (
                &["s3:GetObject", "s3:ListBucket"],
                &[
                    "s3:PutObject",
                    "s3:DeleteObject",
                    "s3:AbortMultipartUpload",
                    "s3:ListBucketMultipartUploads",
                ],
            ),
            Resource::Table(_) => (
                &[
                    "dynamodb:DescribeTable",
                    "dynamodb:GetItem",
                    "dynamodb:BatchGetItem",
                    "dynamodb:Query",
                    "dynamodb:Scan",
                    "dynamodb:ConditionCheckItem",
                ],
                &[
                    "dynamodb:PutItem",
                    "dynamodb:UpdateItem",
                    "dynamodb:DeleteItem",
                    "dynamodb:BatchWriteItem",
                ],
            ),
            Resource::Key(_) => (
                &["kms:Decrypt", "kms:DescribeKey"],
                &["kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
            ),
            Resource::LogGroup(_) => (
                &["logs:GetLogEvents", "logs:FilterLogEvents"],
                &[
                    "logs:CreateLogStream",
                    "logs:PutLogEvents",
                    "logs:DescribeLogStreams",
                ],
            ),
            Resource::MetricNamespace(_) => (
                &["cloudwatch:GetMetricStatistics", "cloudwatch:GetMetricData"],
                &["cloudwatch:PutMetricData"],
            ),
        };
        let mut out: Vec<&'static str> = Vec::new();
        let chosen = [(self.access.reads(), read), (self.access.writes(), write)];
        for action in chosen
            .into_iter()
            .filter(|(on, _)| *on)
            .flat_map(|(_, a)| a)
        {
            if !out.contains(action) {
                out.push(action);
            }
        }
        out
    }

    /// The grant as IAM statements in `account`: one, but for a metric namespace whose reads
    /// and writes are two (CloudWatch scopes only PutMetricData by namespace, through the
    /// `cloudwatch:namespace` condition key; reading metrics is not scoped on AWS, so a read
    /// grant allows reading every namespace).
    pub fn statements(&self, account: &Account) -> Vec<Statement> {
        let actions = self.actions();
        vec![match &self.resource {
            Resource::Bucket(b) => {
                Statement::allow(actions, [account.bucket_arn(b), account.object_arn(b, "*")])
            }
            Resource::Table(t) => {
                let arn = account.table_arn(t);
                Statement::allow(actions, [format!("{arn}/index/*"), arn])
            }
            Resource::Key(k) => Statement::allow(actions, [account.key_arn(k)]),
            Resource::LogGroup(g) => {
                let arn = account.log_group_arn(g);
                Statement::allow(actions, [format!("{arn}:log-stream:*"), arn])
            }
            // CloudWatch metrics have no ARNs: the namespace is a condition key of writes.
            Resource::MetricNamespace(ns) => {
                let (reads, writes): (Vec<&str>, Vec<&str>) =
                    actions.iter().partition(|a| !a.ends_with("PutMetricData"));
                let mut out = Vec::new();
                if !reads.is_empty() {
                    out.push(Statement::allow(reads, ["*"]));
                }
                if !writes.is_empty() {
                    out.push(
                        Statement::allow(writes, ["*"]).when("cloudwatch:namespace", ns.clone()),
                    );
                }
                return out;
            }
        }]
    }
}

/// IAM's wildcard match: `*` any run of characters, `?` any one.
fn wildcard_match(pattern: &str, value: &str) -> bool {
    let (p, v) = (pattern.as_bytes(), value.as_bytes());
    let (mut pi, mut vi) = (0, 0);
    // Where the last `*` was and how much of `value` it has swallowed: backtracking to it is
    // enough, since a later `*` can absorb whatever an earlier one would.
    let mut star: Option<(usize, usize)> = None;
    while vi < v.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == v[vi]) {
            pi += 1;
            vi += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, vi));
            pi += 1;
        } else if let Some((sp, sv)) = star {
            pi = sp + 1;
            vi = sv + 1;
            star = Some((sp, sv + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> Account {
        Account::new("us-east-1", "000000000000")
    }

    /// Metric writes are scoped by namespace, reads are not (as CloudWatch's IAM).
    #[test]
    fn metric_namespace_grants_scope_writes_not_reads() {
        let grant = Grant::new(Resource::MetricNamespace("App".into()), Access::ReadWrite);
        let policy = Policy::of_grants(&account(), &[grant]);
        assert_eq!(policy.statements.len(), 2);
        let allows_put = |ns: &str| {
            policy.allows(&Request {
                action: "cloudwatch:PutMetricData",
                resource: "*",
                context: &[("cloudwatch:namespace", ns)],
            })
        };
        assert!(allows_put("App"));
        assert!(!allows_put("Other"));
        assert!(!policy.allows(&Request::new("cloudwatch:PutMetricData", "*")));
        assert!(policy.allows(&Request::new("cloudwatch:GetMetricStatistics", "*")));
        let doc = policy.to_document();
        assert!(doc["Statement"][0].get("Condition").is_none(), "{doc}");
        assert_eq!(
            doc["Statement"][1]["Condition"]["StringEquals"]["cloudwatch:namespace"][0],
            "App"
        );
    }

    #[test]
    fn wildcards_match_as_iam() {
        for (p, v, want) in [
            ("*", "anything", true),
            ("arn:aws:s3:::photos/*", "arn:aws:s3:::photos/a/b.jpg", true),
            ("arn:aws:s3:::photos/*", "arn:aws:s3:::photos", false),
            ("arn:aws:s3:::photos/*", "arn:aws:s3:::photosx/a", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("*b*b", "abxbb", true),
            ("s3:get*", "s3:getobject", true),
            ("", "", true),
            ("", "x", false),
        ] {
            assert_eq!(wildcard_match(p, v), want, "{p} vs {v}");
        }
    }

    #[test]
    fn bucket_grants_allow_exactly_their_bucket() {
        let policy = Policy::of_grants(&account(), &[Grant::bucket_read("photos")]);
        let get = |arn: &str| policy.allows(&Request::new("s3:GetObject", arn));
        assert!(get("arn:aws:s3:::photos/cat.jpg"));
        assert!(!get("arn:aws:s3:::secrets/cat.jpg"));
        assert!(policy.allows(&Request::new("S3:listbucket", "arn:aws:s3:::photos")));
        assert!(!policy.allows(&Request::new("s3:PutObject", "arn:aws:s3:::photos/cat.jpg")));
        assert!(!Policy::new().allows(&Request::new("s3:GetObject", "*")));
        assert!(Policy::admin().allows(&Request::new("kms:Decrypt", "arn:aws:kms:x")));
    }

    #[test]
    fn namespace_grants_are_conditions() {
        let policy = Policy::of_grants(&account(), &[Grant::metric_namespace_write("App")]);
        let put = |ns: &str| {
            policy.allows(&Request {
                action: "cloudwatch:PutMetricData",
                resource: "*",
                context: &[("cloudwatch:namespace", ns)],
            })
        };
        assert!(put("App"));
        assert!(!put("Other"));
        assert!(!policy.allows(&Request::new("cloudwatch:PutMetricData", "*")));
    }

    #[test]
    fn documents_are_iam_shaped() {
        let policy = Policy::of_grants(
            &account(),
            &[
                Grant::table_read_write("visits"),
                Grant::metric_namespace_write("App"),
            ],
        );
        let doc = policy.to_document();
        assert_eq!(doc["Version"], "2012-10-17");
        assert_eq!(doc["Statement"][0]["Effect"], "Allow");
        assert_eq!(
            doc["Statement"][0]["Resource"][1],
            "arn:aws:dynamodb:us-east-1:000000000000:table/visits"
        );
        assert!(
            doc["Statement"][0]["Action"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == "dynamodb:PutItem"))
        );
        assert_eq!(
            doc["Statement"][1]["Condition"]["StringEquals"]["cloudwatch:namespace"][0],
            "App"
        );
        assert!(doc["Statement"][0].get("Condition").is_none());
    }

    #[test]
    fn key_grants_list_actions_once() {
        let both = Grant::new(Resource::Key("k".into()), Access::ReadWrite).actions();
        assert_eq!(
            both.iter().filter(|a| **a == "kms:DescribeKey").count(),
            1,
            "{both:?}"
        );
    }
}
