/* The control interface and statistics (issue 5): every xalloc_ctl name
 * read (and written where writable), error codes for bad names and
 * lengths, counters that follow what the test holds, text and JSON output
 * (JSON checked with python3's parser), malloc_info, mallinfo2, and
 * stats_print at exit.  xalloc-only: skipped in the glibc build. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <malloc.h>
#include <sys/wait.h>
#include <sys/socket.h>
#include <pthread.h>
#include <unistd.h>
#include <cmocka.h>
#include "testutil.h"
/* glibc's malloc_info writes the same XML root; the rest is xalloc-only. */
static void test_malloc_info_xml(void **state);
#ifndef XA_TEST_GLIBC
#include "xalloc.h"

static uint64_t get(const char *name) {
  uint64_t v = 0;
  size_t len = sizeof v;
  int rc = xalloc_ctl(name, &v, &len, NULL, 0);
  if (rc) fail_msg("xalloc_ctl(%s) = %d", name, rc);
  return v;
}

static void test_ctl_names(void **state) {
  (void)state;
  const char *ver = NULL;
  size_t len = sizeof ver;
  assert_int_equal(xalloc_ctl("version", &ver, &len, NULL, 0), 0);
  assert_string_equal(ver, xalloc_version());
  uint64_t e1 = get("epoch"), e2 = get("epoch");
  assert_true(e2 > e1);
  assert_true(get("arenas.narenas") >= 1);
  assert_int_equal(get("arenas.nclasses"), 40);
  assert_int_equal(get("stats.classes.3.size"), 64);
  assert_int_equal(get("stats.classes.39.size"), 32768);
  assert_true(get("stats.mapped") > 0);
  assert_true(get("stats.metadata") > 0);
  /* Pss: at most the Rss (statm, read a moment apart), never 0 */
  assert_true(get("stats.pss") > 0 && get("stats.pss") <= get("stats.resident") + ((uint64_t)1 << 20));
  assert_int_equal(get("stats.narenas"), get("arenas.narenas"));
  /* every total, arena and class name reads */
  static const char *names[] = {"stats.allocated", "stats.small_allocated", "stats.large_allocated",
                                "stats.mapped_peak", "stats.resident_peak", "stats.allocated_peak", "stats.active_peak", "stats.arenas.0.mapped_peak", "stats.tcache_budget", "stats.huge_budget",
                                "stats.huge_allocated", "stats.huge_count", "stats.huge_cached", "stats.active",
                                "stats.dirty", "stats.muzzy", "stats.retained", "stats.resident", "stats.anon_huge", "stats.pss", "stats.purged", "stats.purge_runs", "stats.purge_locked", "stats.peak_purged", "stats.lock_contended",
                                "stats.huge_shards", "stats.huge_contended", "stats.huge_gathers", "stats.huge_gathered", "stats.huge_chunks",
                                "stats.purger_running", "stats.arenas.0.small_allocated", "stats.arenas.0.active",
                                "stats.arenas.0.dirty", "stats.arenas.0.muzzy", "stats.arenas.0.retained",
                                "stats.arenas.0.purged", "stats.arenas.0.lock_contended",
                                "stats.arenas.0.large_requests", "stats.classes.0.nmalloc",
                                "stats.classes.0.nfree", "stats.classes.0.live", "stats.classes.0.cached",
                                "stats.classes.0.refills", "stats.classes.0.curobjs", "stats.classes.0.slabs",
                                "stats.prof_samples", "stats.prof_live", "stats.prof_live_bytes",
                                "stats.prof_peak_bytes", "stats.prof_stacks", "stats.prof_dumps"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) get(names[i]);
  assert_true(get("stats.decay_scale") >= 1 && get("stats.decay_scale") <= 8);
  /* the container: each cgroup.X is stats.cgroup_X; the values agree with
   * themselves (test/cgroup.sh checks them against real limits) */
  assert_true(get("stats.cgroup_version") <= 2);
  assert_int_equal(get("cgroup.version"), get("stats.cgroup_version"));
  assert_int_equal(get("cgroup.limit"), get("stats.cgroup_limit"));
  if (get("cgroup.limit") == 0 && get("cgroup.high") == 0) {
    assert_int_equal(get("cgroup.headroom"), 0);
    assert_int_equal(get("stats.pressure_urgent"), 0);
  }
  get("cgroup.usage");
  get("cgroup.cpus");
  assert_true(get("cgroup.cpuset") <= 1u << 20);
  assert_true(get("arenas.narenas") <= (get("cgroup.cpus") ? get("cgroup.cpus") : 1024));
  get("stats.pressure_entries");
  get("stats.pressure_purges");
  assert_true(get("stats.pressure_psi") <= 2);
  get("stats.psi_events");
  /* actions */
  assert_int_equal(xalloc_ctl("purge", NULL, NULL, NULL, 0), 0);
  assert_int_equal(xalloc_ctl("arena.0.purge", NULL, NULL, NULL, 0), 0);
  assert_int_equal(xalloc_ctl("thread.tcache.flush", NULL, NULL, NULL, 0), 0);
}

static void test_ctl_errors(void **state) {
  (void)state;
  uint64_t v;
  size_t len = sizeof v;
  uint32_t small;
  size_t slen = sizeof small;
  assert_int_equal(xalloc_ctl(NULL, &v, &len, NULL, 0), EINVAL);
  assert_int_equal(xalloc_ctl("no.such.name", &v, &len, NULL, 0), ENOENT);
  assert_int_equal(xalloc_ctl("stats.nosuch", &v, &len, NULL, 0), ENOENT);
  assert_int_equal(xalloc_ctl("stats.arenas.9999.mapped", &v, &len, NULL, 0), ENOENT);
  assert_int_equal(xalloc_ctl("stats.arenas.x.mapped", &v, &len, NULL, 0), ENOENT);
  assert_int_equal(xalloc_ctl("stats.classes.40.size", &v, &len, NULL, 0), ENOENT);
  assert_int_equal(xalloc_ctl("arena.9999.purge", NULL, NULL, NULL, 0), ENOENT);
  assert_int_equal(xalloc_ctl("opt.nosuch", &v, &len, NULL, 0), ENOENT);
  assert_int_equal(xalloc_ctl("cgroup.nosuch", &v, &len, NULL, 0), ENOENT);
  assert_int_equal(xalloc_ctl("cgroup.cgroup_limit", &v, &len, NULL, 0), ENOENT);
  assert_int_equal(xalloc_ctl("cgroup.limit", &v, &len, &v, sizeof v), EPERM);
  assert_int_equal(xalloc_ctl("cgroup.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", &v, &len, NULL, 0), ENOENT);
  assert_int_equal(xalloc_ctl("stats.allocated", &small, &slen, NULL, 0), EINVAL);   /* wrong length */
  assert_int_equal(xalloc_ctl("stats.allocated", &v, NULL, NULL, 0), EINVAL);
  assert_int_equal(xalloc_ctl("stats.allocated", &v, &len, &v, sizeof v), EPERM);    /* read-only */
  int64_t n = 3;
  assert_int_equal(xalloc_ctl("opt.narenas", NULL, NULL, &n, sizeof n), EPERM);
  assert_int_equal(xalloc_ctl("opt.dirty_decay_ms", NULL, NULL, &n, 4), EINVAL);
  int64_t bad = -5;
  assert_int_equal(xalloc_ctl("opt.dirty_decay_ms", NULL, NULL, &bad, sizeof bad), EINVAL);
  assert_int_equal(xalloc_ctl("purge", &v, &len, NULL, 0), EINVAL);
  const char *s;
  size_t sl = 4;
  assert_int_equal(xalloc_ctl("version", &s, &sl, NULL, 0), EINVAL);
  /* heap profiles: off here (prof:false), so no file; bad arguments first */
  const char *path = "/tmp/xalloc_api_ctl_never.heap.pb", *none = NULL;
  assert_int_equal(xalloc_ctl("prof.dump", NULL, NULL, &path, sizeof path), ENOENT);
  assert_int_equal(xalloc_ctl("prof.dump_peak", NULL, NULL, NULL, 0), ENOENT);
  assert_int_equal(xalloc_ctl("prof.dump", &v, &len, NULL, 0), EINVAL);
  assert_int_equal(xalloc_ctl("prof.dump", NULL, NULL, &path, 4), EINVAL);
  assert_int_equal(xalloc_ctl("prof.dump", NULL, NULL, &none, sizeof none), EINVAL);
  assert_int_equal(access(path, F_OK), -1);
  assert_int_equal(get("stats.prof_samples") + get("stats.prof_live") + get("stats.prof_dumps"), 0);
}

static void test_ctl_options(void **state) {
  (void)state;
  /* every option reads its default (this process has no XALLOC_CONF) */
  assert_int_equal(get("opt.narenas"), 0);
  assert_int_equal(get("opt.tcache"), 1);
  assert_int_equal(get("opt.tcache_bytes"), 65536);
  assert_int_equal((int64_t)get("opt.dirty_decay_ms"), 1000);
  assert_int_equal(get("opt.background_thread"), 1);
  assert_int_equal(get("opt.thp"), 3);                    /* auto */
  assert_int_equal(get("opt.thp_min_bytes"), 2 << 20);
  assert_int_equal(get("opt.huge_cache_bytes"), 16 << 20);
  assert_int_equal(get("opt.stats_print"), 0);
  assert_int_equal(get("opt.abort_on_error"), 1);
  assert_int_equal(get("opt.purge"), 0);
  assert_int_equal((int64_t)get("opt.muzzy_decay_ms"), 10000);
  assert_true(get("stats.resident") > 0);
  assert_int_equal(get("opt.junk"), 0);
  assert_int_equal(get("opt.stats_format"), 0);
  /* writable ones take effect */
  int64_t v = 250, old = 0;
  size_t len = sizeof old;
  assert_int_equal(xalloc_ctl("opt.dirty_decay_ms", &old, &len, &v, sizeof v), 0);
  assert_int_equal(old, 1000);                          /* the value before the write */
  assert_int_equal((int64_t)get("opt.dirty_decay_ms"), 250);
  /* save and restore: the write hands back what it replaced */
  v = 1000;
  assert_int_equal(xalloc_ctl("opt.dirty_decay_ms", &old, &len, &v, sizeof v), 0);
  assert_int_equal(old, 250);
  assert_int_equal((int64_t)get("opt.dirty_decay_ms"), 1000);
  /* a bad old buffer fails the call before anything is written */
  size_t shortlen = 4;
  v = 7;
  assert_int_equal(xalloc_ctl("opt.dirty_decay_ms", &old, &shortlen, &v, sizeof v), EINVAL);
  assert_int_equal((int64_t)get("opt.dirty_decay_ms"), 1000);
  v = 1000;
  assert_int_equal(xalloc_ctl("opt.dirty_decay_ms", NULL, NULL, &v, sizeof v), 0);
  v = 0;
  assert_int_equal(xalloc_ctl("opt.huge_cache_bytes", NULL, NULL, &v, sizeof v), 0);
  void *h = malloc(8 << 20);
  free(h);
  assert_int_equal(get("stats.huge_cached"), 0);       /* cache disabled: unmapped */
  v = 16 << 20;
  assert_int_equal(xalloc_ctl("opt.huge_cache_bytes", NULL, NULL, &v, sizeof v), 0);
}

/* Counters follow what the test holds (slack: objects in thread caches). */
static void test_counters_consistent(void **state) {
  (void)state;
  xalloc_ctl("thread.tcache.flush", NULL, NULL, NULL, 0);
  uint64_t large0 = get("stats.large_allocated"), huge0 = get("stats.huge_allocated"), n0 = get("stats.huge_count");
  uint64_t small0 = get("stats.small_allocated");
  void *l[10], *h[3], *s[1000];
  for (int i = 0; i < 10; i++) l[i] = malloc(100000);
  for (int i = 0; i < 3; i++) h[i] = malloc(5 << 20);
  for (int i = 0; i < 1000; i++) s[i] = malloc(100);
  uint64_t large1 = get("stats.large_allocated"), huge1 = get("stats.huge_allocated");
  /* large blocks are rounded to eight sizes per doubling: under 1/8 more */
  assert_true(large1 - large0 >= 10 * 100000 && large1 - large0 <= 10 * (100000 + 100000 / 8 + 4096));
  assert_true(huge1 - huge0 >= 3 * (5 << 20) && huge1 - huge0 <= 3 * ((5 << 20) + 4096));
  assert_int_equal(get("stats.huge_count") - n0, 3);
  uint64_t small1 = get("stats.small_allocated");
  assert_true(small1 - small0 >= 1000 * 112);
  assert_true(small1 - small0 <= 1000 * 112 + 65536 + 4096);   /* + one cache bin */
  assert_true(get("stats.allocated") >= get("stats.small_allocated") + large1 + huge1 - 1);
  assert_true(get("stats.active") >= get("stats.allocated"));
  struct mallinfo2 mi = mallinfo2();
  assert_true(mi.hblkhd == get("stats.huge_allocated"));
  assert_true(mi.uordblks >= large1);
  for (int i = 0; i < 10; i++) free(l[i]);
  for (int i = 0; i < 3; i++) free(h[i]);
  for (int i = 0; i < 1000; i++) free(s[i]);
  assert_int_equal(get("stats.large_allocated"), large0);
  assert_int_equal(get("stats.huge_allocated"), huge0);
  uint64_t purged0 = get("stats.purged");
  xalloc_ctl("purge", NULL, NULL, NULL, 0);
  assert_true(get("stats.purged") > purged0);
  assert_int_equal(get("stats.dirty"), 0);
}

/* Per-class counts are real counts of calls: 1,000,000 malloc(16) are
 * 1,000,000 allocations whether a cache served them or not, frees are
 * counted as the objects come back, and a thread's counts survive its
 * exit.  Also with the caches off (junk:true, in a child). */
static void *alloc_free_16(void *arg) {
  for (int i = 0; i < 300000; i++) free(malloc(16));
  return arg;
}

static int check_class_counts(void) {
  static void *v[200000];
  uint64_t m0 = get("stats.classes.0.nmalloc"), f0 = get("stats.classes.0.nfree");
  uint64_t m1 = get("stats.classes.1.nmalloc"), live1 = get("stats.classes.1.live");
  for (int round = 0; round < 5; round++) {
    for (int i = 0; i < 200000; i++) v[i] = malloc(16);
    if (get("stats.classes.0.nmalloc") - m0 != (uint64_t)(round + 1) * 200000) return 1;
    if (get("stats.classes.0.nfree") - f0 != (uint64_t)round * 200000) return 2;
    for (int i = 0; i < 200000; i++) free(v[i]);
  }
  /* 32 bytes: another class's figures move; live follows held objects */
  for (int i = 0; i < 1000; i++) v[i] = calloc(1, 32);
  if (get("stats.classes.1.nmalloc") - m1 != 1000 || get("stats.classes.1.live") - live1 != 1000) return 3;
  for (int i = 0; i < 1000; i++) free(v[i]);
  if (get("stats.classes.1.live") != live1) return 4;
  /* (sampled blocks are live outside the slabs: only without prof) */
  const char *conf = getenv("XALLOC_CONF");
  if ((!conf || !strstr(conf, "prof:true")) &&
      get("stats.classes.1.curobjs") != get("stats.classes.1.live") + get("stats.classes.1.cached")) return 5;
  pthread_t t;
  if (pthread_create(&t, NULL, alloc_free_16, NULL) || pthread_join(t, NULL)) return 6;
  if (get("stats.classes.0.nmalloc") - m0 != 1300000 || get("stats.classes.0.nfree") - f0 != 1300000) return 7;
  return 0;
}

static int child_counts(void) { return check_class_counts(); }

static void test_class_counts(void **state) {
  (void)state;
  assert_int_equal(check_class_counts(), 0);
  static char err[65536];
  assert_int_equal(tu_run_conf("junk:true", "counts", err, sizeof err), 0);
  /* every block sampled (pages of its own): still counted in its class */
  assert_int_equal(tu_run_conf("prof:true,prof_sample:1", "counts", err, sizeof err), 0);
}


static void test_stats_print_text_and_json(void **state) {
  (void)state;
  void *keep = malloc(1000);
  struct tu_buf t = {0}, j = {0};
  xalloc_stats_print(tu_collect, &t, "");
  xalloc_stats_print(tu_collect, &j, "J");
  assert_non_null(strstr(t.p, "allocated"));
  assert_non_null(strstr(t.p, "classes:"));
  assert_true(tu_json_check(j.p, "d=d[\"xalloc\"]; assert d[\"totals\"][\"mapped\"] > 0 and len(d[\"classes\"]) == 40 and len(d[\"arenas\"]) >= 1"));
  /* the options in effect head both reports, as XALLOC_CONF would give them */
  const char *opts = strstr(t.p, "\noptions: narenas:");
  assert_non_null(opts);
  assert_non_null(strstr(opts, ",dirty_decay_ms:1000,"));
  assert_non_null(strstr(opts, ",purge:dontneed,"));
  assert_non_null(strstr(opts, ",tcache:true,"));
  assert_non_null(strstr(j.p, "\"options\":\"narenas:"));
  free(t.p);
  free(j.p);
  free(keep);
}

/* Peaks: what was mapped at most, and the process's VmHWM, outlive a free. */
static void test_peaks(void **state) {
  (void)state;
  uint64_t m0 = get("stats.mapped_peak");
  assert_true(m0 >= get("stats.mapped"));
  size_t n = 64u << 20;
  char *p = malloc(n);
  assert_non_null(p);
  memset(p, 1, n);
  uint64_t mapped_with = get("stats.mapped"), rss_with = get("stats.resident");
  free(p);
  xalloc_purge();
  assert_true(get("stats.mapped_peak") >= mapped_with);
  /* (the block may lie in address space reserved before: mapped need not grow by n) */
  /* VmHWM is the kernel's: it is at least the RSS when read, but the
   * kernel may not have noted a peak that madvise gave back */
  uint64_t rp = get("stats.resident_peak"), r = get("stats.resident");
  assert_true(rp + (1u << 20) >= r);
  assert_true(r < rss_with);
  /* malloc_info's total "max" is the peak, as glibc's max_system_mem */
  char *text = NULL;
  size_t tn = 0;
  FILE *f = open_memstream(&text, &tn);
  assert_int_equal(malloc_info(0, f), 0);
  fclose(f);
  const char *tail = strstr(text, "<total type=\"mmap\"");
  assert_non_null(tail);
  const char *mx = strstr(tail, "<system type=\"max\" size=\"");
  assert_non_null(mx);
  unsigned long long max = strtoull(mx + strlen("<system type=\"max\" size=\""), NULL, 10);
  assert_true(max >= mapped_with);
  assert_true(max >= get("stats.mapped"));
  /* each heap's "max" is its arena's most mapped ever */
  const char *heap = strstr(text, "<heap nr=\"0\">");
  assert_non_null(heap);
  const char *hmax = strstr(heap, "<system type=\"max\" size=\"");
  assert_non_null(hmax);
  assert_true(strtoull(hmax + strlen("<system type=\"max\" size=\""), NULL, 10) >= get("stats.arenas.0.mapped"));
  assert_int_equal(strtoull(hmax + strlen("<system type=\"max\" size=\""), NULL, 10), get("stats.arenas.0.mapped_peak"));
  free(text);
  /* allocated and active peaks (to within 1 MiB per arena) outlive the
   * blocks: a huge block is counted exactly, small objects in MiB steps */
  uint64_t slack = get("arenas.narenas") << 20;
  assert_true(get("stats.allocated_peak") >= n);
  assert_true(get("stats.active_peak") >= n);
  static void *small[160000];
  uint64_t before = get("stats.allocated");
  for (int i = 0; i < 160000; i++) small[i] = malloc(128);        /* 20 MiB */
  uint64_t with = get("stats.allocated");
  assert_true(with >= before + 160000 * 128);
  for (int i = 0; i < 160000; i++) free(small[i]);
  xalloc_ctl("thread.tcache.flush", NULL, NULL, NULL, 0);
  assert_true(get("stats.allocated") < with);
  assert_true(get("stats.allocated_peak") + slack >= with);
  assert_true(get("stats.active_peak") + slack >= with);
  assert_true(get("stats.allocated_peak") >= get("stats.allocated"));
  assert_true(get("stats.active_peak") >= get("stats.active"));
}

/* XALLOC_CONF=stats_print:true,stats_format:json prints parseable JSON at exit. */
static void test_stats_print_at_exit(void **state) {
  (void)state;
  char out[] = "/tmp/xalloc_exit_XXXXXX";
  int fd = mkstemp(out);
  close(fd);
  char cmd[512];
  snprintf(cmd, sizeof cmd,
           "XALLOC_CONF=stats_print:true,stats_format:json /proc/%d/exe child 2>%s && "
           "python3 -c 'import json; d=json.load(open(\"%s\")); assert d[\"xalloc\"][\"totals\"][\"mapped\"] > 0'",
           (int)getpid(), out, out);
  int rc = system(cmd);
  unlink(out);
  assert_int_equal(rc, 0);
}
#endif

static void test_malloc_info_xml(void **state) {
  (void)state;
  char *text = NULL;
  size_t n = 0;
  FILE *f = open_memstream(&text, &n);
  assert_int_equal(malloc_info(0, f), 0);
  fclose(f);
  assert_true(strncmp(text, "<malloc version=", 16) == 0);
  assert_non_null(strstr(text, "</malloc>"));
  free(text);
  assert_int_equal(malloc_info(1, stdout), EINVAL);   /* glibc returns the code */
}

#ifndef XA_TEST_GLIBC
/* Child under XALLOC_CONF=junk:true: fresh blocks read 0xa5, freed ones
 * 0x5a (read back while the page is still ours), calloc still zero. */
static int child_junk(void) {
  for (size_t n = 1; n <= (1 << 20); n = n * 3 + 1) {
    unsigned char *p = malloc(n);
    for (size_t i = 0; i < n; i++) if (p[i] != 0xa5) return 1;
    unsigned char *z = calloc(1, n);
    for (size_t i = 0; i < n; i++) if (z[i] != 0) return 2;
    free(z);
    if (n >= 16 && n <= 32768) {
      void *keep = malloc(n);              /* keeps the slab from being released */
      free(p);
      volatile unsigned char *q = p;
      for (size_t i = 0; i < n; i++) if (q[i] != 0x5a) return 3;
      free(keep);
    } else {
      free(p);
    }
  }
  return 0;
}

/* Child under XALLOC_CONF=abort_on_error:false: each misuse is reported,
 * ignored, and the heap keeps working. */
static int child_no_abort(void) {
  int local;
  free(&local);                             /* foreign */
  char *p = malloc(64);
  free(p + 16);                             /* interior */
  free(p);
  free(p);                                  /* double free (small) ... */
  void *v[4096];
  for (int i = 0; i < 4096; i++) v[i] = malloc(64);
  for (int i = 0; i < 4096; i++) free(v[i]);
  malloc_trim(0);                           /* ... reported when flushed */
  char *l = malloc(1 << 20);
  free(l);
  free(l);                                  /* double free (large) */
  if (realloc(&local, 10) != NULL) return 1;
  if (malloc_usable_size(&local) != 0) return 2;
  char *s = malloc(100);
  free_sized(s, 5000);                      /* wrong size: not freed */
  s[99] = 1;                                /* still ours */
  free(s);
  for (int i = 0; i < 1000; i++) free(malloc(i * 7));
  return 0;
}

/* Child under XALLOC_CONF=narenas:3,tcache:false,thp:always: each takes
 * effect where it can be seen. */
static int child_opts1(void) {
  if (get("arenas.narenas") != 3) return 1;
  uint64_t before = get("stats.classes.6.curobjs");       /* 112-byte class */
  void *p = malloc(100);
  free(p);
  if (get("stats.classes.6.curobjs") != before) return 2; /* no cache kept it */
  void *h = malloc(8 << 20);
  int hg = tu_vmflag(h, "hg");
  free(h);
  return hg || !tu_thp() ? 0 : 3;
}

/* Child under XALLOC_CONF=tcache_bytes:0,thp:never: bins hold 8 objects. */
static int child_opts2(void) {
  void *v[100];
  uint64_t before = get("stats.classes.3.curobjs");       /* 64-byte class */
  for (int i = 0; i < 100; i++) v[i] = malloc(64);
  for (int i = 0; i < 100; i++) free(v[i]);
  if (get("stats.classes.3.curobjs") - before > 8) return 1;   /* a full bin at most */
  void *h = malloc(8 << 20);
  int nh = tu_vmflag(h, "nh");
  free(h);
  return nh || !tu_thp() ? 0 : 2;
}

#define TWO_MIB ((uintptr_t)2 << 20)
static const void *huge_page_in(const void *p) { return (const void *)(((uintptr_t)p + TWO_MIB - 1) & ~(TWO_MIB - 1)); }

/* Child under XALLOC_CONF=thp:auto,thp_min_bytes:4194304:
 * blocks from 4 MiB ask for huge pages, smaller ones do not, and a block
 * that grows past 4 MiB asks then. */
static int child_thp_auto(void) {
  if (!tu_thp()) return 0;                 /* no hg flag to see */
  char *small = malloc(1 << 20), *big = malloc(16 << 20), *r = malloc(3 << 20);
  if (!small || !big || !r) return 1;
  if (tu_vmflag(small, "hg")) return 2;
  if (!tu_vmflag(big, "hg") || !tu_vmflag(big + (16 << 20) - 1, "hg")) return 3;
  for (size_t off = 0; off < (3 << 20); off += 64 << 10)
    if (tu_vmflag(r + off, "hg")) return 4;
  r = realloc(r, 12 << 20);
  if (!r) return 5;
  for (size_t off = 0; off < (12 << 20); off += 1 << 20)
    if (!tu_vmflag(r + off, "hg")) return 6;   /* the whole block: one mapping */
  free(small);
  free(big);
  free(r);
  return 0;
}

/* Child with XALLOC_CONF empty: thp:auto is the default, from 2 MiB
 * (whole huge pages from 8 MiB: a 3 MiB block keeps its size); a calloc'd
 * block is marked against huge pages (it may be touched sparsely), also
 * where a freed malloc'd block had asked for them. */
static int child_thp_default(void) {
  if (!tu_thp()) return 0;                 /* no hg flag to see */
  char *small = malloc(1 << 20), *mid = malloc(3 << 20), *big = malloc(16 << 20);
  if (!small || !mid || !big) return 1;
  for (size_t off = 0; off < (1 << 20); off += 64 << 10)
    if (tu_vmflag(small + off, "hg")) return 2;
  for (size_t off = 0; off < (3 << 20); off += 64 << 10)
    if (!tu_vmflag(mid + off, "hg")) return 8;   /* the whole block: one mapping */
  if (malloc_usable_size(mid) != (3 << 20)) return 9;
  /* grown (moved: big may follow it; or in place), it asks again whole */
  for (size_t n = 5 << 20; n <= (7 << 20); n += 1 << 20) {
    if (!(mid = realloc(mid, n))) return 10;
    for (size_t off = 0; off < n; off += 64 << 10)
      if (!tu_vmflag(mid + off, "hg")) return 11;
  }
  free(mid);
  if (!tu_vmflag(big, "hg") || !tu_vmflag(big + (16 << 20) - 1, "hg")) return 3;
  char *zeros = calloc(1, 16 << 20);
  if (!zeros) return 4;
  if (tu_vmflag(zeros, "hg") || !tu_vmflag(zeros, "nh") || !tu_vmflag(zeros + (16 << 20) - 1, "nh")) return 5;
  free(big);
  char *z2 = calloc(16, 1 << 20);          /* likely big's pages again */
  if (!z2) return 6;
  for (size_t off = 0; off < (16 << 20); off += 1 << 20)
    if (!tu_vmflag(z2 + off, "nh")) return 7;
  free(small);
  free(zeros);
  free(z2);
  return 0;
}

/* Child under XALLOC_CONF=thp:auto,thp_min_bytes:1073741824: no block asks. */
static int child_thp_none(void) {
  char *big = malloc(16 << 20);
  int hg = tu_vmflag(huge_page_in(big), "hg");
  free(big);
  return hg ? 1 : 0;
}

static void test_options_take_effect(void **state) {
  (void)state;
  static char err[65536];
  assert_int_equal(tu_run_conf("narenas:3,tcache:false,thp:always", "opts1", err, sizeof err), 0);
  assert_int_equal(tu_run_conf("tcache_bytes:0,thp:never", "opts2", err, sizeof err), 0);
  assert_int_equal(tu_run_conf("thp:auto,thp_min_bytes:4194304", "thpauto", err, sizeof err), 0);
  assert_int_equal(tu_run_conf("thp:auto,thp_min_bytes:1073741824", "thpnone", err, sizeof err), 0);
  assert_int_equal(tu_run_conf("", "thpdefault", err, sizeof err), 0);
  /* a bad entry warns once, names the option, and the rest still applies */
  assert_int_equal(tu_run_conf("narenas:3,bogus:1,tcache:false,thp:always", "opts1", err, sizeof err), 0);
  assert_non_null(strstr(err, "xalloc: XALLOC_CONF: unknown option 'bogus'"));
}

/* Each warning is one write(2): the child's stderr is a datagram socket,
 * where every write arrives as one datagram.  Two bad entries: two
 * datagrams, each a whole line; an integer's warning names its range. */
static void test_warning_one_write(void **state) {
  (void)state;
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    dup2(sv[1], 2);
    setenv("XALLOC_CONF", "narenas:99999,bogus:1", 1);
    char exe[64];
    snprintf(exe, sizeof exe, "/proc/%d/exe", (int)getppid());
    execl(exe, exe, "quiet", (char *)NULL);
    _exit(127);
  }
  close(sv[1]);
  int st;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  char msg[2][1024];
  ssize_t len[2];
  for (int i = 0; i < 2; i++) {
    len[i] = recv(sv[0], msg[i], sizeof msg[i] - 1, MSG_DONTWAIT);
    assert_true(len[i] > 0);
    msg[i][len[i]] = 0;
    assert_true(msg[i][len[i] - 1] == '\n');
    assert_non_null(strstr(msg[i], "; default kept"));
  }
  char extra[16];
  assert_true(recv(sv[0], extra, sizeof extra, MSG_DONTWAIT) < 0);   /* nothing more */
  close(sv[0]);
  assert_string_equal(msg[0], "xalloc: XALLOC_CONF: bad value for option 'narenas' "
                              "(expected an integer in 0..1024); default kept\n");
  assert_non_null(strstr(msg[1], "unknown option 'bogus'"));
}

/* mallopt: M_ARENA_MAX caps the arenas in use and says so; what xalloc does
 * not do is refused (0, as glibc answers an error). */
static void *arena_worker(void *arg) {
  void *v[16];
  for (int i = 0; i < 16; i++) v[i] = malloc(100000);   /* large: counted per arena */
  for (int i = 0; i < 16; i++) free(v[i]);
  (void)arg;
  return NULL;
}

static void test_mallopt(void **state) {
  (void)state;
  assert_int_equal(mallopt(M_MMAP_THRESHOLD, 1 << 20), 0);
  assert_int_equal(mallopt(M_TRIM_THRESHOLD, 1 << 20), 0);
  assert_int_equal(mallopt(M_ARENA_MAX, 0), 0);
  assert_int_equal(mallopt(M_ARENA_MAX, 1), 1);
  /* blocks now come from arena 0 only, whichever CPU a thread is on */
  uint64_t n = get("arenas.narenas"), before[64];
  for (uint64_t i = 1; i < n && i < 64; i++) {
    char name[64];
    snprintf(name, sizeof name, "stats.arenas.%u.large_requests", (unsigned)i);
    before[i] = get(name);
  }
  pthread_t t[8];
  for (int r = 0; r < 4; r++) {
    for (int i = 0; i < 8; i++) pthread_create(&t[i], NULL, arena_worker, NULL);
    for (int i = 0; i < 8; i++) pthread_join(t[i], NULL);
  }
  for (uint64_t i = 1; i < n && i < 64; i++) {
    char name[64];
    snprintf(name, sizeof name, "stats.arenas.%u.large_requests", (unsigned)i);
    assert_int_equal(get(name), before[i]);
  }
  assert_int_equal(mallopt(M_ARENA_MAX, 1024), 1);   /* back to all of them */
}

static void test_junk_option(void **state) {
  (void)state;
  static char err[65536];
  assert_int_equal(tu_run_conf("junk:true", "junk", err, sizeof err), 0);
}

static void test_abort_on_error_false(void **state) {
  (void)state;
  static char err[65536];
  assert_int_equal(tu_run_conf("abort_on_error:false", "noabort", err, sizeof err), 0);
  static const char *want[] = {"xalloc: free: invalid pointer 0x", "xalloc: free: double free 0x",
                               "xalloc: realloc: invalid pointer 0x", "xalloc: malloc_usable_size: invalid pointer 0x",
                               "xalloc: free_sized: size does not match block 0x"};
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
    if (!strstr(err, want[i])) fail_msg("missing '%s' in:\n%s", want[i], err);
}
#endif

int main(int argc, char **argv) {
#ifndef XA_TEST_GLIBC
  if (argc > 1 && !strcmp(argv[1], "junk")) return child_junk();
  if (argc > 1 && !strcmp(argv[1], "noabort")) return child_no_abort();
  if (argc > 1 && !strcmp(argv[1], "counts")) return child_counts();
  if (argc > 1 && !strcmp(argv[1], "opts1")) return child_opts1();
  if (argc > 1 && !strcmp(argv[1], "thpauto")) return child_thp_auto();
  if (argc > 1 && !strcmp(argv[1], "thpnone")) return child_thp_none();
  if (argc > 1 && !strcmp(argv[1], "thpdefault")) return child_thp_default();
  if (argc > 1 && !strcmp(argv[1], "opts2")) return child_opts2();
  if (argc > 1 && !strcmp(argv[1], "quiet")) return 0;
#endif
  if (argc > 1) { free(malloc(100)); return 0; }   /* child for stats at exit */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_malloc_info_xml),
#ifndef XA_TEST_GLIBC
      cmocka_unit_test(test_ctl_names),
      cmocka_unit_test(test_ctl_errors),
      cmocka_unit_test(test_ctl_options),
      cmocka_unit_test(test_counters_consistent),
      cmocka_unit_test(test_class_counts),
      cmocka_unit_test(test_stats_print_text_and_json),
      cmocka_unit_test(test_stats_print_at_exit),
      cmocka_unit_test(test_peaks),
      cmocka_unit_test(test_options_take_effect),
      cmocka_unit_test(test_warning_one_write),
      cmocka_unit_test(test_mallopt),
      cmocka_unit_test(test_junk_option),
      cmocka_unit_test(test_abort_on_error_false),
#endif
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
