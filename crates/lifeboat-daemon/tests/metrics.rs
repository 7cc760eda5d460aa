//! `/metrics` and `/healthz` over real HTTP on 127.0.0.1: the exposition is parsed with a
//! Prometheus text-format parser (prometheus-parse), never matched as strings, except where
//! the bytes themselves are the point (escaping, OpenMetrics' `# EOF`).

use std::net::SocketAddr;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use lifeboat_daemon::metrics::{serve, Metrics, DURATION_BUCKETS};
use prometheus_parse::{Sample, Scrape, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running server and the way to stop it.
struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Server {
    async fn start(metrics: &Metrics) -> Server {
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

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stop it and wait until it has closed everything.
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("the server stops after its shutdown future resolves")
            .expect("the server task ends without panicking");
    }
}

async fn get(url: &str) -> (u16, String, String) {
    let r = reqwest::get(url).await.expect("GET");
    let status = r.status().as_u16();
    let kind = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, kind, r.text().await.unwrap())
}

async fn scrape(server: &Server) -> Scrape {
    let (status, kind, body) = get(&server.url("/metrics")).await;
    assert_eq!(status, 200, "{body}");
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text")
}

/// The one sample of `metric` with exactly these labels.
fn find<'a>(s: &'a Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    let mut found = s.samples.iter().filter(|x| {
        x.metric == metric
            && x.labels.len() == labels.len()
            && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v))
    });
    let one = found.next();
    assert!(found.next().is_none(), "{metric} {labels:?} twice");
    one
}

fn gauge(s: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    match find(s, metric, labels).map(|x| &x.value) {
        Some(Value::Gauge(v)) => *v,
        other => panic!("{metric} {labels:?}: want a gauge, got {other:?}"),
    }
}

fn counter(s: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    match find(s, metric, labels).map(|x| &x.value) {
        Some(Value::Counter(v)) => *v,
        other => panic!("{metric} {labels:?}: want a counter, got {other:?}"),
    }
}

/// Every value of `database` in the per-database metrics.
fn databases(s: &Scrape) -> Vec<String> {
    let mut v: Vec<String> = s
        .samples
        .iter()
        .filter_map(|x| x.labels.get("database").map(str::to_string))
        .collect();
    v.sort();
    v.dedup();
    v
}

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(secs, 0).unwrap()
}

const T1: i64 = 1_767_323_045; // 2026-01-02T03:04:05Z
const T2: i64 = 1_767_400_000;

#[tokio::test]
async fn metrics_have_their_names_types_labels_and_values() {
    let m = Metrics::new(500);
    let d = Duration::from_millis(300);
    m.backup_finished("alpha", true, None, d, 1234, at(T1));
    let slow = Duration::from_secs(70);
    m.backup_finished("beta", false, Some("repository"), slow, 0, at(T1));
    m.backup_finished("beta", false, Some("source"), d, 0, at(T1));
    m.backup_finished("beta", false, Some("repository"), d, 0, at(T1));
    m.backup_skipped("gamma", at(T2));
    m.set_backups("alpha", "scheduled", 5);
    m.set_backups("alpha", "emergency", 1);
    m.alert_sent("webhook", true);
    m.alert_sent("webhook", true);
    m.alert_sent("slack", false);
    m.set_databases(3);
    let server = Server::start(&m).await;
    let s = scrape(&server).await;

    let last = "lifeboat_backup_last_success_timestamp_seconds";
    assert_eq!(gauge(&s, last, &[("database", "alpha")]), T1 as f64);
    assert_eq!(
        gauge(&s, last, &[("database", "gamma")]),
        T2 as f64,
        "a skip is fresh"
    );
    assert_eq!(
        gauge(&s, last, &[("database", "beta")]),
        0.0,
        "never succeeded"
    );

    let size = "lifeboat_backup_size_bytes";
    assert_eq!(gauge(&s, size, &[("database", "alpha")]), 1234.0);
    assert!(find(&s, size, &[("database", "beta")]).is_none());
    assert!(find(&s, size, &[("database", "gamma")]).is_none());

    let failures = "lifeboat_backup_failures_total";
    let repo = [("database", "beta"), ("reason", "repository")];
    assert_eq!(counter(&s, failures, &repo), 2.0);
    assert_eq!(
        counter(&s, failures, &[("database", "beta"), ("reason", "source")]),
        1.0
    );
    assert!(s.samples.iter().filter(|x| x.metric == failures).count() == 2);

    let backups = "lifeboat_backups";
    let scheduled = [("database", "alpha"), ("kind", "scheduled")];
    assert_eq!(gauge(&s, backups, &scheduled), 5.0);
    assert_eq!(
        gauge(&s, backups, &[("database", "alpha"), ("kind", "emergency")]),
        1.0
    );

    let alerts = "lifeboat_alerts_sent_total";
    assert_eq!(
        counter(&s, alerts, &[("channel", "webhook"), ("outcome", "ok")]),
        2.0
    );
    assert_eq!(
        counter(&s, alerts, &[("channel", "slack"), ("outcome", "failed")]),
        1.0
    );
    assert!(find(&s, alerts, &[("channel", "slack"), ("outcome", "ok")]).is_none());

    assert_eq!(gauge(&s, "lifeboat_databases", &[]), 3.0);
    assert_eq!(gauge(&s, "lifeboat_metrics_aggregated", &[]), 0.0);

    // The duration histogram: every bucket, cumulative, then +Inf; count and sum beside it.
    let hist = "lifeboat_backup_duration_seconds";
    let buckets = |outcome: &str| match find(&s, hist, &[("outcome", outcome)]).map(|x| &x.value) {
        Some(Value::Histogram(b)) => b.clone(),
        other => panic!("{outcome}: want a histogram, got {other:?}"),
    };
    let ok = buckets("ok");
    let bounds: Vec<f64> = ok.iter().map(|b| b.less_than).collect();
    let mut want = DURATION_BUCKETS.to_vec();
    want.push(f64::INFINITY);
    assert_eq!(bounds, want);
    for b in &ok {
        assert_eq!(
            b.count,
            if b.less_than < 0.3 { 0.0 } else { 1.0 },
            "ok le={}",
            b.less_than
        );
    }
    for b in &buckets("failed") {
        let want = match b.less_than {
            x if x < 0.3 => 0.0,
            x if x < 70.0 => 2.0,
            _ => 3.0,
        };
        assert_eq!(b.count, want, "failed le={}", b.less_than);
    }
    let count = find(&s, &format!("{hist}_count"), &[("outcome", "failed")]).unwrap();
    assert_eq!(count.value, Value::Untyped(3.0));
    let sum = find(&s, &format!("{hist}_sum"), &[("outcome", "failed")]).unwrap();
    assert!(
        matches!(sum.value, Value::Untyped(v) if (v - 70.6).abs() < 1e-9),
        "{sum:?}"
    );

    server.stop().await;
}

#[tokio::test]
async fn above_the_cap_per_database_series_become_one_aggregate() {
    let m = Metrics::new(3);
    let server = Server::start(&m).await;
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        let when = at(T1 + i as i64 * 100);
        m.backup_finished(name, true, None, Duration::from_secs(1), 100, when);
        m.set_backups(name, "scheduled", 2);
    }
    m.backup_finished(
        "a",
        false,
        Some("disk_full"),
        Duration::from_secs(1),
        0,
        at(T2),
    );
    let s = scrape(&server).await;
    assert_eq!(databases(&s), ["a", "b", "c"]);
    assert_eq!(gauge(&s, "lifeboat_metrics_aggregated", &[]), 0.0);

    // Two more databases: 5 > 3. The oldest success is the fleet's, sizes and counts add up.
    m.backup_finished("d", true, None, Duration::from_secs(1), 1000, at(T2));
    m.backup_finished(
        "e",
        false,
        Some("source"),
        Duration::from_secs(1),
        0,
        at(T2),
    );
    m.set_databases(5);
    assert!(m.aggregated());
    let s = scrape(&server).await;
    assert_eq!(databases(&s), ["_all"], "no per-database series remains");
    let all = [("database", "_all")];
    let last = "lifeboat_backup_last_success_timestamp_seconds";
    assert_eq!(
        gauge(&s, last, &all),
        0.0,
        "e never succeeded: the fleet is stale"
    );
    assert_eq!(gauge(&s, "lifeboat_backup_size_bytes", &all), 1300.0);
    let failures = "lifeboat_backup_failures_total";
    let all_disk = [("database", "_all"), ("reason", "disk_full")];
    assert_eq!(counter(&s, failures, &all_disk), 1.0);
    assert_eq!(
        counter(&s, failures, &[("database", "_all"), ("reason", "source")]),
        1.0
    );
    let all_scheduled = [("database", "_all"), ("kind", "scheduled")];
    assert_eq!(gauge(&s, "lifeboat_backups", &all_scheduled), 6.0);
    assert_eq!(gauge(&s, "lifeboat_databases", &[]), 5.0);
    assert_eq!(gauge(&s, "lifeboat_metrics_aggregated", &[]), 1.0);

    // e succeeds: the oldest success is now a's.
    m.backup_finished("e", true, None, Duration::from_secs(1), 1, at(T2));
    let s = scrape(&server).await;
    assert_eq!(gauge(&s, last, &all), T1 as f64);

    // e leaves the fleet: still above the cap (4 > 3); the failure counter never goes down.
    m.set_fleet(&["a", "b", "c", "d"]);
    let s = scrape(&server).await;
    assert_eq!(databases(&s), ["_all"]);
    assert_eq!(
        counter(&s, failures, &[("database", "_all"), ("reason", "source")]),
        1.0
    );
    assert_eq!(gauge(&s, "lifeboat_backup_size_bytes", &all), 1300.0);

    // Back under the cap: per-database series again, for the fleet's members only.
    m.set_fleet(&["a", "d"]);
    let s = scrape(&server).await;
    assert_eq!(databases(&s), ["a", "d"]);
    assert_eq!(gauge(&s, last, &[("database", "a")]), T1 as f64);
    assert_eq!(gauge(&s, "lifeboat_databases", &[]), 2.0);
    assert_eq!(
        counter(&s, failures, &[("database", "a"), ("reason", "disk_full")]),
        1.0
    );
    server.stop().await;
}

#[tokio::test]
async fn a_new_fleet_member_reads_never_until_seeded() {
    let m = Metrics::new(500);
    m.set_fleet(&["x", "y"]);
    m.set_last_success("x", at(T2));
    m.set_last_success("x", at(T1)); // never backwards
    let server = Server::start(&m).await;
    let s = scrape(&server).await;
    let last = "lifeboat_backup_last_success_timestamp_seconds";
    assert_eq!(gauge(&s, last, &[("database", "x")]), T2 as f64);
    assert_eq!(gauge(&s, last, &[("database", "y")]), 0.0);
    server.stop().await;
}

#[tokio::test]
async fn label_values_are_escaped_and_labels_bounded() {
    let m = Metrics::new(500);
    m.backup_skipped("we\"ird\\name", at(T1));
    let reason = "Some Error: with spaces and a very long tail that goes on";
    m.backup_finished("x", false, Some(reason), Duration::ZERO, 0, at(T1));
    m.alert_sent("web hook!", true);
    let server = Server::start(&m).await;
    let (_, _, body) = get(&server.url("/metrics")).await;
    assert!(body.contains(r#"database="we\"ird\\name""#), "{body}");
    let s = Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap();
    let failures = "lifeboat_backup_failures_total";
    let token = "some_error__with_spaces_and_a_ve";
    assert_eq!(
        counter(&s, failures, &[("database", "x"), ("reason", token)]),
        1.0
    );
    let alerts = "lifeboat_alerts_sent_total";
    assert_eq!(
        counter(&s, alerts, &[("channel", "web_hook_"), ("outcome", "ok")]),
        1.0
    );

    // Free text as reasons, kinds or channels cannot grow the series without bound.
    for i in 0..40 {
        m.backup_finished(
            "x",
            false,
            Some(&format!("r{i}")),
            Duration::ZERO,
            0,
            at(T1),
        );
        m.set_backups("x", &format!("k{i}"), 1);
        m.alert_sent(&format!("c{i}"), true);
    }
    let s = scrape(&server).await;
    let of = |metric: &str, label: &str| -> Vec<String> {
        let v = s.samples.iter().filter(|x| x.metric == metric);
        v.map(|x| x.labels.get(label).unwrap().to_string())
            .collect()
    };
    let reasons = of(failures, "reason");
    assert_eq!(reasons.len(), 17, "{reasons:?}");
    assert!(reasons.contains(&"other".to_string()));
    let total: f64 = s
        .samples
        .iter()
        .filter(|x| x.metric == failures)
        .map(|x| match x.value {
            Value::Counter(v) => v,
            _ => panic!("{x:?}"),
        })
        .sum();
    assert_eq!(total, 41.0, "every failure is counted");
    assert_eq!(of("lifeboat_backups", "kind").len(), 17);
    let channels = of(alerts, "channel");
    assert!(
        channels.len() <= 33 && channels.contains(&"other".to_string()),
        "{channels:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn openmetrics_is_served_to_who_asks_for_it() {
    let m = Metrics::new(500);
    m.backup_finished("alpha", true, None, Duration::from_secs(1), 7, at(T1));
    let server = Server::start(&m).await;
    let r = reqwest::Client::new()
        .get(server.url("/metrics"))
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let kind = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    let body = r.text().await.unwrap();
    assert!(body.ends_with("# EOF\n"), "{body}");
    let s = Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap();
    assert_eq!(
        gauge(&s, "lifeboat_backup_size_bytes", &[("database", "alpha")]),
        7.0
    );
    server.stop().await;
}

#[tokio::test]
async fn healthz_follows_the_scheduler_loop() {
    let m = Metrics::new(500);
    let server = Server::start(&m).await;
    m.tick();
    let (status, _, body) = get(&server.url("/healthz")).await;
    assert_eq!(status, 200);
    assert!(body.starts_with("ok: scheduler loop ticked"), "{body}");

    // Ticks stop: with a short window, /healthz turns 503 with one line saying so.
    m.set_liveness_window(Duration::from_millis(200));
    let body = loop {
        let (status, _, body) = get(&server.url("/healthz")).await;
        if status == 503 {
            break body;
        }
        assert_eq!(status, 200);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        body.starts_with("unhealthy: scheduler loop last ticked"),
        "{body}"
    );
    assert_eq!(body.lines().count(), 1);

    // The loop ticks again: 200 (retried, in case this machine is too slow for 200 ms).
    let mut revived = false;
    for _ in 0..50 {
        m.tick();
        if get(&server.url("/healthz")).await.0 == 200 {
            revived = true;
            break;
        }
    }
    assert!(revived, "a tick makes /healthz 200 again");
    server.stop().await;
}

#[tokio::test]
async fn healthz_before_the_first_tick_allows_a_start() {
    let m = Metrics::new(500);
    let server = Server::start(&m).await;
    let (status, _, body) = get(&server.url("/healthz")).await;
    assert_eq!(status, 200, "within the window of the start");
    assert!(body.starts_with("ok: starting"), "{body}");
    m.set_liveness_window(Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let (status, _, body) = get(&server.url("/healthz")).await;
    assert_eq!(status, 503);
    assert!(body.contains("has not ticked"), "{body}");
    server.stop().await;
}

#[tokio::test]
async fn other_paths_and_methods_are_refused() {
    let m = Metrics::new(500);
    let server = Server::start(&m).await;
    assert_eq!(get(&server.url("/")).await.0, 404);
    assert_eq!(get(&server.url("/metrics/x")).await.0, 404);
    let client = reqwest::Client::new();
    let r = client.post(server.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(r.headers()["allow"], "GET, HEAD");
    let r = client.head(server.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.bytes().await.unwrap().is_empty(), "HEAD has no body");
    server.stop().await;
}

#[tokio::test]
async fn shutdown_closes_the_port_even_with_open_connections() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let m = Metrics::new(500);
    let server = Server::start(&m).await;
    let addr = server.addr;
    // A keep-alive connection left idle, and a client stuck half-way through its headers.
    let client = reqwest::Client::new();
    let r = client.get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.text().await.unwrap();
    // The stuck one is surely accepted: it had one request answered first.
    let mut stuck = tokio::net::TcpStream::connect(addr).await.unwrap();
    let first = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    stuck.write_all(first).await.unwrap();
    let mut answer = Vec::new();
    while !answer.ends_with(b"\n") || !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut buf = [0u8; 1024];
        let n = stuck.read(&mut buf).await.unwrap();
        assert!(n > 0, "answered: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
    }
    assert!(answer.starts_with(b"HTTP/1.1 200"));
    let half = b"GET /metrics HTTP/1.1\r\nHost: x\r\n";
    stuck.write_all(half).await.unwrap();

    server.stop().await;
    let refused = tokio::net::TcpStream::connect(addr).await;
    assert_eq!(
        refused.map(|_| ()).unwrap_err().kind(),
        std::io::ErrorKind::ConnectionRefused
    );
    // The half-sent request was closed, not left hanging.
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(60), stuck.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
}

#[tokio::test]
async fn a_taken_address_is_a_config_error() {
    let m = Metrics::new(500);
    let server = Server::start(&m).await;
    let (_, _, _) = get(&server.url("/healthz")).await;
    let err = serve(server.addr, m.clone(), std::future::pending())
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.kind, lifeboat::Kind::Config);
    assert!(
        err.message().starts_with("--metrics-addr 127.0.0.1:"),
        "{}",
        err.message()
    );
    assert!(!err.message().contains('\n'));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_recording_and_scraping_lose_nothing() {
    let m = Metrics::new(500);
    let server = Server::start(&m).await;
    let mut tasks = Vec::new();
    for t in 0..8 {
        let m = m.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..200 {
                let db = format!("db{}", i % 10);
                let reason = if t % 2 == 0 { "source" } else { "repository" };
                let d = Duration::from_millis(i);
                m.backup_finished(&db, false, Some(reason), d, 0, at(T1));
                m.alert_sent("ping", i % 3 == 0);
                if i % 50 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    // Scrapes meanwhile: each parses, and the failure count only grows.
    let url = server.url("/metrics");
    let mut seen = 0.0;
    for _ in 0..10 {
        let (status, _, body) = get(&url).await;
        assert_eq!(status, 200);
        let s = Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap();
        let n = match find(
            &s,
            "lifeboat_backup_duration_seconds_count",
            &[("outcome", "failed")],
        ) {
            Some(x) => match x.value {
                Value::Untyped(v) => v,
                ref other => panic!("{other:?}"),
            },
            None => 0.0,
        };
        assert!(n >= seen, "a counter went down: {seen} then {n}");
        seen = n;
    }
    for t in tasks {
        t.await.unwrap();
    }
    let s = scrape(&server).await;
    let failures = "lifeboat_backup_failures_total";
    let mut total = 0.0;
    for i in 0..10 {
        let db = format!("db{i}");
        for reason in ["source", "repository"] {
            total += counter(&s, failures, &[("database", &db), ("reason", reason)]);
        }
    }
    assert_eq!(total, 1600.0);
    let alerts = "lifeboat_alerts_sent_total";
    let ok = counter(&s, alerts, &[("channel", "ping"), ("outcome", "ok")]);
    let failed = counter(&s, alerts, &[("channel", "ping"), ("outcome", "failed")]);
    assert_eq!((ok, failed), (8.0 * 67.0, 8.0 * 133.0));
    server.stop().await;
}
