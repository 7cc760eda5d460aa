//! Point-in-time restore checked against a real writer, on a local repository and on S3
//! (s3s-fs): a python3 process commits transactions from one row to 5 MB, with inserts,
//! updates (transfers that keep a sum invariant) and deletes, logging each commit's times and
//! a checksum of the state it left. `lifeboat replicate` runs beside it and is killed with
//! SIGKILL 20 times at random points. Then `restore --at` at 30 random instants must give the
//! state of exactly one logged commit: every commit that ended well before the instant while
//! the replicator was up, none that began after it.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::replicating::{now, rfc3339, stop_replicator};
use common::s3::{S3Server, BUCKET, KEY, SECRET};
use common::*;

/// The writer: `db log stopfile seed`. The state checksum covers the row count and bytes of
/// `c` and every balance; `meta.n` is the last commit, written in the same transaction.
const WRITER: &str = r#"
import sqlite3, sys, time, os, random, hashlib
db, log, stop, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
rnd = random.Random(seed)
c = sqlite3.connect(db, isolation_level=None, timeout=30)
c.execute("PRAGMA busy_timeout=30000")
# The application never checkpoints: every generation boundary must then be a real break.
c.execute("PRAGMA wal_autocheckpoint=0")
bal = {i: 1000 for i in range(1, 101)}
live = {}
count = nbytes = n = 0
with open(log, "w") as out:
    while not os.path.exists(stop):
        n += 1
        kind = rnd.choices(["small", "mid", "big", "delete"], [60, 28, 2, 10])[0]
        start = time.time()
        c.execute("BEGIN IMMEDIATE")
        a, b = rnd.sample(range(1, 101), 2)
        amt = rnd.randint(1, 50)
        c.execute("UPDATE acct SET bal = bal - ? WHERE id = ?", (amt, a))
        c.execute("UPDATE acct SET bal = bal + ? WHERE id = ?", (amt, b))
        bal[a] -= amt
        bal[b] += amt
        if kind == "delete" and live:
            m = rnd.choice(sorted(live))
            c.execute("DELETE FROM c WHERE n = ?", (m,))
            count -= live[m][0]
            nbytes -= live[m][1]
            del live[m]
        else:
            rows, size = {"small": (1, 40), "mid": (rnd.randint(2, 40), 3000),
                          "big": (1, 5 * 1024 * 1024)}.get(kind, (1, 40))
            for k in range(rows):
                c.execute("INSERT INTO c(n, k, v) VALUES (?, ?, randomblob(?))", (n, k, size))
            live[n] = (rows, rows * size)
            count += rows
            nbytes += rows * size
        c.execute("UPDATE meta SET n = ?", (n,))
        c.execute("COMMIT")
        end = time.time()
        state = f"{count}:{nbytes}:" + ",".join(str(bal[i]) for i in range(1, 101))
        chk = hashlib.sha256(state.encode()).hexdigest()[:16]
        out.write(f"{n} {start:.6f} {end:.6f} {chk}\n")
        out.flush()
        time.sleep(rnd.choice([0, 0.005, 0.02, 0.05]))
"#;

/// `db`: prints `n checksum invariant-sum` of a restored database, by the writer's formula.
const STATE: &str = r#"
import sqlite3, sys, hashlib
c = sqlite3.connect(sys.argv[1])
n = c.execute("SELECT n FROM meta").fetchone()[0]
count, nbytes = c.execute("SELECT count(*), coalesce(sum(length(v)), 0) FROM c").fetchone()
bal = [r[0] for r in c.execute("SELECT bal FROM acct ORDER BY id")]
state = f"{count}:{nbytes}:" + ",".join(str(b) for b in bal)
print(n, hashlib.sha256(state.encode()).hexdigest()[:16], sum(bal))
"#;

/// A small deterministic generator (the seed is printed, so a failure can be replayed).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Where the repository is: a local directory, or a bucket on a loopback s3s-fs.
struct Repo<'a> {
    url: String,
    s3: Option<&'a S3Server>,
}

impl Repo<'_> {
    fn cmd(&self, dir: &Path) -> Command {
        let mut c = cmd(dir);
        if let Some(s) = self.s3 {
            c.env("AWS_ACCESS_KEY_ID", KEY)
                .env("AWS_SECRET_ACCESS_KEY", SECRET)
                .env("AWS_ENDPOINT_URL", s.endpoint())
                .env("AWS_REGION", "us-east-1");
        }
        c.args(["--repo", &self.url]);
        c
    }

    fn run(&self, dir: &Path, args: &[&str]) -> Output {
        self.cmd(dir).args(args).output().unwrap()
    }

    fn ok(&self, dir: &Path, args: &[&str]) -> String {
        let o = self.run(dir, args);
        assert!(
            o.status.success(),
            "lifeboat {args:?}: {}{}",
            stdout(&o),
            stderr(&o)
        );
        stdout(&o)
    }

    fn replicator(&self, dir: &Path, db: &Path) -> Child {
        self.cmd(dir)
            .args(["replicate", "--db"])
            .arg(db)
            .args(["--sync-interval", "200ms", "--checkpoint-frames", "200"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start lifeboat replicate")
    }

    fn has_generation(&self, dir: &Path) -> bool {
        let o = self.run(dir, &["list", "--pitr", "--db", "shop"]);
        o.status.success() && stdout(&o).contains("gen-")
    }
}

struct Logged {
    n: u64,
    start: f64,
    end: f64,
    chk: String,
}

fn read_log(p: &Path) -> Vec<Logged> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            Logged {
                n: f[0].parse().unwrap(),
                start: f[1].parse().unwrap(),
                end: f[2].parse().unwrap(),
                chk: f[3].to_string(),
            }
        })
        .collect()
}

/// The commit whose state `db` holds, checked against the log (and the invariant sum).
fn commit_of(db: &Path, log: &[Logged], initial: &str) -> u64 {
    let o = Command::new("python3")
        .args(["-c", STATE])
        .arg(db)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let f: Vec<&str> = out.split_whitespace().collect();
    let n: u64 = f[0].parse().unwrap();
    assert_eq!(f[2], "100000", "{}: the invariant sum broke", db.display());
    let want = if n == 0 {
        initial
    } else {
        &log[(n - 1) as usize].chk
    };
    assert_eq!(
        f[1],
        want,
        "{}: not the state commit {n} left (torn or mixed)",
        db.display()
    );
    n
}

fn new_db(db: &Path) {
    let mut sql = String::from(
        "PRAGMA journal_mode=WAL; CREATE TABLE c(n INTEGER, k INTEGER, v BLOB); \
         CREATE INDEX c_n ON c(n); CREATE TABLE acct(id INTEGER PRIMARY KEY, bal INTEGER); \
         CREATE TABLE meta(n INTEGER); INSERT INTO meta VALUES (0);",
    );
    for i in 1..=100 {
        sql.push_str(&format!("INSERT INTO acct VALUES ({i}, 1000);"));
    }
    sqlite3(db, &sql);
}

fn pitr_through_kills(repo: &Repo, d: &Path) {
    let seed = std::env::var("LIFEBOAT_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| now().to_bits());
    eprintln!("seed {seed} (LIFEBOAT_TEST_SEED replays it)");
    let mut rnd = Lcg(seed);
    let db = d.join("shop.db");
    new_db(&db);
    let initial = stdout(
        &Command::new("python3")
            .args(["-c", STATE])
            .arg(&db)
            .output()
            .unwrap(),
    )
    .split_whitespace()
    .nth(1)
    .unwrap()
    .to_string();
    let (log, stopfile) = (d.join("writer.log"), d.join("stop"));
    // The application first, as in production: the replicator starts on a WAL that holds
    // commits (a chain started on an empty WAL resumes only while no commit was made).
    let mut writer = Command::new("python3")
        .args(["-c", WRITER])
        .arg(&db)
        .arg(&log)
        .arg(&stopfile)
        .arg((seed % 1_000_000).to_string())
        .spawn()
        .unwrap();
    wait_until(|| std::fs::metadata(&log).is_ok_and(|m| m.len() > 0));
    let mut rep = repo.replicator(d, &db);
    wait_until(|| repo.has_generation(d));
    let replicated_from = now();
    // When the replicator was up: the commits it must have shipped.
    let mut up: Vec<(f64, f64)> = Vec::new();
    let mut since = replicated_from;
    for _ in 0..20 {
        std::thread::sleep(Duration::from_secs_f64(0.2 + 1.3 * rnd.next()));
        let _ = rep.kill();
        let _ = rep.wait();
        up.push((since, now()));
        std::thread::sleep(Duration::from_secs_f64(0.5 * rnd.next()));
        since = now();
        rep = repo.replicator(d, &db);
    }
    std::thread::sleep(Duration::from_millis(1500));
    std::fs::write(&stopfile, "").unwrap();
    assert!(writer.wait().unwrap().success());
    std::thread::sleep(Duration::from_millis(800));
    stop_replicator(rep);
    up.push((since, now()));
    let log = read_log(&log);
    assert!(log.len() > 50, "the writer committed only {}", log.len());

    // No break where none happened: the application never checkpointed, so a kill leaves the
    // chain to resume, except when lifeboat's own checkpoint had just completed and the new
    // WAL overwrote the frames that prove it (a fresh snapshot then, said so; see README).
    let pitr = repo.ok(d, &["list", "--pitr", "--db", "shop"]);
    let gens: Vec<&str> = pitr.lines().filter(|l| l.contains("gen-")).collect();
    assert!(gens[0].contains("started: first run"), "{pitr}");
    for g in &gens[1..] {
        assert!(g.contains("new WAL has overwritten the frames"), "{pitr}");
    }
    eprintln!("{} generation(s) after 20 kills", gens.len());

    let latest = d.join("latest.db");
    repo.ok(
        d,
        &[
            "restore",
            "--db",
            "shop",
            "--at",
            "latest",
            "--to",
            latest.to_str().unwrap(),
        ],
    );
    assert_same_db(&db, &latest);
    assert_eq!(commit_of(&latest, &log, &initial), log.len() as u64);

    // Instants from when the first generation existed (before it, `--at` means backups).
    let (first, last) = (replicated_from + 0.5, log[log.len() - 1].end);
    // Upload time and scheduling on a busy 2-core machine, over the sync interval.
    let slack = 5.0;
    for i in 0..30 {
        let t = first + (last - first) * rnd.next();
        let at = rfc3339(t);
        let out = d.join(format!("at-{i}.db"));
        repo.ok(
            d,
            &[
                "restore",
                "--db",
                "shop",
                "--at",
                &at,
                "--to",
                out.to_str().unwrap(),
            ],
        );
        let k = commit_of(&out, &log, &initial);
        let t_ms = (t * 1000.0).floor() / 1000.0;
        if k > 0 {
            let began = log[(k - 1) as usize].start;
            assert!(
                began <= t_ms + 0.001,
                "restore --at {at} holds commit {k}, begun at {began}\n{pitr}"
            );
        }
        let covered = |e: f64| up.iter().any(|(a, b)| *a <= e && e + slack <= *b);
        for c in log
            .iter()
            .filter(|c| c.end + slack <= t_ms && covered(c.end))
        {
            assert!(
                c.n <= k,
                "restore --at {at} lacks commit {} (ended {:.3}s before)\n{pitr}",
                c.n,
                t_ms - c.end
            );
        }
        std::fs::remove_file(&out).unwrap();
    }
}

fn wait_until(mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn pitr_is_exact_through_twenty_kills_on_a_local_repository() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repo {
        url: "repo".into(),
        s3: None,
    };
    pitr_through_kills(&repo, dir.path());
}

#[test]
fn pitr_is_exact_through_twenty_kills_on_s3() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start();
    let repo = Repo {
        url: format!("s3://{BUCKET}/pitr"),
        s3: Some(&s3),
    };
    pitr_through_kills(&repo, dir.path());
}
