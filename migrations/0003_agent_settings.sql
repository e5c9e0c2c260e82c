-- Settings agents change themselves at the desktop (their mobile number and when they take
-- chats by SMS). A row overrides the agent's `[[agents]]` entry of the configuration, which
-- stays the default for agents without one. `mobile_schedule` is the schedule as JSON.
CREATE TABLE agent_settings (
    agent TEXT PRIMARY KEY,
    mobile TEXT,
    mobile_mode TEXT NOT NULL,
    mobile_schedule TEXT,
    updated_at BIGINT NOT NULL
);
