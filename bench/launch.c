/* launch: run a command and report its rusage (statically linked helper of
 * bench/run.py).
 *
 *   launch REPORT_FILE PROG [ARGS...]
 *
 * Forks, execs PROG (environment inherited, so LD_PRELOAD applies to PROG;
 * this program is static and ignores LD_PRELOAD itself), waits for it with
 * wait4 and writes one line to REPORT_FILE:
 *   exit_code term_signal wall_s user_s sys_s maxrss_kb minor_faults
 * Why not os.wait4 in Python directly: Linux folds the RSS high-water mark of
 * the process image that calls exec into the new program's ru_maxrss, so a
 * child forked from the Python runner reports at least Python's own RSS
 * (~18 MiB).  Forking from this tiny static process keeps that floor at a
 * few hundred KiB. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 3) {
        static const char msg[] = "usage: launch REPORT_FILE PROG [ARGS...]\n";
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
