/* Shared body of sh6bench / sh8bench style workloads (bursts of varied sizes
 * freed in different orders, after the MicroQuill SmartHeap benchmarks).
 *
 *   sh6bench THREADS SCALE      (SH8=0)
 *   sh8bench THREADS SCALE      (SH8=1)
 *
 * Every thread runs rounds; a round allocates a burst of 250..2000 blocks
 * (60% 1-64 B, 30% 65-512 B, 10% 513-4096 B), tags them, reallocs ~10% of
 * them to a new size, then frees them in an order that cycles through LIFO,
 * FIFO, random and interleaved (odd indices, then even).  Every 4th round a
 * random half of the burst is freed and re-allocated with other sizes before
 * the final free.
 * SH8=1 adds cross-thread frees: the second half of each burst is handed to
 * the next thread's mailbox, and each thread frees (in reverse order) the
 * batches it receives; a mailbox holds at most MAX_PENDING batches (a sender
 * that finds it full drains its own mailbox and yields).  Total blocks = 12e6 * SCALE split over threads. */
#include "common.h"
#include <sched.h>

#define BURST_MIN 250
#define BURST_MAX 2000

typedef struct { void *p; uint32_t size; uint32_t key; } blk_t;

typedef struct batch {
    struct batch *next;
    size_t n;
    blk_t b[];
} batch_t;

#define MAX_PENDING 8   /* batches a mailbox may hold before the sender waits */

typedef struct {
    pthread_mutex_t mu;
    batch_t *head;
    int pending;
    char pad[64];
} mailbox_t;

typedef struct {
    int id, nt;
    size_t blocks;             /* blocks to allocate */
    mailbox_t *boxes;
    int *finished;
    uint64_t freed, made;
    char pad[64];
} targ_t;

static inline size_t sh_size(rng_t *r)
{
    uint64_t x = rng_below(r, 10);
    if (x < 6) return (size_t)rng_range(r, 1, 64);
    if (x < 9) return (size_t)rng_range(r, 65, 512);
    return (size_t)rng_range(r, 513, 4096);
}

static inline void blk_new(blk_t *b, rng_t *r, uint32_t *key)
{
    size_t sz = sh_size(r);
    b->p = xmalloc_chk(sz);
    b->size = (uint32_t)sz;
    b->key = (*key)++;
    tag_obj(b->p, sz, b->key);
}

static inline void blk_free(blk_t *b, const char *what)
{
    CHECK_OBJ(b->p, b->size, b->key, what);
    free(b->p);
}

static void drain(targ_t *a)
{
    mailbox_t *mb = &a->boxes[a->id];
    pthread_mutex_lock(&mb->mu);
    batch_t *l = mb->head;
    mb->head = NULL;
    mb->pending = 0;
    pthread_mutex_unlock(&mb->mu);
    while (l) {
        batch_t *n = l->next;
        for (size_t i = l->n; i > 0; i--) blk_free(&l->b[i - 1], "sh8 remote");
        a->freed += l->n;
        free(l);
        l = n;
    }
}

static void *worker(void *arg)
{
    targ_t *a = (targ_t *)arg;
    rng_t r;
    rng_seed(&r, 0x5600 + (uint64_t)a->id);
    uint32_t key = (uint32_t)a->id << 26;
    blk_t *v = (blk_t *)xmalloc_chk(BURST_MAX * sizeof *v);
    size_t done = 0;
    for (unsigned round = 0; done < a->blocks; round++) {
        size_t n = (size_t)rng_range(&r, BURST_MIN, BURST_MAX);
        if (n > a->blocks - done) n = a->blocks - done;
        done += n;
        a->made += n;
        for (size_t i = 0; i < n; i++) blk_new(&v[i], &r, &key);
        /* realloc ~10% to a new size (contents must survive) */
        for (size_t i = 0; i < n; i += 1 + rng_below(&r, 19)) {
            size_t ns = sh_size(&r);
            size_t keep = ns < v[i].size ? ns : v[i].size;
            CHECK_OBJ(v[i].p, v[i].size, v[i].key, "sh realloc before");
            unsigned char first = *(unsigned char *)v[i].p;
            void *np = xrealloc_chk(v[i].p, ns);
            if (keep && *(unsigned char *)np != first) VERIFY_FAIL("sh realloc lost data (%zu -> %zu)",
                                                                   (size_t)v[i].size, ns);
            v[i].p = np;
            v[i].size = (uint32_t)ns;
            v[i].key = key++;
            tag_obj(np, ns, v[i].key);
        }
        if (round % 4 == 3) {
            /* free a random half and re-allocate it with other sizes */
            for (size_t i = 0; i < n; i++)
                if (rng_next(&r) & 1) { blk_free(&v[i], "sh half"); blk_new(&v[i], &r, &key); a->made++; a->freed++; }
        }
        size_t own = n;
        if (SH8 && n >= 2) {
            /* hand the second half to the next thread */
            size_t h = n / 2;
            batch_t *b = (batch_t *)xmalloc_chk(sizeof *b + (n - h) * sizeof(blk_t));
            b->n = n - h;
            memcpy(b->b, v + h, (n - h) * sizeof(blk_t));
            mailbox_t *mb = &a->boxes[(a->id + 1) % a->nt];
            /* bounded: while the receiver is behind, drain our own mailbox
             * (so a ring of waiting threads always makes progress) */
            for (;;) {
                pthread_mutex_lock(&mb->mu);
                if (mb->pending < MAX_PENDING) break;
                pthread_mutex_unlock(&mb->mu);
                drain(a);
                sched_yield();
            }
            b->next = mb->head;
            mb->head = b;
            mb->pending++;
            pthread_mutex_unlock(&mb->mu);
            own = h;
        }
        switch (round % 4) {
        case 0: /* LIFO */
            for (size_t i = own; i > 0; i--) blk_free(&v[i - 1], "sh lifo");
            break;
        case 1: /* FIFO */
            for (size_t i = 0; i < own; i++) blk_free(&v[i], "sh fifo");
            break;
        case 2: /* random */
            for (size_t i = own; i > 0; i--) {
                size_t j = (size_t)rng_below(&r, i);
                blk_free(&v[j], "sh random");
                v[j] = v[i - 1];
            }
            break;
        default: /* interleaved: odd, then even */
            for (size_t i = 1; i < own; i += 2) blk_free(&v[i], "sh odd");
            for (size_t i = 0; i < own; i += 2) blk_free(&v[i], "sh even");
            break;
        }
        a->freed += own;
        if (SH8) drain(a);
    }
    if (SH8) {
        /* keep draining until every thread has stopped sending to us */
        __atomic_add_fetch(a->finished, 1, __ATOMIC_ACQ_REL);
        while (__atomic_load_n(a->finished, __ATOMIC_ACQUIRE) < a->nt) {
            drain(a);
            sched_yield();
        }
        drain(a);
    }
    free(v);
    return NULL;
}

int main(int argc, char **argv)
{
    int nt = arg_threads(argc, argv, 2);
    double scale = arg_scale(argc, argv, 1.0);
    size_t total = scaled(12e6, scale, 1000);
    targ_t *args = (targ_t *)calloc((size_t)nt, sizeof *args);
    mailbox_t *boxes = (mailbox_t *)calloc((size_t)nt, sizeof *boxes);
    if (!args || !boxes) OOM_FAIL("calloc", nt * sizeof *args);
    int finished = 0;
    for (int i = 0; i < nt; i++) {
        pthread_mutex_init(&boxes[i].mu, NULL);
        args[i].id = i;
        args[i].nt = nt;
        args[i].blocks = total / (size_t)nt;
        args[i].boxes = boxes;
        args[i].finished = &finished;
    }
    run_threads(nt, worker, args, sizeof *args);
    uint64_t made = 0, freed = 0;
    for (int i = 0; i < nt; i++) {
        made += args[i].made;
        freed += args[i].freed;
        if (boxes[i].head) VERIFY_FAIL("sh8: mailbox %d not drained", i);
    }
    if (made != freed) VERIFY_FAIL("sh: allocated %llu blocks, freed %llu", (unsigned long long)made,
                                   (unsigned long long)freed);
    free(args);
    free(boxes);
    return 0;
}
