/* Initialisation (at load, or lazily at the first call if that comes
 * earlier) and fork handling. */
#ifndef XA_INIT_H
#define XA_INIT_H
#include "internal.h"

XA_HIDDEN extern int xa_init_done;
XA_HIDDEN bool xa_init_slow(void);
XA_INLINE bool xa_init(void) {
  return likely(__atomic_load_n(&xa_init_done, __ATOMIC_ACQUIRE)) || xa_init_slow();
}
#endif
