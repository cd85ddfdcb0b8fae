-- Guests (see migrations/sqlite/0008_guests.sql).
ALTER TABLE queues ADD COLUMN published BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE tenants ADD COLUMN widget_origins TEXT;

CREATE TABLE guests (
    user_id       BIGINT  PRIMARY KEY REFERENCES users(id),
    queue         TEXT    NOT NULL,
    email         TEXT,
    topic         TEXT,
    page          TEXT,
    created_at_ms BIGINT  NOT NULL
);
CREATE INDEX guests_email ON guests(email);
