/* fuzz_ops: libFuzzer harness; the input bytes are an op stream for the
 * model in test/ops.h (the same decoder api_differential runs from a PRNG).
 *
 * Built by `make fuzz` with the allocator's sources compiled into this
 * binary, so malloc & co. are xalloc's (checked at start-up) and the
 * allocator's own branches give the fuzzer coverage.
 *
 * FUZZ_OPS_WRITE_SEEDS=DIR: write the seed corpus (PRNG op streams of
 * api_differential's kind, various lengths) into DIR and exit. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../ops.h"

static void write_seeds(const char *dir)
{
    static const size_t lens[] = { 16, 64, 256, 1024, 4096 };
    for (unsigned seed = 1; seed <= 20; seed++) {
        size_t len = lens[seed % 5];
        uint8_t buf[4096];
        ops_src s = { 0 };
        tu_seed(&s.rng, seed);
        for (size_t i = 0; i < len; i++) buf[i] = (uint8_t)ops_u8(&s);
        char path[4096];
        snprintf(path, sizeof path, "%s/prng-%02u-%zu", dir, seed, len);
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
            perror(path);
            exit(1);
        }
    }
}

/* The point of this binary is fuzzing xalloc: refuse to run if malloc is
 * not the copy compiled in here (a link-order or build mistake). */
static void check_xalloc_serves_malloc(void)
{
    Dl_info here, m;
    void *dyn = dlsym(RTLD_DEFAULT, "malloc");
    if (!dladdr((void *)check_xalloc_serves_malloc, &here) || !dyn || !dladdr(dyn, &m) ||
        here.dli_fbase != m.dli_fbase || dyn != (void *)malloc) {
        fprintf(stderr, "fuzz_ops: malloc is not xalloc's (resolves to %p in %s)\n", dyn, dyn ? m.dli_fname : "?");
        abort();
    }
    /* and behaves like it: the smallest class is 16 bytes (glibc: 24) */
    void *p = malloc(1);
    size_t u = malloc_usable_size(p);
    free(p);
    if (u != 16 || strcmp(xalloc_version(), "") == 0) {
        fprintf(stderr, "fuzz_ops: malloc_usable_size(malloc(1)) = %zu, expected xalloc's 16\n", u);
        abort();
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *dir = getenv("FUZZ_OPS_WRITE_SEEDS");
    if (dir) {
        write_seeds(dir);
        exit(0);
    }
    check_xalloc_serves_malloc();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static ops_model m;   /* static: its 256 slots are 12 KiB */
    ops_init_bytes(&m, data, size);
    /* a quarter of the inputs (by their last byte) draw large-heavy sizes */
    m.large_heavy = size && data[size - 1] >= 0xc0;
    ops_run(&m, (unsigned long)-1);
    ops_free_all(&m);     /* nothing carries over to the next input */
    return 0;
}
