//! What to make of a database failure: [`DbError`] (no connection, a failed
//! statement, a failed blocking task) and its classification, by Diesel's
//! error kind ([`DbError::is_transient`]) or by SQLSTATE ([`FailureClass`],
//! for the row-by-row outcomes of [`RowOutcome`]).

use diesel::r2d2::PoolError;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

/// A database failure: no connection could be had, a query failed, or the
/// blocking task running the call died.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No connection within the checkout timeout (database down or pool exhausted).
    #[error("database connection unavailable: {0}")]
    Pool(#[from] PoolError),
    /// The statement failed.
    #[error("database query failed: {0}")]
    Query(#[from] DieselError),
    /// The blocking task running the call panicked or was cancelled (a bug,
    /// or the runtime shutting down): nothing to retry.
    #[error("database task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl DbError {
    /// True when the failure says nothing about the data: the database is
    /// down, restarting, read-only, or the transaction lost a race. Retrying
    /// the same statement later is expected to succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            DbError::Pool(_) => true,
            DbError::Query(DieselError::DatabaseError(kind, _)) => matches!(
                kind,
                DatabaseErrorKind::ClosedConnection
                    | DatabaseErrorKind::UnableToSendCommand
                    | DatabaseErrorKind::SerializationFailure
                    | DatabaseErrorKind::ReadOnlyTransaction
            ),
            DbError::Query(DieselError::BrokenTransactionManager) => true,
            DbError::Query(_) | DbError::Task(_) => false,
        }
    }

    /// True when the database rejected the row itself, for a reason that
    /// will not change on retry (a CHECK or NOT NULL constraint).
    pub fn is_rejection(&self) -> bool {
        matches!(
            self,
            DbError::Query(DieselError::DatabaseError(
                DatabaseErrorKind::CheckViolation | DatabaseErrorKind::NotNullViolation,
                _
            ))
        )
    }

    /// True when PostgreSQL itself raised the error (whatever its SQLSTATE),
    /// as opposed to a failure to get a connection or to decode a row.
    pub fn is_database_error(&self) -> bool {
        matches!(self, DbError::Query(DieselError::DatabaseError(..)))
    }

    /// The primary message of a statement's error, to compare two failures.
    pub fn message(&self) -> String {
        match self {
            DbError::Query(DieselError::DatabaseError(_, info)) => info.message().to_owned(),
            other => other.to_string(),
        }
    }
}

/// What to make of a failure, by SQLSTATE class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// The database, not the row: connection (08), transaction rollback
    /// such as deadlock or serialization (40), insufficient resources such
    /// as a full disk or too many connections (53), operator intervention
    /// such as a statement timeout or shutdown (57), system error (58).
    /// Retrying the same row later is expected to work.
    Transient,
    /// The row itself: data exception (22) or integrity violation (23).
    /// It will fail the same way every time.
    Rejection,
    /// Anything else (a trigger's own exception, ...): retried a few
    /// times through the delay queues, then given up.
    Unknown,
}

impl FailureClass {
    /// The class of a five-character SQLSTATE.
    pub fn of_sqlstate(sqlstate: &str) -> FailureClass {
        match sqlstate.get(..2) {
            Some("08" | "40" | "53" | "57" | "58") => FailureClass::Transient,
            Some("22" | "23") => FailureClass::Rejection,
            _ => FailureClass::Unknown,
        }
    }
}

/// What storing one row through `pipeline_try_insert` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowOutcome {
    /// A new row.
    Inserted,
    /// The id was already stored.
    Duplicate,
    /// The insert failed with this SQLSTATE and message.
    Failed {
        /// The five-character SQLSTATE.
        sqlstate: String,
        /// PostgreSQL's message (may name constraints: log it, never
        /// show it to clients).
        message: String,
    },
}

impl RowOutcome {
    /// Read the text `pipeline_try_insert` returns.
    pub(crate) fn parse(text: &str) -> RowOutcome {
        match text {
            "inserted" => RowOutcome::Inserted,
            "duplicate" => RowOutcome::Duplicate,
            other => {
                let rest = other.strip_prefix("error:").unwrap_or(other);
                let (sqlstate, message) = rest.split_once(':').unwrap_or(("XX000", rest));
                RowOutcome::Failed {
                    sqlstate: sqlstate.to_owned(),
                    message: message.to_owned(),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_and_classes() {
        assert_eq!(RowOutcome::parse("inserted"), RowOutcome::Inserted);
        assert_eq!(
            RowOutcome::parse("error:23514:new row violates check: x"),
            RowOutcome::Failed {
                sqlstate: "23514".into(),
                message: "new row violates check: x".into()
            }
        );
        assert_eq!(FailureClass::of_sqlstate("53100"), FailureClass::Transient);
        assert_eq!(FailureClass::of_sqlstate("23505"), FailureClass::Rejection);
        assert_eq!(FailureClass::of_sqlstate("P0001"), FailureClass::Unknown);
    }
}
