/* Unit tests of the cgroup reader (src/cgroup.c) against fake trees: each
 * test writes proc/self/cgroup, proc/self/mountinfo and the cgroup files
 * under a temporary root and probes it.  Cgroup v2 with nested limits,
 * v1 in a container's view, a hybrid host, escaped mount points, "max",
 * missing files and garbage; and the value and CPU-list parsers. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "cgroup.h"

static char root[256];

/* Write text to root/rel, making the directories on the way. */
static void put(const char *rel, const char *text) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", root, rel);
  for (char *s = path + strlen(root) + 1; *s; s++) {
    if (*s != '/') continue;
    *s = 0;
    mkdir(path, 0755);
    *s = '/';
  }
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

static int setup(void **state) {
  (void)state;
  snprintf(root, sizeof root, "/tmp/xa-cgroup-test.XXXXXX");
  return mkdtemp(root) ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
  return system(cmd) == 0 ? 0 : -1;
}

#define MIB (1ull << 20)

/* cgroup v2, limit two levels up, memory.high one level up, a CPU quota
 * of 1.5 CPUs and a cpuset of 5, pressure in the cgroup's own file. */
static void test_v2_nested(void **state) {
  (void)state;
  put("proc/self/cgroup", "0::/kubepods/pod1/ctr\n");
  put("proc/self/mountinfo",
      "22 1 0:21 / /proc rw,nosuid - proc proc rw\n"
      "30 25 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n");
  put("sys/fs/cgroup/kubepods/memory.max", "104857600\n");
  put("sys/fs/cgroup/kubepods/memory.high", "max\n");
  put("sys/fs/cgroup/kubepods/memory.current", "52428800\n");
  put("sys/fs/cgroup/kubepods/cpu.max", "max 100000\n");
  put("sys/fs/cgroup/kubepods/pod1/memory.max", "max\n");
  put("sys/fs/cgroup/kubepods/pod1/memory.high", "94371840\n");
  put("sys/fs/cgroup/kubepods/pod1/memory.current", "41943040\n");
  put("sys/fs/cgroup/kubepods/pod1/cpu.max", "150000 100000\n");
  put("sys/fs/cgroup/kubepods/pod1/ctr/memory.max", "max\n");
  put("sys/fs/cgroup/kubepods/pod1/ctr/memory.high", "max\n");
  put("sys/fs/cgroup/kubepods/pod1/ctr/memory.current", "40000000\n");
  put("sys/fs/cgroup/kubepods/pod1/ctr/cpuset.cpus.effective", "0-3,6\n");
  put("sys/fs/cgroup/kubepods/pod1/ctr/memory.pressure", "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n");
  assert_int_equal(xa_cgroup_probe(root), 2);
  char want[512];
  snprintf(want, sizeof want, "%s/sys/fs/cgroup/kubepods/pod1/ctr", root);
  assert_string_equal(xa_cgroup_mem_dir(), want);
  struct xa_cgroup_mem m;
  assert_true(xa_cgroup_read_mem(&m));
  assert_int_equal(m.max, 100 * MIB);
  assert_int_equal(m.usage, 50 * MIB);           /* the limited level's usage */
  assert_int_equal(m.high, 90 * MIB);
  assert_int_equal(m.headroom, 50 * MIB);        /* high: 90 - 40; max: 100 - 50 */
  unsigned q, cs;
  xa_cgroup_cpus(&q, &cs);
  assert_int_equal(q, 2);                        /* 1.5 CPUs, rounded up */
  assert_int_equal(cs, 5);
  snprintf(want, sizeof want, "%s/sys/fs/cgroup/kubepods/pod1/ctr/memory.pressure", root);
  assert_string_equal(xa_cgroup_pressure_file(), want);
  /* the headroom follows usage; usage over the limit leaves none */
  put("sys/fs/cgroup/kubepods/memory.current", "110000000\n");
  assert_true(xa_cgroup_read_mem(&m));
  assert_int_equal(m.headroom, 0);
}

/* cgroup v1 as a container sees it: the memory hierarchy mounted with the
 * container's cgroup as its root, "cpu,cpuacct" joined (a comma in the
 * mount point), v1's "no limit" number, a v2 mount beside it (hybrid),
 * whose pressure file wins over the system's. */
static void test_v1_container_hybrid(void **state) {
  (void)state;
  put("proc/self/cgroup",
      "12:pids:/docker/abc\n"
      "4:memory:/docker/abc\n"
      "3:cpuset:/docker/abc\n"
      "2:cpu,cpuacct:/docker/abc\n"
      "1:name=systemd:/docker/abc\n"
      "0::/docker/abc\n");
  put("proc/self/mountinfo",
      "31 23 0:28 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n"
      "35 31 0:32 /docker/abc /sys/fs/cgroup/memory ro,nosuid,nodev,noexec,relatime master:9 - cgroup cgroup rw,memory\n"
      "36 31 0:33 /docker/abc /sys/fs/cgroup/cpuset ro,nosuid - cgroup cgroup rw,cpuset\n"
      "37 31 0:34 / /sys/fs/cgroup/cpu,cpuacct ro,nosuid - cgroup cgroup rw,cpu,cpuacct\n"
      "41 31 0:38 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw\n");
  put("sys/fs/cgroup/memory/memory.limit_in_bytes", "268435456\n");
  put("sys/fs/cgroup/memory/memory.soft_limit_in_bytes", "9223372036854771712\n");
  put("sys/fs/cgroup/memory/memory.usage_in_bytes", "16777216\n");
  put("sys/fs/cgroup/cpu,cpuacct/docker/memory.limit_in_bytes", "1\n");   /* not memory: ignored */
  put("sys/fs/cgroup/cpu,cpuacct/docker/cpu.cfs_quota_us", "-1\n");
  put("sys/fs/cgroup/cpu,cpuacct/docker/cpu.cfs_period_us", "100000\n");
  put("sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "50000\n");
  put("sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us", "100000\n");
  put("sys/fs/cgroup/cpuset/cpuset.effective_cpus", "2,5\n");
  put("sys/fs/cgroup/unified/docker/abc/memory.pressure", "some avg10=0.00\n");
  put("proc/pressure/memory", "some avg10=0.00\n");
  assert_int_equal(xa_cgroup_probe(root), 1);
  char want[512];
  snprintf(want, sizeof want, "%s/sys/fs/cgroup/memory", root);
  assert_string_equal(xa_cgroup_mem_dir(), want);
  struct xa_cgroup_mem m;
  assert_true(xa_cgroup_read_mem(&m));
  assert_int_equal(m.max, 256 * MIB);
  assert_int_equal(m.high, XA_CGROUP_NONE);
  assert_int_equal(m.usage, 16 * MIB);
  assert_int_equal(m.headroom, 240 * MIB);
  unsigned q, cs;
  xa_cgroup_cpus(&q, &cs);
  assert_int_equal(q, 1);
  assert_int_equal(cs, 2);
  snprintf(want, sizeof want, "%s/sys/fs/cgroup/unified/docker/abc/memory.pressure", root);
  assert_string_equal(xa_cgroup_pressure_file(), want);
}

/* A host without limits: v1 memory at the root (the "no limit" number),
 * a mount point with an escaped space, the system's pressure file. */
static void test_host_escapes_no_limit(void **state) {
  (void)state;
  put("proc/self/cgroup", "4:memory:/user.slice\n0::/user.slice\n");
  put("proc/self/mountinfo",
      "35 31 0:32 / /sys/fs/my\\040cgroups/memory rw - cgroup cgroup rw,memory\n");
  put("sys/fs/my cgroups/memory/memory.limit_in_bytes", "9223372036854771712\n");
  put("sys/fs/my cgroups/memory/memory.usage_in_bytes", "1000\n");
  put("sys/fs/my cgroups/memory/user.slice/memory.limit_in_bytes", "9223372036854771712\n");
  put("sys/fs/my cgroups/memory/user.slice/memory.usage_in_bytes", "1000\n");
  put("proc/pressure/memory", "some avg10=0.00\n");
  assert_int_equal(xa_cgroup_probe(root), 1);
  char want[512];
  snprintf(want, sizeof want, "%s/sys/fs/my cgroups/memory/user.slice", root);
  assert_string_equal(xa_cgroup_mem_dir(), want);
  struct xa_cgroup_mem m;
  assert_true(xa_cgroup_read_mem(&m));
  assert_int_equal(m.max, XA_CGROUP_NONE);
  assert_int_equal(m.headroom, XA_CGROUP_NONE);
  snprintf(want, sizeof want, "%s/proc/pressure/memory", root);
  assert_string_equal(xa_cgroup_pressure_file(), want);
}

/* Broken inputs: no files at all; garbage in the files; a cgroup line
 * whose hierarchy is not mounted.  Nothing is found, nothing crashes. */
static void test_missing_and_garbage(void **state) {
  (void)state;
  assert_int_equal(xa_cgroup_probe(root), 0);          /* empty root */
  struct xa_cgroup_mem m;
  assert_false(xa_cgroup_read_mem(&m));
  assert_null(xa_cgroup_pressure_file());
  unsigned q, cs;
  xa_cgroup_cpus(&q, &cs);
  assert_int_equal(q, 0);
  assert_int_equal(cs, 0);

  put("proc/self/cgroup", "garbage\n::\n4:memory\n0::/a\n");
  put("proc/self/mountinfo", "nonsense\n1 2 3\n35 31 0:32 / /cg rw - cgroup2\n");
  assert_int_equal(xa_cgroup_probe(root), 0);          /* the mount line lacks fields */
  put("proc/self/mountinfo", "35 31 0:32 / /cg rw - cgroup2 cgroup2 rw\n");
  put("cg/a/memory.max", "lots\n");
  put("cg/a/memory.high", "-5\n");
  put("cg/a/memory.current", "12\n");
  put("cg/a/cpu.max", "garbage\n");
  put("cg/a/cpuset.cpus.effective", "3-1\n");
  assert_int_equal(xa_cgroup_probe(root), 2);
  assert_true(xa_cgroup_read_mem(&m));
  assert_int_equal(m.max, XA_CGROUP_NONE);
  assert_int_equal(m.headroom, XA_CGROUP_NONE);
  xa_cgroup_cpus(&q, &cs);
  assert_int_equal(q, 0);
  assert_int_equal(cs, 0);
  /* a very long line in mountinfo is skipped, the next one still read */
  char *big = malloc(10000);
  memset(big, 'x', 9998);
  big[9998] = '\n';
  big[9999] = 0;
  char *text = malloc(10200);
  snprintf(text, 10200, "%s35 31 0:32 / /cg rw - cgroup2 cgroup2 rw\n", big);
  put("proc/self/mountinfo", text);
  put("cg/a/memory.max", "4096\n");
  assert_int_equal(xa_cgroup_probe(root), 2);
  assert_true(xa_cgroup_read_mem(&m));
  assert_int_equal(m.max, 4096);
  assert_int_equal(m.headroom, 4096 - 12);
  free(big);
  free(text);
}

static void test_parsers(void **state) {
  (void)state;
  uint64_t v;
  assert_true(xa_cgroup_parse_value("123\n", &v) && v == 123);
  assert_true(xa_cgroup_parse_value("max\n", &v) && v == XA_CGROUP_NONE);
  assert_true(xa_cgroup_parse_value("9223372036854771712", &v) && v == XA_CGROUP_NONE);
  assert_false(xa_cgroup_parse_value("-1\n", &v));
  assert_false(xa_cgroup_parse_value("12ab", &v));
  assert_false(xa_cgroup_parse_value("", &v));
  assert_false(xa_cgroup_parse_value("99999999999999999999999", &v));
  assert_int_equal(xa_cgroup_parse_cpulist("0-3,8,10-11\n"), 7);
  assert_int_equal(xa_cgroup_parse_cpulist("5"), 1);
  assert_int_equal(xa_cgroup_parse_cpulist("3-1"), 0);
  assert_int_equal(xa_cgroup_parse_cpulist("a-b"), 0);
  assert_int_equal(xa_cgroup_parse_cpulist(""), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_v2_nested, setup, teardown),
      cmocka_unit_test_setup_teardown(test_v1_container_hybrid, setup, teardown),
      cmocka_unit_test_setup_teardown(test_host_escapes_no_limit, setup, teardown),
      cmocka_unit_test_setup_teardown(test_missing_and_garbage, setup, teardown),
      cmocka_unit_test(test_parsers),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
