//! Uploads into the repository: a local file (staged, fsynced, renamed), an S3 multipart upload
//! whose id is recorded in the backup's claim until it completes (so `cleanup` can abort it if
//! the backup dies), or object_store's multipart writer for any other store. An object is
//! replaced only once its upload is complete.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path as Key;
use object_store::{ObjectStoreExt, PutPayload, WriteMultipart};
use tokio::sync::mpsc;

use crate::error::Result;
use crate::repo::claim::Claim;
use crate::repo::repository::{Repository, CLAIM_SUFFIX, DATA_SUFFIX, PART_SIZE};
use crate::repo::store;

impl Repository {
    /// Add a multipart upload to this process's claim of `id`, before any part is sent.
    pub(crate) async fn record_upload(
        &self,
        db: &str,
        id: &str,
        key: &Key,
        upload_id: String,
    ) -> Result<()> {
        let mut claim = self.read_claim(db, id).await.unwrap_or_else(Claim::mine);
        claim.uploads.push(crate::repo::claim::Upload {
            key: key.to_string(),
            upload_id,
        });
        self.write_claim(db, id, &claim, "record the upload in the claim")
            .await
    }

    /// Replace this process's claim of `id` with `claim`.
    async fn write_claim(&self, db: &str, id: &str, claim: &Claim, what: &str) -> Result<()> {
        self.backend
            .store
            .put(
                &self.key(db, id, CLAIM_SUFFIX),
                PutPayload::from(claim.to_json()),
            )
            .await
            .map_err(|e| self.err(what, e))?;
        Ok(())
    }

    /// Take a completed upload out of this process's claim of `id`.
    pub(crate) async fn forget_upload(&self, db: &str, id: &str, key: &Key) -> Result<()> {
        let Some(mut claim) = self.read_claim(db, id).await else {
            return Ok(());
        };
        claim.uploads.retain(|u| u.key != key.as_ref());
        self.write_claim(db, id, &claim, "update the claim").await
    }

    /// Upload the data object from a stream of chunks, as a multipart upload recorded in the
    /// claim of `id`. When the stream ends without `complete` set, the producer failed: the
    /// upload is aborted, not finished, and `Ok(false)` returned (the producer reports why).
    pub async fn upload(
        &self,
        db: &str,
        id: &str,
        chunks: mpsc::Receiver<Bytes>,
        complete: Arc<AtomicBool>,
    ) -> Result<bool> {
        self.upload_to(
            &self.key(db, id, DATA_SUFFIX),
            chunks,
            complete,
            Some((db, id)),
        )
        .await
    }

    /// The key of a database's SQL mirror file (`backup-YYYY-MM-DD.sql`).
    pub fn mirror_key(&self, db: &str, name: &str) -> Key {
        self.prefix(db).join(name)
    }

    /// [`Repository::upload`] to any key (replacing it only once complete), recording S3
    /// uploads in the claim of `claim` = (database, backup id) when given.
    pub async fn upload_to(
        &self,
        key: &Key,
        chunks: mpsc::Receiver<Bytes>,
        complete: Arc<AtomicBool>,
        claim: Option<(&str, &str)>,
    ) -> Result<bool> {
        if let Some(path) = self.backend.local_path(key) {
            return store::upload_local(&self.backend.url, path, chunks, complete).await;
        }
        if let Some((s3, _)) = &self.backend.s3 {
            let started = |upload_id: String| async move {
                match claim {
                    Some((db, id)) => self.record_upload(db, id, key, upload_id).await,
                    None => Ok(()),
                }
            };
            let done = crate::repo::s3_uploads::upload(
                s3,
                &self.backend.url,
                key,
                chunks,
                complete,
                started,
            )
            .await?;
            if let (true, Some((db, id))) = (done, claim) {
                // Completed: nothing left for a cleanup to abort (best effort; aborting a
                // completed upload is harmless on S3).
                let _ = self.forget_upload(db, id, key).await;
            }
            return Ok(done);
        }
        self.upload_generic(key, chunks, complete).await
    }

    /// Any other object store: object_store's own multipart writer.
    async fn upload_generic(
        &self,
        key: &Key,
        mut chunks: mpsc::Receiver<Bytes>,
        complete: Arc<AtomicBool>,
    ) -> Result<bool> {
        let upload = self
            .backend
            .store
            .put_multipart(key)
            .await
            .map_err(|e| self.err("start upload", e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        while let Some(chunk) = chunks.recv().await {
            if let Err(e) = writer.wait_for_capacity(2).await {
                let _ = writer.abort().await;
                return Err(self.err("upload", e));
            }
            writer.write(&chunk);
        }
        if !complete.load(Ordering::SeqCst) {
            let _ = writer.abort().await;
            return Ok(false);
        }
        writer
            .finish()
            .await
            .map_err(|e| self.err("finish upload", e))?;
        Ok(true)
    }

    /// Abort the S3 multipart uploads a dead backup's claim names.
    pub async fn abort_uploads(&self, claim: &Claim) -> Result<usize> {
        let Some((s3, _)) = &self.backend.s3 else {
            return Ok(0);
        };
        for u in &claim.uploads {
            crate::repo::s3_uploads::abort(s3, &self.backend.url, &u.key, &u.upload_id).await?;
        }
        Ok(claim.uploads.len())
    }

    /// S3: incomplete multipart uploads anywhere under a database (its backups, and the
    /// compacted segments under `generations/` that a killed `compact` was uploading), or None
    /// when the server cannot list them (or this is not S3).
    pub async fn incomplete_uploads(
        &self,
        db: &str,
    ) -> Result<Option<Vec<crate::repo::s3_uploads::Incomplete>>> {
        let Some((s3, options)) = &self.backend.s3 else {
            return Ok(None);
        };
        let prefix = format!("{}/", self.backend.root.clone().join(db));
        crate::repo::s3_uploads::list_incomplete(s3, options, &self.backend.url, &prefix).await
    }

    /// Abort one incomplete upload found by [`Repository::incomplete_uploads`].
    pub async fn abort_upload(&self, key: &str, upload_id: &str) -> Result<()> {
        match &self.backend.s3 {
            Some((s3, _)) => {
                crate::repo::s3_uploads::abort(s3, &self.backend.url, key, upload_id).await
            }
            None => Ok(()),
        }
    }
}
