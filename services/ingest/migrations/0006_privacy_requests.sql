-- LGPD requests as ingest received them (issue 12): the record operators list
-- (`nuvem-ledger privacy requests`) and the ingest part of a data request's export. No personal
-- data here: Nuvemshop's customer id and order ids only (the e-mail, phone and document of the
-- request travel on to the services in the privacy.request event and are not kept).
CREATE TABLE ingest.privacy_requests (
    request_id text PRIMARY KEY,              -- ours: the accepted webhook's id
    store_id bigint NOT NULL,
    kind text NOT NULL,                       -- store_redact | customers_redact | data_request
    data_request_id bigint,                   -- Nuvemshop's, for a data request
    customer_id bigint,                       -- Nuvemshop's customer id, when the request names one
    order_ids bigint[] NOT NULL DEFAULT '{}',
    received_at timestamptz NOT NULL,
    export jsonb                              -- ingest's part of a data request's export
);
CREATE INDEX privacy_requests_store ON ingest.privacy_requests (store_id, received_at);
