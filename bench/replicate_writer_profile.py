#!/usr/bin/env python3
"""Where an unpaced writer's time goes beside `lifeboat replicate` (issue 14, writer impact).

The writer of `replicate_rpo.py` (python sqlite3, synchronous=NORMAL, one row or one 4 KB blob
per transaction), timed around each statement: the time in BEGIN IMMEDIATE (a stall there is
SQLite's busy handler sleeping 1, 2, 5, ... ms while the replicator holds the write lock), in
COMMIT (a stall there is the writer's own autocheckpoint copying frames), and the count and sum
of stalls over 0.3 ms. Mode `off` runs the writer alone; `on-noauto` replicates with the
writer's own autocheckpoint off (`PRAGMA wal_autocheckpoint=0`, as Litestream's tips advise for
a busy writer: the replicator checkpoints for it).

  python3 bench/replicate_writer_profile.py LIFEBOAT SECS rows|blobs off|on|on-noauto [replicate args...]
"""
import os, shutil, subprocess, sqlite3, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import replicate_rpo as b

lb, secs, shape, mode = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
root = tempfile.mkdtemp(prefix="lb-wprof-")
db = os.path.join(root, "a.db")
b.new_db(db, shape)
p = None
if mode in ("on", "on-noauto"):
    p = subprocess.Popen([lb, "replicate", "--db", db, "--repo", os.path.join(root, "repo"),
                          "--sync-interval", "1s"] + sys.argv[5:],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    b.segments_dir(os.path.join(root, "repo"), "a")
    time.sleep(0.5)
c = sqlite3.connect(db, isolation_level=None, timeout=30)
c.execute("PRAGMA synchronous=NORMAL")
if mode == "on-noauto":
    c.execute("PRAGMA wal_autocheckpoint=0")
pc = time.perf_counter
n, tb, ti, tc, stall_b, stall_c = 0, 0.0, 0.0, 0.0, [], []
start = pc()
while pc() - start < secs:
    n += 1
    t0 = pc()
    c.execute("BEGIN IMMEDIATE")
    t1 = pc()
    if shape == "rows":
        c.execute("INSERT INTO ev(at, note) VALUES (?, ?)", (time.time(), "x" * 100))
    else:
        c.execute("INSERT INTO doc(owner, body) VALUES (?, randomblob(4096))", (n % 97,))
    t2 = pc()
    c.execute("COMMIT")
    t3 = pc()
    tb, ti, tc = tb + t1 - t0, ti + t2 - t1, tc + t3 - t2
    if t1 - t0 > 0.0003:
        stall_b.append(t1 - t0)
    if t3 - t2 > 0.0003:
        stall_c.append(t3 - t2)
el = pc() - start
print(f"{mode} {shape} {n / el:.0f}/s begin={tb * 1e3:.0f}ms insert={ti * 1e3:.0f}ms "
      f"commit={tc * 1e3:.0f}ms begin-stalls={len(stall_b)} ({sum(stall_b) * 1e3:.0f}ms) "
      f"commit-stalls={len(stall_c)} ({sum(stall_c) * 1e3:.0f}ms) "
      f"wal={os.path.getsize(db + '-wal') / 1e6:.0f}MB")
if p:
    p.send_signal(2)
    p.wait()
shutil.rmtree(root)
