#!/bin/sh
# layout.sh: the shared library's memory at rest, the part every program
# pays for (Makefile, src/layout.ld, XA_BSS_TABLE, XA_ENTRY).
#  (a) libxalloc.so: its segments are aligned to 64 KiB (so the loader
#      maps it at a 64 KiB boundary and the kernel's 64 KiB fault-around
#      windows fall the same way in every process); a section xalloc_warm
#      starts the executable segment's code and ends in its first window;
#      a section xalloc_cold comes after .fini, at a 64 KiB boundary; the
#      hot code before it (from the start of the executable segment to the
#      end of .fini) is at most 128 KiB, two windows; malloc, free, new and
#      delete start a cache line;
#  (b) a program that allocates the common ways (malloc, calloc, realloc,
#      aligned, large and huge blocks, C++ new, a second thread freeing the
#      first's blocks, fork, malloc_trim, a purger pass) maps no page of
#      xalloc_cold: a hot path that calls into a cold file (mesh.c,
#      stats.c, ...) without asking its option first maps it, and fails;
#  (c) after a program of small blocks and one thread, the library's
#      zero-initialised data (the small variables, then the large tables)
#      has at most 32 KiB resident: the small variables share pages;
#  (d) a program of small blocks (malloc, calloc, realloc, aligned blocks,
#      C++ new and delete, a second thread freeing the first's blocks, a
#      purger pass) maps no page of the executable segment outside its
#      first 64 KiB window (what it runs is all in xalloc_warm), and no
#      page of .eh_frame (the read-only data it reads, xalloc_rodata, is
#      in the first segment, with the headers).  A failure lists the
#      functions on the pages it mapped and, where valgrind is installed,
#      those of them that callgrind saw the program run: add them to
#      src/layout.ld's list, or keep the call off this path.
# (b), (c) and (d) need 4 KiB pages and /proc/self/pagemap.
#
# Env: XALLOC_SO, SRC, BUILD, CC, CXX (test/lib/common.sh).  Needs
# readelf and nm.
. "$SRC/test/lib/common.sh"
tu_setup layout
export LC_ALL=C

for tool in readelf nm; do
    if ! command -v $tool >/dev/null 2>&1; then
        echo "skip: $tool not installed"
        exit 0
    fi
done
SO=$(readlink -f "$XALLOC_SO")
KiB=1024
WINDOW=$((64 * KiB))

# (a) section name -> "address size" (hex digits)
sec() { readelf -SW "$SO" | sed 's/^ *\[ *[0-9]*\]//' | awk -v n="$1" '$1 == n { print $3, $5 }'; }
hex() { printf '%d' "0x${1:-0}"; }
set -- $(sec .fini); fini_end=$(( $(hex "$1") + $(hex "$2") ))
set -- $(sec xalloc_cold); cold_start=$(hex "$1"); cold_end=$(( cold_start + $(hex "${2:-0}") ))
# the executable LOAD: its address and alignment ("R E" is two words)
set -- $(readelf -lW "$SO" | awk '$1 == "LOAD" && ($7 ~ /E/ || $8 ~ /E/) { print $3, $NF; exit }')
seg_start=$(printf '%d' "$1")
seg_align=$(printf '%d' "$2")
if [ "$seg_align" -ge $WINDOW ]; then ok "segments aligned to $((seg_align / KiB)) KiB"
else fail "the executable segment is aligned to $seg_align bytes, not 64 KiB"; fi
if [ "$cold_end" -gt "$cold_start" ] && [ "$cold_start" -ge "$fini_end" ] && [ $((cold_start % WINDOW)) -eq 0 ]; then
    ok "xalloc_cold ($(( (cold_end - cold_start) / KiB )) KiB) comes after .fini, at a 64 KiB boundary"
else
    fail "no xalloc_cold section after .fini at a 64 KiB boundary in $SO"
    readelf -SW "$SO" | grep -e text -e fini -e cold
fi
set -- $(sec xalloc_warm); warm_start=$(hex "$1"); warm_end=$(( warm_start + $(hex "${2:-0}") ))
if [ "$warm_end" -gt "$warm_start" ] && [ "$warm_end" -le $((seg_start + WINDOW)) ]; then
    ok "xalloc_warm ($(( (warm_end - warm_start) / KiB )) KiB) ends in the first window"
else
    fail "no xalloc_warm section in the first 64 KiB of the executable segment"
    readelf -SW "$SO" | grep -e text -e init -e plt -e warm
fi
set -- $(sec .eh_frame); eh_end=$(( $(hex "$1") + $(hex "$2") ))
set -- $(sec xalloc_rodata); ro_start=$(hex "$1")
if [ "$ro_start" -gt 0 ] && [ "$ro_start" -lt "$seg_start" ] && [ "$eh_end" -gt "$seg_start" ]; then
    ok "xalloc_rodata comes before the code, .eh_frame after it"
else
    fail "xalloc_rodata is not in the first segment, or .eh_frame is not after the code"
fi
hot=$(( fini_end - seg_start ))
if [ "$hot" -le $((128 * KiB)) ]; then ok "hot code $((hot / KiB)) KiB (at most 128)"
else fail "hot code $((hot / KiB)) KiB, over 128: a third fault-around window"; fi

ENTRIES='malloc|free|_Znwm|_Znam|_ZdlPv|_ZdaPv|_ZdlPvm|_ZdaPvm'
set -- $(nm -D --defined-only "$SO" | awk -v e="^($ENTRIES)\$" '$3 ~ e { n++; if (("0x" $1) % 64) bad = bad " " $3 }
    END { print n + 0, bad }')
if [ "$1" -eq 8 ] && [ $# -eq 1 ]; then ok "malloc, free, new and delete start a cache line"
else shift; fail "entry points not found or not 64-byte aligned:${*:- (8 wanted, $1 found)}"; fi

# (b) and (c): the program
if [ "$(getconf PAGESIZE 2>/dev/null)" != 4096 ]; then
    echo "skip: pages of $(getconf PAGESIZE 2>/dev/null) bytes: no page checks"
    [ "$fails" -eq 0 ]
    exit
fi
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

/* Pages of [lo, hi) whose pagemap entry has every bit of `bits`
 * (present: bit 63; mapped exclusively: bit 56, which leaves out the
 * shared zero page that reads of untouched memory map); each listed if
 * `list`.  -1: pagemap cannot be read. */
static const uint64_t PRESENT = 1ull << 63, EXCLUSIVE = 1ull << 56;
static long pages(int pm, uintptr_t lo, uintptr_t hi, uint64_t bits, bool list) {
    long n = 0;
    for (uintptr_t p = lo & ~(uintptr_t)4095; p < hi; p += 4096) {
        uint64_t e = 0;
        if (pread(pm, &e, 8, (off_t)(p / 4096 * 8)) != 8) return -1;
        if ((e & bits) == bits) {
            n++;
            if (list) printf("  page at +0x%lx present\n", (unsigned long)(p - base));
        }
    }
    return n;
}

int main(int argc, char **argv) {
    if (argc < 6) return 2;
    uintptr_t cold = strtoul(argv[1], 0, 0), cold_end = strtoul(argv[2], 0, 0);
    uintptr_t bss = strtoul(argv[3], 0, 0), bss_end = strtoul(argv[4], 0, 0);
    bool small = strcmp(argv[5], "small") == 0, warm = strcmp(argv[5], "warm") == 0;
    if (small) {                          /* small blocks only, one thread */
        for (int i = 0; i < 1000; i++) blocks[i % 256] = realloc(blocks[i % 256], (size_t)i % 700 + 1);
    } else if (warm) {                    /* small blocks, the common ways */
        for (int i = 0; i < 5000; i++) blocks[i % 256] = realloc(blocks[i % 256], (size_t)i * 13 % 3000 + 1);
        for (int i = 0; i < 256; i++) {
            free(blocks[i]);
            blocks[i] = i % 2 ? calloc(1, (size_t)i % 300 + 1) : malloc((size_t)i * 8 + 1);
        }
        for (int i = 0; i < 100; i++) {
            void *a = nullptr;
            if (posix_memalign(&a, 64, (size_t)i + 100)) return 2;
            if (malloc_usable_size(a) < (size_t)i + 100) return 2;
            free(a);
            free(aligned_alloc(32, 64));
            delete new int(i);
            delete[] new long[i % 50 + 1];
        }
        pthread_t t;
        pthread_create(&t, nullptr, take, nullptr);
        pthread_join(t, nullptr);
        usleep(1500 * 1000);              /* a pass of the purger */
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
        long n = pages(pm, base + bss, base + bss_end, PRESENT | EXCLUSIVE, false);
        long data = n < 0 ? -1 : n * 4;
        printf("zero-initialised data: %ld KiB resident\n", data);
        return data < 0 ? 3 : data > 32 ? 4 : 0;
    }
    if (warm) {                           /* here cold..cold_end: see run warm */
        long n = pages(pm, base + cold, base + cold_end, PRESENT, true);
        printf("pages present after the first window of code: %ld\n", n);
        return n < 0 ? 3 : n > 0 ? 5 : 0;
    }
    long n = pages(pm, base + cold, base + cold_end, PRESENT, true);
    printf("cold code pages present: %ld\n", n);
    return n < 0 ? 3 : n > 0 ? 1 : 0;
}
EOF
if ! $CXX -O1 -o "$W/common" "$W/common.cc" -pthread; then
    fail "build the program"
    exit 1
fi
# the anonymous mapping of the zero-initialised data: from the page after
# the file's part of the writable segment to the end of its memory
set -- $(readelf -lW "$SO" | awk '$1 == "LOAD" && $0 ~ / RW / { print $3, $5, $6 }' | tail -n 1)
bss=$(( ($1 + $2 + 4095) / 4096 * 4096 ))
bss_end=$(( ($1 + $3 + 4095) / 4096 * 4096 ))

# After a failure of (d): the functions of xalloc that the program ran
# in the range (d) checks, as callgrind sees them (where valgrind is
# installed): the names src/layout.ld's list lacks.
ran_outside() {   # mode code-from code-to
    command -v valgrind >/dev/null 2>&1 || return 0
    LD_PRELOAD=$SO valgrind --tool=callgrind --callgrind-out-file="$W/cg.out" \
        "$W/common" "$2" "$3" "$bss" "$bss_end" "$1" >/dev/null 2>&1
    [ -s "$W/cg.out" ] || return 0
    # callgrind names each object and function in full once, by number after
    nm -C --defined-only "$SO" >"$W/symsc"
    echo "  run there (callgrind):"
    awk -v so="$(basename "$SO")" -v lo="$2" -v hi="$3" '
        function hexval(h,   i, v) { v = 0; h = tolower(h)
            for (i = 1; i <= length(h); i++) v = v * 16 + index("0123456789abcdef", substr(h, i, 1)) - 1
            return v }
        FNR == NR { a = $1; t = $2; sub(/^[^ ]+ [^ ]+ /, ""); if (t ~ /[tTwW]/ && !($0 in addr)) addr[$0] = hexval(a); next }
        /^c?ob=/ { id = $1; sub(/^c?ob=/, "", id); n = $0; sub(/^c?ob=\([0-9]+\) ?/, "", n)
                 if (n != "") obname[id] = n
                 if ($0 ~ /^ob=/) cur = obname[id]
                 next }
        /^c?fn=/ { id = $1; sub(/^c?fn=/, "", id); n = $0; sub(/^c?fn=\([0-9]+\) ?/, "", n)
                 if (n != "") fnname[id] = n
                 if ($0 ~ /^fn=/ && index(cur, so) && (id in fnname)) ran[fnname[id]] = 1 }
        END { for (f in ran) { g = f; sub(/\047[0-9]+$/, "", g)
                  if ((g in addr) && addr[g] >= lo && addr[g] < hi) print "    " g } }
    ' "$W/symsc" "$W/cg.out" | sort -u
}

run() {   # mode what-it-checks [code-from code-to]
    LD_PRELOAD=$SO "$W/common" "${3:-$cold_start}" "${4:-$cold_end}" "$bss" "$bss_end" "$1" >"$W/$1.out" 2>&1
    rc=$?
    cat "$W/$1.out"
    case $rc in
    0) ok "$2" ;;
    1) fail "the program mapped pages of cold code (above)" ;;
    3) echo "skip: $1: pages cannot be seen here" ;;
    4) fail "over 32 KiB of the library's zero-initialised data resident" ;;
    5) fail "a program of small blocks mapped pages after xalloc_warm's window; functions there:"
       nm --defined-only "$SO" >"$W/syms"
       sed -n 's/^  page at +0x\([0-9a-f]*\) present$/\1/p' "$W/$1.out" | while read -r page; do
           lo=$((0x$page)); names=
           while read -r addr type name; do
               case $type in [tTwW]) a=$((0x$addr)); [ $a -ge $lo ] && [ $a -lt $((lo + 4096)) ] && names="$names $name" ;; esac
           done <"$W/syms"
           echo "    +0x$page:${names:- (no function: data or unwind tables)}"
       done
       ran_outside "$1" "$3" "$4" ;;
    *) fail "the program failed (status $rc)" ;;
    esac
}
run common "the common calls mapped no cold code"
run small "small variables share pages"
# from the second window of code to the end of .eh_frame: what lies
# between segments is not mapped, and the cold code is (b)'s
run warm "a program of small blocks maps one window of code and no unwind table" $((seg_start + WINDOW)) "$eh_end"
[ "$fails" -eq 0 ]
