use super::*;

fn db(path: &Path) {
    rusqlite::Connection::open(path)
        .unwrap()
        .execute_batch("CREATE TABLE t(x);")
        .unwrap();
}

fn config(dir: &Path, text: &str) -> Config {
    let mut cfg = Config::parse(text, |_| None).unwrap();
    cfg.base_dir = dir.to_path_buf();
    cfg
}

fn names(m: &Members) -> Vec<&str> {
    m.sources.iter().map(|s| s.name.as_str()).collect()
}

#[test]
fn entries_need_exactly_one_source_and_fleets_need_no_name() {
    let e = Config::parse("[[database]]\nglob = \"t/*.db\"\npath = \"a.db\"\n", |_| {
        None
    })
    .unwrap_err();
    assert!(e.to_string().contains("exactly one of `path`"), "{e}");
    let e = Config::parse("[[database]]\npath = \"a.db\"\n", |_| None).unwrap_err();
    assert!(e.to_string().contains("needs a `name`"), "{e}");
    let e = Config::parse("[[database]]\nglob = \" \"\n", |_| None).unwrap_err();
    assert!(e.to_string().contains("matches nothing"), "{e}");
    let e = Config::parse("[[database]]\nglob = \"t/[*.db\"\n", |_| None).unwrap_err();
    assert_eq!(e.kind, Kind::Config);
    assert!(e.to_string().contains("glob"), "{e}");
    let cfg = Config::parse(
        "[[database]]\nglob = \"t/*.db\"\n[[database]]\nglob = \"u/*.db\"\nname = \"tenants\"\n",
        |_| None,
    )
    .unwrap();
    assert_eq!(cfg.databases[0].label(), "t/*.db");
    assert_eq!(cfg.databases[1].label(), "tenants");
}

#[test]
fn members_inherit_the_entry_and_clashes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for sub in ["t", "u", "other"] {
        std::fs::create_dir(d.join(sub)).unwrap();
    }
    for f in [
        "t/a.db",
        "t/b.db",
        "t/main.db",
        "t/own.db",
        "t/tenants.db",
        "u/b.db",
        "u/c.db",
        "other/main.db",
    ] {
        db(&d.join(f));
    }
    let cfg = config(
        d,
        r#"
        [[database]]
        name = "main"
        path = "other/main.db"
        [[database]]
        name = "own"
        path = "t/own.db"
        [[database]]
        name = "tenants"
        glob = "t/*.db"
        schedule = "*/15 * * * *"
        skip_unchanged = false
        sql_mirror = true
        [[database]]
        glob = "u/*.db"
        "#,
    );
    let m = cfg.members();
    // `own` is the configured database at that path (found by the glob too, not refused).
    assert_eq!(names(&m), ["main", "own", "a", "c"]);
    let a = &m.sources[2];
    assert_eq!(a.fleet.as_deref(), Some("tenants"));
    assert_eq!(a.schedule.as_deref(), Some("*/15 * * * *"));
    assert_eq!(a.skip_unchanged, Some(false));
    assert!(a.sql_mirror && a.path.is_absolute(), "{a:?}");
    assert_eq!(m.sources[3].fleet.as_deref(), Some("u/*.db"));
    let mut refused: Vec<(&str, String)> = m
        .refused
        .iter()
        .map(|r| (r.name.as_str(), r.error.to_string()))
        .collect();
    refused.sort();
    assert_eq!(refused.len(), 4, "{refused:?}");
    // b in two directories: both refused, each naming the other.
    assert_eq!(refused[0].0, "b");
    assert!(refused[0].1.contains("u/b.db") && refused[0].1.contains("same file stem"));
    assert_eq!(refused[1].0, "b");
    assert_eq!(refused[2].0, "main");
    assert!(
        refused[2].1.contains("configured database \"main\""),
        "{}",
        refused[2].1
    );
    assert_eq!(refused[3].0, "tenants");
    assert!(refused[3].1.contains("name of a fleet"));

    // --db: a discovered name, a path to one, a fleet's name (several), a refused name.
    assert_eq!(cfg.database("a").unwrap().fleet.as_deref(), Some("tenants"));
    let by_path = cfg
        .database(&d.join("t/a.db").display().to_string())
        .unwrap();
    assert_eq!(by_path.fleet.as_deref(), Some("tenants"));
    assert_eq!(names(&cfg.select("tenants").unwrap()), ["a"]);
    assert_eq!(cfg.select("tenants").unwrap().refused.len(), 3);
    let e = cfg.database("tenants").unwrap_err();
    assert!(e.to_string().contains("is a fleet"), "{e}");
    let e = cfg.database("b").unwrap_err();
    assert!(e.to_string().contains("same file stem"), "{e}");
    assert!(cfg.single_database(None).is_err());

    // A file that leaves the fleet: gone from the members, and status is told so.
    let a_path = m.sources[2].path.display().to_string();
    assert_eq!(cfg.left_fleet(&a_path), None, "still there");
    std::fs::remove_file(&m.sources[2].path).unwrap();
    assert_eq!(names(&cfg.members()), ["main", "own", "c"]);
    assert_eq!(cfg.left_fleet(&a_path).as_deref(), Some("tenants"));
    assert_eq!(cfg.left_fleet("/elsewhere/a.db"), None);
}

#[test]
fn a_glob_whose_directory_is_missing_is_refused_and_the_rest_carry_on() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("t")).unwrap();
    db(&d.join("t/a.db"));
    let cfg = config(
        d,
        "[[database]]\nglob = \"gone/*.db\"\nname = \"lost\"\n[[database]]\nglob = \"t/*\"\n",
    );
    let m = cfg.members();
    assert_eq!(names(&m), ["a"]);
    assert_eq!(m.refused.len(), 1);
    assert_eq!(m.refused[0].name, "lost");
    assert_eq!(m.refused[0].error.kind, Kind::Database);
    assert!(m.refused[0].error.to_string().contains("does not exist"));
    assert_eq!(cfg.single_database(None).unwrap().name, "a");
    // A WAL database's side files are never members, whatever the glob.
    let c = rusqlite::Connection::open(d.join("t/w.db")).unwrap();
    c.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();
    assert!(d.join("t/w.db-wal").exists());
    assert_eq!(names(&cfg.members()), ["a", "w"]);
    drop(c);
}

#[test]
fn tenancy_of_a_discovered_database_is_its_fleets() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("t")).unwrap();
    db(&d.join("t/a.db"));
    let cfg = config(
        d,
        "[[database]]\nname = \"x\"\npath = \"x.db\"\n[[database]]\nglob = \"t/*.db\"\ntenancy = { table = \"orgs\" }\n",
    );
    assert_eq!(cfg.tenancy_for(Some("a")).table, "orgs");
    assert_eq!(cfg.tenancy_for(Some("x")).table, "tenants");
}
