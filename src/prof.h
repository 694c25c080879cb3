/* The heap profiler (prof:true): a sample of the allocations, each with
 * the call stack that made it, from which pprof files of the live heap,
 * of the heap at its peak and of what is still allocated at exit are
 * written.
 *
 * Which allocations: bytes are sampled at a mean interval of prof_sample
 * bytes (sample.h), so a block of s bytes is sampled with probability
 * 1 - exp(-s/prof_sample) and stands for 1 / that many blocks.  Small
 * allocations are picked by the thread cache's per-class count
 * (xa_tcache_tick) at no cost to the fast path, the others by a
 * per-thread byte count (xa_prof_pick).
 *
 * A sampled small allocation gets a block of its own: whole pages from
 * the arena, which free() cannot take on its fast path, so that every free
 * of a sampled block comes to the slow path, which forgets the sample
 * (about one page per sample: under 1% of memory at the default interval).
 * Large and huge blocks are recorded as they are.
 *
 * Off (the default), the cost is nothing on the fast paths and one
 * predictable branch on the large/huge paths. */
#ifndef XA_PROF_H
#define XA_PROF_H
#include "internal.h"

#define XA_PROF_DEPTH 64        /* frames kept per stack */

/* prof:true and the tables ready. */
XA_HIDDEN extern bool xa_prof_on;
/* From initialisation, after the options: set the tables up when
 * prof:true, and the thread caches' sampling interval. */
XA_HIDDEN void xa_prof_init(void);
/* From the library's constructor: the signal handler (prof_signal) and the
 * exit report (prof_dump_on_exit). */
XA_HIDDEN void xa_prof_at_load(void);
/* Should an allocation of n bytes that no thread cache counted be sampled?
 * (the calling thread's byte count) */
XA_HIDDEN bool xa_prof_pick(size_t n);
/* Record sampled block p of n requested bytes with the caller's stack. */
XA_HIDDEN void xa_prof_record(void *p, size_t n);
/* Sampled or not, block p (just allocated for a request of more bytes:
 * realloc's headroom) was asked for n bytes: its sample, if any, says n,
 * keeping the weight it was drawn with. */
XA_HIDDEN void xa_prof_asked(const void *p, size_t n);
/* Is p a sampled block?  If so, *n (when not NULL) gets the size it was
 * asked with.  A lock-free miss for most blocks. */
XA_HIDDEN bool xa_prof_sampled(const void *p, size_t *n);
/* p is being freed (or moved): forget its sample, if it has one. */
XA_HIDDEN void xa_prof_forget(const void *p);
/* The same in two steps, for a realloc that may fail: take p's sample out
 * (false: p has none), then either put it back (the call failed, p stays)
 * or drop it. */
struct xa_prof_taken { void *rec; };
XA_HIDDEN bool xa_prof_take(const void *p, struct xa_prof_taken *t);
XA_HIDDEN void xa_prof_put_back(const struct xa_prof_taken *t);
XA_HIDDEN void xa_prof_drop(const struct xa_prof_taken *t);

enum xa_prof_kind { XA_PROF_LIVE, XA_PROF_PEAK, XA_PROF_LEAK };
/* Write a profile of kind to path, or (path NULL) to
 * PREFIX.<pid>.<seq>.heap.pb (peak: .peak.heap.pb, leak: .leak.heap.pb);
 * the path written is copied to out (cap bytes) when out is not NULL.
 * 0, ENOENT (prof is off) or EIO. */
XA_HIDDEN int xa_prof_dump(enum xa_prof_kind kind, const char *path, char *out, size_t cap);

struct xa_prof_stats {
  uint64_t samples;      /* samples taken, ever */
  uint64_t live;         /* samples of blocks not freed */
  uint64_t live_bytes;   /* estimated bytes of the live heap */
  uint64_t peak_bytes;   /* the most live_bytes ever */
  uint64_t stacks;       /* distinct call stacks seen */
  uint64_t dumps;        /* profiles written */
};
XA_HIDDEN void xa_prof_stats(struct xa_prof_stats *s);
/* Live sampled small blocks per size class, added to out[] (they are
 * counted as allocations of their class, but live in pages of their
 * own, outside the slabs' counts). */
XA_HIDDEN void xa_prof_live_small(uint64_t out[XA_NSMALL]);
/* Estimated bytes of the live small blocks lost to size-class rounding
 * (class size less the size asked for, from the samples); false when
 * prof is off. */
XA_HIDDEN bool xa_prof_rounding(uint64_t *bytes);

XA_HIDDEN void xa_prof_prefork(void);
XA_HIDDEN void xa_prof_postfork_parent(void);
XA_HIDDEN void xa_prof_postfork_child(void);
#endif
