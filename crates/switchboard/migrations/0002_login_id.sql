-- A login's stable id: the token rotates on refresh, the login stays, so
-- sockets opened with the old token stay open; logout or disabling the user
-- deletes the row, and every socket of that login is closed (4001).
ALTER TABLE sessions ADD COLUMN login_id TEXT;
UPDATE sessions SET login_id = lower(hex(randomblob(16))) WHERE login_id IS NULL;
CREATE UNIQUE INDEX sessions_login ON sessions(login_id);
