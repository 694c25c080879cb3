/* Memory limits and pressure: the policy that turns the purger urgent.
 *
 * With a memory limit found in the process's cgroup (cgroup.h), the
 * headroom (limit - usage, the tightest over the cgroup and its
 * ancestors, memory.high counting as a limit) is read by the purger every
 * cgroup_poll_ms, and by an allocation slow path whenever the pages handed
 * out fresh since the last reading (xa_os_fresh) could have used up the
 * headroom above the threshold: growth faster than the purger's period
 * is seen before it reaches the limit.  Under cgroup_headroom_pct of the
 * limit left, the process is in urgent mode: every dirty, muzzy, cached and
 * retained page goes back at once, and quiet threads' caches are emptied;
 * it relaxes to decay when the headroom is twice the threshold again.  Under a
 * limit, memory stalls reported in the cgroup's (else the system's)
 * memory.pressure ask for the same purge: the stall time polled with the
 * headroom (psi:poll), or a PSI trigger the purger waits on (psi:trigger).
 *
 * Reading the files takes no lock: one reader at a time, the others use
 * the last reading.  No allocation, no stdio. */
#ifndef XA_PRESSURE_H
#define XA_PRESSURE_H
#include "internal.h"
#include "os.h"

/* At initialisation: find the cgroups (cgroup:auto) and read the CPU
 * limits.  Returns the number of CPUs to size from: ncpus (the affinity
 * mask's count) lowered to the CPU quota and the cpuset where they are
 * lower. */
XA_HIDDEN unsigned xa_pressure_init(unsigned ncpus);
/* The first reading of the memory limits, once memory may need returning
 * (the purger is first wanted: purge.c), so that a short program pays for
 * no more than the probe.  No lock held. */
XA_HIDDEN void xa_pressure_arm(void);

/* The slow paths' check (purge.h's safe point calls it): due when
 * xa_os_fresh() passes xa_pressure_check_at.  Call with no lock held. */
XA_HIDDEN extern size_t xa_pressure_check_at;
XA_HIDDEN void xa_pressure_check(void);

/* The purger's pass: re-read if cgroup_poll_ms passed, and look at the
 * PSI watch.  True if the pass must purge everything now (urgent mode, or
 * pressure reported). */
XA_HIDDEN bool xa_pressure_poll(uint64_t now);
/* Everything back now: caches of other threads (reclaimed) and this one,
 * huge cache, dirty and muzzy pages, retained chunks.  No lock held. */
XA_HIDDEN void xa_pressure_purge(void);
/* Is there a limit to watch (the purger then wakes every cgroup_poll_ms
 * while it has work)? */
XA_HIDDEN bool xa_pressure_limited(void);

/* The PSI watch, from the purger thread (xa_pressure_poll opens it once a
 * memory limit is seen; nothing with psi:false or without a pressure
 * file): wait up to ns for it (a plain sleep without one).  True if the
 * kernel reported pressure. */
XA_HIDDEN bool xa_pressure_wait(uint64_t ns);
/* A fork child: the trigger belongs to the parent's purger. */
XA_HIDDEN void xa_pressure_postfork_child(void);

/* Named as the statistics totals that show them (stats.h). */
#define XA_PRESSURE_STATS(X) \
  X(cgroup_version) X(cgroup_limit) X(cgroup_high) X(cgroup_usage) X(cgroup_headroom) \
  X(cgroup_cpus) X(cgroup_cpuset) X(pressure_urgent) X(pressure_entries) X(pressure_purges) \
  X(pressure_psi) X(psi_events)
struct xa_pressure_stats {
#define XA_PRESSURE_FIELD(name) uint64_t name;
  XA_PRESSURE_STATS(XA_PRESSURE_FIELD)
#undef XA_PRESSURE_FIELD
};
/* Statistics, from a fresh reading where one can be had. */
XA_HIDDEN void xa_pressure_stats(struct xa_pressure_stats *s);
#endif
