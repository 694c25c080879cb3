/* Number formatting (see fmt.h). */
#include "fmt.h"

size_t xa_fmt_hex(char *buf, uintptr_t v) {
  char tmp[16];
  size_t n = 0;
  do { tmp[n++] = "0123456789abcdef"[v & 15]; v >>= 4; } while (v);
  buf[0] = '0'; buf[1] = 'x';
  for (size_t i = 0; i < n; i++) buf[2 + i] = tmp[n - 1 - i];
  return n + 2;
}

size_t xa_fmt_dec(char *buf, uint64_t v) {
  char tmp[20];
  size_t n = 0;
  do { tmp[n++] = (char)('0' + v % 10); v /= 10; } while (v);
  for (size_t i = 0; i < n; i++) buf[i] = tmp[n - 1 - i];
  return n;
}
