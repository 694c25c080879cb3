/* High-water marks of the allocated and active bytes (statistics).  An
 * exact peak of a sum over all arenas would need one shared counter
 * updated on every refill and flush, a cache line every thread writes.
 * Instead each arena gathers its changes under its own lock and passes
 * them to the global counters only once they reach XA_PEAK_SLACK either
 * way; the peak is taken there.  So the peaks are exact to within
 * XA_PEAK_SLACK per arena, for one atomic add per MiB of change. */
#ifndef XA_PEAK_H
#define XA_PEAK_H
#include "internal.h"

enum { XA_PEAK_ALLOCATED, XA_PEAK_ACTIVE, XA_PEAK_N };
#define XA_PEAK_SLACK ((int64_t)1 << 20)

struct xa_peak_local {
  int64_t pending[XA_PEAK_N];   /* changes not yet passed on (owner's lock) */
};

XA_HIDDEN void xa_peak_pass(struct xa_peak_local *l, unsigned k);

/* A change of delta bytes in counter k, under the lock that guards l. */
XA_INLINE void xa_peak_add(struct xa_peak_local *l, unsigned k, int64_t delta) {
  int64_t v = l->pending[k] += delta;
  if (unlikely(v >= XA_PEAK_SLACK || v <= -XA_PEAK_SLACK)) xa_peak_pass(l, k);
}
/* A change that goes to the global counter at once (huge blocks: each is
 * 2 MiB or more). */
XA_HIDDEN void xa_peak_add_global(unsigned k, int64_t delta);
/* The most counter k has been, as far as it was passed on. */
XA_HIDDEN uint64_t xa_peak_max(unsigned k);
/* Counter k now, as far as it was passed on. */
XA_HIDDEN uint64_t xa_peak_now(unsigned k);
#endif
