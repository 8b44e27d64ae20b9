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
    /// Check the configuration, then the world it names: referenced files, NATS (version, JetStream, existing
    /// consumers) and the database (access, migrated tables). One line per stream and per check; exit 2 for a bad
    /// file, 1 for a failed check (for ExecStartPre).
    Validate {
        /// Check the file alone (no file it names is read, no server asked).
        #[arg(long)]
        offline: bool,
    },
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
        /// A live view, one row per stream, redrawn every --interval until Ctrl-C (like `vector top`).
        #[arg(long)]
        watch: bool,
        /// How long the consumers are watched for their rates (and the --watch refresh).
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        interval: std::time::Duration,
    },
    /// Print a streams.toml equivalent to the Go db-event-writer's JSON configuration, or (--elixir-env) to the
    /// Elixir EventWriter's environment variables.
    ImportLegacy {
        /// The Go writer's JSON file (e.g. /etc/serviceradar/consumers/db-event-writer.json).
        #[arg(required_unless_present = "elixir_env", conflicts_with = "elixir_env")]
        path: Option<PathBuf>,
        /// The Elixir writer's variables: an env file (KEY=VALUE, compose or Kubernetes env lines), `-` for
        /// standard input, or nothing for this process's environment.
        #[arg(long, value_name = "FILE|-", num_args = 0..=1)]
        elixir_env: Option<Option<PathBuf>>,
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
    /// Show dead letters, oldest first: sequence, time (RFC 3339), stream, subject, class, reason; then how many
    /// matched and how many the DLQ holds.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// One dead letter whole: every header, the reason, the payload.
    Show {
        /// Its sequence in the DLQ stream (the first column of `dlq list`).
        sequence: u64,
        /// Write the payload alone, byte for byte (to save or re-post it).
        #[arg(long)]
        payload: bool,
    },
    /// Republish dead letters to their original subjects; each leaves the DLQ once its republish is stored.
    Replay {
        #[command(flatten)]
        filter: FilterArgs,
        /// At most this many (default: every match).
        #[arg(long)]
        limit: Option<usize>,
        /// Say what would be replayed; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Delete dead letters for good.
    Purge {
        #[command(flatten)]
        filter: FilterArgs,
        /// At most this many (default: every match).
        #[arg(long)]
        limit: Option<usize>,
        /// Say what would be deleted; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Needed to purge without any filter: every dead letter of every stream.
        #[arg(long)]
        all: bool,
    },
}

/// Which dead letters a `dlq` command works on.
#[derive(Debug, Clone, clap::Args)]
struct FilterArgs {
    /// Only this pipeline's (the [[stream]] name).
    #[arg(long)]
    stream: Option<String>,
    /// Only this class: decode, limit, rejected or max_deliver.
    #[arg(long)]
    class: Option<String>,
    /// Only letters whose original subject matches this NATS pattern (`*` a token, `>` the rest).
    #[arg(long)]
    subject: Option<String>,
    /// Only letters dead-lettered since this RFC 3339 time, or this long ago (`90m`, `2h`, `1day`).
    #[arg(long)]
    since: Option<String>,
}

impl FilterArgs {
    fn is_empty(&self) -> bool {
        self.stream.is_none() && self.class.is_none() && self.subject.is_none() && self.since.is_none()
    }

    fn filter(&self, limit: usize) -> anyhow::Result<db_event_writer::dlq::tools::Filter> {
        use db_event_writer::dlq::DlqClass;
        if let Some(c) = &self.class
            && !DlqClass::NAMES.contains(&c.as_str())
        {
            anyhow::bail!("--class {c:?}: one of {}", DlqClass::NAMES.join(", "));
        }
        let since = match &self.since {
            None => None,
            Some(text) => Some(match chrono::DateTime::parse_from_rfc3339(text) {
                Ok(t) => t.with_timezone(&chrono::Utc),
                Err(_) => {
                    let ago = humantime::parse_duration(text).map_err(|e| {
                        anyhow::anyhow!("--since {text:?}: neither an RFC 3339 time nor a duration ({e})")
                    })?;
                    chrono::Duration::from_std(ago)
                        .ok()
                        .and_then(|ago| chrono::Utc::now().checked_sub_signed(ago))
                        .with_context(|| format!("--since {text:?}: too long ago"))?
                }
            }),
        };
        Ok(db_event_writer::dlq::tools::Filter {
            stream: self.stream.clone(),
            class: self.class.clone(),
            subject: self.subject.clone(),
            since,
            limit,
        })
    }
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
    if let Command::ImportLegacy { path, elixir_env } = &cli.command {
        let imported = match (path, elixir_env) {
            (_, Some(source)) => db_event_writer::legacy::elixir::import(source.as_deref()),
            (Some(path), None) => db_event_writer::legacy::import(path),
            (None, None) => Err(db_event_writer::legacy::LegacyError::Invalid {
                file: "import-legacy".into(),
                message: "give the Go writer's JSON file or --elixir-env".into(),
            }),
        };
        return match imported {
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
    let daemon = matches!(cli.command, Command::Run);
    init_logging(&config.log, daemon);
    let result = match cli.command {
        Command::Validate { offline } => {
            say!("{}: valid, {} stream(s)", config.source.display(), config.streams.len());
            for s in &config.streams {
                say!("{}", db_event_writer::supervisor::describe(s));
            }
            if offline {
                return ExitCode::SUCCESS;
            }
            match runtime() {
                Ok(rt) => return world(&rt.block_on(db_event_writer::check::world(&config))),
                Err(e) => Err(e),
            }
        }
        Command::Migrate => runtime().and_then(|rt| rt.block_on(migrate(config))),
        Command::Run => runtime().and_then(|rt| rt.block_on(run(config))),
        Command::Dlq { action } => runtime().and_then(|rt| rt.block_on(dlq(config, action))),
        Command::Status { watch: true, interval, .. } => match runtime() {
            Ok(rt) => rt.block_on(async {
                let every = interval.max(std::time::Duration::from_millis(100));
                loop {
                    let report = db_event_writer::status::status(&config, every).await;
                    // Clear the screen and go home, then the view.
                    say_raw!("\x1b[2J\x1b[H{}", db_event_writer::status::render_top(&report, &config, every));
                }
            }),
            Err(e) => Err(e),
        },
        Command::Status { json, interval, .. } => match runtime() {
            Ok(rt) => {
                let report = rt.block_on(db_event_writer::status::status(&config, interval));
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
            // Each cause once (an error that displays its source is not repeated by the chain).
            let why = db_event_writer::db::explain(e.as_ref());
            if daemon {
                // The daemon's last word goes where its log goes, in its format.
                tracing::error!(error = %why, "db-event-writer stopped");
            } else {
                complain!("error: {why}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Prints each check of the world (`ok: …` on standard output, `error: …` on standard error); fails when one did.
fn world(checks: &[db_event_writer::check::Check]) -> ExitCode {
    let mut failed = 0;
    for c in checks {
        match &c.outcome {
            Ok(found) => say!("ok: {}: {found}", c.what),
            Err(why) => {
                failed += 1;
                complain!("error: {}: {why}", c.what);
            }
        }
    }
    if failed == 0 {
        return ExitCode::SUCCESS;
    }
    complain!("error: {failed} check(s) failed (`validate --offline` checks the file alone)");
    ExitCode::FAILURE
}

/// Text or JSON on stderr; `RUST_LOG` overrides `[log] level`. The one-shot commands log warnings only (their
/// results are printed), the daemon at `[log] level`.
fn init_logging(log: &LogConfig, daemon: bool) {
    use std::io::IsTerminal as _;
    let level = if daemon { log.level.as_str() } else { "warn,async_nats=error" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
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
    if config.daemon.watch_config {
        tokio::spawn(watch_file(config.source.clone(), reload.clone()));
    }
    tokio::spawn(hangups(reload));
    db_event_writer::run_reloadable(config, shutdown, reloads).await?;
    Ok(())
}

/// `[daemon] watch_config`: a reload whenever the file's content changes, looked at every 2 s. The content, not the
/// modification time: a Kubernetes ConfigMap is updated by swapping a symlink, and an editor may save twice.
async fn watch_file(path: PathBuf, reload: tokio::sync::mpsc::Sender<()>) {
    let read = || std::fs::read(&path).ok();
    let mut last = read();
    let mut every = tokio::time::interval(std::time::Duration::from_secs(2));
    loop {
        every.tick().await;
        let now = read();
        if now.is_some() && now != last {
            tracing::info!(path = %path.display(), "configuration file changed");
            last = now;
            let _ = reload.try_send(());
        }
    }
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
    use db_event_writer::dlq::{self, tools};
    let client = db_event_writer::jetstream::connect_once(&config.nats).await?;
    let js = async_nats::jetstream::new(client.clone());
    let configured: Vec<&str> = config.streams.iter().map(|s| s.name.as_str()).collect();
    // The filter as asked, after refusing a class or a `--stream` that names nothing.
    let select = async |args: &FilterArgs, limit: usize| -> anyhow::Result<tools::Filter> {
        let filter = args.filter(limit)?;
        if let Some(name) = &args.stream {
            tools::check_stream(&js, &config.dlq, &configured, name).await?;
        }
        Ok(filter)
    };
    match action {
        DlqAction::List { filter: args, limit } => {
            let f = select(&args, limit).await?;
            let listing = tools::list(&js, &config.dlq, &f).await?;
            for l in &listing.letters {
                say!(
                    "{}\t{}\tstream={} subject={} sequence={} delivered={} class={}\t{}",
                    l.dlq_sequence,
                    l.time_text(),
                    l.header(dlq::H_STREAM),
                    l.header(dlq::H_SUBJECT),
                    l.header(dlq::H_SEQUENCE),
                    l.header(dlq::H_DELIVERED),
                    l.header(dlq::H_CLASS),
                    l.header(dlq::H_REASON),
                );
            }
            let capped = if listing.capped() {
                format!(" (showing the first {}: raise --limit for more)", listing.letters.len())
            } else {
                String::new()
            };
            complain!(
                "{} dead letter(s) matched of {} in {}{capped}",
                listing.matched,
                listing.total,
                config.dlq.stream
            );
        }
        DlqAction::Show { sequence, payload } => {
            let l = tools::show(&js, &config.dlq, sequence).await?;
            if payload {
                use std::io::Write as _;
                let mut out = std::io::stdout().lock();
                // A closed pipe is the reader's choice, not an error.
                let _ = out.write_all(&l.payload).and_then(|()| out.flush());
                return Ok(());
            }
            say!("sequence: {}", l.dlq_sequence);
            say!("time: {}", l.time_text());
            for (name, values) in l.headers.iter() {
                for v in values {
                    say!("{}: {}", name.as_ref() as &str, v.as_str());
                }
            }
            match std::str::from_utf8(&l.payload) {
                Ok(text) => say!("payload ({} bytes):\n{text}", l.payload.len()),
                Err(_) => say!(
                    "payload ({} bytes, not UTF-8; `dlq show {sequence} --payload` writes it as it is):\n{}",
                    l.payload.len(),
                    db_event_writer::hex::encode(&l.payload[..l.payload.len().min(4096)])
                ),
            }
        }
        DlqAction::Replay { filter: args, limit, dry_run } => {
            let f = select(&args, limit.unwrap_or(usize::MAX)).await?;
            let done = tools::replay(&js, &config.dlq, &f, dry_run).await?;
            let verb = if dry_run { "would replay" } else { "replayed" };
            say!("{verb} {} dead letter(s)", done.replayed);
            if done.kept > 0 {
                say!("kept {} dead letter(s) that could not be replayed (see the log)", done.kept);
            }
            if done.beyond_limit > 0 {
                say!("{} more matched beyond --limit", done.beyond_limit);
            }
        }
        DlqAction::Purge { filter: args, limit, dry_run, all } => {
            if args.is_empty() && !all {
                anyhow::bail!("dlq purge without a filter deletes every dead letter: add --all to mean it");
            }
            let f = select(&args, limit.unwrap_or(usize::MAX)).await?;
            let done = tools::purge(&js, &config.dlq, &f, dry_run).await?;
            let verb = if dry_run { "would purge" } else { "purged" };
            say!("{verb} {} dead letter(s)", done.replayed);
            if done.beyond_limit > 0 {
                say!("{} more matched beyond --limit", done.beyond_limit);
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
