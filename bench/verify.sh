#!/usr/bin/env bash
# Verification benchmarks (issue 13), each target beside its peer in the same run:
#   restore    A restore-test (`lifeboat verify ID`: download into scratch, sha256 of the stored
#              bytes and of the image, integrity_check, foreign_key_check, row counts, schema
#              hash) against a plain restore of the same backup (`lifeboat restore --to`:
#              durable, quick_check); target <= 1.5x. The peer's plain path, for information:
#              `zstd -d` + `sqlite3 PRAGMA integrity_check`. Then where the time goes: each part
#              of a restore-test timed alone with the command-line tools on the same files.
#              On the ~SIZE_MB databases of PROFILES (as bench/run.sh builds them). Also a
#              backup with its restore-test (the default) beside one with --no-verify.
#   catalogue  `lifeboat verify --all --catalogue` of N backups on S3 (s3s-fs), each with its
#              verify record as `verify_after_backup` writes one; target < 10 s. Beside it the
#              same history without records, a bare paged S3 LIST of the prefix (the floor), and
#              `restic check` (no --read-data) against lifeboat at PEER_N, where making restic
#              snapshots one by one is practical.
#   PARTS="restore catalogue" SIZE_MB=800 PROFILES="demo saas" REPEAT=3 N=10000 PEER_N=1000
set -euo pipefail
cd "$(dirname "$0")/.."
PARTS="${PARTS:-restore catalogue}"
SIZE_MB="${SIZE_MB:-800}"; PROFILES="${PROFILES:-demo saas}"; REPEAT="${REPEAT:-3}"
N="${N:-10000}"; PEER_N="${PEER_N:-1000}"
S3S_FS="${LIFEBOAT_S3S_FS:-$HOME/.cache/lifeboat-test-tools/bin/s3s-fs}"
OUT="${BENCH_DIR:-bench/out-verify}"
for tool in sqlite3 zstd python3 sha256sum curl; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is required" >&2; exit 1; }
done
# Relinked, so the binaries are this checkout's even in a target directory shared with others.
touch crates/lifeboat-cli/src/main.rs crates/lifeboat/examples/plant_backups.rs
cargo build --release --quiet -p lifeboat-cli
cargo build --release --quiet -p lifeboat --example plant_backups
T="${CARGO_TARGET_DIR:-$PWD/target}"
rm -rf "$OUT" && mkdir -p "$OUT/bin" && OUT="$(cd "$OUT" && pwd)"
# Copies, so a build in a shared target directory cannot swap the binaries mid-run.
cp "$T/release/lifeboat" "$T/release/examples/plant_backups" "$OUT/bin/"
LB="$OUT/bin/lifeboat"; PLANT="$OUT/bin/plant_backups"
M="python3 $PWD/bench/measure.py"
GEN_SAAS="$PWD/bench/gen_saas.py"
export TZ=UTC
: > "$OUT/times"

measure() { # part name outputs command [setup]: $REPEAT runs (outputs removed and setup run
  # first, untimed; then a sync and a pause, so no step pays for another's writeback)
  local i r
  for i in $(seq "$REPEAT"); do
    rm -f $3
    if [ -n "${5:-}" ]; then eval "$5"; fi
    sync
    sleep 1
    r=$($M "$4")
    printf '%s %s %s\n' "$1" "$2" "$r" >> "$OUT/times"
    echo "  $1 $2 #$i: $r (s, MB)" >&2
  done
}

restore_part() {
  local PROFILE P DB NAME REPO BACKUP STORED IMG COUNTS
  for PROFILE in $PROFILES; do
    P="$OUT/$PROFILE"
    echo "generating the ~${SIZE_MB} MB $PROFILE database..." >&2
    case "$PROFILE" in
      demo) "$LB" demo --generate-only --size "$SIZE_MB" --dir "$P" --quiet
            DB="$P/studio.db"; NAME=studio ;;
      saas) mkdir -p "$P"; DB="$P/saas.db"; NAME=saas
            python3 "$GEN_SAAS" --out "$DB" --size "$SIZE_MB" >/dev/null ;;
      *) echo "bench: unknown profile $PROFILE" >&2; exit 1 ;;
    esac
    mkdir -p "$P/scratch"
    echo "$PROFILE size $(stat -c %s "$DB")" >> "$OUT/info"
    REPO="file://$P/repo"
    # The backup both sides restore; --no-verify, so its restore-test is the timed one.
    "$LB" --quiet backup --no-verify --db "$DB" --repo "$REPO" --scratch-dir "$P/scratch"
    BACKUP=$("$LB" --json list --db "$NAME" --repo "$REPO" | python3 -c 'import json,sys; print(json.load(sys.stdin)["databases"][0]["backups"][0]["id"])')
    STORED="$P/repo/$NAME/backups/$BACKUP.sqlite.zst"
    [ -f "$STORED" ] || { echo "bench: $STORED is missing" >&2; exit 1; }
    echo "$PROFILE stored $(stat -c %s "$STORED")" >> "$OUT/info"
    # The peer's own compressed image of the same database (bench/run.sh's backup_zstd).
    sqlite3 "$DB" ".backup '$P/copy.db'" && zstd -1 -T2 -q "$P/copy.db" -o "$P/copy.db.zst" && rm "$P/copy.db"

    # What verify_after_backup (the default) costs a backup; bench/run.sh has the same pair.
    cat "$DB" > /dev/null
    measure "$PROFILE" lb_backup_no_verify "" \
      "'$LB' --quiet backup --no-verify --db '$DB' --repo '$REPO' --scratch-dir '$P/scratch'"
    measure "$PROFILE" lb_backup_default "" \
      "'$LB' --quiet backup --db '$DB' --repo '$REPO' --scratch-dir '$P/scratch'"
    measure "$PROFILE" lb_restore "$P/restored.db" \
      "'$LB' --quiet restore --db '$NAME' --backup '$BACKUP' --repo '$REPO' --to '$P/restored.db'"
    measure "$PROFILE" lb_restore_test "" \
      "'$LB' --quiet verify '$BACKUP' --db '$NAME' --repo '$REPO' --scratch-dir '$P/scratch'"
    measure "$PROFILE" peer_integrity "$P/unzstd.db" \
      "zstd -d -q '$P/copy.db.zst' -o '$P/unzstd.db' && sqlite3 '$P/unzstd.db' 'PRAGMA integrity_check' | grep -qx ok"

    # Where a restore-test's time goes: each of its parts alone, on the same files (SQLite's
    # command-line tool is 3.40, lifeboat's bundled one newer: close, not identical).
    rm -f "$P/restored.db"
    "$LB" --quiet restore --db "$NAME" --backup "$BACKUP" --repo "$REPO" --to "$P/restored.db"
    IMG="$P/restored.db"
    COUNTS=$(sqlite3 "$IMG" "SELECT group_concat('SELECT count(*) FROM \"' || name || '\"', ' UNION ALL ') FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
    cat "$IMG" > /dev/null
    measure "$PROFILE" part_unzstd "" "zstd -d -q -c '$STORED' > /dev/null"
    measure "$PROFILE" part_sha_stored "" "sha256sum '$STORED' > /dev/null"
    measure "$PROFILE" part_sha_image "" "sha256sum '$IMG' > /dev/null"
    measure "$PROFILE" part_quick_check "" "sqlite3 '$IMG' 'PRAGMA quick_check' | grep -qx ok"
    measure "$PROFILE" part_integrity_check "" "sqlite3 '$IMG' 'PRAGMA integrity_check' | grep -qx ok"
    # What would make integrity_check cheaper: SQLite reading through mmap with a large page
    # cache (the image is in the page cache anyway), and the check split by table across both
    # cores (`integrity_check(T)` checks T and its indexes; the page accounting of the whole
    # file is then left to quick_check, which runs beside it).
    measure "$PROFILE" part_integrity_check_mmap "" "sqlite3 '$IMG' 'PRAGMA mmap_size = 4294967296' 'PRAGMA cache_size = -262144' 'PRAGMA integrity_check' | grep -qx ok"
    measure "$PROFILE" part_integrity_check_split "" "'$PWD/bench/integrity_split.sh' '$IMG' 2"
    measure "$PROFILE" part_foreign_key_check "" "sqlite3 '$IMG' 'PRAGMA foreign_key_check' > /dev/null"
    measure "$PROFILE" part_row_counts "" "sqlite3 '$IMG' '$COUNTS' > /dev/null"
    rm -rf "$P/restored.db" "$P/unzstd.db" "$P/copy.db.zst" "$P/repo" "$DB" "$DB-wal" "$DB-shm"
  done
}

S3PID=""
stop_s3() { if [ -n "$S3PID" ]; then kill "$S3PID"; wait "$S3PID" 2>/dev/null || true; S3PID=""; fi; }
trap stop_s3 EXIT

catalogue_part() {
  local S3R flags="${CATALOGUE_FLAGS:---all --catalogue}"
  [ -x "$S3S_FS" ] || { echo "bench: $S3S_FS is missing: run scripts/test.sh, which builds it" >&2; exit 1; }
  export AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=bench-key AWS_SECRET_ACCESS_KEY=bench-secret-0123456789
  local port
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
  mkdir -p "$OUT/s3/lb-cat" "$OUT/s3/lb-bare" "$OUT/s3/lb-peer" "$OUT/s3/restic-peer"
  "$S3S_FS" --host 127.0.0.1 --port "$port" --access-key "$AWS_ACCESS_KEY_ID" \
    --secret-key "$AWS_SECRET_ACCESS_KEY" "$OUT/s3" >/dev/null 2>&1 &
  S3PID=$!
  until (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null; do sleep 0.05; done
  local DB="$OUT/db.sqlite" END="2026-11-30T18:00:00Z"
  sqlite3 "$DB" "CREATE TABLE t(x); INSERT INTO t VALUES (1), (2);"
  echo "planting $N backups with verify records, $N without, $PEER_N with..." >&2
  plant() { # repo count step_hours [--no-verify]
    "$LB" --quiet backup ${4:-} --db "$DB" --repo "$1"
    "$PLANT" "$1" db "$2" "$3" "$END" >/dev/null
  }
  plant s3://lb-cat/r "$N" 6
  plant s3://lb-bare/r "$N" 6 --no-verify
  plant s3://lb-peer/r "$PEER_N" 24
  ls "$OUT/s3/lb-cat/r/db/verify/records" | wc -l | sed 's/^/catalogue records /' >> "$OUT/info"
  ls "$OUT/s3/lb-cat/r/db/backups" | wc -l | sed 's/^/catalogue objects /' >> "$OUT/info"
  # One real record, for the report.
  cat "$(find "$OUT/s3/lb-cat/r/db/verify/records" -name '*.json' -print -quit)" > "$OUT/record.json"
  # Everything verify reports (and its exit: 6 is a gap or damage, 0 or 1 otherwise).
  local rc=0
  "$LB" --json verify --db db $flags --repo s3://lb-cat/r > "$OUT/catalogue.json" || rc=$?
  echo "catalogue exit $rc" >> "$OUT/info"
  python3 - "$OUT/catalogue.json" >> "$OUT/info" <<'EOF'
import collections, json, sys
# The report, then (on a non-zero exit) the error as a second document.
text, docs, dec = open(sys.argv[1]).read(), [], json.JSONDecoder()
while text.strip():
    d, i = dec.raw_decode(text.strip())
    docs.append(d)
    text = text.strip()[i:]
r = docs[0]
kinds = collections.Counter(f["finding"] for d in r["databases"] for f in d["findings"])
days = sorted(str(f["day"]) for d in r["databases"] for f in d["findings"] if f["finding"] == "gap")
print("catalogue findings", dict(kinds) or "none", "gap days", " ".join(days) or "none",
      "verified", r.get("verified"), "failed", r.get("failed"),
      "error", docs[1]["error"] if len(docs) > 1 else "none")
EOF
  # Exit 6 for the gaps since the history's end (the dates are fixed) is the expected answer.
  local ok='; rc=$?; [ $rc -eq 0 ] || [ $rc -eq 1 ] || [ $rc -eq 6 ]'
  measure catalogue "lb_catalogue_$N" "" "'$LB' --quiet verify --db db $flags --repo s3://lb-cat/r 2>/dev/null$ok"
  measure catalogue "lb_catalogue_${N}_no_records" "" "'$LB' --quiet verify --db db $flags --repo s3://lb-bare/r 2>/dev/null$ok"
  # The floor: every page of the listing (1,000 keys a page, as S3), nothing else.
  measure catalogue "s3_list_$N" "" "python3 '$PWD/bench/s3_list.py' lb-cat r/db/backups/ > '$OUT/listed'"
  echo "listed objects $(cat "$OUT/listed")" >> "$OUT/info"
  measure catalogue "lb_catalogue_$PEER_N" "" "'$LB' --quiet verify --db db $flags --repo s3://lb-peer/r 2>/dev/null$ok"
  if command -v restic >/dev/null; then
    export RESTIC_PASSWORD=bench
    echo "making $PEER_N restic snapshots..." >&2
    restic -q -r "$OUT/restic" init >/dev/null
    seq 0 $((PEER_N - 1)) | xargs -P 2 -I{} sh -c \
      'restic -q -r "$1" backup --host bench --time "$(date -u -d "2026-11-30 18:00:00 UTC - {} days" "+%Y-%m-%d %H:%M:%S")" "$2"' \
      _ "$OUT/restic" "$DB"
    stop_s3
    rm -rf "$OUT/s3/restic-peer/r" && cp -a "$OUT/restic" "$OUT/s3/restic-peer/r"
    "$S3S_FS" --host 127.0.0.1 --port "$port" --access-key "$AWS_ACCESS_KEY_ID" \
      --secret-key "$AWS_SECRET_ACCESS_KEY" "$OUT/s3" >/dev/null 2>&1 &
    S3PID=$!
    until (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null; do sleep 0.05; done
    echo "restic objects $(find "$OUT/restic" -type f | wc -l)" >> "$OUT/info"
    S3R="s3:$AWS_ENDPOINT_URL/restic-peer/r"
    # restic lists with an empty delimiter, which s3s-fs 0.14.1 takes as a real one: on it a
    # check does all its work but reports every pack missing (exit 1). Timed anyway, exit 1
    # accepted and its verdict kept; the local check is the clean peer.
    local rrc=0
    restic -r "$S3R" check --no-cache > "$OUT/restic-s3-check.txt" 2>&1 || rrc=$?
    echo "restic check on s3: exit $rrc, $(grep -c 'does not exist' "$OUT/restic-s3-check.txt" || true) packs reported missing" >> "$OUT/info"
    measure catalogue "restic_check_s3_$PEER_N" "" "restic -q -r '$S3R' check --no-cache > /dev/null 2>&1; rc=\$?; [ \$rc -le 1 ]"
    measure catalogue "restic_check_local_$PEER_N" "" "restic -q -r '$OUT/restic' check --no-cache > /dev/null"
    measure catalogue "lb_catalogue_local_$PEER_N" "" "'$LB' --quiet verify --db db $flags --repo 'file://$OUT/local' 2>/dev/null$ok" \
      "[ -d '$OUT/local' ] || { mkdir -p '$OUT/local'; '$LB' --quiet backup --db '$DB' --repo 'file://$OUT/local'; '$PLANT' 'file://$OUT/local' db '$PEER_N' 24 '$END' >/dev/null; }"
  else
    echo "restic is not installed: no restic check side by side" >> "$OUT/info"
  fi
  stop_s3
}

for part in $PARTS; do "${part}_part"; done
python3 "$PWD/bench/verify_report.py" "$OUT" "$N" "$PEER_N"
