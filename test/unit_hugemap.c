/* Unit tests of the huge-block map (src/hugemap.c): entries set, read and
 * cleared by address; leaves mapped on demand (counted, never on
 * transparent huge pages) and shared by ranges in one GiB; forget gives back only leaf pages wholly inside its range; and the
 * map agrees with the allocator's huge blocks through malloc, realloc and
 * free. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <malloc.h>
#include <sys/mman.h>
#include <cmocka.h>

#include "testutil.h"
#include "huge.h"
#include "hugemap.h"
#include "init.h"
#include "os.h"

#define GIB ((uintptr_t)1 << 30)
#define PG ((uintptr_t)xa_os_page)

/* 4 GiB of address space nobody else uses; returns its first whole GiB. */
static uintptr_t reserve_gibs(void) {
  void *p = mmap(NULL, 4 * GIB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  assert_true(p != MAP_FAILED);
  return XA_ALIGN_UP((uintptr_t)p, GIB);
}

/* Does /proc/self/smaps show the flag (e.g. "nh") on the mapping of a? */
static bool vm_flag(uintptr_t a, const char *flag) {
  FILE *f = fopen("/proc/self/smaps", "r");
  assert_non_null(f);
  char line[512];
  bool inside = false, found = false;
  while (fgets(line, sizeof line, f)) {
    unsigned long lo, hi;
    if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
      inside = a >= lo && a < hi;
    } else if (inside && !strncmp(line, "VmFlags:", 8)) {
      char want[8];
      snprintf(want, sizeof want, " %s", flag);
      for (char *q = strstr(line, want); q && !found; q = strstr(q + 1, want))
        found = q[strlen(want)] == ' ' || q[strlen(want)] == '\n';
      break;
    }
  }
  fclose(f);
  return found;
}

static void test_set_get(void **state) {
  (void)state;
  assert_true(xa_init());
  size_t leaves = xa_hugemap_mapped(), leaf_bytes = GIB / PG * sizeof(uint32_t);
  uintptr_t g = reserve_gibs();
  assert_int_equal(xa_hugemap_get(g), 0);              /* no leaf yet */
  xa_hugemap_set(g, 8 * PG, 0);                        /* no leaf: ignored */
  assert_int_equal(xa_hugemap_get(g), 0);
  /* a range across the boundary of two GiB maps both leaves */
  assert_true(xa_hugemap_cover(g + GIB - 4 * PG, 8 * PG));
  assert_non_null(xa_hugemap_top[g >> 30]);
  assert_non_null(xa_hugemap_top[(g >> 30) + 1]);
  assert_null(xa_hugemap_top[(g >> 30) + 2]);
  assert_int_equal(xa_hugemap_mapped(), leaves + 2 * leaf_bytes);   /* counted as metadata */
  /* never backed by transparent huge pages */
  assert_true(vm_flag((uintptr_t)xa_hugemap_top[g >> 30], "nh"));
  assert_true(xa_hugemap_cover(g, PG));                /* already there: kept */
  uint32_t *leaf = xa_hugemap_top[g >> 30];
  assert_true(xa_hugemap_cover(g + 5, 3 * GIB / 2));
  assert_ptr_equal(xa_hugemap_top[g >> 30], leaf);
  assert_int_equal(xa_hugemap_mapped(), leaves + 2 * leaf_bytes);

  uintptr_t a = g + 3 * PG, b = g + GIB, c = g + GIB - PG;
  xa_hugemap_set(a, 5 * PG, 0);
  xa_hugemap_set(b, GIB, 0);
  xa_hugemap_set(c, 256 * PG, 0);
  assert_int_equal(xa_hugemap_get(a), 5 * PG);
  assert_int_equal(xa_hugemap_get(b), GIB);
  assert_int_equal(xa_hugemap_get(c), 256 * PG);
  assert_int_equal(xa_hugemap_get(a + PG), 0);         /* inside a block */
  assert_int_equal(xa_hugemap_get(a + 16), 0);         /* not page aligned */
  assert_int_equal(xa_hugemap_get(a - PG), 0);
  assert_int_equal(xa_hugemap_get((uintptr_t)1 << 62), 0);   /* past the address space */
  xa_hugemap_set((uintptr_t)1 << 62, PG, 0);           /* ignored, no crash */
  xa_hugemap_set(a, 0, 0);
  assert_int_equal(xa_hugemap_get(a), 0);
  assert_int_equal(xa_hugemap_get(c), 256 * PG);
  /* the shard comes back with the size, every shard number */
  unsigned shard = 99;
  for (unsigned i = 0; i < 1u << XA_HUGEMAP_SHARD_BITS; i++) {
    xa_hugemap_set(c, (i + 1) * 64 * PG, i);
    assert_int_equal(xa_hugemap_lookup(c, &shard), (i + 1) * 64 * PG);
    assert_int_equal(shard, i);
  }
  xa_hugemap_set(b, GIB, 15);
  assert_int_equal(xa_hugemap_lookup(b, &shard), GIB);
  assert_int_equal(shard, 15);
  /* 2^28 pages (1 TiB) and more do not fit an entry: not known */
  xa_hugemap_set(b, (size_t)1 << 40, 3);
  assert_int_equal(xa_hugemap_get(b), 0);
  xa_hugemap_set(b, ((size_t)1 << 40) - PG, 3);
  assert_int_equal(xa_hugemap_lookup(b, &shard), ((size_t)1 << 40) - PG);
  assert_int_equal(shard, 3);
  xa_hugemap_set(b, 0, 0);
  xa_hugemap_set(c, 0, 0);
  assert_int_equal(xa_hugemap_get(b), 0);
  assert_int_equal(xa_hugemap_get(c), 0);
}

static void test_forget(void **state) {
  (void)state;
  assert_true(xa_init());
  uintptr_t g = reserve_gibs();
  assert_true(xa_hugemap_cover(g, 2 * GIB));
  /* one leaf page holds the entries of page_size / 4 pages */
  uintptr_t span = PG / sizeof(uint32_t) * PG;
  if (6 * span > GIB) skip();                          /* 64 KiB pages: one leaf page per GiB */
  uintptr_t lo = g + span + 7 * PG, hi = g + 5 * span + 3 * PG;
  for (uintptr_t p = g; p < g + 6 * span; p += 64 * PG) xa_hugemap_set(p, PG, 0);
  /* entries inside [lo, hi) must be clear before forget: clear them */
  for (uintptr_t p = g; p < g + 6 * span; p += 64 * PG)
    if (p >= lo && p < hi) xa_hugemap_set(p, 0, 0);
  xa_hugemap_forget(lo, hi - lo);
  /* the leaf pages wholly inside are given back; the partial ones stay
   * (checked before the entries are read: reading maps the zero page) */
  uint32_t *leaf = xa_hugemap_top[g >> 30];
  unsigned char vec[8];
  assert_int_equal(mincore(leaf, 6 * PG, vec), 0);
  assert_true(vec[0] & 1);                             /* below lo */
  assert_true(vec[1] & 1);                             /* holds lo: partial */
  assert_false(vec[2] & 1);
  assert_false(vec[4] & 1);
  assert_true(vec[5] & 1);                             /* holds hi: partial */
  for (uintptr_t p = g; p < g + 6 * span; p += 64 * PG)
    assert_int_equal(xa_hugemap_get(p), p >= lo && p < hi ? 0 : PG);
  /* a forget across two leaves */
  xa_hugemap_set(g + GIB + span, PG, 0);
  xa_hugemap_forget(g + GIB - span, 2 * span);
  assert_int_equal(xa_hugemap_get(g + GIB + span), PG);
  for (uintptr_t p = g; p < g + 2 * GIB; p += 64 * PG) xa_hugemap_set(p, 0, 0);
}

/* The allocator keeps the map in step with its huge blocks. */
static void test_allocator_blocks(void **state) {
  (void)state;
  size_t n = 3 << 20;
  char *p = malloc(n);
  assert_non_null(p);
  size_t usable = malloc_usable_size(p);
  assert_true(usable >= n);
  assert_int_equal(xa_hugemap_get((uintptr_t)p), usable);
  /* the table (not the map) agrees: the only live huge block's bytes */
  size_t count, bytes, cached;
  xa_huge_stats(&count, &bytes, &cached);
  assert_int_equal(count, 1);
  assert_int_equal(bytes, usable);
  char *q = realloc(p, 2 * n);                          /* grows or moves */
  assert_non_null(q);
  assert_true(malloc_usable_size(q) >= 2 * n);
  assert_int_equal(xa_hugemap_get((uintptr_t)q), malloc_usable_size(q));
  if (q != p) assert_int_equal(xa_hugemap_get((uintptr_t)p), 0);
  q = realloc(q, n / 2);                                /* shrinks in place */
  assert_int_equal(xa_hugemap_get((uintptr_t)q), malloc_usable_size(q));
  assert_true(malloc_usable_size(q) < 2 * n);
  free(q);
  assert_int_equal(xa_hugemap_get((uintptr_t)q), 0);
  /* 300 KiB: a huge block from the regions too */
  char *r = malloc(300 << 10);
  assert_non_null(r);
  assert_int_equal(xa_hugemap_get((uintptr_t)r), malloc_usable_size(r));
  free(r);
  assert_int_equal(xa_hugemap_get((uintptr_t)r), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_set_get),
      cmocka_unit_test(test_forget),
      cmocka_unit_test(test_allocator_blocks),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
