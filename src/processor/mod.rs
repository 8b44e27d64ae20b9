//! Processors: a closed set, named by `processor = "..."` in streams.toml ([`ProcessorKind`]) and mapped to
//! their types in one place, [`dispatch`]. What each one is lives on its [`Processor`] implementation as constants
//! (name, tables, batch and retention defaults, ledger); every other part of the daemon asks [`info`] (or
//! dispatches), never lists the processors itself.
//!
//! - [`api`]: the trait and what a decoder sees; [`json`], [`otlp`], [`proto`]: shared decoding helpers;
//! - one module (a folder when large) per processor: [`telemetry`], [`logs`], [`events`], [`sweep`], [`otel`],
//!   [`netflow`].
//!
//! Adding a processor: its module (implementing [`Processor`]), one [`ProcessorKind`] variant (and its place in
//! `ProcessorKind::ALL`), one arm in [`dispatch`], and its migration in `migrations/`.
//!
//! Uses the config types ([`ProcessorKind`], [`crate::config::Defaults`]); each processor uses only [`api`] and the shared helpers.

use std::time::Duration;

pub mod api;
pub mod events;
#[cfg(test)]
mod fuzz_tests;
pub mod json;
pub mod logs;
pub mod netflow;
pub mod otel;
pub mod otlp;
pub mod proto;
pub mod sweep;
pub mod telemetry;

pub use crate::config::ProcessorKind;
pub use api::{
    Attribution, BatchDefaults, DecodeError, Headers, Incoming, IngestColumns, Limits, Processor, RowSize, Rows,
};

/// Something done with one processor type; [`dispatch`] chooses the type.
pub trait Visit {
    /// What it gives back.
    type Output;
    /// Does it with processor `P`.
    fn visit<P: Processor>(self) -> Self::Output;
}

/// The one place that maps a [`ProcessorKind`] to its processor type.
pub fn dispatch<V: Visit>(kind: ProcessorKind, v: V) -> V::Output {
    match kind {
        ProcessorKind::Telemetry => v.visit::<telemetry::Telemetry>(),
        ProcessorKind::Logs => v.visit::<logs::Logs>(),
        ProcessorKind::Events => v.visit::<events::Events>(),
        ProcessorKind::Sweep => v.visit::<sweep::Sweep>(),
        ProcessorKind::Otel => v.visit::<otel::Otel>(),
        ProcessorKind::Netflow => v.visit::<netflow::Netflow>(),
    }
}

/// What the rest of the daemon knows of a processor: its [`Processor`] constants.
#[derive(Debug, Clone, Copy)]
pub struct Info {
    /// [`Processor::NAME`].
    pub name: &'static str,
    /// [`Processor::TABLES`].
    pub tables: &'static [&'static str],
    /// [`Processor::BATCH`].
    pub batch: BatchDefaults,
    /// [`Processor::RETENTION`].
    pub retention: &'static [(&'static str, Duration)],
    /// [`Processor::LEDGER`].
    pub ledger: bool,
    /// [`Processor::CHUNK_INTERVAL`].
    pub chunk_interval: &'static [(&'static str, Duration)],
    /// [`Processor::SKIPS`].
    pub skips: &'static [&'static str],
}

/// The constants of `kind`'s processor.
pub fn info(kind: ProcessorKind) -> Info {
    struct Of;
    impl Visit for Of {
        type Output = Info;
        fn visit<P: Processor>(self) -> Info {
            Info {
                name: P::NAME,
                tables: P::TABLES,
                batch: P::BATCH,
                retention: P::RETENTION,
                ledger: P::LEDGER,
                chunk_interval: P::CHUNK_INTERVAL,
                skips: P::SKIPS,
            }
        }
    }
    dispatch(kind, Of)
}

impl ProcessorKind {
    /// The name used in streams.toml.
    pub fn name(self) -> &'static str {
        info(self).name
    }

    /// The tables its rows go to.
    pub fn tables(self) -> &'static [&'static str] {
        info(self).tables
    }

    /// Whether its idempotency comes from the ledger (its table has no key of its own).
    pub fn uses_ledger(self) -> bool {
        info(self).ledger
    }

    /// Why it may turn part of a message into no row.
    pub fn skips(self) -> &'static [&'static str] {
        info(self).skips
    }
}

impl std::fmt::Display for ProcessorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What `streams.toml` takes from the processors: their batch defaults and their tables' retention defaults.
pub fn defaults() -> crate::config::Defaults {
    let infos = ProcessorKind::ALL.map(|k| (k, info(k)));
    let per_table = |of: fn(&Info) -> &'static [(&'static str, Duration)]| {
        let mut all: Vec<(&'static str, Duration)> = infos.iter().flat_map(|(_, i)| of(i).iter().copied()).collect();
        all.sort_by_key(|(t, _)| *t);
        all.dedup_by_key(|(t, _)| *t);
        all
    };
    crate::config::Defaults {
        batch: infos.iter().map(|(k, i)| (*k, i.batch)).collect(),
        retention: per_table(|i| i.retention),
        chunk_interval: per_table(|i| i.chunk_interval),
    }
}

/// Runs `kind`'s decoder on a payload without keeping the rows (the HTTP ingest front's `validate`), within the
/// default per-message limits.
pub fn validate(kind: ProcessorKind, subject: &str, payload: &[u8], stream: &str) -> Result<(), DecodeError> {
    struct Check<'a>(&'a Incoming<'a>);
    impl Visit for Check<'_> {
        type Output = Result<(), DecodeError>;
        fn visit<P: Processor>(self) -> Self::Output {
            let mut rows = Vec::new();
            let limits = Limits::for_payload(self.0.payload.len(), Limits::DEFAULT_MAX_ROWS, Limits::DEFAULT_EXPANSION);
            // The schema only names tables in SQL, which decoding never touches.
            P::new(&crate::config::DatabaseConfig::for_schema("platform"))
                .decode(self.0, &mut Rows::new(&mut rows, limits))
        }
    }
    let msg = Incoming::bare(subject, payload, chrono::Utc::now(), stream, 1);
    dispatch(kind, Check(&msg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_listed_once_and_named_as_streams_toml_names_it() {
        // Exhaustive: a new variant fails to compile here until it is given a place in ALL.
        let position = |k: ProcessorKind| match k {
            ProcessorKind::Telemetry
            | ProcessorKind::Logs
            | ProcessorKind::Events
            | ProcessorKind::Sweep
            | ProcessorKind::Otel
            | ProcessorKind::Netflow => ProcessorKind::ALL.iter().position(|x| *x == k),
        };
        for k in ProcessorKind::ALL {
            assert!(position(k).is_some());
            let parsed: ProcessorKind = serde_json::from_value(serde_json::json!(k.name())).unwrap();
            assert_eq!(parsed, k, "{} names another kind", k.name());
        }
        let mut names: Vec<&str> = ProcessorKind::ALL.iter().map(|k| k.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ProcessorKind::ALL.len());
    }

    #[test]
    fn defaults_cover_every_processor_and_table() {
        let d = defaults();
        for k in ProcessorKind::ALL {
            assert_eq!(d.batch_of(k), info(k).batch);
            for t in k.tables() {
                assert!(d.retention.iter().any(|(table, _)| table == t), "{t} has no retention default");
            }
        }
    }
}
