//! Database on Amazon RDS for PostgreSQL.
//!
//! # How the contract maps onto RDS
//!
//! An instance is an RDS DB instance of engine `postgres` with the spec's class, storage,
//! Multi-AZ flag and backup retention, encrypted storage, and — like every local instance —
//! one application user and database, both named `app` (RDS's master user and initial
//! database). Subnets become a DB subnet group of the instance's own (`mvi-<name>-<random>`,
//! deleted with it); without subnets RDS places it in the default VPC. Without security
//! groups it gets the VPC's default group. Creating, restoring, snapshotting and deleting
//! wait until RDS has finished (minutes on AWS; at once on moto), as the contract says.
//!
//! Names and engines are checked as locally. A version must be a PostgreSQL major from 11
//! (the oldest RDS still runs) on, or a full `major.minor`; whether RDS offers it is RDS's
//! to say (`InvalidParameterCombination`, InvalidArgument).
//!
//! # The password
//!
//! As locally: 32 random letters and digits from the OS-seeded generator, encrypted with
//! KMS under the key `alias/mvi-databases` (created on first use) with the database's name
//! as encryption context; only the ciphertext is kept, here in the instance's tags
//! (`mvi:password`, continued in `mvi:password:2`, ... past RDS's 256-character tag
//! values). [`Databases::credentials`] decrypts it. Reading it takes both
//! `rds:DescribeDBInstances` and `kms:Decrypt` on that key with that context; the plaintext
//! is never logged and leaves only as a [`SecretString`].
//!
//! RDS's own alternative, `ManageMasterUserPassword`, keeps the password in Secrets Manager:
//! reading it back would take a Secrets Manager client, a service the mvi contract does not
//! otherwise use, and the KMS way keeps both backends on one scheme.
//!
//! A restore gets a password of its own: RDS restores the snapshot's master password, so the
//! new instance's is reset (ModifyDBInstance, applied at once) before the restore returns.
//!
//! # What else is kept in tags
//!
//! `mvi:version` (the version asked for, reported while the running version still matches
//! it, so `15` stays `15` rather than becoming `15.7`) and `mvi:security-groups` set to
//! `default` when none were asked for, so describe reports the spec that was given.
//!
//! Only manual snapshots are listed, deleted and restored: automated ones (`rds:...`) are
//! RDS's own backups, kept and removed by its retention.
//!
//! # On moto (5.2.5)
//!
//! moto accepts any engine version and does not implement `DescribeDBEngineVersions`, so
//! the check above is what refuses a version like `3` there. Instances and snapshots are
//! available at once, endpoints are fake (the `RealDatabase` cases).

use std::collections::HashMap;
use std::time::Duration;

use crate::poll::Backoff;
use async_trait::async_trait;
use aws_sdk_rds::Client;
use aws_sdk_rds::types::{DbInstance, DbSnapshot, Tag};
use aws_smithy_types::Blob;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mvi_core::database::{
    Credentials, DatabaseInfo, DatabaseSpec, DatabaseState, Databases, RestoreTime, SnapshotInfo,
    validate_name,
};
use mvi_core::error::found;
use mvi_core::{ErrorKind, Op, Result, SecretString, Service};
use rand::Rng;
use tokio::sync::OnceCell;

use crate::error::map;

const fn op(name: &'static str) -> Op {
    Op::new(Service::Database, name)
}

/// The KMS key that encrypts every instance's password (the local backend's alias).
pub const KEY_ALIAS: &str = "alias/mvi-databases";
/// The master user and initial database of every instance (the local backend's names).
pub const APP: &str = "app";
/// The oldest PostgreSQL major version RDS still runs.
const MIN_MAJOR: u32 = 11;
/// Password length.
const PASSWORD_LEN: usize = 32;

/// Tags holding the password's ciphertext (base64), in pieces.
const PASSWORD: &str = "mvi:password";
/// Tag with the version asked for.
const VERSION: &str = "mvi:version";
/// Tag saying no security groups were asked for.
const SECURITY_GROUPS: &str = "mvi:security-groups";
/// The value of [`SECURITY_GROUPS`].
const DEFAULT: &str = "default";
/// RDS's longest tag value.
const MAX_TAG_VALUE: usize = 256;

/// How long creating, restoring or deleting an instance may take.
const INSTANCE_DEADLINE: Duration = Duration::from_secs(60 * 60);
/// How long taking or deleting a snapshot may take.
const SNAPSHOT_DEADLINE: Duration = Duration::from_secs(60 * 60);
/// The first and the longest pause between two polls.
const FIRST_POLL: Duration = Duration::from_millis(250);
const MAX_POLL: Duration = Duration::from_secs(15);

/// The Database service on Amazon RDS (or an RDS-compatible endpoint), with passwords
/// encrypted by KMS.
#[derive(Debug)]
pub struct RdsDatabases {
    rds: Client,
    kms: aws_sdk_kms::Client,
    /// Set once the password key is known to exist.
    key: OnceCell<()>,
}

/// What a new instance starts from.
#[derive(Debug, Clone, Copy)]
enum Source<'a> {
    Nothing,
    Snapshot(&'a str),
    /// The source instance's continuous backups, at a time.
    PointInTime(&'a str, RestoreTime),
}

/// What a poll waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// Status `available`.
    Available,
    /// Status `available` with no password change pending.
    PasswordApplied,
}

impl RdsDatabases {
    /// Databases through the RDS and KMS clients made from `config`.
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        RdsDatabases {
            rds: Client::new(config),
            kms: aws_sdk_kms::Client::new(config),
            key: OnceCell::new(),
        }
    }

    /// The instance `name`, if it exists.
    async fn find(&self, o: Op, name: &str) -> Result<Option<DbInstance>> {
        // An identifier RDS would refuse cannot exist; say so as the local backend does.
        if validate_name(o, name, 63).is_err() {
            return Ok(None);
        }
        let out = self
            .rds
            .describe_db_instances()
            .db_instance_identifier(name)
            .send()
            .await
            .map_err(|e| map(o, name, e));
        Ok(found(out)?.and_then(|out| {
            out.db_instances()
                .iter()
                .find(|i| i.db_instance_identifier() == Some(name))
                .cloned()
        }))
    }

    /// The instance `name`, or NotFound.
    async fn instance(&self, o: Op, name: &str) -> Result<DbInstance> {
        self.find(o, name)
            .await?
            .ok_or_else(|| o.not_found(name, "no such database"))
    }

    /// The snapshot `name`, if it exists.
    async fn find_snapshot(&self, o: Op, name: &str) -> Result<Option<DbSnapshot>> {
        if validate_name(o, name, 255).is_err() {
            return Ok(None);
        }
        let out = self
            .rds
            .describe_db_snapshots()
            .db_snapshot_identifier(name)
            .send()
            .await
            .map_err(|e| map(o, name, e));
        Ok(found(out)?.and_then(|out| {
            out.db_snapshots()
                .iter()
                .find(|s| s.db_snapshot_identifier() == Some(name))
                .cloned()
        }))
    }

    /// An instance's tags: those DescribeDBInstances carried, else asked for.
    async fn tags(&self, o: Op, inst: &DbInstance) -> Result<HashMap<String, String>> {
        if !inst.tag_list().is_empty() {
            return Ok(tag_map(inst.tag_list()));
        }
        let name = inst.db_instance_identifier().unwrap_or_default();
        let Some(arn) = inst.db_instance_arn() else {
            return Ok(HashMap::new());
        };
        let out = self
            .rds
            .list_tags_for_resource()
            .resource_name(arn)
            .send()
            .await
            .map_err(|e| map(o, name, e))?;
        Ok(tag_map(out.tag_list()))
    }

    /// Describes an instance as the spec that made it (see the module docs).
    async fn info(&self, o: Op, inst: &DbInstance) -> Result<DatabaseInfo> {
        let name = inst.db_instance_identifier().unwrap_or_default();
        let tags = self.tags(o, inst).await?;
        let mut spec = DatabaseSpec::postgres(name);
        spec.engine = inst.engine().unwrap_or_default().to_owned();
        let actual = inst.engine_version().unwrap_or_default();
        spec.version = match tags.get(VERSION) {
            Some(asked) if version_matches(actual, asked) => asked.clone(),
            _ => actual.to_owned(),
        };
        spec.size = inst.db_instance_class().unwrap_or_default().to_owned();
        spec.storage_gib = inst
            .allocated_storage()
            .and_then(|s| u32::try_from(s).ok())
            .unwrap_or(0);
        spec.multi_az = inst.multi_az().unwrap_or(false);
        spec.backup_retention_days = inst
            .backup_retention_period()
            .and_then(|d| u32::try_from(d).ok())
            .unwrap_or(0);
        spec.subnets = match inst.db_subnet_group() {
            Some(g) if own_subnet_group(name, g.db_subnet_group_name()) => g
                .subnets()
                .iter()
                .filter_map(|s| s.subnet_identifier().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        if tags.get(SECURITY_GROUPS).map(String::as_str) != Some(DEFAULT) {
            spec.security_groups = inst
                .vpc_security_groups()
                .iter()
                .filter_map(|g| g.vpc_security_group_id().map(str::to_owned))
                .collect();
        }
        let endpoint = inst
            .endpoint()
            .and_then(|e| Some(format!("{}:{}", e.address()?, e.port()?)))
            .unwrap_or_default();
        Ok(DatabaseInfo {
            spec,
            state: state_of(inst.db_instance_status().unwrap_or_default()),
            endpoint,
            created: inst
                .instance_create_time()
                .and_then(timestamp)
                .unwrap_or_else(chrono::Utc::now),
            zone: inst.availability_zone().map(str::to_owned),
            standby_zone: inst.secondary_availability_zone().map(str::to_owned),
            // RDS keeps its events apart (DescribeEvents).
            events: Vec::new(),
            // Without automated backups there is nothing to restore to (RDS may still
            // report a time).
            latest_restorable_time: (inst.backup_retention_period().unwrap_or(0) > 0)
                .then(|| inst.latest_restorable_time().and_then(timestamp))
                .flatten(),
        })
    }

    /// Creates the password key on first use. Two programs racing to create it both make a
    /// key, but only one gets the alias; the other schedules its own key's deletion.
    async fn ensure_key(&self, o: Op) -> Result<()> {
        self.key
            .get_or_try_init(|| async {
                let err = match self.kms.describe_key().key_id(KEY_ALIAS).send().await {
                    Ok(_) => return Ok(()),
                    Err(e) => map(o, KEY_ALIAS, e),
                };
                if err.kind() != ErrorKind::NotFound {
                    return Err(err);
                }
                let made = self
                    .kms
                    .create_key()
                    .description("mvi: database passwords")
                    .send()
                    .await
                    .map_err(|e| map(o, KEY_ALIAS, e))?;
                let key = made
                    .key_metadata
                    .map(|m| m.key_id().to_owned())
                    .ok_or_else(|| o.internal(KEY_ALIAS, "CreateKey answered no key"))?;
                let aliased = self
                    .kms
                    .create_alias()
                    .alias_name(KEY_ALIAS)
                    .target_key_id(&key)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| map(o, KEY_ALIAS, e));
                if let Err(e) = &aliased {
                    // Ours is not the key: retire it (seven days is KMS's shortest wait).
                    let _ = self
                        .kms
                        .schedule_key_deletion()
                        .key_id(&key)
                        .pending_window_in_days(7)
                        .send()
                        .await;
                    if e.kind() != ErrorKind::AlreadyExists {
                        return aliased;
                    }
                }
                Ok(())
            })
            .await
            .copied()
    }

    /// The tags holding `password` encrypted for the database `name`.
    async fn password_tags(&self, o: Op, name: &str, password: &SecretString) -> Result<Vec<Tag>> {
        self.ensure_key(o).await?;
        let out = self
            .kms
            .encrypt()
            .key_id(KEY_ALIAS)
            .plaintext(Blob::new(password.expose().as_bytes()))
            .encryption_context("service", "database")
            .encryption_context("database", name)
            .send()
            .await
            .map_err(|e| map(o, name, e))?;
        let ciphertext = out
            .ciphertext_blob
            .ok_or_else(|| o.internal(name, "KMS answered no ciphertext"))?;
        Ok(chunk_tags(PASSWORD, &STANDARD.encode(ciphertext.as_ref())))
    }

    /// The password kept in an instance's tags.
    async fn password(
        &self,
        o: Op,
        name: &str,
        tags: &HashMap<String, String>,
    ) -> Result<SecretString> {
        let encoded = chunked(tags, PASSWORD);
        if encoded.is_empty() {
            return Err(o.precondition(
                name,
                "the database was not created by mvi: its password is not known",
            ));
        }
        let ciphertext = STANDARD
            .decode(encoded)
            .map_err(|e| o.internal(name, format!("the stored password is corrupt: {e}")))?;
        let out = self
            .kms
            .decrypt()
            .ciphertext_blob(Blob::new(ciphertext))
            .encryption_context("service", "database")
            .encryption_context("database", name)
            .send()
            .await
            .map_err(|e| map(o, name, e))?;
        let plain = out
            .plaintext
            .ok_or_else(|| o.internal(name, "KMS answered no plaintext"))?
            .into_inner();
        let text = String::from_utf8(plain)
            .map_err(|_| o.internal(name, "the stored password is not text"))?;
        Ok(SecretString::new(text))
    }

    /// Makes the instance's own DB subnet group when the spec names subnets.
    async fn subnet_group(&self, o: Op, spec: &DatabaseSpec) -> Result<Option<String>> {
        if spec.subnets.is_empty() {
            return Ok(None);
        }
        // A random suffix: a failed or racing create never takes away another's group.
        let group = format!(
            "mvi-{}-{}",
            spec.name,
            hex::encode(rand::random::<[u8; 4]>())
        );
        self.rds
            .create_db_subnet_group()
            .db_subnet_group_name(&group)
            .db_subnet_group_description(format!("mvi: subnets of database {}", spec.name))
            .set_subnet_ids(Some(spec.subnets.clone()))
            .send()
            .await
            .map_err(|e| map(o, &spec.name, e))?;
        Ok(Some(group))
    }

    /// Deletes a subnet group of ours; best effort.
    async fn drop_subnet_group(&self, group: &str) {
        if let Err(e) = self
            .rds
            .delete_db_subnet_group()
            .db_subnet_group_name(group)
            .send()
            .await
        {
            tracing::warn!(subnet_group = group, error = %e, "cannot delete the DB subnet group");
        }
    }

    /// Creates `spec`'s instance, fresh or from `snapshot`, and waits until it serves.
    async fn launch(&self, o: Op, spec: &DatabaseSpec, from: Source<'_>) -> Result<DatabaseInfo> {
        let name = spec.name.as_str();
        let storage = i32::try_from(spec.storage_gib)
            .map_err(|_| o.invalid(name, "the storage size is too large"))?;
        let retention = i32::try_from(spec.backup_retention_days)
            .map_err(|_| o.invalid(name, "the backup retention is too long"))?;
        if self.find(o, name).await?.is_some() {
            return Err(o.already_exists(name, "a database with this name exists"));
        }
        let password = new_password();
        let mut tags = self.password_tags(o, name, &password).await?;
        tags.push(tag(VERSION, &spec.version));
        if spec.security_groups.is_empty() {
            tags.push(tag(SECURITY_GROUPS, DEFAULT));
        }
        let security_groups =
            (!spec.security_groups.is_empty()).then(|| spec.security_groups.clone());
        let group = self.subnet_group(o, spec).await?;
        let sent = match from {
            Source::Nothing => self
                .rds
                .create_db_instance()
                .db_instance_identifier(name)
                .engine("postgres")
                .engine_version(&spec.version)
                .db_instance_class(&spec.size)
                .allocated_storage(storage)
                .multi_az(spec.multi_az)
                .backup_retention_period(retention)
                .master_username(APP)
                .master_user_password(password.expose())
                .db_name(APP)
                .storage_encrypted(true)
                .set_vpc_security_group_ids(security_groups)
                .set_db_subnet_group_name(group.clone())
                .set_tags(Some(tags))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| map(o, name, e)),
            Source::Snapshot(snap) => self
                .rds
                .restore_db_instance_from_db_snapshot()
                .db_instance_identifier(name)
                .db_snapshot_identifier(snap)
                .db_instance_class(&spec.size)
                .allocated_storage(storage)
                .multi_az(spec.multi_az)
                .set_vpc_security_group_ids(security_groups)
                .set_db_subnet_group_name(group.clone())
                .set_tags(Some(tags))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| map(o, name, e)),
            Source::PointInTime(source, to) => {
                let restore = self
                    .rds
                    .restore_db_instance_to_point_in_time()
                    .source_db_instance_identifier(source)
                    .target_db_instance_identifier(name)
                    .db_instance_class(&spec.size)
                    .allocated_storage(storage)
                    .multi_az(spec.multi_az)
                    .set_vpc_security_group_ids(security_groups)
                    .set_db_subnet_group_name(group.clone())
                    .set_tags(Some(tags));
                let restore = match to {
                    RestoreTime::Latest => restore.use_latest_restorable_time(true),
                    RestoreTime::At(t) => restore.restore_time(
                        aws_smithy_types::DateTime::from_nanos(i128::from(
                            t.timestamp_nanos_opt().unwrap_or_default(),
                        ))
                        .map_err(|e| o.invalid(name, format!("restore time {t}: {e}")))?,
                    ),
                };
                restore
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| map(o, name, e))
            }
        };
        if let Err(e) = sent {
            if let Some(g) = &group {
                self.drop_subnet_group(g).await;
            }
            return Err(e);
        }
        let ready = async {
            let inst = self.wait_instance(o, name, Want::Available).await?;
            if matches!(from, Source::Nothing) {
                return Ok(inst);
            }
            // A restore carries the source's master password: give the copy its own
            // (the one encrypted in its tags), and the retention asked for.
            self.rds
                .modify_db_instance()
                .db_instance_identifier(name)
                .master_user_password(password.expose())
                .backup_retention_period(retention)
                .apply_immediately(true)
                .send()
                .await
                .map_err(|e| map(o, name, e))?;
            self.wait_instance(o, name, Want::PasswordApplied).await
        }
        .await;
        match ready {
            Ok(inst) => self.info(o, &inst).await,
            Err(e) => {
                // A slow instance may still come up; a failed one is taken away again.
                if e.kind() != ErrorKind::Timeout {
                    self.discard(name, group.as_deref()).await;
                }
                Err(e)
            }
        }
    }

    /// Deletes a half-made instance and its subnet group; best effort.
    async fn discard(&self, name: &str, group: Option<&str>) {
        let o = op("discard");
        let deleted = self
            .rds
            .delete_db_instance()
            .db_instance_identifier(name)
            .skip_final_snapshot(true)
            .delete_automated_backups(true)
            .send()
            .await;
        if let Err(e) = deleted {
            tracing::warn!(database = name, error = %e, "cannot delete the half-made database");
            return;
        }
        if let Some(g) = group
            && self.wait_gone(o, name).await.is_ok()
        {
            self.drop_subnet_group(g).await;
        }
    }

    /// Polls until the instance is available (and, with [`Want::PasswordApplied`], has no
    /// password change pending).
    async fn wait_instance(&self, o: Op, name: &str, want: Want) -> Result<DbInstance> {
        let mut poll = Backoff::new(FIRST_POLL, MAX_POLL, INSTANCE_DEADLINE);
        loop {
            let inst = self
                .find(o, name)
                .await?
                .ok_or_else(|| o.not_found(name, "the database was deleted meanwhile"))?;
            let status = inst.db_instance_status().unwrap_or_default();
            let pending = inst
                .pending_modified_values()
                .and_then(|p| p.master_user_password())
                .is_some();
            if status == "available" && (want == Want::Available || !pending) {
                return Ok(inst);
            }
            if matches!(
                status,
                "failed" | "incompatible-parameters" | "incompatible-restore" | "storage-full"
            ) {
                return Err(o.err(
                    ErrorKind::Unavailable,
                    name,
                    format!("RDS reports the database as {status}"),
                ));
            }
            if poll.expired() {
                return Err(o.err(
                    ErrorKind::Timeout,
                    name,
                    format!(
                        "not available after {} s (status {status})",
                        INSTANCE_DEADLINE.as_secs()
                    ),
                ));
            }
            poll.wait().await;
        }
    }

    /// Polls until the instance is gone.
    async fn wait_gone(&self, o: Op, name: &str) -> Result<()> {
        let mut poll = Backoff::new(FIRST_POLL, MAX_POLL, INSTANCE_DEADLINE);
        while self.find(o, name).await?.is_some() {
            if poll.expired() {
                return Err(o.err(
                    ErrorKind::Timeout,
                    name,
                    format!(
                        "still there {} s after deletion",
                        INSTANCE_DEADLINE.as_secs()
                    ),
                ));
            }
            poll.wait().await;
        }
        Ok(())
    }

    /// Polls until the snapshot is available; or, with `gone`, until it no longer exists.
    async fn wait_snapshot(&self, o: Op, name: &str, gone: bool) -> Result<Option<DbSnapshot>> {
        let mut poll = Backoff::new(FIRST_POLL, MAX_POLL, SNAPSHOT_DEADLINE);
        loop {
            let snap = self.find_snapshot(o, name).await?;
            match (&snap, gone) {
                (None, true) => return Ok(None),
                (None, false) => {
                    return Err(o.not_found(name, "the snapshot was deleted meanwhile"));
                }
                (Some(s), false) => match s.status().unwrap_or_default() {
                    "available" => return Ok(snap),
                    "failed" | "error" => {
                        return Err(o.err(
                            ErrorKind::Unavailable,
                            name,
                            "RDS failed to take the snapshot",
                        ));
                    }
                    _ => {}
                },
                (Some(_), true) => {}
            }
            if poll.expired() {
                return Err(o.err(
                    ErrorKind::Timeout,
                    name,
                    format!(
                        "the snapshot did not settle in {} s",
                        SNAPSHOT_DEADLINE.as_secs()
                    ),
                ));
            }
            poll.wait().await;
        }
    }
}

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}

fn tag_map(tags: &[Tag]) -> HashMap<String, String> {
    tags.iter()
        .filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or("").to_owned())))
        .collect()
}

/// Splits `value` over tags `key`, `key:2`, ... within RDS's value limit.
fn chunk_tags(key: &str, value: &str) -> Vec<Tag> {
    let bytes = value.as_bytes();
    bytes
        .chunks(MAX_TAG_VALUE)
        .enumerate()
        .map(|(i, c)| {
            let k = if i == 0 {
                key.to_owned()
            } else {
                format!("{key}:{}", i + 1)
            };
            tag(&k, &String::from_utf8_lossy(c))
        })
        .collect()
}

/// The value split by [`chunk_tags`], joined again.
fn chunked(tags: &HashMap<String, String>, key: &str) -> String {
    let mut out = String::new();
    let mut i = 1;
    loop {
        let k = if i == 1 {
            key.to_owned()
        } else {
            format!("{key}:{i}")
        };
        match tags.get(&k) {
            Some(v) => out.push_str(v),
            None => return out,
        }
        i += 1;
    }
}

fn new_password() -> SecretString {
    SecretString::new(
        rand::rng()
            .sample_iter(&rand::distr::Alphanumeric)
            .take(PASSWORD_LEN)
            .map(char::from)
            .collect::<String>(),
    )
}

/// Sleeps `pause`; returns the next, longer pause.
fn timestamp(t: &aws_smithy_types::DateTime) -> Option<mvi_core::Timestamp> {
    chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

/// Whether the subnet group `group` is the one made for the instance `name`.
fn own_subnet_group(name: &str, group: Option<&str>) -> bool {
    group
        .and_then(|g| g.strip_prefix("mvi-"))
        .and_then(|g| g.strip_prefix(name))
        .and_then(|g| g.strip_prefix('-'))
        .is_some_and(|rest| rest.len() == 8 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether the running version `actual` is the version `asked` for (`15` runs as `15.7`).
fn version_matches(actual: &str, asked: &str) -> bool {
    actual == asked
        || actual
            .strip_prefix(asked)
            .is_some_and(|rest| rest.starts_with('.'))
}

/// RDS's instance status as mvi's state.
fn state_of(status: &str) -> DatabaseState {
    match status {
        "creating" => DatabaseState::Creating,
        "deleting" => DatabaseState::Deleting,
        // Serving, perhaps while RDS does some maintenance.
        "available"
        | "backing-up"
        | "modifying"
        | "storage-optimization"
        | "configuring-enhanced-monitoring"
        | "configuring-iam-database-auth"
        | "configuring-log-exports"
        | "maintenance"
        | "renaming"
        | "resetting-master-credentials"
        | "upgrading" => DatabaseState::Available,
        // Stopped, starting, rebooting, failed, storage full, ...: not accepting connections.
        _ => DatabaseState::Stopped,
    }
}

/// The major version of `version` (`15` of `15.7`), if it is a PostgreSQL version RDS may
/// run: a major from [`MIN_MAJOR`] on, optionally with a minor.
fn major_of(version: &str) -> Option<u32> {
    let mut parts = version.split('.');
    let major: u32 = parts.next()?.parse().ok()?;
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    let well_formed = version.split('.').all(digits) && version.split('.').count() <= 2;
    (well_formed && major >= MIN_MAJOR).then_some(major)
}

/// Checks a spec as the local backend does, with RDS's versions instead of the installed one.
fn check_spec(o: Op, spec: &DatabaseSpec) -> Result<u32> {
    validate_name(o, &spec.name, 63)?;
    if spec.engine != "postgres" {
        return Err(o.unsupported(format!(
            "engine {:?} is not supported: only \"postgres\" (RDS for PostgreSQL)",
            spec.engine
        )));
    }
    major_of(&spec.version).ok_or_else(|| {
        o.invalid(
            &spec.name,
            format!(
                "PostgreSQL version {:?} is not one RDS runs: give a major version from \
                 {MIN_MAJOR} on (\"15\") or a full one (\"15.7\")",
                spec.version
            ),
        )
    })
}

fn snapshot_info(s: &DbSnapshot) -> SnapshotInfo {
    const GIB: u64 = 1 << 30;
    // RDS reports the data size of newer snapshots; else the storage they were taken of.
    let size = s
        .full_snapshot_size_in_bytes()
        .and_then(|b| u64::try_from(b).ok())
        .or_else(|| {
            s.allocated_storage()
                .and_then(|g| u64::try_from(g).ok())
                .map(|g| g * GIB)
        })
        .unwrap_or(0);
    SnapshotInfo {
        name: s.db_snapshot_identifier().unwrap_or_default().to_owned(),
        database: s.db_instance_identifier().unwrap_or_default().to_owned(),
        created: s
            .snapshot_create_time()
            .or_else(|| s.original_snapshot_create_time())
            .and_then(timestamp)
            .unwrap_or_else(chrono::Utc::now),
        size,
    }
}

#[async_trait]
impl Databases for RdsDatabases {
    async fn create_database(&self, spec: DatabaseSpec) -> Result<DatabaseInfo> {
        let o = op("create_database");
        check_spec(o, &spec)?;
        self.launch(o, &spec, Source::Nothing).await
    }

    async fn describe_database(&self, name: &str) -> Result<DatabaseInfo> {
        let o = op("describe_database");
        let inst = self.instance(o, name).await?;
        self.info(o, &inst).await
    }

    async fn list_databases(&self) -> Result<Vec<DatabaseInfo>> {
        let o = op("list_databases");
        let mut all = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let out = self
                .rds
                .describe_db_instances()
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|e| map(o, "databases", e))?;
            all.extend(out.db_instances().iter().cloned());
            match out.marker() {
                Some(m) if !m.is_empty() => marker = Some(m.to_owned()),
                _ => break,
            }
        }
        let mut infos = Vec::new();
        // RDS for PostgreSQL only: other engines (and Aurora) are not this service's.
        for inst in all.iter().filter(|i| i.engine() == Some("postgres")) {
            infos.push(self.info(o, inst).await?);
        }
        Ok(infos)
    }

    async fn credentials(&self, name: &str) -> Result<Credentials> {
        let o = op("credentials");
        let inst = self.instance(o, name).await?;
        let state = state_of(inst.db_instance_status().unwrap_or_default());
        if state != DatabaseState::Available {
            return Err(o.precondition(name, format!("the database is {state:?}, not available")));
        }
        let (host, port) = inst
            .endpoint()
            .and_then(|e| Some((e.address()?.to_owned(), u16::try_from(e.port()?).ok()?)))
            .ok_or_else(|| o.precondition(name, "the database has no endpoint yet"))?;
        let tags = self.tags(o, &inst).await?;
        let password = self.password(o, name, &tags).await?;
        Ok(Credentials {
            host,
            port,
            user: inst.master_username().unwrap_or(APP).to_owned(),
            password,
            database: inst.db_name().unwrap_or("postgres").to_owned(),
        })
    }

    async fn delete_database(&self, name: &str) -> Result<()> {
        let o = op("delete_database");
        let inst = self.instance(o, name).await?;
        let group = inst
            .db_subnet_group()
            .and_then(|g| g.db_subnet_group_name())
            .filter(|g| own_subnet_group(name, Some(g)))
            .map(str::to_owned);
        self.rds
            .delete_db_instance()
            .db_instance_identifier(name)
            .skip_final_snapshot(true)
            .delete_automated_backups(true)
            .send()
            .await
            .map_err(|e| map(o, name, e))?;
        self.wait_gone(o, name).await?;
        if let Some(g) = group {
            self.drop_subnet_group(&g).await;
        }
        Ok(())
    }

    async fn create_snapshot(&self, database: &str, snapshot: &str) -> Result<SnapshotInfo> {
        let o = op("create_snapshot");
        validate_name(o, snapshot, 255)?;
        if validate_name(o, database, 63).is_err() {
            return Err(o.not_found(database, "no such database"));
        }
        self.rds
            .create_db_snapshot()
            .db_instance_identifier(database)
            .db_snapshot_identifier(snapshot)
            .send()
            .await
            .map_err(|e| {
                let e = map(o, snapshot, e);
                match e.kind() {
                    // RDS's DBInstanceNotFound is about the database, not the snapshot.
                    ErrorKind::NotFound => o.not_found(database, e.message()),
                    _ => e,
                }
            })?;
        let snap = self
            .wait_snapshot(o, snapshot, false)
            .await?
            .ok_or_else(|| o.not_found(snapshot, "the snapshot was deleted meanwhile"))?;
        Ok(snapshot_info(&snap))
    }

    async fn list_snapshots(&self, database: Option<&str>) -> Result<Vec<SnapshotInfo>> {
        let o = op("list_snapshots");
        if let Some(d) = database
            && validate_name(o, d, 63).is_err()
        {
            return Ok(Vec::new());
        }
        let mut all = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let out = match self
                .rds
                .describe_db_snapshots()
                .snapshot_type("manual")
                .set_db_instance_identifier(database.map(str::to_owned))
                .set_marker(marker.take())
                .send()
                .await
            {
                Ok(out) => out,
                Err(e) => {
                    let e = map(o, database.unwrap_or("snapshots"), e);
                    // Snapshots of a database that does not exist: none.
                    if e.kind() == ErrorKind::NotFound {
                        return Ok(Vec::new());
                    }
                    return Err(e);
                }
            };
            // Only finished snapshots, as locally: one being taken cannot be restored yet.
            all.extend(
                out.db_snapshots()
                    .iter()
                    .filter(|s| s.status() == Some("available") && s.engine() == Some("postgres"))
                    .map(snapshot_info),
            );
            match out.marker() {
                Some(m) if !m.is_empty() => marker = Some(m.to_owned()),
                _ => break,
            }
        }
        Ok(all)
    }

    async fn restore_snapshot(&self, snapshot: &str, spec: DatabaseSpec) -> Result<DatabaseInfo> {
        let o = op("restore_snapshot");
        let snap = self
            .find_snapshot(o, snapshot)
            .await?
            .filter(|s| s.status() == Some("available"))
            .ok_or_else(|| o.not_found(snapshot, "no such snapshot"))?;
        let major = check_spec(o, &spec)?;
        let theirs = snap.engine_version().unwrap_or_default();
        if snap.engine() != Some("postgres") || major_of(theirs) != Some(major) {
            return Err(o.invalid(
                &spec.name,
                format!(
                    "the snapshot is of {} {theirs}, not PostgreSQL {}",
                    snap.engine().unwrap_or("an unknown engine"),
                    spec.version
                ),
            ));
        }
        self.launch(o, &spec, Source::Snapshot(snapshot)).await
    }

    async fn restore_to_point_in_time(
        &self,
        source: &str,
        to: RestoreTime,
        spec: DatabaseSpec,
    ) -> Result<DatabaseInfo> {
        let o = op("restore_to_point_in_time");
        check_spec(o, &spec)?;
        let src = self.instance(o, source).await?;
        if src.backup_retention_period().unwrap_or(0) == 0 {
            return Err(o.precondition(
                source,
                "the database keeps no backups (backup_retention_days is 0): nothing to restore from",
            ));
        }
        if let RestoreTime::At(t) = to
            && let Some(latest) = src.latest_restorable_time().and_then(timestamp)
            && t > latest
        {
            return Err(o.invalid(
                source,
                format!("{t} is after the latest restorable time, {latest}"),
            ));
        }
        self.launch(o, &spec, Source::PointInTime(source, to)).await
    }

    async fn reboot_database(&self, name: &str, force_failover: bool) -> Result<DatabaseInfo> {
        let o = op("reboot_database");
        let inst = self.instance(o, name).await?;
        if force_failover && inst.multi_az() != Some(true) {
            return Err(o.precondition(
                name,
                "only a multi-AZ database can fail over: it has no standby",
            ));
        }
        let mut reboot = self.rds.reboot_db_instance().db_instance_identifier(name);
        // RDS refuses ForceFailover on a single-AZ instance, even false.
        if force_failover {
            reboot = reboot.force_failover(true);
        }
        reboot.send().await.map_err(|e| map(o, name, e))?;
        let inst = self.wait_instance(o, name, Want::Available).await?;
        self.info(o, &inst).await
    }

    async fn delete_snapshot(&self, snapshot: &str) -> Result<()> {
        let o = op("delete_snapshot");
        if validate_name(o, snapshot, 255).is_err() {
            return Err(o.not_found(snapshot, "no such snapshot"));
        }
        self.rds
            .delete_db_snapshot()
            .db_snapshot_identifier(snapshot)
            .send()
            .await
            .map_err(|e| map(o, snapshot, e))?;
        self.wait_snapshot(o, snapshot, true).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_rds_may_run() {
        for ok in ["11", "15", "15.7", "17"] {
            assert!(major_of(ok).is_some(), "{ok}");
        }
        for bad in [
            "", "3", "9.6", "10", "15.", ".7", "15.7.1", "+15", "fifteen", "15-beta",
        ] {
            assert!(major_of(bad).is_none(), "{bad}");
        }
        assert!(version_matches("15.7", "15"));
        assert!(version_matches("15", "15"));
        assert!(!version_matches("150.1", "15"));
    }

    #[test]
    fn long_ciphertexts_split_over_tags_and_join_again() {
        let value = "QUJD".repeat(200);
        let tags = chunk_tags(PASSWORD, &value);
        assert_eq!(tags.len(), 4);
        assert_eq!(tags[1].key(), Some("mvi:password:2"));
        assert!(
            tags.iter()
                .all(|t| t.value().unwrap_or("").len() <= MAX_TAG_VALUE)
        );
        assert_eq!(chunked(&tag_map(&tags), PASSWORD), value);
    }

    #[test]
    fn own_subnet_groups_are_recognised() {
        assert!(own_subnet_group("db", Some("mvi-db-0a1b2c3d")));
        assert!(!own_subnet_group("db", Some("mvi-db-x-0a1b2c3d")));
        assert!(!own_subnet_group("db", Some("default")));
        assert!(!own_subnet_group("db", None));
    }

    #[test]
    fn passwords_are_long_and_differ() {
        let (a, b) = (new_password(), new_password());
        assert_eq!(a.expose().len(), PASSWORD_LEN);
        assert_ne!(a.expose(), b.expose());
        assert!(!format!("{a:?}").contains(a.expose()));
    }
}
