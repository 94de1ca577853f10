//! TLS to RabbitMQ and PostgreSQL against real servers (issue 16 item 16).
//! Needs a broker with a TLS listener that requires client certificates and
//! a PostgreSQL that accepts TLS connections only, with certificates made
//! for the run: `scripts/tls-test.sh` starts both in containers and runs
//! these tests with `--ignored`. They read:
//!
//! * `TLS_TEST_DIR`: `ca.pem` (signed the servers' certificates, for the
//!   name `localhost`), `client.pem` + `client.key` (signed by it),
//!   `wrong-ca.pem` (another CA);
//! * `TLS_TEST_AMQPS_URL`: `amqps://user:password@localhost:<port>/%2f`;
//! * `TLS_TEST_AMQP_PORT`: the same broker's plain AMQP port;
//! * `TLS_TEST_DATABASE_URL`: `postgres://user:password@localhost:<port>/<db>`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use diesel::prelude::*;
use diesel::sql_types::Bool;
use e2e::wait_for;
use serde_json::{json, Value};
use shared::{CommonSettings, Env};
use tokio::sync::watch;
use uuid::Uuid;

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run scripts/tls-test.sh"))
}

fn file(name: &str) -> String {
    format!("{}/{name}", var("TLS_TEST_DIR"))
}

/// `DATABASE_URL` with TLS verified against the test CA (or `ca`).
fn database_url(sslmode: &str, ca: &str) -> String {
    format!(
        "{}?sslmode={sslmode}&sslrootcert={}",
        var("TLS_TEST_DATABASE_URL"),
        file(ca)
    )
}

/// Everything a producer or consumer needs to reach both servers over TLS,
/// presenting the client certificate; `extra` overrides.
fn tls_env(prefix: &str, extra: &[(&str, String)]) -> Env {
    let mut pairs: Vec<(String, String)> = vec![
        ("AMQP_URL".into(), var("TLS_TEST_AMQPS_URL")),
        ("AMQP_TLS_CA_FILE".into(), file("ca.pem")),
        ("AMQP_TLS_CERT_FILE".into(), file("client.pem")),
        ("AMQP_TLS_KEY_FILE".into(), file("client.key")),
        ("DATABASE_URL".into(), database_url("verify-full", "ca.pem")),
        ("TOPOLOGY_PREFIX".into(), prefix.into()),
        ("BIND_ADDR".into(), "127.0.0.1:0".into()),
        ("METRICS_ADDR".into(), "127.0.0.1:0".into()),
        ("HTTP_WORKERS".into(), "1".into()),
        ("DB_POOL_SIZE".into(), "2".into()),
    ];
    for (key, value) in extra {
        pairs.retain(|(k, _)| k != key);
        pairs.push(((*key).into(), value.clone()));
    }
    pairs.retain(|(_, v)| !v.is_empty());
    Env::from_pairs(pairs)
}

/// Connect once the way the binaries do, and say how it ended.
async fn connect(extra: &[(&str, String)]) -> Result<(), String> {
    let settings =
        CommonSettings::from_env(&tls_env("unused.", extra)).map_err(|e| e.to_string())?;
    match settings
        .amqp_nodes
        .connect("tls-test", Duration::from_secs(10))
        .await
    {
        Ok((connection, _)) => {
            let _ = connection.close(200, "".into()).await;
            Ok(())
        }
        Err(e) => {
            // The refusals' wording is part of what is tested: shown with --nocapture.
            eprintln!("refused: {e}");
            Err(e.to_string())
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the TLS servers of scripts/tls-test.sh (Docker)"]
async fn producer_and_consumer_over_tls_store_a_message() {
    e2e::init_logging();
    let prefix = format!("tls.{}.", &Uuid::new_v4().simple().to_string()[..12]);
    let env = tls_env(&prefix, &[]);

    let producer = producer::Application::build(producer::Settings::from_env(&env).unwrap())
        .await
        .unwrap();
    let base = format!("http://127.0.0.1:{}", producer.port());
    let handle = producer.handle();
    let producer_task = tokio::spawn(producer.run_until_stopped());
    let consumer = consumer::Application::build(consumer::Settings::from_env(&env).unwrap())
        .await
        .unwrap();
    let (stop_consumer, stopped) = watch::channel(false);
    let consumer_task = tokio::spawn(consumer.run(stopped));

    let client = reqwest::Client::new();
    let ready = wait_for(
        "the producer to be ready over TLS",
        Duration::from_secs(20),
        || async {
            let res = client.get(format!("{base}/readyz")).send().await.ok()?;
            (res.status() == 200).then_some(())
        },
    );
    ready.await;
    let res = client
        .post(format!("{base}/messages"))
        .json(&json!({"content": "over TLS"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let body: Value = res.json().await.unwrap();
    let id = body["id"].as_str().unwrap().to_owned();
    let stored: Value = wait_for(
        "the message to be stored",
        Duration::from_secs(20),
        || async {
            let res = client
                .get(format!("{base}/messages/{id}"))
                .send()
                .await
                .ok()?;
            (res.status() == 200).then_some(res.json().await.ok()?)
        },
    )
    .await;
    assert_eq!(stored["content"], "over TLS");
    assert_eq!(stored["status"], "stored");

    let _ = stop_consumer.send(true);
    consumer_task.await.unwrap();
    handle.stop(true).await;
    let _ = producer_task.await;
}

#[tokio::test]
#[ignore = "needs the TLS servers of scripts/tls-test.sh (Docker)"]
async fn the_broker_certificate_must_be_signed_by_a_trusted_ca() {
    let err = connect(&[("AMQP_TLS_CA_FILE", file("wrong-ca.pem"))])
        .await
        .unwrap_err();
    assert!(err.contains("TLS handshake failed"), "{err}");
    assert!(err.contains("UnknownIssuer"), "{err}");
    assert!(err.contains("AMQP_TLS_CA_FILE"), "{err}");
}

#[tokio::test]
#[ignore = "needs the TLS servers of scripts/tls-test.sh (Docker)"]
async fn the_broker_certificate_must_name_the_host() {
    // The certificate names `localhost`, not the address.
    let url = var("TLS_TEST_AMQPS_URL").replace("@localhost:", "@127.0.0.1:");
    let err = connect(&[("AMQP_URL", url)]).await.unwrap_err();
    assert!(err.contains("TLS handshake failed"), "{err}");
    assert!(err.contains("not valid for name"), "{err}");
}

#[tokio::test]
#[ignore = "needs the TLS servers of scripts/tls-test.sh (Docker)"]
async fn mutual_tls_needs_the_client_certificate() {
    assert_eq!(connect(&[]).await, Ok(()));
    let err = connect(&[
        ("AMQP_TLS_CERT_FILE", String::new()),
        ("AMQP_TLS_KEY_FILE", String::new()),
    ])
    .await
    .unwrap_err();
    assert!(err.contains("TLS handshake failed"), "{err}");
    assert!(err.contains("AMQP_TLS_CERT_FILE"), "{err}");
}

#[tokio::test]
#[ignore = "needs the TLS servers of scripts/tls-test.sh (Docker)"]
async fn amqps_never_falls_back_to_plain_amqp() {
    // An amqps:// URL pointing at the plain listener: TLS fails, and no
    // AMQP session is opened in clear instead.
    let url = var("TLS_TEST_AMQPS_URL").replace(
        &format!(":{}/", amqps_port()),
        &format!(":{}/", var("TLS_TEST_AMQP_PORT")),
    );
    let err = connect(&[("AMQP_URL", url)]).await.unwrap_err();
    assert!(err.contains("TLS handshake failed"), "{err}");
}

fn amqps_port() -> String {
    let url = var("TLS_TEST_AMQPS_URL");
    let after_host = url.rsplit_once(':').unwrap().1;
    after_host.split('/').next().unwrap().to_owned()
}

#[derive(QueryableByName)]
struct Ssl {
    #[diesel(sql_type = Bool)]
    ssl: bool,
}

/// Whether this session is encrypted, as the server sees it.
fn session_is_tls(url: &str) -> Result<bool, String> {
    let mut conn = PgConnection::establish(url).map_err(|e| e.to_string())?;
    diesel::sql_query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .get_result::<Ssl>(&mut conn)
        .map(|row| row.ssl)
        .map_err(|e| e.to_string())
}

#[test]
#[ignore = "needs the TLS servers of scripts/tls-test.sh (Docker)"]
fn postgres_over_tls_through_database_url() {
    let plain = var("TLS_TEST_DATABASE_URL");
    assert_eq!(
        session_is_tls(&format!("{plain}?sslmode=require")),
        Ok(true)
    );
    assert_eq!(
        session_is_tls(&database_url("verify-full", "ca.pem")),
        Ok(true)
    );
    // The server takes TLS sessions only, so the two above were TLS...
    let err = session_is_tls(&format!("{plain}?sslmode=disable")).unwrap_err();
    assert!(
        err.contains("no encryption") || err.contains("pg_hba.conf"),
        "{err}"
    );
    // ...and verify-full refuses a server its CA did not sign.
    let err = session_is_tls(&database_url("verify-full", "wrong-ca.pem")).unwrap_err();
    assert!(err.contains("certificate verify failed"), "{err}");
}
