//! Every fuzz target's corpus (`fuzz/corpus/<target>/`), replayed through
//! the code the fuzzers run (`fuzz/src/targets.rs`, included here), so that
//! a crash found once stays fixed. Fast: no process, no socket, no disk but
//! the corpus files; fuzz/README.md says how to grow the corpus.

#[path = "../fuzz/src/targets.rs"]
mod targets;

use std::path::Path;

/// Runs `target` on every file of its corpus, naming the file that fails;
/// returns how many files `run` says went all the way through.
fn replay(target: &str, run: fn(&[u8]) -> bool) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a readable corpus directory").path())
        .collect();
    files.sort();
    // A corpus that went missing would make this test pass on nothing.
    assert!(files.len() >= 4, "{}: only {} files", dir.display(), files.len());
    let mut through = 0;
    let count = files.len();
    for file in files {
        let data = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        match std::panic::catch_unwind(|| run(&data)) {
            Ok(deep) => through += usize::from(deep),
            Err(_) => panic!("fuzz target `{target}` fails on {}", file.display()),
        }
    }
    // Seen with --nocapture: how deep the corpus reaches.
    eprintln!("{target}: {through} of {count} files went all the way through");
    through
}

#[test]
fn config_bytes_corpus() {
    replay("config_bytes", |data| {
        targets::config_bytes(data);
        true
    });
}

#[test]
fn config_toml_corpus() {
    // The grammar must reach the table build, not only validation's errors.
    assert!(
        replay("config_toml", targets::config_toml) > 0,
        "no accepted configuration"
    );
}

#[test]
fn routing_corpus() {
    // Requests hyper would refuse are not compared: some must be.
    assert!(replay("routing", targets::routing) > 0, "no request compared");
}

#[test]
fn headers_corpus() {
    replay("headers", |data| {
        targets::headers(data);
        true
    });
}
