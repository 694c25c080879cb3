/* White-box helpers of the arena unit tests (unit_arena.c, unit_mesh.c):
 * a private arena, and the invariant walker as a test assertion. */
#ifndef XA_ARENA_TESTUTIL_H
#define XA_ARENA_TESTUTIL_H
#include "arena_private.h"   /* white-box: reads the arena's fields */
#include "base.h"

static struct xa_arena *new_arena(void) {
  struct xa_arena *a = xa_base_alloc(sizeof *a);
  assert_non_null(a);
  xa_lock_reinit(&a->lock);
  a->index = 999;
  return a;
}

static void check(struct xa_arena *a) {
  xa_lock(&a->lock);
  const char *err = xa_arena_check_locked(a);
  xa_unlock(&a->lock);
  if (err) fail_msg("arena invariant: %s", err);
}
#endif
