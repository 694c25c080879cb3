/* Unit tests of the decay policy (src/decay.c) and the option parser
 * (src/options.c): pure functions, driven with a fake clock and strings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include "decay.h"
#include "options.h"

#define MS 1000000ull

/* 1000 pages dirtied at t=0 with a 1000 ms decay: all may stay at first,
 * about half at 500 ms (smoothstep midpoint), none after the period; the
 * limit never rises while nothing new is dirtied. */
static void test_decay_curve(void **state) {
  (void)state;
  struct xa_decay d;
  xa_decay_init(&d, 1000, 0);
  size_t prev = xa_decay_limit(&d, 0, 1000);
  assert_true(prev >= 990);
  for (uint64_t t = 10; t <= 1100; t += 10) {
    size_t lim = xa_decay_limit(&d, t * MS, 1000);
    assert_true(lim <= prev);
    if (t == 500) assert_true(lim > 400 && lim < 600);
    prev = lim;
  }
  assert_int_equal(prev, 0);
}

/* Pages reused before they decay are not counted again; new pages join the
 * young end. */
static void test_decay_reuse_and_new(void **state) {
  (void)state;
  struct xa_decay d;
  xa_decay_init(&d, 1000, 0);
  xa_decay_limit(&d, 0, 1000);
  xa_decay_settle(&d, 200);                       /* 800 pages reused */
  size_t lim = xa_decay_limit(&d, 600 * MS, 200);
  assert_true(lim <= 200);
  lim = xa_decay_limit(&d, 600 * MS, 1200);       /* 1000 new pages now */
  assert_true(lim >= 1000);
  assert_true(xa_decay_limit(&d, 1700 * MS, 1200) == 0);
}

static void test_decay_never_and_immediate(void **state) {
  (void)state;
  struct xa_decay d;
  xa_decay_init(&d, -1, 0);
  assert_true(xa_decay_limit(&d, 1000000 * MS, 500) >= 500);
  xa_decay_init(&d, 0, 0);
  assert_int_equal(xa_decay_limit(&d, 0, 500), 0);
}

static void test_options_parse(void **state) {
  (void)state;
  struct xa_options o;
  xa_options_defaults(&o);
  assert_int_equal(o.dirty_decay_ms, 1000);
  assert_int_equal(o.background_thread, 1);
  assert_int_equal(xa_options_parse(&o, "narenas:3,dirty_decay_ms:-1,background_thread:false,thp:never,tcache:0",
                                    "test"), 0);
  assert_int_equal(o.narenas, 3);
  assert_int_equal(o.dirty_decay_ms, -1);
  assert_int_equal(o.background_thread, 0);
  assert_int_equal(o.thp, xa_opt_thp_never);
  assert_int_equal(o.tcache, 0);
  /* bad input: one warning each, value kept */
  assert_int_equal(xa_options_parse(&o, "nosuch:1", "test"), 1);
  assert_int_equal(xa_options_parse(&o, "narenas:abc", "test"), 1);
  assert_int_equal(xa_options_parse(&o, "narenas:99999", "test"), 1);
  assert_int_equal(xa_options_parse(&o, "thp:sometimes", "test"), 1);
  assert_int_equal(xa_options_parse(&o, "tcache:yes", "test"), 1);
  assert_int_equal(xa_options_parse(&o, "narenas", "test"), 1);
  assert_int_equal(o.narenas, 3);
  assert_int_equal(o.thp, xa_opt_thp_never);
  /* empty entries are ignored; later keys win */
  assert_int_equal(xa_options_parse(&o, ",,narenas:1,,narenas:2,", "test"), 0);
  assert_int_equal(o.narenas, 2);
  assert_int_equal(xa_options_parse(&o, "help", "test"), 0);   /* lists options on stderr */
  /* every ENUM word maps to its constant; the range is the word count */
  assert_int_equal(xa_options_parse(&o, "purge:free,stats_format:json,thp:always", "test"), 0);
  assert_int_equal(o.purge, xa_opt_purge_free);
  assert_int_equal(o.stats_format, xa_opt_stats_format_json);
  assert_int_equal(o.thp, xa_opt_thp_always);
  assert_int_equal(xa_options_parse(&o, "purge:dontneed,stats_format:text,thp:default", "test"), 0);
  assert_int_equal(o.purge, xa_opt_purge_dontneed);
  assert_int_equal(o.stats_format, xa_opt_stats_format_text);
  assert_int_equal(o.thp, xa_opt_thp_default);
  struct xa_option_ref r;
  assert_true(xa_options_find(&o, "thp", &r));
  assert_int_equal(r.lo, 0);
  assert_int_equal(r.hi, xa_opt_thp_auto);
  assert_false(r.writable);
  assert_int_equal(xa_options_parse(&o, "thp:auto,thp_min_bytes:4194304", "test"), 0);
  assert_int_equal(o.thp, xa_opt_thp_auto);
  assert_int_equal(o.thp_min_bytes, 4 << 20);
  /* the rw column: what xalloc_ctl may write at run time */
  assert_true(xa_options_find(&o, "dirty_decay_ms", &r) && r.writable);
  assert_true(xa_options_find(&o, "huge_cache_bytes", &r) && r.writable);
  assert_true(xa_options_find(&o, "narenas", &r) && !r.writable);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_decay_curve),
      cmocka_unit_test(test_decay_reuse_and_new),
      cmocka_unit_test(test_decay_never_and_immediate),
      cmocka_unit_test(test_options_parse),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
