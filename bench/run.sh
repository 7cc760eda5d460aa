#!/usr/bin/env bash
# Benchmark lifeboat against sqlite3 and zstd, side by side in one run, on two databases of
# different shapes (PROFILES="demo saas"; SIZE_MB=… for their size, default 800):
#   demo  the `lifeboat demo` generator: rollback journal, bookings reached through classes,
#         few indexes, evenly sized tenants;
#   saas  bench/gen_saas.py: WAL mode, Zipf-skewed tenants, 1.35 M bookings carrying tenant_id
#         with no index on it, notes through bookings, 13 indexes, WITHOUT ROWID and composite
#         keys, blobs.
# Prints, per profile, a Markdown table of times, ratios and peak RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB="${SIZE_MB:-800}"
PROFILES="${PROFILES:-demo saas}"
OUT="${BENCH_DIR:-bench/out}"
for tool in sqlite3 zstd python3; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is required" >&2; exit 1; }
done
cargo build --release --quiet
LB="$PWD/target/release/lifeboat"
M="python3 $PWD/bench/measure.py"
GEN_SAAS="$PWD/bench/gen_saas.py"
REPORT="$PWD/bench/report.py"

rm -rf "$OUT" && mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
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
    printf '%s %s %s\n' "$PROFILE" "$1" "$r" >> "$OUT/times"
    echo "  $PROFILE $1 #$i: $r (s, MB)" >&2
  done
}
: > "$OUT/times"

for PROFILE in $PROFILES; do
  P="$OUT/$PROFILE"
  echo "generating the ~${SIZE_MB} MB $PROFILE database..." >&2
  case "$PROFILE" in
    demo)
      "$LB" demo --generate-only --size "$SIZE_MB" --dir "$P" --quiet
      DB="$P/studio.db"; NAME=studio
      # studio-20 of 200 at full size; studio-3 in the small samples.
      TENANT=$(sqlite3 "$DB" "SELECT id FROM tenants WHERE slug IN ('studio-20', 'studio-3') ORDER BY slug = 'studio-20' DESC LIMIT 1")
      DAMAGE="DELETE FROM bookings WHERE rowid % 2 = 0 AND class_id IN (SELECT id FROM classes WHERE tenant_id = '$TENANT')"
      ;;
    saas)
      mkdir -p "$P"
      DB="$P/saas.db"; NAME=saas
      python3 "$GEN_SAAS" --out "$DB" --size "$SIZE_MB" >/dev/null
      TENANT=$(python3 "$GEN_SAAS" --print-mid-tenant "$DB")
      DAMAGE="DELETE FROM bookings WHERE tenant_id = '$TENANT' AND rowid % 6 = 0"
      ;;
    *) echo "bench: unknown profile $PROFILE" >&2; exit 1 ;;
  esac
  mkdir -p "$P/scratch"
  echo "$PROFILE $(stat -c %s "$DB")" >> "$OUT/sizes"
  sync
  # Warm the page cache once so every contender reads the database from memory.
  cat "$DB" > /dev/null
  REPO="file://$P/repo"

  # --no-verify keeps this row comparable with earlier reports; the next is the default, which
  # restore-tests each new backup from the repository (verify_after_backup, issue 13).
  REPEAT=$SHORT measure lb_backup   "" "'$LB' --quiet backup --no-verify --db '$DB' --repo '$REPO' --scratch-dir '$P/scratch'"
  REPEAT=$SHORT measure lb_backup_verified "" "'$LB' --quiet backup --db '$DB' --repo '$REPO' --scratch-dir '$P/scratch'"
  REPEAT=$SHORT measure dump_zstd   "$P/dump.sql.zst" "sqlite3 '$DB' .dump | zstd -3 -q > '$P/dump.sql.zst'"
  REPEAT=$SHORT measure backup_zstd "$P/copy.db $P/copy.db.zst" "sqlite3 '$DB' \".backup '$P/copy.db'\" && zstd -1 -T2 -q '$P/copy.db' -o '$P/copy.db.zst'"
  BACKUP=$("$LB" --json list --db "$NAME" --repo "$REPO" | python3 -c 'import json,sys; print(json.load(sys.stdin)["databases"][0]["backups"][0]["id"])')
  REPEAT=$SHORT measure lb_restore  "$P/restored.db" "'$LB' --quiet restore --db '$NAME' --backup '$BACKUP' --repo '$REPO' --to '$P/restored.db'"
  # The honest peer of a restore: decompressed, durable (fsync) and checked (quick_check).
  REPEAT=$SHORT measure unzstd_checked "$P/unzstd.db" "zstd -d -q '$P/copy.db.zst' -o '$P/unzstd.db' && sync '$P/unzstd.db' && sqlite3 '$P/unzstd.db' 'PRAGMA quick_check' > /dev/null"
  REPEAT=$SHORT measure unzstd      "$P/unzstd.db" "zstd -d -q '$P/copy.db.zst' -o '$P/unzstd.db'"
  if [ "$PROFILE" = demo ]; then
    measure load_dump   "$P/loaded.db" "zstd -dc '$P/dump.sql.zst' | sqlite3 '$P/loaded.db'"
    # SQL dumps (issue 3): both tools dump the live database; both load sqlite3's own dump.
    REPEAT=$SHORT measure lb_dump     "$P/lb.sql" "'$LB' --quiet dump --db '$DB' --out '$P/lb.sql'"
    REPEAT=$SHORT measure sqlite_dump "$P/cli.sql" "sqlite3 '$DB' .dump > '$P/cli.sql'"
    measure lb_import   "$P/imported.db" "'$LB' --quiet import '$P/cli.sql' --to '$P/imported.db'"
    measure sqlite_load "$P/cliload.db" "sqlite3 '$P/cliload.db' < '$P/cli.sql'"
    rm -f "$P/cli.sql" "$P/lb.sql" "$P/loaded.db" "$P/imported.db" "$P/cliload.db"
  fi
  # One tenant: a mid-sized tenant, exported, and restored into a damaged live copy. Every run
  # restores from the same backup (each real run's safety backup becomes the newest) into a
  # fresh copy of the damaged database.
  cp "$DB" "$P/damaged.db"
  sqlite3 "$P/damaged.db" "$DAMAGE"
  measure tenant_export_live   "$P/t.json" "'$LB' --quiet export --tenant '$TENANT' --db '$DB' --format json --out '$P/t.json'"
  measure tenant_export_backup "$P/t.db" "'$LB' --quiet export --tenant '$TENANT' --backup '$BACKUP' --db '$NAME' --repo '$REPO' --format sqlite --out '$P/t.db'"
  fresh="rm -f '$P/live.db-wal' '$P/live.db-shm'; cp '$P/damaged.db' '$P/live.db'"
  REPEAT=$SHORT measure tenant_restore "" "'$LB' --quiet restore --tenant '$TENANT' --backup '$BACKUP' --db '$NAME' --repo '$REPO' --into '$P/live.db'" "$fresh"
  measure tenant_restore_full_safety "" "'$LB' --quiet restore --tenant '$TENANT' --backup '$BACKUP' --db '$NAME' --repo '$REPO' --into '$P/live.db' --safety-backup full" "$fresh"
  measure tenant_dry_run "" "'$LB' --quiet restore --tenant '$TENANT' --backup '$BACKUP' --db '$NAME' --repo '$REPO' --into '$P/live.db' --dry-run" "$fresh"
  "$LB" restore --tenant "$TENANT" --backup "$BACKUP" --db "$NAME" --repo "$REPO" --into "$P/live.db" --dry-run 2>/dev/null \
    | grep -E "full scan|would (delete|insert)" > "$P/tenant-plan.txt" || true
  echo "$PROFILE tenant plan:" >&2; cat "$P/tenant-plan.txt" >&2
  rm -f "$P/damaged.db" "$P/live.db" "$P/restored.db" "$P/unzstd.db" "$P/copy.db" "$P/copy.db.zst" "$P/dump.sql.zst"
done

python3 "$REPORT" "$OUT"
