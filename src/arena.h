/* Arenas: one per CPU by default.  An arena owns chunks, carves them into
 * spans (slabs of one size class, large allocations, free runs), and keeps
 * per-class bins of non-full slabs.  One mutex per arena, held for pointer
 * work only: it is dropped around every mmap/munmap/madvise. */
#ifndef XA_ARENA_H
#define XA_ARENA_H
#include "chunk.h"
#include "sizeclass.h"

/* Wholly free chunks stay until decay reaches them: then the purger
 * deletes them (unmapped, or given back to the chunk source: chunk.h),
 * except XA_SPARE_CHUNKS (whose pages it purges) kept for reuse.  Past
 * XA_SPARE_CHUNKS_MAX the freeing thread deletes at once. */
#define XA_SPARE_CHUNKS 4
#define XA_SPARE_CHUNKS_MAX 256

/* struct xa_arena is private to arena.c (arena_private.h): everything
 * else holds pointers and calls the functions below. */
struct xa_arena;

XA_HIDDEN extern struct xa_arena **xa_arenas;
XA_HIDDEN extern unsigned xa_narenas;
/* How many arenas exist: 0 until initialisation has made them all.  For
 * readers that may run before initialisation (statistics); the others
 * come after it and read xa_narenas. */
XA_INLINE unsigned xa_arena_count(void) { return __atomic_load_n(&xa_narenas, __ATOMIC_ACQUIRE); }

XA_HIDDEN bool xa_arena_init_all(unsigned n);
XA_HIDDEN struct xa_arena *xa_arena_choose(void);
/* Use only the first n arenas from now on (mallopt's M_ARENA_MAX), and
 * how many are in use. */
XA_HIDDEN void xa_arena_limit(unsigned n);
XA_HIDDEN unsigned xa_arena_used(void);

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
XA_HIDDEN size_t xa_arena_purge_all(void);
/* Meshing (mesh:true, mesh.h), in rounds over every arena and class until
 * a round finds nothing or budget_ns have passed: give the aliases with no
 * live object left their own pages back, then mesh pairs of sparse slabs.
 * Bytes of physical pages freed.  One pass at a time: while another
 * runs, 0 at once, or (wait) after it, within the budget. */
XA_HIDDEN size_t xa_arena_mesh_all(uint64_t budget_ns, bool wait);
/* Set by a pass that skipped a class it should look at again soon (it
 * found nothing lately, but has not given up): the purger keeps its pace. */
XA_HIDDEN extern bool xa_mesh_later;
/* The same for arena a alone. */
XA_HIDDEN size_t xa_arena_mesh(struct xa_arena *a, uint64_t budget_ns);
/* Purge what the decay curve says is overdue at time now (ns) in arena a /
 * in every arena; returns bytes purged.  A dirty_decay_ms changed at run
 * time (xalloc_ctl) restarts the curve here. */
XA_HIDDEN size_t xa_arena_decay(struct xa_arena *a, uint64_t now);
XA_HIDDEN size_t xa_arena_decay_all(uint64_t now);
/* Work left for later decay passes over every arena: dirty pages, muzzy
 * pages that will decay, plus one per arena with dirty slabs.  Racy
 * reads, no lock: a hint for when the purger may sleep. */
XA_HIDDEN size_t xa_arena_decay_pending(void);
/* Bytes the peak budget has purged, ever (arena.c, peak_purge), the
 * shared budget's included (xa_arena_purge_dirty). */
XA_HIDDEN uint64_t xa_arena_peak_purged(void);
/* The budget the arenas share with the huge blocks (budget.h): the
 * arenas' dirty bytes (racy reads), their peak budget in bytes, and a
 * purge of about bytes of their shortest dirty free spans, arena after
 * arena (locks taken; none held on entry).  The purge returns the bytes
 * purged; none with dirty_decay_ms -1. */
XA_HIDDEN size_t xa_arena_dirty_bytes(void);
XA_HIDDEN size_t xa_arena_budget_bytes(void);
XA_HIDDEN size_t xa_arena_purge_dirty(size_t bytes);

/* Fork: take every arena lock in index order / release / reinitialise. */
/* Before fork's prepare handlers take their locks: with meshing, a fork
 * from a thread whose stack is a block of a file-backed chunk stops the
 * process with a message (it cannot work: arena.c). */
XA_HIDDEN void xa_arena_fork_check(void);
XA_HIDDEN void xa_arena_prefork(void);
XA_HIDDEN void xa_arena_postfork_parent(void);
XA_HIDDEN void xa_arena_postfork_child(void);

/* Delete the wholly free chunks of arena a / of every arena (memory is
 * short, or malloc_trim): unmapped, or given back to the chunk source
 * (chunk.h); returns their bytes. */
XA_HIDDEN size_t xa_arena_release_spares(struct xa_arena *a);
XA_HIDDEN size_t xa_arena_release_spares_all(void);
/* Those taken from the chunk source, until at least `bytes` went back to
 * it (the huge regions, which are the source, want resident pages:
 * huge.c). */
XA_HIDDEN size_t xa_arena_give_spares(size_t bytes);

/* One arena's counters, copied under its lock (statistics). */
struct xa_arena_stats {
  size_t mapped;                /* bytes of chunks */
  size_t mapped_peak;           /* the most bytes of chunks ever */
  size_t large_allocated;       /* bytes in live large spans */
  uint64_t large_nrequests;     /* large allocations served */
  size_t dirty_pages;           /* free pages that may be resident */
  size_t muzzy_pages;           /* free pages given back with MADV_FREE */
  unsigned nspare;              /* wholly free chunks kept */
  uint64_t purged_pages;        /* pages returned to the OS */
  uint64_t purge_runs;          /* madvise calls */
  uint64_t lock_contended;      /* lock acquisitions that had to wait */
  struct {
    uint64_t nslabs;            /* slabs of the class */
    uint64_t nrequests;         /* objects handed out */
    uint64_t curobjs;           /* objects out of slabs */
  } bins[XA_NSMALL];
};
XA_HIDDEN void xa_arena_get_stats(struct xa_arena *a, struct xa_arena_stats *out);
/* Arena a's resident bytes by what the pages hold: a picture of its spans
 * is taken under the lock, then mincore runs outside it (a chunk unmapped
 * meanwhile counts nothing).  For the explain report. */
struct xa_arena_resident {
  size_t header;                /* chunk headers: page info, span slots */
  size_t slab[XA_NSMALL];       /* slabs, per class */
  size_t large;                 /* live large blocks */
  size_t free_dirty, free_muzzy, free_clean;   /* free spans by page state */
  size_t purging;               /* free pages being purged just now */
};
XA_HIDDEN void xa_arena_resident(struct xa_arena *a, struct xa_arena_resident *r);
#endif
