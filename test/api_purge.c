/* Returning memory to the OS (issue 4), observed from outside through the
 * process's own RSS: decay after a mass free, malloc_trim at once, huge
 * realloc without copying, purging in a fork child, inline purging without
 * the background thread, and a purger that never holds up exit.
 * Scenarios that need their own XALLOC_CONF re-execute this program. */
#define _GNU_SOURCE
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <malloc.h>
#include <dirent.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <linux/membarrier.h>
#include <cmocka.h>
#include "testutil.h"
#ifndef XA_TEST_GLIBC
#include "xalloc.h"
#endif

#define NOBJ ((size_t)16 << 20)      /* 16 Mi objects of 16..112 B: ~1 GiB */
static void **objs;

static size_t small_size(size_t i) { return 16 + (i * 7919 % 7) * 16; }

/* The pointer array, made resident before the baseline is taken. */
static void **new_objs(size_t n) {
  void **v = calloc(n, sizeof *v);
  if (v) memset(v, 0xff, n * sizeof *v);
  return v;
}

/* Allocate ~1 GiB in small objects (touching each), free them all. */
static size_t churn(size_t n) {
  size_t bytes = 0;
  for (size_t i = 0; i < n; i++) {
    objs[i] = malloc(small_size(i));
    if (!objs[i]) return 0;
    *(volatile char *)objs[i] = 1;
    bytes += small_size(i);
  }
  for (size_t i = 0; i < n; i++) free(objs[i]);
  return bytes;
}

/* Poll RSS every 50 ms until it is below `limit` or `secs` pass. */
static size_t wait_rss_below(size_t limit, double secs) {
  double end = tu_now() + secs;
  size_t r;
  while ((r = tu_rss()) > limit && tu_now() < end) usleep(50000);
  return r;
}

/* Threads of this process, read without allocating (opendir would malloc
 * and free a large buffer, which asks for the purger itself). */
static int task_count(void) {
  static char status[4096];            /* "Threads:" sits in the first 2 KiB */
  int fd = open("/proc/self/status", O_RDONLY), n = -1;
  if (fd < 0) return -1;
  ssize_t got = read(fd, status, sizeof status - 1);
  close(fd);
  if (got <= 0) return -1;
  status[got] = 0;
  const char *t = strstr(status, "\nThreads:");
  if (t) n = atoi(t + 9);
  return n;
}

/* Run this program again as `self mode` with XALLOC_CONF=conf (60 s hang
 * guard: tu_run_self). */
__attribute__((unused)) static int run_self(const char *mode, const char *conf) { return tu_run_self(mode, conf, 60); }

/* ---- child modes (exit 0 = pass) ---------------------------------------- */

static int idle_return(size_t nobj) {
  objs = new_objs(nobj);
  size_t base = tu_rss();
  size_t bytes = churn(nobj);
  if (!bytes) return 2;
  /* decay 1 s by default: back near the floor within 2 s, process idle */
  size_t r = wait_rss_below(base + base / 10 + 8 * TU_MiB, 3.0);
  fprintf(stderr, "idle return: %zu MiB allocated, RSS base %zu MiB, after %zu MiB\n", bytes >> 20, base >> 20, r >> 20);
  return r <= base + base / 10 + 8 * TU_MiB ? 0 : 1;
}

static int mode_idle_return(void) { return idle_return(NOBJ); }
/* Without thread caches (secure:true, tcache:false) every free goes to the
 * arena directly; the purger must still hear of the dirty pages. */
static int mode_idle_return_nocache(void) { return idle_return(NOBJ / 8); }

static int mode_inline(void) {
  objs = new_objs(NOBJ / 4);
  size_t base = tu_rss();
  if (!churn(NOBJ / 4)) return 2;
  if (task_count() != 1) return 3;            /* no purger thread */
  /* keep making slow-path calls: purging runs inline */
  double end = tu_now() + 4.0;
  while (tu_now() < end && tu_rss() > base + 16 * TU_MiB) {
    void *v[64];                               /* small enough to stay under the bound */
    for (int i = 0; i < 64; i++) v[i] = malloc(40000);
    for (int i = 0; i < 64; i++) free(v[i]);
    usleep(10000);
  }
  size_t r = tu_rss();
  fprintf(stderr, "inline purge: base %zu MiB, after %zu MiB, tasks %d\n", base >> 20, r >> 20, task_count());
  return r <= base + 16 * TU_MiB && task_count() == 1 ? 0 : 1;
}

static int mode_exit(void) {
  objs = new_objs(1 << 20);
  churn(1 << 20);                              /* starts the purger */
  return task_count() >= 2 ? 0 : 4;            /* returning must end the process */
}

static int mode_never(void) {
  size_t n = NOBJ / 8;
  objs = new_objs(n);
  size_t base = tu_rss();
  for (size_t i = 0; i < n; i++) { objs[i] = malloc(64); *(volatile char *)objs[i] = 1; }
  size_t peak = tu_rss();
  /* one object in 1024 stays: chunks and slabs stay in use, most pages free */
  for (size_t i = 0; i < n; i++) if (i % 1024) free(objs[i]);
  usleep(1500000);
  size_t r = tu_rss();                         /* dirty_decay_ms:-1 keeps pages */
  malloc_trim(0);                              /* ... until asked */
  size_t t = tu_rss();
  fprintf(stderr, "decay never: base %zu MiB peak %zu MiB idle %zu MiB trimmed %zu MiB\n", base >> 20, peak >> 20,
          r >> 20, t >> 20);
  if (r < base + (peak - base) * 3 / 4) return 1;
  return t < base + (peak - base) / 2 ? 0 : 5;
}

#ifndef XA_TEST_GLIBC
static uint64_t ctl(const char *name) {
  uint64_t v = 0;
  size_t len = sizeof v;
  xalloc_ctl(name, &v, &len, NULL, 0);
  return v;
}

/* Is a thread of this process named xalloc-purge? */
static bool purger_named(void) {
  DIR *d = opendir("/proc/self/task");
  bool found = false;
  struct dirent *e;
  while (d && (e = readdir(d)) && !found) {
    char path[64], name[32] = "";
    snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
    FILE *f = e->d_name[0] != '.' ? fopen(path, "r") : NULL;
    if (f && fgets(name, sizeof name, f)) found = !strcmp(name, "xalloc-purge\n");
    if (f) fclose(f);
  }
  if (d) closedir(d);
  return found;
}

/* Issue 14: the purger thread is never created inside free() (glibc frees
 * inside pthread_join with a lock held that pthread_create needs); it is
 * created at the next allocation slow path. */
static int mode_start_rules(void) {
  if (ctl("stats.purger_running") != 0 || task_count() != 1) return 3;
  char *p = malloc(256 << 10);                 /* large: a slow path */
  if (!p) return 2;
  memset(p, 1, 256 << 10);
  free(p);                                     /* dirty pages: the thread is wanted */
  if (ctl("stats.purger_running") != 0 || task_count() != 1) return 4;
  free(malloc(256 << 10));                     /* the safe point */
  if (ctl("stats.purger_running") != 1 || task_count() != 2) return 5;
  double end = tu_now() + 5;           /* the thread names itself when it runs */
  while (!purger_named() && tu_now() < end) usleep(10000);
  return purger_named() ? 0 : 6;
}

/* Heap growth alone asks for it (memory a program may sit on while idle):
 * past 8 MiB of new pages handed out, no free needed. */
static int mode_start_on_growth(void) {
  static char *v[256];
  for (int i = 0; i < 256; i++) {
    v[i] = malloc(64 << 10);
    if (!v[i]) return 2;
    v[i][0] = 1;
  }
  int ok = ctl("stats.purger_running") == 1 && task_count() == 2;
  for (int i = 0; i < 256; i++) free(v[i]);
  return ok ? 0 : 3;
}

/* In a fork child the thread is gone; the child's frees do not start one,
 * its first allocation slow path does. */
static int mode_start_in_child(void) {
  free(malloc(256 << 10));
  free(malloc(256 << 10));                     /* the parent's purger runs */
  if (task_count() != 2) return 3;
  char *p = malloc(256 << 10);
  pid_t pid = fork();
  if (pid == 0) {
    if (task_count() != 1) _exit(4);
    free(p);
    if (task_count() != 1) _exit(5);
    free(malloc(256 << 10));
    _exit(task_count() == 2 && ctl("stats.purger_running") == 1 ? 0 : 6);
  }
  int st;
  waitpid(pid, &st, 0);
  free(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void *do_nothing(void *arg) { return arg; }

/* The reproducer: only threads created and joined, no free of the
 * program's own (secure:true deadlocked in pthread_join). */
static int mode_create_join(void) {
  for (int round = 0; round < 4; round++) {
    pthread_t t[8];
    for (int i = 0; i < 8; i++)
      if (pthread_create(&t[i], NULL, do_nothing, NULL) != 0) return 2;
    for (int i = 0; i < 8; i++) pthread_join(t[i], NULL);
  }
  return 0;
}

static void test_purger_start_rules(void **state) {
  (void)state;
  const char *confs[] = {NULL, "secure:true", "tcache:false", "junk:true"};
  for (unsigned i = 0; i < 4; i++) {
    assert_int_equal(run_self("start_rules", confs[i]), 0);
    assert_int_equal(run_self("start_on_growth", confs[i]), 0);
    assert_int_equal(run_self("start_in_child", confs[i]), 0);
    assert_int_equal(run_self("create_join", confs[i]), 0);
  }
  assert_int_equal(run_self("create_join", "secure:true,dirty_decay_ms:0"), 0);
}

/* The purger never holds a low descriptor, even for a moment: the
 * program's descriptors come out numbered as if it were alone (GLib's
 * gsubprocess test checks that two pipes' numbers follow each other, and
 * failed when the purger opened /proc/self/stat, and the main thread's
 * /proc entry, every 200 ms to see whether the program was gone; while
 * the main thread runs it reads them every 10 s, the first time 10 s
 * after it starts).  Once it runs, pipes for 2 s, each expected at the
 * numbers of the first, while the purger works: a few MiB of small
 * blocks freed every 50 ms keep it awake.  Nor does a descriptor it
 * keeps show among the program's afterwards (CPython's test_subprocess
 * lists them).  Under a memory limit the purger reads the cgroup's files
 * (cgroup_poll_ms), and psi:trigger keeps a descriptor, which this does
 * not change: skipped there. */
static int fd_count(void) {
  DIR *d = opendir("/proc/self/fd");
  if (!d) return -1;
  int n = -1;                            /* d's own */
  for (struct dirent *e; (e = readdir(d));) n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

static void *fd_blocks[4096];
static int fd_churn(void) {
  for (size_t i = 0; i < 4096; i++) {
    fd_blocks[i] = malloc(1024);
    if (!fd_blocks[i]) return 3;
    memset(fd_blocks[i], 1, 1024);
  }
  for (size_t i = 0; i < 4096; i++) free(fd_blocks[i]);
  return 0;
}

static int mode_fd_numbering(void) {
  int fds = fd_count();
  double started = tu_now();
  do {                                   /* until the purger runs (at most 1 s) */
    if (fd_churn()) return 3;
    usleep(10000);
  } while (task_count() < 2 && tu_now() < started + 1.0);
  usleep(300000);                        /* its first looks */
  int first[2], p[2];
  if (pipe(first) != 0) return 2;
  close(first[0]);
  close(first[1]);
  unsigned long rounds = 0, moved = 0;
  for (double end = tu_now() + 2.0, next = 0; tu_now() < end; rounds++) {
    if (tu_now() >= next) {
      if (fd_churn()) return 3;
      next = tu_now() + 0.05;
    }
    if (pipe(p) != 0) return 4;
    moved += p[0] != first[0] || p[1] != first[1];
    close(p[0]);
    close(p[1]);
  }
  int fds_after = fd_count();
  fprintf(stderr, "fd_numbering: %lu of %lu pipes numbered otherwise; %d descriptors, then %d\n", moved, rounds, fds,
          fds_after);
  return moved ? 5 : fds_after != fds ? 6 : 0;
}

/* A main thread that ends without running its thread-specific
 * destructors (a raw exit system call) does not tell the purger; its
 * rare /proc reads (every 10 s) still find the program gone once the
 * last thread of the program ends, so the process ends (run_self's 60 s
 * guard turns a purger that keeps it alive into a failure). */
static void *raw_exit_worker(void *arg) {
  if (fd_churn()) _exit(3);
  for (int i = 0; i < 200 && task_count() < 3; i++) {   /* the purger joins */
    if (fd_churn()) _exit(3);
    usleep(10000);
  }
  return arg;
}

static int mode_main_raw_exit(void) {
  pthread_t t;
  if (pthread_create(&t, NULL, raw_exit_worker, NULL) != 0) return 2;
  syscall(SYS_exit, 0);
  return 4;
}

static void test_purger_leaves_descriptor_numbers_alone(void **state) {
  (void)state;
  if (ctl("stats.cgroup_limit") || ctl("stats.cgroup_high")) skip();
  assert_int_equal(run_self("fd_numbering", NULL), 0);
}

static void test_purger_ends_after_main_raw_exit(void **state) {
  (void)state;
  assert_int_equal(run_self("main_raw_exit", NULL), 0);
}

/* main ends with pthread_exit while a worker runs; once the worker ends,
 * the purger, glibc's last thread, runs the process's exit (glibc calls
 * exit(0) when the last thread it counts returns): the program's atexit
 * handlers and stdio flush must still reach the program's files, which
 * only a purger that shares the program's descriptor table keeps open. */
static FILE *exit_out;
static void exit_out_atexit(void) { fputs("atexit\n", exit_out); }
static void *exit_out_worker(void *arg) {
  fputs("worker\n", exit_out);          /* buffered: the final exit writes it */
  for (int i = 0; i < 200 && task_count() < 3; i++) {   /* the purger joins */
    if (fd_churn()) _exit(3);
    usleep(10000);
  }
  return arg;
}

static int mode_main_exit_output(void) {
  const char *path = getenv("XA_EXIT_OUT");
  if (!path || !(exit_out = fopen(path, "w")) || atexit(exit_out_atexit) != 0) return 5;
  pthread_t t;
  if (pthread_create(&t, NULL, exit_out_worker, NULL) != 0) return 2;
  pthread_exit(NULL);
}

static void test_purger_runs_the_exit_with_the_programs_files(void **state) {
  (void)state;
  char path[64], got[64] = "";
  snprintf(path, sizeof path, "/tmp/xa-exit-out-%d", (int)getpid());
  setenv("XA_EXIT_OUT", path, 1);
  assert_int_equal(run_self("main_exit_output", NULL), 0);
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  size_t n = fread(got, 1, sizeof got - 1, f);
  fclose(f);
  unlink(path);
  got[n] = 0;
  assert_string_equal(got, "worker\natexit\n");
}

/* purge:free: decayed pages go through MADV_FREE (muzzy) and then, after
 * muzzy_decay_ms, MADV_DONTNEED (clean). */
static int mode_muzzy(void) {
  enum { N = 2048 };
  static void *v[N];
  for (int i = 0; i < N; i++) { v[i] = malloc(40000); memset(v[i], 1, 40000); }
  for (int i = 0; i < N; i++) free(v[i]);
  double end = tu_now() + 10;
  uint64_t seen = 0;
  while (tu_now() < end && (seen = ctl("stats.muzzy")) == 0) usleep(20000);
  if (!seen) return 1;                           /* never became muzzy */
  while (tu_now() < end && (ctl("stats.muzzy") || ctl("stats.dirty"))) usleep(20000);
  fprintf(stderr, "muzzy: peak %llu MiB, then muzzy %llu dirty %llu\n", (unsigned long long)seen >> 20,
          (unsigned long long)ctl("stats.muzzy"), (unsigned long long)ctl("stats.dirty"));
  return ctl("stats.muzzy") == 0 && ctl("stats.dirty") == 0 ? 0 : 2;
}
#endif

#ifndef XA_TEST_GLIBC
/* Slabs that empty after some of their free pages were purged come back
 * as dirty free pages (merging with their dirty neighbours), not as
 * muzzy ones (only a slab that empties while the purger works on it
 * does: not here, where nothing is freed during the decay), and go back
 * to the OS after dirty_decay_ms (not muzzy_decay_ms, a minute here). */
static int mode_partly_purged(void) {
  enum { N = 8192, PER = 256 };                  /* 64-byte objects: 256 a slab */
  static char *v[N];
  for (int i = 0; i < N; i++) { v[i] = malloc(64); if (!v[i]) return 2; memset(v[i], 1, 64); }
  for (int i = 0; i < N; i++) if (i % PER) { free(v[i]); v[i] = NULL; }
  uint64_t purged = ctl("stats.purged");
  double end = tu_now() + 1.5;                  /* the slabs' free pages decay */
  while (tu_now() < end) {
    free(malloc(1000));                         /* slow paths (no cache): the purger starts */
    usleep(20000);
  }
  if (ctl("stats.purged") < purged + (N / 2) * 64) return 4;   /* half the slabs' bytes, at least */
  uint64_t dirty = ctl("stats.dirty");
  for (int i = 0; i < N; i += PER) free(v[i]);   /* now they empty */
  uint64_t seen = ctl("stats.dirty"), muzzy = ctl("stats.muzzy");
  end = tu_now() + 3;
  while (tu_now() < end && ctl("stats.dirty")) {
    free(malloc(1000));
    usleep(20000);
  }
  fprintf(stderr, "partly purged: dirty %llu -> %llu KiB (muzzy %llu), then %llu\n", (unsigned long long)dirty >> 10,
          (unsigned long long)seen >> 10, (unsigned long long)muzzy >> 10, (unsigned long long)ctl("stats.dirty"));
  if (seen <= dirty || muzzy) return 1;          /* the emptied slabs are not dirty pages */
  return ctl("stats.dirty") == 0 && ctl("stats.muzzy") == 0 ? 0 : 3;
}
#endif

#ifndef XA_TEST_GLIBC
/* Bursts of work with pauses longer than the decay time: each pause
 * returns the burst's pages and the next burst faults them in again.  The
 * purger sees its purges come back and lengthens the decay time
 * (stats.decay_scale); once the program stops, its memory still goes back,
 * within the lengthened time. */
static int mode_bursts(void) {
  enum { N = 400, SIZE = 40000, BURSTS = 6 };   /* 16 MB of arena pages a burst */
  static char *v[N];
  unsigned scale = 1;
  for (int b = 0; b < BURSTS; b++) {
    for (int i = 0; i < N; i++) { v[i] = malloc(SIZE); if (!v[i]) return 2; memset(v[i], 1, SIZE); }
    for (int i = 0; i < N; i++) free(v[i]);
    usleep(400000);                              /* twice dirty_decay_ms */
    scale = (unsigned)ctl("stats.decay_scale");
  }
  if (scale < 2) {
    fprintf(stderr, "bursts: decay_scale still %u after %d bursts\n", scale, BURSTS);
    return 1;
  }
  /* idle now: everything back within the decay time in force (x1.5 margin) */
  double t0 = tu_now(), end = t0 + 0.2 * scale * 1.5 + 1.0;
  while (tu_now() < end && ctl("stats.dirty")) usleep(20000);
  fprintf(stderr, "bursts: decay_scale %u, dirty %llu after %.2f s idle\n", scale,
          (unsigned long long)ctl("stats.dirty"), tu_now() - t0);
  return ctl("stats.dirty") == 0 ? 0 : 3;
}
#endif

#ifndef XA_TEST_GLIBC
/* The arenas' dirty pages and the huge cache share one budget: freed
 * pages of one kind do not stay resident beside fresh pages of the other
 * beyond the room under the live bytes' peak plus both slacks (budget.h).
 * 48 MiB of 1 MiB blocks and 48 MiB of 64-byte objects take turns, in the
 * order `order` says; the decay (10 s) returns nothing meanwhile.  Run
 * with huge_cache_bytes at 4 MiB and one arena: at the second kind's top,
 * with its bytes the live peak, the two may keep 4 MiB plus an eighth of
 * the peak (6 MiB), what the peak is passed on late (1 MiB an arena) and
 * a debt not yet due (XA_BUDGET_PAY_MIN, 2 MiB).  Without the shared
 * budget both kinds stay: 48 MiB. */
#define BUDGET_MIB 48
static void budget_blocks(bool keep) {
  static void *b[BUDGET_MIB];
  for (int i = 0; i < BUDGET_MIB; i++) {
    b[i] = malloc(TU_MiB);
    if (!b[i]) exit(2);
    memset(b[i], 1, TU_MiB);
  }
  if (!keep)
    for (int i = 0; i < BUDGET_MIB; i++) free(b[i]);
}

/* 64-byte objects, their pointers in a mapping of the test's own (not a
 * block of the allocator's); freed unless keep, else left live. */
static void budget_objects(bool keep) {
  size_t n = ((size_t)BUDGET_MIB << 20) / 64;
  void **o = mmap(NULL, n * sizeof *o, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (o == MAP_FAILED) exit(2);
  for (size_t i = 0; i < n; i++) {
    o[i] = malloc(64);
    if (!o[i]) exit(2);
    memset(o[i], 2, 64);
  }
  if (!keep) {
    for (size_t i = 0; i < n; i++) free(o[i]);
    munmap(o, n * sizeof *o);
  }
}

/* What the arenas' dirty pages and the huge cache may hold together now
 * (the comment above): the room under the live bytes' peak, an eighth of
 * the peak, huge_cache_bytes (4 MiB), a debt not yet due (2 MiB) and what
 * the peak is passed on late (1 MiB an arena). */
static uint64_t budget_bound(uint64_t *peak, uint64_t *live) {
  *peak = ctl("stats.allocated_peak");
  *live = ctl("stats.allocated");
  uint64_t room = *peak > *live ? *peak - *live : 0;
  return room + *peak / 8 + (4 + 2) * TU_MiB + ctl("stats.narenas") * TU_MiB;
}

static int mode_shared_budget(const char *order) {
  bool never = !strncmp(order, "never_", 6);         /* run with dirty_decay_ms:-1 */
  if (never) order += 6;
  bool blocks_first = !strcmp(order, "blocks_first");
  if (!blocks_first && strcmp(order, "objects_first")) return 99;
  if (blocks_first) budget_blocks(false);
  else budget_objects(false);
  uint64_t kept = ctl("stats.dirty") + ctl("stats.huge_cached"), purged = ctl("stats.peak_purged");
  if (kept < (BUDGET_MIB - 8) * TU_MiB) {        /* the first kind's pages must stay for the test */
    fprintf(stderr, "shared budget (%s): only %llu KiB dirty after the first kind\n", order,
            (unsigned long long)(kept >> 10));
    return 3;
  }
  if (blocks_first) budget_objects(true);
  else budget_blocks(true);
  uint64_t arena = ctl("stats.dirty"), huge = ctl("stats.huge_cached"), peak, live, bound = budget_bound(&peak, &live);
  fprintf(stderr, "shared budget (%s): %llu KiB dirty in arenas, %llu in the huge cache; %llu KiB live, peak %llu, "
          "bound %llu\n", order, (unsigned long long)(arena >> 10), (unsigned long long)(huge >> 10),
          (unsigned long long)(live >> 10), (unsigned long long)(peak >> 10), (unsigned long long)(bound >> 10));
  if (never)                      /* nothing purged: the first kind's pages stay beside the second */
    return ctl("stats.peak_purged") == purged && arena + huge >= (BUDGET_MIB - 8) * TU_MiB ? 0 : 5;
  if (ctl("stats.peak_purged") - purged < (BUDGET_MIB / 2) * TU_MiB) return 4;   /* counted as such */
  return arena + huge <= bound ? 0 : 1;
}

/* One heap of pages for both kinds (chunk_regions, chunk.h): pages freed
 * by one kind serve the other without a purge and a page fault.  A block
 * of 256 KiB stays live throughout, so that a region exists from the
 * start (chunks are carved only from regions huge blocks made) and a trim
 * does not release it.  Then the kinds of mode_shared_budget take turns:
 * while the second kind takes its 48 MiB, the process faults in fewer
 * than a quarter of their pages, besides the objects' pointer array
 * (6 MiB, fresh), the budget purges nothing, and dirty pages stay within its
 * bound.  With chunk_regions:false the second kind faults in its pages:
 * the test fails there (return 4). */
static long minflt(void) {
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  return u.ru_minflt;
}

static int mode_shared_heap(const char *order) {
  bool blocks_first = !strcmp(order, "blocks_first");
  if (!blocks_first && strcmp(order, "objects_first")) return 99;
  void *keep = malloc(256 << 10);
  if (!keep) return 2;
  malloc_trim(0);                     /* the region made for it: clean */
  if (blocks_first) budget_blocks(false);
  else budget_objects(false);
  uint64_t purged = ctl("stats.peak_purged");
  long before = minflt();
  if (blocks_first) budget_objects(true);
  else budget_blocks(true);
  long faults = minflt() - before;
  uint64_t arena = ctl("stats.dirty"), huge = ctl("stats.huge_cached"), peak, live, bound = budget_bound(&peak, &live);
  fprintf(stderr, "shared heap (%s): %ld faults for %d MiB; %llu KiB dirty in arenas, %llu in the huge cache, "
          "bound %llu\n", order, faults, BUDGET_MIB, (unsigned long long)(arena >> 10), (unsigned long long)(huge >> 10),
          (unsigned long long)(bound >> 10));
  long pages = (long)(((size_t)BUDGET_MIB << 20) / 4096), array = pages / 8;   /* 8 bytes a 64-byte object */
  if (faults >= pages / 4 + array) return 4;
  if (blocks_first && !ctl("stats.huge_chunks")) return 6;   /* the live objects' chunks are the region's */
  if (ctl("stats.peak_purged") != purged) return 5;
  free(keep);
  return arena + huge <= bound ? 0 : 1;
}
#endif

/* ---- tests -------------------------------------------------------------- */

#ifndef XA_TEST_GLIBC
/* Locked pages (mlock, mlockall) stay through MADV_DONTNEED: the kernel
 * refuses it.  A purged range must still read as zero, since calloc skips
 * the memset there.  `all`: mlockall(MCL_FUTURE), every new page locked
 * (and mapped in at once: a new region must not lock 1 GiB); `block`: one
 * freed block mlocked by the program.  After each free the decay purges
 * (dirty_decay_ms:100); then calloc's blocks are checked byte by byte. */
static bool wait_all_purged(void) {
  double end = tu_now() + 10;
  while ((ctl("stats.dirty") || ctl("stats.huge_cached")) && tu_now() < end) usleep(20000);
  if (ctl("stats.dirty") || ctl("stats.huge_cached"))
    fprintf(stderr, "locked: dirty %llu, huge_cached %llu after 10 s\n", (unsigned long long)ctl("stats.dirty"),
            (unsigned long long)ctl("stats.huge_cached"));
  return !ctl("stats.dirty") && !ctl("stats.huge_cached");
}

static bool all_zero(const unsigned char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i]) return false;
  return true;
}

/* This thread on the CPU it runs on: a huge shard is a CPU's, and a
 * freed extent is reused from its own shard only. */
static void stay_on_this_cpu(void) {
  cpu_set_t one;
  CPU_ZERO(&one);
  int cpu = sched_getcpu();
  if (cpu >= 0) CPU_SET(cpu, &one);
  if (cpu < 0 || sched_setaffinity(0, sizeof one, &one) != 0)
    fprintf(stderr, "locked: could not stay on one CPU (%s): a shard change may fail the test\n", strerror(errno));
}

static int mode_locked(const char *how) {
  stay_on_this_cpu();
  if (!strcmp(how, "block")) {
    void *keep = malloc((size_t)3 << 20), *b = malloc((size_t)3 << 20);
    if (!keep || !b) return 1;
    memset(b, 0x5a, (size_t)3 << 20);
    if (mlock(b, (size_t)3 << 20)) return 77;          /* RLIMIT_MEMLOCK below 3 MiB */
    free(b);
    free(malloc(100000));          /* an allocation slow path: starts the purger */
    if (!wait_all_purged()) return 2;
    unsigned char *c = calloc(1, (size_t)3 << 20);      /* b's extent fits best */
    int rc = !c ? 1 : c != b ? 5 : !all_zero(c, (size_t)3 << 20) ? 3 : !ctl("stats.purge_locked") ? 4 : 0;
    free(c);
    free(keep);
    return rc;
  }
  if (!tu_may_lock_all() || mlockall(MCL_FUTURE)) return 77;
  size_t rss0 = tu_rss();
  static const size_t sizes[] = {(size_t)64 << 20, (size_t)3 << 20, 300000, 40000, 2000, 64};
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    size_t n = sizes[k], count = n >= ((size_t)1 << 20) ? 1 : ((size_t)8 << 20) / n;
    size_t rss = tu_rss();
    void *keep = malloc(n);                             /* keeps the region, the chunk */
    /* a new region holds little more than the block: not 1 GiB */
    if (!keep || tu_rss() > rss + n + ((size_t)64 << 20)) return 5;
    void **v = malloc(count * sizeof *v);
    if (!v) return 1;
    for (size_t i = 0; i < count; i++) {
      if (!(v[i] = malloc(n))) return 1;
      memset(v[i], 0x5a, n);
    }
    for (size_t i = 0; i < count; i++) free(v[i]);
    if (!wait_all_purged()) return 2;
    for (size_t i = 0; i < count; i++) {
      v[i] = calloc(1, n);
      if (!v[i]) return 1;
      if (!all_zero(v[i], n)) {
        fprintf(stderr, "locked: calloc(%zu) reads old bytes\n", n);
        return 3;
      }
    }
    for (size_t i = 0; i < count; i++) free(v[i]);
    free(v);
    free(keep);
  }
  if (!ctl("stats.purge_locked")) return 4;
  /* locked pages purged are zeroed and kept: the regions that held them
   * go back whole (none kept for reuse: a 64 MiB one would stay resident) */
  size_t rss = wait_rss_below(rss0 + ((size_t)32 << 20), 10);
  if (rss >= rss0 + ((size_t)32 << 20)) {
    fprintf(stderr, "locked: RSS %zu MiB after everything was freed, %zu MiB before\n", rss >> 20, rss0 >> 20);
    return 6;
  }
  return 0;
}

static bool resident(const void *p, size_t n) {
  unsigned char vec[256];
  uintptr_t lo = (uintptr_t)p & ~(uintptr_t)4095, hi = ((uintptr_t)p + n) & ~(uintptr_t)4095;
  if (hi - lo > sizeof vec * 4096 || mincore((void *)lo, hi - lo, vec)) return false;
  for (size_t i = 0; i < (hi - lo) / 4096; i++)
    if (!(vec[i] & 1)) return false;
  return true;
}

static char never_touched[1 << 20];

/* xalloc's mlockall: the program's memory locked and mapped in, as the C
 * library's mlockall does, but not xalloc's tables over the address space
 * (the page map's 256 GiB reservation: 512 MiB of page tables once mapped
 * in; the chunk map: 32 MiB); MCL_FUTURE in force after it.  `denied`:
 * without the privilege and over RLIMIT_MEMLOCK it fails as the kernel's
 * does (-1, ENOMEM or EPERM) and leaves the allocator working. */
static int mode_mlockall(const char *how) {
  if (!strcmp(how, "denied")) {
    struct rlimit small = {65536, 65536};
    if (setrlimit(RLIMIT_MEMLOCK, &small)) return 77;
    if (geteuid() == 0 && setuid(65534)) return 77;     /* CAP_IPC_LOCK would pass the limit */
    errno = 0;
    if (mlockall(MCL_CURRENT | MCL_FUTURE) != -1 || (errno != ENOMEM && errno != EPERM)) return 2;
    void *p = malloc(100000), *q = calloc(1, (size_t)3 << 20);
    int rc = p && q && all_zero(q, (size_t)3 << 20) ? 0 : 3;
    free(p);
    free(q);
    return rc;
  }
  if (!tu_may_lock_all()) return 77;
  free(malloc(100));                                   /* the allocator is set up */
  long pte = (long)tu_status_kb("VmPTE:"), rss = (long)tu_status_kb("VmRSS:");
  if (mlockall(MCL_CURRENT | MCL_FUTURE)) return 77;
  if (!resident(never_touched, sizeof never_touched)) return 2;   /* MCL_CURRENT: mapped in */
  long pte_grew = (long)tu_status_kb("VmPTE:") - pte, rss_grew = (long)tu_status_kb("VmRSS:") - rss;
  fprintf(stderr, "mlockall: page tables +%ld KiB, RSS +%ld KiB\n", pte_grew, rss_grew);
  if (pte_grew > 64 << 10) return 3;                   /* the page map mapped in: +512 MiB */
  if (rss_grew > 24 << 10) return 4;                   /* the chunk map: +32 MiB */
  void *m = mmap(NULL, 4 << 12, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED || !resident(m, 4 << 12)) return 5;          /* MCL_FUTURE in force */
  munmap(m, 4 << 12);
  unsigned char *c = calloc(1, 300000);
  int rc = c && all_zero(c, 300000) ? 0 : 6;
  free(c);
  munlockall();
  return rc;
}

/* Two modes that lock memory: `any` passes or skips (77) by itself;
 * `privileged` needs CAP_IPC_LOCK or an unlimited RLIMIT_MEMLOCK, else the test
 * is skipped. */
static void run_locked(const char *any, const char *privileged, const char *conf) {
  int rc = run_self(any, conf);
  if (rc != 77) assert_int_equal(rc, 0);
  rc = run_self(privileged, conf);
  if (rc == 77) skip();
  assert_int_equal(rc, 0);
}
#endif

static void test_locked_pages_read_zero(void **state) {
  (void)state;
#ifdef XA_TEST_GLIBC
  skip();
#else
  run_locked("locked_block", "locked_all", "dirty_decay_ms:100");
#endif
}

static void test_mlockall_spares_tables(void **state) {
  (void)state;
#ifdef XA_TEST_GLIBC
  skip();
#else
  run_locked("mlockall_denied", "mlockall_current", NULL);
#endif
}

static void test_decay_lengthens_for_bursts(void **state) {
  (void)state;
#ifdef XA_TEST_GLIBC
  skip();
#else
  assert_int_equal(run_self("bursts", "dirty_decay_ms:200"), 0);
#endif
}

static void test_shared_budget(void **state) {
  (void)state;
#ifdef XA_TEST_GLIBC
  skip();
#else
  /* chunks of their own: the kinds' pages lie apart, and the budget
   * purges (with one heap of pages they serve each other: below) */
  const char *conf = "dirty_decay_ms:10000,huge_cache_bytes:4194304,narenas:1,chunk_regions:false";
  assert_int_equal(run_self("shared_budget_blocks_first", conf), 0);
  assert_int_equal(run_self("shared_budget_objects_first", conf), 0);
  /* dirty_decay_ms -1 purges nothing until a trim: both kinds stay */
  const char *never = "dirty_decay_ms:-1,huge_cache_bytes:4194304,narenas:1,chunk_regions:false";
  assert_int_equal(run_self("shared_budget_never_blocks_first", never), 0);
  assert_int_equal(run_self("shared_budget_never_objects_first", never), 0);
#endif
}

static void test_shared_heap(void **state) {
  (void)state;
#ifdef XA_TEST_GLIBC
  skip();
#else
  const char *conf = "dirty_decay_ms:10000,huge_cache_bytes:4194304,narenas:1";
  assert_int_equal(run_self("shared_heap_blocks_first", conf), 0);
  assert_int_equal(run_self("shared_heap_objects_first", conf), 0);
  /* the test fails without one heap */
  assert_int_equal(run_self("shared_heap_blocks_first", "dirty_decay_ms:10000,huge_cache_bytes:4194304,narenas:1,"
                                                        "chunk_regions:false"), 4);
#endif
}

static void test_muzzy_stage(void **state) {
  (void)state;
#ifdef XA_TEST_GLIBC
  skip();
#else
  assert_int_equal(run_self("muzzy", "purge:free,dirty_decay_ms:200,muzzy_decay_ms:300"), 0);
#endif
}


static void test_partly_purged_slabs_decay(void **state) {
  (void)state;
#ifdef XA_TEST_GLIBC
  skip();
#else
  assert_int_equal(run_self("partly_purged", "tcache:false,dirty_decay_ms:300,muzzy_decay_ms:60000"), 0);
#endif
}

static void test_idle_return_after_mass_free(void **state) {
  (void)state;
#ifdef XA_TEST_GLIBC
  skip();   /* glibc keeps most of it (see bench rss-time) */
#else
  assert_int_equal(run_self("idle_return", NULL), 0);
#endif
}

static void test_idle_return_without_caches(void **state) {
  (void)state;
#ifdef XA_TEST_GLIBC
  skip();
#else
  assert_int_equal(run_self("idle_return_nocache", "tcache:false"), 0);
  assert_int_equal(run_self("idle_return_nocache", "secure:true"), 0);
#endif
}

static void test_malloc_trim_at_once(void **state) {
  (void)state;
  objs = new_objs(NOBJ / 4);
  size_t base = tu_rss();
  assert_true(churn(NOBJ / 4) > 0);
  int rc = malloc_trim(0);
  size_t r = tu_rss();
  print_message("malloc_trim: base %zu MiB, after trim %zu MiB, rc %d\n", base >> 20, r >> 20, rc);
  assert_true(r < base + 24 * TU_MiB);
  free(objs);
}

static void test_huge_realloc_no_copy(void **state) {
  (void)state;
  size_t n = 64 * TU_MiB;
  char *p = malloc(n);
  assert_non_null(p);
  tu_fill_sparse(p, n, 42);
  memset(p, 7, n);                            /* every page resident */
  p[0] = 1, p[n - 1] = 2;
  struct rusage a, b;
  getrusage(RUSAGE_SELF, &a);
  char *q = realloc(p, 4 * n);
  getrusage(RUSAGE_SELF, &b);
  assert_non_null(q);
  assert_int_equal(q[0], 1);
  assert_int_equal(q[n - 1], 2);
  for (size_t i = 1; i < n - 1; i += 4096) assert_int_equal(q[i], 7);
  long faults = b.ru_minflt - a.ru_minflt;
  print_message("realloc 64 -> 256 MiB: %ld minor faults (a copy takes ~16384)\n", faults);
#ifndef XA_TEST_GLIBC
  assert_true(faults < 1024);                  /* pages moved, not copied */
#endif
  q = realloc(q, n / 2);                         /* shrink keeps the prefix */
  assert_int_equal(q[0], 1);
  free(q);
}

static void test_fork_child_purges(void **state) {
  (void)state;
#ifdef XA_TEST_GLIBC
  skip();
#else
  free(malloc(1 << 20));                      /* parent has a purger */
  pid_t pid = fork();
  if (pid == 0) {
    objs = new_objs(NOBJ / 4);
    size_t base = tu_rss();
    if (!churn(NOBJ / 4)) _exit(2);
    size_t r = wait_rss_below(base + 16 * TU_MiB, 4.0);
    _exit(r <= base + 16 * TU_MiB ? 0 : 1);
  }
  int st;
  waitpid(pid, &st, 0);
  assert_true(WIFEXITED(st));
  assert_int_equal(WEXITSTATUS(st), 0);
#endif
}

static void test_inline_purging_without_thread(void **state) {
  (void)state;
#ifdef XA_TEST_GLIBC
  skip();
#else
  assert_int_equal(run_self("inline", "background_thread:false"), 0);
#endif
}

static void test_purger_does_not_block_exit(void **state) {
  (void)state;
#ifdef XA_TEST_GLIBC
  skip();
#else
  double t = tu_now();
  assert_int_equal(run_self("exit", NULL), 0);
  assert_true(tu_now() - t < 30);               /* a hang would hit alarm(60) */
#endif
}

static void test_decay_never_until_trim(void **state) {
  (void)state;
#ifdef XA_TEST_GLIBC
  skip();
#else
  assert_int_equal(run_self("never", "dirty_decay_ms:-1"), 0);
#endif
}

#ifndef XA_TEST_GLIBC
/* Objects of one class (3 KiB) that a helper thread holds in its cache. */
static unsigned class_of_size(uint64_t size) {
  char name[64];
  for (unsigned c = 0; c < ctl("arenas.nclasses"); c++) {
    snprintf(name, sizeof name, "stats.classes.%u.size", c);
    if (ctl(name) == size) return c;
  }
  fail_msg("no class of %llu bytes", (unsigned long long)size);
  return 0;
}

static uint64_t class_curobjs(unsigned c) {
  char name[64];
  snprintf(name, sizeof name, "stats.classes.%u.curobjs", c);
  return ctl(name);
}

/* Can xalloc reclaim another thread's cache (membarrier private expedited)? */
static bool reclaim_possible(void) {
  long cmds = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
  return cmds > 0 && (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED);
}

struct holder {
  pthread_barrier_t bar;
  unsigned cls;
};

/* Caches 8 objects of 3 KiB, then makes no call until the main thread has
 * looked (barrier 2); then a miss; then waits for the main thread again. */
static void *cache_holder(void *arg) {
  struct holder *h = arg;
  free(malloc(1 << 20));               /* a large block: the purger is started */
  void *v[8];
  for (int i = 0; i < 8; i++) v[i] = malloc(3000);
  for (int i = 0; i < 8; i++) free(v[i]);
  pthread_barrier_wait(&h->bar);       /* 1: objects cached */
  pthread_barrier_wait(&h->bar);       /* 2: main looked */
  free(malloc(20000));                 /* a miss: first use of that class */
  pthread_barrier_wait(&h->bar);       /* 3: after its next slow path */
  pthread_barrier_wait(&h->bar);       /* 4: main looked (before exit flushes) */
  return NULL;
}

static uint64_t start_holder(struct holder *h, pthread_t *t) {
  h->cls = class_of_size(3072);
  malloc_trim(0);                      /* this thread's cache holds none of them */
  uint64_t before = class_curobjs(h->cls);
  pthread_barrier_init(&h->bar, NULL, 2);
  assert_int_equal(pthread_create(t, NULL, cache_holder, h), 0);
  pthread_barrier_wait(&h->bar);
  assert_true(class_curobjs(h->cls) - before >= 8);
  return before;
}

static void stop_holder(struct holder *h, pthread_t t) {
  pthread_barrier_wait(&h->bar);
  pthread_barrier_wait(&h->bar);
  pthread_barrier_wait(&h->bar);
  pthread_join(t, NULL);
  pthread_barrier_destroy(&h->bar);
}

/* tcache_reclaim:false: neither malloc_trim nor the purger touches an idle
 * thread's cache (a child mode: a failed cmocka assert exits non-zero). */
static int mode_noreclaim(void) {
  struct holder h;
  pthread_t t;
  uint64_t before = start_holder(&h, &t);
  uint64_t held = class_curobjs(h.cls) - before;
  malloc_trim(0);
  usleep(1500000);                     /* six purger reclaim periods */
  uint64_t after = class_curobjs(h.cls) - before, reclaimed = ctl("stats.tcache_reclaimed");
  stop_holder(&h, t);
  fprintf(stderr, "tcache_reclaim:false: held %llu, after trim and 1.5 s %llu, reclaimed %llu\n",
          (unsigned long long)held, (unsigned long long)after, (unsigned long long)reclaimed);
  return after == held && reclaimed == 0 ? 0 : 1;
}
#endif

/* malloc_trim empties the cache of a thread that is outside any call at
 * once (xa_tcache_reclaim); where the kernel refuses membarrier, the owner
 * does it at its next miss or full bin. */
static void test_trim_flushes_other_threads_caches(void **state) {
  (void)state;
#ifdef XA_TEST_GLIBC
  skip();
#else
  struct holder h;
  pthread_t t;
  uint64_t before = start_holder(&h, &t);
  uint64_t held = class_curobjs(h.cls) - before, reclaimed = ctl("stats.tcache_reclaimed");
  malloc_trim(0);                      /* (its result: whether pages went back) */
  uint64_t after_trim = class_curobjs(h.cls) - before;
  uint64_t got = ctl("stats.tcache_reclaimed") - reclaimed;
  pthread_barrier_wait(&h.bar);
  pthread_barrier_wait(&h.bar);
  uint64_t after_miss = class_curobjs(h.cls) - before;
  print_message("3 KiB objects held by the idle thread: %llu, after malloc_trim: %llu (reclaimed %llu objects), "
                "after its next miss: %llu\n", (unsigned long long)held, (unsigned long long)after_trim,
                (unsigned long long)got, (unsigned long long)after_miss);
  pthread_barrier_wait(&h.bar);       /* 4 */
  pthread_join(t, NULL);
  pthread_barrier_destroy(&h.bar);
  if (reclaim_possible()) {
    assert_int_equal(after_trim, 0);
    assert_true(got >= held);
  } else {
    assert_int_equal(after_trim, held);
  }
  assert_int_equal(after_miss, 0);
#endif
}

static void test_reclaim_can_be_turned_off(void **state) {
  (void)state;
#ifdef XA_TEST_GLIBC
  skip();
#else
  assert_int_equal(run_self("noreclaim", "tcache_reclaim:false"), 0);
#endif
}

/* The purger reclaims the cache of a thread that went quiet, with no call
 * from anyone: within a few reclaim periods (a quarter of the 1 s decay). */
static void test_purger_reclaims_quiet_threads_cache(void **state) {
  (void)state;
#ifdef XA_TEST_GLIBC
  skip();
#else
  if (!reclaim_possible()) skip();
  struct holder h;
  pthread_t t;
  uint64_t before = start_holder(&h, &t);
  double t0 = tu_now();
  uint64_t left;
  while ((left = class_curobjs(h.cls) - before) != 0 && tu_now() < t0 + 5) usleep(20000);
  print_message("quiet thread's cache reclaimed by the purger after %.2f s (%llu objects left)\n",
                tu_now() - t0, (unsigned long long)left);
  stop_holder(&h, t);
  assert_int_equal(left, 0);
#endif
}

#ifndef XA_TEST_GLIBC
/* Busy threads take the budget of quiet ones (a child mode, with a 1 MiB
 * tcache_total_bytes and a 200 ms decay: caches reclaimed every 50 ms).
 * 24 threads churn while the main thread counts the refills of a
 * 512-object churn of its own: its 64 B bin holds 1 MiB / 25 / 16, about
 * 40 objects.  Then the threads go quiet; once the purger has emptied
 * their caches (stats.tcache_active back to 1 above what it was before
 * them), the same churn fits the main thread's bin.  When they allocate
 * again they count as active once more.  And a bin grown while the main
 * thread was alone gives back what is over its share. */
#define BUSY_THREADS 24
static atomic_int busy_phase;             /* 0 churn, 1 quiet, 2 allocate once, 3 exit */
static atomic_int busy_done;
static void *busy_thread(void *arg) {
  (void)arg;
  void *p[16];
  while (atomic_load(&busy_phase) == 0) {
    for (int i = 0; i < 16; i++) p[i] = malloc(64);
    for (int i = 0; i < 16; i++) free(p[i]);
  }
  while (atomic_load(&busy_phase) == 1) usleep(1000);
  for (int i = 0; i < 16; i++) p[i] = malloc(64);
  for (int i = 0; i < 16; i++) free(p[i]);
  atomic_fetch_add(&busy_done, 1);
  while (atomic_load(&busy_phase) == 2) usleep(1000);
  return NULL;
}

static uint64_t churn_refills(unsigned cls) {
  char name[64];
  snprintf(name, sizeof name, "stats.classes.%u.refills", cls);
  static void *p[512];
  uint64_t before = ctl(name);
  for (int round = 0; round < 20; round++) {
    for (int i = 0; i < 512; i++) p[i] = malloc(64);
    for (int i = 0; i < 512; i++) free(p[i]);
  }
  return ctl(name) - before;
}

static uint64_t class_cached(unsigned c) {
  char name[64];
  snprintf(name, sizeof name, "stats.classes.%u.cached", c);
  return ctl(name);
}

static int mode_busy_idle(void) {
  unsigned cls = class_of_size(64), big = class_of_size(256);
  /* alone, the main thread's 256 B bin grows to hold 256 objects */
  static void *q[256];
  for (int i = 0; i < 256; i++) q[i] = malloc(256);
  for (int i = 0; i < 256; i++) free(q[i]);
  uint64_t cached_alone = class_cached(big);
  uint64_t base = ctl("stats.tcache_active");
  pthread_t t[BUSY_THREADS];
  for (int i = 0; i < BUSY_THREADS; i++)
    if (pthread_create(&t[i], NULL, busy_thread, NULL)) return 2;
  for (double t1 = tu_now(); tu_now() < t1 + 0.1;) free(malloc(64));   /* busy too: not reclaimed */
  uint64_t busy = ctl("stats.tcache_active");
  /* its refills run the cache's GC, which gives back what is over the
   * smaller share: the 256 B bin is back to its small-area 16 slots */
  uint64_t refills_busy = churn_refills(cls);
  for (int i = 0; i < 256; i++) q[i] = malloc(256);
  for (int i = 0; i < 256; i++) free(q[i]);
  uint64_t cached_shared = class_cached(big);
  atomic_store(&busy_phase, 1);
  double t0 = tu_now();
  uint64_t active;
  while ((active = ctl("stats.tcache_active")) > base && tu_now() < t0 + 10) usleep(20000);
  double waited = tu_now() - t0;
  uint64_t refills_quiet = churn_refills(cls);
  atomic_store(&busy_phase, 2);
  while (atomic_load(&busy_done) < BUSY_THREADS) usleep(1000);
  uint64_t again = ctl("stats.tcache_active");
  atomic_store(&busy_phase, 3);
  for (int i = 0; i < BUSY_THREADS; i++) pthread_join(t[i], NULL);
  fprintf(stderr, "active caches: %llu alone, %llu with %d busy threads, %llu after %.2f s quiet, %llu when they "
          "allocate again; refills of 20 churns of 512 x 64 B: %llu beside busy threads, %llu beside quiet ones; "
          "256 B objects cached: %llu alone, %llu beside busy threads\n",
          (unsigned long long)base, (unsigned long long)busy, BUSY_THREADS, (unsigned long long)active, waited,
          (unsigned long long)again, (unsigned long long)refills_busy, (unsigned long long)refills_quiet,
          (unsigned long long)cached_alone, (unsigned long long)cached_shared);
  /* on a loaded machine a churning thread may miss a whole reclaim period
   * and count as quiet: half of them active is enough here (then a 256 B
   * share is at most 1 MiB / 13 / 16, 20 objects; without the GC's
   * shrink the bin keeps over 100) */
  if (busy < base + BUSY_THREADS / 2 || active > base) return 1;
  if (cached_alone < 128 || cached_shared > 32) return 1;
  if (again < base + BUSY_THREADS / 2) return 1;   /* a reclaim pass may already have seen a few quiet */
  return refills_quiet * 4 < refills_busy ? 0 : 1;
}

/* A thread whose refills its share cuts short, among a crowd of caches
 * (more than 64), reclaims the quiet ones itself (XA_TC_SQUEEZED) rather
 * than waiting for the purger's passes: here a quarter of a 60 s decay
 * apart, so only the squeezed thread's own passes can empty the 100 quiet
 * caches within the 5 s this waits (a guard, 3 passes take 0.1 s). */
#define CROWD 100
static atomic_int crowd_ready, crowd_over;
static void *crowd_thread(void *arg) {
  (void)arg;
  /* one object of a big class: a refill of one, which no share cuts
   * short, so the crowd starts no pass of its own */
  free(malloc(3000));
  atomic_fetch_add(&crowd_ready, 1);
  while (!atomic_load(&crowd_over)) usleep(2000);
  return NULL;
}

static int mode_squeezed(void) {
  unsigned cls = class_of_size(64);
  uint64_t base = ctl("stats.tcache_active");
  pthread_t t[CROWD];
  for (int i = 0; i < CROWD; i++)
    if (pthread_create(&t[i], NULL, crowd_thread, NULL)) return 2;
  while (atomic_load(&crowd_ready) < CROWD) usleep(1000);
  uint64_t crowd = ctl("stats.tcache_active");
  uint64_t refills_crowd = churn_refills(cls);
  double t0 = tu_now();
  uint64_t active;
  while ((active = ctl("stats.tcache_active")) > base + 1 && tu_now() < t0 + 5) churn_refills(cls);
  double took = tu_now() - t0;
  uint64_t refills_alone = churn_refills(cls);
  atomic_store(&crowd_over, 1);
  for (int i = 0; i < CROWD; i++) pthread_join(t[i], NULL);
  fprintf(stderr, "squeezed: %llu active caches with the crowd, %llu after %.2f s of churns; refills of 20 churns: "
          "%llu in the crowd, %llu once it is idle\n", (unsigned long long)crowd, (unsigned long long)active, took,
          (unsigned long long)refills_crowd, (unsigned long long)refills_alone);
  if (crowd < base + CROWD / 2 || active > base + 1) return 1;
  return refills_alone * 4 < refills_crowd ? 0 : 1;
}
#endif

static void test_squeezed_thread_reclaims_quiet_caches(void **state) {
  (void)state;
#ifdef XA_TEST_GLIBC
  skip();
#else
  if (!reclaim_possible()) skip();
  assert_int_equal(run_self("squeezed", "tcache_total_bytes:1048576,dirty_decay_ms:60000"), 0);
#endif
}

static void test_busy_threads_take_quiet_ones_budget(void **state) {
  (void)state;
#ifdef XA_TEST_GLIBC
  skip();
#else
  if (!reclaim_possible()) skip();
  assert_int_equal(run_self("busy_idle", "tcache_total_bytes:1048576,dirty_decay_ms:200"), 0);
#endif
}

int main(int argc, char **argv) {
  if (argc > 1) {
    if (!strcmp(argv[1], "idle_return")) return mode_idle_return();
#ifndef XA_TEST_GLIBC
    if (!strcmp(argv[1], "squeezed")) return mode_squeezed();
#endif
    if (!strcmp(argv[1], "idle_return_nocache")) return mode_idle_return_nocache();
    if (!strcmp(argv[1], "inline")) return mode_inline();
    if (!strcmp(argv[1], "exit")) return mode_exit();
    if (!strcmp(argv[1], "never")) return mode_never();
#ifndef XA_TEST_GLIBC
    if (!strcmp(argv[1], "muzzy")) return mode_muzzy();
    if (!strcmp(argv[1], "partly_purged")) return mode_partly_purged();
    if (!strcmp(argv[1], "noreclaim")) return mode_noreclaim();
    if (!strcmp(argv[1], "busy_idle")) return mode_busy_idle();
    if (!strcmp(argv[1], "bursts")) return mode_bursts();
    if (!strncmp(argv[1], "shared_budget_", 14)) return mode_shared_budget(argv[1] + 14);
    if (!strncmp(argv[1], "shared_heap_", 12)) return mode_shared_heap(argv[1] + 12);
    if (!strncmp(argv[1], "locked_", 7)) return mode_locked(argv[1] + 7);
    if (!strncmp(argv[1], "mlockall_", 9)) return mode_mlockall(argv[1] + 9);
    if (!strcmp(argv[1], "start_rules")) return mode_start_rules();
    if (!strcmp(argv[1], "start_on_growth")) return mode_start_on_growth();
    if (!strcmp(argv[1], "start_in_child")) return mode_start_in_child();
    if (!strcmp(argv[1], "create_join")) return mode_create_join();
    if (!strcmp(argv[1], "fd_numbering")) return mode_fd_numbering();
    if (!strcmp(argv[1], "main_raw_exit")) return mode_main_raw_exit();
    if (!strcmp(argv[1], "main_exit_output")) return mode_main_exit_output();
#endif
    return 99;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_idle_return_after_mass_free),
      cmocka_unit_test(test_idle_return_without_caches),
      cmocka_unit_test(test_malloc_trim_at_once),
      cmocka_unit_test(test_trim_flushes_other_threads_caches),
      cmocka_unit_test(test_purger_reclaims_quiet_threads_cache),
      cmocka_unit_test(test_reclaim_can_be_turned_off),
      cmocka_unit_test(test_busy_threads_take_quiet_ones_budget),
      cmocka_unit_test(test_squeezed_thread_reclaims_quiet_caches),
      cmocka_unit_test(test_huge_realloc_no_copy),
      cmocka_unit_test(test_fork_child_purges),
      cmocka_unit_test(test_inline_purging_without_thread),
      cmocka_unit_test(test_purger_does_not_block_exit),
      cmocka_unit_test(test_decay_never_until_trim),
      cmocka_unit_test(test_decay_lengthens_for_bursts),
      cmocka_unit_test(test_shared_budget),
      cmocka_unit_test(test_shared_heap),
      cmocka_unit_test(test_locked_pages_read_zero),
      cmocka_unit_test(test_mlockall_spares_tables),
      cmocka_unit_test(test_muzzy_stage),
      cmocka_unit_test(test_partly_purged_slabs_decay),
#ifndef XA_TEST_GLIBC
      cmocka_unit_test(test_purger_start_rules),
      cmocka_unit_test(test_purger_leaves_descriptor_numbers_alone),
      cmocka_unit_test(test_purger_ends_after_main_raw_exit),
      cmocka_unit_test(test_purger_runs_the_exit_with_the_programs_files),
#endif
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
