//! `db-event-writer run|validate|migrate [--config PATH]`.
//!
//! Uses the library's public API only.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use db_event_writer::config::{Config, LogConfig, LogFormat};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(
    name = "db-event-writer",
    version,
    about = "NATS JetStream → PostgreSQL/TimescaleDB, acked only after commit"
)]
struct Cli {
    /// Configuration file.
    #[arg(long, short, global = true, env = "DB_EVENT_WRITER_CONFIG", default_value = "streams.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon until SIGTERM/SIGINT.
    Run,
    /// Check the configuration; print one line per stream (for ExecStartPre).
    Validate,
    /// Apply the embedded schema migrations (idempotent).
    Migrate,
    /// Dead letters: list them, or replay them to their original subjects.
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
    },
    /// One line per stream: consumer lag, awaiting ack, redelivered, dead letters; and whether NATS and the
    /// database answer. Exit status 1 when something does not.
    Status {
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print a streams.toml equivalent to the Go db-event-writer's JSON configuration.
    ImportLegacy {
        /// The Go writer's JSON file (e.g. /etc/serviceradar/consumers/db-event-writer.json).
        path: PathBuf,
    },
    /// Read a bearer token on standard input and print its SHA-256, for the ingest front's tokens_file.
    HashToken,
    /// Publish one payload to JetStream and wait for its ack (demos, manual replays).
    Publish {
        /// Subject to publish on.
        subject: String,
        /// File holding the payload; `-` reads standard input.
        #[arg(default_value = "-")]
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum DlqAction {
    /// Show dead letters, oldest first: subject, class, reason, time.
    List {
        /// Only this pipeline's (the [[stream]] name).
        #[arg(long)]
        stream: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Republish dead letters to their original subjects; each leaves the DLQ once its republish is stored.
    Replay {
        /// Only this pipeline's (the [[stream]] name).
        #[arg(long)]
        stream: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

/// Writes `text` to standard output. A reader that went away (`validate | head`) ends the command quietly with
/// status 0, where `println!` would panic.
fn emit(text: &str) {
    use std::io::Write;
    if let Err(e) = std::io::stdout().lock().write_all(text.as_bytes()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
    }
}

/// A line on standard output, with every remembered secret scrubbed ([`db_event_writer::redact::scrub`]).
macro_rules! say {
    ($($t:tt)*) => { emit(&format!("{}\n", db_event_writer::redact::scrub(&format!($($t)*)))) };
}

/// A line on standard error, scrubbed (a closed standard error is ignored).
macro_rules! complain {
    ($($t:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "{}", db_event_writer::redact::scrub(&format!($($t)*)));
    }};
}

/// Standard output without a newline, scrubbed.
macro_rules! say_raw {
    ($($t:tt)*) => { emit(&db_event_writer::redact::scrub(&format!($($t)*))) };
}

/// Exit code for an invalid configuration.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::HashToken = &cli.command {
        let mut token = String::new();
        if std::io::Read::read_to_string(&mut std::io::stdin(), &mut token).is_err() || token.trim().is_empty() {
            complain!("error: give the token on standard input");
            return ExitCode::from(EXIT_CONFIG);
        }
        say!("{}", db_event_writer::ingest::tokens::hash(token.trim()));
        return ExitCode::SUCCESS;
    }
    if let Command::ImportLegacy { path } = &cli.command {
        return match db_event_writer::legacy::import(path) {
            Ok(text) => {
                say_raw!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                complain!("error: {e}");
                ExitCode::from(EXIT_CONFIG)
            }
        };
    }
    let config = match db_event_writer::load_config(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            complain!("error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    init_logging(&config.log);
    let result = match cli.command {
        Command::Validate => {
            say!("{}: valid, {} stream(s)", config.source.display(), config.streams.len());
            for s in &config.streams {
                say!("{}", db_event_writer::supervisor::describe(s));
            }
            Ok(())
        }
        Command::Migrate => runtime().and_then(|rt| rt.block_on(migrate(config))),
        Command::Run => runtime().and_then(|rt| rt.block_on(run(config))),
        Command::Dlq { action } => runtime().and_then(|rt| rt.block_on(dlq(config, action))),
        Command::Status { json } => match runtime() {
            Ok(rt) => {
                let report = rt.block_on(db_event_writer::status::status(&config));
                if json {
                    say!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
                } else {
                    say_raw!("{}", report.render(&config));
                }
                return if report.healthy() { ExitCode::SUCCESS } else { ExitCode::FAILURE };
            }
            Err(e) => Err(e),
        },
        Command::ImportLegacy { .. } | Command::HashToken => Ok(()),
        Command::Publish { subject, file } => runtime().and_then(|rt| rt.block_on(publish(config, subject, file))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Text or JSON on stderr; `RUST_LOG` overrides `[log] level`.
fn init_logging(log: &LogConfig) {
    use std::io::IsTerminal as _;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&log.level));
    // Every line scrubbed of the configuration's secrets before it reaches stderr.
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(db_event_writer::redact::ScrubWriter);
    match log.format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the tokio runtime")
}

async fn migrate(config: Config) -> anyhow::Result<()> {
    let report = db_event_writer::migrate::migrate(&config.database).await?;
    say!(
        "migrated schema {}: {} applied now ({}), timescaledb {}{}",
        config.database.schema,
        report.applied.len(),
        if report.applied.is_empty() { "already up to date".to_owned() } else { report.applied.join(", ") },
        if report.timescaledb { "installed" } else { "not installed (plain tables)" },
        if report.retention_changed.is_empty() {
            String::new()
        } else {
            format!(", retention set on {}", report.retention_changed.join(", "))
        },
    );
    Ok(())
}

async fn run(config: Config) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    tokio::spawn(signals(shutdown.clone()));
    let (reload, reloads) = tokio::sync::mpsc::channel(1);
    tokio::spawn(hangups(reload));
    db_event_writer::run_reloadable(config, shutdown, reloads).await?;
    Ok(())
}

/// SIGHUP (systemd's `ExecReload`): re-read the configuration file. Hangups arriving during a reload coalesce.
async fn hangups(reload: tokio::sync::mpsc::Sender<()>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::error!("cannot install the SIGHUP handler; reloads need a restart");
        return;
    };
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP received");
        let _ = reload.try_send(());
    }
}

async fn dlq(config: Config, action: DlqAction) -> anyhow::Result<()> {
    use db_event_writer::dlq;
    let client = db_event_writer::jetstream::connect_once(&config.nats).await?;
    let js = async_nats::jetstream::new(client.clone());
    match action {
        DlqAction::List { stream, limit } => {
            let letters = dlq::list(&js, &config.dlq, stream.as_deref(), limit).await?;
            for l in &letters {
                say!(
                    "{}\t{}\tstream={} subject={} sequence={} delivered={} class={}\t{}",
                    l.dlq_sequence,
                    l.time,
                    l.header(dlq::H_STREAM),
                    l.header(dlq::H_SUBJECT),
                    l.header(dlq::H_SEQUENCE),
                    l.header(dlq::H_DELIVERED),
                    l.header(dlq::H_CLASS),
                    l.header(dlq::H_REASON),
                );
            }
            complain!("{} dead letter(s)", letters.len());
        }
        DlqAction::Replay { stream, limit } => {
            let done = dlq::replay(&js, &config.dlq, stream.as_deref(), limit).await?;
            say!("replayed {} dead letter(s)", done.replayed);
            if done.kept > 0 {
                say!("kept {} dead letter(s) that could not be replayed (see the log)", done.kept);
            }
        }
    }
    client.flush().await.context("flushing to NATS")?;
    Ok(())
}

async fn publish(config: Config, subject: String, file: PathBuf) -> anyhow::Result<()> {
    use std::io::Read as _;
    let mut payload = Vec::new();
    if file.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut payload).context("reading standard input")?;
    } else {
        payload = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    }
    let client = db_event_writer::jetstream::connect_once(&config.nats).await?;
    let js = async_nats::jetstream::new(client);
    let ack = js
        .publish(subject.clone(), payload.into())
        .await
        .context("publishing")?
        .await
        .with_context(|| format!("no JetStream stream stored {subject} (is the daemon's stream created?)"))?;
    say!("published {subject}: stream {} sequence {}", ack.stream, ack.sequence);
    Ok(())
}

/// First SIGTERM/SIGINT: graceful shutdown. Second: exit at once (messages not acked are redelivered).
async fn signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers; stop the daemon with SIGKILL");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
    shutdown.cancel();
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    tracing::warn!("second signal: exiting now without waiting for open batches");
    std::process::exit(130);
}
