//! The ciphertext format of the local Crypto service, and the AES-256-GCM sealing under it.
//!
//! ```text
//! offset  size  field
//! 0       1     format byte (0x01)
//! 1       1     n = length of the key id (1..=255)
//! 2       n     key id (UTF-8)
//! 2+n     4     key version, big-endian u32 (1 = the key's original material)
//! 6+n     12    random nonce (OS RNG)
//! 18+n    ..    AES-256-GCM ciphertext of the plaintext, then its 16-byte tag
//! ```
//!
//! The header (format byte through version) names the key material to decrypt with, so a
//! ciphertext decrypts after any number of rotations. The GCM associated data is the header
//! followed by a canonical encoding of the encryption context (the number of pairs, then each
//! key and value, sorted by key, each preceded by its length as a big-endian u64), so
//! changing a header byte, a ciphertext byte, the tag or the context makes the tag check
//! fail; nothing in a ciphertext can be altered undetected.

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce, Tag};
use mvi_core::SecretBytes;
use mvi_core::crypto::EncryptionContext;

/// The only format so far. A new layout gets a new byte; old ciphertext keeps decrypting.
pub(super) const FORMAT_V1: u8 = 0x01;
/// AES-GCM's standard nonce size.
pub(super) const NONCE_LEN: usize = 12;
/// AES-GCM's tag size.
pub(super) const TAG_LEN: usize = 16;

/// The parsed header of a ciphertext, borrowing from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Header<'a> {
    /// The key the ciphertext was made under.
    pub key_id: &'a str,
    /// Which version of the key's material.
    pub version: u32,
}

/// A ciphertext split into its parts.
#[derive(Debug)]
pub(super) struct Parsed<'a> {
    pub header: Header<'a>,
    /// The header's bytes as they appear (authenticated as associated data).
    pub header_bytes: &'a [u8],
    pub nonce: [u8; NONCE_LEN],
    pub body: &'a [u8],
    pub tag: [u8; TAG_LEN],
}

/// Why a byte string is not a ciphertext of this format (a message for InvalidArgument).
pub(super) type ParseError = &'static str;

/// Splits `ciphertext` into header, nonce, body and tag, checking every length.
pub(super) fn parse(ciphertext: &[u8]) -> Result<Parsed<'_>, ParseError> {
    let Some((&format, rest)) = ciphertext.split_first() else {
        return Err("the ciphertext is empty");
    };
    if format != FORMAT_V1 {
        return Err("not a ciphertext of this service (unknown format byte)");
    }
    let Some((&id_len, rest)) = rest.split_first() else {
        return Err("the ciphertext is truncated");
    };
    let id_len = usize::from(id_len);
    if id_len == 0 {
        return Err("the ciphertext names no key");
    }
    let (id, rest) = rest
        .split_at_checked(id_len)
        .ok_or("the ciphertext is truncated")?;
    let key_id = std::str::from_utf8(id).map_err(|_| "the ciphertext's key id is not UTF-8")?;
    let (version, rest) = rest
        .split_first_chunk::<4>()
        .ok_or("the ciphertext is truncated")?;
    let version = u32::from_be_bytes(*version);
    if version == 0 {
        return Err("the ciphertext names key version 0");
    }
    let header_len = 2 + id_len + 4;
    let header_bytes = ciphertext
        .get(..header_len)
        .ok_or("the ciphertext is truncated")?;
    let (nonce, rest) = rest
        .split_first_chunk::<NONCE_LEN>()
        .ok_or("the ciphertext is truncated")?;
    let (body, tag) = rest
        .split_last_chunk::<TAG_LEN>()
        .ok_or("the ciphertext is truncated")?;
    Ok(Parsed {
        header: Header { key_id, version },
        header_bytes,
        nonce: *nonce,
        body,
        tag: *tag,
    })
}

/// The header bytes for `key_id` and `version`. Key ids are made by the service and are
/// short ASCII; a longer one is refused rather than truncated.
fn header_bytes(key_id: &str, version: u32) -> Option<Vec<u8>> {
    let id_len = u8::try_from(key_id.len()).ok().filter(|&n| n > 0)?;
    let mut header = Vec::with_capacity(2 + key_id.len() + 4);
    header.push(FORMAT_V1);
    header.push(id_len);
    header.extend_from_slice(key_id.as_bytes());
    header.extend_from_slice(&version.to_be_bytes());
    Some(header)
}

/// The associated data: the header then the canonical encoding of `context`.
fn associated_data(header: &[u8], context: &EncryptionContext) -> Vec<u8> {
    let pairs: usize = context.iter().map(|(k, v)| 16 + k.len() + v.len()).sum();
    let mut aad = Vec::with_capacity(header.len() + 8 + pairs);
    aad.extend_from_slice(header);
    aad.extend_from_slice(&(context.len() as u64).to_be_bytes());
    // A BTreeMap iterates in key order: the encoding does not depend on insertion order.
    for (k, v) in context {
        aad.extend_from_slice(&(k.len() as u64).to_be_bytes());
        aad.extend_from_slice(k.as_bytes());
        aad.extend_from_slice(&(v.len() as u64).to_be_bytes());
        aad.extend_from_slice(v.as_bytes());
    }
    aad
}

/// What can go wrong sealing or opening (messages for the caller's error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SealError {
    /// The key id does not fit the header (never for service-made ids).
    KeyId,
    /// The key material is not 32 bytes (never for stored keys).
    Material,
    /// AES-GCM refused: the tag does not match (tampered, or wrong context).
    Aead,
}

/// Encrypts `plaintext` under `material` (version `version` of key `key_id`), bound to
/// `context`, with a fresh random nonce.
pub(super) fn seal(
    key_id: &str,
    version: u32,
    material: &SecretBytes,
    plaintext: &[u8],
    context: &EncryptionContext,
) -> Result<Vec<u8>, SealError> {
    let cipher = Aes256Gcm::new_from_slice(material.expose()).map_err(|_| SealError::Material)?;
    let header = header_bytes(key_id, version).ok_or(SealError::KeyId)?;
    let aad = associated_data(&header, context);
    let nonce: [u8; NONCE_LEN] = rand::random();
    let mut out = Vec::with_capacity(header.len() + NONCE_LEN + plaintext.len() + TAG_LEN);
    out.extend_from_slice(&header);
    out.extend_from_slice(&nonce);
    let body_start = out.len();
    out.extend_from_slice(plaintext);
    let body = out.get_mut(body_start..).ok_or(SealError::Aead)?;
    let tag = cipher
        .encrypt_in_place_detached(&Nonce::from(nonce), &aad, body)
        .map_err(|_| SealError::Aead)?;
    out.extend_from_slice(&tag);
    Ok(out)
}

/// Decrypts a parsed ciphertext with `material`, checking the tag over header, body and
/// `context`.
pub(super) fn open(
    parsed: &Parsed<'_>,
    material: &SecretBytes,
    context: &EncryptionContext,
) -> Result<SecretBytes, SealError> {
    let cipher = Aes256Gcm::new_from_slice(material.expose()).map_err(|_| SealError::Material)?;
    let aad = associated_data(parsed.header_bytes, context);
    // aes-gcm checks the tag before decrypting, so on failure `buf` still holds ciphertext;
    // on success the buffer moves, uncopied, into a zeroed-on-drop secret.
    let mut buf = parsed.body.to_vec();
    cipher
        .decrypt_in_place_detached(
            &Nonce::from(parsed.nonce),
            &aad,
            &mut buf,
            &Tag::from(parsed.tag),
        )
        .map_err(|_| SealError::Aead)?;
    Ok(SecretBytes::new(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(pairs: &[(&str, &str)]) -> EncryptionContext {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn seal_open_roundtrip_and_header() {
        let key = SecretBytes::new(vec![7u8; 32]);
        let c = ctx(&[("app", "x")]);
        let sealed = seal("key-1", 3, &key, b"hello", &c).expect("seal");
        let parsed = parse(&sealed).expect("parse");
        assert_eq!(
            parsed.header,
            Header {
                key_id: "key-1",
                version: 3
            }
        );
        assert_eq!(open(&parsed, &key, &c).expect("open").expose(), b"hello");
        assert_eq!(
            open(&parsed, &key, &ctx(&[("app", "y")])).err(),
            Some(SealError::Aead)
        );
    }

    #[test]
    fn context_encoding_is_unambiguous() {
        // "a"="bc" and "ab"="c" must not authenticate each other.
        let h = [1u8];
        assert_ne!(
            associated_data(&h, &ctx(&[("a", "bc")])),
            associated_data(&h, &ctx(&[("ab", "c")]))
        );
    }

    #[test]
    fn every_prefix_is_refused_without_panic() {
        let key = SecretBytes::new(vec![1u8; 32]);
        let sealed = seal("key-1", 1, &key, b"data", &ctx(&[])).expect("seal");
        for n in 0..sealed.len() {
            let prefix = sealed.get(..n).expect("prefix");
            if let Ok(p) = parse(prefix) {
                assert!(open(&p, &key, &ctx(&[])).is_err(), "prefix {n} opened");
            }
        }
    }
}
