//! The local Crypto service: managed AES-256-GCM keys, encryption bound to a context, data
//! keys for envelope encryption, and an audit trail — what KMS does, on one machine.
//!
//! # How it is stored, and why
//!
//! ```text
//! crypto/root.key     32 random bytes, mode 0600: the root key that wraps every key's material
//! crypto/keys.redb    redb table `keys`: key id -> postcard(metadata + wrapped material versions)
//! crypto/audit.jsonl  the audit trail, one JSON event per line, append-only
//! ```
//!
//! Key material never touches the disk in plaintext: each version of a key's material is
//! sealed with AES-256-GCM under the root key (associated data: the key id and version, so
//! sealed material cannot be moved between keys or versions unnoticed). The root key is made
//! once from the OS RNG and written atomically with 0600 permissions from the start (a 0600
//! temp file, fsynced, then linked into place without clobbering); the service refuses a
//! `root.key` that others can read. Key records are in redb because every control operation
//! (create, rotate, disable, ...) must be durable and atomic when it returns; they are rare, so
//! redb's fsync per commit costs nothing that matters. The audit trail is appended without an
//! fsync (see the `audit` submodule) because it is written on every `encrypt`.
//!
//! At open, every key's material is unwrapped into memory (as [`SecretBytes`]: zeroed on drop,
//! redacted in `Debug`), so `encrypt` and `decrypt` never read the disk. In memory mode the
//! root key is random per process and redb runs on its in-memory backend: the same code paths.
//!
//! # Ciphertext format
//!
//! ```text
//! offset  size  field
//! 0       1     format byte (0x01)
//! 1       1     n = length of the key id
//! 2       n     key id (UTF-8)
//! 2+n     4     key version, big-endian u32 (1 = original material, +1 per rotation)
//! 6+n     12    random nonce (OS RNG)
//! 18+n    ..    AES-256-GCM ciphertext, then the 16-byte tag
//! ```
//!
//! The GCM associated data is the header (format byte to version) followed by a canonical
//! encoding of the encryption context, so a different context or any altered byte fails the
//! tag check: `decrypt` answers InvalidArgument ("cannot be decrypted: tampered or wrong
//! encryption context"). Garbage and truncated input are InvalidArgument too, never a panic.
//!
//! # Key lifecycle
//!
//! Enabled ⇄ Disabled; either → PendingDeletion (7 to 30 days) → deleted once the service's
//! clock passes the date (checked on each access to the key, so a manual clock drives it);
//! cancelling brings the key back Disabled, as KMS. A disabled or pending key refuses
//! encrypt, decrypt and generate_data_key with PermissionDenied naming the key. Deleting
//! removes the record with its wrapped material and drops the unwrapped copy (zeroed).

mod audit;
mod format;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use async_trait::async_trait;
use bytes::Bytes;
use mvi_core::crypto::{
    AuditEvent, AuditOutcome, AuditQuery, CreateKey, Crypto, DELETION_WINDOW_DAYS, DataKey,
    Decrypted, EncryptionContext, KeyMetadata, KeyOperation, KeyOrigin, KeyState, MAX_PLAINTEXT,
    validate_alias,
};
use mvi_core::{Error, ErrorKind, Op, Result, SecretBytes, Service, Timestamp};
use rand::TryRngCore;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::sim::Sim;
use crate::storage::{Ctx, db_error, io_error, sync_dir};

use self::audit::AuditLog;
use self::format::SealError;

/// Key records: key id -> postcard-encoded [`StoredKey`].
const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("keys");
/// AES-256 key size, for the root key, key material and data keys.
const KEY_LEN: usize = 32;
/// The longest key description (as KMS).
const MAX_DESCRIPTION: usize = 8192;
/// Associated-data prefix of wrapped key material, distinct from any ciphertext header.
const WRAP_AAD: &[u8] = b"mvi-crypto/wrapped-key-material/v1\0";
/// The message of every decrypt that fails the tag check.
const TAMPERED: &str = "cannot be decrypted: tampered or wrong encryption context";

/// One version of a key's material, sealed under the root key.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Wrapped {
    nonce: [u8; 12],
    /// AES-256-GCM ciphertext and tag of the 32-byte material.
    sealed: Vec<u8>,
}

/// A key as stored in redb: its metadata and its wrapped material, oldest version first.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredKey {
    meta: KeyMetadata,
    versions: Vec<Wrapped>,
}

/// A key in memory: the stored record and its unwrapped material (index = version - 1).
#[derive(Debug)]
struct Key {
    stored: StoredKey,
    material: Vec<SecretBytes>,
}

impl Key {
    /// The newest version and its material.
    fn newest(&self) -> Option<(u32, &SecretBytes)> {
        let version = u32::try_from(self.material.len()).ok()?;
        Some((version, self.material.last()?))
    }

    /// The material of `version`, if the key has it.
    fn version(&self, version: u32) -> Option<&SecretBytes> {
        let index = usize::try_from(version).ok()?.checked_sub(1)?;
        self.material.get(index)
    }
}

/// Every key, with the alias index.
#[derive(Debug, Default)]
struct Keys {
    by_id: BTreeMap<String, Key>,
    /// alias -> key id.
    aliases: HashMap<String, String>,
}

impl Keys {
    fn insert(&mut self, key: Key) {
        for alias in &key.stored.meta.aliases {
            self.aliases
                .insert(alias.clone(), key.stored.meta.id.clone());
        }
        self.by_id.insert(key.stored.meta.id.clone(), key);
    }

    /// The id `name` (a key id or an alias) refers to, if any.
    fn id_of(&self, name: &str) -> Option<String> {
        if name.starts_with("alias/") {
            self.aliases.get(name).cloned()
        } else if self.by_id.contains_key(name) {
            Some(name.to_string())
        } else {
            None
        }
    }
}

/// The local Crypto service.
pub struct LocalCrypto {
    dir: Option<PathBuf>,
    sim: Arc<Sim>,
    root: SecretBytes,
    db: redb::Database,
    keys: Mutex<Keys>,
    audit: AuditLog,
}

impl std::fmt::Debug for LocalCrypto {
    // Neither the root key nor the key table: a Debug print must never be a key dump.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCrypto")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl LocalCrypto {
    /// Opens the service's state: the root key, the key records (unwrapping every key's
    /// material into memory) and the audit trail; creates them on first use.
    pub async fn open(ctx: Ctx) -> Result<Self> {
        let op = Op::new(Service::Crypto, "open");
        let db = ctx.open_redb(op, "keys.redb")?;
        let records = load_records(op, &db)?;
        let (root, audit) = match &ctx.dir {
            Some(dir) => {
                let root = open_root_key(op, dir, !records.is_empty())?;
                (root, AuditLog::open(op, &dir.join("audit.jsonl"))?)
            }
            None => (random_key(op)?, AuditLog::memory()),
        };
        let mut keys = Keys::default();
        for stored in records {
            let material = stored
                .versions
                .iter()
                .zip(1u32..)
                .map(|(w, v)| unwrap_material(op, &root, &stored.meta.id, v, w))
                .collect::<Result<Vec<_>>>()?;
            keys.insert(Key { stored, material });
        }
        let service = LocalCrypto {
            dir: ctx.dir.clone(),
            sim: ctx.sim.clone(),
            root,
            db,
            keys: Mutex::new(keys),
            audit,
        };
        // Keys whose waiting period passed while the service was closed go now.
        service.purge_due(op, &mut service.lock())?;
        Ok(service)
    }

    fn lock(&self) -> MutexGuard<'_, Keys> {
        // A panic elsewhere while holding the lock cannot leave the map half-updated: every
        // mutation is a single insert or remove after the durable write.
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes `stored` to redb, durably.
    fn save(&self, op: Op, stored: &StoredKey) -> Result<()> {
        let id = stored.meta.id.as_str();
        let bytes = postcard::to_allocvec(stored).map_err(|e| op.internal(id, e))?;
        let tx = self.db.begin_write().map_err(|e| db_error(op, id, e))?;
        {
            let mut table = tx.open_table(KEYS).map_err(|e| db_error(op, id, e))?;
            table
                .insert(id, bytes.as_slice())
                .map_err(|e| db_error(op, id, e))?;
        }
        tx.commit().map_err(|e| db_error(op, id, e))
    }

    /// Deletes key `id` for good: its record (with the wrapped material) and its unwrapped
    /// material in memory, zeroed as it drops.
    fn destroy(&self, op: Op, keys: &mut Keys, id: &str) -> Result<()> {
        let tx = self.db.begin_write().map_err(|e| db_error(op, id, e))?;
        {
            let mut table = tx.open_table(KEYS).map_err(|e| db_error(op, id, e))?;
            table.remove(id).map_err(|e| db_error(op, id, e))?;
        }
        tx.commit().map_err(|e| db_error(op, id, e))?;
        if let Some(key) = keys.by_id.remove(id) {
            for alias in &key.stored.meta.aliases {
                keys.aliases.remove(alias);
            }
            tracing::info!(key_id = id, "key deleted: its waiting period has passed");
        }
        Ok(())
    }

    /// Deletes key `id` if its deletion date has passed; whether it did.
    fn purge_if_due(&self, op: Op, keys: &mut Keys, id: &str) -> Result<bool> {
        let now = self.sim.now();
        let due = keys
            .by_id
            .get(id)
            .is_some_and(|k| is_due(&k.stored.meta, now));
        if due {
            self.destroy(op, keys, id)?;
        }
        Ok(due)
    }

    /// Deletes every key whose deletion date has passed.
    fn purge_due(&self, op: Op, keys: &mut Keys) -> Result<()> {
        let now = self.sim.now();
        let due: Vec<String> = keys
            .by_id
            .values()
            .filter(|k| is_due(&k.stored.meta, now))
            .map(|k| k.stored.meta.id.clone())
            .collect();
        for id in due {
            self.destroy(op, keys, &id)?;
        }
        Ok(())
    }

    /// The key `name` (id or alias) refers to, deleting it first if its date has passed.
    fn find<'k>(&self, op: Op, keys: &'k mut Keys, name: &str) -> Result<&'k mut Key> {
        let not_found = || {
            let why = if name.starts_with("alias/") {
                "no key has this alias"
            } else {
                "no such key"
            };
            op.not_found(name, why)
        };
        let id = keys.id_of(name).ok_or_else(not_found)?;
        if self.purge_if_due(op, keys, &id)? {
            return Err(not_found());
        }
        keys.by_id.get_mut(&id).ok_or_else(not_found)
    }

    /// Records one audited operation, whatever its outcome. A failure to write the trail is
    /// logged, not returned: the operation itself has already happened (or been refused).
    fn audit<T>(&self, key_id: &str, operation: KeyOperation, result: &Result<T>) {
        let outcome = match result {
            Ok(_) => AuditOutcome::Ok,
            Err(e) => AuditOutcome::Denied(format!("{}: {}", e.kind(), e.message())),
        };
        let event = AuditEvent {
            time: self.sim.now(),
            principal: self.sim.principal().to_string(),
            key_id: key_id.to_string(),
            operation,
            outcome,
        };
        let op = Op::new(Service::Crypto, "audit");
        if let Err(e) = self.audit.record(op, event) {
            tracing::error!(error = %e, key_id, ?operation, "cannot append to the audit trail");
        }
    }

    /// Creates a key with `material` (generated or imported); `audited` gets its id.
    fn create(
        &self,
        op: Op,
        req: CreateKey,
        origin: KeyOrigin,
        material: SecretBytes,
        audited: &mut String,
    ) -> Result<KeyMetadata> {
        if let Some(alias) = &req.alias {
            *audited = alias.clone();
            validate_alias(op, alias)?;
        }
        if req.description.len() > MAX_DESCRIPTION {
            return Err(op.invalid(
                audited.as_str(),
                format!("descriptions are at most {MAX_DESCRIPTION} bytes"),
            ));
        }
        let mut keys = self.lock();
        // The lock is held from this check to the insert: of racing creators with the same
        // alias exactly one succeeds. An alias whose key is due for deletion is free.
        if let Some(alias) = &req.alias
            && let Some(owner) = keys.id_of(alias)
            && !self.purge_if_due(op, &mut keys, &owner)?
        {
            return Err(op.already_exists(
                alias.as_str(),
                format!("the alias already names key {owner}"),
            ));
        }
        // Ids come from the seeded simulator; after a reopen with the same seed it replays
        // ids already taken, so draw until one is free.
        let id = loop {
            let id = self.sim.id("key");
            if !keys.by_id.contains_key(&id) {
                break id;
            }
        };
        *audited = id.clone();
        let meta = KeyMetadata {
            id: id.clone(),
            aliases: req.alias.into_iter().collect(),
            description: req.description,
            state: KeyState::Enabled,
            origin,
            created: self.sim.now(),
            versions: 1,
            deletion_date: None,
        };
        let stored = StoredKey {
            versions: vec![wrap_material(op, &self.root, &id, 1, &material)?],
            meta: meta.clone(),
        };
        self.save(op, &stored)?;
        keys.insert(Key {
            stored,
            material: vec![material],
        });
        Ok(meta)
    }

    /// Applies `change` to the metadata of key `name` and saves it; `audited` gets the id.
    fn update(
        &self,
        op: Op,
        name: &str,
        audited: &mut String,
        change: impl FnOnce(&mut KeyMetadata) -> Result<()>,
    ) -> Result<KeyMetadata> {
        let mut keys = self.lock();
        let key = self.find(op, &mut keys, name)?;
        *audited = key.stored.meta.id.clone();
        let mut next = key.stored.clone();
        change(&mut next.meta)?;
        self.save(op, &next)?;
        key.stored = next;
        Ok(key.stored.meta.clone())
    }

    /// The id and the newest material of key `name`, if it may be used now.
    fn usable(
        &self,
        op: Op,
        name: &str,
        audited: &mut String,
    ) -> Result<(String, u32, SecretBytes)> {
        let mut keys = self.lock();
        let key = self.find(op, &mut keys, name)?;
        let meta = &key.stored.meta;
        *audited = meta.id.clone();
        check_usable(op, meta)?;
        let (version, material) = key
            .newest()
            .ok_or_else(|| op.internal(meta.id.as_str(), "the key has no material"))?;
        Ok((meta.id.clone(), version, material.clone()))
    }

    fn seal(
        &self,
        op: Op,
        name: &str,
        plaintext: &[u8],
        context: &EncryptionContext,
        audited: &mut String,
    ) -> Result<Vec<u8>> {
        let (id, version, material) = self.usable(op, name, audited)?;
        format::seal(&id, version, &material, plaintext, context)
            .map_err(|e| seal_error(op, &id, e))
    }

    fn decrypt_inner(
        &self,
        op: Op,
        ciphertext: &[u8],
        context: &EncryptionContext,
        audited: &mut String,
    ) -> Result<Decrypted> {
        let parsed = format::parse(ciphertext)
            .map_err(|why| op.invalid("ciphertext", format!("cannot be decrypted: {why}")))?;
        let id = parsed.header.key_id;
        *audited = id.to_string();
        let material = {
            let mut keys = self.lock();
            // A ciphertext naming no existing key was altered, or its key was deleted:
            // either way it is a bad argument, like any other undecryptable input.
            let key = match self.find(op, &mut keys, id) {
                Ok(key) => key,
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    return Err(op.invalid(
                        id,
                        format!(
                            "{TAMPERED} (it names no existing key: altered, or the key was deleted)"
                        ),
                    ));
                }
                Err(e) => return Err(e),
            };
            check_usable(op, &key.stored.meta)?;
            key.version(parsed.header.version)
                .ok_or_else(|| op.invalid(id, TAMPERED))?
                .clone()
        };
        let plaintext =
            format::open(&parsed, &material, context).map_err(|e| seal_error(op, id, e))?;
        Ok(Decrypted {
            key_id: id.to_string(),
            plaintext,
        })
    }
}

#[async_trait]
impl Crypto for LocalCrypto {
    async fn create_key(&self, req: CreateKey) -> Result<KeyMetadata> {
        let op = Op::new(Service::Crypto, "create_key");
        let mut audited = String::new();
        let result = random_key(op)
            .and_then(|m| self.create(op, req, KeyOrigin::Generated, m, &mut audited));
        self.audit(&audited, KeyOperation::Create, &result);
        result
    }

    async fn import_key(&self, req: CreateKey, material: SecretBytes) -> Result<KeyMetadata> {
        let op = Op::new(Service::Crypto, "import_key");
        let mut audited = req.alias.clone().unwrap_or_default();
        let result = if material.len() == KEY_LEN {
            self.create(op, req, KeyOrigin::Imported, material, &mut audited)
        } else {
            Err(op.invalid(
                "key material",
                format!(
                    "imported key material must be exactly {KEY_LEN} bytes (AES-256), not {}",
                    material.len()
                ),
            ))
        };
        self.audit(&audited, KeyOperation::Create, &result);
        result
    }

    async fn describe_key(&self, key: &str) -> Result<KeyMetadata> {
        let op = Op::new(Service::Crypto, "describe_key");
        let mut audited = key.to_string();
        let result = {
            let mut keys = self.lock();
            self.find(op, &mut keys, key).map(|k| {
                audited = k.stored.meta.id.clone();
                k.stored.meta.clone()
            })
        };
        self.audit(&audited, KeyOperation::Describe, &result);
        result
    }

    async fn list_keys(&self) -> Result<Vec<KeyMetadata>> {
        let op = Op::new(Service::Crypto, "list_keys");
        let mut keys = self.lock();
        self.purge_due(op, &mut keys)?;
        Ok(keys.by_id.values().map(|k| k.stored.meta.clone()).collect())
    }

    async fn enable_key(&self, key: &str) -> Result<()> {
        let op = Op::new(Service::Crypto, "enable_key");
        let mut audited = key.to_string();
        let result = self
            .update(op, key, &mut audited, |meta| {
                refuse_if_pending(op, meta, "enabled")?;
                meta.state = KeyState::Enabled;
                Ok(())
            })
            .map(drop);
        self.audit(&audited, KeyOperation::Enable, &result);
        result
    }

    async fn disable_key(&self, key: &str) -> Result<()> {
        let op = Op::new(Service::Crypto, "disable_key");
        let mut audited = key.to_string();
        let result = self
            .update(op, key, &mut audited, |meta| {
                refuse_if_pending(op, meta, "disabled")?;
                meta.state = KeyState::Disabled;
                Ok(())
            })
            .map(drop);
        self.audit(&audited, KeyOperation::Disable, &result);
        result
    }

    async fn schedule_key_deletion(&self, key: &str, pending_days: u32) -> Result<Timestamp> {
        let op = Op::new(Service::Crypto, "schedule_key_deletion");
        let mut audited = key.to_string();
        let result = if DELETION_WINDOW_DAYS.contains(&pending_days) {
            let date = self.sim.now() + chrono::Duration::days(i64::from(pending_days));
            self.update(op, key, &mut audited, |meta| {
                refuse_if_pending(op, meta, "scheduled for deletion again")?;
                meta.state = KeyState::PendingDeletion;
                meta.deletion_date = Some(date);
                Ok(())
            })
            .map(|_| date)
        } else {
            Err(op.invalid(
                key,
                format!(
                    "the waiting period must be {} to {} days, not {pending_days}",
                    DELETION_WINDOW_DAYS.start(),
                    DELETION_WINDOW_DAYS.end()
                ),
            ))
        };
        self.audit(&audited, KeyOperation::ScheduleDeletion, &result);
        result
    }

    async fn cancel_key_deletion(&self, key: &str) -> Result<()> {
        let op = Op::new(Service::Crypto, "cancel_key_deletion");
        let mut audited = key.to_string();
        let result = self
            .update(op, key, &mut audited, |meta| {
                if meta.state != KeyState::PendingDeletion {
                    return Err(
                        op.precondition(meta.id.as_str(), "the key is not scheduled for deletion")
                    );
                }
                // As KMS: a key rescued from deletion comes back disabled, so nothing uses it
                // again by accident.
                meta.state = KeyState::Disabled;
                meta.deletion_date = None;
                Ok(())
            })
            .map(drop);
        self.audit(&audited, KeyOperation::CancelDeletion, &result);
        result
    }

    async fn delete_alias(&self, alias: &str) -> Result<()> {
        let op = Op::new(Service::Crypto, "delete_alias");
        validate_alias(op, alias)?;
        let mut audited = alias.to_string();
        self.update(op, alias, &mut audited, |meta| {
            meta.aliases.retain(|a| a != alias);
            Ok(())
        })?;
        self.lock().aliases.remove(alias);
        Ok(())
    }

    async fn rotate_key(&self, key: &str) -> Result<u32> {
        let op = Op::new(Service::Crypto, "rotate_key");
        let mut audited = key.to_string();
        let result = (|| {
            let mut keys = self.lock();
            let k = self.find(op, &mut keys, key)?;
            let id = k.stored.meta.id.clone();
            audited = id.clone();
            if k.stored.meta.origin == KeyOrigin::Imported {
                return Err(op.err(
                    ErrorKind::Unsupported,
                    id,
                    "keys with imported material cannot be rotated (as KMS); import a new key",
                ));
            }
            if k.stored.meta.state != KeyState::Enabled {
                return Err(op.precondition(
                    id,
                    format!(
                        "only an enabled key can be rotated; it is {:?}",
                        k.stored.meta.state
                    ),
                ));
            }
            let version = k
                .stored
                .meta
                .versions
                .checked_add(1)
                .ok_or_else(|| op.invalid(id.as_str(), "the key has too many versions"))?;
            let material = random_key(op)?;
            let mut next = k.stored.clone();
            next.versions
                .push(wrap_material(op, &self.root, &id, version, &material)?);
            next.meta.versions = version;
            self.save(op, &next)?;
            k.stored = next;
            k.material.push(material);
            Ok(version)
        })();
        self.audit(&audited, KeyOperation::Rotate, &result);
        result
    }

    async fn encrypt(
        &self,
        key: &str,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Bytes> {
        let op = Op::new(Service::Crypto, "encrypt");
        let mut audited = key.to_string();
        let result = if plaintext.is_empty() || plaintext.len() > MAX_PLAINTEXT {
            Err(op.invalid(
                key,
                format!(
                    "the plaintext must be 1 to {MAX_PLAINTEXT} bytes (as KMS), not {}; encrypt \
                     larger data with a data key (generate_data_key)",
                    plaintext.len()
                ),
            ))
        } else {
            self.seal(op, key, plaintext, context, &mut audited)
                .map(Bytes::from)
        };
        self.audit(&audited, KeyOperation::Encrypt, &result);
        result
    }

    async fn decrypt(&self, ciphertext: &[u8], context: &EncryptionContext) -> Result<Decrypted> {
        let op = Op::new(Service::Crypto, "decrypt");
        let mut audited = String::new();
        let result = self.decrypt_inner(op, ciphertext, context, &mut audited);
        self.audit(&audited, KeyOperation::Decrypt, &result);
        result
    }

    async fn generate_data_key(&self, key: &str, context: &EncryptionContext) -> Result<DataKey> {
        let op = Op::new(Service::Crypto, "generate_data_key");
        let mut audited = key.to_string();
        let result = random_key(op).and_then(|plaintext| {
            let ciphertext = self.seal(op, key, plaintext.expose(), context, &mut audited)?;
            Ok(DataKey {
                key_id: audited.clone(),
                plaintext,
                ciphertext: Bytes::from(ciphertext),
            })
        });
        self.audit(&audited, KeyOperation::GenerateDataKey, &result);
        result
    }

    async fn audit_events(&self, query: AuditQuery) -> Result<Vec<AuditEvent>> {
        self.audit
            .query(Op::new(Service::Crypto, "audit_events"), &query)
    }
}

/// Whether `meta`'s deletion date has come.
fn is_due(meta: &KeyMetadata, now: Timestamp) -> bool {
    meta.state == KeyState::PendingDeletion && meta.deletion_date.is_some_and(|d| d <= now)
}

/// PermissionDenied, naming the key, unless it is enabled.
fn check_usable(op: Op, meta: &KeyMetadata) -> Result<()> {
    match meta.state {
        KeyState::Enabled => Ok(()),
        KeyState::Disabled => Err(op.denied(
            meta.id.as_str(),
            format!("key {} is disabled; enable it to use it", meta.id),
        )),
        KeyState::PendingDeletion => Err(op.denied(
            meta.id.as_str(),
            format!(
                "key {} is pending deletion{}; cancel the deletion to use it",
                meta.id,
                meta.deletion_date
                    .map(|d| format!(" (on {})", d.to_rfc3339()))
                    .unwrap_or_default()
            ),
        )),
    }
}

/// PreconditionFailed if the key is pending deletion (it must be cancelled first).
fn refuse_if_pending(op: Op, meta: &KeyMetadata, what: &str) -> Result<()> {
    if meta.state == KeyState::PendingDeletion {
        return Err(op.precondition(
            meta.id.as_str(),
            format!("the key is pending deletion and cannot be {what}; cancel the deletion first"),
        ));
    }
    Ok(())
}

/// The caller-facing error of a failed seal or open.
fn seal_error(op: Op, key_id: &str, e: SealError) -> Error {
    match e {
        SealError::Aead => op.invalid(key_id, TAMPERED),
        SealError::KeyId => op.internal(key_id, "the key id does not fit the ciphertext header"),
        SealError::Material => op.internal(key_id, "the key material is not 32 bytes"),
    }
}

/// 32 bytes from the OS RNG.
fn random_key(op: Op) -> Result<SecretBytes> {
    let mut bytes = vec![0u8; KEY_LEN];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| op.internal("os rng", e))?;
    Ok(SecretBytes::new(bytes))
}

/// The associated data of version `version` of key `id`'s wrapped material.
fn wrap_aad(id: &str, version: u32) -> Vec<u8> {
    [WRAP_AAD, id.as_bytes(), &version.to_be_bytes()].concat()
}

/// Seals `material` under the root key.
fn wrap_material(
    op: Op,
    root: &SecretBytes,
    id: &str,
    version: u32,
    material: &SecretBytes,
) -> Result<Wrapped> {
    let cipher =
        Aes256Gcm::new_from_slice(root.expose()).map_err(|e| op.internal("root key", e))?;
    let nonce: [u8; 12] = rand::random();
    let aad = wrap_aad(id, version);
    let sealed = cipher
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: material.expose(),
                aad: &aad,
            },
        )
        .map_err(|_| op.internal(id, "AES-GCM refused to seal the key material"))?;
    Ok(Wrapped { nonce, sealed })
}

/// Opens version `version` of key `id`'s wrapped material with the root key.
fn unwrap_material(
    op: Op,
    root: &SecretBytes,
    id: &str,
    version: u32,
    wrapped: &Wrapped,
) -> Result<SecretBytes> {
    let cipher =
        Aes256Gcm::new_from_slice(root.expose()).map_err(|e| op.internal("root key", e))?;
    let aad = wrap_aad(id, version);
    let material = cipher
        .decrypt(
            &Nonce::from(wrapped.nonce),
            Payload {
                msg: &wrapped.sealed,
                aad: &aad,
            },
        )
        .map_err(|_| {
            op.err(
                ErrorKind::Internal,
                id,
                format!(
                    "version {version} of the key's material cannot be unwrapped: root.key does \
                     not belong to keys.redb, or the record is corrupt"
                ),
            )
        })?;
    let material = SecretBytes::new(material);
    if material.len() != KEY_LEN {
        return Err(op.internal(id, "unwrapped key material is not 32 bytes"));
    }
    Ok(material)
}

/// Every key record in the database.
fn load_records(op: Op, db: &redb::Database) -> Result<Vec<StoredKey>> {
    let resource = "keys.redb";
    let tx = db.begin_read().map_err(|e| db_error(op, resource, e))?;
    let table = match tx.open_table(KEYS) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(db_error(op, resource, e)),
    };
    let mut out = Vec::new();
    for entry in table.iter().map_err(|e| db_error(op, resource, e))? {
        let (id, bytes) = entry.map_err(|e| db_error(op, resource, e))?;
        let stored: StoredKey =
            postcard::from_bytes(bytes.value()).map_err(|e| op.internal(id.value(), e))?;
        out.push(stored);
    }
    Ok(out)
}

/// Reads `dir/root.key`, or creates it (only when no key exists yet: a missing root key with
/// existing keys means their material is lost, and a fresh one would hide that).
fn open_root_key(op: Op, dir: &Path, keys_exist: bool) -> Result<SecretBytes> {
    let path = dir.join("root.key");
    let fail = |e| io_error(op, &path, e);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let root = SecretBytes::new(bytes);
            if root.len() != KEY_LEN {
                return Err(op.internal(
                    path.display().to_string(),
                    format!("the root key must be {KEY_LEN} bytes, not {}", root.len()),
                ));
            }
            check_private(op, &path)?;
            Ok(root)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if keys_exist {
                return Err(op.internal(
                    path.display().to_string(),
                    "the root key is missing but keys.redb holds keys; their material cannot \
                     be unwrapped without it",
                ));
            }
            let root = random_key(op)?;
            write_private(&path, &root).map_err(fail)?;
            // Another opener may have won the race to create it: use whatever is there.
            let bytes = std::fs::read(&path).map_err(fail)?;
            let root = SecretBytes::new(bytes);
            if root.len() != KEY_LEN {
                return Err(op.internal(path.display().to_string(), "the root key is not 32 bytes"));
            }
            Ok(root)
        }
        Err(e) => Err(fail(e)),
    }
}

/// Writes `secret` to `path` atomically with mode 0600 from the first byte, without ever
/// replacing an existing file.
fn write_private(path: &Path, secret: &SecretBytes) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut builder = tempfile::Builder::new();
    builder.prefix(".root.key.");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o600));
    }
    let mut tmp = builder.tempfile_in(dir)?;
    tmp.write_all(secret.expose())?;
    tmp.as_file().sync_all()?;
    match tmp.persist_noclobber(path) {
        Ok(_) => {}
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e.error),
    }
    sync_dir(dir)
}

/// Refuses a root key that others than its owner can read or write.
fn check_private(op: Op, path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| io_error(op, path, e))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(op.denied(
                path.display().to_string(),
                format!(
                    "the root key is accessible to others (mode {:o}); run chmod 600 on it",
                    mode & 0o777
                ),
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = (op, path);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mvi_core::{ManualClock, SystemClock};

    fn sim() -> Arc<Sim> {
        Arc::new(Sim::new(1, Arc::new(SystemClock), "tester".into()))
    }

    async fn open_in(dir: &Path) -> LocalCrypto {
        let ctx = Ctx::new(Some(dir), Service::Crypto, sim()).expect("ctx");
        LocalCrypto::open(ctx).await.expect("open")
    }

    #[tokio::test]
    async fn material_is_never_stored_or_shown_in_plaintext() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let material: Vec<u8> = (100..132u8).collect();
        let service = open_in(tmp.path()).await;
        let key = service
            .import_key(CreateKey::new("x"), SecretBytes::new(material.clone()))
            .await
            .expect("import");
        let debug = format!("{service:?} {:?}", service.lock());
        assert!(!debug.contains(&format!("{:?}", &material[..8])), "{debug}");
        drop(service);
        for file in ["keys.redb", "audit.jsonl"] {
            let bytes = std::fs::read(tmp.path().join("crypto").join(file)).expect("read");
            assert!(
                !bytes.windows(32).any(|w| w == material.as_slice()),
                "{file} holds the key material in plaintext"
            );
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let root = tmp.path().join("crypto/root.key");
            let mode = std::fs::metadata(&root).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            // A root key others can read is refused.
            std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            let ctx = Ctx::new(Some(tmp.path()), Service::Crypto, sim()).expect("ctx");
            let err = LocalCrypto::open(ctx).await.expect_err("loose root key");
            assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
            std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
        // Without its root key the material is lost: say so rather than make a new root.
        std::fs::remove_file(tmp.path().join("crypto/root.key")).expect("rm");
        let ctx = Ctx::new(Some(tmp.path()), Service::Crypto, sim()).expect("ctx");
        let err = LocalCrypto::open(ctx).await.expect_err("missing root key");
        assert_eq!(err.kind(), ErrorKind::Internal, "{err}");
        assert!(!key.id.is_empty());
    }

    #[tokio::test]
    async fn new_ciphertext_names_the_newest_version() {
        let ctx = Ctx::new(None, Service::Crypto, sim()).expect("ctx");
        let service = LocalCrypto::open(ctx).await.expect("open");
        let key = service
            .create_key(CreateKey::new("v"))
            .await
            .expect("create");
        let c = EncryptionContext::new();
        let v1 = service.encrypt(&key.id, b"a", &c).await.expect("encrypt");
        service.rotate_key(&key.id).await.expect("rotate");
        let v2 = service.encrypt(&key.id, b"b", &c).await.expect("encrypt");
        for (ct, version) in [(&v1, 1), (&v2, 2)] {
            let parsed = format::parse(ct).expect("parse");
            assert_eq!(parsed.header.key_id, key.id);
            assert_eq!(parsed.header.version, version);
        }
        // A version the key does not have is refused, not a panic.
        let mut forged = v2.to_vec();
        let at = 2 + key.id.len() + 3;
        forged[at] = 9;
        let err = service.decrypt(&forged, &c).await.expect_err("forged");
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        let imported = service
            .import_key(CreateKey::new("i"), SecretBytes::new(vec![1u8; 32]))
            .await
            .expect("import");
        let err = service.rotate_key(&imported.id).await.expect_err("rotate");
        assert_eq!(err.kind(), ErrorKind::Unsupported);
    }

    #[tokio::test]
    async fn deleted_key_is_purged_from_disk_and_torn_audit_line_is_cut() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let clock = ManualClock::new(chrono::Utc::now());
        let sim = Arc::new(Sim::new(1, Arc::new(clock.clone()), "tester".into()));
        let ctx = Ctx::new(Some(tmp.path()), Service::Crypto, sim.clone()).expect("ctx");
        let service = LocalCrypto::open(ctx).await.expect("open");
        let key = service
            .create_key(CreateKey::new("d"))
            .await
            .expect("create");
        service
            .schedule_key_deletion(&key.id, 7)
            .await
            .expect("schedule");
        drop(service);
        // A crash in the middle of an audit append leaves half a line.
        let audit = tmp.path().join("crypto/audit.jsonl");
        let mut bytes = std::fs::read(&audit).expect("read");
        bytes.extend_from_slice(b"{\"time\":\"20");
        std::fs::write(&audit, bytes).expect("write");
        clock.advance(std::time::Duration::from_secs(8 * 86_400));
        let ctx = Ctx::new(Some(tmp.path()), Service::Crypto, sim).expect("ctx");
        let service = LocalCrypto::open(ctx).await.expect("reopen");
        assert!(service.lock().by_id.is_empty(), "due key kept after reopen");
        let records = load_records(Op::new(Service::Crypto, "test"), &service.db).expect("load");
        assert!(
            records.is_empty(),
            "the deleted key's record is still in redb"
        );
        service.describe_key(&key.id).await.expect_err("deleted");
        let events = service
            .audit_events(AuditQuery::all())
            .await
            .expect("audit");
        assert_eq!(events.len(), 3, "{events:?}");
    }
}
