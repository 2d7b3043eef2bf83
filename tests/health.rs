//! Active health checks of upstreams that speak TLS (`https://`) or HTTP/2
//! (`protocol = "h2"` over TLS, `"h2c"` in the clear): the probe reaches a
//! server as requests do, a server whose health path fails goes down and
//! gets no requests, and it comes back once its checks pass.

mod support;

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode, Version};
use hyper_util::rt::TokioIo;
use support::*;
use tokio::net::TcpListener;

/// What a [`Checked`] backend saw of one health check.
#[derive(Debug, Clone)]
struct Probe {
    version: Version,
    /// The `Host` header (HTTP/1.1) or the `:authority` (HTTP/2).
    host: String,
    /// The `:scheme` (HTTP/2 only).
    scheme: Option<String>,
}

/// A backend serving HTTP/1.1 and HTTP/2 (in the clear with prior
/// knowledge, or over TLS with ALPN) whose `/healthz` answers with a status
/// the test sets; every other path answers 200 with the backend's name.
#[derive(Clone)]
struct Checked {
    addr: SocketAddr,
    health: Arc<AtomicU16>,
    traffic: Arc<AtomicUsize>,
    probes: Arc<Mutex<Vec<Probe>>>,
}

impl Checked {
    async fn start(name: &'static str, tls: bool) -> Checked {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let backend = Checked {
            addr: listener.local_addr().unwrap(),
            health: Arc::new(AtomicU16::new(200)),
            traffic: Arc::default(),
            probes: Arc::default(),
        };
        let acceptor = tls.then(localhost_acceptor);
        let b = backend.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (b, acceptor) = (b.clone(), acceptor.clone());
                tokio::spawn(async move {
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
                    let svc = hyper::service::service_fn(move |req| b.clone().answer(name, req));
                    let _ = match acceptor {
                        Some(acceptor) => match acceptor.accept(stream).await {
                            Ok(stream) => builder.serve_connection(TokioIo::new(stream), svc).await,
                            Err(_) => return,
                        },
                        None => builder.serve_connection(TokioIo::new(stream), svc).await,
                    };
                });
            }
        });
        backend
    }

    async fn answer(self, name: &str, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
        if req.uri().path() != "/healthz" {
            self.traffic.fetch_add(1, Ordering::SeqCst);
            return Ok(Response::new(Full::new(Bytes::from(name.to_owned()))));
        }
        let host = match req.headers().get("host") {
            Some(host) => host.to_str().unwrap().to_owned(),
            None => req.uri().authority().map(ToString::to_string).unwrap_or_default(),
        };
        self.probes.lock().unwrap().push(Probe {
            version: req.version(),
            host,
            scheme: req.uri().scheme_str().map(str::to_owned),
        });
        let mut resp = Response::new(Full::new(Bytes::from_static(b"health")));
        *resp.status_mut() = StatusCode::from_u16(self.health.load(Ordering::SeqCst)).unwrap();
        Ok(resp)
    }

    fn probes(&self) -> Vec<Probe> {
        self.probes.lock().unwrap().clone()
    }

    fn traffic(&self) -> usize {
        self.traffic.load(Ordering::SeqCst)
    }
}

/// Two servers `a` and `b` of one upstream (`scheme` `http` or `https`)
/// with `extra` settings, checked every 100 ms, down after 2 failures.
fn config(scheme: &str, a: &Checked, b: &Checked, extra: &str) -> String {
    format!(
        "[listener.web]\nbind = \"127.0.0.1:0\"\nupstream = \"app\"\n\n\
         [upstream.app]\nservers = [\"{scheme}://{}\", \"{scheme}://{}\"]\n{extra}\n\n\
         [upstream.app.health_check]\npath = \"/healthz\"\ninterval = \"100ms\"\ntimeout = \"500ms\"\nrise = 2\nfall = 2\n",
        a.addr, b.addr
    )
}

/// Start ginx over two fresh backends and check that `a` is probed with
/// `version`, goes down on a failing health path (and then gets no
/// request), and comes back when it passes again.
async fn down_and_back(tls: bool, extra: &str, version: Version) -> Vec<Probe> {
    let (a, b) = (Checked::start("a", tls).await, Checked::start("b", tls).await);
    let scheme = if tls { "https" } else { "http" };
    let ginx = Ginx::start(&config(scheme, &a, &b, extra), &[], &["web"]).await;
    let addr = ginx.addr("web");
    assert!(
        eventually(DEADLINE, || a.probes().len() >= 2 && b.probes().len() >= 2).await,
        "both probed; log:\n{}",
        ginx.log_text()
    );
    a.health.store(503, Ordering::SeqCst);
    assert!(ginx.wait_log("server down: health check failed", DEADLINE).await);
    let before = a.traffic();
    assert_eq!(bodies(addr, "/", 6).await, ["b"; 6]);
    assert_eq!(a.traffic(), before, "no request to the server that is down");
    a.health.store(200, Ordering::SeqCst);
    assert!(ginx.wait_log("server up: health check passed", DEADLINE).await);
    let seen: HashSet<String> = bodies(addr, "/", 4).await.into_iter().collect();
    assert!(seen.contains("a"), "{seen:?}");
    let probes = a.probes();
    assert!(probes.iter().all(|p| p.version == version), "{probes:?}");
    assert!(probes.iter().all(|p| p.host == a.addr.to_string()), "{probes:?}");
    probes
}

#[tokio::test]
async fn https_servers_are_checked_over_tls() {
    down_and_back(true, "tls_verify = false", Version::HTTP_11).await;
}

#[tokio::test]
async fn h2_servers_are_checked_with_http2_over_tls() {
    let probes = down_and_back(true, "protocol = \"h2\"\ntls_verify = false", Version::HTTP_2).await;
    assert!(
        probes.iter().all(|p| p.scheme.as_deref() == Some("https")),
        "{probes:?}"
    );
}

#[tokio::test]
async fn h2c_servers_are_checked_with_http2_in_the_clear() {
    let probes = down_and_back(false, "protocol = \"h2c\"", Version::HTTP_2).await;
    assert!(
        probes.iter().all(|p| p.scheme.as_deref() == Some("http")),
        "{probes:?}"
    );
}

#[tokio::test]
async fn http1_servers_are_checked_as_before() {
    down_and_back(false, "", Version::HTTP_11).await;
}
