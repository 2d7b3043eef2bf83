//! The admin endpoint over real HTTP: metrics that count exactly what was
//! sent, status with drift across good and bad reloads, readiness during a
//! shutdown delay, the configuration as served, and request ids.

mod support;

use std::collections::HashMap;

use hyper::StatusCode;
use serde_json::Value;
use support::*;

/// ginx with an admin endpoint, `extra_global` in `[global]`, a `/health`
/// route answered by ginx itself, and its upstream `app` (on `backends`)
/// in conf.d/app.toml.
async fn start(extra_global: &str, backends: &[&Backend]) -> Ginx {
    let main = format!(
        "{}\n[[listener.web.route]]\npath = \"/health\"\nrespond = {{ status = 200, body = \"ok\" }}\n\n\
         [global]\n{extra_global}\n{ADMIN}",
        web_with_includes()
    );
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    Ginx::start(&main, &[("conf.d/app.toml", &upstream("app", &addrs))], &["web"]).await
}

fn sample(metrics: &HashMap<String, f64>, key: &str) -> f64 {
    *metrics
        .get(key)
        .unwrap_or_else(|| panic!("no sample {key}; have:\n{:#?}", metrics.keys()))
}

/// Wait until the scrape shows `key` at `value` (a request's duration is
/// recorded as its connection lets go of the response, just after the
/// client has read it); the last scrape.
async fn scrape_until(ginx: &Ginx, key: &str, value: f64) -> HashMap<String, f64> {
    let mut metrics = HashMap::new();
    eventually(DEADLINE, async || {
        metrics = scrape(ginx.admin_addr()).await;
        metrics.get(key) == Some(&value)
    })
    .await;
    metrics
}

#[tokio::test]
async fn metrics_count_exactly_the_requests_sent() {
    let a = Backend::start("a").await;
    let ginx = start("", &[&a]).await;
    let addr = ginx.addr("web");
    let proxied = r#"ginx_http_requests_total{listener="web",route="default",upstream="app",class="2xx"}"#;
    let responded = r#"ginx_http_requests_total{listener="web",route="/health",upstream="",class="2xx"}"#;
    let duration = r#"ginx_http_request_duration_seconds_count{listener="web",route="default"}"#;
    let attempts = format!(
        r#"ginx_upstream_attempts_total{{upstream="app",server="{}",outcome="ok"}}"#,
        a.addr
    );

    let before = scrape(ginx.admin_addr()).await;
    assert_eq!(sample(&before, proxied), 0.0);
    for _ in 0..5 {
        assert_eq!(get(addr, "/x").await.status, StatusCode::OK);
    }
    for _ in 0..3 {
        assert_eq!(get(addr, "/health").await.text(), "ok");
    }
    let m = scrape_until(&ginx, duration, 5.0).await;
    assert_eq!(sample(&m, proxied), 5.0);
    assert_eq!(sample(&m, responded), 3.0);
    assert_eq!(sample(&m, duration), 5.0);
    assert_eq!(
        sample(
            &m,
            r#"ginx_http_request_duration_seconds_bucket{le="+Inf",listener="web",route="default"}"#
        ),
        5.0
    );
    assert_eq!(sample(&m, &attempts), 5.0);
    assert_eq!(
        sample(
            &m,
            &format!(r#"ginx_upstream_server_up{{upstream="app",server="{}"}}"#, a.addr)
        ),
        1.0
    );
    assert_eq!(sample(&m, "ginx_config_generation"), 1.0);
    assert_eq!(
        sample(&m, r#"ginx_client_connections_total{listener="web"}"#),
        8.0
    );
    assert!(sample(&m, r#"ginx_client_received_bytes_total{listener="web"}"#) > 0.0);
    assert!(sample(&m, r#"ginx_client_sent_bytes_total{listener="web"}"#) > 0.0);

    // A failing server: a 502 and a connect error, counted as such.
    a.stop();
    assert_eq!(get(addr, "/x").await.status, StatusCode::BAD_GATEWAY);
    let m = scrape_until(&ginx, duration, 6.0).await;
    assert_eq!(sample(&m, proxied), 5.0);
    assert_eq!(
        sample(
            &m,
            r#"ginx_http_requests_total{listener="web",route="default",upstream="app",class="5xx"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(
            &m,
            &format!(
                r#"ginx_upstream_attempts_total{{upstream="app",server="{}",outcome="connect_error"}}"#,
                a.addr
            )
        ),
        1.0
    );
    // Labels never carry a raw path.
    assert!(!m.keys().any(|k| k.contains("/x")));
}

#[tokio::test]
async fn counters_survive_a_reload_and_reloads_are_counted() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let ginx = start("", &[&a]).await;
    let addr = ginx.addr("web");
    let proxied = r#"ginx_http_requests_total{listener="web",route="default",upstream="app",class="2xx"}"#;
    for _ in 0..4 {
        get(addr, "/").await;
    }
    ginx.write("conf.d/app.toml", &upstream("app", &[a.addr, b.addr]));
    assert!(ginx.wait_generation(2).await);
    for _ in 0..2 {
        get(addr, "/").await;
    }
    ginx.write("conf.d/app.toml", "[upstream.app]\nservers = [\n");
    assert!(ginx.wait_log("configuration rejected", DEADLINE).await);
    let m = scrape(ginx.admin_addr()).await;
    assert_eq!(sample(&m, proxied), 6.0);
    assert_eq!(sample(&m, "ginx_config_generation"), 2.0);
    assert_eq!(sample(&m, r#"ginx_config_reloads_total{result="applied"}"#), 1.0);
    assert_eq!(sample(&m, r#"ginx_config_reloads_total{result="rejected"}"#), 1.0);
    assert!(sample(&m, "ginx_config_last_applied_timestamp_seconds") > 1.7e9);
}

#[tokio::test]
async fn status_shows_generation_sources_and_drift() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let ginx = start("", &[&a]).await;
    let s = ginx.status().await;
    assert_eq!(s["generation"], 1);
    assert_eq!(s["drift"], false);
    assert_eq!(s["stage"], "serving");
    assert!(s["last_reload"].is_null());
    let main_text = std::fs::read_to_string(ginx.config_path()).unwrap();
    let sources = s["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 2);
    assert!(sources[0]["path"].as_str().unwrap().ends_with("ginx.toml"));
    assert_eq!(sources[0]["sha256"], sha256_hex(main_text.as_bytes()));
    let servers = &s["upstreams"][0]["servers"];
    assert_eq!(s["upstreams"][0]["name"], "app");
    assert_eq!(servers[0]["address"], a.addr.to_string());
    assert_eq!(servers[0]["available"], true);
    assert_eq!(servers[0]["weight"], 1);

    // A bad edit: rejected, still generation 1, and drift says so.
    ginx.write("conf.d/app.toml", "[upstream.app]\nservers = [\"nope\"]\n");
    assert!(ginx.wait_log("configuration rejected", DEADLINE).await);
    let s = ginx.status().await;
    assert_eq!(s["generation"], 1);
    assert_eq!(s["drift"], true);
    assert_eq!(s["last_reload"]["result"], "rejected");
    let errors = s["last_reload"]["errors"].as_array().unwrap();
    assert!(
        errors.iter().any(|e| e.as_str().unwrap().contains("app.toml:2:")),
        "{errors:?}"
    );

    // Fixed: generation 2, no drift.
    ginx.write("conf.d/app.toml", &upstream("app", &[b.addr]));
    assert!(ginx.wait_generation(2).await);
    let s = ginx.status().await;
    assert_eq!(s["generation"], 2);
    assert_eq!(s["drift"], false);
    assert_eq!(s["last_reload"]["result"], "applied");
    assert_eq!(s["upstreams"][0]["servers"][0]["address"], b.addr.to_string());
}

#[tokio::test]
async fn config_endpoint_serves_the_active_files() {
    let a = Backend::start("a").await;
    let ginx = start("", &[&a]).await;
    let reply = get(ginx.admin_addr(), "/config").await;
    let doc: Value = serde_json::from_slice(&reply.body).unwrap();
    assert!(doc["config"].as_str().unwrap().ends_with("ginx.toml"));
    let texts: Vec<&str> = doc["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts[1], upstream("app", &[a.addr]));
}

#[tokio::test]
async fn ready_turns_503_during_shutdown_delay_while_still_serving() {
    let a = Backend::start("a").await;
    let mut ginx = start("shutdown_delay = \"1500ms\"\n", &[&a]).await;
    let (addr, admin) = (ginx.addr("web"), ginx.admin_addr());
    assert_eq!(get(admin, "/ready").await.status, StatusCode::OK);
    assert_eq!(get(admin, "/live").await.status, StatusCode::OK);
    ginx.signal("TERM");
    assert!(
        eventually(DEADLINE, async || get(admin, "/ready").await.status
            != StatusCode::OK)
        .await,
        "/ready never turned 503"
    );
    // Still serving requests during the delay, and still alive.
    assert_eq!(get(addr, "/").await.text(), "a");
    assert_eq!(get(admin, "/live").await.status, StatusCode::OK);
    assert_eq!(ginx.wait_exit(DEADLINE).await, Some(0));
}

#[tokio::test]
async fn request_ids_are_kept_or_generated_and_forwarded() {
    let a = Backend::start("a").await;
    let ginx = start("", &[&a]).await;
    let addr = ginx.addr("web");
    get(addr, "/").await;
    let id = a
        .last_seen()
        .header("x-request-id")
        .expect("a generated request id");
    assert_eq!(id.len(), 32);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    get(addr, "/").await;
    assert_ne!(a.last_seen().header("x-request-id").unwrap(), id);

    let req = hyper::Request::get("/")
        .header("host", "localhost")
        .header("x-request-id", "abc-123")
        .body(http_body_util::Full::<bytes::Bytes>::default())
        .unwrap();
    send(addr, req).await.unwrap();
    assert_eq!(a.last_seen().header("x-request-id").unwrap(), "abc-123");
}

#[tokio::test]
async fn check_diff_shows_what_a_reload_would_change_without_applying_it() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    // watch = false: the edits below stay on disk, unapplied.
    let ginx = start("watch = false\n", &[&a]).await;
    let diff = |dir: &std::path::Path, admin: std::net::SocketAddr| {
        let out = ginx_cli()
            .args(["--check", "--diff", "--admin", &admin.to_string(), "-c"])
            .arg(dir.join("ginx.toml"))
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out) = diff(ginx.dir.path(), ginx.admin_addr());
    assert_eq!((code, out.trim()), (Some(0), "no changes"));

    ginx.write(
        "conf.d/app.toml",
        &format!(
            "[upstream.app]\nservers = [\"{}\"]\nbalance = \"least_conn\"\n",
            b.addr
        ),
    );
    let (code, out) = diff(ginx.dir.path(), ginx.admin_addr());
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(&format!("+server app/{}", b.addr)), "{out}");
    assert!(out.contains(&format!("-server app/{}", a.addr)), "{out}");
    assert!(out.contains("balance"), "{out}");
    // Only shown, not applied.
    assert_eq!(ginx.status().await["generation"], 1);
    assert_eq!(get(ginx.addr("web"), "/").await.text(), "a");
}
