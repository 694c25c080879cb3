/* larson: server simulation (after the workload described by Larson & Krishnan).
 *
 *   larson THREADS SCALE
 *
 * Each of THREADS "connections" owns an array of SLOTS slots holding blocks
 * of 8..1000 bytes.  A thread repeatedly picks a random slot, verifies and
 * frees its block and allocates a new random-sized one.  After its share of
 * the round's operations the thread creates its successor, hands it the slot
 * array (the survivors, mostly allocated by this thread) and exits; the
 * successor frees them remotely.  ROUNDS generations of threads run; there
 * is no global barrier between rounds.  The main thread fills all arrays
 * first, so round 0 frees blocks allocated by another thread too.
 * Total operations = 100e6 * SCALE, split evenly over threads and rounds. */
#include "common.h"

#define SLOTS 1000
#define MIN_SZ 8
#define MAX_SZ 1000
#define ROUNDS 10

typedef struct {
    void *p;
    uint32_t size;
    uint32_t key;
} slot_t;

typedef struct {
    slot_t *slots;
    rng_t rng;
    int id;
    int round;
    uint32_t next_key;
    size_t ops;          /* per round */
    uint64_t bytes;      /* allocated so far, for the checksum */
    char pad[64];
} conn_t;

static pthread_mutex_t done_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cv = PTHREAD_COND_INITIALIZER;
static int live_threads;

static void *worker(void *arg)
{
    conn_t *c = (conn_t *)arg;
    slot_t *s = c->slots;
    for (size_t i = 0; i < c->ops; i++) {
        uint32_t j = (uint32_t)rng_below(&c->rng, SLOTS);
        CHECK_OBJ(s[j].p, s[j].size, s[j].key, "larson free");
        free(s[j].p);
        uint32_t sz = (uint32_t)rng_range(&c->rng, MIN_SZ, MAX_SZ);
        uint32_t key = c->next_key++;
        void *p = xmalloc_chk(sz);
        tag_obj(p, sz, key);
        s[j].p = p;
        s[j].size = sz;
        s[j].key = key;
        c->bytes += sz;
    }
    if (++c->round < ROUNDS) {
        /* successor takes over this connection's surviving blocks */
        pthread_t t;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        int e = pthread_create(&t, &at, worker, c);
        pthread_attr_destroy(&at);
        if (e) bench_die(1, "pthread_create: %s", strerror(e));
    } else {
        pthread_mutex_lock(&done_mu);
        if (--live_threads == 0) pthread_cond_signal(&done_cv);
        pthread_mutex_unlock(&done_mu);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int nt = arg_threads(argc, argv, 2);
    double scale = arg_scale(argc, argv, 1.0);
    size_t total = scaled(100e6, scale, 1000);
    size_t per = total / ((size_t)nt * ROUNDS);
    if (per < 1) per = 1;

    conn_t *conns = (conn_t *)calloc((size_t)nt, sizeof *conns);
    if (!conns) OOM_FAIL("calloc", nt * sizeof *conns);
    for (int i = 0; i < nt; i++) {
        conn_t *c = &conns[i];
        c->id = i;
        c->ops = per;
        c->next_key = (uint32_t)i << 24;
        rng_seed(&c->rng, 0x1a250 + (uint64_t)i);
        c->slots = (slot_t *)xmalloc_chk(SLOTS * sizeof(slot_t));
        for (int j = 0; j < SLOTS; j++) {
            uint32_t sz = (uint32_t)rng_range(&c->rng, MIN_SZ, MAX_SZ);
            uint32_t key = c->next_key++;
            c->slots[j].p = xmalloc_chk(sz);
            tag_obj(c->slots[j].p, sz, key);
            c->slots[j].size = sz;
            c->slots[j].key = key;
        }
    }

    live_threads = nt;
    for (int i = 0; i < nt; i++) {
        pthread_t t;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        int e = pthread_create(&t, &at, worker, &conns[i]);
        pthread_attr_destroy(&at);
        if (e) bench_die(1, "pthread_create: %s", strerror(e));
    }
    pthread_mutex_lock(&done_mu);
    while (live_threads > 0) pthread_cond_wait(&done_cv, &done_mu);
    pthread_mutex_unlock(&done_mu);

    uint64_t bytes = 0;
    for (int i = 0; i < nt; i++) {
        conn_t *c = &conns[i];
        if (c->round != ROUNDS) VERIFY_FAIL("larson: connection %d ran %d rounds", i, c->round);
        for (int j = 0; j < SLOTS; j++) {
            CHECK_OBJ(c->slots[j].p, c->slots[j].size, c->slots[j].key, "larson final");
            free(c->slots[j].p);
        }
        free(c->slots);
        bytes += c->bytes;
    }
    free(conns);
    if (bench_verbose())
        fprintf(stderr, "larson: threads=%d ops/thread/round=%zu allocated=%llu bytes\n",
                nt, per, (unsigned long long)bytes);
    return 0;
}
