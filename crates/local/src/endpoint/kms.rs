//! The KMS door: KMS's JSON protocol (`TrentService`) over the local Crypto service.
//!
//! Served: Encrypt, Decrypt, GenerateDataKey and DescribeKey, with encryption contexts. A key
//! is named by its id, its ARN, an alias (`alias/app`) or an alias ARN. Ciphertexts are the
//! Crypto service's own (AES-256-GCM under the key's current version, the context
//! authenticated), so one made through the endpoint decrypts in the program and the other way
//! round; they are not AWS's ciphertext format, which no client reads. Data keys are AES-256
//! (32 bytes): `KeySpec: AES_256` or `NumberOfBytes: 32`.
//!
//! Decrypt checks `kms:Decrypt` on the key the ciphertext names, after the service has read
//! it and before anything is returned.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use mvi_core::crypto::{Crypto, KeyMetadata, KeyOrigin, KeyState};
use mvi_core::{Error, ErrorKind};
use serde_json::{Value as Json, json};

use super::json::{Caller, Input, JsonError, JsonResult};

/// Runs one KMS operation.
pub(crate) async fn call(
    crypto: &dyn Crypto,
    caller: &Caller,
    operation: &str,
    input: Json,
) -> JsonResult {
    let req = Input(input);
    match operation {
        "Encrypt" => {
            let meta = key(crypto, caller, &req, "kms:Encrypt").await?;
            let plaintext = req
                .blob("Plaintext")?
                .ok_or_else(|| JsonError::validation("Plaintext is required"))?;
            if plaintext.is_empty() {
                return Err(JsonError::validation(
                    "1 validation error detected: Value at 'plaintext' failed to satisfy \
                     constraint: Member must have length greater than or equal to 1",
                ));
            }
            let context = req.string_map("EncryptionContext")?;
            let ciphertext = crypto
                .encrypt(&meta.id, &plaintext, &context)
                .await
                .map_err(|e| error(e, &meta.id, Some(meta.state)))?;
            Ok(json!({
                "CiphertextBlob": BASE64.encode(ciphertext),
                "KeyId": caller.account.key_arn(&meta.id),
                "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
            }))
        }
        "Decrypt" => {
            let ciphertext = req
                .blob("CiphertextBlob")?
                .ok_or_else(|| JsonError::validation("CiphertextBlob is required"))?;
            let context = req.string_map("EncryptionContext")?;
            let named = match req.str("KeyId")? {
                Some(k) => Some(
                    crypto
                        .describe_key(key_name(k))
                        .await
                        .map_err(|e| error(e, k, None))?,
                ),
                None => None,
            };
            let out = crypto
                .decrypt(&ciphertext, &context)
                .await
                .map_err(|e| match e.kind() {
                    ErrorKind::InvalidArgument => JsonError::new(
                        "InvalidCiphertextException",
                        format!("the ciphertext cannot be decrypted: {}", e.message()),
                    ),
                    _ => error(e, "ciphertext", None),
                })?;
            caller.require("kms:Decrypt", &caller.account.key_arn(&out.key_id))?;
            if let Some(named) = named.filter(|m| m.id != out.key_id) {
                return Err(JsonError::new(
                    "IncorrectKeyException",
                    format!(
                        "the ciphertext was encrypted under key {}, not {}",
                        out.key_id, named.id
                    ),
                ));
            }
            Ok(json!({
                "Plaintext": BASE64.encode(out.plaintext.expose()),
                "KeyId": caller.account.key_arn(&out.key_id),
                "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
            }))
        }
        "GenerateDataKey" => {
            let meta = key(crypto, caller, &req, "kms:GenerateDataKey").await?;
            match (req.str("KeySpec")?, req.i64("NumberOfBytes")?) {
                (Some("AES_256"), None) | (None, Some(32)) => {}
                (None, None) => {
                    return Err(JsonError::validation(
                        "Please specify either number of bytes or key spec.",
                    ));
                }
                _ => {
                    return Err(JsonError::validation(
                        "this endpoint makes AES-256 data keys only: KeySpec AES_256 or \
                         NumberOfBytes 32",
                    ));
                }
            }
            let context = req.string_map("EncryptionContext")?;
            let dk = crypto
                .generate_data_key(&meta.id, &context)
                .await
                .map_err(|e| error(e, &meta.id, Some(meta.state)))?;
            Ok(json!({
                "CiphertextBlob": BASE64.encode(&dk.ciphertext),
                "Plaintext": BASE64.encode(dk.plaintext.expose()),
                "KeyId": caller.account.key_arn(&dk.key_id),
            }))
        }
        "DescribeKey" => {
            let meta = key(crypto, caller, &req, "kms:DescribeKey").await?;
            Ok(json!({ "KeyMetadata": metadata(caller, &meta) }))
        }
        other => Err(JsonError::new(
            "UnknownOperationException",
            format!("this endpoint does not serve the KMS operation {other:?}"),
        )),
    }
}

/// A key id, alias, or either's ARN, as the Crypto service names keys.
fn key_name(k: &str) -> &str {
    if !k.starts_with("arn:") {
        return k;
    }
    // arn:aws:kms:REGION:ACCOUNT:key/ID or ...:alias/NAME
    let resource = k.splitn(6, ':').nth(5).unwrap_or(k);
    resource.strip_prefix("key/").unwrap_or(resource)
}

/// The key the request names, once the caller may do `action` on it.
async fn key(
    crypto: &dyn Crypto,
    caller: &Caller,
    req: &Input,
    action: &str,
) -> Result<KeyMetadata, JsonError> {
    let named = req.required_str("KeyId")?;
    let meta = crypto
        .describe_key(key_name(named))
        .await
        .map_err(|e| error(e, named, None))?;
    caller.require(action, &caller.account.key_arn(&meta.id))?;
    Ok(meta)
}

/// KMS's answer to a Crypto error about `key`. A refused use of a key is told apart by the
/// key's state, when known: a disabled key is DisabledException, one pending deletion
/// KMSInvalidStateException.
fn error(e: Error, key: &str, state: Option<KeyState>) -> JsonError {
    match (e.kind(), state) {
        (ErrorKind::NotFound, _) => JsonError::new(
            "NotFoundException",
            format!("Key '{key}' does not exist ({})", e.message()),
        ),
        (ErrorKind::PermissionDenied, Some(KeyState::PendingDeletion))
        | (ErrorKind::PreconditionFailed, _) => {
            JsonError::new("KMSInvalidStateException", e.message())
        }
        (ErrorKind::PermissionDenied, _) => JsonError::new("DisabledException", e.message()),
        _ => JsonError::of_kind(&e),
    }
}

fn metadata(caller: &Caller, m: &KeyMetadata) -> Json {
    let state = match m.state {
        KeyState::Enabled => "Enabled",
        KeyState::Disabled => "Disabled",
        KeyState::PendingDeletion => "PendingDeletion",
    };
    let origin = match m.origin {
        KeyOrigin::Imported => "EXTERNAL",
        KeyOrigin::Generated => "AWS_KMS",
    };
    let mut out = json!({
        "AWSAccountId": caller.account.id,
        "KeyId": m.id,
        "Arn": caller.account.key_arn(&m.id),
        "CreationDate": m.created.timestamp_millis() as f64 / 1000.0,
        "Enabled": m.state == KeyState::Enabled,
        "Description": m.description,
        "KeyUsage": "ENCRYPT_DECRYPT",
        "KeyState": state,
        "Origin": origin,
        "KeyManager": "CUSTOMER",
        "KeySpec": "SYMMETRIC_DEFAULT",
        "CustomerMasterKeySpec": "SYMMETRIC_DEFAULT",
        "EncryptionAlgorithms": ["SYMMETRIC_DEFAULT"],
        "MultiRegion": false,
    });
    if let (Some(d), Some(map)) = (m.deletion_date, out.as_object_mut()) {
        map.insert(
            "DeletionDate".into(),
            json!(d.timestamp_millis() as f64 / 1000.0),
        );
    }
    out
}
