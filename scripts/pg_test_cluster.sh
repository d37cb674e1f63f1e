#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the integration tests.
#
#   scripts/pg_test_cluster.sh start DIR   create (if needed) and start a cluster in DIR;
#                                          prints its connection URL as the last stdout line
#   scripts/pg_test_cluster.sh stop DIR    stop it and delete DIR
#
# The cluster listens on a Unix socket inside DIR only (no TCP port, so nothing to collide
# with), trusts local connections, and trades durability for speed (fsync off). Never point it
# at data you care about. As root, the server runs as the `postgres` OS user (initdb refuses
# root); PostgreSQL is installed with apt-get if no initdb is found. Errors go to stderr with a
# non-zero exit, so a caller can show why the cluster did not start.
set -euo pipefail

PORT=5432
MARKER=.alliance-psi-test-cluster

die() { echo "pg_test_cluster: $*" >&2; exit 1; }

find_bindir() {
  local candidate
  if command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
    dirname "$(readlink -f "$(command -v initdb)")"
    return 0
  fi
  for candidate in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [ -x "$candidate/initdb" ] && { echo "$candidate"; return 0; }
  done
  return 1
}

install_postgresql() {
  [ "$(id -u)" -eq 0 ] || die "initdb not found and not root: install PostgreSQL (apt-get install postgresql)"
  echo "pg_test_cluster: initdb not found, installing postgresql with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq postgresql >&2 || { apt-get update -qq >&2 && apt-get install -y -qq postgresql >&2; } \
    || die "apt-get install postgresql failed"
}

# Run a command as the cluster's owner: `postgres` when we are root, ourselves otherwise.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

start() {
  local dir=$1 bindir url
  bindir=$(find_bindir) || { install_postgresql; bindir=$(find_bindir) || die "no initdb after installing postgresql"; }
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || die "no 'postgres' OS user to run the server as"
    chown postgres: "$dir"
    chmod 700 "$dir"
    as_owner test -x "$dir" || die "user postgres cannot reach $dir (a parent directory is not searchable)"
  fi
  url="postgresql+psycopg://postgres@/postgres?host=$dir&port=$PORT"
  if [ -f "$dir/data/PG_VERSION" ] && as_owner "$bindir/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    echo "$url"
    return 0
  fi
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    as_owner "$bindir/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C \
      --no-sync --no-instructions >"$dir/initdb.log" 2>&1 \
      || die "initdb failed in $dir/data: $(tail -n 20 "$dir/initdb.log")"
    as_owner tee -a "$dir/data/postgresql.conf" >/dev/null <<CONF
listen_addresses = ''
unix_socket_directories = '$dir'
port = $PORT
max_connections = 100
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 32MB
CONF
    touch "$dir/$MARKER"
  fi
  as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null \
    || die "pg_ctl start failed: $(tail -n 20 "$dir/server.log" 2>/dev/null)"
  echo "$url"
}

stop() {
  local dir=$1 bindir
  [ -f "$dir/$MARKER" ] || die "$dir is not a cluster made by this script; not touching it"
  bindir=$(find_bindir) || die "initdb/pg_ctl not found"
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_owner "$bindir/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null || die "pg_ctl stop failed"
  fi
  rm -rf -- "$dir"
}

[ $# -eq 2 ] || die "usage: $0 start|stop DIR"
case $1 in
  start) start "$2" ;;
  stop) stop "$2" ;;
  *) die "usage: $0 start|stop DIR" ;;
esac
