/* Thread caches: per thread, per small class, a bounded array stack of
 * object pointers.  The only thing written into a cached object is the
 * freed mark in its first four bytes (XA_FREED_MARK twice), which catches double
 * frees.
 * The fast path (fastpath.h) pops and pushes; everything here is the slow
 * path: creating the cache on a thread's first call, batch refill and
 * flush against the arenas, idle-bin GC, and teardown at thread exit. */
#ifndef XA_TCACHE_H
#define XA_TCACHE_H
#include "internal.h"
#include "sizeclass.h"

/* A bin is a stack of pointers: stack[0..top).  top == stack: empty;
 * top == end: full.  The fast paths do not compare top with stack and end
 * but with two gates, equal to them except while another thread reclaims
 * the cache (xa_tcache_reclaim), which closes them so that every pop and
 * push misses.  The boot cache's gates are closed for good (tcache.c). */
struct xa_tbin {
  void **top;           /* next free slot */
  void **pop_gate;      /* pops while top > pop_gate: stack, or closed (~0) */
  void **push_gate;     /* pushes while top < push_gate: the cache's end[]
                           for the bin, or closed (NULL) */
  uint64_t divmagic;    /* the class's xa_class_divmagic, where free() finds
                           it with no extra address computation; 0 (never
                           divides) in the boot cache and the dummy bin */
  uint64_t size_max;    /* the class's size: a sized free's largest size,
                           realloc's usable size; 0 in the boot cache and
                           the dummy bin */
  int32_t countdown;    /* allocations left in the counting period: the
                           fast path decrements it and leaves at 0 for the
                           slow path, which counts the period and starts
                           the next (xa_tcache_tick) */
  uint16_t stack_d;     /* bottom: xa_tbin_stack, this many slots above
                           the bin (the slots follow the bins in the cache) */
  uint16_t size_min;    /* below it (0 for the first): a sized free's size n
                           is the class's if size_min < n <= size_max, two
                           compares with the bin (xa_free_sized_fast); both
                           0 in the boot cache and the dummy bin */
};

_Static_assert(sizeof(struct xa_tbin) == 8 * XA_BIN_SCALE, "bins are indexed by xa_class_scale(class) * 8");

/* A cached free object's first two bytes hold this mark (its first four
 * bytes hold it twice: xa_freed_mark).  Read as 16 bits: a program that
 * stores a narrow field at the start
 * of an object just before freeing it (a 16- or 32-bit reference count
 * decremented to zero) has that store forwarded to free()'s load, where an
 * 8-byte load would wait for it to reach the cache (a store-forwarding
 * stall, most of free()'s time on cfrac).  The value is rare in data: its
 * low byte is odd (never the start of an aligned pointer), neither ASCII
 * nor a UTF-8 lead byte, and it is no small integer.  Data that matches
 * costs a slow-path check, nothing else. */
#define XA_FREED_MARK ((uint16_t)0xf4a7)
typedef uint16_t __attribute__((may_alias)) xa_mark_word;
XA_INLINE bool xa_freed_marked(const void *p) { return *(const xa_mark_word *)p == XA_FREED_MARK; }
/* The mark is stored as 32 bits (the mark twice; every object has 16 bytes
 * or more): one store of an immediate, where a 16-bit immediate store
 * takes two instructions (gcc avoids the length-changing prefix). */
typedef uint32_t __attribute__((may_alias)) xa_mark_store;
XA_INLINE void xa_freed_mark(void *p) { *(xa_mark_store *)p = (uint32_t)XA_FREED_MARK * 0x10001u; }

/* A bin's stack (its bottom), kept as a distance from the bin: 16 bits,
 * which leaves room in the bin's 48 bytes for its class's size range. */
XA_INLINE void **xa_tbin_stack(const struct xa_tbin *b) { return (void **)(uintptr_t)b + b->stack_d; }
XA_INLINE void xa_tbin_set_stack(struct xa_tbin *b, void **stack) { b->stack_d = (uint16_t)(stack - (void **)b); }
XA_INLINE uint32_t xa_tbin_count(const struct xa_tbin *b) { return (uint32_t)(b->top - xa_tbin_stack(b)); }

struct xa_tcache {
  /* Fast-path part.  none is a dummy that free() indexes with the scaled
   * class 0 of a page that holds no slab (or of an address that is not
   * ours: the page map's untouched entries): divmagic 0, so it takes
   * nothing.  malloc indexes it for a size whose entry in its size table
   * is not filled yet (xa_sizeclass_direct): its pop gate is closed, so
   * it gives nothing either.  bins[c] then sits at xa_class_scale(c) * 8. */
  struct xa_tbin none;
  struct xa_tbin bins[XA_NSMALL];
  /* The owner's slow paths: begun and ended, ever.  They differ while
   * one is in progress (nested ones count: a signal handler's slow path).
   * The fast paths count nothing (xa_tbin_pop_begin, and free only
   * adds).  Written by the owner only, read by reclaimers
   * (xa_tcache_reclaim). */
  uint32_t entered, left;
  uint32_t seen_sig;                /* activity (tcache.c) at the last reclaim pass */
  uint32_t sweep_sig;               /* the same when the orphan sweep last looked */
  uint8_t gates_closed;             /* by a reclaimer; only the owner reopens
                                       them (claim_slow), both under tc_lock */
  uint8_t reclaim;                  /* a candidate of the running reclaim pass */
  uint8_t grown;                    /* a bin moved to its full-size stack */
  uint8_t idle;                     /* emptied by a reclaim pass while its
                                       thread was quiet: takes no share of
                                       the budget until its next slow path */
  uint8_t stacks_purging;           /* a reclaimer gives the full-size stacks
                                       back (atomic): no bin moves there */
  uint8_t shrink;                   /* a reclaimer found it idle: the owner
                                       moves its bins to the small area when
                                       it reopens the gates */
  struct xa_tcache *purge_next;     /* the reclaimer's list of them */
  const void *stacks_purger;        /* its xa_thread_self() */
  struct xa_tcache *next, *prev;    /* all live caches */
  uint32_t events;                  /* refills and full-bin flushes since last GC */
  uint32_t flush_gen;               /* last flush request seen (xa_tcache_request_flush) */
  int32_t tid;                      /* owner's kernel thread id */
  uint8_t missed[XA_NSMALL];        /* bin refilled since last GC */
  uint8_t slow_start[XA_NSMALL];    /* refill takes half the full bin >> this */
  uint8_t boost[XA_NSMALL];         /* bin's capacity: tcache_cap << boost, at
                                       most tcache_max (tcache.c) */
  void **end[XA_NSMALL];            /* each bin's stack + capacity */
  /* Set by a reclaimer while the gates are closed, applied by the owner
   * when it reopens them (or when the cache retires): the objects at the
   * bottom of each bin that the reclaimer returned to the arenas, and the
   * slot (an index into slots[]; 0: none) whose page it left resident in
   * the full-size area for a push under way.  16 bits: the header's size
   * decides whether a thread that uses a few classes touches one page of
   * its cache or two. */
  uint16_t taken[XA_NSMALL];
  uint16_t keep[XA_NSMALL];
  /* Allocations counted per class: nmalloc[c] in periods that ended, and
   * period[c] - bins[c].countdown in the running one.  A period is
   * XA_COUNT_PERIOD long, or, while the heap profiler samples, the draw of
   * xa_sample_count: its last allocation is the sampled one. */
  uint64_t nmalloc[XA_NSMALL];
  uint32_t period[XA_NSMALL];
  uint64_t rng;                     /* xa_sample_next's state */
  void *slots[];                    /* the bins' stacks: small area, then full-size */
};

/* The owner's claim on its cache around every slow path: a reclaimer
 * that finds entered == left after closing the gates and fencing every
 * thread (membarrier) knows that no such call is under way and that the
 * next one will find the gates closed.  Plain increments: the compiler
 * barriers keep the bin accesses between them, and the membarrier orders
 * them against the reclaimer.  malloc's fast path takes no claim: it
 * orders its pop against the gate instead (xa_tbin_pop_begin). */
XA_INLINE void xa_tc_claim(struct xa_tcache *tc) {
  tc->entered++;
  __asm__ __volatile__("" ::: "memory");
}
XA_INLINE void xa_tc_release(struct xa_tcache *tc) {
#if defined(__x86_64__) || defined(__i386__)
  __asm__ __volatile__("" ::: "memory");   /* stores stay in order (TSO) */
  tc->left++;
#else
  /* the bin's stores must be visible before the call counts as left */
  __atomic_store_n(&tc->left, tc->left + 1, __ATOMIC_RELEASE);
#endif
}

XA_INLINE uint32_t xa_tbin_cap(const struct xa_tcache *tc, unsigned c) {
  return (uint32_t)(tc->end[c] - xa_tbin_stack(&tc->bins[c]));
}

/* Move bin b's top by `by` slots (the owner only; but every thread on the
 * boot cache moves its tops, which mean nothing there: tcache.c).  On x86
 * one add to memory, where the compiler computes the new top in a
 * register and then stores it (two instructions on each fast path; the
 * value is not needed after the store).  No lock prefix: only the owner
 * writes top, and a reclaimer reads it after a membarrier
 * (xa_tcache_reclaim).  Volatile: the asm's only effect is its store,
 * which the compiler must not drop. */
XA_INLINE void xa_tbin_top_step(struct xa_tbin *b, long by) {
#if defined(__x86_64__)
  __asm__ __volatile__("addq %1, %0" : "+m"(b->top) : "er"(by * (long)sizeof(void *)));
#else
  b->top += by;
#endif
}

/* malloc's pop, first step: `top` moves down one slot before the caller
 * reads the pop gate, and the old `top` comes back (the object is the
 * slot under it).  That order is the fast path's whole part in the
 * reclaim protocol (xa_tcache_reclaim), an asymmetric Dekker: the
 * reclaimer closes the gates, fences every thread, then reads `top`.
 * Either the move is visible to it (the fence found it done), and it
 * leaves the slot under the `top` it read alone, or the move comes after
 * the fence, and so does the gate read, which finds the gate closed: the
 * caller then moves `top` back (xa_tbin_top_step(b, 1)) and never reads
 * the slot.  The compiler barrier keeps the gate read after the move in
 * program order; the fence (an interrupt on a running thread, a context
 * switch on another) splits the two at an instruction boundary.
 * Between the move and the move back of a miss (an empty bin, a closed
 * gate, the end of a counting period) the bin is one slot short, below
 * its bottom if it was empty: a signal handler that calls malloc or free
 * while the thread it interrupted is in there corrupts the bin, as one
 * that interrupts a hit between its read and its move of `top` did and
 * does.  POSIX leaves both undefined (malloc is not async-signal-safe),
 * and so does every allocator measured here. */
XA_INLINE void **xa_tbin_pop_begin(struct xa_tbin *b) {
  void **top = b->top;
  xa_tbin_top_step(b, -1);
  __asm__ __volatile__("" ::: "memory");
  return top;
}

/* tc's bin of scaled class cls_scaled (xa_class_scale; 0: the dummy). */
XA_INLINE struct xa_tbin *xa_tbin_scaled(struct xa_tcache *tc, size_t cls_scaled) {
  return (struct xa_tbin *)((char *)tc + cls_scaled * 8);
}
_Static_assert(__builtin_offsetof(struct xa_tcache, bins) == sizeof(struct xa_tbin),
               "the dummy bin comes first, then bins[c] at xa_class_scale(c) * 8");

/* Every thread starts on the boot cache, whose bins always miss. */
XA_HIDDEN extern struct xa_tcache xa_tcache_boot;
XA_HIDDEN extern __thread struct xa_tcache *xa_tc __attribute__((tls_model("initial-exec")));

/* News for the purger from the slow-path calls below, ORed into their
 * *news.  The purger sits above the thread cache (it reclaims caches), so
 * the cache never calls it: the caller tells it, after the call. */
enum {
  XA_TC_RETURNED = 1,   /* objects went back to the arenas (flush, GC): pages
                           may have become dirty, and the GC's period passed */
  XA_TC_TOOK = 2,       /* the cache took objects from the arenas: the purger
                           reclaims them should the thread go quiet */
  XA_TC_SQUEEZED = 4,   /* a refill got less than the bin's capacity because
                           many caches share the budget: quiet ones among
                           them should be found soon (xa_purge_reclaim_soon) */
};

/* The calling thread's cache, created on first use; NULL once the thread
 * has torn its cache down (then callers use the arenas directly) or if no
 * memory is left for one. */
XA_HIDDEN struct xa_tcache *xa_tcache_get(void);
/* Refill bin cls (which is empty) and pop one object; NULL if OOM. */
XA_HIDDEN void *xa_tcache_alloc_refill(struct xa_tcache *tc, unsigned cls, unsigned *news);
/* Allocation counting (and heap-profile sampling) per class.  The slow
 * path of an allocation of class cls by the owner of tc calls this: true
 * when the counting period ended with this allocation, which is then to
 * be sampled if xa_tcache_sample_mean (bytes; 0: no sampling) is set. */
#define XA_COUNT_PERIOD (1u << 20)
XA_HIDDEN extern uint64_t xa_tcache_sample_mean;
XA_HIDDEN bool xa_tcache_tick(struct xa_tcache *tc, unsigned cls);
/* The same for an allocation that used no cache (none, or caches off). */
XA_HIDDEN void xa_tcache_count_uncached(unsigned cls);
/* Per class: allocations ever counted, and objects sitting in caches now
 * (racy reads of other threads' caches: statistics). */
XA_HIDDEN void xa_tcache_class_counts(uint64_t nmalloc[XA_NSMALL], uint64_t cached[XA_NSMALL]);
/* Cache small object p of class cls (the fast path could not: bin full, or
 * p carries the freed mark).  A full bin's older half is flushed first.
 * Returns false, caching nothing, if p is already free (double free). */
XA_HIDDEN bool xa_tcache_free_flush(struct xa_tcache *tc, unsigned cls, void *p, unsigned *news);
/* Whether small object p of class cls, which carries the freed mark, was
 * freed: it sits in tc's bin, or its slab says so. */
XA_HIDDEN bool xa_tcache_freed(struct xa_tcache *tc, unsigned cls, void *p);
/* The object just cached in bin cls was the thread's first free: it most
 * likely came from another thread, and reusing it first would put this
 * thread's writes in that thread's cache lines (passive false sharing).
 * Fill the bin from the arena and move the object to the bottom. */
XA_HIDDEN void xa_tcache_bury_first(struct xa_tcache *tc, unsigned cls, unsigned *news);
/* Return every cached object of the calling thread to the arenas. */
XA_HIDDEN void xa_tcache_flush_all(void);
/* Ask every thread to empty its cache at its next slow-path event (a miss
 * or a full bin): the fallback where xa_tcache_reclaim cannot work (no
 * membarrier) or finds the owner inside a slow path. */
XA_HIDDEN void xa_tcache_request_flush(void);
/* Return other threads' cached objects to the arenas without their help:
 * those of every cache (all) or of caches whose owner made no call since
 * the previous pass (a quiet thread; the purger's use).  An owner found
 * inside a slow path is skipped; a pop under way in malloc's fast path
 * keeps its object (xa_tbin_pop_begin).  Returns the objects returned. */
XA_HIDDEN size_t xa_tcache_reclaim(bool all);
/* Hold all caches together within bytes too (a memory limit's share:
 * pressure.c); SIZE_MAX: tcache_total_bytes alone. */
XA_HIDDEN void xa_tcache_limit_total(size_t bytes);
/* The budget in effect: the lower of the two. */
XA_HIDDEN size_t xa_tcache_budget(void);
/* Bytes of the caches' own mappings (live and recycled), and how many of
 * them are resident (mincore). */
XA_HIDDEN size_t xa_tcache_mapped(void);
XA_HIDDEN size_t xa_tcache_resident(void);
/* The caches sharing tcache_budget now (a racy read; stats.tcache_active
 * takes the lock). */
XA_HIDDEN unsigned xa_tcache_sharing(void);
/* A number that changes with every call of tc's owner: the slow paths
 * count themselves (entered), a pop lowers a bin's top and countdown, a
 * push raises a top.  Racy reads of another thread's cache: a coincidence that
 * repeats the last value makes a busy thread look quiet for one pass,
 * which costs it a refill.  (Reclaim passes and the orphan sweep.) */
XA_HIDDEN uint32_t xa_tcache_activity(const struct xa_tcache *tc);
/* Can caches be reclaimed (tcache_reclaim, and membarrier was allowed)? */
XA_HIDDEN bool xa_tcache_reclaim_on(void);
/* Objects xa_tcache_reclaim took back, ever. */
XA_HIDDEN uint64_t xa_tcache_reclaimed(void);
/* Unmap the recycled caches (of exited threads, kept for new ones) once
 * none has been taken for idle_ns, the purger's use; 0: now.  The first
 * call that finds some only notes the time.  Returns the bytes unmapped. */
XA_HIDDEN size_t xa_tcache_trim_recycled(uint64_t now, uint64_t idle_ns);
/* Are any recycled caches kept?  (racy: a hint) */
XA_HIDDEN bool xa_tcache_recycled_any(void);
/* Caches that share the budget now: live and not idle (tcache.c). */
XA_HIDDEN unsigned xa_tcache_active(void);
/* Does any other thread's cache hold objects? (racy: a hint) */
XA_HIDDEN bool xa_tcache_others_hold(void);
/* Thread exit: return the cache's objects to the arenas and recycle the
 * cache; the caller then tells the purger. */
XA_HIDDEN void xa_tcache_destroy(void *tc);
/* Set the bins' capacities and make the key whose destructor,
 * at_thread_exit, runs at each thread's exit with its cache: it calls
 * xa_tcache_destroy and tells the purger. */
XA_HIDDEN bool xa_tcache_init_global(void (*at_thread_exit)(void *tc));

XA_HIDDEN void xa_tcache_prefork(void);
XA_HIDDEN void xa_tcache_postfork_parent(void);
XA_HIDDEN void xa_tcache_postfork_child(void);
#endif
