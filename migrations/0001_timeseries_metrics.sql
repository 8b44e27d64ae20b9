-- timeseries_metrics: ServiceRadar's table (reference §3.7) with its series identity (§8.2).
-- @schema@ is replaced by the configured schema, quoted.

CREATE TABLE IF NOT EXISTS @schema@.timeseries_metrics (
  timestamp        TIMESTAMPTZ NOT NULL,
  gateway_id       TEXT        NOT NULL,
  agent_id         TEXT,
  metric_name      TEXT        NOT NULL,
  metric_type      TEXT        NOT NULL,
  device_id        TEXT,
  value            FLOAT8      NOT NULL,
  unit             TEXT,
  tags             JSONB,
  partition        TEXT,
  scale            FLOAT8,
  is_delta         BOOLEAN,
  target_device_ip TEXT,
  if_index         INT,
  metadata         JSONB,
  created_at       TIMESTAMPTZ NOT NULL DEFAULT NOW(),
  series_key       TEXT        NOT NULL,
  PRIMARY KEY (timestamp, gateway_id, series_key)
);

-- ServiceRadar's SQL definition of the series key. The daemon computes the same key in Rust; these functions
-- let SQL (backfills, checks, our tests) compute it too. One change from ServiceRadar: tag keys are ordered
-- with COLLATE "C" (byte order), so the key does not depend on the database's locale.
CREATE OR REPLACE FUNCTION @schema@.timeseries_series_component(p_name text, p_value text)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE
    WHEN p_value IS NULL OR btrim(p_value) = '' THEN NULL
    ELSE octet_length(p_name)::text || ':' || p_name || '=' || octet_length(p_value)::text || ':' || p_value
  END
$$;

CREATE OR REPLACE FUNCTION @schema@.timeseries_series_stable_tags(p_tags jsonb)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT string_agg(
    @schema@.timeseries_series_component('tag:' || entry.key, entry.value),
    '|' ORDER BY entry.key COLLATE "C"
  )
  FROM jsonb_each_text(COALESCE(p_tags, '{}'::jsonb)) AS entry(key, value)
  WHERE COALESCE(btrim(entry.value), '') <> ''
    AND entry.key NOT IN ('available', 'metric', 'packet_loss')
$$;

CREATE OR REPLACE FUNCTION @schema@.build_timeseries_series_key(
  p_metric_type text, p_metric_name text, p_partition text, p_agent_id text, p_device_id text,
  p_target_device_ip text, p_if_index integer, p_tags jsonb
)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT md5(array_to_string(array_remove(ARRAY[
    @schema@.timeseries_series_component('metric_type', p_metric_type),
    @schema@.timeseries_series_component('metric_name', p_metric_name),
    @schema@.timeseries_series_component('partition', p_partition),
    @schema@.timeseries_series_component('agent_id', p_agent_id),
    @schema@.timeseries_series_component('device_id', p_device_id),
    @schema@.timeseries_series_component('target_device_ip', p_target_device_ip),
    @schema@.timeseries_series_component('if_index', CASE WHEN p_if_index IS NULL THEN NULL ELSE p_if_index::text END),
    @schema@.timeseries_series_stable_tags(p_tags)
  ], NULL), '|'))
$$;

-- A hypertable on TimescaleDB; a plain table on plain PostgreSQL.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')
     AND EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') THEN
    BEGIN
      CREATE EXTENSION IF NOT EXISTS timescaledb;
    EXCEPTION WHEN OTHERS THEN
      RAISE NOTICE 'timescaledb is available but could not be created (%); tables stay plain', SQLERRM;
    END;
  END IF;
  IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
    PERFORM create_hypertable('@schema@.timeseries_metrics', 'timestamp', if_not_exists => TRUE, migrate_data => TRUE);
  END IF;
END
$$;
