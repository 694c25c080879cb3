/* The OS layer: a descriptor xalloc holds open for a moment (a /proc
 * file being read) when another thread forks is closed in the child, so
 * the child's lowest free descriptor numbers are what the program
 * expects (GLib's gsubprocess fd-conflation test failed once on a copy
 * of one); descriptors xalloc closed itself are not touched again.
 * Thread liveness (the orphaned-cache sweep's question) is right for a
 * live thread, a joined one, and in a child made by a raw fork system call,
 * where no atfork handler told xalloc its process id changed.  Writing
 * and reading at an offset, and reading the process's own memory (a fork
 * child's copy of meshing's file, made from memory).  Purging locked
 * pages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>
#include "testutil.h"
#include "os.h"

static void test_fork_closes_transient_fds(void **state) {
  (void)state;
  free(malloc(16));                        /* initialise */
  int fd = xa_os_open_read("/proc/self/stat");
  assert_true(fd >= 0);
  int other = open("/dev/null", O_RDONLY);  /* the program's own: kept */
  assert_true(other >= 0);
  pid_t pid = fork();                       /* xalloc's atfork handlers run */
  if (pid == 0) {
    bool closed = fcntl(fd, F_GETFD) == -1;
    bool kept = fcntl(other, F_GETFD) != -1;
    _exit(closed && kept ? 0 : 1);
  }
  assert_true(pid > 0);
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  /* in the parent it stays open until xalloc closes it */
  assert_true(fcntl(fd, F_GETFD) != -1);
  xa_os_close(fd);
  assert_true(fcntl(fd, F_GETFD) == -1);
  /* a number xalloc closed, then reused by the program, survives a fork */
  int again = open("/dev/null", O_RDONLY);
  assert_int_equal(again, fd);
  pid = fork();
  if (pid == 0) _exit(fcntl(again, F_GETFD) != -1 ? 0 : 1);
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  close(again);
  close(other);
}

static int32_t worker_tid;
static pthread_mutex_t worker_mu = PTHREAD_MUTEX_INITIALIZER;

static void *worker(void *arg) {
  (void)arg;
  __atomic_store_n(&worker_tid, xa_os_tid(), __ATOMIC_RELEASE);
  pthread_mutex_lock(&worker_mu);          /* held by the test until it has looked */
  pthread_mutex_unlock(&worker_mu);
  return NULL;
}

static void test_thread_alive(void **state) {
  (void)state;
  assert_true(xa_os_thread_alive(xa_os_tid()));
  pthread_mutex_lock(&worker_mu);
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, worker, NULL), 0);
  while (!__atomic_load_n(&worker_tid, __ATOMIC_ACQUIRE)) sched_yield();
  int32_t tid = worker_tid;
  assert_true(xa_os_thread_alive(tid));
  pthread_mutex_unlock(&worker_mu);
  assert_int_equal(pthread_join(th, NULL), 0);
  /* Gone once the kernel has reaped it, which may come just after the
   * join (the join wakes when the thread's id word is cleared, before the
   * reaping); a reuse of the id meanwhile would need 2^15 or more thread
   * creations.  Two seconds turn a wrong answer into a failure. */
  int waited = 0;
  while (xa_os_thread_alive(tid) && waited < 2000) {
    usleep(1000);
    waited++;
  }
  assert_false(xa_os_thread_alive(tid));
  /* A raw fork: the child's only thread must read as alive although
   * xalloc still holds the parent's process id. */
  pid_t pid = (pid_t)syscall(SYS_fork);
  if (pid == 0) _exit(xa_os_thread_alive(xa_os_tid()) ? 0 : 1);
  assert_true(pid > 0);
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* write_at and read_at: every byte lands at the offset asked and comes
 * back from it, across more than one page; a descriptor that cannot be
 * written, or a read past the end, reports it. */
static void test_write_read_at(void **state) {
  (void)state;
  char path[] = "/tmp/xalloc_unit_os_XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  unlink(path);
  static char buf[3 * 4096 + 123], back[sizeof buf];
  for (size_t i = 0; i < sizeof buf; i++) buf[i] = (char)(i * 7 + 1);
  assert_true(xa_os_write_at(fd, buf, sizeof buf, 1 << 20));
  assert_int_equal(pread(fd, back, sizeof back, 1 << 20), (ssize_t)sizeof back);
  assert_memory_equal(buf, back, sizeof buf);
  assert_int_equal(lseek(fd, 0, SEEK_END), (1 << 20) + (off_t)sizeof buf);
  memset(back, 0, sizeof back);
  assert_true(xa_os_read_at(fd, back, sizeof back, 1 << 20));
  assert_memory_equal(buf, back, sizeof buf);
  assert_false(xa_os_read_at(fd, back, 16, (1 << 20) + sizeof buf - 8));
  int ro = open("/dev/null", O_RDONLY);
  assert_true(ro >= 0);
  assert_false(xa_os_write_at(ro, buf, 16, 0));
  close(ro);
  close(fd);
}

/* read_self: this process's memory, including a page it made
 * inaccessible (read through /proc/self/mem); an unmapped page fails. */
static void test_read_self(void **state) {
  (void)state;
  size_t pg = (size_t)sysconf(_SC_PAGESIZE);
  unsigned char *m = mmap(NULL, 3 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  assert_true(m != MAP_FAILED);
  for (size_t i = 0; i < 3 * pg; i++) m[i] = (unsigned char)(i * 11 + 3);
  static unsigned char back[3 * 65536];
  assert_true(xa_os_read_self(back, m, 3 * pg));
  assert_memory_equal(back, m, 3 * pg);
  assert_int_equal(mprotect(m + pg, pg, PROT_NONE), 0);
  memset(back, 0, sizeof back);
  assert_true(xa_os_read_self(back, m, 3 * pg));
  assert_int_equal(mprotect(m + pg, pg, PROT_READ), 0);
  assert_memory_equal(back, m, 3 * pg);
  assert_int_equal(munmap(m + 2 * pg, pg), 0);
  assert_false(xa_os_read_self(back, m, 3 * pg));
  munmap(m, 2 * pg);
}

/* xa_os_protect sets exactly the access asked for, page by page. */
static void test_protect(void **state) {
  (void)state;
  size_t pg = xa_os_page;
  char *p = xa_os_map(3 * pg, pg);
  assert_non_null(p);
  assert_true(xa_os_protect(p + pg, pg, true, false, false));
  assert_string_equal(tu_perms_at((uintptr_t)p + pg), "r--p");
  assert_string_equal(tu_perms_at((uintptr_t)p), "rw-p");
  assert_string_equal(tu_perms_at((uintptr_t)p + 2 * pg), "rw-p");
  assert_true(xa_os_protect(p + pg, pg, false, false, false));
  assert_string_equal(tu_perms_at((uintptr_t)p + pg), "---p");
  assert_true(xa_os_protect(p + pg, pg, true, true, false));
  assert_string_equal(tu_perms_at((uintptr_t)p + pg), "rw-p");
  p[pg] = 1;
  errno = 42;
  assert_false(xa_os_protect(p + 1, pg, true, true, false));   /* not page aligned: refused */
  assert_int_equal(errno, 42);                                 /* and errno kept */
  xa_os_unmap(p, 3 * pg);
}

/* xa_os_purge of locked pages (mlock), which MADV_DONTNEED leaves: they
 * read as zero afterwards, given back (MADV_DONTNEED_LOCKED) or, with
 * xa_os_keep_locked (as on kernels before 5.18), zeroed and still resident;
 * counted either way.  A range locked in part: the unlocked part goes
 * back in both.  Also xa_os_maps_populated: false here, true under
 * mlockall(MCL_FUTURE) (in a child, where CAP_IPC_LOCK or an unlimited
 * RLIMIT_MEMLOCK allows it). */
static unsigned resident_pages(const char *p, size_t pages) {
  unsigned char vec[256];
  assert_true(pages <= sizeof vec);
  assert_int_equal(mincore((void *)p, pages * xa_os_page, vec), 0);
  unsigned n = 0;
  for (size_t i = 0; i < pages; i++) n += vec[i] & 1;
  return n;
}

static bool kernel_at_least(int major, int minor) {
  struct utsname u;
  int a = 0, b = 0;
  return uname(&u) == 0 && sscanf(u.release, "%d.%d", &a, &b) == 2 && (a > major || (a == major && b >= minor));
}

static bool all_bytes(const char *p, size_t n, int v) {
  for (size_t i = 0; i < n; i++)
    if (p[i] != (char)v) return false;
  return true;
}

static void test_purge_locked(void **state) {
  (void)state;
  size_t pg = xa_os_page, n = 128 << 10;
  char *p = xa_os_map(n, n);                   /* two of the zeroing's 64 KiB steps */
  assert_non_null(p);
  bool keep_was = xa_os_keep_locked;
  for (int keep = 1; keep >= 0; keep--) {
    memset(p, 0x5a, n);
    if (mlock(p, n / 2)) {                      /* the first half; RLIMIT_MEMLOCK is 8 MiB by default */
      xa_os_keep_locked = keep_was;
      xa_os_unmap(p, n);
      skip();
    }
    xa_os_keep_locked = keep;
    size_t counted = xa_os_locked_purged;
    xa_os_purge(p, n);
    /* resident pages first: a read maps the zero page, which counts */
    if (keep) assert_int_equal(resident_pages(p, n / pg), n / pg / 2);     /* kept: the locked half */
    else assert_int_equal(resident_pages(p, n / pg), xa_os_can_drop_locked() ? 0 : n / pg / 2);   /* all given back */
    assert_true(all_bytes(p, n, 0));            /* reads as zero: both halves */
    assert_true(xa_os_locked_purged > counted);
    assert_int_equal(munlock(p, n / 2), 0);
  }
  xa_os_keep_locked = keep_was;
  if (kernel_at_least(5, 18)) assert_true(xa_os_can_drop_locked());
  assert_false(xa_os_maps_populated());
  xa_os_unmap(p, n);
  /* xa_os_purge_shared, locked whole or in the first half: on shared
   * memory the file would keep the old bytes under MADV_DONTNEED_LOCKED
   * or MADV_DONTNEED, so the locked part is zeroed and the rest removed
   * from the file; on private memory (a chunk that could not be
   * file-backed) the rest goes back with MADV_DONTNEED */
  for (int kind = 0; kind < 2; kind++) {
    char *sh = xa_os_map(n, n);
    assert_non_null(sh);
    if (kind == 0) assert_true(xa_os_map_zero_shared(sh, n));
    for (size_t locked = n; locked >= n / 2; locked -= n / 2) {
      memset(sh, 0x5a, n);
      assert_int_equal(mlock(sh, locked), 0);   /* as the first half above */
      xa_os_purge_shared(sh, n);
      /* resident pages first: a read maps a page in */
      if (locked < n) assert_int_equal(resident_pages(sh + locked, (n - locked) / pg), 0);
      assert_true(all_bytes(sh, n, 0));
      assert_int_equal(munlock(sh, locked), 0);
    }
    xa_os_unmap(sh, n);
  }
  /* under mlockall(MCL_FUTURE) new mappings are mapped in at once, and
   * locked pages a purge meets are zeroed and kept (no page fault later) */
  pid_t pid = fork();
  if (pid == 0) {
    if (!tu_may_lock_all()) _exit(77);
    if (mlockall(MCL_FUTURE)) _exit(77);
    if (!xa_os_maps_populated()) _exit(1);
    char *q = xa_os_map(n, n);
    if (!q) _exit(2);
    memset(q, 0x5a, n);
    xa_os_purge(q, n);
    _exit(resident_pages(q, n / pg) != n / pg ? 3 : !all_bytes(q, n, 0) ? 4 : 0);
  }
  int st;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFEXITED(st));
  if (WEXITSTATUS(st) != 77) assert_int_equal(WEXITSTATUS(st), 0);
}

/* xa_os_fsize_lift lifts a soft file size limit and puts it back; a
 * hard one stays.  In a child: the limits are the process's. */
static int fsize_child(void) {
  struct rlimit soft = {1 << 20, RLIM_INFINITY}, hard = {1 << 20, 1 << 20}, r;
  uint64_t saved;
  if (setrlimit(RLIMIT_FSIZE, &soft) != 0) return 1;
  if (!xa_os_fsize_lift(&saved) || saved != 1 << 20) return 2;
  if (getrlimit(RLIMIT_FSIZE, &r) != 0 || r.rlim_cur != RLIM_INFINITY || !xa_os_fsize_unlimited()) return 3;
  xa_os_fsize_put_back(saved);
  if (getrlimit(RLIMIT_FSIZE, &r) != 0 || r.rlim_cur != 1 << 20 || r.rlim_max != RLIM_INFINITY) return 4;
  if (setrlimit(RLIMIT_FSIZE, &hard) != 0) return 1;
  if (xa_os_fsize_lift(&saved)) return 5;
  if (getrlimit(RLIMIT_FSIZE, &r) != 0 || r.rlim_cur != 1 << 20 || r.rlim_max != 1 << 20) return 6;
  return 0;
}

static void test_fsize_lift(void **state) {
  (void)state;
  pid_t pid = fork();
  if (pid == 0) _exit(fsize_child());
  int st;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFEXITED(st));
  assert_int_equal(WEXITSTATUS(st), 0);
}

/* The file operations fork's heap copies are made of: file_holes finds
 * a sparse file's holes page by page and how far the data at the end
 * goes; copy_range copies exactly the range asked; a private mapping of
 * the file reads it and keeps its writes, and populate_read maps it. */
static void test_file_holes_copy_private(void **state) {
  (void)state;
  size_t pg = xa_os_page;
  int fd = (int)syscall(SYS_memfd_create, "unit_os", 0), to = (int)syscall(SYS_memfd_create, "unit_os_to", 0);
  assert_true(fd >= 0 && to >= 0);
  assert_int_equal(ftruncate(fd, 64 * pg), 0);
  assert_int_equal(ftruncate(to, 64 * pg), 0);
  /* data on pages 2-3 and 6-9 */
  static char page[65536];
  for (int i = 0; i < 10; i++) {
    if (i < 2 || (i > 3 && i < 6)) continue;
    memset(page, 'a' + i, pg);
    assert_true(xa_os_write_at(fd, page, pg, (uint64_t)i * pg));
  }
  unsigned char vec[16];
  uint64_t end;
  assert_true(xa_os_file_holes(fd, 0, 8 * pg, vec, &end));
  unsigned char want[8] = {1, 1, 0, 0, 1, 1, 0, 0};
  assert_memory_equal(vec, want, 8);
  assert_int_equal(end, 10 * pg);               /* the data at the end runs on to page 10 */
  assert_true(xa_os_file_holes(fd, 0, 4 * pg, vec, &end));
  assert_int_equal(end, 4 * pg);                /* pages 2-3 end at page 4 */
  assert_true(xa_os_file_holes(fd, 10 * pg, 4 * pg, vec, &end));
  for (int i = 0; i < 4; i++) assert_int_equal(vec[i], 1);
  assert_int_equal(end, 0);                     /* ends in a hole */
  int ro = open("/dev/null", O_RDONLY);
  memset(vec, 7, sizeof vec);
  assert_false(xa_os_file_holes(ro, 0, 4 * pg, vec, &end));
  for (int i = 0; i < 4; i++) assert_int_equal(vec[i], 0);
  close(ro);

  /* copy_range: pages 6-7 only */
  assert_true(xa_os_copy_range(fd, to, 6 * pg, 2 * pg));
  assert_true(xa_os_file_holes(to, 0, 16 * pg, vec, &end));
  for (int i = 0; i < 16; i++) assert_int_equal(vec[i], i == 6 || i == 7 ? 0 : 1);
  static char back[65536];
  assert_true(xa_os_read_at(to, back, pg, 7 * pg));
  memset(page, 'a' + 7, pg);
  assert_memory_equal(back, page, pg);

  /* a private mapping: reads the file, writes stay in the memory */
  char *m = xa_os_map(4 * pg, pg);
  assert_non_null(m);
  assert_true(xa_os_map_file_private(m, 4 * pg, fd, 6 * pg));
  xa_os_populate_read(m, 4 * pg);
  assert_int_equal(m[0], 'a' + 6);
  assert_int_equal(m[3 * pg], 'a' + 9);
  m[0] = 'Z';
  assert_true(xa_os_read_at(fd, back, 1, 6 * pg));
  assert_int_equal(back[0], 'a' + 6);
  assert_true(xa_os_map_file(m, 4 * pg, fd, 6 * pg));     /* shared again: the file's bytes */
  assert_int_equal(m[0], 'a' + 6);
  xa_os_unmap(m, 4 * pg);
  close(fd);
  close(to);
}

/* A shared word: a fork child waits on it until the parent sets it and
 * wakes it; a wait on a word no one sets runs out and says so. */
static void test_shared_word(void **state) {
  (void)state;
  int *w = xa_os_map_shared_word();
  assert_non_null(w);
  assert_false(xa_os_wait_shared(w, 0, 20 * 1000000ull));
  pid_t pid = fork();
  if (pid == 0) _exit(xa_os_wait_shared(w, 0, 30 * 1000000000ull) && *w == 5 ? 0 : 1);
  usleep(50000);
  __atomic_store_n(w, 5, __ATOMIC_RELEASE);
  xa_os_wake_shared(w);
  int st;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFEXITED(st));
  assert_int_equal(WEXITSTATUS(st), 0);
  assert_true(xa_os_wait_shared(w, 0, 0));     /* set: no wait */
  xa_os_unmap(w, xa_os_page);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fork_closes_transient_fds),
      cmocka_unit_test(test_thread_alive),
      cmocka_unit_test(test_write_read_at),
      cmocka_unit_test(test_read_self),
      cmocka_unit_test(test_protect),
      cmocka_unit_test(test_purge_locked),
      cmocka_unit_test(test_fsize_lift),
      cmocka_unit_test(test_file_holes_copy_private),
      cmocka_unit_test(test_shared_word),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
