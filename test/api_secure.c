/* api_secure: hardened mode (XALLOC_CONF=secure:true) and the guard pages.
 *
 * Options are read once at initialisation, so each check re-executes this
 * program with XALLOC_CONF set and a mode argument; the child reports
 * through its exit status (0 = every check held) or dies of the signal the
 * test expects.  The glibc build skips everything (no such mode there).
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

#ifdef XA_TEST_GLIBC
#define XALLOC_ONLY() skip()
#else
#define XALLOC_ONLY() ((void)0)
#endif

static char self[4096];

/* Run `self mode` with XALLOC_CONF=conf; returns the wait status.  stdout
 * of the child goes to out (if not NULL). */
static int run_self(const char *conf, const char *mode, char *out, size_t outlen)
{
    int fd[2];
    if (pipe(fd) != 0) fail_msg("pipe");
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd[1], 1);
        close(fd[0]);
        if (conf) setenv("XALLOC_CONF", conf, 1);
        else unsetenv("XALLOC_CONF");
        execl(self, self, mode, (char *)NULL);
        _exit(127);
    }
    close(fd[1]);
    size_t got = 0;
    char sink[256];
    for (;;) {
        char *dst = out && got + 1 < outlen ? out + got : sink;
        size_t room = out && got + 1 < outlen ? outlen - got - 1 : sizeof sink;
        ssize_t n = read(fd[0], dst, room);
        if (n <= 0) break;
        if (dst != sink) got += (size_t)n;
    }
    if (out) out[got] = 0;
    close(fd[0]);
    int st;
    waitpid(pid, &st, 0);
    return st;
}

static void expect_exit0(const char *conf, const char *mode)
{
    int st = run_self(conf, mode, NULL, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail_msg("%s under XALLOC_CONF=%s: %s %d", mode, conf ? conf : "(none)",
                 WIFEXITED(st) ? "exit" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
}

static void expect_signal(const char *conf, const char *mode, int sig)
{
    int st = run_self(conf, mode, NULL, 0);
    if (!WIFSIGNALED(st) || WTERMSIG(st) != sig)
        fail_msg("%s under XALLOC_CONF=%s: want signal %d, got %s %d", mode, conf ? conf : "(none)", sig,
                 WIFEXITED(st) ? "exit" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
}

/* ---- children ------------------------------------------------------------ */

static void *opq(void *p)
{
    __asm__ volatile("" : "+r"(p));
    return p;
}

/* Freed small and large blocks read as zero (their memory stays mapped, so
 * peeking is safe here); a block allocated again starts clean too. */
static int child_zero(void)
{
    static const size_t sizes[] = {16, 100, 1000, 30000, 100000, 200000};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        size_t n = sizes[i];
        unsigned char *p = malloc(n);
        if (!p) return 1;
        /* a neighbour keeps the slab or chunk alive, so p stays mapped */
        void *keep = malloc(n);
        memset(p, 0xab, n);
        free(p);
        volatile unsigned char *v = opq(p);
        for (size_t j = 0; j < n; j++)
            if (v[j] != 0) return 2;
        free(keep);
    }
    return 0;
}

/* Print the allocation order of 2000 64-byte objects as offsets from the
 * lowest, and the share of steps that go up. */
static int child_order(void)
{
    enum { N = 2000 };
    static char *v[N];
    for (int i = 0; i < N; i++)
        if (!(v[i] = malloc(64))) return 1;
    int up = 0;
    uint64_t h = 1469598103934665603ull;
    for (int i = 1; i < N; i++) {
        up += v[i] > v[i - 1];
        h = (h ^ (uint64_t)(v[i] - v[0])) * 1099511628211ull;
    }
    printf("%d %llx\n", up * 100 / (N - 1), (unsigned long long)h);
    return 0;
}

/* One byte past a huge block's last page is a guard page (an
 * inaccessible mapping, not just a hole that happens to be there), also
 * for a size that would ask for whole huge pages without secure mode. */
static int child_huge_overflow(void)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE), n = (9 << 20) + 1, u = (n + pg - 1) & ~(pg - 1);
    char *p = malloc(n);
    if (!p || malloc_usable_size(p) != u) return 1;
    if (strcmp(tu_perms_at((uintptr_t)p + u), "---p") != 0) return 2;
    memset(p, 1, u);
    ((volatile char *)opq(p))[u] = 1;   /* must fault */
    return 0;
}

/* A freed huge block is unmapped at once (no cache): a late read faults. */
static int child_huge_use_after_free(void)
{
    char *p = malloc(8 << 20);
    if (!p) return 1;
    memset(p, 1, 8 << 20);
    free(p);
    return ((volatile char *)opq(p))[4096];   /* must fault */
}

/* Double free is caught at the second call in both modes. */
static int child_double_free(void)
{
    void *p = malloc(40);
    free(p);
    free(opq(p));
    return 0;
}

/* So is realloc of a freed small block, to a size that fits it (which
 * would otherwise return it as it is) or to one that moves it: in these
 * modes free() leaves no mark, and realloc asks the slab's bitmap. */
static int child_realloc_after_free(size_t n)
{
    void *p = malloc(64);
    free(p);
    p = realloc(opq(p), n);
    return 0;
}
static int child_realloc_after_free_fits(void) { return child_realloc_after_free(60); }
static int child_realloc_after_free_moves(void) { return child_realloc_after_free(200); }

/* Everything else keeps working in secure mode: realloc of huge blocks
 * (no mremap: copy), aligned allocation, calloc, usable sizes. */
static int child_api(void)
{
    char *p = malloc(3 << 20);
    if (!p) return 1;
    memset(p, 7, 3 << 20);
    p = realloc(p, 9 << 20);
    if (!p || p[(3 << 20) - 1] != 7) return 2;
    p = realloc(p, 2 << 20);
    if (!p || p[(2 << 20) - 1] != 7) return 3;
    free(p);
    void *a;
    if (posix_memalign(&a, 4096, 100) != 0 || ((uintptr_t)a & 4095)) return 4;
    free(a);
    unsigned char *z = calloc(1000, 10);
    for (int i = 0; z && i < 10000; i++)
        if (z[i]) return 5;
    free(z);
    for (int i = 0; i < 100000; i++) {
        void *q = malloc((size_t)(i * 37) % 5000);
        if (!q || malloc_usable_size(q) < (size_t)(i * 37) % 5000) return 6;
        free(q);
    }
    return 0;
}

/* ---- tests ----------------------------------------------------------------- */

static void test_zero_on_free(void **s) { XALLOC_ONLY(); expect_exit0("secure:true", "zero"); }

static void test_random_order(void **s)
{
    XALLOC_ONLY();
    char a[128], b[128], d[128];
    int st1 = run_self("secure:true", "order", a, sizeof a);
    int st2 = run_self("secure:true", "order", b, sizeof b);
    int st3 = run_self(NULL, "order", d, sizeof d);
    assert_true(WIFEXITED(st1) && WEXITSTATUS(st1) == 0 && WIFEXITED(st2) && WEXITSTATUS(st2) == 0);
    assert_true(WIFEXITED(st3) && WEXITSTATUS(st3) == 0);
    int up1 = atoi(a), up2 = atoi(b), upd = atoi(d);
    print_message("ascending steps: secure %d%% and %d%%, default %d%%\n", up1, up2, upd);
    /* default mode hands a fresh slab out in address order */
    assert_true(upd >= 90);
    /* secure mode: about half the steps go up, and two runs differ */
    assert_true(up1 > 20 && up1 < 80 && up2 > 20 && up2 < 80);
    assert_string_not_equal(a, b);
}

static void test_huge_guard(void **s)
{
    XALLOC_ONLY();
    expect_signal("secure:true", "huge_overflow", SIGSEGV);
}

static void test_huge_unmapped_on_free(void **s)
{
    XALLOC_ONLY();
    expect_signal("secure:true", "huge_uaf", SIGSEGV);
}

static void test_double_free(void **s)
{
    XALLOC_ONLY();
    expect_signal("secure:true", "double_free", SIGABRT);
    expect_signal(NULL, "double_free", SIGABRT);
}

static void test_realloc_after_free_without_caches(void **s)
{
    XALLOC_ONLY();
    static const char *const confs[] = {"secure:true", "tcache:false", "junk:true"};
    for (size_t i = 0; i < sizeof confs / sizeof *confs; i++) {
        expect_signal(confs[i], "realloc_after_free_fits", SIGABRT);
        expect_signal(confs[i], "realloc_after_free_moves", SIGABRT);
    }
}

static void test_api_in_secure_mode(void **s) { XALLOC_ONLY(); expect_exit0("secure:true", "api"); }

int main(int argc, char **argv)
{
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) self[n] = 0;
    if (argc > 1) {
        static const struct { const char *name; int (*fn)(void); } modes[] = {
            {"zero", child_zero}, {"order", child_order}, {"huge_overflow", child_huge_overflow},
            {"huge_uaf", child_huge_use_after_free}, {"double_free", child_double_free}, {"api", child_api},
            {"realloc_after_free_fits", child_realloc_after_free_fits},
            {"realloc_after_free_moves", child_realloc_after_free_moves},
        };
        for (size_t i = 0; i < sizeof modes / sizeof *modes; i++)
            if (!strcmp(argv[1], modes[i].name)) return modes[i].fn();
        return 126;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_zero_on_free),
        cmocka_unit_test(test_random_order),
        cmocka_unit_test(test_huge_guard),
        cmocka_unit_test(test_huge_unmapped_on_free),
        cmocka_unit_test(test_double_free),
        cmocka_unit_test(test_realloc_after_free_without_caches),
        cmocka_unit_test(test_api_in_secure_mode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
