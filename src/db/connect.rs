//! How the daemon connects to PostgreSQL: the URL (libpq's form or key=value) with its TLS parameters taken out
//! and honoured, our connect timeout, application name and TCP keepalives, a password from its file, and the
//! rustls connector of `[database.tls]`.
//!
//! Uses the config types and [`crate::tls`].

use std::str::FromStr;

use crate::config::{DatabaseConfig, DatabaseTls, SslMode, TlsFiles, redact_url};
use crate::tls::{MakeRustlsConnect, Verify};

/// Errors building the pool.
#[derive(Debug, thiserror::Error)]
pub enum DbSetupError {
    /// The URL does not parse.
    #[error("database.url {url}: {source}")]
    BadUrl {
        /// The URL, password redacted.
        url: String,
        /// Why.
        source: tokio_postgres::Error,
    },
    /// The password file cannot be used.
    #[error("database.password_file {0}")]
    PasswordFile(String),
    /// TLS settings that cannot be used (a bad mode, an unreadable certificate, set twice).
    #[error("database TLS: {0}")]
    Tls(String),
    /// deadpool refused the settings.
    #[error("cannot build the connection pool: {0}")]
    Build(String),
}

/// The parsed connection settings (with our connect timeout, application name and `sslmode`) and the TLS
/// connector that goes with them. TLS comes from `[database.tls]` or from libpq's URL parameters (`sslmode`,
/// `sslrootcert`, `sslcert`, `sslkey`), not both.
pub fn pg_config(db: &DatabaseConfig) -> Result<(tokio_postgres::Config, MakeRustlsConnect), DbSetupError> {
    let (url, from_url) = split_tls_params(&db.url).map_err(DbSetupError::Tls)?;
    let tls = match (&db.tls, from_url) {
        (Some(_), Some(_)) => {
            return Err(DbSetupError::Tls(
                "set both in the URL (sslmode/sslrootcert/sslcert/sslkey) and in [database.tls]; keep one".into(),
            ));
        }
        (Some(tls), None) => tls.clone(),
        (None, Some(tls)) => tls,
        (None, None) => DatabaseTls { mode: SslMode::Disable, files: TlsFiles::default() },
    };
    let mut pg = tokio_postgres::Config::from_str(&url)
        .map_err(|source| DbSetupError::BadUrl { url: redact_url(&db.url), source })?;
    let verify = match tls.mode {
        SslMode::Disable | SslMode::Prefer | SslMode::Require if tls.files.ca_file.is_none() => Verify::Nothing,
        SslMode::Disable | SslMode::Prefer | SslMode::Require | SslMode::VerifyCa => Verify::Chain,
        SslMode::VerifyFull => Verify::Full,
    };
    pg.ssl_mode(match tls.mode {
        SslMode::Disable => tokio_postgres::config::SslMode::Disable,
        SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => tokio_postgres::config::SslMode::Require,
    });
    let connector = crate::tls::client_config(&tls.files, verify, "database.tls").map_err(DbSetupError::Tls)?;
    if pg.get_connect_timeout().is_none() {
        pg.connect_timeout(db.connect_timeout);
    }
    if pg.get_application_name().is_none() {
        pg.application_name("db-event-writer");
    }
    // A peer that vanishes without a FIN (a dead host, a cut network) is noticed by the kernel within about
    // idle + interval × retries (10 + 5 × 3 s), and data the peer never acknowledges by the user timeout. A peer
    // that acknowledges but never answers (a stuck proxy) is what the write deadline is for.
    pg.keepalives(true)
        .keepalives_idle(std::time::Duration::from_secs(10))
        .keepalives_interval(std::time::Duration::from_secs(5))
        .keepalives_retries(3)
        .tcp_user_timeout(std::time::Duration::from_secs(30));
    if let Some(file) = &db.password_file {
        let password = crate::config::Secret::File(file.clone()).read().map_err(DbSetupError::PasswordFile)?;
        pg.password(password);
    }
    Ok((pg, MakeRustlsConnect::new(connector)))
}

/// libpq's TLS parameters, which tokio-postgres does not know, taken out of a URL (`postgres://…?sslmode=…`) or a
/// key=value string: the rest, and the TLS settings they make when any is present.
fn split_tls_params(url: &str) -> Result<(String, Option<DatabaseTls>), String> {
    const KEYS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];
    let mut found: Vec<(String, String)> = Vec::new();
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        match url.split_once('?') {
            None => url.to_owned(),
            Some((base, query)) => {
                let mut kept = Vec::new();
                for pair in query.split('&') {
                    match pair.split_once('=') {
                        Some((k, v)) if KEYS.contains(&k) => found.push((k.to_owned(), percent_decode(v)?)),
                        _ => kept.push(pair),
                    }
                }
                if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) }
            }
        }
    } else {
        let mut kept = Vec::new();
        for token in url.split_whitespace() {
            match token.split_once('=') {
                Some((k, v)) if KEYS.contains(&k.trim()) => found.push((k.trim().to_owned(), v.trim().to_owned())),
                _ => kept.push(token),
            }
        }
        kept.join(" ")
    };
    if found.is_empty() {
        return Ok((rest, None));
    }
    let (mut mode, mut files) = (None, TlsFiles::default());
    let mut client = (None, None);
    for (k, v) in found {
        match k.as_str() {
            "sslmode" => mode = Some(SslMode::parse(&v)?),
            // libpq's "system" means the system's roots, which is what no file means here.
            "sslrootcert" if v == "system" => {}
            "sslrootcert" => files.ca_file = Some(v.into()),
            "sslcert" => client.0 = Some(std::path::PathBuf::from(v)),
            _ => client.1 = Some(std::path::PathBuf::from(v)),
        }
    }
    files.client = match client {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => return Err("sslcert and sslkey go together".into()),
    };
    // As libpq: a URL naming files but no mode means prefer.
    Ok((rest, Some(DatabaseTls { mode: mode.unwrap_or(SslMode::Prefer), files })))
}

fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok());
            out.push(hex.ok_or_else(|| format!("bad percent escape in {text:?}"))?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{text:?} is not UTF-8 once decoded"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(url: &str) -> DatabaseConfig {
        let text = format!(
            "[nats]\nurl = \"nats://x\"\n[database]\nurl = \"{url}\"\n[[stream]]\nname = \"t\"\njetstream = \"e\"\n\
             consumer = \"c\"\nsubjects = [\"t.>\"]\nprocessor = \"telemetry\"\n"
        );
        crate::parse_config(std::path::Path::new("t.toml"), &text).unwrap().database
    }

    #[test]
    fn libpq_tls_parameters_are_taken_out_of_the_url() {
        let (rest, tls) = split_tls_params(
            "postgres://u:p@db:5432/x?application_name=a&sslmode=verify-ca&sslrootcert=%2Fetc%2Fca.pem&sslcert=/c&sslkey=/k",
        )
        .unwrap();
        assert_eq!(rest, "postgres://u:p@db:5432/x?application_name=a");
        let files = TlsFiles {
            ca_file: Some("/etc/ca.pem".into()),
            client: Some(("/c".into(), "/k".into())),
            server_name: None,
        };
        assert_eq!(tls, Some(DatabaseTls { mode: SslMode::VerifyCa, files }));
        let (rest, tls) = split_tls_params("host=db user=u sslmode=require dbname=x").unwrap();
        assert_eq!((rest.as_str(), tls.unwrap().mode), ("host=db user=u dbname=x", SslMode::Require));
        let (rest, tls) = split_tls_params("postgres://db/x?sslrootcert=system").unwrap();
        assert_eq!((rest.as_str(), tls.map(|t| t.mode)), ("postgres://db/x", Some(SslMode::Prefer)));
        assert_eq!(split_tls_params("postgres://db/x").unwrap(), ("postgres://db/x".into(), None));
        assert!(split_tls_params("postgres://db/x?sslmode=maybe").unwrap_err().contains("unknown sslmode"));
        assert!(split_tls_params("postgres://db/x?sslcert=/c").unwrap_err().contains("together"));
        assert!(split_tls_params("postgres://db/x?sslrootcert=%zz").unwrap_err().contains("percent"));
    }

    #[test]
    fn tls_is_set_in_one_place_and_files_must_be_readable() {
        let mut config = db("postgres://u@db/x?sslmode=require");
        let (pg, _) = pg_config(&config).unwrap();
        assert_eq!(pg.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
        assert_eq!(
            pg_config(&db("postgres://u@db/x")).unwrap().0.get_ssl_mode(),
            tokio_postgres::config::SslMode::Disable
        );
        config.tls = Some(DatabaseTls { mode: SslMode::Require, files: TlsFiles::default() });
        let e = pg_config(&config).unwrap_err().to_string();
        assert!(e.contains("both in the URL") && e.contains("[database.tls]"), "{e}");
        let e = pg_config(&db("postgres://u@db/x?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("database TLS: database.tls.ca_file /nonexistent/ca.pem: "), "{e}");
    }
}
