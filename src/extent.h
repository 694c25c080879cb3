/* The free-extent index of the huge regions (huge.c): free ranges of
 * address space, each in one page state (dirty: resident; clean: reads as
 * zero), found three ways, each in O(log n) or better:
 *
 *   by address  a treap keyed by start address, for neighbours (merging,
 *               growth in place) and for "is this address free?";
 *   by size     per state, bins of eight sizes per doubling with a bitmap
 *               of non-empty bins, for a good fit;
 *   by age      dirty extents in the order they were freed, for decay.
 *
 * Records live in segments mapped on demand and never move.  The index
 * does no locking and no system call: its owner holds its lock, and maps
 * segments (xa_ext_add_segment) with the lock dropped. */
#ifndef XA_EXTENT_H
#define XA_EXTENT_H
#include "internal.h"

enum { XA_EXT_CLEAN = 0, XA_EXT_DIRTY = 1 };

struct xa_ext {
  uintptr_t start;
  size_t size;
  uint64_t freed_at;            /* dirty: when it was freed (decay order) */
  struct xa_ext *left, *right;  /* treap by start */
  struct xa_ext *bin_next, *bin_prev;
  struct xa_ext *lru_next, *lru_prev;   /* dirty only: oldest first */
  uint32_t region;              /* owner's region number */
  uint32_t prio;                /* treap heap priority */
  uint32_t state;               /* XA_EXT_CLEAN or XA_EXT_DIRTY */
  uint32_t bin;                 /* size bin it is listed in */
};

#define XA_EXT_NBINS 320
#define XA_EXT_SEGMENT 4096     /* records per segment */
#define XA_EXT_SEGMENTS 256     /* at most 1 Mi free extents */

struct xa_extents {
  struct xa_ext *root;
  struct xa_ext *bins[2][XA_EXT_NBINS];
  uint64_t nonempty[2][(XA_EXT_NBINS + 63) / 64];
  struct xa_ext *lru_head, *lru_tail;
  struct xa_ext *spare;         /* records freed, linked by right */
  struct xa_ext *fresh_next, *fresh_end;   /* never used yet (untouched) */
  size_t nspare, count, nsegments;   /* nspare: both kinds */
  uint32_t rng;
};

/* Bytes of one segment of records (what xa_ext_add_segment takes). */
#define XA_EXT_SEGMENT_BYTES (XA_EXT_SEGMENT * sizeof(struct xa_ext))

/* Are there at least n unused records? */
XA_INLINE bool xa_ext_spare(const struct xa_extents *x, size_t n) { return x->nspare >= n; }
/* Hand a mapped segment of XA_EXT_SEGMENT_BYTES to the index; false (the
 * caller unmaps it) when it holds the most segments already. */
XA_HIDDEN bool xa_ext_add_segment(struct xa_extents *x, void *seg);

/* Free [start, start+size) of region in state st (freed at `at`),
 * merged with adjacent extents of the same region and state.  Returns the
 * extent holding it, or NULL when no record is left (nothing changed). */
XA_HIDDEN struct xa_ext *xa_ext_free(struct xa_extents *x, uintptr_t start, size_t size,
                                     uint32_t region, uint32_t st, uint64_t at);
/* Take [start, start+size), which lies inside extent e, out of the index;
 * what is left of e before and after stays free in e's state and age.
 * False only when a record was needed for the part after and none was
 * left: that part is then dropped from the index (it stays out of use). */
XA_HIDDEN bool xa_ext_take(struct xa_extents *x, struct xa_ext *e, uintptr_t start, size_t size);

/* The first extent starting at or after addr, or NULL. */
XA_HIDDEN struct xa_ext *xa_ext_from(const struct xa_extents *x, uintptr_t addr);
/* The extent containing addr, or NULL. */
XA_HIDDEN struct xa_ext *xa_ext_containing(const struct xa_extents *x, uintptr_t addr);
/* A good fit in state st for size bytes aligned to align: the smallest of
 * the first few in the smallest bin that holds one.  NULL if none. */
XA_HIDDEN struct xa_ext *xa_ext_fit(const struct xa_extents *x, uint32_t st, size_t size, size_t align);
/* The dirty extent freed longest ago, or NULL; and the next younger one. */
XA_INLINE struct xa_ext *xa_ext_oldest(const struct xa_extents *x) { return x->lru_head; }
/* Dirty extents from the newest: the next older one. */
XA_INLINE struct xa_ext *xa_ext_newest(const struct xa_extents *x) { return x->lru_tail; }

/* Start of e's first block aligned to align, and whether size bytes fit
 * there. */
XA_INLINE bool xa_ext_fits(const struct xa_ext *e, size_t size, size_t align) {
  uintptr_t s = XA_ALIGN_UP(e->start, align);
  return s >= e->start && s + size <= e->start + e->size;
}

/* Consistency check for tests: NULL if sound, else what is wrong. */
XA_HIDDEN const char *xa_ext_check(const struct xa_extents *x);
#endif
