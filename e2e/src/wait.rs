//! Waiting for a condition, never sleeping and hoping.

use std::future::Future;
use std::time::Duration;

/// Poll `check` every 25 ms until it returns `Some`, or panic with `what`
/// after `timeout`. This waits for a condition; it never sleeps and hopes.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
