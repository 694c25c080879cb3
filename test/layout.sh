#!/bin/sh
# layout.sh: the shared library's memory at rest, the part every program
# pays for.
#  (a) the code layout (Makefile, src/cold.ld): libxalloc.so has a section
#      xalloc_cold after .fini, and the hot code before it (from the start
#      of the executable segment to the end of .fini) stays within 112 KiB,
#      two of the kernel's 64 KiB fault-around windows;
#      The public fast paths (malloc, free, new, delete) start a cache
#      line (XA_ENTRY in internal.h);
#  (b) a program that allocates the common ways (malloc, calloc, realloc,
#      aligned, large and huge blocks, C++ new, a second thread freeing the
#      first's blocks, fork, malloc_trim, a purger pass) maps no page of
#      the code past the fault-around window that holds the end of the hot
#      code: a hot path that calls into a cold file (mesh.c, stats.c, ...)
#      without asking its option first maps it, and fails here;
#  (c) small variables share pages: after a program of small blocks and
#      one thread, the library's zero-initialised data (.bss, and the
#      large tables apart in .lbss: XA_BSS_TABLE) has at most 32 KiB
#      resident (48 when the tables sat between the small variables; each
#      page is memory of every process).
#
# Env: XALLOC_SO, SRC, BUILD, CC, CXX (test/lib/common.sh).  Needs readelf.
. "$SRC/test/lib/common.sh"
tu_setup layout
export LC_ALL=C

if ! command -v readelf >/dev/null 2>&1; then
    echo "skip: readelf not installed"
    exit 0
fi
SO=$(readlink -f "$XALLOC_SO")

# (a) section addresses: name -> "addr size" (hex, no 0x)
sec() { readelf -SW "$SO" | sed 's/^ *\[ *[0-9]*\]//' | awk -v n="$1" '$1 == n { print $3, $5 }'; }
hex() { printf '%d' "0x$1"; }
set -- $(sec .fini); fini_end=$(( $(hex "$1") + $(hex "$2") ))
set -- $(sec xalloc_cold); cold_start=$(hex "${1:-0}"); cold_end=$(( cold_start + $(hex "${2:-0}") ))
seg_start=$(readelf -lW "$SO" | awk '$1 == "LOAD" && ($7 ~ /E/ || $8 ~ /E/) { print $3; exit }')
seg_start=$(printf '%d' "$seg_start")
if [ "$cold_end" -le "$cold_start" ] || [ "$cold_start" -lt "$fini_end" ]; then
    fail "no xalloc_cold section after .fini in $SO"
    readelf -SW "$SO" | grep -e text -e fini -e cold
else
    ok "xalloc_cold ($(( (cold_end - cold_start) / 1024 )) KiB) comes after .fini"
fi
hot=$(( fini_end - seg_start ))
if [ "$hot" -le $((112 * 1024)) ]; then ok "hot code $((hot / 1024)) KiB (at most 112)"
else fail "hot code $((hot / 1024)) KiB, over 112: a third fault-around window"; fi

# the public fast paths start a cache line (XA_ENTRY)
bad=$(nm -D --defined-only "$SO" | awk '$3 ~ /^(malloc|free|_Znwm|_Znam|_ZdlPv|_ZdaPv|_ZdlPvm|_ZdaPvm)$/ { print $1, $3 }' |
    while read -r addr name; do [ $(( 0x$addr % 64 )) -eq 0 ] || printf "%s " "$name"; done)
n=$(nm -D --defined-only "$SO" | grep -c -E ' (malloc|free|_Znwm|_ZdlPvm)$')
if [ "$n" -eq 4 ] && [ -z "$bad" ]; then ok "malloc, free, new and delete start a cache line"
else fail "entry points not 64-byte aligned: ${bad:-(not found)}"; fi

# (b) and (c): the program
cat >"$W/common.cc" <<'EOF'

#include <fcntl.h>
#include <link.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void *blocks[256];
static void *take(void *) {               /* frees the main thread's blocks */
    for (int i = 0; i < 256; i++) free(blocks[i]);
    for (int i = 0; i < 1000; i++) free(malloc(i * 7 % 3000 + 1));
    return nullptr;
}

static uintptr_t base;
static int find(struct dl_phdr_info *info, size_t, void *) {
    if (info->dlpi_name && strstr(info->dlpi_name, "libxalloc")) base = info->dlpi_addr;
    return 0;
}

static int present(int pm, uintptr_t lo, uintptr_t hi, const char *what, uintptr_t show_from) {
    int n = 0;
    for (uintptr_t p = lo & ~(uintptr_t)4095; p < hi; p += 4096) {
        uint64_t e = 0;
        if (pread(pm, &e, 8, (off_t)(p / 4096 * 8)) != 8) return -1;
        if (e >> 63) {
            n++;
            if (what) printf("  %s page at +0x%lx present\n", what, (unsigned long)(p - show_from));
        }
    }
    return n;
}

/* Rss in KiB of the mapping that starts at `start` (smaps: the zero page
 * that reads of untouched memory map is not counted, as it is not in
 * pagemap). */
static long rss_at(uintptr_t start) {
    FILE *f = fopen("/proc/self/smaps", "r");
    char line[512];
    long rss = -1;
    bool in = false;
    while (f && fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) in = lo == start;
        else if (in && sscanf(line, "Rss: %ld kB", &rss) == 1) break;
    }
    if (f) fclose(f);
    return rss;
}

int main(int argc, char **argv) {
    if (argc < 5) return 2;
    uintptr_t fini_end = strtoul(argv[1], 0, 0), cold_end = strtoul(argv[2], 0, 0);
    uintptr_t bss_page = strtoul(argv[3], 0, 0);
    bool small = strcmp(argv[4], "small") == 0;
    if (small) {                          /* small blocks only, one thread */
        for (int i = 0; i < 1000; i++) blocks[i % 256] = realloc(blocks[i % 256], (size_t)i % 700 + 1);
    } else {
        for (int i = 0; i < 256; i++) blocks[i] = malloc((size_t)i * 16 + 8);
        for (size_t n = 16; n <= (1 << 20); n *= 2) {
            char *p = (char *)calloc(1, n), *q = (char *)realloc(p, n * 3);
            free(q);
        }
        void *a = nullptr;
        if (posix_memalign(&a, 4096, 5000)) return 2;
        free(a);
        free(aligned_alloc(64, 640));
        char *large = (char *)malloc(100000), *huge = (char *)malloc(8 << 20);
        memset(large, 1, 100000);
        memset(huge, 1, 8 << 20);
        printf("usable %zu\n", malloc_usable_size(large));
        free(large);
        free(huge);
        delete new int(5);
        delete[] new long[100];
        pthread_t t;
        pthread_create(&t, nullptr, take, nullptr);
        pthread_join(t, nullptr);
        pid_t pid = fork();
        if (pid == 0) { free(malloc(100)); _exit(0); }
        waitpid(pid, nullptr, 0);
        malloc_trim(0);
        usleep(1500 * 1000);              /* a pass of the purger */
    }

    dl_iterate_phdr(find, nullptr);
    int pm = open("/proc/self/pagemap", O_RDONLY);
    if (!base || pm < 0) { printf("no base or no pagemap\n"); return 3; }
    if (small) {
        long data = rss_at(base + bss_page);
        printf("zero-initialised data: %ld KiB resident\n", data);
        return data < 0 ? 3 : data > 32 ? 4 : 0;
    }
    /* fault-around maps the 64 KiB-aligned window around a fault */
    uintptr_t from = (base + fini_end + 65535) & ~(uintptr_t)65535;
    int total = present(pm, base + fini_end - 4096, base + cold_end, nullptr, 0);
    int cold = from < base + cold_end ? present(pm, from, base + cold_end, "cold code", base) : 0;
    printf("code pages present: %d around the end of the hot code, %d past its window\n", total, cold);
    if (total <= 0) return 3;             /* cannot see pages: no check */
    return cold ? 1 : 0;
}
EOF
if ! $CXX -O1 -o "$W/common" "$W/common.cc" -pthread; then
    fail "build the program"
    exit 1
fi
# the anonymous mapping of .bss and .lbss: from the page after the last
# byte the file provides (the end of the writable segment's file part)
bss_page=$(readelf -lW "$SO" | awk '$1 == "LOAD" && $0 ~ / RW / { print $3, $5 }' | tail -n 1 |
    { read -r va fs; echo $(( (va + fs + 4095) / 4096 * 4096 )); })
run() {   # mode what-it-checks
    LD_PRELOAD=$SO "$W/common" "$fini_end" "$cold_end" "$bss_page" "$1" >"$W/$1.out" 2>&1
    rc=$?
    cat "$W/$1.out"
    case $rc in
    0) ok "$2" ;;
    1) fail "the program mapped pages of cold code (above)" ;;
    3) echo "skip: $1: pages cannot be seen here" ;;
    4) fail "over 32 KiB of the library's zero-initialised data resident" ;;
    *) fail "the program failed (status $rc)" ;;
    esac
}
run common "the common calls mapped no cold code"
run small "small variables share pages"
[ "$fails" -eq 0 ]
