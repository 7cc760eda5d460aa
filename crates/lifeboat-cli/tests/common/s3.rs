//! A real S3-compatible server (s3s-fs, real SigV4 checks) on 127.0.0.1 for the S3 tests,
//! started by each test and stopped when dropped.
#![allow(dead_code)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::aws::AmazonS3Builder;
use object_store::ObjectStore;

use super::{cmd, stderr, stdout};

pub const KEY: &str = "lifeboat-test-key";
pub const SECRET: &str = "lifeboat-test-secret-0123456789";
pub const BUCKET: &str = "lifeboat-test";

pub fn s3s_fs() -> PathBuf {
    if let Ok(p) = std::env::var("LIFEBOAT_S3S_FS") {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let p = PathBuf::from(home).join(".cache/lifeboat-test-tools/bin/s3s-fs");
    assert!(
        p.exists(),
        "{} is missing: run ./scripts/test.sh, which builds it",
        p.display()
    );
    p
}

/// One s3s-fs process on a free loopback port, killed on drop.
pub struct S3Server {
    child: Child,
    pub port: u16,
    pub data: tempfile::TempDir,
}

impl S3Server {
    pub fn start() -> S3Server {
        let data = tempfile::tempdir().unwrap();
        std::fs::create_dir(data.path().join(BUCKET)).unwrap();
        // A port found free may be taken before the server binds it: then another one.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            if let Some(child) = Self::spawn(port, data.path()) {
                return S3Server { child, port, data };
            }
        }
        panic!("s3s-fs exited at start five times (its port taken?)");
    }

    /// Kill the server (as a crash would), keeping its data.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Start the server again on the same port and data.
    pub fn restart(&mut self) {
        self.kill();
        self.child = Self::spawn(self.port, self.data.path())
            .unwrap_or_else(|| panic!("s3s-fs could not start again on port {}", self.port));
    }

    /// The server on `port`, once it accepts connections; None if it exited first.
    fn spawn(port: u16, data: &Path) -> Option<Child> {
        let mut child = Command::new(s3s_fs())
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--access-key",
                KEY,
                "--secret-key",
                SECRET,
            ])
            .arg(data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start s3s-fs");
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if child.try_wait().unwrap().is_some() {
                return None;
            }
            assert!(Instant::now() < deadline, "s3s-fs did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(child)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Run lifeboat with this server's settings (and `secret` as the secret key).
    pub fn lifeboat(&self, dir: &Path, secret: &str, args: &[&str]) -> Output {
        cmd(dir)
            .env("AWS_ACCESS_KEY_ID", KEY)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env("AWS_ENDPOINT_URL", self.endpoint())
            .env("AWS_REGION", "us-east-1")
            .args(args)
            .output()
            .unwrap()
    }

    pub fn ok(&self, dir: &Path, args: &[&str]) -> String {
        let o = self.lifeboat(dir, SECRET, args);
        assert!(o.status.success(), "lifeboat {args:?}: {}", stderr(&o));
        stdout(&o)
    }

    /// A store handle for planting and inspecting objects directly.
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        Arc::new(
            AmazonS3Builder::new()
                .with_bucket_name(BUCKET)
                .with_region("us-east-1")
                .with_access_key_id(KEY)
                .with_secret_access_key(SECRET)
                .with_endpoint(self.endpoint())
                .with_allow_http(true)
                .build()
                .unwrap(),
        )
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}
