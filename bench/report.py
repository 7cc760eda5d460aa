#!/usr/bin/env python3
"""The Markdown report of bench/run.sh: per profile, every run's times, and each target's ratio
against the peer measured in the same run. Median wall time; peak RSS is the largest seen."""
import os
import statistics
import sys

out = sys.argv[1]
runs = {}
for line in open(os.path.join(out, "times")):
    profile, name, wall, rss = line.split()
    runs.setdefault(profile, {}).setdefault(name, []).append((float(wall), float(rss)))
sizes = dict(l.split() for l in open(os.path.join(out, "sizes")))
describe = {
    "demo": "demo generator: rollback journal, bookings through classes, even tenants",
    "saas": "bench/gen_saas.py: WAL, 1.35 M bookings with tenant_id and no index on it, "
    "Zipf-skewed tenants, 13 indexes",
}
LABELS = {
    "lb_backup": "lifeboat backup --no-verify",
    "lb_backup_verified": "lifeboat backup (default: + restore-test of the stored copy)",
    "dump_zstd": "`sqlite3 db .dump | zstd -3`",
    "backup_zstd": "`sqlite3 .backup` + `zstd -1 -T2`",
    "lb_restore": "lifeboat restore (checked, fsynced)",
    "unzstd_checked": "`zstd -d` + `sync FILE` + `sqlite3 quick_check`",
    "unzstd": "`zstd -d image.zst` (bare, for information)",
    "load_dump": "`zstd -dc dump.sql.zst | sqlite3 new.db`",
    "lb_dump": "lifeboat dump (sqlite dialect, fsynced file)",
    "sqlite_dump": "`sqlite3 db .dump > file`",
    "lb_import": "lifeboat import of sqlite3's dump (quick_check + foreign_key_check)",
    "sqlite_load": "`sqlite3 new.db < dump.sql`",
    "tenant_export_live": "export one tenant, JSON, live database",
    "tenant_export_backup": "export one tenant, SQLite, from a backup (download + checks)",
    "tenant_restore": "restore one tenant end to end (download, check, restore, tenant safety backup)",
    "tenant_restore_full_safety": "the same with `--safety-backup full`",
    "tenant_dry_run": "tenant restore `--dry-run`",
}


def row(measure, peer, result, target, ok):
    print(f"| {measure} | {peer} | {result} | {target} | {'met' if ok else 'NOT met'} |")


for profile, r in runs.items():
    t = {k: (statistics.median(w for w, _ in v), max(m for _, m in v)) for k, v in r.items()}
    print(f"\n### Profile `{profile}`: {int(sizes[profile]) / 1e6:.0f} MB ({describe.get(profile, '')})\n")
    print("| run | median seconds | all runs | peak RSS (MB) |\n|---|---|---|---|")
    for k, (w, m) in t.items():
        print(f"| {LABELS.get(k, k)} | {w:.2f} | {', '.join(f'{x:.2f}' for x, _ in r[k])} | {m:.0f} |")
    print("\n| measure | peer | result | target | |\n|---|---|---|---|---|")
    b, rs = t["lb_backup"][0], t["lb_restore"][0]
    if "lb_backup_verified" in t:
        v = t["lb_backup_verified"][0]
        print(f"| lifeboat backup with its restore-test | lifeboat backup --no-verify | {v / b:.2f}x its time ({v:.2f} s) | (information) | |")
    x = t["dump_zstd"][0] / b
    row("lifeboat backup", LABELS["dump_zstd"], f"{x:.2f}x faster", ">= 2x faster", x >= 2)
    x = b / t["backup_zstd"][0]
    row("lifeboat backup", LABELS["backup_zstd"], f"{x:.2f}x its time", "<= 1.5x", x <= 1.5)
    x = rs / t["unzstd_checked"][0]
    row("lifeboat restore", LABELS["unzstd_checked"], f"{x:.2f}x its time", "<= 1.0x", x <= 1.0)
    x = rs / t["unzstd"][0]
    print(f"| lifeboat restore | {LABELS['unzstd']} | {x:.2f}x its time | (information) | |")
    if "load_dump" in t:
        x = t["load_dump"][0] / rs
        row("lifeboat restore", LABELS["load_dump"], f"{x:.2f}x faster", ">= 5x faster", x >= 5)
    m = max(t["lb_backup"][1], t["lb_restore"][1])
    row("peak RSS of backup and restore", "-", f"{m:.0f} MB", "< 100 MB", m < 100)
    if "lb_import" in t:
        x = t["sqlite_load"][0] / t["lb_import"][0]
        row("lifeboat import of the .dump", LABELS["sqlite_load"], f"{x:.2f}x faster", ">= 2x faster", x >= 2)
        x = t["sqlite_dump"][0] / t["lb_dump"][0]
        row("lifeboat dump (fsynced file)", "`sqlite3 db .dump`", f"{x:.2f}x faster", ">= 1.5x faster", x >= 1.5)
        m = max(t["lb_dump"][1], t["lb_import"][1])
        row("peak RSS of dump and import", "-", f"{m:.0f} MB", "< 100 MB", m < 100)
    x = t["tenant_restore"][0] / rs
    row("restore one mid-sized tenant end to end", "lifeboat restore of the same backup", f"{x:.2f}x its time ({t['tenant_restore'][0]:.2f} s)", "<= 1.3x", x <= 1.3)
    x = t["tenant_export_live"][0]
    row("export one tenant (JSON, live database)", "-", f"{x:.2f} s", "< 3 s", x < 3)
    x = t["tenant_export_backup"][0]
    row("export one tenant (SQLite, from a backup)", "-", f"{x:.2f} s", "< 3 s", x < 3)
    m = max(t[k][1] for k in ("tenant_restore", "tenant_export_live", "tenant_export_backup"))
    row("peak RSS of tenant export and restore", "-", f"{m:.0f} MB", "< 150 MB", m < 150)
    plan = os.path.join(out, profile, "tenant-plan.txt")
    if os.path.exists(plan):
        print(f"\nTenant restore plan ({profile}):\n```")
        print(open(plan).read().rstrip())
        print("```")
