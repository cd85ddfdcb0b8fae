//! The switchboard's HTTP API (`/v1`, docs/protocol.md §2): login, who I
//! am, the directory, call history (CDRs) and logout. The one place the
//! engine, phonectl and the desktop app speak HTTP to the switchboard.
//!
//! ```no_run
//! # async fn demo() -> Result<(), softphone_engine::EngineError> {
//! use softphone_engine::api::Api;
//! let login = Api::login("http://127.0.0.1:8080", "acme", "alice", "correct horse").await?;
//! let api = Api::new("http://127.0.0.1:8080", &login.token);
//! for call in api.history(20).await? {
//!     println!("{} {:?}", call.call_id, call.end_reason);
//! }
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

use softphone_protocol::{
    CallRecord, CallsResponse, DirectoryEntry, DirectoryResponse, ErrorBody, ErrorCode,
    LoginRequest, LoginResponse, MeResponse, SupervisorView,
};

use crate::{AuthRefusal, EngineError};

/// Time one HTTP request may take, connection included: 10 s.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A client of the HTTP API: base URL plus bearer token.
#[derive(Debug, Clone)]
pub struct Api {
    server: String,
    token: String,
    http: reqwest::Client,
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .unwrap_or_default()
}

fn unreachable(url: &str, e: reqwest::Error) -> EngineError {
    EngineError::Unreachable {
        url: url.to_string(),
        source: e.into(),
    }
}

/// Turns an HTTP answer into `T`, or the error the server gave.
async fn read<T: serde::de::DeserializeOwned>(
    url: &str,
    resp: reqwest::Response,
) -> Result<T, EngineError> {
    let status = resp.status().as_u16();
    if (200..300).contains(&status) {
        return resp.json().await.map_err(|e| EngineError::Protocol {
            what: format!("unreadable answer from {url}"),
            source: Some(e.into()),
        });
    }
    let body = resp.json::<ErrorBody>().await.ok();
    Err(match (status, body) {
        (_, Some(b)) if b.code == ErrorCode::TokenExpired => {
            EngineError::Unauthorized(AuthRefusal::TokenExpired)
        }
        (401, Some(b)) if b.code == ErrorCode::InvalidCredentials => {
            EngineError::Unauthorized(AuthRefusal::WrongCredentials)
        }
        (401, _) => EngineError::Unauthorized(AuthRefusal::TokenRevoked),
        (_, Some(b)) => EngineError::Refused {
            code: b.code,
            message: b.message,
        },
        (s, None) => EngineError::Protocol {
            what: format!("HTTP {s} from {url}"),
            source: None,
        },
    })
}

impl Api {
    /// `server` is the base URL (`http://host:port`), `token` the bearer
    /// token from [`Api::login`].
    pub fn new(server: &str, token: &str) -> Self {
        Self {
            server: server.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http: client(),
        }
    }

    /// Logs in with a password (`POST /v1/login`); returns the token, its
    /// expiry and who we are.
    ///
    /// # Errors
    /// [`EngineError::Unauthorized`] with [`AuthRefusal::WrongCredentials`]
    /// for a wrong tenant, user or password; [`EngineError::Refused`] with
    /// `rate_limited` after too many attempts; [`EngineError::Unreachable`]
    /// when the server cannot be reached.
    pub async fn login(
        server: &str,
        tenant: &str,
        user: &str,
        password: &str,
    ) -> Result<LoginResponse, EngineError> {
        let url = format!("{}/v1/login", server.trim_end_matches('/'));
        let resp = client()
            .post(&url)
            .json(&LoginRequest {
                tenant: tenant.into(),
                user: user.into(),
                password: password.into(),
            })
            .send()
            .await
            .map_err(|e| unreachable(&url, e))?;
        match read(&url, resp).await {
            // A login refused with 401 is always about the credentials.
            Err(EngineError::Unauthorized(_)) => {
                Err(EngineError::Unauthorized(AuthRefusal::WrongCredentials))
            }
            other => other,
        }
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, EngineError> {
        let url = format!("{}{path}", self.server);
        let resp = self
            .http
            .get(&url)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| unreachable(&url, e))?;
        read(&url, resp).await
    }

    /// Who the token belongs to, with presence and token expiry
    /// (`GET /v1/me`).
    ///
    /// # Errors
    /// [`EngineError::Unauthorized`] for a refused token,
    /// [`EngineError::Unreachable`] when the server cannot be reached.
    pub async fn me(&self) -> Result<MeResponse, EngineError> {
        self.get("/v1/me").await
    }

    /// Users of my tenant whose user or display name contains `query`
    /// (case-insensitive; empty: everybody), with their presence.
    ///
    /// # Errors
    /// As [`Api::me`].
    pub async fn directory(&self, query: &str) -> Result<Vec<DirectoryEntry>, EngineError> {
        let q: String = query
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let r: DirectoryResponse = self.get(&format!("/v1/directory?q={q}")).await?;
        Ok(r.users)
    }

    /// My tenant's queues, waiting callers and agents now
    /// (`GET /v1/supervisor`, docs/protocol.md §2.15).
    ///
    /// # Errors
    /// As [`Api::me`]; [`EngineError::Refused`] with `forbidden` for a user
    /// who is neither supervisor nor admin.
    pub async fn supervisor(&self) -> Result<SupervisorView, EngineError> {
        self.get("/v1/supervisor").await
    }

    /// My last `limit` calls (1–200), newest first.
    ///
    /// # Errors
    /// As [`Api::me`].
    pub async fn history(&self, limit: u32) -> Result<Vec<CallRecord>, EngineError> {
        let r: CallsResponse = self
            .get(&format!("/v1/calls?limit={}", limit.clamp(1, 200)))
            .await?;
        Ok(r.calls)
    }

    /// Revokes the token on the server (`POST /v1/logout`). An already
    /// dead token is not an error.
    ///
    /// # Errors
    /// [`EngineError::Unreachable`] when the server cannot be reached.
    pub async fn logout(&self) -> Result<(), EngineError> {
        let url = format!("{}/v1/logout", self.server);
        self.http
            .post(&url)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| unreachable(&url, e))?;
        Ok(())
    }
}
