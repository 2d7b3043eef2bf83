//! Platform conventions over a real process: systemd's notify protocol on a
//! socket the test owns, the access log (formats, request ids, SIGUSR1
//! reopen after logrotate's rename), and JSON logs.

mod support;

use serde_json::Value;
use support::*;
use tokio::net::UnixDatagram;

/// [`one_listener`] on `backend` with `global` in `[global]`.
fn config(global: &str, backend: &Backend) -> String {
    format!("[global]\n{global}\n{}", one_listener(&[backend.addr]))
}

async fn next_message(socket: &UnixDatagram) -> String {
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(DEADLINE, socket.recv(&mut buf))
        .await
        .expect("a notify message in time")
        .unwrap();
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

#[tokio::test]
async fn systemd_hears_ready_reloading_and_stopping() {
    let a = Backend::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    write_file(&dir.path().join("ginx.toml"), &config("", &a));
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    let mut ginx = Ginx::start_in(dir, &["web"], &[("NOTIFY_SOCKET", socket_path.to_str().unwrap())]).await;

    let ready = next_message(&socket).await;
    assert!(ready.starts_with("READY=1\n"), "{ready:?}");
    assert!(ready.contains("STATUS=serving generation 1"), "{ready:?}");

    // SIGHUP: RELOADING=1 (with the monotonic time systemd wants), READY=1.
    ginx.signal("HUP");
    let reloading = next_message(&socket).await;
    assert!(reloading.starts_with("RELOADING=1"), "{reloading:?}");
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading:?}");
    assert!(next_message(&socket).await.starts_with("READY=1\n"));

    // A changed file: the same pair around the new generation.
    let b = Backend::start("b").await;
    ginx.write("ginx.toml", &config("", &b));
    assert!(next_message(&socket).await.starts_with("RELOADING=1"));
    let ready = next_message(&socket).await;
    assert!(ready.contains("STATUS=serving generation 2"), "{ready:?}");

    ginx.signal("TERM");
    assert_eq!(next_message(&socket).await, "STOPPING=1");
    assert_eq!(ginx.wait_exit(DEADLINE).await, Some(0));
}

fn read_lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

async fn wait_lines(path: &std::path::Path, n: usize) -> Vec<String> {
    assert!(
        eventually(DEADLINE, || read_lines(path).len() >= n).await,
        "{} has {:?}",
        path.display(),
        read_lines(path)
    );
    read_lines(path)
}

#[tokio::test]
async fn access_log_json_lines_and_reopen_on_sigusr1() {
    let a = Backend::start("a").await;
    let ginx = Ginx::start(
        &config(
            "access_log = { path = \"logs/access.log\", format = \"json\" }\n",
            &a,
        ),
        &[("logs/.keep", "")],
        &["web"],
    )
    .await;
    let addr = ginx.addr("web");
    let log = ginx.dir.path().join("logs/access.log");

    let req = hyper::Request::get("/path?q=1")
        .header("host", "example.test")
        .header("user-agent", "test \"agent\"")
        .header("x-request-id", "rid-1")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let reply = send(addr, req).await.unwrap();
    let lines = wait_lines(&log, 1).await;
    let entry: Value = serde_json::from_str(&lines[0]).expect("a JSON access log line");
    assert_eq!(entry["method"], "GET");
    assert_eq!(entry["target"], "/path?q=1");
    assert_eq!(entry["protocol"], "HTTP/1.1");
    assert_eq!(entry["host"], "example.test");
    assert_eq!(entry["status"], 200);
    assert_eq!(entry["bytes"], reply.body.len());
    assert_eq!(entry["upstream"], a.addr.to_string());
    assert_eq!(entry["request_id"], "rid-1");
    assert_eq!(entry["user_agent"], "test \"agent\"");
    assert_eq!(entry["listener"], "web");
    assert!(entry["duration_ms"].as_f64().unwrap() >= entry["upstream_ms"].as_f64().unwrap());

    // logrotate: rename, then SIGUSR1; later lines go to a new file.
    let rotated = ginx.dir.path().join("logs/access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    ginx.signal("USR1");
    assert!(ginx.wait_log("reopening the access log", DEADLINE).await);
    get(addr, "/after").await;
    let fresh = wait_lines(&log, 1).await;
    assert!(fresh[0].contains("\"/after\""), "{fresh:?}");
    let old = read_lines(&rotated);
    assert_eq!(old.len(), 1, "{old:?}");
}

#[tokio::test]
async fn access_log_combined_format() {
    let a = Backend::start("a").await;
    let ginx = Ginx::start(
        &config("access_log = { path = \"access.log\" }\n", &a),
        &[],
        &["web"],
    )
    .await;
    get(ginx.addr("web"), "/c").await;
    let lines = wait_lines(&ginx.dir.path().join("access.log"), 1).await;
    let line = &lines[0];
    assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
    assert!(line.contains("] \"GET /c HTTP/1.1\" 200 1 \"-\" \"-\""), "{line}");
    assert!(line.contains(&format!("upstream={}", a.addr)), "{line}");
    assert!(line.contains("rid="), "{line}");
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let a = Backend::start("a").await;
    let ginx = Ginx::start(&config("log_format = \"json\"\n", &a), &[], &[]).await;
    assert!(
        ginx.wait_log("\"listening\"", DEADLINE).await,
        "{}",
        ginx.log_text()
    );
    let line = ginx
        .log_since(0)
        .into_iter()
        .find(|l| l.contains("\"listening\""))
        .unwrap();
    let entry: Value = serde_json::from_str(&line).expect("a JSON log line");
    assert_eq!(entry["level"], "INFO");
    assert_eq!(entry["listener"], "web");
    let addr: std::net::SocketAddr = entry["addr"].as_str().unwrap().parse().unwrap();
    assert_eq!(get(addr, "/").await.text(), "a");
}
