-- Where agents' softphones are registered, shared by every node on one database: a phone
-- that registered through one node can be called from another. Each node keeps its own
-- bindings in memory as well (RFC 3261 §10.3 bookkeeping: Call-ID, CSeq); this table is what
-- the other nodes read. `node` is the SIP address of the node that took the REGISTER,
-- `source` where the REGISTER came from (a proxy in front of the nodes, or the phone), the
-- times are unix milliseconds. Expired rows are ignored and swept.
CREATE TABLE registrations (
    aor TEXT NOT NULL,
    contact TEXT NOT NULL,
    node TEXT NOT NULL,
    source TEXT NOT NULL,
    transport TEXT NOT NULL,
    q BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (aor, contact)
);
