-- mapper: the ERP's customers and products of each store, pending sales, rejections.
CREATE TABLE mapper.customers (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    store_id bigint NOT NULL,
    name text NOT NULL,
    name_key text NOT NULL,                   -- trimmed, inner spaces collapsed
    document text,                            -- normalised CPF/CNPJ, or none
    document_key text NOT NULL DEFAULT '',    -- document or '' (unique keys ignore NULLs)
    email text,
    mobile_phone text,
    business_phone text,
    created_at timestamptz NOT NULL DEFAULT now(),
    -- SPEC §3: a customer is reused only when name AND document match; the key makes
    -- concurrent imports of one new customer create exactly one row.
    UNIQUE (store_id, name_key, document_key)
);

CREATE TABLE mapper.products (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    store_id bigint NOT NULL,
    description text NOT NULL,
    sku text,
    price numeric(14, 2) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (store_id, description)
);

CREATE TABLE mapper.sales (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    store_id bigint NOT NULL,
    order_id bigint NOT NULL,
    order_number bigint,
    customer_id uuid NOT NULL REFERENCES mapper.customers (id),
    seller_id text,
    status text NOT NULL DEFAULT 'pending_review',
    subtotal numeric(14, 2) NOT NULL,
    shipping numeric(14, 2) NOT NULL,
    discount numeric(14, 2) NOT NULL,
    total numeric(14, 2) NOT NULL,
    sale_date date NOT NULL,
    warnings jsonb NOT NULL DEFAULT '[]',
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (store_id, order_id)
);

CREATE TABLE mapper.sale_items (
    sale_id uuid NOT NULL REFERENCES mapper.sales (id),
    line_number int NOT NULL,
    product_id uuid NOT NULL REFERENCES mapper.products (id),
    description text NOT NULL,
    quantity int NOT NULL,
    unit_price numeric(14, 2) NOT NULL,
    total numeric(14, 2) NOT NULL,
    PRIMARY KEY (sale_id, line_number)
);

-- Orders that could not become sales, with the reason and the original message for a retry.
CREATE TABLE mapper.rejections (
    store_id bigint NOT NULL,
    order_id bigint NOT NULL,
    reason text NOT NULL,
    detail text NOT NULL,
    items jsonb,
    message_id text NOT NULL,
    routing_key text NOT NULL,
    body bytea NOT NULL,
    attempts int NOT NULL DEFAULT 1,
    rejected_at timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz,
    PRIMARY KEY (store_id, order_id)
);

CREATE TABLE mapper.outbox (
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

CREATE TABLE mapper.inbox (
    message_id text PRIMARY KEY,
    processed_at timestamptz NOT NULL DEFAULT now()
);
