//! Database: managed PostgreSQL instances and their snapshots (RDS on AWS, a real PostgreSQL
//! server per instance locally).

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::common::{SecretString, Timestamp};
use crate::error::{Op, Result};

/// A database instance's definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DatabaseSpec {
    /// Identifier (1–63 letters, digits, hyphens; starts with a letter).
    pub name: String,
    /// Engine (`postgres`).
    pub engine: String,
    /// Engine version (`15`).
    pub version: String,
    /// Instance class (`db.t3.micro`).
    pub size: String,
    /// Storage, GiB.
    pub storage_gib: u32,
    /// A synchronous standby in a second zone, promoted when the primary's zone fails (or on
    /// `reboot_database(.., force_failover)`), behind an endpoint that does not change.
    pub multi_az: bool,
    /// Days automated backups are kept (0 disables them).
    pub backup_retention_days: u32,
    /// Subnets it may be placed in.
    pub subnets: Vec<String>,
    /// Security groups.
    pub security_groups: Vec<String>,
}

impl DatabaseSpec {
    /// A small PostgreSQL 15 instance named `name`.
    pub fn postgres(name: impl Into<String>) -> Self {
        DatabaseSpec {
            name: name.into(),
            engine: "postgres".into(),
            version: "15".into(),
            size: "db.t3.micro".into(),
            storage_gib: 20,
            multi_az: false,
            backup_retention_days: 7,
            subnets: Vec::new(),
            security_groups: Vec::new(),
        }
    }
}

/// A database's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DatabaseState {
    /// Being created.
    Creating,
    /// Accepting connections.
    Available,
    /// Stopped.
    Stopped,
    /// Being deleted.
    Deleting,
}

/// How to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// User.
    pub user: String,
    /// Password.
    pub password: SecretString,
    /// Database name.
    pub database: String,
}

impl Credentials {
    /// `postgres://user:password@host:port/database` — a secret, since it holds the password.
    pub fn url(&self) -> SecretString {
        SecretString::new(format!(
            "postgres://{}:{}@{}:{}/{}",
            self.user,
            self.password.expose(),
            self.host,
            self.port,
            self.database
        ))
    }
}

/// A database instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseInfo {
    /// Its definition.
    pub spec: DatabaseSpec,
    /// State.
    pub state: DatabaseState,
    /// `host:port`.
    pub endpoint: String,
    /// When it was created.
    pub created: Timestamp,
    /// The zone of the primary, where the backend says.
    #[serde(default)]
    pub zone: Option<String>,
    /// The zone of the standby of a multi-AZ instance, when it has one (none while a new
    /// standby is being built after a failover).
    #[serde(default)]
    pub standby_zone: Option<String>,
    /// What happened to it (failovers, standbys built, reboots), oldest first; at most
    /// [`MAX_EVENTS`].
    #[serde(default)]
    pub events: Vec<DatabaseEvent>,
    /// The latest time a point-in-time restore can reach (backups on); as RDS reports it.
    #[serde(default)]
    pub latest_restorable_time: Option<Timestamp>,
}

/// Where a point-in-time restore stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestoreTime {
    /// The latest restorable time.
    Latest,
    /// The state after every transaction committed at or before this time, and none after.
    At(Timestamp),
}

/// The most events a [`DatabaseInfo`] keeps.
pub const MAX_EVENTS: usize = 50;

/// Something that happened to a database instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseEvent {
    /// When.
    pub at: Timestamp,
    /// What, one sentence.
    pub message: String,
}

/// A snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// Its name.
    pub name: String,
    /// The database it was taken of.
    pub database: String,
    /// When.
    pub created: Timestamp,
    /// Size in bytes.
    pub size: u64,
}

/// Managed databases.
#[async_trait]
pub trait Databases: fmt::Debug + Send + Sync + 'static {
    /// Creates an instance and waits until it is available.
    async fn create_database(&self, spec: DatabaseSpec) -> Result<DatabaseInfo>;
    /// Describes an instance.
    async fn describe_database(&self, name: &str) -> Result<DatabaseInfo>;
    /// Every instance.
    async fn list_databases(&self) -> Result<Vec<DatabaseInfo>>;
    /// How to connect to an instance (the password is a secret).
    async fn credentials(&self, name: &str) -> Result<Credentials>;
    /// Deletes an instance (and, unless kept, its data).
    async fn delete_database(&self, name: &str) -> Result<()>;
    /// Reboots an instance, as RDS's RebootDBInstance: the server restarts; with
    /// `force_failover` (multi-AZ instances only) the standby is promoted instead and the
    /// endpoint moves to it, with no acknowledged commit lost. Returns once it is available.
    async fn reboot_database(&self, name: &str, force_failover: bool) -> Result<DatabaseInfo>;

    /// Snapshots an instance.
    async fn create_snapshot(&self, database: &str, snapshot: &str) -> Result<SnapshotInfo>;
    /// Every snapshot, optionally of one database.
    async fn list_snapshots(&self, database: Option<&str>) -> Result<Vec<SnapshotInfo>>;
    /// Creates a new instance from a snapshot.
    async fn restore_snapshot(&self, snapshot: &str, spec: DatabaseSpec) -> Result<DatabaseInfo>;
    /// Deletes a snapshot.
    async fn delete_snapshot(&self, snapshot: &str) -> Result<()>;
    /// Creates a new instance `spec` from the continuous backups of `source` (which needs
    /// `backup_retention_days` above 0), as it was at `to`: every transaction committed at
    /// or before it, none after. RDS's RestoreDBInstanceToPointInTime.
    async fn restore_to_point_in_time(
        &self,
        source: &str,
        to: RestoreTime,
        spec: DatabaseSpec,
    ) -> Result<DatabaseInfo>;
}

/// RDS identifier rules, which both backends apply to database and snapshot names: 1–`max`
/// letters, digits and hyphens, starting with a letter, no trailing hyphen, no two hyphens in
/// a row (`max` is 63 for a database, 255 for a snapshot).
pub fn validate_name(o: Op, name: &str, max: usize) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= max
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !name.ends_with('-')
        && !name.contains("--");
    if ok {
        Ok(())
    } else {
        Err(o.invalid(
            name,
            format!(
                "identifiers are 1 to {max} letters, digits and hyphens, start with a letter, \
                 and have no trailing or doubled hyphen"
            ),
        ))
    }
}
