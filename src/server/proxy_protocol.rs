//! The PROXY protocol header (HAProxy's, v1 text and v2 binary) that a
//! load balancer sends first on every connection of a `proxy_protocol =
//! true` listener, before TLS or HTTP.
//!
//! This module owns reading that header off the socket, and nothing past
//! it: it peeks, then consumes exactly the header's bytes, so TLS or HTTP
//! find the stream as the client sent it after the header. Parsing is the
//! `ppp` crate's; whether the header is believed is
//! [`crate::forward::Connection::proxied_from`]'s decision. The caller
//! bounds the read by the header-read timeout.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use ppp::{v1, v2, HeaderResult, PartialResult};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::forward::Connection;

/// The longest header read: a v1 header is at most 107 bytes; a v2 one is
/// 16 bytes and addresses plus TLVs, which load balancers keep small (AWS
/// and HAProxy send well under 1 KiB). Longer is refused: the buffer of a
/// connection that has not yet proved anything stays bounded.
const MAX_HEADER: usize = 4096;

/// Why a connection's PROXY header was refused (the connection is closed
/// without a response).
#[derive(Debug, thiserror::Error)]
pub(super) enum Error {
    #[error("the connection closed before its PROXY header was complete")]
    Closed,
    #[error("reading the PROXY header failed: {0}")]
    Io(#[from] io::Error),
    #[error("the connection did not start with a valid PROXY header (v1 or v2): {0}")]
    Invalid(String),
    #[error("the PROXY header is longer than {MAX_HEADER} bytes")]
    TooLong,
}

/// On a connection that must start with a PROXY header, read it by
/// `deadline` and let `info` decide whether to believe it. False when the
/// connection is to be closed without a response: no valid header in time,
/// or `stop`.
pub(super) async fn accept(
    stream: &mut TcpStream,
    info: &mut Arc<Connection>,
    deadline: Instant,
    stop: &CancellationToken,
) -> bool {
    if !info.expects_proxy_header() {
        return true;
    }
    let read = tokio::select! {
        biased;
        () = stop.cancelled() => return false,
        read = read(stream) => read,
        () = tokio::time::sleep_until(deadline) => {
            tracing::debug!(listener = %info.listener, client = %info.client, "no PROXY header within header_read_timeout; closing");
            return false;
        }
    };
    match read {
        Ok(source) => {
            // Nothing else holds the connection's context before its first
            // request; if something did, closing is the safe answer.
            let Some(conn) = Arc::get_mut(info) else {
                return false;
            };
            if let Some(source) = source {
                conn.proxied_from(source);
            }
            true
        }
        Err(error) => {
            tracing::debug!(listener = %info.listener, client = %info.client, %error, "closing");
            false
        }
    }
}

/// Read the PROXY header `stream` starts with. `Some(source)` for a
/// proxied connection, `None` for one the balancer made itself (v2
/// `LOCAL`, v1 `UNKNOWN`, or an address family other than IP), whose
/// client is the TCP peer.
pub(super) async fn read(stream: &mut TcpStream) -> Result<Option<SocketAddr>, Error> {
    let mut header: Vec<u8> = Vec::with_capacity(128);
    let mut peeked = vec![0u8; MAX_HEADER];
    loop {
        let room = MAX_HEADER - header.len();
        if room == 0 {
            return Err(Error::TooLong);
        }
        let n = stream.peek(&mut peeked[..room]).await?;
        if n == 0 {
            return Err(Error::Closed);
        }
        let have = header.len();
        header.extend_from_slice(&peeked[..n]);
        let parsed = HeaderResult::parse(&header);
        if parsed.is_incomplete() {
            // Every byte seen is still part of the header: take them off
            // the socket, so that the next peek waits for more rather than
            // returning the same bytes at once.
            stream.read_exact(&mut peeked[..n]).await?;
            continue;
        }
        let (length, source) = header_source(parsed)?;
        // Consume the header only; what follows is TLS or HTTP.
        let rest = length
            .checked_sub(have)
            .ok_or_else(|| Error::Invalid("the header ended before bytes already read".into()))?;
        stream.read_exact(&mut peeked[..rest]).await?;
        return Ok(source);
    }
}

/// The length of a complete header and the client it names, or why it is
/// not valid.
fn header_source(parsed: HeaderResult<'_>) -> Result<(usize, Option<SocketAddr>), Error> {
    match parsed {
        HeaderResult::V1(Ok(header)) => {
            let source = match header.addresses {
                v1::Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                v1::Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                v1::Addresses::Unknown => None,
            };
            Ok((header.header.len(), source))
        }
        HeaderResult::V2(Ok(header)) => {
            let source = match (header.command, header.addresses) {
                (v2::Command::Proxy, v2::Addresses::IPv4(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                (v2::Command::Proxy, v2::Addresses::IPv6(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                _ => None,
            };
            Ok((header.len(), source))
        }
        HeaderResult::V1(Err(error)) => Err(Error::Invalid(error.to_string())),
        HeaderResult::V2(Err(error)) => Err(Error::Invalid(error.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_and_v2_sources() {
        let v1 = b"PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\nGET";
        let (len, source) = header_source(HeaderResult::parse(v1)).unwrap();
        assert_eq!(len, v1.len() - 3);
        assert_eq!(source, Some("192.0.2.1:56324".parse().unwrap()));
        let (_, unknown) = header_source(HeaderResult::parse(b"PROXY UNKNOWN\r\n")).unwrap();
        assert_eq!(unknown, None);

        let mut v2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        v2.extend_from_slice(&[0x21, 0x11, 0, 12, 192, 0, 2, 7, 10, 0, 0, 1, 0x1f, 0x90, 0, 80]);
        v2.extend_from_slice(b"GET / HTTP/1.1\r\n");
        let (len, source) = header_source(HeaderResult::parse(&v2)).unwrap();
        assert_eq!(len, 28);
        assert_eq!(source, Some("192.0.2.7:8080".parse().unwrap()));
        assert!(header_source(HeaderResult::parse(b"GET / HTTP/1.1\r\n\r\n")).is_err());
    }
}
