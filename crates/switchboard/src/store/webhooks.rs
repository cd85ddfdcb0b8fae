//! Webhooks in the store: each tenant's receivers, and the outbox of call
//! events waiting for delivery (docs/protocol.md §2.13). The outbox rows of
//! an event are written with the CDR change that causes it (`outbox!` in
//! the CDR writer); [`crate::webhooks`] delivers them.

use serde::{Deserialize, Serialize};
use sqlx::FromRow;

use super::{Pool, Store, TenantId};
use crate::{Error, now_ms};

/// A receiver, as created: with its signing secret, shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    /// Its id.
    pub id: i64,
    /// Where events are POSTed.
    pub url: String,
    /// The HMAC-SHA256 key of the `X-Switchboard-Signature` header: 64 hex
    /// digits.
    pub secret: String,
    /// ms since the Unix epoch.
    pub created_at_ms: u64,
}

/// A receiver as listed (no secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, FromRow)]
pub struct WebhookInfo {
    /// Its id.
    pub id: i64,
    /// Where events are POSTed.
    pub url: String,
    /// ms since the Unix epoch.
    #[sqlx(try_from = "i64")]
    pub created_at_ms: u64,
    /// Events not delivered yet (and not given up).
    #[sqlx(try_from = "i64")]
    pub pending: u64,
}

/// One event to deliver to one receiver.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct Delivery {
    /// The outbox row.
    pub id: i64,
    /// The event's id (the same for every receiver).
    pub event_id: String,
    /// E.g. `call.ended`.
    pub event_type: String,
    /// The call.
    pub call_id: String,
    /// `call.offered`: the agent's user name.
    pub agent: Option<String>,
    /// When it happened, ms since the Unix epoch.
    pub at_ms: i64,
    /// Failed attempts so far.
    pub attempts: i32,
    /// The lease this row was read with (`next_attempt_at_ms`).
    pub next_attempt_at_ms: i64,
    /// The receiver.
    pub url: String,
    /// Its signing key.
    pub secret: String,
    /// The tenant's name.
    pub tenant: String,
}

/// Checks a receiver URL: `http://` or `https://`, at most 2,000 bytes.
fn check_url(url: &str) -> Result<(), Error> {
    let ok_scheme = url.starts_with("http://") || url.starts_with("https://");
    if !ok_scheme || url.len() > 2000 || url.chars().any(char::is_whitespace) {
        return Err(Error::Invalid(
            "url must be an http:// or https:// URL of at most 2000 bytes".into(),
        ));
    }
    Ok(())
}

impl Store {
    /// Adds a receiver of the tenant's call events with a fresh secret.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bad URL; [`Error::Database`].
    pub async fn add_webhook(&self, tenant_id: TenantId, url: &str) -> Result<Webhook, Error> {
        check_url(url)?;
        let secret = hex::encode(rand::random::<[u8; 32]>());
        let now = now_ms();
        let id: i64 = on_pool!(&self.pool, p => sqlx::query_scalar(
            "INSERT INTO webhooks (tenant_id, url, secret, created_at_ms) VALUES ($1, $2, $3, $4)
             RETURNING id",
        )
        .bind(tenant_id)
        .bind(url)
        .bind(&secret)
        .bind(now as i64)
        .fetch_one(p)
        .await?);
        Ok(Webhook {
            id,
            url: url.to_string(),
            secret,
            created_at_ms: now,
        })
    }

    /// The tenant's receivers, by id.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub async fn webhooks(&self, tenant_id: TenantId) -> Result<Vec<WebhookInfo>, Error> {
        Ok(on_pool!(&self.pool, p => sqlx::query_as(
            "SELECT w.id, w.url, w.created_at_ms,
                    (SELECT COUNT(*) FROM webhook_outbox o WHERE o.webhook_id = w.id
                       AND o.delivered_at_ms IS NULL AND o.given_up_at_ms IS NULL) AS pending
             FROM webhooks w WHERE w.tenant_id = $1 ORDER BY w.id",
        )
        .bind(tenant_id)
        .fetch_all(p)
        .await?))
    }

    /// Removes a receiver and its undelivered events.
    ///
    /// # Errors
    /// [`Error::NotFound`] for no such receiver in the tenant;
    /// [`Error::Database`].
    pub async fn remove_webhook(&self, tenant_id: TenantId, id: i64) -> Result<(), Error> {
        let n = on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            sqlx::query(
                "DELETE FROM webhook_outbox WHERE webhook_id IN
                   (SELECT id FROM webhooks WHERE id = $1 AND tenant_id = $2)",
            )
            .bind(id)
            .bind(tenant_id)
            .execute(&mut *tx)
            .await?;
            let n = sqlx::query("DELETE FROM webhooks WHERE id = $1 AND tenant_id = $2")
                .bind(id)
                .bind(tenant_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            n
        });
        if n == 0 {
            return Err(Error::NotFound("no such webhook".into()));
        }
        Ok(())
    }

    /// Events due for delivery at `now_ms`, oldest first, at most `limit`.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub async fn due_deliveries(&self, now_ms: u64, limit: u32) -> Result<Vec<Delivery>, Error> {
        Ok(on_pool!(&self.pool, p => sqlx::query_as(
            "SELECT o.id, o.event_id, o.event_type, o.call_id, u.username AS agent, o.at_ms,
                    o.attempts, o.next_attempt_at_ms, w.url, w.secret, t.name AS tenant
             FROM webhook_outbox o
             JOIN webhooks w ON w.id = o.webhook_id
             JOIN tenants t ON t.id = w.tenant_id
             LEFT JOIN users u ON u.id = o.agent_id
             WHERE o.delivered_at_ms IS NULL AND o.given_up_at_ms IS NULL
               AND o.next_attempt_at_ms <= $1
             ORDER BY o.id LIMIT $2",
        )
        .bind(now_ms as i64)
        .bind(i64::from(limit))
        .fetch_all(p)
        .await?))
    }

    /// Takes a due delivery for `lease_ms`: `false` when another node took
    /// it first (or it was delivered meanwhile).
    ///
    /// # Errors
    /// [`Error::Database`].
    pub async fn lease_delivery(&self, d: &Delivery, until_ms: u64) -> Result<bool, Error> {
        let n = on_pool!(&self.pool, p => sqlx::query(
            "UPDATE webhook_outbox SET next_attempt_at_ms = $1
             WHERE id = $2 AND next_attempt_at_ms = $3 AND delivered_at_ms IS NULL",
        )
        .bind(until_ms as i64)
        .bind(d.id)
        .bind(d.next_attempt_at_ms)
        .execute(p)
        .await?
        .rows_affected());
        Ok(n == 1)
    }

    /// Records the outcome of one attempt: delivered (`error` `None`), or
    /// failed with the next attempt at `retry_at_ms` (`None`: given up).
    ///
    /// # Errors
    /// [`Error::Database`].
    pub async fn delivery_attempted(
        &self,
        id: i64,
        error: Option<&str>,
        retry_at_ms: Option<u64>,
    ) -> Result<(), Error> {
        let now = now_ms() as i64;
        on_pool!(&self.pool, p => match error {
            None => {
                sqlx::query(
                    "UPDATE webhook_outbox SET delivered_at_ms = $1, attempts = attempts + 1,
                         last_error = NULL WHERE id = $2",
                )
                .bind(now)
                .bind(id)
                .execute(p)
                .await?;
            }
            Some(e) => {
                sqlx::query(
                    "UPDATE webhook_outbox SET attempts = attempts + 1, last_error = $1,
                         next_attempt_at_ms = COALESCE($2, next_attempt_at_ms),
                         given_up_at_ms = CASE WHEN $2 IS NULL THEN $3 ELSE NULL END
                     WHERE id = $4",
                )
                .bind(e)
                .bind(retry_at_ms.map(|t| t as i64))
                .bind(now)
                .bind(id)
                .execute(p)
                .await?;
            }
        });
        Ok(())
    }
}
