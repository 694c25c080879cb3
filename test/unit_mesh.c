/* Unit tests of meshing's choice and bookkeeping (src/arena.c, src/mesh.c)
 * on a private arena, with mesh:true from this program's xalloc_conf:
 * which slabs pair (never two whose live objects share an offset), what
 * an owner then hands out (only slots free in all its slabs), frees
 * through a meshed slab's addresses, the alias given its own pages back
 * when it empties, and the arena invariants after every step; and fork:
 * handlers of the program's that run while the heap is copy-on-write (a
 * block freed and purged there is given back; an alias and its owner
 * written apart keep both writes), and the file generation that tells a
 * chunk made during a fork to go.  Skipped where the kernel refuses
 * userfaultfd write protection. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "testutil.h"
#include "arena_testutil.h"
#include "init.h"
#include "fastpath.h"
#include "mesh.h"

const char *xalloc_conf = "mesh:true";


static struct xa_span *span_of(void *p) {
  struct xa_chunk *c = xa_chunk_of(p);
  return xa_chunk_span(c, xa_chunk_info(c, p)->first);
}

#define NSLABS 3

/* Three slabs of class cls, all their objects stamped; then all freed but
 * the objects at the listed slot indices (-1 ends each list). */
struct trio { unsigned cls, nobjs; size_t size; char *base[NSLABS]; void **obj; unsigned nobj; };

static void make_trio(struct xa_arena *a, struct trio *t, const int keep[NSLABS][4]) {
  t->cls = xa_sizeclass_of(64);
  t->nobjs = xa_classes[t->cls].nobjs;
  t->size = xa_classes[t->cls].size;
  t->nobj = NSLABS * t->nobjs;
  void **got = calloc(t->nobj, sizeof *got);
  t->obj = calloc(t->nobj, sizeof *t->obj);
  assert_int_equal(xa_arena_refill(a, t->cls, got, t->nobj), t->nobj);
  /* three fresh slabs: number them by address, objects by slot */
  unsigned ns = 0;
  for (unsigned i = 0; i < t->nobj; i++) {
    char *b = xa_span_addr(span_of(got[i]));
    bool seen = false;
    for (unsigned k = 0; k < ns; k++) seen |= t->base[k] == b;
    if (!seen) { assert_true(ns < NSLABS); t->base[ns++] = b; }
  }
  assert_int_equal(ns, NSLABS);
  for (unsigned x = 0; x < ns; x++)
    for (unsigned y = x + 1; y < ns; y++)
      if (t->base[y] < t->base[x]) { char *tmp = t->base[x]; t->base[x] = t->base[y]; t->base[y] = tmp; }
  for (unsigned i = 0; i < t->nobj; i++) {
    char *b = xa_span_addr(span_of(got[i]));
    unsigned sl = 0;
    while (t->base[sl] != b) sl++;
    t->obj[sl * t->nobjs + (unsigned)(((char *)got[i] - b) / t->size)] = got[i];
  }
  free(got);
  void **drop = calloc(t->nobj, sizeof *drop);
  unsigned ndrop = 0;
  for (unsigned i = 0; i < t->nobj; i++) {
    unsigned sl = i / t->nobjs, slot = i % t->nobjs;
    assert_non_null(t->obj[i]);
    tu_fill(t->obj[i], t->size, i);
    bool kept = false;
    for (int k = 0; k < 4 && keep[sl][k] >= 0; k++) kept |= (unsigned)keep[sl][k] == slot;
    if (kept) continue;
    drop[ndrop++] = t->obj[i];
    t->obj[i] = NULL;
  }
  xa_arena_flush(drop, ndrop, "test");
  free(drop);
  check(a);
}

static void check_trio(struct trio *t) {
  for (unsigned i = 0; i < t->nobj; i++)
    if (t->obj[i] && !tu_check(t->obj[i], t->size, i)) fail_msg("object %u changed", i);
}

static void skip_without_mesh(void) {
  if (!xa_mesh_on) skip();
}

/* Tests of chunks that start in the file (kernels before 6.4): run with
 * XA_TEST_MESH_IN_FILE=1 (test/mesh_suites.sh does).  Where chunks start
 * private, a large block's chunk is never adopted, and xa_chunk_new's
 * chunks are private. */
static void skip_when_adopting(void) {
  if (xa_mesh_can_adopt()) skip();
}

/* Slabs 0 and 1 share a live offset (5): never meshed together.  Slab 2
 * (offset 1) is disjoint from both: exactly one mesh, which moves a slab
 * onto another's pages; the objects keep their bytes. */
static void test_pairs_only_disjoint_slabs(void **state) {
  (void)state;
  skip_without_mesh();
  struct xa_arena *a = new_arena();
  static const int keep[NSLABS][4] = {{0, 5, -1}, {5, -1}, {1, -1}};
  struct trio t;
  make_trio(a, &t, keep);
  uint64_t before = xa_mesh_stats.meshes;
  xa_arena_mesh(a, 1000000000);
  check(a);
  assert_int_equal(xa_mesh_stats.meshes - before, 1);
  assert_int_equal(a->meshed_slabs, 1);
  struct xa_span *s0 = span_of(t.base[0]), *s1 = span_of(t.base[1]), *s2 = span_of(t.base[2]);
  assert_int_equal(s2->state == XA_SPAN_MESHED || s0->state == XA_SPAN_MESHED || s1->state == XA_SPAN_MESHED, 1);
  /* 0 and 1 never in one group */
  assert_false(s0->state == XA_SPAN_MESHED && s0->owner == s1);
  assert_false(s1->state == XA_SPAN_MESHED && s1->owner == s0);
  check_trio(&t);
  /* a meshed slab's pages are its owner's: a write through one address
   * reads back through the other */
  struct xa_span *m = s0->state == XA_SPAN_MESHED ? s0 : s1->state == XA_SPAN_MESHED ? s1 : s2;
  char *mp = xa_span_addr(m), *op = xa_span_addr(m->owner);
  unsigned slot = m == s2 ? 1 : 5;      /* a live slot of the moved slab */
  ((char *)mp)[(size_t)slot * t.size] ^= 0x7f;
  assert_int_equal(op[(size_t)slot * t.size], mp[(size_t)slot * t.size]);
  ((char *)mp)[(size_t)slot * t.size] ^= 0x7f;
  for (unsigned i = 0; i < t.nobj; i++)
    if (t.obj[i]) xa_arena_flush(&t.obj[i], 1, "test");
  xa_arena_mesh(a, 1000000000);            /* the emptied alias goes */
  check(a);
  assert_int_equal(a->meshed_slabs, 0);
  free(t.obj);
}

/* Where the kernel holds private pages still (Linux 6.4), chunks start
 * private and the first mesh that picks their slabs adopts them into the
 * file (mesh.h).  A chunk that holds a large block is not adopted (the
 * program may have changed its pages' protection): nothing meshes there.
 * Once the block is gone (and the wait after a refusal is over), the same
 * pair meshes: the chunk is in the file, every object keeps its bytes,
 * and a write through the alias reads back through its owner.  Before
 * that, an adoption refused half way (a piece's move fails) leaves the
 * chunk private, every object as it was. */
static void test_adoption(void **state) {
  (void)state;
  skip_without_mesh();
  if (!xa_mesh_can_adopt()) skip();         /* chunks start in the file */
  struct xa_arena *a = new_arena();
  void *big = xa_arena_alloc_large(a, 64 * 1024, 0);
  assert_non_null(big);
  memset(big, 0x5a, 64 * 1024);
  static const int keep[NSLABS][4] = {{0, -1}, {3, -1}, {0, 5, -1}};
  struct trio t;
  make_trio(a, &t, keep);
  struct xa_chunk *c = xa_chunk_of(t.base[0]);
  assert_ptr_equal(xa_chunk_of(big), c);
  assert_false(c->meshable);
  uint64_t meshes = xa_mesh_stats.meshes, adopted = xa_mesh_stats.adopted;
  xa_arena_mesh(a, 1000000000);
  check(a);
  assert_int_equal(xa_mesh_stats.meshes, meshes);
  assert_int_equal(xa_mesh_stats.adopted, adopted);
  assert_false(c->meshable);
  assert_true(c->adopt_wait > 0);
  xa_arena_free_large(xa_arena_large_span(big));
  /* A piece refused half way: the pieces before it go back to private
   * memory, objects and all, and nothing meshes. */
  uint64_t failed = xa_mesh_stats.failed;
  xa_mesh_adopt_fail_at = 3;
  c->adopt_wait = 0;                        /* the wait is seconds long */
  xa_arena_mesh(a, 1000000000);
  check(a);
  assert_int_equal(xa_mesh_adopt_fail_at, 0);
  assert_int_equal(xa_mesh_stats.failed - failed, 1);
  assert_int_equal(xa_mesh_stats.adopted, adopted);
  assert_int_equal(xa_mesh_stats.meshes, meshes);
  assert_false(c->meshable);
  check_trio(&t);
  assert_false(tu_in_mesh_file(t.base[0]));
  c->adopt_wait = 0;
  /* passes that found nothing make the class wait a few */
  for (int pass = 0; pass < 8 && xa_mesh_stats.meshes == meshes; pass++) xa_arena_mesh(a, 1000000000);
  check(a);
  assert_int_equal(xa_mesh_stats.adopted - adopted, 1);
  assert_int_equal(xa_mesh_stats.meshes - meshes, 1);
  assert_true(c->meshable);
  check_trio(&t);
  assert_true(tu_in_mesh_file(t.base[0]));
  struct xa_span *m = NULL;
  for (unsigned k = 0; k < NSLABS; k++)
    if (span_of(t.base[k])->state == XA_SPAN_MESHED) m = span_of(t.base[k]);
  assert_non_null(m);
  char *mp = xa_span_addr(m), *op = xa_span_addr(m->owner);
  mp[t.size * 7] ^= 0x3c;
  assert_int_equal(op[t.size * 7], mp[t.size * 7]);
  for (unsigned i = 0; i < t.nobj; i++)
    if (t.obj[i]) xa_arena_flush(&t.obj[i], 1, "test");
  xa_arena_mesh(a, 1000000000);
  check(a);
  assert_int_equal(a->meshed_slabs, 0);
  free(t.obj);
}

/* Forty sparse slabs, each keeping one object at its own slot, with a
 * slab more than half full between each two (not sparse: no run of
 * neighbours forms, and every mesh after the first has an owner to go
 * to, while the class stays sparse on average): any two sparse ones
 * are disjoint, so one slab's pages can take them all.  More than 15 end
 * on one owner (the cap was 15 aliases; it is 63), every object keeps its
 * bytes, and once each is freed the aliases all go. */
#define MANY 40
static void test_many_aliases_on_one_owner(void **state) {
  (void)state;
  skip_without_mesh();
  struct xa_arena *a = new_arena();
  unsigned cls = xa_sizeclass_of(64), nobjs = xa_classes[cls].nobjs;
  size_t size = xa_classes[cls].size, n = (size_t)2 * MANY * nobjs;
  assert_true(nobjs > MANY);
  void **got = calloc(n, sizeof *got), **drop = calloc(n, sizeof *drop), **half = calloc(n, sizeof *half);
  void *kept[MANY] = {0};
  char *base[2 * MANY];
  unsigned nb = 0, ndrop = 0, nhalf = 0;
  assert_int_equal(xa_arena_refill(a, cls, got, (unsigned)n), n);
  for (size_t i = 0; i < n; i++) {
    char *b = xa_span_addr(span_of(got[i]));
    unsigned k = 0;
    while (k < nb && base[k] != b) k++;
    if (k == nb) { assert_true(nb < 2 * MANY); base[nb++] = b; }
  }
  assert_int_equal(nb, 2 * MANY);
  for (unsigned x = 0; x < nb; x++)          /* by address: neighbours */
    for (unsigned y = x + 1; y < nb; y++)
      if (base[y] < base[x]) { char *t = base[x]; base[x] = base[y]; base[y] = t; }
  for (size_t i = 0; i < n; i++) {
    char *b = xa_span_addr(span_of(got[i]));
    unsigned k = 0;
    while (base[k] != b) k++;
    unsigned slot = (unsigned)(((char *)got[i] - b) / size);
    tu_fill(got[i], size, k);
    if (k % 2 && slot <= nobjs / 2) half[nhalf++] = got[i];
    else if (k % 2 == 0 && slot == k / 2) kept[k / 2] = got[i];
    else drop[ndrop++] = got[i];
  }
  xa_arena_flush(drop, ndrop, "test");
  check(a);
  for (int pass = 0; pass < 20; pass++) xa_arena_mesh(a, 1000000000);
  check(a);
  unsigned most = 0;
  for (unsigned k = 0; k < nb; k += 2) {
    struct xa_span *s = span_of(base[k]);
    unsigned c = 0;
    if (s->state == XA_SPAN_SLAB)
      for (struct xa_span *m = s->aliases; m; m = m->alias_next) c++;
    if (c > most) most = c;
    assert_true(tu_check(kept[k / 2], size, k));
  }
  assert_true(most > 15);
  for (unsigned k = 0; k < MANY; k++) xa_arena_flush(&kept[k], 1, "test");
  xa_arena_mesh(a, 1000000000);
  check(a);
  assert_int_equal(a->meshed_slabs, 0);
  xa_arena_flush(half, nhalf, "test");
  check(a);
  free(got);
  free(drop);
  free(half);
}

/* An owner hands out only slots free in every slab on its pages; a free
 * through the meshed slab's address clears that slab's bit; once the
 * meshed slab is empty it is unmeshed and its pages read as zero. */
static void test_owner_and_alias_bookkeeping(void **state) {
  (void)state;
  skip_without_mesh();
  struct xa_arena *a = new_arena();
  /* the top slots: a refill takes the highest free slots first (256
   * slots in a 16 KiB slab, 1024 in the 64 KiB slabs of meshing) */
  const int n = (int)xa_classes[xa_sizeclass_of(64)].nobjs, top = n - 4;
  const int keep[NSLABS][4] = {{n - 1, n - 3, -1}, {n - 2, n - 4, -1}, {n - 4, n - 3, n - 2, n - 1}};
  struct trio t;
  make_trio(a, &t, keep);
  xa_arena_mesh(a, 1000000000);
  check(a);
  assert_int_equal(a->meshed_slabs, 1);      /* slabs 0 and 1, disjoint */
  struct xa_span *s0 = span_of(t.base[0]), *s1 = span_of(t.base[1]);
  struct xa_span *alias = s0->state == XA_SPAN_MESHED ? s0 : s1, *owner = alias->owner;
  assert_true(owner == s0 || owner == s1);
  assert_int_equal(owner->nfree, t.nobjs - 4);
  /* everything the owner has left: never the top four slots */
  void **v = calloc(2 * t.nobjs, sizeof *v);    /* the owner's and slab 2's free slots */
  unsigned got = 0;
  while (owner->nfree && got < 2 * t.nobjs) {
    unsigned n = xa_arena_refill(a, t.cls, v + got, 1);
    if (!n) break;
    got += n;
  }
  unsigned from_owner = 0;
  for (unsigned i = 0; i < got; i++) {
    if (span_of(v[i]) != owner) continue;
    from_owner++;
    size_t slot = (size_t)((char *)v[i] - xa_span_addr(owner)) / t.size;
    assert_true(slot < (size_t)top);
  }
  assert_int_equal(from_owner, t.nobjs - 4);
  check_trio(&t);
  xa_arena_flush(v, got, "test");
  check(a);
  /* the alias's two objects, freed through its own addresses */
  unsigned first = alias == s0 ? 0 : t.nobjs;
  unsigned live[2] = {first + (unsigned)(alias == s0 ? n - 1 : n - 2), first + (unsigned)(alias == s0 ? n - 3 : n - 4)};
  xa_arena_flush(&t.obj[live[0]], 1, "test");
  assert_int_equal(alias->nfree, t.nobjs - 1);
  assert_true(xa_arena_small_is_free(t.obj[live[0]]));
  assert_false(xa_arena_small_is_free(t.obj[live[1]]));
  check(a);
  xa_arena_flush(&t.obj[live[1]], 1, "test");
  t.obj[live[0]] = t.obj[live[1]] = NULL;
  uint64_t unmeshes = xa_mesh_stats.unmeshes;
  xa_arena_mesh(a, 1000000000);
  check(a);
  assert_int_equal(xa_mesh_stats.unmeshes - unmeshes, 1);
  assert_int_equal(a->meshed_slabs, 0);
  /* its own pages again: zero where the owner's objects are */
  char *ap = t.base[alias == s0 ? 0 : 1];
  assert_int_equal(span_of(ap)->state, XA_SPAN_FREE);
  assert_true(tu_is_zero(ap + (size_t)top * t.size, 4 * t.size));
  check_trio(&t);
  for (unsigned i = 0; i < t.nobj; i++)
    if (t.obj[i]) xa_arena_flush(&t.obj[i], 1, "test");
  check(a);
  free(v);
  free(t.obj);
}

/* ---- handlers inside the fork ----------------------------------------
 * Linked statically, this program's constructor (priority 101) registers
 * its fork handlers before xalloc's constructor registers xalloc's, so
 * its parent and child handlers run before xalloc's: while the heap is
 * copy-on-write.  They free a large block and purge; its pages must be
 * given back on both sides, in a child that takes its parent's file too
 * (MADV_DONTNEED on a copy-on-write view leaves the file's pages, which
 * would stay resident in that file as free pages that count as purged). */
#define HANDLER_BIG (96 << 10)      /* a large block: carved from a chunk */
static void *handler_block;
static uint64_t handler_takes = UINT64_MAX;   /* fork_takes as the child's handler saw it */
/* An alias's object and its owner's, written by the handlers (each side
 * its own values): the two pages may then differ on both sides, and each
 * side's file must get both objects. */
static volatile uint64_t *alias_obj, *owner_obj;
enum { PARENT_ALIAS = 0xa1a1, PARENT_OWNER = 0xa2a2, CHILD_ALIAS = 0xb1b1, CHILD_OWNER = 0xb2b2 };
static void handler_parent(void) {
  if (alias_obj) {
    *alias_obj = PARENT_ALIAS;
    *owner_obj = PARENT_OWNER;
  }
  if (!handler_block) return;
  free(handler_block);
  malloc_trim(0);
}
static void handler_child(void) {
  handler_takes = xa_mesh_stats.fork_takes;
  if (alias_obj) {
    *alias_obj = CHILD_ALIAS;
    *owner_obj = CHILD_OWNER;
  }
  if (!handler_block) return;
  free(handler_block);
  malloc_trim(0);
}
__attribute__((constructor(101))) static void register_handlers(void) {
  pthread_atfork(NULL, handler_parent, handler_child);
}

static long resident_pages(void *p, size_t size) {
  unsigned char vec[HANDLER_BIG / 4096];
  if (size / xa_os_page > sizeof vec || mincore(p, size, vec) != 0) return -1;
  long n = 0;
  for (size_t i = 0; i < size / xa_os_page; i++) n += vec[i] & 1;
  return n;
}

/* The child's handler ran before xalloc's, which counts the take after
 * it: else the test would not test the window. */
static bool child_handler_in_window(void) { return handler_takes + 1 == xa_mesh_stats.fork_takes; }

static void test_fork_handlers_in_window(void **state) {
  (void)state;
  skip_without_mesh();
  skip_when_adopting();
  /* one CPU: the same arena each time, and its chunk stays (another block
   * lives in it) */
  cpu_set_t one, was_set;
  assert_int_equal(sched_getaffinity(0, sizeof was_set, &was_set), 0);
  CPU_ZERO(&one);
  CPU_SET(sched_getcpu(), &one);
  assert_int_equal(sched_setaffinity(0, sizeof one, &one), 0);
  void *keep = malloc(HANDLER_BIG);
  for (int round = 0; round < 3; round++) {
    void *was = handler_block = malloc(HANDLER_BIG);
    assert_non_null(was);
    memset(was, 0xab, HANDLER_BIG);
    assert_true(xa_chunk_of(was)->meshable);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
      long n = resident_pages(was, HANDLER_BIG);
      bool in_window = child_handler_in_window();
      if (n || !in_window)
        fprintf(stderr, "round %d: child: %ld pages of the purged block resident; handler in the window: %d\n", round,
                n, in_window);
      _exit(n == 0 && in_window ? 0 : 3);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    handler_block = NULL;
    assert_int_equal(resident_pages(was, HANDLER_BIG), 0);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
  }
  free(keep);
  assert_int_equal(sched_setaffinity(0, sizeof was_set, &was_set), 0);
}

/* Sparse slabs of 64-byte objects in the process's arenas, meshed: the
 * kept objects of every other slab lie at slots 0, 16, ..., of the
 * others at 8, 24, ..., so pairs are disjoint.  Points alias_obj and
 * owner_obj at a kept object of an alias and one of its owner. */
static void **mesh_some(size_t n) {
  /* not a large block of the heap: its chunk would not be adopted */
  void **v = mmap(NULL, n * sizeof *v, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  assert_true(v != MAP_FAILED);
  for (size_t i = 0; i < n; i++) v[i] = malloc(64);
  size_t size = xa_classes[xa_sizeclass_of(64)].size;
  for (size_t i = 0; i < n; i++) {
    struct xa_span *s = span_of(v[i]);
    size_t slot = (size_t)((char *)v[i] - xa_span_addr(s)) / size;
    size_t slab = (uintptr_t)xa_span_addr(s) / xa_span_bytes(s);
    if (slot % 16 != (slab % 2) * 8) free(v[i]), v[i] = NULL;
  }
  xa_tcache_flush_all();
  for (int k = 0; k < 10; k++) xa_arena_mesh_all(1000000000, true);
  for (size_t i = 0; i < n && !owner_obj; i++) {
    if (!v[i] || span_of(v[i])->state != XA_SPAN_MESHED) continue;
    for (size_t j = 0; j < n && !owner_obj; j++)
      if (v[j] && span_of(v[j]) == span_of(v[i])->owner) {
        alias_obj = v[i];
        owner_obj = v[j];
      }
  }
  return v;
}

/* An alias and its owner, each written by the handlers on both sides of
 * a fork while the heap is copy-on-write: the alias's page and its
 * owner's then differ on both sides, and each side's file must hold both
 * objects as that side wrote them (the owner's page copied whole carries
 * the alias's slot as it was).  With mesh_fork:take the child writes into
 * the file it takes; mesh_fork:copy runs in api_mesh's fork test. */
static void test_fork_alias_and_owner_in_window(void **state) {
  (void)state;
  skip_without_mesh();
  void **v = mesh_some(16384);
  if (!owner_obj) fail_msg("no meshed pair with live objects on both sides");
  *alias_obj = 1;
  *owner_obj = 2;
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    bool ok = *alias_obj == CHILD_ALIAS && *owner_obj == CHILD_OWNER && child_handler_in_window();
    if (!ok)
      fprintf(stderr, "child: alias %#llx owner %#llx, handler in the window %d\n", (unsigned long long)*alias_obj,
              (unsigned long long)*owner_obj, child_handler_in_window());
    _exit(ok ? 0 : 3);
  }
  int st;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  uint64_t a = *alias_obj, o = *owner_obj;
  alias_obj = owner_obj = NULL;
  assert_int_equal(a, PARENT_ALIAS);
  assert_int_equal(o, PARENT_OWNER);
  assert_true(WIFEXITED(st));
  assert_int_equal(WEXITSTATUS(st), 0);
  for (size_t i = 0; i < 16384; i++) free(v[i]);
  munmap(v, 16384 * sizeof *v);
}

/* A chunk being made while a fork goes by maps the file of before the
 * fork, which is no longer the process's after it: its generation says
 * so (the arena then drops it before linking it), on both sides; one
 * made after the fork is current. */
static void test_fork_changes_file_generation(void **state) {
  (void)state;
  skip_without_mesh();
  skip_when_adopting();
  struct xa_chunk *c = xa_chunk_new(xa_arenas[0], false);
  assert_non_null(c);
  assert_true(c->meshable);
  assert_true(xa_mesh_gen_current(c->mesh_gen));
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) _exit(xa_mesh_gen_current(c->mesh_gen) ? 3 : 0);
  int st;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFEXITED(st));
  assert_int_equal(WEXITSTATUS(st), 0);
  assert_false(xa_mesh_gen_current(c->mesh_gen));
  xa_chunk_delete(c);
  c = xa_chunk_new(xa_arenas[0], false);
  assert_non_null(c);
  assert_true(c->meshable && xa_mesh_gen_current(c->mesh_gen));
  xa_chunk_delete(c);
}

int main(void) {
  if (getenv("XA_TEST_MESH_IN_FILE")) xa_mesh_adoption = false;
  if (!xa_init()) return 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pairs_only_disjoint_slabs),
      cmocka_unit_test(test_owner_and_alias_bookkeeping),
      cmocka_unit_test(test_many_aliases_on_one_owner),
      cmocka_unit_test(test_adoption),
      cmocka_unit_test(test_fork_handlers_in_window),
      cmocka_unit_test(test_fork_alias_and_owner_in_window),
      cmocka_unit_test(test_fork_changes_file_generation),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
