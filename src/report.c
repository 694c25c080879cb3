/* Report writer (report.h). */
#include "report.h"
#include "fmt.h"
#include "os.h"
#include <string.h>

void xa_report_flush(struct xa_report *o) {
  if (!o->n) return;
  o->buf[o->n] = 0;
  if (o->cb) o->cb(o->opaque, o->buf);
  else xa_os_write_err(o->buf, o->n);
  o->n = 0;
}

void xa_report_str(struct xa_report *o, const char *s) {
  while (*s) {
    if (o->n == sizeof o->buf - 1) xa_report_flush(o);
    o->buf[o->n++] = *s++;
  }
}

void xa_report_dec(struct xa_report *o, uint64_t v) {
  char num[24];
  num[xa_fmt_dec(num, v)] = 0;
  xa_report_str(o, num);
}

void xa_report_dec_w(struct xa_report *o, uint64_t v, size_t w) {
  char num[24];
  size_t k = xa_fmt_dec(num, v);
  num[k] = 0;
  for (size_t i = k; i < w; i++) xa_report_str(o, " ");
  xa_report_str(o, num);
}

void xa_report_str_w(struct xa_report *o, const char *s, size_t w) {
  xa_report_str(o, s);
  for (size_t i = strlen(s); i < w; i++) xa_report_str(o, " ");
}
