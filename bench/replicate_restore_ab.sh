#!/usr/bin/env bash
# Restore to a point, two lifeboat binaries side by side on the hours `replicate_restore.sh`
# made (its BENCH_DIR, REUSE layout): each binary compacts its own hard-linked copy of a shape's
# repository, then plain restores and `restore --at latest` alternate, REPEAT times each, and
# the medians and ratios are printed. Every restored database is compared with the source.
#   A=old/lifeboat B=new/lifeboat [BENCH_DIR=bench/out-replicate] [SHAPES="random append"] \
#     [REPEAT=5] bench/replicate_restore_ab.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="$(cd "${BENCH_DIR:-bench/out-replicate}" && pwd)"
SHAPES="${SHAPES:-random append}"; REPEAT="${REPEAT:-5}"
M="python3 $PWD/bench/measure.py"
: > "$OUT/ab-times"
for shape in $SHAPES; do
  for v in A B; do
    bin="${!v}"; d="$OUT/$shape-$v"
    rm -rf "$d" && mkdir -p "$d"
    cp -al "$OUT/$shape/repo" "$d/repo"
    ln "$OUT/$shape/$shape.db" "$d/$shape.db"
    cp "$OUT/$shape/lifeboat.toml" "$d/"
    rm -f "$d"/repo/"$shape"/generations/*/segments/*.L*.seg.zst
    (cd "$d" && "$bin" compact --db "$shape" > compact.log)
  done
  for i in $(seq "$REPEAT"); do
    for v in A B; do
      bin="${!v}"; cd "$OUT/$shape-$v"
      rm -f plain.db pitr.db; sync; sleep 1
      echo "$shape $v plain $($M "$bin restore --db $shape --to plain.db > /dev/null")" >> "$OUT/ab-times"
      sync; sleep 1
      echo "$shape $v pitr $($M "$bin restore --db $shape --at latest --to pitr.db > /dev/null")" >> "$OUT/ab-times"
      d=$(sqldiff "$shape.db" pitr.db | head -c 300)
      [ -z "$d" ] || { echo "bench: $v's restore of $shape differs: $d" >&2; exit 1; }
      cd - > /dev/null
    done
  done
  [ "${KEEP:-0}" = 1 ] || rm -rf "$OUT/$shape-A" "$OUT/$shape-B"
done
python3 - "$OUT/ab-times" <<'PY'
import statistics, sys
t = {}
for l in open(sys.argv[1]):
    s, v, k, secs = l.split()[:4]
    t.setdefault((s, v, k), []).append(float(secs))
print("| shape | binary | plain restore | --at latest, compacted | ratio |")
print("|---|---|---|---|---|")
for s, v in sorted({(s, v) for s, v, _ in t}):
    p, c = statistics.median(t[(s, v, "plain")]), statistics.median(t[(s, v, "pitr")])
    print(f"| {s} | {v} | {p:.3f} s | {c:.3f} s | {c / p:.2f}x |")
PY
