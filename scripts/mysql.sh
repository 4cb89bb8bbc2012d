#!/usr/bin/env bash
# MySQL/MariaDB for taskd's tests.
#
# Sourced by scripts/test.sh, or run on its own:
#   scripts/mysql.sh                 find or start a server, print its URL, stop it again
#   scripts/mysql.sh -- CMD ARGS...  run CMD with TASKD_TEST_MYSQL_URL exported, then clean up
#                                    (e.g. scripts/mysql.sh -- cargo test --test it mysql)
#
# Which server (first that works):
#   1. $TASKD_TEST_MYSQL_URL, if set (used as is).
#   2. A server on 127.0.0.1:$TASKD_TEST_MYSQL_PROBE_PORT (default 3306) that answers
#      `select 1` as root with no password -> mysql://root@127.0.0.1:PORT.
#      TASKD_TEST_MYSQL_PROBE_PORT=off skips this probe.
#   3. A throwaway mariadbd (apt-installs mariadb-server if mariadbd is missing) with a
#      temp datadir and socket, on the first free port from $TASKD_TEST_MYSQL_PORT
#      (default 33306); stopped and deleted by mysql_cleanup.
# If none works, mysql_ensure fails and says why: MySQL tests are never skipped.
#
# The URL names a server, not a database: tests create their own databases.

# ---- helpers (prefixed, since this file is sourced) --------------------------------

_mysql_log() { printf '[mysql] %s\n' "$*" >&2; }
_mysql_die() { printf '[mysql] ERROR: %s\n' "$*" >&2; return 1; }

# Runs a command as root (directly, or through sudo when we are not root).
_mysql_as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"
  else _mysql_die "need root (or sudo) to run: $*"; fi
}

_MYSQL_APT_UPDATED=
_mysql_apt_install() {
  command -v apt-get >/dev/null 2>&1 || { _mysql_die "apt-get not found; install $* by hand"; return 1; }
  if [ -z "$_MYSQL_APT_UPDATED" ]; then
    _mysql_log "apt-get update"
    _mysql_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq || return 1
    _MYSQL_APT_UPDATED=1
  fi
  _mysql_log "apt-get install -y $*"
  _mysql_as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "$@" </dev/null >&2 || return 1
}

# Prints the path of a MySQL command-line client, installing one if there is none.
_mysql_client() {
  local c
  for c in mariadb mysql; do
    if command -v "$c" >/dev/null 2>&1; then command -v "$c"; return 0; fi
  done
  _mysql_apt_install mariadb-client >&2 || { _mysql_die "no mysql/mariadb client and could not install mariadb-client"; return 1; }
  for c in mariadb mysql; do
    if command -v "$c" >/dev/null 2>&1; then command -v "$c"; return 0; fi
  done
  _mysql_die "mariadb-client installed but no mariadb/mysql command found"
}

# True when something accepts TCP connections on 127.0.0.1:$1.
_mysql_port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# True when a server on 127.0.0.1:$2 answers a real query as root with no password.
_mysql_query_ok() {
  local client=$1 port=$2
  "$client" --no-defaults --protocol=TCP -h127.0.0.1 -P"$port" -uroot \
    --connect-timeout=3 -N -B -e 'select 1' >/dev/null 2>&1
}

# ---- the throwaway server ----------------------------------------------------------

MYSQL_THROWAWAY_PID=
MYSQL_THROWAWAY_DIR=

_mysql_start_throwaway() {
  local client=$1
  if ! command -v mariadbd >/dev/null 2>&1; then
    _mysql_log "mariadbd not found: installing mariadb-server"
    _mysql_apt_install mariadb-server mariadb-client \
      || { _mysql_die "could not install mariadb-server with apt-get"; return 1; }
    # PATH may lack /usr/sbin for a non-root user.
    command -v mariadbd >/dev/null 2>&1 || PATH="$PATH:/usr/sbin"
    command -v mariadbd >/dev/null 2>&1 || { _mysql_die "mariadb-server installed but mariadbd not found"; return 1; }
  fi
  local install_db
  install_db=$(command -v mariadb-install-db || command -v mysql_install_db) \
    || { _mysql_die "mariadb-install-db not found"; return 1; }

  local port=${TASKD_TEST_MYSQL_PORT:-33306} last
  last=$((port + 100))
  while _mysql_port_open "$port"; do
    port=$((port + 1))
    [ "$port" -le "$last" ] || { _mysql_die "no free port in ${TASKD_TEST_MYSQL_PORT:-33306}..$last"; return 1; }
  done

  MYSQL_THROWAWAY_DIR=$(mktemp -d "${TMPDIR:-/tmp}/taskd-mysql.XXXXXX") || return 1
  local dir=$MYSQL_THROWAWAY_DIR user
  user=$(id -un)
  _mysql_log "starting a throwaway mariadbd on 127.0.0.1:$port (datadir $dir/data)"
  if ! "$install_db" --no-defaults --user="$user" --datadir="$dir/data" \
        --auth-root-authentication-method=normal --skip-test-db >"$dir/install.log" 2>&1; then
    tail -n 30 "$dir/install.log" >&2
    _mysql_die "mariadb-install-db failed (log above)"; return 1
  fi

  # Generous max-connections: every test node opens its own pool.
  mariadbd --no-defaults --user="$user" --datadir="$dir/data" \
    --socket="$dir/mysqld.sock" --pid-file="$dir/mariadbd.pid" --log-error="$dir/mariadbd.err" \
    --bind-address=127.0.0.1 --port="$port" --skip-name-resolve \
    --max-connections=1000 --innodb-buffer-pool-size=256M \
    </dev/null >/dev/null 2>&1 &
  MYSQL_THROWAWAY_PID=$!

  # Wait until it answers a real query over TCP; give up at the deadline.
  local deadline=$((SECONDS + ${TASKD_TEST_MYSQL_START_TIMEOUT:-60}))
  until _mysql_query_ok "$client" "$port"; do
    if ! kill -0 "$MYSQL_THROWAWAY_PID" 2>/dev/null; then
      tail -n 30 "$dir/mariadbd.err" >&2 || true
      MYSQL_THROWAWAY_PID=
      _mysql_die "the throwaway mariadbd exited during start-up (log above)"; return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      tail -n 30 "$dir/mariadbd.err" >&2 || true
      _mysql_die "the throwaway mariadbd did not answer within ${TASKD_TEST_MYSQL_START_TIMEOUT:-60}s (log above)"; return 1
    fi
    sleep 0.2
  done
  _mysql_log "throwaway mariadbd is up (pid $MYSQL_THROWAWAY_PID)"
  TASKD_TEST_MYSQL_URL="mysql://root@127.0.0.1:$port"
}

# Stops the throwaway server (if this shell started one) and deletes its files.
# Safe to call more than once.
mysql_cleanup() {
  local pid=$MYSQL_THROWAWAY_PID dir=$MYSQL_THROWAWAY_DIR
  MYSQL_THROWAWAY_PID='' MYSQL_THROWAWAY_DIR=''
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    _mysql_log "stopping the throwaway mariadbd (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 30))
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      _mysql_log "mariadbd did not stop within 30s: killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  fi
  if [ -n "$dir" ] && [ -d "$dir" ]; then rm -rf -- "$dir"; fi
}

# Finds or starts a server and exports TASKD_TEST_MYSQL_URL. Call mysql_cleanup at exit.
mysql_ensure() {
  if [ -n "${TASKD_TEST_MYSQL_URL:-}" ]; then
    _mysql_log "using TASKD_TEST_MYSQL_URL from the environment"
    export TASKD_TEST_MYSQL_URL
    return 0
  fi

  local probe=${TASKD_TEST_MYSQL_PROBE_PORT:-3306} client
  case "$probe" in
    off|none|no|0|'') _mysql_log "probe of a local server disabled (TASKD_TEST_MYSQL_PROBE_PORT=$probe)" ;;
    *)
      if _mysql_port_open "$probe"; then
        client=$(_mysql_client) || return 1
        if _mysql_query_ok "$client" "$probe"; then
          TASKD_TEST_MYSQL_URL="mysql://root@127.0.0.1:$probe"
          _mysql_log "using the server on 127.0.0.1:$probe (root, no password)"
          export TASKD_TEST_MYSQL_URL
          return 0
        fi
        _mysql_log "127.0.0.1:$probe is open but 'select 1' as root with no password fails: not using it"
      else
        _mysql_log "nothing listens on 127.0.0.1:$probe"
      fi
      ;;
  esac

  client=$(_mysql_client) || return 1
  _mysql_start_throwaway "$client" \
    || { _mysql_die "no MySQL for the tests: set TASKD_TEST_MYSQL_URL=mysql://USER[:PASS]@HOST:PORT, run MariaDB on 127.0.0.1:3306 (root, no password), or make apt-get install mariadb-server work"; return 1; }
  export TASKD_TEST_MYSQL_URL
}

# ---- run on its own ------------------------------------------------------------------

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  trap mysql_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  if [ "${1:-}" = "--" ]; then shift; fi
  mysql_ensure
  if [ "$#" -gt 0 ]; then
    "$@"
  else
    echo "TASKD_TEST_MYSQL_URL=$TASKD_TEST_MYSQL_URL"
  fi
fi
