#!/bin/sh
# cgroup.sh: xalloc in real memory cgroups (root; cgroup v1's memory
# controller, or v2 with the memory controller).  Each run gets a cgroup
# of its own, removed afterwards; every run has a timeout.
#  (a) no limit: the cgroup is found, no limit reported, no urgent mode;
#  (b) bench/oscillate (live memory swinging 3..40 MiB in a new size each
#      cycle) finishes under a 128 MiB limit, where glibc also fits, and
#      xalloc reports the limit it runs under and holds its thread caches
#      and huge cache to 1/16 of it each;
#  (c) urgent mode is entered as usage nears the limit and left once the
#      memory is back: a program fills 80 MiB under a 128 MiB limit with
#      cgroup_headroom_pct:40, frees it, and within 5 s xalloc_ctl says
#      pressure_urgent is 0 with pressure_entries and pressure_purges >= 1,
#      and the cgroup's usage is down to under 24 MiB;
#  (d) cgroup:off reads nothing;
#  (f) under a limit the stall watch is polled (psi:poll), a PSI trigger
#      (psi:trigger; polled where the kernel refuses one) or off;
#  (e) with a CPU quota of half a CPU, 1 CPU is read and one arena made
#      (v1 cpu controller).
# A machine without root or a writable memory cgroup prints skip: lines.
set -u
. "${SRC:?SRC must be set}/test/lib/common.sh"
tu_setup cgroup

v1=/sys/fs/cgroup/memory
if [ "$(id -u)" != 0 ]; then
    echo "skip: not root: cannot create cgroups"; exit 0
elif [ -w "$v1" ] && [ -f "$v1/memory.limit_in_bytes" ]; then
    base=$v1; limit_file=memory.limit_in_bytes; peak_file=memory.max_usage_in_bytes; usage_file=memory.usage_in_bytes
elif [ -f /sys/fs/cgroup/cgroup.controllers ] && grep -qw memory /sys/fs/cgroup/cgroup.controllers; then
    base=/sys/fs/cgroup/xalloc-test
    mkdir -p "$base" && echo +memory >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null
    echo +memory >"$base/cgroup.subtree_control" 2>/dev/null
    limit_file=memory.max; peak_file=memory.peak; usage_file=memory.current
else
    echo "skip: no writable memory cgroup (v1 memory controller or v2 with memory)"; exit 0
fi

$CC -O2 -pthread -o "$W/oscillate" "$SRC/bench/oscillate.c" || { fail "cannot build oscillate"; exit 1; }
cat >"$W/fill.c" <<'EOF'
/* Fill 80 MiB in 64 KiB blocks, free it, then wait (up to 5 s) for
 * urgent mode to end; print the counters. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xalloc.h>
static unsigned long long stat(const char *name) {
  unsigned long long v = 0;
  size_t n = sizeof v;
  if (xalloc_ctl(name, &v, &n, NULL, 0) != 0) { fprintf(stderr, "no %s\n", name); exit(2); }
  return v;
}
int main(void) {
  enum { N = 1280 };
  static char *p[N];
  for (int i = 0; i < N; i++) { p[i] = malloc(65536); if (!p[i]) return 3; memset(p[i], i, 65536); }
  unsigned long long entries = stat("stats.pressure_entries");
  for (int i = 0; i < N; i++) free(p[i]);
  struct timespec ts = {0, 50 * 1000 * 1000};
  int waited = 0;
  while (stat("stats.pressure_urgent") && waited < 100) { nanosleep(&ts, NULL); waited++; }
  printf("limit %llu entries_full %llu entries %llu purges %llu urgent %llu usage %llu\n",
         stat("cgroup.limit"), entries, stat("stats.pressure_entries"), stat("stats.pressure_purges"),
         stat("stats.pressure_urgent"), stat("cgroup.usage"));
  return 0;
}
EOF
$CC -O2 -I"$SRC/include" -o "$W/fill" "$W/fill.c" -L"$LIBDIR" -Wl,-rpath,"$LIBDIR" -lxalloc || { fail "cannot build fill"; exit 1; }

n=0
# run_in MIB CMD...: run CMD (preloaded with xalloc, XALLOC_CONF as set)
# in a fresh cgroup limited to MIB MiB (0: no limit); sets rc and peak.
run_in() {
    mib=$1; shift
    n=$((n + 1))
    cg=$base/xalloc-test-$$-$n
    mkdir "$cg" || { fail "cannot create $cg"; rc=1; peak=0; return; }
    [ "$mib" -gt 0 ] && echo $((mib << 20)) >"$cg/$limit_file"
    [ -f "$cg/memory.swap.max" ] && echo 0 >"$cg/memory.swap.max"
    LD_PRELOAD=$XALLOC_SO timeout 120 sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$cg" "$@" \
        >"$W/out.$n" 2>"$W/err.$n"
    rc=$?
    peak=$(cat "$cg/$peak_file" 2>/dev/null || echo 0)
    for i in 1 2 3 4 5 6 7 8 9 10; do rmdir "$cg" 2>/dev/null && break; sleep 0.2; done
}
json() { sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p" "$2" | head -1; }

# (a)
XALLOC_CONF=stats_print:true,stats_format:json run_in 0 "$W/oscillate" 1 0.1
if [ $rc -eq 0 ] && [ "$(json cgroup_limit "$W/err.$n")" = 0 ] && [ "$(json pressure_entries "$W/err.$n")" = 0 ] &&
   [ "$(json cgroup_version "$W/err.$n")" -ge 1 ] && [ "$(json tcache_budget "$W/err.$n")" = $((32 << 20)) ] &&
   [ "$(json huge_budget "$W/err.$n")" = $((16 << 20)) ]; then
    ok "no limit: cgroup v$(json cgroup_version "$W/err.$n") found, no limit, no urgent mode, default cache budgets"
else
    fail "no limit: rc $rc, $(grep -o '"cgroup_[a-z]*":[0-9]*' "$W/err.$n" | tr '\n' ' ')"
fi

# (b)
XALLOC_CONF=stats_print:true,stats_format:json run_in 128 "$W/oscillate" 1 1
lim=$(json cgroup_limit "$W/err.$n")
tb=$(json tcache_budget "$W/err.$n") hb=$(json huge_budget "$W/err.$n")
if [ $rc -eq 0 ] && [ "$lim" = $((128 << 20)) ] && [ "$tb" = $((8 << 20)) ] && [ "$hb" = $((8 << 20)) ]; then
    ok "oscillate finished under 128 MiB (peak $((peak >> 20)) MiB, urgent mode entered $(json pressure_entries "$W/err.$n") times; cache budgets 1/16 of the limit)"
else
    fail "oscillate under 128 MiB: rc $rc (137: OOM-killed), limit read $lim, peak $peak, budgets $tb $hb"
fi

# (c)
XALLOC_CONF=cgroup_headroom_pct:40 run_in 128 "$W/fill"
set -- $(cat "$W/out.$n")
if [ $rc -eq 0 ] && [ "$#" -eq 12 ] && [ "$6" -ge 1 ] && [ "$8" -ge 1 ] && [ "${10}" -eq 0 ] && [ "${12}" -lt $((24 << 20)) ]; then
    ok "urgent mode entered ($6 times, $8 purges) and left; usage back to $((${12} >> 20)) MiB"
else
    fail "urgent mode: rc $rc, $(cat "$W/out.$n" "$W/err.$n")"
fi

# (d) (in a roomy cgroup: without the limit xalloc purges on its timer
# alone, and this run peaks at ~98 MiB, which a slow purger under load
# may push past a tight limit)
XALLOC_CONF=cgroup:off,stats_print:true,stats_format:json run_in 512 "$W/oscillate" 1 0.1
if [ $rc -eq 0 ] && [ "$(json cgroup_version "$W/err.$n")" = 0 ] && [ "$(json cgroup_limit "$W/err.$n")" = 0 ]; then
    ok "cgroup:off: nothing read"
else
    fail "cgroup:off: rc $rc, $(grep -o '"cgroup_[a-z]*":[0-9]*' "$W/err.$n" | tr '\n' ' ')"
fi

# (f) the stall watch under a limit: polled by default, a trigger (or,
# where the kernel refuses one, polled) with psi:trigger, none with psi:off
for mode in poll:2 trigger:12 off:0; do
    m=${mode%%:*} want=${mode#*:}
    XALLOC_CONF=psi:$m,stats_print:true,stats_format:json run_in 512 "$W/oscillate" 1 0.3
    got=$(json pressure_psi "$W/err.$n")
    case "$want" in *"$got"*) [ $rc -eq 0 ] && [ -n "$got" ] && ok "psi:$m: stall watch $got" ||
                                  fail "psi:$m: rc $rc, pressure_psi '$got'";;
                    *) fail "psi:$m: pressure_psi $got, want one of $want";; esac
done

# (e) a CPU quota of half a CPU: xalloc sees 1 and makes one arena
cpu=/sys/fs/cgroup/cpu
if [ -w "$cpu" ] && [ -f "$cpu/cpu.cfs_quota_us" ]; then
    cg=$cpu/xalloc-test-$$-cpu
    mkdir "$cg" && echo 100000 >"$cg/cpu.cfs_period_us" && echo 50000 >"$cg/cpu.cfs_quota_us"
    XALLOC_CONF=stats_print:true,stats_format:json LD_PRELOAD=$XALLOC_SO timeout 60 \
        sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$cg" "$W/oscillate" 1 0.05 >/dev/null 2>"$W/err.cpu"
    rc=$?
    rmdir "$cg" 2>/dev/null
    q=$(json cgroup_cpus "$W/err.cpu"); na=$(json narenas "$W/err.cpu"); ncpu=$(nproc --all)
    if [ $rc -eq 0 ] && [ "$q" = 1 ] && [ "$na" = 1 ]; then
        ok "CPU quota of half a CPU read as $q; $na arena (of $ncpu CPUs)"
    else
        fail "CPU quota: rc $rc, cgroup_cpus $q, narenas $na (want 1 and 1)"
    fi
else
    echo "skip: no writable cgroup v1 cpu controller for the quota check"
fi

if [ "$fails" -ne 0 ]; then
    echo "cgroup.sh: $fails check(s) FAILED"
    exit 1
fi
echo "cgroup.sh: all checks passed"
exit 0
