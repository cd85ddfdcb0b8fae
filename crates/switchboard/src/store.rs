//! The store: tenants, users, sessions, and call detail records, in SQLite
//! (one node, the default) or PostgreSQL (several nodes share it).
//!
//! SQLite is one file, `switchboard.db` in the data directory, in WAL mode
//! so that the admin commands can write while the server runs. PostgreSQL is
//! named by a `postgres://` URL (`--database`). Both backends run the same
//! SQL text through [`on_pool!`], which the compiler checks against each
//! driver; the schema comes from `migrations/sqlite/` and
//! `migrations/postgres/` (sqlx), kept version for version. CDR writes go
//! through [`CdrWriter`], a single task that commits them in order, batched,
//! one transaction per batch.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};
use softphone_protocol::{
    CallDirection, CallQuality, CallRecord, EndReason, UNKNOWN_USER, UserRef, valid_call_id,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{FromRow, PgPool, SqlitePool};
use tokio::sync::{mpsc, watch};

use crate::{Error, now_ms};

/// Database file name inside the data directory.
pub const DB_FILE: &str = "switchboard.db";

/// Tenant primary key.
pub type TenantId = i64;
/// User primary key.
pub type UserId = i64;

/// A user authenticated by a bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthedUser {
    /// User key.
    pub user_id: UserId,
    /// Tenant key.
    pub tenant_id: TenantId,
    /// Tenant name.
    pub tenant: String,
    /// User name and display name.
    pub user: UserRef,
    /// When the token expires, ms since the Unix epoch.
    pub token_expires_at_ms: u64,
    /// The login this token belongs to (32 hex digits): stable when the
    /// token is refreshed, gone after logout or when the user is disabled.
    /// Sockets are closed when their login is ended ([`Store::ended_logins`]).
    /// Empty for a session row older than migration 0002.
    pub login_id: String,
    /// What the user may do beyond calling.
    pub role: Role,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefusal {
    /// Unknown or revoked token, or disabled user.
    Unknown,
    /// Past its expiry.
    Expired,
}

/// A user row, as the admin commands list it.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct UserRow {
    /// User key.
    pub id: UserId,
    /// Tenant name.
    pub tenant: String,
    /// User name.
    pub username: String,
    /// Display name.
    pub display_name: String,
    /// Whether login is refused.
    pub disabled: bool,
    /// `agent`, `supervisor`, `admin` or `guest` ([`Role`]).
    pub role: String,
}

/// A user looked up for login.
#[derive(Debug, Clone, FromRow)]
pub struct LoginCandidate {
    /// User key.
    pub user_id: UserId,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Whether login is refused.
    pub disabled: bool,
}

/// A user of a tenant, as routing needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callee {
    /// User key.
    pub user_id: UserId,
    /// Names.
    pub user: UserRef,
}

/// A user's key and names, as routing and the directory read them.
#[derive(FromRow)]
struct NamesRow {
    id: UserId,
    username: String,
    display_name: String,
}

impl From<NamesRow> for Callee {
    fn from(r: NamesRow) -> Self {
        Self {
            user_id: r.id,
            user: UserRef {
                user: r.username,
                display_name: r.display_name,
            },
        }
    }
}

/// A session joined with its user, as `hello` and the HTTP API resolve it.
#[derive(FromRow)]
struct TokenRow {
    /// NULL only in a row written by a binary older than migration 0002.
    login_id: Option<String>,
    expires_at_ms: i64,
    user_id: UserId,
    tenant_id: TenantId,
    tenant: String,
    username: String,
    display_name: String,
    disabled: bool,
    role: String,
}

/// Which database a store uses, parsed from `--database`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// A SQLite file (`sqlite://PATH`; created when missing).
    Sqlite(std::path::PathBuf),
    /// A PostgreSQL server (`postgres://` or `postgresql://` URL, as libpq
    /// takes it; `?host=/dir` for a unix socket directory).
    Postgres(String),
}

impl Database {
    /// The default: `switchboard.db` in `data_dir`.
    pub fn in_data_dir(data_dir: &Path) -> Self {
        Self::Sqlite(data_dir.join(DB_FILE))
    }

    /// Parses a `--database` URL.
    ///
    /// # Errors
    /// [`Error::Invalid`] for another scheme or an empty SQLite path.
    pub fn parse(url: &str) -> Result<Self, Error> {
        let url = url.trim();
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(Error::Invalid("`sqlite://` needs a file path".into()));
            }
            return Ok(Self::Sqlite(path.into()));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(url.to_string()));
        }
        Err(Error::Invalid(
            "--database takes sqlite://PATH or postgres://USER@HOST/DB".into(),
        ))
    }

    /// For logs: the SQLite path, or the PostgreSQL URL without its
    /// password.
    pub fn display(&self) -> String {
        match self {
            Self::Sqlite(p) => p.display().to_string(),
            Self::Postgres(url) => match (url.find("://"), url.rfind('@')) {
                (Some(s), Some(at)) if at > s => {
                    let userinfo = &url[s + 3..at];
                    let user = userinfo.split(':').next().unwrap_or_default();
                    format!("{}{user}@{}", &url[..s + 3], &url[at + 1..])
                }
                _ => url.clone(),
            },
        }
    }
}

/// A connection pool of one backend.
#[derive(Debug, Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$p` bound to the store's pool, whichever backend it
/// is: one SQL text, compiled (and so type-checked) once per driver. The SQL
/// must be the dialect both share: `$N` placeholders, `ON CONFLICT`,
/// `RETURNING`, `CASE` rather than SQLite's scalar `MAX(a, b)`, `NOT flag`
/// rather than `flag = 0`.
macro_rules! on_pool {
    ($pool:expr, $p:ident => $body:expr) => {
        match $pool {
            Pool::Sqlite($p) => $body,
            Pool::Postgres($p) => $body,
        }
    };
}

/// The store: a pool over the SQLite file or the PostgreSQL server.
#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
    database: Database,
    /// The node run whose calls this store records ([`Store::for_node`]).
    node_run: Option<std::sync::Arc<str>>,
}

/// One run of a switchboard process (a node), as the store knows it: the
/// configured node name, stable across restarts and unique among the
/// nodes sharing a database, and a fresh id per run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRun {
    /// The node's name ([`crate::Config::node_name`]).
    pub name: String,
    /// This run's id: 32 hex digits, random.
    pub run_id: String,
}

impl NodeRun {
    /// A new run of node `name`.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            run_id: uuid::Uuid::new_v4().simple().to_string(),
        }
    }
}

impl Store {
    /// Opens (creating when missing) `DB_FILE` in `data_dir`, and runs the
    /// migrations.
    ///
    /// # Errors
    /// [`Error::Io`] when the directory cannot be created, [`Error::Database`]
    /// or [`Error::Migrate`] when SQLite refuses.
    pub async fn open(data_dir: &Path) -> Result<Self, Error> {
        Self::connect(&Database::in_data_dir(data_dir)).await
    }

    /// Opens the store `database` names and runs its migrations: a SQLite
    /// file (its directory created when missing) or a PostgreSQL server
    /// (the database must exist; its tables are created).
    ///
    /// # Errors
    /// [`Error::Io`] when the SQLite directory cannot be created,
    /// [`Error::Database`] when the database cannot be reached or refuses,
    /// [`Error::Migrate`] when a migration fails.
    pub async fn connect(database: &Database) -> Result<Self, Error> {
        let pool = match database {
            Database::Sqlite(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)?;
                }
                let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(10))
                    .foreign_keys(true);
                let pool = SqlitePoolOptions::new()
                    .max_connections(4)
                    .connect_with(opts)
                    .await?;
                sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
                Pool::Sqlite(pool)
            }
            Database::Postgres(url) => {
                let opts = PgConnectOptions::from_str(url)?;
                let pool = PgPoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(opts)
                    .await?;
                sqlx::migrate!("./migrations/postgres").run(&pool).await?;
                Pool::Postgres(pool)
            }
        };
        Ok(Self {
            pool,
            database: database.clone(),
            node_run: None,
        })
    }

    /// The database this store uses.
    pub fn database(&self) -> &Database {
        &self.database
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        on_pool!(&self.pool, p => p.close().await)
    }

    // ---- tenants and users -------------------------------------------------

    /// Adds a tenant.
    ///
    /// # Errors
    /// [`Error::Conflict`] when the name is taken; [`Error::Invalid`] for an
    /// empty or over-long (> 64 bytes) name.
    pub async fn add_tenant(&self, name: &str) -> Result<TenantId, Error> {
        check_name("tenant", name)?;
        let r: Result<TenantId, _> = on_pool!(&self.pool, p => sqlx::query_scalar(
            "INSERT INTO tenants (name, created_at_ms) VALUES ($1, $2) RETURNING id",
        )
        .bind(name)
        .bind(now_ms() as i64)
        .fetch_one(p)
        .await);
        match r {
            Ok(id) => Ok(id),
            Err(e) if is_unique_violation(&e) => {
                Err(Error::Conflict(format!("tenant `{name}` exists")))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Lists tenant names, sorted.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub async fn list_tenants(&self) -> Result<Vec<String>, Error> {
        let names = on_pool!(&self.pool, p => sqlx::query_scalar("SELECT name FROM tenants ORDER BY name")
            .fetch_all(p)
            .await?);
        Ok(names)
    }

    /// The key of the tenant named `tenant`.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown tenant.
    pub async fn tenant_id(&self, tenant: &str) -> Result<TenantId, Error> {
        on_pool!(&self.pool, p => sqlx::query_scalar("SELECT id FROM tenants WHERE name = $1")
            .bind(tenant)
            .fetch_optional(p)
            .await?)
        .ok_or_else(|| Error::NotFound(format!("no tenant `{tenant}`")))
    }

    /// Adds a user with an argon2id hash of `password` (≥ 8 characters).
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown tenant, [`Error::Conflict`] for a
    /// taken user name, [`Error::Invalid`] for a bad name or short password.
    pub async fn add_user(
        &self,
        tenant: &str,
        username: &str,
        display_name: &str,
        password: &str,
    ) -> Result<UserId, Error> {
        check_name("user", username)?;
        if display_name.trim().is_empty() || display_name.len() > 128 {
            return Err(Error::Invalid("display name must be 1–128 bytes".into()));
        }
        if password.chars().count() < 8 {
            return Err(Error::Invalid(
                "password must have at least 8 characters".into(),
            ));
        }
        let hash = hash_password(password.to_string()).await?;
        let users = [(username.to_string(), display_name.to_string())];
        let ids = self.add_users_hashed(tenant, &users, &hash).await?;
        Ok(ids[0])
    }

    /// Adds many users of one tenant that share one precomputed argon2id PHC
    /// hash (bulk provisioning, load tests), in one transaction. Returns
    /// their ids in order.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown tenant, [`Error::Conflict`] when a
    /// name is taken, [`Error::Invalid`] for a bad name or hash.
    pub async fn add_users_hashed(
        &self,
        tenant: &str,
        users: &[(String, String)],
        phc_hash: &str,
    ) -> Result<Vec<UserId>, Error> {
        PasswordHash::new(phc_hash).map_err(|e| Error::Invalid(format!("bad PHC hash: {e}")))?;
        for (username, _) in users {
            check_name("user", username)?;
        }
        let tenant_id = self.tenant_id(tenant).await?;
        on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            let mut ids = Vec::with_capacity(users.len());
            for (username, display_name) in users {
                // Callers dial queues and users alike: a user may not take
                // a queue's name or number.
                let queues: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM queues WHERE tenant_id = $1 AND (name = $2 OR number = $2)",
                )
                .bind(tenant_id)
                .bind(username)
                .fetch_one(&mut *tx)
                .await?;
                if queues > 0 {
                    return Err(Error::Conflict(format!(
                        "`{username}` is a queue's name or number in tenant `{tenant}`"
                    )));
                }
                let r: Result<UserId, _> = sqlx::query_scalar(
                    "INSERT INTO users (tenant_id, username, display_name, password_hash, created_at_ms)
                     VALUES ($1, $2, $3, $4, $5) RETURNING id",
                )
                .bind(tenant_id)
                .bind(username)
                .bind(display_name)
                .bind(phc_hash)
                .bind(now_ms() as i64)
                .fetch_one(&mut *tx)
                .await;
                match r {
                    Ok(id) => ids.push(id),
                    Err(e) if is_unique_violation(&e) => {
                        return Err(Error::Conflict(format!(
                            "user `{username}` exists in tenant `{tenant}`"
                        )));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            tx.commit().await?;
            Ok(ids)
        })
    }

    /// Lists users, of one tenant or of all, sorted by tenant then name.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown tenant; [`Error::Database`].
    pub async fn list_users(&self, tenant: Option<&str>) -> Result<Vec<UserRow>, Error> {
        let tenant_id = match tenant {
            Some(t) => Some(self.tenant_id(t).await?),
            None => None,
        };
        let rows = on_pool!(&self.pool, p => sqlx::query_as(
            "SELECT u.id, t.name AS tenant, u.username, u.display_name, u.disabled, u.role
             FROM users u JOIN tenants t ON t.id = u.tenant_id
             WHERE $1 IS NULL OR u.tenant_id = $1
             ORDER BY t.name, u.username",
        )
        .bind(tenant_id)
        .fetch_all(p)
        .await?);
        Ok(rows)
    }

    /// Disables (or re-enables) a user. Disabling also revokes every token of
    /// the user, so the next request or reconnect is refused.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown tenant or user.
    pub async fn set_disabled(
        &self,
        tenant: &str,
        username: &str,
        disabled: bool,
    ) -> Result<(), Error> {
        let tenant_id = self.tenant_id(tenant).await?;
        on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            let done = sqlx::query(
                "UPDATE users SET disabled = $1 WHERE tenant_id = $2 AND username = $3",
            )
            .bind(disabled)
            .bind(tenant_id)
            .bind(username)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Err(Error::NotFound(format!(
                    "no user `{username}` in tenant `{tenant}`"
                )));
            }
            if disabled {
                sqlx::query(
                    "INSERT INTO ended_logins (login_id, ended_at_ms)
                     SELECT login_id, $1 FROM sessions WHERE login_id IS NOT NULL AND user_id =
                     (SELECT id FROM users WHERE tenant_id = $2 AND username = $3)
                     ON CONFLICT DO NOTHING",
                )
                .bind(now_ms() as i64)
                .bind(tenant_id)
                .bind(username)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "DELETE FROM sessions WHERE user_id =
                     (SELECT id FROM users WHERE tenant_id = $1 AND username = $2)",
                )
                .bind(tenant_id)
                .bind(username)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Looks a user up for login by tenant and user name.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub async fn login_candidate(
        &self,
        tenant: &str,
        username: &str,
    ) -> Result<Option<LoginCandidate>, Error> {
        let row = on_pool!(&self.pool, p => sqlx::query_as(
            "SELECT u.id AS user_id, u.password_hash, u.disabled FROM users u
             JOIN tenants t ON t.id = u.tenant_id WHERE t.name = $1 AND u.username = $2",
        )
        .bind(tenant)
        .bind(username)
        .fetch_optional(p)
        .await?);
        Ok(row)
    }

    /// Finds an enabled user of a tenant by user name.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub async fn find_user(
        &self,
        tenant_id: TenantId,
        username: &str,
    ) -> Result<Option<Callee>, Error> {
        let row: Option<NamesRow> = on_pool!(&self.pool, p => sqlx::query_as(
            "SELECT id, username, display_name FROM users
             WHERE tenant_id = $1 AND username = $2 AND NOT disabled",
        )
        .bind(tenant_id)
        .bind(username)
        .fetch_optional(p)
        .await?);
        Ok(row.map(Callee::from))
    }

    /// Enabled users of a tenant whose user or display name contains `query`
    /// (case-insensitive; all when empty), sorted by user name, at most `limit`.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub async fn directory(
        &self,
        tenant_id: TenantId,
        query: &str,
        limit: u32,
    ) -> Result<Vec<Callee>, Error> {
        // LIKE's wildcards and PostgreSQL's escape character are dropped,
        // so that the query means the same on both backends. Case folding
        // is ASCII on SQLite, Unicode on PostgreSQL.
        let pattern = format!("%{}%", query.replace(['%', '_', '\\'], ""));
        // lower() on both sides: SQLite's LIKE ignores ASCII case,
        // PostgreSQL's does not.
        let rows: Vec<NamesRow> = on_pool!(&self.pool, p => sqlx::query_as(
            "SELECT id, username, display_name FROM users
             WHERE tenant_id = $1 AND NOT disabled AND role <> 'guest'
               AND (lower(username) LIKE lower($2) OR lower(display_name) LIKE lower($2))
             ORDER BY username LIMIT $3",
        )
        .bind(tenant_id)
        .bind(pattern)
        .bind(i64::from(limit))
        .fetch_all(p)
        .await?);
        Ok(rows.into_iter().map(Callee::from).collect())
    }

    // ---- sessions -----------------------------------------------------------

    /// Creates a session for `user_id` and returns its bearer token (256
    /// random bits, base64url) and expiry (ms). Only the SHA-256 is stored.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub async fn create_session(
        &self,
        user_id: UserId,
        ttl: Duration,
    ) -> Result<(String, u64), Error> {
        let token = new_token();
        let now = now_ms();
        let expires = now + ttl.as_millis() as u64;
        on_pool!(&self.pool, p => {
            sqlx::query(
            "INSERT INTO sessions (token_hash, login_id, user_id, created_at_ms, expires_at_ms)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token_hash(&token).to_vec())
        .bind(uuid::Uuid::new_v4().simple().to_string())
        .bind(user_id)
        .bind(now as i64)
        .bind(expires as i64)
        .execute(p)
        .await?;
        });
        Ok((token, expires))
    }

    /// Resolves a bearer token to its user.
    ///
    /// # Errors
    /// `Ok(Err(refusal))` for an unknown, revoked or expired token or a
    /// disabled user; [`Error::Database`] when the store fails.
    pub async fn resolve_token(
        &self,
        token: &str,
    ) -> Result<Result<AuthedUser, TokenRefusal>, Error> {
        if token.is_empty() || token.len() > 128 {
            return Ok(Err(TokenRefusal::Unknown));
        }
        let row: Option<TokenRow> = on_pool!(&self.pool, p => sqlx::query_as(
            "SELECT s.login_id, s.expires_at_ms, u.id AS user_id, u.tenant_id, t.name AS tenant,
                    u.username, u.display_name, u.disabled, u.role
             FROM sessions s JOIN users u ON u.id = s.user_id JOIN tenants t ON t.id = u.tenant_id
             WHERE s.token_hash = $1",
        )
        .bind(token_hash(token).to_vec())
        .fetch_optional(p)
        .await?);
        let Some(r) = row else {
            return Ok(Err(TokenRefusal::Unknown));
        };
        if r.disabled {
            return Ok(Err(TokenRefusal::Unknown));
        }
        let expires = u64::try_from(r.expires_at_ms).unwrap_or(0);
        if expires <= now_ms() {
            return Ok(Err(TokenRefusal::Expired));
        }
        Ok(Ok(AuthedUser {
            user_id: r.user_id,
            tenant_id: r.tenant_id,
            tenant: r.tenant,
            user: UserRef {
                user: r.username,
                display_name: r.display_name,
            },
            token_expires_at_ms: expires,
            login_id: r.login_id.unwrap_or_default(),
            role: Role::parse(&r.role),
        }))
    }

    /// Revokes a token and ends its login (logout): the login is recorded
    /// as ended, so that every node closes its sockets
    /// ([`Self::ended_logins`]). Revoking an unknown token is not an error.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub async fn revoke(&self, token: &str) -> Result<(), Error> {
        let hash = token_hash(token).to_vec();
        on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            sqlx::query(
                "INSERT INTO ended_logins (login_id, ended_at_ms)
                 SELECT login_id, $1 FROM sessions WHERE token_hash = $2 AND login_id IS NOT NULL
                 ON CONFLICT DO NOTHING",
            )
            .bind(now_ms() as i64)
            .bind(&hash)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
                .bind(&hash)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Replaces a live token by a new one with a fresh lifetime, keeping its
    /// login (so sockets opened with the old token stay open). Returns the
    /// new token and its expiry (ms since the Unix epoch), or `None` when
    /// the old token is no longer stored (revoked or refreshed meanwhile).
    ///
    /// # Errors
    /// [`Error::Database`].
    pub async fn refresh_session(
        &self,
        token: &str,
        ttl: Duration,
    ) -> Result<Option<(String, u64)>, Error> {
        let fresh = new_token();
        let now = now_ms();
        let expires = now + ttl.as_millis() as u64;
        let done = on_pool!(&self.pool, p => sqlx::query(
            "UPDATE sessions SET token_hash = $1, expires_at_ms = $2 WHERE token_hash = $3",
        )
        .bind(token_hash(&fresh).to_vec())
        .bind(expires as i64)
        .bind(token_hash(token).to_vec())
        .execute(p)
        .await?
        .rows_affected());
        Ok((done == 1).then_some((fresh, expires)))
    }

    /// Which of `login_ids` were ended on purpose (logout, user disabled)
    /// in the last day. Expiry does not end a login: a socket outlives its
    /// token's lifetime (its next `hello` does not), also once the expired
    /// session row is purged.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub async fn ended_logins(
        &self,
        login_ids: &[String],
    ) -> Result<std::collections::HashSet<String>, Error> {
        let mut ended = std::collections::HashSet::new();
        for chunk in login_ids.chunks(500) {
            let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT login_id FROM ended_logins WHERE login_id IN ({})",
                marks.join(",")
            );
            on_pool!(&self.pool, p => {
                let mut q = sqlx::query_scalar::<_, String>(&sql);
                for id in chunk {
                    q = q.bind(id);
                }
                ended.extend(q.fetch_all(p).await?);
            });
        }
        Ok(ended)
    }

    /// Deletes sessions expired before now; returns how many.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub async fn purge_expired_sessions(&self) -> Result<u64, Error> {
        let now = now_ms() as i64;
        on_pool!(&self.pool, p => {
            let done = sqlx::query("DELETE FROM sessions WHERE expires_at_ms <= $1")
                .bind(now)
                .execute(p)
                .await?;
            // Every node has swept many times in a day.
            sqlx::query("DELETE FROM ended_logins WHERE ended_at_ms <= $1")
                .bind(now - 86_400_000)
                .execute(p)
                .await?;
            Ok(done.rows_affected())
        })
    }

    // ---- CDRs ---------------------------------------------------------------

    /// Marks calls left unfinished by a server older than migration 0003
    /// (their rows name no node run) as `failed`. Their end time is that
    /// server's last heartbeat (never before the call's last event, never
    /// after now). Returns how many. Calls of node runs are failed by
    /// [`Self::fail_calls_of_gone_nodes`].
    ///
    /// # Errors
    /// [`Error::Database`].
    pub async fn recover_unfinished_calls(&self) -> Result<u64, Error> {
        let now = now_ms() as i64;
        let heartbeat: Option<i64> = on_pool!(&self.pool, p => {
            sqlx::query_scalar("SELECT at_ms FROM server_heartbeat WHERE id = 1")
                .fetch_optional(p)
                .await?
        });
        self.fail_unfinished_calls(None, heartbeat.unwrap_or(now).min(now))
            .await
    }

    /// Fails the unfinished calls of one node run (`None`: of no run) as of
    /// `bound_ms`: each ends at `bound_ms`, or at its last event when that
    /// is later, as `failed`. Conditional on `ended_at_ms IS NULL`, so
    /// sweeping twice, or from two nodes at once, fails each call once.
    async fn fail_unfinished_calls(&self, run: Option<&str>, bound_ms: i64) -> Result<u64, Error> {
        let done = on_pool!(&self.pool, p => sqlx::query(
            "UPDATE calls SET end_reason = 'failed',
                 ended_at_ms = CASE
                     WHEN COALESCE(answered_at_ms, ringing_at_ms, created_at_ms) > $1
                     THEN COALESCE(answered_at_ms, ringing_at_ms, created_at_ms)
                     ELSE $1 END,
                 duration_ms = CASE
                     WHEN answered_at_ms IS NULL OR answered_at_ms > $1 THEN 0
                     ELSE $1 - answered_at_ms END
             WHERE ended_at_ms IS NULL AND node_run IS NOT DISTINCT FROM $2",
        )
        .bind(bound_ms)
        .bind(run)
        .execute(p)
        .await?
        .rows_affected());
        Ok(done)
    }

    // ---- nodes --------------------------------------------------------------

    /// This store, for the node run `node`: the calls it records name the
    /// run ([`CdrWrite::Created`] fills `calls.node_run`), so that another
    /// node can fail them if this run dies.
    pub fn for_node(mut self, node: &NodeRun) -> Self {
        self.node_run = Some(node.run_id.clone().into());
        self
    }

    /// Records that node run `node` is alive now. Returns whether its row
    /// was there: `false` the first time (the run registers), and `false`
    /// later when another node took this run for dead (its heartbeat went
    /// stale) and failed its calls; the run is registered again.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub async fn node_heartbeat(&self, node: &NodeRun) -> Result<bool, Error> {
        let now = now_ms() as i64;
        let updated = on_pool!(&self.pool, p => sqlx::query(
            "UPDATE nodes SET heartbeat_at_ms = $2 WHERE run_id = $1",
        )
        .bind(&node.run_id)
        .bind(now)
        .execute(p)
        .await?
        .rows_affected());
        if updated == 1 {
            return Ok(true);
        }
        on_pool!(&self.pool, p => {
            sqlx::query(
                "INSERT INTO nodes (run_id, name, started_at_ms, heartbeat_at_ms)
                 VALUES ($1, $2, $3, $3) ON CONFLICT (run_id) DO NOTHING",
            )
            .bind(&node.run_id)
            .bind(&node.name)
            .bind(now)
            .execute(p)
            .await?;
        });
        Ok(false)
    }

    /// Fails the unfinished calls of every node run that is gone, and
    /// forgets those runs: any run whose last heartbeat is older than
    /// `stale_before_ms`, and, with `earlier_runs_of_my_name` (at a node's
    /// start only: that process ended, the node restarted under its name),
    /// every other run of `me`'s name. Each call ends at its
    /// run's last heartbeat (never before its last event). Any node may
    /// sweep at any time: the updates are conditional, so each call is
    /// failed once. Returns how many calls were failed.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub async fn fail_calls_of_gone_nodes(
        &self,
        me: &NodeRun,
        stale_before_ms: u64,
        earlier_runs_of_my_name: bool,
    ) -> Result<u64, Error> {
        let now = now_ms() as i64;
        let gone: Vec<(String, i64)> = on_pool!(&self.pool, p => sqlx::query_as(
            "SELECT run_id, heartbeat_at_ms FROM nodes
             WHERE run_id <> $1 AND (($4 AND name = $2) OR heartbeat_at_ms < $3)",
        )
        .bind(&me.run_id)
        .bind(&me.name)
        .bind(stale_before_ms as i64)
        .bind(earlier_runs_of_my_name)
        .fetch_all(p)
        .await?);
        let mut failed = 0;
        for (run, heartbeat) in gone {
            let n = self
                .fail_unfinished_calls(Some(&run), heartbeat.min(now))
                .await?;
            if n > 0 {
                tracing::warn!(run = %run, calls = n, "failed the unfinished calls of a gone node");
            }
            failed += n;
            on_pool!(&self.pool, p => {
                sqlx::query("DELETE FROM nodes WHERE run_id = $1")
                    .bind(&run)
                    .execute(p)
                    .await?;
            });
        }
        Ok(failed)
    }

    /// Call history of a user, newest first: at most `limit` records created
    /// before the cursor `before` (from a previous page's `next_before`).
    ///
    /// # Errors
    /// [`Error::Invalid`] for a malformed cursor; [`Error::Database`].
    pub async fn calls_of(
        &self,
        user_id: UserId,
        before: Option<&str>,
        limit: u32,
    ) -> Result<(Vec<CallRecord>, Option<String>), Error> {
        let (before_ms, before_id) = match before {
            None => (i64::MAX, String::new()),
            Some(c) => {
                parse_cursor(c).ok_or_else(|| Error::Invalid("bad `before` cursor".into()))?
            }
        };
        let limit = limit.clamp(1, 200) as i64;
        let sql = format!(
            "{CALL_SELECT} WHERE (c.caller_id = $1 OR c.callee_id = $1)
               AND (c.created_at_ms < $2 OR (c.created_at_ms = $2 AND c.id < $3))
             ORDER BY c.created_at_ms DESC, c.id DESC LIMIT $4"
        );
        let rows: Vec<CallRow> = on_pool!(&self.pool, p => sqlx::query_as(&sql)
            .bind(user_id)
            .bind(before_ms)
            .bind(before_id)
            .bind(limit + 1)
            .fetch_all(p)
            .await?);
        let mut calls: Vec<CallRecord> = rows.into_iter().map(|r| r.record(user_id)).collect();
        let next = if calls.len() as i64 > limit {
            calls.truncate(limit as usize);
            calls
                .last()
                .map(|c| format!("{}_{}", c.created_at_ms, c.call_id))
        } else {
            None
        };
        Ok((calls, next))
    }

    /// One call detail record, if `user_id` was a party to it.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub async fn call_of(
        &self,
        user_id: UserId,
        call_id: &str,
    ) -> Result<Option<CallRecord>, Error> {
        let sql =
            format!("{CALL_SELECT} WHERE c.id = $2 AND (c.caller_id = $1 OR c.callee_id = $1)");
        let row: Option<CallRow> = on_pool!(&self.pool, p => sqlx::query_as(&sql)
            .bind(user_id)
            .bind(call_id)
            .fetch_optional(p)
            .await?);
        Ok(row.map(|r| r.record(user_id)))
    }

    /// Whether a call record with this id exists (in any tenant): call ids are
    /// never reused, so an old record cannot be overwritten.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub async fn call_exists(&self, call_id: &str) -> Result<bool, Error> {
        Ok(
            on_pool!(&self.pool, p => sqlx::query("SELECT 1 FROM calls WHERE id = $1")
            .bind(call_id)
            .fetch_optional(p)
            .await?
            .is_some()),
        )
    }

    /// A call's record as the tenant sees it (for webhooks): the caller's
    /// record without the caller's point of view; `None` for an unknown
    /// call.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub async fn call_for_tenant(&self, call_id: &str) -> Result<Option<CallRecord>, Error> {
        let sql = format!("{CALL_SELECT} WHERE c.id = $1");
        let row: Option<CallRow> = on_pool!(&self.pool, p => sqlx::query_as(&sql)
            .bind(call_id)
            .fetch_optional(p)
            .await?);
        Ok(row.map(|r| {
            let caller = r.caller_id;
            r.record(caller)
        }))
    }

    /// Whether `user_id` was a party to `call_id` (for late `call.stats`).
    ///
    /// # Errors
    /// [`Error::Database`].
    pub async fn is_party(&self, user_id: UserId, call_id: &str) -> Result<bool, Error> {
        Ok(on_pool!(&self.pool, p => sqlx::query(
            "SELECT 1 FROM calls WHERE id = $2 AND (caller_id = $1 OR callee_id = $1)",
        )
        .bind(user_id)
        .bind(call_id)
        .fetch_optional(p)
        .await?
        .is_some()))
    }
}

/// Writes the webhook outbox rows of one call event on `$tx`: one per
/// webhook of the call's tenant, when the call row matches `$cond` (extra
/// SQL, e.g. `AND c.answered_at_ms IS NULL`). The event id is derived from
/// the call, the type, the time and the agent, so a repeated write adds
/// nothing. Evaluates to `Result<(), sqlx::Error>` (inside [`apply_cdr!`]).
macro_rules! outbox {
    ($tx:ident, $ty:expr, $call:expr, $agent:expr, $at:expr, $cond:expr) => {{
        let agent: Option<i64> = $agent;
        let event_id = match agent {
            Some(a) => format!("{}/{}/{}/{}", $call, $ty, $at, a),
            None => format!("{}/{}/{}", $call, $ty, $at),
        };
        sqlx::query(&format!(
            "INSERT INTO webhook_outbox
               (webhook_id, event_id, event_type, call_id, agent_id, at_ms, next_attempt_at_ms)
             SELECT w.id, $1, $2, c.id, $3, $4, $4
             FROM calls c JOIN webhooks w ON w.tenant_id = c.tenant_id
             WHERE c.id = $5 {}
             ON CONFLICT (webhook_id, event_id) DO NOTHING",
            $cond
        ))
        .bind(event_id)
        .bind($ty)
        .bind(agent)
        .bind(*$at as i64)
        .bind($call)
        .execute(&mut *$tx)
        .await?;
    }};
}

/// Applies one [`CdrWrite`] on `$tx` (a transaction of either backend),
/// a new call row naming the node run `$node_run` (`Option<&str>`);
/// evaluates to `Result<(), sqlx::Error>`. A macro rather than a function
/// so that each driver's code is generated from the one SQL text
/// ([`on_pool!`]).
macro_rules! apply_cdr {
    ($tx:ident, $w:expr, $node_run:expr) => {
        async {
        match $w {
            CdrWrite::Created {
                call_id,
                tenant_id,
                caller_id,
                callee_id,
                caller_endpoint,
                at_ms,
            } => {
                sqlx::query(
                    "INSERT INTO calls
                       (id, tenant_id, caller_id, callee_id, caller_device, created_at_ms, node_run)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(call_id)
                .bind(tenant_id)
                .bind(caller_id)
                .bind(callee_id)
                .bind(caller_endpoint)
                .bind(*at_ms as i64)
                .bind($node_run)
                .execute(&mut *$tx)
                .await?;
                outbox!($tx, "call.initiated", call_id, None, at_ms, "");
            }
            CdrWrite::CreatedQueued {
                call_id,
                tenant_id,
                caller_id,
                caller_endpoint,
                queue,
                at_ms,
            } => {
                sqlx::query(
                    "INSERT INTO calls
                       (id, tenant_id, caller_id, callee_id, caller_device, created_at_ms, node_run,
                        queue, queued_at_ms)
                     VALUES ($1, $2, $3, NULL, $4, $5, $6, $7, $5)",
                )
                .bind(call_id)
                .bind(tenant_id)
                .bind(caller_id)
                .bind(caller_endpoint)
                .bind(*at_ms as i64)
                .bind($node_run)
                .bind(queue)
                .execute(&mut *$tx)
                .await?;
                outbox!($tx, "call.initiated", call_id, None, at_ms, "");
                outbox!($tx, "call.queued", call_id, None, at_ms, "");
            }
            CdrWrite::Requeued {
                call_id,
                queue,
                at_ms,
            } => {
                let n = sqlx::query(
                    "UPDATE calls SET queue = $1 WHERE id = $2 AND ended_at_ms IS NULL",
                )
                .bind(queue)
                .bind(call_id)
                .execute(&mut *$tx)
                .await?
                .rows_affected();
                if n > 0 {
                    outbox!($tx, "call.queued", call_id, None, at_ms, "");
                }
            }
            CdrWrite::Offered {
                call_id,
                agent,
                at_ms,
            } => {
                sqlx::query(
                    "INSERT INTO call_offers (call_id, user_id, offered_at_ms) VALUES ($1, $2, $3)
                     ON CONFLICT(call_id, user_id, offered_at_ms) DO NOTHING",
                )
                .bind(call_id)
                .bind(agent)
                .bind(*at_ms as i64)
                .execute(&mut *$tx)
                .await?;
                outbox!($tx, "call.offered", call_id, Some(*agent), at_ms, "");
            }
            CdrWrite::OfferEnded {
                call_id,
                agent,
                outcome,
                at_ms,
            } => {
                sqlx::query(
                    "UPDATE call_offers SET outcome = $1, outcome_at_ms = $2
                     WHERE call_id = $3 AND user_id = $4 AND outcome IS NULL",
                )
                .bind(*outcome)
                .bind(*at_ms as i64)
                .bind(call_id)
                .bind(agent)
                .execute(&mut *$tx)
                .await?;
            }
            CdrWrite::Ringing { call_id, at_ms } => {
                sqlx::query(
                    "UPDATE calls SET ringing_at_ms = $1
                     WHERE id = $2 AND ringing_at_ms IS NULL AND ended_at_ms IS NULL",
                )
                .bind(*at_ms as i64)
                .bind(call_id)
                .execute(&mut *$tx)
                .await?;
            }
            CdrWrite::Answered {
                call_id,
                endpoint,
                agent,
                at_ms,
            } => {
                let n = sqlx::query(
                    "UPDATE calls SET answered_at_ms = $1, answered_device = $2,
                         callee_id = COALESCE($4, callee_id)
                     WHERE id = $3 AND answered_at_ms IS NULL AND ended_at_ms IS NULL",
                )
                .bind(*at_ms as i64)
                .bind(endpoint)
                .bind(call_id)
                .bind(*agent)
                .execute(&mut *$tx)
                .await?
                .rows_affected();
                if n > 0 {
                    outbox!($tx, "call.answered", call_id, None, at_ms, "");
                }
            }
            CdrWrite::Ended {
                call_id,
                at_ms,
                reason,
                by,
            } => {
                let n = sqlx::query(
                    "UPDATE calls SET ended_at_ms = $1, end_reason = $2, ended_by = $3,
                         duration_ms = CASE WHEN answered_at_ms IS NULL THEN 0
                                            WHEN $1 > answered_at_ms THEN $1 - answered_at_ms
                                            ELSE 0 END
                     WHERE id = $4 AND ended_at_ms IS NULL",
                )
                .bind(*at_ms as i64)
                .bind(reason.as_str())
                .bind(by)
                .bind(call_id)
                .execute(&mut *$tx)
                .await?
                .rows_affected();
                if n > 0 {
                    // The kind of end first, then the end itself.
                    match reason {
                        EndReason::Rejected | EndReason::Busy => {
                            outbox!($tx, "call.rejected", call_id, None, at_ms, "")
                        }
                        EndReason::Abandoned => {
                            outbox!($tx, "call.abandoned", call_id, None, at_ms, "")
                        }
                        r if r.is_missed(CallDirection::Incoming, false) => outbox!(
                            $tx,
                            "call.missed",
                            call_id,
                            None,
                            at_ms,
                            "AND c.answered_at_ms IS NULL"
                        ),
                        _ => {}
                    }
                    outbox!($tx, "call.ended", call_id, None, at_ms, "");
                }
            }
            CdrWrite::Quality {
                call_id,
                user_id,
                quality: q,
                at_ms,
            } => {
                sqlx::query(
                    "INSERT INTO call_quality
                       (call_id, user_id, rtt_ms, jitter_ms, loss_pct, mos, send_kbps, recv_kbps, posted_at_ms)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                     ON CONFLICT(call_id, user_id) DO UPDATE SET
                       rtt_ms = excluded.rtt_ms, jitter_ms = excluded.jitter_ms,
                       loss_pct = excluded.loss_pct, mos = excluded.mos,
                       send_kbps = excluded.send_kbps, recv_kbps = excluded.recv_kbps,
                       posted_at_ms = excluded.posted_at_ms",
                )
                .bind(call_id)
                .bind(user_id)
                .bind(q.rtt_ms)
                .bind(q.jitter_ms)
                .bind(q.loss_pct)
                .bind(q.mos)
                .bind(q.send_kbps)
                .bind(q.recv_kbps)
                .bind(*at_ms as i64)
                .execute(&mut *$tx)
                .await?;
            }
        }
            Ok::<(), sqlx::Error>(())
        }
    };
}

const CALL_SELECT: &str = "SELECT c.id AS call_id, c.caller_id,
       cu.username AS caller_name, cu.display_name AS caller_display,
       ce.username AS callee_name, ce.display_name AS callee_display,
       c.answered_device AS answered_endpoint, c.created_at_ms, c.ringing_at_ms, c.answered_at_ms,
       c.ended_at_ms, c.duration_ms, c.end_reason, eb.username AS ended_by,
       c.callee_id, c.queue, c.queued_at_ms,
       qa.rtt_ms AS qa_rtt_ms, qa.jitter_ms AS qa_jitter_ms, qa.loss_pct AS qa_loss_pct,
       qa.mos AS qa_mos, qa.send_kbps AS qa_send_kbps, qa.recv_kbps AS qa_recv_kbps,
       qa.posted_at_ms AS qa_posted_at_ms,
       qb.rtt_ms AS qb_rtt_ms, qb.jitter_ms AS qb_jitter_ms, qb.loss_pct AS qb_loss_pct,
       qb.mos AS qb_mos, qb.send_kbps AS qb_send_kbps, qb.recv_kbps AS qb_recv_kbps,
       qb.posted_at_ms AS qb_posted_at_ms
     FROM calls c
     LEFT JOIN users cu ON cu.id = c.caller_id
     LEFT JOIN users ce ON ce.id = c.callee_id
     LEFT JOIN users eb ON eb.id = c.ended_by
     LEFT JOIN call_quality qa ON qa.call_id = c.id AND qa.user_id = c.caller_id
     LEFT JOIN call_quality qb ON qb.call_id = c.id AND qb.user_id = c.callee_id";

/// One row of [`CALL_SELECT`]: a call with its parties' names (absent for a
/// deleted user) and each party's last quality summary (`qa_` the caller's,
/// `qb_` the callee's; `*_posted_at_ms` absent when none was posted).
#[derive(FromRow)]
struct CallRow {
    call_id: String,
    caller_id: UserId,
    caller_name: Option<String>,
    caller_display: Option<String>,
    callee_name: Option<String>,
    callee_display: Option<String>,
    answered_endpoint: Option<String>,
    created_at_ms: i64,
    ringing_at_ms: Option<i64>,
    answered_at_ms: Option<i64>,
    ended_at_ms: Option<i64>,
    duration_ms: Option<i64>,
    end_reason: Option<String>,
    ended_by: Option<String>,
    callee_id: Option<UserId>,
    queue: Option<String>,
    queued_at_ms: Option<i64>,
    qa_rtt_ms: Option<f64>,
    qa_jitter_ms: Option<f64>,
    qa_loss_pct: Option<f64>,
    qa_mos: Option<f64>,
    qa_send_kbps: Option<f64>,
    qa_recv_kbps: Option<f64>,
    qa_posted_at_ms: Option<i64>,
    qb_rtt_ms: Option<f64>,
    qb_jitter_ms: Option<f64>,
    qb_loss_pct: Option<f64>,
    qb_mos: Option<f64>,
    qb_send_kbps: Option<f64>,
    qb_recv_kbps: Option<f64>,
    qb_posted_at_ms: Option<i64>,
}

impl CallRow {
    /// The record as `me` sees it (direction, missed).
    fn record(self, me: UserId) -> CallRecord {
        let user = |name: Option<String>, display: Option<String>| UserRef {
            user: name.unwrap_or_else(|| UNKNOWN_USER.into()),
            display_name: display.unwrap_or_else(|| UNKNOWN_USER.into()),
        };
        let ms = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok());
        let direction = if self.caller_id == me {
            CallDirection::Outgoing
        } else {
            CallDirection::Incoming
        };
        let answered_at_ms = ms(self.answered_at_ms);
        let end_reason = self.end_reason.as_deref().and_then(EndReason::parse);
        // A queue call no agent answered has the queue for its callee.
        let callee = match (&self.queue, self.callee_id) {
            (Some(q), None) => UserRef {
                user: q.clone(),
                display_name: q.clone(),
            },
            _ => user(self.callee_name, self.callee_display),
        };
        let queued_at_ms = ms(self.queued_at_ms);
        let wait_ms = queued_at_ms.and_then(|q| {
            answered_at_ms
                .or(ms(self.ended_at_ms))
                .map(|t| t.saturating_sub(q))
        });
        CallRecord {
            direction,
            caller: user(self.caller_name, self.caller_display),
            callee,
            queue: self.queue,
            wait_ms,
            answered_device: self.answered_endpoint,
            created_at_ms: ms(Some(self.created_at_ms)).unwrap_or(0),
            ringing_at_ms: ms(self.ringing_at_ms),
            answered_at_ms,
            ended_at_ms: ms(self.ended_at_ms),
            duration_ms: ms(self.duration_ms),
            end_reason,
            ended_by: self.ended_by,
            missed: end_reason.is_some_and(|e| e.is_missed(direction, answered_at_ms.is_some())),
            caller_quality: self.qa_posted_at_ms.map(|_| CallQuality {
                rtt_ms: self.qa_rtt_ms,
                jitter_ms: self.qa_jitter_ms,
                loss_pct: self.qa_loss_pct,
                mos: self.qa_mos,
                send_kbps: self.qa_send_kbps,
                recv_kbps: self.qa_recv_kbps,
            }),
            callee_quality: self.qb_posted_at_ms.map(|_| CallQuality {
                rtt_ms: self.qb_rtt_ms,
                jitter_ms: self.qb_jitter_ms,
                loss_pct: self.qb_loss_pct,
                mos: self.qb_mos,
                send_kbps: self.qb_send_kbps,
                recv_kbps: self.qb_recv_kbps,
            }),
            call_id: self.call_id,
        }
    }
}

fn parse_cursor(c: &str) -> Option<(i64, String)> {
    let (ms, id) = c.split_once('_')?;
    let ms = ms.parse().ok()?;
    valid_call_id(id).then(|| (ms, id.to_string()))
}

fn check_name(what: &str, name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "{what} name must be 1–64 characters of A–Z a–z 0–9 - _ . @"
        )))
    }
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// A new bearer token: 32 random bytes from the OS, base64url without
/// padding (43 characters).
fn new_token() -> String {
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// SHA-256 of a token: what the sessions table stores.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Hashes a password with argon2id (default parameters: 19 MiB, t = 2, p = 1)
/// on the blocking pool.
///
/// # Errors
/// [`Error::Internal`] if hashing fails.
pub async fn hash_password(password: String) -> Result<String, Error> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| Error::Internal(format!("argon2: {e}")))
    })
    .await
    .map_err(|e| Error::Internal(e.to_string()))?
}

/// Verifies a password against a PHC hash on the blocking pool. With `None`
/// it verifies against a fixed dummy hash, so that unknown users take as long
/// as known ones.
pub async fn verify_password(password: String, hash: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        let hash = hash.unwrap_or_else(|| DUMMY_HASH.clone());
        PasswordHash::new(&hash)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

static DUMMY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(b"not a password anyone has", &salt)
        .map(|h| h.to_string())
        .unwrap_or_default()
});

/// One change to a call detail record, applied in order by [`CdrWriter`].
#[derive(Debug, Clone, PartialEq)]
pub enum CdrWrite {
    /// The invite was accepted for routing.
    Created {
        /// Call id.
        call_id: String,
        /// Tenant.
        tenant_id: TenantId,
        /// Caller.
        caller_id: UserId,
        /// Callee.
        callee_id: UserId,
        /// The calling endpoint's id (`hello.device_id`; column
        /// `calls.caller_device`).
        caller_endpoint: String,
        /// ms since the Unix epoch.
        at_ms: u64,
    },
    /// A call to a queue was accepted for routing: it has no callee until
    /// an agent answers ([`CdrWrite::Answered`] with `agent`).
    CreatedQueued {
        /// Call id.
        call_id: String,
        /// Tenant.
        tenant_id: TenantId,
        /// Caller.
        caller_id: UserId,
        /// The calling endpoint's id.
        caller_endpoint: String,
        /// The queue's name (column `calls.queue`).
        queue: String,
        /// ms since the Unix epoch (also `calls.queued_at_ms`).
        at_ms: u64,
    },
    /// A queue call moved to another queue (overflow at the maximum wait);
    /// its wait keeps counting from the first queue.
    Requeued {
        /// Call id.
        call_id: String,
        /// The queue it moved to.
        queue: String,
        /// ms since the Unix epoch.
        at_ms: u64,
    },
    /// A queue offered the call to an agent (a row of `call_offers`).
    Offered {
        /// Call id.
        call_id: String,
        /// The agent rung.
        agent: UserId,
        /// ms since the Unix epoch.
        at_ms: u64,
    },
    /// An offer ended: `outcome` is `answered`, `declined`, `lapsed`,
    /// `answered_elsewhere`, `caller_gone` or `agent_gone`.
    OfferEnded {
        /// Call id.
        call_id: String,
        /// The agent.
        agent: UserId,
        /// How.
        outcome: &'static str,
        /// ms since the Unix epoch.
        at_ms: u64,
    },
    /// First callee endpoint ringing.
    Ringing {
        /// Call id.
        call_id: String,
        /// ms since the Unix epoch.
        at_ms: u64,
    },
    /// Answered on `endpoint`.
    Answered {
        /// Call id.
        call_id: String,
        /// The answering endpoint's id (`hello.device_id`; column
        /// `calls.answered_device`).
        endpoint: String,
        /// For a queue call, the agent who answered: becomes the callee.
        agent: Option<UserId>,
        /// ms since the Unix epoch.
        at_ms: u64,
    },
    /// Ended.
    Ended {
        /// Call id.
        call_id: String,
        /// ms since the Unix epoch.
        at_ms: u64,
        /// Why.
        reason: EndReason,
        /// Party that ended it.
        by: Option<UserId>,
    },
    /// A party's quality summary.
    Quality {
        /// Call id.
        call_id: String,
        /// Who posted it.
        user_id: UserId,
        /// The figures.
        quality: CallQuality,
        /// ms since the Unix epoch.
        at_ms: u64,
    },
}

/// Sending side of the CDR writer: numbered writes, applied in order.
///
/// The numbers come from the caller (the hub numbers its writes as it
/// changes state) and must grow strictly: the writer publishes the highest
/// committed number, and a frame held for number `n` is released once it is
/// published. A number that does not grow is logged and renumbered after the
/// last one, so that it can never release frames early.
#[derive(Debug)]
pub struct CdrQueue {
    tx: mpsc::UnboundedSender<(u64, CdrWrite)>,
    last: u64,
}

impl CdrQueue {
    /// Queues write `seq`; the writer publishes `seq` once it is committed.
    /// Returns the number the write was queued under: `seq`, unless `seq`
    /// did not grow (a bug, logged), then the next free number.
    pub fn push(&mut self, seq: u64, w: CdrWrite) -> u64 {
        let seq = if seq > self.last {
            seq
        } else {
            tracing::error!(
                seq,
                last = self.last,
                "CDR sequence did not grow; renumbered"
            );
            self.last + 1
        };
        self.last = seq;
        if self.tx.send((seq, w)).is_err() {
            tracing::error!("CDR writer is gone; a call record change was dropped");
        }
        seq
    }

    /// Stops the queue: later writes are dropped (and logged), and the writer
    /// ends once it has committed what it already has.
    pub fn close(&mut self) {
        let (tx, _) = mpsc::unbounded_channel();
        self.tx = tx;
    }
}

/// The task that commits CDR writes: drains its queue, applies up to 512
/// writes in one transaction, then publishes the highest committed sequence
/// number on a `watch` channel.
pub struct CdrWriter;

impl CdrWriter {
    /// Starts the writer. Returns the queue, the committed-sequence watch,
    /// and the task, which ends after the queue is dropped and drained.
    pub fn start(
        store: Store,
        on_error: impl Fn() + Send + 'static,
    ) -> (CdrQueue, watch::Receiver<u64>, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::unbounded_channel::<(u64, CdrWrite)>();
        let (committed_tx, committed_rx) = watch::channel(0u64);
        let task = tokio::spawn(async move {
            let mut batch = Vec::with_capacity(512);
            while let Some(first) = rx.recv().await {
                batch.push(first);
                while batch.len() < 512 {
                    match rx.try_recv() {
                        Ok(w) => batch.push(w),
                        Err(_) => break,
                    }
                }
                let last = batch.last().map(|(s, _)| *s).unwrap_or(0);
                if let Err(e) = store.commit_batch(&batch).await {
                    tracing::warn!(error = %e, n = batch.len(), "CDR batch failed; applying one by one");
                    for (seq, w) in &batch {
                        if let Err(e) = store
                            .commit_batch(std::slice::from_ref(&(*seq, w.clone())))
                            .await
                        {
                            on_error();
                            tracing::error!(error = %e, write = ?w, "CDR write failed");
                        }
                    }
                }
                batch.clear();
                committed_tx.send_replace(last);
            }
        });
        (CdrQueue { tx, last: 0 }, committed_rx, task)
    }
}

impl Store {
    async fn commit_batch(&self, batch: &[(u64, CdrWrite)]) -> Result<(), sqlx::Error> {
        on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            for (_, w) in batch {
                apply_cdr!(tx, w, self.node_run.as_deref()).await?;
            }
            tx.commit().await
        })
    }
}

mod queues;
pub use queues::{QueueDay, QueueRow, QueueSpec, Role};
mod webhooks;
pub use webhooks::{Delivery, Webhook, WebhookInfo};
mod guests;
pub use guests::GuestInfo;
