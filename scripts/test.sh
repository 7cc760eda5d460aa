#!/usr/bin/env bash
# Runs every test on a fresh machine: installs what the tests need (sqlite3, sqldiff, python3, zstd,
# strace (kill -9 at exact points), flock, openssl and aiosmtpd (the email alert tests' certificates
# and SMTP server), s3s-fs, moto's S3 server, wrangler), then `cargo test`. Tool builds are cached outside the clone and rebuilt when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS="${LIFEBOAT_TEST_TOOLS:-$HOME/.cache/lifeboat-test-tools}"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

missing=()
command -v sqlite3 >/dev/null || missing+=(sqlite3)
command -v sqldiff >/dev/null || missing+=(sqlite3-tools)
command -v python3 >/dev/null || missing+=(python3)
command -v zstd >/dev/null || missing+=(zstd)
command -v strace >/dev/null || missing+=(strace)
command -v flock >/dev/null || missing+=(util-linux)
command -v openssl >/dev/null || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
  echo "test.sh: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# A real SMTP server for the email alert tests. Debian's package for the system python (pip there
# would need --break-system-packages); pip for any other python3 (pyenv, a venv).
if ! python3 -c "import aiosmtpd" 2>/dev/null; then
  echo "test.sh: installing aiosmtpd"
  if [ "$(command -v python3)" = /usr/bin/python3 ] && command -v apt-get >/dev/null; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-aiosmtpd >/dev/null
  else
    python3 -m pip install --quiet aiosmtpd
  fi
  python3 -c "import aiosmtpd" || { echo "test.sh: aiosmtpd did not install" >&2; exit 1; }
fi

# A second S3 server, moto's (in memory), for multipart uploads under keys longer than s3s-fs can
# name a file after (compacted segments) and for ListMultipartUploads, which s3s-fs lacks.
if ! python3 -c "import moto.server, flask_cors" 2>/dev/null; then
  echo "test.sh: installing moto[server]"
  if [ "$(command -v python3)" = /usr/bin/python3 ] && command -v apt-get >/dev/null; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-moto python3-flask python3-flask-cors >/dev/null
  else
    python3 -m pip install --quiet 'moto[server]'
  fi
  python3 -c "import moto.server, flask_cors" || { echo "test.sh: moto[server] did not install" >&2; exit 1; }
fi

# A real S3-compatible server with SigV4 checks. 0.14.1 is the last release that builds on rustc 1.95.
if [ ! -x "$TOOLS/bin/s3s-fs" ]; then
  echo "test.sh: building s3s-fs 0.14.1 into $TOOLS (once)"
  cargo install s3s-fs@0.14.1 --features binary --locked --root "$TOOLS" --quiet
fi
export LIFEBOAT_S3S_FS="$TOOLS/bin/s3s-fs"

# Real local D1: wrangler 4.86.0 is the last release that runs on Node 20 (newer ones need Node 22).
if [ ! -x "$TOOLS/wrangler/node_modules/.bin/wrangler" ]; then
  command -v npm >/dev/null || { $SUDO apt-get update -qq; DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >/dev/null; }
  echo "test.sh: installing wrangler 4.86.0 into $TOOLS/wrangler (once)"
  mkdir -p "$TOOLS/wrangler"
  npm install --prefix "$TOOLS/wrangler" --no-audit --no-fund --loglevel=error wrangler@4.86.0 >/dev/null
fi
export LIFEBOAT_WRANGLER="$TOOLS/wrangler/node_modules/.bin/wrangler"
export WRANGLER_SEND_METRICS=false WRANGLER_SEND_ERROR_REPORTS=false

cargo test --locked "$@"
