/* Unit tests of the free-extent index (src/extent.c) against a model: a
 * page map of two fake regions that records each page's state.  The
 * index never touches the memory it indexes, so the addresses are made
 * up.  After every operation the index must hold exactly the maximal runs
 * of free pages of one state and region (merging is complete), pass its
 * own consistency walk, and answer lookups as the model does. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <cmocka.h>

#include "testutil.h"
#include "extent.h"
#include "init.h"
#include "os.h"

#define NPAGES 4096                      /* per region */
#define BASE ((uintptr_t)1 << 40)
#define PG ((uintptr_t)xa_os_page)

static signed char model[2][NPAGES];     /* -1 in use, else XA_EXT_* */

static uintptr_t addr_of(int r, int page) { return BASE + (uintptr_t)r * 2 * NPAGES * PG + (uintptr_t)page * PG; }

static void *segment(void) {
  void *p = mmap(NULL, XA_EXT_SEGMENT_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  assert_true(p != MAP_FAILED);
  return p;
}

static struct xa_extents *index_new(unsigned segments) {
  struct xa_extents *x = calloc(1, sizeof *x);
  assert_non_null(x);
  x->rng = 12345;
  for (unsigned i = 0; i < segments; i++) assert_true(xa_ext_add_segment(x, segment()));
  return x;
}

/* The index holds exactly the model's maximal runs. */
static void compare(const struct xa_extents *x) {
  const char *bad = xa_ext_check(x);
  if (bad) fail_msg("index check: %s", bad);
  const struct xa_ext *e = xa_ext_from(x, 0);
  for (int r = 0; r < 2; r++)
    for (int p = 0; p < NPAGES;) {
      if (model[r][p] < 0) { p++; continue; }
      int q = p;
      while (q < NPAGES && model[r][q] == model[r][p]) q++;
      if (!e) fail_msg("run of region %d pages %d..%d missing", r, p, q);
      if (e->start != addr_of(r, p) || e->size != (size_t)(q - p) * PG || (int)e->region != r ||
          (int)e->state != model[r][p])
        fail_msg("region %d run %d..%d state %d: index has %#lx+%zu region %u state %u", r, p, q, model[r][p],
                 (unsigned long)e->start, e->size, e->region, e->state);
      e = xa_ext_from(x, e->start + e->size);
      p = q;
    }
  if (e) fail_msg("index has an extra extent at %#lx", (unsigned long)e->start);
}

static void test_model_random(void **s) {
  (void)s;
  assert_true(xa_init());
  struct xa_extents *x = index_new(1);
  memset(model, -1, sizeof model);
  tu_rng rng;
  tu_seed(&rng, 7);
  uint64_t clock = 1;
  unsigned frees = 0, takes = 0, fits = 0, misses = 0;
  for (int op = 0; op < 20000; op++) {
    unsigned what = tu_next(&rng) % 4;
    if (what < 2) {                          /* free a used range */
      int r = (int)(tu_next(&rng) % 2), p = (int)(tu_next(&rng) % NPAGES);
      int len = 1 + (int)(tu_next(&rng) % 64);
      int st = (int)(tu_next(&rng) % 2);
      int q = p;
      while (q < NPAGES && q - p < len && model[r][q] < 0) q++;
      if (q == p) continue;
      assert_non_null(xa_ext_free(x, addr_of(r, p), (size_t)(q - p) * PG, (uint32_t)r, (uint32_t)st, clock++));
      memset(&model[r][p], st, (size_t)(q - p));
      frees++;
    } else if (what == 2) {                  /* take from a fit */
      uint32_t st = tu_next(&rng) % 2;
      size_t size = (1 + tu_next(&rng) % 32) * PG;
      size_t align = tu_next(&rng) % 4 == 0 ? 8 * PG : PG;
      struct xa_ext *e = xa_ext_fit(x, st, size, align);
      if (!e) {
        /* nothing of twice the size anywhere (bins above are searched) */
        for (const struct xa_ext *f = xa_ext_from(x, 0); f; f = xa_ext_from(x, f->start + f->size))
          if (f->state == st && f->size >= 2 * size + align) fail_msg("fit missed an extent of %zu for %zu", f->size, size);
        misses++;
        continue;
      }
      assert_int_equal(e->state, st);
      assert_true(xa_ext_fits(e, size, align));
      uintptr_t at = XA_ALIGN_UP(e->start, align);
      int r = (int)e->region, p = (int)((at - addr_of(r, 0)) / PG);
      for (size_t i = 0; i < size / PG; i++) assert_int_equal(model[r][p + (int)i], (int)st);
      assert_true(xa_ext_take(x, e, at, size));
      memset(&model[r][p], -1, size / PG);
      takes++;
      fits++;
    } else {                                 /* lookups */
      int r = (int)(tu_next(&rng) % 2), p = (int)(tu_next(&rng) % NPAGES);
      const struct xa_ext *e = xa_ext_containing(x, addr_of(r, p) + 5);
      if ((e != NULL) != (model[r][p] >= 0)) fail_msg("containing(region %d page %d) wrong", r, p);
      if (e) assert_int_equal((int)e->state, model[r][p]);
    }
    if (op % 16 == 0 || op > 19900) compare(x);
  }
  compare(x);
  print_message("frees %u takes %u fits %u misses %u extents %zu\n", frees, takes, fits, misses, x->count);
  assert_true(frees > 1000 && takes > 1000 && misses > 10);
}

/* Dirty extents come out oldest first; a part left by a take keeps its
 * age; a merge takes the younger age. */
static void test_age_order(void **s) {
  (void)s;
  assert_true(xa_init());
  struct xa_extents *x = index_new(1);
  xa_ext_free(x, addr_of(0, 0), 4 * PG, 0, XA_EXT_DIRTY, 10);
  xa_ext_free(x, addr_of(0, 10), 4 * PG, 0, XA_EXT_DIRTY, 20);
  xa_ext_free(x, addr_of(0, 20), 4 * PG, 0, XA_EXT_DIRTY, 30);
  xa_ext_free(x, addr_of(0, 30), 4 * PG, 0, XA_EXT_CLEAN, 40);   /* clean: not aged */
  assert_int_equal(xa_ext_oldest(x)->start, addr_of(0, 0));
  assert_int_equal(xa_ext_newest(x)->start, addr_of(0, 20));
  /* the middle of the oldest taken: both parts stay oldest */
  struct xa_ext *e = xa_ext_oldest(x);
  assert_true(xa_ext_take(x, e, addr_of(0, 1), 2 * PG));
  assert_int_equal(xa_ext_oldest(x)->start, addr_of(0, 0));
  assert_int_equal(xa_ext_oldest(x)->lru_next->start, addr_of(0, 3));
  assert_int_equal(xa_ext_oldest(x)->lru_next->freed_at, 10);
  /* pages 4..9 freed at 50: merges 3 and 10..13 into one, now youngest */
  xa_ext_free(x, addr_of(0, 4), 6 * PG, 0, XA_EXT_DIRTY, 50);
  assert_int_equal(xa_ext_newest(x)->start, addr_of(0, 3));
  assert_int_equal(xa_ext_newest(x)->size, 11 * PG);
  assert_int_equal(xa_ext_newest(x)->freed_at, 50);
  assert_null(xa_ext_check(x));
  assert_int_equal(xa_ext_oldest(x)->start, addr_of(0, 0));
  assert_int_equal(xa_ext_oldest(x)->lru_next->start, addr_of(0, 20));
}

/* With every record used, a free that needs a new one fails and changes
 * nothing; one that merges still works; a take that must split leaves
 * the index sound. */
static void test_records_run_out(void **s) {
  (void)s;
  assert_true(xa_init());
  struct xa_extents *x = index_new(1);
  for (int i = 0; i < XA_EXT_SEGMENT; i++)
    assert_non_null(xa_ext_free(x, BASE + (uintptr_t)i * 4 * PG, PG, 0, XA_EXT_CLEAN, 0));
  assert_false(xa_ext_spare(x, 1));
  assert_null(xa_ext_free(x, BASE + (uintptr_t)XA_EXT_SEGMENT * 4 * PG + 2 * PG, PG, 0, XA_EXT_CLEAN, 0));
  assert_non_null(xa_ext_free(x, BASE + PG, PG, 0, XA_EXT_CLEAN, 0));          /* merges left */
  assert_int_equal(x->count, XA_EXT_SEGMENT);
  /* extent 0 is now 2 pages; 1 more record is free?  No: merging freed none */
  struct xa_ext *e = xa_ext_containing(x, BASE);
  assert_int_equal(e->size, 2 * PG);
  assert_true(xa_ext_take(x, e, BASE, PG));           /* front: no record needed */
  assert_null(xa_ext_check(x));
  /* a record freed by a whole take is reused */
  e = xa_ext_containing(x, BASE + 8 * PG);
  assert_true(xa_ext_take(x, e, e->start, e->size));
  assert_true(xa_ext_spare(x, 1));
  e = xa_ext_containing(x, BASE + 12 * PG);
  assert_true(xa_ext_free(x, BASE + 13 * PG, PG, 0, XA_EXT_DIRTY, 5) != NULL);  /* another state: a record */
  assert_false(xa_ext_spare(x, 1));
  assert_null(xa_ext_check(x));
  /* a second segment is taken; past the most segments, refused */
  assert_true(xa_ext_add_segment(x, segment()));
  assert_true(xa_ext_spare(x, XA_EXT_SEGMENT));
  x->nsegments = XA_EXT_SEGMENTS;
  void *seg = segment();
  assert_false(xa_ext_add_segment(x, seg));
  munmap(seg, XA_EXT_SEGMENT_BYTES);
}

/* Many extents: the tree stays shallow (the check walks it and fails past
 * depth 200) and fits find the smallest that holds a request. */
static void test_many_extents(void **s) {
  (void)s;
  assert_true(xa_init());
  struct xa_extents *x = index_new(64);
  size_t n = 200000;
  /* increasing addresses: the worst order for an unbalanced tree */
  for (size_t i = 0; i < n; i++)
    assert_non_null(xa_ext_free(x, BASE + i * 64 * PG, (1 + i % 40) * PG, 0, i % 3 ? XA_EXT_CLEAN : XA_EXT_DIRTY, i + 1));
  assert_null(xa_ext_check(x));
  struct xa_ext *e = xa_ext_fit(x, XA_EXT_CLEAN, 7 * PG, PG);
  assert_non_null(e);
  assert_int_equal(e->size, 7 * PG);                 /* exact bin: the exact size */
  e = xa_ext_fit(x, XA_EXT_DIRTY, 41 * PG, PG);
  assert_null(e);                                     /* none that large */
  /* take every clean extent again */
  size_t took = 0;
  while ((e = xa_ext_fit(x, XA_EXT_CLEAN, PG, PG))) {
    assert_true(xa_ext_take(x, e, e->start, e->size));
    took++;
  }
  assert_true(took > n / 2);
  assert_null(xa_ext_check(x));
  assert_int_equal(x->count, n - took);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_model_random),
      cmocka_unit_test(test_age_order),
      cmocka_unit_test(test_records_run_out),
      cmocka_unit_test(test_many_extents),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
