/* mlockall under an allocator: what the lock costs, the memory the program
 * then holds, and whether calloc's blocks read as zero.
 *
 *   LD_PRELOAD=LIB build/bench/mlockall [onfault]
 *
 * Locks with mlockall(MCL_CURRENT | MCL_FUTURE) (| MCL_ONFAULT with
 * `onfault`; needs CAP_IPC_LOCK, or an unlimited RLIMIT_MEMLOCK), then, for each of
 * six sizes (64 MiB, 3 MiB, 300,000, 40,000, 2,000 and 64 B), keeps one
 * block, fills 8 MiB (one block above 1 MiB) with 0x5a, frees it, waits
 * 1.5 s (one decay time and a half: the freed pages are purged), and
 * callocs as many blocks, counting the bytes that are not zero (every 61st
 * byte is read).  Prints one line: the seconds mlockall took, the page
 * tables after it, the work's time (less the waits), peak RSS, RSS right
 * after the last free and 2 s later, the final page tables, and the
 * non-zero bytes found. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define WAIT_US 1500000

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* A field of /proc/self/status in KiB, -1 if absent. */
static long status_kb(const char *key) {
  char buf[8192];
  FILE *f = fopen("/proc/self/status", "r");
  if (!f) return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  const char *p = strstr(buf, key);
  return p ? atol(p + strlen(key)) : -1;
}

int main(int argc, char **argv) {
  int flags = MCL_CURRENT | MCL_FUTURE | (argc > 1 && !strcmp(argv[1], "onfault") ? MCL_ONFAULT : 0);
  free(malloc(100));                          /* the allocator is set up */
  double t = now();
  if (mlockall(flags)) {
    perror("mlockall");
    return 2;
  }
  double lock_s = now() - t;
  long pte_locked = status_kb("VmPTE:");
  static const size_t sizes[] = {(size_t)64 << 20, (size_t)3 << 20, 300000, 40000, 2000, 64};
  long nonzero = 0;
  double waited = 0;
  t = now();
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    size_t n = sizes[k], count = n > ((size_t)1 << 20) ? 1 : ((size_t)8 << 20) / n;
    void *keep = malloc(n);
    void **v = malloc(count * sizeof *v);
    if (!keep || !v) return 3;
    for (size_t i = 0; i < count; i++) {
      if (!(v[i] = malloc(n))) return 3;
      memset(v[i], 0x5a, n);
    }
    for (size_t i = 0; i < count; i++) free(v[i]);
    usleep(WAIT_US);
    waited += WAIT_US / 1e6;
    for (size_t i = 0; i < count; i++) {
      unsigned char *c = calloc(1, n);
      if (!c) return 3;
      for (size_t j = 0; j < n; j += 61) nonzero += c[j] != 0;
      v[i] = c;
    }
    for (size_t i = 0; i < count; i++) free(v[i]);
    free(v);
    free(keep);
  }
  double work_s = now() - t - waited;
  long rss = status_kb("VmRSS:");
  sleep(2);
  printf("mlockall_s=%.3f pte_locked_kb=%ld work_s=%.3f peak_rss_kb=%ld rss_kb=%ld rss_idle_kb=%ld pte_kb=%ld "
         "nonzero=%ld\n",
         lock_s, pte_locked, work_s, status_kb("VmHWM:"), rss, status_kb("VmRSS:"), status_kb("VmPTE:"), nonzero);
  return nonzero != 0;
}
