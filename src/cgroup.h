/* The container the process runs in: its memory cgroup's limits and
 * usage, its CPU quota and cpuset, and where its memory pressure (PSI) is
 * reported.  Found through /proc/self/cgroup and /proc/self/mountinfo,
 * cgroup v1, v2 and hybrid hierarchies alike (mechanism only: what the
 * purger does with it is in purge.c).  No allocation, no stdio: files are
 * read with read(2) into buffers of this module.
 *
 * Not thread-safe: xa_cgroup_probe runs at initialisation (under the
 * init lock) and the readers from one thread at a time (the purger, or
 * the one slow path that won the check; see purge.c). */
#ifndef XA_CGROUP_H
#define XA_CGROUP_H
#include "internal.h"

#define XA_CGROUP_NONE UINT64_MAX    /* no limit */

struct xa_cgroup_mem {
  uint64_t max;          /* tightest hard limit on the path (memory.max,
                            memory.limit_in_bytes), or XA_CGROUP_NONE */
  uint64_t high;         /* tightest memory.high (v2) or soft limit (v1) */
  uint64_t usage;        /* usage of the cgroup whose limit is tightest */
  uint64_t headroom;     /* least (limit - usage) over the limited levels
                            (hard or high), XA_CGROUP_NONE without limits */
};

/* Find the process's cgroups.  root prefixes every path read ("" for the
 * real system; a test passes a fake tree with proc/self/cgroup,
 * proc/self/mountinfo and the mount points under it).  Returns the memory
 * controller's version: 0 (none found), 1 or 2. */
XA_HIDDEN int xa_cgroup_probe(const char *root);
/* The memory controller's version found by the last probe (0, 1, 2). */
XA_HIDDEN int xa_cgroup_version(void);
/* Read the memory limits and usage; false if no memory cgroup is known. */
XA_HIDDEN bool xa_cgroup_read_mem(struct xa_cgroup_mem *m);
/* CPUs the cgroup lets the process use: the CPU quota (cpu.max,
 * cpu.cfs_quota_us / cfs_period_us) rounded up, and the number of CPUs in
 * its cpuset; each 0 where there is no such limit. */
XA_HIDDEN void xa_cgroup_cpus(unsigned *quota_cpus, unsigned *cpuset_cpus);
/* The file that reports the cgroup's memory pressure: the cgroup v2
 * directory's memory.pressure where it exists, else the system's
 * /proc/pressure/memory (under root); NULL if neither exists. */
XA_HIDDEN const char *xa_cgroup_pressure_file(void);
/* The memory cgroup's directory (statistics), "" if none. */
XA_HIDDEN const char *xa_cgroup_mem_dir(void);

/* Parsers, exposed for the unit tests.  A value file: a decimal number,
 * or "max" (XA_CGROUP_NONE); false on anything else.  A CPU list
 * ("0-3,8,10-11"): its number of CPUs, 0 if malformed. */
XA_HIDDEN bool xa_cgroup_parse_value(const char *s, uint64_t *v);
XA_HIDDEN unsigned xa_cgroup_parse_cpulist(const char *s);
#endif
