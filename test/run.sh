#!/bin/sh
# run.sh LOGDIR SUITE...: run test suites one after another and summarise.
#
# A suite is a test program (cmocka: build/test/unit_*, api_*, stress_*,
# api_*.glibc) or a test/*.sh script (run with sh).  Each suite's whole
# output goes to LOGDIR/<name>.log; the terminal gets one line per suite
# (PASS or FAIL, the number of checks that passed and were skipped, the
# time; under a passing suite, its FLAKY lines: checks that passed when run
# again) and, for a failed suite, the last lines of its log, then a total.
# Exit 0 only if every suite passed.  The environment (XALLOC_SO, BUILD,
# SRC, ...) passes through to the suites.
set -u
logdir=$1
shift
mkdir -p "$logdir" || exit 1
now() { date +%s.%N; }
suites=0 failed=0 checks=0 skips=0 failed_names=
t_all=$(now)
for s in "$@"; do
    name=${s##*/}
    log=$logdir/$name.log
    printf '%-34s ' "$name"
    t0=$(now)
    case $s in
    *.sh) sh "$s" >"$log" 2>&1 ;;
    *) "$s" >"$log" 2>&1 ;;
    esac
    rc=$?
    secs=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
    # cmocka reports each passed test as "[       OK ]", the scripts as "ok:";
    # the scripts report a check that cannot run here as "skip:".
    n=$(grep -c -e '^\[       OK \]' -e '^ok:' "$log")
    # (cmocka lists each skipped test twice, and a count line)
    k=$(grep -e '^skip' -e '^\[  SKIPPED \]' "$log" | grep -v 'test(s)' | sort -u | wc -l)
    suites=$((suites + 1)) checks=$((checks + n)) skips=$((skips + k))
    detail="$n passed"
    [ "$k" -gt 0 ] && detail="$detail, $k skipped"
    if [ $rc -eq 0 ]; then
        printf 'PASS  %5s s  %s\n' "$secs" "$detail"
        # a check that failed once and passed when run again says so
        grep -e '^FLAKY' "$log" | head -5 | sed 's/^/    /'
    else
        failed=$((failed + 1)) failed_names="$failed_names $name"
        printf 'FAIL  %5s s  %s; exit %s; log: %s\n' "$secs" "$detail" "$rc" "$log"
        grep -e '^FAIL' -e '^FLAKY' -e '^\[  FAILED  \]' -e '^\[  ERROR   \]' "$log" | head -10 | sed 's/^/    /'
        echo "    --- last lines of the log:"
        tail -8 "$log" | sed 's/^/    /'
    fi
done
secs=$(awk -v a="$t_all" -v b="$(now)" 'BEGIN { printf "%.0f", b - a }')
if [ $failed -eq 0 ]; then
    echo "== all $suites suites passed: $checks checks, $skips skipped, $secs s (logs in $logdir)"
else
    echo "== $failed of $suites suites FAILED:$failed_names ($checks checks passed, $secs s; logs in $logdir)"
    exit 1
fi
