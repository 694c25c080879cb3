/* mlockall without mapping in xalloc's tables.
 *
 * mlockall(MCL_CURRENT) maps in every page of every mapping.  Two of
 * xalloc's are tables over the whole address space that a program touches
 * a few pages of: the page map, a read-only reservation of 256 GiB on
 * x86_64 (chunk.c), and the chunk map, 32 MiB of bss.  Mapped in, the
 * first costs 512 MiB of page tables (the kernel sets a page table aside
 * for each huge zero page it maps) and 0.4 s, the second 32 MiB of RSS.
 * xalloc's mlockall locks them as their pages are touched (MCL_ONFAULT for
 * them alone) and everything else as the C library's would (os.c:
 * xa_os_mlockall_sparing).  MCL_FUTURE and MCL_ONFAULT calls, and calls
 * before the allocator's first use, go to the kernel as they are. */
#include "chunk.h"
#include "init.h"
#include "os.h"

XA_EXPORT int mlockall(int flags) {
  uintptr_t tables[2][2];
  size_t n = xa_init_done ? xa_chunk_tables(tables) : 0;
  return xa_os_mlockall_sparing(flags, (const uintptr_t (*)[2])tables, n);
}
