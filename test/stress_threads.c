/* stress_threads: multi-threaded stress of the public API.
 *
 * Phase A -- 8 threads, each with its own xorshift seed, run random
 *   operations on a private table of blocks: malloc/calloc/aligned
 *   allocations (random alignments), realloc chains, frees, and swaps with
 *   a lock-protected exchange array shared by all threads, so blocks are
 *   freed/realloc'd by threads other than the one that allocated them.
 *   Sizes: mostly small, some large (up to 1 MiB), rarely huge (up to
 *   16 MiB).  Every block carries a pattern derived from its tag that is
 *   verified before every realloc/free.
 * Phase B -- xmalloc-style: 4 producer threads only allocate, 4 consumer
 *   threads only free (what their producer allocated), through bounded
 *   lock-protected queues.  Process RSS is sampled after every round and
 *   must not keep growing: the last round's RSS must stay below the RSS
 *   after the first round + 64 MiB, although each round allocates
 *   hundreds of MiB in total.
 *
 * Phase C -- reclaims racing the owners: 6 threads churn small tagged
 *   blocks (their caches' fast paths), pausing now and then so that they
 *   are sometimes outside any call, while a seventh calls malloc_trim(0)
 *   in a loop, which takes back every idle cache (xalloc's
 *   xa_tcache_reclaim).  A block handed to two owners, or one taken from
 *   a cache while its owner pops it, shows up as a clobbered tag.
 *
 * Deterministic seeds; the operation counts are fixed, with a safety
 * deadline per phase (~2.5 s) that only shortens a phase on a slow machine
 * or a debug build (a shortened phase is reported, never counted as a
 * failure; phase B always runs at least 3 rounds).
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <linux/membarrier.h>

#include "xalloc.h"

#include "testutil.h"

#define NTHREADS 8
#define PHASE_BUDGET_S 2.5


/* ---- block descriptors -------------------------------------------------- */

typedef struct {
    void *p;
    size_t n;
    uint64_t tag;
    size_t align; /* 0 = default */
} blk;

static size_t rand_size(tu_rng *r)
{
    unsigned k = (unsigned)(tu_next(r) % 10000);
    if (k < 8500) return tu_range(r, 0, 512);
    if (k < 9500) return tu_range(r, 513, 32768);
    if (k < 9990) return tu_range(r, 32769, 1 << 20);
    return tu_range(r, 1 << 20, 16 << 20);
}

static int verify(const blk *b, const char *when)
{
    if (!tu_check_sparse_prefix(b->p, b->n, b->n, b->tag)) {
        tu_report("block %p (%zu bytes, tag %#llx) corrupted before %s", b->p, b->n, (unsigned long long)b->tag, when);
        return 0;
    }
    if (malloc_usable_size(b->p) < b->n) {
        tu_report("usable size %zu < %zu for %p", malloc_usable_size(b->p), b->n, b->p);
        return 0;
    }
    return 1;
}

static void fresh(blk *b, tu_rng *r, int tid, uint64_t *ctr)
{
    size_t n = rand_size(r);
    unsigned how = (unsigned)(tu_next(r) % 10);
    void *p = NULL;
    size_t al = 0;
    if (how < 6) {
        p = malloc(n);
    } else if (how < 8) {
        p = calloc(1, n);
        if (p) {
            /* zeroed: first/last page fully, one word per page between */
            size_t e = n < 4096 ? n : 4096;
            int ok = tu_is_zero(p, e) && tu_is_zero((char *)p + n - e, e);
            for (size_t off = 4096; ok && off + 8 <= n; off += 4096) ok = tu_is_zero((char *)p + off, 8);
            if (!ok) tu_report("calloc(1, %zu) = %p not zeroed", n, p);
        }
    } else {
        unsigned ak = (unsigned)(tu_next(r) % 100);
        al = (size_t)1 << (ak < 90 ? tu_range(r, 4, 12) : ak < 99 ? tu_range(r, 13, 16) : tu_range(r, 17, 20));
        if (how == 8) p = aligned_alloc(al, n);
        else if (tu_next(r) & 1) p = memalign(al, n);
        else if (posix_memalign(&p, al, n) != 0) p = NULL;
        if (p && !tu_aligned(p, al)) tu_report("aligned allocation (%zu, %zu) = %p misaligned", al, n, p);
    }
    if (!p) {
        tu_report("thread %d: allocation of %zu bytes (align %zu) failed", tid, n, al);
        b->p = NULL;
        return;
    }
    if (n >= 16 && !tu_aligned(p, 16)) tu_report("allocation of %zu bytes = %p not 16-aligned", n, p);
    b->p = p;
    b->n = n;
    b->align = al;
    b->tag = ((uint64_t)tid << 48) ^ ++*ctr;
    tu_fill_sparse(p, n, b->tag);
}

/* ---- phase A: random operations with cross-thread exchange --------------- */

enum { SLOTS = 256, XSLOTS = 128, OPS_A = 250000 };
static pthread_mutex_t xlock = PTHREAD_MUTEX_INITIALIZER;
static blk xarr[XSLOTS];
static double deadline;
static atomic_long ops_done_a, truncated;

static void *phase_a(void *arg)
{
    int tid = (int)(uintptr_t)arg;
    tu_rng r;
    tu_seed(&r, 0xA000 + tid);
    blk *t = calloc(SLOTS, sizeof *t);
    if (!t) { tu_report("calloc table"); return NULL; }
    uint64_t ctr = 0;
    long op;
    for (op = 0; op < OPS_A; op++) {
        if ((op & 1023) == 0 && tu_now() > deadline) { truncated++; break; }
        blk *b = &t[tu_next(&r) % SLOTS];
        unsigned k = (unsigned)(tu_next(&r) % 100);
        if (!b->p) {
            fresh(b, &r, tid, &ctr);
        } else if (k < 45) {
            if (verify(b, "free")) free(b->p);
            b->p = NULL;
        } else if (k < 75) {
            /* realloc chain step */
            if (!verify(b, "realloc")) { b->p = NULL; continue; }
            size_t n = rand_size(&r);
            if (b->align == 0 && (tu_next(&r) & 7) == 0) n = b->n + tu_range(&r, 0, 64); /* small grow */
            void *q = realloc(b->p, n);
            if (!q && n) { tu_report("realloc(%p, %zu) failed", b->p, n); b->p = NULL; continue; }
            if (!q) { b->p = NULL; continue; } /* realloc(p, 0) freed it */
            if (n >= 16 && !tu_aligned(q, 16)) tu_report("realloc -> %p not 16-aligned", q);
            if (!tu_check_sparse_prefix(q, b->n, n, b->tag))
                tu_report("realloc %zu -> %zu (%p -> %p) lost contents", b->n, n, b->p, q);
            b->p = q;
            b->n = n;
            b->align = 0;
            b->tag = ((uint64_t)tid << 48) ^ ++ctr;
            tu_fill_sparse(q, n, b->tag);
        } else if (k < 95) {
            /* swap with the shared exchange array */
            blk mine = *b;
            pthread_mutex_lock(&xlock);
            blk *x = &xarr[tu_next(&r) % XSLOTS];
            *b = *x;
            *x = mine;
            pthread_mutex_unlock(&xlock);
            if (b->p && !verify(b, "use after exchange")) b->p = NULL;
        } else {
            if (!verify(b, "free_usable")) { b->p = NULL; continue; }
            /* the whole usable area belongs to us: scribble over the tail */
            size_t u = malloc_usable_size(b->p);
            if (u > b->n && u - b->n <= 65536) memset((char *)b->p + b->n, 0xee, u - b->n);
            free(b->p);
            b->p = NULL;
        }
    }
    ops_done_a += op;
    for (int i = 0; i < SLOTS; i++)
        if (t[i].p) {
            verify(&t[i], "final free");
            free(t[i].p);
        }
    free(t);
    return NULL;
}

static void test_random_ops(void **state)
{
    pthread_t th[NTHREADS];
    deadline = tu_now() + PHASE_BUDGET_S;
    for (int i = 0; i < NTHREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, phase_a, (void *)(uintptr_t)i), 0);
    for (int i = 0; i < NTHREADS; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < XSLOTS; i++)
        if (xarr[i].p) {
            verify(&xarr[i], "final free of exchange");
            free(xarr[i].p);
            xarr[i].p = NULL;
        }
    print_message("phase A: %ld operations%s\n", (long)ops_done_a,
                  truncated ? " (shortened by the safety deadline)" : "");
    if (tu_failures) fail_msg("%ld tu_failures; first: %s", (long)tu_failures, tu_first_failure);
}

/* ---- phase B: producers only allocate, consumers only free --------------- */

enum { PAIRS = NTHREADS / 2, BATCH = 256, QCAP = 16, ROUNDS = 10, PER_ROUND = 100000 };

typedef struct {
    pthread_mutex_t m;
    pthread_cond_t cv;
    blk *q[QCAP];
    int head, count, done;
} queue;

static queue queues[PAIRS];
static pthread_barrier_t round_bar;
static size_t rss_round[ROUNDS + 1];
static int rounds_run;
static atomic_int stop_b;

static void q_push(queue *q, blk *batch)
{
    pthread_mutex_lock(&q->m);
    while (q->count == QCAP) pthread_cond_wait(&q->cv, &q->m);
    q->q[(q->head + q->count) % QCAP] = batch;
    q->count++;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->m);
}

static blk *q_pop(queue *q)
{
    pthread_mutex_lock(&q->m);
    while (q->count == 0 && !q->done) pthread_cond_wait(&q->cv, &q->m);
    blk *b = NULL;
    if (q->count) {
        b = q->q[q->head];
        q->head = (q->head + 1) % QCAP;
        q->count--;
        pthread_cond_broadcast(&q->cv);
    }
    pthread_mutex_unlock(&q->m);
    return b;
}

static void *producer(void *arg)
{
    int id = (int)(uintptr_t)arg;
    tu_rng r;
    tu_seed(&r, 0xB000 + id);
    uint64_t ctr = 0;
    for (int round = 0; round < ROUNDS; round++) {
        int stop = atomic_load(&stop_b);
        for (int made = 0; !stop && made < PER_ROUND; made += BATCH) {
            /* the batch array itself is also freed by the consumer */
            blk *batch = malloc(BATCH * sizeof *batch);
            if (!batch) { tu_report("producer: malloc batch"); break; }
            for (int i = 0; i < BATCH; i++) {
                unsigned k = (unsigned)(tu_next(&r) % 1000);
                size_t n = k < 950 ? tu_range(&r, 8, 512) : k < 998 ? tu_range(&r, 513, 65536)
                                                                    : tu_range(&r, 65537, 1 << 20);
                blk *b = &batch[i];
                b->p = malloc(n);
                if (!b->p) { tu_report("producer: malloc(%zu) failed", n); b->n = 0; continue; }
                b->n = n;
                b->align = 0;
                b->tag = ((uint64_t)(id + 100) << 48) ^ ++ctr;
                /* header words + tail; the full pattern for small blocks */
                if (n <= 512) tu_fill(b->p, n, b->tag);
                else { tu_fill_range(b->p, 0, 64, b->tag); tu_fill_range(b->p, n - 64, n, b->tag); }
            }
            q_push(&queues[id], batch);
        }
        /* end of round: wait for the consumers to drain, then sample RSS */
        q_push(&queues[id], NULL);
        pthread_barrier_wait(&round_bar);
        if (id == 0) {
            rss_round[round] = tu_rss();
            rounds_run = round + 1;
            /* at least 3 rounds, so that growth can be seen */
            if (round >= 2 && round + 1 < ROUNDS && tu_now() > deadline) { atomic_store(&stop_b, 1); truncated++; }
        }
        pthread_barrier_wait(&round_bar);
        if (atomic_load(&stop_b)) break;
    }
    return NULL;
}

static void *consumer(void *arg)
{
    int id = (int)(uintptr_t)arg;
    for (;;) {
        blk *batch = q_pop(&queues[id]);
        if (!batch) {
            /* round marker: everything of this round is freed */
            pthread_barrier_wait(&round_bar);
            pthread_barrier_wait(&round_bar);
            if (atomic_load(&stop_b) || rounds_run == ROUNDS) return NULL;
            continue;
        }
        for (int i = 0; i < BATCH; i++) {
            blk *b = &batch[i];
            if (!b->p) continue;
            int ok = b->n <= 512 ? tu_check(b->p, b->n, b->tag)
                                 : tu_check_range(b->p, 0, 64, b->tag) == (size_t)-1 &&
                                       tu_check_range(b->p, b->n - 64, b->n, b->tag) == (size_t)-1;
            if (!ok) tu_report("cross-thread block %p (%zu bytes) corrupted", b->p, b->n);
            free(b->p);
        }
        free(batch);
    }
}

static void test_producer_consumer(void **state)
{
    pthread_t p[PAIRS], c[PAIRS];
    for (int i = 0; i < PAIRS; i++) {
        pthread_mutex_init(&queues[i].m, NULL);
        pthread_cond_init(&queues[i].cv, NULL);
    }
    assert_int_equal(pthread_barrier_init(&round_bar, NULL, 2 * PAIRS), 0);
    deadline = tu_now() + PHASE_BUDGET_S;
    truncated = 0;
    for (int i = 0; i < PAIRS; i++) {
        assert_int_equal(pthread_create(&c[i], NULL, consumer, (void *)(uintptr_t)i), 0);
        assert_int_equal(pthread_create(&p[i], NULL, producer, (void *)(uintptr_t)i), 0);
    }
    for (int i = 0; i < PAIRS; i++) pthread_join(p[i], NULL);
    for (int i = 0; i < PAIRS; i++) pthread_join(c[i], NULL);
    /* each round allocates ~PAIRS*PER_ROUND blocks of ~2 KiB on average */
    print_message("phase B: %d rounds%s; RSS per round (MiB):", rounds_run,
                  truncated ? " (shortened by the safety deadline)" : "");
    for (int i = 0; i < rounds_run; i++) print_message(" %zu", rss_round[i] >> 20);
    print_message("\n");
    if (tu_failures) fail_msg("%ld tu_failures; first: %s", (long)tu_failures, tu_first_failure);
    assert_true(rounds_run >= 3);
    size_t base = rss_round[0], last = rss_round[rounds_run - 1];
    if (last > base + 64 * TU_MiB)
        fail_msg("RSS grew from %zu MiB after round 1 to %zu MiB after round %d: memory freed by other "
                 "threads is not reused", base >> 20, last >> 20, rounds_run);
}

/* ---- phase C: cache reclaims racing the owners ----------------------------- */

enum { CHURNERS = 6, CSLOTS = 64 };
static atomic_int stop_c;
static atomic_long ops_done_c, trims_c;

static void *churner(void *arg)
{
    int tid = (int)(uintptr_t)arg;
    tu_rng r;
    tu_seed(&r, 0xC000 + tid);
    blk t[CSLOTS] = {{0}};
    uint64_t ctr = 0;
    long op = 0;
    while (!atomic_load_explicit(&stop_c, memory_order_relaxed)) {
        for (int k = 0; k < 256; k++, op++) {
            blk *b = &t[tu_next(&r) % CSLOTS];
            if (b->p) {
                if (!tu_check(b->p, b->n, b->tag)) tu_report("phase C: block %p (%zu bytes) clobbered", b->p, b->n);
                free(b->p);
                b->p = NULL;
            } else {
                b->n = tu_range(&r, 1, 1024);
                b->p = malloc(b->n);
                if (!b->p) { tu_report("phase C: malloc(%zu) failed", b->n); continue; }
                b->tag = ((uint64_t)(tid + 200) << 48) ^ ++ctr;
                tu_fill(b->p, b->n, b->tag);
            }
        }
        if ((tu_next(&r) & 7) == 0) usleep((useconds_t)tu_range(&r, 1, 300));   /* outside any call */
    }
    for (int i = 0; i < CSLOTS; i++)
        if (t[i].p) {
            if (!tu_check(t[i].p, t[i].n, t[i].tag)) tu_report("phase C: block %p clobbered at the end", t[i].p);
            free(t[i].p);
        }
    ops_done_c += op;
    return NULL;
}

static void *trimmer(void *arg)
{
    (void)arg;
    while (!atomic_load_explicit(&stop_c, memory_order_relaxed)) {
        malloc_trim(0);
        trims_c++;
        usleep(200);
    }
    return NULL;
}

static void test_reclaim_races_owners(void **state)
{
    pthread_t c[CHURNERS], tr;
    for (int i = 0; i < CHURNERS; i++)
        assert_int_equal(pthread_create(&c[i], NULL, churner, (void *)(uintptr_t)i), 0);
    assert_int_equal(pthread_create(&tr, NULL, trimmer, NULL), 0);
    usleep((useconds_t)(PHASE_BUDGET_S * 1e6));
    atomic_store(&stop_c, 1);
    for (int i = 0; i < CHURNERS; i++) pthread_join(c[i], NULL);
    pthread_join(tr, NULL);
    uint64_t reclaimed = 0;
    size_t len = sizeof reclaimed;
    int rc = xalloc_ctl("stats.tcache_reclaimed", &reclaimed, &len, NULL, 0);
    print_message("phase C: %ld operations, %ld malloc_trim calls, %llu objects reclaimed from idle caches\n",
                  (long)ops_done_c, (long)trims_c, (unsigned long long)reclaimed);
    if (tu_failures) fail_msg("%ld tu_failures; first: %s", (long)tu_failures, tu_first_failure);
    assert_int_equal(rc, 0);
    long cmds = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    if (cmds > 0 && (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED)) assert_true(reclaimed > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_ops),
        cmocka_unit_test(test_producer_consumer),
        cmocka_unit_test(test_reclaim_races_owners),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
