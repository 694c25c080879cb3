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

/* Age the backlog to now: one slot per whole epoch gone by. */
static void advance(struct xa_decay *d, uint64_t now) {
  if (now >= d->epoch_start + d->epoch_ns) {
    uint64_t adv = (now - d->epoch_start) / d->epoch_ns;
    if (adv >= XA_DECAY_EPOCHS) {
      memset(d->backlog, 0, sizeof d->backlog);
      memset(d->left, 0, sizeof d->left);
    } else {
      size_t keep = (XA_DECAY_EPOCHS - adv) * sizeof d->backlog[0], gone = adv * sizeof d->backlog[0];
      memmove(d->backlog, d->backlog + adv, keep);
      memset((char *)d->backlog + keep, 0, gone);
      memmove(d->left, d->left + adv, keep);
      memset((char *)d->left + keep, 0, gone);
    }
    d->epoch_start += adv * d->epoch_ns;
  }
}

void xa_decay_set_ms(struct xa_decay *d, int64_t decay_ms, uint64_t now) {
  if (decay_ms <= 0 || d->decay_ms <= 0) {
    xa_decay_init(d, decay_ms, now);
    return;
  }
  advance(d, now);                  /* the time gone by, at the old pace */
  d->decay_ms = decay_ms;
  d->epoch_ns = xa_decay_epoch_ns(decay_ms);
}

/* Take n pages off the epochs' counts of pages left, newest first (reuse:
 * the free lists hand out the pages freed last; the current epoch last)
 * or oldest first (purging takes those). */
static void take(struct xa_decay *d, size_t n, bool newest_first) {
  for (unsigned k = 0; k < XA_DECAY_EPOCHS && n; k++) {
    unsigned i = newest_first ? (XA_DECAY_EPOCHS - 2 + XA_DECAY_EPOCHS - k) % XA_DECAY_EPOCHS : k;
    size_t t = n < d->left[i] ? n : d->left[i];
    d->left[i] -= t;
    n -= t;
  }
}

size_t xa_decay_limit(struct xa_decay *d, uint64_t now, size_t dirty) {
  if (d->decay_ms < 0) return SIZE_MAX;
  if (d->decay_ms == 0) return 0;
  advance(d, now);
  /* New pages: those noted, or at least the growth of the count.  Pages
   * reused since the last update leave the counts of pages left. */
  size_t grown = dirty > d->last_dirty ? dirty - d->last_dirty : 0;
  size_t fresh = d->noted > grown ? d->noted : grown;
  if (fresh > dirty) fresh = dirty;
  d->backlog[XA_DECAY_EPOCHS - 1] += fresh;
  d->left[XA_DECAY_EPOCHS - 1] += fresh;
  d->noted = 0;
  d->last_dirty = dirty;
  size_t total = 0;
  for (unsigned i = 0; i < XA_DECAY_EPOCHS; i++) total += d->left[i];
  if (total > dirty) take(d, total - dirty, true);
  uint64_t limit = 0;
  for (unsigned i = 0; i < XA_DECAY_EPOCHS; i++) {
    uint64_t may = (uint64_t)d->backlog[i] * weight(i) >> 16;
    limit += may < d->left[i] ? may : d->left[i];
  }
  return limit < dirty ? (size_t)limit : dirty;
}

void xa_decay_settle(struct xa_decay *d, size_t dirty) {
  if (dirty < d->last_dirty) take(d, d->last_dirty - dirty, false);
  d->last_dirty = dirty;
}

unsigned xa_decay_scale = 1;

void xa_decay_adapt_init(struct xa_decay_adapt *a, uint64_t now, size_t refault) {
  memset(a, 0, sizeof *a);
  a->window_end = now;
  a->refault_seen = refault;
  a->scale = 1;
}

unsigned xa_decay_adapt_update(struct xa_decay_adapt *a, uint64_t now, size_t refault, size_t purged,
                               int64_t base_ms) {
  enum { N = XA_DECAY_REGRET_WINDOWS };
  /* Refaults since the last update pay off the oldest debt first; they
   * came before this update's purge, so they cannot pay for it. */
  size_t f = refault - a->refault_seen;
  a->refault_seen = refault;
  for (unsigned g = 0; g < N && f; g++) {
    size_t paid = f < a->owed[g] ? f : a->owed[g];
    a->owed[g] -= paid;
    f -= paid;
    /* Regret as soon as a third of a window's purge has come back. */
    if (!a->regretted[g] && a->purged[g] >= XA_DECAY_JUDGE_MIN && a->purged[g] - a->owed[g] >= a->purged[g] / 3) {
      a->regretted[g] = true;
      a->scale = a->scale * XA_DECAY_GROW < XA_DECAY_SCALE_MAX ? a->scale * XA_DECAY_GROW : XA_DECAY_SCALE_MAX;
    }
  }
  if (now >= a->window_end) {
    /* The oldest window's purges have had N - 1 to N windows to come
     * back: if little did, the decay time is longer than the program
     * needs. */
    if (!a->regretted[0] && a->purged[0] >= XA_DECAY_JUDGE_MIN && a->purged[0] - a->owed[0] < a->purged[0] / 10 &&
        a->scale > 1)
      a->scale /= 2;
    memmove(a->purged, a->purged + 1, (N - 1) * sizeof a->purged[0]);
    memmove(a->owed, a->owed + 1, (N - 1) * sizeof a->owed[0]);
    memmove(a->regretted, a->regretted + 1, (N - 1) * sizeof a->regretted[0]);
    a->purged[N - 1] = a->owed[N - 1] = 0;
    a->regretted[N - 1] = false;
    a->window_end = now + (uint64_t)base_ms * a->scale * 1000000u;
  }
  a->purged[N - 1] += purged;   /* this update's purge opens a debt in the window now open */
  a->owed[N - 1] += purged;
  return a->scale;
}
