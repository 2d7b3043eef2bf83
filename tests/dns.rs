//! DNS discovery against a real DNS server on 127.0.0.1 whose records
//! change while ginx serves.

mod support;

use std::collections::HashSet;
use std::net::Ipv4Addr;

use support::*;

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
    dns.fail(true);
    assert!(ginx.wait_log("keeping the last good addresses", DEADLINE).await);
    assert_eq!(bodies(addr, "/", 4).await, ["b"; 4]);
}
