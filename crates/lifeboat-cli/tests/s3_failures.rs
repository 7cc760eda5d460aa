//! S3 when things go wrong: a backup killed mid-upload (its multipart upload is aborted by
//! `cleanup`), a server that accepts connections but never answers (a bounded wait, retries
//! said, exit 4), and credentials in the endpoint URL (used, and never printed).

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use common::s3::*;
use common::*;
use object_store::path::Path as Key;
use object_store::ObjectStoreExt;
use rusqlite::Connection;

/// s3s-fs keeps an unfinished multipart upload as `.upload-<id>.json` and part files.
fn pending_uploads(s3: &S3Server) -> Vec<String> {
    std::fs::read_dir(s3.data.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".upload"))
        .collect()
}

#[test]
fn cleanup_aborts_the_upload_of_a_killed_backup() {
    let s3 = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // ~60 MB that does not compress: the upload takes several parts.
    Connection::open(d.join("big.db"))
        .unwrap()
        .execute_batch(
            "CREATE TABLE blobs (b BLOB);
             WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 15000)
               INSERT INTO blobs SELECT randomblob(4000) FROM n;",
        )
        .unwrap();
    let url = format!("s3://{BUCKET}/k");
    let mut child = cmd(d)
        .env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_ENDPOINT_URL", s3.endpoint())
        .env("TMPDIR", d)
        .args(["backup", "--db", "big.db", "--repo", &url])
        .spawn()
        .unwrap();
    // Kill it once its claim names an upload that has parts.
    let store = s3.store();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before it could be killed"
        );
        assert!(Instant::now() < deadline, "the upload never started");
        let parts = std::fs::read_dir(s3.data.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains(".part-")
            })
            .count();
        if parts > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !pending_uploads(&s3).is_empty(),
        "the killed backup left its upload"
    );
    let claims: Vec<String> = rt()
        .block_on(async {
            use futures::StreamExt;
            store
                .list(Some(&Key::from("k/big/backups")))
                .map(|m| m.unwrap().location.to_string())
                .collect::<Vec<_>>()
                .await
        })
        .into_iter()
        .filter(|k| k.ends_with(".pending"))
        .collect();
    assert_eq!(claims.len(), 1);
    let claim: serde_json::Value = serde_json::from_slice(
        &rt()
            .block_on(async {
                store
                    .get(&Key::from(claims[0].as_str()))
                    .await
                    .unwrap()
                    .bytes()
                    .await
            })
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claim["uploads"].as_array().unwrap().len(), 1, "{claim}");

    // Out of range: refused, nothing removed.
    let o = s3.lifeboat(
        d,
        SECRET,
        &["cleanup", "--repo", &url, "--older-than", "9999999999y"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(!pending_uploads(&s3).is_empty());

    let out = s3.ok(d, &["cleanup", "--repo", &url, "--older-than", "0s"]);
    assert!(out.contains("1 S3 upload(s) aborted"), "{out}");
    assert!(
        pending_uploads(&s3).is_empty(),
        "{:?}",
        pending_uploads(&s3)
    );
    // Nothing is left of the killed backup, not even its claim.
    let left = rt().block_on(async {
        use futures::StreamExt;
        store.list(None).collect::<Vec<_>>().await
    });
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_server_that_never_answers_is_given_up_on_with_exit_4() {
    // Accepts connections, reads, never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let server = std::thread::spawn(move || {
        listener.set_nonblocking(true).unwrap();
        let mut held = Vec::new();
        while !stop2.load(std::sync::atomic::Ordering::SeqCst) {
            if let Ok((mut s, _)) = listener.accept() {
                s.set_nonblocking(true).unwrap();
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                held.push(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("lifeboat.toml"),
        format!("[repository]\nurl = \"s3://{BUCKET}/x\"\ntimeout = \"2s\"\n"),
    )
    .unwrap();
    let mut child = cmd(d)
        .env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
        .args(["list"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A hang detector, not a timing: lifeboat must give up on its own.
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("lifeboat hung on a server that never answers");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    server.join().unwrap();
    assert_eq!(status.code(), Some(4), "{err}");
    assert!(
        err.contains("lifeboat: retrying:"),
        "the retry is said: {err}"
    );
    let last = err.trim_end().lines().last().unwrap();
    assert!(last.starts_with("lifeboat: error: "), "{err}");
}

#[test]
fn credentials_in_the_endpoint_url_are_used_and_never_printed() {
    let s3 = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    Connection::open(d.join("a.db"))
        .unwrap()
        .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
        .unwrap();
    let url = format!("s3://{BUCKET}/u");
    let with_creds = format!("http://{KEY}:{SECRET}@127.0.0.1:{}", s3.port);
    let o = cmd(d)
        .env("AWS_ENDPOINT_URL", &with_creds)
        .args(["backup", "--db", "a.db", "--repo", &url])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stdout(&o).contains(SECRET));
    // A wrong secret in the URL: refused, and the message does not carry it.
    let wrong = format!("http://{KEY}:not-the-secret-42@127.0.0.1:{}", s3.port);
    let o = cmd(d)
        .env("AWS_ENDPOINT_URL", &wrong)
        .args(["--json", "list", "--repo", &url])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    let all = format!("{}{}", stdout(&o), stderr(&o));
    assert!(!all.contains("not-the-secret-42"), "{all}");
    // A server that is not there: the URL in the message has no userinfo.
    let gone = format!("http://{KEY}:{SECRET}@127.0.0.1:1");
    let o = cmd(d)
        .env("AWS_ENDPOINT_URL", &gone)
        .args(["list", "--repo", &url])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(!stderr(&o).contains(SECRET), "{}", stderr(&o));
}

/// A loopback proxy in front of s3s-fs that passes every request through (one per connection)
/// but never answers a GET of a backup's data object: a repository that lists but cannot serve.
fn start_hanging_proxy(upstream: u16) -> (u16, std::sync::Arc<std::sync::atomic::AtomicBool>) {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        while !stop2.load(std::sync::atomic::Ordering::SeqCst) {
            let Ok((mut client, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            client.set_nonblocking(false).unwrap();
            // The request head.
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && client.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let text = String::from_utf8_lossy(&head).into_owned();
            let first = text.lines().next().unwrap_or("").to_string();
            if first.starts_with("GET ") && first.contains(".sqlite.zst") {
                held.push(client); // never answered
                continue;
            }
            // One request per connection: ask the server to close after answering.
            let mut lines: Vec<&str> = text
                .split("\r\n")
                .filter(|l| !l.to_ascii_lowercase().starts_with("connection:") && !l.is_empty())
                .collect();
            lines.push("Connection: close");
            let head = format!("{}\r\n\r\n", lines.join("\r\n"));
            let mut server = std::net::TcpStream::connect(("127.0.0.1", upstream)).unwrap();
            server.write_all(head.as_bytes()).unwrap();
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut server, &mut client);
            });
        }
    });
    (port, stop)
}

#[test]
fn verify_tells_a_failing_repository_from_a_corrupt_backup() {
    let s3 = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    tricky_db(&d.join("app.db"));
    std::fs::write(
        d.join("lifeboat.toml"),
        format!("[repository]\nurl = \"s3://{BUCKET}/v\"\ntimeout = \"2s\"\n"),
    )
    .unwrap();
    s3.ok(d, &["backup", "--db", "app.db"]);
    let (port, stop) = start_hanging_proxy(s3.port);
    let o = cmd(d)
        .env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
        .args(["--json", "verify", "--db", "app"])
        .output()
        .unwrap();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let err = stderr(&o);
    // The backup is fine; the repository did not serve it: exit 4, never 6 ("corrupt").
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(err.contains("could not be verified"), "{err}");
    let json = stdout(&o);
    let v: serde_json::Value =
        serde_json::from_str(&json[..json.find("\n}\n").map_or(json.len(), |i| i + 2)]).unwrap();
    assert_eq!(v["reports"][0]["problem_kind"], "repository", "{v}");
    // Served again, it verifies.
    s3.ok(d, &["verify", "--db", "app"]);
}
