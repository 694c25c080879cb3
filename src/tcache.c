/* Thread-cache slow paths: creation, refill, flush, GC, teardown. */
#include "tcache.h"
#include "arena.h"
#include "decay.h"
#include "lock.h"
#include "options.h"
#include "os.h"
#include "sample.h"
#include "valgrind.h"
#include <pthread.h>
#include <string.h>

/* Every thread starts here, and comes back when its cache is torn down.
 * The pop gates are closed for good (~0: no `top` is above it), as the
 * push gates are (NULL) and the divisibility constants (0): every call
 * misses.  malloc's fast path still moves a bin's `top` down and back up
 * (xa_tbin_pop_begin) before it sees the gate, and threads here do so
 * at once with plain adds, so a `top` here holds no meaning: nothing
 * reads it but the fast path, whose gate never opens. */
#define BOOT_GATE {.pop_gate = (void **)~(uintptr_t)0}
struct xa_tcache xa_tcache_boot = {.none = BOOT_GATE, .bins = {[0 ... XA_NSMALL - 1] = BOOT_GATE}};
__thread struct xa_tcache *xa_tc __attribute__((tls_model("initial-exec"))) = &xa_tcache_boot;
/* 0: no cache yet, 1: cache live, 2: torn down (thread is exiting). */
static __thread uint8_t tc_state __attribute__((tls_model("initial-exec")));

static pthread_key_t tc_key;
static xa_lock_t tc_lock = XA_LOCK_INIT;       /* guards the two lists */
static struct xa_tcache *tc_live;               /* every live cache */
static struct xa_tcache *tc_recycled;           /* caches of exited threads */
static unsigned tc_nrecycled;
/* Caches of exited threads kept for new threads; the others are unmapped,
 * so that memory does not scale with the most threads ever alive. */
#define RECYCLE_KEEP 16
static size_t tc_mapped;                        /* bytes of cache mappings */
static unsigned tc_nlive;                       /* caches on the live list */
static unsigned tc_nidle;                       /* of them, idle (tc->idle) */
static size_t tc_total_cap = SIZE_MAX;          /* a memory limit's share */

void xa_tcache_limit_total(size_t bytes) { __atomic_store_n(&tc_total_cap, bytes, __ATOMIC_RELAXED); }

size_t xa_tcache_budget(void) {
  size_t total = (size_t)xa_opt.tcache_total_bytes, cap = __atomic_load_n(&tc_total_cap, __ATOMIC_RELAXED);
  return total < cap ? total : cap;
}
static size_t tc_slots_total;                   /* slots per cache */

/* A cache's slots: first a small area where every bin starts with
 * SMALL_CAP slots (or its capacity, if lower), then each bin's full-size
 * stack, which it moves to when it needs more (bin_grow).  A thread that
 * uses a class a little touches only the small area's page or two. */
#define SMALL_CAP 16
static size_t tc_small_total;                   /* slots in the small area */
static size_t tc_full_off[XA_NSMALL];           /* each bin's full-size stack */
/* Slow start: a class's first refill in a thread is (capacity / 2) >>
 * this, about START_BYTES of objects (at least one) and no more than the
 * small area holds (a class touched briefly never moves its bin to the
 * full-size stack, whose pages an idle thread's cache keeps in part:
 * xa_tcache_reclaim); each miss doubles it. */
#define START_BYTES 1024
static uint8_t tc_start_shift[XA_NSMALL];

static uint32_t tc_flush_gen;                   /* bumped by xa_tcache_request_flush */
static bool tc_reclaim_off;                     /* membarrier refused: no reclaims */
static uint64_t tc_reclaimed;                   /* objects reclaimed, ever (tc_lock) */

#define GC_PERIOD 256   /* slow-path events between idle-bin sweeps */
#define BIN_MIN 8       /* objects a bin holds at least, */
#define BIN_MAX 1024    /* and at most, whatever tcache_bytes says */
_Static_assert(XA_NSMALL * (SMALL_CAP + BIN_MAX) <= UINT16_MAX, "slot indexes and counts fit taken[] and keep[]");
_Static_assert(__builtin_offsetof(struct xa_tcache, slots) / sizeof(void *) + XA_NSMALL * (SMALL_CAP + BIN_MAX) <=
                   UINT16_MAX,
               "a bin's distance to its stack fits stack_d");
_Static_assert(XA_SMALL_MAX <= UINT16_MAX, "a class's size fits size_min");

/* Boost: a bin that both ran empty (a refill) and overflowed (a flush)
 * within one GC period is passing objects back and forth with the
 * arenas: its thread allocates and frees the class in bursts larger than
 * tcache_bytes holds, typically objects other threads allocated (each
 * round trip takes an arena lock, and for classes of a few KiB, whose
 * slabs hold one to four objects, empties and recarves a slab: page
 * faults once decay returned its pages).  Each such overflow doubles the
 * bin's capacity, up to BOOST_MAX times (tcache_max, and never past
 * BIN_MAX or the global budget); each GC period in which the bin did not
 * run empty halves it again.  A bin that only fills (a thread freeing
 * what others allocate) or only empties never grows past tcache_bytes.
 * Only classes whose slabs hold BOOST_SLAB_OBJS objects or fewer (1 KiB
 * and up) are boosted: a small class's slab absorbs the round trips, and
 * boosting those too cost sh8bench 70% more peak RSS for no more speed.
 * On mimalloc-bench's rptest (8..16000 bytes, half freed by the other
 * thread) the boost halves the time and cuts peak RSS by 40% (2 CPUs,
 * 5 runs: 0.655 -> 0.313 s relative time, 22.3 -> 13.1 MB). */
#define BOOST_MAX 2
#define BOOST_SLAB_OBJS 8

static uint32_t small_cap(unsigned c) {
  return xa_classes[c].tcache_cap < SMALL_CAP ? xa_classes[c].tcache_cap : SMALL_CAP;
}

/* The global budget: tcache_total_bytes shared evenly by the active
 * caches (live, and not idle: a reclaim pass emptied an idle one, which
 * takes a share again at its thread's next slow path), and a cache's
 * share by BUDGET_BINS of its bins (few threads use more classes than that
 * at once).  A bin takes at most its share, and gives back what is over
 * it at the cache's next GC: with 16 threads the default leaves every bin
 * its full size; with 2000 busy ones a bin holds about 1 KiB, and memory
 * no longer grows with the thread count; with 2000 threads of which 4 are
 * busy, those 4 get full-size bins.  Racy reads of the counts: a hint. */
#define BUDGET_BINS 16
static unsigned active_caches(void) {
  unsigned live = __atomic_load_n(&tc_nlive, __ATOMIC_RELAXED), idle = __atomic_load_n(&tc_nidle, __ATOMIC_RELAXED);
  return live > idle ? live - idle : 1;
}
/* Bin c's capacity in tc now: tcache_cap, or more while boosted. */
static uint32_t bin_cap(const struct xa_tcache *tc, unsigned c) {
  uint32_t cap = xa_classes[c].tcache_cap << tc->boost[c];
  return cap < xa_classes[c].tcache_max ? cap : xa_classes[c].tcache_max;
}
static uint32_t bin_budget(const struct xa_tcache *tc, unsigned c) {
  unsigned n = active_caches();
  uint64_t share = (uint64_t)xa_tcache_budget() / (n ? n : 1) / BUDGET_BINS;
  uint64_t objs = share / xa_classes[c].size;
  if (objs > bin_cap(tc, c)) objs = bin_cap(tc, c);
  return objs ? (uint32_t)objs : 1;
}

bool xa_tcache_init_global(void (*at_thread_exit)(void *tc)) {
  tc_small_total = 0;
  for (unsigned c = 0; c < XA_NSMALL; c++) {
    size_t cap = (size_t)xa_opt.tcache_bytes / xa_classes[c].size;
    xa_classes[c].tcache_cap = (uint32_t)(cap < BIN_MIN ? BIN_MIN : cap > BIN_MAX ? BIN_MAX : cap);
    uint32_t max = xa_classes[c].tcache_cap;     /* <= BIN_MAX */
    if (xa_classes[c].nobjs <= BOOST_SLAB_OBJS) max = max << BOOST_MAX < BIN_MAX ? max << BOOST_MAX : BIN_MAX;
    xa_classes[c].tcache_max = max;
    tc_small_total += small_cap(c);
  }
  tc_slots_total = tc_small_total;
  for (unsigned c = 0; c < XA_NSMALL; c++) {
    tc_full_off[c] = tc_slots_total;
    tc_slots_total += xa_classes[c].tcache_max;   /* the full-size stack fits a boosted bin */
    unsigned k = 0, half = xa_classes[c].tcache_cap / 2;
    while ((half >> k) > 1 && ((half >> k) * xa_classes[c].size > START_BYTES || (half >> k) > small_cap(c))) k++;
    tc_start_shift[c] = (uint8_t)k;
  }
  return pthread_key_create(&tc_key, at_thread_exit) == 0;
}

static struct xa_tcache *tc_cursor;              /* next cache the sweep checks */

/* ---- allocation counts ------------------------------------------------ */

uint64_t xa_tcache_sample_mean;
static uint64_t tc_retired_nmalloc[XA_NSMALL];   /* of caches gone (tc_lock) */
static uint64_t tc_uncached_nmalloc[XA_NSMALL];  /* atomic */

static void period_start(struct xa_tcache *tc, unsigned c) {
  uint64_t mean = xa_tcache_sample_mean;
  uint32_t p = mean ? xa_sample_count(&tc->rng, mean, xa_classes[c].size) : XA_COUNT_PERIOD;
  if (p > INT32_MAX) p = INT32_MAX;   /* the countdown's range */
  tc->period[c] = p;
  tc->bins[c].countdown = p;
}

/* A cache's count of class c so far: racy for another thread's cache. */
static uint64_t counted(const struct xa_tcache *tc, unsigned c) {
  int64_t left = __atomic_load_n(&tc->bins[c].countdown, __ATOMIC_RELAXED);
  uint32_t period = __atomic_load_n(&tc->period[c], __ATOMIC_RELAXED);
  return __atomic_load_n(&tc->nmalloc[c], __ATOMIC_RELAXED) + (left >= 0 && left <= period ? period - left : 0);
}

static void counts_start(struct xa_tcache *tc) {
  tc->rng = (xa_os_random() ^ (uintptr_t)tc) | 1;
  for (unsigned c = 0; c < XA_NSMALL; c++) {
    tc->nmalloc[c] = 0;
    period_start(tc, c);
  }
}

/* tc goes: its counts join those of caches gone.  Under tc_lock. */
static void counts_retire(struct xa_tcache *tc) {
  for (unsigned c = 0; c < XA_NSMALL; c++) {
    tc_retired_nmalloc[c] += counted(tc, c);
    tc->nmalloc[c] = 0;
    tc->period[c] = 0;
    tc->bins[c].countdown = 0;
  }
}

bool xa_tcache_tick(struct xa_tcache *tc, unsigned cls) {
  struct xa_tbin *b = &tc->bins[cls];
  /* countdown 0: the fast path counted this call and sent it here */
  if (b->countdown > 0 && --b->countdown > 0) return false;
  tc->nmalloc[cls] += tc->period[cls];
  period_start(tc, cls);
  return xa_tcache_sample_mean != 0;
}

void xa_tcache_count_uncached(unsigned cls) { __atomic_add_fetch(&tc_uncached_nmalloc[cls], 1, __ATOMIC_RELAXED); }

void xa_tcache_class_counts(uint64_t nmalloc[XA_NSMALL], uint64_t cached[XA_NSMALL]) {
  xa_lock(&tc_lock);
  for (unsigned c = 0; c < XA_NSMALL; c++) {
    nmalloc[c] = tc_retired_nmalloc[c] + __atomic_load_n(&tc_uncached_nmalloc[c], __ATOMIC_RELAXED);
    cached[c] = 0;
  }
  for (struct xa_tcache *tc = tc_live; tc; tc = tc->next)
    for (unsigned c = 0; c < XA_NSMALL; c++) {
      nmalloc[c] += counted(tc, c);
      void **top = __atomic_load_n(&tc->bins[c].top, __ATOMIC_RELAXED), **bottom = xa_tbin_stack(&tc->bins[c]) + tc->taken[c];
      cached[c] += top > bottom ? (uint64_t)(top - bottom) : 0;
    }
  xa_unlock(&tc_lock);
}

/* Off the live list (tc_lock held); its counts join those of caches gone
 * in the same step, so that no reader misses them in between. */
static void tcache_unlink(struct xa_tcache *tc) {
  counts_retire(tc);
  if (tc->prev) tc->prev->next = tc->next;
  else tc_live = tc->next;
  if (tc->next) tc->next->prev = tc->prev;
  if (tc_cursor == tc) tc_cursor = tc->next;
  tc_nlive--;
  if (tc->idle) tc_nidle--;
  tc->idle = 0;
}

static void tcache_recycle(struct xa_tcache *tc) {
  tc->prev = NULL;
  tc->next = tc_recycled;
  tc_recycled = tc;
}

/* A cache is a mapping of its own: the header, then the slots. */
static size_t tcache_bytes(void) {
  return XA_ALIGN_UP(sizeof(struct xa_tcache) + tc_slots_total * sizeof(void *), xa_os_page);
}

static void tcache_flush_bins(struct xa_tcache *tc);
static void bins_small(struct xa_tcache *tc);
static void bins_settle(struct xa_tcache *tc);

/* The pages of tc's full-size stacks (every bin on the small area, or
 * none of them in use) go back to the kernel. */
static void stacks_purge(struct xa_tcache *tc) {
  uintptr_t lo = XA_ALIGN_UP((uintptr_t)(tc->slots + tc_small_total), xa_os_page);
  uintptr_t hi = (uintptr_t)(tc->slots + tc_slots_total) & ~(uintptr_t)(xa_os_page - 1);
  if (lo < hi) xa_os_purge((void *)lo, hi - lo);
}

/* Cache tc, already off the live list (so no reclaimer works on it), goes
 * back: its objects to the arenas, the cache to the recycled list, or,
 * with RECYCLE_KEEP there already, to the kernel. */
static void tcache_retire(struct xa_tcache *tc) {
  /* A reclaimer may still be purging its stacks (tc off the live list
   * after that reclaimer let go of tc_lock): wait for it, a single
   * madvise, before the cache is unmapped or handed on. */
  while (__atomic_load_n(&tc->stacks_purging, __ATOMIC_ACQUIRE)) xa_os_yield();
  bins_settle(tc);                   /* what a reclaim took is gone already */
  tc->shrink = 0;
  tcache_flush_bins(tc);
  xa_lock(&tc_lock);
  bool keep = tc_nrecycled < RECYCLE_KEEP;
  if (keep) tc_nrecycled++;          /* its place, taken now: threads exit together */
  else tc_mapped -= tcache_bytes();
  xa_unlock(&tc_lock);
  if (!keep) {
    xa_os_unmap(tc, tcache_bytes());
    return;
  }
  if (tc->grown) {
    /* The full-size stacks go back to the kernel; the next thread to
     * take this cache starts small again. */
    bins_small(tc);
    stacks_purge(tc);
  }
  xa_lock(&tc_lock);
  tcache_recycle(tc);
  xa_unlock(&tc_lock);
}

/* Recycled caches spare a program that makes threads in turn an mmap
 * and the first page faults per thread.  Once none has been taken for
 * idle_ns, those on the list go back to the kernel (a place reserved by
 * a cache being retired stays counted: it joins the list after). */
static uint64_t tc_recycle_takes;                 /* tc_lock */
static struct xa_idle_watch tc_recycled_watch;    /* tc_lock */

size_t xa_tcache_trim_recycled(uint64_t now, uint64_t idle_ns) {
  if (!__atomic_load_n(&tc_recycled, __ATOMIC_RELAXED)) return 0;    /* racy peek: none */
  struct xa_tcache *gone = NULL;
  size_t n = 0;
  xa_lock(&tc_lock);
  if (!idle_ns || xa_idle_due(&tc_recycled_watch, tc_recycle_takes, now, idle_ns)) {
    gone = tc_recycled;
    tc_recycled = NULL;
    for (struct xa_tcache *tc = gone; tc; tc = tc->next) n++;
    tc_nrecycled -= (unsigned)n;
    tc_mapped -= n * tcache_bytes();
    xa_idle_reset(&tc_recycled_watch);
  }
  xa_unlock(&tc_lock);
  while (gone) {
    struct xa_tcache *next = gone->next;
    xa_os_unmap(gone, tcache_bytes());
    gone = next;
  }
  return n * tcache_bytes();
}

bool xa_tcache_recycled_any(void) { return __atomic_load_n(&tc_recycled, __ATOMIC_RELAXED) != NULL; }

/* Is tc on the live list?  (Compares pointers only: tc may be unmapped.) */
static bool tcache_is_live(const struct xa_tcache *tc) {
  for (const struct xa_tcache *t = tc_live; t; t = t->next)
    if (t == tc) return true;
  return false;
}

/* glibc runs thread-specific data destructors for at most
 * PTHREAD_DESTRUCTOR_ITERATIONS rounds: a thread whose first allocation
 * comes in the last round gets a cache whose destructor never runs.  Each
 * new cache looks at up to four live ones and asks the kernel (a signal-0
 * tgkill, with no lock held) about at most two: those whose thread made no
 * call since the sweep last looked, since a thread that did is not gone
 * for long enough to matter.  So programs that start and end threads all
 * the time pay no system call here, while an orphan is found on the
 * second look; it is then flushed and recycled.  A reused thread id only
 * delays that.  With SWEEP_MIN_LIVE caches or fewer live there is no
 * sweep at all: orphans are rare, and that few cost little. */
#define SWEEP_MIN_LIVE 32
static void tcache_sweep_orphans(void) {
  if (__atomic_load_n(&tc_nlive, __ATOMIC_RELAXED) <= SWEEP_MIN_LIVE) return;
  for (int looked = 0, asked = 0; looked < 4 && asked < 2; looked++) {
    xa_lock(&tc_lock);
    struct xa_tcache *tc = tc_cursor ? tc_cursor : tc_live;
    tc_cursor = tc ? tc->next : NULL;
    int32_t tid = 0;
    if (tc) {
      uint32_t sig = xa_tcache_activity(tc);
      if (sig == tc->sweep_sig) tid = tc->tid;
      tc->sweep_sig = sig;
    }
    xa_unlock(&tc_lock);
    if (!tid) continue;
    asked++;
    if (xa_os_thread_alive(tid)) continue;
    xa_lock(&tc_lock);
    /* not retired meanwhile (then it may be unmapped, or reused) */
    bool orphan = tcache_is_live(tc) && tc->tid == tid;
    if (orphan) tcache_unlink(tc);
    xa_unlock(&tc_lock);
    if (orphan) tcache_retire(tc);
  }
}

/* The gates (tcache.h): closed, every fast-path pop and push misses. */
static void gates_open(struct xa_tcache *tc) {
  for (unsigned c = 0; c < XA_NSMALL; c++) {
    struct xa_tbin *b = &tc->bins[c];
    __atomic_store_n(&b->pop_gate, xa_tbin_stack(b), __ATOMIC_RELAXED);
    __atomic_store_n(&b->push_gate, tc->end[c], __ATOMIC_RELAXED);
  }
}

static void gates_close(struct xa_tcache *tc) {
  for (unsigned c = 0; c < XA_NSMALL; c++) {
    struct xa_tbin *b = &tc->bins[c];
    __atomic_store_n(&b->pop_gate, (void **)~(uintptr_t)0, __ATOMIC_RELAXED);
    __atomic_store_n(&b->push_gate, (void **)NULL, __ATOMIC_RELAXED);
  }
}

uint32_t xa_tcache_activity(const struct xa_tcache *tc) {
  uint64_t tops = 0, counts = 0;
  for (unsigned c = 0; c < XA_NSMALL; c++) {
    tops += (uintptr_t)__atomic_load_n(&tc->bins[c].top, __ATOMIC_RELAXED);
    counts += (uint64_t)__atomic_load_n(&tc->bins[c].countdown, __ATOMIC_RELAXED);
  }
  /* A pop lowers the tops' sum and a countdown by one each, a push raises
   * the tops' sum: a malloc and a free leave the tops as they were, not
   * the countdowns.  A slow path raises entered. */
  return __atomic_load_n(&tc->entered, __ATOMIC_RELAXED) * 0x9e3779b1u + (uint32_t)(tops >> 3) * 0x85ebca6bu +
         (uint32_t)counts;
}

/* What a reclaim pass took from the bottom of each bin (taken[]) leaves
 * it: the objects above move down.  The owner, with the gates closed and
 * tc_lock held, or on a cache off the live list. */
static void bins_settle(struct xa_tcache *tc) {
  for (unsigned c = 0; c < XA_NSMALL; c++) {
    uint32_t k = tc->taken[c];
    if (!k) continue;
    struct xa_tbin *b = &tc->bins[c];
    uint32_t n = xa_tbin_count(b) - k;
    memmove(xa_tbin_stack(b), xa_tbin_stack(b) + k, n * sizeof(void *));
    b->top = xa_tbin_stack(b) + n;
    tc->taken[c] = 0;
  }
}

static void bins_budget(struct xa_tcache *tc);
static void bin_flush(struct xa_tbin *b, uint32_t k);

/* An idle cache's bins, settled, move to the small area with what they
 * hold (a push under way during the reclaim), within the budget; the
 * full-size stacks are then unused.  The owner, under tc_lock. */
static void bins_to_small(struct xa_tcache *tc) {
  void **slot = tc->slots;
  for (unsigned c = 0; c < XA_NSMALL; c++) {
    struct xa_tbin *b = &tc->bins[c];
    uint32_t n = xa_tbin_count(b);
    if (xa_tbin_stack(b) != slot) {
      if (n > small_cap(c)) {
        bin_flush(b, n - small_cap(c));
        n = small_cap(c);
      }
      memcpy(slot, xa_tbin_stack(b), n * sizeof(void *));
      xa_tbin_set_stack(b, slot);
      b->top = slot + n;
    }
    slot += small_cap(c);
  }
  bins_budget(tc);
  for (unsigned c = 0; c < XA_NSMALL; c++) {
    uint32_t n = xa_tbin_count(&tc->bins[c]), cap = xa_tbin_cap(tc, c);
    if (n > cap) bin_flush(&tc->bins[c], n - cap);
  }
  tc->grown = 0;
  tc->shrink = 0;
}

/* A reclaimer closed the gates: apply what it did, and reopen them.  It
 * holds tc_lock for its pass and waits for nothing the owner holds.  Only
 * the owner reopens: a reclaimer that did so could let a push that read
 * `top` before the pass use a reopened gate. */
static void XA_NOINLINE gates_reopen(struct xa_tcache *tc) {
  /* A reclaimer may still be purging the stacks it found idle (it does so
   * after letting go of tc_lock): the objects move only once that is
   * over, and no new purge starts while tc_lock is held. */
  for (;;) {
    while (__atomic_load_n(&tc->stacks_purging, __ATOMIC_ACQUIRE)) xa_os_yield();
    xa_lock(&tc_lock);
    if (!__atomic_load_n(&tc->stacks_purging, __ATOMIC_ACQUIRE)) break;
    xa_unlock(&tc_lock);
  }
  bins_settle(tc);
  if (tc->idle) {                   /* busy again: a share of the budget */
    tc->idle = 0;
    tc_nidle--;
  }
  bool shrink = tc->shrink;
  if (shrink) bins_to_small(tc);
  gates_open(tc);
  tc->gates_closed = 0;
  xa_unlock(&tc_lock);
  /* The reclaimer gave back all the stack pages but those it left for a
   * push: they go now.  (None of its bins is there any more, and none
   * moves there before the reclaimer's own purge is over.) */
  if (shrink) stacks_purge(tc);
}

/* Take the claim on the calling thread's cache tc for a slow path (the
 * release is xa_tc_release).  If a reclaimer closed its gates, apply what
 * it did and reopen them. */
static void claim_slow(struct xa_tcache *tc) {
  xa_tc_claim(tc);
  if (unlikely(__atomic_load_n(&tc->gates_closed, __ATOMIC_ACQUIRE))) gates_reopen(tc);
}

/* Bins on the small area hold no more than the budget allows now. */
static void bins_budget(struct xa_tcache *tc) {
  for (unsigned c = 0; c < XA_NSMALL; c++) {
    uint32_t budget = bin_budget(tc, c), cap = small_cap(c);
    tc->end[c] = xa_tbin_stack(&tc->bins[c]) + (budget < cap ? budget : cap);
  }
}

/* Every bin (empty) back on the small area. */
static void bins_small(struct xa_tcache *tc) {
  void **slot = tc->slots;
  for (unsigned c = 0; c < XA_NSMALL; c++) {
    xa_tbin_set_stack(&tc->bins[c], slot);
    tc->bins[c].top = slot;
    slot += small_cap(c);
    tc->end[c] = slot;
  }
  tc->grown = 0;
}

/* The owner, inside a slow path: bin c grows to hold `budget` objects (not
 * past its capacity), moving to its full-size stack.  The pointers and
 * gates change under tc_lock, so that no reclaim pass sees them half-way;
 * one that closed the gates meanwhile keeps them closed (claim_slow
 * reopens them at the next slow path). */
static void bin_grow(struct xa_tcache *tc, unsigned c, uint32_t budget) {
  struct xa_tbin *b = &tc->bins[c];
  void **to = tc->slots + tc_full_off[c];
  if (budget <= xa_tbin_cap(tc, c)) return;
  /* Its stacks are being purged (an idle thread's, xa_tcache_reclaim):
   * the bin stays small until that is done. */
  if (unlikely(__atomic_load_n(&tc->stacks_purging, __ATOMIC_ACQUIRE))) return;
  uint32_t n = xa_tbin_count(b);
  if (xa_tbin_stack(b) != to) memcpy(to, xa_tbin_stack(b), n * sizeof(void *));
  xa_lock(&tc_lock);
  xa_tbin_set_stack(b, to);
  b->top = to + n;
  tc->end[c] = to + budget;
  if (!tc->gates_closed) {
    __atomic_store_n(&b->pop_gate, xa_tbin_stack(b), __ATOMIC_RELAXED);
    __atomic_store_n(&b->push_gate, tc->end[c], __ATOMIC_RELAXED);
  }
  xa_unlock(&tc_lock);
  tc->grown = 1;
}

static struct xa_tcache *tcache_new(void) {
  tcache_sweep_orphans();
  xa_lock(&tc_lock);
  struct xa_tcache *tc = tc_recycled;
  if (tc) {
    tc_recycled = tc->next;
    tc_nrecycled--;
    tc_recycle_takes++;
  }
  xa_unlock(&tc_lock);
  if (!tc) {
    tc = xa_os_map(tcache_bytes(), xa_os_page);
    if (!tc) return NULL;
    xa_lock(&tc_lock);
    tc_mapped += tcache_bytes();
    xa_unlock(&tc_lock);
    /* malloc indexes the dummy bin for a size the fast path's table has
     * not filled yet: its pop gate stays closed */
    tc->none.pop_gate = (void **)~(uintptr_t)0;
    for (unsigned c = 0; c < XA_NSMALL; c++) {
      tc->bins[c].divmagic = xa_class_divmagic[c];
      tc->bins[c].size_max = xa_classes[c].size;
      tc->bins[c].size_min = (uint16_t)(c ? xa_classes[c - 1].size : 0);
    }
    bins_small(tc);
  }
  /* A new cache's bins (on the small area, empty) hold no more than the
   * budget allows now. */
  memset(tc->boost, 0, sizeof tc->boost);
  if (!tc->grown) bins_budget(tc);
  counts_start(tc);
  gates_open(tc);
  tc->entered = tc->left = 0;
  tc->seen_sig = tc->sweep_sig = 0;
  tc->reclaim = tc->gates_closed = tc->idle = tc->shrink = 0;
  memset(tc->taken, 0, sizeof tc->taken);
  tc->events = 0;
  tc->flush_gen = __atomic_load_n(&tc_flush_gen, __ATOMIC_RELAXED);
  tc->tid = xa_os_tid();
  memset(tc->missed, 0, sizeof tc->missed);
  memcpy(tc->slow_start, tc_start_shift, sizeof tc->slow_start);
  xa_lock(&tc_lock);
  tc->prev = NULL;
  tc->next = tc_live;
  if (tc_live) tc_live->prev = tc;
  tc_live = tc;
  tc_nlive++;
  xa_unlock(&tc_lock);
  return tc;
}

struct xa_tcache *xa_tcache_get(void) {
  if (xa_tc != &xa_tcache_boot) return xa_tc;
  if (tc_state != 0 || !xa_opt.tcache || xa_opt.junk || xa_opt.secure || xa_on_valgrind) return NULL;
  struct xa_tcache *tc = tcache_new();
  if (!tc) return NULL;
  tc_state = 1;
  xa_tc = tc;          /* before setspecific, which may itself call malloc */
  pthread_setspecific(tc_key, tc);
  return tc;
}

static void bin_flush(struct xa_tbin *b, uint32_t k) {
  /* The oldest objects sit at the bottom of the stack. */
  if (!k) return;
  xa_arena_flush(xa_tbin_stack(b), k, "free");
  b->top -= k;
  memmove(xa_tbin_stack(b), xa_tbin_stack(b) + k, xa_tbin_count(b) * sizeof(void *));
}

/* The owner, inside a slow path: bin c gives back what is over `budget`
 * objects (more caches became active since it grew), on its full-size
 * stack; never below its small-area size.  The end and gate change under
 * tc_lock, as in bin_grow. */
static void bin_shrink(struct xa_tcache *tc, unsigned c, uint32_t budget) {
  struct xa_tbin *b = &tc->bins[c];
  if (budget < small_cap(c)) budget = small_cap(c);
  if (xa_tbin_stack(b) != tc->slots + tc_full_off[c] || xa_tbin_cap(tc, c) <= budget) return;
  uint32_t n = xa_tbin_count(b);
  if (n > budget) bin_flush(b, n - budget);
  xa_lock(&tc_lock);
  tc->end[c] = xa_tbin_stack(b) + budget;
  if (!tc->gates_closed) __atomic_store_n(&b->push_gate, tc->end[c], __ATOMIC_RELAXED);
  xa_unlock(&tc_lock);
}

/* Idle-bin GC: a bin that did not miss since the last sweep had objects
 * to spare all period; hand half of them back.  Returns the news for the
 * purger: the GC's period is also the inline purger's. */
static unsigned tcache_gc(struct xa_tcache *tc) {
  tc->events = 0;
  for (unsigned c = 0; c < XA_NSMALL; c++) {
    struct xa_tbin *b = &tc->bins[c];
    if (!tc->missed[c]) {
      if (b->top != xa_tbin_stack(b)) {
        bin_flush(b, (xa_tbin_count(b) + 1) / 2);
        if (tc->slow_start[c] < tc_start_shift[c]) tc->slow_start[c]++;   /* quiet: start slower again */
      }
      if (tc->boost[c]) tc->boost[c]--;   /* had objects to spare: less room */
    }
    tc->missed[c] = 0;
    if (tc->grown) bin_shrink(tc, c, bin_budget(tc, c));
  }
  return XA_TC_RETURNED;
}

/* Has another thread asked for a flush since this cache last looked? */
static bool flush_requested(struct xa_tcache *tc) {
  uint32_t g = __atomic_load_n(&tc_flush_gen, __ATOMIC_RELAXED);
  if (likely(g == tc->flush_gen)) return false;
  tc->flush_gen = g;
  return true;
}

void xa_tcache_request_flush(void) { __atomic_add_fetch(&tc_flush_gen, 1, __ATOMIC_RELAXED); }

static void *alloc_refill(struct xa_tcache *tc, unsigned cls, unsigned *news) {
  struct xa_tbin *b = &tc->bins[cls];
  if (unlikely(flush_requested(tc))) {
    tcache_flush_bins(tc);
    *news |= XA_TC_RETURNED;
  }
  if (++tc->events >= GC_PERIOD) *news |= tcache_gc(tc);
  tc->missed[cls] = 1;
  /* The GC, or a closed gate rather than an empty bin, sent us here. */
  if (b->top != xa_tbin_stack(b)) return *--b->top;
  /* Slow start: a class a thread touches only briefly takes little from
   * the arena; each further miss doubles the batch, up to half the bin. */
  unsigned want = (bin_cap(tc, cls) / 2) >> tc->slow_start[cls];
  if (tc->slow_start[cls]) tc->slow_start[cls]--;
  if (!want) want = 1;
  uint32_t budget = bin_budget(tc, cls);
  if (want > budget) {
    want = budget;
    *news |= XA_TC_SQUEEZED;
  }
  if (want > xa_tbin_cap(tc, cls)) {
    bin_grow(tc, cls, budget);
    /* It may stay small: its stacks are being purged (bin_grow). */
    if (want > xa_tbin_cap(tc, cls)) want = xa_tbin_cap(tc, cls);
  }
  unsigned got = xa_arena_refill(xa_arena_choose(), cls, xa_tbin_stack(b), want);
  if (!got) return NULL;
  b->top = xa_tbin_stack(b) + got - 1;
  *news |= XA_TC_TOOK;
  return *b->top;
}

void *xa_tcache_alloc_refill(struct xa_tcache *tc, unsigned cls, unsigned *news) {
  claim_slow(tc);
  void *p = alloc_refill(tc, cls, news);
  xa_tc_release(tc);
  return p;
}

/* p carries the freed mark: a double free if p already sits in this bin
 * or is free in its slab; otherwise the mark was the user's data (or p
 * sits in another thread's cache, which cannot be seen cheaply). */
static bool freed_already(const struct xa_tbin *b, void *p) {
  for (void *const *q = xa_tbin_stack(b); q != b->top; q++)
    if (*q == p) return true;
  return xa_arena_small_is_free(p);
}

static bool free_flush(struct xa_tcache *tc, unsigned cls, void *p, unsigned *news) {
  struct xa_tbin *b = &tc->bins[cls];
  if (xa_freed_marked(p) && freed_already(b, p)) return false;
  xa_freed_mark(p);
  /* Only a full bin is a slow-path event: frees that merely came this way
   * (realloc's, or a marked object's) must not drive the GC, whose sweeps
   * would then flush every quiet bin again and again. */
  if (b->top == tc->end[cls]) {
    if (++tc->events >= GC_PERIOD) *news |= tcache_gc(tc);
    if (unlikely(flush_requested(tc))) {
      tcache_flush_bins(tc);
      *news |= XA_TC_RETURNED;
    }
  }
  if (b->top == tc->end[cls]) {
    /* Full at its whole capacity after running empty this period: boost. */
    if (tc->missed[cls] && xa_tbin_cap(tc, cls) >= bin_cap(tc, cls) && bin_cap(tc, cls) < xa_classes[cls].tcache_max)
      tc->boost[cls]++;
    if (xa_tbin_cap(tc, cls) < bin_cap(tc, cls)) bin_grow(tc, cls, bin_budget(tc, cls));
  }
  if (b->top == tc->end[cls]) {
    bin_flush(b, xa_tbin_cap(tc, cls) - xa_tbin_cap(tc, cls) / 2);
    *news |= XA_TC_RETURNED;
  }
  *b->top++ = p;
  return true;
}

bool xa_tcache_freed(struct xa_tcache *tc, unsigned cls, void *p) {
  claim_slow(tc);
  bool freed = freed_already(&tc->bins[cls], p);
  xa_tc_release(tc);
  return freed;
}

bool xa_tcache_free_flush(struct xa_tcache *tc, unsigned cls, void *p, unsigned *news) {
  claim_slow(tc);
  bool ok = free_flush(tc, cls, p, news);
  xa_tc_release(tc);
  return ok;
}

void xa_tcache_bury_first(struct xa_tcache *tc, unsigned cls, unsigned *news) {
  struct xa_tbin *b = &tc->bins[cls];
  claim_slow(tc);
  uint32_t n = xa_tbin_count(b);
  if (n == 0) {
    xa_tc_release(tc);
    return;
  }
  void *p = b->top[-1];
  if (n == 1) {                  /* refill above it */
    unsigned want = xa_tbin_cap(tc, cls) / 2;
    unsigned got = want > 1 ? xa_arena_refill(xa_arena_choose(), cls, xa_tbin_stack(b) + 1, want - 1) : 0;
    b->top = xa_tbin_stack(b) + 1 + got;
    tc->missed[cls] = 1;
    *news |= XA_TC_TOOK;
  } else {                       /* swap it with the bottom object */
    b->top[-1] = xa_tbin_stack(b)[0];
    xa_tbin_stack(b)[0] = p;
  }
  xa_tc_release(tc);
}

static void tcache_flush_bins(struct xa_tcache *tc) {
  for (unsigned c = 0; c < XA_NSMALL; c++) bin_flush(&tc->bins[c], xa_tbin_count(&tc->bins[c]));
}

void xa_tcache_flush_all(void) {
  struct xa_tcache *tc = xa_tc;
  if (tc == &xa_tcache_boot) return;
  claim_slow(tc);
  (void)flush_requested(tc);           /* a pending request is served now */
  tcache_flush_bins(tc);
  xa_tc_release(tc);
}

void xa_tcache_destroy(void *arg) {
  struct xa_tcache *tc = arg;
  /* From now on this thread's calls go straight to the arenas.  Off the
   * live list first: no reclaimer can be at work on it while we flush. */
  xa_tc = &xa_tcache_boot;
  tc_state = 2;
  xa_lock(&tc_lock);
  tcache_unlink(tc);
  xa_unlock(&tc_lock);
  tcache_retire(tc);
}

void xa_tcache_prefork(void) { xa_lock(&tc_lock); }
void xa_tcache_postfork_parent(void) { xa_unlock(&tc_lock); }

/* In the child only the forking thread exists.  The other threads' caches
 * may have been mid-update (a bin flushed to its slabs but not yet
 * shortened), so their contents cannot be trusted: they are dropped (a
 * bounded leak) and the caches recycled empty. */
void xa_tcache_postfork_child(void) {
  xa_lock_reinit(&tc_lock);
  xa_os_membarrier_forget();
  tc_cursor = NULL;
  if (xa_tc != &xa_tcache_boot) xa_tc->tid = xa_os_tid();   /* a new thread id */
  struct xa_tcache *tc = tc_live;
  while (tc) {
    struct xa_tcache *next = tc->next;
    /* A purge another thread was doing does not happen here; one the
     * forking thread does (a fork from a signal handler that interrupted
     * its reclaim pass) goes on after the handler, and clears the flag. */
    if (tc->stacks_purger != xa_thread_self()) tc->stacks_purging = 0;
    if (tc != xa_tc) {
      /* Emptied onto the small area: a purge of its full-size stacks that
       * the forking thread had under way goes on after the fork, and the
       * thread that takes this cache next must not be using them. */
      bins_small(tc);
      memset(tc->taken, 0, sizeof tc->taken);
      tc->left = tc->entered;         /* its owner may have been inside a call */
      tc->shrink = 0;
      tcache_unlink(tc);
      tcache_recycle(tc);
      tc_nrecycled++;
    }
    tc = next;
  }
}

/* ---- reclaiming other threads' caches -------------------------------- */

/* Does tc hold objects a reclaim has not taken?  Racy reads of another
 * thread's bins: a hint. */
static bool tcache_holds(struct xa_tcache *tc) {
  for (unsigned c = 0; c < XA_NSMALL; c++)
    if (__atomic_load_n(&tc->bins[c].top, __ATOMIC_RELAXED) > xa_tbin_stack(&tc->bins[c]) + tc->taken[c]) return true;
  return false;
}

bool xa_tcache_reclaim_on(void) {
  return xa_opt.tcache_reclaim && !__atomic_load_n(&tc_reclaim_off, __ATOMIC_RELAXED);
}

bool xa_tcache_others_hold(void) {
  struct xa_tcache *self = xa_tc;
  bool any = false;
  if (!xa_tcache_reclaim_on()) return false;
  xa_lock(&tc_lock);
  for (struct xa_tcache *tc = tc_live; tc && !any; tc = tc->next) any = tc != self && tcache_holds(tc);
  xa_unlock(&tc_lock);
  return any;
}

/* The reclaimer's take from tc, whose owner is inside no slow path, after
 * the fence: every object below the `top` it reads goes
 * back to the arenas, and taken[] says how many (the owner moves what is
 * above down when it reopens the gates).  A push that passed its gate
 * before the gates closed may still be under way: it stores its slot
 * before `top`, so the slots below a `top` read here are written, and it
 * writes the slot at that `top` (then it is the one object left).  A pop
 * under way in malloc's fast path moved `top` below its slot before it
 * read its gate, or reads the gate closed (xa_tbin_pop_begin).  So
 * `top` is never written here.  Under tc_lock. */
static size_t bins_take(struct xa_tcache *tc) {
  size_t objs = 0;
  for (unsigned c = 0; c < XA_NSMALL; c++) {
    struct xa_tbin *b = &tc->bins[c];
    void **top = __atomic_load_n(&b->top, __ATOMIC_ACQUIRE), **from = xa_tbin_stack(b) + tc->taken[c];
    if (top <= from) continue;
    uint32_t k = (uint32_t)(top - from);
    xa_arena_flush(from, k, "free");
    tc->taken[c] = (uint16_t)(tc->taken[c] + k);
    objs += k;
  }
  return objs;
}

/* An idle cache's full-size stacks go back, but for the page of the slot
 * a push under way may write: the one at the `top` bins_take read (and
 * took up to), which is where taken[] ends.  Not a fresh read of `top`:
 * a push that stored its slot there and then `top` would lose its slot.
 * Noted under tc_lock after bins_take, purged after it
 * (stacks_purge_kept). */
static void stacks_note_kept(struct xa_tcache *tc) {
  for (unsigned c = 0; c < XA_NSMALL; c++) {
    struct xa_tbin *b = &tc->bins[c];
    tc->keep[c] = 0;
    if (xa_tbin_stack(b) != tc->slots + tc_full_off[c]) continue;     /* on the small area */
    tc->keep[c] = (uint16_t)(xa_tbin_stack(b) + tc->taken[c] - tc->slots);
  }
}

/* The full-size area's pages but those holding noted slots (the bins'
 * full-size stacks lie in class order, so the ranges come sorted). */
static void stacks_purge_kept(struct xa_tcache *tc) {
  uintptr_t page = xa_os_page;
  uintptr_t lo = XA_ALIGN_UP((uintptr_t)(tc->slots + tc_small_total), page);
  uintptr_t end = (uintptr_t)(tc->slots + tc_slots_total) & ~(page - 1);
  for (unsigned c = 0; c < XA_NSMALL && lo < end; c++) {
    if (!tc->keep[c]) continue;
    uintptr_t a = (uintptr_t)(tc->slots + tc->keep[c]) & ~(page - 1);
    uintptr_t b = XA_ALIGN_UP((uintptr_t)(tc->slots + tc->keep[c] + 1), page);
    if (a > lo) xa_os_purge((void *)lo, (a < end ? a : end) - lo);
    if (b > lo) lo = b;
  }
  if (lo < end) xa_os_purge((void *)lo, end - lo);
}

/* The protocol, against an owner that uses no atomic instruction:
 *   reclaimer: close the gates; membarrier; read left, then entered; if
 *              equal, return every object below each bin's `top`, writing
 *              none of the owner's fields (bins_take; all under tc_lock)
 *   owner:     slow paths: entered++; read the gates; use the bin; left++
 *              (a closed gate: the slow path settles what the reclaimer
 *              took and reopens the gates, claim_slow)
 *              malloc's fast path: move `top` down; read the gate; use
 *              the slot under the old `top`, or move `top` back
 *              (xa_tbin_pop_begin)
 *              free's fast path: read the gate, store the slot, then `top`
 * membarrier makes every running thread execute a full barrier (a thread
 * not running gets one when it is switched in).  So either the owner's
 * entered++ is visible when the reclaimer reads it (it backs off), or the
 * owner's gate reads come after that barrier and see the gates closed: it
 * takes the slow path, which waits for tc_lock.  The same holds for a
 * pop's move of `top`: visible, so that the slot it uses lies at or above
 * the `top` the reclaimer reads, or followed by a gate read that sees the
 * gate closed.  A push that read its gate before (one per thread: malloc
 * is not async-signal-safe) may still be under way; bins_take allows for
 * it.  An owner never blocks a reclaimer, and malloc's fast path pays
 * nothing for it but the order of its steps.  A cache emptied while
 * its thread was quiet (no call since the last pass, whether or not the
 * pass takes every cache) is marked idle: it leaves the budget's divisor
 * (bin_budget) until its owner reopens the gates, and its full-size
 * stacks go back to the kernel after the pass (but for the pages a push
 * may still write to, which the owner purges itself when it comes back
 * and moves its bins to the small area). */
size_t xa_tcache_reclaim(bool all) {
  struct xa_tcache *self = xa_tc;
  struct xa_tcache *shrunk = NULL;    /* idle caches whose stacks go back */
  size_t objs = 0;
  unsigned n = 0;
  if (!xa_tcache_reclaim_on()) return 0;
  xa_lock(&tc_lock);
  for (struct xa_tcache *tc = tc_live; tc; tc = tc->next) {
    if (tc == self) continue;
    uint32_t sig = xa_tcache_activity(tc);
    bool quiet = sig == tc->seen_sig;  /* no call since the last pass */
    tc->seen_sig = sig;
    /* a quiet cache is also taken when empty, to become idle */
    bool holds = (quiet || all) && tcache_holds(tc);   /* only then does it matter */
    if (!(quiet && (holds || !tc->idle)) && !(all && holds)) continue;
    tc->reclaim = quiet ? 2 : 1;
    if (!tc->gates_closed) {
      gates_close(tc);
      __atomic_store_n(&tc->gates_closed, 1, __ATOMIC_RELAXED);
    }
    n++;
  }
  if (n) {
    bool fenced = xa_os_membarrier();
    if (!fenced) __atomic_store_n(&tc_reclaim_off, true, __ATOMIC_RELAXED);
    for (struct xa_tcache *tc = tc_live; tc; tc = tc->next) {
      if (!tc->reclaim) continue;
      uint32_t out = __atomic_load_n(&tc->left, __ATOMIC_ACQUIRE);
      if (fenced && __atomic_load_n(&tc->entered, __ATOMIC_ACQUIRE) == out) {
        objs += bins_take(tc);
        if (tc->reclaim == 2 && !tc->idle) {   /* quiet: its share goes to the busy */
          tc->idle = 1;
          tc_nidle++;
          if (tc->grown && !tc->shrink) {
            /* And its full-size stacks go back to the kernel after the
             * pass; none of its bins grows until the purge is over
             * (bin_grow). */
            tc->shrink = 1;
            stacks_note_kept(tc);
            tc->stacks_purger = xa_thread_self();
            __atomic_store_n(&tc->stacks_purging, 1, __ATOMIC_RELAXED);
            tc->purge_next = shrunk;
            shrunk = tc;
          }
        }
      }
      tc->reclaim = 0;                /* the gates stay closed: claim_slow */
    }
  }
  tc_reclaimed += objs;
  xa_unlock(&tc_lock);
  while (shrunk) {        /* each waits for its purge only to grow or retire */
    struct xa_tcache *tc = shrunk;
    shrunk = tc->purge_next;
    stacks_purge_kept(tc);
    __atomic_store_n(&tc->stacks_purging, 0, __ATOMIC_RELEASE);
  }
  return objs;
}

unsigned xa_tcache_sharing(void) { return active_caches(); }


unsigned xa_tcache_active(void) {
  xa_lock(&tc_lock);
  unsigned n = tc_nlive - tc_nidle;
  xa_unlock(&tc_lock);
  return n;
}

uint64_t xa_tcache_reclaimed(void) { return __atomic_load_n(&tc_reclaimed, __ATOMIC_RELAXED); }

size_t xa_tcache_mapped(void) { return __atomic_load_n(&tc_mapped, __ATOMIC_RELAXED); }

size_t xa_tcache_resident(void) {
  struct xa_tcache **list;
  size_t bytes, n, res = 0;
  for (;;) {           /* room for the list, mapped before the lock */
    size_t room = __atomic_load_n(&tc_nlive, __ATOMIC_RELAXED) + RECYCLE_KEEP + 16;
    bytes = XA_ALIGN_UP(room * sizeof *list, xa_os_page);
    if (!(list = xa_os_map(bytes, xa_os_page))) return 0;
    xa_lock(&tc_lock);
    if (tc_nlive + tc_nrecycled <= room) break;
    xa_unlock(&tc_lock);
    xa_os_unmap(list, bytes);
  }
  n = 0;
  for (struct xa_tcache *tc = tc_live; tc; tc = tc->next) list[n++] = tc;
  for (struct xa_tcache *tc = tc_recycled; tc; tc = tc->next) list[n++] = tc;
  /* a cache unmapped after the lock is released reads as 0 */
  xa_unlock(&tc_lock);
  for (size_t i = 0; i < n; i++) res += xa_os_resident_range(list[i], tcache_bytes(), NULL);
  xa_os_unmap(list, bytes);
  return res;
}
