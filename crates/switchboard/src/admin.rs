//! The admin HTTP API under `/v1/admin` (docs/protocol.md §2.11): queues
//! and their members, for the caller's own tenant. Only users with the
//! `admin` role may use it; anyone else gets `403 forbidden`.
//!
//! Also a queue's figures, `GET /v1/queues/{name}/stats`, for any user of
//! the tenant (agents watch their queue's wait).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Serialize;
use softphone_protocol::ErrorCode;

use crate::Shared;
use crate::http::{ApiError, Auth, json_body};
use crate::store::{QueueDay, QueueRow, QueueSpec, Role, TenantId, Webhook, WebhookInfo};

/// An authenticated administrator: their tenant.
struct Admin {
    tenant_id: TenantId,
    tenant: String,
}

impl FromRequestParts<Arc<Shared>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, shared: &Arc<Shared>) -> Result<Self, ApiError> {
        let auth = Auth::from_request_parts(parts, shared).await?;
        if auth.user.role != Role::Admin {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
                "administrators only",
            ));
        }
        Ok(Self {
            tenant_id: auth.user.tenant_id,
            tenant: auth.user.tenant,
        })
    }
}

/// `GET /v1/admin/queues`.
#[derive(Serialize)]
struct QueuesResponse {
    queues: Vec<QueueRow>,
}

/// `GET /v1/queues/{name}/stats`: a queue now (from the hub of the node
/// asked) and today (from the CDR).
#[derive(Serialize)]
struct QueueStatsResponse {
    /// The queue's name.
    queue: String,
    /// When these figures were taken, ms since the Unix epoch.
    now_ms: u64,
    /// Callers waiting now.
    waiting: usize,
    /// The longest current wait, ms.
    longest_wait_ms: u64,
    /// Member agents available (idle, or ringing with an offer).
    agents_available: usize,
    /// Member agents talking (a queue call or another).
    agents_busy: usize,
    /// Member agents in wrap-up.
    agents_wrap_up: usize,
    /// Average handle time today: average talk time plus the queue's
    /// wrap-up time, ms.
    average_handle_ms: u64,
    /// Today's calls.
    today: QueueDay,
}

/// The `/v1/admin` routes, and the queue figures.
pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v1/queues/{name}/stats", get(stats))
        .route("/v1/admin/queues", get(list).post(create))
        .route(
            "/v1/admin/queues/{name}",
            get(show).put(replace).delete(remove),
        )
        .route(
            "/v1/admin/queues/{name}/members/{user}",
            put(add_member).delete(remove_member),
        )
        .route("/v1/admin/webhooks", get(list_webhooks).post(add_webhook))
        .route(
            "/v1/admin/widget",
            get(widget_origins).put(set_widget_origins),
        )
        .route(
            "/v1/admin/webhooks/{id}",
            axum::routing::delete(remove_webhook),
        )
}

async fn list(
    State(s): State<Arc<Shared>>,
    admin: Admin,
) -> Result<Json<QueuesResponse>, ApiError> {
    let queues = s.store.queues(admin.tenant_id).await?;
    Ok(Json(QueuesResponse { queues }))
}

async fn found(s: &Shared, tenant: TenantId, name: &str) -> Result<Json<QueueRow>, ApiError> {
    s.store
        .queue(tenant, name)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such queue"))
}

async fn show(
    State(s): State<Arc<Shared>>,
    admin: Admin,
    Path(name): Path<String>,
) -> Result<Json<QueueRow>, ApiError> {
    found(&s, admin.tenant_id, &name).await
}

async fn create(
    State(s): State<Arc<Shared>>,
    admin: Admin,
    body: Bytes,
) -> Result<(StatusCode, Json<QueueRow>), ApiError> {
    let spec: QueueSpec = json_body(&body)?;
    s.store.add_queue(admin.tenant_id, &spec).await?;
    reroute(&s, admin.tenant_id).await;
    Ok((
        StatusCode::CREATED,
        found(&s, admin.tenant_id, &spec.name).await?,
    ))
}

async fn replace(
    State(s): State<Arc<Shared>>,
    admin: Admin,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<QueueRow>, ApiError> {
    let spec: QueueSpec = json_body(&body)?;
    s.store.replace_queue(admin.tenant_id, &name, &spec).await?;
    reroute(&s, admin.tenant_id).await;
    found(&s, admin.tenant_id, &spec.name).await
}

async fn remove(
    State(s): State<Arc<Shared>>,
    admin: Admin,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.store.remove_queue(admin.tenant_id, &name).await?;
    reroute(&s, admin.tenant_id).await;
    Ok(StatusCode::NO_CONTENT)
}

async fn add_member(
    State(s): State<Arc<Shared>>,
    admin: Admin,
    Path((name, user)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    s.store
        .set_queue_member(admin.tenant_id, &name, &user, true)
        .await?;
    reroute(&s, admin.tenant_id).await;
    Ok(StatusCode::NO_CONTENT)
}

async fn remove_member(
    State(s): State<Arc<Shared>>,
    admin: Admin,
    Path((name, user)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    s.store
        .set_queue_member(admin.tenant_id, &name, &user, false)
        .await?;
    reroute(&s, admin.tenant_id).await;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/admin/webhooks`.
#[derive(Serialize)]
struct WebhooksResponse {
    webhooks: Vec<WebhookInfo>,
}

/// `POST /v1/admin/webhooks`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewWebhook {
    url: String,
}

async fn list_webhooks(
    State(s): State<Arc<Shared>>,
    admin: Admin,
) -> Result<Json<WebhooksResponse>, ApiError> {
    let webhooks = s.store.webhooks(admin.tenant_id).await?;
    Ok(Json(WebhooksResponse { webhooks }))
}

async fn add_webhook(
    State(s): State<Arc<Shared>>,
    admin: Admin,
    body: Bytes,
) -> Result<(StatusCode, Json<Webhook>), ApiError> {
    let new: NewWebhook = json_body(&body)?;
    let hook = s.store.add_webhook(admin.tenant_id, &new.url).await?;
    Ok((StatusCode::CREATED, Json(hook)))
}

async fn remove_webhook(
    State(s): State<Arc<Shared>>,
    admin: Admin,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    s.store.remove_webhook(admin.tenant_id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET`/`PUT /v1/admin/widget`: the origins allowed to embed the
/// tenant's call widget.
#[derive(Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WidgetOrigins {
    origins: Vec<String>,
}

async fn widget_origins(
    State(s): State<Arc<Shared>>,
    admin: Admin,
) -> Result<Json<WidgetOrigins>, ApiError> {
    let origins = s.store.widget_origins(&admin.tenant).await?;
    Ok(Json(WidgetOrigins { origins }))
}

async fn set_widget_origins(
    State(s): State<Arc<Shared>>,
    admin: Admin,
    body: Bytes,
) -> Result<Json<WidgetOrigins>, ApiError> {
    let new: WidgetOrigins = json_body(&body)?;
    s.store
        .set_widget_origins(admin.tenant_id, &new.origins)
        .await?;
    Ok(Json(new))
}

/// After a change, this node routes with the new settings at once (other
/// nodes and the CLI's changes are picked up at the next call or figures).
/// The change is stored either way: a failure here is only logged.
async fn reroute(s: &Arc<Shared>, tenant: TenantId) {
    if let Err(e) = crate::ws::refresh_queues(s, tenant).await {
        tracing::warn!(error = %e.message, "queues changed but not reloaded for routing");
    }
}

/// Loads the tenant's queues into the hub as the store has them now
/// (another node or the admin CLI may have changed them), before the hub
/// is asked about them.
///
/// # Errors
/// `500` when the store cannot be read.
pub(crate) async fn refresh(s: &Arc<Shared>, tenant: TenantId) -> Result<(), ApiError> {
    crate::ws::refresh_queues(s, tenant)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.code, e.message))
}

async fn stats(
    State(s): State<Arc<Shared>>,
    crate::http::Member(auth): crate::http::Member,
    Path(name): Path<String>,
) -> Result<Json<QueueStatsResponse>, ApiError> {
    let tenant = auth.user.tenant_id;
    let Json(row) = found(&s, tenant, &name).await?;
    refresh(&s, tenant).await?;
    let now = crate::now_ms();
    let live = s
        .routing()
        .hub
        .queue_stats(tenant, &name, now)
        .unwrap_or_default();
    let since = match row.spec.business_hours()? {
        Some(h) => h.start_of_day(now),
        None => crate::acd::hours::start_of_day_in(&jiff::tz::TimeZone::UTC, now),
    };
    let today = s.store.queue_day(tenant, &name, since).await?;
    Ok(Json(QueueStatsResponse {
        queue: name,
        now_ms: now,
        waiting: live.waiting,
        longest_wait_ms: live.longest_wait_ms,
        agents_available: live.agents_available,
        agents_busy: live.agents_busy,
        agents_wrap_up: live.agents_wrap_up,
        average_handle_ms: today.average_talk_ms + u64::from(row.spec.wrap_up_secs) * 1000,
        today,
    }))
}
