//! Database resources: instances and snapshots.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{Input, Output, declare, found, gone_ok, push_input, resource_args};
use crate::database::{DatabaseInfo, DatabaseSpec};
use crate::error::{Op, Result, Service};
use crate::stack::{Cx, Resource, ResourceOptions, Stack};

fn check_identifier(op: Op, prop: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !ok {
        return Err(op.invalid(
            name,
            format!(
                "property {prop:?}: 1 to 63 letters, digits and hyphens, starting with a letter"
            ),
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Database

resource_args! {
    /// Arguments of a [`Database`].
    pub struct DatabaseArgs => DatabaseSpecArgs {
        /// Identifier (1–63 letters, digits, hyphens; starts with a letter).
        name: String,
        /// Engine (`postgres`).
        engine: String,
        /// Engine version (`15`).
        version: String,
        /// Instance class (`db.t3.micro`).
        size: String,
        /// Storage, GiB.
        storage_gib: u32,
        /// Standby in a second zone.
        multi_az: bool,
        /// Days automated backups are kept (0 disables them).
        backup_retention_days: u32,
        /// Subnets it may be placed in.
        subnets: Vec<String>,
        /// Security groups.
        security_groups: Vec<String>,
    }
}

impl DatabaseArgs {
    /// An instance from a definition (every field a plain value).
    pub fn new(spec: DatabaseSpec) -> Self {
        DatabaseArgs {
            name: Input::Value(spec.name),
            engine: Input::Value(spec.engine),
            version: Input::Value(spec.version),
            size: Input::Value(spec.size),
            storage_gib: Input::Value(spec.storage_gib),
            multi_az: Input::Value(spec.multi_az),
            backup_retention_days: Input::Value(spec.backup_retention_days),
            subnets: Input::Value(spec.subnets),
            security_groups: Input::Value(spec.security_groups),
        }
    }

    /// A small PostgreSQL 15 instance named `name`.
    pub fn postgres(name: impl Into<String>) -> Self {
        Self::new(DatabaseSpec::postgres(name))
    }

    /// Adds a subnet (an id).
    pub fn subnet(mut self, id: impl Into<Input<String>>) -> Self {
        self.subnets = push_input(self.subnets, id.into());
        self
    }

    /// Adds a security group (an id).
    pub fn security_group(mut self, id: impl Into<Input<String>>) -> Self {
        self.security_groups = push_input(self.security_groups, id.into());
        self
    }
}

/// A database instance.
#[derive(Debug, Clone)]
pub struct Database {
    /// Its URN.
    pub urn: String,
    /// Its name.
    pub name: Output<String>,
    /// `host:port`.
    pub endpoint: Output<String>,
    /// `postgres://user:password@host:port/database`: secret.
    pub url: Output<String>,
}

impl Database {
    /// Declares a database.
    pub fn new(stack: &Stack, name: &str, args: DatabaseArgs) -> Result<Database> {
        Self::with(stack, name, args, ResourceOptions::default())
    }

    /// Declares a database with options.
    pub fn with(
        stack: &Stack,
        name: &str,
        args: DatabaseArgs,
        opts: ResourceOptions,
    ) -> Result<Database> {
        let h = declare::<DatabaseResource>(stack, name, &args, opts)?;
        Ok(Database {
            name: h.output("name"),
            endpoint: h.output("endpoint"),
            url: h.output("url"),
            urn: h.urn().to_string(),
        })
    }
}

/// Outputs of a database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatabaseOutputs {
    /// Its name.
    pub name: String,
    /// `host:port`.
    pub endpoint: String,
    /// The connection URL, with the password (secret).
    pub url: String,
}

async fn db_outputs(cx: Cx<'_>, info: &DatabaseInfo) -> Result<DatabaseOutputs> {
    let creds = cx.cloud.databases()?.credentials(&info.spec.name).await?;
    Ok(DatabaseOutputs {
        name: info.spec.name.clone(),
        endpoint: info.endpoint.clone(),
        url: creds.url().expose().to_string(),
    })
}

/// The provider of [`Database`].
#[derive(Debug)]
pub struct DatabaseResource;

#[async_trait]
impl Resource for DatabaseResource {
    const TYPE: &'static str = "mvi:database:Database";
    // The service has no call that changes an instance.
    const REPLACE_ON: &'static [&'static str] = &[
        "name",
        "engine",
        "version",
        "size",
        "storage_gib",
        "multi_az",
        "backup_retention_days",
        "subnets",
        "security_groups",
    ];
    const SECRET_OUTPUTS: &'static [&'static str] = &["url"];
    type Args = DatabaseSpecArgs;
    type Outputs = DatabaseOutputs;

    fn check(args: &DatabaseSpecArgs) -> Result<()> {
        let op = Op::new(Service::Stack, "check");
        check_identifier(op, "name", &args.name)?;
        if args.engine != "postgres" {
            return Err(op.invalid(
                &args.name,
                format!(
                    "property \"engine\": {:?} is not supported (postgres is)",
                    args.engine
                ),
            ));
        }
        for (prop, v) in [("version", &args.version), ("size", &args.size)] {
            if v.is_empty() {
                return Err(op.invalid(&args.name, format!("property {prop:?} must not be empty")));
            }
        }
        if args.storage_gib == 0 {
            return Err(op.invalid(&args.name, "property \"storage_gib\" must be at least 1"));
        }
        if args.backup_retention_days > 35 {
            return Err(op.invalid(
                &args.name,
                "property \"backup_retention_days\" must be 0 to 35",
            ));
        }
        Ok(())
    }

    async fn create(cx: Cx<'_>, args: &DatabaseSpecArgs) -> Result<(String, DatabaseOutputs)> {
        let mut spec = DatabaseSpec::postgres(&args.name);
        spec.engine = args.engine.clone();
        spec.version = args.version.clone();
        spec.size = args.size.clone();
        spec.storage_gib = args.storage_gib;
        spec.multi_az = args.multi_az;
        spec.backup_retention_days = args.backup_retention_days;
        spec.subnets = args.subnets.clone();
        spec.security_groups = args.security_groups.clone();
        let info = cx.cloud.databases()?.create_database(spec).await?;
        Ok((args.name.clone(), db_outputs(cx, &info).await?))
    }

    async fn find(cx: Cx<'_>, args: &DatabaseSpecArgs) -> Result<Option<String>> {
        let db = found(cx.cloud.databases()?.describe_database(&args.name).await)?;
        Ok(db.map(|_| args.name.clone()))
    }

    async fn read(
        cx: Cx<'_>,
        id: &str,
        _: &DatabaseSpecArgs,
    ) -> Result<Option<(DatabaseSpecArgs, DatabaseOutputs)>> {
        let Some(info) = found(cx.cloud.databases()?.describe_database(id).await)? else {
            return Ok(None);
        };
        let out = db_outputs(cx, &info).await?;
        let s = info.spec;
        Ok(Some((
            DatabaseSpecArgs {
                name: s.name,
                engine: s.engine,
                version: s.version,
                size: s.size,
                storage_gib: s.storage_gib,
                multi_az: s.multi_az,
                backup_retention_days: s.backup_retention_days,
                subnets: s.subnets,
                security_groups: s.security_groups,
            },
            out,
        )))
    }

    async fn update(
        cx: Cx<'_>,
        id: &str,
        _: &DatabaseSpecArgs,
        _: &DatabaseSpecArgs,
    ) -> Result<DatabaseOutputs> {
        let info = cx.cloud.databases()?.describe_database(id).await?;
        db_outputs(cx, &info).await
    }

    async fn delete(cx: Cx<'_>, id: &str, _: &DatabaseSpecArgs) -> Result<()> {
        gone_ok(cx.cloud.databases()?.delete_database(id).await)
    }
}

// ---------------------------------------------------------------------------------------
// Snapshot

resource_args! {
    /// Arguments of a [`Snapshot`].
    pub struct SnapshotArgs => SnapshotSpec {
        /// The database's name.
        database: String,
        /// The snapshot's name.
        name: String,
    }
}

impl SnapshotArgs {
    /// A snapshot `name` of `database`.
    pub fn new(database: impl Into<Input<String>>, name: impl Into<Input<String>>) -> Self {
        SnapshotArgs {
            database: database.into(),
            name: name.into(),
        }
    }
}

/// A database snapshot.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Its URN.
    pub urn: String,
    /// Its name.
    pub name: Output<String>,
    /// Its size in bytes.
    pub size: Output<u64>,
}

impl Snapshot {
    /// Declares a snapshot.
    pub fn new(stack: &Stack, name: &str, args: SnapshotArgs) -> Result<Snapshot> {
        Self::with(stack, name, args, ResourceOptions::default())
    }

    /// Declares a snapshot with options.
    pub fn with(
        stack: &Stack,
        name: &str,
        args: SnapshotArgs,
        opts: ResourceOptions,
    ) -> Result<Snapshot> {
        let h = declare::<SnapshotResource>(stack, name, &args, opts)?;
        Ok(Snapshot {
            name: h.output("name"),
            size: h.output("size"),
            urn: h.urn().to_string(),
        })
    }
}

/// Outputs of a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotOutputs {
    /// Its name.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
}

/// The provider of [`Snapshot`].
#[derive(Debug)]
pub struct SnapshotResource;

async fn snapshot(cx: Cx<'_>, name: &str) -> Result<Option<crate::database::SnapshotInfo>> {
    let all = cx.cloud.databases()?.list_snapshots(None).await?;
    Ok(all.into_iter().find(|s| s.name == name))
}

#[async_trait]
impl Resource for SnapshotResource {
    const TYPE: &'static str = "mvi:database:Snapshot";
    const REPLACE_ON: &'static [&'static str] = &["database", "name"];
    type Args = SnapshotSpec;
    type Outputs = SnapshotOutputs;

    fn check(args: &SnapshotSpec) -> Result<()> {
        let op = Op::new(Service::Stack, "check");
        check_identifier(op, "database", &args.database)?;
        check_identifier(op, "name", &args.name)
    }

    async fn create(cx: Cx<'_>, args: &SnapshotSpec) -> Result<(String, SnapshotOutputs)> {
        let s = cx
            .cloud
            .databases()?
            .create_snapshot(&args.database, &args.name)
            .await?;
        Ok((
            s.name.clone(),
            SnapshotOutputs {
                name: s.name,
                size: s.size,
            },
        ))
    }

    async fn find(cx: Cx<'_>, args: &SnapshotSpec) -> Result<Option<String>> {
        Ok(snapshot(cx, &args.name)
            .await?
            .filter(|s| s.database == args.database)
            .map(|s| s.name))
    }

    async fn read(
        cx: Cx<'_>,
        id: &str,
        _: &SnapshotSpec,
    ) -> Result<Option<(SnapshotSpec, SnapshotOutputs)>> {
        Ok(snapshot(cx, id).await?.map(|s| {
            (
                SnapshotSpec {
                    database: s.database,
                    name: s.name.clone(),
                },
                SnapshotOutputs {
                    name: s.name,
                    size: s.size,
                },
            )
        }))
    }

    async fn update(
        cx: Cx<'_>,
        id: &str,
        _: &SnapshotSpec,
        _: &SnapshotSpec,
    ) -> Result<SnapshotOutputs> {
        let size = snapshot(cx, id).await?.map(|s| s.size).unwrap_or(0);
        Ok(SnapshotOutputs {
            name: id.to_string(),
            size,
        })
    }

    async fn delete(cx: Cx<'_>, id: &str, _: &SnapshotSpec) -> Result<()> {
        gone_ok(cx.cloud.databases()?.delete_snapshot(id).await)
    }
}
