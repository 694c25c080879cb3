/* Meshing's memory (see mesh.h): the file, the protected move, fork. */
#include "mesh.h"
#include "error.h"
#include "lock.h"
#include "options.h"
#include "os.h"
#include <string.h>

bool xa_mesh_on;
struct xa_mesh_stats xa_mesh_stats;
static int mesh_fd = -1;        /* the memfd: offset = address */
static int wp_fd = -1;          /* the userfaultfd */
static bool fork_copy_ok = true;   /* this fork's protect calls all took */
static xa_lock_t step_lock = XA_LOCK_INIT;

#define FILE_SIZE ((uint64_t)1 << XA_VA_BITS)

static void count(uint64_t *c, uint64_t n) { __atomic_fetch_add(c, n, __ATOMIC_RELAXED); }

/* Each alias is a mapping of its own unless it continues its neighbour's
 * (the next slab of the neighbour's owner), and splits the chunk's
 * mapping: meshing stops while the process holds half of vm.max_map_count
 * (65530 by default) mappings, leaving the rest to the program.  The maps
 * are counted (/proc/self/maps) at the start of a pass once the aliases
 * alone could take an eighth of the limit; each mesh of the pass then
 * counts as two. */
static uint64_t map_limit = 65530;
static int64_t meshes_left;

static bool count_map(const struct xa_os_mapping *m, void *arg) {
  (void)m;
  ++*(size_t *)arg;
  return true;
}

void xa_mesh_pass_begin(void) {
  uint64_t aliases = __atomic_load_n(&xa_mesh_stats.meshes, __ATOMIC_RELAXED) -
                     __atomic_load_n(&xa_mesh_stats.unmeshes, __ATOMIC_RELAXED);
  int64_t left = INT64_MAX / 2;
  if (2 * aliases >= map_limit / 8) {
    size_t maps = 0;
    left = xa_os_maps(count_map, &maps) && maps < map_limit / 2 ? (int64_t)(map_limit / 2 - maps) / 2 : 0;
  }
  __atomic_store_n(&meshes_left, left, __ATOMIC_RELAXED);
}

bool xa_mesh_room(void) { return wp_fd >= 0 && __atomic_load_n(&meshes_left, __ATOMIC_RELAXED) > 0; }

void xa_mesh_init(void) {
  /* The file is as large as the address space: under a file size limit
   * (ulimit -f) its ftruncate would raise SIGXFSZ. */
  if (!xa_opt.mesh || xa_mesh_on || !xa_os_fsize_unlimited()) return;
  char buf[32];
  if (xa_os_read_file("/proc/sys/vm/max_map_count", buf, sizeof buf)) {
    uint64_t n = 0;
    for (const char *p = buf; *p >= '0' && *p <= '9'; p++) n = n * 10 + (uint64_t)(*p - '0');
    if (n) map_limit = n;
  }
  int fd = xa_os_memfd(FILE_SIZE), wp = fd >= 0 ? xa_os_wp_open() : -1;
  if (wp < 0) {            /* no protection, no meshing: chunks stay private */
    xa_os_close(fd);
    return;
  }
  mesh_fd = fd;
  wp_fd = wp;
  xa_mesh_on = true;
}

bool xa_mesh_back(void *c, size_t size) {
  return xa_mesh_on && xa_os_map_file(c, size, mesh_fd, (uintptr_t)c);
}

void xa_mesh_forget(void *c, size_t size) {
  if (mesh_fd >= 0) xa_os_punch(mesh_fd, (uintptr_t)c, size);
}

void xa_mesh_purge(bool shared, void *p, size_t size) {
  if (shared) xa_os_purge_shared(p, size);
  else xa_os_purge(p, size);
}

void xa_mesh_step_lock(void) { xa_lock(&step_lock); }
void xa_mesh_step_unlock(void) { xa_unlock(&step_lock); }

bool xa_mesh_move(char *from, char *to, size_t bytes, const uint64_t *live, unsigned nobjs, size_t objsize,
                  size_t *freed) {
  uint64_t t0 = xa_os_now();
  /* What the punch will free: from's pages in the file now (those its
   * slab purged are holes already; mincore sees the file's pages). */
  size_t resident = xa_os_resident_range(from, bytes, NULL);
  if (!xa_os_wp_protect(wp_fd, from, bytes)) {
    count(&xa_mesh_stats.failed, 1);
    return false;
  }
  /* Writers to `from` wait from here; readers go on.  `to`'s slots at
   * these offsets are free in every slab that shares its pages, so no one
   * else writes them. */
  size_t copied = 0;
  for (unsigned w = 0; w < (nobjs + 63) / 64; w++) {
    for (uint64_t bits = live[w]; bits; bits &= bits - 1) {
      size_t off = ((size_t)w * 64 + (unsigned)__builtin_ctzll(bits)) * objsize;
      memcpy(to + off, from + off, objsize);
      copied += objsize;
    }
  }
  bool ok = xa_os_map_file(from, bytes, mesh_fd, (uintptr_t)to);
  xa_os_wp_release(wp_fd, from, bytes, !ok);
  if (!ok) {
    count(&xa_mesh_stats.failed, 1);
    return false;
  }
  xa_os_punch(mesh_fd, (uintptr_t)from, bytes);
  __atomic_fetch_sub(&meshes_left, 1, __ATOMIC_RELAXED);
  count(&xa_mesh_stats.meshes, 1);
  count(&xa_mesh_stats.pages, resident >> xa_os_page_shift);
  *freed = resident;
  count(&xa_mesh_stats.bytes_copied, copied);
  count(&xa_mesh_stats.ns, xa_os_now() - t0);
  return true;
}

bool xa_mesh_restore(void *p, size_t bytes) {
  /* Its own offset was punched when it was meshed: it reads as zero. */
  if (!xa_os_map_file(p, bytes, mesh_fd, (uintptr_t)p)) {
    count(&xa_mesh_stats.failed, 1);
    return false;
  }
  count(&xa_mesh_stats.unmeshes, 1);
  return true;
}

/* ---- fork ------------------------------------------------------------ */

/* The child's copy of the file, made by the parent before the fork. */
static int child_fd = -1;

void xa_mesh_prefork(void) {
  if (xa_mesh_on) xa_lock(&step_lock);
}

void xa_mesh_fork_protect(void *p, size_t size) {
  if (!xa_os_wp_protect(wp_fd, p, size)) fork_copy_ok = false;
}

/* Between protect and unprotect: every writer of the span pages waits, so
 * the copy is the heap of one moment.  Only the forking thread runs our
 * code meanwhile, and it needs no lock that a waiting writer could hold:
 * the protection is lifted before this prepare handler returns, so no
 * lock the C library or the program takes later in fork (stdio's list
 * lock, other prepare handlers' mutexes) can be held by a waiting writer. */
void xa_mesh_fork_copy(void) {
  child_fd = fork_copy_ok ? xa_os_memfd(FILE_SIZE) : -1;
  if (child_fd >= 0 && !xa_os_copy_file(mesh_fd, child_fd, FILE_SIZE)) {
    xa_os_close(child_fd);
    child_fd = -1;
  }
  fork_copy_ok = true;
}

void xa_mesh_fork_unprotect(void *p, size_t size) { xa_os_wp_release(wp_fd, p, size, true); }

void xa_mesh_postfork_parent(void) {
  if (!xa_mesh_on) return;
  xa_os_close(child_fd);
  child_fd = -1;
  xa_unlock(&step_lock);
}

bool xa_mesh_child_begin(void) {
  if (!xa_mesh_on) return false;
  xa_lock_reinit(&step_lock);
  /* The parent's userfaultfd acts on the parent's memory: a new one. */
  xa_os_close(wp_fd);
  wp_fd = xa_os_wp_open();
  if (child_fd < 0) {
    /* Without its own copy the child would write the parent's memory:
     * there is no safe way on. */
    xa_error_fatal("mesh: a fork child could not get its own copy of the heap");
  }
  return true;
}

static void child_map(void *p, size_t size, uint64_t off) {
  if (!xa_os_map_file(p, size, child_fd, off))
    xa_error_fatal("mesh: a fork child could not map its copy of the heap");
}

void xa_mesh_child_map_own(void *p, size_t size) { child_map(p, size, (uintptr_t)p); }

void xa_mesh_child_map(void *p, size_t size, const void *backing) { child_map(p, size, (uintptr_t)backing); }

void xa_mesh_child_done(void) {
  xa_os_close(mesh_fd);
  mesh_fd = child_fd;
  child_fd = -1;
  count(&xa_mesh_stats.fork_copies, 1);
  /* Without a userfaultfd of its own the child meshes no more
   * (xa_mesh_room), but its chunks are still the file's: it goes on
   * unmeshing and purging them as such. */
}
