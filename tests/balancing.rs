//! Balancing policies, backups, passive and active health, retries and
//! state across reloads, over real sockets.

mod support;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, StatusCode};
use support::*;

async fn get_with(addr: SocketAddr, path: &str, header: (&str, &str)) -> Reply {
    let req = Request::get(path)
        .header("host", "x")
        .header(header.0, header.1)
        .body(Full::<Bytes>::default())
        .unwrap();
    send(addr, req).await.unwrap()
}

#[tokio::test]
async fn least_conn_avoids_the_busy_server() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let ginx = Ginx::start(
        &web(&format!(
            "balance = \"least_conn\"\nservers = {}\n",
            servers(&[a.addr, b.addr])
        )),
        &[],
        &["web"],
    )
    .await;
    let addr = ginx.addr("web");
    let slow = tokio::spawn(async move { get(addr, "/__sleep/1500").await.text() });
    assert!(eventually(DEADLINE, || a.hits() + b.hits() == 1).await);
    let busy = if a.hits() == 1 { "a" } else { "b" };
    for _ in 0..6 {
        assert_ne!(
            get(addr, "/").await.text(),
            busy,
            "least_conn sends around the busy server"
        );
    }
    assert_eq!(slow.await.unwrap(), busy);
    // Idle again: both take turns.
    let seen: HashSet<String> = bodies(addr, "/", 4).await.into_iter().collect();
    assert_eq!(seen.len(), 2);
}

#[tokio::test]
async fn random_follows_weights() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let servers = format!(
        "[{{ addr = \"{}\", weight = 1 }}, {{ addr = \"{}\", weight = 3 }}]",
        a.addr, b.addr
    );
    let ginx = Ginx::start(
        &web(&format!("balance = \"random\"\nservers = {servers}\n")),
        &[],
        &["web"],
    )
    .await;
    let got = bodies(ginx.addr("web"), "/", 400).await;
    let share_b = got.iter().filter(|s| *s == "b").count() as f64 / 400.0;
    assert!(
        (0.62..=0.88).contains(&share_b),
        "b's share {share_b} for weight 3 of 4"
    );
}

#[tokio::test]
async fn consistent_hash_is_sticky_and_remaps_only_the_removed_servers_keys() {
    let mut backends = Vec::new();
    for name in ["a", "b", "c", "d"] {
        backends.push(Backend::start(name).await);
    }
    let all: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let ginx = Ginx::start(
        &web(&format!(
            "balance = \"hash\"\nhash = \"uri\"\nservers = {}\n",
            servers(&all)
        )),
        &[],
        &["web"],
    )
    .await;
    let addr = ginx.addr("web");
    let keys: Vec<String> = (0..120).map(|i| format!("/item/{i}")).collect();
    let mut before = Vec::new();
    for key in &keys {
        before.push(get(addr, key).await.text());
    }
    // Sticky: asking again gives the same server.
    for (key, server) in keys.iter().zip(&before).take(20) {
        assert_eq!(&get(addr, key).await.text(), server);
    }
    assert_eq!(
        before.iter().collect::<HashSet<_>>().len(),
        4,
        "keys spread over all servers"
    );

    // Remove d: only d's keys move.
    ginx.write(
        "ginx.toml",
        &web(&format!(
            "balance = \"hash\"\nhash = \"uri\"\nservers = {}\n",
            servers(&all[..3])
        )),
    );
    assert!(ginx.wait_generation(2).await);
    let mut moved = 0;
    for (key, server) in keys.iter().zip(&before) {
        let now = get(addr, key).await.text();
        if server != "d" {
            assert_eq!(&now, server, "{key} was not on the removed server and must stay");
        } else {
            moved += 1;
        }
    }
    let fraction = moved as f64 / keys.len() as f64;
    assert!(
        (0.1..=0.45).contains(&fraction),
        "moved fraction {fraction}, about 1/4 expected"
    );
}

#[tokio::test]
async fn hash_on_a_header_keeps_a_user_on_one_server() {
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    let ginx = Ginx::start(
        &web(&format!(
            "balance = \"hash\"\nhash = \"header:x-user\"\nservers = {}\n",
            servers(&[a.addr, b.addr, c.addr])
        )),
        &[],
        &["web"],
    )
    .await;
    let addr = ginx.addr("web");
    for user in ["alice", "bob", "carol", "dave"] {
        let first = get_with(addr, "/", ("x-user", user)).await.text();
        for _ in 0..5 {
            assert_eq!(get_with(addr, "/", ("x-user", user)).await.text(), first);
        }
    }
}

#[tokio::test]
async fn backup_takes_over_only_while_primaries_are_down() {
    let (primary, backup) = (Backend::start("primary").await, Backend::start("backup").await);
    let config = web(&format!(
        "fail_timeout = \"1s\"\nservers = [\"{}\", {{ addr = \"{}\", backup = true }}]\n",
        primary.addr, backup.addr
    ));
    let ginx = Ginx::start(&config, &[], &["web"]).await;
    let addr = ginx.addr("web");
    assert_eq!(bodies(addr, "/", 4).await, ["primary"; 4]);
    let port = primary.addr;
    primary.stop();
    assert!(eventually(DEADLINE, || std::net::TcpStream::connect(port).is_err()).await);
    assert_eq!(bodies(addr, "/", 4).await, ["backup"; 4], "the backup takes over");
    // The primary comes back; after fail_timeout it gets the traffic again.
    let again = Backend::serve(
        "primary-again",
        tokio::net::TcpListener::bind(port).await.unwrap(),
    );
    assert!(serves(addr, "primary-again").await, "primary never came back");
    assert_eq!(bodies(addr, "/", 3).await, ["primary-again"; 3]);
    drop(again);
}

const CHECKS: &str =
    "\n[upstream.app.health_check]\npath = \"/healthz\"\ninterval = \"100ms\"\ntimeout = \"500ms\"\nrise = 2\nfall = 2\n";

#[tokio::test]
async fn active_checks_take_a_server_out_and_back() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let ginx = Ginx::start(
        &web(&format!("servers = {}\n{CHECKS}", servers(&[a.addr, b.addr]))),
        &[],
        &["web"],
    )
    .await;
    let addr = ginx.addr("web");
    assert!(
        eventually(DEADLINE, || a.checks() >= 2 && b.checks() >= 2).await,
        "both probed"
    );
    a.set_health(503);
    assert!(ginx.wait_log("server down: health check failed", DEADLINE).await);
    let before = a.traffic();
    assert_eq!(bodies(addr, "/", 6).await, ["b"; 6]);
    assert_eq!(a.traffic(), before);
    a.set_health(200);
    assert!(ginx.wait_log("server up: health check passed", DEADLINE).await);
    let seen: HashSet<String> = bodies(addr, "/", 4).await.into_iter().collect();
    assert!(seen.contains("a"));
}

#[tokio::test]
async fn a_server_down_by_checks_stays_down_across_10_reloads() {
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    a.set_health(500);
    let ginx = Ginx::start(
        &web(&format!("servers = {}\n{CHECKS}", servers(&[a.addr, b.addr]))),
        &[],
        &["web"],
    )
    .await;
    let addr = ginx.addr("web");
    assert!(ginx.wait_log("server down: health check failed", DEADLINE).await);
    let before = a.traffic();
    for generation in 2..=11u64 {
        // Touch the upstream every time: weights, order, an extra server.
        let servers = if generation % 2 == 0 {
            format!(
                "[{{ addr = \"{}\", weight = 3 }}, \"{}\", \"{}\"]",
                b.addr, a.addr, c.addr
            )
        } else {
            format!("[\"{}\", {{ addr = \"{}\", weight = 2 }}]", a.addr, b.addr)
        };
        ginx.write("ginx.toml", &web(&format!("servers = {servers}\n{CHECKS}")));
        assert!(ginx.wait_generation(generation).await, "generation {generation}");
        for body in bodies(addr, "/", 5).await {
            assert_ne!(body, "a");
        }
    }
    assert_eq!(
        a.traffic(),
        before,
        "zero requests to the server held down by checks"
    );
}

#[tokio::test]
async fn initial_state_down_waits_for_the_first_passing_check() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    b.set_health(500);
    let checks = CHECKS.replace("fall = 2\n", "fall = 2\ninitial_state = \"down\"\n");
    let ginx = Ginx::start(
        &web(&format!("servers = {}\n{checks}", servers(&[a.addr, b.addr]))),
        &[],
        &["web"],
    )
    .await;
    let addr = ginx.addr("web");
    // a passes its first check and comes up; b never does.
    assert!(ginx.wait_log("server up: health check passed", DEADLINE).await);
    assert_eq!(bodies(addr, "/", 4).await, ["a"; 4]);
    assert_eq!(b.traffic(), 0);
}

#[tokio::test]
async fn consecutive_5xx_eject_and_recover() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    a.set_status(500);
    let config = web(&format!(
        "eject_on_5xx = 2\nfail_timeout = \"1s\"\nservers = {}\n",
        servers(&[a.addr, b.addr])
    ));
    let ginx = Ginx::start(&config, &[], &["web"]).await;
    let addr = ginx.addr("web");
    // Round robin: a, b, a (second 5xx: ejected), then only b.
    let statuses: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(get(addr, "/").await.status.as_u16());
        }
        v
    };
    assert_eq!(statuses, [500, 200, 500, 200]);
    assert!(ginx.wait_log("server held out", DEADLINE).await);
    assert_eq!(bodies(addr, "/", 4).await, ["b"; 4]);
    // After fail_timeout, a is tried again; it is fixed now.
    a.set_status(200);
    assert!(serves(addr, "a").await, "a never came back");
}

/// ginx over `[closing, b]` with `max_fails = 0` (the closing server stays
/// in rotation, first in the sequence); how many requests the closing
/// server saw; and `b`.
async fn closing_then_b() -> (Ginx, std::sync::Arc<std::sync::atomic::AtomicUsize>, Backend) {
    let (closing, closed) = closing_server().await;
    let b = Backend::start("b").await;
    let config = web(&format!(
        "max_fails = 0\nservers = [\"{closing}\", \"{}\"]\n",
        b.addr
    ));
    (Ginx::start(&config, &[], &["web"]).await, closed, b)
}

/// A POST with a body: never sent again once written.
fn post() -> Request<Full<Bytes>> {
    Request::post("/")
        .header("host", "x")
        .body(Full::new(Bytes::from("data")))
        .unwrap()
}

#[tokio::test]
async fn idempotent_requests_are_retried_after_a_reset_and_others_are_not() {
    let (ginx, closed, b) = closing_then_b().await;
    let addr = ginx.addr("web");

    // GET: first attempt reset, retried on b.
    let reply = get(addr, "/").await;
    assert_eq!((reply.status, reply.text().as_str()), (StatusCode::OK, "b"));
    assert_eq!(closed.load(std::sync::atomic::Ordering::SeqCst), 1);
    // That request moved the rotation once: the next one starts at b, the
    // one after at the closing server again.
    assert_eq!(get(addr, "/").await.text(), "b");
    assert_eq!(closed.load(std::sync::atomic::Ordering::SeqCst), 1);

    // POST with a body: written, so never sent again: 502, and b sees nothing.
    let b_before = b.hits();
    let reply = send(addr, post()).await.unwrap();
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert_eq!(b.hits(), b_before, "a non-idempotent request is not re-sent");
    assert_eq!(closed.load(std::sync::atomic::Ordering::SeqCst), 2);
}

/// A request's failover walk moves the shared rotation once, so a failing
/// server that stays in rotation (`max_fails = 0`) is first for every other
/// request, not for all of them: 5 of 10 POSTs fail, as with nginx.
#[tokio::test]
async fn round_robin_moves_once_per_request_whatever_its_failovers() {
    let (ginx, closed, b) = closing_then_b().await;
    let addr = ginx.addr("web");
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(send(addr, post()).await.unwrap().status.as_u16());
    }
    assert_eq!(statuses, [502, 200, 502, 200, 502, 200, 502, 200, 502, 200]);
    assert_eq!(closed.load(std::sync::atomic::Ordering::SeqCst), 5);
    assert_eq!(b.hits(), 5);
}

#[tokio::test]
async fn retry_non_idempotent_and_retry_on_5xx() {
    let (closing, _) = closing_server().await;
    let (bad, good) = (Backend::start("bad").await, Backend::start("good").await);
    bad.set_status(503);
    let config = format!(
        "[listener.web]\nbind = \"127.0.0.1:0\"\nupstream = \"app\"\n\n[[listener.web.route]]\npath = \"/5xx\"\nupstream = \"five\"\n\n\
         [upstream.app]\nmax_fails = 0\nretry_non_idempotent = true\nservers = [\"{closing}\", \"{}\"]\n\n\
         [upstream.five]\nretry_on = [\"5xx\"]\nservers = [\"{}\", \"{}\"]\n",
        good.addr, bad.addr, good.addr
    );
    let ginx = Ginx::start(&config, &[], &["web"]).await;
    let addr = ginx.addr("web");
    // A bodiless POST may be re-sent when asked for.
    let post = Request::post("/")
        .header("host", "x")
        .body(Full::<Bytes>::default())
        .unwrap();
    assert_eq!(send(addr, post).await.unwrap().text(), "good");
    // 5xx from the first server: retried on the next.
    for _ in 0..4 {
        let reply = get(addr, "/5xx").await;
        assert_eq!((reply.status, reply.text().as_str()), (StatusCode::OK, "good"));
    }
}

#[tokio::test]
async fn the_same_server_is_never_tried_twice() {
    let (closing, closed) = closing_server().await;
    let config = web(&format!("retries = 3\nservers = [\"{closing}\"]\n"));
    let ginx = Ginx::start(&config, &[], &["web"]).await;
    let reply = get(ginx.addr("web"), "/").await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert_eq!(closed.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// ginx proxying to `a` alone with a read timeout of 1 s.
async fn with_read_timeout_1s(a: &Backend) -> Ginx {
    let config = web(&format!(
        "read_timeout = \"1s\"\nservers = {}\n",
        servers(&[a.addr])
    ));
    Ginx::start(&config, &[], &["web"]).await
}

#[tokio::test]
async fn read_timeout_gives_504() {
    let a = Backend::start("a").await;
    let ginx = with_read_timeout_1s(&a).await;
    let started = std::time::Instant::now();
    let reply = get(ginx.addr("web"), "/__sleep/5000").await;
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
}

#[tokio::test]
async fn on_all_down_fail_or_try_all() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    a.set_health(500);
    b.set_health(500);
    let config = |mode: &str| {
        format!(
            "[listener.web]\nbind = \"127.0.0.1:0\"\nupstream = \"app\"\n\n[[listener.web.route]]\npath = \"/all\"\nupstream = \"all\"\n\n\
             [upstream.app]\nservers = {list}\n{CHECKS}\n[upstream.all]\non_all_down = \"{mode}\"\nservers = {list}\n{checks2}",
            list = servers(&[a.addr, b.addr]),
            checks2 = CHECKS.replace("[upstream.app.health_check]", "[upstream.all.health_check]"),
        )
    };
    let ginx = Ginx::start(&config("try_all"), &[], &["web"]).await;
    let addr = ginx.addr("web");
    assert!(
        eventually(DEADLINE, || ginx
            .log_text()
            .matches("server down: health check failed")
            .count()
            >= 4)
        .await,
        "all four servers marked down"
    );
    assert_eq!(get(addr, "/").await.status, StatusCode::BAD_GATEWAY, "fail: 502");
    assert_eq!(
        get(addr, "/all").await.status,
        StatusCode::OK,
        "try_all: served anyway"
    );
    assert!(ginx.wait_log("no server available", DEADLINE).await);
    assert_eq!(
        ginx.log_text()
            .matches("no server available; answering 502")
            .count(),
        1,
        "logged once"
    );
}

#[tokio::test]
async fn read_timeout_starts_after_the_upload() {
    let a = Backend::start("a").await;
    let ginx = with_read_timeout_1s(&a).await;
    // An upload that takes about 2.5 s, longer than read_timeout.
    let (tx, body) = slow_body();
    let req = Request::post("/__upload").header("host", "x").body(body).unwrap();
    let addr = ginx.addr("web");
    let sending = tokio::spawn(async move {
        let reply = send(addr, req).await.unwrap();
        (reply.status, reply.body)
    });
    for _ in 0..5 {
        // The pace of the upload is the input under test, not a wait.
        tokio::time::sleep(Duration::from_millis(500)).await;
        tx.send(Bytes::from_static(b"0123456789")).await.unwrap();
    }
    drop(tx);
    let (status, text) = sending.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&text).starts_with("50 "), "{text:?}");
}

/// A request body fed through a channel, ended when the sender drops.
fn slow_body() -> (
    tokio::sync::mpsc::Sender<Bytes>,
    http_body_util::StreamBody<
        impl futures_core::Stream<Item = Result<hyper::body::Frame<Bytes>, std::io::Error>>,
    >,
) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    struct Rx(tokio::sync::mpsc::Receiver<Bytes>);
    impl futures_core::Stream for Rx {
        type Item = Result<hyper::body::Frame<Bytes>, std::io::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            self.0
                .poll_recv(cx)
                .map(|b| b.map(|b| Ok(hyper::body::Frame::data(b))))
        }
    }
    (tx, http_body_util::StreamBody::new(Rx(rx)))
}

/// `n` backends named `s0`, `s1`...
async fn backends(n: usize) -> Vec<Backend> {
    let mut all = Vec::with_capacity(n);
    for i in 0..n {
        all.push(Backend::start(&format!("s{i}")).await);
    }
    all
}

fn hits(all: &[Backend]) -> Vec<usize> {
    all.iter().map(Backend::hits).collect()
}

#[tokio::test]
async fn a_pool_of_150_servers_rotates_keeps_weights_and_skips_dead_servers() {
    // Over 64 servers: the large-upstream paths of the balancer.
    let all = backends(150).await;
    let addrs: Vec<SocketAddr> = all.iter().map(|b| b.addr).collect();
    let ginx = Ginx::start(&web(&format!("servers = {}\n", servers(&addrs))), &[], &["web"]).await;
    let addr = ginx.addr("web");
    for body in bodies(addr, "/", 300).await {
        assert!(body.starts_with('s'), "{body}");
    }
    assert_eq!(hits(&all), vec![2; 150], "every server twice, in turn");

    // Weight 3 on s0: one period (152 requests) gives it 3, the others 1.
    let mut weighted: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
    weighted[0] = format!("{{ addr = \"{}\", weight = 3 }}", addrs[0]);
    ginx.write(
        "ginx.toml",
        &web(&format!("servers = [{}]\n", weighted.join(", "))),
    );
    assert!(ginx.wait_generation(2).await);
    bodies(addr, "/", 152).await;
    let mut want = vec![3; 150];
    want[0] = 5;
    assert_eq!(hits(&all), want);

    // Every third server dead: a request whose turn lands on one fails
    // over to the next (alive), so every request is answered, and the dead
    // are held out after their first failure.
    let plain = format!("servers = {}\nretries = 2\n", servers(&addrs));
    ginx.write("ginx.toml", &web(&plain));
    assert!(ginx.wait_generation(3).await);
    let dead: Vec<usize> = (0..150).step_by(3).collect();
    for &i in &dead {
        all[i].stop();
    }
    for reply in bodies(addr, "/", 300).await {
        assert!(reply.starts_with('s'), "{reply}");
    }
    let after = hits(&all);
    for (i, (&now, &before)) in after.iter().zip(&want).enumerate() {
        if dead.contains(&i) {
            assert_eq!(now, before, "dead server s{i}");
        } else {
            assert!(now > before, "live server s{i} takes its turns");
        }
    }
}
