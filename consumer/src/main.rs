//! The consumer binary: read settings, build the application, consume.

use consumer::{Application, Settings};
use shared::Env;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let env = Env::from_process();
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("info,tracing::span=warn"),
    )
    .init();

    let settings = match Settings::from_env(&env) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("consumer: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let result = match Application::build(settings).await {
        Ok(app) => app.run_until_stopped().await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("consumer: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
