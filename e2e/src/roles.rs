//! Least-privilege PostgreSQL roles for one test: a producer role and a
//! consumer role with unique names, given their privileges on the test's
//! database by the migration step, and dropped when this value is dropped.
//! (Roles belong to the whole server, so unlike tables they outlive the
//! test database unless dropped.)

use diesel::prelude::*;
use uuid::Uuid;

use crate::database::server_url;
use crate::TestDb;

/// The two runtime roles of one test.
pub struct TestRoles {
    /// The producer's role.
    pub producer: String,
    /// The consumer's role.
    pub consumer: String,
    password: String,
    database: String,
}

impl TestRoles {
    /// Create two login roles with no privileges on `db`'s tables yet.
    pub fn create(db: &TestDb) -> Self {
        let tag = &Uuid::new_v4().simple().to_string()[..12];
        let roles = Self {
            producer: format!("test_{tag}_producer"),
            consumer: format!("test_{tag}_consumer"),
            password: Uuid::new_v4().simple().to_string(),
            database: db.name.clone(),
        };
        let mut admin = admin("postgres");
        for role in [&roles.producer, &roles.consumer] {
            diesel::sql_query(format!(
                "CREATE ROLE {role} LOGIN PASSWORD '{}'",
                roles.password
            ))
            .execute(&mut admin)
            .expect("cannot create a test role");
        }
        roles
    }

    /// A `DATABASE_URL` to `db` as `role`.
    pub fn url(&self, db: &TestDb, role: &str) -> String {
        let server = server_url();
        let (scheme, rest) = server
            .split_once("://")
            .expect("TEST_DATABASE_URL is a URL");
        let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
        format!("{scheme}://{role}:{}@{host}/{}", self.password, db.name)
    }

    /// The migration step on `db`, as the test server's user (the owner),
    /// granting both roles.
    pub fn migrate(&self, db: &TestDb) -> shared::migrate::StepReport {
        shared::migrate::step(&self.settings(db)).expect("the migration step failed")
    }

    /// The migration step's settings for `db` and these roles.
    pub fn settings(&self, db: &TestDb) -> shared::migrate::MigrateSettings {
        shared::migrate::MigrateSettings {
            database_url: db.url.clone(),
            producer_role: Some(self.producer.clone()),
            consumer_role: Some(self.consumer.clone()),
            deadline: std::time::Duration::from_secs(10),
        }
    }
}

/// A connection to `database` as the test server's user.
fn admin(database: &str) -> PgConnection {
    PgConnection::establish(&format!("{}/{database}", server_url()))
        .expect("PostgreSQL is not reachable at TEST_DATABASE_URL")
}

impl Drop for TestRoles {
    fn drop(&mut self) {
        let roles = format!("{}, {}", self.producer, self.consumer);
        // Their sessions first (a service a failed test left running), then
        // their privileges in the test database (if it is still there),
        // then the roles.
        if let Ok(mut conn) = PgConnection::establish(&format!("{}/postgres", server_url())) {
            let _ = diesel::sql_query(format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE usename IN ('{}', '{}')",
                self.producer, self.consumer
            ))
            .execute(&mut conn);
        }
        if let Ok(mut conn) =
            PgConnection::establish(&format!("{}/{}", server_url(), self.database))
        {
            let _ = diesel::sql_query(format!("DROP OWNED BY {roles}")).execute(&mut conn);
        }
        if let Ok(mut conn) = PgConnection::establish(&format!("{}/postgres", server_url())) {
            let _ = diesel::sql_query(format!("DROP ROLE IF EXISTS {roles}")).execute(&mut conn);
        }
    }
}
