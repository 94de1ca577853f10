//! A throwaway PostgreSQL database per test.

use diesel::prelude::*;
use diesel::sql_types::BigInt;
use uuid::Uuid;

/// Base URL of the test server (no database name).
pub fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://root@127.0.0.1:5432".into())
}

/// A database created for one test and dropped (with its connections) when
/// this value is dropped.
pub struct TestDb {
    /// The database name.
    pub name: String,
    /// A URL to it.
    pub url: String,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

impl TestDb {
    /// Create an empty database; the services migrate it when they start.
    pub fn new() -> Self {
        let name = format!("test_{}", Uuid::new_v4().simple());
        let mut admin = PgConnection::establish(&format!("{}/postgres", server_url()))
            .expect("PostgreSQL is not reachable at TEST_DATABASE_URL");
        diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .expect("cannot create the test database");
        let url = format!("{}/{name}", server_url());
        Self { name, url }
    }

    /// A fresh connection to the test database.
    pub fn connect(&self) -> PgConnection {
        PgConnection::establish(&self.url).expect("cannot connect to the test database")
    }

    /// Run one SQL statement on a fresh connection (DDL, a row put in by
    /// hand).
    pub fn execute(&self, sql: &str) {
        diesel::sql_query(sql)
            .execute(&mut self.connect())
            .expect("statement failed");
    }

    /// The URL of this database through `proxy` (a proxy to the test server).
    pub fn url_through(&self, proxy: &crate::proxy::TcpProxy) -> String {
        self.url
            .replacen("127.0.0.1:5432", &proxy.addr.to_string(), 1)
    }

    /// Rows in `messages`.
    pub fn count(&self) -> i64 {
        self.scalar("SELECT count(*) AS n FROM messages")
    }

    /// Distinct ids in `messages` (equal to `count` unless something was stored twice).
    pub fn distinct_ids(&self) -> i64 {
        self.scalar("SELECT count(DISTINCT id) AS n FROM messages")
    }

    /// Run a `SELECT … AS n` returning one bigint.
    pub fn scalar(&self, sql: &str) -> i64 {
        diesel::sql_query(sql)
            .get_result::<Count>(&mut self.connect())
            .expect("query failed")
            .n
    }

    /// Every stored message.
    pub fn messages(&self) -> Vec<shared::db::messages::Message> {
        use shared::schema::messages::dsl::*;
        messages
            .select(shared::db::messages::Message::as_select())
            .load(&mut self.connect())
            .expect("query failed")
    }
}

impl Default for TestDb {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut admin) = PgConnection::establish(&format!("{}/postgres", server_url())) {
            // FORCE (PostgreSQL 13+) ends the services' pooled connections.
            let _ = diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ))
            .execute(&mut admin);
        }
    }
}
