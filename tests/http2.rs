//! HTTP/2 from clients: h2c with prior knowledge on a plaintext listener,
//! forwarded upstream as HTTP/1.1.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use support::*;

type Body = BoxBody<Bytes, std::io::Error>;

fn empty() -> Body {
    Full::new(Bytes::new()).map_err(|never| match never {}).boxed()
}

async fn two_backends() -> (Backend, Backend, Ginx) {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let ginx = Ginx::start(&one_listener(&[a.addr, b.addr]), &[], &["web"]).await;
    (a, b, ginx)
}

#[tokio::test]
async fn h2c_request_is_forwarded_as_http1_with_forwarded_headers() {
    let (a, b, ginx) = two_backends().await;
    let mut h2 = h2c_connect::<Body>(ginx.addr("web")).await;
    let req = Request::get("http://example.test:8080/some/path?q=1")
        .header("x-forwarded-for", "10.0.0.1")
        .body(empty())
        .unwrap();
    let reply = send_h2(&mut h2, req).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    let answered = reply.text();
    assert!(answered == "a" || answered == "b", "body {answered:?}");
    let backend = if answered == "a" { &a } else { &b };
    let seen = backend.last_seen();
    assert_eq!(seen.uri, "/some/path?q=1", "origin-form target upstream");
    assert_eq!(seen.header("host").as_deref(), Some("example.test:8080"));
    assert_eq!(
        seen.header("x-forwarded-host").as_deref(),
        Some("example.test:8080")
    );
    assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(
        seen.header("x-forwarded-for").as_deref(),
        Some("10.0.0.1, 127.0.0.1")
    );
    assert!(seen.header("x-request-id").is_some());

    // Hop-by-hop headers of the upstream response never reach an h2 client
    // (the h2 client would reject the response as malformed otherwise).
    let req = Request::get("http://example.test/__hop").body(empty()).unwrap();
    let reply = send_h2(&mut h2, req).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.headers.get("keep-alive").is_none());
    assert!(reply.headers.get("x-private").is_none());
    assert_eq!(reply.headers["x-end-to-end"], "kept");
}

#[tokio::test]
async fn hundred_concurrent_streams_on_one_connection_round_robin() {
    let (a, b, ginx) = two_backends().await;
    let h2 = h2c_connect::<Body>(ginx.addr("web")).await;
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let mut h2 = h2.clone();
            tokio::spawn(async move {
                // Slow enough that the streams really overlap.
                let req = Request::get(format!("http://localhost/__sleep/{}", 50 + i % 5))
                    .body(empty())
                    .unwrap();
                send_h2(&mut h2, req).await.unwrap()
            })
        })
        .collect();
    let mut bodies = Vec::new();
    for task in tasks {
        let reply = task.await.unwrap();
        assert_eq!(reply.status, StatusCode::OK);
        bodies.push(reply.text());
    }
    let tally = tally(&bodies);
    assert_eq!(tally.get("a"), Some(&50), "{tally:?}");
    assert_eq!(tally.get("b"), Some(&50), "{tally:?}");
    assert_eq!(a.traffic() + b.traffic(), 100);
}

#[tokio::test]
async fn big_bodies_stream_both_ways_over_h2() {
    let (_a, _b, ginx) = two_backends().await;
    let mut h2 = h2c_connect::<Body>(ginx.addr("web")).await;
    const SIZE: usize = 8 * 1024 * 1024 + 17;

    let req = Request::post("http://localhost/__upload")
        .body(pattern_body(SIZE).boxed())
        .unwrap();
    let reply = send_h2(&mut h2, req).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.text(),
        format!("{SIZE} {}", sha256_hex(&pattern_whole(SIZE)))
    );

    let req = Request::get(format!("http://localhost/__download/{SIZE}"))
        .body(empty())
        .unwrap();
    let reply = send_h2(&mut h2, req).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body.len(), SIZE);
    assert_eq!(sha256_hex(&reply.body), sha256_hex(&pattern_whole(SIZE)));
}

/// The bytes [`pattern_body`] streams: its 64 KiB chunk repeated.
fn pattern_whole(size: usize) -> Vec<u8> {
    let chunk = pattern(64 * 1024);
    chunk.iter().copied().cycle().take(size).collect()
}

#[tokio::test]
async fn http1_still_served_on_the_same_listener() {
    let (_a, _b, ginx) = two_backends().await;
    let reply = get(ginx.addr("web"), "/").await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn curl_http2_prior_knowledge() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("curl not found; skipping");
        return;
    }
    let (_a, _b, ginx) = two_backends().await;
    let url = format!("http://{}/x", ginx.addr("web"));
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args([
                "-sS",
                "--http2-prior-knowledge",
                "-o",
                "-",
                "-w",
                " %{http_version} %{http_code}",
            ])
            .arg(&url)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.ends_with(" 2 200") && (stdout.starts_with('a') || stdout.starts_with('b')),
        "curl said {stdout:?}"
    );
}

#[tokio::test]
async fn idle_h2_connection_is_closed_after_header_read_timeout() {
    let a = Backend::start("a").await;
    let config = format!(
        "[global]\nheader_read_timeout = \"1s\"\n\n{}",
        one_listener(&[a.addr])
    );
    let ginx = Ginx::start(&config, &[], &["web"]).await;
    let mut h2 = h2c_connect::<Body>(ginx.addr("web")).await;
    let req = Request::get("http://localhost/").body(empty()).unwrap();
    assert_eq!(send_h2(&mut h2, req).await.unwrap().status, StatusCode::OK);
    assert!(
        eventually(Duration::from_secs(5), || h2.is_closed()).await,
        "idle h2 connection still open"
    );
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_h2_stream_finish() {
    let a = Backend::start("a").await;
    let mut ginx = Ginx::start(&one_listener(&[a.addr]), &[], &["web"]).await;
    let mut h2 = h2c_connect::<Body>(ginx.addr("web")).await;
    let slow = tokio::spawn(async move {
        let req = Request::get("http://localhost/__sleep/700")
            .body(empty())
            .unwrap();
        send_h2(&mut h2, req).await
    });
    assert!(eventually(DEADLINE, || a.hits() == 1).await);
    ginx.signal("TERM");
    let reply = slow.await.unwrap().expect("in-flight stream answered");
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "a");
    assert_eq!(ginx.wait_exit(DEADLINE).await, Some(0));
}

#[tokio::test]
async fn read_timeout_is_a_504_for_an_h2_client_too() {
    // hyper runs each stream in a task of its own; the connection's tick
    // must still reach it for the checked `read_timeout` to fire.
    let a = Backend::start("a").await;
    let config = web(&format!(
        "read_timeout = \"1s\"\nservers = {}\n",
        servers(&[a.addr])
    ));
    let ginx = Ginx::start(&config, &[], &["web"]).await;
    let mut h2 = h2c_connect::<Body>(ginx.addr("web")).await;
    let req = Request::get("http://localhost/__sleep/8000")
        .body(empty())
        .unwrap();
    let reply = tokio::time::timeout(DEADLINE, send_h2(&mut h2, req))
        .await
        .expect("504 before the deadline")
        .unwrap();
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
}
