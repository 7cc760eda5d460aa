//! Progress: how a long step (a backup's read, a restore's download) reports the bytes it has
//! done, without knowing who shows them. The CLI draws a bar; everything else passes
//! [`Progress::hidden`].

use std::sync::Arc;

/// Whatever shows progress: a terminal bar, a log, a metric.
pub trait ProgressSink: Send + Sync {
    /// The step's total, once known.
    fn set_length(&self, total: u64);
    /// `n` more done.
    fn inc(&self, n: u64);
}

/// A cheap handle to a sink, or to none.
#[derive(Clone, Default)]
pub struct Progress(Option<Arc<dyn ProgressSink>>);

impl Progress {
    /// Progress nobody watches.
    pub fn hidden() -> Progress {
        Progress(None)
    }

    pub fn new(sink: impl ProgressSink + 'static) -> Progress {
        Progress(Some(Arc::new(sink)))
    }

    pub fn set_length(&self, total: u64) {
        if let Some(s) = &self.0 {
            s.set_length(total);
        }
    }

    pub fn inc(&self, n: u64) {
        if let Some(s) = &self.0 {
            s.inc(n);
        }
    }
}
