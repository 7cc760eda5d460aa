#!/usr/bin/env bash
# Replication fleet benchmark (issue 14): N replicated WAL databases in one `lifeboat daemon`
# (one `[[database]] glob` with `replicate = true`), idle apart from WRITE_PCT% of them that
# commit once a second each. After the start-up (every database's first generation, its
# scheduled backup, drill and verification), measures over SECS seconds: CPU % of one core
# (utime+stime from /proc/<pid>/stat), RSS (VmRSS at the end, VmHWM the peak), threads and open
# descriptors, the largest lag the daemon publishes, and what it shipped.
# Targets: < 5% of one core, < 200 MB RSS, no thread per database.
#   bench/replicate_fleet.sh      (N=1000, WRITE_PCT=1, SECS=180, LB=target/release/lifeboat)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${N:-1000}"; WRITE_PCT="${WRITE_PCT:-1}"; SECS="${SECS:-180}"
LB="$(realpath "${LB:-target/release/lifeboat}")"
OUT="${BENCH_DIR:-bench/out-replicate-fleet}"
rm -rf "$OUT" && mkdir -p "$OUT/tenants" && OUT="$(cd "$OUT" && pwd)"
WRITERS=$(( (N * WRITE_PCT + 99) / 100 ))

python3 - "$OUT/tenants" "$N" <<'PY'
import os, random, sqlite3, sys
d, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(14)
for i in range(n):
    c = sqlite3.connect(os.path.join(d, f"t{i:05d}.db"))
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("CREATE TABLE bookings(id INTEGER PRIMARY KEY, member TEXT, at TEXT, note TEXT)")
    c.executemany("INSERT INTO bookings(member, at, note) VALUES (?,?,?)",
        ((f"m{rng.randint(1, 500)}", "2026-12-07", "x" * rng.randint(5, 30)) for _ in range(rng.randint(50, 500))))
    c.commit(); c.close()
PY
du -sh "$OUT/tenants" | sed 's/^/fleet: /'

cat > "$OUT/lifeboat.toml" <<TOML
[repository]
url = "file://$OUT/repo"
[daemon]
schedule = "0 0 1 1 *"
[replication]
sync_interval = "1s"
[[database]]
name = "tenants"
glob = "$OUT/tenants/*.db"
replicate = true
TOML
cd "$OUT"
# The scheduled backups and drills a new fleet gets at its first start, done beforehand so they
# do not fall in the window.
"$LB" daemon --once --quiet 2>/dev/null || true
for f in tenants/*.db; do "$LB" --quiet drill --db "$(basename "$f" .db)" >/dev/null 2>&1 || true; done

"$LB" daemon --metrics-addr 127.0.0.1:0 2>"$OUT/daemon.log" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null || true' EXIT
started=$(date +%s.%N)
until [ "$(ls "$OUT/repo" 2>/dev/null | while read -r d; do [ -d "$OUT/repo/$d/generations" ] && echo; done | wc -l)" -ge "$N" ]; do
  sleep 1
  kill -0 $pid
done
echo "every database's first generation after $(python3 -c "import time; print(f'{time.time()-$started:.1f}')") s"
addr=$(grep -m1 -o 'addr=[0-9.:]*' "$OUT/daemon.log" | cut -d= -f2)
# Settle: the verification rounds a daemon runs at start (the read rung, then a restore-test of
# every database, logged at the round's end), then 15 s with nothing logged.
until [ "$(grep -c 'rung="restore-test" checked' "$OUT/daemon.log" || true)" -ge "$N" ]; do
  sleep 1; kill -0 $pid
done
last=0; quiet=0
while [ $quiet -lt 15 ]; do
  sleep 1; n=$(wc -l < "$OUT/daemon.log")
  if [ "$n" = "$last" ]; then quiet=$((quiet+1)); else quiet=0; last=$n; fi
done

# The writers: WRITERS databases, spread over the fleet, one commit a second each.
python3 - "$OUT/tenants" "$WRITERS" "$N" "$OUT/stop" <<'PY' &
import os, sqlite3, sys, time
d, w, n, stop = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
conns = [sqlite3.connect(os.path.join(d, f"t{i * (n // w):05d}.db"), isolation_level=None) for i in range(w)]
k = 0
while not os.path.exists(stop):
    t = time.time()
    for c in conns:
        c.execute("INSERT INTO bookings(member, at, note) VALUES ('w', datetime('now'), ?)", (f"commit {k}",))
    k += 1
    time.sleep(max(0, 1 - (time.time() - t)))
PY
wpid=$!
sleep 5
hz=$(getconf CLK_TCK)
t0=$(awk '{print $14+$15}' /proc/$pid/stat); s0=$(date +%s.%N)
maxlag=0; threads_max=0
for _ in $(seq "$SECS"); do
  sleep 1
  th=$(awk '/^Threads/ {print $2}' /proc/$pid/status)
  [ "$th" -gt "$threads_max" ] && threads_max=$th
done
t1=$(awk '{print $14+$15}' /proc/$pid/stat); s1=$(date +%s.%N)
metrics=$(curl -s "http://$addr/metrics" || true)
rss=$(awk '/VmRSS/ {print $2/1024}' /proc/$pid/status)
hwm=$(awk '/VmHWM/ {print $2/1024}' /proc/$pid/status)
fds=$(ls /proc/$pid/fd | wc -l)
touch "$OUT/stop"; wait $wpid || true
lag=$(echo "$metrics" | awk '/^lifeboat_replication_lag_seconds/ {print $2}' | sort -g | tail -1)
commits=$(echo "$metrics" | awk '/^lifeboat_replication_commits_total/ {s+=$2} END {print s+0}')
replicated=$(echo "$metrics" | awk '/^lifeboat_replicated_databases / {print $2}')
kill -TERM $pid; wait $pid || true
trap - EXIT
python3 - <<PY
wall = $s1 - $s0
cpu = 100 * ($t1 - $t0) / $hz / wall
print(f"\n{$N} replicated databases ({'$replicated'} open), {$WRITERS} writing once a second, {wall:.0f} s window")
print(f"{'CPU, % of one core':<34} {cpu:8.2f}   target < 5%")
print(f"{'RSS at the end (MB)':<34} {$rss:8.0f}   target < 200 MB")
print(f"{'peak RSS, VmHWM (MB)':<34} {$hwm:8.0f}")
print(f"{'threads (max seen)':<34} {$threads_max:8d}   target: not one per database")
print(f"{'open descriptors':<34} {$fds:8d}")
print(f"{'largest lag at the end (s)':<34} {float('${lag:-0}' or 0):8.2f}")
print(f"{'commits shipped (whole run)':<34} {int(float('${commits:-0}' or 0)):8d}")
PY
grep -c "replication stalled" "$OUT/daemon.log" | sed 's/^/replication.stalled in the log: /' || true
