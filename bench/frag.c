/* frag: fragmentation in phases.
 *
 *   frag THREADS SCALE      (THREADS is ignored: single-threaded)
 *
 * B = 256 MiB * SCALE.  Phases:
 *   1  grow: allocate B bytes of small blocks (16-256 B, log-skewed)
 *   2  free a random 90% of the live blocks
 *   3  grow: allocate B bytes of medium blocks (257-2048 B)
 *   4  free a random 90% of the live blocks
 *   5  grow: allocate B bytes of mixed blocks (16 B - 16 KiB)
 *   6  free a random 50%, then grow: B/2 bytes of small blocks (16-128 B)
 *   7  free a random 90% (final state measured here), then free all.
 * Live bytes (requested sizes) are tracked by the program.  Each block keeps
 * its size and key in its first 8 bytes and a tag in its last 8 (verified
 * before free); the only bookkeeping outside the heap is an mmap'd array of
 * pointers (8 bytes per live block, reported as meta).
 * Output, one "key value" per line:
 *   baseline_kb       VmRSS before the first allocation
 *   peak_rss_kb       VmHWM at the end (peak RSS of the whole run)
 *   peak_live_bytes   largest live byte count at a phase end
 *   meta_bytes        bytes of the pointer array touched (peak)
 *   final_rss_kb      VmRSS in the final state of phase 7 (before free-all)
 *   final_live_bytes  live bytes in that state
 *   end_rss_kb        VmRSS after everything is freed
 *   phaseN_rss_kb / phaseN_live_bytes  at the end of every phase */
#include "common.h"
#include <sys/mman.h>

typedef struct { uint32_t size, key; } hdr_t;

static char **live;
static size_t nlive, cap, meta_peak;
static uint64_t live_bytes, peak_live;
static uint32_t next_key = 1;
static rng_t r;
static long ph_rss[8];
static uint64_t ph_live[8];

static void *mk(size_t sz)
{
    char *p = (char *)xmalloc_chk(sz);
    hdr_t h = {(uint32_t)sz, next_key++};
    memcpy(p, &h, sizeof h);
    uint64_t t = tag_of(h.key, sz);
    memcpy(p + sz - 8, &t, 8);
    return p;
}

static size_t rm(char *p)
{
    hdr_t h;
    memcpy(&h, p, sizeof h);
    uint64_t t;
    if (h.size < 16 || h.size > 16384) VERIFY_FAIL("frag: block %p has bad size %u", (void *)p, h.size);
    memcpy(&t, p + h.size - 8, 8);
    if (t != tag_of(h.key, h.size)) VERIFY_FAIL("frag: block %p (size %u) corrupted", (void *)p, h.size);
    free(p);
    return h.size;
}

static void grow(uint64_t bytes, size_t lo, size_t hi)
{
    uint64_t got = 0;
    while (got < bytes) {
        if (nlive == cap) VERIFY_FAIL("frag: pointer array full (%zu)", cap);
        size_t sz = rng_logsize(&r, lo, hi);
        live[nlive++] = (char *)mk(sz);
        got += sz;
        live_bytes += sz;
    }
    if (nlive * sizeof(char *) > meta_peak) meta_peak = nlive * sizeof(char *);
    if (live_bytes > peak_live) peak_live = live_bytes;
}

/* free each live block with probability permille/1000 */
static void cull(unsigned permille)
{
    size_t j = 0;
    for (size_t i = 0; i < nlive; i++) {
        if (rng_below(&r, 1000) < permille) live_bytes -= rm(live[i]);
        else live[j++] = live[i];
    }
    nlive = j;
}

static void mark(int ph)
{
    ph_rss[ph] = proc_status_kb("VmRSS");
    ph_live[ph] = live_bytes;
}

int main(int argc, char **argv)
{
    (void)arg_threads(argc, argv, 1);
    double scale = arg_scale(argc, argv, 1.0);
    uint64_t B = (uint64_t)(256.0 * 1048576.0 * scale);
    if (B < 1048576) B = 1048576;
    rng_seed(&r, 0xf7a9);
    long baseline = proc_status_kb("VmRSS");
    /* worst case: every phase's blocks are 16 bytes */
    cap = (size_t)(B * 4 / 16) + 1024;
    live = (char **)mmap(NULL, cap * sizeof(char *), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (live == MAP_FAILED) OOM_FAIL("mmap", cap * sizeof(char *));

    grow(B, 16, 256);       mark(1);
    cull(900);              mark(2);
    grow(B, 257, 2048);     mark(3);
    cull(900);              mark(4);
    grow(B, 16, 16384);     mark(5);
    cull(500);
    grow(B / 2, 16, 128);   mark(6);
    cull(900);              mark(7);
    long final_rss = ph_rss[7];
    uint64_t final_live = live_bytes;
    for (size_t i = 0; i < nlive; i++) live_bytes -= rm(live[i]);
    nlive = 0;
    if (live_bytes != 0) VERIFY_FAIL("frag: live byte count %llu after freeing all", (unsigned long long)live_bytes);
    long end_rss = proc_status_kb("VmRSS");
    long hwm = proc_status_kb("VmHWM");
    munmap(live, cap * sizeof(char *));

    printf("baseline_kb %ld\npeak_rss_kb %ld\npeak_live_bytes %llu\nmeta_bytes %zu\n"
           "final_rss_kb %ld\nfinal_live_bytes %llu\nend_rss_kb %ld\n",
           baseline, hwm, (unsigned long long)peak_live, meta_peak, final_rss,
           (unsigned long long)final_live, end_rss);
    for (int i = 1; i <= 7; i++)
        printf("phase%d_rss_kb %ld\nphase%d_live_bytes %llu\n", i, ph_rss[i], i, (unsigned long long)ph_live[i]);
    return 0;
}
