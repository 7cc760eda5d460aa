//! Sending to a channel: POST with a 10 s timeout, retried 3 times with backoff (0.5 s, 1 s,
//! 2 s). Errors never carry the URL: it is the channel's secret.

use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(10);
const RETRIES: u32 = 3;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(TIMEOUT)
        .connect_timeout(TIMEOUT)
        .build()
        .expect("an HTTP client with rustls")
}

/// POST `body` (JSON) to `url`: (delivered, attempts, last error).
pub async fn post_json(url: &str, body: Vec<u8>) -> (bool, u32, Option<String>) {
    send(url, Some(("application/json", body))).await
}

/// POST `body` (plain text), or GET without one: what health pings use.
pub async fn ping(url: &str, body: Option<String>) -> (bool, u32, Option<String>) {
    send(url, body.map(|b| ("text/plain", b.into_bytes()))).await
}

async fn send(url: &str, body: Option<(&str, Vec<u8>)>) -> (bool, u32, Option<String>) {
    let client = client();
    let mut last = None;
    for attempt in 0..=RETRIES {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(500 << (attempt - 1))).await;
        }
        let req = match &body {
            Some((kind, b)) => client
                .post(url)
                .header("content-type", *kind)
                .body(b.clone()),
            None => client.get(url),
        };
        match req.send().await {
            Ok(r) if r.status().is_success() => return (true, attempt + 1, None),
            Ok(r) => last = Some(format!("HTTP {}", r.status().as_u16())),
            // reqwest's error names the URL: keep only what failed.
            Err(e) => {
                last = Some(
                    if e.is_timeout() {
                        "timed out"
                    } else if e.is_connect() {
                        "could not connect"
                    } else {
                        "request failed"
                    }
                    .to_string(),
                )
            }
        }
    }
    (false, RETRIES + 1, last)
}
