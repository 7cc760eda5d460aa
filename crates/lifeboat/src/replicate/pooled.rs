//! Buffers that go back to their pool when the last holder lets go. A restore decompresses a
//! rollup (about the database's size) 2 MB at a time, and a fresh buffer for each frame cost
//! page faults and zeroing in the kernel: about a fifth of the restore's system time.

use std::ops::Deref;
use std::sync::{Arc, Mutex};

/// Free buffers, at most `keep` of them.
pub struct Pool {
    free: Mutex<Vec<Vec<u8>>>,
    keep: usize,
}

impl Pool {
    pub fn new(keep: usize) -> Arc<Pool> {
        Arc::new(Pool {
            free: Mutex::new(Vec::new()),
            keep,
        })
    }

    /// An empty buffer that holds `capacity` bytes without growing.
    pub fn take(self: &Arc<Self>, capacity: usize) -> Pooled {
        let free = self.free.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut bytes = free.unwrap_or_default();
        bytes.clear();
        bytes.reserve_exact(capacity);
        Pooled {
            bytes,
            pool: Some(self.clone()),
        }
    }
}

/// Bytes, from a pool or not.
pub struct Pooled {
    bytes: Vec<u8>,
    pool: Option<Arc<Pool>>,
}

impl Pooled {
    /// Bytes that no pool takes back.
    pub fn unpooled(bytes: Vec<u8>) -> Pooled {
        Pooled { bytes, pool: None }
    }

    pub fn vec_mut(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }
}

impl Default for Pooled {
    fn default() -> Self {
        Pooled::unpooled(Vec::new())
    }
}

impl Deref for Pooled {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            let mut free = pool.free.lock().unwrap_or_else(|p| p.into_inner());
            if free.len() < pool.keep {
                free.push(std::mem::take(&mut self.bytes));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_let_go_is_taken_again_up_to_keep() {
        let pool = Pool::new(1);
        let (mut a, b) = (pool.take(100), pool.take(100));
        a.vec_mut().extend_from_slice(b"abc");
        let at = a.as_ptr();
        drop(a);
        drop(b); // one too many: not kept
        let c = pool.take(10);
        assert_eq!((c.as_ptr(), c.len()), (at, 0), "the first buffer, emptied");
        assert_eq!(pool.free.lock().unwrap().len(), 0);
        drop(c);
        assert_eq!(pool.free.lock().unwrap().len(), 1);
        assert_eq!(&Pooled::unpooled(vec![1, 2])[..], &[1, 2]);
    }
}
