/* lifecycle_dl: the library test/lifecycle.c's dlopen scenario loads and
 * unloads 1000 times while other threads allocate.
 *
 * The constructor allocates blocks of several sizes (small, large, and one
 * above 2 MiB that allocators map on its own) into library globals; the
 * destructor checks and frees them.  lcdl_work, called between dlopen and
 * dlclose, allocates and frees, creates a pthread key with a destructor and
 * a thread that uses it, this library's dynamic TLS (which ld.so allocates
 * with malloc on first use in each thread) and a thread_local-style
 * destructor (__cxa_thread_atexit_impl).  Failures in the constructor or
 * destructor print one line and _exit(1): nobody could be told otherwise.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "lifecycle_pat.h"

extern int __cxa_thread_atexit_impl(void (*func)(void *), void *obj, void *dso_symbol);
extern void *__dso_handle;

#define NG 8
static const size_t g_size[NG] = {16, 100, 1000, 4000, 40000, 300000, 1536u << 10, 3u << 20};
static struct {
    unsigned char *p;
    size_t n;
    uint64_t seed;
} g[NG];
/* Calls of lcdl_work in this instance: more than one means dlclose left
 * the previous instance mapped and its constructor did not run again. */
static int works;
static char err[300];
static __thread unsigned char tls_buf[200];
static pthread_key_t key;
static atomic_int key_dtor_runs, tls_dtor_runs;

static void die(const char *what)
{
    char b[300];
    int n = snprintf(b, sizeof b, "lifecycle_dl: %s\n", what);
    if (write(2, b, (size_t)n) < 0) { /* nothing left to report to */ }
    _exit(1);
}

/* The whole block checked. */
static int pat_ok(const unsigned char *p, size_t n, uint64_t seed) { return pat_bad(p, n, seed, n) == 0; }

static void *alloc_filled(size_t n, uint64_t seed)
{
    unsigned char *p = malloc(n);
    if (p) pat_fill(p, n, seed);
    return p;
}

__attribute__((constructor)) static void lcdl_ctor(void)
{
    for (int i = 0; i < NG; i++) {
        g[i].n = g_size[i];
        g[i].seed = 0xD1D1u + (uint64_t)i;
        g[i].p = alloc_filled(g[i].n, g[i].seed);
        if (!g[i].p) die("constructor: malloc returned NULL");
    }
}

__attribute__((destructor)) static void lcdl_dtor(void)
{
    for (int i = 0; i < NG; i++) {
        if (!pat_ok(g[i].p, g[i].n, g[i].seed)) die("destructor: a constructor block is corrupted");
        free(g[i].p);
        g[i].p = NULL;
    }
}

struct tobj {
    unsigned char *p;
    size_t n;
    uint64_t seed;
};

static void key_dtor(void *v)
{
    struct tobj *o = v;
    if (!pat_ok(o->p, o->n, o->seed)) die("key destructor: block corrupted");
    free(o->p);
    free(o);
    atomic_fetch_add(&key_dtor_runs, 1);
}

static void tls_dtor(void *v)
{
    struct tobj *o = v;
    if (!pat_ok(o->p, o->n, o->seed)) die("thread_local destructor: block corrupted");
    if (!pat_ok(tls_buf, sizeof tls_buf, 0x7777)) die("thread_local destructor: TLS corrupted");
    free(o->p);
    free(o);
    atomic_fetch_add(&tls_dtor_runs, 1);
}

static struct tobj *tobj_new(size_t n, uint64_t seed)
{
    struct tobj *o = malloc(sizeof *o);
    if (!o) return NULL;
    o->n = n;
    o->seed = seed;
    o->p = alloc_filled(n, seed);
    if (!o->p) { free(o); return NULL; }
    return o;
}

static void *thread_main(void *arg)
{
    unsigned round = (unsigned)(uintptr_t)arg;
    /* First use of this library's TLS in this thread: ld.so mallocs it. */
    pat_fill(tls_buf, sizeof tls_buf, 0x7777);
    struct tobj *a = tobj_new(1000 + round % 500, round), *b = tobj_new(50000, round + 1);
    if (!a || !b) return (void *)"thread: malloc returned NULL";
    if (pthread_setspecific(key, a) != 0) return (void *)"pthread_setspecific failed";
    if (__cxa_thread_atexit_impl(tls_dtor, b, &__dso_handle) != 0) return (void *)"__cxa_thread_atexit_impl failed";
    return NULL;
}

const char *lcdl_error(void) { return err; }

/* Returns 0, or 1 with a message for lcdl_error(). */
int lcdl_work(unsigned round)
{
#define FAIL(...) do { snprintf(err, sizeof err, __VA_ARGS__); return 1; } while (0)
    if (++works != 1) FAIL("lcdl_work ran %d times in one instance: dlclose did not unload the library", works);
    for (int i = 0; i < NG; i++)
        if (!pat_ok(g[i].p, g[i].n, g[i].seed)) FAIL("constructor block %d (%zu bytes) corrupted", i, g[i].n);
    void *p[16];
    for (int i = 0; i < 16; i++) {
        size_t n = (size_t)(i + 1) * (i < 12 ? 97 : 9001);
        if (!(p[i] = alloc_filled(n, round + (uint64_t)i))) FAIL("malloc(%zu) returned NULL", n);
    }
    for (int i = 0; i < 16; i++) {
        if (!pat_ok(p[i], (size_t)(i + 1) * (i < 12 ? 97 : 9001), round + (uint64_t)i)) FAIL("block %d corrupted", i);
        free(p[i]);
    }
    /* The main thread's dynamic TLS block of this instance: freed by ld.so
     * later (when the module id is reused), by the allocator in use now. */
    pat_fill(tls_buf, sizeof tls_buf, round);
    atomic_store(&key_dtor_runs, 0);
    atomic_store(&tls_dtor_runs, 0);
    if (pthread_key_create(&key, key_dtor) != 0) FAIL("pthread_key_create failed");
    pthread_t t;
    void *ret;
    if (pthread_create(&t, NULL, thread_main, (void *)(uintptr_t)round) != 0) FAIL("pthread_create failed");
    if (pthread_join(t, &ret) != 0) FAIL("pthread_join failed");
    if (ret) FAIL("%s", (const char *)ret);
    if (atomic_load(&key_dtor_runs) != 1) FAIL("key destructor ran %d times", atomic_load(&key_dtor_runs));
    if (atomic_load(&tls_dtor_runs) != 1) FAIL("thread_local destructor ran %d times", atomic_load(&tls_dtor_runs));
    /* The key's destructor lives in this library: delete it before dlclose. */
    if (pthread_key_delete(key) != 0) FAIL("pthread_key_delete failed");
    if (!pat_ok(tls_buf, sizeof tls_buf, round)) FAIL("main thread's TLS block corrupted");
    return 0;
#undef FAIL
}
