//! systemd's notify protocol: tell the service manager when ginx is ready,
//! reloading or stopping (`Type=notify`, `Type=notify-reload`).
//!
//! This module owns the wire format (newline-separated `KEY=VALUE` in one
//! datagram to `$NOTIFY_SOCKET`). It does not decide when to send: the
//! process lifecycle calls [`SystemdNotify::ready`] and the others. Without
//! `NOTIFY_SOCKET` (not under systemd) every call does nothing, and a failed
//! send is logged, never fatal: the proxy serves whether or not systemd
//! hears about it.
//!
//! Named after the service manager rather than the protocol (it was
//! `notify.rs`): `crate::notify` read like the `notify` crate, which the
//! reloader imports beside it to watch files.

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};

/// A handle on `$NOTIFY_SOCKET`, or nothing when it is unset.
#[derive(Debug)]
pub(crate) struct SystemdNotify {
    socket: Option<Socket>,
}

#[derive(Debug)]
struct Socket {
    addr: SocketAddr,
    /// Shown in log messages: the variable's value as given.
    name: String,
    /// Only the first failure is a warning; later ones are debug, so a
    /// vanished systemd does not fill the log.
    warned: AtomicBool,
}

impl SystemdNotify {
    /// From `$NOTIFY_SOCKET`: a path, or `@name` for a socket in the abstract
    /// namespace. Unset or empty: every call does nothing.
    pub(crate) fn from_env() -> SystemdNotify {
        match std::env::var_os("NOTIFY_SOCKET") {
            Some(value) => Self::from_socket(&value),
            None => SystemdNotify { socket: None },
        }
    }

    /// From the value `$NOTIFY_SOCKET` would have.
    fn from_socket(value: &OsStr) -> SystemdNotify {
        let bytes = value.as_bytes();
        let addr = match bytes.first() {
            None => return SystemdNotify { socket: None },
            Some(b'@') => SocketAddr::from_abstract_name(&bytes[1..]),
            Some(b'/') => SocketAddr::from_pathname(value),
            // systemd also knows `vsock:CID:PORT`, for virtual machines; std
            // has no vsock sockets, and ginx is not a VM's init.
            Some(_) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "neither an absolute path nor an @abstract name",
            )),
        };
        let name = value.to_string_lossy().into_owned();
        match addr {
            Ok(addr) => SystemdNotify {
                socket: Some(Socket {
                    addr,
                    name,
                    warned: AtomicBool::new(false),
                }),
            },
            Err(error) => {
                tracing::warn!(notify_socket = %name, %error, "ignoring NOTIFY_SOCKET");
                SystemdNotify { socket: None }
            }
        }
    }

    /// Startup finished: listeners are bound and serving.
    pub(crate) fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    /// Startup finished in a process that replaces another (an upgrade):
    /// `MAINPID` first, so that systemd follows this process when the old
    /// one exits (`NotifyAccess=all` lets it speak for the service).
    pub(crate) fn ready_main(&self, status: &str) {
        self.send(&format!(
            "MAINPID={}\nREADY=1\nSTATUS={}",
            std::process::id(),
            one_line(status)
        ));
    }

    /// A reload started; send [`SystemdNotify::ready`] when it is done (with
    /// `Type=notify-reload` systemd waits for it). `MONOTONIC_USEC` is
    /// required by that type; it is left out only if the clock cannot be read.
    pub(crate) fn reloading(&self) {
        let message = match monotonic_usec() {
            Some(usec) => format!("RELOADING=1\nMONOTONIC_USEC={usec}"),
            None => "RELOADING=1".to_owned(),
        };
        self.send(&message);
    }

    /// Shutdown started.
    pub(crate) fn stopping(&self) {
        self.send("STOPPING=1");
    }

    fn send(&self, message: &str) {
        let Some(socket) = &self.socket else { return };
        let result = UnixDatagram::unbound()
            .and_then(|datagram| datagram.send_to_addr(message.as_bytes(), &socket.addr));
        if let Err(error) = result {
            if socket.warned.swap(true, Ordering::Relaxed) {
                tracing::debug!(notify_socket = %socket.name, %error, "cannot notify systemd");
            } else {
                tracing::warn!(notify_socket = %socket.name, %error, "cannot notify systemd");
            }
        }
    }
}

/// A value must not contain a newline: it would start another assignment.
fn one_line(value: &str) -> std::borrow::Cow<'_, str> {
    if value.contains(['\n', '\r']) {
        value.replace(['\n', '\r'], " ").into()
    } else {
        value.into()
    }
}

/// CLOCK_MONOTONIC in microseconds, as `MONOTONIC_USEC` wants.
fn monotonic_usec() -> Option<u64> {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let secs = u64::try_from(now.tv_sec).ok()?;
    let micros = u64::try_from(now.tv_nsec).ok()? / 1000;
    secs.checked_mul(1_000_000)?.checked_add(micros)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn receive(socket: &UnixDatagram) -> String {
        socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn sends_each_message_to_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let systemd = UnixDatagram::bind(&path).unwrap();
        let notify = SystemdNotify::from_socket(path.as_os_str());
        assert!(notify.socket.is_some());

        notify.ready("serving 2 listeners");
        assert_eq!(receive(&systemd), "READY=1\nSTATUS=serving 2 listeners");

        notify.reloading();
        let reloading = receive(&systemd);
        let usec: u64 = reloading
            .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
            .unwrap_or_else(|| panic!("{reloading:?}"))
            .parse()
            .unwrap();
        assert!(usec > 0);

        notify.ready("reloaded\ngeneration 2");
        assert_eq!(receive(&systemd), "READY=1\nSTATUS=reloaded generation 2");

        notify.stopping();
        assert_eq!(receive(&systemd), "STOPPING=1");

        notify.ready_main("upgraded");
        assert_eq!(
            receive(&systemd),
            format!("MAINPID={}\nREADY=1\nSTATUS=upgraded", std::process::id())
        );
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        let name = format!("ginx-test-notify-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let systemd = UnixDatagram::bind_addr(&addr).unwrap();
        let notify = SystemdNotify::from_socket(OsStr::new(&format!("@{name}")));

        notify.stopping();
        assert_eq!(receive(&systemd), "STOPPING=1");
    }

    #[test]
    fn unset_empty_or_unusable_means_disabled() {
        assert!(SystemdNotify::from_socket(OsStr::new("")).socket.is_none());
        assert!(SystemdNotify::from_socket(OsStr::new("vsock:2:1234"))
            .socket
            .is_none());
        // Nothing to send to: these must simply return.
        let none = SystemdNotify::from_socket(OsStr::new(""));
        none.ready("x");
        none.reloading();
        none.stopping();
    }

    #[test]
    fn a_missing_socket_is_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let notify = SystemdNotify::from_socket(dir.path().join("gone.sock").as_os_str());
        notify.ready("x");
        notify.ready("x");
        assert!(notify.socket.as_ref().unwrap().warned.load(Ordering::Relaxed));
    }

    #[test]
    fn monotonic_clock_moves_with_instant() {
        let before = monotonic_usec().expect("CLOCK_MONOTONIC is readable");
        let start = Instant::now();
        std::thread::sleep(Duration::from_millis(20));
        let after = monotonic_usec().unwrap();
        let elapsed = start.elapsed().as_micros() as u64;
        // The same clock as Instant: the difference matches the elapsed time.
        assert!(
            after - before >= 20_000 && after - before <= elapsed + 1_000,
            "{before} {after} {elapsed}"
        );
    }
}
