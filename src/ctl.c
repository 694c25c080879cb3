/* The control interface: xalloc_ctl's dotted names, xalloc_stats_print
 * and glibc's malloc_info. */
#define _GNU_SOURCE
#include "arena.h"
#include "init.h"
#include "options.h"
#include "prof.h"
#include "stats.h"
#include "tcache.h"
#include "xalloc.h"
#include <errno.h>
#include <stdio.h>
#include <string.h>

static uint64_t ctl_epoch;

/* Copy an 8-byte value out; EINVAL on a wrong length. */
static int read_u64(void *oldp, size_t *oldlenp, uint64_t v) {
  if (!oldp && !oldlenp) return 0;
  if (!oldp || !oldlenp || *oldlenp != sizeof v) return EINVAL;
  memcpy(oldp, &v, sizeof v);
  return 0;
}

static bool eat(const char **s, const char *prefix) {
  size_t n = strlen(prefix);
  if (strncmp(*s, prefix, n) != 0) return false;
  *s += n;
  return true;
}

/* "<decimal>." -> index; advances *s. */
static bool eat_index(const char **s, unsigned *out) {
  const char *p = *s;
  unsigned v = 0;
  if (*p < '0' || *p > '9') return false;
  while (*p >= '0' && *p <= '9') { v = v * 10 + (unsigned)(*p - '0'); if (v > 1u << 20) return false; p++; }
  if (*p != '.') return false;
  *s = p + 1;
  *out = v;
  return true;
}

/* Options read as 8-byte values (strings as a const char *); those whose
 * rw column (options.h) is set may be written. */
static int ctl_opt(const char *k, void *oldp, size_t *oldlenp, void *newp, size_t newlen) {
  struct xa_option_ref o;
  if (!xa_options_find(&xa_opt, k, &o)) return ENOENT;
  if (o.is_str) {
    if (newp) return EPERM;
    if (!oldp && !oldlenp) return 0;
    if (!oldp || !oldlenp || *oldlenp != sizeof o.str) return EINVAL;
    memcpy(oldp, &o.str, sizeof o.str);
    return 0;
  }
  /* As jemalloc's mallctl: oldp receives the value from before the
   * write, so save-and-restore code works; a call with a bad old buffer or
   * a bad new value changes nothing. */
  uint64_t before = (uint64_t)(int64_t)*o.num;
  if ((oldp || oldlenp) && (!oldp || !oldlenp || *oldlenp != sizeof before)) return EINVAL;
  if (newp) {
    int64_t v;
    if (newlen != sizeof v) return EINVAL;
    memcpy(&v, newp, sizeof v);
    if (v < o.lo || v > o.hi) return EINVAL;
    if (!o.writable) return EPERM;
    *o.num = (long)v;
  }
  return read_u64(oldp, oldlenp, before);
}

XA_EXPORT int xalloc_ctl(const char *name, void *oldp, size_t *oldlenp, void *newp, size_t newlen) {
  if (!name) return EINVAL;
  if (!xa_init()) return EAGAIN;
  const char *k = name;
  if (!strcmp(k, "version")) {
    const char *v = xalloc_version();
    if (newp) return EPERM;
    if (!oldp || !oldlenp || *oldlenp != sizeof v) return EINVAL;
    memcpy(oldp, &v, sizeof v);
    return 0;
  }
  if (!strcmp(k, "epoch")) {      /* statistics are read live: just count */
    if (newp && newlen != sizeof(uint64_t)) return EINVAL;
    return read_u64(oldp, oldlenp, ++ctl_epoch);
  }
  if (!strcmp(k, "stats.explain")) {   /* the explain report, to stderr */
    if (oldp || oldlenp || newp) return EINVAL;
    xa_stats_print(NULL, NULL, false, XA_REPORT_EXPLAIN);
    return 0;
  }
  if (!strcmp(k, "mesh")) {          /* a meshing pass now (at most 1 s): bytes freed */
    if (newp) return EINVAL;
    return read_u64(oldp, oldlenp, xa_arena_mesh_all(1000000000, true));
  }
  if (!strcmp(k, "purge") || !strcmp(k, "thread.tcache.flush")) {
    if (oldp || newp) return EINVAL;
    if (k[0] == 'p') xalloc_purge();
    else xa_tcache_flush_all();
    return 0;
  }
  /* Heap profiles: newp points at the path (a const char *), or is NULL
   * for PREFIX.<pid>.<seq>.heap.pb (.peak.heap.pb). */
  if (!strcmp(k, "prof.dump") || !strcmp(k, "prof.dump_peak")) {
    const char *path = NULL;
    if (oldp || oldlenp) return EINVAL;
    if (newp) {
      if (newlen != sizeof path) return EINVAL;
      memcpy(&path, newp, sizeof path);
      if (!path || !path[0]) return EINVAL;
    }
    return xa_prof_dump(k[9] ? XA_PROF_PEAK : XA_PROF_LIVE, path, NULL, 0);
  }
  if (!strcmp(k, "arenas.narenas")) return newp ? EPERM : read_u64(oldp, oldlenp, xa_narenas);
  if (!strcmp(k, "arenas.nclasses")) return newp ? EPERM : read_u64(oldp, oldlenp, XA_NSMALL);
  unsigned i;
  if (eat(&k, "arena.")) {
    if (!eat_index(&k, &i) || i >= xa_narenas || strcmp(k, "purge")) return ENOENT;
    if (oldp || newp) return EINVAL;
    xa_arena_purge(xa_arenas[i]);
    return 0;
  }
  if (eat(&k, "opt.")) return ctl_opt(k, oldp, oldlenp, newp, newlen);
  char alias[32];
  if (eat(&k, "cgroup.")) {          /* cgroup.X: stats.cgroup_X */
    if (strlen(k) > sizeof alias - 8) return ENOENT;
    memcpy(alias, "cgroup_", 7);
    strcpy(alias + 7, k);
    if (strncmp(k, "cgroup", 6) == 0) return ENOENT;     /* no cgroup.cgroup_X */
    k = alias;
  } else if (!eat(&k, "stats.")) {
    return ENOENT;
  }
  if (newp) return EPERM;
  if (eat(&k, "arenas.")) {
    if (!eat_index(&k, &i) || i >= xa_narenas) return ENOENT;
    struct xa_stats_arena s;
    xa_stats_arena(i, &s);
#define XA_STAT_CTL(name, doc) if (!strcmp(k, #name)) return read_u64(oldp, oldlenp, s.name);
    XA_STATS_ARENA(XA_STAT_CTL)
    return ENOENT;
  }
  if (eat(&k, "classes.")) {
    if (!eat_index(&k, &i) || i >= XA_NSMALL) return ENOENT;
    struct xa_stats_class s;
    xa_stats_class(i, &s);
    XA_STATS_CLASS(XA_STAT_CTL)
    return ENOENT;
  }
#undef XA_STAT_CTL
  struct xa_stats_totals t;
  xa_stats_totals(&t);
#define XA_STAT_CTL_T(name, doc) if (!strcmp(k, #name)) return read_u64(oldp, oldlenp, t.name);
  XA_STATS_TOTALS(XA_STAT_CTL_T)
#undef XA_STAT_CTL_T
  return ENOENT;
}

XA_EXPORT void xalloc_stats_print(void (*write_cb)(void *, const char *), void *opaque, const char *opts) {
  if (!xa_init()) return;
  /* 'E': the explain report only; 'A': statistics and explain */
  unsigned what = opts && strchr(opts, 'E') ? XA_REPORT_EXPLAIN
                  : opts && strchr(opts, 'A') ? XA_REPORT_STATS | XA_REPORT_EXPLAIN
                                              : XA_REPORT_STATS;
  xa_stats_print(write_cb, opaque, opts && strchr(opts, 'J'), what);
}

/* glibc-style XML; statistics are read first, so fprintf may allocate. */
XA_EXPORT int malloc_info(int options, FILE *fp) {
  if (options != 0 || !fp) return EINVAL;          /* as glibc: the code, not errno */
  struct xa_stats_totals t;
  xa_stats_totals(&t);
  fprintf(fp, "<malloc version=\"xalloc-" XALLOC_VERSION "\">\n");
  for (unsigned i = 0; i < t.narenas; i++) {
    struct xa_stats_arena s;
    struct xa_arena_stats as;
    xa_stats_arena(i, &s);
    xa_arena_get_stats(xa_arenas[i], &as);
    fprintf(fp, "<heap nr=\"%u\">\n<sizes>\n", i);
    for (unsigned c = 0; c < XA_NSMALL; c++) {
      uint64_t cur = as.bins[c].curobjs, slabs = as.bins[c].nslabs;
      if (slabs)
        fprintf(fp, "  <size from=\"%u\" to=\"%u\" total=\"%llu\" count=\"%llu\"/>\n",
                c ? xa_classes[c - 1].size + 1 : 1, xa_classes[c].size,
                (unsigned long long)(slabs * xa_classes[c].nobjs - cur) * xa_classes[c].size,
                (unsigned long long)(slabs * xa_classes[c].nobjs - cur));
    }
    fprintf(fp, "</sizes>\n<total type=\"dirty\" count=\"0\" size=\"%llu\"/>\n"
                "<system type=\"current\" size=\"%llu\"/>\n<system type=\"max\" size=\"%llu\"/>\n"
                "<aspace type=\"total\" size=\"%llu\"/>\n<aspace type=\"mprotect\" size=\"%llu\"/>\n</heap>\n",
            (unsigned long long)s.dirty, (unsigned long long)s.mapped, (unsigned long long)s.mapped_peak,
            (unsigned long long)s.mapped, (unsigned long long)s.mapped);
  }
  fprintf(fp, "<total type=\"fast\" count=\"0\" size=\"0\"/>\n<total type=\"rest\" count=\"0\" size=\"%llu\"/>\n"
              "<total type=\"mmap\" count=\"%llu\" size=\"%llu\"/>\n<system type=\"current\" size=\"%llu\"/>\n"
              "<system type=\"max\" size=\"%llu\"/>\n<aspace type=\"total\" size=\"%llu\"/>\n"
              "<aspace type=\"mprotect\" size=\"%llu\"/>\n</malloc>\n",
          (unsigned long long)t.dirty, (unsigned long long)t.huge_count, (unsigned long long)t.huge_allocated,
          (unsigned long long)t.mapped, (unsigned long long)t.mapped_peak, (unsigned long long)t.mapped,
          (unsigned long long)t.mapped);
  return 0;
}
