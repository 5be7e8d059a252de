#!/usr/bin/env bash
# A throw-away PostgreSQL 15 with pgvector for the `hnsw` bench, without
# touching the system's PostgreSQL (the tests' server stays without it).
#
#   bench/pgvector-server.sh SRC DIR [PORT]
#
# SRC: a pgvector source tree (e.g. `git archive v0.8.6` of
# github.com/pgvector/pgvector). Needs Debian's postgresql-15 and
# postgresql-server-dev-15. pgvector is built with its default
# -march=native and installed into a private copy of the PostgreSQL tree
# under DIR/pg (PostgreSQL finds its lib and share directories relative to
# its binary); the cluster lives in DIR/data and listens on 127.0.0.1:PORT.
# Prints the URL for `strata-bench --postgres`. Stop it with
#   DIR/pg/usr/lib/postgresql/15/bin/pg_ctl -D DIR/data stop
set -euo pipefail
src=$(realpath "$1")
dir=$(realpath -m "$2")
port=${3:-55432}
pg=$dir/pg

if [[ ! -x $pg/usr/lib/postgresql/15/bin/postgres ]]; then
  mkdir -p "$pg/usr/lib/postgresql" "$pg/usr/share/postgresql"
  cp -a /usr/lib/postgresql/15 "$pg/usr/lib/postgresql/"
  cp -a /usr/share/postgresql/15 "$pg/usr/share/postgresql/"
  make -C "$src" -s -j2 PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
  make -C "$src" -s install PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config DESTDIR="$pg"
fi

bin=$pg/usr/lib/postgresql/15/bin
if [[ ! -d $dir/data ]]; then
  mkdir -p "$dir/data"
  chown -R postgres "$dir"
  su postgres -c "$bin/initdb -A trust -U postgres --no-sync -D $dir/data" >/dev/null
  cat >>"$dir/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
shared_buffers = 4GB
maintenance_work_mem = 4GB
max_parallel_maintenance_workers = 1
effective_cache_size = 12GB
work_mem = 64MB
wal_level = minimal
max_wal_senders = 0
max_wal_size = 2GB
checkpoint_timeout = 30min
EOF
fi
su postgres -c "$bin/pg_ctl -D $dir/data -l $dir/server.log -w start" >/dev/null
echo "postgres://postgres@127.0.0.1:$port/postgres"
