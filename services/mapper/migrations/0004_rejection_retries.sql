-- When an operator last retried a rejected order, and how often (`orders retry`, the ops API):
-- the order's timeline (`orders trace`) shows the retry between the rejection and what followed.
ALTER TABLE mapper.rejections
    ADD COLUMN retried_at timestamptz,
    ADD COLUMN retries integer NOT NULL DEFAULT 0;
