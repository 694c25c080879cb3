/* The free-extent index (see extent.h).  A treap keeps the extents in
 * address order with expected O(log n) updates and no rebalancing code;
 * its priorities come from a xorshift generator, so no input order can
 * make it degenerate.  Changing an extent's start within the gap its
 * neighbours leave keeps the address order, so shrinking, growing and
 * merging edit records in place and the tree changes only when an extent
 * appears or goes. */
#include "extent.h"
#include "os.h"

/* ---- records ------------------------------------------------------------ */

/* A new segment's records are handed out in order, from fresh_next, and
 * only then from the free list: pages of records never used stay
 * untouched (not resident). */
bool xa_ext_add_segment(struct xa_extents *x, void *seg) {
  if (x->nsegments == XA_EXT_SEGMENTS) return false;
  /* what is left of the previous segment's fresh records goes on the list */
  for (; x->fresh_next < x->fresh_end; x->fresh_next++) {
    x->fresh_next->right = x->spare;
    x->spare = x->fresh_next;
  }
  x->fresh_next = seg;
  x->fresh_end = x->fresh_next + XA_EXT_SEGMENT;
  x->nspare += XA_EXT_SEGMENT;
  __atomic_store_n(&x->nsegments, x->nsegments + 1, __ATOMIC_RELAXED);   /* read unlocked: xa_huge_metadata */
  return true;
}

static struct xa_ext *rec_new(struct xa_extents *x) {
  struct xa_ext *e = x->spare;
  if (e) x->spare = e->right;
  else if (x->fresh_next < x->fresh_end) e = x->fresh_next++;
  else return NULL;
  x->nspare--;
  x->count++;
  x->rng ^= x->rng << 13;               /* xorshift32: treap priorities */
  x->rng ^= x->rng >> 17;
  x->rng ^= x->rng << 5;
  if (!x->rng) x->rng = 0x9e3779b9u;
  e->prio = x->rng;
  e->left = e->right = NULL;
  return e;
}

static void rec_free(struct xa_extents *x, struct xa_ext *e) {
  e->right = x->spare;
  x->spare = e;
  x->nspare++;
  x->count--;
}

/* ---- the treap ------------------------------------------------------------ */

/* All keys of a below all keys of b. */
static struct xa_ext *merge(struct xa_ext *a, struct xa_ext *b) {
  if (!a) return b;
  if (!b) return a;
  if (a->prio > b->prio) {
    a->right = merge(a->right, b);
    return a;
  }
  b->left = merge(a, b->left);
  return b;
}

/* t into keys < key (*lo) and >= key (*hi). */
static void split(struct xa_ext *t, uintptr_t key, struct xa_ext **lo, struct xa_ext **hi) {
  if (!t) {
    *lo = *hi = NULL;
  } else if (t->start < key) {
    split(t->right, key, &t->right, hi);
    *lo = t;
  } else {
    split(t->left, key, lo, &t->left);
    *hi = t;
  }
}

static void tree_insert(struct xa_extents *x, struct xa_ext *e) {
  struct xa_ext *lo, *hi;
  split(x->root, e->start, &lo, &hi);
  x->root = merge(merge(lo, e), hi);
}

static struct xa_ext *tree_delete(struct xa_ext *t, uintptr_t key) {
  if (t->start == key) return merge(t->left, t->right);
  if (key < t->start) t->left = tree_delete(t->left, key);
  else t->right = tree_delete(t->right, key);
  return t;
}

struct xa_ext *xa_ext_from(const struct xa_extents *x, uintptr_t addr) {
  struct xa_ext *best = NULL;
  for (struct xa_ext *t = x->root; t;) {
    if (t->start >= addr) {
      best = t;
      t = t->left;
    } else {
      t = t->right;
    }
  }
  return best;
}

/* The last extent starting before addr, or NULL. */
static struct xa_ext *before(const struct xa_extents *x, uintptr_t addr) {
  struct xa_ext *best = NULL;
  for (struct xa_ext *t = x->root; t;) {
    if (t->start < addr) {
      best = t;
      t = t->right;
    } else {
      t = t->left;
    }
  }
  return best;
}

struct xa_ext *xa_ext_containing(const struct xa_extents *x, uintptr_t addr) {
  struct xa_ext *e = before(x, addr + 1);
  return e && addr - e->start < e->size ? e : NULL;
}

/* ---- size bins -------------------------------------------------------------- */

/* Eight bins per doubling of the page count (one per page below 8). */
static uint32_t bin_of(size_t size) {
  size_t pages = size >> xa_os_page_shift;
  if (pages < 8) return pages ? (uint32_t)pages - 1 : 0;
  unsigned top = 63 - (unsigned)__builtin_clzl(pages);
  uint32_t b = 8 + (top - 3) * 8 + (uint32_t)((pages >> (top - 3)) & 7);
  return b < XA_EXT_NBINS ? b : XA_EXT_NBINS - 1;
}

static void bin_add(struct xa_extents *x, struct xa_ext *e) {
  uint32_t b = bin_of(e->size);
  struct xa_ext **head = &x->bins[e->state][b];
  e->bin = b;
  e->bin_prev = NULL;
  e->bin_next = *head;
  if (*head) (*head)->bin_prev = e;
  *head = e;
  x->nonempty[e->state][b >> 6] |= (uint64_t)1 << (b & 63);
}

static void bin_remove(struct xa_extents *x, struct xa_ext *e) {
  uint32_t b = e->bin;
  if (e->bin_prev) e->bin_prev->bin_next = e->bin_next;
  else x->bins[e->state][b] = e->bin_next;
  if (e->bin_next) e->bin_next->bin_prev = e->bin_prev;
  if (!x->bins[e->state][b]) x->nonempty[e->state][b >> 6] &= ~((uint64_t)1 << (b & 63));
}

/* e's size changed: move it to its new bin if it has one. */
static void rebin(struct xa_extents *x, struct xa_ext *e) {
  if (bin_of(e->size) == e->bin) return;
  bin_remove(x, e);
  bin_add(x, e);
}

#define FIT_SCAN 16     /* extents looked at per bin */

struct xa_ext *xa_ext_fit(const struct xa_extents *x, uint32_t st, size_t size, size_t align) {
  uint32_t b = bin_of(size);
  struct xa_ext *best = NULL;
  unsigned looked = 0;
  for (struct xa_ext *e = x->bins[st][b]; e && looked < FIT_SCAN; e = e->bin_next, looked++)
    if (xa_ext_fits(e, size, align) && (!best || e->size < best->size)) best = e;
  if (best) return best;
  for (uint32_t w = (b + 1) >> 6; w < (XA_EXT_NBINS + 63) / 64; w++) {
    uint64_t m = x->nonempty[st][w];
    if (w == (b + 1) >> 6) m &= ~(uint64_t)0 << ((b + 1) & 63);
    for (; m; m &= m - 1) {
      looked = 0;
      for (struct xa_ext *e = x->bins[st][w * 64 + (unsigned)__builtin_ctzl(m)]; e && looked < FIT_SCAN;
           e = e->bin_next, looked++)
        if (xa_ext_fits(e, size, align)) return e;
    }
  }
  return NULL;
}

/* ---- age order ---------------------------------------------------------------- */

static void lru_unlink(struct xa_extents *x, struct xa_ext *e) {
  if (e->lru_prev) e->lru_prev->lru_next = e->lru_next;
  else x->lru_head = e->lru_next;
  if (e->lru_next) e->lru_next->lru_prev = e->lru_prev;
  else x->lru_tail = e->lru_prev;
}

/* Link e after p (NULL: at the head). */
static void lru_link_after(struct xa_extents *x, struct xa_ext *p, struct xa_ext *e) {
  e->lru_prev = p;
  e->lru_next = p ? p->lru_next : x->lru_head;
  if (e->lru_next) e->lru_next->lru_prev = e;
  else x->lru_tail = e;
  if (p) p->lru_next = e;
  else x->lru_head = e;
}

/* Link dirty extent e where its age puts it: found from the newest end,
 * where a just-freed extent belongs (one step). */
static void lru_place(struct xa_extents *x, struct xa_ext *e) {
  struct xa_ext *p = x->lru_tail;
  while (p && p->freed_at > e->freed_at) p = p->lru_prev;
  lru_link_after(x, p, e);
}

/* ---- updates -------------------------------------------------------------------- */

static void drop(struct xa_extents *x, struct xa_ext *e) {
  x->root = tree_delete(x->root, e->start);
  bin_remove(x, e);
  if (e->state == XA_EXT_DIRTY) lru_unlink(x, e);
  rec_free(x, e);
}

/* Dirty e got freed_at `at` too: it keeps the younger age. */
static void age(struct xa_extents *x, struct xa_ext *e, uint64_t at) {
  if (e->state != XA_EXT_DIRTY || at <= e->freed_at) return;
  e->freed_at = at;
  lru_unlink(x, e);
  lru_place(x, e);
}

struct xa_ext *xa_ext_free(struct xa_extents *x, uintptr_t start, size_t size, uint32_t region,
                           uint32_t st, uint64_t at) {
  if (st != XA_EXT_DIRTY) at = 0;
  uintptr_t end = start + size;
  struct xa_ext *l = before(x, start), *r = xa_ext_from(x, end);
  bool left = l && l->start + l->size == start && l->region == region && l->state == st;
  bool right = r && r->start == end && r->region == region && r->state == st;
  if (left) {
    l->size += size;
    if (right) {
      uint64_t rat = r->freed_at;
      l->size += r->size;
      drop(x, r);
      if (rat > at) at = rat;
    }
    rebin(x, l);
    age(x, l, at);
    return l;
  }
  if (right) {
    r->start = start;             /* still between its neighbours */
    r->size += size;
    rebin(x, r);
    age(x, r, at);
    return r;
  }
  struct xa_ext *e = rec_new(x);
  if (!e) return NULL;
  e->start = start;
  e->size = size;
  e->region = region;
  e->state = st;
  e->freed_at = at;
  tree_insert(x, e);
  bin_add(x, e);
  if (st == XA_EXT_DIRTY) lru_place(x, e);
  return e;
}

bool xa_ext_take(struct xa_extents *x, struct xa_ext *e, uintptr_t start, size_t size) {
  uintptr_t end = start + size, eend = e->start + e->size;
  size_t head = start - e->start, tail = eend - end;
  if (!head && !tail) {
    drop(x, e);
    return true;
  }
  if (!head) {                    /* e keeps the part after */
    e->start = end;
    e->size = tail;
    rebin(x, e);
    return true;
  }
  e->size = head;                 /* e keeps the part before */
  rebin(x, e);
  if (!tail) return true;
  struct xa_ext *t = rec_new(x);
  if (!t) return false;
  *t = (struct xa_ext){.start = end, .size = tail, .freed_at = e->freed_at, .region = e->region,
                       .prio = t->prio, .state = e->state};
  tree_insert(x, t);
  bin_add(x, t);
  if (t->state == XA_EXT_DIRTY) lru_link_after(x, e, t);   /* the same age */
  return true;
}

/* ---- checking ----------------------------------------------------------------------- */

struct walk { const struct xa_ext *prev; size_t n; const char *bad; };

static void walk(const struct xa_extents *x, const struct xa_ext *t, struct walk *w, unsigned depth) {
  if (!t || w->bad) return;
  if (depth > 200) { w->bad = "treap too deep"; return; }
  if ((t->left && t->left->prio > t->prio) || (t->right && t->right->prio > t->prio)) w->bad = "treap priority order broken";
  walk(x, t->left, w, depth + 1);
  if (w->bad) return;
  if (!t->size || (t->size & (xa_os_page - 1)) || (t->start & (xa_os_page - 1))) w->bad = "extent not whole pages";
  else if (w->prev && w->prev->start + w->prev->size > t->start) w->bad = "extents overlap or out of order";
  else if (w->prev && w->prev->start + w->prev->size == t->start && w->prev->region == t->region &&
           w->prev->state == t->state) w->bad = "adjacent extents of one state not merged";
  else if (t->bin != bin_of(t->size)) w->bad = "extent in the wrong size bin";
  else if (t->state == XA_EXT_CLEAN && t->freed_at) w->bad = "clean extent with an age";
  w->prev = t;
  w->n++;
  walk(x, t->right, w, depth + 1);
}

const char *xa_ext_check(const struct xa_extents *x) {
  struct walk w = {NULL, 0, NULL};
  walk(x, x->root, &w, 0);
  if (w.bad) return w.bad;
  if (w.n != x->count) return "treap count differs from records in use";
  size_t binned = 0, dirty = 0;
  for (uint32_t st = 0; st < 2; st++)
    for (uint32_t b = 0; b < XA_EXT_NBINS; b++) {
      bool bit = x->nonempty[st][b >> 6] >> (b & 63) & 1;
      if (bit != (x->bins[st][b] != NULL)) return "bin bitmap differs from bin lists";
      for (const struct xa_ext *e = x->bins[st][b]; e; e = e->bin_next) {
        if (e->state != st || e->bin != b) return "extent listed in a bin not its own";
        if (e->bin_next && e->bin_next->bin_prev != e) return "bin list links broken";
        binned++;
      }
    }
  if (binned != x->count) return "bins hold a different number of extents";
  for (const struct xa_ext *e = x->lru_head; e; e = e->lru_next) {
    if (e->state != XA_EXT_DIRTY) return "clean extent in the age list";
    if (e->lru_next && (e->lru_next->lru_prev != e || e->lru_next->freed_at < e->freed_at))
      return "age list out of order";
    if (xa_ext_containing(x, e->start) != e) return "age list holds an extent not in the treap";
    dirty++;
  }
  for (uint32_t b = 0; b < XA_EXT_NBINS; b++)
    for (const struct xa_ext *e = x->bins[XA_EXT_DIRTY][b]; e; e = e->bin_next) dirty--;
  if (dirty) return "age list and dirty bins differ";
  return NULL;
}
