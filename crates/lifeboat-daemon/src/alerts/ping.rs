//! Health pings, the Healthchecks convention: `<url>/start` before a run, `<url>` on success,
//! `<url>/fail` (with a one-line summary as the body) on failure, all with `?rid=<run id>` so the
//! service pairs start and end.

use super::http;

/// One run's pings.
#[derive(Debug, Clone)]
pub struct Ping {
    url: String,
    rid: String,
}

impl Ping {
    pub fn new(url: &str) -> Ping {
        Ping {
            url: url.trim_end_matches('/').to_string(),
            rid: format!("{:016x}", rand::random::<u64>()),
        }
    }

    fn at(&self, suffix: &str) -> String {
        format!("{}{suffix}?rid={}", self.url, self.rid)
    }

    pub async fn start(&self) -> bool {
        http::ping(&self.at("/start"), None).await.0
    }

    pub async fn success(&self) -> bool {
        http::ping(&self.at(""), None).await.0
    }

    pub async fn fail(&self, summary: &str) -> bool {
        let line = summary.replace(['\n', '\r'], " ");
        http::ping(&self.at("/fail"), Some(line)).await.0
    }

    /// The host pinged: all of the URL that may be shown.
    pub fn shown(&self) -> String {
        super::host_of(&self.url)
    }
}
