//! Sending to an HTTP channel: a POST (or a ping's GET), with [`retry`]'s timeout and retries.
//! Errors never carry the URL: it is the channel's secret.

use super::retry::{self, Failure, Outcome};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(retry::timeout())
        .connect_timeout(retry::timeout())
        .build()
        .expect("an HTTP client with rustls")
}

/// POST `body` (JSON) to `url`.
pub async fn post_json(url: &str, body: Vec<u8>) -> Outcome {
    send(url, Some(("application/json", body))).await
}

/// POST `body` (plain text), or GET without one: what health pings use.
pub async fn ping(url: &str, body: Option<String>) -> Outcome {
    send(url, body.map(|b| ("text/plain", b.into_bytes()))).await
}

async fn send(url: &str, body: Option<(&str, Vec<u8>)>) -> Outcome {
    let client = client();
    retry::attempts(|| {
        let req = match &body {
            Some((kind, b)) => client
                .post(url)
                .header("content-type", *kind)
                .body(b.clone()),
            None => client.get(url),
        };
        async move {
            match req.send().await {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(Failure::Retry(format!("HTTP {}", r.status().as_u16()))),
                // reqwest's error names the URL: keep only what failed.
                Err(e) => Err(Failure::Retry(
                    if e.is_timeout() {
                        "timed out"
                    } else if e.is_connect() {
                        "could not connect"
                    } else {
                        "request failed"
                    }
                    .to_string(),
                )),
            }
        }
    })
    .await
}
