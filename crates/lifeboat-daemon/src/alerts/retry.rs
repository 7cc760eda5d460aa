//! Delivery attempts, the same for every channel: each attempt has a timeout (10 s), and a failed
//! one is retried 3 times with backoff (0.5 s, 1 s, 2 s), unless no retry can fix it (a refused
//! login, a bad address).

use std::future::Future;
use std::time::Duration;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
pub const RETRIES: u32 = 3;

/// How long one attempt may take: 10 s, or `LIFEBOAT_ALERT_TIMEOUT` (`"1s"`), which exists so
/// tests of a receiver that hangs need not wait 40 s.
pub fn timeout() -> Duration {
    std::env::var("LIFEBOAT_ALERT_TIMEOUT")
        .ok()
        .and_then(|s| humantime::parse_duration(&s).ok())
        .filter(|d| !d.is_zero())
        .unwrap_or(DEFAULT_TIMEOUT)
}

/// Why an attempt failed, in words that never hold the channel's secret.
pub enum Failure {
    /// Another attempt may do better: a refused connection, a 5xx, a timeout.
    Retry(String),
    /// It will not: bad settings, a refused login, a rejected address.
    Final(String),
}

/// How a send ended: delivered or not, after how many attempts, and the last error.
pub type Outcome = (bool, u32, Option<String>);

/// Run `attempt` until it succeeds, fails for good, or has been retried [`RETRIES`] times.
pub async fn attempts<F, Fut>(mut attempt: F) -> Outcome
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), Failure>>,
{
    let limit = timeout();
    let mut last = None;
    for n in 0..=RETRIES {
        if n > 0 {
            tokio::time::sleep(Duration::from_millis(500 << (n - 1))).await;
        }
        match tokio::time::timeout(limit, attempt()).await {
            Ok(Ok(())) => return (true, n + 1, None),
            Ok(Err(Failure::Retry(e))) => last = Some(e),
            Ok(Err(Failure::Final(e))) => return (false, n + 1, Some(e)),
            Err(_) => last = Some("timed out".to_string()),
        }
    }
    (false, RETRIES + 1, last)
}
