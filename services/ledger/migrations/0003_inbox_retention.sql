-- Consumed message ids are forgotten after INBOX_RETENTION_DAYS, in small batches by age.
CREATE INDEX IF NOT EXISTS inbox_processed_at ON ledger.inbox (processed_at);
