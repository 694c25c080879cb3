/* The purger: runs the decay policy of every arena and of the huge-mapping
 * cache, and every quarter of dirty_decay_ms reclaims the caches of
 * threads that went quiet (xa_tcache_reclaim), from a background thread
 * (started at an allocation slow path once memory may need returning,
 * never from free, a constructor or a fork handler; sleeps while nothing is
 * dirty and no other thread's cache holds objects, ending when no program
 * thread is left) or, with
 * background_thread:false and until the thread runs, inline on slow
 * paths. */
#ifndef XA_PURGE_H
#define XA_PURGE_H
#include "internal.h"
#include "budget.h"
#include "os.h"
#include "pressure.h"

/* Something became dirty: make sure it will decay (wake the thread, or
 * purge inline when it is due and ask for the thread).  Call with no lock
 * held; safe from free (it never creates the thread). */
XA_HIDDEN void xa_purge_notify(void);
/* A thread's cache just took objects: wake the purger if it sleeps with
 * nothing to do, so that it reclaims the cache once the thread goes quiet
 * (xa_tcache_reclaim).  A cheap check; a lost wake-up only delays that. */
XA_HIDDEN void xa_purge_watch_caches(void);
/* A thread's refill was cut short by its share of tcache_budget: caches of
 * threads gone quiet may hold the rest.  The squeezed thread then runs a
 * reclaim pass itself, at most every QUICK_RECLAIM_NS (each pass takes
 * the caches that made no call since the one before), instead of waiting
 * for the purger's, a quarter of dirty_decay_ms apart. */
XA_HIDDEN void xa_purge_reclaim_soon(void);
/* Ask for the background thread: one store, from any path, any lock held.
 * The thread is created later, at a safe point. */
XA_HIDDEN void xa_purge_want(void);
/* The safe point: allocation slow paths call it last, with no lock held,
 * and only they may (never free, a fork handler or a constructor: see
 * purge.c).  It creates the thread if one was asked for. */
XA_HIDDEN extern int xa_purge_wanted;
XA_HIDDEN extern size_t xa_purge_map_trigger;
XA_HIDDEN void xa_purge_start_wanted(void);
/* Purge what the huge cache owes the budget it shares with the arenas
 * (budget.h), as far as both are still over it. */
XA_HIDDEN void xa_purge_pay_owed(void);
XA_INLINE void xa_purge_safe_point(void) {
  if (unlikely(__atomic_load_n(&xa_budget_debt.owed, __ATOMIC_RELAXED) >= XA_BUDGET_PAY_MIN)) xa_purge_pay_owed();
  if (unlikely(__atomic_load_n(&xa_purge_wanted, __ATOMIC_RELAXED) ||
               xa_os_fresh() > __atomic_load_n(&xa_purge_map_trigger, __ATOMIC_RELAXED)))
    xa_purge_start_wanted();
  if (unlikely(xa_os_fresh() >= __atomic_load_n(&xa_pressure_check_at, __ATOMIC_RELAXED)))
    xa_pressure_check();   /* growth may have used up the cgroup's headroom */
}
/* One pass over everything at time now; returns bytes still dirty. */
XA_HIDDEN size_t xa_purge_pass(uint64_t now);
/* True while the background thread exists. */
XA_HIDDEN bool xa_purge_thread_running(void);

/* From the library's constructor: watch for the main thread's end, so
 * that the purger reads /proc (to see whether the program is gone) only
 * after it (purge.c). */
XA_HIDDEN void xa_purge_watch_main(void);
XA_HIDDEN void xa_purge_prefork(void);
XA_HIDDEN void xa_purge_postfork_parent(void);
XA_HIDDEN void xa_purge_postfork_child(void);
#endif
