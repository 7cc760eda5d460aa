//! What the metrics tests share: a server on 127.0.0.1:0 that each test stops, GET, and lookups
//! in a scrape parsed by prometheus-parse (a real Prometheus text-format parser).
#![allow(dead_code)] // each test file uses its own part

use std::net::SocketAddr;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use lifeboat_daemon::metrics::{serve, Metrics};
use prometheus_parse::{Sample, Scrape, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running server and the way to stop it.
pub struct Server {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Server {
    pub async fn start(metrics: &Metrics) -> Server {
        let (tx, rx) = oneshot::channel::<()>();
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let (addr, task) = serve(addr, metrics.clone(), async {
            let _ = rx.await;
        })
        .await
        .expect("the metrics server starts");
        assert_ne!(addr.port(), 0);
        Server {
            addr,
            stop: Some(tx),
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stop it and wait until it has closed everything.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("the server stops after its shutdown future resolves")
            .expect("the server task ends without panicking");
    }
}

pub async fn get(url: &str) -> (u16, String, String) {
    let r = reqwest::get(url).await.expect("GET");
    let status = r.status().as_u16();
    let kind = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, kind, r.text().await.unwrap())
}

pub async fn scrape(server: &Server) -> Scrape {
    let (status, kind, body) = get(&server.url("/metrics")).await;
    assert_eq!(status, 200, "{body}");
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text")
}

/// The one sample of `metric` with exactly these labels.
pub fn find<'a>(s: &'a Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    let mut found = s.samples.iter().filter(|x| {
        x.metric == metric
            && x.labels.len() == labels.len()
            && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v))
    });
    let one = found.next();
    assert!(found.next().is_none(), "{metric} {labels:?} twice");
    one
}

pub fn gauge(s: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    match find(s, metric, labels).map(|x| &x.value) {
        Some(Value::Gauge(v)) => *v,
        other => panic!("{metric} {labels:?}: want a gauge, got {other:?}"),
    }
}

pub fn counter(s: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    match find(s, metric, labels).map(|x| &x.value) {
        Some(Value::Counter(v)) => *v,
        other => panic!("{metric} {labels:?}: want a counter, got {other:?}"),
    }
}

/// Every value of `database` in the per-database metrics.
pub fn databases(s: &Scrape) -> Vec<String> {
    let mut v: Vec<String> = s
        .samples
        .iter()
        .filter_map(|x| x.labels.get("database").map(str::to_string))
        .collect();
    v.sort();
    v.dedup();
    v
}

pub fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(secs, 0).unwrap()
}

pub const T1: i64 = 1_767_323_045; // 2026-01-02T03:04:05Z
pub const T2: i64 = 1_767_400_000;
