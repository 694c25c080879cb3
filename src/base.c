/* Metadata bump allocator over 2 MiB blocks mapped from the OS layer. */
#include "base.h"
#include "os.h"

#define BASE_BLOCK ((size_t)2 << 20)

xa_lock_t xa_base_lock = XA_LOCK_INIT;
static char *base_cur, *base_end;
static size_t base_total;
/* Every block, for xa_base_resident: those past BLOCKS_KEPT count as
 * resident whole. */
#define BLOCKS_KEPT 256
static struct { void *p; size_t size; } blocks[BLOCKS_KEPT] XA_BSS_TABLE __attribute__((aligned(4096)));
static unsigned nblocks;

static void keep_block(void *p, size_t size) {   /* base lock held */
  if (nblocks < BLOCKS_KEPT) {
    blocks[nblocks].p = p;
    blocks[nblocks].size = size;
  }
  nblocks++;
}

size_t xa_base_resident(void) {
  xa_lock(&xa_base_lock);
  unsigned n = nblocks < BLOCKS_KEPT ? nblocks : BLOCKS_KEPT;
  size_t listed = 0, total = base_total;
  void *p[BLOCKS_KEPT];
  size_t size[BLOCKS_KEPT];
  for (unsigned i = 0; i < n; i++) {
    p[i] = blocks[i].p;
    size[i] = blocks[i].size;
    listed += size[i];
  }
  xa_unlock(&xa_base_lock);
  size_t res = total - listed;               /* the unlisted: all of them */
  for (unsigned i = 0; i < n; i++) res += xa_os_resident_range(p[i], size[i], NULL);
  return res;
}

void *xa_base_alloc(size_t size) {
  size = XA_ALIGN_UP(size, 64);
  xa_lock(&xa_base_lock);
  if ((size_t)(base_end - base_cur) < size) {
    size_t blk = size > BASE_BLOCK ? XA_ALIGN_UP(size, xa_os_page) : BASE_BLOCK;
    xa_unlock(&xa_base_lock);            /* no lock across mmap */
    char *b = xa_os_map(blk, xa_os_page);
    if (!b) return NULL;
    xa_lock(&xa_base_lock);
    keep_block(b, blk);
    if (blk > BASE_BLOCK) {              /* a private block for a big request */
      base_total += blk;
      xa_unlock(&xa_base_lock);
      return b;
    }
    /* The tail of the old block is abandoned (small). */
    base_cur = b;
    base_end = b + blk;
    base_total += blk;
  }
  void *p = base_cur;
  base_cur += size;
  xa_unlock(&xa_base_lock);
  return p;
}

size_t xa_base_allocated(void) { return __atomic_load_n(&base_total, __ATOMIC_RELAXED); }
