-- ingest: store connections, the orders it has announced, its outbox and inbox.
CREATE TABLE ingest.stores (
    store_id bigint PRIMARY KEY,
    access_token bytea NOT NULL,              -- Fernet-encrypted, never plain
    enabled boolean NOT NULL DEFAULT true,
    disabled_reason text,
    disabled_at timestamptz,
    activated_at timestamptz NOT NULL,
    activated_by text NOT NULL,
    poll_cursor timestamptz,                  -- orders updated before this were all seen
    last_synced_at timestamptz,
    paused_until timestamptz,                 -- 402 (suspended) pauses a store for a while
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- One row per store order ever announced: the (store_id, order_id) key makes the import
-- happen at most once, whatever path (webhook, poll, backfill, redelivery) sees the order.
CREATE TABLE ingest.orders (
    store_id bigint NOT NULL,
    order_id bigint NOT NULL,
    order_number bigint,
    paid_announced_at timestamptz,
    cancelled_announced_at timestamptz,
    invalid_detail text,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, order_id)
);

CREATE TABLE ingest.outbox (
    id bigserial PRIMARY KEY,
    message_id text NOT NULL UNIQUE,
    exchange text NOT NULL,
    routing_key text NOT NULL,
    type text NOT NULL,
    correlation_id text,
    headers jsonb NOT NULL DEFAULT '{}',
    body bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE ingest.inbox (
    message_id text PRIMARY KEY,
    processed_at timestamptz NOT NULL DEFAULT now()
);
