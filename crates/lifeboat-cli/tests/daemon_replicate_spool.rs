//! The daemon's spool: `lifeboat daemon` killed (`kill -9`) with frames staged and the WAL
//! checkpointed past them, so they are only in `<db>.lifeboat-spool/`. Restarted, it must
//! upload them before it resumes the chain: one generation, every commit restorable, and no
//! spool left after its clean stop.
//!
//! `LIFEBOAT_FAULT=hold-uploads` (debug builds) keeps every piece staged until the kill.

mod common;

use std::path::Path;

use common::daemon::{config, wait_for_or, Daemon};
use common::replicating::{restore_latest, App};
use common::*;

fn pitr(d: &Path) -> String {
    let o = run(d, &["list", "--pitr", "--db", "shop"]);
    stdout(&o)
}

fn staged(spool: &Path) -> usize {
    std::fs::read_dir(spool).map_or(0, |l| {
        l.flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".frames"))
            .count()
    })
}

#[test]
fn the_daemon_killed_with_frames_staged_uploads_them_at_its_restart_in_one_generation() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = d.join("shop.db");
    sqlite3(&db, "PRAGMA journal_mode=WAL; CREATE TABLE t(x);");
    let mut app = App::start(&db);
    config(
        d,
        "file://./repo",
        &[],
        "[daemon]\nschedule = \"0 0 1 1 *\"\n[replication]\nsync_interval = \"100ms\"\ncheckpoint_frames = 1\n\
         [[database]]\nname = \"shop\"\npath = \"shop.db\"\nreplicate = true\n",
    );
    let mut first = Daemon::start(
        d,
        "first",
        &[],
        &[
            ("LIFEBOAT_FAULT", "hold-uploads".to_string()),
            ("LIFEBOAT_LOG", "lifeboat=trace".to_string()),
        ],
    );
    wait_for_or(
        "the first generation",
        60,
        &mut || first.log().contains("generation started"),
        || first.log(),
    );
    for _ in 0..5 {
        app.commit(20_000);
    }
    wait_for_or(
        "commit 5 staged and checkpointed",
        60,
        &mut || {
            let l = first.log();
            let mut lines = l.lines();
            lines.any(|x| x.contains("staged") && x.contains("last=5"))
                && lines.any(|x| x.contains("checkpoint database=shop"))
        },
        || first.log(),
    );
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let spool = d.join("shop.db.lifeboat-spool");
    assert!(staged(&spool) > 0, "nothing staged");
    assert!(!pitr(d).contains("..5 "), "{}", pitr(d));

    let mut second = Daemon::start(d, "second", &[], &[]);
    wait_for_or(
        "the restart",
        60,
        &mut || second.log().contains("resuming the chain"),
        || second.log(),
    );
    app.commit(20_000);
    wait_for_or(
        "commit 6 restorable",
        60,
        &mut || pitr(d).contains("..6 "),
        || second.log(),
    );
    assert_eq!(second.stop(), Some(0), "{}", second.log());
    app.stop();

    let listed = pitr(d);
    assert_eq!(
        listed.lines().filter(|l| l.contains("gen-")).count(),
        1,
        "{listed}\n{}",
        second.log()
    );
    let restored = restore_latest(d, "shop");
    assert_same_db(&db, &restored);
    assert_eq!(sqlite3(&restored, "SELECT count(*) FROM t").trim(), "6");
    assert!(!spool.exists(), "a clean stop leaves the spool behind");
}
