/* Fill patterns shared by test/lifecycle.c and test/lifecycle_dl.c: byte
 * i of a block seeded `seed` is derived from (seed, i), so blocks that
 * overlap, move or lose pages are seen. */
#ifndef LIFECYCLE_PAT_H
#define LIFECYCLE_PAT_H
#include <stdint.h>
#include <string.h>

static inline uint64_t pat_word(uint64_t seed, size_t i)
{
    uint64_t x = seed ^ ((uint64_t)i * 0x9E3779B97F4A7C15ull);
    return x ^ (x >> 29);
}

/* Blocks above 256 KiB get one word per 512 bytes (every page is touched,
 * a misplaced or unmapped page is still seen) to keep large blocks cheap. */
static inline size_t pat_step(size_t n) { return n > (256u << 10) ? 512 : 8; }

static inline void pat_fill(unsigned char *p, size_t n, uint64_t seed)
{
    size_t words = n / 8 * 8, step = pat_step(n);
    for (size_t i = 0; i + 8 <= words; i += step) {
        uint64_t v = pat_word(seed, i);
        memcpy(p + i, &v, 8);
    }
    if (words >= 8) {
        uint64_t v = pat_word(seed, words - 8);
        memcpy(p + words - 8, &v, 8);
    }
    for (size_t j = words; j < n; j++) p[j] = (unsigned char)pat_word(seed, j);
}

/* Checks the pattern a block of n bytes got, where it lies below limit (a
 * realloc'd block keeps only its prefix).  Returns the bad offset + 1, or 0. */
static inline size_t pat_bad(const unsigned char *p, size_t n, uint64_t seed, size_t limit)
{
    size_t words = n / 8 * 8, step = pat_step(n);
    uint64_t v;
    for (size_t i = 0; i + 8 <= words && i + 8 <= limit; i += step) {
        memcpy(&v, p + i, 8);
        if (v != pat_word(seed, i)) return i + 1;
    }
    if (words >= 8 && words <= limit) {
        memcpy(&v, p + words - 8, 8);
        if (v != pat_word(seed, words - 8)) return words - 8 + 1;
    }
    for (size_t j = words; j < n && j < limit; j++)
        if (p[j] != (unsigned char)pat_word(seed, j)) return j + 1;
    return 0;
}
#endif
