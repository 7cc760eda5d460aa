#!/usr/bin/env bash
# Restore to a point (issue 14): a ~SIZE_MB database replicated through one hour of changes at
# 200 tx/s, then `restore --at latest` against a plain restore of the generation's snapshot
# (`restore --to`, the same fetch, checks and placement), before and after `lifeboat compact`.
# Target: restore --at latest <= 2x the plain restore.
#
# The hour is generated faster than real time, every duration scaled down by SCALE (default
# 10): the writer commits 200*SCALE tx/s for 3600/SCALE s, in bursts of 200 every 1000/SCALE ms
# (a scaled second), the replicator syncs every 1000/SCALE ms (so a segment holds about a
# second's 200 transactions, as in real time; the replicator ships again at once when commits
# arrive while it uploads, as it does in real time too), and
# the compaction windows are 60/SCALE s and 3600/SCALE s (the default 1 min and 1 h). What a
# restore reads is then what it reads after a real hour: the snapshot, the hour's segments (or
# the compacted windows and the last window's segments). Commit times are the scaled ones.
#
# Two data shapes (bench/replicate_writer.py): random (a balance update on a random account and
# a ledger append per transaction: pages all over the file) and append (one event appended,
# an index on its tenant). Each restored database is compared with the source (sqldiff).
#   SIZE_MB=200 SHAPES="random append" SCALE=10 TX=720000 REPEAT=3 [LIFEBOAT_BIN=…] bench/replicate_restore.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB="${SIZE_MB:-200}"; SHAPES="${SHAPES:-random append}"; SCALE="${SCALE:-10}"
TX="${TX:-720000}"; REPEAT="${REPEAT:-3}"
OUT="${BENCH_DIR:-bench/out-replicate}"
for tool in sqlite3 sqldiff python3; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is required" >&2; exit 1; }
done
# LIFEBOAT_BIN: a lifeboat binary built already (else this checkout's, built in release).
if [ -z "${LIFEBOAT_BIN:-}" ]; then
  touch crates/lifeboat-cli/src/main.rs
  cargo build --release --quiet -p lifeboat-cli
  LIFEBOAT_BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/lifeboat"
fi
# REUSE=1: keep the databases and replicated hours of an earlier run in BENCH_DIR (their
# compacted segments removed, so this binary compacts again) and measure again.
if [ "${REUSE:-0}" = 1 ]; then
  mkdir -p "$OUT/bin"
else
  rm -rf "$OUT" && mkdir -p "$OUT/bin"
fi
OUT="$(cd "$OUT" && pwd)"
cp "$LIFEBOAT_BIN" "$OUT/bin/lifeboat"
LB="$OUT/bin/lifeboat"
M="python3 $PWD/bench/measure.py"
W="python3 $PWD/bench/replicate_writer.py"
RATE=$((200 * SCALE)); SYNC_MS=$((1000 / SCALE)); L1=$((60 / SCALE)); L2=$((3600 / SCALE))
if [ "${REUSE:-0}" = 1 ] && [ -f "$OUT/times" ]; then mv "$OUT/times" "$OUT/times.before"; fi
: > "$OUT/times"

measure() { # shape name output command: REPEAT runs, the output removed first, untimed
  local i r
  for i in $(seq "$REPEAT"); do
    rm -f "$3"
    sync; sleep 1
    r=$($M "$4")
    printf '%s %s %s\n' "$1" "$2" "$r" >> "$OUT/times"
  done
}

same() { # a b: the same database, or fail
  local d
  d=$(sqldiff "$1" "$2" | head -c 300)
  [ -z "$d" ] || { echo "bench: $2 differs from $1: $d" >&2; exit 1; }
}

for shape in $SHAPES; do
  D="$OUT/$shape"
  if [ "${REUSE:-0}" = 1 ] && [ -d "$D/repo" ]; then
    cd "$D"
    rm -f repo/"$shape"/generations/*/segments/*.L*.seg.zst
    echo "== $shape: reusing $(ls repo/"$shape"/generations/*/segments | wc -l) segments" >&2
  else
  mkdir -p "$D"; cd "$D"
  echo "== $shape: making a ${SIZE_MB} MB database" >&2
  $W make --shape "$shape" --out "$shape.db" --size "$SIZE_MB"
  cat > lifeboat.toml <<TOML
[repository]
url = "file://./repo"

[replication]
compact_windows = ["${L1}s", "${L2}s"]

[[database]]
name = "$shape"
path = "$shape.db"
TOML
  "$LB" replicate --db "$shape" --sync-interval "${SYNC_MS}ms" > replicate.log 2>&1 &
  REP=$!
  until ls repo/"$shape"/generations/*/generation.json >/dev/null 2>&1; do sleep 0.2; done
  echo "== $shape: $TX transactions at $RATE tx/s, shipped every ${SYNC_MS} ms" >&2
  $W write --shape "$shape" --db "$shape.db" --tx "$TX" --rate "$RATE" --burst 200 | tee writer.log >&2
  sleep 2
  kill -TERM "$REP"; wait "$REP"
  fi
  SEGS=$(ls repo/"$shape"/generations/*/segments | wc -l)
  SEGBYTES=$(du -sb repo/"$shape"/generations | cut -f1)
  printf '%s segments %s %s\n' "$shape" "$SEGS" "$SEGBYTES" >> "$OUT/times"
  printf '%s dbsize %s\n' "$shape" "$(stat -c %s "$shape.db")" >> "$OUT/times"
  measure "$shape" plain plain.db "$LB restore --db $shape --to plain.db > /dev/null"
  measure "$shape" pitr_fine pitr.db "$LB restore --db $shape --at latest --to pitr.db > /dev/null"
  same "$shape.db" pitr.db
  r=$($M "$LB compact --db $shape > compact.log")
  printf '%s compact %s\n' "$shape" "$r" >> "$OUT/times"
  cat compact.log >&2
  CSEGS=$(ls repo/"$shape"/generations/*/segments | grep -c '\.L[0-9]' || true)
  printf '%s compacted %s %s\n' "$shape" "$CSEGS" "$(du -sb repo/"$shape"/generations | cut -f1)" >> "$OUT/times"
  measure "$shape" pitr_compacted pitr.db "$LB restore --db $shape --at latest --to pitr.db > /dev/null"
  same "$shape.db" pitr.db
  rm -f pitr-json.db
  "$LB" --json restore --db "$shape" --at latest --to pitr-json.db > restore.json
  r=$($M "$LB verify --db $shape > verify.log")
  printf '%s verify_chain %s\n' "$shape" "$r" >> "$OUT/times"
  cd - >/dev/null
done

python3 - "$OUT/times" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
shapes = []
t = {}
for r in rows:
    if r[0] not in shapes:
        shapes.append(r[0])
    t.setdefault((r[0], r[1]), []).append(r[2:])
print("| shape | segments | plain restore | --at latest, shipped segments | compact | compacted segments | --at latest, compacted | ratio before | ratio after | peak RSS (restore) |")
print("|---|---|---|---|---|---|---|---|---|---|")
for s in shapes:
    med = lambda k: statistics.median(float(x[0]) for x in t[(s, k)])
    rss = max(float(x[1]) for k in ("pitr_fine", "pitr_compacted") for x in t[(s, k)])
    segs = t[(s, "segments")][0]
    comp = t[(s, "compacted")][0]
    p, f, c = med("plain"), med("pitr_fine"), med("pitr_compacted")
    print(f"| {s} ({int(t[(s, 'dbsize')][0][0]) / 1e6:.0f} MB) | {segs[0]} ({int(segs[1]) / 1e6:.0f} MB) | {p:.2f} s | {f:.2f} s | {float(t[(s, 'compact')][0][0]):.1f} s | {comp[0]} | {c:.2f} s | {f / p:.2f}x | {c / p:.2f}x | {rss:.0f} MB |")
PY
