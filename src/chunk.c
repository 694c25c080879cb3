/* Chunk geometry, the chunk map, and making and deleting chunks (mapped
 * one by one, or taken from a chunk source and given back). */
#include "chunk.h"
#include "mesh.h"
#include "options.h"
#include "os.h"
#include "sizeclass.h"
#include "valgrind.h"

unsigned xa_chunk_npages;
unsigned xa_chunk_first_page;
unsigned xa_chunk_end_page;
unsigned xa_span_stride_shift;
size_t xa_chunk_spans_off;
bool xa_chunk_huge_layout;

#if defined(__x86_64__) || defined(__aarch64__)
#define XA_HUGE_2MIB 1          /* a huge page is 2 MiB where pages are 4 KiB */
#else
#define XA_HUGE_2MIB 0
#endif


uint8_t xa_chunkmap[XA_CHUNKMAP_SIZE] XA_BSS_TABLE;

struct xa_pageinfo *xa_pagemap;
size_t xa_pagemap_units;
static size_t pagemap_written;   /* atomic */
#define PAGEMAP_CHUNK_BYTES (XA_CHUNK_UNITS * sizeof(struct xa_pageinfo))

size_t xa_pagemap_written(void) { return __atomic_load_n(&pagemap_written, __ATOMIC_RELAXED); }

/* The largest page map the kernel grants, in steps of 8x down from one
 * that covers the user address space (as high as the stack lies, at most
 * XA_VA_BITS), kept if it covers itself: the kernel hands out addresses
 * near its own (top-down from the same base), so a map that cannot see
 * its own address would see no chunk.  The fast path reads
 * xa_pagemap_units before xa_pagemap (a compare, then a load after the
 * branch; x86 keeps loads in order, and other targets read it with
 * acquire), so the map is published first. */
static void pagemap_init(void) {
  size_t limit = xa_os_as_limit();
  uintptr_t here = (uintptr_t)__builtin_frame_address(0);
  unsigned top = 64u - (unsigned)__builtin_clzl(here | 1);
  for (unsigned bits = top < XA_VA_BITS ? top : XA_VA_BITS; bits >= 32; bits -= 3) {
    size_t units = (size_t)1 << (bits - XA_UNIT_SHIFT), bytes = units * sizeof(struct xa_pageinfo);
    if (limit != SIZE_MAX && bytes > limit / 16) continue;
    struct xa_pageinfo *m = xa_os_reserve(bytes);
    if (!m) continue;
    if (((uintptr_t)m + bytes) >> XA_UNIT_SHIFT <= units) {
      xa_pagemap = m;
      __atomic_store_n(&xa_pagemap_units, units, __ATOMIC_RELEASE);
      return;
    }
    xa_os_release(m, bytes);
    return;   /* a smaller one would lie lower still */
  }
}

/* Chunk c's part of the page map, made writable; NULL if the map does not
 * reach c or the kernel refused.  Where a page holds several chunks'
 * parts (pages over 8 KiB), the page stays writable for good. */
static struct xa_pageinfo *pagemap_take(struct xa_chunk *c) {
  size_t u0 = (uintptr_t)c >> XA_UNIT_SHIFT;
  if (u0 + XA_CHUNK_UNITS > xa_pagemap_units) return NULL;
  struct xa_pageinfo *info = &xa_pagemap[u0];
  uintptr_t lo = (uintptr_t)info & ~(uintptr_t)(xa_os_page - 1);
  uintptr_t hi = XA_ALIGN_UP((uintptr_t)info + PAGEMAP_CHUNK_BYTES, xa_os_page);
  if (!xa_os_table_write((void *)lo, hi - lo, true)) return NULL;
  __atomic_add_fetch(&pagemap_written, PAGEMAP_CHUNK_BYTES, __ATOMIC_RELAXED);
  return info;
}

/* The part goes back to reading zero ("not ours") before the chunk's
 * range can be anyone else's. */
static void pagemap_give_back(struct xa_pageinfo *info) {
  if (xa_os_page > PAGEMAP_CHUNK_BYTES || !xa_os_table_write(info, PAGEMAP_CHUNK_BYTES, false))
    __builtin_memset(info, 0, PAGEMAP_CHUNK_BYTES);
  __atomic_sub_fetch(&pagemap_written, PAGEMAP_CHUNK_BYTES, __ATOMIC_RELAXED);
}

void xa_chunk_init(void) {
  pagemap_init();
  /* The chunk map is 32 MiB of .bss of which a byte per chunk is
   * written: with transparent huge pages "always", one write would fault
   * in 2 MiB. */
  uintptr_t lo = XA_ALIGN_UP((uintptr_t)xa_chunkmap, xa_os_page);
  uintptr_t hi = ((uintptr_t)xa_chunkmap + sizeof xa_chunkmap) & ~(uintptr_t)(xa_os_page - 1);
  xa_os_hugepage((void *)lo, hi - lo, false);
  unsigned ps = xa_os_page_shift;
  xa_chunk_npages = (unsigned)(XA_CHUNK_SIZE >> ps);
  /* A slab needs nobjs/8 <= npages*pagesize/128 bitmap bytes (16-byte
   * objects); slots of page/64 bytes (min 64) always leave room. */
  xa_span_stride_shift = ps - 6 > 6 ? ps - 6 : 6;
  xa_chunk_spans_off = XA_ALIGN_UP(sizeof(struct xa_chunk), 64);
  size_t hdr = xa_chunk_spans_off + ((size_t)xa_chunk_npages << xa_span_stride_shift);
  xa_chunk_first_page = (unsigned)(XA_ALIGN_UP(hdr, xa_os_page) >> ps) + 1;
  /* The huge layout where huge pages are 2 MiB (4 KiB pages on x86_64 and
   * arm64) and xalloc asks for them; not for meshing (its file's shared
   * pages) nor in secure mode, which keep the trailing guard. */
  xa_chunk_huge_layout = XA_HUGE_2MIB && xa_os_page == XA_CHUNK_LEAD && xa_opt_thp_asked() && !xa_opt.mesh && !xa_opt.secure;
  xa_chunk_end_page = xa_chunk_npages - !xa_chunk_huge_layout;
}

void xa_chunkmap_set(void *chunk, bool on) {
  __atomic_store_n(&xa_chunkmap[(uintptr_t)chunk >> XA_CHUNK_SHIFT], on, __ATOMIC_RELEASE);
}

void xa_chunk_mark_pages(struct xa_chunk *c, unsigned page, unsigned n, unsigned first, uint8_t cls) {
  unsigned us = xa_os_page_shift - XA_UNIT_SHIFT;
  struct xa_pageinfo v = {(uint32_t)((uintptr_t)c + ((uintptr_t)first << xa_os_page_shift)), (uint16_t)first, cls,
                          (uint8_t)(cls == XA_CLS_NONE ? 0 : xa_class_scale(cls))};
  for (size_t u = (size_t)page << us, end = (size_t)(page + n) << us; u < end; u++) c->info[u] = v;
}

/* The header pages that hold only interior slots of span [first,
 * first+n): [*lo, *hi), empty when the span covers no whole slot page. */
static void slot_pages(struct xa_chunk *c, unsigned first, unsigned n, uintptr_t *lo, uintptr_t *hi) {
  *lo = *hi = 0;
  if (n < 2) return;
  *lo = XA_ALIGN_UP((uintptr_t)xa_chunk_span(c, first + 1), xa_os_page);
  *hi = (uintptr_t)xa_chunk_span(c, first + n) & ~(uintptr_t)(xa_os_page - 1);
}

bool xa_chunk_slots_purgeable(struct xa_chunk *c, unsigned first, unsigned n) {
  uintptr_t lo, hi;
  slot_pages(c, first, n, &lo, &hi);
  return lo < hi;
}

void xa_chunk_purge_slots(struct xa_chunk *c, unsigned first, unsigned n) {
  uintptr_t lo, hi;
  slot_pages(c, first, n, &lo, &hi);
  if (lo < hi) xa_mesh_purge(false, (void *)lo, hi - lo);     /* the header: private memory */
}

void xa_chunk_mark_span(struct xa_chunk *c, struct xa_span *s) {
  xa_chunk_mark_pages(c, s->first, s->npages, s->first, s->state == XA_SPAN_SLAB || s->state == XA_SPAN_MESHED ? s->cls : XA_CLS_NONE);
}

/* The chunk's two guard pages: the one after its header, and either its
 * first page (xa_chunk_huge_layout) or its last. */
static char *guard_page(struct xa_chunk *c, int which) {
  if (which == 0) return (char *)c + ((size_t)(xa_chunk_first_page - 1) << xa_os_page_shift);
  return xa_chunk_huge_layout ? (char *)c : (char *)c + ((size_t)xa_chunk_end_page << xa_os_page_shift);
}

void xa_chunk_guard(struct xa_chunk *c) {
  xa_os_guard(guard_page(c, 0), xa_os_page);
  xa_os_guard(guard_page(c, 1), xa_os_page);
}

static struct xa_chunk_source source;
__thread bool xa_chunk_quiet_thread;

struct xa_chunk_source xa_chunk_set_source(const struct xa_chunk_source *src) {
  struct xa_chunk_source last = source;
  source = *src;
  return last;
}

/* A chunk's memory: from the source, else a mapping of its own.  A chunk
 * the source gives with pages that are not all clean gets its header
 * zeroed (a fresh chunk's reads as zero: the slots and their bitmaps
 * start empty) and its span area starts dirty. */
static struct xa_chunk *chunk_memory(void) {
  bool clean = true;
  unsigned tag = 0;
  /* (meshing maps its file over a chunk at its address: never in a
   * region, where the next block would share the file's pages) */
  struct xa_chunk *c = source.take && __atomic_load_n(source.holds, __ATOMIC_RELAXED) && !xa_mesh_on
                           ? source.take(XA_CHUNK_SIZE, &clean, &tag) : NULL;
  if (c && ((uintptr_t)c + XA_CHUNK_SIZE - 1) >> XA_VA_BITS) {   /* cannot be registered */
    source.give(c, XA_CHUNK_SIZE, tag, clean);
    c = NULL;
  }
  if (c) {
    if (!clean) __builtin_memset(c->units, 0, ((size_t)(xa_chunk_first_page - 1) << xa_os_page_shift) - XA_CHUNK_LEAD);
    c->give = source.give;
    c->tag = tag;
    c->born_dirty = !clean;
    return c;
  }
  c = xa_os_map(XA_CHUNK_SIZE, XA_CHUNK_SIZE);
  if (c && (uintptr_t)c >> XA_VA_BITS) { /* cannot be registered: refuse it */
    xa_os_unmap(c, XA_CHUNK_SIZE);
    return NULL;
  }
  return c;
}

/* The chunk's second half: one whole huge page of span area in the huge
 * layout (chunk.h). */
static char *thp_half(struct xa_chunk *c) { return (char *)c + XA_CHUNK_SIZE / 2; }

bool xa_chunk_purged(struct xa_chunk *c, const char *p, size_t len) {
  char *half = thp_half(c), *end = (char *)c + XA_CHUNK_SIZE;
  if (__atomic_load_n(&c->thp, __ATOMIC_ACQUIRE) != XA_CHUNK_THP_ASKED || p + len <= half) return false;
  if (p <= half && p + len >= end) return false;     /* all of it: the huge page goes whole */
  if (__atomic_exchange_n(&c->thp, XA_CHUNK_THP_WITHDRAWN, __ATOMIC_ACQ_REL) != XA_CHUNK_THP_ASKED) return false;
  xa_os_hugepage(xa_chunk_span_area(c), xa_chunk_span_bytes(), false);
  /* The purge split the huge page's mapping, but the kernel frees the
   * purged pages only once it splits the page itself, which it defers
   * until it runs short of memory: till then the process's memory
   * cgroup is charged for all of it.  MADV_COLD splits it now, given a
   * resident page of it: one on either side of the range. */
  char *lo = (char *)p - xa_os_page > half ? (char *)p - xa_os_page : half;
  char *hi = (char *)p + len + xa_os_page < end ? (char *)p + len + xa_os_page : end;
  xa_os_split_huge(lo, (size_t)(hi - lo));
  return true;
}

struct xa_chunk *xa_chunk_new(struct xa_arena *a, bool huge) {
  struct xa_chunk *c = chunk_memory();
  if (!c) return NULL;
  /* mesh:true: the span pages from the memfd, so its slabs can be
   * meshed (the header stays private: fork copies it exactly) */
  c->meshable = xa_mesh_on && xa_mesh_back(xa_chunk_span_area(c), xa_chunk_span_bytes(), &c->mesh_gen);
  c->arena = a;
  struct xa_pageinfo *mapped = pagemap_take(c);
  c->info = mapped ? mapped : c->units;
  /* Every unit says "not a slab" (the free span made next only writes its
   * boundary pages): a fresh page's zero info would read as class 0. */
  xa_chunk_mark_pages(c, 0, xa_chunk_npages, 0, XA_CLS_NONE);
  /* Header and guard pages: a span of state HEADER each, so no lookup or
   * merge takes them for user memory.  A guard the kernel refuses (no
   * mappings left) only leaves that page unused. */
  struct xa_span *h = xa_chunk_span(c, 0);
  h->first = 0;
  h->npages = xa_chunk_first_page;
  h->state = XA_SPAN_HEADER;
  xa_chunk_mark_span(c, h);
  if (!xa_chunk_huge_layout) {
    struct xa_span *g = xa_chunk_span(c, xa_chunk_end_page);
    g->first = (uint16_t)xa_chunk_end_page;
    g->npages = 1;
    g->state = XA_SPAN_HEADER;
    xa_chunk_mark_span(c, g);
  }
  xa_chunk_guard(c);
  /* Advice set either way: a chunk carved from a region would otherwise
   * keep what a huge block there asked, and under the system's "always"
   * a half that does not ask would get huge pages that nothing splits
   * when purged. */
  if (xa_chunk_huge_layout) {
    c->thp = huge && xa_opt_thp_asked() ? XA_CHUNK_THP_ASKED : XA_CHUNK_THP_NO;
    xa_os_hugepage(xa_chunk_span_area(c), xa_chunk_span_bytes(), c->thp == XA_CHUNK_THP_ASKED);
  }
  xa_valgrind_noaccess((char *)c + ((size_t)xa_chunk_first_page << xa_os_page_shift),
                       (size_t)(xa_chunk_end_page - xa_chunk_first_page) << xa_os_page_shift);
  xa_chunkmap_set(c, true);
  return c;
}

void xa_chunk_delete(struct xa_chunk *c) {
  xa_chunkmap_set(c, false);
  if (c->info != c->units) pagemap_give_back(c->info);
  /* Out of the file first: once unmapped, the range may be a new chunk's. */
  if (c->meshable) xa_mesh_forget(xa_chunk_span_area(c), xa_chunk_span_bytes());
  if (!c->give) {
    xa_os_unmap(c, XA_CHUNK_SIZE);
    return;
  }
  void (*give)(void *, size_t, unsigned, bool) = c->give;
  unsigned tag = c->tag;
  bool purge = c->retire_purge || xa_chunk_quiet_thread;
  /* The guard pages become the source's next block's pages.  Where the
   * kernel refuses (no mappings left), the range stays out of use, its
   * pages purged: those around the guards (a purge the kernel refuses
   * writes zeros, which a guard would not take). */
  char *g0 = guard_page(c, 0), *g1 = guard_page(c, 1);
  if (!xa_os_protect(g0, xa_os_page, true, true, false) || !xa_os_protect(g1, xa_os_page, true, true, false)) {
    char *lo = xa_chunk_huge_layout ? (char *)c + xa_os_page : (char *)c;
    char *hi = xa_chunk_huge_layout ? (char *)c + XA_CHUNK_SIZE : g1;
    xa_os_purge(lo, (size_t)(g0 - lo));
    xa_os_purge(g0 + xa_os_page, (size_t)(hi - (g0 + xa_os_page)));
    return;
  }
  /* thp:always advises whole regions (huge.c), and its blocks ask for
   * nothing of their own: the range asks again.  (With thp:auto a freed
   * range keeps its advice, as a huge block's does.) */
  if (xa_chunk_huge_layout && xa_opt.thp == xa_opt_thp_always) xa_os_hugepage(xa_chunk_span_area(c), xa_chunk_span_bytes(), true);
  if (purge) xa_os_purge(c, XA_CHUNK_SIZE);
  give(c, XA_CHUNK_SIZE, tag, purge);
}
