/* bursts: a worker that pauses between bursts of work.
 *
 *   bursts THREADS SCALE [BURSTS [PAUSE_MS [IDLE_MS]]]    (THREADS is ignored)
 *
 * The pattern of a server between requests or a batch job between phases:
 * BURSTS bursts (default 12), each allocating and filling 32 MiB * SCALE of
 * objects, log-uniform in 16 B .. 64 KiB, then freeing them all, then no
 * allocator call for PAUSE_MS (default 600).  An allocator that returns the
 * freed pages during the pause makes the next burst fault them in again;
 * one that keeps them pays in RSS while the program idles.  After the last
 * burst the program stays idle for IDLE_MS (default 6000) and samples its
 * RSS.
 *
 * Every object carries a tag checked before it is freed.  Output, one
 * "key value" per line: faults (minor faults in bursts 2..BURSTS, where
 * the pages were all freed once already), burst_ms (median burst time),
 * peak_rss_kb, rss_1s_kb and rss_end_kb (RSS 1 s after the last burst and
 * at the end of the idle time), seconds. */
#include "common.h"
#include <sys/resource.h>

static long minflt(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_minflt;
}

static size_t rss_kb(void) {
  char buf[128];
  FILE *f = fopen("/proc/self/statm", "r");
  unsigned long size = 0, res = 0;
  if (f) {
    if (fgets(buf, sizeof buf, f)) sscanf(buf, "%lu %lu", &size, &res);
    fclose(f);
  }
  return res * (size_t)(sysconf(_SC_PAGESIZE) / 1024);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  double scale = arg_scale(argc, argv, 1.0);
  int bursts = argc > 3 ? atoi(argv[3]) : 12;
  int pause_ms = argc > 4 ? atoi(argv[4]) : 600;
  int idle_ms = argc > 5 ? atoi(argv[5]) : 6000;
  if (bursts < 2 || pause_ms < 0 || idle_ms < 1000) bench_die(BENCH_EXIT_USAGE, "usage: bursts THREADS SCALE [BURSTS>=2 [PAUSE_MS [IDLE_MS>=1000]]]");
  size_t target = scaled(32.0 * (1 << 20), scale, 1 << 20);
  size_t cap = target / 16 + 1;
  void **obj = xmalloc_chk(cap * sizeof *obj);
  size_t *size = xmalloc_chk(cap * sizeof *size);
  double *ms = xmalloc_chk((size_t)bursts * sizeof *ms);
  rng_t r;
  rng_seed(&r, 42);
  long faults = 0;
  double t0 = now_sec();
  for (int b = 0; b < bursts; b++) {
    long f0 = minflt();
    double s = now_sec();
    size_t n = 0, bytes = 0;
    while (bytes < target && n < cap) {
      size[n] = rng_logsize(&r, 16, 65536);
      obj[n] = xmalloc_chk(size[n]);
      memset(obj[n], b, size[n]);                /* a real burst writes what it allocates */
      tag_obj(obj[n], size[n], ((uint64_t)b << 32) | n);
      bytes += size[n++];
    }
    for (size_t i = 0; i < n; i++) {
      CHECK_OBJ(obj[i], size[i], ((uint64_t)b << 32) | i, "burst object");
      free(obj[i]);
    }
    ms[b] = (now_sec() - s) * 1e3;
    if (b > 0) faults += minflt() - f0;
    if (b + 1 < bursts) usleep((useconds_t)pause_ms * 1000);
  }
  double end = now_sec();
  usleep(1000000);
  size_t rss_1s = rss_kb();
  usleep((useconds_t)(idle_ms - 1000) * 1000);
  size_t rss_end = rss_kb();
  qsort(ms, (size_t)bursts, sizeof *ms, cmp_double);
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  printf("faults %ld\nburst_ms %.2f\npeak_rss_kb %ld\nrss_1s_kb %zu\nrss_end_kb %zu\nseconds %.3f\n", faults,
         ms[bursts / 2], ru.ru_maxrss, rss_1s, rss_end, end - t0);
  free(ms);
  free(size);
  free(obj);
  return 0;
}
