#!/usr/bin/env bash
# Benchmark lifeboat against sqlite3 and zstd, side by side in one run, on the demo database
# (~800 MB by default; SIZE_MB=… to change). Prints a Markdown table of times, ratios and peak RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB="${SIZE_MB:-800}"
OUT="${BENCH_DIR:-bench/out}"
for tool in sqlite3 zstd python3; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is required" >&2; exit 1; }
done
cargo build --release --quiet
LB="$PWD/target/release/lifeboat"
M="python3 $PWD/bench/measure.py"

rm -rf "$OUT" && mkdir -p "$OUT/scratch"
OUT="$(cd "$OUT" && pwd)"
DB="$OUT/studio.db"
echo "generating ~${SIZE_MB} MB demo database..." >&2
"$LB" demo --generate-only --size "$SIZE_MB" --dir "$OUT" --quiet
DB_BYTES=$(stat -c %s "$DB")
sync

# Warm the page cache once so every contender reads the database from memory.
cat "$DB" > /dev/null

REPEAT="${REPEAT:-3}"
# The steps of a second or two swing most with the disk's mood: give them more runs.
SHORT="${SHORT_REPEAT:-5}"
measure() { # name outputs command [setup]: runs command $REPEAT times (removing its outputs and
  # running setup first, untimed); report = median
  local i r
  for i in $(seq "$REPEAT"); do
    rm -f $2
    if [ -n "${4:-}" ]; then eval "$4"; fi
    sync  # flush the previous step's writes outside the timing, so no step pays for another's
    sleep 1  # and let the disk settle (journal commits, discards of deleted outputs)
    r=$($M "$3")
    printf '%s %s\n' "$1" "$r" >> "$OUT/times"
    echo "  $1 #$i: $r (s, MB)" >&2
  done
}
: > "$OUT/times"
REPEAT=$SHORT measure lb_backup   "" "'$LB' --quiet backup --db '$DB' --repo 'file://$OUT/repo' --scratch-dir '$OUT/scratch'"
REPEAT=$SHORT measure dump_zstd   "$OUT/dump.sql.zst" "sqlite3 '$DB' .dump | zstd -3 -q > '$OUT/dump.sql.zst'"
REPEAT=$SHORT measure backup_zstd "$OUT/copy.db $OUT/copy.db.zst" "sqlite3 '$DB' \".backup '$OUT/copy.db'\" && zstd -1 -T2 -q '$OUT/copy.db' -o '$OUT/copy.db.zst'"
REPEAT=$SHORT measure lb_restore  "$OUT/restored.db" "'$LB' --quiet restore --db '$DB' --repo 'file://$OUT/repo' --to '$OUT/restored.db'"
measure load_dump   "$OUT/loaded.db" "zstd -dc '$OUT/dump.sql.zst' | sqlite3 '$OUT/loaded.db'"
REPEAT=$SHORT measure unzstd      "$OUT/unzstd.db" "zstd -d -q '$OUT/copy.db.zst' -o '$OUT/unzstd.db'"
# SQL dumps (issue 3): both tools dump the live database; both load sqlite3's own dump.
REPEAT=$SHORT measure lb_dump     "$OUT/lb.sql" "'$LB' --quiet dump --db '$DB' --out '$OUT/lb.sql'"
REPEAT=$SHORT measure sqlite_dump "$OUT/cli.sql" "sqlite3 '$DB' .dump > '$OUT/cli.sql'"
measure lb_import   "$OUT/imported.db" "'$LB' --quiet import '$OUT/cli.sql' --to '$OUT/imported.db'"
measure sqlite_load "$OUT/cliload.db" "sqlite3 '$OUT/cliload.db' < '$OUT/cli.sql'"
# One tenant (issue 5): a mid-sized tenant of the 200, exported and restored into a live copy.
TENANT=$(sqlite3 "$DB" "SELECT id FROM tenants WHERE slug = 'studio-20'")
cp "$DB" "$OUT/damaged.db"
sqlite3 "$OUT/damaged.db" "DELETE FROM bookings WHERE rowid % 2 = 0 AND class_id IN (SELECT id FROM classes WHERE tenant_id = '$TENANT')"
# Every run restores from the same backup (each run's safety backup becomes the newest) into a
# fresh copy of the damaged database.
BACKUP=$("$LB" --json list --db studio --repo "file://$OUT/repo" | python3 -c 'import json,sys; print(json.load(sys.stdin)["databases"][0]["backups"][0]["id"])')
measure tenant_export_live   "$OUT/t.json" "'$LB' --quiet export --tenant '$TENANT' --db '$DB' --format json --out '$OUT/t.json'"
measure tenant_export_backup "$OUT/t.db" "'$LB' --quiet export --tenant '$TENANT' --backup latest --db studio --repo 'file://$OUT/repo' --format sqlite --out '$OUT/t.db'"
measure tenant_restore       "" "'$LB' --quiet restore --tenant '$TENANT' --backup '$BACKUP' --db studio --repo 'file://$OUT/repo' --into '$OUT/live.db'" "cp '$OUT/damaged.db' '$OUT/live.db'"

python3 - "$OUT/times" "$DB_BYTES" <<'PY'
import sys
import statistics
runs = {}
for line in open(sys.argv[1]):
    name, wall, rss = line.split()
    runs.setdefault(name, []).append((float(wall), float(rss)))
# Median wall time; peak RSS is the largest seen.
t = {k: (statistics.median(w for w, _ in v), max(r for _, r in v)) for k, v in runs.items()}
size_mb = int(sys.argv[2]) / 1e6
def row(measure, peer, ratio, target, ok):
    print(f"| {measure} | {peer} | {ratio} | {target} | {'met' if ok else 'NOT met'} |")
print(f"Database: {size_mb:.0f} MB demo database (lifeboat demo generator)\n")
print("| run | median seconds | all runs | peak RSS (MB) |\n|---|---|---|---|")
for k, (w, r) in t.items():
    print(f"| {k} | {w:.2f} | {', '.join(f'{x:.2f}' for x, _ in runs[k])} | {r:.0f} |")
print("\n| measure | peer | result | target | |\n|---|---|---|---|---|")
b, r = t["lb_backup"][0], t["lb_restore"][0]
x = t["dump_zstd"][0] / b; row("lifeboat backup", "`sqlite3 db .dump | zstd -3`", f"{x:.2f}x faster", ">= 2x faster", x >= 2)
x = b / t["backup_zstd"][0]; row("lifeboat backup", "`sqlite3 .backup` + `zstd -1 -T2`", f"{x:.2f}x its time", "<= 1.5x", x <= 1.5)
x = t["load_dump"][0] / r; row("lifeboat restore", "`zstd -dc dump.sql.zst | sqlite3 new.db`", f"{x:.2f}x faster", ">= 5x faster", x >= 5)
x = r / t["unzstd"][0]; row("lifeboat restore", "`zstd -d image.zst`", f"{x:.2f}x its time", "<= 1.3x", x <= 1.3)
m = max(t["lb_backup"][1], t["lb_restore"][1]); row("peak RSS of backup and restore", "-", f"{m:.0f} MB", "< 100 MB", m < 100)
x = t["sqlite_load"][0] / t["lb_import"][0]; row("lifeboat import of the .dump (with quick_check and foreign_key_check)", "`sqlite3 new.db < dump.sql`", f"{x:.2f}x faster", ">= 2x faster", x >= 2)
x = t["sqlite_dump"][0] / t["lb_dump"][0]; row("lifeboat dump (fsynced file)", "`sqlite3 db .dump`", f"{x:.2f}x faster", ">= 1.5x faster", x >= 1.5)
m = max(t["lb_dump"][1], t["lb_import"][1]); row("peak RSS of dump and import", "-", f"{m:.0f} MB", "< 100 MB", m < 100)
x = t["tenant_restore"][0]; row("restore one mid-sized tenant end to end (download, check, safety backup, restore)", "-", f"{x:.2f} s", "< 5 s", x < 5)
x = t["tenant_export_live"][0]; row("export one tenant (JSON, live database)", "-", f"{x:.2f} s", "< 3 s", x < 3)
x = t["tenant_export_backup"][0]; row("export one tenant (SQLite, from a backup: download and check included)", "-", f"{x:.2f} s", "< 3 s", x < 3)
m = max(t[k][1] for k in ("tenant_restore", "tenant_export_live", "tenant_export_backup")); row("peak RSS of tenant export and restore", "-", f"{m:.0f} MB", "< 150 MB", m < 150)
PY
