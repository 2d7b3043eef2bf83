//! Requests that ask to switch protocols (WebSocket or any other `Upgrade`).
//!
//! This module owns the decision that a request is an upgrade and its one
//! attempt: a new connection of its own, the upgrade headers this hop is
//! asked to pass on, and, on a 101, the [`Tunnel`] it hands both sides to.
//! Copying bytes once both sides have switched is [`super::tunnel`]'s job.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;

use super::error::{Error, Failure};
use super::headers::{remove_hop_by_hop, set_host, upstream_request, Message};
use super::retry::{failed, note_failure, note_response, upstream_response, Forwarded, ReadDeadline};
use super::tunnel::Tunnel;
use super::{Connection, ProxyBody};
use crate::balance::header_items;
use crate::config;
use crate::upstream::{InFlight, ServerState, UpstreamBody, UpstreamPool};

/// The protocol a request asks to switch to (`Connection: upgrade` plus
/// `Upgrade: PROTOCOL`, HTTP/1.1 only), unless it is `h2c`: that upgrade
/// is for this hop, and its `HTTP2-Settings` are never forwarded.
pub(super) fn upgrade_protocol(req: &Request<Incoming>) -> Option<HeaderValue> {
    if req.version() != Version::HTTP_11 {
        return None;
    }
    let protocol = req.headers().get(header::UPGRADE)?;
    let asked = header_items(req.headers(), header::CONNECTION, ',')
        .any(|token| token.eq_ignore_ascii_case("upgrade"));
    (asked && !protocol.as_bytes().eq_ignore_ascii_case(b"h2c")).then(|| protocol.clone())
}

/// Forward a request that asks to switch protocols, on a new connection of
/// its own (never pooled), with one attempt: no retries, whatever fails.
/// A 101 answer opens a [`Tunnel`]; any other answer is an ordinary
/// response, after which the connection closes. `key` is the request's
/// hash key, for the policy.
pub(super) async fn forward_upgrade(
    mut req: Request<Incoming>,
    protocol: HeaderValue,
    pool: &UpstreamPool,
    key: u64,
    strip: Option<usize>,
    conn: &Arc<Connection>,
    new_id: Option<HeaderValue>,
) -> Forwarded {
    let settings = &pool.settings;
    let Some(server) = pool.candidates(key).next() else {
        return Err(Error::NoServer {
            upstream: pool.name.clone(),
        });
    };
    let client_side = hyper::upgrade::on(&mut req);
    let req = upgrade_request(req, protocol, server, strip, conn, new_id);
    let failed = |failure: Failure| {
        note_failure(pool, server, &failure);
        failed(pool, server, failure)
    };
    let connected = server
        .connect_for_upgrade(&pool.connector(server), settings.connect_timeout)
        .await;
    let mut sender = match connected {
        Ok(sender) => sender,
        Err(error) => return Err(failed(Failure::Connect(error))),
    };
    let in_flight = server.start_request();
    let sent = tokio::select! {
        biased;
        sent = sender.try_send_request(req) => sent,
        () = ReadDeadline::new(settings.read_timeout, None, &conn.wake_by) => {
            return Err(failed(Failure::ReadTimeout(settings.read_timeout)));
        }
    };
    let response = match sent {
        Ok(response) => response,
        Err(error) => return Err(failed(Failure::Reset(error.into_error()))),
    };
    let status = response.status();
    note_response(pool, server, status);
    if status != StatusCode::SWITCHING_PROTOCOLS {
        // The connection goes when its body is done: it was opened for this
        // request only.
        return Ok((
            upstream_response(response, None, in_flight, settings.read_timeout),
            server.clone(),
        ));
    }
    let switched = open_tunnel(response, client_side, in_flight, settings, conn);
    Ok((switched, server.clone()))
}

/// The upgrade request as sent to `server`: rewritten like any request,
/// with a `Host` even from an HTTP/1.0 client, and the upgrade asked again.
fn upgrade_request(
    req: Request<Incoming>,
    protocol: HeaderValue,
    server: &ServerState,
    strip: Option<usize>,
    conn: &Connection,
    new_id: Option<HeaderValue>,
) -> Request<UpstreamBody> {
    let mut req = upstream_request(req, strip, conn, new_id).map(|body| UpstreamBody::Client(body, None));
    if !req.headers().contains_key(header::HOST) {
        set_host(&mut req, server);
    }
    // Hop-by-hop, yet they are what this hop is asked to do.
    req.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    req.headers_mut().insert(header::UPGRADE, protocol);
    req
}

/// The server switched protocols: start the tunnel between `client_side`
/// and the server's side of `response`, and give the client its 101.
fn open_tunnel(
    mut response: Response<Incoming>,
    client_side: OnUpgrade,
    in_flight: InFlight,
    settings: &config::Upstream,
    conn: &Arc<Connection>,
) -> Response<ProxyBody> {
    let upstream_side = hyper::upgrade::on(&mut response);
    let (mut parts, _) = response.into_parts();
    let switched_to = parts.headers.get(header::UPGRADE).cloned();
    remove_hop_by_hop(&mut parts.headers, Message::Response);
    parts
        .headers
        .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    if let Some(protocol) = switched_to {
        parts.headers.insert(header::UPGRADE, protocol);
    }
    let tunnel = Tunnel {
        client: client_side,
        upstream: upstream_side,
        idle_timeout: settings.tunnel_timeout,
        stop: conn.stop.clone(),
        grace: conn.live.load().shutdown_timeout,
        in_flight,
        _connection: conn.clone(),
    };
    conn.tasks.spawn(tunnel.run());
    Response::from_parts(parts, ProxyBody::full(Bytes::new()))
}
