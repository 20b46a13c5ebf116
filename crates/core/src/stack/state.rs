//! A stack's state: what the engine created, as versioned JSON (see `docs/state.md`).
//!
//! In memory secrets are plaintext; on the way to a store every secret value is replaced by
//! `{"$secret": "<base64 ciphertext>"}`, encrypted with the Crypto service of the stack's
//! cloud under the key alias `alias/mvi-stack-state` with the encryption context
//! `{"mvi:stack": <stack name>}`, so a state file never holds a password in plaintext and a
//! ciphertext cannot be moved to another stack's state.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::output::Props;
use crate::cloud::Cloud;
use crate::common::Timestamp;
use crate::crypto::{CreateKey, EncryptionContext};
use crate::error::{ErrorKind, Op, Result, Service};

/// The state format's version. Other versions are refused, never overwritten.
pub const STATE_VERSION: u32 = 1;
/// The key alias secrets in state are encrypted under.
pub const STATE_KEY_ALIAS: &str = "alias/mvi-stack-state";
const SECRET_TAG: &str = "$secret";

/// One resource as recorded. Its `Debug` shows secret properties as `[secret]`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceState {
    /// Its type (`mvi:blob:Bucket`).
    #[serde(rename = "type")]
    pub type_name: String,
    /// Its name in the program (unique in the stack).
    pub name: String,
    /// The component it belongs to, if any (a URN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Its id in the cloud.
    pub id: String,
    /// Its arguments as last applied.
    pub inputs: Props,
    /// Its outputs.
    pub outputs: Props,
    /// The resources it depends on.
    #[serde(default)]
    pub deps: BTreeSet<String>,
    /// Argument properties that are secret.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub secret_inputs: BTreeSet<String>,
    /// Output properties that are secret.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub secret_outputs: BTreeSet<String>,
    /// Refuses deletion.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub protect: bool,
}

/// An operation that started and whose end was not recorded (the program died). It carries
/// everything the resource's record holds, so recovery rebuilds that record exactly.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingOp {
    /// What was being done.
    pub op: PendingKind,
    /// The resource's type.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Its name in the program.
    pub name: String,
    /// Its id, if known (updates and deletes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The arguments it was applied with (so a create can be found again).
    pub inputs: Props,
    /// Secret argument properties.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub secret_inputs: BTreeSet<String>,
    /// Output properties that are secret (of the record a create makes).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub secret_outputs: BTreeSet<String>,
    /// The resources it depends on.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub deps: BTreeSet<String>,
    /// The component it belongs to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Whether it is protected.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub protect: bool,
    /// When it started.
    pub started: Timestamp,
}

impl PendingOp {
    /// The record this operation's resource has, with `id`, `inputs` and `outputs` as read.
    pub(crate) fn record(&self, id: String, inputs: Props, outputs: Props) -> ResourceState {
        ResourceState {
            type_name: self.type_name.clone(),
            name: self.name.clone(),
            parent: self.parent.clone(),
            id,
            inputs,
            outputs,
            deps: self.deps.clone(),
            secret_inputs: self.secret_inputs.clone(),
            secret_outputs: self.secret_outputs.clone(),
            protect: self.protect,
        }
    }
}

/// `props` with the values of the `secret` ones shown as `[secret]` (for `Debug`, and for a
/// command line printing outputs).
pub fn masked(props: &Props, secret: &BTreeSet<String>) -> Props {
    props
        .iter()
        .map(|(k, v)| {
            let v = if secret.contains(k) {
                Value::String("[secret]".into())
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect()
}

impl std::fmt::Debug for ResourceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourceState")
            .field("type_name", &self.type_name)
            .field("name", &self.name)
            .field("parent", &self.parent)
            .field("id", &self.id)
            .field("inputs", &masked(&self.inputs, &self.secret_inputs))
            .field("outputs", &masked(&self.outputs, &self.secret_outputs))
            .field("deps", &self.deps)
            .field("secret_inputs", &self.secret_inputs)
            .field("secret_outputs", &self.secret_outputs)
            .field("protect", &self.protect)
            .finish()
    }
}

impl std::fmt::Debug for PendingOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingOp")
            .field("op", &self.op)
            .field("type_name", &self.type_name)
            .field("name", &self.name)
            .field("id", &self.id)
            .field("inputs", &masked(&self.inputs, &self.secret_inputs))
            .field("secret_inputs", &self.secret_inputs)
            .field("deps", &self.deps)
            .field("parent", &self.parent)
            .field("protect", &self.protect)
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

/// The kind of a pending operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PendingKind {
    /// A create.
    Create,
    /// An update.
    Update,
    /// A delete.
    Delete,
}

/// A stack's whole state. Its `Debug` shows secret values as `[secret]`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct StateDoc {
    /// Format version ([`STATE_VERSION`]).
    pub version: u32,
    /// The stack's name.
    pub stack: String,
    /// Bumped on every saved change.
    pub serial: u64,
    /// Resources by URN.
    pub resources: BTreeMap<String, ResourceState>,
    /// Operations in flight when the last run stopped.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pending: BTreeMap<String, PendingOp>,
    /// Stack outputs.
    #[serde(default)]
    pub exports: Props,
    /// Exported names that are secret.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub secret_exports: BTreeSet<String>,
}

impl std::fmt::Debug for StateDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateDoc")
            .field("version", &self.version)
            .field("stack", &self.stack)
            .field("serial", &self.serial)
            .field("resources", &self.resources)
            .field("pending", &self.pending)
            .field("exports", &masked(&self.exports, &self.secret_exports))
            .field("secret_exports", &self.secret_exports)
            .finish()
    }
}

impl StateDoc {
    /// An empty state for `stack`.
    pub fn empty(stack: &str) -> Self {
        StateDoc {
            version: STATE_VERSION,
            stack: stack.to_string(),
            serial: 0,
            resources: BTreeMap::new(),
            pending: BTreeMap::new(),
            exports: Props::new(),
            secret_exports: BTreeSet::new(),
        }
    }

    /// Applies one journal entry.
    pub(crate) fn apply(&mut self, entry: Entry) {
        self.serial += 1;
        match entry {
            Entry::Pending { urn, op } => {
                self.pending.insert(urn, op);
            }
            Entry::Put { urn, resource } => {
                self.pending.remove(&urn);
                self.resources.insert(urn, resource);
            }
            Entry::Remove { urn } => {
                self.pending.remove(&urn);
                self.resources.remove(&urn);
            }
            Entry::Resolved { urn } => {
                self.pending.remove(&urn);
            }
            Entry::Move { from, to } => {
                self.pending.remove(&from);
                if let Some(r) = self.resources.remove(&from) {
                    self.resources.insert(to, r);
                }
            }
            Entry::Exports { exports, secret } => {
                self.exports = exports;
                self.secret_exports = secret;
            }
        }
    }
}

/// One change to a state, as journaled after every step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "entry", rename_all = "lowercase")]
pub(crate) enum Entry {
    /// An operation starts.
    Pending { urn: String, op: PendingOp },
    /// A resource is recorded (created, updated, read); clears its pending operation.
    Put {
        urn: String,
        resource: ResourceState,
    },
    /// A resource is gone; clears its pending operation.
    Remove { urn: String },
    /// A pending operation turned out to have done nothing.
    Resolved { urn: String },
    /// A resource's record moves to another key, in one step: a resource being replaced
    /// (create before delete) moves to `<urn>#replaced#<n>`, where it waits, undeclared, to
    /// be deleted once its dependents have moved to the new one.
    Move { from: String, to: String },
    /// The stack's outputs.
    Exports {
        exports: Props,
        secret: BTreeSet<String>,
    },
}

fn op(operation: &'static str) -> Op {
    Op::new(Service::Stack, operation)
}

/// Encrypts and decrypts the secret values of one stack's state.
#[derive(Debug, Clone)]
pub(crate) struct Sealer {
    cloud: Cloud,
    context: EncryptionContext,
    key: tokio::sync::OnceCell<String>,
}

impl Sealer {
    pub(crate) fn new(cloud: Cloud, stack: &str) -> Self {
        Sealer {
            cloud,
            context: [("mvi:stack".to_string(), stack.to_string())].into(),
            key: tokio::sync::OnceCell::new(),
        }
    }

    /// The state key's id, created on first use.
    async fn key(&self) -> Result<&str> {
        self.key
            .get_or_try_init(|| async {
                let crypto = self.cloud.crypto()?;
                match crypto.describe_key(STATE_KEY_ALIAS).await {
                    Ok(k) => Ok(k.id),
                    Err(e) if e.kind() == ErrorKind::NotFound => {
                        let created = crypto
                            .create_key(
                                CreateKey::new("mvi stack state secrets").alias(STATE_KEY_ALIAS),
                            )
                            .await;
                        match created {
                            Ok(k) => Ok(k.id),
                            // Another stack created it meanwhile.
                            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                                Ok(crypto.describe_key(STATE_KEY_ALIAS).await?.id)
                            }
                            Err(e) => Err(e),
                        }
                    }
                    Err(e) => Err(e),
                }
            })
            .await
            .map(String::as_str)
    }

    async fn seal_value(&self, v: &Value) -> Result<Value> {
        let plaintext =
            serde_json::to_vec(v).map_err(|e| op("save_state").internal("secret", e))?;
        let key = self.key().await?;
        let ciphertext = self
            .cloud
            .crypto()?
            .encrypt(key, &plaintext, &self.context)
            .await?;
        let mut m = Props::new();
        m.insert(
            SECRET_TAG.into(),
            Value::String(base64::engine::general_purpose::STANDARD.encode(ciphertext)),
        );
        Ok(Value::Object(m))
    }

    async fn open_value(&self, v: &Value) -> Result<Value> {
        let Some(Value::String(b64)) = v.as_object().and_then(|m| m.get(SECRET_TAG)) else {
            return Ok(v.clone());
        };
        let ciphertext = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| {
                op("load_state").invalid("state", "a secret in the state is not base64")
            })?;
        let plain = self
            .cloud
            .crypto()?
            .decrypt(&ciphertext, &self.context)
            .await?;
        serde_json::from_slice(plain.plaintext.expose()).map_err(|e| {
            op("load_state").internal("state", format!("a decrypted secret is not JSON: {e}"))
        })
    }

    async fn seal_props(&self, props: &Props, secret: &BTreeSet<String>) -> Result<Props> {
        let mut out = props.clone();
        for name in secret {
            if let Some(v) = props.get(name) {
                out.insert(name.clone(), self.seal_value(v).await?);
            }
        }
        Ok(out)
    }

    async fn open_props(&self, props: &mut Props, secret: &BTreeSet<String>) -> Result<()> {
        for name in secret {
            if let Some(v) = props.get(name) {
                let opened = self.open_value(v).await?;
                props.insert(name.clone(), opened);
            }
        }
        Ok(())
    }

    /// A copy of `r` with its secrets encrypted.
    pub(crate) async fn seal_resource(&self, r: &ResourceState) -> Result<ResourceState> {
        let mut out = r.clone();
        out.inputs = self.seal_props(&r.inputs, &r.secret_inputs).await?;
        out.outputs = self.seal_props(&r.outputs, &r.secret_outputs).await?;
        Ok(out)
    }

    /// Whether the entry holds a secret value (else sealing would copy it unchanged).
    pub(crate) fn has_secrets(&self, e: &Entry) -> bool {
        match e {
            Entry::Put { resource, .. } => resource_has_secrets(resource),
            Entry::Pending { op, .. } => props_have_secrets(&op.inputs, &op.secret_inputs),
            Entry::Exports { exports, secret } => props_have_secrets(exports, secret),
            Entry::Remove { .. } | Entry::Resolved { .. } | Entry::Move { .. } => false,
        }
    }

    /// Whether the state holds a secret value (else sealing would copy it unchanged).
    pub(crate) fn doc_has_secrets(doc: &StateDoc) -> bool {
        doc.resources.values().any(resource_has_secrets)
            || doc
                .pending
                .values()
                .any(|p| props_have_secrets(&p.inputs, &p.secret_inputs))
            || props_have_secrets(&doc.exports, &doc.secret_exports)
    }

    /// A copy of the entry with its secrets encrypted.
    pub(crate) async fn seal_entry(&self, e: &Entry) -> Result<Entry> {
        Ok(match e {
            Entry::Put { urn, resource } => Entry::Put {
                urn: urn.clone(),
                resource: self.seal_resource(resource).await?,
            },
            Entry::Pending { urn, op } => {
                let mut op = op.clone();
                op.inputs = self.seal_props(&op.inputs, &op.secret_inputs).await?;
                Entry::Pending {
                    urn: urn.clone(),
                    op,
                }
            }
            Entry::Exports { exports, secret } => Entry::Exports {
                exports: self.seal_props(exports, secret).await?,
                secret: secret.clone(),
            },
            other => other.clone(),
        })
    }

    /// A copy of the whole state with its secrets encrypted.
    pub(crate) async fn seal_doc(&self, doc: &StateDoc) -> Result<StateDoc> {
        let mut out = doc.clone();
        for (urn, r) in &doc.resources {
            out.resources
                .insert(urn.clone(), self.seal_resource(r).await?);
        }
        for (urn, p) in &doc.pending {
            let mut p = p.clone();
            p.inputs = self.seal_props(&p.inputs, &p.secret_inputs).await?;
            out.pending.insert(urn.clone(), p);
        }
        out.exports = self.seal_props(&doc.exports, &doc.secret_exports).await?;
        Ok(out)
    }

    /// Decrypts every secret of a loaded state in place.
    pub(crate) async fn open_doc(&self, doc: &mut StateDoc) -> Result<()> {
        for r in doc.resources.values_mut() {
            self.open_props(&mut r.inputs, &r.secret_inputs).await?;
            self.open_props(&mut r.outputs, &r.secret_outputs).await?;
        }
        for p in doc.pending.values_mut() {
            self.open_props(&mut p.inputs, &p.secret_inputs).await?;
        }
        self.open_props(&mut doc.exports, &doc.secret_exports).await
    }
}

fn props_have_secrets(props: &Props, secret: &BTreeSet<String>) -> bool {
    secret.iter().any(|name| props.contains_key(name))
}

fn resource_has_secrets(r: &ResourceState) -> bool {
    props_have_secrets(&r.inputs, &r.secret_inputs)
        || props_have_secrets(&r.outputs, &r.secret_outputs)
}

/// Parses a stored snapshot and its journal into a state, refusing unknown versions and
/// corrupt documents with a clear error.
pub(crate) fn decode(
    stack: &str,
    snapshot: Option<&[u8]>,
    journal: &[Vec<u8>],
) -> Result<StateDoc> {
    // The common case in one pass, straight into the document; anything unexpected goes
    // the slow way below, for a precise error.
    let fast = snapshot
        .and_then(|bytes| serde_json::from_slice::<StateDoc>(bytes).ok())
        .filter(|doc| doc.version == STATE_VERSION && doc.stack == stack);
    let mut doc = match (fast, snapshot) {
        (Some(doc), _) => doc,
        (None, None) => StateDoc::empty(stack),
        (None, Some(bytes)) => {
            let v: Value = serde_json::from_slice(bytes).map_err(|e| {
                op("load_state").err(
                    ErrorKind::Internal,
                    stack,
                    format!("the state is not valid JSON ({e}); it was left untouched"),
                )
            })?;
            match v.get("version").and_then(Value::as_u64) {
                Some(n) if n == u64::from(STATE_VERSION) => {}
                Some(n) => {
                    return Err(op("load_state").err(
                        ErrorKind::Unsupported,
                        stack,
                        format!(
                            "the state has format version {n}; this mvi reads version {STATE_VERSION}. \
                             It was left untouched"
                        ),
                    ));
                }
                None => {
                    return Err(op("load_state").err(
                        ErrorKind::Internal,
                        stack,
                        "the state has no format version; it is not an mvi state and was left untouched",
                    ));
                }
            }
            let doc: StateDoc = serde_json::from_value(v).map_err(|e| {
                op("load_state").err(
                    ErrorKind::Internal,
                    stack,
                    format!("the state is corrupt ({e}); it was left untouched"),
                )
            })?;
            if doc.stack != stack {
                return Err(op("load_state")
                    .invalid(stack, format!("the state belongs to stack {:?}", doc.stack)));
            }
            doc
        }
    };
    for (i, bytes) in journal.iter().enumerate() {
        let entry: Entry = serde_json::from_slice(bytes).map_err(|e| {
            op("load_state").err(
                ErrorKind::Internal,
                stack,
                format!("journal entry {i} is corrupt ({e}); the state was left untouched"),
            )
        })?;
        doc.apply(entry);
    }
    Ok(doc)
}
