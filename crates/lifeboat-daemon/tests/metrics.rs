//! `/metrics` over real HTTP on 127.0.0.1: the exposition is parsed with a Prometheus
//! text-format parser (prometheus-parse), never matched as strings, except where the bytes
//! themselves are the point (escaping, OpenMetrics' `# EOF`).

mod common;

use std::time::Duration;

use common::*;
use lifeboat_daemon::metrics::{Metrics, DURATION_BUCKETS};
use prometheus_parse::{Scrape, Value};

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
    // Five seen are enough, before the daemon even says how many there are.
    assert!(m.aggregated());
    let s = scrape(&server).await;
    assert_eq!(databases(&s), ["_all"], "no per-database series remains");
    m.set_databases(5);
    let s = scrape(&server).await;
    assert_eq!(databases(&s), ["_all"]);
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
    m.set_fleet(&["a", "d", "a"]);
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
async fn the_fleet_size_alone_can_cross_the_cap() {
    let m = Metrics::new(3);
    let server = Server::start(&m).await;
    m.backup_finished("a", true, None, Duration::from_secs(1), 5, at(T1));
    assert_eq!(databases(&scrape(&server).await), ["a"]);
    m.set_databases(10); // the other nine not seen yet
    let s = scrape(&server).await;
    assert_eq!(databases(&s), ["_all"]);
    let last = "lifeboat_backup_last_success_timestamp_seconds";
    assert_eq!(gauge(&s, last, &[("database", "_all")]), T1 as f64);
    assert_eq!(gauge(&s, "lifeboat_databases", &[]), 10.0);
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

#[tokio::test]
async fn replication_lag_and_counters_per_database_and_above_the_cap() {
    let m = Metrics::new(2);
    let server = Server::start(&m).await;
    m.replication_lag("a", Some(0.5));
    m.replication_lag("b", Some(0.0));
    m.replication_shipped("a", 10, 4096);
    m.replication_break("b");
    m.replication_error("b");
    let s = scrape(&server).await;
    let lag = "lifeboat_replication_lag_seconds";
    assert_eq!(gauge(&s, lag, &[("database", "a")]), 0.5);
    assert_eq!(gauge(&s, lag, &[("database", "b")]), 0.0);
    let commits = "lifeboat_replication_commits_total";
    assert_eq!(counter(&s, commits, &[("database", "a")]), 10.0);
    assert_eq!(counter(&s, commits, &[("database", "b")]), 0.0);
    let bytes = "lifeboat_replication_bytes_total";
    assert_eq!(counter(&s, bytes, &[("database", "a")]), 4096.0);
    let breaks = "lifeboat_replication_breaks_total";
    assert_eq!(counter(&s, breaks, &[("database", "b")]), 1.0);
    let errors = "lifeboat_replication_errors_total";
    assert_eq!(counter(&s, errors, &[("database", "b")]), 1.0);
    assert_eq!(gauge(&s, "lifeboat_replicated_databases", &[]), 2.0);

    // A third database (3 > 2): one series, the largest lag, the fleet's counts.
    m.replication_lag("c", Some(75.0));
    m.replication_shipped("c", 5, 100);
    // Not replicating now (refused): no lag of its own, not counted as open.
    m.replication_lag("b", None);
    let s = scrape(&server).await;
    let all = [("database", "_all")];
    assert_eq!(gauge(&s, lag, &all), 75.0);
    assert_eq!(counter(&s, commits, &all), 15.0);
    assert_eq!(counter(&s, bytes, &all), 4196.0);
    assert_eq!(counter(&s, breaks, &all), 1.0);
    assert_eq!(gauge(&s, "lifeboat_replicated_databases", &[]), 2.0);
    server.stop().await;
}
