/* Decay policy: how many freed ("dirty") pages may stay resident.  Pure
 * arithmetic on a clock value passed in, so it is unit-tested without time.
 *
 * Time is cut into XA_DECAY_EPOCHS epochs per decay period.  Pages that
 * became dirty during an epoch are recorded in the backlog; a page dirtied
 * t ago may stay with weight 1 - smoothstep(t / decay): the limit falls
 * smoothly from all of them at once to none after one decay period. */
#ifndef XA_DECAY_H
#define XA_DECAY_H
#include "internal.h"

#define XA_DECAY_EPOCHS 32

struct xa_decay {
  int64_t decay_ms;                 /* <0 never, 0 at once */
  uint64_t epoch_ns;                /* length of an epoch */
  uint64_t epoch_start;             /* start of the current epoch (ns) */
  size_t last_dirty;                /* dirty pages after the last update */
  size_t backlog[XA_DECAY_EPOCHS];  /* pages dirtied per epoch, last = newest */
};

/* The length of an epoch for a decay time of decay_ms > 0 ms. */
XA_INLINE uint64_t xa_decay_epoch_ns(int64_t decay_ms) { return (uint64_t)decay_ms * 1000000u / XA_DECAY_EPOCHS; }

XA_HIDDEN void xa_decay_init(struct xa_decay *d, int64_t decay_ms, uint64_t now);
/* Advance to `now` with `dirty` pages dirty; returns how many may stay. */
XA_HIDDEN size_t xa_decay_limit(struct xa_decay *d, uint64_t now, size_t dirty);
/* Record the dirty count after purging (or reuse). */
XA_INLINE void xa_decay_settle(struct xa_decay *d, size_t dirty) { d->last_dirty = dirty; }
#endif
