/* xalloc: a general-purpose malloc replacement for Linux.
 *
 * Programs get xalloc through the standard names (malloc, free, ...) by
 * LD_PRELOAD=libxalloc.so, by linking -lxalloc, or by linking libxalloc.a.
 * This header declares what <stdlib.h>/<malloc.h> of glibc 2.36 lack
 * (the C23 sized frees) and xalloc's own API, all prefixed xalloc_. */
#ifndef XALLOC_H
#define XALLOC_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define XALLOC_VERSION_MAJOR 0
#define XALLOC_VERSION_MINOR 1
#define XALLOC_VERSION_PATCH 0
/* The one place the version is written: the Makefile, configure and the
 * Debian package read the three numbers above; the string follows them. */
#define XALLOC_VERSION_STR_(a, b, c) #a "." #b "." #c
#define XALLOC_VERSION_STR(a, b, c) XALLOC_VERSION_STR_(a, b, c)
#define XALLOC_VERSION \
  XALLOC_VERSION_STR(XALLOC_VERSION_MAJOR, XALLOC_VERSION_MINOR, XALLOC_VERSION_PATCH)

/* C23: free p, which was allocated with a requested size of `size`.
 * A size that does not match the block is reported as misuse. */
void free_sized(void *p, size_t size);
/* C23: free p from aligned_alloc(alignment, size). */
void free_aligned_sized(void *p, size_t alignment, size_t size);

/* "major.minor.patch" of the library actually loaded. */
const char *xalloc_version(void);

/* Return free memory held by the allocator to the OS now: flush the calling
 * thread's cache and every other thread's that is outside an allocator
 * call (the others empty theirs at their next cache miss or full bin),
 * release empty spans and free huge-block pages with madvise, and unmap
 * wholly free huge-block regions.  Returns 1 if any memory was released,
 * 0 otherwise. */
int xalloc_purge(void);

/* Read and/or write a named value (see the README's table): oldp/oldlenp
 * receive the current value (8-byte integers; "version" a const char *),
 * newp/newlen give a new one.  Actions ("purge", "arena.<i>.purge",
 * "thread.tcache.flush") take neither.  Returns 0, or ENOENT (unknown
 * name), EINVAL (bad length or value), EPERM (read-only). */
int xalloc_ctl(const char *name, void *oldp, size_t *oldlenp, void *newp, size_t newlen);

/* Print statistics through write_cb(opaque, text) in pieces (stderr when
 * write_cb is NULL); opts containing 'J' selects JSON, else text. */
void xalloc_stats_print(void (*write_cb)(void *opaque, const char *text), void *opaque, const char *opts);

#ifdef __cplusplus
}
#endif
#endif
