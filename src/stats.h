/* Statistics: gathered on request from the arenas' counters (which are
 * updated under the arena locks on refill, flush and large/huge calls:
 * nothing is counted on the fast path).  One X-macro list defines the
 * process totals, the printer's rows and the xalloc_ctl names. */
#ifndef XA_STATS_H
#define XA_STATS_H
#include "internal.h"
#include "sizeclass.h"

#define XA_STATS_TOTALS(X) \
  X(allocated,       "bytes in live blocks (small objects out of slabs, thread caches included; large; huge)") \
  X(small_allocated, "bytes of small objects out of slabs") \
  X(large_allocated, "bytes of live large blocks") \
  X(huge_allocated,  "bytes of live huge blocks") \
  X(huge_count,      "live huge blocks") \
  X(huge_cached,     "bytes of freed huge-block pages still resident, kept for reuse") \
  X(allocated_peak,  "the most bytes in live blocks (allocated) at once, to within 1 MiB per arena") \
  X(active,          "bytes of pages in slabs, large and huge blocks") \
  X(active_peak,     "the most active bytes at once, to within 1 MiB per arena") \
  X(dirty,           "bytes of free pages not yet returned to the OS") \
  X(muzzy,           "bytes of free pages perhaps resident: MADV_FREE'd (purge:free), from slabs that emptied while being purged, or found under madvise by a fork child") \
  X(retained,        "bytes of wholly free chunks kept mapped for reuse") \
  X(mapped,          "bytes mapped from the OS (chunks, huge blocks, metadata)") \
  X(mapped_peak,     "the most bytes ever mapped from the OS at once") \
  X(resident,        "resident set size of the whole process (from /proc/self/statm)") \
  X(resident_peak,   "peak resident set size of the whole process, as the kernel keeps it (VmHWM)") \
  X(anon_huge,       "bytes of the process's anonymous memory on transparent huge pages (smaps_rollup)") \
  X(pss,             "proportional set size of the process (smaps_rollup Pss): a page mapped at two addresses, as meshing's aliases are, counts once") \
  X(metadata,        "bytes of metadata mappings (arenas, thread caches, tables, huge blocks' tables and free-extent records)") \
  X(purged,          "bytes returned to the OS with madvise since start") \
  X(purge_runs,      "madvise calls made by purging") \
  X(purge_locked,    "bytes of purges the kernel refused (ranges with pages locked by mlock or mlockall): given back with MADV_DONTNEED_LOCKED, or zeroed and kept (under mlockall with MCL_FUTURE, on kernels before 5.18, shared memory)") \
  X(peak_purged,     "bytes of dirty free pages purged by the peak budgets: fresh pages were taken while more were dirty than the live bytes' peak less the live bytes, plus an eighth of the peak, plus huge_cache_bytes where the huge-block cache's pages count too") \
  X(decay_scale,     "dirty_decay_ms is multiplied by this now (1-8): purged pages soon faulted back lengthen it") \
  X(lock_contended,  "arena lock acquisitions that had to wait") \
  X(tcache_reclaimed, "objects taken back from quiet threads' caches (purger, malloc_trim)") \
  X(tcache_budget,   "bytes all thread caches may hold: tcache_total_bytes, or 1/16 of a memory limit if lower") \
  X(tcache_active,   "thread caches sharing tcache_budget: live ones, less those emptied while their threads were quiet") \
  X(huge_budget,     "bytes of freed huge-block pages kept: huge_cache_bytes, or 1/16 of a memory limit if lower") \
  X(huge_shards,     "shards of the huge blocks, each with its own lock: one per arena, at most 16") \
  X(huge_contended,  "huge-shard lock acquisitions that had to wait") \
  X(huge_chunks,     "bytes of the arenas' chunks carved from the huge blocks' regions (chunk_regions), counted in mapped once, with the regions") \
  X(huge_gathers,    "huge blocks made of freed blocks' resident pages moved together (mremap), as no freed block was big enough, ever") \
  X(huge_gathered,   "bytes of resident pages those moves reused (page faults saved: this over the page size)") \
  X(mesh_on,         "1 if meshing runs (mesh:true, and the kernel allowed a memfd and userfaultfd write protection; 0 again if the program closed the file's descriptor and it could not be reopened)") \
  X(mesh_meshes,     "slabs meshed onto another slab's pages, ever") \
  X(mesh_aliases,    "slabs on another slab's pages now") \
  X(mesh_reclaimed,  "bytes of physical pages meshing has freed, ever (the moved slabs' resident pages)") \
  X(mesh_copied,     "bytes of live objects meshing has copied, ever") \
  X(mesh_ns,         "nanoseconds spent meshing (protect, copy, remap, punch)") \
  X(mesh_unmeshes,   "meshed slabs given their own pages back when their last object went") \
  X(mesh_failed,     "mesh steps a system call refused (nothing changed)") \
  X(mesh_fork_copies, "fork children that copied the meshable heap") \
  X(mesh_fork_takes, "fork children that took the heap file their parent left (mesh_fork:take)") \
  X(mesh_reopens,    "meshing's descriptors (its file, its userfaultfd) found closed or replaced by the program, and opened again") \
  X(mesh_adopted,    "chunks moved from private memory into meshing's file when meshing first picked one of their slabs") \
  X(mesh_adopt_copied, "bytes of pages those moves copied into the file") \
  X(mesh_file,       "bytes of pages meshing's file holds now: the meshable heap's memory, which resident counts once per address that maps a page (an alias's page twice) and not at all while none does (a chunk moved into the file, before it is touched); 0 once the program closed the file's descriptor and it could not be reopened") \
  X(narenas,         "arenas") \
  X(cgroup_version,  "memory cgroup found: 1 or 2 (its version), 0 none (or cgroup:off)") \
  X(cgroup_limit,    "tightest memory limit (memory.max, memory.limit_in_bytes) of the cgroup and its ancestors; 0 none") \
  X(cgroup_high,     "tightest memory.high (v2) or soft limit (v1); 0 none") \
  X(cgroup_usage,    "usage of the cgroup with the tightest limit, as last read") \
  X(cgroup_headroom, "least bytes left under a limit (max or high), as last read; 0 without a limit") \
  X(cgroup_cpus,     "CPUs the cgroup's CPU quota allows, rounded up; 0 no quota") \
  X(cgroup_cpuset, "CPUs in the cgroup's cpuset; 0 unknown") \
  X(pressure_urgent, "1 while purging is urgent (headroom under cgroup_headroom_pct)") \
  X(pressure_entries, "times urgent mode was entered") \
  X(pressure_purges, "urgent purges: every free page, cache and retained chunk given back at once") \
  X(pressure_psi,    "memory stall watch: 1 PSI trigger, 2 polled stall time, 0 none (no limit seen yet, or psi:off)") \
  X(psi_events, "times the kernel reported memory pressure") \
  X(purger_running,  "1 if the background purger thread runs") \
  X(prof_samples,    "heap profiler (prof:true): allocations sampled, ever") \
  X(prof_live,       "heap profiler: sampled blocks not yet freed") \
  X(prof_live_bytes, "heap profiler: live bytes as the samples estimate them") \
  X(prof_peak_bytes, "heap profiler: the most prof_live_bytes ever") \
  X(prof_stacks,     "heap profiler: distinct call stacks seen") \
  X(prof_dumps,      "heap profiler: profiles written")

#define XA_STATS_ARENA(X) \
  X(mapped,          "bytes of chunks") \
  X(mapped_peak,     "the most bytes of chunks ever") \
  X(small_allocated, "bytes of small objects out of slabs") \
  X(large_allocated, "bytes of live large blocks") \
  X(active,          "bytes of pages in slabs and large blocks") \
  X(dirty,           "bytes of dirty free pages") \
  X(muzzy,           "bytes of muzzy free pages") \
  X(retained,        "bytes of wholly free chunks kept") \
  X(purged,          "bytes purged") \
  X(lock_contended,  "lock acquisitions that had to wait") \
  X(large_requests,  "large allocations served")

#define XA_STATS_CLASS(X) \
  X(size,     "object size") \
  X(nmalloc,  "allocations (malloc, calloc, realloc, new, aligned ...) served from this class, ever") \
  X(nfree,    "frees of this class's objects: nmalloc less the live ones") \
  X(live,     "objects allocated and not freed: out of slabs and not in a thread cache, or sampled by the heap profiler (pages of their own)") \
  X(cached,   "free objects in thread caches") \
  X(curobjs,  "objects out of slabs now: live and cached") \
  X(refills,  "objects the arenas handed to thread caches (or to callers, without a cache), ever") \
  X(slabs,    "slabs now")

struct xa_stats_totals {
#define XA_STAT_FIELD(name, doc) uint64_t name;
  XA_STATS_TOTALS(XA_STAT_FIELD)
};
struct xa_stats_arena { XA_STATS_ARENA(XA_STAT_FIELD) };
struct xa_stats_class { XA_STATS_CLASS(XA_STAT_FIELD) };
#undef XA_STAT_FIELD

XA_HIDDEN void xa_stats_totals(struct xa_stats_totals *t);
XA_HIDDEN void xa_stats_arena(unsigned i, struct xa_stats_arena *s);
/* Class c summed over all arenas and thread caches; all classes at once.
 * The counts of running threads' caches are racy reads: a figure may be
 * a few allocations behind. */
XA_HIDDEN void xa_stats_class(unsigned c, struct xa_stats_class *s);
XA_HIDDEN void xa_stats_classes(struct xa_stats_class s[XA_NSMALL]);

/* Print through cb (NULL: stderr) the statistics and/or the explain report
 * (explain.h; in JSON, a member "explain" of the statistics' object when
 * both); json selects the format. */
enum { XA_REPORT_STATS = 1, XA_REPORT_EXPLAIN = 2 };
XA_HIDDEN void xa_stats_print(void (*cb)(void *, const char *), void *opaque, bool json, unsigned what);
/* stats_print:true: arrange for the statistics to be printed at exit (to
 * stats_file, or to stderr, kept now in case the program closes it).
 * From the library's constructor only: atexit takes a lock that glibc
 * holds while it calls calloc. */
XA_HIDDEN void xa_stats_at_load(void);
#endif
