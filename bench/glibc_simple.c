/* glibc-simple: single thread, tight malloc/free loops of a few small sizes
 * (after the idea of glibc's bench-malloc-simple).
 *
 *   glibc_simple THREADS SCALE      (THREADS is ignored: single-threaded)
 *
 * For each size in {16, 32, 64, 128}: repeatedly allocate a group of K
 * blocks (K cycles through 1, 25, 100, 400), tag each, then verify and free
 * them (in allocation order).  Total allocations = 60e6 * SCALE. */
#include "common.h"

static const size_t sizes[] = {16, 32, 64, 128};
static const size_t groups[] = {1, 25, 100, 400};

int main(int argc, char **argv)
{
    (void)arg_threads(argc, argv, 1);
    double scale = arg_scale(argc, argv, 1.0);
    size_t total = scaled(60e6, scale, 10000);
    size_t per_size = total / 4;
    void *v[400];
    uint64_t key = 0, n = 0;
    for (int s = 0; s < 4; s++) {
        size_t sz = sizes[s];
        size_t done = 0;
        for (unsigned g = 0; done < per_size; g++) {
            size_t k = groups[g % 4];
            for (size_t i = 0; i < k; i++) {
                v[i] = xmalloc_chk(sz);
                tag_obj(v[i], sz, key + i);
            }
            for (size_t i = 0; i < k; i++) {
                CHECK_OBJ(v[i], sz, key + i, "glibc-simple");
                free(v[i]);
            }
            key += k;
            done += k;
        }
        n += done;
    }
    if (bench_verbose()) fprintf(stderr, "glibc-simple: %llu allocations\n", (unsigned long long)n);
    return 0;
}
