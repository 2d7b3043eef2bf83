//! A real DNS server on 127.0.0.1 for tests of DNS discovery.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// A minimal authoritative DNS server over UDP for `app.test`: A queries get
/// the current records with a TTL of 1 s, AAAA queries get no records,
/// other names get NXDOMAIN; with `failing` set, every query gets SERVFAIL.
pub struct DnsServer {
    pub addr: SocketAddr,
    records: Arc<Mutex<Vec<Ipv4Addr>>>,
    failing: Arc<AtomicBool>,
}

impl DnsServer {
    pub async fn start(records: Vec<Ipv4Addr>) -> DnsServer {
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

    pub fn set(&self, records: &[Ipv4Addr]) {
        *self.records.lock().unwrap() = records.to_vec();
    }

    /// Answer every query with SERVFAIL (`true`) or normally again.
    pub fn fail(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
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
