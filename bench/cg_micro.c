/* cg_micro: micro-loops for instruction counting under callgrind, plus an
 * interposition probe.
 *
 *   cg_micro probe
 *       print which shared object provides malloc, free, realloc, calloc
 *       (dlsym(RTLD_DEFAULT) + dladdr), e.g. "malloc /usr/lib/.../libc.so.6".
 *   cg_micro pair N SIZE
 *       steady-state ring of 64 live blocks of SIZE bytes:
 *       N times { j = i % 64; free(r[j]); r[j] = malloc(SIZE); r[j][0] = i; }
 *       SIZE 0 runs the same loop without allocator calls (loop overhead).
 *   cg_micro realloc N
 *       N times { p = malloc(16); grow p by realloc in 16-byte steps up to
 *       64 KiB, writing the last byte each time (4095 reallocs); free(p) }
 * The runner takes callgrind's instruction totals for two iteration counts
 * and divides the difference by the extra iterations, which removes start-up
 * and initialisation costs.  A checksum is printed so nothing is optimised
 * away. */
#include "common.h"
#include <dlfcn.h>

#define RING 64

static NOINLINE void probe(void)
{
    static const char *const names[] = {"malloc", "free", "realloc", "calloc"};
    void *p = malloc(1);
    if (!p) OOM_FAIL("malloc", 1);
    free(p);
    for (int i = 0; i < 4; i++) {
        void *f = dlsym(RTLD_DEFAULT, names[i]);
        Dl_info di;
        if (f && dladdr(f, &di) && di.dli_fname) printf("%s %s\n", names[i], di.dli_fname);
        else printf("%s ?\n", names[i]);
    }
}

static NOINLINE uint64_t pair(uint64_t n, size_t size)
{
    static char dummy[RING][64];
    char *r[RING];
    uint64_t sum = 0;
    for (int j = 0; j < RING; j++) {
        r[j] = size ? (char *)xmalloc_chk(size) : dummy[j];
        r[j][0] = (char)j;
    }
    if (size) {
        for (uint64_t i = 0; i < n; i++) {
            unsigned j = (unsigned)(i & (RING - 1));
            free(r[j]);
            char *p = (char *)malloc(size);
            if (UNLIKELY(!p)) OOM_FAIL("malloc", size);
            p[0] = (char)i;
            r[j] = p;
        }
    } else {
        for (uint64_t i = 0; i < n; i++) {
            unsigned j = (unsigned)(i & (RING - 1));
            sink_ptr(r[j]);
            char *p = dummy[j];
            sink_ptr(p);
            if (UNLIKELY(!p)) OOM_FAIL("malloc", size);
            p[0] = (char)i;
            r[j] = p;
        }
    }
    for (int j = 0; j < RING; j++) {
        sum += (unsigned char)r[j][0];
        if (size) free(r[j]);
    }
    return sum;
}

static NOINLINE uint64_t grow(uint64_t n)
{
    uint64_t sum = 0;
    for (uint64_t c = 0; c < n; c++) {
        char *p = (char *)xmalloc_chk(16);
        p[0] = (char)(c + 1);
        for (size_t s = 32; s <= 65536; s += 16) {
            p = (char *)realloc(p, s);
            if (UNLIKELY(!p)) OOM_FAIL("realloc", s);
            p[s - 1] = (char)s;
        }
        if (p[0] != (char)(c + 1) || p[65535] != (char)65536)
            VERIFY_FAIL("cg_micro: realloc lost data");
        sum += (unsigned char)p[0];
        free(p);
    }
    return sum;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "probe")) {
        probe();
        return 0;
    }
    if (argc >= 4 && !strcmp(argv[1], "pair")) {
        printf("%llu\n", (unsigned long long)pair(strtoull(argv[2], NULL, 10), (size_t)strtoull(argv[3], NULL, 10)));
        return 0;
    }
    if (argc >= 3 && !strcmp(argv[1], "realloc")) {
        printf("%llu\n", (unsigned long long)grow(strtoull(argv[2], NULL, 10)));
        return 0;
    }
    bench_die(BENCH_EXIT_USAGE, "usage: cg_micro probe | pair N SIZE | realloc N");
}
