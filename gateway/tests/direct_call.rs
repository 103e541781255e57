//! The node's direct `tools/call` path against rmcp's: the same answers,
//! one as JSON, the other on rmcp's SSE stream.

mod common;

use common::*;
use serde_json::Value;
use session_core::Binding;
use session_manager::ValidationPolicy;

const ADD: &str = r#"{"jsonrpc":"2.0","id":"c-1","method":"tools/call","params":{"name":"math__add","arguments":{"a":20,"b":22}}}"#;
const COUNTER: &str =
    r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"math__counter"}}"#;
const UNKNOWN: &str =
    r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"nope__add"}}"#;

/// A `POST` with the session id and rmcp's required headers (plus
/// `extra`): the status, the content type, and the JSON-RPC message in the
/// body (from the SSE stream's data lines when the answer is SSE).
async fn post(
    url: &str,
    sid: &str,
    body: &str,
    extra: &[(&str, &str)],
) -> (reqwest::StatusCode, String, Option<Value>) {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("mcp-session-id", sid)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .body(body.to_owned());
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let kind = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = res.text().await.unwrap();
    let msg = if kind.starts_with("text/event-stream") {
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .find_map(|d| serde_json::from_str::<Value>(d).ok())
    } else {
        serde_json::from_str(&text).ok()
    };
    (status, kind, msg)
}

fn text(msg: &Value) -> &str {
    msg["result"]["content"][0]["text"].as_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_tool_call_is_answered_as_json_and_others_go_to_rmcp() {
    let c = Cluster::start(ValidationPolicy::EveryAccess).await;
    let on_a = client(&c.a.url()).await;
    let sid = on_a.session_id.clone();

    // Through node B, which has not seen the session: the middleware
    // restores it and answers without rmcp (no handshake replay needed).
    let (status, kind, msg) = post(&c.b.url(), &sid, ADD, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(kind, "application/json", "the direct path answers JSON");
    let msg = msg.unwrap();
    assert_eq!((msg["id"].as_str(), text(&msg)), (Some("c-1"), "42"));

    // The same call with a header the direct path leaves to rmcp: same
    // answer, on rmcp's SSE stream.
    let (status, kind, msg) = post(&c.b.url(), &sid, ADD, &[("mcp-param-x", "1")]).await;
    assert_eq!(status, 200);
    assert!(kind.starts_with("text/event-stream"), "{kind}");
    let msg = msg.unwrap();
    assert_eq!((msg["id"].as_str(), text(&msg)), (Some("c-1"), "42"));

    // Both paths use the one backend session: the counter continues
    // whichever path and node it goes through.
    let counts: Vec<String> = {
        let mut out = Vec::new();
        for (url, extra) in [
            (c.a.url(), &[][..]),
            (c.b.url(), &[("mcp-name", "math__counter")][..]),
            (c.b.url(), &[][..]),
        ] {
            let (_, _, msg) = post(&url, &sid, COUNTER, extra).await;
            out.push(text(&msg.unwrap()).to_owned());
        }
        out
    };
    assert_eq!(counts, ["1", "2", "3"]);
    assert_eq!(c.math.session_ids().await.len(), 1, "one backend session");

    // A tool no backend serves: the JSON-RPC error names it, on both paths.
    let (_, kind, msg) = post(&c.a.url(), &sid, UNKNOWN, &[]).await;
    assert_eq!(kind, "application/json");
    let msg = msg.unwrap();
    assert_eq!(msg["id"], 3);
    assert!(
        msg["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nope__add")
    );
    let (_, _, via_rmcp) = post(&c.a.url(), &sid, UNKNOWN, &[("mcp-param-x", "1")]).await;
    assert_eq!(via_rmcp.unwrap()["error"]["code"], msg["error"]["code"]);

    // rmcp's DNS-rebinding check still applies: a foreign Host is its 403.
    let (status, _, _) = post(&c.b.url(), &sid, ADD, &[("host", "evil.example")]).await;
    assert_eq!(status, 403);

    // Anything but a call still goes to rmcp.
    let (status, kind, msg) = post(&c.b.url(), &sid, LIST_TOOLS, &[]).await;
    assert_eq!(status, 200);
    assert!(kind.starts_with("text/event-stream"), "{kind}");
    assert!(msg.unwrap()["result"]["tools"].as_array().unwrap().len() >= 3);

    // Terminated on A: the direct path on B answers 404 at once.
    assert_eq!(raw_delete(&c.a.url(), &sid).await, 200);
    assert_eq!(post(&c.b.url(), &sid, ADD, &[]).await.0, 404);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_direct_calls_off_every_call_goes_through_rmcp() {
    let store: std::sync::Arc<dyn session_core::SessionStore> = std::sync::Arc::new(
        session_core::MemoryStore::new(session_core::StoreConfig::default()),
    );
    let c = Cluster::start_on(store, ValidationPolicy::Push, |cfg| {
        cfg.direct_calls = false;
    })
    .await;
    let on_a = client(&c.a.url()).await;
    let (status, kind, msg) = post(&c.a.url(), &on_a.session_id, ADD, &[]).await;
    assert_eq!(status, 200);
    assert!(kind.starts_with("text/event-stream"), "{kind}");
    assert_eq!(text(&msg.unwrap()), "42");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_direct_path_checks_the_callers_identity_first() {
    let store: std::sync::Arc<dyn session_core::SessionStore> = std::sync::Arc::new(
        session_core::MemoryStore::new(session_core::StoreConfig::default()),
    );
    let c = Cluster::start_on(store, ValidationPolicy::Push, |cfg| {
        cfg.tokens.insert(
            "alice-token".into(),
            Binding::identity("https://idp", "alice").unwrap(),
        );
        cfg.tokens.insert(
            "mallory-token".into(),
            Binding::identity("https://idp", "mallory").unwrap(),
        );
    })
    .await;
    let http = reqwest::Client::builder()
        .default_headers(
            [(
                reqwest::header::AUTHORIZATION,
                "Bearer alice-token".parse().unwrap(),
            )]
            .into_iter()
            .collect(),
        )
        .build()
        .unwrap();
    let owner = session_gateway::backend::connect_fresh(&http, &c.a.url())
        .await
        .unwrap();
    let sid = owner.session_id.clone();
    let as_mallory = [("authorization", "Bearer mallory-token")];
    let (status, _, _) = post(&c.b.url(), &sid, COUNTER, &as_mallory).await;
    assert_eq!(status, 403);
    let (status, _, _) = post(&c.b.url(), &sid, COUNTER, &[]).await;
    assert_eq!(status, 403, "unauthenticated is another identity");
    // The owner's session and backend state are untouched.
    let as_alice = [("authorization", "Bearer alice-token")];
    let (status, kind, msg) = post(&c.b.url(), &sid, COUNTER, &as_alice).await;
    assert_eq!((status.as_u16(), kind.as_str()), (200, "application/json"));
    assert_eq!(text(&msg.unwrap()), "1", "mallory's calls never ran");
    c.stop().await;
}
