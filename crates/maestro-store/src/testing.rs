//! Test helpers shared by every crate's tests: fresh PostgreSQL databases and file-backed
//! SQLite URLs. Not for production use; the helpers panic on setup failures.

use sqlx::{AssertSqlSafe, Connection, PgConnection};

/// The environment variable holding a PostgreSQL admin URL (a role allowed to
/// `CREATE DATABASE`), e.g. `postgres://postgres@127.0.0.1:5432/postgres`.
pub const DATABASE_URL_ENV: &str = "MAESTRO_TEST_DATABASE_URL";

/// Creates a fresh, empty database `maestro_test_<uuid>` on the server named by
/// [`DATABASE_URL_ENV`] and returns its URL (not migrated; [`crate::open`] migrates). The
/// database is left behind after the test; the throwaway test cluster is discarded as a whole.
///
/// # Panics
/// When `MAESTRO_TEST_DATABASE_URL` is not set (with a hint on how to start a server), is not a
/// URL, or the database cannot be created.
pub async fn postgres_url() -> String {
    let Ok(admin) = std::env::var(DATABASE_URL_ENV) else {
        panic!(
            "MAESTRO_TEST_DATABASE_URL is not set: run scripts/test.sh, or eval \"$(scripts/pg-start.sh)\" first"
        );
    };
    fresh_postgres_database(&admin, "maestro_test").await.unwrap_or_else(|e| panic!("{e}"))
}

/// Creates an empty database `<prefix>_<uuid>` on the PostgreSQL server of `admin` (a URL
/// whose user may create databases) and returns its URL.
///
/// # Errors
/// A message naming the server (password redacted) when it cannot connect or create it.
pub async fn fresh_postgres_database(admin: &str, prefix: &str) -> Result<String, String> {
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    on_admin(admin, &format!("CREATE DATABASE \"{name}\""))
        .await
        .map_err(|e| format!("cannot create database {name}: {e}"))?;
    let mut url =
        url::Url::parse(admin).map_err(|e| format!("{} is not a URL: {e}", crate::redact(admin)))?;
    url.set_path(&format!("/{name}"));
    Ok(url.to_string())
}

/// Drops the database named by the path of `url` on the PostgreSQL server of `admin`,
/// closing its connections (`DROP DATABASE IF EXISTS … WITH (FORCE)`, PostgreSQL 13+).
///
/// # Errors
/// A message naming the database when `url` names none, or it cannot be dropped.
pub async fn drop_postgres_database(admin: &str, url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("{} is not a URL: {e}", crate::redact(url)))?;
    let name = parsed.path().trim_start_matches('/');
    if name.is_empty() || name.contains('"') {
        return Err(format!("{} names no database to drop", crate::redact(url)));
    }
    on_admin(admin, &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await
        .map_err(|e| format!("cannot drop database {name}: {e}"))
}

/// Runs one statement on its own connection to the server of `admin`, then closes it (best
/// effort: the statement's effect stands either way).
async fn on_admin(admin: &str, sql: &str) -> Result<(), String> {
    let mut conn = PgConnection::connect(admin)
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", crate::redact(admin)))?;
    let done = sqlx::query(AssertSqlSafe(sql.to_owned())).execute(&mut conn).await.map_err(|e| e.to_string());
    let _ = conn.close().await;
    done.map(|_| ())
}

/// A fresh temporary directory and a `sqlite://…/maestro.db` URL inside it (the file does not
/// exist yet; [`crate::open`] creates it). Keep the directory alive for as long as the store
/// is used: dropping it deletes the database.
///
/// # Panics
/// When the temporary directory cannot be created.
pub async fn sqlite_file() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
    let url = format!("sqlite://{}", dir.path().join("maestro.db").display());
    (dir, url)
}
