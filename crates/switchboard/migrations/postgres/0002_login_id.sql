-- A login's stable id: the token rotates on refresh, the login stays, so
-- sockets opened with the old token stay open.
ALTER TABLE sessions ADD COLUMN login_id TEXT;
UPDATE sessions SET login_id = md5(random()::text || token_hash::text) WHERE login_id IS NULL;
CREATE UNIQUE INDEX sessions_login ON sessions(login_id);

-- Logins ended on purpose (logout, user disabled): each node's sweep closes
-- their sockets (4001). Kept a day; an expired token is not an ended login.
CREATE TABLE ended_logins (
    login_id    TEXT    PRIMARY KEY,
    ended_at_ms BIGINT  NOT NULL
);
CREATE INDEX ended_logins_at ON ended_logins(ended_at_ms);
