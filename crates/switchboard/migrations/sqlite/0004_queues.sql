-- Roles: an `admin` manages the queues of their tenant through the HTTP
-- API; everyone else is an `agent`.
ALTER TABLE users ADD COLUMN role TEXT NOT NULL DEFAULT 'agent';

-- Queues (ACD): a support line callers dial by name (`support`) or number
-- (`2001`), routed to its member agents (docs/protocol.md §2.11).
CREATE TABLE queues (
    id                INTEGER PRIMARY KEY,
    tenant_id         INTEGER NOT NULL REFERENCES tenants(id),
    name              TEXT    NOT NULL,
    number            TEXT,
    strategy          TEXT    NOT NULL,      -- longest_idle | round_robin | ring_all
    ring_secs         INTEGER NOT NULL,      -- one offer rings this long
    max_wait_secs     INTEGER NOT NULL,      -- a caller waits at most this long
    overflow_queue    TEXT,                  -- then moves here (a queue name), or ends no_answer
    max_wait_message  TEXT,
    wrap_up_secs      INTEGER NOT NULL,
    lapse_limit       INTEGER NOT NULL,      -- lapsed/declined offers in a row → away
    created_at_ms     INTEGER NOT NULL,
    updated_at_ms     INTEGER NOT NULL,
    UNIQUE (tenant_id, name),
    UNIQUE (tenant_id, number)
);

CREATE TABLE queue_members (
    queue_id    INTEGER NOT NULL REFERENCES queues(id) ON DELETE CASCADE,
    user_id     INTEGER NOT NULL REFERENCES users(id),
    added_at_ms INTEGER NOT NULL,
    PRIMARY KEY (queue_id, user_id)
);
CREATE INDEX queue_members_user ON queue_members(user_id);
