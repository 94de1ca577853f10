//! The webhook bodies built in Rust are the bytes the SQL functions of the
//! previous version wrote (those functions stay, for consumers of that
//! version during a rolling upgrade, so they serve here as the oracle):
//! each event is owed once by the old function in a transaction rolled
//! back, once by the new code, and the two bodies compared with their
//! clock readings masked. A message's body has gained its `kind` (issue
//! 17), after the id, in jsonb's key order: the one difference allowed.
//!

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Text, Timestamptz};
use e2e::TestDb;
use shared::db::dead_letters::{self, DeadLetter};
use shared::envelope::{BatchRef, Extras};
use shared::Envelope;
use uuid::Uuid;

const URL: &str = "http://127.0.0.1:9/hook";

#[derive(QueryableByName)]
struct Owed {
    #[diesel(sql_type = Text)]
    payload: String,
    #[diesel(sql_type = Text)]
    event_type: String,
}

/// The newest body owed about `subject`.
fn payload_of(conn: &mut PgConnection, subject: Uuid) -> (String, String) {
    let owed: Owed = diesel::sql_query(
        "SELECT payload, event_type FROM webhook_deliveries WHERE subject_id = $1
          ORDER BY created_at DESC, ctid DESC LIMIT 1",
    )
    .bind::<diesel::sql_types::Uuid, _>(subject)
    .get_result(conn)
    .unwrap();
    (owed.event_type, owed.payload)
}

#[derive(QueryableByName)]
struct At {
    #[diesel(sql_type = Timestamptz)]
    at: DateTime<Utc>,
}

fn time_of(conn: &mut PgConnection, sql: &str, id: Uuid) -> DateTime<Utc> {
    diesel::sql_query(sql)
        .bind::<diesel::sql_types::Uuid, _>(id)
        .get_result::<At>(conn)
        .unwrap()
        .at
}

/// `body` with `times` and the outer `"timestamp"` (the clock when owed)
/// replaced by placeholders.
fn masked(body: &str, times: &[DateTime<Utc>]) -> String {
    let mut out = body.to_owned();
    for t in times {
        out = out.replace(&t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(), "<time>");
    }
    match out.rfind("\"timestamp\": \"") {
        Some(at) => format!("{}\"timestamp\": <clock>}}", &out[..at]),
        None => out,
    }
}

/// The old body of message `id` with the `kind` field the new one adds
/// (jsonb's order: `"id"`, then `"kind"`, then the longer keys).
fn with_kind(old: &str, id: Uuid, kind: &str) -> String {
    let at = format!("\"data\": {{\"id\": \"{id}\"");
    assert!(old.contains(&at), "{old}");
    old.replacen(&at, &format!("{at}, \"kind\": \"{kind}\""), 1)
}

/// Run `f` in a transaction that is rolled back, returning what it read.
fn rolled_back<T>(conn: &mut PgConnection, f: impl FnOnce(&mut PgConnection) -> T) -> T {
    let mut out = None;
    let _ = conn.transaction::<(), diesel::result::Error, _>(|c| {
        out = Some(f(c));
        Err(diesel::result::Error::RollbackTransaction)
    });
    out.unwrap()
}

#[test]
fn rust_bodies_are_the_bytes_sql_wrote() {
    let db = TestDb::new();
    let mut conn = db.connect();
    shared::db::run_migrations(&mut conn).unwrap();

    // message.stored: a row with awkward content, in a batch of two with a
    // callback; the second item dead-letters (and completes the batch).
    let batch = BatchRef {
        id: Uuid::new_v4(),
        total: 2,
        callback_url: Some(URL.into()),
        created_at: Utc::now(),
    };
    let mut stored = Envelope::new("quote \" back \\ tab \t nl \n bell \u{7} é ✓".into());
    stored.callback_url = Some(URL.into());
    stored.batch = Some(batch.clone());
    let result = shared::db::messages::store(&mut conn, std::slice::from_ref(&stored)).unwrap();
    assert!(result.owed && result.completed.is_empty());
    let (kind, new) = payload_of(&mut conn, stored.id);
    assert_eq!(kind, "message.stored");
    let old = rolled_back(&mut conn, |c| {
        diesel::sql_query("SELECT pipeline_owe_stored(ARRAY[$1], ARRAY[$2])")
            .bind::<diesel::sql_types::Uuid, _>(stored.id)
            .bind::<Text, _>(URL)
            .execute(c)
            .unwrap();
        payload_of(c, stored.id).1
    });
    assert_eq!(
        masked(&new, &[]),
        masked(&with_kind(&old, stored.id, "default"), &[])
    );
    assert!(
        new.contains("\"stored_at\": \"") && new.ends_with("Z\"}"),
        "{new}"
    );

    // message.dead_lettered and batch.completed, old then new.
    let dead_id = Uuid::new_v4();
    let extras = Extras {
        callback_url: Some(URL.into()),
        batch: Some(batch.clone()),
    };
    let dead_at = "SELECT dead_lettered_at AS at FROM dead_letters WHERE id = $1";
    let completed_at = "SELECT completed_at AS at FROM batches WHERE id = $1";
    let (old_dead, old_batch) = rolled_back(&mut conn, |c| {
        diesel::sql_query("SELECT pipeline_record_dead_letter($1, $2, 3, $3, $4, true)")
            .bind::<diesel::sql_types::Uuid, _>(dead_id)
            .bind::<Text, _>("rejected_by_database")
            .bind::<diesel::sql_types::Uuid, _>(batch.id)
            .bind::<Text, _>(URL)
            .execute(c)
            .unwrap();
        diesel::sql_query("SELECT * FROM pipeline_settle_batches(ARRAY[$1])")
            .bind::<diesel::sql_types::Uuid, _>(batch.id)
            .execute(c)
            .unwrap();
        let times = [
            time_of(c, dead_at, dead_id),
            time_of(c, completed_at, batch.id),
        ];
        (
            masked(&payload_of(c, dead_id).1, &times),
            masked(&payload_of(c, batch.id).1, &times),
        )
    });
    let record = DeadLetter {
        id: dead_id,
        reason: "rejected_by_database".into(),
        attempts: 3,
        dead_lettered_at: Utc::now(),
        batch_id: Some(batch.id),
        kind: "default".into(),
    };
    let settled = dead_letters::record(&mut conn, &record, &extras, true).unwrap();
    assert!(settled.owed);
    assert_eq!(settled.completed.len(), 1);
    assert_eq!(settled.completed[0].status, "completed_with_failures");
    let times = [
        time_of(&mut conn, dead_at, dead_id),
        time_of(&mut conn, completed_at, batch.id),
    ];
    let (kind, new_dead) = payload_of(&mut conn, dead_id);
    assert_eq!(kind, "message.dead_lettered");
    assert_eq!(
        masked(&new_dead, &times),
        with_kind(&old_dead, dead_id, "default")
    );
    let (kind, new_batch) = payload_of(&mut conn, batch.id);
    assert_eq!(kind, "batch.completed");
    assert_eq!(masked(&new_batch, &times), old_batch);

    // The status a lookup gives is the same description: stored wins, and
    // a dead letter tells its category.
    let status = shared::db::messages::status(&mut conn, stored.id)
        .unwrap()
        .unwrap();
    assert_eq!(status.id(), stored.id);
    assert_eq!(serde_json::to_value(&status).unwrap()["status"], "stored");
    let status = shared::db::messages::status(&mut conn, dead_id)
        .unwrap()
        .unwrap();
    let recorded = DeadLetter {
        dead_lettered_at: times[0],
        ..record.clone()
    };
    assert_eq!(status, recorded.status());
    assert!(shared::db::messages::status(&mut conn, Uuid::new_v4())
        .unwrap()
        .is_none());

    // A record that exists owes nothing again.
    let again = dead_letters::record(&mut conn, &record, &extras, true).unwrap();
    assert!(!again.owed && again.completed.is_empty());
}

/// A message redelivered within the batch that stores it (the same id
/// twice) is one row, so it owes one `message.stored`, not one per copy.
#[test]
fn a_message_twice_in_one_batch_owes_one_notification() {
    let db = TestDb::new();
    let mut conn = db.connect();
    shared::db::run_migrations(&mut conn).unwrap();
    let mut message = Envelope::new("twice".into());
    message.callback_url = Some(URL.into());
    let result =
        shared::db::messages::store(&mut conn, &[message.clone(), message.clone()]).unwrap();
    assert_eq!(result.new_ids, vec![message.id]);
    assert_eq!(
        db.scalar("SELECT count(*) AS n FROM webhook_deliveries"),
        1,
        "one message, one notification"
    );
}

/// A message of another kind says so in its notification, stored or
/// dead-lettered.
#[test]
fn a_notification_says_its_kind() {
    let db = TestDb::new();
    let mut conn = db.connect();
    shared::db::run_migrations(&mut conn).unwrap();
    let mut message = Envelope::new("mail".into());
    message.callback_url = Some(URL.into());
    message.kind = shared::kind::Kind::parse("email").unwrap();
    shared::db::messages::store(&mut conn, std::slice::from_ref(&message)).unwrap();
    let (_, body) = payload_of(&mut conn, message.id);
    let id = message.id;
    assert!(
        body.starts_with(&format!(
            "{{\"id\": \"{id}\", \"data\": {{\"id\": \"{id}\", \"kind\": \"email\", \"status\": \"stored\", "
        )),
        "{body}"
    );

    let record = DeadLetter {
        id: Uuid::new_v4(),
        reason: "max_attempts".into(),
        attempts: 5,
        dead_lettered_at: Utc::now(),
        batch_id: None,
        kind: "profile".into(),
    };
    let extras = Extras {
        callback_url: Some(URL.into()),
        batch: None,
    };
    dead_letters::record(&mut conn, &record, &extras, true).unwrap();
    let (event, body) = payload_of(&mut conn, record.id);
    assert_eq!(event, "message.dead_lettered");
    let id = record.id;
    assert!(
        body.contains(&format!(
            "\"data\": {{\"id\": \"{id}\", \"kind\": \"profile\", \"reason\": \"max_attempts\", "
        )),
        "{body}"
    );
}
