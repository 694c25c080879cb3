/* The malloc and free fast paths.  Keep this file one screen long.
 *
 * malloc: size -> class (one table load), pop from the
 *   thread's bin.  One branch to the slow path, which it tail-calls.  A new
 *   thread's xa_tc points at the boot cache, whose bins are empty, so its
 *   first call lands in the slow path: no "initialised?" test here.
 * free: the chunk map bit says p lies in one of our chunks (nothing is read
 *   from p's chunk before that); the 4 KiB unit's info gives the slab's class
 *   and start; a multiply by a class constant checks p is the start of an
 *   object; push onto the bin.  Anything else goes to the slow path
 *   (large/huge blocks, invalid pointers, full bins, NULL). */
#ifndef XA_FASTPATH_H
#define XA_FASTPATH_H
#include "chunk.h"
#include "sizeclass.h"
#include "tcache.h"

XA_HIDDEN void *xa_malloc_slow(size_t n);
XA_HIDDEN void xa_free_slow(void *p);

XA_INLINE void *xa_malloc_fast(size_t n) {
  if (likely(n <= XA_SMALL_MAX)) {
    struct xa_tbin *b = &xa_tc->bins[xa_sizeclass_of(n)];
    if (likely(b->top != b->stack)) return *--b->top;
  }
  return xa_malloc_slow(n);
}

/* Class of p if p is the start of an object in one of our slabs, else
 * XA_CLS_NONE. */
XA_INLINE size_t xa_small_class_of(const void *p) {
  uintptr_t a = (uintptr_t)p;
  if (unlikely(!xa_chunkmap_test(a))) return XA_CLS_NONE;
  struct xa_pageinfo pi = *xa_chunk_info(xa_chunk_of(p), p);
  size_t cls = pi.cls;
  /* Non-slab pages have cls XA_CLS_NONE, whose magic (0) never divides. */
  if (unlikely(!xa_sizeclass_divides(cls, (uint32_t)a - pi.start32))) return XA_CLS_NONE;
  return cls;
}

XA_INLINE void xa_free_fast(void *p) {
  size_t cls = xa_small_class_of(p);
  if (likely(cls != XA_CLS_NONE)) {
    struct xa_tbin *b = &xa_tc->bins[cls];
    if (likely(b->top != b->end)) { *b->top++ = p; return; }
  }
  xa_free_slow(p);
}
#endif
