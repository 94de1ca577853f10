//! The producer binary: read settings, build the application, serve.

use producer::{Application, Settings};
use shared::Env;

#[tokio::main]
async fn main() -> std::process::ExitCode {
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
            return std::process::ExitCode::from(2);
        }
    };
    let app = match Application::build(settings).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("producer: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match app.run_until_stopped().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("producer: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
