#!/usr/bin/env bash
# The test stack: real services on free loopback ports, each in a fresh
# directory under $STRATA_STACK_DIR, installed when missing.
#
#   ops/test-stack.sh start   install what is missing, start everything, write $STATE/env
#   ops/test-stack.sh stop    stop everything and remove the state directory
#   ops/test-stack.sh env     print the env file (KEY=value lines)
#
# - PostgreSQL 15 (Debian package): a throw-away cluster made with initdb and
#   run by the postgres user (the server refuses root). Relational,
#   concurrency, NOTIFY and migration tests run here.
# - PGlite with Apache AGE and pgvector (npm, pinned in ops/pglite): real AGE
#   1.7 and pgvector on PostgreSQL 18 in WebAssembly, one backend session.
# - s3s-fs 0.14.1 (crates.io): an S3 server over a directory that checks
#   SigV4 signatures.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
STATE=${STRATA_STACK_DIR:-/tmp/strata-stack}
TOOLS=${STRATA_TOOLS_DIR:-${HOME:-/root}/.cache/strata-tools}
PGBIN=/usr/lib/postgresql/15/bin
S3_KEY=strata-test
S3_SECRET=strata-test-secret-key
S3_BUCKET=strata-test

log() { printf 'test-stack: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_for NAME LOGFILE SECONDS COMMAND...: retries COMMAND until it succeeds.
wait_for() {
  local name=$1 logfile=$2 seconds=$3
  shift 3
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      log "$name did not come up within ${seconds}s; its log ($logfile):"
      tail -n 30 "$logfile" >&2 || true
      exit 1
    fi
    sleep 0.2
  done
}

# The server refuses to run as root: use the postgres account then.
as_postgres() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

start_postgres() {
  if [ ! -x "$PGBIN/initdb" ]; then
    log "installing postgresql-15"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null
  fi
  if ! command -v pgbackrest >/dev/null; then  # physical backups (ops/pgbackrest.sh)
    log "installing pgbackrest"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbackrest >/dev/null
  fi
  local dir=$STATE/pg port
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres "$dir"
  as_postgres "$PGBIN/initdb" -D "$dir/data" -A trust -U postgres --no-sync >"$STATE/pg-initdb.log" 2>&1 \
    || { tail "$STATE/pg-initdb.log" >&2; die "initdb failed"; }
  port=$(free_port)
  as_postgres "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=400" start >/dev/null \
    || { tail "$dir/server.log" >&2; die "PostgreSQL did not start"; }
  psql -h 127.0.0.1 -p "$port" -U postgres -qc "CREATE DATABASE strata_test" >/dev/null
  echo "STRATA_TEST_PG_URL=postgres://postgres@127.0.0.1:$port/strata_test" >>"$STATE/env"
}

start_pglite() {
  local dir=$ROOT/ops/pglite port
  if [ ! -x "$dir/node_modules/.bin/pglite-server" ]; then
    log "installing PGlite (npm ci)"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
  port=$(free_port)
  # -m 1: PGlite serves one connection; in-memory data, fresh at every start.
  (cd "$dir" && exec node_modules/.bin/pglite-server -h 127.0.0.1 -p "$port" \
    -e age,@electric-sql/pglite-pgvector:vector -m 1) >"$STATE/pglite.log" 2>&1 &
  echo $! >"$STATE/pglite.pid"
  wait_for PGlite "$STATE/pglite.log" 60 \
    psql "host=127.0.0.1 port=$port user=postgres dbname=postgres sslmode=disable" -qc "SELECT 1"
  echo "STRATA_TEST_PGLITE_URL=postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable" >>"$STATE/env"
}

start_s3() {
  local bin=$TOOLS/bin/s3s-fs port
  if [ ! -x "$bin" ]; then
    log "installing s3s-fs 0.14.1 (cargo install, about two minutes)"
    cargo install s3s-fs --version 0.14.1 --locked --features binary --root "$TOOLS" --quiet \
      || die "cargo install s3s-fs failed"
  fi
  mkdir -p "$STATE/s3/$S3_BUCKET"  # for s3s-fs a bucket is a directory
  port=$(free_port)
  "$bin" --host 127.0.0.1 --port "$port" --access-key "$S3_KEY" --secret-key "$S3_SECRET" \
    "$STATE/s3" >"$STATE/s3.log" 2>&1 &
  echo $! >"$STATE/s3.pid"
  wait_for s3s-fs "$STATE/s3.log" 30 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port"
  cat >>"$STATE/env" <<ENV
STRATA_TEST_S3_ENDPOINT=http://127.0.0.1:$port
STRATA_TEST_S3_BUCKET=$S3_BUCKET
AWS_ACCESS_KEY_ID=$S3_KEY
AWS_SECRET_ACCESS_KEY=$S3_SECRET
AWS_REGION=us-east-1
ENV
}

stop() {
  [ -d "$STATE" ] || return 0
  for pidfile in "$STATE"/*.pid; do
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  if [ -d "$STATE/pg/data" ]; then
    as_postgres "$PGBIN/pg_ctl" -D "$STATE/pg/data" -m immediate stop >/dev/null 2>&1 || true
  fi
  rm -rf "$STATE"
}

start() {
  stop
  mkdir -p "$STATE"
  : >"$STATE/env"
  local started=$SECONDS
  start_postgres
  start_pglite
  start_s3
  log "up in $((SECONDS - started))s (state in $STATE)"
  cat "$STATE/env"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  env) cat "$STATE/env" ;;
  *) die "usage: $0 start|stop|env" ;;
esac
