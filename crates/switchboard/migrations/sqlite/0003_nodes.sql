-- The switchboard processes (nodes) sharing this database. Each run of a
-- node registers under a fresh run id with its configured name and writes
-- a heartbeat every few seconds; a call row names the run that routed it.
-- When a run is gone (a newer run of the same name started, or its
-- heartbeat is stale), any node fails that run's unfinished calls, once:
-- the update is conditional on ended_at_ms IS NULL.
CREATE TABLE nodes (
    run_id          TEXT    PRIMARY KEY,
    name            TEXT    NOT NULL,
    started_at_ms   INTEGER NOT NULL,
    heartbeat_at_ms INTEGER NOT NULL
);
CREATE INDEX nodes_name ON nodes(name);

ALTER TABLE calls ADD COLUMN node_run TEXT;
CREATE INDEX calls_node_open ON calls(node_run) WHERE ended_at_ms IS NULL;
