/* The dirty-page budget that the arenas and the huge blocks share
 * (budget.h). */
#include "budget.h"
#include "options.h"

size_t xa_budget_huge_dirty;
struct xa_budget_debt xa_budget_debt __attribute__((aligned(64)));
uint64_t xa_budget_huge_purged;
static size_t huge_cap = SIZE_MAX;      /* a memory limit's share */

size_t xa_budget_huge_slack(void) {
  size_t cap = __atomic_load_n(&huge_cap, __ATOMIC_RELAXED);
  return (size_t)xa_opt.huge_cache_bytes < cap ? (size_t)xa_opt.huge_cache_bytes : cap;
}

void xa_budget_limit_huge(size_t bytes) { __atomic_store_n(&huge_cap, bytes, __ATOMIC_RELAXED); }
