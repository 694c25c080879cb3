/* api_differential: long random sequences of every malloc-API function,
 * each result checked against a model of what must hold (test/ops.h).
 *
 * (a) one thread, several seeds, ~2 million ops in all;
 * (b) 8 threads, each running its own model, handing live blocks (with
 *     their model record) to each other through a shared exchange array:
 *     the receiver verifies the contents, then frees, reallocs or keeps it.
 * (c), (d) the same with large-heavy sizes (ops_size_large: mostly large
 *     and huge blocks, realloc growth in 64-byte steps), 1/4 of the ops;
 * (e) (c) and (d) again, 1/16 of the ops, in a child under each of
 *     XALLOC_CONF=secure:true and junk:true (xalloc only);
 * (f) (a) and (b), 1/4 of the ops, in a child under mesh:true while a
 *     thread meshes without pause (xalloc only).
 *
 * Built against xalloc and against glibc like every api_* test; the glibc
 * run shows that the model asks nothing glibc does not do.
 *
 *   XALLOC_DIFF_OPS=N   ops of (a), and of all threads of (b) together
 *                       (default 2000000 and 1600000); no time limit then
 *   XALLOC_DIFF_SEED=S  (a) runs this seed only (replays a reported failure)
 *
 * Without XALLOC_DIFF_OPS each part stops early, reported but not failed,
 * at a safety deadline that only a slow machine or a debug build reaches. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"

#define SEEDS 8
#define NTHREADS 8
#define DEADLINE_S 15.0

static unsigned long env_ul(const char *name, unsigned long dflt)
{
    const char *v = getenv(name);
    return v && *v ? strtoul(v, NULL, 0) : dflt;
}

static double deadline_from(double t0)
{
    return getenv("XALLOC_DIFF_OPS") ? 0 : t0 + DEADLINE_S;
}

static void print_summary(const char *what, const ops_stats *st, size_t peak, double secs, int truncated)
{
    print_message("differential, %s: %lu ops (%lu allocations, %lu reallocs, %lu frees, %lu error cases, "
                  "%lu blocks verified), %lu cross-thread handoffs, %.1f MiB requested, peak live %.1f MiB, "
                  "%.2f s%s\n",
                  what, st->ops, st->allocs, st->reallocs, st->frees, st->errors, st->verified, st->handoffs,
                  (double)st->bytes / TU_MiB, (double)peak / TU_MiB, secs,
                  truncated ? " (shortened by the safety deadline)" : "");
}

static void run_single_thread(int large_heavy)
{
    /* memcheck (make check-memcheck) runs the .glibc build ~20x slower */
    unsigned long total = env_ul("XALLOC_DIFF_OPS", tu_valgrind() ? 100000 : 2000000);
    if (large_heavy) total /= 4;
    ops_report_crashes();
    const char *one = getenv("XALLOC_DIFF_SEED");
    unsigned nseeds = one ? 1 : SEEDS;
    ops_model *m = malloc(sizeof *m);
    assert_non_null(m);
    ops_stats st = { 0 };
    size_t peak = 0;
    double t0 = tu_now(), deadline = deadline_from(t0);
    int truncated = 0;
    unsigned i;
    for (i = 0; i < nseeds && !truncated; i++) {
        ops_init_seed(m, one ? strtoull(one, NULL, 0) : 1 + i, 0);
        m->large_heavy = large_heavy;
        m->deadline = deadline;
        ops_run(m, total / nseeds);
        ops_free_all(m);
        truncated = m->truncated;
        ops_stats_add(&st, &m->st);
        if (atomic_load(&m->own_budget.peak) > peak) peak = atomic_load(&m->own_budget.peak);
        if (atomic_load(&m->own_budget.live) != 0) fail_msg("budget accounting leaked");
    }
    free(m);
    char what[64];
    snprintf(what, sizeof what, "1 thread, %u seed%s%s", i, i > 1 ? "s" : "", large_heavy ? ", large-heavy" : "");
    print_summary(what, &st, peak, tu_now() - t0, truncated);
}

static void test_single_thread(void **state) { (void)state; run_single_thread(0); }
static void test_single_thread_large(void **state) { (void)state; run_single_thread(1); }

static ops_exchange xch = { .lock = PTHREAD_MUTEX_INITIALIZER };
static ops_budget shared_budget = { .max = (size_t)128 << 20 };

typedef struct {
    pthread_t th;
    ops_model *m;
    unsigned long nops;
} worker;

static void *run_worker(void *arg)
{
    worker *w = arg;
    ops_run(w->m, w->nops);
    ops_free_all(w->m);
    return NULL;
}

static void run_threads(int large_heavy)
{
    unsigned long total = env_ul("XALLOC_DIFF_OPS", tu_valgrind() ? 40000 : 1600000);
    if (large_heavy) total /= 4;
    /* cmocka's handler would longjmp from a worker thread into the main
     * thread's test and exit(-1) without a word */
    ops_report_crashes();
    worker w[NTHREADS];
    double t0 = tu_now(), deadline = deadline_from(t0);
    for (int i = 0; i < NTHREADS; i++) {
        w[i].m = malloc(sizeof *w[i].m);
        assert_non_null(w[i].m);
        ops_init_seed(w[i].m, (large_heavy ? 0x2000 : 0x1000) + i, i);
        w[i].m->large_heavy = large_heavy;
        w[i].m->budget = &shared_budget;
        w[i].m->xch = &xch;
        w[i].m->deadline = deadline;
        w[i].nops = total / NTHREADS;
    }
    for (int i = 0; i < NTHREADS; i++)
        assert_int_equal(pthread_create(&w[i].th, NULL, run_worker, &w[i]), 0);
    for (int i = 0; i < NTHREADS; i++) pthread_join(w[i].th, NULL);

    /* what is left in the exchange: verified and freed by this thread */
    ops_model *last = malloc(sizeof *last);
    assert_non_null(last);
    ops_init_seed(last, 0, NTHREADS);
    last->budget = &shared_budget;
    for (int i = 0; i < OPS_XSLOTS; i++) {
        ops_blk *b = &xch.slot[i];
        if (!b->p) continue;
        if (b->tid != NTHREADS) last->st.handoffs++;
        ops_free_blk(last, b, OP_FREE, "the final free of the exchange");
    }
    ops_stats st = last->st;
    int truncated = 0;
    for (int i = 0; i < NTHREADS; i++) {
        ops_stats_add(&st, &w[i].m->st);
        truncated |= w[i].m->truncated;
        free(w[i].m);
    }
    free(last);
    if (atomic_load(&shared_budget.live) != 0) fail_msg("budget accounting leaked");
    char what[64];
    snprintf(what, sizeof what, "%d threads%s", NTHREADS, large_heavy ? ", large-heavy" : "");
    print_summary(what, &st, atomic_load(&shared_budget.peak), tu_now() - t0, truncated);
}

static void test_threads(void **state) { (void)state; run_threads(0); }
static void test_threads_large(void **state) { (void)state; run_threads(1); }

/* (e): this program again with `large` as its argument runs (c) and (d). */
static void test_large_modes(void **state)
{
    (void)state;
#ifdef XA_TEST_GLIBC
    skip();
#else
    if (tu_valgrind()) skip();
    static const char *const confs[] = { "secure:true", "junk:true" };
    for (unsigned i = 0; i < sizeof confs / sizeof confs[0]; i++) {
        print_message("large-heavy under %s:\n", confs[i]);
        assert_int_equal(tu_run_self("large", confs[i], 120), 0);
    }
#endif
}

#ifndef XA_TEST_GLIBC
/* (f): (a) and (b) with meshing on and a thread that meshes without pause
 * (xalloc_ctl "mesh") while the models run. */
static atomic_int mesher_stop;
static void *mesher(void *arg)
{
    (void)arg;
    while (!atomic_load(&mesher_stop)) xalloc_ctl("mesh", NULL, NULL, NULL, 0);
    return NULL;
}

static int run_meshing(void)
{
    if (!getenv("XALLOC_DIFF_OPS")) setenv("XALLOC_DIFF_OPS", "500000", 1);
    pthread_t t;
    pthread_create(&t, NULL, mesher, NULL);
    const struct CMUnitTest small[] = {
        cmocka_unit_test(test_single_thread),
        cmocka_unit_test(test_threads),
    };
    int rc = cmocka_run_group_tests(small, NULL, NULL) ? 1 : 0;
    atomic_store(&mesher_stop, 1);
    pthread_join(t, NULL);
    uint64_t meshes = 0;
    size_t len = sizeof meshes;
    xalloc_ctl("stats.mesh_meshes", &meshes, &len, NULL, 0);
    print_message("meshes: %llu\n", (unsigned long long)meshes);
    return rc;
}
#endif

static void test_meshing(void **state)
{
    (void)state;
#ifdef XA_TEST_GLIBC
    skip();
#else
    if (tu_valgrind()) skip();
    assert_int_equal(tu_run_self("mesh", "mesh:true,mesh_period_ms:1", 120), 0);
#endif
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "large") == 0) {
        /* Secure mode gives every huge block its own fresh mapping, so each
         * of the model's writes faults its pages in (about 0.9 ms per op
         * here, 30 times junk mode's cost): a quarter of the ops keeps the
         * run well inside its timeout on a loaded machine. */
        const char *conf = getenv("XALLOC_CONF");
        int secure = conf && strstr(conf, "secure:true");
        if (!getenv("XALLOC_DIFF_OPS")) setenv("XALLOC_DIFF_OPS", secure ? "125000" : "500000", 1);
        const struct CMUnitTest large[] = {
            cmocka_unit_test(test_single_thread_large),
            cmocka_unit_test(test_threads_large),
        };
        return cmocka_run_group_tests(large, NULL, NULL) ? 1 : 0;
    }
#ifndef XA_TEST_GLIBC
    if (argc > 1 && strcmp(argv[1], "mesh") == 0) return run_meshing();
#endif
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_thread),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_single_thread_large),
        cmocka_unit_test(test_threads_large),
        cmocka_unit_test(test_large_modes),
        cmocka_unit_test(test_meshing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
