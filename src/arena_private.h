/* The layout of an arena: private to arena.c (and to its white-box unit
 * test).  Every other file holds struct xa_arena pointers and goes through
 * the functions of arena.h, so the fields and their locking rule (all of
 * them under `lock`) are arena.c's alone. */
#ifndef XA_ARENA_PRIVATE_H
#define XA_ARENA_PRIVATE_H
#include "arena.h"
#include "decay.h"
#include "lock.h"
#include "peak.h"

/* Free spans are binned by length: exact for 1..64 pages, then by power
 * of two. */
#define XA_FREE_EXACT 64
#define XA_FREE_BINS  (XA_FREE_EXACT + 16)
/* Dirty pages another arena must hold, at least, before a span request
 * is served from it rather than from fresh pages (dirty_elsewhere): a
 * surplus (1 MiB), not the few pages any busy arena has.  With 32 pages,
 * larson's two threads kept carving from one arena and contended for its
 * lock (40% slower); with 256, a thread stops borrowing once the surplus
 * is used up. */
#define XA_BORROW_MIN_PAGES 256
/* Decay purges free spans in runs of this many pages (256 KiB) at least:
 * a larger span is split (few madvise calls, no whole span for a page). */
#define XA_PURGE_MIN_PAGES 64
/* Fresh pages an arena takes while sparse slabs hold free pages, before
 * the taker gives as many of those back (arena.c, grow_purge): 1 MiB of
 * 4 KiB pages. */
#define XA_GROW_PURGE_PAGES 256

/* A span or slab whose pages are under madvise, with the arena's lock
 * dropped.  The node lives on the purging thread's stack: a fork child has
 * a copy of that stack but, unless that thread forked, not the thread, and
 * finishes the purge's bookkeeping from the list (xa_arena_postfork_child). */
struct xa_inflight {
  struct xa_span *span;
  const void *owner;            /* xa_thread_self() of the purging thread */
  struct xa_inflight *next;
};

struct xa_lru {
  struct xa_span *head, *tail;  /* oldest first */
};

struct xa_bin {
  struct xa_span *nonfull;      /* slabs with at least one free object */
  uint32_t nempty;              /* of those, wholly free ones */
  uint64_t nslabs;              /* slabs of this class in the arena */
  uint64_t nrequests;           /* objects handed out (refills) */
  uint64_t curobjs;             /* objects out of slabs (caches + user) */
  uint32_t mesh_skip;           /* meshing's last look stopped this many
                                   slabs from the head of nonfull */
  uint8_t mesh_wait;            /* meshing passes to skip this class for */
  uint8_t mesh_backoff;         /* passes it skips after the next fruitless one */
};

struct xa_arena {
  xa_lock_t lock;
  unsigned index;
  struct xa_bin bins[XA_NSMALL];
  /* Free spans by page state: [1] dirty (resident, but for unfaulted pages),
   * [0] clean or muzzy (reuse faults pages in), so that a request finds a
   * resident span of its size wherever one is, before any other. */
  struct xa_span *free_spans[2][XA_FREE_BINS];
  uint64_t free_nonempty[2][2]; /* bit i of [k]: free_spans[k][i] is not empty */
  struct xa_chunk *chunks;      /* every chunk of the arena */
  unsigned nspare;              /* wholly free chunks kept for reuse */
  uint64_t spare_takes;         /* spares taken back into use, ever */
  struct xa_idle_watch spare_watch;  /* since when spares lie unused */
  size_t mapped;                /* bytes of chunks */
  size_t mapped_peak;           /* the most mapped ever */
  struct xa_peak_local peak;    /* allocated and active changes not yet counted globally */
  size_t large_allocated;       /* bytes in live large spans */
  uint64_t large_nrequests;
  size_t dirty_pages;           /* free pages that may be resident */
  struct xa_lru dirty_spans;    /* dirty free spans */
  struct xa_lru dirty_slabs;    /* slabs with free pages not yet purged */
  size_t grow_pages;            /* fresh pages taken while dirty_slabs held
                                   some, not yet matched by a grow_purge */
  size_t over_pages;            /* fresh pages taken while the arenas held
                                   more dirty pages than the peak budget,
                                   not yet matched by a peak_purge */
  size_t half_dirtied;          /* pages of clean free spans holding resident
                                   ones that half_dirty turned dirty, ever */
  struct xa_lru muzzy_spans;    /* MADV_FREE'd free spans (purge:free) */
  size_t muzzy_pages;
  struct xa_decay decay;        /* how many dirty pages may stay */
  uint64_t purged_pages;        /* pages returned to the OS */
  uint64_t purge_runs;          /* madvise calls */
  uint64_t meshed_slabs;        /* MESHED slabs: on another slab's pages */
  struct xa_inflight *inflight; /* purges running with the lock dropped */
  struct xa_chunk *adopting;    /* moving into the mesh file: no purge starts
                                   in it (arena.c, adopt) */
  uint64_t rng;                 /* secure mode: xorshift state for slot choice */
};

/* Invariant walker for tests and debug builds (lock held); NULL when
 * consistent, else the first violation found. */
XA_HIDDEN const char *xa_arena_check_locked(struct xa_arena *a);
#endif
