//! The admin HTTP API under `/v1/admin` (docs/protocol.md §2.11): queues
//! and their members, for the caller's own tenant. Only users with the
//! `admin` role may use it; anyone else gets `403 forbidden`.

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
use crate::store::{QueueRow, QueueSpec, Role, TenantId};

/// An authenticated administrator: their tenant.
struct Admin {
    tenant_id: TenantId,
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
        })
    }
}

/// `GET /v1/admin/queues`.
#[derive(Serialize)]
struct QueuesResponse {
    queues: Vec<QueueRow>,
}

/// The `/v1/admin` routes.
pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v1/admin/queues", get(list).post(create))
        .route(
            "/v1/admin/queues/{name}",
            get(show).put(replace).delete(remove),
        )
        .route(
            "/v1/admin/queues/{name}/members/{user}",
            put(add_member).delete(remove_member),
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
    found(&s, admin.tenant_id, &spec.name).await
}

async fn remove(
    State(s): State<Arc<Shared>>,
    admin: Admin,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.store.remove_queue(admin.tenant_id, &name).await?;
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
    Ok(StatusCode::NO_CONTENT)
}
