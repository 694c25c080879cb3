/* lifecycle: process and thread life-cycle scenarios in which the allocator
 * must never hang inside the C library (issue 14).  Run by test/lifecycle.sh.
 *
 *   lifecycle <scenario> [dl-path]      exit 0 = passed, 1 = failed,
 *                                       2 = not possible here (skip),
 *                                       3 = hang (a watchdog fired)
 *
 *   create_join        8 threads that never allocate, created and joined,
 *                      twice; the program allocates only afterwards
 *   main_pthread_exit  main ends with pthread_exit while a thread still
 *                      allocates; the process must exit 0 when it ends
 *   fork_child_join    fork while 6 threads allocate; the child creates and
 *                      joins threads, before or after freeing whole pages
 *   fork_nonmain       fork from two non-main threads at once while others
 *                      allocate; the child allocates, joins threads, forks
 *   spawn              200 posix_spawn and 200 vfork+execve of /bin/true
 *                      while 3 threads allocate
 *   cancel             deferred pthread_cancel of threads in malloc/realloc/
 *                      free loops; cleanup handlers free what they hold
 *   dlopen             1000 dlopen/dlclose of lifecycle_dl.so (dl-path or
 *                      $LIFECYCLE_DL) while 2 threads allocate
 *   threads_2000       2000 threads alive at once, each holding 20 blocks
 *   threads_100k       100,000 short threads, 16 at a time
 *   exit_busy          exit() from main or from a thread while 4 threads
 *                      allocate, in 40 children
 *   first_in_tls_dtor  first allocation in a key destructor / in the last
 *                      destructor round
 *   first_in_atfork    first allocation in atfork prepare / parent / child
 *   first_in_signal    first allocation in a signal handler, on the main
 *                      thread (raise) and on another (pthread_kill)
 *   all                each of the above in a process of its own
 *   malloc_owner       prints the file that defines malloc
 *
 * Plain C without cmocka or stdio: some scenarios must not allocate before
 * a given point, so messages go through snprintf into stack buffers and
 * write(2).  Every block a scenario allocates is filled with a pattern
 * derived from a seed and checked before it is freed.
 *
 * Hangs: the process arms alarm($LIFECYCLE_TIMEOUT, default 60 s); the
 * handler prints the stage the process was in and exits 3.  A forked child
 * arms alarm($LIFECYCLE_CHILD_TIMEOUT, default 10 s) and its parent waits
 * with a deadline 5 s longer, then kills it: an allocator that deadlocks
 * with every signal blocked (xalloc blocks them around pthread_create)
 * cannot be woken by its own alarm, so for the process itself the caller's
 * kill (timeout -s KILL in the script) is what ends it.
 * $LIFECYCLE_SHORT_THREADS lowers threads_100k's count for very slow
 * environments (valgrind); nothing sets it by default.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "lifecycle_pat.h"

extern char **environ;

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* ---- reporting and watchdog -------------------------------------------- */

static const char *g_scen = "?";
static const char *g_arg;                 /* argv[2]: the dl path */
static unsigned g_alarm_s = 60;           /* this process's watchdog */
static unsigned g_child_s = 10;           /* each forked child's watchdog */
/* What the process is doing, for the watchdog's message; several threads
 * may set it, the last one wins (it is a hint, not a record). */
static _Atomic(const char *) g_stage = "start";
static atomic_long g_stage_n = -1;
/* A child the watchdog kills before exiting, so that a hung child of a hung
 * waiter does not outlive the run. */
static atomic_int g_watch_pid;

static void stage(const char *what, long n)
{
    atomic_store_explicit(&g_stage, what, memory_order_relaxed);
    atomic_store_explicit(&g_stage_n, n, memory_order_relaxed);
}

/* Async-signal-safe string building for the watchdog (no snprintf there). */
static size_t put_str(char *b, size_t at, size_t cap, const char *s)
{
    while (*s && at + 1 < cap) b[at++] = *s++;
    return at;
}

static size_t put_num(char *b, size_t at, size_t cap, long v)
{
    char t[24];
    int k = 0;
    unsigned long u = v < 0 ? 0ul - (unsigned long)v : (unsigned long)v;
    do t[k++] = (char)('0' + u % 10); while ((u /= 10) != 0);
    if (v < 0) t[k++] = '-';
    while (k > 0 && at + 1 < cap) b[at++] = t[--k];
    return at;
}

static void on_alarm(int sig)
{
    (void)sig;
    char b[400];
    size_t at = 0;
    at = put_str(b, at, sizeof b, "lifecycle: ");
    at = put_str(b, at, sizeof b, g_scen);
    at = put_str(b, at, sizeof b, ": hang: no progress within ");
    at = put_num(b, at, sizeof b, (long)g_alarm_s);
    at = put_str(b, at, sizeof b, " s (pid ");
    at = put_num(b, at, sizeof b, (long)getpid());
    at = put_str(b, at, sizeof b, ", at: ");
    at = put_str(b, at, sizeof b, atomic_load_explicit(&g_stage, memory_order_relaxed));
    at = put_str(b, at, sizeof b, " #");
    at = put_num(b, at, sizeof b, atomic_load_explicit(&g_stage_n, memory_order_relaxed));
    at = put_str(b, at, sizeof b, ")\n");
    if (write(2, b, at) < 0) { /* nothing left to report to */ }
    int pid = atomic_load(&g_watch_pid);
    if (pid > 0) kill(pid, SIGKILL);
    _exit(3);
}

static void arm_watchdog(unsigned s)
{
    g_alarm_s = s;
    alarm(s);
}

static void vreport(const char *kind, const char *fmt, va_list ap)
{
    char b[600];
    int n = snprintf(b, sizeof b - 1, "lifecycle: %s: %s", g_scen, kind);
    if (n < 0) n = 0;
    if ((size_t)n > sizeof b - 2) n = (int)sizeof b - 2;
    int m = vsnprintf(b + n, sizeof b - 1 - (size_t)n, fmt, ap);
    if (m > 0) n += m;
    if ((size_t)n > sizeof b - 2) n = (int)sizeof b - 2;
    b[n++] = '\n';
    if (write(2, b, (size_t)n) < 0) { /* nothing left to report to */ }
}

__attribute__((noreturn, format(printf, 1, 2)))
static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport("", fmt, ap);
    va_end(ap);
    _exit(1);
}

__attribute__((noreturn, format(printf, 1, 2)))
static void fail_hang(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport("hang: ", fmt, ap);
    va_end(ap);
    _exit(3);
}

__attribute__((noreturn, format(printf, 1, 2)))
static void skip(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport("skip: ", fmt, ap);
    va_end(ap);
    _exit(2);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

static void xcreate(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg)
{
    int e = pthread_create(t, attr, fn, arg);
    if (e != 0) fail("pthread_create: %s", strerror(e));
}

static void *xjoin(pthread_t t)
{
    void *ret;
    int e = pthread_join(t, &ret);
    if (e != 0) fail("pthread_join: %s", strerror(e));
    return ret;
}

/* ---- children ---------------------------------------------------------- */

/* First thing a forked child does: the parent's alarm is not inherited. */
static void child_begin(void)
{
    atomic_store(&g_watch_pid, 0);
    arm_watchdog(g_child_s);
}

/* Waits for pid, polling, so that a child that never exits is killed and
 * reported instead of hanging the waiter.  *hung is set when it was killed. */
static int wait_child(pid_t pid, double timeout_s, int *hung)
{
    double end = now_s() + timeout_s;
    long us = 20;
    int st;
    *hung = 0;
    atomic_store(&g_watch_pid, (int)pid);
    for (;;) {
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid) break;
        if (w < 0 && errno != EINTR) fail("waitpid(%d): %s", (int)pid, strerror(errno));
        if (now_s() > end) {
            kill(pid, SIGKILL);
            while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
            *hung = 1;
            break;
        }
        sleep_us(us);
        if (us < 2000) us *= 2;
    }
    atomic_store(&g_watch_pid, 0);
    return st;
}

/* The child must exit 0; exit 3 is its watchdog's hang report (its own line
 * is already on stderr), anything else a failure. */
static void expect_child_ok(pid_t pid, double timeout_s, const char *what, long i)
{
    int hung;
    int st = wait_child(pid, timeout_s, &hung);
    if (hung) fail_hang("%s #%ld: child %d did not exit within %.0f s (killed)", what, i, (int)pid, timeout_s);
    if (WIFSIGNALED(st))
        fail("%s #%ld: child %d killed by signal %d (%s)", what, i, (int)pid, WTERMSIG(st), strsignal(WTERMSIG(st)));
    if (!WIFEXITED(st)) fail("%s #%ld: child %d: odd wait status 0x%x", what, i, (int)pid, st);
    if (WEXITSTATUS(st) == 3) fail_hang("%s #%ld: child %d hung (its watchdog fired)", what, i, (int)pid);
    if (WEXITSTATUS(st) != 0) fail("%s #%ld: child %d exited with %d", what, i, (int)pid, WEXITSTATUS(st));
}

/* ---- patterned blocks -------------------------------------------------- */

static uint64_t rnd(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* Mostly small, some medium, a few large (up to 512 KiB) sizes. */
static size_t rnd_size(uint64_t *s)
{
    uint64_t r = rnd(s);
    unsigned k = (unsigned)(r % 100);
    r >>= 8;
    if (k < 70) return 1 + r % 512;
    if (k < 90) return 513 + r % 7680;
    if (k < 98) return 8193 + r % 57344;
    return 65537 + r % 458752;
}


struct blk {
    unsigned char *p;
    size_t n;
    uint64_t seed;
};

static void blk_alloc(struct blk *b, size_t n, uint64_t seed)
{
    b->p = malloc(n);
    if (!b->p) fail("malloc(%zu) returned NULL (%s)", n, strerror(errno));
    b->n = n;
    b->seed = seed;
    pat_fill(b->p, n, seed);
}

/* calloc must still zero in every mode (junk fills new blocks). */
static void blk_calloc(struct blk *b, size_t n, uint64_t seed)
{
    b->p = calloc(1, n);
    if (!b->p) fail("calloc(1, %zu) returned NULL (%s)", n, strerror(errno));
    size_t step = pat_step(n);
    for (size_t i = 0; i < n; i += (i < 4096 || step == 8) ? 1 : step)
        if (b->p[i] != 0) fail("calloc(1, %zu) = %p: byte %zu is 0x%02x, not 0", n, (void *)b->p, i, b->p[i]);
    b->n = n;
    b->seed = seed;
    pat_fill(b->p, n, seed);
}

static void blk_check(const struct blk *b, const char *where)
{
    size_t bad = pat_bad(b->p, b->n, b->seed, b->n);
    if (bad) fail("%s: block %p (%zu bytes) corrupted at offset %zu", where, (void *)b->p, b->n, bad - 1);
}

static void blk_free(struct blk *b, const char *where)
{
    blk_check(b, where);
    free(b->p);
    b->p = NULL;
}

static void blk_realloc(struct blk *b, size_t n)
{
    unsigned char *q = realloc(b->p, n);
    if (!q) fail("realloc(%p, %zu) returned NULL (%s)", (void *)b->p, n, strerror(errno));
    size_t bad = pat_bad(q, b->n, b->seed, n < b->n ? n : b->n);
    if (bad) fail("realloc %zu -> %zu bytes: data lost at offset %zu (block %p)", b->n, n, bad - 1, (void *)q);
    b->p = q;
    b->n = n;
    pat_fill(q, n, b->seed);
}

/* A block that carries its size and seed in its first 16 bytes, so any
 * thread (or a fork child) can check and free it without side records. */
static void *xblk_new(size_t n, uint64_t seed)
{
    if (n < 16) n = 16;
    unsigned char *p = malloc(n);
    if (!p) fail("malloc(%zu) returned NULL (%s)", n, strerror(errno));
    memcpy(p, &n, 8);
    memcpy(p + 8, &seed, 8);
    pat_fill(p + 16, n - 16, seed);
    return p;
}

static void xblk_check(void *v, const char *where)
{
    unsigned char *p = v;
    size_t n;
    uint64_t seed;
    memcpy(&n, p, 8);
    memcpy(&seed, p + 8, 8);
    if (n < 16 || n > (64u << 20)) fail("%s: block %p has a corrupted header (size %zu)", where, v, n);
    size_t bad = pat_bad(p + 16, n - 16, seed, n - 16);
    if (bad) fail("%s: block %p (%zu bytes) corrupted at offset %zu", where, v, n, bad + 15);
}

static void xblk_free(void *v, const char *where)
{
    xblk_check(v, where);
    free(v);
}

static void *xblk_realloc(void *v, size_t n2)
{
    xblk_check(v, "realloc");
    size_t n;
    uint64_t seed;
    memcpy(&n, v, 8);
    memcpy(&seed, (unsigned char *)v + 8, 8);
    if (n2 < 16) n2 = 16;
    unsigned char *q = realloc(v, n2);
    if (!q) fail("realloc(%p, %zu) returned NULL (%s)", v, n2, strerror(errno));
    size_t bad = pat_bad(q + 16, n - 16, seed, (n2 < n ? n2 : n) - 16);
    if (bad) fail("realloc %zu -> %zu bytes: data lost at offset %zu (block %p)", n, n2, bad + 15, (void *)q);
    memcpy(q, &n2, 8);
    pat_fill(q + 16, n2 - 16, seed);
    return q;
}

/* A burst of allocations checked and freed by the calling thread. */
static void churn(uint64_t seed, int nblocks, int rounds)
{
    struct blk b[64];
    if (nblocks > 64) nblocks = 64;
    for (int r = 0; r < rounds; r++) {
        for (int i = 0; i < nblocks; i++) {
            if (i % 7 == 3) blk_calloc(&b[i], rnd_size(&seed), seed + (uint64_t)i);
            else blk_alloc(&b[i], rnd_size(&seed), seed + (uint64_t)i);
        }
        for (int i = 0; i < nblocks; i += 3) blk_realloc(&b[i], rnd_size(&seed));
        for (int i = 0; i < nblocks; i++) blk_free(&b[i], "churn");
    }
}

static void *churn_thread(void *arg)
{
    churn((uint64_t)(uintptr_t)arg * 0x2545F4914F6CDD1Dull | 1, 32, 4);
    return arg;
}

/* Creates n threads that allocate, and joins them. */
static void churn_threads(int n, uint64_t seed)
{
    pthread_t t[8];
    if (n > 8) n = 8;
    for (int i = 0; i < n; i++) xcreate(&t[i], NULL, churn_thread, (void *)(uintptr_t)(seed + (uint64_t)i + 1));
    for (int i = 0; i < n; i++)
        if (xjoin(t[i]) != (void *)(uintptr_t)(seed + (uint64_t)i + 1))
            fail("churn thread %d returned a wrong value", i);
}

/* ---- background allocators --------------------------------------------- */

/* Threads that allocate, reallocate and free all the time, and trade blocks
 * through xch so that blocks are freed by other threads than their owners
 * (and, after a fork, by the child). */
#define XCH 64
static _Atomic(void *) xch[XCH];
static atomic_int bg_stop_flag;
static atomic_long bg_ops;
static pthread_t bg_threads[8];
static int bg_n;

static void *bg_main(void *arg)
{
    uint64_t s = 0x9E3779B97F4A7C15ull * ((uintptr_t)arg + 1);
    void *own[32] = {0};
    while (!atomic_load_explicit(&bg_stop_flag, memory_order_relaxed)) {
        for (int k = 0; k < 64; k++) {
            uint64_t r = rnd(&s);
            unsigned i = (unsigned)(r % 32);
            r >>= 5;
            switch (r % 8) {
            case 0: case 1: case 2: case 3:
                if (own[i]) xblk_free(own[i], "background free");
                own[i] = xblk_new(rnd_size(&s), rnd(&s));
                break;
            case 4:
                if (own[i]) own[i] = xblk_realloc(own[i], rnd_size(&s));
                break;
            case 5: case 6:
                if (own[i]) own[i] = atomic_exchange(&xch[(r >> 3) % XCH], own[i]);
                break;
            default:
                if (own[i]) xblk_free(own[i], "background free");
                own[i] = NULL;
                break;
            }
        }
        atomic_fetch_add_explicit(&bg_ops, 64, memory_order_relaxed);
    }
    for (int i = 0; i < 32; i++)
        if (own[i]) xblk_free(own[i], "background final free");
    return NULL;
}

/* Starts n background allocators and waits until they are all busy. */
static void bg_start(int n)
{
    atomic_store(&bg_stop_flag, 0);
    long base = atomic_load(&bg_ops);
    for (int i = 0; i < n; i++) xcreate(&bg_threads[i], NULL, bg_main, (void *)(uintptr_t)(bg_n + i));
    bg_n = n;
    while (atomic_load(&bg_ops) < base + 2000L * n) sleep_us(200);
}

/* Frees what lies in the exchange (a fork child frees its parent's blocks). */
static void drain_xch(const char *where)
{
    for (int i = 0; i < XCH; i++) {
        void *p = atomic_exchange(&xch[i], NULL);
        if (p) xblk_free(p, where);
    }
}

static void bg_stop(void)
{
    atomic_store(&bg_stop_flag, 1);
    for (int i = 0; i < bg_n; i++) xjoin(bg_threads[i]);
    bg_n = 0;
    drain_xch("exchange drain");
}

/* ---- create_join ------------------------------------------------------- */

/* Works on its stack only: the threads and the main thread never call the
 * allocator, so every allocation is glibc's own (DTVs in pthread_create,
 * frees when the stack cache is trimmed inside pthread_join). */
static void *cj_thread(void *arg)
{
    volatile unsigned char buf[512];
    unsigned sum = 0;
    for (unsigned i = 0; i < sizeof buf; i++) buf[i] = (unsigned char)(i * 7 + (uintptr_t)arg);
    for (unsigned i = 0; i < sizeof buf; i++) sum += buf[i];
    return (void *)(uintptr_t)(sum * 2 + 1);
}

static int sc_create_join(void)
{
    for (int round = 0; round < 2; round++) {
        pthread_t t[8];
        /* Default attributes: 8 MiB stacks, so 8 of them exceed glibc's
         * 40 MiB stack cache and pthread_join frees stacks and DTVs. */
        for (int i = 0; i < 8; i++) {
            stage("create_join: pthread_create", round * 8 + i);
            xcreate(&t[i], NULL, cj_thread, (void *)(uintptr_t)i);
        }
        for (int i = 0; i < 8; i++) {
            stage("create_join: pthread_join", round * 8 + i);
            unsigned sum = 0;
            for (unsigned k = 0; k < 512; k++) sum += (unsigned char)(k * 7 + (unsigned)i);
            if (xjoin(t[i]) != (void *)(uintptr_t)(sum * 2 + 1)) fail("thread %d returned a wrong value", i);
        }
    }
    /* Only now the program allocates: the allocator must work after that. */
    stage("create_join: churn after the joins", 0);
    churn(42, 32, 2);
    return 0;
}

/* ---- main_pthread_exit ------------------------------------------------- */

/* glibc ends a process when its last thread exits.  Here main ends with
 * pthread_exit while a thread still allocates, and that thread ends last:
 * the process must then exit 0 (an allocator thread that stays alive keeps
 * it running forever; CPython's test_threading forks children that end
 * this way). */
static void *late_thread(void *arg)
{
    double end = now_s() + 0.3;
    uint64_t seed = (uint64_t)(uintptr_t)arg;
    while (now_s() < end) churn(seed++, 32, 1);
    return arg;
}

static int sc_main_pthread_exit(void)
{
    churn(11, 64, 4);
    char *big = malloc(3 << 20);                /* dirty pages, a second mapping */
    if (!big) fail("malloc(3 MiB) failed");
    memset(big, 1, 3 << 20);
    free(big);
    churn_threads(4, 99);
    pthread_t t;
    xcreate(&t, NULL, late_thread, (void *)(uintptr_t)5);
    stage("main_pthread_exit: after main's pthread_exit", 0);
    pthread_exit(NULL);
}

/* ---- fork_child_join --------------------------------------------------- */

/* The parent runs FCJ_BG allocating threads with default (8 MiB) stacks:
 * in the child their stacks sit in glibc's stack cache, which then holds
 * more than its 40 MiB limit, so the child's first pthread_join trims it
 * and frees the dead threads' DTVs (glibc's own mallocs of the parent)
 * while it holds the stack-cache lock. */
enum { FCJ_BG = 6, FCJ_ROUNDS = 10 };

/* 64 x 64 KiB (whole pages freed) and small blocks, all checked. */
static void fcj_pages(int round, struct blk *small, int nsmall)
{
    static struct blk big[64];
    stage("fork_child_join child: 64 x 64 KiB", round);
    for (int i = 0; i < 64; i++) blk_alloc(&big[i], 64 << 10, (uint64_t)round * 1000 + (uint64_t)i);
    for (int i = 0; i < 64; i++) blk_free(&big[i], "child 64 KiB block");
    stage("fork_child_join child: small blocks", round);
    uint64_t s = 77 + (uint64_t)round;
    for (int i = 0; i < nsmall; i++) blk_alloc(&small[i], 16 + rnd(&s) % 1000, (uint64_t)i);
    for (int i = 0; i < nsmall; i += 2) blk_free(&small[i], "child small block");
}

/* Creates and joins n threads that do not allocate, one after the other:
 * each join queues a stack back into glibc's cache and may trim it. */
static void fcj_join_seq(int round, int n)
{
    for (int i = 0; i < n; i++) {
        pthread_t t;
        stage("fork_child_join child: create+join a thread", round * 10 + i);
        xcreate(&t, NULL, cj_thread, (void *)(uintptr_t)3);
        xjoin(t);
    }
}

static __attribute__((noreturn)) void fcj_child(int round, int quiet, struct blk *keep)
{
    child_begin();
    struct blk small[200];
    if (quiet) {
        /* No allocation of its own before the joins: the child's first
         * calls into the allocator are then glibc's, from inside
         * pthread_create/pthread_join with the stack-cache lock held. */
        fcj_join_seq(round, 3);
        fcj_pages(round, small, 200);
    } else {
        fcj_pages(round, small, 200);
        fcj_join_seq(round, 3);
    }
    if (keep->p) blk_check(keep, "block allocated before fork");
    drain_xch("child freeing the parent's exchanged blocks");
    stage("fork_child_join child: create+join 4 allocating threads", round);
    churn_threads(4, 2000 + (uint64_t)round);
    for (int i = 1; i < 200; i += 2) blk_free(&small[i], "child small block (after threads)");
    if (keep->p) blk_free(keep, "block allocated before fork (freed in child)");
    stage("fork_child_join child: exit", round);
    _exit(0);
}

static int sc_fork_child_join(void)
{
    bg_start(FCJ_BG);
    for (int r = 0; r < FCJ_ROUNDS; r++) {
        /* Even rounds: the forking thread first stays out of the allocator
         * for longer than xalloc's cache-reclaim period (a quarter of
         * dirty_decay_ms, 250 ms by default), so its cache is taken back
         * and the child's frees take the slow path; the child then
         * allocates little before its first join.  Odd rounds: the parent
         * holds a block across the fork, the child frees whole pages
         * first. */
        int quiet = r % 2 == 0;
        struct blk keep = {NULL, 0, 0};
        if (quiet) {
            stage("fork_child_join: idle before fork", r);
            sleep_us(400000);
        } else {
            blk_alloc(&keep, 5000, 31337 + (uint64_t)r);
        }
        stage("fork_child_join: fork", r);
        pid_t pid = fork();
        if (pid < 0) fail("fork: %s", strerror(errno));
        if (pid == 0) fcj_child(r, quiet, &keep);
        stage("fork_child_join: waiting for child", r);
        expect_child_ok(pid, g_child_s + 5, quiet ? "fork_child_join round (quiet child)" : "fork_child_join round", r);
        if (keep.p) blk_free(&keep, "parent's block after fork");
    }
    stage("fork_child_join: stopping", 0);
    bg_stop();
    return 0;
}

/* ---- fork_nonmain ------------------------------------------------------ */

enum { FN_FORKERS = 2, FN_FORKS = 5, FN_HELD = 8 };

static __attribute__((noreturn)) void fn_grandchild(struct blk *held, long id)
{
    arm_watchdog(g_child_s / 2);
    stage("fork_nonmain grandchild: work", id);
    for (int i = 4; i < FN_HELD; i++) blk_check(&held[i], "grandparent's block in grandchild");
    churn(id * 7 + 3, 24, 2);
    stage("fork_nonmain grandchild: create+join", id);
    churn_threads(1, (uint64_t)id * 10 + 9);
    for (int i = 4; i < FN_HELD; i++) blk_free(&held[i], "grandparent's block freed in grandchild");
    _exit(0);
}

static __attribute__((noreturn)) void fn_child(struct blk *held, long id)
{
    child_begin();
    stage("fork_nonmain child: work", id);
    for (int i = 0; i < 4; i++) blk_free(&held[i], "parent's block freed in child");
    drain_xch("child freeing the parent's exchanged blocks");
    churn(id * 13 + 1, 48, 2);
    stage("fork_nonmain child: create+join 2 threads", id);
    churn_threads(2, (uint64_t)id * 10);
    stage("fork_nonmain child: nested fork", id);
    pid_t pid = fork();
    if (pid < 0) fail("nested fork: %s", strerror(errno));
    if (pid == 0) fn_grandchild(held, id);
    stage("fork_nonmain child: waiting for grandchild", id);
    expect_child_ok(pid, g_child_s / 2 + 1, "fork_nonmain grandchild of", id);
    churn(id * 17 + 5, 16, 1);
    for (int i = 4; i < FN_HELD; i++) blk_free(&held[i], "parent's block freed in child");
    _exit(0);
}

static void *fn_forker(void *arg)
{
    long fid = (long)(uintptr_t)arg;
    for (int k = 0; k < FN_FORKS; k++) {
        long id = fid * 100 + k;
        struct blk held[FN_HELD];
        uint64_t s = (uint64_t)id * 31 + 7;
        for (int i = 0; i < FN_HELD; i++) blk_alloc(&held[i], rnd_size(&s), (uint64_t)id * 100 + (uint64_t)i);
        stage("fork_nonmain: fork from a non-main thread", id);
        pid_t pid = fork();
        if (pid < 0) fail("fork: %s", strerror(errno));
        if (pid == 0) fn_child(held, id);
        expect_child_ok(pid, g_child_s + 5, "fork_nonmain fork", id);
        churn(s, 16, 1);
        for (int i = 0; i < FN_HELD; i++) blk_free(&held[i], "forker's block after fork");
    }
    return NULL;
}

static int sc_fork_nonmain(void)
{
    bg_start(2);
    pthread_t f[FN_FORKERS];
    for (int i = 0; i < FN_FORKERS; i++) xcreate(&f[i], NULL, fn_forker, (void *)(uintptr_t)(i + 1));
    for (int i = 0; i < FN_FORKERS; i++) xjoin(f[i]);
    stage("fork_nonmain: stopping", 0);
    bg_stop();
    return 0;
}

/* ---- spawn ------------------------------------------------------------- */

static char sp_arg0[] = "true";
static char *sp_argv[] = {sp_arg0, NULL};

/* Kept apart so that no local of the caller lives across vfork. */
static __attribute__((noinline)) pid_t vfork_exec(const char *path)
{
    pid_t pid = vfork();
    if (pid == 0) {
        execve(path, sp_argv, environ);
        _exit(127);
    }
    return pid;
}

static int sc_spawn(void)
{
    const char *path = "/bin/true";
    if (access(path, X_OK) != 0) skip("%s is missing", path);
    bg_start(3);
    posix_spawn_file_actions_t fa;
    /* File actions allocate (and are freed) while the workers allocate. */
    if (posix_spawn_file_actions_init(&fa) != 0 ||
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0) != 0)
        fail("posix_spawn_file_actions failed");
    for (int i = 0; i < 200; i++) {
        struct blk b;
        blk_alloc(&b, 100 + (size_t)i * 37, (uint64_t)i);
        stage("spawn: posix_spawn", i);
        pid_t pid;
        int e = posix_spawn(&pid, path, (i & 1) ? &fa : NULL, NULL, sp_argv, environ);
        if (e != 0) fail("posix_spawn(%s) #%d: %s", path, i, strerror(e));
        expect_child_ok(pid, g_child_s, "posix_spawn", i);
        blk_free(&b, "block held across posix_spawn");
    }
    posix_spawn_file_actions_destroy(&fa);
    for (int i = 0; i < 200; i++) {
        struct blk b;
        blk_alloc(&b, 200 + (size_t)i * 53, (uint64_t)i + 7);
        stage("spawn: vfork+execve", i);
        pid_t pid = vfork_exec(path);
        if (pid < 0) fail("vfork: %s", strerror(errno));
        expect_child_ok(pid, g_child_s, "vfork+execve", i);
        blk_free(&b, "block held across vfork");
    }
    stage("spawn: stopping", 0);
    bg_stop();
    return 0;
}

/* ---- cancel ------------------------------------------------------------ */

enum { CW_HELD = 16 };
struct cw {
    pthread_t t;
    uint64_t seed;
    struct blk held[CW_HELD];
    atomic_int started;
    atomic_long ops;
    int cleaned;
};

/* Runs on cancellation: what the thread holds must be intact and is freed.
 * held[] is consistent here because deferred cancellation acts only at
 * cancellation points, none of which lies between a call and its record
 * (unless the allocator itself has one: then the block is freed twice or
 * leaked, and the checks or the allocator's double-free report say so). */
static void cw_cleanup(void *arg)
{
    struct cw *w = arg;
    for (int i = 0; i < CW_HELD; i++)
        if (w->held[i].p) blk_free(&w->held[i], "cancel cleanup handler");
    w->cleaned++;
}

static void *cw_main(void *arg)
{
    struct cw *w = arg;
    int old;
    pthread_setcanceltype(PTHREAD_CANCEL_DEFERRED, &old);
    atomic_store(&w->started, 1);
    pthread_cleanup_push(cw_cleanup, w);
    for (long it = 0;; it++) {
        uint64_t r = rnd(&w->seed);
        struct blk *b = &w->held[r % CW_HELD];
        r >>= 4;
        switch (r % 4) {
        case 0: case 1:
            if (b->p) blk_free(b, "cancel loop free");
            blk_alloc(b, rnd_size(&w->seed), r);
            break;
        case 2:
            if (b->p) blk_realloc(b, rnd_size(&w->seed));
            else blk_alloc(b, rnd_size(&w->seed), r);
            break;
        default:
            if (b->p) blk_free(b, "cancel loop free");
            break;
        }
        atomic_store_explicit(&w->ops, it + 1, memory_order_relaxed);
        pthread_testcancel();
        if ((it & 127) == 127) {
            struct timespec z = {0, 0};
            nanosleep(&z, NULL);   /* another kind of cancellation point */
        }
    }
    pthread_cleanup_pop(1);
    return NULL;
}

static int sc_cancel(void)
{
    enum { NT = 4, ROUNDS = 300 };
    static struct cw w[NT];
    for (int round = 0; round < ROUNDS; round++) {
        memset(w, 0, sizeof w);
        for (int i = 0; i < NT; i++) {
            w[i].seed = (uint64_t)round * 977 + (uint64_t)i * 131 + 1;
            xcreate(&w[i].t, NULL, cw_main, &w[i]);
        }
        /* Cancel at once (often before the thread runs), after its first
         * operations, or well into its loop. */
        long want = round % 3 == 0 ? 0 : round % 3 == 1 ? 1 : 2000;
        stage("cancel: waiting for the loops", round);
        for (int i = 0; i < NT; i++)
            while (atomic_load_explicit(&w[i].ops, memory_order_relaxed) < want) sleep_us(50);
        stage("cancel: pthread_cancel", round);
        for (int i = 0; i < NT; i++) {
            int e = pthread_cancel(w[i].t);
            if (e != 0) fail("pthread_cancel: %s", strerror(e));
        }
        stage("cancel: pthread_join", round);
        for (int i = 0; i < NT; i++) {
            void *ret = xjoin(w[i].t);
            if (ret != PTHREAD_CANCELED)
                fail("round %d thread %d: join returned %p, not PTHREAD_CANCELED", round, i, ret);
            if (atomic_load(&w[i].started) && w[i].cleaned != 1)
                fail("round %d thread %d: cleanup handler ran %d times", round, i, w[i].cleaned);
            for (int k = 0; k < CW_HELD; k++)
                if (w[i].held[k].p) fail("round %d thread %d: block %d still held after cleanup", round, i, k);
        }
    }
    return 0;
}

/* ---- dlopen ------------------------------------------------------------ */

static int sc_dlopen(void)
{
    const char *path = g_arg ? g_arg : getenv("LIFECYCLE_DL");
    if (!path || !*path) fail("needs the path of lifecycle_dl.so (argument or LIFECYCLE_DL)");
    bg_start(2);
    for (unsigned i = 0; i < 1000; i++) {
        stage("dlopen: dlopen", i);
        void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!h) fail("dlopen(%s) #%u: %s", path, i, dlerror());
        int (*work)(unsigned);
        const char *(*error)(void);
        *(void **)&work = dlsym(h, "lcdl_work");
        *(void **)&error = dlsym(h, "lcdl_error");
        if (!work || !error) fail("dlsym in %s: %s", path, dlerror());
        stage("dlopen: lcdl_work", i);
        if (work(i) != 0) fail("cycle %u: %s", i, error());
        stage("dlopen: dlclose", i);
        if (dlclose(h) != 0) fail("dlclose #%u: %s", i, dlerror());
    }
    stage("dlopen: stopping", 0);
    bg_stop();
    return 0;
}

/* ---- threads_2000 ------------------------------------------------------ */

enum { T2K = 2000, T2K_BLOCKS = 20 };
struct t2k {
    pthread_t t;
    struct blk b[T2K_BLOCKS];
};
static pthread_barrier_t t2k_barrier;

static size_t t2k_size(uint64_t *s, int i, int id)
{
    if (i == T2K_BLOCKS - 1 && id % 10 == 0) return 32769 + rnd(s) % 100000;   /* large */
    if (i == T2K_BLOCKS - 2) return 2049 + rnd(s) % 30000;
    return 1 + rnd(s) % 2048;
}

static struct t2k *t2k_all;

static void *t2k_thread(void *arg)
{
    int id = (int)(uintptr_t)arg;
    struct t2k *w = &t2k_all[id];
    uint64_t s = (uint64_t)id * 7919 + 1;
    for (int i = 0; i < T2K_BLOCKS; i++) {
        if (i % 5 == 4) blk_calloc(&w->b[i], t2k_size(&s, i, id), (uint64_t)id << 8 | (uint64_t)i);
        else blk_alloc(&w->b[i], t2k_size(&s, i, id), (uint64_t)id << 8 | (uint64_t)i);
    }
    /* All 2000 threads are alive and hold their blocks here. */
    int e = pthread_barrier_wait(&t2k_barrier);
    if (e != 0 && e != PTHREAD_BARRIER_SERIAL_THREAD) fail("pthread_barrier_wait: %s", strerror(e));
    for (int i = 0; i < T2K_BLOCKS; i++) blk_check(&w->b[i], "threads_2000 block after the barrier");
    for (int i = 0; i < T2K_BLOCKS; i += 2) blk_free(&w->b[i], "threads_2000 block freed by its thread");
    return arg;
}

static int sc_threads_2000(void)
{
    t2k_all = calloc(T2K, sizeof *t2k_all);
    if (!t2k_all) fail("calloc failed");
    if (pthread_barrier_init(&t2k_barrier, NULL, T2K) != 0) fail("pthread_barrier_init failed");
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 128 << 10);
    for (int i = 0; i < T2K; i++) {
        stage("threads_2000: pthread_create", i);
        int e = pthread_create(&t2k_all[i].t, &attr, t2k_thread, (void *)(uintptr_t)i);
        if (e == EAGAIN) {
            /* The barrier cannot be passed now: report and leave. */
            skip("pthread_create #%d: %s (thread limit of this machine)", i, strerror(e));
        }
        if (e != 0) fail("pthread_create #%d: %s", i, strerror(e));
    }
    pthread_attr_destroy(&attr);
    for (int i = 0; i < T2K; i++) {
        stage("threads_2000: pthread_join", i);
        if (xjoin(t2k_all[i].t) != (void *)(uintptr_t)i) fail("thread %d returned a wrong value", i);
    }
    /* The other half is freed by the main thread, after its owners exited. */
    stage("threads_2000: main frees the handed-over blocks", 0);
    for (int i = 0; i < T2K; i++)
        for (int k = 1; k < T2K_BLOCKS; k += 2) blk_free(&t2k_all[i].b[k], "threads_2000 block freed by main");
    pthread_barrier_destroy(&t2k_barrier);
    free(t2k_all);
    return 0;
}

/* ---- threads_100k ------------------------------------------------------ */

struct st {
    pthread_t t;
    long id;
    void *out;
};

static void *st_thread(void *arg)
{
    struct st *w = arg;
    uint64_t s = (uint64_t)w->id * 2654435761u + 1;
    struct blk a, b;
    blk_alloc(&a, 16 + rnd(&s) % 240, s);
    blk_alloc(&b, (w->id % 16 == 0) ? 32769 + rnd(&s) % 70000 : 257 + rnd(&s) % 4000, s + 1);
    blk_realloc(&a, 16 + rnd(&s) % 600);
    blk_free(&b, "short thread block");
    blk_free(&a, "short thread block");
    /* One block per thread outlives it and is freed by the main thread. */
    w->out = xblk_new(16 + rnd(&s) % 1000, s);
    return arg;
}

static int sc_threads_100k(void)
{
    long total = 100000;
    const char *e = getenv("LIFECYCLE_SHORT_THREADS");
    if (e && *e) total = strtol(e, NULL, 10);
    enum { CONC = 16 };
    struct st w[CONC];
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 << 10);
    for (long done = 0; done < total;) {
        int n = total - done < CONC ? (int)(total - done) : CONC;
        stage("threads_100k: pthread_create", done);
        for (int i = 0; i < n; i++) {
            w[i].id = done + i;
            w[i].out = NULL;
            xcreate(&w[i].t, &attr, st_thread, &w[i]);
        }
        stage("threads_100k: pthread_join", done);
        for (int i = 0; i < n; i++) {
            if (xjoin(w[i].t) != &w[i]) fail("thread %ld returned a wrong value", w[i].id);
            if (!w[i].out) fail("thread %ld handed over no block", w[i].id);
            xblk_free(w[i].out, "block of an exited thread freed by main");
        }
        done += n;
    }
    pthread_attr_destroy(&attr);
    return 0;
}

/* ---- exit_busy --------------------------------------------------------- */

static void eb_atexit(void)
{
    /* The exit path allocates while the other threads still do. */
    churn(99, 16, 1);
}

static void *eb_exiter(void *arg)
{
    (void)arg;
    long base = atomic_load(&bg_ops);
    while (atomic_load(&bg_ops) < base + 4000) sleep_us(100);
    stage("exit_busy child: exit() from a non-main thread", 1);
    exit(0);
}

static __attribute__((noreturn)) void eb_child(int variant, int round)
{
    child_begin();
    stage("exit_busy child: setup", round);
    FILE *f = fopen("/dev/null", "w");
    if (!f) fail("fopen /dev/null: %s", strerror(errno));
    /* Buffered output that exit() flushes while the other threads run. */
    for (int i = 0; i < 100; i++) fprintf(f, "line %d of round %d\n", i, round);
    if (atexit(eb_atexit) != 0) fail("atexit failed");
    bg_start(4);
    if (variant == 0) {
        stage("exit_busy child: exit() from main", round);
        exit(0);
    }
    pthread_t t;
    xcreate(&t, NULL, eb_exiter, NULL);
    /* The main thread allocates too until the other thread's exit ends it. */
    for (uint64_t s = (uint64_t)round + 5;; s++) churn(s, 8, 1);
}

static int sc_exit_busy(void)
{
    for (int variant = 0; variant < 2; variant++) {
        for (int r = 0; r < 20; r++) {
            stage(variant ? "exit_busy: fork (thread exits)" : "exit_busy: fork (main exits)", r);
            pid_t pid = fork();
            if (pid < 0) fail("fork: %s", strerror(errno));
            if (pid == 0) eb_child(variant, r);
            expect_child_ok(pid, g_child_s + 5,
                            variant ? "exit_busy (exit from a thread)" : "exit_busy (exit from main)", r);
        }
    }
    return 0;
}

/* ---- variants in fresh processes --------------------------------------- */

/* Runs this program again with another scenario name: the first_in_*
 * variants need a process that has not allocated yet. */
static void run_self(const char *name, double timeout_s)
{
    char a0[] = "lifecycle";
    char a1[128];
    snprintf(a1, sizeof a1, "%s", name);
    char *av[4] = {a0, a1, (char *)g_arg, NULL};
    pid_t pid;
    stage(name, 0);
    int e = posix_spawn(&pid, "/proc/self/exe", NULL, NULL, av, environ);
    if (e != 0) fail("posix_spawn(/proc/self/exe %s): %s", name, strerror(e));
    expect_child_ok(pid, timeout_s, name, 0);
}

/* ---- first_in_tls_dtor ------------------------------------------------- */

static pthread_key_t ftd_k1, ftd_k2;
static int ftd_marker;
static void *ftd_handoff[2];
static atomic_int ftd_d2_rounds;

static void ftd_d1(void *v)
{
    (void)v;
    /* This is the program's first allocation of its own (variant ab). */
    struct blk b[6];
    static const size_t sz[6] = {8, 100, 3000, 20000, 70000, 600000};
    for (int i = 0; i < 6; i++) blk_alloc(&b[i], sz[i], 100 + (uint64_t)i);
    for (int i = 0; i < 6; i++) blk_free(&b[i], "key destructor block");
    ftd_handoff[0] = xblk_new(777, 1);
}

static void ftd_d2(void *v)
{
    int r = atomic_fetch_add(&ftd_d2_rounds, 1) + 1;
    if (r < PTHREAD_DESTRUCTOR_ITERATIONS) {
        /* Re-arm: the allocation waits for the last round glibc runs. */
        pthread_setspecific(ftd_k2, v);
        return;
    }
    struct blk b[4];
    static const size_t sz[4] = {24, 4000, 40000, 400000};
    for (int i = 0; i < 4; i++) blk_alloc(&b[i], sz[i], 200 + (uint64_t)i);
    for (int i = 0; i < 4; i++) blk_free(&b[i], "last-round key destructor block");
    ftd_handoff[1] = xblk_new(555, 2);
}

static void *ftd_set1(void *a) { pthread_setspecific(ftd_k1, &ftd_marker); return a; }
static void *ftd_set2(void *a) { pthread_setspecific(ftd_k2, &ftd_marker); return a; }

static void ftd_run(int which)
{
    pthread_t t;
    stage(which ? "first_in_tls_dtor: last-round destructor thread" : "first_in_tls_dtor: destructor thread", 0);
    xcreate(&t, NULL, which ? ftd_set2 : ftd_set1, NULL);
    xjoin(t);
    if (!ftd_handoff[which]) fail("the %s destructor did not run", which ? "last-round" : "key");
    if (which && atomic_load(&ftd_d2_rounds) != PTHREAD_DESTRUCTOR_ITERATIONS)
        fail("re-armed destructor ran %d rounds, not %d", atomic_load(&ftd_d2_rounds), PTHREAD_DESTRUCTOR_ITERATIONS);
}

/* ab: the first allocation is in a key destructor, then another thread's
 * first is in the last destructor round; ba: the other way round. */
static int ftd_variant(int last_first)
{
    if (pthread_key_create(&ftd_k1, ftd_d1) != 0 || pthread_key_create(&ftd_k2, ftd_d2) != 0)
        fail("pthread_key_create failed");
    ftd_run(last_first);
    ftd_run(!last_first);
    stage("first_in_tls_dtor: main checks the destructors' blocks", 0);
    xblk_free(ftd_handoff[0], "key destructor's block freed by main");
    xblk_free(ftd_handoff[1], "last-round destructor's block freed by main");
    churn(5, 16, 1);
    return 0;
}

static int sc_ftd_ab(void) { return ftd_variant(0); }
static int sc_ftd_ba(void) { return ftd_variant(1); }

static int sc_first_in_tls_dtor(void)
{
    run_self("first_in_tls_dtor.ab", g_child_s + 5);
    run_self("first_in_tls_dtor.ba", g_child_s + 5);
    return 0;
}

/* ---- first_in_atfork --------------------------------------------------- */

static int af_alloc_in_prepare;
static void *af_p, *af_q, *af_c;

static void af_prepare(void)
{
    if (!af_alloc_in_prepare) return;
    if (af_p) xblk_free(af_p, "prepare handler's previous block");
    af_p = xblk_new(4000, 11);   /* variant prepare: the program's first */
}

static void af_parent(void)
{
    if (af_p) xblk_check(af_p, "prepare block in the parent handler");
    if (af_q) xblk_free(af_q, "parent handler's previous block");
    af_q = xblk_new(50000, 12);  /* variant post: the parent's first */
}

static void af_child(void)
{
    if (af_p) xblk_check(af_p, "prepare block in the child handler");
    af_c = xblk_new(300, 13);    /* variant post: the child's first */
}

static int af_variant(int in_prepare)
{
    af_alloc_in_prepare = in_prepare;
    /* Registered before any allocation of the program. */
    if (pthread_atfork(af_prepare, af_parent, af_child) != 0) fail("pthread_atfork failed");
    for (int r = 0; r < 3; r++) {
        stage("first_in_atfork: fork", r);
        pid_t pid = fork();
        if (pid < 0) fail("fork: %s", strerror(errno));
        if (pid == 0) {
            child_begin();
            stage("first_in_atfork child", r);
            if (!af_c) fail("child handler's block missing");
            xblk_free(af_c, "child handler's block in the child");
            if (in_prepare) {
                if (!af_p) fail("prepare handler's block missing in the child");
                xblk_check(af_p, "prepare handler's block in the child");
            }
            churn(3 + (uint64_t)r, 24, 1);
            churn_threads(1, 50);
            exit(0);
        }
        stage("first_in_atfork: parent", r);
        if (!af_q) fail("parent handler's block missing");
        xblk_check(af_q, "parent handler's block in the parent");
        if (in_prepare) xblk_check(af_p, "prepare handler's block in the parent");
        expect_child_ok(pid, g_child_s / 2 + 2, "first_in_atfork child", r);
    }
    if (af_p) xblk_free(af_p, "prepare handler's block");
    xblk_free(af_q, "parent handler's block");
    return 0;
}

static int sc_af_prepare(void) { return af_variant(1); }
static int sc_af_post(void) { return af_variant(0); }

static int sc_first_in_atfork(void)
{
    run_self("first_in_atfork.prepare", g_child_s + 5);
    run_self("first_in_atfork.post", g_child_s + 5);
    return 0;
}

/* ---- first_in_signal --------------------------------------------------- */

static void *sig_keep[2];
static atomic_int sig_runs;
static pthread_t sig_who;

static void on_usr1(int sig)
{
    (void)sig;
    int saved = errno;
    /* Interrupts no allocator call (raise, or a thread that only sleeps),
     * so calling malloc here is sound; for some programs it is the first. */
    struct blk b[3];
    static const size_t sz[3] = {40, 6000, 100000};
    int n = atomic_load(&sig_runs);
    for (int i = 0; i < 3; i++) blk_alloc(&b[i], sz[i], 300 + (uint64_t)i + (uint64_t)n * 10);
    for (int i = 0; i < 3; i++) blk_free(&b[i], "signal handler block");
    if (n < 2) sig_keep[n] = xblk_new(900, 400 + (uint64_t)n);
    sig_who = pthread_self();
    atomic_store(&sig_runs, n + 1);
    errno = saved;
}

static void *sig_waiter(void *arg)
{
    while (atomic_load(&sig_runs) < (int)(uintptr_t)arg) sleep_us(100);
    return NULL;
}

static int sig_variant(int main_first)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    if (sigaction(SIGUSR1, &sa, NULL) != 0) fail("sigaction: %s", strerror(errno));
    int want = 0;
    if (main_first) {
        stage("first_in_signal: raise on main", 0);
        raise(SIGUSR1);
        if (atomic_load(&sig_runs) != ++want) fail("the handler did not run on raise()");
        if (!pthread_equal(sig_who, pthread_self())) fail("the handler ran on another thread");
    }
    pthread_t t;
    want++;
    xcreate(&t, NULL, sig_waiter, (void *)(uintptr_t)want);
    stage("first_in_signal: pthread_kill", 0);
    int e = pthread_kill(t, SIGUSR1);
    if (e != 0) fail("pthread_kill: %s", strerror(e));
    xjoin(t);
    if (atomic_load(&sig_runs) != want) fail("the handler did not run on the thread");
    if (!pthread_equal(sig_who, t)) fail("the handler did not run on the signalled thread");
    if (!main_first) {
        stage("first_in_signal: raise on main", 1);
        raise(SIGUSR1);
        if (atomic_load(&sig_runs) != ++want) fail("the handler did not run on raise()");
    }
    xblk_free(sig_keep[0], "signal handler's first block");
    xblk_free(sig_keep[1], "signal handler's second block");
    churn(8, 16, 1);
    return 0;
}

static int sc_sig_main(void) { return sig_variant(1); }
static int sc_sig_thread(void) { return sig_variant(0); }

static int sc_first_in_signal(void)
{
    run_self("first_in_signal.main", g_child_s + 5);
    run_self("first_in_signal.thread", g_child_s + 5);
    return 0;
}

/* ---- table ------------------------------------------------------------- */

static int sc_all(void);
static int sc_malloc_owner(void);

static const struct scenario {
    const char *name;
    int (*fn)(void);
    int listed;          /* run by "all"; the others are variants or tools */
} scenarios[] = {
    {"create_join", sc_create_join, 1},
    {"main_pthread_exit", sc_main_pthread_exit, 1},
    {"fork_child_join", sc_fork_child_join, 1},
    {"fork_nonmain", sc_fork_nonmain, 1},
    {"spawn", sc_spawn, 1},
    {"cancel", sc_cancel, 1},
    {"dlopen", sc_dlopen, 1},
    {"threads_2000", sc_threads_2000, 1},
    {"threads_100k", sc_threads_100k, 1},
    {"exit_busy", sc_exit_busy, 1},
    {"first_in_tls_dtor", sc_first_in_tls_dtor, 1},
    {"first_in_atfork", sc_first_in_atfork, 1},
    {"first_in_signal", sc_first_in_signal, 1},
    {"first_in_tls_dtor.ab", sc_ftd_ab, 0},
    {"first_in_tls_dtor.ba", sc_ftd_ba, 0},
    {"first_in_atfork.prepare", sc_af_prepare, 0},
    {"first_in_atfork.post", sc_af_post, 0},
    {"first_in_signal.main", sc_sig_main, 0},
    {"first_in_signal.thread", sc_sig_thread, 0},
    {"all", sc_all, 0},
    {"malloc_owner", sc_malloc_owner, 0},
};

/* Each scenario in a process of its own, each with its own watchdog. */
static int sc_all(void)
{
    alarm(0);
    int bad = 0;
    for (size_t i = 0; i < NELEM(scenarios); i++) {
        if (!scenarios[i].listed) continue;
        char a0[] = "lifecycle";
        char *av[4] = {a0, (char *)scenarios[i].name, (char *)g_arg, NULL};
        double t0 = now_s();
        pid_t pid;
        int e = posix_spawn(&pid, "/proc/self/exe", NULL, NULL, av, environ);
        if (e != 0) fail("posix_spawn: %s", strerror(e));
        int hung;
        int st = wait_child(pid, g_alarm_s + 10, &hung);
        char b[300];
        int ok = !hung && WIFEXITED(st) && (WEXITSTATUS(st) == 0 || WEXITSTATUS(st) == 2);
        int n = snprintf(b, sizeof b, "%s %s (%.1f s)%s\n", ok ? "ok:  " : "FAIL:", scenarios[i].name, now_s() - t0,
                         hung ? " hang" : WIFSIGNALED(st) ? " signal" : !ok ? " exit status" : "");
        if (write(1, b, (size_t)n) < 0) return 1;
        bad += !ok;
    }
    return bad ? 1 : 0;
}

/* Prints the file that defines the malloc this program calls, so the test
 * script can tell an xalloc build from a glibc one. */
static int sc_malloc_owner(void)
{
    Dl_info info;
    void *m = dlsym(RTLD_DEFAULT, "malloc");
    if (!m || !dladdr(m, &info) || !info.dli_fname) fail("cannot locate malloc");
    char b[600];
    int n = snprintf(b, sizeof b, "%s\n", info.dli_fname);
    if (write(1, b, (size_t)n) < 0) return 1;
    return 0;
}

static unsigned env_uint(const char *name, unsigned def)
{
    const char *v = getenv(name);
    if (!v || !*v) return def;
    long x = strtol(v, NULL, 10);
    return x > 0 && x < 100000 ? (unsigned)x : def;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        static const char usage[] = "usage: lifecycle <scenario> [dl-path]\n";
        if (write(2, usage, sizeof usage - 1) < 0) return 64;
        return 64;
    }
    g_scen = argv[1];
    g_arg = argc > 2 ? argv[2] : NULL;
    g_child_s = env_uint("LIFECYCLE_CHILD_TIMEOUT", 10);
    unsigned watchdog = env_uint("LIFECYCLE_TIMEOUT", 60);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGALRM, &sa, NULL) != 0) fail("sigaction(SIGALRM) failed");
    for (size_t i = 0; i < NELEM(scenarios); i++) {
        if (strcmp(scenarios[i].name, argv[1]) != 0) continue;
        /* A variant runs in a child of its scenario's process, which waits
         * g_child_s + 5 s: the variant's own watchdog must fire first. */
        arm_watchdog(strchr(argv[1], '.') ? g_child_s : watchdog);
        int rc = scenarios[i].fn();
        stage("exit", 0);
        exit(rc);
    }
    fail("unknown scenario (see the list at the top of test/lifecycle.c)");
}
