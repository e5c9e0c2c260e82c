-- Several nodes as one: each node holds a lease it renews, and each open interaction names
-- the node that owns it (NULL on a single node). Unix milliseconds, like every time here.
CREATE TABLE nodes (
    node TEXT PRIMARY KEY,
    http_url TEXT NOT NULL,
    sip_uri TEXT NOT NULL,
    lease_until BIGINT NOT NULL
);

ALTER TABLE interactions ADD COLUMN owner TEXT;

CREATE INDEX interactions_owner ON interactions (owner);
