//! Listing keys by prefix, grouped by a delimiter, one page at a time (S3's ListObjectsV2).
//!
//! Objects are stored under (bucket, key) in key order, so a page is a range scan. When a
//! key falls under a common prefix (`photos/2024/` for delimiter `/`), the prefix is listed
//! once and the scan jumps past every key that shares it, to the prefix's successor, so a
//! prefix grouping a million keys costs one seek, not a million reads.
//!
//! The continuation token is the key the next page starts from (hex-encoded): the successor
//! of the last key listed, or of the last common prefix, so no prefix is listed twice.

use mvi_core::{Op, Result};
use redb::ReadOnlyTable;

use super::writer::META;
use crate::storage::db_error;

/// One page, still encoded: (key, record) pairs, common prefixes, the next page's token.
pub(super) struct RawPage {
    pub objects: Vec<(String, Vec<u8>)>,
    pub common_prefixes: Vec<String>,
    pub next: Option<String>,
}

/// A listing request, checked.
pub(super) struct Query<'a> {
    pub bucket: &'a str,
    pub prefix: &'a str,
    /// `None` if no delimiter (or an empty one) was given.
    pub delimiter: Option<&'a str>,
    pub max_keys: usize,
    /// Where the page starts, decoded from the continuation token.
    pub start: Option<String>,
}

/// Encodes where a page starts as an opaque token.
fn encode_token(start: &str) -> String {
    hex::encode(start)
}

/// Decodes a token made by [`encode_token`]; `None` if it is not one.
pub(super) fn decode_token(token: &str) -> Option<String> {
    String::from_utf8(hex::decode(token).ok()?).ok()
}

/// The smallest string greater than every string that starts with `s`, if there is one:
/// `s` with its last character incremented (dropping trailing `char::MAX`es). UTF-8 orders
/// bytes as it orders code points, so this holds for redb's byte-wise string order.
fn successor(s: &str) -> Option<String> {
    let mut chars: Vec<char> = s.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last as u32 + 1 {
            0xD800 => Some('\u{E000}'),
            n => char::from_u32(n),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// The smallest string greater than `s`.
fn after(s: &str) -> String {
    format!("{s}\0")
}

/// One page of `q` from `objects`.
pub(super) fn page(
    op: Op,
    objects: &ReadOnlyTable<(&'static str, &'static str), &'static [u8]>,
    q: &Query<'_>,
) -> Result<RawPage> {
    let db = |e: redb::StorageError| db_error(op, META, e);
    let mut out = RawPage {
        objects: Vec::new(),
        common_prefixes: Vec::new(),
        next: None,
    };
    if q.max_keys == 0 {
        return Ok(out);
    }
    // Where the scan starts: the token's key, but never before the prefix.
    let mut from = match &q.start {
        Some(start) if start.as_str() > q.prefix => start.clone(),
        _ => q.prefix.to_owned(),
    };
    let mut listed = 0;
    'scan: loop {
        let range = objects.range((q.bucket, from.as_str())..).map_err(db)?;
        for entry in range {
            let (k, v) = entry.map_err(db)?;
            let (bucket, key) = k.value();
            if bucket != q.bucket || !key.starts_with(q.prefix) {
                // Keys sharing the prefix are contiguous: the listing is over.
                break 'scan;
            }
            if listed == q.max_keys {
                // One more entry exists: this page is full and another follows.
                out.next = Some(encode_token(&from));
                break 'scan;
            }
            let group = q.delimiter.and_then(|d| {
                key[q.prefix.len()..]
                    .find(d)
                    .map(|at| &key[..q.prefix.len() + at + d.len()])
            });
            match group {
                Some(common) => {
                    out.common_prefixes.push(common.to_owned());
                    listed += 1;
                    match successor(common) {
                        // Skip every key under this prefix and scan on from there.
                        Some(next) => {
                            from = next;
                            continue 'scan;
                        }
                        // Every greater key starts with `common`: nothing else to list.
                        None => break 'scan,
                    }
                }
                None => {
                    out.objects.push((key.to_owned(), v.value().to_vec()));
                    listed += 1;
                    from = after(key);
                }
            }
        }
        break;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successor_bounds_every_extension() {
        assert_eq!(successor("a/").as_deref(), Some("a0"));
        assert_eq!(successor("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(successor("\u{D7FF}").as_deref(), Some("\u{E000}"));
        assert_eq!(successor("\u{10FFFF}"), None);
        assert_eq!(successor(""), None);
    }

    #[test]
    fn tokens_roundtrip_and_reject_garbage() {
        assert_eq!(
            decode_token(&encode_token("a/b\0")).as_deref(),
            Some("a/b\0")
        );
        assert_eq!(decode_token("zz"), None);
        assert_eq!(decode_token("ff"), None);
    }
}
