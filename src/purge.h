/* The purger: runs the decay policy of every arena and of the huge-mapping
 * cache, and every quarter of dirty_decay_ms reclaims the caches of
 * threads that went quiet (xa_tcache_reclaim), from a background thread
 * (started lazily on the first dirty page, never from a constructor or a
 * fork handler; sleeps while nothing is dirty and no other thread's cache
 * holds objects) or, with background_thread:false, inline on slow paths. */
#ifndef XA_PURGE_H
#define XA_PURGE_H
#include "internal.h"

/* Something became dirty: make sure it will decay (start or wake the
 * thread, or purge inline when it is due).  Call with no lock held. */
XA_HIDDEN void xa_purge_notify(void);
/* A thread's cache just took objects: wake the purger if it sleeps with
 * nothing to do, so that it reclaims the cache once the thread goes quiet
 * (xa_tcache_reclaim).  A cheap check; a lost wake-up only delays that. */
XA_HIDDEN void xa_purge_watch_caches(void);
/* Start the background thread if it should run and does not.  Called
 * before a free releases memory, so the thread's own start-up allocations
 * cannot land on (and hide a later double free of) the block being freed. */
XA_HIDDEN void xa_purge_start(void);
/* Periodic hook from slow paths (inline mode does its work here). */
XA_HIDDEN void xa_purge_tick(void);
/* One pass over everything at time now; returns bytes still dirty. */
XA_HIDDEN size_t xa_purge_pass(uint64_t now);
/* True while the background thread exists. */
XA_HIDDEN bool xa_purge_thread_running(void);

XA_HIDDEN void xa_purge_prefork(void);
XA_HIDDEN void xa_purge_postfork_parent(void);
XA_HIDDEN void xa_purge_postfork_child(void);
#endif
