/* Memory limits and pressure (policy; see pressure.h). */
#include "pressure.h"
#include "arena.h"
#include "cgroup.h"
#include "huge.h"
#include "options.h"
#include "tcache.h"
#include <string.h>

#define MiB ((size_t)1 << 20)
#define LIMIT_SHARE 16          /* of a memory limit, for each of the caches */

size_t xa_pressure_check_at = SIZE_MAX;

static int reading;                      /* a reader is in the cgroup module */
static bool limited;
static struct xa_cgroup_mem last;        /* the last reading */
static uint64_t last_read_ns;
static bool urgent;
static unsigned quota_cpus, cpuset_cpus;
static uint64_t entries, purges;

enum { PSI_OFF, PSI_TRIGGER, PSI_POLLED };
static int psi_mode;
static int psi_fd = -1;
static struct xa_os_fd_id psi_id;   /* to close it in a fork child only if still ours */
static bool psi_opened;
static uint64_t psi_events;
static bool psi_fired;                   /* reported; the next poll purges */

/* The limit the threshold is a share of: the lower of max and high. */
static uint64_t threshold(const struct xa_cgroup_mem *m) {
  uint64_t lim = m->max < m->high ? m->max : m->high;
  return lim / 100 * (uint64_t)xa_opt.cgroup_headroom_pct;
}

/* Take a reading and decide: urgent below the threshold, relaxed again
 * at twice it; the next slow-path check is due when fresh pages could
 * have used up the headroom above the threshold (at least 1 MiB apart,
 * and every quarter threshold while urgent).  False if another thread
 * reads now. */
static bool take_reading(uint64_t now) {
  if (__atomic_exchange_n(&reading, 1, __ATOMIC_ACQUIRE)) return false;
  struct xa_cgroup_mem m;
  size_t fresh = xa_os_fresh();
  if (xa_cgroup_read_mem(&m) && m.headroom != XA_CGROUP_NONE) {
    uint64_t thr = threshold(&m);
    if (!urgent && m.headroom < thr) {
      urgent = true;
      entries++;
    } else if (urgent && m.headroom >= 2 * thr) {
      urgent = false;
    }
    /* Caches scale with the limit: thread caches together and the huge
     * cache each hold at most LIMIT_SHARE of it. */
    uint64_t share = (m.max < m.high ? m.max : m.high) / LIMIT_SHARE;
    xa_tcache_limit_total(share < SIZE_MAX ? (size_t)share : SIZE_MAX);
    xa_huge_limit_cache(share < SIZE_MAX ? (size_t)share : SIZE_MAX);
    uint64_t slack = urgent ? thr / 4 : m.headroom - (m.headroom < thr ? m.headroom : thr);
    if (slack < MiB) slack = MiB;
    last = m;
    limited = true;
    __atomic_store_n(&xa_pressure_check_at, fresh + (size_t)slack, __ATOMIC_RELAXED);
  } else {
    limited = false;
    urgent = false;
    xa_tcache_limit_total(SIZE_MAX);
    xa_huge_limit_cache(SIZE_MAX);
    __atomic_store_n(&xa_pressure_check_at, SIZE_MAX, __ATOMIC_RELAXED);
  }
  last_read_ns = now;
  __atomic_store_n(&reading, 0, __ATOMIC_RELEASE);
  return true;
}

unsigned xa_pressure_init(unsigned ncpus) {
  if (xa_opt.cgroup == xa_opt_cgroup_off) return ncpus;
  xa_cgroup_probe("");
  xa_cgroup_cpus(&quota_cpus, &cpuset_cpus);
  if (quota_cpus && quota_cpus < ncpus) ncpus = quota_cpus;
  if (cpuset_cpus && cpuset_cpus < ncpus) ncpus = cpuset_cpus;
  return ncpus;
}

static int armed;

void xa_pressure_arm(void) {
  if (__atomic_load_n(&armed, __ATOMIC_RELAXED) || xa_opt.cgroup == xa_opt_cgroup_off || !xa_cgroup_version())
    return;
  __atomic_store_n(&armed, 1, __ATOMIC_RELAXED);
  take_reading(xa_os_now());
}

bool xa_pressure_limited(void) { return limited; }

void xa_pressure_purge(void) {
  xa_tcache_request_flush();        /* threads inside a call: at their next miss */
  xa_tcache_reclaim(true);
  xa_tcache_flush_all();
  xa_arena_purge_all();
  xa_arena_release_spares_all();
  xa_tcache_trim_recycled(0, 0);
  xa_huge_cache_decay(UINT64_MAX);    /* after the arenas: their chunks come back to it */
  __atomic_add_fetch(&purges, 1, __ATOMIC_RELAXED);
}

void xa_pressure_check(void) {
  if (xa_os_fresh() < __atomic_load_n(&xa_pressure_check_at, __ATOMIC_RELAXED)) return;
  if (take_reading(xa_os_now()) && urgent) xa_pressure_purge();
}

/* The stall time the pressure file reports ("some ... total=USEC"), 0 if
 * it cannot be read. */
static uint64_t psi_total(void) {
  char buf[256];
  const char *f = xa_cgroup_pressure_file();
  if (!f || !xa_os_read_file(f, buf, sizeof buf)) return 0;
  const char *p = strstr(buf, "total=");
  if (!p) return 0;
  uint64_t v = 0;
  for (p += sizeof "total=" - 1; *p >= '0' && *p <= '9'; p++) v = v * 10 + (uint64_t)(*p - '0');
  return v;
}

/* Polled: some task stalled on memory for PSI_POLL_SHARE or more of the
 * time since the last look. */
#define PSI_POLL_SHARE 10        /* percent */
static uint64_t psi_last_total, psi_last_ns;
static bool psi_polled_pressure(uint64_t now) {
  uint64_t total = psi_total(), prev = psi_last_total, since = now - psi_last_ns;
  psi_last_total = total;
  psi_last_ns = now;
  return prev && total > prev && (total - prev) * 1000u * 100u >= since * PSI_POLL_SHARE;
}

/* The PSI watch, set up by the purger once a memory limit is seen.
 * psi:poll reads the pressure file's total stall time at each poll; psi:trigger
 * asks the kernel for a trigger, a descriptor held for the process's
 * life (numbered XA_OS_FD_MIN or higher, close-on-exec) that wakes the
 * purger at once.  Programs that list their descriptors see it (CPython's
 * test_subprocess fails on it), hence not the default. */
static void watch_open(void) {
  psi_opened = true;
  const char *f = xa_cgroup_pressure_file();
  if (xa_opt.psi == xa_opt_psi_off || !f) return;
  if (xa_opt.psi == xa_opt_psi_poll) {
    psi_mode = PSI_POLLED;
    psi_last_total = psi_total();
    psi_last_ns = xa_os_now();
    return;
  }
  /* 100 ms of stalls within 1 s; kernels that give unprivileged
   * processes triggers only over whole 2 s windows get that. */
  psi_fd = xa_os_psi_trigger(f, "some 100000 1000000");
  if (psi_fd < 0) psi_fd = xa_os_psi_trigger(f, "some 200000 2000000");
  if (psi_fd >= 0 && !xa_os_fd_id(psi_fd, &psi_id)) {
    xa_os_close(psi_fd);
    psi_fd = -1;
  }
  psi_mode = psi_fd >= 0 ? PSI_TRIGGER : PSI_POLLED;
}

bool xa_pressure_wait(uint64_t ns) {
  if (psi_mode != PSI_TRIGGER) {
    xa_os_sleep(ns);
    return false;
  }
  int r = xa_os_wait_pri(psi_fd, ns);
  if (r < 0) {                 /* the program closed or reused our descriptor */
    psi_fd = -1;
    psi_mode = PSI_POLLED;
    xa_os_sleep(ns);
    return false;
  }
  if (r > 0) {
    psi_events++;
    psi_fired = true;
  }
  return r > 0;
}

bool xa_pressure_poll(uint64_t now) {
  if (!psi_opened && limited) watch_open();
  bool purge = psi_fired;
  psi_fired = false;
  if (xa_opt.cgroup != xa_opt_cgroup_off &&
      now - last_read_ns >= (uint64_t)xa_opt.cgroup_poll_ms * 1000000u && limited)
    purge = take_reading(now) && urgent;
  if (psi_mode == PSI_POLLED && psi_polled_pressure(now)) {
    psi_events++;
    purge = true;
  }
  return purge || (limited && urgent);
}

void xa_pressure_postfork_child(void) {
  /* The descriptor is the parent's trigger: the child's purger, when it
   * starts, opens its own. */
  if (xa_os_fd_is(psi_fd, &psi_id)) xa_os_close(psi_fd);   /* not a number the program reused */
  psi_fd = -1;
  psi_mode = PSI_OFF;
  psi_opened = false;
  reading = 0;
}

void xa_pressure_stats(struct xa_pressure_stats *s) {
  xa_pressure_arm();
  if (limited) take_reading(xa_os_now());
  memset(s, 0, sizeof *s);
  s->cgroup_version = (uint64_t)xa_cgroup_version();
  if (limited) {
    s->cgroup_limit = last.max == XA_CGROUP_NONE ? 0 : last.max;
    s->cgroup_high = last.high == XA_CGROUP_NONE ? 0 : last.high;
    s->cgroup_usage = last.usage;
    s->cgroup_headroom = last.headroom;
  }
  s->cgroup_cpus = quota_cpus;
  s->cgroup_cpuset = cpuset_cpus;
  s->pressure_urgent = limited && urgent;
  s->pressure_entries = entries;
  s->pressure_purges = __atomic_load_n(&purges, __ATOMIC_RELAXED);
  s->pressure_psi = (uint64_t)psi_mode;
  s->psi_events = psi_events;
}
