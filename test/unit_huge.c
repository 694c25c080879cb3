/* Unit tests of huge blocks (src/huge.c): blocks carved from regions,
 * freed extents reused without page faults (same size, merged neighbours,
 * a dirty extent continued into clean pages), realloc in place over a
 * free neighbour and by moving pages (no copy, no faults, no mappings
 * left behind once freed and purged), also when the kernel refuses the
 * move, and below 2 MiB by a copy into resident pages
 * rather than growth into fresh ones; freed blocks too small for a request
 * gathered into it by moving their pages; calloc of reused pages reads zero; decay and
 * malloc_trim return the pages and the regions.  Blocks come from the
 * shard of the CPU that asks and go back to their own shard from any
 * thread; a shard without resident pages takes another shard's before
 * fresh ones.  The tests run pinned to one CPU (one shard), except those
 * about shards. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <malloc.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <cmocka.h>

#include "testutil.h"
#include "arena.h"
#include "budget.h"
#include "extent.h"
#include "huge.h"
#include "hugemap.h"
#include "fork_window.h"
#include "init.h"
#include "options.h"
#include "os.h"
#include "xalloc.h"

#define MiB ((size_t)1 << 20)
#define PG 4096

static long minor_faults(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_minflt;
}

/* A stamp per page, derived from a key: written and checked. */
static void stamp(char *p, size_t n, uint64_t key) {
  for (size_t o = 0; o + 8 <= n; o += PG) {
    uint64_t v = key * 0x9e3779b97f4a7c15ull + o;
    memcpy(p + o, &v, 8);
  }
}
static void check_stamp(const char *p, size_t n, uint64_t key) {
  for (size_t o = 0; o + 8 <= n; o += PG) {
    uint64_t v = key * 0x9e3779b97f4a7c15ull + o, got;
    memcpy(&got, p + o, 8);
    if (got != v) fail_msg("page at offset %zu of %p lost its contents", o, (const void *)p);
  }
}

static size_t huge_dirty(void) {
  size_t n, bytes, cached;
  xa_huge_stats(&n, &bytes, &cached);
  return cached;
}

static cpu_set_t all_cpus;              /* the affinity the process started with */

/* Run the calling thread on CPU cpu only. */
static void pin(int cpu) {
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(cpu, &one);
  assert_int_equal(sched_setaffinity(0, sizeof one, &one), 0);
}

/* Run it on the first CPU the process may use. */
static void pin_first(void) {
  for (int c = 0; c < CPU_SETSIZE; c++)
    if (CPU_ISSET(c, &all_cpus)) {
      pin(c);
      return;
    }
}

static int setup(void **state) {
  (void)state;
  assert_int_equal(sched_getaffinity(0, sizeof all_cpus, &all_cpus), 0);
  pin_first();                             /* one shard: deterministic reuse */
  assert_true(xa_init());
  xa_opt.dirty_decay_ms = -1;            /* no purging behind the tests' backs */
  xa_opt.huge_cache_bytes = 256 << 20;   /* and room for every freed block */
  /* The regions hold huge blocks only: a chunk carved from them (chunk.h,
   * tested in unit_arena) would move the blocks these tests place. */
  static const struct xa_chunk_source none;
  xa_chunk_set_source(&none);
  xa_huge_cache_decay(UINT64_MAX);
  return 0;
}

/* Faults taken while writing every page of [p, p+n). */
static long faults_writing(char *p, size_t n, int v) {
  long before = minor_faults();
  memset(p, v, n);
  return minor_faults() - before;
}

static void test_reuse_without_faults(void **state) {
  (void)state;
  char *a = malloc(20 * MiB);
  assert_non_null(a);
  memset(a, 1, 20 * MiB);
  free(a);
  assert_true(huge_dirty() >= 20 * MiB);
  char *b = malloc(20 * MiB);            /* the same size: the same pages */
  long f = faults_writing(b, 20 * MiB, 2);
  free(b);
  if (f > 64) fail_msg("reusing a freed 20 MiB block took %ld page faults", f);
  char *c = malloc(7 * MiB);             /* smaller: cut from it */
  f = faults_writing(c, 7 * MiB, 3);
  free(c);
  if (f > 64) fail_msg("a 7 MiB block cut from a freed 20 MiB one took %ld faults", f);
}

static void test_neighbours_merge(void **state) {
  (void)state;
  xa_huge_cache_decay(UINT64_MAX);
  char *a = malloc(8 * MiB), *b = malloc(6 * MiB), *keep = malloc(3 * MiB);
  assert_non_null(a);
  assert_non_null(b);
  assert_non_null(keep);
  memset(a, 1, 8 * MiB);
  memset(b, 1, 6 * MiB);
  free(a);
  free(b);
  /* adjacent or not, 14 MiB of resident pages serve two blocks */
  char *c = malloc(8 * MiB), *d = malloc(6 * MiB);
  long f = faults_writing(c, 8 * MiB, 2) + faults_writing(d, 6 * MiB, 2);
  if (f > 128) fail_msg("reusing two freed blocks took %ld faults", f);
  free(c);
  free(d);
  if (b == a + 8 * MiB) {                /* carved one after the other: merged */
    char *e = malloc(14 * MiB);
    f = faults_writing(e, 14 * MiB, 3);
    if (e != a || f > 64) fail_msg("merged 14 MiB not reused whole: %p (a %p), %ld faults", (void *)e, (void *)a, f);
    free(e);
  }
  free(keep);
}

static void test_dirty_continued_into_clean(void **state) {
  (void)state;
  xa_huge_cache_decay(UINT64_MAX);
  char *a = malloc(10 * MiB);
  memset(a, 1, 10 * MiB);
  free(a);
  /* 16 MiB: the 10 resident MiB and 6 fresh ones after them */
  char *b = malloc(16 * MiB);
  long f = faults_writing(b, 16 * MiB, 2);
  if (f > (long)(6 * MiB / PG) + 128)
    fail_msg("16 MiB over a freed 10 MiB extent took %ld faults (6 MiB fresh)", f);
  free(b);
}

static void test_realloc_in_place_and_moved(void **state) {
  (void)state;
  xa_huge_cache_decay(UINT64_MAX);
  char *a = malloc(4 * MiB);
  stamp(a, 4 * MiB, 1);
  char *b = realloc(a, 9 * MiB);         /* the region's free pages follow it */
  assert_ptr_equal(a, b);
  check_stamp(b, 4 * MiB, 1);
  stamp(b, 9 * MiB, 2);
  /* (9 MiB asks for huge pages: whole 2 MiB ones) */
  assert_int_equal(malloc_usable_size(b), 10 * MiB);
  char *wall = malloc(3 * MiB);          /* now something lives right after it */
  assert_ptr_equal(wall, b + 10 * MiB);
  long before = minor_faults();
  char *c = realloc(b, 30 * MiB);        /* moved: pages move, nothing is copied */
  assert_non_null(c);
  assert_ptr_not_equal(c, b);
  check_stamp(c, 9 * MiB, 2);
  long f = minor_faults() - before;
  if (f > 256) fail_msg("moving a 9 MiB block took %ld faults (pages should move)", f);
  stamp(c, 30 * MiB, 3);
  char *d = realloc(c, 5 * MiB);         /* shrink in place */
  assert_ptr_equal(c, d);
  check_stamp(d, 5 * MiB, 3);
  assert_int_equal(malloc_usable_size(d), 5 * MiB);
  free(d);
  free(wall);
}

/* A block that realloc moves is a mapping of its own (the kernel keeps
 * its pages' offsets), and so stayed the range it left: moves added
 * mappings that no purge joined again (2000 moves of a program keeping 64
 * blocks: 1380 mappings, growing).  The range left gets fresh pages mapped
 * over it, and purges in the block's region map fresh pages: once the
 * blocks are freed and purged, the count is back where it was. */
static void test_realloc_moves_leave_no_mappings(void **state) {
  (void)state;
  xa_huge_cache_decay(UINT64_MAX);
  enum { LIVE = 8, MOVES = 200 };
  char *keep[LIVE] = {0};
  unsigned seed = 1, moves = 0;
  size_t maps0 = xa_os_map_count();
  for (int i = 0; i < MOVES; i++) {
    size_t n = (size_t)(2 + rand_r(&seed) % 6) * MiB;
    char *p = malloc(n), *wall = malloc(1 * MiB);   /* wall: p cannot grow in place */
    assert_non_null(p);
    assert_non_null(wall);
    stamp(p, n, (uint64_t)i);
    char *q = realloc(p, 2 * n + (rand_r(&seed) % 64) * PG);
    assert_non_null(q);
    check_stamp(q, n, (uint64_t)i);
    if (q != p) moves++;
    free(keep[i % LIVE]);
    keep[i % LIVE] = q;
    free(wall);
  }
  size_t maps1 = xa_os_map_count();
  for (int i = 0; i < LIVE; i++) free(keep[i]);
  xa_opt.dirty_decay_ms = 10;
  xa_huge_cache_decay(xa_os_now() + 1000000000ull);
  xa_opt.dirty_decay_ms = -1;
  assert_int_equal(huge_dirty(), 0);
  size_t maps2 = xa_os_map_count();
  print_message("%u moves; mappings %zu before, %zu with %d blocks live, %zu after\n", moves, maps0, maps1, LIVE, maps2);
  /* most grow in place over a freed neighbour; 52 move here */
  if (moves < MOVES / 8) fail_msg("only %u of %d reallocs moved their block", moves, MOVES);
  /* A few stay apart: a range mapped afresh joins one neighbour, and the
   * two sides of it may keep different kernel records of their pages (5
   * after 52 moves, where every move left one or two: 132). */
  if (maps2 > maps0 + 2 + moves / 4)
    fail_msg("%zu mappings before %u moves, %zu after their blocks were freed and purged", maps0, moves, maps2);
}

/* Below XA_REMAP_MIN a block grows in place over resident pages only:
 * with fresh pages after it and a freed (resident) extent elsewhere that
 * holds it grown, realloc copies it there; with no such extent, or with
 * resident pages after it, it grows in place. */
static void test_realloc_grows_into_resident_pages(void **state) {
  (void)state;
  xa_huge_cache_decay(UINT64_MAX);
  char *d = malloc(2 * MiB);             /* to be freed: 2 resident MiB */
  char *wall = malloc(512 * 1024);       /* keeps d's extent from a's */
  char *a = malloc(1 * MiB);
  assert_non_null(d);
  assert_non_null(wall);
  assert_non_null(a);
  const size_t n = malloc_usable_size(a), grown = n + 64 * 1024;
  memset(d, 1, 2 * MiB);
  stamp(a, n, 11);
  size_t dirty = huge_dirty();
  free(d);
  assert_true(huge_dirty() >= dirty + 2 * MiB);
  long before = minor_faults();
  char *b = realloc(a, grown);
  long f = minor_faults() - before;
  assert_non_null(b);
  if (b == a) fail_msg("grew in place into fresh pages with 2 resident MiB free elsewhere");
  check_stamp(b, n, 11);
  before = minor_faults();
  memset(b + n, 2, grown - n);           /* the new part is resident too */
  f += minor_faults() - before;
  if (f > 64) fail_msg("growing into resident pages took %ld faults", f);
  free(b);
  free(wall);

  /* nothing resident anywhere: in place over the fresh pages */
  xa_huge_cache_decay(UINT64_MAX);
  a = malloc(1 * MiB);
  assert_int_equal(malloc_usable_size(a), n);
  stamp(a, n, 12);
  char *c = realloc(a, grown);
  assert_ptr_equal(c, a);
  check_stamp(c, n, 12);

  /* resident pages right after it: in place, though others are free too */
  char *next = malloc(2 * MiB), *far = malloc(4 * MiB);
  assert_non_null(next);
  assert_non_null(far);
  memset(next, 3, 2 * MiB);
  memset(far, 3, 4 * MiB);
  bool adjacent = next == c + malloc_usable_size(c);
  free(next);
  free(far);
  if (adjacent) {
    char *e = realloc(c, grown + 512 * 1024);
    assert_ptr_equal(e, c);
    check_stamp(e, n, 12);
    c = e;
  }
  free(c);
}

static void test_move_refused_copies(void **state) {
  (void)state;
  char *a = malloc(6 * MiB), *wall = malloc(2 * MiB + 4096);
  stamp(a, 6 * MiB, 7);
  xa_os_fail_maps = 1;                   /* mremap fails: realloc copies */
  char *b = realloc(a, 20 * MiB);
  xa_os_fail_maps = 0;
  assert_non_null(b);
  check_stamp(b, 6 * MiB, 7);
  free(b);
  free(wall);
}

static void test_calloc_of_reused_pages_reads_zero(void **state) {
  (void)state;
  char *a = malloc(12 * MiB);
  memset(a, 0x5a, 12 * MiB);
  free(a);
  char *c = calloc(1, 4 * MiB);
  char *d = calloc(1, 30 * MiB);
  assert_non_null(c);
  assert_non_null(d);
  for (size_t o = 0; o < 4 * MiB; o += 512) assert_int_equal(c[o], 0);
  for (size_t o = 0; o < 30 * MiB; o += 512) assert_int_equal(d[o], 0);
  free(c);
  free(d);
}

static void test_trim_returns_everything(void **state) {
  (void)state;
  char *a = malloc(50 * MiB);
  memset(a, 1, 50 * MiB);
  free(a);
  assert_true(huge_dirty() >= 50 * MiB);
  assert_true(xa_huge_reserved() > 0);
  malloc_trim(0);
  assert_int_equal(huge_dirty(), 0);
  assert_int_equal(xa_huge_reserved(), 0);
  assert_true(xa_huge_is_cached(a) == false);
}

/* Decay: extents dirty for longer than dirty_decay_ms are purged. */
static void test_decay_purges_old_extents(void **state) {
  (void)state;
  char *a = malloc(16 * MiB);
  memset(a, 1, 16 * MiB);
  free(a);
  assert_true(xa_huge_is_cached(a));
  xa_opt.dirty_decay_ms = 10;
  uint64_t now = xa_os_now();
  xa_huge_cache_decay(now);              /* not old enough yet */
  assert_true(huge_dirty() >= 16 * MiB);
  xa_huge_cache_decay(now + 20 * 1000000ull);
  assert_int_equal(huge_dirty(), 0);
  xa_opt.dirty_decay_ms = -1;
}

/* A shard's table of live blocks keeps the size its live blocks need
 * however many blocks come and go: every free leaves a deleted slot, and
 * a rehash is sized by the live blocks (it used to double each time: a
 * table as big as all the allocations ever made, resident). */
static void test_block_table_stays_small(void **state) {
  (void)state;
  char *ring[16] = {0};
  uint64_t x = 0x9e3779b97f4a7c15ull;
  size_t after_few = 0;
  for (unsigned i = 0; i < 60000; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    unsigned j = (unsigned)(x % 16);
    free(ring[j]);
    ring[j] = malloc((256 << 10) + (size_t)((x >> 20) % (2 * MiB)));   /* addresses vary */
    assert_non_null(ring[j]);
    ring[j][0] = 1;
    if (i == 6000) after_few = xa_huge_metadata();
  }
  size_t after_many = xa_huge_metadata();
  /* explain's share of it: resident, the table's pages with blocks in
   * them and the records' pages in use at least */
  size_t res = xa_huge_metadata_resident();
  assert_true(res >= 2 * (size_t)PG && res <= after_many);
  for (unsigned j = 0; j < 16; j++) free(ring[j]);
  /* (a record segment more is allowed: extents, not the table) */
  if (after_many > after_few + XA_EXT_SEGMENT_BYTES)
    fail_msg("the tables grew from %zu to %zu bytes with 16 blocks live", after_few, after_many);
  assert_true(after_many < (1 << 20));
}

/* huge_cache_bytes bounds the dirty bytes beyond the live huge bytes;
 * what stays dirty is reused first. */
static void sleep_until(double t) {
  double now = tu_now();
  if (t > now) usleep((useconds_t)((t - now) * 1e6));
}

static int restore_budget(void **state) {
  (void)state;
  xa_opt.dirty_decay_ms = -1;
  xa_opt.huge_cache_bytes = 256 << 20;
  return 0;
}

static void test_dirty_budget(void **state) {
  (void)state;
  if (xa_os_page != PG) skip();           /* (the bounds below count 4 KiB pages) */
  xa_huge_cache_decay(UINT64_MAX);        /* a trim: the peak starts over */
  xa_opt.huge_cache_bytes = 16 << 20;
  /* walls: a and b stay two extents, neither joined to the clean pages
   * after them (b starts at a 2 MiB boundary: the walls are 1.5 MiB, so
   * that w2 does not fit before it) */
  char *a = malloc(30 * MiB), *w = malloc(MiB + MiB / 2), *b = malloc(30 * MiB), *w2 = malloc(MiB + MiB / 2);
  assert_true(a && w && b && w2);
  assert_ptr_equal(w, a + 30 * MiB);
  assert_ptr_equal(w2, b + 30 * MiB);
  memset(a, 1, 30 * MiB);
  memset(b, 1, 30 * MiB);
  /* no decay time (-1): the peak is the most live since the trim, 63 MiB */
  free(a);
  free(b);
  size_t d = huge_dirty();
  if (d < 60 * MiB) fail_msg("63 MiB live a moment ago, yet only %zu bytes kept after freeing 60", d);
  /* but live and dirty pages stay within that peak and 16 MiB: a block
   * that neither extent holds takes fresh pages (calloc's: nothing
   * gathered), and the oldest dirty ones are purged as it comes (43 MiB
   * live: 36 MiB may stay dirty) */
  char *z = calloc(1, 40 * MiB);
  assert_non_null(z);
  d = huge_dirty();
  if (d > 37 * MiB || d + 2 * MiB < 36 * MiB) fail_msg("43 MiB live after a peak of 63, %zu bytes kept dirty", d);
  char *c = malloc(30 * MiB);             /* b's pages, still resident */
  long before = minor_faults();
  memset(c, 2, 30 * MiB);
  long f = minor_faults() - before;
  if (f > 64) fail_msg("30 MiB over a resident freed block took %ld faults", f);
  free(c);
  free(z);
  /* A block freed and allocated again and again keeps its pages over
   * decay times: the mark of the decay time before stays.  Here a new
   * decay time begins while the block is not live (one mark restarted
   * from the live bytes then would purge it: 16 MiB kept). */
  xa_opt.dirty_decay_ms = 300;
  for (int round = 0; round < 2; round++) {
    xa_huge_cache_decay(UINT64_MAX);      /* a trim: the decay time starts now */
    double t0 = tu_now();
    char *x = malloc(30 * MiB);
    assert_non_null(x);
    memset(x, 3, 30 * MiB);
    sleep_until(t0 + 0.1);
    free(x);
    double freed = tu_now();
    sleep_until(t0 + 0.32);
    free(malloc(1 * MiB));                /* the first budget past the decay time */
    d = huge_dirty();
    if (tu_now() - freed > 0.28) {        /* x old enough to decay meanwhile */
      print_message("round %d: %.0f ms between free and check: not checked\n", round, (tu_now() - freed) * 1e3);
      continue;
    }
    if (d < 30 * MiB) fail_msg("round %d: a 30 MiB block freed a moment ago, yet %zu bytes kept dirty", round, d);
  }
  /* and a block live for decay times counts in the mark it is freed in */
  xa_opt.dirty_decay_ms = 100;
  xa_huge_cache_decay(UINT64_MAX);
  char *y = malloc(30 * MiB);
  assert_non_null(y);
  memset(y, 4, 30 * MiB);
  usleep(250 * 1000);
  free(y);
  d = huge_dirty();
  if (d < 30 * MiB) fail_msg("a 30 MiB block freed after 250 ms, yet %zu bytes kept dirty", d);
  free(w);
  free(w2);
}

/* stats.anon_huge reports the kernel's AnonHugePages; with thp:always a
 * huge block is madvised and usually gets huge pages (not asserted: the
 * kernel may have none free). */
static void test_anon_huge_stat(void **state) {
  (void)state;
  malloc_trim(0);                        /* the next block makes a new region */
  int thp = xa_opt.thp;
  xa_opt.thp = xa_opt_thp_always;
  char *a = malloc(64 * MiB);
  assert_non_null(a);
  memset(a, 1, 64 * MiB);
  uint64_t v = 0;
  size_t len = sizeof v;
  assert_int_equal(xalloc_ctl("stats.anon_huge", &v, &len, NULL, 0), 0);
  long kb = -1;
  FILE *f = fopen("/proc/self/smaps_rollup", "r");
  if (f) {
    char line[256];
    while (fgets(line, sizeof line, f)) sscanf(line, "AnonHugePages: %ld kB", &kb);
    fclose(f);
  }
  print_message("AnonHugePages %ld kB, stats.anon_huge %llu\n", kb, (unsigned long long)v);
  if (kb >= 0 && llabs((long long)v - kb * 1024LL) > (8 << 20))
    fail_msg("stats.anon_huge %llu, smaps_rollup %ld kB", (unsigned long long)v, kb);
  free(a);
  xa_opt.thp = thp;
}

/* The shard a live block belongs to. */
static unsigned shard_of(const void *p) {
  unsigned shard = 99;
  assert_true(xa_hugemap_lookup((uintptr_t)p, &shard) != 0);
  return shard;
}

/* Two CPUs that map to two shards, or skip the test. */
static void two_shards(int *a, int *b) {
  int cpus[2], n = 0;
  for (int c = 0; c < CPU_SETSIZE && n < 2; c++)
    if (CPU_ISSET(c, &all_cpus)) cpus[n++] = c;
  if (n < 2 || xa_arena_count() < 2 || (unsigned)cpus[0] % xa_arena_count() == (unsigned)cpus[1] % xa_arena_count()) {
    print_message("fewer than two CPUs or arenas: one shard\n");
    skip();
  }
  *a = cpus[0];
  *b = cpus[1];
}

/* The shared budget's arithmetic (budget.h): a part gives back what the
 * other took, as far as the two are over the budget and it holds more
 * than its own slack; the huge cache's dirty bytes and slack count in.
 * The slack and the cap it changes come back in the teardown. */
static int64_t share_keep_bytes;
static size_t share_keep_cap;

static int share_setup(void **state) {
  (void)state;
  share_keep_bytes = xa_opt.huge_cache_bytes;
  xa_opt.huge_cache_bytes = 1 << 30;
  share_keep_cap = xa_budget_huge_slack();          /* a memory limit's share, if lower */
  xa_opt.huge_cache_bytes = share_keep_bytes;
  return 0;
}

static int share_teardown(void **state) {
  (void)state;
  xa_budget_limit_huge(share_keep_cap < (size_t)1 << 30 ? share_keep_cap : SIZE_MAX);
  xa_opt.huge_cache_bytes = share_keep_bytes;
  return 0;
}

static void test_budget_share(void **state) {
  (void)state;
  assert_int_equal(xa_budget_share(10 * MiB, 5 * MiB, 20 * MiB, 16 * MiB), 4 * MiB);   /* its own excess */
  assert_int_equal(xa_budget_share(10 * MiB, 5 * MiB, 40 * MiB, 16 * MiB), 5 * MiB);   /* the overshoot */
  assert_int_equal(xa_budget_share(3 * MiB, 5 * MiB, 40 * MiB, 16 * MiB), 3 * MiB);    /* what was taken */
  assert_int_equal(xa_budget_share(3 * MiB, 5 * MiB, 10 * MiB, 16 * MiB), 0);          /* within its slack */
  if (share_keep_cap < 4 * MiB) skip();              /* a memory limit below 64 MiB */
  xa_opt.huge_cache_bytes = 4 << 20;
  xa_budget_limit_huge(SIZE_MAX);
  assert_int_equal(xa_budget_huge_slack(), 4 * MiB);
  xa_budget_limit_huge(1 * MiB);                     /* a memory limit's share is lower */
  assert_int_equal(xa_budget_huge_slack(), 1 * MiB);
  xa_budget_limit_huge(SIZE_MAX);
  /* dirty: 30 MiB of arenas' and the huge cache's; budget: the arenas'
   * 20 MiB and the cache's 4 */
  size_t huge = __atomic_load_n(&xa_budget_huge_dirty, __ATOMIC_RELAXED);
  assert_int_equal(xa_budget_over(30 * MiB, 20 * MiB), 30 * MiB + huge - 24 * MiB);
  assert_int_equal(xa_budget_over(0, 100 * MiB), 0);
}

static void test_shards(void **state) {
  (void)state;
  int ca = 0, cb = 0;
  two_shards(&ca, &cb);
  xa_huge_cache_decay(UINT64_MAX);
  pin(ca);
  char *p = malloc(8 * MiB);
  stamp(p, 8 * MiB, 1);
  pin(cb);
  char *q = malloc(8 * MiB);
  stamp(q, 8 * MiB, 2);
  unsigned sa = shard_of(p), sb = shard_of(q);
  assert_int_not_equal(sa, sb);            /* each CPU its own shard */
  /* freed on the other CPU: back to its own shard, and reused from there
   * by a CPU whose shard has no resident pages, without faults */
  free(p);
  assert_true(huge_dirty() >= 8 * MiB);
  char *r = malloc(8 * MiB);
  long f = faults_writing(r, 8 * MiB, 3);
  if (r != p || f > 64) fail_msg("8 MiB freed on another CPU: %p (freed %p), %ld faults", (void *)r, (void *)p, f);
  assert_int_equal(shard_of(r), sa);
  pin(ca);
  check_stamp(q, 8 * MiB, 2);
  free(q);                                 /* from CPU a into shard b */
  char *t = malloc(6 * MiB);
  f = faults_writing(t, 6 * MiB, 4);
  if (t != q || f > 64) fail_msg("6 MiB cut from a block of the other shard: %p (freed %p), %ld faults", (void *)t, (void *)q, f);
  assert_int_equal(shard_of(t), sb);
  /* realloc of another shard's block works in that shard */
  t = realloc(t, 12 * MiB);
  assert_non_null(t);
  assert_int_equal(shard_of(t), sb);
  assert_true(malloc_usable_size(t) >= 12 * MiB);
  free(t);
  free(r);
  pin(ca);
}

/* Threads on every CPU allocate, stamp, swap and free huge blocks of
 * assorted sizes: most frees go to another CPU's shard. */
#define SWAP_THREADS 4
#define SWAP_SLOTS 16
static char *slots[SWAP_SLOTS];

static void *swapper(void *arg) {
  uint64_t x = (uintptr_t)arg * 0x9e3779b97f4a7c15ull + 1;
  for (int i = 0; i < 600; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    size_t n = (256 << 10) + (x % (3 * MiB));
    char *p = malloc(n);
    if (!p) return "malloc failed";
    uint64_t key = x | 1;
    memcpy(p, &key, 8);
    memcpy(p + n - 8, &key, 8);
    memcpy(p + 8, &n, 8);
    if (x & 1 << 20) {
      size_t m = n + (x >> 40) % MiB;     /* grown by realloc too */
      if (!(p = realloc(p, m))) return "realloc failed";
      memcpy(p + m - 8, &key, 8);
      memcpy(p + 8, &m, 8);
      n = m;
    }
    char *old = __atomic_exchange_n(&slots[x % SWAP_SLOTS], p, __ATOMIC_ACQ_REL);
    if (old) {
      uint64_t k1, k2;
      size_t m;
      memcpy(&k1, old, 8);
      memcpy(&m, old + 8, 8);
      memcpy(&k2, old + m - 8, 8);
      if (k1 != k2 || malloc_usable_size(old) < m) return "a block lost its contents";
      free(old);
    }
  }
  return NULL;
}

static void test_cross_thread_blocks(void **state) {
  (void)state;
  assert_int_equal(sched_setaffinity(0, sizeof all_cpus, &all_cpus), 0);   /* threads inherit it */
  pthread_t t[SWAP_THREADS];
  for (uintptr_t i = 0; i < SWAP_THREADS; i++) assert_int_equal(pthread_create(&t[i], NULL, swapper, (void *)i), 0);
  const char *why = NULL;
  for (int i = 0; i < SWAP_THREADS; i++) {
    void *res;
    assert_int_equal(pthread_join(t[i], &res), 0);
    if (res) why = res;
  }
  for (int i = 0; i < SWAP_SLOTS; i++) {
    free(slots[i]);
    slots[i] = NULL;
  }
  if (why) fail_msg("%s", why);
  size_t n, bytes, cached;
  xa_huge_stats(&n, &bytes, &cached);
  assert_int_equal(n, 0);                  /* every block found its shard */
  xa_huge_cache_decay(UINT64_MAX);
  xa_huge_stats(&n, &bytes, &cached);
  assert_int_equal(cached, 0);
  pin_first();
}

/* A thread that allocates a huge block while every shard's lock is held
 * elsewhere: its wait is counted (stats.huge_contended). */
static int waiter_tid;
static void *take_huge(void *arg) {
  (void)arg;
  __atomic_store_n(&waiter_tid, (int)syscall(SYS_gettid), __ATOMIC_RELEASE);
  void *p = malloc(MiB);
  free(p);
  return p ? NULL : "malloc failed";
}

/* Is thread tid asleep (in the kernel: waiting for the lock)? */
static bool thread_sleeping(int tid) {
  char path[64], buf[256];
  snprintf(path, sizeof path, "/proc/self/task/%d/stat", tid);
  FILE *f = fopen(path, "r");
  if (!f) return false;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  char *close = strrchr(buf, ')');
  return close && close[1] == ' ' && close[2] == 'S';
}

static void test_lock_contention_counted(void **state) {
  (void)state;
  unsigned n;
  uint64_t before, after, v = 0;
  size_t len = sizeof v;
  xa_huge_lock_stats(&n, &before);
  unsigned arenas = xa_arena_count();
  assert_int_equal(n, arenas < XA_HUGE_SHARDS ? arenas : XA_HUGE_SHARDS);
  assert_int_equal(xalloc_ctl("stats.huge_shards", &v, &len, NULL, 0), 0);
  assert_int_equal(v, n);
  xa_huge_prefork();                       /* every shard's lock, held here */
  pthread_t t;
  __atomic_store_n(&waiter_tid, 0, __ATOMIC_RELAXED);
  assert_int_equal(pthread_create(&t, NULL, take_huge, NULL), 0);
  /* until it sleeps on a lock (10 s at most: then the count fails) */
  for (int i = 0; i < 1000; i++) {
    int tid = __atomic_load_n(&waiter_tid, __ATOMIC_ACQUIRE);
    if (tid && thread_sleeping(tid)) break;
    usleep(10000);
  }
  xa_huge_postfork_parent();
  void *res;
  assert_int_equal(pthread_join(t, &res), 0);
  assert_null(res);
  xa_huge_lock_stats(&n, &after);
  assert_true(after > before);
  assert_int_equal(xalloc_ctl("stats.huge_contended", &v, &len, NULL, 0), 0);
  assert_true(v >= after);
}

/* A fork from another thread while an extent's pages are under madvise
 * (its shard's lock dropped, the range out of the index): the child, where
 * no thread finishes that purge, gets the range back as a free extent, the
 * next block of its size is carved from it, and once that is freed and
 * trimmed no region is left (the region's free bytes add up).  Without
 * the child's step the range stays out of use, and its region for good. */
static char *fw_huge;
static int child_extent_back(void) {
  if (!xa_huge_is_cached(fw_huge)) return 1;
  char *b = malloc(16 * MiB);
  if (b != fw_huge) return 2;              /* the previous tests left no other free range */
  free(b);
  malloc_trim(0);
  if (xa_huge_reserved() != 0) return 3;
  return 0;
}

/* The child of a fork from the purging thread, after that purge: every
 * region goes back, and goes back again after a new block (the region's
 * free bytes add up). */
static int child_regions_go(void) {
  malloc_trim(0);
  if (xa_huge_reserved() != 0) return 1;
  char *b = malloc(16 * MiB);
  if (!b) return 2;
  memset(b, 2, 16 * MiB);
  free(b);
  malloc_trim(0);
  if (xa_huge_reserved() != 0) return 3;
  return 0;
}

static void fork_while_purging(enum fw_mode mode) {
  char *a = malloc(16 * MiB);
  assert_non_null(a);
  memset(a, 1, 16 * MiB);
  free(a);
  assert_true(xa_huge_is_cached(a));
  fw_huge = a;
  fw_arm(a, mode == FW_OTHER_THREAD ? child_extent_back : child_regions_go, mode);
  xa_huge_cache_decay(UINT64_MAX);         /* purge every extent now */
  fw_child_exit();
  fw_expect_child_ok();
  assert_int_equal(huge_dirty(), 0);
  malloc_trim(0);
  assert_int_equal(xa_huge_reserved(), 0);
}

static void test_fork_while_purging(void **state) {
  (void)state;
  fork_while_purging(FW_OTHER_THREAD);
}

/* A fork from the purging thread itself (a signal handler's): it finishes
 * its purge in the child, and the child's handlers leave that range to it
 * (put back twice, the region's free bytes would be counted twice). */
static void test_fork_from_purging_thread(void **state) {
  (void)state;
  fork_while_purging(FW_THIS_THREAD);
}

/* A request of 8 MiB or more that no freed block holds takes the resident
 * pages of several (moved with mremap) instead of fresh ones; calloc's
 * blocks, which want zero pages, do not, nor do smaller blocks; a refused
 * move leaves the freed pages where they were; the moved pieces' mappings
 * are joined again when their range is purged. */
static uint64_t gathered(uint64_t *bytes) {
  uint64_t n;
  xa_huge_gather_stats(&n, bytes);
  return n;
}

/* A block that asks for huge pages (thp_min_bytes or more, not calloc's)
 * and is XA_THP_WHOLE_MIN or more is whole 2 MiB pages at a 2 MiB
 * boundary; others are whole pages. */
static void test_huge_page_blocks(void **state) {
  (void)state;
  if (xa_os_page != PG) skip();           /* (the sizes below are of 4 KiB pages) */
  xa_huge_cache_decay(UINT64_MAX);
  char *off = malloc(3 * MiB + PG);       /* the region's free pages start off a 2 MiB boundary */
  assert_non_null(off);
  assert_int_not_equal((uintptr_t)(off + 3 * MiB + PG) % (2 * MiB), 0);
  size_t n = 9 * MiB + 1;
  char *a = malloc(n);
  assert_non_null(a);
  assert_int_equal((uintptr_t)a % (2 * MiB), 0);
  char *big = aligned_alloc(4 * MiB, n);  /* a bigger alignment is kept */
  assert_non_null(big);
  assert_int_equal((uintptr_t)big % (4 * MiB), 0);
  assert_int_equal(malloc_usable_size(big), 10 * MiB);
  free(big);
  assert_int_equal(malloc_usable_size(a), 10 * MiB);
  memset(a, 1, 10 * MiB);                 /* all of it is the program's */
  free(a);
  char *z = calloc(1, n);                 /* sparse: no huge pages asked */
  assert_non_null(z);
  assert_int_equal(malloc_usable_size(z), 9 * MiB + PG);
  char *z2 = realloc(z, 8 * MiB + MiB / 2);   /* a shrink leaves it as it is */
  assert_ptr_equal(z2, z);
  assert_int_equal(malloc_usable_size(z2), 9 * MiB + PG);
  /* and huge.c, asked to shrink it, does not grow it to whole huge pages */
  assert_ptr_equal(xa_huge_realloc(z2, 8 * MiB + MiB / 2, XA_GROW_IN_PLACE), z2);
  assert_int_equal(malloc_usable_size(z2), 8 * MiB + MiB / 2);
  free(z2);
  size_t min = (size_t)xa_opt.thp_min_bytes;
  xa_opt.thp_min_bytes = 1 << 20;         /* a block under 8 MiB is never rounded */
  char *m = malloc(MiB + MiB / 2);
  assert_non_null(m);
  assert_int_equal(malloc_usable_size(m), MiB + MiB / 2);
  free(m);
  xa_opt.thp_min_bytes = (long)min;
  char *s = malloc(7 * MiB + 1);          /* below XA_THP_WHOLE_MIN: asks, not rounded */
  assert_non_null(s);
  assert_int_equal(malloc_usable_size(s), 7 * MiB + PG);
  /* grown past it: whole huge pages where it starts on a 2 MiB boundary,
   * whole pages where not (the rounding would not make its end whole) */
  char *g = realloc(s, n);
  assert_non_null(g);
  assert_int_equal(malloc_usable_size(g), (uintptr_t)g % (2 * MiB) == 0 ? 10 * MiB : 9 * MiB + PG);
  free(g);
  /* g grew in place or moved: purged, every free page is one clean extent
   * after off again, so u and s2 follow off (else s2 could reuse g's
   * pages at a 2 MiB boundary: 1 run in 6 failed here) */
  xa_huge_cache_decay(UINT64_MAX);
  char *u = malloc(3 * MiB + PG);
  char *s2 = malloc(7 * MiB + 1);         /* off a 2 MiB boundary, free pages after it */
  assert_true(u && s2);
  assert_int_not_equal((uintptr_t)s2 % (2 * MiB), 0);
  char *g2 = realloc(s2, n);              /* grows in place to whole pages only */
  assert_ptr_equal(g2, s2);
  assert_int_equal(malloc_usable_size(g2), 9 * MiB + PG);
  free(g2);
  free(u);
  int thp = xa_opt.thp;
  int modes[] = {xa_opt_thp_never, xa_opt_thp_default};   /* xalloc asks for none */
  for (int i = 0; i < 2; i++) {
    xa_opt.thp = modes[i];
    char *b = malloc(n);
    assert_non_null(b);
    assert_int_equal(malloc_usable_size(b), 9 * MiB + PG);
    free(b);
  }
  xa_opt.thp = thp;
  free(off);
}

/* A big request whose gathering finds no whole huge page to move still
 * starts in the resident pages it can (a run from a dirty extent), not in
 * fresh ones only. */
static void test_gather_nothing_to_move(void **state) {
  (void)state;
  if (xa_os_page != PG) skip();
  xa_huge_cache_decay(UINT64_MAX);
  char *first = malloc(MiB), *hole = malloc(2 * MiB + MiB / 2);
  assert_true(first && hole);
  if ((uintptr_t)first % (2 * MiB) != 0 || hole != first + MiB) {
    print_message("blocks at %p and %p, not at a fresh region's start: skipped\n", (void *)first, (void *)hole);
    free(first), free(hole);
    skip();
  }
  memset(hole, 1, 2 * MiB + MiB / 2);
  free(hole);                              /* dirty, with no whole 2 MiB page */
  uint64_t bytes0, count0 = gathered(&bytes0), bytes1;
  char *b = malloc(10 * MiB);
  assert_non_null(b);
  assert_int_equal(gathered(&bytes1), count0);
  assert_ptr_equal(b, first + 2 * MiB);   /* over the hole's last 1.5 MiB */
  free(b);
  free(first);
}

/* Where xalloc asks for no huge pages, gathering moves whole freed
 * blocks, at any page (pieces of 64 KiB or more). */
static void test_gather_any_page_without_huge_pages(void **state) {
  (void)state;
  int thp = xa_opt.thp;
  xa_opt.thp = xa_opt_thp_default;
  xa_huge_cache_decay(UINT64_MAX);
  enum { N = 4 };
  char *hole[N], *wall[N];
  for (int i = 0; i < N; i++) {          /* 3 MiB and a page, between live walls */
    hole[i] = malloc(3 * MiB + xa_os_page);
    wall[i] = malloc(1 * MiB);
    assert_true(hole[i] && wall[i]);
    memset(hole[i], 1, 3 * MiB + xa_os_page);
  }
  for (int i = 0; i < N; i++) free(hole[i]);
  uint64_t bytes0, count0 = gathered(&bytes0), bytes1;
  char *b = malloc(N * (3 * MiB + xa_os_page));   /* all of them */
  assert_non_null(b);
  assert_int_equal(gathered(&bytes1), count0 + 1);
  assert_int_equal(bytes1 - bytes0, N * (3 * MiB + xa_os_page));
  free(b);
  for (int i = 0; i < N; i++) free(wall[i]);
  xa_opt.thp = thp;
}

/* Bytes on transparent huge pages in the mappings wholly inside
 * [p, p+n) (/proc/self/smaps), or -1 if it cannot be read. */
static long huge_bytes_within(const char *p, size_t n) {
  FILE *f = fopen("/proc/self/smaps", "r");
  if (!f) return -1;
  char line[512];
  long total = 0;
  bool inside = false;
  while (fgets(line, sizeof line, f)) {
    unsigned long lo, hi, kb;
    if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' '))
      inside = lo >= (uintptr_t)p && hi <= (uintptr_t)p + n;
    else if (inside && sscanf(line, "AnonHugePages: %lu kB", &kb) == 1)
      total += (long)kb * 1024;
  }
  fclose(f);
  return total;
}

/* Gathering moves whole aligned huge pages, which stay huge pages in the
 * new block: a move of any other range would split them into 4 KiB
 * pages, and every write to the block would then miss the TLB more.
 * Each hole here is a freed 10 MiB block (huge pages) merged with the
 * 3 MiB and a page after it, so it ends off a 2 MiB boundary. */
static long thp_min_saved;
static int restore_thp_min(void **state) {
  (void)state;
  xa_opt.thp_min_bytes = thp_min_saved;
  return 0;
}

static void test_gather_keeps_huge_pages(void **state) {
  (void)state;
  if (xa_os_page != PG) skip();           /* (2 MiB huge pages: 4 KiB pages) */
  char mode[64] = "";
  FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
  if (f) {
    if (!fgets(mode, sizeof mode, f)) mode[0] = 0;
    fclose(f);
  }
  if (!strstr(mode, "[madvise]") && !strstr(mode, "[always]")) {
    print_message("transparent huge pages are off here (%s): skipped\n", mode);
    skip();
  }
  xa_huge_cache_decay(UINT64_MAX);
  /* walls that ask for no huge pages keep each block a mapping of its own
   * (huge_bytes_within counts the mappings wholly inside a block) */
  thp_min_saved = xa_opt.thp_min_bytes;
  xa_opt.thp_min_bytes = (long)XA_THP_WHOLE_MIN;
  enum { N = 2 };
  char *y[N], *wall[N], *big[N], *odd[N], *rest[N];
  for (int i = 0; i < N; i++) {          /* 16 MiB on huge pages, between walls */
    y[i] = malloc(16 * MiB);
    wall[i] = malloc(2 * MiB + PG);
    assert_non_null(y[i]);
    assert_non_null(wall[i]);
    memset(y[i], 1, 16 * MiB);
  }
  long before = huge_bytes_within(y[0], 16 * MiB) + huge_bytes_within(y[1], 16 * MiB);
  for (int i = 0; i < N; i++) free(y[i]);
  for (int i = 0; i < N; i++) {          /* the same pages: 10 MiB, 3 MiB + 4 KiB, the rest */
    big[i] = malloc(10 * MiB);
    odd[i] = malloc(3 * MiB + PG);
    rest[i] = malloc(3 * MiB - PG);
    assert_true(big[i] && odd[i] && rest[i]);
    assert_ptr_equal(odd[i], big[i] + 10 * MiB);
    assert_ptr_equal(rest[i], odd[i] + 3 * MiB + PG);
    memset(big[i], 1, 10 * MiB);
    memset(odd[i], 1, 3 * MiB + PG);
  }
  for (int i = 0; i < N; i++) free(big[i]), free(odd[i]);
  if (before < (long)(32 * MiB)) {
    print_message("only %ld bytes of the blocks on huge pages (memory too fragmented?): skipped\n", before);
    for (int i = 0; i < N; i++) free(rest[i]), free(wall[i]);
    skip();
  }
  uint64_t bytes0, count0 = gathered(&bytes0), bytes1;
  char *b = malloc(24 * MiB);             /* no hole holds it */
  assert_non_null(b);
  assert_int_equal(gathered(&bytes1), count0 + 1);
  long moved = (long)(bytes1 - bytes0), huge = huge_bytes_within(b, 24 * MiB);
  print_message("%ld bytes gathered, %ld of the block's on huge pages\n", moved, huge);
  assert_true(moved >= (long)(20 * MiB));
  if (huge < moved) fail_msg("%ld bytes gathered, but only %ld of the block on huge pages", moved, huge);
  memset(b, 2, 24 * MiB);
  free(b);
  for (int i = 0; i < N; i++) free(rest[i]), free(wall[i]);
}

/* Blocks of thp_min_bytes up to XA_THP_WHOLE_MIN ask for huge pages
 * without being rounded, and each may split its region's mapping in three:
 * they stop asking before the mappings they add pass gathering's budget
 * of them (an eighth of vm.max_map_count, at most 8192), so the process
 * stays far from the limit past which munmap fails.  (6,000 such blocks
 * between smaller ones would add 12,000.) */
static void test_advice_keeps_mappings_few(void **state) {
  (void)state;
  if (xa_os_page != PG || xa_opt.thp != xa_opt_thp_auto) skip();
  /* no hg flag without THP in the kernel; 18 GiB of address space */
  struct rlimit as;
  char mode[8] = "";
  FILE *f = fopen("/proc/sys/vm/overcommit_memory", "r");
  if (f) {
    if (!fgets(mode, sizeof mode, f)) mode[0] = 0;
    fclose(f);
  }
  if (!tu_thp() || mode[0] == '2' ||
      (getrlimit(RLIMIT_AS, &as) == 0 && as.rlim_cur != RLIM_INFINITY)) {
    print_message("no transparent huge pages, strict overcommit or an address-space limit: skipped\n");
    skip();
  }
  size_t cap = xa_os_map_limit() / 8;
  if (cap > 8192) cap = 8192;
  size_t n = cap / 2 + 512, maps0 = xa_os_map_count();
  /* earlier tests left the budget low: past a second since the last
   * count, the first request that finds it so counts again */
  usleep(1100 * 1000);
  char **v = calloc(2 * n, sizeof *v);
  assert_non_null(v);
  for (size_t i = 0; i < n; i++) {
    v[2 * i] = malloc(3 * MiB);          /* asks (not written: nothing resident) */
    v[2 * i + 1] = malloc(1 * MiB);      /* does not: the mappings stay apart */
    assert_true(v[2 * i] && v[2 * i + 1]);
  }
  size_t maps1 = xa_os_map_count();
  print_message("%zu blocks of 3 MiB: mappings %zu -> %zu (budget %zu)\n", n, maps0, maps1, cap);
  assert_true(tu_vmflag(v[0], "hg"));    /* the first ones asked */
  /* With the budget spent, a block that asked and is grown or moved asks
   * again all the same: it stays one mapping that mremap can move. */
  char *g = realloc(v[0], 5 * MiB);       /* v[1] follows it: a move */
  assert_non_null(g);
  v[0] = g;
  for (size_t off = 0; off < 5 * MiB; off += MiB / 2)   /* (smaps is long here: thousands of mappings) */
    if (!tu_vmflag(g + off, "hg")) fail_msg("a grown block asks for huge pages in part (at %zu)", off);
  for (size_t i = 0; i < 2 * n; i++) free(v[i]);
  free(v);
  xa_huge_cache_decay(UINT64_MAX);
  if (maps1 > maps0 + cap) fail_msg("%zu mappings after %zu advised blocks, %zu before", maps1, n, maps0);
}

static void test_gather_freed_pages(void **state) {
  (void)state;
  xa_huge_cache_decay(UINT64_MAX);
  enum { N = 6 };
  char *hole[N], *wall[N];
  for (int i = 0; i < N; i++) {          /* 3 MiB holes between live walls */
    hole[i] = malloc(3 * MiB);
    wall[i] = malloc(1 * MiB);
    assert_non_null(hole[i]);
    assert_non_null(wall[i]);
    memset(hole[i], 1, 3 * MiB);
    stamp(wall[i], 1 * MiB, 100 + (uint64_t)i);
  }
  for (int i = 0; i < N; i++) free(hole[i]);
  size_t dirty = huge_dirty();
  assert_true(dirty >= N * 3 * MiB);
  uint64_t bytes0, count0 = gathered(&bytes0), bytes1;
  size_t maps0 = xa_os_map_count();
  char *b = malloc(12 * MiB);             /* no hole holds it */
  assert_non_null(b);
  size_t maps1 = xa_os_map_count();
  uint64_t count1 = gathered(&bytes1);
  assert_int_equal(count1, count0 + 1);
  assert_true(bytes1 - bytes0 >= 9 * MiB && bytes1 - bytes0 <= 12 * MiB);
  assert_int_equal(huge_dirty(), dirty - (bytes1 - bytes0));
  long f = faults_writing(b, 12 * MiB, 2);
  long fresh = (long)((12 * MiB - (bytes1 - bytes0)) / PG);
  if (f > fresh + 64) fail_msg("12 MiB over %llu gathered bytes took %ld faults", (unsigned long long)(bytes1 - bytes0), f);
  for (int i = 0; i < N; i++) check_stamp(wall[i], 1 * MiB, 100 + (uint64_t)i);
  /* the moved pieces read as zero where they were, and are free */
  size_t pieces_free = 0;
  for (int i = 0; i < N; i++)
    if (xa_huge_is_cached(hole[i])) pieces_free++;
  assert_int_equal(pieces_free, N);
  /* the moved pieces are mappings of their own until purged: a purge
   * maps fresh pages over them, one mapping again */
  if (maps1 <= maps0) fail_msg("%zu mappings before gathering, %zu after: were pages moved?", maps0, maps1);
  free(b);
  xa_opt.dirty_decay_ms = 10;
  xa_huge_cache_decay(xa_os_now() + 1000000000ull);
  xa_opt.dirty_decay_ms = -1;
  assert_int_equal(huge_dirty(), 0);
  size_t maps2 = xa_os_map_count();
  /* two to spare: a segment of extent records or a bigger block table may
   * have been mapped meanwhile; the 6 moved pieces left unjoined add 6 or
   * more */
  if (maps2 > maps0 + 2) fail_msg("%zu mappings before gathering, %zu after its block was freed and purged", maps0, maps2);
  /* calloc wants zero pages: no gathering, and it reads zero */
  dirty = huge_dirty();
  count0 = gathered(&bytes0);
  char *z = calloc(1, 40 * MiB);
  assert_non_null(z);
  assert_int_equal(gathered(&bytes1), count0);
  for (size_t o = 0; o < 40 * MiB; o += 512) assert_int_equal(z[o], 0);
  free(z);
  /* a refused move: the pages stay dirty where they were, the block is
   * usable (fresh pages) */
  xa_huge_cache_decay(UINT64_MAX);
  for (int i = 0; i < N; i++) {
    hole[i] = malloc(3 * MiB);
    memset(hole[i], 1, 3 * MiB);
  }
  for (int i = 0; i < N; i += 2) free(hole[i]);
  dirty = huge_dirty();
  count0 = gathered(&bytes0);
  xa_os_fail_maps = 1;
  char *c = malloc(8 * MiB);
  xa_os_fail_maps = 0;
  assert_non_null(c);
  assert_int_equal(gathered(&bytes1), count0);
  assert_int_equal(huge_dirty(), dirty);
  memset(c, 3, 8 * MiB);
  free(c);
  /* a smaller block takes fresh pages rather than stop other threads'
   * faults for its moves */
  count0 = gathered(&bytes0);
  char *small = malloc(7 * MiB);
  assert_non_null(small);
  assert_int_equal(gathered(&bytes1), count0);
  free(small);
  for (int i = 1; i < N; i += 2) free(hole[i]);
  for (int i = 0; i < N; i++) free(wall[i]);
}

/* A big request whose shard holds some freed pages but fewer than the
 * block gathers in the shard that holds the most: a thread that moved to
 * another CPU finds the pages it freed on the first (mimalloc-bench
 * malloc-large, single-threaded: 3 runs in 60 peaked at 498-519 MB,
 * against 411, when it gathered in its new shard's few pages and took
 * the rest fresh). */
static void test_gather_in_shard_with_most_dirty(void **state) {
  (void)state;
  int ca = 0, cb = 0;
  two_shards(&ca, &cb);
  xa_huge_cache_decay(UINT64_MAX);
  enum { N = 6 };
  char *hole[N], *wall[N];
  pin(ca);                                 /* 18 MiB freed in 3 MiB holes (a */
                                           /* whole 2 MiB page in each) */
  for (int i = 0; i < N; i++) {
    hole[i] = malloc(3 * MiB);
    wall[i] = malloc(1 * MiB);
    memset(hole[i], 1, 3 * MiB);
  }
  for (int i = 0; i < N; i++) free(hole[i]);
  unsigned sa = shard_of(wall[0]);
  pin(cb);                                 /* 5 MiB freed on the other CPU */
  char *five = malloc(5 * MiB), *wall_b = malloc(1 * MiB);
  memset(five, 1, 5 * MiB);
  assert_int_not_equal(shard_of(five), sa);
  free(five);
  uint64_t bytes0, count0 = gathered(&bytes0), bytes1;
  char *b = malloc(9 * MiB);               /* (10 MiB) no hole in either shard holds it */
  assert_non_null(b);
  long f = faults_writing(b, 9 * MiB, 2);
  assert_int_equal(gathered(&bytes1), count0 + 1);
  if (shard_of(b) != sa || f > 64)
    fail_msg("9 MiB with 5 MiB freed in its shard and 18 in the other: shard %u (the other is %u), %llu bytes "
             "gathered, %ld faults", shard_of(b), sa, (unsigned long long)(bytes1 - bytes0), f);
  free(b);
  free(wall_b);
  for (int i = 0; i < N; i++) free(wall[i]);
  pin(ca);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_reuse_without_faults),
      cmocka_unit_test(test_neighbours_merge),
      cmocka_unit_test(test_dirty_continued_into_clean),
      cmocka_unit_test(test_gather_freed_pages),
      cmocka_unit_test(test_huge_page_blocks),
      cmocka_unit_test_teardown(test_gather_keeps_huge_pages, restore_thp_min),
      cmocka_unit_test(test_gather_nothing_to_move),
      cmocka_unit_test(test_gather_any_page_without_huge_pages),
      cmocka_unit_test(test_realloc_in_place_and_moved),
      cmocka_unit_test(test_realloc_moves_leave_no_mappings),
      cmocka_unit_test(test_realloc_grows_into_resident_pages),
      cmocka_unit_test(test_move_refused_copies),
      cmocka_unit_test(test_calloc_of_reused_pages_reads_zero),
      cmocka_unit_test(test_trim_returns_everything),
      cmocka_unit_test(test_fork_while_purging),
      cmocka_unit_test(test_fork_from_purging_thread),
      cmocka_unit_test(test_decay_purges_old_extents),
      cmocka_unit_test_teardown(test_dirty_budget, restore_budget),
      cmocka_unit_test(test_block_table_stays_small),
      cmocka_unit_test(test_anon_huge_stat),
      cmocka_unit_test_setup_teardown(test_budget_share, share_setup, share_teardown),
      cmocka_unit_test(test_shards),
      cmocka_unit_test(test_gather_in_shard_with_most_dirty),
      cmocka_unit_test(test_cross_thread_blocks),
      cmocka_unit_test(test_lock_contention_counted),
      /* last: it leaves the mappings' budget spent until the next count */
      cmocka_unit_test(test_advice_keeps_mappings_few),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
