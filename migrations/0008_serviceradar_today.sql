-- ServiceRadar as it is today (reference-today.md): the columns, keys and tables its writers gained after
-- May 2026. Every statement is a no-op on a database that already has ServiceRadar's current tables (ADD COLUMN IF
-- NOT EXISTS, CREATE ... IF NOT EXISTS, DROP NOT NULL / DROP DEFAULT on a column that has neither), so the same
-- file brings an empty database, a May-2026 one and today's one to the same columns.
-- The series key's volatile tag list is not here: `migrate` installs timeseries_series_stable_tags from
-- [database.series_key] volatile_tag_keys after the migrations (it is configuration, not schema history).
-- @schema@ is replaced by the configured schema, quoted.

-- timeseries_metrics: the SNMP counter width (AddCounterWidthToTimeseriesMetrics, §3.1).
ALTER TABLE @schema@.timeseries_metrics ADD COLUMN IF NOT EXISTS counter_width INTEGER;

-- otel_metric_points: real OTLP data points (20260611060000 + ExtendOtelMetricPointsIdentity +
-- AddOtelIngestAttribution, §4.1). The key is ServiceRadar's; attributes_hash is recipe v2.
CREATE TABLE IF NOT EXISTS @schema@.otel_metric_points (
  timestamp            TIMESTAMPTZ NOT NULL,
  metric_name          TEXT NOT NULL,
  metric_type          TEXT,
  unit                 TEXT,
  temporality          TEXT,
  is_monotonic         BOOLEAN,
  service_name         TEXT NOT NULL DEFAULT '',
  attributes           TEXT,
  attributes_hash      TEXT NOT NULL,
  value                DOUBLE PRECISION,
  count                BIGINT,
  sum                  DOUBLE PRECISION,
  bucket_counts        TEXT,
  explicit_bounds      TEXT,
  created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (timestamp, metric_name, service_name, attributes_hash)
);
ALTER TABLE @schema@.otel_metric_points
  ADD COLUMN IF NOT EXISTS start_time_unix_nano BIGINT NULL,
  ADD COLUMN IF NOT EXISTS scope_name TEXT NOT NULL DEFAULT '',
  ADD COLUMN IF NOT EXISTS service_instance_id TEXT NOT NULL DEFAULT '';
CREATE INDEX IF NOT EXISTS idx_otel_metric_points_name_time ON @schema@.otel_metric_points (metric_name, timestamp DESC);
CREATE INDEX IF NOT EXISTS idx_otel_metric_points_service_time
  ON @schema@.otel_metric_points (service_name, timestamp DESC);

-- Ingest attribution (AddOtelIngestAttribution, §7): from the Sr-* headers; '' when absent.
ALTER TABLE @schema@.otel_traces
  ADD COLUMN IF NOT EXISTS ingest_identity TEXT NOT NULL DEFAULT '',
  ADD COLUMN IF NOT EXISTS ingest_agent_id TEXT NOT NULL DEFAULT '',
  ADD COLUMN IF NOT EXISTS ingest_partition TEXT NOT NULL DEFAULT '';
ALTER TABLE @schema@.logs
  ADD COLUMN IF NOT EXISTS ingest_identity TEXT NOT NULL DEFAULT '',
  ADD COLUMN IF NOT EXISTS ingest_agent_id TEXT NOT NULL DEFAULT '',
  ADD COLUMN IF NOT EXISTS ingest_partition TEXT NOT NULL DEFAULT '';
ALTER TABLE @schema@.otel_metrics
  ADD COLUMN IF NOT EXISTS ingest_identity TEXT NOT NULL DEFAULT '',
  ADD COLUMN IF NOT EXISTS ingest_agent_id TEXT NOT NULL DEFAULT '',
  ADD COLUMN IF NOT EXISTS ingest_partition TEXT NOT NULL DEFAULT '';
ALTER TABLE @schema@.otel_metric_points
  ADD COLUMN IF NOT EXISTS ingest_identity TEXT NOT NULL DEFAULT '',
  ADD COLUMN IF NOT EXISTS ingest_agent_id TEXT NOT NULL DEFAULT '',
  ADD COLUMN IF NOT EXISTS ingest_partition TEXT NOT NULL DEFAULT '';

-- otel_traces: span fidelity (AddOtelSpanFidelityColumns, §6.1).
ALTER TABLE @schema@.otel_traces
  ADD COLUMN IF NOT EXISTS trace_state TEXT NULL,
  ADD COLUMN IF NOT EXISTS scope_attributes TEXT NULL,
  ADD COLUMN IF NOT EXISTS dropped_attributes_count INTEGER NOT NULL DEFAULT 0,
  ADD COLUMN IF NOT EXISTS dropped_events_count INTEGER NOT NULL DEFAULT 0,
  ADD COLUMN IF NOT EXISTS dropped_links_count INTEGER NOT NULL DEFAULT 0,
  ADD COLUMN IF NOT EXISTS service_namespace TEXT NOT NULL DEFAULT '',
  ADD COLUMN IF NOT EXISTS deployment_environment TEXT NOT NULL DEFAULT '';

-- logs: the sender's address (AddLogsSourceIp, AddLogsSourceIpEffectiveTsIndex, §6.3).
ALTER TABLE @schema@.logs ADD COLUMN IF NOT EXISTS source_ip TEXT;
CREATE INDEX IF NOT EXISTS idx_logs_source_ip_effective_ts
  ON @schema@.logs (source_ip, (COALESCE(observed_timestamp, timestamp)) DESC);

-- ocsf_network_activity: sampling (AddSamplingRateToOcsfNetworkActivity), prefix tags (AddPrefixTagDatasets, filled by
-- ServiceRadar's enrichment, NULL here), directional counters that may be unknown (MakeFlowDirectionCountsNullable),
-- §9.1.
ALTER TABLE @schema@.ocsf_network_activity
  ADD COLUMN IF NOT EXISTS sampling_rate BIGINT NOT NULL DEFAULT 1,
  ADD COLUMN IF NOT EXISTS src_prefix_tags JSONB,
  ADD COLUMN IF NOT EXISTS dst_prefix_tags JSONB,
  ADD COLUMN IF NOT EXISTS src_prefix_tags_source TEXT,
  ADD COLUMN IF NOT EXISTS dst_prefix_tags_source TEXT;
ALTER TABLE @schema@.ocsf_network_activity
  ALTER COLUMN packets_in DROP NOT NULL,
  ALTER COLUMN packets_in DROP DEFAULT,
  ALTER COLUMN packets_out DROP NOT NULL,
  ALTER COLUMN packets_out DROP DEFAULT;
CREATE INDEX IF NOT EXISTS idx_ocsf_network_activity_src_prefix_tags
  ON @schema@.ocsf_network_activity USING gin (src_prefix_tags);
CREATE INDEX IF NOT EXISTS idx_ocsf_network_activity_dst_prefix_tags
  ON @schema@.ocsf_network_activity USING gin (dst_prefix_tags);

-- A hypertable on TimescaleDB (6-hour chunks, ServiceRadar's); a plain table on plain PostgreSQL.
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
    PERFORM create_hypertable('@schema@.otel_metric_points', 'timestamp', chunk_time_interval => INTERVAL '6 hours',
                              if_not_exists => TRUE, migrate_data => TRUE);
  END IF;
END
$$;
