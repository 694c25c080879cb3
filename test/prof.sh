#!/bin/sh
# prof.sh: the heap profiler end to end (issue 20).  test/prof_sites.c,
# a program with known allocation sites built with frame pointers, runs
# with prof:true in the three ways xalloc is used: LD_PRELOAD, -lxalloc
# and libxalloc.a (whose own frames are in the stacks, for pprof to drop).
#  (a) its live-heap and peak profiles, read by test/lib/prof_check.py (a
#      protobuf decoder of its own, and addr2line): structure, the
#      program's mapping and build ID, and per site the live bytes within
#      25% of the truth (prof_sample:16384: 6 standard deviations);
#  (b) the same profiles through pprof itself (`go tool pprof -top`, Debian
#      golang-go): each site listed, within 25%, and no xalloc frame;
#  (c) prof_dump_on_exit: a planted leak of 12345 bytes is found, with its
#      site, and a clean run reports nothing; (d) prof_signal writes a
#      profile; (e) prof:false (the default) writes nothing and dumps fail;
#  (h) 100 blocks grown by realloc to 1 MiB (in place where the pages
#      after them are free) are weighed at their final size, within 25%
#      at the default prof_sample; (i) free_sized and free_aligned_sized
#      take, for a sampled block, every size they take for any block;
#  (g) prof_unwind:libgcc walks code built without frame pointers
#      (-O2 -fomit-frame-pointer): each site's caller is in its stacks;
#      with frame pointers the caller is checked too, in (a);
#  (f) with nearly every block sampled (prof_sample:64), the misuse,
#      differential, fork/thread life-cycle and thread stress suites pass:
#      sampled blocks free, move and report misuse as any block does.
# Every run has a timeout.  pprof is needed where XALLOC_TEST_PPROF_REQUIRED
# is set (CI); elsewhere (b) is skipped without it.
#
# Env: XALLOC_SO, XALLOC_A, BUILD, SRC, CC.  Exit 0 = all passed.
set -u
. "${SRC:?SRC must be set}/test/lib/common.sh"
tu_setup prof
export LC_ALL=C
CHECK="python3 $SRC/test/lib/prof_check.py"
CONF=prof:true,prof_sample:16384

# shellcheck disable=SC2086
build() {   # name, link arguments
    name=$1
    shift
    $CC -std=gnu11 -O1 -g -fno-omit-frame-pointer -no-pie -I"$SRC/include" -o "$W/$name" \
        "$SRC/test/prof_sites.c" "$@" -pthread -ldl || fail "build $name"
}
build sites_preload
build sites_shared -DLINKED -L"$LIBDIR" -Wl,-rpath,"$LIBDIR" -lxalloc
build sites_static -DLINKED "$XALLOC_A"
# shellcheck disable=SC2086
$CC -std=gnu11 -O2 -g -fomit-frame-pointer -fno-ipa-icf -no-pie -I"$SRC/include" -o "$W/sites_nofp" \
    "$SRC/test/prof_sites.c" -DLINKED -L"$LIBDIR" -Wl,-rpath,"$LIBDIR" -lxalloc -pthread -ldl || fail "build sites_nofp"

have_pprof=0
if command -v go >/dev/null 2>&1 && go tool pprof -h >/dev/null 2>&1; then
    have_pprof=1
elif [ -n "${XALLOC_TEST_PPROF_REQUIRED:-}" ]; then
    fail "go tool pprof missing (apt-get install golang-go); XALLOC_TEST_PPROF_REQUIRED is set"
fi

# pprof_top PROFILE BINARY SITE=BYTES...: `pprof -top` lists each site with
# its flat inuse_space within 25%, and no frame of xalloc.
pprof_top() {
    prof=$1 bin=$2
    shift 2
    HOME=$W timeout 120 go tool pprof -top -sample_index=inuse_space "$bin" "$prof" >"$prof.top" 2>&1 ||
        { fail "pprof -top $prof: $(tail -3 "$prof.top")"; return; }
    for want in "$@"; do
        site=${want%%=*} bytes=${want#*=}
        if awk -v s="$site" -v b="$bytes" '
            function val(x,  u, n) { u = x; gsub(/[0-9.]/, "", u); n = x + 0
                return n * (u == "kB" ? 1024 : u == "MB" ? 1048576 : u == "GB" ? 1073741824 : 1) }
            $NF == s { v = val($1); found = 1 }
            END { exit !(found && v >= 0.75 * b && v <= 1.25 * b) }' "$prof.top"; then
            ok "pprof -top $(basename "$prof"): $site $(awk -v s="$site" '$NF == s { print $1 }' "$prof.top") (true $bytes)"
        else
            fail "pprof -top $(basename "$prof"): $site not within 25% of $bytes:"
            sed 's/^/    /' "$prof.top"
        fi
    done
    if grep -E ' (xa_[a-z_]*|malloc|calloc|alloc_small|alloc_big)$' "$prof.top" >/dev/null; then
        fail "pprof -top $(basename "$prof") shows xalloc's own frames:"
        sed 's/^/    /' "$prof.top"
    else
        ok "pprof -top $(basename "$prof"): no xalloc frame"
    fi
}

LIVE="site_small=10000000 site_large=10000000 site_calloc=20000000"
PEAK="site_small=20000000 site_large=10000000 site_calloc=20000000"
for how in preload shared static; do
    bin=$W/sites_$how
    pre=
    [ $how = preload ] && pre=$XALLOC_SO
    out=$W/$how.heap.pb
    if LD_PRELOAD=$pre XALLOC_CONF=$CONF timeout 60 "$bin" live "$out" 2>"$W/$how.err"; then
        ok "$how: live and peak profiles written"
    else
        fail "$how: prof_sites live failed: $(tail -3 "$W/$how.err")"
        continue
    fi
    # (a)
    # shellcheck disable=SC2086
    $CHECK "$out" "$bin" live $LIVE --caller=fill || fails=$((fails + 1))
    # shellcheck disable=SC2086
    $CHECK "$out.peak" "$bin" peak $PEAK || fails=$((fails + 1))
    # (b)
    if [ $have_pprof = 1 ]; then
        # shellcheck disable=SC2086
        pprof_top "$out" "$bin" $LIVE
        # shellcheck disable=SC2086
        pprof_top "$out.peak" "$bin" $PEAK
    else
        echo "skip: pprof (go tool pprof) not installed"
    fi
done

# (c) leaks at exit: prof_sample:1 samples every block
bin=$W/sites_shared
rm -f "$W"/leak.*
if XALLOC_CONF=prof:true,prof_sample:1,prof_dump_on_exit:true,prof_prefix:$W/leak timeout 60 "$bin" leak \
    2>"$W/leak.err"; then
    if grep -q "^xalloc: prof: still allocated at exit: about 12345 bytes in about 1 blocks from 1 call stacks\(, besides about [0-9]* bytes the dynamic loader keeps\)\?; profile $W/leak\.[0-9]*\.0\.leak\.heap\.pb$" "$W/leak.err"; then
        ok "leak: the planted leak is reported: $(cat "$W/leak.err")"
    else
        fail "leak: report is: $(cat "$W/leak.err")"
    fi
    f=$(ls "$W"/leak.*.leak.heap.pb 2>/dev/null | head -1)
    if [ -n "$f" ]; then
        $CHECK "$f" "$bin" leak site_leak=12345 --tol=0 || fails=$((fails + 1))
    else
        fail "leak: no leak profile in $W"
    fi
else
    fail "leak: prof_sites leak failed: $(cat "$W/leak.err")"
fi
rm -f "$W"/clean.*
if XALLOC_CONF=prof:true,prof_sample:1,prof_dump_on_exit:true,prof_prefix:$W/clean timeout 60 "$bin" clean \
    2>"$W/clean.err" && grep -q "^xalloc: prof: no sampled block is still allocated at exit\(, besides about [0-9]* bytes the dynamic loader keeps\)\?; profile $W/clean\." "$W/clean.err"; then
    ok "clean: nothing reported at exit"
else
    fail "clean: report is: $(cat "$W/clean.err")"
fi

# (d) a signal writes a live-heap profile
rm -f "$W"/sig.*
if XALLOC_CONF=$CONF,prof_signal:12,prof_prefix:$W/sig timeout 60 "$bin" signal 2>"$W/sig.err"; then
    f=$(ls "$W"/sig.*.heap.pb 2>/dev/null | head -1)
    if [ -n "$f" ]; then
        $CHECK "$f" "$bin" live site_large=10000000 || fails=$((fails + 1))
    else
        fail "signal: no profile written"
    fi
else
    fail "signal: prof_sites signal failed: $(cat "$W/sig.err")"
fi

# (h) blocks grown by realloc, in place where they can: each realloc
# counts as a new allocation, so they are weighed at their final size
bin=$W/sites_shared
if XALLOC_CONF=prof:true timeout 60 "$bin" grow "$W/grow.heap.pb" 2>"$W/grow.err"; then
    $CHECK "$W/grow.heap.pb" "$bin" live site_grow=104857600 || fails=$((fails + 1))
else
    fail "grow: prof_sites grow failed: $(tail -3 "$W/grow.err")"
fi
# (i) sized frees of sampled blocks accept what they accept for any block
if XALLOC_CONF=prof:true,prof_sample:1 timeout 60 "$bin" sized 2>"$W/sized.err" && [ ! -s "$W/sized.err" ]; then
    ok "sized: free_sized and free_aligned_sized of sampled blocks with every valid size"
else
    fail "sized: $(head -3 "$W/sized.err")"
fi

# (g)
bin=$W/sites_nofp
if XALLOC_CONF=$CONF,prof_unwind:libgcc timeout 60 "$bin" live "$W/nofp.heap.pb" 2>"$W/nofp.err"; then
    if [ -s "$W/nofp.err" ]; then
        fail "prof_unwind:libgcc: stderr: $(head -3 "$W/nofp.err")"
    fi
    # shellcheck disable=SC2086
    $CHECK "$W/nofp.heap.pb" "$bin" live $LIVE --caller=fill || fails=$((fails + 1))
else
    fail "prof_unwind:libgcc: prof_sites live failed: $(tail -3 "$W/nofp.err")"
fi
bin=$W/sites_shared

# (e) off by default
rm -f "$W"/off.*
if timeout 60 "$bin" live "$W/off.heap.pb" 2>"$W/off.err"; then
    fail "off: prof.dump succeeded without prof:true"
elif [ -e "$W/off.heap.pb" ]; then
    fail "off: a profile was written without prof:true"
else
    ok "off: prof.dump fails and writes nothing without prof:true"
fi

# (f)
for t in api_misuse api_differential api_lifecycle stress_threads; do
    if [ ! -x "$BUILD/$t" ]; then
        echo "skip: $t: $BUILD/$t not built (make check builds it)"
    elif XALLOC_CONF=prof:true,prof_sample:64 timeout 300 "$BUILD/$t" >"$W/$t.log" 2>&1; then
        ok "$t passes with prof:true,prof_sample:64 ($(grep -c '^\[       OK \]' "$W/$t.log") tests)"
    else
        fail "$t fails with prof:true,prof_sample:64:"
        grep -e FAILED -e ERROR "$W/$t.log" | head -5 | sed 's/^/    /'
    fi
done

[ "$fails" -eq 0 ]
