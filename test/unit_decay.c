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

/* Pages reused and freed again between two updates leave the dirty count
 * as it was; noted, they are young again rather than as old as the pages
 * they replaced. */
static void test_decay_noted_pages_are_young(void **state) {
  (void)state;
  struct xa_decay d, plain;
  xa_decay_init(&d, 1000, 0);
  xa_decay_init(&plain, 1000, 0);
  xa_decay_limit(&d, 0, 1000);
  xa_decay_limit(&plain, 0, 1000);
  xa_decay_note(&d, 1000);                        /* all 1000 reused and freed at 700 ms */
  size_t noted = xa_decay_limit(&d, 700 * MS, 1000);
  size_t unnoted = xa_decay_limit(&plain, 700 * MS, 1000);
  assert_true(unnoted < 300);                     /* 700 ms old: mostly gone */
  assert_true(noted >= 990);                      /* just freed: all stay */
}

static void test_decay_never_and_immediate(void **state) {
  (void)state;
  struct xa_decay d;
  xa_decay_init(&d, -1, 0);
  assert_true(xa_decay_limit(&d, 1000000 * MS, 500) >= 500);
  xa_decay_init(&d, 0, 0);
  assert_int_equal(xa_decay_limit(&d, 0, 500), 0);
}

/* A new decay time keeps the backlog: each page keeps its place on the
 * curve, which it then runs along at the new pace. */
static void test_decay_set_ms_keeps_backlog(void **state) {
  (void)state;
  struct xa_decay d;
  xa_decay_init(&d, 1000, 0);
  xa_decay_limit(&d, 0, 1000);
  size_t short_lim = xa_decay_limit(&d, 600 * MS, 1000);
  assert_true(short_lim < 500);
  xa_decay_init(&d, 1000, 0);
  xa_decay_limit(&d, 0, 1000);
  xa_decay_set_ms(&d, 8000, 0);
  size_t long_lim = xa_decay_limit(&d, 600 * MS, 1000);
  assert_true(long_lim > 900);                       /* 600 ms of 8 s: nearly all stay */
  xa_decay_set_ms(&d, 1000, 600 * MS);              /* they decay within 1 s again */
  size_t lim = xa_decay_limit(&d, 1200 * MS, 1000);
  assert_true(lim < 500);
  assert_int_equal(xa_decay_limit(&d, 1700 * MS, 1000), 0);
  /* 500 ms into 1 s, then 2 s: the pages keep their place in the curve
   * (about half may stay, not all as new ones would), and reach its end
   * later than 1 s would have them */
  xa_decay_init(&d, 1000, 0);
  xa_decay_limit(&d, 0, 1000);
  xa_decay_set_ms(&d, 2000, 500 * MS);
  lim = xa_decay_limit(&d, 500 * MS, 1000);
  assert_true(lim > 300 && lim < 700);
  assert_true(xa_decay_limit(&d, 1000 * MS, 1000) > 50);
  xa_decay_set_ms(&d, 0, 500 * MS);                  /* 0: at once */
  assert_int_equal(xa_decay_limit(&d, 500 * MS, 1000), 0);
}

#define MB ((size_t)1 << 20)

/* Purges whose pages are soon faulted in again lengthen the
 * decay time, quickly, up to the cap; small purges are not judged. */
static void test_adapt_regret_lengthens(void **state) {
  (void)state;
  struct xa_decay_adapt a;
  size_t refault = 0;
  xa_decay_adapt_init(&a, 0, refault);
  assert_int_equal(xa_decay_adapt_update(&a, 0, refault, 0, 1000), 1);
  /* 100 KiB purged, all faulted back: below XA_DECAY_JUDGE_MIN, no change */
  assert_int_equal(xa_decay_adapt_update(&a, 100 * MS, refault, 100 << 10, 1000), 1);
  refault += 100 << 10;
  assert_int_equal(xa_decay_adapt_update(&a, 200 * MS, refault, 0, 1000), 1);
  /* 4 MiB purged in a pause; a quarter back: not yet; a third: longer */
  assert_int_equal(xa_decay_adapt_update(&a, 500 * MS, refault, 4 * MB, 1000), 1);
  refault += 1 * MB;
  assert_int_equal(xa_decay_adapt_update(&a, 600 * MS, refault, 0, 1000), 1);
  refault += MB / 2;
  unsigned s = xa_decay_adapt_update(&a, 700 * MS, refault, 0, 1000);
  assert_int_equal(s, XA_DECAY_GROW);
  /* the same window's purge is not counted twice */
  refault += 2 * MB;
  assert_int_equal(xa_decay_adapt_update(&a, 800 * MS, refault, 0, 1000), XA_DECAY_GROW);
  /* the next window's purge comes back too: capped */
  uint64_t t = 2000 * MS;
  assert_int_equal(xa_decay_adapt_update(&a, t, refault, 4 * MB, 1000), XA_DECAY_GROW);
  refault += 4 * MB;
  assert_int_equal(xa_decay_adapt_update(&a, t + 100 * MS, refault, 0, 1000), XA_DECAY_SCALE_MAX);
  refault += 64 * MB;                                  /* growth pays nothing more */
  assert_int_equal(xa_decay_adapt_update(&a, t + 200 * MS, refault, 0, 1000), XA_DECAY_SCALE_MAX);
}

/* Purges that nothing follows shorten the decay time again, window by
 * window, down to dirty_decay_ms; refault pages with nothing owed judge
 * nothing. */
static void test_adapt_relaxes(void **state) {
  (void)state;
  struct xa_decay_adapt a;
  size_t refault = 0;
  xa_decay_adapt_init(&a, 0, refault);
  xa_decay_adapt_update(&a, 0, refault, 0, 100);
  for (int i = 0; i < 3; i++) {                     /* regret, three windows running */
    uint64_t t = (uint64_t)(i + 1) * 1000 * MS;
    xa_decay_adapt_update(&a, t, refault, 4 * MB, 100);
    refault += 4 * MB;
    xa_decay_adapt_update(&a, t + 10 * MS, refault, 0, 100);
  }
  assert_int_equal(a.scale, XA_DECAY_SCALE_MAX);
  /* from now on every window purges 4 MiB that never come back */
  uint64_t t = 10000 * MS;
  unsigned last = a.scale, steps = 0;
  for (int w = 0; w < 40 && a.scale > 1; w++) {
    t += 100 * MS * a.scale + MS;                   /* past the window's end */
    unsigned s = xa_decay_adapt_update(&a, t, refault, 4 * MB, 100);
    assert_true(s == last || s == last / 2);
    if (s < last) steps++;
    last = s;
  }
  assert_int_equal(a.scale, 1);
  assert_int_equal(steps, 3);                        /* 8 -> 4 -> 2 -> 1 */
  /* windows without purges clear the debts; growth then judges nothing */
  for (int w = 0; w <= XA_DECAY_REGRET_WINDOWS; w++) {
    t += 101 * MS;
    xa_decay_adapt_update(&a, t, refault, 0, 100);
  }
  refault += 256 * MB;
  assert_int_equal(xa_decay_adapt_update(&a, t + 10 * MS, refault, 0, 100), 1);
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

/* The idle watch: due only after idle_ns with no take since the first
 * look; a take starts the time anew; a reset forgets it. */
static void test_idle_watch(void **state) {
  (void)state;
  struct xa_idle_watch w = {0, 0};
  assert_false(xa_idle_due(&w, 0, 1000, 100));     /* first look */
  assert_false(xa_idle_due(&w, 0, 1099, 100));
  assert_false(xa_idle_due(&w, 1, 1200, 100));     /* taken meanwhile: anew */
  assert_false(xa_idle_due(&w, 1, 1299, 100));
  assert_true(xa_idle_due(&w, 1, 1300, 100));
  assert_false(xa_idle_due(&w, 1, 5000, 100));     /* due once, then watched anew */
  xa_idle_reset(&w);
  assert_false(xa_idle_due(&w, 1, 9000, 100));     /* reset: a first look again */
  assert_true(xa_idle_due(&w, 1, 9100, 100));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_decay_curve),
      cmocka_unit_test(test_decay_reuse_and_new),
      cmocka_unit_test(test_decay_never_and_immediate),
      cmocka_unit_test(test_decay_noted_pages_are_young),
      cmocka_unit_test(test_decay_set_ms_keeps_backlog),
      cmocka_unit_test(test_adapt_regret_lengthens),
      cmocka_unit_test(test_adapt_relaxes),
      cmocka_unit_test(test_idle_watch),
      cmocka_unit_test(test_options_parse),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
