//! Object-store backends: turns a repository URL (`file://…`, a plain path, `s3://bucket/prefix`)
//! into an `object_store` handle plus the key prefix under which the repository lives.
//! Every backend goes through this one door, so the repository layout is identical on all.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::local::LocalFileSystem;
use object_store::path::Path as Key;
use object_store::{ClientOptions, ObjectStore, RetryConfig};

use crate::error::{Error, Kind, Result};
use crate::fs::durable_writer::FileWriter;

/// An opened backend: the store, the prefix inside it, and a printable URL (never secrets).
pub struct Backend {
    pub store: Arc<dyn ObjectStore>,
    pub root: Key,
    pub url: String,
    /// For local repositories: the store itself, to map keys to files.
    pub local: Option<Arc<LocalFileSystem>>,
    /// For S3: the client itself (multipart uploads step by step), and its HTTP options.
    pub s3: Option<(Arc<AmazonS3>, ClientOptions)>,
}

/// How long a request to the object store may wait for a connection, and for an answer,
/// before it is retried (once) and then given up: a server that accepts connections but never
/// answers fails the command in about twice this, with exit code 4.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

impl Backend {
    /// Local repositories: the file (or directory) behind `key`.
    pub fn local_path(&self, key: &Key) -> Option<PathBuf> {
        self.local.as_ref()?.path_to_filesystem(key).ok()
    }
}

/// Open the backend for `url`. A missing local directory is created only when `create` is set.
pub fn open(url: &str, create: bool, timeout: Duration) -> Result<Backend> {
    if let Some(rest) = url.strip_prefix("s3://") {
        return open_s3(url, rest, timeout);
    }
    if url.contains("://") && !url.starts_with("file://") {
        return Err(Error::new(
            Kind::Config,
            format!("repository {url}: unsupported scheme (use file://PATH or s3://BUCKET/PREFIX)"),
        ));
    }
    let path = PathBuf::from(url.strip_prefix("file://").unwrap_or(url));
    if path.as_os_str().is_empty() {
        return Err(Error::new(Kind::Config, "repository URL has an empty path"));
    }
    if !path.exists() {
        if !create {
            return Err(Error::new(
                Kind::Repository,
                format!(
                    "repository {url}: directory {} does not exist",
                    path.display()
                ),
            ));
        }
        std::fs::create_dir_all(&path)
            .map_err(|e| Error::io(format!("repository {url}: create directory"), e))?;
    }
    if !path.is_dir() {
        return Err(Error::new(
            Kind::Repository,
            format!("repository {url}: {} is not a directory", path.display()),
        ));
    }
    let dir = path
        .canonicalize()
        .map_err(|e| Error::io(format!("repository {url}"), e))?;
    // fsync: a backup reported as written must survive a power cut.
    let fs = LocalFileSystem::new_with_prefix(&dir)
        .map_err(|e| Error::new(Kind::Repository, format!("repository {url}: {e}")))?
        .with_fsync(true);
    let fs = Arc::new(fs);
    Ok(Backend {
        store: fs.clone(),
        root: Key::default(),
        url: url.to_string(),
        local: Some(fs),
        s3: None,
    })
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn open_s3(url: &str, rest: &str, timeout: Duration) -> Result<Backend> {
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(Error::new(
            Kind::Config,
            format!("repository {url}: missing bucket name"),
        ));
    }
    // An endpoint may carry credentials in its userinfo (`http://KEY:SECRET@host`): they are
    // taken out of the URL (which then appears in no message) and used when the standard
    // variables do not set any.
    let endpoint = env("AWS_ENDPOINT_URL").or_else(|| env("AWS_ENDPOINT"));
    let (endpoint, userinfo) = match endpoint {
        Some(ep) => {
            let (clean, creds) = split_userinfo(&ep)?;
            (Some(clean), creds)
        }
        None => (None, None),
    };
    // Connect and answer timeouts, so a server that never answers fails in seconds, not after
    // object_store's default of minutes; the overall limit leaves room for a slow 8 MiB part.
    let mut client = ClientOptions::new()
        .with_connect_timeout(timeout)
        .with_read_timeout(timeout)
        .with_timeout(timeout.max(Duration::from_secs(300)));
    if let Some(ep) = &endpoint {
        client = client.with_allow_http(ep.starts_with("http://"));
    }
    let mut b = AmazonS3Builder::new().with_bucket_name(bucket);
    match (
        env("AWS_ACCESS_KEY_ID"),
        env("AWS_SECRET_ACCESS_KEY"),
        userinfo,
    ) {
        (Some(id), Some(secret), _) | (None, None, Some((id, secret))) => {
            b = b.with_access_key_id(id).with_secret_access_key(secret);
            if let Some(token) = env("AWS_SESSION_TOKEN") {
                b = b.with_token(token);
            }
        }
        _ if env("AWS_WEB_IDENTITY_TOKEN_FILE").is_some()
            || env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").is_some() =>
        {
            b = AmazonS3Builder::from_env().with_bucket_name(bucket);
        }
        // Never fall through to instance metadata: that is a network call nobody asked for.
        _ => {
            return Err(Error::new(
                Kind::Config,
                format!("repository {url}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
            ))
        }
    }
    b = b.with_client_options(client.clone());
    let region = env("AWS_REGION")
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|| "us-east-1".to_string());
    b = b.with_region(region);
    if let Some(ep) = endpoint {
        b = b
            .with_allow_http(ep.starts_with("http://"))
            .with_virtual_hosted_style_request(false)
            .with_endpoint(ep);
    }
    // One retry of a request that failed or timed out (each retry is said on stderr).
    let retry = RetryConfig {
        max_retries: 2,
        retry_timeout: timeout + Duration::from_secs(5),
        ..RetryConfig::default()
    };
    let s3 = b
        .with_retry(retry)
        .build()
        .map_err(|e| Error::new(Kind::Config, format!("repository {url}: {e}")))?;
    let root = Key::parse(prefix.trim_matches('/'))
        .map_err(|e| Error::new(Kind::Config, format!("repository {url}: bad prefix: {e}")))?;
    let s3 = Arc::new(s3);
    Ok(Backend {
        store: s3.clone(),
        root,
        url: url.to_string(),
        local: None,
        s3: Some((s3, client)),
    })
}

/// Take `user:password@` out of an endpoint URL: (the URL without it, the pair if any).
fn split_userinfo(endpoint: &str) -> Result<(String, Option<(String, String)>)> {
    let mut u = url::Url::parse(endpoint)
        .map_err(|e| Error::new(Kind::Config, format!("AWS_ENDPOINT_URL is not a URL: {e}")))?;
    if u.username().is_empty() && u.password().is_none() {
        return Ok((endpoint.to_string(), None));
    }
    let decode = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let creds = (decode(u.username()), decode(u.password().unwrap_or("")));
    let _ = u.set_username("");
    let _ = u.set_password(None);
    let clean = u.as_str().trim_end_matches('/').to_string();
    Ok((clean, Some(creds)))
}

/// Local repositories: write a streamed object to `path` the way object_store does (a staging
/// file `<path>#N`, fsync, rename, fsync of the directory), but through a writer thread that
/// starts writeback as it goes, so the final fsync has little left to do (125 ms of idle wait
/// at the end of an 800 MB backup before). The same staging name means listing and cleanup
/// see a killed upload the same way. `Ok(false)`: the stream ended without `complete`.
pub async fn upload_local(
    url: &str,
    path: PathBuf,
    mut chunks: mpsc::Receiver<Bytes>,
    complete: Arc<AtomicBool>,
) -> Result<bool> {
    let url = url.to_string();
    let task = tokio::task::spawn_blocking(move || -> Result<bool> {
        // Anything but a full disk is the repository's trouble (gone, unwritable): exit 4.
        let io =
            |what: &str, e| Error::io_as(Kind::Repository, format!("repository {url}: {what}"), e);
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        std::fs::create_dir_all(&dir).map_err(|e| io("create directory", e))?;
        let (file, staging) = create_staging(&path).map_err(|e| io("upload", e))?;
        let mut out = FileWriter::new(file);
        let mut sent = Ok(());
        while let Some(chunk) = chunks.blocking_recv() {
            sent = out.send_owned(Vec::from(chunk));
            if sent.is_err() {
                break; // the writer's own error, from finish, says why
            }
        }
        drop(chunks); // a failed writer stops the producer too
        let written = out.finish().and(sent);
        let done = complete.load(Ordering::SeqCst);
        let placed = match written {
            Ok(_) if !done => Ok(false),
            Ok(_) => std::fs::rename(&staging, &path).map(|()| true),
            Err(e) => Err(e),
        };
        match placed {
            Ok(true) => {
                if let Ok(d) = std::fs::File::open(&dir) {
                    d.sync_all().map_err(|e| io("upload: fsync directory", e))?;
                }
                Ok(true)
            }
            other => {
                let _ = std::fs::remove_file(&staging);
                other.map_err(|e| io("upload", e))
            }
        }
    });
    task.await
        .map_err(|e| Error::new(Kind::Internal, format!("upload task: {e}")))?
}

/// Create `<path>#N` for the first free N.
fn create_staging(path: &Path) -> std::io::Result<(std::fs::File, PathBuf)> {
    let mut n: u32 = rand::random::<u32>() % 1_000_000;
    loop {
        let mut name = path.as_os_str().to_os_string();
        name.push(format!("#{n}"));
        let staging = PathBuf::from(name);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&staging)
        {
            Ok(f) => return Ok((f, staging)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => n = n.wrapping_add(1),
            Err(e) => return Err(e),
        }
    }
}

/// Turn an object-store failure into a one-line repository error.
pub fn store_error(url: &str, what: &str, err: object_store::Error) -> Error {
    use object_store::Error as E;
    let (kind, msg) = match &err {
        E::NotFound { .. } => (Kind::NotFound, format!("{what}: not found")),
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => (
            Kind::Repository,
            format!("{what}: access denied (check the credentials)"),
        ),
        _ => {
            // object_store's own text stops at "error sending request": add the root cause
            // (connection refused, timed out, …) from the source chain.
            let mut text = err.to_string();
            let root = std::iter::successors(Some(&err as &dyn std::error::Error), |e| e.source())
                .last()
                .map(|e| e.to_string())
                .unwrap_or_default();
            if !root.is_empty() && !text.contains(&root) {
                text = format!("{text}: {root}");
            }
            let lower = text.to_ascii_lowercase();
            if lower.contains("no space left") || lower.contains("os error 28") {
                return Error::new(
                    Kind::DiskFull,
                    format!("repository {url}: {what}: no space left on device"),
                );
            }
            if lower.contains("403") || lower.contains("signaturedoesnotmatch") {
                (
                    Kind::Repository,
                    format!("{what}: access denied (check the credentials)"),
                )
            } else if lower.contains("connect") || lower.contains("dns") {
                (Kind::Repository, format!("{what}: unreachable: {text}"))
            } else {
                (Kind::Repository, format!("{what}: {text}"))
            }
        }
    };
    Error::new(kind, format!("repository {url}: {msg}"))
}
