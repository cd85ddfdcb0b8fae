//! The customer call button (docs/protocol.md §2.14): guest tokens, the
//! widget page a tenant's web site embeds in an iframe, and the script that
//! embeds it.
//!
//! - `POST /v1/guest/{tenant}/token` issues a short-lived token to a web
//!   caller for one of the tenant's *published* queues (rate-limited per
//!   IP and per tenant). The token lets its holder call published queues
//!   and take a call back, nothing else (the socket layer and
//!   [`crate::http::Member`] refuse the rest).
//! - `GET /v1/widget/{tenant}/{queue}` is the call page: a form (name,
//!   email, topic), then the browser's own WebRTC to the agent's engine.
//!   Its `Content-Security-Policy: frame-ancestors` lists the tenant's
//!   allowed origins, so only those sites can embed it; it talks only to
//!   its own origin, so the API needs no CORS.
//! - `GET /v1/widget.js` is the embed script: `<script src=".../v1/widget.js"
//!   data-tenant="acme" data-queue="support">` adds a call button that
//!   opens the page in an iframe.
//! - `GET /v1/widget-demo/{tenant}/{queue}` is an example customer site
//!   with the button embedded (for demos and tests).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use softphone_protocol::{ErrorCode, UserRef};

use crate::Shared;
use crate::http::{ApiError, client_ip, json_body};
use crate::store::GuestInfo;

const PAGE: &str = include_str!("widget/page.html");
const SCRIPT: &str = include_str!("widget/widget.js");
const DEMO: &str = include_str!("widget/demo.html");

/// `POST /v1/guest/{tenant}/token` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GuestRequest {
    queue: String,
    name: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    topic: Option<String>,
    #[serde(default)]
    page: Option<String>,
}

/// `POST /v1/guest/{tenant}/token` answer.
#[derive(Serialize)]
struct GuestResponse {
    token: String,
    expires_at_ms: u64,
    user: UserRef,
    tenant: String,
    queue: String,
    /// Whether the queue is within its business hours now.
    open: bool,
    /// The queue's closed message, when closed.
    closed_message: Option<String>,
}

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v1/guest/{tenant}/token", post(guest_token))
        .route("/v1/widget.js", get(script))
        .route("/v1/widget/{tenant}/{queue}", get(page))
        .route("/v1/widget-demo/{tenant}/{queue}", get(demo))
}

fn no_queue() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such queue")
}

async fn guest_token(
    State(s): State<Arc<Shared>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Result<Json<GuestResponse>, ApiError> {
    let req: GuestRequest = json_body(&body)?;
    s.guest_limits
        .check(client_ip(&s.config, &headers, addr), tenant.clone())?;
    // An unknown tenant, an unknown queue and an unpublished one look alike.
    let tenant_id = s.store.tenant_id(&tenant).await.map_err(|_| no_queue())?;
    let row = s
        .store
        .queue(tenant_id, &req.queue)
        .await?
        .filter(|q| q.spec.published)
        .ok_or_else(no_queue)?;
    let info = GuestInfo {
        email: req.email.filter(|e| !e.trim().is_empty()),
        topic: req.topic.filter(|t| !t.trim().is_empty()),
        page: req.page.filter(|p| !p.is_empty()),
    };
    let (user_id, _) = s
        .store
        .add_guest(tenant_id, &row.spec.name, &req.name, &info)
        .await?;
    let (token, expires_at_ms) = s
        .store
        .create_session(user_id, s.config.guest_token_ttl)
        .await?;
    let who = s.store.resolve_token(&token).await?.map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "session vanished",
        )
    })?;
    let open = row
        .spec
        .business_hours()?
        .is_none_or(|h| h.is_open(crate::now_ms()));
    tracing::info!(tenant = %tenant, queue = %row.spec.name, guest = %who.user.user, "guest token issued");
    Ok(Json(GuestResponse {
        token,
        expires_at_ms,
        user: who.user,
        tenant,
        queue: row.spec.name,
        open,
        closed_message: (!open).then_some(row.spec.closed_message).flatten(),
    }))
}

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        SCRIPT,
    )
        .into_response()
}

/// Escapes a value for a JavaScript string inside the page's JSON config.
fn js_config(tenant: &str, queue: &str) -> String {
    serde_json::json!({ "tenant": tenant, "queue": queue })
        .to_string()
        .replace('<', "\\u003c")
}

async fn page(
    State(s): State<Arc<Shared>>,
    Path((tenant, queue)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let origins = s
        .store
        .widget_origins(&tenant)
        .await
        .map_err(|_| no_queue())?;
    let ancestors = std::iter::once("'self'".to_string())
        .chain(origins)
        .collect::<Vec<_>>()
        .join(" ");
    let csp = format!(
        "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
         connect-src 'self' ws: wss:; media-src 'self' blob:; frame-ancestors {ancestors}"
    );
    let body = PAGE.replace("__CONFIG__", &js_config(&tenant, &queue));
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8".to_string()),
            (header::CONTENT_SECURITY_POLICY, csp),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        body,
    )
        .into_response())
}

/// Keeps a name for an HTML attribute: the characters tenant and queue
/// names may have (`A–Z a–z 0–9 - _ . @`), nothing else.
fn attr(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
        .collect()
}

async fn demo(Path((tenant, queue)): Path<(String, String)>) -> Response {
    let body = DEMO
        .replace("__TENANT__", &attr(&tenant))
        .replace("__QUEUE__", &attr(&queue));
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}
