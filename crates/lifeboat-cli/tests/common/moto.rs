//! A second real S3 server on 127.0.0.1, moto's (`python3 -m moto.server`, in memory), for what
//! s3s-fs cannot store: a multipart upload whose key is longer than 122 bytes (s3s-fs names a
//! file after the base64 of the whole key, past 255 bytes), which every compacted segment's key
//! is. Moto also lists incomplete uploads (ListMultipartUploads), which s3s-fs does not. Started
//! by each test, killed when dropped.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::s3::{BUCKET, KEY, SECRET};

pub struct Moto {
    child: Child,
    pub port: u16,
}

impl Moto {
    pub fn start() -> Moto {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m moto.server (pip install 'moto[server]')");
        let mut moto = Moto { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        // Its bucket, once it answers (moto checks no signature unless told to).
        while moto.request("PUT", &format!("/{BUCKET}")).is_none() {
            if let Some(status) = moto.child.try_wait().unwrap() {
                panic!("python3 -m moto.server exited ({status}): is moto[server] installed? (scripts/test.sh installs it)");
            }
            assert!(
                Instant::now() < deadline,
                "moto's S3 server did not start (is moto[server] installed?)"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What lifeboat needs to reach it.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", SECRET.to_string()),
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_REGION", "us-east-1".to_string()),
        ]
    }

    /// One plain HTTP request; the response's body, or None when the server does not answer.
    fn request(&self, method: &str, path: &str) -> Option<String> {
        let mut c = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        c.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        write!(
            c,
            "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        )
        .ok()?;
        let mut text = String::new();
        c.read_to_string(&mut text).ok()?;
        let (head, body) = text.split_once("\r\n\r\n")?;
        head.starts_with("HTTP/1.1 2").then(|| body.to_string())
    }

    /// The keys of the incomplete multipart uploads under `prefix` (ListMultipartUploads).
    pub fn uploads(&self, prefix: &str) -> Vec<String> {
        let body = self
            .request("GET", &format!("/{BUCKET}?uploads&prefix={prefix}"))
            .expect("ListMultipartUploads");
        body.split("<Upload>")
            .skip(1)
            .filter_map(|u| {
                let k = u.split_once("<Key>")?.1;
                Some(k.split_once("</Key>")?.0.to_string())
            })
            .collect()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
