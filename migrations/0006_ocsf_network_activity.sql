-- ocsf_network_activity: ServiceRadar's table (reference §3.5) with its later columns. No-ops where it exists.
-- It has no key, so flows are made idempotent by the ledger below.

CREATE TABLE IF NOT EXISTS @schema@.ocsf_network_activity (
  time                 TIMESTAMPTZ       NOT NULL,
  class_uid            INTEGER           NOT NULL DEFAULT 4001,
  category_uid         INTEGER           NOT NULL DEFAULT 4,
  activity_id          INTEGER           NOT NULL DEFAULT 6,
  type_uid             INTEGER           NOT NULL DEFAULT 400106,
  severity_id          INTEGER           NOT NULL DEFAULT 1,
  start_time           TIMESTAMPTZ,
  end_time             TIMESTAMPTZ,
  src_endpoint_ip      TEXT,
  src_endpoint_port    INTEGER,
  src_as_number        INTEGER,
  dst_endpoint_ip      TEXT,
  dst_endpoint_port    INTEGER,
  dst_as_number        INTEGER,
  protocol_num         INTEGER,
  protocol_name        TEXT,
  tcp_flags            INTEGER,
  bytes_total          BIGINT,
  packets_total        BIGINT,
  bytes_in             BIGINT,
  bytes_out            BIGINT,
  sampler_address      TEXT,
  ocsf_payload         JSONB             NOT NULL,
  partition            TEXT              DEFAULT 'default',
  created_at           TIMESTAMPTZ       NOT NULL DEFAULT now()
);

ALTER TABLE @schema@.ocsf_network_activity
  ADD COLUMN IF NOT EXISTS protocol_source TEXT,
  ADD COLUMN IF NOT EXISTS tcp_flags_labels TEXT[],
  ADD COLUMN IF NOT EXISTS tcp_flags_source TEXT,
  ADD COLUMN IF NOT EXISTS dst_service_label TEXT,
  ADD COLUMN IF NOT EXISTS dst_service_source TEXT,
  ADD COLUMN IF NOT EXISTS direction_label TEXT,
  ADD COLUMN IF NOT EXISTS direction_source TEXT,
  ADD COLUMN IF NOT EXISTS src_hosting_provider TEXT,
  ADD COLUMN IF NOT EXISTS src_hosting_provider_source TEXT,
  ADD COLUMN IF NOT EXISTS dst_hosting_provider TEXT,
  ADD COLUMN IF NOT EXISTS dst_hosting_provider_source TEXT,
  ADD COLUMN IF NOT EXISTS src_mac TEXT,
  ADD COLUMN IF NOT EXISTS src_mac_vendor TEXT,
  ADD COLUMN IF NOT EXISTS src_mac_vendor_source TEXT,
  ADD COLUMN IF NOT EXISTS dst_mac TEXT,
  ADD COLUMN IF NOT EXISTS dst_mac_vendor TEXT,
  ADD COLUMN IF NOT EXISTS dst_mac_vendor_source TEXT,
  ADD COLUMN IF NOT EXISTS packets_in BIGINT NOT NULL DEFAULT 0,
  ADD COLUMN IF NOT EXISTS packets_out BIGINT NOT NULL DEFAULT 0;

CREATE INDEX IF NOT EXISTS idx_ocsf_network_activity_time ON @schema@.ocsf_network_activity (time DESC);

-- Committed messages of tables without a key of their own: written in the same transaction as the rows, so a
-- redelivered message (same JetStream stream and sequence) writes nothing. Pruned by age by the daemon.
CREATE TABLE IF NOT EXISTS @schema@.db_event_writer_ledger (
  jetstream    TEXT        NOT NULL,
  table_name   TEXT        NOT NULL,
  sequence     BIGINT      NOT NULL,
  committed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (jetstream, table_name, sequence)
);
CREATE INDEX IF NOT EXISTS idx_db_event_writer_ledger_committed ON @schema@.db_event_writer_ledger (committed_at);

DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
    PERFORM create_hypertable('@schema@.ocsf_network_activity', 'time', if_not_exists => TRUE, migrate_data => TRUE);
  END IF;
END
$$;
