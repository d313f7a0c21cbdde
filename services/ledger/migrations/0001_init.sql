-- ledger: sales as the ledger knows them (event-carried), receivables, stock, store settings.
CREATE TABLE ledger.sales (
    sale_id text PRIMARY KEY,
    store_id bigint NOT NULL,
    order_id bigint NOT NULL,
    order_number bigint,
    status text NOT NULL,                     -- pending_review | confirmed | cancelled
    seller_id text,
    total numeric(14, 2) NOT NULL,
    sale_date date NOT NULL,
    announcement jsonb NOT NULL,              -- the sale.pending_review it was built from
    confirm_message_id text,
    confirmed_by text,
    confirmed_at timestamptz,
    cancelled_at timestamptz,
    cancel_reason text,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (store_id, order_id)
);

CREATE TABLE ledger.sale_lines (
    sale_id text NOT NULL REFERENCES ledger.sales (sale_id),
    line_number int NOT NULL,
    product_id text NOT NULL,
    description text NOT NULL,
    quantity int NOT NULL,
    PRIMARY KEY (sale_id, line_number)
);

CREATE TABLE ledger.receivables (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    sale_id text NOT NULL REFERENCES ledger.sales (sale_id),
    store_id bigint NOT NULL,
    number int NOT NULL,
    amount numeric(14, 2) NOT NULL,
    due_date date NOT NULL,
    method text NOT NULL,
    status text NOT NULL DEFAULT 'open',      -- open | cancelled | paid
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (sale_id, number)                  -- one receivable per installment, ever
);

-- Stock on hand is the sum of movements. A sale's movements are keyed by
-- (sale, line, direction): posted once, reversed once.
CREATE TABLE ledger.stock_movements (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    store_id bigint NOT NULL,
    product_id text NOT NULL,
    quantity int NOT NULL CHECK (quantity > 0),
    direction text NOT NULL CHECK (direction IN ('in', 'out')),
    reason text NOT NULL,                     -- initial | sale | sale_reversal | adjustment
    sale_id text REFERENCES ledger.sales (sale_id),
    line_number int,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (sale_id, line_number, direction)
);
CREATE INDEX stock_movements_product ON ledger.stock_movements (store_id, product_id);

-- Cancellations that arrived before their sale: applied when the sale is announced.
CREATE TABLE ledger.early_cancellations (
    store_id bigint NOT NULL,
    order_id bigint NOT NULL,
    cancelled_at timestamptz NOT NULL,
    reason text NOT NULL,
    PRIMARY KEY (store_id, order_id)
);

CREATE TABLE ledger.store_settings (
    store_id bigint PRIMARY KEY,
    stock_check boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- What the ledger exposes to readers (the mapper's stock check, the catalog commands).
CREATE VIEW ledger.stock_on_hand AS
SELECT store_id, product_id,
       sum(CASE direction WHEN 'in' THEN quantity ELSE -quantity END)::bigint AS on_hand
FROM ledger.stock_movements
GROUP BY store_id, product_id;

CREATE TABLE ledger.outbox (
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

CREATE TABLE ledger.inbox (
    message_id text PRIMARY KEY,
    processed_at timestamptz NOT NULL DEFAULT now()
);
