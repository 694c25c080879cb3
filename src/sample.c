/* Sampling arithmetic (sample.h): a small generator, ln and exp without
 * libm (the library links libc and pthreads only). */
#include "sample.h"
#include <string.h>

uint64_t xa_sample_next(uint64_t *state) {
  uint64_t x = *state;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *state = x;
  return x * 0x2545f4914f6cdd1dull;
}

#define LN2 0.69314718055994530942

/* x = m * 2^e with m in [sqrt(1/2), sqrt(2)); ln(m) by the series of
 * atanh: ln(m) = 2 (t + t^3/3 + t^5/5 + ...), t = (m-1)/(m+1), |t| < 0.172,
 * so eight terms leave under 1e-13. */
double xa_sample_ln(double x) {
  if (!(x > 0)) return -1e300;
  uint64_t bits;
  memcpy(&bits, &x, sizeof bits);
  int e = (int)((bits >> 52) & 0x7ff);
  if (e == 0) return xa_sample_ln(x * 18014398509481984.0) - 54 * LN2;   /* subnormal: x 2^54 */
  e -= 1023;
  bits = (bits & ((1ull << 52) - 1)) | (1023ull << 52);
  double m;
  memcpy(&m, &bits, sizeof m);
  if (m > 1.41421356237309504880) { m /= 2; e++; }
  double t = (m - 1) / (m + 1), t2 = t * t, term = t, sum = 0;
  for (int k = 1; k <= 15; k += 2) {
    sum += term / k;
    term *= t2;
  }
  return 2 * sum + e * LN2;
}

/* exp(-x) = 2^-k exp(-r), x = k ln2 + r, r in [0, ln2): a Taylor series of
 * 16 terms for exp(-r) (error under 1e-16). */
double xa_sample_exp_neg(double x) {
  if (!(x > 0)) return 1;
  if (x > 700) return 0;
  int k = (int)(x / LN2);
  double r = x - k * LN2, term = 1, sum = 1;
  for (int i = 1; i <= 16; i++) {
    term *= -r / i;
    sum += term;
  }
  while (k >= 60) { sum /= 1152921504606846976.0; k -= 60; }   /* 2^60 */
  return sum / (double)(1ull << k);
}

double xa_sample_exponential(uint64_t *state) {
  /* u in (0, 1]: 53 random bits, plus one */
  double u = (double)((xa_sample_next(state) >> 11) + 1) * (1.0 / 9007199254740992.0);
  return -xa_sample_ln(u);
}

uint32_t xa_sample_count(uint64_t *state, uint64_t mean, uint64_t unit) {
  /* The number of trials to the first success, each with probability
   * p = 1 - exp(-unit/mean): ceil(E / -ln(1-p)) = ceil(E mean / unit). */
  double n = xa_sample_exponential(state) * (double)mean / (double)(unit ? unit : 1);
  if (n >= 2147483648.0) return 1u << 31;
  uint32_t k = (uint32_t)n;
  return k < n || k == 0 ? k + 1 : k;
}

int64_t xa_sample_bytes(uint64_t *state, uint64_t mean) {
  double n = xa_sample_exponential(state) * (double)mean;
  if (n >= 4611686018427387904.0) return (int64_t)1 << 62;
  int64_t k = (int64_t)n;
  return k < 1 ? 1 : k;
}

double xa_sample_weight(uint64_t unit, uint64_t mean) {
  double x = (double)unit / (double)(mean ? mean : 1);
  /* 1 - exp(-x) loses its digits for small x: the series instead */
  double p = x < 0.01 ? x * (1 - x / 2 * (1 - x / 3 * (1 - x / 4))) : 1 - xa_sample_exp_neg(x);
  return p > 0 ? 1 / p : 1;
}
