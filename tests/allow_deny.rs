//! `allow` / `deny` on listeners, routes and `[admin]`: `deny` first, then
//! a non-empty `allow` must match, else a 403 ginx makes itself (never
//! sent to, nor counted against, an upstream); a route narrows its
//! listener's rules; a reload changes them. Clients are told apart by
//! their source address in 127.0.0.0/8.

mod support;

use std::net::{IpAddr, SocketAddr};

use support::*;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// The status line's code of `GET path` from `source` to `addr`.
async fn status_from(source: &str, addr: SocketAddr, path: &str) -> u16 {
    let request = format!("GET {path} HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n");
    let reply = raw_exchange_from(ip(source), addr, request.as_bytes()).await;
    reply
        .get(9..12)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {reply:?}"))
}

fn listener(keys: &str, backend: SocketAddr) -> String {
    format!(
        "[listener.web]\nbind = \"127.0.0.1:0\"\nupstream = \"app\"\n{keys}\n\n{}",
        upstream("app", &[backend])
    )
}

#[tokio::test]
async fn listener_deny_then_allow() {
    let backend = Backend::start("app").await;
    let keys = "allow = [\"127.0.0.0/29\"]\ndeny = [\"127.0.0.3\"]";
    let ginx = Ginx::start(&listener(keys, backend.addr), &[], &["web"]).await;
    let addr = ginx.addr("web");
    assert_eq!(status_from("127.0.0.2", addr, "/").await, 200);
    assert_eq!(
        status_from("127.0.0.3", addr, "/").await,
        403,
        "denied though allowed"
    );
    assert_eq!(status_from("127.0.0.9", addr, "/").await, 403, "not allowed");
    assert_eq!(backend.hits(), 1, "refused requests never reach the upstream");
    let metrics = scrape(ginx.admin_addr()).await;
    let sum = |keep: &dyn Fn(&str) -> bool| -> f64 {
        metrics.iter().filter(|(k, _)| keep(k)).map(|(_, v)| v).sum()
    };
    let refused = sum(&|k| k.starts_with("ginx_http_requests_total") && k.contains("class=\"4xx\""));
    assert_eq!(
        refused, 2.0,
        "403s are counted as the listener's responses: {metrics:?}"
    );
    let attempts = sum(&|k| k.starts_with("ginx_upstream_attempts_total"));
    assert_eq!(
        attempts, 1.0,
        "only the allowed request is an attempt: {metrics:?}"
    );
}

#[tokio::test]
async fn a_route_narrows_its_listener_and_unmatched_requests_get_the_listeners_rules() {
    let backend = Backend::start("app").await;
    let text = format!(
        "[listener.web]\nbind = \"127.0.0.1:0\"\ndeny = [\"127.0.0.4\"]\n\n\
         [[listener.web.route]]\npath = \"/private/\"\nupstream = \"app\"\nallow = [\"127.0.0.2\"]\n\n\
         [[listener.web.route]]\npath = \"/public/\"\nupstream = \"app\"\n\n\
         [[listener.web.route]]\npath = \"/maintenance\"\nrespond = {{ status = 503, body = \"later\" }}\ndeny = [\"127.0.0.5\"]\n\n{}",
        upstream("app", &[backend.addr])
    );
    let ginx = Ginx::start(&text, &[], &["web"]).await;
    let addr = ginx.addr("web");
    assert_eq!(status_from("127.0.0.2", addr, "/private/x").await, 200);
    assert_eq!(status_from("127.0.0.3", addr, "/private/x").await, 403);
    assert_eq!(status_from("127.0.0.3", addr, "/public/x").await, 200);
    // The listener's deny holds on every route, and on no route at all.
    assert_eq!(status_from("127.0.0.4", addr, "/public/x").await, 403);
    assert_eq!(status_from("127.0.0.4", addr, "/nowhere").await, 403);
    assert_eq!(status_from("127.0.0.3", addr, "/nowhere").await, 404);
    // respond routes too.
    assert_eq!(status_from("127.0.0.3", addr, "/maintenance").await, 503);
    assert_eq!(status_from("127.0.0.5", addr, "/maintenance").await, 403);
    assert_eq!(backend.hits(), 2);
}

#[tokio::test]
async fn a_reload_changes_the_rules() {
    let backend = Backend::start("app").await;
    let ginx = Ginx::start(&listener("deny = [\"127.0.0.3\"]", backend.addr), &[], &["web"]).await;
    let addr = ginx.addr("web");
    assert_eq!(status_from("127.0.0.3", addr, "/").await, 403);
    assert_eq!(status_from("127.0.0.2", addr, "/").await, 200);
    ginx.write("ginx.toml", &listener("deny = [\"127.0.0.2\"]", backend.addr));
    assert!(ginx.wait_generation(2).await, "{}", ginx.log_text());
    assert_eq!(status_from("127.0.0.3", addr, "/").await, 200);
    assert_eq!(status_from("127.0.0.2", addr, "/").await, 403);
    // The reload says what changed.
    assert!(
        ginx.wait_log("deny [127.0.0.3/32] -> [127.0.0.2/32]", DEADLINE)
            .await,
        "{}",
        ginx.log_text()
    );
}

#[tokio::test]
async fn admin_allow_deny_on_the_peer() {
    let backend = Backend::start("app").await;
    let text = format!(
        "{}\n[admin]\nbind = \"127.0.0.1:0\"\ndeny = [\"127.0.0.3\"]\n",
        listener("", backend.addr)
    );
    let ginx = Ginx::start(&text, &[], &["web"]).await;
    let admin = ginx.admin_addr();
    assert_eq!(status_from("127.0.0.3", admin, "/metrics").await, 403);
    assert_eq!(status_from("127.0.0.2", admin, "/metrics").await, 200);
}
