-- Guests: customers who call a tenant's published queues from a web page
-- (the call widget). A guest is a users row with role 'guest' and no usable
-- password (it never logs in; it gets a short token from
-- POST /v1/guest/{tenant}/token), plus what they typed in the widget.
ALTER TABLE queues ADD COLUMN published INTEGER NOT NULL DEFAULT 0;
-- Origins (space-separated, e.g. `https://shop.example`) whose pages may
-- embed the tenant's widget (frame-ancestors).
ALTER TABLE tenants ADD COLUMN widget_origins TEXT;

CREATE TABLE guests (
    user_id       INTEGER PRIMARY KEY REFERENCES users(id),
    queue         TEXT    NOT NULL,     -- the queue the token was issued for
    email         TEXT,
    topic         TEXT,
    page          TEXT,                 -- the page they called from
    created_at_ms INTEGER NOT NULL
);
CREATE INDEX guests_email ON guests(email);
