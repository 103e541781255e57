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

use std::collections::HashMap;
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
use rmcp::{RoleClient, ServiceError, ServiceExt};
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
        let Some(data) = event.data.as_deref() else {
            return event;
        };
        if let Ok(mut msg) = serde_json::from_str::<ServerJsonRpcMessage>(data)
            && matches!(
                msg,
                ServerJsonRpcMessage::Response(_) | ServerJsonRpcMessage::Error(_)
            )
        {
            self.incoming(&mut msg);
            if let Ok(text) = serde_json::to_string(&msg) {
                event.data = Some(text);
            }
        }
        event
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

/// Whether a client error means the backend no longer knows the session (HTTP 404).
pub fn is_session_expired(e: &ServiceError) -> bool {
    match e {
        ServiceError::TransportSend(t) => {
            matches!(
                t.error.downcast_ref::<HttpError>(),
                Some(StreamableHttpError::SessionExpired)
            ) || t.error.to_string().contains("Session expired")
        }
        _ => false,
    }
}

/// Whether the client is unusable (its worker exited): reconnect before retrying.
pub fn is_transport_dead(e: &ServiceError) -> bool {
    matches!(
        e,
        ServiceError::TransportClosed | ServiceError::TransportSend(_)
    )
}
