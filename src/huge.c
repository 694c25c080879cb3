/* Huge blocks (>= XA_HUGE_MIN, 256 KiB) are carved from regions: large
 * reservations of address space (XA_REGION_SIZE, or one block's size when
 * bigger), aligned to 2 MiB and mapped without a swap reservation, so
 * untouched parts cost nothing (where mlockall(MCL_FUTURE) would map them
 * in at once, regions are XA_LOCKED_REGION_SIZE).  Free extents of the
 * regions are indexed by address, size and age (extent.c) and merged with
 * free neighbours in the same state:
 *
 *   dirty  freed, pages resident: reused first, with no page fault;
 *   clean  never touched, purged (MADV_DONTNEED, or fresh pages mapped
 *          over it), or its pages moved elsewhere.
 *
 * A request takes a good-fitting dirty extent, else a clean extent with
 * dirty extents' pages moved into it (gather, below), else a run that
 * starts in a dirty extent, else a good-fitting clean one, else any run,
 * else a new region; the arenas' wholly free chunks that hold dirty
 * pages, given back, are tried before clean pages (the regions are also the arenas' chunk
 * source: chunks for the arenas, below).  Dirty extents go back to the OS
 * only by decay (oldest first, after dirty_decay_ms) or where live and
 * dirty pages together pass the live bytes' recent peak plus
 * huge_cache_bytes; a program that frees and allocates big blocks all the
 * time keeps reusing the same resident pages, an idle one is back to
 * clean within the decay time.  Wholly free, clean regions are unmapped
 * (one is kept for reuse); a region that holds a chunk is not.
 *
 * realloc grows a block in place over a free neighbour, or moves its pages
 * (mremap: no copy) into an extent elsewhere and restores the reservation
 * behind it.  Below XA_REMAP_MIN malloc.c asks for growth over resident
 * pages only (XA_GROW_RESIDENT) and otherwise copies the block into a
 * dirty extent.  Blocks are found by address in an open-addressing hash
 * table, and their sizes also without a lock in the huge-block map
 * (hugemap.h).  In secure mode every block is its own mapping with a guard page
 * after it, unmapped when freed.
 *
 * All of this is sharded: one shard per arena (at most XA_HUGE_SHARDS),
 * each with its own lock, regions, free extents and block table, and a
 * block is allocated from the shard of the CPU that asks.  Two threads
 * that grow tensors (allocate, copy, free, many times a second) then no
 * longer pass one lock back and forth, and a block freed on a CPU is
 * reused on that CPU while its lines are still in its cache.  A block
 * goes back to the shard of its region, found in the huge-block map with
 * its size.  A request takes a good-fitting dirty extent of its own
 * shard, else one of another shard that has enough dirty bytes, and only
 * then the rest of the order above in its own shard: memory freed on one
 * CPU is not faulted in again next to it on another. */
#include "huge.h"
#include "arena.h"
#include "budget.h"
#include "extent.h"
#include "hugemap.h"
#include "lock.h"
#include "options.h"
#include "os.h"
#include "peak.h"
#include <string.h>

#define XA_REGION_SIZE ((size_t)1 << 30)
#define XA_LOCKED_REGION_SIZE ((size_t)16 << 20)   /* under mlockall(MCL_FUTURE) */
#define REGIONS_MAX 1024        /* per shard */

struct region {
  uintptr_t base;
  size_t size;
  size_t free_bytes;
  bool moved;           /* pieces gathered or blocks moved into it since
                           it was mapped: its purges map fresh pages
                           (map_fresh, below) */
};

struct huge_ent {
  uintptr_t p;          /* block address; 0 empty, 1 deleted */
  size_t size;          /* bytes (page multiple) */
  uint32_t region;      /* the shard's regions[] index, or NO_REGION: own mapping */
  uint32_t marked;      /* advised for or against huge pages, whole (thp_block) */
};
#define NO_REGION UINT32_MAX

/* A free range under madvise (a purge) or mremap (a gathered piece) with
 * its shard's lock dropped, out of the index meanwhile.  On that thread's
 * stack: a fork child, which has the stack but (unless that thread
 * forked) not the thread, puts the range back (xa_huge_postfork_child). */
struct huge_inflight {
  uintptr_t start;
  size_t size;
  uint32_t region;
  const void *owner;            /* xa_thread_self() of the purging thread */
  struct huge_inflight *next;
};

struct huge_shard {
  xa_lock_t lock;
  struct huge_inflight *inflight;
  struct huge_ent *tab;         /* live blocks by address */
  size_t tab_cap;               /* power of two */
  size_t tab_used;              /* slots live or deleted */
  size_t count, bytes;          /* live blocks */
  struct region regions[REGIONS_MAX];
  unsigned nregions;            /* slots used (a released one has size 0) */
  struct xa_extents ix;         /* the free extents */
  void *segs[XA_EXT_SEGMENTS];  /* ix's record segments (explain's count) */
  size_t dirty_bytes;
} __attribute__((aligned(64)));

static struct huge_shard shards[XA_HUGE_SHARDS] XA_BSS_TABLE = {[0 ... XA_HUGE_SHARDS - 1] = {.lock = XA_LOCK_INIT}};
_Static_assert(XA_HUGE_SHARDS <= 1 << XA_HUGEMAP_SHARD_BITS, "the huge-block map names every shard");
static unsigned nshards;        /* in use: fixed at the first huge call */

/* Totals over the shards (each changed under its shard's lock). */
static size_t all_bytes;        /* live huge bytes */
size_t xa_huge_region_bytes;    /* address space reserved */
static size_t lent_bytes;       /* of which the arenas' chunks hold (below) */
/* The most bytes live in huge blocks lately: the high-water marks of the
 * decay time that began at hwm_at and of the one before (with
 * dirty_decay_ms -1, since the start or the last trim).  Two, so that the
 * peak a program reaches again and again is never forgotten at a moment
 * its live bytes are low (one mark restarted from the live bytes then
 * would purge the block it just freed, once a decay time). */
static size_t huge_hwm, huge_hwm_prev;
static uint64_t hwm_at;

/* A new decay time once the last one is over: its mark becomes the
 * previous one (none if it ended a decay time or more ago), and the new
 * one starts from the live bytes.  Called before the live bytes drop (a
 * free), so a block freed after a long life still counts in the new
 * mark.  One thread rotates (the one whose compare-and-swap of hwm_at
 * wins). */
static void peak_tick(uint64_t now) {
  if (xa_opt.dirty_decay_ms < 0) return;
  uint64_t window = (uint64_t)xa_opt.dirty_decay_ms * 1000000u, at = __atomic_load_n(&hwm_at, __ATOMIC_RELAXED);
  if (now - at <= window || !__atomic_compare_exchange_n(&hwm_at, &at, now, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
    return;
  size_t last = __atomic_exchange_n(&huge_hwm, __atomic_load_n(&all_bytes, __ATOMIC_RELAXED), __ATOMIC_RELAXED);
  __atomic_store_n(&huge_hwm_prev, now - at <= 2 * window ? last : 0, __ATOMIC_RELAXED);
}

static void total_add(size_t *t, size_t size, long sign) {
  __atomic_add_fetch(t, (size_t)sign * size, __ATOMIC_RELAXED);
}

/* One shard per arena (the arenas follow the CPUs the process may use),
 * one under an address-space or data limit (xa_os_heap_limit): there
 * every shard's region would take its share of the limit. */
static XA_NOINLINE unsigned shard_count_first(void) {
  unsigned n = xa_arena_count();
  if (!n) return 1;             /* before initialisation (statistics): not fixed yet */
  if (n > XA_HUGE_SHARDS) n = XA_HUGE_SHARDS;
  if (xa_os_heap_limit() != SIZE_MAX) n = 1;
  unsigned none = 0;
  if (!__atomic_compare_exchange_n(&nshards, &none, n, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) n = none;
  return n;
}

static unsigned shard_count(void) {
  unsigned n = __atomic_load_n(&nshards, __ATOMIC_RELAXED);
  return likely(n) ? n : shard_count_first();
}

/* The shard new blocks of the calling thread come from. */
static struct huge_shard *shard_here(void) {
  unsigned n = shard_count();
  return &shards[n == 1 ? 0 : xa_os_cpu() % n];
}

/* ---- the table of live blocks ------------------------------------------- */

static size_t slot_of(uintptr_t p, size_t cap) {
  return (size_t)(((p >> 12) * 0x9E3779B97F4A7C15ull) >> 20) & (cap - 1);
}

/* At most one pass over the table: reserve_locked keeps a quarter of the
 * slots empty, which ends every search, and the bound keeps a table
 * without one (if room for a block put back could not be mapped) from
 * turning a lookup of a foreign pointer into a hang under the lock. */
static struct huge_ent *find(struct huge_shard *s, uintptr_t p) {
  if (!s->tab) return NULL;
  for (size_t i = slot_of(p, s->tab_cap), n = 0; n < s->tab_cap; i = (i + 1) & (s->tab_cap - 1), n++) {
    if (s->tab[i].p == p) return &s->tab[i];
    if (s->tab[i].p == 0) return NULL;
  }
  return NULL;
}

/* Put e in the first free or deleted slot of its probe sequence (e->p is
 * not in the table).  True if that slot was free: one more slot used. */
static bool put(struct huge_ent *t, size_t cap, const struct huge_ent *e) {
  size_t i = slot_of(e->p, cap);
  while (t[i].p > 1) i = (i + 1) & (cap - 1);
  bool fresh = t[i].p == 0;
  t[i] = *e;
  return fresh;
}

/* The slots a rehash gives a table of `live` blocks: a quarter of them
 * live at most, 1024 at least.  Deleted slots (every free leaves one)
 * then fill half the table before the next rehash, and a rehash is sized
 * by the live blocks, not by the table: a program that allocates and
 * frees huge blocks at a high rate keeps a table of its live ones'
 * size.  (The table used to double at every rehash, deleted slots
 * counted as live: 24 MiB, all of it resident, after a million
 * allocations with 16 blocks live.) */
static size_t tab_cap_for(size_t live) {
  size_t cap = 1024;
  while (cap < 4 * (live + 1)) cap *= 2;
  return cap;
}

/* Make room for one more entry: once 3/4 of the slots are used (live or
 * deleted), rehash into a new table sized for the live entries (mapped
 * with the lock dropped).  Lock held on entry and on return. */
static bool reserve_locked(struct huge_shard *s) {
  while ((s->tab_used + 1) * 4 > s->tab_cap * 3) {
    size_t cap = tab_cap_for(s->count);
    struct huge_ent *seen = s->tab;
    xa_unlock(&s->lock);
    struct huge_ent *nt = xa_os_map(cap * sizeof *nt, xa_os_page);
    xa_lock(&s->lock);
    if (!nt) return false;
    if (s->tab != seen || tab_cap_for(s->count) > cap) {   /* another thread rehashed, or more blocks came */
      xa_unlock(&s->lock);
      xa_os_unmap(nt, cap * sizeof *nt);
      xa_lock(&s->lock);
      continue;
    }
    struct huge_ent *old = s->tab;
    size_t old_cap = s->tab_cap;
    for (size_t i = 0; i < old_cap; i++)
      if (old[i].p > 1) put(nt, cap, &old[i]);
    __atomic_store_n(&s->tab_cap, cap, __ATOMIC_RELAXED);
    s->tab = nt;
    s->tab_used = s->count;
    if (old) {
      xa_unlock(&s->lock);
      xa_os_unmap(old, old_cap * sizeof *old);
      xa_lock(&s->lock);
    }
  }
  return true;
}

/* Lock held; room reserved. */
static void insert_locked(struct huge_shard *s, const struct huge_ent *e) {
  if (put(s->tab, s->tab_cap, e)) s->tab_used++;
  s->count++;
  s->bytes += e->size;
  xa_hugemap_set(e->p, e->size, (unsigned)(s - shards));
  xa_peak_add_global(XA_PEAK_ALLOCATED, (int64_t)e->size);
  xa_peak_add_global(XA_PEAK_ACTIVE, (int64_t)e->size);
  size_t live = __atomic_add_fetch(&all_bytes, e->size, __ATOMIC_RELAXED);
  size_t hwm = __atomic_load_n(&huge_hwm, __ATOMIC_RELAXED);
  while (live > hwm && !__atomic_compare_exchange_n(&huge_hwm, &hwm, live, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {}
}

static void remove_locked(struct huge_shard *s, struct huge_ent *e) {
  xa_hugemap_set(e->p, 0, 0);
  e->p = 1;
  s->count--;
  s->bytes -= e->size;
  peak_tick(xa_os_now());
  total_add(&all_bytes, e->size, -1);
  xa_peak_add_global(XA_PEAK_ALLOCATED, -(int64_t)e->size);
  xa_peak_add_global(XA_PEAK_ACTIVE, -(int64_t)e->size);
}

/* The shard holding live block p, locked, with its entry in *f; NULL
 * (nothing locked) if p is not a live huge block.  The huge-block map
 * names the shard; blocks it does not know (their region's leaf could not
 * be mapped, secure mode's own mappings, blocks of 1 TiB or more) are
 * looked for in every shard. */
static struct huge_shard *lock_block(uintptr_t p, struct huge_ent **f) {
  unsigned id, n = shard_count();
  if (xa_hugemap_lookup(p, &id) && id < n) {
    struct huge_shard *s = &shards[id];
    xa_lock(&s->lock);
    if ((*f = find(s, p))) return s;
    xa_unlock(&s->lock);
  }
  for (unsigned i = 0; i < n; i++) {
    struct huge_shard *s = &shards[i];
    xa_lock(&s->lock);
    if ((*f = find(s, p))) return s;
    xa_unlock(&s->lock);
  }
  return NULL;
}

/* ---- free extents --------------------------------------------------------- */

static void account(struct huge_shard *s, uint32_t r, uint32_t st, size_t size, long sign) {
  s->regions[r].free_bytes += (size_t)sign * size;
  if (st == XA_EXT_DIRTY) {
    /* read without the lock by carve_elsewhere */
    __atomic_store_n(&s->dirty_bytes, s->dirty_bytes + (size_t)sign * size, __ATOMIC_RELAXED);
    total_add(&xa_budget_huge_dirty, size, sign);
  }
}

/* At least n spare extent records, mapping a segment (lock dropped)
 * when short.  Lock held on entry and return.  A failure is not fatal:
 * the operations that find no record cope (ext_free). */
static void ext_room_for(struct huge_shard *s, size_t n) {
  while (!xa_ext_spare(&s->ix, n)) {
    xa_unlock(&s->lock);
    void *seg = xa_os_map(XA_EXT_SEGMENT_BYTES, xa_os_page);
    xa_lock(&s->lock);
    if (!seg) return;
    if (xa_ext_spare(&s->ix, n) || !xa_ext_add_segment(&s->ix, seg)) {
      xa_unlock(&s->lock);
      xa_os_unmap(seg, XA_EXT_SEGMENT_BYTES);
      xa_lock(&s->lock);
      return;
    }
    s->segs[s->ix.nsegments - 1] = seg;
  }
}

static void ext_room(struct huge_shard *s) { ext_room_for(s, 8); }

/* Free [start, start+size) of region r in state st, merged with free
 * neighbours in the same state.  False if no record was left (the caller
 * then gives the pages back another way).  Lock held. */
static bool ext_free(struct huge_shard *s, uintptr_t start, size_t size, uint32_t r, uint32_t st, uint64_t now) {
  if (!xa_ext_free(&s->ix, start, size, r, st, now)) return false;
  account(s, r, st, size, +1);
  return true;
}

/* Take [start, start+size) out of free extent e.  Lock held. */
static void ext_take(struct huge_shard *s, struct xa_ext *e, uintptr_t start, size_t size) {
  uint32_t r = e->region, st = e->state;
  uintptr_t eend = e->start + e->size;
  account(s, r, st, size, -1);
  /* without a record for the part after, that part leaves the index
   * too: it stays reserved and out of use */
  if (!xa_ext_take(&s->ix, e, start, size)) account(s, r, st, eend - start - size, -1);
}

/* A run of adjacent extents (any states, one region) holding size bytes
 * aligned to align, starting at *at in extent first: from the newest
 * dirty extents (a bounded number) if dirty_first, else from any. */
#define RUN_SCAN 64
static bool run_from(struct huge_shard *s, struct xa_ext *e, size_t size, size_t align, uintptr_t *at) {
  uintptr_t a = XA_ALIGN_UP(e->start, align), end = e->start + e->size;
  if (a >= end) return false;
  for (struct xa_ext *n = xa_ext_from(&s->ix, end); end < a + size && n && n->region == e->region && n->start == end;
       n = xa_ext_from(&s->ix, end))
    end += n->size;
  if (end < a + size) return false;
  *at = a;
  return true;
}

static struct xa_ext *run_fit(struct huge_shard *s, size_t size, size_t align, bool dirty_first, uintptr_t *at) {
  if (dirty_first) {
    unsigned looked = 0;
    for (struct xa_ext *e = xa_ext_newest(&s->ix); e && looked < RUN_SCAN; e = e->lru_prev, looked++)
      if (run_from(s, e, size, align, at)) return e;
    return NULL;
  }
  for (struct xa_ext *e = xa_ext_from(&s->ix, 0); e; e = xa_ext_from(&s->ix, e->start + e->size))
    if (run_from(s, e, size, align, at)) return e;
  return NULL;
}

/* Carve [at, at+size) out of the run of extents from first; returns
 * whether any of its pages were dirty (else it reads as zero).  Lock
 * held. */
static bool run_take(struct huge_shard *s, struct xa_ext *first, uintptr_t at, size_t size) {
  uintptr_t end = at + size;
  bool dirty = false;
  for (struct xa_ext *e = first; e && e->start < end;) {
    uintptr_t lo = e->start > at ? e->start : at, hi = e->start + e->size < end ? e->start + e->size : end;
    dirty |= e->state == XA_EXT_DIRTY;
    ext_take(s, e, lo, hi - lo);
    e = xa_ext_from(&s->ix, hi);
  }
  return dirty;
}

/* ---- regions -------------------------------------------------------------- */

/* thp:always and thp:never advise the whole of a region (a new one, or a
 * range mapped afresh by a purge); auto advises blocks (thp_block). */
static void region_thp(void *p, size_t size) {
  if (xa_opt.thp == xa_opt_thp_always) xa_os_hugepage(p, size, true);
  else if (xa_opt.thp == xa_opt_thp_never) xa_os_hugepage(p, size, false);
}

/* A new region for a block of size bytes aligned to align, wholly free and
 * clean.  Lock held on entry and return; dropped around the mapping. */
static bool region_new(struct huge_shard *s, size_t size, size_t align) {
  size_t want = XA_ALIGN_UP(size, XA_HUGE_ALIGN), ra = align > XA_HUGE_ALIGN ? align : XA_HUGE_ALIGN;
  xa_unlock(&s->lock);
  /* under an address-space or data limit (ulimit -v, -d), a region takes
   * at most 1/16 of it: its free part counts against the limit too */
  size_t limit = xa_os_heap_limit(), region = limit / 16 < XA_REGION_SIZE ? XA_ALIGN_UP(limit / 16, XA_HUGE_ALIGN) : XA_REGION_SIZE;
  /* where mlockall(MCL_FUTURE) maps every new page in at once, a region
   * holds little more than the block: the rest would be resident for
   * nothing (a 1 GiB region: 1 GiB of RSS) */
  if (region > XA_LOCKED_REGION_SIZE && xa_os_maps_populated()) region = XA_LOCKED_REGION_SIZE;
  size_t rsize = want > region ? want : region;
  void *p = xa_os_map(rsize, ra);
  if (!p && rsize > want) {     /* address space short (ulimit -v): just the block */
    rsize = want;
    p = xa_os_map(rsize, ra);
  }
  if (p) region_thp(p, rsize);
  if (p) (void)xa_hugemap_cover((uintptr_t)p, rsize);   /* else: the table alone */
  xa_lock(&s->lock);
  if (!p) return false;
  unsigned r = 0;
  while (r < s->nregions && s->regions[r].size) r++;
  if (r == REGIONS_MAX || !ext_free(s, (uintptr_t)p, rsize, r, XA_EXT_CLEAN, 0)) {
    xa_unlock(&s->lock);
    xa_os_unmap(p, rsize);
    xa_lock(&s->lock);
    return false;
  }
  if (r == s->nregions) __atomic_store_n(&s->nregions, r + 1, __ATOMIC_RELAXED);   /* xa_huge_cache_decay reads it */
  s->regions[r].base = (uintptr_t)p;
  s->regions[r].size = rsize;
  s->regions[r].free_bytes = rsize;       /* ext_free counted it: reset */
  s->regions[r].moved = false;
  total_add(&xa_huge_region_bytes, rsize, +1);
  return true;
}

/* ---- allocation ------------------------------------------------------------ */

static size_t purge_one(struct huge_shard *s, uint64_t now, uint64_t min_age, size_t max);
static void release_regions(struct huge_shard *s, bool keep_one);
static void purge_over_budget(struct huge_shard *s);

/* Secure mode puts an inaccessible page after each huge block (and keeps
 * no cache: freed blocks are unmapped, so late accesses fault). */
static size_t guard_size(void) { return xa_opt.secure ? xa_os_page : 0; }

/* thp:auto (the default): a block of thp_min_bytes (2 MiB) or more asks
 * for transparent huge pages on the whole 2 MiB pages it covers, so it
 * takes one fault per 2 MiB instead of 512 (a fault costs 8-11 us on the
 * virtual machines measured; mimalloc-bench malloc-large 1.53 -> 0.52 s,
 * a 1.1 GiB weights load 2.6 -> 0.1-1.0 s, also with free memory
 * fragmented into 4 KiB holes, where the first load paid for compaction).
 * From 2 MiB, not only from the 8 MiB where blocks become whole huge pages
 * (block_size): tensors of 2-8 MiB are written whole too, and the whole
 * huge pages they cover then take one fault each, and their writes miss
 * the TLB less (inference-shaped workload, 2-CPU VM, 3 interleaved runs:
 * 16-17k -> 12-14k faults with allocate-copy-free growth, 16-22k -> 9-11k
 * with realloc growth, tokens/s and peak RSS the same or better; from
 * 1 MiB the realloc growth's peak rose 5%).  A block's first and last huge
 * page, shared with its neighbours, is backed whole only where those ask
 * too (the kernel backs a 2 MiB page only inside one advised mapping).
 * A sparse block (calloc's: tables of zeros touched here and there) is
 * marked against huge pages instead: 4096 random bytes written in a
 * 256 MiB calloc'd block make 17 MB resident with 4 KiB pages and 264 MB
 * with huge pages.  The whole block is advised, partial huge pages
 * included: a block must stay within one mapping, as mremap moves none
 * across mappings.  The flag stays on the range after the block is freed
 * (clearing it would split the region into more mappings).  One madvise
 * per big allocation, and per growth or move of a big block.  No lock
 * held.
 *
 * A block that is not whole, aligned huge pages (below XA_THP_WHOLE_MIN,
 * or calloc's) may split its region's mapping in three: its ends fall
 * anywhere.  The process has vm.max_map_count mappings at most, past
 * which munmap and mprotect fail.  So such blocks count two mappings each
 * against gathering's budget of them (gather_left), and are not advised
 * while it is low (thp_room): 6,000 blocks of 3 MiB between blocks of
 * 1 MiB made 12,000 mappings without this, 7,700 with it (83 without
 * advice).  calloc's blocks of XA_THP_WHOLE_MIN or more are marked
 * against huge pages whatever the budget (in a range an earlier block
 * advised, the kernel would back a big table of zeros with huge pages).
 * A block that was advised (huge_ent.marked), grown or moved by realloc,
 * is advised again whatever the budget, so that none of it is left out
 * (and it stays one mapping that mremap can move, where the kernel can
 * join its parts: a moved part that had pages keeps their offsets, and
 * stays a mapping of its own): growth in place adds no mapping (the
 * grown part joins the block's), a move counts two.  thp_wanted settles
 * whether to advise: for a new block before it enters its table, for a
 * grown one under its shard's lock if it was advised, else after (a
 * block not yet advised may count the mappings: no lock is held then,
 * and the block is marked after its madvise).  A block is counted before
 * it is placed: one that fails, or that lands on whole huge pages below
 * XA_THP_WHOLE_MIN, counts two mappings it does not make (until the next
 * count). */
static bool thp_room(bool force);
static bool wants_huge_pages(size_t size, bool sparse);

/* whole: the block is whole, aligned huge pages; marked: it was advised
 * before a realloc changed it (moved: to another address). */
static bool thp_wanted(size_t size, bool sparse, bool whole, bool marked, bool moved) {
  if (xa_opt.thp != xa_opt_thp_auto) return false;
  if (marked) {
    if (moved && !whole) (void)thp_room(true);
    return true;
  }
  if (size < (size_t)xa_opt.thp_min_bytes) return false;
  return whole || thp_room(sparse && size >= XA_THP_WHOLE_MIN);
}

static void thp_block(uintptr_t p, size_t size, bool sparse) { xa_os_hugepage((void *)p, size, !sparse); }

/* Fresh pages mapped over [p, p+size): for a purge in a region that took
 * moved pages, and at once for a range whose pages mremap moved out
 * (MREMAP_DONTUNMAP).  Such a range keeps its page tables, with the 4 KiB
 * remains of huge pages the move split, so pages faulted there later would
 * come 4 KiB at a time; and a range that was moved in stays a mapping of
 * its own.  Fresh pages free the tables and join the range to its
 * neighbours (malloc-large: 49k -> 27k faults, at most 1515 -> 888
 * mappings; 30,000 blocks of 1-12 MiB grown to twice by realloc, 64 kept:
 * 7,159 mappings and growing -> 889, 75 -> 46 s).  False if the kernel
 * refused (nothing changed).  No lock held. */
static bool map_fresh(uintptr_t p, size_t size) {
  if (!xa_os_purge_remap((void *)p, size)) return false;
  region_thp((void *)p, size);
  return true;
}


/* The bytes a block of n bytes takes (0 on overflow): whole pages, and
 * whole 2 MiB pages for a block of XA_THP_WHOLE_MIN (and thp_min_bytes) or
 * more where xalloc asks for huge pages (not calloc's sparse blocks, nor
 * secure mode's, whose guard page must follow the request's last page),
 * which placement then
 * aligns (block_align).  Such a block's freed extent is whole huge pages,
 * which the next big block reuses, gathering moves (gather_unit) and
 * decay purges without splitting one; a block placed at any page would
 * share its first and last huge page with its neighbours.  The price is
 * less than one huge page a block (half of one on average), resident once
 * the block's last bytes are written: its last huge page is then backed
 * whole (mimalloc-bench malloc-large, 6 interleaved runs at 57ba67b: peak
 * RSS 411 -> 438 MB, jemalloc's 436 the lowest of the peers; 27k -> 6.5k
 * page faults, the fewest; 1.61 -> 1.36 s, mimalloc 3 1.39 s). */
static bool wants_huge_pages(size_t size, bool sparse) {
  return !sparse && xa_opt_thp_asked() && !guard_size() && size >= XA_THP_WHOLE_MIN && size >= (size_t)xa_opt.thp_min_bytes;
}

static size_t block_size(size_t n, bool sparse) {
  size_t size = XA_ALIGN_UP(n, xa_os_page);
  if (size < n || size + XA_HUGE_ALIGN < size) return 0;
  return wants_huge_pages(size, sparse) ? XA_ALIGN_UP(size, XA_HUGE_ALIGN) : size;
}

size_t xa_huge_block_size(size_t n) { return block_size(n, false); }

static size_t block_align(size_t size, size_t align, bool sparse) {
  if (align < xa_os_page) align = xa_os_page;
  return wants_huge_pages(size, sparse) && align < XA_HUGE_ALIGN ? XA_HUGE_ALIGN : align;
}

static void *own_alloc(size_t size, size_t align) {
  size_t guard = guard_size();
  void *p = xa_os_map(size + guard, align > XA_HUGE_ALIGN ? align : XA_HUGE_ALIGN);
  if (!p) return NULL;
  if (guard && !xa_os_guard((char *)p + size, guard)) {
    xa_os_unmap(p, size + guard);
    return NULL;
  }
  return p;
}

/* Where carve may take pages from. */
enum carve_from {
  CARVE_DIRTY,          /* a good-fitting dirty extent only */
  CARVE_ANY,            /* resident pages first, then a good-fitting clean
                           extent, then any run */
  CARVE_FOR_MOVE,       /* for pages about to be moved in: clean first, as
                           resident pages there would be thrown away */
};

/* Carve size bytes aligned to align from shard s's free extents.  Lock
 * held; 0 if nothing fits. */
static uintptr_t carve(struct huge_shard *s, size_t size, size_t align, enum carve_from from, bool *zeroed,
                       uint32_t *region) {
  ext_room(s);
  bool for_move = from == CARVE_FOR_MOVE;
  struct xa_ext *e = xa_ext_fit(&s->ix, for_move ? XA_EXT_CLEAN : XA_EXT_DIRTY, size, align), *first = NULL;
  uintptr_t at = 0;
  if (!e && from == CARVE_DIRTY) return 0;
  if (!e && (for_move || !(first = run_fit(s, size, align, true, &at)))) {
    e = xa_ext_fit(&s->ix, for_move ? XA_EXT_DIRTY : XA_EXT_CLEAN, size, align);
    if (!e && !(first = run_fit(s, size, align, false, &at))) return 0;
  }
  if (e) {
    at = XA_ALIGN_UP(e->start, align);
    *zeroed = e->state == XA_EXT_CLEAN;
    *region = e->region;
    ext_take(s, e, at, size);
    return at;
  }
  *region = first->region;
  *zeroed = !run_take(s, first, at, size);
  return at;
}

/* ---- gathering ------------------------------------------------------------ */

/* A request that no dirty extent holds whole takes a clean extent and has
 * the pages of dirty extents moved into it (mremap: the page tables move,
 * no byte is copied and no page faults).  Freed memory then serves later
 * requests whatever the sizes of its holes: blocks of 5-25 MiB freed in
 * random order leave holes a little too small for the next request, which
 * would otherwise fault fresh pages in while the holes wait for decay
 * (mimalloc-bench malloc-large: peak RSS 488 -> 401 MiB).  On the machines
 * measured a move costs 6-7 us a piece and a fault 1.75 us a page, so
 * pieces of 64 KiB or more pay (16 faults, 28 us); where huge pages are
 * on, pieces are whole huge pages (gather_unit).  But a move also stops
 * the process's other threads' page faults and flushes their TLBs: with
 * the tensors of two inference threads (0.5-8 MiB) gathered, decoding ran
 * a third slower.  So only blocks of GATHER_BLOCK_MIN or more gather,
 * where a fresh block's faults cost milliseconds and a gather at most 32
 * moves.
 *
 * A moved piece is a mapping of its own (the kernel keeps the page
 * offsets it had) and splits the destination's, until its range is
 * purged: purges in a region that took pieces map fresh pages over the
 * range (map_fresh), which joins it to its neighbours again.  A
 * program that keeps reusing its freed blocks purges little, though (three
 * threads replacing blocks of 4-25 MiB: 12,000 mappings after 18 s), and
 * mappings cost: some 200 bytes of kernel memory each, and a fork copies
 * them all.  So gathering adds mappings only while the process has fewer
 * than GATHER_MAPS_MAX (or an eighth of vm.max_map_count): it counts two a
 * piece against gather_left, which is set from a count of the process's
 * mappings, and waits for purges to join them when it is spent. */
#define GATHER_PIECE_MIN ((size_t)64 << 10)
#define GATHER_PIECES 32                /* per request */
#define GATHER_BLOCK_MIN ((size_t)8 << 20)
#define GATHER_MAPS_MAX 8192
#define GATHER_UNCOUNTED 1024           /* mappings it may add before the first count */
#define GATHER_RECOUNT_NS 1000000000ull /* the purger, and requests for advice, count them
                                           at most this often */

/* Pieces are moved in whole, aligned 2 MiB units into a block aligned to
 * 2 MiB where xalloc asks for huge pages (thp:auto or always; else
 * pieces of GATHER_PIECE_MIN or more at any page): mremap then moves a huge
 * page's one table entry and the block stays backed by huge pages.  A
 * piece with any other start, end or destination splits the huge pages
 * it touches into 4 KiB ones for good, and the program's writes to the
 * block then miss the TLB 512 times as often (mimalloc-bench
 * malloc-large, where every block is written whole: AnonHugePages fell
 * from 90 MB to 0 within a second, and the writes took 1.38 s of user time
 * against mimalloc 3's 1.14).  What is left of an extent outside its
 * aligned units stays dirty for smaller requests, or for decay. */
static size_t gather_unit(void) { return xa_opt_thp_asked() ? XA_HUGE_ALIGN : GATHER_PIECE_MIN; }

static int64_t gather_left = GATHER_UNCOUNTED;
static bool gather_uncounted;           /* pieces moved since the last count */

/* Count the process's mappings (a read of /proc/self/maps: a few ms with
 * thousands of them) and set the budget from them.  No lock held. */
static uint64_t counted_at;             /* when they were last counted */

static void count_maps(uint64_t now) {
  __atomic_store_n(&counted_at, now, __ATOMIC_RELAXED);
  size_t cap = xa_os_map_limit() / 8, maps = xa_os_map_count();
  if (cap > GATHER_MAPS_MAX) cap = GATHER_MAPS_MAX;
  __atomic_store_n(&gather_left, maps < cap ? (int64_t)(cap - maps) : 0, __ATOMIC_RELAXED);
}

/* Count them again: on the purger's passes (at most once a second) when
 * pieces moved since the last count or while the budget is low (purges
 * may have joined mappings, advised blocks split them), and by the
 * request that finds the budget spent after moves (one of them:
 * gather_uncounted). */
static void gather_recount(bool spent) {
  uint64_t now = xa_os_now();
  if (!spent && now - __atomic_load_n(&counted_at, __ATOMIC_RELAXED) < GATHER_RECOUNT_NS) return;
  if (!__atomic_exchange_n(&gather_uncounted, false, __ATOMIC_RELAXED) &&
      (spent || __atomic_load_n(&gather_left, __ATOMIC_RELAXED) >= GATHER_UNCOUNTED))
    return;
  count_maps(now);
}

/* Room for the two mappings a block advised for or against huge pages
 * may add (thp_wanted), taken from gather_left while half of
 * GATHER_UNCOUNTED is left to it, which stays for gathering; force: taken
 * whatever is left.  A request that finds the budget low counts the
 * mappings again, at most once a second. */
static bool thp_room(bool force) {
  if (!force && __atomic_load_n(&gather_left, __ATOMIC_RELAXED) < GATHER_UNCOUNTED / 2 + 2) {
    uint64_t now = xa_os_now(), last = __atomic_load_n(&counted_at, __ATOMIC_RELAXED);
    /* one request counts: the others go on without advice meanwhile */
    if (now - last < GATHER_RECOUNT_NS ||
        !__atomic_compare_exchange_n(&counted_at, &last, now, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
      return false;
    count_maps(now);
    if (__atomic_load_n(&gather_left, __ATOMIC_RELAXED) < GATHER_UNCOUNTED / 2 + 2) return false;
  }
  __atomic_sub_fetch(&gather_left, 2, __ATOMIC_RELAXED);
  return true;
}

static uint64_t gather_count, gather_bytes;

/* Carve size bytes from a clean extent of shard s and move dirty pages
 * into it, from the newest dirty extents of RUN_SCAN; 0 if no clean
 * extent fits (or nothing dirty is worth moving).  Lock held on entry and
 * return; dropped around the moves and a count of the mappings. */
static uintptr_t gather(struct huge_shard *s, size_t size, size_t align, bool *zeroed, uint32_t *region) {
  size_t unit = gather_unit();
  if (s->dirty_bytes < unit) return 0;
  if (unit == XA_HUGE_ALIGN && align < XA_HUGE_ALIGN) align = XA_HUGE_ALIGN;
  if (__atomic_load_n(&gather_left, __ATOMIC_RELAXED) < 2 * GATHER_PIECES &&
      __atomic_load_n(&gather_uncounted, __ATOMIC_RELAXED)) {
    xa_unlock(&s->lock);
    gather_recount(true);
    xa_lock(&s->lock);
  }
  if (__atomic_load_n(&gather_left, __ATOMIC_RELAXED) < 2) return 0;
  uint32_t r;
  uintptr_t q = carve(s, size, align, CARVE_FOR_MOVE, zeroed, &r);
  if (!q) return 0;
  *region = r;
  if (!*zeroed) return q;       /* it has resident pages already */
  ext_room_for(s, GATHER_PIECES + 8);   /* (may drop the lock) records for the pieces' remainders */
  struct xa_ext *pick[GATHER_PIECES];
  struct huge_inflight piece[GATHER_PIECES];
  int64_t left = __atomic_load_n(&gather_left, __ATOMIC_RELAXED);
  unsigned n = 0, looked = 0, room = left > 2 * GATHER_PIECES ? GATHER_PIECES : (unsigned)(left > 0 ? left / 2 : 0);
  size_t got = 0;
  /* the newest first: their lines are most likely still cached */
  for (struct xa_ext *e = xa_ext_newest(&s->ix); e && n < GATHER_PIECES && n < room && looked < RUN_SCAN &&
                                                 size - got >= unit;
       e = e->lru_prev, looked++) {
    /* whole aligned huge pages, or any pages (at least unit of them) */
    size_t grain = unit == XA_HUGE_ALIGN ? unit : xa_os_page;
    uintptr_t from = XA_ALIGN_UP(e->start, grain), to = (e->start + e->size) & ~(uintptr_t)(grain - 1);
    if (to <= from || to - from < unit) continue;
    size_t want = (size - got) & ~(grain - 1), take = to - from < want ? to - from : want;
    pick[n] = e;
    piece[n] = (struct huge_inflight){from, take, e->region, xa_thread_self(), NULL};
    n++;
    got += take;
  }
  if (!n) {
    /* nothing to move: the block may yet start in a dirty extent
     * (carve's CARVE_ANY) rather than take only fresh pages */
    if (!ext_free(s, q, size, r, XA_EXT_CLEAN, 0)) return q;   /* (no record: keep it) */
    return 0;
  }
  /* The pieces leave the index (the destination did not overlap them: it
   * was free and clean); a fork child meanwhile puts them back dirty. */
  for (unsigned i = 0; i < n; i++) {
    ext_take(s, pick[i], piece[i].start, piece[i].size);
    s->regions[piece[i].region].free_bytes += piece[i].size;   /* still free, out of the index */
    piece[i].next = s->inflight;
    s->inflight = &piece[i];
  }
  xa_unlock(&s->lock);
  int mv[GATHER_PIECES];
  size_t off = 0, moved = 0;
  for (unsigned i = 0; i < n; i++) {
    mv[i] = xa_os_move_pages((void *)piece[i].start, piece[i].size, (void *)(q + off));
    off += piece[i].size;
    if (mv[i] == XA_MOVE_KEPT) (void)map_fresh(piece[i].start, piece[i].size);
    if (mv[i] != XA_MOVE_FAILED) moved += piece[i].size;
  }
  xa_lock(&s->lock);
  uint64_t now = xa_os_now();
  for (unsigned i = 0; i < n; i++) {
    for (struct huge_inflight **pp = &s->inflight; *pp; pp = &(*pp)->next)
      if (*pp == &piece[i]) { *pp = piece[i].next; break; }
    s->regions[piece[i].region].free_bytes -= piece[i].size;
    ext_room(s);
    /* moved: the range reads as zero; not moved: still dirty; a hole
     * (the range could not be mapped again) stays out of use */
    if (mv[i] != XA_MOVE_HOLE)
      (void)ext_free(s, piece[i].start, piece[i].size, piece[i].region,
                     mv[i] == XA_MOVE_KEPT ? XA_EXT_CLEAN : XA_EXT_DIRTY, mv[i] == XA_MOVE_KEPT ? 0 : now);
    if (mv[i] != XA_MOVE_FAILED) s->regions[r].moved = true;
  }
  __atomic_sub_fetch(&gather_left, 2 * (int64_t)n, __ATOMIC_RELAXED);
  __atomic_store_n(&gather_uncounted, true, __ATOMIC_RELAXED);
  if (moved) {
    *zeroed = false;              /* the caller counts fresh pages only if zeroed */
    xa_os_count_fresh(size - moved);
    __atomic_add_fetch(&gather_count, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&gather_bytes, moved, __ATOMIC_RELAXED);
  }
  return q;
}

/* Block *e from shard s (not `here`): a good-fitting dirty extent, or
 * (gathering) dirty pages moved together.  On success the block is s's,
 * entered in its table; s's lock is taken and dropped here. */
static bool take_from(struct huge_shard *s, struct huge_ent *e, size_t align, bool gathering, bool *zeroed) {
  xa_lock(&s->lock);
  e->p = gathering ? gather(s, e->size, align, zeroed, &e->region)
                   : carve(s, e->size, align, CARVE_DIRTY, zeroed, &e->region);
  if (e->p && !reserve_locked(s)) {
    ext_free(s, e->p, e->size, e->region, *zeroed ? XA_EXT_CLEAN : XA_EXT_DIRTY, xa_os_now());
    e->p = 0;
  }
  if (e->p) {
    insert_locked(s, e);
    purge_over_budget(s);
  }
  xa_unlock(&s->lock);
  return e->p != 0;
}

/* Resident pages for block *e from another shard than `here` (whose lock
 * is not held): a good-fitting dirty extent of a shard with enough dirty
 * bytes, waiting for its lock (a lock wait costs less than the page
 * faults of fresh pages: 64 of them for a 256 KiB block, 8 us each on the
 * machines measured); else, when `here` has fewer dirty bytes than the
 * block, the pages of the shard with the most (at least half the block)
 * moved together: a thread that moved to another CPU finds the pages it
 * freed on the first (mimalloc-bench malloc-large, single-threaded: 3
 * runs in 60 peaked at 498-519 MB, against 411, while `here` gathered
 * once it held half the block, the rest fresh).  On success the block is
 * that shard's, and the shard is returned. */
static struct huge_shard *carve_elsewhere(struct huge_shard *here, struct huge_ent *e, size_t align, bool sparse,
                                          bool *zeroed) {
  unsigned n = shard_count();
  struct huge_shard *most = NULL;
  size_t most_dirty = __atomic_load_n(&here->dirty_bytes, __ATOMIC_RELAXED);
  if (sparse || e->size < GATHER_BLOCK_MIN || most_dirty >= e->size) most_dirty = SIZE_MAX;   /* no gathering */
  for (unsigned i = 1; i < n; i++) {
    struct huge_shard *s = &shards[((unsigned)(here - shards) + i) % n];
    size_t dirty = __atomic_load_n(&s->dirty_bytes, __ATOMIC_RELAXED);
    if (dirty >= e->size && take_from(s, e, align, false, zeroed)) return s;
    if (most_dirty != SIZE_MAX && dirty > most_dirty && dirty >= e->size / 2) {
      most = s;
      most_dirty = dirty;
    }
  }
  return most && take_from(most, e, align, true, zeroed) ? most : NULL;
}

/* After the arenas gave chunks back (to the shards they came from): block
 * *e from a dirty extent of any shard.  On success it is entered in that
 * shard's table. */
static bool carve_given(struct huge_shard *here, struct huge_ent *e, size_t align, bool *zeroed) {
  for (unsigned i = 0, n = shard_count(); i < n; i++) {
    struct huge_shard *s = &shards[((unsigned)(here - shards) + i) % n];
    if (__atomic_load_n(&s->dirty_bytes, __ATOMIC_RELAXED) >= e->size && take_from(s, e, align, false, zeroed))
      return true;
  }
  return false;
}

/* A block took size bytes of fresh pages (lock not held): counted, and
 * where the arenas' dirty pages and this cache together pass their shared
 * budget (budget.h), the arenas give back their share, so that the
 * resident set does not grow while their pages wait.  Not for calloc's
 * blocks (sparse), often touched in part, nor inside fork (every lock
 * held: the purge waits for later).  Blocks whose pages are fresh only in
 * part (gathered, or carved over dirty and clean extents) are not
 * charged. */
static void took_fresh(size_t size, bool sparse) {
  xa_os_count_fresh(size);
  if (sparse || xa_opt.dirty_decay_ms < 0 || unlikely(xa_fork_owner)) return;
  size_t arena_dirty = xa_arena_dirty_bytes();
  if (!arena_dirty) return;
  size_t budget = xa_arena_budget_bytes(), over = xa_budget_over(arena_dirty, budget);
  if (!over) return;
  size_t paid = xa_budget_share(size, over, arena_dirty, budget);
  if (paid) paid = xa_arena_purge_dirty(paid);
  /* the rest is this cache's own excess over its slack: its own budget
   * counts the room under its peak, which the arenas' pages fill too */
  size_t rest = paid < size && paid < over ? xa_budget_share(size - paid, over - paid,
                                                             __atomic_load_n(&xa_budget_huge_dirty, __ATOMIC_RELAXED),
                                                             xa_budget_huge_slack()) : 0;
  if (rest) xa_huge_purge_bytes(rest);
}

void *xa_huge_alloc(size_t n, size_t align, bool sparse, bool *zeroed) {
  size_t size = block_size(n, sparse);
  if (!size) return NULL;
  align = block_align(size, align, sparse);
  bool mark = !guard_size() && thp_wanted(size, sparse, wants_huge_pages(size, sparse), false, false);
  struct huge_ent e = {0, size, NO_REGION, mark};
  struct huge_shard *s = shard_here();
  *zeroed = true;
  xa_lock(&s->lock);
  if (!reserve_locked(s)) {
    xa_unlock(&s->lock);
    return NULL;
  }
  if (!guard_size()) {
    e.p = carve(s, size, align, CARVE_DIRTY, zeroed, &e.region);
    /* No resident pages here: another CPU's (pass 0), then the arenas'
     * wholly free chunks, given back (pass 1; not for calloc's blocks,
     * which fresh pages spare a memset), before fresh ones. */
    for (int pass = 0; !e.p && pass < 2; pass++) {
      if (pass == 0 ? shard_count() == 1 : sparse || !__atomic_load_n(&lent_bytes, __ATOMIC_RELAXED)) continue;
      xa_unlock(&s->lock);
      bool placed = pass == 0 ? carve_elsewhere(s, &e, align, sparse, zeroed) != NULL
                              : xa_arena_give_spares(size) && carve_given(s, &e, align, zeroed);
      if (placed) {
        if (*zeroed) took_fresh(size, sparse);
        if (mark) thp_block(e.p, size, sparse);
        return (void *)e.p;
      }
      xa_lock(&s->lock);
      if (!reserve_locked(s)) {
        xa_unlock(&s->lock);
        return NULL;
      }
    }
    if (!e.p && !sparse && size >= GATHER_BLOCK_MIN) e.p = gather(s, size, align, zeroed, &e.region);
    if (!e.p) e.p = carve(s, size, align, CARVE_ANY, zeroed, &e.region);
    if (!e.p && region_new(s, size, align)) e.p = carve(s, size, align, CARVE_ANY, zeroed, &e.region);
    if (!e.p) {
      /* address space short: give back every free region and try again */
      while (purge_one(s, UINT64_MAX, 0, SIZE_MAX)) {}
      release_regions(s, false);
      if (region_new(s, size, align)) e.p = carve(s, size, align, CARVE_ANY, zeroed, &e.region);
    }
  }
  if (e.p) {
    if (!reserve_locked(s)) {           /* the lock was dropped: room again */
      ext_free(s, e.p, size, e.region, *zeroed ? XA_EXT_CLEAN : XA_EXT_DIRTY, xa_os_now());
      xa_unlock(&s->lock);
      return NULL;
    }
    insert_locked(s, &e);
    purge_over_budget(s);               /* more live bytes: less room for dirty ones */
    xa_unlock(&s->lock);
    if (*zeroed) took_fresh(size, sparse);
    if (mark) thp_block(e.p, size, sparse);
    return (void *)e.p;
  }
  xa_unlock(&s->lock);
  if (!guard_size()) return NULL;
  void *p = own_alloc(size, align);
  if (!p) return NULL;
  e.p = (uintptr_t)p;
  xa_lock(&s->lock);
  bool ok = reserve_locked(s);
  if (ok) insert_locked(s, &e);
  xa_unlock(&s->lock);
  if (!ok) xa_os_unmap(p, size + guard_size());
  else took_fresh(size, sparse);
  return ok ? p : NULL;
}

size_t xa_huge_usable(const void *p) {
  size_t known = xa_hugemap_get((uintptr_t)p);      /* no lock (hugemap.h) */
  if (known) return known;
  struct huge_ent *e;
  struct huge_shard *s = lock_block((uintptr_t)p, &e);
  if (!s) return 0;
  size_t size = e->size;
  xa_unlock(&s->lock);
  return size;
}

bool xa_huge_is_cached(const void *p) {
  bool found = false;
  for (unsigned i = 0, n = shard_count(); i < n && !found; i++) {
    xa_lock(&shards[i].lock);
    found = xa_ext_containing(&shards[i].ix, (uintptr_t)p) != NULL;
    xa_unlock(&shards[i].lock);
  }
  return found;
}

/* ---- chunks for the arenas ------------------------------------------------ */

/* The arenas' chunks (chunk.h's source) are carved from the regions like
 * blocks, so that one heap of pages serves both: a program that frees its
 * big blocks and then allocates small objects (or the other way round)
 * reuses the resident pages instead of faulting fresh ones in while the
 * freed ones wait for decay.  A chunk is no huge block: it has no entry in
 * the table and no part in the live bytes or their peak (the arenas count
 * it); taken out of the free extents it keeps its region from being
 * released.  lent_bytes (above) counts them. */

/* The index of shard s's region holding p, or NO_REGION.  Lock held. */
static uint32_t region_of(const struct huge_shard *s, uintptr_t p) {
  for (uint32_t r = 0; r < s->nregions; r++)
    if (s->regions[r].size && p - s->regions[r].base < s->regions[r].size) return r;
  return NO_REGION;
}

static uintptr_t chunk_carve(struct huge_shard *s, size_t size, enum carve_from from, bool *clean) {
  if (!__atomic_load_n(&s->nregions, __ATOMIC_RELAXED)) return 0;
  uint32_t r;
  xa_lock(&s->lock);
  uintptr_t p = carve(s, size, size, from, clean, &r);
  xa_unlock(&s->lock);
  return p;
}

/* Resident pages first: a dirty extent of this CPU's shard, then of
 * another with enough dirty bytes, then what this shard has.  No
 * region is made for chunks: a program without huge blocks maps its
 * chunks one by one and reserves no region (under strict overcommit a
 * region's reservation is charged whole). */
void *xa_huge_chunk_take(size_t size, bool *clean, unsigned *tag) {
  struct huge_shard *here = shard_here(), *s = here;
  unsigned n = shard_count();
  uintptr_t p = chunk_carve(here, size, CARVE_DIRTY, clean);
  for (unsigned i = 1; !p && i < n; i++) {
    s = &shards[((unsigned)(here - shards) + i) % n];
    if (__atomic_load_n(&s->dirty_bytes, __ATOMIC_RELAXED) >= size) p = chunk_carve(s, size, CARVE_DIRTY, clean);
  }
  /* then a clean extent before a run that mixes dirty and clean pages,
   * which the arena would count dirty whole (the order a move wants) */
  if (!p) p = chunk_carve(s = here, size, CARVE_FOR_MOVE, clean);
  if (!p) return NULL;
  total_add(&lent_bytes, size, +1);
  *tag = (unsigned)(s - shards);
  return (void *)p;
}

/* Back as a free extent, dirty unless clean, under the cache's budget as
 * a freed block's pages are. */
void xa_huge_chunk_give(void *p, size_t size, unsigned tag, bool clean) {
  struct huge_shard *s = &shards[tag];
  xa_lock(&s->lock);
  uint32_t r = region_of(s, (uintptr_t)p);
  ext_room(s);
  bool kept = r != NO_REGION && ext_free(s, (uintptr_t)p, size, r, clean ? XA_EXT_CLEAN : XA_EXT_DIRTY, xa_os_now());
  /* (the count drops before a release of the region can see it free) */
  if (kept) total_add(&lent_bytes, size, -1);
  if (kept && !clean) {
    if (xa_opt.dirty_decay_ms == 0 || xa_opt.huge_cache_bytes == 0) while (purge_one(s, UINT64_MAX, 0, SIZE_MAX)) {}
    else purge_over_budget(s);
  }
  xa_unlock(&s->lock);
  /* no record left: reserved and out of use, as lent for good */
  if (!kept && !clean) xa_os_purge(p, size);
}

/* ---- purging ------------------------------------------------------------------ */

/* Purge shard s's oldest dirty extent, if it is older than min_age ns at
 * now (UINT64_MAX: any): at most max bytes of it, from its start (the
 * rest stays dirty).  The purged part leaves the index while madvise runs
 * (lock dropped) and comes back clean.  Returns the bytes purged, 0 if
 * none qualified. */
static size_t purge_one(struct huge_shard *s, uint64_t now, uint64_t min_age, size_t max) {
  struct xa_ext *old = xa_ext_oldest(&s->ix);
  if (!old) return 0;
  if (now != UINT64_MAX && (now < old->freed_at || now - old->freed_at < min_age)) return 0;
  uintptr_t start = old->start;
  /* a part cut ends on a huge page boundary, so that what stays dirty
   * keeps whole huge pages */
  size_t cut = old->size;
  if (old->size > max) {
    cut = xa_opt_thp_asked() ? XA_ALIGN_UP(start + max, XA_HUGE_ALIGN) - start : XA_ALIGN_UP(max, xa_os_page);
    if (cut > old->size) cut = old->size;
  }
  uint32_t r = old->region;
  ext_take(s, old, start, cut);             /* the rest stays dirty, as old */
  s->regions[r].free_bytes += cut;          /* still free, out of the index */
  struct huge_inflight f = {start, cut, r, xa_thread_self(), s->inflight};
  s->inflight = &f;
  bool remap = s->regions[r].moved;          /* it may hold moved pages */
  xa_unlock(&s->lock);
  if (!remap || !map_fresh(start, cut)) xa_os_purge((void *)start, cut);
  xa_lock(&s->lock);
  for (struct huge_inflight **pp = &s->inflight; *pp; pp = &(*pp)->next)
    if (*pp == &f) { *pp = f.next; break; }
  s->regions[r].free_bytes -= cut;
  ext_room(s);
  /* with no record left the range stays out of use */
  (void)ext_free(s, start, cut, r, XA_EXT_CLEAN, 0);
  return cut;
}

/* Unmap shard s's wholly free, clean regions, keeping one.  Lock held;
 * dropped around munmap. */
static void release_regions(struct huge_shard *s, bool keep_one) {
  /* none kept where new mappings are resident at once (mlockall with
   * MCL_FUTURE): its purged pages are zeroed and stay resident */
  bool kept = !keep_one || __atomic_load_n(&xa_os_populating, __ATOMIC_RELAXED);
  for (uint32_t r = 0; r < s->nregions; r++) {
    struct region *g = &s->regions[r];
    if (!g->size || g->free_bytes != g->size) continue;
    struct xa_ext *e = xa_ext_from(&s->ix, g->base);
    if (!e || e->start != g->base || e->size != g->size || e->state != XA_EXT_CLEAN) continue;
    if (!kept) { kept = true; continue; }
    struct region dead = *g;
    ext_take(s, e, e->start, e->size);
    g->size = 0;
    g->free_bytes = 0;
    g->moved = 0;
    total_add(&xa_huge_region_bytes, dead.size, -1);
    xa_unlock(&s->lock);
    xa_hugemap_forget(dead.base, dead.size);
    xa_os_unmap((void *)dead.base, dead.size);
    xa_lock(&s->lock);
  }
}

void xa_huge_limit_cache(size_t bytes) { xa_budget_limit_huge(bytes); }

size_t xa_huge_cache_budget(void) { return xa_budget_huge_slack(); }

/* Forget the peak: the live bytes are all there is (a trim). */
static void peak_restart(uint64_t now) {
  __atomic_store_n(&huge_hwm, __atomic_load_n(&all_bytes, __ATOMIC_RELAXED), __ATOMIC_RELAXED);
  __atomic_store_n(&huge_hwm_prev, 0, __ATOMIC_RELAXED);
  __atomic_store_n(&hwm_at, now, __ATOMIC_RELAXED);
}

/* Keep the resident pages of huge blocks, live and dirty, within the most
 * bytes live in huge blocks within the last two or three decay times
 * (with dirty_decay_ms -1, since the start or the last trim) plus
 * huge_cache_bytes: dirty bytes within huge_cache_bytes plus what the
 * live bytes are short of that peak.  A program that allocates and frees big blocks all the time
 * keeps about what it uses at its peak resident for reuse, whatever the
 * sizes' order; the rest goes, oldest first, on a free and when a block
 * is placed (taking fresh pages, it adds resident ones).  Dirty bytes within huge_cache_bytes plus that whole
 * peak, as it was, let freed blocks that do not fit the next, bigger one
 * stay resident beside it: this suite's `large` (blocks of 1-512 MiB one
 * after another, 3 interleaved runs) peaked at 1,492-1,494 MB, against
 * 1,034-1,217 now, with the same faults (271k), and mimalloc-bench's
 * malloc-large (at most 20 live blocks of 5-25 MiB) kept its 2.2-2.5k
 * faults and its peak.  (Time decay returns all of them once the program
 * stops.)  The totals are over all shards; the shard whose lock is held
 * gives back its own oldest extents. */
static void purge_over_budget(struct huge_shard *s) {
  size_t budget = xa_huge_cache_budget();
  peak_tick(xa_os_now());
  size_t peak = __atomic_load_n(&huge_hwm, __ATOMIC_RELAXED), prev = __atomic_load_n(&huge_hwm_prev, __ATOMIC_RELAXED);
  size_t live = __atomic_load_n(&all_bytes, __ATOMIC_RELAXED);
  if (prev > peak) peak = prev;
  if (budget && peak > live) budget += peak - live;
  size_t dirty;
  while ((dirty = __atomic_load_n(&xa_budget_huge_dirty, __ATOMIC_RELAXED)) > budget && purge_one(s, UINT64_MAX, 0, dirty - budget)) {}
}

size_t xa_huge_cache_decay(uint64_t now) {
  uint64_t ttl = xa_opt.dirty_decay_ms < 0 ? UINT64_MAX : (uint64_t)xa_opt.dirty_decay_ms * 1000000u;
  if (now == UINT64_MAX) {                  /* a trim: the cache starts over, owing nothing */
    peak_restart(xa_os_now());
    (void)xa_budget_take_owed();
  }
  for (unsigned i = 0, n = shard_count(); i < n; i++) {
    struct huge_shard *s = &shards[i];
    /* A shard that never had a region has nothing to purge or release:
     * not locked, its page (a lock write) stays out of memory in a
     * program without huge blocks.  A region made meanwhile waits for the
     * next pass. */
    if (!__atomic_load_n(&s->nregions, __ATOMIC_RELAXED)) continue;
    xa_lock(&s->lock);
    if (now == UINT64_MAX) {
      while (purge_one(s, UINT64_MAX, 0, SIZE_MAX)) {}
    } else if (ttl != UINT64_MAX) {
      while (purge_one(s, now, ttl, SIZE_MAX)) {}
    }
    purge_over_budget(s);
    release_regions(s, now != UINT64_MAX);
    xa_unlock(&s->lock);
  }
  /* (tested here: a program without huge blocks runs no more code) */
  if (now != UINT64_MAX && (__atomic_load_n(&gather_uncounted, __ATOMIC_RELAXED) ||
                            __atomic_load_n(&gather_left, __ATOMIC_RELAXED) < GATHER_UNCOUNTED))
    gather_recount(false);
  return __atomic_load_n(&xa_budget_huge_dirty, __ATOMIC_RELAXED);
}

size_t xa_huge_purge_bytes(size_t bytes) {
  size_t done = 0;
  if (xa_opt.dirty_decay_ms < 0) return 0;
  for (unsigned i = 0, n = shard_count(); i < n && done < bytes; i++) {
    struct huge_shard *s = &shards[i];
    if (!__atomic_load_n(&s->dirty_bytes, __ATOMIC_RELAXED)) continue;
    xa_lock(&s->lock);
    for (size_t got; done < bytes && (got = purge_one(s, UINT64_MAX, 0, bytes - done)) != 0;) done += got;
    xa_unlock(&s->lock);
  }
  __atomic_add_fetch(&xa_budget_huge_purged, done, __ATOMIC_RELAXED);
  return done;
}

/* ---- free and realloc ------------------------------------------------------------- */

bool xa_huge_free(void *p) {
  struct huge_ent *f;
  struct huge_shard *s = lock_block((uintptr_t)p, &f);
  if (!s) return false;
  struct huge_ent e = *f;
  remove_locked(s, f);
  if (e.region == NO_REGION) {
    xa_unlock(&s->lock);
    xa_os_unmap(p, e.size + guard_size());
    return true;
  }
  ext_room(s);
  if (!ext_free(s, e.p, e.size, e.region, XA_EXT_DIRTY, xa_os_now())) {
    /* no extent slot: give the pages back now and leave them reserved */
    xa_unlock(&s->lock);
    xa_os_purge(p, e.size);
    return true;
  }
  if (xa_opt.dirty_decay_ms == 0 || xa_opt.huge_cache_bytes == 0) while (purge_one(s, UINT64_MAX, 0, SIZE_MAX)) {}
  else purge_over_budget(s);
  xa_unlock(&s->lock);
  return true;
}

/* Bytes of clean extents in [at, at+size), a run of free extents from
 * first.  Lock held. */
static size_t run_clean_bytes(struct huge_shard *s, struct xa_ext *first, uintptr_t at, size_t size) {
  uintptr_t end = at + size;
  size_t clean = 0;
  for (struct xa_ext *e = first; e && e->start < end; e = xa_ext_from(&s->ix, e->start + e->size))
    if (e->state == XA_EXT_CLEAN) {
      uintptr_t lo = e->start > at ? e->start : at, hi = e->start + e->size < end ? e->start + e->size : end;
      clean += hi - lo;
    }
  return clean;
}

/* Grow block e in place over the free extents right after it.  With
 * XA_GROW_RESIDENT, not over clean pages while a dirty extent could hold
 * the whole grown block.  Lock held. */
static bool grow_in_place(struct huge_shard *s, struct huge_ent *e, size_t size, enum xa_huge_grow how) {
  uintptr_t end = e->p + e->size, need = size - e->size;
  struct xa_ext *first = xa_ext_from(&s->ix, end);
  size_t have = 0;
  for (struct xa_ext *n = first; n && n->region == e->region && n->start == end + have && have < need;
       n = xa_ext_from(&s->ix, end + have))
    have += n->size;
  if (have < need) return false;
  if (how == XA_GROW_RESIDENT && run_clean_bytes(s, first, end, need) &&
      xa_ext_fit(&s->ix, XA_EXT_DIRTY, size, xa_os_page))
    return false;
  run_take(s, first, end, need);
  e->size = size;
  return true;
}

/* Resize region block e of shard s (out of the table) to size bytes, in
 * place or (XA_GROW_MOVE) elsewhere in the shard; returns the new address
 * or NULL (e unchanged).  Lock held on entry and return. */
static void *resize(struct huge_shard *s, struct huge_ent *e, size_t size, enum xa_huge_grow how) {
  if (size < e->size) {                       /* shrink: the tail is freed */
    ext_room(s);
    ext_free(s, e->p + size, e->size - size, e->region, XA_EXT_DIRTY, xa_os_now());
    e->size = size;
    return (void *)e->p;
  }
  if (grow_in_place(s, e, size, how)) return (void *)e->p;
  if (how != XA_GROW_MOVE) return NULL;
  /* Move: a new place, the pages moved there by mremap (the rest of it
   * as it was), and the old range reserved again and freed as clean. */
  bool zeroed;
  uint32_t r;
  uintptr_t q = carve(s, size, XA_HUGE_ALIGN, CARVE_FOR_MOVE, &zeroed, &r);
  if (!q && region_new(s, size, XA_HUGE_ALIGN)) q = carve(s, size, XA_HUGE_ALIGN, CARVE_FOR_MOVE, &zeroed, &r);
  if (!q) return NULL;
  xa_unlock(&s->lock);
  int mv = xa_os_move_pages((void *)e->p, e->size, (void *)q);
  if (mv == XA_MOVE_FAILED) memcpy((void *)q, (void *)e->p, e->size);   /* the old stays dirty */
  if (mv == XA_MOVE_KEPT) (void)map_fresh(e->p, e->size);
  xa_lock(&s->lock);
  if (mv != XA_MOVE_FAILED) s->regions[r].moved = true;   /* the block is a mapping of its own */
  /* moved: the old range is mapped and clean; a hole stays out of use */
  ext_room(s);
  if (mv != XA_MOVE_HOLE) ext_free(s, e->p, e->size, e->region, mv == XA_MOVE_KEPT ? XA_EXT_CLEAN : XA_EXT_DIRTY, xa_os_now());
  e->p = q;
  e->size = size;
  e->region = r;
  return (void *)q;
}

void *xa_huge_realloc(void *p, size_t n, enum xa_huge_grow how) {
  size_t size = block_size(n, false);
  if (!size) return NULL;
  struct huge_ent *f;
  struct huge_shard *s = lock_block((uintptr_t)p, &f);
  /* a block that holds n is not grown by the rounding (a calloc'd one
   * is not rounded): it shrinks to n's pages at most; nor is a block off
   * a 2 MiB boundary (one from below XA_THP_WHOLE_MIN grown in place), which
   * whole huge pages at its end would not make whole */
  if (s && ((n <= f->size && size > f->size) || f->p % XA_HUGE_ALIGN != 0)) size = XA_ALIGN_UP(n, xa_os_page);
  if (!s || size == f->size) {
    if (s) xa_unlock(&s->lock);
    return s ? p : NULL;
  }
  struct huge_ent e = *f;
  if (e.region == NO_REGION) {               /* secure mode: never moved here */
    xa_unlock(&s->lock);
    return NULL;
  }
  /* Out of the table while the block changes.  Its deleted slot makes
   * room to put it back at the same address, but a block that moved goes
   * in at another, into an empty slot perhaps, and other threads may
   * insert while resize drops the lock: room is made again first (if it
   * cannot be mapped, put still finds the deleted slot, and find stays
   * bounded). */
  remove_locked(s, f);
  uintptr_t old_p = e.p;
  size_t old_size = e.size;
  void *q = resize(s, &e, size, how);
  bool moved = e.p != old_p, grown = q && (moved || e.size > old_size);
  bool whole = ((e.p | e.size) & (XA_HUGE_ALIGN - 1)) == 0;
  /* an advised block grown or moved is advised again whole (no count of
   * the mappings: none under the lock) */
  bool again = grown && e.marked && thp_wanted(e.size, false, whole, true, moved);
  (void)reserve_locked(s);
  insert_locked(s, &e);
  if (q) purge_over_budget(s);
  xa_unlock(&s->lock);
  if (again) thp_block(e.p, e.size, false);
  else if (grown && !e.marked && thp_wanted(e.size, false, whole, false, moved)) {
    /* grown to where it asks: advised, then marked in its entry (the
     * caller holds the block, so it is still there) */
    thp_block(e.p, e.size, false);
    struct huge_ent *g;
    struct huge_shard *gs = lock_block(e.p, &g);
    if (gs) {
      g->marked = 1;
      xa_unlock(&gs->lock);
    }
  }
  return q;
}

void xa_huge_stats(size_t *count, size_t *bytes, size_t *cached) {
  *count = *bytes = *cached = 0;
  for (unsigned i = 0, n = shard_count(); i < n; i++) {
    struct huge_shard *s = &shards[i];
    xa_lock(&s->lock);
    *count += s->count;
    *bytes += s->bytes;
    *cached += s->dirty_bytes;
    xa_unlock(&s->lock);
  }
}

struct range { uintptr_t p; size_t size; };

/* Add the resident bytes of shard s's live blocks and dirty extents. */
static void shard_resident(struct huge_shard *s, size_t *live, size_t *cached) {
  struct range *r;
  size_t bytes, n, nlive;
  for (;;) {
    size_t room = __atomic_load_n(&s->tab_cap, __ATOMIC_RELAXED) + __atomic_load_n(&s->ix.count, __ATOMIC_RELAXED) + 16;
    bytes = XA_ALIGN_UP(room * sizeof *r, xa_os_page);
    if (!(r = xa_os_map(bytes, xa_os_page))) return;
    xa_lock(&s->lock);
    if (s->tab_cap + s->ix.count <= room) break;
    xa_unlock(&s->lock);
    xa_os_unmap(r, bytes);
  }
  n = 0;
  for (size_t i = 0; i < s->tab_cap; i++)
    if (s->tab[i].p > 1) r[n++] = (struct range){s->tab[i].p, s->tab[i].size};
  nlive = n;
  for (struct xa_ext *e = xa_ext_oldest(&s->ix); e; e = e->lru_next) r[n++] = (struct range){e->start, e->size};
  xa_unlock(&s->lock);
  for (size_t i = 0; i < n; i++) {
    size_t res = xa_os_resident_range((void *)r[i].p, r[i].size, NULL);
    if (i < nlive) *live += res;
    else *cached += res;
  }
  xa_os_unmap(r, bytes);
}

void xa_huge_resident(size_t *live, size_t *cached) {
  *live = *cached = 0;
  for (unsigned i = 0, n = shard_count(); i < n; i++) shard_resident(&shards[i], live, cached);
}

void xa_huge_gather_stats(uint64_t *count, uint64_t *bytes) {
  *count = __atomic_load_n(&gather_count, __ATOMIC_RELAXED);
  *bytes = __atomic_load_n(&gather_bytes, __ATOMIC_RELAXED);
}

void xa_huge_lock_stats(unsigned *count, uint64_t *contended) {
  *count = shard_count();
  *contended = 0;
  for (unsigned i = 0; i < *count; i++)      /* counted by lock takers: read as they leave it */
    *contended += __atomic_load_n(&shards[i].lock.contended, __ATOMIC_RELAXED);
}

size_t xa_huge_dirty(void) {
  return __atomic_load_n(&xa_budget_huge_dirty, __ATOMIC_RELAXED);
}

size_t xa_huge_metadata_resident(void) {
  size_t res = 0;
  for (unsigned i = 0, n = shard_count(); i < n; i++) {
    struct huge_shard *s = &shards[i];
    void *segs[XA_EXT_SEGMENTS];
    xa_lock(&s->lock);
    void *tab = s->tab;
    size_t tab_bytes = s->tab_cap * sizeof(struct huge_ent), nseg = s->ix.nsegments;
    memcpy(segs, s->segs, nseg * sizeof *segs);
    xa_unlock(&s->lock);
    /* no lock across the system calls: a table rehashed meanwhile reads
     * as what is at its address now (a statistic) */
    if (tab) res += xa_os_resident_range(tab, XA_ALIGN_UP(tab_bytes, xa_os_page), NULL);
    for (size_t k = 0; k < nseg; k++) res += xa_os_resident_range(segs[k], XA_EXT_SEGMENT_BYTES, NULL);
  }
  return res;
}

size_t xa_huge_metadata(void) {
  size_t bytes = 0;
  for (unsigned i = 0, n = shard_count(); i < n; i++) {
    const struct huge_shard *s = &shards[i];
    bytes += __atomic_load_n(&s->tab_cap, __ATOMIC_RELAXED) * sizeof(struct huge_ent) +
             __atomic_load_n(&s->ix.nsegments, __ATOMIC_RELAXED) * XA_EXT_SEGMENT_BYTES;
  }
  return bytes;
}

size_t xa_huge_chunk_bytes(void) { return __atomic_load_n(&lent_bytes, __ATOMIC_RELAXED); }

size_t xa_huge_reserved(void) {
  size_t all = __atomic_load_n(&xa_huge_region_bytes, __ATOMIC_RELAXED), lent = __atomic_load_n(&lent_bytes, __ATOMIC_RELAXED);
  return all > lent ? all - lent : 0;     /* read apart: a region may go between */
}

/* fork: every shard's lock, in order. */
void xa_huge_prefork(void) {
  for (unsigned i = 0, n = shard_count(); i < n; i++) xa_lock(&shards[i].lock);
}
void xa_huge_postfork_parent(void) {
  for (unsigned i = 0, n = shard_count(); i < n; i++) xa_unlock(&shards[i].lock);
}
void xa_huge_postfork_child(void) {
  for (unsigned i = 0, n = shard_count(); i < n; i++) {
    struct huge_shard *s = &shards[i];
    xa_lock_reinit(&s->lock);
    /* Ranges other threads were purging, wholly, in part or not at all
     * in this copy: dirty again (decay purges them), else out of use for
     * good.  The forking thread's own (a fork from a signal handler) it
     * finishes itself as it returns. */
    xa_lock(&s->lock);
    struct huge_inflight *mine = NULL;
    for (struct huge_inflight *f = s->inflight, *next; f; f = next) {
      next = f->next;
      if (f->owner == xa_thread_self()) {
        f->next = mine;
        mine = f;
        continue;
      }
      s->regions[f->region].free_bytes -= f->size;
      ext_room(s);
      (void)ext_free(s, f->start, f->size, f->region, XA_EXT_DIRTY, xa_os_now());
    }
    s->inflight = mine;
    xa_unlock(&s->lock);
  }
}
