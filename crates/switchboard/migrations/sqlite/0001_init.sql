-- Accounts, sessions and call detail records of the switchboard.
CREATE TABLE tenants (
    id            INTEGER PRIMARY KEY,
    name          TEXT    NOT NULL UNIQUE,
    created_at_ms INTEGER NOT NULL
);

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    tenant_id     INTEGER NOT NULL REFERENCES tenants(id),
    username      TEXT    NOT NULL,
    display_name  TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,           -- argon2id PHC string
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at_ms INTEGER NOT NULL,
    UNIQUE (tenant_id, username)
);

-- Bearer tokens, stored as SHA-256 of the token; the token itself is never kept.
CREATE TABLE sessions (
    token_hash    BLOB    PRIMARY KEY,
    user_id       INTEGER NOT NULL REFERENCES users(id),
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL
);
CREATE INDEX sessions_user ON sessions(user_id);
CREATE INDEX sessions_expiry ON sessions(expires_at_ms);

-- One row per call (the CDR). ended_at_ms IS NULL while the call is up.
CREATE TABLE calls (
    id              TEXT    PRIMARY KEY,
    tenant_id       INTEGER NOT NULL REFERENCES tenants(id),
    caller_id       INTEGER NOT NULL REFERENCES users(id),
    callee_id       INTEGER NOT NULL REFERENCES users(id),
    caller_device   TEXT    NOT NULL,
    answered_device TEXT,
    created_at_ms   INTEGER NOT NULL,
    ringing_at_ms   INTEGER,
    answered_at_ms  INTEGER,
    ended_at_ms     INTEGER,
    duration_ms     INTEGER,
    end_reason      TEXT,
    ended_by        INTEGER REFERENCES users(id)
);
CREATE INDEX calls_caller ON calls(caller_id, created_at_ms DESC);
CREATE INDEX calls_callee ON calls(callee_id, created_at_ms DESC);
CREATE INDEX calls_open ON calls(ended_at_ms) WHERE ended_at_ms IS NULL;

-- Quality summary each party posted with call.stats (last one wins).
CREATE TABLE call_quality (
    call_id      TEXT    NOT NULL REFERENCES calls(id),
    user_id      INTEGER NOT NULL REFERENCES users(id),
    rtt_ms       REAL,
    jitter_ms    REAL,
    loss_pct     REAL,
    mos          REAL,
    send_kbps    REAL,
    recv_kbps    REAL,
    posted_at_ms INTEGER NOT NULL,
    PRIMARY KEY (call_id, user_id)
);

-- Written every few seconds while the server runs; bounds the end time of
-- calls found unfinished after a crash.
CREATE TABLE server_heartbeat (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    at_ms INTEGER NOT NULL
);
