//! The HTTP server of `/metrics` and `/healthz` (hyper, HTTP/1.1). It binds to the one address
//! it is given, answers GET and HEAD only, and bounds what a client can hold: at most
//! [`MAX_CONNECTIONS`] at once, [`HEADER_TIMEOUT`] to send a request's headers. On shutdown it
//! stops accepting, lets requests in flight finish for up to [`SHUTDOWN_GRACE`], then closes.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use http_body_util::Full;
use hyper::header::{HeaderValue, ACCEPT, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use lifeboat::{Error, Kind, Result};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::Metrics;

/// Connections served at once; more wait in the kernel's backlog.
pub const MAX_CONNECTIONS: usize = 64;
/// Time a client has to send a request's headers (also bounds an idle keep-alive).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time requests in flight get to finish once shutdown is asked.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serve `/metrics` and `/healthz` on `addr` until `shutdown` resolves; returns the bound
/// address (port 0 picks a free one) and the server's task, which ends once the listener is
/// closed and every connection is done.
pub async fn serve(
    addr: SocketAddr,
    metrics: Metrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| bind_error(addr, e))?;
    let bound = listener
        .local_addr()
        .map_err(|e| Error::new(Kind::Internal, format!("metrics: {addr}: {e}")))?;
    tracing::info!(addr = %bound, "metrics: serving /metrics and /healthz");
    let handle = tokio::spawn(run(listener, metrics, shutdown.boxed().shared()));
    Ok((bound, handle))
}

fn bind_error(addr: SocketAddr, e: std::io::Error) -> Error {
    let kind = match e.kind() {
        std::io::ErrorKind::PermissionDenied => Kind::Permission,
        _ => Kind::Config,
    };
    Error::new(kind, format!("--metrics-addr {addr}: cannot listen: {e}"))
}

async fn run(
    listener: TcpListener,
    metrics: Metrics,
    shutdown: futures::future::Shared<futures::future::BoxFuture<'static, ()>>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut conns = JoinSet::new();
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p,
            _ = shutdown.clone() => break,
        };
        let Ok(permit) = permit else { break };
        let stream = tokio::select! {
            s = listener.accept() => s,
            _ = shutdown.clone() => break,
        };
        // A failed accept (the peer reset, descriptors exhausted) is the peer's or passing:
        // pause briefly rather than spin.
        let (stream, _) = match stream {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!("metrics: accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Reap the finished connections so the set stays as small as the live ones.
        while conns.try_join_next().is_some() {}
        let metrics = metrics.clone();
        let shutdown = shutdown.clone();
        conns.spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |req| {
                let resp = respond(&metrics, &req);
                async move { Ok::<_, Infallible>(resp) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = shutdown => {}
            }
            // Finish the request in flight, then close; an idle keep-alive closes at once.
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        });
    }
    drop(listener);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            "metrics: {} connection(s) still open after {:?}; closing them",
            conns.len(),
            SHUTDOWN_GRACE
        );
        conns.shutdown().await;
    }
    tracing::info!("metrics: server stopped");
}

fn respond<B>(metrics: &Metrics, req: &Request<B>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if path != "/metrics" && path != "/healthz" {
        return text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics or /healthz\n",
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    if path == "/healthz" {
        let (alive, line) = metrics.health();
        let status = if alive {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        return text(status, &format!("{line}\n"));
    }
    let wants_openmetrics = req
        .headers()
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let (body, kind) = if wants_openmetrics {
        (metrics.render_openmetrics(), OPENMETRICS)
    } else {
        (
            metrics.render_prometheus(),
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        )
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(kind));
    r
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
