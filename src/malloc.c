/* The public API: standard C, POSIX and glibc entry points, their glibc
 * aliases, and the slow paths behind the inline fast paths. */
#define _GNU_SOURCE
#include "arena.h"
#include "error.h"
#include "fastpath.h"
#include "huge.h"
#include "init.h"
#include "options.h"
#include "os.h"
#include "prof.h"
#include "purge.h"
#include "stats.h"
#include "valgrind.h"
#include "xalloc.h"

#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <string.h>
#include <unistd.h>

/* Requests above this fail like glibc's (ENOMEM), before any arithmetic. */
#define XA_REQUEST_MAX ((size_t)PTRDIFF_MAX)

static void *fail_nomem(void) {
  errno = ENOMEM;
  return NULL;
}

/* ---- slow paths ------------------------------------------------------ */

/* A small object for a thread with no cache (exiting thread, or no memory
 * for a cache): straight from the arena. */
static void *small_uncached(unsigned cls) {
  void *p;
  return xa_arena_refill(xa_arena_choose(), cls, &p, 1) ? p : NULL;
}

/* Pass on what a thread-cache slow path did (tcache.h: the cache does not
 * call the purger itself).  Waking the purger covers watching the caches. */
static void tell_purger(unsigned news) {
  if (news & XA_TC_SQUEEZED) xa_purge_reclaim_soon();
  if (news & XA_TC_RETURNED) xa_purge_notify();
  else if (news & XA_TC_TOOK) xa_purge_watch_caches();
}

static void *alloc_sampled(size_t n);

static void *alloc_small(size_t n) {
  unsigned cls = xa_sizeclass_of(n);
  if (unlikely(!xa_sizeclass_direct(n))) xa_sizeclass_direct_fill(n);   /* the fast path's table */
  struct xa_tcache *tc = xa_tcache_get();
  unsigned news = 0;
  /* Count the allocation (the fast path counts its own); the count
   * picks the heap profiler's samples. */
  bool sample;
  if (tc) {
    sample = xa_tcache_tick(tc, cls);
  } else {
    xa_tcache_count_uncached(cls);
    sample = unlikely(xa_prof_on) && xa_prof_pick(xa_classes[cls].size);
  }
  if (unlikely(sample)) {
    void *q = alloc_sampled(n);
    if (q) return q;                   /* else: an unsampled object */
  }
  void *p = tc ? xa_tcache_alloc_refill(tc, cls, &news) : small_uncached(cls);
  tell_purger(news);
  if (!p) return fail_nomem();
  if (tc) *(uintptr_t *)p = 0;         /* the freed mark, if it came from a cache */
  /* junk:true turns the caches off, so every allocation passes here */
  if (unlikely(xa_opt.junk)) xa_valgrind_fill(p, XA_JUNK_ALLOC, xa_classes[cls].size);
  xa_valgrind_alloc(p, n, false);
  xa_purge_safe_point();
  return p;
}

/* The bytes a large request of n bytes gets: whole pages, rounded up to
 * one of eight sizes per doubling (under 1/8 more than asked).  A block
 * that grows a little at a time (a tensor gaining a row per step, by
 * realloc or by allocate-copy-free) then keeps its size class for 1/8 of
 * growth: realloc stays in place, and the block freed by the previous
 * step fits the next request exactly, with its pages still resident
 * (no page fault).  Pages past what the program touches stay untouched. */
static size_t large_size(size_t n) {
  size_t pages = (n + xa_os_page - 1) >> xa_os_page_shift;
  unsigned top = 63 - (unsigned)__builtin_clzl(pages);
  if (top > 3) {
    size_t step = (size_t)1 << (top - 3);
    pages = (pages + step - 1) & ~(step - 1);
  }
  return pages << xa_os_page_shift;
}

/* The bytes realloc gives a large or huge block that grows: a quarter
 * more than asked, rounded as large_size does.  A block grown a little at a time
 * (a K/V tensor gaining a row per step) then moves, copying everything,
 * once per quarter of growth instead of once per eighth: half the bytes
 * copied.  The pages of the headroom stay untouched until written.  Not
 * from XA_REMAP_MIN up, where growth moves pages instead of bytes. */
static size_t grow_size(size_t n) {
  size_t g = n + n / 4;
  return large_size(g < XA_REMAP_MIN ? g : n);
}

/* The bytes a huge request gets: large_size's classes below XA_REMAP_MIN,
 * where blocks grow by allocate-copy-free (the freed block then fits the
 * next step); whole pages above, where realloc moves pages and rounding
 * up would only keep more resident pages in reused extents (mimalloc-bench
 * malloc-large: 10% more peak RSS with the rounding).  huge.c still makes
 * a block that asks for huge pages whole 2 MiB pages: that costs at most
 * one huge page a block, and keeps its huge pages from being split. */
static size_t huge_size(size_t n) {
  return n < XA_REMAP_MIN ? large_size(n) : XA_ALIGN_UP(n, xa_os_page);
}

/* A small allocation the heap profiler samples: a block of whole pages
 * of its own (prof.h says why), recorded with the caller's stack. */
static XA_NOINLINE void *alloc_sampled(size_t n) {
  void *p = xa_arena_alloc_large(xa_arena_choose(), large_size(n ? n : 1), xa_os_page);
  if (!p) return NULL;
  xa_prof_record(p, n);
  if (unlikely(xa_opt.junk)) xa_valgrind_fill(p, XA_JUNK_ALLOC, n);
  xa_valgrind_alloc(p, n, false);
  xa_purge_safe_point();
  return p;
}

/* Large or huge block of n bytes aligned to align (a power of two);
 * *zeroed tells whether it is known to read as zero.  sparse: calloc's
 * (xa_huge_alloc). */
static void *alloc_big(size_t n, size_t align, bool sparse, bool *zeroed) {
  *zeroed = false;
  if (n > XA_REQUEST_MAX || align > XA_REQUEST_MAX / 2) return fail_nomem();
  void *p = NULL;
  if (n < XA_HUGE_MIN && align < XA_CHUNK_SIZE / 4)
    p = xa_arena_alloc_large(xa_arena_choose(), large_size(n), align);
  if (!p) p = xa_huge_alloc(huge_size(n), align, sparse, zeroed);
  if (!p) {
    /* Memory may sit in caches and free pages: give it back and retry.
     * Every huge shard's wholly free regions go too, after the arenas
     * (their chunks come back to them): xa_huge_alloc releases only its
     * own shard's, and a thread that moves between CPUs frees blocks in
     * others, whose free regions then hold the address space. */
    xa_tcache_flush_all();
    xa_arena_purge_all();
    xa_arena_release_spares_all();
    xa_huge_cache_decay(UINT64_MAX);
    p = xa_huge_alloc(huge_size(n), align, sparse, zeroed);
  }
  if (!p) return fail_nomem();
  if (unlikely(xa_prof_on) && xa_prof_pick(n)) xa_prof_record(p, n);
  if (unlikely(xa_opt.junk)) {
    xa_valgrind_fill(p, XA_JUNK_ALLOC, n);
    *zeroed = false;
  }
  xa_valgrind_alloc(p, n, *zeroed);
  xa_purge_safe_point();
  return p;
}

XA_NOINLINE void *xa_malloc_slow(size_t n) {
  if (unlikely(!xa_init())) return fail_nomem();
  if (n <= XA_SMALL_MAX) return alloc_small(n);
  bool zeroed;
  return alloc_big(n, xa_os_page, false, &zeroed);
}

/* Kinds of block, as found by lookup(). */
enum kind { K_INVALID, K_SMALL, K_LARGE, K_HUGE };

struct block {
  enum kind kind;
  int cls;
  struct xa_span *span;
  size_t usable;
};

/* Classify p; never writes anything. */
static struct block lookup(const void *p) {
  struct block b = {K_INVALID, -1, NULL, 0};
  size_t cls = xa_small_class_of(p);
  if (cls != XA_CLS_NONE) {
    b.kind = K_SMALL;
    b.cls = (int)cls;
    b.usable = xa_classes[cls].size;
  } else if (xa_chunkmap_test((uintptr_t)p)) {
    b.span = xa_arena_large_span(p);
    if (b.span) { b.kind = K_LARGE; b.usable = xa_span_bytes(b.span); }
  } else if ((b.usable = xa_huge_usable(p)) != 0) {
    b.kind = K_HUGE;
  }
  return b;
}

/* Report p, which is no live block, as what it most likely is.  This may
 * be the process's first call (a bad free before the constructor ran), so
 * the options are read first: abort_on_error:false then holds for it too. */
static XA_NOINLINE XA_COLD void report_invalid(const char *fn, const void *p) {
  (void)xa_init();
  bool freed = xa_chunkmap_test((uintptr_t)p) ? xa_arena_was_freed(p) : xa_huge_is_cached(p);
  xa_error_pointer(fn, freed ? "double free" : "invalid pointer", p);
}

/* junk: mark freed memory; secure: zero it, so nothing leaks to the next
 * owner (small objects: by the arena, under its lock).  Only for a block
 * that is really allocated (double frees are caught by the arena without
 * touching the block). */
static XA_NOINLINE void free_fill(void *p, struct block b) {
  if (b.kind == K_SMALL && (!xa_opt.junk || xa_arena_small_is_free(p))) return;
  xa_valgrind_fill(p, xa_opt.junk ? XA_JUNK_FREE : 0, b.usable);
}

static void free_block(void *p, struct block b, const char *fn) {
  bool first = xa_tc == &xa_tcache_boot;   /* before anything allocates */
  if (unlikely(xa_opt.junk | xa_opt.secure) && (b.kind == K_SMALL || b.kind == K_LARGE))
    free_fill(p, b);
  if (b.kind != K_INVALID) xa_valgrind_free(p);
  switch (b.kind) {
  case K_SMALL: {
    /* free_sized and the aligned frees come this way: push as free() does
     * (fails for a full bin, a marked block and the boot cache) */
    if (xa_tc_push_freed((size_t)b.cls, p)) return;
    struct xa_tcache *tc = xa_tcache_get();
    unsigned news = 0;
    if (!tc) {
      xa_arena_flush(&p, 1, fn);
      news = XA_TC_RETURNED;         /* no cache GC will tell the purger */
    } else if (!xa_tcache_free_flush(tc, (unsigned)b.cls, p, &news)) xa_error_pointer(fn, "double free", p);
    else if (unlikely(first)) xa_tcache_bury_first(tc, (unsigned)b.cls, &news);
    tell_purger(news);
    return;
  }
  case K_LARGE:
    if (unlikely(xa_prof_on)) xa_prof_forget(p);
    xa_arena_free_large(b.span);
    xa_purge_notify();
    return;
  case K_HUGE:
    if (unlikely(xa_prof_on)) xa_prof_forget(p);
    if (xa_huge_free(p)) { xa_purge_notify(); return; }
    break;
  default: break;
  }
  report_invalid(fn, p);   /* returns: call ignored */
}

static void free_checked(void *p, const char *fn) {
  if (!p) return;
  free_block(p, lookup(p), fn);
}

XA_NOINLINE void xa_free_slow(void *p) {
  /* A chunk the page map does not reach (chunk.h) keeps its page info in
   * its header: the same push, found through the chunk map.  Only where
   * the map had no slab record for p: else the fast path's push already
   * failed (full bin, freed mark) and would fail again. */
  uintptr_t u = xa_pagemap_unit(p);
  if ((u >= xa_pagemap_limit() || xa_pagemap[u].cls_scaled == 0) && xa_chunkmap_test((uintptr_t)p) &&
      xa_free_push(p, xa_chunk_info(xa_chunk_of(p), p)))
    return;
  free_checked(p, "free");
}

/* ---- aligned allocation ---------------------------------------------- */

/* The small class aligned_alloc(align, n) takes: the first class from n's
 * whose size is a multiple of align (slabs start on a page, so all its
 * objects are aligned; power-of-two classes always qualify), or XA_NSMALL
 * when n is served large. */
static unsigned aligned_class(size_t align, size_t n) {
  if (n > XA_SMALL_MAX || align > xa_os_page) return XA_NSMALL;
  unsigned c = xa_sizeclass_of(n);
  while (c < XA_NSMALL && (xa_classes[c].size & (align - 1)) != 0) c++;
  return c;
}

static void *alloc_aligned(size_t align, size_t n) {
  if (align <= XA_MIN_ALIGN) return xa_malloc_fast(n);
  if (unlikely(!xa_init())) return fail_nomem();
  unsigned c = aligned_class(align, n);
  if (c < XA_NSMALL) return xa_malloc_fast(xa_classes[c].size);
  if (n <= XA_SMALL_MAX) n = XA_SMALL_MAX + 1;   /* large from here on */
  bool zeroed;
  return alloc_big(n, align, false, &zeroed);
}

/* ---- sized frees: is this the block the claimed request made? ---------- */

/* A large or huge block is the request rounded to pages, or up to 1/8
 * more (large_size's classes), or to whole 2 MiB pages (a huge block
 * that asks for huge pages, huge.c). */
static bool pages_fit(size_t usable, size_t n) {
  size_t s = XA_ALIGN_UP(n, xa_os_page);
  return s >= n && s <= usable && (usable - s <= s / 8 + xa_os_page || usable == xa_huge_block_size(s));
}

/* Would aligned_alloc(align, n) (align <= XA_MIN_ALIGN: malloc(n)) have
 * returned block b?  Small: exactly its class; large: exactly its page
 * count, with pages_fit's room. */
static bool made_for(struct block b, size_t align, size_t n) {
  unsigned c = align <= XA_MIN_ALIGN ? (n <= XA_SMALL_MAX ? xa_sizeclass_of(n) : XA_NSMALL) : aligned_class(align, n);
  if (c < XA_NSMALL) return b.kind == K_SMALL && (unsigned)b.cls == c;
  if (n <= XA_SMALL_MAX) n = XA_SMALL_MAX + 1;
  return (b.kind == K_LARGE || b.kind == K_HUGE) && pages_fit(b.usable, n);
}

/* Sizes realloc leaves in a block: at most the usable size and more than
 * half of it, except that a large block keeps no more than a growing
 * realloc gives it (grow_size, as huge.c rounds it; so any small size
 * stays in a larger one). */
static bool realloc_left(struct block b, size_t n) {
  if (n > b.usable || (n <= b.usable / 2 && b.usable > XA_MIN_ALIGN)) return false;
  return b.kind == K_SMALL || n <= XA_SMALL_MAX || b.usable <= xa_huge_block_size(grow_size(n)) ||
         (b.kind == K_HUGE && xa_opt.secure);   /* secure: huge blocks never shrink in place */
}

/* Could block b have been allocated with alignment align (a power of two),
 * whatever the size?  Small: its class's objects all are; else the
 * address tells. */
static bool aligned_for(const void *p, struct block b, size_t align) {
  if (((uintptr_t)p & (align - 1)) != 0) return false;
  return b.kind != K_SMALL || align <= XA_MIN_ALIGN ||
         (align <= xa_os_page && (xa_classes[b.cls].size & (align - 1)) == 0);
}

static size_t pow2_ceil(size_t a) {
  return a <= 1 ? 1 : (size_t)1 << (64 - __builtin_clzl(a - 1));
}

/* ---- public API -------------------------------------------------------- */

XA_EXPORT XA_ENTRY void *malloc(size_t n) { return xa_malloc_fast(n); }

XA_EXPORT XA_ENTRY void free(void *p) { xa_free_fast(p); }

/* calloc where malloc's fast path has no block: past the small sizes,
 * or a miss. */
XA_NOINLINE static void *calloc_slow(size_t n) {
  if (n <= XA_SMALL_MAX) {
    void *p = xa_malloc_slow(n);
    return p ? memset(p, 0, n) : NULL;
  }
  if (unlikely(!xa_init())) return fail_nomem();
  bool zeroed;
  void *p = alloc_big(n, xa_os_page, true, &zeroed);
  return p && !zeroed ? memset(p, 0, n) : p;     /* fresh mappings read as zero */
}

static inline void *no_block(size_t n) {
  (void)n;
  return NULL;
}

/* malloc's fast path, then memset or calloc_slow, both as tail calls:
 * with a call whose result it used, calloc set up a stack frame on every
 * call. */
XA_EXPORT void *calloc(size_t nmemb, size_t size) {
  size_t n;
  if (__builtin_mul_overflow(nmemb, size, &n)) return fail_nomem();
  void *p = xa_malloc_fast_or(n, no_block);
  if (likely(p != NULL)) return memset(p, 0, n);
  return calloc_slow(n);
}

/* realloc into a new block.  The copy may read past the caller's size up
 * to the usable size: memcheck is told not to report that. */
static void *realloc_move(void *p, size_t n, struct block b) {
  /* a block that grows into or within the large sizes gets headroom */
  bool headroom = n > b.usable && n > XA_SMALL_MAX && n < XA_REMAP_MIN;
  void *q = xa_malloc_fast(headroom ? grow_size(n) : n);
  if (!q) return NULL;
  if (headroom && unlikely(xa_prof_on)) xa_prof_asked(q, n);   /* the profile says n */
#if XA_VALGRIND
  VALGRIND_DISABLE_ERROR_REPORTING;
#endif
  memcpy(q, p, n < b.usable ? n : b.usable);
#if XA_VALGRIND
  VALGRIND_ENABLE_ERROR_REPORTING;
#endif
  /* A small block goes to the thread cache as free() would put it (a
   * boot cache, full bin or marked block takes the slow path). */
  if (b.kind == K_SMALL && xa_tc_push_freed((size_t)b.cls, p)) return q;
  free_block(p, b, "realloc");
  return q;
}

/* A realloc that kept large block p (unsampled: sampled ones move) counts,
 * for the heap profile, as a new allocation of n bytes: its sample is
 * drawn at the new size, so a block grown in place is weighed as one. */
static void *resized(void *p, struct block b, size_t n) {
  if (unlikely(xa_prof_on) && b.kind == K_LARGE && xa_prof_pick(n)) xa_prof_record(p, n);
  return p;
}

/* Resize huge block p to size bytes for a request of n, moving its pages
 * elsewhere if may_move and it cannot stay; NULL (p intact) if that
 * fails. */
static void *huge_resize(void *p, size_t n, size_t size, enum xa_huge_grow how) {
  /* for the profile, the old block's sample goes before its address
   * can be reused, and comes back if the call fails */
  struct xa_prof_taken t = {NULL};
  if (unlikely(xa_prof_on)) xa_prof_take(p, &t);
  void *q = xa_huge_realloc(p, size, how);
  if (unlikely(xa_prof_on)) {
    if (q) xa_prof_drop(&t);
    else xa_prof_put_back(&t);
    if (q && xa_prof_pick(n)) xa_prof_record(q, n);
  }
  return q;
}

/* A small block that moves to another small size. */
XA_NOINLINE static void *realloc_small_move(void *p, size_t n, size_t cls) {
  struct block b = {K_SMALL, (int)cls, NULL, xa_classes[cls].size};
  return realloc_move(p, n, b);
}

XA_NOINLINE static void *realloc_slow(void *p, size_t n);

/* A small block asked for a small size (the common case) takes one
 * lookup, and where it stays, no stack frame: every other case is a tail
 * call. */
XA_EXPORT void *realloc(void *p, size_t n) {
  /* p's entry in the page map and the thread cache's bin of its scaled
   * class, as free() reads them (fastpath.h): the bin's class constant
   * says whether p starts an object, its size_max is the class's size.
   * A foreign or NULL pointer's entry, or that of a chunk the map does
   * not cover, picks the dummy bin, and the boot cache's bins have no
   * constant either: those go to realloc_slow, which sorts them out. */
  uintptr_t u = xa_pagemap_unit(p);
  if (likely(n - 1 < XA_SMALL_MAX) && likely(u < xa_pagemap_limit()) && likely(!xa_on_valgrind)) {
    size_t cls_scaled = xa_pagemap_cls_scaled(u);
    const struct xa_tbin *b = xa_tbin_scaled(xa_tc, cls_scaled);
    uint64_t off = (uint32_t)((uint32_t)(uintptr_t)p - xa_pagemap[u].start32);
    /* a block with the freed mark: realloc_slow tells a freed one from
     * data that matches */
    if (likely(off * b->divmagic < b->divmagic) && likely(!xa_freed_marked(p))) {
      size_t usable = b->size_max;
      if (n <= usable && (n > usable / 2 || b->size_min == 0)) return p;   /* size_min 0: the first class */
      return realloc_small_move(p, n, cls_scaled / XA_BIN_SCALE - 1);
    }
  }
  return realloc_slow(p, n);
}

XA_NOINLINE static void *realloc_slow(void *p, size_t n) {
  if (!p) return xa_malloc_fast(n);
  if (n == 0) { free_checked(p, "realloc"); return NULL; }     /* glibc */
  struct block b = lookup(p);
  if (b.kind == K_INVALID) {
    report_invalid("realloc", p);
    return NULL;                       /* abort_on_error:false: ignored */
  }
  /* A small block in this thread's cache, or back in its slab: a
   * realloc after free, which would otherwise hand the block out twice
   * (one in another thread's cache is not seen here, as in free()).
   * Without a cache (tcache:false, secure, junk, memcheck; a thread's
   * first call) free() leaves no mark, and the slab's bitmap is asked
   * without reading the block (memcheck would see an uninitialised
   * read). */
  if (b.kind == K_SMALL) {
    struct xa_tcache *tc = xa_tc;
    bool freed = tc == &xa_tcache_boot ? xa_arena_small_is_free(p)
                                       : xa_freed_marked(p) && xa_tcache_freed(tc, (unsigned)b.cls, p);
    if (unlikely(freed)) {
      xa_error_pointer("realloc", "double free", p);
      return NULL;                     /* abort_on_error:false: ignored */
    }
  }
  if (n > XA_REQUEST_MAX) return fail_nomem();
  if (unlikely(xa_on_valgrind)) return realloc_move(p, n, b);
  /* A sampled block moves: the profile then holds the new size and stack. */
  if (unlikely(xa_prof_on) && b.kind == K_LARGE && xa_prof_sampled(p, NULL)) return realloc_move(p, n, b);
  /* Stay in place when the block fits and would not waste over half. */
  if (n <= b.usable && (n > b.usable / 2 || (b.kind == K_SMALL && b.cls == 0))) {
    /* a large block gives back the whole pages that are more than a
     * growing realloc leaves it (no lock taken otherwise); below
     * XA_REMAP_MIN grow_size(n) is at least n + n/4, so a block within
     * that of n, as one growing a step at a time is, skips computing it */
    if (b.kind == K_LARGE && n > XA_SMALL_MAX && b.usable - n > n / 4 && b.usable > grow_size(n))
      xa_arena_resize_large(b.span, large_size(n));
    else if (b.kind == K_HUGE && n > XA_SMALL_MAX && b.usable > xa_huge_block_size(grow_size(n)) && !xa_opt.secure &&
             huge_resize(p, n, huge_size(n), XA_GROW_IN_PLACE))
      return p;
    return resized(p, b, n);
  }
  /* grow in place over free pages that follow: with headroom, else exactly */
  if (b.kind == K_LARGE && n > XA_SMALL_MAX && n < XA_HUGE_MIN &&
      (xa_arena_resize_large(b.span, grow_size(n)) || xa_arena_resize_large(b.span, large_size(n))))
    return resized(p, b, n);
  if (b.kind == K_HUGE && n >= XA_HUGE_MIN && !xa_opt.secure) {   /* secure: guard page */
    /* Below XA_REMAP_MIN in place over resident pages, else a copy into
     * resident pages with headroom: a copy of the block costs less than
     * the faults of the fresh pages it would grow into, once those cost
     * more than about 1.6 us each (a quarter's growth per copy at ~10
     * GB/s), as they do in virtual machines.  From it up, pages move. */
    void *q = n < XA_REMAP_MIN ? huge_resize(p, n, grow_size(n), XA_GROW_RESIDENT) : huge_resize(p, n, n, XA_GROW_MOVE);
    if (!q && n < XA_REMAP_MIN) q = huge_resize(p, n, huge_size(n), XA_GROW_RESIDENT);
    if (q || n >= XA_REMAP_MIN) return q ? q : fail_nomem();
  }
  return realloc_move(p, n, b);
}

XA_EXPORT void *reallocarray(void *p, size_t nmemb, size_t size) {
  size_t n;
  if (__builtin_mul_overflow(nmemb, size, &n)) return fail_nomem();
  return realloc(p, n);
}

XA_EXPORT int posix_memalign(void **out, size_t align, size_t n) {
  if (align < sizeof(void *) || (align & (align - 1))) return EINVAL;
  int saved = errno;
  void *p = alloc_aligned(align, n);
  errno = saved;
  if (!p) return ENOMEM;
  *out = p;
  return 0;
}

/* glibc 2.36: memalign rounds a non-power-of-two alignment up, and
 * aligned_alloc behaves like memalign. */
XA_EXPORT void *memalign(size_t align, size_t n) {
  if (align > SIZE_MAX / 2 + 1) { errno = EINVAL; return NULL; }
  return alloc_aligned(pow2_ceil(align), n);
}

XA_EXPORT void *aligned_alloc(size_t align, size_t n) { return memalign(align, n); }

XA_EXPORT void *valloc(size_t n) {
  if (unlikely(!xa_init())) return fail_nomem();
  return alloc_aligned(xa_os_page, n);
}

XA_EXPORT void *pvalloc(size_t n) {
  if (unlikely(!xa_init())) return fail_nomem();
  size_t r = XA_ALIGN_UP(n ? n : 1, xa_os_page);
  if (r < n) return fail_nomem();
  return alloc_aligned(xa_os_page, r);
}

XA_EXPORT size_t malloc_usable_size(void *p) {
  if (!p) return 0;
  struct block b = lookup(p);
  if (b.kind == K_INVALID) report_invalid("malloc_usable_size", p);
  return b.usable;                     /* 0 when invalid */
}

/* A small block the heap profiler sampled is a large one (alloc_sampled):
 * the size checks see it as the small block it stands for, of the class
 * of the size it was asked with. */
static struct block as_asked(const void *p, struct block b) {
  size_t n;
  if (likely(!xa_prof_on) || b.kind != K_LARGE || !xa_prof_sampled(p, &n) || n > XA_SMALL_MAX) return b;
  unsigned c = xa_sizeclass_of(n);
  struct block s = {K_SMALL, (int)c, NULL, xa_classes[c].size};
  return s;
}

/* free_sized: the size malloc, calloc or realloc was given (checked:
 * made_for or realloc_left).  The fast path takes a small block freed with
 * a size of its class; everything else is checked here. */
void xa_free_sized_checked(void *p, size_t size) {
  if (!p) return;
  struct block b = lookup(p);
  struct block asked = as_asked(p, b);
  if (b.kind != K_INVALID && !made_for(asked, 0, size) && !realloc_left(asked, size) &&
      !made_for(b, 0, size) && !realloc_left(b, size)) {
    xa_error_pointer("free_sized", "size does not match block", p);
    return;                            /* abort_on_error:false: not freed */
  }
  free_block(p, b, "free_sized");
}

XA_EXPORT void free_sized(void *p, size_t size) {
  if (likely(xa_free_sized_fast(p, size))) return;
  xa_free_sized_checked(p, size);
}

void xa_free_aligned(void *p, size_t align, size_t size, bool sized, const char *fn) {
  if (!p) return;
  struct block b = lookup(p);
  align = pow2_ceil(align);
  struct block asked = as_asked(p, b);
  if (b.kind != K_INVALID && !(aligned_for(p, asked, align) && (!sized || made_for(asked, align, size))) &&
      !(aligned_for(p, b, align) && (!sized || made_for(b, align, size)))) {
    xa_error_pointer(fn, sized ? "size or alignment does not match block" : "alignment does not match block", p);
    return;
  }
  free_block(p, b, fn);
}

/* free_aligned_sized: the alignment and size aligned_alloc was given. */
XA_EXPORT void free_aligned_sized(void *p, size_t align, size_t size) {
  xa_free_aligned(p, align, size, true, "free_aligned_sized");
}

XA_EXPORT int xalloc_purge(void) {
  if (!xa_init_done) return 0;
  xa_tcache_request_flush();           /* other threads: at their next miss, */
  size_t reclaimed = xa_tcache_reclaim(true);   /* or now, where they are outside a call */
  xa_tcache_flush_all();
  size_t cached;
  size_t n = 0, bytes = 0;
  xa_huge_stats(&n, &bytes, &cached);
  size_t released = xa_arena_purge_all();
  released += xa_arena_release_spares_all();
  released += xa_tcache_trim_recycled(0, 0);
  xa_huge_cache_decay(UINT64_MAX);     /* after the arenas: their chunks come back to it */
  return released > 0 || cached > 0 || reclaimed > 0;
}

XA_EXPORT int malloc_trim(size_t pad) { return xalloc_purge(); }

XA_EXPORT const char *xalloc_version(void) { return XALLOC_VERSION; }

/* ---- glibc statistics entry points ------------------------------------- */

XA_EXPORT struct mallinfo2 mallinfo2(void) {
  struct xa_stats_totals t;
  xa_stats_totals(&t);
  struct mallinfo2 m = {0};
  size_t own = xa_opt.secure ? t.huge_allocated : 0;      /* secure: own mappings */
  m.arena = t.mapped - xa_huge_reserved() - own;          /* chunks + metadata */
  m.hblks = t.huge_count;
  m.hblkhd = t.huge_allocated;
  m.uordblks = t.small_allocated + t.large_allocated;
  m.fordblks = m.arena > m.uordblks ? m.arena - m.uordblks : 0;
  m.keepcost = t.dirty;
  return m;
}

/* The int fields of the old interface saturate rather than wrap. */
static int sat(size_t v) { return v > INT_MAX ? INT_MAX : (int)v; }

XA_EXPORT struct mallinfo mallinfo(void) {
  struct mallinfo2 m2 = mallinfo2();
  struct mallinfo m = {0};
  m.arena = sat(m2.arena);
  m.hblks = sat(m2.hblks);
  m.hblkhd = sat(m2.hblkhd);
  m.uordblks = sat(m2.uordblks);
  m.fordblks = sat(m2.fordblks);
  m.keepcost = sat(m2.keepcost);
  return m;
}

/* glibc's parameters are accepted (xalloc tunes itself); others fail. */
/* glibc's tunables: 1 for what xalloc does, 0 (glibc's "error") for the
 * rest, which have no meaning here (xalloc has no heap top to trim or pad,
 * no fastbins, a fixed 2 MiB threshold for own-mapped blocks).
 * M_ARENA_MAX caps the arenas in use: new refills and large blocks come
 * from the first `value` of them (blocks already out stay where they are). */
XA_EXPORT int mallopt(int param, int value) {
  if (param != M_ARENA_MAX || value < 1 || !xa_init()) return 0;
  xa_arena_limit((unsigned)value);
  return 1;
}

/* glibc prints its summary to stderr; xalloc prints its text statistics. */
XA_EXPORT void malloc_stats(void) {
  if (xa_init()) xa_stats_print(NULL, NULL, false, XA_REPORT_STATS);
}

/* ---- glibc's internal names, so code that calls them reaches xalloc ---- */
#define XA_ALIAS(name, target) XA_EXPORT __typeof__(target) name __attribute__((alias(#target), copy(target)))
XA_ALIAS(__libc_malloc, malloc);
XA_ALIAS(__libc_free, free);
XA_ALIAS(__libc_calloc, calloc);
XA_ALIAS(__libc_realloc, realloc);
XA_ALIAS(__libc_memalign, memalign);
XA_ALIAS(__libc_valloc, valloc);
XA_ALIAS(__libc_pvalloc, pvalloc);
XA_ALIAS(__posix_memalign, posix_memalign);
