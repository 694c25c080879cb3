/* infer: an inference-server-shaped workload (tensors, KV caches,
 * activations).
 *
 *   infer THREADS SCALE [GROWTH [IDLE_MS]]
 *
 * THREADS workers each serve requests.  A request has a prompt of P tokens
 * (uniform in 128..2047) and decodes D tokens (uniform in 32..287); the
 * model has 4 layers, and each layer keeps a K and a V tensor of one
 * 1 KiB row per token.
 *   prefill  per layer: K and V of P rows, written; an MLP temporary of
 *            0.5-8 MiB, written and freed.
 *   decode   per token and layer: an activation of 16-64 KiB, written and
 *            freed; K and V grow by one row each.
 * GROWTH chooses how a tensor grows: "cat" (default) allocates the bigger
 * tensor, copies the old rows and frees the old one, as torch.cat does;
 * "realloc" calls realloc.  Every row carries a stamp checked before the
 * tensor is freed.  Requests per worker: 24 * SCALE (at least 2).
 *
 * Output (key=value, one per line): tokens_per_s (decoded tokens over the
 * wall time of the serving phase), rss_base_kb (before the first request),
 * rss_peak_kb (the process's VmHWM), anon_huge_kb (AnonHugePages after the
 * serving phase, before the final frees, summed over all mappings),
 * rss_idle_kb (IDLE_MS, default 2000, after everything is freed),
 * live_peak_kb (the most bytes the workers had asked for and not freed at
 * once, all workers together).  The live peak varies between runs with
 * how the workers' largest requests overlap, as rss_peak_kb does: peak
 * RSS less it is what the allocator itself costs at the peak. */
#include "common.h"

#define ROW 1024
#define LAYERS 4
#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

static int growth_realloc;
static size_t requests;
static size_t live, live_peak;  /* bytes asked for and not freed; their peak */

/* n more live bytes (n may be negative, as a two's complement): one
 * atomic add per call, and a store only when the peak rises. */
static void live_add(size_t n)
{
    size_t now = __atomic_add_fetch(&live, n, __ATOMIC_RELAXED), peak = __atomic_load_n(&live_peak, __ATOMIC_RELAXED);
    while ((intptr_t)n > 0 && now > peak &&
           !__atomic_compare_exchange_n(&live_peak, &peak, now, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {}
}

static char *tensor_alloc(size_t n)
{
    live_add(n);
    return xmalloc_chk(n);
}

static void tensor_free(char *p, size_t n)
{
    free(p);
    live_add(-n);
}

struct tensor { char *p; size_t rows; uint64_t id; };

static void write_row(struct tensor *t, size_t r)
{
    uint64_t s = mix64(t->id * 0x9e3779b97f4a7c15ULL + r);
    memcpy(t->p + r * ROW, &s, 8);
    memcpy(t->p + r * ROW + ROW - 8, &s, 8);
}

static void check_rows(const struct tensor *t)
{
    for (size_t r = 0; r < t->rows; r++) {
        uint64_t s = mix64(t->id * 0x9e3779b97f4a7c15ULL + r), a, b;
        memcpy(&a, t->p + r * ROW, 8);
        memcpy(&b, t->p + r * ROW + ROW - 8, 8);
        if (a != s || b != s) VERIFY_FAIL("infer: tensor %llu row %zu of %zu corrupted",
                                          (unsigned long long)t->id, r, t->rows);
    }
}

static void grow(struct tensor *t)
{
    size_t n = (t->rows + 1) * ROW;
    if (growth_realloc) {
        live_add(ROW);
        t->p = xrealloc_chk(t->p, n);
    } else {
        char *q = tensor_alloc(n);
        memcpy(q, t->p, t->rows * ROW);
        tensor_free(t->p, t->rows * ROW);
        t->p = q;
    }
    write_row(t, t->rows++);
}

/* Write every page of a scratch buffer (what a kernel's output does). */
static void touch(char *p, size_t n)
{
    for (size_t o = 0; o < n; o += 4096) p[o] = (char)o;
    if (n) p[n - 1] = 1;
}

static void *worker(void *arg)
{
    uintptr_t w = (uintptr_t)arg;
    rng_t r;
    rng_seed(&r, 0x1f3a + w);
    uint64_t *decoded = malloc(sizeof *decoded);
    *decoded = 0;
    for (size_t q = 0; q < requests; q++) {
        size_t prompt = rng_range(&r, 128, 2047), gen = rng_range(&r, 32, 287);
        struct tensor kv[LAYERS][2];
        for (int l = 0; l < LAYERS; l++) {
            for (int h = 0; h < 2; h++) {
                struct tensor *t = &kv[l][h];
                t->id = ((w * 1000003 + q) * LAYERS + (uint64_t)l) * 2 + (uint64_t)h;
                t->rows = prompt;
                t->p = tensor_alloc(prompt * ROW);
                for (size_t i = 0; i < prompt; i++) write_row(t, i);
            }
            size_t mlp = rng_range(&r, MiB / 2, 8 * MiB);
            char *tmp = tensor_alloc(mlp);
            touch(tmp, mlp);
            tensor_free(tmp, mlp);
        }
        for (size_t g = 0; g < gen; g++) {
            for (int l = 0; l < LAYERS; l++) {
                size_t act = rng_range(&r, 16 * KiB, 64 * KiB);
                char *a = tensor_alloc(act);
                touch(a, act);
                tensor_free(a, act);
                grow(&kv[l][0]);
                grow(&kv[l][1]);
            }
            (*decoded)++;
        }
        for (int l = 0; l < LAYERS; l++)
            for (int h = 0; h < 2; h++) {
                check_rows(&kv[l][h]);
                tensor_free(kv[l][h].p, kv[l][h].rows * ROW);
            }
    }
    return decoded;
}

int main(int argc, char **argv)
{
    int threads = arg_threads(argc, argv, 2);
    double scale = arg_scale(argc, argv, 1.0);
    growth_realloc = argc > 3 && strcmp(argv[3], "realloc") == 0;
    if (argc > 3 && !growth_realloc && strcmp(argv[3], "cat") != 0)
        bench_die(BENCH_EXIT_USAGE, "growth must be cat or realloc, not '%s'", argv[3]);
    long idle_ms = argc > 4 ? atol(argv[4]) : 2000;
    requests = scaled(24, scale, 2);

    long base = proc_status_kb("VmRSS");
    pthread_t t[1024];
    double t0 = now_sec();
    for (int i = 0; i < threads; i++)
        if (pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)i)) bench_die(1, "pthread_create");
    uint64_t tokens = 0;
    for (int i = 0; i < threads; i++) {
        void *res;
        pthread_join(t[i], &res);
        tokens += *(uint64_t *)res;
        free(res);
    }
    double secs = now_sec() - t0;
    long huge = proc_kb("/proc/self/smaps_rollup", "AnonHugePages");
    long peak = proc_status_kb("VmHWM");
    struct timespec ts = {idle_ms / 1000, (idle_ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
    long idle = proc_status_kb("VmRSS");
    if (live) VERIFY_FAIL("infer: %zu bytes counted live after the last free", live);
    printf("tokens_per_s=%.0f\nrss_base_kb=%ld\nrss_peak_kb=%ld\nanon_huge_kb=%ld\nrss_idle_kb=%ld\nlive_peak_kb=%zu\n",
           (double)tokens / secs, base, peak, huge, idle, live_peak >> 10);
    return 0;
}
