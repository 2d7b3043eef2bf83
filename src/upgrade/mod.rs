//! Replacing the running binary (SIGUSR2, issue 14): the old process starts
//! the new one and hands it its listening sockets and its state; the new
//! one serves, says so, and the old one drains and exits.
//!
//! ```text
//! old: SIGUSR2 ─▶ Binary::spawn (same path, args, environment; stdin = channel)
//!        ├ S socket + fd  … one per listener and the admin endpoint
//!        ├ T state chunks (generation, ...)
//!        └ E ───────────────▶ new: Handover::receive ─▶ load, plan (adopting the
//!                                   sockets by address), serve ─▶ R (ready)
//! old ◀─ R: stop accepting, drain (HTTP/1.1 Connection: close on the next
//!        response, HTTP/2 GOAWAY), exit 0
//! old ◀─ F error / channel closed / timeout: log it, keep serving
//! ```
//!
//! The new process never closes and re-binds a socket it was given: the
//! kernel's accept queue is the socket's, so a connection waiting in it is
//! accepted by whichever process accepts next. Sockets it no longer wants
//! are closed when its first plan is committed.
//!
//! This module owns the handover (both sides) and the channel
//! ([`channel`]) and the state's shape ([`state`]); deciding when to upgrade is [`crate::reload`]'s (it owns
//! the signals), adopting a socket is [`crate::server`]'s, and draining
//! the old process is [`crate::app`]'s.

mod channel;
mod state;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

use channel::{Channel, CHUNK};
pub(crate) use state::State;

/// Set by ginx for the process it starts: the old process's pid. Its
/// standard input is then the upgrade channel.
const FROM_VAR: &str = "GINX_UPGRADE_FROM";
/// Test-only: run this file instead of the binary ginx was started from
/// (tests start a shell script that fails). Not for production use.
const EXE_VAR: &str = "GINX_UPGRADE_EXE";
/// Test-only: how long the new process has to become ready, in
/// milliseconds, instead of [`READY_TIMEOUT`].
const TIMEOUT_VAR: &str = "GINX_UPGRADE_TIMEOUT_MS";
/// How long the new process has to say it is ready before the old one
/// gives up on it (and kills it).
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the new process waits for the old one's handover.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The binary to start and how, resolved when the process starts: after a
/// package upgrade the same path holds the new file (`/proc/self/exe`
/// would then name the deleted one).
#[derive(Debug, Clone)]
pub(crate) struct Binary {
    /// Absolute path.
    pub(crate) exe: PathBuf,
    args: Vec<OsString>,
}

impl Binary {
    /// This process's binary and arguments.
    ///
    /// # Errors
    ///
    /// When the path of the running binary cannot be found.
    pub(crate) fn current() -> anyhow::Result<Binary> {
        let exe = match std::env::var_os(EXE_VAR) {
            Some(exe) => PathBuf::from(exe),
            None => std::env::current_exe().context("finding the path of the running binary")?,
        };
        Ok(Binary {
            exe,
            args: std::env::args_os().skip(1).collect(),
        })
    }
}

/// One socket to hand over.
#[derive(Debug)]
pub(crate) struct Passed<'a> {
    /// The listener's name; `None` for the admin endpoint.
    pub(crate) listener: Option<&'a str>,
    /// Its configured address (port 0 stays 0).
    pub(crate) configured: SocketAddr,
    pub(crate) fd: BorrowedFd<'a>,
}

/// What describes a socket on the channel.
#[derive(Debug, Serialize, Deserialize)]
struct Described {
    listener: Option<String>,
    configured: SocketAddr,
}

/// A new process that said it is ready.
#[derive(Debug)]
pub(crate) struct Replaced {
    /// Its pid.
    pub(crate) pid: u32,
}

/// Start `binary`, hand it `sockets` and `state`, and wait until it serves.
///
/// # Errors
///
/// When it cannot be started, exits, reports an error or is not ready in
/// time (it is killed then); the message says which, with its own error
/// when it sent one. Nothing of this process changed then.
pub(crate) async fn hand_over(
    binary: &Binary,
    sockets: &[Passed<'_>],
    state: &State,
) -> anyhow::Result<Replaced> {
    let (channel, theirs) = Channel::pair().context("creating the upgrade socket pair")?;
    // Owned copies (close-on-exec) for the blocking thread that sends them.
    let mut owned = Vec::with_capacity(sockets.len());
    for socket in sockets {
        let described = Described {
            listener: socket.listener.map(str::to_owned),
            configured: socket.configured,
        };
        owned.push((serde_json::to_vec(&described)?, socket.fd.try_clone_to_owned()?));
    }
    let state = serde_json::to_vec(state)?;
    let child = Command::new(&binary.exe)
        .args(&binary.args)
        .env(FROM_VAR, std::process::id().to_string())
        .stdin(Stdio::from(theirs))
        .spawn()
        .with_context(|| format!("cannot start {}", binary.exe.display()))?;
    let pid = child.id();
    tracing::info!(pid, binary = %binary.exe.display(), "upgrade: started the new binary; handing over");
    let timeout = ready_timeout();
    let exchange = tokio::task::spawn_blocking(move || exchange(&channel, &owned, &state, timeout));
    let outcome = match exchange.await {
        Ok(outcome) => outcome,
        Err(error) => Err(anyhow::anyhow!("the handover thread failed: {error}")),
    };
    match outcome {
        Ok(()) => Ok(Replaced { pid }),
        Err(error) => {
            let status = reap(child).await;
            bail!("{error:#} (new process {pid}: {status})")
        }
    }
}

/// Send the handover on `channel`, then wait up to `timeout` for ready.
fn exchange(
    channel: &Channel,
    sockets: &[(Vec<u8>, OwnedFd)],
    state: &[u8],
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let send = || -> std::io::Result<()> {
        for (described, fd) in sockets {
            channel.send(b'S', described, Some(fd.as_fd()))?;
        }
        for chunk in state.chunks(CHUNK) {
            channel.send(b'T', chunk, None)?;
        }
        channel.send(b'E', b"", None)
    };
    if let Err(error) = send() {
        if gone(&error) {
            bail!("the new process exited before it was ready");
        }
        return Err(error).context("the new process did not take the handover");
    }
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    channel.set_timeout(Some(left))?;
    match channel.receive() {
        Ok(Some(message)) if message.tag == b'R' => Ok(()),
        Ok(Some(message)) if message.tag == b'F' => {
            bail!(
                "the new process failed: {}",
                String::from_utf8_lossy(&message.payload)
            )
        }
        Ok(Some(message)) => bail!(
            "the new process sent an unknown message ({:?})",
            message.tag as char
        ),
        Ok(None) => bail!("the new process exited before it was ready"),
        Err(error) if gone(&error) => bail!("the new process exited before it was ready"),
        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
            bail!("the new process was not ready within {timeout:?}")
        }
        Err(error) => Err(error).context("reading from the new process"),
    }
}

/// The other end closed: the new process exited (with unread messages, a
/// socket pair reports a reset).
fn gone(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
    )
}

/// Kill `child` unless it exited, and say how it ended.
async fn reap(mut child: Child) -> String {
    let waited = tokio::task::spawn_blocking(move || {
        let _ = child.kill();
        child.wait()
    })
    .await;
    match waited {
        Ok(Ok(status)) => status.to_string(),
        Ok(Err(error)) => format!("cannot wait for it: {error}"),
        Err(error) => format!("cannot wait for it: {error}"),
    }
}

fn ready_timeout() -> Duration {
    std::env::var(TIMEOUT_VAR)
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map_or(READY_TIMEOUT, Duration::from_millis)
}

/// The new process's side: what the old one handed over.
#[derive(Debug)]
pub(crate) struct Handover {
    channel: Channel,
    /// The old process's pid.
    pub(crate) from: u32,
    sockets: Vec<(Described, OwnedFd)>,
    pub(crate) state: State,
}

impl Handover {
    /// The handover, when this process was started by an upgrade
    /// (`GINX_UPGRADE_FROM` is set); read whole before anything starts.
    ///
    /// # Errors
    ///
    /// When the channel is not there or the handover is incomplete.
    pub(crate) fn receive() -> anyhow::Result<Option<Handover>> {
        let Some(from) = std::env::var_os(FROM_VAR) else {
            return Ok(None);
        };
        let from = from.to_string_lossy().parse().unwrap_or(0);
        let channel = Channel::from_stdin().context("upgrade: no channel from the old process")?;
        channel.set_timeout(Some(RECEIVE_TIMEOUT))?;
        let mut sockets = Vec::new();
        let mut state = Vec::new();
        loop {
            let message = channel
                .receive()
                .context("upgrade: reading the handover")?
                .context("upgrade: the old process closed the channel")?;
            match (message.tag, message.fd) {
                (b'S', Some(fd)) => sockets.push((serde_json::from_slice(&message.payload)?, fd)),
                (b'T', None) => state.extend_from_slice(&message.payload),
                (b'E', None) => break,
                (tag, _) => bail!("upgrade: unexpected message {:?} in the handover", tag as char),
            }
        }
        let state = serde_json::from_slice(&state).context("upgrade: reading the handed-over state")?;
        // Gone: stdin must not be read as the channel by anything else.
        let _ = rustix::stdio::dup2_stdin(std::fs::File::open("/dev/null")?);
        Ok(Some(Handover {
            channel,
            from,
            sockets,
            state,
        }))
    }

    /// The listeners' sockets: (name, configured address, socket).
    pub(crate) fn take_listeners(&mut self) -> Vec<(String, SocketAddr, std::net::TcpListener)> {
        let (listeners, admin) = std::mem::take(&mut self.sockets)
            .into_iter()
            .partition(|(described, _)| described.listener.is_some());
        self.sockets = admin;
        listeners
            .into_iter()
            .filter_map(|(d, fd)| Some((d.listener?, d.configured, fd.into())))
            .collect()
    }

    /// The admin endpoint's socket, if it was configured at `bind`.
    pub(crate) fn take_admin(&mut self, bind: SocketAddr) -> Option<std::net::TcpListener> {
        let at = self
            .sockets
            .iter()
            .position(|(d, _)| d.listener.is_none() && d.configured == bind)?;
        Some(self.sockets.swap_remove(at).1.into())
    }

    /// Serving: the old process may stop accepting.
    pub(crate) fn ready(self) {
        if let Err(error) = self.channel.send(b'R', b"", None) {
            tracing::warn!(%error, "upgrade: cannot tell the old process we are ready");
        }
    }

    /// Not starting: tell the old process why.
    pub(crate) fn failed(self, error: &anyhow::Error) {
        let text = format!("{error:#}");
        let text = &text.as_bytes()[..text.len().min(CHUNK)];
        let _ = self.channel.send(b'F', text, None);
    }
}
