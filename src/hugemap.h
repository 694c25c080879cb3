/* The huge-block map: the size of each live huge block in the regions,
 * by its start address, readable without a lock.
 *
 * realloc and malloc_usable_size need a huge block's size on every call
 * (a K/V tensor grown by realloc asks once per row); the block table in
 * huge.c answers under a shard's lock, which two threads growing tensors
 * would pass back and forth.  This map answers with two loads: a top
 * table of one leaf per GiB of address space (bss, touched lazily), and
 * in a leaf one 32-bit entry per page (mapped without a swap reservation
 * when a region is created; only the pages holding block starts are ever
 * touched): the block's page count and, in the low XA_HUGEMAP_SHARD_BITS,
 * the huge shard it belongs to, so that free() goes to the right shard's
 * lock at once.  Blocks of 2^28 pages (1 TiB) or more are not recorded.
 *
 * Entries are written under the shard's lock (huge.c) before a block's
 * address is handed out and cleared before it can be reused, so a caller
 * that owns a live block reads its size; 0 means "not known here" (not a
 * region block's start, or no leaf), and the caller then asks the table.
 * Leaves are never unmapped, so a stray pointer can read a wrong zero but
 * never fault. */
#ifndef XA_HUGEMAP_H
#define XA_HUGEMAP_H
#include "internal.h"
#include "os.h"

#define XA_HUGEMAP_LEAF_SHIFT 30            /* one leaf per GiB */
#define XA_HUGEMAP_TOP ((size_t)1 << (XA_VA_BITS - XA_HUGEMAP_LEAF_SHIFT))
#define XA_HUGEMAP_SHARD_BITS 4             /* shards 0..15 */

XA_HIDDEN extern uint32_t *xa_hugemap_top[XA_HUGEMAP_TOP];

/* Map the leaves covering [base, base+size); false if one could not be
 * mapped (blocks there are then only in huge.c's table).  No lock held:
 * it may map memory. */
XA_HIDDEN bool xa_hugemap_cover(uintptr_t base, size_t size);
/* Record the block at p (page aligned) as size bytes of shard shard
 * (< 2^XA_HUGEMAP_SHARD_BITS), size 0 to forget it.  The shard's lock is
 * held. */
XA_HIDDEN void xa_hugemap_set(uintptr_t p, size_t size, unsigned shard);
/* Give back the pages of leaves that only describe [base, base+size),
 * where no block is live any more (a region being released, still
 * mapped so that nobody else is handed its addresses).  No lock held. */
XA_HIDDEN void xa_hugemap_forget(uintptr_t base, size_t size);
/* Bytes of leaves mapped (never unmapped): metadata in the statistics. */
XA_HIDDEN size_t xa_hugemap_mapped(void);

/* The size of the live huge block at p, or 0 if the map does not know
 * it; *shard: the shard it belongs to (when the size is not 0). */
XA_INLINE size_t xa_hugemap_lookup(uintptr_t p, unsigned *shard) {
  size_t g = p >> XA_HUGEMAP_LEAF_SHIFT;
  if (g >= XA_HUGEMAP_TOP) return 0;
  uint32_t *leaf = __atomic_load_n(&xa_hugemap_top[g], __ATOMIC_ACQUIRE);
  if (!leaf) return 0;
  size_t off = p & (((size_t)1 << XA_HUGEMAP_LEAF_SHIFT) - 1);
  if (off & (xa_os_page - 1)) return 0;
  uint32_t v = __atomic_load_n(&leaf[off >> xa_os_page_shift], __ATOMIC_RELAXED);
  *shard = v & ((1u << XA_HUGEMAP_SHARD_BITS) - 1);
  return (size_t)(v >> XA_HUGEMAP_SHARD_BITS) << xa_os_page_shift;
}

/* The size alone. */
XA_INLINE size_t xa_hugemap_get(uintptr_t p) {
  unsigned shard;
  return xa_hugemap_lookup(p, &shard);
}
#endif
