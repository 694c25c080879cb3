/* The OS layer: mmap, munmap, mremap, madvise, CPU and environment queries.
 * Nothing else in xalloc includes <sys/mman.h>. */
#define _GNU_SOURCE
#include "os.h"
#include "fmt.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <time.h>
#include <unistd.h>

/* open, read, write and close as plain system calls: the C library's are
 * thread-cancellation points, and a pthread_cancel must not unwind out
 * of malloc (the profiler and the cgroup reader use them there). */
/* The descriptors opened here are held for a moment (a /proc or cgroup
 * file read, a report written).  A fork in that moment copies them into
 * the child, where no thread of ours will close them and where they take
 * numbers the program expects to be free (GLib's subprocess tests check
 * this): each is noted while open, and the child closes those it got
 * (xa_os_postfork_child). */
#define TRANSIENT_MAX 16
static int transient[TRANSIENT_MAX];     /* fd + 1; 0: free slot */

static int sys_open(const char *path, int flags, int mode) {
  int fd = (int)syscall(SYS_openat, AT_FDCWD, path, flags, mode);
  for (int i = 0; fd >= 0 && i < TRANSIENT_MAX; i++) {
    int free_slot = 0;
    if (__atomic_compare_exchange_n(&transient[i], &free_slot, fd + 1, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) break;
  }
  return fd;
}
static ssize_t sys_read(int fd, void *buf, size_t n) { return syscall(SYS_read, fd, buf, n); }
static ssize_t sys_write(int fd, const void *buf, size_t n) { return syscall(SYS_write, fd, buf, n); }
static int sys_close(int fd) {
  for (int i = 0; i < TRANSIENT_MAX; i++) {
    int mine = fd + 1;
    if (__atomic_compare_exchange_n(&transient[i], &mine, 0, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) break;
  }
  return (int)syscall(SYS_close, fd);
}

/* The process id that xa_os_thread_alive asks the kernel about: read
 * once, not per call (glibc no longer caches getpid, and new thread caches
 * check other threads).  A fork child forgets it; a child made without
 * fork() (a raw clone) still holds its parent's id, so there a thread of
 * its own reads as gone: that verdict is checked against getpid() before
 * it counts. */
static int32_t alive_pid;
bool xa_os_populating;

void xa_os_postfork_child(void) {
  __atomic_store_n(&alive_pid, 0, __ATOMIC_RELAXED);
  __atomic_store_n(&xa_os_populating, false, __ATOMIC_RELAXED);   /* a child inherits no MCL_FUTURE */
  for (int i = 0; i < TRANSIENT_MAX; i++) {
    int v = __atomic_exchange_n(&transient[i], 0, __ATOMIC_RELAXED);
    if (v) syscall(SYS_close, v - 1);
  }
}

size_t xa_os_page = 4096;
unsigned xa_os_page_shift = 12;
unsigned long xa_os_fail_maps;
size_t xa_os_mapped_bytes;          /* updated atomically */
size_t xa_os_mapped_peak;           /* its high-water mark */

void xa_os_init(void) {
  unsigned long p = getauxval(AT_PAGESZ);
  if (p < ((size_t)1 << XA_PAGE_MIN_SHIFT) || p > ((size_t)1 << XA_PAGE_MAX_SHIFT) || (p & (p - 1)))
    p = 4096;
  xa_os_page = p;
  xa_os_page_shift = (unsigned)__builtin_ctzl(p);
}

static void *os_mmap(size_t size) {
  if (unlikely(xa_os_fail_maps)) {
    __atomic_fetch_sub(&xa_os_fail_maps, 1, __ATOMIC_RELAXED);
    return NULL;
  }
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

void *xa_os_map(size_t size, size_t align) {
  int saved = errno;
  void *p = NULL;
  if (align <= xa_os_page) {
    p = os_mmap(size);
  } else if (size + align > size) {
    /* Over-map by the alignment and trim both ends. */
    char *raw = os_mmap(size + align);
    if (raw) {
      char *q = (char *)XA_ALIGN_UP((uintptr_t)raw, align);
      if (q > raw) munmap(raw, (size_t)(q - raw));
      size_t tail = (size_t)(raw + size + align - (q + size));
      if (tail) munmap(q + size, tail);
      p = q;
    }
  }
  if (p) {
    size_t now = __atomic_add_fetch(&xa_os_mapped_bytes, size, __ATOMIC_RELAXED);
    size_t peak = __atomic_load_n(&xa_os_mapped_peak, __ATOMIC_RELAXED);
    while (now > peak && !__atomic_compare_exchange_n(&xa_os_mapped_peak, &peak, now, true,
                                                      __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {}
  }
  errno = saved;
  return p;
}

void xa_os_unmap(void *p, size_t size) {
  int saved = errno;
  munmap(p, size);
  __atomic_fetch_sub(&xa_os_mapped_bytes, size, __ATOMIC_RELAXED);
  errno = saved;
}

size_t xa_os_locked_purged;
bool xa_os_keep_locked;
static int drop_locked;         /* MADV_DONTNEED_LOCKED: 0 not asked yet, 1 known, -1 not */

#ifndef MADV_COLD
#define MADV_COLD 20                 /* Linux 5.4 */
#endif
#ifndef MADV_DONTNEED_LOCKED
#define MADV_DONTNEED_LOCKED 24      /* Linux 5.18 */
#endif

bool xa_os_can_drop_locked(void) {
  int known = __atomic_load_n(&drop_locked, __ATOMIC_RELAXED);
  if (!known) {
    /* an empty range: 0 exactly where the kernel knows the advice */
    int saved = errno;
    known = madvise((void *)xa_os_page, 0, MADV_DONTNEED_LOCKED) == 0 ? 1 : -1;
    errno = saved;
    __atomic_store_n(&drop_locked, known, __ATOMIC_RELAXED);
  }
  return known > 0;
}

/* A purge's madvise failed (shared: xa_os_purge_shared's, which asked
 * for MADV_REMOVE first).  Locked pages (mlock, mlockall) stay through
 * MADV_DONTNEED and MADV_REMOVE (EINVAL), and calloc would take the range
 * as zero while it holds old data.  Private pages go back with
 * MADV_DONTNEED_LOCKED, as glibc's free gives back a locked block it
 * unmaps (the mapping stays locked: a page touched again is locked
 * again); but not where every new mapping is mapped in at once (mlockall
 * with MCL_FUTURE, no MCL_ONFAULT: the program asked for no page faults
 * later), nor on kernels without the advice (before 5.18), nor for
 * shared memory (it would drop the page tables, and the file keeps the
 * old bytes).  There the range goes in 64 KiB steps, each given back as
 * the first madvise would have (MADV_REMOVE for a shared one, then
 * MADV_DONTNEED where that finds no file: private memory), or, where the
 * kernel refuses, zeroed by hand: it reads as zero, as purged pages do,
 * and stays resident; so pages that are not locked (a program that
 * mlocks one buffer; mappings older than an mlockall(MCL_FUTURE)) still
 * go back and are not faulted in again, but those in a step with locked
 * ones.  The ranges purged are the heap's free pages, all accessible.
 * Off the usual path: cold.  Not for ENOMEM (part of the range is not
 * mapped: nothing to write). */
static XA_COLD void purge_refused(void *p, size_t size, bool shared) {
  if (errno == ENOMEM) return;
  __atomic_add_fetch(&xa_os_locked_purged, size, __ATOMIC_RELAXED);
  if (!shared && !xa_os_maps_populated() && !__atomic_load_n(&xa_os_keep_locked, __ATOMIC_RELAXED) &&
      xa_os_can_drop_locked() && madvise(p, size, MADV_DONTNEED_LOCKED) == 0)
    return;
  const uintptr_t step = (uintptr_t)64 << 10;
  for (uintptr_t a = (uintptr_t)p, end = a + size; a < end;) {
    uintptr_t b = (a & ~(step - 1)) + step < end ? (a & ~(step - 1)) + step : end;
    void *at = (void *)a;
    bool gone = size > step && ((shared && madvise(at, b - a, MADV_REMOVE) == 0) ||
                                ((!shared || errno == EINVAL) && madvise(at, b - a, MADV_DONTNEED) == 0));
    if (!gone && (size <= step || errno != ENOMEM)) __builtin_memset(at, 0, b - a);
    a = b;
  }
}

bool xa_os_maps_populated(void) {
  int saved = errno;
  size_t page = xa_os_page;
  void *p = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  unsigned char resident = 0;
  bool yes = p != MAP_FAILED && mincore(p, page, &resident) == 0 && (resident & 1);
  if (p != MAP_FAILED) munmap(p, page);
  __atomic_store_n(&xa_os_populating, yes, __ATOMIC_RELAXED);
  errno = saved;
  return yes;
}

void *xa_os_reserve(size_t size) {
  int saved = errno;
  void *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p != MAP_FAILED) {
    madvise(p, size, MADV_DONTDUMP);
    /* Reads map the huge zero page.  A written part is a separate
     * mapping (xa_os_table_write) of whole 8 KiB steps, which a huge page
     * backs only where a whole aligned 2 MiB of it is writable, i.e.
     * written: no resident page is wasted. */
    madvise(p, size, MADV_HUGEPAGE);
  }
  errno = saved;
  return p == MAP_FAILED ? NULL : p;
}

bool xa_os_table_write(void *p, size_t size, bool on) {
  int saved = errno;
  bool ok;
  if (on) {
    ok = mprotect(p, size, PROT_READ | PROT_WRITE) == 0;
  } else {
    if (madvise(p, size, MADV_DONTNEED) != 0) purge_refused(p, size, false);   /* zero again before read-only */
    ok = mprotect(p, size, PROT_READ) == 0;
  }
  errno = saved;
  return ok;
}

void xa_os_release(void *p, size_t size) {
  int saved = errno;
  munmap(p, size);
  errno = saved;
}

#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4
#endif
#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

int xa_os_move_pages(void *from, size_t size, void *to) {
  int saved = errno;
  if (unlikely(xa_os_fail_maps)) return XA_MOVE_FAILED;
  /* Linux 5.7+: the source stays mapped, with no pages (reads as zero) */
  void *q = mremap(from, size, size, MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP, to);
  int rc = XA_MOVE_KEPT;
  if (q == MAP_FAILED) {
    q = mremap(from, size, size, MREMAP_MAYMOVE | MREMAP_FIXED, to);
    rc = XA_MOVE_HOLE;
    if (q != MAP_FAILED) {
      /* Map the hole again, unless another thread has mapped something
       * there meanwhile (NOREPLACE: never over a mapping not ours). */
      void *r = mmap(from, size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
      if (r == from) rc = XA_MOVE_KEPT;
      else if (r != MAP_FAILED) munmap(r, size);   /* kernel without NOREPLACE: a hint */
      if (rc == XA_MOVE_HOLE) __atomic_fetch_sub(&xa_os_mapped_bytes, size, __ATOMIC_RELAXED);
    }
  }
  errno = saved;
  return q == MAP_FAILED ? XA_MOVE_FAILED : rc;
}

static size_t rlimit_cur(int resource) {
  struct rlimit r;
  int saved = errno;
  bool ok = getrlimit(resource, &r) == 0;
  errno = saved;
  return ok && r.rlim_cur != RLIM_INFINITY ? (size_t)r.rlim_cur : SIZE_MAX;
}

size_t xa_os_as_limit(void) { return rlimit_cur(RLIMIT_AS); }

size_t xa_os_heap_limit(void) {
  size_t as = rlimit_cur(RLIMIT_AS), data = rlimit_cur(RLIMIT_DATA);
  /* a data limit of 256 GiB or more leaves the 1 GiB regions of 16 huge
   * shards within 1/16 of it: it counts as none */
  if (data >= (size_t)256 << 30) data = SIZE_MAX;
  return as < data ? as : data;
}

void xa_os_purge(void *p, size_t size) {
  int saved = errno;
  if (madvise(p, size, MADV_DONTNEED) != 0) purge_refused(p, size, false);
  errno = saved;
}

bool xa_os_purge_remap(void *p, size_t size) {
  int saved = errno;
  void *q = mmap(p, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
  errno = saved;
  return q == p;
}

void xa_os_purge_lazy(void *p, size_t size) {
  int saved = errno;
  /* kernels before 4.5 (no MADV_FREE), or locked pages */
  if (madvise(p, size, MADV_FREE) != 0 && madvise(p, size, MADV_DONTNEED) != 0) purge_refused(p, size, false);
  errno = saved;
}

size_t xa_os_fresh_bytes;
size_t xa_os_refault_bytes;

size_t xa_os_read_file(const char *path, char *buf, size_t size) {
  int saved = errno;
  ssize_t n = -1;
  int fd = sys_open(path, O_RDONLY | O_CLOEXEC, 0);
  if (fd >= 0) {
    n = sys_read(fd, buf, size - 1);
    sys_close(fd);
  }
  errno = saved;
  buf[n > 0 ? n : 0] = 0;
  return n > 0 ? (size_t)n : 0;
}

static size_t parse_num(const char *p) {
  size_t v = 0;
  while (*p == ' ' || *p == '\t') p++;     /* status pads with a tab, the rollup with spaces */
  while (*p >= '0' && *p <= '9') v = v * 10 + (size_t)(*p++ - '0');
  return v;
}

/* The value in kB of field "\nName:" of text, in bytes; 0 if absent. */
static size_t kb_field(const char *text, const char *field) {
  const char *p = strstr(text, field);
  return p ? parse_num(p + strlen(field)) << 10 : 0;
}

void xa_os_huge_and_pss(size_t *anon_huge, size_t *pss) {
  char buf[2048];
  xa_os_read_file("/proc/self/smaps_rollup", buf, sizeof buf);   /* "" if it cannot */
  *anon_huge = kb_field(buf, "\nAnonHugePages:");
  *pss = kb_field(buf, "\nPss:");
}

bool xa_os_rollup(struct xa_os_rollup *r) {
  char buf[2048];
  memset(r, 0, sizeof *r);
  if (!xa_os_read_file("/proc/self/smaps_rollup", buf, sizeof buf)) return false;
  r->rss = kb_field(buf, "\nRss:");
  r->pss = kb_field(buf, "\nPss:");
  r->anonymous = kb_field(buf, "\nAnonymous:");
  r->lazyfree = kb_field(buf, "\nLazyFree:");
  r->anon_huge = kb_field(buf, "\nAnonHugePages:");
  /* The rollup has shared memory only in proportion (Pss_Shmem); the
   * resident count beside Rss and Anonymous is status's RssShmem. */
  char status[4096];
  if (xa_os_read_file("/proc/self/status", status, sizeof status)) r->shmem = kb_field(status, "\nRssShmem:");
  return r->rss != 0;
}

size_t xa_os_resident_range(void *p, size_t size, unsigned char *vec) {
  int saved = errno;
  unsigned char local[256];
  size_t pages = size >> xa_os_page_shift, resident = 0;
  for (size_t done = 0; done < pages;) {
    size_t n = pages - done;
    unsigned char *v = vec ? vec + done : local;
    if (!vec && n > sizeof local) n = sizeof local;
    if (mincore((char *)p + (done << xa_os_page_shift), n << xa_os_page_shift, v) != 0) {
      if (vec) memset(vec + done, 1, pages - done);
      resident = 0;
      break;
    }
    for (size_t i = 0; i < n; i++) resident += v[i] & 1;
    done += n;
  }
  errno = saved;
  return resident << xa_os_page_shift;
}

size_t xa_os_resident(void) {
  char buf[128];
  xa_os_read_file("/proc/self/statm", buf, sizeof buf);
  const char *p = buf;
  while (*p && *p != ' ') p++;           /* skip size, read resident */
  return parse_num(p) * xa_os_page;
}

size_t xa_os_resident_peak(void) {
  char buf[2048];
  xa_os_read_file("/proc/self/status", buf, sizeof buf);
  const char *p = strstr(buf, "\nVmHWM:");
  if (!p) return 0;
  for (p += sizeof "\nVmHWM:" - 1; *p == '\t'; p++) {}
  return parse_num(p) << 10;
}

void xa_os_hugepage(void *p, size_t size, bool on) {
  int saved = errno;
  madvise(p, size, on ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
  errno = saved;
}

void xa_os_split_huge(void *p, size_t size) {
  int saved = errno;
  madvise(p, size, MADV_COLD);
  errno = saved;
}

bool xa_os_guard(void *p, size_t size) {
  int saved = errno;
  bool ok = mprotect(p, size, PROT_NONE) == 0;
  errno = saved;
  return ok;
}

bool xa_os_protect(void *p, size_t size, bool r, bool w, bool x) {
  int saved = errno;
  bool ok = mprotect(p, size, (r ? PROT_READ : 0) | (w ? PROT_WRITE : 0) | (x ? PROT_EXEC : 0)) == 0;
  errno = saved;
  return ok;
}

/* 0: not tried, 1: registered, -1: unavailable */
static int membarrier_state;

bool xa_os_membarrier(void) {
  int st = __atomic_load_n(&membarrier_state, __ATOMIC_ACQUIRE);
  if (st < 0) return false;
  int saved = errno;
  if (st == 0) {
    /* Registration is per process and idempotent: racing callers agree. */
    st = syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0 ? 1 : -1;
    __atomic_store_n(&membarrier_state, st, __ATOMIC_RELEASE);
  }
  bool ok = st > 0 && syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0;
  errno = saved;
  return ok;
}

void xa_os_membarrier_forget(void) {
  if (membarrier_state > 0) membarrier_state = 0;
}

int32_t xa_os_tid(void) { return (int32_t)syscall(SYS_gettid); }

bool xa_os_thread_alive(int32_t tid) {
  int saved = errno;
  int32_t pid = __atomic_load_n(&alive_pid, __ATOMIC_RELAXED);
  if (!pid) {
    pid = (int32_t)getpid();
    __atomic_store_n(&alive_pid, pid, __ATOMIC_RELAXED);
  }
  bool alive = syscall(SYS_tgkill, pid, tid, 0) == 0 || errno != ESRCH;
  if (!alive) {
    int32_t now = (int32_t)getpid();
    if (now != pid) {
      __atomic_store_n(&alive_pid, now, __ATOMIC_RELAXED);
      alive = syscall(SYS_tgkill, now, tid, 0) == 0 || errno != ESRCH;
    }
  }
  errno = saved;
  return alive;
}

uint64_t xa_os_random(void) {
  /* The kernel's 16 random bytes for this process, mixed with the clock
   * and an address (ASLR) so calls differ; no syscall, no allocation. */
  static uint64_t counter;
  const uint64_t *r = (const uint64_t *)getauxval(AT_RANDOM);
  uint64_t x = (r ? r[0] ^ r[1] : 0) ^ xa_os_now() ^ (uintptr_t)&counter;
  x ^= __atomic_add_fetch(&counter, 0x9E3779B97F4A7C15ull, __ATOMIC_RELAXED);
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;   /* splitmix64 finaliser */
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

uint64_t xa_os_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

unsigned xa_os_ncpus(void) {
  int saved = errno;
  cpu_set_t set;
  unsigned n = 0;
  if (sched_getaffinity(0, sizeof set, &set) == 0) n = (unsigned)CPU_COUNT(&set);
  if (n == 0) n = 1;
  errno = saved;
  return n;
}

unsigned xa_os_cpu(void) {
  int c = sched_getcpu();
  return c < 0 ? 0 : (unsigned)c;
}

extern char **environ;
const char *xa_os_getenv(const char *name) {
  size_t n = strlen(name);
  if (!environ) return NULL;
  for (char **e = environ; *e; e++)
    if (strncmp(*e, name, n) == 0 && (*e)[n] == '=') return *e + n + 1;
  return NULL;
}

bool xa_os_write_fd(int fd, const char *s, size_t n) {
  int saved = errno;
  while (n) {
    ssize_t w = sys_write(fd, s, n);
    if (w <= 0) { if (w < 0 && errno == EINTR) continue; break; }
    s += w; n -= (size_t)w;
  }
  errno = saved;
  return n == 0;
}

void xa_os_write_err(const char *s, size_t n) { xa_os_write_fd(2, s, n); }

/* The kept stderr: a close-on-exec duplicate numbered high, away from the
 * low numbers programs expect to find free, and what it referred to. */
static int kept_fd = -1;
static struct stat kept_st;

static bool same_file(int fd) {
  struct stat st;
  return fd >= 0 && fstat(fd, &st) == 0 && st.st_dev == kept_st.st_dev && st.st_ino == kept_st.st_ino &&
         st.st_rdev == kept_st.st_rdev;
}

void xa_os_keep_stderr(void) {
  int saved = errno;
  if (kept_fd < 0 && fstat(2, &kept_st) == 0) {
    static const int bases[] = {1000, 500, 100, 10};
    for (unsigned i = 0; i < sizeof bases / sizeof bases[0] && kept_fd < 0; i++)
      kept_fd = fcntl(2, F_DUPFD_CLOEXEC, bases[i]);
  }
  errno = saved;
}

int xa_os_kept_stderr(void) {
  int saved = errno, fd = -1;
  /* The program may have closed our number and opened something else on
   * it: write only where the file is still the one stderr was. */
  if (kept_fd >= 0) fd = same_file(kept_fd) ? kept_fd : same_file(2) ? 2 : -1;
  errno = saved;
  return fd;
}

int xa_os_open_append(const char *path) {
  int saved = errno;
  int fd = sys_open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0644);
  errno = saved;
  return fd;
}

int xa_os_open_write(const char *path) {
  int saved = errno;
  int fd = sys_open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY, 0644);
  errno = saved;
  return fd;
}

uintptr_t xa_os_loader_base(void) { return (uintptr_t)getauxval(AT_BASE); }

uint64_t xa_os_realtime(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

bool xa_os_on_signal(int sig, void (*handler)(int)) {
  int saved = errno;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = handler;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  bool ok = sigaction(sig, &sa, NULL) == 0;
  errno = saved;
  return ok;
}

static uintptr_t parse_hex(const char **p) {
  uintptr_t v = 0;
  for (;; (*p)++) {
    char c = **p;
    unsigned d = c >= '0' && c <= '9' ? (unsigned)(c - '0') : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10) : 16;
    if (d == 16) return v;
    v = v << 4 | d;
  }
}

/* "start-end perms offset dev inode   path" */
static bool maps_line(char *l, struct xa_os_mapping *m) {
  const char *p = l;
  m->start = parse_hex(&p);
  if (*p++ != '-') return false;
  m->end = parse_hex(&p);
  if (*p++ != ' ' || strlen(p) < 5) return false;
  m->r = p[0] == 'r';
  m->w = p[1] == 'w';
  m->x = p[2] == 'x';
  m->shared = p[3] == 's';
  p += 5;
  m->offset = parse_hex(&p);
  for (int field = 0; field < 2; field++) {          /* dev, inode */
    while (*p == ' ') p++;
    while (*p && *p != ' ') p++;
  }
  while (*p == ' ') p++;
  m->path = p;
  return true;
}

bool xa_os_maps(bool (*fn)(const struct xa_os_mapping *m, void *arg), void *arg) {
  char buf[4096];
  int fd = xa_os_open_read("/proc/self/maps");
  if (fd < 0) return false;
  size_t have = 0;
  bool go = true, cut = false, ok = true;    /* cut: dropping the rest of a long line */
  while (go) {
    long n = xa_os_read(fd, buf + have, sizeof buf - 1 - have);
    ok = n >= 0;                  /* a read error: not the whole file */
    if (n <= 0) break;
    have += (size_t)n;
    size_t start = 0;
    for (size_t i = 0; i < have && go; i++) {
      if (buf[i] != '\n') continue;
      buf[i] = 0;
      struct xa_os_mapping m;
      if (!cut && maps_line(buf + start, &m)) go = fn(&m, arg);
      cut = false;
      start = i + 1;
    }
    if (start == 0 && have == sizeof buf - 1) {    /* a line longer than buf */
      buf[have] = 0;
      struct xa_os_mapping m;
      if (!cut && maps_line(buf, &m)) go = fn(&m, arg);
      cut = true;
      start = have;
    }
    memmove(buf, buf + start, have - start);
    have -= start;
  }
  xa_os_close(fd);
  return ok;
}

static bool count_one(const struct xa_os_mapping *m, void *arg) {
  (void)m;
  ++*(size_t *)arg;
  return true;
}

/* xa_os_mlockall_sparing: the mappings, each locked (and mapped in) but
 * for the parts that lie in a spared range. */
struct lock_walk {
  const uintptr_t (*spare)[2];
  size_t nspare;
};

static bool lock_mapping(const struct xa_os_mapping *m, void *arg) {
  const struct lock_walk *w = arg;
  for (uintptr_t at = m->start; at < m->end;) {
    uintptr_t stop = m->end, resume = m->end;   /* lock [at, stop), go on at resume */
    bool spared = false;
    for (size_t i = 0; i < w->nspare && !spared; i++) {
      uintptr_t lo = w->spare[i][0], hi = w->spare[i][1];
      if (hi <= at || lo >= stop) continue;
      spared = lo <= at;
      stop = spared ? at : lo;
      resume = hi;
    }
    /* errors as mlockall's own (it ignores what it cannot map in):
     * [vsyscall] lies beyond user space, an inaccessible page is locked
     * but not mapped in */
    if (stop > at) (void)syscall(SYS_mlock, at, stop - at);
    at = resume;
  }
  return true;
}

int xa_os_mlockall_sparing(int flags, const uintptr_t (*spare)[2], size_t nspare) {
  if (!(flags & MCL_CURRENT) || (flags & MCL_ONFAULT) || !nspare) return (int)syscall(SYS_mlockall, flags);
  int saved = errno;
  /* 1: every mapping locked as its pages are touched: nothing mapped in */
  if (syscall(SYS_mlockall, flags | MCL_ONFAULT) != 0) {
    if (errno != EINVAL) return -1;                 /* the limit, or no privilege */
    errno = saved;
    return (int)syscall(SYS_mlockall, flags);       /* before Linux 4.4: no MCL_ONFAULT */
  }
  /* 2: new mappings locked and mapped in at once (MCL_FUTURE alone
   * leaves the mappings there are as they are), before the walk, so that
   * one another thread makes meanwhile is mapped in too (one made between
   * 1 and 2 is mapped in by the walk: a 1 GiB region whole); 3: the
   * mappings there are locked and mapped in, but for the spared ranges */
  if ((flags & MCL_FUTURE) && syscall(SYS_mlockall, MCL_FUTURE) != 0) return -1;
  struct lock_walk w = {spare, nspare};
  if (!xa_os_maps(lock_mapping, &w)) {
    errno = saved;
    return (int)syscall(SYS_mlockall, flags);       /* no /proc: as asked */
  }
  errno = saved;
  return 0;
}

size_t xa_os_map_count(void) {
  size_t n = 0;
  return xa_os_maps(count_one, &n) ? n : SIZE_MAX;
}

size_t xa_os_map_limit(void) {
  static size_t limit;            /* read once; a racing first read reads the same */
  size_t n = __atomic_load_n(&limit, __ATOMIC_RELAXED);
  if (n) return n;
  char buf[32];
  n = 0;
  if (xa_os_read_file("/proc/sys/vm/max_map_count", buf, sizeof buf))
    for (const char *c = buf; *c >= '0' && *c <= '9'; c++) n = n * 10 + (size_t)(*c - '0');
  if (!n) n = 65530;              /* the kernel's default */
  __atomic_store_n(&limit, n, __ATOMIC_RELAXED);
  return n;
}

void xa_os_close(int fd) {
  int saved = errno;
  sys_close(fd);
  errno = saved;
}

bool xa_os_is_mapped(const void *page) {
  int saved = errno;
  unsigned char v;
  bool ok = mincore((void *)((uintptr_t)page & ~(uintptr_t)(xa_os_page - 1)), 1, &v) == 0;
  errno = saved;
  return ok;
}

int xa_os_pid(void) { return (int)getpid(); }

int xa_os_psi_trigger(const char *path, const char *spec) {
  int saved = errno;
  int fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd >= 0 && write(fd, spec, strlen(spec) + 1) < 0) {
    close(fd);
    fd = -1;
  }
  fd = xa_os_fd_high(fd);
  errno = saved;
  return fd;
}

int xa_os_fd_high(int fd) {
  if (fd < 0 || fd >= XA_OS_FD_MIN) return fd;
  /* Out of the program's way: open() hands out the lowest free number,
   * and programs (and test suites) expect their own numbering. */
  int saved = errno;
  int high = fcntl(fd, F_DUPFD_CLOEXEC, XA_OS_FD_MIN);
  if (high >= 0) {
    sys_close(fd);
    fd = high;
  }
  errno = saved;
  return fd;
}

bool xa_os_fd_id(int fd, struct xa_os_fd_id *id) {
  int saved = errno;
  struct stat st;
  bool ok = fd >= 0 && fstat(fd, &st) == 0;
  if (ok) {
    id->dev = (uint64_t)st.st_dev;
    id->ino = (uint64_t)st.st_ino;
  }
  errno = saved;
  return ok;
}

static bool stat_is(const struct stat *st, const struct xa_os_fd_id *id) {
  return (uint64_t)st->st_dev == id->dev && (uint64_t)st->st_ino == id->ino;
}

bool xa_os_fd_is(int fd, const struct xa_os_fd_id *id) {
  if (fd < 0) return false;
  int saved = errno;
  struct stat st;
  bool is = fstat(fd, &st) == 0 ? stat_is(&st, id) : errno != EBADF;
  errno = saved;
  return is;
}

uint64_t xa_os_fd_bytes(int fd, const struct xa_os_fd_id *id) {
  int saved = errno;
  struct stat st;
  uint64_t bytes = fd >= 0 && fstat(fd, &st) == 0 && stat_is(&st, id) ? (uint64_t)st.st_blocks * 512 : 0;
  errno = saved;
  return bytes;
}

int xa_os_reopen_mapped(uintptr_t start, uintptr_t end, bool *denied) {
  char path[64] = "/proc/self/map_files/", hex[20];
  size_t at = 21, n = xa_fmt_hex(hex, start);
  memcpy(path + at, hex + 2, n - 2);        /* without the "0x" */
  at += n - 2;
  path[at++] = '-';
  n = xa_fmt_hex(hex, end);
  memcpy(path + at, hex + 2, n - 2);
  path[at + n - 2] = 0;
  int saved = errno;
  int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_RDWR | O_CLOEXEC, 0);   /* kept: not transient */
  *denied = fd < 0 && (errno == EPERM || errno == EACCES);
  errno = saved;
  return xa_os_fd_high(fd);
}

bool xa_os_map_zero_shared(void *p, size_t size) {
  int saved = errno;
  void *q = mmap(p, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
  errno = saved;
  return q == p;
}

int xa_os_wait_pri(int fd, uint64_t ns) {
  int saved = errno;
  struct pollfd p = {fd, POLLPRI, 0};
  struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
  int r = ppoll(&p, 1, &ts, NULL);
  errno = saved;
  if (r < 0) return 0;                       /* a signal: as if the time passed */
  if (r == 0) return 0;
  if (p.revents & (POLLNVAL | POLLERR)) return -1;
  return (p.revents & POLLPRI) ? 1 : -1;
}

void xa_os_yield(void) { syscall(SYS_sched_yield); }

void xa_os_sleep(uint64_t ns) {
  int saved = errno;
  struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
  nanosleep(&ts, NULL);
  errno = saved;
}

int xa_os_open_read(const char *path) {
  int saved = errno;
  int fd = sys_open(path, O_RDONLY | O_CLOEXEC, 0);
  errno = saved;
  return fd;
}

long xa_os_read(int fd, char *buf, size_t n) {
  int saved = errno;
  ssize_t got;
  do got = sys_read(fd, buf, n);
  while (got < 0 && errno == EINTR);
  errno = saved;
  return (long)got;
}

bool xa_os_file_exists(const char *path) {
  int saved = errno;
  bool ok = access(path, R_OK) == 0;
  errno = saved;
  return ok;
}

/* Field k (1-based, k >= 3) of a /proc stat line: after the ")" of the
 * command name, which may itself hold spaces. */
static const char *stat_field(const char *line, unsigned k) {
  const char *p = strrchr(line, ')');
  if (!p) return NULL;
  p++;
  for (unsigned f = 3; f < k && p; f++) p = strchr(p + 1, ' ');
  return p ? p + 1 : NULL;
}

bool xa_os_last_thread(void) {
  int saved = errno;
  char buf[1024], path[64] = "/proc/self/task/";
  bool last = false;
  if (xa_os_read_file("/proc/self/stat", buf, sizeof buf) > 0) {
    const char *f = stat_field(buf, 20);              /* num_threads */
    long n = f ? strtol(f, NULL, 10) : 0;
    pid_t pid = getpid();
    if (n == 1) {
      last = true;
    } else if (n == 2 && xa_os_tid() != pid) {
      /* The leader stays listed, as a zombie, until every thread exits. */
      size_t k = strlen(path);
      k += xa_fmt_dec(path + k, (uint64_t)pid);
      memcpy(path + k, "/stat", 6);
      f = xa_os_read_file(path, buf, sizeof buf) > 0 ? stat_field(buf, 3) : NULL;
      last = f && *f == 'Z';
    }
  }
  errno = saved;
  return last;
}

void xa_os_abort(void) {
  /* abort() may flush stdio (which may allocate); raise directly.  The
   * purger blocks every signal: unblocked here, or the raise would stay
   * pending and the process end by _exit, with no SIGABRT and no core. */
  signal(SIGABRT, SIG_DFL);
  sigset_t abrt;
  sigemptyset(&abrt);
  sigaddset(&abrt, SIGABRT);
  sigprocmask(SIG_UNBLOCK, &abrt, NULL);
  raise(SIGABRT);
  _exit(127);
}

/* ---- memory that can be aliased (meshing, mesh.c) ---------------------- */

#include <linux/userfaultfd.h>
#include <sys/ioctl.h>

bool xa_os_fsize_unlimited(void) {
  struct rlimit r;
  int saved = errno;
  bool ok = getrlimit(RLIMIT_FSIZE, &r) == 0 && r.rlim_cur == RLIM_INFINITY;
  errno = saved;
  return ok;
}

bool xa_os_fsize_lift(uint64_t *soft) {
  struct rlimit r;
  int saved = errno;
  *soft = RLIM_INFINITY;
  bool ok = getrlimit(RLIMIT_FSIZE, &r) == 0;
  if (ok && r.rlim_cur != RLIM_INFINITY) {
    ok = r.rlim_max == RLIM_INFINITY;
    struct rlimit lifted = {RLIM_INFINITY, RLIM_INFINITY};
    if (ok) ok = setrlimit(RLIMIT_FSIZE, &lifted) == 0;
    if (ok) *soft = r.rlim_cur;
  }
  errno = saved;
  return ok;
}

void xa_os_fsize_put_back(uint64_t soft) {
  if (soft == RLIM_INFINITY) return;
  int saved = errno;
  struct rlimit r = {soft, RLIM_INFINITY};
  setrlimit(RLIMIT_FSIZE, &r);
  errno = saved;
}

int xa_os_memfd(uint64_t size) {
  int saved = errno;
  int fd = (int)syscall(SYS_memfd_create, "xalloc-mesh", MFD_CLOEXEC);
  if (fd >= 0 && syscall(SYS_ftruncate, fd, (off_t)size) != 0) {
    syscall(SYS_close, fd);
    fd = -1;
  }
  errno = saved;
  return xa_os_fd_high(fd);
}

bool xa_os_map_file(void *addr, size_t size, int fd, uint64_t off) {
  int saved = errno;
  void *p = mmap(addr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, (off_t)off);
  errno = saved;
  return p == addr;
}

bool xa_os_map_file_private(void *addr, size_t size, int fd, uint64_t off) {
  int saved = errno;
  /* MAP_NORESERVE: only the pages written meanwhile are new memory (but
   * under vm.overcommit_memory=2 the whole range is charged) */
  void *p = mmap(addr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED | MAP_NORESERVE, fd, (off_t)off);
  errno = saved;
  return p == addr;
}

bool xa_os_file_holes(int fd, uint64_t off, size_t size, unsigned char *vec, uint64_t *data_end) {
  int saved = errno;
  size_t pages = size >> xa_os_page_shift;
  uint64_t end = off + size;
  bool ok = true;
  memset(vec, 0, pages);
  *data_end = 0;
  for (uint64_t at = off; at < end;) {
    off_t d = lseek(fd, (off_t)at, SEEK_DATA);   /* positions come back; the file's own is not used */
    if ((d < 0 && errno != ENXIO) || (d >= 0 && (uint64_t)d < at)) { ok = false; break; }
    uint64_t data = d < 0 || (uint64_t)d > end ? end : (uint64_t)d;
    for (uint64_t q = at; q < data; q += xa_os_page) vec[(q - off) >> xa_os_page_shift] = 1;
    if (data >= end) break;
    off_t h = lseek(fd, (off_t)data, SEEK_HOLE);
    if (h < 0 || (uint64_t)h <= data) { ok = false; break; }     /* no progress: not a file that can say */
    if ((uint64_t)h >= end) *data_end = (uint64_t)h;
    at = ((uint64_t)h + xa_os_page - 1) & ~(uint64_t)(xa_os_page - 1);
  }
  if (!ok) memset(vec, 0, pages);
  errno = saved;
  return ok;
}

int *xa_os_map_shared_word(void) {
  int saved = errno;
  void *p = mmap(NULL, xa_os_page, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  errno = saved;
  return p == MAP_FAILED ? NULL : p;
}

/* Shared futexes (no FUTEX_PRIVATE_FLAG): the word is in two processes. */
bool xa_os_wait_shared(int *w, int val, uint64_t ns) {
  int saved = errno;
  uint64_t end = xa_os_now() + ns;
  while (__atomic_load_n(w, __ATOMIC_ACQUIRE) == val) {
    uint64_t now = xa_os_now();
    if (now >= end) break;
    struct timespec ts = {(time_t)((end - now) / 1000000000u), (long)((end - now) % 1000000000u)};
    syscall(SYS_futex, w, FUTEX_WAIT, val, &ts, NULL, 0);
  }
  errno = saved;
  return __atomic_load_n(w, __ATOMIC_ACQUIRE) != val;
}

void xa_os_wake_shared(int *w) {
  int saved = errno;
  syscall(SYS_futex, w, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
  errno = saved;
}

void xa_os_populate_read(void *p, size_t size) {
  int saved = errno;
  madvise(p, size, MADV_POPULATE_READ);
  errno = saved;
}

void xa_os_punch(int fd, uint64_t off, size_t size) {
  int saved = errno;
  syscall(SYS_fallocate, fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)size);
  errno = saved;
}

void xa_os_purge_shared(void *p, size_t size) {
  int saved = errno;
  /* MADV_REMOVE frees a shared page's backing; on private memory (a
   * chunk that could not be file-backed) it fails and DONTNEED does. */
  if (madvise(p, size, MADV_REMOVE) != 0 && madvise(p, size, MADV_DONTNEED) != 0) purge_refused(p, size, true);
  errno = saved;
}

bool xa_os_copy_range(int from, int to, uint64_t off, uint64_t size) {
  int saved = errno;
  bool ok = true;
  off_t in = (off_t)off, out = (off_t)off, end = (off_t)(off + size);
  while (ok && in < end) {
    ssize_t n = syscall(SYS_copy_file_range, from, &in, to, &out, (size_t)(end - in), 0);
    if (n <= 0) {       /* no copy_file_range here: through a buffer */
      static char buf[1 << 16] XA_BSS_TABLE;
      n = pread(from, buf, (size_t)(end - in) < sizeof buf ? (size_t)(end - in) : sizeof buf, in);
      if (n <= 0 || pwrite(to, buf, (size_t)n, out) != n) {
        ok = false;
        break;
      }
      in += n;
      out += n;
    }
  }
  errno = saved;
  return ok;
}

/* All of [p, p+size) written to fd at off, or read from it into p. */
static bool transfer_at(int fd, char *p, size_t size, uint64_t off, bool write) {
  int saved = errno;
  while (size) {
    ssize_t n = write ? pwrite(fd, p, size, (off_t)off) : pread(fd, p, size, (off_t)off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    p += n;
    off += (uint64_t)n;
    size -= (size_t)n;
  }
  errno = saved;
  return size == 0;
}

bool xa_os_write_at(int fd, const void *p, size_t size, uint64_t off) {
  return transfer_at(fd, (char *)(uintptr_t)p, size, off, true);
}

bool xa_os_read_at(int fd, void *p, size_t size, uint64_t off) { return transfer_at(fd, p, size, off, false); }

bool xa_os_read_self(void *dst, const void *src, size_t size) {
  int saved = errno;
  bool ok = true;
  /* A page at a time where the whole fails: process_vm_readv stops at
   * the first page it cannot read (inaccessible: PROT_NONE). */
  struct iovec to = {dst, size}, from = {(void *)(uintptr_t)src, size};
  if (process_vm_readv(getpid(), &to, 1, &from, 1, 0) != (ssize_t)size) {
    int mem = -1;
    for (size_t done = 0; ok && done < size; done += xa_os_page) {
      size_t n = size - done < xa_os_page ? size - done : xa_os_page;
      struct iovec t = {(char *)dst + done, n}, f = {(char *)(uintptr_t)src + done, n};
      if (process_vm_readv(getpid(), &t, 1, &f, 1, 0) == (ssize_t)n) continue;
      if (mem < 0) mem = xa_os_open_read("/proc/self/mem");
      ok = mem >= 0 && xa_os_read_at(mem, (char *)dst + done, n, (uintptr_t)src + done);
    }
    if (mem >= 0) xa_os_close(mem);
  }
  errno = saved;
  return ok;
}

/* Linux 6.4: protection of anonymous private pages not populated yet
 * (older headers lack the name). */
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif

static int wp_open_with(uint64_t features) {
  /* Kernel-mode faults must wait too (a read() into a block being meshed),
   * so no UFFD_USER_MODE_ONLY: this needs the privilege to handle them
   * (vm.unprivileged_userfaultfd=1, CAP_SYS_PTRACE or root). */
  int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
  if (fd >= 0) {
    struct uffdio_api api = {.api = UFFD_API, .features = features};
    if (ioctl(fd, UFFDIO_API, &api) != 0 || !(api.ioctls & ((uint64_t)1 << _UFFDIO_REGISTER)) ||
        (api.features & features) != features) {
      syscall(SYS_close, fd);
      fd = -1;
    }
  }
  return fd;
}

int xa_os_wp_open(bool *unpopulated) {
  int saved = errno;
  /* A kernel that does not know a feature refuses the handshake: then
   * again, on a new descriptor, without it. */
  int fd = wp_open_with(UFFD_FEATURE_WP_HUGETLBFS_SHMEM | UFFD_FEATURE_WP_UNPOPULATED);
  *unpopulated = fd >= 0;
  if (fd < 0) fd = wp_open_with(UFFD_FEATURE_WP_HUGETLBFS_SHMEM);
  errno = saved;
  return xa_os_fd_high(fd);
}

bool xa_os_wp_protect(int uffd, void *p, size_t size) {
  int saved = errno;
  struct uffdio_register reg = {.range = {(uintptr_t)p, size}, .mode = UFFDIO_REGISTER_MODE_WP};
  bool ok = ioctl(uffd, UFFDIO_REGISTER, &reg) == 0;
  if (ok) {
    struct uffdio_writeprotect wp = {.range = reg.range, .mode = UFFDIO_WRITEPROTECT_MODE_WP};
    ok = ioctl(uffd, UFFDIO_WRITEPROTECT, &wp) == 0;
    if (!ok) ioctl(uffd, UFFDIO_UNREGISTER, &reg.range);
  }
  errno = saved;
  return ok;
}

void xa_os_wp_release(int uffd, void *p, size_t size, bool mapped) {
  int saved = errno;
  struct uffdio_range r = {(uintptr_t)p, size};
  if (mapped) {       /* still the protected mapping: lift it (wakes) */
    struct uffdio_writeprotect wp = {.range = r, .mode = 0};
    ioctl(uffd, UFFDIO_WRITEPROTECT, &wp);
    ioctl(uffd, UFFDIO_UNREGISTER, &r);
  }
  /* Writers that waited on the old mapping retry on whatever is there. */
  ioctl(uffd, UFFDIO_WAKE, &r);
  errno = saved;
}
