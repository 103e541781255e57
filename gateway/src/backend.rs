//! Backend connections: an rmcp client per backend session that can resume
//! a known backend session id and never deletes it when dropped.
//!
//! rmcp's streamable HTTP client cannot resume a session id and sends
//! `DELETE` to the backend whenever its worker exits. [`BackendHttp`] wraps
//! its reqwest client: on resume it answers `initialize` locally with what
//! the backend answered the first time (stored in the session's metadata)
//! and the stored session id, and its `delete_session` is a no-op. Backend
//! sessions are deleted explicitly ([`delete_backend_session`]) when the
//! client session is terminated.
//!
//! The gateway uses this client for the handshake only (and the tests and
//! the bench as their MCP client); its per-call requests go straight to
//! the backend session ([`crate::upstream`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use http::{HeaderName, HeaderValue};
use rmcp::model::{
    ClientJsonRpcMessage, ClientNotification, ClientRequest, InitializeResult, NumberOrString,
    ProtocolVersion, RequestId, ServerJsonRpcMessage, ServerResult,
};
use rmcp::service::{Peer, RunningService};
use rmcp::transport::streamable_http_client::{
    StreamableHttpClient, StreamableHttpClientTransport, StreamableHttpClientTransportConfig,
    StreamableHttpError, StreamableHttpPostResponse, StreamableHttpResponseLimits,
};
use rmcp::{RoleClient, ServiceExt};
use serde_json::value::RawValue;
use sse_stream::{Error as SseError, Sse};

type HttpError = StreamableHttpError<reqwest::Error>;

/// What a resumed client replays instead of talking to the backend.
struct Resume {
    session_id: String,
    init: InitializeResult,
}

/// rmcp's reqwest client, able to resume a backend session and never
/// deleting one on drop.
///
/// Several clients (one per gateway node, and a new one after each
/// resume) share one backend session, and each rmcp client numbers its
/// requests from 0: two concurrent requests with the same JSON-RPC id on
/// one backend session would collide (the backend drops one response). So
/// every client offsets its request ids by a random base (below 2^53, safe
/// for JSON numbers everywhere) and maps the responses back.
#[derive(Clone)]
pub struct BackendHttp {
    inner: reqwest::Client,
    resume: Option<Arc<Resume>>,
    captured: Arc<Mutex<Option<String>>>,
    id_base: i64,
}

impl BackendHttp {
    fn new(inner: reqwest::Client, resume: Option<Resume>) -> Self {
        Self {
            inner,
            resume: resume.map(Arc::new),
            captured: Arc::default(),
            id_base: i64::from(rand::random::<u32>()) << 20,
        }
    }

    fn shift(&self, id: &mut RequestId) {
        if let NumberOrString::Number(n) = id {
            *n += self.id_base;
        }
    }

    fn unshift(&self, id: &mut RequestId) {
        if let NumberOrString::Number(n) = id
            && *n >= self.id_base
        {
            *n -= self.id_base;
        }
    }

    fn outgoing(&self, message: &mut ClientJsonRpcMessage) {
        match message {
            ClientJsonRpcMessage::Request(req) => self.shift(&mut req.id),
            ClientJsonRpcMessage::Notification(n) => {
                if let ClientNotification::CancelledNotification(c) = &mut n.notification
                    && let Some(id) = c.params.request_id.as_mut()
                {
                    self.shift(id);
                }
            }
            _ => {}
        }
    }

    fn incoming(&self, message: &mut ServerJsonRpcMessage) {
        match message {
            ServerJsonRpcMessage::Response(r) => self.unshift(&mut r.id),
            ServerJsonRpcMessage::Error(e) => {
                if let Some(id) = e.id.as_mut() {
                    self.unshift(id);
                }
            }
            _ => {}
        }
    }

    fn incoming_sse(&self, mut event: Sse) -> Sse {
        if let Some(text) = event.data.as_deref().and_then(|d| self.unshift_raw(d)) {
            event.data = Some(text);
        }
        event
    }

    /// The SSE payload `data` with the id of a JSON-RPC response or error
    /// mapped back, or `None` to keep it as is (not a response, not one of
    /// our ids). Only the top-level members are split out (`RawValue`):
    /// the result itself is copied, not parsed and re-serialised, which is
    /// what this path cost per backend call before.
    fn unshift_raw(&self, data: &str) -> Option<String> {
        let members: BTreeMap<&str, &RawValue> = serde_json::from_str(data).ok()?;
        if !(members.contains_key("result") || members.contains_key("error")) {
            return None; // a request or notification from the backend
        }
        let id: i64 = members.get("id")?.get().parse().ok()?;
        if id < self.id_base {
            return None;
        }
        let mut out = String::with_capacity(data.len());
        out.push('{');
        for (i, (k, v)) in members.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            // A borrowed key had no escapes in the input, so it needs none.
            out.push('"');
            out.push_str(k);
            out.push_str("\":");
            if *k == "id" {
                out.push_str(&(id - self.id_base).to_string());
            } else {
                out.push_str(v.get());
            }
        }
        out.push('}');
        Some(out)
    }
}

impl StreamableHttpClient for BackendHttp {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, HttpError> {
        self.post_message_with_response_limits(
            uri,
            message,
            session_id,
            auth_header,
            custom_headers,
            StreamableHttpResponseLimits::default(),
        )
        .await
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> Result<StreamableHttpPostResponse, HttpError> {
        if let Some(resume) = &self.resume {
            match &message {
                ClientJsonRpcMessage::Request(req)
                    if session_id.is_none()
                        && matches!(req.request, ClientRequest::InitializeRequest(_)) =>
                {
                    let answer = ServerJsonRpcMessage::response(
                        ServerResult::InitializeResult(resume.init.clone()),
                        req.id.clone(),
                    );
                    return Ok(StreamableHttpPostResponse::Json(
                        answer,
                        Some(resume.session_id.clone()),
                    ));
                }
                ClientJsonRpcMessage::Notification(n)
                    if matches!(
                        n.notification,
                        ClientNotification::InitializedNotification(_)
                    ) =>
                {
                    return Ok(StreamableHttpPostResponse::Accepted);
                }
                _ => {}
            }
        }
        let first = session_id.is_none();
        let mut message = message;
        self.outgoing(&mut message);
        let out = self
            .inner
            .post_message_with_response_limits(
                uri,
                message,
                session_id,
                auth_header,
                custom_headers,
                limits,
            )
            .await?;
        if first {
            let sid = match &out {
                StreamableHttpPostResponse::Json(_, sid)
                | StreamableHttpPostResponse::Sse(_, sid) => sid.clone(),
                _ => None,
            };
            if sid.is_some() {
                *self.captured.lock().unwrap_or_else(PoisonError::into_inner) = sid;
            }
        }
        Ok(match out {
            StreamableHttpPostResponse::Json(mut msg, sid) => {
                self.incoming(&mut msg);
                StreamableHttpPostResponse::Json(msg, sid)
            }
            StreamableHttpPostResponse::Sse(stream, sid) => {
                let this = self.clone();
                StreamableHttpPostResponse::Sse(
                    stream
                        .map(move |ev| ev.map(|ev| this.incoming_sse(ev)))
                        .boxed(),
                    sid,
                )
            }
            other => other,
        })
    }

    async fn delete_session(
        &self,
        _uri: Arc<str>,
        _session_id: Arc<str>,
        _auth_header: Option<String>,
        _custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), HttpError> {
        // Node-local drops never delete a backend session other nodes use.
        Ok(())
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, HttpError> {
        self.inner
            .get_stream(uri, session_id, last_event_id, auth_header, custom_headers)
            .await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, HttpError> {
        self.inner
            .get_stream_with_max_sse_event_size(
                uri,
                session_id,
                last_event_id,
                auth_header,
                custom_headers,
                max_sse_event_size,
            )
            .await
    }
}

/// One open rmcp client on one backend session.
pub struct Conn {
    /// The backend session id.
    pub session_id: String,
    /// What the backend answered to `initialize` (JSON, as stored).
    pub init_json: String,
    service: RunningService<RoleClient, rmcp::model::ClientConfig>,
}

impl Conn {
    /// The client peer (cheap to clone; concurrent requests are fine).
    pub fn peer(&self) -> &Peer<RoleClient> {
        self.service.peer()
    }
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").finish_non_exhaustive()
    }
}

/// Why connecting to a backend failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The handshake failed (backend down, refused, protocol error).
    #[error("initialize failed: {0}")]
    Init(String),
    /// The backend did not answer in time.
    #[error("timed out")]
    Timeout,
    /// The backend gave no session id (stateless backends are not supported).
    #[error("backend returned no Mcp-Session-Id")]
    NoSessionId,
    /// The stored initialize result is unreadable.
    #[error("stored initialize result is invalid: {0}")]
    BadStored(String),
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

fn transport_config(url: &str) -> StreamableHttpClientTransportConfig {
    let mut cfg = StreamableHttpClientTransportConfig::with_uri(url.to_owned());
    // Expiry is healed by the gateway (coordinated through the store).
    cfg.reinit_on_expired_session = false;
    cfg
}

fn client_info() -> rmcp::model::ClientConfig {
    rmcp::model::ClientConfig::default()
        .with_protocol_version(ProtocolVersion::LATEST_WITH_INITIALIZE)
}

/// Opens a new backend session (a real `initialize`).
pub async fn connect_fresh(http: &reqwest::Client, url: &str) -> Result<Conn, ConnectError> {
    let client = BackendHttp::new(http.clone(), None);
    let captured = client.captured.clone();
    let transport = StreamableHttpClientTransport::with_client(client, transport_config(url));
    let service = tokio::time::timeout(CONNECT_TIMEOUT, client_info().serve(transport))
        .await
        .map_err(|_| ConnectError::Timeout)?
        .map_err(|e| ConnectError::Init(e.to_string()))?;
    let session_id = captured
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
        .ok_or(ConnectError::NoSessionId)?;
    let init = service
        .peer_info()
        .ok_or_else(|| ConnectError::Init("no initialize result".into()))?;
    let init_json = serde_json::to_string(&*init).map_err(|e| ConnectError::Init(e.to_string()))?;
    Ok(Conn {
        session_id,
        init_json,
        service,
    })
}

/// Resumes a known backend session without any request to the backend.
pub async fn resume(
    http: &reqwest::Client,
    url: &str,
    session_id: &str,
    init_json: &str,
) -> Result<Conn, ConnectError> {
    let init: InitializeResult =
        serde_json::from_str(init_json).map_err(|e| ConnectError::BadStored(e.to_string()))?;
    let client = BackendHttp::new(
        http.clone(),
        Some(Resume {
            session_id: session_id.to_owned(),
            init,
        }),
    );
    let transport = StreamableHttpClientTransport::with_client(client, transport_config(url));
    let service = tokio::time::timeout(CONNECT_TIMEOUT, client_info().serve(transport))
        .await
        .map_err(|_| ConnectError::Timeout)?
        .map_err(|e| ConnectError::Init(e.to_string()))?;
    Ok(Conn {
        session_id: session_id.to_owned(),
        init_json: init_json.to_owned(),
        service,
    })
}

/// Deletes a backend session (`DELETE` with its `Mcp-Session-Id`). A 404
/// (already gone) counts as success.
pub async fn delete_backend_session(
    http: &reqwest::Client,
    url: &str,
    session_id: &str,
) -> Result<(), reqwest::Error> {
    let res = http
        .delete(url)
        .header("mcp-session-id", session_id)
        .timeout(Duration::from_secs(5))
        .send()
        .await?;
    if res.status() == reqwest::StatusCode::NOT_FOUND {
        return Ok(());
    }
    res.error_for_status().map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: i64) -> BackendHttp {
        let mut c = BackendHttp::new(reqwest::Client::new(), None);
        c.id_base = base;
        c
    }

    #[test]
    fn raw_unshift_maps_response_ids_back_and_leaves_the_rest() {
        let c = client(1000);
        let typed = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();
        let out = c
            .unshift_raw(r#"{"jsonrpc":"2.0","id":1007,"result":{"content":[{"type":"text","text":"id 1007"}]}}"#)
            .unwrap();
        assert_eq!(
            typed(&out),
            typed(
                r#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"id 1007"}]}}"#
            )
        );
        let out = c
            .unshift_raw(r#"{"error":{"code":-32601,"message":"x"},"id":1000,"jsonrpc":"2.0"}"#)
            .unwrap();
        assert_eq!(
            typed(&out),
            typed(r#"{"jsonrpc":"2.0","id":0,"error":{"code":-32601,"message":"x"}}"#)
        );
        // Requests from the backend, ids not ours, string ids, junk: untouched.
        assert_eq!(
            c.unshift_raw(r#"{"jsonrpc":"2.0","id":1003,"method":"ping"}"#),
            None
        );
        assert_eq!(
            c.unshift_raw(r#"{"jsonrpc":"2.0","id":3,"result":{}}"#),
            None
        );
        assert_eq!(
            c.unshift_raw(r#"{"jsonrpc":"2.0","id":"a","result":{}}"#),
            None
        );
        assert_eq!(c.unshift_raw("not json"), None);
        // The typed path agrees with the raw one.
        let mut msg: ServerJsonRpcMessage =
            serde_json::from_str(r#"{"jsonrpc":"2.0","id":1005,"result":{}}"#).unwrap();
        c.incoming(&mut msg);
        let raw: ServerJsonRpcMessage = serde_json::from_str(
            &c.unshift_raw(r#"{"jsonrpc":"2.0","id":1005,"result":{}}"#)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            serde_json::to_value(&msg).unwrap(),
            serde_json::to_value(&raw).unwrap()
        );
    }
}
