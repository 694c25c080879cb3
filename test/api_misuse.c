/* api_misuse: xalloc's misuse detection.
 *
 * Each misuse runs in a forked child, which must die with SIGABRT after
 * writing exactly one line starting with "xalloc: " to stderr; that line
 * must start with "xalloc: <function>: " and contain the offending pointer
 * in 0x hex form.
 *
 * glibc build (-DXA_TEST_GLIBC): the misuse tests are skipped -- glibc's
 * reports differ ("free(): invalid pointer", or no detection at all for
 * e.g. interior pointers of mmapped chunks), and free_sized does not exist
 * in glibc 2.36.  The false-positive control runs in both builds.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "testutil.h"
#ifndef XA_TEST_GLIBC
#include "xalloc.h"
#include "tcache.h"     /* XA_FREED_MARK */
#endif

static void *opqp(void *x)
{
    __asm__ volatile("" : "+r"(x));
    return x;
}

/* Shared with the child: the pointer the report must name. */
static volatile uintptr_t *expected;

static void set_expected(const void *p)
{
    *expected = (uintptr_t)p;
    __sync_synchronize();
}

/* Run fn in a child and check the report.  funcs: '|'-separated function
 * names any of which the report may name (e.g. "free|malloc_trim" where a
 * double free may be found when the thread cache is flushed). */
static void expect_abort(const char *what, int (*fn)(void *), const char *funcs, const char *problem)
{
    static tu_child c;
    *expected = 0;
    tu_run_child(&c, fn, NULL, 1, 60);
    uintptr_t want = *expected;
    if (c.timed_out || c.sig != SIGABRT) {
        tu_child_dump(what, &c);
        fail_msg("%s: child did not die with SIGABRT", what);
    }
    if (want == 0) {
        tu_child_dump(what, &c);
        fail_msg("%s: child aborted before the misuse", what);
    }
    int nlines = 0, good = 0;
    char *save = NULL;
    static char buf[sizeof c.err];
    memcpy(buf, c.err, sizeof buf);
    for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "xalloc: ", 8) != 0) continue;
        nlines++;
        /* which function? */
        int fn_ok = 0;
        char names[128];
        snprintf(names, sizeof names, "%s", funcs);
        char *s2 = NULL;
        for (char *f = strtok_r(names, "|", &s2); f; f = strtok_r(NULL, "|", &s2)) {
            size_t fl = strlen(f);
            if (strncmp(line + 8, f, fl) == 0 && line[8 + fl] == ':' && line[9 + fl] == ' ') fn_ok = 1;
        }
        /* does any 0x token name the pointer? */
        int ptr_ok = 0;
        for (const char *h = strstr(line, "0x"); h; h = strstr(h + 2, "0x")) {
            unsigned long long v = strtoull(h + 2, NULL, 16);
            if ((uintptr_t)v == want) ptr_ok = 1;
        }
        /* the problem, right after "function: " */
        const char *colon = strstr(line + 8, ": ");
        int problem_ok = colon && strncmp(colon + 2, problem, strlen(problem)) == 0;
        if (fn_ok && ptr_ok && problem_ok) good = 1;
        else
            print_message("%s: report line '%s' (want function %s, problem '%s', pointer %#lx)\n", what, line,
                          funcs, problem, (unsigned long)want);
    }
    if (nlines != 1 || !good) {
        tu_child_dump(what, &c);
        fail_msg("%s: want exactly one 'xalloc: {%s}: ...%#lx...' line, got %d 'xalloc: ' lines (%s)", what,
                 funcs, (unsigned long)want, nlines, good ? "one matched" : "none matched");
    }
}

#ifdef XA_TEST_GLIBC
#define XALLOC_ONLY() skip() /* misuse reports are xalloc's; see top of file */
#else
#define XALLOC_ONLY() ((void)0)
#endif

/* ---- invalid pointers --------------------------------------------------- */

static int c_free_stack(void *a)
{
    _Alignas(64) char buf[256];
    memset(buf, 0, sizeof buf);
    set_expected(buf);
    free(opqp(buf));
    return 0;
}
static void test_free_stack(void **s) { XALLOC_ONLY(); expect_abort("free(stack)", c_free_stack, "free", "invalid pointer"); }

static _Alignas(64) char global_buf[4096];
static int c_free_global(void *a)
{
    set_expected(global_buf + 64);
    free(opqp(global_buf + 64));
    return 0;
}
static void test_free_global(void **s) { XALLOC_ONLY(); expect_abort("free(global)", c_free_global, "free", "invalid pointer"); }

static int c_free_mmap(void *a)
{
    char *m = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    TU_CHK(m != MAP_FAILED);
    memset(m, 0, 1 << 20);
    set_expected(m + 4096);
    free(opqp(m + 4096));
    return 0;
}
static void test_free_mmap(void **s) { XALLOC_ONLY(); expect_abort("free(mmap)", c_free_mmap, "free", "invalid pointer"); }

static int c_free_mmap_start(void *a)
{
    char *m = mmap(NULL, 16 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    TU_CHK(m != MAP_FAILED);
    set_expected(m);
    free(opqp(m));
    return 0;
}
static void test_free_mmap_start(void **s) { XALLOC_ONLY(); expect_abort("free(mmap start)", c_free_mmap_start, "free", "invalid pointer"); }

/* A page-aligned pointer into a never-used page of one of xalloc's chunks
 * (4 MiB, aligned; 3 MiB in: inside the free span that the few blocks of
 * this process leave, not at its boundary, whose page reads as a freed
 * large block's): its page information must not read as a slab's. */
static int c_free_unused_page(void *a)
{
    char *p = malloc(16);
    TU_CHK(p != NULL);
    char *q = (char *)(((uintptr_t)p & ~(uintptr_t)((4 << 20) - 1)) + (3 << 20));
    set_expected(q);
    free(opqp(q));
    return 0;
}
static void test_free_unused_page(void **s) { XALLOC_ONLY(); expect_abort("free(unused page)", c_free_unused_page, "free", "invalid pointer"); }

/* A pointer past the user address space whose low bits name one of our
 * chunks: the chunk map must reject it, not wrap it around (free() would
 * then read page information at a non-canonical address). */
static int c_free_high_alias(void *a)
{
    char *p = malloc(16);
    TU_CHK(p != NULL);
    char *q = (char *)((uintptr_t)p | ((uintptr_t)1 << 47) | ((uintptr_t)1 << 56));
    set_expected(q);
    free(opqp(q));
    return 0;
}
static void test_free_high_alias(void **s) { XALLOC_ONLY(); expect_abort("free(high alias)", c_free_high_alias, "free", "invalid pointer"); }

/* interior pointers */
static size_t interior_size, interior_off;
static int c_free_interior(void *a)
{
    char *p = malloc(interior_size);
    TU_CHK(p != NULL);
    memset(p, 0, interior_size < 65536 ? interior_size : 65536);
    set_expected(p + interior_off);
    free(opqp(p + interior_off));
    return 0;
}
static void interior(size_t size, size_t off)
{
    char what[64];
    snprintf(what, sizeof what, "free(malloc(%zu)+%zu)", size, off);
    interior_size = size;
    interior_off = off;
    expect_abort(what, c_free_interior, "free", "invalid pointer");
}
static void test_free_interior_64_16(void **s) { XALLOC_ONLY(); interior(64, 16); }
static void test_free_interior_64_8(void **s) { XALLOC_ONLY(); interior(64, 8); }
static void test_free_interior_1000_512(void **s) { XALLOC_ONLY(); interior(1000, 512); }
static void test_free_interior_1m_4096(void **s) { XALLOC_ONLY(); interior(1 << 20, 4096); }
static void test_free_interior_16m_4096(void **s) { XALLOC_ONLY(); interior(16 << 20, 4096); }
static void test_free_interior_16m_1m(void **s) { XALLOC_ONLY(); interior(16 << 20, 1 << 20); }

/* ---- double frees ------------------------------------------------------- */

/* A double free of a small block: p and `others` blocks of the same size;
 * `between` of the others are freed between the two frees of p, the rest
 * after; `scribble` overwrites p after its first free. */
static struct { size_t size; int others, between, scribble; } df;
static size_t df_size;   /* big blocks */
static int c_double_free_small(void *a)
{
    static void *others[10000];
    for (int i = 0; i < df.others; i++) TU_CHK((others[i] = malloc(df.size)) != NULL);
    char *p = malloc(df.size);
    TU_CHK(p != NULL);
    memset(p, 1, df.size);
    set_expected(p);
    free(p);
    if (df.scribble) memset(p, 7, df.size);
    for (int i = 0; i < df.between; i++) free(others[i]);
    free(opqp(p));
    for (int i = df.between; i < df.others; i++) free(others[i]);
    malloc_trim(0);
    return 0;
}
static void double_free_case(const char *what, size_t size, int others, int between, int scribble,
                             const char *funcs)
{
    df.size = size, df.others = others, df.between = between, df.scribble = scribble;
    expect_abort(what, c_double_free_small, funcs, "double free");
}
/* The second free of a cached object is caught at once, before the object
 * could be handed out twice. */
static void double_free_small(size_t n)
{
    char what[64];
    snprintf(what, sizeof what, "double free of malloc(%zu)", n);
    double_free_case(what, n, 0, 0, 0, "free");
}
static void test_double_free_24(void **s) { XALLOC_ONLY(); double_free_small(24); }
static void test_double_free_64(void **s) { XALLOC_ONLY(); double_free_small(64); }
static void test_double_free_4000(void **s) { XALLOC_ONLY(); double_free_small(4000); }
static void test_double_free_32k(void **s) { XALLOC_ONLY(); double_free_small(32768); }
/* Other frees of the same size between the two. */
static void test_double_free_between(void **s)
{
    XALLOC_ONLY();
    double_free_case("free(p), other frees, free(p)", 48, 5, 5, 0, "free");
}
/* The first free went back to the slab (the cache overflowed) before the
 * second: the slab's bitmap says so. */
static void test_double_free_flushed(void **s)
{
    XALLOC_ONLY();
    double_free_case("double free after the cache flushed", 64, 5000, 5000, 0, "free");
}
/* A write after the first free erases the mark; the double free is then
 * found when the cache is flushed. */
static void test_double_free_after_write(void **s)
{
    XALLOC_ONLY();
    double_free_case("write after free, then double free", 64, 10000, 0, 1, "free|malloc_trim");
}

#ifndef XA_TEST_GLIBC
/* The same found by the purger, which reclaims the cache of a thread gone
 * quiet: the purger blocks every signal, and the abort still ends the
 * process with SIGABRT (not _exit's 127) after the report. */
static int c_double_free_reclaimed(void *a)
{
    static void *blocks[4096];
    for (int i = 0; i < 4096; i++) TU_CHK((blocks[i] = malloc(1024)) != NULL);
    for (int i = 0; i < 4096; i++) free(blocks[i]);   /* slow paths: the purger starts */
    char *p = malloc(64);
    TU_CHK(p != NULL);
    set_expected(p);
    free(p);
    memset(p, 7, 64);                 /* the mark is gone: the cache takes p again */
    free(opqp(p));
    struct timespec ts = {0, 50 * 1000 * 1000};
    for (int i = 0; i < 200; i++) nanosleep(&ts, NULL);   /* quiet, up to 10 s */
    return 0;
}
static void test_double_free_reclaimed(void **s)
{
    expect_abort("double free found when the purger reclaims the cache", c_double_free_reclaimed, "free", "double free");
}
#endif

/* realloc of a freed block (in the thread's cache, or back in its
 * slab): a size that fits it, which would otherwise return it as it is,
 * and one that moves it. */
static size_t raf_new_size;
static int raf_flushed;
static int c_realloc_after_free(void *a)
{
    static void *others[5000];
    char *p = malloc(64);
    TU_CHK(p != NULL);
    memset(p, 1, 64);
    set_expected(p);
    free(p);
    if (raf_flushed) {                /* p's bin overflows: p goes back to its slab */
        for (int i = 0; i < 5000; i++) TU_CHK((others[i] = malloc(64)) != NULL);
        for (int i = 0; i < 5000; i++) free(others[i]);
    }
    p = realloc(opqp(p), raf_new_size);
    return 0;
}
static void realloc_after_free(size_t n, int flushed)
{
    char what[80];
    snprintf(what, sizeof what, "realloc(%zu) after free%s", n, flushed ? ", cache flushed" : "");
    raf_new_size = n, raf_flushed = flushed;
    expect_abort(what, c_realloc_after_free, "realloc", "double free");
}
static void test_realloc_after_free(void **s)
{
    XALLOC_ONLY();
    realloc_after_free(60, 0);
    realloc_after_free(200, 0);
    realloc_after_free(60, 1);
    realloc_after_free(200, 1);
}

#ifndef XA_TEST_GLIBC
static int c_double_free_sized(void *a)
{
    char *p = malloc(100);
    TU_CHK(p != NULL);
    set_expected(p);
    free_sized(p, 100);
    free_sized(opqp(p), 100);
    return 0;
}
#endif
static void test_double_free_sized(void **s)
{
    XALLOC_ONLY();
#ifndef XA_TEST_GLIBC
    expect_abort("free_sized twice", c_double_free_sized, "free_sized", "double free");
#endif
}

/* An interior pointer of a small block, with a size of the block's class:
 * the sized fast path must still test for an object's start. */
#ifndef XA_TEST_GLIBC
static int c_interior_free_sized(void *a)
{
    char *p = malloc(100);
    TU_CHK(p != NULL);
    set_expected(p + 16);
    free_sized(opqp(p + 16), 100);
    return 0;
}
#endif
static void test_interior_free_sized(void **s)
{
    XALLOC_ONLY();
#ifndef XA_TEST_GLIBC
    expect_abort("free_sized(p + 16)", c_interior_free_sized, "free_sized", "invalid pointer");
#endif
}

/* realloc to a new block frees the old one. */
static int c_free_after_realloc_move(void *a)
{
    char *p = malloc(32);
    TU_CHK(p != NULL);
    set_expected(p);
    char *q = realloc(p, 4000);
    TU_CHK(q != NULL && q != p);
    free(opqp(p));
    return 0;
}
static void test_free_after_realloc_move(void **s)
{
    XALLOC_ONLY();
    expect_abort("free of a block realloc moved", c_free_after_realloc_move, "free", "double free");
}

static int c_double_free_big(void *a)
{
    char *p = malloc(df_size);
    TU_CHK(p != NULL);
    memset(p, 1, 4096);
    set_expected(p);
    free(p);
    free(opqp(p));
    malloc_trim(0);
    return 0;
}
static void test_double_free_1m(void **s)
{
    XALLOC_ONLY();
    df_size = 1 << 20;
    expect_abort("double free of malloc(1 MiB)", c_double_free_big, "free|malloc_trim", "double free");
}
static void test_double_free_16m(void **s)
{
    XALLOC_ONLY();
    df_size = 16 << 20;
    expect_abort("double free of malloc(16 MiB)", c_double_free_big, "free|malloc_trim", "double free");
}

/* realloc(p, 0) frees p, so a later free(p) is a double free */
static int c_free_after_realloc0(void *a)
{
    char *p = malloc(1 << 20);
    TU_CHK(p != NULL);
    set_expected(p);
    TU_CHK(realloc(p, 0) == NULL);
    free(opqp(p));
    malloc_trim(0);
    return 0;
}
static void test_free_after_realloc_zero(void **s)
{
    XALLOC_ONLY();
    expect_abort("free after realloc(p,0)", c_free_after_realloc0, "free|malloc_trim", "double free");
}

/* ---- realloc / free_sized ---------------------------------------------- */

static int c_realloc_stack(void *a)
{
    _Alignas(64) char buf[256];
    memset(buf, 0, sizeof buf);
    set_expected(buf);
    void *q = realloc(opqp(buf), 1000);
    fprintf(stderr, "realloc returned %p\n", q);
    return 0;
}
static void test_realloc_stack(void **s) { XALLOC_ONLY(); expect_abort("realloc(stack)", c_realloc_stack, "realloc", "invalid pointer"); }

static int c_realloc_interior(void *a)
{
    char *p = malloc(64);
    TU_CHK(p != NULL);
    set_expected(p + 16);
    void *q = realloc(opqp(p + 16), 200);
    fprintf(stderr, "realloc returned %p\n", q);
    return 0;
}
static void test_realloc_interior(void **s) { XALLOC_ONLY(); expect_abort("realloc(p+16)", c_realloc_interior, "realloc", "invalid pointer"); }

static int c_realloc_mmap(void *a)
{
    char *m = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    TU_CHK(m != MAP_FAILED);
    set_expected(m);
    void *q = realloc(opqp(m), 2 << 20);
    fprintf(stderr, "realloc returned %p\n", q);
    return 0;
}
static void test_realloc_mmap(void **s) { XALLOC_ONLY(); expect_abort("realloc(mmap)", c_realloc_mmap, "realloc", "invalid pointer"); }

#ifndef XA_TEST_GLIBC
static size_t fs_alloc, fs_claim;
static int c_free_sized_wrong(void *a)
{
    char *p = malloc(fs_alloc);
    TU_CHK(p != NULL);
    set_expected(p);
    free_sized(p, fs_claim);
    malloc_trim(0);
    return 0;
}
static void free_sized_wrong(size_t alloc, size_t claim)
{
    char what[80];
    snprintf(what, sizeof what, "free_sized(malloc(%zu), %zu)", alloc, claim);
    fs_alloc = alloc;
    fs_claim = claim;
    expect_abort(what, c_free_sized_wrong, "free_sized", "size does not match block");
}
#endif
#ifndef XA_TEST_GLIBC
static size_t fa_size, fa_align, fa_claim_size, fa_claim_align;
static int c_free_aligned_sized_wrong(void *a)
{
    char *p;
    if (fa_align == 0) {
        /* a malloc'ed block that has the claimed alignment by chance (its
         * address alone would pass) */
        static void *keep[4096];
        int k = 0;
        do p = keep[k++] = malloc(fa_size);
        while (p && k < 4096 && ((uintptr_t)p & (fa_claim_align - 1)) != 0);
        TU_CHK(p != NULL && ((uintptr_t)p & (fa_claim_align - 1)) == 0);
        set_expected(p);
        free_aligned_sized(p, fa_claim_align, fa_claim_size);
        return 0;
    }
    /* a block that does not have the claimed alignment by chance */
    do p = aligned_alloc(fa_align, fa_size);
    while (p && fa_claim_align > fa_align && ((uintptr_t)p & (fa_claim_align - 1)) == 0);
    TU_CHK(p != NULL);
    set_expected(p);
    free_aligned_sized(p, fa_claim_align, fa_claim_size);
    return 0;
}
#endif
static void free_aligned_sized_wrong(size_t align, size_t size, size_t claim_align, size_t claim_size)
{
#ifndef XA_TEST_GLIBC
    char what[96];
    snprintf(what, sizeof what, "free_aligned_sized(aligned_alloc(%zu, %zu), %zu, %zu)", align, size, claim_align,
             claim_size);
    fa_size = size, fa_align = align, fa_claim_size = claim_size, fa_claim_align = claim_align;
    expect_abort(what, c_free_aligned_sized_wrong, "free_aligned_sized", "size or alignment does not match block");
#endif
}
static void test_free_aligned_sized_wrong_align(void **s)
{
    XALLOC_ONLY();
    free_aligned_sized_wrong(64, 100, 4096, 100);
    free_aligned_sized_wrong(4096, 40000, 1 << 20, 40000);
}
static void test_free_aligned_sized_wrong_size(void **s)
{
    XALLOC_ONLY();
    free_aligned_sized_wrong(64, 100, 64, 100000);
    free_aligned_sized_wrong(4096, 3 << 20, 4096, 5 << 20);
}
/* Issue 14: the size of large and huge blocks was checked only against
 * the usable size (a smaller claim passed), and the alignment only
 * against the address. */
static void test_free_aligned_sized_smaller_claim(void **s)
{
    XALLOC_ONLY();
    free_aligned_sized_wrong(4096, 100000, 4096, 60000);        /* large: 25 pages, not 15 */
    free_aligned_sized_wrong(4096, 3 << 20, 4096, 5 << 19);     /* huge: 3 MiB, not 2.5 */
    free_aligned_sized_wrong(64, 100, 64, 40);                  /* small: class 128, not 64 */
}
static void test_free_aligned_sized_alignment_by_chance(void **s)
{
    XALLOC_ONLY();
    free_aligned_sized_wrong(0, 64, 4096, 64);                  /* 64-byte class on a page */
    free_aligned_sized_wrong(0, 48, 32, 48);                    /* 48-byte class on 32 */
}

static void test_free_sized_wrong_small(void **s)
{
    XALLOC_ONLY();
#ifndef XA_TEST_GLIBC
    free_sized_wrong(100, 5000);
#endif
}
static void test_free_sized_wrong_small2(void **s)
{
    XALLOC_ONLY();
#ifndef XA_TEST_GLIBC
    free_sized_wrong(4000, 16);
#endif
}
static void test_free_sized_wrong_large(void **s)
{
    XALLOC_ONLY();
#ifndef XA_TEST_GLIBC
    free_sized_wrong(1 << 20, 100);
#endif
}
static void test_free_sized_wrong_large_half(void **s)
{
    XALLOC_ONLY();
#ifndef XA_TEST_GLIBC
    free_sized_wrong(1 << 20, 600000);      /* 256 pages, not 147; realloc would have shrunk it */
    free_sized_wrong(200000, 120000);
#endif
}
static void test_free_sized_wrong_huge(void **s)
{
    XALLOC_ONLY();
#ifndef XA_TEST_GLIBC
    free_sized_wrong(16 << 20, 64);
    free_sized_wrong(8 << 20, (6 << 20) + (512 << 10));   /* whole 2 MiB pages, but not this request's */
#endif
}

/* ---- control: valid frees must never be reported ------------------------ */

static int c_valid_usage(void *a)
{
    tu_rng r;
    tu_seed(&r, 2024);
    enum { N = 4000 };
    static void *v[N];
    static size_t n[N], al[N];
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < N; i++) {
            n[i] = (i % 97 == 0) ? tu_range(&r, 1 << 20, 17 << 20) : tu_range(&r, 0, 20000);
            al[i] = 0;
            switch (i % 6) {
            case 0: v[i] = malloc(n[i]); break;
            case 1: v[i] = calloc(1, n[i]); break;
            case 2: v[i] = i % 4 == 0 ? realloc(malloc(tu_range(&r, 1, 300)), n[i])   /* grown */
                                      : realloc(malloc(n[i] + tu_range(&r, 0, n[i] + 1)), n[i]);   /* shrunk */
                    break;
            case 3: al[i] = (size_t)1 << tu_range(&r, 4, 22); v[i] = aligned_alloc(al[i], n[i]); break;
            case 4: al[i] = (size_t)1 << tu_range(&r, 3, 22);
                    TU_CHK(posix_memalign(&v[i], al[i], n[i]) == 0); break;
            default: al[i] = (size_t)1 << tu_range(&r, 4, 14); v[i] = memalign(al[i], n[i]); break;
            }
            TU_CHK(v[i] != NULL);
            TU_CHK(!al[i] || tu_aligned(v[i], al[i]));
        }
        for (int i = 0; i < N; i++) {
#ifndef XA_TEST_GLIBC
            if (i % 6 == 3 && i % 2) { free_aligned_sized(v[i], al[i], n[i]); continue; }
            if (i % 6 <= 2 && i % 2) { free_sized(v[i], n[i]); continue; }
#endif
            if (i % 5 == 0) { TU_CHK(realloc(v[i], 0) == NULL); continue; }
            free(v[i]);
        }
        malloc_trim(0);
    }
#ifndef XA_TEST_GLIBC
    /* A huge block may be a cached mapping somewhat larger than asked for;
     * sized frees of it are right. */
    for (int k = 0; k < 2; k++) {
        free(malloc(8 << 20));
        void *h = k ? aligned_alloc(4096, (15 << 19) + 100) : malloc((15 << 19) + 100);
        TU_CHK(h != NULL);
        if (k) free_aligned_sized(h, 4096, (15 << 19) + 100);
        else free_sized(h, (15 << 19) + 100);
    }
    /* Data that happens to equal the freed mark is not a double free. */
    for (int i = 0; i < 3000; i++) {
        uint16_t *m = malloc(8 + i % 200);
        TU_CHK(m != NULL);
        *m = XA_FREED_MARK;
        free(m);
    }
#endif
    free(NULL);
    void *z = realloc(NULL, 0);
    TU_CHK(z != NULL);
    free(z);
    return 0;
}

static void test_valid_usage_not_reported(void **s)
{
    static tu_child c;
    tu_run_child(&c, c_valid_usage, NULL, 1, 120);
    if (!tu_child_ok("valid usage", &c)) fail_msg("valid usage was not accepted");
    if (strstr(c.err, "xalloc: ")) {
        tu_child_dump("valid usage", &c);
        fail_msg("valid usage produced an xalloc report");
    }
}

int main(void)
{
    expected = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (expected == MAP_FAILED) { perror("mmap"); return 1; }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_usage_not_reported),
        cmocka_unit_test(test_free_stack),
        cmocka_unit_test(test_free_global),
        cmocka_unit_test(test_free_mmap),
        cmocka_unit_test(test_free_mmap_start),
        cmocka_unit_test(test_free_unused_page),
        cmocka_unit_test(test_free_high_alias),
        cmocka_unit_test(test_free_interior_64_16),
        cmocka_unit_test(test_free_interior_64_8),
        cmocka_unit_test(test_free_interior_1000_512),
        cmocka_unit_test(test_free_interior_1m_4096),
        cmocka_unit_test(test_free_interior_16m_4096),
        cmocka_unit_test(test_free_interior_16m_1m),
        cmocka_unit_test(test_double_free_24),
        cmocka_unit_test(test_double_free_64),
        cmocka_unit_test(test_double_free_4000),
        cmocka_unit_test(test_double_free_32k),
        cmocka_unit_test(test_double_free_between),
        cmocka_unit_test(test_double_free_flushed),
        cmocka_unit_test(test_double_free_after_write),
#ifndef XA_TEST_GLIBC
        cmocka_unit_test(test_double_free_reclaimed),
#endif
        cmocka_unit_test(test_realloc_after_free),
        cmocka_unit_test(test_double_free_sized),
        cmocka_unit_test(test_interior_free_sized),
        cmocka_unit_test(test_free_after_realloc_move),
        cmocka_unit_test(test_double_free_1m),
        cmocka_unit_test(test_double_free_16m),
        cmocka_unit_test(test_free_after_realloc_zero),
        cmocka_unit_test(test_realloc_stack),
        cmocka_unit_test(test_realloc_interior),
        cmocka_unit_test(test_realloc_mmap),
        cmocka_unit_test(test_free_aligned_sized_wrong_align),
        cmocka_unit_test(test_free_aligned_sized_wrong_size),
        cmocka_unit_test(test_free_aligned_sized_smaller_claim),
        cmocka_unit_test(test_free_aligned_sized_alignment_by_chance),
        cmocka_unit_test(test_free_sized_wrong_large_half),
        cmocka_unit_test(test_free_sized_wrong_small),
        cmocka_unit_test(test_free_sized_wrong_small2),
        cmocka_unit_test(test_free_sized_wrong_large),
        cmocka_unit_test(test_free_sized_wrong_huge),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
