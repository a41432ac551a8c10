#!/usr/bin/env bash
# A no-op job burn-down on one PostgreSQL server: txfn's PostgresQueue against graphile-worker
# and pg-boss. Each run enqueues JOBS jobs in batches of ENQ_BATCH, then WORKERS workers take
# them in batches of up to BATCH and complete them without work; the figure is JOBS / (time
# from the first enqueue until the last completion is committed). Each run gets a fresh
# database; ROUNDS rounds alternate the order of the systems. Prints each run, then the median
# jobs/s per system and the lines
#   ratio txfn/graphile-worker: X
#   ratio txfn/pg-boss: Y
#
#   bench/compare_pg_queues.sh [build-dir]      (default: build; needs txfn_pg_queue_burndown)
#
# Worker concurrency (the same for all): txfn: WORKERS threads, each leasing up to BATCH calls
# per statement and ACKing them in one; graphile-worker: one pool with concurrency WORKERS and a
# local queue of BATCH jobs (fetched and locked at once), completions batched
# (completeJobBatchDelay 0); pg-boss: WORKERS work() loops with batchSize BATCH at its shortest
# polling interval (0.5 s: a loop waits out the rest of it after each batch).
#
# Peers: graphile-worker 0.17.3 (0.18 needs node 22) and pg-boss 10.4.2 (11 needs node 22),
# installed with npm into .deps/npm. Server: TXFN_TEST_PG if set (a unix-socket URL as
# scripts/pg-cluster prints), else a private one started in .deps/pg-bench and stopped after.
# SMOKE=1: 2,000 jobs, one round, txfn only (the ctest smoke run).
set -euo pipefail
HERE="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="${1:-build}"
if [[ "${SMOKE:-0}" == 1 ]]; then
  JOBS=2000 ROUNDS=1 SYSTEMS=txfn
fi
JOBS="${JOBS:-100000}" WORKERS="${WORKERS:-8}" BATCH="${BATCH:-100}"
ENQ_BATCH="${ENQ_BATCH:-1000}" ROUNDS="${ROUNDS:-3}"
SYSTEMS="${SYSTEMS:-txfn graphile-worker pg-boss}"
case $BUILD in /*) ;; *) BUILD="$HERE/$BUILD" ;; esac
BIN="$BUILD/bench/txfn_pg_queue_burndown"
[[ -x "$BIN" ]] || { echo "missing $BIN (ninja -C $BUILD txfn_pg_queue_burndown)" >&2; exit 1; }

NPM_DIR="$HERE/.deps/npm"
PEERS="graphile-worker@0.17.3 pg-boss@10.4.2 pg@8.16.3"
if [[ "$SYSTEMS" != txfn ]]; then
  stamp="$NPM_DIR/.installed"
  if [[ "$(cat "$stamp" 2>/dev/null)" != "$PEERS" ]]; then
    command -v npm >/dev/null || { echo "compare_pg_queues: npm is not installed" >&2; exit 1; }
    mkdir -p "$NPM_DIR"
    [[ -f "$NPM_DIR/package.json" ]] || echo '{"name":"txfn-bench-peers","private":true}' \
      >"$NPM_DIR/package.json"
    # shellcheck disable=SC2086  # PEERS is a list
    (cd "$NPM_DIR" && npm install --no-audit --no-fund --silent $PEERS >npm.log 2>&1) \
      || { cat "$NPM_DIR/npm.log" >&2; exit 1; }
    echo "$PEERS" >"$stamp"
  fi
fi

if [[ -n "${TXFN_TEST_PG:-}" ]]; then
  ADMIN_URL="$TXFN_TEST_PG"
else
  PG_DIR="$HERE/.deps/pg-bench"
  ADMIN_URL="$("$HERE/scripts/pg-cluster" start "$PG_DIR")"
  trap '"$HERE/scripts/pg-cluster" stop "$PG_DIR" >/dev/null 2>&1 || true' EXIT
fi
# The socket directory and user of the admin URL, for libpq and node-postgres URLs of a database.
read -r SOCK PGUSER_ < <(python3 -c '
import sys, urllib.parse as u
p = u.urlparse(sys.argv[1]); q = u.parse_qs(p.query)
print(q.get("host", [p.hostname or ""])[0], q.get("user", [p.username or "txfn"])[0])' "$ADMIN_URL")
export PGOPTIONS="-c client_min_messages=warning"
psql_admin() { psql "$ADMIN_URL" -qAt -v ON_ERROR_STOP=1 "$@" >/dev/null; }

# run SYSTEM DB: one burn-down in a fresh database DB; prints its result line.
run() {
  local system=$1 db=$2
  psql_admin -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
  local node_url="postgresql://$PGUSER_@/$db?host=$SOCK"
  case $system in
    txfn)
      "$BIN" "postgresql:///$db?host=$SOCK&user=$PGUSER_" --jobs "$JOBS" --workers "$WORKERS" \
        --batch "$BATCH" --enqueue-batch "$ENQ_BATCH" ;;
    graphile-worker)
      NODE_PATH="$NPM_DIR/node_modules" node "$HERE/bench/peers/graphile_worker_burndown.js" \
        "$node_url" "$JOBS" "$WORKERS" "$BATCH" "$ENQ_BATCH" ;;
    pg-boss)
      NODE_PATH="$NPM_DIR/node_modules" node "$HERE/bench/peers/pg_boss_burndown.js" \
        "$node_url" "$JOBS" "$WORKERS" "$BATCH" "$ENQ_BATCH" ;;
  esac
  psql_admin -c "DROP DATABASE $db WITH (FORCE)"
}

echo "burn-down of $JOBS no-op jobs, $WORKERS workers, batches of $BATCH (enqueue: $ENQ_BATCH)"
read -ra systems <<<"$SYSTEMS"
RESULTS=()
for round in $(seq "$ROUNDS"); do
  n=${#systems[@]}
  for i in $(seq 0 $((n - 1))); do
    system=${systems[$(((i + round - 1) % n))]}
    line="$(run "$system" "txfn_cmp_${system//-/_}_$round")"
    read -r _ _ _ enq _ work _ _ _ rate <<<"$line"
    echo "round $round $system: $rate jobs/s (enqueue ${enq}s, work ${work}s)"
    RESULTS+=("$system $rate")
  done
done
printf '%s\n' "${RESULTS[@]}" | python3 -c '
import statistics, sys
rates = {}
for line in sys.stdin:
    system, rate = line.split()
    rates.setdefault(system, []).append(float(rate))
med = {s: statistics.median(r) for s, r in rates.items()}
for s, m in med.items():
    print(f"median {s}: {m:.0f} jobs/s")
for peer in ("graphile-worker", "pg-boss"):
    if "txfn" in med and peer in med:
        print("ratio txfn/%s: %.2f" % (peer, med["txfn"] / med[peer]))
'
