//! KV resources: tables.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{Input, Output, declare, resource_args};
use crate::error::{ErrorKind, Op, Result, Service};
use crate::kv::{KeyAttr, TableSpec, validate_table_name};
use crate::stack::{Cx, Resource, ResourceOptions, Stack};

resource_args! {
    /// Arguments of a [`Table`].
    pub struct TableArgs => TableSpecArgs {
        /// The table's name.
        name: String,
        /// The partition key.
        partition_key: Option<KeyAttr>,
        /// The sort key, if any.
        sort_key: Option<KeyAttr>,
    }
}

impl TableArgs {
    /// A table `name` keyed by `partition_key`.
    pub fn new(name: impl Into<Input<String>>, partition_key: KeyAttr) -> Self {
        TableArgs {
            name: name.into(),
            partition_key: Input::Value(Some(partition_key)),
            sort_key: Input::Value(None),
        }
    }

    /// Adds a sort key.
    pub fn sort_key(mut self, key: KeyAttr) -> Self {
        self.sort_key = Input::Value(Some(key));
        self
    }
}

/// A table.
#[derive(Debug, Clone)]
pub struct Table {
    /// Its URN.
    pub urn: String,
    /// Its name.
    pub name: Output<String>,
}

impl Table {
    /// A grant of reading its items (GetItem, Query, Scan, ...), for [`ContainerServiceArgs::grant`](super::ContainerServiceArgs::grant).
    pub fn grant_read(&self) -> Output<crate::access::Grant> {
        self.name.map(crate::access::Grant::table_read)
    }

    /// A grant of reading and writing its items, for [`ContainerServiceArgs::grant`](super::ContainerServiceArgs::grant).
    pub fn grant_read_write(&self) -> Output<crate::access::Grant> {
        self.name.map(crate::access::Grant::table_read_write)
    }

    /// Declares a table.
    pub fn new(stack: &Stack, name: &str, args: TableArgs) -> Result<Table> {
        Self::with(stack, name, args, ResourceOptions::default())
    }

    /// Declares a table with options.
    pub fn with(
        stack: &Stack,
        name: &str,
        args: TableArgs,
        opts: ResourceOptions,
    ) -> Result<Table> {
        let h = declare::<TableResource>(stack, name, &args, opts)?;
        Ok(Table {
            name: h.output("name"),
            urn: h.urn().to_string(),
        })
    }
}

/// Outputs of a table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableOutputs {
    /// Its name.
    pub name: String,
}

/// The provider of [`Table`].
#[derive(Debug)]
pub struct TableResource;

#[async_trait]
impl Resource for TableResource {
    const TYPE: &'static str = "mvi:kv:Table";
    const ECHOED_OUTPUTS: &'static [&'static str] = &["name"];
    const REPLACE_ON: &'static [&'static str] = &["name", "partition_key", "sort_key"];
    type Args = TableSpecArgs;
    type Outputs = TableOutputs;

    fn check(args: &TableSpecArgs) -> Result<()> {
        let op = Op::new(Service::Stack, "check");
        validate_table_name(op, &args.name)?;
        if args.partition_key.is_none() {
            return Err(op.invalid(&args.name, "a table needs a partition key"));
        }
        Ok(())
    }

    async fn create(cx: Cx<'_>, args: &TableSpecArgs) -> Result<(String, TableOutputs)> {
        let op = Op::new(Service::Stack, "create");
        let pk = args
            .partition_key
            .clone()
            .ok_or_else(|| op.invalid(&args.name, "a table needs a partition key"))?;
        let mut spec = TableSpec::new(&args.name, pk);
        if let Some(sk) = &args.sort_key {
            spec = spec.sort_key(sk.clone());
        }
        cx.cloud.kv()?.create_table(spec).await?;
        Ok((
            args.name.clone(),
            TableOutputs {
                name: args.name.clone(),
            },
        ))
    }

    async fn find(cx: Cx<'_>, args: &TableSpecArgs) -> Result<Option<String>> {
        Ok(cx
            .cloud
            .kv()?
            .list_tables()
            .await?
            .contains(&args.name)
            .then(|| args.name.clone()))
    }

    async fn read(
        cx: Cx<'_>,
        id: &str,
        _: &TableSpecArgs,
    ) -> Result<Option<(TableSpecArgs, TableOutputs)>> {
        match cx.cloud.kv()?.describe_table(id).await {
            Ok(info) => Ok(Some((
                TableSpecArgs {
                    name: info.spec.name.clone(),
                    partition_key: Some(info.spec.partition_key.clone()),
                    sort_key: info.spec.sort_key.clone(),
                },
                TableOutputs {
                    name: info.spec.name,
                },
            ))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn update(
        _: Cx<'_>,
        id: &str,
        _: &TableSpecArgs,
        _: &TableSpecArgs,
    ) -> Result<TableOutputs> {
        Ok(TableOutputs {
            name: id.to_string(),
        })
    }

    async fn delete(cx: Cx<'_>, id: &str, _: &TableSpecArgs) -> Result<()> {
        match cx.cloud.kv()?.delete_table(id).await {
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
}
