/* large: big blocks, tensor / KV-cache style.
 *
 *   large THREADS SCALE      (THREADS is ignored: single-threaded)
 *
 * MAX = 512 MiB * SCALE (at least 4 MiB); block sizes are log-uniform in
 * [1 MiB, MAX] plus a random sub-MiB tail.
 *   A  alloc / touch / free: 6 blocks, one at a time, every page written.
 *   B  KV-cache growth: a block starts at 1 MiB and is grown by realloc in
 *      x1.25 steps up to MAX; after each step all old pages are verified and
 *      the new pages written.  Twice.
 *   C  tensor pool: 4 slots; 12 times a random slot's block is freed and
 *      replaced by a new one, half of them from calloc (the new block's
 *      pages must read as zero, sampled at 2 words per page).
 * Every page carries a stamp derived from (block id, page index) that is
 * verified before free and after realloc. */
#include "common.h"

#define PG 4096
#define MiB ((size_t)1 << 20)

static uint64_t stamp(uint64_t id, size_t pg) { return mix64(id * 0x9e3779b97f4a7c15ULL + pg); }

static void write_pages(char *p, size_t from, size_t to, uint64_t id)
{
    for (size_t off = from & ~(size_t)(PG - 1); off < to; off += PG) {
        if (off < from || off + 8 > to) continue;
        uint64_t s = stamp(id, off / PG);
        memcpy(p + off, &s, 8);
        if (off + PG <= to) memcpy(p + off + PG - 8, &s, 8);
    }
}

static void check_pages(const char *p, size_t size, uint64_t id, const char *what)
{
    for (size_t off = 0; off + 8 <= size; off += PG) {
        uint64_t s = stamp(id, off / PG), a, b = s;
        memcpy(&a, p + off, 8);
        if (off + PG <= size) memcpy(&b, p + off + PG - 8, 8);
        if (a != s || b != s)
            VERIFY_FAIL("large: %s: block %llu (%p, %zu bytes) page %zu corrupted", what,
                        (unsigned long long)id, (const void *)p, size, off / PG);
    }
}

static void check_zero(const char *p, size_t size, rng_t *r)
{
    for (size_t off = 0; off < size; off += PG) {
        size_t lim = size - off < PG ? size - off : PG;
        uint64_t a = 0, b = 0;
        size_t o2 = lim >= 8 ? (size_t)rng_below(r, lim - 7) : 0;
        if (lim >= 8) { memcpy(&a, p + off, 8); memcpy(&b, p + off + o2, 8); }
        else a = (uint64_t)p[off];
        if (a || b) VERIFY_FAIL("large: calloc(%zu) block %p not zeroed at page %zu", size, (const void *)p, off / PG);
    }
}

static size_t pick(rng_t *r, size_t max)
{
    size_t mb = rng_logsize(r, 1, max / MiB);
    return mb * MiB + (size_t)rng_below(r, MiB);
}

int main(int argc, char **argv)
{
    (void)arg_threads(argc, argv, 1);
    double scale = arg_scale(argc, argv, 1.0);
    size_t max = (size_t)(512.0 * scale) * MiB;
    if (max < 4 * MiB) max = 4 * MiB;
    rng_t r;
    rng_seed(&r, 0x1a29e);
    uint64_t id = 1;

    /* A: one block at a time */
    for (int i = 0; i < 6; i++, id++) {
        size_t sz = pick(&r, max);
        char *p = (char *)xmalloc_chk(sz);
        write_pages(p, 0, sz, id);
        check_pages(p, sz, id, "A");
        free(p);
    }

    /* B: grow with realloc */
    for (int rep = 0; rep < 2; rep++, id++) {
        size_t sz = MiB;
        char *p = (char *)xmalloc_chk(sz);
        write_pages(p, 0, sz, id);
        while (sz < max) {
            size_t ns = sz + sz / 4;
            if (ns > max) ns = max;
            p = (char *)xrealloc_chk(p, ns);
            check_pages(p, sz, id, "B after realloc");
            /* the partial last page of the old size must be rewritten */
            write_pages(p, sz & ~(size_t)(PG - 1), ns, id);
            sz = ns;
        }
        check_pages(p, sz, id, "B final");
        free(p);
    }

    /* C: tensor pool */
    struct { char *p; size_t size; uint64_t id; } pool[4] = {{0}};
    for (int i = 0; i < 12; i++, id++) {
        int s = (int)rng_below(&r, 4);
        if (pool[s].p) {
            check_pages(pool[s].p, pool[s].size, pool[s].id, "C");
            free(pool[s].p);
        }
        size_t sz = pick(&r, max);
        char *p;
        if (i & 1) {
            p = (char *)calloc(1, sz);
            if (!p) OOM_FAIL("calloc", sz);
            check_zero(p, sz, &r);
        } else {
            p = (char *)xmalloc_chk(sz);
        }
        write_pages(p, 0, sz, id);
        pool[s].p = p;
        pool[s].size = sz;
        pool[s].id = id;
    }
    for (int s = 0; s < 4; s++)
        if (pool[s].p) {
            check_pages(pool[s].p, pool[s].size, pool[s].id, "C final");
            free(pool[s].p);
        }
    if (bench_verbose()) fprintf(stderr, "large: max block %zu MiB\n", max / MiB);
    return 0;
}
