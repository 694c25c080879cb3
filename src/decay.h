/* Decay policy: how many freed ("dirty") pages may stay resident.  Pure
 * arithmetic on a clock value passed in, so it is unit-tested without time.
 *
 * Time is cut into XA_DECAY_EPOCHS epochs per decay period.  Pages that
 * became dirty during an epoch are recorded in the backlog; a page dirtied
 * t ago may stay with weight 1 - smoothstep(t / decay): the limit falls
 * smoothly from all of them at once to none after one decay period.  Each
 * epoch also keeps how many of its pages are still dirty: purges take the
 * oldest, reuse the youngest; an epoch's pages may stay up to its weighted
 * count, and no more than are left of it. */
#ifndef XA_DECAY_H
#define XA_DECAY_H
#include "internal.h"
#include "options.h"

#define XA_DECAY_EPOCHS 32

struct xa_decay {
  int64_t decay_ms;                 /* <0 never, 0 at once */
  uint64_t epoch_ns;                /* length of an epoch */
  uint64_t epoch_start;             /* start of the current epoch (ns) */
  size_t last_dirty;                /* dirty pages after the last update */
  size_t noted;                     /* pages freed dirty since the last update */
  size_t backlog[XA_DECAY_EPOCHS];  /* pages dirtied per epoch, last = newest */
  size_t left[XA_DECAY_EPOCHS];     /* of those, still dirty (neither purged nor reused) */
};

/* The length of an epoch for a decay time of decay_ms > 0 ms. */
XA_INLINE uint64_t xa_decay_epoch_ns(int64_t decay_ms) { return (uint64_t)decay_ms * 1000000u / XA_DECAY_EPOCHS; }

XA_HIDDEN void xa_decay_init(struct xa_decay *d, int64_t decay_ms, uint64_t now);
/* Advance to `now` with `dirty` pages dirty; returns how many may stay. */
XA_HIDDEN size_t xa_decay_limit(struct xa_decay *d, uint64_t now, size_t dirty);
/* n pages just became dirty.  Pages reused and freed again between two
 * updates leave the dirty count as it was; noted, they count as young
 * instead of keeping the age of the pages they replaced (xa_decay_limit
 * takes the reused ones off the epochs left, youngest first). */
XA_INLINE void xa_decay_note(struct xa_decay *d, size_t n) { d->noted += n; }
/* Record the dirty count after purging: the pages purged leave the
 * epochs' counts of pages left, oldest first. */
XA_HIDDEN void xa_decay_settle(struct xa_decay *d, size_t dirty);
/* Change the decay time to decay_ms, keeping the backlog where both the
 * old and the new time are positive: each page keeps its place on the
 * curve and runs along the rest of it at the new pace.  Otherwise as
 * xa_decay_init. */
XA_HIDDEN void xa_decay_set_ms(struct xa_decay *d, int64_t decay_ms, uint64_t now);

/* Adaptive decay time: regret.
 *
 * A program that pauses between bursts of work (a server between requests,
 * a batch job between phases) frees its memory at the end of each burst,
 * the purger returns it during the pause, and the next burst faults the
 * same pages in again: both the madvise and the faults are wasted.  The
 * purger therefore watches what follows its purges.  Time is cut into
 * windows of one decay time (arena pages only: huge blocks keep
 * dirty_decay_ms).  Every page handed out fresh because no freed resident
 * page was left for it (xa_os_refault) while bytes purged by decay are
 * "owed" pays off that debt, oldest first: those are pages the
 * program would have reused had they not been purged.  As soon as a third
 * of a window's purged bytes has come back, the decay time grows
 * XA_DECAY_GROW-fold (up to XA_DECAY_SCALE_MAX times dirty_decay_ms):
 * quickly, because a program that pays faults for every pause pays them
 * from its first pauses on.  A window's purges are last looked at
 * XA_DECAY_REGRET_WINDOWS windows later: if less than a tenth came back by
 * then, the decay time halves (down to dirty_decay_ms).
 * A program that stops returns its memory within the decay time in force,
 * and those last purges, which nothing follows, shorten it again. */
#define XA_DECAY_SCALE_MAX 8u
#define XA_DECAY_GROW 4u
#define XA_DECAY_REGRET_WINDOWS 4
/* Purges of fewer bytes than this in a window are not judged (noise). */
#define XA_DECAY_JUDGE_MIN ((size_t)256 << 10)

struct xa_decay_adapt {
  uint64_t window_end;                     /* when the current window closes (ns) */
  size_t refault_seen;                     /* xa_os_refault at the last update */
  size_t purged[XA_DECAY_REGRET_WINDOWS];  /* bytes purged by decay per window, oldest first */
  size_t owed[XA_DECAY_REGRET_WINDOWS];    /* of those, not yet faulted in again */
  bool regretted[XA_DECAY_REGRET_WINDOWS]; /* that window's purges lengthened the decay already */
  unsigned scale;                          /* decay time = dirty_decay_ms * scale */
};

/* The scale in force, set by the purger (purge.c), and the decay time it
 * gives: dirty_decay_ms itself when that is 0 or negative. */
XA_HIDDEN extern unsigned xa_decay_scale;
XA_INLINE int64_t xa_decay_ms_now(void) {
  int64_t base = xa_opt.dirty_decay_ms;
  return base > 0 ? base * __atomic_load_n(&xa_decay_scale, __ATOMIC_RELAXED) : base;
}

/* Idle watch over a pool of things kept for reuse (spare chunks,
 * recycled thread caches): it is due to go back once none was taken
 * (takes, a count kept by the pool's owner, unchanged) for idle_ns since
 * the first look that found it so.  The owner's lock guards the watch;
 * `since` (0: not watching) may be peeked at without it.  Pure, for the
 * unit tests: the clock is passed in. */
struct xa_idle_watch { uint64_t takes_seen, since; };
XA_INLINE bool xa_idle_due(struct xa_idle_watch *w, uint64_t takes, uint64_t now, uint64_t idle_ns) {
  uint64_t since = w->since;
  bool due = false;
  if (!since || takes != w->takes_seen) {
    w->takes_seen = takes;
    since = now;
  } else if (now - since >= idle_ns) {
    since = 0;
    due = true;
  }
  __atomic_store_n(&w->since, since, __ATOMIC_RELAXED);
  return due;
}
/* The pool is empty, or not to be watched: forget what was seen. */
XA_INLINE void xa_idle_reset(struct xa_idle_watch *w) { __atomic_store_n(&w->since, 0, __ATOMIC_RELAXED); }

XA_HIDDEN void xa_decay_adapt_init(struct xa_decay_adapt *a, uint64_t now, size_t refault);
/* At time now: refault = xa_os_refault(), purged = bytes purged by decay
 * since the last update, base_ms = dirty_decay_ms (> 0).  Returns the
 * scale. */
XA_HIDDEN unsigned xa_decay_adapt_update(struct xa_decay_adapt *a, uint64_t now, size_t refault, size_t purged,
                                         int64_t base_ms);
#endif
