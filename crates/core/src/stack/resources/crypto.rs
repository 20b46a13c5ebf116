//! Crypto resources: keys.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{Input, Output, declare, resource_args};
use crate::crypto::{CreateKey, KeyState, validate_alias};
use crate::error::{ErrorKind, Op, Result, Service};
use crate::stack::{Cx, Resource, ResourceOptions, Stack};

resource_args! {
    /// Arguments of a [`Key`].
    pub struct KeyArgs => KeySpec {
        /// The key's alias (`alias/...`): how the stack finds it again.
        alias: String,
        /// Its description.
        description: String,
        /// Days of waiting before deletion when the key is deleted (7 to 30).
        deletion_window_days: u32,
    }
}

impl KeyArgs {
    /// A key with `alias`.
    pub fn new(alias: impl Into<Input<String>>) -> Self {
        KeyArgs {
            alias: alias.into(),
            description: Input::Value(String::new()),
            deletion_window_days: Input::Value(7),
        }
    }

    /// Sets the description.
    pub fn description(mut self, d: impl Into<Input<String>>) -> Self {
        self.description = d.into();
        self
    }
}

/// A key.
#[derive(Debug, Clone)]
pub struct Key {
    /// Its URN.
    pub urn: String,
    /// Its id.
    pub id: Output<String>,
    /// Its alias.
    pub alias: Output<String>,
}

impl Key {
    /// A grant of decrypting with it (`kms:Decrypt`), for [`ContainerServiceArgs::grant`](super::ContainerServiceArgs::grant).
    pub fn grant_decrypt(&self) -> Output<crate::access::Grant> {
        self.id.map(crate::access::Grant::key_decrypt)
    }

    /// A grant of encrypting with it and making data keys, for [`ContainerServiceArgs::grant`](super::ContainerServiceArgs::grant).
    pub fn grant_encrypt(&self) -> Output<crate::access::Grant> {
        self.id.map(crate::access::Grant::key_encrypt)
    }

    /// Declares a key.
    pub fn new(stack: &Stack, name: &str, args: KeyArgs) -> Result<Key> {
        Self::with(stack, name, args, ResourceOptions::default())
    }

    /// Declares a key with options.
    pub fn with(stack: &Stack, name: &str, args: KeyArgs, opts: ResourceOptions) -> Result<Key> {
        let h = declare::<KeyResource>(stack, name, &args, opts)?;
        Ok(Key {
            id: h.output("id"),
            alias: h.output("alias"),
            urn: h.urn().to_string(),
        })
    }
}

/// Outputs of a key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyOutputs {
    /// Its id.
    pub id: String,
    /// Its alias.
    pub alias: String,
}

/// The provider of [`Key`].
#[derive(Debug)]
pub struct KeyResource;

#[async_trait]
impl Resource for KeyResource {
    const TYPE: &'static str = "mvi:crypto:Key";
    const REPLACE_ON: &'static [&'static str] = &["alias", "description"];
    type Args = KeySpec;
    type Outputs = KeyOutputs;

    fn check(args: &KeySpec) -> Result<()> {
        let op = Op::new(Service::Stack, "check");
        validate_alias(op, &args.alias)?;
        if !crate::crypto::DELETION_WINDOW_DAYS.contains(&args.deletion_window_days) {
            return Err(op.invalid(&args.alias, "deletion_window_days must be 7 to 30"));
        }
        Ok(())
    }

    async fn create(cx: Cx<'_>, args: &KeySpec) -> Result<(String, KeyOutputs)> {
        let key = cx
            .cloud
            .crypto()?
            .create_key(CreateKey::new(&args.description).alias(&args.alias))
            .await?;
        Ok((
            key.id.clone(),
            KeyOutputs {
                id: key.id,
                alias: args.alias.clone(),
            },
        ))
    }

    async fn find(cx: Cx<'_>, args: &KeySpec) -> Result<Option<String>> {
        match cx.cloud.crypto()?.describe_key(&args.alias).await {
            Ok(k) if k.state != KeyState::PendingDeletion => Ok(Some(k.id)),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn read(cx: Cx<'_>, id: &str, args: &KeySpec) -> Result<Option<(KeySpec, KeyOutputs)>> {
        match cx.cloud.crypto()?.describe_key(id).await {
            Ok(k) if k.state != KeyState::PendingDeletion => {
                let alias = k.aliases.first().cloned().unwrap_or_default();
                Ok(Some((
                    KeySpec {
                        alias: alias.clone(),
                        description: k.description,
                        deletion_window_days: args.deletion_window_days,
                    },
                    KeyOutputs { id: k.id, alias },
                )))
            }
            Ok(_) => Ok(None),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn update(_: Cx<'_>, id: &str, _: &KeySpec, new: &KeySpec) -> Result<KeyOutputs> {
        // Only the deletion window changes in place; it is used at deletion.
        Ok(KeyOutputs {
            id: id.to_string(),
            alias: new.alias.clone(),
        })
    }

    async fn delete(cx: Cx<'_>, id: &str, args: &KeySpec) -> Result<()> {
        // The alias first: a key waiting out its deletion window keeps its aliases, and the
        // name must be free for the key a next `up` creates (KMS keeps them too).
        // Only if it still names this key.
        let crypto = cx.cloud.crypto()?;
        if crypto
            .describe_key(&args.alias)
            .await
            .is_ok_and(|k| k.id == id)
        {
            match crypto.delete_alias(&args.alias).await {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        match cx
            .cloud
            .crypto()?
            .schedule_key_deletion(id, args.deletion_window_days)
            .await
        {
            Ok(_) => Ok(()),
            // Already gone, or already scheduled.
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::NotFound | ErrorKind::PreconditionFailed
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}
