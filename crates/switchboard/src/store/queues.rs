//! Queues (ACD) and roles in the store: what an administrator sets with the
//! admin CLI or the admin HTTP API (docs/protocol.md §2.11). Routing calls
//! through a queue is [`crate::acd`]'s.

use serde::{Deserialize, Serialize};
use sqlx::FromRow;

use softphone_protocol::UserRef;

use super::{Pool, Store, TenantId, UserId, check_name, is_unique_violation};
use crate::acd::{AtMaxWait, Hours, QueueConfig, Strategy};
use crate::hub::QueueDef;
use crate::{Error, now_ms};

pub use softphone_protocol::Role;

/// A queue's settings, as the admin API takes and returns them (JSON keys as
/// the field names; absent optional keys take the defaults).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSpec {
    /// What callers dial, e.g. `support`: 1–64 of `A–Z a–z 0–9 - _ . @`,
    /// unique in the tenant among queue names, queue numbers and user names.
    pub name: String,
    /// An extension callers may dial instead, e.g. `2001`: 2–15 digits.
    #[serde(default)]
    pub number: Option<String>,
    /// Whom a waiting call is offered to. Default `longest_idle`.
    #[serde(default = "default_strategy")]
    pub strategy: Strategy,
    /// How long one offer rings before it goes to the next agent, s
    /// (5–300). Default 20.
    #[serde(default = "default_ring_secs")]
    pub ring_secs: u32,
    /// How long a caller waits at most, s (10–86 400). Default 300.
    #[serde(default = "default_max_wait_secs")]
    pub max_wait_secs: u32,
    /// Where a caller goes at the maximum wait: another queue of the
    /// tenant, by name. Absent: the call ends `no_answer`.
    #[serde(default)]
    pub overflow_queue: Option<String>,
    /// Told to a caller whose call ends at the maximum wait (≤ 500 bytes).
    #[serde(default)]
    pub max_wait_message: Option<String>,
    /// After-call work time of an agent after each queue call, s (0–3600).
    /// Default 30.
    #[serde(default = "default_wrap_up_secs")]
    pub wrap_up_secs: u32,
    /// Offers in a row an agent lets lapse or declines before being set
    /// away (1–20). Default 3.
    #[serde(default = "default_lapse_limit")]
    pub lapse_limit: u32,
    /// When the queue takes calls: a weekly schedule such as `mon-fri
    /// 09:00-18:00; sat 10:00-14:00` ([`crate::acd::hours`]). Absent: always
    /// open.
    #[serde(default)]
    pub hours: Option<String>,
    /// The IANA time zone of `hours`, e.g. `Europe/Paris`. Absent: UTC.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Told to a caller outside the business hours (≤ 500 bytes).
    #[serde(default)]
    pub closed_message: Option<String>,
    /// Whether customers may call it from the tenant's web widget (guest
    /// tokens are issued only for published queues). Default false.
    #[serde(default)]
    pub published: bool,
}

fn default_strategy() -> Strategy {
    Strategy::LongestIdle
}
fn default_ring_secs() -> u32 {
    20
}
fn default_max_wait_secs() -> u32 {
    300
}
fn default_wrap_up_secs() -> u32 {
    30
}
fn default_lapse_limit() -> u32 {
    3
}

impl QueueSpec {
    /// A queue named `name` with every other setting at its default.
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_string(),
            number: None,
            strategy: default_strategy(),
            ring_secs: default_ring_secs(),
            max_wait_secs: default_max_wait_secs(),
            overflow_queue: None,
            max_wait_message: None,
            wrap_up_secs: default_wrap_up_secs(),
            lapse_limit: default_lapse_limit(),
            hours: None,
            timezone: None,
            closed_message: None,
            published: false,
        }
    }

    /// The routing settings of [`crate::acd`], in ms.
    pub fn routing(&self) -> QueueConfig {
        let ms = |secs: u32| u64::from(secs) * 1000;
        QueueConfig {
            strategy: self.strategy,
            ring_ms: ms(self.ring_secs),
            max_wait_ms: ms(self.max_wait_secs),
            at_max_wait: match &self.overflow_queue {
                Some(q) => AtMaxWait::Overflow(q.clone()),
                None => AtMaxWait::NoAnswer,
            },
            wrap_up_ms: ms(self.wrap_up_secs),
            lapse_limit: self.lapse_limit,
        }
    }

    /// The parsed business hours; `None` when the queue is always open.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bad schedule or zone.
    pub fn business_hours(&self) -> Result<Option<Hours>, Error> {
        match &self.hours {
            None => Ok(None),
            Some(h) => Hours::parse(h, self.timezone.as_deref().unwrap_or("UTC"))
                .map(Some)
                .map_err(|e| Error::Invalid(format!("hours: {e}"))),
        }
    }

    /// Checks every value's range and shape.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the first bad value.
    pub fn validate(&self) -> Result<(), Error> {
        check_name("queue", &self.name)?;
        if let Some(n) = &self.number
            && (!(2..=15).contains(&n.len()) || !n.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(Error::Invalid("number must be 2–15 digits".into()));
        }
        let ranges = [
            ("ring_secs", self.ring_secs, 5, 300),
            ("max_wait_secs", self.max_wait_secs, 10, 86_400),
            ("wrap_up_secs", self.wrap_up_secs, 0, 3_600),
            ("lapse_limit", self.lapse_limit, 1, 20),
        ];
        for (what, v, lo, hi) in ranges {
            if !(lo..=hi).contains(&v) {
                return Err(Error::Invalid(format!("{what} must be {lo}–{hi}")));
            }
        }
        if let Some(o) = &self.overflow_queue {
            check_name("overflow queue", o)?;
            if *o == self.name {
                return Err(Error::Invalid("a queue cannot overflow to itself".into()));
            }
        }
        for (what, m) in [
            ("max_wait_message", &self.max_wait_message),
            ("closed_message", &self.closed_message),
        ] {
            if m.as_ref().is_some_and(|m| m.len() > 500) {
                return Err(Error::Invalid(format!("{what} must be at most 500 bytes")));
            }
        }
        if self.timezone.is_some() && self.hours.is_none() {
            return Err(Error::Invalid("timezone needs hours".into()));
        }
        self.business_hours()?;
        Ok(())
    }
}

/// A queue as stored: its settings and its members' user names (sorted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueRow {
    /// The settings.
    #[serde(flatten)]
    pub spec: QueueSpec,
    /// Member agents, by user name.
    pub members: Vec<String>,
}

/// A queue's day, from the CDR ([`Store::queue_day`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueDay {
    /// The start of the day counted, ms since the Unix epoch (local
    /// midnight in the queue's time zone; UTC without business hours).
    pub since_ms: u64,
    /// Calls that entered the queue.
    pub entered: u64,
    /// Calls an agent answered.
    pub answered: u64,
    /// Callers who hung up while waiting (`abandoned`).
    pub abandoned: u64,
    /// Average wait of answered calls, ms (0 before the first).
    pub average_wait_ms: u64,
    /// Average talk time of answered calls that ended, ms.
    pub average_talk_ms: u64,
    /// Service level: calls answered within 20 s as a share of calls
    /// answered or abandoned, %; `null` before the first.
    pub service_level_pct: Option<f64>,
}

#[derive(FromRow)]
struct DayRow {
    entered: i64,
    answered: i64,
    abandoned: i64,
    wait_total_ms: i64,
    answered_in_time: i64,
    handled: i64,
    talk_total_ms: i64,
}

#[derive(FromRow)]
struct SpecRow {
    id: i64,
    name: String,
    number: Option<String>,
    strategy: String,
    ring_secs: i64,
    max_wait_secs: i64,
    overflow_queue: Option<String>,
    max_wait_message: Option<String>,
    wrap_up_secs: i64,
    lapse_limit: i64,
    hours: Option<String>,
    timezone: Option<String>,
    closed_message: Option<String>,
    published: bool,
}

impl SpecRow {
    fn spec(self) -> QueueSpec {
        let secs = |v: i64| u32::try_from(v).unwrap_or(0);
        QueueSpec {
            name: self.name,
            number: self.number,
            strategy: Strategy::parse(&self.strategy).unwrap_or(Strategy::LongestIdle),
            ring_secs: secs(self.ring_secs),
            max_wait_secs: secs(self.max_wait_secs),
            overflow_queue: self.overflow_queue,
            max_wait_message: self.max_wait_message,
            wrap_up_secs: secs(self.wrap_up_secs),
            lapse_limit: secs(self.lapse_limit),
            hours: self.hours,
            timezone: self.timezone,
            closed_message: self.closed_message,
            published: self.published,
        }
    }
}

const SPEC_COLUMNS: &str = "id, name, number, strategy, ring_secs, max_wait_secs, overflow_queue,
     max_wait_message, wrap_up_secs, lapse_limit, hours, timezone, closed_message, published";

impl Store {
    /// Sets a user's role.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown tenant or user.
    pub async fn set_role(&self, tenant: &str, username: &str, role: Role) -> Result<(), Error> {
        let tenant_id = self.tenant_id(tenant).await?;
        let n = on_pool!(&self.pool, p => sqlx::query(
            "UPDATE users SET role = $1 WHERE tenant_id = $2 AND username = $3",
        )
        .bind(role.as_str())
        .bind(tenant_id)
        .bind(username)
        .execute(p)
        .await?
        .rows_affected());
        if n == 0 {
            return Err(Error::NotFound(format!(
                "no user `{username}` in tenant `{tenant}`"
            )));
        }
        Ok(())
    }

    /// The queues of a tenant, sorted by name.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub async fn queues(&self, tenant_id: TenantId) -> Result<Vec<QueueRow>, Error> {
        let sql = format!("SELECT {SPEC_COLUMNS} FROM queues WHERE tenant_id = $1 ORDER BY name");
        let rows: Vec<SpecRow> = on_pool!(&self.pool, p => sqlx::query_as(&sql)
            .bind(tenant_id)
            .fetch_all(p)
            .await?);
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let members = self.members(r.id).await?;
            out.push(QueueRow {
                spec: r.spec(),
                members,
            });
        }
        Ok(out)
    }

    /// One queue of a tenant, by name.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub async fn queue(&self, tenant_id: TenantId, name: &str) -> Result<Option<QueueRow>, Error> {
        let Some(r) = self.spec_row(tenant_id, name).await? else {
            return Ok(None);
        };
        let members = self.members(r.id).await?;
        Ok(Some(QueueRow {
            spec: r.spec(),
            members,
        }))
    }

    async fn spec_row(&self, tenant_id: TenantId, name: &str) -> Result<Option<SpecRow>, Error> {
        let sql = format!("SELECT {SPEC_COLUMNS} FROM queues WHERE tenant_id = $1 AND name = $2");
        Ok(on_pool!(&self.pool, p => sqlx::query_as(&sql)
            .bind(tenant_id)
            .bind(name)
            .fetch_optional(p)
            .await?))
    }

    /// The queues of a tenant as the hub routes them: settings, business
    /// hours and member user ids (enabled users only).
    ///
    /// # Errors
    /// [`Error::Database`]; [`Error::Invalid`] for stored hours that no
    /// longer parse (the time-zone database changed).
    pub async fn routing_queues(&self, tenant_id: TenantId) -> Result<Vec<QueueDef>, Error> {
        let sql = format!("SELECT {SPEC_COLUMNS} FROM queues WHERE tenant_id = $1 ORDER BY name");
        let rows: Vec<SpecRow> = on_pool!(&self.pool, p => sqlx::query_as(&sql)
            .bind(tenant_id)
            .fetch_all(p)
            .await?);
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let rows: Vec<(UserId, String, String)> = on_pool!(&self.pool, p => sqlx::query_as(
                "SELECT m.user_id, u.username, u.display_name
                 FROM queue_members m JOIN users u ON u.id = m.user_id
                 WHERE m.queue_id = $1 AND NOT u.disabled ORDER BY m.user_id",
            )
            .bind(r.id)
            .fetch_all(p)
            .await?);
            let members: Vec<UserId> = rows.iter().map(|m| m.0).collect();
            let names = rows
                .into_iter()
                .map(|(id, user, display_name)| (id, UserRef { user, display_name }))
                .collect();
            let spec = r.spec();
            out.push(QueueDef {
                published: spec.published,
                config: spec.routing(),
                hours: spec.business_hours()?,
                name: spec.name,
                number: spec.number,
                closed_message: spec.closed_message,
                max_wait_message: spec.max_wait_message,
                members,
                names,
            });
        }
        Ok(out)
    }

    /// A queue's calls that entered since `since_ms` (its "today"), from
    /// the CDR: what every node routed, and what a restart kept.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub async fn queue_day(
        &self,
        tenant_id: TenantId,
        queue: &str,
        since_ms: u64,
    ) -> Result<QueueDay, Error> {
        let row: DayRow = on_pool!(&self.pool, p => sqlx::query_as(
            "SELECT COUNT(*) AS entered,
               CAST(COALESCE(SUM(CASE WHEN answered_at_ms IS NOT NULL THEN 1 ELSE 0 END), 0) AS BIGINT)
                 AS answered,
               CAST(COALESCE(SUM(CASE WHEN end_reason = 'abandoned' THEN 1 ELSE 0 END), 0) AS BIGINT)
                 AS abandoned,
               CAST(COALESCE(SUM(CASE WHEN answered_at_ms IS NOT NULL
                                      THEN answered_at_ms - queued_at_ms ELSE 0 END), 0) AS BIGINT)
                 AS wait_total_ms,
               CAST(COALESCE(SUM(CASE WHEN answered_at_ms IS NOT NULL
                                       AND answered_at_ms - queued_at_ms <= $4
                                      THEN 1 ELSE 0 END), 0) AS BIGINT)
                 AS answered_in_time,
               CAST(COALESCE(SUM(CASE WHEN answered_at_ms IS NOT NULL AND ended_at_ms IS NOT NULL
                                      THEN 1 ELSE 0 END), 0) AS BIGINT)
                 AS handled,
               CAST(COALESCE(SUM(CASE WHEN answered_at_ms IS NOT NULL AND ended_at_ms IS NOT NULL
                                      THEN ended_at_ms - answered_at_ms ELSE 0 END), 0) AS BIGINT)
                 AS talk_total_ms
             FROM calls WHERE tenant_id = $1 AND queue = $2 AND created_at_ms >= $3",
        )
        .bind(tenant_id)
        .bind(queue)
        .bind(since_ms as i64)
        .bind(crate::acd::SERVICE_LEVEL_MS as i64)
        .fetch_one(p)
        .await?);
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        let (answered, handled) = (n(row.answered), n(row.handled));
        Ok(QueueDay {
            since_ms,
            entered: n(row.entered),
            answered,
            abandoned: n(row.abandoned),
            average_wait_ms: n(row.wait_total_ms).checked_div(answered).unwrap_or(0),
            average_talk_ms: n(row.talk_total_ms).checked_div(handled).unwrap_or(0),
            service_level_pct: if answered + n(row.abandoned) == 0 {
                None
            } else {
                Some(n(row.answered_in_time) as f64 * 100.0 / (answered + n(row.abandoned)) as f64)
            },
        })
    }

    async fn members(&self, queue_id: i64) -> Result<Vec<String>, Error> {
        Ok(on_pool!(&self.pool, p => sqlx::query_scalar(
            "SELECT u.username FROM queue_members m JOIN users u ON u.id = m.user_id
             WHERE m.queue_id = $1 ORDER BY u.username",
        )
        .bind(queue_id)
        .fetch_all(p)
        .await?))
    }

    /// Checks that `spec`'s name and number are free among the tenant's user
    /// names and other queues' names and numbers (`except`: the queue being
    /// replaced), and that its overflow queue exists.
    async fn check_dialable(
        &self,
        tenant_id: TenantId,
        spec: &QueueSpec,
        except: Option<i64>,
    ) -> Result<(), Error> {
        let except = except.unwrap_or(-1);
        for dial in std::iter::once(&spec.name).chain(spec.number.as_ref()) {
            let (users, queues): (i64, i64) = on_pool!(&self.pool, p => sqlx::query_as(
                "SELECT
                   (SELECT COUNT(*) FROM users WHERE tenant_id = $1 AND username = $2),
                   (SELECT COUNT(*) FROM queues WHERE tenant_id = $1 AND id <> $3
                      AND (name = $2 OR number = $2))",
            )
            .bind(tenant_id)
            .bind(dial)
            .bind(except)
            .fetch_one(p)
            .await?);
            if users > 0 {
                return Err(Error::Conflict(format!("`{dial}` is a user's name")));
            }
            if queues > 0 {
                return Err(Error::Conflict(format!(
                    "`{dial}` is taken by another queue"
                )));
            }
        }
        // The overflow target exists, and following overflows from it never
        // comes back to this queue (a caller would circle for ever).
        let mut next = spec.overflow_queue.clone();
        let mut hops = 0;
        while let Some(o) = next {
            let Some(row) = self.spec_row(tenant_id, &o).await? else {
                return Err(Error::Invalid(format!("no queue `{o}` to overflow to")));
            };
            hops += 1;
            if row.id == except || o == spec.name || hops > 1_000 {
                return Err(Error::Invalid(format!(
                    "overflowing to `{}` would loop back to `{}`",
                    spec.overflow_queue.as_deref().unwrap_or_default(),
                    spec.name
                )));
            }
            next = row.overflow_queue;
        }
        Ok(())
    }

    /// Creates a queue with no members.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bad value, an unknown overflow queue or an
    /// overflow that loops back,
    /// [`Error::Conflict`] when the name or number is taken (by a queue or
    /// a user of the tenant).
    pub async fn add_queue(&self, tenant_id: TenantId, spec: &QueueSpec) -> Result<(), Error> {
        spec.validate()?;
        self.check_dialable(tenant_id, spec, None).await?;
        let now = now_ms() as i64;
        let r = on_pool!(&self.pool, p => sqlx::query(
            "INSERT INTO queues (tenant_id, name, number, strategy, ring_secs, max_wait_secs,
                 overflow_queue, max_wait_message, wrap_up_secs, lapse_limit,
                 created_at_ms, updated_at_ms, hours, timezone, closed_message, published)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12, $13, $14, $15)",
        )
        .bind(tenant_id)
        .bind(&spec.name)
        .bind(&spec.number)
        .bind(spec.strategy.as_str())
        .bind(i64::from(spec.ring_secs))
        .bind(i64::from(spec.max_wait_secs))
        .bind(&spec.overflow_queue)
        .bind(&spec.max_wait_message)
        .bind(i64::from(spec.wrap_up_secs))
        .bind(i64::from(spec.lapse_limit))
        .bind(now)
        .bind(&spec.hours)
        .bind(&spec.timezone)
        .bind(&spec.closed_message)
        .bind(spec.published)
        .execute(p)
        .await
        .map(|_| ()));
        r.map_err(|e| conflict_or(e, &spec.name))
    }

    /// Replaces the settings of queue `name` (renaming it when `spec.name`
    /// differs); its members stay.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown queue; [`Error::Conflict`] for a
    /// rename while another queue overflows to it; otherwise as
    /// [`Self::add_queue`].
    pub async fn replace_queue(
        &self,
        tenant_id: TenantId,
        name: &str,
        spec: &QueueSpec,
    ) -> Result<(), Error> {
        spec.validate()?;
        let Some(old) = self.spec_row(tenant_id, name).await? else {
            return Err(Error::NotFound(format!("no queue `{name}`")));
        };
        if spec.name != name {
            self.refuse_if_overflow_target(tenant_id, name).await?;
        }
        self.check_dialable(tenant_id, spec, Some(old.id)).await?;
        let r = on_pool!(&self.pool, p => sqlx::query(
            "UPDATE queues SET name = $2, number = $3, strategy = $4, ring_secs = $5,
                 max_wait_secs = $6, overflow_queue = $7, max_wait_message = $8,
                 wrap_up_secs = $9, lapse_limit = $10, updated_at_ms = $11,
                 hours = $12, timezone = $13, closed_message = $14, published = $15
             WHERE id = $1",
        )
        .bind(old.id)
        .bind(&spec.name)
        .bind(&spec.number)
        .bind(spec.strategy.as_str())
        .bind(i64::from(spec.ring_secs))
        .bind(i64::from(spec.max_wait_secs))
        .bind(&spec.overflow_queue)
        .bind(&spec.max_wait_message)
        .bind(i64::from(spec.wrap_up_secs))
        .bind(i64::from(spec.lapse_limit))
        .bind(now_ms() as i64)
        .bind(&spec.hours)
        .bind(&spec.timezone)
        .bind(&spec.closed_message)
        .bind(spec.published)
        .execute(p)
        .await
        .map(|_| ()));
        r.map_err(|e| conflict_or(e, &spec.name))
    }

    /// Deletes queue `name` and its memberships.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown queue, [`Error::Conflict`] while
    /// another queue overflows to it.
    pub async fn remove_queue(&self, tenant_id: TenantId, name: &str) -> Result<(), Error> {
        self.refuse_if_overflow_target(tenant_id, name).await?;
        let n = on_pool!(&self.pool, p => sqlx::query(
            "DELETE FROM queues WHERE tenant_id = $1 AND name = $2",
        )
        .bind(tenant_id)
        .bind(name)
        .execute(p)
        .await?
        .rows_affected());
        if n == 0 {
            return Err(Error::NotFound(format!("no queue `{name}`")));
        }
        Ok(())
    }

    /// Adds (`member` true) or removes an agent of queue `queue`. Adding a
    /// member twice, or removing a non-member, changes nothing.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown queue or user.
    pub async fn set_queue_member(
        &self,
        tenant_id: TenantId,
        queue: &str,
        username: &str,
        member: bool,
    ) -> Result<(), Error> {
        let Some(q) = self.spec_row(tenant_id, queue).await? else {
            return Err(Error::NotFound(format!("no queue `{queue}`")));
        };
        let Some(user) = self.user_id(tenant_id, username).await? else {
            return Err(Error::NotFound(format!("no user `{username}`")));
        };
        on_pool!(&self.pool, p => {
            if member {
                sqlx::query(
                    "INSERT INTO queue_members (queue_id, user_id, added_at_ms) VALUES ($1, $2, $3)
                     ON CONFLICT DO NOTHING",
                )
                .bind(q.id)
                .bind(user)
                .bind(now_ms() as i64)
                .execute(p)
                .await?;
            } else {
                sqlx::query("DELETE FROM queue_members WHERE queue_id = $1 AND user_id = $2")
                    .bind(q.id)
                    .bind(user)
                    .execute(p)
                    .await?;
            }
        });
        Ok(())
    }

    /// [`Error::Conflict`] while another queue overflows to `name` (it may
    /// then be neither removed nor renamed).
    async fn refuse_if_overflow_target(
        &self,
        tenant_id: TenantId,
        name: &str,
    ) -> Result<(), Error> {
        let from: Option<String> = on_pool!(&self.pool, p => sqlx::query_scalar(
            "SELECT name FROM queues WHERE tenant_id = $1 AND overflow_queue = $2 ORDER BY name",
        )
        .bind(tenant_id)
        .bind(name)
        .fetch_optional(p)
        .await?);
        match from {
            Some(from) => Err(Error::Conflict(format!(
                "queue `{from}` overflows to `{name}`; change it first"
            ))),
            None => Ok(()),
        }
    }

    async fn user_id(&self, tenant_id: TenantId, username: &str) -> Result<Option<i64>, Error> {
        Ok(on_pool!(&self.pool, p => sqlx::query_scalar(
            "SELECT id FROM users WHERE tenant_id = $1 AND username = $2",
        )
        .bind(tenant_id)
        .bind(username)
        .fetch_optional(p)
        .await?))
    }
}

/// A unique violation as [`Error::Conflict`] about `name`; other errors as
/// they are.
fn conflict_or(e: sqlx::Error, name: &str) -> Error {
    if is_unique_violation(&e) {
        Error::Conflict(format!("queue name or number of `{name}` is taken"))
    } else {
        e.into()
    }
}
