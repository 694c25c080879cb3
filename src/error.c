/* Error reporting without stdio or allocation. */
#include "error.h"
#include "fmt.h"
#include "options.h"
#include "os.h"
#include <string.h>

static size_t put(char *buf, size_t at, size_t cap, const char *s) {
  size_t n = strlen(s);
  if (at + n > cap) n = cap - at;
  memcpy(buf + at, s, n);
  return at + n;
}

void xa_error_pointer(const char *fn, const char *what, const void *p) {
  char line[256];
  size_t n = put(line, 0, sizeof line - 24, "xalloc: ");
  n = put(line, n, sizeof line - 24, fn);
  n = put(line, n, sizeof line - 24, ": ");
  n = put(line, n, sizeof line - 24, what);
  line[n++] = ' ';
  n += xa_fmt_hex(line + n, (uintptr_t)p);
  line[n++] = '\n';
  xa_os_write_err(line, n);
  if (xa_opt.abort_on_error) xa_os_abort();
}

void xa_error_assert(const char *what, const char *file, int line_no) {
  char line[256], num[24];
  size_t n = put(line, 0, 200, "xalloc: assertion failed: ");
  n = put(line, n, 200, what);
  n = put(line, n, 220, " at ");
  n = put(line, n, 230, file);
  line[n++] = ':';
  size_t k = xa_fmt_dec(num, (uint64_t)line_no);
  memcpy(line + n, num, k); n += k;
  line[n++] = '\n';
  xa_os_write_err(line, n);
  xa_os_abort();
}

void xa_error_fatal(const char *what) {
  char line[256];
  size_t n = put(line, 0, sizeof line - 1, "xalloc: ");
  n = put(line, n, sizeof line - 1, what);
  line[n++] = '\n';
  xa_os_write_err(line, n);
  xa_os_abort();
}
