-- sweep_results: this project's own table for network sweep results (reference §8.4). ServiceRadar's
-- sweep_host_results has foreign keys into its job tables, so sweeps get a table of their own: one row per
-- (time, host_ip, execution_id, agent_id), so a redelivered result is not a second row.

CREATE TABLE IF NOT EXISTS @schema@.sweep_results (
  time                  TIMESTAMPTZ NOT NULL,
  host_ip               TEXT        NOT NULL,
  gateway_id            TEXT,
  agent_id              TEXT        NOT NULL DEFAULT '',
  partition             TEXT,
  network_cidr          TEXT,
  hostname              TEXT,
  mac                   TEXT,
  icmp_available        BOOLEAN,
  icmp_response_time_ns BIGINT,
  tcp_ports_scanned     INTEGER[]   NOT NULL DEFAULT '{}',
  tcp_ports_open        INTEGER[]   NOT NULL DEFAULT '{}',
  execution_id          TEXT        NOT NULL DEFAULT '',
  sweep_group_id        TEXT,
  config_hash           TEXT,
  raw                   JSONB       NOT NULL,
  created_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (time, host_ip, execution_id, agent_id)
);

CREATE INDEX IF NOT EXISTS idx_sweep_results_host ON @schema@.sweep_results (host_ip, time DESC);

DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
    PERFORM create_hypertable('@schema@.sweep_results', 'time', if_not_exists => TRUE, migrate_data => TRUE);
  END IF;
END
$$;
