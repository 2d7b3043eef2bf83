//! The request-smuggling matrix (issue 11): raw bytes from an attacker on
//! one connection, often a request that hides a second one, against a
//! recording origin that parses strictly what it gets.
//!
//! Pass criteria, for every case: the attacker reads the statuses listed
//! (a 4xx where the framing is ambiguous); the origin saw exactly the
//! requests listed, with the body the client framed, and never a request
//! the client did not send as one (the smuggled `GET …/smuggled` that
//! follows most cases); no server has a failure counted; and a normal
//! client on a fresh connection is served afterwards.
//!
//! The cases run at once, each on its own connection: every target carries
//! the case's tag (`{t}` in the bytes), so the origin's record tells the
//! cases apart even when they share pooled upstream connections.
//! `header_read_timeout = "1s"` closes the connections ginx keeps alive, so
//! each attacker reads until ginx closes. docs/reliability.md has the table
//! with what nginx does.

mod support;

use support::*;

/// A second request hidden behind the first: it must never reach the
/// origin.
const SMUGGLED: &str = "GET {t}/smuggled HTTP/1.1\r\nHost: x\r\n\r\n";

/// One case of the matrix.
struct Case {
    tag: &'static str,
    /// The attacker's bytes; `{t}` is replaced by `/TAG`.
    send: String,
    /// The statuses the attacker reads, in order.
    statuses: &'static [u16],
    /// [`Recorded::summary`] of the requests the origin must have seen,
    /// `{t}` replaced as in `send`.
    origin: &'static [&'static str],
    /// The origin may have been sent the head of a request whose body ginx
    /// then refused (it streams bodies): that request is incomplete on its
    /// connection, and that connection is closed.
    partial: bool,
}

/// A request head `POST {t}/a` with `headers`, then `body`, then
/// [`SMUGGLED`].
fn post(headers: &str, body: &str) -> String {
    format!("POST {{t}}/a HTTP/1.1\r\nHost: x\r\n{headers}\r\n{body}{SMUGGLED}")
}

fn case(tag: &'static str, send: String, statuses: &'static [u16], origin: &'static [&'static str]) -> Case {
    Case {
        tag,
        send,
        statuses,
        origin,
        partial: false,
    }
}

/// A case whose body ginx refuses after it may have sent the head on.
fn refused_body(tag: &'static str, send: String) -> Case {
    Case {
        partial: true,
        ..case(tag, send, &[400], &[])
    }
}

const HELLO: &[&str] = &["POST {t}/a body=hello"];
const CHUNKED_HELLO: &str = "5\r\nhello\r\n0\r\n\r\n";

/// Framing: Content-Length, alone and with Transfer-Encoding.
fn content_length_cases() -> Vec<Case> {
    vec![
        // RFC 9112 6.3: chunked wins and the connection closes after the
        // response (hyper), so what follows is never read.
        case(
            "cl_te",
            post(
                "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
                CHUNKED_HELLO,
            ),
            &[200],
            HELLO,
        ),
        case(
            "te_cl",
            post(
                "Transfer-Encoding: chunked\r\nContent-Length: 40\r\n",
                CHUNKED_HELLO,
            ),
            &[200],
            HELLO,
        ),
        // Equal duplicates are one length (RFC 9110 8.6 allows it); the
        // next request is the client's own, framed as one.
        case(
            "cl_twice_same",
            post("Content-Length: 5\r\nContent-Length: 5\r\n", "hello"),
            &[200, 200],
            &["POST {t}/a body=hello", "GET {t}/smuggled"],
        ),
        case(
            "cl_twice_different",
            post("Content-Length: 5\r\nContent-Length: 6\r\n", "hello"),
            &[400],
            &[],
        ),
        case("cl_list", post("Content-Length: 5, 5\r\n", "hello"), &[400], &[]),
        case("cl_plus", post("Content-Length: +5\r\n", "hello"), &[400], &[]),
        case("cl_minus", post("Content-Length: -1\r\n", "hello"), &[400], &[]),
        case("cl_hex", post("Content-Length: 0x5\r\n", "hello"), &[400], &[]),
        // Trailing whitespace is OWS around the value, not part of it.
        case(
            "cl_trailing_space",
            post("Content-Length: 5 \r\n", "hello"),
            &[200, 200],
            &["POST {t}/a body=hello", "GET {t}/smuggled"],
        ),
    ]
}

/// Framing: Transfer-Encoding's values and spellings.
fn transfer_encoding_cases() -> Vec<Case> {
    let te = |value: &str| post(&format!("Transfer-Encoding: {value}\r\n"), CHUNKED_HELLO);
    vec![
        case("te_chunked_identity", te("chunked, identity"), &[400], &[]),
        // chunked is the final coding: the body is framed by it.
        case(
            "te_identity_chunked",
            te("identity, chunked"),
            &[200, 200],
            &["POST {t}/a body=hello", "GET {t}/smuggled"],
        ),
        case("te_xchunked", te("xchunked"), &[400], &[]),
        case("te_chunked_semicolon", te("chunked;"), &[400], &[]),
        case(
            "te_second_line_identity",
            post(
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
                CHUNKED_HELLO,
            ),
            &[400],
            &[],
        ),
        case(
            "te_obs_fold",
            post("Transfer-Encoding:\r\n chunked\r\n", CHUNKED_HELLO),
            &[400],
            &[],
        ),
        case(
            "te_space_before_colon",
            post("Transfer-Encoding : chunked\r\n", CHUNKED_HELLO),
            &[400],
            &[],
        ),
    ]
}

/// The chunked body itself.
fn chunk_cases() -> Vec<Case> {
    let chunked = |body: &str| post("Transfer-Encoding: chunked\r\n", body);
    vec![
        refused_body(
            "chunk_size_overflow",
            chunked("ffffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
        ),
        refused_body("chunk_size_leading_space", chunked(" 5\r\nhello\r\n0\r\n\r\n")),
        refused_body("chunk_size_trailing_junk", chunked("5 x\r\nhello\r\n0\r\n\r\n")),
        refused_body("chunk_size_negative", chunked("-5\r\nhello\r\n0\r\n\r\n")),
        // Extensions are allowed, and not forwarded (ginx re-chunks).
        case(
            "chunk_ext_valid",
            chunked("5;name=\"value\"\r\nhello\r\n0\r\n\r\n"),
            &[200, 200],
            &["POST {t}/a body=hello", "GET {t}/smuggled"],
        ),
        refused_body(
            "chunk_ext_huge",
            chunked(&format!("5;{}\r\nhello\r\n0\r\n\r\n", "a".repeat(20 * 1024))),
        ),
        refused_body("chunk_ext_bare_lf", chunked("5;a=b\nhello\r\n0\r\n\r\n")),
        refused_body("chunk_ext_bare_cr", chunked("5;a\rb\r\nhello\r\n0\r\n\r\n")),
        refused_body("chunk_bare_lf", chunked("5\nhello\n0\n\n")),
        // A chunk longer than its size: the extra bytes are not a request.
        refused_body("chunk_longer_than_size", chunked("3\r\nhello\r\n0\r\n\r\n")),
    ]
}

/// The head: line endings, header names and values, the request line.
fn head_cases() -> Vec<Case> {
    let header = |line: &str| format!("GET {{t}}/a HTTP/1.1\r\nHost: x\r\n{line}\r\n\r\n{SMUGGLED}");
    vec![
        // Accepted (as nginx does) and sent on with CRLF: the strict origin
        // reads both requests whole.
        case(
            "bare_lf_head",
            format!("GET {{t}}/a HTTP/1.1\nHost: x\n\n{SMUGGLED}"),
            &[200, 200],
            &["GET {t}/a", "GET {t}/smuggled"],
        ),
        case("obs_fold", header("X-A: a\r\n b"), &[400], &[]),
        case("name_space", header("X A: b"), &[400], &[]),
        case("name_tab_before_colon", header("X-A\t: b"), &[400], &[]),
        case("name_ctl", header("X\x01A: b"), &[400], &[]),
        case("value_nul", header("X-A: a\x00b"), &[400], &[]),
        case("value_ctl", header("X-A: a\x07b"), &[400], &[]),
        case("value_del", header("X-A: a\x7fb"), &[400], &[]),
        case("value_bare_cr", header("X-A: a\rb"), &[400], &[]),
        case(
            "line_double_space",
            format!("GET  {{t}}/a HTTP/1.1\r\nHost: x\r\n\r\n{SMUGGLED}"),
            &[400],
            &[],
        ),
        case(
            "absolute_form",
            format!("GET http://other.test{{t}}/a HTTP/1.1\r\nHost: x\r\n\r\n{SMUGGLED}"),
            &[200, 200],
            &["GET {t}/a", "GET {t}/smuggled"],
        ),
        case("http09", format!("GET {{t}}/a\r\n\r\n{SMUGGLED}"), &[400], &[]),
        case(
            "http_version_junk",
            format!("GET {{t}}/a HTTP/1.x\r\nHost: x\r\n\r\n{SMUGGLED}"),
            &[400],
            &[],
        ),
        // A method is a case-sensitive token (RFC 9110 9.1): `get` is an
        // extension method, forwarded as the client sent it.
        case(
            "lowercase_method",
            format!("get {{t}}/a HTTP/1.1\r\nHost: x\r\n\r\n{SMUGGLED}"),
            &[200, 200],
            &["get {t}/a", "GET {t}/smuggled"],
        ),
    ]
}

/// What follows a request ginx refused is never read as a request.
fn pipelined_cases() -> Vec<Case> {
    vec![
        // The body fails mid-way: 400, the connection closes.
        refused_body(
            "pipelined_after_bad_body",
            post("Transfer-Encoding: chunked\r\n", "5\r\nhello\r\nzz\r\n"),
        ),
        // A well-framed body that contains a request is a body.
        case(
            "request_in_body",
            post(
                &format!(
                    "Content-Length: {}\r\n",
                    tagged(SMUGGLED, "request_in_body").len() + 1
                ),
                &format!("{SMUGGLED}!"),
            ),
            &[200, 200],
            &[
                "POST {t}/a body=GET {t}/smuggled HTTP/1.1\r\nHost: x\r\n\r\n!",
                "GET {t}/smuggled",
            ],
        ),
    ]
}

/// The case's text with `{t}` replaced by `/TAG`.
fn tagged(text: &str, tag: &str) -> String {
    text.replace("{t}", &format!("/{tag}"))
}

async fn start(origin: &Origin) -> Ginx {
    let config = format!(
        "[global]\nheader_read_timeout = \"1s\"\n\n{}",
        one_listener(&[origin.addr])
    );
    Ginx::start(&config, &[], &["web"]).await
}

/// Run `cases` at once against one ginx and one origin, then check every
/// pass criterion.
async fn run(cases: Vec<Case>) {
    let origin = Origin::start().await;
    let ginx = start(&origin).await;
    let addr = ginx.addr("web");
    let tasks: Vec<_> = cases
        .iter()
        .map(|case| {
            let bytes = tagged(&case.send, case.tag).into_bytes();
            tokio::spawn(async move { attack(addr, &bytes, DEADLINE).await })
        })
        .collect();
    let mut failures = Vec::new();
    for (case, task) in cases.iter().zip(tasks) {
        let got = task.await.unwrap();
        let statuses = statuses(&got.reply);
        if statuses != case.statuses || !got.closed {
            failures.push(format!(
                "{}: statuses {statuses:?} (want {:?}), closed {}: {:?}",
                case.tag, case.statuses, got.closed, got.reply
            ));
        }
    }
    // The origin has seen all it will: every attacker connection is closed,
    // so every request ginx forwarded has been answered.
    for case in &cases {
        let want: Vec<String> = case.origin.iter().map(|s| tagged(s, case.tag)).collect();
        let seen = origin.seen(&format!("/{}/", case.tag));
        if seen != want {
            failures.push(format!("{}: origin saw {seen:?}, want {want:?}", case.tag));
        }
    }
    // Bytes beyond whole requests: only the head of a refused body.
    for leftover in origin.leftovers() {
        let owner = cases.iter().find(|c| leftover.contains(&format!("/{}/", c.tag)));
        if !owner.is_some_and(|c| c.partial && !leftover.contains("/smuggled")) {
            failures.push(format!("origin got bytes beyond requests: {leftover}"));
        }
    }
    let held = server_failures(&ginx.status().await);
    assert!(held.is_empty(), "failures counted against a server: {held:?}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Another client, on a fresh connection, is served.
    let reply = get(addr, "/after").await;
    assert_eq!(reply.status, 200);
    assert!(reply.text().starts_with("request "), "{}", reply.text());
    assert_eq!(origin.seen("/after"), ["GET /after"]);
}

#[tokio::test]
async fn content_length_and_transfer_encoding_tricks() {
    let mut cases = content_length_cases();
    cases.extend(transfer_encoding_cases());
    run(cases).await;
}

#[tokio::test]
async fn chunk_size_and_extension_tricks() {
    run(chunk_cases()).await;
}

#[tokio::test]
async fn head_tricks() {
    run(head_cases()).await;
}

#[tokio::test]
async fn what_follows_a_refused_request_is_not_read_as_one() {
    run(pipelined_cases()).await;
}

/// An absolute-form target's authority is the request's host (RFC 9112
/// 3.2.2), whatever `Host` says; the origin gets the origin form.
#[tokio::test]
async fn an_absolute_form_target_overrides_host() {
    let origin = Origin::start().await;
    let ginx = start(&origin).await;
    let request = b"GET http://other.test/abs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let got = attack(ginx.addr("web"), request, DEADLINE).await;
    assert_eq!(statuses(&got.reply), [200]);
    let seen = origin.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target, "/abs");
    assert_eq!(seen[0].header("host"), Some("other.test"));
}
