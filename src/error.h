/* Misuse and corruption reports: one line on stderr, written without
 * allocating ("xalloc: <function>: <what> <pointer>"), then abort, unless
 * abort_on_error:false: then it returns and the caller ignores the call
 * (leaving the block as it was). */
#ifndef XA_ERROR_H
#define XA_ERROR_H
#include "internal.h"

XA_HIDDEN XA_COLD void xa_error_pointer(const char *fn, const char *what, const void *p);
/* A broken invariant (debug builds): "xalloc: assertion failed: <what> at
 * <file>:<line>", then abort whatever abort_on_error says. */
XA_HIDDEN __attribute__((noreturn)) XA_COLD void xa_error_assert(const char *what, const char *file, int line);
/* A state the process cannot go on from (a fork child that cannot get
 * its own copy of the heap): "xalloc: <what>", then abort. */
XA_HIDDEN __attribute__((noreturn)) XA_COLD void xa_error_fatal(const char *what);
#endif
