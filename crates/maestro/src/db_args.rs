//! Database selection flags: `--db URL`, or Go Maestro's secret files (`--db-host-file`,
//! `--db-port-file`, `--db-user-file`, `--db-password-file`, `--db-name-file`, `--db-sslmode`,
//! `--db-rootcert`, `--db-max-open-connections`) as Go's Helm chart mounts them
//! (docs/operations.md §2.2).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

/// The default database: a SQLite file in the working directory.
pub const DEFAULT_DB_URL: &str = "sqlite://maestro.db";

/// Database selection.
#[derive(Debug, Clone, Default, Args)]
pub struct DbArgs {
    /// Database URL: `sqlite://FILE` (created if missing), `sqlite::memory:`, or
    /// `postgres://user:password@host:port/db`. Default: PostgreSQL from the `--db-*-file`
    /// secret files when `--db-host-file` is given, else `sqlite://maestro.db`.
    #[arg(long = "db", env = "MAESTRO_DB_URL")]
    pub db_url: Option<String>,
    /// File holding the PostgreSQL host (Go Maestro's flag; a mounted secret). With it the
    /// database is PostgreSQL, read from the `--db-*-file` files.
    #[arg(long, env = "MAESTRO_DB_HOST_FILE", value_name = "FILE", conflicts_with = "db_url")]
    pub db_host_file: Option<PathBuf>,
    /// File holding the PostgreSQL port (default 5432 when not given).
    #[arg(long, env = "MAESTRO_DB_PORT_FILE", value_name = "FILE", requires = "db_host_file")]
    pub db_port_file: Option<PathBuf>,
    /// File holding the PostgreSQL user.
    #[arg(long, env = "MAESTRO_DB_USER_FILE", value_name = "FILE", requires = "db_host_file")]
    pub db_user_file: Option<PathBuf>,
    /// File holding the PostgreSQL password.
    #[arg(long, env = "MAESTRO_DB_PASSWORD_FILE", value_name = "FILE", requires = "db_host_file")]
    pub db_password_file: Option<PathBuf>,
    /// File holding the PostgreSQL database name (default `maestro` when not given).
    #[arg(long, env = "MAESTRO_DB_NAME_FILE", value_name = "FILE", requires = "db_host_file")]
    pub db_name_file: Option<PathBuf>,
    /// PostgreSQL TLS mode with the secret files: `disable`, `require`, `verify-ca`,
    /// `verify-full` (Go Maestro's flag and default).
    #[arg(long, env = "MAESTRO_DB_SSLMODE", value_name = "MODE", default_value = "disable")]
    pub db_sslmode: String,
    /// PEM CA of the PostgreSQL server, for `--db-sslmode verify-ca|verify-full` (Go Maestro's
    /// flag); used only when the file exists, as Go does.
    #[arg(long, env = "MAESTRO_DB_ROOTCERT", value_name = "FILE")]
    pub db_rootcert: Option<PathBuf>,
    /// Largest number of PostgreSQL connections this process opens (Go Maestro's flag).
    /// Default: 16.
    #[arg(long, env = "MAESTRO_DB_MAX_OPEN_CONNECTIONS", value_name = "N")]
    pub db_max_open_connections: Option<u32>,
}

impl DbArgs {
    /// The database URL these flags select.
    ///
    /// # Errors
    /// A secret file that cannot be read or is empty, an unknown `--db-sslmode`.
    pub fn url(&self) -> anyhow::Result<String> {
        let mut url = match (&self.db_url, &self.db_host_file) {
            (Some(url), _) => url.clone(),
            (None, Some(host)) => self.url_from_files(host)?,
            (None, None) => DEFAULT_DB_URL.to_owned(),
        };
        if let Some(n) = self.db_max_open_connections {
            anyhow::ensure!(n > 0, "--db-max-open-connections must be at least 1");
            anyhow::ensure!(
                url.starts_with("postgres"),
                "--db-max-open-connections needs a PostgreSQL database"
            );
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(&format!("{}={n}", maestro_store::postgres::MAX_CONNECTIONS_PARAM));
        }
        Ok(url)
    }

    /// A `postgres://` URL from the secret files.
    fn url_from_files(&self, host_file: &Path) -> anyhow::Result<String> {
        const MODES: [&str; 4] = ["disable", "require", "verify-ca", "verify-full"];
        let mode = self.db_sslmode.as_str();
        anyhow::ensure!(MODES.contains(&mode), "--db-sslmode {mode:?} is not one of {}", MODES.join(", "));
        let host = secret(host_file)?;
        let port = self.db_port_file.as_deref().map(secret).transpose()?.unwrap_or_else(|| "5432".into());
        anyhow::ensure!(port.parse::<u16>().is_ok(), "the port in --db-port-file is not a port: {port:?}");
        let name = self.db_name_file.as_deref().map(secret).transpose()?.unwrap_or_else(|| "maestro".into());
        let mut url = url::Url::parse("postgres://localhost/").context("the URL template")?;
        url.set_host(Some(&host))
            .with_context(|| format!("the host in --db-host-file is not a host: {host:?}"))?;
        let _ = url.set_port(port.parse().ok());
        if let Some(user) = self.db_user_file.as_deref().map(secret).transpose()? {
            let _ = url.set_username(&user);
        }
        // An empty password file means no password (trust or peer authentication).
        if let Some(path) = self.db_password_file.as_deref() {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            let password = text.trim();
            if !password.is_empty() {
                let _ = url.set_password(Some(password));
            }
        }
        url.set_path(&name);
        url.query_pairs_mut().append_pair("sslmode", mode);
        if let Some(ca) = self.db_rootcert.as_deref().filter(|p| p.exists()) {
            url.query_pairs_mut().append_pair("sslrootcert", &ca.to_string_lossy());
        }
        Ok(url.to_string())
    }
}

/// A secret file's content without surrounding white space (mounted secrets often end in a
/// newline).
fn secret(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let value = text.trim().to_owned();
    anyhow::ensure!(!value.is_empty(), "{} is empty", path.display());
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    #[test]
    fn secret_files_make_a_postgres_url() {
        let dir = tempfile::tempdir().expect("dir");
        let d = dir.path();
        let args = DbArgs {
            db_host_file: Some(write(d, "db.host", "db.example.com\n")),
            db_port_file: Some(write(d, "db.port", "6543\n")),
            db_user_file: Some(write(d, "db.user", "maestro")),
            db_password_file: Some(write(d, "db.password", "p@ss word\n")),
            db_name_file: Some(write(d, "db.name", "fleet")),
            db_sslmode: "verify-full".into(),
            db_rootcert: Some(write(d, "db.ca", "PEM")),
            db_max_open_connections: Some(50),
            ..Default::default()
        };
        let url = args.url().expect("url");
        let parsed = url::Url::parse(&url).expect("a URL");
        assert_eq!(parsed.host_str(), Some("db.example.com"));
        assert_eq!((parsed.port(), parsed.username(), parsed.path()), (Some(6543), "maestro", "/fleet"));
        assert_eq!(parsed.password(), Some("p%40ss%20word"), "the password is escaped");
        let query: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
        let ca = d.join("db.ca").to_string_lossy().into_owned();
        assert_eq!(
            query,
            [
                ("sslmode".into(), "verify-full".into()),
                ("sslrootcert".into(), ca),
                ("max_connections".into(), "50".into())
            ]
        );
    }

    #[test]
    fn bad_secret_files_are_named() {
        let dir = tempfile::tempdir().expect("dir");
        let host = write(dir.path(), "db.host", " \n");
        let args = DbArgs { db_host_file: Some(host), db_sslmode: "disable".into(), ..Default::default() };
        assert!(args.url().expect_err("empty").to_string().ends_with("db.host is empty"));
        let missing = DbArgs {
            db_host_file: Some(dir.path().join("nope")),
            db_sslmode: "disable".into(),
            ..Default::default()
        };
        assert!(format!("{:#}", missing.url().expect_err("missing")).contains("nope"));
        let mode = DbArgs {
            db_host_file: Some(write(dir.path(), "h", "db")),
            db_sslmode: "sometimes".into(),
            ..Default::default()
        };
        assert!(mode.url().expect_err("mode").to_string().contains("--db-sslmode \"sometimes\""));
    }

    #[test]
    fn the_default_is_sqlite_and_a_url_wins() {
        assert_eq!(DbArgs::default().url().expect("url"), DEFAULT_DB_URL);
        let args = DbArgs { db_url: Some("postgres://h/db".into()), ..Default::default() };
        assert_eq!(args.url().expect("url"), "postgres://h/db");
    }
}
