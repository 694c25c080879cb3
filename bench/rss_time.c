/* rss-time: does the allocator give memory back once the program goes idle?
 *
 *   rss_time THREADS SCALE [KEEP_PERMILLE [IDLE_MS [INTERVAL_MS]]]
 *     THREADS is ignored (single-threaded); SCALE 1.0 = 1 GiB burst;
 *     KEEP_PERMILLE: 0 = free everything, 10 = keep a random 1% alive;
 *     IDLE_MS default 15000, INTERVAL_MS default 100.
 *
 * 1. Measure the baseline RSS.
 * 2. Allocate SCALE GiB in blocks of 16..112 bytes (multiples of 16; the
 *    size of block i is a hash of i), tagging each.
 * 3. Free them in allocation order, except the kept ones.  The pointer array
 *    is mmap'd and unmapped down to the kept pointers afterwards.
 * 4. Stay idle -- no allocator calls at all -- and sample RSS every
 *    INTERVAL_MS for IDLE_MS (samples go to a static array; output is
 *    written only at the end).
 * 5. Verify and free the kept blocks.
 * Output: "# key value" lines, then one "t_ms rss_kb" line per sample, where
 * t = 0 is the moment the frees finished.  Keys:
 *   baseline_kb  RSS before the burst     peak_kb   RSS after allocating
 *   alloc_ms, free_ms  burst timings      live_bytes  bytes of kept blocks
 *   meta_kb      the program's own pointer array still mapped while idle
 *   floor_kb     baseline + meta + live bytes
 *   limit_kb     page-granular limit: baseline + meta + 4 KiB for every page
 *                that holds a live block when every size class is packed
 *                densely in allocation order in its own page-aligned region
 *                and every page without a live block is returned.  Computed
 *                from the live blocks' allocation indices and sizes only,
 *                independent of the allocator.
 *   end_kb       RSS after the kept blocks were freed too. */
#include "common.h"
#include <sys/mman.h>

#define NCLASS 7
#define MAX_SAMPLES 8192
#define PG 4096

static long samples[MAX_SAMPLES];
static long sample_t[MAX_SAMPLES];

static inline size_t size_of(uint64_t i) { return 16 * (1 + (size_t)(mix64(i ^ 0x55aa) % NCLASS)); }
static inline int kept(uint64_t i, unsigned permille) { return permille && mix64(i ^ 0x1234567) % 1000 < permille; }

static double ms_since(double t0) { return (now_sec() - t0) * 1000.0; }

int main(int argc, char **argv)
{
    (void)arg_threads(argc, argv, 1);
    double scale = arg_scale(argc, argv, 1.0);
    unsigned permille = argc > 3 ? (unsigned)atoi(argv[3]) : 0;
    long idle_ms = argc > 4 ? atol(argv[4]) : 15000;
    long step_ms = argc > 5 ? atol(argv[5]) : 100;
    if (permille > 1000 || idle_ms < 0 || step_ms < 1) bench_die(BENCH_EXIT_USAGE, "bad arguments");
    if (idle_ms / step_ms + 1 > MAX_SAMPLES) idle_ms = (MAX_SAMPLES - 1) * step_ms;

    /* touch the sample arrays so they are part of the baseline */
    memset(samples, 0, sizeof samples);
    memset(sample_t, 0, sizeof sample_t);
    long baseline = rss_kb_now();

    /* how many blocks make up the burst (deterministic) */
    uint64_t target = (uint64_t)(scale * 1073741824.0), bytes = 0, n = 0;
    while (bytes < target) bytes += size_of(n++);

    size_t arr_bytes = ((size_t)n * sizeof(void *) + PG - 1) & ~(size_t)(PG - 1);
    void **ptr = (void **)mmap(NULL, arr_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (ptr == MAP_FAILED) OOM_FAIL("mmap", arr_bytes);

    double t0 = now_sec();
    for (uint64_t i = 0; i < n; i++) {
        size_t sz = size_of(i);
        void *p = xmalloc_chk(sz);
        tag_obj(p, sz, i);
        ptr[i] = p;
    }
    double alloc_ms = ms_since(t0);
    long peak = rss_kb_now();

    /* free in allocation order; kept pointers are compacted to the front of
     * the array (index k <= i, so nothing is overwritten before it is read) */
    t0 = now_sec();
    uint64_t k = 0, live = 0;
    for (uint64_t i = 0; i < n; i++) {
        void *p = ptr[i];
        size_t sz = size_of(i);
        CHECK_OBJ(p, sz, i, "rss-time burst");
        if (kept(i, permille)) {
            ptr[k++] = p;
            live += sz;
        } else {
            free(p);
        }
    }
    double free_ms = ms_since(t0);
    /* drop the pointer array beyond the kept prefix */
    size_t keep_bytes = ((size_t)k * sizeof(void *) + PG - 1) & ~(size_t)(PG - 1);
    if (keep_bytes < arr_bytes) munmap((char *)ptr + keep_bytes, arr_bytes - keep_bytes);
    long meta_kb = (long)(keep_bytes / 1024);

    /* idle: sample RSS, no allocator calls */
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    int ns = 0;
    for (long t = 0; t <= idle_ms && ns < MAX_SAMPLES; t += step_ms) {
        struct timespec due = start;
        due.tv_sec += t / 1000;
        due.tv_nsec += (t % 1000) * 1000000L;
        if (due.tv_nsec >= 1000000000L) { due.tv_sec++; due.tv_nsec -= 1000000000L; }
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &due, NULL) == EINTR) {}
        sample_t[ns] = t;
        samples[ns++] = rss_kb_now();
    }

    /* page-granular limit: simulate dense per-class packing */
    uint64_t off[NCLASS] = {0}, pages = 0;
    int64_t last_page[NCLASS];
    for (int c = 0; c < NCLASS; c++) last_page[c] = -1;
    for (uint64_t i = 0; i < n; i++) {
        size_t sz = size_of(i);
        int c = (int)(sz / 16 - 1);
        uint64_t o = off[c];
        off[c] += sz;
        if (!kept(i, permille)) continue;
        int64_t first = (int64_t)(o / PG), last = (int64_t)((o + sz - 1) / PG);
        if (first <= last_page[c]) first = last_page[c] + 1;
        if (last >= first) pages += (uint64_t)(last - first + 1);
        last_page[c] = last;
    }

    /* verify and free the survivors (re-deriving their indices) */
    uint64_t j = 0;
    for (uint64_t i = 0; i < n && j < k; i++) {
        if (!kept(i, permille)) continue;
        CHECK_OBJ(ptr[j], size_of(i), i, "rss-time kept");
        free(ptr[j++]);
    }
    if (j != k) VERIFY_FAIL("rss-time: %llu kept blocks, %llu re-derived", (unsigned long long)k, (unsigned long long)j);
    long end = rss_kb_now();
    if (keep_bytes) munmap(ptr, keep_bytes);

    printf("# blocks %llu\n# burst_bytes %llu\n# keep_permille %u\n", (unsigned long long)n,
           (unsigned long long)bytes, permille);
    printf("# baseline_kb %ld\n# peak_kb %ld\n# alloc_ms %.1f\n# free_ms %.1f\n", baseline, peak, alloc_ms, free_ms);
    printf("# live_blocks %llu\n# live_bytes %llu\n# meta_kb %ld\n", (unsigned long long)k, (unsigned long long)live,
           meta_kb);
    printf("# floor_kb %ld\n# limit_kb %ld\n# end_kb %ld\n", baseline + meta_kb + (long)(live / 1024),
           baseline + meta_kb + (long)(pages * (PG / 1024)), end);
    for (int i = 0; i < ns; i++) printf("%ld %ld\n", sample_t[i], samples[i]);
    return 0;
}
