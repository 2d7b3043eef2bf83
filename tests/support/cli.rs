//! The `ginx` binary as a command run to its end: `--check`, `schema`,
//! `--version`, and the files it reads.
//!
//! This module owns building the command ([`ginx_cli`]) and the directories
//! of configuration files the tests hand it. A ginx that keeps running and
//! serves is [`super::ginx`]'s, which starts it with the same [`ginx_cli`].

use std::path::Path;
use std::process::Command;

/// A command for the `ginx` binary built for these tests.
pub fn ginx_cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ginx"))
}

/// Run `ginx ARGS` in `dir`; (exit code, stdout, stderr). The exit code is
/// -1 when ginx was killed by a signal.
pub fn run_ginx(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = ginx_cli().current_dir(dir).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Run `ginx --check` on a directory's ginx.toml; (exit code, stdout, stderr).
pub fn check(dir: &Path) -> (i32, String, String) {
    run_ginx(dir, &["--check", "-c", "ginx.toml"])
}

/// A temporary directory holding `files`: (path relative to it, text).
pub fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        write_file(&dir.path().join(path), text);
    }
    dir
}

/// Write `text` to `path`, creating the directories on the way.
pub fn write_file(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, text).unwrap();
}
