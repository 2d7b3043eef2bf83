//! The channel between the running ginx and the binary replacing it: one
//! `SOCK_SEQPACKET` Unix socket pair, the new process's end given to it as
//! its standard input.
//!
//! Why a socket pair and `SCM_RIGHTS`, not inherited descriptors named in
//! an environment variable: the crate forbids `unsafe`, and taking
//! ownership of a descriptor by its number (`OwnedFd::from_raw_fd`) is
//! unsafe, while a descriptor received with `SCM_RIGHTS` arrives owned. It
//! also keeps the listening sockets close-on-exec in the old process, so no
//! other program it might start inherits them, and the same pair carries
//! the state, the readiness and the new process's error. Standard input is
//! the one descriptor a program can take as its own without `unsafe`
//! (`std::io::stdin().as_fd()`). `SOCK_SEQPACKET` keeps message boundaries,
//! so a socket's description and its descriptor arrive together.
//!
//! Messages, one tag byte then the payload:
//!
//! ```text
//! old → new   S {"listener":..,"configured":..} + 1 descriptor   one per socket
//!             T <up to CHUNK bytes of the state's JSON>         zero or more
//!             E                                                  end of the handover
//! new → old   R                                                  serving: stop accepting
//!             F <error text>                                     failed before ready
//! ```
//!
//! This module owns the wire format only; what is sent and when is
//! [`super`]'s.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
};

/// Largest payload of one message: below the default socket buffer
/// (`net.core.wmem_default`, 208 KiB), which bounds a datagram's size.
pub(super) const CHUNK: usize = 60 * 1024;

/// One message, as received.
#[derive(Debug)]
pub(super) struct Message {
    pub(super) tag: u8,
    pub(super) payload: Vec<u8>,
    /// The descriptor passed with it, if any.
    pub(super) fd: Option<OwnedFd>,
}

/// One end of the pair.
#[derive(Debug)]
pub(super) struct Channel(OwnedFd);

impl Channel {
    /// A connected pair, both ends close-on-exec.
    pub(super) fn pair() -> io::Result<(Channel, OwnedFd)> {
        let (ours, theirs) = rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )?;
        Ok((Channel(ours), theirs))
    }

    /// The end a process was given as its standard input (a duplicate: the
    /// descriptor 0 itself stays open).
    pub(super) fn from_stdin() -> io::Result<Channel> {
        let fd = io::stdin().as_fd().try_clone_to_owned()?;
        // Not a seqpacket socket: standard input is something else, and
        // the variable that brought us here is stale.
        let kind = rustix::net::sockopt::socket_type(&fd)?;
        if kind != SocketType::SEQPACKET {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "standard input is not the upgrade socket",
            ));
        }
        Ok(Channel(fd))
    }

    /// Wait at most `timeout` for each receive (`None`: forever).
    pub(super) fn set_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        rustix::net::sockopt::set_socket_timeout(&self.0, rustix::net::sockopt::Timeout::Recv, timeout)?;
        Ok(())
    }

    /// Send one message, with `fd` if given.
    pub(super) fn send(&self, tag: u8, payload: &[u8], fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
        let tag = [tag];
        let iov = [IoSlice::new(&tag), IoSlice::new(payload)];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        let fds;
        if let Some(fd) = fd {
            fds = [fd];
            control.push(SendAncillaryMessage::ScmRights(&fds));
        }
        rustix::net::sendmsg(&self.0, &iov, &mut control, SendFlags::NOSIGNAL)?;
        Ok(())
    }

    /// The next message; `None` when the other end is closed (the process
    /// exited).
    pub(super) fn receive(&self) -> io::Result<Option<Message>> {
        let mut buf = vec![0u8; CHUNK + 1];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let received = rustix::net::recvmsg(
            &self.0,
            &mut [IoSliceMut::new(&mut buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        )?;
        let mut fd = None;
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(fds) = message {
                // One is sent; any other is closed as it drops.
                fd = fds.into_iter().next().or(fd);
            }
        }
        if received.bytes == 0 {
            return Ok(None);
        }
        if received.flags.contains(rustix::net::ReturnFlags::TRUNC) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "upgrade message too long",
            ));
        }
        buf.truncate(received.bytes);
        let tag = buf.remove(0);
        Ok(Some(Message {
            tag,
            payload: buf,
            fd,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carries_messages_and_a_descriptor() {
        let (a, b) = Channel::pair().unwrap();
        let b = Channel(b);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        a.send(b'S', b"hello", Some(listener.as_fd())).unwrap();
        a.send(b'E', b"", None).unwrap();
        let first = b.receive().unwrap().unwrap();
        assert_eq!((first.tag, &first.payload[..]), (b'S', &b"hello"[..]));
        let received = std::net::TcpListener::from(first.fd.expect("a descriptor"));
        assert_eq!(received.local_addr().unwrap(), listener.local_addr().unwrap());
        let end = b.receive().unwrap().unwrap();
        assert_eq!((end.tag, end.payload.len(), end.fd.is_none()), (b'E', 0, true));
        drop(a);
        assert!(b.receive().unwrap().is_none());
    }
}
