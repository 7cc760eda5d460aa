#!/usr/bin/env bash
# A/B: two lifeboat binaries on the same databases, their runs interleaved (A, B, A, B …) so the
# disk's mood falls on both alike. For a change that should not move any time (a refactor):
#   bench/ab.sh OLD_BINARY NEW_BINARY      (SIZE_MB=…, REPEAT=…, PROFILES="demo saas")
# Prints per step the median seconds of each and NEW/OLD.
set -euo pipefail
cd "$(dirname "$0")/.."
A="$(realpath "$1")"; B="$(realpath "$2")"
SIZE_MB="${SIZE_MB:-400}"; REPEAT="${REPEAT:-5}"; PROFILES="${PROFILES:-demo saas}"
OUT="${BENCH_DIR:-bench/out-ab}"
rm -rf "$OUT" && mkdir -p "$OUT" && OUT="$(cd "$OUT" && pwd)"
M="python3 $PWD/bench/measure.py"
: > "$OUT/times"

step() { # name command-with-$LB [setup]
  local i lb
  for i in $(seq "$REPEAT"); do
    for lb in A B; do
      export LB="${!lb}"
      if [ -n "${3:-}" ]; then eval "$3"; fi
      sync; sleep 0.5
      echo "$PROFILE $1 $lb $($M "$2")" >> "$OUT/times"
    done
  done
}

for PROFILE in $PROFILES; do
  P="$OUT/$PROFILE"
  case "$PROFILE" in
    demo)
      "$B" demo --generate-only --size "$SIZE_MB" --dir "$P" --quiet
      DB="$P/studio.db"; NAME=studio
      TENANT=$(sqlite3 "$DB" "SELECT id FROM tenants WHERE slug IN ('studio-20', 'studio-3') ORDER BY slug = 'studio-20' DESC LIMIT 1")
      DAMAGE="DELETE FROM bookings WHERE rowid % 2 = 0 AND class_id IN (SELECT id FROM classes WHERE tenant_id = '$TENANT')" ;;
    saas)
      mkdir -p "$P"; DB="$P/saas.db"; NAME=saas
      python3 bench/gen_saas.py --out "$DB" --size "$SIZE_MB" >/dev/null
      TENANT=$(python3 bench/gen_saas.py --print-mid-tenant "$DB")
      DAMAGE="DELETE FROM bookings WHERE tenant_id = '$TENANT' AND rowid % 6 = 0" ;;
  esac
  mkdir -p "$P/scratch"; cat "$DB" > /dev/null
  REPO="file://$P/repo"
  step backup "\"\$LB\" --quiet backup --db '$DB' --repo '$REPO' --scratch-dir '$P/scratch'"
  BACKUP=$("$B" --json list --db "$NAME" --repo "$REPO" | python3 -c 'import json,sys; print(json.load(sys.stdin)["databases"][0]["backups"][0]["id"])')
  step restore "\"\$LB\" --quiet restore --db '$NAME' --backup '$BACKUP' --repo '$REPO' --to '$P/restored.db'" "rm -f '$P/restored.db'"
  step dump "\"\$LB\" --quiet dump --db '$DB' --out '$P/lb.sql'" "rm -f '$P/lb.sql'"
  step import "\"\$LB\" --quiet import '$P/lb.sql' --to '$P/imported.db'" "rm -f '$P/imported.db'"
  cp "$DB" "$P/damaged.db"; sqlite3 "$P/damaged.db" "$DAMAGE"
  step tenant_restore "\"\$LB\" --quiet restore --tenant '$TENANT' --backup '$BACKUP' --db '$NAME' --repo '$REPO' --into '$P/live.db'" \
    "rm -f '$P/live.db-wal' '$P/live.db-shm'; cp '$P/damaged.db' '$P/live.db'"
  rm -f "$P"/*.db "$P/lb.sql"
done

python3 - "$OUT/times" <<'EOF'
import sys, statistics, collections
t = collections.defaultdict(list)
for line in open(sys.argv[1]):
    prof, name, lb, secs, _rss = line.split()
    t[(prof, name, lb)].append(float(secs))
print("| profile | step | A (old) median s | B (new) median s | B/A |")
print("|---|---|---|---|---|")
for (prof, name, lb) in sorted(k for k in t if k[2] == "A"):
    a, b = statistics.median(t[(prof, name, "A")]), statistics.median(t[(prof, name, "B")])
    print(f"| {prof} | {name} | {a:.2f} | {b:.2f} | {b / a:.2f} |")
EOF
