//! Hot reload over real files and signals, and graceful shutdown.

mod support;

use std::time::Duration;

use hyper::StatusCode;
use support::*;

/// ginx on [`web_with_includes`], its upstream `app` (on `a`) in
/// conf.d/app.toml.
async fn start(a: &Backend) -> Ginx {
    Ginx::start(
        &web_with_includes(),
        &[("conf.d/app.toml", &upstream("app", &[a.addr]))],
        &["web"],
    )
    .await
}

#[tokio::test]
async fn reloads_on_edit_in_place() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let ginx = start(&a).await;
    let addr = ginx.addr("web");
    assert_eq!(get(addr, "/").await.text(), "a");
    let t0 = std::time::Instant::now();
    ginx.write("conf.d/app.toml", &upstream("app", &[b.addr]));
    assert!(serves(addr, "b").await);
    assert!(
        t0.elapsed() < Duration::from_secs(1) + Duration::from_millis(500),
        "event-driven reload took {:?}",
        t0.elapsed()
    );
    assert!(ginx.wait_generation(2).await);
    assert!(ginx.log_text().contains("-server app/") && ginx.log_text().contains("+server app/"));
}

#[tokio::test]
async fn reloads_on_rename_over_and_new_and_deleted_files() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let ginx = start(&a).await;
    let addr = ginx.addr("web");
    // An editor's save: write a temporary file, rename it over.
    ginx.rename_over("conf.d/app.toml", &upstream("app", &[b.addr]));
    assert!(serves(addr, "b").await);

    // A new file in conf.d adds a listener and an upstream.
    let c = Backend::start("c").await;
    let before = ginx.log_len();
    ginx.write(
        "conf.d/extra.toml",
        &format!("[listener.extra]\nbind = \"127.0.0.1:0\"\nupstream = \"other\"\n\n[upstream.other]\nservers = [\"{}\"]\n", c.addr),
    );
    assert!(
        ginx.wait_log_since(before, "listener=extra addr=", DEADLINE)
            .await
    );
    let extra = ginx.addr("extra");
    assert_eq!(get(extra, "/").await.text(), "c");

    // Deleting it removes the listener: new connections are refused.
    std::fs::remove_file(ginx.dir.path().join("conf.d/extra.toml")).unwrap();
    assert!(ginx.wait_log_since(before, "listener stopped", DEADLINE).await);
    assert!(eventually(DEADLINE, || std::net::TcpStream::connect(extra).is_err()).await);
    assert_eq!(
        get(addr, "/").await.text(),
        "b",
        "the other listener is untouched"
    );
}

#[tokio::test]
async fn sighup_reloads_when_watching_is_off() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let main = format!("{}\n[global]\nwatch = false\n", web_with_includes());
    let ginx = Ginx::start(
        &main,
        &[("conf.d/app.toml", &upstream("app", &[a.addr]))],
        &["web"],
    )
    .await;
    let addr = ginx.addr("web");
    ginx.write("conf.d/app.toml", &upstream("app", &[b.addr]));
    // Without the watcher (and its poll), nothing changes until SIGHUP. A
    // fixed wait: nothing happening has no event to wait for.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(get(addr, "/").await.text(), "a");
    ginx.signal("HUP");
    assert!(serves(addr, "b").await);
    assert!(ginx.wait_generation(2).await);
    // SIGHUP with nothing changed reports so and makes no generation.
    let before = ginx.log_len();
    ginx.signal("HUP");
    assert!(
        ginx.wait_log_since(before, "configuration unchanged", DEADLINE)
            .await
    );
    assert!(!ginx.log_text().contains("generation=3 "));
}

#[tokio::test]
async fn invalid_reload_keeps_serving_the_old_config() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let ginx = start(&a).await;
    let addr = ginx.addr("web");
    let before = ginx.log_len();
    // Two broken files: all errors are reported together. The second is
    // written first so that one reload sees both.
    ginx.write(
        "conf.d/zz.toml",
        "[upstream.other]\nservers = [\"127.0.0.1:1\"]\nbogus = 1\n",
    );
    ginx.write(
        "conf.d/app.toml",
        "[upstream.app]\nservers = [\"not an address\"]\n",
    );
    assert!(
        ginx.wait_log_since(before, "configuration rejected; keeping generation 1", DEADLINE)
            .await
    );
    let log = ginx.log_since(before).join("\n");
    assert!(log.contains("conf.d/app.toml:2:"), "errors are located: {log}");
    assert!(
        log.contains("conf.d/zz.toml:3:1"),
        "every error is reported: {log}"
    );
    assert_eq!(get(addr, "/").await.text(), "a");
    // Fixing it applies as generation 2.
    std::fs::remove_file(ginx.dir.path().join("conf.d/zz.toml")).unwrap();
    ginx.write("conf.d/app.toml", &upstream("app", &[b.addr]));
    assert!(serves(addr, "b").await);
    assert!(ginx.wait_generation(2).await);
}

#[tokio::test]
async fn a_failed_bind_refuses_the_whole_reload() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let ginx = start(&a).await;
    let addr = ginx.addr("web");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let before = ginx.log_len();
    // Changes the upstream AND adds a listener on a taken port.
    ginx.write(
        "conf.d/app.toml",
        &format!(
            "{}\n[listener.clash]\nbind = \"{}\"\nupstream = \"app\"\n",
            upstream("app", &[b.addr]),
            taken.local_addr().unwrap()
        ),
    );
    assert!(
        ginx.wait_log_since(before, "configuration rejected", DEADLINE)
            .await
    );
    assert!(ginx
        .log_since(before)
        .join("\n")
        .contains("binding listener `clash`"));
    assert_eq!(
        get(addr, "/").await.text(),
        "a",
        "nothing of the refused reload applies"
    );
}

#[tokio::test]
async fn unchanged_rewrite_makes_no_generation_and_bursts_end_in_the_last_state() {
    let a = Backend::start("a").await;
    let ginx = start(&a).await;
    let addr = ginx.addr("web");
    let same = upstream("app", &[a.addr]);
    ginx.write("conf.d/app.toml", &same);
    ginx.rename_over("conf.d/app.toml", &same);
    // Give the watcher and one poll (every 2 s, reload::POLL_INTERVAL) the
    // chance to (wrongly) reload. A fixed wait: a reload that finds nothing
    // changed logs and publishes nothing, so no condition can say that the
    // poll has run.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(!ginx.log_text().contains("generation=2 "));

    // 50 writes in about 200 ms: a few reloads, and the last file wins.
    let mut backends = Vec::new();
    for i in 0..5 {
        backends.push(Backend::start(&format!("burst{i}")).await);
    }
    for i in 0..50 {
        ginx.write("conf.d/app.toml", &upstream("app", &[backends[i % 5].addr]));
        // The pace of the burst is the input under test, not a wait.
        tokio::time::sleep(Duration::from_millis(4)).await;
    }
    // 49 % 5 == 4
    assert!(serves(addr, "burst4").await);
    // The last writes' events may still be in the debounce (at most 500 ms,
    // reload::DEBOUNCE_MAX) when burst4 first answers. A fixed wait past it:
    // a late reload, if one came, must show in the count and the answer,
    // and one that finds nothing changed leaves no trace to wait for.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let generations = ginx.log_text().matches("configuration applied").count();
    assert!(
        (1..=10).contains(&generations),
        "{generations} reloads for a burst of 50 writes"
    );
    assert_eq!(get(addr, "/").await.text(), "burst4");
}

#[tokio::test]
async fn kubernetes_configmap_symlink_swap() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    // The layout kubelet makes: ginx.toml -> ..data/ginx.toml, ..data -> ..v1
    let version = |name: &str, backend: &Backend| {
        write_file(&root.join(name).join("ginx.toml"), &one_listener(&[backend.addr]));
    };
    version("..v1", &a);
    std::os::unix::fs::symlink("..v1", root.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/ginx.toml", root.join("ginx.toml")).unwrap();
    let ginx = Ginx::start_in(dir, &["web"], &[]).await;
    let addr = ginx.addr("web");
    assert_eq!(get(addr, "/").await.text(), "a");

    version("..v2", &b);
    std::os::unix::fs::symlink("..v2", root.join("..data_tmp")).unwrap();
    std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
    assert!(serves(addr, "b").await);
}

#[tokio::test]
async fn listener_bind_change_and_rename_keep_serving() {
    let a = Backend::start("a").await;
    let fixed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = |name: &str| {
        format!(
            "[listener.{name}]\nbind = \"{fixed}\"\nupstream = \"app\"\n\n{}",
            upstream("app", &[a.addr])
        )
    };
    let ginx = Ginx::start(&config("web"), &[], &["web"]).await;
    assert_eq!(get(fixed, "/").await.text(), "a");
    // Renaming the listener keeps its socket (a re-bind would fail while
    // the old one is open).
    ginx.write("ginx.toml", &config("www"));
    assert!(ginx.wait_generation(2).await);
    assert!(ginx.wait_log("listener=www addr=", DEADLINE).await);
    assert_eq!(get(fixed, "/").await.text(), "a");
    // Changing the port re-binds.
    ginx.write(
        "ginx.toml",
        &format!(
            "[listener.www]\nbind = \"127.0.0.1:0\"\nupstream = \"app\"\n\n{}",
            upstream("app", &[a.addr])
        ),
    );
    assert!(ginx.wait_generation(3).await);
    let moved = ginx.addr("www");
    assert_ne!(moved, fixed);
    assert_eq!(get(moved, "/").await.text(), "a");
    assert!(eventually(DEADLINE, || std::net::TcpStream::connect(fixed).is_err()).await);
}

#[tokio::test]
async fn held_out_server_stays_held_out_across_a_reload() {
    let a = Backend::start("a").await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let servers = format!("[upstream.app]\nservers = [\"{dead}\", \"{}\"]\n", a.addr);
    let ginx = Ginx::start(&web_with_includes(), &[("conf.d/app.toml", &servers)], &["web"]).await;
    let addr = ginx.addr("web");
    assert_eq!(get(addr, "/").await.text(), "a");
    assert_eq!(get(addr, "/").await.text(), "a");
    let failures = ginx.log_text().matches("attempt failed").count();
    assert_eq!(failures, 1, "one failure holds the dead server out");
    // A reload that keeps the server (in another order, with a weight) keeps
    // its state: no new connection attempt right after.
    let before = ginx.log_len();
    ginx.write(
        "conf.d/app.toml",
        &format!(
            "[upstream.app]\nservers = [\"{}\", {{ addr = \"{dead}\", weight = 2 }}]\n",
            a.addr
        ),
    );
    assert!(
        ginx.wait_log_since(before, "configuration applied", DEADLINE)
            .await
    );
    for _ in 0..6 {
        assert_eq!(get(addr, "/").await.text(), "a");
    }
    assert_eq!(ginx.log_text().matches("attempt failed").count(), 1);
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let a = Backend::start("a").await;
    let ginx = start(&a).await;
    let addr = ginx.addr("web");
    let slow = tokio::spawn(async move { get(addr, "/__sleep/700").await });
    assert!(eventually(DEADLINE, || a.hits() == 1).await);
    let mut ginx = ginx;
    ginx.signal("TERM");
    // New connections are refused at once.
    assert!(
        eventually(Duration::from_secs(2), || std::net::TcpStream::connect(addr)
            .is_err())
        .await
    );
    let reply = slow.await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "a");
    assert_eq!(
        reply.headers.get("connection").map(|v| v.to_str().unwrap()),
        Some("close")
    );
    assert_eq!(ginx.wait_exit(DEADLINE).await, Some(0));
}

#[tokio::test]
async fn shutdown_timeout_cuts_what_is_left() {
    let a = Backend::start("a").await;
    let main = format!(
        "{}\n[global]\nshutdown_timeout = \"300ms\"\n",
        web_with_includes()
    );
    let mut ginx = Ginx::start(
        &main,
        &[("conf.d/app.toml", &upstream("app", &[a.addr]))],
        &["web"],
    )
    .await;
    let addr = ginx.addr("web");
    let stuck = tokio::spawn(async move {
        let req = hyper::Request::get("/__sleep/20000")
            .header("host", "x")
            .body(http_body_util::Full::<bytes::Bytes>::default())
            .unwrap();
        send(addr, req).await
    });
    assert!(eventually(DEADLINE, || a.hits() == 1).await);
    let t0 = std::time::Instant::now();
    ginx.signal("TERM");
    assert_eq!(ginx.wait_exit(DEADLINE).await, Some(0));
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "exit took {:?}",
        t0.elapsed()
    );
    assert!(stuck.await.unwrap().is_err(), "the stuck request was cut");
}
