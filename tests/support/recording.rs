//! A recording origin: a raw TCP server that keeps every byte ginx sends
//! it, per connection, and reads them as HTTP/1.1 requests with a strict
//! parser of its own, so that a test can say "the origin saw exactly these
//! requests, on these connections, and no byte beyond them".
//!
//! The parser is deliberately not hyper's: the attack tests check what
//! hyper lets through, so the origin must not share its blind spots. It
//! takes one request line (`METHOD SP target SP HTTP/1.1` CRLF), header
//! lines (`token ":" value` CRLF, no obs-fold, no CTL), and a body framed by
//! one `Content-Length` of digits or by `Transfer-Encoding: chunked` alone.
//! Anything else is ambiguous: the origin records why ([`OriginConn::bad`]),
//! keeps the bytes, answers nothing more and closes.
//!
//! Each complete request is answered with a small 200 whose body is
//! `request N` (N counts requests over the whole origin, from 1), unless
//! the origin was started with another [`Answer`].
//!
//! The attacker's side is here too, as the origin's mirror: [`attack`]
//! writes raw bytes on one connection and reads what comes back until ginx
//! closes it, [`statuses`] reads the responses in it, and
//! [`server_failures`] lists what `/status` holds against a
//! server. Starting ginx is [`super::ginx`]'s; the attacks are the tests'.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the origin answers a request.
#[derive(Clone, Debug)]
pub enum Answer {
    /// A 200 with body `request N`, once the request is complete;
    /// keep-alive.
    Numbered,
    /// The same 200, sent as soon as the head is in, before the body (an
    /// early response to an upload); the body is still read and recorded.
    Early,
    /// These bytes, once the request is complete, and then the connection
    /// closes (`close`) or stays open with nothing more sent.
    Raw { bytes: Vec<u8>, close: bool },
}

/// One request the origin read whole.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// The origin-wide sequence number (from 1), as in the answer's body.
    pub seq: usize,
    /// Which of the origin's connections (from 0, in accept order).
    pub conn: usize,
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    /// The body as framed (chunked bodies de-chunked).
    pub body: Vec<u8>,
}

impl Recorded {
    /// `METHOD target` and, when there is one, ` body=…` (lossy UTF-8): the
    /// form the tests compare.
    pub fn summary(&self) -> String {
        match self.body.is_empty() {
            true => format!("{} {}", self.method, self.target),
            false => format!(
                "{} {} body={}",
                self.method,
                self.target,
                String::from_utf8_lossy(&self.body)
            ),
        }
    }

    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What one connection to the origin carried.
#[derive(Clone, Debug, Default)]
pub struct OriginConn {
    /// Every byte received, in order.
    pub bytes: Vec<u8>,
    /// The requests read whole from them.
    pub requests: Vec<Recorded>,
    /// Why the parser stopped, if the bytes were not HTTP/1.1 it accepts.
    pub bad: Option<String>,
    /// Bytes after the last whole request that do not make one (yet): an
    /// incomplete request when the connection closed.
    pub rest: Vec<u8>,
}

/// A recording origin on 127.0.0.1:0.
#[derive(Clone)]
pub struct Origin {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    conns: Vec<OriginConn>,
    requests: usize,
}

impl Origin {
    /// An origin answering [`Answer::Numbered`].
    pub async fn start() -> Origin {
        Self::answering(Answer::Numbered).await
    }

    /// An origin answering every request with `answer`.
    pub async fn answering(answer: Answer) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = Origin {
            addr: listener.local_addr().unwrap(),
            state: Default::default(),
        };
        let serving = origin.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let conn = {
                    let mut state = serving.state.lock().unwrap();
                    state.conns.push(OriginConn::default());
                    state.conns.len() - 1
                };
                tokio::spawn(serving.clone().serve(stream, conn, answer.clone()));
            }
        });
        origin
    }

    /// Every connection so far.
    pub fn conns(&self) -> Vec<OriginConn> {
        self.state.lock().unwrap().conns.clone()
    }

    /// Every whole request so far, in the order they completed.
    pub fn requests(&self) -> Vec<Recorded> {
        let mut all: Vec<Recorded> = self.conns().into_iter().flat_map(|c| c.requests).collect();
        all.sort_by_key(|r| r.seq);
        all
    }

    /// [`Recorded::summary`] of every whole request whose target contains
    /// `tag`, in order.
    pub fn seen(&self, tag: &str) -> Vec<String> {
        self.requests()
            .iter()
            .filter(|r| r.target.contains(tag))
            .map(Recorded::summary)
            .collect()
    }

    /// Bytes beyond whole requests on any connection (an incomplete request,
    /// or what the parser refused), lossy UTF-8, one entry per connection
    /// that has some.
    pub fn leftovers(&self) -> Vec<String> {
        self.conns()
            .iter()
            .filter(|c| c.bad.is_some() || !c.rest.is_empty())
            .map(|c| format!("{:?}: {}", c.bad, String::from_utf8_lossy(&c.rest)))
            .collect()
    }

    async fn serve(self, mut stream: TcpStream, conn: usize, answer: Answer) {
        let mut buf = Vec::new();
        let mut answered_head = false;
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match parse_request(&buf) {
                Err(why) => return self.update(conn, |c| c.bad = Some(why)),
                Ok(Parsed::Whole(request, used)) => {
                    let seq = self.record(conn, request);
                    buf.drain(..used);
                    let reply = match (&answer, answered_head) {
                        (Answer::Early, true) => None,
                        (Answer::Raw { bytes, .. }, _) => Some(bytes.clone()),
                        (Answer::Numbered | Answer::Early, _) => Some(numbered(seq)),
                    };
                    answered_head = false;
                    if let Some(reply) = reply {
                        if stream.write_all(&reply).await.is_err() {
                            return;
                        }
                    }
                    if let Answer::Raw { close, .. } = answer {
                        if close {
                            return self.update(conn, |c| c.rest = buf);
                        }
                    }
                    continue;
                }
                Ok(Parsed::HeadOnly) if matches!(answer, Answer::Early) && !answered_head => {
                    answered_head = true;
                    let seq = self.state.lock().unwrap().requests + 1;
                    if stream.write_all(&numbered(seq)).await.is_err() {
                        return;
                    }
                }
                Ok(Parsed::HeadOnly | Parsed::Partial) => {}
            }
            self.update(conn, |c| c.rest = buf.clone());
            let n = stream.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
            self.update(conn, |c| c.bytes.extend_from_slice(&chunk[..n]));
        }
    }

    fn update(&self, conn: usize, change: impl FnOnce(&mut OriginConn)) {
        change(&mut self.state.lock().unwrap().conns[conn]);
    }

    /// Record a whole request on `conn`; its sequence number.
    fn record(&self, conn: usize, mut request: Recorded) -> usize {
        let mut state = self.state.lock().unwrap();
        state.requests += 1;
        request.seq = state.requests;
        request.conn = conn;
        state.conns[conn].requests.push(request);
        state.requests
    }
}

/// The origin's answer to request `seq`.
fn numbered(seq: usize) -> Vec<u8> {
    let body = format!("request {seq}");
    format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}", body.len()).into_bytes()
}

/// How far the bytes at the start of a buffer make a request.
enum Parsed {
    /// Not even a whole head yet.
    Partial,
    /// A whole head; its body is not all there yet.
    HeadOnly,
    /// A whole request, and how many bytes it took.
    Whole(Recorded, usize),
}

/// Parse one request at the start of `buf`, strictly; `Err` says why the
/// bytes are not a request this parser accepts.
fn parse_request(buf: &[u8]) -> Result<Parsed, String> {
    let head_end = find(buf, b"\r\n\r\n");
    if let Some(at) = bare_cr_or_lf(&buf[..head_end.unwrap_or(buf.len())]) {
        return Err(format!("a bare CR or LF in the head at byte {at}"));
    }
    let Some(head_end) = head_end else {
        return Ok(Parsed::Partial);
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| "a head that is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let line = lines.next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some("HTTP/1.1"), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("request line {line:?}"));
    };
    if method.is_empty() || !method.bytes().all(is_tchar) || !target.starts_with('/') {
        return Err(format!("request line {line:?}"));
    }
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line.split_once(':').ok_or(format!("header line {line:?}"))?;
        let value = value.trim_matches([' ', '\t']);
        if name.is_empty()
            || !name.bytes().all(is_tchar)
            || value.bytes().any(|b| b.is_ascii_control() && b != b'\t')
        {
            return Err(format!("header line {line:?}"));
        }
        headers.push((name.to_ascii_lowercase(), value.to_owned()));
    }
    let values = |name: &str| -> Vec<&str> {
        headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let start = head_end + 4;
    let (lengths, codings) = (values("content-length"), values("transfer-encoding"));
    let body = match (&lengths[..], &codings[..]) {
        ([], []) => Some((Vec::new(), start)),
        ([len], []) if !len.is_empty() && len.bytes().all(|b| b.is_ascii_digit()) => {
            let len: usize = len.parse().map_err(|_| format!("content-length {len:?}"))?;
            buf.get(start..start + len)
                .map(|body| (body.to_vec(), start + len))
        }
        ([], ["chunked"]) => dechunk(&buf[start..])?.map(|(body, used)| (body, start + used)),
        (cl, te) => {
            return Err(format!(
                "framing: content-length {cl:?}, transfer-encoding {te:?}"
            ))
        }
    };
    let Some((body, end)) = body else {
        return Ok(Parsed::HeadOnly);
    };
    let request = Recorded {
        seq: 0,
        conn: 0,
        method: method.to_owned(),
        target: target.to_owned(),
        headers,
        body,
    };
    Ok(Parsed::Whole(request, end))
}

/// A chunked body at the start of `buf`, strictly (hex sizes, no
/// extensions, no trailers): the body and the bytes it took, or `None` if
/// it is not all there yet.
fn dechunk(buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, String> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let Some(line_end) = find(&buf[at..], b"\r\n") else {
            return Ok(None);
        };
        let size = std::str::from_utf8(&buf[at..at + line_end]).unwrap_or("?");
        let size = match size.bytes().all(|b| b.is_ascii_hexdigit()) {
            true => usize::from_str_radix(size, 16).map_err(|_| format!("chunk size {size:?}"))?,
            false => return Err(format!("chunk size {size:?}")),
        };
        at += line_end + 2;
        if size == 0 {
            return match buf.get(at..at + 2) {
                Some(b"\r\n") => Ok(Some((body, at + 2))),
                Some(_) => Err("trailers or junk after the last chunk".into()),
                None => Ok(None),
            };
        }
        let Some(data) = buf.get(at..at + size + 2) else {
            return Ok(None);
        };
        if !data.ends_with(b"\r\n") {
            return Err("a chunk not followed by CRLF".into());
        }
        body.extend_from_slice(&data[..size]);
        at += size + 2;
    }
}

/// Where `head` has a CR not followed by LF or an LF not after a CR (a CR
/// at the very end may still get its LF).
fn bare_cr_or_lf(head: &[u8]) -> Option<usize> {
    (0..head.len()).find(|&i| match head[i] {
        b'\r' => head.get(i + 1).is_some_and(|&next| next != b'\n'),
        b'\n' => i == 0 || head[i - 1] != b'\r',
        _ => false,
    })
}

/// RFC 9110 5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// What the attacker read back on one connection.
#[derive(Debug)]
pub struct Attacked {
    /// Every byte ginx sent, lossy UTF-8.
    pub reply: String,
    /// Whether ginx closed the connection within the deadline.
    pub closed: bool,
}

/// Write `bytes` on a new connection to `addr` (a write error is ignored:
/// ginx may answer and close before it has read them all), then read until
/// ginx closes it or `deadline` passes.
pub async fn attack(addr: SocketAddr, bytes: &[u8], deadline: Duration) -> Attacked {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(bytes).await;
    let mut got = Vec::new();
    let closed = tokio::time::timeout(deadline, stream.read_to_end(&mut got)).await;
    Attacked {
        reply: String::from_utf8_lossy(&got).into_owned(),
        // A reset after the answer is a close too.
        closed: closed.is_ok(),
    }
}

/// The statuses of the responses in `reply`, in order, each response
/// skipped by its `Content-Length` (what ginx's responses to these tests
/// carry); 0 for a head that has no status.
pub fn statuses(reply: &str) -> Vec<u16> {
    let mut rest = reply.as_bytes();
    let mut out = Vec::new();
    while let Some(end) = find(rest, b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&rest[..end]).to_ascii_lowercase();
        out.push(head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0));
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        rest = rest.get(end + 4 + len..).unwrap_or_default();
    }
    out
}

/// The servers in `status` (ginx's `/status`) that have an attempt
/// counted as a failure (`5xx`, `connect_error`, `reset`, `timeout`) or are
/// held out, with their attempts; empty when nothing was held against any.
pub fn server_failures(status: &serde_json::Value) -> Vec<String> {
    let servers = status["upstreams"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|u| u["servers"].as_array().into_iter().flatten());
    servers
        .filter(|s| {
            let attempts = s["attempts"].as_object();
            let failed = attempts
                .into_iter()
                .flatten()
                .any(|(outcome, n)| outcome != "ok" && n.as_u64() != Some(0));
            failed || s["held_out"] == true
        })
        .map(|s| format!("{} {}", s["name"], s["attempts"]))
        .collect()
}
