#!/usr/bin/env python3
"""The Markdown report of bench/verify.sh: every run's times, the medians, each target's ratio
against its peer from the same run, and where a restore-test's time goes.
    verify_report.py OUT N PEER_N"""
import os
import statistics
import sys

out, n, peer = sys.argv[1], sys.argv[2], sys.argv[3]
runs = {}
for line in open(os.path.join(out, "times")):
    group, name, wall, rss = line.split()
    runs.setdefault(group, {}).setdefault(name, []).append((float(wall), float(rss)))
info = open(os.path.join(out, "info")).read().splitlines() if os.path.exists(os.path.join(out, "info")) else []


def fact(prefix):
    return [l[len(prefix):].strip() for l in info if l.startswith(prefix)]


LABELS = {
    "lb_backup_no_verify": "lifeboat backup --no-verify",
    "lb_backup_default": "lifeboat backup (default: + restore-test of the stored copy)",
    "lb_restore": "lifeboat restore (durable, quick_check)",
    "lb_restore_test": "lifeboat verify ID (restore-test)",
    "peer_integrity": "`zstd -d` + `sqlite3 PRAGMA integrity_check` (peer, information)",
    "part_unzstd": "part: `zstd -d` of the stored object to /dev/null",
    "part_sha_stored": "part: `sha256sum` of the stored object",
    "part_sha_image": "part: `sha256sum` of the image",
    "part_quick_check": "part: `PRAGMA quick_check` (sqlite3 CLI)",
    "part_integrity_check": "part: `PRAGMA integrity_check` (sqlite3 CLI)",
    "part_integrity_check_mmap": "part: `integrity_check` with mmap and a 256 MB cache (sqlite3 CLI)",
    "part_integrity_check_split": "part: `integrity_check(T)` per table + `quick_check`, 2 at a time (bench/integrity_split.sh)",
    "part_foreign_key_check": "part: `PRAGMA foreign_key_check` (sqlite3 CLI)",
    "part_row_counts": "part: `count(*)` of every table (sqlite3 CLI)",
    f"lb_catalogue_{n}": f"lifeboat verify --all --catalogue, {int(n):,} backups with records, S3",
    f"lb_catalogue_{n}_no_records": f"the same, {int(n):,} backups without verify records, S3",
    f"s3_list_{n}": f"paged S3 LIST of the same prefix with curl (floor)",
    f"lb_catalogue_{peer}": f"lifeboat verify --all --catalogue, {int(peer):,} backups, S3",
    f"restic_check_s3_{peer}": f"`restic check`, {int(peer):,} snapshots, S3",
    f"restic_check_local_{peer}": f"`restic check`, {int(peer):,} snapshots, local disk",
    f"lb_catalogue_local_{peer}": f"lifeboat verify --all --catalogue, {int(peer):,} backups, local disk",
}


def table(r):
    print("| run | median seconds | all runs | peak RSS (MB) |\n|---|---|---|---|")
    for k, v in r.items():
        w = statistics.median(x for x, _ in v)
        print(f"| {LABELS.get(k, k)} | {w:.2f} | {', '.join(f'{x:.2f}' for x, _ in v)} | {max(m for _, m in v):.0f} |")


def med(r, k):
    return statistics.median(x for x, _ in r[k]) if k in r else None


for profile, r in runs.items():
    if profile == "catalogue":
        continue
    size = dict(l.split()[1:] for l in info if l.startswith(profile + " "))
    print(f"\n### Profile `{profile}`: {int(size.get('size', 0)) / 1e6:.0f} MB database, "
          f"{int(size.get('stored', 0)) / 1e6:.0f} MB stored\n")
    table(r)
    rs, rt, pi = med(r, "lb_restore"), med(r, "lb_restore_test"), med(r, "peer_integrity")
    print("\n| measure | against | result | target | |\n|---|---|---|---|---|")
    x = rt / rs
    print(f"| restore-test | plain restore of the same backup | {x:.2f}x its time ({rt:.2f} s against {rs:.2f} s) | <= 1.5x | {'met' if x <= 1.5 else 'NOT met'} |")
    print(f"| restore-test | {LABELS['peer_integrity']} | {rt / pi:.2f}x its time ({pi:.2f} s) | (information) | |")
    bn, bd = med(r, "lb_backup_no_verify"), med(r, "lb_backup_default")
    if bn and bd:
        print(f"| backup with its restore-test (default) | backup --no-verify | {bd / bn:.2f}x its time ({bd:.2f} s against {bn:.2f} s) | (information) | |")
    parts = {k: med(r, k) for k in r if k.startswith("part_")}
    if parts:
        qc, ic = parts.get("part_quick_check"), parts.get("part_integrity_check")
        extra = [("integrity_check instead of quick_check", ic - qc if ic and qc else None),
                 ("foreign_key_check", parts.get("part_foreign_key_check")),
                 ("sha256 of stored bytes + image", (parts.get("part_sha_stored") or 0) + (parts.get("part_sha_image") or 0)),
                 ("row counts", parts.get("part_row_counts"))]
        print(f"\nWhat a restore-test adds to a restore, by its parts alone ({profile}): "
              f"the difference {rt - rs:+.2f} s; "
              + "; ".join(f"{k} {v:.2f} s" for k, v in extra if v is not None) + ".")

if "catalogue" in runs:
    r = runs["catalogue"]
    print(f"\n### Catalogue check on S3 (s3s-fs)\n")
    for l in info:
        if l.startswith(("catalogue", "listed", "restic")):
            print(f"- {l}")
    print()
    table(r)
    print("\n| measure | against | result | target | |\n|---|---|---|---|---|")
    t = med(r, f"lb_catalogue_{n}")
    print(f"| catalogue check, {int(n):,} backups, S3 | 10 s | {t:.2f} s | < 10 s | {'met' if t < 10 else 'NOT met'} |")
    floor = med(r, f"s3_list_{n}")
    if floor:
        print(f"| catalogue check, {int(n):,} backups, S3 | {LABELS[f's3_list_{n}']} | {t / floor:.1f}x its time ({floor:.2f} s) | (information) | |")
    bare = med(r, f"lb_catalogue_{n}_no_records")
    if bare:
        print(f"| catalogue check, {int(n):,} backups, S3 | the same without verify records | {t / bare:.2f}x its time ({bare:.2f} s) | (information) | |")
    for a, b in [(f"lb_catalogue_{peer}", f"restic_check_s3_{peer}"),
                 (f"lb_catalogue_local_{peer}", f"restic_check_local_{peer}")]:
        ta, tb = med(r, a), med(r, b)
        if ta and tb:
            ratio = f"{tb / ta:.1f}x faster" if tb >= ta else f"{ta / tb:.2f}x its time"
            print(f"| {LABELS[a]} | {LABELS[b]} | {ratio} ({ta:.2f} s against {tb:.2f} s) | (information) | |")
