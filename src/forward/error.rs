//! Why a request could not be proxied, and the one place where that becomes
//! an HTTP status.
//!
//! This module owns [`Error`] (a request's failure) and [`Failure`] (one
//! attempt's), and what each counts as: its status, its attempt outcome,
//! whether `retry_on` lets the request move on. Deciding to move on is
//! [`super::retry`]'s job; writing the response is [`super::respond`]'s.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;

use crate::config::RetryOn;
use crate::observe::metrics::Outcome;
use crate::upstream::{ConnectError, Stall};

/// Why a request could not be proxied. [`Error::status`] is the one place
/// where a failure becomes an HTTP status.
#[derive(Debug, thiserror::Error)]
pub(super) enum Error {
    /// No route of the listener matches and it has no default upstream.
    #[error("no route matches")]
    NoRoute,
    /// The client's address is refused by `allow` / `deny`.
    #[error("client {client} is refused by allow/deny")]
    Forbidden {
        /// The client address the rules were checked on.
        client: std::net::IpAddr,
    },
    /// No server of the upstream is available.
    #[error("upstream `{upstream}`: no server available")]
    NoServer {
        /// The upstream's name.
        upstream: Arc<str>,
    },
    /// The request's `Content-Length` is larger than `max_request_body`:
    /// refused before any server is picked.
    #[error("request body of {length} bytes is larger than max_request_body ({max} bytes)")]
    BodyTooLarge {
        /// The declared length.
        length: u64,
        /// The limit.
        max: u64,
    },
    /// The request target is longer than `max_request_line`.
    #[error("request target of {length} bytes is longer than max_request_line ({max} bytes)")]
    LineTooLong {
        /// Its length.
        length: usize,
        /// The limit.
        max: usize,
    },
    /// More header fields than `max_request_headers` (HTTP/2: HTTP/1.1
    /// requests are refused by hyper, with the same status).
    #[error("{count} request header fields, more than max_request_headers ({max})")]
    TooManyHeaders {
        /// How many.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The last attempt failed (and no retry was allowed or left).
    #[error("upstream `{upstream}` server {server}: {failure}")]
    Failed {
        /// The upstream's name.
        upstream: Arc<str>,
        /// The server of the last attempt.
        server: Arc<str>,
        /// What went wrong.
        failure: Failure,
    },
}

/// How one attempt failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum Failure {
    /// No connection could be established.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The connection closed or failed before a response header arrived.
    #[error("no response: {0}")]
    Reset(#[source] hyper::Error),
    /// No response header within `read_timeout`.
    #[error("no response within {0:?}")]
    ReadTimeout(Duration),
    /// The client's body was not valid HTTP: the client's fault.
    #[error("the client sent a malformed request body")]
    ClientMalformed,
    /// The client went away before its body was whole: the client's fault.
    #[error("the client closed the connection during its upload")]
    ClientAborted,
    /// The client's body was too slow (`body_read_timeout`,
    /// `min_upload_rate`): the client's fault.
    #[error("{0}")]
    ClientTimeout(Stall),
    /// The client's body grew past `max_request_body` (this many bytes)
    /// while it was streamed: the client's fault.
    #[error("the client's request body passed max_request_body ({0} bytes)")]
    ClientTooLarge(u64),
}

/// The status nginx logs for a request whose client went away before the
/// response (not sent to anyone: the connection is gone).
pub(super) const CLIENT_CLOSED_REQUEST: u16 = 499;

impl Failure {
    fn is_timeout(&self) -> bool {
        matches!(
            self,
            Failure::Connect(ConnectError::Timeout(_)) | Failure::ReadTimeout(_)
        )
    }

    /// Whether the client, not the server, made the attempt fail: such a
    /// failure is never held against the server, counted as its attempt
    /// outcome, nor retried elsewhere (the body is gone either way).
    pub(super) fn is_client_fault(&self) -> bool {
        matches!(
            self,
            Failure::ClientMalformed
                | Failure::ClientAborted
                | Failure::ClientTimeout(_)
                | Failure::ClientTooLarge(_)
        )
    }

    /// The attempt outcome it counts as (a server's failures only).
    pub(super) fn outcome(&self) -> Outcome {
        match self {
            _ if self.is_timeout() => Outcome::Timeout,
            Failure::Connect(_) => Outcome::ConnectError,
            Failure::Reset(_)
            | Failure::ReadTimeout(_)
            | Failure::ClientMalformed
            | Failure::ClientAborted
            | Failure::ClientTimeout(_)
            | Failure::ClientTooLarge(_) => Outcome::Reset,
        }
    }

    /// Whether `retry_on` allows moving on after this failure.
    pub(super) fn retry_allowed(&self, retry_on: &RetryOn) -> bool {
        match self {
            _ if self.is_timeout() => retry_on.timeout,
            Failure::Connect(_) => retry_on.connect,
            Failure::Reset(_) | Failure::ReadTimeout(_) => retry_on.reset,
            Failure::ClientMalformed
            | Failure::ClientAborted
            | Failure::ClientTimeout(_)
            | Failure::ClientTooLarge(_) => false,
        }
    }
}

impl Error {
    /// The status a client sees for this error.
    pub(super) fn status(&self) -> StatusCode {
        match self {
            Error::NoRoute => StatusCode::NOT_FOUND,
            Error::Forbidden { .. } => StatusCode::FORBIDDEN,
            Error::Failed {
                failure: Failure::ClientMalformed,
                ..
            } => StatusCode::BAD_REQUEST,
            Error::Failed {
                failure: Failure::ClientAborted,
                ..
            } => StatusCode::from_u16(CLIENT_CLOSED_REQUEST).unwrap_or(StatusCode::BAD_REQUEST),
            Error::Failed {
                failure: Failure::ClientTimeout(_),
                ..
            } => StatusCode::REQUEST_TIMEOUT,
            Error::BodyTooLarge { .. }
            | Error::Failed {
                failure: Failure::ClientTooLarge(_),
                ..
            } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::LineTooLong { .. } => StatusCode::URI_TOO_LONG,
            Error::TooManyHeaders { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Error::Failed { failure, .. } if failure.is_timeout() => StatusCode::GATEWAY_TIMEOUT,
            Error::NoServer { .. } | Error::Failed { .. } => StatusCode::BAD_GATEWAY,
        }
    }
}

impl Error {
    /// Whether the client's connection must close after the answer: its
    /// body was cut off midway (or never read), so the rest of it would be
    /// read as the next request.
    pub(super) fn closes_connection(&self) -> bool {
        matches!(
            self,
            Error::BodyTooLarge { .. }
                | Error::Failed {
                    failure: Failure::ClientTimeout(_) | Failure::ClientTooLarge(_),
                    ..
                }
        )
    }

    /// Whether the request was refused for its body's size, whether
    /// declared or streamed (counted per listener).
    pub(super) fn is_too_large(&self) -> bool {
        self.status() == StatusCode::PAYLOAD_TOO_LARGE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_mapping() {
        assert_eq!(Error::NoRoute.status(), StatusCode::NOT_FOUND);
        let refused = Error::Forbidden {
            client: [10, 0, 0, 1].into(),
        };
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        let none = Error::NoServer {
            upstream: "app".into(),
        };
        assert_eq!(none.status(), StatusCode::BAD_GATEWAY);
        let failed = |failure| Error::Failed {
            upstream: "app".into(),
            server: "s".into(),
            failure,
        };
        let refused = ConnectError::Io(std::io::ErrorKind::ConnectionRefused.into());
        assert_eq!(
            failed(Failure::Connect(refused)).status(),
            StatusCode::BAD_GATEWAY
        );
        let timeout = ConnectError::Timeout(Duration::from_secs(1));
        assert_eq!(
            failed(Failure::Connect(timeout)).status(),
            StatusCode::GATEWAY_TIMEOUT
        );
        assert_eq!(
            failed(Failure::ReadTimeout(Duration::from_secs(1))).status(),
            StatusCode::GATEWAY_TIMEOUT
        );
        assert_eq!(failed(Failure::ClientMalformed).status(), StatusCode::BAD_REQUEST);
        assert_eq!(failed(Failure::ClientAborted).status().as_u16(), 499);
        for stall in [Stall::Timeout(Duration::from_secs(1)), Stall::Rate(1024)] {
            let error = failed(Failure::ClientTimeout(stall));
            assert_eq!(error.status(), StatusCode::REQUEST_TIMEOUT);
            assert!(error.closes_connection());
        }
        assert!(!failed(Failure::ClientMalformed).closes_connection());
        let streamed = failed(Failure::ClientTooLarge(10));
        assert_eq!(streamed.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(streamed.closes_connection() && streamed.is_too_large());
        assert!(Failure::ClientTooLarge(10).is_client_fault());
        assert!(!Failure::ClientTooLarge(10).retry_allowed(&RetryOn::default()));
        let declared = Error::BodyTooLarge { length: 11, max: 10 };
        assert_eq!(declared.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(declared.closes_connection() && declared.is_too_large());
        let line = Error::LineTooLong { length: 11, max: 10 };
        assert_eq!(line.status(), StatusCode::URI_TOO_LONG);
        let headers = Error::TooManyHeaders { count: 11, max: 10 };
        assert_eq!(headers.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        assert!(!line.closes_connection() && !headers.is_too_large());
    }
}
