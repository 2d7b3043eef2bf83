//! WebSocket (and any `Upgrade` answered 101) tunnelled through ginx.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use hyper::StatusCode;
use support::*;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// A WebSocket server that echoes every message; counts the upgrades it
/// accepted.
async fn echo_server() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let upgrades = Arc::new(AtomicUsize::new(0));
    let counted = upgrades.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                counted.fetch_add(1, Ordering::SeqCst);
                while let Some(Ok(message)) = ws.next().await {
                    if message.is_close() {
                        // tungstenite answers the close itself, on the next read.
                        continue;
                    }
                    if ws.send(message).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, upgrades)
}

type Client = WebSocketStream<TcpStream>;

async fn connect(addr: SocketAddr, path: &str) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let url = format!("ws://app.test{path}");
    tokio_tungstenite::client_async(url, stream)
        .await
        .map(|(ws, _)| ws)
}

async fn echo(ws: &mut Client, message: Message) {
    ws.send(message.clone()).await.unwrap();
    let answer = tokio::time::timeout(DEADLINE, ws.next())
        .await
        .expect("echo within the deadline")
        .expect("socket open")
        .expect("a message");
    assert_eq!(answer, message);
}

#[tokio::test]
async fn messages_both_ways_and_the_tunnel_survives_a_reload() {
    let (ws_addr, upgrades) = echo_server().await;
    let ginx = Ginx::start(
        &web_with_includes(),
        &[("conf.d/app.toml", &upstream("app", &[ws_addr]))],
        &["web"],
    )
    .await;
    let addr = ginx.addr("web");

    let mut ws = connect(addr, "/chat").await.expect("handshake through ginx");
    assert_eq!(upgrades.load(Ordering::SeqCst), 1);
    echo(&mut ws, Message::text("hello")).await;
    echo(&mut ws, Message::binary(vec![0u8, 1, 2, 255])).await;
    let big: Vec<u8> = pattern(256 * 1024);
    echo(&mut ws, Message::binary(big)).await;

    // A reload (a server added) does not cut the established tunnel.
    let other = Backend::start("other").await;
    ginx.write("conf.d/app.toml", &upstream("app", &[ws_addr, other.addr]));
    assert!(ginx.wait_generation(2).await, "reload applied");
    echo(&mut ws, Message::text("still here")).await;

    // Plain HTTP on the same listener still works.
    let reply = get(addr, "/plain").await;
    assert_eq!(reply.status, StatusCode::OK);

    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn an_upgrade_refused_upstream_is_an_ordinary_response() {
    let refusing = Backend::start("refusing").await;
    refusing.set_status(400);
    let ginx = Ginx::start(&one_listener(&[refusing.addr]), &[], &["web"]).await;
    match connect(ginx.addr("web"), "/ws").await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        }
        other => panic!("expected the upstream's 400, got {:?}", other.map(|_| ())),
    }
    // The upstream saw the upgrade asked for.
    let seen = refusing.last_seen();
    assert_eq!(seen.header("upgrade").as_deref(), Some("websocket"));
    assert_eq!(seen.header("connection").as_deref(), Some("upgrade"));
    assert!(seen.header("sec-websocket-key").is_some());
}

#[tokio::test]
async fn tunnel_bytes_and_connection_are_counted() {
    let (ws_addr, _) = echo_server().await;
    let config = format!("{ADMIN}\n{}", one_listener(&[ws_addr]));
    let ginx = Ginx::start(&config, &[], &["web"]).await;
    assert!(ginx.wait_log("admin listening", DEADLINE).await);
    let metric = |m: &std::collections::HashMap<String, f64>, name: &str| {
        m.get(&format!("ginx_{name}{{listener=\"web\"}}"))
            .copied()
            .unwrap_or(0.0)
    };
    let mut ws = connect(ginx.addr("web"), "/").await.unwrap();
    let before = scrape(ginx.admin_addr()).await;
    let payload = pattern(200 * 1024);
    for _ in 0..5 {
        echo(&mut ws, Message::binary(payload.clone())).await;
    }
    let after = scrape(ginx.admin_addr()).await;
    let received =
        metric(&after, "client_received_bytes_total") - metric(&before, "client_received_bytes_total");
    let sent = metric(&after, "client_sent_bytes_total") - metric(&before, "client_sent_bytes_total");
    assert!(received >= 1_000_000.0, "received {received}");
    assert!(sent >= 1_000_000.0, "sent {sent}");
    // The tunnel keeps its client connection counted open.
    assert_eq!(metric(&after, "client_connections_open"), 1.0);

    ws.close(None).await.unwrap();
    // The closing handshake is echoed back through the tunnel.
    let end = tokio::time::timeout(DEADLINE, ws.next())
        .await
        .expect("close echoed");
    assert!(matches!(end, Some(Ok(Message::Close(_))) | None), "{end:?}");
    drop(ws);
    let admin = ginx.admin_addr();
    let closed = async || metric(&scrape(admin).await, "client_connections_open") == 0.0;
    assert!(
        eventually(DEADLINE, closed).await,
        "tunnel closed with its client"
    );
}

#[tokio::test]
async fn shutdown_closes_tunnels_after_the_shutdown_timeout() {
    let (ws_addr, _) = echo_server().await;
    let config = format!(
        "[global]\nshutdown_timeout = \"1s\"\n\n{}",
        one_listener(&[ws_addr])
    );
    let mut ginx = Ginx::start(&config, &[], &["web"]).await;
    let mut ws = connect(ginx.addr("web"), "/").await.unwrap();
    echo(&mut ws, Message::text("before")).await;
    let asked = std::time::Instant::now();
    ginx.signal("TERM");
    // Still working during the drain.
    echo(&mut ws, Message::text("draining")).await;
    assert_eq!(ginx.wait_exit(DEADLINE).await, Some(0));
    let waited = asked.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(900),
        "exited after {waited:?}"
    );
    let end = tokio::time::timeout(DEADLINE, ws.next())
        .await
        .expect("tunnel closed");
    assert!(!matches!(end, Some(Ok(Message::Text(_)))), "{end:?}");
}
