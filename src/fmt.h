/* Number formatting for messages and statistics, without stdio, locale or
 * allocation: the caller's buffer receives the digits, unterminated. */
#ifndef XA_FMT_H
#define XA_FMT_H
#include "internal.h"

/* "0x" and lower-case hex digits (at most 18 bytes); returns the length. */
XA_HIDDEN size_t xa_fmt_hex(char *buf, uintptr_t v);
/* Decimal digits (at most 20 bytes); returns the length. */
XA_HIDDEN size_t xa_fmt_dec(char *buf, uint64_t v);
#endif
