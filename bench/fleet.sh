#!/usr/bin/env bash
# Fleet benchmark (issue 12): N small SQLite databases (50–500 KB, two shapes) found by one
# `[[database]] glob`. Times `lifeboat daemon --once` after 5% of them changed (target < 10 s,
# peak RSS < 150 MB) and when nothing changed (target < 2 s), beside the peer a cron script
# would be: `sqlite3 .backup` + `zstd` of every file. Then an idle daemon's CPU over IDLE_SECS
# (target < 1% of one core).
#   bench/fleet.sh            (N=1000, IDLE_SECS=300, LB=target/release/lifeboat)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${N:-1000}"; IDLE_SECS="${IDLE_SECS:-300}"
LB="$(realpath "${LB:-target/release/lifeboat}")"
OUT="${BENCH_DIR:-bench/out-fleet}"
rm -rf "$OUT" && mkdir -p "$OUT/tenants" && OUT="$(cd "$OUT" && pwd)"
M="python3 $PWD/bench/measure.py"

python3 - "$OUT/tenants" "$N" <<'PY'
import os, random, sqlite3, sys
d, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(12)
for i in range(n):
    c = sqlite3.connect(os.path.join(d, f"tenant-{i:04d}.db"))
    target = rng.randint(50, 500) * 1024
    if i % 2:   # many small rows with an index, WAL mode
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("CREATE TABLE bookings(id INTEGER PRIMARY KEY, member TEXT, at TEXT, note TEXT)")
        c.execute("CREATE INDEX bookings_member ON bookings(member)")
        rows = target // 60
        c.executemany("INSERT INTO bookings(member, at, note) VALUES (?,?,?)",
            ((f"m{rng.randint(1, 500)}", f"2026-{rng.randint(1,12):02d}-{rng.randint(1,28):02d}", "x" * rng.randint(5, 30)) for _ in range(rows)))
    else:       # few wide rows with blobs, rollback journal
        c.execute("CREATE TABLE docs(id INTEGER PRIMARY KEY, name TEXT, body BLOB)")
        rows = max(1, target // 4000)
        c.executemany("INSERT INTO docs(name, body) VALUES (?,?)",
            ((f"doc{j}", os.urandom(2000) + b"a" * 2000) for j in range(rows)))
    c.commit(); c.close()
PY
du -sh "$OUT/tenants" | sed 's/^/fleet size: /'

cat > "$OUT/lifeboat.toml" <<TOML
[repository]
url = "file://$OUT/repo"
[[database]]
name = "tenants"
glob = "$OUT/tenants/*.db"
TOML
cd "$OUT"
echo "first run (every database backed up): $($M "$LB daemon --once --quiet 2>/dev/null")"

python3 - "$OUT/tenants" "$N" <<'PY'
import os, sqlite3, sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(0, n, 20):   # 5%
    c = sqlite3.connect(os.path.join(d, f"tenant-{i:04d}.db"))
    t = "bookings" if i % 2 else "docs"
    if t == "bookings":
        c.execute("INSERT INTO bookings(member, at, note) VALUES ('new', '2026-12-06', 'changed')")
    else:
        c.execute("INSERT INTO docs(name, body) VALUES ('new', x'00')")
    c.commit(); c.close()
PY
read -r changed_s changed_rss <<<"$($M "$LB daemon --once 2>$OUT/changed.log")"
backed=$(grep -c 'outcome="ok"' "$OUT/changed.log" || true)
skipped=$(grep -c 'outcome="skipped"' "$OUT/changed.log" || true)
read -r same_s same_rss <<<"$($M "$LB daemon --once 2>$OUT/same.log")"
same_backed=$(grep -c 'outcome="ok"' "$OUT/same.log" || true)

mkdir -p "$OUT/peer"
read -r peer_s peer_rss <<<"$($M "for f in $OUT/tenants/*.db; do b=\$(basename \$f); sqlite3 \$f \".backup $OUT/peer/\$b\" && zstd -q -f --rm $OUT/peer/\$b; done")"

printf '\n%-44s %9s %9s %s\n' "step" "seconds" "RSS MB" "target"
printf '%-44s %9s %9s %s\n' "5% changed ($backed backed up, $skipped skipped)" "$changed_s" "$changed_rss" "< 10 s, < 150 MB"
printf '%-44s %9s %9s %s\n' "nothing changed ($same_backed backed up)" "$same_s" "$same_rss" "< 2 s"
printf '%-44s %9s %9s %s\n' "peer: sqlite3 .backup + zstd, every file" "$peer_s" "$peer_rss" ""
python3 -c "print(f'ratio 5%-changed run / peer: {$changed_s/$peer_s:.2f}x; nothing-changed / peer: {$same_s/$peer_s:.2f}x')"

if [ "$IDLE_SECS" -gt 0 ]; then
  "$LB" daemon 2>"$OUT/idle.log" &
  pid=$!
  sleep 20   # start-up reads every database's state; measure the idle time after it
  t0=$(awk '{print $14+$15}' /proc/$pid/stat); s0=$(date +%s.%N)
  sleep "$IDLE_SECS"
  t1=$(awk '{print $14+$15}' /proc/$pid/stat); s1=$(date +%s.%N)
  rss=$(awk '/VmHWM/ {print $2/1024}' /proc/$pid/status)
  kill -TERM $pid; wait $pid || true
  python3 -c "
ticks=$t1-$t0; hz=$(getconf CLK_TCK); wall=$s1-$s0
print(f'idle daemon, {$N} databases, {wall:.0f} s: {100*ticks/hz/wall:.2f}% of one core (target < 1%), peak RSS {$rss:.0f} MB')"
fi
