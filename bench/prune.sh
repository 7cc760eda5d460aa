#!/usr/bin/env bash
# Prune at scale (issue 12's target: 10,000 backups on S3 (s3s-fs) pruned in < 30 s), and restic
# side by side at a size where making restic snapshots one by one is practical:
#   N=10000       backups for the target, one every 6 hours back from 2026-11-30 18:00 (6.8 years)
#   PEER_N=1000   backups and restic snapshots for the side by side, one a day (2.7 years)
#   REPEAT=3      runs of each step, every one on a fresh copy of its repository
#   OLD=BINARY    also time another lifeboat's prune of the PEER_N backups on S3 (before/after)
# Policy for both tools: keep_within 90d, keep_daily 7, keep_monthly 12 (restic's flags of the
# same names, whose rules lifeboat follows).
# Every repository is made once and copied back before each run (a prune deletes): lifeboat's
# by one real backup of a small database copied under N ids (examples/plant_backups), restic's
# by PEER_N `restic backup --time` of the same database into a local repository, which is then
# also copied into the S3 server's bucket (restic's S3 layout is its local one). s3s-fs, the
# server the tests use, is restarted on each copy.
# restic's `--prune` cannot run on s3s-fs: restic lists data/ with an empty delimiter, which
# s3s-fs 0.14.1 takes as a real one (every pack looks missing). So on S3 restic runs `forget`
# (its snapshot records only), and `forget --prune` is compared on a local disk, where lifeboat
# prunes a local repository of the same history.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${N:-10000}"; PEER_N="${PEER_N:-1000}"; REPEAT="${REPEAT:-3}"
S3S_FS="${LIFEBOAT_S3S_FS:-$HOME/.cache/lifeboat-test-tools/bin/s3s-fs}"
OUT="${BENCH_DIR:-bench/out-prune}"
for tool in restic sqlite3 python3; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is required (apt-get install $tool)" >&2; exit 1; }
done
[ -x "$S3S_FS" ] || { echo "bench: $S3S_FS is missing: run scripts/test.sh, which builds it" >&2; exit 1; }
# Relinked, so the binaries are this checkout's even in a target directory shared with other
# checkouts (cargo does not copy a binary it finds fresh over one another checkout built).
touch crates/lifeboat-cli/src/main.rs crates/lifeboat/examples/plant_backups.rs
cargo build --release --quiet -p lifeboat-cli
cargo build --release --quiet -p lifeboat --example plant_backups
T="${CARGO_TARGET_DIR:-$PWD/target}"
rm -rf "$OUT" && mkdir -p "$OUT/bin" && OUT="$(cd "$OUT" && pwd)"
# Copies, so a build in a shared target directory cannot swap the binaries mid-run.
cp "$T/release/lifeboat" "$T/release/examples/plant_backups" "$OUT/bin/"
LB="$OUT/bin/lifeboat"; PLANT="$OUT/bin/plant_backups"
M="python3 $PWD/bench/measure.py"
END="2026-11-30T18:00:00Z"
KEEP="--keep-within 90d --keep-daily 7 --keep-monthly 12"
export TZ=UTC RESTIC_PASSWORD=bench AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=bench-key AWS_SECRET_ACCESS_KEY=bench-secret-0123456789
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export AWS_ENDPOINT_URL="http://127.0.0.1:$PORT"
S3PID=""
start_s3() {
  "$S3S_FS" --host 127.0.0.1 --port "$PORT" --access-key "$AWS_ACCESS_KEY_ID" \
    --secret-key "$AWS_SECRET_ACCESS_KEY" "$OUT/s3" >/dev/null 2>&1 &
  S3PID=$!
  until (echo > "/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; do sleep 0.05; done
}
stop_s3() { if [ -n "$S3PID" ]; then kill "$S3PID"; wait "$S3PID" 2>/dev/null || true; S3PID=""; fi; }
trap stop_s3 EXIT
printf '[retention]\nkeep_within = "90d"\nkeep_daily = 7\nkeep_monthly = 12\n' > "$OUT/lifeboat.toml"

echo "making the repositories ($N backups; $PEER_N backups and $PEER_N restic snapshots)..." >&2
mkdir -p "$OUT/s3/lb-target" "$OUT/s3/lb-peer" "$OUT/s3/restic-peer" "$OUT/local/lb"
DB="$OUT/db.sqlite"
sqlite3 "$DB" "CREATE TABLE t(x); INSERT INTO t VALUES (1), (2);"
start_s3
plant() { # repo count step_hours
  "$LB" --quiet backup --db "$DB" --repo "$1"
  "$PLANT" "$1" db "$2" "$3" "$END" >/dev/null
}
plant s3://lb-target/r "$N" 6
plant s3://lb-peer/r "$PEER_N" 24
plant "file://$OUT/local/lb" "$PEER_N" 24
stop_s3
restic -q -r "$OUT/local/restic" init >/dev/null
started=$(date +%s)
seq 0 $((PEER_N - 1)) | xargs -P 2 -I{} sh -c \
  'restic -q -r "$1" backup --host bench --time "$(date -u -d "2026-11-30 18:00:00 UTC - {} days" "+%Y-%m-%d %H:%M:%S")" "$2"' \
  _ "$OUT/local/restic" "$DB"
echo "  $PEER_N restic snapshots in $(( $(date +%s) - started )) s" >&2
cp -a "$OUT/local/restic" "$OUT/s3/restic-peer/r"
cp -a "$OUT/s3" "$OUT/s3.made"; cp -a "$OUT/local" "$OUT/local.made"

: > "$OUT/times"
fresh() {
  stop_s3
  rm -rf "$OUT/s3" "$OUT/local"
  cp -a "$OUT/s3.made" "$OUT/s3"; cp -a "$OUT/local.made" "$OUT/local"
  sync; sleep 1  # the copy's writeback would otherwise land on the timed run
  start_s3
}
left() { # what a run kept, from the tool itself
  case "$1" in
    lb) "$LB" --json list --repo "$2" | python3 -c 'import json, sys; print(len(json.load(sys.stdin)["databases"][0]["backups"]))' ;;
    restic) restic -r "$2" snapshots --json | python3 -c 'import json, sys; print(len(json.load(sys.stdin)))' ;;
  esac
}
step() { # name tool repo command
  local i r
  for i in $(seq "$REPEAT"); do
    fresh
    r=$($M "$4")
    k=$(left "$2" "$3")
    echo "$1 $r $k" >> "$OUT/times"
    echo "  $1 #$i: $r (s, MB), kept $k" >&2
  done
}
S3R="s3:$AWS_ENDPOINT_URL/restic-peer/r"
step "lifeboat prune, $N backups, S3" lb s3://lb-target/r \
  "'$LB' --quiet --config '$OUT/lifeboat.toml' --repo s3://lb-target/r prune"
step "lifeboat prune, $PEER_N backups, S3" lb s3://lb-peer/r \
  "'$LB' --quiet --config '$OUT/lifeboat.toml' --repo s3://lb-peer/r prune"
if [ -n "${OLD:-}" ]; then
  cp "$OLD" "$OUT/bin/lifeboat-old"
  step "OLD lifeboat prune, $PEER_N backups, S3" lb s3://lb-peer/r \
    "'$OUT/bin/lifeboat-old' --quiet --config '$OUT/lifeboat.toml' --repo s3://lb-peer/r prune"
fi
step "restic forget, $PEER_N snapshots, S3" restic "$S3R" "restic -q -r '$S3R' forget $KEEP >/dev/null"
step "lifeboat prune, $PEER_N backups, local disk" lb "file://$OUT/local/lb" \
  "'$LB' --quiet --config '$OUT/lifeboat.toml' --repo 'file://$OUT/local/lb' prune"
step "restic forget --prune, $PEER_N snapshots, local disk" restic "$OUT/local/restic" \
  "restic -q -r '$OUT/local/restic' forget $KEEP --prune >/dev/null"
stop_s3

python3 - "$OUT/times" "$N" "$PEER_N" <<'EOF'
import collections, statistics, sys
runs = collections.defaultdict(list)
rss, kept = {}, {}
for line in open(sys.argv[1]):
    *name, secs, mb, left = line.split()
    name = " ".join(name)
    runs[name].append(float(secs))
    rss[name] = max(rss.get(name, 0.0), float(mb))
    kept[name] = left
n, peer = sys.argv[2], sys.argv[3]
med = {k: statistics.median(v) for k, v in runs.items()}
print("| run | median seconds | all runs | peak RSS (MB) | kept |")
print("|---|---|---|---|---|")
for k, v in runs.items():
    print(f"| {k} | {med[k]:.2f} | {', '.join(f'{x:.2f}' for x in v)} | {rss[k]:.0f} | {kept[k]} |")
print()
print("| measure | against | result | target | |")
print("|---|---|---|---|---|")
t = med[f"lifeboat prune, {n} backups, S3"]
print(f"| lifeboat prune, {n} backups, S3 (s3s-fs) | 30 s | {t:.2f} s ({t / 30:.2f}x the limit) | < 30 s | {'met' if t < 30 else 'NOT met'} |")
for a, b in [(f"lifeboat prune, {peer} backups, S3", f"restic forget, {peer} snapshots, S3"),
             (f"lifeboat prune, {peer} backups, local disk", f"restic forget --prune, {peer} snapshots, local disk")]:
    ratio = f"{med[b] / med[a]:.1f}x faster" if med[b] >= med[a] else f"{med[a] / med[b]:.2f}x its time"
    print(f"| {a} | {b} | {ratio} ({med[a]:.2f} s against {med[b]:.2f} s) | (information) | |")
old = f"OLD lifeboat prune, {peer} backups, S3"
if old in med:
    a = f"lifeboat prune, {peer} backups, S3"
    print(f"| {a} | {old} | {med[old] / med[a]:.1f}x faster ({med[a]:.2f} s against {med[old]:.2f} s) | (information) | |")
EOF
