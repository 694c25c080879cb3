/* ops.h: random sequences of malloc-API operations, checked against a model.
 *
 * Shared by test/api_differential.c (op stream from a seeded PRNG) and the
 * libFuzzer harness test/fuzz/fuzz_ops.c (op stream = the fuzzer's bytes).
 * Both read the stream through ops_u8(), and the PRNG stream is the bytes of
 * successive tu_next() values, least significant first, so a file holding
 * those bytes replays a seed's sequence in the fuzzer (the harness writes
 * such files as its seed corpus).
 *
 * The model is a table of OPS_SLOTS slots, each empty or holding one live
 * block with its requested size, usable size, alignment, pattern tag and the
 * function that allocated it (which decides the legal sized free).  Each op
 * names a slot; allocating into an occupied slot frees its block first, and
 * realloc/free of an empty slot exercises the NULL-pointer cases.
 *
 * Checked on every op: the result is non-NULL when it must be, aligned
 * (16 for the malloc family, the requested alignment for aligned ones, a page
 * for valloc/pvalloc), malloc_usable_size >= the request and stable while the
 * block lives, no overlap with any other live block of the table (usable
 * areas, so duplicate pointers count too), calloc memory zeroed, contents
 * (the whole usable area carries the block's pattern) intact before realloc
 * and free, the prefix kept by realloc, error cases: EINVAL with *out
 * untouched for bad posix_memalign alignments, NULL/ENOMEM and the old block
 * untouched for overflowing or oversized requests.  Blocks above
 * OPS_FULL_MAX carry the pattern sparsely (see tu_fill_sparse).
 *
 * On the first mismatch ops_fail() prints the seed (or input offset), the op
 * index and the op, then aborts, so that a fuzzer records a crash;
 * ops_report_crashes() makes a fatal signal print the same.
 *
 * Built against glibc (-DXA_TEST_GLIBC), which has no free_sized /
 * free_aligned_sized, those ops fall back to free().  Under valgrind (the
 * .glibc build in `make check-memcheck`) the cases its allocator does not
 * model are skipped: pvalloc (aborts), errno, requests above PTRDIFF_MAX. */
#ifndef XA_OPS_H
#define XA_OPS_H

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#ifndef XA_TEST_GLIBC
#include "xalloc.h"
#define OPS_HAVE_SIZED_FREE 1
#else
#define OPS_HAVE_SIZED_FREE 0
#endif

#define OPS_SLOTS     256              /* one op byte names a slot */
#define OPS_XSLOTS    64               /* cross-thread exchange array */
#define OPS_FULL_MAX  ((size_t)65536)  /* larger blocks: sparse pattern */
#define OPS_MIN_ALIGN 16               /* malloc on x86_64/aarch64 */
#define OPS_MAX_REQ   ((size_t)16 << 20)
#define OPS_NONE      ((size_t)-1)

/* ---- the op stream ------------------------------------------------------ */

typedef struct {
    const uint8_t *buf;   /* fuzzer bytes, or NULL for the PRNG */
    size_t len, pos;
    tu_rng rng;
    uint64_t bits;        /* PRNG word being consumed, low byte first */
    unsigned nbits;
} ops_src;

static inline unsigned ops_u8(ops_src *s)
{
    if (s->buf) return s->pos < s->len ? s->buf[s->pos++] : 0;
    if (!s->nbits) { s->bits = tu_next(&s->rng); s->nbits = 8; }
    unsigned b = (unsigned)(s->bits & 0xff);
    s->bits >>= 8;
    s->nbits--;
    return b;
}

/* little-endian multi-byte values; one statement per byte keeps the order
 * of reads defined */
static inline size_t ops_uN(ops_src *s, unsigned nbytes)
{
    size_t v = 0;
    for (unsigned i = 0; i < nbytes; i++) v |= (size_t)ops_u8(s) << (8 * i);
    return v;
}

static inline int ops_src_left(const ops_src *s) { return !s->buf || s->pos < s->len; }

/* ---- the model ---------------------------------------------------------- */

enum ops_how {
    HOW_NONE, HOW_MALLOC, HOW_CALLOC, HOW_REALLOC, HOW_REALLOCARRAY,
    HOW_POSIX_MEMALIGN, HOW_ALIGNED_ALLOC, HOW_MEMALIGN, HOW_VALLOC, HOW_PVALLOC,
};
static const char *const ops_how_name[] = {
    "none", "malloc", "calloc", "realloc", "reallocarray",
    "posix_memalign", "aligned_alloc", "memalign", "valloc", "pvalloc",
};

typedef struct {
    void *p;
    size_t n;        /* requested size (pvalloc: rounded up to a page) */
    size_t usable;   /* malloc_usable_size at allocation; all of it is filled */
    size_t arg_al;   /* alignment argument (free_aligned_sized needs it) */
    uint64_t tag;    /* pattern */
    uint8_t how;     /* enum ops_how */
    uint8_t tid;     /* thread that allocated or last received it */
} ops_blk;

/* Live bytes (requested) across all models sharing it; an allocation that
 * would exceed max is made small instead.  Checked before and added after
 * the call, so threads may overshoot by a few blocks. */
typedef struct {
    atomic_size_t live, peak;
    size_t max;
} ops_budget;

/* Blocks handed between threads, with their model record. */
typedef struct {
    pthread_mutex_t lock;
    ops_blk slot[OPS_XSLOTS];
} ops_exchange;

typedef struct {
    unsigned long ops, allocs, reallocs, frees, errors, handoffs, verified;
    uint64_t bytes;  /* requested bytes of every allocation and realloc */
} ops_stats;

enum ops_op {
    OP_MALLOC, OP_CALLOC, OP_REALLOC, OP_REALLOCARRAY, OP_POSIX_MEMALIGN,
    OP_ALIGNED_ALLOC, OP_MEMALIGN, OP_VALLOC, OP_PVALLOC, OP_FREE, OP_FREE_SIZED,
    OP_FREE_ALIGNED_SIZED, OP_USABLE, OP_BAD_ALIGN, OP_OVERFLOW, OP_VERIFY,
    OP_EXCHANGE, OP_COUNT
};
static const char *const ops_op_name[OP_COUNT] = {
    "malloc", "calloc", "realloc", "reallocarray", "posix_memalign",
    "aligned_alloc", "memalign", "valloc", "pvalloc", "free", "free_sized",
    "free_aligned_sized", "malloc_usable_size", "posix_memalign(bad alignment)",
    "overflow", "verify", "exchange",
};
/* Share of each op among the 256 values of the op byte: allocations
 * outweigh frees so that the table stays about two-thirds full. */
static const uint8_t ops_weight[OP_COUNT] = {
    58, 14, 36, 8, 8,
    8, 6, 3, 3, 40, 20,
    10, 8, 3, 3, 8,
    20,
};

typedef struct {
    ops_src src;
    uint64_t seed;          /* PRNG seed (fuzz input: unused) */
    int tid;
    unsigned long op;       /* index of the op in progress */
    double deadline;        /* 0: none */
    int truncated;
    size_t page;
    int vg;                 /* running under valgrind */
    int oom_ok;             /* faults injected: NULL/ENOMEM is a valid answer */
    unsigned long ooms;     /* requests that got it */
    int large_heavy;        /* sizes mostly large and huge (ops_size_large) */
    ops_blk t[OPS_SLOTS];
    uint64_t ctr;
    ops_budget own_budget, *budget;
    ops_exchange *xch;      /* NULL: single-threaded, exchange ops verify */
    ops_stats st;
    /* the op in progress, for failure reports */
    unsigned cur_op, cur_slot;
    size_t cur_n, cur_al;
} ops_model;

static uint8_t ops_table[256];

/* The model whose op is running on this thread, for the crash report. */
static __thread ops_model *ops_running;

/* "seed S thread T op N (...)" or, for fuzz input, where in the input. */
static inline int ops_where(const ops_model *m, char *buf, size_t len)
{
    if (m->src.buf)
        return snprintf(buf, len, "op %lu (%s, slot %u, size %zu, align %zu), input byte %zu of %zu", m->op,
                        ops_op_name[m->cur_op], m->cur_slot, m->cur_n, m->cur_al, m->src.pos, m->src.len);
    return snprintf(buf, len, "seed %llu thread %d op %lu (%s, slot %u, size %zu, align %zu)",
                    (unsigned long long)m->seed, m->tid, m->op, ops_op_name[m->cur_op], m->cur_slot,
                    m->cur_n, m->cur_al);
}

static inline void ops_how_to_replay(const ops_model *m)
{
    if (m->xch)
        fprintf(stderr, "ops: (one of several threads exchanging blocks: the interleaving varies between runs)\n");
    else if (!m->src.buf)
        fprintf(stderr, "ops: replay: XALLOC_DIFF_SEED=%llu XALLOC_DIFF_OPS=%lu %s\n",
                (unsigned long long)m->seed, m->op + 1, program_invocation_name);
}

static inline void ops_fail(ops_model *m, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));
static inline void ops_fail(ops_model *m, const char *fmt, ...)
{
    char where[256], msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ops_where(m, where, sizeof where);
    fprintf(stderr, "ops: FAILED at %s: %s\n", where, msg);
    ops_how_to_replay(m);
    fflush(stderr);
    abort();
}

/* A crash (say, a block unmapped under its owner) gets the same report;
 * then the signal's default action.  Not for the fuzzer, whose own handler
 * saves the input. */
static inline void ops_crash_handler(int sig)
{
    char where[256] = "outside the op loop";
    if (ops_running) ops_where(ops_running, where, sizeof where);
    fprintf(stderr, "ops: FAILED: signal %d at %s\n", sig, where);
    if (ops_running) ops_how_to_replay(ops_running);
    fflush(stderr);
    signal(sig, SIG_DFL);
    raise(sig);
}

static inline void ops_report_crashes(void)
{
    static const int sigs[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE };
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) signal(sigs[i], ops_crash_handler);
}

static inline void ops_init_table(void)
{
    unsigned k = 0;
    for (unsigned op = 0; op < OP_COUNT; op++)
        for (unsigned i = 0; i < ops_weight[op]; i++)
            if (k < 256) ops_table[k++] = (uint8_t)op;
    if (k != 256) { fprintf(stderr, "ops: weights sum to %u, not 256\n", k); abort(); }
}

static inline void ops_init_common(ops_model *m, int tid)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, ops_init_table);
    memset(m, 0, sizeof *m);
    m->tid = tid;
    m->page = (size_t)sysconf(_SC_PAGESIZE);
    m->vg = tu_valgrind();
    m->own_budget.max = (size_t)64 << 20;
    m->budget = &m->own_budget;
}

static inline void ops_init_seed(ops_model *m, uint64_t seed, int tid)
{
    ops_init_common(m, tid);
    m->seed = seed;
    tu_seed(&m->src.rng, seed);
}

static inline void ops_init_bytes(ops_model *m, const uint8_t *buf, size_t len)
{
    ops_init_common(m, 0);
    m->src.buf = buf;
    m->src.len = len;
}

/* Keep the compiler from folding or reasoning about a value: no warnings on
 * impossible constant sizes, nor on looking at a block after a realloc that
 * failed (and so left it alone). */
static inline size_t ops_opq(size_t x) { __asm__ volatile("" : "+r"(x)); return x; }
static inline void *ops_opqp(void *x) { __asm__ volatile("" : "+r"(x)); return x; }

static inline size_t ops_pow2_ceil(size_t a) { return a <= 1 ? 1 : tu_pow2_ceil(a); }

/* ---- patterns ----------------------------------------------------------- */

/* testutil.h's tu_fill_range/tu_check_range, byte for byte the same pattern,
 * but with __builtin_memcpy: the api_* tests are built with -fno-builtin,
 * which turns each 8-byte memcpy into a library call and made the fills
 * dominate the run time. */
static inline void ops_fill_range(void *p, size_t from, size_t to, uint64_t tag)
{
    uint8_t *b = (uint8_t *)p;
    size_t i = from;
    for (; i < to && (i & 7); i++) b[i] = tu_pat_byte(tag, i);
    for (; i + 8 <= to; i += 8) {
        uint64_t w = tu_pat_word(tag, i >> 3);
        __builtin_memcpy(b + i, &w, 8);
    }
    for (; i < to; i++) b[i] = tu_pat_byte(tag, i);
}

static inline size_t ops_check_range(const void *p, size_t from, size_t to, uint64_t tag)
{
    const uint8_t *b = (const uint8_t *)p;
    size_t i = from;
    for (; i < to && (i & 7); i++)
        if (b[i] != tu_pat_byte(tag, i)) return i;
    for (; i + 8 <= to; i += 8) {
        uint64_t w;
        __builtin_memcpy(&w, b + i, 8);
        if (w != tu_pat_word(tag, i >> 3)) break;
    }
    for (; i < to; i++)
        if (b[i] != tu_pat_byte(tag, i)) return i;
    return OPS_NONE;
}

/* Blocks up to OPS_FULL_MAX in full; larger ones like tu_fill_sparse: the
 * first and last TU_EDGE bytes and one word per page between. */
static inline void ops_fill(void *p, size_t len, uint64_t tag)
{
    if (len <= OPS_FULL_MAX) { ops_fill_range(p, 0, len, tag); return; }
    ops_fill_range(p, 0, TU_EDGE, tag);
    for (size_t off = TU_EDGE; off + 8 <= len - TU_EDGE; off += 4096) ops_fill_range(p, off, off + 8, tag);
    ops_fill_range(p, len - TU_EDGE, len, tag);
}

/* First wrong byte of what ops_fill(p, len, tag) wrote below `upto`, or
 * OPS_NONE. */
static inline size_t ops_check_prefix(const void *p, size_t len, size_t upto, uint64_t tag)
{
    if (upto > len) upto = len;
    if (len <= OPS_FULL_MAX) return ops_check_range(p, 0, upto, tag);
    size_t r = ops_check_range(p, 0, upto < TU_EDGE ? upto : TU_EDGE, tag);
    if (r != OPS_NONE) return r;
    for (size_t off = TU_EDGE; off + 8 <= len - TU_EDGE && off + 8 <= upto; off += 4096)
        if ((r = ops_check_range(p, off, off + 8, tag)) != OPS_NONE) return r;
    if (upto > len - TU_EDGE) return ops_check_range(p, len - TU_EDGE, upto, tag);
    return OPS_NONE;
}

static inline int ops_is_zero(const void *p, size_t n)
{
    const uint8_t *b = (const uint8_t *)p;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        __builtin_memcpy(&w, b + i, 8);
        if (w) return 0;
    }
    for (; i < n; i++)
        if (b[i]) return 0;
    return 1;
}

/* calloc: the requested bytes read as zero (sparsely for big blocks) */
static inline int ops_zeroed(const void *p, size_t n)
{
    if (n <= OPS_FULL_MAX) return ops_is_zero(p, n);
    const char *b = (const char *)p;
    if (!ops_is_zero(b, TU_EDGE) || !ops_is_zero(b + n - TU_EDGE, TU_EDGE)) return 0;
    for (size_t off = TU_EDGE; off + 8 <= n - TU_EDGE; off += 4096)
        if (!ops_is_zero(b + off, 8)) return 0;
    return 1;
}

/* ---- checks ------------------------------------------------------------- */

static inline void ops_verify(ops_model *m, const ops_blk *b, const char *when)
{
    size_t bad = ops_check_prefix(b->p, b->usable, b->usable, b->tag);
    if (bad != OPS_NONE)
        ops_fail(m, "block %p (%zu bytes, usable %zu, from %s, thread %d) corrupted at offset %zu "
                 "(byte %#x, expected %#x), found %s",
                 b->p, b->n, b->usable, ops_how_name[b->how], b->tid, bad, ((const uint8_t *)b->p)[bad],
                 tu_pat_byte(b->tag, bad), when);
    size_t u = malloc_usable_size(b->p);
    if (u != b->usable)
        ops_fail(m, "malloc_usable_size(%p) = %zu %s, but %zu when allocated (%zu bytes, %s)",
                 b->p, u, when, b->usable, b->n, ops_how_name[b->how]);
    m->st.verified++;
}

/* A fresh result p for slot `slot`: alignment, usable size, no overlap with
 * any other live block of the table.  Returns the usable size. */
static inline size_t ops_check_new(ops_model *m, unsigned slot, const void *p, size_t n, size_t align, const char *fn)
{
    if (!tu_aligned(p, align)) ops_fail(m, "%s(%zu) = %p is not %zu-aligned", fn, n, p, align);
    size_t u = malloc_usable_size((void *)p);
    if (u < n) ops_fail(m, "%s(%zu) = %p: malloc_usable_size %zu < request", fn, n, p, u);
    uintptr_t lo = (uintptr_t)p, hi = lo + (u ? u : 1);
    for (unsigned i = 0; i < OPS_SLOTS; i++) {
        const ops_blk *o = &m->t[i];
        if (i == slot || !o->p) continue;
        uintptr_t olo = (uintptr_t)o->p, ohi = olo + (o->usable ? o->usable : 1);
        if (lo < ohi && olo < hi)
            ops_fail(m, "%s(%zu) = %p (usable %zu) overlaps live block %p (usable %zu, %zu bytes from %s) in slot %u",
                     fn, n, p, u, o->p, o->usable, o->n, ops_how_name[o->how], i);
    }
    return u;
}

/* ---- budget ------------------------------------------------------------- */

static inline int ops_fits(ops_model *m, size_t n)
{
    return atomic_load_explicit(&m->budget->live, memory_order_relaxed) + n <= m->budget->max;
}

static inline void ops_charge(ops_model *m, size_t n)
{
    size_t live = atomic_fetch_add_explicit(&m->budget->live, n, memory_order_relaxed) + n;
    size_t peak = atomic_load_explicit(&m->budget->peak, memory_order_relaxed);
    while (live > peak && !atomic_compare_exchange_weak(&m->budget->peak, &peak, live)) {}
}

static inline void ops_uncharge(ops_model *m, size_t n)
{
    atomic_fetch_sub_explicit(&m->budget->live, n, memory_order_relaxed);
}

/* ---- decoding ----------------------------------------------------------- */

/* The large-heavy distribution (tensors, KV caches, weights): half the
 * sizes large (32 KiB .. 2 MiB), one in eight huge (2 .. 16 MiB), a
 * quarter around the boundaries of large size classes and of the huge
 * threshold, the rest small. */
static inline size_t ops_size_large(ops_src *s)
{
    unsigned k = ops_u8(s);
    if (k < 64) return ops_uN(s, 2) % 32769;
    if (k < 192) return 32769 + ops_uN(s, 3) % ((2 << 20) - 32768);
    if (k < 224) return ((size_t)2 << 20) + ops_uN(s, 3) % ((size_t)14 << 20);
    /* 2^e .. 2^(e+1) in eighths (large_size's classes), +- a little */
    size_t e = (size_t)1 << (15 + ops_u8(s) % 8), step = e / 8;
    return e + step * (ops_u8(s) % 8) + ops_u8(s) % 33 - 16;
}

/* Sizes: mostly small, some up to 32 KiB, a few up to 1 MiB, rarely huge,
 * and some just around class and path boundaries (large_heavy:
 * ops_size_large).  Too big for the budget: made small. */
static inline size_t ops_size(ops_model *m)
{
    static const size_t edges[] = { 16, 128, 512, 1024, 4096, 16384, 32768, 65536,
                                    131072, 1 << 20, 2 << 20, 4 << 20 };
    ops_src *s = &m->src;
    unsigned k = ops_u8(s);
    size_t n;
    if (m->large_heavy) {
        n = ops_size_large(s);
    } else if (k < 208) {
        n = ops_uN(s, 2) % 513;
    } else if (k < 216) {
        size_t e = edges[ops_u8(s) % (sizeof edges / sizeof edges[0])];
        n = e + ops_u8(s) % 17 - 8;
    } else if (k < 246) {
        n = 513 + ops_uN(s, 2) % (32768 - 512);
    } else if (k < 255) {
        n = 32769 + ops_uN(s, 3) % ((1 << 20) - 32768);
    } else if (ops_u8(s) < 16) {
        n = ((size_t)2 << 20) + ops_uN(s, 3) % ((size_t)6 << 20);   /* 1 in 4096 */
    } else {
        n = 32769 + ops_uN(s, 3) % ((1 << 20) - 32768);
    }
    if (!ops_fits(m, n)) n %= 513;
    return n;
}

/* Alignments 2^minlog..4 KiB mostly, 8 KiB..1 MiB one time in eight. */
static inline size_t ops_align(ops_src *s, unsigned minlog)
{
    unsigned b = ops_u8(s);
    unsigned lg = b < 224 ? minlog + b % (13 - minlog) : 13 + b % 8;
    return (size_t)1 << lg;
}

/* element sizes for calloc / reallocarray */
static inline size_t ops_elem(ops_src *s)
{
    static const size_t el[] = { 1, 1, 2, 4, 8, 16, 24, 100 };
    return el[ops_u8(s) % 8];
}

/* ---- ops ---------------------------------------------------------------- */

static inline int ops_sized_ok(unsigned how)
{
    return how == HOW_MALLOC || how == HOW_CALLOC || how == HOW_REALLOC || how == HOW_REALLOCARRAY;
}

static inline void ops_forget(ops_model *m, ops_blk *b)
{
    ops_uncharge(m, b->n);
    b->p = NULL;
    m->st.frees++;
}

/* Free slot's block (if any) with `variant` (an OP_FREE* op) where C23
 * allows it for the way the block was allocated, else with free(). */
static inline void ops_free_blk(ops_model *m, ops_blk *b, unsigned variant, const char *when)
{
    if (!b->p) return;
    ops_verify(m, b, when);
#if OPS_HAVE_SIZED_FREE
    if (variant == OP_FREE_SIZED && ops_sized_ok(b->how)) free_sized(b->p, b->n);
    else if (variant == OP_FREE_ALIGNED_SIZED && b->how == HOW_ALIGNED_ALLOC)
        free_aligned_sized(b->p, b->arg_al, b->n);
    else if (variant == OP_FREE_ALIGNED_SIZED && ops_sized_ok(b->how)) free_sized(b->p, b->n);
    else free(b->p);
#else
    (void)variant;
    free(b->p);
#endif
    ops_forget(m, b);
}

/* Record p, just returned for a request of n bytes, in slot. */
static inline void ops_new(ops_model *m, unsigned slot, void *p, size_t n, size_t align, size_t arg_al,
                    unsigned how, const char *fn)
{
    if (!p && m->oom_ok && errno == ENOMEM) { m->ooms++; return; }   /* the slot stays empty */
    if (!p) ops_fail(m, "%s(%zu) returned NULL (errno %d)", fn, n, errno);
    size_t u = ops_check_new(m, slot, p, n, align, fn);
    if (how == HOW_CALLOC && !ops_zeroed(p, n)) ops_fail(m, "calloc(%zu) = %p not zeroed", n, p);
    ops_blk *b = &m->t[slot];
    b->p = p;
    b->n = n;
    b->usable = u;
    b->arg_al = arg_al;
    b->how = (uint8_t)how;
    b->tid = (uint8_t)m->tid;
    b->tag = m->seed * 0x9E3779B97F4A7C15ull ^ ((uint64_t)m->tid << 56) ^ ++m->ctr;
    ops_fill(p, u, b->tag);
    ops_charge(m, n);
    m->st.allocs++;
    m->st.bytes += n;
}

/* realloc (array: reallocarray) of slot's block, NULL if the slot is empty. */
static inline void ops_realloc(ops_model *m, unsigned slot, int array)
{
    ops_src *s = &m->src;
    ops_blk *b = &m->t[slot];
    size_t n_old = b->p ? b->n : 0;
    unsigned mode = ops_u8(s);
    size_t n;
    if (mode < 80) n = ops_size(m);
    else if (mode < 140) n = n_old + ops_u8(s) * (m->large_heavy ? 64 : 1);   /* grow a little */
    else if (mode < 170) n = n_old * 2 + ops_u8(s);                /* grow a lot */
    else if (mode < 226) n = n_old - n_old * ops_u8(s) / 256;      /* shrink */
    else if (mode < 250) n = n_old;                                /* same size */
    else n = 0;                                                    /* frees */
    if (n > OPS_MAX_REQ || (n > n_old && !ops_fits(m, n - n_old))) n = n_old;
    size_t esz = array ? ops_elem(s) : 1, nmemb = n / esz;
    n = nmemb * esz;
    m->cur_n = n;
    const char *fn = array ? "reallocarray" : "realloc";

    void *old = b->p;
    if (old) ops_verify(m, b, "before realloc");
    void *q = array ? reallocarray(old, nmemb, esz) : realloc(old, n);
    m->st.reallocs++;
    if (n == 0 && old) {
        /* glibc: realloc(p, 0) frees p and returns NULL */
        if (q) ops_fail(m, "%s(%p, 0) = %p, expected NULL (block freed)", fn, old, q);
        ops_forget(m, b);
        return;
    }
    if (!q && m->oom_ok && errno == ENOMEM) {        /* the old block must be intact */
        m->ooms++;
        if (old) ops_verify(m, b, "after a failed realloc");
        return;
    }
    if (!q) ops_fail(m, "%s(%p, %zu) failed (errno %d)", fn, old, n, errno);
    if (!old) {
        ops_new(m, slot, q, n, OPS_MIN_ALIGN, 0, array ? HOW_REALLOCARRAY : HOW_REALLOC, fn);
        return;
    }
    size_t u = ops_check_new(m, slot, q, n, OPS_MIN_ALIGN, fn);
    size_t keep = n < n_old ? n : n_old;
    size_t bad = ops_check_prefix(q, b->usable, keep, b->tag);
    if (bad != OPS_NONE)
        ops_fail(m, "%s(%p, %zu) = %p (from %zu bytes, %s) lost contents at offset %zu of %zu kept",
                 fn, old, n, q, n_old, ops_how_name[b->how], bad, keep);
    b->p = q;
    b->n = n;
    b->usable = u;
    b->arg_al = 0;
    b->how = array ? HOW_REALLOCARRAY : HOW_REALLOC;
    b->tag = m->seed * 0x9E3779B97F4A7C15ull ^ ((uint64_t)m->tid << 56) ^ ++m->ctr;
    ops_fill(q, u, b->tag);
    if (n > n_old) ops_charge(m, n - n_old);
    else ops_uncharge(m, n_old - n);
    m->st.bytes += n;
}

/* Requests that must fail with NULL/ENOMEM and leave the slot's block alone. */
static inline void ops_overflow(ops_model *m, unsigned slot)
{
    static const size_t mul[][2] = {
        { SIZE_MAX / 2 + 1, 2 }, { SIZE_MAX / 3 + 1, 3 }, { (size_t)1 << 33, (size_t)1 << 33 },
        { 16, SIZE_MAX / 8 }, { SIZE_MAX, SIZE_MAX },
    };
    ops_src *s = &m->src;
    ops_blk *b = &m->t[slot];
    unsigned v = ops_u8(s) % 4, k = ops_u8(s);
    const size_t *pr = mul[k % 5];
    if (m->vg) v &= 2;       /* memcheck: only true multiplication overflows */
    void *r;
    size_t a = pr[0], c = pr[1];
    if (v == 1) { a = (size_t)PTRDIFF_MAX / 8 + 1 + k; c = 8; }          /* no overflow, > PTRDIFF_MAX */
    if (v == 3) { a = (size_t)PTRDIFF_MAX + 1 + (size_t)k * 4096; c = 1; }
    m->cur_n = a;
    errno = 0;
    if (v == 2) r = calloc(ops_opq(a), ops_opq(c));
    else if (v == 3) r = realloc(b->p, ops_opq(a));
    else r = reallocarray(b->p, ops_opq(a), ops_opq(c));
    if (r || (!m->vg && errno != ENOMEM)) {
        char call[128];
        if (v == 2) snprintf(call, sizeof call, "calloc(%zu, %zu)", a, c);
        else if (v == 3) snprintf(call, sizeof call, "realloc(%p, %zu)", b->p, a);
        else snprintf(call, sizeof call, "reallocarray(%p, %zu, %zu)", b->p, a, c);
        ops_fail(m, "%s = %p, errno %d: expected NULL, ENOMEM", call, r, errno);
    }
    if (b->p) ops_verify(m, (const ops_blk *)ops_opqp(b), "after a failed request");
    m->st.errors++;
}

/* posix_memalign with an alignment that is not a power-of-two multiple of
 * sizeof(void *): EINVAL, *out untouched. */
static inline void ops_bad_align(ops_model *m)
{
    static const size_t bad[] = { 0, 1, 2, 4, 12, 24, 40, 48, 96, 1000, 4095, 4097, 3 * 4096,
                                  (1 << 20) + 8, SIZE_MAX, SIZE_MAX / 2 };
    ops_src *s = &m->src;
    size_t al = bad[ops_u8(s) % (sizeof bad / sizeof bad[0])];
    size_t n = ops_uN(s, 2) % 4096;
    m->cur_n = n;
    m->cur_al = al;
    void *sentinel = (void *)&m->cur_al, *out = sentinel;
    int rc = posix_memalign(&out, ops_opq(al), n);
    if (rc != EINVAL || out != sentinel)
        ops_fail(m, "posix_memalign(&p, %zu, %zu) = %d (p %p), expected EINVAL and p untouched", al, n, rc, out);
    m->st.errors++;
}

static inline void ops_exchange_op(ops_model *m, unsigned slot)
{
    ops_src *s = &m->src;
    unsigned xi = ops_u8(s) % OPS_XSLOTS, act = ops_u8(s);
    ops_blk *b = &m->t[slot];
    if (!m->xch) {           /* single-threaded: a plain check */
        if (b->p) ops_verify(m, b, "on a check");
        return;
    }
    ops_blk mine = *b;
    pthread_mutex_lock(&m->xch->lock);
    *b = m->xch->slot[xi];
    m->xch->slot[xi] = mine;
    pthread_mutex_unlock(&m->xch->lock);
    if (!b->p) return;
    ops_verify(m, b, "after the hand-over to another thread");
    if (b->tid != m->tid) m->st.handoffs++;
    b->tid = (uint8_t)m->tid;
    /* its budget charge travels with it */
    if (act < 96) ops_free_blk(m, b, OP_FREE + act % 3, "before free");
    else if (act < 176) ops_realloc(m, slot, 0);
}

/* Spot check: two slots every 64 ops, chosen without reading the stream. */
static inline void ops_sample(ops_model *m)
{
    unsigned a = (unsigned)(m->op * 37u) % OPS_SLOTS, c = (unsigned)(m->op * 101u + 13u) % OPS_SLOTS;
    if (m->t[a].p) ops_verify(m, &m->t[a], "on a periodic check");
    if (m->t[c].p) ops_verify(m, &m->t[c], "on a periodic check");
}

static inline void ops_step(ops_model *m)
{
    ops_src *s = &m->src;
    unsigned op = ops_table[ops_u8(s)];
    unsigned slot = ops_u8(s);
    ops_blk *b = &m->t[slot];
    m->cur_op = op;
    m->cur_slot = slot;
    m->cur_n = m->cur_al = 0;
    if (op == OP_PVALLOC && m->vg) op = OP_VALLOC; /* memcheck aborts in pvalloc */
    size_t n, al;
    void *p;
    switch (op) {
    case OP_MALLOC:
        ops_free_blk(m, b, OP_FREE, "before free");
        m->cur_n = n = ops_size(m);
        ops_new(m, slot, malloc(n), n, OPS_MIN_ALIGN, 0, HOW_MALLOC, "malloc");
        break;
    case OP_CALLOC: {
        ops_free_blk(m, b, OP_FREE, "before free");
        n = ops_size(m);
        size_t esz = ops_elem(s), nmemb = n / esz;
        m->cur_n = n = nmemb * esz;
        p = ops_u8(s) & 1 ? calloc(nmemb, esz) : calloc(esz, nmemb);
        ops_new(m, slot, p, n, OPS_MIN_ALIGN, 0, HOW_CALLOC, "calloc");
        break;
    }
    case OP_REALLOC:
    case OP_REALLOCARRAY:
        ops_realloc(m, slot, op == OP_REALLOCARRAY);
        break;
    case OP_POSIX_MEMALIGN: {
        ops_free_blk(m, b, OP_FREE, "before free");
        m->cur_al = al = ops_align(s, 3);
        m->cur_n = n = ops_size(m);
        p = NULL;
        int rc = posix_memalign(&p, al, n);
        if (rc == ENOMEM && m->oom_ok && !p) { m->ooms++; break; }
        if (rc) ops_fail(m, "posix_memalign(&p, %zu, %zu) = %d", al, n, rc);
        ops_new(m, slot, p, n, al, al, HOW_POSIX_MEMALIGN, "posix_memalign");
        break;
    }
    case OP_ALIGNED_ALLOC:
        ops_free_blk(m, b, OP_FREE, "before free");
        m->cur_al = al = ops_align(s, 0);
        m->cur_n = n = ops_size(m);
        ops_new(m, slot, aligned_alloc(al, n), n, al, al, HOW_ALIGNED_ALLOC, "aligned_alloc");
        break;
    case OP_MEMALIGN: {
        ops_free_blk(m, b, OP_FREE, "before free");
        al = ops_align(s, 0);
        unsigned f = ops_u8(s);
        /* glibc rounds an alignment that is not a power of two up, and
         * takes 0 for 1 */
        if (f % 8 == 0 && al >= 2) al += al / 2;
        else if (f % 64 == 1) al = 0;
        m->cur_al = al;
        m->cur_n = n = ops_size(m);
        ops_new(m, slot, memalign(al, n), n, ops_pow2_ceil(al), al, HOW_MEMALIGN, "memalign");
        break;
    }
    case OP_VALLOC:
        ops_free_blk(m, b, OP_FREE, "before free");
        m->cur_n = n = ops_size(m);
        ops_new(m, slot, valloc(n), n, m->page, 0, HOW_VALLOC, "valloc");
        break;
    case OP_PVALLOC: {
        ops_free_blk(m, b, OP_FREE, "before free");
        m->cur_n = n = ops_size(m);
        /* pvalloc(0) is only checked for a page-aligned block: glibc 2.36
         * gives it 24 usable bytes */
        size_t rounded = (n + m->page - 1) & ~(m->page - 1);
        ops_new(m, slot, pvalloc(n), rounded, m->page, 0, HOW_PVALLOC, "pvalloc");
        break;
    }
    case OP_FREE:
    case OP_FREE_SIZED:
    case OP_FREE_ALIGNED_SIZED:
        n = ops_uN(s, 2);
        if (b->p) { ops_free_blk(m, b, op, "before free"); break; }
        /* NULL: no-op whatever the size */
#if OPS_HAVE_SIZED_FREE
        if (op == OP_FREE_SIZED) free_sized(NULL, n);
        else if (op == OP_FREE_ALIGNED_SIZED) free_aligned_sized(NULL, 64, n);
        else
#endif
            free(NULL);
        break;
    case OP_USABLE:
        if (b->p) ops_verify(m, b, "on a malloc_usable_size check");
        else if ((n = malloc_usable_size(NULL)) != 0) ops_fail(m, "malloc_usable_size(NULL) = %zu", n);
        break;
    case OP_BAD_ALIGN:
        ops_bad_align(m);
        break;
    case OP_OVERFLOW:
        ops_overflow(m, slot);
        break;
    case OP_VERIFY:
        if (b->p) ops_verify(m, b, "on a check");
        break;
    case OP_EXCHANGE:
        ops_exchange_op(m, slot);
        break;
    }
}

/* Run ops until `nops` in all, the end of the input, or the deadline. */
static inline void ops_run(ops_model *m, unsigned long nops)
{
    ops_running = m;
    for (; m->op < nops && ops_src_left(&m->src); m->op++) {
        ops_step(m);
        m->st.ops++;
        if ((m->op & 63) == 63) ops_sample(m);
        if ((m->op & 1023) == 1023 && m->deadline && tu_now() > m->deadline) {
            m->truncated = 1;
            m->op++;
            break;
        }
    }
    ops_running = NULL;
}

/* Verify and free every block left in the table. */
static inline void ops_free_all(ops_model *m)
{
    ops_running = m;
    m->cur_op = OP_FREE_SIZED;
    m->cur_n = m->cur_al = 0;
    for (m->cur_slot = 0; m->cur_slot < OPS_SLOTS; m->cur_slot++)
        ops_free_blk(m, &m->t[m->cur_slot], OP_FREE_SIZED, "before the final free");
    ops_running = NULL;
}

static inline void ops_stats_add(ops_stats *a, const ops_stats *b)
{
    a->ops += b->ops;
    a->allocs += b->allocs;
    a->reallocs += b->reallocs;
    a->frees += b->frees;
    a->errors += b->errors;
    a->handoffs += b->handoffs;
    a->verified += b->verified;
    a->bytes += b->bytes;
}

#endif
