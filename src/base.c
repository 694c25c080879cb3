/* Metadata bump allocator over 2 MiB blocks mapped from the OS layer. */
#include "base.h"
#include "os.h"

#define BASE_BLOCK ((size_t)2 << 20)

xa_lock_t xa_base_lock = XA_LOCK_INIT;
static char *base_cur, *base_end;
static size_t base_total;

void *xa_base_alloc(size_t size) {
  size = XA_ALIGN_UP(size, 64);
  xa_lock(&xa_base_lock);
  if ((size_t)(base_end - base_cur) < size) {
    size_t blk = size > BASE_BLOCK ? XA_ALIGN_UP(size, xa_os_page) : BASE_BLOCK;
    xa_unlock(&xa_base_lock);            /* no lock across mmap */
    char *b = xa_os_map(blk, xa_os_page);
    if (!b) return NULL;
    xa_lock(&xa_base_lock);
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
