//! Crypto cases: keys, encryption bound to a context, tampering, rotation, data keys, the
//! deletion lifecycle and the audit trail.
//!
//! Every key a case makes is scheduled for deletion at its end (the shortest window, 7
//! days): keys cannot be deleted at once, on KMS or locally.

use std::sync::Arc;
use std::time::Duration;

use mvi_core::crypto::{
    AuditOutcome, AuditQuery, CreateKey, EncryptionContext, KeyOperation, KeyOrigin, KeyState,
    MAX_PLAINTEXT,
};
use mvi_core::{Crypto, ErrorKind, SecretBytes};

use crate::{Ctx, Outcome, ensure, expect_err};

/// Every Crypto case, as tests against `$target`.
#[macro_export]
macro_rules! crypto_cases {
    ($target:expr) => {
        $crate::__cases! { $target;
            crypto_encrypt_decrypt_roundtrip => $crate::crypto::encrypt_decrypt_roundtrip;
            crypto_wrong_context_fails => $crate::crypto::wrong_context_fails;
            crypto_tampered_ciphertext_fails => $crate::crypto::tampered_ciphertext_fails;
            crypto_truncated_or_garbage_fails => $crate::crypto::truncated_or_garbage_fails;
            crypto_disabled_key_refuses_and_enable_restores => $crate::crypto::disabled_key_refuses_and_enable_restores [KeyStateEnforced];
            crypto_rotation_keeps_old_ciphertext => $crate::crypto::rotation_keeps_old_ciphertext;
            crypto_import_key_roundtrip => $crate::crypto::import_key_roundtrip [KeyImport];
            crypto_alias_lookup_and_duplicate => $crate::crypto::alias_lookup_and_duplicate;
            crypto_deleted_alias_is_free_again => $crate::crypto::deleted_alias_is_free_again;
            crypto_invalid_alias_refused => $crate::crypto::invalid_alias_refused;
            crypto_unknown_key_not_found => $crate::crypto::unknown_key_not_found;
            crypto_oversize_plaintext_refused => $crate::crypto::oversize_plaintext_refused;
            crypto_data_key_roundtrip => $crate::crypto::data_key_roundtrip;
            crypto_deletion_window_bounds => $crate::crypto::deletion_window_bounds;
            crypto_pending_deletion_refuses_use => $crate::crypto::pending_deletion_refuses_use [KeyStateEnforced];
            crypto_cancel_deletion => $crate::crypto::cancel_deletion [KeyStateEnforced];
            crypto_deletion_after_window => $crate::crypto::deletion_after_window [ManualClock, KeyDeletion];
            crypto_audit_trail_records_ok_and_denied => $crate::crypto::audit_trail_records_ok_and_denied [CryptoAudit];
            crypto_persistence_across_reopen => $crate::crypto::persistence_across_reopen [Reopen, KeyImport];
            crypto_concurrent_alias_race => $crate::crypto::concurrent_alias_race;
            crypto_list_keys_shows_created => $crate::crypto::list_keys_shows_created;
        }
    };
}

/// An encryption context from pairs.
fn context(pairs: &[(&str, &str)]) -> EncryptionContext {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The crypto service of the case.
fn service(ctx: &Ctx) -> Result<Arc<dyn Crypto>, crate::Failure> {
    Ok(ctx.cloud().crypto()?.clone())
}

/// Schedules `key` for deletion with the shortest window: the end of a case.
async fn retire(crypto: &dyn Crypto, key: &str) -> Outcome {
    crypto.schedule_key_deletion(key, 7).await?;
    Ok(())
}

/// Encrypt then decrypt with the same context gives the plaintext back and names the key;
/// the ciphertext does not contain the plaintext and two encryptions differ (random nonce).
pub async fn encrypt_decrypt_roundtrip(ctx: &mut Ctx) -> Outcome {
    let crypto = service(ctx)?;
    let key = crypto.create_key(CreateKey::new("roundtrip")).await?;
    ensure!(key.state == KeyState::Enabled, "new key is {:?}", key.state);
    ensure!(
        key.origin == KeyOrigin::Generated,
        "origin {:?}",
        key.origin
    );
    ensure!(key.versions == 1, "new key has {} versions", key.versions);
    let c = context(&[("purpose", "roundtrip"), ("tenant", "42")]);
    let secret = b"the launch code is 0000, do not tell anyone";
    let a = crypto.encrypt(&key.id, secret, &c).await?;
    let b = crypto.encrypt(&key.id, secret, &c).await?;
    ensure!(
        a != b,
        "two encryptions of the same plaintext are identical"
    );
    ensure!(
        !a.windows(secret.len()).any(|w| w == secret),
        "the ciphertext contains the plaintext"
    );
    for ct in [&a, &b] {
        let got = crypto.decrypt(ct, &c).await?;
        ensure!(got.plaintext.expose() == secret, "decrypted something else");
        ensure!(
            got.key_id == key.id,
            "decrypt names {} not {}",
            got.key_id,
            key.id
        );
    }
    retire(&*crypto, &key.id).await
}

/// Decrypting with a different, missing or extended context is InvalidArgument.
pub async fn wrong_context_fails(ctx: &mut Ctx) -> Outcome {
    let crypto = service(ctx)?;
    let key = crypto.create_key(CreateKey::new("context")).await?;
    let c = context(&[("bucket", "photos"), ("object", "cat.jpg")]);
    let ct = crypto.encrypt(&key.id, b"meow", &c).await?;
    for wrong in [
        context(&[("bucket", "photos"), ("object", "dog.jpg")]),
        context(&[("bucket", "photos")]),
        context(&[]),
        context(&[("bucket", "photos"), ("object", "cat.jpg"), ("x", "y")]),
        context(&[("bucket", "photos"), ("objecT", "cat.jpg")]),
    ] {
        expect_err!(crypto.decrypt(&ct, &wrong).await, InvalidArgument);
    }
    ensure!(
        crypto.decrypt(&ct, &c).await?.plaintext.expose() == b"meow",
        "the right context no longer decrypts"
    );
    retire(&*crypto, &key.id).await
}

/// Flipping any one byte (header, nonce, body or tag) makes decrypt fail with
/// InvalidArgument.
pub async fn tampered_ciphertext_fails(ctx: &mut Ctx) -> Outcome {
    let crypto = service(ctx)?;
    let key = crypto.create_key(CreateKey::new("tamper")).await?;
    let c = context(&[("k", "v")]);
    let ct = crypto.encrypt(&key.id, b"integrity matters", &c).await?;
    let n = ct.len();
    let mut positions = vec![0, 1, 2, 5, 10, 20, 30, n / 2, n - 17, n - 16, n - 2, n - 1];
    positions.retain(|&p| p < n);
    positions.sort_unstable();
    positions.dedup();
    for p in positions {
        for mask in [0x01u8, 0x80] {
            let mut bad = ct.to_vec();
            bad[p] ^= mask;
            let err = match crypto.decrypt(&bad, &c).await {
                Ok(_) => return Err(format!("a flip at byte {p} of {n} decrypted").into()),
                Err(e) => e,
            };
            ensure!(
                err.kind() == ErrorKind::InvalidArgument,
                "a flip at byte {p} of {n}: expected InvalidArgument, got {err}"
            );
        }
    }
    ensure!(
        crypto.decrypt(&ct, &c).await?.plaintext.expose() == b"integrity matters",
        "the untouched ciphertext no longer decrypts"
    );
    retire(&*crypto, &key.id).await
}

/// Empty, short, truncated, extended and random input is InvalidArgument, never a panic.
pub async fn truncated_or_garbage_fails(ctx: &mut Ctx) -> Outcome {
    let crypto = service(ctx)?;
    let key = crypto.create_key(CreateKey::new("garbage")).await?;
    let c = context(&[]);
    let ct = crypto.encrypt(&key.id, b"some data to cut", &c).await?;
    let mut inputs: Vec<Vec<u8>> = vec![
        Vec::new(),
        vec![0],
        vec![1],
        vec![0xff; 3],
        (0..64u8).collect(),
        (0..200).map(|_| rand::random::<u8>()).collect(),
        ct[..ct.len() - 1].to_vec(),
        ct[..ct.len() / 2].to_vec(),
        ct[..1].to_vec(),
        [ct.as_ref(), b"x"].concat(),
    ];
    inputs.push(ct[1..].to_vec());
    for input in inputs {
        expect_err!(crypto.decrypt(&input, &c).await, InvalidArgument);
    }
    retire(&*crypto, &key.id).await
}

/// A disabled key refuses encrypt, decrypt and generate_data_key with PermissionDenied
/// naming the key; enabling it restores every use.
pub async fn disabled_key_refuses_and_enable_restores(ctx: &mut Ctx) -> Outcome {
    let crypto = service(ctx)?;
    let key = crypto.create_key(CreateKey::new("disable")).await?;
    let c = context(&[("a", "b")]);
    let ct = crypto.encrypt(&key.id, b"before", &c).await?;
    crypto.disable_key(&key.id).await?;
    let meta = crypto.describe_key(&key.id).await?;
    ensure!(meta.state == KeyState::Disabled, "state {:?}", meta.state);
    let err = expect_err!(crypto.encrypt(&key.id, b"x", &c).await, PermissionDenied);
    ensure!(
        err.to_string().contains(&key.id),
        "error does not name the key: {err}"
    );
    expect_err!(crypto.decrypt(&ct, &c).await, PermissionDenied);
    expect_err!(
        crypto.generate_data_key(&key.id, &c).await,
        PermissionDenied
    );
    crypto.enable_key(&key.id).await?;
    ensure!(
        crypto.describe_key(&key.id).await?.state == KeyState::Enabled,
        "not enabled again"
    );
    ensure!(
        crypto.decrypt(&ct, &c).await?.plaintext.expose() == b"before",
        "old ciphertext does not decrypt after enable"
    );
    let again = crypto.encrypt(&key.id, b"after", &c).await?;
    ensure!(
        crypto.decrypt(&again, &c).await?.plaintext.expose() == b"after",
        "new ciphertext does not decrypt"
    );
    retire(&*crypto, &key.id).await
}

/// Rotation adds a version; ciphertext of every older version still decrypts, and new
/// ciphertext decrypts too.
pub async fn rotation_keeps_old_ciphertext(ctx: &mut Ctx) -> Outcome {
    let crypto = service(ctx)?;
    let key = crypto.create_key(CreateKey::new("rotate")).await?;
    let c = context(&[("r", "1")]);
    let mut made = vec![(crypto.encrypt(&key.id, b"v1", &c).await?, b"v1".to_vec())];
    for expected in 2..=3u32 {
        let versions = crypto.rotate_key(&key.id).await?;
        ensure!(
            versions == expected,
            "rotate returned {versions}, not {expected}"
        );
        let meta = crypto.describe_key(&key.id).await?;
        ensure!(
            meta.versions == expected,
            "describe shows {} versions",
            meta.versions
        );
        let plain = format!("v{expected}").into_bytes();
        let ct = crypto.encrypt(&key.id, &plain, &c).await?;
        ensure!(
            made.iter().all(|(old, _)| old != &ct),
            "a new ciphertext repeats an old one"
        );
        made.push((ct, plain));
    }
    for (ct, plain) in &made {
        let got = crypto.decrypt(ct, &c).await?;
        ensure!(
            got.plaintext.expose() == plain.as_slice(),
            "after rotations, {:?} decrypted to something else",
            String::from_utf8_lossy(plain)
        );
        ensure!(got.key_id == key.id, "decrypt names {}", got.key_id);
    }
    retire(&*crypto, &key.id).await
}

/// An imported 32-byte key encrypts and decrypts; 31, 33 and 0 bytes are InvalidArgument.
pub async fn import_key_roundtrip(ctx: &mut Ctx) -> Outcome {
    let crypto = service(ctx)?;
    for bad in [31usize, 33, 0] {
        expect_err!(
            crypto
                .import_key(
                    CreateKey::new("bad import"),
                    SecretBytes::new(vec![9u8; bad])
                )
                .await,
            InvalidArgument
        );
    }
    let material: Vec<u8> = (0..32u8)
        .map(|b| b.wrapping_mul(37).wrapping_add(11))
        .collect();
    let key = crypto
        .import_key(
            CreateKey::new("imported"),
            SecretBytes::new(material.clone()),
        )
        .await?;
    ensure!(key.origin == KeyOrigin::Imported, "origin {:?}", key.origin);
    ensure!(key.state == KeyState::Enabled, "state {:?}", key.state);
    let c = context(&[("imported", "yes")]);
    let ct = crypto.encrypt(&key.id, b"known material", &c).await?;
    ensure!(
        !ct.windows(material.len()).any(|w| w == material.as_slice()),
        "the ciphertext contains the key material"
    );
    let got = crypto.decrypt(&ct, &c).await?;
    ensure!(
        got.plaintext.expose() == b"known material",
        "wrong plaintext"
    );
    ensure!(got.key_id == key.id, "decrypt names {}", got.key_id);
    // The same material imported again is a different key: its ciphertexts name it.
    let twin = crypto
        .import_key(CreateKey::new("twin"), SecretBytes::new(material))
        .await?;
    ensure!(twin.id != key.id, "a second import reused the id");
    let ct2 = crypto.encrypt(&twin.id, b"twin", &c).await?;
    ensure!(
        crypto.decrypt(&ct2, &c).await?.key_id == twin.id,
        "twin ciphertext names the wrong key"
    );
    retire(&*crypto, &key.id).await?;
    retire(&*crypto, &twin.id).await
}

/// A key is reachable by its alias for describe and encrypt; an alias in use is
/// AlreadyExists.
pub async fn alias_lookup_and_duplicate(ctx: &mut Ctx) -> Outcome {
    let crypto = service(ctx)?;
    let alias = format!("alias/{}", ctx.name("app-secrets"));
    let key = crypto
        .create_key(CreateKey::new("aliased").alias(&alias))
        .await?;
    ensure!(key.aliases.contains(&alias), "aliases {:?}", key.aliases);
    let by_alias = crypto.describe_key(&alias).await?;
    ensure!(by_alias.id == key.id, "alias resolves to {}", by_alias.id);
    ensure!(
        by_alias.description == "aliased",
        "description {:?}",
        by_alias.description
    );
    let c = context(&[]);
    let ct = crypto.encrypt(&alias, b"via alias", &c).await?;
    let got = crypto.decrypt(&ct, &c).await?;
    ensure!(
        got.key_id == key.id,
        "decrypt names {} not the key id",
        got.key_id
    );
    let err = expect_err!(
        crypto.create_key(CreateKey::new("dup").alias(&alias)).await,
        AlreadyExists
    );
    ensure!(
        err.to_string().contains(&alias),
        "error does not name the alias: {err}"
    );
    retire(&*crypto, &key.id).await
}

/// Malformed aliases are InvalidArgument and create nothing.
pub async fn invalid_alias_refused(ctx: &mut Ctx) -> Outcome {
    let crypto = service(ctx)?;
    let before = crypto.list_keys().await?.len();
    let long = format!("alias/{}", "a".repeat(251));
    let name = ctx.name("x");
    for alias in [
        name.clone(),
        "alias/".to_string(),
        format!("alias/aws/{name}"),
        format!("alias/{name} with spaces"),
        format!("alias/{name}!"),
        long,
    ] {
        expect_err!(
            crypto
                .create_key(CreateKey::new("bad alias").alias(&alias))
                .await,
            InvalidArgument
        );
    }
    let after = crypto.list_keys().await?.len();
    ensure!(
        after <= before,
        "a refused create left a key ({before} -> {after})"
    );
    Ok(())
}

/// Every operation on a key that does not exist is NotFound naming it.
pub async fn unknown_key_not_found(ctx: &mut Ctx) -> Outcome {
    let crypto = service(ctx)?;
    let alias = format!("alias/{}", ctx.name("nobody"));
    let id = "00000000-0000-4000-8000-000000000000";
    let c = context(&[]);
    for name in [alias.as_str(), id] {
        let err = expect_err!(crypto.describe_key(name).await, NotFound);
        ensure!(
            err.to_string().contains(name),
            "error does not name {name}: {err}"
        );
        expect_err!(crypto.encrypt(name, b"x", &c).await, NotFound);
        expect_err!(crypto.generate_data_key(name, &c).await, NotFound);
        expect_err!(crypto.disable_key(name).await, NotFound);
        expect_err!(crypto.enable_key(name).await, NotFound);
        expect_err!(crypto.rotate_key(name).await, NotFound);
        expect_err!(crypto.schedule_key_deletion(name, 7).await, NotFound);
        expect_err!(crypto.cancel_key_deletion(name).await, NotFound);
    }
    Ok(())
}

/// Plaintext over 4 KiB is InvalidArgument (use a data key); exactly 4 KiB round-trips.
pub async fn oversize_plaintext_refused(ctx: &mut Ctx) -> Outcome {
    let crypto = service(ctx)?;
    let key = crypto.create_key(CreateKey::new("size")).await?;
    let c = context(&[]);
    let err = expect_err!(
        crypto
            .encrypt(&key.id, &vec![7u8; MAX_PLAINTEXT + 1], &c)
            .await,
        InvalidArgument
    );
    ensure!(
        err.to_string().contains(&key.id),
        "error does not name the key: {err}"
    );
    let full: Vec<u8> = (0..MAX_PLAINTEXT).map(|i| (i % 251) as u8).collect();
    let ct = crypto.encrypt(&key.id, &full, &c).await?;
    ensure!(
        crypto.decrypt(&ct, &c).await?.plaintext.expose() == full.as_slice(),
        "4 KiB did not round-trip"
    );
    retire(&*crypto, &key.id).await
}

/// A data key is 32 bytes; its ciphertext decrypts to it with the same context and not with
/// another; two data keys differ.
pub async fn data_key_roundtrip(ctx: &mut Ctx) -> Outcome {
    let crypto = service(ctx)?;
    let key = crypto.create_key(CreateKey::new("envelope")).await?;
    let c = context(&[("file", "backup.tar")]);
    let dk = crypto.generate_data_key(&key.id, &c).await?;
    ensure!(
        dk.plaintext.len() == 32,
        "data key is {} bytes",
        dk.plaintext.len()
    );
    ensure!(dk.key_id == key.id, "data key names {}", dk.key_id);
    ensure!(
        !dk.ciphertext
            .windows(32)
            .any(|w| w == dk.plaintext.expose()),
        "the encrypted data key contains the data key"
    );
    let got = crypto.decrypt(&dk.ciphertext, &c).await?;
    ensure!(got.plaintext == dk.plaintext, "decrypted data key differs");
    ensure!(got.key_id == key.id, "decrypt names {}", got.key_id);
    expect_err!(
        crypto
            .decrypt(&dk.ciphertext, &context(&[("file", "other.tar")]))
            .await,
        InvalidArgument
    );
    let other = crypto.generate_data_key(&key.id, &c).await?;
    ensure!(other.plaintext != dk.plaintext, "two data keys are equal");
    retire(&*crypto, &key.id).await
}

/// The waiting period must be 7 to 30 days; the returned date is that far ahead.
pub async fn deletion_window_bounds(ctx: &mut Ctx) -> Outcome {
    let crypto = service(ctx)?;
    let key = crypto.create_key(CreateKey::new("window")).await?;
    for days in [0u32, 6, 31, 365] {
        expect_err!(
            crypto.schedule_key_deletion(&key.id, days).await,
            InvalidArgument
        );
    }
    ensure!(
        crypto.describe_key(&key.id).await?.state == KeyState::Enabled,
        "a refused schedule changed the state"
    );
    let before = ctx.now();
    let date = crypto.schedule_key_deletion(&key.id, 30).await?;
    let expected = before + chrono::Duration::days(30);
    let slack = chrono::Duration::days(1);
    ensure!(
        date >= expected - slack && date <= expected + slack,
        "deletion date {date} is not 30 days after {before}"
    );
    let meta = crypto.describe_key(&key.id).await?;
    ensure!(
        meta.state == KeyState::PendingDeletion,
        "state {:?}",
        meta.state
    );
    ensure!(
        meta.deletion_date == Some(date),
        "deletion date {:?}",
        meta.deletion_date
    );
    Ok(())
}

/// A key pending deletion refuses encrypt, decrypt and generate_data_key.
pub async fn pending_deletion_refuses_use(ctx: &mut Ctx) -> Outcome {
    let crypto = service(ctx)?;
    let key = crypto.create_key(CreateKey::new("pending")).await?;
    let c = context(&[]);
    let ct = crypto.encrypt(&key.id, b"soon gone", &c).await?;
    crypto.schedule_key_deletion(&key.id, 7).await?;
    let err = expect_err!(crypto.encrypt(&key.id, b"x", &c).await, PermissionDenied);
    ensure!(
        err.to_string().contains(&key.id),
        "error does not name the key: {err}"
    );
    expect_err!(crypto.decrypt(&ct, &c).await, PermissionDenied);
    expect_err!(
        crypto.generate_data_key(&key.id, &c).await,
        PermissionDenied
    );
    // It is still there to describe (and to rescue) until the date.
    let meta = crypto.describe_key(&key.id).await?;
    ensure!(
        meta.state == KeyState::PendingDeletion,
        "state {:?}",
        meta.state
    );
    Ok(())
}

/// Cancelling a deletion brings the key back disabled (as KMS); enabled again, it decrypts
/// what it encrypted before. Cancelling when nothing is scheduled is PreconditionFailed.
pub async fn cancel_deletion(ctx: &mut Ctx) -> Outcome {
    let crypto = service(ctx)?;
    let key = crypto.create_key(CreateKey::new("cancel")).await?;
    let c = context(&[("c", "d")]);
    let ct = crypto.encrypt(&key.id, b"rescued", &c).await?;
    expect_err!(
        crypto.cancel_key_deletion(&key.id).await,
        PreconditionFailed
    );
    crypto.schedule_key_deletion(&key.id, 10).await?;
    crypto.cancel_key_deletion(&key.id).await?;
    let meta = crypto.describe_key(&key.id).await?;
    ensure!(
        meta.state == KeyState::Disabled,
        "after cancel the key is {:?}",
        meta.state
    );
    ensure!(
        meta.deletion_date.is_none(),
        "deletion date kept: {:?}",
        meta.deletion_date
    );
    expect_err!(crypto.decrypt(&ct, &c).await, PermissionDenied);
    crypto.enable_key(&key.id).await?;
    ensure!(
        crypto.decrypt(&ct, &c).await?.plaintext.expose() == b"rescued",
        "the rescued key does not decrypt"
    );
    retire(&*crypto, &key.id).await
}

/// Once the waiting period has passed on the clock, the key is gone: describe is NotFound,
/// its ciphertext no longer decrypts, list_keys omits it, and its alias is free again.
pub async fn deletion_after_window(ctx: &mut Ctx) -> Outcome {
    let crypto = service(ctx)?;
    let alias = format!("alias/{}", ctx.name("doomed"));
    let key = crypto
        .create_key(CreateKey::new("doomed").alias(&alias))
        .await?;
    let c = context(&[]);
    let ct = crypto.encrypt(&key.id, b"last words", &c).await?;
    crypto.schedule_key_deletion(&key.id, 7).await?;
    let clock = ctx.clock();
    clock.advance(Duration::from_secs(6 * 86_400));
    let meta = crypto.describe_key(&key.id).await?;
    ensure!(
        meta.state == KeyState::PendingDeletion,
        "one day early the key is {:?}",
        meta.state
    );
    clock.advance(Duration::from_secs(86_400 + 60));
    expect_err!(crypto.describe_key(&key.id).await, NotFound);
    expect_err!(crypto.describe_key(&alias).await, NotFound);
    let err = match crypto.decrypt(&ct, &c).await {
        Ok(_) => return Err("ciphertext of a deleted key still decrypts".into()),
        Err(e) => e,
    };
    ensure!(
        matches!(err.kind(), ErrorKind::InvalidArgument | ErrorKind::NotFound),
        "decrypt under a deleted key: {err}"
    );
    let listed = crypto.list_keys().await?;
    ensure!(
        listed.iter().all(|k| k.id != key.id),
        "list_keys still shows the deleted key"
    );
    expect_err!(crypto.cancel_key_deletion(&key.id).await, NotFound);
    let reborn = crypto
        .create_key(CreateKey::new("reborn").alias(&alias))
        .await?;
    ensure!(reborn.id != key.id, "the new key reuses the deleted id");
    retire(&*crypto, &reborn.id).await
}

/// The audit trail records allowed and denied operations with the principal, oldest first,
/// and honours key, since and limit in queries.
pub async fn audit_trail_records_ok_and_denied(ctx: &mut Ctx) -> Outcome {
    let crypto = service(ctx)?;
    let start = ctx.now();
    let key = crypto.create_key(CreateKey::new("audited")).await?;
    let c = context(&[("who", "auditor")]);
    let ct = crypto.encrypt(&key.id, b"watched", &c).await?;
    crypto.decrypt(&ct, &c).await?;
    let _ = crypto.decrypt(&ct, &context(&[("who", "intruder")])).await;
    crypto.describe_key(&key.id).await?;
    crypto.disable_key(&key.id).await?;
    let _ = crypto.encrypt(&key.id, b"refused", &c).await;
    crypto.enable_key(&key.id).await?;
    crypto.rotate_key(&key.id).await?;
    crypto.generate_data_key(&key.id, &c).await?;
    crypto.schedule_key_deletion(&key.id, 7).await?;
    crypto.cancel_key_deletion(&key.id).await?;

    let events = crypto.audit_events(AuditQuery::key(&key.id)).await?;
    use AuditOutcome::Ok as Allowed;
    let expected = [
        (KeyOperation::Create, true),
        (KeyOperation::Encrypt, true),
        (KeyOperation::Decrypt, true),
        (KeyOperation::Decrypt, false),
        (KeyOperation::Describe, true),
        (KeyOperation::Disable, true),
        (KeyOperation::Encrypt, false),
        (KeyOperation::Enable, true),
        (KeyOperation::Rotate, true),
        (KeyOperation::GenerateDataKey, true),
        (KeyOperation::ScheduleDeletion, true),
        (KeyOperation::CancelDeletion, true),
    ];
    let got: Vec<(KeyOperation, bool)> = events
        .iter()
        .map(|e| (e.operation, e.outcome == Allowed))
        .collect();
    ensure!(
        got == expected,
        "audit trail {got:?}, expected {expected:?}"
    );
    let principal = &events[0].principal;
    ensure!(!principal.is_empty(), "empty principal");
    for (e, next) in events.iter().zip(events.iter().skip(1)) {
        ensure!(
            e.time <= next.time,
            "events out of order: {e:?} then {next:?}"
        );
    }
    for e in &events {
        ensure!(e.key_id == key.id, "event of another key: {e:?}");
        ensure!(&e.principal == principal, "principal changed: {e:?}");
        ensure!(
            e.time >= start - chrono::Duration::minutes(5),
            "event before the case: {e:?}"
        );
        if let AuditOutcome::Denied(reason) = &e.outcome {
            ensure!(!reason.is_empty(), "denied without a reason: {e:?}");
        }
    }

    let last = crypto
        .audit_events(AuditQuery::key(&key.id).limit(2))
        .await?;
    ensure!(
        last.len() == 2 && last[..] == events[events.len() - 2..],
        "limit(2) gave {last:?}"
    );
    let future = ctx.now() + chrono::Duration::days(1);
    let none = crypto
        .audit_events(AuditQuery::key(&key.id).since(future))
        .await?;
    ensure!(none.is_empty(), "since(tomorrow) gave {none:?}");

    // An unknown key is audited as named, denied.
    let unknown = format!("alias/{}", ctx.name("ghost"));
    let _ = crypto.encrypt(&unknown, b"x", &c).await;
    let ghost = crypto.audit_events(AuditQuery::key(&unknown)).await?;
    ensure!(
        ghost.len() == 1
            && ghost[0].operation == KeyOperation::Encrypt
            && matches!(ghost[0].outcome, AuditOutcome::Denied(_)),
        "the denied encrypt under an unknown key was audited as {ghost:?}"
    );
    crypto.enable_key(&key.id).await?;
    retire(&*crypto, &key.id).await
}

/// Keys, aliases, versions, states and the audit trail survive a restart; old ciphertext
/// still decrypts.
pub async fn persistence_across_reopen(ctx: &mut Ctx) -> Outcome {
    let crypto = service(ctx)?;
    let alias = format!("alias/{}", ctx.name("durable"));
    let key = crypto
        .create_key(CreateKey::new("durable").alias(&alias))
        .await?;
    let c = context(&[("p", "q")]);
    let v1 = crypto.encrypt(&alias, b"version one", &c).await?;
    crypto.rotate_key(&key.id).await?;
    let v2 = crypto.encrypt(&alias, b"version two", &c).await?;
    let dk = crypto.generate_data_key(&key.id, &c).await?;
    let imported = crypto
        .import_key(
            CreateKey::new("imported durable"),
            SecretBytes::new(vec![5u8; 32]),
        )
        .await?;
    let vi = crypto.encrypt(&imported.id, b"imported", &c).await?;
    crypto.disable_key(&imported.id).await?;
    let audit_before = crypto.audit_events(AuditQuery::key(&key.id)).await;
    drop(crypto);

    ctx.reopen().await?;
    let crypto = service(ctx)?;
    let meta = crypto.describe_key(&alias).await?;
    ensure!(meta.id == key.id, "the alias now names {}", meta.id);
    ensure!(
        meta.versions == 2,
        "versions {} after reopen",
        meta.versions
    );
    ensure!(meta.state == KeyState::Enabled, "state {:?}", meta.state);
    for (ct, plain) in [(&v1, &b"version one"[..]), (&v2, &b"version two"[..])] {
        let got = crypto.decrypt(ct, &c).await?;
        ensure!(
            got.plaintext.expose() == plain,
            "wrong plaintext after reopen"
        );
    }
    ensure!(
        crypto.decrypt(&dk.ciphertext, &c).await?.plaintext == dk.plaintext,
        "data key differs after reopen"
    );
    ensure!(
        crypto.describe_key(&imported.id).await?.state == KeyState::Disabled,
        "the imported key is no longer disabled"
    );
    crypto.enable_key(&imported.id).await?;
    ensure!(
        crypto.decrypt(&vi, &c).await?.plaintext.expose() == b"imported",
        "imported key lost its material"
    );
    // Where the backend keeps an audit trail, it outlives the restart.
    match audit_before {
        Ok(before) => {
            let after = crypto.audit_events(AuditQuery::key(&key.id)).await?;
            ensure!(
                after.len() > before.len() && after[..before.len()] == before[..],
                "the audit trail did not survive the reopen ({} events before, {} after)",
                before.len(),
                after.len()
            );
        }
        Err(e) if e.kind() == ErrorKind::Unsupported => {}
        Err(e) => return Err(e.into()),
    }
    let fresh = crypto.create_key(CreateKey::new("after reopen")).await?;
    ensure!(
        fresh.id != key.id && fresh.id != imported.id,
        "an id was reused"
    );
    for id in [&key.id, &imported.id, &fresh.id] {
        retire(&*crypto, id).await?;
    }
    Ok(())
}

/// Sixteen tasks race to create a key with the same alias: exactly one wins, the others
/// get AlreadyExists.
pub async fn concurrent_alias_race(ctx: &mut Ctx) -> Outcome {
    let crypto = service(ctx)?;
    let alias = format!("alias/{}", ctx.name("race"));
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let crypto = crypto.clone();
            let alias = alias.clone();
            tokio::spawn(async move {
                crypto
                    .create_key(CreateKey::new(format!("racer {i}")).alias(alias))
                    .await
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        match task.await? {
            Ok(meta) => winners.push(meta),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("a racer failed with {e}").into()),
        }
    }
    ensure!(winners.len() == 1, "{} racers won", winners.len());
    let owner = crypto.describe_key(&alias).await?;
    ensure!(
        owner.id == winners[0].id,
        "the alias names {} not the winner",
        owner.id
    );
    retire(&*crypto, &owner.id).await
}

/// list_keys shows keys just created, with their metadata.
pub async fn list_keys_shows_created(ctx: &mut Ctx) -> Outcome {
    let crypto = service(ctx)?;
    let a = crypto.create_key(CreateKey::new("listed a")).await?;
    let b = crypto.create_key(CreateKey::new("listed b")).await?;
    crypto.disable_key(&b.id).await?;
    let keys = crypto.list_keys().await?;
    let find = |id: &str| keys.iter().find(|k| k.id == id);
    let got_a = find(&a.id).ok_or("list_keys misses the first key")?;
    let got_b = find(&b.id).ok_or("list_keys misses the second key")?;
    ensure!(
        got_a.description == "listed a",
        "description {:?}",
        got_a.description
    );
    ensure!(got_b.state == KeyState::Disabled, "state {:?}", got_b.state);
    retire(&*crypto, &a.id).await?;
    retire(&*crypto, &b.id).await
}

/// Deleting an alias frees its name (the key stays, by id); an alias nobody has is NotFound;
/// a name that is not an alias is InvalidArgument.
pub async fn deleted_alias_is_free_again(ctx: &mut Ctx) -> Outcome {
    let crypto = service(ctx)?;
    let alias = format!("alias/{}", ctx.name("freed"));
    let first = crypto
        .create_key(CreateKey::new("first").alias(&alias))
        .await?;
    crypto.delete_alias(&alias).await?;
    expect_err!(crypto.describe_key(&alias).await, NotFound);
    ensure!(
        crypto.describe_key(&first.id).await?.aliases.is_empty(),
        "the key still lists the alias"
    );
    let second = crypto
        .create_key(CreateKey::new("second").alias(&alias))
        .await?;
    ensure!(
        crypto.describe_key(&alias).await?.id == second.id,
        "the alias does not name the new key"
    );
    expect_err!(
        crypto.delete_alias("alias/conf-nobody-has-this").await,
        NotFound
    );
    expect_err!(crypto.delete_alias("not-an-alias").await, InvalidArgument);
    retire(&*crypto, &first.id).await?;
    retire(&*crypto, &second.id).await
}
