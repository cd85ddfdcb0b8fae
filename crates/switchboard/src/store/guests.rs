//! Guests in the store (docs/protocol.md §2.14): a customer who calls from
//! the web widget becomes a `users` row with role `guest` and no usable
//! password, plus a `guests` row with what they typed. Their calls are
//! ordinary CDR rows, so an agent's history shows them and can call back.

use serde::{Deserialize, Serialize};
use sqlx::FromRow;

use super::{Pool, Store, TenantId, UserId};
use crate::{Error, now_ms};

/// What a guest told the widget, shown to the agent before answering (the
/// screen-pop).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, FromRow)]
pub struct GuestInfo {
    /// Their email, when given.
    pub email: Option<String>,
    /// What they want to talk about, when given.
    pub topic: Option<String>,
    /// The page they called from, when the widget knew it.
    pub page: Option<String>,
}

/// A password hash that no password verifies (not a PHC string).
const NO_PASSWORD: &str = "!guest";

impl GuestInfo {
    /// Checks lengths and shapes: email at most 254 bytes with an `@`,
    /// topic at most 200, page an http(s) URL of at most 2000.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the bad field.
    pub fn validate(&self) -> Result<(), Error> {
        if let Some(e) = &self.email
            && (e.len() > 254 || !e.contains('@') || e.chars().any(char::is_whitespace))
        {
            return Err(Error::Invalid("email is not an email address".into()));
        }
        if self.topic.as_ref().is_some_and(|t| t.len() > 200) {
            return Err(Error::Invalid("topic must be at most 200 bytes".into()));
        }
        if let Some(p) = &self.page
            && (p.len() > 2000 || !(p.starts_with("http://") || p.starts_with("https://")))
        {
            return Err(Error::Invalid("page must be an http(s) URL".into()));
        }
        Ok(())
    }
}

impl Store {
    /// Creates a guest of the tenant named `name` (shown to agents as the
    /// display name) for calling `queue`; returns their user id and user
    /// name (`guest-` and 16 hex digits).
    ///
    /// # Errors
    /// [`Error::Invalid`] for a name that is empty or over 100 bytes, or a
    /// bad [`GuestInfo`]; [`Error::Database`].
    pub async fn add_guest(
        &self,
        tenant_id: TenantId,
        queue: &str,
        name: &str,
        info: &GuestInfo,
    ) -> Result<(UserId, String), Error> {
        let name = name.trim();
        if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
            return Err(Error::Invalid("name must be 1–100 characters".into()));
        }
        info.validate()?;
        let username = format!("guest-{}", hex::encode(rand::random::<[u8; 8]>()));
        let now = now_ms() as i64;
        let id: i64 = on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO users (tenant_id, username, display_name, password_hash, created_at_ms, role)
                 VALUES ($1, $2, $3, $4, $5, 'guest') RETURNING id",
            )
            .bind(tenant_id)
            .bind(&username)
            .bind(name)
            .bind(NO_PASSWORD)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO guests (user_id, queue, email, topic, page, created_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(id)
            .bind(queue)
            .bind(&info.email)
            .bind(&info.topic)
            .bind(&info.page)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            id
        });
        Ok((id, username))
    }

    /// What a guest typed; `None` for a user who is not a guest.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub async fn guest_info(&self, user_id: UserId) -> Result<Option<GuestInfo>, Error> {
        Ok(on_pool!(&self.pool, p => sqlx::query_as(
            "SELECT email, topic, page FROM guests WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_optional(p)
        .await?))
    }

    /// How many earlier calls the tenant had with guests of this email
    /// (any guest session, either way: their calls and calls back), not
    /// counting calls of `except_user`.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub async fn earlier_calls_by_email(
        &self,
        tenant_id: TenantId,
        email: &str,
        except_user: UserId,
    ) -> Result<u32, Error> {
        let n: i64 = on_pool!(&self.pool, p => sqlx::query_scalar(
            "SELECT COUNT(*) FROM calls c
             JOIN guests g ON g.user_id = c.caller_id OR g.user_id = c.callee_id
             WHERE c.tenant_id = $1 AND lower(g.email) = lower($2) AND g.user_id <> $3",
        )
        .bind(tenant_id)
        .bind(email)
        .bind(except_user)
        .fetch_one(p)
        .await?);
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// The origins allowed to embed the tenant's widget (space-separated in
    /// the store).
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown tenant; [`Error::Database`].
    pub async fn widget_origins(&self, tenant: &str) -> Result<Vec<String>, Error> {
        let row: Option<Option<String>> = on_pool!(&self.pool, p => sqlx::query_scalar(
            "SELECT widget_origins FROM tenants WHERE name = $1",
        )
        .bind(tenant)
        .fetch_optional(p)
        .await?);
        let Some(origins) = row else {
            return Err(Error::NotFound(format!("no tenant `{tenant}`")));
        };
        Ok(origins
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect())
    }

    /// Sets the origins allowed to embed the tenant's widget, each
    /// `http(s)://host[:port]` with no path.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a malformed origin; [`Error::Database`].
    pub async fn set_widget_origins(
        &self,
        tenant_id: TenantId,
        origins: &[String],
    ) -> Result<(), Error> {
        for o in origins {
            let rest = o
                .strip_prefix("https://")
                .or_else(|| o.strip_prefix("http://"));
            let ok = rest.is_some_and(|r| {
                !r.is_empty()
                    && r.len() < 256
                    && r.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))
            });
            if !ok {
                return Err(Error::Invalid(format!(
                    "`{o}` is not an origin like https://shop.example"
                )));
            }
        }
        on_pool!(&self.pool, p => {
            sqlx::query("UPDATE tenants SET widget_origins = $1 WHERE id = $2")
                .bind(origins.join(" "))
                .bind(tenant_id)
                .execute(p)
                .await?;
        });
        Ok(())
    }
}
