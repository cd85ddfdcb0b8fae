-- Webhooks: each tenant's receivers of call events, and the durable outbox
-- of events to deliver. An event's outbox rows are written in the same
-- transaction as the CDR change it reports, so a crash loses none; a
-- delivery may be repeated (at least once), and receivers de-duplicate on
-- event_id.
CREATE TABLE webhooks (
    id            INTEGER PRIMARY KEY,
    tenant_id     INTEGER NOT NULL REFERENCES tenants(id),
    url           TEXT    NOT NULL,
    secret        TEXT    NOT NULL,          -- HMAC-SHA256 key of the signatures
    created_at_ms INTEGER NOT NULL
);
CREATE INDEX webhooks_tenant ON webhooks(tenant_id);

CREATE TABLE webhook_outbox (
    id                 INTEGER PRIMARY KEY,
    webhook_id         INTEGER NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    event_id           TEXT    NOT NULL,     -- the same for every receiver of one event
    event_type         TEXT    NOT NULL,     -- call.initiated, call.queued, call.offered, …
    call_id            TEXT    NOT NULL,
    agent_id           INTEGER,              -- call.offered: the agent rung
    at_ms              INTEGER NOT NULL,     -- when it happened
    attempts           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_ms INTEGER NOT NULL,     -- also a 30 s lease while a node delivers it
    delivered_at_ms    INTEGER,
    given_up_at_ms     INTEGER,
    last_error         TEXT,
    UNIQUE (webhook_id, event_id)
);
CREATE INDEX webhook_outbox_due ON webhook_outbox(next_attempt_at_ms)
    WHERE delivered_at_ms IS NULL AND given_up_at_ms IS NULL;
