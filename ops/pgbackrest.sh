#!/usr/bin/env bash
# Physical backups of Strata's PostgreSQL cluster with pgBackRest: a thin,
# readable wrapper an operator can run by hand or from cron (see
# ops/PGBACKREST.md for the whole runbook).
#
#   ops/pgbackrest.sh [-c CONF] [-s STANZA] configure --pg-path DIR [options]
#                                            write CONF for the stanza (below)
#   ops/pgbackrest.sh ... stanza-create      create the stanza in the repository
#   ops/pgbackrest.sh ... check              check archiving and the repository
#   ops/pgbackrest.sh ... backup [full|diff|incr]     (default: incr; pgBackRest
#                                            takes a full one when there is none)
#   ops/pgbackrest.sh ... info               list the backups and the WAL range
#   ops/pgbackrest.sh ... expire             apply the retention policy now
#   ops/pgbackrest.sh ... restore --target-time "TIME" --to NEW_DATA_DIR [-- ARGS]
#                                            point-in-time restore into a new,
#                                            empty data directory
#
# CONF defaults to $PGBACKREST_CONFIG or /etc/pgbackrest/pgbackrest.conf,
# STANZA to $PGBACKREST_STANZA or "strata".
#
# configure options:
#   --pg-path DIR          the cluster's data directory (required)
#   --pg-port N            its port (5432)
#   --pg-socket DIR        its Unix socket directory (/var/run/postgresql)
#   --repo-path DIR        a repository in a directory (/var/lib/pgbackrest), or
#   --s3                   a repository on S3, from the environment:
#                            PGBR_S3_ENDPOINT   host name, no scheme (pgBackRest
#                                               always speaks HTTPS)
#                            PGBR_S3_PORT       (443)
#                            PGBR_S3_BUCKET, PGBR_S3_REGION (us-east-1)
#                            PGBR_S3_KEY, PGBR_S3_KEY_SECRET
#                            PGBR_S3_PATH       prefix in the bucket (/pgbackrest)
#                            PGBR_S3_VERIFY_TLS n for a test server with a
#                                               self-signed certificate (y)
#   --retention-full N     full backups to keep; older ones, their diff/incr
#                          backups and WAL go at expire (2)
#   --log-path DIR         (/var/log/pgbackrest)
#   --lock-path DIR        (/tmp/pgbackrest)
#
# What PostgreSQL needs (postgresql.conf; `configure` prints these lines):
#   wal_level = replica
#   archive_mode = on
#   archive_command = 'pgbackrest --config=CONF --stanza=STANZA archive-push %p'
# (--config can be left out when CONF is the default path.)
#
# pgBackRest runs as the postgres OS user: as root this script switches to it.
set -euo pipefail

CONF=${PGBACKREST_CONFIG:-/etc/pgbackrest/pgbackrest.conf}
STANZA=${PGBACKREST_STANZA:-strata}

log() { printf 'pgbackrest.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

# PostgreSQL's files belong to the postgres account: pgBackRest runs as it.
as_postgres() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# A directory the postgres account owns (created when missing).
postgres_dir() {
  mkdir -p "$1"
  if [ "$(id -u)" = 0 ]; then chown postgres: "$1"; fi
  chmod 0750 "$1"
}

pgbr() {
  command -v pgbackrest >/dev/null || die "pgbackrest is not installed (apt-get install pgbackrest)"
  [ -r "$CONF" ] || die "no configuration at $CONF: run '$0 configure' first"
  as_postgres pgbackrest --config="$CONF" --stanza="$STANZA" "$@"
}

configure() {
  local pg_path='' pg_port=5432 pg_socket=/var/run/postgresql repo_path=/var/lib/pgbackrest
  local s3=0 retention=2 log_path=/var/log/pgbackrest lock_path=/tmp/pgbackrest
  while [ $# -gt 0 ]; do
    case "$1" in
      --pg-path) pg_path=$2; shift 2 ;;
      --pg-port) pg_port=$2; shift 2 ;;
      --pg-socket) pg_socket=$2; shift 2 ;;
      --repo-path) repo_path=$2; shift 2 ;;
      --s3) s3=1; shift ;;
      --retention-full) retention=$2; shift 2 ;;
      --log-path) log_path=$2; shift 2 ;;
      --lock-path) lock_path=$2; shift 2 ;;
      *) die "configure: unknown option $1" ;;
    esac
  done
  [ -n "$pg_path" ] || die "configure: --pg-path is required"

  local repo
  if [ "$s3" = 1 ]; then
    : "${PGBR_S3_ENDPOINT:?} ${PGBR_S3_BUCKET:?} ${PGBR_S3_KEY:?} ${PGBR_S3_KEY_SECRET:?}"
    repo="repo1-type=s3
repo1-path=${PGBR_S3_PATH:-/pgbackrest}
repo1-s3-endpoint=$PGBR_S3_ENDPOINT
repo1-storage-port=${PGBR_S3_PORT:-443}
repo1-s3-bucket=$PGBR_S3_BUCKET
repo1-s3-region=${PGBR_S3_REGION:-us-east-1}
repo1-s3-key=$PGBR_S3_KEY
repo1-s3-key-secret=$PGBR_S3_KEY_SECRET
repo1-s3-uri-style=path
repo1-storage-verify-tls=${PGBR_S3_VERIFY_TLS:-y}"
  else
    postgres_dir "$repo_path"
    repo="repo1-path=$repo_path"
  fi
  postgres_dir "$log_path"
  postgres_dir "$lock_path"

  mkdir -p "$(dirname "$CONF")"
  # The file may hold S3 secrets: readable by its owner only (postgres).
  (umask 077 && cat >"$CONF" <<CONF
# Written by ops/pgbackrest.sh configure.
[global]
$repo
repo1-retention-full=$retention
# Checkpoint at once when a backup starts instead of waiting for a spread one.
start-fast=y
compress-type=zst
process-max=2
log-path=$log_path
lock-path=$lock_path
log-level-console=info
log-level-file=detail

[$STANZA]
pg1-path=$pg_path
pg1-port=$pg_port
pg1-socket-path=$pg_socket
CONF
  )
  if [ "$(id -u)" = 0 ]; then chown postgres: "$CONF"; fi
  log "wrote $CONF; postgresql.conf needs:"
  cat <<PG
wal_level = replica
archive_mode = on
archive_command = 'pgbackrest --config=$CONF --stanza=$STANZA archive-push %p'
PG
}

restore() {
  local target='' to=''
  while [ $# -gt 0 ]; do
    case "$1" in
      --target-time) target=$2; shift 2 ;;
      --to) to=$2; shift 2 ;;
      --) shift; break ;;
      *) die "restore: unknown option $1" ;;
    esac
  done
  [ -n "$target" ] && [ -n "$to" ] || die "restore: --target-time and --to are required"
  if [ -d "$to" ] && [ -n "$(ls -A "$to")" ]; then
    die "restore: $to is not empty; restore into a new directory"
  fi
  mkdir -p "$to"
  if [ "$(id -u)" = 0 ]; then chown postgres: "$to"; fi
  chmod 0700 "$to"
  # pgBackRest picks the newest backup that ended before the target, writes
  # restore_command and the recovery target into postgresql.auto.conf, and
  # the server promotes once it reaches the target. --archive-mode=off: the
  # restored cluster does not push WAL into the stanza of the one still
  # running; turn archiving back on once it takes over (ops/PGBACKREST.md).
  pgbr restore --type=time --target="$target" --target-action=promote \
    --pg1-path="$to" --archive-mode=off "$@"
  log "restored into $to; start it with: pg_ctl -D $to start (on a free port)"
}

while [ $# -gt 0 ]; do
  case "$1" in
    -c | --config) CONF=$2; shift 2 ;;
    -s | --stanza) STANZA=$2; shift 2 ;;
    -h | --help) usage ;;
    *) break ;;
  esac
done

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  configure) configure "$@" ;;
  stanza-create) pgbr stanza-create ;;
  check) pgbr check ;;
  backup)
    type=${1:-incr}
    case "$type" in full | diff | incr) ;; *) die "backup: full, diff or incr, not $type" ;; esac
    pgbr backup --type="$type" ;;
  info) pgbr info ;;
  expire) pgbr expire ;;
  restore) restore "$@" ;;
  *) usage ;;
esac
