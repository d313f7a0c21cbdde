-- OAuth states already spent: the callback records a state's nonce before it exchanges the code,
-- so a state is good for one callback only (a replay or a race answers 400 and changes nothing).
-- A row is pruned a day after its state expired, when the state is refused for its age anyway.
CREATE TABLE ingest.oauth_states (
    nonce text PRIMARY KEY,
    expires_at timestamptz NOT NULL,
    used_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX oauth_states_expiry ON ingest.oauth_states (expires_at);
