//! PostgreSQL for Strata: connections (with TLS as `sslmode` asks), `COPY … (FORMAT binary)`
//! decoded straight into Arrow record batches, CSV loads in one transaction, and
//! [`PostgresWarehouse`], which builds a project's models inside a PostgreSQL database.
//!
//! Ingestion (`strata-ingest`) reads sources through the same connections and decoder.

pub mod binary;
pub mod load;
pub mod tls;
pub mod types;
pub mod warehouse;

use std::time::Duration;

use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{Client, Config, NoTls, Socket};

pub use warehouse::{Endpoint, PostgresOptions, PostgresWarehouse};

/// A message about `e` that never holds a password.
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{} ({detail})", db.message()),
            None => db.message().to_string(),
        },
        None => {
            let text = e.to_string();
            match std::error::Error::source(e) {
                Some(cause) if !text.contains(&cause.to_string()) => format!("{text}: {cause}"),
                _ => text,
            }
        }
    }
}

/// The server as messages show it: `host:port/database`.
pub fn server_name(config: &Config) -> String {
    format!(
        "{}:{}/{}",
        match config.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            Some(Host::Unix(p)) => p.display().to_string(),
            None => "localhost".into(),
        },
        config.get_ports().first().copied().unwrap_or(5432),
        config
            .get_dbname()
            .or(config.get_user())
            .unwrap_or_default()
    )
}

/// Settings every connection of ours gets: a connect timeout (10 s unless given), the
/// application name, and the `sslmode` in the config's own terms.
pub fn finish_config(config: &mut Config, mode: &str) {
    config.ssl_mode(match mode {
        "disable" => SslMode::Disable,
        "require" => SslMode::Require,
        _ => SslMode::Prefer,
    });
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    config.application_name("strata");
}

/// The connection settings of a libpq-style url (`sslmode` and `sslrootcert` in it; a
/// password not in the url comes from `PGPASSWORD`, as libpq reads it).
pub fn config_from_url(url: &str) -> Result<(Config, tls::Tls), String> {
    let (plain, sslmode, root) = tls::from_url(url)?;
    let mut config: Config = plain
        .parse()
        .map_err(|_| "not a PostgreSQL url (postgresql://user@host:port/database)".to_string())?;
    let (tls, mode) = tls::mode(sslmode.as_deref(), root)?;
    finish_config(&mut config, mode);
    if config.get_password().is_none()
        && let Ok(password) = std::env::var("PGPASSWORD")
    {
        config.password(password);
    }
    Ok((config, tls))
}

/// Open a connection with `tls`, its messages handled on a task of their own.
async fn open<T>(config: &Config, tls: T) -> Result<Client, tokio_postgres::Error>
where
    T: MakeTlsConnect<Socket> + Send + 'static,
    T::Stream: Send + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    let (client, connection) = config.connect(tls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("postgres connection closed: {}", describe(&e));
        }
    });
    Ok(client)
}

/// Connect, retrying a refused or timed-out connection (never a refused login or an
/// untrusted certificate). The error says why, without the password.
pub async fn connect(config: &Config, tls: &tls::Tls) -> Result<Client, String> {
    let connector = match tls {
        tls::Tls::Off => None,
        other => Some(tls::connector(other)?),
    };
    let mut delay = Duration::from_millis(250);
    let mut attempt = 1;
    loop {
        let opened = match &connector {
            None => open(config, NoTls).await,
            Some(c) => open(config, c.clone()).await,
        };
        match opened {
            Ok(client) => return Ok(client),
            Err(e) if e.as_db_error().is_none() && attempt < 3 && !is_tls_error(&e) => {
                tracing::debug!(
                    "connecting to {} failed ({}), retrying",
                    server_name(config),
                    describe(&e)
                );
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            Err(e) => return Err(describe(&e)),
        }
    }
}

/// Whether a connection failed in the TLS handshake (a certificate not trusted: trying
/// again will not help).
fn is_tls_error(e: &tokio_postgres::Error) -> bool {
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        if c.to_string().contains("certificate") {
            return true;
        }
        cause = c.source();
    }
    false
}

/// A SQL string literal.
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A quoted identifier.
pub fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}
