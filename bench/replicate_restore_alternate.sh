#!/usr/bin/env bash
# Restore to a point, two lifeboat binaries alternating on ONE compacted repository (the hours
# `replicate_restore.sh` made, in its BENCH_DIR): a copy of a shape's repository is compacted
# once by A, then each round runs A's plain restore and `--at latest`, then B's; medians of wall
# time and of user+system CPU, and each binary's ratio. Steadier on a noisy machine than
# `replicate_restore_ab.sh`, where each binary compacts its own copy.
#   A=old/lifeboat B=new/lifeboat [BENCH_DIR=bench/out-replicate] [SHAPE=append] [REPEAT=10] \
#     bench/replicate_restore_alternate.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="$(cd "${BENCH_DIR:-bench/out-replicate}" && pwd)"
SHAPE="${SHAPE:-append}"; REPEAT="${REPEAT:-10}"
d="$OUT/$SHAPE-alt"
rm -rf "$d" && mkdir -p "$d"
cp -al "$OUT/$SHAPE/repo" "$d/repo"
cp "$OUT/$SHAPE/lifeboat.toml" "$d/"
rm -f "$d"/repo/"$SHAPE"/generations/*/segments/*.L*.seg.zst
cd "$d"
"$A" compact --db "$SHAPE" > compact.log
for i in $(seq "$REPEAT"); do
  for v in A B; do
    bin="${!v}"
    rm -f p.db q.db; sync; sleep 0.5
    /usr/bin/time -f "$v pitr %e %U %S" "$bin" restore --db "$SHAPE" --at latest --to p.db > /dev/null
    sync; sleep 0.5
    /usr/bin/time -f "$v plain %e %U %S" "$bin" restore --db "$SHAPE" --to q.db > /dev/null
    s=$(sqldiff "$OUT/$SHAPE/$SHAPE.db" p.db | head -c 300)
    [ -z "$s" ] || { echo "bench: $v's restore differs: $s" >&2; exit 1; }
  done
done 2>&1 | python3 -c "
import sys, statistics
t = {}
for l in sys.stdin:
    v, k, e, u, s = l.split()
    t.setdefault((v, k), []).append((float(e), float(u) + float(s)))
med = lambda v, k, i: statistics.median(x[i] for x in t[(v, k)])
print('| binary | plain restore | --at latest | ratio | CPU, plain / at latest |')
print('|---|---|---|---|---|')
for v in ('A', 'B'):
    print(f'| {v} | {med(v, \"plain\", 0):.3f} s | {med(v, \"pitr\", 0):.3f} s | {med(v, \"pitr\", 0) / med(v, \"plain\", 0):.2f}x | {med(v, \"plain\", 1):.3f} / {med(v, \"pitr\", 1):.3f} s |')
"
[ "${KEEP:-0}" = 1 ] || rm -rf "$d"
