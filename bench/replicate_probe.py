#!/usr/bin/env python3
"""Attack `lifeboat replicate` as a hostile application would (issue 14), then check it.

Runs python3 writers (paced or not, rows / 4 KB / 1-5 MB blobs, bursts with idle gaps, any
wal_autocheckpoint, optional app TRUNCATE/RESTART checkpoints), app readers holding long read
transactions, and the replicator on a local repository under /tmp, with `kill -9` of the
replicator or the writer at random points. Then: `list --pitr` (generations and reasons),
`restore --at latest` against the source by sqldiff, and `restore --at` random instants, each
of which must hold a per-writer prefix of the logged commits (none begun after the instant,
every one ended 5 s before it while the replicator was up), intact blobs and the invariant sum.
Prints one JSON line; the run's directory is kept when anything was wrong or a second
generation started (its replicator logs are at debug level).

  python3 bench/replicate_probe.py NAME [--rate 200] [--size row|4k|big|mix] [--burst K
      --gap 0.1,2] [--autock N] [--readers N --hold S] [--sync 1s] [--ckframes N]
      [--truncate BYTES] [--kills N] [--kill-writer N] [--writers N]
      [--appck TRUNCATE|RESTART --appck-every S] [--secs 30] [--instants 8]
  LB=target/release/lifeboat, PROBE_DIR=/tmp/lifeboat-probe
"""
import argparse, os, random, subprocess, sys, time, hashlib, sqlite3, shutil, signal, json, datetime

LB = os.path.abspath(os.environ.get("LB", "target/release/lifeboat"))

WRITER = r'''
import sqlite3, sys, time, os, random
db, log, stop, w, rate, size, burst, gaplo, gaphi, autock, appck, appck_every = sys.argv[1:13]
w=int(w); rate=float(rate); burst=int(burst); gaplo=float(gaplo); gaphi=float(gaphi)
rnd = random.Random(w*7919+os.getpid())
c = sqlite3.connect(db, isolation_level=None, timeout=60)
c.execute("PRAGMA busy_timeout=60000")
c.execute("PRAGMA synchronous=NORMAL")
if autock != "default": c.execute(f"PRAGMA wal_autocheckpoint={autock}")
n = c.execute("SELECT coalesce(max(n),0) FROM c WHERE w=?", (w,)).fetchone()[0]
out = open(log, "a")
start = time.time(); i = 0; lastck = time.time()
def sz():
    if size == "row": return 40
    if size == "4k": return 4096
    if size == "big": return rnd.randint(1, 5) * 1024 * 1024
    return rnd.choices([40, 4096, 3*1024*1024], [70, 29, 1])[0]
while not os.path.exists(stop):
    n += 1; i += 1
    s = sz()
    t0 = time.time()
    c.execute("BEGIN IMMEDIATE")
    a, b = rnd.sample(range(1, 101), 2)
    c.execute("UPDATE acct SET bal = bal - 7 WHERE id = ?", (a,))
    c.execute("UPDATE acct SET bal = bal + 7 WHERE id = ?", (b,))
    c.execute("INSERT INTO c(w, n, sz, v) VALUES (?, ?, ?, randomblob(?))", (w, n, s, s))
    c.execute("COMMIT")
    t1 = time.time()
    out.write(f"{w} {n} {t0:.6f} {t1:.6f}\n")
    if i % 50 == 0: out.flush()
    if appck != "none" and time.time() - lastck > float(appck_every):
        r = c.execute(f"PRAGMA wal_checkpoint({appck})").fetchone()
        out.write(f"# ck {appck} {r} {time.time():.6f}\n"); lastck = time.time()
    if burst > 0 and i % burst == 0:
        time.sleep(rnd.uniform(gaplo, gaphi))
    elif rate > 0:
        due = start + i / rate
        d = due - time.time()
        if d > 0: time.sleep(d)
out.flush()
'''

READER = r'''
import sqlite3, sys, time, os
db, stop, hold = sys.argv[1], sys.argv[2], float(sys.argv[3])
c = sqlite3.connect(db, isolation_level=None, timeout=60)
while not os.path.exists(stop):
    c.execute("BEGIN"); c.execute("SELECT count(*) FROM c").fetchone()
    time.sleep(hold); c.execute("COMMIT"); time.sleep(0.05)
'''

def now(): return time.time()
def rfc(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % int((t - int(t)) * 1000)

def main():
    p = argparse.ArgumentParser()
    p.add_argument("name"); p.add_argument("--secs", type=float, default=30)
    p.add_argument("--rate", type=float, default=100); p.add_argument("--size", default="row")
    p.add_argument("--burst", type=int, default=0); p.add_argument("--gap", default="0.1,2")
    p.add_argument("--autock", default="default"); p.add_argument("--readers", type=int, default=0)
    p.add_argument("--hold", type=float, default=3); p.add_argument("--sync", default="1s")
    p.add_argument("--ckframes", default="1000"); p.add_argument("--truncate", default=None)
    p.add_argument("--kills", type=int, default=0); p.add_argument("--kill-writer", type=int, default=0)
    p.add_argument("--writers", type=int, default=1); p.add_argument("--appck", default="none")
    p.add_argument("--appck-every", type=float, default=3); p.add_argument("--instants", type=int, default=8)
    p.add_argument("--seed", type=int, default=None)
    a = p.parse_args()
    seed = a.seed if a.seed is not None else int(time.time())
    rnd = random.Random(seed)
    d = os.path.join(os.environ.get("PROBE_DIR", "/tmp/lifeboat-probe"), a.name); shutil.rmtree(d, ignore_errors=True); os.makedirs(d)
    db, repo, stop = f"{d}/app.db", f"{d}/repo", f"{d}/stop"
    c = sqlite3.connect(db, isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("CREATE TABLE c(w INTEGER, n INTEGER, sz INTEGER, v BLOB)")
    c.execute("CREATE INDEX c_wn ON c(w, n)")
    c.execute("CREATE TABLE acct(id INTEGER PRIMARY KEY, bal INTEGER)")
    c.executemany("INSERT INTO acct VALUES (?, 1000)", [(i,) for i in range(1, 101)])
    c.close()
    gl, gh = a.gap.split(",")
    def start_writer(w):
        return subprocess.Popen(["python3", "-c", WRITER, db, f"{d}/w{w}.log", stop, str(w), str(a.rate), a.size,
                                 str(a.burst), gl, gh, a.autock, a.appck, str(a.appck_every)])
    writers = {w: start_writer(w) for w in range(a.writers)}
    readers = [subprocess.Popen(["python3", "-c", READER, db, stop, str(a.hold)]) for _ in range(a.readers)]
    time.sleep(0.5)
    env = dict(os.environ, LIFEBOAT_LOG="lifeboat=debug")
    def start_rep(k):
        args = [LB, "replicate", "--db", db, "--repo", repo, "--sync-interval", a.sync, "--checkpoint-frames", a.ckframes]
        if a.truncate: args += ["--truncate-wal-size", a.truncate]
        return subprocess.Popen(args, stdout=open(f"{d}/rep{k}.out", "w"), stderr=open(f"{d}/rep{k}.err", "w"), env=env, cwd=d)
    k = 0; rep = start_rep(k)
    t_rep = now(); up = []; since = t_rep
    end = t_rep + a.secs
    kill_at = sorted(rnd.uniform(t_rep + 1, end - 1) for _ in range(a.kills))
    wkill_at = sorted(rnd.uniform(t_rep + 1, end - 1) for _ in range(a.kill_writer))
    while now() < end:
        if kill_at and now() >= kill_at[0]:
            kill_at.pop(0); rep.kill(); rep.wait(); up.append((since, now()))
            time.sleep(rnd.uniform(0, 0.5)); k += 1; rep = start_rep(k); since = now()
        if wkill_at and now() >= wkill_at[0]:
            wkill_at.pop(0); w = rnd.randrange(a.writers); writers[w].kill(); writers[w].wait()
            time.sleep(rnd.uniform(0, 0.5)); writers[w] = start_writer(w)
        if rep.poll() is not None:
            print(f"!! replicator exited {rep.returncode} (run {k})"); up.append((since, now()))
            k += 1; rep = start_rep(k); since = now()
        time.sleep(0.02)
    open(stop, "w").close()
    for w in writers.values(): w.wait()
    for r in readers: r.wait()
    time.sleep(2.5)
    rep.send_signal(signal.SIGTERM)
    try: rc = rep.wait(timeout=60)
    except subprocess.TimeoutExpired:
        print("!! HANG: replicator did not stop on SIGTERM in 60s"); rep.kill(); rc = -9
    up.append((since, now()))
    if rc != 0: print(f"!! replicator last run exit {rc}")
    # logs
    log = []
    for w in range(a.writers):
        for l in open(f"{d}/w{w}.log"):
            if l.startswith("#"): continue
            f = l.split()
            if len(f) < 4: continue
            log.append((int(f[0]), int(f[1]), float(f[2]), float(f[3])))
    ncommits = len(log)
    gaps = {}
    for w in range(a.writers):
        ts = sorted(t1 for ww, n, t0, t1 in log if ww == w)
        gaps[w] = round(max((b - a_ for a_, b in zip(ts, ts[1:])), default=0), 2)
    ck = subprocess.run(f"grep -h '^# ck' {d}/w*.log | awk '{{print $4$5$6}}' | sort | uniq -c | head -5", shell=True, capture_output=True, text=True).stdout.split("\n")
    # list --pitr
    o = subprocess.run([LB, "list", "--pitr", "--db", "app", "--repo", repo], capture_output=True, text=True, cwd=d)
    gens = [l for l in o.stdout.splitlines() if "gen-" in l]
    errs = subprocess.run(f"cat {d}/rep*.err | grep -ci -E 'error|panic'", shell=True, capture_output=True, text=True).stdout.strip()
    resets = subprocess.run(f"cat {d}/rep*.err {d}/rep*.out | grep -c 'reset over frames'", shell=True, capture_output=True, text=True).stdout.strip()
    bad = []
    latest = f"{d}/latest.db"
    o2 = subprocess.run([LB, "restore", "--db", "app", "--repo", repo, "--at", "latest", "--to", latest], capture_output=True, text=True, cwd=d)
    if o2.returncode != 0: bad.append("restore latest failed: " + o2.stderr.strip()[:300])
    else:
        df = subprocess.run(["sqldiff", db, latest], capture_output=True, text=True)
        if df.stdout.strip() or df.returncode != 0: bad.append(f"latest differs from source: {df.stdout[:300]} {df.stderr[:200]}")
    # instants
    logmap = {}
    for w, n, t0, t1 in log: logmap[(w, n)] = (t0, t1)
    first = t_rep + 1.0; last = max(t1 for *_, t1 in log)
    slack = 5.0
    checked = 0
    for i in range(a.instants):
        t = rnd.uniform(first, last); at = rfc(t); tms = int(t * 1000) / 1000.0
        out = f"{d}/at{i}.db"
        o3 = subprocess.run([LB, "restore", "--db", "app", "--repo", repo, "--at", at, "--to", out], capture_output=True, text=True, cwd=d)
        if o3.returncode != 0: bad.append(f"restore --at {at} failed: {o3.stderr.strip()[:300]}"); continue
        r = sqlite3.connect(out)
        ic = r.execute("PRAGMA integrity_check").fetchone()[0]
        if ic != "ok": bad.append(f"--at {at}: integrity {ic}")
        s = r.execute("SELECT sum(bal) FROM acct").fetchone()[0]
        if s != 100000: bad.append(f"--at {at}: invariant sum {s}")
        for w in range(a.writers):
            rows = r.execute("SELECT n, sz, length(v) FROM c WHERE w=? ORDER BY n", (w,)).fetchall()
            ns = [x[0] for x in rows]
            kmax = ns[-1] if ns else 0
            if ns != list(range(1, kmax + 1)): bad.append(f"--at {at}: writer {w} rows not a prefix (count {len(ns)} max {kmax}) -- but writer kills may lose uncommitted n")
            if any(x[1] != x[2] for x in rows): bad.append(f"--at {at}: torn blob")
            if kmax and logmap.get((w, kmax), (0,))[0] > tms + 0.001: bad.append(f"--at {at}: holds w{w} commit {kmax} begun after")
            covered = lambda e: any(s0 <= e and e + slack <= s1 for s0, s1 in up)
            missing = [n for (ww, n), (t0, t1) in logmap.items() if ww == w and t1 + slack <= tms and covered(t1) and n > kmax]
            if missing: bad.append(f"--at {at}: w{w} lacks {len(missing)} commits e.g. {min(missing)} (state max {kmax})")
        r.close(); os.remove(out); checked += 1
    print(json.dumps({"name": a.name, "seed": seed, "commits": ncommits, "rep_runs": k + 1, "gens": len(gens),
                      "err_lines": errs, "reset_over_frames": resets, "instants_ok": checked, "max_commit_gap_s": gaps, "app_ck": [x.strip() for x in ck if x.strip()], "bad": bad}))
    for g in gens: print("   ", g.strip()[:220])
    if not bad and len(gens) == 1 and os.environ.get("KEEP") != "1": shutil.rmtree(d, ignore_errors=True)

main()
