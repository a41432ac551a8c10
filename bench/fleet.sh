#!/usr/bin/env bash
# The multi-process set-up of remote runners, measured: one `txfn serve --listen` (the engine:
# committers, the Functions service) with RUNNERS `txfn-runner` processes on one SQLite file,
# TENANTS bank tenants, and txfn_fleet_client's THREADS client threads for SECONDS. Prints
# calls/s, then each runner's share of the runs (from its /metrics) — rendezvous routing puts
# each tenant on one runner. Then the same load with the engine running everything itself
# (no --runners), for comparison.
#   bench/fleet.sh [BUILD_DIR]   (env: RUNNERS=3 TENANTS=6 THREADS=8 SECONDS=10)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
runners=${RUNNERS:-3} tenants=${TENANTS:-6} threads=${THREADS:-8} seconds=${SECONDS_PER_RUN:-10}
txfn="$build/tools/txfn" runner="$build/tools/txfn-runner" client="$build/bench/txfn_fleet_client"
for b in "$txfn" "$runner" "$client"; do
  [ -x "$b" ] || { echo "fleet.sh: $b is missing: build first (ninja -C $build)" >&2; exit 1; }
done
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
db="$tmp/fleet.db"

# wait_for FILE REGEX: the first capture of REGEX (sed) in FILE, waiting up to 10 s.
wait_for() {
  local v=""
  for _ in $(seq 200); do
    v=$(sed -n "s/$2/\\1/p" "$1" | head -n1)
    [ -n "$v" ] && { echo "$v"; return 0; }
    sleep 0.05
  done
  echo "fleet.sh: no '$2' in $1:" >&2; cat "$1" >&2; return 1
}
metric() {  # metric PORT NAME: a counter's value from http://127.0.0.1:PORT/metrics
  exec 3<>"/dev/tcp/127.0.0.1/$1"
  printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3
  sed -n "s/^$2 //p" <&3
  exec 3<&-
}

banks=()
for t in $(seq "$tenants"); do
  "$txfn" --db="$db" --create deploy --tenant="bank$t" "$root/examples/apps/bank" >/dev/null
  a=$("$txfn" --db="$db" run --tenant="bank$t" accounts:open '{"owner": "a", "initial": 100000}')
  b=$("$txfn" --db="$db" run --tenant="bank$t" accounts:open '{"owner": "b", "initial": 100000}')
  banks+=("bank$t:${a//\"/}:${b//\"/}")
done
printf 'admin fleet-admin\n' >"$tmp/keys"

# run_fleet N: the load with N runners (0: none, the engine runs everything).
run_fleet() {
  local n=$1 list="" metrics_ports=()
  for i in $(seq 0 $((n - 1))); do
    "$runner" --db="$db" --listen=127.0.0.1:0 --metrics=127.0.0.1:0 --workers=1 \
      >"$tmp/runner$i.out" 2>&1 &
    pids+=($!)
    list+="${list:+,}127.0.0.1:$(wait_for "$tmp/runner$i.out" '^txfn-runner: serving on port \([0-9]*\)$')"
    metrics_ports+=("$(wait_for "$tmp/runner$i.out" '^txfn-runner: metrics on port \([0-9]*\)$')")
  done
  "$txfn" --db="$db" serve --quiet --listen=0 --api_keys="$tmp/keys" ${list:+--runners=$list} \
    >"$tmp/serve.out" 2>&1 &
  local serve=$!
  pids+=($serve)
  local port
  port=$(wait_for "$tmp/serve.out" '^listening on port \([0-9]*\)$')
  printf '%-28s ' "runners=$n:"
  "$client" "127.0.0.1:$port" fleet-admin "$threads" "$seconds" "${banks[@]}"
  for i in "${!metrics_ports[@]}"; do
    printf '  runner %d: %s runs\n' "$i" "$(metric "${metrics_ports[$i]}" txfn_runner_runs_total)"
  done
  kill -TERM "$serve"; wait "$serve" || true
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
}

echo "fleet: $tenants tenants, $threads client threads, ${seconds}s per set-up, $(nproc) cores"
run_fleet "$runners"
run_fleet 0
