//! No request fails because of a reload: 20 reloads under concurrent
//! keep-alive load, bounded in count and time.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_failed_requests_across_20_reloads() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let config = |first: &Backend, second: &Backend, extra: bool| {
        let mut text = one_listener(&[first.addr, second.addr]);
        if extra {
            text.push_str("\n[listener.extra]\nbind = \"127.0.0.1:0\"\nupstream = \"app\"\n");
        }
        text
    };
    let ginx = Ginx::start(&config(&a, &b, false), &[], &["web"]).await;
    let addr = ginx.addr("web");

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut load = Vec::new();
    for _ in 0..8 {
        let (client, stop, ok, failed) = (client.clone(), stop.clone(), ok.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            // Bounded: at most 20k requests per task, and stopped by the test.
            for _ in 0..20_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let uri = format!("http://{addr}/");
                let result = async {
                    let resp = client.get(uri.parse().unwrap()).await?;
                    let status = resp.status();
                    resp.into_body().collect().await?;
                    Ok::<_, Box<dyn std::error::Error + Send + Sync>>(status)
                }
                .await;
                match result {
                    Ok(status) if status.is_success() => ok.fetch_add(1, Ordering::Relaxed),
                    Ok(status) => {
                        eprintln!("failed: {status}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                    Err(error) => {
                        eprintln!("failed: {error}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }

    let started = Instant::now();
    for generation in 2..=21u64 {
        // Alternate the order, and add/remove a listener every other time.
        let text = if generation % 2 == 0 {
            config(&b, &a, true)
        } else {
            config(&a, &b, false)
        };
        ginx.rename_over("ginx.toml", &text);
        assert!(
            ginx.wait_generation(generation).await,
            "generation {generation} not applied"
        );
        // Load between reloads: the pace is the input under test, not a wait.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!(
        "{ok} requests ok, {failed} failed, 20 reloads in {:?}",
        started.elapsed()
    );
    assert!(ok > 500, "the load actually ran ({ok} requests)");
    assert_eq!(failed, 0);
}
