//! What a tenant's supervisors watch (docs/protocol.md §2.15), for users
//! with the `supervisor` or `admin` role (anyone else: `403 forbidden`):
//! - `GET /v1/supervisor`: the queues, their waiting callers and every
//!   member's state now ([`softphone_protocol::SupervisorView`]);
//! - `GET /v1/events`: a server-sent event stream (`text/event-stream`)
//!   that starts with that view (`event: snapshot`), then carries each
//!   call event (`event: call.answered`…, the webhook types and ids) and
//!   each member's change of state (`event: agent.state`), tenant-scoped.
//!   A call event is sent once its CDR change is committed. A reader too
//!   slow to keep up gets a fresh `snapshot` instead of what it missed.
//!   The stream ends with `event: closed` when the token expires or its
//!   login ends (checked every [`crate::Config::login_sweep`], as sockets
//!   are), and ends at shutdown.
//!
//! Both cover what the node asked routes; on several nodes each node's
//! stream carries its own calls (docs/deploy.md).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use futures_util::Stream;
use softphone_protocol::{ErrorCode, SupervisorView};
use tokio::sync::broadcast::error::RecvError;

use crate::http::{ApiError, Auth};
use crate::hub::{LiveEvent, LiveKind};
use crate::store::TenantId;
use crate::{Shared, now_ms};

/// The routes.
pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v1/supervisor", get(view))
        .route("/v1/events", get(events))
}

/// An authenticated supervisor or administrator.
struct Supervisor(Auth);

impl FromRequestParts<Arc<Shared>> for Supervisor {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, shared: &Arc<Shared>) -> Result<Self, ApiError> {
        let auth = Auth::from_request_parts(parts, shared).await?;
        if !auth.user.role.supervises() {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
                "supervisors and administrators only",
            ));
        }
        Ok(Self(auth))
    }
}

async fn view(
    State(s): State<Arc<Shared>>,
    Supervisor(auth): Supervisor,
) -> Result<Json<SupervisorView>, ApiError> {
    let tenant = auth.user.tenant_id;
    crate::admin::refresh(&s, tenant).await?;
    let view = s.routing().hub.supervisor_view(tenant, now_ms());
    Ok(Json(view))
}

fn snapshot_event(view: &SupervisorView) -> Event {
    Event::default()
        .event("snapshot")
        .json_data(view)
        .unwrap_or_else(|_| Event::default().event("snapshot"))
}

fn live_event(ev: &LiveEvent) -> Event {
    let made = match &ev.kind {
        LiveKind::Call(c) => Event::default()
            .event(c.kind.as_str())
            .id(c.id.clone())
            .json_data(c),
        LiveKind::Agent(a) => Event::default().event("agent.state").json_data(a),
    };
    made.unwrap_or_else(|_| Event::default().comment("unserializable event"))
}

/// Where a stream is.
enum Step {
    /// The first event: the view taken when subscribing.
    Start(Box<SupervisorView>),
    /// Waiting for live events.
    Live,
    /// Told why it ends; nothing follows.
    Done,
}

struct StreamState {
    shared: Arc<Shared>,
    tenant: TenantId,
    token: String,
    rx: tokio::sync::broadcast::Receiver<Arc<LiveEvent>>,
    committed: tokio::sync::watch::Receiver<u64>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    check: tokio::time::Interval,
    step: Step,
}

impl Drop for StreamState {
    fn drop(&mut self) {
        self.shared.routing().hub.unwatch(self.tenant);
    }
}

impl StreamState {
    async fn next(&mut self) -> Option<Event> {
        match std::mem::replace(&mut self.step, Step::Live) {
            Step::Start(view) => return Some(snapshot_event(&view)),
            Step::Done => {
                self.step = Step::Done;
                return None;
            }
            Step::Live => {}
        }
        loop {
            tokio::select! {
                got = self.rx.recv() => match got {
                    Ok(ev) if ev.tenant == self.tenant => {
                        let behind = ev.after_seq > *self.committed.borrow();
                        if behind {
                            // Err: the CDR writer stopped (shutdown); send anyway.
                            let _ = self.committed.wait_for(|c| *c >= ev.after_seq).await;
                        }
                        return Some(live_event(&ev));
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(missed)) => {
                        tracing::info!(missed, "supervisor stream fell behind; sending a snapshot");
                        let view = self.shared.routing().hub.supervisor_view(self.tenant, now_ms());
                        return Some(snapshot_event(&view));
                    }
                    Err(RecvError::Closed) => return None,
                },
                _ = self.check.tick() => {
                    let why = match self.shared.store.resolve_token(&self.token).await {
                        Ok(Ok(_)) => continue,
                        Ok(Err(crate::store::TokenRefusal::Expired)) => ErrorCode::TokenExpired,
                        Ok(Err(crate::store::TokenRefusal::Unknown)) => ErrorCode::Unauthorized,
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot check a supervisor stream's token");
                            continue;
                        }
                    };
                    self.step = Step::Done;
                    let body = serde_json::json!({ "code": why });
                    return Some(Event::default().event("closed").data(body.to_string()));
                }
                () = stopping(&mut self.shutdown) => return None,
            }
        }
    }
}

/// Completes when the server shuts down.
async fn stopping(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

async fn events(
    State(s): State<Arc<Shared>>,
    Supervisor(auth): Supervisor,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let tenant = auth.user.tenant_id;
    crate::admin::refresh(&s, tenant).await?;
    // Subscribed under the same lock the view is taken under: no event
    // falls between the two.
    let (rx, view) = {
        let mut r = s.routing();
        let rx = r.live.subscribe();
        r.hub.watch(tenant);
        (rx, r.hub.supervisor_view(tenant, now_ms()))
    };
    let mut check = tokio::time::interval(s.config.login_sweep.max(Duration::from_millis(10)));
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    check.reset();
    let state = StreamState {
        committed: s.committed.clone(),
        shutdown: s.shutdown.clone(),
        shared: s,
        tenant,
        token: auth.token,
        rx,
        check,
        step: Step::Start(Box::new(view)),
    };
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        let ev = st.next().await?;
        Some((Ok(ev), st))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
