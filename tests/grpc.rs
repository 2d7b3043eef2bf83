//! gRPC through ginx over h2c both ways, with a minimal hand-written gRPC
//! framing (5-byte length prefix, `application/grpc`, `grpc-status`
//! trailers) rather than tonic, to keep compile times down.

mod support;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use support::*;

struct GrpcReply {
    status: StatusCode,
    content_type: String,
    messages: Vec<Bytes>,
    trailers: hyper::HeaderMap,
}

async fn call(ginx: &Ginx, method: &str, messages: &[&[u8]]) -> GrpcReply {
    let mut h2 = h2c_connect::<Full<Bytes>>(ginx.addr("web")).await;
    let body: Vec<u8> = messages.iter().flat_map(|m| grpc_frame(m).to_vec()).collect();
    let req = Request::post(format!("http://grpc.test/grpc.Test/{method}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let resp = h2.send_request(req).await.expect("gRPC response");
    let status = resp.status();
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
    let collected = resp.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().expect("trailers");
    GrpcReply {
        status,
        content_type,
        messages: grpc_messages(&collected.to_bytes()),
        trailers,
    }
}

async fn setup() -> (ProtoBackend, Ginx) {
    let backend = ProtoBackend::start("grpc", false).await;
    let config = format!(
        "[listener.web]\nbind = \"127.0.0.1:0\"\nupstream = \"grpc\"\n\n[upstream.grpc]\nservers = [\"{}\"]\nprotocol = \"h2c\"\n",
        backend.addr
    );
    let ginx = Ginx::start(&config, &[], &["web"]).await;
    (backend, ginx)
}

#[tokio::test]
async fn unary_call_with_trailers() {
    let (backend, ginx) = setup().await;
    let reply = call(&ginx, "Echo", &[b"hello"]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.content_type, "application/grpc");
    assert_eq!(reply.messages, [Bytes::from_static(b"hello")]);
    assert_eq!(reply.trailers["grpc-status"], "0");
    let seen = backend.seen();
    assert_eq!(seen[0].version, hyper::Version::HTTP_2);
    assert_eq!(
        seen[0].headers["te"], "trailers",
        "TE: trailers reaches the gRPC server"
    );
}

#[tokio::test]
async fn server_streaming_call() {
    let (_backend, ginx) = setup().await;
    let reply = call(&ginx, "Count", &[b"5"]).await;
    assert_eq!(reply.status, StatusCode::OK);
    let numbers: Vec<&[u8]> = reply.messages.iter().map(|m| &m[..]).collect();
    assert_eq!(numbers, [&b"1"[..], b"2", b"3", b"4", b"5"]);
    assert_eq!(reply.trailers["grpc-status"], "0");
}

#[tokio::test]
async fn error_status_and_message_in_trailers() {
    let (_backend, ginx) = setup().await;
    let reply = call(&ginx, "Fail", &[b"x"]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.messages.is_empty());
    assert_eq!(reply.trailers["grpc-status"], "5");
    assert_eq!(reply.trailers["grpc-message"], "no such thing");
}
