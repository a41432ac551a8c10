#!/usr/bin/env bash
# End-to-end test of the txfn CLI: deploys examples/apps/bank into a temporary
# database, runs mutations and queries, checks outputs and exit codes; then
# runs `txfn serve` in the background and submits queued calls beside it.
# usage: cli_test.sh PATH/TO/txfn PATH/TO/examples/apps
set -uo pipefail
txfn=$1
apps=$2
tmp=$(mktemp -d)
server=""  # the pid of a `txfn serve` in the background, killed on any exit
cleanup() {
  if [ -n "$server" ]; then kill -KILL "$server" 2>/dev/null; wait "$server" 2>/dev/null; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT  # so that cleanup runs when ctest or a person stops the test
trap 'exit 143' TERM
db="$tmp/app.db"
source "$(dirname "$0")/cli_lib.sh"  # check, unquote
t() { "$txfn" --db="$db" "$@"; }

check help 0 'deploy --tenant NAME DIR' "$txfn" --help
check version 0 '^txfn [0-9]+\.[0-9]+\.[0-9]+$' "$txfn" --version
check no-command 2 'missing COMMAND' "$txfn"
check unknown-flag 2 'unknown flag --knd$' t run --knd=query --tenant=bank audit:total
check bad-flag-value 2 "Illegal value 'abc' specified for flag 'delay_ms'" \
  t submit --delay_ms=abc --tenant=bank accounts:open '{}'
check bad-flag-value-apart 2 "Illegal value 'x' specified for flag 'limit'" t calls --limit x
check flag-without-value 2 'flag --tenant needs a value' t tenants --tenant
# The same checks for the flags of a --flagfile (and of one it names), and a file not there.
printf '# limits\n  --limit=x\n' >"$tmp/bad.flags"
printf -- '--flagfile=%s\n' "$tmp/bad.flags" >"$tmp/outer.flags"
check flagfile-bad-value 2 "Illegal value 'x' specified for flag 'limit' \\(in --flagfile" \
  t calls --flagfile="$tmp/bad.flags"
check flagfile-nested-bad-value 2 "Illegal value 'x' .*bad.flags\\) \\(in --flagfile .*outer.flags" \
  t calls --flagfile "$tmp/outer.flags"
check flagfile-missing 2 'cannot read --flagfile' t tenants --flagfile="$tmp/no.flags"
printf -- '--limit=3\n' >"$tmp/good.flags"  # accepted: the command runs (no database yet)
check flagfile-good 1 'does not exist' t calls --tenant=bank --flagfile="$tmp/good.flags"
# A flag the command would ignore is bad usage, from a flag file too.
check flag-not-for-command 2 '^txfn: --table does not apply to run \(it is for export, import\)' \
  t run --table=x --tenant=bank audit:total
check flagfile-flag-not-for-command 2 '--limit does not apply to tenants \(it is for calls\)' \
  t tenants --flagfile="$tmp/good.flags"
check negated-flag-not-for-command 2 '--logs does not apply to submit' \
  t submit --nologs --tenant=bank audit:total
check create-not-for-backup 2 '--create does not apply to backup' t backup --create "$tmp/b.db"
# A new database has no tenant to run: --create there made an empty one, then "not found".
check create-not-for-run 2 '--create does not apply to run \(it is for deploy, tenants, serve\)' \
  t run --create --tenant=bank audit:total
check api-keys-without-listen 2 '--api_keys goes with --listen' t serve --api_keys=/dev/null
check api-key-without-server 2 '--api_key goes with --server' t run --api_key=k --tenant=b f:g
check server-not-for-command 2 '--server works with deploy, run, submit, call, cancel and calls, not tables' \
  "$txfn" tables --server=7 --tenant=bank
check db-with-server 2 '--db does not go with --server' t run --server=7 --tenant=bank f:g
check cancel-needs-id 2 'cancel: missing arguments' t cancel
check negated-non-bool 2 '--notable works with a bool flag' t tenants --notable
check negated-with-value 2 '--nocreate works with a bool flag' t tenants --nocreate=1
check unknown-command 2 "unknown command 'frobnicate'" t frobnicate
check deploy-needs-tenant 2 '--tenant is required' t deploy "$apps/bank"
# A mistyped --db is an error, and creates nothing, unless --create.
check no-db 1 "database '.*app\.db' does not exist \(pass --create to create it\)" \
  t deploy --tenant=bank "$apps/bank"
check no-db-run 1 "app\.db' does not exist: name one with --db, or make one with a first .txfn deploy" \
  t run --tenant=bank audit:total
# Without --db the default is named as such (a first run in an empty directory).
cd "$tmp" || exit 1
check no-db-default 1 "database 'txfn.db' \(the default: no --db was given\) does not exist" \
  "$txfn" run --tenant=bank audit:total
cd - >/dev/null || exit 1
check no-db-tenants 1 'does not exist' t tenants
check db-is-a-directory 1 "--db '.*' is a directory" "$txfn" --db="$tmp" --create tenants
if [ -e "$db" ]; then echo "FAIL no-db-created: $db exists"; failures=$((failures + 1)); else
  echo "ok   no-db-created"; fi
check deploy-missing-dir 1 'not a directory' t deploy --create --tenant=bank "$tmp/nope"
# A refused first deploy leaves neither a database nor an empty tenant.
mkdir -p "$tmp/bad" && echo 'export const broken = ;' >"$tmp/bad/m.js"
echo '{"tables": {}}' >"$tmp/bad/schema.json"
check first-deploy-refused 1 'm.js' t deploy --create --tenant=bank "$tmp/bad"
if ls "$tmp"/app.db* >/dev/null 2>&1; then echo "FAIL refused-created: $(ls "$tmp")"
  failures=$((failures + 1)); else echo "ok   refused-created-nothing"; fi
# ... and removes nothing that was there: a queue file left from an earlier database.
echo "earlier calls" >"$tmp/old.db.queue"
check refused-beside-a-queue 1 'm.js' "$txfn" --db="$tmp/old.db" deploy --create --tenant=b "$tmp/bad"
if [ "$(cat "$tmp/old.db.queue" 2>/dev/null)" != "earlier calls" ] || [ -e "$tmp/old.db" ]; then
  echo "FAIL refused-kept-queue: $(ls "$tmp")"; failures=$((failures + 1))
else echo "ok   refused-kept-queue"; fi
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
check bad-json 2 "ARGS_JSON \\{'a':1\\}: invalid JSON at offset 1.*field names in double quotes" \
  t run --tenant=bank audit:total "{'a':1}"
check args-not-object 2 'ARGS_JSON \[1\] must be a JSON object' t run --tenant=bank audit:total '[1]'
# JSON the shell split into words (no quotes) is one argument too many: say so.
check unquoted-json 2 "run: too many arguments \(ARGS_JSON is one argument: quote it" \
  t run --tenant=bank accounts:open '{"owner":' '"ada"}'
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
check broken-new-tenant 1 'm.js' t deploy --tenant=other "$tmp/bad"
check tenants-after-refused 0 '^bank$' t tenants
if [ "$last" != "bank" ]; then echo "FAIL no-empty-tenant: $last"; failures=$((failures + 1))
else echo "ok   no-empty-tenant"; fi
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

# A table's id follows the order the tenant's tables were made in: a tenant that gained a table
# in a second deploy numbers its tables otherwise than one deployed the final schema at once.
# The import goes by the table names the export writes: refused (nothing written), or with
# --remap_ids new ids of this tenant's tables, with the references to them rewritten.
mkdir -p "$tmp/grow1" "$tmp/grow2"
echo '{"tables": {"notes": {}}}' >"$tmp/grow1/schema.json"
echo '{"tables": {"notes": {}, "archive": {}}}' >"$tmp/grow2/schema.json"
cat >"$tmp/grow1/a.js" <<'JS'
import { query, mutation } from "txfn/server";
export const add = mutation(async (ctx, { table, text, ref }) =>
  ctx.db.insert(table, ref ? { text, ref, nested: [{ ref }] } : { text }));
export const list = query(async (ctx, { table }) => ctx.db.query(table).collect());
export const follow = query(async (ctx, { table }) => {
  const [doc] = await ctx.db.query(table).collect();
  return [(await ctx.db.get(doc.ref)).text, (await ctx.db.get(doc.nested[0].ref)).text];
});
JS
cp "$tmp/grow1/a.js" "$tmp/grow2/a.js"
g() { "$txfn" --db="$tmp/grown.db" "$@"; }
h() { "$txfn" --db="$tmp/fresh.db" "$@"; }
g --create deploy --tenant=t "$tmp/grow1" >/dev/null && g deploy --tenant=t "$tmp/grow2" >/dev/null
note=$(g run --tenant=t a:add '{"table": "notes", "text": "a note"}' | unquote)
g run --tenant=t a:add "{\"table\": \"archive\", \"text\": \"archived\", \"ref\": \"$note\"}" >/dev/null
check export-names-tables 0 '"_table":"archive"' g export --tenant=t
g export --tenant=t >"$tmp/grown.jsonl"
h --create deploy --tenant=t "$tmp/grow2" >/dev/null
check import-renumbered 1 "is of table '(notes|archive)', whose id here is [0-9]+, not [0-9]+ .*--remap_ids" \
  h import --tenant=t "$tmp/grown.jsonl"
check import-renumbered-nothing-written 0 '^\[\]$' h run --tenant=t a:list '{"table": "notes"}'
check import-remapped 0 'imported 2 document' h import --tenant=t --remap_ids "$tmp/grown.jsonl"
check remapped-notes 0 '"text":"a note"' h run --tenant=t a:list '{"table": "notes"}'
if grep -q "\"_id\":\"$note\"" <<<"$last"; then
  echo "FAIL remapped-id: the note kept its id"; failures=$((failures + 1))
else echo "ok   remapped-id"; fi
check remapped-archive 0 '"text":"archived"' h run --tenant=t a:list '{"table": "archive"}'
check remapped-references 0 '^\["a note","a note"\]$' h run --tenant=t a:follow '{"table": "archive"}'
printf '{"_id": "%s", "_table": 7, "text": "x"}\n' "$note" >"$tmp/badtable.jsonl"
check import-table-not-a-string 1 'line 1: .*_table must be a table name' \
  h import --tenant=t "$tmp/badtable.jsonl"
printf '{"_id": "%s", "_table": "ghosts", "text": "x"}\n' "$note" >"$tmp/ghosts.jsonl"
check import-unknown-table 1 "line 1: .*table 'ghosts', which the tenant does not have" \
  h import --tenant=t "$tmp/ghosts.jsonl"
# An export without table names (txfn before they were written) goes by its ids' tables.
sed 's/,"_table":"[a-z]*"//' "$tmp/bank.jsonl" >"$tmp/unnamed.jsonl"
"$txfn" --db="$tmp/unnamed.db" --create deploy --tenant=bank "$apps/bank" >/dev/null
check import-unnamed 0 'imported 3 document' \
  "$txfn" --db="$tmp/unnamed.db" import --tenant=bank "$tmp/unnamed.jsonl"
if grep -q '_table' "$tmp/unnamed.jsonl"; then
  echo "FAIL unnamed-input: still names tables"; failures=$((failures + 1))
else echo "ok   unnamed-input"; fi
# ... but not among lines that name theirs, nor with --remap_ids.
{ head -n 1 "$tmp/unnamed.jsonl"; tail -n +2 "$tmp/bank.jsonl"; } >"$tmp/mixed.jsonl"
check import-mixed 1 'line 1: the document names no table' \
  "$txfn" --db="$tmp/unnamed.db" import --tenant=bank "$tmp/mixed.jsonl"
sed 's/,"_table":"[a-z]*"//' "$tmp/grown.jsonl" >"$tmp/grown-unnamed.jsonl"
check import-unnamed-remapped 1 'line 1: .*--remap_ids needs every document' \
  h import --tenant=t --remap_ids "$tmp/grown-unnamed.jsonl"
check import-remap-one-table 1 'import every table at once' \
  h import --tenant=t --remap_ids --table=notes "$tmp/grown.jsonl"

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

# Queued calls: a tiny app (a counter, a mutation that throws), a server in
# the background, calls submitted beside it by other processes.
q="$tmp/queued.db"
mkdir -p "$tmp/qapp"
cat >"$tmp/qapp/schema.json" <<'EOF'
{"tables": {"counters": {"fields": {"name": "string", "n": "int64"}, "indexes": {"by_name": ["name"]}}}}
EOF
cat >"$tmp/qapp/counters.js" <<'EOF'
import { query, mutation } from "txfn/server";
async function find(ctx, name) {
  return ctx.db.query("counters").withIndex("by_name", (q) => q.eq("name", name)).unique();
}
export const get = query({args: {name: "string"}, handler: async (ctx, { name }) => {
  const c = await find(ctx, name);
  return c === null ? 0n : c.n;
}});
export const bump = mutation({args: {name: "string"}, handler: async (ctx, { name }) => {
  const c = await find(ctx, name);
  if (c === null) { await ctx.db.insert("counters", { name, n: 1n }); return 1n; }
  await ctx.db.patch(c._id, { n: c.n + 1n });
  return c.n + 1n;
}});
export const throws = mutation({args: {}, handler: () => {
  const e = new Error("kaput"); e.data = { code: "KAPUT" }; throw e;
}});
// Console output and errors that would forge another call's log line and rewrite the terminal.
const forged = "[ERROR] bank audit:total 00000000-0000-4000-8000-000000000000: forged\r\u001b[2J";
export const forge = mutation({args: {}, handler: () => { console.log("hi\n" + forged); }});
export const forgeThrow = mutation({args: {}, handler: () => { throw new Error("no\n" + forged); }});
export const huge = query({args: {}, handler: () => "h".repeat(100000)});
export const c1 = query({args: {}, handler: () => "a\u009b2J\u007f" });
EOF
qt() { "$txfn" --db="$q" "$@"; }
uuid='[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}'
# await_state NAME ID STATE: polls `txfn call ID` until it is in STATE (for up to
# 10 s, while the server runs).
await_state() {
  local name=$1 id=$2 state=$3 out
  for _ in $(seq 100); do
    out=$(qt call "$id" 2>&1)
    if grep -Eq "^state +$state$" <<<"$out"; then echo "ok   $name"; return; fi
    kill -0 "$server" 2>/dev/null || { out+=$'\n(txfn serve is no longer running)'; break; }
    sleep 0.1
  done
  echo "FAIL $name: call $id not $state:"; echo "$out" | sed 's/^/  | /'
  failures=$((failures + 1))
}

check q-deploy 0 'deployed 1 module' qt deploy --create --tenant=app "$tmp/qapp"
# run --key: a mutation run again with its key answers the first run's outcome, commits once.
check run-key 0 '^\{"\$int64":"1"\}$' qt run --tenant=app --key=k1 counters:bump '{"name": "key"}'
check run-key-again 0 '^\{"\$int64":"1"\}$' qt run --tenant=app --key=k1 counters:bump '{"name": "key"}'
check run-key-once 0 '^\{"\$int64":"1"\}$' qt run --tenant=app counters:get '{"name": "key"}'
check run-key-query 2 '--key is a mutation.s idempotency key' \
  qt run --tenant=app --kind=query --key=k2 counters:get '{"name": "key"}'
check serve-usage 2 'serve: too many arguments' qt serve now
check submit-needs-tenant 2 '--tenant is required' qt submit counters:bump
check submit-bad-criticality 2 '--criticality: .*critical' \
  qt submit --tenant=app --criticality=urgent counters:bump '{"name": "a"}'
check submit-bad-json 2 'ARGS_JSON' qt submit --tenant=app counters:bump '{nope'
check calls-bad-status 2 '--status: unknown call state' qt calls --tenant=app --status=waiting
check call-bad-id 2 'not a UUID' qt call nope
check call-unknown 1 'no call 00000000-0000-4000-8000-000000000000' \
  qt call 00000000-0000-4000-8000-000000000000
# Submitted before any server runs: the call waits in the queue.
check submit-early 0 "^$uuid$" qt submit --tenant=app counters:bump '{"name": "a"}'
early=$last
check call-pending 0 '^state +pending$' qt call "$early"
check calls-pending 0 "^$early +pending +counters:bump" qt calls --tenant=app --status=pending
check calls-backlog 0 'counters:bump +1 +1 +0$' qt calls --tenant=app
# A backup takes the queue along: the pending call is in the copy.
check q-backup 0 'backed up its queue .*queued\.db\.queue to .*qbackup\.db\.queue' \
  qt backup "$tmp/qbackup.db"
check q-backup-call 0 '^state +pending$' "$txfn" --db="$tmp/qbackup.db" call "$early"
check q-backup-queue-exists 1 'qbackup2\.db\.queue.* exists' \
  bash -c 'touch "$1.queue" && "$2" --db="$3" backup "$1"' _ "$tmp/qbackup2.db" "$txfn" "$q"

"$txfn" --db="$q" serve --quiet 2>"$tmp/serve.log" &
server=$!
check submit 0 "^$uuid$" qt submit --tenant=app counters:bump '{"name": "a"}'
a=$last
check submit-options 0 "^$uuid$" qt submit --tenant=app --criticality=high --quota=opportunistic \
  --deadline_ms=60000 --client=cli counters:bump '{"name": "a"}'
b=$last
check submit-key 0 "^$uuid$" qt submit --tenant=app --key=once counters:bump '{"name": "a"}'
k=$last
check submit-key-again 0 "^$k$" qt submit --tenant=app --key=once counters:bump '{"name": "a"}'
check submit-key-other-call 1 "idempotency key 'once' names call $k of counters:bump" \
  qt submit --tenant=app --key=once counters:throws
check submit-throws 0 "^$uuid$" qt submit --tenant=app counters:throws
bad=$last
check submit-forge 0 "^$uuid$" qt submit --tenant=app counters:forge
forge=$last
check submit-forge-throw 0 "^$uuid$" qt submit --tenant=app counters:forgeThrow
forge_throw=$last
check submit-unknown 1 'counters:nope' qt submit --tenant=app counters:nope
check submit-bad-args 1 'INVALID_ARGUMENT.*name' qt submit --tenant=app counters:bump '{"nope": 1}'
check submit-huge 0 "^$uuid$" qt submit --tenant=app counters:huge
huge=$last
check submit-delayed 0 "^$uuid$" \
  qt submit --tenant=app --delay_ms=3600000 counters:bump '{"name": "z"}'
delayed=$last
await_state early-succeeded "$early" succeeded
await_state a-succeeded "$a" succeeded
await_state b-succeeded "$b" succeeded
await_state key-succeeded "$k" succeeded
await_state throws-failed "$bad" failed
await_state forge-succeeded "$forge" succeeded
await_state forge-throw-failed "$forge_throw" failed
check call 0 '^tenant +app$' qt call "$a"
check call-result 0 '^result +\{"\$int64":"[1-4]"\}$' qt call "$a"
check call-error 0 '^error +UNKNOWN: Uncaught Error: kaput' qt call "$bad"
check call-error-data 0 '^data +\{"code":"KAPUT"\}$' qt call "$bad"
await_state huge-succeeded "$huge" succeeded
check call-result-not-kept 0 '^result +\(not kept: 1000[0-9][0-9] bytes, over max_recorded_result_bytes\)$' \
  qt call "$huge"
check call-delayed 0 '^due at +2[0-9]{3}-' qt call "$delayed"
check call-deadline 0 '^deadline +2[0-9]{3}-' qt call "$delayed"
check calls 0 "^$a +succeeded +counters:bump +1 +\{\"\\\$int64\":\"[1-4]\"\}$" qt calls --tenant=app
n=$(qt calls --tenant=app --status=succeeded | grep -Ec ' succeeded ')
if [ "$n" -eq 6 ]; then echo "ok   calls-succeeded"; else
  echo "FAIL calls-succeeded: $n, want 6"; failures=$((failures + 1)); fi
check calls-failed 0 "^$bad +failed +counters:throws +1 +UNKNOWN: Uncaught Error: kaput$" \
  qt calls --tenant=app --status=failed
check calls-function 0 'counters:throws' qt calls --tenant=app --function=counters:throws
if grep -q ' counters:bump ' <<<"$last"; then
  echo "FAIL calls-function-only:"; echo "$last" | sed 's/^/  | /'; failures=$((failures + 1))
else echo "ok   calls-function-only"; fi
check calls-limit 0 '^\(2; --after=[0-9a-f-]{36} shows the next, --limit=0 all\)$' \
  qt calls --tenant=app --limit=2
# Paging: the first two and the rest after the second are every call, in id order, once.
ids() { grep -Eo '^[0-9a-f-]{36} ' | tr -d ' '; }
all_ids=$(qt calls --tenant=app --limit=0 | ids)
first=$(qt calls --tenant=app --limit=2 | ids)
rest=$(qt calls --tenant=app --limit=0 --after="$(tail -1 <<<"$first")" | ids)
if [ "$(printf '%s\n%s' "$first" "$rest")" = "$all_ids" ] && [ "$(wc -l <<<"$all_ids")" -gt 3 ]; then
  echo "ok   calls-after"
else
  echo "FAIL calls-after: first=[$first] rest=[$rest] all=[$all_ids]"; failures=$((failures + 1))
fi
check calls-after-bad 2 '--after: .*not a UUID' qt calls --tenant=app --after=nope
# Only the delayed call is left, not due; the refused submits enqueued nothing.
check calls-backlog-after 0 '^counters:bump +1 +0 +0$' qt calls --tenant=app
# Cancelling: the delayed call leaves the queue; a second cancel says how it ended.
check cancel-bad-id 2 'cancel: .*not a UUID' qt cancel nope
check cancel-other-tenant 1 "no call $delayed of tenant nobody" qt cancel --tenant=nobody "$delayed"
check cancel 0 "^cancelled $delayed$" qt cancel "$delayed"
check call-cancelled 0 '^state +cancelled$' qt call --tenant=app "$delayed"
check call-other-tenant 1 "no call $delayed of tenant nobody" qt call --tenant=nobody "$delayed"
check cancel-again 1 'already cancelled' qt cancel --tenant=app "$delayed"
check cancel-ended 1 'already succeeded' qt cancel "$a"
check calls-backlog-cancelled 0 'queue backlog \(all tenants\): none' qt calls --tenant=app
check counted 0 '^\{"\$int64":"4"\}$' qt run --tenant=app counters:get '{"name": "a"}'
# A mutation committed beside the server by another process: the server's
# next query of the tenant sees it.
check run-beside 0 '^\{"\$int64":"5"\}$' qt run --tenant=app counters:bump '{"name": "a"}'
check submit-get 0 "^$uuid$" qt submit --tenant=app counters:get '{"name": "a"}'
got=$last
await_state get-succeeded "$got" succeeded
check get-sees-run-beside 0 '^result +\{"\$int64":"5"\}$' qt call "$got"

# SIGTERM: a graceful stop within a few seconds, exit 0.
kill -TERM "$server"
for _ in $(seq 50); do kill -0 "$server" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$server" 2>/dev/null; then
  echo "FAIL serve-stops: still running 5 s after SIGTERM"; failures=$((failures + 1))
else
  wait "$server"; rc=$?
  server=""
  if [ "$rc" -eq 0 ] && grep -q '^stopped: 0 calls still running$' "$tmp/serve.log"; then
    echo "ok   serve-stops"
  else
    echo "FAIL serve-stops: exit $rc, log:"; sed 's/^/  | /' "$tmp/serve.log"; failures=$((failures + 1))
  fi
fi
# Each line of a call's console output carries that call's header, its control characters
# escaped: no line another call's, no raw carriage return or escape sequence.
forged='\[ERROR\] bank audit:total [-0-9a-f]+: forged\\x0d\\x1b\[2J$'
check serve-log-lines 0 "^\[log\] app counters:forge $forge: $forged" cat "$tmp/serve.log"
if grep -q '^\[ERROR\] bank' "$tmp/serve.log" || grep -q $'[\r\x1b]' "$tmp/serve.log"; then
  echo "FAIL serve-log-forged:"; cat -A "$tmp/serve.log" | sed 's/^/  | /'; failures=$((failures + 1))
else echo "ok   serve-log-forged"; fi
check run-log-lines 0 "^\[log\] $forged" qt run --tenant=app counters:forge
# Errors too (continuation lines indented), and JSON escapes DEL and C1 controls.
unforged() {  # NAME: $last has no line of its own starting "[ERROR] bank", no raw CR or ESC
  if grep -q '^\[ERROR\] bank' <<<"$last" || grep -q $'[\r\x1b]' <<<"$last"; then
    echo "FAIL $1:"; cat -A <<<"$last" | sed 's/^/  | /'; failures=$((failures + 1))
  else echo "ok   $1"; fi
}
check run-error-lines 1 "^  $forged" qt run --tenant=app counters:forgeThrow
unforged run-error-unforged
check call-error-lines 0 "^ {10}$forged" qt call "$forge_throw"
unforged call-error-unforged
check calls-error-line 0 "$forge_throw +failed +counters:forgeThrow" qt calls --tenant=app --status=failed
unforged calls-error-unforged
check json-c1 0 '^"a\\u009b2J\\u007f"$' qt run --tenant=app counters:c1

if [ "$failures" -ne 0 ]; then echo "$failures check(s) failed"; exit 1; fi
echo "all checks passed"
