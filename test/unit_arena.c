/* Unit tests of chunks and arenas (src/chunk.c, src/arena.c) on a private
 * arena: slab refill/flush, span split and coalesce, large blocks with
 * alignment, in-place resize, chunk retention, purging, misuse detection.
 * After every step the invariant walker must find the arena consistent. */
#define _GNU_SOURCE
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/mman.h>
#include <cmocka.h>

#include "testutil.h"
#include "arena_testutil.h"
#include "init.h"
#include "fastpath.h"
#include "fork_window.h"
#include "mesh.h"
#include "huge.h"
#include <malloc.h>


static size_t free_span_count(struct xa_arena *a) {
  size_t n = 0;
  for (unsigned k = 0; k < 2; k++)
    for (unsigned b = 0; b < XA_FREE_BINS; b++)
      for (struct xa_span *s = a->free_spans[k][b]; s; s = s->next) n++;
  return n;
}

/* The guard page that is not the one after the header: the chunk's first
 * page in the huge layout (chunk.h), else its last. */
static char *second_guard(struct xa_chunk *c) {
  return xa_chunk_huge_layout ? (char *)c : (char *)c + ((size_t)xa_chunk_end_page << xa_os_page_shift);
}

static void test_chunk_geometry_and_map(void **state) {
  (void)state;
  size_t hdr = xa_chunk_spans_off + ((size_t)xa_chunk_npages << xa_span_stride_shift);
  assert_true(hdr <= (size_t)xa_chunk_first_page << xa_os_page_shift);
  assert_true(xa_chunk_spans_off >= sizeof(struct xa_chunk));
  assert_int_equal((size_t)xa_chunk_npages << xa_os_page_shift, XA_CHUNK_SIZE);
  size_t written = xa_pagemap_written();
  struct xa_chunk *c = xa_chunk_new(NULL, false);
  assert_int_equal(xa_pagemap_written(), written + (xa_pagemap_units ? XA_CHUNK_UNITS * sizeof(struct xa_pageinfo) : 0));
  assert_non_null(c);
  assert_int_equal((uintptr_t)c & XA_CHUNK_MASK, 0);
  assert_true(xa_chunkmap_test((uintptr_t)c));
  assert_true(xa_chunkmap_test((uintptr_t)c + XA_CHUNK_SIZE - 1));
  /* header pages are not a span anyone may free */
  assert_int_equal(xa_chunk_span(c, 0)->state, XA_SPAN_HEADER);
  assert_int_equal(xa_chunk_info(c, (char *)c + 100)->cls, XA_CLS_NONE);
  /* guard pages: one between the header and the span area, and the
   * chunk's first page (the huge layout: the span area then runs to the
   * chunk's end) or its last; inaccessible mappings, and not blocks
   * anyone may free */
  char *g1 = (char *)c + ((size_t)(xa_chunk_first_page - 1) << xa_os_page_shift);
  char *g2 = second_guard(c);
  /* the span pages: private memory, or the mesh file's shared mapping
   * (mesh:true); the guards are private pages either way */
  const char *rw = c->meshable ? "rw-s" : "rw-p";
  assert_string_equal(tu_perms_at((uintptr_t)g1), "---p");
  assert_string_equal(tu_perms_at((uintptr_t)g2), "---p");
  assert_string_equal(tu_perms_at((uintptr_t)g1 + xa_os_page), rw);
  if (xa_chunk_huge_layout) {
    assert_int_equal(xa_os_page, XA_CHUNK_LEAD);
    assert_ptr_equal(g2, (char *)c);
    assert_int_equal(xa_chunk_end_page, xa_chunk_npages);
    assert_string_equal(tu_perms_at((uintptr_t)c + XA_CHUNK_LEAD), "rw-p");   /* the header */
    assert_string_equal(tu_perms_at((uintptr_t)c + XA_CHUNK_SIZE - 1), rw);
  } else {
    assert_int_equal(xa_chunk_end_page, xa_chunk_npages - 1);
    assert_string_equal(tu_perms_at((uintptr_t)g2 - 1), rw);
  }
  assert_int_equal(xa_small_class_of(g1), XA_CLS_NONE);
  assert_int_equal(xa_small_class_of(g2), XA_CLS_NONE);
  assert_null(xa_arena_large_span(g1));
  assert_null(xa_arena_large_span(g2));
  /* the page info lives in the page map (where there is one), which
   * reads as zero again (not ours) once the chunk is gone */
  struct xa_pageinfo *info = c->info;
  assert_ptr_equal(info, xa_pagemap_units ? &xa_pagemap[(uintptr_t)c >> XA_UNIT_SHIFT] : c->units);
  assert_int_equal(info[XA_CHUNK_UNITS - 1].cls, XA_CLS_NONE);
  /* The counter is read right around each call: the checks in between
   * (tu_perms_at's fopen) allocate, and an allocation after the thread
   * moved to another CPU makes that arena's first chunk (seen once, in a
   * make check on the loaded 2-CPU VM). */
  written = xa_pagemap_written();
  xa_chunk_delete(c);
  assert_int_equal(xa_pagemap_written(), written - (xa_pagemap_units ? XA_CHUNK_UNITS * sizeof(struct xa_pageinfo) : 0));
  assert_false(xa_chunkmap_test((uintptr_t)c));
  for (unsigned u = 0; xa_pagemap_units && u < XA_CHUNK_UNITS; u++) {
    assert_int_equal(info[u].start32, 0);
    assert_int_equal(info[u].cls, 0);
    assert_int_equal(info[u].cls_scaled, 0);
  }
  /* where the map does not reach, the header holds the page info */
  size_t units = xa_pagemap_units;
  written = xa_pagemap_written();
  xa_pagemap_units = 0;
  c = xa_chunk_new(NULL, false);
  xa_pagemap_units = units;
  assert_non_null(c);
  assert_ptr_equal(c->info, c->units);
  assert_int_equal(xa_chunk_info(c, (char *)c + 100)->cls, XA_CLS_NONE);
  if (units) assert_int_equal(info[0].cls, 0);   /* the map's old part: still zero */
  assert_int_equal(xa_pagemap_written(), written);
  written = xa_pagemap_written();
  xa_chunk_delete(c);
  assert_int_equal(xa_pagemap_written(), written);
  /* foreign addresses */
  int local;
  assert_false(xa_chunkmap_test((uintptr_t)&local));
  assert_false(xa_chunkmap_test(0));
}

/* The VmFlags line of the mapping that starts at a (/proc/self/smaps). */
static const char *vmflags_of(uintptr_t a) {
  static char flags[256];
  char line[512];
  bool in = false;
  FILE *f = fopen("/proc/self/smaps", "r");
  flags[0] = 0;
  while (f && fgets(line, sizeof line, f)) {
    unsigned long lo, hi;
    if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) in = lo == a;
    else if (in && strncmp(line, "VmFlags:", 8) == 0) {
      snprintf(flags, sizeof flags, "%s", line + 8);
      break;
    }
  }
  if (f) fclose(f);
  return flags;
}

/* The page map is a read-only reservation (no commit charge, not copied
 * by fork, out of core dumps; huge zero pages where the kernel has them)
 * of which each chunk's part is made writable while the chunk lives. */
static void test_page_map_mapping(void **state) {
  (void)state;
  if (!xa_pagemap_units) skip();   /* refused here (address-space limit) */
  assert_true(xa_pagemap_units << XA_UNIT_SHIFT >= (uintptr_t)xa_pagemap);   /* covers itself */
  const char *flags = vmflags_of((uintptr_t)xa_pagemap);
  print_message("page map: %zu entries at %p; VmFlags:%s", xa_pagemap_units, (void *)xa_pagemap, flags);
  assert_string_equal(tu_perms_at((uintptr_t)xa_pagemap), "r--p");
  assert_non_null(strstr(flags, " dd"));
  assert_non_null(strstr(flags, " nr"));
  if (access("/sys/kernel/mm/transparent_hugepage/enabled", F_OK) == 0) assert_non_null(strstr(flags, " hg"));
  int local;
  assert_int_equal(xa_pagemap[(uintptr_t)&local >> XA_UNIT_SHIFT].cls_scaled, 0);
  struct xa_chunk *c = xa_chunk_new(NULL, false);
  assert_non_null(c);
  assert_ptr_equal(c->info, &xa_pagemap[(uintptr_t)c >> XA_UNIT_SHIFT]);
  assert_string_equal(tu_perms_at((uintptr_t)c->info), "rw-p");
  assert_string_equal(tu_perms_at((uintptr_t)(c->info + XA_CHUNK_UNITS) - 1), "rw-p");
  struct xa_pageinfo *info = c->info;
  xa_chunk_delete(c);
  if (xa_os_page <= XA_CHUNK_UNITS * sizeof *info) assert_string_equal(tu_perms_at((uintptr_t)info), "r--p");
}

static void test_refill_flush_roundtrip(void **state) {
  (void)state;
  struct xa_arena *a = new_arena();
  for (unsigned cls = 0; cls < XA_NSMALL; cls++) {
    const struct xa_class_info *ci = &xa_classes[cls];
    unsigned want = ci->nobjs * 2 + 3;        /* spans three slabs */
    void **v = calloc(want, sizeof *v);
    unsigned got = xa_arena_refill(a, cls, v, want);
    assert_int_equal(got, want);
    check(a);
    assert_int_equal(a->bins[cls].curobjs, want);
    for (unsigned i = 0; i < got; i++) {
      assert_int_equal((unsigned)xa_small_class_of(v[i]), cls);
      memset(v[i], 0xa5, ci->size);            /* objects are writable */
      if (i) assert_ptr_not_equal(v[i], v[i - 1]);
    }
    xa_arena_flush(v, got, "test");
    check(a);
    assert_int_equal(a->bins[cls].curobjs, 0);
    /* up to empty_keep empty slabs kept, the rest released */
    assert_true(a->bins[cls].nslabs <= ci->empty_keep);
    assert_int_equal(a->bins[cls].nempty, a->bins[cls].nslabs);
    free(v);
  }
}

/* A bin keeps empty slabs up to XA_EMPTY_SLAB_BYTES (at least one), so a
 * class emptied and refilled in batches does not carve slabs over and over;
 * the kept ones are reused first, and purging gives them all back. */
static void test_empty_slabs_kept_then_purged(void **state) {
  (void)state;
  struct xa_arena *a = new_arena();
  for (unsigned cls = 0; cls < XA_NSMALL; cls++) {
    const struct xa_class_info *ci = &xa_classes[cls];
    size_t slab_bytes = (size_t)ci->slab_pages << xa_os_page_shift;
    unsigned keep = ci->empty_keep;
    assert_true(keep >= 1);
    assert_true(keep == 1 || keep * slab_bytes <= XA_EMPTY_SLAB_BYTES);
    unsigned want = ci->nobjs * (keep + 2);
    void **v = calloc(want, sizeof *v);
    assert_int_equal(xa_arena_refill(a, cls, v, want), want);
    assert_int_equal(a->bins[cls].nslabs, keep + 2);
    assert_int_equal(a->bins[cls].nempty, 0);
    xa_arena_flush(v, want, "test");
    check(a);
    assert_int_equal(a->bins[cls].nslabs, keep);
    assert_int_equal(a->bins[cls].nempty, keep);
    /* the kept slabs serve the next refill: no new slab is carved */
    unsigned again = ci->nobjs * keep;
    assert_int_equal(xa_arena_refill(a, cls, v, again), again);
    assert_int_equal(a->bins[cls].nslabs, keep);
    assert_int_equal(a->bins[cls].nempty, 0);
    check(a);
    xa_arena_flush(v, again, "test");
    /* purging releases decayed empty slabs, the bin's last one too, as
     * clean pages: purged once (kept slabs, plus the two slabs released
     * dirty by the first flush), not again as dirty spans */
    uint64_t purged = a->purged_pages;
    xa_arena_purge(a);
    check(a);
    assert_int_equal(a->purged_pages - purged, (uint64_t)(keep + 2) * ci->slab_pages);
    assert_int_equal(a->bins[cls].nslabs, 0);
    assert_int_equal(a->bins[cls].nempty, 0);
    free(v);
  }
}

static void test_large_alignment_and_coalesce(void **state) {
  (void)state;
  struct xa_arena *a = new_arena();
  size_t page = xa_os_page;
  for (size_t align = page; align <= XA_CHUNK_SIZE / 8; align <<= 1) {
    void *p = xa_arena_alloc_large(a, 40000, align);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p & (align - 1), 0);
    memset(p, 1, 40000);
    check(a);
    struct xa_span *s = xa_arena_large_span(p);
    assert_non_null(s);
    assert_null(xa_arena_large_span((char *)p + page));    /* interior */
    xa_arena_free_large(s);
    check(a);
  }
  /* three neighbours freed middle, left, right: one free span again
   * (purged first: all free pages clean, so the three are carved side by
   * side instead of from the dirty spans the loop left) */
  xa_arena_purge(a);
  check(a);
  void *x = xa_arena_alloc_large(a, 8 * page, page);
  void *y = xa_arena_alloc_large(a, 8 * page, page);
  void *z = xa_arena_alloc_large(a, 8 * page, page);
  assert_ptr_equal(y, (char *)x + 8 * page);
  assert_ptr_equal(z, (char *)y + 8 * page);
  check(a);
  xa_arena_free_large(xa_arena_large_span(y));
  check(a);
  xa_arena_free_large(xa_arena_large_span(x));
  check(a);
  xa_arena_free_large(xa_arena_large_span(z));
  check(a);
  /* the three merge into one dirty span (the walker also checks that no
   * two neighbours in one state are left apart); never-used pages, such
   * as the ends trimmed off for alignment, stay clean spans of their own */
  bool merged = false;
  for (struct xa_span *d = a->dirty_spans.head; d; d = d->lru_next)
    merged |= xa_span_addr(d) <= (char *)x && (char *)x + 24 * page <= xa_span_addr(d) + xa_span_bytes(d);
  assert_true(merged);
  assert_int_equal(a->large_allocated, 0);
  /* purged, it is clean like its neighbour and merges with it: one span */
  xa_arena_purge(a);
  check(a);
  assert_int_equal(free_span_count(a), 1);
  assert_int_equal(a->dirty_pages, 0);
}

/* Free spans in different page states stay apart, and a span request
 * takes resident (dirty) pages before clean ones, even where a clean span
 * would fit more tightly. */
static void test_dirty_pages_reused_first(void **state) {
  (void)state;
  struct xa_arena *a = new_arena();
  size_t page = xa_os_page;
  char *A = xa_arena_alloc_large(a, 4 * page, page);
  char *B = xa_arena_alloc_large(a, 8 * page, page);
  char *C = xa_arena_alloc_large(a, 4 * page, page);
  assert_ptr_equal(B, A + 4 * page);
  assert_ptr_equal(C, B + 8 * page);
  xa_arena_free_large(xa_arena_large_span(A));
  xa_arena_purge(a);                       /* A: a clean 4-page span */
  assert_int_equal(a->dirty_pages, 0);
  xa_arena_free_large(xa_arena_large_span(B));
  check(a);                                /* B: dirty, not merged with A */
  assert_int_equal(a->dirty_pages, 8);
  char *D = xa_arena_alloc_large(a, 4 * page, page);
  assert_ptr_equal(D, B);                  /* not A, the exact fit */
  assert_int_equal(a->dirty_pages, 4);
  check(a);
  xa_arena_free_large(xa_arena_large_span(D));
  xa_arena_free_large(xa_arena_large_span(C));
  xa_arena_purge(a);
  check(a);
  assert_int_equal(free_span_count(a), 1);  /* all clean: one span again */
}

/* A dirty span is found wherever it is: a 3-page request behind sixteen
 * clean 3-page spans takes the one dirty 4-page span (the free spans of
 * each page state have bins of their own), not a clean span to fault in. */
static void test_dirty_span_found_behind_clean_ones(void **state) {
  (void)state;
  struct xa_arena *a = new_arena();
  size_t page = xa_os_page;
  enum { N = 16 };
  char *d = xa_arena_alloc_large(a, 4 * page, page);
  void *spacer[N + 1], *z[N], *t[N];
  spacer[0] = xa_arena_alloc_large(a, page, page);
  for (int i = 0; i < N; i++) {
    z[i] = xa_arena_alloc_large(a, 8 * page, page);
    spacer[i + 1] = xa_arena_alloc_large(a, page, page);
  }
  for (int i = 0; i < N; i++) xa_arena_free_large(xa_arena_large_span(z[i]));
  xa_arena_purge(a);                       /* sixteen clean 8-page spans */
  xa_arena_free_large(xa_arena_large_span(d));
  assert_int_equal(a->dirty_pages, 4);
  for (int i = 0; i < N; i++) t[i] = xa_arena_alloc_large(a, 5 * page, page);   /* leave clean 3-page spans */
  check(a);
  assert_int_equal(a->dirty_pages, 4);
  char *e = xa_arena_alloc_large(a, 3 * page, page);
  assert_ptr_equal(e, d);
  assert_int_equal(a->dirty_pages, 1);
  check(a);
  xa_arena_free_large(xa_arena_large_span(e));
  for (int i = 0; i < N; i++) xa_arena_free_large(xa_arena_large_span(t[i]));
  for (int i = 0; i <= N; i++) xa_arena_free_large(xa_arena_large_span(spacer[i]));
  check(a);
}

/* The peak budget: an arena that takes fresh pages while more dirty pages
 * wait than the live bytes' peak less the live bytes, plus an eighth of
 * the peak, gives back as many dirty pages, from the shortest spans up.
 * Here the program's blocks make a new peak; a 160-page block is freed
 * first (the oldest dirty span), then half of the others as 16-page
 * holes, and 192-page blocks (none fits) take the live bytes back up:
 * past an eighth of the peak below it, each fresh page sends a dirty one
 * back.  Most holes are purged and the long span stays dirty.  With
 * dirty_decay_ms:-1 (never purge) every hole stays dirty. */
static void test_fresh_pages_near_peak_purge_dirty(void **state) {
  (void)state;
  int64_t decay = xa_opt.dirty_decay_ms;
  size_t page = xa_os_page;
  enum { MAXB = 8192 };
  void **blk = calloc(MAXB, sizeof *blk), **spacer = calloc(MAXB, sizeof *spacer), **big = calloc(MAXB, sizeof *big);
  assert_non_null(blk);
  assert_non_null(spacer);
  assert_non_null(big);
  for (int pass = 0; pass < 2; pass++) {
    xa_opt.dirty_decay_ms = pass ? -1 : decay;
    struct xa_arena *a = new_arena();
    char *longb = xa_arena_alloc_large(a, 160 * page, page);
    void *guard = xa_arena_alloc_large(a, page, page);
    assert_non_null(longb);
    uint64_t target = xa_peak_max(XA_PEAK_ALLOCATED) + ((uint64_t)16 << 20);
    size_t k = 0;
    while (xa_peak_now(XA_PEAK_ALLOCATED) < target && k < MAXB) {
      blk[k] = xa_arena_alloc_large(a, 16 * page, page);
      spacer[k] = xa_arena_alloc_large(a, page, page);
      assert_non_null(blk[k]);
      assert_non_null(spacer[k]);
      k++;
    }
    assert_true(k < MAXB);
    xa_arena_free_large(xa_arena_large_span(longb));
    for (size_t i = 0; i < k; i += 2) xa_arena_free_large(xa_arena_large_span(blk[i]));
    size_t dirty = a->dirty_pages;
    assert_int_equal(dirty, 160 + (k + 1) / 2 * 16);
    check(a);
    size_t m = dirty / 192;
    uint64_t counted = xa_arena_peak_purged();
    for (size_t i = 0; i < m; i++) {
      big[i] = xa_arena_alloc_large(a, 192 * page, page);
      assert_non_null(big[i]);
    }
    check(a);
    struct xa_chunk *c = xa_chunk_of(longb);
    struct xa_span *ls = xa_chunk_span(c, (unsigned)((uintptr_t)(longb - (char *)c) >> xa_os_page_shift));
    assert_int_equal(ls->state, XA_SPAN_FREE);
    assert_int_equal(ls->dirty, XA_PAGES_DIRTY);         /* the long span: kept */
    if (pass == 0) {
      assert_true(a->dirty_pages <= dirty / 2);
      /* stats.peak_purged counts them (purged whole: at least the drop) */
      assert_true(xa_arena_peak_purged() - counted >= (uint64_t)(dirty - a->dirty_pages) * page);
    } else {
      assert_int_equal(a->dirty_pages, dirty);
      assert_int_equal(xa_arena_peak_purged(), counted);
    }
    for (size_t i = 0; i < m; i++) xa_arena_free_large(xa_arena_large_span(big[i]));
    for (size_t i = 0; i < k; i++) {
      if (i & 1) xa_arena_free_large(xa_arena_large_span(blk[i]));
      xa_arena_free_large(xa_arena_large_span(spacer[i]));
    }
    xa_arena_free_large(xa_arena_large_span(guard));
    xa_opt.dirty_decay_ms = decay;
    xa_arena_purge(a);
    check(a);
  }
  free(blk);
  free(spacer);
  free(big);
}

/* An arena about to take fresh pages while another holds plenty of dirty
 * ones takes the other's instead: a large block and a new slab requested
 * from arena Y, whose own dirty pages are gone, land on the dirty pages
 * arena X was left with (per-CPU arenas: the threads that freed them may
 * run elsewhere now).  A private arena never borrows (the tests above). */
static void test_dirty_pages_borrowed_across_arenas(void **state) {
  (void)state;
  if (xa_arena_count() < 2) skip();
  int64_t decay = xa_opt.dirty_decay_ms;
  xa_opt.dirty_decay_ms = -1;              /* the purger leaves the dirty pages be */
  size_t page = xa_os_page;
  struct xa_arena *x = xa_arenas[0], *y = xa_arenas[1];
  xa_arena_purge(x);
  xa_arena_purge(y);
  char *big[5];                            /* 320 dirty pages: over XA_BORROW_MIN_PAGES */
  for (int i = 0; i < 5; i++) {
    big[i] = xa_arena_alloc_large(x, 64 * page, page);
    assert_non_null(big[i]);
    assert_ptr_equal(xa_chunk_of(big[i])->arena, x);
  }
  for (int i = 0; i < 5; i++) xa_arena_free_large(xa_arena_large_span(big[i]));
  assert_true(x->dirty_pages >= 320);
  _Static_assert(XA_BORROW_MIN_PAGES <= 320, "the test frees enough");
  assert_int_equal(y->dirty_pages, 0);
  size_t before = x->dirty_pages;
  char *blk = xa_arena_alloc_large(y, 8 * page, page);
  assert_non_null(blk);
  assert_ptr_equal(xa_chunk_of(blk)->arena, x);   /* not a fresh span of y's */
  assert_int_equal(x->dirty_pages, before - 8);
  /* a slab for a class y has none of: carved on x's dirty pages too */
  unsigned cls = XA_NSMALL - 1;
  if (y->bins[cls].nonfull) skip();
  void *obj = NULL;
  assert_int_equal(xa_arena_refill(y, cls, &obj, 1), 1);
  assert_ptr_equal(xa_chunk_of(obj)->arena, x);
  assert_int_equal(x->dirty_pages, before - 8 - xa_classes[cls].slab_pages);
  check(x);
  check(y);
  xa_arena_flush(&obj, 1, "free");
  xa_arena_free_large(xa_arena_large_span(blk));
  xa_arena_purge(x);
  check(x);
  xa_opt.dirty_decay_ms = decay;
}

/* A chunk whose free pages are in two states is wholly free all the same:
 * it counts as a spare, decay unmaps it beyond XA_SPARE_CHUNKS, and
 * release_spares returns the rest. */
static void test_whole_chunks_in_several_spans(void **state) {
  (void)state;
  struct xa_arena *a = new_arena();
  size_t page = xa_os_page;
  unsigned usable = xa_chunk_end_page - xa_chunk_first_page;
  enum { N = XA_SPARE_CHUNKS + 3 };
  void *v[N];
  for (int i = 0; i < N; i++) {
    v[i] = xa_arena_alloc_large(a, (usable - 29) * page, page);   /* leaves a clean tail */
    assert_non_null(v[i]);
    memset(v[i], 1, page);
  }
  assert_int_equal(a->mapped, (size_t)N * XA_CHUNK_SIZE);
  for (int i = 0; i < N; i++) xa_arena_free_large(xa_arena_large_span(v[i]));
  check(a);
  assert_int_equal(free_span_count(a), 2 * N);   /* [dirty][clean] each */
  assert_int_equal(a->nspare, N);
  xa_arena_purge(a);
  check(a);
  assert_int_equal(a->nspare, XA_SPARE_CHUNKS);
  assert_int_equal(a->mapped, (size_t)XA_SPARE_CHUNKS * XA_CHUNK_SIZE);
  assert_int_equal(xa_arena_release_spares(a), (size_t)XA_SPARE_CHUNKS * XA_CHUNK_SIZE);
  assert_int_equal(a->mapped, 0);
  assert_int_equal(a->nspare, 0);
  check(a);
}

/* In-place growth takes free pages to the right even when they are two
 * spans in different states. */
static void test_grow_over_split_free_pages(void **state) {
  (void)state;
  struct xa_arena *a = new_arena();
  size_t page = xa_os_page;
  xa_arena_purge(a);
  char *P = xa_arena_alloc_large(a, 10 * page, page);
  char *Q = xa_arena_alloc_large(a, 2 * page, page);
  char *R = xa_arena_alloc_large(a, 10 * page, page);
  char *S = xa_arena_alloc_large(a, page, page);
  assert_ptr_equal(Q, P + 10 * page);
  assert_ptr_equal(R, Q + 2 * page);
  assert_ptr_equal(S, R + 10 * page);
  tu_fill(P, 10 * page, 3);
  xa_arena_free_large(xa_arena_large_span(Q));
  xa_arena_purge(a);                                   /* Q clean */
  xa_arena_free_large(xa_arena_large_span(R));         /* R dirty */
  check(a);
  struct xa_span *s = xa_arena_large_span(P);
  assert_true(xa_arena_resize_large(s, 15 * page));    /* over Q and part of R */
  check(a);
  assert_int_equal(s->npages, 15);
  assert_true(tu_check(P, 10 * page, 3));
  memset(P, 4, 15 * page);
  assert_true(xa_arena_resize_large(s, 22 * page));    /* all of both */
  check(a);
  assert_false(xa_arena_resize_large(s, 23 * page));   /* S is in the way */
  xa_arena_free_large(s);
  xa_arena_free_large(xa_arena_large_span(S));
  check(a);
}

/* Sparse slabs and growth: slabs of one class keep one object each
 * (their other pages wholly free) while large blocks take fresh pages.
 * Once XA_GROW_PURGE_PAGES fresh pages were taken so, the sparse slabs'
 * free pages go back (grow_purge), as many as were taken; and when the
 * slabs then empty, they come back as dirty free pages, not muzzy ones,
 * merged with their dirty neighbours (check(): no two free neighbours in
 * one state), their purged pages counted as unfaulted. */
static void test_growth_purges_sparse_slabs(void **state) {
  (void)state;
  struct xa_arena *a = new_arena();
  unsigned cls = xa_sizeclass_of(64);
  const struct xa_class_info *ci = &xa_classes[cls];
  if (ci->slab_pages < 4 || 16 * (ci->slab_pages - 1) > XA_GROW_PURGE_PAGES) skip();   /* 4 KiB pages */
  enum { SLABS = 16 };
  unsigned n = ci->nobjs * SLABS;
  void **v = calloc(n, sizeof *v);
  assert_non_null(v);
  assert_int_equal(xa_arena_refill(a, cls, v, n), n);
  for (unsigned i = 0; i < n; i++) memset(v[i], 7, ci->size);
  /* keep the first object of each slab (the lowest address) */
  void *kept[SLABS];
  unsigned nk = 0, nf = 0;
  void **rest = calloc(n, sizeof *rest);
  for (unsigned i = 0; i < n; i++) {
    struct xa_chunk *c = xa_chunk_of(v[i]);
    struct xa_span *s = xa_chunk_span(c, xa_chunk_info(c, v[i])->first);
    if (v[i] == xa_span_addr(s)) kept[nk++] = v[i];
    else rest[nf++] = v[i];
  }
  assert_int_equal(nk, SLABS);
  /* a slab of another class, half full (its upper pages free), on the
   * dirty list first: the oldest, but not sparse enough to be purged */
  unsigned c2 = xa_sizeclass_of(256);
  unsigned n2 = xa_classes[c2].nobjs;
  void **u = calloc(n2, sizeof *u);
  assert_non_null(u);
  assert_int_equal(xa_arena_refill(a, c2, u, n2), n2);
  struct xa_chunk *uc = xa_chunk_of(u[0]);
  struct xa_span *busy = xa_chunk_span(uc, xa_chunk_info(uc, u[0])->first);
  char *mid = (char *)xa_span_addr(busy) + (size_t)(n2 / 2) * xa_classes[c2].size;
  unsigned nu = 0;
  for (unsigned i = 0; i < n2; i++)
    if ((char *)u[i] >= mid) u[nu++] = u[i];
  xa_arena_flush(u, nu, "test");
  assert_ptr_equal(a->dirty_slabs.head, busy);
  xa_arena_flush(rest, nf, "test");
  check(a);
  unsigned freeable = SLABS * (ci->slab_pages - 1);     /* all but the kept object's page */
  uint64_t purged = a->purged_pages;
  /* fresh pages for large blocks: below the threshold nothing is purged */
  size_t step = 64 << xa_os_page_shift;
  void *big[8];
  unsigned nb = 0;
  while (((size_t)(nb + 1) * 64) < XA_GROW_PURGE_PAGES) big[nb++] = xa_arena_alloc_large(a, step, xa_os_page);
  assert_int_equal(a->purged_pages, purged);
  big[nb++] = xa_arena_alloc_large(a, step, xa_os_page);
  check(a);
  assert_true(a->purged_pages - purged >= freeable);
  assert_ptr_equal(a->dirty_slabs.head, busy);       /* left to decay */
  assert_null(busy->lru_next);                       /* the sparse ones all went */
  for (unsigned i = 0; i < SLABS; i++) assert_int_equal(*(unsigned char *)kept[i], 7);   /* intact */
  /* the slabs empty: dirty, merged, none muzzy */
  xa_arena_flush(kept, SLABS, "test");
  check(a);
  assert_int_equal(a->muzzy_pages, 0);
  uint64_t unfaulted = 0;
  for (unsigned b = 0; b < XA_FREE_BINS; b++)
    for (struct xa_span *f = a->free_spans[1][b]; f; f = f->next) unfaulted += f->unfaulted;
  assert_true(unfaulted > 0 && unfaulted <= freeable);
  for (unsigned i = 0; i < nb; i++) xa_arena_free_large(xa_arena_large_span(big[i]));
  check(a);
  free(u);
  free(rest);
  free(v);
}

static void test_large_resize_in_place(void **state) {
  (void)state;
  struct xa_arena *a = new_arena();
  size_t page = xa_os_page;
  char *p = xa_arena_alloc_large(a, 10 * page, page);
  tu_fill(p, 10 * page, 7);
  struct xa_span *s = xa_arena_large_span(p);
  assert_true(xa_arena_resize_large(s, 30 * page));   /* free pages follow */
  check(a);
  assert_int_equal(xa_span_bytes(s), 30 * page);
  assert_true(tu_check(p, 10 * page, 7));
  assert_true(xa_arena_resize_large(s, 5 * page));
  check(a);
  assert_int_equal(xa_span_bytes(s), 5 * page);
  void *q = xa_arena_alloc_large(a, 10 * page, page);  /* takes the freed tail */
  assert_ptr_equal(q, p + 5 * page);
  assert_false(xa_arena_resize_large(s, 6 * page));  /* blocked by q */
  check(a);
  xa_arena_free_large(xa_arena_large_span(q));
  xa_arena_free_large(s);
  check(a);
}

/* Wholly free chunks stay until purged; purging unmaps all but
 * XA_SPARE_CHUNKS and leaves no dirty pages; spares can be released. */
static void test_chunk_retention_and_purge(void **state) {
  (void)state;
  struct xa_arena *a = new_arena();
  size_t big = (size_t)(xa_chunk_end_page - xa_chunk_first_page) << xa_os_page_shift;
  enum { N = XA_SPARE_CHUNKS + 2 };
  void *p[N];
  for (int i = 0; i < N; i++) {
    p[i] = xa_arena_alloc_large(a, big, xa_os_page);
    assert_non_null(p[i]);
    memset(p[i], 1, big);
    /* the whole span area: it ends at the chunk's end, or at its trailing guard */
    if (xa_chunk_huge_layout) assert_ptr_equal((char *)p[i] + big, (char *)xa_chunk_of(p[i]) + XA_CHUNK_SIZE);
    else assert_string_equal(tu_perms_at((uintptr_t)p[i] + big), "---p");
  }
  assert_int_equal(a->mapped, N * XA_CHUNK_SIZE);
  for (int i = 0; i < N; i++) xa_arena_free_large(xa_arena_large_span(p[i]));
  check(a);
  assert_int_equal(a->mapped, N * XA_CHUNK_SIZE);       /* unmapping waits for decay */
  assert_int_equal(a->nspare, N);
  assert_true(a->dirty_pages > 0);
  assert_true(xa_arena_purge(a) > 0);
  check(a);
  assert_int_equal(a->mapped, XA_SPARE_CHUNKS * XA_CHUNK_SIZE);   /* the rest unmapped */
  assert_int_equal(a->nspare, XA_SPARE_CHUNKS);
  assert_int_equal(a->dirty_pages, 0);
  assert_int_equal(xa_arena_purge(a), 0);      /* nothing left to purge */
  void *q = xa_arena_alloc_large(a, big, xa_os_page);   /* reuses a spare */
  assert_int_equal(a->mapped, XA_SPARE_CHUNKS * XA_CHUNK_SIZE);
  assert_int_equal(a->nspare, XA_SPARE_CHUNKS - 1);
  xa_arena_free_large(xa_arena_large_span(q));
  assert_int_equal(xa_arena_release_spares(a), XA_SPARE_CHUNKS * XA_CHUNK_SIZE);
  check(a);
  assert_int_equal(a->mapped, 0);
  assert_int_equal(a->nspare, 0);
}

static unsigned resident_pages(const void *p, size_t pages) {
  unsigned char v[64];
  assert_true(pages <= sizeof v);
  assert_int_equal(mincore((void *)p, pages << xa_os_page_shift, v), 0);
  unsigned n = 0;
  for (size_t i = 0; i < pages; i++) n += v[i] & 1;
  return n;
}

/* Slabs emptied and purged leave their chunk wholly free, with only the
 * first header pages resident (the slabs' bitmaps lived in the others); a
 * spare chunk that no allocation takes goes back to the kernel after half
 * the decay time, counted from the first decay pass that sees it. */
static void test_emptied_slabs_free_chunk_and_spares_decay(void **state) {
  (void)state;
  struct xa_arena *a = new_arena();
  unsigned cls = 0;                    /* 16-byte objects: bitmaps over many slot pages */
  unsigned want = xa_classes[cls].nobjs * ((xa_chunk_end_page - xa_chunk_first_page) / 2 / xa_classes[cls].slab_pages);
  /* not malloc: a huge block would leave the huge allocator address space
   * that the fault injection test below must not find */
  size_t vbytes = want * sizeof(void *);
  void **v = mmap(NULL, vbytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  assert_true(v != MAP_FAILED);
  assert_int_equal(xa_arena_refill(a, cls, v, want), want);
  struct xa_chunk *c = xa_chunk_of(v[0]);
  assert_ptr_equal(xa_chunk_of(v[want - 1]), c);
  size_t hdr = xa_chunk_first_page - 1;
  assert_true(resident_pages(c, hdr) > 5);
  xa_arena_flush(v, want, "test");
  xa_arena_purge(a);
  check(a);
  assert_int_equal(a->bins[cls].nslabs, 0);
  assert_int_equal(a->nspare, 1);
  assert_true(resident_pages(c, hdr) <= 5);
  /* kept for half the decay time in force (dirty_decay_ms, up to 8 times
   * that while the purger's adaptation stretches it) after the first pass
   * that sees it, counted anew when a spare is taken meanwhile */
  uint64_t now = xa_os_now(), half = (uint64_t)xa_opt.dirty_decay_ms * 500000u;
  xa_arena_decay(a, now);                                /* first sight */
  xa_arena_decay(a, now + half - 1);
  assert_int_equal(a->nspare, 1);
  void *p = xa_arena_alloc_large(a, 64 << 10, xa_os_page);   /* the spare taken, */
  assert_ptr_equal(xa_chunk_of(p), c);
  xa_arena_free_large(xa_arena_large_span(p));               /* and given back */
  xa_arena_purge(a);
  assert_int_equal(a->nspare, 1);
  uint64_t t = now + 20 * half;                          /* past any decay time */
  xa_arena_decay(a, t);                                  /* sees the take: kept */
  assert_int_equal(a->nspare, 1);
  for (unsigned k = 1; k <= 9 && a->nspare; k++) xa_arena_decay(a, t + k * half);
  check(a);
  assert_int_equal(a->nspare, 0);
  assert_int_equal(a->mapped, 0);
  munmap(v, vbytes);
}

/* Purging a wholly free chunk also returns the header pages that hold only
 * the interior span slots; reusing the chunk afterwards (slabs, whose
 * bitmaps live in those slots, and large spans) must still work. */
static void test_purge_returns_span_slots(void **state) {
  (void)state;
  struct xa_arena *a = new_arena();
  size_t big = (size_t)(xa_chunk_end_page - xa_chunk_first_page) << xa_os_page_shift;
  void *p = xa_arena_alloc_large(a, big, xa_os_page);
  assert_non_null(p);
  struct xa_chunk *c = xa_chunk_of(p);
  size_t hdr = xa_chunk_first_page - 1, lead = xa_chunk_huge_layout;   /* the first: a guard page? */
  for (size_t i = lead; i < hdr; i++) {   /* make every header page resident */
    volatile char *b = (char *)c + (i << xa_os_page_shift);
    b[0] = b[0];
  }
  assert_int_equal(resident_pages(c, hdr), hdr - lead);
  xa_arena_free_large(xa_arena_large_span(p));
  assert_true(xa_arena_purge(a) > 0);
  check(a);
  assert_int_equal(a->nspare, 1);
  /* pageinfo (2 pages), the slot page of the free span's descriptor and
   * (outside the huge layout) that of the trailing guard's stay */
  unsigned res = resident_pages(c, hdr);
  assert_true(res <= 5);
  assert_true(res < hdr / 2);
  /* reuse: slabs of every class, then a large span, then all freed */
  enum { PER = 8 };
  static void *v[XA_NSMALL][PER];
  for (unsigned cls = 0; cls < XA_NSMALL; cls++) {
    assert_int_equal(xa_arena_refill(a, cls, v[cls], PER), PER);
    for (unsigned i = 0; i < PER; i++) memset(v[cls][i], (int)cls, xa_classes[cls].size);
  }
  check(a);
  void *q = xa_arena_alloc_large(a, 64 << 10, xa_os_page);
  assert_non_null(q);
  check(a);
  for (unsigned cls = 0; cls < XA_NSMALL; cls++) {
    for (unsigned i = 0; i < PER; i++) assert_int_equal(((unsigned char *)v[cls][i])[xa_classes[cls].size - 1], cls);
    xa_arena_flush(v[cls], PER, "free");
  }
  xa_arena_free_large(xa_arena_large_span(q));
  check(a);
  assert_true(xa_arena_purge(a) > 0);
  check(a);
  assert_int_equal(a->mapped, XA_CHUNK_SIZE);     /* all of it was served from c */
}

static int child_double_flush(void *arg) {
  (void)arg;
  struct xa_arena *a = new_arena();
  void *v[2];
  xa_arena_refill(a, 3, v, 2);
  void *w[3] = {v[0], v[1], v[0]};
  xa_arena_flush(w, 3, "free");
  return 0;
}

static int child_interior_flush(void *arg) {
  (void)arg;
  struct xa_arena *a = new_arena();
  void *v[1];
  xa_arena_refill(a, 3, v, 1);
  void *w[1] = {(char *)v[0] + 8};
  xa_arena_flush(w, 1, "free");
  return 0;
}

static int cmp_ptr(const void *x, const void *y) {
  uintptr_t a = (uintptr_t)*(void *const *)x, b = (uintptr_t)*(void *const *)y;
  return a < b ? -1 : a > b;
}

/* Three neighbours sorted by cmp; the middle one freed, then all three:
 * the double free is met inside a run. */
static int double_flush_sorted(int (*cmp)(const void *, const void *)) {
  struct xa_arena *a = new_arena();
  void *v[3];
  xa_arena_refill(a, 3, v, 3);
  qsort(v, 3, sizeof *v, cmp);
  fprintf(stderr, "victim %p\n", v[1]);
  xa_arena_flush(&v[1], 1, "free");
  xa_arena_flush(v, 3, "free");
  return 0;
}

/* A double free met inside a run of objects in address order (the path
 * that skips the offset check) is caught too. */
static int child_double_flush_in_order(void *arg) {
  (void)arg;
  return double_flush_sorted(cmp_ptr);
}

static int cmp_ptr_down(const void *x, const void *y) { return cmp_ptr(y, x); }

/* The same met inside a run in descending order (a LIFO free order: the
 * path that steps back one object). */
static int child_double_flush_descending(void *arg) {
  (void)arg;
  return double_flush_sorted(cmp_ptr_down);
}

/* Flushing in address order: runs that cross bitmap words and slabs, mixed
 * with out-of-order pointers, leave every bit and count right; runs in
 * descending order too. */
static void test_flush_in_address_order(void **state) {
  (void)state;
  struct xa_arena *a = new_arena();
  for (unsigned cls = 0; cls < XA_NSMALL; cls += 7) {
    unsigned n = 3 * xa_classes[cls].nobjs + 5;
    void **v = malloc(n * sizeof *v);
    assert_non_null(v);
    assert_int_equal(xa_arena_refill(a, cls, v, n), n);
    qsort(v, n, sizeof *v, cmp_ptr);
    for (unsigned i = 0; i + 1 < n; i += 9) {   /* some out of order */
      void *t = v[i];
      v[i] = v[i + 1];
      v[i + 1] = t;
    }
    xa_arena_flush(v, n / 2, "free");
    check(a);
    xa_arena_flush(v + n / 2, n - n / 2, "free");
    check(a);
    assert_int_equal(a->bins[cls].curobjs, 0);
    /* every object free again: a refill hands all of them back */
    void **w = malloc(n * sizeof *w);
    assert_non_null(w);
    assert_int_equal(xa_arena_refill(a, cls, w, n), n);
    qsort(w, n, sizeof *w, cmp_ptr);
    xa_arena_flush(w, n, "free");
    check(a);
    assert_int_equal(a->bins[cls].curobjs, 0);
    /* and in descending order, across words and slabs */
    assert_int_equal(xa_arena_refill(a, cls, w, n), n);
    qsort(w, n, sizeof *w, cmp_ptr_down);
    xa_arena_flush(w, n / 3, "free");
    check(a);
    xa_arena_flush(w + n / 3, n - n / 3, "free");
    check(a);
    assert_int_equal(a->bins[cls].curobjs, 0);
    assert_int_equal(xa_arena_refill(a, cls, w, n), n);   /* all free again */
    xa_arena_flush(w, n, "free");
    check(a);
    free(v);
    free(w);
  }
}

static void test_flush_detects_misuse(void **state) {
  (void)state;
  static tu_child c;
  tu_run_child(&c, child_double_flush, NULL, 1, 30);
  assert_int_equal(c.sig, SIGABRT);
  assert_non_null(strstr(c.err, "xalloc: free: double free 0x"));
  int (*victims[2])(void *) = {child_double_flush_in_order, child_double_flush_descending};
  for (int k = 0; k < 2; k++) {
    tu_run_child(&c, victims[k], NULL, 1, 30);
    assert_int_equal(c.sig, SIGABRT);
    char want[64];
    void *victim = NULL;
    assert_int_equal(sscanf(c.err, "victim %p", &victim), 1);
    snprintf(want, sizeof want, "xalloc: free: double free %p", victim);
    assert_non_null(strstr(c.err, want));
  }
  tu_run_child(&c, child_interior_flush, NULL, 1, 30);
  assert_int_equal(c.sig, SIGABRT);
  assert_non_null(strstr(c.err, "xalloc: free: invalid pointer 0x"));
}

/* A write running off the last block of a chunk faults (SIGSEGV) before
 * it reaches the next chunk's header: at the next chunk's first page, a
 * guard (the huge layout), or at the chunk's trailing guard.  With the first,
 * the child makes chunks until one lies right below another (mappings
 * usually come top down; regions hand out neighbours); 7 if none does. */
static int child_overflow_chunk_end(void *arg) {
  (void)arg;
  struct xa_arena *a = new_arena();
  size_t big = (size_t)(xa_chunk_end_page - xa_chunk_first_page) << xa_os_page_shift;
  enum { N = 16 };
  char *p[N];
  char *q = NULL;
  for (int i = 0; i < N && !q; i++) {
    if (!(p[i] = xa_arena_alloc_large(a, big, xa_os_page))) return 1;
    memset(p[i], 1, big);
    for (int j = 0; j < i && xa_chunk_huge_layout; j++) {
      if ((char *)xa_chunk_of(p[j]) == (char *)xa_chunk_of(p[i]) + XA_CHUNK_SIZE) q = p[i];
      if ((char *)xa_chunk_of(p[i]) == (char *)xa_chunk_of(p[j]) + XA_CHUNK_SIZE) q = p[j];
    }
    if (!xa_chunk_huge_layout) q = p[i];
  }
  if (!q) return 7;
  volatile char *v = q;
  for (size_t i = big; i < big + 64; i++) v[i] = 2;   /* must fault at i == big */
  return 0;
}

static void regions_on(void);
static void regions_off(void);

static void test_overflow_hits_guard(void **state) {
  (void)state;
  static tu_child c;
  if (!xa_mesh_on) regions_on();   /* chunks carved side by side */
  tu_run_child(&c, child_overflow_chunk_end, NULL, 1, 30);
  if (!xa_mesh_on) {
    regions_off();
    malloc_trim(0);                /* the region goes: later tests map anew */
  }
  if (c.exited && c.code == 7) skip();
  assert_int_equal(c.sig, SIGSEGV);
}

/* AnonHugePages of the mapping that holds p, in kB (/proc/self/smaps). */
static long mapping_anon_huge_kb(const void *p) {
  FILE *f = fopen("/proc/self/smaps", "r");
  assert_non_null(f);
  char line[512];
  int in = 0;
  long kb = -1;
  while (kb < 0 && fgets(line, sizeof line, f)) {
    unsigned long lo, hi;
    if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' '))
      in = (uintptr_t)p >= lo && (uintptr_t)p < hi;
    else if (in) sscanf(line, "AnonHugePages: %ld kB", &kb);
  }
  fclose(f);
  return kb;
}

/* Resident pages of [p, p + pages pages). */
static unsigned resident_count(const void *p, size_t pages) {
  static unsigned char v[1 << 12];
  assert_true(pages <= sizeof v);
  assert_int_equal(mincore((void *)p, pages << xa_os_page_shift, v), 0);
  unsigned n = 0;
  for (size_t i = 0; i < pages; i++) n += v[i] & 1;
  return n;
}

/* A counter of /proc/vmstat; -1 if missing. */
static long vmstat(const char *key) {
  FILE *f = fopen("/proc/vmstat", "r");
  assert_non_null(f);
  char name[64];
  long v, got = -1;
  while (fscanf(f, "%63s %ld", name, &v) == 2)
    if (!strcmp(name, key)) got = v;
  fclose(f);
  return got;
}

/* Huge pages on chunks' second halves (chunk.h, XA_ARENA_THP_MIN): an
 * arena asks for them on the chunks it makes once it holds 8 (32 MiB),
 * against them before; a purge of a whole half keeps the ask; a purge of
 * part of one withdraws it for good (khugepaged would otherwise make the
 * half whole again, purged pages included) and splits its huge page (else
 * its purged pages stay charged to the process until the kernel runs
 * short of memory), and the half's clean free spans, resident on the huge
 * page, count as dirty until decay gives them back.  Seen as the
 * mapping's VmFlags (hg asked, nh against), the kernel's count of huge
 * pages split, and mincore. */
static void test_chunk_huge_pages(void **state) {
  (void)state;
  /* (decay and purges as configured by default) */
  if (!tu_thp() || !xa_chunk_huge_layout || xa_opt.purge != xa_opt_purge_dontneed || xa_opt.dirty_decay_ms <= 0) skip();
  struct xa_arena *a = new_arena();
  size_t page = xa_os_page, big = (size_t)(xa_chunk_end_page - xa_chunk_first_page) << xa_os_page_shift;
  unsigned hp = xa_chunk_npages / 2, halfpages = xa_chunk_end_page - hp;
  enum { N = 10 };
  char *p[N];
  for (int i = 0; i < N; i++) {
    p[i] = xa_arena_alloc_large(a, big, page);
    assert_non_null(p[i]);
    struct xa_chunk *c = xa_chunk_of(p[i]);
    char *half = (char *)c + XA_CHUNK_SIZE / 2;
    assert_int_equal(c->thp, i < 8 ? XA_CHUNK_THP_NO : XA_CHUNK_THP_ASKED);
    /* the whole span area is advised, one mapping: for, or else against */
    assert_int_equal(tu_vmflag(half, "hg"), i >= 8);
    assert_int_equal(tu_vmflag(half, "nh"), i < 8);
    assert_int_equal(tu_vmflag(xa_chunk_span_area(c), "hg"), i >= 8);
  }
  /* chunk 8: a purge of the whole half keeps the ask; so does decay,
   * which would take part of the span (purge_cut) but takes all the half */
  struct xa_chunk *c = xa_chunk_of(p[8]);
  char *half = (char *)c + XA_CHUNK_SIZE / 2;
  memset(p[8], 1, big);
  xa_arena_free_large(xa_arena_large_span(p[8]));
  /* (a block kept at its start: the chunk stays, not a spare that decay
   * would give back) */
  char *w = xa_arena_alloc_large(a, 16 * page, page);
  assert_ptr_equal(w, p[8]);
  size_t decayed = 0, freed = big - 16 * page;
  for (int k = 1; k <= 40 && decayed < freed / 2; k++)     /* till a cut reaches into the half */
    decayed += xa_arena_decay(a, xa_os_now() + (uint64_t)xa_opt.dirty_decay_ms * 1000000 * k / 5);
  print_message("decay: %zu of %zu bytes purged\n", decayed, freed);
  assert_true(decayed >= freed / 2);
  assert_int_equal(c->thp, XA_CHUNK_THP_ASKED);
  assert_int_equal(xa_arena_purge(a) + decayed, freed);
  xa_arena_free_large(xa_arena_large_span(w));
  xa_arena_purge(a);
  check(a);
  assert_int_equal(c->thp, XA_CHUNK_THP_ASKED);
  assert_true(tu_vmflag(half, "hg"));
  assert_int_equal(resident_count(half, halfpages), 0);
  /* a block at the start of the half, the rest of it free and clean: the
   * block's purge takes part of the half, so the ask goes; on a huge page
   * the rest is resident, so it counts as dirty and goes too */
  char *low = xa_arena_alloc_large(a, (size_t)(hp - xa_chunk_first_page) * page, page);
  char *z = xa_arena_alloc_large(a, 16 * page, page);
  assert_ptr_equal(low, p[8]);
  assert_ptr_equal(z, half);
  memset(z, 1, 16 * page);
  /* the kernel may have had no huge page to give: then nothing to split */
  bool backed = mapping_anon_huge_kb(half) >= 2048;
  long splits = vmstat("thp_split_page");
  xa_arena_free_large(xa_arena_large_span(z));
  size_t purged = xa_arena_purge(a);   /* the block, then the rest turned dirty */
  check(a);
  assert_int_equal(c->thp, XA_CHUNK_THP_WITHDRAWN);
  assert_true(tu_vmflag(half, "nh"));
  assert_false(tu_vmflag(half, "hg"));
  print_message("half on a huge page: %d; huge pages split: %ld; purged %zu of %u pages\n", backed,
                vmstat("thp_split_page") - splits, purged / page, halfpages);
  if (backed) {
    assert_true(vmstat("thp_split_page") > splits);
    assert_int_equal(purged, (size_t)halfpages * page);
  } else {   /* the rest was never resident (but with huge pages below 2 MiB next to the block) */
    assert_true(purged >= 16 * page && purged <= (size_t)halfpages * page);
  }
  assert_int_equal(resident_count(half, halfpages), 0);
  assert_int_equal(a->dirty_pages, 0);
  assert_int_equal(c->thp, XA_CHUNK_THP_WITHDRAWN);     /* for good */
  xa_arena_free_large(xa_arena_large_span(low));
  xa_arena_purge(a);
  /* chunk 9: a slab's purged pages withdraw the ask too; a slab at the
   * end of the half (the only room left), its objects freed but the
   * first */
  c = xa_chunk_of(p[9]);
  half = (char *)c + XA_CHUNK_SIZE / 2;
  unsigned cls = 0;
  while (cls < XA_NSMALL && xa_classes[cls].slab_pages < 2) cls++;
  assert_true(cls < XA_NSMALL);
  xa_arena_free_large(xa_arena_large_span(p[9]));
  char *x = xa_arena_alloc_large(a, big - (size_t)xa_classes[cls].slab_pages * page, page);
  char *y = xa_arena_alloc_large(a, big, page);       /* chunk 8 again: none of it left */
  assert_ptr_equal(x, p[9]);
  assert_ptr_equal(y, p[8]);
  static void *v[1 << 12];
  unsigned n = xa_classes[cls].nobjs;
  assert_true(n <= sizeof v / sizeof *v);
  assert_int_equal(xa_arena_refill(a, cls, v, n), n);
  unsigned lowest = 0;
  for (unsigned i = 0; i < n; i++) {
    assert_true((char *)v[i] >= half);
    if (v[i] < v[lowest]) lowest = i;
  }
  void *keep = v[lowest];
  v[lowest] = v[n - 1];
  xa_arena_flush(v, n - 1, "test");
  assert_int_equal(c->thp, XA_CHUNK_THP_ASKED);
  assert_true(xa_arena_purge(a) > 0);
  check(a);
  assert_int_equal(c->thp, XA_CHUNK_THP_WITHDRAWN);
  assert_true(tu_vmflag(half, "nh"));
  v[0] = keep;
  xa_arena_flush(v, 1, "test");
  xa_arena_free_large(xa_arena_large_span(x));
  xa_arena_free_large(xa_arena_large_span(y));
  for (int i = 0; i < 8; i++) xa_arena_free_large(xa_arena_large_span(p[i]));
  xa_arena_purge(a);
  check(a);
  xa_arena_release_spares(a);
}

/* Fault injection in the OS layer: while mappings fail, every allocation
 * that needs one returns NULL with ENOMEM and nothing breaks; afterwards
 * the same requests succeed. */
static void test_os_failure_injection(void **state) {
  (void)state;
  /* chunks of their own (a region could serve one without a mapping) */
  struct xa_chunk_source none = {0}, was = xa_chunk_set_source(&none);
  struct xa_arena *a = new_arena();
  xa_os_fail_maps = 1000000;
  assert_null(xa_arena_alloc_large(a, 100000, xa_os_page));     /* needs a chunk */
  void *v[4];
  assert_int_equal(xa_arena_refill(a, 5, v, 4), 0);              /* needs a slab */
  errno = 0;
  assert_null(malloc(64 << 20));                                 /* huge mapping */
  assert_int_equal(errno, ENOMEM);
  assert_null(calloc(1, 8 << 20));
  assert_int_equal(errno, ENOMEM);
  check(a);
  xa_os_fail_maps = 0;
  void *p = xa_arena_alloc_large(a, 100000, xa_os_page);
  assert_non_null(p);
  assert_int_equal(xa_arena_refill(a, 5, v, 4), 4);
  void *h = malloc(64 << 20);
  assert_non_null(h);
  free(h);
  xa_arena_flush(v, 4, "test");
  xa_arena_free_large(xa_arena_large_span(p));
  check(a);
  xa_chunk_set_source(&was);
}

/* ---- chunks from the huge blocks' regions (chunk.h's source) ---------- */

static char *cs_at;               /* the child's view: a page given back */

static int child_write_page(void *arg) {
  (void)arg;
  cs_at[0] = 1;                   /* faults if the page stayed inaccessible */
  return 0;
}

static int child_reads_zero(void *arg) {
  (void)arg;
  for (size_t i = 0; i < XA_CHUNK_SIZE; i += 512)
    if (cs_at[i]) return 1;
  return 0;
}

static void run_child_ok(int (*fn)(void *)) {
  static tu_child ch;
  tu_run_child(&ch, fn, NULL, 1, 30);
  assert_int_equal(ch.sig, 0);
  assert_int_equal(ch.code, 0);
}

/* The chunk tests' setting: chunks from the regions, no purging behind
 * the test's back, and a live block that keeps a region (with room) from
 * going; regions_off puts it all back.  Under meshing chunks are mappings
 * of their own: the tests skip. */
static struct xa_chunk_source rg_was;
static int64_t rg_decay;
static void *rg_keep;
static cpu_set_t rg_cpus;

static void regions_on(void) {
  if (xa_mesh_on) skip();
  /* one CPU: the huge shard of the region kept is the one chunks come
   * from (another's is tried for dirty pages only) */
  assert_int_equal(sched_getaffinity(0, sizeof rg_cpus, &rg_cpus), 0);
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(sched_getcpu(), &one);
  assert_int_equal(sched_setaffinity(0, sizeof one, &one), 0);
  static const struct xa_chunk_source regions = {xa_huge_chunk_take, xa_huge_chunk_give, &xa_huge_region_bytes};
  rg_was = xa_chunk_set_source(&regions);
  rg_decay = xa_opt.dirty_decay_ms;
  xa_opt.dirty_decay_ms = -1;
  rg_keep = malloc(1 << 20);
  assert_non_null(rg_keep);
}

static void regions_off(void) {
  free(rg_keep);
  xa_opt.dirty_decay_ms = rg_decay;
  xa_chunk_set_source(&rg_was);
  sched_setaffinity(0, sizeof rg_cpus, &rg_cpus);
}

static size_t huge_cached(void) {
  size_t n, bytes, cached;
  xa_huge_stats(&n, &bytes, &cached);
  return cached;
}

/* A chunk reuses the pages of a freed huge block (dirty first), with its
 * header zeroed and its span area counted dirty; the regions' reserved
 * bytes leave it out.  Deleted with dirty spans, it goes back to the
 * region as a dirty extent, its guard pages usable again; deleted with
 * its free spans purged, it goes back purged whole: every byte, header
 * included, reads as zero, as a clean extent must. */
static void test_chunks_from_regions(void **state) {
  (void)state;
  regions_on();
  malloc_trim(0);                          /* no dirty extent but the next */
  char *big = malloc(32 << 20);
  assert_non_null(big);
  memset(big, 0x5a, 32 << 20);
  free(big);
  size_t reserved = xa_huge_reserved(), cached = huge_cached();
  struct xa_arena *a = new_arena();
  char *p = xa_arena_alloc_large(a, 100000, xa_os_page);
  assert_non_null(p);
  struct xa_chunk *c = xa_chunk_of(p);
  assert_true(c->give == xa_huge_chunk_give);
  assert_true(c->born_dirty);
  assert_true((char *)c >= big && (char *)c + XA_CHUNK_SIZE <= big + (32 << 20));
  assert_int_equal(reserved - xa_huge_reserved(), XA_CHUNK_SIZE);
  assert_int_equal(cached - huge_cached(), XA_CHUNK_SIZE);
  /* the header was 0x5a: zeroed, so every slot past the spans reads empty */
  const unsigned char *slot = (const unsigned char *)xa_chunk_span(c, xa_chunk_end_page - 2);
  for (size_t i = 0; i < sizeof(struct xa_span); i++) assert_int_equal(slot[i], 0);
  struct xa_arena_stats st;
  xa_arena_get_stats(a, &st);
  size_t used = (100000 + xa_os_page - 1) / xa_os_page;
  assert_int_equal(st.dirty_pages, xa_chunk_end_page - xa_chunk_first_page - used);
  check(a);
  memset(p, 1, 100000);
  xa_arena_free_large(xa_arena_large_span(p));
  check(a);
  /* dirty spans: back dirty */
  assert_int_equal(xa_arena_release_spares(a), XA_CHUNK_SIZE);
  assert_int_equal(xa_huge_reserved(), reserved);
  assert_int_equal(huge_cached(), cached);
  assert_true(xa_huge_is_cached(c));
  cs_at = second_guard(c);
  run_child_ok(child_write_page);
  cs_at = (char *)c + ((size_t)(xa_chunk_first_page - 1) << xa_os_page_shift);
  run_child_ok(child_write_page);
  /* the same pages again, their free spans purged: back clean and zero */
  p = xa_arena_alloc_large(a, 100000, xa_os_page);
  assert_non_null(p);
  c = xa_chunk_of(p);
  assert_true(c->born_dirty);
  memset(p, 1, 100000);
  xa_arena_free_large(xa_arena_large_span(p));
  xa_arena_purge(a);
  check(a);
  assert_int_equal(xa_arena_release_spares(a), XA_CHUNK_SIZE);
  assert_int_equal(huge_cached(), cached - XA_CHUNK_SIZE);
  cs_at = (char *)c;
  run_child_ok(child_reads_zero);
  regions_off();
}

/* ---- a fork while a purge runs with the lock dropped ------------------ */

static const char *fw_block;      /* the child's view: a page being purged */
static struct xa_arena *fw_arena; /* in this arena */
static struct xa_span *fw_slab;   /* and the slab it lies in (slab test) */

/* The span of chunk c holding page index page, walking the chunk's spans
 * (a merged free span's interior pages keep stale page info); 1 if a span
 * on the way is still PURGING. */
static int span_walk(struct xa_chunk *c, unsigned page, struct xa_span **at) {
  *at = NULL;
  for (unsigned p = xa_chunk_first_page; p < xa_chunk_end_page;) {
    struct xa_span *s = xa_chunk_span(c, p);
    if (s->state == XA_SPAN_PURGING) return 1;
    if (p <= page && page < p + s->npages) *at = s;
    p += s->npages;
  }
  return 0;
}

/* In the child: the span whose pages the parent was purging is free
 * again, nothing is left under purge, the arena is consistent. */
static int child_span_back(void) {
  struct xa_arena *a = fw_arena;
  struct xa_chunk *c = xa_chunk_of(fw_block);
  struct xa_span *s;
  int bad = 0;
  xa_lock(&a->lock);
  if (span_walk(c, (unsigned)((uintptr_t)(fw_block - (char *)c) >> xa_os_page_shift), &s)) bad = 1;
  else if (!s || s->state != XA_SPAN_FREE) bad = 2;
  else if (xa_arena_check_locked(a)) bad = 3;
  else if (a->inflight) bad = 4;
  xa_unlock(&a->lock);
  return bad;
}

/* In the child: the slab whose free pages the parent was purging is back
 * in its bin, where refills find it. */
static int child_slab_back(void) {
  struct xa_arena *a = fw_arena;
  int bad = 0;
  xa_lock(&a->lock);
  if (fw_slab->purging) bad = 1;
  else {
    bad = 2;
    for (struct xa_span *s = a->bins[fw_slab->cls].nonfull; s; s = s->next)
      if (s == fw_slab) bad = 0;
  }
  if (!bad && xa_arena_check_locked(a)) bad = 3;
  if (!bad && a->inflight) bad = 4;
  xa_unlock(&a->lock);
  return bad;
}

/* A dirty free span of 64 pages in a real arena (the fork handlers know
 * only those); its arena in fw_arena, a page in its middle in fw_block. */
static void dirty_span(void) {
  char *p = xa_arena_alloc_large(xa_arenas[0], 64 * xa_os_page, 0);
  assert_non_null(p);
  memset(p, 1, 64 * xa_os_page);
  fw_arena = xa_chunk_of(p)->arena;          /* may have moved to dirty pages elsewhere */
  xa_arena_free_large(xa_arena_large_span(p));
  fw_block = p + 32 * xa_os_page;
}

/* A fork while a free span's pages are under madvise.  From another
 * thread: the child, where no thread finishes that purge, gets the span
 * back as free pages (else it stays PURGING, out of use for the child's
 * life).  From the purging thread itself (as from a signal handler inside
 * madvise): that thread lives on in the child and finishes its purge
 * there, so the child's handlers leave it alone (finished twice, the
 * span's pages would count free twice).  The purger thread is kept out of
 * the way (decay off). */
static void fork_while_purging_span(enum fw_mode mode) {
  int64_t decay = xa_opt.dirty_decay_ms;
  xa_opt.dirty_decay_ms = -1;
  dirty_span();
  fw_arm(fw_block, child_span_back, mode);
  xa_arena_purge(fw_arena);
  fw_child_exit();
  fw_expect_child_ok();
  check(fw_arena);
  xa_opt.dirty_decay_ms = decay;
}

/* A fork while a chunk carved from a region is purged, and meanwhile
 * another chunk of the arena went spare: in the child the purged span
 * comes back, its chunk is wholly free beyond the spares and goes back to
 * its region, under the region's shard lock, which the fork found held.
 * The child must have that lock again by then (a hang: the parent kills
 * it after 30 s, and the test fails), and the chunk must be back. */
static char *fs_big[5];
static struct xa_chunk *fs_chunk;

static void fs_free_last(void) { xa_arena_free_large(xa_arena_large_span(fs_big[4])); }

static int child_chunk_back(void) { return xa_huge_is_cached(fs_chunk) ? 0 : 2; }

static void test_fork_gives_chunk_back(void **state) {
  (void)state;
  /* the last arena, which no other thread picks meanwhile (the helper,
   * the purger: a slab of theirs in a spare chunk would leave x a spare) */
  if (xa_narenas < 2) skip();
  regions_on();
  struct xa_arena *a = xa_arenas[xa_narenas - 1];
  unsigned used = xa_arena_used();
  xa_arena_limit(xa_narenas - 1);
  xa_arena_release_spares(a);
  size_t whole = (size_t)(xa_chunk_end_page - xa_chunk_first_page) << xa_os_page_shift;
  for (int i = 0; i < 5; i++) {            /* a chunk each */
    fs_big[i] = xa_arena_alloc_large(a, whole, xa_os_page);
    assert_non_null(fs_big[i]);
    memset(fs_big[i], 1, 4096);
  }
  struct xa_chunk *x = fs_chunk = xa_chunk_of(fs_big[3]);
  assert_non_null(x->give);
  for (int i = 0; i < 4; i++) xa_arena_free_large(xa_arena_large_span(fs_big[i]));
  struct xa_arena_stats st;
  xa_arena_get_stats(a, &st);
  assert_int_equal(st.nspare, XA_SPARE_CHUNKS);   /* x counted: not beyond the spares yet */
  fw_before = fs_free_last;                /* a fifth spare while x's purge runs */
  fw_arm(fs_big[3] + 64 * xa_os_page, child_chunk_back, FW_OTHER_THREAD);   /* a page in the middle */
  xa_arena_purge(a);
  fw_expect_child_ok();
  check(a);
  xa_arena_release_spares(a);
  xa_arena_limit(used);
  regions_off();
}

static void test_fork_while_purging_span(void **state) {
  (void)state;
  fork_while_purging_span(FW_OTHER_THREAD);
}

static void test_fork_from_purging_thread(void **state) {
  (void)state;
  fork_while_purging_span(FW_THIS_THREAD);
}

/* The same for a slab whose whole free pages are under madvise: the child
 * puts it back in its bin (else it stays out of every list). */
static void test_fork_while_purging_slab(void **state) {
  (void)state;
  int64_t decay = xa_opt.dirty_decay_ms;
  xa_opt.dirty_decay_ms = -1;
  unsigned cls = xa_sizeclass_of(64);
  const struct xa_class_info *ci = &xa_classes[cls];
  assert_true(ci->slab_pages >= 2);
  unsigned want = ci->nobjs * 3;
  void **v = calloc(want, sizeof *v);
  assert_non_null(v);
  assert_int_equal(xa_arena_refill(xa_arenas[0], cls, v, want), want);
  /* keep the first object of a slab all of whose objects this test holds */
  unsigned keep = want;
  for (unsigned i = 0; i < want && keep == want; i++) {
    struct xa_chunk *c = xa_chunk_of(v[i]);
    struct xa_span *s = xa_chunk_span(c, xa_chunk_info(c, v[i])->first);
    char *lo = xa_span_addr(s), *hi = lo + xa_span_bytes(s);
    unsigned mine = 0;
    for (unsigned j = 0; j < want; j++) mine += (char *)v[j] >= lo && (char *)v[j] < hi;
    if (mine == ci->nobjs && (char *)v[i] == lo) {
      keep = i;
      fw_slab = s;
      fw_arena = c->arena;
    }
  }
  assert_true(keep < want);
  void *kept = v[keep];
  v[keep] = v[want - 1];
  xa_arena_flush(v, want - 1, "test");
  /* its last page holds no live object: purged, and the fork comes then */
  fw_block = xa_span_addr(fw_slab) + xa_span_bytes(fw_slab) - xa_os_page;
  fw_arm(fw_block, child_slab_back, FW_OTHER_THREAD);
  xa_arena_purge_slabs(fw_arena, 0, 0);
  fw_expect_child_ok();
  check(fw_arena);
  xa_arena_flush(&kept, 1, "test");
  check(fw_arena);
  free(v);
  xa_opt.dirty_decay_ms = decay;
}

int main(void) {
  if (!xa_init()) return 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_chunk_geometry_and_map),
      cmocka_unit_test(test_page_map_mapping),
      cmocka_unit_test(test_refill_flush_roundtrip),
      cmocka_unit_test(test_empty_slabs_kept_then_purged),
      cmocka_unit_test(test_emptied_slabs_free_chunk_and_spares_decay),
      cmocka_unit_test(test_large_alignment_and_coalesce),
      cmocka_unit_test(test_dirty_pages_reused_first),
      cmocka_unit_test(test_dirty_span_found_behind_clean_ones),
      cmocka_unit_test(test_dirty_pages_borrowed_across_arenas),
      cmocka_unit_test(test_whole_chunks_in_several_spans),
      cmocka_unit_test(test_grow_over_split_free_pages),
      cmocka_unit_test(test_growth_purges_sparse_slabs),
      cmocka_unit_test(test_fresh_pages_near_peak_purge_dirty),
      cmocka_unit_test(test_large_resize_in_place),
      cmocka_unit_test(test_chunk_retention_and_purge),
    cmocka_unit_test(test_purge_returns_span_slots),
      cmocka_unit_test(test_flush_detects_misuse),
    cmocka_unit_test(test_flush_in_address_order),
      cmocka_unit_test(test_overflow_hits_guard),
      cmocka_unit_test(test_chunk_huge_pages),
      cmocka_unit_test(test_os_failure_injection),
      cmocka_unit_test(test_chunks_from_regions),
      cmocka_unit_test(test_fork_gives_chunk_back),
      cmocka_unit_test(test_fork_while_purging_span),
      cmocka_unit_test(test_fork_while_purging_slab),
      cmocka_unit_test(test_fork_from_purging_thread),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
