#!/usr/bin/env bash
# Compares a fresh context per request in Node.js's `vm` module with txfn's
# BM_RunQueryFreshContext and BM_RunQueryHardenedContext (txfn's default: a
# frozen context kept per isolate, new module instances per request) — same
# trivial query: one get by id from an in-memory table. Prints the rates
# (requests/s of wall time, one thread) and txfn / node, and the same from
# process CPU time per request (V8's background threads included), which is
# what to compare on a busy shared machine.
#
# The machines are noisy, so it runs ROUNDS (default 3) rounds of node then
# txfn back to back, prints each round's ratios and then their medians.
#
#   bench/compare_node.sh [build-dir]   (default: build, RelWithDebInfo)
set -euo pipefail
ROUNDS="${ROUNDS:-3}"
BUILD="${1:-build}"
HERE="$(cd "$(dirname "$0")/.." && pwd)"
BIN="$HERE/$BUILD/bench/txfn_bench_runner"
[[ -x "$BIN" ]] || { echo "missing $BIN (cmake --build $BUILD --target txfn_bench_runner)" >&2; exit 1; }

run_node() {
  node - <<'JS'
const vm = require('vm');
const docs = new Map([['id1', {_id: 'id1', text: 'hello'}]]);
const src = `
  const query = (handler) => handler;
  const get = query(async (ctx, {id}) => ctx.db.get(id));
  get;`;
const script = new vm.Script(src, {filename: 'q.js', produceCachedData: true});
const cached = new vm.Script(src, {filename: 'q.js', cachedData: script.createCachedData()});
async function once() {
  const context = vm.createContext({});
  const fn = cached.runInContext(context);
  const ctx = {db: {get: async (id) => structuredClone(docs.get(id) ?? null)}};
  return fn(ctx, {id: 'id1'});
}
(async () => {
  for (let i = 0; i < 200; ++i) await once();  // warm up
  const n = 6000;  // ~2 s, like the txfn side
  const t0 = process.hrtime.bigint();
  const c0 = process.cpuUsage();
  for (let i = 0; i < n; ++i) await once();
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  const c = process.cpuUsage(c0);
  console.log((n / secs).toFixed(1), ((c.user + c.system) / n).toFixed(1));
})();
JS
}

RATIOS=()
for round in $(seq "$ROUNDS"); do
  read -r NODE_RATE NODE_CPU <<<"$(run_node)"
  read -r TXFN_RATE TXFN_CPU HARD_RATE HARD_CPU < <("$BIN" \
      --benchmark_filter='^BM_RunQuery(Fresh|Hardened)Context$' \
      --benchmark_format=json --benchmark_min_time=2 2>/dev/null | python3 -c '
import json, sys
b = {x["name"]: x for x in json.load(sys.stdin)["benchmarks"]}
f, h = b["BM_RunQueryFreshContext"], b["BM_RunQueryHardenedContext"]
print("%.1f %.1f %.1f %.1f" % (f["req_per_s"], f["proc_cpu_us"], h["req_per_s"], h["proc_cpu_us"]))')
  echo "round $round: node vm (new context per request) ${NODE_RATE} req/s, ${NODE_CPU} us CPU/req;" \
       "txfn BM_RunQueryFreshContext ${TXFN_RATE} req/s, ${TXFN_CPU} us CPU/req;" \
       "txfn BM_RunQueryHardenedContext ${HARD_RATE} req/s, ${HARD_CPU} us CPU/req"
  RATIOS+=("$(python3 -c "print('%.3f %.3f %.3f %.3f' % (${TXFN_RATE} / ${NODE_RATE}, ${NODE_CPU} / ${TXFN_CPU}, ${HARD_RATE} / ${NODE_RATE}, ${NODE_CPU} / ${HARD_CPU}))")")
done
printf '%s\n' "${RATIOS[@]}" | python3 -c '
import statistics, sys
rows = [tuple(map(float, line.split())) for line in sys.stdin if line.strip()]
med = lambda i: statistics.median(r[i] for r in rows)
print("ratio txfn fresh/node (median of %d rounds): %.2f (wall), %.2f (CPU); rounds: %s" % (
    len(rows), med(0), med(1), ", ".join("%.2f/%.2f" % r[:2] for r in rows)))
print("ratio txfn hardened/node (median of %d rounds): %.2f (wall), %.2f (CPU); rounds: %s" % (
    len(rows), med(2), med(3), ", ".join("%.2f/%.2f" % r[2:] for r in rows)))'
