/* Metadata memory (arenas, thread caches, huge tables): bump-allocated from
 * mapped blocks, never returned, never through the public malloc. */
#ifndef XA_BASE_H
#define XA_BASE_H
#include "internal.h"
#include "lock.h"

/* Zeroed, 64-byte aligned; NULL when the OS refuses memory. */
XA_HIDDEN void *xa_base_alloc(size_t size);
XA_HIDDEN size_t xa_base_allocated(void);
/* Resident bytes of the metadata blocks (mincore). */
XA_HIDDEN size_t xa_base_resident(void);
XA_HIDDEN extern xa_lock_t xa_base_lock;
#endif
