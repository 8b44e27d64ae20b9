//! The class of every database error, by SQLSTATE and connection state (retry, timeout, permanent, breaker),
//! and errors as one line with their causes.
//!
//! Uses nothing of the project.

use deadpool_postgres::PoolError;
use tokio_postgres::error::SqlState;

/// What to do about a failed write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Transient (deadlock, serialization) or an operator's problem (a missing table, a permission): the same
    /// write may succeed later. The messages are NAKed with a delay (spending a delivery).
    Retry,
    /// The statement ran out of time (57014 statement timeout, 55P03 lock timeout): retried in smaller parts,
    /// then as [`ErrorClass::Retry`].
    Timeout,
    /// The rows themselves are refused (22xxx data, 23xxx constraint, 54xxx program limit such as an index row
    /// too large, P0xxx raised by a trigger): retrying cannot help; bisection finds the refused messages.
    Permanent,
    /// The database cannot take writes now (08xxx connection, 53xxx disk full / out of memory / too many
    /// connections, 57P0x shutting down, 58xxx I/O, 25006 read-only, a closed or stuck connection, no connection
    /// from the pool): the database's fault. Never spends a delivery: the batch is held and retried.
    Breaker,
}

/// A failed write: the pool or PostgreSQL.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// No connection could be had.
    #[error("no database connection: {}", describe_pool(.0))]
    Pool(#[from] PoolError),
    /// PostgreSQL (or the connection to it) failed the statement.
    #[error("{}", describe(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// The write did not finish within its deadline; its connection was given up.
    #[error("no answer from the database within {0:?}; the connection was dropped")]
    Deadline(std::time::Duration),
}

impl WriteError {
    /// How to react to it.
    pub fn class(&self) -> ErrorClass {
        match self {
            // No connection within the wait: either our own writers hold them all (then their commits keep
            // closing the breaker, so this alone never opens it) or every connection is stuck (an outage that
            // shows only this way, which must open it).
            WriteError::Pool(_) => ErrorClass::Breaker,
            WriteError::Postgres(e) => classify(e),
            WriteError::Deadline(_) => ErrorClass::Breaker,
        }
    }

    /// The SQLSTATE, when PostgreSQL gave one.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            WriteError::Postgres(e) => e.code().map(SqlState::code),
            WriteError::Pool(_) | WriteError::Deadline(_) => None,
        }
    }
}

/// Classifies a tokio-postgres error by SQLSTATE and connection state.
pub fn classify(e: &tokio_postgres::Error) -> ErrorClass {
    if let Some(code) = e.code() {
        return classify_sqlstate(code.code());
    }
    if e.is_closed() || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>()) {
        return ErrorClass::Breaker;
    }
    // A value the client could not encode for its column (e.g. out of range): retrying cannot help; bisection
    // finds the message that carries it. tokio-postgres does not expose this kind, only its message.
    if e.to_string().starts_with("error serializing parameter") {
        return ErrorClass::Permanent;
    }
    // Anything else without a SQLSTATE is a connection or protocol failure.
    ErrorClass::Breaker
}

/// Classifies a SQLSTATE code.
pub fn classify_sqlstate(code: &str) -> ErrorClass {
    match code {
        "40001" | "40P01" => ErrorClass::Retry,
        "55P03" | "57014" => ErrorClass::Timeout,
        // Read-only: a standby (after a failover this connection now points at): the database's state, not ours.
        "25006" => ErrorClass::Breaker,
        c if c.starts_with("22") || c.starts_with("23") || c.starts_with("54") || c.starts_with("P0") => {
            ErrorClass::Permanent
        }
        c if c.starts_with("08") || c.starts_with("53") || c.starts_with("57P") || c.starts_with("58") => {
            ErrorClass::Breaker
        }
        // Anything else (a missing table, a permission) is an operator problem: retry with backoff, never drop.
        _ => ErrorClass::Retry,
    }
}

/// A PostgreSQL error as one line: the server's message and SQLSTATE, or the client's error with its causes
/// (tokio-postgres keeps them out of its own Display: "error performing TLS handshake" alone says little).
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {} (SQLSTATE {})", db.severity(), db.message(), db.code().code()),
        None => explain(e),
    }
}

/// A pool error, its backend error described as [`describe`] does.
pub fn describe_pool(e: &PoolError) -> String {
    match e {
        PoolError::Backend(e) => describe(e),
        other => explain(other),
    }
}

/// An error and its chain of causes, each said once.
pub fn explain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let message = c.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_fall_into_their_classes() {
        for (code, class) in [
            ("40001", ErrorClass::Retry),
            ("40P01", ErrorClass::Retry),
            ("55P03", ErrorClass::Timeout),
            ("57014", ErrorClass::Timeout),
            ("22P02", ErrorClass::Permanent),
            ("22021", ErrorClass::Permanent),
            ("23505", ErrorClass::Permanent),
            ("23502", ErrorClass::Permanent),
            // index row size exceeds maximum; stack depth limit exceeded; RAISE EXCEPTION in a trigger
            ("54000", ErrorClass::Permanent),
            ("54001", ErrorClass::Permanent),
            ("P0001", ErrorClass::Permanent),
            ("08006", ErrorClass::Breaker),
            ("57P01", ErrorClass::Breaker),
            // too many connections; disk full; out of memory
            ("53300", ErrorClass::Breaker),
            ("53100", ErrorClass::Breaker),
            ("53200", ErrorClass::Breaker),
            ("25006", ErrorClass::Breaker),
            ("58030", ErrorClass::Breaker),
            ("42P01", ErrorClass::Retry),
            ("XX000", ErrorClass::Retry),
        ] {
            assert_eq!(classify_sqlstate(code), class, "{code}");
        }
    }

    #[test]
    fn no_connection_is_the_databases_failure_and_spends_no_delivery() {
        use deadpool_postgres::TimeoutType;
        // Held and retried rather than NAKed; the breaker counts it, and our own commits in between reset the
        // count when the pool is merely busy.
        assert_eq!(WriteError::Pool(PoolError::Timeout(TimeoutType::Wait)).class(), ErrorClass::Breaker);
        assert_eq!(WriteError::Pool(PoolError::Timeout(TimeoutType::Create)).class(), ErrorClass::Breaker);
        assert_eq!(WriteError::Pool(PoolError::Closed).class(), ErrorClass::Breaker);
        assert_eq!(WriteError::Deadline(std::time::Duration::from_secs(1)).class(), ErrorClass::Breaker);
    }
}
