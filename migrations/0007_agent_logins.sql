-- Agents' login tokens, so that a token works on every node of a cluster and outlives a
-- restart: the SHA-256 of the token (never the token itself), whose it is, and until when
-- (Unix milliseconds). Logout deletes an agent's rows.
CREATE TABLE agent_logins (
    token_sha256 TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX agent_logins_by_agent ON agent_logins (agent);
