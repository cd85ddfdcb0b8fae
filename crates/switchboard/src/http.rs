//! The HTTP API under `/v1` (see `docs/protocol.md`). Errors become
//! `{ "code", "message" }` bodies in one place, [`ApiError`].

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::Deserialize;
use softphone_protocol::{
    CallRecord, CallsResponse, DirectoryEntry, DirectoryResponse, ErrorBody, ErrorCode,
    IceServersResponse, LoginRequest, LoginResponse, MeResponse,
};

use crate::store::{AuthedUser, TokenRefusal, verify_password};
use crate::{Config, Shared, ice, now_ms};

/// An error answer: status, code and message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    message: String,
    retry_after_s: Option<u64>,
}

impl ApiError {
    /// An error answer with `status`, `code` and a message for humans.
    pub(crate) fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after_s: None,
        }
    }

    /// The same, with a `Retry-After` header of `secs` seconds.
    pub(crate) fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after_s = Some(secs);
        self
    }
}

/// The token of an `Authorization: Bearer <token>` header (the prefix is
/// case-sensitive; whitespace around the token is trimmed).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

impl From<crate::Error> for ApiError {
    fn from(e: crate::Error) -> Self {
        match e {
            crate::Error::Invalid(m) => {
                Self::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidValue, m)
            }
            crate::Error::NotFound(m) => Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, m),
            crate::Error::Conflict(m) => Self::new(StatusCode::CONFLICT, ErrorCode::Conflict, m),
            other => {
                tracing::error!(error = %other, "request failed");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorCode::Internal,
                    "server error; retry later",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(ErrorBody {
            code: self.code,
            message: self.message,
        });
        let mut resp = (self.status, body).into_response();
        if let Some(s) = self.retry_after_s
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

/// Login rate limits, per account (`tenant/user`) and per client IP.
pub struct LoginLimits {
    per_account: DefaultKeyedRateLimiter<String>,
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    /// What is limited, for the refusal's message.
    what: &'static str,
}

impl LoginLimits {
    /// Limits from the config's per-minute figures.
    pub fn new(config: &Config) -> Self {
        Self::per_minute(
            config.login_per_account_per_min,
            config.login_per_ip_per_min,
            "login attempts",
        )
    }

    /// Limits of guest tokens: per tenant (the key) and per client IP.
    pub fn guests(config: &Config) -> Self {
        Self::per_minute(
            config.guest_tokens_per_tenant_per_min,
            config.guest_tokens_per_ip_per_min,
            "call requests",
        )
    }

    fn per_minute(per_key: u32, per_ip: u32, what: &'static str) -> Self {
        let q = |n: u32| Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN));
        Self {
            per_account: RateLimiter::keyed(q(per_key)),
            per_ip: RateLimiter::keyed(q(per_ip)),
            what,
        }
    }

    pub(crate) fn check(&self, ip: IpAddr, account: String) -> Result<(), ApiError> {
        let clock = DefaultClock::default();
        let now = clock.now();
        let wait = match (
            self.per_ip.check_key(&ip),
            self.per_account.check_key(&account),
        ) {
            (Ok(_), Ok(_)) => return Ok(()),
            // The longer of the two waits: after it, both let the attempt in.
            (ip, account) => [ip.err(), account.err()]
                .into_iter()
                .flatten()
                .map(|n| n.wait_time_from(now))
                .max()
                .unwrap_or_default(),
        };
        // Round up: a client that waits exactly this long must get through.
        let secs = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
        Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            format!("too many {}; wait and retry", self.what),
        )
        .retry_after(secs))
    }

    /// Forgets keys that have fully recovered (bounded memory).
    pub fn prune(&self) {
        self.per_account.retain_recent();
        self.per_ip.retain_recent();
    }
}

/// The `/v1` routes.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/login", post(login))
        .route("/v1/logout", post(logout))
        .route("/v1/token/refresh", post(refresh))
        .route("/v1/me", get(me))
        .route("/v1/directory", get(directory))
        .route("/v1/calls", get(calls))
        .route("/v1/calls/{call_id}", get(call))
        .route("/v1/ice-servers", get(ice_servers))
        .route("/v1/healthz", get(healthz))
        .route("/v1/metrics", get(metrics))
        .route("/v1/ws", get(crate::ws::upgrade))
        .merge(crate::admin::routes())
        .merge(crate::widget::routes())
        .merge(crate::supervise::routes())
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such route")
        })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::map_response(json_errors))
        .layer(cors())
        .with_state(shared)
}

/// Request bodies above this are refused with 413 `frame_too_large`.
const BODY_LIMIT: usize = 16 * 1024;

/// Gives the errors that axum and its extractors answer by themselves
/// (405 wrong method, 413 body too large, 415, 400/426 on a bad WebSocket
/// upgrade) the same `{ "code", "message" }` JSON body as every other error,
/// keeping their status and headers (`Allow`, `Retry-After`). Answers that
/// already are JSON pass unchanged.
async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let said = axum::body::to_bytes(body, 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let (code, message) = match status {
        StatusCode::METHOD_NOT_ALLOWED => (
            ErrorCode::NotFound,
            "this route does not take that method (see Allow)".to_string(),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            ErrorCode::FrameTooLarge,
            format!("request body over {} KiB", BODY_LIMIT / 1024),
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            ErrorCode::BadFrame,
            "send the body as application/json".to_string(),
        ),
        s if s.is_server_error() => (ErrorCode::Internal, "server error; retry later".to_string()),
        _ if said.is_empty() => (ErrorCode::BadFrame, "bad request".to_string()),
        _ => (ErrorCode::BadFrame, said),
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let body = serde_json::to_vec(&ErrorBody { code, message }).unwrap_or_default();
    Response::from_parts(parts, axum::body::Body::from(body))
}

/// Browsers may call the API from any origin: authentication is a bearer
/// token the page holds, never a cookie, so a foreign page gains nothing.
fn cors() -> tower_http::cors::CorsLayer {
    use axum::http::Method;
    tower_http::cors::CorsLayer::new()
        .allow_origin(tower_http::cors::Any)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .expose_headers([header::RETRY_AFTER])
        .max_age(std::time::Duration::from_secs(3600))
}

/// A request authenticated by `Authorization: Bearer <token>`.
pub struct Auth {
    pub(crate) user: AuthedUser,
    pub(crate) token: String,
}

impl FromRequestParts<Arc<Shared>> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, shared: &Arc<Shared>) -> Result<Self, ApiError> {
        let token = bearer(&parts.headers)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    ErrorCode::Unauthorized,
                    "missing bearer token",
                )
            })?
            .to_string();
        match shared.store.resolve_token(&token).await? {
            Ok(user) => Ok(Self { user, token }),
            Err(TokenRefusal::Expired) => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::TokenExpired,
                "token expired; log in again",
            )),
            Err(TokenRefusal::Unknown) => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized,
                "unknown or revoked token; log in again",
            )),
        }
    }
}

/// A request authenticated as a member of the tenant (an agent or an
/// admin): a guest's token gets `403 forbidden` (docs/protocol.md §2.14).
pub struct Member(pub Auth);

impl FromRequestParts<Arc<Shared>> for Member {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, shared: &Arc<Shared>) -> Result<Self, ApiError> {
        let auth = Auth::from_request_parts(parts, shared).await?;
        if auth.user.role == crate::store::Role::Guest {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
                "guests may only call the support line",
            ));
        }
        Ok(Self(auth))
    }
}

/// The client's IP: the first `X-Forwarded-For` entry when
/// [`Config::trust_forwarded_for`] is set and it parses, else the peer.
pub(crate) fn client_ip(config: &Config, headers: &HeaderMap, addr: SocketAddr) -> IpAddr {
    if config.trust_forwarded_for
        && let Some(ip) = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse().ok())
    {
        return ip;
    }
    addr.ip()
}

/// The JSON body as `T`, or a `400 bad_frame` naming what is wrong.
pub(crate) fn json_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadFrame,
            format!("bad JSON body: {e}"),
        )
    })
}

async fn login(
    State(s): State<Arc<Shared>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<LoginResponse>, ApiError> {
    let req: LoginRequest = json_body(&body)?;
    s.limits
        .check(
            client_ip(&s.config, &headers, addr),
            format!("{}/{}", req.tenant, req.user),
        )
        .inspect_err(|_| {
            s.metrics
                .logins
                .get_or_create(&vec![("result", "rate_limited")])
                .inc();
        })?;
    let candidate = s.store.login_candidate(&req.tenant, &req.user).await?;
    let ok = verify_password(
        req.password,
        candidate.as_ref().map(|c| c.password_hash.clone()),
    )
    .await;
    let Some(c) = candidate.filter(|c| ok && !c.disabled) else {
        s.metrics
            .logins
            .get_or_create(&vec![("result", "refused")])
            .inc();
        tracing::info!(tenant = %req.tenant, user = %req.user, "login refused");
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::InvalidCredentials,
            "wrong tenant, user or password",
        ));
    };
    let (token, expires_at_ms) = s
        .store
        .create_session(c.user_id, s.config.token_ttl)
        .await?;
    s.metrics
        .logins
        .get_or_create(&vec![("result", "ok")])
        .inc();
    let who = s.store.resolve_token(&token).await?.map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "session vanished",
        )
    })?;
    tracing::info!(tenant = %who.tenant, user = %who.user.user, "logged in");
    Ok(Json(LoginResponse {
        token,
        expires_at_ms,
        user: who.user,
        tenant: who.tenant,
    }))
}

async fn logout(State(s): State<Arc<Shared>>, auth: Auth) -> Result<StatusCode, ApiError> {
    s.store.revoke(&auth.token).await?;
    let login = auth.user.login_id;
    let closed = crate::ws::close_logins(&s, |l| !l.is_empty() && l == login, "logged out");
    tracing::info!(sockets = closed, "logged out");
    Ok(StatusCode::NO_CONTENT)
}

async fn refresh(
    State(s): State<Arc<Shared>>,
    Member(auth): Member,
) -> Result<Json<LoginResponse>, ApiError> {
    let (token, expires_at_ms) = s
        .store
        .refresh_session(&auth.token, s.config.token_ttl)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized,
                "unknown or revoked token; log in again",
            )
        })?;
    Ok(Json(LoginResponse {
        token,
        expires_at_ms,
        user: auth.user.user,
        tenant: auth.user.tenant,
    }))
}

async fn me(State(s): State<Arc<Shared>>, auth: Auth) -> Json<MeResponse> {
    let presence = s.routing().hub.presence_of(auth.user.user_id);
    Json(MeResponse {
        user: auth.user.user,
        tenant: auth.user.tenant,
        presence,
        token_expires_at_ms: auth.user.token_expires_at_ms,
        role: auth.user.role,
    })
}

#[derive(Deserialize)]
struct DirectoryQuery {
    q: Option<String>,
    limit: Option<u32>,
}

async fn directory(
    State(s): State<Arc<Shared>>,
    Member(auth): Member,
    Query(q): Query<DirectoryQuery>,
) -> Result<Json<DirectoryResponse>, ApiError> {
    let limit = q.limit.unwrap_or(500).clamp(1, 5000);
    let rows = s
        .store
        .directory(auth.user.tenant_id, q.q.as_deref().unwrap_or(""), limit)
        .await?;
    let routing = s.routing();
    let users = rows
        .into_iter()
        .map(|c| DirectoryEntry {
            presence: routing.hub.presence_of(c.user_id),
            user: c.user.user,
            display_name: c.user.display_name,
        })
        .collect();
    Ok(Json(DirectoryResponse { users }))
}

#[derive(Deserialize)]
struct CallsQuery {
    before: Option<String>,
    limit: Option<u32>,
}

async fn calls(
    State(s): State<Arc<Shared>>,
    Member(auth): Member,
    Query(q): Query<CallsQuery>,
) -> Result<Json<CallsResponse>, ApiError> {
    let (calls, next_before) = s
        .store
        .calls_of(
            auth.user.user_id,
            q.before.as_deref(),
            q.limit.unwrap_or(50),
        )
        .await?;
    Ok(Json(CallsResponse { calls, next_before }))
}

async fn call(
    State(s): State<Arc<Shared>>,
    Member(auth): Member,
    Path(call_id): Path<String>,
) -> Result<Json<CallRecord>, ApiError> {
    s.store
        .call_of(auth.user.user_id, &call_id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such call"))
}

async fn ice_servers(State(s): State<Arc<Shared>>, auth: Auth) -> Json<IceServersResponse> {
    Json(IceServersResponse {
        ice_servers: ice::ice_servers(&s.config, &auth.user.tenant, &auth.user.user.user, now_ms()),
        ttl_s: s.config.turn_ttl.as_secs(),
    })
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /v1/metrics`, for the holder of [`Config::metrics_token`] only.
async fn metrics(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let Some(want) = s.config.metrics_token.as_deref().map(str::trim) else {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "metrics are off: configure metrics_token",
        )
        .into_response();
    };
    let given = bearer(&headers).unwrap_or("");
    // Compare digests, so the time taken does not tell how much matched.
    if crate::store::token_hash(given) != crate::store::token_hash(want) {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "metrics need the metrics token as a bearer token",
        )
        .into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiting_exactly_retry_after_gets_through() {
        // 40 a minute per IP: one login every 1.5 s once the burst of 40 is
        // spent. A Retry-After rounded down (1 s) would be refused again.
        let mut config = Config::with_data_dir("/nonexistent");
        config.login_per_ip_per_min = 40;
        config.login_per_account_per_min = 1000;
        let limits = LoginLimits::new(&config);
        let ip = IpAddr::from([192, 0, 2, 7]);
        let retry = (0..41)
            .find_map(|i| limits.check(ip, format!("acme/u{i}")).err())
            .and_then(|e| e.retry_after_s)
            .expect("the 41st login is refused");
        assert_eq!(retry, 2);
        tokio::time::sleep(std::time::Duration::from_secs(retry)).await;
        assert!(limits.check(ip, "acme/late".into()).is_ok());
    }
}
