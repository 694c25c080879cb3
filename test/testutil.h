/* Shared helpers for xalloc's api_* and stress_* tests.
 *
 * Everything here is static so each test program is self-contained; the
 * helpers use only libc/POSIX, so they work both when a test is linked with
 * -lxalloc and when it is built against plain glibc (-DXA_TEST_GLIBC).
 *
 * Include after <cmocka.h>'s prerequisites (stdarg.h, stddef.h, setjmp.h,
 * stdint.h) if the test uses cmocka. */
#ifndef XA_TESTUTIL_H
#define XA_TESTUTIL_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>

/* ---- deterministic pseudo-random numbers -------------------------------- */

/* xorshift64*: never seed with 0 (tu_seed() fixes that up). */
typedef struct { uint64_t s; } tu_rng;

static inline void tu_seed(tu_rng *r, uint64_t seed)
{
    /* splitmix64 of the seed so that small consecutive seeds diverge */
    uint64_t z = seed + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    r->s = z ? z : 0x2545F4914F6CDD1Dull;
}

static inline uint64_t tu_next(tu_rng *r)
{
    uint64_t x = r->s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* uniform-ish in [lo, hi] (inclusive) */
static inline size_t tu_range(tu_rng *r, size_t lo, size_t hi)
{
    return lo + (size_t)(tu_next(r) % (uint64_t)(hi - lo + 1));
}

/* ---- fill / check patterns ---------------------------------------------- */

/* Byte i of a block tagged `tag` is a hash of (tag, i); distinct tags give
 * distinct contents, so blocks that overlap or get swapped are detected. */
static inline uint8_t tu_pat_byte(uint64_t tag, size_t i)
{
    uint64_t x = (tag * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)(i >> 3) * 0xC2B2AE3D27D4EB4Full);
    x ^= x >> 29;
    return (uint8_t)(x >> (8 * (i & 7)));
}

static inline uint64_t tu_pat_word(uint64_t tag, size_t wordidx)
{
    uint64_t x = (tag * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)wordidx * 0xC2B2AE3D27D4EB4Full);
    x ^= x >> 29;
    return x;
}

/* Fill bytes [from, to) of p with the pattern of `tag` (offsets are relative
 * to p, so a block's pattern is independent of where it lives). */
static inline void tu_fill_range(void *p, size_t from, size_t to, uint64_t tag)
{
    uint8_t *b = (uint8_t *)p;
    size_t i = from;
    while (i < to && (i & 7))
        { b[i] = tu_pat_byte(tag, i); i++; }
    for (; i + 8 <= to; i += 8) {
        uint64_t w = tu_pat_word(tag, i >> 3);
        memcpy(b + i, &w, 8); /* little-endian: byte k of w == tu_pat_byte(tag, i+k) */
    }
    for (; i < to; i++)
        b[i] = tu_pat_byte(tag, i);
}

/* Returns the offset of the first mismatching byte in [from, to), or
 * (size_t)-1 if all match. */
static inline size_t tu_check_range(const void *p, size_t from, size_t to, uint64_t tag)
{
    const uint8_t *b = (const uint8_t *)p;
    size_t i = from;
    while (i < to && (i & 7)) {
        if (b[i] != tu_pat_byte(tag, i)) return i;
        i++;
    }
    for (; i + 8 <= to; i += 8) {
        uint64_t w, e = tu_pat_word(tag, i >> 3);
        memcpy(&w, b + i, 8);
        if (w != e) {
            for (size_t k = 0; k < 8; k++)
                if (b[i + k] != tu_pat_byte(tag, i + k)) return i + k;
        }
    }
    for (; i < to; i++)
        if (b[i] != tu_pat_byte(tag, i)) return i;
    return (size_t)-1;
}

static inline void tu_fill(void *p, size_t n, uint64_t tag) { tu_fill_range(p, 0, n, tag); }
static inline int tu_check(const void *p, size_t n, uint64_t tag)
{
    return tu_check_range(p, 0, n, tag) == (size_t)-1;
}

/* Sparse pattern for big blocks: the first and last `edge` bytes in full and
 * one 8-byte word at the start of every 4 KiB page in between.  Touches every
 * page, so the memory is really committed. */
#define TU_EDGE 4096
static inline void tu_fill_sparse(void *p, size_t n, uint64_t tag)
{
    if (n <= 3 * TU_EDGE) { tu_fill(p, n, tag); return; }
    tu_fill_range(p, 0, TU_EDGE, tag);
    for (size_t off = TU_EDGE; off + 8 <= n - TU_EDGE; off += 4096)
        tu_fill_range(p, off, off + 8, tag);
    tu_fill_range(p, n - TU_EDGE, n, tag);
}

static inline int tu_check_sparse(const void *p, size_t n, uint64_t tag)
{
    if (n <= 3 * TU_EDGE) return tu_check(p, n, tag);
    if (tu_check_range(p, 0, TU_EDGE, tag) != (size_t)-1) return 0;
    for (size_t off = TU_EDGE; off + 8 <= n - TU_EDGE; off += 4096)
        if (tu_check_range(p, off, off + 8, tag) != (size_t)-1) return 0;
    return tu_check_range(p, n - TU_EDGE, n, tag) == (size_t)-1;
}

/* Is every byte of [p, p+n) zero? */
/* bytes that tu_fill_sparse(p, n_old, tag) wrote and that lie below keep */
static inline int tu_check_sparse_prefix(const void *p, size_t n_old, size_t keep, uint64_t tag)
{
    if (keep > n_old) keep = n_old;
    if (n_old <= 3 * TU_EDGE) return tu_check_range(p, 0, keep, tag) == (size_t)-1;
    size_t e = keep < TU_EDGE ? keep : TU_EDGE;
    if (tu_check_range(p, 0, e, tag) != (size_t)-1) return 0;
    for (size_t off = TU_EDGE; off + 8 <= n_old - TU_EDGE && off + 8 <= keep; off += 4096)
        if (tu_check_range(p, off, off + 8, tag) != (size_t)-1) return 0;
    if (keep > n_old - TU_EDGE && tu_check_range(p, n_old - TU_EDGE, keep, tag) != (size_t)-1) return 0;
    return 1;
}

static inline int tu_is_zero(const void *p, size_t n)
{
    const uint8_t *b = (const uint8_t *)p;
    size_t i = 0;
    for (; i < n && ((uintptr_t)(b + i) & 7); i++)
        if (b[i]) return 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, b + i, 8);
        if (w) return 0;
    }
    for (; i < n; i++)
        if (b[i]) return 0;
    return 1;
}

static inline int tu_aligned(const void *p, size_t a) { return ((uintptr_t)p & (a - 1)) == 0; }

/* smallest power of two >= x (x >= 1) */
static inline size_t tu_pow2_ceil(size_t x)
{
    size_t p = 1;
    while (p < x) p <<= 1;
    return p;
}

/* largest power of two <= x (x >= 1) */
static inline size_t tu_pow2_floor(size_t x)
{
    size_t p = 1;
    while (p <= x / 2) p <<= 1;
    return p;
}

/* ---- valgrind -------------------------------------------------------------- */

/* Running under valgrind?  `make check-memcheck` runs the .glibc builds under
 * memcheck, whose replacement allocator does not model all of glibc's
 * semantics (no errno on failure, pvalloc aborts, no mallinfo/malloc_trim/
 * RSS behaviour, limited huge alignments, very slow thread creation).  Tests
 * skip exactly those checks there (and shrink long loops), keeping the
 * memory-safety value of running the test code itself under memcheck. */
static inline int tu_valgrind(void)
{
    static int v = -1;
    if (v < 0) {
        const char *p = getenv("LD_PRELOAD");
        v = p && strstr(p, "vgpreload") != NULL;
    }
    return v;
}

/* ---- process memory ------------------------------------------------------ */

/* Has the kernel transparent huge pages (else madvise sets no hg or nh
 * VmFlag)? */
static inline int tu_thp(void)
{
  return access("/sys/kernel/mm/transparent_hugepage", F_OK) == 0;
}

/* Does the mapping that contains p carry VmFlag `flag` in smaps? */
static inline int tu_vmflag(const void *p, const char *flag)
{
  FILE *f = fopen("/proc/self/smaps", "r");
  if (!f) return 0;
  char line[512];
  int in = 0, found = 0;
  while (fgets(line, sizeof line, f)) {
    unsigned long lo, hi;
    if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
      in = (uintptr_t)p >= lo && (uintptr_t)p < hi;
    } else if (in && !strncmp(line, "VmFlags:", 8)) {
      char want[8];
      snprintf(want, sizeof want, " %s", flag);
      found = strstr(line, want) != NULL;
      break;
    }
  }
  fclose(f);
  return found;
}

/* field 0 = VmSize, 1 = RSS; in bytes; 0 on error. */
static inline size_t tu_statm(int field)
{
    char buf[256];
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = 0;
    unsigned long v[2] = { 0, 0 };
    if (sscanf(buf, "%lu %lu", &v[0], &v[1]) != 2) return 0;
    return (size_t)v[field] * (size_t)sysconf(_SC_PAGESIZE);
}
/* The line of /proc/self/maps for the mapping that holds address a, or "". */
static inline const char *tu_maps_line(uintptr_t a)
{
    static char line[512];
    char buf[512];
    FILE *f = fopen("/proc/self/maps", "r");
    line[0] = 0;
    while (f && fgets(buf, sizeof buf, f)) {
        unsigned long lo, hi;
        if (sscanf(buf, "%lx-%lx", &lo, &hi) == 2 && a >= lo && a < hi) {
            snprintf(line, sizeof line, "%s", buf);
            break;
        }
    }
    if (f) fclose(f);
    return line;
}
/* Permissions of the mapping that holds address a ("rw-p", "---p"), or "". */
static inline const char *tu_perms_at(uintptr_t a)
{
    static char perms[8];
    perms[0] = 0;
    sscanf(tu_maps_line(a), "%*x-%*x %7s", perms);
    return perms;
}
/* Does p lie in a mapping of meshing's file (mesh:true)? */
static inline int tu_in_mesh_file(const void *p)
{
    return strstr(tu_maps_line((uintptr_t)p), "xalloc-mesh") != NULL;
}

/* First-failure recorder for multi-threaded tests: any thread calls
 * tu_report(); tu_failures counts, tu_first_failure keeps the first message. */
static atomic_long tu_failures __attribute__((unused));
static char tu_first_failure[512] __attribute__((unused));
static pthread_mutex_t tu_fail_lock __attribute__((unused)) = PTHREAD_MUTEX_INITIALIZER;
static inline void tu_report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void tu_report(const char *fmt, ...)
{
    if (atomic_fetch_add(&tu_failures, 1) == 0) {
        pthread_mutex_lock(&tu_fail_lock);
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(tu_first_failure, sizeof tu_first_failure, fmt, ap);
        va_end(ap);
        pthread_mutex_unlock(&tu_fail_lock);
    }
}

static inline size_t tu_rss(void) { return tu_statm(1); }

/* May this process lock all its memory: CAP_IPC_LOCK in its effective
 * set (root in a container may lack it), or no RLIMIT_MEMLOCK?  Without
 * either, mlockall(MCL_FUTURE) succeeds but later mappings fail. */
static inline bool tu_may_lock_all(void)
{
    char buf[4096];
    int fd = open("/proc/self/status", O_RDONLY);
    if (fd < 0) return false;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return false;
    buf[n] = 0;
    const char *cap = strstr(buf, "\nCapEff:");
    if (cap && (strtoull(cap + 9, NULL, 16) >> 14 & 1)) return true;   /* CAP_IPC_LOCK */
    struct rlimit r;
    return getrlimit(RLIMIT_MEMLOCK, &r) == 0 && r.rlim_cur == RLIM_INFINITY;
}
static inline size_t tu_vmsize(void) { return tu_statm(0); }

/* A field of /proc/self/status ("VmData:"), in KiB; 0 if absent. */
static inline size_t tu_status_kb(const char *key)
{
    char buf[8192];
    int fd = open("/proc/self/status", O_RDONLY);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = 0;
    const char *p = strstr(buf, key);
    return p ? strtoull(p + strlen(key), NULL, 10) : 0;
}

#define TU_MiB ((size_t)1 << 20)
#define TU_GiB ((size_t)1 << 30)

/* ---- running code in a forked child -------------------------------------- */

typedef struct {
    int exited;      /* 1 if the child exited normally */
    int code;        /* exit code if exited */
    int sig;         /* terminating signal if killed by a signal, else 0 */
    int timed_out;   /* 1 if we had to SIGKILL it after the timeout */
    size_t errlen;
    char err[65536]; /* captured stderr (NUL-terminated, truncated if longer) */
} tu_child;

/* Check inside a child: on failure print the location to (captured) stderr
 * and exit with status 99. */
#define TU_CHK(c) do { if (!(c)) { \
        fprintf(stderr, "CHECK FAILED %s:%d: %s (errno=%d)\n", __FILE__, __LINE__, #c, errno); \
        fflush(stderr); _exit(99); } } while (0)

static inline void tu_default_signals(void)
{
    /* cmocka installs handlers for SIGSEGV etc. that longjmp into its runner;
     * a child must die from the real signal instead. */
    static const int sigs[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGSYS, SIGALRM, SIGTRAP };
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        signal(sigs[i], SIG_DFL);
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
}

static inline double tu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Run this program again as `self mode` with XALLOC_CONF=conf (NULL:
 * unset); returns the exit status (or 128+signal).  A hang is killed from
 * here after timeout_s (a deadlocked child may block every signal, so its
 * own alarm() is not enough), reported, and returned as 124. */
static inline int tu_run_self_with(const char *mode, const char *conf, int timeout_s, void (*before_exec)(void));
static inline int tu_run_self(const char *mode, const char *conf, int timeout_s)
{
    return tu_run_self_with(mode, conf, timeout_s, NULL);
}

/* The same, with before_exec (if not NULL) run in the child first. */
static inline int tu_run_self_with(const char *mode, const char *conf, int timeout_s, void (*before_exec)(void))
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        if (before_exec) before_exec();
        if (conf) setenv("XALLOC_CONF", conf, 1);
        else unsetenv("XALLOC_CONF");
        execl("/proc/self/exe", "self", mode, (char *)NULL);
        _exit(127);
    }
    if (pid < 0) return -1;
    int st;
    double deadline = tu_now() + timeout_s;
    while (waitpid(pid, &st, WNOHANG) == 0) {
        if (tu_now() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            fprintf(stderr, "%s [%s]: hang, killed after %d s\n", mode, conf ? conf : "defaults", timeout_s);
            return 124;
        }
        usleep(10000);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Fork; in the child redirect stderr into a pipe (and stdout to /dev/null if
 * quiet_stdout), run fn(arg) and _exit with its return value.  The parent
 * collects stderr and the exit status.  A child that is still running after
 * timeout_s seconds (a hang/deadlock guard, not a timing assertion) is
 * killed and reported as timed_out. */
static inline void tu_run_child(tu_child *res, int (*fn)(void *), void *arg,
                                int quiet_stdout, int timeout_s)
{
    int pfd[2];
    memset(res, 0, sizeof *res);
    if (pipe(pfd) != 0) { res->code = -1; return; }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) { res->code = -1; close(pfd[0]); close(pfd[1]); return; }
    if (pid == 0) {
        tu_default_signals();
        close(pfd[0]);
        dup2(pfd[1], 2);
        close(pfd[1]);
        if (quiet_stdout) {
            int fd = open("/dev/null", O_WRONLY);
            if (fd >= 0) { dup2(fd, 1); close(fd); }
        }
        int rc = fn(arg);
        fflush(stdout);
        fflush(stderr);
        _exit(rc);
    }
    close(pfd[1]);
    double deadline = tu_now() + timeout_s;
    for (;;) {
        int left_ms = (int)((deadline - tu_now()) * 1000);
        if (left_ms <= 0) {
            kill(pid, SIGKILL);
            res->timed_out = 1;
            break;
        }
        struct pollfd pf = { .fd = pfd[0], .events = POLLIN };
        int pr = poll(&pf, 1, left_ms);
        if (pr < 0 && errno == EINTR) continue;
        if (pr <= 0) continue;
        char tmp[4096];
        ssize_t n = read(pfd[0], tmp, sizeof tmp);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        size_t room = sizeof res->err - 1 - res->errlen;
        if ((size_t)n > room) n = (ssize_t)room;
        memcpy(res->err + res->errlen, tmp, (size_t)n);
        res->errlen += (size_t)n;
    }
    close(pfd[0]);
    res->err[res->errlen] = 0;
    /* stderr closed: the child is exiting (or was killed); reap it, with the
     * same hang guard in case it closed fd 2 and kept running. */
    int st = 0;
    for (;;) {
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid) break;
        if (w < 0 && errno != EINTR) { res->code = -1; return; }
        if (tu_now() > deadline && !res->timed_out) {
            kill(pid, SIGKILL);
            res->timed_out = 1;
        }
        usleep(1000);
    }
    if (WIFEXITED(st)) { res->exited = 1; res->code = WEXITSTATUS(st); }
    if (WIFSIGNALED(st)) res->sig = WTERMSIG(st);
}

/* Human-readable description of how the child ended (for failure messages). */
static inline const char *tu_child_desc(const tu_child *c, char *buf, size_t len)
{
    if (c->timed_out) snprintf(buf, len, "timed out (killed)");
    else if (c->exited) snprintf(buf, len, "exited with %d", c->code);
    else if (c->sig) snprintf(buf, len, "killed by signal %d (%s)", c->sig, strsignal(c->sig));
    else snprintf(buf, len, "unknown status");
    return buf;
}

/* Print a child's outcome and captured stderr (used on failures). */
static inline void tu_child_dump(const char *what, const tu_child *c)
{
    char d[64];
    fprintf(stderr, "---- child '%s' %s; stderr (%zu bytes):\n%s----\n",
            what, tu_child_desc(c, d, sizeof d), c->errlen, c->err);
}

/* 1 if the child exited with status 0, else dumps it and returns 0. */
static inline int tu_child_ok(const char *what, const tu_child *c)
{
    if (!c->timed_out && c->exited && c->code == 0) return 1;
    tu_child_dump(what, c);
    return 0;
}


/* A growing text buffer, and xalloc_stats_print's callback appending to it. */
struct tu_buf { char *p; size_t n; };
static inline void tu_collect(void *opaque, const char *s)
{
    struct tu_buf *b = opaque;
    size_t k = strlen(s);
    b->p = realloc(b->p, b->n + k + 1);
    memcpy(b->p + b->n, s, k + 1);
    b->n += k;
}

/* Run this program again as `/proc/<pid>/exe MODE` with XALLOC_CONF=conf,
 * under a 60 s timeout; its stderr lands in err (NUL-terminated).  Returns
 * system()'s status. */
static inline int tu_run_conf(const char *conf, const char *mode, char *err, size_t errlen)
{
    char path[] = "/tmp/xalloc_err_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return -1;
    close(fd);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "XALLOC_CONF=%s timeout 60 /proc/%d/exe %s 2>%s", conf, (int)getpid(), mode, path);
    int rc = system(cmd);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(err, 1, errlen - 1, f) : 0;
    err[n] = 0;
    if (f) fclose(f);
    unlink(path);
    return rc;
}


/* Does text parse as JSON (python3) and pass the python expression
 * `check` about it, bound to d? */
static inline int tu_json_check(const char *text, const char *check)
{
    char path[] = "/tmp/xalloc_json_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return 0;
    FILE *f = fdopen(fd, "w");
    fputs(text, f);
    fclose(f);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "python3 -c 'import json; d=json.load(open(\"%s\")); %s'", path, check);
    int rc = system(cmd);
    unlink(path);
    return rc == 0;
}

#endif
