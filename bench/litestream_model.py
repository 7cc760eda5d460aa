#!/usr/bin/env python3
"""What Litestream does to a writer's database, without Litestream: its locking and checkpoints,
modelled for `replicate_rpo.py --part impact` (Litestream itself cannot be installed on this
machine: no Go toolchain, no network).

Followed from benbjohnson/litestream at 63225f1, db.go:
- its connections open with `busy_timeout` 1 s and `wal_autocheckpoint(0)` (lines 35, 1046);
- a read transaction is held on `_litestream_seq` (`acquireReadLock`, 1184);
- every `MonitorInterval` (1 s) a sync writes the pages of the WAL's new frames to a local L0
  LTX file and syncs it (`monitor` 3153, `Sync` 1223, 2214); modelled as the pages, each once,
  written to a file and synced, without LTX's checksums and encoding;
- after a sync, once the WAL holds `MinCheckpointPageN` (1,000) pages, a PASSIVE checkpoint
  (`checkpointIfNeeded` 1407) under a barrier write transaction (`INSERT INTO _litestream_lock`,
  2503), skipped when that is busy: sync again, release the read transaction,
  `PRAGMA wal_checkpoint(PASSIVE)` on another connection, take the read transaction again,
  roll the barrier back (`checkpointWithExecutor` 2448, `execCheckpoint` 2636), then a write to
  `_litestream_seq` (`bumpLitestreamSeq` 1567) and a sync of the new WAL;
- past `TruncatePageN` (121,359 pages), that PASSIVE first and then, if the WAL is still that
  long, TRUNCATE; a sync error (a write busy past the timeout) backs off from 1 s, doubling.

Not modelled, each making Litestream's cost to the writer larger than the model's: the sync
under the barrier also reads back the previous LTX file and encodes, fsyncs and renames a new
one (here one write and one fsync); after a TRUNCATE that restarts the WAL, Litestream writes a
snapshot of the whole database under a write lock (2570-2626; here nothing). Nor its uploads
and compaction (off the write path, as lifeboat's) or the one-minute time-based checkpoint.
The monitor here sleeps 1 s after its work, where Litestream's ticker fires every 1 s; its
sync is Python, slower than Go, which can leave a checkpoint undone that Litestream would have
done (a free-running writer, a growing WAL).

  python3 bench/litestream_model.py DB   (runs until killed; DB-litestream-stats: what its
                                          checkpoints did)
"""
import os, sqlite3, sys, time

FRAME_HEADER, WAL_HEADER, MONITOR, BUSY_TIMEOUT = 24, 32, 1.0, 1.0
MIN_CHECKPOINT_PAGES, TRUNCATE_PAGES = 1000, 121359


class Model:
    def __init__(self, db):
        self.db, self.wal = db, db + "-wal"
        self.pool = [self.connect() for _ in range(3)]
        self.pool[0].execute("CREATE TABLE IF NOT EXISTS _litestream_seq (id INTEGER PRIMARY KEY, seq INTEGER)")
        self.pool[0].execute("CREATE TABLE IF NOT EXISTS _litestream_lock (id INTEGER)")
        self.rtx = self.connect()
        self.page = self.pool[0].execute("PRAGMA page_size").fetchone()[0]
        self.out = open(db + "-litestream-l0", "wb")
        self.salts, self.offset = None, WAL_HEADER  # the last synced position in the WAL
        self.acquire()

    def connect(self):
        c = sqlite3.connect(self.db, isolation_level=None, timeout=BUSY_TIMEOUT)
        c.execute("PRAGMA wal_autocheckpoint=0")
        return c

    def acquire(self):
        self.rtx.execute("BEGIN")
        self.rtx.execute("SELECT COUNT(1) FROM _litestream_seq").fetchall()

    def release(self):
        self.rtx.execute("ROLLBACK")

    def sync(self):
        """Write the pages of the WAL's valid frames past the last synced one (those with its
        salts: a prefix, found by bisection), each once, to the L0 file, and sync it, as
        Litestream writes and syncs an L0 LTX file (without its checksums and encoding)."""
        try:
            fd = os.open(self.wal, os.O_RDONLY)
        except FileNotFoundError:
            return
        try:
            head = os.pread(fd, WAL_HEADER, 0)
            if len(head) < WAL_HEADER:
                return
            salts = head[16:24]
            if salts != self.salts:
                self.salts, self.offset = salts, WAL_HEADER
            size = FRAME_HEADER + self.page
            lo, hi = 0, (os.fstat(fd).st_size - self.offset) // size
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if os.pread(fd, 16, self.offset + (mid - 1) * size)[8:16] == salts:
                    lo = mid
                else:
                    hi = mid - 1
            if lo:
                # An LTX file holds each page once: its last version in these frames.
                chunk = os.pread(fd, lo * size, self.offset)
                last = {int.from_bytes(chunk[i:i + 4], "big"): i for i in range(0, len(chunk), size)}
                self.out.write(b"".join(chunk[i + FRAME_HEADER:i + size] for i in last.values()))
                self.out.flush()
                os.fsync(self.out.fileno())
                self.offset += len(chunk)
        finally:
            os.close(fd)

    def wal_pages(self):
        return (self.offset - WAL_HEADER) // (FRAME_HEADER + self.page)

    def checkpoint(self):
        """Whether it ran: a busy database skips it until the next sync (`checkpointIfNeeded`:
        "passive checkpoint skipped", reason "database busy")."""
        self.sync()
        barrier = self.pool[1]
        try:
            barrier.execute("BEGIN")
            # The first statement of a deferred transaction: waits for the write lock under
            # the busy handler (1 s), as Litestream's does.
            barrier.execute("INSERT INTO _litestream_lock (id) VALUES (1)")
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) and "busy" not in str(e):
                raise
            barrier.execute("ROLLBACK")
            return False
        self.sync()
        self.release()
        self.pool[2].execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        self.acquire()
        barrier.execute("ROLLBACK")
        self.pool[0].execute(
            "INSERT INTO _litestream_seq (id, seq) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET seq = seq + 1")
        self.sync()  # the new WAL, if the write above restarted it
        return True

    def truncate(self):
        """The valve (`checkpointIfNeeded`'s first priority, after a PASSIVE that did not
        restart the WAL): TRUNCATE with the read transaction released. Whether the WAL was
        emptied (a writer it waited for in vain past the busy timeout leaves it as it was)."""
        self.sync()
        self.release()
        try:
            busy = self.pool[2].execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        finally:
            self.acquire()
        self.pool[0].execute(
            "INSERT INTO _litestream_seq (id, seq) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET seq = seq + 1")
        self.sync()
        return busy == 0

    def run(self, stats):
        """Sync every second, checkpoint when due; `stats` gets the counts after each attempt:
        PASSIVE checkpoints done and skipped (busy), TRUNCATEs that emptied the WAL and that
        did not, and sync errors (a busy write past the timeout: backoff from 1 s, doubling)."""
        n = {"passive": 0, "skipped": 0, "truncated": 0, "truncate-busy": 0, "errors": 0}
        backoff = 0.0
        while True:
            time.sleep(MONITOR + backoff)
            try:
                self.sync()
                pages = self.wal_pages()
                if pages >= TRUNCATE_PAGES:
                    if self.checkpoint() and self.wal_pages() < TRUNCATE_PAGES:
                        n["passive"] += 1
                    else:
                        n["truncated" if self.truncate() else "truncate-busy"] += 1
                elif pages >= MIN_CHECKPOINT_PAGES:
                    n["passive" if self.checkpoint() else "skipped"] += 1
                else:
                    continue
                backoff = 0.0
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) and "busy" not in str(e):
                    raise
                if self.rtx.in_transaction is False:
                    self.acquire()
                n["errors"] += 1
                backoff = min(backoff * 2 or MONITOR, 300.0)
            with open(stats, "w") as f:
                f.write(" ".join(f"{k}={v}" for k, v in n.items()) + "\n")


if __name__ == "__main__":
    Model(sys.argv[1]).run(sys.argv[1] + "-litestream-stats")
