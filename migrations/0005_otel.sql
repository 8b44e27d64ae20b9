-- otel_traces and otel_metrics: ServiceRadar's tables (reference §3.2, §3.3). No-ops where they exist.

CREATE TABLE IF NOT EXISTS @schema@.otel_traces (
  timestamp            TIMESTAMPTZ NOT NULL,
  trace_id             TEXT,
  span_id              TEXT        NOT NULL,
  parent_span_id       TEXT,
  name                 TEXT,
  kind                 INT,
  start_time_unix_nano BIGINT,
  end_time_unix_nano   BIGINT,
  service_name         TEXT,
  service_version      TEXT,
  service_instance     TEXT,
  scope_name           TEXT,
  scope_version        TEXT,
  status_code          INT,
  status_message       TEXT,
  attributes           TEXT,
  resource_attributes  TEXT,
  events               TEXT,
  links                TEXT,
  created_at           TIMESTAMPTZ NOT NULL DEFAULT NOW(),
  PRIMARY KEY (timestamp, trace_id, span_id)
);
CREATE INDEX IF NOT EXISTS idx_otel_traces_timestamp ON @schema@.otel_traces (timestamp DESC);
CREATE INDEX IF NOT EXISTS idx_otel_traces_trace_id ON @schema@.otel_traces (trace_id);
CREATE INDEX IF NOT EXISTS idx_otel_traces_service ON @schema@.otel_traces (service_name, timestamp DESC);

CREATE TABLE IF NOT EXISTS @schema@.otel_metrics (
  timestamp        TIMESTAMPTZ NOT NULL,
  trace_id         TEXT,
  span_id          TEXT,
  service_name     TEXT,
  span_name        TEXT,
  span_kind        TEXT,
  duration_ms      FLOAT8,
  duration_seconds FLOAT8,
  metric_type      TEXT,
  http_method      TEXT,
  http_route       TEXT,
  http_status_code TEXT,
  grpc_service     TEXT,
  grpc_method      TEXT,
  grpc_status_code TEXT,
  is_slow          BOOLEAN,
  component        TEXT,
  level            TEXT,
  unit             TEXT,
  created_at       TIMESTAMPTZ NOT NULL DEFAULT NOW(),
  PRIMARY KEY (timestamp, span_name, service_name, span_id)
);
CREATE INDEX IF NOT EXISTS idx_otel_metrics_timestamp ON @schema@.otel_metrics (timestamp DESC);
CREATE INDEX IF NOT EXISTS idx_otel_metrics_service ON @schema@.otel_metrics (service_name, timestamp DESC);

DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
    PERFORM create_hypertable('@schema@.otel_traces', 'timestamp', if_not_exists => TRUE, migrate_data => TRUE);
    PERFORM create_hypertable('@schema@.otel_metrics', 'timestamp', if_not_exists => TRUE, migrate_data => TRUE);
  END IF;
END
$$;
