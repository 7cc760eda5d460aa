#!/usr/bin/env python3
"""Replication benchmark (issue 14): commit-to-durable lag and the writer's throughput.

RPO: a writer paced at RATE small transactions per second beside `lifeboat replicate
--sync-interval 1s`, on a local repository and on s3s-fs (loopback). A commit is durable when
the segment holding it is in the repository: the segment's file mtime (the local repository's
file, s3s-fs's data file), against the commit's end time in the writer. Target: p99 <= 1.5 s.

Writer impact: the same writer unpaced for SECS seconds, with and without the replicator,
alternated three times in one run; throughput ratio (target >= 90 %). `on` keeps SQLite's
default autocheckpoint in the writer; `on, no autockpt` turns it off in the writer
(`PRAGMA wal_autocheckpoint=0`), as Litestream's tips advise for a busy writer and the README
describes: the replicator checkpoints for it. `reader` is a bare read transaction held by
another process (taken again every second, with a PASSIVE checkpoint between), the floor any
WAL-tailing replicator starts from. `ls-model` is Litestream's own locking and checkpoints
(read transaction, PASSIVE under a barrier write transaction once the WAL holds 1,000 pages),
modelled in `litestream_model.py` from its source, since Litestream cannot be installed here;
`ls-noauto` the same with the writer's autocheckpoint off.
Two data shapes: a 100-byte row per transaction, and a 4 KB blob per transaction with an index
update.

Steady writer: the same writer paced at STEADY_RATE transactions per second (default 5,000, far
above the RPO runs' 200 but below what the unpaced writer reaches), with and without the
replicator, and beside the Litestream model (SQLite's default autocheckpoint in the writer),
alternated three times: the rate it
kept, and its commit latency (BEGIN IMMEDIATE to the end of COMMIT) at p50, p99, p99.9 and max.
What an application that is not saturating its disk sees.

  python3 bench/replicate_rpo.py [--lb target/release/lifeboat] [--s3s-fs PATH] [--secs 30]
                                [--part all|rpo|impact|steady] [--steady-rate 5000]
"""
import argparse, os, re, shutil, signal, socket, sqlite3, statistics, subprocess, sys, tempfile, time

SEG = re.compile(r"^(\d+)-(\d+)-.*\.seg\.zst$")


def new_db(path, shape):
    c = sqlite3.connect(path)
    c.execute("PRAGMA journal_mode=WAL")
    if shape == "rows":
        c.execute("CREATE TABLE ev(id INTEGER PRIMARY KEY, at REAL, note TEXT)")
    else:
        c.execute("CREATE TABLE doc(id INTEGER PRIMARY KEY, owner INTEGER, body BLOB)")
        c.execute("CREATE INDEX doc_owner ON doc(owner)")
    c.commit()
    c.close()


def commit_one(c, shape, n):
    """The writer's transaction number `n`: one 100-byte row, or one 4 KB blob and its index."""
    c.execute("BEGIN IMMEDIATE")
    if shape == "rows":
        c.execute("INSERT INTO ev(at, note) VALUES (?, ?)", (time.time(), "x" * 100))
    else:
        c.execute("INSERT INTO doc(owner, body) VALUES (?, randomblob(4096))", (n % 97,))
    c.execute("COMMIT")


def keep_pace(start, n, rate, clock):
    """Sleep until commit `n` is due at `rate`/s from `start`; behind, go on at once."""
    ahead = start + n / rate - clock()
    if ahead > 0:
        time.sleep(ahead)


def write(path, shape, secs, rate=None, autocheckpoint=True):
    """Commit for `secs` seconds (paced at `rate`/s when given); returns the commit end times."""
    c = sqlite3.connect(path, isolation_level=None, timeout=30)
    c.execute("PRAGMA synchronous=NORMAL")
    if not autocheckpoint:
        c.execute("PRAGMA wal_autocheckpoint=0")
    ends, n, start = [], 0, time.time()
    while time.time() - start < secs:
        n += 1
        commit_one(c, shape, n)
        ends.append(time.time())
        if rate:
            keep_pace(start, n, rate, time.time)
    c.close()
    return ends


def write_timed(path, shape, secs, rate):
    """Commit at `rate`/s for `secs` seconds (catching up without sleeping when behind); returns
    the number of commits and each one's latency, BEGIN IMMEDIATE to the end of COMMIT."""
    c = sqlite3.connect(path, isolation_level=None, timeout=30)
    c.execute("PRAGMA synchronous=NORMAL")
    lat, n, start = [], 0, time.perf_counter()
    while time.perf_counter() - start < secs:
        n += 1
        t0 = time.perf_counter()
        commit_one(c, shape, n)
        lat.append(time.perf_counter() - t0)
        keep_pace(start, n, rate, time.perf_counter)
    c.close()
    return n, lat


class S3:
    def __init__(self, binary, root):
        self.data = os.path.join(root, "s3data")
        os.makedirs(os.path.join(self.data, "bench"))
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        self.proc = subprocess.Popen(
            [binary, "--host", "127.0.0.1", "--port", str(self.port), "--access-key", "k",
             "--secret-key", "secret-secret", self.data],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", self.port)).close()
                return
            except OSError:
                time.sleep(0.05)
        sys.exit("s3s-fs did not start")

    def env(self):
        return dict(os.environ, AWS_ACCESS_KEY_ID="k", AWS_SECRET_ACCESS_KEY="secret-secret",
                    AWS_ENDPOINT_URL=f"http://127.0.0.1:{self.port}", AWS_REGION="us-east-1")

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def replicator(lb, db, repo, env, sync="1s"):
    return subprocess.Popen([lb, "replicate", "--db", db, "--repo", repo, "--sync-interval", sync],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop(p):
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    if p.returncode != 0:
        sys.exit(f"replicate failed: {err.decode()}")


def segments_dir(root, name):
    gens = os.path.join(root, name, "generations")
    while not (os.path.isdir(gens) and os.listdir(gens)):
        time.sleep(0.05)
    ids = sorted(os.listdir(gens))
    return [os.path.join(gens, g, "segments") for g in ids]


def lag(lb, shape, secs, rate, s3=None):
    root = tempfile.mkdtemp(prefix="lb-rpo-")
    db = os.path.join(root, "app.db")
    new_db(db, shape)
    if s3:
        key = f"rpo-{shape}"
        repo, env, store = f"s3://bench/{key}", s3.env(), os.path.join(s3.data, "bench", key)
    else:
        repo, env, store = os.path.join(root, "repo"), dict(os.environ), os.path.join(root, "repo")
    p = replicator(lb, db, repo, env)
    segments_dir(store, "app")  # the first generation exists: every commit after is replicated
    time.sleep(0.5)
    ends = write(db, shape, secs, rate)
    time.sleep(2.5)
    stop(p)
    dirs = segments_dir(store, "app")
    if len(dirs) != 1:
        sys.exit(f"expected one generation, found {len(dirs)}")
    durable = {}
    for name in os.listdir(dirs[0]):
        m = SEG.match(name)
        if m:
            t = os.stat(os.path.join(dirs[0], name)).st_mtime
            for seq in range(int(m.group(1)), int(m.group(2)) + 1):
                durable[seq] = t
    lags = sorted(durable[i + 1] - e for i, e in enumerate(ends))
    shutil.rmtree(root)
    if s3:
        shutil.rmtree(store)
    q = lambda p: lags[min(len(lags) - 1, int(p * len(lags)))]
    return len(ends) / secs, q(0.5), q(0.99), lags[-1]


# A bare read transaction, taken again every second, by another process: what any replicator
# that tails the WAL needs, with no shipping at all (the floor of the writer's cost).
HOLDER = """
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("PRAGMA wal_autocheckpoint=0")
while True:
    c.execute("BEGIN"); c.execute("SELECT count(*) FROM sqlite_schema").fetchall()
    time.sleep(1)
    c.execute("COMMIT"); c.execute("PRAGMA wal_checkpoint(PASSIVE)")
"""


# Litestream's locking and checkpoints, modelled (Litestream itself cannot be installed here).
LS_MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "litestream_model.py")


def beside(lb, mode, db, root, i):
    """What runs beside the writer in `mode`: the replicator (`on…`), the bare read transaction
    (`reader`), the Litestream model (`ls-model`), or nothing (`off`)."""
    if mode.startswith("on"):
        p = replicator(lb, db, os.path.join(root, "repo"), dict(os.environ))
        segments_dir(os.path.join(root, "repo"), f"{mode}{i}")
    elif mode == "reader":
        p = subprocess.Popen([sys.executable, "-c", HOLDER, db])
    elif mode.startswith("ls-"):
        p = subprocess.Popen([sys.executable, LS_MODEL, db])
    else:
        return None
    time.sleep(0.5)
    return p


def ls_checkpoints(db):
    """The Litestream model's checkpoint counts, as it last wrote them."""
    try:
        with open(db + "-litestream-stats") as f:
            return f.read().strip()
    except FileNotFoundError:
        return "no checkpoint attempt ended"


def impact(lb, shape, secs):
    """Writer throughput without replication, beside a bare held read transaction, beside the
    Litestream model, and beside the replicator: medians of three alternations, every run, and
    the largest WAL each mode left."""
    root = tempfile.mkdtemp(prefix="lb-impact-")
    runs = {"off": [], "reader": [], "ls-model": [], "ls-noauto": [], "on": [], "on-noauto": []}
    wal = {m: 0 for m in runs}
    for i in range(3):
        for mode in runs:
            db = os.path.join(root, f"{mode}{i}.db")
            new_db(db, shape)
            p = beside(lb, mode, db, root, i)
            runs[mode].append(len(write(db, shape, secs, autocheckpoint=not mode.endswith("noauto"))) / secs)
            wal[mode] = max(wal[mode], os.path.getsize(db + "-wal") if os.path.exists(db + "-wal") else 0)
            if mode.startswith("ls-"):
                print(f"  {mode} {shape} run {i}: {ls_checkpoints(db)}", flush=True)
            if mode.startswith("on"):
                stop(p)
            elif p:
                p.kill()
                p.wait()
            shutil.rmtree(root)
            os.makedirs(root)
    shutil.rmtree(root)
    return {m: statistics.median(v) for m, v in runs.items()}, runs, wal


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--lb", default="target/release/lifeboat")
    a.add_argument("--s3s-fs", default=os.path.expanduser("~/.cache/lifeboat-test-tools/bin/s3s-fs"))
    a.add_argument("--secs", type=float, default=30)
    a.add_argument("--rate", type=float, default=200)
    a.add_argument("--part", choices=("all", "rpo", "impact", "steady"), default="all")
    a.add_argument("--steady-rate", type=float, default=5000)
    o = a.parse_args()
    lb = os.path.realpath(o.lb)
    print(f"lifeboat {lb}; {os.cpu_count()} cores; sync interval 1s; {o.rate:.0f} tx/s for {o.secs:.0f}s")
    if o.part in ("all", "rpo"):
        rpo(lb, o)
    if o.part in ("all", "impact"):
        writer_impact(lb)
    if o.part in ("all", "steady"):
        steady(lb, o.steady_rate)


def rpo(lb, o):
    print("\nRPO: commit-to-durable lag (target p99 <= 1.5 s)")
    print(f"{'repository':<12} {'shape':<6} {'tx/s':>7} {'p50 s':>7} {'p99 s':>7} {'max s':>7}")
    s3 = S3(o.s3s_fs, tempfile.mkdtemp(prefix="lb-s3-"))
    try:
        for where, shape in (("local", "rows"), ("local", "blobs"), ("s3s-fs", "rows"), ("s3s-fs", "blobs")):
            tx, p50, p99, mx = lag(lb, shape, o.secs, o.rate, s3 if where == "s3s-fs" else None)
            print(f"{where:<12} {shape:<6} {tx:7.1f} {p50:7.3f} {p99:7.3f} {mx:7.3f}", flush=True)
    finally:
        s3.stop()
        shutil.rmtree(os.path.dirname(s3.data))


def writer_impact(lb):
    print("\nWriter impact: unpaced writer, synchronous=NORMAL, 3 alternations of 10 s (target >= 90 %)")
    print("(reader: no replication, only a read transaction held by another process, taken again every second;")
    print(" ls-model: Litestream's locking and checkpoints, modelled in bench/litestream_model.py;")
    print(" …-noauto: the writer's own autocheckpoint off, as both advise for a busy writer)")
    modes = ("reader", "ls-model", "ls-noauto", "on", "on-noauto")
    print(f"{'shape':<6} {'off tx/s':>9} " + " ".join(f"{m:>17}" for m in modes) +
          "   largest WAL MB: off / " + " / ".join(modes))
    for shape in ("rows", "blobs"):
        med, runs, wal = impact(lb, shape, 10)
        off = med["off"]
        cells = " ".join(f"{med[m]:9.0f} {med[m] / off:7.1%}" for m in modes)
        sizes = " / ".join(f"{wal[m] / 2**20:.0f}" for m in ("off",) + modes)
        print(f"{shape:<6} {off:9.0f} {cells}   {sizes}", flush=True)
        for m in runs:
            print(f"  {m:<10} runs: " + " ".join(f"{x:.0f}" for x in runs[m]), flush=True)


def steady(lb, rate, secs=10):
    print(f"\nSteady writer: paced at {rate:.0f} tx/s, 3 alternations of {secs} s, SQLite's default autocheckpoint")
    print(f"{'shape':<6} {'mode':<8} {'tx/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} {'max ms':>8}")
    for shape in ("rows", "blobs"):
        root = tempfile.mkdtemp(prefix="lb-steady-")
        got = {"off": ([], []), "ls-model": ([], []), "on": ([], [])}
        for i in range(3):
            for mode in got:
                db = os.path.join(root, f"{mode}{i}.db")
                new_db(db, shape)
                p = beside(lb, mode, db, root, i)
                n, lat = write_timed(db, shape, secs, rate)
                if mode == "on":
                    stop(p)
                elif p:
                    p.kill()
                    p.wait()
                got[mode][0].append(n / secs)
                got[mode][1].extend(lat)
        shutil.rmtree(root)
        for mode, (rates, lat) in got.items():
            lat.sort()
            q = lambda f: lat[min(len(lat) - 1, int(len(lat) * f))] * 1e3
            print(f"{shape:<6} {mode:<8} {statistics.median(rates):8.0f} {q(0.5):8.3f} {q(0.99):8.3f} "
                  f"{q(0.999):9.3f} {lat[-1] * 1e3:8.3f}", flush=True)


if __name__ == "__main__":
    main()
