//! What an upstream sends cannot make ginx hold memory without a bound: a
//! response head larger than ginx takes is answered `502` (as nginx does),
//! and the next request works.

mod support;

use std::net::SocketAddr;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A server that answers every request with a 200 whose head carries one
/// header of `header_bytes` bytes; a request for `/small` gets a plain 200.
async fn big_head_server(header_bytes: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Some(head) = read_head(&mut stream).await else {
                    return;
                };
                let response = match head.starts_with(b"GET /small ") {
                    true => {
                        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nsmall".to_vec()
                    }
                    false => {
                        let mut r = b"HTTP/1.1 200 OK\r\nx-big: ".to_vec();
                        r.resize(r.len() + header_bytes, b'a');
                        r.extend_from_slice(b"\r\ncontent-length: 3\r\nconnection: close\r\n\r\nbig");
                        r
                    }
                };
                let _ = stream.write_all(&response).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_oversized_response_head_is_a_502_and_the_next_request_works() {
    let upstream = big_head_server(200 * 1024).await;
    let config = web(&format!("servers = [\"{upstream}\"]\nretries = 0\n"));
    let ginx = Ginx::start(&config, &[], &["web"]).await;
    let addr = ginx.addr("web");
    let reply = get(addr, "/big").await;
    assert_eq!(reply.status.as_u16(), 502, "{}", reply.text());
    assert!(
        ginx.wait_log("message head is too large", DEADLINE).await,
        "the reason is logged:\n{}",
        ginx.log_text()
    );
    let reply = get(addr, "/small").await;
    assert_eq!((reply.status.as_u16(), reply.text().as_str()), (200, "small"));
}

#[tokio::test]
async fn a_response_head_under_the_cap_is_relayed() {
    let upstream = big_head_server(48 * 1024).await;
    let config = web(&format!("servers = [\"{upstream}\"]\n"));
    let ginx = Ginx::start(&config, &[], &["web"]).await;
    let reply = get(ginx.addr("web"), "/big").await;
    assert_eq!((reply.status.as_u16(), reply.text().as_str()), (200, "big"));
}

/// A server that answers with a 100-byte body, sends 10 bytes of it and
/// then stalls, its connection open, until the test ends.
async fn stalling_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let head = b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789";
                let _ = stream.write_all(head).await;
                // Hold the connection without a byte more.
                let _ = stream.read(&mut buf).await;
                tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
            });
        }
    });
    addr
}

/// `read_timeout` also applies between two reads of a response body (as
/// nginx's `proxy_read_timeout`): a server that stalls mid-body does not
/// hold the client; the client sees the response cut short, never a
/// complete-looking one.
#[tokio::test]
async fn a_response_body_that_stalls_is_cut_after_read_timeout() {
    let upstream = stalling_server().await;
    let config = web(&format!("servers = [\"{upstream}\"]\nread_timeout = \"1s\"\n"));
    let ginx = Ginx::start(&config, &[], &["web"]).await;
    let mut client = tokio::net::TcpStream::connect(ginx.addr("web")).await.unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let ended = tokio::time::timeout(DEADLINE, client.read_to_end(&mut got)).await;
    assert!(
        ended.is_ok(),
        "the connection was not closed; got {:?}",
        String::from_utf8_lossy(&got)
    );
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text:?}");
    assert!(text.ends_with("0123456789"), "only the 10 bytes sent: {text:?}");
    assert!(ginx.wait_log("upstream response body stalled", DEADLINE).await);
}
