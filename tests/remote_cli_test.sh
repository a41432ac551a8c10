#!/usr/bin/env bash
# Multi-process test of remote runners and the server API, on loopback and one SQLite file.
# Part 1: three txfn-runner processes serve the runs of `txfn run --runners=...` clients (the
# engine in each client commits); runners killed with SIGKILL mid-way are skipped (no client
# call fails); SIGTERM drains and exits 0; with no runner left, a call fails clearly.
# Part 2: `txfn serve --listen --api_keys --runners` with three new runners, clients with
# `--server` and API keys: access control, parallel transfers while the tenant's runner is
# SIGKILLed, totals unchanged; restarted on its port, the runner gets back the tenant and no
# other (rendezvous; seen in the server's per-runner metrics); a submitted call runs, metrics,
# logs; SIGTERM stops the server.
# Run on the SQLite file, then (with TXFN_TEST_PG) on a PostgreSQL database.
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
source "$(dirname "$0")/cli_lib.sh"  # check, unquote
t() { "$txfn" --db="$db" "$@"; }

check deploy 0 'deployed' t deploy --create --tenant=bank "$apps/bank"
check open-a 0 '^"[0-9a-z]{32}"$' t run --tenant=bank accounts:open '{"owner": "ada", "initial": 1000}'
a=$(unquote <<<"$last")
check open-b 0 '^"[0-9a-z]{32}"$' t run --tenant=bank accounts:open '{"owner": "bob", "initial": 1000}'
b=$(unquote <<<"$last")

# start_runner N [DB] [PORT]: starts runner N on PORT (default: a free one); sets ports[N],
# mports[N] (its metrics port) and pids[N].
ports=()
mports=()
start_runner() {
  local n=$1 out="$tmp/runner$1.out"
  "$runner_bin" --db="${2:-$db}" --listen="127.0.0.1:${3:-0}" --workers=1 \
    --metrics=127.0.0.1:0 >"$out" 2>&1 &
  pids[$n]=$!
  for _ in $(seq 100); do
    ports[$n]=$(sed -n 's/^txfn-runner: serving on port \([0-9]*\)$/\1/p' "$out")
    mports[$n]=$(sed -n 's/^txfn-runner: metrics on port \([0-9]*\)$/\1/p' "$out")
    [ -n "${ports[$n]}" ] && [ -n "${mports[$n]}" ] && return 0
    sleep 0.05
  done
  echo "FAIL runner $n did not start:"; cat "$out"; exit 1
}
# verdict NAME CMD...: a check on CMD's exit status alone.
verdict() {
  if "${@:2}"; then echo "ok   $1"; else echo "FAIL $1"; failures=$((failures + 1)); fi
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
check runner-port-out-of-range 1 'port from 0 to 65535' "$runner_bin" --db="$db" --listen=99999

# ---- Part 2: the engine as a server, its runs on runners --------------------------------
# fetch PORT PATH: an HTTP GET on loopback (bash's /dev/tcp: no curl needed).
fetch() {
  exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
  printf 'GET %s HTTP/1.0\r\n\r\n' "$2" >&3
  cat <&3
  exec 3<&-
}
# Written as an editor on another system may: a byte order mark, CRLF line ends, a tab.
printf '\xef\xbb\xbf# keys\r\nadmin\tadm1n\r\ntenant bank2 bank-key\r\ntenant other other-key\r\n' \
  >"$tmp/keys"
printf 'admin one\ntenant other other-key\nadmin two\n' >"$tmp/two-admins"
check serve-two-admin-keys 1 'two-admins:3: a second admin key \(the first is on line 1\)' \
  "$txfn" --db="$db" serve --quiet --listen=0 --api_keys="$tmp/two-admins"
printf 'admin one\ntenant other one\n' >"$tmp/admin-as-tenant"
check serve-tenant-key-is-admin-key 1 "of tenant 'other' is the admin key" \
  "$txfn" --db="$db" serve --quiet --listen=0 --api_keys="$tmp/admin-as-tenant"
# A directory, a file without keys, a key no gRPC header can carry: refused, not served.
mkdir -p "$tmp/keys-dir"
check serve-keys-directory 1 "--api_keys: cannot read '$tmp/keys-dir'" \
  "$txfn" --db="$db" serve --quiet --listen=0 --api_keys="$tmp/keys-dir"
printf '# none yet\n\n' >"$tmp/no-keys"
check serve-no-keys 1 'no-keys. has no keys' \
  "$txfn" --db="$db" serve --quiet --listen=0 --api_keys="$tmp/no-keys"
printf 'admin caf\xc3\xa9\n' >"$tmp/non-ascii-key"
check serve-non-ascii-key 1 'non-ascii-key:1: a key must be printable ASCII' \
  "$txfn" --db="$db" serve --quiet --listen=0 --api_keys="$tmp/non-ascii-key"
check serve-cap-needs-listen 2 'serve: --max_calls_per_tenant goes with --listen' \
  "$txfn" --db="$db" serve --quiet --max_calls_per_tenant=4
check serve-cap-takes-every-thread 1 'max_calls_per_tenant is 9; 0 \(no cap\) or up to max_threads - 2 \(8\)' \
  "$txfn" --db="$db" serve --quiet --listen=0 --api_keys="$tmp/keys" --max_threads=10 \
  --max_calls_per_tenant=9
check serve-call-time-not-positive 1 '--max_call_seconds is -1; it must be at least 1e-9' \
  "$txfn" --db="$db" serve --quiet --listen=0 --api_keys="$tmp/keys" --max_call_seconds=-1
check serve-call-time-needs-listen 2 'serve: --max_call_seconds goes with --listen' \
  "$txfn" --db="$db" serve --quiet --max_call_seconds=5
check serve-buffer-too-small 1 '--max_buffer_mib is 64; it must be from 128 to 2\^40' \
  "$txfn" --db="$db" serve --quiet --listen=0 --api_keys="$tmp/keys" --max_buffer_mib=64
check serve-buffer-needs-listen 2 'serve: --max_buffer_mib goes with --listen' \
  "$txfn" --db="$db" serve --quiet --max_buffer_mib=512

# On a unix socket: its path is printed (gRPC reports port 1 for it), and a client reaches it.
"$txfn" --db="$db" serve --quiet --listen="unix:$tmp/api.sock" --api_keys="$tmp/keys" \
  >"$tmp/serve-unix.out" 2>&1 &
unix_serve=$!
for _ in $(seq 200); do grep -q '^listening on' "$tmp/serve-unix.out" && break; sleep 0.05; done
check serve-unix-listening 0 "^listening on unix:$tmp/api.sock$" cat "$tmp/serve-unix.out"
check serve-unix-query 0 '"total":\{"\$int64":"' \
  "$txfn" --server="unix:$tmp/api.sock" --api_key=adm1n run --tenant=bank audit:total
kill -TERM "$unix_serve"; wait "$unix_serve" 2>/dev/null

# served DB LABEL: three runners and `txfn serve` on DB; a new tenant bank2 deployed and
# used through the server. Checks are named LABEL-....
served() {
  local db=$1 label=$2 first=${#pids[@]} n
  for n in $first $((first + 1)) $((first + 2)); do start_runner "$n" "$db"; done
  local runners="127.0.0.1:${ports[$first]},127.0.0.1:${ports[$((first + 1))]}"
  runners+=",127.0.0.1:${ports[$((first + 2))]}"
  "$txfn" --db="$db" serve --quiet --listen=0 --api_keys="$tmp/keys" --runners="$runners" \
    --metrics=127.0.0.1:0 >"$tmp/serve-$label.out" 2>&1 &
  local serve=$!
  pids+=("$serve")
  local port=""
  for _ in $(seq 200); do
    port=$(sed -n 's/^listening on port \([0-9]*\)$/\1/p' "$tmp/serve-$label.out")
    [ -n "$port" ] && break
    sleep 0.05
  done
  [ -n "$port" ] || { echo "FAIL $label: serve did not start:"; cat "$tmp/serve-$label.out"; exit 1; }
  s() { "$txfn" --server="127.0.0.1:$port" "$@"; }

  check "$label-deploy-needs-admin" 1 'PERMISSION_DENIED' \
    s --api_key=bank-key deploy --tenant=bank2 "$apps/bank"
  check "$label-deploy" 0 'deployed 4 module.*new tenant' \
    s --api_key=adm1n deploy --tenant=bank2 "$apps/bank"
  check "$label-open-a" 0 '^"[0-9a-z]{32}"$' s --api_key=bank-key run --tenant=bank2 \
    accounts:open '{"owner": "ada", "initial": 1000}'
  local a b
  a=$(unquote <<<"$last")
  check "$label-open-b" 0 '^"[0-9a-z]{32}"$' s --api_key=bank-key run --tenant=bank2 \
    accounts:open '{"owner": "bob", "initial": 1000}'
  b=$(unquote <<<"$last")
  check "$label-no-key" 2 '--server needs an API key: --api_key=KEY or .*TXFN_API_KEY' \
    s run --tenant=bank2 audit:total
  check "$label-empty-key" 2 '--server needs an API key' env TXFN_API_KEY= "$txfn" \
    --server="127.0.0.1:$port" run --tenant=bank2 audit:total
  check "$label-bad-key" 1 'UNAUTHENTICATED' s --api_key=nope run --tenant=bank2 audit:total
  check "$label-other-key" 1 'PERMISSION_DENIED' s --api_key=other-key run --tenant=bank2 \
    transfers:transfer "{\"from\": \"$a\", \"to\": \"$b\", \"amount\": 1}"
  # A bare port means 127.0.0.1, on the client as on the server; a second server on the
  # port in use is refused (gRPC's SO_REUSEPORT let the two share it).
  check "$label-bare-port" 0 '"total":\{"\$int64":"2000"\}' \
    "$txfn" --server="$port" --api_key=bank-key run --tenant=bank2 audit:total
  check "$label-port-in-use" 1 'cannot listen on [^ ]+: Address already in use' \
    "$txfn" --db="$db" serve --quiet --listen="$port" --api_keys="$tmp/keys"
  check "$label-query" 0 '"total":\{"\$int64":"2000"\}' \
    s --api_key=bank-key run --tenant=bank2 audit:total
  check "$label-error" 1 'insufficient funds' s --api_key=bank-key run --tenant=bank2 \
    transfers:transfer "{\"from\": \"$a\", \"to\": \"$b\", \"amount\": 5000}"
  # Cancelling over the server: another tenant's key finds no such call.
  check "$label-submit-later" 0 '^[0-9a-f-]{36}$' s --api_key=bank-key submit --tenant=bank2 \
    --delay_ms=3600000 audit:total
  local later=$last
  # Listing over the server: the key's tenant's calls, without the queue's (every tenant's)
  # backlog; another tenant's is refused.
  check "$label-calls" 0 "^$later +pending +audit:total " \
    s --api_key=bank-key calls --tenant=bank2 --status=pending
  verdict "$label-calls-no-backlog" bash -c '! grep -q "queue backlog" <<<"$1"' _ "$last"
  check "$label-calls-other-tenant" 1 'PERMISSION_DENIED' \
    s --api_key=other-key calls --tenant=bank2
  check "$label-cancel-other-key" 1 "no call $later in server 127.0.0.1:$port" \
    s --api_key=other-key cancel "$later"
  check "$label-cancel" 0 "^cancelled $later$" s --api_key=bank-key cancel "$later"
  check "$label-call-cancelled" 0 '^state +cancelled$' \
    s --api_key=bank-key call --tenant=bank2 "$later"

  # Where a tenant's runs go, from the server's metrics (txfn_remote_runner_*{runner=...}).
  local metrics_port trio="$first $((first + 1)) $((first + 2))"
  metrics_port=$(sed -n 's/^metrics on port \([0-9]*\)$/\1/p' "$tmp/serve-$label.out")
  runs_on() {  # runs_on N: runs runner N answered the server
    fetch "$metrics_port" /metrics |
      sed -n "s/^txfn_remote_runner_runs_total{runner=\"127.0.0.1:${ports[$1]}\"} //p"
  }
  owner() {  # owner TENANT: the runners (numbers) that ran one query of TENANT
    local before=() n found=""
    for n in $trio; do before[$n]=$(runs_on "$n"); done
    s --api_key=adm1n run --tenant="$1" audit:total >/dev/null 2>&1 || { echo "failed"; return; }
    for n in $trio; do [ "$(runs_on "$n")" != "${before[$n]}" ] && found+="$n"; done
    echo "${found:-none}"
  }
  # The tenant's runner, and a bystander: a tenant another runner ranks first (deployed until
  # one is: each lands on the tenant's runner with probability 1/3).
  local victim bystander="" bystander_runner="" i
  victim=$(owner bank2)
  verdict "$label-tenant-has-one-runner" grep -Eq '^[0-9]+$' <<<"$victim"
  [[ "$victim" =~ ^[0-9]+$ ]] || victim=$first
  for i in 1 2 3 4 5 6 7 8; do
    s --api_key=adm1n deploy --tenant="by$i" "$apps/bank" >/dev/null 2>&1 || continue
    bystander_runner=$(owner "by$i")
    if [[ "$bystander_runner" =~ ^[0-9]+$ ]] && [ "$bystander_runner" != "$victim" ]; then
      bystander="by$i"
      break
    fi
  done
  verdict "$label-found-a-bystander" [ -n "$bystander" ]

  # Four clients transfer in parallel while the runner serving the tenant is killed; every
  # call must succeed.
  local clients=() c p
  for c in 0 1 2 3; do
    ( for i in $(seq 8); do
        if [ $((c % 2)) -eq 0 ]; then from=$a to=$b; else from=$b to=$a; fi
        s --api_key=bank-key run --tenant=bank2 transfers:transfer \
          "{\"from\": \"$from\", \"to\": \"$to\", \"amount\": 3}" >/dev/null \
          2>"$tmp/client$c.err" || { echo "client $c call $i failed"; cat "$tmp/client$c.err"; exit 1; }
      done ) &
    clients+=($!)
  done
  sleep 0.3
  echo "     (killing runner $victim, the tenant's)"
  kill -KILL "${pids[$victim]}"; wait "${pids[$victim]}" 2>/dev/null
  local parallel_ok=1
  for p in "${clients[@]}"; do wait "$p" || parallel_ok=0; done
  if [ "$parallel_ok" = 1 ]; then echo "ok   $label-parallel-transfers-with-a-runner-killed"; else
    echo "FAIL $label-parallel-transfers-with-a-runner-killed"; failures=$((failures + 1)); fi
  check "$label-total-after" 0 '"total":\{"\$int64":"2000"\}' \
    s --api_key=bank-key run --tenant=bank2 audit:total

  # Rendezvous: only the dead runner's tenant moved; the bystander stayed. Restarted on its
  # port, the runner is back in the ranking once the server's health watch sees it, and gets
  # back its tenant, and nothing else.
  local moved
  moved=$(owner bank2)
  verdict "$label-tenant-moved-while-down" grep -Eqv "^($victim|failed|none)$" <<<"$moved"
  verdict "$label-bystander-stayed-while-down" [ "$(owner "$bystander")" = "$bystander_runner" ]
  start_runner "$victim" "$db" "${ports[$victim]}"
  local back=0
  for _ in $(seq 100); do
    if fetch "$metrics_port" /metrics |
      grep -q "^txfn_remote_runner_healthy{runner=\"127.0.0.1:${ports[$victim]}\"} 1"; then
      back=1
      break
    fi
    sleep 0.05
  done
  verdict "$label-restarted-runner-healthy-again" [ "$back" = 1 ]
  verdict "$label-tenant-back-on-restarted-runner" [ "$(owner bank2)" = "$victim" ]
  verdict "$label-bystander-never-moved" [ "$(owner "$bystander")" = "$bystander_runner" ]
  # The restarted process itself served it (its own metrics; it started from zero).
  check "$label-restarted-runner-ran" 0 '^txfn_runner_runs_total 1$' fetch "${mports[$victim]}" /metrics

  check "$label-submit" 0 '^[0-9a-f-]{36}$' s --api_key=bank-key submit --tenant=bank2 \
    transfers:transfer "{\"from\": \"$a\", \"to\": \"$b\", \"amount\": 1}"
  local id=$last state=""
  for _ in $(seq 100); do
    state=$(s --api_key=bank-key call "$id" 2>&1)
    grep -q 'succeeded' <<<"$state" && break
    sleep 0.1
  done
  if grep -q 'succeeded' <<<"$state"; then echo "ok   $label-submitted-call-ran"; else
    echo "FAIL $label-submitted-call-ran:"; echo "$state"; failures=$((failures + 1)); fi
  check "$label-call-other-tenant" 1 'no call' s --api_key=other-key call "$id"

  # Metrics: the engine's, the remote runners' and the Functions service's, in Prometheus
  # text format.
  # The killed runner was found by a failed run or by its unanswered pings, whichever first.
  check "$label-metrics-runners" 0 \
    'txfn_remote_runner_(failures|pings_missed)_total\{runner="[0-9.:]+"\} [1-9]' \
    fetch "$metrics_port" /metrics
  check "$label-metrics-engine" 0 '^txfn_mutations_total [1-9]' fetch "$metrics_port" /metrics
  check "$label-metrics-rpc" 0 'txfn_rpc_seconds_bucket\{le="\+Inf",method="query"\} [1-9]' \
    fetch "$metrics_port" /metrics
  check "$label-metrics-refused" 0 'txfn_rpc_refused_total\{code="unauthenticated"\} [1-9]' \
    fetch "$metrics_port" /metrics
  check "$label-metrics-404" 0 '404 Not Found' fetch "$metrics_port" /nothing
  check "$label-logs-refusals" 0 'txfn \[warn\] Query for tenant .bank2. .* refused' \
    cat "$tmp/serve-$label.out"

  kill -TERM "$serve"
  if wait "$serve"; then echo "ok   $label-serve-sigterm-exit-0"; else
    echo "FAIL $label-serve-sigterm-exit-0"; cat "$tmp/serve-$label.out"; failures=$((failures + 1)); fi
  for n in $first $((first + 1)) $((first + 2)); do kill -TERM "${pids[$n]}" 2>/dev/null; done
}

served "$db" sqlite
# The same on PostgreSQL (the issue's set-up), in a database of its own, when a server runs.
if [ -n "${TXFN_TEST_PG:-}" ]; then
  pgdb="txfn_remote_cli_$$"
  export PGOPTIONS="--client-min-messages=warning"
  psql "$TXFN_TEST_PG" -qc "DROP DATABASE IF EXISTS $pgdb" -c "CREATE DATABASE $pgdb" >/dev/null
  pgurl=$(sed "s|:///[^?]*?|:///$pgdb?|" <<<"$TXFN_TEST_PG")
  served "$pgurl" postgres
  psql "$TXFN_TEST_PG" -qc "DROP DATABASE IF EXISTS $pgdb WITH (FORCE)" >/dev/null
elif [ -n "${CI:-}" ]; then
  echo "FAIL CI=true but TXFN_TEST_PG is not set"; failures=$((failures + 1))
fi

if [ "$failures" -ne 0 ]; then echo "$failures check(s) failed"; exit 1; fi
echo "all checks passed"
