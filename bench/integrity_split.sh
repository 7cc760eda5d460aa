#!/usr/bin/env bash
# integrity_check split across cores, for bench/verify.sh's "where the time goes": quick_check of
# the whole file (page accounting, the b-trees' shape) beside `integrity_check(T)` of each table
# (T and its indexes), largest first, JOBS at a time. Fails unless every check says ok.
#   integrity_split.sh IMAGE [JOBS]
set -euo pipefail
img="$1"; jobs="${2:-$(nproc)}"
check() { # one check: "" is the whole file's quick_check
  local out
  if [ -z "$2" ]; then out=$(sqlite3 "$1" "PRAGMA quick_check")
  else out=$(sqlite3 "$1" "PRAGMA mmap_size = 4294967296" "PRAGMA integrity_check(\"$2\")" | tail -n +2)
  fi
  [ "$out" = ok ] || { echo "integrity_split: ${2:-quick_check}: $out" >&2; exit 1; }
}
export -f check
{ echo "-"; sqlite3 "$img" "SELECT s.name FROM sqlite_schema s WHERE s.type = 'table' AND s.name NOT LIKE 'sqlite_%' ORDER BY (SELECT sum(pgsize) FROM dbstat d WHERE d.name = s.name) DESC"; } \
  | xargs -d '\n' -P "$jobs" -I{} bash -c 'check "$1" "${2#-}"' _ "$img" {}
