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
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
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
