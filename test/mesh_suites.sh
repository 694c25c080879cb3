#!/bin/sh
# mesh_suites.sh: the unit suites and the explain suite again, with
# XALLOC_CONF=mesh:true.
#  With meshing on, chunks whose slabs mesh have their span area as a
#  shared mapping of meshing's memfd instead of private memory, and fork,
#  purge and unmap take other paths (mesh.c).  The unit suites drive the arenas, the huge
#  blocks, the thread caches and the purger directly, and api_explain
#  checks xalloc's account of its memory against the kernel's (where the
#  memfd's pages are shared memory, not anonymous), so they run once more
#  in that mode: each must pass as it does with meshing off.  Where meshing
#  cannot start (no memfd or userfaultfd) the run is the same as without
#  it but for the chunks' layout (the trailing guard page, as with
#  mesh:true; chunk.h), and the script says so.
#  The suites are the ones make check built ($BUILD/unit_*, api_explain);
#  each gets a time limit enforced with SIGKILL (xalloc blocks every signal
#  for a moment around pthread_create, lifecycle.c), so a hang fails
#  instead of stopping the run.
. "$SRC/test/lib/common.sh"
tu_setup mesh_suites

limit=${XALLOC_TEST_TIMEOUT:-300}
found=0
[ -x "$BUILD/api_explain" ] || fail "$BUILD/api_explain is not built (make check builds it first)"
for t in "$BUILD"/unit_* "$BUILD"/api_explain; do
    case $t in *.d|*.log) continue ;; esac
    [ -x "$t" ] || continue
    found=$((found + 1))
    name=${t##*/}
    log=$W/$name.log
    XALLOC_CONF=mesh:true timeout -s KILL "$limit" "$t" >"$log" 2>&1
    rc=$?
    if [ $rc -eq 0 ]; then
        ok "$name with mesh:true ($(grep -c '^\[       OK \]' "$log") tests)"
    elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        fail "$name with mesh:true: no end after $limit s (log: $log)"
    else
        fail "$name with mesh:true: exit $rc (log: $log)"
        grep -e '^\[  FAILED  \]' -e '^\[  ERROR   \]' -e '^\[   LINE   \]' "$log" | head -6
    fi
done
[ "$found" -gt 1 ] || fail "the unit suites are not in $BUILD (make check builds them first)"
# Chunks start private and are adopted into the file where the kernel
# protects private pages not populated yet (Linux 6.4); unit_mesh once
# more with them starting in the file, as on older kernels.
if [ -x "$BUILD/unit_mesh" ]; then
    log=$W/unit_mesh.in_file.log
    XA_TEST_MESH_IN_FILE=1 timeout -s KILL "$limit" "$BUILD/unit_mesh" >"$log" 2>&1
    rc=$?
    if [ $rc -eq 0 ]; then
        ok "unit_mesh with chunks that start in the file ($(grep -c '^\[       OK \]' "$log") tests)"
    else
        fail "unit_mesh with chunks that start in the file: exit $rc (log: $log)"
        grep -e '^\[  FAILED  \]' -e '^\[  ERROR   \]' -e '^\[   LINE   \]' "$log" | head -6
    fi
fi

# Was meshing on at all?  A one-line program linked with the archive asks.
cat >"$W/on.c" <<'EOF'
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <xalloc.h>
int main(void) {
    free(malloc(64));
    uint64_t on = 0;
    size_t len = sizeof on;
    if (xalloc_ctl("stats.mesh_on", &on, &len, NULL, 0)) return 2;
    printf("%llu\n", (unsigned long long)on);
    return 0;
}
EOF
if $CC -I"$SRC/include" -o "$W/on" "$W/on.c" "$XALLOC_A" -lpthread -lm 2>"$W/on.err"; then
    on=$(XALLOC_CONF=mesh:true timeout -s KILL 60 "$W/on")
    case $on in
    1) ok "meshing ran in these suites (stats.mesh_on 1)" ;;
    0) echo "skip: meshing could not start here (stats.mesh_on 0): the suites above ran without it" ;;
    *) fail "stats.mesh_on: '$on'" ;;
    esac
else
    fail "could not build the stats.mesh_on probe: $(head -3 "$W/on.err")"
fi
[ $fails -eq 0 ]
