//! DNS discovery against a real DNS server on 127.0.0.1 whose records
//! change while ginx serves.

mod support;

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use support::*;

/// A minimal authoritative DNS server over UDP for `app.test`: A queries get
/// the current records with a TTL of 1 s, AAAA queries get no records,
/// other names get NXDOMAIN; with `failing` set, every query gets SERVFAIL.
struct DnsServer {
    addr: SocketAddr,
    records: Arc<Mutex<Vec<Ipv4Addr>>>,
    failing: Arc<AtomicBool>,
}

impl DnsServer {
    async fn start(records: Vec<Ipv4Addr>) -> DnsServer {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let server = DnsServer {
            addr: socket.local_addr().unwrap(),
            records: Arc::new(Mutex::new(records)),
            failing: Arc::new(AtomicBool::new(false)),
        };
        let (records, failing) = (server.records.clone(), server.failing.clone());
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            loop {
                let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let reply = answer(
                    &buf[..n],
                    &records.lock().unwrap(),
                    failing.load(Ordering::SeqCst),
                );
                if let Some(reply) = reply {
                    let _ = socket.send_to(&reply, peer).await;
                }
            }
        });
        server
    }

    fn set(&self, records: &[Ipv4Addr]) {
        *self.records.lock().unwrap() = records.to_vec();
    }
}

/// Encode the answer to one query (RFC 1035 wire format).
fn answer(query: &[u8], records: &[Ipv4Addr], failing: bool) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    // The question: labels up to the root, then QTYPE and QCLASS.
    let mut end = 12;
    while *query.get(end)? != 0 {
        end += 1 + query[end] as usize;
    }
    let question = &query[12..end + 5];
    let qtype = u16::from_be_bytes([query[end + 1], query[end + 2]]);
    let known = question.starts_with(b"\x03app\x04test\x00");
    let answers: &[Ipv4Addr] = if failing || !known || qtype != 1 {
        &[]
    } else {
        records
    };
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(&query[..2]); // id
    let rcode = match (failing, known) {
        (true, _) => 2,
        (false, false) => 3,
        (false, true) => 0,
    };
    out.extend_from_slice(&[0x84 | (query[2] & 0x01), 0x80 | rcode]); // QR AA RD, RA rcode
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(question);
    for ip in answers {
        out.extend_from_slice(&[0xc0, 12]); // name: pointer to the question
        out.extend_from_slice(&[0, 1, 0, 1]); // A, IN
        out.extend_from_slice(&1u32.to_be_bytes()); // TTL 1 s
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&ip.octets());
    }
    Some(out)
}

#[tokio::test]
async fn pools_follow_dns_records_while_serving() {
    let two = Ipv4Addr::new(127, 0, 0, 2);
    let three = Ipv4Addr::new(127, 0, 0, 3);
    let a = Backend::start_at("a", "127.0.0.2:0").await;
    let port = a.addr.port();
    let b = Backend::start_at("b", &format!("127.0.0.3:{port}")).await;
    let c = Backend::start("c").await;
    let dns = DnsServer::start(vec![two]).await;
    let config = format!(
        r#"
[global]
resolver = "{dns}"
resolve_min = "100ms"
resolve_max = "1s"

[listener.web]
bind = "127.0.0.1:0"
upstream = "app"

[[listener.web.route]]
path = "/other"
upstream = "other"

{}
{}"#,
        upstream("app", &[format!("app.test:{port}")]),
        upstream("other", &[format!("missing.test:{port}"), c.addr.to_string()]),
        dns = dns.addr,
    );
    let ginx = Ginx::start(&config, &[], &["web"]).await;
    let addr = ginx.addr("web");
    // A name that does not resolve at start marks its server down; the
    // pool serves with the others and ginx starts anyway.
    assert!(ginx.log_text().contains("missing.test"), "{}", ginx.log_text());
    assert_eq!(bodies(addr, "/other", 3).await, ["c"; 3]);

    assert_eq!(bodies(addr, "/", 3).await, ["a"; 3]);

    // A second record: both addresses take traffic.
    dns.set(&[two, three]);
    assert!(ginx.wait_log("DNS set changed", DEADLINE).await);
    let both = async || {
        bodies(addr, "/", 4)
            .await
            .into_iter()
            .collect::<HashSet<_>>()
            .len()
            == 2
    };
    assert!(eventually(DEADLINE, both).await, "b never joined");

    // Only the second: a leaves the pool.
    dns.set(&[three]);
    let only_b = async || bodies(addr, "/", 4).await == ["b"; 4];
    assert!(eventually(DEADLINE, only_b).await, "a never left");

    let (a_before, b_before) = (a.hits(), b.hits());
    assert_eq!(bodies(addr, "/", 6).await, ["b"; 6]);
    assert_eq!((a.hits(), b.hits()), (a_before, b_before + 6), "a left the pool");

    // The DNS server fails: the last good set keeps serving.
    dns.failing.store(true, Ordering::SeqCst);
    assert!(ginx.wait_log("keeping the last good addresses", DEADLINE).await);
    assert_eq!(bodies(addr, "/", 4).await, ["b"; 4]);
}
