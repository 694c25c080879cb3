/* kvpool: a paged KV cache (vLLM-style): sequences hold lists of
 * fixed-size blocks, one appended whenever the last is full; a finished
 * sequence frees all its blocks and a new one starts.
 *
 *   kvpool THREADS SCALE [BLOCK_KIB [IDLE_MS]]
 *
 * Each worker serves 48 sequences at once; a step appends one token
 * (256 bytes) to a random sequence, writing it; a sequence ends after
 * 64..4095 tokens.  BLOCK_KIB (default 32, 16..64 meaningful) is the
 * block size.  Steps per worker: 2,000,000 * SCALE.  Every block carries
 * a stamp checked when it is freed.
 *
 * Output (key=value): steps_per_s, rss_peak_kb, rss_idle_kb (IDLE_MS,
 * default 2000, after everything is freed). */
#include "common.h"

#define TOKEN 256
#define SEQS 48

static size_t block_bytes, steps;

struct seq { char **blocks; size_t nblocks, cap, tokens, limit; uint64_t id; };

static void seq_free(struct seq *s)
{
    for (size_t i = 0; i < s->nblocks; i++) {
        uint64_t want = mix64(s->id * 131 + i), got;
        memcpy(&got, s->blocks[i], 8);
        if (got != want) VERIFY_FAIL("kvpool: block %zu of sequence %llu corrupted", i, (unsigned long long)s->id);
        free(s->blocks[i]);
    }
    free(s->blocks);
    memset(s, 0, sizeof *s);
}

static void seq_start(struct seq *s, rng_t *r, uint64_t id)
{
    s->id = id;
    s->limit = rng_range(r, 64, 4095);
}

static void *worker(void *arg)
{
    uintptr_t w = (uintptr_t)arg;
    rng_t r;
    rng_seed(&r, 0x5eed + w);
    struct seq seqs[SEQS];
    memset(seqs, 0, sizeof seqs);
    uint64_t next_id = w << 40;
    for (int i = 0; i < SEQS; i++) seq_start(&seqs[i], &r, next_id++);
    size_t per_block = block_bytes / TOKEN;
    for (size_t k = 0; k < steps; k++) {
        struct seq *s = &seqs[rng_below(&r, SEQS)];
        size_t slot = s->tokens % per_block;
        if (slot == 0) {
            if (s->nblocks == s->cap) {
                s->cap = s->cap ? 2 * s->cap : 8;
                s->blocks = xrealloc_chk(s->blocks, s->cap * sizeof *s->blocks);
            }
            char *b = xmalloc_chk(block_bytes);
            uint64_t st = mix64(s->id * 131 + s->nblocks);
            memcpy(b, &st, 8);
            s->blocks[s->nblocks++] = b;
        }
        memset(s->blocks[s->nblocks - 1] + slot * TOKEN + (slot == 0 ? 8 : 0), (int)k, TOKEN - (slot == 0 ? 8 : 0));
        if (++s->tokens == s->limit) {
            seq_free(s);
            seq_start(s, &r, next_id++);
        }
    }
    for (int i = 0; i < SEQS; i++) seq_free(&seqs[i]);
    return NULL;
}

int main(int argc, char **argv)
{
    int threads = arg_threads(argc, argv, 2);
    double scale = arg_scale(argc, argv, 1.0);
    long kib = argc > 3 ? atol(argv[3]) : 32;
    if (kib < 1 || kib > 4096) bench_die(BENCH_EXIT_USAGE, "bad block size '%s' KiB", argv[3]);
    long idle_ms = argc > 4 ? atol(argv[4]) : 2000;
    block_bytes = (size_t)kib << 10;
    steps = scaled(2000000, scale, 1000);
    pthread_t t[1024];
    double t0 = now_sec();
    for (int i = 0; i < threads; i++)
        if (pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)i)) bench_die(1, "pthread_create");
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    double secs = now_sec() - t0;
    long peak = proc_status_kb("VmHWM");
    struct timespec ts = {idle_ms / 1000, (idle_ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
    printf("steps_per_s=%.0f\nrss_peak_kb=%ld\nrss_idle_kb=%ld\n", (double)steps * threads / secs, peak,
           proc_status_kb("VmRSS"));
    return 0;
}
