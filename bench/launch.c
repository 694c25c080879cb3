/* launch: run a command and report its rusage (statically linked helper of
 * bench/run.py).
 *
 *   launch [-t MIB] REPORT_FILE PROG [ARGS...]
 *
 * Forks, execs PROG (environment inherited, so LD_PRELOAD applies to PROG;
 * this program is static and ignores LD_PRELOAD itself), waits for it with
 * wait4 and writes one line to REPORT_FILE:
 *   exit_code term_signal wall_s user_s sys_s maxrss_kb minor_faults
 * Why not os.wait4 in Python directly: Linux folds the RSS high-water mark of
 * the process image that calls exec into the new program's ru_maxrss, so a
 * child forked from the Python runner reports at least Python's own RSS
 * (~18 MiB).  Forking from this tiny static process keeps that floor at a
 * few hundred KiB.
 *
 * -t MIB first writes MIB MiB of fresh anonymous memory, a byte per page,
 * and unmaps it (not timed).  On a virtual machine whose host takes back
 * the pages the guest frees (virtio-balloon free page reporting, as on the
 * shared 2-CPU VM), the first process to touch memory after a pause pays
 * the host's page faults, about 4 times the time of a process that
 * follows another one at once (bench/large: 2.2-2.4 s against 0.6 s), so
 * an interleaved A/B of memory-heavy workloads measured the order of the
 * runs.  Touching the memory just before the child puts every allocator
 * on pages the host has backed.  It is touched as transparent huge pages
 * where the system allows them: freed, they are whole 2 MiB blocks that
 * the child's huge pages (and its small ones) are taken from; touched as
 * 4 KiB pages, `large` still took 1.4 s. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void pretouch(size_t mib)
{
    size_t n = mib << 20, huge = (size_t)2 << 20;
    long page = sysconf(_SC_PAGESIZE);
    char *p = mmap(NULL, n + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return;           /* a best effort: the run goes on */
    char *q = (char *)(((uintptr_t)p + huge - 1) & ~(uintptr_t)(huge - 1));
    madvise(q, n, MADV_HUGEPAGE);          /* fails harmlessly without THP */
    for (size_t i = 0; i < n; i += (size_t)page) ((volatile char *)q)[i] = 1;
    munmap(p, n + huge);
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "-t") == 0) {
        char *end;
        errno = 0;
        unsigned long mib = strtoul(argv[2], &end, 10);
        if (errno || end == argv[2] || *end || argv[2][0] == '-' || mib > (SIZE_MAX >> 21)) {
            fprintf(stderr, "launch: -t %s: not a size in MiB\n", argv[2]);
            return 2;
        }
        pretouch((size_t)mib);
        argv[2] = argv[0];
        argv += 2;
        argc -= 2;
    }
    if (argc < 3) {
        static const char msg[] = "usage: launch [-t MIB] REPORT_FILE PROG [ARGS...]\n";
        ssize_t w = write(2, msg, sizeof msg - 1);
        (void)w;
        return 2;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t pid = fork();
    if (pid < 0) { perror("launch: fork"); return 2; }
    if (pid == 0) {
        execv(argv[2], argv + 2);
        fprintf(stderr, "launch: exec %s: %s\n", argv[2], strerror(errno));
        _exit(127);
    }
    int st;
    struct rusage ru;
    while (wait4(pid, &st, 0, &ru) < 0) {
        if (errno != EINTR) { perror("launch: wait4"); return 2; }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double wall = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    FILE *f = fopen(argv[1], "w");
    if (!f) { perror("launch: report file"); return 2; }
    fprintf(f, "%d %d %.6f %.6f %.6f %ld %ld\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1,
            WIFSIGNALED(st) ? WTERMSIG(st) : 0, wall,
            (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6,
            (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6, ru.ru_maxrss, ru.ru_minflt);
    return fclose(f) == 0 ? 0 : 2;
}
