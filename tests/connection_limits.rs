//! Connection limits as clients see them: `max_connections` (per listener
//! and `[global]`) stops accepting until a connection closes, then serves
//! the connection the backlog held; `max_connections_per_ip` closes a
//! connection from an address already at its limit, unread;
//! `max_requests_per_connection` ends an HTTP/1.1 connection with
//! `Connection: close` and an HTTP/2 one with GOAWAY. Counted in /metrics;
//! bad values are located by `--check`.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// How long a test waits to show that a held-back connection gets no
/// answer: there is no event for "nothing happened".
const HELD: Duration = Duration::from_secs(1);

/// A listener `NAME` on port 0 whose every request gets `200 ok`, plus
/// `extra` keys in its table.
fn respond_listener(name: &str, extra: &str) -> String {
    format!(
        "[listener.{name}]\nbind = \"127.0.0.1:0\"\n{extra}\n\
         [[listener.{name}.route]]\npath = \"/\"\nrespond = {{ status = 200, body = \"ok\\n\" }}\n"
    )
}

/// ginx with one [`respond_listener`] `web` that has `extra` keys.
async fn web_with(extra: &str) -> Ginx {
    Ginx::start(&respond_listener("web", extra), &[], &["web"]).await
}

/// Send `GET /` on `stream` (kept alive).
async fn send_get(stream: &mut TcpStream) {
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: limits.test\r\n\r\n")
        .await
        .unwrap();
}

/// Read one whole response (head and `Content-Length` body) from `stream`;
/// its head in lower case, or `None` if the connection ended first.
async fn read_response(stream: &mut TcpStream) -> Option<String> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&data[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    while data.len() < head_end + length {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    }
    Some(head)
}

/// A kept-alive connection to `addr` that has had one `200` answer: ginx
/// has admitted it and counts it open.
async fn served_connection(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    send_get(&mut stream).await;
    let head = tokio::time::timeout(DEADLINE, read_response(&mut stream))
        .await
        .expect("an answer in time")
        .expect("an answer");
    assert!(head.starts_with("http/1.1 200"), "{head}");
    stream
}

/// Whether `stream` gets no byte for [`HELD`]: held back, not refused.
async fn no_answer_for_a_while(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    tokio::time::timeout(HELD, stream.read(&mut byte)).await.is_err()
}

/// ginx's user plus system CPU time, in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) in parentheses.
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Wait until the held-back `stream` is answered `200`.
async fn answered(stream: &mut TcpStream) -> bool {
    matches!(
        tokio::time::timeout(DEADLINE, read_response(stream)).await,
        Ok(Some(head)) if head.starts_with("http/1.1 200")
    )
}

#[tokio::test]
async fn listener_limit_holds_the_next_connection_until_one_closes() {
    let ginx = web_with("max_connections = 2").await;
    let addr = ginx.addr("web");
    let first = served_connection(addr).await;
    let _second = served_connection(addr).await;

    // The third connects (the kernel's backlog) but is not served...
    let mut third = TcpStream::connect(addr).await.unwrap();
    send_get(&mut third).await;
    let cpu_before = cpu_ticks(ginx.pid());
    assert!(
        no_answer_for_a_while(&mut third).await,
        "a third connection was served"
    );
    // ...and waiting for it costs no CPU: nothing polls or spins (a
    // spinning loop would use about HELD of CPU; 1 s is 100 ticks).
    let used = cpu_ticks(ginx.pid()) - cpu_before;
    assert!(used < 50, "ginx used {used} ticks while at its limit");

    // One closes: the held connection is served, the limit still holds.
    drop(first);
    assert!(answered(&mut third).await, "the held connection was not served");
    let admin = ginx.admin_addr();
    let paused = r#"ginx_client_connection_limit_pauses_total{listener="web",limit="listener"}"#;
    assert!(eventually(DEADLINE, async || scrape(admin).await[paused] >= 1.0).await);
    let m = scrape(admin).await;
    assert_eq!(m[r#"ginx_client_connections_open{listener="web"}"#], 2.0);
    assert_eq!(
        m[r#"ginx_client_connection_limit_pauses_total{listener="web",limit="global"}"#],
        0.0
    );
}

#[tokio::test]
async fn global_limit_is_shared_by_every_listener() {
    let config = format!(
        "[global]\nmax_connections = 2\n\n{}\n{}",
        respond_listener("web", ""),
        respond_listener("api", "")
    );
    let ginx = Ginx::start(&config, &[], &["web", "api"]).await;
    let _on_web = served_connection(ginx.addr("web")).await;
    let on_api = served_connection(ginx.addr("api")).await;

    let mut third = TcpStream::connect(ginx.addr("web")).await.unwrap();
    send_get(&mut third).await;
    assert!(
        no_answer_for_a_while(&mut third).await,
        "a third connection was served"
    );
    // A connection of the other listener frees the place.
    drop(on_api);
    assert!(answered(&mut third).await, "the held connection was not served");
    let admin = ginx.admin_addr();
    let paused = r#"ginx_client_connection_limit_pauses_total{listener="web",limit="global"}"#;
    let paused_api = r#"ginx_client_connection_limit_pauses_total{listener="api",limit="global"}"#;
    assert!(
        eventually(DEADLINE, async || {
            let m = scrape(admin).await;
            m[paused] + m[paused_api] >= 1.0
        })
        .await
    );
}

#[tokio::test]
async fn a_reload_that_raises_the_limit_serves_the_held_connection() {
    let ginx = web_with("max_connections = 1").await;
    let addr = ginx.addr("web");
    let _first = served_connection(addr).await;
    let mut second = TcpStream::connect(addr).await.unwrap();
    send_get(&mut second).await;
    assert!(
        no_answer_for_a_while(&mut second).await,
        "a second connection was served"
    );

    ginx.write("ginx.toml", &respond_listener("web", "max_connections = 2"));
    assert!(ginx.wait_generation(2).await, "the reload was not applied");
    // Served while the first is still open: the waiting loop read the new
    // limit.
    assert!(answered(&mut second).await, "the held connection was not served");
}

/// A connection to `addr` from `local` (any port).
async fn connect_from(local: &str, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{local}:0").parse().unwrap()).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Whether ginx closes `stream` without a byte of answer.
async fn closed_unanswered(stream: &mut TcpStream) -> bool {
    let mut buf = Vec::new();
    let read = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut buf)).await;
    // A reset is a close too; either way nothing was answered.
    matches!(read, Ok(Ok(0)) | Ok(Err(_))) && buf.is_empty()
}

#[tokio::test]
async fn per_ip_limit_closes_a_second_connection_from_the_same_address() {
    let ginx = web_with("max_connections_per_ip = 1").await;
    let addr = ginx.addr("web");
    let first = served_connection(addr).await;

    let mut second = connect_from("127.0.0.1", addr).await;
    send_get(&mut second).await;
    assert!(
        closed_unanswered(&mut second).await,
        "a second connection from 127.0.0.1 was served"
    );

    // Another address has its own count.
    let mut other = connect_from("127.0.0.2", addr).await;
    send_get(&mut other).await;
    assert!(answered(&mut other).await, "127.0.0.2 was not served");

    let admin = ginx.admin_addr();
    let rejected = r#"ginx_client_connections_rejected_per_ip_total{listener="web"}"#;
    assert_eq!(scrape(admin).await[rejected], 1.0);

    // Once the first closes, 127.0.0.1 is served again (its entry went).
    drop(first);
    assert!(
        eventually(DEADLINE, async || {
            let mut again = connect_from("127.0.0.1", addr).await;
            send_get(&mut again).await;
            answered(&mut again).await
        })
        .await
    );
}

#[tokio::test]
async fn max_requests_ends_an_http1_connection_with_connection_close() {
    let ginx = web_with("max_requests_per_connection = 3").await;
    let mut stream = TcpStream::connect(ginx.addr("web")).await.unwrap();
    for n in 1..=3 {
        send_get(&mut stream).await;
        let head = tokio::time::timeout(DEADLINE, read_response(&mut stream))
            .await
            .expect("an answer in time")
            .unwrap_or_else(|| panic!("no answer to request {n}"));
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert_eq!(head.contains("connection: close"), n == 3, "response {n}: {head}");
    }
    let mut rest = Vec::new();
    let read = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut rest)).await;
    assert!(matches!(read, Ok(Ok(0))), "the connection did not end: {read:?}");
    let admin = ginx.admin_addr();
    let closed = r#"ginx_client_connections_max_requests_total{listener="web"}"#;
    assert_eq!(scrape(admin).await[closed], 1.0);
}

type Body = BoxBody<Bytes, std::io::Error>;

fn empty() -> Body {
    Full::new(Bytes::new()).map_err(|never| match never {}).boxed()
}

#[tokio::test]
async fn max_requests_sends_goaway_on_http2_and_open_streams_finish() {
    let backend = Backend::start("a").await;
    let config = format!(
        "[listener.web]\nbind = \"127.0.0.1:0\"\nupstream = \"app\"\nmax_requests_per_connection = 3\n\n{}",
        upstream("app", &[backend.addr])
    );
    let ginx = Ginx::start(&config, &[], &["web"]).await;
    let h2 = h2c_connect::<Body>(ginx.addr("web")).await;
    // Three streams at once, slow upstream: the third is the last, and the
    // two before it are still open when the GOAWAY goes out.
    let streams: Vec<_> = (0..3)
        .map(|_| {
            let mut h2 = h2.clone();
            tokio::spawn(async move {
                let req = Request::get("http://limits.test/__sleep/300")
                    .body(empty())
                    .unwrap();
                send_h2(&mut h2, req).await
            })
        })
        .collect();
    for stream in streams {
        let reply = stream
            .await
            .unwrap()
            .expect("a stream open before GOAWAY finishes");
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.text(), "a");
    }
    assert!(
        eventually(DEADLINE, || h2.is_closed()).await,
        "the HTTP/2 connection did not end after max_requests_per_connection"
    );
    let admin = ginx.admin_addr();
    let closed = r#"ginx_client_connections_max_requests_total{listener="web"}"#;
    assert_eq!(scrape(admin).await[closed], 1.0);
}

#[test]
fn bad_limits_are_located() {
    let dir = dir_with(&[(
        "ginx.toml",
        "[global]\nmax_connections = 0\n\n\
         [listener.web]\nbind = \"127.0.0.1:8080\"\nupstream = \"app\"\n\
         max_connections_per_ip = -1\nmax_requests_per_connection = 4294967296\n\n\
         [upstream.app]\nservers = [\"127.0.0.1:9001\"]\n",
    )]);
    let (code, _, stderr) = check(dir.path());
    assert_eq!(code, 1, "{stderr}");
    for error in [
        "ginx.toml:2:19: invalid max_connections 0: use a number from 1 to 4294967295 (leave it out for the default)",
        "ginx.toml:7:26: invalid max_connections_per_ip -1: use a number from 1 to 4294967295 (leave it out for no per-address limit)",
        "ginx.toml:8:31: invalid max_requests_per_connection 4294967296: use a number from 0 to 4294967295 (0 for no limit)",
    ] {
        assert!(stderr.contains(error), "missing {error:?} in:\n{stderr}");
    }
}
