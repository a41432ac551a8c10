#!/usr/bin/env bash
# End-to-end test of the txfn CLI: deploys examples/apps/bank into a temporary
# database, runs mutations and queries, checks outputs and exit codes.
# usage: cli_test.sh PATH/TO/txfn PATH/TO/examples/apps
set -uo pipefail
txfn=$1
apps=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
db="$tmp/app.db"
failures=0

# check NAME EXPECTED_EXIT PATTERN CMD...: runs CMD, expects the exit status
# and PATTERN (grep -E) in its stdout+stderr.
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
# JSON helpers: the string value of an id-like result ("...").
unquote() { sed -e 's/^"//' -e 's/"$//'; }

check help 0 'deploy --tenant NAME DIR' "$txfn" --help
check no-command 2 'missing COMMAND' "$txfn"
check unknown-command 2 "unknown command 'frobnicate'" t frobnicate
check deploy-needs-tenant 2 '--tenant is required' t deploy "$apps/bank"
# A mistyped --db is an error, and creates nothing, unless --create.
check no-db 1 "database '.*app\.db' does not exist \(pass --create to create it\)" \
  t deploy --tenant=bank "$apps/bank"
check no-db-run 1 'does not exist' t run --tenant=bank audit:total
check no-db-tenants 1 'does not exist' t tenants
if [ -e "$db" ]; then echo "FAIL no-db-created: $db exists"; failures=$((failures + 1)); else
  echo "ok   no-db-created"; fi
check deploy-missing-dir 1 'not a directory' t deploy --create --tenant=bank "$tmp/nope"
check deploy 0 'deployed 4 module\(s\) and 2 table\(s\) to tenant bank \(new tenant\)' \
  t deploy --create --tenant=bank "$apps/bank"
check redeploy 0 'deployed 4 module' t deploy --tenant=bank "$apps/bank"
check tenants 0 '^bank$' t tenants

check open-a 0 '^"[0-9a-z]{32}"$' t run --tenant=bank accounts:open '{"owner": "ada", "initial": 1000}'
a=$(unquote <<<"$last")
check open-b 0 '^"[0-9a-z]{32}"$' t run --tenant=bank --mutation accounts:open '{"owner": "bob"}'
b=$(unquote <<<"$last")
check deposit 0 '"\$int64":"250"' t run --tenant=bank accounts:deposit "{\"id\": \"$b\", \"amount\": 250}"
check transfer 0 '"fromBalance":\{"\$int64":"900"\}' \
  t run --tenant=bank transfers:transfer "{\"from\": \"$a\", \"to\": \"$b\", \"amount\": 100}"
check total 0 '^\{"accounts":2,"total":\{"\$int64":"1250"\}\}$' t run --tenant=bank audit:total
check total-as-query 0 '"total"' t run --tenant=bank --kind=query audit:total
check history 0 '"direction":"in"' t run --tenant=bank transfers:history "{\"account\": \"$b\"}"

# Errors: insufficient funds (a JS exception with its stack), nothing written.
check insufficient 1 'insufficient funds.*' \
  t run --tenant=bank transfers:transfer "{\"from\": \"$a\", \"to\": \"$b\", \"amount\": 5000}"
check stack 1 'transfers\.js:[0-9]+' \
  t run --tenant=bank transfers:transfer "{\"from\": \"$a\", \"to\": \"$b\", \"amount\": 5000}"
check error-data 1 'error data: \{"account":"[0-9a-z]{32}","balance":\{"\$int64":"900"\},"code":"INSUFFICIENT_FUNDS"' \
  t run --tenant=bank transfers:transfer "{\"from\": \"$a\", \"to\": \"$b\", \"amount\": 5000}"
if grep -q 'txfn:bootstrap' <<<"$last"; then
  echo "FAIL no-bootstrap-frames: the stack shows txfn's own frames:"; echo "$last" | sed 's/^/  | /'
  failures=$((failures + 1))
else
  echo "ok   no-bootstrap-frames"
fi
check unchanged 0 '"total":\{"\$int64":"1250"\}' t run --tenant=bank audit:total
check a-balance 0 '"balance":\{"\$int64":"900"\}' t run --tenant=bank accounts:get "{\"id\": \"$a\"}"
check mutation-as-query 1 'is a mutation, called as a query' \
  t run --tenant=bank --kind=query accounts:open '{"owner": "x"}'
check query-as-mutation 1 'is a query, called as a mutation' \
  t run --tenant=bank --kind=mutation audit:total
check bad-args 1 'INVALID_ARGUMENT.*unexpected argument' \
  t run --tenant=bank accounts:get '{"id": "x", "nope": 1}'
check bad-json 2 'ARGS_JSON' t run --tenant=bank audit:total '{nope'
check no-export 1 'NOT_FOUND' t run --tenant=bank audit:nothing
check no-tenant 1 'NOT_FOUND' t run --tenant=nobody audit:total
check bad-kind 2 '--kind must be' t run --tenant=bank --kind=sideways audit:total

check tables 0 'accounts +2 +by_id, by_owner\(owner\)' t tables --tenant=bank
check tables-time 0 \
  'last commit 2[0-9]{3}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9]\.[0-9]{3}Z \(ts [0-9]+\)' \
  t tables --tenant=bank
check tables-transfers 0 'transfers +1 ' t tables --tenant=bank
check export 0 '"owner":"ada"' t export --tenant=bank
n=$(t export --tenant=bank | wc -l)
[ "$n" -eq 3 ] && echo "ok   export-lines" || { echo "FAIL export-lines: $n, want 3"; failures=$((failures + 1)); }
check export-table 0 '"amount"' t export --tenant=bank --table=transfers
check export-bad-table 1 "no table 'nope'" t export --tenant=bank --table=nope

# A refused deploy (a module that does not compile) keeps the old version serving.
mkdir -p "$tmp/broken" && cp -r "$apps/bank/." "$tmp/broken/"
echo 'export const broken = ;' >"$tmp/broken/audit.js"
check broken-deploy 1 'audit' t deploy --tenant=bank "$tmp/broken"
check still-serving 0 '"total":\{"\$int64":"1250"\}' t run --tenant=bank audit:total

# Export -> import round trip into another database (same schema, same table ids).
t export --tenant=bank >"$tmp/bank.jsonl"
copy="$tmp/copy.db"
c() { "$txfn" --db="$copy" "$@"; }
check import-needs-tenant 2 '--tenant is required' c import "$tmp/bank.jsonl"
check import-no-db 1 'does not exist' c import --tenant=bank "$tmp/bank.jsonl"
check create-empty 0 '^$' c --create tenants
check import-no-tenant 1 'deploy its schema first' c import --tenant=bank "$tmp/bank.jsonl"
check copy-deploy 0 'deployed 4 module' c deploy --tenant=bank "$apps/bank"
printf '{"_id": "nope"}\n' >"$tmp/bad.jsonl"
check import-bad-id 1 'line 1: malformed document id' c import --tenant=bank "$tmp/bad.jsonl"
{ head -n 1 "$tmp/bank.jsonl"; echo '{oops'; } >"$tmp/bad2.jsonl"
check import-bad-json 1 'line 2' c import --tenant=bank "$tmp/bad2.jsonl"
check import-wrong-table 1 "belongs to table" c import --tenant=bank --table=transfers "$tmp/bank.jsonl"
check import-nothing-written 0 '"accounts":0' c run --tenant=bank audit:total
check import 0 'imported 3 document\(s\) into tenant bank in 1 transaction' \
  c import --tenant=bank "$tmp/bank.jsonl"
check import-again 1 'line 1: .*already exists' c import --tenant=bank "$tmp/bank.jsonl"
check import-stdin 0 'imported 0 document' c import --tenant=bank - </dev/null
c export --tenant=bank >"$tmp/copy.jsonl"
if cmp -s "$tmp/bank.jsonl" "$tmp/copy.jsonl"; then echo "ok   round-trip"; else
  echo "FAIL round-trip: export of the import differs"; diff "$tmp/bank.jsonl" "$tmp/copy.jsonl"
  failures=$((failures + 1)); fi
check copy-total 0 '^\{"accounts":2,"total":\{"\$int64":"1250"\}\}$' c run --tenant=bank audit:total
check copy-history 0 '"direction":"in"' c run --tenant=bank transfers:history "{\"account\": \"$b\"}"

# Backup of the live database; a new engine opens the copy.
check backup 0 'backed up .* to .*backup.db \([0-9]+ bytes\)' t backup "$tmp/backup.db"
check backup-exists 1 'exists' t backup "$tmp/backup.db"
check backup-no-db 1 'does not exist' "$txfn" --db="$tmp/none.db" backup "$tmp/b2.db"
check backup-usage 2 'missing arguments' t backup
check backup-total 0 '"total":\{"\$int64":"1250"\}' \
  "$txfn" --db="$tmp/backup.db" run --tenant=bank audit:total
check backup-writes 0 '"\$int64":"360"' "$txfn" --db="$tmp/backup.db" run --tenant=bank \
  accounts:deposit "{\"id\": \"$b\", \"amount\": 10}"
check original-unchanged 0 '"total":\{"\$int64":"1250"\}' t run --tenant=bank audit:total

if [ "$failures" -ne 0 ]; then echo "$failures check(s) failed"; exit 1; fi
echo "all checks passed"
