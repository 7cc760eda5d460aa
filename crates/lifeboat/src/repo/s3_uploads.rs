//! S3 multipart uploads done step by step (create, parts, complete), so the upload id is known
//! from the start and can be written into the backup's claim: a backup killed mid-upload then
//! leaves a claim that names the upload, and `cleanup` aborts it. S3 never lists such an upload
//! with the objects, and keeps (and bills) its parts until someone does. Uploads no claim
//! names are found with ListMultipartUploads, on servers that have it.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::{FuturesOrdered, StreamExt};
use object_store::aws::AmazonS3;
use object_store::client::{HttpClient, HttpConnector, HttpRequestBody, ReqwestConnector};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as Key;
use object_store::signer::{SignedUrlOptions, Signer};
use object_store::{ClientOptions, PutPayload};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::error::{Error, Kind, Result};
use crate::repo::store::store_error;

/// Parts are this size (S3 wants at least 5 MiB for all but the last).
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts uploading at once.
const IN_FLIGHT: usize = 2;

/// Upload the chunks arriving on `chunks` to `key` as one multipart upload. `started` gets the
/// upload id before any part is sent (to record it); if it fails, the upload is aborted. When
/// the stream ends without `complete` set the producer failed: the upload is aborted and
/// `Ok(false)` returned.
pub async fn upload<F, Fut>(
    s3: &AmazonS3,
    url: &str,
    key: &Key,
    mut chunks: mpsc::Receiver<Bytes>,
    complete: Arc<AtomicBool>,
    started: F,
) -> Result<bool>
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let id = s3
        .create_multipart(key)
        .await
        .map_err(|e| store_error(url, "start upload", e))?;
    let abort = |e: Error| async {
        let _ = s3.abort_multipart(key, &id).await;
        Err(e)
    };
    if let Err(e) = started(id.clone()).await {
        return abort(e).await;
    }
    let mut parts: Vec<PartId> = Vec::new();
    let mut inflight = FuturesOrdered::new();
    let mut buf: Vec<u8> = Vec::with_capacity(PART_SIZE);
    let mut next = 0usize;
    let mut failed: Option<object_store::Error> = None;
    while let Some(chunk) = chunks.recv().await {
        buf.extend_from_slice(&chunk);
        while buf.len() >= PART_SIZE && failed.is_none() {
            let rest = buf.split_off(PART_SIZE);
            let part = std::mem::replace(&mut buf, rest);
            if inflight.len() >= IN_FLIGHT {
                match inflight.next().await {
                    Some(Ok(p)) => parts.push(p),
                    Some(Err(e)) => failed = Some(e),
                    None => {}
                }
            }
            inflight.push_back(s3.put_part(key, &id, next, PutPayload::from(part)));
            next += 1;
        }
        if failed.is_some() {
            break; // dropping the receiver stops the producer
        }
    }
    drop(chunks);
    if let Some(e) = failed {
        return abort(store_error(url, "upload", e)).await;
    }
    if !complete.load(Ordering::SeqCst) {
        drop(inflight);
        let _ = s3.abort_multipart(key, &id).await;
        return Ok(false);
    }
    if !buf.is_empty() || next == 0 {
        inflight.push_back(s3.put_part(key, &id, next, PutPayload::from(buf)));
    }
    while let Some(r) = inflight.next().await {
        match r {
            Ok(p) => parts.push(p),
            Err(e) => return abort(store_error(url, "upload", e)).await,
        }
    }
    if let Err(e) = s3.complete_multipart(key, &id, parts).await {
        return abort(store_error(url, "finish upload", e)).await;
    }
    Ok(true)
}

/// Abort an upload; one that is already gone counts as aborted.
pub async fn abort(s3: &AmazonS3, url: &str, key: &str, upload_id: &str) -> Result<()> {
    let key = Key::parse(key).map_err(|e| {
        Error::new(
            Kind::Repository,
            format!("repository {url}: abort upload of {key:?}: {e}"),
        )
    })?;
    match s3.abort_multipart(&key, &upload_id.to_string()).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(store_error(url, "abort upload", e)),
    }
}

/// An incomplete multipart upload, as ListMultipartUploads reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incomplete {
    pub key: String,
    pub upload_id: String,
    pub initiated: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListResult {
    #[serde(default)]
    is_truncated: bool,
    #[serde(default)]
    next_key_marker: Option<String>,
    #[serde(default)]
    next_upload_id_marker: Option<String>,
    #[serde(default, rename = "Upload")]
    uploads: Vec<UploadXml>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UploadXml {
    key: String,
    upload_id: String,
    #[serde(default)]
    initiated: Option<String>,
}

/// Where the next page of a listing starts: (key marker, upload id marker).
type Marker = (String, String);

/// One page of a ListMultipartUploads answer, and the markers of the next page.
fn parse_page(body: &[u8]) -> Result<(Vec<Incomplete>, Option<Marker>)> {
    let bad = |e: String| {
        Error::new(
            Kind::Repository,
            format!("ListMultipartUploads: unreadable answer: {e}"),
        )
    };
    let text = std::str::from_utf8(body).map_err(|e| bad(e.to_string()))?;
    let r: ListResult = quick_xml::de::from_str(text).map_err(|e| bad(e.to_string()))?;
    let uploads = r
        .uploads
        .into_iter()
        .map(|u| Incomplete {
            initiated: u
                .initiated
                .as_deref()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.to_utc()),
            key: u.key,
            upload_id: u.upload_id,
        })
        .collect();
    let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
    let next = match (r.is_truncated, non_empty(r.next_key_marker)) {
        (true, Some(k)) => Some((k, non_empty(r.next_upload_id_marker).unwrap_or_default())),
        (true, None) => return Err(bad("truncated without a NextKeyMarker".into())),
        (false, _) => None,
    };
    Ok((uploads, next))
}

/// Every incomplete multipart upload under `prefix`, or `None` when the server does not
/// implement ListMultipartUploads (some S3-compatible servers answer 501).
pub async fn list_incomplete(
    s3: &AmazonS3,
    options: &ClientOptions,
    url: &str,
    prefix: &str,
) -> Result<Option<Vec<Incomplete>>> {
    let fail = |what: String| {
        Error::new(
            Kind::Repository,
            format!("repository {url}: list incomplete uploads: {what}"),
        )
    };
    let http: HttpClient = ReqwestConnector::default()
        .connect(options)
        .map_err(|e| store_error(url, "list incomplete uploads", e))?;
    let mut out = Vec::new();
    let mut marker: Option<Marker> = None;
    loop {
        let mut query = vec![
            ("uploads".to_string(), String::new()),
            ("prefix".to_string(), prefix.to_string()),
        ];
        if let Some((k, id)) = &marker {
            query.push(("key-marker".into(), k.clone()));
            if !id.is_empty() {
                query.push(("upload-id-marker".into(), id.clone()));
            }
        }
        let opts = SignedUrlOptions::default().with_query(query);
        let signed = s3
            .signed_url_opts(
                http::Method::GET,
                &Key::default(),
                Duration::from_secs(300),
                &opts,
            )
            .await
            .map_err(|e| store_error(url, "list incomplete uploads", e))?;
        let req = http::Request::builder()
            .method(http::Method::GET)
            .uri(signed.as_str())
            .body(HttpRequestBody::empty())
            .map_err(|e| fail(e.to_string()))?;
        // Never print the signed URL: it carries the credential and signature.
        let resp = http.execute(req).await.map_err(|e| fail(e.to_string()))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .bytes()
            .await
            .map_err(|e| fail(e.to_string()))?;
        if status == http::StatusCode::NOT_IMPLEMENTED {
            return Ok(None);
        }
        if !status.is_success() {
            let text: String = String::from_utf8_lossy(&body).chars().take(200).collect();
            return Err(fail(format!("HTTP {status}: {}", text.replace('\n', " "))));
        }
        let (page, next) = parse_page(&body)?;
        out.extend(page);
        match next {
            Some(n) if Some(&n) != marker.as_ref() => marker = Some(n),
            Some(_) => return Err(fail("the listing did not advance".into())),
            None => return Ok(Some(out)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_list_multipart_uploads() {
        let page = br#"<?xml version="1.0" encoding="UTF-8"?>
<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Bucket>b</Bucket><KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker>
  <NextKeyMarker>lb/app/backups/backup-2026-12-01T020000Z.sqlite.zst</NextKeyMarker>
  <NextUploadIdMarker>xyz</NextUploadIdMarker>
  <MaxUploads>2</MaxUploads><IsTruncated>true</IsTruncated>
  <Upload><Key>lb/app/backups/backup-2026-11-30T020000Z.sqlite.zst</Key><UploadId>abc&amp;1</UploadId>
    <Initiated>2026-11-30T02:00:01.000Z</Initiated></Upload>
  <Upload><Key>lb/app/backups/backup-2026-12-01T020000Z.sqlite.zst</Key><UploadId>xyz</UploadId>
    <Initiated>2026-12-01T02:00:01.000Z</Initiated></Upload>
</ListMultipartUploadsResult>"#;
        let (uploads, next) = parse_page(page).unwrap();
        assert_eq!(uploads.len(), 2);
        assert_eq!(uploads[0].upload_id, "abc&1");
        assert_eq!(
            uploads[0].initiated.unwrap().to_rfc3339(),
            "2026-11-30T02:00:01+00:00"
        );
        assert_eq!(
            next,
            Some((
                "lb/app/backups/backup-2026-12-01T020000Z.sqlite.zst".into(),
                "xyz".into()
            ))
        );
        let (none, end) = parse_page(
            b"<ListMultipartUploadsResult><IsTruncated>false</IsTruncated><NextKeyMarker/></ListMultipartUploadsResult>",
        )
        .unwrap();
        assert!(none.is_empty() && end.is_none());
    }
}
