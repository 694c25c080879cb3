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
static struct xa_os_fd_id mesh_id;   /* its identity, to know it again */
static int wp_fd = -1;          /* the userfaultfd */
static struct xa_os_fd_id wp_id;
static bool mesh_lost;          /* the program closed mesh_fd, and it could not be reopened */
static bool fork_protected;     /* this fork's prefork protects the chunks */
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

static bool fds_check(void);

void xa_mesh_pass_begin(void) {
  xa_mesh_step_lock();
  fds_check();
  xa_mesh_step_unlock();
  uint64_t aliases = __atomic_load_n(&xa_mesh_stats.meshes, __ATOMIC_RELAXED) -
                     __atomic_load_n(&xa_mesh_stats.unmeshes, __ATOMIC_RELAXED);
  int64_t left = INT64_MAX / 2;
  if (2 * aliases >= map_limit / 8) {
    size_t maps = 0;
    left = xa_os_maps(count_map, &maps) && maps < map_limit / 2 ? (int64_t)(map_limit / 2 - maps) / 2 : 0;
  }
  __atomic_store_n(&meshes_left, left, __ATOMIC_RELAXED);
}

bool xa_mesh_running(void) {
  return xa_mesh_on && !__atomic_load_n(&mesh_lost, __ATOMIC_RELAXED) && __atomic_load_n(&wp_fd, __ATOMIC_RELAXED) >= 0;
}

bool xa_mesh_room(void) {
  return !__atomic_load_n(&mesh_lost, __ATOMIC_RELAXED) && __atomic_load_n(&wp_fd, __ATOMIC_RELAXED) >= 0 &&
         __atomic_load_n(&meshes_left, __ATOMIC_RELAXED) > 0;
}

/* ---- our descriptors ---------------------------------------------------
 * Both live at XA_OS_FD_MIN or above, but the program may still close
 * them (a daemon closes every descriptor above stderr) and open its own
 * files on their numbers: every use would then act on the program's file
 * (map it into the heap, punch holes in it, copy it for a fork child).
 * So each step, each pass and each fork first check both (fstat: device
 * and inode), and new chunks and chunks going check the file.  A lost
 * file is reopened from one of its mappings (/proc/self/map_files); a
 * lost userfaultfd is made anew (a step registers its range and
 * unregisters it, so none outlives a step).  The old numbers are the
 * program's now: never closed or used again.  Where the file cannot be
 * reopened (no CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE), meshing stops for
 * good: new chunks are private, aliases emptied get zero pages (shared
 * anonymous memory, which MADV_REMOVE frees as it frees the file's), and
 * a fork child's copy is made from the mapped memory instead of the file
 * (see fork, below).  A malloc that makes a
 * chunk reopens only if the step lock is free (it never waits for it). */
static int reopened;
static bool reopen_denied;

static bool reopen_from(const struct xa_os_mapping *m, void *arg) {
  (void)arg;
  if (!m->shared || !m->path || !strstr(m->path, "xalloc-mesh")) return true;
  int fd = xa_os_reopen_mapped(m->start, m->end, &reopen_denied);
  if (fd >= 0 && xa_os_fd_is(fd, &mesh_id)) {
    reopened = fd;
    return false;
  }
  if (fd >= 0) xa_os_close(fd);
  return !reopen_denied;        /* without the privilege, no other will do */
}

static void open_wp(void) {
  int wp = xa_os_wp_open();
  if (wp >= 0 && !xa_os_fd_id(wp, &wp_id)) {
    xa_os_close(wp);
    wp = -1;
  }
  __atomic_store_n(&wp_fd, wp, __ATOMIC_RELAXED);
}

/* The userfaultfd ours (made anew if need be)?  Step lock held (or the
 * only thread). */
static bool wp_check(void) {
  if (wp_fd >= 0 && !xa_os_fd_is(wp_fd, &wp_id)) {
    open_wp();
    if (wp_fd >= 0) count(&xa_mesh_stats.reopens, 1);
  }
  return wp_fd >= 0;
}

/* Both descriptors ours (reopened if need be)?  Step lock held (or the
 * only thread). */
static bool fds_check(void) {
  if (mesh_lost) return false;
  if (!xa_os_fd_is(mesh_fd, &mesh_id)) {
    reopened = -1;
    reopen_denied = false;
    xa_os_maps(reopen_from, NULL);
    if (reopened < 0) {
      __atomic_store_n(&mesh_lost, true, __ATOMIC_RELAXED);
      return false;
    }
    __atomic_store_n(&mesh_fd, reopened, __ATOMIC_RELAXED);
    count(&xa_mesh_stats.reopens, 1);
  }
  return wp_check();
}

/* mesh_fd if it is still the file, else -1 (no lock needed: a check that
 * raced with a reopen fails, and its caller does without the file). */
static int file_fd(void) {
  int fd = __atomic_load_n(&mesh_fd, __ATOMIC_RELAXED);
  return !__atomic_load_n(&mesh_lost, __ATOMIC_RELAXED) && xa_os_fd_is(fd, &mesh_id) ? fd : -1;
}

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
  int fd = xa_os_memfd(FILE_SIZE);
  if (fd >= 0 && xa_os_fd_id(fd, &mesh_id)) open_wp();
  if (wp_fd < 0) {         /* no protection, no meshing: chunks stay private */
    if (fd >= 0) xa_os_close(fd);
    return;
  }
  mesh_fd = fd;
  xa_mesh_on = true;
}

bool xa_mesh_back(void *c, size_t size) {
  if (!xa_mesh_on) return false;
  int fd = file_fd();
  /* Lost: reopened here if no step runs (a malloc never waits for one),
   * else this chunk stays private. */
  if (fd < 0 && !__atomic_load_n(&mesh_lost, __ATOMIC_RELAXED) && xa_trylock(&step_lock)) {
    fds_check();
    xa_unlock(&step_lock);
    fd = file_fd();
  }
  return fd >= 0 && xa_os_map_file(c, size, fd, (uintptr_t)c);
}

void xa_mesh_forget(void *c, size_t size) {
  int fd = file_fd();
  /* Without the file, through the mapping (the chunk is wholly free: no
   * alias of another slab's pages lies in it). */
  if (fd >= 0) xa_os_punch(fd, (uintptr_t)c, size);
  else xa_os_purge_shared(c, size);
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
  if (!fds_check()) return false;      /* step lock held */
  int fd = mesh_fd, wp = wp_fd;
  if (!xa_os_wp_protect(wp, from, bytes)) {
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
  bool ok = xa_os_map_file(from, bytes, fd, (uintptr_t)to);
  xa_os_wp_release(wp, from, bytes, !ok);
  if (!ok) {
    count(&xa_mesh_stats.failed, 1);
    return false;
  }
  xa_os_punch(fd, (uintptr_t)from, bytes);
  __atomic_fetch_sub(&meshes_left, 1, __ATOMIC_RELAXED);
  count(&xa_mesh_stats.meshes, 1);
  count(&xa_mesh_stats.pages, resident >> xa_os_page_shift);
  *freed = resident;
  count(&xa_mesh_stats.bytes_copied, copied);
  count(&xa_mesh_stats.ns, xa_os_now() - t0);
  return true;
}

bool xa_mesh_restore(void *p, size_t bytes) {
  /* Its own offset was punched when it was meshed: it reads as zero.
   * Without the file, private zero pages do (purging falls back to
   * MADV_DONTNEED on them). */
  fds_check();                         /* step lock held */
  int fd = file_fd();
  if (fd >= 0 ? !xa_os_map_file(p, bytes, fd, (uintptr_t)p) : !xa_os_map_zero_shared(p, bytes)) {
    count(&xa_mesh_stats.failed, 1);
    return false;
  }
  count(&xa_mesh_stats.unmeshes, 1);
  return true;
}

/* ---- fork ------------------------------------------------------------ */

/* The child's copy of the file, made by the parent before the fork. */
static int child_fd = -1;
/* This fork's copy comes from the mapped memory (the file is lost). */
static bool fork_from_memory;
static bool copy_ok;

void xa_mesh_prefork(void) {
  if (!xa_mesh_on) return;
  xa_lock(&step_lock);
  fork_protected = fds_check();
  /* Without the file (lost, and no privilege to reopen it), the copy
   * comes from the memory that maps it, held still by the userfaultfd as
   * the file would be.  Without protection the child stops. */
  fork_from_memory = !fork_protected && __atomic_load_n(&mesh_lost, __ATOMIC_RELAXED) && wp_check();
  if (fork_from_memory) fork_protected = true;
  if (!fork_protected) fork_copy_ok = false;
}

void xa_mesh_fork_protect(void *p, size_t size) {
  if (fork_protected && !xa_os_wp_protect(wp_fd, p, size)) fork_copy_ok = false;
}

/* A span in use, copied from the memory into the child's file at its own
 * offset, 256 KiB at a time (xa_os_read_self: a page the program made
 * inaccessible is read too, as the file would be).  Pages that read as
 * zero stay holes in the copy: zero there too.  Reading a page of the
 * file that mincore did not find resident (a hole: a purged slab page, an
 * untouched part of a large block; or a page out in swap, which reads as
 * not resident too) gives it a page in the parent's file: runs of those
 * that read as zero are given back (the protection keeps writers off them
 * meanwhile), so the parent keeps its holes. */
#define COPY_PIECE ((size_t)1 << 18)
static uint64_t *copy_buf;      /* COPY_PIECE bytes, mapped for the copy */

static bool is_zero(const uint64_t *w, size_t n) {
  for (size_t i = 0; i < n / 8; i++)
    if (w[i]) return false;
  return true;
}

static void copy_from_memory(void *p, size_t size) {
  unsigned char vec[COPY_PIECE / 4096];
  size_t page = xa_os_page, words = page / 8;
  for (size_t done = 0; copy_ok && done < size; done += COPY_PIECE) {
    char *at = (char *)p + done;
    size_t n = size - done < COPY_PIECE ? size - done : COPY_PIECE, pages = n / page;
    xa_os_resident_range(at, n, vec);
    if (!xa_os_read_self(copy_buf, at, n)) {
      copy_ok = false;
      break;
    }
    for (size_t i = 0; copy_ok && i < pages;) {
      bool zero = is_zero(copy_buf + i * words, page);
      size_t j = i + 1;
      while (j < pages && is_zero(copy_buf + j * words, page) == zero) j++;
      if (!zero) {
        copy_ok = xa_os_write_at(child_fd, copy_buf + i * words, (j - i) * page, (uintptr_t)(at + i * page));
      } else {
        for (size_t k = i; k < j;) {          /* runs of holes filled in */
          size_t e = k;
          while (e < j && !(vec[e] & 1)) e++;
          if (e > k) xa_os_purge_shared(at + k * page, (e - k) * page);
          k = e > k ? e : k + 1;
        }
      }
      i = j;
    }
  }
}

/* Between protect and unprotect: every writer of the span pages waits, so
 * the copy is the heap of one moment.  Only the forking thread runs our
 * code meanwhile, and it needs no lock that a waiting writer could hold:
 * the protection is lifted before this prepare handler returns, so no
 * lock the C library or the program takes later in fork (stdio's list
 * lock, other prepare handlers' mutexes) can be held by a waiting writer. */
void xa_mesh_fork_copy(void (*each_span_in_use)(void (*fn)(void *p, size_t size))) {
  /* The copy's file is as large as the address space: under a file size
   * limit the program set since start, its writes would end the parent
   * with SIGXFSZ.  A soft limit is lifted for the copy (the program's
   * other threads' file writes are not held to it for that moment
   * either); under a hard one there is no copy, and the child stops with
   * a message. */
  uint64_t fsize;
  bool room = xa_os_fsize_lift(&fsize);
  child_fd = fork_copy_ok && room ? xa_os_memfd(FILE_SIZE) : -1;
  if (child_fd >= 0) {
    copy_ok = true;
    if (fork_from_memory) {
      copy_buf = xa_os_map(COPY_PIECE, xa_os_page);
      copy_ok = copy_buf && xa_os_page <= COPY_PIECE;
      if (copy_ok) each_span_in_use(copy_from_memory);
      if (copy_buf) xa_os_unmap(copy_buf, COPY_PIECE);
      copy_buf = NULL;
    } else {
      copy_ok = xa_os_copy_file(mesh_fd, child_fd, FILE_SIZE);   /* checked in prefork */
    }
    if (!copy_ok) {
      xa_os_close(child_fd);
      child_fd = -1;
    }
  }
  xa_os_fsize_put_back(fsize);
  fork_copy_ok = true;
}

void xa_mesh_fork_unprotect(void *p, size_t size) {
  if (fork_protected) xa_os_wp_release(wp_fd, p, size, true);
}

void xa_mesh_postfork_parent(void) {
  if (!xa_mesh_on) return;
  xa_os_close(child_fd);
  child_fd = -1;
  xa_unlock(&step_lock);
}

bool xa_mesh_child_begin(void) {
  if (!xa_mesh_on) return false;
  xa_lock_reinit(&step_lock);
  /* The parent's userfaultfd acts on the parent's memory: a new one (the
   * old number is closed only if it is still the userfaultfd). */
  if (xa_os_fd_is(wp_fd, &wp_id)) xa_os_close(wp_fd);
  open_wp();
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
  if (xa_os_fd_is(mesh_fd, &mesh_id)) xa_os_close(mesh_fd);
  mesh_fd = child_fd;
  xa_os_fd_id(mesh_fd, &mesh_id);
  child_fd = -1;
  /* The copy is the child's own file, which it holds: a parent that had
   * lost its file has a child that has not. */
  __atomic_store_n(&mesh_lost, false, __ATOMIC_RELAXED);
  count(&xa_mesh_stats.fork_copies, 1);
  /* Without a userfaultfd of its own the child meshes no more
   * (xa_mesh_room), but its chunks are still the file's: it goes on
   * unmeshing and purging them as such. */
}
