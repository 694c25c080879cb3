/* Huge allocations (>= XA_HUGE_MIN): each its own mapping, aligned to
 * 2 MiB (so transparent huge pages can back it), registered in an
 * address-keyed hash table.  realloc moves pages with mremap, never bytes. */
#ifndef XA_HUGE_H
#define XA_HUGE_H
#include "internal.h"

#define XA_HUGE_ALIGN ((size_t)2 << 20)

/* A mapping of at least n bytes aligned to align: a cached one when one
 * fits (then *zeroed is false), else a fresh zeroed one.  NULL on failure. */
XA_HIDDEN void *xa_huge_alloc(size_t n, size_t align, bool *zeroed);
/* Usable size of huge block p, or 0 if p is not the start of one. */
XA_HIDDEN size_t xa_huge_usable(const void *p);
/* Is p a freed huge block kept in the cache of mappings? */
XA_HIDDEN bool xa_huge_is_cached(const void *p);
/* Retire p (kept in the cache of freed mappings, or unmapped); false if p
 * is not a live huge block. */
XA_HIDDEN bool xa_huge_free(void *p);
/* Resize huge block p (known live) to n >= XA_HUGE_MIN bytes; NULL on
 * failure, p intact. */
XA_HIDDEN void *xa_huge_realloc(void *p, size_t n);
/* Unmap cached mappings older than the decay time at now (UINT64_MAX:
 * all); returns the bytes still cached. */
XA_HIDDEN size_t xa_huge_cache_decay(uint64_t now);
/* Live huge blocks, their bytes, and bytes of cached freed mappings. */
XA_HIDDEN void xa_huge_stats(size_t *count, size_t *bytes, size_t *cached);

XA_HIDDEN void xa_huge_prefork(void);
XA_HIDDEN void xa_huge_postfork_parent(void);
XA_HIDDEN void xa_huge_postfork_child(void);
#endif
