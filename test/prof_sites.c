/* prof_sites.c: a program with known allocation sites for test/prof.sh,
 * built with frame pointers.  Each site is a function of its own that
 * does something after its malloc (no tail call, so the site is a frame).
 *
 *   prof_sites live OUT   3 sites hold 10, 10 and 20 MB (small, large and
 *                         calloc'd blocks) after a peak of 50 MB; writes
 *                         OUT (live heap, xalloc_ctl("prof.dump")) and
 *                         OUT.peak (prof.dump_peak), then frees all.
 *   prof_sites leak       leaves one block of 12345 bytes from site_leak
 *   prof_sites clean      frees everything it allocates
 *   prof_sites signal     holds 10 MB and raises SIGUSR2 (prof_signal:12)
 *   prof_sites grow OUT   holds 100 blocks grown by realloc to 1 MiB each
 *   prof_sites sized      frees sampled blocks with the sizes and
 *                         alignments free_sized and free_aligned_sized
 *                         accept for any block (run with prof_sample:1)
 * Every site is called from fill() (but site_leak), which test/prof.sh
 * checks as each sample's second frame.
 * No stdio in leak and clean: its buffers would be blocks still allocated
 * at exit. */
#include <dlfcn.h>
#include <malloc.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include "xalloc.h"

/* xalloc_ctl: linked (-DLINKED, -lxalloc or libxalloc.a), or found at run
 * time (the preloaded build links without xalloc). */
static int ctl(const char *name, void *newp, size_t newlen) {
#ifdef LINKED
  int (*f)(const char *, void *, size_t *, void *, size_t) = xalloc_ctl;
#else
  int (*f)(const char *, void *, size_t *, void *, size_t) =
      (int (*)(const char *, void *, size_t *, void *, size_t))dlsym(RTLD_DEFAULT, "xalloc_ctl");
#endif
  return f ? f(name, NULL, NULL, newp, newlen) : -1;
}

static void *volatile sink;

__attribute__((noinline)) static void *site_small(size_t n) {
  void *p = malloc(n);
  sink = p;
  return p;
}
__attribute__((noinline)) static void *site_large(size_t n) {
  void *p = malloc(n);
  sink = p;
  return p;
}
__attribute__((noinline)) static void *site_calloc(size_t n) {
  void *p = calloc(1, n);
  sink = p;
  return p;
}
/* grows a block by realloc, 32 KiB + 1 to 1 MiB: in place while the
 * pages after it are free */
__attribute__((noinline)) static void *site_grow(void) {
  void *p = malloc(32769);
  for (size_t n = 65536; p && n <= (1u << 20); n *= 2) p = realloc(p, n);
  sink = p;
  return p;
}
__attribute__((noinline)) static void *site_leak(size_t n) {
  void *p = malloc(n);
  sink = p;
  return p;
}

static void *small[100000], *large[100], *zeroed[20000];

__attribute__((noinline)) static void fill(void) {
  for (int i = 0; i < 100000; i++) small[i] = site_small(200);
  for (int i = 0; i < 100; i++) large[i] = site_large(100000);
  for (int i = 0; i < 20000; i++) zeroed[i] = site_calloc(1000);
}

static void release(void) {
  for (int i = 0; i < 100000; i++) free(small[i]);
  for (int i = 0; i < 100; i++) free(large[i]);
  for (int i = 0; i < 20000; i++) free(zeroed[i]);
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "";
  if (!strcmp(mode, "live") && argc > 2) {
    fill();                                     /* the peak: 20 + 10 + 20 MB */
    for (int i = 0; i < 100000; i += 2) {       /* half the small ones go */
      free(small[i]);
      small[i] = NULL;
    }
    const char *path = argv[2];
    if (ctl("prof.dump", &path, sizeof path)) return 2;
    static char peak[4096];
    size_t n = strlen(argv[2]);
    if (n + 6 > sizeof peak) return 3;
    memcpy(peak, argv[2], n);
    memcpy(peak + n, ".peak", 6);
    path = peak;
    if (ctl("prof.dump_peak", &path, sizeof path)) return 4;
    release();
    return 0;
  }
  if (!strcmp(mode, "leak")) {
    site_leak(12345);
    fill();
    release();
    return 0;
  }
  if (!strcmp(mode, "clean")) {
    fill();
    release();
    return 0;
  }
  if (!strcmp(mode, "grow") && argc > 2) {
    static void *g[100];
    for (int i = 0; i < 100; i++) g[i] = site_grow();
    const char *path = argv[2];
    if (ctl("prof.dump", &path, sizeof path)) return 2;
    for (int i = 0; i < 100; i++) free(g[i]);
    return 0;
  }
  if (!strcmp(mode, "sized")) {
#ifdef LINKED                                   /* glibc 2.36 has no free_sized */
    void *p = malloc(10);
    free_sized(p, malloc_usable_size(p));       /* the usable size, as for any block */
    p = malloc(10);
    free_sized(p, 10);
    p = calloc(3, 5);
    free_sized(p, 15);
    p = aligned_alloc(64, 100);
    free_aligned_sized(p, 64, 100);
    p = malloc(100);
    p = realloc(p, 20);
    free_sized(p, 20);
#endif
    return 0;
  }
  if (!strcmp(mode, "signal")) {
    for (int i = 0; i < 100; i++) large[i] = site_large(100000);
    raise(SIGUSR2);
    for (int i = 0; i < 100; i++) free(large[i]);
    return 0;
  }
  return 1;
}
