//! The order-preserving byte encoding of item keys.
//!
//! redb orders keys bytewise, so an item's key is stored as bytes that sort the way DynamoDB
//! orders key values: `enc(partition) ++ enc(sort)`. Every encoding is self-delimiting, so all
//! items of one partition share the prefix `enc(partition)` and form one contiguous range, and
//! within it they are ordered by sort key. The type of each part is fixed by the table's
//! schema, so no type tag is needed.
//!
//! - Strings (UTF-8 bytes) and binary: the bytes with `0x00` escaped as `0x00 0xFF`, then the
//!   terminator `0x00 0x01`. The terminator sorts below an escaped zero, which sorts below any
//!   other byte, so a shorter value sorts before any longer value it is a prefix of, as in
//!   plain bytewise order; and no encoding is a prefix of another's (`"a"` is `61 00 01`,
//!   `"a\0"` is `61 00 FF 00 01`), which is what keeps a partition's items contiguous.
//! - Numbers: ten bytes. The first eight are the number rounded to the nearest `f64`, with the
//!   usual sign flip (negative: all bits inverted; positive: sign bit set) so the bytes sort
//!   numerically. The last two hold the exact remainder `n - round(n)`, which is non-zero only
//!   for integers beyond 2^53 (at most ±1024 there). Rounding is monotonic, so comparing the
//!   rounded part first and the remainder second orders every `i64` and every finite `f64`
//!   exactly: `2^53 + 1` and `2^53` stay distinct keys, and `Int(1)` and `Float(1.0)` are the
//!   same key, as `1` and `1.0` are the same DynamoDB number. `-0.0` is stored as `0`.

use std::ops::Bound;

use mvi_core::kv::{Key, Value};

/// The terminator after a string or binary value.
const END: [u8; 2] = [0x00, 0x01];
/// Follows an escaped `0x00` inside a value.
const ESCAPED_ZERO: u8 = 0xFF;

/// The stored key of an item: `enc(partition) ++ enc(sort)`.
pub(super) fn item_key(key: &Key) -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    encode(&mut out, &key.partition);
    if let Some(sort) = &key.sort {
        encode(&mut out, sort);
    }
    out
}

/// The prefix every item of partition `partition` starts with.
pub(super) fn partition_prefix(partition: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(24);
    encode(&mut out, partition);
    out
}

/// Appends the encoding of a key value. Callers have checked it is a string, binary or
/// finite number (the schema checks); any other value encodes as nothing.
pub(super) fn encode(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Str(s) => encode_bytes(out, s.as_bytes()),
        Value::Bytes(b) => encode_bytes(out, b),
        Value::Int(i) => encode_int(out, *i),
        Value::Float(f) => encode_number(out, *f, 0),
        _ => {}
    }
}

/// Appends the escaped bytes of a string or binary value *without* the terminator: the
/// prefix shared by every value that begins with `prefix` (for `BeginsWith`).
pub(super) fn encode_prefix(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Str(s) => escape(out, s.as_bytes()),
        Value::Bytes(b) => escape(out, b),
        _ => {}
    }
}

fn encode_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    escape(out, bytes);
    out.extend_from_slice(&END);
}

fn escape(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        out.push(b);
        if b == 0 {
            out.push(ESCAPED_ZERO);
        }
    }
}

fn encode_int(out: &mut Vec<u8>, i: i64) {
    // `as f64` rounds to nearest. The rounded value is an integer within [-2^63, 2^63], so
    // it converts to i128 exactly and the remainder is at most half an ulp (<= 1024).
    let rounded = i as f64;
    let remainder = i128::from(i) - rounded as i128;
    let remainder =
        i16::try_from(remainder).unwrap_or(if remainder < 0 { i16::MIN } else { i16::MAX });
    encode_number(out, rounded, remainder);
}

fn encode_number(out: &mut Vec<u8>, rounded: f64, remainder: i16) {
    // -0.0 and 0.0 are the same number.
    let rounded = if rounded == 0.0 { 0.0 } else { rounded };
    let bits = rounded.to_bits();
    let sortable = if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    };
    out.extend_from_slice(&sortable.to_be_bytes());
    out.extend_from_slice(&((remainder as u16) ^ 0x8000).to_be_bytes());
}

/// The smallest key greater than every key starting with `prefix` (`Unbounded` if none).
pub(super) fn prefix_end(prefix: &[u8]) -> Bound<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Bound::Excluded(end);
        }
    }
    Bound::Unbounded
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: impl Into<Value>) -> Vec<u8> {
        let mut out = Vec::new();
        encode(&mut out, &v.into());
        out
    }

    #[test]
    fn numbers_sort_numerically_and_exactly() {
        let two_53 = 1_i64 << 53;
        let ordered = [
            Value::Float(-1e300),
            Value::Int(i64::MIN),
            Value::Int(-(two_53 + 1)),
            Value::Float(-(two_53 as f64)),
            Value::Int(-2),
            Value::Float(-1.5),
            Value::Int(-1),
            Value::Float(-0.25),
            Value::Int(0),
            Value::Float(1e-300),
            Value::Float(0.5),
            Value::Int(1),
            Value::Float(1.5),
            Value::Int(2),
            Value::Float(two_53 as f64),
            Value::Int(two_53 + 1),
            Value::Float((two_53 + 2) as f64),
            Value::Int(i64::MAX - 1),
            Value::Int(i64::MAX),
            Value::Float(9_223_372_036_854_775_808.0),
            Value::Float(1e300),
        ];
        for pair in ordered.windows(2) {
            let (a, b) = (enc(pair[0].clone()), enc(pair[1].clone()));
            assert!(a < b, "{:?} should sort before {:?}", pair[0], pair[1]);
            assert_eq!(
                pair[0].key_cmp(&pair[1]),
                Some(std::cmp::Ordering::Less),
                "key_cmp {:?} {:?}",
                pair[0],
                pair[1]
            );
        }
    }

    #[test]
    fn equal_numbers_share_one_key() {
        assert_eq!(enc(1_i64), enc(1.0_f64));
        assert_eq!(enc(0_i64), enc(-0.0_f64));
        assert_eq!(enc(1_i64 << 60), enc((1_i64 << 60) as f64));
        assert_ne!(enc((1_i64 << 60) + 1), enc((1_i64 << 60) as f64));
    }

    #[test]
    fn strings_sort_bytewise_and_partitions_are_contiguous() {
        let ordered = ["a", "a\0", "a\0\0", "a\u{1}", "ab", "b", "\u{ff}"];
        for pair in ordered.windows(2) {
            assert!(enc(pair[0]) < enc(pair[1]), "{pair:?}");
        }
        // Every key of partition "a" lies in [enc("a"), prefix_end(enc("a"))), and no key of
        // another partition does.
        let p = enc("a");
        let end = match prefix_end(&p) {
            Bound::Excluded(e) => e,
            other => panic!("{other:?}"),
        };
        let in_a = item_key(&Key::with_sort("a", "zzz"));
        assert!(in_a >= p && in_a < end);
        for other in ["a\0", "ab", "\u{0}"] {
            let k = item_key(&Key::with_sort(other, "x"));
            assert!(!(k >= p && k < end), "{other:?} leaks into partition a");
        }
    }

    #[test]
    fn prefix_end_carries_over_ff() {
        assert_eq!(prefix_end(&[1, 0xFF]), Bound::Excluded(vec![2]));
        assert_eq!(prefix_end(&[0xFF, 0xFF]), Bound::Unbounded);
    }
}
