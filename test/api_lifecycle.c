/* api_lifecycle: process and thread life-cycle events around the allocator.
 *
 *  - fork() from a multithreaded process whose threads are allocating at
 *    that moment; malloc/free in the child (also of blocks allocated before
 *    the fork, also from a new thread and a grandchild) and in
 *    pthread_atfork handlers;
 *  - allocation from thread-exit destructors: pthread_key destructors that
 *    run after the thread's other keys (re-armed for later destructor
 *    rounds), __thread data freed from a key destructor, and C++
 *    thread_local-style destructors (__cxa_thread_atexit_impl); threads
 *    whose first allocation happens in a destructor;
 *  - 20000 short threads that allocate/free (also across threads): RSS must
 *    stay bounded (final < initial + 64 MiB).
 * dlopen/dlclose is covered by test/link.sh.  All checks are shared
 * semantics: they pass against glibc too.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

/* Wait for pid with a hang guard (a deadlocked child is killed and reported
 * as a failure; this is not a timing assertion).  Returns the wait status,
 * or -1 on timeout. */
static int wait_child(pid_t pid, int timeout_s)
{
    double deadline = tu_now() + timeout_s;
    int st;
    for (;;) {
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid) return st;
        if (w < 0 && errno != EINTR) return -2;
        if (tu_now() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return -1;
        }
        usleep(500);
    }
}

static void check_status(const char *what, int st, int i)
{
    if (st == -1) fail_msg("%s #%d: child hung (deadlock?) and was killed", what, i);
    if (st == -2) fail_msg("%s #%d: waitpid failed", what, i);
    if (WIFSIGNALED(st)) fail_msg("%s #%d: child killed by signal %d (%s)", what, i, WTERMSIG(st), strsignal(WTERMSIG(st)));
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) fail_msg("%s #%d: child exited with %d", what, i, WEXITSTATUS(st));
}

/* ---- fork from a multithreaded process ----------------------------------- */

enum { NWORK = 4, XCH = 64, PREFORK = 512 };
static atomic_int stop_workers;
static pthread_mutex_t xch_lock = PTHREAD_MUTEX_INITIALIZER;
static struct { void *p; size_t n; uint64_t tag; } xch[XCH];
static void *prefork[PREFORK];
static size_t prefork_n[PREFORK];

static atomic_long atfork_prepare_calls, atfork_parent_calls;
static void *atfork_block; /* allocated in prepare, freed in parent/child */

static void atfork_prepare(void)
{
    void *p = malloc(333);
    if (!p) abort();
    memset(p, 1, 333);
    free(p);
    atfork_block = malloc(5000);
    if (atfork_block) tu_fill(atfork_block, 5000, 5000);
    atfork_prepare_calls++;
}

static void atfork_parent(void)
{
    void *p = calloc(1, 1 << 20);
    if (!p || !tu_is_zero(p, 1 << 20)) abort();
    free(p);
    if (!atfork_block || !tu_check(atfork_block, 5000, 5000)) abort();
    free(atfork_block);
    atfork_block = NULL;
    atfork_parent_calls++;
}

static void atfork_child(void)
{
    /* runs in the child right after fork: the allocator must be usable */
    void *p = malloc(777);
    if (!p) _exit(81);
    memset(p, 2, 777);
    void *q = realloc(p, 100000);
    if (!q) _exit(82);
    free(q);
    if (!atfork_block || !tu_check(atfork_block, 5000, 5000)) _exit(83);
    free(atfork_block);
    atfork_block = NULL;
}

static void *fork_worker(void *arg)
{
    tu_rng r;
    tu_seed(&r, (uintptr_t)arg);
    void *mine[32] = { 0 };
    size_t mn[32] = { 0 };
    unsigned long ops = 0;
    while (!atomic_load_explicit(&stop_workers, memory_order_relaxed)) {
        /* leave some CPU to the forked children (2 cores) */
        if ((++ops & 255) == 0) usleep(50);
        int i = (int)(tu_next(&r) % 32);
        if (mine[i]) {
            if (!tu_check(mine[i], mn[i] < 256 ? mn[i] : 256, (uintptr_t)mine[i])) abort();
            free(mine[i]);
            mine[i] = NULL;
        } else {
            unsigned k = (unsigned)(tu_next(&r) % 1000);
            mn[i] = k < 900 ? tu_range(&r, 1, 2048) : k < 995 ? tu_range(&r, 4096, 300000) : tu_range(&r, 1 << 20, 8 << 20);
            mine[i] = malloc(mn[i]);
            if (!mine[i]) abort();
            tu_fill(mine[i], mn[i] < 256 ? mn[i] : 256, (uintptr_t)mine[i]);
        }
        /* bursts of one size: thread caches overflow and flush to the
         * shared heap, so a fork often lands in the middle of a flush */
        if ((ops & 63) == 0) {
            void *burst[300];
            size_t bn = tu_range(&r, 1, 1024);
            int cnt = (int)tu_range(&r, 50, 300);
            for (int b = 0; b < cnt; b++)
                if (!(burst[b] = malloc(bn))) abort();
            for (int b = 0; b < cnt; b++) free(burst[b]);
        }
        /* cross-thread traffic */
        if ((tu_next(&r) & 3) == 0) {
            pthread_mutex_lock(&xch_lock);
            int j = (int)(tu_next(&r) % XCH);
            void *old = xch[j].p;
            size_t on = xch[j].n;
            uint64_t ot = xch[j].tag;
            size_t n = tu_range(&r, 1, 4000);
            xch[j].p = malloc(n);
            if (!xch[j].p) abort();
            xch[j].n = n < 64 ? n : 64; /* the checked prefix */
            xch[j].tag = tu_next(&r);
            tu_fill(xch[j].p, xch[j].n, xch[j].tag);
            pthread_mutex_unlock(&xch_lock);
            if (old) {
                if (!tu_check(old, on, ot)) abort();
                free(old);
            }
        }
    }
    for (int i = 0; i < 32; i++) free(mine[i]);
    return NULL;
}

static void *child_thread_fn(void *arg)
{
    for (int i = 0; i < 500; i++) {
        size_t n = (size_t)(i * 37) % 5000 + 1;
        char *p = malloc(n);
        if (!p) return (void *)1;
        tu_fill(p, n, i);
        if (!tu_check(p, n, i)) return (void *)2;
        free(p);
    }
    return NULL;
}

static int fork_child_body(int depth)
{
    /* blocks allocated before the fork are valid here and can be freed
     * (the child frees the even ones, a grandchild the odd ones) */
    for (int i = depth; i < PREFORK; i += 2) {
        TU_CHK(tu_check(prefork[i], prefork_n[i], 100 + i));
        free(prefork[i]);
    }
    /* the exchange slots were being modified by threads that no longer
     * exist; don't touch them */
    void *v[300];
    for (int i = 0; i < 300; i++) {
        size_t n = i < 290 ? (size_t)(i * 13 + 1) : (size_t)(i - 289) << 20;
        v[i] = malloc(n);
        TU_CHK(v[i] != NULL);
        tu_fill(v[i], n < 4096 ? n : 4096, i);
    }
    for (int i = 0; i < 300; i++) {
        size_t n = i < 290 ? (size_t)(i * 13 + 1) : (size_t)(i - 289) << 20;
        TU_CHK(tu_check(v[i], n < 4096 ? n : 4096, i));
        free(v[i]);
    }
    pthread_t t;
    void *tr = (void *)-1;
    TU_CHK(pthread_create(&t, NULL, child_thread_fn, NULL) == 0);
    TU_CHK(pthread_join(t, &tr) == 0);
    TU_CHK(tr == NULL);
    if (depth == 0) {
        pid_t g = fork();
        TU_CHK(g >= 0);
        if (g == 0) _exit(fork_child_body(1));
        int st = wait_child(g, 30);
        TU_CHK(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    return 0;
}

static void test_fork_multithreaded(void **state)
{
    static int registered;
    if (!registered) {
        assert_int_equal(pthread_atfork(atfork_prepare, atfork_parent, atfork_child), 0);
        registered = 1;
    }
    for (int i = 0; i < PREFORK; i++) {
        prefork_n[i] = (size_t)(i % 64) * 97 + 1 + (i % 100 == 0 ? (1 << 20) : 0);
        prefork[i] = malloc(prefork_n[i]);
        assert_non_null(prefork[i]);
        tu_fill(prefork[i], prefork_n[i], 100 + i);
    }
    pthread_t th[NWORK];
    atomic_store(&stop_workers, 0);
    for (int i = 0; i < NWORK; i++)
        assert_int_equal(pthread_create(&th[i], NULL, fork_worker, (void *)(uintptr_t)(i + 1)), 0);
    long prep0 = atfork_prepare_calls;
    const int FORKS = tu_valgrind() ? 10 : 80;
    for (int i = 0; i < FORKS; i++) {
        /* some allocation in the forking thread too */
        void *p = malloc((size_t)i * 100 + 1);
        assert_non_null(p);
        fflush(NULL);
        pid_t pid = fork();
        if (pid < 0) fail_msg("fork failed: %s", strerror(errno));
        if (pid == 0) {
            tu_default_signals();
            free(p);
            _exit(fork_child_body(0));
        }
        free(p);
        check_status("fork child", wait_child(pid, 30), i);
    }
    atomic_store(&stop_workers, 1);
    for (int i = 0; i < NWORK; i++) pthread_join(th[i], NULL);
    assert_int_equal(atfork_prepare_calls - prep0, FORKS);
    for (int i = 0; i < XCH; i++) {
        if (xch[i].p && !tu_check(xch[i].p, xch[i].n, xch[i].tag)) fail_msg("exchange block %d corrupted", i);
        free(xch[i].p);
        xch[i].p = NULL;
    }
    for (int i = 0; i < PREFORK; i++) {
        if (!tu_check(prefork[i], prefork_n[i], 100 + i)) fail_msg("pre-fork block %d corrupted in parent", i);
        free(prefork[i]);
    }
}

/* A fresh process that registers its atfork handlers before its first
 * malloc, and allocates in them (fine with glibc, whose malloc locks itself
 * inside fork() after the prepare handlers ran).  An allocator that
 * registers its own fork handlers lazily at its first allocation has them
 * run *before* the program's prepare handler, which then deadlocks on the
 * allocator's locks.  Run by re-executing this binary. */
#define ATFORK_FIRST_ARG "--atfork-before-first-malloc"

static void af1_prepare(void)
{
    static const size_t sizes[] = { 24, 5000, 200000, 4 << 20 };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        void *p = malloc(sizes[i]);
        if (!p) abort();
        memset(p, 1, sizes[i] < 64 ? sizes[i] : 64);
        free(p);
    }
}
static void af1_parent(void) { free(malloc(3000)); }
static void af1_child(void) { free(malloc(3000)); }

static int atfork_first_main(void)
{
    /* no allocation before this point */
    if (pthread_atfork(af1_prepare, af1_parent, af1_child) != 0) return 10;
    pthread_t th[2];
    atomic_store(&stop_workers, 0);
    for (int i = 0; i < 2; i++)
        if (pthread_create(&th[i], NULL, fork_worker, (void *)(uintptr_t)(i + 20)) != 0) return 11;
    for (int i = 0; i < 20; i++) {
        pid_t pid = fork();
        if (pid < 0) return 12;
        if (pid == 0) {
            void *p = malloc(100000);
            _exit(p ? 0 : 1);
        }
        int st = wait_child(pid, 30);
        if (st < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) return 13;
    }
    atomic_store(&stop_workers, 1);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < XCH; i++) free(xch[i].p);
    return 0;
}

static const char *self_exe = "/proc/self/exe";

static void test_atfork_handlers_before_first_malloc(void **state)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) fail_msg("fork: %s", strerror(errno));
    if (pid == 0) {
        execl(self_exe, "api_lifecycle", ATFORK_FIRST_ARG, (char *)NULL);
        _exit(127);
    }
    int st = wait_child(pid, 20);
    if (st == -1) fail_msg("process with atfork handlers registered before its first malloc hung in fork (deadlock)");
    check_status("re-executed atfork test", st, 0);
}

/* fork from a thread other than the main one, while others allocate */
static void *forking_thread(void *arg)
{
    for (int i = 0; i < 20; i++) {
        void *keep = malloc(1000 + i);
        if (!keep) return (void *)1;
        pid_t pid = fork();
        if (pid < 0) return (void *)2;
        if (pid == 0) {
            free(keep);
            _exit(fork_child_body(1));
        }
        free(keep);
        int st = wait_child(pid, 30);
        if (st < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) return (void *)3;
    }
    return NULL;
}

static void test_fork_from_secondary_thread(void **state)
{
    for (int i = 0; i < PREFORK; i++) {
        prefork_n[i] = (size_t)(i % 32) * 31 + 1;
        prefork[i] = malloc(prefork_n[i]);
        assert_non_null(prefork[i]);
        tu_fill(prefork[i], prefork_n[i], 100 + i);
    }
    pthread_t th[NWORK], f;
    atomic_store(&stop_workers, 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, fork_worker, (void *)(uintptr_t)(i + 10)), 0);
    void *res = (void *)-1;
    assert_int_equal(pthread_create(&f, NULL, forking_thread, NULL), 0);
    pthread_join(f, &res);
    atomic_store(&stop_workers, 1);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < XCH; i++) { free(xch[i].p); xch[i].p = NULL; }
    for (int i = 0; i < PREFORK; i++) free(prefork[i]);
    if (res != NULL) fail_msg("forking thread failed at step %ld", (long)(intptr_t)res);
}

/* ---- thread-exit destructors --------------------------------------------- */

extern int __cxa_thread_atexit_impl(void (*func)(void *), void *obj, void *dso_symbol);
extern void *__dso_handle;

enum { NKEYS = 4, DTOR_ROUNDS = 3 };
static pthread_key_t keys[NKEYS];
static atomic_long dtor_calls[NKEYS], cxa_calls, tls_freed, dtor_errors;
static __thread char *tls_buf;     /* freed by key 1's destructor */
static __thread int tls_id;
static __thread int rearm_round;

/* blocks allocated in the last destructor round, checked and freed by main */
#define MAXT 4096
static void *late_blocks[MAXT];

static void churn(int seed)
{
    void *v[16];
    for (int i = 0; i < 16; i++) {
        size_t n = (size_t)(seed * 31 + i * 257) % 9000 + 1;
        if (i == 15) n = 200000;
        v[i] = malloc(n);
        if (!v[i]) { dtor_errors++; return; }
        tu_fill(v[i], n < 512 ? n : 512, seed + i);
    }
    for (int i = 0; i < 16; i++) {
        size_t n = (size_t)(seed * 31 + i * 257) % 9000 + 1;
        if (i == 15) n = 200000;
        if (!tu_check(v[i], n < 512 ? n : 512, seed + i)) dtor_errors++;
        free(v[i]);
    }
}

/* key 0: re-arms itself so it runs in several destructor rounds, i.e. also
 * after all the other keys (and the allocator's own, if it has one) ran */
static void dtor_rearm(void *v)
{
    dtor_calls[0]++;
    churn(tls_id * 3 + rearm_round);
    if (++rearm_round < DTOR_ROUNDS) {
        pthread_setspecific(keys[0], v);
    } else {
        int id = tls_id;
        char *b = malloc(100 + (size_t)id);
        if (!b) { dtor_errors++; return; }
        tu_fill(b, 100 + (size_t)id, 9000 + id);
        late_blocks[id] = b;
    }
}

/* key 1: frees the thread's __thread buffer */
static void dtor_tls(void *v)
{
    dtor_calls[1]++;
    if (tls_buf) {
        if (!tu_check(tls_buf, 3000, 7000 + tls_id)) dtor_errors++;
        free(tls_buf);
        tls_buf = NULL;
        tls_freed++;
    }
    void *p = calloc(10, 100);
    if (!p || !tu_is_zero(p, 1000)) dtor_errors++;
    free(p);
}

/* keys 2, 3: plain malloc/free */
static void dtor_plain(void *v)
{
    dtor_calls[(uintptr_t)v]++;
    char *p = malloc(64);
    if (!p) { dtor_errors++; return; }
    p = realloc(p, 64000);
    if (!p) { dtor_errors++; return; }
    free(p);
}

/* C++ thread_local destructor (runs before the key destructors) */
static void cxa_dtor(void *obj)
{
    cxa_calls++;
    char *o = obj;
    if (!tu_check(o, 200, 11000 + tls_id)) dtor_errors++;
    free(o);
    churn(tls_id + 1000);
}

struct tls_arg { int id; int alloc_in_body; };

static void *tls_thread(void *arg)
{
    struct tls_arg *a = arg;
    tls_id = a->id;
    rearm_round = 0;
    if (a->alloc_in_body) {
        tls_buf = malloc(3000);
        if (!tls_buf) { dtor_errors++; return NULL; }
        tu_fill(tls_buf, 3000, 7000 + tls_id);
        char *o = malloc(200);
        if (!o) { dtor_errors++; return NULL; }
        tu_fill(o, 200, 11000 + tls_id);
        if (__cxa_thread_atexit_impl(cxa_dtor, o, &__dso_handle) != 0) dtor_errors++;
        churn(tls_id);
    }
    /* else: the thread's very first allocation happens in a destructor */
    for (int k = 0; k < NKEYS; k++) pthread_setspecific(keys[k], (void *)(uintptr_t)(k == 0 ? 1 : k));
    return NULL;
}

static void run_tls_threads(int first, int count, int alloc_in_body)
{
    static struct tls_arg args[MAXT];
    enum { CONC = 8 };
    pthread_t t[CONC];
    for (int base = first; base < first + count; base += CONC) {
        int n = first + count - base < CONC ? first + count - base : CONC;
        for (int j = 0; j < n; j++) {
            args[base + j].id = base + j;
            args[base + j].alloc_in_body = alloc_in_body;
            if (pthread_create(&t[j], NULL, tls_thread, &args[base + j]) != 0) fail_msg("pthread_create");
        }
        for (int j = 0; j < n; j++) pthread_join(t[j], NULL);
    }
}

static void test_thread_exit_destructors(void **state)
{
    for (int k = 0; k < NKEYS; k++) {
        void (*d)(void *) = k == 0 ? dtor_rearm : k == 1 ? dtor_tls : dtor_plain;
        assert_int_equal(pthread_key_create(&keys[k], d), 0);
    }
    /* first a small batch to warm up, then measure; fewer threads under
     * valgrind, which creates threads very slowly */
    const int vg = tu_valgrind();
    const int body_allocs = vg ? 240 : 2400, first_in_dtor = vg ? 150 : 1500;
    run_tls_threads(0, 96, 1);
    run_tls_threads(96, 32, 0);
    size_t rss0 = tu_rss();
    run_tls_threads(128, body_allocs, 1);
    run_tls_threads(128 + body_allocs, first_in_dtor, 0);
    const int total = 128 + body_allocs + first_in_dtor;
    size_t rss1 = tu_rss();
    print_message("RSS before %zu MiB, after %d threads with allocating destructors %zu MiB\n", rss0 >> 20,
                  total - 128, rss1 >> 20);
    assert_int_equal(dtor_errors, 0);
    assert_int_equal(dtor_calls[0], (long)total * DTOR_ROUNDS);
    assert_int_equal(dtor_calls[1], total);
    assert_int_equal(dtor_calls[2], total);
    assert_int_equal(dtor_calls[3], total);
    assert_int_equal(cxa_calls, 96 + body_allocs);
    assert_int_equal(tls_freed, 96 + body_allocs);
    for (int id = 0; id < total; id++) {
        if (!late_blocks[id]) fail_msg("thread %d: no block from its last destructor round", id);
        if (!tu_check(late_blocks[id], 100 + (size_t)id, 9000 + id))
            fail_msg("thread %d: block allocated in destructor corrupted", id);
        free(late_blocks[id]);
        late_blocks[id] = NULL;
    }
    /* each destructor allocated ~270 KiB in total; leaking per-thread state
     * would show up here */
    if (!vg && rss1 > rss0 + 64 * TU_MiB) /* memcheck keeps freed memory */
        fail_msg("RSS grew from %zu to %zu MiB over %d threads", rss0 >> 20, rss1 >> 20, total - 128);
    for (int k = 0; k < NKEYS; k++) pthread_key_delete(keys[k]);
}

/* ---- many short threads -------------------------------------------------- */

static pthread_mutex_t hand_lock = PTHREAD_MUTEX_INITIALIZER;
static struct { void *p; size_t n; uint64_t tag; } hand[8];
static atomic_long short_errors;

static void *short_thread(void *arg)
{
    uintptr_t id = (uintptr_t)arg;
    tu_rng r;
    tu_seed(&r, id);
    void *v[24];
    size_t n[24];
    for (int i = 0; i < 24; i++) {
        n[i] = i == 23 ? 256 * 1024 : tu_range(&r, 1, i < 20 ? 1024 : 65536);
        v[i] = malloc(n[i]);
        if (!v[i]) { short_errors++; return NULL; }
        tu_fill(v[i], n[i] < 256 ? n[i] : 256, id * 100 + i);
    }
    for (int i = 0; i < 24; i++) {
        if (!tu_check(v[i], n[i] < 256 ? n[i] : 256, id * 100 + i)) short_errors++;
        if (i != 5) free(v[i]);
    }
    /* hand block 5 to a later thread, free the one we find there */
    size_t slot = id % 8;
    pthread_mutex_lock(&hand_lock);
    void *old = hand[slot].p;
    size_t on = hand[slot].n;
    uint64_t ot = hand[slot].tag;
    hand[slot].p = v[5];
    hand[slot].n = n[5] < 256 ? n[5] : 256;
    hand[slot].tag = id * 100 + 5;
    pthread_mutex_unlock(&hand_lock);
    if (old) {
        if (!tu_check(old, on, ot)) short_errors++;
        free(old);
    }
    return NULL;
}

static void test_many_short_threads(void **state)
{
    enum { CONC = 8, WARM = 400 };
    const int TOTAL = tu_valgrind() ? 1600 : 20000; /* valgrind: slow thread creation */
    size_t rss_initial = tu_rss(), vm_initial = tu_vmsize(), rss_warm = 0;
    pthread_t t[CONC];
    for (int base = 0; base < TOTAL; base += CONC) {
        for (int j = 0; j < CONC; j++)
            if (pthread_create(&t[j], NULL, short_thread, (void *)(uintptr_t)(base + j + 1)) != 0)
                fail_msg("pthread_create failed after %d threads", base + j);
        for (int j = 0; j < CONC; j++) pthread_join(t[j], NULL);
        if (base + CONC == WARM) rss_warm = tu_rss();
    }
    size_t rss_final = tu_rss(), vm_final = tu_vmsize();
    print_message("RSS initial %zu MiB, after %d threads %zu MiB, after %d threads %zu MiB; VmSize %zu -> %zu MiB\n",
                  rss_initial >> 20, WARM, rss_warm >> 20, TOTAL, rss_final >> 20, vm_initial >> 20, vm_final >> 20);
    assert_int_equal(short_errors, 0);
    for (int i = 0; i < 8; i++) { free(hand[i].p); hand[i].p = NULL; }
    if (tu_valgrind()) return; /* memcheck keeps freed memory: no RSS bound */
    if (rss_final >= rss_initial + 64 * TU_MiB)
        fail_msg("RSS grew from %zu to %zu MiB over %d threads", rss_initial >> 20, rss_final >> 20, TOTAL);
    /* address space may be reserved generously, but not per dead thread */
    if (vm_final >= vm_initial + 4 * TU_GiB)
        fail_msg("VmSize grew from %zu to %zu MiB over %d threads", vm_initial >> 20, vm_final >> 20, TOTAL);
}

/* Passive false sharing (cache-scratch): the main thread allocates two
 * objects in one cache line and hands one to each of two new threads,
 * which run at the same time; each frees its object and allocates its own.
 * The two threads' objects must not share a line: a thread's first free
 * puts the object at the bottom of a freshly filled cache bin instead of
 * reusing it first. */
static pthread_barrier_t handed_bar;
static void *handed_thread(void *arg)
{
    void **slot = arg;
    free(slot[0]);
    slot[1] = malloc(8);
    pthread_barrier_wait(&handed_bar);      /* both objects live at once */
    return NULL;
}

static void test_first_free_not_reused(void **state)
{
#ifdef XA_TEST_GLIBC
    skip();   /* glibc's tcache hands the object back: the threads share a line */
#endif
    /* Pairs are tried until 20 were found in one line, within 400 tries:
     * with the heap profiler sampling nearly every block (prof.sh runs
     * this with prof_sample:64), fewer of two consecutive blocks share a
     * line, and 40 tries found 10 or fewer such pairs in 3 runs of 40. */
    enum { TRIES = 400, WANT = 20 };
    int tried = 0, nkeep = 0;
    void *keep[2 * TRIES];                   /* freed at the end, not reused */
    pthread_barrier_init(&handed_bar, NULL, 2);
    for (int i = 0; i < TRIES && tried < WANT; i++) {
        void *a[2], *b[2];
        a[0] = malloc(8);
        b[0] = malloc(8);
        if ((uintptr_t)a[0] / 64 == (uintptr_t)b[0] / 64) {   /* handed: one line */
            pthread_t t1, t2;
            assert_int_equal(pthread_create(&t1, NULL, handed_thread, a), 0);
            assert_int_equal(pthread_create(&t2, NULL, handed_thread, b), 0);
            pthread_join(t1, NULL);
            pthread_join(t2, NULL);
            assert_ptr_not_equal(a[1], a[0]);
            assert_ptr_not_equal(b[1], b[0]);
            assert_true((uintptr_t)a[1] / 64 != (uintptr_t)b[1] / 64);
            tried++;
            a[0] = a[1];
            b[0] = b[1];
        }
        keep[nkeep++] = a[0];
        keep[nkeep++] = b[0];
    }
    for (int i = 0; i < nkeep; i++) free(keep[i]);
    pthread_barrier_destroy(&handed_bar);
    assert_true(tried > 10);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], ATFORK_FIRST_ARG) == 0) return atfork_first_main();
    if (tu_valgrind()) self_exe = argv[0]; /* /proc/self/exe is valgrind's tool */
    if (getenv("XA_TEST_FILTER")) cmocka_set_test_filter(getenv("XA_TEST_FILTER")); /* e.g. "test_fork*" */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fork_multithreaded),
        cmocka_unit_test(test_atfork_handlers_before_first_malloc),
        cmocka_unit_test(test_fork_from_secondary_thread),
        cmocka_unit_test(test_thread_exit_destructors),
        cmocka_unit_test(test_many_short_threads),
        cmocka_unit_test(test_first_free_not_reused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
