//! Least privilege in PostgreSQL (issue 16 item 14): the migration step,
//! run as the owner, migrates and grants; the producer and the consumer run
//! as roles that cannot change the schema, and every feature still works.
//! Each test creates its own roles and drops them at the end.

use std::time::Duration;

use diesel::prelude::*;
use diesel::sql_types::Text;
use e2e::{spawn_consumer, spawn_producer, wait_for, Receiver, TestBroker, TestDb, TestRoles};
use serde_json::{json, Value};
use shared::migrate::{step, MigrateError};
use shared::roles::{RoleError, TABLE_PRIVILEGES};

const ADMIN: &str = "adm1n";

/// Run `sql` as the role of `url`, which must refuse it; the refusal.
fn refused(url: &str, sql: &str) -> String {
    let mut conn = PgConnection::establish(url).unwrap();
    match diesel::sql_query(sql).execute(&mut conn) {
        Ok(_) => panic!("{sql:?} was allowed"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn runtime_roles_cannot_change_the_schema() {
    let db = TestDb::new();
    let roles = TestRoles::create(&db);
    let report = roles.migrate(&db);
    assert!(report.applied > 0);
    assert_eq!(
        report.granted,
        [roles.producer.clone(), roles.consumer.clone()]
    );

    for role in [&roles.producer, &roles.consumer] {
        let url = roles.url(&db, role);
        for sql in [
            "CREATE TABLE intruder (id int)",
            "CREATE SCHEMA intruder",
            "CREATE FUNCTION intruder() RETURNS int LANGUAGE sql AS 'SELECT 1'",
            "CREATE INDEX intruder ON messages (content)",
            "ALTER TABLE messages ADD COLUMN intruder int",
            "ALTER TABLE messages DROP CONSTRAINT messages_pkey",
            "DROP TABLE messages",
            "DROP TABLE __diesel_schema_migrations",
            "DROP INDEX messages_txid_created_at_id_idx",
            "DROP FUNCTION pipeline_try_insert(uuid, text, timestamptz)",
            "DROP SCHEMA public CASCADE",
            "TRUNCATE messages",
            "DELETE FROM __diesel_schema_migrations",
        ] {
            let err = refused(&url, sql);
            assert!(
                err.contains("permission denied") || err.contains("must be owner"),
                "{role}: {sql}: {err}"
            );
        }
    }
    // Each has only what it needs: the producer does not store messages,
    // the consumer never sees idempotency keys.
    let err = refused(
        &roles.url(&db, &roles.producer),
        "INSERT INTO messages (id, content, created_at) VALUES (gen_random_uuid(), 'x', now())",
    );
    assert!(err.contains("permission denied"), "{err}");
    let err = refused(
        &roles.url(&db, &roles.consumer),
        "SELECT * FROM idempotency_keys",
    );
    assert!(err.contains("permission denied"), "{err}");
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

#[test]
fn every_table_has_grants() {
    let db = TestDb::new();
    let roles = TestRoles::create(&db);
    roles.migrate(&db);
    let mut tables: Vec<String> = diesel::sql_query(
        "SELECT table_name::text AS name FROM information_schema.tables \
         WHERE table_schema = current_schema()",
    )
    .load::<Name>(&mut db.connect())
    .unwrap()
    .into_iter()
    .map(|n| n.name)
    .collect();
    tables.sort();
    let mut listed: Vec<String> = TABLE_PRIVILEGES
        .iter()
        .map(|(table, ..)| (*table).to_owned())
        .collect();
    listed.sort();
    assert_eq!(
        tables, listed,
        "the migrations' tables and shared::roles::TABLE_PRIVILEGES differ: \
         say there which role needs what on a new table"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_role_waits_for_the_migration_step() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let roles = TestRoles::create(&db);
    // Nothing migrated yet: the producer's role may not do it, and says
    // what to run instead of trying.
    let env = shared::Env::from_pairs([
        ("AMQP_URL", e2e::broker::amqp_url()),
        ("DATABASE_URL", roles.url(&db, &roles.producer)),
        ("TOPOLOGY_PREFIX", broker.prefix.clone()),
        ("BIND_ADDR", "127.0.0.1:0".into()),
        ("STARTUP_TIMEOUT_MS", "300".into()),
    ]);
    let err = producer::Application::build(producer::Settings::from_env(&env).unwrap())
        .await
        .err()
        .expect("a runtime role must not start on an unmigrated database");
    let err = format!("{err:#}");
    assert!(err.contains("producer migrate"), "{err}");
    let tables = diesel::sql_query(
        "SELECT table_name::text AS name FROM information_schema.tables \
         WHERE table_schema = current_schema()",
    )
    .load::<Name>(&mut db.connect())
    .unwrap();
    assert!(
        tables.is_empty(),
        "nothing may be created: {:?}",
        tables.iter().map(|t| &t.name).collect::<Vec<_>>()
    );
    // After the step it starts.
    roles.migrate(&db);
    let producer = spawn_producer(
        &db,
        &broker,
        &[("DATABASE_URL", &roles.url(&db, &roles.producer))],
    )
    .await;
    producer.stop().await;
}

#[test]
fn the_migration_step_refuses_roles_that_could_change_the_schema() {
    let db = TestDb::new();
    let roles = TestRoles::create(&db);
    // The step itself as a runtime role: it may not migrate.
    let mut settings = roles.settings(&db);
    settings.database_url = roles.url(&db, &roles.producer);
    let err = step(&settings).unwrap_err();
    assert!(matches!(err, MigrateError::NotOwner { .. }), "{err}");
    // A superuser (the test server's user) as a runtime role.
    let me = diesel::sql_query("SELECT current_user::text AS name")
        .get_result::<Name>(&mut db.connect())
        .unwrap()
        .name;
    let mut settings = roles.settings(&db);
    settings.consumer_role = Some(me);
    let err = step(&settings).unwrap_err();
    assert!(
        matches!(err, MigrateError::Role(RoleError::TooPowerful { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("superuser"), "{err}");
    // A role that does not exist.
    let mut settings = roles.settings(&db);
    settings.producer_role = Some("no_such_role_here".into());
    let err = step(&settings).unwrap_err();
    assert!(
        matches!(err, MigrateError::Role(RoleError::Missing { .. })),
        "{err}"
    );
}

/// Every feature that touches the database, with the producer and the
/// consumer on their runtime roles: single and batch messages with
/// callbacks (stored, notified, batch completed), an idempotency key, a
/// dead letter (its record, its batch settled), the listings and the
/// dashboard, the dead-letter redrive and purge, the failed-webhook tools.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_works_with_runtime_roles() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let roles = TestRoles::create(&db);
    roles.migrate(&db);
    // Messages starting with "forbidden" are refused by the database.
    diesel::sql_query(
        "ALTER TABLE messages ADD CONSTRAINT no_forbidden CHECK (content NOT LIKE 'forbidden%')",
    )
    .execute(&mut db.connect())
    .unwrap();
    let receiver = Receiver::start().await;
    let producer_url = roles.url(&db, &roles.producer);
    let consumer_url = roles.url(&db, &roles.consumer);
    let producer = spawn_producer(
        &db,
        &broker,
        &[
            ("DATABASE_URL", &producer_url),
            ("ADMIN_TOKEN", ADMIN),
            ("WEBHOOK_ALLOWED_HOSTS", "127.0.0.1:*"),
        ],
    )
    .await;
    let consumer = spawn_consumer(
        &db,
        &broker,
        &[
            ("DATABASE_URL", &consumer_url),
            ("WEBHOOK_SECRET", "roles-test-secret"),
            ("WEBHOOK_ALLOWED_HOSTS", "127.0.0.1:*"),
            ("WEBHOOK_POLL_MS", "100"),
            ("WEBHOOK_RETRY_BASE_MS", "100"),
            ("WEBHOOK_MAX_ATTEMPTS", "2"),
        ],
    )
    .await;
    let url = |p: &str| format!("{}{p}", producer.base);

    // A message with an Idempotency-Key and a callback (sent twice below).
    let keyed = || {
        producer
            .client
            .post(url("/messages"))
            .header("Idempotency-Key", "roles-1")
            .json(&json!({"content": "least privilege", "callback_url": receiver.url("/one")}))
            .send()
    };
    let res = keyed().await.unwrap();
    assert_eq!(res.status(), 202);
    let id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_for(
        "the message's notification",
        Duration::from_secs(20),
        || async {
            let m: Value = producer
                .get(&format!("/messages/{id}"))
                .await
                .json()
                .await
                .ok()?;
            (m["status"] == "stored" && m["notification"]["status"] == "delivered").then_some(())
        },
    )
    .await;
    // A batch with one item the database refuses, and a callback that
    // fails (its notification ends `failed`, for the admin tools).
    receiver.script(&[500; 8]);
    let res = producer
        .post_json(
            "/messages/batch",
            &json!({"messages": [{"content": "fine"}, {"content": "forbidden fruit"}],
                    "callback_url": receiver.url("/batch")}),
        )
        .await;
    assert_eq!(res.status(), 202);
    let batch: Value = res.json().await.unwrap();
    let batch_id = batch["batch_id"].as_str().unwrap().to_owned();

    let done: Value = wait_for("the batch to complete", Duration::from_secs(20), || async {
        let b: Value = producer
            .get(&format!("/batches/{batch_id}"))
            .await
            .json()
            .await
            .ok()?;
        (b["status"] == "completed_with_failures").then_some(b)
    })
    .await;
    assert_eq!(
        (done["stored"].as_i64(), done["dead_lettered"].as_i64()),
        (Some(1), Some(1))
    );
    // The same key and body again: the same answer, no second message.
    let res = keyed().await.unwrap();
    assert_eq!(res.status(), 202);

    // Listings and the dashboard.
    for path in [
        "/messages",
        "/dashboard/api/overview",
        "/dashboard/api/messages",
    ] {
        let res = producer.get(path).await;
        assert_eq!(res.status(), 200, "{path}");
    }
    // The failed batch notification, then the failed-webhook tools.
    let failed: Value = wait_for(
        "the failed notification",
        Duration::from_secs(20),
        || async {
            let res = producer
                .client
                .get(url("/webhooks/failed"))
                .bearer_auth(ADMIN)
                .send()
                .await
                .ok()?;
            let body: Value = res.json().await.ok()?;
            (body["total"].as_i64() >= Some(1)).then_some(body)
        },
    )
    .await;
    assert!(failed["total"].as_i64() >= Some(1), "{failed}");
    let res = producer
        .client
        .post(url("/webhooks/failed/resend"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());

    // The dead letter: listed, redriven (fails again: refused by the
    // database), purged.
    wait_for("the dead letter", Duration::from_secs(20), || async {
        (broker.depth(&broker.topology.dead_queue).await == 1).then_some(())
    })
    .await;
    let res = producer
        .client
        .get(url("/dead-letters"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = producer
        .client
        .post(url("/dead-letters/redrive"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    wait_for(
        "the redriven letter back",
        Duration::from_secs(20),
        || async { (broker.depth(&broker.topology.dead_queue).await == 1).then_some(()) },
    )
    .await;
    let res = producer
        .client
        .delete(url("/dead-letters?confirm=true"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());

    assert_eq!(db.count(), 2);
    consumer.stop().await;
    producer.stop().await;
}

/// A batch insert that fails on one row (here a CHECK) is stored row by row;
/// a row of another kind than `default` must get its kind there too, with
/// the consumer's role, which may insert into `messages` but not update it.
/// (Setting the kind with an UPDATE after the insert was refused, and with
/// a batch's bookkeeping in the same transaction the whole batch was held
/// for ever.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_stored_on_its_own_keeps_its_kind_with_runtime_roles() {
    let db = TestDb::new();
    let broker = TestBroker::with_kinds("email").await;
    let roles = TestRoles::create(&db);
    roles.migrate(&db);
    db.execute(
        "ALTER TABLE messages ADD CONSTRAINT no_forbidden CHECK (content NOT LIKE 'forbidden%')",
    );
    let producer_url = roles.url(&db, &roles.producer);
    let consumer_url = roles.url(&db, &roles.consumer);
    let producer = spawn_producer(&db, &broker, &[("DATABASE_URL", &producer_url)]).await;
    // Both items in one batch of the email queue's loop.
    let consumer = spawn_consumer(
        &db,
        &broker,
        &[("DATABASE_URL", &consumer_url), ("BATCH_WAIT_MS", "1000")],
    )
    .await;
    let res = producer
        .post_json(
            "/messages/batch",
            &json!([
                {"content": "fine", "kind": "email"},
                {"content": "forbidden", "kind": "email"},
            ]),
        )
        .await;
    assert_eq!(res.status(), 202);
    let body: Value = res.json().await.unwrap();
    let fine = body["ids"][0].as_str().unwrap().to_owned();
    wait_for("the good row stored", Duration::from_secs(20), || async {
        (db.scalar(&format!(
            "SELECT count(*) AS n FROM messages WHERE id = '{fine}' AND kind = 'email'"
        )) == 1)
            .then_some(())
    })
    .await;
    wait_for(
        "the bad row dead-lettered",
        Duration::from_secs(20),
        || async { (consumer.stats.snapshot().dead_lettered == 1).then_some(()) },
    )
    .await;
    assert_eq!(db.count(), 1);
    consumer.stop().await;
    producer.stop().await;
}
