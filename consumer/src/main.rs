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
    // `consumer migrate`: the migration step (shared::migrate), then exit.
    if let Some(code) = shared::migrate::command("consumer", &env).await {
        return code;
    }

    let settings = match Settings::from_env(&env) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("consumer: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let shutdown = consumer::signal::shutdown_on_signal();
    let mut stop = shutdown.clone();
    let app = tokio::select! {
        app = Application::build(settings) => app,
        // Nothing taken yet: stopping during startup is a clean exit.
        _ = stop.wait_for(|s| *s) => return std::process::ExitCode::SUCCESS,
    };
    match app {
        Ok(app) => {
            app.run(shutdown).await;
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("consumer: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
