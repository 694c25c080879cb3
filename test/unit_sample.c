/* Sampling arithmetic (src/sample.c): ln and exp against libm, the
 * intervals' distribution (mean, and the memoryless tail of a geometric
 * count), the weights, and the per-class count in the thread cache
 * (xa_tcache_tick): a period of XA_COUNT_PERIOD without sampling, drawn
 * ones with it, and exact counts either way. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdlib.h>
#include <cmocka.h>
#include "sample.h"
#include "sizeclass.h"
#include "tcache.h"

static void test_ln_exp(void **state) {
  (void)state;
  static const double xs[] = {1e-300, 1e-9, 0.001, 0.5, 0.7071, 1, 1.4142, 2, 3.14159, 1e6, 1e300};
  for (size_t i = 0; i < sizeof xs / sizeof xs[0]; i++) {
    double want = log(xs[i]), got = xa_sample_ln(xs[i]);
    if (fabs(got - want) > 1e-9 * (fabs(want) > 1 ? fabs(want) : 1)) fail_msg("ln(%g) = %.17g, libm %.17g", xs[i], got, want);
  }
  static const double es[] = {0, 1e-9, 0.01, 0.5, 0.6931, 1, 5, 40, 100, 700};
  for (size_t i = 0; i < sizeof es / sizeof es[0]; i++) {
    double want = exp(-es[i]), got = xa_sample_exp_neg(es[i]);
    if (fabs(got - want) > 1e-12 * want) fail_msg("exp(-%g) = %.17g, libm %.17g", es[i], got, want);
  }
  assert_true(xa_sample_exp_neg(800) == 0);
  assert_true(xa_sample_ln(0) < -1e299);
}

static void test_weight(void **state) {
  (void)state;
  /* 1 / (1 - exp(-u/m)) */
  assert_true(fabs(xa_sample_weight(16, 524288) - 1 / -expm1(-16.0 / 524288)) < 1e-6);
  assert_true(fabs(xa_sample_weight(524288, 524288) - 1 / -expm1(-1.0)) < 1e-9);
  assert_true(fabs(xa_sample_weight(1 << 30, 524288) - 1) < 1e-12);
  assert_true(xa_sample_weight(1, 1) > 1 && xa_sample_weight(1, 1) < 1.6);
}

/* Byte intervals are exponential of the given mean: mean and variance of
 * 200,000 draws within 1.5% (the standard error is 0.22%), and the tail
 * P(X > 3 mean) = e^-3. */
static void test_bytes_distribution(void **state) {
  (void)state;
  uint64_t rng = 12345;
  double sum = 0, sq = 0;
  unsigned tail = 0, n = 200000;
  for (unsigned i = 0; i < n; i++) {
    double x = (double)xa_sample_bytes(&rng, 524288) / 524288;
    assert_true(x > 0);
    sum += x;
    sq += x * x;
    tail += x > 3;
  }
  double mean = sum / n, var = sq / n - mean * mean;
  if (fabs(mean - 1) > 0.015 || fabs(var - 1) > 0.05) fail_msg("mean %f variance %f", mean, var);
  if (fabs((double)tail / n - exp(-3)) > 0.005) fail_msg("tail %f", (double)tail / n);
}

/* Counts of units until a sample are geometric with p = 1 - exp(-unit/mean):
 * their mean is 1/p. */
static void test_count_distribution(void **state) {
  (void)state;
  uint64_t rng = 99;
  static const uint64_t units[] = {16, 1024, 32768, 524288, 4 << 20};
  for (size_t k = 0; k < sizeof units / sizeof units[0]; k++) {
    double sum = 0;
    unsigned n = 100000;
    for (unsigned i = 0; i < n; i++) {
      uint32_t c = xa_sample_count(&rng, 524288, units[k]);
      assert_true(c >= 1);
      sum += c;
    }
    double want = xa_sample_weight(units[k], 524288);
    if (fabs(sum / n - want) > 0.02 * want) fail_msg("unit %lu: mean count %f, want %f", (unsigned long)units[k], sum / n, want);
  }
  assert_int_equal(xa_sample_count(&rng, 1, 1 << 20), 1);           /* every one */
  assert_int_equal(xa_sample_count(&rng, 1ull << 40, 1), 1u << 31);  /* capped */
}

/* The cache's per-class count: exact over many periods, and the tick's
 * answer says when a period ended (sampling: xa_tcache_sample_mean). */
static void test_tick_counts(void **state) {
  (void)state;
  free(malloc(16));                              /* initialise */
  struct xa_tcache *tc = xa_tcache_get();
  assert_non_null(tc);
  uint64_t before[XA_NSMALL], cached[XA_NSMALL], after[XA_NSMALL];
  xa_tcache_class_counts(before, cached);
  unsigned ends = 0;
  for (unsigned i = 0; i < 3 * XA_COUNT_PERIOD + 5; i++) ends += xa_tcache_tick(tc, 2);
  xa_tcache_class_counts(after, cached);
  assert_int_equal(after[2] - before[2], 3 * XA_COUNT_PERIOD + 5);
  assert_int_equal(ends, 0);                     /* no sampling: never true */
  assert_true(tc->bins[2].countdown > 0 && tc->bins[2].countdown <= XA_COUNT_PERIOD);
  /* with a sampling interval, periods end about every 1/p allocations */
  xa_tcache_sample_mean = 65536;
  unsigned warm = 1;
  while (!xa_tcache_tick(tc, 5)) warm++;          /* the running plain period ends */
  ends = 0;
  unsigned n = 200000;
  for (unsigned i = 0; i < n; i++) ends += xa_tcache_tick(tc, 5);
  xa_tcache_sample_mean = 0;
  double want = n / xa_sample_weight(xa_classes[5].size, 65536);
  if (fabs(ends - want) > 6 * sqrt(want)) fail_msg("%u sampled, want %f", ends, want);
  xa_tcache_class_counts(after, cached);
  assert_int_equal(after[5] - before[5], warm + n);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ln_exp),
      cmocka_unit_test(test_weight),
      cmocka_unit_test(test_bytes_distribution),
      cmocka_unit_test(test_count_distribution),
      cmocka_unit_test(test_tick_counts),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
