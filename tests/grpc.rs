//! gRPC through ginx with a real tonic client and a real tonic server.
//!
//! The service `test.Echo` is written by hand the way tonic-build's output
//! is (no protoc, no build script): a prost message, a tower `Service` that
//! dispatches on the path to `tonic::server::Grpc`, and a client on
//! `tonic::client::Grpc<Channel>`. The server is `tonic::transport::Server`,
//! in the clear behind `protocol = "h2c"` or over TLS (ALPN h2) behind
//! `protocol = "h2"` with `tls_ca`. ginx has a plain listener (the client
//! speaks h2c with prior knowledge) and a TLS listener (ALPN h2), and every
//! test makes its calls through both. Covered: unary calls, server streaming
//! (in order, 1000 messages of 1 KiB, and in lockstep to show nothing is
//! buffered), bidirectional streaming in lockstep (requests are not
//! buffered either), an error status with message, details and custom
//! metadata both trailers-only and after messages, and what the server saw
//! (HTTP/2, `te: trailers`, TLS or not).

mod support;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::StreamExt;
use http::uri::PathAndQuery;
use support::*;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::server::{ServerStreamingService, StreamingService, UnaryService};
use tonic::transport::server::{TcpConnectInfo, TcpIncoming, TlsConnectInfo};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity, Server, ServerTlsConfig};
use tonic::{Code, Request, Response, Status, Streaming};
use tonic_prost::ProstCodec;

/// The one message type, in requests and replies.
#[derive(Clone, PartialEq, prost::Message)]
struct Note {
    #[prost(string, tag = "1")]
    text: String,
    #[prost(uint32, tag = "2")]
    n: u32,
}

fn note(text: &str, n: u32) -> Note {
    Note {
        text: text.to_owned(),
        n,
    }
}

const UNARY: &str = "/test.Echo/Unary";
const FAIL: &str = "/test.Echo/Fail";
const COUNT: &str = "/test.Echo/Count";
const COUNT_THEN_FAIL: &str = "/test.Echo/CountThenFail";
const LOCKSTEP: &str = "/test.Echo/Lockstep";
const CHAT: &str = "/test.Echo/Chat";

// ---- server -------------------------------------------------------------

/// What the server saw of one call.
#[derive(Debug, Clone)]
struct SeenCall {
    path: String,
    version: http::Version,
    te: Option<String>,
    tls: bool,
}

/// The `test.Echo` server:
/// - `Unary` answers `echo TEXT` with the same `n`;
/// - `Fail` fails with [`failure`] (a trailers-only response);
/// - `Count` streams `n` notes with the request's text, numbered 1..=n;
/// - `CountThenFail` streams `n` such notes, then ends with [`failure`];
/// - `Lockstep` streams `n` notes, each only once the test adds a permit
///   to `gate`;
/// - `Chat` (bidirectional) answers each note as `Unary` does, as soon as
///   it arrives.
#[derive(Clone)]
struct EchoServer {
    seen: Arc<Mutex<Vec<SeenCall>>>,
    gate: Arc<Semaphore>,
}

impl Default for EchoServer {
    fn default() -> Self {
        EchoServer {
            seen: Default::default(),
            gate: Arc::new(Semaphore::new(0)),
        }
    }
}

type Notes = Pin<Box<dyn futures_core::Stream<Item = Result<Note, Status>> + Send>>;

/// A `NotFound` status with a message that needs percent-encoding, binary
/// details (`grpc-status-details-bin`) and custom metadata, ASCII and binary.
fn failure() -> Status {
    let mut metadata = MetadataMap::new();
    metadata.insert("x-reason", "gone fishing".parse().unwrap());
    metadata.insert_bin("x-trace-bin", MetadataValue::from_bytes(&[0, 1, 0xfe, 0xff]));
    Status::with_details_and_metadata(
        Code::NotFound,
        "no such thing: 100% ünïcode",
        Bytes::from_static(b"\x08\x05details"),
        metadata,
    )
}

fn assert_failure(status: &Status) {
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert_eq!(status.message(), "no such thing: 100% ünïcode");
    assert_eq!(status.details(), b"\x08\x05details");
    assert_eq!(status.metadata().get("x-reason").unwrap(), "gone fishing");
    let trace = status.metadata().get_bin("x-trace-bin").unwrap();
    assert_eq!(trace.to_bytes().unwrap(), Bytes::from_static(&[0, 1, 0xfe, 0xff]));
}

/// `echo TEXT`, same `n`.
fn echoed(r: Note) -> Note {
    note(&format!("echo {}", r.text), r.n)
}

fn numbered(text: String, n: u32) -> impl Iterator<Item = Result<Note, Status>> {
    (1..=n).map(move |i| Ok(note(&text, i)))
}

/// A unary method of [`EchoServer`] (tonic-build makes one struct per method).
struct Unary<F>(EchoServer, F);

impl<F: Fn(&EchoServer, Note) -> Result<Note, Status>> UnaryService<Note> for Unary<F> {
    type Response = Note;
    type Future = std::future::Ready<Result<Response<Note>, Status>>;
    fn call(&mut self, request: Request<Note>) -> Self::Future {
        std::future::ready((self.1)(&self.0, request.into_inner()).map(Response::new))
    }
}

/// A server-streaming method of [`EchoServer`].
struct ServerStreaming<F>(EchoServer, F);

impl<F: Fn(&EchoServer, Note) -> Notes> ServerStreamingService<Note> for ServerStreaming<F> {
    type Response = Note;
    type ResponseStream = Notes;
    type Future = std::future::Ready<Result<Response<Notes>, Status>>;
    fn call(&mut self, request: Request<Note>) -> Self::Future {
        std::future::ready(Ok(Response::new((self.1)(&self.0, request.into_inner()))))
    }
}

/// A bidirectional-streaming method of [`EchoServer`].
struct BidiStreaming<F>(EchoServer, F);

impl<F: Fn(&EchoServer, Streaming<Note>) -> Notes> StreamingService<Note> for BidiStreaming<F> {
    type Response = Note;
    type ResponseStream = Notes;
    type Future = std::future::Ready<Result<Response<Notes>, Status>>;
    fn call(&mut self, request: Request<Streaming<Note>>) -> Self::Future {
        std::future::ready(Ok(Response::new((self.1)(&self.0, request.into_inner()))))
    }
}

impl<B> tower_service::Service<http::Request<B>> for EchoServer
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let path = req.uri().path().to_owned();
        self.seen.lock().unwrap().push(SeenCall {
            path: path.clone(),
            version: req.version(),
            te: req.headers().get("te").map(|v| v.to_str().unwrap().to_owned()),
            tls: req.extensions().get::<TlsConnectInfo<TcpConnectInfo>>().is_some(),
        });
        let server = self.clone();
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<Note, Note>::default());
            Ok(match path.as_str() {
                UNARY => grpc.unary(Unary(server, Self::echo), req).await,
                FAIL => grpc.unary(Unary(server, Self::fail), req).await,
                COUNT => {
                    grpc.server_streaming(ServerStreaming(server, Self::count), req)
                        .await
                }
                COUNT_THEN_FAIL => {
                    let method = ServerStreaming(server, Self::count_then_fail);
                    grpc.server_streaming(method, req).await
                }
                LOCKSTEP => {
                    let method = ServerStreaming(server, Self::lockstep);
                    grpc.server_streaming(method, req).await
                }
                CHAT => grpc.streaming(BidiStreaming(server, Self::chat), req).await,
                _ => Status::unimplemented(path).into_http(),
            })
        })
    }
}

/// The methods take `&self`, as a tonic-build service trait's do. (With a
/// closure capturing `gate` for `Lockstep` instead, rustc's `Send` check of
/// the call's future fails: "one type is more general than the other".)
impl EchoServer {
    fn echo(&self, r: Note) -> Result<Note, Status> {
        Ok(echoed(r))
    }

    fn fail(&self, _: Note) -> Result<Note, Status> {
        Err(failure())
    }

    fn count(&self, r: Note) -> Notes {
        Box::pin(futures_util::stream::iter(numbered(r.text, r.n)))
    }

    fn count_then_fail(&self, r: Note) -> Notes {
        let notes = numbered(r.text, r.n).chain([Err(failure())]);
        Box::pin(futures_util::stream::iter(notes))
    }

    fn lockstep(&self, r: Note) -> Notes {
        let gate = self.gate.clone();
        Box::pin(futures_util::stream::unfold(1, move |i| {
            let (gate, text, n) = (gate.clone(), r.text.clone(), r.n);
            async move {
                if i > n {
                    return None;
                }
                gate.acquire().await.unwrap().forget();
                Some((Ok(note(&text, i)), i + 1))
            }
        }))
    }

    fn chat(&self, requests: Streaming<Note>) -> Notes {
        Box::pin(requests.map(|r| r.map(echoed)))
    }
}

/// Serve `service` on 127.0.0.1:0 with tonic's server, over TLS with
/// `identity` (ALPN h2) if given.
async fn serve(service: EchoServer, identity: Option<Identity>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut server = Server::builder();
    if let Some(identity) = identity {
        server = server
            .tls_config(ServerTlsConfig::new().identity(identity))
            .unwrap();
    }
    tokio::spawn(server.serve_with_incoming(service, TcpIncoming::from(listener)));
    addr
}

// ---- client -------------------------------------------------------------

/// A `test.Echo` client, as tonic-build would generate it.
struct EchoClient(tonic::client::Grpc<Channel>);

impl EchoClient {
    async fn unary(&mut self, method: &'static str, request: Note) -> Result<Response<Note>, Status> {
        self.0.ready().await.expect("channel ready");
        let path = PathAndQuery::from_static(method);
        self.0
            .unary(Request::new(request), path, ProstCodec::default())
            .await
    }

    async fn server_streaming(
        &mut self,
        method: &'static str,
        request: Note,
    ) -> Result<Response<Streaming<Note>>, Status> {
        self.0.ready().await.expect("channel ready");
        let path = PathAndQuery::from_static(method);
        self.0
            .server_streaming(Request::new(request), path, ProstCodec::default())
            .await
    }

    /// A bidirectional call whose request notes are those sent on the
    /// returned sender, one by one.
    async fn bidi_streaming(
        &mut self,
        method: &'static str,
    ) -> (
        tokio::sync::mpsc::Sender<Note>,
        Result<Response<Streaming<Note>>, Status>,
    ) {
        self.0.ready().await.expect("channel ready");
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let requests =
            futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|n| (n, rx)) });
        let path = PathAndQuery::from_static(method);
        let reply = self
            .0
            .streaming(Request::new(requests), path, ProstCodec::default())
            .await;
        (tx, reply)
    }
}

// ---- setup --------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Debug)]
enum Upstream {
    /// `protocol = "h2c"`: the tonic server in the clear.
    H2c,
    /// `protocol = "h2"`: the tonic server over TLS, trusted with `tls_ca`.
    H2,
}

/// A tonic server, and ginx in front of it with a plain listener `web` and
/// a TLS listener `secure` (certificate for `localhost`).
struct Setup {
    server: EchoServer,
    ginx: Ginx,
    ginx_cert: String,
}

impl Setup {
    async fn start(upstream: Upstream) -> Setup {
        let server = EchoServer::default();
        let (upstream_cert, upstream_key) = pair(&["127.0.0.1"]);
        let (ginx_cert, ginx_key) = pair(&["localhost"]);
        let upstream_conf = match upstream {
            Upstream::H2c => {
                let addr = serve(server.clone(), None).await;
                format!("servers = [\"{addr}\"]\nprotocol = \"h2c\"")
            }
            Upstream::H2 => {
                let identity = Identity::from_pem(&upstream_cert, &upstream_key);
                let addr = serve(server.clone(), Some(identity)).await;
                format!("servers = [\"https://{addr}\"]\nprotocol = \"h2\"\ntls_ca = \"upstream.pem\"")
            }
        };
        let config = format!(
            "[listener.web]\nbind = \"127.0.0.1:0\"\nupstream = \"grpc\"\n\n\
             [listener.secure]\nbind = \"127.0.0.1:0\"\nupstream = \"grpc\"\n\
             tls = {{ cert = \"ginx.pem\", key = \"ginx.key\" }}\n\n\
             [upstream.grpc]\n{upstream_conf}\n"
        );
        let files = [
            ("upstream.pem", upstream_cert.as_str()),
            ("ginx.pem", ginx_cert.as_str()),
            ("ginx.key", ginx_key.as_str()),
        ];
        let ginx = Ginx::start(&config, &files, &["web", "secure"]).await;
        Setup {
            server,
            ginx,
            ginx_cert,
        }
    }

    /// A client speaking h2c (prior knowledge) to the plain listener.
    async fn plain_client(&self) -> EchoClient {
        let uri = format!("http://{}", self.ginx.addr("web"));
        let channel = Channel::from_shared(uri).unwrap().connect().await;
        EchoClient(tonic::client::Grpc::new(channel.expect("h2c connection to ginx")))
    }

    /// A client over TLS (ALPN h2, required by tonic) to the TLS listener,
    /// trusting ginx's certificate for `localhost`.
    async fn tls_client(&self) -> EchoClient {
        let uri = format!("https://{}", self.ginx.addr("secure"));
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ginx_cert))
            .domain_name("localhost");
        let channel = Channel::from_shared(uri)
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await;
        EchoClient(tonic::client::Grpc::new(channel.expect("TLS connection to ginx")))
    }

    /// Both clients, named for assertion messages.
    async fn clients(&self) -> [(&'static str, EchoClient); 2] {
        [
            ("h2c client", self.plain_client().await),
            ("TLS client", self.tls_client().await),
        ]
    }

    fn seen(&self) -> Vec<SeenCall> {
        self.server.seen.lock().unwrap().clone()
    }
}

// ---- tests --------------------------------------------------------------

async fn unary_call(upstream: Upstream) {
    let setup = Setup::start(upstream).await;
    for (who, mut client) in setup.clients().await {
        let reply = client.unary(UNARY, note("hello", 7)).await;
        let reply = reply.unwrap_or_else(|s| panic!("{who}: {s:?}\n{}", setup.ginx.log_text()));
        assert_eq!(reply.metadata().get("content-type").unwrap(), "application/grpc");
        assert_eq!(reply.into_inner(), note("echo hello", 7), "{who}");
    }
    let seen = setup.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    for call in seen {
        assert_eq!(call.path, UNARY);
        assert_eq!(call.version, http::Version::HTTP_2, "the server speaks HTTP/2");
        assert_eq!(
            call.te.as_deref(),
            Some("trailers"),
            "TE: trailers reaches the server"
        );
        assert_eq!(call.tls, upstream == Upstream::H2, "{call:?}");
    }
}

async fn server_streaming_call(upstream: Upstream) {
    let setup = Setup::start(upstream).await;
    for (who, mut client) in setup.clients().await {
        let reply = client.server_streaming(COUNT, note("tick", 5)).await;
        let mut stream = reply.expect(who).into_inner();
        for i in 1..=5 {
            assert_eq!(stream.message().await.expect(who), Some(note("tick", i)));
        }
        assert_eq!(stream.message().await.expect(who), None, "{who}");
        let trailers = stream.trailers().await.expect(who).expect("trailers");
        assert_eq!(trailers.get("grpc-status").unwrap(), "0", "{who}");
    }
}

async fn large_stream_arrives_whole(upstream: Upstream) {
    let setup = Setup::start(upstream).await;
    let text = "x".repeat(1024);
    for (who, mut client) in setup.clients().await {
        let reply = client.server_streaming(COUNT, note(&text, 1000)).await;
        let mut stream = reply.expect(who).into_inner();
        let mut count = 0;
        while let Some(got) = stream.message().await.expect(who) {
            count += 1;
            assert_eq!(got.n, count, "{who}: in order");
            assert_eq!(got.text, text, "{who}");
        }
        assert_eq!(count, 1000, "{who}");
        let trailers = stream.trailers().await.expect(who).expect("trailers");
        assert_eq!(trailers.get("grpc-status").unwrap(), "0", "{who}");
    }
}

/// Each message reaches the client while the server still holds the next:
/// ginx buffers neither the response nor its end.
async fn streaming_is_not_buffered(upstream: Upstream) {
    let setup = Setup::start(upstream).await;
    for (who, mut client) in setup.clients().await {
        let reply = client.server_streaming(LOCKSTEP, note("step", 3)).await;
        let mut stream = reply.expect(who).into_inner();
        for i in 1..=3 {
            setup.server.gate.add_permits(1);
            let got = tokio::time::timeout(DEADLINE, stream.message()).await;
            assert_eq!(got.expect(who).expect(who), Some(note("step", i)), "{who}");
        }
        assert_eq!(stream.message().await.expect(who), None, "{who}");
    }
}

/// Each request note reaches the server, and its answer the client, before
/// the client sends the next: both directions are streamed.
async fn bidi_streaming_in_lockstep(upstream: Upstream) {
    let setup = Setup::start(upstream).await;
    for (who, mut client) in setup.clients().await {
        let (requests, reply) = client.bidi_streaming(CHAT).await;
        let mut answers = reply.expect(who).into_inner();
        for i in 1..=3 {
            requests.send(note("hi", i)).await.unwrap();
            let got = tokio::time::timeout(DEADLINE, answers.message()).await;
            assert_eq!(got.expect(who).expect(who), Some(note("echo hi", i)), "{who}");
        }
        drop(requests);
        assert_eq!(answers.message().await.expect(who), None, "{who}");
    }
}

async fn error_status_trailers_only(upstream: Upstream) {
    let setup = Setup::start(upstream).await;
    for (who, mut client) in setup.clients().await {
        let status = client.unary(FAIL, note("x", 1)).await.expect_err(who);
        assert_failure(&status);
    }
}

async fn error_status_after_messages(upstream: Upstream) {
    let setup = Setup::start(upstream).await;
    for (who, mut client) in setup.clients().await {
        let reply = client.server_streaming(COUNT_THEN_FAIL, note("tick", 3)).await;
        let mut stream = reply.expect(who).into_inner();
        for i in 1..=3 {
            assert_eq!(stream.message().await.expect(who), Some(note("tick", i)));
        }
        let status = stream.message().await.expect_err(who);
        assert_failure(&status);
    }
}

#[tokio::test]
async fn unary_call_h2c_upstream() {
    unary_call(Upstream::H2c).await;
}

#[tokio::test]
async fn unary_call_h2_upstream() {
    unary_call(Upstream::H2).await;
}

#[tokio::test]
async fn server_streaming_call_h2c_upstream() {
    server_streaming_call(Upstream::H2c).await;
}

#[tokio::test]
async fn server_streaming_call_h2_upstream() {
    server_streaming_call(Upstream::H2).await;
}

#[tokio::test]
async fn large_stream_arrives_whole_h2c_upstream() {
    large_stream_arrives_whole(Upstream::H2c).await;
}

#[tokio::test]
async fn large_stream_arrives_whole_h2_upstream() {
    large_stream_arrives_whole(Upstream::H2).await;
}

#[tokio::test]
async fn streaming_is_not_buffered_h2c_upstream() {
    streaming_is_not_buffered(Upstream::H2c).await;
}

#[tokio::test]
async fn streaming_is_not_buffered_h2_upstream() {
    streaming_is_not_buffered(Upstream::H2).await;
}

#[tokio::test]
async fn bidi_streaming_in_lockstep_h2c_upstream() {
    bidi_streaming_in_lockstep(Upstream::H2c).await;
}

#[tokio::test]
async fn bidi_streaming_in_lockstep_h2_upstream() {
    bidi_streaming_in_lockstep(Upstream::H2).await;
}

#[tokio::test]
async fn error_status_trailers_only_h2c_upstream() {
    error_status_trailers_only(Upstream::H2c).await;
}

#[tokio::test]
async fn error_status_trailers_only_h2_upstream() {
    error_status_trailers_only(Upstream::H2).await;
}

#[tokio::test]
async fn error_status_after_messages_h2c_upstream() {
    error_status_after_messages(Upstream::H2c).await;
}

#[tokio::test]
async fn error_status_after_messages_h2_upstream() {
    error_status_after_messages(Upstream::H2).await;
}
