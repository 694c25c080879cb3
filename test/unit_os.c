/* The OS layer: a descriptor xalloc holds open for a moment (a /proc
 * file being read) when another thread forks is closed in the child, so
 * the child's lowest free descriptor numbers are what the program
 * expects (GLib's gsubprocess fd-conflation test failed once on a copy
 * of one); descriptors xalloc closed itself are not touched again. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>
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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fork_closes_transient_fds),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
