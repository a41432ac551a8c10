# Shared by the CLI tests (cli_test.sh, remote_cli_test.sh). Source it; do not run it.
failures=0

# check NAME EXPECTED_EXIT PATTERN CMD...: runs CMD, expects the exit status
# and PATTERN (grep -E) in its stdout+stderr; the output is left in $last.
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

# The string value of an id-like JSON result ("...").
unquote() { sed -e 's/^"//' -e 's/"$//'; }
