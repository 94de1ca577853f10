//! Delete every exchange and queue a consumer started with this environment
//! declared (`TOPOLOGY_PREFIX`, retry queues from `RETRY_*`/`MAX_ATTEMPTS`),
//! messages included: the tear-down of scripts that run the binaries on a
//! prefix of their own (scripts/browser-test.sh). The names come from
//! `shared::Topology`, so they stay right when the topology grows.

use std::process::ExitCode;

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
    let timeout = settings.common.amqp_timeout;
    let result = tokio::time::timeout(timeout, async {
        let (connection, _node) = settings
            .common
            .amqp_nodes
            .connect("delete-topology", timeout)
            .await
            .map_err(|e| e.to_string())?;
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| e.to_string())?;
        topology.delete(&channel).await.map_err(|e| e.to_string())?;
        connection
            .close(200, "deleted".into())
            .await
            .map_err(|e| e.to_string())
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
