//! streams.toml parsing: the shipped file, defaults, every kind of mistake named by file, line and key.

use std::path::Path;
use std::time::Duration;

use super::*;

const MINIMAL: &str = r#"
[nats]
url = "nats://127.0.0.1:4222"

[database]
url = "postgres://postgres@127.0.0.1:5432/serviceradar"

[[stream]]
name = "telemetry"
jetstream = "events"
consumer = "db-event-writer-telemetry"
subjects = ["telemetry.>"]
processor = "telemetry"
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    // The processors' own defaults, as the daemon passes them.
    crate::parse_config(Path::new("streams.toml"), text)
}

fn error_text(text: &str) -> String {
    parse(text).expect_err("config should be rejected").to_string()
}

#[test]
fn shipped_streams_toml_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("streams.toml");
    let text = std::fs::read_to_string(&path).expect("streams.toml ships with the crate");
    let config = crate::parse_config(&path, &text).expect("shipped streams.toml is valid");
    assert!(!config.streams.is_empty());
    assert_eq!(config.database.schema, "platform");
}

#[test]
fn defaults_come_from_the_processor() {
    let config = parse(MINIMAL).unwrap();
    let s = &config.streams[0];
    assert_eq!(s.batch_size, 5000);
    assert_eq!(s.batch_timeout, Duration::from_secs(1));
    assert_eq!(s.ack_wait, Duration::from_secs(30));
    assert_eq!(s.max_ack_pending, 25_000);
    assert_eq!(s.max_deliver, 5);
    assert_eq!(config.dlq.subject_for("telemetry"), "dlq.telemetry");
    assert_eq!(config.dlq.stream, "DLQ");
    assert_eq!(config.breaker.failures, 3);
    assert_eq!(config.database.pool_size, 8);
    assert_eq!(config.database.retention["timeseries_metrics"], Duration::from_secs(7 * 86_400));
    assert_eq!(config.database.retention["otel_traces"], Duration::from_secs(3 * 86_400));
    assert_eq!(config.database.retention["ocsf_network_activity"], Duration::from_secs(90 * 86_400));
}

#[test]
fn http_and_log_sections_are_validated() {
    let config = parse(MINIMAL).unwrap();
    assert_eq!(config.http.listen, None, "no listener unless asked for");
    assert_eq!(config.log, LogConfig::default());
    let ok = format!("[http]\nlisten = \"127.0.0.1:9464\"\n[log]\nformat = \"json\"\nlevel = \"debug\"\n{MINIMAL}");
    let config = parse(&ok).unwrap();
    assert_eq!(config.http.listen, Some("127.0.0.1:9464".parse().unwrap()));
    assert_eq!(config.log.format, LogFormat::Json);
    let e = error_text(&format!("[http]\nlisten = \"localhost\"\n{MINIMAL}"));
    assert!(e.starts_with("streams.toml:2: http.listen: \"localhost\" is not host:port"), "{e}");
    let e = error_text(&format!("[log]\nformat = \"xml\"\n{MINIMAL}"));
    assert!(e.starts_with("streams.toml:2: log.format: \"xml\": expected"), "{e}");
    let e = error_text(&format!("[log]\nlevel = \"info,=[\"\n{MINIMAL}"));
    assert!(e.starts_with("streams.toml:2: log.level: not a log filter"), "{e}");
}

#[test]
fn nats_credentials_are_checked_and_never_printed() {
    let with = |extra: &str| {
        MINIMAL.replacen("url = \"nats://127.0.0.1:4222\"", &format!("url = \"nats://127.0.0.1:4222\"\n{extra}"), 1)
    };
    let config = parse(&with("user = \"w\"\npassword = \"hunter2\"")).unwrap();
    assert_eq!(
        config.nats.auth,
        NatsAuth::UserPassword { user: "w".into(), password: Secret::Value("hunter2".into()) }
    );
    assert!(!format!("{config:?}").contains("hunter2"), "Debug shows a password");
    let e = error_text(&with("user = \"w\""));
    assert!(e.starts_with("streams.toml:4: nats.user: needs password"), "{e}");
    let e = error_text(&with("user = \"w\"\npassword = \"a\"\npassword_file = \"/p\""));
    assert!(e.starts_with("streams.toml:6: nats.password_file: set password or password_file"), "{e}");
    let e = error_text(&with("creds_file = \"/c\"\ntoken = \"t\""));
    assert!(e.starts_with("streams.toml:5: nats.token: choose one way"), "{e}");
    let e = error_text(&with("[nats.tls]\ncert_file = \"/c\""));
    assert!(e.starts_with("streams.toml:5: nats.tls.cert_file: needs key_file"), "{e}");
    let config = parse(&with("token_file = \"/run/secrets/t\"\n[nats.tls]\nca_file = \"/ca.pem\"")).unwrap();
    assert_eq!(config.nats.auth, NatsAuth::Token(Secret::File("/run/secrets/t".into())));
    assert_eq!(config.nats.tls, Some(TlsFiles { ca_file: Some("/ca.pem".into()), client: None, server_name: None }));
}

#[test]
fn database_tls_defaults_to_verify_full_and_rejects_nonsense() {
    let with =
        |extra: &str| MINIMAL.replacen("/serviceradar\"\n", &format!("/serviceradar\"\n[database.tls]\n{extra}"), 1);
    let config = parse(&with("ca_file = \"/ca.pem\"\nserver_name = \"db.internal\"\n")).unwrap();
    let files = TlsFiles { ca_file: Some("/ca.pem".into()), client: None, server_name: Some("db.internal".into()) };
    assert_eq!(config.database.tls, Some(DatabaseTls { mode: SslMode::VerifyFull, files }));
    let config = parse(&with("mode = \"require\"\n")).unwrap();
    assert_eq!(config.database.tls.unwrap().mode, SslMode::Require);
    let e = error_text(&with("mode = \"verify-everything\"\n"));
    assert!(e.starts_with("streams.toml:8: database.tls.mode: unknown sslmode \"verify-everything\""), "{e}");
    let e = error_text(&with("mode = \"disable\"\nca_file = \"/ca.pem\"\n"));
    assert!(e.contains("database.tls.mode: is disable, yet files"), "{e}");
    let e = error_text(&with("key_file = \"/k.pem\"\n"));
    assert!(e.starts_with("streams.toml:8: database.tls.key_file: needs cert_file"), "{e}");
    let e = error_text(&with("server_name = \"not a name\"\n"));
    assert!(e.starts_with("streams.toml:8: database.tls.server_name:"), "{e}");
    let e = error_text(&with("sslmode = \"require\"\n"));
    assert!(e.starts_with("streams.toml:8: database.tls.sslmode: unknown field"), "{e}");
    assert_eq!(parse(MINIMAL).unwrap().database.tls, None);
}

#[test]
fn otel_endpoint_gets_its_default_port_and_path_and_headers_stay_secret() {
    let with = |extra: &str| format!("[otel]\n{extra}\n{MINIMAL}");
    let config =
        parse(&with("endpoint = \"http://collector\"\nheaders = { authorization = \"Bearer s3cret\" }")).unwrap();
    let otel = config.otel.unwrap();
    assert_eq!(otel.endpoint.to_string(), "http://collector:4318/v1/traces");
    assert_eq!((otel.protocol, otel.service_name.as_str()), (OtelProtocol::HttpProtobuf, "db-event-writer"));
    assert!(!format!("{otel:?}").contains("s3cret"), "{otel:?}");
    let otel = parse(&with("endpoint = \"https://c.example:443/otlp/v1/traces\"")).unwrap().otel.unwrap();
    assert_eq!(otel.endpoint.to_string(), "https://c.example:443/otlp/v1/traces");
    let otel = parse(&with("endpoint = \"http://[::1]\"\nprotocol = \"grpc\"")).unwrap().otel.unwrap();
    assert_eq!(
        otel.endpoint.to_string(),
        "http://[::1]:4317/opentelemetry.proto.collector.trace.v1.TraceService/Export"
    );
    for (extra, expect) in [
        ("endpoint = \"collector:4318\"", "streams.toml:2: otel.endpoint: \"collector:4318\": must start with http"),
        ("endpoint = \"http://c\"\nprotocol = \"thrift\"", "streams.toml:3: otel.protocol: \"thrift\": expected"),
        (
            "endpoint = \"http://c/x\"\nprotocol = \"grpc\"",
            "streams.toml:2: otel.endpoint: \"http://c/x\": a gRPC endpoint",
        ),
        (
            "endpoint = \"http://c\"\nheaders = { \"bad name\" = \"x\" }",
            "streams.toml:3: otel.headers.bad name: not an HTTP",
        ),
        ("endpoint = \"http://c\"\ntimeout = \"0s\"", "streams.toml:3: otel.timeout: must be greater than zero"),
        ("endpoint = \"http://c\"\nsampling = 1", "streams.toml:3: otel.sampling: unknown field"),
    ] {
        let e = error_text(&with(extra));
        assert!(e.starts_with(expect), "{e}");
    }
    assert_eq!(parse(MINIMAL).unwrap().otel, None);
}

#[test]
fn ingest_section_and_stream_validate() {
    let config = parse(&format!("[ingest]\nlisten = \"127.0.0.1:8080\"\n{MINIMAL}validate = true\n")).unwrap();
    let ingest = config.ingest.unwrap();
    assert_eq!((ingest.max_body, ingest.max_lag), (IngestConfig::DEFAULT_MAX_BODY, 0));
    assert!(config.streams[0].validate);
    assert!(!parse(MINIMAL).unwrap().streams[0].validate);
    let e = error_text(&format!("[ingest]\nlisten = \"8080\"\n{MINIMAL}"));
    assert!(e.starts_with("streams.toml:2: ingest.listen: \"8080\" is not host:port"), "{e}");
    let e = error_text(&format!("[ingest]\nlisten = \"127.0.0.1:1\"\nmax_body = 0\n{MINIMAL}"));
    assert!(e.starts_with("streams.toml:3: ingest.max_body: 0 is out of range"), "{e}");
    let e = error_text(&format!("{MINIMAL}validate = \"yes\"\n"));
    assert!(e.contains("validate"), "{e}");
    // Waiting: defaults inside the request timeout, and a wait the request timeout would cut off is refused.
    assert_eq!(
        (ingest.wait_timeout, ingest.max_wait, ingest.max_waiters),
        (Duration::from_secs(5), Duration::from_secs(20), 1000)
    );
    let short = parse(&format!("[ingest]\nlisten = \"127.0.0.1:1\"\nrequest_timeout = \"3s\"\n{MINIMAL}")).unwrap();
    let short = short.ingest.unwrap();
    assert_eq!((short.max_wait, short.wait_timeout), (Duration::from_secs(2), Duration::from_secs(2)));
    let e = error_text(&format!("[ingest]\nlisten = \"127.0.0.1:1\"\nmax_wait = \"30s\"\n{MINIMAL}"));
    assert!(e.starts_with("streams.toml:3: ingest.max_wait: 30s is not below ingest.request_timeout (30s)"), "{e}");
    let e = error_text(&format!("[ingest]\nlisten = \"127.0.0.1:1\"\nwait_timeout = \"21s\"\n{MINIMAL}"));
    assert!(e.starts_with("streams.toml:3: ingest.wait_timeout: 21s is over ingest.max_wait (20s)"), "{e}");
}

#[test]
fn environment_variables_are_interpolated_outside_comments() {
    let env = |name: &str| match name {
        "NATS_HOST" => Some("nats.internal".to_owned()),
        "EMPTY" => Some(String::new()),
        _ => None,
    };
    let text = "# ${IGNORED} in a comment\nurl = \"nats://${NATS_HOST}:${NATS_PORT:-4222}\"\nx = \"${EMPTY:-d}\"\n";
    assert_eq!(
        interpolate(text, env).unwrap(),
        "# ${IGNORED} in a comment\nurl = \"nats://nats.internal:4222\"\nx = \"d\"\n"
    );
    let (line, key, message) = interpolate("a = 1\nb = \"${MISSING}\"\n", env).unwrap_err();
    assert_eq!((line, key.as_str()), (2, "${MISSING}"));
    assert!(message.contains("MISSING is not set"), "{message}");
    assert_eq!(interpolate("c = \"${A B}\"", env).unwrap_err().2, "not a variable name");
    assert_eq!(interpolate("c = \"${OPEN", env).unwrap_err().2, "unclosed ${");
}

#[test]
fn large_batches_raise_the_default_max_ack_pending() {
    let config = parse(&format!("{MINIMAL}batch_size = 5000\n")).unwrap();
    assert_eq!(config.streams[0].max_ack_pending, 5000 * 5);
}

#[test]
fn misspelled_key_names_file_line_and_key() {
    let text = MINIMAL.replace("processor = \"telemetry\"", "processor = \"telemetry\"\nbatch_sise = 10");
    let e = error_text(&text);
    assert!(e.starts_with("streams.toml:14: "), "{e}");
    assert!(e.contains("batch_sise"), "{e}");
    assert!(e.contains("stream[0]"), "{e}");
}

#[test]
fn wrong_type_names_the_key() {
    let e = error_text(&format!("{MINIMAL}batch_size = \"lots\"\n"));
    assert!(e.starts_with("streams.toml:14: stream[0].batch_size: "), "{e}");
}

#[test]
fn unknown_processor_is_rejected() {
    let e = error_text(&MINIMAL.replace("processor = \"telemetry\"", "processor = \"telemetri\""));
    assert!(e.starts_with("streams.toml:13: stream[0].processor: "), "{e}");
    assert!(e.contains("telemetri"), "{e}");
}

#[test]
fn duplicate_stream_name_is_rejected() {
    let second = MINIMAL.split("[[stream]]").nth(1).unwrap().replace("db-event-writer-telemetry", "other");
    let e = error_text(&format!("{MINIMAL}\n[[stream]]{second}"));
    assert!(e.contains("stream[1].name: duplicate stream name \"telemetry\""), "{e}");
    assert!(e.starts_with("streams.toml:16:"), "{e}");
}

#[test]
fn duplicate_consumer_is_rejected() {
    let second = MINIMAL.split("[[stream]]").nth(1).unwrap().replace("name = \"telemetry\"", "name = \"t2\"");
    let e = error_text(&format!("{MINIMAL}\n[[stream]]{second}"));
    assert!(e.contains("stream[1].consumer: duplicate consumer"), "{e}");
}

#[test]
fn empty_subjects_are_rejected() {
    let e = error_text(&MINIMAL.replace("[\"telemetry.>\"]", "[]"));
    assert!(e.starts_with("streams.toml:12: stream[0].subjects: must list"), "{e}");
}

#[test]
fn bad_subjects_are_rejected() {
    for bad in ["telemetry..x", "a.>.b", "a.b*", "with space"] {
        let e = error_text(&MINIMAL.replace("telemetry.>", bad));
        assert!(e.contains("stream[0].subjects"), "{bad}: {e}");
    }
}

#[test]
fn bad_duration_is_rejected() {
    let e = error_text(&format!("{MINIMAL}batch_timeout = \"1 fortnight\"\n"));
    assert!(e.starts_with("streams.toml:14: stream[0].batch_timeout: bad duration"), "{e}");
    let e = error_text(&format!("{MINIMAL}batch_timeout = \"0s\"\n"));
    assert!(e.contains("greater than zero"), "{e}");
}

#[test]
fn missing_section_is_named() {
    let e = error_text("[nats]\nurl = \"nats://x\"\n");
    assert!(e.contains("database"), "{e}");
}

#[test]
fn no_streams_is_an_error() {
    let text = MINIMAL.split("[[stream]]").next().unwrap();
    assert!(error_text(text).contains("no [[stream]]"));
}

#[test]
fn syntax_error_names_the_line() {
    let e = error_text(&MINIMAL.replace("pool", "x").replace("[database]", "[database"));
    assert!(e.starts_with("streams.toml:5:"), "{e}");
}

#[test]
fn unknown_retention_table_is_rejected() {
    let text = MINIMAL.replace(
        "[database]\nurl = \"postgres://postgres@127.0.0.1:5432/serviceradar\"",
        "[database]\nurl = \"postgres://x\"\nretention = { nope = \"1d\" }",
    );
    assert!(error_text(&text).contains("database.retention.nope: unknown table"));
}

#[test]
fn max_ack_pending_below_batch_size_is_rejected() {
    let e = error_text(&format!("{MINIMAL}batch_size = 500\nmax_ack_pending = 100\n"));
    assert!(e.contains("stream[0].max_ack_pending"), "{e}");
}

#[test]
fn nak_delay_doubles_and_caps() {
    let s = parse(MINIMAL).unwrap().streams.remove(0);
    assert_eq!(s.nak_delay_for(1), Duration::from_secs(1));
    assert_eq!(s.nak_delay_for(2), Duration::from_secs(2));
    assert_eq!(s.nak_delay_for(4), Duration::from_secs(8));
    assert_eq!(s.nak_delay_for(100), Duration::from_secs(60));
    assert_eq!(s.nak_delay_for(0), Duration::from_secs(1));
}

#[test]
fn secrets_are_redacted() {
    assert_eq!(redact_url("postgres://u:pw@h:5432/db"), "postgres://u:***@h:5432/db");
    assert_eq!(redact_url("nats://tok@h:4222"), "nats://***@h:4222");
    assert_eq!(redact_url("postgres://h/db?user=u&password=pw"), "postgres://h/db?user=u&password=***");
    assert_eq!(redact_url("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
    let config = parse(&MINIMAL.replace("postgres@", "postgres:hunter2@")).unwrap();
    assert!(!format!("{config:?}").contains("hunter2"));
}
