//! `ginx upgrade [-c PATH]`: find the running ginx of a configuration
//! (its `[global] pid_file`, else its admin endpoint's `/status`), send it
//! SIGUSR2, and report whether a new process took over.
//!
//! Also the pid file itself: written by the process that serves (the one an
//! upgrade starts rewrites it), removed by one that stops for good.
//!
//! A command beside [`crate::check`] (it reads the admin endpoint with the
//! same client), not part of [`crate::upgrade`], which the reloader uses:
//! the handover must not depend on the commands at the top.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use crate::config::{self, Config};

/// How long `ginx upgrade` waits for the outcome: the new process's
/// readiness timeout and a margin.
const WAIT: Duration = Duration::from_secs(35);
/// How long one admin request may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(3);

/// Write this process's pid to `path` (through a temporary file, so a
/// reader never sees a partial one).
pub(crate) fn write_pid_file(path: &Path) {
    let tmp = path.with_extension("pid.tmp");
    let result =
        std::fs::write(&tmp, format!("{}\n", std::process::id())).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(error) = result {
        tracing::warn!(pid_file = %path.display(), %error, "cannot write the pid file");
    }
}

/// Remove `path` if it still names this process (after an upgrade it names
/// the new one, which must keep it).
pub(crate) fn remove_pid_file(path: &Path) {
    if read_pid(path) == Some(std::process::id() as i32) {
        let _ = std::fs::remove_file(path);
    }
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// `ginx upgrade -c PATH [--admin ADDR]`: exit 0 when a new process serves, 1 with the
/// reason otherwise.
pub fn run_command(path: &Path, admin: Option<&str>) -> ExitCode {
    match upgrade(path, admin) {
        Ok(message) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("ginx upgrade: {message}");
            ExitCode::FAILURE
        }
    }
}

fn upgrade(path: &Path, admin: Option<&str>) -> Result<String, String> {
    let config = config::load(path).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        format!(
            "{}\n{} does not load; fix it first (the new process would refuse it too)",
            lines.join("\n"),
            path.display()
        )
    })?;
    let admin = admin
        .map(str::to_owned)
        .or_else(|| config.admin.as_ref().map(|a| a.bind.to_string()));
    let old = find_pid(&config, admin.as_deref())?;
    let pid = rustix::process::Pid::from_raw(old).ok_or("the pid file names no process")?;
    let sent = SystemTime::now();
    rustix::process::kill_process(pid, rustix::process::Signal::USR2)
        .map_err(|e| format!("cannot signal pid {old}: {e}"))?;
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        if let Some(new) = config.global.pid_file.as_deref().and_then(read_pid) {
            if new != old {
                return Ok(format!("upgraded: pid {new} serves, pid {old} drains"));
            }
        }
        if let Some(status) = admin.as_deref().and_then(status) {
            if let Some(new) = status["pid"].as_i64().filter(|&p| p != i64::from(old)) {
                return Ok(format!("upgraded: pid {new} serves, pid {old} drains"));
            }
            let failed = &status["last_upgrade"];
            if failed["at"].as_f64().is_some_and(|at| at >= unix(sent)) {
                return Err(format!(
                    "the upgrade failed: {}",
                    failed["error"].as_str().unwrap_or("?")
                ));
            }
        }
    }
    Err(format!(
        "no new process took over within {WAIT:?}; see the log of pid {old}"
    ))
}

/// The running process: from the pid file, else from `/status`.
fn find_pid(config: &Config, admin: Option<&str>) -> Result<i32, String> {
    if let Some(file) = &config.global.pid_file {
        return read_pid(file)
            .ok_or_else(|| format!("cannot read a pid from {}; is ginx running?", file.display()));
    }
    let Some(admin) = admin else {
        return Err("no way to find the running ginx: set [global] pid_file or [admin] bind".to_owned());
    };
    let status = crate::check::http_get(admin, "/status", ADMIN_TIMEOUT)?;
    let status: Value = serde_json::from_str(&status).map_err(|e| format!("/status: {e}"))?;
    status["pid"]
        .as_i64()
        .map(|p| p as i32)
        .ok_or_else(|| "/status has no pid".to_owned())
}

fn status(admin: &str) -> Option<Value> {
    let body = crate::check::http_get(admin, "/status", ADMIN_TIMEOUT).ok()?;
    serde_json::from_str(&body).ok()
}

fn unix(at: SystemTime) -> f64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
