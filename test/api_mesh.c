/* Meshing (mesh:true, issue 19): sparse slabs of one class share physical
 * pages, and nothing a program can see changes.  Each scenario re-executes
 * this program with its own XALLOC_CONF, under a timeout that turns a hang
 * into a failure:
 *  - basic: a heap left 1/64 full meshes, its resident memory falls, every
 *    survivor keeps its bytes and can be freed through its own address,
 *    and the meshed slabs get their own pages back when they empty;
 *  - stress: 8 threads write, check, free and allocate objects, and make
 *    waves of sparse slabs, while the main thread meshes as often as it
 *    can (chunks adopted into the file meanwhile, where they start
 *    private): no write is lost;
 *  - fork: a child sees every object as it was at the fork, and neither
 *    process sees the other's writes afterwards, with a thread writing,
 *    another meshing and a third in stdio in the parent during the forks;
 *  - double free through a meshed slab's address is still reported;
 *  - secure:true and junk:true with mesh:true.
 * A kernel or sandbox without userfaultfd's write protection leaves meshing
 * off (stats.mesh_on 0): the scenarios that need it are skipped. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>
#include <cmocka.h>
#include "testutil.h"
#ifndef XA_TEST_GLIBC
#include "xalloc.h"
#endif

#define SKIPPED 77          /* a child's exit status: meshing is not available */

#ifndef XA_TEST_GLIBC
static uint64_t stat_u64(const char *name) {
  uint64_t v = 0;
  size_t len = sizeof v;
  if (xalloc_ctl(name, &v, &len, NULL, 0) != 0) return UINT64_MAX;
  return v;
}

static uint64_t mesh_now(void) {
  uint64_t v = 0;
  size_t len = sizeof v;
  xalloc_ctl("thread.tcache.flush", NULL, NULL, NULL, 0);
  return xalloc_ctl("mesh", &v, &len, NULL, 0) == 0 ? v : 0;
}

/* n objects of `size` bytes, each filled with its own pattern; all but
 * about 1 in `keep` freed again (chosen at random). */
static void **sparse_heap(size_t n, size_t size, unsigned keep, uint64_t seed) {
  void **v = calloc(n, sizeof *v);
  tu_rng r;
  tu_seed(&r, seed);
  for (size_t i = 0; i < n; i++) {
    v[i] = malloc(size);
    if (!v[i]) return NULL;
    tu_fill(v[i], size, i);
  }
  for (size_t i = 0; i < n; i++)
    if (tu_next(&r) % keep) { free(v[i]); v[i] = NULL; }
  return v;
}

static size_t bad_objects(void **v, size_t n, size_t size) {
  size_t bad = 0;
  for (size_t i = 0; i < n; i++) bad += v[i] && !tu_check(v[i], size, i);
  return bad;
}

#define BASIC_N ((size_t)1 << 20)
#define BASIC_SIZE 48

static int cmp_addr(const void *x, const void *y) {
  uintptr_t a = *(const uintptr_t *)x, b = *(const uintptr_t *)y;
  return a < b ? -1 : a > b;
}

/* Bytes of the pages that hold some of the n blocks of v (NULLs skipped):
 * what the heap keeps resident if nothing is meshed. */
static size_t pages_holding(void **v, size_t n, size_t size) {
  size_t pg = (size_t)sysconf(_SC_PAGESIZE), m = 0, pages = 0;
  uintptr_t *at = malloc(2 * n * sizeof *at);
  if (!at) return 0;
  for (size_t i = 0; i < n; i++)
    if (v[i]) at[m++] = (uintptr_t)v[i] / pg, at[m++] = ((uintptr_t)v[i] + size - 1) / pg;
  qsort(at, m, sizeof *at, cmp_addr);
  for (size_t i = 0; i < m; i++) pages += !i || at[i] != at[i - 1];
  free(at);
  return pages * pg;
}

static int mode_basic(void) {
  if (!stat_u64("stats.mesh_on")) return SKIPPED;
  size_t rss0 = tu_rss();
  void **v = sparse_heap(BASIC_N, BASIC_SIZE, 64, 1);
  if (!v) return 1;
  xalloc_ctl("purge", NULL, NULL, NULL, 0);
  size_t before = tu_rss();
  /* Rss counts a page mapped at two addresses twice, Pss once (other
   * processes' shares of the libraries' pages make them differ already) */
  uint64_t twice_before = stat_u64("stats.resident") - stat_u64("stats.pss");
  uint64_t freed = 0;
  for (int i = 0; i < 200; i++) freed += mesh_now();
  xalloc_ctl("purge", NULL, NULL, NULL, 0);
  size_t after = tu_rss();
  uint64_t meshes = stat_u64("stats.mesh_meshes"), reclaimed = stat_u64("stats.mesh_reclaimed");
  size_t bad = bad_objects(v, BASIC_N, BASIC_SIZE);
  /* the check read every object through its own address: the aliases'
   * pages holding one (about 3/4 of them at 1/64 of 85 per page) are now
   * mapped twice */
  uint64_t twice = stat_u64("stats.resident") - stat_u64("stats.pss");
  /* 48 MiB of objects, 1/64 kept: most slabs pair up, so well over a
   * quarter of the slab pages must go (each alias frees one slab).  The
   * measure is what the heap needs unmeshed (v's array, and every page
   * that holds a kept object), not `before`: the purger's own passes may
   * have meshed before it was read (secure:true's slower frees leave them
   * the time), and a page of the file counts in Rss only while mapped. */
  size_t unmeshed = rss0 + BASIC_N * sizeof *v + pages_holding(v, BASIC_N, BASIC_SIZE);
  fprintf(stderr, "basic: %llu meshes, %llu KiB freed, rss %zu -> %zu KiB (unmeshed %zu), %zu bad, rss - pss %llu -> %llu KiB\n",
          (unsigned long long)meshes, (unsigned long long)(reclaimed >> 10), before >> 10, after >> 10,
          unmeshed >> 10, bad, (unsigned long long)(twice_before >> 10), (unsigned long long)(twice >> 10));
  if (bad || meshes < 100 || freed > reclaimed || after + (8u << 20) > unmeshed) return 2;
  if (twice < twice_before + reclaimed / 4) return 5;
  /* The file holds the meshed heap: the pages of the kept objects, so
   * more than their bytes (BASIC_N / 64 of BASIC_SIZE) and less than
   * unmeshed (aliases share pages). */
  uint64_t file = stat_u64("stats.mesh_file");
  fprintf(stderr, "basic: the file holds %llu KiB\n", (unsigned long long)(file >> 10));
  if (file < BASIC_N / 64 * BASIC_SIZE || file > unmeshed) return 6;
  /* Free through every address (some meshed, some owners), then let the
   * meshed slabs go: none may stay once all is free. */
  for (size_t i = 0; i < BASIC_N; i++) free(v[i]);
  free(v);
  for (int i = 0; i < 1000 && stat_u64("stats.mesh_aliases"); i++) mesh_now();
  /* The purger's own passes mesh too (mesh_period_ms), the one after
   * `meshes` was read included: every mesh so far is the count to match. */
  uint64_t left = stat_u64("stats.mesh_aliases"), unmeshes = stat_u64("stats.mesh_unmeshes"),
           meshed = stat_u64("stats.mesh_meshes");
  fprintf(stderr, "basic: %llu unmeshes of %llu meshes, %llu aliases left\n", (unsigned long long)unmeshes,
          (unsigned long long)meshed, (unsigned long long)left);
  if (left || unmeshes != meshed) return 3;
  /* Emptied and purged, the slabs' pages leave the file. */
  xalloc_ctl("purge", NULL, NULL, NULL, 0);
  uint64_t file_end = stat_u64("stats.mesh_file");
  fprintf(stderr, "basic: the file holds %llu KiB once all is freed\n", (unsigned long long)(file_end >> 10));
  if (file_end > file / 2) return 7;
  /* Their pages are clean now: a fresh heap of the same class reuses them
   * and reads as written. */
  void **w = sparse_heap(BASIC_N / 4, BASIC_SIZE, 2, 2);
  if (!w || bad_objects(w, BASIC_N / 4, BASIC_SIZE)) return 4;
  return 0;
}

/* ---- stress: writers while the main thread meshes ---------------------- */

#define STRESS_THREADS 8
#define STRESS_OBJS 20000
static atomic_int stress_stop;
static atomic_long stress_errors, stress_writes;

struct rec { uint64_t w[7]; };
/* 248 bytes: a slab of 256 objects (64 KiB), 8 of them kept on average,
 * so that two slabs are often disjoint and meshing has pairs to take */
#define STRESS_WORDS 31
struct srec { uint64_t w[STRESS_WORDS]; };

/* A wave: WAVE_OBJS objects allocated and written, all but about 1 in 32
 * freed at once, the survivors checked and freed at the next wave.  Each
 * makes sparse slabs while the others write, so that meshing (and, where
 * chunks start private, adoption) goes on throughout the writes instead
 * of only after the first frees. */
#define WAVE_OBJS 8192
#define WAVE_EVERY 16384     /* writes between waves */
static void wave(tu_rng *r, struct srec **w, uint64_t *val) {
  for (size_t i = 0; i < WAVE_OBJS; i++) {
    if (w[i]) {
      for (int k = 0; k < STRESS_WORDS; k++)
        if (w[i]->w[k] != val[i] + (uint64_t)k) { atomic_fetch_add(&stress_errors, 1); break; }
      free(w[i]);
    }
    w[i] = malloc(sizeof *w[i]);
    val[i] = tu_next(r);
    for (int k = 0; k < STRESS_WORDS; k++) w[i]->w[k] = val[i] + (uint64_t)k;
  }
  for (size_t i = 0; i < WAVE_OBJS; i++)
    if (tu_next(r) % 32) { free(w[i]); w[i] = NULL; }
}

/* n zeroed words, mapped apart from the heap */
static void *stress_array(size_t n) {
  void *p = mmap(NULL, n * 8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) abort();
  return p;
}

static void *stress_worker(void *arg) {
  uintptr_t id = (uintptr_t)arg;
  tu_rng r;
  tu_seed(&r, id + 100);
  /* The bookkeeping outside the heap: a chunk that holds a large block
   * (as these arrays would be) is not adopted into meshing's file. */
  struct srec **v = stress_array(STRESS_OBJS);
  uint64_t *val = stress_array(STRESS_OBJS);
  for (size_t i = 0; i < STRESS_OBJS; i++) {
    v[i] = malloc(sizeof *v[i]);
    val[i] = tu_next(&r);
    for (int k = 0; k < STRESS_WORDS; k++) v[i]->w[k] = val[i] + (uint64_t)k;
  }
  for (size_t i = 0; i < STRESS_OBJS; i++)
    if (tu_next(&r) % 32) { free(v[i]); v[i] = NULL; }
  long writes = 0;
  struct srec **w = stress_array(WAVE_OBJS);
  uint64_t *wval = stress_array(WAVE_OBJS);
  while (!atomic_load_explicit(&stress_stop, memory_order_relaxed)) {
    size_t i = tu_next(&r) % STRESS_OBJS;
    if (!v[i]) continue;
    if (writes % WAVE_EVERY == 0) wave(&r, w, wval);
    for (int k = 0; k < STRESS_WORDS; k++)
      if (v[i]->w[k] != val[i] + (uint64_t)k) { atomic_fetch_add(&stress_errors, 1); break; }
    val[i] = tu_next(&r);
    for (int k = 0; k < STRESS_WORDS; k++) v[i]->w[k] = val[i] + (uint64_t)k;
    if (++writes % 64 == 0) {       /* checked above: free it, take another */
      free(v[i]);
      v[i] = malloc(sizeof *v[i]);
      for (int k = 0; k < STRESS_WORDS; k++) v[i]->w[k] = val[i] + (uint64_t)k;
    }
  }
  for (size_t i = 0; i < STRESS_OBJS; i++) {
    if (!v[i]) continue;
    for (int k = 0; k < STRESS_WORDS; k++)
      if (v[i]->w[k] != val[i] + (uint64_t)k) { atomic_fetch_add(&stress_errors, 1); break; }
    free(v[i]);
  }
  for (size_t i = 0; i < WAVE_OBJS; i++) {
    if (!w[i]) continue;
    for (int k = 0; k < STRESS_WORDS; k++)
      if (w[i]->w[k] != wval[i] + (uint64_t)k) { atomic_fetch_add(&stress_errors, 1); break; }
    free(w[i]);
  }
  atomic_fetch_add(&stress_writes, writes);
  munmap(v, STRESS_OBJS * 8);
  munmap(val, STRESS_OBJS * 8);
  munmap(w, WAVE_OBJS * 8);
  munmap(wval, WAVE_OBJS * 8);
  return NULL;
}

static int mode_stress(void) {
  if (!stat_u64("stats.mesh_on")) return SKIPPED;
  pthread_t t[STRESS_THREADS];
  for (uintptr_t i = 0; i < STRESS_THREADS; i++) pthread_create(&t[i], NULL, stress_worker, (void *)i);
  double end = tu_now() + 3.0;
  usleep(100000);
  while (tu_now() < end) mesh_now();
  atomic_store(&stress_stop, 1);
  for (int i = 0; i < STRESS_THREADS; i++) pthread_join(t[i], NULL);
  uint64_t meshes = stat_u64("stats.mesh_meshes");
  fprintf(stderr, "stress: %ld writes, %ld errors, %llu meshes\n", (long)atomic_load(&stress_writes),
          (long)atomic_load(&stress_errors), (unsigned long long)meshes);
  return atomic_load(&stress_errors) ? 1 : meshes < 50 ? 2 : 0;
}

/* ---- fork ---------------------------------------------------------------- */

static atomic_int writer_stop;
static struct rec *writer_obj;
static void *parent_writer(void *arg) {
  (void)arg;
  for (uint64_t n = 1; !atomic_load_explicit(&writer_stop, memory_order_relaxed); n++)
    for (int k = 0; k < 7; k++) writer_obj->w[k] = n;
  return NULL;
}

/* Meshes while the main thread forks: a fork may come in the middle of a
 * mesh step. */
static atomic_int mesher_stop;
static void *mesher(void *arg) {
  (void)arg;
  while (!atomic_load_explicit(&mesher_stop, memory_order_relaxed)) mesh_now();
  return NULL;
}

/* stdio in a loop: fopen and fclose write heap FILEs while holding the C
 * library's list lock, which fork takes after the prepare handlers; a
 * writer held off across that point would hang the fork. */
static void *stdio_loop(void *arg) {
  (void)arg;
  while (!atomic_load_explicit(&writer_stop, memory_order_relaxed)) {
    FILE *f = fopen("/dev/null", "w");
    if (f) { fprintf(f, "%d", 1); fclose(f); }
  }
  return NULL;
}

/* Allocates, fills and publishes blocks without pause: a child forked
 * meanwhile that sees a block published sees it filled, since the fill
 * came before the publishing store (a heap copy made before the fork
 * itself would miss fills that came after it). */
#define PUB_WORDS 8
static _Atomic(uint64_t *) published;
static void *publisher(void *arg) {
  (void)arg;
  uint64_t *old = NULL;
  for (uint64_t n = 1; !atomic_load_explicit(&writer_stop, memory_order_relaxed); n++) {
    uint64_t *p = malloc(PUB_WORDS * sizeof *p);
    for (int k = 0; k < PUB_WORDS; k++) p[k] = n;
    atomic_store_explicit(&published, p, memory_order_release);
    free(old);
    old = p;
  }
  return NULL;
}

static int mode_fork(void) {
  if (!stat_u64("stats.mesh_on")) return SKIPPED;
  size_t n = BASIC_N;
  void **v = sparse_heap(n, BASIC_SIZE, 32, 3);
  writer_obj = malloc(sizeof *writer_obj);
  pthread_t w, m, io, pub;
  pthread_create(&w, NULL, parent_writer, NULL);
  pthread_create(&m, NULL, mesher, NULL);
  pthread_create(&io, NULL, stdio_loop, NULL);
  pthread_create(&pub, NULL, publisher, NULL);
  bool copy = strstr(getenv("XALLOC_CONF") ? getenv("XALLOC_CONF") : "", "mesh_fork:copy") != NULL;
  int takes = 0;
  int pipefd[2];
  for (int round = 0; round < 5; round++) {
    if (pipe(pipefd) != 0) return 2;
    pid_t pid = fork();
    if (pid < 0) return 3;
    if (pid == 0) {
      /* Everything as at the fork.  The writer's record may be caught half
       * written, but only as a prefix of round n over round n - 1: never a
       * later word newer than an earlier one. */
      size_t bad = bad_objects(v, n, BASIC_SIZE);
      for (int k = 1; k < 7; k++) bad += writer_obj->w[k] > writer_obj->w[k - 1];
      bad += writer_obj->w[0] - writer_obj->w[6] > 1;
      uint64_t *pb = atomic_load_explicit(&published, memory_order_acquire);
      for (int k = 0; pb && k < PUB_WORDS; k++)
        if (pb[k] != pb[0] || !pb[0]) {
          fprintf(stderr, "fork round %d: the child sees a published block unfilled (word %d: %#llx, word 0: %#llx)\n",
                  round, k, (unsigned long long)pb[k], (unsigned long long)pb[0]);
          bad++;
          break;
        }
      /* how the child got its file: took the parent's, or copied */
      char c = stat_u64("stats.mesh_fork_takes") ? 'T' : stat_u64("stats.mesh_fork_copies") ? 'C' : '?';
      /* Our writes stay ours: overwrite everything, tell the parent. */
      for (size_t i = 0; i < n; i++)
        if (v[i]) memset(v[i], 0xee, BASIC_SIZE);
      if (write(pipefd[1], &c, 1) != 1) _exit(5);
      /* The parent now rewrites its objects: they must not reach us. */
      usleep(100000);
      for (size_t i = 0; i < n; i++)
        if (v[i]) for (size_t j = 0; j < BASIC_SIZE; j++) bad += ((unsigned char *)v[i])[j] != 0xee;
      void *p = malloc(100);       /* and the child's heap works */
      free(p);
      _exit(bad ? 4 : 0);
    }
    close(pipefd[1]);
    char c;
    if (read(pipefd[0], &c, 1) != 1) return 6;
    close(pipefd[0]);
    if (c == '?' || (copy && c == 'T')) {
      fprintf(stderr, "fork round %d: the child's file: %c\n", round, c);
      return 10;
    }
    takes += c == 'T';
    size_t bad = bad_objects(v, n, BASIC_SIZE);
    for (size_t i = 0; i < n; i++)
      if (v[i]) tu_fill(v[i], BASIC_SIZE, i);  /* the same values: writes the child must not see */
    int st;
    waitpid(pid, &st, 0);
    if (bad || !WIFEXITED(st) || WEXITSTATUS(st)) {
      fprintf(stderr, "fork round %d: parent saw %zu bad objects, child status %d\n", round, bad, st);
      return 7;
    }
  }
  atomic_store(&writer_stop, 1);
  atomic_store(&mesher_stop, 1);
  pthread_join(w, NULL);
  pthread_join(m, NULL);
  pthread_join(io, NULL);
  pthread_join(pub, NULL);
  uint64_t meshes = stat_u64("stats.mesh_meshes");
  fprintf(stderr, "fork: 5 forks, %llu meshes meanwhile, %d children took the parent's file\n",
          (unsigned long long)meshes, takes);
  /* a child waits up to 2 s for its parent's copy, a few MiB here */
  return bad_objects(v, n, BASIC_SIZE) ? 8 : meshes < 100 ? 9 : !copy && takes == 0 ? 11 : 0;
}

/* A double free through a meshed slab's address: reported. */
/* Is p in a meshed slab: a mapping of the mesh file whose offset is not
 * its address (chunks map the file at offset = address)? */
static bool in_alias(const void *p) {
  FILE *f = fopen("/proc/self/maps", "r");
  char line[512];
  bool yes = false;
  while (f && !yes && fgets(line, sizeof line, f)) {
    unsigned long lo, hi, off;
    if (!strstr(line, "xalloc-mesh") || sscanf(line, "%lx-%lx %*s %lx", &lo, &hi, &off) != 3) continue;
    yes = (uintptr_t)p >= lo && (uintptr_t)p < hi && off != lo;
  }
  if (f) fclose(f);
  return yes;
}

static int mode_double_free(void) {
  if (!stat_u64("stats.mesh_on")) return SKIPPED;
  void **v = sparse_heap(BASIC_N / 4, BASIC_SIZE, 64, 4);
  for (int i = 0; i < 50; i++) mesh_now();
  if (!stat_u64("stats.mesh_aliases")) return 1;
  /* 16 survivors in meshed slabs, freed; back to their slabs' bitmaps
   * (the cache flushed); freed again: every second free must be reported
   * (abort_on_error:false: reported, then ignored). */
  void *picked[16];
  size_t twice = 0;
  for (size_t i = 0; i < BASIC_N / 4 && twice < 16; i++)
    if (v[i] && in_alias(v[i])) picked[twice++] = v[i];
  for (size_t i = 0; i < twice; i++) free(picked[i]);
  xalloc_ctl("thread.tcache.flush", NULL, NULL, NULL, 0);
  for (size_t i = 0; i < twice; i++) free(picked[i]);
  xalloc_ctl("thread.tcache.flush", NULL, NULL, NULL, 0);
  fprintf(stderr, "double_free: %zu objects of meshed slabs freed twice\n", twice);
  return twice == 16 ? 0 : 2;
}

/* Meshing's descriptors, closed by the program and their numbers reused:
 * the daemon pattern (close everything above stderr), then a file of the
 * program's on every number up to 511.  Meshing must neither use that
 * file (map it into the heap, punch it, copy it for a fork child) nor
 * close it.  With the privilege to reopen its file (/proc/self/map_files)
 * meshing goes on and a fork child gets its copy ("descriptors"); without
 * it ("descriptors-lost": run without CAP_SYS_ADMIN and
 * CAP_CHECKPOINT_RESTORE) meshing stops and emptied aliases still get
 * zero pages; a fork child then gets a copy made from the memory, sees
 * every object, and meshes again with its own file. */
static int our_low_descriptors(void) {
  int n = 0;
  DIR *d = opendir("/proc/self/fd");
  for (struct dirent *e; d && (e = readdir(d));) {
    char path[64], link[128];
    snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
    ssize_t len = readlink(path, link, sizeof link - 1);
    if (len <= 0) continue;
    link[len] = 0;
    n += atoi(e->d_name) < 256 && (strstr(link, "xalloc-mesh") || strstr(link, "userfaultfd"));
  }
  if (d) closedir(d);
  return n;
}

/* Can this process open /proc/self/map_files entries (the mapping of
 * meshing's file)? */
static bool map_files_open(void) {
  FILE *f = fopen("/proc/self/maps", "r");
  char line[512];
  bool ok = false;
  while (f && !ok && fgets(line, sizeof line, f)) {
    if (!strstr(line, "xalloc-mesh")) continue;
    char path[96];
    snprintf(path, sizeof path, "/proc/self/map_files/%.*s", (int)strcspn(line, " "), line);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ok = fd >= 0;
    if (fd >= 0) close(fd);
    break;
  }
  if (f) fclose(f);
  return ok;
}

/* Open descriptors above stderr that are not the program's file: only
 * meshing's two (a leak, such as a new userfaultfd per check, shows here),
 * and -1 if one of the program's numbers (3..511) no longer is its file. */
static int others(ino_t victim) {
  for (int fd = 3; fd < 512; fd++) {
    struct stat sb;
    if (fstat(fd, &sb) != 0 || sb.st_ino != victim) return -1;
  }
  int n = 0;
  DIR *d = opendir("/proc/self/fd");
  for (struct dirent *e; d && (e = readdir(d));) {
    int fd = atoi(e->d_name);
    struct stat sb;
    if (fd > 2 && fd != dirfd(d) && fstat(fd, &sb) == 0) n += sb.st_ino != victim;
  }
  if (d) closedir(d);
  return n;
}

/* others(), asked again for up to five seconds while the count is above
 * max: the purger holds a /proc file open for a moment now and then (a
 * transient descriptor, numbered above the program's here), a moment that
 * lasts longer on a loaded machine (half a second was seen too short). */
static int others_within(ino_t victim, int max) {
  int n = others(victim);
  for (int i = 0; i < 500 && n > max; i++) {
    usleep(10000);
    n = others(victim);
  }
  return n;
}

/* A descriptor of ours (numbered 600 or above) for meshing's file, one
 * whose inode is not `not` (0: any). */
static int mesh_file_dup(ino_t not) {
  int file = -1;
  DIR *d = opendir("/proc/self/fd");
  for (struct dirent *e; d && file < 0 && (e = readdir(d));) {
    char p[64], link[128];
    struct stat st;
    snprintf(p, sizeof p, "/proc/self/fd/%s", e->d_name);
    ssize_t len = readlink(p, link, sizeof link - 1);
    if (len > 0 && (link[len] = 0, strstr(link, "xalloc-mesh")) && fstat(atoi(e->d_name), &st) == 0 &&
        st.st_ino != not)
      file = fcntl(atoi(e->d_name), F_DUPFD_CLOEXEC, 600);
  }
  if (d) closedir(d);
  return file;
}

static int mode_descriptors(bool lost) {
  struct rlimit nofile;
  if (!stat_u64("stats.mesh_on") || getrlimit(RLIMIT_NOFILE, &nofile) != 0 || nofile.rlim_cur < 1024) return SKIPPED;
  if (our_low_descriptors()) return 1;         /* numbered high, out of the program's way */
  /* One CPU, so one arena: the second heap below fills the first heap's
   * (file-backed) chunks where they have room, which the fork child's
   * meshing needs; from another CPU it went all to new private chunks,
   * and the child had nothing to mesh (seen on a loaded machine). */
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(sched_getcpu(), &one);
  if (sched_setaffinity(0, sizeof one, &one) != 0) return 1;
  /* a large block in a file-backed chunk, one page of which the program
   * makes inaccessible around the fork (a guard page) */
  size_t pg = (size_t)sysconf(_SC_PAGESIZE), BIG = 64 << 10 > 4 * pg ? 64 << 10 : 4 * pg;
  unsigned char *big = NULL;
  if (posix_memalign((void **)&big, pg, BIG) != 0) return 1;
  for (size_t k = 0; k < BIG; k++) big[k] = (unsigned char)(k * 13 + 5);
  void **v = sparse_heap(BASIC_N / 2, BASIC_SIZE, 64, 3);
  if (!v) return 1;
  for (int i = 0; i < 50; i++) mesh_now();
  uint64_t before = stat_u64("stats.mesh_meshes");
  if (!before) return 2;
  /* reopening needs the privilege: the "lost" run is one without it */
  if (map_files_open() == lost) return SKIPPED;
  /* a look at the file from outside: how much of it stays allocated */
  int file = mesh_file_dup(0);
  if (file < 0) return 1;
  syscall(SYS_close_range, 3, 511, 0);
  char path[] = "/tmp/xalloc_victim_XXXXXX";
  int victim = mkstemp(path);
  static const char text[] = "the program's own file\n";
  if (victim < 0 || write(victim, text, sizeof text - 1) != (ssize_t)sizeof text - 1) return 1;
  unlink(path);
  for (int fd = 3; fd < 512; fd++)
    if (fd != victim) dup2(victim, fd);
  struct stat vs;
  fstat(victim, &vs);
  /* a second heap: new chunks, and more to mesh */
  void **w = sparse_heap(BASIC_N / 2, 80, 64, 4);
  if (!w) return 1;
  for (int i = 0; i < 50; i++) mesh_now();
  uint64_t after = stat_u64("stats.mesh_meshes"), reopens = stat_u64("stats.mesh_reopens"),
           on = stat_u64("stats.mesh_on");
  size_t bad = bad_objects(v, BASIC_N / 2, BASIC_SIZE) + bad_objects(w, BASIC_N / 2, 80);
  fprintf(stderr, "descriptors%s: meshes %llu -> %llu, %llu reopened, mesh_on %llu, %zu bad\n", lost ? "-lost" : "",
          (unsigned long long)before, (unsigned long long)after, (unsigned long long)reopens,
          (unsigned long long)on, bad);
  if (bad) return 3;
  if (lost ? on != 0 || after != before : on != 1 || reopens < 1 || after <= before) return 4;
  int mine = others_within(vs.st_ino, 3);
  if (mine < 0 || mine > 3) return 9;      /* meshing's two, and `file` */
  /* read-only pages around the fork, more than the child's list holds
   * before it grows: every other page of ten large blocks of 32 pages */
  enum { RO_BLOCKS = 10, RO_PAGES = 32 };
  unsigned char *ro[RO_BLOCKS];
  for (int b = 0; b < RO_BLOCKS; b++) {
    if (posix_memalign((void **)&ro[b], pg, RO_PAGES * pg) != 0) return 1;
    memset(ro[b], b, RO_PAGES * pg);
    for (int i = 0; i < RO_PAGES; i += 2)
      if (mprotect(ro[b] + i * pg, pg, PROT_READ) != 0) return 1;
  }
  /* Purged free pages inside slabs are holes in the file: a copy made
   * from the memory reads them, and must give them back. */
  xalloc_ctl("purge", NULL, NULL, NULL, 0);
  struct stat f0;
  if (fstat(file, &f0) != 0) return 1;
  if (mprotect(big + pg, pg, PROT_NONE) != 0) return 1;
  pid_t pid = fork();
  if (pid == 0) {
    /* the child's copy keeps the program's protection of that page, and
     * of that page only */
    if (strncmp(tu_perms_at((uintptr_t)(big + pg)), "---", 3) || strncmp(tu_perms_at((uintptr_t)big), "rw-", 3) ||
        strncmp(tu_perms_at((uintptr_t)(big + 2 * pg)), "rw-", 3))
      _exit(8);
    for (int b = 0; b < RO_BLOCKS; b++)
      for (int i = 0; i < RO_PAGES; i++)
        if (strncmp(tu_perms_at((uintptr_t)(ro[b] + i * pg)), i % 2 ? "rw-" : "r--", 3)) _exit(8);
    if (mprotect(big + pg, pg, PROT_READ | PROT_WRITE) != 0) _exit(6);
    for (size_t k = 0; k < BIG; k++)
      if (big[k] != (unsigned char)(k * 13 + 5)) _exit(7);
    memset(big, 0, BIG);
    size_t b = bad_objects(v, BASIC_N / 2, BASIC_SIZE) + bad_objects(w, BASIC_N / 2, 80);
    for (size_t i = 0; i < BASIC_N / 2; i++)
      if (v[i]) memset(v[i], 0x77, BASIC_SIZE);
    int n = others_within(vs.st_ino, 3);
    if (b || n < 0 || n > 3) _exit(b ? 1 : 2);
    /* its own file: meshing runs in the child, and where the parent
     * could no longer mesh, the child meshes the slabs of its file-backed
     * chunks that the frees above made sparse (w's chunks made after the
     * loss are private) */
    uint64_t m0 = stat_u64("stats.mesh_meshes");
    for (size_t i = 0; i < BASIC_N / 2; i += 2) free(w[i]), w[i] = NULL;
    for (int i = 0; i < 50; i++) mesh_now();
    uint64_t m1 = stat_u64("stats.mesh_meshes");
    fprintf(stderr, "descriptors%s: the fork child meshes %llu -> %llu, mesh_on %llu\n", lost ? "-lost" : "",
            (unsigned long long)m0, (unsigned long long)m1, (unsigned long long)stat_u64("stats.mesh_on"));
    if (stat_u64("stats.mesh_on") != 1 || (lost && m1 <= m0)) _exit(3);
    /* the child's own writes survive its meshing */
    size_t changed = 0;
    for (size_t i = 0; i < BASIC_N / 2; i++)
      for (size_t k = 0; v[i] && k < BASIC_SIZE; k++) changed += ((unsigned char *)v[i])[k] != 0x77;
    _exit(bad_objects(w, BASIC_N / 2, 80) || changed ? 4 : 0);
  }
  int st;
  waitpid(pid, &st, 0);
  if (mprotect(big + pg, pg, PROT_READ | PROT_WRITE) != 0) return 1;
  for (int b = 0; b < RO_BLOCKS; b++) {
    if (mprotect(ro[b], RO_PAGES * pg, PROT_READ | PROT_WRITE) != 0) return 1;
    free(ro[b]);
  }
  for (size_t k = 0; k < BIG; k++)
    if (big[k] != (unsigned char)(k * 13 + 5)) return 12;   /* the child's writes stayed its own */
  free(big);
  /* After the fork the parent has a file of its own, a copy of its heap;
   * the one before holds no more than it did (the copies read its holes,
   * and gave them back) and is no one's now. */
  struct stat f1, n1;
  int now = mesh_file_dup(f0.st_ino);
  if (fstat(file, &f1) != 0 || now < 0 || fstat(now, &n1) != 0) return 1;
  close(file);
  file = now;
  fprintf(stderr, "descriptors%s: the parent's file holds %lld KiB before the fork; after it, %lld KiB, and its new "
          "file %lld KiB\n", lost ? "-lost" : "", (long long)f0.st_blocks / 2, (long long)f1.st_blocks / 2,
          (long long)n1.st_blocks / 2);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    fprintf(stderr, "descriptors%s: the fork child ended with status %#x\n", lost ? "-lost" : "", st);
    return 5;
  }
  if (f1.st_blocks > f0.st_blocks + 128 || n1.st_blocks > f0.st_blocks + 128) return 11;   /* 64 KiB of slack */
  /* the new file is the parent's own: one that had lost its file meshes again */
  uint64_t m0 = stat_u64("stats.mesh_meshes");
  for (size_t i = 1; i < BASIC_N / 2; i += 2) free(w[i]), w[i] = NULL;
  /* and a third sparse heap, none of it meshed yet: w's slabs may all be
   * owners or aliases by now (up to 63 aliases share one slab's pages),
   * and neither kind moves */
  void **x = sparse_heap(BASIC_N / 4, 64, 64, 5);
  if (!x) return 1;
  for (int i = 0; i < 50; i++) mesh_now();
  fprintf(stderr, "descriptors%s: the parent meshes %llu -> %llu after the fork, mesh_on %llu\n", lost ? "-lost" : "",
          (unsigned long long)m0, (unsigned long long)stat_u64("stats.mesh_meshes"),
          (unsigned long long)stat_u64("stats.mesh_on"));
  if (stat_u64("stats.mesh_on") != 1 || stat_u64("stats.mesh_meshes") <= m0) return 13;
  if (bad_objects(v, BASIC_N / 2, BASIC_SIZE)) return 6;     /* the child's writes stayed its own */
  if (bad_objects(x, BASIC_N / 4, 64)) return 6;
  for (size_t i = 0; i < BASIC_N / 2; i++) free(v[i]), free(w[i]);
  for (size_t i = 0; i < BASIC_N / 4; i++) free(x[i]);
  for (int i = 0; i < 1000 && stat_u64("stats.mesh_aliases"); i++) mesh_now();
  if (stat_u64("stats.mesh_aliases")) return 7;
  /* all free: purging leaves no shared page behind (the aliases' zero
   * pages without the file included) */
  xalloc_ctl("purge", NULL, NULL, NULL, 0);
  struct stat fs;
  if (fstat(file, &fs) != 0) return 1;
  fprintf(stderr, "descriptors%s: the file holds %lld KiB once all is free\n", lost ? "-lost" : "",
          (long long)fs.st_blocks / 2);
  if (fs.st_blocks / 2 > 2048) return 10;
  close(file);
  mine = others_within(vs.st_ino, 2);
  if (mine < 0 || mine > 2) return 9;
  char back[64] = {0};
  struct stat sb;
  if (fstat(victim, &sb) != 0 || sb.st_size != (off_t)sizeof text - 1 || pread(victim, back, sizeof back - 1, 0) < 0 ||
      strcmp(back, text))
    return 8;
  return 0;
}

/* Run without the capabilities that open /proc/self/map_files (root's
 * bounding set loses them; CAP_SYS_PTRACE, which userfaultfd needs, stays). */
static void drop_reopen_caps(void) {
  if (prctl(PR_CAPBSET_DROP, 21 /* CAP_SYS_ADMIN */, 0, 0, 0) != 0) _exit(SKIPPED);
  prctl(PR_CAPBSET_DROP, 40 /* CAP_CHECKPOINT_RESTORE (Linux 5.9) */, 0, 0, 0);
}
/* A fork from a thread whose stack is a heap block (a coroutine's) cannot
 * work with meshing (the stack is shared with the child, and the copy's
 * write protection would stop the thread itself): the process stops with
 * a message instead of hanging. */
static ucontext_t coro_main, coro_ctx;
static void coro_body(void) {
  pid_t pid = fork();
  if (pid == 0) _exit(0);
  waitpid(pid, NULL, 0);
}
static int coro_fork(void *arg) {
  (void)arg;
  size_t sz = 128 << 10;           /* a large block: in a chunk, file-backed */
  char *stack = malloc(sz);
  if (!stack || getcontext(&coro_ctx) != 0) return 1;
  coro_ctx.uc_stack.ss_sp = stack;
  coro_ctx.uc_stack.ss_size = sz;
  coro_ctx.uc_link = &coro_main;
  makecontext(&coro_ctx, coro_body, 0);
  swapcontext(&coro_main, &coro_ctx);
  return 2;                        /* the fork went through */
}
/* A file size limit the program sets after start (ulimit -f): the fork
 * copy's file is as large as the address space.  A soft limit is lifted
 * for the copy and put back, and the child has its heap; under a hard one
 * the parent lives on and its child stops with the message. */
static int fork_under_hard_limit(void *arg) {
  (void)arg;
  struct rlimit hard = {1 << 20, 1 << 20};
  if (setrlimit(RLIMIT_FSIZE, &hard) != 0) return 1;
  pid_t pid = fork();
  if (pid == 0) _exit(0);              /* not reached: xalloc's handler stops it */
  int st;
  if (pid < 0 || waitpid(pid, &st, 0) != pid) return 1;
  return WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT ? 0 : 2;
}

static int mode_fsize(void) {
  if (!stat_u64("stats.mesh_on")) return SKIPPED;
  void **v = sparse_heap(BASIC_N / 8, BASIC_SIZE, 64, 5);
  if (!v) return 1;
  struct rlimit soft = {1 << 20, RLIM_INFINITY}, now;
  if (setrlimit(RLIMIT_FSIZE, &soft) != 0) return 1;
  pid_t pid = fork();
  if (pid == 0) _exit(bad_objects(v, BASIC_N / 8, BASIC_SIZE) ? 1 : 0);
  int st;
  if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st)) return 2;
  if (getrlimit(RLIMIT_FSIZE, &now) != 0 || now.rlim_cur != soft.rlim_cur || now.rlim_max != RLIM_INFINITY) return 3;
  static tu_child res;
  tu_run_child(&res, fork_under_hard_limit, NULL, 1, 60);
  fprintf(stderr, "fsize: soft limit: the child checked its heap; hard limit: exited %d code %d: %s", res.exited,
          res.code, res.err);
  return res.exited && res.code == 0 && strstr(res.err, "could not get its own copy of the heap") ? 0 : 4;
}

static int mode_stack_fork(void) {
  if (!stat_u64("stats.mesh_on")) return SKIPPED;
  static tu_child res;
  tu_run_child(&res, coro_fork, NULL, 1, 60);
  fprintf(stderr, "stack-fork: exited %d code %d signal %d timed out %d: %s", res.exited, res.code, res.sig,
          res.timed_out, res.err);
  if (res.timed_out) return 3;
  return res.sig == SIGABRT && strstr(res.err, "stack is a heap block") ? 0 : 4;
}

#endif

static void run_mode(const char *mode, const char *conf) {
#ifdef XA_TEST_GLIBC
  (void)mode, (void)conf;
  skip();
#else
  int rc = tu_run_self(mode, conf, 120);
  if (rc == SKIPPED) skip();
  assert_int_equal(rc, 0);
#endif
}

static void test_mesh_frees_pages(void **state) { (void)state; run_mode("basic", "mesh:true"); }
static void test_mesh_stack_fork_stops(void **state) { (void)state; run_mode("stack-fork", "mesh:true"); }
static void test_mesh_fork_under_fsize_limit(void **state) { (void)state; run_mode("fsize", "mesh:true"); }
static void test_mesh_descriptors_reopened(void **state) { (void)state; run_mode("descriptors", "mesh:true"); }
static void test_mesh_descriptors_lost(void **state) {
  (void)state;
#ifdef XA_TEST_GLIBC
  skip();
#else
  int rc = tu_run_self_with("descriptors-lost", "mesh:true", 120, drop_reopen_caps);
  if (rc == SKIPPED) skip();
  assert_int_equal(rc, 0);
#endif
}
/* decay short: the purger's slab purges run beside the mesh steps too */
static void test_mesh_loses_no_write(void **state) { (void)state; run_mode("stress", "mesh:true,mesh_period_ms:1,dirty_decay_ms:50"); }
static void test_mesh_fork_private(void **state) { (void)state; run_mode("fork", "mesh:true"); }
static void test_mesh_fork_private_copy(void **state) { (void)state; run_mode("fork", "mesh:true,mesh_fork:copy"); }
static void test_mesh_secure(void **state) { (void)state; run_mode("basic", "mesh:true,secure:true"); }
static void test_mesh_junk(void **state) { (void)state; run_mode("basic", "mesh:true,junk:true"); }
static void test_mesh_stress_secure(void **state) { (void)state; run_mode("stress", "mesh:true,secure:true"); }

static void test_mesh_double_free_reported(void **state) {
  (void)state;
#ifdef XA_TEST_GLIBC
  skip();
#else
  char err[8192];
  int rc = tu_run_conf("mesh:true,abort_on_error:false", "double_free", err, sizeof err);
  if (WIFEXITED(rc) && WEXITSTATUS(rc) == SKIPPED) skip();
  assert_true(WIFEXITED(rc) && WEXITSTATUS(rc) == 0);
  unsigned reports = 0;
  for (const char *e = err; (e = strstr(e, "double free")); e++) reports++;
  if (reports != 16) fail_msg("%u double-free reports for 16 (stderr: %s)", reports, err);
#endif
}

static void test_mesh_off_by_default(void **state) {
  (void)state;
#ifdef XA_TEST_GLIBC
  skip();
#else
  assert_int_equal(stat_u64("stats.mesh_on"), 0);
  uint64_t freed = 1;
  size_t len = sizeof freed;
  assert_int_equal(xalloc_ctl("mesh", &freed, &len, NULL, 0), 0);
  assert_int_equal(freed, 0);
#endif
}

int main(int argc, char **argv) {
#ifndef XA_TEST_GLIBC
  if (argc > 1) {
    if (!strcmp(argv[1], "basic")) return mode_basic();
    if (!strcmp(argv[1], "stress")) return mode_stress();
    if (!strcmp(argv[1], "fork")) return mode_fork();
    if (!strcmp(argv[1], "double_free")) return mode_double_free();
    if (!strcmp(argv[1], "descriptors")) return mode_descriptors(false);
    if (!strcmp(argv[1], "descriptors-lost")) return mode_descriptors(true);
    if (!strcmp(argv[1], "stack-fork")) return mode_stack_fork();
    if (!strcmp(argv[1], "fsize")) return mode_fsize();
    return 99;
  }
#else
  (void)argc, (void)argv;
#endif
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_mesh_off_by_default),
      cmocka_unit_test(test_mesh_frees_pages),
      cmocka_unit_test(test_mesh_loses_no_write),
      cmocka_unit_test(test_mesh_fork_private),
      cmocka_unit_test(test_mesh_fork_private_copy),
      cmocka_unit_test(test_mesh_double_free_reported),
      cmocka_unit_test(test_mesh_secure),
      cmocka_unit_test(test_mesh_junk),
      cmocka_unit_test(test_mesh_stress_secure),
      cmocka_unit_test(test_mesh_descriptors_reopened),
      cmocka_unit_test(test_mesh_descriptors_lost),
      cmocka_unit_test(test_mesh_stack_fork_stops),
      cmocka_unit_test(test_mesh_fork_under_fsize_limit),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
