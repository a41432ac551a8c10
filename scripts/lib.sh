# Shared by scripts/test and scripts/demo. Source it; do not run it.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
jobs=$(nproc 2>/dev/null || echo 2)

# configure DIR [cmake args...]: configures DIR once (reconfiguring only when
# the arguments change), quietly.
configure() {
  local dir=$1; shift
  local stamp="$dir/.txfn-configure-args" args="$*"
  if [ -f "$dir/build.ninja" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$args" ]; then
    return 0
  fi
  mkdir -p "$dir"
  if ! cmake -S "$root" -B "$dir" -G Ninja "$@" >"$dir/configure.log" 2>&1; then
    cat "$dir/configure.log"; return 1
  fi
  echo "$args" >"$stamp"
}

# build DIR [targets...]: builds quietly; prints the log only on failure.
build() {
  local dir=$1; shift
  local targets=()
  for t in "$@"; do targets+=(--target "$t"); done
  if ! cmake --build "$dir" -j "$jobs" "${targets[@]}" >"$dir/build.log" 2>&1; then
    grep -v '^\[[0-9]*/[0-9]*\]' "$dir/build.log" | tail -n 80; return 1
  fi
}

# pg_start: starts the private PostgreSQL server the tests, benchmarks and demo use
# (scripts/pg-cluster) in .pg/, or under /tmp when the server's user cannot reach the checkout;
# exports TXFN_TEST_PG (its connection string) and TXFN_PG_CLUSTER (the script, for tests that
# crash a server of their own); stops it when the calling script exits, failing or not.
pg_start() {
  local cluster="$root/scripts/pg-cluster"
  pg_dir="$root/.pg"
  if ! TXFN_TEST_PG=$("$cluster" start "$pg_dir" 2>/dev/null); then
    pg_dir="/tmp/txfn-pg-$(echo "$root" | cksum | cut -d' ' -f1)"
    TXFN_TEST_PG=$("$cluster" start "$pg_dir")
  fi
  export TXFN_TEST_PG TXFN_PG_CLUSTER="$cluster"
  trap '"$root/scripts/pg-cluster" stop "$pg_dir" || true' EXIT
}
