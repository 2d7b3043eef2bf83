//! Fuzz target `config_bytes`: see fuzz/README.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ginx_fuzz::config_bytes(data));
