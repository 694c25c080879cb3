/* stress_churn: thread churn, oversubscription, fork storms and signals.
 *
 * 1. thread churn -- 100,000 short-lived threads (16 alive at a time, a
 *    sliding window).  Each allocates a mix of sizes (small to 4 MiB) and
 *    verifies them; it frees some itself, returns some to the parent
 *    (through pthread_join), leaves some in a mailbox for a later thread,
 *    and arms a pthread_key whose destructor -- which runs after xalloc's
 *    own thread-exit hook -- checks and frees a block, allocates again
 *    (handing one block to a later thread), and sometimes re-arms itself
 *    for up to three more rounds.  One thread in 16 makes its first
 *    allocation only in destructor round 1, 2 or 3.  The process's RSS and
 *    xalloc's metadata must stay bounded: exited threads' caches are
 *    recycled.
 * 1b. last destructor round -- 1,000 threads whose first allocation is in
 *    the last (PTHREAD_DESTRUCTOR_ITERATIONS-th) round of key destructors,
 *    after which glibc runs no more destructors: their caches must not
 *    leak.
 * 2. many threads -- 32 threads on however few CPUs for ~4 s: random
 *    malloc/calloc/aligned_alloc/posix_memalign/realloc/free/free_sized/
 *    free_aligned_sized, and cross-thread frees through a lock-free
 *    exchange of heap-allocated descriptors.
 * 3. fork storm -- 8 threads (at nice 19, so that the forking thread and
 *    its children still get a CPU on a small machine) allocate and free
 *    all the time while the main thread forks 300 times, two children in
 *    flight, and worker 0 forks too (1 per 10 of the main thread's).  Two
 *    sets of pthread_atfork handlers allocate and free (one registered from
 *    a constructor, typically before xalloc's own handlers, one at run
 *    time, after them) and carry a block across fork().  Each child checks
 *    and frees (or reallocs) the blocks it inherited, allocates small,
 *    large and 4 MiB blocks, runs a thread of its own and hands it blocks
 *    to free, 1 in 4 or 5 forks a grandchild while that thread runs, and
 *    exits with a status saying whether every check passed; alarm() turns
 *    a deadlock into a SIGALRM death, and the parent kills and reports a
 *    child that hangs.
 * 4. signals -- 8 threads allocate while a 10 kHz ITIMER_REAL, per-thread
 *    POSIX timers (SIGUSR2, 2 kHz each) and a pthread_kill storm (SIGUSR1)
 *    interrupt them; half the threads take the signals on a sigaltstack.
 *    Handlers never allocate: they touch stack and static memory, count,
 *    and check errno survives.  Contents are verified; the counts must
 *    show the signals came.
 *
 * XALLOC_STRESS_SCALE=<factor> multiplies every count and duration (for
 * long runs by hand); XALLOC_STRESS_ONLY=<pattern> (cmocka's test filter,
 * '*' and '?' allowed) runs only the matching tests.  Each test prints one
 * summary line.  Deterministic seeds; safety deadlines (generous) only
 * shorten a test on a very slow machine or a debug build, and say so.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "xalloc.h"
#include "testutil.h"

/* ---- common --------------------------------------------------------------- */

static double g_scale = 1.0;

static long scaled(long n)
{
    double v = (double)n * g_scale;
    return v < 1 ? 1 : (long)v;
}


static void reset_failures(void)
{
    atomic_store(&tu_failures, 0);
    tu_first_failure[0] = 0;
}

#define CHECK_FAILURES() do { if (atomic_load(&tu_failures)) \
        fail_msg("%ld tu_failures; first: %s", (long)atomic_load(&tu_failures), tu_first_failure); } while (0)

typedef struct {
    void *p;
    size_t n;
    uint64_t tag;
    size_t align;   /* test 2: aligned_alloc's alignment, 1 for posix_memalign, else 0 */
} blk;

/* Full pattern up to 3 pages, sparse beyond (every page touched). */
static void blk_fill(blk *b) { tu_fill_sparse(b->p, b->n, b->tag); }

static int blk_ok(const blk *b, const char *when)
{
    if (!tu_check_sparse(b->p, b->n, b->tag)) {
        tu_report("block %p (%zu bytes, tag %#llx) corrupted before %s", b->p, b->n,
               (unsigned long long)b->tag, when);
        return 0;
    }
    if (malloc_usable_size(b->p) < b->n) {
        tu_report("malloc_usable_size(%p) = %zu < %zu before %s", b->p, malloc_usable_size(b->p), b->n, when);
        return 0;
    }
    return 1;
}

/* malloc + fill; on failure reports and returns 0 (b->p == NULL). */
static int blk_new(blk *b, size_t n, uint64_t tag, const char *who)
{
    b->p = malloc(n);
    b->n = n;
    b->tag = tag;
    b->align = 0;
    if (!b->p) {
        tu_report("%s: malloc(%zu) failed", who, n);
        return 0;
    }
    if (n >= 16 && !tu_aligned(b->p, 16)) tu_report("%s: malloc(%zu) = %p not 16-aligned", who, n, b->p);
    blk_fill(b);
    return 1;
}

static void blk_free(blk *b, const char *when)
{
    if (!b->p) return;
    blk_ok(b, when);
    free(b->p);
    b->p = NULL;
}

/* realloc b to n; verifies the kept prefix, refills with new_tag. */
static int blk_realloc(blk *b, size_t n, uint64_t new_tag, const char *who)
{
    if (!blk_ok(b, "realloc")) { b->p = NULL; return 0; }
    void *q = realloc(b->p, n);
    if (!q) {
        tu_report("%s: realloc(%p, %zu) failed", who, b->p, n);
        free(b->p);
        b->p = NULL;
        return 0;
    }
    if (n >= 16 && !tu_aligned(q, 16)) tu_report("%s: realloc -> %p not 16-aligned", who, q);
    if (!tu_check_sparse_prefix(q, b->n, n, b->tag))
        tu_report("%s: realloc %zu -> %zu (%p -> %p) lost contents", who, b->n, n, b->p, q);
    b->p = q;
    b->n = n;
    b->tag = new_tag;
    b->align = 0;
    blk_fill(b);
    return 1;
}

static size_t xa_stat(const char *name)
{
    uint64_t v = 0;
    size_t len = sizeof v;
    if (xalloc_ctl(name, &v, &len, NULL, 0) != 0) return 0;
    return (size_t)v;
}

static void sleep_s(double s)
{
    struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

static pid_t my_tid(void) { return (pid_t)syscall(SYS_gettid); }

/* ==== 1. thread churn ====================================================== */

enum {
    CH_TOTAL = 100000,   /* threads, scaled */
    CH_WINDOW = 16,      /* alive at a time */
    CH_MAIL = 61,        /* mailbox slots for blocks handed to later threads */
    CH_WARMUP = 2000,    /* RSS baseline taken after this many threads */
};
#define CH_BUDGET_S 60.0 /* safety deadline (scaled) */

static pthread_key_t ch_key;
static pthread_mutex_t mail_lock = PTHREAD_MUTEX_INITIALIZER;
static blk mail[CH_MAIL];
static atomic_long ch_blocks, ch_to_parent, ch_to_later, ch_dtor_calls, ch_dtor_blocks, ch_late_first;

/* Hand b to a later thread: swap it into a mailbox slot; the block found
 * there (left by an earlier thread, possibly long gone) is checked and freed. */
static void mail_swap(blk *b, unsigned slot)
{
    blk old;
    pthread_mutex_lock(&mail_lock);
    old = mail[slot % CH_MAIL];
    mail[slot % CH_MAIL] = *b;
    pthread_mutex_unlock(&mail_lock);
    b->p = NULL;
    atomic_fetch_add_explicit(&ch_to_later, 1, memory_order_relaxed);
    if (old.p) blk_free(&old, "free by a later thread");
}

/* Value of ch_key: either an odd marker "make the first allocation in
 * destructor round k" or a heap-allocated dtor_state. */
typedef struct {
    blk b;          /* checked and freed by the destructor */
    unsigned id;
    int rearm;      /* destructor rounds still to re-arm */
} dtor_state;

static void *marker(int round) { return (void *)(uintptr_t)(((unsigned)round << 1) | 1u); }

/* Allocation work done inside the destructor: after xalloc's thread-exit
 * hook has torn the cache down (or, for a thread that never allocated,
 * before any cache existed). */
static void dtor_work(unsigned id, tu_rng *r)
{
    blk t[4];
    static const size_t lim[4] = { 256, 2048, 32768, 200000 };
    for (int i = 0; i < 4; i++) {
        size_t n = tu_range(r, 1, lim[i]);
        blk_new(&t[i], n, ((uint64_t)0xD7 << 56) ^ ((uint64_t)id << 8) ^ (uint64_t)i, "destructor");
    }
    atomic_fetch_add_explicit(&ch_dtor_blocks, 4, memory_order_relaxed);
    blk_realloc(&t[0], tu_range(r, 1, 4096), ((uint64_t)0xD8 << 56) ^ id, "destructor");
    blk_free(&t[1], "free in destructor");
    blk_free(&t[3], "free in destructor");
    mail_swap(&t[2], id * 7 + 3);   /* freed later by a thread with a live cache */
    blk_free(&t[0], "free in destructor");
}

static void ch_destructor(void *v)
{
    atomic_fetch_add_explicit(&ch_dtor_calls, 1, memory_order_relaxed);
    uintptr_t u = (uintptr_t)v;
    if (u & 1) {
        int round = (int)(u >> 1);
        if (round > 1) {               /* not yet: ask for another round */
            pthread_setspecific(ch_key, marker(round - 1));
            return;
        }
        /* this thread's first allocation ever */
        tu_rng r;
        tu_seed(&r, (uint64_t)my_tid() * 31 + 7);
        atomic_fetch_add_explicit(&ch_late_first, 1, memory_order_relaxed);
        dtor_work((unsigned)my_tid(), &r);
        return;
    }
    dtor_state *s = v;
    blk_free(&s->b, "free in destructor");
    tu_rng r;
    tu_seed(&r, 0xD000000ull + s->id * 4 + (unsigned)s->rearm);
    dtor_work(s->id, &r);
    if (s->rearm > 0) {
        /* re-arm with a block allocated now, freed in the next round */
        dtor_state *n = malloc(sizeof *n);
        if (!n) { tu_report("destructor: malloc(%zu) failed", sizeof *n); free(s); return; }
        n->id = s->id;
        n->rearm = s->rearm - 1;
        blk_new(&n->b, tu_range(&r, 1, 3000), ((uint64_t)0xD9 << 56) ^ ((uint64_t)s->id << 4) ^ (uint64_t)n->rearm,
                "destructor");
        pthread_setspecific(ch_key, n);
    }
    free(s);
}

/* Returned to the parent through pthread_join (allocated by the thread,
 * freed by the parent, as are the blocks in it). */
typedef struct {
    unsigned id;
    int nb;
    blk b[3];
} handoff;

static size_t ch_size(tu_rng *r)
{
    unsigned k = (unsigned)(tu_next(r) % 1000);
    if (k < 800) return tu_range(r, 1, 512);
    if (k < 960) return tu_range(r, 513, 32768);
    if (k < 998) return tu_range(r, 32769, 1 << 19);
    return tu_range(r, 2 << 20, 4 << 20);
}

static void *churn_thread(void *arg)
{
    unsigned id = (unsigned)(uintptr_t)arg;
    if (id % 16 == 5) {
        /* never allocates in its body: the first allocation happens in
         * destructor round 1..3 (round 4, the last, is test_last_round's) */
        pthread_setspecific(ch_key, marker(1 + (int)((id / 16) % 3)));
        return NULL;
    }
    tu_rng r;
    tu_seed(&r, 0xC000000ull + id);
    blk t[12];
    int nt = 4 + (int)(tu_next(&r) % 9);
    for (int i = 0; i < nt; i++)
        blk_new(&t[i], ch_size(&r), ((uint64_t)0xC1 << 56) ^ ((uint64_t)id << 8) ^ (uint64_t)i, "churn thread");
    atomic_fetch_add_explicit(&ch_blocks, nt, memory_order_relaxed);
    /* one realloc (grow or shrink) */
    int ri = (int)(tu_next(&r) % (unsigned)nt);
    if (t[ri].p) blk_realloc(&t[ri], ch_size(&r), ((uint64_t)0xC2 << 56) ^ id, "churn thread");

    handoff *h = malloc(sizeof *h);
    if (!h) tu_report("churn thread: malloc(handoff) failed");
    else { h->id = id; h->nb = 0; }

    for (int i = 0; i < nt; i++) {
        if (!t[i].p) continue;
        unsigned k = (unsigned)(tu_next(&r) % 8);
        if (k < 4 || !h) {
            blk_free(&t[i], "free by the allocating thread");
        } else if (k < 6 && h->nb < 3) {
            h->b[h->nb++] = t[i];
            t[i].p = NULL;
            atomic_fetch_add_explicit(&ch_to_parent, 1, memory_order_relaxed);
        } else if (k < 7) {
            mail_swap(&t[i], id + (unsigned)i);
        } else {
            blk_free(&t[i], "free by the allocating thread");
        }
    }

    /* the destructor frees this block and allocates again */
    dtor_state *s = malloc(sizeof *s);
    if (!s) tu_report("churn thread: malloc(dtor_state) failed");
    else {
        s->id = id;
        s->rearm = (id % 8 == 3) ? 1 + (int)((id / 8) % 3) : 0;
        if (blk_new(&s->b, tu_range(&r, 1, 1024), ((uint64_t)0xC3 << 56) ^ id, "churn thread"))
            pthread_setspecific(ch_key, s);
        else
            free(s);
    }
    if (id % 3 == 0) pthread_exit(h);
    return h;
}

static void test_thread_churn(void **state)
{
    (void)state;
    reset_failures();
    assert_int_equal(pthread_key_create(&ch_key, ch_destructor), 0);
    long total = scaled(CH_TOTAL);
    long warm = total > 4 * CH_WARMUP ? CH_WARMUP : total / 4;
    pthread_t th[CH_WINDOW];
    double t0 = tu_now(), deadline = t0 + CH_BUDGET_S * g_scale;
    size_t rss0 = tu_rss(), rss_base = 0, rss_peak = 0, meta_base = 0, meta_peak = 0;
    long created = 0, joined = 0, returned = 0;
    int shortened = 0;

    for (long i = 0; i < total + CH_WINDOW; i++) {
        int w = (int)(i % CH_WINDOW);
        if (i >= CH_WINDOW) {
            void *ret = NULL;
            int e = pthread_join(th[w], &ret);
            if (e) { tu_report("pthread_join: %s", strerror(e)); break; }
            joined++;
            handoff *h = ret;
            if (h) {
                if (h->id != (unsigned)(i - CH_WINDOW)) tu_report("handoff from thread %u, expected %ld", h->id, i - CH_WINDOW);
                for (int k = 0; k < h->nb; k++) blk_free(&h->b[k], "free by the parent");
                returned += h->nb;
                free(h);
            }
            if (joined == warm) {
                rss_base = tu_rss();
                meta_base = xa_stat("stats.metadata");
            }
            if (joined % 1000 == 0) {
                size_t rss = tu_rss(), meta = xa_stat("stats.metadata");
                if (rss > rss_peak) rss_peak = rss;
                if (meta > meta_peak) meta_peak = meta;
                if (tu_now() > deadline && !shortened) { shortened = 1; total = i; }
            }
        }
        if (i < total) {
            int e = pthread_create(&th[w], NULL, churn_thread, (void *)(uintptr_t)i);
            if (e) {
                tu_report("pthread_create #%ld: %s", i, strerror(e));
                for (long k = (i >= CH_WINDOW ? i - CH_WINDOW + 1 : 0); k < i; k++) pthread_join(th[k % CH_WINDOW], NULL);
                break;
            }
            created++;
        }
    }
    for (int k = 0; k < CH_MAIL; k++) blk_free(&mail[k], "final free of the mailbox");
    size_t rss_end = tu_rss(), meta_end = xa_stat("stats.metadata");
    if (rss_end > rss_peak) rss_peak = rss_end;
    xalloc_purge();
    size_t rss_purged = tu_rss();
    double dt = tu_now() - t0;
    pthread_key_delete(ch_key);

    print_message("thread churn: %ld threads created and joined in %.1f s%s (%d alive at a time); "
                  "%ld blocks in thread bodies, %ld returned to the parent, %ld handed to later threads, "
                  "%ld destructor calls allocating %ld blocks, %ld threads first allocating in a destructor; "
                  "RSS MiB start %zu, after %ld threads %zu, peak %zu, end %zu, purged %zu; metadata MiB %.1f -> %.1f (peak %.1f)\n",
                  joined, dt, shortened ? " (shortened by the safety deadline)" : "", CH_WINDOW,
                  (long)ch_blocks, returned, (long)ch_to_later, (long)ch_dtor_calls, (long)ch_dtor_blocks,
                  (long)ch_late_first, rss0 >> 20, warm, rss_base >> 20, rss_peak >> 20, rss_end >> 20,
                  rss_purged >> 20, meta_base / 1048576.0, meta_end / 1048576.0, meta_peak / 1048576.0);
    CHECK_FAILURES();
    assert_int_equal(created, joined);
    if (rss_end > rss_base + 64 * TU_MiB)
        fail_msg("RSS grew from %zu MiB after %ld threads to %zu MiB after %ld: exited threads' caches are not recycled",
                 rss_base >> 20, warm, rss_end >> 20, joined);
    if (meta_end > meta_base + 32 * TU_MiB)
        fail_msg("allocator metadata grew from %zu MiB after %ld threads to %zu MiB after %ld",
                 meta_base >> 20, warm, meta_end >> 20, joined);
}

/* ---- 1b. first allocation in the last destructor round -------------------
 * glibc runs pthread_key destructors in at most PTHREAD_DESTRUCTOR_ITERATIONS
 * (4) rounds, keys in creation order, so xalloc's key (created at its
 * initialisation) comes before the application's.  A thread whose first
 * allocation happens in the last round gets a cache whose destructor will
 * never run: that cache (and the objects in it) must not be lost. */

enum { LR_THREADS = 1000 };

static pthread_key_t lr_key;
static atomic_long lr_allocs;

static void lr_destructor(void *v)
{
    int round = (int)(uintptr_t)v;
    if (round < PTHREAD_DESTRUCTOR_ITERATIONS) {
        pthread_setspecific(lr_key, (void *)(uintptr_t)(round + 1));
        return;
    }
    /* the thread's first allocations: a few size classes */
    static const size_t sizes[] = { 24, 100, 700, 3000, 20000 };
    blk b[5];
    for (int i = 0; i < 5; i++) blk_new(&b[i], sizes[i], ((uint64_t)0x1A << 56) ^ (uint64_t)i, "last destructor round");
    for (int i = 0; i < 5; i++) blk_free(&b[i], "free in the last destructor round");
    atomic_fetch_add_explicit(&lr_allocs, 5, memory_order_relaxed);
}

static void *lr_thread(void *arg)
{
    (void)arg;
    pthread_setspecific(lr_key, (void *)(uintptr_t)1);
    return NULL;
}

static void test_last_destructor_round(void **state)
{
    (void)state;
    reset_failures();
    free(malloc(1));   /* xalloc is initialised, so its key comes first */
    assert_int_equal(pthread_key_create(&lr_key, lr_destructor), 0);
    long n = scaled(LR_THREADS);
    size_t meta0 = xa_stat("stats.metadata"), small0 = xa_stat("stats.small_allocated"), rss0 = tu_rss();
    double t0 = tu_now();
    long done = 0;
    for (long i = 0; i < n; i += 8) {
        pthread_t th[8];
        int k = 0;
        for (; k < 8 && i + k < n; k++)
            if (pthread_create(&th[k], NULL, lr_thread, NULL) != 0) { tu_report("pthread_create: %s", strerror(errno)); break; }
        for (int j = 0; j < k; j++) pthread_join(th[j], NULL);
        done += k;
    }
    double dt = tu_now() - t0;
    size_t meta = xa_stat("stats.metadata"), small = xa_stat("stats.small_allocated"), rss = tu_rss();
    pthread_key_delete(lr_key);
    print_message("last destructor round: %ld threads making their first %ld allocations in destructor round %d, "
                  "in %.1f s; metadata MiB %.1f -> %.1f, small objects allocated MiB %.1f -> %.1f, RSS MiB %zu -> %zu\n",
                  done, (long)lr_allocs, PTHREAD_DESTRUCTOR_ITERATIONS, dt, meta0 / 1048576.0, meta / 1048576.0,
                  small0 / 1048576.0, small / 1048576.0, rss0 >> 20, rss >> 20);
    CHECK_FAILURES();
    if (meta > meta0 + 16 * TU_MiB || small > small0 + 16 * TU_MiB)
        fail_msg("the caches of threads that first allocated in the last destructor round were lost: "
                 "metadata grew by %zu MiB, small objects held by xalloc by %zu MiB",
                 (meta - meta0) >> 20, (small > small0 ? small - small0 : 0) >> 20);
}

/* ==== 2. many threads ====================================================== */

enum { MT_THREADS = 32, MT_SLOTS = 128, MT_XSLOTS = 256 };
#define MT_DURATION_S 4.0

typedef struct node {
    blk b;
    int from;
} node;

static _Atomic(node *) mt_xchg[MT_XSLOTS];
static atomic_int mt_stop;
static atomic_long mt_ops, mt_xfers, mt_xfree, mt_reallocs;
static pthread_barrier_t mt_bar;

static size_t mt_size(tu_rng *r)
{
    unsigned k = (unsigned)(tu_next(r) % 10000);
    if (k < 8000) return tu_range(r, 0, 256);
    if (k < 9500) return tu_range(r, 257, 32768);
    if (k < 9995) return tu_range(r, 32769, 262144);
    return tu_range(r, 2 << 20, 4 << 20);
}

static void *mt_thread(void *arg)
{
    int tid = (int)(uintptr_t)arg;
    tu_rng r;
    tu_seed(&r, 0x2000 + (uint64_t)tid);
    blk t[MT_SLOTS];
    memset(t, 0, sizeof t);
    uint64_t ctr = 0;
    long ops = 0, xf = 0, xfree = 0, rea = 0;
#define NEWTAG() (((uint64_t)(tid + 1) << 48) ^ ++ctr)
    pthread_barrier_wait(&mt_bar);
    while (!atomic_load_explicit(&mt_stop, memory_order_relaxed)) {
        for (int burst = 0; burst < 256; burst++, ops++) {
            blk *b = &t[tu_next(&r) % MT_SLOTS];
            unsigned k = (unsigned)(tu_next(&r) % 100);
            if (!b->p) {
                size_t n = mt_size(&r);
                unsigned how = (unsigned)(tu_next(&r) % 8);
                b->n = n;
                b->tag = NEWTAG();
                b->align = 0;
                if (how < 5) {
                    b->p = malloc(n);
                } else if (how == 5) {
                    b->p = calloc(1, n);
                    if (b->p && !tu_is_zero(b->p, n < 8192 ? n : 8192)) tu_report("calloc(1, %zu) not zeroed", n);
                } else {
                    size_t al = (size_t)1 << tu_range(&r, 4, 13);
                    if (how == 6) {
                        if (posix_memalign(&b->p, al, n) != 0) b->p = NULL;
                        b->align = 1;   /* no sized free for these */
                    } else {
                        b->p = aligned_alloc(al, (n + al - 1) & ~(al - 1));
                        b->n = (n + al - 1) & ~(al - 1);
                        b->align = al;
                    }
                    if (b->p && !tu_aligned(b->p, al)) tu_report("aligned allocation (%zu, %zu) = %p misaligned", al, n, b->p);
                }
                if (!b->p) { tu_report("thread %d: allocation of %zu bytes failed", tid, n); continue; }
                blk_fill(b);
            } else if (k < 35) {
                blk_free(b, "free");
            } else if (k < 45 && b->align != 1) {
                /* C23 sized frees: free_aligned_sized for aligned_alloc's
                 * blocks, free_sized for malloc/calloc/realloc's */
                if (blk_ok(b, "free_sized")) {
                    if (b->align) free_aligned_sized(b->p, b->align, b->n);
                    else free_sized(b->p, b->n);
                }
                b->p = NULL;
            } else if (k < 70) {
                size_t n = (tu_next(&r) & 3) ? b->n + tu_range(&r, 1, 256) : mt_size(&r);
                if (n == 0) n = 1;
                blk_realloc(b, n, NEWTAG(), "many threads");
                rea++;
            } else if (k < 95) {
                /* cross-thread: publish our block in a heap descriptor, take
                 * whatever another thread published */
                node *mine = malloc(sizeof *mine);
                if (!mine) { tu_report("malloc(node) failed"); continue; }
                mine->b = *b;
                mine->from = tid;
                b->p = NULL;
                node *got = atomic_exchange(&mt_xchg[tu_next(&r) % MT_XSLOTS], mine);
                xf++;
                if (got) {
                    if (got->from != tid) xfree++;
                    *b = got->b;
                    free(got);   /* descriptor allocated by another thread */
                    if (!blk_ok(b, "use after exchange")) b->p = NULL;
                }
            } else {
                if (blk_ok(b, "usable")) {
                    size_t u = malloc_usable_size(b->p);
                    if (u > b->n && u - b->n <= 65536) memset((char *)b->p + b->n, 0xa5, u - b->n);
                    free(b->p);
                }
                b->p = NULL;
            }
        }
    }
#undef NEWTAG
    for (int i = 0; i < MT_SLOTS; i++) blk_free(&t[i], "final free");
    atomic_fetch_add(&mt_ops, ops);
    atomic_fetch_add(&mt_xfers, xf);
    atomic_fetch_add(&mt_xfree, xfree);
    atomic_fetch_add(&mt_reallocs, rea);
    return NULL;
}

static void test_many_threads(void **state)
{
    (void)state;
    reset_failures();
    pthread_t th[MT_THREADS];
    assert_int_equal(pthread_barrier_init(&mt_bar, NULL, MT_THREADS + 1), 0);
    for (int i = 0; i < MT_THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, mt_thread, (void *)(uintptr_t)i), 0);
    pthread_barrier_wait(&mt_bar);
    double t0 = tu_now();
    sleep_s(MT_DURATION_S * g_scale);
    atomic_store(&mt_stop, 1);
    for (int i = 0; i < MT_THREADS; i++) pthread_join(th[i], NULL);
    double dt = tu_now() - t0;
    for (int i = 0; i < MT_XSLOTS; i++) {
        node *n = atomic_exchange(&mt_xchg[i], NULL);
        if (n) { blk_free(&n->b, "final free of the exchange"); free(n); }
    }
    pthread_barrier_destroy(&mt_bar);
    print_message("many threads: %d threads for %.1f s on %ld CPUs: %ld operations (%ld reallocs), "
                  "%ld blocks exchanged, %ld of them freed or reused by another thread\n",
                  MT_THREADS, dt, sysconf(_SC_NPROCESSORS_ONLN), (long)mt_ops, (long)mt_reallocs,
                  (long)mt_xfers, (long)mt_xfree);
    CHECK_FAILURES();
    assert_true(mt_ops > 0);
}

/* ==== 3. fork storm ======================================================== */

enum { FK_WORKERS = 8, FK_FORKS = 300, FK_WSLOTS = 64, FK_INHERIT = 6, FK_INFLIGHT = 2 };
#define FK_BUDGET_S 60.0      /* safety deadline for the whole storm (scaled) */
#define FK_CHILD_ALARM_S 20   /* a child still running after this dies of SIGALRM */
#define FK_WAIT_S 30.0        /* the parent kills a child still running after this */

/* Two sets of atfork handlers ('a' registered from a constructor, 'b' at
 * run time); each allocates and frees, and carries a block across fork()
 * in the forking thread. */
static __thread blk fk_carry[2];
static __thread unsigned fk_carry_ctr;
static atomic_long fk_prepares, fk_parents;
static int fk_child_seen[2], fk_child_bad[2];   /* written in the child only */

static void fk_churn_small(uint64_t seed)
{
    tu_rng r;
    tu_seed(&r, seed);
    blk t[4];
    for (int i = 0; i < 4; i++) blk_new(&t[i], i == 3 ? tu_range(&r, 32769, 200000) : tu_range(&r, 1, 2048), seed + (uint64_t)i, "atfork handler");
    for (int i = 0; i < 4; i++) blk_free(&t[i], "free in atfork handler");
}

static void fk_prepare(int set)
{
    atomic_fetch_add(&fk_prepares, 1);
    uint64_t seed = ((uint64_t)0xF0 << 56) ^ ((uint64_t)set << 40) ^ ((uint64_t)my_tid() << 16) ^ ++fk_carry_ctr;
    fk_churn_small(seed);
    blk_new(&fk_carry[set], 100 + (size_t)(fk_carry_ctr % 5000), seed ^ 0xCA, "atfork prepare");
}

static void fk_after(int set, int child)
{
    blk *c = &fk_carry[set];
    int ok = c->p && tu_check_sparse(c->p, c->n, c->tag);
    if (child) {
        fk_child_seen[set] = 1;
        if (!ok) fk_child_bad[set] = 1;
        if (c->p) free(c->p);
    } else {
        atomic_fetch_add(&fk_parents, 1);
        if (c->p) blk_free(c, "atfork parent handler");
    }
    c->p = NULL;
    fk_churn_small(((uint64_t)0xF1 << 56) ^ ((uint64_t)child << 40) ^ fk_carry_ctr);
}

static void fk_prepare_a(void) { fk_prepare(0); }
static void fk_parent_a(void) { fk_after(0, 0); }
static void fk_child_a(void) { fk_after(0, 1); }
static void fk_prepare_b(void) { fk_prepare(1); }
static void fk_parent_b(void) { fk_after(1, 0); }
static void fk_child_b(void) { fk_after(1, 1); }

/* Typically runs before the process's first malloc, so these handlers are
 * registered before xalloc's own: their prepare then runs after xalloc's
 * and their child handler before xalloc's, inside its fork window. */
__attribute__((constructor)) static void fk_register_early(void)
{
    pthread_atfork(fk_prepare_a, fk_parent_a, fk_child_a);
}

/* ---- in the child ---- */

#define CCHK(c) do { if (!(c)) { \
        fprintf(stderr, "fork child pid %d (depth %d): check failed at %s:%d: %s\n", \
                (int)getpid(), fk_depth, __FILE__, __LINE__, #c); _exit(10); } } while (0)

static int fk_depth;
static atomic_int fk_cthread_stop;
static _Atomic(void *) fk_cthread_slot;   /* child main -> child thread */
static int fk_cthread_bad;

static int c_blk_ok(const blk *b) { return tu_check_sparse(b->p, b->n, b->tag) && malloc_usable_size(b->p) >= b->n; }

static void *fk_child_thread(void *arg)
{
    tu_rng r;
    tu_seed(&r, (uint64_t)(uintptr_t)arg);
    blk t[16];
    memset(t, 0, sizeof t);
    long ops = 0;
    for (;; ops++) {
        if (ops >= 600) {
            /* done with our own work: only take the main thread's blocks */
            if (atomic_load(&fk_cthread_stop)) break;
            sched_yield();
            goto take;
        }
        blk *b = &t[tu_next(&r) % 16];
        if (b->p) {
            if (!c_blk_ok(b)) fk_cthread_bad = 1;
            free(b->p);
            b->p = NULL;
        } else {
            b->n = (tu_next(&r) % 64) ? tu_range(&r, 1, 4096) : tu_range(&r, 4097, 300000);
            b->tag = tu_next(&r);
            b->p = malloc(b->n);
            if (!b->p) { fk_cthread_bad = 1; break; }
            blk_fill(b);
        }
    take:;
        /* blocks from the child's main thread are freed here */
        uint64_t *q = atomic_exchange(&fk_cthread_slot, NULL);
        if (q) {
            if (q[0] != 0x5157A7E5ull || q[1] != (uint64_t)(uintptr_t)q) fk_cthread_bad = 1;
            free(q);
        }
    }
    for (int i = 0; i < 16; i++)
        if (t[i].p) {
            if (!c_blk_ok(&t[i])) fk_cthread_bad = 1;
            free(t[i].p);
        }
    return NULL;
}

static int wait_child(pid_t pid, double timeout_s, char *desc, size_t len);

static void __attribute__((noreturn)) fk_child_main(int depth, uint64_t seed, blk *inh, int ninh)
{
    fk_depth = depth;
    tu_default_signals();
    alarm(FK_CHILD_ALARM_S);
    CCHK(fk_child_seen[0] && fk_child_seen[1]);
    CCHK(!fk_child_bad[0] && !fk_child_bad[1]);
    /* blocks the forking thread allocated before fork() */
    for (int i = 0; i < ninh; i++) {
        CCHK(c_blk_ok(&inh[i]));
        if (i & 1) {
            void *q = realloc(inh[i].p, inh[i].n * 2 + 1);
            CCHK(q && tu_check_sparse_prefix(q, inh[i].n, inh[i].n, inh[i].tag));
            free(q);
        } else {
            free(inh[i].p);
        }
    }
    tu_rng r;
    tu_seed(&r, seed);
    /* small and large churn (less in a grandchild) */
    blk t[64];
    memset(t, 0, sizeof t);
    for (int op = 0, nops = depth ? 400 : 1500; op < nops; op++) {
        blk *b = &t[tu_next(&r) % 64];
        if (b->p) {
            CCHK(c_blk_ok(b));
            free(b->p);
            b->p = NULL;
        } else {
            b->n = (tu_next(&r) % 32) ? tu_range(&r, 1, 2048) : tu_range(&r, 2049, 300000);
            b->tag = tu_next(&r);
            b->p = malloc(b->n);
            CCHK(b->p);
            blk_fill(b);
        }
    }
    /* huge: 4 MiB (every page written), grown to 5 MiB, and a zeroed one */
    blk h = { malloc(4 << 20), 4 << 20, tu_next(&r), 0 };
    CCHK(h.p);
    blk_fill(&h);
    void *q = realloc(h.p, 5 << 20);
    CCHK(q && tu_check_sparse_prefix(q, h.n, h.n, h.tag));
    ((char *)q)[(5 << 20) - 1] = 1;
    free(q);
    char *z = calloc(1, 4 << 20);
    CCHK(z);
    for (size_t off = 0; off < (4 << 20); off += 16 * 4096) CCHK(z[off] == 0 && z[off + 4095] == 0);
    CCHK(tu_is_zero(z + (4 << 20) - 4096, 4096));
    free(z);

    /* a thread of the child's own; a grandchild forked while it runs */
    atomic_store(&fk_cthread_stop, 0);
    pthread_t th;
    CCHK(pthread_create(&th, NULL, fk_child_thread, (void *)(uintptr_t)(seed ^ 0x77)) == 0);
    for (int i = 0; i < 200; i++) {
        uint64_t *m = malloc(16 + (size_t)(tu_next(&r) % 512));
        CCHK(m);
        m[0] = 0x5157A7E5ull;
        m[1] = (uint64_t)(uintptr_t)m;
        void *old = atomic_exchange(&fk_cthread_slot, m);
        if (old) free(old);
        if ((i & 31) == 0) sched_yield();
    }
    if (depth == 0 && (seed & 3) == 0) {
        fk_child_seen[0] = fk_child_seen[1] = 0;   /* the grandchild's handlers must set them again */
        blk g;
        CCHK(blk_new(&g, 3000 + (size_t)(seed % 5000), seed ^ 0x6C, "child"));
        fflush(stderr);
        pid_t pid = fork();
        CCHK(pid >= 0);
        if (pid == 0) fk_child_main(1, seed * 3 + 1, &g, 1);
        CCHK(c_blk_ok(&g));
        free(g.p);
        char d[96];
        if (wait_child(pid, FK_WAIT_S, d, sizeof d) != 0) {
            fprintf(stderr, "fork child pid %d: grandchild %d %s\n", (int)getpid(), (int)pid, d);
            _exit(11);
        }
    }
    atomic_store(&fk_cthread_stop, 1);
    CCHK(pthread_join(th, NULL) == 0);
    CCHK(!fk_cthread_bad);
    void *last = atomic_exchange(&fk_cthread_slot, NULL);
    free(last);
    for (int i = 0; i < 64; i++)
        if (t[i].p) {
            CCHK(c_blk_ok(&t[i]));
            free(t[i].p);
        }
    _exit(0);
}

/* 0 if the child exited with 0 before the timeout; else describes it. */
static int wait_child(pid_t pid, double timeout_s, char *desc, size_t len)
{
    double deadline = tu_now() + timeout_s;
    useconds_t nap = 50;
    int st;
    for (;;) {
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid) break;
        if (w < 0 && errno != EINTR) { snprintf(desc, len, "waitpid: %s", strerror(errno)); return -1; }
        if (tu_now() > deadline) {
            kill(pid, SIGKILL);
            while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
            snprintf(desc, len, "hung (killed after %.0f s)", timeout_s);
            return -1;
        }
        usleep(nap);
        if (nap < 2000) nap *= 2;
    }
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return 0;
    if (WIFEXITED(st)) snprintf(desc, len, "exited with %d", WEXITSTATUS(st));
    else if (WIFSIGNALED(st)) snprintf(desc, len, "killed by signal %d (%s)%s", WTERMSIG(st), strsignal(WTERMSIG(st)),
                                       WTERMSIG(st) == SIGALRM ? ": deadlocked" : "");
    else snprintf(desc, len, "status %#x", st);
    return -1;
}

/* ---- in the parent ---- */

static atomic_long fk_forks, fk_grandchildren, fk_worker_forks, fk_worker_ops, fk_child_failed;
static atomic_int fk_stop;

/* Fork a child that checks the blocks allocated here just before; the
 * parent frees its own copies at once.  Returns the pid (< 0 on failure). */
static pid_t fork_start(const char *who, uint64_t seed)
{
    blk inh[FK_INHERIT];
    int n = 0;
    tu_rng r;
    tu_seed(&r, seed);
    for (int i = 0; i < FK_INHERIT; i++) {
        size_t sz = i < 3 ? tu_range(&r, 1, 1024) : i < 5 ? tu_range(&r, 32769, 600000)
                  : (seed % 8 == 0) ? (size_t)(4 << 20) : tu_range(&r, 1025, 32768);
        if (blk_new(&inh[n], sz, seed ^ ((uint64_t)i << 52), who)) n++;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) fk_child_main(0, seed, inh, n);
    if (pid < 0) tu_report("%s: fork: %s", who, strerror(errno));
    for (int i = 0; i < n; i++) blk_free(&inh[i], "free of a block the child inherited");
    return pid;
}

static void fork_finish(const char *who, pid_t pid, uint64_t seed)
{
    char d[96];
    if (wait_child(pid, FK_WAIT_S, d, sizeof d) != 0) {
        atomic_fetch_add(&fk_child_failed, 1);
        tu_report("%s: child %d (seed %#llx) %s", who, (int)pid, (unsigned long long)seed, d);
    }
    atomic_fetch_add(&fk_forks, 1);
    if ((seed & 3) == 0) atomic_fetch_add(&fk_grandchildren, 1);
}

static void *fk_worker(void *arg)
{
    int tid = (int)(uintptr_t)arg;
    tu_rng r;
    tu_seed(&r, 0x3000 + (uint64_t)tid);
    blk t[FK_WSLOTS];
    memset(t, 0, sizeof t);
    uint64_t ctr = 0;
    long ops = 0, my_forks = 0;
    /* Busy, but at the lowest priority: on a machine with few CPUs the
     * forking thread and its children would otherwise get a tenth of one,
     * and the workers still run (and hold locks) whenever a CPU is free. */
    setpriority(PRIO_PROCESS, (id_t)my_tid(), 19);
    while (!atomic_load_explicit(&fk_stop, memory_order_relaxed)) {
        for (int burst = 0; burst < 64; burst++, ops++) {
            blk *b = &t[tu_next(&r) % FK_WSLOTS];
            if (b->p) {
                if (tu_next(&r) % 4) blk_free(b, "free in a worker");
                else blk_realloc(b, tu_range(&r, 1, 8192), ((uint64_t)(tid + 0x40) << 48) ^ ++ctr, "fork worker");
            } else {
                unsigned k = (unsigned)(tu_next(&r) % 4000);
                size_t n = k < 3700 ? tu_range(&r, 1, 1024) : k < 3999 ? tu_range(&r, 1025, 400000) : (size_t)(4 << 20);
                blk_new(b, n, ((uint64_t)(tid + 0x40) << 48) ^ ++ctr, "fork worker");
            }
        }
        /* worker 0 forks too: one fork per ten of the main thread's */
        if (tid == 0 && atomic_load(&fk_forks) / 10 > my_forks) {
            my_forks++;
            uint64_t seed = 0xF0F0000000ull + (uint64_t)my_forks * 5 + 1;
            pid_t pid = fork_start("worker 0", seed);
            if (pid > 0) fork_finish("worker 0", pid, seed);
            atomic_fetch_add(&fk_worker_forks, 1);
        }
    }
    for (int i = 0; i < FK_WSLOTS; i++) blk_free(&t[i], "final free in a worker");
    atomic_fetch_add(&fk_worker_ops, ops);
    return NULL;
}

static void test_fork_storm(void **state)
{
    (void)state;
    reset_failures();
    assert_int_equal(pthread_atfork(fk_prepare_b, fk_parent_b, fk_child_b), 0);
    long nforks = scaled(FK_FORKS);
    pthread_t th[FK_WORKERS];
    for (int i = 0; i < FK_WORKERS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, fk_worker, (void *)(uintptr_t)i), 0);
    double t0 = tu_now(), deadline = t0 + FK_BUDGET_S * g_scale;
    long main_forks = 0;
    int shortened = 0;
    /* the main thread keeps FK_INFLIGHT children running at a time */
    pid_t pids[FK_INFLIGHT];
    uint64_t seeds[FK_INFLIGHT];
    for (long i = 0; i < nforks + FK_INFLIGHT; i++) {
        int k = (int)(i % FK_INFLIGHT);
        if (i >= FK_INFLIGHT && pids[k] > 0) fork_finish("main thread", pids[k], seeds[k]);
        pids[k] = -1;
        if (i >= nforks) continue;
        if (tu_now() > deadline) { shortened = 1; nforks = i; continue; }
        seeds[k] = 0xF000000000ull + (uint64_t)i * 4 + (uint64_t)(i % 5 == 0 ? 0 : 1 + i % 3);
        pids[k] = fork_start("main thread", seeds[k]);
        main_forks++;
    }
    atomic_store(&fk_stop, 1);
    for (int i = 0; i < FK_WORKERS; i++) pthread_join(th[i], NULL);
    double dt = tu_now() - t0;
    struct rusage ru;
    getrusage(RUSAGE_CHILDREN, &ru);
    double child_cpu = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
    print_message("fork storm: %ld forks in %.1f s%s (%ld from the main thread, %ld from a worker, %ld of the children "
                  "also forked a grandchild) while %d threads made %ld allocation operations; "
                  "%ld atfork prepare / %ld parent handler runs; children used %.1f s of CPU; %ld children failed or hung\n",
                  (long)fk_forks, dt, shortened ? " (shortened by the safety deadline)" : "", main_forks,
                  (long)fk_worker_forks, (long)fk_grandchildren, FK_WORKERS, (long)fk_worker_ops,
                  (long)fk_prepares, (long)fk_parents, child_cpu, (long)fk_child_failed);
    CHECK_FAILURES();
    assert_true(fk_forks >= main_forks);
    /* both handler sets ran at every fork (grandchildren fork in children) */
    assert_true(fk_prepares == 2 * fk_forks);
    assert_true(fk_parents == 2 * fk_forks);
}

/* ==== 4. signals =========================================================== */

enum { SG_THREADS = 8, SG_SLOTS = 96 };
#define SG_DURATION_S 2.5
#define SG_ITIMER_US 100      /* 10 kHz process-wide SIGALRM */
#define SG_TTIMER_US 500      /* 2 kHz SIGUSR2 per thread */

static atomic_long sg_count[3], sg_on_alt, sg_kills, sg_ops, sg_errno_bad;
static atomic_int sg_stop;
static __thread char *sg_alt_lo, *sg_alt_hi;
static __thread int sg_idx;
static volatile uint64_t sg_scratch[SG_THREADS][128];

static void sg_handler(int sig, siginfo_t *si, void *uc)
{
    (void)si;
    (void)uc;
    int saved = errno;
    errno = 0x5EED;
    /* touch some stack (the alternate stack too) and static memory */
    volatile char buf[2048];
    for (size_t i = 0; i < sizeof buf; i += 64) buf[i] = (char)(i ^ (size_t)sig);
    char *here = (char *)&buf[0];
    if (sg_alt_lo && here >= sg_alt_lo && here < sg_alt_hi)
        atomic_fetch_add_explicit(&sg_on_alt, 1, memory_order_relaxed);
    volatile uint64_t *s = sg_scratch[sg_idx];
    s[(unsigned)sig % 128] += 1;
    s[127] ^= (uint64_t)(uintptr_t)here;
    int k = sig == SIGALRM ? 0 : sig == SIGUSR1 ? 1 : 2;
    atomic_fetch_add_explicit(&sg_count[k], 1, memory_order_relaxed);
    if (errno != 0x5EED) atomic_fetch_add_explicit(&sg_errno_bad, 1, memory_order_relaxed);
    errno = saved;
}

static void *sg_worker(void *arg)
{
    int tid = (int)(uintptr_t)arg;
    sg_idx = tid;
    tu_rng r;
    tu_seed(&r, 0x4000 + (uint64_t)tid);
    stack_t ss = { 0 };
    size_t altsz = 4 * (size_t)(SIGSTKSZ > 16384 ? SIGSTKSZ : 16384);
    if (tid & 1) {
        ss.ss_sp = malloc(altsz);
        ss.ss_size = altsz;
        if (!ss.ss_sp || sigaltstack(&ss, NULL) != 0) tu_report("sigaltstack: %s", strerror(errno));
        sg_alt_lo = ss.ss_sp;
        sg_alt_hi = (char *)ss.ss_sp + altsz;
    }
    timer_t tm;
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = SIGUSR2;
#ifdef sigev_notify_thread_id
    sev.sigev_notify_thread_id = my_tid();
#else
    sev._sigev_un._tid = my_tid();
#endif
    int have_timer = timer_create(CLOCK_MONOTONIC, &sev, &tm) == 0;
    if (!have_timer) tu_report("timer_create: %s", strerror(errno));
    else {
        struct itimerspec its = { { 0, SG_TTIMER_US * 1000 }, { 0, SG_TTIMER_US * 1000 } };
        timer_settime(tm, 0, &its, NULL);
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGALRM);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);

    blk t[SG_SLOTS];
    memset(t, 0, sizeof t);
    uint64_t ctr = 0;
    long ops = 0;
    while (!atomic_load_explicit(&sg_stop, memory_order_relaxed)) {
        for (int burst = 0; burst < 64; burst++, ops++) {
            blk *b = &t[tu_next(&r) % SG_SLOTS];
            uint64_t tag = ((uint64_t)(tid + 0x60) << 48) ^ ++ctr;
            unsigned k = (unsigned)(tu_next(&r) % 100);
            if (!b->p) {
                unsigned m = (unsigned)(tu_next(&r) % 2000);
                size_t n = m < 1700 ? tu_range(&r, 1, 1024) : m < 1995 ? tu_range(&r, 1025, 300000)
                                                                      : tu_range(&r, 2 << 20, 5 << 20);
                if (k < 70) {
                    blk_new(b, n, tag, "signals");
                } else if (k < 85) {
                    b->p = calloc(n, 1);
                    b->n = n;
                    b->tag = tag;
                    if (!b->p) { tu_report("calloc(%zu) failed", n); continue; }
                    if (!tu_is_zero(b->p, n < 16384 ? n : 16384)) tu_report("calloc(%zu) not zeroed", n);
                    blk_fill(b);
                } else {
                    size_t al = (size_t)1 << tu_range(&r, 5, 14);
                    if (posix_memalign(&b->p, al, n) != 0) { tu_report("posix_memalign(%zu, %zu) failed", al, n); b->p = NULL; continue; }
                    if (!tu_aligned(b->p, al)) tu_report("posix_memalign(%zu) = %p misaligned", al, b->p);
                    b->n = n;
                    b->tag = tag;
                    blk_fill(b);
                }
            } else if (k < 55) {
                blk_free(b, "free (signals)");
            } else {
                size_t n = (k & 1) ? b->n / 2 + 1 : b->n + tu_range(&r, 1, 70000);
                if (n > (6 << 20)) n = 1000;
                blk_realloc(b, n, tag, "signals");
            }
        }
    }
    for (int i = 0; i < SG_SLOTS; i++) blk_free(&t[i], "final free (signals)");
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    if (have_timer) timer_delete(tm);
    if (tid & 1) {
        stack_t dis = { .ss_flags = SS_DISABLE };
        sigaltstack(&dis, NULL);
        sg_alt_lo = sg_alt_hi = NULL;
        free(ss.ss_sp);
    }
    atomic_fetch_add(&sg_ops, ops);
    return NULL;
}

static pthread_t sg_th[SG_THREADS];

static void *sg_killer(void *arg)
{
    (void)arg;
    tu_rng r;
    tu_seed(&r, 0x4FFF);
    long kills = 0;
    while (!atomic_load(&sg_stop)) {
        for (int burst = 0; burst < 4; burst++)
            for (int i = 0; i < SG_THREADS; i++)
                if (pthread_kill(sg_th[(i + (int)(tu_next(&r) % SG_THREADS)) % SG_THREADS], SIGUSR1) == 0) kills++;
        struct timespec ts = { 0, 100000 };
        nanosleep(&ts, NULL);
    }
    atomic_fetch_add(&sg_kills, kills);
    return NULL;
}

static void test_signals(void **state)
{
    (void)state;
    reset_failures();
    struct sigaction sa, old[3];
    const int sigs[3] = { SIGALRM, SIGUSR1, SIGUSR2 };
    sigset_t set, oldmask;
    sigemptyset(&set);
    for (int i = 0; i < 3; i++) sigaddset(&set, sigs[i]);
    /* only the workers take them */
    pthread_sigmask(SIG_BLOCK, &set, &oldmask);
    for (int i = 0; i < 3; i++) {
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = sg_handler;
        sigfillset(&sa.sa_mask);
        /* SIGALRM restarts interrupted calls; the other two do not */
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK | (sigs[i] == SIGALRM ? SA_RESTART : 0);
        assert_int_equal(sigaction(sigs[i], &sa, &old[i]), 0);
    }
    for (int i = 0; i < SG_THREADS; i++)
        assert_int_equal(pthread_create(&sg_th[i], NULL, sg_worker, (void *)(uintptr_t)i), 0);
    pthread_t killer;
    assert_int_equal(pthread_create(&killer, NULL, sg_killer, NULL), 0);
    struct itimerval it = { { 0, SG_ITIMER_US }, { 0, SG_ITIMER_US } };
    assert_int_equal(setitimer(ITIMER_REAL, &it, NULL), 0);
    double t0 = tu_now();
    sleep_s(SG_DURATION_S * g_scale);
    struct itimerval off = { { 0, 0 }, { 0, 0 } };
    setitimer(ITIMER_REAL, &off, NULL);
    atomic_store(&sg_stop, 1);
    pthread_join(killer, NULL);
    for (int i = 0; i < SG_THREADS; i++) pthread_join(sg_th[i], NULL);
    double dt = tu_now() - t0;
    /* a SIGALRM still pending goes to our handler, then the old actions */
    pthread_sigmask(SIG_SETMASK, &oldmask, NULL);
    for (int i = 0; i < 3; i++) sigaction(sigs[i], &old[i], NULL);
    long total = sg_count[0] + sg_count[1] + sg_count[2];
    print_message("signals: %ld signals delivered in %.1f s to %d allocating threads (%ld SIGALRM from a %d Hz "
                  "ITIMER_REAL, %ld SIGUSR1 of %ld pthread_kill calls, %ld SIGUSR2 from per-thread timers; "
                  "%ld on alternate stacks); %ld allocation operations\n",
                  total, dt, SG_THREADS, (long)sg_count[0], 1000000 / SG_ITIMER_US, (long)sg_count[1],
                  (long)sg_kills, (long)sg_count[2], (long)sg_on_alt, (long)sg_ops);
    CHECK_FAILURES();
    assert_int_equal(sg_errno_bad, 0);
    assert_true(total > 1000);
    assert_true(sg_count[0] > 100 && sg_count[1] > 100 && sg_count[2] > 100);
    assert_true(sg_on_alt > 0);
    assert_true(sg_ops > 0);
}

int main(void)
{
    const char *s = getenv("XALLOC_STRESS_SCALE");
    if (s && atof(s) > 0) g_scale = atof(s);
    /* XALLOC_STRESS_ONLY=<pattern, * and ? allowed>: run only those tests */
    const char *only = getenv("XALLOC_STRESS_ONLY");
    if (only && *only) cmocka_set_test_filter(only);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_thread_churn),
        cmocka_unit_test(test_last_destructor_round),
        cmocka_unit_test(test_many_threads),
        cmocka_unit_test(test_fork_storm),
        cmocka_unit_test(test_signals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
