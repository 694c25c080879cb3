/* Huge allocations (>= XA_HUGE_MIN): carved from 2 MiB-aligned regions of
 * reserved address space, with freed extents reused (resident pages
 * first, moved together with mremap when none is big enough) and merged,
 * purged by decay; registered in an address-keyed hash table.  realloc
 * grows in place or moves pages with mremap (see huge.c; malloc.c copies
 * instead below XA_REMAP_MIN). */
#ifndef XA_HUGE_H
#define XA_HUGE_H
#include "internal.h"

#define XA_HUGE_ALIGN ((size_t)2 << 20)
/* Blocks that ask for huge pages (thp_min_bytes, 2 MiB by default) are
 * whole, aligned huge pages from this size up (huge.c, block_size): the
 * rounding then costs at most a fifth of the block. */
#define XA_THP_WHOLE_MIN ((size_t)8 << 20)
/* The most shards (huge.c): one per arena up to this. */
#define XA_HUGE_SHARDS 16

/* A block of at least n bytes aligned to align; *zeroed tells whether it
 * reads as zero (clean pages only).  sparse: the block may be touched
 * only here and there (calloc's), so it asks for no huge pages under
 * thp:auto.  NULL on failure. */
XA_HIDDEN void *xa_huge_alloc(size_t n, size_t align, bool sparse, bool *zeroed);
/* The bytes a (not calloc'd) huge block of n bytes takes: whole pages,
 * or whole 2 MiB pages where it asks for huge pages (huge.c). */
XA_HIDDEN size_t xa_huge_block_size(size_t n);
/* Usable size of huge block p, or 0 if p is not the start of one. */
XA_HIDDEN size_t xa_huge_usable(const void *p);
/* Is p inside a free extent of the huge regions (a freed block)? */
XA_HIDDEN bool xa_huge_is_cached(const void *p);
/* Free p (its extent stays resident until decay); false if p is not a
 * live huge block. */
XA_HIDDEN bool xa_huge_free(void *p);
/* How xa_huge_realloc may grow a block. */
enum xa_huge_grow {
  XA_GROW_IN_PLACE,   /* over any free pages right after it */
  XA_GROW_RESIDENT,   /* the same, but not over clean pages while a dirty
                         extent could hold the whole grown block: the
                         caller copies the block there instead, which
                         costs less than the page faults of fresh pages */
  XA_GROW_MOVE,       /* in place, else by moving its pages (mremap) */
};
/* Resize huge block p (known live) to n bytes (rounded as
 * xa_huge_block_size does): in place, else (XA_GROW_MOVE) by moving its
 * pages; NULL on failure, p intact.  Shrinking always succeeds in place. */
XA_HIDDEN void *xa_huge_realloc(void *p, size_t n, enum xa_huge_grow how);
/* Purge free extents dirty for longer than the decay time at now
 * (UINT64_MAX: all, and unmap every wholly free region); returns the
 * dirty bytes left. */
XA_HIDDEN size_t xa_huge_cache_decay(uint64_t now);
/* Keep the cache within bytes too (a memory limit's share: pressure.c);
 * SIZE_MAX: huge_cache_bytes alone. */
XA_HIDDEN void xa_huge_limit_cache(size_t bytes);
/* The cache's budget in effect (beyond the live huge bytes' peak). */
XA_HIDDEN size_t xa_huge_cache_budget(void);
/* Purge about bytes (whole huge pages where they are asked for) of the
 * oldest dirty free extents, shard after shard: what the cache owes the
 * budget it shares with the arenas (budget.h).  Returns the bytes
 * purged; none with dirty_decay_ms -1. */
XA_HIDDEN size_t xa_huge_purge_bytes(size_t bytes);
/* Live huge blocks, their bytes, and dirty (resident) free bytes. */
XA_HIDDEN void xa_huge_stats(size_t *count, size_t *bytes, size_t *cached);
/* Resident bytes of live huge blocks and of the free extents kept dirty
 * (mincore, outside the lock, over a list taken under it). */
XA_HIDDEN void xa_huge_resident(size_t *live, size_t *cached);
/* Requests served by gathering dirty pages (huge.c), ever, and the bytes
 * moved. */
XA_HIDDEN void xa_huge_gather_stats(uint64_t *count, uint64_t *bytes);
/* How many shards there are, and how often their locks made a caller
 * wait, ever. */
XA_HIDDEN void xa_huge_lock_stats(unsigned *count, uint64_t *contended);
/* The arenas' chunks (chunk.h's source, set by init.c): size bytes
 * aligned to size from the regions' free extents, resident pages first;
 * *clean: every page reads as zero; *tag names the shard for the give.
 * NULL if no region has room (none is made for chunks).  A chunk given back is a free
 * extent like a freed block's: dirty (unless clean), purged by decay and
 * within the cache's budget. */
XA_HIDDEN void *xa_huge_chunk_take(size_t size, bool *clean, unsigned *tag);
XA_HIDDEN void xa_huge_chunk_give(void *p, size_t size, unsigned tag, bool clean);
/* Bytes of the chunks taken and not given back. */
XA_HIDDEN size_t xa_huge_chunk_bytes(void);
/* Bytes the regions reserve, chunks included (0: none to take from). */
XA_HIDDEN extern size_t xa_huge_region_bytes;
/* Bytes of address space the regions reserve, less what chunks took. */
XA_HIDDEN size_t xa_huge_reserved(void);
/* Dirty free bytes of all shards (read without a lock: a hint). */
XA_HIDDEN size_t xa_huge_dirty(void);
/* Bytes of the shards' own mappings: the block tables and the free
 * extents' record segments (read without a lock; stats.metadata). */
XA_HIDDEN size_t xa_huge_metadata(void);
/* Of which resident (mincore; locks taken, none across a system call):
 * xa_explain's metadata. */
XA_HIDDEN size_t xa_huge_metadata_resident(void);

XA_HIDDEN void xa_huge_prefork(void);
XA_HIDDEN void xa_huge_postfork_parent(void);
XA_HIDDEN void xa_huge_postfork_child(void);
#endif
