//! SIGTERM / SIGINT as a shutdown flag.

use tokio::sync::watch;

/// A receiver that turns true on the first SIGTERM or SIGINT. Installed
/// first thing in `main`, so a signal during startup (say, while waiting for
/// the database) also ends the process cleanly instead of killing it.
pub fn shutdown_on_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        log::info!("signal received; shutting down");
        let _ = tx.send(true);
    });
    rx
}

/// Resolve on the first SIGTERM or SIGINT.
pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
