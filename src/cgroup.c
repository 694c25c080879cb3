/* Finding and reading the process's cgroups (see cgroup.h).
 *
 * /proc/self/cgroup names, per hierarchy, the process's cgroup path:
 * "ID:controllers:path", where cgroup v2's line is "0::path" and a v1
 * hierarchy's lists its controllers ("4:memory:/a/b", "2:cpu,cpuacct:/a").
 * /proc/self/mountinfo says where each hierarchy is mounted and which part
 * of it the mount shows (its root: "/" on a host, the container's own
 * cgroup inside one that does not use a cgroup namespace).  The cgroup's
 * directory is the mount point plus the path below that root.  On a hybrid
 * system (v1 controllers beside a v2 mount without them) each controller
 * is read where it is attached: memory from v1 if a v1 hierarchy has it.
 *
 * Limits apply from every ancestor up to the mount point (a container's
 * limit usually sits a level or two above the process's own cgroup), so
 * the readers walk the levels and keep the tightest. */
#include "cgroup.h"
#include "os.h"
#include <string.h>

#define PATH_CAP 512          /* longer cgroup paths are not followed */
#define LEVELS_MAX 16

/* One controller's cgroup directory and its ancestors' (prefixes of it). */
struct hier {
  int version;                       /* 0: not found */
  char dir[PATH_CAP];
  unsigned nlevels;                  /* level 0 is dir itself */
  uint16_t level_len[LEVELS_MAX];    /* dir[0..len) is level i's directory */
};

static struct hier mem, cpu, cpuset;
static char pressure[PATH_CAP];
static char v2_dir[PATH_CAP];

/* ---- parsers ---------------------------------------------------------- */

bool xa_cgroup_parse_value(const char *s, uint64_t *v) {
  while (*s == ' ') s++;
  if (strncmp(s, "max", 3) == 0 && (s[3] == 0 || s[3] == '\n' || s[3] == ' ')) {
    *v = XA_CGROUP_NONE;
    return true;
  }
  if (*s < '0' || *s > '9') return false;
  uint64_t x = 0;
  for (; *s >= '0' && *s <= '9'; s++) {
    if (x > (UINT64_MAX - 9) / 10) return false;
    x = x * 10 + (uint64_t)(*s - '0');
  }
  if (*s && *s != '\n' && *s != ' ') return false;
  /* cgroup v1 writes "no limit" as LONG_MAX rounded down to a page */
  *v = x >= ((uint64_t)1 << 62) ? XA_CGROUP_NONE : x;
  return true;
}

static const char *parse_uint(const char *s, unsigned long *v) {
  if (*s < '0' || *s > '9') return NULL;
  unsigned long x = 0;
  for (; *s >= '0' && *s <= '9'; s++) {
    x = x * 10 + (unsigned long)(*s - '0');
    if (x > 1u << 20) return NULL;
  }
  *v = x;
  return s;
}

unsigned xa_cgroup_parse_cpulist(const char *s) {
  unsigned n = 0;
  while (*s == ' ') s++;
  while (*s && *s != '\n') {
    unsigned long lo, hi;
    if (!(s = parse_uint(s, &lo))) return 0;
    hi = lo;
    if (*s == '-' && (!(s = parse_uint(s + 1, &hi)) || hi < lo)) return 0;
    n += (unsigned)(hi - lo + 1);
    if (*s == ',') s++;
    else if (*s && *s != '\n') return 0;
  }
  return n;
}

/* ---- files ------------------------------------------------------------ */

static char buf[4096] XA_BSS_TABLE __attribute__((aligned(4096)));   /* file contents; one reader at a time */

/* Is word w one of the comma-separated words of list[0..n)? */
static bool has_word(const char *list, size_t n, const char *w) {
  size_t wn = strlen(w);
  for (size_t i = 0; i < n;) {
    size_t j = i;
    while (j < n && list[j] != ',') j++;
    if (j - i == wn && memcmp(list + i, w, wn) == 0) return true;
    i = j + 1;
  }
  return false;
}

/* Copy a path of n bytes into out (PATH_CAP), decoding mountinfo's octal
 * escapes (\040 is a space); false if it does not fit. */
static bool copy_path(char *out, const char *s, size_t n) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (c == '\\' && i + 3 < n && s[i + 1] >= '0' && s[i + 1] <= '3') {
      c = (char)((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
      i += 3;
    }
    if (o + 1 >= PATH_CAP) return false;
    out[o++] = c;
  }
  out[o] = 0;
  return true;
}

static bool join(char *out, const char *a, const char *b) {
  size_t an = strlen(a), bn = strlen(b);
  if (an + bn + 1 > PATH_CAP) return false;
  memcpy(out, a, an);
  memcpy(out + an, b, bn + 1);
  return true;
}

/* What the two files say about one controller (or cgroup v2). */
struct want {
  const char *ctrl;              /* v1 controller name; NULL: cgroup v2 */
  char path[PATH_CAP];           /* from /proc/self/cgroup; "" if absent */
  char mnt_root[PATH_CAP], mnt_point[PATH_CAP];
  bool mounted;
};
enum { W_V2, W_MEM, W_CPU, W_CPUSET, W_N };
/* Scratch of xa_cgroup_probe (6 KiB): mapped for the probe and unmapped
 * after it, so it stays no memory of the process. */
static struct want *want;

static void scan_cgroup_line(const char *l, size_t n) {
  const char *c1 = memchr(l, ':', n);
  if (!c1) return;
  const char *c2 = memchr(c1 + 1, ':', n - (size_t)(c1 + 1 - l));
  if (!c2) return;
  const char *ctrls = c1 + 1, *path = c2 + 1;
  size_t cn = (size_t)(c2 - ctrls), pn = n - (size_t)(path - l);
  for (unsigned w = 0; w < W_N; w++) {
    bool match = want[w].ctrl ? has_word(ctrls, cn, want[w].ctrl) : cn == 0 && l[0] == '0' && c1 == l + 1;
    if (match && !copy_path(want[w].path, path, pn)) want[w].path[0] = 0;
  }
}

/* The mount's root is a prefix of the cgroup path (at a '/' boundary). */
static bool root_covers(const char *root, const char *path) {
  size_t rn = strlen(root);
  if (rn == 1 && root[0] == '/') return true;
  return strncmp(root, path, rn) == 0 && (path[rn] == 0 || path[rn] == '/');
}

/* "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS" */
static void scan_mount_line(const char *l, size_t n) {
  const char *f[6];
  size_t fl[6], k = 0, i = 0;
  while (k < 6 && i < n) {
    while (i < n && l[i] == ' ') i++;
    size_t s = i;
    while (i < n && l[i] != ' ') i++;
    f[k] = l + s;
    fl[k++] = i - s;
  }
  if (k < 6) return;
  /* the fields after the separator " - " */
  const char *sep = NULL;
  for (size_t j = (size_t)(f[5] - l); j + 2 < n; j++)
    if (l[j] == ' ' && l[j + 1] == '-' && l[j + 2] == ' ') { sep = l + j + 3; break; }
  if (!sep) return;
  size_t rest = n - (size_t)(sep - l);
  const char *fs = sep, *sp = memchr(fs, ' ', rest);
  if (!sp) return;
  size_t fsn = (size_t)(sp - fs);
  const char *src = sp + 1, *sp2 = memchr(src, ' ', rest - fsn - 1);
  const char *opts = sp2 ? sp2 + 1 : "";
  size_t on = sp2 ? n - (size_t)(opts - l) : 0;
  bool v2 = fsn == 7 && memcmp(fs, "cgroup2", 7) == 0, v1 = fsn == 6 && memcmp(fs, "cgroup", 6) == 0;
  if (!v1 && !v2) return;
  for (unsigned w = 0; w < W_N; w++) {
    struct want *x = &want[w];
    if (v2 != !x->ctrl || (v1 && !has_word(opts, on, x->ctrl))) continue;
    char root[PATH_CAP];
    if (!copy_path(root, f[3], fl[3])) continue;
    /* A mount showing the process's cgroup wins over one that does not. */
    if (x->mounted && !(x->path[0] && root_covers(root, x->path) && !root_covers(x->mnt_root, x->path))) continue;
    if (!copy_path(x->mnt_point, f[4], fl[4])) continue;
    memcpy(x->mnt_root, root, PATH_CAP);
    x->mounted = true;
  }
}

/* Call fn on every line of the file at path (lines longer than the buffer
 * are skipped). */
static bool each_line(const char *path, void (*fn)(const char *l, size_t n)) {
  int fd = xa_os_open_read(path);
  if (fd < 0) return false;
  size_t have = 0;
  bool skipping = false;
  for (;;) {
    long got = xa_os_read(fd, buf + have, sizeof buf - have);
    if (got <= 0) break;
    have += (size_t)got;
    size_t start = 0;
    for (size_t i = 0; i < have; i++) {
      if (buf[i] != '\n') continue;
      if (!skipping) fn(buf + start, i - start);
      skipping = false;
      start = i + 1;
    }
    if (start == 0 && have == sizeof buf) {   /* one line fills the buffer */
      skipping = true;
      have = 0;
      continue;
    }
    memmove(buf, buf + start, have - start);
    have -= start;
  }
  if (have && !skipping) fn(buf, have);       /* a last line without '\n' */
  xa_os_close(fd);
  return true;
}

/* h's directory: [root] + mount point + the path below the mount's root. */
static void settle(struct hier *h, const struct want *x, const char *root, int version) {
  memset(h, 0, sizeof *h);
  if (!x->path[0] || !x->mounted) return;
  const char *below = "";
  if (root_covers(x->mnt_root, x->path) && !(x->mnt_root[0] == '/' && x->mnt_root[1] == 0))
    below = x->path + strlen(x->mnt_root);
  else if (root_covers(x->mnt_root, x->path))
    below = x->path;
  /* else: the cgroup is outside what the mount shows (a cgroup
   * namespace's view): the mount point is the best we can read */
  if (below[0] == '/' && below[1] == 0) below = "";
  char top[PATH_CAP];
  if (!join(top, root, x->mnt_point) || !join(h->dir, top, below)) return;
  size_t tn = strlen(top), n = strlen(h->dir);
  while (n > tn && h->dir[n - 1] == '/') h->dir[--n] = 0;   /* no trailing '/' */
  /* levels: the directory, then each parent up to the mount point */
  for (size_t i = n; h->nlevels < LEVELS_MAX; i--) {
    if (i == n || h->dir[i] == '/') h->level_len[h->nlevels++] = (uint16_t)i;
    if (i <= tn) break;
  }
  h->version = version;
}

static int mem_version;

int xa_cgroup_probe(const char *root) {
  char path[PATH_CAP];
  mem_version = 0;
  memset(&mem, 0, sizeof mem);
  memset(&cpu, 0, sizeof cpu);
  memset(&cpuset, 0, sizeof cpuset);
  pressure[0] = v2_dir[0] = 0;
  /* No memory for the scratch: no cgroup, the system's pressure file. */
  want = xa_os_map(W_N * sizeof *want, xa_os_page);     /* zeroed */
  if (want) {
    want[W_MEM].ctrl = "memory";
    want[W_CPU].ctrl = "cpu";
    want[W_CPUSET].ctrl = "cpuset";
    if (join(path, root, "/proc/self/cgroup") && each_line(path, scan_cgroup_line) &&
        join(path, root, "/proc/self/mountinfo"))
      each_line(path, scan_mount_line);
    struct hier v2;
    settle(&v2, &want[W_V2], root, 2);
    if (v2.version) memcpy(v2_dir, v2.dir, PATH_CAP);
    settle(&mem, &want[W_MEM], root, 1);
    if (!mem.version) mem = v2;
    settle(&cpu, &want[W_CPU], root, 1);
    if (!cpu.version) cpu = v2;
    settle(&cpuset, &want[W_CPUSET], root, 1);
    if (!cpuset.version) cpuset = v2;
    xa_os_unmap(want, W_N * sizeof *want);
    want = NULL;
  }
  mem_version = mem.version;
  /* Pressure: the v2 cgroup's own file (it exists on hybrid systems too,
   * in the unified mount), else the system's. */
  if (v2_dir[0] && join(path, v2_dir, "/memory.pressure") && xa_os_file_exists(path))
    memcpy(pressure, path, PATH_CAP);
  else if (join(path, root, "/proc/pressure/memory") && xa_os_file_exists(path))
    memcpy(pressure, path, PATH_CAP);
  return mem_version;
}

int xa_cgroup_version(void) { return mem_version; }
const char *xa_cgroup_pressure_file(void) { return pressure[0] ? pressure : NULL; }
const char *xa_cgroup_mem_dir(void) { return mem.version ? mem.dir : ""; }

/* Read file `name` of level i of h into buf; false if it cannot be read. */
static bool read_level(const struct hier *h, unsigned i, const char *name) {
  char path[PATH_CAP];
  size_t dn = h->level_len[i], nn = strlen(name);
  if (dn + 1 + nn + 1 > PATH_CAP) return false;
  memcpy(path, h->dir, dn);
  path[dn] = '/';
  memcpy(path + dn + 1, name, nn + 1);
  return xa_os_read_file(path, buf, sizeof buf) > 0;
}

static uint64_t level_value(const struct hier *h, unsigned i, const char *name) {
  uint64_t v;
  return read_level(h, i, name) && xa_cgroup_parse_value(buf, &v) ? v : XA_CGROUP_NONE;
}

bool xa_cgroup_read_mem(struct xa_cgroup_mem *m) {
  m->max = m->high = m->usage = m->headroom = XA_CGROUP_NONE;
  if (!mem.version) return false;
  bool v2 = mem.version == 2;
  for (unsigned i = 0; i < mem.nlevels; i++) {
    uint64_t max = level_value(&mem, i, v2 ? "memory.max" : "memory.limit_in_bytes");
    uint64_t high = level_value(&mem, i, v2 ? "memory.high" : "memory.soft_limit_in_bytes");
    if (max == XA_CGROUP_NONE && high == XA_CGROUP_NONE) continue;
    uint64_t usage = level_value(&mem, i, v2 ? "memory.current" : "memory.usage_in_bytes");
    if (usage == XA_CGROUP_NONE) continue;
    uint64_t lim = max < high ? max : high;
    uint64_t room = usage < lim ? lim - usage : 0;
    if (room < m->headroom) m->headroom = room;
    if (high < m->high) m->high = high;
    if (max < m->max) {
      m->max = max;
      m->usage = usage;
    }
    if (m->usage == XA_CGROUP_NONE) m->usage = usage;
  }
  return true;
}

void xa_cgroup_cpus(unsigned *quota_cpus, unsigned *cpuset_cpus) {
  *quota_cpus = *cpuset_cpus = 0;
  for (unsigned i = 0; i < cpu.nlevels; i++) {
    uint64_t quota, period;
    if (cpu.version == 2) {
      /* "QUOTA PERIOD" or "max PERIOD" */
      if (!read_level(&cpu, i, "cpu.max") || !xa_cgroup_parse_value(buf, &quota)) continue;
      const char *sp = strchr(buf, ' ');
      if (!sp || !xa_cgroup_parse_value(sp + 1, &period)) continue;
    } else {
      /* cfs_quota_us is -1 without a quota: not a number to the parser */
      quota = level_value(&cpu, i, "cpu.cfs_quota_us");
      period = level_value(&cpu, i, "cpu.cfs_period_us");
    }
    if (quota == XA_CGROUP_NONE || period == XA_CGROUP_NONE || period == 0) continue;
    uint64_t n = (quota + period - 1) / period;
    if (n == 0) n = 1;
    if (n < 1u << 20 && (*quota_cpus == 0 || n < *quota_cpus)) *quota_cpus = (unsigned)n;
  }
  /* The innermost level that reports its effective CPUs. */
  for (unsigned i = 0; i < cpuset.nlevels; i++) {
    if (read_level(&cpuset, i, cpuset.version == 2 ? "cpuset.cpus.effective" : "cpuset.effective_cpus")) {
      *cpuset_cpus = xa_cgroup_parse_cpulist(buf);
      if (*cpuset_cpus) break;
    }
  }
}
