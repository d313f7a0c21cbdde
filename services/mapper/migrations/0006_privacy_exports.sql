-- The mapper's part of each LGPD data request's export (issue 12): everything the mapper held about
-- the customer when the request arrived, as JSON. `nuvem-ledger privacy export` assembles it with
-- the other services' parts under ingest's request record. A later redaction of the customer
-- scrubs it like every other place.
CREATE TABLE mapper.privacy_exports (
    request_id text PRIMARY KEY,
    store_id bigint NOT NULL,
    part jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
