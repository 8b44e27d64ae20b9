-- ocsf_events: ServiceRadar's table (reference §3.4). A no-op on a database that already has it.

CREATE TABLE IF NOT EXISTS @schema@.ocsf_events (
  id            UUID        NOT NULL,
  time          TIMESTAMPTZ NOT NULL,
  class_uid     INTEGER     NOT NULL,
  category_uid  INTEGER     NOT NULL,
  type_uid      INTEGER     NOT NULL,
  activity_id   INTEGER     NOT NULL,
  activity_name TEXT,
  severity_id   INTEGER,
  severity      TEXT,
  message       TEXT,
  status_id     INTEGER,
  status        TEXT,
  status_code   TEXT,
  status_detail TEXT,
  metadata      JSONB       NOT NULL DEFAULT '{}'::jsonb,
  observables   JSONB       NOT NULL DEFAULT '[]'::jsonb,
  trace_id      TEXT,
  span_id       TEXT,
  actor         JSONB       NOT NULL DEFAULT '{}'::jsonb,
  device        JSONB       NOT NULL DEFAULT '{}'::jsonb,
  src_endpoint  JSONB       NOT NULL DEFAULT '{}'::jsonb,
  dst_endpoint  JSONB       NOT NULL DEFAULT '{}'::jsonb,
  log_name      TEXT,
  log_provider  TEXT,
  log_level     TEXT,
  log_version   TEXT,
  unmapped      JSONB       NOT NULL DEFAULT '{}'::jsonb,
  raw_data      TEXT,
  created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (time, id)
);

CREATE INDEX IF NOT EXISTS idx_ocsf_events_time ON @schema@.ocsf_events (time DESC);
CREATE INDEX IF NOT EXISTS idx_ocsf_events_severity ON @schema@.ocsf_events (severity_id, time DESC);

DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
    PERFORM create_hypertable('@schema@.ocsf_events', 'time', if_not_exists => TRUE, migrate_data => TRUE);
  END IF;
END
$$;
