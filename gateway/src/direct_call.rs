//! The node's direct path for `tools/call`: answered by the request
//! middleware itself, as one JSON response, without rmcp's server.
//!
//! For every other message rmcp's streamable-HTTP service does the work:
//! it hands the request to the session's worker task over a channel,
//! spawns a handler task, parses the body by trying its untagged message
//! enums variant by variant, and answers on a per-request SSE stream. For
//! a tool call that is most of what the gateway itself costs (the handler
//! and its backend request are a quarter of it), and the call is the
//! gateway's hot path. The middleware has already done what the session
//! needs (`get_for`: exists, bound to this caller, validated per policy,
//! restored on a miss), so a plain `tools/call` is parsed into the one
//! shape it can have and answered with `application/json`, which every
//! client must accept for a `POST` (the spec lets the server choose JSON or
//! SSE per request).
//!
//! Only what rmcp would answer the same way takes this path; anything else
//! goes to rmcp unchanged (the body is handed on as read):
//!
//! - rmcp's DNS-rebinding check would pass: one `Host` header naming an
//!   allowed host (the node's `allowed_hosts`), and no `Origin` header;
//! - the client accepts both `application/json` and `text/event-stream`
//!   and sends `Content-Type: application/json` (rmcp answers 406/415
//!   otherwise);
//! - a `Content-Length` within the node's body limit (rmcp answers 413);
//! - no `MCP-Protocol-Version` header, or one naming a known version below
//!   the one that introduced the standard request headers (rmcp validates
//!   those headers and the per-request version against the body), and no
//!   `Mcp-Method`, `Mcp-Name` or `Mcp-Param-*` header;
//! - a single JSON-RPC 2.0 request (not a batch) with a number or string
//!   id, method `tools/call`, and parameters that parse as a call, without
//!   a per-request protocol version or the input-required retry fields.
//!
//! What the client loses against rmcp's SSE answer: nothing the gateway
//! forwarded before. Backend notifications during a call (progress,
//! logging) were already dropped by the direct backend request
//! ([`crate::upstream`]); a `notifications/cancelled` for a call on this
//! path reaches rmcp, which does not know the request (closing the
//! connection still cancels it: the middleware's future is dropped).

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rmcp::ErrorData as McpError;
use rmcp::model::{CallToolRequestParams, CallToolResult, ProtocolVersion};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::config::Config;
use crate::handler::call_tool;
use crate::session::{LiveSession, Manager};

const JSON: &str = "application/json";
const EVENT_STREAM: &str = "text/event-stream";
/// The per-request protocol version key of `_meta` (rmcp checks it
/// against the header, so such a request goes to rmcp).
const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";

/// What [`take`] did with a request.
pub enum Taken {
    /// Answered here.
    Answered(Response),
    /// Not a direct call: the request for rmcp (its body intact).
    Pass(Request),
}

/// Answers `req` here if it is a plain `tools/call` (see the module
/// docs), otherwise hands it back for rmcp.
pub async fn take(mgr: &Manager, live: &LiveSession, req: Request, cfg: &Config) -> Taken {
    let max_body = cfg.max_body_bytes;
    if !cfg.direct_calls
        || req.method() != axum::http::Method::POST
        || !headers_allow(req.headers(), max_body)
        || !host_allowed(req.headers(), &cfg.allowed_hosts)
    {
        return Taken::Pass(req);
    }
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, max_body).await {
        Ok(b) => b,
        Err(e) => return Taken::Answered(unreadable(&e)),
    };
    match parse(&bytes) {
        Some((id, params)) => {
            let out = call_tool(mgr, live, params).await;
            Taken::Answered(answer(id, &out))
        }
        None => Taken::Pass(Request::from_parts(parts, Body::from(bytes))),
    }
}

/// Whether the headers are ones rmcp would accept and answer without
/// looking at more than the body.
fn headers_allow(h: &HeaderMap, max_body: usize) -> bool {
    let (mut json, mut sse) = (false, false);
    for v in h.get_all(header::ACCEPT) {
        let Ok(v) = v.to_str() else { return false };
        for range in v.split(',') {
            let mut parts = range.split(';');
            let essence = parts.next().unwrap_or("").trim();
            // A weight other than the plain default: leave the media
            // negotiation to rmcp.
            if parts.any(|p| p.trim_start().starts_with(['q', 'Q'])) {
                return false;
            }
            json |= essence.eq_ignore_ascii_case(JSON);
            sse |= essence.eq_ignore_ascii_case(EVENT_STREAM);
        }
    }
    let content_json = h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case(JSON)
        });
    let small = h
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n <= max_body);
    json && sse && content_json && small && version_allows(h) && !has_standard_headers(h)
}

/// No `MCP-Protocol-Version`, or a known one from before the standard
/// request headers.
fn version_allows(h: &HeaderMap) -> bool {
    let mut values = h.get_all("mcp-protocol-version").iter();
    let Some(v) = values.next() else { return true };
    if values.next().is_some() {
        return false;
    }
    v.to_str().is_ok_and(|v| {
        ProtocolVersion::KNOWN_VERSIONS
            .iter()
            .any(|k| k.as_str() == v)
            && v < ProtocolVersion::STANDARD_HEADERS.as_str()
    })
}

/// rmcp's DNS-rebinding check, passed: one `Host` header naming an allowed
/// host (and port, where the allowed entry has one), or an empty allow
/// list; and no `Origin` header (rmcp checks it against its own list).
fn host_allowed(h: &HeaderMap, allowed: &[String]) -> bool {
    if h.contains_key(header::ORIGIN) {
        return false;
    }
    let mut hosts = h.get_all(header::HOST).iter();
    let (Some(host), None) = (hosts.next(), hosts.next()) else {
        return false;
    };
    let Some(host) = host
        .to_str()
        .ok()
        .and_then(|v| axum::http::uri::Authority::try_from(v).ok())
    else {
        return false;
    };
    if allowed.is_empty() {
        return true;
    }
    let name = |s: &str| s.trim_matches(['[', ']']).to_ascii_lowercase();
    allowed.iter().any(|a| {
        let (a_host, a_port) = match axum::http::uri::Authority::try_from(a.trim()) {
            Ok(auth) => (name(auth.host()), auth.port_u16()),
            Err(_) => (name(a.trim()), None),
        };
        !a_host.is_empty()
            && a_host == name(host.host())
            && a_port.is_none_or(|p| host.port_u16() == Some(p))
    })
}

fn has_standard_headers(h: &HeaderMap) -> bool {
    h.keys().any(|k| {
        let k = k.as_str();
        k == "mcp-method" || k == "mcp-name" || k.starts_with("mcp-param-")
    })
}

/// The request's envelope; `params` parsed only for a `tools/call`.
#[derive(Deserialize)]
struct Envelope<'a> {
    jsonrpc: &'a str,
    #[serde(borrow)]
    id: &'a RawValue,
    method: &'a str,
    #[serde(borrow)]
    params: Option<&'a RawValue>,
}

/// The id (as its JSON text) and parameters of a plain `tools/call`.
fn parse(body: &[u8]) -> Option<(&RawValue, CallToolRequestParams)> {
    let env: Envelope<'_> = serde_json::from_slice(body).ok()?;
    if env.jsonrpc != "2.0" || env.method != "tools/call" {
        return None;
    }
    let id = env.id.get();
    let id_ok = id.starts_with('"') || (!id.contains(['.', 'e', 'E']) && id.parse::<i64>().is_ok());
    if !id_ok {
        return None;
    }
    let params: CallToolRequestParams = serde_json::from_str(env.params?.get()).ok()?;
    let plain = params.input_responses.is_none()
        && params.request_state.is_none()
        && params
            .meta
            .as_ref()
            .is_none_or(|m| !m.0.contains_key(META_PROTOCOL_VERSION));
    plain.then_some((env.id, params))
}

#[derive(Serialize)]
struct Reply<'a> {
    jsonrpc: &'static str,
    id: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a CallToolResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a McpError>,
}

/// The JSON-RPC response to request `id`.
fn answer(id: &RawValue, out: &Result<CallToolResult, McpError>) -> Response {
    let (result, error) = match out {
        Ok(r) => (Some(r), None),
        Err(e) => (None, Some(e)),
    };
    let reply = Reply {
        jsonrpc: "2.0",
        id,
        result,
        error,
    };
    match serde_json::to_vec(&reply) {
        Ok(body) => (
            [(header::CONTENT_TYPE, HeaderValue::from_static(JSON))],
            Bytes::from(body),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding the tool result: {e}\n"),
        )
            .into_response(),
    }
}

/// A body that could not be read (the connection broke mid-body): what
/// rmcp answers. (A body longer than the `Content-Length` checked against
/// the limit is not read past it by hyper, so the limit is a backstop.)
fn unreadable(e: &axum::Error) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("Failed to read request body: {e}"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    const PLAIN: [(&str, &str); 4] = [
        ("accept", "application/json, text/event-stream"),
        ("content-type", "application/json"),
        ("content-length", "100"),
        ("mcp-protocol-version", "2025-11-25"),
    ];

    #[test]
    fn only_headers_rmcp_would_answer_alike_take_the_direct_path() {
        assert!(headers_allow(&headers(&PLAIN), 100));
        // Without the version header (a client from before it).
        assert!(headers_allow(&headers(&PLAIN[..3]), 100));
        let with = |k: &'static str, v: &str| {
            let mut h = headers(&PLAIN);
            h.insert(k, HeaderValue::from_str(v).unwrap());
            headers_allow(&h, 100)
        };
        assert!(!with("accept", "application/json"), "406 is rmcp's");
        assert!(!with("accept", "text/event-stream"));
        assert!(!with("accept", "application/json;q=0, text/event-stream"));
        assert!(with("content-type", "application/json; charset=utf-8"));
        assert!(!with("content-type", "text/plain"), "415 is rmcp's");
        assert!(!with("content-length", "101"), "413 is rmcp's");
        assert!(!with("content-length", "x"));
        assert!(
            !with("mcp-protocol-version", "2026-07-28"),
            "standard headers"
        );
        assert!(!with("mcp-protocol-version", "1999-01-01"), "400 is rmcp's");
        assert!(!with("mcp-method", "tools/call"));
        assert!(!with("mcp-name", "math__add"));
        assert!(!with("mcp-param-a", "1"));
        let mut chunked = headers(&PLAIN);
        chunked.remove("content-length");
        assert!(!headers_allow(&chunked, 100), "no length: rmcp reads it");
    }

    #[test]
    fn only_hosts_rmcp_allows_take_the_direct_path() {
        let allowed = [
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ];
        let host = |v: &str| headers(&[("host", v)]);
        for ok in ["localhost", "LOCALHOST:8080", "127.0.0.1:9", "[::1]:80"] {
            assert!(host_allowed(&host(ok), &allowed), "{ok}");
        }
        for refused in [
            "evil.example",
            "evil.example:80",
            "localhost.evil",
            "",
            "a b",
        ] {
            assert!(!host_allowed(&host(refused), &allowed), "{refused:?}");
        }
        assert!(
            !host_allowed(&HeaderMap::new(), &allowed),
            "no Host: rmcp's"
        );
        let mut two = host("localhost");
        two.append("host", HeaderValue::from_static("evil.example"));
        assert!(!host_allowed(&two, &allowed));
        let mut with_origin = host("localhost");
        with_origin.insert("origin", HeaderValue::from_static("http://localhost"));
        assert!(!host_allowed(&with_origin, &allowed), "Origin: rmcp's");
        // A port in the allow list must match; an empty list allows any.
        let pinned = ["localhost:8080".to_owned()];
        assert!(host_allowed(&host("localhost:8080"), &pinned));
        assert!(!host_allowed(&host("localhost:8081"), &pinned));
        assert!(!host_allowed(&host("localhost"), &pinned));
        assert!(host_allowed(&host("anything.example"), &[]));
    }

    #[test]
    fn only_a_plain_tools_call_is_parsed() {
        let call = |id: &str, rest: &str| {
            format!(
                r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"math__add"{rest}}}}}"#
            )
        };
        let body = call("7", r#","arguments":{"a":1}"#);
        let (id, p) = parse(body.as_bytes()).unwrap();
        assert_eq!((id.get(), &*p.name), ("7", "math__add"));
        assert_eq!(p.arguments.unwrap()["a"], 1);
        assert_eq!(
            parse(call(r#""x-1""#, "").as_bytes()).unwrap().0.get(),
            r#""x-1""#
        );
        // A progress token is fine; a per-request version is rmcp's to check.
        assert!(parse(call("1", r#","_meta":{"progressToken":3}"#).as_bytes()).is_some());
        let versioned = format!(r#","_meta":{{"{META_PROTOCOL_VERSION}":"2025-11-25"}}"#);
        assert!(parse(call("1", &versioned).as_bytes()).is_none());
        assert!(parse(call("1", r#","requestState":"s""#).as_bytes()).is_none());
        for id in ["null", "1.5", "1e3", "[1]", "{}"] {
            assert!(parse(call(id, "").as_bytes()).is_none(), "id {id}");
        }
        for other in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
            r#"{"jsonrpc":"1.0","id":1,"method":"tools/call","params":{"name":"a__b"}}"#,
            r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"a__b"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{}}}"#,
            r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a__b"}}]"#,
            "{not json",
        ] {
            assert!(parse(other.as_bytes()).is_none(), "{other}");
        }
    }

    #[tokio::test]
    async fn answers_are_json_rpc_responses_with_the_request_id() {
        let body = |r: Response| async move {
            assert_eq!(r.headers()[header::CONTENT_TYPE], JSON);
            let b = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
            serde_json::from_slice::<serde_json::Value>(&b).unwrap()
        };
        let id = RawValue::from_string(r#""req-9""#.into()).unwrap();
        let ok = body(answer(&id, &Ok(CallToolResult::success(vec![])))).await;
        assert_eq!(ok["id"], "req-9");
        assert_eq!(ok["jsonrpc"], "2.0");
        assert!(ok["result"]["content"].is_array() && ok.get("error").is_none());
        let id = RawValue::from_string("4".into()).unwrap();
        let err = body(answer(
            &id,
            &Err(McpError::invalid_params("unknown tool \"x\"", None)),
        ))
        .await;
        assert_eq!(err["id"], 4);
        assert!(err["error"]["message"].as_str().unwrap().contains("\"x\""));
        assert!(err.get("result").is_none());
    }
}
