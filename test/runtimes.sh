#!/bin/sh
# runtimes.sh: real runtimes' own test suites under LD_PRELOAD=$XALLOC_SO, in
# the default mode and with XALLOC_CONF=secure:true (issue 14):
#
#  * CPython 3.11's regression tests (the modules in test/runtimes/cpython.txt:
#    threads, fork, subprocesses, multiprocessing, signals, asyncio, gc,
#    containers, C libraries) with PYTHONMALLOC=malloc, so that every Python
#    object is a malloc block; regrtest with 4 workers and its per-module
#    --timeout (faulthandler prints every thread's stack and the module fails);
#  * GLib's installed tests (test/runtimes/glib.txt: threads, locks, thread
#    pools, spawning, main loops, GVariant, containers, GSlice, GObject
#    refcounting) with G_SLICE=always-malloc, 3 at a time, each under timeout.
#
# A hang is a failure: its stacks (CPython) or its output (GLib) are printed,
# and whatever the hung test left behind is killed with its process group.
# Each suite's run must pass as a whole; "xalloc: " on any output fails it too.
# A module or test program that fails without a word from xalloc runs once
# more on its own: passing then, it is reported as FLAKY (both outputs kept).
# The selection passes without the preload on Debian 12 (as root, offline);
# the data files say why each left-out test is left out.
#
# Needs (Debian 12): python3.11 libpython3.11-testsuite libglib2.0-tests
# Env (set by `make check-preload`): XALLOC_SO, XALLOC_A, BUILD, SRC.  Optional:
#   RUNTIMES_QUICK=1    the subset marked q in the data files (under a minute
#                       a mode, instead of 3)
#   RUNTIMES_MODES      the modes to run, default "default secure"; "none" runs
#                       without the preload (reference times, or to tell
#                       whether a failure is xalloc's)
#   RUNTIMES_TIMEOUT    seconds one CPython test module may take, default 240
#   RUNTIMES_JOBS       CPython regrtest workers, default 4
#   RUNTIMES_IGNORE     more CPython test cases to skip (regrtest --ignore
#                       patterns, space-separated), e.g. while a fix is pending
# Logs, JUnit XML and per-module / per-test times: $BUILD/runtimes.d/
# (cpython.MODE.log, cpython.times, glib.MODE/NAME/out, glib.times).

# SC2086: the Exec lines of GLib's .test files are word-split on purpose.
# shellcheck disable=SC2086
set -u
. "$SRC/test/lib/common.sh"
tu_setup runtimes
export LC_ALL=C.UTF-8

PY=/usr/bin/python3.11
PYLIB=/usr/lib/python3.11/test
GBIN=/usr/libexec/installed-tests/glib
GTEST=/usr/share/installed-tests/glib
DATA=$SRC/test/runtimes
QUICK=${RUNTIMES_QUICK:-0}
MODES=${RUNTIMES_MODES:-default secure}
MOD_TIMEOUT=${RUNTIMES_TIMEOUT:-240}
JOBS=${RUNTIMES_JOBS:-4}
GLIB_JOBS=3
GLIB_TIMEOUT=60
# the whole regrtest run: its workers are killed at 1.5 x MOD_TIMEOUT; this
# only guards against the main process itself hanging
PY_GUARD=$((MOD_TIMEOUT * 2 + 120))

T_START=$(date +%s)
secs() { echo $(($(date +%s) - $1)); }

# entries KIND FILE: the names on the lines of FILE selected for this run
# (KIND "module": lines "q NAME..." and, unless quick, "f NAME..."; KIND
# "ignore": the patterns of "ignore PAT" lines), comments stripped
entries() {
    sed -e 's/#.*//' -e 's/[[:space:]]*$//' "$2" | awk -v kind="$1" -v quick="$QUICK" '
        kind == "ignore" && $1 == "ignore" { print $2; next }
        kind == "module" && ($1 == "q" || ($1 == "f" && quick != "1")) {
            $1 = ""; sub(/^ /, ""); print }'
}

# set RT_PRE and RT_CONF (the LD_PRELOAD and XALLOC_CONF of the tests) for MODE
set_mode() {
    case $1 in
    none) RT_PRE='' RT_CONF='' ;;
    default) RT_PRE=$XALLOC_SO RT_CONF='' ;;
    secure) RT_PRE=$XALLOC_SO RT_CONF=secure:true ;;
    *) echo "FAIL: unknown mode '$1' in RUNTIMES_MODES (none, default, secure)"; exit 1 ;;
    esac
    export RT_PRE RT_CONF
}

# Lines xalloc writes when it reports a misuse, a bad option or a failure.
xalloc_said() { grep -E '^xalloc: ' "$@" 2>/dev/null | head -5; }

# ---- CPython -------------------------------------------------------------------
cpython_ready=1
if [ ! -x "$PY" ] || [ ! -f "$PYLIB/libregrtest/main.py" ]; then
    fail "cpython: $PY or its test suite ($PYLIB) is missing; install the Debian packages: python3.11 libpython3.11-testsuite"
    cpython_ready=0
else
    entries module "$DATA/cpython.txt" >"$W/cpython.tests"
    entries ignore "$DATA/cpython.txt" >"$W/cpython.ignore"
    for pat in ${RUNTIMES_IGNORE:-}; do echo "$pat"; done >>"$W/cpython.ignore"
fi

# Per-module times from regrtest's JUnit XML: the sum of the module's test-case
# times (set-up of classes and modules not counted); one column per mode.
cpython_times() {
    "$PY" -I - "$W" "$@" <<'EOF' >"$W/cpython.times"
import collections, os, sys, xml.etree.ElementTree as ET
w, modes = sys.argv[1], sys.argv[2:]
with open(os.path.join(w, "cpython.tests")) as f:
    selected = set(f.read().split())
cols, order = {}, []
for m in modes:
    f = os.path.join(w, "cpython.%s.xml" % m)
    col = {}
    try:
        root = ET.parse(f).getroot()
    except (OSError, ET.ParseError):
        continue
    name = None
    for suite in root.iter("testsuite"):
        # the module: the selected one among the case ids' module parts
        # ("test.test_fork1.X.y", "ctypes.test.test_x.X.y"); a module can
        # write several suites in a row (test_xml_etree_c runs test_xml_etree's
        # cases), so a suite without one belongs to the module before it
        names = collections.Counter()
        total = 0.0
        for case in suite.iter("testcase"):
            parts = case.get("name", "").split(".")
            for n in (parts[1] if len(parts) > 1 else "", "test_" + parts[0]):
                if n in selected:
                    names[n] += 1
                    break
            total += float(case.get("time") or 0)
        if names:
            name = names.most_common(1)[0][0]
        if name is None:
            continue
        col[name] = col.get(name, 0.0) + total
        if name not in order:
            order.append(name)
    cols[m] = col
shown = [m for m in modes if m in cols]
print("%-28s" % "module (s)" + "".join("%10s" % m for m in shown))
order.sort(key=lambda n: -max(cols[m].get(n, 0) for m in shown))
for n in order:
    print("%-28s" % n + "".join("%10s" % ("%.1f" % cols[m][n] if n in cols[m] else "-")
                                  for m in shown))
EOF
}

# cpython_invoke LOG XML MODULE...: one regrtest run in the mode set by
# set_mode; sets rc.  The tests run in the background in timeout's process
# group; once the run is over, the group is killed: a test that timed out
# can leave a hung child behind.
cpython_invoke() {
    ilog=$1 ixml=$2
    shift 2
    timeout -k 30 "$PY_GUARD" env -u LD_PRELOAD -u XALLOC_CONF \
        ${RT_PRE:+"LD_PRELOAD=$RT_PRE"} ${RT_CONF:+"XALLOC_CONF=$RT_CONF"} PYTHONMALLOC=malloc \
        "$PY" -m test -j"$JOBS" --timeout "$MOD_TIMEOUT" --tempdir "$W/cpython.$mode.tmp" \
        --junit-xml "$ixml" --ignorefile "$W/cpython.ignore" \
        "$@" </dev/null >"$ilog" 2>&1 &
    pid=$!
    wait "$pid"
    rc=$?
    kill -KILL -"$pid" 2>/dev/null
    rm -rf "$W/cpython.$mode.tmp"
}

run_cpython() {
    mode=$1
    log=$W/cpython.$mode.log
    t0=$(date +%s)
    if [ -n "$RT_PRE" ]; then
        # is the preload active in this interpreter?
        if ! env -u XALLOC_CONF LD_PRELOAD="$RT_PRE" ${RT_CONF:+"XALLOC_CONF=$RT_CONF"} "$PY" -I -c \
            'import sys; sys.exit("libxalloc" not in open("/proc/self/maps").read())' \
            >"$W/cpython.$mode.probe" 2>&1; then
            fail "cpython [$mode]: libxalloc is not mapped into a preloaded $PY:"
            sed 's/^/    /' "$W/cpython.$mode.probe" | head -10
            return
        fi
    fi
    # shellcheck disable=SC2046
    cpython_invoke "$log" "$W/cpython.$mode.xml" $(cat "$W/cpython.tests")
    rerun_ok=0
    # A module that failed or hung gets one more run on its own: one that
    # passes then is reported as FLAKY (with both logs kept), not hidden;
    # one that fails again fails the suite.
    if [ $rc -ne 0 ] && [ -z "$(xalloc_said "$log")" ]; then
        again=$(sed -n '/^[0-9]* tests\{0,1\} failed:/,/^$/p' "$log" | tail -n +2 | tr -s ' \n' ' ')
        if [ -n "${again# }" ]; then
            cpython_invoke "$log.rerun" "$W/cpython.$mode.rerun.xml" $again
            if [ $rc -eq 0 ] && grep -q '^Tests result: SUCCESS' "$log.rerun" && [ -z "$(xalloc_said "$log.rerun")" ]; then
                echo "FLAKY: cpython [$mode]:$again failed in the full run and passed on its own; logs: $log $log.rerun"
                sed -n '/Timeout ([0-9:]*)!/,/^$/p' "$log" | grep -E 'File ".*/test/.*test[A-Za-z0-9_]*$' | head -3 | sed 's/^/    /'
                rerun_ok=1
            else
                cp "$log.rerun" "$log"
                [ $rc -eq 0 ] && rc=1
            fi
        fi
    fi
    dt=$(secs "$t0")
    nmod=$(wc -l <"$W/cpython.tests" | tr -d ' ')
    said=$(xalloc_said "$log")
    if { [ $rerun_ok -eq 1 ] || { [ $rc -eq 0 ] && grep -q '^Tests result: SUCCESS' "$log"; }; } && [ -z "$said" ]; then
        ncase=$(grep -o 'testcase ' "$W/cpython.$mode.xml" 2>/dev/null | wc -l | tr -d ' ')
        ok "cpython [$mode]: $nmod modules, $ncase test cases passed in ${dt}s"
        return
    fi
    case $rc in
    124 | 137) why="the whole run hung (killed after ${PY_GUARD}s)" ;;
    0) why="xalloc reported something" ;;
    *) why="exit $rc" ;;
    esac
    fail "cpython [$mode]: $why after ${dt}s; log: $log"
    [ -n "$said" ] && echo "$said" | sed 's/^/    /'
    # the failed modules and, for each module that timed out, the test method
    # that was running
    sed -n '/^[0-9]* tests\{0,1\} failed:/,/^$/p' "$log" | sed 's/^/    /'
    awk '/Timeout \([0-9:]*\)!/ { hung = 1; next }
         hung && match($0, /File ".*\/test_[^\/"]*\.py", line [0-9]+ in test[A-Za-z0-9_]*/) {
            s = substr($0, RSTART, RLENGTH); sub(/.*\/test\//, "", s)
            sub(/", line /, ":", s); sub(/ in /, " ", s)
            print "    timed out in " s "()"; hung = 0 }' "$log"
    grep -E '^(FAIL|ERROR): ' "$log" | head -20 | sed 's/^/    /'
    echo "    --- tail of $log:"
    tail -n 30 "$log" | sed 's/^/    /'
}

# ---- GLib ------------------------------------------------------------------------
glib_ready=1
if [ ! -d "$GBIN" ] || [ ! -f "$GTEST/thread.test" ]; then
    fail "glib: GLib's installed tests ($GBIN) are missing; install the Debian package: libglib2.0-tests"
    glib_ready=0
else
    entries module "$DATA/glib.txt" >"$W/glib.tests"
    # one test: glib-one.sh DIR NAME [ARGS] writes DIR/NAME.res: "NAME RC MS"
    cat >"$W/glib-one.sh" <<EOF
dir=\$1 name=\$2
shift 2
exe=\$(sed -n 's/^Exec=//p' "$GTEST/\$name.test" 2>/dev/null)
if [ -z "\$exe" ]; then echo "\$name 127 0" >"\$dir/\$name.res"; exit 0; fi
d=\$dir/\$name
mkdir -p "\$d/home" "\$d/tmp"
t0=\$(date +%s%N)
cd "\$d" || exit 1
timeout -k 5 $GLIB_TIMEOUT env -u LD_PRELOAD -u XALLOC_CONF \${RT_PRE:+"LD_PRELOAD=\$RT_PRE"} \\
    \${RT_CONF:+"XALLOC_CONF=\$RT_CONF"} G_SLICE=always-malloc HOME="\$d/home" TMPDIR="\$d/tmp" \\
    XDG_RUNTIME_DIR="\$d/tmp" \$exe "\$@" </dev/null >"\$d/out" 2>&1 &
pid=\$!
wait \$pid
rc=\$?
kill -KILL -\$pid 2>/dev/null
echo "\$name \$rc \$(( (\$(date +%s%N) - t0) / 1000000 ))" >"\$dir/\$name.res"
EOF
fi

glib_times() {
    : >"$W/glib.times.tmp"
    for mode in "$@"; do
        [ -d "$W/glib.$mode" ] || continue
        cat "$W/glib.$mode"/*.res 2>/dev/null | awk -v m="$mode" '{ print $1, m, $3 }' >>"$W/glib.times.tmp"
    done
    awk -v modes="$*" '
        { t[$1, $2] = $3; if (!($1 in seen)) { seen[$1] = 1; names[++n] = $1 }
          if (t[$1, $2] > max[$1]) max[$1] = t[$1, $2] }
        END {
            nm = split(modes, ms, " ")
            printf "%-24s", "test (s)"; for (i = 1; i <= nm; i++) printf "%10s", ms[i]; print ""
            for (i = 1; i <= n; i++) {
                printf "%-24s", names[i]
                for (j = 1; j <= nm; j++)
                    printf "%10s", ((names[i], ms[j]) in t) ? sprintf("%.2f", t[names[i], ms[j]] / 1000) : "-"
                print ""
            }
        }' "$W/glib.times.tmp" | { IFS= read -r h; echo "$h"; sort -k2 -rn; } >"$W/glib.times"
    rm -f "$W/glib.times.tmp"
}

# glib_rerun DIR NAME [ARGS]: runs one test again, alone, into DIR.rerun;
# true when it passes there and xalloc says nothing
glib_rerun() {
    rdir=$1.rerun rname=$2
    shift 2
    mkdir -p "$rdir"
    sh "$W/glib-one.sh" "$rdir" "$rname" "$@"
    [ "$(awk '{ print $2 }' "$rdir/$rname.res" 2>/dev/null)" = 0 ] && [ -z "$(xalloc_said "$rdir/$rname/out")" ]
}

run_glib() {
    mode=$1
    dir=$W/glib.$mode
    mkdir -p "$dir"
    t0=$(date +%s)
    xargs -L 1 -P "$GLIB_JOBS" sh "$W/glib-one.sh" "$dir" <"$W/glib.tests"
    dt=$(secs "$t0")
    n=0 bad=0 skipped=
    while read -r name args; do
        n=$((n + 1))
        res=$(cat "$dir/$name.res" 2>/dev/null)
        rc=$(echo "$res" | awk '{ print $2 }')
        ms=$(echo "$res" | awk '{ print $3 }')
        said=$(xalloc_said "$dir/$name/out")
        case ${rc:-none} in
        0) [ -z "$said" ] && continue; why="xalloc reported something" ;;
        77) skipped="$skipped $name"; continue ;;
        124 | 137) why="hung: killed after ${GLIB_TIMEOUT}s" ;;
        127)
            fail "glib [$mode]: $name: not installed ($GTEST/$name.test)"
            bad=$((bad + 1))
            continue
            ;;
        none) why="no result" ;;
        *) why="exit $rc after $((${ms:-0} / 1000))s" ;;
        esac
        # the first line that says what went wrong (xalloc's, or a GLib
        # assertion's), if any
        first=$(echo "$said" | head -n 1 | cut -c 1-200)
        [ -n "$first" ] || first=$(grep -m 1 -E '^not ok|^Bail out|ERROR' "$dir/$name/out" 2>/dev/null | cut -c 1-200)
        # A test that failed or hung without a word from xalloc gets one more
        # run on its own (as CPython's modules do): one that passes then is
        # reported as FLAKY, with both outputs kept, not hidden.
        if [ -z "$said" ] && glib_rerun "$dir" "$name" $args; then
            echo "FLAKY: glib [$mode]: $name${args:+ $args}: $why${first:+ ($first)}, then passed on its own; outputs: $dir/$name/out $dir.rerun/$name/out"
            continue
        fi
        bad=$((bad + 1))
        fail "glib [$mode]: $name${args:+ $args}: $why${first:+ ($first)}; output: $dir/$name/out"
        [ -n "$said" ] && echo "$said" | sed 's/^/    /'
        grep -E '^not ok|^Bail out|ERROR' "$dir/$name/out" 2>/dev/null | head -5 | sed 's/^/    /'
        echo "    --- tail:"
        tail -n 20 "$dir/$name/out" 2>/dev/null | sed 's/^/    /'
    done <"$W/glib.tests"
    [ -n "$skipped" ] && echo "skip: glib [$mode]: skipped themselves (77):$skipped"
    [ $bad -eq 0 ] && ok "glib [$mode]: $n test programs passed in ${dt}s"
}

ran=
for mode in $MODES; do
    set_mode "$mode"
    [ $cpython_ready -eq 1 ] && run_cpython "$mode"
    [ $glib_ready -eq 1 ] && run_glib "$mode"
    ran="$ran $mode"
done
# shellcheck disable=SC2086
{ [ $cpython_ready -eq 1 ] && cpython_times $ran; [ $glib_ready -eq 1 ] && glib_times $ran; } 2>/dev/null
if [ -s "$W/cpython.times" ]; then
    echo "cpython: slowest modules, seconds (all in $W/cpython.times):"
    head -n 9 "$W/cpython.times" | sed 's/^/    /'
fi
if [ -s "$W/glib.times" ]; then
    echo "glib: slowest tests, seconds (all in $W/glib.times):"
    head -n 6 "$W/glib.times" | sed 's/^/    /'
fi

if [ $fails -ne 0 ]; then
    echo "runtimes.sh: $fails check(s) FAILED ($(secs "$T_START")s)"
    exit 1
fi
echo "runtimes.sh: all checks passed ($(secs "$T_START")s)"
exit 0
