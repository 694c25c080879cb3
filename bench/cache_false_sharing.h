/* Shared body of cache-scratch and cache-thrash (Hoard-style false-sharing
 * tests).  Each thread repeatedly allocates a small object, writes every byte
 * of it REPS times, verifies it and frees it.  If the allocator gives objects
 * of different threads the same cache line, the writes ping-pong the line
 * between cores and the run gets much slower than the 1-thread time.
 *   SCRATCH=0 (cache-thrash): threads allocate their own objects
 *             (active false sharing: allocator hands neighbouring objects to
 *             different threads).
 *   SCRATCH=1 (cache-scratch): the main thread allocates one object per
 *             thread back to back and hands them out; each thread frees its
 *             object first (passive false sharing: an allocator that reuses
 *             a remotely allocated block locally inherits the sharing).
 * With BENCH_VERBOSE=1 the number of thread pairs whose first objects share a
 * cache line is printed to stderr.
 * Total iterations = 300000 * SCALE split over threads, REPS writes each. */
#include "common.h"

#define OBJ_SIZE 8
#define REPS 1000

typedef struct {
    int id;
    size_t iters;
    pthread_barrier_t *bar;
    void *handed;          /* SCRATCH: object allocated by main */
    uintptr_t first;       /* address of the first object this thread wrote */
    uint64_t sum;
    char pad[64];
} targ_t;

static void *worker(void *arg)
{
    targ_t *a = (targ_t *)arg;
    if (SCRATCH) {
        CHECK_OBJ(a->handed, OBJ_SIZE, (uint64_t)a->id, "cache-scratch handed");
        free(a->handed);
    }
    for (size_t i = 0; i < a->iters; i++) {
        volatile unsigned char *p = (volatile unsigned char *)xmalloc_chk(OBJ_SIZE);
        if (i == 0) {
            a->first = (uintptr_t)p;
            /* make sure every thread's first object is live at the same time */
            pthread_barrier_wait(a->bar);
        }
        for (int b = 0; b < OBJ_SIZE; b++) p[b] = (unsigned char)(a->id + b);
        for (int r = 0; r < REPS; r++)
            for (int b = 0; b < OBJ_SIZE; b++) p[b]++;
        for (int b = 0; b < OBJ_SIZE; b++)
            if (p[b] != (unsigned char)(a->id + b + REPS))
                VERIFY_FAIL("cache test: thread %d object %p byte %d = %u", a->id, (void *)p, b, p[b]);
        a->sum += p[0];
        free((void *)p);
    }
    if (a->iters == 0) pthread_barrier_wait(a->bar);
    return NULL;
}

int main(int argc, char **argv)
{
    int nt = arg_threads(argc, argv, 2);
    double scale = arg_scale(argc, argv, 1.0);
    size_t total = scaled(300000, scale, (size_t)nt);
    targ_t *args = (targ_t *)calloc((size_t)nt, sizeof *args);
    if (!args) OOM_FAIL("calloc", nt * sizeof *args);
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, (unsigned)nt);
    for (int i = 0; i < nt; i++) {
        args[i].id = i;
        args[i].bar = &bar;
        args[i].iters = total / (size_t)nt;
        if (SCRATCH) {
            args[i].handed = xmalloc_chk(OBJ_SIZE);
            tag_obj(args[i].handed, OBJ_SIZE, (uint64_t)i);
        }
    }
    run_threads(nt, worker, args, sizeof *args);
    pthread_barrier_destroy(&bar);
    uint64_t want = 0, got = 0;
    for (int i = 0; i < nt; i++) {
        got += args[i].sum;
        want += (uint64_t)args[i].iters * (unsigned char)(i + REPS);
    }
    if (got != want) VERIFY_FAIL("cache test: checksum %llu != %llu", (unsigned long long)got,
                                 (unsigned long long)want);
    if (bench_verbose()) {
        int pairs = 0;
        for (int i = 0; i < nt; i++)
            for (int j = i + 1; j < nt; j++)
                if (args[i].first / CACHE_LINE == args[j].first / CACHE_LINE) pairs++;
        fprintf(stderr, "%s: %d thread pair(s) share a cache line for their first object\n",
                SCRATCH ? "cache-scratch" : "cache-thrash", pairs);
    }
    free(args);
    return 0;
}
