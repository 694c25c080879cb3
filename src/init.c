/* Initialisation, fork and thread exit.
 *
 * The library's constructor initialises at load, so options, help,
 * warnings and statistics at exit work in a program that never allocates.
 * An allocation that comes before the constructor (from the loader, or from
 * another library's constructor) initialises lazily, from inside malloc:
 * that path makes only calls that take no lock glibc may hold while it
 * calls the allocator (auxv, affinity, mmap, pthread_key_create; see
 * purge.c for the rule).  What takes such locks runs from the constructor
 * only: pthread_atfork (glibc holds its fork-handler lock while it grows
 * its handler list with malloc) and atexit (its exit-function lock is held
 * around calloc).  A re-entrant malloc from these finds the allocator
 * ready. */
#include "init.h"
#include "arena.h"
#include "base.h"
#include "chunk.h"
#include "huge.h"
#include "lock.h"
#include "mesh.h"
#include "options.h"
#include "os.h"
#include "pressure.h"
#include "prof.h"
#include "purge.h"
#include "sizeclass.h"
#include "stats.h"
#include "tcache.h"
#include "valgrind.h"
#include <pthread.h>

int xa_init_done;
static xa_lock_t init_lock = XA_LOCK_INIT;

#define NARENAS_MAX 256

/* Fork: every lock in one fixed order, so the child finds them consistent.
 * Meshing's and the profiler's handlers are called only when they are on
 * (set at initialisation, before these are registered): their code is
 * cold (COLD_FILES in the Makefile), and their locks are taken by no one
 * otherwise.
 * Our handlers are registered at initialisation, usually after the
 * application's: ours run first before fork and last after it, and the
 * application's handlers in between may allocate (see xa_fork_owner). */
static void prefork(void) {
  if (!xa_init_done) return;
  xa_arena_fork_check();       /* stops the process, with no lock held, where fork cannot work */
  xa_lock(&init_lock);
  xa_purge_prefork();
  xa_tcache_prefork();
  if (xa_mesh_on) xa_mesh_prefork();   /* before the arenas: a mesh step takes it first */
  xa_arena_prefork();
  xa_huge_prefork();
  if (xa_prof_on) xa_prof_prefork();
  xa_lock(&xa_base_lock);
  xa_fork_owner = true;
}

static void postfork_parent(void) {
  if (!xa_init_done) return;
  xa_fork_owner = false;
  xa_unlock(&xa_base_lock);
  if (xa_prof_on) xa_prof_postfork_parent();
  xa_huge_postfork_parent();
  xa_arena_postfork_parent();
  if (xa_mesh_on) xa_mesh_postfork_parent();
  xa_tcache_postfork_parent();
  xa_purge_postfork_parent();
  xa_unlock(&init_lock);
}

static void postfork_child(void) {
  if (!xa_init_done) return;
  xa_fork_owner = false;
  xa_os_postfork_child();
  /* The huge shards before the arenas: the arenas finish the purges other
   * threads had under way, and a chunk that empties goes back to its
   * region, under its shard's lock (chunk.h).  The shards' step touches
   * only their own records and the purging threads' records on their
   * stacks. */
  xa_huge_postfork_child();
  /* Then the arenas, before anything touches a chunk's pages: with
   * meshing the chunks are a copy-on-write view of a file until the child
   * has a file of its own. */
  xa_arena_postfork_child();
  xa_lock_reinit(&xa_base_lock);
  if (xa_prof_on) xa_prof_postfork_child();
  xa_tcache_postfork_child();
  xa_purge_postfork_child();
  xa_lock_reinit(&init_lock);
}

/* A thread's exit (the thread cache's key destructor): its cached objects
 * go back to the arenas, then the purger hears of them (tcache.h). */
static void thread_exit(void *tc) {
  xa_tcache_destroy(tc);
  xa_purge_notify();
}

bool xa_init_slow(void) {
  xa_lock(&init_lock);
  if (xa_init_done) { xa_unlock(&init_lock); return true; }
  xa_os_init();
  xa_valgrind_init();
  xa_options_init();
  /* Under valgrind purge inline: a purger thread's TLS would be reported
   * as a possible leak of the program's. */
  if (xa_on_valgrind) xa_opt.background_thread = 0;
  xa_chunk_init();
  /* Each option's code is asked for only when the option is on: it is
   * linked apart (COLD_FILES in the Makefile), and a program that does not
   * use it never faults its pages in. */
  if (xa_opt.mesh && !xa_on_valgrind) xa_mesh_init();   /* valgrind knows no userfaultfd */
  xa_sizeclass_init(xa_os_page, xa_mesh_on);      /* slab sizes depend on meshing */
  /* Chunks from the huge blocks' regions (chunk.h), but where a chunk must
   * be a mapping of its own: meshing maps its file over chunks at their
   * addresses; secure mode unmaps what is freed; memcheck is told of each
   * chunk's pages as they are mapped; and under an address-space or data
   * limit a chunk would keep its whole region (1/16 of the limit) from
   * going back when big blocks run short. */
  static const struct xa_chunk_source regions = {xa_huge_chunk_take, xa_huge_chunk_give, &xa_huge_region_bytes};
  if (xa_opt.chunk_regions && !xa_mesh_on && !xa_opt.secure && !xa_on_valgrind && xa_os_heap_limit() == SIZE_MAX)
    xa_chunk_set_source(&regions);
  /* One arena per CPU the process may use: the affinity mask, lowered to
   * the cgroup's CPU quota and cpuset (and the memory limit is read). */
  unsigned cpus = xa_pressure_init(xa_os_ncpus());
  unsigned n = xa_opt.narenas ? (unsigned)xa_opt.narenas : cpus;
  if (n > NARENAS_MAX) n = NARENAS_MAX;
  if (!xa_arena_init_all(n) || !xa_tcache_init_global(thread_exit)) {
    xa_unlock(&init_lock);
    return false;
  }
  if (xa_opt.prof) xa_prof_init();
  __atomic_store_n(&xa_init_done, 1, __ATOMIC_RELEASE);
  xa_unlock(&init_lock);
  return true;
}

/* At load: initialise if nothing allocated yet, then register what must
 * not be registered from inside malloc. */
__attribute__((constructor)) static void init_at_load(void) {
  if (!xa_init()) return;
  pthread_atfork(prefork, postfork_parent, postfork_child);
  xa_purge_watch_main();
  if (xa_opt.stats_print) xa_stats_at_load();
  if (xa_prof_on) xa_prof_at_load();
}
