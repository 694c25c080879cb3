/* The heap profiler (prof.h): the sampled blocks, their call stacks, the
 * peak snapshot, and the pprof files.
 *
 * Two tables under one lock, taken only by sampled allocations, by frees
 * of sampled blocks and by dumps:
 *   - stacks: every distinct call stack seen, with the estimated objects
 *     and bytes it allocated ever (alloc_*), holds now (live_*) and held
 *     at the last peak snapshot (peak_*).  Never freed: a program has a
 *     bounded number of allocation sites.
 *   - records: one per live sampled block, found by address (sampled
 *     blocks are all page-aligned), pointing at its stack.
 * Memory for both comes from the metadata allocator outside the lock
 * (no lock is held across mmap).
 *
 * The peak: whenever the estimated live bytes pass the last snapshot's by
 * 1/32, every stack's live figures are copied to its peak figures, so the
 * peak profile shows the heap within 1/32 of its high-water mark, for
 * O(stacks) work per 1/32 of growth. */
#include "prof.h"
#include "backtrace.h"
#include "base.h"
#include "fmt.h"
#include "lock.h"
#include "options.h"
#include "os.h"
#include "pprof.h"
#include "sample.h"
#include "sizeclass.h"
#include "tcache.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

bool xa_prof_on;
static uint64_t mean;                     /* prof_sample */

struct pstack {
  struct pstack *chain;                   /* hash bucket */
  struct pstack *all;                     /* every stack, newest first */
  uint64_t hash;
  unsigned depth;
  double alloc_objs, alloc_bytes, live_objs, live_bytes, peak_objs, peak_bytes;
  uintptr_t pcs[];
};

struct rec {
  struct rec *chain;
  uintptr_t ptr;
  size_t size;          /* bytes asked for */
  uint64_t unit;        /* bytes the sample was drawn on (its weight) */
  struct pstack *stack;
};

#define STACK_BUCKETS 16384
#define REC_BUCKETS 65536
#define REC_BATCH 256

static xa_lock_t prof_lock = XA_LOCK_INIT;
static struct pstack **stack_tab, *stack_list;
static struct rec **rec_tab, *rec_spare;
static uint64_t nstacks, nsamples, nlive, ndumps;
static double live_total, peak_saved, peak_max;
static unsigned dump_seq;
static int dump_pending;                  /* a signal asked for a dump */

/* Per thread: bytes left until the next sampled byte, for allocations no
 * thread cache counts (large, huge, and small ones without a cache). */
static __thread int64_t pick_left __attribute__((tls_model("initial-exec")));
static __thread uint64_t pick_rng __attribute__((tls_model("initial-exec")));

void xa_prof_init(void) {
  if (!xa_opt.prof) return;
  mean = (uint64_t)xa_opt.prof_sample;
  stack_tab = xa_base_alloc(STACK_BUCKETS * sizeof *stack_tab);
  rec_tab = xa_base_alloc(REC_BUCKETS * sizeof *rec_tab);
  if (!stack_tab || !rec_tab) return;     /* no memory: no profile */
  xa_backtrace_init();
  xa_tcache_sample_mean = mean;
  xa_prof_on = true;
}

bool xa_prof_pick(size_t n) {
  if (unlikely(!pick_rng)) {
    pick_rng = xa_os_random() | 1;
    pick_left = xa_sample_bytes(&pick_rng, mean);
  }
  pick_left -= (int64_t)(n < ((uint64_t)1 << 62) ? n : (uint64_t)1 << 62);
  if (pick_left > 0) return false;
  pick_left = xa_sample_bytes(&pick_rng, mean);
  return true;
}

/* The bytes a sample of a request of n bytes was drawn on: the class
 * size of a small request (the caches count per class), else n. */
static uint64_t unit_of(size_t n) { return n <= XA_SMALL_MAX ? xa_classes[xa_sizeclass_of(n)].size : n; }

static size_t rec_bucket(uintptr_t p) { return (size_t)(((p >> 12) * 0x9E3779B97F4A7C15ull) >> 48); }

static uint64_t stack_hash(const uintptr_t *pcs, unsigned depth) {
  uint64_t h = 0xcbf29ce484222325ull ^ depth;
  for (unsigned i = 0; i < depth; i++) h = (h ^ pcs[i]) * 0x100000001b3ull;
  return h ^ (h >> 29);
}

static struct pstack *stack_find(uint64_t h, const uintptr_t *pcs, unsigned depth) {
  for (struct pstack *s = stack_tab[h % STACK_BUCKETS]; s; s = s->chain)
    if (s->hash == h && s->depth == depth && !memcmp(s->pcs, pcs, depth * sizeof *pcs)) return s;
  return NULL;
}

/* Every stack's live figures become its peak figures.  Under prof_lock. */
static void snapshot_peak(void) {
  for (struct pstack *s = stack_list; s; s = s->all) {
    s->peak_objs = s->live_objs;
    s->peak_bytes = s->live_bytes;
  }
  peak_saved = live_total;
}

static void dump_if_pending(void) {
  if (unlikely(__atomic_load_n(&dump_pending, __ATOMIC_RELAXED)) &&
      __atomic_exchange_n(&dump_pending, 0, __ATOMIC_ACQ_REL))
    xa_prof_dump(XA_PROF_LIVE, NULL, NULL, 0);
}

void xa_prof_record(void *p, size_t n) {
  uintptr_t pcs[XA_PROF_DEPTH];
  unsigned depth = xa_backtrace(pcs, XA_PROF_DEPTH);
  uint64_t h = stack_hash(pcs, depth);
  double w = xa_sample_weight(unit_of(n), mean), bytes = w * (double)n;
  struct pstack *fresh = NULL, *s;
  xa_lock(&prof_lock);
  for (;;) {
    s = stack_find(h, pcs, depth);
    if (!s && fresh) {                      /* ours, made outside the lock */
      s = fresh;
      fresh = NULL;
      s->chain = stack_tab[h % STACK_BUCKETS];
      stack_tab[h % STACK_BUCKETS] = s;
      s->all = stack_list;
      stack_list = s;
      nstacks++;
    }
    if (s && rec_spare) break;
    xa_unlock(&prof_lock);
    struct rec *batch = NULL;
    if (!s) {
      fresh = xa_base_alloc(sizeof *fresh + depth * sizeof *pcs);
      if (!fresh) return;                    /* no memory: not recorded */
      fresh->hash = h;
      fresh->depth = depth;
      memcpy(fresh->pcs, pcs, depth * sizeof *pcs);
    } else if (!(batch = xa_base_alloc(REC_BATCH * sizeof *batch))) {
      return;
    }
    xa_lock(&prof_lock);
    for (unsigned i = 0; batch && i < REC_BATCH; i++) {
      batch[i].chain = rec_spare;
      rec_spare = &batch[i];
    }
  }
  struct rec *r = rec_spare;
  rec_spare = r->chain;
  r->ptr = (uintptr_t)p;
  r->size = n;
  r->unit = unit_of(n);
  r->stack = s;
  size_t b = rec_bucket(r->ptr);
  r->chain = rec_tab[b];
  __atomic_store_n(&rec_tab[b], r, __ATOMIC_RELEASE);
  s->alloc_objs += w;
  s->alloc_bytes += bytes;
  s->live_objs += w;
  s->live_bytes += bytes;
  live_total += bytes;
  if (live_total > peak_max) peak_max = live_total;
  if (live_total >= peak_saved + peak_saved / 32) snapshot_peak();
  nsamples++;
  nlive++;
  xa_unlock(&prof_lock);
  dump_if_pending();
}

bool xa_prof_sampled(const void *p, size_t *n) {
  size_t b = rec_bucket((uintptr_t)p);
  if (!__atomic_load_n(&rec_tab[b], __ATOMIC_ACQUIRE)) return false;
  xa_lock(&prof_lock);
  struct rec *r = rec_tab[b];
  while (r && r->ptr != (uintptr_t)p) r = r->chain;
  if (r && n) *n = r->size;
  xa_unlock(&prof_lock);
  return r != NULL;
}

/* Unlink p's record and take its weight out of the totals; NULL if p has
 * none.  Under prof_lock. */
static struct rec *unlink_rec(const void *p) {
  struct rec **at = &rec_tab[rec_bucket((uintptr_t)p)];
  while (*at && (*at)->ptr != (uintptr_t)p) at = &(*at)->chain;
  struct rec *r = *at;
  if (!r) return NULL;
  __atomic_store_n(at, r->chain, __ATOMIC_RELEASE);
  double w = xa_sample_weight(r->unit, mean), bytes = w * (double)r->size;
  r->stack->live_objs -= w;
  r->stack->live_bytes -= bytes;
  live_total -= bytes;
  nlive--;
  return r;
}

bool xa_prof_take(const void *p, struct xa_prof_taken *t) {
  /* the block's owner calls: its record, if any, was published before
   * the program could have passed p to this thread */
  t->rec = NULL;
  if (!__atomic_load_n(&rec_tab[rec_bucket((uintptr_t)p)], __ATOMIC_ACQUIRE)) return false;
  xa_lock(&prof_lock);
  t->rec = unlink_rec(p);
  xa_unlock(&prof_lock);
  dump_if_pending();
  return t->rec != NULL;
}

void xa_prof_put_back(const struct xa_prof_taken *t) {
  struct rec *r = t->rec;
  if (!r) return;
  double w = xa_sample_weight(r->unit, mean), bytes = w * (double)r->size;
  xa_lock(&prof_lock);
  size_t b = rec_bucket(r->ptr);
  r->chain = rec_tab[b];
  __atomic_store_n(&rec_tab[b], r, __ATOMIC_RELEASE);
  r->stack->live_objs += w;
  r->stack->live_bytes += bytes;
  live_total += bytes;
  nlive++;
  xa_unlock(&prof_lock);
}

void xa_prof_drop(const struct xa_prof_taken *t) {
  struct rec *r = t->rec;
  if (!r) return;
  xa_lock(&prof_lock);
  r->chain = rec_spare;
  rec_spare = r;
  xa_unlock(&prof_lock);
}

void xa_prof_asked(const void *p, size_t n) {
  if (!__atomic_load_n(&rec_tab[rec_bucket((uintptr_t)p)], __ATOMIC_ACQUIRE)) return;
  xa_lock(&prof_lock);
  struct rec *r = rec_tab[rec_bucket((uintptr_t)p)];
  while (r && r->ptr != (uintptr_t)p) r = r->chain;
  if (r) {
    double w = xa_sample_weight(r->unit, mean), d = w * ((double)n - (double)r->size);
    r->stack->alloc_bytes += d;
    r->stack->live_bytes += d;
    live_total += d;
    r->size = n;
  }
  xa_unlock(&prof_lock);
}

void xa_prof_forget(const void *p) {
  struct xa_prof_taken t;
  if (xa_prof_take(p, &t)) xa_prof_drop(&t);
}

/* ---- dumps --------------------------------------------------------------- */

static int64_t rounded(double v) { return v < 0.5 ? 0 : (int64_t)(v + 0.5); }

static size_t append(char *buf, size_t at, size_t cap, const char *s, size_t n) {
  size_t room = at < cap ? cap - 1 - at : 0;
  if (n > room) n = room;
  memcpy(buf + at, s, n);
  return at + n;
}
#define APPEND_LIT(buf, at, cap, lit) append(buf, at, cap, lit, sizeof lit - 1)

static size_t append_dec(char *buf, size_t at, size_t cap, uint64_t v) {
  char d[24];
  return append(buf, at, cap, d, xa_fmt_dec(d, v));
}

/* PREFIX.<pid>.<seq>[.peak|.leak].heap.pb, NUL-terminated in buf. */
static void default_name(char *buf, size_t cap, enum xa_prof_kind kind) {
  const char *prefix = xa_opt.prof_prefix[0] ? xa_opt.prof_prefix : "xalloc";
  size_t n = append(buf, 0, cap, prefix, strlen(prefix));
  n = APPEND_LIT(buf, n, cap, ".");
  n = append_dec(buf, n, cap, (uint64_t)xa_os_pid());
  n = APPEND_LIT(buf, n, cap, ".");
  n = append_dec(buf, n, cap, __atomic_fetch_add(&dump_seq, 1, __ATOMIC_RELAXED));
  if (kind == XA_PROF_PEAK) n = APPEND_LIT(buf, n, cap, ".peak");
  if (kind == XA_PROF_LEAK) n = APPEND_LIT(buf, n, cap, ".leak");
  n = APPEND_LIT(buf, n, cap, ".heap.pb");
  buf[n] = 0;
}

/* Frames pprof drops (with everything they called) when xalloc's own
 * frames are in the stacks: libxalloc.a linked into the program. */
static const char drop_frames[] =
    "malloc|calloc|realloc|reallocarray|posix_memalign|aligned_alloc|memalign|valloc|pvalloc|"
    "__libc_.*|__posix_memalign|operator new.*|_Zn[wa]m.*|xa_.*";

/* Totals of a dump, for the exit report. */
struct dump_totals {
  uint64_t samples, stacks;
  double objs, bytes;
  double loader_bytes;      /* of blocks the dynamic loader allocated */
};

static int dump(enum xa_prof_kind kind, const char *path, char *out, size_t cap, struct dump_totals *tot) {
  if (!xa_prof_on) return ENOENT;
  char name[XA_OPT_STR_MAX + 80];
  if (!path) {
    default_name(name, sizeof name, kind);
    path = name;
  }
  if (out && cap) {
    size_t n = strlen(path) < cap ? strlen(path) : cap - 1;
    memcpy(out, path, n);
    out[n] = 0;
  }
  /* The samples: one per stack with something to show, copied under the
   * lock into memory mapped before it (stacks only come, never go). */
  struct xa_pprof_sample *smp = NULL;
  size_t map_bytes = 0, ns = 0;
  for (;;) {
    uint64_t room = __atomic_load_n(&nstacks, __ATOMIC_RELAXED) + 64;
    map_bytes = XA_ALIGN_UP(room * sizeof *smp, xa_os_page);
    smp = xa_os_map(map_bytes, xa_os_page);
    if (!smp) return EIO;
    xa_lock(&prof_lock);
    if (nstacks <= room) break;
    xa_unlock(&prof_lock);
    xa_os_unmap(smp, map_bytes);
  }
  bool current_peak = live_total >= peak_saved;    /* the peak is now */
  tot->samples = nlive;
  for (struct pstack *s = stack_list; s; s = s->all) {
    struct xa_pprof_sample *x = &smp[ns];
    x->pcs = s->pcs;
    x->depth = s->depth;
    if (kind == XA_PROF_PEAK) {
      x->value[0] = rounded(current_peak ? s->live_objs : s->peak_objs);
      x->value[1] = rounded(current_peak ? s->live_bytes : s->peak_bytes);
      if (!x->value[0] && !x->value[1]) continue;
    } else {
      x->value[0] = rounded(s->alloc_objs);
      x->value[1] = rounded(s->alloc_bytes);
      x->value[2] = rounded(s->live_objs);
      x->value[3] = rounded(s->live_bytes);
      if (kind == XA_PROF_LEAK && !x->value[2]) continue;
      if (x->value[2] && s->depth && xa_backtrace_in_loader(s->pcs[0])) {
        tot->loader_bytes += s->live_bytes;
      } else if (x->value[2]) {
        tot->objs += s->live_objs;
        tot->bytes += s->live_bytes;
        tot->stacks++;
      }
    }
    ns++;
  }
  xa_unlock(&prof_lock);

  struct xa_pprof_profile p = {0};
  if (kind == XA_PROF_PEAK) {
    p.ntypes = 2;
    p.type[0] = "inuse_objects", p.unit[0] = "count";
    p.type[1] = "inuse_space", p.unit[1] = "bytes";
    p.default_type = 1;
  } else {
    p.ntypes = 4;
    p.type[0] = "alloc_objects", p.unit[0] = "count";
    p.type[1] = "alloc_space", p.unit[1] = "bytes";
    p.type[2] = "inuse_objects", p.unit[2] = "count";
    p.type[3] = "inuse_space", p.unit[3] = "bytes";
    p.default_type = 3;
  }
  p.period_type = "space";
  p.period_unit = "bytes";
  p.period = (int64_t)mean;
  p.drop_frames = xa_backtrace_skips_self() ? NULL : drop_frames;
  p.comment = kind == XA_PROF_PEAK ? "xalloc heap profile: the live heap at its peak (within 1/32)"
              : kind == XA_PROF_LEAK ? "xalloc heap profile: blocks still allocated at exit"
                                     : "xalloc heap profile: the live heap, and every allocation since start";
  p.time_ns = xa_os_realtime();
  p.nsamples = ns;
  p.samples = smp;
  int fd = xa_os_open_write(path);
  bool ok = fd >= 0 && xa_pprof_write(fd, &p);
  if (fd >= 0) xa_os_close(fd);
  xa_os_unmap(smp, map_bytes);
  if (!ok) return EIO;
  __atomic_add_fetch(&ndumps, 1, __ATOMIC_RELAXED);
  return 0;
}

int xa_prof_dump(enum xa_prof_kind kind, const char *path, char *out, size_t cap) {
  struct dump_totals tot = {0};
  int rc = dump(kind, path, out, cap, &tot);
  dump_if_pending();          /* a signal that came while the lock was held */
  return rc;
}

/* ---- at exit, and on a signal ------------------------------------------ */

static void report_at_exit(void) {
  char path[XA_OPT_STR_MAX + 80], line[XA_OPT_STR_MAX + 300];
  struct dump_totals tot = {0};
  int rc = dump(XA_PROF_LEAK, NULL, path, sizeof path, &tot);
  size_t n = APPEND_LIT(line, 0, sizeof line, "xalloc: prof: ");
  if (rc) {
    n = APPEND_LIT(line, n, sizeof line, "could not write the leak profile ");
    n = append(line, n, sizeof line, path, strlen(path));
  } else {
    if (!tot.stacks) {
      n = APPEND_LIT(line, n, sizeof line, "no sampled block is still allocated at exit");
    } else {
      n = APPEND_LIT(line, n, sizeof line, "still allocated at exit: about ");
      n = append_dec(line, n, sizeof line, (uint64_t)rounded(tot.bytes));
      n = APPEND_LIT(line, n, sizeof line, " bytes in about ");
      n = append_dec(line, n, sizeof line, (uint64_t)rounded(tot.objs));
      n = APPEND_LIT(line, n, sizeof line, " blocks from ");
      n = append_dec(line, n, sizeof line, tot.stacks);
      n = APPEND_LIT(line, n, sizeof line, " call stacks");
    }
    /* The loader's blocks (thread-local storage vectors) live until exit
     * by design: named apart, not counted. */
    if (rounded(tot.loader_bytes)) {
      n = APPEND_LIT(line, n, sizeof line, ", besides about ");
      n = append_dec(line, n, sizeof line, (uint64_t)rounded(tot.loader_bytes));
      n = APPEND_LIT(line, n, sizeof line, " bytes the dynamic loader keeps");
    }
    n = APPEND_LIT(line, n, sizeof line, "; profile ");
    n = append(line, n, sizeof line, path, strlen(path));
  }
  n = APPEND_LIT(line, n, sizeof line, "\n");
  int fd = xa_os_kept_stderr();
  if (fd >= 0) xa_os_write_fd(fd, line, n);
}

/* A dump now unless this thread was interrupted inside the profiler (it
 * holds the lock): then whoever holds it dumps when it lets go. */
static void on_signal(int sig) {
  (void)sig;
  __atomic_store_n(&dump_pending, 1, __ATOMIC_RELEASE);
  if (pthread_mutex_trylock(&prof_lock.m) != 0) return;
  pthread_mutex_unlock(&prof_lock.m);
  dump_if_pending();
}

void xa_prof_at_load(void) {
  if (!xa_prof_on) return;
  if (xa_opt.prof_unwind == xa_opt_prof_unwind_libgcc && !xa_backtrace_use_unwinder()) {
    static const char msg[] = "xalloc: prof_unwind:libgcc: libgcc_s.so.1 not found; call stacks by frame pointers\n";
    xa_os_write_err(msg, sizeof msg - 1);
  }
  if (xa_opt.prof_signal) xa_os_on_signal((int)xa_opt.prof_signal, on_signal);
  if (xa_opt.prof_dump_on_exit) {
    xa_os_keep_stderr();
    atexit(report_at_exit);
  }
}

void xa_prof_stats(struct xa_prof_stats *st) {
  memset(st, 0, sizeof *st);
  st->dumps = __atomic_load_n(&ndumps, __ATOMIC_RELAXED);
  if (!xa_prof_on) return;
  xa_lock(&prof_lock);
  st->samples = nsamples;
  st->live = nlive;
  st->live_bytes = (uint64_t)rounded(live_total);
  st->peak_bytes = (uint64_t)rounded(peak_max);
  st->stacks = nstacks;
  xa_unlock(&prof_lock);
  dump_if_pending();
}

void xa_prof_live_small(uint64_t out[XA_NSMALL]) {
  if (!xa_prof_on) return;
  xa_lock(&prof_lock);
  for (size_t b = 0; b < REC_BUCKETS; b++)
    for (struct rec *r = rec_tab[b]; r; r = r->chain)
      if (r->size <= XA_SMALL_MAX) out[xa_sizeclass_of(r->size)]++;
  xa_unlock(&prof_lock);
  dump_if_pending();
}

bool xa_prof_rounding(uint64_t *bytes) {
  *bytes = 0;
  if (!xa_prof_on) return false;
  double sum = 0;
  xa_lock(&prof_lock);
  for (size_t b = 0; b < REC_BUCKETS; b++)
    for (struct rec *r = rec_tab[b]; r; r = r->chain)
      if (r->size <= XA_SMALL_MAX && r->unit >= r->size)
        sum += xa_sample_weight(r->unit, mean) * (double)(r->unit - r->size);
  xa_unlock(&prof_lock);
  dump_if_pending();
  *bytes = (uint64_t)rounded(sum);
  return true;
}

void xa_prof_prefork(void) { xa_lock(&prof_lock); }
void xa_prof_postfork_parent(void) { xa_unlock(&prof_lock); }
void xa_prof_postfork_child(void) { xa_lock_reinit(&prof_lock); }
