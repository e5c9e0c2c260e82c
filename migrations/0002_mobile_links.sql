-- Links texted to mobile operators, so that a link (and the session its claim handed out)
-- still works after a restart. `state` is offered | claimed | taken | expired; `session` is
-- set once claimed.
CREATE TABLE mobile_links (
    token TEXT PRIMARY KEY,
    interaction_id TEXT NOT NULL,
    agent TEXT NOT NULL,
    state TEXT NOT NULL,
    session TEXT,
    sent_at BIGINT NOT NULL
);
CREATE INDEX mobile_links_by_offer ON mobile_links (interaction_id, agent);
CREATE INDEX mobile_links_by_sent_at ON mobile_links (sent_at);
