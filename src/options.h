/* Run-time options, declared once in XA_OPTIONS: name, type, default,
 * range and documentation.  Read once at initialisation, without
 * allocating, from the application's `const char *xalloc_conf` and then the
 * XALLOC_CONF environment variable ("key:value,key:value"; later wins).
 * Unknown keys and bad values print one warning and keep the default;
 * XALLOC_CONF=help lists every option. */
#ifndef XA_OPTIONS_H
#define XA_OPTIONS_H
#include "internal.h"

/* X(name, type, default, min, max, doc); type is BOOL, INT, STR (a string
 * of at most XA_OPT_STR_MAX - 1 bytes; default empty) or an enum whose
 * values are listed in the doc string (parsed by options.c). */
#define XA_OPTIONS(X) \
  X(narenas,           INT,  0,     0, 1024, "arenas; 0 = one per CPU") \
  X(tcache,            BOOL, 1,     0, 1, "per-thread caches of small objects") \
  X(tcache_bytes,      INT,  65536, 0, 1 << 20, "bytes cached per thread per size class (8..1024 objects)") \
  X(tcache_reclaim,    BOOL, 1,     0, 1, "empty the caches of quiet threads from the purger and malloc_trim (uses membarrier)") \
  X(dirty_decay_ms,    INT,  1000,  -1, 3600000, "ms over which freed pages decay to the OS; 0 = at once, -1 = never") \
  X(purge,             ENUM, 0,     0, 1, "dontneed|free: how decayed pages go back (free: MADV_FREE, then muzzy_decay_ms)") \
  X(muzzy_decay_ms,    INT,  10000, -1, 3600000, "with purge:free, ms before MADV_FREE'd pages are also MADV_DONTNEED'd; -1 = never") \
  X(background_thread, BOOL, 1,     0, 1, "purge from a background thread (else inline on slow paths)") \
  X(thp,               ENUM, 0,     0, 2, "default|always|never: transparent huge pages for huge blocks") \
  X(huge_cache_bytes,  INT,  64 << 20, 0, 1 << 30, "bytes of freed huge mappings kept for reuse (they decay like dirty pages)") \
  X(abort_on_error,    BOOL, 1,     0, 1, "abort after reporting misuse (false: report, then ignore the call)") \
  X(junk,              BOOL, 0,     0, 1, "fill new blocks with 0xa5 and freed ones with 0x5a (turns thread caches off)") \
  X(secure,            BOOL, 0,     0, 1, "hardened mode: no thread caches, random slot order, zero on free, guarded huge blocks") \
  X(stats_print,       BOOL, 0,     0, 1, "print statistics to stderr at exit") \
  X(stats_format,      ENUM, 0,     0, 1, "text|json: format of stats_print") \
  X(stats_file,        STR,  0,     0, 0, "file that stats_print appends to instead of stderr (%p: process id)")

#define XA_OPT_STR_MAX 256
#define XA_OPT_CTYPE_BOOL long
#define XA_OPT_CTYPE_INT  long
#define XA_OPT_CTYPE_ENUM long
#define XA_OPT_CTYPE_STR  char
#define XA_OPT_DIM_BOOL
#define XA_OPT_DIM_INT
#define XA_OPT_DIM_ENUM
#define XA_OPT_DIM_STR    [XA_OPT_STR_MAX]

struct xa_options {
#define XA_OPT_FIELD(name, type, def, lo, hi, doc) XA_OPT_CTYPE_##type name XA_OPT_DIM_##type;
  XA_OPTIONS(XA_OPT_FIELD)
#undef XA_OPT_FIELD
};

XA_HIDDEN extern struct xa_options xa_opt;

/* Parse xalloc_conf and XALLOC_CONF into xa_opt (defaults first). */
XA_HIDDEN void xa_options_init(void);
/* Parse one "key:value,..." string; warnings go to stderr naming `source`.
 * Returns the number of rejected entries. */
XA_HIDDEN int xa_options_parse(struct xa_options *o, const char *s, const char *source);
XA_HIDDEN void xa_options_defaults(struct xa_options *o);

/* One option, found by name (for xalloc_ctl's opt.* names): its value is
 * a long at *num, or a string at str. */
struct xa_option_ref {
  bool is_str;
  long *num;
  const char *str;
  long lo, hi;
};
XA_HIDDEN bool xa_options_find(struct xa_options *o, const char *name, struct xa_option_ref *ref);

enum { XA_THP_DEFAULT = 0, XA_THP_ALWAYS = 1, XA_THP_NEVER = 2 };
enum { XA_PURGE_DONTNEED = 0, XA_PURGE_FREE = 1 };
enum { XA_STATS_TEXT = 0, XA_STATS_JSON = 1 };
#define XA_JUNK_ALLOC 0xa5
#define XA_JUNK_FREE 0x5a
#endif
