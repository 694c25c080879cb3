/* weights: a model-weights load: a few very large blocks written once
 * and then read many times at random (where TLB reach shows: huge pages
 * help), then freed.
 *
 *   weights THREADS SCALE [IDLE_MS]
 *
 * 3 blocks of 768 MiB * SCALE (at least 8 MiB each) are allocated and
 * written sequentially (the load), then THREADS readers each make
 * 4,000,000 * SCALE reads of 8 bytes at random offsets over all blocks
 * (the inference), checking a stamp at each page start they touch.
 *
 * Output (key=value): load_s, read_s, anon_huge_kb (AnonHugePages while
 * the weights are live), rss_peak_kb, rss_idle_kb (IDLE_MS, default 2000,
 * after the blocks are freed), and the read phase's data-TLB load misses
 * and loads in user space, all readers together (dtlb_load_misses,
 * dtlb_loads: the hardware's generic cache events, as `perf stat -e
 * dTLB-load-misses:u` counts them; scaled up if the PMU had to share its
 * counters for part of the time), or "unsupported" where the kernel has
 * no such counter (a VM without a virtual PMU, perf_event_paranoid; the
 * reason on stderr) or never ran it.
 * Counting the readers only leaves the load's page faults out: the misses
 * are those of reading through the allocator's page sizes. */
#include "common.h"
#include <linux/perf_event.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>

#define BLOCKS 3
#define PG 4096

static char *blk[BLOCKS];
static size_t blk_size, reads;

/* A counter of the generic data-TLB read event with result `result`
 * (PERF_COUNT_HW_CACHE_RESULT_*) for this process and the threads it
 * starts afterwards (inherit: a thread's count joins this one when it
 * exits), stopped; -1 if the kernel has none (the reason on stderr). */
static int dtlb_counter(unsigned result, const char *name)
{
    struct perf_event_attr a;
    memset(&a, 0, sizeof a);
    a.size = sizeof a;
    a.type = PERF_TYPE_HW_CACHE;
    a.config = PERF_COUNT_HW_CACHE_DTLB | (PERF_COUNT_HW_CACHE_OP_READ << 8) | ((uint64_t)result << 16);
    a.disabled = 1;
    a.inherit = 1;
    a.read_format = PERF_FORMAT_TOTAL_TIME_ENABLED | PERF_FORMAT_TOTAL_TIME_RUNNING;
    a.exclude_kernel = 1;
    a.exclude_hv = 1;
    int fd = (int)syscall(SYS_perf_event_open, &a, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
    if (fd < 0) fprintf(stderr, "weights: no %s counter: %s\n", name, strerror(errno));
    return fd;
}

/* Print the counter's total as key=value (scaled to the whole time it
 * was enabled), or key=unsupported; close it. */
static void print_counter(const char *key, int fd)
{
    uint64_t v[3];              /* value, time enabled, time running */
    if (fd >= 0 && read(fd, v, sizeof v) == (ssize_t)sizeof v && v[2])
        printf("%s=%.0f\n", key, (double)v[0] * ((double)v[1] / (double)v[2]));
    else
        printf("%s=unsupported\n", key);
    if (fd >= 0) close(fd);
}

static void *reader(void *arg)
{
    rng_t r;
    rng_seed(&r, 0xbeef + (uintptr_t)arg);
    uint64_t sum = 0;
    for (size_t i = 0; i < reads; i++) {
        size_t b = rng_below(&r, BLOCKS), off = rng_below(&r, blk_size / 8) * 8;
        uint64_t v;
        memcpy(&v, blk[b] + off, 8);
        if ((off & (PG - 1)) == 0 && v != mix64(b * 1000003 + off / PG))
            VERIFY_FAIL("weights: block %zu page %zu corrupted", b, off / PG);
        sum += v;
    }
    return (void *)(uintptr_t)sum;
}

int main(int argc, char **argv)
{
    int threads = arg_threads(argc, argv, 2);
    double scale = arg_scale(argc, argv, 1.0);
    long idle_ms = argc > 3 ? atol(argv[3]) : 2000;
    blk_size = scaled(768.0 * 1024 * 1024, scale, 8u << 20) & ~(size_t)(PG - 1);
    reads = scaled(4000000, scale, 10000);
    double t0 = now_sec();
    for (size_t b = 0; b < BLOCKS; b++) {
        blk[b] = xmalloc_chk(blk_size);
        for (size_t off = 0; off < blk_size; off += PG) {
            uint64_t s = mix64(b * 1000003 + off / PG);
            memcpy(blk[b] + off, &s, 8);
            memset(blk[b] + off + 8, (int)(off >> 12), PG - 8);
        }
    }
    int misses = dtlb_counter(PERF_COUNT_HW_CACHE_RESULT_MISS, "dTLB-load-misses");
    int loads = dtlb_counter(PERF_COUNT_HW_CACHE_RESULT_ACCESS, "dTLB-loads");
    double t1 = now_sec();
    pthread_t t[1024];
    /* counting starts here: the counters see the readers, started next,
     * and this thread, which only waits for them */
    if (misses >= 0) ioctl(misses, PERF_EVENT_IOC_ENABLE, 0);
    if (loads >= 0) ioctl(loads, PERF_EVENT_IOC_ENABLE, 0);
    for (int i = 0; i < threads; i++)
        if (pthread_create(&t[i], NULL, reader, (void *)(uintptr_t)i)) bench_die(1, "pthread_create");
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    if (misses >= 0) ioctl(misses, PERF_EVENT_IOC_DISABLE, 0);
    if (loads >= 0) ioctl(loads, PERF_EVENT_IOC_DISABLE, 0);
    double t2 = now_sec();
    long huge = proc_kb("/proc/self/smaps_rollup", "AnonHugePages");
    for (size_t b = 0; b < BLOCKS; b++) free(blk[b]);
    long peak = proc_status_kb("VmHWM");
    struct timespec ts = {idle_ms / 1000, (idle_ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
    printf("load_s=%.3f\nread_s=%.3f\nanon_huge_kb=%ld\nrss_peak_kb=%ld\nrss_idle_kb=%ld\n", t1 - t0, t2 - t1, huge,
           peak, proc_status_kb("VmRSS"));
    print_counter("dtlb_load_misses", misses);
    print_counter("dtlb_loads", loads);
    return 0;
}
