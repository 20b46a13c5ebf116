//! Feature-flag resources: a flag in a flags table (see [`crate::flags`]).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{Input, Output, declare, resource_args};
use crate::error::{Op, Result, Service};
use crate::flags::{Flag as FlagDef, Flags};
use crate::stack::{Cx, Resource, ResourceOptions, Stack};

resource_args! {
    /// Arguments of a [`Flag`].
    pub struct FlagArgs => FlagSpec {
        /// The flags table (which must exist: a [`super::Table`] keyed by `key`, or one made
        /// by [`Flags::create_table`]).
        table: String,
        /// The flag's key (the flag's own; a new key makes a new flag, replacing this one).
        key: String,
        /// The flag, checked whole before anything is written.
        flag: Option<FlagDef>,
    }
}

impl FlagArgs {
    /// `flag` in `table`.
    pub fn new(table: impl Into<Input<String>>, flag: FlagDef) -> Self {
        FlagArgs {
            table: table.into(),
            key: Input::Value(flag.key.clone()),
            flag: Input::Value(Some(flag)),
        }
    }
}

/// A feature flag, managed by the stack: `up` saves it, a change of the declaration saves
/// the new one, `destroy` deletes it, and `refresh` sees a flag changed out of band.
#[derive(Debug, Clone)]
pub struct Flag {
    /// Its URN.
    pub urn: String,
    /// Its key.
    pub key: Output<String>,
    /// Its version in the store, after the last save.
    pub version: Output<i64>,
}

impl Flag {
    /// Declares a flag.
    pub fn new(stack: &Stack, name: &str, args: FlagArgs) -> Result<Flag> {
        Self::with(stack, name, args, ResourceOptions::default())
    }

    /// Declares a flag with options.
    pub fn with(stack: &Stack, name: &str, args: FlagArgs, opts: ResourceOptions) -> Result<Flag> {
        let h = declare::<FlagResource>(stack, name, &args, opts)?;
        Ok(Flag {
            key: h.output("key"),
            version: h.output("version"),
            urn: h.urn().to_string(),
        })
    }
}

/// Outputs of a flag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlagOutputs {
    /// Its key.
    pub key: String,
    /// Its version in the store.
    pub version: i64,
}

/// The provider of [`Flag`]. Its id is `<table>/<key>`.
#[derive(Debug)]
pub struct FlagResource;

fn op(operation: &'static str) -> Op {
    Op::new(Service::Stack, operation)
}

fn flag_of(args: &FlagSpec) -> Result<&FlagDef> {
    args.flag
        .as_ref()
        .ok_or_else(|| op("check").invalid(&args.table, "a flag resource needs its flag"))
}

fn split(id: &str) -> Result<(&str, &str)> {
    id.split_once('/')
        .ok_or_else(|| op("read").invalid(id, "a flag's id is <table>/<key>"))
}

async fn save(cx: &Cx<'_>, args: &FlagSpec) -> Result<FlagOutputs> {
    let flag = flag_of(args)?;
    let version = Flags::of(cx.cloud, &args.table)?.save(flag).await?;
    Ok(FlagOutputs {
        key: flag.key.clone(),
        version,
    })
}

#[async_trait]
impl Resource for FlagResource {
    const TYPE: &'static str = "mvi:flags:Flag";
    const REPLACE_ON: &'static [&'static str] = &["table", "key"];
    const STABLE_OUTPUTS: &'static [&'static str] = &["key"];
    type Args = FlagSpec;
    type Outputs = FlagOutputs;

    fn check(args: &FlagSpec) -> Result<()> {
        crate::kv::validate_table_name(op("check"), &args.table)?;
        let flag = flag_of(args)?;
        if flag.key != args.key {
            return Err(op("check").invalid(
                &args.key,
                format!(
                    "the flag's key is {:?}, not the resource's {:?}",
                    flag.key, args.key
                ),
            ));
        }
        flag.check()
    }

    async fn create(cx: Cx<'_>, args: &FlagSpec) -> Result<(String, FlagOutputs)> {
        let out = save(&cx, args).await?;
        Ok((format!("{}/{}", args.table, out.key), out))
    }

    async fn find(cx: Cx<'_>, args: &FlagSpec) -> Result<Option<String>> {
        let key = &flag_of(args)?.key;
        let found = Flags::of(cx.cloud, &args.table)?.get(key).await?;
        Ok(found.map(|_| format!("{}/{key}", args.table)))
    }

    async fn read(cx: Cx<'_>, id: &str, _: &FlagSpec) -> Result<Option<(FlagSpec, FlagOutputs)>> {
        let (table, key) = split(id)?;
        let flags = Flags::of(cx.cloud, table)?;
        let Some((version, flag)) = flags.get_versioned(key).await? else {
            return Ok(None);
        };
        Ok(Some((
            FlagSpec {
                table: table.to_string(),
                key: key.to_string(),
                flag: Some(flag),
            },
            FlagOutputs {
                key: key.to_string(),
                version,
            },
        )))
    }

    async fn update(cx: Cx<'_>, _: &str, _: &FlagSpec, new: &FlagSpec) -> Result<FlagOutputs> {
        // The table and key are the same (a change of either replaces): a save on top.
        save(&cx, new).await
    }

    async fn delete(cx: Cx<'_>, id: &str, _: &FlagSpec) -> Result<()> {
        let (table, key) = split(id)?;
        Flags::of(cx.cloud, table)?.delete(key).await?;
        Ok(())
    }
}
