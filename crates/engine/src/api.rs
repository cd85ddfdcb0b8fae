//! The switchboard's HTTP API (`/v1`, see docs/protocol.md) for what is not
//! signaling: the directory, call history (CDRs), and logout.

use softphone_protocol::{CallRecord, CallsResponse, DirectoryEntry, DirectoryResponse, ErrorBody};

use crate::EngineError;

/// A signed-in client of the HTTP API: base URL plus bearer token.
#[derive(Debug, Clone)]
pub struct Api {
    server: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    /// `server` is the base URL (`http://host:port`), `token` the bearer
    /// token from [`crate::login`].
    pub fn new(server: &str, token: &str) -> Self {
        Self {
            server: server.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
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
            .map_err(|e| EngineError::Signaling(format!("cannot reach {}: {e}", self.server)))?;
        let status = resp.status().as_u16();
        if status == 401 {
            return Err(EngineError::Unauthorized("the token was refused".into()));
        }
        if !(200..300).contains(&status) {
            let msg = match resp.json::<ErrorBody>().await {
                Ok(b) => b.message,
                Err(_) => format!("HTTP {status}"),
            };
            return Err(EngineError::Signaling(format!("{path}: {msg}")));
        }
        resp.json()
            .await
            .map_err(|e| EngineError::Signaling(format!("{path}: unreadable answer: {e}")))
    }

    /// Users of my tenant whose user or display name contains `query`
    /// (case-insensitive; empty: everybody), with their presence.
    ///
    /// # Errors
    /// [`EngineError::Unauthorized`] for a refused token,
    /// [`EngineError::Signaling`] when the server cannot be reached.
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

    /// My last `limit` calls (1–200), newest first.
    ///
    /// # Errors
    /// As [`Api::directory`].
    pub async fn history(&self, limit: u32) -> Result<Vec<CallRecord>, EngineError> {
        let r: CallsResponse = self
            .get(&format!("/v1/calls?limit={}", limit.clamp(1, 200)))
            .await?;
        Ok(r.calls)
    }

    /// Revokes the token on the server (best effort: an unreachable server
    /// is an error, an already-dead token is not).
    ///
    /// # Errors
    /// [`EngineError::Signaling`] when the server cannot be reached.
    pub async fn logout(&self) -> Result<(), EngineError> {
        self.http
            .post(format!("{}/v1/logout", self.server))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| EngineError::Signaling(format!("cannot reach {}: {e}", self.server)))?;
        Ok(())
    }
}
