//! The harness of the decoder fuzz tests (`mod fuzz` in each module that decodes records
//! from disk): proptest gives random bytes and a cut and a flip of a real record.

use proptest::sample::Index;
use serde::de::DeserializeOwned;

/// Decodes `random`, and `real` cut at `cut` with the bit 0x20 of the byte at `flip` flipped,
/// as postcard records of `T`, in a thread with a 256 KiB stack (so a recursion shows);
/// whether no decode panicked (a refusal is fine).
pub(crate) fn postcard_decodes_or_refuses<T: DeserializeOwned>(
    random: Vec<u8>,
    mut real: Vec<u8>,
    cut: Index,
    flip: Index,
) -> bool {
    std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(move || {
            real.truncate(cut.index(real.len() + 1));
            if !real.is_empty() {
                let i = flip.index(real.len());
                real[i] ^= 0x20;
            }
            for input in [&random, &real] {
                let _ = postcard::from_bytes::<T>(input);
            }
        })
        .map(|t| t.join().is_ok())
        .unwrap_or(false)
}
