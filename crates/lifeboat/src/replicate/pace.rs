//! When a foreground replicator wakes: it uploads every sync interval and, between uploads,
//! ticks as often as the WAL gathers `checkpoint_frames` frames (at the rate of the last
//! tick), so its checkpoints come about as often as SQLite's own autocheckpoint would and a
//! busy writer's WAL stays short. An idle or slow database is woken once per sync interval,
//! or sooner when a burst of writes fills the WAL meanwhile ([`Pace::sleep`]).

use std::time::{Duration, Instant};

use crate::replicate::ReplicateOptions;

/// The shortest time between two ticks.
const MIN_TICK: Duration = Duration::from_millis(10);
/// A tick this close to the upload's time uploads (timers fire a little late or early).
const SLACK: Duration = Duration::from_millis(2);
/// How often an idle wait looks at the WAL index for a burst of writes.
const LOOK_EVERY: Duration = Duration::from_millis(10);

pub struct Pace {
    sync_interval: Duration,
    checkpoint_frames: u64,
    next_upload: Instant,
    last_tick: Instant,
    /// Frames a second, as last estimated.
    rate: f64,
    /// The next wake is a tick before the upload (the WAL fills fast).
    ticking: bool,
}

impl Pace {
    pub fn new(opts: &ReplicateOptions, now: Instant) -> Pace {
        Pace {
            sync_interval: opts.sync_interval,
            checkpoint_frames: opts.checkpoint_frames.max(1),
            next_upload: now + opts.sync_interval,
            last_tick: now,
            rate: 0.0,
            ticking: false,
        }
    }

    /// Whether a tick starting at `now` uploads.
    pub fn upload_due(&self, now: Instant) -> bool {
        now + SLACK >= self.next_upload
    }

    /// After a tick that started at `now`, uploaded or not, and shipped `frames` frames: how
    /// long until the next one.
    pub fn after(&mut self, uploaded: bool, frames: u64, now: Instant) -> Duration {
        if uploaded {
            self.next_upload = now + self.sync_interval;
        }
        let elapsed = now.saturating_duration_since(self.last_tick);
        self.last_tick = now;
        let until_upload = self.next_upload.saturating_duration_since(Instant::now());
        // One tick that found little (its predecessor, slow, shipped most) does not drop the
        // estimate at once: it halves at most per tick.
        let seen = if elapsed.is_zero() {
            0.0
        } else {
            frames as f64 / elapsed.as_secs_f64()
        };
        self.rate = seen.max(self.rate / 2.0);
        self.ticking = false;
        if self.rate < 1.0 {
            return until_upload;
        }
        let fill = Duration::from_secs_f64(self.checkpoint_frames as f64 / self.rate).max(MIN_TICK);
        self.ticking = fill < until_upload;
        fill.min(until_upload)
    }

    /// Whether the wait [`Self::after`] gave ends in a tick before the next upload.
    pub fn ticking(&self) -> bool {
        self.ticking
    }

    /// Wait `wait` (from [`Self::after`]), but end early once `grew(checkpoint_frames)` says
    /// writers added that many frames since the last ship ([`Replicator::wal_grew`]): a writer
    /// that starts after a pause, or speeds up, is met within `LOOK_EVERY`, and its WAL stays
    /// about as short as SQLite's autocheckpoint keeps it, instead of taking a whole sync
    /// interval of writes first (400 MB of WAL for an unpaced writer). Two small reads of the
    /// WAL a look, for one database (a daemon's fleet is woken by its watch instead).
    ///
    /// [`Replicator::wal_grew`]: crate::replicate::Replicator::wal_grew
    pub async fn sleep(&self, wait: Duration, grew: impl Fn(u64) -> bool) {
        let until = Instant::now() + wait;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            tokio::time::sleep(left.min(LOOK_EVERY)).await;
            if left > LOOK_EVERY && grew(self.checkpoint_frames) {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_wal_ticks_often_and_an_idle_one_once_per_interval() {
        let opts = ReplicateOptions::default(); // 1 s, 1000 frames
        let t0 = Instant::now();
        let mut p = Pace::new(&opts, t0);
        assert!(!p.upload_due(t0));
        // 50,000 frames in a second: 1000 of them every 20 ms.
        let t1 = t0 + Duration::from_secs(1);
        assert!(p.upload_due(t1));
        let wait = p.after(true, 50_000, t1);
        assert!(wait <= Duration::from_millis(21), "{wait:?}");
        assert!(p.ticking());
        // 200 frames in 20 ms is 10,000 a second, but the estimate halves at most: 25,000, a
        // tick in 40 ms.
        let t2 = t1 + Duration::from_millis(20);
        let wait = p.after(false, 200, t2);
        assert!(wait > Duration::from_millis(35) && wait <= Duration::from_millis(40));
        // Nothing for a while: the ticks slow down until the next upload is nearer.
        let mut t = t2;
        for _ in 0..20 {
            t += Duration::from_millis(40);
            p.after(false, 0, t);
        }
        let wait = p.after(false, 0, t + Duration::from_millis(40));
        assert!(wait > Duration::from_millis(800), "{wait:?}");
        assert!(!p.ticking());
        // A database written once a second: no tick between uploads.
        let mut q = Pace::new(&opts, t0);
        q.after(true, 3, t0 + Duration::from_secs(1));
        assert!(!q.ticking());
        // A flood: never under the floor.
        let wait = p.after(false, 10_000_000, t + Duration::from_millis(50));
        assert_eq!(wait, MIN_TICK);
    }
}
