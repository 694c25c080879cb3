#!/bin/sh
# valgrind.sh: programs that use xalloc can still be memchecked.  xalloc
# tells memcheck about its blocks (client requests, src/valgrind.h), so
# memcheck reports a heap overflow, a use after free, a read of
# uninitialised heap memory and a leak in blocks xalloc served -- linked
# statically (libxalloc.a) and under LD_PRELOAD -- and nothing for a clean
# program (also in secure and junk modes, which write into freed blocks).
# malloc_usable_size proves xalloc served the blocks (memcheck's
# own allocator would answer the requested size, not the size class).
# Without the option memcheck replaces xalloc with its own allocator, which
# works too but checks a different heap.  Skipped (not failed) when
# valgrind is not installed.
. "$SRC/test/lib/common.sh"
tu_setup valgrind
if ! command -v valgrind >/dev/null 2>&1; then
    echo "valgrind.sh: valgrind not installed, skipped"
    exit 0
fi

cat >"$W/prog.c" <<'EOF'
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static void *keep;
static void *opq(void *p) { __asm__ volatile("" : "+r"(p)); return p; }
/* the block's only pointer is dropped once this returns */
__attribute__((noinline)) static void leak(void) {
    void *volatile *slot = &keep;
    *slot = malloc(1234);
    memset(*slot, 1, 1234);
    *slot = NULL;
}
int main(int argc, char **argv) {
    const char *m = argv[1];
    char *p = malloc(20);
    /* xalloc: the 32-byte class; memcheck's allocator would say 20 */
    printf("usable %zu\n", malloc_usable_size(p));
    if (!strcmp(m, "overflow")) ((char *)opq(p))[20] = 1;
    if (!strcmp(m, "uaf")) { free(p); p = malloc(100); free(p); return ((volatile char *)opq(p))[5]; }
    if (!strcmp(m, "uninit") && ((volatile char *)p)[3] == 42) puts("forty-two");
    if (!strcmp(m, "leak")) leak();
    if (!strcmp(m, "huge")) { char *h = malloc(3 << 20); free(h); return ((volatile char *)opq(h))[7]; }
    if (!strcmp(m, "clean")) {
        void *v[500];
        for (int i = 0; i < 500; i++) { v[i] = malloc((size_t)i * 131 % 70000); memset(v[i], 1, (size_t)i * 131 % 70000); }
        for (int i = 0; i < 500; i++) v[i] = realloc(v[i], (size_t)i * 17 % 5000 + 1);
        for (int i = 0; i < 500; i++) free(v[i]);
        /* realloc of a block never written: no read of its bytes */
        char *u = malloc(40);
        u = realloc(u, 50);
        free(u);
        char *z = calloc(1000, 1000);
        for (int i = 0; i < 1000000; i += 4096) if (z[i]) return 3;
        free(z);
        void *a;
        if (posix_memalign(&a, 4096, 10000)) return 4;
        memset(a, 2, 10000);
        free(a);
    }
    free(p);
    return 0;
}
EOF
$CC -O1 -g -o "$W/static" "$W/prog.c" "$XALLOC_A" -pthread || { echo "FAIL: build"; exit 1; }
$CC -O1 -g -o "$W/dynamic" "$W/prog.c" || { echo "FAIL: build"; exit 1; }

# run WAY MODE WANT [CONF]: memcheck must exit 9 (errors) or 0 (clean) and its
# report must contain WANT.  nouserintercepts: memcheck must not swap in its
# own malloc for the one in the program (static) or preloaded library.
VG="valgrind -q --error-exitcode=9 --leak-check=full --soname-synonyms=somalloc=nouserintercepts"
run() {
    way=$1 mode=$2 want=$3 conf=${4:-}
    label="$way $mode${conf:+ [$conf]}"
    if [ "$way" = static ]; then
        XALLOC_CONF=$conf $VG "$W/static" "$mode" >"$W/out" 2>"$W/err"
    else
        XALLOC_CONF=$conf LD_PRELOAD="$XALLOC_SO" $VG "$W/dynamic" "$mode" >"$W/out" 2>"$W/err"
    fi
    rc=$?
    if ! grep -q "^usable 32$" "$W/out"; then
        fail "$label: xalloc did not serve the program ($(head -1 "$W/out"))"
        return
    fi
    if [ "$want" = clean ]; then
        if [ $rc -eq 0 ] && [ ! -s "$W/err" ]; then ok "$label: no reports"
        else fail "$label: memcheck reported (rc $rc)"; head -20 "$W/err"; fi
    elif [ $rc -eq 9 ] && grep -q "$want" "$W/err"; then
        ok "$label: memcheck says '$want'"
    else
        fail "$label: want '$want' (rc $rc)"; head -20 "$W/err"
    fi
}

for way in static preload; do
    run $way clean clean
    run $way clean clean secure:true
    run $way clean clean junk:true
    run $way overflow "Invalid write of size 1"
    run $way uaf "Invalid read of size 1"
    run $way uninit "uninitialised value"
    run $way leak "1,234 bytes in 1 blocks are definitely lost"
    run $way huge "Invalid read of size 1"
done
[ $fails -eq 0 ] && echo "valgrind.sh: all checks passed"
exit $fails
