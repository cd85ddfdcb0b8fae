-- Queue calls in the CDR. A call to a queue has no callee until an agent
-- answers, so calls.callee_id becomes nullable; SQLite cannot drop a NOT
-- NULL in place, so calls is rebuilt (and call_quality with it, the one
-- table that references calls, so that no foreign key dangles mid-way).
CREATE TABLE calls_new (
    id              TEXT    PRIMARY KEY,
    tenant_id       INTEGER NOT NULL REFERENCES tenants(id),
    caller_id       INTEGER NOT NULL REFERENCES users(id),
    callee_id       INTEGER REFERENCES users(id),  -- NULL: a queue call no agent answered
    caller_device   TEXT    NOT NULL,
    answered_device TEXT,
    created_at_ms   INTEGER NOT NULL,
    ringing_at_ms   INTEGER,
    answered_at_ms  INTEGER,
    ended_at_ms     INTEGER,
    duration_ms     INTEGER,
    end_reason      TEXT,
    ended_by        INTEGER REFERENCES users(id),
    node_run        TEXT,
    queue           TEXT,     -- the queue (name) that routed the call, the last one after an overflow
    queued_at_ms    INTEGER   -- when it entered its first queue
);
INSERT INTO calls_new (id, tenant_id, caller_id, callee_id, caller_device, answered_device,
                       created_at_ms, ringing_at_ms, answered_at_ms, ended_at_ms, duration_ms,
                       end_reason, ended_by, node_run)
SELECT id, tenant_id, caller_id, callee_id, caller_device, answered_device,
       created_at_ms, ringing_at_ms, answered_at_ms, ended_at_ms, duration_ms,
       end_reason, ended_by, node_run
FROM calls;

CREATE TABLE call_quality_new (
    call_id      TEXT    NOT NULL REFERENCES calls_new(id),
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
INSERT INTO call_quality_new SELECT call_id, user_id, rtt_ms, jitter_ms, loss_pct, mos,
                                    send_kbps, recv_kbps, posted_at_ms FROM call_quality;
DROP TABLE call_quality;
DROP TABLE calls;
ALTER TABLE calls_new RENAME TO calls;
ALTER TABLE call_quality_new RENAME TO call_quality;

CREATE INDEX calls_caller ON calls(caller_id, created_at_ms DESC);
CREATE INDEX calls_callee ON calls(callee_id, created_at_ms DESC);
CREATE INDEX calls_open ON calls(ended_at_ms) WHERE ended_at_ms IS NULL;
CREATE INDEX calls_node_open ON calls(node_run) WHERE ended_at_ms IS NULL;
CREATE INDEX calls_queue ON calls(tenant_id, queue, created_at_ms) WHERE queue IS NOT NULL;

-- Every offer of a queue call to an agent, and how it ended: answered,
-- declined, lapsed (rang out), answered_elsewhere (another agent won),
-- caller_gone, agent_gone (went away, offline or into another call).
CREATE TABLE call_offers (
    call_id        TEXT    NOT NULL REFERENCES calls(id),
    user_id        INTEGER NOT NULL REFERENCES users(id),
    offered_at_ms  INTEGER NOT NULL,
    outcome        TEXT,             -- NULL while ringing
    outcome_at_ms  INTEGER,
    PRIMARY KEY (call_id, user_id, offered_at_ms)
);
