//! Writing a restore's pages on a thread of its own: runs of consecutive pages, gathered a
//! megabyte at a time (a random workload's chain is thousands of one-page runs, and a handoff
//! per run cost more than the writes), written where they belong, with writeback started
//! behind a forward run of writes (a rollup's pages, in order) so the final fsync is short.

use std::io::IoSlice;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::fs::durable_writer::start_writeback;
use crate::replicate::pooled::{Pool, Pooled};

/// Where a piece's bytes are: in the batch's own copies (from this offset), or in a frame a
/// reader decompressed (from this offset), written from there without a copy.
enum Src {
    Copied(usize),
    Frame(Arc<Pooled>, usize),
}

/// Bytes for the file at `at`.
struct Piece {
    at: u64,
    len: usize,
    src: Src,
}

/// A batch: the copied bytes, and the pieces in order.
struct Batch {
    copied: Pooled,
    pieces: Vec<Piece>,
}

/// Bytes gathered before they are handed over.
const BATCH: usize = 1024 * 1024;
/// Writeback is started each time a forward run of writes grew this much.
const WRITEBACK: u64 = 32 * 1024 * 1024;
/// The widest gap a forward run of writes may leave.
const GAP: u64 = 1024 * 1024;
/// The most buffers one `pwritev` takes (Linux's IOV_MAX).
const IOV_MAX: usize = 1024;

pub(crate) struct PageWriter {
    batch: Batch,
    /// Bytes in the batch, copied or not.
    bytes: usize,
    copies: Arc<Pool>,
    tx: Option<std::sync::mpsc::SyncSender<Batch>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl PageWriter {
    pub(crate) fn new(file: std::fs::File) -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(4);
        // Writeback's block allocation (ext4's delayed allocation) on a third thread, so the
        // writes go on beside it.
        let (to_writeback, ranges) = std::sync::mpsc::channel::<(u64, u64)>();
        let behind = file.try_clone();
        std::thread::spawn(move || {
            if let Ok(file) = behind {
                for (at, len) in ranges {
                    start_writeback(&file, at, len);
                }
            }
        });
        let thread = std::thread::spawn(move || -> std::io::Result<()> {
            let mut ahead = (0u64, 0u64);
            for batch in rx {
                for (at, len) in write_batch(&file, &batch)? {
                    let end = at + len;
                    // A forward run may skip a few pages (written by newer segments), but a
                    // jump is a scattered write: writeback started over everything between
                    // would only make the next writes to those pages wait.
                    ahead = match ahead {
                        (lo, hi) if at >= hi && at - hi <= GAP && hi > lo => (lo, end),
                        _ => (at, end),
                    };
                    if ahead.1 - ahead.0 >= WRITEBACK {
                        let _ = to_writeback.send((ahead.0, ahead.1 - ahead.0));
                        ahead = (ahead.1, ahead.1);
                    }
                }
            }
            Ok(())
        });
        // The batches in the channel, the one being written, and the one being filled.
        let copies = Pool::new(6);
        PageWriter {
            batch: Batch {
                copied: copies.take(BATCH),
                pieces: Vec::new(),
            },
            bytes: 0,
            copies,
            tx: Some(tx),
            thread: Some(thread),
        }
    }

    /// Add `page` at byte `at`, copied.
    pub(crate) fn page(&mut self, at: u64, page: &[u8]) -> Result<()> {
        self.make_room()?;
        let b = &mut self.batch;
        let from = b.copied.len();
        match b.pieces.last_mut() {
            Some(p)
                if p.at + p.len as u64 == at
                    && matches!(p.src, Src::Copied(f) if f + p.len == from) =>
            {
                p.len += page.len()
            }
            _ => b.pieces.push(Piece {
                at,
                len: page.len(),
                src: Src::Copied(from),
            }),
        }
        b.copied.vec_mut().extend_from_slice(page);
        self.bytes += page.len();
        Ok(())
    }

    /// Add the `len` bytes at `from` in `frame` at byte `at`, written from the frame itself.
    pub(crate) fn page_in(
        &mut self,
        at: u64,
        frame: &Arc<Pooled>,
        from: usize,
        len: usize,
    ) -> Result<()> {
        self.make_room()?;
        self.batch.pieces.push(Piece {
            at,
            len,
            src: Src::Frame(frame.clone(), from),
        });
        self.bytes += len;
        Ok(())
    }

    fn make_room(&mut self) -> Result<()> {
        if self.bytes >= BATCH {
            self.send()?;
        }
        Ok(())
    }

    fn send(&mut self) -> Result<()> {
        let next = Batch {
            copied: self.copies.take(BATCH),
            pieces: Vec::new(),
        };
        let batch = std::mem::replace(&mut self.batch, next);
        self.bytes = 0;
        let sent = self.tx.as_ref().map(|tx| tx.send(batch));
        match sent {
            Some(Ok(())) => Ok(()),
            // The thread stopped: its own error says why.
            _ => self.finish_thread().and(Err(Error::new(
                crate::error::Kind::Internal,
                "the page writer stopped",
            ))),
        }
    }

    fn finish_thread(&mut self) -> Result<()> {
        drop(self.tx.take());
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(Ok(()))) | None => Ok(()),
            Some(Ok(Err(e))) => Err(Error::io("write the image", e)),
            Some(Err(_)) => Err(Error::new(
                crate::error::Kind::Internal,
                "the page writer panicked",
            )),
        }
    }

    /// Write out the rest and wait for every write.
    pub(crate) fn finish(mut self) -> Result<()> {
        if !self.batch.pieces.is_empty() {
            self.send()?;
        }
        self.finish_thread()
    }
}

impl Drop for PageWriter {
    /// Unfinished (an error elsewhere): wait for the thread, so nothing is written after the
    /// caller has moved on.
    fn drop(&mut self) {
        let _ = self.finish_thread();
    }
}

/// Write `batch`, each run of pieces that follow each other in the file with one `pwritev`;
/// the runs written (offset, length).
fn write_batch(file: &std::fs::File, batch: &Batch) -> std::io::Result<Vec<(u64, u64)>> {
    let mut runs = Vec::new();
    let mut slices: Vec<IoSlice> = Vec::with_capacity(IOV_MAX);
    let mut run = (0u64, 0u64);
    for p in &batch.pieces {
        if !slices.is_empty() && (p.at != run.0 + run.1 || slices.len() == IOV_MAX) {
            write_all_at(file, &mut slices, run.0)?;
            runs.push(run);
            slices.clear();
        }
        if slices.is_empty() {
            run = (p.at, 0);
        }
        let bytes = match &p.src {
            Src::Copied(from) => &batch.copied[*from..*from + p.len],
            Src::Frame(frame, from) => &frame[*from..*from + p.len],
        };
        slices.push(IoSlice::new(bytes));
        run.1 += p.len as u64;
    }
    if !slices.is_empty() {
        write_all_at(file, &mut slices, run.0)?;
        runs.push(run);
    }
    Ok(runs)
}

/// `pwritev` until every byte of `slices` is written at `at`.
fn write_all_at(file: &std::fs::File, slices: &mut [IoSlice], mut at: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut left = &mut slices[..];
    while !left.is_empty() {
        // SAFETY: IoSlice is ABI-compatible with iovec on Unix, and every slice is borrowed
        // for the call; pwritev only reads them.
        let n = unsafe {
            libc::pwritev(
                file.as_raw_fd(),
                left.as_ptr() as *const libc::iovec,
                left.len().min(IOV_MAX) as libc::c_int,
                at as libc::off_t,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut left, n as usize);
        at += n as u64;
    }
    Ok(())
}
