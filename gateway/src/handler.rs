//! The MCP server the gateway presents: backend tools as `NAME__TOOL`.

use std::borrow::Cow;

use futures_util::future::join_all;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ProtocolVersion, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};

use crate::session::{LiveSession, Manager, with_backend};

/// Separator between backend name and tool name.
pub const SEP: &str = "__";

/// One rmcp handler per client session on a node (cheap: a manager handle).
#[derive(Clone)]
pub struct GatewayHandler {
    mgr: Manager,
}

impl GatewayHandler {
    /// A handler over `mgr`.
    pub fn new(mgr: Manager) -> Self {
        Self { mgr }
    }
}

fn live_of(ctx: &RequestContext<RoleServer>) -> Result<LiveSession, McpError> {
    ctx.extensions
        .get::<http::request::Parts>()
        .and_then(|p| p.extensions.get::<LiveSession>())
        .cloned()
        .ok_or_else(|| McpError::internal_error("no live session for this request", None))
}

impl ServerHandler for GatewayHandler {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "session-gateway",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_protocol_version(ProtocolVersion::LATEST_WITH_INITIALIZE)
            .with_instructions("Tools of every backend, named BACKEND__TOOL.")
    }

    /// Handshake-era versions only: 2026-07-28 is stateless (no
    /// `Mcp-Session-Id`), so clients must fall back to `initialize`.
    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(ProtocolVersion::known_up_to(
            &ProtocolVersion::LATEST_WITH_INITIALIZE,
        ))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let live = live_of(&ctx)?;
        let lists = join_all(live.session().slots().map(|slot| {
            let live = live.clone();
            async move {
                let res =
                    with_backend(
                        &self.mgr,
                        &live,
                        slot,
                        |up| async move { up.list_tools().await },
                    )
                    .await;
                (slot, res)
            }
        }))
        .await;
        let mut tools = Vec::new();
        for (slot, res) in lists {
            match res {
                Ok(list) => tools.extend(list.into_iter().map(|mut t| {
                    t.name = Cow::Owned(format!("{}{SEP}{}", slot.spec.name, t.name));
                    t
                })),
                Err(e) => tracing::warn!(error = %e, "listing a backend's tools failed"),
            }
        }
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let live = live_of(&ctx)?;
        call_tool(&self.mgr, &live, request).await.map(Into::into)
    }
}

/// `tools/call` for `live`: `BACKEND__TOOL` routed to that backend's session
/// (healed once if it expired). A name no backend serves is a JSON-RPC
/// error naming it; a failing backend is an error *result* (the session and
/// the other backends are unaffected). Shared by rmcp's handler and the
/// node's direct path ([`crate::direct_call`]).
///
/// # Errors
/// `invalid_params` for a tool name with no backend.
pub async fn call_tool(
    mgr: &Manager,
    live: &LiveSession,
    request: CallToolRequestParams,
) -> Result<CallToolResult, McpError> {
    let unknown = |name: &str| {
        McpError::invalid_params(
            format!(
                "unknown tool {name:?}: no backend serves it (tools are named BACKEND{SEP}TOOL)"
            ),
            None,
        )
    };
    let (slot, tool) = match request.name.split_once(SEP) {
        Some((backend, tool)) => match live.session().slot(backend) {
            Some(slot) => (slot, tool.to_owned()),
            None => return Err(unknown(&request.name)),
        },
        None => return Err(unknown(&request.name)),
    };
    let mut params = request;
    params.name = Cow::Owned(tool);
    // Sent as they are (the backend's tool name swapped in), by
    // reference: no copy of the arguments per attempt.
    let params = &params;
    let res = with_backend(
        mgr,
        live,
        slot,
        |up| async move { up.call_tool(params).await },
    )
    .await;
    Ok(match res {
        Ok(result) => result,
        Err(e) => CallToolResult::error(vec![ContentBlock::text(e.to_string())]),
    })
}
