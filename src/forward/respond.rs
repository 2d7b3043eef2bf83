//! Responses ginx makes itself: a `respond` route's answer, and the short
//! plain-text answer to a request that failed.
//!
//! This module owns their shape (status, `text/plain` body, `Location`);
//! which status a failure gets is [`super::error`]'s decision, and whether a
//! route responds is the routing table's ([`crate::table`]).

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;

use super::error::Error;
use super::headers::request_host;
use super::{Connection, ProxyBody};

/// A `respond` route's answer; `location`'s `{host}` is the request's host
/// without its port and `{uri}` its path and query.
pub(super) fn respond_route(
    status: StatusCode,
    body: Bytes,
    location: Option<&str>,
    req: &Request<Incoming>,
) -> Response<ProxyBody> {
    let mut response = respond(status, body);
    if let Some(template) = location {
        let host = request_host(req).map_or("", |h| crate::table::strip_port(h));
        let uri = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        let location = template.replace("{host}", host).replace("{uri}", uri);
        match HeaderValue::from_str(&location) {
            Ok(value) => {
                response.headers_mut().insert(header::LOCATION, value);
            }
            Err(_) => return respond(StatusCode::BAD_REQUEST, error_body(StatusCode::BAD_REQUEST)),
        }
    }
    response
}

fn respond(status: StatusCode, body: Bytes) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn error_body(status: StatusCode) -> Bytes {
    Bytes::from(format!(
        "{} {}\n",
        status.as_str(),
        status.canonical_reason().unwrap_or("Error")
    ))
}

/// The answer to a request of `version` that failed with `error`, logged
/// here once: as a warning if it is the server side's fault (5xx), else for
/// debugging.
pub(super) fn error_response(error: &Error, conn: &Connection, version: Version) -> Response<ProxyBody> {
    let status = error.status();
    if status.is_server_error() {
        tracing::warn!(listener = %conn.listener, client = %conn.client, %error, "{}", status);
    } else {
        tracing::debug!(listener = %conn.listener, client = %conn.client, %error, "{}", status);
    }
    let mut response = respond(status, error_body(status));
    // hyper would close an HTTP/1 connection whose request body is unread
    // anyway; saying so tells the client not to send its next request on
    // it. HTTP/2 has no such header: the stream ends, the connection stays.
    if error.closes_connection() && version < Version::HTTP_2 {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}
