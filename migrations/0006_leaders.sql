-- A role that one node of a cluster holds at a time (routing's), by lease: the holder renews
-- it; when its lease is over, the next node to claim it takes it. Unix milliseconds.
CREATE TABLE leaders (
    role TEXT PRIMARY KEY,
    node TEXT NOT NULL,
    lease_until BIGINT NOT NULL
);
