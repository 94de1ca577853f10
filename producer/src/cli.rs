//! The producer's command line: read the settings from the environment,
//! build the application, serve until stopped. In the library, so that
//! the e2e tests' copy of the binary (`e2e/src/bin/test-producer.rs`, run
//! as a process of its own under a file limit or to measure its memory)
//! is this very code.

use std::process::ExitCode;

use shared::Env;

use crate::{Application, Settings};

/// `main` of the `producer` binary: 0 after a clean stop, 2 for bad
/// settings, 1 for any other failure.
#[tokio::main]
pub async fn run() -> ExitCode {
    let env = Env::from_process();
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("info,tracing::span=warn"),
    )
    .init();
    // `producer migrate`: the migration step (shared::migrate), then exit.
    if let Some(code) = shared::migrate::command("producer", &env).await {
        return code;
    }

    let settings = match Settings::from_env(&env) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("producer: {e}");
            return ExitCode::from(2);
        }
    };
    let app = match Application::build(settings).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("producer: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    match app.run_until_stopped().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("producer: {e}");
            ExitCode::FAILURE
        }
    }
}
