/* The huge-block map (hugemap.h). */
#include "hugemap.h"

uint32_t *xa_hugemap_top[XA_HUGEMAP_TOP] XA_BSS_TABLE;
static size_t leaves_mapped;            /* bytes of leaves, counted as metadata */

static size_t leaf_bytes(void) {
  return (((size_t)1 << XA_HUGEMAP_LEAF_SHIFT) >> xa_os_page_shift) * sizeof(uint32_t);
}

bool xa_hugemap_cover(uintptr_t base, size_t size) {
  if (!size) return true;
  size_t last = (base + size - 1) >> XA_HUGEMAP_LEAF_SHIFT;
  if (last >= XA_HUGEMAP_TOP) return false;
  bool ok = true;
  for (size_t g = base >> XA_HUGEMAP_LEAF_SHIFT; g <= last; g++) {
    if (__atomic_load_n(&xa_hugemap_top[g], __ATOMIC_ACQUIRE)) continue;
    uint32_t *leaf = xa_os_map(leaf_bytes(), xa_os_page);
    if (!leaf) {
      ok = false;
      continue;
    }
    /* A leaf is touched only where blocks start: no transparent huge page
     * may back it whole (under the system setting "always" one could, once
     * the leaf's mapping merged with a neighbour into 2 MiB). */
    xa_os_hugepage(leaf, leaf_bytes(), false);
    uint32_t *none = NULL;
    /* another thread's region may share this GiB and have mapped it */
    if (!__atomic_compare_exchange_n(&xa_hugemap_top[g], &none, leaf, false, __ATOMIC_RELEASE,
                                     __ATOMIC_ACQUIRE))
      xa_os_unmap(leaf, leaf_bytes());
    else
      __atomic_add_fetch(&leaves_mapped, leaf_bytes(), __ATOMIC_RELAXED);
  }
  return ok;
}

void xa_hugemap_set(uintptr_t p, size_t size, unsigned shard) {
  size_t g = p >> XA_HUGEMAP_LEAF_SHIFT;
  if (g >= XA_HUGEMAP_TOP) return;
  uint32_t *leaf = __atomic_load_n(&xa_hugemap_top[g], __ATOMIC_ACQUIRE);
  if (!leaf) return;
  size_t pages = size >> xa_os_page_shift;
  /* too many pages for an entry: unknown here, the table answers */
  uint32_t v = !pages || pages >> (32 - XA_HUGEMAP_SHARD_BITS) ? 0 : (uint32_t)(pages << XA_HUGEMAP_SHARD_BITS) | shard;
  size_t off = p & (((size_t)1 << XA_HUGEMAP_LEAF_SHIFT) - 1);
  __atomic_store_n(&leaf[off >> xa_os_page_shift], v, __ATOMIC_RELAXED);
}

void xa_hugemap_forget(uintptr_t base, size_t size) {
  size_t gib = (size_t)1 << XA_HUGEMAP_LEAF_SHIFT;
  for (uintptr_t a = base; a < base + size;) {
    uintptr_t g_end = (a | (gib - 1)) + 1, end = base + size < g_end ? base + size : g_end;
    size_t g = a >> XA_HUGEMAP_LEAF_SHIFT;
    uint32_t *leaf = g < XA_HUGEMAP_TOP ? __atomic_load_n(&xa_hugemap_top[g], __ATOMIC_ACQUIRE) : NULL;
    if (leaf) {
      /* whole leaf pages only: the entries of [a, end) */
      uintptr_t lo = (uintptr_t)&leaf[(a & (gib - 1)) >> xa_os_page_shift];
      uintptr_t hi = (uintptr_t)&leaf[((end - 1) & (gib - 1)) >> xa_os_page_shift] + sizeof(uint32_t);
      lo = XA_ALIGN_UP(lo, xa_os_page);
      hi &= ~(uintptr_t)(xa_os_page - 1);
      if (hi > lo) xa_os_purge((void *)lo, hi - lo);
    }
    a = end;
  }
}

size_t xa_hugemap_mapped(void) { return __atomic_load_n(&leaves_mapped, __ATOMIC_RELAXED); }
