#!/usr/bin/env bash
# A throwaway local PostgreSQL server for the multi-worker tests (tests/test_worker_processes.py).
#
#   source .ci/postgres.sh          # start (or reuse) it and export CFGTUNE_TEST_POSTGRES_URL
#   .ci/postgres.sh start           # the same, printing `export CFGTUNE_TEST_POSTGRES_URL=...` for eval
#   .ci/postgres.sh stop            # stop it and delete its data directory
#   .ci/postgres.sh url             # print the URL
#
# It uses the OS packages (/usr/lib/postgresql/*/bin); when they are missing it installs them with apt-get
# (CI runs as root on Debian). PostgreSQL refuses to run as root, so as root the server runs as the `postgres`
# OS user (created when missing). It listens on 127.0.0.1:$CFGTUNE_PG_PORT (default 55432) and on a unix socket
# in its data directory ($CFGTUNE_PG_DIR, default /tmp/cfgtune-pg), with trust authentication: test use only.

_cfgtune_pg_dir="${CFGTUNE_PG_DIR:-/tmp/cfgtune-pg}"
_cfgtune_pg_port="${CFGTUNE_PG_PORT:-55432}"
_cfgtune_pg_url="postgresql://cfgtune@127.0.0.1:${_cfgtune_pg_port}/cfgtune"

_cfgtune_pg_log() { echo "postgres.sh: $*" >&2; }

_cfgtune_pg_bin() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$d" ] || [ ! -x "$d/initdb" ] || [ ! -x "$d/postgres" ]; then
    if [ "$(id -u)" -ne 0 ]; then
      _cfgtune_pg_log "no PostgreSQL under /usr/lib/postgresql/*/bin; install it (apt-get install postgresql) or run as root"
      return 1
    fi
    _cfgtune_pg_log "installing PostgreSQL from the OS packages"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >&2 || return 1
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  fi
  [ -n "$d" ] && echo "$d"
}

# Run a PostgreSQL program as the user that owns the data directory (never root).
_cfgtune_pg_as() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

_cfgtune_pg_start() {
  local bin
  bin=$(_cfgtune_pg_bin) || return 1
  if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin postgres || return 1
  fi
  if [ ! -f "$_cfgtune_pg_dir/PG_VERSION" ]; then
    rm -rf "$_cfgtune_pg_dir" && mkdir -p "$_cfgtune_pg_dir" || return 1
    [ "$(id -u)" -eq 0 ] && chown postgres: "$_cfgtune_pg_dir"
    chmod 700 "$_cfgtune_pg_dir"
    _cfgtune_pg_as "$bin/initdb" -D "$_cfgtune_pg_dir" -U cfgtune -A trust -E UTF8 --no-sync >/dev/null || return 1
  fi
  if ! _cfgtune_pg_as "$bin/pg_ctl" -D "$_cfgtune_pg_dir" status >/dev/null 2>&1; then
    _cfgtune_pg_as "$bin/pg_ctl" -D "$_cfgtune_pg_dir" -l "$_cfgtune_pg_dir/server.log" -w -t 60 start \
      -o "-p $_cfgtune_pg_port -k $_cfgtune_pg_dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100" \
      >/dev/null || { _cfgtune_pg_log "the server did not start; see $_cfgtune_pg_dir/server.log"; return 1; }
  fi
  if ! _cfgtune_pg_as "$bin/psql" -h "$_cfgtune_pg_dir" -p "$_cfgtune_pg_port" -U cfgtune -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname = 'cfgtune'" | grep -q 1; then
    _cfgtune_pg_as "$bin/createdb" -h "$_cfgtune_pg_dir" -p "$_cfgtune_pg_port" -U cfgtune cfgtune || return 1
  fi
  export CFGTUNE_TEST_POSTGRES_URL="$_cfgtune_pg_url"
  _cfgtune_pg_log "PostgreSQL on 127.0.0.1:$_cfgtune_pg_port (data in $_cfgtune_pg_dir); stop it with .ci/postgres.sh stop"
}

_cfgtune_pg_stop() {
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -n "$bin" ] && [ -f "$_cfgtune_pg_dir/PG_VERSION" ]; then
    _cfgtune_pg_as "$bin/pg_ctl" -D "$_cfgtune_pg_dir" -m fast -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$_cfgtune_pg_dir"
  unset CFGTUNE_TEST_POSTGRES_URL
}

if [ "${BASH_SOURCE[0]}" != "$0" ]; then
  # Sourced: start and export into the caller's shell, without changing its shell options.
  _cfgtune_pg_start
else
  set -uo pipefail
  case "${1:-start}" in
    start) _cfgtune_pg_start && echo "export CFGTUNE_TEST_POSTGRES_URL=$_cfgtune_pg_url" ;;
    stop) _cfgtune_pg_stop ;;
    url) echo "$_cfgtune_pg_url" ;;
    *) echo "usage: $0 [start|stop|url]" >&2; exit 2 ;;
  esac
fi
