/* Run-time options, declared once in XA_OPTIONS: name, type, default,
 * range and documentation.  Read once at initialisation, without
 * allocating, from the application's `const char *xalloc_conf` and then the
 * XALLOC_CONF environment variable ("key:value,key:value"; later wins).
 * Unknown keys and bad values print one warning and keep the default;
 * XALLOC_CONF=help lists every option. */
#ifndef XA_OPTIONS_H
#define XA_OPTIONS_H
#include "internal.h"

/* X(name, type, default, min, max, rw, doc).  type is BOOL, INT, STR (a
 * string of at most XA_OPT_STR_MAX - 1 bytes; default empty) or ENUM: its
 * words are listed once, in XA_OPT_WORDS_<name> below, its default is one
 * of them and its range their number (min and max are unused).  rw: 1 if
 * xalloc_ctl may write the option at run time (the code that uses it reads
 * the new value at its next use), 0 if it is fixed after initialisation. */
#define XA_OPTIONS(X) \
  X(narenas,           INT,  0,     0, 1024, 0, "arenas; 0 = one per CPU") \
  X(tcache,            BOOL, 1,     0, 1, 0, "per-thread caches of small objects") \
  X(tcache_bytes,      INT,  65536, 0, 1 << 20, 0, "bytes cached per thread per size class (8..1024 objects; up to 4x for a class of 1 KiB or more that a thread both allocates and frees in bursts)") \
  X(tcache_total_bytes, INT, 32 << 20, 1 << 20, 1L << 40, 0, "bytes all thread caches together may hold: each bin's share shrinks as threads multiply") \
  X(tcache_reclaim,    BOOL, 1,     0, 1, 0, "empty the caches of quiet threads from the purger and malloc_trim (uses membarrier)") \
  X(dirty_decay_ms,    INT,  1000,  -1, 3600000, 1, "ms over which freed pages decay to the OS; 0 = at once, -1 = never") \
  X(purge,             ENUM, dontneed, 0, 0, 0, "how decayed pages go back (free: MADV_FREE, then muzzy_decay_ms)") \
  X(muzzy_decay_ms,    INT,  10000, -1, 3600000, 0, "with purge:free, ms before MADV_FREE'd pages are also MADV_DONTNEED'd; -1 = never") \
  X(background_thread, BOOL, 1,     0, 1, 0, "purge from a background thread (else inline on slow paths)") \
  X(thp,               ENUM, auto,    0, 0, 0, "transparent huge pages: auto asks for them on huge blocks of thp_min_bytes or more; default leaves the system's setting; always/never on every huge block") \
  X(thp_min_bytes,     INT,  2 << 20, 0, 1L << 40, 0, "with thp:auto, the smallest huge block that asks for transparent huge pages; with auto or always, such blocks of 8 MiB or more (not calloc's, nor secure mode's) are whole 2 MiB pages") \
  X(chunk_regions,     BOOL, 1,     0, 1, 0, "arenas carve their 4 MiB chunks from the huge blocks' regions, so pages freed by either kind serve the other without a page fault (off: each chunk is a mapping of its own; off where meshing runs, with secure, under valgrind and under an address-space or data limit)") \
  X(huge_cache_bytes,  INT,  16 << 20, 0, 1 << 30, 1, "huge blocks' live and freed pages stay within the live bytes' recent peak plus this (the freed ones all decay)") \
  X(abort_on_error,    BOOL, 1,     0, 1, 0, "abort after reporting misuse (false: report, then ignore the call)") \
  X(junk,              BOOL, 0,     0, 1, 0, "fill new blocks with 0xa5 and freed ones with 0x5a (turns thread caches off)") \
  X(secure,            BOOL, 0,     0, 1, 0, "hardened mode: no thread caches, random slot order, zero on free, guarded huge blocks") \
  X(mesh,              BOOL, 0,     0, 1, 0, "meshing: the purger merges slabs of one size whose live objects do not overlap onto one physical copy (needs userfaultfd; chunks become a shared memfd)") \
  X(mesh_period_ms,    INT,  100,   1, 3600000, 1, "with mesh: ms between meshing passes (each at most 1/8 of it, 1/2 while the heap did not grow)") \
  X(mesh_fork,         ENUM, take,  0, 0, 0, "with mesh: how a fork child gets a heap file of its own: take the one the parent leaves once the parent has copied its heap (waits up to 2 s, else copies), or copy at once") \
  X(cgroup,            ENUM, auto,  0, 0, 0, "read the process's cgroup: arenas follow its CPU quota and cpuset, purging turns urgent near its memory limit") \
  X(cgroup_headroom_pct, INT, 10,   1, 50, 1, "urgent purging while less than this % of the memory limit (memory.max or memory.high) is left") \
  X(cgroup_poll_ms,    INT,  100,   10, 10000, 1, "ms between the purger's readings of the cgroup's memory usage") \
  X(psi,               ENUM, poll,  0, 0, 0, "under a memory limit, purge everything on memory stalls: poll the stall time, or a PSI trigger (holds a descriptor)") \
  X(stats_print,       BOOL, 0,     0, 1, 0, "print statistics to stderr at exit") \
  X(stats_format,      ENUM, text,  0, 0, 0, "format of stats_print") \
  X(stats_report,      ENUM, stats, 0, 0, 0, "what stats_print prints: the statistics, the explain report (where the resident memory is), or all") \
  X(stats_file,        STR,  0,     0, 0, 0, "file that stats_print appends to instead of stderr (%p: process id)") \
  X(prof,              BOOL, 0,     0, 1, 0, "sampled heap profiling: pprof files of the live heap, its peak and the leaks at exit") \
  X(prof_sample,       INT,  524288, 1, 1L << 40, 0, "with prof: mean bytes between sampled allocations (exponential intervals)") \
  X(prof_prefix,       STR,  0,     0, 0, 0, "with prof: profiles go to PREFIX.<pid>.<seq>.heap.pb (empty: xalloc)") \
  X(prof_dump_on_exit, BOOL, 0,     0, 1, 0, "with prof: at exit, write what is still allocated (PREFIX.<pid>.<seq>.leak.heap.pb) and a summary to stderr") \
  X(prof_signal,       INT,  0,     0, 64, 0, "with prof: this signal (e.g. 12, SIGUSR2) writes a live-heap profile; 0 none") \
  X(prof_unwind,       ENUM, fp,    0, 0, 0, "with prof: call stacks by frame pointers, or by libgcc's unwinder (whole stacks through code built without them)")

/* The words of each ENUM option in the order of their values, W(option,
 * word) each: XALLOC_CONF takes the word, and the code compares with the
 * constant xa_opt_<option>_<word> (xa_opt.thp == xa_opt_thp_never). */
#define XA_OPT_WORDS_purge(W, o)        W(o, dontneed) W(o, free)
#define XA_OPT_WORDS_thp(W, o)          W(o, default) W(o, always) W(o, never) W(o, auto)
#define XA_OPT_WORDS_stats_format(W, o) W(o, text) W(o, json)
#define XA_OPT_WORDS_stats_report(W, o) W(o, stats) W(o, explain) W(o, all)
#define XA_OPT_WORDS_prof_unwind(W, o)  W(o, fp) W(o, libgcc)
#define XA_OPT_WORDS_cgroup(W, o)       W(o, auto) W(o, off)
#define XA_OPT_WORDS_psi(W, o)          W(o, poll) W(o, trigger) W(o, off)
#define XA_OPT_WORDS_mesh_fork(W, o)    W(o, take) W(o, copy)

#define XA_OPT_ENUMERATOR(o, word) xa_opt_##o##_##word,
#define XA_OPT_ENUM_BOOL(name)
#define XA_OPT_ENUM_INT(name)
#define XA_OPT_ENUM_STR(name)
#define XA_OPT_ENUM_ENUM(name) enum { XA_OPT_WORDS_##name(XA_OPT_ENUMERATOR, name) };
#define XA_OPT_ENUM(name, type, def, lo, hi, rw, doc) XA_OPT_ENUM_##type(name)
XA_OPTIONS(XA_OPT_ENUM)
#undef XA_OPT_ENUM

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
#define XA_OPT_FIELD(name, type, def, lo, hi, rw, doc) XA_OPT_CTYPE_##type name XA_OPT_DIM_##type;
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
 * a long at *num, or a string at str; writable: its rw column. */
struct xa_option_ref {
  bool is_str;
  bool writable;
  long *num;
  const char *str;
  long lo, hi;
};
XA_HIDDEN bool xa_options_find(struct xa_options *o, const char *name, struct xa_option_ref *ref);
/* The options in effect as XALLOC_CONF would give them ("key:value,..."),
 * NUL-terminated in buf (cut to fit cap); its length. */
XA_HIDDEN size_t xa_options_string(const struct xa_options *o, char *buf, size_t cap);

/* Whether xalloc asks for transparent huge pages itself (thp:auto or
 * thp:always): huge blocks (huge.c) and chunks (chunk.c). */
XA_INLINE bool xa_opt_thp_asked(void) { return xa_opt.thp == xa_opt_thp_auto || xa_opt.thp == xa_opt_thp_always; }

#define XA_JUNK_ALLOC 0xa5
#define XA_JUNK_FREE 0x5a
#endif
