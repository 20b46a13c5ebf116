//! Sticky percentage buckets, exactly as Unleash computes them: MurmurHash3 (x86, 32-bit) of
//! `"<group>:<id>"` with seed 0, modulo 100, plus 1 — a number from 1 to 100 that is the same
//! for the same id and group in every Unleash SDK, so a rollout of 5 % holds the same users
//! here as there.
//!
//! The hash is written out here (it is 30 lines) rather than taken from a crate: it is on the
//! hot path of every evaluation, and the crates that have it hash from an `io::Read`. It is
//! checked against the vectors of Unleash's SDKs and the reference implementation's.

/// MurmurHash3 x86 32-bit of `data` with `seed` (Austin Appleby's reference algorithm).
pub fn murmur3_x86_32(data: &[u8], seed: u32) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mut h = seed;
    let mut blocks = data.chunks_exact(4);
    for b in &mut blocks {
        let mut k = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h ^= k;
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        let mut k = 0u32;
        for (i, byte) in tail.iter().enumerate() {
            k |= u32::from(*byte) << (8 * i);
        }
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h ^= k;
    }
    // The length is mixed in modulo 2^32, as the reference does.
    h ^= data.len() as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

/// The bucket (1 to 100) of `id` in `group`: Unleash's `normalizedStrategyValue(id, group)`.
pub fn bucket(group: &str, id: &str) -> u32 {
    // "group:id" without an allocation for the usual short ids.
    let len = group.len() + 1 + id.len();
    let mut stack = [0u8; 256];
    let mut heap = Vec::new();
    let buf: &mut [u8] = if len <= stack.len() {
        &mut stack[..len]
    } else {
        heap.resize(len, 0);
        &mut heap
    };
    buf[..group.len()].copy_from_slice(group.as_bytes());
    buf[group.len()] = b':';
    buf[group.len() + 1..].copy_from_slice(id.as_bytes());
    murmur3_x86_32(buf, 0) % 100 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vectors every Unleash SDK tests (node `util.test.ts`, go `helpers_test.go`, rust
    /// `strategy.rs`, java `StrategyUtilsTest`), and their variant-seed twins.
    #[test]
    fn unleash_vectors() {
        assert_eq!(bucket("gr1", "123"), 73);
        assert_eq!(bucket("groupX", "999"), 25);
        assert_eq!(murmur3_x86_32(b"gr1:123", 0), 538_421_172);
        assert_eq!(murmur3_x86_32(b"groupX:999", 0), 3_843_606_124);
        // Unleash's variant seed: 96 and 60 in its SDKs' tests.
        assert_eq!(murmur3_x86_32(b"gr1:123", 86_028_157) % 100 + 1, 96);
        assert_eq!(murmur3_x86_32(b"groupX:999", 86_028_157) % 100 + 1, 60);
        // client-specification 03-gradual-rollout-user-id-strategy: group AB12A at 50 %.
        assert!(bucket("AB12A", "122") <= 50);
        assert!(bucket("AB12A", "155") > 50);
    }

    /// The reference implementation's (SMHasher) known values, tails of every length.
    #[test]
    fn reference_vectors() {
        assert_eq!(murmur3_x86_32(b"", 0), 0);
        assert_eq!(murmur3_x86_32(b"", 1), 0x514e_28b7);
        assert_eq!(murmur3_x86_32(b"", 0xffff_ffff), 0x81f1_6f39);
        assert_eq!(murmur3_x86_32(&[0xff, 0xff, 0xff, 0xff], 0), 0x7629_3b50);
        assert_eq!(murmur3_x86_32(&[0x21, 0x43, 0x65, 0x87], 0), 0xf55b_516b);
        assert_eq!(murmur3_x86_32(&[0x21, 0x43, 0x65], 0), 0x7e4a_8634);
        assert_eq!(murmur3_x86_32(&[0x21, 0x43], 0), 0xa0f7_b07a);
        assert_eq!(murmur3_x86_32(&[0x21], 0), 0x7266_1cf4);
        assert_eq!(murmur3_x86_32(b"Hello, world!", 1234), 0xfaf6_cdb3);
        assert_eq!(
            murmur3_x86_32(b"The quick brown fox jumps over the lazy dog", 0x9747_b28c),
            0x2fa8_26cd
        );
    }

    /// A long id takes the allocating path and hashes the same as the bytes joined.
    #[test]
    fn long_ids() {
        let id = "x".repeat(300);
        let joined = format!("g:{id}");
        assert_eq!(
            bucket("g", &id),
            murmur3_x86_32(joined.as_bytes(), 0) % 100 + 1
        );
    }
}
