/* Huge allocations (>= XA_HUGE_MIN): each its own mapping, aligned to
 * 2 MiB (so transparent huge pages can back it), registered in an
 * address-keyed hash table.  realloc moves pages with mremap, never bytes. */
#ifndef XA_HUGE_H
#define XA_HUGE_H
#include "internal.h"

#define XA_HUGE_ALIGN ((size_t)2 << 20)

/* Fresh zeroed mapping of at least n bytes; NULL on failure. */
XA_HIDDEN void *xa_huge_alloc(size_t n, size_t align);
/* Usable size of huge block p, or 0 if p is not the start of one. */
XA_HIDDEN size_t xa_huge_usable(const void *p);
/* Unmap p; false if p is not a live huge block. */
XA_HIDDEN bool xa_huge_free(void *p);
/* Resize huge block p (known live) to n >= XA_HUGE_MIN bytes; NULL on
 * failure, p intact. */
XA_HIDDEN void *xa_huge_realloc(void *p, size_t n);
/* Live huge blocks and their bytes. */
XA_HIDDEN void xa_huge_stats(size_t *count, size_t *bytes);

XA_HIDDEN void xa_huge_prefork(void);
XA_HIDDEN void xa_huge_postfork_parent(void);
XA_HIDDEN void xa_huge_postfork_child(void);
#endif
