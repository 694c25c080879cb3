/* Unit tests of the thread cache (src/tcache.c) and the fast paths
 * (src/fastpath.h): boot cache misses, bins that start small and grow,
 * refill of half a bin, flush of half on overflow, idle-bin GC, teardown
 * at thread exit and reuse of the cache, arena-direct service after
 * teardown, the global budget with many threads, unmapping of exited
 * threads' caches. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>
#include <cmocka.h>

#include "arena.h"
#include "fastpath.h"
#include "init.h"
#include "options.h"
#include "tcache.h"
#include "xalloc.h"

#define CLS 3   /* 64-byte objects */

/* What the slow paths report for the purger (tcache.h). */
static unsigned news;

/* Every thread starts on the boot cache and comes back to it when its
 * cache is torn down, so threads use it at once.  Its gates are closed
 * for good: ~0 for pops (malloc's fast path moves a `top` there with a
 * plain add before it reads the gate, xa_tbin_pop_begin, so the tops
 * drift), NULL for pushes and 0 for the divisibility constants. */
static void test_boot_cache_always_misses(void **state) {
  (void)state;
  for (unsigned c = 0; c <= XA_NSMALL; c++) {
    const struct xa_tbin *b = c < XA_NSMALL ? &xa_tcache_boot.bins[c] : &xa_tcache_boot.none;
    assert_true(b->pop_gate == (void **)~(uintptr_t)0);
    assert_null(b->push_gate);
    assert_int_equal(b->divmagic, 0);      /* free's offset test fails first */
  }
}

/* Threads on the boot cache at once (as in thread-exit destructors, after
 * their caches are gone): every call misses there and goes to the arenas,
 * and no object is handed out twice.  With the pop gates at NULL a drifted
 * `top` passed them: reads below address 0, or a pointer handed twice. */
#define BOOT_THREADS 4
#define BOOT_ROUNDS 20000
static void *boot_body(void *arg) {
  uintptr_t id = (uintptr_t)arg, bad = 0;
  free(malloc(64));                          /* a cache of its own first */
  struct xa_tcache *own = xa_tc;
  xa_tc = &xa_tcache_boot;                   /* as after teardown: arenas direct */
  for (unsigned r = 0; r < BOOT_ROUNDS; r++) {
    uint64_t *v[8];
    for (unsigned i = 0; i < 8; i++) {
      v[i] = malloc(64);
      if (!v[i]) return (void *)1;
      v[i][0] = v[i][7] = (id << 48) | ((uint64_t)r << 8) | i;
    }
    sched_yield();
    for (unsigned i = 0; i < 8; i++) {
      uint64_t tag = (id << 48) | ((uint64_t)r << 8) | i;
      bad += v[i][0] != tag || v[i][7] != tag;
      free(v[i]);
    }
  }
  xa_tc = own;
  return (void *)bad;
}

static void test_boot_cache_shared_by_threads(void **state) {
  (void)state;
  pthread_t t[BOOT_THREADS];
  for (uintptr_t i = 0; i < BOOT_THREADS; i++) assert_int_equal(pthread_create(&t[i], NULL, boot_body, (void *)(i + 1)), 0);
  for (int i = 0; i < BOOT_THREADS; i++) {
    void *bad;
    pthread_join(t[i], &bad);
    assert_null(bad);
  }
}

static void test_refill_and_flush_halves(void **state) {
  (void)state;
  struct xa_tcache *tc = xa_tcache_get();
  assert_non_null(tc);
  assert_ptr_equal(tc, xa_tc);
  struct xa_tbin *b = &tc->bins[CLS];
  xa_tcache_flush_all();
  assert_int_equal(xa_tbin_count(b), 0);
  uint32_t cap = xa_tbin_cap(tc, CLS), full = xa_classes[CLS].tcache_cap;
  assert_int_equal(cap, full < 16 ? full : 16);  /* a new cache's bins start small */
  unsigned slow = tc->slow_start[CLS];          /* test_refill_slow_start */
  news = 0;
  void *p = xa_tcache_alloc_refill(tc, CLS, &news);
  assert_non_null(p);
  uint32_t want = (full / 2) >> slow;
  assert_int_equal(xa_tbin_count(b), want - 1);  /* a batch, one handed out */
  assert_int_equal(xa_tbin_cap(tc, CLS), want > cap ? full : cap);   /* grown if it had to */
  assert_true(news & XA_TC_TOOK);                /* for the purger to watch */
  void *more[1024];
  if (xa_tbin_cap(tc, CLS) < full) {
    /* a full small bin grows to its full size instead of flushing */
    uint32_t fill = cap - xa_tbin_count(b) + 1;
    assert_int_equal(xa_arena_refill(xa_arena_choose(), CLS, more, fill), fill);
    for (uint32_t i = 0; i + 1 < fill; i++) *b->top++ = more[i];
    assert_true(b->top == tc->end[CLS]);
    news = 0;
    assert_true(xa_tcache_free_flush(tc, CLS, more[fill - 1], &news));
    assert_int_equal(xa_tbin_cap(tc, CLS), full);
    assert_int_equal(xa_tbin_count(b), cap + 1);
    assert_false(news & XA_TC_RETURNED);
  }
  cap = full;
  /* fill the bin, then one more push flushes the older half */
  uint32_t need = cap - xa_tbin_count(b);
  assert_int_equal(xa_arena_refill(xa_arena_choose(), CLS, more, need), need);
  for (uint32_t i = 0; i < need; i++) *b->top++ = more[i];
  assert_true(b->top == tc->end[CLS]);
  news = 0;
  assert_true(xa_tcache_free_flush(tc, CLS, p, &news));
  assert_int_equal(xa_tbin_count(b), cap / 2 + 1);
  assert_true(news & XA_TC_RETURNED);            /* objects went to the arena */
  /* p is marked and cached now: a second free is refused, nothing cached */
  assert_true(xa_freed_marked(p));
  news = 0;
  assert_false(xa_tcache_free_flush(tc, CLS, p, &news));
  assert_int_equal(xa_tbin_count(b), cap / 2 + 1);
  assert_int_equal(news, 0);
  /* the same once p went back to its slab */
  xa_tcache_flush_all();
  assert_true(xa_arena_small_is_free(p));
  assert_false(xa_tcache_free_flush(tc, CLS, p, &news));
  assert_int_equal(xa_tbin_count(b), 0);
  /* a live object whose data equals the mark is cached normally */
  void *q = xa_malloc_fast(64);
  assert_int_equal(*(uintptr_t *)q, 0);          /* mark cleared on allocation */
  assert_false(xa_arena_small_is_free(q));
  xa_freed_mark(q);
  uint32_t held = xa_tbin_count(b);
  assert_true(xa_tcache_free_flush(tc, CLS, q, &news));
  assert_int_equal(xa_tbin_count(b), held + 1);
  assert_ptr_equal(b->top[-1], q);
  xa_tcache_flush_all();
  assert_int_equal(xa_tbin_count(b), 0);
}

static void test_fast_paths(void **state) {
  (void)state;
  void *p = xa_malloc_fast(64);
  assert_non_null(p);
  assert_int_equal(xa_small_class_of(p), CLS);
  assert_int_equal(xa_small_class_of((char *)p + 16), XA_CLS_NONE);   /* interior */
  int local;
  assert_int_equal(xa_small_class_of(&local), XA_CLS_NONE);            /* foreign */
  struct xa_tbin *b = &xa_tc->bins[CLS];
  uint32_t n = xa_tbin_count(b);
  xa_free_fast(p);
  assert_int_equal(xa_tbin_count(b), n + 1);
  assert_ptr_equal(b->top[-1], p);
  assert_ptr_equal(xa_malloc_fast(50), p);      /* LIFO reuse, same class */
  xa_free_fast(p);
}

/* Every small size is served by malloc's fast path alone once its bin
 * holds an object: the slow path, which claims the cache, is not entered
 * (a wrong class in the size table, or a gate left closed, would send the
 * call there, which serves it all the same), and the object is of the
 * size's class. */
static void test_fast_path_every_size(void **state) {
  (void)state;
  struct xa_tcache *tc = xa_tc;
  assert_true(tc != &xa_tcache_boot);
  for (size_t n = 0; n <= XA_SMALL_MAX; n++) {
    void *p = xa_malloc_fast(n);
    assert_non_null(p);
    xa_free_fast(p);
    uint32_t entered = tc->entered;
    assert_ptr_equal(xa_malloc_fast(n), p);
    assert_int_equal(tc->entered, entered);
    assert_int_equal(xa_small_class_of(p), xa_sizeclass_compute(n));
    xa_free_fast(p);
  }
}

static bool size_line_empty(size_t line) {
  for (size_t i = line * 64; i < line * 64 + 64; i++)
    if (xa_class_direct[i]) return false;
  return true;
}

/* malloc's size table (xa_sizeclass_direct) fills a line at a time as
 * sizes come: a size whose entry is still 0 goes through the dummy bin,
 * which gives nothing, to the slow path, even with an object in its
 * class's bin (so the fast path reads that table); then the entries of
 * its line hold their scaled classes, the lines around it stay 0, and
 * the next malloc of that size is a pop on the fast path. */
static void test_size_table_fills_as_sizes_come(void **state) {
  (void)state;
  struct xa_tcache *tc = xa_tc;
  assert_true(tc != &xa_tcache_boot);
  size_t line = 0;
  for (size_t l = XA_SMALL_MAX / 64 - 2; l > 0 && !line; l--) {
    size_t probe = xa_classes[xa_sizeclass_of(l * 64 + 13)].size / 64;   /* the line the bin's object comes from */
    if (size_line_empty(l - 1) && size_line_empty(l) && size_line_empty(l + 1) && (probe + 1 < l || probe > l + 1))
      line = l;
  }
  assert_true(line > 0);
  size_t n = line * 64 + 13, c = xa_sizeclass_of(n);
  void *p = xa_malloc_fast(xa_classes[c].size);       /* one object in the bin */
  xa_free_fast(p);
  assert_true(xa_tbin_count(&tc->bins[c]) > 0);
  uint32_t entered = tc->entered;
  void **none_top = tc->none.top;
  assert_ptr_equal(xa_malloc_fast(n), p);
  assert_true(tc->entered != entered);
  assert_ptr_equal(tc->none.top, none_top);
  assert_ptr_equal(tc->none.pop_gate, (void **)~(uintptr_t)0);
  assert_int_equal(xa_small_class_of(p), c);
  for (size_t i = line * 64; i < line * 64 + 64; i++) assert_int_equal(xa_class_direct[i], xa_sizeclass_scaled(i));
  assert_true(size_line_empty(line - 1));
  assert_true(size_line_empty(line + 1));
  xa_free_fast(p);
  entered = tc->entered;
  assert_ptr_equal(xa_malloc_fast(n), p);
  assert_int_equal(tc->entered, entered);
  xa_free_fast(p);
}

/* A sized free (sized delete, free_sized) of every small size with its
 * own size is a push on the fast path alone; a size of the class below
 * or above, or 0, and any size for a page that holds no slab (the dummy
 * bin) leave it to the checking path with nothing done. */
static void test_sized_free_fast_every_size(void **state) {
  (void)state;
  struct xa_tcache *tc = xa_tc;
  assert_true(tc != &xa_tcache_boot);
  for (size_t n = 1; n <= XA_SMALL_MAX; n++) {
    void *p = xa_malloc_fast(n);
    assert_non_null(p);
    size_t c = xa_small_class_of(p), size = xa_classes[c].size, below = c ? xa_classes[c - 1].size : 0;
    uint32_t entered = tc->entered, count = xa_tbin_count(&tc->bins[c]);
    assert_false(xa_free_sized_fast(p, size + 1));
    assert_false(xa_free_sized_fast(p, below));
    assert_false(xa_free_sized_fast(p, n + ((size_t)1 << 32)));   /* no truncation */
    assert_int_equal(xa_tbin_count(&tc->bins[c]), count);
    assert_true(xa_free_sized_fast(p, n));
    assert_int_equal(tc->entered, entered);
    assert_int_equal(xa_tbin_count(&tc->bins[c]), count + 1);
  }
  assert_int_equal(tc->none.size_max, 0);
  assert_int_equal(tc->none.size_min, 0);
  static char not_ours[64] __attribute__((aligned(64)));
  assert_false(xa_free_sized_fast(not_ours, 64));
}

/* malloc's fast path moves `top` before it reads the gate and moves it
 * back when it misses (xa_tbin_pop_begin): a miss at the end of the
 * counting period, or at a closed pop gate, leaves the bin as it was, and
 * the slow path then hands out the top object, once. */
static void test_fast_path_misses_undo(void **state) {
  (void)state;
  void *v[4];
  for (int i = 0; i < 4; i++) v[i] = xa_malloc_fast(64);
  for (int i = 0; i < 4; i++) xa_free_fast(v[i]);
  struct xa_tbin *b = &xa_tc->bins[CLS];
  for (int miss = 0; miss < 2; miss++) {
    uint32_t n = xa_tbin_count(b);
    assert_true(n >= 2);
    void *want = b->top[-1];
    if (miss == 0) b->countdown = 1;                   /* the period ends with this call */
    else b->pop_gate = (void **)~(uintptr_t)0;         /* as a reclaimer closes it */
    void *p = xa_malloc_fast(64);
    if (miss == 1) b->pop_gate = xa_tbin_stack(b);
    assert_ptr_equal(p, want);
    assert_int_equal(xa_tbin_count(b), n - 1);
    if (miss == 0) assert_true(b->countdown > 1);      /* the next period started */
    xa_free_fast(p);
  }
}

/* free() finds p's class and slab start in the page map; anything not a
 * slab of ours reads scaled class 0 there (the dummy bin, which takes
 * nothing), and a free beyond the map's reach takes the slow path, which
 * caches the object all the same. */
static void test_free_through_page_map(void **state) {
  (void)state;
  if (!xa_pagemap_units) skip();   /* refused here (address-space limit) */
  void *p = xa_malloc_fast(64);
  uintptr_t u = xa_pagemap_unit(p);
  assert_true(u < xa_pagemap_units);
  assert_int_equal(xa_pagemap[u].cls_scaled, xa_class_scale(CLS));
  assert_int_equal(xa_pagemap[u].cls, CLS);
  struct xa_chunk *c = xa_chunk_of(p);
  assert_ptr_equal(c->info, &xa_pagemap[(uintptr_t)c >> XA_UNIT_SHIFT]);
  assert_int_equal(xa_pagemap[xa_pagemap_unit(c)].cls_scaled, 0);   /* header */
  static char in_data[64] __attribute__((aligned(64)));
  int local;
  struct xa_tbin *b = &xa_tc->bins[CLS];
  uint32_t n = xa_tbin_count(b);
  assert_int_equal(xa_pagemap[xa_pagemap_unit(in_data)].cls_scaled, 0);
  assert_int_equal(xa_pagemap[xa_pagemap_unit(&local)].cls_scaled, 0);
  assert_false(xa_free_push(in_data, &xa_pagemap[xa_pagemap_unit(in_data)]));
  assert_false(xa_free_push(&local, &xa_pagemap[xa_pagemap_unit(&local)]));
  assert_int_equal(xa_tbin_count(b), n);
  /* a map that does not reach p: the slow path caches it */
  size_t units = xa_pagemap_units;
  xa_pagemap_units = 0;
  xa_free_fast(p);
  xa_pagemap_units = units;
  assert_int_equal(xa_tbin_count(b), n + 1);
  assert_ptr_equal(b->top[-1], p);
  assert_ptr_equal(xa_malloc_fast(64), p);
  xa_free_fast(p);
  assert_int_equal(xa_tbin_count(b), n + 1);
}

/* Empty every bin, then refill bin CLS; returns its object count. */
static uint32_t fill_one_bin(struct xa_tcache *tc) {
  xa_tcache_flush_all();
  void *p = xa_malloc_fast(64);                  /* refill: bin has objects */
  xa_free_fast(p);
  uint32_t n = xa_tbin_count(&tc->bins[CLS]);
  assert_true(n > 2);
  return n;
}

/* A bin that does not miss for a GC period gives back half its objects. */
static void test_idle_gc(void **state) {
  (void)state;
  struct xa_tcache *tc = xa_tcache_get();
  uint32_t before = fill_one_bin(tc);
  /* slow-path events on another class drive the GC clock */
  for (int i = 0; i < 600; i++) {
    void *q = xa_tcache_alloc_refill(tc, 10, &news);
    xa_tcache_free_flush(tc, 10, q, &news);
  }
  assert_true(xa_tbin_count(&tc->bins[CLS]) <= before / 2 + 1);
}

/* Frees that only push onto a bin (here free_sized, which takes the slow
 * entry) are not slow-path events: they must not run the GC, which would
 * sweep quiet bins every 256 such frees. */
static void test_sized_frees_do_not_drive_gc(void **state) {
  (void)state;
  struct xa_tcache *tc = xa_tcache_get();
  uint32_t before = fill_one_bin(tc);
  size_t n = xa_classes[10].size;
  void *q = malloc(n);                           /* class 10's bin refilled once */
  for (int i = 0; i < 2000; i++) {
    free_sized(q, n);
    q = malloc(n);
  }
  free_sized(q, n);
  assert_int_equal(xa_tbin_count(&tc->bins[CLS]), before);
}

/* Slow start: in a new thread's cache a class's first refill takes about
 * 1 KiB of objects (at least one), each further miss doubles the batch up
 * to half the bin, and a GC sweep that finds the bin quiet halves it
 * again. */
static void *slow_start_body(void *arg) {
  unsigned *got = arg;
  void *p = malloc(24);                          /* creates this thread's cache */
  free(p);
  struct xa_tcache *tc = xa_tcache_get();
  enum { C = 20 };
  struct xa_tbin *b = &tc->bins[C];
  for (int k = 0; k < 5; k++) {
    void *q = xa_tcache_alloc_refill(tc, C, &news);    /* the bin is empty: a refill */
    got[k] = xa_tbin_count(b) + 1;
    xa_arena_flush(&q, 1, "free");
    xa_tcache_flush_all();                       /* empty again */
  }
  tc->missed[C] = 0;                             /* quiet through a GC sweep */
  void *r = xa_tcache_alloc_refill(tc, 10, &news);
  xa_tcache_free_flush(tc, 10, r, &news);
  for (int i = 0; i < 300; i++) {                /* drive the GC clock */
    void *q = xa_tcache_alloc_refill(tc, 11, &news);
    xa_tcache_free_flush(tc, 11, q, &news);
    if (i == 0) {                               /* C holds objects: sweepable */
      void *s = xa_tcache_alloc_refill(tc, C, &news);
      xa_tcache_free_flush(tc, C, s, &news);
      tc->missed[C] = 0;
    }
  }
  xa_tcache_flush_all();
  void *q = xa_tcache_alloc_refill(tc, C, &news);
  got[5] = xa_tbin_count(b) + 1;
  xa_arena_flush(&q, 1, "free");
  return NULL;
}

static void test_refill_slow_start(void **state) {
  (void)state;
  unsigned got[6];
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, slow_start_body, got), 0);
  pthread_join(t, NULL);
  unsigned half = xa_classes[20].tcache_cap / 2, size = xa_classes[20].size;
  assert_true(half >= 16);
  unsigned start = 0;                            /* the first batch: ~1 KiB */
  while ((half >> start) > 1 && (half >> start) * size > 1024) start++;
  assert_true(start >= 4);                       /* 1280-byte objects: 1 first */
  assert_int_equal(got[0], half >> start);
  assert_int_equal(got[1], half >> (start - 1));
  assert_int_equal(got[2], half >> (start - 2));
  assert_int_equal(got[3], half >> (start - 3));
  assert_int_equal(got[4], half >> (start - 4));
  assert_int_equal(got[5], half >> (start - 3));  /* one sweep: one step back */
}

static void *thread_body(void *arg) {
  void **out = arg;
  void *p = malloc(64);
  out[0] = xa_tc;
  free(p);
  return NULL;
}

static pthread_key_t late_key;
static void late_destructor(void *v) {
  /* runs after xalloc's own destructor on a later round: arena-direct */
  void *p = malloc(100);
  memset(p, 1, 100);
  free(p);
  free(v);
}
static void *thread_late(void *arg) {
  (void)arg;
  pthread_setspecific(late_key, malloc(10));
  free(malloc(10));
  return NULL;
}

static void test_thread_exit_recycles(void **state) {
  (void)state;
  void *tc1[1], *tc2[1];
  pthread_t t;
  pthread_create(&t, NULL, thread_body, tc1);
  pthread_join(t, NULL);
  pthread_create(&t, NULL, thread_body, tc2);
  pthread_join(t, NULL);
  assert_ptr_equal(tc1[0], tc2[0]);            /* the exited thread's cache is reused */
  assert_ptr_not_equal(tc1[0], &xa_tcache_boot);
  pthread_key_create(&late_key, late_destructor);
  for (int i = 0; i < 50; i++) {
    pthread_create(&t, NULL, thread_late, NULL);
    pthread_join(t, NULL);
  }
}

/* A thread that caches objects of class CLS, then waits while the main
 * thread reclaims: outside any call, inside a slow path (holding the
 * claim), in the middle of malloc's pop (it moved `top` down and found
 * the gate open before the gates closed, and takes its object after the
 * reclaim), in a pop that moved `top` before the reclaim and reads the
 * gate after it (it finds it closed and moves `top` back), or in the
 * middle of free's push (it read `top` and passed the gate before the
 * gates closed, and finishes after the reclaim); then frees and allocates
 * once more. */
enum { R_QUIET, R_SLOW, R_POP, R_POP_UNDONE, R_PUSH, R_CASES };
struct reclaim_case {
  pthread_barrier_t bar;
  struct xa_tcache *tc;
  int kind;
  void *got;             /* the object the pop under way took */
  void *popped_slot;     /* the object under the pop's old `top` */
  bool undone_open;      /* R_POP_UNDONE: the gate read after the reclaim
                            found it open */
  void *pushed;          /* the object the push under way cached */
  uint32_t settled;      /* the bin's count after the owner's next slow path
                            (a free, less the object it freed) */
  void *under_top;       /* then the object under the freed one */
  bool got_free;         /* got was free in its slab after the reclaim */
  void *after;           /* the allocation after the reclaim */
};

static void *reclaim_body(void *arg) {
  struct reclaim_case *rc = arg;
  void *v[16];
  for (int i = 0; i < 16; i++) v[i] = malloc(64);
  void *fresh = malloc(64), *keep = malloc(64);
  for (int i = 0; i < 16; i++) free(v[i]);
  struct xa_tcache *tc = rc->tc = xa_tc;
  struct xa_tbin *b = &tc->bins[CLS];
  void **top = b->top;                         /* the operation under way */
  if (rc->kind == R_SLOW) xa_tc_claim(tc);    /* as if inside a call */
  bool open = true;
  if (rc->kind == R_POP || rc->kind == R_POP_UNDONE) {
    top = xa_tbin_pop_begin(b);
    rc->popped_slot = top[-1];
    if (rc->kind == R_POP) open = (uintptr_t)top > (uintptr_t)b->pop_gate;
  }
  pthread_barrier_wait(&rc->bar);             /* 1: cached */
  pthread_barrier_wait(&rc->bar);             /* 2: main reclaimed */
  if (rc->kind == R_POP_UNDONE) open = (uintptr_t)top > (uintptr_t)b->pop_gate;
  if (rc->kind == R_POP && open) {             /* finish the pop */
    rc->got = top[-1];
    *(uintptr_t *)rc->got = 0;
    rc->got_free = xa_arena_small_is_free(rc->got);
  }
  if (rc->kind == R_POP_UNDONE) {
    rc->undone_open = open;                    /* the gate must be closed */
    if (!open) xa_tbin_top_step(b, 1);
  }
  if (rc->kind == R_PUSH) {             /* finish the push */
    xa_freed_mark(keep);
    *top = keep;
    b->top = top + 1;
    rc->pushed = keep;
    keep = NULL;
  }
  /* a slow path (gates closed): settles; inside the claim, if held, so
   * that no purger pass takes the thread for quiet meanwhile */
  free(fresh);
  rc->settled = xa_tbin_count(b) - 1;
  rc->under_top = rc->settled ? b->top[-2] : NULL;
  if (rc->kind == R_SLOW) xa_tc_release(tc);
  rc->after = malloc(64);
  pthread_barrier_wait(&rc->bar);             /* 3: allocated */
  pthread_barrier_wait(&rc->bar);             /* 4: main looked (exit resets the bins) */
  free(rc->after);
  free(rc->got);
  free(keep);
  return NULL;
}

static bool gates_closed(const struct xa_tcache *tc) {
  for (unsigned c = 0; c < XA_NSMALL; c++)
    if (tc->bins[c].pop_gate != (void **)~(uintptr_t)0 || tc->bins[c].push_gate != NULL) return false;
  return true;
}

static bool gates_open(const struct xa_tcache *tc) {
  for (unsigned c = 0; c < XA_NSMALL; c++)
    if (tc->bins[c].pop_gate != xa_tbin_stack(&tc->bins[c]) || tc->bins[c].push_gate != tc->end[c]) return false;
  return true;
}

/* A reclaim pass takes a thread for quiet when xa_tcache_activity did
 * not move since the last pass: a pop, a push and a slow path each move
 * it (a pop lowers a top and a countdown, and a push raises the top
 * again, so that a malloc and a free together move it too). */
static void test_activity_moves_with_every_call(void **state) {
  (void)state;
  struct xa_tcache *tc = xa_tcache_get();
  assert_non_null(tc);
  void *v[4];
  for (int i = 0; i < 4; i++) v[i] = malloc(64);
  for (int i = 0; i < 4; i++) free(v[i]);     /* the bin holds some */
  uint32_t a0 = xa_tcache_activity(tc);
  void *p = malloc(64);                        /* a pop */
  uint32_t a1 = xa_tcache_activity(tc);
  free(p);                                     /* a push */
  uint32_t a2 = xa_tcache_activity(tc);
  xa_tcache_flush_all();                       /* a slow path */
  uint32_t a3 = xa_tcache_activity(tc);
  assert_true(a0 != a1);
  assert_true(a1 != a2);
  assert_true(a2 != a3);
  assert_true(a0 != a2);                       /* the tops are back where they were */
}

/* Reclaim takes an idle owner's objects and leaves the gates closed (a
 * push that read `top` before the flush must not find them open); the
 * owner's next call reopens them and moves what is left down.  An owner
 * inside a slow path is left alone.  A pop under way keeps its object
 * (the reclaim returns none it hands out: got_free), or, if it reads the
 * gate after the reclaim, finds it closed and leaves the object in the
 * bin.  A push under way during the reclaim keeps the object it
 * pushes. */
static void test_reclaim(void **state) {
  (void)state;
  if (!xa_tcache_reclaim_on()) skip();       /* no membarrier here */
  for (int kind = 0; kind < R_CASES; kind++) {
    struct reclaim_case rc = {.kind = kind};
    pthread_barrier_init(&rc.bar, NULL, 2);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, reclaim_body, &rc), 0);
    pthread_barrier_wait(&rc.bar);
    uint32_t held = xa_tbin_count(&rc.tc->bins[CLS]);   /* below the moved top, for a pop */
    assert_true(held >= 16);
    size_t got = xa_tcache_reclaim(true);
    uint32_t taken = rc.tc->taken[CLS];
    bool closed = gates_closed(rc.tc);
    pthread_barrier_wait(&rc.bar);
    pthread_barrier_wait(&rc.bar);
    bool reopened = gates_open(rc.tc);
    uint32_t left_taken = rc.tc->taken[CLS];
    pthread_barrier_wait(&rc.bar);
    pthread_join(t, NULL);
    pthread_barrier_destroy(&rc.bar);
    if (kind == R_SLOW) {
      assert_int_equal(got, 0);                  /* backed off */
      assert_int_equal(taken, 0);
      assert_int_equal(rc.settled, held);
    } else if (kind == R_POP || kind == R_POP_UNDONE) {
      assert_true(got <= held);                  /* (or the purger's pass took them) */
      assert_int_equal(taken, held);             /* all below the moved top: not the popped slot */
      assert_int_equal(rc.settled, kind == R_POP ? 0 : 1);
      assert_false(rc.got_free);                 /* not returned under the pop */
      assert_false(rc.undone_open);              /* the late gate read found it closed */
      if (kind == R_POP) assert_ptr_equal(rc.got, rc.popped_slot);
      else assert_ptr_equal(rc.under_top, rc.popped_slot);   /* left in the bin, settled to the bottom */
    } else {
      assert_true(got <= held);                  /* (or the purger's pass took them) */
      assert_int_equal(taken, held);
      assert_int_equal(rc.settled, kind == R_PUSH ? 1 : 0);
    }
    if (kind == R_POP) assert_non_null(rc.got);
    assert_int_equal(left_taken, 0);             /* settled */
    assert_true(closed);                          /* every way: only the owner reopens */
    assert_true(reopened);
    assert_non_null(rc.after);
    if (kind == R_PUSH) assert_ptr_equal(rc.under_top, rc.pushed);   /* kept, on top */
  }
}

/* An idle thread's cache gives its full-size stacks back: a thread grows
 * bin CLS, then waits outside any call while the main thread's reclaim
 * passes find it quiet; the stack pages leave memory but the one holding
 * the slot at the bin's top (the thread may be in the middle of a push
 * there).  At its next call the thread moves its bins to the
 * small area; its next calls grow the bin again.  Caches of
 * exited threads kept for reuse go back once none was taken for the
 * given idle time, or at once. */
struct idle_case {
  pthread_barrier_t bar;
  struct xa_tcache *tc;
  void **full;           /* bin CLS's full-size stack, grown */
  uint32_t cap;          /* its capacity then */
  void **pending;        /* the slot a push under way stored (not yet `top`) */
  bool kept_push;        /* that push's object was cached after all */
  bool shrunk;           /* its next call found shrink set, and cleared it */
  bool grown_again;
};

static void churn(unsigned rounds) {
  void *v[600];
  for (unsigned r = 0; r < rounds; r++) {
    for (int i = 0; i < 600; i++) v[i] = malloc(64);
    for (int i = 0; i < 600; i++) free(v[i]);
  }
}

static void *idle_body(void *arg) {
  struct idle_case *ic = arg;
  churn(8);
  void *pend = malloc(64);                    /* (a free slot above `top`) */
  ic->tc = xa_tc;
  struct xa_tbin *b = &ic->tc->bins[CLS];
  ic->full = xa_tbin_stack(b);
  ic->cap = xa_tbin_cap(ic->tc, CLS);
  void **top = b->top;                        /* a push of pend under way: */
  xa_freed_mark(pend);
  *top = pend;                                /* its slot stored, `top` not yet */
  ic->pending = top;
  pthread_barrier_wait(&ic->bar);             /* 1: grown, quiet from now */
  pthread_barrier_wait(&ic->bar);             /* 2: main reclaimed */
  b->top = top + 1;                           /* the push ends */
  bool asked = ic->tc->shrink;
  void *x = malloc(64);                       /* reopens: settles, moves the bins */
  ic->shrunk = asked && !ic->tc->shrink;
  ic->kept_push = x == pend;
  free(x);
  churn(8);
  ic->grown_again = ic->tc->grown;
  return NULL;
}

static void *exit_body(void *arg) {
  (void)arg;
  free(malloc(64));
  return NULL;
}

static void test_idle_cache_gives_stacks_back(void **state) {
  (void)state;
  if (!xa_tcache_reclaim_on()) skip();       /* no membarrier here */
  struct idle_case ic;
  pthread_barrier_init(&ic.bar, NULL, 2);
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, idle_body, &ic), 0);
  pthread_barrier_wait(&ic.bar);
  assert_true(ic.tc->grown);
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  /* a whole page of that stack away from the slot a reclaim keeps */
  void **top = ic.tc->bins[CLS].top;
  char *p = NULL;
  for (char *q = (char *)(((uintptr_t)ic.full + page - 1) & ~(uintptr_t)(page - 1));
       !p && q + page <= (char *)(ic.full + ic.cap); q += page)
    if (q + page <= (char *)top || q >= (char *)(top + 1)) p = q;
  assert_non_null(p);
  unsigned char res = 0;
  assert_int_equal(mincore(p, page, &res), 0);
  assert_true(res & 1);                       /* written by the churn */
  xa_tcache_reclaim(false);                   /* notes what the thread did */
  xa_tcache_reclaim(false);                   /* finds it quiet: idle */
  /* (or the purger's pass did, and may be purging still) */
  while (__atomic_load_n(&ic.tc->stacks_purging, __ATOMIC_ACQUIRE)) sched_yield();
  assert_true(ic.tc->idle);
  assert_true(ic.tc->shrink);                 /* for the owner to finish */
  assert_false(ic.tc->stacks_purging);
  assert_int_equal(mincore(p, page, &res), 0);
  assert_false(res & 1);
  char *kept = (char *)((uintptr_t)ic.pending & ~(uintptr_t)(page - 1));
  assert_int_equal(mincore(kept, page, &res), 0);
  assert_true(res & 1);                       /* the push's slot stays */
  pthread_barrier_wait(&ic.bar);
  pthread_join(t, NULL);
  pthread_barrier_destroy(&ic.bar);
  assert_true(ic.shrunk);
  assert_true(ic.kept_push);
  assert_true(ic.grown_again);
  /* An exited thread's cache is kept for reuse until it idles out.  The
   * purger's passes trim too: with dirty_decay_ms -1 they leave it to
   * the test. */
  int64_t decay = xa_opt.dirty_decay_ms;
  xa_opt.dirty_decay_ms = -1;
  xa_tcache_trim_recycled(0, 0);              /* none kept, no time noted */
  assert_false(xa_tcache_recycled_any());
  assert_int_equal(pthread_create(&t, NULL, exit_body, NULL), 0);
  pthread_join(t, NULL);
  assert_true(xa_tcache_recycled_any());
  size_t mapped = xa_tcache_mapped();
  uint64_t now = xa_os_now();
  assert_int_equal(xa_tcache_trim_recycled(now, 500), 0);         /* first sight */
  assert_int_equal(xa_tcache_trim_recycled(now + 499, 500), 0);
  size_t gone = xa_tcache_trim_recycled(now + 500, 500);
  assert_true(gone > 0);
  assert_int_equal(xa_tcache_mapped(), mapped - gone);
  assert_false(xa_tcache_recycled_any());
  /* a cache taken meanwhile starts the time anew */
  assert_int_equal(pthread_create(&t, NULL, exit_body, NULL), 0);
  pthread_join(t, NULL);
  now = xa_os_now();
  assert_int_equal(xa_tcache_trim_recycled(now, 500), 0);         /* first sight */
  assert_int_equal(pthread_create(&t, NULL, exit_body, NULL), 0);  /* takes it, gives it back */
  pthread_join(t, NULL);
  assert_int_equal(xa_tcache_trim_recycled(now + 1000, 500), 0);  /* sees the take */
  assert_true(xa_tcache_recycled_any());
  assert_true(xa_tcache_trim_recycled(0, 0) > 0);                 /* at once */
  assert_false(xa_tcache_recycled_any());
  xa_opt.dirty_decay_ms = decay;
}

/* While a reclaimer purges a cache's full-size stacks, its bins cannot
 * grow: a refill then takes no more than the small area holds (more would
 * run into the next bin's stack). */
static void *purging_body(void *arg) {
  bool *ok = arg;
  free(malloc(64));
  struct xa_tcache *tc = xa_tc;
  __atomic_store_n(&tc->stacks_purging, 1, __ATOMIC_RELEASE);   /* as a reclaimer does */
  void *v[600];
  *ok = true;
  for (unsigned r = 0; r < 4; r++) {
    for (int i = 0; i < 600; i++) {
      v[i] = malloc(64);
      *ok &= v[i] != NULL && xa_tbin_count(&tc->bins[CLS]) <= xa_tbin_cap(tc, CLS);
    }
    for (int i = 0; i < 600; i++) free(v[i]);
  }
  *ok &= !tc->grown;
  __atomic_store_n(&tc->stacks_purging, 0, __ATOMIC_RELEASE);
  churn(2);
  *ok &= tc->grown;                  /* and grows once the purge is over */
  return NULL;
}

static void test_no_growth_while_stacks_purge(void **state) {
  (void)state;
  bool ok = false;
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, purging_body, &ok), 0);
  pthread_join(t, NULL);
  assert_true(ok);
}

/* Many threads at once: each bin's capacity and refills stay within its
 * share of tcache_total_bytes (32 MiB by default) split over the live
 * caches; and once they exit, all but a few of their caches are unmapped
 * (memory does not stay at the most threads ever alive). */
enum { MANY = 300 };
static pthread_barrier_t many_bar;
static uint32_t many_cap[MANY];

static void *many_body(void *arg) {
  uint32_t *cap = arg;
  free(malloc(64));                              /* this thread's cache */
  pthread_barrier_wait(&many_bar);               /* all caches live */
  void *v[400];
  for (int r = 0; r < 4; r++) {                  /* misses and full bins: growth */
    for (int i = 0; i < 400; i++) v[i] = malloc(64);
    for (int i = 0; i < 400; i++) free(v[i]);
  }
  *cap = xa_tbin_cap(xa_tc, CLS);
  pthread_barrier_wait(&many_bar);               /* main reads the mappings */
  pthread_barrier_wait(&many_bar);
  return NULL;
}

static void test_many_threads_budget(void **state) {
  (void)state;
  size_t m0 = xa_tcache_mapped();
  pthread_t t[MANY];
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 64 * 1024);
  pthread_barrier_init(&many_bar, NULL, MANY + 1);
  for (int i = 0; i < MANY; i++) assert_int_equal(pthread_create(&t[i], &attr, many_body, &many_cap[i]), 0);
  pthread_barrier_wait(&many_bar);
  pthread_barrier_wait(&many_bar);
  size_t m_alive = xa_tcache_mapped();
  pthread_barrier_wait(&many_bar);
  for (int i = 0; i < MANY; i++) pthread_join(t[i], NULL);
  pthread_barrier_destroy(&many_bar);
  pthread_attr_destroy(&attr);
  size_t m_after = xa_tcache_mapped();
  /* at least MANY live caches: a bin's share is at most this */
  uint64_t share = (32u << 20) / MANY / 16 / 64;
  assert_true(share < xa_classes[CLS].tcache_cap);  /* the budget binds here */
  for (int i = 0; i < MANY; i++) {
    assert_true(many_cap[i] <= share);
    assert_true(many_cap[i] >= 16);              /* it grew past the small area */
  }
  /* every thread had a cache of its own while alive; 16 are kept after */
  size_t per = (m_alive - m0) / MANY;
  assert_true(per > 0);
  assert_true(m_after <= m0 + 17 * per);
  assert_true(m_after < m_alive / 4);
}

/* Boost: a bin of a class whose slabs hold few objects that runs empty
 * and then overflows within one GC period doubles its capacity instead of
 * flushing, twice at most; each GC period in which it does not run empty
 * takes one doubling back.  Small classes never boost. */
static unsigned boost_class(void) {
  for (unsigned c = 0; c < XA_NSMALL; c++)
    if (xa_classes[c].nobjs <= 8 && xa_classes[c].tcache_cap * 4 <= 1024) return c;
  return XA_NSMALL;
}

/* Bin c of tc filled to its capacity with objects from the arena. */
static void fill_bin(struct xa_tcache *tc, unsigned c) {
  static void *more[1024];
  struct xa_tbin *b = &tc->bins[c];
  uint32_t need = (uint32_t)(tc->end[c] - b->top);
  assert_int_equal(xa_arena_refill(xa_arena_choose(), c, more, need), need);
  for (uint32_t i = 0; i < need; i++) *b->top++ = more[i];
}

static void *boost_body(void *arg) {
  uint32_t *caps = arg;                          /* [0..5] overflows, [6..7] after GCs */
  void *p0 = malloc(24);                         /* creates this thread's cache */
  free(p0);
  struct xa_tcache *tc = xa_tcache_get();
  unsigned c = boost_class();
  struct xa_tbin *b = &tc->bins[c];
  void *p = xa_tcache_alloc_refill(tc, c, &news);   /* ran empty: a refill */
  for (int k = 0; k < 6; k++) {
    fill_bin(tc, c);
    news = 0;
    assert_true(xa_tcache_free_flush(tc, c, p, &news));
    caps[k] = xa_tbin_cap(tc, c);
    if (news & XA_TC_RETURNED) caps[k] |= 1u << 31;   /* flushed: no more room */
    p = *--b->top;                               /* as malloc would */
  }
  xa_arena_flush(&p, 1, "free");
  for (int g = 0; g < 2; g++) {                  /* quiet through a GC sweep each */
    tc->missed[c] = 0;
    for (int i = 0; i < 300; i++) {              /* drive the GC clock */
      void *q = xa_tcache_alloc_refill(tc, 11, &news);
      xa_tcache_free_flush(tc, 11, q, &news);
      if (i == 0) tc->missed[c] = 0;
    }
    caps[6 + g] = xa_tbin_cap(tc, c);
  }
  xa_tcache_flush_all();
  return NULL;
}

static void test_boost(void **state) {
  (void)state;
  unsigned c = boost_class();
  assert_true(c < XA_NSMALL);
  assert_true(xa_classes[c].size >= 1024);
  uint32_t base = xa_classes[c].tcache_cap, max = xa_classes[c].tcache_max;
  assert_int_equal(max, base * 4);
  assert_int_equal(xa_classes[CLS].tcache_max, xa_classes[CLS].tcache_cap);   /* 64 B: never */
  uint32_t caps[8];
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, boost_body, caps), 0);
  pthread_join(t, NULL);
  /* the bin reaches base (from its small area), then 2x and 4x, then flushes */
  int k = 0;
  while (k < 6 && caps[k] < base) k++;
  assert_true(k < 4);
  if (caps[k] == base) k++;                      /* grew to base without flushing */
  assert_int_equal(caps[k], base * 2);
  assert_int_equal(caps[k + 1], max);
  assert_int_equal(caps[k + 2], max | 1u << 31);
  assert_int_equal(caps[6], base * 2);           /* one quiet period: one step back */
  assert_int_equal(caps[7], base);
}

int main(void) {
  if (!xa_init()) return 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_boot_cache_always_misses),
      cmocka_unit_test(test_boot_cache_shared_by_threads),
      cmocka_unit_test(test_refill_and_flush_halves),
      cmocka_unit_test(test_size_table_fills_as_sizes_come),
      cmocka_unit_test(test_fast_paths),
      cmocka_unit_test(test_fast_path_misses_undo),
      cmocka_unit_test(test_fast_path_every_size),
      cmocka_unit_test(test_sized_free_fast_every_size),
      cmocka_unit_test(test_free_through_page_map),
      cmocka_unit_test(test_idle_gc),
    cmocka_unit_test(test_sized_frees_do_not_drive_gc),
    cmocka_unit_test(test_refill_slow_start),
      cmocka_unit_test(test_thread_exit_recycles),
      cmocka_unit_test(test_activity_moves_with_every_call),
      cmocka_unit_test(test_reclaim),
      cmocka_unit_test(test_idle_cache_gives_stacks_back),
      cmocka_unit_test(test_no_growth_while_stacks_purge),
      cmocka_unit_test(test_many_threads_budget),
      cmocka_unit_test(test_boost),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
