/* Memcheck support.  When the build finds valgrind's headers, xalloc tells
 * memcheck about every block it hands out and takes back (client requests:
 * a handful of instructions that do nothing outside valgrind), so programs
 * that link or preload xalloc can still be checked for overflows, uses
 * after free and leaks.  Under memcheck the thread caches are off and
 * realloc always moves, so every call passes through these hooks. */
#ifndef XA_VALGRIND_H
#define XA_VALGRIND_H
#include "internal.h"

#if !defined(XA_NO_VALGRIND) && defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define XA_VALGRIND 1
#endif
#endif
#ifndef XA_VALGRIND
#define XA_VALGRIND 0
#endif

/* Running under memcheck: set by xa_valgrind_init, at initialisation. */
XA_HIDDEN extern bool xa_on_valgrind;
XA_HIDDEN void xa_valgrind_init(void);
/* p..p+n is a new block (zeroed: reads as zero). */
XA_INLINE void xa_valgrind_alloc(const void *p, size_t n, bool zeroed) {
#if XA_VALGRIND
  if (unlikely(xa_on_valgrind)) VALGRIND_MALLOCLIKE_BLOCK(p, n, 0, zeroed);
#endif
}
/* Block p was freed. */
XA_INLINE void xa_valgrind_free(const void *p) {
#if XA_VALGRIND
  if (unlikely(xa_on_valgrind)) VALGRIND_FREELIKE_BLOCK(p, 0);
#endif
}
/* Fill n bytes of a block (junk, secure), also past the size memcheck
 * knows; memcheck then sees them as inaccessible until a MALLOCLIKE. */
XA_INLINE void xa_valgrind_fill(void *p, int c, size_t n) {
#if XA_VALGRIND
  if (unlikely(xa_on_valgrind)) VALGRIND_MAKE_MEM_UNDEFINED(p, n);
#endif
  __builtin_memset(p, c, n);
#if XA_VALGRIND
  if (unlikely(xa_on_valgrind)) VALGRIND_MAKE_MEM_NOACCESS(p, n);
#endif
}
/* Memory no block covers yet (a new chunk's span area). */
XA_INLINE void xa_valgrind_noaccess(const void *p, size_t n) {
#if XA_VALGRIND
  if (unlikely(xa_on_valgrind)) VALGRIND_MAKE_MEM_NOACCESS(p, n);
#endif
}
#endif
