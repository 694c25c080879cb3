/* Misuse and corruption reports: one line on stderr, written without
 * allocating ("xalloc: <function>: <what> <pointer>"), then abort. */
#ifndef XA_ERROR_H
#define XA_ERROR_H
#include "internal.h"

XA_HIDDEN __attribute__((noreturn)) XA_COLD void xa_error_pointer(const char *fn, const char *what, const void *p);
/* Format helpers shared with the statistics printer. */
XA_HIDDEN size_t xa_fmt_hex(char *buf, uintptr_t v);
XA_HIDDEN size_t xa_fmt_dec(char *buf, uint64_t v);
#endif
