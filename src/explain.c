/* The explain report (explain.h). */
#include "explain.h"
#include "arena.h"
#include "chunk.h"
#include "base.h"
#include "fmt.h"
#include "huge.h"
#include "options.h"
#include "prof.h"
#include "tcache.h"
#include <string.h>

void xa_explain_gather(struct xa_explain *e) {
  memset(e, 0, sizeof *e);
  uint64_t nmalloc[XA_NSMALL], cached[XA_NSMALL];
  xa_tcache_class_counts(nmalloc, cached);
  for (unsigned i = 0, n = xa_arena_count(); i < n; i++) {
    struct xa_arena_resident r;
    struct xa_arena_stats s;
    xa_arena_resident(xa_arenas[i], &r);
    xa_arena_get_stats(xa_arenas[i], &s);
    e->large += r.large;
    e->dirty += r.free_dirty;
    e->muzzy += r.free_muzzy;
    e->clean += r.free_clean;
    e->purging += r.purging;
    e->metadata += r.header;
    e->mapped += s.mapped;
    for (unsigned c = 0; c < XA_NSMALL; c++) {
      e->cls[c].resident += r.slab[c];
      e->cls[c].slabs += s.bins[c].nslabs;
      e->cls[c].live += s.bins[c].curobjs;
    }
  }
  /* A slab class's resident pages hold its live objects, the objects
   * threads cache, and free slots: in that order, within what is
   * resident (an object never written may sit on a page never touched). */
  for (unsigned c = 0; c < XA_NSMALL; c++) {
    uint64_t size = xa_classes[c].size, res = e->cls[c].resident;
    uint64_t in_cache = cached[c] < e->cls[c].live ? cached[c] : e->cls[c].live;
    e->cls[c].cached = in_cache;
    e->cls[c].live -= in_cache;
    uint64_t live = e->cls[c].live * size < res ? e->cls[c].live * size : res;
    uint64_t held = in_cache * size < res - live ? in_cache * size : res - live;
    e->live_small += live;
    e->cached += held;
    e->free_slots += res - live - held;
  }
  size_t huge_live, huge_cache;
  xa_huge_resident(&huge_live, &huge_cache);
  e->huge = huge_live;
  e->huge_cache = huge_cache;
  e->mapped += xa_huge_reserved() + xa_base_allocated() + xa_tcache_mapped();
  e->metadata += xa_base_resident() + xa_tcache_resident() + xa_pagemap_written() + xa_huge_metadata_resident();
  /* the chunk map: a byte per 4 MiB of address space, in the library's
   * zero-filled data, of which only the pages written are resident */
  uintptr_t lo = (uintptr_t)xa_chunkmap & ~(uintptr_t)(xa_os_page - 1);
  uintptr_t hi = XA_ALIGN_UP((uintptr_t)xa_chunkmap + XA_CHUNKMAP_SIZE, xa_os_page);
  e->metadata += xa_os_resident_range((void *)lo, hi - lo, NULL);
  e->resident = e->live_small + e->cached + e->free_slots + e->large + e->huge + e->dirty + e->muzzy + e->clean +
                e->purging + e->huge_cache + e->metadata;
  e->rounding_known = xa_prof_rounding(&e->rounding);
  e->kernel_known = xa_os_rollup(&e->k);
}

/* ---- printing ------------------------------------------------------------ */

/* "12.3 MiB" (one decimal, rounded down) */
static void put_mib(struct xa_report *o, uint64_t bytes) {
  uint64_t tenths = bytes * 10 / (1u << 20);
  char num[32];
  size_t k = xa_fmt_dec(num, tenths / 10);
  num[k++] = '.';
  num[k++] = (char)('0' + tenths % 10);
  num[k] = 0;
  for (size_t i = k; i < 9; i++) xa_report_str(o, " ");
  xa_report_str(o, num);
  xa_report_str(o, " MiB");
}

static void put_pct(struct xa_report *o, uint64_t part, uint64_t whole) {
  uint64_t pct = whole ? part * 1000 / whole : 0;     /* tenths */
  xa_report_dec_w(o, pct / 10, 5);
  char d[4] = {'.', (char)('0' + pct % 10), '%', 0};
  xa_report_str(o, d);
}

static void line(struct xa_report *o, const char *name, uint64_t bytes, uint64_t whole, const char *what) {
  xa_report_str(o, "  ");
  xa_report_str_w(o, name, 22);
  xa_report_dec_w(o, bytes, 14);
  put_mib(o, bytes);
  put_pct(o, bytes, whole);
  xa_report_str(o, "  ");
  xa_report_str(o, what);
  xa_report_str(o, "\n");
}

static uint64_t sub(uint64_t a, uint64_t b) { return a > b ? a - b : 0; }

/* The largest part an option could shrink, and which option. */
struct advice {
  const char *part, *json_part, *option;
  uint64_t bytes;
  long now;
  const char *unit;
};

static struct advice largest_avoidable(const struct xa_explain *e) {
  struct advice a[] = {
      {"dirty free pages", "dirty",
       "dirty_decay_ms (lower returns freed pages sooner; 0 at once), or call malloc_trim(0)", e->dirty + e->clean,
       xa_opt.dirty_decay_ms, " ms"},
      {"muzzy free pages", "muzzy",
       xa_opt.purge == xa_opt_purge_free ? "purge:dontneed (the kernel takes MADV_FREE'd pages only under pressure), or muzzy_decay_ms"
                                         : "dirty_decay_ms (slabs that emptied while being purged wait for it)",
       e->muzzy, xa_opt.purge == xa_opt_purge_free ? xa_opt.muzzy_decay_ms : xa_opt.dirty_decay_ms, " ms"},
      {"thread caches", "thread_caches", "tcache_bytes per class and thread, tcache_total_bytes for all threads",
       e->cached, xa_opt.tcache_total_bytes, " bytes (tcache_total_bytes)"},
      {"huge-block cache", "huge_cache",
       "huge_cache_bytes (live and freed huge-block pages stay within the live bytes' recent peak plus this; the freed ones decay over dirty_decay_ms)",
       e->huge_cache, xa_opt.huge_cache_bytes, " bytes"},
  };
  size_t best = 0;
  for (size_t i = 1; i < sizeof a / sizeof a[0]; i++)
    if (a[i].bytes > a[best].bytes) best = i;
  return a[best];
}

/* The kernel's anonymous and shared memory that is not xalloc's: xalloc's
 * pages are anonymous, or shared where meshing backs its chunks with a
 * memfd (mesh:true). */
static uint64_t outside_anon(const struct xa_explain *e) { return sub(e->k.anonymous + e->k.shmem, e->resident); }

static void print_text(struct xa_report *o, const struct xa_explain *e) {
  uint64_t rss = e->k.rss;
  xa_report_str(o, "___ xalloc explain: where the resident memory is ___\n");
  if (e->kernel_known) {
    uint64_t file = sub(sub(rss, e->k.anonymous), e->k.shmem);
    xa_report_str(o, "the kernel's account (/proc/self/smaps_rollup):\n");
    line(o, "Rss", rss, rss, "resident set of the process");
    line(o, "  Anonymous", e->k.anonymous, rss, "anonymous memory: heaps, stacks, xalloc's mappings");
    line(o, "  file-backed", file, rss, "code and mapped files (Rss - Anonymous - Shmem)");
    line(o, "  Shmem", e->k.shmem, rss, "shared memory (RssShmem): with mesh:true, xalloc's chunks");
    line(o, "LazyFree", e->k.lazyfree, rss, "MADV_FREE'd pages the kernel has not taken yet");
    line(o, "AnonHugePages", e->k.anon_huge, rss, "anonymous memory on transparent huge pages");
    line(o, "Pss", e->k.pss, rss, "Rss with each page divided among its mappings: a meshed page counts once");
  } else {
    xa_report_str(o, "the kernel's account: /proc/self/smaps_rollup cannot be read\n");
  }
  uint64_t whole = e->kernel_known ? rss : e->resident;
  xa_report_str(o, "xalloc's resident memory (mincore over its mappings; % of Rss):\n");
  line(o, "resident", e->resident, whole, "all of xalloc's, the sum of the parts below");
  line(o, "  live small objects", e->live_small, whole, "slab bytes of objects allocated and not freed");
  line(o, "  thread caches", e->cached, whole, "free objects threads keep for their next mallocs");
  line(o, "  free slots in slabs", e->free_slots, whole, "slab pages holding neither: fragmentation inside slabs");
  line(o, "  large blocks", e->large, whole, "live blocks of 32 KiB to 256 KiB");
  line(o, "  huge blocks", e->huge, whole, "live blocks of 256 KiB and more");
  line(o, "  dirty free pages", e->dirty + e->clean, whole, "freed, not yet returned (dirty_decay_ms)");
  line(o, "  muzzy free pages", e->muzzy, whole, "returned with MADV_FREE, still counted until the kernel takes them");
  line(o, "  huge-block cache", e->huge_cache, whole, "freed huge-block pages kept for reuse (huge_cache_bytes)");
  line(o, "  being purged", e->purging, whole, "free pages under madvise at this moment");
  line(o, "  metadata", e->metadata, whole, "chunk headers, the thread caches' arrays, tables");
  if (e->rounding_known) {
    xa_report_str(o, "  of the live small objects, about ");
    xa_report_dec(o, e->rounding);
    xa_report_str(o, " bytes are size-class rounding (from the heap profiler's samples)\n");
  }
  if (e->kernel_known) {
    xa_report_str(o, "outside xalloc:\n");
    line(o, "anonymous and Shmem", outside_anon(e), rss,
         "stacks, other mmaps, data of loaded objects (Anonymous + Shmem - xalloc's resident)");
    line(o, "file-backed", sub(sub(rss, e->k.anonymous), e->k.shmem), rss, "code and mapped files");
  }
  struct advice a = largest_avoidable(e);
  xa_report_str(o, "largest part an option could shrink: ");
  if (a.bytes < (64u << 10)) {
    xa_report_str(o, "none worth it (each under 64 KiB)\n");
  } else {
    xa_report_str(o, a.part);
    xa_report_str(o, ",");
    put_mib(o, a.bytes);
    xa_report_str(o, ": ");
    xa_report_str(o, a.option);
    xa_report_str(o, " (now ");
    xa_report_dec(o, (uint64_t)a.now);
    xa_report_str(o, a.unit);
    xa_report_str(o, ")\n");
  }
  if (e->free_slots > a.bytes && e->free_slots >= (64u << 10))
    xa_report_str(o, "(the free slots in slabs are larger, but no option frees them: they are the survivors' pages; "
                     "prof:true shows which call sites hold the survivors)\n");
  xa_report_str(o, "slabs by class:  size   slabs   live objs  cached objs  occupancy      resident\n");
  for (unsigned c = 0; c < XA_NSMALL; c++) {
    if (!e->cls[c].slabs) continue;
    uint64_t cap = e->cls[c].slabs * xa_classes[c].nobjs;
    xa_report_dec_w(o, xa_classes[c].size, 20);
    xa_report_dec_w(o, e->cls[c].slabs, 8);
    xa_report_dec_w(o, e->cls[c].live, 12);
    xa_report_dec_w(o, e->cls[c].cached, 13);
    put_pct(o, e->cls[c].live + e->cls[c].cached, cap);
    xa_report_dec_w(o, e->cls[c].resident, 14);
    xa_report_str(o, "\n");
  }
}

static void json_num(struct xa_report *o, const char **sep, const char *name, uint64_t v) {
  xa_report_str(o, *sep);
  xa_report_str(o, "\"");
  xa_report_str(o, name);
  xa_report_str(o, "\":");
  xa_report_dec(o, v);
  *sep = ",";
}

static void print_json(struct xa_report *o, const struct xa_explain *e) {
  const char *sep = "";
  xa_report_str(o, "{\"kernel\":{");
  if (e->kernel_known) {
    json_num(o, &sep, "rss", e->k.rss);
    json_num(o, &sep, "anonymous", e->k.anonymous);
    json_num(o, &sep, "file", sub(sub(e->k.rss, e->k.anonymous), e->k.shmem));
    json_num(o, &sep, "shmem", e->k.shmem);
    json_num(o, &sep, "lazyfree", e->k.lazyfree);
    json_num(o, &sep, "anon_huge", e->k.anon_huge);
    json_num(o, &sep, "pss", e->k.pss);
  }
  sep = "";
  xa_report_str(o, "},\"xalloc\":{");
  json_num(o, &sep, "resident", e->resident);
  json_num(o, &sep, "mapped", e->mapped);
  json_num(o, &sep, "live_small", e->live_small);
  json_num(o, &sep, "thread_caches", e->cached);
  json_num(o, &sep, "free_slots", e->free_slots);
  json_num(o, &sep, "large", e->large);
  json_num(o, &sep, "huge", e->huge);
  json_num(o, &sep, "dirty", e->dirty + e->clean);
  json_num(o, &sep, "muzzy", e->muzzy);
  json_num(o, &sep, "huge_cache", e->huge_cache);
  json_num(o, &sep, "purging", e->purging);
  json_num(o, &sep, "metadata", e->metadata);
  if (e->rounding_known) json_num(o, &sep, "rounding", e->rounding);
  sep = "";
  xa_report_str(o, "},\"outside\":{");
  if (e->kernel_known) {
    json_num(o, &sep, "anonymous_and_shmem", outside_anon(e));
    json_num(o, &sep, "file", sub(sub(e->k.rss, e->k.anonymous), e->k.shmem));
  }
  struct advice a = largest_avoidable(e);
  xa_report_str(o, "},\"largest_avoidable\":{\"part\":\"");
  xa_report_str(o, a.json_part);
  xa_report_str(o, "\",\"bytes\":");
  xa_report_dec(o, a.bytes);
  xa_report_str(o, ",\"option\":\"");
  xa_report_str(o, a.option);
  xa_report_str(o, "\"},\"classes\":[");
  sep = "";
  for (unsigned c = 0; c < XA_NSMALL; c++) {
    if (!e->cls[c].slabs) continue;
    xa_report_str(o, sep);
    const char *s2 = "";
    xa_report_str(o, "{");
    json_num(o, &s2, "size", xa_classes[c].size);
    json_num(o, &s2, "slabs", e->cls[c].slabs);
    json_num(o, &s2, "objects", e->cls[c].slabs * xa_classes[c].nobjs);
    json_num(o, &s2, "live", e->cls[c].live);
    json_num(o, &s2, "cached", e->cls[c].cached);
    json_num(o, &s2, "resident", e->cls[c].resident);
    xa_report_str(o, "}");
    sep = ",";
  }
  xa_report_str(o, "]}");
}

void xa_explain_print(struct xa_report *o, const struct xa_explain *e, bool json) {
  if (json) print_json(o, e);
  else print_text(o, e);
}
