//! The Elixir importer on the variables ServiceRadar sets: the core's environment in its Go end-to-end harness
//! (`CoreEnvConfig.Env`), a Helm `env:` list and a compose `environment:` block.

use std::path::Path;

use super::*;
use crate::config::{NatsAuth, SslMode};

/// `CoreEnvConfig.Env()` of ServiceRadar's Go harness, as `KEY=VALUE` lines (values of a test deployment).
const HARNESS: &str = "\
CLUSTER_ENABLED=false
CNPG_HOST=cnpg-rw.serviceradar.svc
CNPG_PORT=5432
CNPG_DATABASE=serviceradar
CNPG_USERNAME=serviceradar
CNPG_PASSWORD='p@ss word'
CNPG_SSL_MODE=verify-full
CNPG_CA_FILE=/etc/serviceradar/cnpg/ca.crt
CNPG_TLS_SERVER_NAME=cnpg-rw
EVENT_WRITER_ENABLED=true
EVENT_WRITER_NATS_URL=nats://serviceradar-nats:4222
EVENT_WRITER_NATS_TLS=false
EVENT_WRITER_NATS_CREDS_FILE=/etc/serviceradar/creds/platform.creds
POOL_SIZE=2
";

/// A Helm values `env:` list for core-elx with the EventWriter on, TLS through SPIFFE certificates.
const HELM: &str = r#"
  env:
    - name: EVENT_WRITER_ENABLED
      value: "true"
    - name: EVENT_WRITER_NATS_URL
      value: "nats://serviceradar-nats:4222"
    - name: EVENT_WRITER_NATS_TLS
      value: "true"
    - name: SPIFFE_CERT_DIR
      value: /etc/serviceradar/certs
    - name: EVENT_WRITER_NATS_CREDS_FILE
      value: /etc/serviceradar/creds/platform.creds
    - name: EVENT_WRITER_CONSUMER_NAME
      value: "sr-writer"
    - name: EVENT_WRITER_MAX_ACK_PENDING
      value: "512"
    - name: EVENT_WRITER_FLOW_EXTRA_SUBJECTS
      value: "flows.raw.ipfix, flows.raw.netflow"
    - name: DATABASE_URL
      value: "postgres://serviceradar@cnpg-rw:5432/serviceradar?sslmode=require"
"#;

/// A compose `environment:` block (list and map styles).
const COMPOSE: &str = "
    environment:
      - EVENT_WRITER_ENABLED=true
      - EVENT_WRITER_NATS_URL=nats://nats:4222
      EVENT_WRITER_BATCH_SIZE: 200 # tuned
      EVENT_WRITER_PROCESSOR_CONCURRENCY: \"4\"
      EVENT_WRITER_SOMETHING_NEW: x
";

fn parsed(text: &str) -> (String, crate::config::Config) {
    let out = convert(&parse_env(text)).unwrap();
    let config = crate::parse_config(Path::new("imported.toml"), &out).unwrap_or_else(|e| panic!("{e}\n{out}"));
    (out, config)
}

#[test]
fn the_harness_environment_becomes_a_valid_streams_toml_with_the_elixir_durables() {
    let (text, config) = parsed(HARNESS);
    assert_eq!(config.nats.url, "nats://serviceradar-nats:4222");
    assert_eq!(config.nats.auth, NatsAuth::Creds("/etc/serviceradar/creds/platform.creds".into()));
    assert!(config.nats.tls.is_none());
    assert_eq!(config.database.url, "postgres://serviceradar:p%40ss%20word@cnpg-rw.serviceradar.svc:5432/serviceradar");
    let tls = config.database.tls.as_ref().unwrap();
    assert_eq!(tls.mode, SslMode::VerifyFull);
    assert_eq!(tls.files.ca_file.as_deref(), Some(Path::new("/etc/serviceradar/cnpg/ca.crt")));
    assert_eq!(tls.files.server_name.as_deref(), Some("cnpg-rw"));
    let streams: Vec<(&str, &str, &str, &str, usize)> = config
        .streams
        .iter()
        .map(|s| (s.name.as_str(), s.jetstream.as_str(), s.consumer.as_str(), s.subjects[0].as_str(), s.batch_size))
        .collect();
    assert_eq!(
        streams,
        [
            ("events", "events", "serviceradar-event-writer-events", "events.>", 100),
            ("pdns-ocsf", "events", "serviceradar-event-writer-pdns-ocsf", "pdns.ocsf", 100),
            ("otel-metrics", "events", "serviceradar-event-writer-otel-metrics", "otel.metrics.>", 100),
            ("otel-traces", "events", "serviceradar-event-writer-otel-traces", "otel.traces.>", 100),
            ("logs", "events", "serviceradar-event-writer-logs", "logs.>", 100),
            ("metrics", "metrics", "serviceradar-event-writer-metrics", "metrics.>", 500),
            ("sflow-raw", "flows", "serviceradar-event-writer-sflow-raw", "flows.raw.sflow", 100),
            ("netflow-raw", "flows", "serviceradar-event-writer-netflow-raw", "flows.raw.netflow", 100),
        ]
    );
    let metrics = config.streams.iter().find(|s| s.name == "metrics").unwrap();
    assert_eq!(metrics.batch_timeout, std::time::Duration::from_millis(500));
    assert_eq!((metrics.max_deliver, metrics.max_ack_pending), (5, 500));
    assert!(text.contains("METRICS: max_ack_pending 256 is below its batch size 500"), "{text}");
    assert_eq!(metrics.ack_wait, std::time::Duration::from_secs(120));
    let flows = config.streams.iter().find(|s| s.name == "netflow-raw").unwrap();
    assert_eq!(flows.max_ack_pending, 1024, "the flow pipeline's own bound");
    // Every stream without a processor here is named, with its subject.
    for name in ["FALCO", "TRIVY", "K8S_INVENTORY", "K8S_NODES", "SCAN_RESULTS", "BMP_CAUSAL", "ARANCINI_CAUSAL"] {
        assert!(text.contains(&format!("# - {name} (")), "{name} not noted:\n{text}");
    }
    assert!(text.contains("ANALYTICS_PREDICTIONS (signals.analytics.predictions.> on analytics_predictions)"));
    assert!(text.contains("stop the Elixir writer"), "{text}");
    assert!(!text.contains("is off in this environment"), "{text}");
}

#[test]
fn a_helm_env_list_with_tls_a_consumer_name_and_extra_flow_subjects() {
    let (text, config) = parsed(HELM);
    let tls = config.nats.tls.as_ref().unwrap();
    assert_eq!(tls.ca_file.as_deref(), Some(Path::new("/etc/serviceradar/certs/root.pem")));
    let (cert, key) = tls.client.clone().unwrap();
    assert_eq!(
        (cert.as_path(), key.as_path()),
        (Path::new("/etc/serviceradar/certs/core.pem"), Path::new("/etc/serviceradar/certs/core-key.pem"))
    );
    assert_eq!(tls.server_name.as_deref(), Some("nats.serviceradar"));
    assert_eq!(config.database.url, "postgres://serviceradar@cnpg-rw:5432/serviceradar?sslmode=require");
    assert!(config.streams.iter().all(|s| s.consumer.starts_with("sr-writer-")), "{text}");
    assert!(
        config
            .streams
            .iter()
            .filter(|s| !s.name.ends_with("-raw") && s.name != "flow-ipfix" && s.name != "metrics")
            .all(|s| s.max_ack_pending == 512)
    );
    let ipfix = config.streams.iter().find(|s| s.name == "flow-ipfix").unwrap();
    assert_eq!((ipfix.jetstream.as_str(), ipfix.subjects.as_slice()), ("flows", &["flows.raw.ipfix".to_owned()][..]));
    assert_eq!(config.streams.iter().filter(|s| s.subjects[0] == "flows.raw.netflow").count(), 1, "no second netflow");
}

#[test]
fn compose_styles_notes_and_refusals() {
    let vars = parse_env(COMPOSE);
    assert_eq!(vars.get("EVENT_WRITER_BATCH_SIZE").map(String::as_str), Some("200"), "comment stripped");
    let (text, config) = parsed(COMPOSE);
    assert_eq!(config.nats.url, "nats://nats:4222");
    assert_eq!(config.nats.auth, NatsAuth::None);
    assert!(text.contains("EVENT_WRITER_BATCH_SIZE=200 is the Elixir writer's default"), "{text}");
    assert!(text.contains("EVENT_WRITER_PROCESSOR_CONCURRENCY=\"4\" has no equivalent"), "{text}");
    assert!(text.contains("EVENT_WRITER_SOMETHING_NEW=\"x\" is not known"), "{text}");
    assert!(text.contains("no DATABASE_URL or CNPG_HOST"), "{text}");

    // Off: said, and the streams it would run are still printed.
    let (off, _) = parsed("EVENT_WRITER_NATS_URL=nats://n:4222\n");
    assert!(off.contains("is off in this environment"), "{off}");
    // runtime.exs: on by default when a creds file is set.
    let (on, _) = parsed("EVENT_WRITER_NATS_CREDS_FILE=/c.creds\n");
    assert!(!on.contains("is off in this environment"), "{on}");

    let refuse = |text: &str| convert(&parse_env(text)).unwrap_err();
    assert!(refuse("EVENT_WRITER_FLOW_EXTRA_SUBJECTS=flows.raw.*\n").contains("not a concrete flows.raw.*"));
    assert!(refuse("EVENT_WRITER_FLOW_EXTRA_SUBJECTS=flow.host-slice.a\n").contains("not a concrete"));
    assert!(refuse("EVENT_WRITER_MAX_ACK_PENDING=lots\n").contains("EVENT_WRITER_MAX_ACK_PENDING=\"lots\""));
    assert!(refuse("CNPG_HOST=db\nCNPG_SSL_MODE=sometimes\n").contains("CNPG_SSL_MODE"));
}

#[test]
fn env_lines_export_quotes_and_later_assignments() {
    let vars = parse_env("# c\nexport A_B=\"x y\"\nA_B=z\nlower=1\nC='q # not a comment'\n- name: D\n  value: '1'\n");
    assert_eq!(vars.get("A_B").map(String::as_str), Some("z"));
    assert_eq!(vars.get("C").map(String::as_str), Some("q # not a comment"));
    assert_eq!(vars.get("D").map(String::as_str), Some("1"));
    assert!(!vars.contains_key("lower"));
    assert_eq!(durable_name("serviceradar-event-writer", "OTEL_METRICS"), "serviceradar-event-writer-otel-metrics");
    assert_eq!(durable_name("b", "__"), "b-stream");
}
