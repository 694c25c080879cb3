/* Size classes.  Sizes 16..128 step by 16; above, four classes per
 * doubling (160, 192, 224, 256, 320, ...) up to XA_SMALL_MAX.  Every class
 * size is m * 2^k with m in {1, 3, 5, 7}: worst-case internal waste < 20%.
 *
 * size -> class: malloc's fast path loads it from a table with a byte per
 * size (xa_sizeclass_direct), filled from the formula (clz arithmetic)
 * as sizes come; slow paths compute it. */
#ifndef XA_SIZECLASS_H
#define XA_SIZECLASS_H
#include "internal.h"

/* Empty slabs an arena's bin keeps (on its nonfull list, at least one)
 * instead of giving their pages back at once, up to this many bytes: a
 * class whose objects come back in batches as fast as they go out
 * (producer/consumer) would otherwise release and carve slabs over and
 * over.  32 KiB is what one flush of a default cache bin hands back (half
 * of 64 KiB); 64 KiB measured no faster and kept more pages per class.
 * Kept slabs' pages still decay to the OS like any free page. */
#define XA_EMPTY_SLAB_BYTES 32768

/* Per-class facts, filled by xa_sizeclass_init() from the formula. */
struct xa_class_info {
  uint32_t size;        /* object size in bytes */
  uint32_t slab_pages;  /* pages per slab */
  uint32_t nobjs;       /* objects per slab */
  uint32_t tcache_cap;  /* thread cache slots (xa_tcache_init_global) */
  uint32_t tcache_max;  /* slots a boosted bin may have (tcache.c) */
  uint64_t recip;       /* ceil(2^40 / size): offset -> index by multiply */
  uint32_t page_objs;   /* free objects that may make a whole page free */
  uint32_t empty_keep;  /* empty slabs an arena's bin keeps (XA_EMPTY_SLAB_BYTES) */
};

XA_HIDDEN extern struct xa_class_info xa_classes[XA_NSMALL];
/* ceil(2^64 / size): off % size == 0 iff off * magic < magic (mod 2^64)
 * for off < 2^32 (Lemire, Kaser, Kurz 2019).  Checks object starts in free. */
XA_HIDDEN extern uint64_t xa_class_divmagic[256];   /* 0 past XA_NSMALL (xa_small_lookup
                                                       indexes it with any page's class) */
/* mesh: meshing runs (mesh.h), which wants bigger slabs for small classes. */
XA_HIDDEN void xa_sizeclass_init(size_t page, bool mesh);
/* Pages of a slab of objects of `size` bytes (sizeclass.c has the rules). */
XA_HIDDEN unsigned xa_sizeclass_slab_pages(size_t size, size_t page, bool mesh);

#define XA_RECIP_SHIFT 40

/* Class of a size above 128. */
XA_INLINE unsigned xa_sizeclass_of_big(size_t n) {
  size_t m = n - 1;
  unsigned k = 63u - (unsigned)__builtin_clzl(m);    /* floor(log2(m)), >= 7 */
  return 8u + 4u * (k - 7u) + (unsigned)(m >> (k - 2u)) - 4u;
}

/* Class of any size 0 <= n <= XA_SMALL_MAX. */
XA_INLINE unsigned xa_sizeclass_compute(size_t n) {
  if (n <= 128) return n == 0 ? 0 : (unsigned)((n + 15) >> 4) - 1u;
  return xa_sizeclass_of_big(n);
}

/* The size table holds (class + 1) * XA_BIN_SCALE (internal.h). */
_Static_assert(XA_NSMALL * XA_BIN_SCALE < 256, "scaled class fits a byte");
XA_INLINE unsigned xa_class_scale(unsigned cls) { return (cls + 1) * XA_BIN_SCALE; }
/* The same for n <= XA_SMALL_MAX, and scaled (xa_class_scale). */
XA_INLINE unsigned xa_sizeclass_of(size_t n) { return xa_sizeclass_compute(n); }
XA_INLINE unsigned xa_sizeclass_scaled(size_t n) { return xa_class_scale(xa_sizeclass_compute(n)); }

/* malloc's fast mapping (n <= XA_SMALL_MAX): the same scaled class, from a
 * table with one byte per size, which the fast path indexes with n itself
 * (two instructions fewer than rounding n to 16 bytes and loading from a
 * table of 2 KiB, as it did).  Its first page (sizes below 4 KiB) is
 * filled at initialisation; the rest a cache line at a time by the slow
 * path, for the sizes a program asks for: filled whole, its 32 KiB would
 * be resident in every process.  An entry not filled yet reads 0, the
 * scaled class of the dummy bin, whose pop gate is closed: the request
 * goes to the slow path, which fills the line (xa_sizeclass_direct_fill).
 * Entries go from 0 to their class once; readers see either. */
XA_HIDDEN extern uint8_t xa_class_direct[XA_SMALL_MAX + 1];
XA_INLINE unsigned xa_sizeclass_direct(size_t n) { return __atomic_load_n(&xa_class_direct[n], __ATOMIC_RELAXED); }
XA_HIDDEN void xa_sizeclass_direct_fill(size_t n);

/* Is byte offset off (< 2^32) a multiple of class c's size? */
XA_INLINE bool xa_sizeclass_divides(size_t c, uint32_t off) {
  return (uint64_t)off * xa_class_divmagic[c] < xa_class_divmagic[c];
}

/* Index of the object of a class-c slab that byte offset off falls in
 * (rounded down: callers that need off to be an object's start compare
 * the index times the size with off). */
XA_INLINE uint32_t xa_sizeclass_index(unsigned c, uintptr_t off) {
  return (uint32_t)((off * xa_classes[c].recip) >> XA_RECIP_SHIFT);
}
#endif
