//! zstd's seekable format, for compacted segments: a body written as independent zstd frames,
//! then a seek table in a skippable frame (their sizes), so a restore decompresses the frames
//! of a rollup (about the database's size) on several threads at once. Any zstd reader still
//! reads such a file as one stream: the frames follow each other and the table is skipped.
//! The layout is zstd's own (`contrib/seekable_format/zstd_seekable_compression_format.md`):
//! per frame its compressed and decompressed sizes (u32, little-endian), then the number of
//! frames (u32), a descriptor byte (0: no per-frame checksums, as each frame carries zstd's
//! own), and the magic `0x8F92EAB1`.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Condvar, Mutex};

use crate::replicate::pooled::{Pool, Pooled};

const SKIPPABLE_MAGIC: u32 = 0x184D_2A5E;
const SEEKABLE_MAGIC: u32 = 0x8F92_EAB1;
/// The footer: number of frames, descriptor, magic.
const FOOTER: u64 = 9;
/// The most frames a table may list, and the largest frame read back: a damaged or hostile
/// table must not make a reader allocate without bound (a reader holds about `4 * workers`
/// frames, compressed and not; compacted segments write 2 MB ones, and a header of at most
/// 16 MB in a frame of its own).
const MAX_FRAMES: u64 = 1 << 24;
pub const MAX_FRAME: u32 = 20 * 1024 * 1024;

/// Writes frames, then the table.
pub struct FramesWriter<W: Write> {
    out: W,
    z: zstd::bulk::Compressor<'static>,
    sizes: Vec<(u32, u32)>,
}

impl<W: Write> FramesWriter<W> {
    pub fn new(out: W, level: i32) -> std::io::Result<Self> {
        let mut z = zstd::bulk::Compressor::new(level)?;
        z.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))?;
        Ok(FramesWriter {
            out,
            z,
            sizes: Vec::new(),
        })
    }

    /// `data` as one frame (at most [`MAX_FRAME`] bytes).
    pub fn frame(&mut self, data: &[u8]) -> std::io::Result<()> {
        if data.len() > MAX_FRAME as usize {
            return Err(std::io::Error::other("a seekable frame too large"));
        }
        let z = self.z.compress(data)?;
        self.out.write_all(&z)?;
        self.sizes.push((z.len() as u32, data.len() as u32));
        Ok(())
    }

    /// The seek table; returns the output.
    pub fn finish(mut self) -> std::io::Result<W> {
        let mut t = Vec::with_capacity(8 + self.sizes.len() * 8 + FOOTER as usize);
        t.extend_from_slice(&SKIPPABLE_MAGIC.to_le_bytes());
        t.extend_from_slice(&((self.sizes.len() * 8 + FOOTER as usize) as u32).to_le_bytes());
        for (c, d) in &self.sizes {
            t.extend_from_slice(&c.to_le_bytes());
            t.extend_from_slice(&d.to_le_bytes());
        }
        t.extend_from_slice(&(self.sizes.len() as u32).to_le_bytes());
        t.push(0);
        t.extend_from_slice(&SEEKABLE_MAGIC.to_le_bytes());
        self.out.write_all(&t)?;
        Ok(self.out)
    }
}

/// A frame: where it starts in the file, its compressed and decompressed sizes.
#[derive(Debug, Clone, Copy)]
pub struct Frame {
    pub at: u64,
    pub compressed: u32,
    pub size: u32,
}

/// The frames a file's seek table lists; `None` when it has no table (a single-stream file),
/// an error when it has one that does not describe the file exactly.
pub fn frames(file: &std::fs::File) -> std::io::Result<Option<Vec<Frame>>> {
    let len = file.metadata()?.len();
    if len < FOOTER + 8 {
        return Ok(None);
    }
    let mut foot = [0u8; FOOTER as usize];
    file.read_exact_at(&mut foot, len - FOOTER)?;
    if le32(&foot, 5) != SEEKABLE_MAGIC {
        return Ok(None);
    }
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let n = le32(&foot, 0) as u64;
    if foot[4] != 0 || n > MAX_FRAMES {
        return Err(bad("an unknown seek table"));
    }
    let table = 8 + n * 8 + FOOTER;
    if table > len {
        return Err(bad("a seek table longer than its file"));
    }
    let mut t = vec![0u8; (table - FOOTER) as usize];
    file.read_exact_at(&mut t, len - table)?;
    if le32(&t, 0) != SKIPPABLE_MAGIC || le32(&t, 4) as u64 != n * 8 + FOOTER {
        return Err(bad("a seek table that is not a skippable frame"));
    }
    let mut at = 0u64;
    let mut out = Vec::with_capacity(n as usize);
    for i in 0..n as usize {
        let (compressed, size) = (le32(&t, 8 + i * 8), le32(&t, 12 + i * 8));
        if size > MAX_FRAME || compressed > MAX_FRAME.saturating_mul(2) {
            return Err(bad("a seek table listing a frame too large"));
        }
        out.push(Frame {
            at,
            compressed,
            size,
        });
        at += compressed as u64;
    }
    if at != len - table {
        return Err(bad("a seek table whose frames do not fill its file"));
    }
    Ok(Some(out))
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Frames decompressed by `workers` threads, a few ahead of the reader, handed out in order.
/// Memory stays about `2 * workers` frames.
pub struct ParallelFrames {
    shared: Arc<Shared>,
    threads: Vec<std::thread::JoinHandle<()>>,
    next: usize,
    count: usize,
}

struct Shared {
    state: Mutex<State>,
    ready: Condvar,
    room: Condvar,
}

#[derive(Default)]
struct State {
    done: BTreeMap<usize, std::io::Result<Pooled>>,
    /// The next frame a worker takes, and how many the reader took.
    taken: usize,
    consumed: usize,
    stop: bool,
}

impl ParallelFrames {
    /// Decompress `list` (from [`frames`]) of `file`, skipping the first `skip`.
    pub fn start(file: std::fs::File, list: Vec<Frame>, skip: usize, workers: usize) -> Self {
        let workers = workers.max(1);
        let ahead = 2 * workers;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                taken: skip,
                consumed: skip,
                ..State::default()
            }),
            ready: Condvar::new(),
            room: Condvar::new(),
        });
        let (file, list) = (Arc::new(file), Arc::new(list));
        let count = list.len();
        // Frames decompressed ahead, the one read, and a few held downstream (hashed, written).
        let pool = Pool::new(2 * ahead + 4);
        let threads = (0..workers)
            .map(|_| {
                let (shared, file, list) = (shared.clone(), file.clone(), list.clone());
                let pool = pool.clone();
                std::thread::spawn(move || work(&shared, &file, &list, ahead, &pool))
            })
            .collect();
        ParallelFrames {
            shared,
            threads,
            next: skip,
            count,
        }
    }

    /// The next frame's bytes, or `None` after the last. They go back to the workers' pool
    /// when the last holder lets go.
    pub fn next_frame(&mut self) -> Option<std::io::Result<Pooled>> {
        if self.next == self.count {
            return None;
        }
        let mut s = lock(&self.shared.state);
        loop {
            if let Some(got) = s.done.remove(&self.next) {
                s.consumed += 1;
                self.next += 1;
                self.shared.room.notify_all();
                return Some(got);
            }
            s = match self.shared.ready.wait(s) {
                Ok(s) => s,
                Err(p) => p.into_inner(),
            };
        }
    }
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A worker: take the next frame unless too far ahead of the reader, decompress it, hand it in.
fn work(shared: &Shared, file: &std::fs::File, list: &[Frame], ahead: usize, pool: &Arc<Pool>) {
    let mut z = zstd::bulk::Decompressor::new().ok();
    let mut src = Vec::new();
    loop {
        let i = {
            let mut s = lock(&shared.state);
            while !s.stop && s.taken < list.len() && s.taken >= s.consumed + ahead {
                s = match shared.room.wait(s) {
                    Ok(s) => s,
                    Err(p) => p.into_inner(),
                };
            }
            if s.stop || s.taken == list.len() {
                return;
            }
            s.taken += 1;
            s.taken - 1
        };
        let got = match z.as_mut() {
            Some(z) => decompress(z, file, list[i], &mut src, pool.take(list[i].size as usize)),
            None => Err(std::io::Error::other("no zstd context")),
        };
        lock(&shared.state).done.insert(i, got);
        shared.ready.notify_all();
    }
}

/// Frame `f` of `file` into `out`, read through `src`.
fn decompress(
    z: &mut zstd::bulk::Decompressor<'static>,
    file: &std::fs::File,
    f: Frame,
    src: &mut Vec<u8>,
    mut out: Pooled,
) -> std::io::Result<Pooled> {
    src.resize(f.compressed as usize, 0);
    file.read_exact_at(src, f.at)?;
    z.decompress_to_buffer(src, out.vec_mut())?;
    if out.len() != f.size as usize {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "a frame whose size is not the one its seek table lists",
        ));
    }
    Ok(out)
}

impl Drop for ParallelFrames {
    fn drop(&mut self) {
        lock(&self.shared.state).stop = true;
        self.shared.room.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Read frame `f` of `file` alone (the first, a compacted segment's header).
pub fn read_frame(file: &std::fs::File, f: Frame) -> std::io::Result<Pooled> {
    let out = Pooled::unpooled(Vec::with_capacity(f.size as usize));
    decompress(
        &mut zstd::bulk::Decompressor::new()?,
        file,
        f,
        &mut Vec::new(),
        out,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn written(frames: &[Vec<u8>]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.zst");
        let mut w = FramesWriter::new(std::fs::File::create(&path).unwrap(), 3).unwrap();
        for f in frames {
            w.frame(f).unwrap();
        }
        w.finish().unwrap();
        (dir, path)
    }

    fn frame(i: u32, len: usize) -> Vec<u8> {
        (0..len as u32)
            .map(|k| (k.wrapping_mul(i) >> 3) as u8)
            .collect()
    }

    #[test]
    fn frames_come_back_in_order_and_any_zstd_reader_reads_one_stream() {
        let frames: Vec<Vec<u8>> = (1..=40)
            .map(|i| frame(i, 1000 + i as usize * 7919))
            .collect();
        let (_dir, path) = written(&frames);
        let file = std::fs::File::open(&path).unwrap();
        let list = super::frames(&file).unwrap().unwrap();
        assert_eq!(list.len(), 40);
        let mut p = ParallelFrames::start(file, list, 1, 3);
        let mut got = Vec::new();
        while let Some(f) = p.next_frame() {
            got.push(f.unwrap().to_vec());
        }
        assert_eq!(got, frames[1..]);
        let mut all = Vec::new();
        zstd::Decoder::new(std::fs::File::open(&path).unwrap())
            .unwrap()
            .read_to_end(&mut all)
            .unwrap();
        assert_eq!(all, frames.concat());
        // Dropped half-way, its threads stop.
        let file = std::fs::File::open(&path).unwrap();
        let list = super::frames(&file).unwrap().unwrap();
        let mut p = ParallelFrames::start(file, list, 0, 2);
        assert_eq!(p.next_frame().unwrap().unwrap().to_vec(), frames[0]);
        drop(p);
    }

    #[test]
    fn a_damaged_table_or_frame_is_an_error_and_a_plain_stream_has_no_table() {
        let frames: Vec<Vec<u8>> = (1..=5).map(|i| frame(i, 50_000)).collect();
        let (dir, path) = written(&frames);
        let good = std::fs::read(&path).unwrap();
        let open = |bytes: &[u8]| {
            let p = dir.path().join("x.zst");
            std::fs::write(&p, bytes).unwrap();
            super::frames(&std::fs::File::open(&p).unwrap())
        };
        // A frame's listed size changed: the frames no longer fill the file.
        let mut b = good.clone();
        let first = b.len() - 9 - 5 * 8;
        b[first] ^= 1;
        assert!(open(&b).is_err());
        // Bytes lost from the middle.
        let mut b = good.clone();
        b.remove(100);
        assert!(open(&b).is_err());
        // A frame's bytes damaged: its zstd checksum (or its decoding) fails.
        let mut b = good.clone();
        let mid = b.len() / 2;
        b[mid] ^= 0x55;
        let list = open(&b).unwrap().unwrap();
        let f = std::fs::File::open(dir.path().join("x.zst")).unwrap();
        let mut p = ParallelFrames::start(f, list, 0, 2);
        let mut errors = 0;
        while let Some(f) = p.next_frame() {
            errors += f.is_err() as u32;
        }
        assert_eq!(errors, 1);
        // A frame's decompressed size listed one byte short or long: an error, never a
        // buffer grown past what the table says.
        for delta in [-1i64, 1] {
            let mut b = good.clone();
            let size_at = b.len() - 9 - 5 * 8 + 8 + 4;
            let listed = le32(&b, size_at) as i64 + delta;
            b[size_at..size_at + 4].copy_from_slice(&(listed as u32).to_le_bytes());
            let list = open(&b).unwrap().unwrap();
            let f = std::fs::File::open(dir.path().join("x.zst")).unwrap();
            let mut p = ParallelFrames::start(f, list, 0, 2);
            let got: Vec<bool> = std::iter::from_fn(|| p.next_frame().map(|f| f.is_ok())).collect();
            assert_eq!(got, [true, false, true, true, true], "delta {delta}");
        }
        // A single zstd stream: no table.
        let plain = zstd::encode_all(&frames.concat()[..], 3).unwrap();
        assert!(open(&plain).unwrap().is_none());
        assert!(open(b"").unwrap().is_none());
    }
}
