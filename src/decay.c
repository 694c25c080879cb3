/* Smoothstep decay of dirty pages (policy only; see decay.h). */
#include "decay.h"
#include <string.h>

/* Weight of backlog slot i (0 oldest .. EPOCHS-1 newest), scaled by 2^16:
 * 1 - smoothstep(age) with age = (EPOCHS - i) / EPOCHS. */
static uint32_t weight(unsigned i) {
  uint64_t x = ((uint64_t)(XA_DECAY_EPOCHS - i) << 16) / XA_DECAY_EPOCHS;   /* age in [1/E, 1] */
  uint64_t s = (x * x >> 16) * ((3u << 16) - 2 * x) >> 16;                 /* 3x^2 - 2x^3 */
  return (uint32_t)((1u << 16) - s);
}

void xa_decay_init(struct xa_decay *d, int64_t decay_ms, uint64_t now) {
  memset(d, 0, sizeof *d);
  d->decay_ms = decay_ms;
  d->epoch_ns = decay_ms > 0 ? xa_decay_epoch_ns(decay_ms) : 0;
  d->epoch_start = now;
}

size_t xa_decay_limit(struct xa_decay *d, uint64_t now, size_t dirty) {
  if (d->decay_ms < 0) return SIZE_MAX;
  if (d->decay_ms == 0) return 0;
  if (now >= d->epoch_start + d->epoch_ns) {
    uint64_t adv = (now - d->epoch_start) / d->epoch_ns;
    if (adv >= XA_DECAY_EPOCHS) {
      memset(d->backlog, 0, sizeof d->backlog);
    } else {
      memmove(d->backlog, d->backlog + adv, (XA_DECAY_EPOCHS - adv) * sizeof d->backlog[0]);
      memset(d->backlog + XA_DECAY_EPOCHS - adv, 0, adv * sizeof d->backlog[0]);
    }
    d->epoch_start += adv * d->epoch_ns;
  }
  if (dirty > d->last_dirty) d->backlog[XA_DECAY_EPOCHS - 1] += dirty - d->last_dirty;
  d->last_dirty = dirty;
  uint64_t limit = 0;
  for (unsigned i = 0; i < XA_DECAY_EPOCHS; i++) limit += (uint64_t)d->backlog[i] * weight(i);
  limit >>= 16;
  return limit < dirty ? (size_t)limit : dirty;
}
