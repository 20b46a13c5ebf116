//! Paths inside the package, found when the program runs.
//!
//! `env!("CARGO_MANIFEST_DIR")` is fixed when the binary is built, and a build cache shared
//! by two clones (CI's and a developer's) can hand one clone a binary built in the other, whose
//! folder may be gone. Cargo also sets the variable for the programs it runs (`cargo test`,
//! `cargo run`, `cargo bench`), so that value wins; the built-in one is the fallback.

use std::path::PathBuf;

/// `rel` (e.g. `"examples/webapp"`) inside the folder of the package's `Cargo.toml`.
#[allow(dead_code)]
pub fn package_path(rel: &str) -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .join(rel)
}
