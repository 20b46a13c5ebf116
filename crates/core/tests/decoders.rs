//! Every decoder of core's formats on adversarial input: random bytes, invalid UTF-8, JSON
//! nested up to 100,000 levels, truncated and bit-flipped valid encodings. Each runs on a
//! thread with a 256 KiB stack, so a recursion that depends on the input shows as a crash;
//! none may panic, and each either gives a value or a clear error.
//!
//! `cargo test -p mvi-core --test decoders` runs them as part of the test command (256 cases
//! each); `PROPTEST_CASES=100000 cargo test --release -p mvi-core --test decoders` fuzzes for
//! longer. Failing inputs are kept in `decoders.proptest-regressions` and replayed first.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use mvi_core::container::parse_cron;
use mvi_core::image::{ImageConfig, Manifest};
use mvi_core::kv::{Item, MAX_READ_DEPTH, Value};
use mvi_core::log::FilterPattern;
use mvi_core::records::{RecordFile, Replay};
use mvi_core::vpc::Cidr;
use mvi_core::{Op, Service};
use proptest::prelude::*;

const OP: Op = Op::new(Service::Backend, "fuzz");

/// Runs `f` on a thread with a 256 KiB stack; a panic or an overflow fails the test.
fn small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(f)
        .unwrap()
        .join()
        .expect("a decoder panicked or overflowed a 256 KiB stack")
}

/// JSON arrays (or objects) nested `depth` deep around `inner`.
fn nested_json(depth: usize, objects: bool, inner: &str) -> String {
    let (open, close) = if objects {
        ("{\"a\":", "}")
    } else {
        ("[", "]")
    };
    format!("{}{inner}{}", open.repeat(depth), close.repeat(depth))
}

/// Takes a value apart without recursion (a deep one would overflow in `Drop`).
fn dismantle(v: Value) {
    let mut todo = vec![v];
    while let Some(v) = todo.pop() {
        match v {
            Value::List(l) => todo.extend(l),
            Value::Map(m) => todo.extend(m.into_values()),
            _ => {}
        }
    }
}

/// Bytes that exercise a decoder: random, or a deep JSON document, possibly cut and with a
/// flipped bit.
fn adversarial() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512),
        (0usize..100_000, any::<bool>(), "[a-z0-9\"{}\\[\\],:]{0,8}")
            .prop_map(|(d, o, inner)| nested_json(d, o, &inner).into_bytes()),
        (
            proptest::collection::vec(any::<u8>(), 1..64),
            any::<prop::sample::Index>(),
            any::<prop::sample::Index>()
        )
            .prop_map(|(mut b, cut, flip)| {
                let i = flip.index(b.len());
                b[i] ^= 0x80;
                b.truncate(cut.index(b.len() + 1));
                b
            }),
    ]
}

proptest! {
    #[test]
    fn image_manifests_and_configs(bytes in adversarial()) {
        small_stack(move || {
            let _ = Manifest::from_json(OP, &bytes);
            let _ = ImageConfig::from_oci_json(OP, &bytes);
        });
    }

    #[test]
    fn kv_values_as_json_and_postcard(bytes in adversarial()) {
        small_stack(move || {
            for decoded in [
                serde_json::from_slice::<Item>(&bytes).ok(),
                postcard::from_bytes::<Item>(&bytes).ok(),
            ]
            .into_iter()
            .flatten()
            {
                for (_, v) in decoded {
                    assert!(v.depth() <= MAX_READ_DEPTH);
                    dismantle(v);
                }
            }
        });
    }

    #[test]
    fn text_rules_never_panic(text in "\\PC{0,200}", raw in proptest::collection::vec(any::<u8>(), 0..64)) {
        small_stack(move || {
            let lossy = String::from_utf8_lossy(&raw).into_owned();
            for s in [text.as_str(), lossy.as_str()] {
                let _ = Cidr::parse(OP, s);
                let _ = parse_cron(OP, "fuzz", s);
                let _ = FilterPattern::parse(OP, s);
            }
        });
    }

    /// A record file of any content opens (replaying, cutting a torn tail) or is refused
    /// (damage in the middle, left as it was); a reader never changes it.
    #[test]
    fn record_files_of_any_content(bytes in adversarial(), framed in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..6), flip in any::<prop::sample::Index>()) {
        small_stack(move || {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("r.log");
            // Valid records, then a flipped bit somewhere, then noise.
            let mut file = Vec::new();
            for p in &framed {
                mvi_core::records::frame(OP, "r", &mut file, p).unwrap();
            }
            if !file.is_empty() {
                let i = flip.index(file.len());
                file[i] ^= 0x01;
            }
            file.extend_from_slice(&bytes);
            std::fs::write(&path, &file).unwrap();
            let read = RecordFile::read(OP, &path, |_| Ok(Replay::Applied));
            assert_eq!(std::fs::read(&path).unwrap(), file, "a reader changed the file");
            match RecordFile::open(OP, &path, false, |_| Ok(Replay::Applied)) {
                Ok(f) => {
                    assert_eq!(read.ok(), Some(f.len()), "the reader and the writer disagree");
                    // Either a torn tail was cut, or the file is as it was (records, and
                    // perhaps zeros after them).
                    let now = std::fs::read(&path).unwrap();
                    assert!(now.len() as u64 == f.len() || now == file);
                }
                Err(e) => {
                    assert!(read.is_err(), "the writer refused what the reader took: {e}");
                    assert_eq!(std::fs::read(&path).unwrap(), file, "a refused file was changed");
                    assert!(e.to_string().contains(Path::new("r.log").to_str().unwrap()));
                }
            }
        });
    }
}
