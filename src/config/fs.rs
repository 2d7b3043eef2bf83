//! The file system as configuration loading sees it: the [`Fs`] trait and
//! its implementations (the real disk, and texts held in memory).
//!
//! This module owns how a path is read, tested, globbed and identified;
//! which files to read (includes) is [`super::load`](mod@super::load)'s job, and what their
//! contents mean is [`super::validate`]'s. Both see files only through
//! [`Fs`], so that tests keep everything in memory.

use std::collections::BTreeMap;
use std::io;
use std::path::{Component, Path, PathBuf};

/// The file system as the loader sees it; a trait so tests can use memory.
pub(crate) trait Fs {
    /// The whole text of a file.
    fn read(&self, path: &Path) -> io::Result<String>;
    /// Whether something exists at `path`.
    fn exists(&self, path: &Path) -> bool;
    /// The files (not directories) matching a glob `pattern`, sorted.
    fn glob(&self, pattern: &str) -> Result<Vec<PathBuf>, String>;
    /// What identifies a file, so that each is loaded once.
    fn identity(&self, path: &Path) -> PathBuf;
}

/// The real file system.
pub(crate) struct RealFs;

impl Fs for RealFs {
    fn read(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn glob(&self, pattern: &str) -> Result<Vec<PathBuf>, String> {
        let paths = glob::glob_with(pattern, match_options()).map_err(|e| e.msg.to_owned())?;
        let mut files = Vec::new();
        for entry in paths {
            let path = entry.map_err(|e| format!("cannot read {}: {}", e.path().display(), e.error()))?;
            if !path.is_dir() {
                files.push(path);
            }
        }
        files.sort();
        Ok(files)
    }

    fn identity(&self, path: &Path) -> PathBuf {
        std::fs::canonicalize(path).unwrap_or_else(|_| normalize(path))
    }
}

/// Files held in memory, by normalized path; the directories they are in
/// are implied by their paths.
struct Texts(BTreeMap<PathBuf, String>);

impl Texts {
    fn new(texts: impl IntoIterator<Item = (PathBuf, String)>) -> Texts {
        Texts(texts.into_iter().map(|(p, t)| (normalize(&p), t)).collect())
    }

    fn read(&self, path: &Path) -> Option<String> {
        self.0.get(&normalize(path)).cloned()
    }

    fn exists(&self, path: &Path) -> bool {
        let path = normalize(path);
        self.0.keys().any(|p| p.starts_with(&path))
    }

    fn glob(&self, pattern: &str) -> Result<Vec<PathBuf>, String> {
        let pattern = glob::Pattern::new(pattern).map_err(|e| e.msg.to_owned())?;
        let pattern = glob::Pattern::new(&normalize(Path::new(pattern.as_str())).to_string_lossy())
            .map_err(|e| e.msg.to_owned())?;
        Ok(self
            .0
            .keys()
            .filter(|p| pattern.matches_path_with(p, match_options()))
            .cloned()
            .collect())
    }
}

/// Configuration files from memory (the texts a running ginx reports),
/// everything else from the real file system.
pub(crate) struct TextsFs {
    texts: Texts,
}

impl TextsFs {
    pub(crate) fn new(texts: BTreeMap<PathBuf, String>) -> TextsFs {
        TextsFs {
            texts: Texts::new(texts),
        }
    }
}

impl Fs for TextsFs {
    fn read(&self, path: &Path) -> io::Result<String> {
        match self.texts.read(path) {
            Some(text) => Ok(text),
            None => RealFs.read(path),
        }
    }

    fn exists(&self, path: &Path) -> bool {
        self.texts.exists(path) || RealFs.exists(&normalize(path))
    }

    /// Only the texts: a local file the running configuration did not
    /// include must not appear in it.
    fn glob(&self, pattern: &str) -> Result<Vec<PathBuf>, String> {
        self.texts.glob(pattern)
    }

    fn identity(&self, path: &Path) -> PathBuf {
        normalize(path)
    }
}

/// How include globs match: `*` stays within one directory and does not
/// match a leading `.` (editor backups, lock files), as in a shell.
fn match_options() -> glob::MatchOptions {
    glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: true,
    }
}

/// `path` with `.` removed and `..` applied where possible, without touching
/// the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.components().next_back(), Some(Component::Normal(_))) => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The directory a path is in, `.` for a bare file name.
pub(crate) fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        Some(_) => PathBuf::from("."),
        None => path.to_path_buf(),
    }
}

/// An in-memory [`Fs`] for the loader's and validation's tests, and for
/// [`crate::fuzzing`] (no disk I/O per input).
pub(crate) mod mem {
    use super::*;

    /// Files in memory and nothing else: a path not given does not exist.
    pub(crate) struct MemFs(Texts);

    impl MemFs {
        pub(crate) fn new(files: &[(&str, &str)]) -> MemFs {
            MemFs(Texts::new(
                files.iter().map(|(p, t)| (PathBuf::from(p), (*t).to_owned())),
            ))
        }
    }

    impl Fs for MemFs {
        fn read(&self, path: &Path) -> io::Result<String> {
            self.0
                .read(path)
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
        }

        fn exists(&self, path: &Path) -> bool {
            self.0.exists(path)
        }

        fn glob(&self, pattern: &str) -> Result<Vec<PathBuf>, String> {
            self.0.glob(pattern)
        }

        fn identity(&self, path: &Path) -> PathBuf {
            normalize(path)
        }
    }
}
