/* Arenas: span carving (split/coalesce), slab bins, refill and flush of
 * thread-cache batches, large allocations.  Every function that takes the
 * arena lock drops it before any call into the OS layer. */
#include "arena_private.h"
#include "base.h"
#include "budget.h"
#include "error.h"
#include "mesh.h"
#include "options.h"
#include "valgrind.h"
#include <pthread.h>
#include <signal.h>
#include <string.h>

struct xa_arena **xa_arenas;
unsigned xa_narenas;

/* In XA_DEBUG builds every release of an arena lock re-checks the arena. */
static void arena_unlock(struct xa_arena *a) {
  if (xa_config_debug) {
    const char *err = xa_arena_check_locked(a);
    if (err) xa_error_assert(err, __FILE__, __LINE__);
  }
  xa_unlock(&a->lock);
}

static void arena_lock(struct xa_arena *a) {
  xa_lock(&a->lock);
  if (xa_config_debug) {
    const char *err = xa_arena_check_locked(a);
    if (err) xa_error_assert(err, __FILE__, __LINE__);
  }
}

/* ---- lists ----------------------------------------------------------- */

static void list_push(struct xa_span **head, struct xa_span *s) {
  s->prev = NULL;
  s->next = *head;
  if (*head) (*head)->prev = s;
  *head = s;
}

static void list_remove(struct xa_span **head, struct xa_span *s) {
  if (s->prev) s->prev->next = s->next;
  else *head = s->next;
  if (s->next) s->next->prev = s->prev;
  s->next = s->prev = NULL;
}

/* ---- free spans ------------------------------------------------------ */

/* Has s been dirty (or muzzy) for min_age ns at time now?  Its stamp may
 * be later than a `now` taken before the lock (no unsigned underflow). */
static bool aged(const struct xa_span *s, uint64_t now, uint64_t min_age) {
  return min_age == 0 || (now > s->dirtied_at && now - s->dirtied_at >= min_age);
}

/* Dirty lists (free spans; slabs with unpurged free pages), oldest first. */
static void lru_push(struct xa_lru *l, struct xa_span *s) {
  s->lru_next = NULL;
  s->lru_prev = l->tail;
  if (l->tail) l->tail->lru_next = s;
  else l->head = s;
  l->tail = s;
}

static void lru_push_front(struct xa_lru *l, struct xa_span *s) {
  s->lru_prev = NULL;
  s->lru_next = l->head;
  if (l->head) l->head->lru_prev = s;
  else l->tail = s;
  l->head = s;
}

static void lru_remove(struct xa_lru *l, struct xa_span *s) {
  if (s->lru_prev) s->lru_prev->lru_next = s->lru_next;
  else l->head = s->lru_next;
  if (s->lru_next) s->lru_next->lru_prev = s->lru_prev;
  else l->tail = s->lru_prev;
}

/* Pages of a chunk that spans may use: [first_page, end_page) (chunk.h). */
static unsigned usable_pages(void) { return xa_chunk_end_page - xa_chunk_first_page; }

/* Note span s as under madvise while the lock is dropped (f on the
 * caller's stack), and take the note back once it is held again. */
static void inflight_add(struct xa_arena *a, struct xa_inflight *f, struct xa_span *s) {
  f->span = s;
  f->owner = xa_thread_self();
  f->next = a->inflight;
  a->inflight = f;
}

static void inflight_remove(struct xa_arena *a, struct xa_inflight *f) {
  for (struct xa_inflight **pp = &a->inflight; *pp; pp = &(*pp)->next)
    if (*pp == f) { *pp = f->next; return; }
}

static unsigned free_bin(uint32_t npages) {
  if (npages <= XA_FREE_EXACT) return npages - 1;
  return XA_FREE_EXACT + (unsigned)(63 - __builtin_clzl(npages)) - 6;
}

/* Free span s has n pages that are not resident (counted fresh when
 * taken, taken_fresh): a dirty span keeps at most its length; the other
 * states count every page as fresh anyway and keep none. */
static void span_set_unfaulted(struct xa_span *s, uint32_t n) {
  s->unfaulted = s->dirty != XA_PAGES_DIRTY ? 0 : n < s->npages ? n : s->npages;
}

/* Which set of bins free span s is in (free_spans). */
static unsigned free_kind(const struct xa_span *s) { return s->dirty == XA_PAGES_DIRTY; }

static void free_insert(struct xa_arena *a, struct xa_span *s) {
  unsigned b = free_bin(s->npages), k = free_kind(s);
  list_push(&a->free_spans[k][b], s);
  a->free_nonempty[k][b >> 6] |= (uint64_t)1 << (b & 63);
}

static void free_remove(struct xa_arena *a, struct xa_span *s) {
  unsigned b = free_bin(s->npages), k = free_kind(s);
  list_remove(&a->free_spans[k][b], s);
  if (!a->free_spans[k][b]) a->free_nonempty[k][b >> 6] &= ~((uint64_t)1 << (b & 63));
  struct xa_chunk *c = xa_span_chunk(s);
  if (c->free_pages == usable_pages()) a->nspare--;     /* whole no more */
  c->free_pages -= s->npages;
  if (s->dirty == XA_PAGES_DIRTY) {
    a->dirty_pages -= s->npages;
    lru_remove(&a->dirty_spans, s);
  } else if (s->dirty == XA_PAGES_MUZZY) {
    a->muzzy_pages -= s->npages;
    lru_remove(&a->muzzy_spans, s);
  }
}

/* Make pages [first, first+n) of c one free span and bin it.  Only the
 * boundary pages' pageinfo is written (for coalescing); interior pages
 * already say XA_CLS_NONE. */
static struct xa_span *free_make(struct xa_arena *a, struct xa_chunk *c, unsigned first, unsigned n, uint8_t dirty) {
  struct xa_span *s = xa_chunk_span(c, first);
  s->first = (uint16_t)first;
  s->npages = n;
  s->unfaulted = 0;
  s->state = XA_SPAN_FREE;
  s->cls = XA_CLS_NONE;
  s->dirty = dirty;
  xa_chunk_mark_pages(c, first, 1, first, XA_CLS_NONE);
  xa_chunk_mark_pages(c, first + n - 1, 1, first, XA_CLS_NONE);
  c->free_pages += n;
  if (c->free_pages == usable_pages()) a->nspare++;     /* wholly free, in one span or several */
  if (dirty == XA_PAGES_DIRTY) {
    a->dirty_pages += n;
    lru_push(&a->dirty_spans, s);
  } else if (dirty == XA_PAGES_MUZZY) {
    s->dirtied_at = xa_os_now();
    a->muzzy_pages += n;
    lru_push(&a->muzzy_spans, s);
  }
  free_insert(a, s);
  return s;
}

/* A free span of kind k (free_kind) with at least n pages: in the bin of
 * n pages if it holds one, else the first of the next bin that is not
 * empty (every span there is longer).  NULL if none. */
static struct xa_span *free_find(struct xa_arena *a, unsigned k, uint32_t n) {
  unsigned b = free_bin(n);
  struct xa_span *s = a->free_spans[k][b];
  if (b >= XA_FREE_EXACT)               /* a range bin: look for a fit */
    while (s && s->npages < n) s = s->next;
  if (s) return s;
  for (unsigned w = (b + 1) >> 6; w < 2; w++) {
    uint64_t m = a->free_nonempty[k][w];
    if (w == (b + 1) >> 6) m &= ~(uint64_t)0 << ((b + 1) & 63);
    if (m) return a->free_spans[k][w * 64 + (unsigned)__builtin_ctzl(m)];
  }
  return NULL;
}

/* Free spans of different page states are never merged, so a DIRTY span
 * is resident, but for its few unfaulted pages: reusing it costs no page
 * fault and no new RSS. */
static struct xa_span *free_find_dirty(struct xa_arena *a, uint32_t n) {
  return a->dirty_pages >= n ? free_find(a, 1, n) : NULL;
}

/* Did no arena have n dirty pages left (a's count exact under its lock,
 * the others' read racily)?  Then a clean span handed out is a refault that
 * purging may have caused (os.h); pages of another arena left dirty mean
 * the placement, not the purge, made it fresh. */
static bool few_dirty_pages(const struct xa_arena *a, uint32_t n) {
  size_t pages = a->dirty_pages;
  unsigned narenas = xa_arena_count();
  for (unsigned i = 0; i < narenas && pages < n; i++)
    if (xa_arenas[i] != a) pages += __atomic_load_n(&xa_arenas[i]->dirty_pages, __ATOMIC_RELAXED);
  return pages < n;
}

/* Dirty pages of the arenas other than a (any arena if a is NULL), read
 * racily. */
static size_t others_dirty_pages(const struct xa_arena *a) {
  size_t pages = 0;
  unsigned narenas = xa_arena_count();
  for (unsigned i = 0; i < narenas; i++)
    if (xa_arenas[i] != a) pages += __atomic_load_n(&xa_arenas[i]->dirty_pages, __ATOMIC_RELAXED);
  return pages;
}

/* Dirty pages of all arenas (a's exact under its lock). */
static size_t all_dirty_pages(const struct xa_arena *a) { return a->dirty_pages + others_dirty_pages(a); }

/* The peak budget: how many dirty pages the arenas may hold while they
 * take fresh ones.  Freed pages are worth keeping while the program may
 * grow back into them: up to the peak of its live bytes.  Near that
 * peak, dirty pages that no request fits are only resident set beside
 * the live one, and fresh pages taken then make a new peak of the
 * process's RSS.  So the budget is the live bytes' peak less the live
 * bytes now, plus an eighth of that peak.  A program whose live bytes
 * swing in a different size each time (bench/oscillate) otherwise kept a
 * whole swing's pages dirty at every top: its peak fell from 106 to
 * 96-98 MB (glibc 105), for about 10% more time and 1.8 times the page
 * faults.  Programs that stay near their peak in the sizes they use take
 * few fresh pages, and pay nothing. */
static size_t peak_budget_pages(void) {
  uint64_t peak = xa_peak_max(XA_PEAK_ALLOCATED), live = xa_peak_now(XA_PEAK_ALLOCATED);
  uint64_t room = peak > live ? peak - live : 0;
  return (size_t)((room + peak / 8) >> xa_os_page_shift);
}

/* The first n pages of free span s were taken (out of its bin; the rest,
 * if any, binned anew as `rest`): count what will be faulted in, for the
 * memory-limit check (fresh) and the decay's regret (refault, when no
 * arena had the pages resident).  A dirty span's unfaulted pages are
 * put in the taken part first (counted now rather than missed), the
 * rest keeps what is left.  Fresh pages taken while sparse slabs wait
 * add to grow_pages (grow_purge); with none waiting it starts again.
 * Fresh pages taken over the peak budget add to over_pages (peak_purge),
 * and over the budget shared with the huge cache to its debt (budget.h). */
static void taken_fresh(struct xa_arena *a, const struct xa_span *s, uint32_t n, struct xa_span *rest) {
  uint32_t fresh = n;
  if (s->dirty == XA_PAGES_DIRTY) {
    fresh = s->unfaulted < n ? s->unfaulted : n;
    if (rest) span_set_unfaulted(rest, s->unfaulted - fresh);
  } else {
    a->grow_pages = a->dirty_slabs.head ? a->grow_pages + n : 0;
  }
  if (!fresh) return;
  if (a->dirty_pages && all_dirty_pages(a) > peak_budget_pages()) {
    a->over_pages += fresh;
  } else if (__atomic_load_n(&xa_budget_huge_dirty, __ATOMIC_RELAXED) && xa_opt.dirty_decay_ms >= 0) {
    /* the huge cache's pages count too (budget.h): it owes its share */
    size_t over = xa_budget_over(all_dirty_pages(a) << xa_os_page_shift, peak_budget_pages() << xa_os_page_shift);
    if (over) xa_budget_owe((size_t)fresh << xa_os_page_shift, over);
  }
  xa_os_count_fresh((size_t)fresh << xa_os_page_shift);
  if (few_dirty_pages(a, fresh)) xa_os_count_refault((size_t)fresh << xa_os_page_shift);
}

/* A free span of at least n pages, removed from its bin and trimmed to n
 * pages (the rest stays free): a dirty one if any is long enough, else
 * a clean or muzzy one.  NULL if none. */
static struct xa_span *free_take(struct xa_arena *a, uint32_t n) {
  struct xa_span *s = free_find_dirty(a, n);
  if (!s && !(s = free_find(a, 0, n))) return NULL;
  struct xa_chunk *c = xa_span_chunk(s);
  a->spare_takes += c->free_pages == usable_pages();
  free_remove(a, s);
  struct xa_span *rest = s->npages > n ? free_make(a, c, s->first + n, s->npages - n, s->dirty) : NULL;
  taken_fresh(a, s, n, rest);
  s->npages = n;
  return s;
}

/* An arena that holds this many bytes of chunks makes its new chunks ask
 * for transparent huge pages on their second halves (chunk.h): fewer page
 * faults and TLB misses for a big heap, at the price of each asking half
 * that is partly used, backed whole (up to 2 MiB each: at the edge of the
 * arena's growth one, 1/16 of its chunks).  A smaller heap does not pay
 * it. */
#define XA_ARENA_THP_MIN ((size_t)8 * XA_CHUNK_SIZE)

/* A span of n pages: from the free bins, else from a new chunk (mapped
 * with the lock dropped).  Lock held on entry and on return. */
static struct xa_span *span_grab(struct xa_arena *a, uint32_t n) {
  if (n > usable_pages()) return NULL;
  for (;;) {
    struct xa_span *s = free_take(a, n);
    if (s) return s;
    bool huge = a->mapped >= XA_ARENA_THP_MIN;
    arena_unlock(a);
    struct xa_chunk *c = xa_chunk_new(a, huge);
    if (!c && xa_arena_release_spares_all()) c = xa_chunk_new(a, huge);   /* address space short */
    arena_lock(a);
    if (!c) return NULL;
    if (c->meshable && !xa_mesh_gen_current(c->mesh_gen)) {
      /* A fork went by while it was made: it maps a file that is no
       * longer ours (mesh.h).  Empty still, it goes, and another is made. */
      arena_unlock(a);
      xa_chunk_delete(c);
      arena_lock(a);
      continue;
    }
    c->next = a->chunks;
    a->chunks = c;
    a->mapped += XA_CHUNK_SIZE;
    if (a->mapped > a->mapped_peak) a->mapped_peak = a->mapped;
    if (c->born_dirty) xa_decay_note(&a->decay, usable_pages());   /* reused now: young */
    free_make(a, c, xa_chunk_first_page, usable_pages(), c->born_dirty ? XA_PAGES_DIRTY : XA_PAGES_CLEAN);
  }
}

static struct xa_chunk *chunk_unlink_free(struct xa_arena *a, struct xa_chunk *c);
static void chunks_delete(struct xa_chunk *dead);

/* Turn allocated span s back into free pages, merging with free
 * neighbours whose pages are in the same state (dirty, muzzy or clean: a
 * merged span's state must be true of all its pages, or dirty accounting
 * and reuse of resident pages go wrong), `unfaulted` of them not resident
 * (a dirty span's count, summed over the merge).  Returns a chunk that
 * became wholly free and must be deleted by the caller after unlocking,
 * or NULL. */
static struct xa_chunk *span_release_into(struct xa_arena *a, struct xa_span *s, uint8_t dirty,
                                          uint32_t unfaulted, struct xa_span **merged) {
  struct xa_chunk *c = xa_span_chunk(s);
  unsigned first = s->first, n = s->npages;
  if (dirty == XA_PAGES_DIRTY) xa_decay_note(&a->decay, n);   /* freed now: young */
  if (s->state == XA_SPAN_SLAB || s->state == XA_SPAN_MESHED) {
    /* The bitmap overlaps later pages' slots: zero it so no stale slot
     * looks like a span; and the pages stop being small-object pages. */
    memset(s->bitmap, 0, ((xa_classes[s->cls].nobjs + 63) / 64) * 8);
    xa_chunk_mark_pages(c, first, n, first, XA_CLS_NONE);
  }
  s->state = XA_SPAN_FREE;
  if (first > xa_chunk_first_page) {
    struct xa_span *l = xa_chunk_span(c, xa_chunk_page_info(c, first - 1)->first);
    if (l->state == XA_SPAN_FREE && l->first + l->npages == first && l->dirty == dirty) {
      free_remove(a, l);
      first = l->first;
      n += l->npages;
      unfaulted += l->unfaulted;
    }
  }
  unsigned r = s->first + s->npages;
  if (r < xa_chunk_end_page) {
    struct xa_span *rs = xa_chunk_span(c, r);
    if (rs->state == XA_SPAN_FREE && rs->dirty == dirty) {
      free_remove(a, rs);
      n += rs->npages;
      unfaulted += rs->unfaulted;
      rs->npages = 0;
    }
  }
  struct xa_span *f = free_make(a, c, first, n, dirty);
  span_set_unfaulted(f, unfaulted);
  if (merged) *merged = f;
  if (c->free_pages != usable_pages() || a->nspare <= XA_SPARE_CHUNKS_MAX) return NULL;
  /* Too many wholly free chunks: hand this one back to the OS. */
  if (merged) *merged = NULL;
  return chunk_unlink_free(a, c);
}

static struct xa_chunk *span_release(struct xa_arena *a, struct xa_span *s, uint8_t dirty) {
  return span_release_into(a, s, dirty, 0, NULL);
}

/* Take wholly free chunk c (in one free span or several, in different page
 * states) out of the bins and off the arena's list; the caller deletes it
 * after unlocking. */
/* Does wholly free chunk c hold dirty free pages (not purged, nor given
 * to MADV_FREE)?  Lock held. */
static bool chunk_has_dirty(struct xa_chunk *c) {
  for (unsigned p = xa_chunk_first_page; p < xa_chunk_end_page;) {
    struct xa_span *s = xa_chunk_span(c, p);
    if (s->dirty == XA_PAGES_DIRTY) return true;
    p += s->npages;
  }
  return false;
}

static struct xa_chunk *chunk_unlink_free(struct xa_arena *a, struct xa_chunk *c) {
  struct xa_span *f = xa_chunk_span(c, xa_chunk_first_page);
  /* Purged already (or muzzy): a source gets it back purged whole, the
   * header too, so that its pages count as clean there. */
  c->retire_purge = !chunk_has_dirty(c);
  for (unsigned p = xa_chunk_first_page; p < xa_chunk_end_page;) {
    struct xa_span *s = xa_chunk_span(c, p);
    p += s->npages;
    free_remove(a, s);
  }
  f->state = XA_SPAN_HEADER;
  for (struct xa_chunk **pp = &a->chunks; *pp; pp = &(*pp)->next)
    if (*pp == c) { *pp = c->next; break; }
  a->mapped -= XA_CHUNK_SIZE;
  return c;
}

/* Chunk c after pages of it went back to the bins: wholly free beyond the
 * spares, it is unlinked and returned for the caller to delete after
 * unlocking; else NULL. */
static struct xa_chunk *spare_or_dead(struct xa_arena *a, struct xa_chunk *c) {
  if (c->free_pages == usable_pages() && a->nspare > XA_SPARE_CHUNKS) return chunk_unlink_free(a, c);
  return NULL;
}

/* Arena a's wholly free chunks (sourced: only those from a chunk source
 * that hold dirty pages), until `bytes` of them went: deleted, purged
 * first if purge (they idled). */
static size_t release_spares(struct xa_arena *a, size_t bytes, bool sourced, bool purge) {
  struct xa_chunk *dead = NULL;
  size_t n = 0;
  arena_lock(a);
  for (struct xa_chunk *c = a->chunks, *next; c && n * XA_CHUNK_SIZE < bytes; c = next) {
    next = c->next;
    if (c->free_pages != usable_pages() || (sourced && (!c->give || !chunk_has_dirty(c)))) continue;
    chunk_unlink_free(a, c);
    c->retire_purge |= purge;
    c->next = dead;
    dead = c;
    n++;
  }
  arena_unlock(a);
  chunks_delete(dead);
  return n * XA_CHUNK_SIZE;
}

size_t xa_arena_release_spares(struct xa_arena *a) { return release_spares(a, SIZE_MAX, false, false); }

size_t xa_arena_release_spares_all(void) {
  size_t released = 0;
  for (unsigned i = 0; i < xa_narenas; i++) released += xa_arena_release_spares(xa_arenas[i]);
  return released;
}

size_t xa_arena_give_spares(size_t bytes) {
  size_t given = 0;
  for (unsigned i = 0; i < xa_narenas && given < bytes; i++)
    if (__atomic_load_n(&xa_arenas[i]->nspare, __ATOMIC_RELAXED)) given += release_spares(xa_arenas[i], bytes - given, true, false);
  return given;
}

/* ---- arenas ---------------------------------------------------------- */

bool xa_arena_init_all(unsigned n) {
  struct xa_arena **v = xa_base_alloc(n * sizeof *v);
  if (!v) return false;
  for (unsigned i = 0; i < n; i++) {
    v[i] = xa_base_alloc(sizeof(struct xa_arena));
    if (!v[i]) return false;
    xa_lock_reinit(&v[i]->lock);
    v[i]->index = i;
    xa_decay_init(&v[i]->decay, xa_opt.dirty_decay_ms, xa_os_now());
    v[i]->rng = xa_os_random() | 1;
  }
  xa_arenas = v;
  __atomic_store_n(&xa_narenas, n, __ATOMIC_RELEASE);   /* after the arenas: xa_arena_count */
  return true;
}

/* Arenas in use (mallopt's M_ARENA_MAX): at most xa_narenas. */
static unsigned narenas_used;

void xa_arena_limit(unsigned n) {
  unsigned all = xa_arena_count();
  __atomic_store_n(&narenas_used, n < all ? n : all, __ATOMIC_RELAXED);
}

unsigned xa_arena_used(void) {
  unsigned n = __atomic_load_n(&narenas_used, __ATOMIC_RELAXED);
  return n ? n : xa_arena_count();
}

struct xa_arena *xa_arena_choose(void) {
  return xa_arenas[xa_os_cpu() % xa_arena_used()];
}

/* Live large bytes change by delta (lock held): allocated and active alike. */
static void large_change(struct xa_arena *a, int64_t delta) {
  a->large_allocated += (size_t)delta;
  xa_peak_add(&a->peak, XA_PEAK_ALLOCATED, delta);
  xa_peak_add(&a->peak, XA_PEAK_ACTIVE, delta);
}

/* ---- slabs ----------------------------------------------------------- */

/* Word w of the slots free in slab s and in every slab meshed onto its
 * pages (mesh.h): the slots it may hand out. */
static uint64_t slab_free_word(const struct xa_span *s, unsigned w) {
  uint64_t bits = s->bitmap[w];
  for (const struct xa_span *m = s->aliases; m; m = m->alias_next) bits &= m->bitmap[w];
  return bits;
}

static struct xa_span *slab_new(struct xa_arena *a, unsigned cls) {
  const struct xa_class_info *ci = &xa_classes[cls];
  struct xa_span *s = span_grab(a, ci->slab_pages);
  if (!s) return NULL;
  s->state = XA_SPAN_SLAB;
  s->cls = (uint8_t)cls;
  s->nfree = ci->nobjs;
  s->dirty = 0;
  s->purging = 0;
  s->purged = 0;
  s->aliases = NULL;
  unsigned full = ci->nobjs / 64, rem = ci->nobjs % 64;
  for (unsigned w = 0; w < full; w++) s->bitmap[w] = ~(uint64_t)0;
  if (rem) s->bitmap[full] = ((uint64_t)1 << rem) - 1;
  xa_chunk_mark_span(xa_span_chunk(s), s);
  list_push(&a->bins[cls].nonfull, s);
  a->bins[cls].nslabs++;
  a->bins[cls].nempty++;
  xa_peak_add(&a->peak, XA_PEAK_ACTIVE, (int64_t)ci->slab_pages << xa_os_page_shift);
  return s;
}

/* Secure mode: a random free slot of slab s (which has one), so the
 * order of allocations says nothing about where objects lie. */
static unsigned slab_random_slot(struct xa_arena *a, struct xa_span *s, unsigned nobjs) {
  uint64_t x = a->rng;
  x ^= x << 13, x ^= x >> 7, x ^= x << 17;
  a->rng = x;
  unsigned nw = (nobjs + 63) / 64, r = (unsigned)(x % nobjs), w = r / 64;
  uint64_t bits = slab_free_word(s, w) & (~(uint64_t)0 << (r & 63));
  while (!bits) {
    w = w + 1 == nw ? 0 : w + 1;
    bits = slab_free_word(s, w);
  }
  return w * 64 + (unsigned)__builtin_ctzl(bits);
}

/* Arenas are per CPU, but which CPU frees what is up to the program: one
 * arena can sit on megabytes of dirty (resident) pages that a thread now
 * on another CPU could reuse, while its own arena faults in fresh ones
 * (rptest: each phase's new threads find the last phase's pages in the
 * other arena).  Called with a locked, before a takes n pages: another
 * arena to take them from instead, if a has no dirty span of n pages and
 * that one has plenty of dirty pages (its count read racily; at least
 * XA_BORROW_MIN_PAGES and 4n, so that a span of n is likely among them);
 * else NULL.  The slab or block then belongs to that arena: frees go back
 * to it.  Arenas outside xa_arenas (the unit tests' own) keep to
 * themselves. */
static struct xa_arena *dirty_elsewhere(struct xa_arena *a, uint32_t n) {
  unsigned narenas = xa_arena_used();     /* M_ARENA_MAX: no arena beyond it */
  if (narenas < 2 || a->index >= narenas || xa_arenas[a->index] != a || free_find_dirty(a, n)) return NULL;
  struct xa_arena *best = NULL;
  size_t most = (size_t)n * 4 > XA_BORROW_MIN_PAGES ? (size_t)n * 4 : XA_BORROW_MIN_PAGES;
  for (unsigned i = 0; i < narenas; i++) {
    size_t d = __atomic_load_n(&xa_arenas[i]->dirty_pages, __ATOMIC_RELAXED);
    if (xa_arenas[i] != a && d >= most) { most = d; best = xa_arenas[i]; }
  }
  return best;
}

static void grow_purge(struct xa_arena *a);
static void peak_purge(struct xa_arena *a);
/* After a span request, lock not held (grow_purge, peak_purge). */
XA_INLINE void grow_check(struct xa_arena *a) {
  if (unlikely(__atomic_load_n(&a->grow_pages, __ATOMIC_RELAXED) >= XA_GROW_PURGE_PAGES)) grow_purge(a);
  if (unlikely(__atomic_load_n(&a->over_pages, __ATOMIC_RELAXED) >= XA_GROW_PURGE_PAGES)) peak_purge(a);
}

unsigned xa_arena_refill(struct xa_arena *a, unsigned cls, void **out, unsigned want) {
  const struct xa_class_info *ci = &xa_classes[cls];
  struct xa_bin *bin = &a->bins[cls];
  unsigned got = 0, nw = (ci->nobjs + 63) / 64;
  bool may_move = true;
  arena_lock(a);
  while (got < want) {
    struct xa_span *s = bin->nonfull;
    if (!s && may_move) {
      /* a new slab is due: carve it where dirty pages wait (once; with
       * objects in hand, return them and let the next refill move) */
      struct xa_arena *o = dirty_elsewhere(a, ci->slab_pages);
      may_move = false;
      if (o && got) break;
      if (o) {
        arena_unlock(a);
        a = o;
        bin = &a->bins[cls];
        arena_lock(a);
        continue;
      }
    }
    if (!s && !(s = slab_new(a, cls))) break;
    char *base = xa_span_addr(s);
    unsigned before = got;
    if (s->nfree == ci->nobjs) bin->nempty--;
    if (unlikely(s->purged)) {     /* its purged pages may be written again */
      xa_os_count_fresh((size_t)s->purged << xa_os_page_shift);
      xa_os_count_refault((size_t)s->purged << xa_os_page_shift);
      s->purged = 0;
    }
    if (unlikely(xa_opt.secure)) {
      while (got < want && got - before < s->nfree) {
        unsigned i = slab_random_slot(a, s, ci->nobjs);
        s->bitmap[i / 64] &= ~((uint64_t)1 << (i % 64));
        out[got++] = base + (size_t)i * ci->size;
      }
    } else {
      /* Highest addresses first: the cache pops from the top of its stack,
       * so the caller receives ascending addresses. */
      for (unsigned w = nw; w-- > 0 && got < want;) {
        uint64_t bits = slab_free_word(s, w), had = bits;
        if (bits == ~(uint64_t)0 && want - got >= 64) {
          /* A wholly free word (fresh slabs): 64 objects by stride, not
           * bit by bit -- 3 instructions an object instead of about 12. */
          char *p = base + ((size_t)w * 64 + 63) * ci->size;
          for (void **o = out + got, **e = o + 64; o != e; o++, p -= ci->size) *o = p;
          got += 64;
          s->bitmap[w] = 0;
          continue;
        }
        while (bits && got < want) {
          unsigned b = 63u - (unsigned)__builtin_clzl(bits);
          bits &= ~((uint64_t)1 << b);
          out[got++] = base + (size_t)(w * 64 + b) * ci->size;
        }
        s->bitmap[w] &= ~(had & ~bits);     /* taken: in the owner's bitmap */
      }
    }
    s->nfree -= got - before;
    if (s->nfree == 0) list_remove(&bin->nonfull, s);
  }
  if (xa_config_stats) bin->nrequests += got;
  bin->curobjs += got;
  xa_peak_add(&a->peak, XA_PEAK_ALLOCATED, (int64_t)got * xa_classes[cls].size);
  arena_unlock(a);
  grow_check(a);
  return got;
}

/* Report misuse found while flushing; the pointer is then skipped.  The
 * lock is dropped around the report (a write to stderr). */
static XA_NOINLINE XA_COLD void slab_misuse(struct xa_arena *a, const char *fn, const char *what, void *p) {
  xa_unlock(&a->lock);
  xa_error_pointer(fn, what, p);
  xa_lock(&a->lock);
}

/* Give the pages of empty slab s back to the arena, in page state st
 * (lock held). */
static struct xa_span *slab_release(struct xa_arena *a, struct xa_span *s, uint8_t st, struct xa_chunk **dead) {
  struct xa_bin *bin = &a->bins[s->cls];
  list_remove(&bin->nonfull, s);
  if (s->dirty) lru_remove(&a->dirty_slabs, s);
  bin->nslabs--;
  xa_peak_add(&a->peak, XA_PEAK_ACTIVE, -((int64_t)xa_classes[s->cls].slab_pages << xa_os_page_shift));
  /* Some of its pages were purged: it goes back dirty all the same, so
   * that it merges with its dirty neighbours (a span of another state
   * would split the free pages into pieces too short for the next
   * request, which then faults fresh pages in while these sit resident:
   * 20% higher peaks on the oscillating workload with grow_purge).  The
   * span counts its purged pages as unfaulted: taken, they are fresh
   * pages for the memory-limit check (pressure.c), which must see them
   * when they are written again, not before. */
  struct xa_span *f;
  struct xa_chunk *d = span_release_into(a, s, st, st == XA_PAGES_DIRTY ? s->purged : 0, &f);
  if (d) { d->next = *dead; *dead = d; }
  return f;
}

/* Slab s, listed in its bin with nfree free objects: released if it is
 * an empty slab beyond the bin's keep (one with aliases waits for the
 * purger to unmesh them), and on the dirty list once it may hold a whole
 * free page, to decay (lock held). */
static void slab_settle(struct xa_arena *a, struct xa_span *s, struct xa_chunk **dead, uint64_t now) {
  const struct xa_class_info *ci = &xa_classes[s->cls];
  struct xa_bin *bin = &a->bins[s->cls];
  if (s->nfree == ci->nobjs) {
    if (bin->nempty >= ci->empty_keep && !s->aliases) {
      slab_release(a, s, XA_PAGES_DIRTY, dead);
      return;
    }
    bin->nempty++;
  }
  if (!s->dirty && s->nfree >= ci->page_objs) {
    s->dirty = 1;
    s->dirtied_at = now;
    lru_push(&a->dirty_slabs, s);
  }
}

/* k objects of slab s were just marked free in its bitmap: update its
 * count, its place in the bin and the dirty list (lock held).  May release
 * the slab; a chunk to delete is chained onto *dead. */
static void slab_account(struct xa_arena *a, struct xa_span *s, uint32_t k, struct xa_chunk **dead, uint64_t now) {
  if (!k) return;
  const struct xa_class_info *ci = &xa_classes[s->cls];
  struct xa_bin *bin = &a->bins[s->cls];
  bin->curobjs -= k;
  xa_peak_add(&a->peak, XA_PEAK_ALLOCATED, -(int64_t)k * ci->size);
  if (unlikely(s->purging)) { s->nfree += k; return; }   /* the purger re-bins it */
  if (s->nfree == 0) list_push(&bin->nonfull, s);
  s->nfree += k;
  slab_settle(a, s, dead, now);
}

/* The same for k objects freed through slab v's addresses: a meshed slab
 * counts its own, and its owner the free slots they share. */
static void slab_account_run(struct xa_arena *a, struct xa_span *v, uint32_t k, struct xa_chunk **dead,
                             uint64_t now) {
  if (v->state != XA_SPAN_MESHED) {
    slab_account(a, v, k, dead, now);
    return;
  }
  v->nfree += k;
  slab_account(a, v->owner, k, dead, now);
}

static void chunks_delete(struct xa_chunk *dead) {
  while (dead) {
    struct xa_chunk *next = dead->next;
    xa_chunk_delete(dead);
    dead = next;
  }
}

/* Pointers that follow each other in ptrs often lie in the same slab (a
 * cache bin flushes its oldest objects, freed in order): such a run costs
 * one lookup and one accounting step.  Within a run, a pointer to the
 * object right after the previous one (objects freed in address order) is
 * an object start by construction and needs no division; any other has its
 * offset checked.  Every object's bit is the double-free test. */
void xa_arena_flush(void **ptrs, unsigned n, const char *fn) {
  struct xa_chunk *dead = NULL;
  uint64_t now = xa_os_now();
  bool secure = xa_opt.secure;
  while (n) {
    struct xa_arena *a = xa_chunk_of(ptrs[0])->arena;
    unsigned keep = 0;
    struct xa_span *s = NULL;      /* slab of the current run */
    char *base = NULL, *next = NULL;   /* next: the object after the last
                                          (NULL: no run; ptrs holds no NULL) */
    size_t bytes = 0, size = 0;
    uint32_t nobjs = 0, idx = 0, run = 0;   /* idx: the last object's */
    arena_lock(a);
    for (unsigned i = 0; i < n; i++) {
      char *p = ptrs[i];
      const char *bad;
      if (p == next && idx + 1 < nobjs) {
        idx++;
      } else if (p + 2 * size == next && idx > 0) {
        idx--;                   /* the object before the last: freed in LIFO order */
      } else {
        if (!s || (size_t)(p - base) >= bytes) {
          if (s) slab_account_run(a, s, run, &dead, now);
          s = NULL;
          next = NULL;
          struct xa_chunk *c = xa_chunk_of(p);
          if (c->arena != a) { ptrs[keep++] = p; continue; }
          struct xa_pageinfo pi = *xa_chunk_info(c, p);
          struct xa_span *t = xa_chunk_span(c, pi.first);
          if (unlikely(pi.cls >= XA_NSMALL || (t->state != XA_SPAN_SLAB && t->state != XA_SPAN_MESHED))) {
            slab_misuse(a, fn, "invalid pointer (double free?)", p);
            continue;
          }
          s = t;
          base = xa_span_addr(s);
          bytes = xa_span_bytes(s);
          size = xa_classes[s->cls].size;
          nobjs = xa_classes[s->cls].nobjs;
          run = 0;
        }
        uint32_t off = (uint32_t)(p - base);
        idx = xa_sizeclass_index(s->cls, off);
        if (unlikely(idx * size != off || idx >= nobjs)) { bad = "invalid pointer"; goto misuse; }
      }
      uint64_t *word = &s->bitmap[idx >> 6], bit = (uint64_t)1 << (idx & 63);
      if (unlikely(*word & bit)) { bad = "double free"; goto misuse; }
      *word |= bit;
      next = p + size;
      run++;
      /* secure: zero it here, where it is known to have been live */
      if (unlikely(secure)) xa_valgrind_fill(p, 0, size);
      continue;
    misuse:
      slab_account_run(a, s, run, &dead, now);   /* the report drops the lock */
      s = NULL;
      next = NULL;
      nobjs = 0;
      slab_misuse(a, fn, bad, p);
    }
    if (s) slab_account_run(a, s, run, &dead, now);
    arena_unlock(a);
    n = keep;
  }
  chunks_delete(dead);
}

bool xa_arena_small_is_free(const void *p) {
  struct xa_chunk *c = xa_chunk_of(p);
  struct xa_arena *a = c->arena;
  arena_lock(a);
  struct xa_pageinfo pi = *xa_chunk_info(c, p);
  struct xa_span *s = xa_chunk_span(c, pi.first);
  bool is_free = true;
  if (pi.cls < XA_NSMALL && (s->state == XA_SPAN_SLAB || s->state == XA_SPAN_MESHED)) {
    uint32_t idx = xa_sizeclass_index(pi.cls, (uint32_t)(uintptr_t)p - pi.start32);
    is_free = idx < xa_classes[pi.cls].nobjs && (s->bitmap[idx >> 6] >> (idx & 63) & 1);
  }
  arena_unlock(a);
  return is_free;
}

/* ---- large ----------------------------------------------------------- */

/* Split span s after its first n pages; the tail becomes a separate span
 * (state LARGE, pages marked, ready for span_release) which is returned. */
static struct xa_span *span_split(struct xa_span *s, uint32_t n) {
  struct xa_chunk *c = xa_span_chunk(s);
  struct xa_span *t = xa_chunk_span(c, s->first + n);
  t->first = (uint16_t)(s->first + n);
  t->npages = s->npages - n;
  t->state = XA_SPAN_LARGE;
  t->cls = XA_CLS_NONE;
  s->npages = n;
  xa_chunk_mark_span(c, t);   /* neighbours look pages up while merging */
  return t;
}

void *xa_arena_alloc_large(struct xa_arena *a, size_t size, size_t align) {
  unsigned sh = xa_os_page_shift;
  size_t np = (size + xa_os_page - 1) >> sh;
  size_t extra = align > xa_os_page ? (align >> sh) - 1 : 0;
  if (np + extra > usable_pages()) return NULL;
  struct xa_chunk *dead = NULL;
  arena_lock(a);
  struct xa_arena *o = dirty_elsewhere(a, (uint32_t)(np + extra));
  if (o) {
    arena_unlock(a);
    a = o;
    arena_lock(a);
  }
  struct xa_span *s = span_grab(a, (uint32_t)(np + extra));
  if (!s) { arena_unlock(a); return NULL; }
  uint8_t st = s->dirty;         /* the trimmed ends go back in this state */
  s->state = XA_SPAN_LARGE;
  s->cls = XA_CLS_NONE;
  s->dirty = 0;
  xa_chunk_mark_span(xa_span_chunk(s), s);
  if (extra) {
    uintptr_t addr = (uintptr_t)xa_span_addr(s);
    uint32_t lead = (uint32_t)((XA_ALIGN_UP(addr, align) - addr) >> sh);
    if (lead) {
      struct xa_span *t = span_split(s, lead);
      struct xa_chunk *d = span_release(a, s, st);
      if (d) { d->next = dead; dead = d; }
      s = t;
    }
    if (s->npages > np) {
      struct xa_chunk *d = span_release(a, span_split(s, (uint32_t)np), st);
      if (d) { d->next = dead; dead = d; }
    }
  }
  large_change(a, (int64_t)xa_span_bytes(s));
  if (xa_config_stats) a->large_nrequests++;
  arena_unlock(a);
  chunks_delete(dead);
  grow_check(a);
  return xa_span_addr(s);
}

struct xa_span *xa_arena_large_span(const void *p) {
  struct xa_chunk *c = xa_chunk_of(p);
  struct xa_span *s = xa_chunk_span(c, xa_chunk_info(c, p)->first);
  if (s->state != XA_SPAN_LARGE || xa_span_addr(s) != (const char *)p) return NULL;
  return s;
}

bool xa_arena_was_freed(const void *p) {
  struct xa_chunk *c = xa_chunk_of(p);
  arena_lock(c->arena);
  const struct xa_pageinfo *pi = xa_chunk_info(c, p);
  struct xa_span *s = xa_chunk_span(c, pi->first);
  bool was = ((uintptr_t)p & (xa_os_page - 1)) == 0 &&
             (s->state == XA_SPAN_FREE || s->state == XA_SPAN_PURGING) && pi->cls == XA_CLS_NONE;
  arena_unlock(c->arena);
  return was;
}

void xa_arena_free_large(struct xa_span *s) {
  struct xa_arena *a = xa_span_chunk(s)->arena;
  arena_lock(a);
  large_change(a, -(int64_t)xa_span_bytes(s));
  struct xa_chunk *d = span_release(a, s, XA_PAGES_DIRTY);
  arena_unlock(a);
  if (d) xa_chunk_delete(d);
}

bool xa_arena_resize_large(struct xa_span *s, size_t new_size) {
  struct xa_chunk *c = xa_span_chunk(s);
  struct xa_arena *a = c->arena;
  uint32_t n = (uint32_t)((new_size + xa_os_page - 1) >> xa_os_page_shift);
  if (n == 0) return false;
  bool ok = false;
  arena_lock(a);
  if (n < s->npages) {
    large_change(a, -((int64_t)(s->npages - n) << xa_os_page_shift));
    span_release(a, span_split(s, n), XA_PAGES_DIRTY);   /* s stays allocated: chunk not empty */
    ok = true;
  } else if (n == s->npages) {
    ok = true;
  } else {
    /* The free pages to the right may be several spans (in different
     * page states): enough of them in a row, and s grows over them. */
    uint32_t need = n - s->npages, have = 0;
    unsigned end = s->first + s->npages;
    for (unsigned p = end; have < need && p < xa_chunk_end_page;) {
      struct xa_span *rs = xa_chunk_span(c, p);
      if (rs->state != XA_SPAN_FREE) break;
      have += rs->npages;
      p += rs->npages;
    }
    if (have >= need) {
      for (uint32_t took = 0; took < need;) {
        unsigned p = end + took;
        struct xa_span *rs = xa_chunk_span(c, p);
        uint32_t len = rs->npages, use = len < need - took ? len : need - took;
        free_remove(a, rs);
        taken_fresh(a, rs, use, len > use ? free_make(a, c, p + use, len - use, rs->dirty) : NULL);
        rs->npages = 0;
        took += use;
      }
      s->npages = n;
      xa_chunk_mark_span(c, s);
      large_change(a, (int64_t)need << xa_os_page_shift);
      ok = true;
    }
  }
  arena_unlock(a);
  return ok;
}

/* ---- purging --------------------------------------------------------- */

/* Free span s leaves the bins for madvise: state PURGING (neighbours
 * being freed do not merge into it, free() does not accept it), noted in
 * flight at f, and the lock dropped.  purge_end takes the lock back. */
static void purge_begin(struct xa_arena *a, struct xa_span *s, struct xa_inflight *f) {
  free_remove(a, s);
  s->state = XA_SPAN_PURGING;
  xa_chunk_mark_span(xa_span_chunk(s), s);
  inflight_add(a, f, s);
  arena_unlock(a);
}

static void purge_end(struct xa_arena *a, struct xa_inflight *f) {
  arena_lock(a);
  inflight_remove(a, f);
}

/* Is s's chunk wholly free beyond the spares (deleted whole, not purged
 * span by span)? */
static bool chunk_goes_whole(const struct xa_arena *a, const struct xa_span *s) {
  return xa_span_chunk(s)->free_pages == usable_pages() && a->nspare > XA_SPARE_CHUNKS;
}

/* Free span s (binned, of list l), to be purged for `due` pages: if it is
 * longer than due + XA_PURGE_MIN_PAGES, its first pages, in whole
 * XA_PURGE_MIN_PAGES, become a free span of their own, returned; the
 * rest stays free, at the head (oldest) of l.  Else s. */
static struct xa_span *purge_cut(struct xa_arena *a, struct xa_lru *l, struct xa_span *s, size_t due) {
  if (s->npages <= due + XA_PURGE_MIN_PAGES || chunk_goes_whole(a, s)) return s;
  struct xa_chunk *c = xa_span_chunk(s);
  uint32_t cut = (uint32_t)((due + XA_PURGE_MIN_PAGES - 1) / XA_PURGE_MIN_PAGES * XA_PURGE_MIN_PAGES);
  /* A cut inside a half that asks for a huge page would end the ask
   * (chunk.h): where s holds all of that half, it goes whole. */
  unsigned half = xa_chunk_npages / 2;
  if (__atomic_load_n(&c->thp, __ATOMIC_RELAXED) == XA_CHUNK_THP_ASKED && s->first <= half &&
      s->first + s->npages >= xa_chunk_end_page && s->first + cut > half)
    return s;
  unsigned first = s->first;
  uint32_t n = s->npages, unfaulted = s->unfaulted;
  uint8_t st = s->dirty;
  free_remove(a, s);
  struct xa_span *rest = free_make(a, c, first + cut, n - cut, st);
  span_set_unfaulted(rest, unfaulted);
  lru_remove(l, rest);
  lru_push_front(l, rest);
  return free_make(a, c, first, cut, st);
}

/* Chunk c's second half just stopped asking for a huge page (a purge took
 * part of it: xa_chunk_purged, chunk.h), and resident[] says which pages
 * of its span area are resident (asked after the split, with the lock
 * dropped).  The free spans of the half that count as clean may hold
 * resident pages all the same, never used, of the huge page it had, which
 * the split leaves mapped: those spans count as dirty from now on, their
 * other pages unfaulted, so that decay gives them back.  Lock held.  (No
 * call where mincore found none resident, or failed: the half stays.) */
static void half_dirty(struct xa_arena *a, struct xa_chunk *c, const unsigned char *resident) {
  unsigned half = xa_chunk_npages / 2;
  for (unsigned p = xa_chunk_first_page; p < xa_chunk_end_page;) {
    struct xa_span *t = xa_chunk_span(c, p), *f;
    uint32_t r = 0;
    if (p + t->npages > half && t->state == XA_SPAN_FREE && t->dirty == XA_PAGES_CLEAN)
      for (unsigned i = 0; i < t->npages; i++) r += resident[p - xa_chunk_first_page + i] & 1;
    if (r) {
      free_remove(a, t);
      /* merged with dirty neighbours; never the chunk's last free span
       * (the purge's span or slab is not free), so it never goes */
      a->half_dirtied += t->npages;      /* as dirty_pages grows, for xa_arena_purge */
      (void)span_release_into(a, t, XA_PAGES_DIRTY, t->npages - r, &f);
      p = f->first + f->npages;
      continue;
    }
    p += t->npages;
  }
}

/* Free span s, binned: deleted with its chunk if that is wholly free
 * beyond the spares, else purged, with MADV_FREE when lazy (the span
 * becomes muzzy) else MADV_DONTNEED (clean).  Lock held on entry and
 * return; dropped around madvise (purge_begin).  Returns its pages; 0
 * (nothing done) while its chunk is being adopted. */
static size_t purge_free_span(struct xa_arena *a, struct xa_span *s, bool lazy) {
  struct xa_chunk *c = xa_span_chunk(s);
  size_t n = s->npages;
  if (c == a->adopting) return 0;       /* its pages are being copied: later */
  if (chunk_goes_whole(a, s)) {
    /* A decayed wholly free chunk beyond the spares: delete it. */
    a->purged_pages += n;
    a->purge_runs++;
    chunk_unlink_free(a, c);
    c->retire_purge = true;     /* decayed: a source gets it back purged */
    arena_unlock(a);
    xa_chunk_delete(c);
    arena_lock(a);
    return n;
  }
  struct xa_inflight f;
  purge_begin(a, s, &f);
  if (lazy && !c->meshable) xa_os_purge_lazy(xa_span_addr(s), xa_span_bytes(s));
  else xa_mesh_purge(c->meshable, xa_span_addr(s), xa_span_bytes(s));   /* a file's pages: no MADV_FREE */
  unsigned char resident[XA_CHUNK_UNITS];
  bool withdrawn = xa_chunk_purged(c, xa_span_addr(s), xa_span_bytes(s)) &&
                   xa_os_resident_range(xa_chunk_span_area(c), xa_chunk_span_bytes(), resident);
  xa_chunk_purge_slots(c, s->first, s->npages);
  purge_end(a, &f);
  if (withdrawn) half_dirty(a, c, resident);
  a->purged_pages += n;
  a->purge_runs++;
  /* Back into the bins, merged with neighbours in the same state.  A
   * chunk whose free parts were dirty at different times is whole again
   * only now: beyond the spares, delete it. */
  struct xa_chunk *d = span_release(a, s, lazy && !c->meshable ? XA_PAGES_MUZZY : XA_PAGES_CLEAN);
  if (!d) d = spare_or_dead(a, c);
  if (d) { arena_unlock(a); xa_chunk_delete(d); arena_lock(a); }
  return n;
}

/* Purge spans from the head (oldest) of list l until `pages` pages are
 * done (or the list is empty, or the head is younger than min_age); only
 * what is due of a long span (purge_cut). */
static size_t purge_list(struct xa_arena *a, struct xa_lru *l, size_t pages, bool lazy, uint64_t now,
                         uint64_t min_age) {
  size_t done = 0;
  /* the adopting chunk's spans wait (purge_free_span), uncut: a cut
   * piece left unpurged would stay beside its rest unmerged */
  while (done < pages && l->head && aged(l->head, now, min_age) && xa_span_chunk(l->head) != a->adopting)
    done += purge_free_span(a, purge_cut(a, l, l->head, pages - done), lazy);
  return done;
}

/* Dirty spans, oldest first, per the purge option.  A span larger than
 * what is due is split: the decay curve asks for a little of the newest
 * pages each pass, which must not cost a whole chunk's free span. */
static size_t purge_oldest(struct xa_arena *a, size_t pages) {
  return purge_list(a, &a->dirty_spans, pages, xa_opt.purge == xa_opt_purge_free, 0, 0);
}

/* Clean free span f (binned) leaves the bins while the header pages that
 * hold only its interior slots, which no one reads, go back (the lock
 * dropped around madvise); then it is binned again, merged.  Returns its
 * chunk if that is wholly free beyond the spares now (unlinked: the caller
 * deletes it after unlocking).  So a chunk emptied by the purger keeps only
 * its first header pages resident, as one purged from the dirty list does. */
static struct xa_chunk *span_purge_slots(struct xa_arena *a, struct xa_span *f) {
  struct xa_chunk *c = xa_span_chunk(f), *d = spare_or_dead(a, c);
  if (d) return d;                  /* deleted whole: no header purge first */
  if (xa_chunk_slots_purgeable(c, f->first, f->npages)) {
    struct xa_inflight fl;
    purge_begin(a, f, &fl);
    xa_chunk_purge_slots(c, f->first, f->npages);
    purge_end(a, &fl);
    if ((d = span_release(a, f, XA_PAGES_CLEAN))) return d;
  }
  return spare_or_dead(a, c);
}

/* Runs of whole free pages in slab s: [run[i].first, +run[i].n) pages. */
struct page_run { uint32_t first, n; };
static unsigned slab_free_runs(const struct xa_span *s, struct page_run *run) {
  const struct xa_class_info *ci = &xa_classes[s->cls];
  size_t page = xa_os_page;
  unsigned nrun = 0;
  for (uint32_t j = 0; j < s->npages; j++) {
    size_t lo = j * page / ci->size, hi = ((j + 1) * page - 1) / ci->size;
    if (hi >= ci->nobjs) hi = ci->nobjs - 1;
    bool free = true;
    for (size_t i = lo; i <= hi && free && lo < ci->nobjs; i++) free = (slab_free_word(s, (unsigned)(i >> 6)) >> (i & 63)) & 1;
    if (!free) continue;
    if (nrun && run[nrun - 1].first + run[nrun - 1].n == j) run[nrun - 1].n++;
    else run[nrun++] = (struct page_run){j, 1};
  }
  return nrun;
}

static size_t slab_run_pages(const struct page_run *run, unsigned nrun) {
  size_t pages = 0;
  for (unsigned i = 0; i < nrun; i++) pages += run[i].n;
  return pages;
}

/* Slabs grow_purge looks at, from the oldest, for one at most 1/8 full. */
#define GROW_LOOK 64

/* The next slab purge_slabs takes: the oldest on the dirty list, if it
 * has been there min_age ns at now; for grow_purge (sparse), the oldest
 * of the first GROW_LOOK that is at most 1/8 full.  NULL if none. */
static struct xa_span *slab_to_purge(struct xa_arena *a, uint64_t now, uint64_t min_age, bool sparse) {
  struct xa_span *s = a->dirty_slabs.head;
  if (!sparse) return s && aged(s, now, min_age) ? s : NULL;
  for (unsigned looked = 0; s && looked < GROW_LOOK; s = s->lru_next, looked++)
    if ((uint64_t)s->nfree * 8 >= (uint64_t)xa_classes[s->cls].nobjs * 7) return s;
  return NULL;
}

/* Free pages of slabs on the dirty list (slab_to_purge): at least
 * max_pages of them if there are as many (whole slabs' runs).  Returns
 * the bytes purged. */
static size_t purge_slabs(struct xa_arena *a, uint64_t now, uint64_t min_age, size_t max_pages, bool sparse) {
  size_t pages = 0;
  struct xa_chunk *dead = NULL;
  struct page_run run[64];
  struct xa_span *s;
  arena_lock(a);
  while (pages < max_pages && (s = slab_to_purge(a, now, min_age, sparse))) {
    if (xa_span_chunk(s) == a->adopting) break;      /* being copied: later */
    lru_remove(&a->dirty_slabs, s);
    s->dirty = 0;
    unsigned nrun = slab_free_runs(s, run);
    if (!nrun) continue;
    /* Out of the bin while the lock is dropped: no refill can hand out an
     * object on a page being purged; frees only set bits. */
    struct xa_bin *bin = &a->bins[s->cls];
    if (s->nfree) list_remove(&bin->nonfull, s);
    if (s->nfree == xa_classes[s->cls].nobjs) bin->nempty--;
    s->purging = 1;
    struct xa_chunk *c = xa_span_chunk(s);
    bool withdrawn = false;
    struct xa_inflight f;
    inflight_add(a, &f, s);
    arena_unlock(a);
    char *base = xa_span_addr(s);
    for (unsigned i = 0; i < nrun; i++) {
      char *p = base + ((size_t)run[i].first << xa_os_page_shift);
      size_t len = (size_t)run[i].n << xa_os_page_shift;
      xa_mesh_purge(c->meshable, p, len);
      withdrawn |= xa_chunk_purged(c, p, len);
      pages += run[i].n;
    }
    unsigned char resident[XA_CHUNK_UNITS];
    withdrawn = withdrawn && xa_os_resident_range(xa_chunk_span_area(c), xa_chunk_span_bytes(), resident);
    arena_lock(a);
    inflight_remove(a, &f);
    if (withdrawn) half_dirty(a, c, resident);
    s->purging = 0;
    a->purge_runs += nrun;
    if (s->nfree == xa_classes[s->cls].nobjs && !s->aliases) {
      /* Empty and decayed: its pages go back to the free spans (the bin's
       * last slab too: kept, it would pin its chunk and the chunk's
       * header); clean if the purge covered the whole slab (it was empty
       * then, and nothing is carved from it off the bin). */
      bool whole = nrun == 1 && run[0].n == s->npages;
      list_push(&bin->nonfull, s);
      struct xa_span *f = slab_release(a, s, whole ? XA_PAGES_CLEAN : XA_PAGES_MUZZY, &dead);
      struct xa_chunk *d = !f ? NULL : f->dirty == XA_PAGES_CLEAN ? span_purge_slots(a, f)
                                                               : spare_or_dead(a, xa_span_chunk(f));
      if (d) { d->next = dead; dead = d; }
    } else if (s->nfree) {
      list_push(&bin->nonfull, s);
      if (s->nfree == xa_classes[s->cls].nobjs) bin->nempty++;
      /* Its purged pages come back as it is refilled: counted then. */
      size_t p = s->purged + slab_run_pages(run, nrun);
      s->purged = (uint8_t)(p < s->npages ? p : s->npages);
    }
  }
  a->purged_pages += pages;
  arena_unlock(a);
  chunks_delete(dead);
  return pages << xa_os_page_shift;
}

size_t xa_arena_purge_slabs(struct xa_arena *a, uint64_t now, uint64_t min_age) {
  return purge_slabs(a, now, min_age, SIZE_MAX, false);
}

/* An arena that takes fresh pages while slabs of other sizes hold whole
 * free pages: a program whose objects moved on to another size (a phase
 * of its own size, a few objects of the last one surviving) leaves the
 * last size's slabs with a survivor or two each, pages no other size can
 * use, and the new size faults fresh ones in.  Decay would return them
 * only after dirty_decay_ms, when the next phase has grown the heap
 * again.  So once XA_GROW_PURGE_PAGES fresh pages were taken that way,
 * the taker purges as many free pages of the oldest such slabs that are
 * at most 1/8 full, and the resident set grows less (bench/frag's peak:
 * 604 -> 589 MB).  Slabs fuller than that are left to decay: they are
 * more likely in use, and purging slabs of every fill (604 -> 575 MB on
 * frag) left rptest's two threads with slabs off their bins while they
 * were purged, so they carved new ones: its peak RSS had a median of
 * 22.4 MB in 14 runs, against 16-19 without grow_purge and 13.8 now.
 * Counting every span taken, dirty ones
 * too, purged more (bench/oscillate peaked 2.5% lower) but made the
 * program 50-100% slower: the next phase faulted the pages in again.
 * With mesh:true too: meshing waits while the heap grows, so the sparse
 * slabs' free pages would stay resident through the growth that needs
 * them (frag peaked at 661 MB with it off, 578 with it on; meshing's
 * pairs come from the bitmaps, which purging leaves alone).  Lock not
 * held. */
static size_t grow_purged;      /* bytes, not yet told to the decay (atomic) */

static void grow_purge(struct xa_arena *a) {
  if (xa_opt.dirty_decay_ms < 0) return;
  arena_lock(a);
  size_t due = a->grow_pages;
  a->grow_pages = 0;
  arena_unlock(a);
  __atomic_add_fetch(&grow_purged, purge_slabs(a, 0, 0, due, true), __ATOMIC_RELAXED);
}

/* Dirty free spans, shortest first, until `pages` pages are done (or none
 * is left).  Whole spans: cutting a long one to what is due (purge_cut)
 * left its rest as the next shortest span, purged piece by piece
 * (oscillate: 100-108k faults against 78-91k, no lower peak).  Lock
 * held; dropped around each madvise. */
static size_t purge_shortest(struct xa_arena *a, size_t pages) {
  size_t done = 0;
  bool lazy = xa_opt.purge == xa_opt_purge_free;
  while (done < pages) {
    uint64_t m0 = a->free_nonempty[1][0], m1 = a->free_nonempty[1][1];
    if (!m0 && !m1) break;
    unsigned b = m0 ? (unsigned)__builtin_ctzl(m0) : 64 + (unsigned)__builtin_ctzl(m1);
    size_t n = purge_free_span(a, a->free_spans[1][b], lazy);
    if (!n) break;
    done += n;
  }
  return done;
}

/* Fresh pages taken over the peak budget (taken_fresh): as many dirty
 * pages go back, so that the resident set does not grow; the shortest
 * spans first, which the fewest requests fit (oscillate: the oldest
 * first peaked 1-2 MB lower, but ran twice the extra time, with 40% more
 * faults).  Counted with grow_purge's pages: the decay's regret weighs
 * the faults that follow against them. */
static uint64_t peak_purged;    /* bytes, ever (atomic): stats.peak_purged */

static void peak_purge(struct xa_arena *a) {
  if (xa_opt.dirty_decay_ms < 0) return;
  arena_lock(a);
  size_t due = a->over_pages;
  a->over_pages = 0;
  size_t pages = purge_shortest(a, due);
  xa_decay_settle(&a->decay, a->dirty_pages);
  arena_unlock(a);
  __atomic_add_fetch(&grow_purged, pages << xa_os_page_shift, __ATOMIC_RELAXED);
  __atomic_add_fetch(&peak_purged, (uint64_t)pages << xa_os_page_shift, __ATOMIC_RELAXED);
}

uint64_t xa_arena_peak_purged(void) { return __atomic_load_n(&peak_purged, __ATOMIC_RELAXED); }

size_t xa_arena_dirty_bytes(void) { return others_dirty_pages(NULL) << xa_os_page_shift; }

size_t xa_arena_budget_bytes(void) { return peak_budget_pages() << xa_os_page_shift; }

size_t xa_arena_purge_dirty(size_t bytes) {
  size_t want = (bytes + xa_os_page - 1) >> xa_os_page_shift, done = 0;
  if (xa_opt.dirty_decay_ms < 0) return 0;
  for (unsigned i = 0, n = xa_arena_count(); i < n && done < want; i++) {
    struct xa_arena *a = xa_arenas[i];
    if (!__atomic_load_n(&a->dirty_pages, __ATOMIC_RELAXED)) continue;
    arena_lock(a);
    size_t got = purge_shortest(a, want - done);
    /* these count against what the arena's own peak budget owes too */
    a->over_pages = a->over_pages > got ? a->over_pages - got : 0;
    xa_decay_settle(&a->decay, a->dirty_pages);
    arena_unlock(a);
    done += got;
  }
  __atomic_add_fetch(&grow_purged, done << xa_os_page_shift, __ATOMIC_RELAXED);
  __atomic_add_fetch(&peak_purged, (uint64_t)done << xa_os_page_shift, __ATOMIC_RELAXED);
  return done << xa_os_page_shift;
}

size_t xa_arena_purge(struct xa_arena *a) {
  /* Slabs first: emptied ones become free spans, purged next; everything
   * ends clean (MADV_DONTNEED), muzzy spans included. */
  size_t bytes = xa_arena_purge_slabs(a, 0, 0);
  arena_lock(a);
  size_t turned = a->half_dirtied;
  size_t pages = purge_list(a, &a->dirty_spans, a->dirty_pages, false, 0, 0);
  pages += purge_list(a, &a->muzzy_spans, a->muzzy_pages, false, 0, 0);
  /* and what purges that ended a half's huge-page ask turned dirty
   * meanwhile (half_dirty; at most once a chunk) */
  if (a->half_dirtied != turned) pages += purge_list(a, &a->dirty_spans, a->half_dirtied - turned, false, 0, 0);
  xa_decay_settle(&a->decay, a->dirty_pages);
  arena_unlock(a);
  return bytes + (pages << xa_os_page_shift);
}

/* How long muzzy spans wait before MADV_DONTNEED: muzzy_decay_ms after
 * MADV_FREE (purge:free); with purge:dontneed the only muzzy spans are
 * the rare slabs that emptied while the purger worked on them (and spans
 * a fork child finds in the middle of a purge), whose other pages may be
 * resident and decay as dirty pages do. */
static int64_t muzzy_ms(void) {
  return xa_opt.purge == xa_opt_purge_free ? xa_opt.muzzy_decay_ms : xa_opt.dirty_decay_ms;
}

/* Spare chunks save a program that frees and allocates chunks' worth
 * in turn a chunk's mapping (or its take from the source) each time; purged, they hold only their
 * headers' first pages and their part of the page map.  Once none has
 * been taken for half the decay time, they all go back (an idle program
 * keeps no chunk it does not use). */
static size_t spares_decay(struct xa_arena *a, uint64_t now) {
  if (!__atomic_load_n(&a->nspare, __ATOMIC_RELAXED) && !__atomic_load_n(&a->spare_watch.since, __ATOMIC_RELAXED))
    return 0;                        /* racy peek: no lock when there is nothing to watch */
  arena_lock(a);
  bool due = false;
  if (!a->nspare || xa_opt.dirty_decay_ms < 0) xa_idle_reset(&a->spare_watch);
  else due = xa_idle_due(&a->spare_watch, a->spare_takes, now, (uint64_t)xa_decay_ms_now() * 500000u);
  arena_unlock(a);
  return due ? release_spares(a, SIZE_MAX, false, true) : 0;
}

size_t xa_arena_decay(struct xa_arena *a, uint64_t now) {
  size_t bytes = 0;
  if (a->dirty_pages) {             /* racy peek: skip the lock when clean */
    arena_lock(a);
    int64_t ms = xa_decay_ms_now();
    if (unlikely(a->decay.decay_ms != ms))   /* adapted (purge.h), or set by xalloc_ctl */
      xa_decay_set_ms(&a->decay, ms, now);
    size_t limit = xa_decay_limit(&a->decay, now, a->dirty_pages);
    size_t pages = a->dirty_pages > limit ? purge_oldest(a, a->dirty_pages - limit) : 0;
    xa_decay_settle(&a->decay, a->dirty_pages);
    arena_unlock(a);
    bytes = pages << xa_os_page_shift;
  }
  if (a->dirty_slabs.head && xa_opt.dirty_decay_ms >= 0)
    bytes += xa_arena_purge_slabs(a, now, (uint64_t)xa_decay_ms_now() * 1000000u);
  spares_decay(a, now);      /* not decay's purge: its pages were counted when purged */
  if (a->muzzy_pages && muzzy_ms() >= 0) {     /* second stage */
    arena_lock(a);
    size_t pages = purge_list(a, &a->muzzy_spans, a->muzzy_pages, false, now,
                              (uint64_t)muzzy_ms() * 1000000u);
    arena_unlock(a);
    bytes += pages << xa_os_page_shift;
  }
  return bytes;
}

size_t xa_arena_purge_all(void) {
  size_t purged = 0;
  for (unsigned i = 0; i < xa_narenas; i++) purged += xa_arena_purge(xa_arenas[i]);
  return purged;
}

size_t xa_arena_decay_all(uint64_t now) {
  /* grow_purge's pages count as the pass's: when they are faulted in
   * again, the decay's regret (purge.c) weighs them against their own
   * purge, not against decay's. */
  size_t purged = __atomic_exchange_n(&grow_purged, 0, __ATOMIC_RELAXED);
  for (unsigned i = 0; i < xa_narenas; i++) purged += xa_arena_decay(xa_arenas[i], now);
  return purged;
}

size_t xa_arena_decay_pending(void) {
  size_t pages = 0;
  for (unsigned i = 0; i < xa_narenas; i++) {
    struct xa_arena *a = xa_arenas[i];
    pages += __atomic_load_n(&a->dirty_pages, __ATOMIC_RELAXED);
    if (muzzy_ms() >= 0) pages += __atomic_load_n(&a->muzzy_pages, __ATOMIC_RELAXED);
    pages += __atomic_load_n(&a->dirty_slabs.head, __ATOMIC_RELAXED) != NULL;
    pages += __atomic_load_n(&a->nspare, __ATOMIC_RELAXED) != 0;     /* spares_decay */
  }
  return pages;
}

/* ---- meshing (mesh.h) ------------------------------------------------- */

/* Bounds on a pass: slabs of a class looked at, meshes per class, and the
 * slabs one physical copy may serve (each alias is a mapping of its own:
 * the process's map count bounds them all).  63 aliases: slabs 1% full
 * then stack until the owner is half full (mesh_sparse), where 15 held
 * them at 16% full; walking an owner's aliases (slab_free_word, on its
 * refills) measured no slower. */
#define MESH_CANDIDATES 32
#define MESH_OWNERS     16
#define MESH_WALK       256
#define MESH_WINDOWS    8
#define MESH_PER_CLASS  64
#define MESH_MAX_ALIASES 63
#define MESH_MAX_WORDS  64          /* bitmap words: 4096 objects */

/* Slab s, taken out of its bin for a mesh step, back in (lock held). */
static void slab_rebin(struct xa_arena *a, struct xa_span *s, struct xa_chunk **dead, uint64_t now) {
  s->purging = 0;
  if (!s->nfree) return;
  list_push(&a->bins[s->cls].nonfull, s);
  slab_settle(a, s, dead, now);
}

/* Out of its bin and off the dirty list for a mesh step (lock held): no
 * refill hands out its slots and no decay purges its pages meanwhile;
 * frees only set bits and count (slab_account). */
static void slab_unbin(struct xa_arena *a, struct xa_span *s) {
  struct xa_bin *bin = &a->bins[s->cls];
  if (s->nfree) list_remove(&bin->nonfull, s);
  if (s->nfree == xa_classes[s->cls].nobjs) bin->nempty--;
  if (s->dirty) lru_remove(&a->dirty_slabs, s);
  s->dirty = 0;
  s->purging = 1;
}

/* Do the live objects of slab `from` (no aliases of its own) and of slab
 * `to` and its aliases lie at different offsets? */
static bool mesh_disjoint(const struct xa_span *from, const struct xa_span *to, unsigned nobjs) {
  unsigned nw = (nobjs + 63) / 64;
  for (unsigned w = 0; w < nw; w++) {
    uint64_t valid = w + 1 < nw || nobjs % 64 == 0 ? ~(uint64_t)0 : ((uint64_t)1 << (nobjs % 64)) - 1;
    if (~from->bitmap[w] & ~slab_free_word(to, w) & valid) return false;
  }
  return true;
}

static unsigned alias_count(const struct xa_span *s) {
  unsigned n = 0;
  for (const struct xa_span *m = s->aliases; m; m = m->alias_next) n++;
  return n;
}

/* ---- adoption (mesh.h) ----------------------------------------------
 * Chunks start private where the kernel allows it; the first mesh that
 * picks a slab of one moves the chunk into the file.  A chunk holding a
 * large block is left private: the program may have changed the access
 * of the block's pages (a guard page, a write barrier) or handed them to
 * the kernel for I/O (O_DIRECT, io_uring fixed buffers), and the file's
 * mapping would undo the one and lose the other.  (Reading the access
 * from /proc/self/maps and setting it back after, as fork does, raced
 * with the program: a page made read-write, freed and carved again during
 * the move went read-only.)  A chunk refused is not picked again for
 * ADOPT_WAIT ticks of the meshing clock (about a second each). */
#define ADOPT_WAIT 4
#define ADOPT_TRIES 100       /* 100 us waits for purges running in the chunk */
static uint32_t mesh_clock;   /* xa_os_now() >> 30 at the pass's start */
static bool mesh_adopts;      /* xa_mesh_can_adopt() at the pass's start */

static void mesh_pass_start(void) {
  xa_mesh_pass_begin();
  mesh_clock = (uint32_t)(xa_os_now() >> 30);
  mesh_adopts = xa_mesh_can_adopt();
}

static bool mesh_chunk_ok(const struct xa_chunk *c) {
  return c->meshable || (mesh_adopts && c->adopt_wait <= mesh_clock);
}

static bool purge_running_in(const struct xa_arena *a, const struct xa_chunk *c) {
  for (const struct xa_inflight *f = a->inflight; f; f = f->next)
    if (xa_span_chunk(f->span) == c) return true;
  return false;
}

/* Does chunk c hold a large block?  Lock held. */
static bool chunk_has_large(struct xa_chunk *c) {
  for (unsigned p = xa_chunk_first_page; p < xa_chunk_end_page;) {
    const struct xa_span *s = xa_chunk_span(c, p);
    if (s->state == XA_SPAN_LARGE) return true;
    p += s->npages;
  }
  return false;
}

/* Chunk c's free spans leave the bins while it is adopted: state
 * PURGING, so that none is carved (its pages written before the copy
 * reaches them but skipped by it) or merged; skip[i] says which pages of
 * the span area are theirs.  Lock held. */
static void adopt_take_free(struct xa_arena *a, struct xa_chunk *c, uint8_t *skip) {
  for (unsigned p = xa_chunk_first_page; p < xa_chunk_end_page;) {
    struct xa_span *s = xa_chunk_span(c, p);
    bool free = s->state == XA_SPAN_FREE;
    memset(skip + (p - xa_chunk_first_page), free, s->npages);
    p += s->npages;
    if (!free) continue;
    free_remove(a, s);
    s->state = XA_SPAN_PURGING;
    xa_chunk_mark_span(c, s);
  }
}

/* ... and go back after it: clean if the chunk went into the file (their
 * pages are holes of it), else as they were.  Chunks to delete onto
 * *dead.  Lock held. */
static void adopt_put_free(struct xa_arena *a, struct xa_chunk *c, const uint8_t *skip, bool adopted,
                           struct xa_chunk **dead) {
  struct xa_span *taken[XA_CHUNK_UNITS];
  unsigned n = 0;
  for (unsigned p = xa_chunk_first_page; p < xa_chunk_end_page;) {
    struct xa_span *s = xa_chunk_span(c, p);
    if (skip[p - xa_chunk_first_page] && s->state == XA_SPAN_PURGING) taken[n++] = s;
    p += s->npages;
  }
  for (unsigned i = 0; i < n; i++) {
    struct xa_chunk *d = span_release(a, taken[i], adopted ? XA_PAGES_CLEAN : taken[i]->dirty);
    if (d) { d->next = *dead; *dead = d; }
  }
  struct xa_chunk *d = spare_or_dead(a, c);
  if (d) { d->next = *dead; *dead = d; }
}

/* The pieces of chunk c's span area from *done on into the file, skipping
 * the pages skip[] marks; *done: the bytes in it when it returns (false:
 * a piece was refused).  No lock held: a piece's writers wait while it
 * moves, and one of them may hold the arena lock. */
static bool adopt_pieces(struct xa_chunk *c, const uint8_t *skip, size_t *done) {
  char *area = xa_chunk_span_area(c);
  size_t bytes = xa_chunk_span_bytes(), piece = xa_mesh_adopt_piece_bytes();
  while (*done < bytes) {
    size_t n = bytes - *done < piece ? bytes - *done : piece;
    if (!xa_mesh_adopt_hold(area + *done, n) ||
        !xa_mesh_adopt_piece(area + *done, n, skip + (*done >> xa_os_page_shift)))
      return false;
    *done += n;
  }
  return true;
}

/* Chunk c of arena a in the file, adopted now if need be?  Step lock
 * held, arena lock not.  While the pages are copied no purge starts in
 * the chunk (purge_free_span, purge_slabs): one that dropped pages the
 * copy had taken would leave them in the file, and its span would be
 * called clean (zero) while it is not.  Its free spans are out of the
 * bins meanwhile (adopt_take_free). */
static XA_COLD bool adopt(struct xa_arena *a, struct xa_chunk *c) {
  if (c->meshable) return true;
  char *area = xa_chunk_span_area(c);
  size_t done = 0;
  uint8_t skip[XA_CHUNK_UNITS];
  uint32_t gen;
  struct xa_chunk *dead = NULL;
  arena_lock(a);
  a->adopting = c;
  unsigned tries = 0;
  while (purge_running_in(a, c) && tries++ < ADOPT_TRIES) {
    arena_unlock(a);
    xa_os_sleep(100000);
    arena_lock(a);
  }
  bool ok = !purge_running_in(a, c) && !chunk_has_large(c);
  if (ok) adopt_take_free(a, c, skip);
  arena_unlock(a);
  bool taken = ok, began = ok && xa_mesh_adopt_begin();
  ok = began && adopt_pieces(c, skip, &done);
  /* Half in the file would not do (fork maps a chunk's pages from the
   * file, or none of them): back to private, or, if even that is
   * refused, on into the file. */
  if (began && !ok && done && !xa_mesh_adopt_undo(area, done)) {
    if (!adopt_pieces(c, skip, &done))
      xa_error_fatal("mesh: a chunk could be moved neither into meshing's file nor back out of it");
    ok = true;
  }
  if (began) xa_mesh_adopt_end(ok, &gen);
  arena_lock(a);
  a->adopting = NULL;
  if (taken) adopt_put_free(a, c, skip, ok, &dead);
  if (ok) {
    c->meshable = 1;
    c->mesh_gen = gen;
  } else {
    c->adopt_wait = mesh_clock + ADOPT_WAIT;
  }
  arena_unlock(a);
  chunks_delete(dead);
  return ok;
}

/* A listed slab of class cls holding objects but at most half full, in a
 * file-backed chunk or one that can be adopted: one that meshing may move
 * or move another onto. */
static bool mesh_sparse(const struct xa_span *s, unsigned cls) {
  const struct xa_class_info *ci = &xa_classes[cls];
  return s->state == XA_SPAN_SLAB && s->cls == cls && !s->purging && s->nfree && s->nfree < ci->nobjs &&
         s->nfree * 2 >= ci->nobjs && mesh_chunk_ok(xa_span_chunk(s));
}

/* Can slab t take slab s's objects (sparse both, room for an alias)? */
static bool mesh_target_ok(const struct xa_span *t, const struct xa_span *s) {
  return t != s && mesh_sparse(t, s->cls) && alias_count(t) < MESH_MAX_ALIASES;
}

/* The span right after (dir 1) or before (dir -1) s in its chunk, or
 * NULL at the chunk's end. */
static struct xa_span *span_beside(const struct xa_span *s, int dir) {
  struct xa_chunk *c = xa_span_chunk(s);
  if (dir > 0) return s->first + s->npages < xa_chunk_end_page ? xa_chunk_span(c, s->first + s->npages) : NULL;
  return s->first > xa_chunk_first_page ? xa_chunk_span(c, xa_chunk_page_info(c, s->first - 1)->first) : NULL;
}

/* The slab whose pages, taken by s, would continue a neighbour's mapping:
 * if the slab just before s is meshed onto owner o, the slab right after
 * o (and the other way round).  Its alias then extends that mapping
 * instead of adding one (file offsets and addresses both run on). */
static struct xa_span *mesh_next_to_neighbour(const struct xa_span *s) {
  struct xa_chunk *c = xa_span_chunk(s);
  for (int side = 0; side < 2; side++) {
    unsigned p = side ? s->first + s->npages : s->first - 1u;
    if (p < xa_chunk_first_page || p >= xa_chunk_end_page) continue;
    struct xa_span *n = xa_chunk_span(c, xa_chunk_page_info(c, p)->first);
    if (n->state != XA_SPAN_MESHED || n->cls != s->cls) continue;
    struct xa_span *o = n->owner;
    struct xa_chunk *oc = xa_span_chunk(o);
    unsigned q = side ? o->first - s->npages : o->first + o->npages;
    if (side && o->first < xa_chunk_first_page + s->npages) continue;
    if (q < xa_chunk_first_page || q + s->npages > xa_chunk_end_page) continue;
    struct xa_span *t = xa_chunk_span(oc, xa_chunk_page_info(oc, q)->first);
    if (t->first == q && mesh_target_ok(t, s)) return t;
  }
  return NULL;
}

/* A pair of slabs of class cls to mesh: `from` moves onto `to`'s pages.
 * From the first MESH_WALK slabs of the bin, those at most half full in
 * file-backed chunks: up to MESH_CANDIDATES without aliases (the slabs
 * that can move) and MESH_OWNERS that have some (and room for one more).
 * Movers are tried against owners first, then against each other, the
 * emptier of two moving (fewer bytes to copy). */
static bool mesh_find(struct xa_arena *a, unsigned cls, struct xa_span **from, struct xa_span **to) {
  const struct xa_class_info *ci = &xa_classes[cls];
  struct xa_bin *bin = &a->bins[cls];
  struct xa_span *mover[MESH_CANDIDATES], *owner[MESH_OWNERS];
  unsigned nm = 0, no = 0, walked = 0;
  /* Owners from the head of the list, where a slab meshed onto goes
   * back; movers from where the last look stopped (a count of slabs from
   * the head: no pointer that could go stale), so that fruitless windows
   * are not looked at again and again. */
  struct xa_span *s = bin->nonfull;
  for (; s && walked < MESH_WALK && no < MESH_OWNERS; walked++, s = s->next)
    if (s->aliases && mesh_sparse(s, cls) && alias_count(s) < MESH_MAX_ALIASES) owner[no++] = s;
  uint32_t skip = bin->mesh_skip;
  for (s = bin->nonfull; s && skip; s = s->next) skip--;
  if (!s) bin->mesh_skip = 0, s = bin->nonfull;   /* the list got shorter: from the head */
  for (walked = 0; walked < MESH_WALK && nm < MESH_CANDIDATES; walked++, s = s->next) {
    if (!s) {                                     /* wrap to the head */
      bin->mesh_skip = 0;
      if (!(s = bin->nonfull)) break;
    }
    if (!s->aliases && mesh_sparse(s, cls)) mover[nm++] = s;
  }
  bin->mesh_skip += walked;
  for (unsigned i = 0; i < nm; i++) {
    struct xa_span *t = mesh_next_to_neighbour(mover[i]);
    if (t && mesh_disjoint(mover[i], t, ci->nobjs)) {
      *from = mover[i];
      *to = t;
      return true;
    }
  }
  for (unsigned i = 0; i < nm; i++)
    for (unsigned j = 0; j < no; j++)
      if (mesh_disjoint(mover[i], owner[j], ci->nobjs)) {
        *from = mover[i];
        *to = owner[j];
        return true;
      }
  /* Two movers half the window apart first: the bin lists slabs roughly
   * in address order (as they first got a free slot), and a pair of
   * neighbours would leave no room for a run (mesh_run_next). */
  for (unsigned i = 0; i < nm; i++)
    for (unsigned k = 0; k + 1 < nm; k++) {
      unsigned j = (i + nm / 2 + k) % nm;
      if (j == i) continue;
      struct xa_span *f = mover[i], *t = mover[j];
      if (f->nfree < t->nfree) { f = mover[j]; t = mover[i]; }
      if (mesh_disjoint(f, t, ci->nobjs)) {
        *from = f;
        *to = t;
        return true;
      }
    }
  return false;
}

/* A run of meshes: the last pair meshed (moved, target), NULL if none. */
struct mesh_run { struct xa_span *from, *to; };

/* The pair beside run's last pair, on either side, if it can mesh. */
static bool mesh_run_next(const struct mesh_run *run, unsigned cls, struct xa_span **from, struct xa_span **to) {
  if (!run->from) return false;
  for (int dir = -1; dir <= 1; dir += 2) {
    struct xa_span *f = span_beside(run->from, dir), *t = span_beside(run->to, dir);
    if (f && t && mesh_sparse(f, cls) && !f->aliases && mesh_target_ok(t, f) &&
        mesh_disjoint(f, t, xa_classes[cls].nobjs)) {
      *from = f;
      *to = t;
      return true;
    }
  }
  return false;
}

/* One mesh of class cls in arena a; false if no pair was found or a
 * system call refused.  Bytes of physical pages freed added to *bytes.
 * Slabs that lie one after the other are meshed onto slabs that do too
 * where they can (*run), so that their aliases make one mapping: the map
 * count, not the memory, is what bounds meshing on a large sparse heap. */
static XA_COLD bool mesh_one(struct xa_arena *a, unsigned cls, size_t *bytes, struct mesh_run *run) {
  const struct xa_class_info *ci = &xa_classes[cls];
  unsigned nw = (ci->nobjs + 63) / 64;
  uint64_t live[MESH_MAX_WORDS];
  struct xa_span *from, *to;
  struct xa_chunk *dead = NULL;
  if (!xa_mesh_room()) return false;
  xa_mesh_step_lock();
  arena_lock(a);
  /* The run goes on if the slabs beside the last pair can pair too: the
   * new alias then continues the last one's mapping. */
  bool go_on = mesh_run_next(run, cls, &from, &to);
  run->from = run->to = NULL;
  if (!go_on && !mesh_find(a, cls, &from, &to)) {
    arena_unlock(a);
    xa_mesh_step_unlock();
    return false;
  }
  slab_unbin(a, from);
  slab_unbin(a, to);
  /* Live now; frees from here on only make the copy larger than needed. */
  for (unsigned w = 0; w < nw; w++) live[w] = ~from->bitmap[w];
  if (ci->nobjs % 64) live[nw - 1] &= ((uint64_t)1 << (ci->nobjs % 64)) - 1;
  arena_unlock(a);
  size_t freed = 0;
  bool ok = adopt(a, xa_span_chunk(to)) && adopt(a, xa_span_chunk(from)) &&
            xa_mesh_move(xa_span_addr(from), xa_span_addr(to), xa_span_bytes(from), live, ci->nobjs, ci->size,
                         &freed);
  arena_lock(a);
  uint64_t now = xa_os_now();
  if (ok) {
    from->purging = 0;
    from->state = XA_SPAN_MESHED;
    from->owner = to;
    from->alias_next = to->aliases;
    to->aliases = from;
    to->nfree -= ci->nobjs - from->nfree;     /* its live objects are on to's pages now */
    a->bins[cls].nslabs--;
    a->meshed_slabs++;
    xa_peak_add(&a->peak, XA_PEAK_ACTIVE, -(int64_t)xa_span_bytes(from));
    *bytes += freed;
    run->from = from;
    run->to = to;
  } else {
    slab_rebin(a, from, &dead, now);
  }
  slab_rebin(a, to, &dead, now);
  arena_unlock(a);
  xa_mesh_step_unlock();
  chunks_delete(dead);
  return ok;
}

/* Give back their own pages to the aliases of one slab of class cls that
 * have no live object left, and free them; false if there was none. */
static bool unmesh_one(struct xa_arena *a, unsigned cls) {
  const struct xa_class_info *ci = &xa_classes[cls];
  struct xa_chunk *dead = NULL;
  struct xa_span *gone[MESH_MAX_ALIASES];
  bool back[MESH_MAX_ALIASES];
  unsigned n = 0;
  xa_mesh_step_lock();
  arena_lock(a);
  struct xa_span *s = a->bins[cls].nonfull;
  for (unsigned walked = 0; s && !n && walked < MESH_WALK; s = s->next, walked++)
    for (struct xa_span *m = s->aliases; m && n < MESH_MAX_ALIASES; m = m->alias_next)
      if (m->nfree == ci->nobjs) gone[n++] = m;
  if (!n) {
    arena_unlock(a);
    xa_mesh_step_unlock();
    return false;
  }
  s = gone[0]->owner;
  /* Out of the bin, the aliases still linked: nothing is carved from the
   * slab meanwhile, and a stray free of an alias's address finds its bit
   * free and is reported as a double free. */
  slab_unbin(a, s);
  arena_unlock(a);
  for (unsigned i = 0; i < n; i++) back[i] = xa_mesh_restore(xa_span_addr(gone[i]), xa_span_bytes(gone[i]));
  arena_lock(a);
  for (unsigned i = 0; i < n; i++) {
    if (!back[i]) continue;          /* still on s's pages: stays an alias */
    struct xa_span *m = gone[i], **mp = &s->aliases;
    while (*mp != m) mp = &(*mp)->alias_next;
    *mp = m->alias_next;
    m->owner = m->alias_next = NULL;
    a->meshed_slabs--;
    struct xa_chunk *d = span_release(a, m, XA_PAGES_CLEAN);    /* own (zero) pages */
    if (d) { d->next = dead; dead = d; }
  }
  slab_rebin(a, s, &dead, xa_os_now());
  arena_unlock(a);
  xa_mesh_step_unlock();
  chunks_delete(dead);
  bool any = false;
  for (unsigned i = 0; i < n; i++) any |= back[i];
  return any;                        /* all refused: not again this round */
}

/* One round over the classes of arena a: up to MESH_PER_CLASS unmeshes
 * and meshes each, until `deadline`.  Bytes freed added to *bytes; false
 * if the round found nothing to do. */
static XA_COLD bool mesh_round(struct xa_arena *a, uint64_t deadline, size_t *bytes) {
  bool any = false;
  for (unsigned cls = 0; cls < XA_NSMALL && xa_os_now() < deadline; cls++) {
    struct xa_bin *bin = &a->bins[cls];
    if ((xa_classes[cls].nobjs + 63) / 64 > MESH_MAX_WORDS) continue;
    for (unsigned i = 0; i < MESH_PER_CLASS && unmesh_one(a, cls); i++) any = true;
    /* Worth a look (racy reads, a hint): two slabs or more, on average
     * at most half full; and not a class whose last looks found nothing,
     * which waits 1, 2, 4 ... up to 32 passes. */
    uint64_t slabs = __atomic_load_n(&bin->nslabs, __ATOMIC_RELAXED);
    uint64_t objs = __atomic_load_n(&bin->curobjs, __ATOMIC_RELAXED);
    if (slabs < 2 || objs * 2 > slabs * xa_classes[cls].nobjs) continue;
    if (bin->mesh_wait) {
      bin->mesh_wait--;
      if (bin->mesh_backoff < 32) xa_mesh_later = true;    /* look again soon */
      continue;
    }
    /* Each fruitless look moves the window on (mesh_find's cursor): a
     * class is given up for this pass after MESH_WINDOWS of them. */
    unsigned done = 0, windows = 0;
    struct mesh_run run = {NULL, NULL};
    while (done < MESH_PER_CLASS && windows < MESH_WINDOWS) {
      if (mesh_one(a, cls, bytes, &run)) done++;
      else windows++;
    }
    if (done) {
      any = true;
      bin->mesh_backoff = 0;
    } else {
      bin->mesh_wait = bin->mesh_backoff;
      bin->mesh_backoff = bin->mesh_backoff ? (uint8_t)(bin->mesh_backoff * 2 > 32 ? 32 : bin->mesh_backoff * 2) : 1;
    }
  }
  return any;
}

bool xa_mesh_later;

size_t xa_arena_mesh(struct xa_arena *a, uint64_t budget_ns) {
  if (!xa_mesh_on) return 0;
  mesh_pass_start();
  uint64_t deadline = xa_os_now() + budget_ns;
  size_t bytes = 0;
  while (mesh_round(a, deadline, &bytes) && xa_os_now() < deadline) {}
  return bytes;
}

/* One meshing pass at a time (the purger's, xalloc_ctl's): a pass keeps
 * hints (struct mesh_run, the movers' windows) that only it may change.
 * A fork child starts with none running (xa_arena_postfork_child), even
 * where the fork came while another thread's pass waited for the step
 * lock. */
static int mesh_busy;

size_t xa_arena_mesh_all(uint64_t budget_ns, bool wait) {
  /* A caller that waits (xalloc_ctl) sleeps while another pass runs,
   * within its budget: returning 0 at once would say "nothing to mesh"
   * while the purger's pass, at its own pace, is only part way. */
  if (!xa_mesh_on) return 0;
  uint64_t deadline = xa_os_now() + budget_ns;
  while (__atomic_exchange_n(&mesh_busy, 1, __ATOMIC_ACQUIRE)) {
    if (!wait || xa_os_now() >= deadline) return 0;
    xa_os_sleep(1000000);
  }
  mesh_pass_start();
  size_t bytes = 0;
  for (bool any = true; any && xa_os_now() < deadline;) {
    any = false;
    for (unsigned i = 0; i < xa_narenas; i++) any |= mesh_round(xa_arenas[i], deadline, &bytes);
  }
  __atomic_store_n(&mesh_busy, 0, __ATOMIC_RELEASE);
  return bytes;
}

/* ---- statistics -------------------------------------------------------- */

/* PG_MESHED: an alias's pages are its owner's, counted there. */
enum { PG_HEADER, PG_LARGE, PG_DIRTY, PG_MUZZY, PG_CLEAN, PG_PURGING, PG_MESHED, PG_SLAB };   /* PG_SLAB + class */

/* What each page of chunk c holds, into kind[0..xa_chunk_npages).  Lock held. */
static void chunk_picture(struct xa_chunk *c, uint8_t *kind) {
  memset(kind, PG_HEADER, xa_chunk_npages);     /* header and guard pages */
  for (unsigned p = xa_chunk_first_page; p < xa_chunk_end_page;) {
    struct xa_span *s = xa_chunk_span(c, p);
    if (s->npages == 0 || p + s->npages > xa_chunk_end_page) break;
    uint8_t k = s->state == XA_SPAN_SLAB ? (uint8_t)(PG_SLAB + s->cls)
                : s->state == XA_SPAN_LARGE ? PG_LARGE
                : s->state == XA_SPAN_PURGING ? PG_PURGING
                : s->state == XA_SPAN_MESHED ? PG_MESHED
                : s->dirty == XA_PAGES_DIRTY ? PG_DIRTY
                : s->dirty == XA_PAGES_MUZZY ? PG_MUZZY : PG_CLEAN;
    memset(kind + p, k, s->npages);
    p += s->npages;
  }
}

XA_COLD void xa_arena_resident(struct xa_arena *a, struct xa_arena_resident *r) {
  memset(r, 0, sizeof *r);
  size_t per = sizeof(struct xa_chunk *) + xa_chunk_npages, bytes, n;
  uint8_t *buf;
  for (;;) {           /* map room for the picture, then take it under the lock */
    size_t room = __atomic_load_n(&a->mapped, __ATOMIC_RELAXED) / XA_CHUNK_SIZE + 8;
    bytes = XA_ALIGN_UP(room * per + xa_chunk_npages, xa_os_page);
    buf = xa_os_map(bytes, xa_os_page);
    if (!buf) return;
    arena_lock(a);
    n = 0;
    for (struct xa_chunk *c = a->chunks; c; c = c->next) n++;
    if (n <= room) break;
    arena_unlock(a);
    xa_os_unmap(buf, bytes);
  }
  struct xa_chunk **chunks = (struct xa_chunk **)buf;
  uint8_t *kinds = buf + n * sizeof *chunks, *vec = kinds + n * xa_chunk_npages;
  n = 0;
  for (struct xa_chunk *c = a->chunks; c; c = c->next, n++) {
    chunks[n] = c;
    chunk_picture(c, kinds + n * xa_chunk_npages);
  }
  arena_unlock(a);
  size_t pg = xa_os_page;
  for (size_t i = 0; i < n; i++) {
    if (!xa_os_resident_range(chunks[i], XA_CHUNK_SIZE, vec)) continue;
    const uint8_t *k = kinds + i * xa_chunk_npages;
    for (unsigned p = 0; p < xa_chunk_npages; p++) {
      if (!(vec[p] & 1)) continue;
      switch (k[p]) {
      case PG_HEADER: r->header += pg; break;
      case PG_LARGE: r->large += pg; break;
      case PG_DIRTY: r->free_dirty += pg; break;
      case PG_MUZZY: r->free_muzzy += pg; break;
      case PG_CLEAN: r->free_clean += pg; break;
      case PG_PURGING: r->purging += pg; break;
      case PG_MESHED: break;
      default: r->slab[k[p] - PG_SLAB] += pg; break;
      }
    }
  }
  xa_os_unmap(buf, bytes);
}

void xa_arena_get_stats(struct xa_arena *a, struct xa_arena_stats *out) {
  arena_lock(a);
  out->mapped = a->mapped;
  out->large_allocated = a->large_allocated;
  out->mapped_peak = a->mapped_peak;
  out->large_nrequests = a->large_nrequests;
  out->dirty_pages = a->dirty_pages;
  out->muzzy_pages = a->muzzy_pages;
  out->nspare = a->nspare;
  out->purged_pages = a->purged_pages;
  out->purge_runs = a->purge_runs;
  out->lock_contended = a->lock.contended;
  for (unsigned c = 0; c < XA_NSMALL; c++) {
    out->bins[c].nslabs = a->bins[c].nslabs;
    out->bins[c].nrequests = a->bins[c].nrequests;
    out->bins[c].curobjs = a->bins[c].curobjs;
  }
  arena_unlock(a);
}

/* ---- fork ------------------------------------------------------------ */

/* With meshing, the chunks' span pages are a shared file, which goes
 * copy-on-write across the fork and which each side then copies into a
 * file of its own (mesh.h).  The headers are private memory, copied by
 * fork itself. */
static void each_span_area(void (*fn)(void *p, size_t size)) {
  for (unsigned i = 0; i < xa_narenas; i++)
    for (struct xa_chunk *c = xa_arenas[i]->chunks; c; c = c->next)
      if (c->meshable) fn(xa_chunk_span_area(c), xa_chunk_span_bytes());
}

static bool each_span_area_ok(bool (*fn)(void *p, size_t size)) {
  bool ok = true;
  for (unsigned i = 0; i < xa_narenas; i++)
    for (struct xa_chunk *c = xa_arenas[i]->chunks; c; c = c->next)
      if (c->meshable) ok &= fn(xa_chunk_span_area(c), xa_chunk_span_bytes());
  return ok;
}

/* fn(s, arg) for every span of the meshable chunks. */
static void each_meshable_span(void (*fn)(struct xa_span *s, void *arg), void *arg) {
  for (unsigned i = 0; i < xa_narenas; i++)
    for (struct xa_chunk *c = xa_arenas[i]->chunks; c; c = c->next) {
      if (!c->meshable) continue;
      for (unsigned p = xa_chunk_first_page; p < xa_chunk_end_page;) {
        struct xa_span *s = xa_chunk_span(c, p);
        p += s->npages;
        fn(s, arg);
      }
    }
}

/* fn(p, size) on the pages of each span in use that may hold data: a
 * large block whole, a slab that is no alias but its pages where no
 * object of it or of its aliases lies (those become zero pages, which
 * also suits a purge under way on them).  Free spans' pages are garbage
 * or zero, and an alias's are its owner's. */
struct area_fn {
  void (*fn)(void *p, size_t size);
  char *p;                      /* the run so far: spans side by side make one call */
  size_t size;
};
static void area_add(struct area_fn *f, char *p, size_t size) {
  if (f->size && f->p + f->size == p) {
    f->size += size;
    return;
  }
  if (f->size) f->fn(f->p, f->size);
  f->p = p;
  f->size = size;
}
static void span_in_use(struct xa_span *s, void *arg) {
  struct area_fn *f = arg;
  char *base = xa_span_addr(s);
  if (s->state == XA_SPAN_LARGE) area_add(f, base, xa_span_bytes(s));
  if (s->state != XA_SPAN_SLAB) return;
  struct page_run run[64];
  unsigned nrun = slab_free_runs(s, run);
  uint32_t at = 0;
  for (unsigned i = 0; i <= nrun; i++) {
    uint32_t end = i < nrun ? run[i].first : s->npages;
    if (end > at) area_add(f, base + ((size_t)at << xa_os_page_shift), (size_t)(end - at) << xa_os_page_shift);
    if (i < nrun) at = run[i].first + run[i].n;
  }
}
static void each_span_in_use(void (*fn)(void *p, size_t size)) {
  struct area_fn f = {fn, NULL, 0};
  each_meshable_span(span_in_use, &f);
  if (f.size) fn(f.p, f.size);
}

/* fn(p, size, off) on each run of span pages that maps the file at
 * consecutive offsets: an alias at its owner's pages, every other span at
 * its own address. */
struct map_run {
  void (*fn)(void *p, size_t size, uint64_t off);
  char *p;
  size_t size;
  uint64_t off;
};
static void map_run_flush(struct map_run *r) {
  if (r->size) r->fn(r->p, r->size, r->off);
  r->size = 0;
}
static void map_run_add(struct xa_span *s, void *arg) {
  struct map_run *r = arg;
  char *p = xa_span_addr(s);
  size_t size = xa_span_bytes(s);
  uint64_t off = (uintptr_t)(s->state == XA_SPAN_MESHED ? xa_span_addr(s->owner) : p);
  if (r->size && r->p + r->size == p && r->off + r->size == off) {
    r->size += size;
    return;
  }
  map_run_flush(r);
  *r = (struct map_run){r->fn, p, size, off};
}
static void each_map_run(void (*fn)(void *p, size_t size, uint64_t off)) {
  struct map_run r = {fn, NULL, 0, 0};
  each_meshable_span(map_run_add, &r);
  map_run_flush(&r);
}

static void alias_slots(struct xa_span *s, void *arg) {
  (void)arg;
  if (s->state != XA_SPAN_MESHED) return;
  const struct xa_class_info *ci = &xa_classes[s->cls];
  unsigned nw = (ci->nobjs + 63) / 64;
  uint64_t live[MESH_MAX_WORDS];
  for (unsigned w = 0; w < nw; w++) live[w] = ~s->bitmap[w];
  if (ci->nobjs % 64) live[nw - 1] &= ((uint64_t)1 << (ci->nobjs % 64)) - 1;
  xa_mesh_rebase_slots(xa_span_addr(s), xa_span_addr(s->owner), live, ci->nobjs, ci->size);
}

/* Is the forking thread's stack a block of a file-backed chunk (a
 * coroutine's stack from malloc)?  Then fork cannot work with meshing:
 * the write protection would stop the thread at its next push, and after
 * the fork parent and child would run on one shared stack.  Asked before
 * the prepare handler takes any lock, each arena's only while its chunks
 * are looked at, so that the stop holds none (a SIGABRT handler may
 * allocate). */
void xa_arena_fork_check(void) {
  if (!xa_mesh_on) return;
  uintptr_t sp = (uintptr_t)__builtin_frame_address(0);
  bool shared = false, adopts = xa_mesh_can_adopt();
  for (unsigned i = 0; i < xa_narenas && !shared; i++) {
    xa_lock(&xa_arenas[i]->lock);
    for (struct xa_chunk *c = xa_arenas[i]->chunks; c && !shared; c = c->next) {
      uintptr_t lo = (uintptr_t)xa_chunk_span_area(c);
      /* a private chunk too where chunks are adopted: it may be in the
       * file by the time the fork runs (adoption needs no lock of ours
       * that this thread holds until then) */
      shared = (c->meshable || adopts) && sp >= lo && sp < lo + xa_chunk_span_bytes();
    }
    xa_unlock(&xa_arenas[i]->lock);
  }
  if (shared) xa_error_fatal("mesh: fork from a thread whose stack is a heap block is not supported with mesh:true");
}

/* In a fork child: the purges that were under madvise when the parent
 * forked have no thread to finish them here, except the forking thread's
 * own (a fork from a signal handler), which it finishes as it returns.
 * In this copy their pages went back wholly, in part or not at all: free
 * spans come back muzzy (perhaps resident), slabs back into their bins;
 * else both would stay out of use for the child's life. */
static void inflight_finish(struct xa_arena *a) {
  struct xa_chunk *dead = NULL;
  uint64_t now = xa_os_now();
  struct xa_inflight *mine = NULL;
  for (struct xa_inflight *f = a->inflight, *next; f; f = next) {
    next = f->next;
    struct xa_span *s = f->span;
    if (f->owner == xa_thread_self()) {
      f->next = mine;
      mine = f;
      continue;
    }
    if (s->state == XA_SPAN_PURGING) {
      struct xa_chunk *c = xa_span_chunk(s), *d = span_release(a, s, XA_PAGES_MUZZY);
      if (!d) d = spare_or_dead(a, c);
      if (d) { d->next = dead; dead = d; }
    } else {
      slab_rebin(a, s, &dead, now);
    }
  }
  a->inflight = mine;
  chunks_delete(dead);
}

/* Each remap of the span pages around a fork (to copy-on-write before
 * it, to a file of each side's own after it) maps them read-write as a
 * whole, and aliases over them.  Ranges the program had given other
 * access (a guard page of a stack it allocated with posix_memalign, a
 * read-only table) get it back: their list is read from /proc/self/maps
 * just before the remap and applied after it (in the parent another
 * thread's mprotect in between is undone; the forking thread holds every
 * arena, so none of ours runs).  The list starts in a static array (no
 * mmap in the usual fork) and moves to mapped pages when it outgrows
 * that.  Where /proc cannot be read, or those pages cannot be mapped, the
 * ranges not noted stay read-write.  Only the access comes back:
 * protection keys, mlock and madvise settings on heap pages do not. */
struct prot_range { uintptr_t lo, hi; bool r, w, x; };
struct prot_list { struct prot_range *v; size_t n, cap; };
#define PROT_STATIC 128
static struct prot_range prot_static[PROT_STATIC] XA_BSS_TABLE;

static bool prot_note(const struct xa_os_mapping *m, void *arg) {
  struct prot_list *l = arg;
  if ((m->r && m->w && !m->x) || !xa_chunkmap_test(m->start)) return true;
  struct xa_chunk *c = xa_chunk_of((void *)m->start);
  uintptr_t lo = (uintptr_t)xa_chunk_span_area(c), hi = lo + xa_chunk_span_bytes();
  if (!c->meshable || m->start < lo || m->end > hi) return true;     /* only the remapped pages */
  if (l->n == l->cap) {
    size_t cap = l->cap * 2;
    struct prot_range *v = xa_os_map(cap * sizeof *v, xa_os_page);
    if (!v) return false;
    memcpy(v, l->v, l->n * sizeof *v);
    if (l->v != prot_static) xa_os_unmap(l->v, l->cap * sizeof *v);
    l->v = v;
    l->cap = cap;
  }
  l->v[l->n++] = (struct prot_range){m->start, m->end, m->r, m->w, m->x};
  return true;
}

/* A refusal leaves the range read-write: the remap made no more mappings
 * than there were, so the kernel's mapping limit is not the reason. */
static void prot_restore(struct prot_list *l) {
  for (size_t i = 0; i < l->n; i++)
    xa_os_protect((void *)l->v[i].lo, l->v[i].hi - l->v[i].lo, l->v[i].r, l->v[i].w, l->v[i].x);
  if (l->v != prot_static) xa_os_unmap(l->v, l->cap * sizeof *l->v);
}

/* While the heap is held still, a signal handler on the forking thread
 * that wrote to it would wait for this thread itself: signals wait too. */
static void signals_block(sigset_t *old) {
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, old);
}

/* Each side, after the fork, copies its view of the heap into a file of
 * its own and maps that (mesh.h); the parent's writers wait meanwhile. */
static XA_COLD void heap_rebase(bool child) {
  sigset_t old;
  if (!child) {
    signals_block(&old);
    each_span_area(xa_mesh_rebase_populate);
    if (!each_span_area_ok(xa_mesh_fork_protect)) xa_error_fatal("mesh: the heap could not be held still after fork");
  }
  xa_mesh_rebase_begin(child);
  each_span_in_use(xa_mesh_rebase_span);
  each_meshable_span(alias_slots, NULL);
  struct prot_list prot = {prot_static, 0, PROT_STATIC};
  xa_os_maps(prot_note, &prot);
  each_map_run(xa_mesh_rebase_map);
  prot_restore(&prot);
  if (!child) each_span_area(xa_mesh_fork_wake);
  xa_mesh_rebase_done(child);
  if (!child) pthread_sigmask(SIG_SETMASK, &old, NULL);
}

static bool map_private_ok;
static void map_private(void *p, size_t size, uint64_t off) { map_private_ok &= xa_mesh_fork_map_private(p, size, off); }

/* The heap goes copy-on-write for the fork (mesh.h).  Where the file was
 * lost, its copy is made from the memory first, writers held still. */
static void heap_to_private(void) {
  if (!xa_mesh_fork_ready()) return;         /* the child stops */
  bool frozen = xa_mesh_fork_frozen();
  sigset_t old;
  if (frozen) {
    signals_block(&old);
    if (!(each_span_area_ok(xa_mesh_fork_protect) && xa_mesh_fork_make_source(each_span_in_use))) {
      each_span_area(xa_mesh_fork_thaw);
      pthread_sigmask(SIG_SETMASK, &old, NULL);
      return;
    }
  }
  struct prot_list prot = {prot_static, 0, PROT_STATIC};
  xa_os_maps(prot_note, &prot);
  map_private_ok = true;
  each_map_run(map_private);
  prot_restore(&prot);
  if (frozen) pthread_sigmask(SIG_SETMASK, &old, NULL);
  xa_mesh_fork_went(map_private_ok);
}

void xa_arena_prefork(void) {
  for (unsigned i = 0; i < xa_narenas; i++) xa_lock(&xa_arenas[i]->lock);
  if (xa_mesh_on) heap_to_private();
}

void xa_arena_postfork_parent(void) {
  if (xa_mesh_on && xa_mesh_fork_rebase()) heap_rebase(false);
  for (unsigned i = 0; i < xa_narenas; i++) xa_unlock(&xa_arenas[i]->lock);
}

void xa_arena_postfork_child(void) {
  mesh_busy = 0;
  if (xa_mesh_on && xa_mesh_child_begin()) heap_rebase(true);
  for (unsigned i = 0; i < xa_narenas; i++) {
    xa_lock_reinit(&xa_arenas[i]->lock);
    inflight_finish(xa_arenas[i]);
  }
}

/* ---- invariant walker (tests and XA_DEBUG builds) ---------------------- */

/* Walk every chunk of arena a (lock held by the caller) and check that its
 * spans tile the chunk, that free spans are binned, coalesced and have
 * boundary page info, and that slab and large pages point at their span.
 * Returns NULL if all holds, else a description of the first violation. */
XA_COLD const char *xa_arena_check_locked(struct xa_arena *a) {
  size_t dirty = 0, muzzy = 0;
  unsigned spares = 0;
  uint64_t meshed = 0, aliases = 0;     /* aliases reached from owners, and seen */
  for (struct xa_chunk *c = a->chunks; c; c = c->next) {
    if (c->arena != a) return "chunk owned by another arena";
    unsigned p = xa_chunk_first_page, free_pages = 0;
    int prev_free = -1;            /* the previous span's page state if free */
    while (p < xa_chunk_end_page) {
      struct xa_span *s = xa_chunk_span(c, p);
      if (s->first != p) return "span slot first mismatch";
      if (s->npages == 0 || p + s->npages > xa_chunk_end_page) return "span length out of range";
      if (s->state == XA_SPAN_FREE) {
        if (prev_free == s->dirty) return "adjacent free spans in one state not coalesced";
        bool found = false;
        for (struct xa_span *f = a->free_spans[free_kind(s)][free_bin(s->npages)]; f; f = f->next) found |= f == s;
        if (!found) return "free span missing from its bin";
        if (s->unfaulted > (s->dirty == XA_PAGES_DIRTY ? s->npages : 0)) return "free span's unfaulted count out of range";
        if (xa_chunk_page_info(c, p)->first != p || xa_chunk_page_info(c, p + s->npages - 1)->first != p)
          return "free span boundary info wrong";
        free_pages += s->npages;
        if (s->dirty == XA_PAGES_DIRTY) dirty += s->npages;
        if (s->dirty == XA_PAGES_MUZZY) muzzy += s->npages;
        prev_free = s->dirty;
      } else if (s->state == XA_SPAN_SLAB || s->state == XA_SPAN_LARGE || s->state == XA_SPAN_PURGING ||
                 s->state == XA_SPAN_MESHED) {
        bool slab = s->state == XA_SPAN_SLAB || s->state == XA_SPAN_MESHED;
        for (unsigned i = p; i < p + s->npages; i++) {
          struct xa_pageinfo *pi = xa_chunk_page_info(c, i);
          if (pi->first != p) return "allocated span page info wrong";
          if (pi->cls != (slab ? s->cls : XA_CLS_NONE)) return "page class wrong";
          if (pi->cls_scaled != (slab ? xa_class_scale(s->cls) : 0)) return "page's scaled class wrong";
        }
        if (s->state == XA_SPAN_SLAB) {
          const struct xa_class_info *ci = &xa_classes[s->cls];
          if (s->dirty) {
            bool found = false;
            for (struct xa_span *d = a->dirty_slabs.head; d && !found; d = d->lru_next) found = d == s;
            if (!found) return "dirty slab missing from the dirty list";
          }
          if (s->npages != ci->slab_pages) return "slab length wrong";
          unsigned nfree = 0, live = 0;
          for (unsigned w = 0; w < (ci->nobjs + 63) / 64; w++) nfree += (unsigned)__builtin_popcountl(slab_free_word(s, w));
          if (nfree != s->nfree) return "slab free count disagrees with bitmap";
          for (struct xa_span *m = s->aliases; m; m = m->alias_next, meshed++) {
            if (m->state != XA_SPAN_MESHED || m->owner != s || m->cls != s->cls) return "bad alias of a slab";
            live += ci->nobjs - m->nfree;
          }
          for (unsigned w = 0; w < (ci->nobjs + 63) / 64; w++) live += (unsigned)__builtin_popcountl(~s->bitmap[w]);
          if (ci->nobjs % 64) live -= 64 - ci->nobjs % 64;
          if (live + nfree != ci->nobjs) return "meshed slabs' live objects overlap";
        }
        if (s->state == XA_SPAN_MESHED) {
          const struct xa_class_info *ci = &xa_classes[s->cls];
          unsigned nfree = 0;
          for (unsigned w = 0; w < (ci->nobjs + 63) / 64; w++) nfree += (unsigned)__builtin_popcountl(s->bitmap[w]);
          if (nfree != s->nfree) return "meshed slab free count disagrees with its bitmap";
          if (!s->owner || s->owner->state != XA_SPAN_SLAB) return "meshed slab without an owner slab";
          aliases++;
        }
        prev_free = -1;
      } else {
        return "bad span state";
      }
      p += s->npages;
    }
    if (free_pages != c->free_pages) return "chunk free page count wrong";
    if (free_pages == usable_pages()) spares++;   /* in one free span or several */
  }
  if (spares != a->nspare) return "spare chunk count wrong";
  if (meshed != aliases || aliases != a->meshed_slabs) return "meshed slab count wrong";
  for (unsigned c = 0; c < XA_NSMALL; c++) {
    unsigned empty = 0, plain = 0;      /* plain: without aliases (those wait for the purger) */
    for (struct xa_span *s = a->bins[c].nonfull; s; s = s->next) {
      if (s->state != XA_SPAN_SLAB || s->cls != c || !s->nfree) return "bad slab on a bin's nonfull list";
      empty += s->nfree == xa_classes[c].nobjs;
      plain += s->nfree == xa_classes[c].nobjs && !s->aliases;
    }
    if (empty != a->bins[c].nempty) return "bin's empty slab count wrong";
    if (plain > xa_classes[c].empty_keep) return "bin keeps too many empty slabs";
  }
  if (dirty != a->dirty_pages) return "arena dirty page count wrong";
  size_t lru_pages = 0;
  for (struct xa_span *s = a->dirty_spans.head; s; s = s->lru_next) {
    if (s->state != XA_SPAN_FREE || s->dirty != XA_PAGES_DIRTY) return "clean or allocated span on the dirty list";
    lru_pages += s->npages;
  }
  if (lru_pages != a->dirty_pages) return "dirty list disagrees with dirty page count";
  if (muzzy != a->muzzy_pages) return "arena muzzy page count wrong";
  lru_pages = 0;
  for (struct xa_span *s = a->muzzy_spans.head; s; s = s->lru_next) {
    if (s->state != XA_SPAN_FREE || s->dirty != XA_PAGES_MUZZY) return "non-muzzy span on the muzzy list";
    lru_pages += s->npages;
  }
  if (lru_pages != a->muzzy_pages) return "muzzy list disagrees with muzzy page count";
  for (unsigned k = 0; k < 2; k++)
    for (unsigned b = 0; b < XA_FREE_BINS; b++) {
      bool bit = (a->free_nonempty[k][b >> 6] >> (b & 63)) & 1;
      if (bit != (a->free_spans[k][b] != NULL)) return "free bin's nonempty bit wrong";
      for (struct xa_span *f = a->free_spans[k][b]; f; f = f->next)
        if (f->state != XA_SPAN_FREE || free_kind(f) != k || free_bin(f->npages) != b)
          return "span in the wrong free bin";
    }
  return NULL;
}
