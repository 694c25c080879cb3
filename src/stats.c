/* Statistics gathering and printing (text and JSON), without stdio and
 * without allocating: output goes through a small stack buffer.  Also the
 * stats_print option: printing at exit to stats_file or stderr. */
#include "stats.h"
#include "budget.h"
#include "tcache.h"
#include "arena.h"
#include "base.h"
#include "decay.h"
#include "explain.h"
#include "fmt.h"
#include "huge.h"
#include "hugemap.h"
#include "mesh.h"
#include "options.h"
#include "os.h"
#include "peak.h"
#include "pressure.h"
#include "prof.h"
#include "purge.h"
#include "report.h"
#include "xalloc.h"
#include <stdlib.h>
#include <string.h>

/* The public per-arena figures of snapshot as. */
static void arena_figures(const struct xa_arena_stats *as, struct xa_stats_arena *s) {
  memset(s, 0, sizeof *s);
  s->mapped = as->mapped;
  s->mapped_peak = as->mapped_peak;
  s->large_allocated = as->large_allocated;
  s->active = as->large_allocated;
  for (unsigned c = 0; c < XA_NSMALL; c++) {
    s->small_allocated += as->bins[c].curobjs * xa_classes[c].size;
    s->active += (as->bins[c].nslabs * xa_classes[c].slab_pages) << xa_os_page_shift;
  }
  s->dirty = as->dirty_pages << xa_os_page_shift;
  s->muzzy = as->muzzy_pages << xa_os_page_shift;
  s->retained = (uint64_t)as->nspare * XA_CHUNK_SIZE;
  s->purged = as->purged_pages << xa_os_page_shift;
  s->lock_contended = as->lock_contended;
  s->large_requests = as->large_nrequests;
}

void xa_stats_arena(unsigned i, struct xa_stats_arena *s) {
  memset(s, 0, sizeof *s);
  if (i >= xa_arena_count()) return;
  struct xa_arena_stats as;
  xa_arena_get_stats(xa_arenas[i], &as);
  arena_figures(&as, s);
}

void xa_stats_classes(struct xa_stats_class s[XA_NSMALL]) {
  memset(s, 0, sizeof(struct xa_stats_class) * XA_NSMALL);
  uint64_t nmalloc[XA_NSMALL], cached[XA_NSMALL];
  xa_tcache_class_counts(nmalloc, cached);
  for (unsigned i = 0, n = xa_arena_count(); i < n; i++) {
    struct xa_arena_stats as;
    xa_arena_get_stats(xa_arenas[i], &as);
    for (unsigned c = 0; c < XA_NSMALL; c++) {
      s[c].refills += as.bins[c].nrequests;
      s[c].curobjs += as.bins[c].curobjs;
      s[c].slabs += as.bins[c].nslabs;
    }
  }
  uint64_t sampled[XA_NSMALL] = {0};
  xa_prof_live_small(sampled);           /* live in pages of their own */
  for (unsigned c = 0; c < XA_NSMALL; c++) {
    s[c].size = xa_classes[c].size;
    s[c].nmalloc = nmalloc[c];
    s[c].cached = cached[c] < s[c].curobjs ? cached[c] : s[c].curobjs;
    s[c].live = s[c].curobjs - s[c].cached + sampled[c];
    /* read at different moments: a frees figure never goes below 0 */
    s[c].nfree = s[c].nmalloc > s[c].live ? s[c].nmalloc - s[c].live : 0;
  }
}

void xa_stats_class(unsigned c, struct xa_stats_class *s) {
  memset(s, 0, sizeof *s);
  if (c >= XA_NSMALL) return;
  struct xa_stats_class all[XA_NSMALL];
  xa_stats_classes(all);
  *s = all[c];
}

void xa_stats_totals(struct xa_stats_totals *t) {
  memset(t, 0, sizeof *t);
  unsigned narenas = xa_arena_count();
  if (!narenas) return;           /* not initialised: all zero */
  for (unsigned i = 0; i < narenas; i++) {
    struct xa_arena_stats as;
    struct xa_stats_arena s;
    xa_arena_get_stats(xa_arenas[i], &as);
    arena_figures(&as, &s);
    t->small_allocated += s.small_allocated;
    t->large_allocated += s.large_allocated;
    t->active += s.active;
    t->dirty += s.dirty;
    t->muzzy += s.muzzy;
    t->retained += s.retained;
    t->purged += s.purged;
    t->lock_contended += s.lock_contended;
    t->purge_runs += as.purge_runs;
  }
  size_t n, bytes, cached;
  xa_huge_stats(&n, &bytes, &cached);
  t->huge_count = n;
  t->huge_allocated = bytes;
  t->huge_cached = cached;
  t->huge_chunks = xa_huge_chunk_bytes();
  t->purge_locked = __atomic_load_n(&xa_os_locked_purged, __ATOMIC_RELAXED);
  t->active += bytes;
  t->allocated = t->small_allocated + t->large_allocated + t->huge_allocated;
  /* the peaks lag by what the arenas have not passed on yet: never below now */
  t->allocated_peak = xa_peak_max(XA_PEAK_ALLOCATED);
  if (t->allocated_peak < t->allocated) t->allocated_peak = t->allocated;
  t->active_peak = xa_peak_max(XA_PEAK_ACTIVE);
  if (t->active_peak < t->active) t->active_peak = t->active;
  t->metadata = xa_base_allocated() + xa_tcache_mapped() + xa_hugemap_mapped() + xa_pagemap_written() + xa_huge_metadata();
  t->mapped = xa_os_mapped();
  t->resident = xa_os_resident();
  t->resident_peak = xa_os_resident_peak();
  t->mapped_peak = __atomic_load_n(&xa_os_mapped_peak, __ATOMIC_RELAXED);
  size_t anon_huge, pss;
  xa_os_huge_and_pss(&anon_huge, &pss);
  t->anon_huge = anon_huge;
  t->pss = pss;
  t->narenas = narenas;
  t->tcache_reclaimed = xa_tcache_reclaimed();
  t->tcache_active = xa_tcache_active();
  t->purger_running = xa_purge_thread_running();
  t->decay_scale = __atomic_load_n(&xa_decay_scale, __ATOMIC_RELAXED);
  t->peak_purged = xa_arena_peak_purged() + __atomic_load_n(&xa_budget_huge_purged, __ATOMIC_RELAXED);
  struct xa_pressure_stats ps;
  xa_pressure_stats(&ps);
#define XA_PRESSURE_COPY(name) t->name = ps.name;
  XA_PRESSURE_STATS(XA_PRESSURE_COPY)
#undef XA_PRESSURE_COPY
  t->tcache_budget = xa_tcache_budget();      /* after the reading above: a limit shrinks them */
  t->huge_budget = xa_huge_cache_budget();
  unsigned huge_shards;
  uint64_t huge_contended;
  xa_huge_lock_stats(&huge_shards, &huge_contended);
  t->huge_shards = huge_shards;
  uint64_t gathers, gathered;
  xa_huge_gather_stats(&gathers, &gathered);
  t->huge_gathers = gathers;
  t->huge_gathered = gathered;
  t->mesh_on = xa_mesh_running();
  struct xa_mesh_stats ms;
  __atomic_load(&xa_mesh_stats.meshes, &ms.meshes, __ATOMIC_RELAXED);
  __atomic_load(&xa_mesh_stats.pages, &ms.pages, __ATOMIC_RELAXED);
  __atomic_load(&xa_mesh_stats.bytes_copied, &ms.bytes_copied, __ATOMIC_RELAXED);
  __atomic_load(&xa_mesh_stats.ns, &ms.ns, __ATOMIC_RELAXED);
  __atomic_load(&xa_mesh_stats.unmeshes, &ms.unmeshes, __ATOMIC_RELAXED);
  __atomic_load(&xa_mesh_stats.failed, &ms.failed, __ATOMIC_RELAXED);
  __atomic_load(&xa_mesh_stats.fork_copies, &ms.fork_copies, __ATOMIC_RELAXED);
  __atomic_load(&xa_mesh_stats.fork_takes, &ms.fork_takes, __ATOMIC_RELAXED);
  __atomic_load(&xa_mesh_stats.reopens, &ms.reopens, __ATOMIC_RELAXED);
  __atomic_load(&xa_mesh_stats.adopted, &ms.adopted, __ATOMIC_RELAXED);
  __atomic_load(&xa_mesh_stats.adopt_copied, &ms.adopt_copied, __ATOMIC_RELAXED);
  t->mesh_meshes = ms.meshes;
  t->mesh_aliases = ms.meshes - ms.unmeshes;
  t->mesh_reclaimed = ms.pages << xa_os_page_shift;
  t->mesh_copied = ms.bytes_copied;
  t->mesh_ns = ms.ns;
  t->mesh_unmeshes = ms.unmeshes;
  t->mesh_failed = ms.failed;
  t->mesh_fork_copies = ms.fork_copies;
  t->mesh_fork_takes = ms.fork_takes;
  t->mesh_reopens = ms.reopens;
  t->mesh_adopted = ms.adopted;
  t->mesh_adopt_copied = ms.adopt_copied;
  t->mesh_file = xa_mesh_file_bytes();
  t->huge_contended = huge_contended;
  struct xa_prof_stats pf;
  xa_prof_stats(&pf);
  t->prof_samples = pf.samples;
  t->prof_live = pf.live;
  t->prof_live_bytes = pf.live_bytes;
  t->prof_peak_bytes = pf.peak_bytes;
  t->prof_stacks = pf.stacks;
  t->prof_dumps = pf.dumps;
}

/* ---- output ------------------------------------------------------------ */

static void print_text(struct xa_report *o) {
  struct xa_stats_totals t;
  xa_stats_totals(&t);
  xa_report_str(o, "___ xalloc statistics (version " XALLOC_VERSION ") ___\n");
  char opts[2048];
  xa_options_string(&xa_opt, opts, sizeof opts);
  xa_report_str(o, "options: ");
  xa_report_str(o, opts);
  xa_report_str(o, "\n");
#define XA_STAT_TEXT(name, doc) xa_report_str(o, #name); for (size_t i = sizeof #name; i < 17; i++) xa_report_str(o, " "); \
  xa_report_dec_w(o, t.name, 16); xa_report_str(o, "  "); xa_report_str(o, doc); xa_report_str(o, "\n");
  XA_STATS_TOTALS(XA_STAT_TEXT)
#undef XA_STAT_TEXT
  xa_report_str(o, "arenas:  #          mapped     small_alloc     large_alloc          active           dirty           muzzy          purged  contended\n");
  for (unsigned i = 0; i < t.narenas; i++) {
    struct xa_stats_arena s;
    xa_stats_arena(i, &s);
    xa_report_str(o, "      ");
    xa_report_dec_w(o, i, 4);
    xa_report_dec_w(o, s.mapped, 16); xa_report_dec_w(o, s.small_allocated, 16); xa_report_dec_w(o, s.large_allocated, 16);
    xa_report_dec_w(o, s.active, 16); xa_report_dec_w(o, s.dirty, 16); xa_report_dec_w(o, s.muzzy, 16); xa_report_dec_w(o, s.purged, 16);
    xa_report_dec_w(o, s.lock_contended, 11);
    xa_report_str(o, "\n");
  }
  xa_report_str(o, "classes:  size         nmalloc           nfree            live          cached         refills   slabs\n");
  struct xa_stats_class cs[XA_NSMALL];
  xa_stats_classes(cs);
  for (unsigned c = 0; c < XA_NSMALL; c++) {
    const struct xa_stats_class *s = &cs[c];
    if (!s->nmalloc && !s->refills && !s->slabs) continue;
    xa_report_dec_w(o, s->size, 14); xa_report_dec_w(o, s->nmalloc, 16); xa_report_dec_w(o, s->nfree, 16); xa_report_dec_w(o, s->live, 16);
    xa_report_dec_w(o, s->cached, 16); xa_report_dec_w(o, s->refills, 16); xa_report_dec_w(o, s->slabs, 8);
    xa_report_str(o, "\n");
  }
}

#define XA_STAT_JSON_S(name, doc) xa_report_str(o, sep); xa_report_str(o, "\"" #name "\":"); xa_report_dec(o, s.name); sep = ",";

static void print_json(struct xa_report *o, bool explain) {
  struct xa_stats_totals t;
  xa_stats_totals(&t);
  xa_report_str(o, "{\"xalloc\":{\"version\":\"" XALLOC_VERSION "\",\"options\":\"");
  char opts[2048];
  xa_options_string(&xa_opt, opts, sizeof opts);
  for (const char *p = opts; *p; p++) {      /* a JSON string: escape what must be */
    char c[2] = {*p, 0};
    if (*p == '"' || *p == '\\') xa_report_str(o, "\\");
    if ((unsigned char)*p < 0x20) c[0] = '?';
    xa_report_str(o, c);
  }
  xa_report_str(o, "\",\"totals\":{");
  const char *sep = "";
#define XA_STAT_JSON(name, doc) xa_report_str(o, sep); xa_report_str(o, "\"" #name "\":"); xa_report_dec(o, t.name); sep = ",";
  XA_STATS_TOTALS(XA_STAT_JSON)
  xa_report_str(o, "},\"arenas\":[");
  for (unsigned i = 0; i < t.narenas; i++) {
    struct xa_stats_arena s;
    xa_stats_arena(i, &s);
    xa_report_str(o, i ? ",{" : "{");
    sep = "";
    XA_STATS_ARENA(XA_STAT_JSON_S)
    xa_report_str(o, "}");
  }
  xa_report_str(o, "],\"classes\":[");
  struct xa_stats_class cs[XA_NSMALL];
  xa_stats_classes(cs);
  for (unsigned c = 0; c < XA_NSMALL; c++) {
    struct xa_stats_class s = cs[c];
    xa_report_str(o, c ? ",{" : "{");
    sep = "";
    XA_STATS_CLASS(XA_STAT_JSON_S)
    xa_report_str(o, "}");
  }
  xa_report_str(o, "]");
  if (explain) {
    struct xa_explain e;
    xa_explain_gather(&e);
    xa_report_str(o, ",\"explain\":");
    xa_explain_print(o, &e, true);
  }
  xa_report_str(o, "}}\n");
#undef XA_STAT_JSON
}

void xa_stats_print(void (*cb)(void *, const char *), void *opaque, bool json, unsigned what) {
  struct xa_report o;
  o.cb = cb;
  o.opaque = opaque;
  o.n = 0;
  if (what & XA_REPORT_STATS) {
    if (json) print_json(&o, what & XA_REPORT_EXPLAIN);
    else print_text(&o);
  }
  if (what & XA_REPORT_EXPLAIN && !(json && what & XA_REPORT_STATS)) {
    struct xa_explain e;
    xa_explain_gather(&e);
    xa_explain_print(&o, &e, json);
    if (json) xa_report_str(&o, "\n");
  }
  xa_report_flush(&o);
}

/* ---- at exit ----------------------------------------------------------- */

/* stats_file with each %p replaced by the process id (%% is a %). */
static bool expand_path(char *out, size_t cap, const char *tmpl) {
  size_t n = 0;
  for (const char *t = tmpl; *t; t++) {
    char num[24];
    const char *piece = t;
    size_t len = 1;
    if (t[0] == '%' && (t[1] == 'p' || t[1] == '%')) {
      if (t[1] == 'p') { len = xa_fmt_dec(num, (uint64_t)xa_os_pid()); piece = num; }
      t++;
    }
    if (n + len >= cap) return false;
    memcpy(out + n, piece, len);
    n += len;
  }
  out[n] = 0;
  return n > 0;
}

static void write_to_fd(void *fd, const char *s) { xa_os_write_fd((int)(intptr_t)fd, s, strlen(s)); }

static void stats_at_exit(void) {
  bool json = xa_opt.stats_format == xa_opt_stats_format_json;
  unsigned what = xa_opt.stats_report == xa_opt_stats_report_stats     ? XA_REPORT_STATS
                  : xa_opt.stats_report == xa_opt_stats_report_explain ? XA_REPORT_EXPLAIN
                                                                        : XA_REPORT_STATS | XA_REPORT_EXPLAIN;
  if (xa_opt.stats_file[0]) {
    char path[XA_OPT_STR_MAX + 32];
    int fd = expand_path(path, sizeof path, xa_opt.stats_file) ? xa_os_open_append(path) : -1;
    if (fd < 0) {
      static const char msg[] = "xalloc: stats_file: cannot open it; statistics not written\n";
      xa_os_write_err(msg, sizeof msg - 1);
      return;
    }
    xa_stats_print(write_to_fd, (void *)(intptr_t)fd, json, what);
    xa_os_close(fd);
    return;
  }
  int fd = xa_os_kept_stderr();
  if (fd >= 0) xa_stats_print(write_to_fd, (void *)(intptr_t)fd, json, what);
}

void xa_stats_at_load(void) {
  if (!xa_opt.stats_print) return;
  if (!xa_opt.stats_file[0]) xa_os_keep_stderr();
  atexit(stats_at_exit);
}
