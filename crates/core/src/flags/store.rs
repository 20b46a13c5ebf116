//! Flags in a KV table: one item per flag, `{key, flag (the JSON), version}`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value as Json;

use super::client::FlagClient;
use super::eval::{Compiled, ErrorCode, EvalContext, Evaluation, FlagValue};
use super::{Flag, check_key, op};
use crate::cloud::Cloud;
use crate::error::{ErrorKind, Result};
use crate::kv::{Condition, DeleteItem, Item, Key, KeyAttr, KeyType, Kv, PutItem, Scan, TableSpec};

/// The attribute holding a flag's key (the table's partition key).
const KEY: &str = "key";
/// The attribute holding the flag, as JSON text.
const FLAG: &str = "flag";
/// The attribute holding the flag's version: 1 when made, one more at every save.
const VERSION: &str = "version";

/// How many times a save retries when another save of the same flag won the race.
const SAVE_RETRIES: usize = 8;

/// Feature flags kept in a KV table (see the module doc).
#[derive(Debug, Clone)]
pub struct Flags {
    kv: Arc<dyn Kv>,
    table: String,
}

/// A flag as stored: the flag and its version.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Stored {
    pub(crate) version: i64,
    /// The flag, or why it could not be read.
    pub(crate) flag: std::result::Result<Flag, String>,
}

impl Flags {
    /// Flags in `table` of `kv`.
    pub fn new(kv: Arc<dyn Kv>, table: impl Into<String>) -> Self {
        Flags {
            kv,
            table: table.into(),
        }
    }

    /// Flags in `table` of `cloud`'s KV service.
    pub fn of(cloud: &Cloud, table: impl Into<String>) -> Result<Self> {
        Ok(Flags::new(cloud.kv()?.clone(), table))
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Creates the table (keyed by the flag's key) unless it exists.
    pub async fn create_table(&self) -> Result<()> {
        let spec = TableSpec::new(&self.table, KeyAttr::new(KEY, KeyType::Str));
        match self.kv.create_table(spec).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Saves `flag` (made or replaced) once it is checked whole ([`Flag::check`]); returns
    /// its new version. One conditional put on the version read, so two saves at once both
    /// land, one after the other, and a refused flag leaves the stored one as it was.
    pub async fn save(&self, flag: &Flag) -> Result<i64> {
        flag.check()?;
        let json =
            serde_json::to_string(flag).map_err(|e| op("save_flag").internal(&flag.key, e))?;
        for _ in 0..SAVE_RETRIES {
            let current = self.read(&flag.key).await?.map(|s| s.version);
            let version = current.unwrap_or(0) + 1;
            let item = crate::item! { KEY => flag.key.as_str(), FLAG => json.as_str(), VERSION => version };
            let condition = match current {
                Some(v) => Condition::equals(VERSION, v),
                None => Condition::NotExists,
            };
            match self
                .kv
                .put_item(PutItem::new(&self.table, item).condition(condition))
                .await
            {
                Ok(()) => return Ok(version),
                // Another save came first: save on top of it.
                Err(e) if e.kind() == ErrorKind::PreconditionFailed => continue,
                Err(e) => return Err(e),
            }
        }
        Err(op("save_flag").err(
            ErrorKind::Unavailable,
            &flag.key,
            format!("{SAVE_RETRIES} other saves of the flag came first; try again"),
        ))
    }

    /// The flag `key`, if there is one.
    pub async fn get(&self, key: &str) -> Result<Option<Flag>> {
        Ok(self.get_versioned(key).await?.map(|(_, f)| f))
    }

    /// The flag `key` and its version (1 when made, one more at every save), if there is one.
    pub async fn get_versioned(&self, key: &str) -> Result<Option<(i64, Flag)>> {
        match self.read(key).await? {
            None => Ok(None),
            Some(Stored {
                flag: Ok(f),
                version,
            }) => Ok(Some((version, f))),
            Some(Stored { flag: Err(why), .. }) => {
                Err(op("get_flag").err(ErrorKind::Internal, key, why))
            }
        }
    }

    /// Deletes the flag `key`; whether there was one.
    pub async fn delete(&self, key: &str) -> Result<bool> {
        check_key(key)?;
        let gone = self
            .kv
            .delete_item(DeleteItem::new(&self.table, Key::new(key)))
            .await?;
        Ok(gone.is_some())
    }

    /// Every flag, by key.
    pub async fn list(&self) -> Result<Vec<Flag>> {
        let mut out = Vec::new();
        for (key, stored) in self.load_all().await? {
            match stored.flag {
                Ok(f) => out.push(f),
                Err(why) => return Err(op("list_flags").err(ErrorKind::Internal, key, why)),
            }
        }
        Ok(out)
    }

    /// Evaluates flag `key` for `ctx` reading the store now (one KV read): for a one-off
    /// check. A program evaluating often uses a [`FlagClient`]. Never fails: on any failure
    /// the caller's `default`, with reason `ERROR` and the error code.
    pub async fn evaluate<T: FlagValue>(
        &self,
        key: &str,
        default: T,
        ctx: &EvalContext,
    ) -> Evaluation<T> {
        match self.read(key).await {
            Ok(None) => Evaluation::failed(
                key,
                default,
                ErrorCode::FlagNotFound,
                format!("no flag {key:?}"),
            ),
            Ok(Some(Stored { flag: Err(why), .. })) => {
                Evaluation::failed(key, default, ErrorCode::ParseError, why)
            }
            Ok(Some(Stored { flag: Ok(f), .. })) => match Compiled::new(f) {
                Ok(c) => c.evaluate(default, ctx),
                Err(e) => Evaluation::failed(key, default, ErrorCode::ParseError, e.to_string()),
            },
            Err(e) => Evaluation::failed(key, default, ErrorCode::General, e.to_string()),
        }
    }

    /// A client holding every flag in memory, refreshed every 250 ms (see
    /// [`Flags::client_every`]).
    pub async fn client(&self) -> FlagClient {
        self.client_every(Duration::from_millis(250)).await
    }

    /// A client refreshed every `poll`: it reads the whole table at each tick and recompiles
    /// the flags whose version changed. It has loaded the flags when this returns, unless
    /// the store could not be read (evaluations then give the caller's default with
    /// `PROVIDER_NOT_READY` until a refresh succeeds). A refresh that fails keeps the flags
    /// last read.
    pub async fn client_every(&self, poll: Duration) -> FlagClient {
        FlagClient::start(self.clone(), poll).await
    }

    async fn read(&self, key: &str) -> Result<Option<Stored>> {
        check_key(key).map_err(|e| op("get_flag").invalid(key, e.message().to_string()))?;
        let item = self.kv.get_item(&self.table, Key::new(key)).await?;
        Ok(item.map(|i| stored(key, &i)))
    }

    /// Every stored flag, by key, including those that cannot be read (with why).
    pub(crate) async fn load_all(&self) -> Result<Vec<(String, Stored)>> {
        let mut out = Vec::new();
        let mut cursor = None;
        loop {
            let page = self.kv.scan(Scan::new(&self.table).cursor(cursor)).await?;
            for item in &page.items {
                if let Some(key) = item.get(KEY).and_then(|v| v.as_str()) {
                    out.push((key.to_string(), stored(key, item)));
                }
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

/// The flag an item holds, or why it holds none.
fn stored(key: &str, item: &Item) -> Stored {
    let version = item.get(VERSION).and_then(|v| v.as_i64()).unwrap_or(0);
    let flag = match item.get(FLAG).and_then(|v| v.as_str()) {
        None => Err(format!("the item of flag {key:?} has no {FLAG:?} text")),
        Some(text) => serde_json::from_str::<Json>(text)
            .and_then(serde_json::from_value::<Flag>)
            .map_err(|e| format!("flag {key:?} does not parse: {e}"))
            .and_then(|f| {
                if f.key == key {
                    Ok(f)
                } else {
                    Err(format!("the item of flag {key:?} holds flag {:?}", f.key))
                }
            }),
    };
    Stored { version, flag }
}
