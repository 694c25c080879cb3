/* The writer of the text and JSON reports (statistics, explain): text goes
 * through a small buffer to a callback, in pieces of at most 511 bytes, or
 * to stderr; no stdio, no allocation. */
#ifndef XA_REPORT_H
#define XA_REPORT_H
#include "internal.h"

struct xa_report {
  void (*cb)(void *opaque, const char *text);   /* NULL: stderr */
  void *opaque;
  size_t n;
  char buf[512];
};

XA_HIDDEN void xa_report_flush(struct xa_report *o);
XA_HIDDEN void xa_report_str(struct xa_report *o, const char *s);
XA_HIDDEN void xa_report_dec(struct xa_report *o, uint64_t v);
/* Right-aligned in a column of width w. */
XA_HIDDEN void xa_report_dec_w(struct xa_report *o, uint64_t v, size_t w);
/* s left-aligned in a column of width w. */
XA_HIDDEN void xa_report_str_w(struct xa_report *o, const char *s, size_t w);
#endif
