//! `ginx --check`: validate a configuration and explain what is wrong.
//!
//! This module owns how a check's result is shown, never what is checked
//! (that is [`crate::config`]):
//!
//! - text (the default): every problem as `FILE:LINE:COL: message`, the line
//!   editors and CI annotate, followed rustc-style by the source line and a
//!   caret under the problem; warnings after the errors as
//!   `FILE:LINE:COL: warning: message`; a summary line at the end;
//! - JSON (`--format json`): one document on stdout, for tools;
//! - `--diff`: what applying the local files would change in a running ginx,
//!   whose configuration is fetched from its admin endpoint.
//!
//! Every function here returns what to print instead of printing, so the
//! output is tested without spawning a process; [`run`] does the printing.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use serde_json::{json, Value};

use crate::config::{self, Config, Error, Errors, Source};

/// How `--check` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// Lines for people: located messages with the source line and a caret.
    #[default]
    Text,
    /// One JSON document on stdout, for tools.
    Json,
}

/// What `ginx --check` was asked to do.
#[derive(Debug, Clone)]
pub struct Options<'a> {
    /// The main configuration file.
    pub config: &'a Path,
    /// Output format.
    pub format: Format,
}

/// What a check prints: `stdout` and `stderr` texts and the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// For stdout: the summary, the JSON document or the diff.
    pub stdout: String,
    /// For stderr: the problems.
    pub stderr: String,
    /// True when the process should exit 0.
    pub ok: bool,
}

/// Run `--check` as `options` says, print its report and return the exit
/// code: 1 when the configuration has errors (or the diff could not be made).
pub fn run(options: &Options<'_>) -> ExitCode {
    let loaded = config::load(options.config);
    let report = match options.format {
        Format::Text => text(options.config, &loaded),
        Format::Json => Report {
            stdout: format!("{:#}\n", json(options.config, &loaded)),
            stderr: String::new(),
            ok: loaded.is_ok(),
        },
    };
    print(&report)
}

/// Print a report and turn it into an exit code.
pub fn print(report: &Report) -> ExitCode {
    // A closed pipe (`ginx --check | head`) is not worth a panic.
    let _ = std::io::stderr().write_all(report.stderr.as_bytes());
    let _ = std::io::stdout().write_all(report.stdout.as_bytes());
    match report.ok {
        true => ExitCode::SUCCESS,
        false => ExitCode::FAILURE,
    }
}

/// The text report of a load: problems with snippets on stderr; the summary
/// (success) on stdout or the failure line on stderr.
pub fn text(path: &Path, loaded: &Result<Config, Errors>) -> Report {
    let mut stderr = String::new();
    match loaded {
        Ok(config) => {
            problems(&mut stderr, &[], &config.warnings, &config.sources);
            Report {
                stdout: format!("{}\n", summary_line(path, config)),
                stderr,
                ok: true,
            }
        }
        Err(errors) => {
            let list: Vec<Error> = errors.iter().cloned().collect();
            problems(&mut stderr, &list, &errors.warnings, &errors.sources);
            stderr.push_str(&format!(
                "ginx: configuration {} test failed ({} error(s))\n",
                path.display(),
                errors.len()
            ));
            Report {
                stdout: String::new(),
                stderr,
                ok: false,
            }
        }
    }
}

/// `ginx: configuration PATH is ok (2 listeners, 1 upstream, 3 servers)`.
pub fn summary_line(path: &Path, config: &Config) -> String {
    format!(
        "ginx: configuration {} is ok ({}, {}, {})",
        path.display(),
        count(config.listeners.len(), "listener"),
        count(config.upstreams.len(), "upstream"),
        count(config.server_count(), "server")
    )
}

/// Errors, then warnings, each with its snippet and a blank line after it.
fn problems(out: &mut String, errors: &[Error], warnings: &[Error], sources: &[Source]) {
    for error in errors {
        out.push_str(&format!("{error}\n"));
        snippet(out, error, sources);
    }
    for warning in warnings {
        out.push_str(&format!("{}\n", warning_line(warning)));
        snippet(out, warning, sources);
    }
}

fn snippet(out: &mut String, problem: &Error, sources: &[Source]) {
    if let Some(snippet) = problem.snippet(sources) {
        out.push_str(&snippet);
        out.push_str("\n\n");
    }
}

/// `FILE:LINE:COL: warning: message` (or `PATH: warning: message`).
pub fn warning_line(warning: &Error) -> String {
    match warning.location() {
        Some(location) => format!("{location}: warning: {}", warning.message()),
        None => format!("{}: warning: {}", warning.path().display(), warning.message()),
    }
}

/// "1 listener", "2 listeners".
fn count(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

/// The JSON report of a load:
///
/// ```json
/// {"ok": false, "config": "ginx.toml",
///  "errors": [{"file": "ginx.toml", "line": 3, "column": 12,
///              "message": "...", "severity": "error"}],
///  "warnings": [...same, "severity": "warning"],
///  "summary": {"listeners": 1, "upstreams": 1, "servers": 2}}
/// ```
///
/// `line` and `column` are null for a problem with a whole file; `summary`
/// is null when the configuration has errors.
pub fn json(path: &Path, loaded: &Result<Config, Errors>) -> Value {
    let entries = |list: &[Error], severity: &str| -> Vec<Value> {
        list.iter()
            .map(|e| {
                let location = e.location();
                json!({
                    "file": e.path().display().to_string(),
                    "line": location.map(|l| l.line),
                    "column": location.map(|l| l.column),
                    "message": e.message(),
                    "severity": severity,
                })
            })
            .collect()
    };
    match loaded {
        Ok(config) => json!({
            "ok": true,
            "config": path.display().to_string(),
            "errors": [],
            "warnings": entries(&config.warnings, "warning"),
            "summary": {
                "listeners": config.listeners.len(),
                "upstreams": config.upstreams.len(),
                "servers": config.server_count(),
            },
        }),
        Err(errors) => {
            let list: Vec<Error> = errors.iter().cloned().collect();
            json!({
                "ok": false,
                "config": path.display().to_string(),
                "errors": entries(&list, "error"),
                "warnings": entries(&errors.warnings, "warning"),
                "summary": null,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, files: &[(&str, &str)]) {
        for (path, text) in files {
            let path = dir.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
    }

    #[test]
    fn text_report_has_carets_and_warnings() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            tmp.path(),
            &[(
                "ginx.toml",
                "[listener.web]\nbind = \"127.0.0.1:1\"\nupstream = \"ap\"\n\n[upstream.app]\nservers = [\"127.0.0.1:2\"]\n[upstream.api]\nservers = [\"127.0.0.1:3\"]\n",
            )],
        );
        let main = tmp.path().join("ginx.toml");
        let report = text(&main, &config::load(&main));
        assert!(!report.ok);
        assert_eq!(report.stdout, "");
        let m = main.display();
        assert_eq!(
            report.stderr,
            format!(
                "{m}:3:12: unknown upstream `ap`: did you mean `app`?\n  |\n3 | upstream = \"ap\"\n  |            ^^^^\n\n\
                 ginx: configuration {m} test failed (1 error(s))\n"
            )
        );
    }

    #[test]
    fn text_report_success_with_a_warning() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            tmp.path(),
            &[(
                "ginx.toml",
                "[listener.web]\nbind = \"127.0.0.1:1\"\nupstream = \"app\"\n[upstream.app]\nservers = [\"127.0.0.1:2\"]\n[upstream.old]\nservers = [\"127.0.0.1:3\"]\n",
            )],
        );
        let main = tmp.path().join("ginx.toml");
        let report = text(&main, &config::load(&main));
        assert!(report.ok);
        let m = main.display();
        assert_eq!(
            report.stdout,
            format!("ginx: configuration {m} is ok (1 listener, 2 upstreams, 2 servers)\n")
        );
        assert_eq!(
            report.stderr,
            format!(
                "{m}:6:1: warning: upstream `old` is not used by any listener or route: reference it with upstream = \"old\" or remove it\n  |\n6 | [upstream.old]\n  | ^^^^^^^^^^^^^^\n\n"
            )
        );
    }

    #[test]
    fn json_report() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("nope.toml");
        let value = json(&missing, &config::load(&missing));
        assert_eq!(value["ok"], false);
        assert_eq!(value["summary"], Value::Null);
        let error = &value["errors"][0];
        assert_eq!(error["file"], missing.display().to_string());
        assert_eq!(error["line"], Value::Null);
        assert_eq!(error["column"], Value::Null);
        assert_eq!(error["severity"], "error");
        assert!(error["message"].as_str().unwrap().starts_with("cannot read file"));

        write(
            tmp.path(),
            &[(
                "ginx.toml",
                "[listener.web]\nbind = \"127.0.0.1:1\"\nupstream = \"app\"\n[upstream.app]\nservers = [\"127.0.0.1:2\"]\n[upstream.old]\nservers = [\"127.0.0.1:3\"]\n",
            )],
        );
        let main = tmp.path().join("ginx.toml");
        let value = json(&main, &config::load(&main));
        assert_eq!(value["config"], main.display().to_string());
        assert_eq!(value["ok"], true);
        assert_eq!(value["summary"]["servers"], 2);
        assert_eq!(value["errors"], json!([]));
        assert_eq!(
            value["warnings"],
            json!([{
                "file": main.display().to_string(),
                "line": 6,
                "column": 1,
                "message": "upstream `old` is not used by any listener or route: reference it with upstream = \"old\" or remove it",
                "severity": "warning",
            }])
        );
    }
}
