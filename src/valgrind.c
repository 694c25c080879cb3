/* Memcheck detection (valgrind.h): once, at initialisation; every hook
 * then tests the flag. */
#include "valgrind.h"

bool xa_on_valgrind;

void xa_valgrind_init(void) {
#if XA_VALGRIND
  /* Only memcheck answers GET_VBITS (1: done): other tools, such as
   * callgrind measuring the fast path, keep the caches. */
  unsigned char probe = 0, vbits;
  xa_on_valgrind = RUNNING_ON_VALGRIND && VALGRIND_GET_VBITS(&probe, &vbits, 1) == 1;
#endif
}
