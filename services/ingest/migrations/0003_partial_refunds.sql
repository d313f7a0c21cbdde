-- When an announced order's partial refund was announced (order.partially_refunded, once).
ALTER TABLE ingest.orders ADD COLUMN partially_refunded_announced_at timestamptz;
