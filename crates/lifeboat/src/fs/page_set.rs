//! A set of page numbers, one bit each: which pages of an image are written already, so a
//! restore that assembles an image from several sources writes each page once.

/// Page numbers start at 1, as SQLite's do.
#[derive(Debug, Default, Clone)]
pub struct PageSet(Vec<u64>);

impl PageSet {
    pub fn contains(&self, p: u32) -> bool {
        self.0
            .get(p as usize / 64)
            .is_some_and(|w| w & (1 << (p % 64)) != 0)
    }

    pub fn insert(&mut self, p: u32) {
        let i = p as usize / 64;
        if i >= self.0.len() {
            self.0.resize(i + 1, 0);
        }
        self.0[i] |= 1 << (p % 64);
    }

    /// Add every page of `other`, leaving it empty.
    pub fn absorb(&mut self, other: &mut PageSet) {
        self.union(other);
        other.0.clear();
    }

    /// Add every page of `other`.
    pub fn union(&mut self, other: &PageSet) {
        if other.0.len() > self.0.len() {
            self.0.resize(other.0.len(), 0);
        }
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a |= b;
        }
    }

    pub fn len(&self) -> u64 {
        self.0.iter().map(|w| w.count_ones() as u64).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }
}

/// Two writers filling one image at once, each page written once: a restore to a point writes
/// its segments' pages (the newer source) while the snapshot (the older one) is decompressed
/// beside it. The snapshot's writer writes a page only once the segments' writer has said the
/// page is settled (`upto`), and only if that writer did not write it. The segments' writer
/// settles pages in order while it applies its last, page-ordered piece, and all of them when
/// it is done (or has failed: the image is thrown away then).
#[derive(Debug)]
pub struct Frontier {
    page_size: u64,
    state: std::sync::Mutex<Settled>,
    moved: std::sync::Condvar,
}

#[derive(Debug)]
struct Settled {
    written: PageSet,
    /// Every page up to this one is settled.
    upto: u32,
    /// Pages past this one are not in the image.
    last: u32,
}

impl Frontier {
    pub fn new(page_size: u64) -> Self {
        Frontier {
            page_size,
            state: std::sync::Mutex::new(Settled {
                written: PageSet::default(),
                upto: 0,
                last: u32::MAX,
            }),
            moved: std::sync::Condvar::new(),
        }
    }

    fn settled(&self) -> std::sync::MutexGuard<'_, Settled> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The image ends at page `last`.
    pub fn set_last(&self, last: u32) {
        self.settled().last = last;
    }

    /// The segments' writer wrote `pages`, and every page up to `upto` is settled.
    pub fn settle(&self, pages: &PageSet, upto: u32) {
        let mut s = self.settled();
        s.written.union(pages);
        s.upto = s.upto.max(upto);
        self.moved.notify_all();
    }

    /// The segments' writer wrote pages `first..=upto` and every page up to `upto` is settled.
    pub fn settle_run(&self, first: u32, upto: u32) {
        let mut s = self.settled();
        for p in first..=upto {
            s.written.insert(p);
        }
        s.upto = s.upto.max(upto);
        self.moved.notify_all();
    }

    /// The segments' writer is done: every page is settled.
    pub fn finish(&self) {
        self.settled().upto = u32::MAX;
        self.moved.notify_all();
    }

    /// The runs of bytes to write out of `len` bytes that belong at `offset`, as `(start,
    /// end)` relative to `offset`, once every page they touch is settled: the bytes of pages
    /// the segments' writer wrote, or past the image's end, are left out.
    pub fn runs(&self, offset: u64, len: usize) -> Vec<(usize, usize)> {
        let last_page = (offset + len as u64).div_ceil(self.page_size);
        let last_page = u32::try_from(last_page).unwrap_or(u32::MAX);
        let mut s = self.settled();
        while s.upto < last_page {
            s = self.moved.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        let mut out: Vec<(usize, usize)> = Vec::new();
        let mut at = 0usize;
        while at < len {
            let page = (offset + at as u64) / self.page_size + 1;
            let end = ((page * self.page_size - offset) as usize).min(len);
            let keep = page <= s.last as u64
                && !s.written.contains(u32::try_from(page).unwrap_or(u32::MAX));
            if keep {
                match out.last_mut() {
                    Some(r) if r.1 == at => r.1 = end,
                    _ => out.push((at, end)),
                }
            }
            at = end;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_leave_out_written_pages_and_pages_past_the_last() {
        let f = Frontier::new(4);
        let mut written = PageSet::default();
        written.insert(2);
        f.settle(&written, 0);
        f.settle_run(3, 3);
        f.set_last(6);
        f.finish();
        // Pages 1..=8 in 32 bytes: 1 kept, 2-3 written, 4-6 kept, 7-8 past the last.
        assert_eq!(f.runs(0, 32), vec![(0, 4), (12, 24)]);
        // A chunk that starts mid-page and ends mid-page.
        assert_eq!(f.runs(6, 10), vec![(6, 10)]);
        assert_eq!(f.runs(2, 4), vec![(0, 2)]);
    }

    #[test]
    fn the_snapshots_writer_waits_until_its_pages_are_settled() {
        let f = std::sync::Arc::new(Frontier::new(4));
        let g = f.clone();
        // Pages 1..=4 in one chunk: it may go only once page 4 is settled.
        let waiting = std::thread::spawn(move || g.runs(0, 16));
        f.settle_run(1, 2);
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!waiting.is_finished(), "wrote before page 4 was settled");
        f.settle_run(4, 4);
        // Pages 1, 2 and 4 are the segments'; page 3 the snapshot's.
        assert_eq!(waiting.join().unwrap(), vec![(8, 12)]);
        let mut a = PageSet::default();
        a.insert(70);
        let mut b = PageSet::default();
        b.insert(1);
        b.absorb(&mut a);
        assert!(b.contains(70) && b.contains(1) && a.is_empty() && b.len() == 2);
    }
}
