/* Unit tests of the size-class table (src/sizeclass.c): derived from the
 * formula, monotonic, minimal, bounded waste, exact index/divisibility
 * arithmetic, slab geometry that fits its bitmap. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include "chunk.h"
#include "os.h"
#include "sizeclass.h"
#include "mesh.h"
#include "init.h"

static void test_classes_monotonic_and_aligned(void **state) {
  (void)state;
  for (unsigned c = 0; c < XA_NSMALL; c++) {
    assert_int_equal(xa_classes[c].size % 16, 0);
    if (c) assert_true(xa_classes[c].size > xa_classes[c - 1].size);
  }
  assert_int_equal(xa_classes[0].size, 16);
  assert_int_equal(xa_classes[XA_NSMALL - 1].size, XA_SMALL_MAX);
}

/* Every size maps to the smallest class that holds it. */
static void test_size_to_class_minimal(void **state) {
  (void)state;
  for (size_t n = 0; n <= XA_SMALL_MAX; n++) {
    unsigned c = xa_sizeclass_of(n);
    assert_true(c < XA_NSMALL);
    assert_true(xa_classes[c].size >= n);
    if (c) assert_true(xa_classes[c - 1].size < n);
  }
  /* round trip: class -> size -> class */
  for (unsigned c = 0; c < XA_NSMALL; c++) assert_int_equal(xa_sizeclass_of(xa_classes[c].size), c);
}

/* malloc's table (xa_sizeclass_direct), its first page filled at
 * start-up and the rest by xa_sizeclass_direct_fill, gives every size the
 * scaled number of the smallest class that holds it (found here from the
 * class sizes, not from the formula). */
static void test_direct_table(void **state) {
  (void)state;
  for (size_t n = 0; n < 4096; n++) assert_int_not_equal(xa_class_direct[n], 0);
  unsigned c = 0;
  for (size_t n = 0; n <= XA_SMALL_MAX; n++) {
    while (xa_classes[c].size < n) c++;
    if (!xa_sizeclass_direct(n)) xa_sizeclass_direct_fill(n);
    assert_int_equal(xa_sizeclass_direct(n), (c + 1) * XA_BIN_SCALE);
  }
}

/* Worst-case internal waste above 128 B stays under 20% (4 classes per
 * doubling); prints the per-class report. */
static void test_waste_bounded(void **state) {
  (void)state;
  double worst = 0;
  printf("class  size  slab_pages  objs  worst_waste\n");
  for (unsigned c = 0; c < XA_NSMALL; c++) {
    size_t lo = c ? xa_classes[c - 1].size + 1 : 1;
    double w = (double)(xa_classes[c].size - lo) / xa_classes[c].size;
    printf("%5u %5u %11u %5u %10.1f%%\n", c, xa_classes[c].size, xa_classes[c].slab_pages, xa_classes[c].nobjs, 100 * w);
    if (lo > 128 && w > worst) worst = w;
  }
  printf("worst-case waste above 128 B: %.1f%%\n", 100 * worst);
  assert_true(worst < 0.20);
}

/* The reciprocal gives the exact object index, and the divisibility magic
 * is exact, for every byte offset of every slab. */
static void test_index_and_divisibility_exact(void **state) {
  (void)state;
  for (unsigned c = 0; c < XA_NSMALL; c++) {
    size_t bytes = (size_t)xa_classes[c].slab_pages << xa_os_page_shift;
    uint32_t size = xa_classes[c].size;
    for (uintptr_t off = 0; off < bytes; off++) {
      assert_int_equal(xa_sizeclass_index(c, off), off / size);
      assert_int_equal(xa_sizeclass_divides(c, (uint32_t)off), off % size == 0);
    }
  }
  /* Classes past the table never divide: non-slab pages fail the check. */
  for (uint32_t off = 0; off < 100000; off += 16) assert_false(xa_sizeclass_divides(XA_CLS_NONE, off));
}

/* Slabs: objects fit, tail waste is small, the bitmap fits in the span
 * slots the slab owns, cache capacities are sane. */
static void test_slab_geometry(void **state) {
  (void)state;
  for (unsigned c = 0; c < XA_NSMALL; c++) {
    const struct xa_class_info *ci = &xa_classes[c];
    size_t bytes = (size_t)ci->slab_pages << xa_os_page_shift;
    assert_true(ci->nobjs >= 1);
    assert_true((size_t)ci->nobjs * ci->size <= bytes);
    assert_true(bytes - (size_t)ci->nobjs * ci->size < ci->size);
    assert_true((bytes - (size_t)ci->nobjs * ci->size) * 8 <= bytes);   /* <= 12.5% */
    size_t bitmap = ((ci->nobjs + 63) / 64) * 8;
    assert_true(bitmap <= ((size_t)ci->slab_pages << xa_span_stride_shift) - sizeof(struct xa_span));
    assert_true(ci->tcache_cap >= 8 && ci->tcache_cap <= 1024);
    /* small slabs up to 256 B objects are 16 KiB (64 KiB with meshing),
     * larger ones may be 8 KiB; below 4 KiB a slab holds at least 4
     * objects */
    assert_true(bytes >= (ci->size <= 256 ? (xa_mesh_on ? 65536u : 16384u) : 8192u));
    if (ci->size < 4096) assert_true(ci->nobjs >= 4);
  }
  if (xa_os_page == 4096) {
    /* the smallest slabs the rules allow, so that slabs emptied by random
     * frees are small holes any class can reuse */
    assert_int_equal(xa_classes[xa_sizeclass_compute(1024)].slab_pages, 2);
    assert_int_equal(xa_classes[xa_sizeclass_compute(8192)].slab_pages, 2);
    assert_int_equal(xa_classes[xa_sizeclass_compute(12288)].slab_pages, 3);
    assert_int_equal(xa_classes[xa_sizeclass_compute(16384)].slab_pages, 4);
    assert_int_equal(xa_classes[xa_sizeclass_compute(256)].slab_pages, xa_mesh_on ? 16 : 4);
  }
}

/* The rules with meshing and without, whatever this run's mode: meshing
 * takes 64 KiB slabs for classes up to 256 B (a meshed slab is a mapping,
 * and the map count bounds meshing), at most 4096 objects (the most
 * meshing compares), and leaves larger classes as they are. */
static void test_slab_pages_with_meshing(void **state) {
  (void)state;
  assert_int_equal(xa_sizeclass_slab_pages(16, 4096, false), 4);
  assert_int_equal(xa_sizeclass_slab_pages(16, 4096, true), 16);
  assert_int_equal(xa_sizeclass_slab_pages(112, 4096, false), 4);
  assert_int_equal(xa_sizeclass_slab_pages(112, 4096, true), 16);
  assert_int_equal(xa_sizeclass_slab_pages(256, 4096, true), 16);
  assert_int_equal(xa_sizeclass_slab_pages(320, 4096, true), xa_sizeclass_slab_pages(320, 4096, false));
  assert_int_equal(xa_sizeclass_slab_pages(1024, 4096, true), 2);
  assert_true(xa_sizeclass_slab_pages(16, 4096, true) * 4096 / 16 <= 4096);
  for (unsigned c = 0; c < XA_NSMALL; c++) {
    size_t size = xa_classes[c].size;
    assert_int_equal(xa_classes[c].slab_pages, xa_sizeclass_slab_pages(size, xa_os_page, xa_mesh_on));
  }
}

int main(void) {
  if (!xa_init()) return 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_classes_monotonic_and_aligned),
      cmocka_unit_test(test_size_to_class_minimal),
      cmocka_unit_test(test_direct_table),
      cmocka_unit_test(test_waste_bounded),
      cmocka_unit_test(test_index_and_divisibility_exact),
      cmocka_unit_test(test_slab_geometry),
      cmocka_unit_test(test_slab_pages_with_meshing),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
