//! The metrics server as a server: `/healthz` following the scheduler loop, paths and methods,
//! shutdown with connections still open, a taken address.

mod common;

use std::time::Duration;

use common::*;
use lifeboat_daemon::metrics::{serve, Metrics};

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

#[tokio::test]
async fn two_servers_share_one_metrics_and_an_early_shutdown_stops_at_once() {
    let m = Metrics::new(500);
    let a = Server::start(&m).await;
    let b = Server::start(&m).await;
    m.alert_sent("webhook", true);
    for server in [&a, &b] {
        let s = scrape(server).await;
        let labels = [("channel", "webhook"), ("outcome", "ok")];
        assert_eq!(counter(&s, "lifeboat_alerts_sent_total", &labels), 1.0);
    }
    a.stop().await;
    b.stop().await;

    // A shutdown that has already happened: the server closes as soon as it starts.
    let addr = "127.0.0.1:0".parse().unwrap();
    let (addr, task) = serve(addr, m.clone(), std::future::ready(()))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("it stops")
        .unwrap();
    let refused = tokio::net::TcpStream::connect(addr).await;
    assert_eq!(
        refused.map(|_| ()).unwrap_err().kind(),
        std::io::ErrorKind::ConnectionRefused
    );
}
