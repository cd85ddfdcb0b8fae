-- Queue calls in the CDR (see migrations/sqlite/0006_queue_calls.sql): a
-- call to a queue has no callee until an agent answers.
ALTER TABLE calls ALTER COLUMN callee_id DROP NOT NULL;
ALTER TABLE calls ADD COLUMN queue TEXT;
ALTER TABLE calls ADD COLUMN queued_at_ms BIGINT;
CREATE INDEX calls_queue ON calls(tenant_id, queue, created_at_ms) WHERE queue IS NOT NULL;

CREATE TABLE call_offers (
    call_id        TEXT    NOT NULL REFERENCES calls(id),
    user_id        BIGINT  NOT NULL REFERENCES users(id),
    offered_at_ms  BIGINT  NOT NULL,
    outcome        TEXT,
    outcome_at_ms  BIGINT,
    PRIMARY KEY (call_id, user_id, offered_at_ms)
);
