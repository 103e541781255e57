//! The direct per-call path to a backend session (`upstream::Upstream`):
//! against a real demo backend (same backend session as rmcp's client,
//! 404 after the backend forgot it) and against a scripted backend that
//! answers with JSON, with SSE carrying a request of its own first, or
//! with errors.
#![allow(missing_docs)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use common::{any, call, client, text_of};
use futures_util::{StreamExt, stream};
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};
use session_gateway::demo::DemoBackend;
use session_gateway::upstream::{CallError, Upstream};
use tokio::sync::Notify;

const INIT: &str = r#"{"protocolVersion":"2025-06-18","capabilities":{"tools":{}},"serverInfo":{"name":"fake","version":"1"}}"#;

fn params(name: &str, args: Value) -> CallToolRequestParams {
    let Value::Object(args) = args else {
        panic!("arguments are an object")
    };
    CallToolRequestParams::new(name.to_owned()).with_arguments(args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_calls_share_the_backend_session_and_a_forgotten_one_is_expired() {
    let math = DemoBackend::start("math", any()).await.unwrap();
    let conn = client(&math.url()).await;
    let http = reqwest::Client::new();
    let up = Upstream::new(&http, &math.url(), &conn.session_id, &conn.init_json).unwrap();
    for want in ["1", "2"] {
        let r = up.call_tool(&params("counter", json!({}))).await.unwrap();
        assert_eq!(text_of(&r), want);
    }
    // The same backend session as rmcp's client on it.
    assert_eq!(
        text_of(&call(&conn, "counter", json!({})).await.unwrap()),
        "3"
    );
    let r = up
        .call_tool(&params("add", json!({"a": 2, "b": 5})))
        .await
        .unwrap();
    assert_eq!(text_of(&r), "7");
    let mut names: Vec<_> = up
        .list_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    assert!(names.contains(&"add".to_owned()) && names.contains(&"counter".to_owned()));
    assert_eq!(math.open_sessions().await, 1);
    math.forget_sessions().await;
    let e = up
        .call_tool(&params("counter", json!({})))
        .await
        .unwrap_err();
    assert!(matches!(e, CallError::SessionExpired), "{e}");
    math.stop().await;
}

/// A backend that answers by the tool name: `json` (an `application/json`
/// answer), `sse` (an SSE stream: an empty priming event, a notification,
/// a `ping` request of its own whose answer it waits for, then the
/// response), `gone` (404), `boom` (500), `rpc` (a JSON-RPC error).
#[derive(Default)]
struct Fake {
    pinged: Notify,
    pongs: Mutex<Vec<Value>>,
    headers: Mutex<Vec<(String, String)>>,
}

async fn fake(State(f): State<Arc<Fake>>, headers: HeaderMap, body: Bytes) -> Response {
    let msg: Value = serde_json::from_slice(&body).unwrap();
    let h = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    f.headers
        .lock()
        .unwrap()
        .push((h("mcp-session-id"), h("mcp-protocol-version")));
    if msg.get("method").is_none() {
        // Our ping's answer.
        f.pongs.lock().unwrap().push(msg);
        f.pinged.notify_one();
        return StatusCode::ACCEPTED.into_response();
    }
    let id = msg["id"].clone();
    let tool = msg["params"]["name"].as_str().unwrap_or("").to_owned();
    let result = json!({"jsonrpc": "2.0", "id": id, "result": {"content": [{"type": "text", "text": tool}]}});
    match tool.as_str() {
        "json" => ([(header::CONTENT_TYPE, "application/json")], result.to_string()).into_response(),
        "rpc" => (
            [(header::CONTENT_TYPE, "application/json")],
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32602, "message": "no such tool"}})
                .to_string(),
        )
            .into_response(),
        "gone" => StatusCode::NOT_FOUND.into_response(),
        "boom" => (StatusCode::INTERNAL_SERVER_ERROR, "it broke").into_response(),
        "sse" => {
            // The response only follows once our ping was answered (or
            // after 5 s, as an error, so a missing answer fails the test).
            let first = format!(
                "id: 0\ndata:\n\ndata: {}\n\ndata: {}\n\n",
                json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": 1, "progress": 1}}),
                json!({"jsonrpc": "2.0", "id": "srv-1", "method": "ping"}),
            );
            let last = async move {
                let answered = tokio::time::timeout(Duration::from_secs(5), f.pinged.notified())
                    .await
                    .is_ok();
                let last = if answered {
                    result
                } else {
                    json!({"jsonrpc": "2.0", "id": id, "error": {"code": -1, "message": "ping not answered"}})
                };
                Ok::<_, std::io::Error>(format!("data: {last}\n\n"))
            };
            let body = stream::once(std::future::ready(Ok(first))).chain(stream::once(last));
            (
                [(header::CONTENT_TYPE, "text/event-stream")],
                Body::from_stream(body),
            )
                .into_response()
        }
        _ => StatusCode::BAD_REQUEST.into_response(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_in_json_or_sse_with_a_backend_request_first_and_errors_are_typed() {
    let f = Arc::new(Fake::default());
    let app = Router::new()
        .route("/mcp", post(fake))
        .with_state(f.clone());
    let listener = tokio::net::TcpListener::bind(any()).await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::new();
    let up = Upstream::new(&http, &url, "backend-sid", INIT).unwrap();

    let r = up.call_tool(&params("json", json!({}))).await.unwrap();
    assert_eq!(text_of(&r), "json");
    let r = tokio::time::timeout(
        Duration::from_secs(30),
        up.call_tool(&params("sse", json!({}))),
    )
    .await
    .expect("no hang")
    .unwrap();
    assert_eq!(text_of(&r), "sse");
    assert_eq!(
        f.pongs.lock().unwrap().as_slice(),
        [json!({"jsonrpc": "2.0", "id": "srv-1", "result": {}})]
    );
    assert!(matches!(
        up.call_tool(&params("gone", json!({}))).await,
        Err(CallError::SessionExpired)
    ));
    match up.call_tool(&params("boom", json!({}))).await {
        Err(CallError::Status { status, body }) => {
            assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
            assert_eq!(body, "it broke");
        }
        other => panic!("{other:?}"),
    }
    match up.call_tool(&params("rpc", json!({}))).await {
        Err(e @ CallError::Rpc(_)) => assert!(e.to_string().contains("no such tool"), "{e}"),
        other => panic!("{other:?}"),
    }
    // Every request carried the backend session and the negotiated version.
    for (sid, version) in f.headers.lock().unwrap().iter() {
        assert_eq!(
            (sid.as_str(), version.as_str()),
            ("backend-sid", "2025-06-18")
        );
    }
    server.abort();
}
