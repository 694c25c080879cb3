/* Huge blocks: own mappings, tracked in an open-addressing hash table
 * (keys are block addresses; the table itself is mapped from the OS). */
#include "huge.h"
#include "lock.h"
#include "options.h"
#include "os.h"

struct huge_ent {
  uintptr_t p;          /* block address; 0 empty, 1 deleted */
  size_t size;          /* mapped bytes (page multiple) */
};

static xa_lock_t huge_lock = XA_LOCK_INIT;
static struct huge_ent *tab;
static size_t tab_cap;          /* power of two */
static size_t tab_used;         /* live + deleted */
static size_t huge_count, huge_bytes;

/* Recently freed mappings, kept for reuse to avoid mmap/munmap churn. */
#define CACHE_SLOTS 16
struct cached { void *p; size_t size; uint64_t freed_at; };
static struct cached cache[CACHE_SLOTS];
static unsigned cache_n;
static size_t cache_bytes;

static void cache_take(unsigned i) {
  cache_bytes -= cache[i].size;
  cache[i] = cache[--cache_n];
}

static size_t slot_of(uintptr_t p, size_t cap) {
  return (size_t)(((p >> 12) * 0x9E3779B97F4A7C15ull) >> 20) & (cap - 1);
}

static struct huge_ent *find(uintptr_t p) {
  if (!tab) return NULL;
  for (size_t i = slot_of(p, tab_cap);; i = (i + 1) & (tab_cap - 1)) {
    if (tab[i].p == p) return &tab[i];
    if (tab[i].p == 0) return NULL;
  }
}

static void put(struct huge_ent *t, size_t cap, uintptr_t p, size_t size) {
  size_t i = slot_of(p, cap);
  while (t[i].p > 1) i = (i + 1) & (cap - 1);
  t[i].p = p;
  t[i].size = size;
}

/* Make room for one more entry, growing the table (mapped with the lock
 * dropped) when 3/4 full.  Lock held on entry and on return. */
static bool reserve_locked(void) {
  while ((tab_used + 1) * 4 > tab_cap * 3) {
    size_t cap = tab_cap ? tab_cap * 2 : 1024;
    xa_unlock(&huge_lock);
    struct huge_ent *nt = xa_os_map(cap * sizeof *nt, xa_os_page);
    xa_lock(&huge_lock);
    if (!nt) return false;
    if (cap <= tab_cap) {                 /* another thread grew it */
      xa_unlock(&huge_lock);
      xa_os_unmap(nt, cap * sizeof *nt);
      xa_lock(&huge_lock);
      continue;
    }
    struct huge_ent *old = tab;
    size_t old_cap = tab_cap;
    for (size_t i = 0; i < old_cap; i++)
      if (old[i].p > 1) put(nt, cap, old[i].p, old[i].size);
    tab = nt;
    tab_cap = cap;
    tab_used = huge_count;
    if (old) {
      xa_unlock(&huge_lock);
      xa_os_unmap(old, old_cap * sizeof *old);
      xa_lock(&huge_lock);
    }
  }
  return true;
}

static bool insert(uintptr_t p, size_t size) {
  xa_lock(&huge_lock);
  bool ok = reserve_locked();
  if (ok) {
    put(tab, tab_cap, p, size);
    tab_used++;
    huge_count++;
    huge_bytes += size;
  }
  xa_unlock(&huge_lock);
  return ok;
}

/* Remove p; returns its mapped size or 0. */
static size_t take(uintptr_t p) {
  xa_lock(&huge_lock);
  struct huge_ent *e = find(p);
  size_t size = 0;
  if (e) {
    size = e->size;
    e->p = 1;
    huge_count--;
    huge_bytes -= size;
  }
  xa_unlock(&huge_lock);
  return size;
}

static void thp_advise(void *p, size_t size) {
  if (xa_opt.thp == xa_opt_thp_always) xa_os_hugepage(p, size, true);
  else if (xa_opt.thp == xa_opt_thp_never) xa_os_hugepage(p, size, false);
}

/* Best cached fit: the smallest aligned mapping of at least size bytes.
 * One much larger is cut down (its tail unmapped): one munmap instead of
 * an mmap plus a page fault per page. */
static void *cache_get(size_t size, size_t align, size_t *got) {
  void *p = NULL;
  xa_lock(&huge_lock);
  unsigned best = CACHE_SLOTS;
  for (unsigned i = 0; i < cache_n; i++)
    if (cache[i].size >= size && ((uintptr_t)cache[i].p & (align - 1)) == 0 &&
        (best == CACHE_SLOTS || cache[i].size < cache[best].size))
      best = i;
  if (best != CACHE_SLOTS) {
    p = cache[best].p;
    *got = cache[best].size;
    cache_take(best);
  }
  xa_unlock(&huge_lock);
  if (p && *got - size > size / 8) {
    xa_os_unmap((char *)p + size, *got - size);
    *got = size;
  }
  return p;
}

/* Secure mode puts an inaccessible page after each huge block (and keeps
 * no cache: freed blocks are unmapped, so late accesses fault). */
static size_t guard_size(void) { return xa_opt.secure ? xa_os_page : 0; }

void *xa_huge_alloc(size_t n, size_t align, bool *zeroed) {
  size_t size = XA_ALIGN_UP(n, xa_os_page), guard = guard_size();
  if (size < n || size + guard < size) return NULL;
  if (align < XA_HUGE_ALIGN) align = XA_HUGE_ALIGN;
  size_t got;
  void *p = guard ? NULL : cache_get(size, align, &got);
  *zeroed = p == NULL;
  if (p) {
    size = got;
  } else {
    p = xa_os_map(size + guard, align);
    if (!p) {
      xa_huge_cache_decay(UINT64_MAX);   /* cached mappings may be in the way */
      p = xa_os_map(size + guard, align);
    }
    if (!p) return NULL;
    if (guard && !xa_os_guard((char *)p + size, guard)) {
      xa_os_unmap(p, size + guard);
      return NULL;
    }
    thp_advise(p, size);
  }
  if (!insert((uintptr_t)p, size)) {
    xa_os_unmap(p, size + guard);
    return NULL;
  }
  return p;
}

size_t xa_huge_usable(const void *p) {
  xa_lock(&huge_lock);
  struct huge_ent *e = find((uintptr_t)p);
  size_t s = e ? e->size : 0;
  xa_unlock(&huge_lock);
  return s;
}

bool xa_huge_is_cached(const void *p) {
  bool found = false;
  xa_lock(&huge_lock);
  for (unsigned i = 0; i < cache_n; i++) found |= cache[i].p == p;
  xa_unlock(&huge_lock);
  return found;
}

bool xa_huge_free(void *p) {
  size_t size = take((uintptr_t)p);
  if (!size) return false;
  struct cached evict = {NULL, 0, 0};
  size_t budget = (size_t)xa_opt.huge_cache_bytes;
  bool keep = size <= budget && xa_opt.dirty_decay_ms != 0 && !xa_opt.secure;
  if (keep) {
    xa_lock(&huge_lock);
    if (cache_n && (cache_n == CACHE_SLOTS || cache_bytes + size > budget)) {
      unsigned old = 0;                 /* make room: drop the oldest */
      for (unsigned i = 1; i < cache_n; i++) if (cache[i].freed_at < cache[old].freed_at) old = i;
      evict = cache[old];
      cache_take(old);
    }
    keep = cache_n < CACHE_SLOTS && cache_bytes + size <= budget;
    if (keep) {
      cache[cache_n++] = (struct cached){p, size, xa_os_now()};
      cache_bytes += size;
    }
    xa_unlock(&huge_lock);
  }
  if (evict.p) xa_os_unmap(evict.p, evict.size);
  if (!keep) xa_os_unmap(p, size + guard_size());
  return true;
}

size_t xa_huge_cache_decay(uint64_t now) {
  uint64_t ttl = xa_opt.dirty_decay_ms < 0 ? UINT64_MAX : (uint64_t)xa_opt.dirty_decay_ms * 1000000u;
  for (;;) {
    struct cached victim = {NULL, 0, 0};
    xa_lock(&huge_lock);
    for (unsigned i = 0; i < cache_n; i++)
      if (now == UINT64_MAX || (ttl != UINT64_MAX && now - cache[i].freed_at >= ttl)) {
        victim = cache[i];
        cache_take(i);
        break;
      }
    size_t left = cache_bytes;
    xa_unlock(&huge_lock);
    if (!victim.p) return left;
    xa_os_unmap(victim.p, victim.size);   /* lock dropped: munmap outside */
  }
}

void *xa_huge_realloc(void *p, size_t n) {
  size_t size = XA_ALIGN_UP(n, xa_os_page);
  if (size < n) return NULL;
  xa_lock(&huge_lock);
  struct huge_ent *e = find((uintptr_t)p);
  size_t old = e ? e->size : 0;
  if (!old || size == old) {
    xa_unlock(&huge_lock);
    return old ? p : NULL;
  }
  /* Out of the table while the mapping changes: once mremap moves it,
   * another thread may map a new block at the old address, which must not
   * meet a stale entry.  The slot freed here guarantees room below. */
  e->p = 1;
  huge_count--;
  huge_bytes -= old;
  xa_unlock(&huge_lock);
  void *q = p;
  if (!xa_os_remap_inplace(p, old, size)) q = xa_os_remap(p, old, size);
  uintptr_t at = q ? (uintptr_t)q : (uintptr_t)p;   /* failed: p unchanged */
  size_t now = q ? size : old;
  xa_lock(&huge_lock);
  put(tab, tab_cap, at, now);
  tab_used++;
  huge_count++;
  huge_bytes += now;
  xa_unlock(&huge_lock);
  return q;
}

void xa_huge_stats(size_t *count, size_t *bytes, size_t *cached) {
  xa_lock(&huge_lock);
  *count = huge_count;
  *bytes = huge_bytes;
  *cached = cache_bytes;
  xa_unlock(&huge_lock);
}

void xa_huge_prefork(void) { xa_lock(&huge_lock); }
void xa_huge_postfork_parent(void) { xa_unlock(&huge_lock); }
void xa_huge_postfork_child(void) { xa_lock_reinit(&huge_lock); }
