//! Delete every exchange and queue a consumer started with this environment
//! declared (`TOPOLOGY_PREFIX`, retry queues from `RETRY_*`/`MAX_ATTEMPTS`),
//! messages included: the tear-down of scripts that run the binaries on a
//! prefix of their own (scripts/browser-test.sh). The names come from
//! `shared::Topology`, so they stay right when the topology grows.

use std::process::ExitCode;

use lapin::{Connection, ConnectionProperties};

#[tokio::main]
async fn main() -> ExitCode {
    let env = shared::Env::from_process();
    let settings = match consumer::Settings::from_env(&env) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("delete-topology: {e}");
            return ExitCode::from(2);
        }
    };
    let topology = settings.topology();
    if topology.prefix.is_empty() {
        // Never the unprefixed, shared names: that would be someone's pipeline.
        eprintln!(
            "delete-topology: TOPOLOGY_PREFIX is empty; refusing to delete the default topology"
        );
        return ExitCode::from(2);
    }
    let connect = Connection::connect_uri(
        settings.common.amqp_uri.clone(),
        ConnectionProperties::default(),
    );
    let result = tokio::time::timeout(settings.common.amqp_timeout, async {
        let connection = connect.await?;
        let channel = connection.create_channel().await?;
        topology.delete(&channel).await?;
        connection.close(200, "deleted".into()).await
    })
    .await;
    match result {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("delete-topology: {e}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("delete-topology: RabbitMQ did not answer in time");
            ExitCode::FAILURE
        }
    }
}
