-- Portable between SQLite and PostgreSQL: only TEXT and BIGINT, no autoincrement.
CREATE TABLE interactions (
    id TEXT PRIMARY KEY,
    service TEXT NOT NULL,
    device TEXT NOT NULL,
    phase TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    closed_at BIGINT,
    last_seq BIGINT NOT NULL
);
CREATE INDEX interactions_by_closed_at ON interactions (closed_at);
CREATE INDEX interactions_by_device ON interactions (device);

-- The transcript: one row per durable event, `body` is the event as JSON.
CREATE TABLE events (
    interaction_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (interaction_id, seq)
);

-- Uploaded files; the bytes live on disk under their SHA-256.
CREATE TABLE files (
    id TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL,
    name TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size BIGINT NOT NULL,
    device TEXT NOT NULL,
    service TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Which chats a file was sent into: only their parties may read it.
CREATE TABLE file_links (
    file_id TEXT NOT NULL,
    interaction_id TEXT NOT NULL,
    PRIMARY KEY (file_id, interaction_id)
);
