//! Row counts read off the pages of an image as they stream past, so a backup needs no separate
//! `count(*)` pass. Every table and index b-tree page records its cells (and, for interior
//! pages, its children); at the end each table's tree is walked from its root page. Pages not
//! reachable from a root (free pages with stale content) are never counted.
//!
//! Format facts (sqlite.org/fileformat.html): the b-tree header starts at offset 100 on page 1
//! and 0 elsewhere; byte 0 is the page type (0x0D table leaf, 0x05 table interior, 0x0A index
//! leaf, 0x02 index interior), bytes 3–4 the cell count, bytes 8–11 (interior only) the
//! right-most child, and the cell pointer array follows the 8- or 12-byte header. Interior
//! cells start with their child's page number. In an index b-tree (a WITHOUT ROWID table) the
//! interior cells are entries too.

/// `kinds[pgno]` for a page that is no b-tree page.
const NOT_BTREE: u32 = u32::MAX;
/// Tag bit in `kinds`: the rest is an index into `interiors`.
const INTERIOR: u32 = 1 << 31;

#[derive(Debug)]
struct Interior {
    index: bool,
    cells: u32,
    children: Vec<u32>,
}

/// Collects the b-tree structure of an image fed to it in page order: 4 bytes per page, plus
/// the child lists of interior pages (about 1% of pages).
#[derive(Debug)]
pub struct PageCounter {
    page_size: usize,
    next: u32,
    carry: Vec<u8>,
    /// Per page (index = pgno): leaf cell count, `INTERIOR | i`, or `NOT_BTREE`.
    kinds: Vec<u32>,
    interiors: Vec<Interior>,
}

impl PageCounter {
    pub fn new(page_size: usize) -> Self {
        PageCounter {
            page_size,
            next: 1,
            carry: Vec::new(),
            kinds: vec![NOT_BTREE],
            interiors: Vec::new(),
        }
    }

    /// Feed the next bytes of the image (any split; pages are reassembled).
    pub fn feed(&mut self, mut data: &[u8]) {
        if !self.carry.is_empty() {
            let need = self.page_size - self.carry.len();
            let take = need.min(data.len());
            self.carry.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.carry.len() < self.page_size {
                return;
            }
            let page = std::mem::take(&mut self.carry);
            self.page(&page);
        }
        while data.len() >= self.page_size {
            let (page, rest) = data.split_at(self.page_size);
            self.page(page);
            data = rest;
        }
        self.carry.extend_from_slice(data);
    }

    fn page(&mut self, bytes: &[u8]) {
        self.next += 1;
        let kind = self.kind(bytes, self.next == 2);
        self.kinds.push(kind);
    }

    fn kind(&mut self, bytes: &[u8], first: bool) -> u32 {
        let off = if first { 100 } else { 0 };
        if bytes.len() < off + 12 {
            return NOT_BTREE;
        }
        let u16_at = |i: usize| u16::from_be_bytes([bytes[i], bytes[i + 1]]) as u32;
        let u32_at =
            |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let cells = u16_at(off + 3);
        match bytes[off] {
            0x0D | 0x0A => cells,
            kind @ (0x05 | 0x02) => {
                let mut children = Vec::with_capacity(cells as usize + 1);
                for i in 0..cells as usize {
                    let ptr_at = off + 12 + 2 * i;
                    if ptr_at + 2 > bytes.len() {
                        return NOT_BTREE;
                    }
                    let cell = u16_at(ptr_at) as usize;
                    if cell + 4 > bytes.len() {
                        return NOT_BTREE;
                    }
                    children.push(u32_at(cell));
                }
                children.push(u32_at(off + 8));
                self.interiors.push(Interior {
                    index: kind == 0x02,
                    cells,
                    children,
                });
                INTERIOR | (self.interiors.len() as u32 - 1)
            }
            _ => NOT_BTREE,
        }
    }

    /// Rows in the table whose b-tree starts at `root`, or None if the tree is not intact
    /// (a page missing, or a cycle), in which case the caller should count with SQLite.
    pub fn rows(&self, root: u32) -> Option<u64> {
        let mut total = 0u64;
        let mut stack = vec![root];
        let mut visited = 0usize;
        while let Some(p) = stack.pop() {
            visited += 1;
            if visited > self.kinds.len() {
                return None; // a cycle: not a tree
            }
            match *self.kinds.get(p as usize)? {
                NOT_BTREE => return None,
                k if k & INTERIOR != 0 => {
                    let node = &self.interiors[(k & !INTERIOR) as usize];
                    if node.index {
                        total += node.cells as u64;
                    }
                    stack.extend_from_slice(&node.children);
                }
                cells => total += cells as u64,
            }
        }
        Some(total)
    }
}
