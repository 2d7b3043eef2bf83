//! The fuzz targets' bodies, one function per target, each taking the
//! fuzzer's bytes. They live in `targets.rs`, which `tests/fuzz_corpus.rs`
//! includes too, so the corpus replays through exactly this code.

mod targets;

pub use targets::{config_bytes, config_toml, headers, routing};
