#!/usr/bin/env bash
# Multi-process test of remote runners: three txfn-runner processes on loopback serve the
# runs of `txfn run --runners=...` clients on one SQLite file (the engine in each client
# commits). A runner killed with SIGKILL mid-way is skipped (no client call fails); a
# SIGTERM drains and exits 0; with no runner left, a call fails with a clear error.
# usage: remote_cli_test.sh PATH/TO/txfn PATH/TO/txfn-runner PATH/TO/examples/apps
set -uo pipefail
txfn=$1
runner_bin=$2
apps=$3
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
db="$tmp/app.db"
failures=0

check() {
  local name=$1 want_rc=$2 pattern=$3; shift 3
  local out rc
  out=$("$@" 2>&1); rc=$?
  if [ "$rc" -ne "$want_rc" ] || ! grep -Eq -- "$pattern" <<<"$out"; then
    echo "FAIL $name: exit $rc (want $want_rc), output:"; echo "$out" | sed 's/^/  | /'
    echo "  (wanted /$pattern/)"
    failures=$((failures + 1))
  else
    echo "ok   $name"
  fi
  last=$out
}
t() { "$txfn" --db="$db" "$@"; }
unquote() { sed -e 's/^"//' -e 's/"$//'; }

check deploy 0 'deployed' t deploy --create --tenant=bank "$apps/bank"
check open-a 0 '^"[0-9a-z]{32}"$' t run --tenant=bank accounts:open '{"owner": "ada", "initial": 1000}'
a=$(unquote <<<"$last")
check open-b 0 '^"[0-9a-z]{32}"$' t run --tenant=bank accounts:open '{"owner": "bob", "initial": 1000}'
b=$(unquote <<<"$last")

# start_runner N: starts runner N on a free port; sets ports[N] and pids[N].
ports=()
start_runner() {
  local n=$1 out="$tmp/runner$1.out"
  "$runner_bin" --db="$db" --listen=127.0.0.1:0 --workers=1 >"$out" 2>&1 &
  pids[$n]=$!
  for _ in $(seq 100); do
    ports[$n]=$(sed -n 's/^txfn-runner: serving on port \([0-9]*\)$/\1/p' "$out")
    [ -n "${ports[$n]}" ] && return 0
    sleep 0.05
  done
  echo "FAIL runner $n did not start:"; cat "$out"; exit 1
}
for n in 0 1 2; do start_runner $n; done
runners="127.0.0.1:${ports[0]},127.0.0.1:${ports[1]},127.0.0.1:${ports[2]}"
r() { t run --tenant=bank --runners="$runners" "$@"; }

check remote-query 0 '"total":\{"\$int64":"2000"\}' r audit:total
check remote-mutation 0 '"fromBalance":\{"\$int64":"900"\}' \
  r transfers:transfer "{\"from\": \"$a\", \"to\": \"$b\", \"amount\": 100}"
check remote-error 1 'insufficient funds' \
  r transfers:transfer "{\"from\": \"$a\", \"to\": \"$b\", \"amount\": 5000}"

# Kill every runner but one, one at a time, with transfers in between: none fails.
for victim in 0 1; do
  kill -KILL "${pids[$victim]}"; wait "${pids[$victim]}" 2>/dev/null
  for i in 1 2 3; do
    check "after-kill-$victim-transfer-$i" 0 '"fromBalance"' \
      r transfers:transfer "{\"from\": \"$a\", \"to\": \"$b\", \"amount\": 10}"
  done
done
check total-after-kills 0 '"total":\{"\$int64":"2000"\}' r audit:total
check balance-after-kills 0 '"balance":\{"\$int64":"840"\}' r accounts:get "{\"id\": \"$a\"}"

# SIGTERM drains and exits 0; then no runner is left.
kill -TERM "${pids[2]}"
if wait "${pids[2]}"; then echo "ok   runner-sigterm-exit-0"; else
  echo "FAIL runner-sigterm-exit-0"; failures=$((failures + 1)); fi
grep -q 'stopped (' "$tmp/runner2.out" && echo "ok   runner-stopped-line" || {
  echo "FAIL runner-stopped-line"; failures=$((failures + 1)); }
check no-runner 1 'no runner' r audit:total
check no-db 1 'does not exist' "$runner_bin" --db="$tmp/nope.db" --listen=127.0.0.1:0

if [ "$failures" -ne 0 ]; then echo "$failures check(s) failed"; exit 1; fi
echo "all checks passed"
