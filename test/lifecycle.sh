#!/bin/sh
# lifecycle.sh: life-cycle scenarios in which the allocator must never hang
# inside the C library (issue 14): thread create/join, fork from busy and
# from non-main threads, posix_spawn/vfork, cancellation, dlopen/dlclose,
# thousands of threads, exit() while threads allocate, and programs whose
# first allocation happens in a TLS destructor, an atfork handler or a
# signal handler.  The program is test/lifecycle.c (its header lists the
# scenarios), the dlopen'ed library test/lifecycle_dl.c.
#
# Each scenario runs once built against plain glibc (the control: it must
# pass, or the test itself is wrong), then linked with -lxalloc under
# XALLOC_CONF= "" (defaults), secure:true, junk:true, tcache:false and
# mesh:true (meshing: chunks are a shared memfd, copy-on-write across a fork).  Every
# run is killed after a per-scenario limit (timeout -s KILL): a hang is a
# failure, reported as such.  The program's own watchdog (alarm) reports a
# hang earlier, with the stage it was in, where a signal can still be
# delivered; an allocator that hangs with every signal blocked (xalloc blocks
# them around pthread_create) is only stopped by the kill.  A run passes if
# it exits 0 and, under xalloc, printed no "xalloc:" report.
#
# Env: XALLOC_SO, XALLOC_A, BUILD, SRC, CC (as for every test/*.sh);
#   LIFECYCLE_REPEAT=N   run the whole matrix N times (default 1)
#   LIFECYCLE_ONLY="a b" only these scenarios (spaces or commas)
#   LIFECYCLE_MODES="…"  only these modes (default: glibc defaults
#                        secure:true junk:true tcache:false mesh:true)
# Exit 0 = all passed.

set -u
. "${SRC:?SRC must be set}/test/lib/common.sh"
tu_setup lifecycle

SCENARIOS="create_join main_pthread_exit fork_child_join fork_nonmain spawn cancel dlopen threads_2000
threads_100k exit_busy first_in_tls_dtor first_in_atfork first_in_signal"
MODES=${LIFECYCLE_MODES:-"glibc defaults secure:true junk:true tcache:false mesh:true"}

ONLY=$(echo "${LIFECYCLE_ONLY:-}" | tr ',' ' ')
REPEAT=${LIFECYCLE_REPEAT:-1}

# Seconds before a run is killed; the program's watchdog gets 5 fewer.
# About 5x the slowest mode's time on a shared 2-CPU machine, and more than
# the 15 s a fork scenario needs to detect a hung child.
limit_of() {
    case $1 in
    create_join) echo 15 ;;
    first_in_*) echo 30 ;;
    dlopen) echo 60 ;;
    threads_100k) echo 90 ;;
    *) echo 40 ;;
    esac
}

# -fno-builtin-*: the compiler must not drop a malloc/free pair it can see.
LC_CFLAGS="-std=gnu11 -O2 -g -Wall -Wextra -pthread -fno-builtin-malloc -fno-builtin-calloc -fno-builtin-realloc -fno-builtin-free"

build() {
    out=$1
    shift
    # shellcheck disable=SC2086
    if ! $CC $LC_CFLAGS -o "$out" "$@" >"$out.log" 2>&1; then
        fail "build $(basename "$out"):"
        sed 's/^/    /' "$out.log" | head -30
        exit 1
    fi
    if [ -s "$out.log" ]; then
        echo "warn: build $(basename "$out") printed:"
        sed 's/^/    /' "$out.log" | head -30
    fi
}

build "$W/lifecycle" "$SRC/test/lifecycle.c" -L"$LIBDIR" -Wl,-rpath,"$LIBDIR" -lxalloc -ldl
build "$W/lifecycle.glibc" "$SRC/test/lifecycle.c" -ldl
build "$W/lifecycle_dl.so" -fPIC -shared "$SRC/test/lifecycle_dl.c" -L"$LIBDIR" -Wl,-rpath,"$LIBDIR" -lxalloc
build "$W/lifecycle_dl.glibc.so" -fPIC -shared "$SRC/test/lifecycle_dl.c"

# The two builds must really differ in which malloc they call.
owner=$("$W/lifecycle" malloc_owner 2>&1)
case $owner in
*libxalloc*) ok "xalloc build calls xalloc's malloc ($owner)" ;;
*) fail "xalloc build: malloc comes from '$owner', not libxalloc"; exit 1 ;;
esac
owner=$("$W/lifecycle.glibc" malloc_owner 2>&1)
case $owner in
*libxalloc*) fail "control build: malloc comes from '$owner'"; exit 1 ;;
*) ok "control build calls glibc's malloc ($owner)" ;;
esac

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# run_one SCENARIO MODE: one run, reported on one line.
run_one() {
    s=$1
    mode=$2
    lim=$(limit_of "$s")
    if [ "$mode" = glibc ]; then
        prog=$W/lifecycle.glibc dl=$W/lifecycle_dl.glibc.so conf='' what="$s [glibc control]"
    else
        prog=$W/lifecycle dl=$W/lifecycle_dl.so conf=$mode what="$s [$mode]"
        [ "$mode" = defaults ] && conf=''
    fi
    log=$W/$s.$(echo "$mode" | tr ':' '_')
    t0=$(now_ms)
    XALLOC_CONF=$conf LIFECYCLE_TIMEOUT=$((lim - 5)) timeout -s KILL "$lim" "$prog" "$s" "$dl" >"$log.out" 2>"$log.err"
    rc=$?
    ms=$(($(now_ms) - t0))
    secs="$((ms / 1000)).$((ms % 1000 / 100)) s"
    case $rc in
    0)
        if [ "$mode" != glibc ] && grep -q 'xalloc:' "$log.err"; then
            fail "$what: xalloc reported: $(grep 'xalloc:' "$log.err" | head -1) ($secs)"
        else
            ok "$what ($secs)"
        fi
        return
        ;;
    2) echo "skip: $what: $(tail -1 "$log.err")"; return ;;
    3) fail "$what: hang (detected by the program after $secs): $(grep 'lifecycle: .*: hang: ' "$log.err" | head -1)" ;;
    137) fail "$what: hang (killed after $lim s)" ;;
    *)
        if [ $rc -gt 128 ]; then
            fail "$what: killed by signal $((rc - 128)) (SIG$(kill -l $((rc - 128)) 2>/dev/null)) after $secs"
        else
            fail "$what: exit $rc after $secs"
        fi
        ;;
    esac
    [ "$mode" = glibc ] && echo "    (the control failed: the test itself is wrong)"
    # The rest of stderr, without the line quoted above and the shell's
    # "Killed" for a run that timeout killed.
    grep -v -e 'lifecycle: .*: hang: ' -e '^Killed$' "$log.err" | head -8 | sed 's/^/    /'
}

n=0
while [ $n -lt "$REPEAT" ]; do
    n=$((n + 1))
    [ "$REPEAT" -gt 1 ] && echo "-- lifecycle matrix, pass $n of $REPEAT"
    for s in $SCENARIOS; do
        if [ -n "$ONLY" ]; then
            case " $ONLY " in *" $s "*) ;; *) continue ;; esac
        fi
        for mode in $MODES; do
            run_one "$s" "$mode"
        done
    done
done

if [ "$fails" -eq 0 ]; then
    echo "lifecycle.sh: all checks passed"
    exit 0
fi
echo "lifecycle.sh: $fails failed"
exit 1
