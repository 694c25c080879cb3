/* The option parser: no allocation, no stdio, no locale. */
#include "options.h"
#include "fmt.h"
#include "os.h"
#include <string.h>

/* The default of an option as a value, and for an ENUM its words
 * ("|w1|w2", so that the list starts after its first byte) and range. */
#define XA_OPT_DEF_BOOL(name, d) d
#define XA_OPT_DEF_INT(name, d)  d
#define XA_OPT_DEF_ENUM(name, d) xa_opt_##name##_##d
#define XA_OPT_DEF_STR(name, d)  0
#define XA_OPT_WORD(o, word) "|" #word
#define XA_OPT_ONE(o, word) + 1
#define XA_OPT_WORDS_OF_BOOL(name) NULL
#define XA_OPT_WORDS_OF_INT(name)  NULL
#define XA_OPT_WORDS_OF_STR(name)  NULL
#define XA_OPT_WORDS_OF_ENUM(name) XA_OPT_WORDS_##name(XA_OPT_WORD, name) + 1
#define XA_OPT_LO_BOOL(name, lo) lo
#define XA_OPT_LO_INT(name, lo)  lo
#define XA_OPT_LO_STR(name, lo)  lo
#define XA_OPT_LO_ENUM(name, lo) 0
#define XA_OPT_HI_BOOL(name, hi) hi
#define XA_OPT_HI_INT(name, hi)  hi
#define XA_OPT_HI_STR(name, hi)  hi
#define XA_OPT_HI_ENUM(name, hi) (0 XA_OPT_WORDS_##name(XA_OPT_ONE, name) - 1)

/* Defaults from the start: misuse reported before the first allocation
 * (free of a bad pointer as the first call) already sees them. */
#define XA_OPT_INIT_BOOL(name, d) d
#define XA_OPT_INIT_INT(name, d)  d
#define XA_OPT_INIT_ENUM(name, d) XA_OPT_DEF_ENUM(name, d)
#define XA_OPT_INIT_STR(name, d)  {0}
struct xa_options xa_opt = {
#define XA_OPT_INIT(name, type, def, lo, hi, rw, doc) .name = XA_OPT_INIT_##type(name, def),
  XA_OPTIONS(XA_OPT_INIT)
#undef XA_OPT_INIT
};

enum opt_type { T_BOOL, T_INT, T_ENUM, T_STR };
struct opt_desc {
  const char *name;
  enum opt_type type;
  long def, lo, hi;
  bool rw;
  const char *words;            /* ENUM: "w1|w2|..." */
  const char *doc;
  size_t offset;
};

static const struct opt_desc opts[] = {
#define XA_OPT_DESC(name, type, def, lo, hi, rw, doc) \
  {#name, T_##type, XA_OPT_DEF_##type(name, def), XA_OPT_LO_##type(name, lo), XA_OPT_HI_##type(name, hi), \
   rw, XA_OPT_WORDS_OF_##type(name), doc, offsetof(struct xa_options, name)},
  XA_OPTIONS(XA_OPT_DESC)
#undef XA_OPT_DESC
};
#define NOPTS (sizeof opts / sizeof opts[0])

void xa_options_defaults(struct xa_options *o) {
  for (size_t i = 0; i < NOPTS; i++) {
    char *field = (char *)o + opts[i].offset;
    if (opts[i].type == T_STR) field[0] = 0;
    else *(long *)field = opts[i].def;
  }
}

bool xa_options_find(struct xa_options *o, const char *name, struct xa_option_ref *ref) {
  for (size_t i = 0; i < NOPTS; i++) {
    if (strcmp(opts[i].name, name) != 0) continue;
    char *field = (char *)o + opts[i].offset;
    ref->is_str = opts[i].type == T_STR;
    ref->writable = opts[i].rw;
    ref->num = ref->is_str ? NULL : (long *)field;
    ref->str = ref->is_str ? field : NULL;
    ref->lo = opts[i].lo;
    ref->hi = opts[i].hi;
    return true;
  }
  return false;
}

static void err_puts(const char *s) { xa_os_write_err(s, strlen(s)); }

/* The word of value v in an ENUM's "w1|w2|..." list, and its length. */
static const char *enum_word(const char *words, long v, size_t *n) {
  const char *w = words;
  for (long k = 0; k < v && strchr(w, '|'); k++) w = strchr(w, '|') + 1;
  *n = 0;
  while (w[*n] && w[*n] != '|') (*n)++;
  return w;
}

size_t xa_options_string(const struct xa_options *o, char *buf, size_t cap) {
  size_t n = 0;
  char num[24];
#define PUT(s, len) do { size_t l_ = (len); if (n + l_ >= cap) l_ = n + 1 < cap ? cap - n - 1 : 0; \
                         memcpy(buf + n, (s), l_); n += l_; } while (0)
  for (size_t i = 0; i < NOPTS; i++) {
    const struct opt_desc *d = &opts[i];
    const char *field = (const char *)o + d->offset;
    if (i) PUT(",", 1);
    PUT(d->name, strlen(d->name));
    PUT(":", 1);
    long v = d->type == T_STR ? 0 : *(const long *)field;
    if (d->type == T_STR) PUT(field, strlen(field));
    else if (d->type == T_BOOL) PUT(v ? "true" : "false", v ? 4 : 5);
    else if (d->type == T_ENUM) {
      size_t wn;
      const char *w = enum_word(d->words, v, &wn);
      PUT(w, wn);
    } else {
      size_t k = 0;
      if (v < 0) { num[k++] = '-'; v = -v; }
      k += xa_fmt_dec(num + k, (uint64_t)v);
      PUT(num, k);
    }
  }
#undef PUT
  if (cap) buf[n] = 0;
  return n;
}
static void err_putn(const char *s, size_t n) { xa_os_write_err(s, n); }

/* The value of word v[0..vn) in an ENUM's "w1|w2|..." list, or -1. */
static long enum_value(const char *words, const char *v, size_t vn) {
  long idx = 0;
  for (const char *w = words;; idx++) {
    const char *e = w;
    while (*e && *e != '|') e++;
    if ((size_t)(e - w) == vn && strncmp(w, v, vn) == 0) return idx;
    if (!*e) return -1;
    w = e + 1;
  }
}

static bool parse_long(const char *v, size_t vn, long *out) {
  bool neg = false;
  size_t i = 0;
  if (i < vn && (v[i] == '-' || v[i] == '+')) neg = v[i++] == '-';
  if (i == vn) return false;
  long x = 0;
  for (; i < vn; i++) {
    if (v[i] < '0' || v[i] > '9' || x > (1L << 40)) return false;
    x = x * 10 + (v[i] - '0');
  }
  *out = neg ? -x : x;
  return true;
}

/* One warning, written with one write(2) so that it does not interleave
 * with other output: "xalloc: SOURCE: WHAT 'KEY' (HINT); default kept".
 * A key longer than KEY_SHOWN bytes is cut; the rest always fits. */
#define KEY_SHOWN 200
static void warn(const char *source, const char *what, const char *k, size_t kn, const char *hint) {
  char line[512];
  size_t n = 0;
  const char *parts[] = {"xalloc: ", source, ": ", what, " '", NULL, "' (", hint, "); default kept\n"};
  for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
    const char *p = parts[i] ? parts[i] : k;
    size_t pn = parts[i] ? strlen(p) : kn < KEY_SHOWN ? kn : KEY_SHOWN;
    if (pn > sizeof line - n) pn = sizeof line - n;
    memcpy(line + n, p, pn);
    n += pn;
  }
  err_putn(line, n);
}

/* v in decimal at out (at most 21 bytes, no NUL); its length. */
static size_t fmt_long(char *out, long v) {
  size_t n = 0;
  if (v < 0) { out[n++] = '-'; v = -v; }
  return n + xa_fmt_dec(out + n, (uint64_t)v);
}

static void put_long(char *num, long v) { err_putn(num, fmt_long(num, v)); }

static void print_help(void) {
  err_puts("xalloc options (XALLOC_CONF=\"key:value,key:value\"):\n");
  char num[24];
  for (size_t i = 0; i < NOPTS; i++) {
    const struct opt_desc *d = &opts[i];
    err_puts("  ");
    err_puts(d->name);
    err_puts(" (default ");
    if (d->type == T_BOOL) err_puts(d->def ? "true" : "false");
    else if (d->type == T_STR) err_puts("none");
    else if (d->type == T_ENUM) {
      size_t n;
      const char *w = enum_word(d->words, d->def, &n);
      err_putn(w, n);
    } else {
      put_long(num, d->def);
      err_puts(", range ");
      put_long(num, d->lo);
      err_puts("..");
      put_long(num, d->hi);
    }
    err_puts("): ");
    if (d->type == T_ENUM) {
      err_puts(d->words);
      err_puts(": ");
    }
    err_puts(d->doc);
    err_puts("\n");
  }
}

int xa_options_parse(struct xa_options *o, const char *s, const char *source) {
  int bad = 0;
  if (!s) return 0;
  if (strcmp(s, "help") == 0) { print_help(); return 0; }
  while (*s) {
    const char *k = s;
    while (*s && *s != ':' && *s != ',') s++;
    size_t kn = (size_t)(s - k);
    const char *v = NULL;
    size_t vn = 0;
    if (*s == ':') {
      v = ++s;
      while (*s && *s != ',') s++;
      vn = (size_t)(s - v);
    }
    if (*s == ',') s++;
    if (kn == 0) continue;
    const struct opt_desc *d = NULL;
    for (size_t i = 0; i < NOPTS; i++)
      if (strlen(opts[i].name) == kn && strncmp(opts[i].name, k, kn) == 0) d = &opts[i];
    if (!d) { warn(source, "unknown option", k, kn, "XALLOC_CONF=help lists them"); bad++; continue; }
    long x = 0;
    bool ok;
    if (!v) { ok = false; }
    else if (d->type == T_STR) {
      ok = vn < XA_OPT_STR_MAX;
      if (ok) {
        char *field = (char *)o + d->offset;
        memcpy(field, v, vn);
        field[vn] = 0;
        continue;
      }
    }
    else if (d->type == T_BOOL) {
      ok = true;
      if ((vn == 4 && !strncmp(v, "true", 4)) || (vn == 1 && v[0] == '1')) x = 1;
      else if ((vn == 5 && !strncmp(v, "false", 5)) || (vn == 1 && v[0] == '0')) x = 0;
      else ok = false;
    } else if (d->type == T_ENUM) {
      x = enum_value(d->words, v, vn);
      ok = x >= 0;
    } else {
      ok = parse_long(v, vn, &x) && x >= d->lo && x <= d->hi;
    }
    if (!ok) {
      char range[80] = "expected an integer in ";
      size_t rn = strlen(range);
      rn += fmt_long(range + rn, d->lo);
      memcpy(range + rn, "..", 2);
      rn += 2;
      rn += fmt_long(range + rn, d->hi);
      range[rn] = 0;
      warn(source, "bad value for option", k, kn,
           d->type == T_BOOL ? "expected key:true or key:false"
           : d->type == T_STR ? "expected a value of at most 255 bytes"
           : d->type == T_ENUM ? "expected one of the values XALLOC_CONF=help lists"
           : range);
      bad++;
      continue;
    }
    *(long *)((char *)o + d->offset) = x;
  }
  return bad;
}

/* An application may define `const char *xalloc_conf = "...";`. */
extern const char *xalloc_conf __attribute__((weak));

void xa_options_init(void) {
  xa_options_defaults(&xa_opt);
  if (&xalloc_conf && xalloc_conf) xa_options_parse(&xa_opt, xalloc_conf, "xalloc_conf");
  xa_options_parse(&xa_opt, xa_os_getenv("XALLOC_CONF"), "XALLOC_CONF");
}
