//! A durable file writer: hands full buffers to a thread that writes them, so producing the
//! bytes (formatting, decompressing) and the kernel's copying overlap, and starts writeback as
//! it goes so the final fsync is short. Restore, dump and local uploads write through it.

use crate::fs::page_set::Frontier;

/// Ask the kernel to start writing a range back now (Linux); a hint, so errors are ignored:
/// the fsync before the rename is what guarantees durability.
pub fn start_writeback(file: &std::fs::File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid open descriptor; sync_file_range only reads its arguments.
        unsafe {
            libc::sync_file_range(
                file.as_raw_fd(),
                offset as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}

/// A `Write` that hands full buffers to a thread which writes them to a file, so producing the
/// bytes (formatting, decompressing) and the kernel's copying overlap. It starts writeback as it
/// goes (every 32 MB), so the fsync of a durable file in [`FileWriter::finish`] is short, and the
/// kernel never sits on hundreds of MB of dirty pages (which made a scratch image's writes
/// nearly three times as costly in system time).
pub struct FileWriter {
    buf: Vec<u8>,
    durable: bool,
    tx: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    /// Buffers the writer is done with, to fill again (fresh 1 MB allocations cost page faults).
    spare: std::sync::mpsc::Receiver<Vec<u8>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<std::fs::File>>>,
    /// Why the writer thread stopped, for the producer's next write to report (a full disk must
    /// say so, not "writer stopped").
    failure: Failure,
}

/// The writer thread's error, as (kind, OS error code, text): `io::Error` is not `Clone`.
type Failure = std::sync::Arc<std::sync::Mutex<Option<(std::io::ErrorKind, Option<i32>, String)>>>;

const WRITE_BUF: usize = 1024 * 1024;
/// Writeback is started each time this much more was written.
const WRITEBACK: u64 = 32 * 1024 * 1024;

impl FileWriter {
    /// A file that is kept: written back as it grows, fsynced by `finish`.
    pub fn new(file: std::fs::File) -> Self {
        Self::start(file, true, None)
    }

    /// A scratch file, read soon and deleted: not fsynced.
    pub fn scratch(file: std::fs::File) -> Self {
        Self::start(file, false, None)
    }

    /// A scratch file another writer fills at the same time: the bytes written through it land
    /// at their place from the file's start, once `frontier` lets them, except the pages it
    /// says the other wrote.
    pub fn filling(file: std::fs::File, frontier: std::sync::Arc<Frontier>) -> Self {
        Self::start(file, false, Some(frontier))
    }

    fn start(file: std::fs::File, durable: bool, skip: Option<std::sync::Arc<Frontier>>) -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
        let (give_back, spare) = std::sync::mpsc::sync_channel::<Vec<u8>>(2);
        let failure: Failure = std::sync::Arc::new(std::sync::Mutex::new(None));
        let failed = failure.clone();
        let thread = std::thread::spawn(move || -> std::io::Result<std::fs::File> {
            use std::io::Write;
            let mut file = file;
            let (mut written, mut synced) = (0u64, 0u64);
            for chunk in rx {
                use std::os::unix::fs::FileExt;
                let wrote =
                    match &skip {
                        None => file.write_all(&chunk),
                        Some(skip) => skip.runs(written, chunk.len()).into_iter().try_for_each(
                            |(from, to)| file.write_all_at(&chunk[from..to], written + from as u64),
                        ),
                    };
                if let Err(e) = wrote {
                    if let Ok(mut f) = failed.lock() {
                        *f = Some((e.kind(), e.raw_os_error(), e.to_string()));
                    }
                    return Err(e);
                }
                written += chunk.len() as u64;
                if written - synced >= WRITEBACK {
                    start_writeback(&file, synced, written - synced);
                    synced = written;
                }
                let _ = give_back.try_send(chunk);
            }
            Ok(file)
        });
        FileWriter {
            buf: Vec::with_capacity(WRITE_BUF),
            durable,
            tx: Some(tx),
            spare,
            thread: Some(thread),
            failure,
        }
    }

    fn send(&mut self) -> std::io::Result<()> {
        let mut next = self.buffer();
        next.clear();
        let full = std::mem::replace(&mut self.buf, next);
        self.send_owned(full)
    }

    /// A buffer to fill and hand over with [`FileWriter::send_owned`]: one the writer is done
    /// with when there is one (its old contents still in it), else a new empty one.
    pub fn buffer(&mut self) -> Vec<u8> {
        self.spare
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(WRITE_BUF))
    }

    /// Hand over a whole buffer without copying it (after anything written before it).
    pub fn send_owned(&mut self, data: Vec<u8>) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            self.send()?;
        }
        let sent = self.tx.as_ref().map(|tx| tx.send(data));
        match sent {
            Some(Ok(())) => Ok(()),
            // The writer thread stopped: its own error says why.
            _ => Err(self.failure()),
        }
    }

    /// The writer thread's error, rebuilt (same kind and OS error code).
    fn failure(&self) -> std::io::Error {
        match self.failure.lock().ok().and_then(|f| f.clone()) {
            Some((_, Some(code), _)) => std::io::Error::from_raw_os_error(code),
            Some((kind, None, text)) => std::io::Error::new(kind, text),
            None => std::io::Error::other("file writer stopped"),
        }
    }

    /// Write out the rest, wait for the writer, fsync a durable file, and return the file.
    pub fn finish(mut self) -> std::io::Result<std::fs::File> {
        if !self.buf.is_empty() {
            let _ = self.send();
        }
        drop(self.tx.take());
        let file = self
            .thread
            .take()
            .expect("finish runs once")
            .join()
            .map_err(|_| std::io::Error::other("file writer panicked"))??;
        if self.durable {
            file.sync_all()?;
        }
        Ok(file)
    }
}

impl Drop for FileWriter {
    /// Unfinished (an error elsewhere): stop the writer and wait for it, so nothing is written
    /// after the caller has moved on (and perhaps removed the file).
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl std::io::Write for FileWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= WRITE_BUF {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
