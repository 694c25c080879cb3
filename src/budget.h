/* The dirty-page budget that the arenas and the huge blocks share.
 *
 * Each keeps freed pages resident for reuse within a budget of its own:
 * the arenas within the live bytes' peak less the live bytes, plus an
 * eighth of the peak (arena.c, peak_budget_pages); the huge blocks within
 * their own recent peak less their live bytes, plus huge_cache_bytes
 * (huge.c, purge_over_budget).  Alone, each budget counts the room under
 * the peak that the other's freed pages may fill already: a program that
 * frees 48 MiB of 1 MiB blocks and then allocates 48 MiB of 64-byte
 * objects, or the other way round, would keep both.  So together they
 * also stay within that room plus both slacks (xa_budget_over), checked
 * where the resident set grows: when either takes fresh pages beyond it,
 * the other gives back as many dirty pages as were taken, as far as it
 * holds more than its own slack (it does not pay for the taker's excess,
 * which the taker's own budget handles): the arenas their shortest free
 * spans, the huge cache its oldest free extents.  The slacks add up, so
 * that a program near its peak that reuses both kinds keeps what each
 * keeps alone.
 *
 * The huge blocks sit above the arenas (huge.c calls arena.c), so they
 * have the arenas pay at once (xa_arena_purge_dirty).  The arenas cannot
 * call the huge blocks: they note what the huge cache owes here
 * (xa_budget_owe), and malloc's slow path has it paid at its next safe
 * point (purge.h) once it reaches XA_BUDGET_PAY_MIN, as far as the two
 * are still over then.  Fresh pages of huge blocks that are fresh only
 * in part (gathered, grown by realloc) and calloc's blocks are not
 * charged.  This module holds what both must see: the huge cache's
 * dirty bytes and slack, and the debt. */
#ifndef XA_BUDGET_H
#define XA_BUDGET_H
#include "internal.h"

/* Dirty (resident, free) bytes of the huge blocks' cache: huge.c keeps
 * it, the arenas read it. */
XA_HIDDEN extern size_t xa_budget_huge_dirty;
/* Bytes of the huge cache owed back for fresh pages the arenas took over
 * the shared budget, on a cache line of its own: every small slow path
 * reads it, and huge frees write the counter above. */
struct xa_budget_debt {
  size_t owed;
  char pad[64 - sizeof(size_t)];
};
XA_HIDDEN extern struct xa_budget_debt xa_budget_debt __attribute__((aligned(64)));
/* Bytes the huge cache gave back for that, ever (stats.peak_purged). */
XA_HIDDEN extern uint64_t xa_budget_huge_purged;
/* A debt is paid once it reaches this (not once per slab taken), as far
 * as still over then. */
#define XA_BUDGET_PAY_MIN ((size_t)2 << 20)

/* The huge cache's slack: huge_cache_bytes, or less under a memory limit
 * (xa_budget_limit_huge). */
XA_HIDDEN size_t xa_budget_huge_slack(void);
XA_HIDDEN void xa_budget_limit_huge(size_t bytes);

/* Bytes by which the arenas' dirty bytes and the huge cache's together
 * pass the shared budget: the arenas' budget (room under the peak plus
 * their slack) plus the huge cache's slack. */
XA_INLINE size_t xa_budget_over(size_t arena_dirty, size_t arena_budget) {
  size_t dirty = arena_dirty + __atomic_load_n(&xa_budget_huge_dirty, __ATOMIC_RELAXED);
  size_t budget = arena_budget + xa_budget_huge_slack();
  return dirty > budget ? dirty - budget : 0;
}

/* What a part holding `dirty` bytes over its slack `slack` gives back
 * when the other took `fresh` bytes while both were `over` the budget. */
XA_INLINE size_t xa_budget_share(size_t fresh, size_t over, size_t dirty, size_t slack) {
  size_t own = dirty > slack ? dirty - slack : 0, d = fresh < over ? fresh : over;
  return d < own ? d : own;
}

/* The arenas took `fresh` bytes of fresh pages while over the shared
 * budget by `over`: the huge cache owes its share. */
XA_INLINE void xa_budget_owe(size_t fresh, size_t over) {
  size_t d = xa_budget_share(fresh, over, __atomic_load_n(&xa_budget_huge_dirty, __ATOMIC_RELAXED),
                             xa_budget_huge_slack());
  if (d) __atomic_add_fetch(&xa_budget_debt.owed, d, __ATOMIC_RELAXED);
}

/* Take the debt (to pay it, or to forget it: a trim). */
XA_INLINE size_t xa_budget_take_owed(void) { return __atomic_exchange_n(&xa_budget_debt.owed, 0, __ATOMIC_RELAXED); }
#endif
