/* glibc-thread: threaded random sizes (after the idea of glibc's
 * bench-malloc-thread).
 *
 *   glibc_thread THREADS SCALE
 *
 * Each thread owns a working set of WS slots; it repeatedly picks a random
 * slot, verifies and frees its block (if any) and allocates a new one of a
 * random size skewed to small: 75% 4-256 B, 20% 257-4096 B, 5% 4-32 KiB.
 * Total operations = 24e6 * SCALE split over threads. */
#include "common.h"

#define WS 2048

typedef struct {
    int id;
    size_t ops;
    char pad[64];
} targ_t;

static inline size_t pick(rng_t *r)
{
    uint64_t x = rng_below(r, 100);
    if (x < 75) return rng_logsize(r, 4, 256);
    if (x < 95) return rng_logsize(r, 257, 4096);
    return rng_logsize(r, 4097, 32768);
}

static void *worker(void *arg)
{
    targ_t *a = (targ_t *)arg;
    rng_t r;
    rng_seed(&r, 0x61bc + (uint64_t)a->id);
    struct { void *p; uint32_t size; uint32_t key; } *w = calloc(WS, sizeof *w);
    if (!w) OOM_FAIL("calloc", WS * sizeof *w);
    uint32_t key = (uint32_t)a->id << 26;
    for (size_t i = 0; i < a->ops; i++) {
        size_t j = (size_t)rng_below(&r, WS);
        if (w[j].p) {
            CHECK_OBJ(w[j].p, w[j].size, w[j].key, "glibc-thread");
            free(w[j].p);
        }
        size_t sz = pick(&r);
        w[j].p = xmalloc_chk(sz);
        w[j].size = (uint32_t)sz;
        w[j].key = key++;
        tag_obj(w[j].p, sz, w[j].key);
    }
    for (size_t j = 0; j < WS; j++)
        if (w[j].p) {
            CHECK_OBJ(w[j].p, w[j].size, w[j].key, "glibc-thread final");
            free(w[j].p);
        }
    free(w);
    return NULL;
}

int main(int argc, char **argv)
{
    int nt = arg_threads(argc, argv, 2);
    double scale = arg_scale(argc, argv, 1.0);
    size_t total = scaled(24e6, scale, 1000);
    targ_t *args = (targ_t *)calloc((size_t)nt, sizeof *args);
    if (!args) OOM_FAIL("calloc", nt * sizeof *args);
    for (int i = 0; i < nt; i++) {
        args[i].id = i;
        args[i].ops = total / (size_t)nt;
    }
    run_threads(nt, worker, args, sizeof *args);
    free(args);
    return 0;
}
