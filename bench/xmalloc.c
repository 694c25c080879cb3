/* xmalloc: producer/consumer (after the xmalloc-test idea of Lever & Boreham).
 *
 *   xmalloc THREADS SCALE
 *
 * ceil(THREADS/2) producer threads only allocate: they fill batches of
 * BATCH blocks (16..512 bytes, log-skewed) and push each batch onto one
 * shared mutex/condvar-protected queue.  The other THREADS/2 threads only
 * consume: they pop batches, verify every block and free it, so nearly every
 * free is a remote free.  The queue is bounded (producers wait when it holds
 * QMAX batches).  With THREADS == 1 a single thread alternates producing a
 * batch and consuming one.  Total blocks = 8e6 * SCALE. */
#include "common.h"

#define BATCH 128
#define QMAX 256

typedef struct batch {
    struct batch *next;
    int n;
    uint32_t size[BATCH];
    uint64_t key[BATCH];
    void *p[BATCH];
} batch_t;

static struct {
    pthread_mutex_t mu;
    pthread_cond_t not_empty, not_full;
    batch_t *head, *tail;
    int len;
    int producers_left;
} q = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, NULL, 0, 0};

typedef struct {
    int id;
    size_t nbatches;     /* producer: batches to make */
    uint64_t count;      /* blocks produced / consumed */
    uint64_t sum;        /* key sum produced / consumed */
    char pad[64];
} targ_t;

static void push(batch_t *b)
{
    pthread_mutex_lock(&q.mu);
    while (q.len >= QMAX) pthread_cond_wait(&q.not_full, &q.mu);
    b->next = NULL;
    if (q.tail) q.tail->next = b; else q.head = b;
    q.tail = b;
    q.len++;
    pthread_cond_signal(&q.not_empty);
    pthread_mutex_unlock(&q.mu);
}

/* NULL when all producers are done and the queue is empty */
static batch_t *pop(void)
{
    pthread_mutex_lock(&q.mu);
    while (!q.head && q.producers_left > 0) pthread_cond_wait(&q.not_empty, &q.mu);
    batch_t *b = q.head;
    if (b) {
        q.head = b->next;
        if (!q.head) q.tail = NULL;
        q.len--;
        pthread_cond_signal(&q.not_full);
    }
    pthread_mutex_unlock(&q.mu);
    return b;
}

static batch_t *make_batch(targ_t *a, rng_t *r, uint64_t *key)
{
    batch_t *b = (batch_t *)xmalloc_chk(sizeof *b);
    b->n = BATCH;
    for (int i = 0; i < BATCH; i++) {
        size_t sz = rng_logsize(r, 16, 512);
        uint64_t k = (*key)++;
        void *p = xmalloc_chk(sz);
        tag_obj(p, sz, k);
        b->p[i] = p;
        b->size[i] = (uint32_t)sz;
        b->key[i] = k;
        a->sum += k;
    }
    a->count += BATCH;
    return b;
}

static void eat_batch(targ_t *a, batch_t *b)
{
    for (int i = 0; i < b->n; i++) {
        CHECK_OBJ(b->p[i], b->size[i], b->key[i], "xmalloc consumer");
        free(b->p[i]);
        a->sum += b->key[i];
    }
    a->count += (uint64_t)b->n;
    free(b);
}

static void *producer(void *arg)
{
    targ_t *a = (targ_t *)arg;
    rng_t r;
    rng_seed(&r, 0x9000 + (uint64_t)a->id);
    uint64_t key = (uint64_t)a->id << 40;
    for (size_t i = 0; i < a->nbatches; i++) push(make_batch(a, &r, &key));
    pthread_mutex_lock(&q.mu);
    if (--q.producers_left == 0) pthread_cond_broadcast(&q.not_empty);
    pthread_mutex_unlock(&q.mu);
    return NULL;
}

static void *consumer(void *arg)
{
    targ_t *a = (targ_t *)arg;
    batch_t *b;
    while ((b = pop()) != NULL) eat_batch(a, b);
    return NULL;
}

static void *worker(void *arg)
{
    targ_t *a = (targ_t *)arg;
    return a->nbatches ? producer(a) : consumer(a);
}

int main(int argc, char **argv)
{
    int nt = arg_threads(argc, argv, 2);
    double scale = arg_scale(argc, argv, 1.0);
    size_t total_batches = scaled(8e6 / BATCH, scale, 4);

    if (nt == 1) {
        targ_t prod = {0}, cons = {0};
        rng_t r;
        rng_seed(&r, 0x9000);
        uint64_t key = 0;
        q.producers_left = 1;
        for (size_t i = 0; i < total_batches; i++) {
            push(make_batch(&prod, &r, &key));
            if (i & 1) { eat_batch(&cons, pop()); eat_batch(&cons, pop()); }
        }
        q.producers_left = 0;
        batch_t *b;
        while ((b = pop()) != NULL) eat_batch(&cons, b);
        if (prod.count != cons.count || prod.sum != cons.sum)
            VERIFY_FAIL("xmalloc: produced %llu consumed %llu",
                        (unsigned long long)prod.count, (unsigned long long)cons.count);
        return 0;
    }

    int np = (nt + 1) / 2, nc = nt - np;
    targ_t *args = (targ_t *)calloc((size_t)nt, sizeof *args);
    if (!args) OOM_FAIL("calloc", nt * sizeof *args);
    for (int i = 0; i < nt; i++) {
        args[i].id = i;
        if (i < np) args[i].nbatches = total_batches / (size_t)np + ((size_t)i < total_batches % (size_t)np);
    }
    q.producers_left = np;
    run_threads(nt, worker, args, sizeof *args);

    uint64_t pc = 0, ps = 0, cc = 0, cs = 0;
    for (int i = 0; i < np; i++) pc += args[i].count, ps += args[i].sum;
    for (int i = np; i < nt; i++) cc += args[i].count, cs += args[i].sum;
    if (q.head || pc != cc || ps != cs)
        VERIFY_FAIL("xmalloc: produced %llu blocks, consumed %llu (sums %llx/%llx)",
                    (unsigned long long)pc, (unsigned long long)cc,
                    (unsigned long long)ps, (unsigned long long)cs);
    if (pc != (uint64_t)total_batches * BATCH)
        VERIFY_FAIL("xmalloc: produced %llu of %llu blocks", (unsigned long long)pc,
                    (unsigned long long)total_batches * BATCH);
    if (bench_verbose()) fprintf(stderr, "xmalloc: %d producers %d consumers %llu blocks\n", np, nc,
                                 (unsigned long long)pc);
    free(args);
    return 0;
}
