-- The sales stream is sharded by store (ledger.sales.<k>). The ERP's messages name only a sale, so
-- every shard receives a copy; a copy about a sale no shard knows is noted here by each shard, and
-- the shard that notes it last refuses it (once). Rows are small and pruned by age.
CREATE TABLE IF NOT EXISTS ledger.unowned_erp_messages (
    message_id text PRIMARY KEY,
    shards integer[] NOT NULL,
    noted_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS unowned_erp_messages_noted_at ON ledger.unowned_erp_messages (noted_at);
