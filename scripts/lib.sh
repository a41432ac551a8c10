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
