/* Shared helpers for the xalloc benchmark programs (the .c files in bench/).
 *
 * Every workload is invoked as   prog THREADS SCALE [extra...]
 *   THREADS  number of worker threads (ignored by single-threaded workloads)
 *   SCALE    work multiplier; 1.0 is the full-size configuration, the quick
 *            CI mode passes something like 0.05.
 * On success a program prints nothing except an optional checksum / the
 * measurements the runner parses; on a data-verification failure it prints
 * a message to stderr and exits with status 3 (BENCH_EXIT_VERIFY).
 * Set BENCH_VERBOSE=1 in the environment for diagnostics on stderr. */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BENCH_EXIT_VERIFY 3
#define BENCH_EXIT_OOM 4
#define BENCH_EXIT_USAGE 2

#define UNUSED __attribute__((unused))
#define NOINLINE __attribute__((noinline))
#define LIKELY(x) __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)

static void bench_die(int code, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 2, 3), unused));
static void bench_die(int code, const char *fmt, ...)
{
    /* Format into a stack buffer and write(2) it: no stdio buffers, no malloc
     * (the allocator may be the thing that is broken). */
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    if (n > (int)sizeof buf - 2) n = (int)sizeof buf - 2;
    buf[n++] = '\n';
    ssize_t w UNUSED = write(2, buf, (size_t)n);
    _exit(code);
}

#define VERIFY_FAIL(...) bench_die(BENCH_EXIT_VERIFY, "VERIFY FAILED: " __VA_ARGS__)
#define OOM_FAIL(what, n) bench_die(BENCH_EXIT_OOM, "OUT OF MEMORY: %s(%zu)", (what), (size_t)(n))

static inline int bench_verbose(void)
{
    static int v = -1;
    if (v < 0) {
        const char *e = getenv("BENCH_VERBOSE");
        v = (e && *e && *e != '0');
    }
    return v;
}

/* ---- arguments ---------------------------------------------------------- */
static UNUSED int arg_threads(int argc, char **argv, int def)
{
    if (argc > 1) {
        int t = atoi(argv[1]);
        if (t < 1 || t > 1024) bench_die(BENCH_EXIT_USAGE, "bad thread count '%s'", argv[1]);
        return t;
    }
    return def;
}

static UNUSED double arg_scale(int argc, char **argv, double def)
{
    if (argc > 2) {
        double s = atof(argv[2]);
        if (!(s > 0.0) || s > 1e6) bench_die(BENCH_EXIT_USAGE, "bad scale '%s'", argv[2]);
        return s;
    }
    return def;
}

/* scaled count, at least `min` */
static inline size_t scaled(double base, double scale, size_t min)
{
    double v = base * scale;
    return v < (double)min ? min : (size_t)v;
}

/* ---- random numbers (splitmix64 seed, xorshift128+-like stream) --------- */
static inline uint64_t mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

typedef struct { uint64_t s0, s1; } rng_t;

static inline void rng_seed(rng_t *r, uint64_t seed)
{
    r->s0 = mix64(seed);
    r->s1 = mix64(r->s0 ^ 0x5851f42d4c957f2dULL);
    if (!(r->s0 | r->s1)) r->s1 = 1;
}

static inline uint64_t rng_next(rng_t *r)
{
    uint64_t s1 = r->s0;
    const uint64_t s0 = r->s1;
    const uint64_t res = s0 + s1;
    r->s0 = s0;
    s1 ^= s1 << 23;
    r->s1 = s1 ^ s0 ^ (s1 >> 18) ^ (s0 >> 5);
    return res;
}

/* uniform in [0, n) (n > 0), multiply-shift: no division */
static inline uint64_t rng_below(rng_t *r, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)rng_next(r) * n) >> 64);
}

/* uniform in [lo, hi] */
static inline uint64_t rng_range(rng_t *r, uint64_t lo, uint64_t hi)
{
    return lo + rng_below(r, hi - lo + 1);
}

/* size in [lo, hi] skewed to small: log-uniform over the range */
static inline size_t rng_logsize(rng_t *r, size_t lo, size_t hi)
{
    if (hi <= lo) return lo;
    unsigned blo = 63 - (unsigned)__builtin_clzll(lo | 1);
    unsigned bhi = 63 - (unsigned)__builtin_clzll(hi);
    unsigned b = blo + (unsigned)rng_below(r, bhi - blo + 1);
    size_t base = (size_t)1 << b;
    size_t s = base + (size_t)rng_below(r, base);
    if (s < lo) s = lo;
    if (s > hi) s = hi;
    return s;
}

/* ---- object tagging ------------------------------------------------------
 * tag_obj writes a 64-bit tag derived from (key, size) into the first and
 * last 8 bytes of a block (bytes for tiny blocks); check_obj verifies them.
 * Overlapping or double-handed-out blocks, or a realloc that loses data,
 * overwrite a tag and are caught when the object is checked before free. */
static inline uint64_t tag_of(uint64_t key, size_t size)
{
    return mix64(key * 0x100000001b3ULL ^ (uint64_t)size);
}

static inline void tag_obj(void *p, size_t size, uint64_t key)
{
    uint64_t t = tag_of(key, size);
    unsigned char *c = (unsigned char *)p;
    if (size >= 16) {
        memcpy(c, &t, 8);
        memcpy(c + size - 8, &t, 8);
    } else {
        for (size_t i = 0; i < size; i++) c[i] = (unsigned char)(t >> (8 * (i & 7)));
    }
}

static inline int obj_ok(const void *p, size_t size, uint64_t key)
{
    uint64_t t = tag_of(key, size), a, b;
    const unsigned char *c = (const unsigned char *)p;
    if (size >= 16) {
        memcpy(&a, c, 8);
        memcpy(&b, c + size - 8, 8);
        return a == t && b == t;
    }
    for (size_t i = 0; i < size; i++)
        if (c[i] != (unsigned char)(t >> (8 * (i & 7)))) return 0;
    return 1;
}

#define CHECK_OBJ(p, size, key, what)                                             \
    do {                                                                          \
        if (UNLIKELY(!obj_ok((p), (size), (key))))                                \
            VERIFY_FAIL("%s: block %p size %zu key %llu corrupted (%s:%d)",        \
                        (what), (void *)(p), (size_t)(size),                      \
                        (unsigned long long)(key), __FILE__, __LINE__);           \
    } while (0)

static inline void *xmalloc_chk(size_t n)
{
    void *p = malloc(n);
    if (UNLIKELY(!p && n)) OOM_FAIL("malloc", n);
    return p;
}

static inline void *xrealloc_chk(void *q, size_t n)
{
    void *p = realloc(q, n);
    if (UNLIKELY(!p && n)) OOM_FAIL("realloc", n);
    return p;
}

/* ---- time and memory ------------------------------------------------------ */
static inline double now_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Read "Key:   123 kB" from a /proc file (status, smaps_rollup) with raw
 * syscalls (no stdio, no malloc).  Returns -1 if unavailable. */
static UNUSED long proc_kb(const char *path, const char *key)
{
    char buf[4096];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    size_t kl = strlen(key);
    for (char *s = buf; s && *s; ) {
        if (strncmp(s, key, kl) == 0 && s[kl] == ':') return strtol(s + kl + 1, NULL, 10);
        s = strchr(s, '\n');
        if (s) s++;
    }
    return -1;
}

static UNUSED long proc_status_kb(const char *key) { return proc_kb("/proc/self/status", key); }

/* Current RSS in KiB from /proc/self/statm (cheap; no stdio, no malloc). */
static UNUSED long rss_kb_now(void)
{
    char buf[256];
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    char *s = strchr(buf, ' ');
    if (!s) return -1;
    long pages = strtol(s + 1, NULL, 10);
    return pages * (sysconf(_SC_PAGESIZE) / 1024);
}

/* ---- threads --------------------------------------------------------------- */
static UNUSED void run_threads(int n, void *(*fn)(void *), void *args, size_t argsize)
{
    pthread_t *t = (pthread_t *)calloc((size_t)n, sizeof *t);
    if (!t) OOM_FAIL("calloc", (size_t)n * sizeof *t);
    for (int i = 0; i < n; i++) {
        int e = pthread_create(&t[i], NULL, fn, (char *)args + (size_t)i * argsize);
        if (e) bench_die(1, "pthread_create: %s", strerror(e));
    }
    for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
    free(t);
}

/* keep the compiler from proving a value unused */
static inline void sink_u64(uint64_t v) { __asm__ volatile("" : : "r"(v) : "memory"); }
static inline void sink_ptr(void *p) { __asm__ volatile("" : : "r"(p) : "memory"); }

/* cache-line padding helper */
#define CACHE_LINE 64
#define PADDED(type, name) \
    union { type name; char name##_pad[((sizeof(type) + CACHE_LINE - 1) / CACHE_LINE) * CACHE_LINE]; }

#endif
