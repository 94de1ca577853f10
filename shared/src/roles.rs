//! Least privilege in PostgreSQL: what the producer's and the consumer's
//! roles may do, granted by the migration step (`producer migrate`), which
//! runs as the schema's owner.
//!
//! The runtime roles get table privileges only: no DDL (no `CREATE` on the
//! schema or the database), never the owner (only an owner may `DROP`,
//! `ALTER` or `TRUNCATE`), never superuser. Each table's privileges are
//! listed here, table by table, rather than given by `ALTER DEFAULT
//! PRIVILEGES`: a table a future migration adds gets no access until a line
//! here says which role needs what (the e2e test `every_table_has_grants`
//! fails until then), and the migration step, which runs after every
//! migration, grants it. Functions need nothing: PostgreSQL lets every role
//! execute them, and ours run with the caller's privileges (no `SECURITY
//! DEFINER`), so they can do only what these grants allow. No table has a
//! sequence today; a role that inserts gets `USAGE` on the schema's
//! sequences, present and (default privileges) future, for tables that
//! will: `USAGE` only draws numbers.

use diesel::prelude::*;
use diesel::sql_types::{Bool, Text};

/// Serialises grants across migration steps started together (two `GRANT`s
/// on one table at once can fail with "tuple concurrently updated").
const GRANT_LOCK_KEY: i64 = 0x6d73_6773_6772_6e74; // "msgsgrnt"

/// A role the pipeline's binaries connect as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// The HTTP API: reads everything, records idempotency keys, and the
    /// dead-letter and webhook admin tools.
    Producer,
    /// Stores messages, dead letters, batches, and delivers webhooks.
    Consumer,
}

impl Runtime {
    /// For messages: `producer` or `consumer`.
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Producer => "producer",
            Runtime::Consumer => "consumer",
        }
    }
}

/// Table privileges: (table, producer's, consumer's). Empty: no access.
///
/// * producer: `messages`, `dead_letters`, `batches`, `webhook_deliveries`
///   are read by the API; `idempotency_keys` bound (insert; an expired
///   binding is replaced: update) and pruned (delete); a redrive
///   deletes a dead-letter record (puts it back if the publish fails) and
///   reopens or settles its batch (`db::batches::settle` updates the
///   batch and owes its `batch.completed` notification); the webhook admin
///   tools set failed deliveries pending again.
/// * consumer: inserts messages, dead letters (upsert: insert, update) and
///   batches; settling a batch updates it; the outbox is claimed and
///   updated by the deliverer; the retention deletes what is past its age
///   from dead letters, batches and the outbox.
/// * scheduled messages: the producer schedules them (insert), its
///   dispatcher claims and marks them, `DELETE /messages/{id}` cancels
///   (update), its retention prunes them (delete); the consumer marks the
///   ones it stores delivered (update) after reading their state.
/// * both read `__diesel_schema_migrations`, to check at startup that the
///   schema is migrated.
pub const TABLE_PRIVILEGES: [(&str, &str, &str); 7] = [
    ("messages", "SELECT", "SELECT, INSERT"),
    (
        "dead_letters",
        "SELECT, INSERT, DELETE",
        "SELECT, INSERT, UPDATE, DELETE",
    ),
    ("idempotency_keys", "SELECT, INSERT, UPDATE, DELETE", ""),
    (
        "batches",
        "SELECT, UPDATE",
        "SELECT, INSERT, UPDATE, DELETE",
    ),
    (
        "webhook_deliveries",
        "SELECT, INSERT, UPDATE",
        "SELECT, INSERT, UPDATE, DELETE",
    ),
    (
        "scheduled_messages",
        "SELECT, INSERT, UPDATE, DELETE",
        "SELECT, UPDATE",
    ),
    ("__diesel_schema_migrations", "SELECT", "SELECT"),
];

/// Why a role cannot be given its grants.
#[derive(Debug, thiserror::Error)]
pub enum RoleError {
    /// The role does not exist (the compose init script or the operator
    /// creates it; see docs/security.md, "Least privilege").
    #[error("the {runtime} role {role:?} does not exist: create it first (CREATE ROLE {role} LOGIN PASSWORD '…')")]
    Missing {
        /// Which binary's.
        runtime: &'static str,
        /// Its name.
        role: String,
    },
    /// The role can do more than a runtime role may, whatever is granted.
    #[error(
        "the {runtime} role {role:?} {why}: give the {runtime} a role of its own, not the owner's"
    )]
    TooPowerful {
        /// Which binary's.
        runtime: &'static str,
        /// Its name.
        role: String,
        /// What it can do.
        why: &'static str,
    },
    /// A statement failed.
    #[error("granting the {runtime} role {role:?} its privileges failed: {source}")]
    Query {
        /// Which binary's.
        runtime: &'static str,
        /// Its name.
        role: String,
        /// The database error.
        source: diesel::result::Error,
    },
}

#[derive(QueryableByName)]
struct Powers {
    #[diesel(sql_type = Bool)]
    superuser: bool,
    #[diesel(sql_type = Bool)]
    owner: bool,
    #[diesel(sql_type = Bool)]
    create_in_schema: bool,
    #[diesel(sql_type = Bool)]
    create_in_database: bool,
}

/// `name` as an SQL identifier, whatever characters it has.
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Check that `role` exists and is no more than a runtime role, then give
/// it exactly its privileges on this database's tables (revoking any
/// other table privilege first), in one transaction: a running binary never
/// sees its privileges missing.
pub fn grant(conn: &mut PgConnection, runtime: Runtime, role: &str) -> Result<(), RoleError> {
    let query = |source| RoleError::Query {
        runtime: runtime.name(),
        role: role.to_owned(),
        source,
    };
    check_powers(conn, runtime, role)?;
    let quoted = quote_identifier(role);
    conn.transaction(|conn| {
        diesel::sql_query(format!("SELECT pg_advisory_xact_lock({GRANT_LOCK_KEY})"))
            .execute(conn)?;
        let schema = current_schema(conn)?;
        let statements = [
            format!("GRANT USAGE ON SCHEMA {schema} TO {quoted}"),
            format!("REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {quoted}"),
            format!("REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema} FROM {quoted}"),
        ];
        for statement in statements {
            diesel::sql_query(statement).execute(conn)?;
        }
        let mut inserts = false;
        for (table, producer, consumer) in TABLE_PRIVILEGES {
            let privileges = match runtime {
                Runtime::Producer => producer,
                Runtime::Consumer => consumer,
            };
            if privileges.is_empty() {
                continue;
            }
            inserts |= privileges.contains("INSERT");
            diesel::sql_query(format!(
                "GRANT {privileges} ON {schema}.{} TO {quoted}",
                quote_identifier(table)
            ))
            .execute(conn)?;
        }
        if runtime == Runtime::Consumer {
            // The consumers' retention creates and drops the partitions of
            // messages through these two (they run as their owner, and do
            // nothing else); PUBLIC may not run them.
            diesel::sql_query(format!(
                "GRANT EXECUTE ON FUNCTION {schema}.pipeline_create_message_partition(timestamptz, timestamptz), \
                 {schema}.pipeline_drop_message_partitions(timestamptz) TO {quoted}"
            ))
            .execute(conn)?;
        }
        if inserts {
            // Sequences now and to come (identity and serial columns):
            // the default privileges cover one created after this step,
            // by the owner running it, before the next step runs.
            for statement in [
                format!("GRANT USAGE ON ALL SEQUENCES IN SCHEMA {schema} TO {quoted}"),
                format!(
                    "ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT USAGE ON SEQUENCES TO {quoted}"
                ),
            ] {
                diesel::sql_query(statement).execute(conn)?;
            }
        }
        Ok(())
    })
    .map_err(query)
}

/// Refuse a role that could change the schema whatever is granted: a
/// superuser, a member of the schema's or the database's owner, or one
/// that may create objects (PostgreSQL before 15 lets every role create
/// in `public` until `REVOKE CREATE ON SCHEMA public FROM PUBLIC`).
fn check_powers(conn: &mut PgConnection, runtime: Runtime, role: &str) -> Result<(), RoleError> {
    let powers = diesel::sql_query(
        "SELECT r.rolsuper AS superuser,
                pg_has_role(r.oid, n.nspowner, 'MEMBER')
                    OR pg_has_role(r.oid, d.datdba, 'MEMBER') AS owner,
                has_schema_privilege(r.oid, n.oid, 'CREATE') AS create_in_schema,
                has_database_privilege(r.oid, d.oid, 'CREATE') AS create_in_database
           FROM pg_roles r, pg_namespace n, pg_database d
          WHERE r.rolname = $1 AND n.nspname = current_schema()
            AND d.datname = current_database()",
    )
    .bind::<Text, _>(role)
    .get_result::<Powers>(conn)
    .optional()
    .map_err(|source| RoleError::Query {
        runtime: runtime.name(),
        role: role.to_owned(),
        source,
    })?;
    let Some(powers) = powers else {
        return Err(RoleError::Missing {
            runtime: runtime.name(),
            role: role.to_owned(),
        });
    };
    let why = if powers.superuser {
        "is a superuser"
    } else if powers.owner {
        "owns the schema or the database (or is a member of their owner)"
    } else if powers.create_in_schema {
        "may create tables in the schema (before PostgreSQL 15 every role may: REVOKE CREATE ON SCHEMA public FROM PUBLIC)"
    } else if powers.create_in_database {
        "may create schemas in the database (REVOKE CREATE ON DATABASE … FROM it)"
    } else {
        return Ok(());
    };
    Err(RoleError::TooPowerful {
        runtime: runtime.name(),
        role: role.to_owned(),
        why,
    })
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

/// The schema migrations create tables in, quoted.
fn current_schema(conn: &mut PgConnection) -> QueryResult<String> {
    diesel::sql_query("SELECT current_schema() AS name")
        .get_result::<Name>(conn)
        .map(|n| quote_identifier(&n.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_whatever_they_hold() {
        assert_eq!(
            quote_identifier("pipeline_producer"),
            "\"pipeline_producer\""
        );
        assert_eq!(
            quote_identifier("a\"; DROP TABLE x; --"),
            "\"a\"\"; DROP TABLE x; --\""
        );
    }

    #[test]
    fn only_known_privileges_are_granted() {
        // Never DDL-like privileges (TRUNCATE, REFERENCES, TRIGGER), never ALL.
        for (table, producer, consumer) in TABLE_PRIVILEGES {
            for privileges in [producer, consumer] {
                for privilege in privileges
                    .split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                {
                    assert!(
                        ["SELECT", "INSERT", "UPDATE", "DELETE"].contains(&privilege),
                        "{table}: {privilege}"
                    );
                }
            }
        }
    }
}
