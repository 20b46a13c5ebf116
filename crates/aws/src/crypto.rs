//! Crypto on AWS KMS.
//!
//! Keys are KMS symmetric keys (`SYMMETRIC_DEFAULT`, AES-256-GCM inside KMS); ciphertext is
//! KMS's own blob, which names its key and key version, so [`Crypto::decrypt`] needs no key
//! id and ciphertext made before a rotation still decrypts. Aliases, sizes and the deletion
//! window are checked with core's rules before any request, so they fail as on the local
//! backend.
//!
//! # How each part maps to KMS
//!
//! - `create_key`: `CreateKey`, then `CreateAlias`. KMS has no atomic "key with alias": the
//!   alias is looked up first (so a taken alias creates nothing), and if `CreateAlias` still
//!   loses a race the new key is scheduled for deletion (the shortest window) before
//!   AlreadyExists is returned. Alias creation is serialized within one handle, so tasks of
//!   one program racing for an alias leave no orphan keys at all.
//! - `import_key`: `CreateKey` with origin `EXTERNAL`, `GetParametersForImport` (an RSA-2048
//!   wrapping key, `RSAES_OAEP_SHA_256`), the material wrapped here with RSA-OAEP-SHA-256
//!   (aws-lc-rs), then `ImportKeyMaterial` (material that does not expire).
//! - `describe_key`, `list_keys`: `DescribeKey`, `ListAliases` and the number of versions,
//!   which is one more than the rotations `ListKeyRotations` reports (scheduled and
//!   on-demand alike), plus one while an on-demand rotation is still in progress
//!   (`GetKeyRotationStatus`), since KMS rotates asynchronously. `list_keys` shows customer-managed keys only (AWS-managed
//!   keys such as `alias/aws/s3` belong to AWS services).
//! - `rotate_key`: `RotateKeyOnDemand`. Keys with imported material are Unsupported, as on the
//!   local backend (KMS would need new material imported first).
//! - `schedule_key_deletion`, `cancel_key_deletion`, `enable_key`, `disable_key`: the KMS
//!   calls of the same names, by key id (KMS takes no alias there, so an alias is resolved
//!   with `DescribeKey` first). The key's state is checked from that answer first, with the
//!   local backend's errors (enabling a key pending deletion, or cancelling a deletion that is
//!   not scheduled, is PreconditionFailed), which are also what KMS answers.
//! - `encrypt`, `decrypt`, `generate_data_key` (`AES_256`): the KMS calls, with the
//!   encryption context. A disabled key or one pending deletion is PermissionDenied
//!   (KMS: `DisabledException`, `KMSInvalidStateException`). A ciphertext that is
//!   tampered, cut or names a key that does not exist here is InvalidArgument.
//! - `audit_events`: Unsupported. KMS records its audit trail in AWS CloudTrail, another
//!   service this backend does not reach.
//!
//! # Emulators
//!
//! moto (5.2.5) does not enforce key state on `Encrypt`, `Decrypt` and `GenerateDataKey`: a
//! disabled key, or one pending deletion, still works there. This backend sends the same
//! requests whatever the endpoint and reports what the service answered; the conformance
//! cases that need key state enforced declare the `KeyStateEnforced` capability, which the
//! moto target does not.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_kms::Client;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::{Blob as KmsBlob, DateTime as KmsTime};
use aws_sdk_kms::types::{
    AlgorithmSpec, DataKeySpec, EncryptionAlgorithmSpec, ExpirationModelType, KeyManagerType,
    KeyMetadata as KmsKeyMetadata, KeySpec, KeyState as KmsKeyState, KeyUsageType, OriginType,
    WrappingKeySpec,
};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use mvi_core::crypto::{
    AuditEvent, AuditQuery, CreateKey, Crypto, DELETION_WINDOW_DAYS, DataKey, Decrypted,
    EncryptionContext, KeyMetadata, KeyOrigin, KeyState, MAX_PLAINTEXT, validate_alias,
};
use mvi_core::error::found;
use mvi_core::{Error, ErrorKind, Op, Result, SecretBytes, Service, Timestamp};

use crate::error::map;

const fn op(name: &'static str) -> Op {
    Op::new(Service::Crypto, name)
}

/// The size of AES-256 key material, imported or generated as a data key.
const KEY_LEN: usize = 32;
/// The largest ciphertext blob KMS's `Decrypt` accepts.
const MAX_CIPHERTEXT: usize = 6144;
/// The shortest deletion window: how keys orphaned by a failed create are retired.
const RETIRE_DAYS: i32 = 7;
/// How many keys `list_keys` describes at once.
const LIST_CONCURRENCY: usize = 8;

/// The Crypto service on AWS KMS (or a KMS-compatible endpoint).
#[derive(Debug)]
pub struct KmsCrypto {
    client: Client,
    /// Serializes alias look-up, key creation and `CreateAlias` within this handle.
    alias_lock: tokio::sync::Mutex<()>,
}

impl KmsCrypto {
    /// Crypto over a KMS client built from `config`.
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        KmsCrypto {
            client: Client::new(config),
            alias_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The KMS metadata of `key` (an id, ARN or alias).
    async fn describe_raw(&self, op: Op, key: &str) -> Result<KmsKeyMetadata> {
        if key.is_empty() {
            return Err(op.invalid(key, "a key id or alias is required"));
        }
        let out = self
            .client
            .describe_key()
            .key_id(key)
            .send()
            .await
            .map_err(|e| fail(op, key, e))?;
        out.key_metadata
            .ok_or_else(|| op.internal(key, "DescribeKey answered no key metadata"))
    }

    /// mvi's metadata of a key KMS described: adds its aliases and version count.
    async fn metadata(&self, op: Op, raw: &KmsKeyMetadata) -> Result<KeyMetadata> {
        let id = raw.key_id();
        let (aliases, versions) = futures::try_join!(self.aliases(op, id), self.versions(op, id))?;
        Ok(to_metadata(raw, aliases, versions))
    }

    /// The aliases of key `id`, sorted.
    async fn aliases(&self, op: Op, id: &str) -> Result<Vec<String>> {
        let entries = self
            .client
            .list_aliases()
            .key_id(id)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| fail(op, id, e))?;
        let mut names: Vec<String> = entries
            .into_iter()
            .filter(|a| a.target_key_id() == Some(id))
            .filter_map(|a| a.alias_name)
            .collect();
        names.sort();
        Ok(names)
    }

    /// Every alias of the account, by target key id.
    async fn all_aliases(&self, op: Op) -> Result<HashMap<String, Vec<String>>> {
        let entries = self
            .client
            .list_aliases()
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| fail(op, "aliases", e))?;
        let mut by_key: HashMap<String, Vec<String>> = HashMap::new();
        for entry in entries {
            if let (Some(name), Some(target)) = (entry.alias_name, entry.target_key_id) {
                by_key.entry(target).or_default().push(name);
            }
        }
        for names in by_key.values_mut() {
            names.sort();
        }
        Ok(by_key)
    }

    /// The number of versions of key `id`'s material: 1 + completed rotations, + 1 while an
    /// on-demand rotation is in progress (KMS rotates asynchronously).
    async fn versions(&self, op: Op, id: &str) -> Result<u32> {
        let rotations = self
            .client
            .list_key_rotations()
            .key_id(id)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await;
        let completed = match rotations {
            Ok(r) => r.len(),
            // KMS refuses to list rotations of keys in some states (pending import, ...)
            // and of keys that cannot rotate: they have their first material only.
            Err(e) if not_applicable(&e) => 0,
            Err(e) => return Err(fail(op, id, e)),
        };
        let in_progress = match self
            .client
            .get_key_rotation_status()
            .key_id(id)
            .send()
            .await
        {
            Ok(status) => status.on_demand_rotation_start_date().is_some(),
            Err(e) if not_applicable(&e) => false,
            Err(e) => return Err(fail(op, id, e)),
        };
        let versions = 1 + completed + usize::from(in_progress);
        u32::try_from(versions).map_err(|_| op.internal(id, "too many rotations to count"))
    }

    /// The metadata of listed key `id`, `None` for a key managed by AWS or deleted since.
    async fn listed(
        &self,
        op: Op,
        id: String,
        aliases: Vec<String>,
    ) -> Result<Option<KeyMetadata>> {
        let Some(raw) = found(self.describe_raw(op, &id).await)? else {
            return Ok(None);
        };
        if raw.key_manager() == Some(&KeyManagerType::Aws) {
            return Ok(None);
        }
        let versions = self.versions(op, &id).await?;
        Ok(Some(to_metadata(&raw, aliases, versions)))
    }

    /// Schedules a key this backend just created, and could not finish, for deletion.
    async fn retire(&self, id: &str) {
        let out = self
            .client
            .schedule_key_deletion()
            .key_id(id)
            .pending_window_in_days(RETIRE_DAYS)
            .send()
            .await;
        if let Err(e) = out {
            tracing::warn!(key = id, error = %map(op("create_key"), id, e), "could not retire a half-created key");
        }
    }

    /// Checks that `alias` is well formed and free, and holds this handle's alias lock
    /// until the alias is given (see [`KmsCrypto::attach_alias`]).
    async fn claim_alias(&self, op: Op, alias: &str) -> Result<tokio::sync::MutexGuard<'_, ()>> {
        validate_alias(op, alias)?;
        let guard = self.alias_lock.lock().await;
        match self.describe_raw(op, alias).await {
            Ok(raw) => Err(op.already_exists(
                alias,
                format!("the alias already names key {}", raw.key_id()),
            )),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(guard),
            Err(e) => Err(e),
        }
    }

    /// Gives the new key `id` its alias; a key that cannot get it (another process took the
    /// alias in between) is retired.
    async fn attach_alias(&self, op: Op, alias: &str, id: &str) -> Result<()> {
        let named = self
            .client
            .create_alias()
            .alias_name(alias)
            .target_key_id(id)
            .send()
            .await;
        if let Err(e) = named {
            let err = fail(op, alias, e);
            self.retire(id).await;
            return Err(err);
        }
        Ok(())
    }

    /// Creates a symmetric key (origin `EXTERNAL` when `external`).
    async fn create_raw(
        &self,
        op: Op,
        description: &str,
        external: bool,
    ) -> Result<KmsKeyMetadata> {
        let mut req = self
            .client
            .create_key()
            .description(description)
            .key_spec(KeySpec::SymmetricDefault)
            .key_usage(KeyUsageType::EncryptDecrypt);
        if external {
            req = req.origin(OriginType::External);
        }
        let out = req.send().await.map_err(|e| fail(op, "new key", e))?;
        out.key_metadata
            .ok_or_else(|| op.internal("new key", "CreateKey answered no metadata"))
    }

    /// The raw metadata of a key about to be managed, refusing a key pending deletion
    /// unless `pending_ok`.
    async fn managed(&self, op: Op, key: &str, what: &str) -> Result<KmsKeyMetadata> {
        let raw = self.describe_raw(op, key).await?;
        if state_of(&raw) == KeyState::PendingDeletion {
            return Err(op.precondition(
                key,
                format!(
                    "key {} is pending deletion and cannot be {what}; cancel the deletion first",
                    raw.key_id()
                ),
            ));
        }
        Ok(raw)
    }

    /// Imports `material` into the new EXTERNAL key `id`.
    async fn import_material(&self, op: Op, id: &str, material: &SecretBytes) -> Result<()> {
        let params = self
            .client
            .get_parameters_for_import()
            .key_id(id)
            .wrapping_algorithm(AlgorithmSpec::RsaesOaepSha256)
            .wrapping_key_spec(WrappingKeySpec::Rsa2048)
            .send()
            .await
            .map_err(|e| {
                let err = fail(op, id, e);
                if err.kind() == ErrorKind::Internal {
                    // KMS always answers with an error code; a bare HTTP 500 is an endpoint
                    // without the operation (moto 5.2.5 has no key import).
                    op.unsupported(format!(
                        "this KMS endpoint does not implement key import ({})",
                        err.message()
                    ))
                } else {
                    err
                }
            })?;
        let (Some(token), Some(public)) = (params.import_token(), params.public_key()) else {
            return Err(op.internal(id, "GetParametersForImport answered no token or key"));
        };
        let wrapped =
            wrap_material(public.as_ref(), material.expose()).map_err(|m| op.internal(id, m))?;
        self.client
            .import_key_material()
            .key_id(id)
            .import_token(token.clone())
            .encrypted_key_material(KmsBlob::new(wrapped))
            .expiration_model(ExpirationModelType::KeyMaterialDoesNotExpire)
            .send()
            .await
            .map_err(|e| fail(op, id, e))?;
        Ok(())
    }
}

#[async_trait]
impl Crypto for KmsCrypto {
    async fn create_key(&self, req: CreateKey) -> Result<KeyMetadata> {
        let op = op("create_key");
        let _claim = match &req.alias {
            Some(alias) => Some(self.claim_alias(op, alias).await?),
            None => None,
        };
        let raw = self.create_raw(op, &req.description, false).await?;
        if let Some(alias) = &req.alias {
            self.attach_alias(op, alias, raw.key_id()).await?;
        }
        // A new key has its first material only, and the alias just given (if any).
        Ok(to_metadata(&raw, req.alias.into_iter().collect(), 1))
    }

    async fn import_key(&self, req: CreateKey, material: SecretBytes) -> Result<KeyMetadata> {
        let op = op("import_key");
        if material.len() != KEY_LEN {
            return Err(op.invalid(
                "key material",
                format!(
                    "imported key material must be exactly {KEY_LEN} bytes (AES-256), not {}",
                    material.len()
                ),
            ));
        }
        let _claim = match &req.alias {
            Some(alias) => Some(self.claim_alias(op, alias).await?),
            None => None,
        };
        let raw = self.create_raw(op, &req.description, true).await?;
        let id = raw.key_id();
        // Import before the alias is given, so the alias never names a key without
        // material; a key whose import failed is retired.
        if let Err(e) = self.import_material(op, id, &material).await {
            self.retire(id).await;
            return Err(e);
        }
        if let Some(alias) = &req.alias {
            self.attach_alias(op, alias, id).await?;
        }
        let raw = self.describe_raw(op, id).await?;
        self.metadata(op, &raw).await
    }

    async fn describe_key(&self, key: &str) -> Result<KeyMetadata> {
        let op = op("describe_key");
        let raw = self.describe_raw(op, key).await?;
        self.metadata(op, &raw).await
    }

    async fn list_keys(&self) -> Result<Vec<KeyMetadata>> {
        let op = op("list_keys");
        let entries = self
            .client
            .list_keys()
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| fail(op, "keys", e))?;
        let mut aliases = self.all_aliases(op).await?;
        let lookups: Vec<_> = entries
            .into_iter()
            .filter_map(|entry| entry.key_id)
            .map(|id| {
                let names = aliases.remove(&id).unwrap_or_default();
                self.listed(op, id, names)
            })
            .collect();
        let described: Vec<Option<KeyMetadata>> = futures::stream::iter(lookups)
            .buffered(LIST_CONCURRENCY)
            .try_collect()
            .await?;
        let mut keys: Vec<KeyMetadata> = described.into_iter().flatten().collect();
        keys.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.id.cmp(&b.id)));
        Ok(keys)
    }

    async fn enable_key(&self, key: &str) -> Result<()> {
        let op = op("enable_key");
        let raw = self.managed(op, key, "enabled").await?;
        self.client
            .enable_key()
            .key_id(raw.key_id())
            .send()
            .await
            .map_err(|e| fail(op, key, e))?;
        Ok(())
    }

    async fn disable_key(&self, key: &str) -> Result<()> {
        let op = op("disable_key");
        let raw = self.managed(op, key, "disabled").await?;
        self.client
            .disable_key()
            .key_id(raw.key_id())
            .send()
            .await
            .map_err(|e| fail(op, key, e))?;
        Ok(())
    }

    async fn schedule_key_deletion(&self, key: &str, pending_days: u32) -> Result<Timestamp> {
        let op = op("schedule_key_deletion");
        let days = i32::try_from(pending_days)
            .ok()
            .filter(|_| DELETION_WINDOW_DAYS.contains(&pending_days))
            .ok_or_else(|| {
                op.invalid(
                    key,
                    format!(
                        "the waiting period must be {} to {} days, not {pending_days}",
                        DELETION_WINDOW_DAYS.start(),
                        DELETION_WINDOW_DAYS.end()
                    ),
                )
            })?;
        let raw = self
            .managed(op, key, "scheduled for deletion again")
            .await?;
        let out = self
            .client
            .schedule_key_deletion()
            .key_id(raw.key_id())
            .pending_window_in_days(days)
            .send()
            .await
            .map_err(|e| fail(op, key, e))?;
        out.deletion_date()
            .and_then(timestamp)
            .ok_or_else(|| op.internal(key, "ScheduleKeyDeletion answered no deletion date"))
    }

    async fn cancel_key_deletion(&self, key: &str) -> Result<()> {
        let op = op("cancel_key_deletion");
        let raw = self.describe_raw(op, key).await?;
        if state_of(&raw) != KeyState::PendingDeletion {
            return Err(op.precondition(key, "the key is not scheduled for deletion"));
        }
        self.client
            .cancel_key_deletion()
            .key_id(raw.key_id())
            .send()
            .await
            .map_err(|e| fail(op, key, e))?;
        Ok(())
    }

    async fn delete_alias(&self, alias: &str) -> Result<()> {
        let op = op("delete_alias");
        validate_alias(op, alias)?;
        self.client
            .delete_alias()
            .alias_name(alias)
            .send()
            .await
            .map_err(|e| fail(op, alias, e))?;
        Ok(())
    }

    async fn rotate_key(&self, key: &str) -> Result<u32> {
        let op = op("rotate_key");
        let raw = self.describe_raw(op, key).await?;
        let id = raw.key_id();
        if origin_of(&raw) == KeyOrigin::Imported {
            return Err(op.err(
                ErrorKind::Unsupported,
                key,
                "keys with imported material cannot be rotated here (KMS needs new material \
                 imported first); import a new key",
            ));
        }
        if state_of(&raw) != KeyState::Enabled {
            return Err(op.precondition(
                key,
                format!(
                    "only an enabled key can be rotated; key {id} is {}",
                    state_name(&raw)
                ),
            ));
        }
        self.client
            .rotate_key_on_demand()
            .key_id(id)
            .send()
            .await
            .map_err(|e| fail(op, key, e))?;
        self.versions(op, id).await
    }

    async fn encrypt(
        &self,
        key: &str,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Bytes> {
        let op = op("encrypt");
        if plaintext.is_empty() || plaintext.len() > MAX_PLAINTEXT {
            return Err(op.invalid(
                key,
                format!(
                    "the plaintext must be 1 to {MAX_PLAINTEXT} bytes (as KMS), not {}; encrypt \
                     larger data with a data key (generate_data_key)",
                    plaintext.len()
                ),
            ));
        }
        let out = self
            .client
            .encrypt()
            .key_id(key)
            .plaintext(KmsBlob::new(plaintext))
            .set_encryption_context(kms_context(context))
            .encryption_algorithm(EncryptionAlgorithmSpec::SymmetricDefault)
            .send()
            .await
            .map_err(|e| fail(op, key, e))?;
        let blob = out
            .ciphertext_blob
            .ok_or_else(|| op.internal(key, "Encrypt answered no ciphertext"))?;
        Ok(Bytes::from(blob.into_inner()))
    }

    async fn decrypt(&self, ciphertext: &[u8], context: &EncryptionContext) -> Result<Decrypted> {
        let op = op("decrypt");
        if ciphertext.is_empty() || ciphertext.len() > MAX_CIPHERTEXT {
            return Err(op.invalid(
                "ciphertext",
                format!(
                    "a KMS ciphertext is 1 to {MAX_CIPHERTEXT} bytes, not {}",
                    ciphertext.len()
                ),
            ));
        }
        let out = self
            .client
            .decrypt()
            .ciphertext_blob(KmsBlob::new(ciphertext))
            .set_encryption_context(kms_context(context))
            .send()
            .await
            .map_err(|e| fail(op, "ciphertext", e))?;
        let key_id = out
            .key_id()
            .map(key_id_of)
            .ok_or_else(|| op.internal("ciphertext", "Decrypt answered no key id"))?
            .to_owned();
        let plaintext = SecretBytes::new(
            out.plaintext
                .ok_or_else(|| op.internal(key_id.as_str(), "Decrypt answered no plaintext"))?
                .into_inner(),
        );
        // Checked after the fact: only the answer names the key (see "Emulators").
        Ok(Decrypted { key_id, plaintext })
    }

    async fn generate_data_key(&self, key: &str, context: &EncryptionContext) -> Result<DataKey> {
        let op = op("generate_data_key");
        let out = self
            .client
            .generate_data_key()
            .key_id(key)
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(kms_context(context))
            .send()
            .await
            .map_err(|e| fail(op, key, e))?;
        let key_id = out
            .key_id()
            .map(key_id_of)
            .ok_or_else(|| op.internal(key, "GenerateDataKey answered no key id"))?
            .to_owned();
        let (Some(plaintext), Some(ciphertext)) = (out.plaintext, out.ciphertext_blob) else {
            return Err(op.internal(key, "GenerateDataKey answered no data key"));
        };
        let plaintext = SecretBytes::new(plaintext.into_inner());
        if plaintext.len() != KEY_LEN {
            return Err(op.internal(
                key,
                format!(
                    "GenerateDataKey answered {} bytes, not {KEY_LEN}",
                    plaintext.len()
                ),
            ));
        }
        Ok(DataKey {
            key_id,
            plaintext,
            ciphertext: Bytes::from(ciphertext.into_inner()),
        })
    }

    async fn audit_events(&self, _query: AuditQuery) -> Result<Vec<AuditEvent>> {
        Err(op("audit_events").unsupported(
            "KMS keeps its audit trail in AWS CloudTrail (LookupEvents with event source \
             kms.amazonaws.com), a separate service this backend does not read",
        ))
    }
}

/// Maps a KMS error of `op` about `resource`, with KMS's codes read in the light of the
/// operation (the shared mapping in `error.rs` does the rest).
fn fail<E>(op: Op, resource: &str, err: SdkError<E>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = err.code().unwrap_or_default().to_owned();
    let message = err.message().unwrap_or_default().to_owned();
    let kind = kms_kind(op.operation, &code, &message);
    match kind {
        Some(kind) => {
            let text = if message.is_empty() {
                code
            } else {
                format!("{code}: {message}")
            };
            op.err(kind, resource, text).with_source(err)
        }
        None => map(op, resource, err),
    }
}

/// The kind of a KMS error code where it differs from the shared mapping, if it does.
fn kms_kind(operation: &str, code: &str, message: &str) -> Option<ErrorKind> {
    let uses_key = matches!(operation, "encrypt" | "decrypt" | "generate_data_key");
    Some(match code {
        // A key pending deletion (or import) refuses use: as a disabled key, PermissionDenied.
        "KMSInvalidStateException" if uses_key => ErrorKind::PermissionDenied,
        "UnsupportedOperationException" => ErrorKind::Unsupported,
        "IncorrectKeyException" => ErrorKind::InvalidArgument,
        // KMS answers this when the key a ciphertext names does not exist here ("The
        // ciphertext refers to a customer master key that does not exist, ..."; moto sends no
        // message): for the caller, a ciphertext that cannot be decrypted. An IAM denial
        // ("User: ... is not authorized to perform: kms:Decrypt ...") stays PermissionDenied.
        "AccessDeniedException"
            if operation == "decrypt" && !message.contains("is not authorized") =>
        {
            ErrorKind::InvalidArgument
        }
        _ => return None,
    })
}

/// Whether a rotation query does not apply to the key (its state or kind), rather than
/// failing.
fn not_applicable<E: ProvideErrorMetadata>(err: &E) -> bool {
    matches!(
        err.code(),
        Some("KMSInvalidStateException" | "UnsupportedOperationException")
    )
}

/// mvi's state of a KMS key. States mvi does not model map to the nearest one by what they
/// allow: pending import, creating, updating and unavailable keys refuse use as a disabled
/// key does.
fn state_of(raw: &KmsKeyMetadata) -> KeyState {
    match raw.key_state() {
        Some(KmsKeyState::Enabled) => KeyState::Enabled,
        Some(KmsKeyState::PendingDeletion | KmsKeyState::PendingReplicaDeletion) => {
            KeyState::PendingDeletion
        }
        Some(_) => KeyState::Disabled,
        None if raw.enabled() => KeyState::Enabled,
        None => KeyState::Disabled,
    }
}

/// KMS's name of a key's state, for messages.
fn state_name(raw: &KmsKeyMetadata) -> &str {
    raw.key_state().map_or("not enabled", |s| s.as_str())
}

fn origin_of(raw: &KmsKeyMetadata) -> KeyOrigin {
    match raw.origin() {
        Some(OriginType::External) => KeyOrigin::Imported,
        _ => KeyOrigin::Generated,
    }
}

fn to_metadata(raw: &KmsKeyMetadata, aliases: Vec<String>, versions: u32) -> KeyMetadata {
    KeyMetadata {
        id: raw.key_id().to_owned(),
        aliases,
        description: raw.description().unwrap_or_default().to_owned(),
        state: state_of(raw),
        origin: origin_of(raw),
        created: raw.creation_date().and_then(timestamp).unwrap_or_default(),
        versions,
        deletion_date: match state_of(raw) {
            KeyState::PendingDeletion => raw.deletion_date().and_then(timestamp),
            _ => None,
        },
    }
}

fn timestamp(t: &KmsTime) -> Option<Timestamp> {
    chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

/// The key id in a key ARN (`arn:aws:kms:region:account:key/ID`), or the input as it is.
fn key_id_of(arn: &str) -> &str {
    arn.rsplit_once(":key/").map_or(arn, |(_, id)| id)
}

/// The encryption context as KMS takes it (absent when empty).
fn kms_context(context: &EncryptionContext) -> Option<HashMap<String, String>> {
    (!context.is_empty()).then(|| {
        context
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    })
}

/// Wraps key material for `ImportKeyMaterial`: RSA-OAEP with SHA-256 (and MGF1 SHA-256)
/// under KMS's wrapping public key (DER `SubjectPublicKeyInfo`).
fn wrap_material(public_key_der: &[u8], material: &[u8]) -> std::result::Result<Vec<u8>, String> {
    use aws_lc_rs::rsa::{OAEP_SHA256_MGF1SHA256, OaepPublicEncryptingKey, PublicEncryptingKey};
    let public = PublicEncryptingKey::from_der(public_key_der)
        .map_err(|e| format!("KMS's wrapping key is not an RSA public key: {e}"))?;
    let oaep = OaepPublicEncryptingKey::new(public)
        .map_err(|_| "KMS's wrapping key does not suit RSA-OAEP".to_owned())?;
    let mut out = vec![0u8; oaep.ciphertext_size()];
    let len = oaep
        .encrypt(&OAEP_SHA256_MGF1SHA256, material, &mut out, None)
        .map_err(|_| "could not wrap the key material with RSA-OAEP".to_owned())?
        .len();
    out.truncate(len);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_from_arns() {
        assert_eq!(
            key_id_of("arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab"),
            "1234abcd-12ab"
        );
        assert_eq!(key_id_of("1234abcd-12ab"), "1234abcd-12ab");
    }

    #[test]
    fn kms_codes_by_operation() {
        assert_eq!(
            kms_kind("encrypt", "KMSInvalidStateException", ""),
            Some(ErrorKind::PermissionDenied)
        );
        // Outside use of a key, the shared mapping (PreconditionFailed) applies.
        assert_eq!(
            kms_kind("cancel_key_deletion", "KMSInvalidStateException", ""),
            None
        );
        assert_eq!(
            kms_kind(
                "decrypt",
                "AccessDeniedException",
                "The ciphertext refers to a customer master key that does not exist"
            ),
            Some(ErrorKind::InvalidArgument)
        );
        assert_eq!(
            kms_kind(
                "decrypt",
                "AccessDeniedException",
                "User: arn:aws:iam::1:user/x is not authorized to perform: kms:Decrypt"
            ),
            None
        );
        assert_eq!(
            kms_kind("decrypt", "AccessDeniedException", ""),
            Some(ErrorKind::InvalidArgument)
        );
        assert_eq!(
            kms_kind("rotate_key", "UnsupportedOperationException", ""),
            Some(ErrorKind::Unsupported)
        );
    }

    #[test]
    fn wrapped_material_unwraps_with_the_private_key() {
        use aws_lc_rs::encoding::AsDer;
        use aws_lc_rs::rsa::{
            KeySize, OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, PrivateDecryptingKey,
        };
        let private = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
        let der = private.public_key().as_der().unwrap();
        let material = [7u8; KEY_LEN];
        let wrapped = wrap_material(der.as_ref(), &material).unwrap();
        assert_eq!(wrapped.len(), 256);
        assert!(!wrapped.windows(KEY_LEN).any(|w| w == material));
        let oaep = OaepPrivateDecryptingKey::new(private).unwrap();
        let mut out = vec![0u8; oaep.min_output_size()];
        let plain = oaep
            .decrypt(&OAEP_SHA256_MGF1SHA256, &wrapped, &mut out, None)
            .unwrap();
        assert_eq!(plain, material);
        assert!(wrap_material(b"not a key", &material).is_err());
    }
}
