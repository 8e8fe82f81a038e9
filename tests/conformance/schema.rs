//! Migrations and opening a database.

use super::*;
use crate::common::{backend_test, TestDb};

backend_test!(
    fn migrate_is_idempotent(db: &TestDb) {
        assert_eq!(db.store.migrate().expect("second migrate"), 0);
        let again = db.connect_again();
        assert_eq!(again.migrate().expect("migrate from another store"), 0);
    }
);

#[test]
fn unreachable_postgres_server_gives_a_connection_error_within_the_timeout() {
    let started = Instant::now();
    let result = Store::connect(&DatabaseUrl::Postgres("postgres://postgres@127.0.0.1:1/solidq".into()), 1);
    assert!(matches!(result, Err(solidq::store::StoreError::Connection { .. })), "expected a connection error");
    assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());
}

#[test]
fn sqlite_open_reports_a_directory_it_cannot_create() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let result = Store::connect(&DatabaseUrl::Sqlite(blocker.join("db.sqlite3")), 1);
    assert!(matches!(result, Err(solidq::store::StoreError::Connection { .. })));
}

/// What only PostgreSQL has: session locks, `SKIP LOCKED`, row locks between claims and reaps.
mod postgres_only {
    use super::*;

    #[test]
    fn migrations_create_the_tables_in_the_url_schema() {
        let Some(db) = TestDb::postgres() else { return };
        migrations_create_the_tables_in_the_url_schema_on(&db);
    }
}

fn migrations_create_the_tables_in_the_url_schema_on(db: &TestDb) {
    let mut conn = PgConnection::establish(db.postgres_url().unwrap()).unwrap();
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        schema: String,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        tables: i64,
    }
    let row: Row = diesel::RunQueryDsl::get_result(
        diesel::sql_query(
            "SELECT current_schema() AS schema, (SELECT count(*) FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name LIKE 'solidq\\_%') AS tables",
        ),
        &mut conn,
    )
    .unwrap();
    assert!(row.schema.starts_with("solidq_t_"), "{}", row.schema);
    assert_eq!(
        row.tables, 16,
        "11 tables, solidq_leaders, solidq_batches, solidq_job_dependencies, solidq_waiting_executions and solidq_rate_limit_starts"
    );
}

/// What only MySQL/MariaDB has: a database per namespace, collations.
#[cfg(feature = "mysql")]
mod mysql_only {
    use super::*;

    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }

    fn count(db: &TestDb, sql: &str) -> i64 {
        let url = db.mysql_url().unwrap();
        let mut conn = crate::common::mysql_connection(url);
        let row: Count = diesel::RunQueryDsl::get_result(diesel::sql_query(sql), &mut conn).unwrap();
        row.n
    }

    /// The URL's database holds the tables: the eleven of every backend and
    /// `solidq_concurrency_locks`, which only MySQL needs.
    #[test]
    fn migrations_create_the_tables_in_the_url_database() {
        let Some(db) = TestDb::mysql() else { return };
        let tables = count(
            &db,
            "SELECT CAST(COUNT(*) AS SIGNED) AS n FROM information_schema.tables \
             WHERE table_schema = DATABASE() AND table_name LIKE 'solidq\\_%'",
        );
        assert_eq!(tables, 17, "the 16 of the other backends and solidq_concurrency_locks");
        // Migrating again changes nothing.
        db.store.migrate().unwrap();
        assert!(db.mysql_url().unwrap().contains("/solidq_t_"));
    }

    /// Every text column compares byte for byte (`utf8mb4_bin`): MySQL's default collation is
    /// case-insensitive and would merge `A` and `a`.
    #[test]
    fn every_text_column_compares_byte_for_byte() {
        let Some(db) = TestDb::mysql() else { return };
        let text_columns = count(
            &db,
            "SELECT CAST(COUNT(*) AS SIGNED) AS n FROM information_schema.columns \
             WHERE table_schema = DATABASE() AND table_name LIKE 'solidq\\_%' AND collation_name IS NOT NULL",
        );
        assert!(text_columns > 20, "{text_columns} text columns");
        let other = count(
            &db,
            "SELECT CAST(COUNT(*) AS SIGNED) AS n FROM information_schema.columns \
             WHERE table_schema = DATABASE() AND table_name LIKE 'solidq\\_%' \
             AND collation_name IS NOT NULL AND collation_name <> 'utf8mb4_bin'",
        );
        assert_eq!(other, 0, "text columns with another collation");
        let times = count(
            &db,
            "SELECT CAST(COUNT(*) AS SIGNED) AS n FROM information_schema.columns \
             WHERE table_schema = DATABASE() AND table_name LIKE 'solidq\\_%' AND data_type = 'timestamp'",
        );
        assert_eq!(times, 0, "TIMESTAMP ends in 2038: times are DATETIME(6)");
    }
}

#[test]
fn sqlite_errors_from_the_file_name_the_path_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let as_directory = dir.path().join("jobs.sqlite3");
    std::fs::create_dir(&as_directory).unwrap();
    let err = Store::connect(&DatabaseUrl::Sqlite(as_directory.clone()), 1).unwrap_err().to_string();
    assert!(err.contains(&format!("cannot open the SQLite database {}", as_directory.display())), "{err}");
    assert!(err.contains("it is a directory"), "{err}");
}
