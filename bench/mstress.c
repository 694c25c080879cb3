/* mstress: mixed lifetimes and sizes, multi-threaded.
 *
 *   mstress THREADS SCALE
 *
 * PHASES generations of THREADS threads run one after the other (threads
 * exit between phases, so thread-exit handling is exercised).  Each thread
 * runs a random mix of
 *   70%  short-lived:   allocate 1..8 blocks, free them in random order;
 *   25%  medium-lived:  replace a random block of a per-thread ring of
 *                       MED blocks (freed when the thread exits);
 *    5%  long-lived:    atomically swap a block into a random slot of a
 *                       global array of LONG blocks that outlives threads;
 *                       the displaced block, usually allocated by another
 *                       thread or an earlier phase, is verified and freed.
 * Sizes are skewed to small: 80% 8-128 B, 15% 128-2048 B, 4.5% 2-32 KiB,
 * 0.5% 32-256 KiB.  Total operations = 10e6 * SCALE. */
#include "common.h"

#define PHASES 4
#define MED 2000
#define LONG 8192
#define SHORT_MAX 8

/* long-lived blocks carry their own size and key */
typedef struct { uint64_t size, key; } hdr_t;

static void *volatile long_slots[LONG];

typedef struct {
    int id, phase;
    size_t ops;
    uint64_t allocs;
    char pad[64];
} targ_t;

static inline size_t pick_size(rng_t *r)
{
    uint64_t x = rng_below(r, 1000);
    if (x < 800) return rng_logsize(r, 8, 128);
    if (x < 950) return rng_logsize(r, 129, 2048);
    if (x < 995) return rng_logsize(r, 2049, 32768);
    return rng_logsize(r, 32769, 262144);
}

static void *new_long(size_t sz, uint64_t key)
{
    if (sz < sizeof(hdr_t) + 8) sz = sizeof(hdr_t) + 8;
    char *p = (char *)xmalloc_chk(sz);
    hdr_t h = {sz, key};
    memcpy(p, &h, sizeof h);
    uint64_t t = tag_of(key, sz);
    memcpy(p + sz - 8, &t, 8);
    return p;
}

static void free_long(void *q, const char *what)
{
    hdr_t h;
    memcpy(&h, q, sizeof h);
    uint64_t t;
    if (h.size < sizeof(hdr_t) + 8 || h.size > 262144)
        VERIFY_FAIL("%s: long-lived block %p has bad size %llu", what, q, (unsigned long long)h.size);
    memcpy(&t, (char *)q + h.size - 8, 8);
    if (t != tag_of(h.key, h.size))
        VERIFY_FAIL("%s: long-lived block %p (size %llu) corrupted", what, q, (unsigned long long)h.size);
    free(q);
}

static void *worker(void *arg)
{
    targ_t *a = (targ_t *)arg;
    rng_t r;
    rng_seed(&r, 0x5000 + (uint64_t)a->id * 131 + (uint64_t)a->phase);
    uint64_t key = ((uint64_t)a->phase << 56) | ((uint64_t)a->id << 40);
    struct { void *p; uint32_t size; uint64_t key; } med[MED], sh[SHORT_MAX];
    for (int i = 0; i < MED; i++) {
        size_t sz = pick_size(&r);
        med[i].p = xmalloc_chk(sz);
        med[i].size = (uint32_t)sz;
        med[i].key = key++;
        tag_obj(med[i].p, sz, med[i].key);
    }
    for (size_t op = 0; op < a->ops; op++) {
        uint64_t x = rng_below(&r, 100);
        if (x < 70) {
            int k = 1 + (int)rng_below(&r, SHORT_MAX);
            for (int i = 0; i < k; i++) {
                size_t sz = pick_size(&r);
                sh[i].p = xmalloc_chk(sz);
                sh[i].size = (uint32_t)sz;
                sh[i].key = key++;
                tag_obj(sh[i].p, sz, sh[i].key);
            }
            /* free in random order */
            for (int i = k; i > 0; i--) {
                int j = (int)rng_below(&r, (uint64_t)i);
                CHECK_OBJ(sh[j].p, sh[j].size, sh[j].key, "mstress short");
                free(sh[j].p);
                sh[j] = sh[i - 1];
            }
            a->allocs += (uint64_t)k;
        } else if (x < 95) {
            int j = (int)rng_below(&r, MED);
            CHECK_OBJ(med[j].p, med[j].size, med[j].key, "mstress medium");
            free(med[j].p);
            size_t sz = pick_size(&r);
            med[j].p = xmalloc_chk(sz);
            med[j].size = (uint32_t)sz;
            med[j].key = key++;
            tag_obj(med[j].p, sz, med[j].key);
            a->allocs++;
        } else {
            void *p = new_long(pick_size(&r), key++);
            int j = (int)rng_below(&r, LONG);
            void *old = __atomic_exchange_n(&long_slots[j], p, __ATOMIC_ACQ_REL);
            if (old) free_long(old, "mstress long");
            a->allocs++;
        }
    }
    for (int i = 0; i < MED; i++) {
        CHECK_OBJ(med[i].p, med[i].size, med[i].key, "mstress exit");
        free(med[i].p);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int nt = arg_threads(argc, argv, 2);
    double scale = arg_scale(argc, argv, 1.0);
    size_t total = scaled(10e6, scale, 1000);
    targ_t *args = (targ_t *)calloc((size_t)nt, sizeof *args);
    if (!args) OOM_FAIL("calloc", nt * sizeof *args);
    uint64_t allocs = 0;
    for (int ph = 0; ph < PHASES; ph++) {
        for (int i = 0; i < nt; i++) {
            args[i].id = i;
            args[i].phase = ph;
            args[i].ops = total / ((size_t)nt * PHASES);
            args[i].allocs = 0;
        }
        run_threads(nt, worker, args, sizeof *args);
        for (int i = 0; i < nt; i++) allocs += args[i].allocs;
    }
    for (int j = 0; j < LONG; j++)
        if (long_slots[j]) free_long(long_slots[j], "mstress final");
    free(args);
    if (bench_verbose()) fprintf(stderr, "mstress: %llu allocations\n", (unsigned long long)allocs);
    return 0;
}
