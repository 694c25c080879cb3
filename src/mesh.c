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
static bool wp_unpopulated;     /* it protects private pages not populated yet:
                                   chunks start private and are adopted */
bool xa_mesh_adoption = true;
static struct xa_os_fd_id wp_id;
static bool mesh_lost;          /* the program closed mesh_fd, and it could not be reopened */
static xa_lock_t step_lock = XA_LOCK_INIT;
static bool forking;            /* the heap copy-on-write for a fork: from prefork to the
                                   parent's postfork, and in the child until its handler */
/* While the heap is copy-on-write, chunks unmapped leave their pages in
 * the source, and so do pages purged (MADV_DONTNEED on a copy-on-write
 * view drops only the view's own pages): the child, if it takes the
 * source, punches the ranges dropped before the fork (the list as fork
 * copied it) and in its own handlers before xalloc's, else they would
 * stay resident in its file as free pages that count as given back.  A
 * slot claimed but not yet filled at the fork, or too many, and the child
 * copies instead. */
#define DROPPED_MAX 32
static struct dropped { uintptr_t p; size_t size; bool set; } dropped[DROPPED_MAX];
static unsigned ndropped;

static void drop(void *p, size_t size) {
  unsigned i = __atomic_fetch_add(&ndropped, 1, __ATOMIC_RELAXED);
  if (i >= DROPPED_MAX) return;
  dropped[i].p = (uintptr_t)p;
  dropped[i].size = size;
  __atomic_store_n(&dropped[i].set, true, __ATOMIC_RELEASE);
}

#define FILE_SIZE ((uint64_t)1 << XA_VA_BITS)

static void count(uint64_t *c, uint64_t n) { __atomic_fetch_add(c, n, __ATOMIC_RELAXED); }

static bool is_zero(const uint64_t *w, size_t n) {
  for (size_t i = 0; i < n / 8; i++)
    if (w[i]) return false;
  return true;
}

/* Each alias is a mapping of its own unless it continues its neighbour's
 * (the next slab of the neighbour's owner), and splits the chunk's
 * mapping: meshing stops while the process holds half of vm.max_map_count
 * (65530 by default) mappings, leaving the rest to the program.  The maps
 * are counted (/proc/self/maps) at the start of a pass once the aliases
 * alone could take an eighth of the limit; each mesh of the pass then
 * counts as two. */
static int64_t meshes_left;

static bool fds_check(void);

void xa_mesh_pass_begin(void) {
  xa_mesh_step_lock();
  fds_check();
  xa_mesh_step_unlock();
  uint64_t aliases = __atomic_load_n(&xa_mesh_stats.meshes, __ATOMIC_RELAXED) -
                     __atomic_load_n(&xa_mesh_stats.unmeshes, __ATOMIC_RELAXED);
  int64_t left = INT64_MAX / 2;
  size_t limit = xa_os_map_limit();
  if (2 * aliases >= limit / 8) {
    size_t maps = xa_os_map_count();
    left = maps < limit / 2 ? (int64_t)(limit / 2 - maps) / 2 : 0;
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
 * anonymous memory, which MADV_REMOVE frees as it frees the file's), until
 * a fork: its copy-on-write source is made from the mapped memory, and
 * both sides then have a file again (see fork, below).  A malloc that makes a
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
  bool unpopulated;
  int wp = xa_os_wp_open(&unpopulated);
  __atomic_store_n(&wp_unpopulated, wp >= 0 && unpopulated, __ATOMIC_RELAXED);
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

uint64_t xa_mesh_file_bytes(void) {
  if (!xa_mesh_on || __atomic_load_n(&mesh_lost, __ATOMIC_RELAXED)) return 0;
  return xa_os_fd_bytes(__atomic_load_n(&mesh_fd, __ATOMIC_RELAXED), &mesh_id);
}

/* Fork holds a copy-on-write mapping of the file still (mesh.h): a
 * kernel that protects shared file pages but not those (before Linux
 * 5.19) gets no meshing. */
static bool private_wp_works(int fd) {
  void *p = xa_os_map(xa_os_page, xa_os_page);
  bool ok = p && xa_os_map_file_private(p, xa_os_page, fd, 0) && xa_os_wp_protect(wp_fd, p, xa_os_page);
  if (ok) xa_os_wp_release(wp_fd, p, xa_os_page, true);
  if (p) xa_os_unmap(p, xa_os_page);
  return ok;
}

void xa_mesh_init(void) {
  /* The file is as large as the address space: under a file size limit
   * (ulimit -f) its ftruncate would raise SIGXFSZ. */
  if (!xa_opt.mesh || xa_mesh_on || !xa_os_fsize_unlimited()) return;
  int fd = xa_os_memfd(FILE_SIZE);
  if (fd >= 0 && xa_os_fd_id(fd, &mesh_id)) open_wp();
  if (wp_fd >= 0 && !private_wp_works(fd)) {
    xa_os_close(wp_fd);
    wp_fd = -1;
  }
  if (wp_fd < 0) {         /* no protection, no meshing: chunks stay private */
    if (fd >= 0) xa_os_close(fd);
    return;
  }
  mesh_fd = fd;
  xa_mesh_on = true;
}

static uint32_t mesh_gen;       /* + 1 each time mesh_fd becomes another file */

bool xa_mesh_back(void *c, size_t size, uint32_t *gen) {
  *gen = __atomic_load_n(&mesh_gen, __ATOMIC_ACQUIRE);
  /* A chunk made while a fork is under way (by a prepare or parent
   * handler of the program's) stays private: the heap is copy-on-write
   * until both sides have their own file. */
  if (!xa_mesh_on || __atomic_load_n(&forking, __ATOMIC_RELAXED)) return false;
  /* Where chunks can be adopted, they start private: their pages fault
   * in as anonymous memory, which costs less than the file's (adopt). */
  if (xa_mesh_can_adopt()) return false;
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

bool xa_mesh_gen_current(uint32_t gen) { return gen == __atomic_load_n(&mesh_gen, __ATOMIC_ACQUIRE); }

void xa_mesh_forget(void *c, size_t size) {
  /* While a fork is under way its pages stay in the source file, which
   * the child may be copying from (dropped). */
  if (__atomic_load_n(&forking, __ATOMIC_RELAXED)) {
    drop(c, size);
    return;
  }
  int fd = file_fd();
  /* Without the file, through the mapping (the chunk is wholly free: no
   * alias of another slab's pages lies in it). */
  if (fd >= 0) xa_os_punch(fd, (uintptr_t)c, size);
  else xa_os_purge_shared(c, size);
}

void xa_mesh_purge_shared(void *p, size_t size) {
  /* On a copy-on-write view the pages stay in the source: dropped. */
  if (__atomic_load_n(&forking, __ATOMIC_RELAXED)) drop(p, size);
  xa_os_purge_shared(p, size);
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

/* ---- adoption ----------------------------------------------------------
 * A private chunk's span pages move into the file piece by piece, so that
 * a writer waits for one piece's copy at most (0.3 ms for 256 KiB on the
 * 2-CPU test machine; 4-20 ms for a whole chunk): write-protect the piece,
 * copy its non-zero pages but those the caller skips (a view of the file
 * at the same offsets takes them), map the file over it, wake the writers
 * that waited.  The pages read through a buffer (xa_os_read_self, which
 * reads a page the program made inaccessible too).  A write to a page not
 * populated yet waits as well, which only Linux 6.4's
 * UFFD_FEATURE_WP_UNPOPULATED promises for private memory: without it,
 * chunks start in the file (xa_mesh_back).  Pieces mapped from the file
 * one after another make one mapping with the file's earlier ones: the
 * map count grows by one at most while the chunk is half adopted. */
#define ADOPT_PIECE ((size_t)1 << 18)

bool xa_mesh_can_adopt(void) {
  return xa_mesh_adoption && xa_mesh_running() && __atomic_load_n(&wp_unpopulated, __ATOMIC_RELAXED);
}

/* The adoption under way (step lock held): a view of one piece's range
 * of the file (mapped anew for each piece: the view's pages would count
 * twice in VmRSS once the program touches them through the chunk), a
 * buffer, when it began, the bytes copied so far. */
static char *adopt_view;
static uint64_t *adopt_buf;
static uint64_t adopt_t0, adopt_bytes;
unsigned xa_mesh_adopt_fail_at;

bool xa_mesh_adopt_begin(void) {
  adopt_t0 = xa_os_now();
  adopt_bytes = 0;
  if (!xa_mesh_can_adopt() || !fds_check()) return false;   /* step lock held */
  adopt_view = xa_os_map(ADOPT_PIECE, xa_os_page);
  adopt_buf = xa_os_map(ADOPT_PIECE, xa_os_page);
  if (adopt_view && adopt_buf) return true;
  xa_mesh_adopt_end(false, NULL);
  return false;
}

size_t xa_mesh_adopt_piece_bytes(void) { return ADOPT_PIECE; }

bool xa_mesh_adopt_hold(char *q, size_t n) { return xa_os_wp_protect(wp_fd, q, n); }

bool xa_mesh_adopt_piece(char *q, size_t n, const uint8_t *skip) {
  size_t page = xa_os_page, words = page / 8, pages = n >> xa_os_page_shift, lo = 0, hi = pages;
  char *view = adopt_view;
  while (lo < pages && skip[lo]) lo++;
  while (hi > lo && skip[hi - 1]) hi--;
  bool ok = lo == hi || (xa_os_map_file(view, n, mesh_fd, (uintptr_t)q) &&
                         xa_os_read_self(adopt_buf + lo * words, q + lo * page, (hi - lo) * page));
  for (size_t i = lo; ok && i < hi; i++) {
    if (skip[i] || is_zero(adopt_buf + i * words, page)) continue;
    memcpy(view + i * page, adopt_buf + i * words, page);
    adopt_bytes += page;
  }
  if (xa_mesh_adopt_fail_at && !--xa_mesh_adopt_fail_at) ok = false;     /* test hook */
  ok = ok && xa_os_map_file(q, n, mesh_fd, (uintptr_t)q);
  xa_os_wp_release(wp_fd, q, n, !ok);
  if (!ok) xa_os_punch(mesh_fd, (uintptr_t)q, n);      /* what the copy wrote */
  return ok;
}

bool xa_mesh_adopt_undo(char *p, size_t n) {
  /* The pieces adopted go back to private pages: held still, their
   * non-zero pages copied into fresh private memory, which then moves
   * over them (mremap: the file's mapping goes in the same step). */
  char *priv = xa_os_map(n, xa_os_page);
  bool ok = priv && xa_os_wp_protect(wp_fd, p, n);
  size_t page = xa_os_page;
  for (size_t off = 0; ok && off < n; off += page)
    if (!is_zero((const uint64_t *)(p + off), page)) memcpy(priv + off, p + off, page);
  int rc = ok ? xa_os_move_pages(priv, n, p) : XA_MOVE_FAILED;
  bool moved = rc != XA_MOVE_FAILED;
  if (ok) xa_os_wp_release(wp_fd, p, n, !moved);
  if (priv && rc != XA_MOVE_HOLE) xa_os_unmap(priv, n);     /* left mapped, or not moved */
  if (moved) xa_os_punch(mesh_fd, (uintptr_t)p, n);
  return moved;
}

void xa_mesh_adopt_end(bool ok, uint32_t *gen) {
  if (adopt_view) xa_os_unmap(adopt_view, ADOPT_PIECE);
  if (adopt_buf) xa_os_unmap(adopt_buf, ADOPT_PIECE);
  adopt_view = NULL;
  adopt_buf = NULL;
  if (!ok) {
    count(&xa_mesh_stats.failed, 1);
    return;
  }
  *gen = __atomic_load_n(&mesh_gen, __ATOMIC_ACQUIRE);
  count(&xa_mesh_stats.adopted, 1);
  count(&xa_mesh_stats.adopt_copied, adopt_bytes);
  count(&xa_mesh_stats.ns, xa_os_now() - adopt_t0);
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

/* The fork's files: the one the heap maps copy-on-write across the fork
 * (the mesh file; where that was lost, one made from the memory), and the
 * parent's next one, made before the fork so that the parent has it
 * whatever happens after. */
static int source_fd = -1, next_fd = -1;
static struct xa_os_fd_id source_id, next_id;
static bool fork_private;       /* the whole heap went copy-on-write */
static bool fork_rebase;        /* some of it may have: the parent takes a file of its own */
static bool fork_frozen;        /* its writers wait (protected) meanwhile */

static void close_ours(int *fd, const struct xa_os_fd_id *id) {
  if (*fd >= 0 && xa_os_fd_is(*fd, id)) xa_os_close(*fd);
  *fd = -1;
}

/* A new file for the heap (as large as the address space), under a file
 * size limit the program set since start lifted for a moment (its other
 * threads' writes are not held to it for that moment either); -1 under a
 * hard one. */
static int new_file(struct xa_os_fd_id *id) {
  uint64_t fsize;
  if (!xa_os_fsize_lift(&fsize)) return -1;
  int fd = xa_os_memfd(FILE_SIZE);
  xa_os_fsize_put_back(fsize);
  if (fd >= 0 && !xa_os_fd_id(fd, id)) {
    xa_os_close(fd);
    fd = -1;
  }
  return fd;
}

static bool fork_ready;         /* prefork found the files */
/* The parent sets it (shared memory, and a futex) once it no longer reads
 * the source: the child may then take the source as its own file instead
 * of copying it. */
static int *source_free;
static uint64_t data_lo, data_hi;     /* [lo, hi): the source has data there (source_holes) */

static bool prefork_files(void) {
  fork_private = fork_rebase = fork_frozen = false;
  data_lo = data_hi = 0;
  memset(dropped, 0, sizeof dropped);
  ndropped = 0;
  source_fd = -1;
  next_fd = new_file(&next_id);
  if (next_fd < 0) return false;             /* the child stops (child_begin) */
  if (fds_check()) {
    source_fd = mesh_fd;
    source_id = mesh_id;
    return true;
  }
  /* The file lost, and no privilege to reopen it: the source is made from
   * the memory that maps it, held still by the userfaultfd meanwhile. */
  if (!__atomic_load_n(&mesh_lost, __ATOMIC_RELAXED) || !wp_check()) {
    close_ours(&next_fd, &next_id);
    return false;
  }
  source_fd = new_file(&source_id);
  fork_frozen = source_fd >= 0;
  if (source_fd < 0) close_ours(&next_fd, &next_id);
  return source_fd >= 0;
}

void xa_mesh_prefork(void) {
  if (!xa_mesh_on) return;
  xa_lock(&step_lock);
  fork_ready = prefork_files();
}

bool xa_mesh_fork_ready(void) { return fork_ready; }
bool xa_mesh_fork_frozen(void) { return fork_frozen; }

/* The userfaultfd checked first: the program may have closed it since
 * prefork looked (it is made anew then). */
bool xa_mesh_fork_protect(void *p, size_t size) { return wp_check() && xa_os_wp_protect(wp_fd, p, size); }
void xa_mesh_fork_thaw(void *p, size_t size) { xa_os_wp_release(wp_fd, p, size, true); }
void xa_mesh_fork_wake(void *p, size_t size) { xa_os_wp_release(wp_fd, p, size, false); }

/* Copies from the memory into a file, COPY_PIECE bytes at a time.
 * Through the buffer (xa_os_read_self) a page the program made
 * inaccessible is read too, as the file would be, and pages that read as
 * zero stay holes in the copy.  Reading a page that has no backing (a
 * hole of the file: a purged slab page, an untouched part of a large
 * block) gives it one in the mapped file, which is given back after the
 * read (copy_view, copy_lost say which pages). */
#define COPY_PIECE ((size_t)1 << 18)
static uint64_t *copy_buf;      /* COPY_PIECE bytes, mapped for a copy */
static int copy_to = -1;        /* the file copied into */
static bool copy_ok;

static bool copy_begin(int to) {
  copy_to = to;
  copy_buf = xa_os_map(COPY_PIECE, xa_os_page);
  copy_ok = copy_buf && xa_os_page <= COPY_PIECE;
  return copy_ok;
}

static void copy_end(void) {
  if (copy_buf) xa_os_unmap(copy_buf, COPY_PIECE);
  copy_buf = NULL;
  copy_to = -1;
}

/* [at, at+n) through the buffer: its runs of non-zero pages written;
 * where the memory maps the lost file (lost), the zero pages mincore did
 * not find resident (vec) are given back. */
static void copy_scan(char *at, size_t n, const unsigned char *vec, bool lost) {
  size_t page = xa_os_page, words = page / 8, pages = n / page;
  if (!xa_os_read_self(copy_buf, at, n)) {
    copy_ok = false;
    return;
  }
  for (size_t i = 0; copy_ok && i < pages;) {
    bool zero = is_zero(copy_buf + i * words, page);
    size_t j = i + 1;
    while (j < pages && is_zero(copy_buf + j * words, page) == zero) j++;
    if (!zero) copy_ok = xa_os_write_at(copy_to, copy_buf + i * words, (j - i) * page, (uintptr_t)(at + i * page));
    for (size_t k = i; lost && zero && k < j;) {
      size_t e = k;
      while (e < j && !(vec[e] & 1)) e++;
      if (e > k) xa_os_purge_shared(at + k * page, (e - k) * page);
      k = e > k ? e : k + 1;
    }
    i = j;
  }
}

/* xa_os_file_holes on the source, with the last run of data found kept:
 * the runs of a chunk come in address order, and a search for the next
 * hole scans the whole run of data before it. */
static bool source_holes(char *at, size_t n, unsigned char *vec) {
  uint64_t lo = (uintptr_t)at, hi = lo + n, data_end;
  if (lo >= data_lo && hi <= data_hi) {
    memset(vec, 0, n >> xa_os_page_shift);
    return true;
  }
  if (!xa_os_file_holes(source_fd, lo, n, vec, &data_end)) return false;
  if (data_end) {
    size_t first = n >> xa_os_page_shift;
    while (first && !vec[first - 1]) first--;
    data_lo = lo + ((uint64_t)first << xa_os_page_shift);
    data_hi = data_end;
  }
  return true;
}

/* Where the memory is a copy-on-write view of the source, the pages this
 * process wrote since are its private pages, in memory or in swap
 * (/proc/self/pagemap); the others read as the source.  Once the
 * userfaultfd holds a range, pages not mapped then carry its marks, which
 * look like pages in swap: those are copied too (they read as the
 * source). */
#define PM_PRESENT ((uint64_t)1 << 63)
#define PM_SWAP ((uint64_t)1 << 62)
#define PM_FILE ((uint64_t)1 << 61)
static int pagemap_fd = -1;

static bool pm_mine(uint64_t e) { return (e & (PM_PRESENT | PM_SWAP)) && !(e & PM_FILE); }

/* The pages of [p, p+size) this process wrote since the heap went
 * copy-on-write, from the memory into copy_to at their own offsets;
 * false if pagemap could not say (copy_ok says whether the writes went). */
static bool copy_mine(char *p, size_t size) {
  uint64_t pm[COPY_PIECE / 4096];
  size_t page = xa_os_page;
  for (size_t done = 0; copy_ok && done < size; done += COPY_PIECE) {
    char *at = p + done;
    size_t n = size - done < COPY_PIECE ? size - done : COPY_PIECE, pages = n / page;
    if (!xa_os_read_at(pagemap_fd, pm, pages * 8, ((uintptr_t)at >> xa_os_page_shift) * 8)) return false;
    for (size_t i = 0; copy_ok && i < pages;) {
      bool mine = pm_mine(pm[i]);
      size_t j = i + 1;
      while (j < pages && pm_mine(pm[j]) == mine) j++;
      char *q = at + i * page;
      size_t len = (j - i) * page;
      /* through the buffer if the program made a page inaccessible */
      if (mine && !xa_os_write_at(copy_to, q, len, (uintptr_t)q))
        copy_ok = xa_os_read_self(copy_buf, q, len) && xa_os_write_at(copy_to, copy_buf, len, (uintptr_t)q);
      i = j;
    }
  }
  return true;
}

/* From a copy-on-write view of the source: where the source has data,
 * the source's pages copied file to file, then the pages written since
 * over them; where it has holes, through the buffer, so that only what
 * was written since lands in the copy, and the holes the read filled in
 * are given back (either process may have filled them in; neither has
 * written them, so they are still holes to both).  Without pagemap,
 * the data straight from the memory. */
static void copy_view(char *p, size_t size) {
  unsigned char vec[COPY_PIECE / 4096];
  size_t page = xa_os_page;
  bool holes = xa_os_fd_is(source_fd, &source_id);
  for (size_t done = 0; copy_ok && done < size; done += COPY_PIECE) {
    char *at = p + done;
    size_t n = size - done < COPY_PIECE ? size - done : COPY_PIECE, pages = n / page;
    holes = holes && source_holes(at, n, vec);
    if (!holes) {
      copy_scan(at, n, NULL, false);
      continue;
    }
    for (size_t i = 0; copy_ok && i < pages;) {
      size_t j = i + 1;
      while (j < pages && vec[j] == vec[i]) j++;
      char *q = at + i * page;
      size_t len = (j - i) * page;
      if (vec[i]) {
        copy_scan(q, len, NULL, false);
        xa_os_punch(source_fd, (uintptr_t)q, len);
      } else if (!(pagemap_fd >= 0 && xa_os_copy_range(source_fd, copy_to, (uintptr_t)q, len) && copy_mine(q, len)) &&
                 !xa_os_write_at(copy_to, q, len, (uintptr_t)q)) {    /* fails on an inaccessible page */
        copy_scan(q, len, NULL, false);
      }
      i = j;
    }
  }
}

/* From the memory that maps the lost file itself: the zero pages mincore
 * did not find resident are given back (holes, or pages out in swap,
 * which read as not resident too; the protection keeps writers off them
 * meanwhile). */
static void copy_lost(void *p, size_t size) {
  unsigned char vec[COPY_PIECE / 4096];
  for (size_t done = 0; copy_ok && done < size; done += COPY_PIECE) {
    char *at = (char *)p + done;
    size_t n = size - done < COPY_PIECE ? size - done : COPY_PIECE;
    xa_os_resident_range(at, n, vec);
    copy_scan(at, n, vec, true);
  }
}

bool xa_mesh_fork_make_source(void (*each_span_in_use)(void (*fn)(void *p, size_t size))) {
  uint64_t fsize;
  bool room = xa_os_fsize_lift(&fsize);
  if (room && copy_begin(source_fd)) each_span_in_use(copy_lost);
  bool ok = room && copy_ok;
  copy_end();
  if (room) xa_os_fsize_put_back(fsize);
  return ok;
}

bool xa_mesh_fork_map_private(void *p, size_t size, uint64_t off) {
  bool ok = xa_os_map_file_private(p, size, source_fd, off);
  /* a frozen run is thawed as it goes private (a run that did not stays
   * the lost file's mapping: lifted, not just woken) */
  if (fork_frozen) xa_os_wp_release(wp_fd, p, size, !ok);
  return ok;
}

/* Where only some runs went copy-on-write (a refused mmap) the child
 * stops, and the parent still takes a file of its own. */
void xa_mesh_fork_went(bool ok) {
  fork_private = ok;
  fork_rebase = true;
  source_free = ok ? xa_os_map_shared_word() : NULL;
  __atomic_store_n(&forking, true, __ATOMIC_RELAXED);
}

bool xa_mesh_fork_rebase(void) { return fork_rebase; }

/* ---- after the fork: each side copies the heap into a file of its own,
 * the parent with its writers held still, the child alone. */
static int rebase_fd = -1;
static uint64_t rebase_fsize;
static bool rebase_room;

/* The child takes the source once the parent is done with it (it waits
 * up to TAKE_WAIT_NS for that): it writes the pages it wrote since the
 * heap went copy-on-write into the source (copy_mine) and maps that,
 * instead of copying all. */
#define TAKE_WAIT_NS 2000000000ull
static bool taking;

static bool take_source(void) {
  int *w = source_free;
  source_free = NULL;
  bool can = w && xa_opt.mesh_fork == xa_opt_mesh_fork_take && pagemap_fd >= 0 && ndropped <= DROPPED_MAX &&
             xa_os_fd_is(source_fd, &source_id);
  for (unsigned i = 0; can && i < ndropped; i++) can = dropped[i].set;
  bool done = can && xa_os_wait_shared(w, 0, TAKE_WAIT_NS);
  if (w) xa_os_unmap(w, xa_os_page);
  for (unsigned i = 0; done && i < ndropped; i++) xa_os_punch(source_fd, dropped[i].p, dropped[i].size);
  return done;
}

void xa_mesh_rebase_begin(bool child) {
  struct xa_os_fd_id id;
  pagemap_fd = xa_os_open_read("/proc/self/pagemap");
  taking = child && take_source();
  rebase_fd = taking ? source_fd : child ? new_file(&id) : next_fd;
  if (rebase_fd < 0) xa_error_fatal("mesh: a fork child could not get its own copy of the heap");
  rebase_room = xa_os_fsize_lift(&rebase_fsize);
  if (!copy_begin(rebase_fd)) xa_error_fatal("mesh: no memory to copy the heap after fork");
}

void xa_mesh_rebase_span(void *p, size_t size) {
  if (!taking) copy_view(p, size);
  else if (!copy_mine(p, size)) copy_ok = false;
}

/* The view's pages where the source has data, mapped before the copy in
 * batches: once the userfaultfd holds the range, every first touch is a
 * fault of its own. */
void xa_mesh_rebase_populate(void *p, size_t size) {
  unsigned char vec[COPY_PIECE / 4096];
  size_t page = xa_os_page;
  for (size_t done = 0; done < size; done += COPY_PIECE) {
    char *at = (char *)p + done;
    size_t n = size - done < COPY_PIECE ? size - done : COPY_PIECE, pages = n / page;
    if (!source_holes(at, n, vec)) return;
    for (size_t i = 0; i < pages;) {
      size_t j = i + 1;
      while (j < pages && vec[j] == vec[i]) j++;
      if (!vec[i]) xa_os_populate_read(at + i * page, (j - i) * page);
      i = j;
    }
  }
}

void xa_mesh_rebase_slots(const char *alias, const char *owner, const uint64_t *live, unsigned nobjs, size_t size) {
  for (unsigned i = 0; copy_ok && i < nobjs;) {
    if (!((live[i / 64] >> (i % 64)) & 1)) {
      i++;
      continue;
    }
    unsigned j = i + 1;
    while (j < nobjs && ((live[j / 64] >> (j % 64)) & 1) && (size_t)(j + 1 - i) * size <= COPY_PIECE) j++;
    size_t n = (size_t)(j - i) * size;
    copy_ok = xa_os_read_self(copy_buf, alias + (size_t)i * size, n) &&
              xa_os_write_at(rebase_fd, copy_buf, n, (uintptr_t)owner + (size_t)i * size);
    i = j;
  }
}

static const char *const rebase_fail = "mesh: the heap could not be copied after fork";

void xa_mesh_rebase_map(void *p, size_t size, uint64_t off) {
  if (!copy_ok) xa_error_fatal(rebase_fail);
  if (!xa_os_map_file(p, size, rebase_fd, off)) xa_error_fatal("mesh: the heap could not be mapped after fork");
}

/* The side's own file from here on (a parent that had lost its file has
 * one again). */
void xa_mesh_rebase_done(bool child) {
  if (!copy_ok) xa_error_fatal(rebase_fail);
  copy_end();
  if (rebase_room) xa_os_fsize_put_back(rebase_fsize);
  if (pagemap_fd >= 0) xa_os_close(pagemap_fd);
  pagemap_fd = -1;
  if (taking) source_fd = -1;              /* mesh_fd from here on */
  close_ours(&source_fd, &source_id);     /* the mesh file itself, unless it was lost */
  if (child) close_ours(&next_fd, &next_id);       /* the parent's */
  /* Threads making chunks (arena lock dropped) read these meanwhile: a
   * new descriptor with the old identity fails their check (that chunk
   * stays private), and the generation, read first, goes up last. */
  __atomic_store_n(&mesh_fd, rebase_fd, __ATOMIC_RELAXED);
  xa_os_fd_id(mesh_fd, &mesh_id);
  __atomic_fetch_add(&mesh_gen, 1, __ATOMIC_RELEASE);
  rebase_fd = -1;
  next_fd = -1;
  __atomic_store_n(&mesh_lost, false, __ATOMIC_RELAXED);
  if (child) count(taking ? &xa_mesh_stats.fork_takes : &xa_mesh_stats.fork_copies, 1);
  taking = false;
  /* From here chunks made are meshable and chunks unmapped are punched out
   * of the new file (the arenas are still locked: none is half made). */
  __atomic_store_n(&forking, false, __ATOMIC_RELAXED);
  /* The parent no longer maps or reads the source: the child may take it. */
  if (!child && source_free) {
    __atomic_store_n(source_free, 1, __ATOMIC_RELEASE);
    xa_os_wake_shared(source_free);
  }
}

void xa_mesh_postfork_parent(void) {
  if (!xa_mesh_on) return;
  if (source_free) xa_os_unmap(source_free, xa_os_page);
  source_free = NULL;
  if (!fork_rebase) {              /* nothing was changed: the child stops */
    close_ours(&next_fd, &next_id);
    if (source_fd != mesh_fd) close_ours(&source_fd, &source_id);   /* one made from the memory */
    source_fd = -1;
  }
  fork_private = fork_rebase = fork_frozen = false;
  __atomic_store_n(&forking, false, __ATOMIC_RELAXED);
  xa_unlock(&step_lock);
}

bool xa_mesh_child_begin(void) {
  if (!xa_mesh_on) return false;
  xa_lock_reinit(&step_lock);
  /* Without its own copy the child would write the parent's memory:
   * there is no safe way on. */
  if (!fork_private) xa_error_fatal("mesh: a fork child could not get its own copy of the heap");
  __atomic_store_n(&forking, false, __ATOMIC_RELAXED);
  /* The parent's userfaultfd acts on the parent's memory: a new one (the
   * old number is closed only if it is still the userfaultfd). */
  if (xa_os_fd_is(wp_fd, &wp_id)) xa_os_close(wp_fd);
  open_wp();
  return true;
}
