/* The malloc and free fast paths.  Keep this file one screen long.
 *
 * malloc: size -> class (one load, indexed by the size itself), pop
 *   from the thread's bin, counting the allocation down in the bin's
 *   countdown.  Two branches to the slow path, which it tail-calls: the
 *   bin is empty (or it is the dummy bin, for a size whose table entry
 *   is not filled yet: xa_sizeclass_direct), or the count reached 0
 *   (every 2^20 allocations of a class, or the heap profiler's next
 *   sample: xa_tcache_tick).
 *   Both paths compare with the bin's gates, which another thread closes
 *   while it reclaims an idle cache (xa_tcache_reclaim).  malloc moves
 *   `top` down before it reads the gate (xa_tbin_pop_begin) and moves it
 *   back if the gate is closed: then the reclaimer, which reads `top`
 *   after it closed the gates and fenced every thread, sees the pop or
 *   the pop sees the gate closed.  free needs no such order: a push
 *   under way only adds above the `top` the reclaimer reads, which it
 *   never writes, and the push stores `top` after the slot.  A new
 *   thread's xa_tc points at the boot cache, whose gates are closed
 *   for good, so its first call lands in the slow path: no "initialised?"
 *   test here.
 *   The popped object's first word is cleared (it held the freed mark).
 * free: p's 4 KiB unit's entry in the page map (chunk.h; one range test)
 *   gives the slab's scaled class and start, or 0, the dummy bin, for
 *   anything that is not a slab of ours; a multiply by the bin's class
 *   constant checks p is the start of an object (the dummy's never
 *   divides; nothing is read from p before this); the first two bytes of
 *   p must not hold the freed mark already; mark p and push it onto the
 *   bin.  Anything else goes to the slow path (large/huge blocks, invalid
 *   pointers, full bins, NULL, chunks the page map does not cover, and a
 *   marked object: a double free, or user data that happens to match,
 *   which the slow path tells apart by looking for p in the cache). */
#ifndef XA_FASTPATH_H
#define XA_FASTPATH_H
#include "chunk.h"
#include "sizeclass.h"
#include "tcache.h"

XA_HIDDEN void *xa_malloc_slow(size_t n);
XA_HIDDEN void xa_free_slow(void *p);
/* free_sized's checking path (malloc.c): any block, any size. */
XA_HIDDEN void xa_free_sized_checked(void *p, size_t size);
/* free_aligned_sized's check and free; sized false: the size is unknown
 * (C++ aligned delete without one), only the alignment is checked. */
XA_HIDDEN void xa_free_aligned(void *p, size_t align, size_t size, bool sized, const char *fn);

/* malloc's fast path, leaving for slow(n) (a tail call: the fast path
 * then needs no stack frame, as long as slow is the only call). */
XA_INLINE void *xa_malloc_fast_or(size_t n, void *(*slow)(size_t)) {
  if (likely(n <= XA_SMALL_MAX)) {
    struct xa_tbin *b = xa_tbin_scaled(xa_tc, xa_sizeclass_direct(n));
    void **top = xa_tbin_pop_begin(b);
    if (likely((uintptr_t)top > (uintptr_t)b->pop_gate) && likely(--b->countdown != 0)) {
      void *p = top[-1];
      *(uintptr_t *)p = 0;
      return p;
    }
    xa_tbin_top_step(b, 1);    /* undone: the slow path finds the bin as it was */
  }
  return slow(n);
}
XA_INLINE void *xa_malloc_fast(size_t n) { return xa_malloc_fast_or(n, xa_malloc_slow); }

/* Is p the start of an object in one of our slabs?  Sets *cls if so. */
XA_INLINE bool xa_small_lookup(const void *p, size_t *cls) {
  uintptr_t a = (uintptr_t)p;
  if (unlikely(!xa_chunkmap_test(a))) return false;
  struct xa_pageinfo pi = *xa_chunk_info(xa_chunk_of(p), p);
  *cls = pi.cls;
  /* Non-slab pages have cls XA_CLS_NONE, whose magic (0) never divides. */
  return xa_sizeclass_divides(pi.cls, (uint32_t)a - pi.start32);
}

/* The same as a class, or XA_CLS_NONE. */
XA_INLINE size_t xa_small_class_of(const void *p) {
  size_t cls;
  return xa_small_lookup(p, &cls) ? cls : XA_CLS_NONE;
}

/* Push small object p of bin b, marking it freed; false (nothing done) if
 * the bin is full (or its gate closed) or p carries the mark already. */
XA_INLINE bool xa_tbin_push_freed(struct xa_tbin *b, void *p) {
  void **top = b->top;           /* read once: the mark's store may alias it */
  if (unlikely((uintptr_t)top >= (uintptr_t)b->push_gate || xa_freed_marked(p))) return false;
  xa_freed_mark(p);
  *top = p;
  /* the mark and the slot before `top` (a reclaimer reads below it) */
#if defined(__x86_64__) || defined(__i386__)
  __asm__ __volatile__("" ::: "memory");   /* stores stay in order (TSO) */
  xa_tbin_top_step(b, 1);
#else
  __atomic_store_n(&b->top, top + 1, __ATOMIC_RELEASE);
#endif
  return true;
}

/* The same on the calling thread's cache, for small object p of class cls. */
XA_INLINE bool xa_tc_push_freed(size_t cls, void *p) { return xa_tbin_push_freed(&xa_tc->bins[cls], p); }

/* free()'s push of p, whose page-map entry holds start32 and cls_scaled
 * (xa_free_push: the entry *pi): for a sized free (a constant), first the
 * size n against the bin's range; then xa_small_lookup's object-start
 * test with the class's divisibility constant read from the bin (the
 * scaled class 0 of anything but a slab indexes the dummy bin, whose
 * constant never divides, and whose size range is empty), then the
 * push.  False: nothing was done. */
XA_INLINE bool xa_free_push_sized(void *p, uint32_t start32, size_t cls_scaled, bool sized, size_t n) {
  struct xa_tcache *tc = xa_tc;
  uint64_t off = (uint32_t)((uint32_t)(uintptr_t)p - start32);
  struct xa_tbin *b = xa_tbin_scaled(tc, cls_scaled);
  /* sized: n in the class's range (xa_free_sized_fast); n <= size_max
   * <= 32768 first, so that n's low 16 bits are n */
  if (sized && !(likely(n <= b->size_max) && likely((uint16_t)n > b->size_min))) return false;
#if defined(__x86_64__)
  /* the multiply and the compare each read the constant from the bin:
   * gcc would load it into a register first (one instruction more) */
  __asm__("imulq %1, %0" : "+r"(off) : "m"(b->divmagic));
  return likely(off < b->divmagic) && likely(xa_tbin_push_freed(b, p));
#else
  uint64_t magic = b->divmagic;
  off *= magic;
  return likely(off < magic) && likely(xa_tbin_push_freed(b, p));
#endif
}
XA_INLINE bool xa_free_push_in(void *p, uint32_t start32, size_t cls_scaled) {
  return xa_free_push_sized(p, start32, cls_scaled, false, 0);
}
XA_INLINE bool xa_free_push(void *p, const struct xa_pageinfo *pi) { return xa_free_push_in(p, pi->start32, pi->cls_scaled); }

/* p's 4 KiB unit in the page map: < xa_pagemap_limit() if the map has it. */
XA_INLINE uintptr_t xa_pagemap_unit(const void *p) { return (uintptr_t)p >> XA_UNIT_SHIFT; }
/* The map's size, read before the map (chunk.c: published after it).  On
 * x86 a plain read, which the compiler folds into the compare (loads stay
 * in order there, and the map's load follows the branch). */
XA_INLINE size_t xa_pagemap_limit(void) {
#if defined(__x86_64__) || defined(__i386__)
  return xa_pagemap_units;
#else
  return __atomic_load_n(&xa_pagemap_units, __ATOMIC_ACQUIRE);
#endif
}

/* Unit u's cls_scaled, read as a byte of the map: the compiler then
 * indexes the map in both of free()'s loads, where a field of
 * xa_pagemap[u] makes it compute the entry's address first (one
 * instruction more). */
XA_INLINE size_t xa_pagemap_cls_scaled(uintptr_t u) {
  return ((const uint8_t *)xa_pagemap)[u * sizeof(struct xa_pageinfo) + __builtin_offsetof(struct xa_pageinfo, cls_scaled)];
}

XA_INLINE void xa_free_fast(void *p) {
  uintptr_t u = xa_pagemap_unit(p);
  if (likely(u < xa_pagemap_limit()) && likely(xa_free_push_in(p, xa_pagemap[u].start32, xa_pagemap_cls_scaled(u)))) return;
  xa_free_slow(p);
}

/* A free that is told the size n (sized delete, free_sized): when n is
 * in the size range of the class of p's page, the same push as free(),
 * and the size costs two compares with the bin free() picks anyway (its
 * size_min and size_max; the dummy bin's range is empty, and no size
 * above the small classes is in any range).  False: nothing was done,
 * and the caller's checking path decides (a large block, a size from
 * another class, size 0, a full bin, a bad pointer). */
XA_INLINE bool xa_free_sized_fast(void *p, size_t n) {
  uintptr_t u = xa_pagemap_unit(p);
  return likely(u < xa_pagemap_limit()) &&
         likely(xa_free_push_sized(p, xa_pagemap[u].start32, xa_pagemap_cls_scaled(u), true, n));
}
#endif
