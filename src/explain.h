/* Where the resident memory is: the kernel's account of the process
 * (/proc/self/smaps_rollup) set against xalloc's own, each part of
 * xalloc's measured with mincore over its mappings (not inferred from
 * counters), and the rest named as what lies outside the allocator.  The
 * report ends with the largest part an option could shrink.
 *
 * xalloc's resident bytes, in parts that add up to them:
 *   small objects: each class's resident slab pages, split into live
 *     objects, objects cached by threads, and free slots (the slab pages
 *     that hold neither: fragmentation inside slabs);
 *   large and huge blocks: their resident pages;
 *   free pages: dirty (waiting for decay), muzzy (MADV_FREE'd, counted as
 *     LazyFree by the kernel), clean ones resident anyway, those being
 *     purged; the huge-block cache;
 *   metadata: chunk headers, the thread caches' arrays, tables, the
 *     chunk map's written pages. */
#ifndef XA_EXPLAIN_H
#define XA_EXPLAIN_H
#include "internal.h"
#include "os.h"
#include "report.h"
#include "sizeclass.h"

struct xa_explain {
  bool kernel_known;
  struct xa_os_rollup k;
  /* xalloc's resident bytes by part */
  uint64_t live_small, cached, free_slots, large, huge, dirty, muzzy, clean, purging, huge_cache, metadata;
  uint64_t resident;            /* the sum of the parts */
  uint64_t mapped;              /* address space xalloc holds */
  bool rounding_known;          /* prof:true: */
  uint64_t rounding;            /* bytes of live_small lost to size-class rounding */
  struct {
    uint64_t slabs, live, cached, resident;
  } cls[XA_NSMALL];
};

/* Measure now (mincore over every mapping of xalloc's: takes a while on
 * a big heap, with no lock held across the system calls). */
XA_HIDDEN void xa_explain_gather(struct xa_explain *e);
/* Print e as text or as one JSON object (no newline after it). */
XA_HIDDEN void xa_explain_print(struct xa_report *o, const struct xa_explain *e, bool json);
#endif
