/* The OS contract: the only module that talks to the kernel about memory,
 * the environment and the terminal.  Every function keeps errno as it was
 * (a successful malloc never changes errno) unless it says otherwise. */
#ifndef XA_OS_H
#define XA_OS_H
#include "internal.h"

/* Page size and its log2, read from the auxiliary vector once. */
XA_HIDDEN extern size_t xa_os_page;
XA_HIDDEN extern unsigned xa_os_page_shift;
XA_HIDDEN void xa_os_init(void);

/* Map size bytes (page multiple, > 0) of zeroed read-write memory aligned to
 * `align` (a power of two >= page).  NULL on failure (errno untouched). */
XA_HIDDEN void *xa_os_map(size_t size, size_t align);
/* Unmap [p, p+size), both page aligned. */
XA_HIDDEN void xa_os_unmap(void *p, size_t size);
/* Reserve size bytes (page multiple) for a table that is mostly never
 * touched: read-only zero pages (a read faults in the shared zero page,
 * a huge one where the kernel can), so no commit charge in any overcommit
 * mode and nothing copied by fork; left out of core dumps; not counted as
 * mapped heap.  The kernel's mlockall(MCL_CURRENT) without MCL_ONFAULT
 * maps all of it in (huge zero pages, each with a page table the kernel
 * sets aside: 4 KiB per 2 MiB); xalloc's own spares it (mlock.c).  NULL on
 * failure. */
XA_HIDDEN void *xa_os_reserve(size_t size);
XA_HIDDEN void xa_os_release(void *p, size_t size);
/* Whether a new mapping is resident at once: mlockall(MCL_FUTURE) without
 * MCL_ONFAULT is in force, so address space reserved ahead of use costs
 * memory (one page mapped, asked about with mincore, and unmapped). */
XA_HIDDEN bool xa_os_maps_populated(void);
/* Its last answer (for callers that hold a lock); mlock.c sets it after
 * each mlockall, a fork child clears it (munlockall is not xalloc's: it
 * stays until the next probe). */
XA_HIDDEN extern bool xa_os_populating;
/* Make [p, p+size) of such a table (page aligned) writable, or read-only
 * and zero again (its pages given back).  false: the kernel refused
 * (commit limit, mappings), nothing changed. */
XA_HIDDEN bool xa_os_table_write(void *p, size_t size, bool on);
/* Move the pages of [from, from+size) to [to, to+size) (a mapping of
 * ours): page tables move, no byte is copied.  XA_MOVE_KEPT: from stays
 * mapped and reads as zero; XA_MOVE_HOLE: moved, but from could not be
 * mapped again (another mapping took the range); XA_MOVE_FAILED: nothing
 * changed. */
enum { XA_MOVE_FAILED, XA_MOVE_KEPT, XA_MOVE_HOLE };
XA_HIDDEN int xa_os_move_pages(void *from, size_t size, void *to);
/* The address-space limit (RLIMIT_AS), or SIZE_MAX if there is none. */
XA_HIDDEN size_t xa_os_as_limit(void);
/* The limit on writable private mappings: the lower of RLIMIT_AS and
 * RLIMIT_DATA (since Linux 4.7 such mappings count against both, reserved
 * address space included; RLIMIT_DATA only below 256 GiB), or SIZE_MAX
 * if there is none. */
XA_HIDDEN size_t xa_os_heap_limit(void);
/* Give pages back to the kernel; they read as zero afterwards.  A range
 * with locked pages (mlock, mlockall), which MADV_DONTNEED leaves, goes
 * back with MADV_DONTNEED_LOCKED, or is zeroed and kept (under
 * mlockall(MCL_FUTURE), on kernels without the advice, for shared memory);
 * either way its bytes are counted in xa_os_locked_purged.  The same holds
 * for the other purges and xa_os_table_write's give-back. */
XA_HIDDEN void xa_os_purge(void *p, size_t size);
XA_HIDDEN extern size_t xa_os_locked_purged;
/* Does the kernel know MADV_DONTNEED_LOCKED (Linux 5.18)?  Asked once. */
XA_HIDDEN bool xa_os_can_drop_locked(void);
/* Test hook: zero and keep locked pages, as without the advice. */
XA_HIDDEN extern bool xa_os_keep_locked;
/* The same by mapping fresh pages over the range (MAP_FIXED), which also
 * makes it one mapping again where moved pages (xa_os_move_pages) had
 * split it; false if the kernel refused (nothing changed). */
XA_HIDDEN bool xa_os_purge_remap(void *p, size_t size);
/* Let the kernel take the pages when it needs memory (MADV_FREE); they
 * keep their contents until then.  Falls back to xa_os_purge. */
XA_HIDDEN void xa_os_purge_lazy(void *p, size_t size);
/* Ask for (on) or against (off) transparent huge pages on the range. */
XA_HIDDEN void xa_os_hugepage(void *p, size_t size, bool on);
/* Split the huge pages that [p, p+size) maps in part (MADV_COLD, Linux
 * 5.4+), so that their pages already given back are freed now, not when
 * the kernel next runs short of memory.  The range's resident pages are
 * also marked as less recently used. */
XA_HIDDEN void xa_os_split_huge(void *p, size_t size);

/* Make [p, p+size) (page aligned) inaccessible: a guard.  false if the
 * kernel refused (e.g. out of memory mappings); nothing else changes. */
XA_HIDDEN bool xa_os_guard(void *p, size_t size);
/* Give [p, p+size) (page aligned) the access r/w/x (mprotect): false if
 * refused. */
XA_HIDDEN bool xa_os_protect(void *p, size_t size, bool r, bool w, bool x);
/* 64 unpredictable bits (a seed for hardened mode's slot choice). */
XA_HIDDEN uint64_t xa_os_random(void);

/* Bytes currently mapped through this layer (statistics, purger start). */
XA_HIDDEN extern size_t xa_os_mapped_bytes;
XA_INLINE size_t xa_os_mapped(void) { return __atomic_load_n(&xa_os_mapped_bytes, __ATOMIC_RELAXED); }

/* Bytes of pages handed out that were not resident (new mappings, or
 * pages purged earlier): what may become new RSS once written.  Counted
 * by the arenas and the huge allocator on their slow paths; the memory
 * limit check (pressure.c) reads it. */
XA_HIDDEN extern size_t xa_os_fresh_bytes;
XA_INLINE void xa_os_count_fresh(size_t n) { __atomic_add_fetch(&xa_os_fresh_bytes, n, __ATOMIC_RELAXED); }
XA_INLINE size_t xa_os_fresh(void) { return __atomic_load_n(&xa_os_fresh_bytes, __ATOMIC_RELAXED); }

/* Of the fresh bytes of the arenas, those handed out while no freed
 * resident page was left to serve the request (no arena had that many
 * dirty pages, or a slab's purged pages are written again): faults that
 * purging may have caused.  The purger compares them with its
 * purges (decay.h: regret). */
XA_HIDDEN extern size_t xa_os_refault_bytes;
XA_INLINE void xa_os_count_refault(size_t n) { __atomic_add_fetch(&xa_os_refault_bytes, n, __ATOMIC_RELAXED); }
XA_INLINE size_t xa_os_refault(void) { return __atomic_load_n(&xa_os_refault_bytes, __ATOMIC_RELAXED); }

/* The most ever mapped through this layer. */
XA_HIDDEN extern size_t xa_os_mapped_peak;
/* The process's peak resident set size (VmHWM), 0 if unknown. */
XA_HIDDEN size_t xa_os_resident_peak(void);
/* Resident set size of the process in bytes (0 if unknown). */
XA_HIDDEN size_t xa_os_resident(void);
/* From one read of /proc/self/smaps_rollup, in bytes (0 each if unknown):
 * the process's anonymous memory on transparent huge pages
 * (AnonHugePages), and its proportional set size (Pss), which counts a
 * page mapped at two addresses once where Rss counts it twice. */
XA_HIDDEN void xa_os_huge_and_pss(size_t *anon_huge, size_t *pss);
/* The kernel's account of the process's memory (/proc/self/smaps_rollup;
 * shmem, resident shared memory, from /proc/self/status's RssShmem), in
 * bytes; false (all 0) if the rollup cannot be read. */
struct xa_os_rollup { size_t rss, pss, anonymous, lazyfree, anon_huge, shmem; };
XA_HIDDEN bool xa_os_rollup(struct xa_os_rollup *r);
/* Resident bytes of [p, p+size) (page aligned; mincore), 0 if the range is
 * not (wholly) mapped.  vec, when not NULL, receives one byte per page
 * (bit 0: resident); it must hold size / page bytes.  Where mincore fails
 * the result is 0 and vec reads all resident (the safe answer for a
 * caller that gives back the pages it finds not resident). */
XA_HIDDEN size_t xa_os_resident_range(void *p, size_t size, unsigned char *vec);
/* Is the page holding p mapped (whatever its protection)? */
XA_HIDDEN bool xa_os_is_mapped(const void *p);
/* A PSI trigger (see the kernel's psi.rst) on pressure file path with
 * spec ("some STALL_US WINDOW_US"): its descriptor, close-on-exec and
 * numbered XA_OS_FD_MIN or higher, or -1 if the kernel refuses it.  Then wait up to ns for it: 1 if it fired, 0 if the time
 * passed, -1 if the descriptor is no (longer a) trigger. */
#define XA_OS_FD_MIN 256
XA_HIDDEN int xa_os_psi_trigger(const char *path, const char *spec);
XA_HIDDEN int xa_os_wait_pri(int fd, uint64_t ns);
/* Give up the CPU once (sched_yield as a raw system call: no
 * cancellation point, for waits inside malloc and free). */
XA_HIDDEN void xa_os_yield(void);
/* Sleep ns (nanosleep: a cancellation point, for the purger and
 * xalloc_ctl only). */
XA_HIDDEN void xa_os_sleep(uint64_t ns);
/* Monotonic clock in nanoseconds. */
XA_HIDDEN uint64_t xa_os_now(void);

/* Number of CPUs this process may run on, and the current CPU. */
XA_HIDDEN unsigned xa_os_ncpus(void);
XA_HIDDEN unsigned xa_os_cpu(void);

/* The calling thread's kernel id, and whether thread `tid` of this process
 * still exists. */
XA_HIDDEN int32_t xa_os_tid(void);
XA_HIDDEN bool xa_os_thread_alive(int32_t tid);

/* A memory barrier run on every thread of the process that is running now
 * (membarrier(2), private expedited; threads not running get one at their
 * next context switch).  False if the kernel refuses it (old kernel,
 * seccomp): callers then do without.  The first call registers. */
XA_HIDDEN bool xa_os_membarrier(void);
/* In a fork child: register again before the next use. */
XA_HIDDEN void xa_os_membarrier_forget(void);

/* Environment lookup without allocating (walks environ). */
XA_HIDDEN const char *xa_os_getenv(const char *name);
/* Write to stderr (or fd) with write(2); no stdio, no allocation. */
XA_HIDDEN void xa_os_write_err(const char *s, size_t n);
XA_HIDDEN bool xa_os_write_fd(int fd, const char *s, size_t n);   /* false: not all written */
/* Keep a private close-on-exec duplicate of stderr (for reports at exit,
 * which programs that close stderr first would otherwise lose), and later
 * get a descriptor that still refers to that file: the duplicate, or fd 2,
 * or -1 when neither does (the program reused the numbers). */
XA_HIDDEN void xa_os_keep_stderr(void);
XA_HIDDEN int xa_os_kept_stderr(void);
/* In a fork child: close the descriptors another thread of the parent
 * held open for a moment (a file being read) when it forked. */
XA_HIDDEN void xa_os_postfork_child(void);
/* Open path for appending (created 0644, close-on-exec); -1 on failure. */
XA_HIDDEN int xa_os_open_append(const char *path);
/* Create or truncate path for writing (0644, close-on-exec); -1 on failure. */
XA_HIDDEN int xa_os_open_write(const char *path);
/* Where the program interpreter (the dynamic loader) is loaded: its ELF
 * header (AT_BASE); 0 in a static program. */
XA_HIDDEN uintptr_t xa_os_loader_base(void);
/* Wall-clock time in nanoseconds since the epoch. */
XA_HIDDEN uint64_t xa_os_realtime(void);
/* Run handler on signal sig (SA_RESTART; the handler must be
 * async-signal-safe); false if the kernel refused. */
XA_HIDDEN bool xa_os_on_signal(int sig, void (*handler)(int));
/* One line of /proc/self/maps: [start, end), the permissions, the offset
 * in the file, and the path (NUL-terminated; "" for anonymous memory). */
struct xa_os_mapping {
  uintptr_t start, end, offset;
  bool r, w, x, shared;
  const char *path;
};
/* Call fn on every mapping of the process in address order, until it
 * returns false.  No allocation: the lines are read into a buffer on the
 * stack (a path too long for it is cut).  false if the file cannot be
 * read. */
XA_HIDDEN bool xa_os_maps(bool (*fn)(const struct xa_os_mapping *m, void *arg), void *arg);
/* Mappings the process has now (/proc/self/maps; SIZE_MAX if unreadable),
 * and the most it may have (vm.max_map_count, read once; 65530 if
 * unreadable).  Past the limit mmap, mprotect and munmap fail: meshing
 * leaves the program at least half of it, gathering (huge.c) seven
 * eighths. */
XA_HIDDEN size_t xa_os_map_count(void);
/* mlockall(flags), but where it would map in every page (MCL_CURRENT
 * without MCL_ONFAULT), the ranges spare[0..nspare) ({start, end}) are
 * locked as their pages are touched instead of mapped in: everything is
 * locked on touch first, then MCL_FUTURE applied, then every other part
 * locked and mapped in.  Returns what mlockall returns (errno set on -1). */
XA_HIDDEN int xa_os_mlockall_sparing(int flags, const uintptr_t (*spare)[2], size_t nspare);
XA_HIDDEN size_t xa_os_map_limit(void);
XA_HIDDEN void xa_os_close(int fd);
XA_HIDDEN int xa_os_pid(void);
/* Files (cgroup and /proc): open for reading (close-on-exec; -1 on
 * failure), read up to n bytes (retrying on EINTR; <= 0 at the end or on
 * error), whether a file is readable, and the start of a small file,
 * NUL-terminated, in buf (its length; 0 if it cannot be read). */
XA_HIDDEN int xa_os_open_read(const char *path);
XA_HIDDEN long xa_os_read(int fd, char *buf, size_t n);
XA_HIDDEN bool xa_os_file_exists(const char *path);
XA_HIDDEN size_t xa_os_read_file(const char *path, char *buf, size_t size);
/* Is the calling thread the process's last live one (the others gone,
 * or only the main thread left as a zombie after pthread_exit)?  Reads
 * /proc; false when it cannot tell. */
XA_HIDDEN bool xa_os_last_thread(void);
XA_HIDDEN __attribute__((noreturn)) void xa_os_abort(void);

/* Memory that can be aliased (meshing, mesh.c).  A memfd of `size` bytes
 * (sparse; -1 on failure); a shared mapping of its [off, off+size) at addr
 * (replacing what is there); a hole punched in it (the pages are freed);
 * purging of pages of such a mapping (MADV_REMOVE; DONTNEED where the
 * range turns out private); a copy of its data (holes stay holes) into
 * another, false if a part could not be copied. */
XA_HIDDEN int xa_os_memfd(uint64_t size);
/* Descriptors of xalloc's own, which the program may close (a daemon
 * closes every descriptor above stderr) and reopen on the same numbers:
 * fd_high moves fd (close-on-exec) to XA_OS_FD_MIN or above, away from the
 * low numbers programs expect to find free (the old number is closed;
 * fd itself where it cannot move); fd_id takes a file's identity (device
 * and inode; a userfaultfd has an inode of its own since Linux 5.12) and
 * fd_is compares fd's with it (true where fstat fails for another reason
 * than a closed descriptor: it cannot tell, and the descriptor is kept);
 * reopen_mapped opens, read-write and numbered high, the file mapped at
 * [start, end) (/proc/self/map_files: CAP_SYS_ADMIN or
 * CAP_CHECKPOINT_RESTORE), -1 if it cannot (*denied: for want of the
 * privilege). */
struct xa_os_fd_id { uint64_t dev, ino; };
XA_HIDDEN int xa_os_fd_high(int fd);
XA_HIDDEN bool xa_os_fd_id(int fd, struct xa_os_fd_id *id);
XA_HIDDEN bool xa_os_fd_is(int fd, const struct xa_os_fd_id *id);
/* Bytes of storage file fd holds (its blocks: a sparse file's holes take
 * none) if fd is still the file id names; 0 if not (or fstat fails). */
XA_HIDDEN uint64_t xa_os_fd_bytes(int fd, const struct xa_os_fd_id *id);
XA_HIDDEN int xa_os_reopen_mapped(uintptr_t start, uintptr_t end, bool *denied);
/* Fresh zero pages over [p, p+size) (MAP_FIXED), shared anonymous memory
 * so that MADV_REMOVE frees them as it frees a file's; false if the
 * kernel refused (the range is unchanged). */
XA_HIDDEN bool xa_os_map_zero_shared(void *p, size_t size);
/* No file size limit (RLIMIT_FSIZE)? */
XA_HIDDEN bool xa_os_fsize_unlimited(void);
/* A soft file size limit (a write at an address-sized offset under it
 * raises SIGXFSZ, which ends the process) lifted to an unlimited hard
 * limit for a moment: false, nothing changed, if the hard limit is set
 * too.  *soft gets what xa_os_fsize_put_back restores. */
XA_HIDDEN bool xa_os_fsize_lift(uint64_t *soft);
XA_HIDDEN void xa_os_fsize_put_back(uint64_t soft);
XA_HIDDEN bool xa_os_map_file(void *addr, size_t size, int fd, uint64_t off);
/* The same pages of fd mapped copy-on-write (MAP_PRIVATE): reads see the
 * file, writes stay this process's, and fork copies them as it copies
 * any private memory. */
XA_HIDDEN bool xa_os_map_file_private(void *addr, size_t size, int fd, uint64_t off);
/* vec[i] = 1 where page i of [off, off+size) of fd is a hole (no data),
 * else 0; false if the file cannot say (vec then all 0).  *data_end:
 * where the data that the range ends in ends (0 if it ends in a hole). */
XA_HIDDEN bool xa_os_file_holes(int fd, uint64_t off, size_t size, unsigned char *vec, uint64_t *data_end);
/* A word another process can wait on: a page of shared anonymous memory,
 * which a fork child shares with its parent (NULL if refused); waiting
 * while *w == val, at most ns (false if that ran out), and waking all. */
XA_HIDDEN int *xa_os_map_shared_word(void);
XA_HIDDEN bool xa_os_wait_shared(int *w, int val, uint64_t ns);
XA_HIDDEN void xa_os_wake_shared(int *w);
/* Map the pages of [p, p+size) readable now, in one call (a hint: errors
 * are ignored). */
XA_HIDDEN void xa_os_populate_read(void *p, size_t size);
XA_HIDDEN void xa_os_punch(int fd, uint64_t off, size_t size);
XA_HIDDEN void xa_os_purge_shared(void *p, size_t size);
/* [off, off+size) of file from into file to at the same offset. */
XA_HIDDEN bool xa_os_copy_range(int from, int to, uint64_t off, uint64_t size);
/* Write [p, p+size) to fd at offset off, or read size bytes at offset off
 * of fd into p; false if a part was not written or read. */
XA_HIDDEN bool xa_os_write_at(int fd, const void *p, size_t size, uint64_t off);
XA_HIDDEN bool xa_os_read_at(int fd, void *p, size_t size, uint64_t off);
/* Copy size bytes of this process's memory at src to dst through the
 * kernel (process_vm_readv): a page that cannot be read fails the call
 * instead of faulting; a page the program made inaccessible is read
 * through /proc/self/mem where the process may open it.  False if a part
 * could not be read. */
XA_HIDDEN bool xa_os_read_self(void *dst, const void *src, size_t size);
/* Write protection by userfaultfd: a descriptor (-1 if the kernel or the
 * process's privileges do not allow one); protect [p, p+size) so that a
 * write to it, from user or kernel mode, waits (false: nothing changed);
 * release: lift the protection if the range is still the protected mapping
 * (mapped), and wake every writer waiting on it.  *unpopulated: the
 * protection covers the pages of private anonymous memory not populated
 * yet too (Linux 6.4; shared memory's always are). */
XA_HIDDEN int xa_os_wp_open(bool *unpopulated);
XA_HIDDEN bool xa_os_wp_protect(int uffd, void *p, size_t size);
XA_HIDDEN void xa_os_wp_release(int uffd, void *p, size_t size, bool mapped);

/* Test hook: when non-zero, the next xa_os_fail_maps mappings fail. */
XA_HIDDEN extern unsigned long xa_os_fail_maps;
#endif
