/* Peaks of allocated and active bytes (peak.h). */
#include "peak.h"

static int64_t now[XA_PEAK_N];
static int64_t max[XA_PEAK_N];

void xa_peak_add_global(unsigned k, int64_t delta) {
  int64_t v = __atomic_add_fetch(&now[k], delta, __ATOMIC_RELAXED);
  int64_t m = __atomic_load_n(&max[k], __ATOMIC_RELAXED);
  while (v > m && !__atomic_compare_exchange_n(&max[k], &m, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {}
}

void xa_peak_pass(struct xa_peak_local *l, unsigned k) {
  int64_t d = l->pending[k];
  l->pending[k] = 0;
  xa_peak_add_global(k, d);
}

uint64_t xa_peak_max(unsigned k) {
  int64_t m = __atomic_load_n(&max[k], __ATOMIC_RELAXED);
  return m > 0 ? (uint64_t)m : 0;
}

uint64_t xa_peak_now(unsigned k) {
  int64_t v = __atomic_load_n(&now[k], __ATOMIC_RELAXED);
  return v > 0 ? (uint64_t)v : 0;
}
