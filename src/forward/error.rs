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
use crate::upstream::ConnectError;

/// Why a request could not be proxied. [`Error::status`] is the one place
/// where a failure becomes an HTTP status.
#[derive(Debug, thiserror::Error)]
pub(super) enum Error {
    /// No route of the listener matches and it has no default upstream.
    #[error("no route matches")]
    NoRoute,
    /// No server of the upstream is available.
    #[error("upstream `{upstream}`: no server available")]
    NoServer {
        /// The upstream's name.
        upstream: Arc<str>,
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
}

impl Failure {
    fn is_timeout(&self) -> bool {
        matches!(
            self,
            Failure::Connect(ConnectError::Timeout(_)) | Failure::ReadTimeout(_)
        )
    }

    /// The attempt outcome it counts as.
    pub(super) fn outcome(&self) -> Outcome {
        match self {
            _ if self.is_timeout() => Outcome::Timeout,
            Failure::Connect(_) => Outcome::ConnectError,
            Failure::Reset(_) | Failure::ReadTimeout(_) => Outcome::Reset,
        }
    }

    /// Whether `retry_on` allows moving on after this failure.
    pub(super) fn retry_allowed(&self, retry_on: &RetryOn) -> bool {
        match self {
            _ if self.is_timeout() => retry_on.timeout,
            Failure::Connect(_) => retry_on.connect,
            Failure::Reset(_) | Failure::ReadTimeout(_) => retry_on.reset,
        }
    }
}

impl Error {
    /// The status a client sees for this error.
    pub(super) fn status(&self) -> StatusCode {
        match self {
            Error::NoRoute => StatusCode::NOT_FOUND,
            Error::Failed { failure, .. } if failure.is_timeout() => StatusCode::GATEWAY_TIMEOUT,
            Error::NoServer { .. } | Error::Failed { .. } => StatusCode::BAD_GATEWAY,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_mapping() {
        assert_eq!(Error::NoRoute.status(), StatusCode::NOT_FOUND);
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
    }
}
