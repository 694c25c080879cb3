/* The explain report (issue 20): xalloc's resident memory, measured part by
 * part, must account for what the kernel says.  On several workloads (many
 * small objects, then half of them freed at random; large blocks; huge
 * blocks, freed and purged; threads holding cached objects) each part
 * follows what the test holds within 2%, and xalloc's resident total plus
 * what lay outside xalloc before the workload (stacks, the program's data)
 * matches the kernel's Anonymous (/proc/self/smaps_rollup) plus its
 * RssShmem (/proc/self/status: meshing's chunks are a memfd's pages) within
 * 2% of Rss, and shared memory the test writes is seen as such.  Also: the
 * text report names every part and the largest avoidable one; the JSON
 * parses (python3), alone and inside the statistics; stats.explain and
 * stats_report:explain at exit print it.  xalloc-only: skipped in the
 * glibc build. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <unistd.h>
#include <sys/wait.h>
#include <sys/mman.h>
#include <errno.h>
#include <malloc.h>
#include <cmocka.h>
#include "testutil.h"

#ifndef XA_TEST_GLIBC
#include "xalloc.h"


struct figures { uint64_t rss, anonymous, shmem, resident, live_small, thread_caches, free_slots, large, huge, dirty, huge_cache; };

static uint64_t field(const char *json, const char *section, const char *name) {
  const char *s = strstr(json, section);
  char key[64];
  snprintf(key, sizeof key, "\"%s\":", name);
  const char *p = s ? strstr(s, key) : NULL;
  if (!p) fail_msg("no %s.%s in %s", section, name, json);
  return strtoull(p + strlen(key), NULL, 10);
}

static struct figures measure(void) {
  struct tu_buf b = {0};
  xalloc_stats_print(tu_collect, &b, "EJ");
  struct figures f;
  f.rss = field(b.p, "\"kernel\"", "rss");
  f.anonymous = field(b.p, "\"kernel\"", "anonymous");
  f.shmem = field(b.p, "\"kernel\"", "shmem");
  f.resident = field(b.p, "\"xalloc\"", "resident");
  f.live_small = field(b.p, "\"xalloc\"", "live_small");
  f.thread_caches = field(b.p, "\"xalloc\"", "thread_caches");
  f.free_slots = field(b.p, "\"xalloc\"", "free_slots");
  f.large = field(b.p, "\"xalloc\"", "large");
  f.huge = field(b.p, "\"xalloc\"", "huge");
  f.dirty = field(b.p, "\"xalloc\"", "dirty");
  f.huge_cache = field(b.p, "\"xalloc\"", "huge_cache");
  free(b.p);
  return f;
}

/* Anonymous and shared memory outside xalloc before the workloads.  (With
 * mesh:true xalloc's chunks are shared memory, a memfd's pages.) */
static uint64_t outside0;

/* The report's own figure for it: outside.anonymous_and_shmem. */
static uint64_t outside_anon_and_shmem(void) {
  struct tu_buf b = {0};
  xalloc_stats_print(tu_collect, &b, "EJ");
  uint64_t v = field(b.p, "\"outside\"", "anonymous_and_shmem");
  free(b.p);
  return v;
}

static void check_adds_up(const struct figures *f, const char *when) {
  uint64_t expect = f->resident + outside0, kernel = f->anonymous + f->shmem;
  uint64_t diff = expect > kernel ? expect - kernel : kernel - expect;
  uint64_t tol = f->rss / 50 > (1u << 20) ? f->rss / 50 : (1u << 20);
  print_message("explain %s: Rss %lu, Anonymous %lu, Shmem %lu, xalloc resident %lu + outside %lu (differ by %lu)\n",
                when, (unsigned long)f->rss, (unsigned long)f->anonymous, (unsigned long)f->shmem,
                (unsigned long)f->resident, (unsigned long)outside0, (unsigned long)diff);
  if (diff > tol) fail_msg("%s: xalloc's resident + outside = %lu, Anonymous + Shmem %lu: off by more than %lu", when,
                           (unsigned long)expect, (unsigned long)kernel, (unsigned long)tol);
}

static void near(uint64_t got, uint64_t want, const char *what) {
  uint64_t diff = got > want ? got - want : want - got;
  if (diff > want / 50 + 65536) fail_msg("%s: %lu, expected about %lu", what, (unsigned long)got, (unsigned long)want);
}

static void touch(void *p, size_t n) { memset(p, 0x5c, n); }

static void *hold_cache(void *arg) {
  pthread_barrier_t *bar = arg;
  void *v[2000];
  for (int r = 0; r < 3; r++) {
    for (int i = 0; i < 2000; i++) { v[i] = malloc(48); touch(v[i], 48); }
    for (int i = 0; i < 2000; i++) free(v[i]);
  }
  pthread_barrier_wait(bar);     /* the main thread measures */
  pthread_barrier_wait(bar);
  return NULL;
}

static void test_parts_add_up(void **state) {
  (void)state;
  enum { N = 400000 };
  static void *v[N];
  memset(v, 0, sizeof v);        /* the test's own memory: outside xalloc, resident from now on */
  xalloc_purge();
  struct figures f = measure();
  outside0 = f.anonymous + f.shmem > f.resident ? f.anonymous + f.shmem - f.resident : 0;
  /* small objects, then half of them freed at random */
  for (int i = 0; i < N; i++) { v[i] = malloc(100); touch(v[i], 100); }   /* class 112 */
  f = measure();
  check_adds_up(&f, "400,000 small objects");
  near(f.live_small, (uint64_t)N * 112, "live small objects");
  srand(7);
  for (int i = N - 1; i > 0; i--) { int j = rand() % (i + 1); void *t = v[i]; v[i] = v[j]; v[j] = t; }
  for (int i = 0; i < N / 2; i++) { free(v[i]); v[i] = NULL; }
  xalloc_ctl("thread.tcache.flush", NULL, NULL, NULL, 0);
  f = measure();
  check_adds_up(&f, "half freed at random");
  near(f.live_small, (uint64_t)N / 2 * 112, "live small objects after half freed");
  assert_true(f.free_slots > (uint64_t)N / 8 * 112);    /* most slabs keep survivors */
  /* large blocks */
  /* written whole (usable size): on a chunk's huge page (its second half,
   * once the arena holds 32 MiB of chunks, as it does here) a block's
   * pages are resident, written or not */
  void *l[100];
  uint64_t large0 = f.large, pages = 0;
  for (int i = 0; i < 100; i++) {
    l[i] = malloc(200000);
    size_t n = malloc_usable_size(l[i]);
    touch(l[i], n);
    pages += (n + 4095) / 4096 * 4096;
  }
  f = measure();
  check_adds_up(&f, "100 large blocks");
  near(f.large - large0, pages, "large blocks (the pages written)");
  /* huge blocks, freed, purged */
  void *h[3];
  for (int i = 0; i < 3; i++) { h[i] = malloc(20 << 20); touch(h[i], 20 << 20); }
  f = measure();
  check_adds_up(&f, "3 huge blocks");
  near(f.huge, 3 * (uint64_t)(20 << 20), "huge blocks");
  for (int i = 0; i < 3; i++) free(h[i]);
  for (int i = 0; i < 100; i++) free(l[i]);
  f = measure();
  check_adds_up(&f, "huge and large blocks freed");
  assert_true(f.huge < (1u << 20));
  assert_true(f.dirty + f.huge_cache > (8u << 20));     /* kept for reuse, or decaying */
  xalloc_purge();
  f = measure();
  check_adds_up(&f, "after xalloc_purge");
  assert_true(f.dirty + f.huge_cache < (1u << 20));
  /* threads holding cached objects */
  pthread_barrier_t bar;
  pthread_barrier_init(&bar, NULL, 5);
  pthread_t t[4];
  for (int i = 0; i < 4; i++) assert_int_equal(pthread_create(&t[i], NULL, hold_cache, &bar), 0);
  pthread_barrier_wait(&bar);
  f = measure();
  check_adds_up(&f, "4 threads with cached objects");
  assert_true(f.thread_caches >= 4 * 48 * 64);
  pthread_barrier_wait(&bar);
  for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
  pthread_barrier_destroy(&bar);
  for (int i = 0; i < N; i++) free(v[i]);
}

/* Shared memory is the kernel's resident count (RssShmem), outside xalloc
 * unless it is xalloc's: 4 MiB of the test's own, written, show in Shmem
 * and in what lies outside xalloc.  With mesh:true xalloc's heap is shared
 * memory too, and the purger may give some back meanwhile (the previous
 * test's frees decay): what xalloc's resident lost is counted back. */
static void test_shmem(void **state) {
  (void)state;
  size_t n = 4u << 20;
  char *m = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  assert_true(m != MAP_FAILED);
  xalloc_purge();
  struct figures f0 = measure();
  uint64_t out0 = outside_anon_and_shmem();
  touch(m, n);
  struct figures f = measure();
  uint64_t ours_gone = f0.resident > f.resident ? f0.resident - f.resident : 0;
  if (f.shmem + ours_gone < f0.shmem + n - (256u << 10))
    fail_msg("Shmem %lu after writing %zu bytes of shared memory (before: %lu)", (unsigned long)f.shmem, n,
             (unsigned long)f0.shmem);
  uint64_t out = outside_anon_and_shmem();
  if (out < out0 + n - (256u << 10))
    fail_msg("outside xalloc: %lu bytes of anonymous and shared memory after the test wrote %zu (before: %lu)",
             (unsigned long)out, n, (unsigned long)out0);
  munmap(m, n);
}

static void test_reports(void **state) {
  (void)state;
  void *keep = malloc(1000);
  struct tu_buf t = {0}, j = {0}, a = {0};
  xalloc_stats_print(tu_collect, &t, "E");
  xalloc_stats_print(tu_collect, &j, "EJ");
  xalloc_stats_print(tu_collect, &a, "AJ");
  static const char *parts[] = {"Rss", "Anonymous", "LazyFree", "AnonHugePages", "live small objects", "thread caches",
                                "free slots in slabs", "large blocks", "huge blocks", "dirty free pages",
                                "muzzy free pages", "huge-block cache", "metadata", "outside xalloc",
                                "largest part an option could shrink", "slabs by class"};
  for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
    if (!strstr(t.p, parts[i])) fail_msg("explain text lacks \"%s\":\n%s", parts[i], t.p);
  assert_true(tu_json_check(j.p, "x=d[\"xalloc\"]; assert x[\"resident\"] == sum(x[k] for k in (\"live_small\",\"thread_caches\","
                              "\"free_slots\",\"large\",\"huge\",\"dirty\",\"muzzy\",\"huge_cache\",\"purging\",\"metadata\")); "
                              "assert d[\"kernel\"][\"rss\"] > 0 and d[\"largest_avoidable\"][\"option\"]"));
  assert_true(tu_json_check(a.p, "d=d[\"xalloc\"]; assert d[\"totals\"][\"mapped\"] > 0 and d[\"explain\"][\"xalloc\"][\"resident\"] > 0"));
  free(t.p);
  free(j.p);
  free(a.p);
  free(keep);
  assert_int_equal(xalloc_ctl("stats.explain", NULL, NULL, NULL, 0), 0);
  uint64_t v;
  size_t len = sizeof v;
  assert_int_equal(xalloc_ctl("stats.explain", &v, &len, NULL, 0), EINVAL);
}

/* The largest avoidable part is named with its option: many dirty pages
 * with decay off point at dirty_decay_ms. */
static void test_advice(void **state) {
  (void)state;
  int64_t never = -1, old;
  size_t len = sizeof old;
  assert_int_equal(xalloc_ctl("opt.dirty_decay_ms", &old, &len, &never, sizeof never), 0);
  void *l[40];
  for (int i = 0; i < 40; i++) { l[i] = malloc(200000); touch(l[i], 200000); }   /* large: arena pages */
  for (int i = 0; i < 40; i++) free(l[i]);
  struct tu_buf t = {0};
  xalloc_stats_print(tu_collect, &t, "E");
  if (!strstr(t.p, "largest part an option could shrink: dirty free pages") || !strstr(t.p, "dirty_decay_ms"))
    fail_msg("advice not about dirty pages:\n%s", t.p);
  free(t.p);
  assert_int_equal(xalloc_ctl("opt.dirty_decay_ms", NULL, NULL, &old, sizeof old), 0);
  xalloc_purge();
}

/* stats_print:true,stats_report:explain prints the report at exit. */
static void test_at_exit(void **state) {
  (void)state;
  static char err[65536];
  assert_int_equal(tu_run_conf("stats_print:true,stats_report:explain", "child", err, sizeof err), 0);
  if (!strstr(err, "___ xalloc explain: where the resident memory is ___") || strstr(err, "xalloc statistics"))
    fail_msg("at exit:\n%s", err);
}
#endif

int main(int argc, char **argv) {
  if (argc > 1) {                 /* the child of test_at_exit */
    free(malloc(100));
    return 0;
  }
#ifndef XA_TEST_GLIBC
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parts_add_up),
      cmocka_unit_test(test_shmem),
      cmocka_unit_test(test_reports),
      cmocka_unit_test(test_advice),
      cmocka_unit_test(test_at_exit),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
#else
  (void)argv;
  print_message("skip: the explain report is xalloc's\n");
  return 0;
#endif
}
