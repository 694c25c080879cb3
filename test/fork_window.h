/* A fork in the middle of a purge, on demand (unit_arena.c, unit_huge.c).
 * A purge drops its lock around madvise; a fork in that window leaves the
 * child a span, slab or extent whose purge has no thread of the child's to
 * finish it, unless the purging thread is the one that forked (a signal
 * handler's fork).  This file interposes madvise for the test program (the
 * library is linked in statically, so its calls land here): once armed,
 * the first madvise of a range holding the target page waits while a fork
 * happens, in one of two ways:
 *   FW_OTHER_THREAD: a helper thread forks while the purging thread waits
 *     inside madvise; the child runs the test's check and exits with its
 *     result (the purging thread does not exist there);
 *   FW_THIS_THREAD: the purging thread forks itself; in the child it
 *     returns from madvise and finishes its purge, and the test calls
 *     fw_child_exit() after the purge, which runs the check and exits.
 * The parent waits for the child, then does the madvise. */
#ifndef XA_FORK_WINDOW_H
#define XA_FORK_WINDOW_H
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

enum fw_mode { FW_OTHER_THREAD, FW_THIS_THREAD };

static uintptr_t fw_target;        /* armed: a madvise of a range holding this forks */
static enum fw_mode fw_mode;
static int (*fw_check)(void);      /* the child's check: 0 if its copy is sound */
static void (*fw_before)(void);    /* FW_OTHER_THREAD: the helper runs this first
                                      (the purging thread waits in madvise); set
                                      before fw_arm, cleared by fw_expect_child_ok */
static int fw_status = -1;         /* the child's wait status; -1 none yet */
static bool fw_in_child;           /* FW_THIS_THREAD: this process is the child */

static pthread_mutex_t fw_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t fw_cv = PTHREAD_COND_INITIALIZER;
static int fw_step;                /* FW_OTHER_THREAD: 1 fork now, 2 the child is done */
static pthread_t fw_helper;
static bool fw_helper_on;

/* Fork; the child runs in_child, the parent waits for the child and keeps
 * its status.  A child that hangs, in fork's handlers or after, is killed
 * after 30 s (its status then says so: the test fails). */
static void fw_fork_child(void (*in_child)(void)) {
  pid_t pid = fork();
  if (pid == 0) {
    in_child();
    return;
  }
  int st = -1;
  struct timespec t0, now;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (bool killed = false; pid > 0;) {
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid || (r < 0 && errno != EINTR)) break;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (!killed && now.tv_sec - t0.tv_sec >= 30) killed = kill(pid, SIGKILL) == 0;
    usleep(10000);
  }
  __atomic_store_n(&fw_status, pid > 0 ? st : -1, __ATOMIC_RELEASE);
}

static void fw_check_and_exit(void) { _exit(fw_check()); }
static void fw_mark_child(void) { fw_in_child = true; }

static void fw_set_step(int step) {
  pthread_mutex_lock(&fw_mu);
  fw_step = step;
  pthread_cond_broadcast(&fw_cv);
  pthread_mutex_unlock(&fw_mu);
}

static void fw_wait_step(int step) {
  pthread_mutex_lock(&fw_mu);
  while (fw_step != step) pthread_cond_wait(&fw_cv, &fw_mu);
  pthread_mutex_unlock(&fw_mu);
}

static void *fw_helper_main(void *arg) {
  (void)arg;
  pthread_mutex_lock(&fw_mu);
  while (fw_step == 0) pthread_cond_wait(&fw_cv, &fw_mu);
  bool go = fw_step == 1;                    /* else disarmed unreached */
  pthread_mutex_unlock(&fw_mu);
  if (go && fw_before) fw_before();
  if (go) fw_fork_child(fw_check_and_exit);
  fw_set_step(2);
  return NULL;
}

int madvise(void *addr, size_t len, int advice) {
  uintptr_t t = __atomic_load_n(&fw_target, __ATOMIC_ACQUIRE), a = (uintptr_t)addr;
  if (t && t >= a && t - a < len &&
      __atomic_compare_exchange_n(&fw_target, &t, 0, false, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
    if (fw_mode == FW_OTHER_THREAD) {
      fw_set_step(1);
      fw_wait_step(2);
    } else {
      fw_fork_child(fw_mark_child);
    }
  }
  return (int)syscall(SYS_madvise, addr, len, advice);
}

/* Arm for a madvise of a range holding p, with check as the child's. */
static void fw_arm(const void *p, int (*check)(void), enum fw_mode mode) {
  fw_check = check;
  fw_mode = mode;
  fw_status = -1;
  fw_step = 0;
  fw_helper_on = mode == FW_OTHER_THREAD;
  if (fw_helper_on) assert_int_equal(pthread_create(&fw_helper, NULL, fw_helper_main, NULL), 0);
  __atomic_store_n(&fw_target, (uintptr_t)p, __ATOMIC_RELEASE);
}

/* FW_THIS_THREAD, after the purge: in the child, check and exit. */
static void fw_child_exit(void) {
  if (fw_in_child) fw_check_and_exit();
}

/* Did the armed fork happen, and did its child find its copy sound?
 * Disarms in any case. */
static void fw_expect_child_ok(void) {
  uintptr_t left = __atomic_exchange_n(&fw_target, 0, __ATOMIC_ACQ_REL);
  fw_before = NULL;
  if (fw_helper_on) {
    if (left) fw_set_step(-1);               /* never reached: the helper quits */
    pthread_join(fw_helper, NULL);
    fw_helper_on = false;
  }
  if (left) fail_msg("no purge reached the page %#lx", (unsigned long)left);
  int st = __atomic_load_n(&fw_status, __ATOMIC_ACQUIRE);
  if (!WIFEXITED(st)) fail_msg("the fork child did not exit (status %#x)", st);
  if (WEXITSTATUS(st)) fail_msg("the fork child found its copy of the allocator unsound (check %d)", WEXITSTATUS(st));
}
#endif
