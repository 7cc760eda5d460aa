//! Writing a restore's pages on a thread of its own: runs of consecutive pages, gathered a
//! megabyte at a time (a random workload's chain is thousands of one-page runs, and a handoff
//! per run cost more than the writes), written where they belong, with writeback started
//! behind a forward run of writes (a rollup's pages, in order) so the final fsync is short.

use std::os::unix::fs::FileExt;

use crate::error::{Error, Result};
use crate::fs::durable_writer::start_writeback;

/// A batch: the bytes, and each run's (offset in the file, length) in order.
type Batch = (Vec<u8>, Vec<(u64, usize)>);

/// Bytes gathered before they are handed over.
const BATCH: usize = 1024 * 1024;
/// Writeback is started each time a forward run of writes grew this much.
const WRITEBACK: u64 = 32 * 1024 * 1024;
/// The widest gap a forward run of writes may leave.
const GAP: u64 = 1024 * 1024;

pub(crate) struct PageWriter {
    batch: Vec<u8>,
    runs: Vec<(u64, usize)>,
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
            for (bytes, runs) in rx {
                let mut from = 0;
                for (at, len) in runs {
                    file.write_all_at(&bytes[from..from + len], at)?;
                    from += len;
                    let end = at + len as u64;
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
        PageWriter {
            batch: Vec::with_capacity(BATCH),
            runs: Vec::new(),
            tx: Some(tx),
            thread: Some(thread),
        }
    }

    /// Add `page` at byte `at`: to the run before it when `extend` (it follows that run's
    /// last page), else as a new run.
    pub(crate) fn page(&mut self, at: u64, page: &[u8], extend: bool) -> Result<()> {
        match self.runs.last_mut() {
            Some(run) if extend => run.1 += page.len(),
            _ => {
                if self.batch.len() >= BATCH {
                    self.send()?;
                }
                self.runs.push((at, page.len()));
            }
        }
        self.batch.extend_from_slice(page);
        Ok(())
    }

    fn send(&mut self) -> Result<()> {
        let batch = (
            std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH)),
            std::mem::take(&mut self.runs),
        );
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
        if !self.runs.is_empty() {
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
