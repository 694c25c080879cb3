/* Size-class table, derived from one formula at initialisation (nothing is
 * hand-typed): class sizes and slab geometry. */
#include "sizeclass.h"

uint8_t xa_class_direct[XA_SMALL_MAX + 1] XA_BSS_TABLE __attribute__((aligned(4096)));
struct xa_class_info xa_classes[XA_NSMALL];
uint64_t xa_class_divmagic[256];

_Static_assert(XA_NSMALL == 8 + 4 * (15 - 7), "40 classes: 16..128 by 16, then 4 per doubling to 32 KiB");
_Static_assert(XA_SMALL_MAX == 32768, "small limit matches the class count");

static size_t class_size(unsigned c) {
  if (c < 8) return 16u * (c + 1u);
  unsigned k = 7u + (c - 8u) / 4u;          /* doubling (2^k, 2^(k+1)] */
  return ((size_t)4u + (c - 8u) % 4u + 1u) << (k - 2u);
}

/* Slab pages: the smallest run of pages, at least min_bytes and holding at
 * least 4 objects, whose tail waste is at most 1/16.  Classes up to 256 B
 * take 16 KiB (fewer slab changes per refill); larger ones 8 KiB, so that
 * after random frees more of their slabs empty wholly and go back to the
 * free spans, where any class can reuse them (the fragmentation
 * workload).  8 KiB is the floor: a slab's bitmap lives in the span slots
 * of its pages after the first.
 * With meshing on, classes up to 256 B take 64 KiB: each meshed slab is a
 * mapping of its own, and the map count, not the memory, is what stops
 * meshing (mesh.c: half of vm.max_map_count), so a slab four times as big
 * frees four times the memory per mapping.  A heap of 16-112 B objects
 * with a random 1% kept fell to 62 MB instead of 297 (32 KiB: 178 MB).
 * 64 KiB is the most the 16-byte class can have: meshing compares bitmaps
 * of at most 4096 objects (arena.c, MESH_MAX_WORDS). */
unsigned xa_sizeclass_slab_pages(size_t size, size_t page, bool mesh) {
  size_t min_bytes = size <= 256 ? (mesh ? 65536 : 16384) : 8192;
  size_t min_objs = size < 4096 ? 4 : 1;
  unsigned best = 1;
  for (unsigned k = 1; k <= 64; k++) {
    size_t bytes = k * page;
    if (bytes < min_bytes || bytes / size < min_objs) continue;
    if ((bytes % size) * 16 <= bytes) return k;
    if (best == 1) best = k;
  }
  return best;
}

void xa_sizeclass_init(size_t page, bool mesh) {
  for (unsigned c = 0; c < XA_NSMALL; c++) {
    struct xa_class_info *ci = &xa_classes[c];
    size_t size = class_size(c);
    ci->size = (uint32_t)size;
    ci->slab_pages = xa_sizeclass_slab_pages(size, page, mesh);
    ci->nobjs = (uint32_t)(ci->slab_pages * page / size);
    ci->recip = (((uint64_t)1 << XA_RECIP_SHIFT) + size - 1) / size;
    xa_class_divmagic[c] = UINT64_MAX / size + 1;
    ci->page_objs = (uint32_t)((page + size - 1) / size);
    size_t slab_bytes = ci->slab_pages * page;
    ci->empty_keep = slab_bytes >= XA_EMPTY_SLAB_BYTES ? 1 : (uint32_t)(XA_EMPTY_SLAB_BYTES / slab_bytes);
  }
  /* malloc's table: its first page (sizes below 4 KiB) now, which nearly
   * every program asks for (one write fault instead of a read and then a
   * write), the rest as sizes come (xa_sizeclass_direct_fill) */
  for (size_t i = 0; i < 4096; i += 64) xa_sizeclass_direct_fill(i);
}

void xa_sizeclass_direct_fill(size_t n) {
  size_t first = n & ~(size_t)63, last = first + 63 < XA_SMALL_MAX ? first + 63 : XA_SMALL_MAX;
  for (size_t i = first; i <= last; i++)
    __atomic_store_n(&xa_class_direct[i], (uint8_t)xa_sizeclass_scaled(i), __ATOMIC_RELAXED);
}
