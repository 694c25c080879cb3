/* mlockall without mapping in xalloc's tables.
 *
 * mlockall(MCL_CURRENT) maps in every page of every mapping.  Three of
 * xalloc's are tables over the whole address space that a program touches
 * a few pages of: the page map, a read-only reservation of 256 GiB on
 * x86_64 (chunk.c), the chunk map, 32 MiB of bss (chunk.c), and the
 * huge-block map's top level, 1 MiB of bss (hugemap.c).  Mapped in, the
 * first costs 512 MiB of page tables (the kernel sets a page table aside
 * for each huge zero page it maps) and 0.3-0.8 s, the others 33 MiB of
 * RSS.  xalloc's mlockall locks them as their pages are touched
 * (MCL_ONFAULT for them alone) and everything else as the C library's
 * would (os.c: xa_os_mlockall_sparing).  MCL_FUTURE and MCL_ONFAULT calls,
 * and calls before the allocator's first use, go to the kernel as they
 * are. */
#include "chunk.h"
#include "hugemap.h"
#include "init.h"
#include "os.h"

/* The whole pages of [p, p+size) as {start, end} in out[n], if any;
 * returns the new count. */
static size_t add_pages(uintptr_t out[][2], size_t n, const void *p, size_t size) {
  uintptr_t lo = XA_ALIGN_UP((uintptr_t)p, xa_os_page), hi = ((uintptr_t)p + size) & ~(uintptr_t)(xa_os_page - 1);
  if (lo >= hi) return n;
  out[n][0] = lo;
  out[n][1] = hi;
  return n + 1;
}

XA_EXPORT int mlockall(int flags) {
  uintptr_t tables[3][2];
  size_t n = 0;
  if (__atomic_load_n(&xa_init_done, __ATOMIC_ACQUIRE)) {
    n = add_pages(tables, n, xa_chunkmap, sizeof xa_chunkmap);
    n = add_pages(tables, n, xa_hugemap_top, sizeof xa_hugemap_top);
    size_t units = __atomic_load_n(&xa_pagemap_units, __ATOMIC_ACQUIRE);
    if (units) n = add_pages(tables, n, xa_pagemap, units * sizeof(struct xa_pageinfo));
  }
  int rc = xa_os_mlockall_sparing(flags, (const uintptr_t (*)[2])tables, n);
  /* are new mappings resident at once from now on?  (xa_os_populating:
   * huge.c keeps no free region then) */
  if (rc == 0) (void)xa_os_maps_populated();
  return rc;
}
