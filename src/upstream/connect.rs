//! Reaching one upstream server: TCP, TLS on top for `https://` servers,
//! then the HTTP handshake of the pool's protocol.
//!
//! This module owns the connect path ([`Connector`]), the sender on an open
//! connection ([`Sender`]) and the body sent upstream ([`UpstreamBody`]);
//! how that body is doing is [`super::upload`]'s.
//! It keeps no connection: reusing them is [`super::pool`]'s job, and
//! deciding which server to reach is [`super::UpstreamPool`]'s. The active
//! health checks of [`crate::health`] open their probes with
//! [`Connector::transport`] too, so a probe reaches a server exactly as a
//! request does (TLS and ALPN included) without touching the pooled
//! connections.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2, TrySendError};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_util::either::Either;

use super::upload::Upload;
use crate::config::UpstreamProtocol;

/// Largest response head (status line and headers; for HTTP/2 the
/// uncompressed header list) taken from an upstream; a larger one fails the
/// attempt (502), as nginx's `proxy_buffer_size` does, instead of being
/// relayed. For HTTP/1.1 it is also the most one read of the connection
/// takes (hyper's read buffer limit; its default is about 400 KiB).
pub(crate) const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// The body of a request sent upstream: the client's, streamed, or none
/// (a request sent again after its first attempt, which is only done for
/// requests without a body).
#[derive(Debug)]
pub(crate) enum UpstreamBody {
    /// The client's body, streamed as it arrives, and how far it got (only
    /// for requests that have a body).
    Client(Incoming, Option<Arc<Upload>>),
    /// No body.
    Empty,
}

impl http_body::Body for UpstreamBody {
    type Data = bytes::Bytes;
    // The client's errors, or `max_request_body` passed (`TooLarge`).
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        match self.get_mut() {
            UpstreamBody::Client(body, upload) => {
                let polled = Pin::new(&mut *body).poll_frame(cx);
                if let Some(upload) = upload {
                    if let Err(too_large) = upload.note(&polled, body.is_end_stream()) {
                        return Poll::Ready(Some(Err(too_large.into())));
                    }
                }
                polled.map_err(Into::into)
            }
            UpstreamBody::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Client(body, _) => body.is_end_stream(),
            UpstreamBody::Empty => true,
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            UpstreamBody::Client(body, _) => body.size_hint(),
            UpstreamBody::Empty => http_body::SizeHint::with_exact(0),
        }
    }
}

/// A sender on an upstream connection: HTTP/1.1 (one request at a time,
/// pooled while idle) or HTTP/2 (many streams at once, shared).
#[derive(Debug)]
pub(crate) enum Sender {
    /// HTTP/1.1, in the clear or over TLS.
    Http1(http1::SendRequest<UpstreamBody>),
    /// HTTP/2, over TLS (`h2`) or in the clear (`h2c`).
    Http2(http2::SendRequest<UpstreamBody>),
}

impl Sender {
    /// Whether the connection is gone.
    pub(crate) fn is_closed(&self) -> bool {
        match self {
            Sender::Http1(s) => s.is_closed(),
            Sender::Http2(s) => s.is_closed(),
        }
    }

    /// Wait until the connection can take a request.
    ///
    /// # Errors
    ///
    /// The connection closed.
    pub(crate) async fn ready(&mut self) -> hyper::Result<()> {
        match self {
            Sender::Http1(s) => s.ready().await,
            Sender::Http2(s) => s.ready().await,
        }
    }

    /// Send `req`, giving it back if it was never written.
    ///
    /// # Errors
    ///
    /// hyper's; the request comes back in it when it was not written.
    pub(crate) async fn try_send_request(
        &mut self,
        req: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, TrySendError<Request<UpstreamBody>>> {
        match self {
            Sender::Http1(s) => s.try_send_request(req).await,
            Sender::Http2(s) => s.try_send_request(req).await,
        }
    }
}

/// ALPN offered to `https://` servers for each protocol.
pub(crate) fn alpn(protocol: UpstreamProtocol) -> &'static [&'static [u8]] {
    match protocol {
        UpstreamProtocol::H2 => &[b"h2"],
        UpstreamProtocol::Http1 | UpstreamProtocol::H2c => &[b"http/1.1"],
    }
}

/// How an `https://` server is reached: the pool's rustls client
/// configuration (built when the configuration was planned, see
/// [`crate::table::prepare()`]) and the name to send and verify.
#[derive(Debug, Clone)]
pub(crate) struct TlsTarget {
    /// The client configuration of the server's pool.
    pub(crate) config: Arc<rustls::ClientConfig>,
    /// `tls_server_name`, or the server's host.
    pub(crate) name: ServerName<'static>,
}

/// What opening a connection to one server needs.
#[derive(Debug, Clone)]
pub(crate) struct Connector {
    /// The pool's `protocol`.
    pub(crate) protocol: UpstreamProtocol,
    /// For `https://` servers: how to speak TLS to it.
    pub(crate) tls: Option<TlsTarget>,
}

/// An upstream connection's socket: plain, or TLS (boxed: the TLS state is
/// large).
pub(crate) type Io = Either<TcpStream, Box<TlsStream<TcpStream>>>;

impl Connector {
    /// A new HTTP/1.1 connection to `addr`, whose task runs on this
    /// runtime until the connection ends; with `upgrades`, it can be handed
    /// over to [`hyper::upgrade::on`] after a 101. `server` names it in
    /// logs.
    ///
    /// # Errors
    ///
    /// [`ConnectError::Timeout`], [`ConnectError::Io`] when the server
    /// cannot be reached or the TLS handshake fails.
    pub(crate) async fn http1(
        &self,
        addr: SocketAddr,
        timeout: Duration,
        upgrades: bool,
        server: Arc<str>,
    ) -> Result<Sender, ConnectError> {
        let io = self.transport(addr, timeout).await?;
        let (sender, conn) = http1::Builder::new()
            .max_buf_size(MAX_RESPONSE_HEAD)
            .handshake(io)
            .await
            .map_err(ConnectError::Handshake)?;
        tokio::spawn(async move {
            let result = match upgrades {
                true => conn.with_upgrades().await,
                false => conn.await,
            };
            if let Err(error) = result {
                tracing::debug!(%server, %error, "upstream connection ended with an error");
            }
        });
        Ok(Sender::Http1(sender))
    }

    /// A new HTTP/2 connection to `addr` (`h2` over TLS, `h2c` in the
    /// clear), whose task runs on this runtime until the connection ends.
    ///
    /// # Errors
    ///
    /// As [`Connector::http1`]; [`ConnectError::Handshake`] when HTTP/2
    /// cannot be set up.
    pub(crate) async fn http2(
        &self,
        addr: SocketAddr,
        timeout: Duration,
        server: Arc<str>,
    ) -> Result<Sender, ConnectError> {
        let io = self.transport(addr, timeout).await?;
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .max_header_list_size(MAX_RESPONSE_HEAD as u32)
            .handshake(io)
            .await
            .map_err(ConnectError::Handshake)?;
        tokio::spawn(async move {
            if let Err(error) = conn.await {
                tracing::debug!(%server, %error, "upstream HTTP/2 connection ended with an error");
            }
        });
        Ok(Sender::Http2(sender))
    }

    /// A TCP connection to `addr`, with TLS on top if this says so, within
    /// `timeout` (TCP and TLS handshakes together).
    ///
    /// # Errors
    ///
    /// [`ConnectError::Timeout`], [`ConnectError::Io`] when the server
    /// cannot be reached or the TLS handshake fails.
    pub(crate) async fn transport(
        &self,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<TokioIo<Io>, ConnectError> {
        let connecting = async {
            let stream = TcpStream::connect(addr).await.map_err(ConnectError::Io)?;
            // Requests are small writes that must not wait for an ACK.
            stream.set_nodelay(true).map_err(ConnectError::Io)?;
            match &self.tls {
                None => Ok(Either::Left(stream)),
                Some(tls) => tokio_rustls::TlsConnector::from(tls.config.clone())
                    .connect(tls.name.clone(), stream)
                    .await
                    .map(|tls| Either::Right(Box::new(tls)))
                    .map_err(ConnectError::Io),
            }
        };
        match tokio::time::timeout(timeout, connecting).await {
            Ok(io) => io.map(TokioIo::new),
            Err(_) => Err(ConnectError::Timeout(timeout)),
        }
    }
}

/// Why a connection to a server could not be established.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    /// The TCP connect did not finish in time.
    #[error("connect timed out after {0:?}")]
    Timeout(Duration),
    /// The TCP connect failed (refused, unreachable, ...).
    #[error("connect failed: {0}")]
    Io(#[source] io::Error),
    /// The HTTP connection could not be set up.
    #[error("handshake failed: {0}")]
    Handshake(#[source] hyper::Error),
}
