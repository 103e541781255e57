//! Calling a backend session directly: one HTTP `POST` per request, no rmcp
//! client worker.
//!
//! rmcp's client runs a worker task per connection: every request crosses
//! a channel to it and a oneshot back, and every answer is parsed into
//! rmcp's `ServerJsonRpcMessage` (untagged enums, buffered and tried variant
//! by variant) before the caller sees it. The gateway makes that trip for
//! every tool call, on top of rmcp's server side for the client, so the
//! per-call requests (`tools/call`, `tools/list`) skip it: an [`Upstream`]
//! is the backend session's URL, id and negotiated protocol version; a
//! request is one `POST` with those headers, and the answer (JSON or an SSE
//! stream) is split into its top-level members ([`RawValue`]) and only the
//! `result` is parsed, straight into the type the caller wants.
//!
//! The handshake still goes through rmcp's client
//! ([`backend::connect_fresh`](crate::backend::connect_fresh)); resuming a
//! stored backend session costs nothing (no request, no task).
//!
//! What the worker did that matters here is kept: a `404` for the session
//! is [`CallError::SessionExpired`] (the slot heals it), requests the
//! backend sends on the call's stream are answered like rmcp's default
//! client answers them (`ping`, `roots/list`, `elicitation/create`; others
//! "method not found"), response sizes are bounded, and JSON-RPC ids are
//! offset by a random base (several nodes share one backend session).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, Ordering};

use axum::body::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use rmcp::model::{CallToolRequestParams, CallToolResult, ErrorData, InitializeResult, Tool};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::backend::ConnectError;

/// Largest answer read from a backend (a JSON body, or an SSE stream in
/// all), like rmcp's client default for JSON answers.
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
/// Most pages of `tools/list` followed (a backend handing out cursors
/// forever must not hang the listing).
const MAX_PAGES: usize = 100;

/// One backend session, called directly.
///
/// ```
/// use session_gateway::upstream::Upstream;
///
/// let http = reqwest::Client::new();
/// let init = r#"{"protocolVersion":"2025-06-18","capabilities":{},"serverInfo":{"name":"math","version":"1"}}"#;
/// // Resuming a stored backend session makes no request.
/// let up = Upstream::new(&http, "http://127.0.0.1:9001/mcp", "backend-sid", init).unwrap();
/// assert_eq!(up.session_id, "backend-sid");
/// // What was stored must be an `initialize` answer.
/// assert!(Upstream::new(&http, "http://127.0.0.1:9001/mcp", "backend-sid", "{}").is_err());
/// ```
#[derive(Debug)]
pub struct Upstream {
    /// The backend session id.
    pub session_id: String,
    /// What the backend answered to `initialize` (JSON, as stored).
    pub init_json: String,
    http: reqwest::Client,
    url: reqwest::Url,
    /// `Accept`, `Content-Type`, `Mcp-Session-Id`, `MCP-Protocol-Version`.
    headers: HeaderMap,
    next_id: AtomicI64,
}

/// Why a request to a backend failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The backend answered 404: it no longer knows the session.
    #[error("backend session expired")]
    SessionExpired,
    /// The request could not be sent or the answer not read.
    #[error("request failed: {0}")]
    Http(#[source] reqwest::Error),
    /// The backend answered with an unexpected HTTP status.
    #[error("backend answered HTTP {status}: {body}")]
    Status {
        /// The status.
        status: StatusCode,
        /// The start of the body.
        body: String,
    },
    /// The backend answered the request with a JSON-RPC error.
    #[error("backend error {0}")]
    Rpc(ErrorData),
    /// The answer is not what the protocol says (no response, bad JSON,
    /// unexpected content type, too large).
    #[error("invalid answer: {0}")]
    Protocol(String),
}

/// A JSON-RPC message from the backend, split into its top-level members.
#[derive(serde::Deserialize)]
struct Message<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    method: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    result: Option<&'a RawValue>,
    #[serde(default)]
    error: Option<ErrorData>,
}

/// What one message of an answer means for the request with id `want`.
enum Seen<T> {
    /// The answer to our request.
    Done(Result<T, CallError>),
    /// A request from the backend: answer it, keep reading.
    Request(String),
    /// Something else (a notification, another id, an empty event).
    Other,
}

#[derive(Serialize)]
struct Request<'a, P> {
    jsonrpc: &'static str,
    id: i64,
    method: &'a str,
    params: &'a P,
}

#[derive(Serialize)]
struct Cursor<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    cursor: Option<&'a str>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolPage {
    #[serde(default)]
    tools: Vec<Tool>,
    #[serde(default)]
    next_cursor: Option<String>,
}

impl Upstream {
    /// The backend session `session_id` at `url`, which answered
    /// `init_json` to `initialize`. No request is made.
    ///
    /// # Errors
    /// [`ConnectError::BadStored`] if `init_json` is not an `initialize`
    /// answer or `url`/`session_id` cannot be used in a request.
    pub fn new(
        http: &reqwest::Client,
        url: &str,
        session_id: &str,
        init_json: &str,
    ) -> Result<Self, ConnectError> {
        let bad = |e: &dyn std::fmt::Display| ConnectError::BadStored(e.to_string());
        let init: InitializeResult = serde_json::from_str(init_json).map_err(|e| bad(&e))?;
        let url = reqwest::Url::parse(url).map_err(|e| bad(&e))?;
        let mut headers = HeaderMap::with_capacity(4);
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            "mcp-session-id",
            HeaderValue::from_str(session_id).map_err(|e| bad(&e))?,
        );
        headers.insert(
            "mcp-protocol-version",
            HeaderValue::from_str(init.protocol_version.as_str()).map_err(|e| bad(&e))?,
        );
        Ok(Self {
            session_id: session_id.to_owned(),
            init_json: init_json.to_owned(),
            http: http.clone(),
            url,
            headers,
            // Below 2^53 (exact in every JSON implementation) and apart
            // from other clients' ids on the same backend session.
            next_id: AtomicI64::new(i64::from(rand::random::<u32>()) << 20),
        })
    }

    /// `tools/call` with `params` as they are.
    ///
    /// # Errors
    /// See [`CallError`].
    pub async fn call_tool(
        &self,
        params: &CallToolRequestParams,
    ) -> Result<CallToolResult, CallError> {
        self.request("tools/call", params).await
    }

    /// `tools/list`, every page.
    ///
    /// # Errors
    /// See [`CallError`].
    pub async fn list_tools(&self) -> Result<Vec<Tool>, CallError> {
        let mut tools = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let page: ToolPage = self
                .request(
                    "tools/list",
                    &Cursor {
                        cursor: cursor.as_deref(),
                    },
                )
                .await?;
            tools.extend(page.tools);
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => return Ok(tools),
            }
        }
        Err(CallError::Protocol(format!(
            "tools/list still had more pages after {MAX_PAGES}"
        )))
    }

    /// One request: `POST`, then the answer with our id, parsed as `T`.
    async fn request<T: DeserializeOwned, P: Serialize>(
        &self,
        method: &str,
        params: &P,
    ) -> Result<T, CallError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = serde_json::to_vec(&Request {
            jsonrpc: "2.0",
            id,
            method,
            params,
        })
        .map_err(|e| CallError::Protocol(e.to_string()))?;
        let res = self.post(body).await?;
        let status = res.status();
        if status == StatusCode::NOT_FOUND {
            return Err(CallError::SessionExpired);
        }
        if !status.is_success() || status == StatusCode::ACCEPTED {
            let body = res.text().await.unwrap_or_default();
            return Err(CallError::Status {
                status,
                body: truncate(body, 512),
            });
        }
        let kind = res
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            });
        let want = id.to_string();
        match kind.as_deref() {
            Some("application/json") => {
                if res
                    .content_length()
                    .is_some_and(|n| n > MAX_RESPONSE_BYTES as u64)
                {
                    return Err(too_large());
                }
                let body = read_bounded(res).await?;
                let text = std::str::from_utf8(&body)
                    .map_err(|e| CallError::Protocol(format!("answer is not UTF-8: {e}")))?;
                match seen::<T>(text, &want) {
                    Seen::Done(out) => out,
                    _ => Err(CallError::Protocol(
                        "the JSON answer is not the response to the request".into(),
                    )),
                }
            }
            Some("text/event-stream") => {
                let mut events = sse_stream::SseStream::from_bytes_stream(bounded(res));
                while let Some(ev) = events.next().await {
                    let ev = ev.map_err(|e| CallError::Protocol(format!("SSE: {e}")))?;
                    let Some(data) = ev.data.as_deref().filter(|d| !d.is_empty()) else {
                        continue; // priming or keep-alive event
                    };
                    match seen::<T>(data, &want) {
                        Seen::Done(out) => return out,
                        Seen::Request(answer) => self.answer(answer),
                        Seen::Other => {}
                    }
                }
                Err(CallError::Protocol(
                    "the event stream ended without a response".into(),
                ))
            }
            other => Err(CallError::Protocol(format!(
                "unexpected content type {other:?}"
            ))),
        }
    }

    async fn post(&self, body: Vec<u8>) -> Result<reqwest::Response, CallError> {
        self.http
            .post(self.url.clone())
            .headers(self.headers.clone())
            .body(body)
            .send()
            .await
            .map_err(CallError::Http)
    }

    /// Sends our answer to a request the backend made, in the background
    /// (the backend may wait for it before it answers ours).
    fn answer(&self, body: String) {
        let req = self
            .http
            .post(self.url.clone())
            .headers(self.headers.clone())
            .body(body);
        tokio::spawn(async move {
            if let Err(e) = req.send().await {
                tracing::debug!(error = %e, "answering a backend's request failed");
            }
        });
    }
}

fn too_large() -> CallError {
    CallError::Protocol(format!("answer larger than {MAX_RESPONSE_BYTES} bytes"))
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// The body, refusing more than [`MAX_RESPONSE_BYTES`].
async fn read_bounded(res: reqwest::Response) -> Result<Vec<u8>, CallError> {
    let mut out = Vec::new();
    let mut body = std::pin::pin!(bounded(res));
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| CallError::Protocol(e.to_string()))?;
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// The body as a byte stream that fails after [`MAX_RESPONSE_BYTES`].
fn bounded(res: reqwest::Response) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
    let mut total = 0usize;
    res.bytes_stream()
        .map_err(std::io::Error::other)
        .and_then(move |chunk| {
            total += chunk.len();
            let out = if total > MAX_RESPONSE_BYTES {
                Err(std::io::Error::other(too_large().to_string()))
            } else {
                Ok(chunk)
            };
            std::future::ready(out)
        })
}

/// What `data` (one JSON-RPC message) means for our request `want` (its
/// id as JSON text).
fn seen<T: DeserializeOwned>(data: &str, want: &str) -> Seen<T> {
    let msg: Message<'_> = match serde_json::from_str(data) {
        Ok(m) => m,
        Err(e) => {
            return Seen::Done(Err(CallError::Protocol(format!(
                "not a JSON-RPC message: {e}"
            ))));
        }
    };
    let id = msg.id.map(RawValue::get);
    if let Some(method) = msg.method {
        return match id {
            Some(id) => Seen::Request(default_answer(&method, id)),
            None => Seen::Other, // a notification (progress, logging)
        };
    }
    if id != Some(want) {
        return Seen::Other;
    }
    Seen::Done(match (msg.result, msg.error) {
        (_, Some(e)) => Err(CallError::Rpc(e)),
        (Some(r), None) => serde_json::from_str(r.get())
            .map_err(|e| CallError::Protocol(format!("unexpected result: {e}"))),
        (None, None) => Err(CallError::Protocol(
            "a response with neither result nor error".into(),
        )),
    })
}

/// What rmcp's default client answers to a backend's request `method`
/// with JSON id `id` (a JSON-RPC message).
fn default_answer(method: &str, id: &str) -> String {
    let mut out = format!(r#"{{"jsonrpc":"2.0","id":{id},"#);
    let _ = match method {
        "ping" => write!(out, r#""result":{{}}}}"#),
        "roots/list" => write!(out, r#""result":{{"roots":[]}}}}"#),
        "elicitation/create" => write!(out, r#""result":{{"action":"decline"}}}}"#),
        other => write!(
            out,
            r#""error":{{"code":-32601,"message":{}}}}}"#,
            serde_json::Value::from(format!("method not found: {other}"))
        ),
    };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(s: &str) -> serde_json::Value {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn a_response_with_our_id_is_parsed_and_others_are_skipped() {
        let ok =
            r#"{"jsonrpc":"2.0","id":1048576,"result":{"content":[{"type":"text","text":"3"}]}}"#;
        let Seen::Done(Ok(r)) = seen::<CallToolResult>(ok, "1048576") else {
            panic!("our response")
        };
        assert_eq!(r.content.len(), 1);
        // Another id, a notification: keep reading.
        assert!(matches!(seen::<CallToolResult>(ok, "1048577"), Seen::Other));
        assert!(matches!(
            seen::<CallToolResult>(
                r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{}}"#,
                "1"
            ),
            Seen::Other
        ));
        // A JSON-RPC error for us.
        let e = r#"{"jsonrpc":"2.0","id":7,"error":{"code":-32602,"message":"bad"}}"#;
        match seen::<CallToolResult>(e, "7") {
            Seen::Done(Err(CallError::Rpc(e))) => assert_eq!(e.message, "bad"),
            _ => panic!("a JSON-RPC error"),
        }
        // Junk is a protocol error, never a panic.
        for junk in [
            "",
            "nope",
            "[1,2]",
            r#"{"id":7,"result":"x"}"#,
            r#"{"id":7}"#,
        ] {
            assert!(
                matches!(
                    seen::<CallToolResult>(junk, "7"),
                    Seen::Done(Err(CallError::Protocol(_)))
                ),
                "{junk:?}"
            );
        }
    }

    #[test]
    fn backend_requests_get_the_default_client_answers() {
        let answer = |m: &str| match seen::<CallToolResult>(
            &format!(r#"{{"jsonrpc":"2.0","id":"s-1","method":"{m}","params":{{}}}}"#),
            "1",
        ) {
            Seen::Request(a) => value(&a),
            _ => panic!("a request"),
        };
        assert_eq!(
            answer("ping"),
            value(r#"{"jsonrpc":"2.0","id":"s-1","result":{}}"#)
        );
        assert_eq!(
            answer("roots/list"),
            value(r#"{"jsonrpc":"2.0","id":"s-1","result":{"roots":[]}}"#)
        );
        assert_eq!(answer("elicitation/create")["result"]["action"], "decline");
        let e = answer("sampling/createMessage");
        assert_eq!(e["error"]["code"], -32601);
        assert_eq!(e["id"], "s-1");
    }

    #[test]
    fn a_stored_answer_that_is_not_an_initialize_result_is_refused() {
        let http = reqwest::Client::new();
        for init in ["", "{}", "not json"] {
            assert!(matches!(
                Upstream::new(&http, "http://127.0.0.1:1/mcp", "sid", init),
                Err(ConnectError::BadStored(_))
            ));
        }
        let init = r#"{"protocolVersion":"2025-06-18","capabilities":{},"serverInfo":{"name":"x","version":"1"}}"#;
        let up = Upstream::new(&http, "http://127.0.0.1:1/mcp", "sid", init).unwrap();
        assert_eq!(up.headers["mcp-protocol-version"], "2025-06-18");
        assert_eq!(up.headers["mcp-session-id"], "sid");
        assert!(matches!(
            Upstream::new(&http, "http://127.0.0.1:1/mcp", "bad\nid", init),
            Err(ConnectError::BadStored(_))
        ));
    }
}
