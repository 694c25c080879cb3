/* Arenas: one per CPU by default.  An arena owns chunks, carves them into
 * spans (slabs of one size class, large allocations, free runs), and keeps
 * per-class bins of non-full slabs.  One mutex per arena, held for pointer
 * work only: it is dropped around every mmap/munmap/madvise. */
#ifndef XA_ARENA_H
#define XA_ARENA_H
#include "chunk.h"
#include "decay.h"
#include "lock.h"
#include "sizeclass.h"

/* Free spans are binned by length: exact for 1..64 pages, then by power
 * of two. */
#define XA_FREE_EXACT 64
#define XA_FREE_BINS  (XA_FREE_EXACT + 16)
/* Wholly free chunks stay mapped until decay reaches them: then the
 * purger unmaps them, except XA_SPARE_CHUNKS (whose pages it purges) kept
 * for reuse.  Past XA_SPARE_CHUNKS_MAX the freeing thread unmaps at once. */
#define XA_SPARE_CHUNKS 4
#define XA_SPARE_CHUNKS_MAX 256
/* Free spans a span request looks at for a dirty (resident) one. */
#define XA_DIRTY_SCAN 16

struct xa_lru {
  struct xa_span *head, *tail;  /* oldest first */
};

struct xa_bin {
  struct xa_span *nonfull;      /* slabs with at least one free object */
  uint32_t nempty;              /* of those, wholly free ones */
  uint64_t nslabs;              /* slabs of this class in the arena */
  uint64_t nrequests;           /* objects handed out (refills) */
  uint64_t curobjs;             /* objects out of slabs (caches + user) */
};

struct xa_arena {
  xa_lock_t lock;
  unsigned index;
  struct xa_bin bins[XA_NSMALL];
  struct xa_span *free_spans[XA_FREE_BINS];
  uint64_t free_nonempty[2];    /* bit i: free_spans[i] is not empty */
  struct xa_chunk *chunks;      /* every chunk of the arena */
  unsigned nspare;              /* wholly free chunks kept for reuse */
  size_t mapped;                /* bytes of chunks */
  size_t large_allocated;       /* bytes in live large spans */
  uint64_t large_nrequests;
  size_t dirty_pages;           /* free pages that may be resident */
  struct xa_lru dirty_spans;    /* dirty free spans */
  struct xa_lru dirty_slabs;    /* slabs with free pages not yet purged */
  struct xa_lru muzzy_spans;    /* MADV_FREE'd free spans (purge:free) */
  size_t muzzy_pages;
  struct xa_decay decay;        /* how many dirty pages may stay */
  uint64_t purged_pages;        /* pages returned to the OS */
  uint64_t purge_runs;          /* madvise calls */
  uint64_t rng;                 /* secure mode: xorshift state for slot choice */
};

XA_HIDDEN extern struct xa_arena **xa_arenas;
XA_HIDDEN extern unsigned xa_narenas;
/* How many arenas exist: 0 until initialisation has made them all.  For
 * readers that may run before initialisation (statistics); the others
 * come after it and read xa_narenas. */
XA_INLINE unsigned xa_arena_count(void) { return __atomic_load_n(&xa_narenas, __ATOMIC_ACQUIRE); }

XA_HIDDEN bool xa_arena_init_all(unsigned n);
XA_HIDDEN struct xa_arena *xa_arena_choose(void);

/* Fill out[0..want) with objects of class cls; returns how many (0: OOM). */
XA_HIDDEN unsigned xa_arena_refill(struct xa_arena *a, unsigned cls, void **out, unsigned want);
/* Return objects to their slabs (any arenas).  Detects double and invalid
 * frees: each pointer must be the start of an allocated object. */
XA_HIDDEN void xa_arena_flush(void **ptrs, unsigned n, const char *fn);
/* Is p (which lies in a slab page) not a live small object: a free slot,
 * or in pages that are no longer a slab? */
XA_HIDDEN bool xa_arena_small_is_free(const void *p);
/* Purge the whole free pages inside slabs that have been dirty for at
 * least min_age ns (0: all); returns bytes purged. */
XA_HIDDEN size_t xa_arena_purge_slabs(struct xa_arena *a, uint64_t now, uint64_t min_age);

/* Large allocations: whole pages in a span.  align is a power of two. */
XA_HIDDEN void *xa_arena_alloc_large(struct xa_arena *a, size_t size, size_t align);
XA_HIDDEN void xa_arena_free_large(struct xa_span *s);
/* Shrink or grow a large span in place; true on success. */
XA_HIDDEN bool xa_arena_resize_large(struct xa_span *s, size_t new_size);

/* The span of a large allocation p, or NULL if p is not one. */
XA_HIDDEN struct xa_span *xa_arena_large_span(const void *p);
/* Is p (in one of our chunks) the start of free pages: most likely a block
 * freed before? */
XA_HIDDEN bool xa_arena_was_freed(const void *p);

/* Give back the dirty free pages (madvise) of arena a / of every arena;
 * returns bytes purged. */
XA_HIDDEN size_t xa_arena_purge(struct xa_arena *a);
/* Purge what the decay curve says is overdue at time now (ns); returns
 * bytes purged. */
XA_HIDDEN size_t xa_arena_decay(struct xa_arena *a, uint64_t now);
XA_HIDDEN size_t xa_arena_purge_all(void);

/* Fork: take every arena lock in index order / release / reinitialise. */
XA_HIDDEN void xa_arena_prefork(void);
XA_HIDDEN void xa_arena_postfork_parent(void);
XA_HIDDEN void xa_arena_postfork_child(void);


/* Unmap the arena's wholly free chunks; returns bytes unmapped. */
XA_HIDDEN size_t xa_arena_release_spares(struct xa_arena *a);

/* Invariant walker for tests and debug builds; NULL when consistent. */
XA_HIDDEN const char *xa_arena_check_locked(struct xa_arena *a);
#endif
