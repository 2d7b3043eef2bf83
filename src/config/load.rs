//! Reading files and following includes: path -> [(path, text)] -> Config.
//!
//! Files are read depth first: a file, then each file its `include` entries
//! name (glob results sorted), each file at most once. Every file is parsed on
//! its own so that one broken file does not hide the problems of the others;
//! within a file, unknown keys are reported and skipped ([`super::recover`])
//! so that they do not hide the file's other problems either. Files are read
//! through [`super::fs::Fs`]; what they mean is [`super::validate`]'s job.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use super::error::{Error, Errors, Location};
use super::fs::{parent_dir, Fs, RealFs};
use super::raw;
use super::recover;
use super::validate::{self, Parsed};
use super::{Config, Source};

/// Characters that make an include entry a glob pattern.
const GLOB_META: [char; 3] = ['*', '?', '['];

/// A toml error (syntax, type, unknown key) as a located error, its message
/// on one line.
pub(crate) fn toml_error(path: &Path, text: &str, e: &toml::de::Error) -> Error {
    let message = e
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(": ");
    let message = suggest_field(&message).unwrap_or(message);
    match e.span() {
        Some(span) => Error::at(path, text, span, message),
        None => Error::file(path, message),
    }
}

/// serde's ``unknown field `x`, expected one of `a`, `b` `` with the closest
/// expected name put first: ``unknown field `x`: did you mean `a`? (expected
/// one of `a`, `b`)``. `None` when the message is another one or no name is
/// close.
fn suggest_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (field, expected) = rest.split_once('`')?;
    let expected = expected.strip_prefix(", ")?;
    // The names are the backquoted words: `a`, `b` or `c`.
    let names = expected.split('`').skip(1).step_by(2);
    let hint = super::suggest::did_you_mean(field, names)?;
    Some(format!("unknown field `{field}`: {hint} ({expected})"))
}

/// Load the configuration rooted at `path` from the real file system.
pub(crate) fn load(path: &Path) -> Result<Config, Errors> {
    load_with(&RealFs, path)
}

/// Load the configuration rooted at `path` from `fs`.
pub(crate) fn load_with(fs: &dyn Fs, path: &Path) -> Result<Config, Errors> {
    let mut loader = Loader {
        fs,
        seen: HashSet::new(),
        order: Vec::new(),
        parsed: Vec::new(),
        errors: Vec::new(),
        watch_dirs: Vec::new(),
        complete: true,
        skipped_in: Vec::new(),
    };
    loader.visit(path.to_path_buf());
    let parse_errors = loader.errors.len();
    let mut config = validate::validate(fs, &loader.parsed, path, loader.complete, &mut loader.errors);
    // What validation reports at the header of a table an unknown key was
    // skipped in is most likely about that key: a missing `bind` that is
    // really the misspelt `bnd`, a route shadowed for want of its `hots`.
    let mut i = parse_errors;
    while i < loader.errors.len() {
        if loader.errors[i]
            .location()
            .is_some_and(|l| loader.skipped_in.contains(l))
        {
            loader.errors.remove(i);
        } else {
            i += 1;
        }
    }
    super::error::sort(&mut config.warnings, &loader.order);
    // Validation knows the PEM files and their directories: the
    // configuration files come first.
    for dir in std::mem::take(&mut config.watch_dirs) {
        loader.watch(dir);
    }
    let mut sources: Vec<Source> = loader
        .parsed
        .into_iter()
        .map(|p| Source {
            path: p.path,
            text: p.written.unwrap_or(p.text),
            kind: crate::config::SourceKind::Config,
        })
        .collect();
    sources.append(&mut config.sources);
    if !loader.errors.is_empty() {
        let mut errors = Errors::new(loader.errors, sources, &loader.order);
        errors.warnings = config.warnings;
        return Err(errors);
    }
    config.sources = sources;
    config.watch_dirs = loader.watch_dirs;
    Ok(config)
}

struct Loader<'f> {
    fs: &'f dyn Fs,
    /// Identities of the files already visited.
    seen: HashSet<PathBuf>,
    /// Every file visited, read or not, in order: the order of errors.
    order: Vec<PathBuf>,
    /// Every file read, in order.
    parsed: Vec<Parsed>,
    errors: Vec<Error>,
    watch_dirs: Vec<PathBuf>,
    /// False once a file could not be read or parsed.
    complete: bool,
    /// The headers of the tables unknown keys were skipped in.
    skipped_in: Vec<Location>,
}

impl Loader<'_> {
    fn watch(&mut self, dir: PathBuf) {
        let mut dir: PathBuf = dir.components().filter(|c| *c != Component::CurDir).collect();
        if dir.as_os_str().is_empty() {
            dir = PathBuf::from(".");
        }
        if !self.watch_dirs.contains(&dir) {
            self.watch_dirs.push(dir);
        }
    }

    /// Read and parse `path`, then the files it includes.
    fn visit(&mut self, path: PathBuf) {
        if !self.seen.insert(self.fs.identity(&path)) {
            return;
        }
        self.order.push(path.clone());
        self.watch(parent_dir(&path));
        let text = match self.fs.read(&path) {
            Ok(text) => text,
            Err(e) => {
                self.errors
                    .push(Error::file(&path, format!("cannot read file: {e}")));
                self.complete = false;
                return;
            }
        };
        let (parsed_text, result) = recover::parse_skipping_unknown_keys(&text, |e| {
            self.errors.push(toml_error(&path, &text, e));
            let header = e.span().and_then(|span| recover::table_header(&text, span.start));
            if let Some(header) = header {
                self.skipped_in.push(Location::at(&path, &text, header));
            }
        });
        let (file, includes) = match result {
            Ok(mut file) => {
                let includes = std::mem::take(&mut file.include);
                (Some(file), includes)
            }
            Err(e) => {
                self.errors.push(toml_error(&path, &text, &e));
                self.complete = false;
                (None, raw::includes(&text))
            }
        };
        let dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
        let mut children = Vec::new();
        for entry in &includes {
            match self.expand(&dir, entry.get_ref()) {
                Ok(paths) => children.extend(paths),
                Err(message) => {
                    self.errors.push(Error::at(&path, &text, entry.span(), message));
                    self.complete = false;
                }
            }
        }
        // The parsed text is validated (same offsets); the written one is
        // the source errors are shown in and their columns counted in.
        let written = (parsed_text != text).then_some(text);
        self.parsed.push(Parsed {
            path,
            text: parsed_text,
            written,
            file,
        });
        for child in children {
            self.visit(child);
        }
    }

    /// The files an include entry of a file in `dir` names, noting the
    /// directories to watch for it.
    fn expand(&mut self, dir: &Path, entry: &str) -> Result<Vec<PathBuf>, String> {
        if entry.is_empty() {
            return Err(
                "empty include entry: remove it or give a path or glob like \"conf.d/*.toml\"".to_owned(),
            );
        }
        let joined = dir.join(entry);
        if !entry.contains(GLOB_META) {
            if self.fs.exists(&joined) {
                // Its directory is watched once it is read.
                return Ok(vec![joined]);
            }
            self.watch(parent_dir(&joined));
            return Err(format!(
                "included file {} does not exist: create it or remove it from `include` (a glob like \"conf.d/*.toml\" may match nothing)",
                joined.display()
            ));
        }
        if let Err(e) = glob::Pattern::new(entry) {
            return Err(format!(
                "invalid include pattern `{entry}`: {} at character {}",
                e.msg,
                e.pos + 1
            ));
        }
        let literal: PathBuf = Path::new(entry)
            .components()
            .take_while(|c| !c.as_os_str().to_string_lossy().contains(GLOB_META))
            .collect();
        self.watch(dir.join(literal));
        // The including file's directory is literal text, not a pattern.
        let pattern = if Path::new(entry).is_absolute() || dir.as_os_str().is_empty() {
            entry.to_owned()
        } else {
            let dir = glob::Pattern::escape(&dir.to_string_lossy());
            format!("{dir}{}{entry}", std::path::MAIN_SEPARATOR)
        };
        self.fs.glob(&pattern)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::fs::mem::MemFs;
    use crate::config::SourceKind;
    use std::io;
    use std::time::Duration;

    fn load_mem(files: &[(&str, &str)]) -> Result<Config, Errors> {
        load_with(&MemFs::new(files), Path::new(files[0].0))
    }

    fn errors(files: &[(&str, &str)]) -> Vec<String> {
        load_mem(files)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn paths(sources: &[Source]) -> Vec<&str> {
        sources.iter().map(|s| s.path.to_str().unwrap()).collect()
    }

    const WEB: &str = "[listener.web]\nbind = \"127.0.0.1:8080\"\nupstream = \"app\"\n";
    const UP: &str = "[upstream.app]\nservers = [\"127.0.0.1:9001\"]\n";

    #[test]
    fn includes_nested_sorted_and_once() {
        let cfg = load_mem(&[
            ("ginx.toml", "include = [\"conf.d/*.toml\", \"conf.d/b.toml\"]\n"),
            ("conf.d/b.toml", "include = [\"../ginx.toml\", \"sub/*.toml\"]\n"),
            ("conf.d/a.toml", WEB),
            ("conf.d/sub/up.toml", UP),
            ("conf.d/.hidden.toml", "garbage ["),
            ("conf.d/other.txt", "garbage ["),
        ])
        .unwrap();
        assert_eq!(
            paths(&cfg.sources),
            [
                "ginx.toml",
                "conf.d/a.toml",
                "conf.d/b.toml",
                "conf.d/sub/up.toml"
            ]
        );
        assert_eq!(cfg.sources[1].text, WEB);
        assert_eq!(
            cfg.watch_dirs,
            [PathBuf::from("."), "conf.d".into(), "conf.d/sub".into()]
        );
        assert_eq!(cfg.listeners.len(), 1);
        assert_eq!(cfg.upstreams["app"].servers.len(), 1);
        assert_eq!(cfg.global.shutdown_timeout, Duration::from_secs(30));
    }

    #[test]
    fn include_cycle_is_followed_once() {
        let cfg = load_mem(&[
            ("ginx.toml", "include = [\"a.toml\"]\n"),
            ("a.toml", &format!("include = [\"b.toml\"]\n{WEB}")),
            (
                "b.toml",
                &format!("include = [\"a.toml\", \"./ginx.toml\"]\n{UP}"),
            ),
        ])
        .unwrap();
        assert_eq!(paths(&cfg.sources), ["ginx.toml", "a.toml", "b.toml"]);
    }

    #[test]
    fn watch_dirs_include_unmatched_globs() {
        let cfg = load_mem(&[(
            "etc/ginx.toml",
            &format!("include = [\"conf.d/*.toml\", \"more/*/x?.toml\", \"*.extra\"]\n{WEB}{UP}"),
        )])
        .unwrap();
        assert_eq!(paths(&cfg.sources), ["etc/ginx.toml"]);
        assert_eq!(
            cfg.watch_dirs,
            [PathBuf::from("etc"), "etc/conf.d".into(), "etc/more".into()]
        );
    }

    #[test]
    fn missing_main_file() {
        let errs = load_with(&MemFs::new(&[]), Path::new("ginx.toml")).unwrap_err();
        assert_eq!(
            errs.to_string(),
            format!(
                "ginx.toml: cannot read file: {}",
                io::Error::from(io::ErrorKind::NotFound)
            )
        );
        assert!(errs.sources.is_empty());
    }

    #[test]
    fn missing_include_and_bad_glob() {
        let main = format!("include = [\n  \"conf.d/x.toml\",\n  \"conf.d/[a.toml\",\n  \"\",\n]\n{WEB}");
        assert_eq!(
            errors(&[("ginx.toml", &main)]),
            [
                "ginx.toml:2:3: included file conf.d/x.toml does not exist: create it or remove it from `include` (a glob like \"conf.d/*.toml\" may match nothing)",
                "ginx.toml:3:3: invalid include pattern `conf.d/[a.toml`: invalid range pattern at character 8",
                "ginx.toml:4:3: empty include entry: remove it or give a path or glob like \"conf.d/*.toml\"",
            ]
        );
    }

    #[test]
    fn missing_include_skips_reference_checks() {
        // `app` might be defined in the missing file: only one error.
        let main = format!("include = [\"up.toml\"]\n{WEB}");
        assert_eq!(errors(&[("ginx.toml", &main)]).len(), 1);
    }

    #[test]
    fn errors_in_several_files_reported_together() {
        let errs = load_mem(&[
            ("ginx.toml", &format!("include = [\"conf.d/*.toml\"]\n{WEB}")),
            (
                "conf.d/b.toml",
                "[upstream.app]\nservers = [\"127.0.0.1:1\"]\nconnect_timeout = \"5 parsecs\"\n",
            ),
            ("conf.d/a.toml", "[upstream.other\n"),
        ])
        .unwrap_err();
        assert_eq!(
            errs.to_string(),
            "conf.d/a.toml:1:16: invalid table header: expected `.`, `]`\n\
             conf.d/b.toml:3:19: invalid duration `5 parsecs` for `connect_timeout`: use a number with a unit, like \"250ms\", \"5s\" or \"2m\""
        );
        assert_eq!(errs.len(), 2);
        assert_eq!(
            paths(&errs.sources),
            ["ginx.toml", "conf.d/a.toml", "conf.d/b.toml"]
        );
    }

    #[test]
    fn includes_of_a_file_with_a_type_error_are_followed() {
        let errs = load_mem(&[
            ("ginx.toml", &format!("include = [\"a.toml\"]\n{WEB}{UP}")),
            (
                "a.toml",
                "include = [\"b.toml\"]\n[global]\naccess_log = \"yes\"\n",
            ),
            ("b.toml", "[global]\nlog_level = \"loud\"\n"),
        ])
        .unwrap_err();
        assert_eq!(
            errs.to_string(),
            "a.toml:3:14: invalid type: string \"yes\", expected true, false or a table like { path = \"access.log\", format = \"combined\" }\n\
             b.toml:2:13: invalid log_level `loud`: use one of trace, debug, info, warn, error"
        );
    }

    #[test]
    fn duplicate_listener_across_files_exact_position() {
        let errs = load_mem(&[
            (
                "ginx.toml",
                &format!("include = [\"conf.d/*.toml\"]\n\n{WEB}{UP}"),
            ),
            (
                "conf.d/a.toml",
                "# second\n\n[listener.web]\nbind = \"127.0.0.1:8081\"\nupstream = \"app\"\n",
            ),
        ])
        .unwrap_err();
        assert_eq!(
            errs.to_string(),
            "conf.d/a.toml:3:1: listener `web` is already defined at ginx.toml:3:1: rename one of them or remove it"
        );
    }

    #[test]
    fn pem_files_are_sources_and_their_directories_watched() {
        let cert = rcgen::generate_simple_self_signed(vec!["a.example.com".into()]).unwrap();
        let (pem, key) = (cert.cert.pem(), cert.signing_key.serialize_pem());
        let web = "[listener.web]\nbind = \"127.0.0.1:443\"\nupstream = \"app\"\ntls = { cert = \"../certs/a.pem\", key = \"../certs/a.key\" }\n";
        let cfg = load_mem(&[
            ("etc/ginx.toml", &format!("include = [\"conf.d/*.toml\"]\n{UP}")),
            ("etc/conf.d/web.toml", web),
            ("etc/certs/a.pem", &pem),
            ("etc/certs/a.key", &key),
        ])
        .unwrap();
        assert_eq!(
            paths(&cfg.sources),
            [
                "etc/ginx.toml",
                "etc/conf.d/web.toml",
                "etc/conf.d/../certs/a.pem",
                "etc/conf.d/../certs/a.key"
            ]
        );
        let kinds: Vec<SourceKind> = cfg.sources.iter().map(|s| s.kind).collect();
        assert_eq!(
            kinds,
            [
                SourceKind::Config,
                SourceKind::Config,
                SourceKind::Pem,
                SourceKind::Pem
            ]
        );
        assert_eq!(
            cfg.watch_dirs,
            [
                PathBuf::from("etc"),
                "etc/conf.d".into(),
                "etc/conf.d/../certs".into()
            ]
        );
    }

    #[test]
    fn real_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        std::fs::create_dir(dir.join("conf.d")).unwrap();
        std::fs::create_dir(dir.join("conf.d/sub.toml")).unwrap(); // a directory: skipped
        std::fs::write(
            dir.join("ginx.toml"),
            "include = [\"conf.d/*.toml\", \"later/*.toml\"]\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("conf.d/a.toml"),
            format!("include = [\"../ginx.toml\"]\n{WEB}"),
        )
        .unwrap();
        std::fs::write(dir.join("conf.d/b.toml"), UP).unwrap();
        let main = dir.join("ginx.toml");
        let cfg = super::super::load(&main).unwrap();
        let sources: Vec<PathBuf> = cfg.sources.iter().map(|s| s.path.clone()).collect();
        assert_eq!(
            sources,
            [main.clone(), dir.join("conf.d/a.toml"), dir.join("conf.d/b.toml")]
        );
        assert_eq!(
            cfg.watch_dirs,
            [dir.to_path_buf(), dir.join("conf.d"), dir.join("later")]
        );

        std::fs::write(dir.join("conf.d/b.toml"), "[upstream.app]\nservers = []\n").unwrap();
        let errs = super::super::load(&main).unwrap_err();
        assert_eq!(
            errs.to_string(),
            format!(
                "{}:2:11: upstream `app` has no servers: add servers = [\"HOST:PORT\"]",
                dir.join("conf.d/b.toml").display()
            )
        );
        assert_eq!(errs.sources.len(), 3);
        assert_eq!(errs.sources[2].text, "[upstream.app]\nservers = []\n");

        let missing = dir.join("nope.toml");
        let errs = super::super::load(&missing).unwrap_err();
        assert_eq!(
            errs.to_string(),
            format!(
                "{}: cannot read file: No such file or directory (os error 2)",
                missing.display()
            )
        );
    }

    #[test]
    fn unknown_keys_do_not_hide_the_other_errors() {
        let main = "[global]\nlog_levl = \"info\"\n\n[listener.web]\nbind = \"127.0.0.1:8080\"\nupstream = \"ap\"\n\n[[listener.web.route]]\npath = \"/api/\"\nupstream = \"app\"\n\n[[listener.web.route]]\npath = \"/api/\"\nupstream = \"app\"\n\n[upstream.app]\nservers = [\"127.0.0.1:9001\"]\n";
        assert_eq!(
            errors(&[("ginx.toml", main)]),
            [
                "ginx.toml:2:1: unknown field `log_levl`: did you mean `log_level`? (expected one of `log_level`, `log_format`, `access_log`, `shutdown_delay`, `watch`, `send_timeout`, `shutdown_timeout`, `header_read_timeout`, `resolver`, `resolve_min`, `resolve_max`, `body_read_timeout`, `min_upload_rate`, `max_connections`, `pid_file`)",
                "ginx.toml:6:12: unknown upstream `ap`: did you mean `app`?",
                "ginx.toml:12:1: this route can never match: the route at ginx.toml:8:1 matches the same path `/api/` (any host) and comes first; remove one of them or change its host or path",
            ]
        );
    }

    #[test]
    fn several_unknown_keys_in_one_file_all_reported() {
        let main = "[listener.web]\nbind = \"127.0.0.1:8080\"\nupstreem = \"app\"\n[upstream.app]\nservers = [\"127.0.0.1:9001\", { addr = \"127.0.0.1:9002\", wieght = 3, backup = true }]\nretrys = 2\n";
        let errs = errors(&[("ginx.toml", main)]);
        assert_eq!(
            errs,
            [
                "ginx.toml:3:1: unknown field `upstreem`: did you mean `upstream`? (expected one of `bind`, `upstream`, `route`, `tls`, `max_connections`, `max_connections_per_ip`, `max_requests_per_connection`, `max_request_body`, `max_request_headers`, `max_request_line`, `max_h2_control_frames`, `max_request_head`, `max_h2_streams`, `trusted_proxies`, `client_ip_header`, `proxy_protocol`, `allow`, `deny`)",
                "ginx.toml:5:57: unknown field `wieght`: did you mean `weight`? (expected one of `addr`, `weight`, `backup`)",
                "ginx.toml:6:1: unknown field `retrys`: did you mean `retries`? (expected one of `balance`, `hash`, `servers`, `connect_timeout`, `read_timeout`, `max_fails`, `fail_timeout`, `eject_on_5xx`, `on_all_down`, `retries`, `retry_on`, `retry_non_idempotent`, `health_check`, `protocol`, `tls_ca`, `tls_server_name`, `tls_verify`, `tunnel_timeout`, `keepalive`)",
            ]
        );
    }

    #[test]
    fn unknown_key_with_a_multi_line_value_keeps_later_positions() {
        let main = "[upstream.app]\nservers = [\"127.0.0.1:9001\"]\nretry_onn = [\n  \"connect\", # ] not the end\n  \"]\",\n]\nconnect_timeout = \"5 parsecs\"\n\n[listener.web]\nbind = \"127.0.0.1:8080\"\nupstream = \"app\"\n";
        let errs = load_mem(&[("ginx.toml", main)]).unwrap_err();
        let lines: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].starts_with("ginx.toml:3:1: unknown field `retry_onn`: did you mean `retry_on`?"),
            "{lines:?}"
        );
        assert!(
            lines[1].starts_with("ginx.toml:7:19: invalid duration `5 parsecs` for `connect_timeout`"),
            "{lines:?}"
        );
        // The file is shown as written.
        assert_eq!(errs.sources[0].text, main);
    }

    #[test]
    fn columns_after_a_skipped_unknown_key_count_its_characters() {
        // `wieght`'s value is blanked byte by byte; `é` is two bytes but one
        // column (found by the config_bytes fuzz target).
        let main = "[listener.web]\nbind = \"127.0.0.1:8080\"\nupstream = \"app\"\n[upstream.app]\nservers = [{ wieght = \"éé\", addr = \"no port\" }]\n";
        let errs = errors(&[("ginx.toml", main)]);
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[1].starts_with("ginx.toml:5:36: "), "{errs:?}");
    }

    #[test]
    fn errors_at_the_header_of_a_table_with_an_unknown_key_are_dropped() {
        // Without `upstreem` the listener has no upstream, and without
        // `hots` the second route is shadowed: both about the misspelt keys.
        let main = format!(
            "[listener.web]\nbind = \"127.0.0.1:8080\"\nupstreem = \"app\"\n\n[[listener.web.route]]\npath = \"/\"\nupstream = \"app\"\n\n[[listener.web.route]]\nhots = \"a.example\"\npath = \"/\"\nupstream = \"app\"\n{UP}"
        );
        let errs = errors(&[("ginx.toml", &main)]);
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            errs[0].starts_with("ginx.toml:3:1: unknown field `upstreem`"),
            "{errs:?}"
        );
        assert!(
            errs[1].starts_with("ginx.toml:10:1: unknown field `hots`: did you mean `host`?"),
            "{errs:?}"
        );
    }

    #[test]
    fn unknown_table_header_is_reported_alone_as_before() {
        // A header cannot be blanked out safely: the file stays unparsed, so
        // the unknown upstream is not reported (it might be the problem).
        let main = "[listener.web]\nbind = \"127.0.0.1:8080\"\nupstream = \"ap\"\n[listener.web.tsl]\ncert = \"a.pem\"\n";
        let errs = errors(&[("ginx.toml", main)]);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("ginx.toml:4:15: unknown field `tsl`: did you mean `tls`?"),
            "{errs:?}"
        );
    }

    #[test]
    fn unknown_key_then_type_error_both_reported() {
        let main = format!("[global]\nlog_levl = \"info\"\nwatch = \"yes\"\n{WEB}{UP}");
        let errs = errors(&[("ginx.toml", &main)]);
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            errs[0].starts_with("ginx.toml:2:1: unknown field `log_levl`"),
            "{errs:?}"
        );
        assert!(errs[1].starts_with("ginx.toml:3:9: invalid type"), "{errs:?}");
    }
}
