//! Fuzz target `config_toml`: see fuzz/README.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ginx_fuzz::config_toml(data);
});
