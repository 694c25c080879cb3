/* Sampling by bytes: the arithmetic of a Poisson process over the bytes a
 * program allocates, with no libm.  A process of mean interval R bytes
 * picks each byte independently with probability 1/R, so a block of s
 * bytes is picked with probability 1 - exp(-s/R), whatever came before,
 * and the counts until the next pick are geometric.  The thread caches
 * draw, per size class, the number of allocations until the next sampled
 * one (xa_sample_count); the heap profiler draws bytes for blocks that
 * pass no cache (xa_sample_bytes) and weighs each sample by the inverse
 * of its probability (xa_sample_weight). */
#ifndef XA_SAMPLE_H
#define XA_SAMPLE_H
#include "internal.h"

/* A 64-bit generator state (xorshift64*): any value but 0. */
XA_HIDDEN uint64_t xa_sample_next(uint64_t *state);
/* -ln(u) for a uniform u in (0, 1]: an exponential variable of mean 1. */
XA_HIDDEN double xa_sample_exponential(uint64_t *state);
/* Allocations of `unit` bytes each until the next sampled one, when bytes
 * are sampled at a mean interval of `mean` bytes: 1 or more, at most
 * 2^31. */
XA_HIDDEN uint32_t xa_sample_count(uint64_t *state, uint64_t mean, uint64_t unit);
/* Bytes until the next sampled byte: 1 or more. */
XA_HIDDEN int64_t xa_sample_bytes(uint64_t *state, uint64_t mean);
/* 1 / (1 - exp(-unit/mean)): how many blocks of `unit` bytes one sampled
 * block stands for. */
XA_HIDDEN double xa_sample_weight(uint64_t unit, uint64_t mean);
/* ln(x) and exp(-x) (x >= 0), to about 1e-9 relative: for the above, and
 * for the tests that check them. */
XA_HIDDEN double xa_sample_ln(double x);
XA_HIDDEN double xa_sample_exp_neg(double x);
#endif
