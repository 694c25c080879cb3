/* manythreads: memory that must not scale with the thread count.
 *
 *   manythreads THREADS SCALE [MODE]      (THREADS default 2000)
 *
 * MODE alive (default): THREADS threads alive at once, each allocating
 * 200 blocks (90% of 16..1024 B, 10% of 1..16 KiB, all written) and
 * handing every second one to the main thread; when all have allocated,
 * the RSS is taken (rss_alive_kb).  Then each frees its own half and
 * exits, the main thread frees the handed half, and the RSS is taken
 * again 2 s later (rss_after_kb; baseline_kb is before any thread; the
 * _anon_ figures count anonymous memory only, without the code pages the
 * run has touched since the baseline).
 * MODE batches: 100 * SCALE batches of 50 short-lived threads doing the
 * same; peak_rss_kb is the peak over the run.
 * MODE quiet: a few busy threads among many quiet ones.  THREADS threads
 * each allocate and free 32 blocks of 64..112 B, then sleep; the main
 * thread allocates and frees 512 such blocks 20000 * SCALE times at once
 * (churn_first_s) and again 1.5 s later (churn_quiet_s), by when an
 * allocator that notices quiet threads may have given their share of
 * any thread-cache budget to the busy one.
 * Output, one "key value" per line. */
#include "common.h"
#include <stdbool.h>

#define PER_THREAD 200

static pthread_barrier_t all_allocated, may_exit;
static void **handed;            /* THREADS * PER_THREAD / 2 slots */
static int nthreads;

struct arg { int id; rng_t r; };

static void *worker(void *p) {
  struct arg *a = p;
  void *mine[PER_THREAD / 2];
  int nm = 0;
  for (int i = 0; i < PER_THREAD; i++) {
    size_t n = rng_below(&a->r, 10) ? rng_range(&a->r, 16, 1024) : rng_range(&a->r, 1024, 16384);
    char *b = xmalloc_chk(n);
    memset(b, 0x5c, n);
    if (i & 1) handed[(size_t)a->id * (PER_THREAD / 2) + (size_t)(i / 2)] = b;
    else mine[nm++] = b;
  }
  if (nthreads) pthread_barrier_wait(&all_allocated);
  if (nthreads) pthread_barrier_wait(&may_exit);
  for (int i = 0; i < nm; i++) free(mine[i]);
  return NULL;
}

static void spawn_batch(int n, int base_id, bool together) {
  pthread_t *t = xmalloc_chk(sizeof *t * (size_t)n);
  struct arg *args = xmalloc_chk(sizeof *args * (size_t)n);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 128 * 1024);
  for (int i = 0; i < n; i++) {
    args[i].id = base_id + i;
    rng_seed(&args[i].r, (uint64_t)(base_id + i) * 7919u + 1);
    if (pthread_create(&t[i], &attr, worker, &args[i]) != 0) bench_die(1, "pthread_create %d", i);
  }
  if (together) {
    pthread_barrier_wait(&all_allocated);
    printf("rss_alive_kb %ld\n", rss_kb_now());
    pthread_barrier_wait(&may_exit);
  }
  for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
  pthread_attr_destroy(&attr);
  free(t);
  free(args);
}

static pthread_mutex_t quiet_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t quiet_cond = PTHREAD_COND_INITIALIZER;
static bool quiet_over;

static void *quiet_worker(void *p) {
  void *b[32];
  for (int i = 0; i < 32; i++) b[i] = xmalloc_chk(64 + (size_t)(i & 3) * 16);
  for (int i = 0; i < 32; i++) free(b[i]);
  pthread_mutex_lock(&quiet_lock);
  while (!quiet_over) pthread_cond_wait(&quiet_cond, &quiet_lock);
  pthread_mutex_unlock(&quiet_lock);
  return p;
}

static double churn(long rounds) {
  static void *b[512];
  double t0 = now_sec();
  for (long r = 0; r < rounds; r++) {
    for (int i = 0; i < 512; i++) b[i] = xmalloc_chk(64 + (size_t)(i & 3) * 16);
    for (int i = 0; i < 512; i++) free(b[i]);
  }
  return now_sec() - t0;
}

static void run_quiet(int n, double scale) {
  pthread_t *t = xmalloc_chk(sizeof *t * (size_t)n);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 128 * 1024);
  for (int i = 0; i < n; i++)
    if (pthread_create(&t[i], &attr, quiet_worker, NULL) != 0) bench_die(1, "pthread_create %d", i);
  long rounds = (long)scaled(20000, scale, 1);
  printf("churn_first_s %.3f\n", churn(rounds));
  struct timespec ts = {1, 500000000};
  nanosleep(&ts, NULL);
  printf("churn_quiet_s %.3f\n", churn(rounds));
  pthread_mutex_lock(&quiet_lock);
  quiet_over = true;
  pthread_cond_broadcast(&quiet_cond);
  pthread_mutex_unlock(&quiet_lock);
  for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
  pthread_attr_destroy(&attr);
  free(t);
}

static void free_handed(size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(handed[i]);
    handed[i] = NULL;
  }
}

int main(int argc, char **argv) {
  /* up to 100000 threads: more than arg_threads allows */
  int threads = argc > 1 ? atoi(argv[1]) : 2000;
  if (threads < 1 || threads > 100000) bench_die(BENCH_EXIT_USAGE, "bad thread count");
  double scale = arg_scale(argc, argv, 1.0);
  const char *mode = argc > 3 ? argv[3] : "alive";
  long base_anon = proc_status_kb("RssAnon");
  printf("baseline_kb %ld\nbaseline_anon_kb %ld\n", rss_kb_now(), base_anon);
  double t0 = now_sec();
  if (strcmp(mode, "alive") == 0) {
    nthreads = threads;
    handed = xmalloc_chk(sizeof *handed * (size_t)threads * (PER_THREAD / 2));
    pthread_barrier_init(&all_allocated, NULL, (unsigned)threads + 1);
    pthread_barrier_init(&may_exit, NULL, (unsigned)threads + 1);
    spawn_batch(threads, 0, true);
    free_handed((size_t)threads * (PER_THREAD / 2));
  } else if (strcmp(mode, "quiet") == 0) {
    run_quiet(threads, scale);
    handed = NULL;
  } else {
    nthreads = 0;
    int batches = (int)scaled(100, scale, 2);
    handed = xmalloc_chk(sizeof *handed * 50 * (PER_THREAD / 2));
    for (int b = 0; b < batches; b++) {
      spawn_batch(50, 0, false);
      free_handed(50 * (PER_THREAD / 2));
    }
  }
  free(handed);
  double secs = now_sec() - t0;
  struct timespec ts = {2, 0};
  nanosleep(&ts, NULL);
  printf("rss_after_kb %ld\nrss_after_anon_kb %ld\npeak_rss_kb %ld\nseconds %.3f\n", rss_kb_now(),
         proc_status_kb("RssAnon"), proc_status_kb("VmHWM"), secs);
  return 0;
}
