# Helpers for CLI tests (sourced, not run): each script ends with `finish`, which prints RESULT.
P=0; F=0
ok()   { P=$((P+1)); }
bad()  { F=$((F+1)); echo "FAIL $(basename "$0"): $*" >&2; }
check() { local desc=$1; shift; if "$@"; then ok; else bad "$desc"; fi; }
# expect_exit CODE DESC CMD...: run CMD, require exit CODE and (for 2) a message on stderr
expect_exit() { local code=$1 desc=$2; shift 2; local err; err=$("$@" 2>&1 >/dev/null); local rc=$?
  if [ $rc -eq "$code" ] && { [ "$code" -ne 2 ] || [ -n "$err" ]; }; then ok; else bad "$desc: exit $rc (want $code): $err"; fi; }
finish() { echo "RESULT $(basename "$0") $P $F"; [ $F -eq 0 ]; }
