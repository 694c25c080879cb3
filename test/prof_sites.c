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
 * Every site is called from fill() (but site_leak), which test/prof.sh
 * checks as each sample's second frame.
 * No stdio in leak and clean: its buffers would be blocks still allocated
 * at exit. */
#include <dlfcn.h>
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
  if (!strcmp(mode, "signal")) {
    for (int i = 0; i < 100; i++) large[i] = site_large(100000);
    raise(SIGUSR2);
    for (int i = 0; i < 100; i++) free(large[i]);
    return 0;
  }
  return 1;
}
