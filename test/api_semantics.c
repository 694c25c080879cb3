/* api_semantics: glibc-compatible semantics of the whole public malloc API.
 *
 * Built twice by the Makefile: linked with -lxalloc, and against plain glibc
 * 2.36 with -DXA_TEST_GLIBC.  Every check that runs in both builds describes
 * behaviour glibc 2.36 really has (verified by running the .glibc build).
 * Checks under #ifndef XA_TEST_GLIBC are xalloc-specific:
 *   - free_sized / free_aligned_sized (C23; glibc 2.36 lacks them),
 *   - xalloc_version / xalloc_purge (xalloc's own API),
 *   - "malloc and the __libc_* aliases resolve to libxalloc" (dladdr).
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dlfcn.h>
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
#endif

/* glibc's internal-but-exported aliases; a drop-in replacement must provide
 * them too, so that code calling them shares the heap with malloc/free. */
extern void *__libc_malloc(size_t);
extern void __libc_free(void *);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void *__libc_valloc(size_t);
extern void *__libc_pvalloc(size_t);

/* Hide constants from the compiler so it neither folds calls nor warns about
 * sizes > PTRDIFF_MAX (-Walloc-size-larger-than). */
static size_t opq(size_t x)
{
    __asm__ volatile("" : "+r"(x));
    return x;
}

/* Same for pointers: keeps gcc's -Wuse-after-free from flagging the checks
 * on a block after a realloc that failed (and so left the block alone). */
static void *opqp(void *x)
{
    __asm__ volatile("" : "+r"(x));
    return x;
}

#define PAGE ((size_t)sysconf(_SC_PAGESIZE))
#define PTRDIFF_MAX_SZ ((size_t)PTRDIFF_MAX)

/* Expect NULL with errno == ENOMEM.  Not evaluated under valgrind: its
 * replacement allocator sets no errno and even asserts internally on some
 * impossible sizes (m_mallocfree.c: req_pszB < MAX_PSZB). */
#define ASSERT_ENOMEM(expr) do { \
        if (tu_valgrind()) break; \
        errno = 0; \
        void *r_ = (expr); \
        if (r_ != NULL || errno != ENOMEM) \
            fail_msg("%s: expected NULL/ENOMEM, got %p errno=%d", #expr, r_, errno); \
    } while (0)

/* minimal alignment malloc(n) must provide: fundamental alignment for any
 * object that fits in n bytes, capped at 16 (max_align_t on x86_64). */
static size_t min_align(size_t n)
{
    if (n == 0) return 1;
    size_t a = tu_pow2_floor(n);
    return a > 16 ? 16 : a;
}

/* ------------------------------------------------------------------------ */

static int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return x < y ? -1 : x > y;
}

static void test_malloc_zero(void **state)
{
    enum { N = 2000 };
    void **v = calloc(N, sizeof *v);
    assert_non_null(v);
    for (int i = 0; i < N; i++) {
        switch (i % 3) {
        case 0: v[i] = malloc(opq(0)); break;
        case 1: v[i] = realloc(NULL, opq(0)); break;   /* realloc(NULL,0) == malloc(0) */
        default: v[i] = calloc(opq(0), opq(i)); break; /* calloc(0,n) like malloc(0) */
        }
        assert_non_null(v[i]);
    }
    uintptr_t *s = malloc(N * sizeof *s);
    assert_non_null(s);
    for (int i = 0; i < N; i++) s[i] = (uintptr_t)v[i];
    qsort(s, N, sizeof *s, cmp_ptr);
    for (int i = 1; i < N; i++)
        if (s[i] == s[i - 1]) fail_msg("malloc(0) returned %p twice", (void *)s[i]);
    /* the zero-size blocks are real, freeable blocks; free them in an
     * order different from allocation */
    for (int i = 0; i < N; i += 2) free(v[i]);
    for (int i = 1; i < N; i += 2) free(v[i]);
    free(s);
    free(v);
}

/* Every size 0..4096 live at the same time: alignment, usable size, the full
 * usable area writable without touching neighbours, no overlap; then reuse
 * half of them (with calloc, which must return zeroed memory). */
static void test_every_small_size(void **state)
{
    enum { MAXN = 4096 };
    void **p = calloc(MAXN + 1, sizeof *p);
    size_t *u = calloc(MAXN + 1, sizeof *u);
    assert_non_null(p);
    assert_non_null(u);
    for (size_t n = 0; n <= MAXN; n++) {
        p[n] = malloc(opq(n));
        assert_non_null(p[n]);
        if (!tu_aligned(p[n], min_align(n)))
            fail_msg("malloc(%zu) = %p not %zu-aligned", n, p[n], min_align(n));
        u[n] = malloc_usable_size(p[n]);
        if (u[n] < n) fail_msg("malloc_usable_size(malloc(%zu)) = %zu", n, u[n]);
        tu_fill(p[n], u[n], 1000 + n); /* the whole usable area may be used */
    }
    for (size_t n = 0; n <= MAXN; n++)
        if (!tu_check(p[n], u[n], 1000 + n))
            fail_msg("block malloc(%zu)=%p usable %zu corrupted", n, p[n], u[n]);

    /* no two blocks' usable areas overlap */
    struct iv { uintptr_t a, b; } *iv = malloc((MAXN + 1) * sizeof *iv);
    assert_non_null(iv);
    for (size_t n = 0; n <= MAXN; n++) { iv[n].a = (uintptr_t)p[n]; iv[n].b = (uintptr_t)p[n] + u[n]; }
    qsort(iv, MAXN + 1, sizeof *iv, cmp_ptr); /* sorts by .a (first member) */
    for (size_t i = 1; i <= MAXN; i++)
        if (iv[i].a < iv[i - 1].b)
            fail_msg("blocks overlap: [%#lx,%#lx) and [%#lx,%#lx)", (unsigned long)iv[i - 1].a,
                     (unsigned long)iv[i - 1].b, (unsigned long)iv[i].a, (unsigned long)iv[i].b);
    free(iv);

    /* free the even sizes, reallocate them zeroed, check the odd ones */
    for (size_t n = 0; n <= MAXN; n += 2) free(p[n]);
    for (size_t n = 0; n <= MAXN; n += 2) {
        p[n] = calloc(1, opq(n));
        assert_non_null(p[n]);
        if (!tu_is_zero(p[n], n)) fail_msg("calloc(1,%zu) after free not zeroed", n);
        if (!tu_aligned(p[n], min_align(n))) fail_msg("calloc(1,%zu) misaligned %p", n, p[n]);
        u[n] = malloc_usable_size(p[n]);
        assert_true(u[n] >= n);
        tu_fill(p[n], u[n], 1000 + n);
    }
    for (size_t n = 0; n <= MAXN; n++) {
        if (!tu_check(p[n], u[n], 1000 + n))
            fail_msg("block of size %zu corrupted after reuse", n);
        free(p[n]);
    }
    free(p);
    free(u);
}

/* Geometric sweep 4 KiB .. 64 MiB with a window of three live blocks. */
static void test_geometric_sizes(void **state)
{
    enum { W = 3 };
    void *live[W] = { 0 };
    size_t lsz[W] = { 0 };
    uint64_t ltag[W] = { 0 };
    int k = 0;
    for (size_t s = 4096; s <= 64 * TU_MiB; s = s + s / 11 + 13, k++) {
        int slot = k % W;
        if (live[slot]) {
            if (!tu_check_sparse(live[slot], lsz[slot], ltag[slot]))
                fail_msg("block of %zu bytes corrupted", lsz[slot]);
            free(live[slot]);
        }
        void *p = (k & 1) ? calloc(1, opq(s)) : malloc(opq(s));
        if (!p) fail_msg("alloc(%zu) failed", s);
        if (!tu_aligned(p, 16)) fail_msg("alloc(%zu)=%p not 16-aligned", s, p);
        if (malloc_usable_size(p) < s) fail_msg("usable(%zu) = %zu", s, malloc_usable_size(p));
        if ((k & 1) && !tu_is_zero(p, s)) fail_msg("calloc(1,%zu) not zeroed", s);
        tu_fill_sparse(p, s, 7000 + k);
        live[slot] = p; lsz[slot] = s; ltag[slot] = 7000 + k;
        for (int j = 0; j < W; j++) /* no overlap with the other live blocks */
            if (j != slot && live[j] &&
                (uintptr_t)p < (uintptr_t)live[j] + lsz[j] && (uintptr_t)live[j] < (uintptr_t)p + s)
                fail_msg("block %p+%zu overlaps %p+%zu", p, s, live[j], lsz[j]);
    }
    assert_true(k > 80);
    for (int j = 0; j < W; j++) {
        if (live[j] && !tu_check_sparse(live[j], lsz[j], ltag[j])) fail_msg("final check failed");
        free(live[j]);
    }
}

/* ------------------------------------------------------------------------ */

static void calloc_reuse_one(size_t n, int rounds)
{
    for (int r = 0; r < rounds; r++) {
        unsigned char *p = malloc(opq(n));
        if (!p) fail_msg("malloc(%zu)", n);
        memset(p, 0xff, malloc_usable_size(p));
        free(p);
        unsigned char *q;
        switch (r % 3) {
        case 0: q = calloc(1, opq(n)); break;
        case 1: q = calloc(opq(n), 1); break;
        default: q = (n % 8 == 0) ? calloc(opq(n / 8), 8) : calloc(opq(n), 1); break;
        }
        if (!q) fail_msg("calloc(%zu)", n);
        if (!tu_is_zero(q, n)) fail_msg("calloc of %zu bytes (round %d) not zero (reused %s block)",
                                        n, r, q == p ? "the same" : "another");
        if (n >= 16 && !tu_aligned(q, 16)) fail_msg("calloc(%zu) not 16-aligned", n);
        memset(q, 0xff, n);
        free(q);
    }
}

static void test_calloc_zero_after_reuse(void **state)
{
    static const size_t sizes[] = {
        1, 7, 8, 15, 16, 17, 24, 32, 48, 64, 100, 128, 255, 256, 512, 1000, 1024,
        2048, 4000, 4096, 4097, 8192, 16384, 32768, 40000, 65536, 65537, 100000,
        131072, 262144, 500000, 1 << 20, (1 << 20) + 1, 2 << 20, 4 << 20,
        (8 << 20) + 1, 16 << 20, 32 << 20,
    };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        calloc_reuse_one(n, n <= 65536 ? 200 : n <= (4 << 20) ? 30 : 8);
    }
    /* batch: many dirty blocks freed, then calloc'd back */
    static const size_t bsz[] = { 16, 48, 128, 1024, 4096, 20000, 70000, 300000 };
    enum { B = 256 };
    void *v[B];
    for (size_t i = 0; i < sizeof bsz / sizeof bsz[0]; i++) {
        size_t n = bsz[i];
        for (int j = 0; j < B; j++) {
            v[j] = malloc(opq(n));
            assert_non_null(v[j]);
            memset(v[j], 0xa5, malloc_usable_size(v[j]));
        }
        for (int j = 0; j < B; j++) free(v[j]);
        for (int j = 0; j < B; j++) {
            v[j] = calloc(opq(n / 4), 4);
            assert_non_null(v[j]);
            if (!tu_is_zero(v[j], n)) fail_msg("batch calloc(%zu/4,4) #%d not zero", n, j);
            memset(v[j], 0x5a, n);
        }
        for (int j = 0; j < B; j++) free(v[j]);
    }
}

static void test_calloc_overflow(void **state)
{
    ASSERT_ENOMEM(calloc(opq(SIZE_MAX), opq(2)));
    ASSERT_ENOMEM(calloc(opq(2), opq(SIZE_MAX)));
    ASSERT_ENOMEM(calloc(opq(SIZE_MAX / 2), opq(3)));
    ASSERT_ENOMEM(calloc(opq((size_t)1 << 32), opq((size_t)1 << 32)));
    ASSERT_ENOMEM(calloc(opq(((size_t)1 << 32) + 1), opq(((size_t)1 << 32) - 1)) ); /* no overflow: 2^64-1, but > PTRDIFF_MAX */
    ASSERT_ENOMEM(calloc(opq(SIZE_MAX), opq(SIZE_MAX)));
    ASSERT_ENOMEM(calloc(opq(PTRDIFF_MAX_SZ / 2 + 1), opq(2))); /* == PTRDIFF_MAX+1 */
    ASSERT_ENOMEM(calloc(opq(1), opq(SIZE_MAX)));
    ASSERT_ENOMEM(calloc(opq(SIZE_MAX / 4096 + 1), opq(4096)));
    /* and a normal calloc still works afterwards */
    void *p = calloc(opq(1000), opq(1000));
    assert_non_null(p);
    assert_true(tu_is_zero(p, 1000000));
    free(p);
}

static void test_too_large(void **state)
{
    static const size_t big[] = {
        SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - 4096, SIZE_MAX - (1 << 20), SIZE_MAX / 2,
        PTRDIFF_MAX_SZ + 1, PTRDIFF_MAX_SZ, PTRDIFF_MAX_SZ - 4096 + 1,
    };
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
        size_t n = opq(big[i]);
        ASSERT_ENOMEM(malloc(n));
        ASSERT_ENOMEM(realloc(NULL, n));
        ASSERT_ENOMEM(calloc(1, n));
        ASSERT_ENOMEM(calloc(n, 1));
        ASSERT_ENOMEM(aligned_alloc(64, n));
        ASSERT_ENOMEM(memalign(4096, n));
        ASSERT_ENOMEM(valloc(n));
        ASSERT_ENOMEM(pvalloc(n));
        if (tu_valgrind()) continue; /* see ASSERT_ENOMEM */
        void *out = (void *)0x1;
        int rc = posix_memalign(&out, 64, n);
        if (rc != ENOMEM) fail_msg("posix_memalign(64, %zu) = %d, want ENOMEM", n, rc);
        /* POSIX: on failure *memptr is either unmodified or NULL */
        if (out != (void *)0x1 && out != NULL) fail_msg("posix_memalign failure set *memptr=%p", out);
    }
}

/* ------------------------------------------------------------------------ */

static void test_realloc_null_and_zero(void **state)
{
    static const size_t sizes[] = { 1, 16, 100, 4096, 65536, 1 << 20, 8 << 20, 40 << 20 };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        /* realloc(NULL, n) behaves like malloc(n) */
        void *p = realloc(NULL, opq(n));
        assert_non_null(p);
        assert_true(malloc_usable_size(p) >= n);
        if (n >= 16) assert_true(tu_aligned(p, 16));
        tu_fill(p, n, n);
        assert_true(tu_check(p, n, n));
        /* realloc(p, 0) frees p and returns NULL (glibc), errno untouched */
        errno = EILSEQ;
        void *q = realloc(p, opq(0));
        if (q != NULL) fail_msg("realloc(%p /*%zu bytes*/, 0) = %p, want NULL", p, n, q);
        assert_int_equal(errno, EILSEQ);
    }
}

/* realloc through fixed ladders and random chains; contents must survive
 * every move/grow/shrink, across small, large and huge size ranges. */
static void *realloc_step(void *p, size_t old, size_t new, uint64_t tag)
{
    void *q = realloc(p, opq(new));
    if (!q) fail_msg("realloc(%p, %zu -> %zu) failed", p, old, new);
    if (new >= 16 && !tu_aligned(q, 16)) fail_msg("realloc(.., %zu) = %p not 16-aligned", new, q);
    if (malloc_usable_size(q) < new) fail_msg("usable %zu < %zu after realloc", malloc_usable_size(q), new);
    size_t keep = old < new ? old : new;
    size_t bad = tu_check_range(q, 0, keep, tag);
    if (bad != (size_t)-1)
        fail_msg("realloc %zu -> %zu (%p -> %p) lost byte %zu of %zu", old, new, p, q, bad, keep);
    if (new > old) tu_fill_range(q, old, new, tag);
    return q;
}

static void test_realloc_ladders(void **state)
{
    static const size_t ladder[] = {
        1, 15, 16, 17, 24, 100, 512, 1000, 4095, 4096, 4097, 8000, 32768, 32769,
        65536, 100000, 262144, 700000, 1 << 20, (1 << 20) + 3, 4 << 20, (4 << 20) + 1,
        9 << 20, 16 << 20, 33 << 20, 64 << 20,
    };
    const int L = (int)(sizeof ladder / sizeof ladder[0]);
    /* up then down, one step at a time */
    size_t cur = ladder[0];
    void *p = malloc(cur);
    assert_non_null(p);
    tu_fill(p, cur, 42);
    for (int i = 1; i < L; i++) { p = realloc_step(p, cur, ladder[i], 42); cur = ladder[i]; }
    for (int i = L - 2; i >= 0; i--) { p = realloc_step(p, cur, ladder[i], 42); cur = ladder[i]; }
    free(p);

    /* jumps between ranges (huge -> small -> huge ...), with an obstacle
     * allocated in between so growing in place is not always possible */
    for (int a = 0; a < L; a += 3) {
        for (int b = 0; b < L; b += 4) {
            size_t s0 = ladder[a], s1 = ladder[b];
            void *x = malloc(s0);
            assert_non_null(x);
            tu_fill(x, s0, a * 100 + b);
            void *obstacle = malloc(opq(s0 < 4096 ? s0 : 64));
            assert_non_null(obstacle);
            x = realloc_step(x, s0, s1, a * 100 + b);
            x = realloc_step(x, s1, s0, a * 100 + b);
            free(obstacle);
            free(x);
        }
    }

    /* +1 byte at a time through the small range, content checked each time */
    cur = 1;
    p = malloc(cur);
    assert_non_null(p);
    tu_fill(p, 1, 77);
    for (size_t n = 2; n <= 5000; n++) { p = realloc_step(p, cur, n, 77); cur = n; }
    for (size_t n = 4999; n > 7; n -= 7) { p = realloc_step(p, cur, n, 77); cur = n; }
    free(p);

    /* realloc of blocks from the aligned allocators keeps contents too */
    for (size_t al = 16; al <= (1 << 20); al <<= 2) {
        void *x = aligned_alloc(al, 100);
        assert_non_null(x);
        assert_true(tu_aligned(x, al));
        tu_fill(x, 100, al);
        x = realloc_step(x, 100, 300000, al);
        x = realloc_step(x, 300000, 50, al);
        free(x);
    }
}

static void test_realloc_random_chains(void **state)
{
    tu_rng r;
    tu_seed(&r, 12345);
    enum { CHAINS = 64, STEPS = 24 };
    for (int c = 0; c < CHAINS; c++) {
        size_t cur = tu_range(&r, 0, 2000);
        void *p = malloc(opq(cur));
        assert_non_null(p);
        tu_fill(p, cur, 5000 + c);
        for (int s = 0; s < STEPS; s++) {
            unsigned k = (unsigned)(tu_next(&r) % 100);
            size_t n;
            if (k < 60) n = tu_range(&r, 1, 32768);                 /* small */
            else if (k < 95) n = tu_range(&r, 65536, 1 << 20);      /* large */
            else n = tu_range(&r, 4 << 20, 64 << 20);               /* huge  */
            p = realloc_step(p, cur, n, 5000 + c);
            cur = n;
        }
        free(p);
    }
}

static void test_realloc_failure_keeps_block(void **state)
{
    static const size_t sizes[] = { 100, 5000, 200000, 8 << 20 };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        void *p = malloc(n);
        assert_non_null(p);
        tu_fill(p, n, 99 + i);
        ASSERT_ENOMEM(realloc(opqp(p), opq(SIZE_MAX)));
        ASSERT_ENOMEM(realloc(opqp(p), opq(PTRDIFF_MAX_SZ + 1)));
        ASSERT_ENOMEM(realloc(opqp(p), opq(SIZE_MAX - 4096)));
        ASSERT_ENOMEM(reallocarray(opqp(p), opq(SIZE_MAX / 2), opq(3)));
        /* p is still valid and unchanged */
        assert_true(tu_check(p, n, 99 + i));
        assert_true(malloc_usable_size(p) >= n);
        p = realloc_step(p, n, n * 2, 99 + i);
        free(p);
    }
}

static void test_reallocarray(void **state)
{
    int *a = reallocarray(NULL, opq(10), sizeof(int));
    assert_non_null(a);
    for (int i = 0; i < 10; i++) a[i] = i * 3;
    a = reallocarray(a, opq(100000), sizeof(int));
    assert_non_null(a);
    for (int i = 0; i < 10; i++) assert_int_equal(a[i], i * 3);
    for (int i = 10; i < 100000; i++) a[i] = i * 3;
    int *b = reallocarray(a, opq(20), sizeof(int));
    assert_non_null(b);
    a = b;
    for (int i = 0; i < 20; i++) assert_int_equal(a[i], i * 3);
    /* overflow: NULL/ENOMEM and the block is left alone */
    ASSERT_ENOMEM(reallocarray(opqp(a), opq(SIZE_MAX / 2), opq(4)));
    ASSERT_ENOMEM(reallocarray(opqp(a), opq((size_t)1 << 33), opq((size_t)1 << 33)));
    ASSERT_ENOMEM(reallocarray(NULL, opq(SIZE_MAX), opq(SIZE_MAX)));
    ASSERT_ENOMEM(reallocarray(opqp(a), opq(PTRDIFF_MAX_SZ / 8 + 1), opq(8))); /* no overflow, > PTRDIFF_MAX */
    for (int i = 0; i < 20; i++) assert_int_equal(a[i], i * 3);
    /* reallocarray(p, 0, n) == realloc(p, 0): frees, returns NULL (glibc) */
    assert_null(reallocarray(a, opq(0), sizeof(int)));
    void *z = reallocarray(NULL, opq(0), opq(0));
    assert_non_null(z); /* == malloc(0) */
    free(z);
}

/* ------------------------------------------------------------------------ */

static void check_aligned_block(const char *fn, void *p, size_t al, size_t n)
{
    if (!p) fail_msg("%s(%zu, %zu) failed errno=%d", fn, al, n, errno);
    if (!tu_aligned(p, al)) fail_msg("%s(%zu, %zu) = %p misaligned", fn, al, n, p);
    if (malloc_usable_size(p) < n) fail_msg("%s(%zu, %zu): usable %zu", fn, al, n, malloc_usable_size(p));
    if (n) {
        volatile unsigned char *c = p;
        c[0] = 0x11;
        c[n - 1] = 0x22;
        if (n > 1) assert_int_equal(c[0], 0x11);
        assert_int_equal(c[n - 1], 0x22);
    }
}

/* Largest alignment tried: 1 GiB (valgrind's arena can't do more than a
 * few MiB of alignment). */
static size_t max_align(void) { return tu_valgrind() ? ((size_t)1 << 22) : TU_GiB; }

/* sizes to try for alignment al */
static int align_sizes(size_t al, size_t *out)
{
    int k = 0;
    out[k++] = 1;
    out[k++] = 100;
    out[k++] = 4097;
    if (al <= (4 << 20)) { out[k++] = al; out[k++] = al + 1; }
    if (al <= (1 << 20)) out[k++] = 3 * al;
    return k;
}

static void test_posix_memalign(void **state)
{
    size_t sz[8];
    for (size_t al = sizeof(void *); al <= max_align(); al <<= 1) {
        int k = align_sizes(al, sz);
        for (int i = 0; i < k; i++) {
            void *p = (void *)0x1;
            int rc = posix_memalign(&p, opq(al), opq(sz[i]));
            if (rc != 0) fail_msg("posix_memalign(%zu, %zu) = %d", al, sz[i], rc);
            check_aligned_block("posix_memalign", p, al, sz[i]);
            free(p);
        }
    }
    /* size 0 succeeds (glibc returns a unique freeable block) */
    void *z = NULL;
    assert_int_equal(posix_memalign(&z, 64, opq(0)), 0);
    assert_non_null(z);
    assert_true(tu_aligned(z, 64));
    free(z);

    /* invalid alignment: EINVAL, errno and *memptr untouched (glibc leaves
     * *memptr unmodified; POSIX also allows NULL) */
    static const size_t bad[] = { 0, 1, 2, 4, 3, 12, 24, 40, 48, 96, 100, 4095, 4104, 12288,
                                  (1 << 20) + 8, SIZE_MAX, SIZE_MAX - 7, (SIZE_MAX >> 1) + 9 };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        void *p = (void *)0x1234;
        errno = EILSEQ;
        int rc = posix_memalign(&p, opq(bad[i]), opq(64));
        if (rc != EINVAL) fail_msg("posix_memalign(%zu, 64) = %d, want EINVAL", bad[i], rc);
        if (errno != EILSEQ) fail_msg("posix_memalign(%zu) with bad alignment changed errno to %d", bad[i], errno);
        if (p != (void *)0x1234 && p != NULL) fail_msg("posix_memalign(%zu) set *memptr=%p", bad[i], p);
    }
    /* a valid (power of two) but unsatisfiable alignment is ENOMEM */
    if (tu_valgrind()) return; /* see ASSERT_ENOMEM */
    void *p = (void *)0x1234;
    int rc = posix_memalign(&p, opq((SIZE_MAX >> 1) + 1), opq(16));
    if (rc != ENOMEM) fail_msg("posix_memalign(2^63, 16) = %d, want ENOMEM", rc);
    assert_true(p == (void *)0x1234 || p == NULL);
}

/* aligned_alloc and memalign: in glibc 2.36 aligned_alloc is an alias of
 * memalign, so both accept any alignment: a non-power-of-two alignment is
 * rounded up to the next power of two, 0 (or anything <= 16) means malloc;
 * only alignments > SIZE_MAX/2+1 fail with EINVAL, and 2^63 fails with
 * ENOMEM.  (glibc >= 2.38 makes aligned_alloc reject non-powers of two; the
 * target here is 2.36.)  The size need not be a multiple of the alignment. */
typedef void *(*alfn)(size_t, size_t);

static void check_memalign_family(const char *name, alfn f)
{
    size_t sz[8];
    for (size_t al = 1; al <= max_align(); al <<= 1) {
        int k = align_sizes(al, sz);
        for (int i = 0; i < k; i++) {
            errno = 0;
            void *p = f(opq(al), opq(sz[i]));
            check_aligned_block(name, p, al, sz[i]);
            free(p);
        }
    }
    static const size_t odd[] = { 3, 5, 12, 24, 48, 100, 1000, 4095, 12288, 100000, 3 << 20 };
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
        size_t al = odd[i];
        void *p = f(opq(al), opq(200));
        if (!p) fail_msg("%s(%zu, 200) = NULL errno=%d (glibc 2.36 rounds the alignment up)", name, al, errno);
        check_aligned_block(name, p, tu_pow2_ceil(al), 200);
        free(p);
    }
    void *p = f(opq(0), opq(100));
    if (!p) fail_msg("%s(0, 100) = NULL (glibc 2.36 treats alignment 0 like malloc)", name);
    check_aligned_block(name, p, 16, 100);
    free(p);
    p = f(opq(64), opq(0));
    assert_non_null(p); /* zero size: unique block */
    assert_true(tu_aligned(p, 64));
    free(p);
    /* alignment too large */
    if (tu_valgrind()) return; /* see ASSERT_ENOMEM */
    errno = 0;
    p = f(opq(SIZE_MAX), opq(16));
    if (p || errno != EINVAL) fail_msg("%s(SIZE_MAX, 16) = %p errno=%d, want NULL/EINVAL", name, p, errno);
    errno = 0;
    p = f(opq((SIZE_MAX >> 1) + 2), opq(16));
    if (p || errno != EINVAL) fail_msg("%s(2^63+1, 16) = %p errno=%d, want NULL/EINVAL", name, p, errno);
    errno = 0;
    p = f(opq((SIZE_MAX >> 1) + 1), opq(16));
    if (p || errno != ENOMEM) fail_msg("%s(2^63, 16) = %p errno=%d, want NULL/ENOMEM", name, p, errno);
    errno = 0;
    p = f(opq(1 << 20), opq(SIZE_MAX - 4096));
    if (p || errno != ENOMEM) fail_msg("%s(1MiB, SIZE_MAX-4096) = %p errno=%d, want NULL/ENOMEM", name, p, errno);
}

static void test_aligned_alloc(void **state) { check_memalign_family("aligned_alloc", aligned_alloc); }
static void test_memalign(void **state) { check_memalign_family("memalign", memalign); }

/* many aligned blocks live at once: no overlap, contents intact */
static void test_aligned_many_live(void **state)
{
    enum { N = 600 };
    void *v[N];
    size_t n[N];
    tu_rng r;
    tu_seed(&r, 777);
    for (int i = 0; i < N; i++) {
        size_t al = (size_t)1 << tu_range(&r, 3, 16);
        n[i] = tu_range(&r, 1, 3000);
        if (i % 3 == 0) {
            assert_int_equal(posix_memalign(&v[i], al, n[i]), 0);
        } else if (i % 3 == 1) {
            v[i] = aligned_alloc(al, n[i]);
        } else {
            v[i] = memalign(al, n[i]);
        }
        check_aligned_block("mixed-aligned", v[i], al, n[i]);
        tu_fill(v[i], n[i], 300 + i);
    }
    for (int i = 0; i < N; i++) {
        if (!tu_check(v[i], n[i], 300 + i)) fail_msg("aligned block %d corrupted", i);
        free(v[i]);
    }
}

static void test_valloc(void **state)
{
    const size_t pg = PAGE;
    for (size_t n = 0; n <= 3 * pg + 1; n += (n < 64 ? 1 : 251)) {
        void *p = valloc(opq(n));
        if (!p) fail_msg("valloc(%zu) failed", n);
        if (!tu_aligned(p, pg)) fail_msg("valloc(%zu) = %p not page aligned", n, p);
        assert_true(malloc_usable_size(p) >= n);
        memset(p, 0x3c, n);
        free(p);
    }
    void *big = valloc(opq(20 << 20));
    check_aligned_block("valloc", big, pg, 20 << 20);
    free(big);
    ASSERT_ENOMEM(valloc(opq(SIZE_MAX)));
}

static void test_pvalloc(void **state)
{
    if (tu_valgrind()) skip(); /* valgrind aborts the program in pvalloc */
    const size_t pg = PAGE;
    for (size_t n = 1; n <= 3 * pg + 1; n += (n < 64 ? 1 : 251)) {
        void *p = pvalloc(opq(n));
        if (!p) fail_msg("pvalloc(%zu) failed", n);
        if (!tu_aligned(p, pg)) fail_msg("pvalloc(%zu) = %p not page aligned", n, p);
        size_t rounded = (n + pg - 1) / pg * pg;
        if (malloc_usable_size(p) < rounded)
            fail_msg("pvalloc(%zu): usable %zu < rounded size %zu", n, malloc_usable_size(p), rounded);
        memset(p, 0x3c, rounded); /* the whole rounded size belongs to the caller */
        free(p);
    }
    void *z = pvalloc(opq(0));
    assert_non_null(z);
    assert_true(tu_aligned(z, pg));
    free(z);
    ASSERT_ENOMEM(pvalloc(opq(SIZE_MAX)));
    ASSERT_ENOMEM(pvalloc(opq(SIZE_MAX - pg + 2)));
}

static void test_usable_size(void **state)
{
    assert_int_equal(malloc_usable_size(NULL), 0);
    tu_rng r;
    tu_seed(&r, 31337);
    for (int i = 0; i < 2000; i++) {
        size_t n = (i % 50 == 0) ? tu_range(&r, 1 << 20, 20 << 20) : tu_range(&r, 0, 70000);
        void *p = malloc(opq(n));
        assert_non_null(p);
        size_t u = malloc_usable_size(p);
        if (u < n) fail_msg("malloc_usable_size(malloc(%zu)) = %zu", n, u);
        /* the usable size is stable while the block lives */
        assert_int_equal(malloc_usable_size(p), u);
        free(p);
    }
}

/* A successful call must not modify errno. */
static void test_errno_preserved(void **state)
{
    static const size_t sizes[] = { 0, 1, 16, 100, 4096, 40000, 300000, 2 << 20, 20 << 20 };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        void *p, *q;
#define KEEP(stmt) do { errno = EILSEQ; stmt; \
        if (errno != EILSEQ) fail_msg("'%s' (n=%zu) changed errno to %d", #stmt, n, errno); } while (0)
        KEEP(p = malloc(opq(n)));
        assert_non_null(p);
        KEEP(q = realloc(p, opq(n * 2 + 1)));
        assert_non_null(q);
        KEEP(p = realloc(q, opq(n / 2 + 1)));
        assert_non_null(p);
        KEEP((void)malloc_usable_size(p));
        KEEP(free(p));
        KEEP(p = calloc(opq(n), 1));
        assert_non_null(p);
        KEEP(p = reallocarray(p, opq(n + 1), 2));
        assert_non_null(p);
        KEEP(free(p));
        KEEP(p = aligned_alloc(256, opq(n)));
        assert_non_null(p);
        KEEP(free(p));
        KEEP(p = memalign(8192, opq(n)));
        assert_non_null(p);
        KEEP(free(p));
        int rc;
        KEEP(rc = posix_memalign(&p, 4096, opq(n)));
        assert_int_equal(rc, 0);
        KEEP(free(p));
        KEEP(p = valloc(opq(n)));
        assert_non_null(p);
        KEEP(free(p));
        if (!tu_valgrind()) { /* valgrind aborts in pvalloc */
            KEEP(p = pvalloc(opq(n)));
            assert_non_null(p);
            KEEP(free(p));
        }
        p = malloc(opq(n));
        assert_non_null(p);
        KEEP(q = realloc(p, opq(0))); /* frees */
        assert_null(q);
        KEEP(free(NULL));
#ifndef XA_TEST_GLIBC
        KEEP(p = malloc(opq(n)));
        KEEP(free_sized(p, n));
        KEEP(p = aligned_alloc(64, opq(n)));
        KEEP(free_aligned_sized(p, 64, n));
#endif
#undef KEEP
    }
}

/* ------------------------------------------------------------------------ */

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
static void test_mallinfo(void **state)
{
    if (tu_valgrind()) skip(); /* memcheck's heap is not what mallinfo reports */
    enum { NS = 16384, NH = 4 };
    static void *small[NS];
    void *huge[NH];
    struct mallinfo2 b2 = mallinfo2();
    struct mallinfo b1 = mallinfo();
    for (int i = 0; i < NS; i++) { small[i] = malloc(4000); assert_non_null(small[i]); memset(small[i], 1, 4000); }
    for (int i = 0; i < NH; i++) { huge[i] = malloc(16 << 20); assert_non_null(huge[i]); memset(huge[i], 1, 4096); }
    const size_t allocated = (size_t)NS * 4000 + (size_t)NH * (16 << 20); /* ~126 MiB */
    struct mallinfo2 a2 = mallinfo2();
    struct mallinfo a1 = mallinfo();
    size_t in_b = b2.uordblks + b2.hblkhd, in_a = a2.uordblks + a2.hblkhd;
    print_message("mallinfo2 in-use (uordblks+hblkhd): before %zu, with %zu MiB live %zu\n",
                  in_b, allocated >> 20, in_a);
    if (in_a < in_b || in_a - in_b < allocated / 2)
        fail_msg("mallinfo2 in-use grew by %zd bytes after allocating %zu", (ssize_t)(in_a - in_b), allocated);
    long d1 = ((long)a1.uordblks + a1.hblkhd) - ((long)b1.uordblks + b1.hblkhd);
    if (d1 < (long)(allocated / 2)) fail_msg("mallinfo in-use grew by %ld after allocating %zu", d1, allocated);
    for (int i = 0; i < NS; i++) free(small[i]);
    for (int i = 0; i < NH; i++) free(huge[i]);
    malloc_trim(0);
    struct mallinfo2 c2 = mallinfo2();
    size_t in_c = c2.uordblks + c2.hblkhd;
    print_message("mallinfo2 in-use after free + malloc_trim: %zu\n", in_c);
    if (in_c > in_a || in_a - in_c < allocated / 2)
        fail_msg("mallinfo2 in-use only fell from %zu to %zu after freeing %zu bytes", in_a, in_c, allocated);
}
#pragma GCC diagnostic pop

static void test_mallopt(void **state)
{
    /* glibc returns 1 for accepted parameters; an allocator that ignores a
     * tunable may return 0, but never anything else, and never breaks. */
    struct { int p, v; } opts[] = {
        { M_MMAP_THRESHOLD, 256 * 1024 }, { M_TRIM_THRESHOLD, 1 << 20 }, { M_TOP_PAD, 64 * 1024 },
        { M_ARENA_MAX, 2 }, { M_MMAP_MAX, 65536 }, { M_ARENA_TEST, 4 }, { M_PERTURB, 0 },
        { M_MXFAST, 64 }, { M_CHECK_ACTION, 3 },
    };
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
        int rc = mallopt(opts[i].p, opts[i].v);
        if (rc != 0 && rc != 1) fail_msg("mallopt(%d, %d) = %d", opts[i].p, opts[i].v, rc);
    }
    /* allocation keeps working around the (possibly changed) thresholds */
    static const size_t sizes[] = { 10, 64, 65, 100000, 256 * 1024 - 1, 256 * 1024, 256 * 1024 + 1, 3 << 20 };
    for (int round = 0; round < 20; round++)
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            void *p = malloc(sizes[i]);
            assert_non_null(p);
            tu_fill(p, sizes[i], i);
            void *q = calloc(1, sizes[i]);
            assert_non_null(q);
            assert_true(tu_is_zero(q, sizes[i]));
            assert_true(tu_check(p, sizes[i], i));
            free(q);
            free(p);
        }
    /* restore glibc's defaults (dynamic mmap threshold can't be restored;
     * harmless for the remaining tests) */
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    mallopt(M_TRIM_THRESHOLD, 128 * 1024);
    mallopt(M_TOP_PAD, 0);
}

static int child_malloc_stats(void *arg)
{
    void *p = malloc(1000), *q = malloc(5 << 20);
    malloc_stats();
    free(p);
    free(q);
    malloc_stats();
    return 0;
}

static void test_malloc_stats(void **state)
{
    if (tu_valgrind()) skip(); /* memcheck's malloc_stats prints nothing */
    static tu_child c;
    tu_run_child(&c, child_malloc_stats, NULL, 1, 60);
    if (!tu_child_ok("malloc_stats", &c)) fail_msg("malloc_stats child failed");
    if (c.errlen == 0) fail_msg("malloc_stats printed nothing on stderr");
}

/* Allocate and touch 64 MiB of small blocks, free them all: after
 * malloc_trim(0) the process RSS must be well below the peak. */
static void test_malloc_trim(void **state)
{
    enum { N = 65536, SZ = 1024 };
    static void *v[N];
    for (int i = 0; i < N; i++) { v[i] = malloc(SZ); assert_non_null(v[i]); memset(v[i], 0x77, SZ); }
    size_t peak = tu_rss();
    for (int i = 0; i < N; i++) free(v[i]);
    int rc = malloc_trim(0);
    assert_true(rc == 0 || rc == 1);
    size_t after = tu_rss();
    print_message("RSS with 64 MiB live %zu MiB, after free+malloc_trim %zu MiB (rc=%d)\n",
                  peak >> 20, after >> 20, rc);
    if (!tu_valgrind() && after + 32 * TU_MiB > peak) /* memcheck keeps freed memory */
        fail_msg("malloc_trim(0) left RSS at %zu MiB (peak %zu MiB)", after >> 20, peak >> 20);
    rc = malloc_trim(opq(1 << 20)); /* with a pad */
    assert_true(rc == 0 || rc == 1);
    /* still usable */
    void *p = calloc(1000, 64);
    assert_non_null(p);
    assert_true(tu_is_zero(p, 64000));
    free(p);
}

/* xalloc's in-place rules: a block stays where it is when the new size fits
 * and uses over half of it; a large block shrinks to the pages it needs (so
 * its usable size drops), and keeps them when the page count is the same. */
static void test_realloc_in_place(void **state)
{
    (void)state;
#ifdef XA_TEST_GLIBC
    skip();
#else
    if (tu_valgrind()) skip();   /* under memcheck every realloc moves */
    char *p = malloc(100);
    assert_non_null(p);
    size_t u = malloc_usable_size(p);
    memset(p, 'a', u);
    assert_ptr_equal(realloc(p, u), p);
    assert_ptr_equal(realloc(p, u / 2 + 1), p);
    char *q = realloc(p, u / 2);                 /* would waste half: moves */
    assert_non_null(q);
    assert_ptr_not_equal(q, p);
    for (size_t i = 0; i < u / 2; i++) assert_int_equal(q[i], 'a');
    free(q);

    /* big blocks (large from 32 KiB, huge from 256 KiB) are whole pages;
     * sizes fit any page size */
    size_t pg = (size_t)sysconf(_SC_PAGESIZE), big = 1 << 20, small = (big - big / 4 + pg - 1) / pg * pg;
    p = malloc(big);
    assert_non_null(p);
    assert_int_equal(malloc_usable_size(p), big);
    memset(p, 'b', big);
    assert_ptr_equal(realloc(p, small), p);       /* gives back a quarter */
    assert_int_equal(malloc_usable_size(p), small);
    assert_ptr_equal(realloc(p, small - 100), p); /* same pages: kept */
    assert_int_equal(malloc_usable_size(p), small);
    assert_ptr_equal(realloc(p, small - pg + 1), p);
    assert_int_equal(malloc_usable_size(p), small);
    for (size_t i = 0; i < small - pg + 1; i++) if (p[i] != 'b') fail_msg("byte %zu lost", i);
    free(p);

    /* a large block (32-256 KiB) keeps its pages while the new size is
     * within a quarter of them, and gives back the rest below that */
    size_t lg = 192 << 10;
    p = malloc(lg);
    assert_non_null(p);
    size_t lu = malloc_usable_size(p);
    assert_true(lu >= lg && lu < lg + lg / 8 + pg);
    memset(p, 'd', lg);
    assert_ptr_equal(realloc(p, lu - lu / 6), p);
    assert_int_equal(malloc_usable_size(p), lu);
    size_t lhalf = lu / 2 + 4096;                 /* shrinks on 4, 16 and 64 KiB pages */
    assert_ptr_equal(realloc(p, lhalf), p);
    assert_true(malloc_usable_size(p) >= lhalf && malloc_usable_size(p) < lu - lu / 4);
    for (size_t i = 0; i < lhalf; i++) if (p[i] != 'd') fail_msg("byte %zu lost", i);
    free(p);

    /* a big block (here a huge one, from 256 KiB) that grows gets a
     * quarter of headroom: the next growth steps stay in place, and the
     * sized free of the last size is accepted; a shrink far below gives
     * the pages back */
    size_t n = 256 << 10;
    p = malloc(n);
    assert_non_null(p);
    memset(p, 'c', n);
    n += 1024;
    char *before = p;
    p = realloc(p, n);
    assert_non_null(p);
    size_t room = malloc_usable_size(p);
    /* In place it takes the headroom if the free pages after it hold it,
     * else just what it needs (which pages follow depends on what the
     * purger did meanwhile); a block that moved always gets headroom. */
    int exact = p == before && room < n + n / 4;
    if (exact ? room < n || room > n + n / 8 + pg : room < n + n / 4 || room > n + n / 2)
      fail_msg("grown to %zu bytes %s: usable %zu", n, p == before ? "in place" : "moved", room);
    for (size_t i = 0; i < n - 1024; i++) if (p[i] != 'c') fail_msg("byte %zu lost", i);
    for (size_t m = n + 1024; m <= room; m += 1024) {
        assert_ptr_equal(realloc(p, m), p);
        assert_int_equal(malloc_usable_size(p), room);
        n = m;
    }
    size_t half = room / 2 + pg;
    assert_ptr_equal(realloc(p, half), p);
    if (malloc_usable_size(p) > half + half / 8 + pg) fail_msg("shrunk to %zu: usable %zu", half, malloc_usable_size(p));
    free_sized(p, half);
#endif
}

/* ------------------------------------------------------------------------ */

#ifndef XA_TEST_GLIBC
static int from_libxalloc(const void *fnaddr, const char **where)
{
    Dl_info di;
    memset(&di, 0, sizeof di);
    if (!dladdr(fnaddr, &di) || !di.dli_fname) { *where = "(dladdr failed)"; return 0; }
    *where = di.dli_fname;
    return strstr(di.dli_fname, "libxalloc") != NULL;
}
#endif

static void test_libc_aliases(void **state)
{
#ifndef XA_TEST_GLIBC
    /* the aliases must be xalloc's own, or mixing them with malloc/free
     * would hand glibc blocks to xalloc */
    struct { const char *name; const void *addr; } fns[] = {
        { "malloc", (const void *)malloc }, { "__libc_malloc", (const void *)__libc_malloc },
        { "__libc_free", (const void *)__libc_free }, { "__libc_calloc", (const void *)__libc_calloc },
        { "__libc_realloc", (const void *)__libc_realloc }, { "__libc_memalign", (const void *)__libc_memalign },
        { "__libc_valloc", (const void *)__libc_valloc }, { "__libc_pvalloc", (const void *)__libc_pvalloc },
    };
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        const char *where;
        if (!from_libxalloc(fns[i].addr, &where))
            fail_msg("%s resolves to %s, not libxalloc", fns[i].name, where);
    }
#endif
    const size_t pg = PAGE;
    char *p = __libc_malloc(opq(100));
    assert_non_null(p);
    assert_true(tu_aligned(p, 16));
    tu_fill(p, 100, 1);
    p = __libc_realloc(p, opq(200000));
    assert_non_null(p);
    assert_true(tu_check(p, 100, 1));
    free(p); /* __libc_* blocks are ordinary blocks */

    p = malloc(300);
    assert_non_null(p);
    tu_fill(p, 300, 2);
    p = __libc_realloc(p, opq(5));
    assert_non_null(p);
    assert_true(tu_check(p, 5, 2));
    __libc_free(p);
    __libc_free(NULL);

    unsigned char *c = __libc_calloc(opq(1000), opq(3));
    assert_non_null(c);
    assert_true(tu_is_zero(c, 3000));
    c = realloc(c, 6000);
    assert_non_null(c);
    assert_true(tu_is_zero(c, 3000));
    __libc_free(c);
    ASSERT_ENOMEM(__libc_calloc(opq(SIZE_MAX), opq(16)));
    ASSERT_ENOMEM(__libc_malloc(opq(SIZE_MAX)));

    void *m = __libc_memalign(opq(4096), opq(100));
    check_aligned_block("__libc_memalign", m, 4096, 100);
    free(m);
    m = __libc_memalign(opq(1 << 21), opq(5 << 20));
    check_aligned_block("__libc_memalign", m, 1 << 21, 5 << 20);
    __libc_free(m);
    void *v = __libc_valloc(opq(10));
    check_aligned_block("__libc_valloc", v, pg, 10);
    __libc_free(v);
    if (!tu_valgrind()) { /* valgrind aborts in pvalloc */
        void *pv = __libc_pvalloc(opq(10));
        check_aligned_block("__libc_pvalloc", pv, pg, pg);
        free(pv);
    }
    assert_null(__libc_realloc(__libc_malloc(10), 0)); /* realloc(p,0) frees */
}

/* 16-byte alignment and distinctness of many blocks from every allocator
 * entry point, interleaved. */
static void test_min_alignment_all_entry_points(void **state)
{
    tu_rng r;
    tu_seed(&r, 4242);
    enum { N = 3000 };
    static void *v[N];
    for (int i = 0; i < N; i++) {
        size_t n = tu_range(&r, 16, i % 100 == 0 ? 2 << 20 : 3000);
        switch (i % 4) {
        case 0: v[i] = malloc(n); break;
        case 1: v[i] = calloc(1, n); break;
        case 2: v[i] = realloc(NULL, n); break;
        default: v[i] = realloc(malloc(8), n); break;
        }
        assert_non_null(v[i]);
        if (!tu_aligned(v[i], 16)) fail_msg("entry %d size %zu gave %p", i % 4, n, v[i]);
    }
    for (int i = N - 1; i >= 0; i--) free(v[i]);
}

/* ------------------------------------------------------------------------ */
/* xalloc-only API                                                          */

static void test_free_sized(void **state)
{
#ifdef XA_TEST_GLIBC
    skip(); /* glibc 2.36 has no free_sized/free_aligned_sized (C23) */
#else
    tu_rng r;
    tu_seed(&r, 99);
    for (int i = 0; i < 5000; i++) {
        size_t n = (i % 200 == 0) ? tu_range(&r, 1 << 20, 20 << 20) : tu_range(&r, 0, 40000);
        void *p;
        switch (i % 3) {
        case 0: p = malloc(n); break;
        case 1: p = calloc(n, 1); break;
        default: p = realloc(malloc(tu_range(&r, 1, 100)), n); break; /* size = last realloc size */
        }
        assert_non_null(p);
        if (n) memset(p, 1, n);
        free_sized(p, n);
    }
    free_sized(NULL, 0);
    free_sized(NULL, 100);
    for (size_t al = 16; al <= (4 << 20); al <<= 1) {
        size_t sizes[] = { 1, 100, al, 3 * al + 5 };
        for (int j = 0; j < 4; j++) {
            void *p = aligned_alloc(al, sizes[j]);
            check_aligned_block("aligned_alloc", p, al, sizes[j]);
            free_aligned_sized(p, al, sizes[j]);
        }
    }
    free_aligned_sized(NULL, 64, 100);
    /* blocks freed with the sized frees are reused normally */
    void *a = malloc(48);
    free_sized(a, 48);
    void *b = calloc(1, 48);
    assert_non_null(b);
    assert_true(tu_is_zero(b, 48));
    free_sized(b, 48);
#endif
}

static void test_xalloc_version(void **state)
{
#ifdef XA_TEST_GLIBC
    skip(); /* xalloc's own API */
#else
    const char *v = xalloc_version();
    assert_non_null(v);
    char want[64];
    snprintf(want, sizeof want, "%d.%d.%d", XALLOC_VERSION_MAJOR, XALLOC_VERSION_MINOR, XALLOC_VERSION_PATCH);
    assert_string_equal(v, want);
    assert_ptr_equal(xalloc_version(), v); /* static storage */
    const char *where;
    if (!from_libxalloc((const void *)malloc, &where)) fail_msg("malloc resolves to %s", where);
    if (!from_libxalloc((const void *)free, &where)) fail_msg("free resolves to %s", where);
    if (!from_libxalloc((const void *)malloc_usable_size, &where)) fail_msg("malloc_usable_size resolves to %s", where);
#endif
}

static void test_xalloc_purge(void **state)
{
#ifdef XA_TEST_GLIBC
    skip(); /* xalloc's own API */
#else
    enum { N = 65536, SZ = 1024 };
    static void *v[N];
    void *big[8];
    for (int i = 0; i < N; i++) { v[i] = malloc(SZ); assert_non_null(v[i]); memset(v[i], 0x66, SZ); }
    for (int i = 0; i < 8; i++) { big[i] = malloc(3 << 20); assert_non_null(big[i]); memset(big[i], 0x66, 3 << 20); }
    size_t peak = tu_rss();
    for (int i = 0; i < N; i++) free(v[i]);
    for (int i = 0; i < 8; i++) free(big[i]);
    size_t before = tu_rss();
    int rc = xalloc_purge();
    size_t after = tu_rss();
    print_message("RSS peak %zu MiB, after free %zu MiB, after xalloc_purge %zu MiB (rc=%d)\n",
                  peak >> 20, before >> 20, after >> 20, rc);
    assert_true(rc == 0 || rc == 1);
    if (after + 48 * TU_MiB > peak)
        fail_msg("xalloc_purge left RSS at %zu MiB (peak %zu MiB with 88 MiB live)", after >> 20, peak >> 20);
    if (before > after + 16 * TU_MiB && rc != 1)
        fail_msg("xalloc_purge released %zu MiB but returned %d", (before - after) >> 20, rc);
    /* nothing was freed since: a second purge has nothing to release */
    rc = xalloc_purge();
    assert_int_equal(rc, 0);
    /* allocation after a purge works and is zeroed where it must be */
    for (int i = 0; i < 1000; i++) {
        unsigned char *p = calloc(1, SZ);
        assert_non_null(p);
        if (!tu_is_zero(p, SZ)) fail_msg("calloc after purge not zero");
        v[i] = p;
    }
    for (int i = 0; i < 1000; i++) free(v[i]);
    void *h = calloc(1, 3 << 20);
    assert_non_null(h);
    assert_true(tu_is_zero(h, 3 << 20));
    free(h);
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_malloc_zero),
        cmocka_unit_test(test_every_small_size),
        cmocka_unit_test(test_geometric_sizes),
        cmocka_unit_test(test_calloc_zero_after_reuse),
        cmocka_unit_test(test_calloc_overflow),
        cmocka_unit_test(test_too_large),
        cmocka_unit_test(test_realloc_null_and_zero),
        cmocka_unit_test(test_realloc_ladders),
        cmocka_unit_test(test_realloc_random_chains),
        cmocka_unit_test(test_realloc_failure_keeps_block),
        cmocka_unit_test(test_realloc_in_place),
        cmocka_unit_test(test_reallocarray),
        cmocka_unit_test(test_posix_memalign),
        cmocka_unit_test(test_aligned_alloc),
        cmocka_unit_test(test_memalign),
        cmocka_unit_test(test_aligned_many_live),
        cmocka_unit_test(test_valloc),
        cmocka_unit_test(test_pvalloc),
        cmocka_unit_test(test_usable_size),
        cmocka_unit_test(test_errno_preserved),
        cmocka_unit_test(test_min_alignment_all_entry_points),
        cmocka_unit_test(test_libc_aliases),
        cmocka_unit_test(test_malloc_trim),
        cmocka_unit_test(test_mallinfo),
        cmocka_unit_test(test_malloc_stats),
        cmocka_unit_test(test_free_sized),
        cmocka_unit_test(test_xalloc_version),
        cmocka_unit_test(test_xalloc_purge),
        cmocka_unit_test(test_mallopt), /* last: it changes tunables */
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
