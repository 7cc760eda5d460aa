//! Keeping and proving replicated data, end to end with the real replicator: `prune` applies
//! `[replication] pitr_within` to generations and never deletes a kept generation's snapshot
//! (also beside a running replicator, and twice at once); `verify` walks each generation's
//! chain and finds a bit flip, a missing segment and a segment from another generation.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::replicating::Rep;
use common::*;

fn config(d: &Path, pitr_within: &str) {
    std::fs::write(
        d.join("lifeboat.toml"),
        format!(
            "[repository]\nurl = \"file://./repo\"\n\n[retention]\nkeep_last = 1\nmin_keep = 1\n\n\
             [replication]\npitr_within = \"{pitr_within}\"\npitr_fine_within = \"{pitr_within}\"\n\n\
             [[database]]\nname = \"b\"\npath = \"b.db\"\n"
        ),
    )
    .unwrap();
}

fn replicator(d: &Path) -> Rep {
    let mut c = cmd(d);
    c.args(["replicate", "--db", "b", "--sync-interval", "100ms"]);
    Rep::start(c, d)
}

fn insert(db: &Path, n: u64) {
    sqlite3(
        db,
        &format!("INSERT INTO c(n, v) VALUES ({n}, randomblob(3000));"),
    );
}

/// A generation with `rows` commits in it: started after a TRUNCATE checkpoint from another
/// connection (a break), its commits shipped one by one (each in a segment of its own), then
/// the replicator stopped.
fn generation(d: &Path, first: u64, rows: u64) {
    let db = d.join("b.db");
    sqlite3(&db, "PRAGMA wal_checkpoint(TRUNCATE);");
    let before = generations(d).len();
    let rep = replicator(d);
    let deadline = Instant::now() + Duration::from_secs(60);
    while generations(d).len() == before {
        assert!(Instant::now() < deadline, "no new generation");
        std::thread::sleep(Duration::from_millis(20));
    }
    let gen = generations(d).pop().unwrap();
    for n in first..first + rows {
        let stored = segments(d, &gen).len();
        insert(&db, n);
        while segments(d, &gen).len() == stored {
            assert!(Instant::now() < deadline, "commit {n} not stored");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    rep.stop();
}

fn generations(d: &Path) -> Vec<String> {
    let dir = d.join("repo/b/generations");
    let mut v: Vec<String> = match std::fs::read_dir(&dir) {
        // A local repository keeps the empty folders of deleted objects: a generation is its
        // record.
        Ok(r) => r
            .map(|e| e.unwrap().path())
            .filter(|p| p.join("generation.json").exists())
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

fn backups(d: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(d.join("repo/b/backups"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_suffix(".json").map(str::to_string))
        .collect();
    v.sort();
    v
}

fn snapshot_of(d: &Path, gen: &str) -> String {
    let rec: serde_json::Value = serde_json::from_slice(
        &std::fs::read(d.join(format!("repo/b/generations/{gen}/generation.json"))).unwrap(),
    )
    .unwrap();
    rec["snapshot"].as_str().unwrap().to_string()
}

fn segments(d: &Path, gen: &str) -> Vec<PathBuf> {
    let dir = d.join(format!("repo/b/generations/{gen}/segments"));
    if !dir.exists() {
        return Vec::new(); // none stored yet
    }
    files_starting_with(&dir, "0")
}

fn new_db(d: &Path) {
    sqlite3(
        &d.join("b.db"),
        "PRAGMA journal_mode=WAL; CREATE TABLE c(n INTEGER, v BLOB);",
    );
}

fn restore_latest(d: &Path, to: &str) {
    ok(d, &["restore", "--db", "b", "--at", "latest", "--to", to]);
}

#[test]
fn pitr_within_prunes_old_generations_and_never_a_needed_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    new_db(d);
    config(d, "1h");
    generation(d, 1, 3);
    generation(d, 4, 3);
    let gens = generations(d);
    assert_eq!(gens.len(), 2, "{gens:?}");

    // Within pitr_within: every generation is kept, and so are both snapshots, although
    // [retention] (keep_last 1) alone would delete the older one.
    let out = ok(d, &["prune", "--dry-run"]);
    assert!(out.contains("2 replicated generation(s), keep 2"), "{out}");
    ok(d, &["prune"]);
    assert_eq!(generations(d), gens);
    for g in &gens {
        assert!(
            backups(d).contains(&snapshot_of(d, g)),
            "{g}: {:?}",
            backups(d)
        );
    }
    let out = ok(d, &["--json", "prune", "--dry-run"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let decisions = v["databases"][0]["decisions"].as_array().unwrap();
    let first = snapshot_of(d, &gens[0]);
    let d0 = decisions
        .iter()
        .find(|x| x["id"] == first.as_str())
        .unwrap();
    assert_eq!(d0["keep"], true);
    assert!(
        d0["reasons"].to_string().contains(&gens[0]),
        "{}",
        d0["reasons"]
    );

    // Two more generations, the third well older than the boundary set next, the fourth
    // younger: the first two go, the third reaches back to the boundary and stays.
    // The boundary (now - 9 s) must fall between the third's start and the fourth's: over
    // 10 s apart, so that it does however slowly the steps after the fourth's start run (up
    // to 9 s of them).
    generation(d, 7, 3);
    std::thread::sleep(Duration::from_secs(10));
    generation(d, 10, 2);
    config(d, "9s");
    let gens = generations(d);
    assert_eq!(gens.len(), 4, "{gens:?}");
    let snaps: Vec<String> = gens.iter().map(|g| snapshot_of(d, g)).collect();
    let before = backups(d);
    let out = ok(d, &["prune", "--dry-run"]);
    assert!(
        out.contains("4 replicated generation(s), keep 2, would delete 2"),
        "{out}"
    );
    assert!(out.contains("reaches back"), "{out}");
    assert_eq!(generations(d), gens, "a dry run deletes nothing");
    assert_eq!(backups(d), before);
    // The dry run shows the snapshots of the generations that would go as deleted too.
    for s in &snaps[..2] {
        assert!(
            out.lines()
                .any(|l| l.contains("DELETE") && l.contains(s.as_str())),
            "{s}: {out}"
        );
    }

    // Beside a running replicator that is writing, and two prunes at once.
    let db = d.join("b.db");
    let rep = replicator(d);
    let prunes: Vec<Child> = (0..2)
        .map(|_| {
            cmd(d)
                .arg("prune")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for n in 12..20 {
        insert(&db, n);
        std::thread::sleep(Duration::from_millis(60));
    }
    for p in prunes {
        let o = p.wait_with_output().unwrap();
        assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    }
    std::thread::sleep(Duration::from_millis(500));
    rep.stop();

    let left = generations(d);
    assert!(
        !left.contains(&gens[0]) && !left.contains(&gens[1]),
        "{left:?}"
    );
    assert!(
        left.contains(&gens[2]) && left.contains(&gens[3]),
        "{left:?}"
    );
    let kept = backups(d);
    for (i, s) in snaps.iter().enumerate() {
        assert_eq!(kept.contains(s), i >= 2, "snapshot {i} {s}: {kept:?}");
    }
    // Every snapshot a remaining generation stands on is there, and restores still work:
    // the newest state, and a point in the kept older generation.
    for g in &left {
        assert!(kept.contains(&snapshot_of(d, g)), "{g}: {kept:?}");
    }
    restore_latest(d, "latest.db");
    assert_same_db(&db, &d.join("latest.db"));
    ok(d, &["verify", "--catalogue"]);
}

/// Run lifeboat expecting exit `code`; returns stdout and stderr together.
fn exits(d: &Path, args: &[&str], code: i32) -> String {
    let o = run(d, args);
    let all = stdout(&o) + &stderr(&o);
    assert_eq!(o.status.code(), Some(code), "lifeboat {args:?}:\n{all}");
    all
}

#[test]
fn verify_walks_every_chain_and_names_what_is_broken() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    new_db(d);
    config(d, "1h");
    generation(d, 1, 6);
    generation(d, 7, 4);
    let gens = generations(d);
    assert_eq!(gens.len(), 2, "{gens:?}");
    let (g1, g2) = (&gens[0], &gens[1]);
    let segs = segments(d, g1);
    assert!(segs.len() >= 3, "{segs:?}");

    // Clean: the newest chain by default, every chain in the window with --all.
    let out = ok(d, &["verify"]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("ok") && l.contains(g2.as_str()) && l.contains("chain:")),
        "{out}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&ok(d, &["--json", "verify", "--all"])).unwrap();
    let chains = v["chains"].as_array().unwrap();
    assert_eq!(chains.len(), 2, "{v}");
    assert!(chains.iter().all(|c| c["ok"] == true), "{v}");
    assert!(
        chains.iter().all(|c| c["segments"].as_u64().unwrap() >= 2),
        "{v}"
    );

    // A bit flipped in a segment of the older generation: its replay fails, named; the default
    // verify (the newest chain) does not read it.
    let victim = &segs[segs.len() / 2];
    let pristine = std::fs::read(victim).unwrap();
    flip_middle_byte(victim, 0x10);
    let out = exits(d, &["verify", "--all"], 6);
    assert!(
        out.lines()
            .any(|l| l.contains("CHAIN") && l.contains(g1.as_str())),
        "{out}"
    );
    let out = exits(d, &["verify", "--catalogue", "--generation", g1], 6);
    assert!(out.contains(g1.as_str()), "{out}");
    ok(d, &["verify"]);
    // Every replay path finds it, restores included: never a wrong database.
    exits(
        d,
        &[
            "restore",
            "--db",
            "b",
            "--at",
            &at_of(victim),
            "--to",
            "x.db",
        ],
        6,
    );
    assert!(!d.join("x.db").exists());
    std::fs::write(victim, &pristine).unwrap();
    ok(d, &["verify", "--all"]);

    // A segment missing: the catalogue rung alone finds the gap, from the names.
    std::fs::rename(victim, d.join("aside")).unwrap();
    let out = exits(d, &["verify", "--all", "--catalogue"], 6);
    assert!(
        out.lines()
            .any(|l| l.contains("CHAIN") && l.contains(g1.as_str()) && l.contains("missing")),
        "{out}"
    );
    std::fs::rename(d.join("aside"), victim).unwrap();

    // A segment of the other generation copied in under its own name: its commits overlap.
    let foreign = &segments(d, g2)[0];
    let copied = segs[0].with_file_name(foreign.file_name().unwrap());
    assert!(
        !copied.exists(),
        "same name in both generations: {copied:?}"
    );
    std::fs::copy(foreign, &copied).unwrap();
    let out = exits(d, &["verify", "--all", "--catalogue"], 6);
    assert!(out.contains("overlaps"), "{out}");
    std::fs::remove_file(&copied).unwrap();

    // …or in place of one with the same commits: the names hold, the replay finds it.
    let first = &segs[0];
    let kept = std::fs::read(first).unwrap();
    std::fs::copy(foreign, first).unwrap();
    ok(d, &["verify", "--all", "--catalogue"]);
    let out = exits(d, &["verify", "--all"], 6);
    assert!(
        out.lines().any(|l| l.contains("CHAIN")
            && l.contains(g1.as_str())
            && l.contains("another generation")),
        "{out}"
    );
    std::fs::write(first, &kept).unwrap();
    ok(d, &["verify", "--all"]);

    // An unknown generation is a one-line error, exit 5.
    fails(d, &["verify", "--generation", "gen-nope"], 5);
}

/// A restore point inside segment `seg` (its last commit's time, from its name).
fn at_of(seg: &Path) -> String {
    let name = seg.file_name().unwrap().to_string_lossy().into_owned();
    let stamp = name.split('-').nth(3).unwrap().trim_end_matches(".seg.zst");
    let t = chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%S%3fZ")
        .unwrap()
        .and_utc();
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
