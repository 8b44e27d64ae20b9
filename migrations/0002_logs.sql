-- logs: ServiceRadar's table (reference §3.1) with its later columns and indexes. On a database that already
-- holds ServiceRadar's table, every statement here is a no-op.

CREATE TABLE IF NOT EXISTS @schema@.logs (
  timestamp           TIMESTAMPTZ NOT NULL,
  id                  UUID        NOT NULL DEFAULT gen_random_uuid(),
  trace_id            TEXT,
  span_id             TEXT,
  severity_text       TEXT,
  severity_number     INT,
  body                TEXT,
  service_name        TEXT,
  service_version     TEXT,
  service_instance    TEXT,
  scope_name          TEXT,
  scope_version       TEXT,
  attributes          TEXT,
  resource_attributes TEXT,
  created_at          TIMESTAMPTZ NOT NULL DEFAULT NOW(),
  PRIMARY KEY (timestamp, id)
);

ALTER TABLE @schema@.logs
  ADD COLUMN IF NOT EXISTS observed_timestamp TIMESTAMPTZ,
  ADD COLUMN IF NOT EXISTS trace_flags INT,
  ADD COLUMN IF NOT EXISTS event_name TEXT,
  ADD COLUMN IF NOT EXISTS scope_attributes TEXT,
  ADD COLUMN IF NOT EXISTS source TEXT;

CREATE INDEX IF NOT EXISTS idx_logs_timestamp ON @schema@.logs (timestamp DESC);
CREATE INDEX IF NOT EXISTS idx_logs_service ON @schema@.logs (service_name, timestamp DESC);
CREATE INDEX IF NOT EXISTS idx_logs_severity ON @schema@.logs (severity_text, timestamp DESC);
CREATE INDEX IF NOT EXISTS idx_logs_trace_id ON @schema@.logs (trace_id) WHERE trace_id IS NOT NULL AND trace_id <> '';
CREATE INDEX IF NOT EXISTS idx_logs_source ON @schema@.logs (source, timestamp DESC);

DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
    PERFORM create_hypertable('@schema@.logs', 'timestamp', if_not_exists => TRUE, migrate_data => TRUE);
  END IF;
END
$$;
