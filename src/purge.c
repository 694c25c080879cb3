/* The purger thread and its inline fallback (mechanism; the policy is in
 * decay.c, the madvise in os.c).
 *
 * When the thread starts.  glibc calls the allocator while it holds
 * internal locks of its own: free() from pthread_join with the stack-cache
 * lock held (__nptl_free_stacks -> _dl_deallocate_tls), from
 * pthread_setattr_default_np with the default-attribute lock held, and from
 * exit() with the exit-function lock held; calloc() from atexit with that
 * lock held; malloc() from dlopen with the loader lock held and from
 * pthread_atfork with the fork-handler lock held.  The rule for every path
 * reached from malloc/free/realloc/calloc/memalign: take no lock and call no
 * function that the C library's thread, loader or stdio code may hold while
 * it calls the allocator (pthread_create, pthread_atfork, dlsym/dlopen,
 * stdio, atexit).  pthread_create needs the stack-cache lock, so it must
 * never run inside a free.  glibc 2.36 never calls malloc, calloc, realloc
 * or memalign with the stack-cache lock or the default-attribute lock held
 * (it takes them only around list and attribute updates that do not
 * allocate), and the locks it does hold around allocations (loader, TLS,
 * fork handlers, exit functions, stdio streams) are not taken by
 * pthread_create, or are recursive for the calling thread.  So:
 *   - anything, from any path, may only *ask* for the thread
 *     (xa_purge_want: one store);
 *   - the thread is created only at the end of an allocation slow path
 *     (xa_purge_safe_point, called by malloc.c with no lock held), never
 *     from free, a fork handler or a constructor;
 *   - until it runs, the purging it would do runs inline on slow paths.
 * A fork child starts without the thread and asks for it again. */
#define _GNU_SOURCE
#include "purge.h"
#include "arena.h"
#include "budget.h"
#include "decay.h"
#include "tcache.h"
#include "huge.h"
#include "lock.h"
#include "mesh.h"
#include "options.h"
#include "os.h"
#include "pressure.h"
#include <pthread.h>
#include <signal.h>
#include <time.h>

static pthread_mutex_t purge_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t purge_cond = PTHREAD_COND_INITIALIZER;
static int thread_state;        /* 0 none, 1 starting or running */
int xa_purge_wanted;            /* the next allocation slow path starts it */
/* With more than this in fresh pages handed out (xa_os_fresh: memory
 * the program may sit on, not address space merely reserved), memory may
 * need returning while the program sits idle: the thread is wanted even
 * before anything is freed.  SIZE_MAX once the thread runs. */
size_t xa_purge_map_trigger = 2 * XA_CHUNK_SIZE;
static int thread_idle;         /* waiting on purge_cond */
static uint64_t inline_next;    /* inline mode: time of the next pass */
static uint64_t reclaim_next;   /* time of the next cache reclaim */

/* The period the purger keeps: dirty_decay_ms, or 1 s where pages decay
 * at once or never (then only the cache reclaims need one).  It makes a
 * pass every epoch of it and reclaims caches every quarter of it. */
static int64_t pace_ms(void) { return xa_opt.dirty_decay_ms > 0 ? xa_opt.dirty_decay_ms : 1000; }
static uint64_t epoch_ns(void) { return xa_decay_epoch_ns(pace_ms()); }

/* Meshing (mesh:true): 1 while a later pass may mesh more (the last one
 * meshed, or was not due yet): the purger then keeps its pace. */
static int mesh_more;

/* Work left for later passes (racy reads: a hint). */
static size_t pending(void) {
  return xa_arena_decay_pending() + xa_huge_dirty() + (size_t)__atomic_load_n(&mesh_more, __ATOMIC_RELAXED) +
         xa_tcache_recycled_any();
}

/* Caches of quiet threads go back every quarter of the decay time: the
 * pages they held are then purged within 1.25-1.5 decay times after the
 * thread's last call. */
static uint64_t reclaim_ns(void) {
  uint64_t ns = (uint64_t)pace_ms() * 1000000u / 4;
  return ns < 50000000u ? 50000000u : ns;   /* at most 20 passes a second */
}

/* The regret of decay passes (decay.h), judged by whichever pass runs. */
static struct xa_decay_adapt adapt;
static int adapt_busy;

/* purged: bytes the pass just purged by decay; urgent: a pass under memory
 * pressure, which returns everything at the base decay time. */
static void adapt_decay(uint64_t now, size_t purged, bool urgent) {
  if (xa_opt.dirty_decay_ms <= 0) return;
  if (__atomic_exchange_n(&adapt_busy, 1, __ATOMIC_ACQUIRE)) return;   /* another pass judges */
  if (adapt.scale == 0 || urgent) xa_decay_adapt_init(&adapt, now, xa_os_refault());
  unsigned scale = urgent ? 1 : xa_decay_adapt_update(&adapt, now, xa_os_refault(), purged, xa_opt.dirty_decay_ms);
  __atomic_store_n(&xa_decay_scale, scale, __ATOMIC_RELAXED);
  __atomic_store_n(&adapt_busy, 0, __ATOMIC_RELEASE);
}

/* Meshing (mesh:true): a pass every mesh_period_ms at most, from whichever
 * purge pass comes first after it is due. */
static uint64_t mesh_next;
static __thread bool in_purger;    /* set by the purger thread for itself */
static void mesh_pass(uint64_t now) {
  /* The thread only: a step holds its lock across system calls, which
   * an allocation's slow path (inline purging) must not wait for. */
  if (!xa_mesh_on || !in_purger) return;
  uint64_t next = __atomic_load_n(&mesh_next, __ATOMIC_RELAXED);
  if (now < next) {
    __atomic_store_n(&mesh_more, 1, __ATOMIC_RELAXED);
    return;
  }
  if (!__atomic_compare_exchange_n(&mesh_next, &next, now + (uint64_t)xa_opt.mesh_period_ms * 1000000, false,
                                   __ATOMIC_RELAXED, __ATOMIC_RELAXED))
    return;                          /* another thread runs this one */
  /* Not while the heap grows (more than 4 MiB of fresh pages handed out
   * since the last pass): the new objects fill free slots anyway, and a
   * mesh step's remap stalls the program's page faults (mmap_lock) and
   * sends TLB shootdowns -- frag, which grows by 256 MiB at a time, ran
   * 30% slower with meshing during its growth phases. */
  static size_t fresh_seen;
  size_t fresh = xa_os_fresh(), grown = fresh - fresh_seen;
  fresh_seen = fresh;
  if (grown > ((size_t)4 << 20)) {
    __atomic_store_n(&mesh_more, 1, __ATOMIC_RELAXED);
    return;
  }
  /* At most an eighth of the period, a half while nothing grew (an idle
   * program, or one that reuses what it frees): a mesh step costs 40-120
   * us (six system calls and the copy), and a heap of many sparse slabs
   * takes many passes. */
  uint64_t budget = (uint64_t)xa_opt.mesh_period_ms * (grown ? 125000 : 500000);
  uint64_t before = __atomic_load_n(&xa_mesh_stats.meshes, __ATOMIC_RELAXED);
  xa_mesh_later = false;
  xa_arena_mesh_all(budget, false);
  bool more = xa_mesh_later || __atomic_load_n(&xa_mesh_stats.meshes, __ATOMIC_RELAXED) != before;
  __atomic_store_n(&mesh_more, more, __ATOMIC_RELAXED);
}

#define QUICK_RECLAIM_NS 50000000u
/* A crowd: more caches than this share the budget.  A handful of busy
 * threads whose big classes get small shares start no reclaim: a pass
 * would find none quiet, and its lock and walk cost them (glibc-thread and
 * sh8bench 7-10% slower without this floor). */
#define CROWD_CACHES 64
/* Passes of both kinds share one notion of "quiet" (no call since the
 * last pass, tcache.c), so they keep apart: none comes within
 * QUICK_RECLAIM_NS of another, and a squeezed pass puts the purger's next
 * one a whole period away. */
static uint64_t quick_next;     /* no reclaim pass of either kind before this */
static int quick_left;          /* passes the running episode may still make without progress */

size_t xa_purge_pass(uint64_t now) {
  if (xa_pressure_poll(now)) {       /* little headroom, or pressure: all back now */
    xa_pressure_purge();
    adapt_decay(now, 0, true);
    return pending();
  }
  uint64_t next = __atomic_load_n(&reclaim_next, __ATOMIC_RELAXED);
  if (now >= next && now >= __atomic_load_n(&quick_next, __ATOMIC_RELAXED) &&
      __atomic_compare_exchange_n(&reclaim_next, &next, now + reclaim_ns(), false, __ATOMIC_RELAXED,
                                  __ATOMIC_RELAXED)) {
    __atomic_store_n(&quick_next, now + QUICK_RECLAIM_NS, __ATOMIC_RELAXED);   /* one schedule: see below */
    xa_tcache_reclaim(false);
  }
  size_t purged = xa_arena_decay_all(now);
  xa_huge_cache_decay(now);
  if (xa_opt.dirty_decay_ms >= 0) xa_tcache_trim_recycled(now, (uint64_t)xa_decay_ms_now() * 500000u);
  adapt_decay(now, purged, false);
  mesh_pass(now);
  return pending();
}

/* glibc ends a process when its last thread exits (main may end with
 * pthread_exit and leave the others running).  The purger must not be
 * the thread that keeps it alive: it looks at least every ALONE_CHECK_NS
 * whether the program has any live thread left and, if not, exits, and
 * glibc's exit(0) follows.  An idle purger therefore wakes once a
 * second. */
#define ALONE_CHECK_NS 200000000u
#define MAX_SLEEP_NS 1000000000u

/* While the main thread runs, so does the program, and /proc is read
 * only every MAIN_CHECK_NS.  Each read opens a file, which holds the
 * lowest free descriptor for a moment, and a program that makes a pipe or
 * opens a file in that moment gets a number one higher than it expects
 * (GLib's gsubprocess test checks that two pipes' numbers follow each
 * other); a file kept open instead shows among the program's descriptors
 * (CPython's test_subprocess lists them).  So a thread-specific value
 * sits on the main thread (set from the library's constructor,
 * xa_purge_watch_main), and its destructor, which pthread_exit and a
 * cancellation of the main thread run, says the main thread is gone;
 * from then on /proc is read at every look.  The rare reads before that
 * are for a main thread that ends without destructors (a raw exit
 * system call, a seccomp kill), which would otherwise leave the purger
 * keeping a finished program alive.  Where the value could not be set
 * (the library loaded by another thread), or in a fork child of another
 * thread (whose only thread holds none), /proc is read at every look. */
#define MAIN_CHECK_NS 10000000000ull
static pthread_key_t main_key;
static bool main_watched;       /* main_key's value sits on the main thread (atomic:
                                   another library's constructor may have started
                                   the purger before ours) */
static bool main_ended;         /* its destructor ran (atomic) */

static void main_exits(void *v) {
  (void)v;
  __atomic_store_n(&main_ended, true, __ATOMIC_RELEASE);
}

void xa_purge_watch_main(void) {
  bool watched = xa_os_tid() == (int32_t)getpid() && pthread_key_create(&main_key, main_exits) == 0 &&
                 pthread_setspecific(main_key, (void *)1) == 0;
  __atomic_store_n(&main_watched, watched, __ATOMIC_RELEASE);
}

/* next_check: the next look; next_read: the next /proc read while the
 * main thread runs (the first one MAIN_CHECK_NS after the purger starts). */
static bool program_gone(uint64_t now, uint64_t *next_check, uint64_t *next_read) {
  if (now < *next_check) return false;
  *next_check = now + ALONE_CHECK_NS;
  if (!*next_read) *next_read = now + MAIN_CHECK_NS;
  if (__atomic_load_n(&main_watched, __ATOMIC_ACQUIRE) && !__atomic_load_n(&main_ended, __ATOMIC_ACQUIRE)) {
    if (now < *next_read) return false;
    *next_read = now + MAIN_CHECK_NS;
  }
  return xa_os_last_thread();
}

static void *purger_main(void *arg) {
  (void)arg;
  pthread_setname_np(pthread_self(), "xalloc-purge");   /* for top -H, /proc/PID/task/TID/comm */
  in_purger = true;
  xa_chunk_quiet_thread = true;
  uint64_t next_check = 0, next_read = 0;
  for (;;) {
    uint64_t now = xa_os_now();
    size_t left = xa_purge_pass(now);
    if (program_gone(now, &next_check, &next_read)) break;
    uint64_t ns = epoch_ns();
    if (xa_opt.dirty_decay_ms < 0 || (left == 0 && !xa_tcache_others_hold())) {
      /* Nothing to decay, no cache to watch: sleep until notified. */
      pthread_mutex_lock(&purge_mutex);
      __atomic_store_n(&thread_idle, 1, __ATOMIC_SEQ_CST);
      /* Pairs with the fence in xa_purge_notify: either the notifier sees
       * idle and wakes us, or we see its dirty pages here and stay up. */
      __atomic_thread_fence(__ATOMIC_SEQ_CST);
      if ((pending() || xa_tcache_others_hold()) && xa_opt.dirty_decay_ms >= 0)
        __atomic_store_n(&thread_idle, 0, __ATOMIC_SEQ_CST);
      bool gone = false;
      while (__atomic_load_n(&thread_idle, __ATOMIC_SEQ_CST) && !gone) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += 1;
        pthread_cond_clockwait(&purge_cond, &purge_mutex, CLOCK_MONOTONIC, &until);
        gone = program_gone(xa_os_now(), &next_check, &next_read);
      }
      __atomic_store_n(&thread_idle, 0, __ATOMIC_SEQ_CST);
      pthread_mutex_unlock(&purge_mutex);
      if (gone) break;
      continue;
    }
    if (left == 0) ns = reclaim_ns();   /* only caches to watch: wake less often */
    if (ns > MAX_SLEEP_NS) ns = MAX_SLEEP_NS;
    /* Under a memory limit, watch the headroom while there is work. */
    uint64_t poll_ns = (uint64_t)xa_opt.cgroup_poll_ms * 1000000u;
    if (xa_pressure_limited() && ns > poll_ns) ns = poll_ns;
    xa_pressure_wait(ns);     /* a sleep, or a wait on the PSI trigger */
  }
  /* No program thread is left: end, so that the process ends.  Should one
   * appear after all, the next allocation slow path starts a new purger. */
  __atomic_store_n(&thread_state, 0, __ATOMIC_SEQ_CST);
  __atomic_store_n(&xa_purge_wanted, 1, __ATOMIC_RELAXED);
  return NULL;
}

/* Only from xa_purge_safe_point (see the top of this file). */
static void start_thread(void) {
  int expected = 0;
  if (!__atomic_compare_exchange_n(&thread_state, &expected, 1, false, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) return;
  /* The thread takes no signals meant for the application. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_t t;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  /* A stack size of our own: with none, pthread_create would take glibc's
   * default-attribute lock, which pthread_setattr_default_np holds while
   * it frees. */
  pthread_attr_setstacksize(&attr, 64 * 1024);
  if (pthread_create(&t, &attr, purger_main, NULL) != 0)
    /* Refused (thread limit, seccomp): purging stays inline, and a later
     * notify asks again. */
    __atomic_store_n(&thread_state, 0, __ATOMIC_RELEASE);
  pthread_attr_destroy(&attr);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
}

static bool thread_wanted(void) {
  return xa_opt.background_thread && xa_opt.dirty_decay_ms > 0 && !xa_purge_thread_running();
}

void xa_purge_want(void) {
  if (!__atomic_load_n(&xa_purge_wanted, __ATOMIC_RELAXED) && thread_wanted())
    __atomic_store_n(&xa_purge_wanted, 1, __ATOMIC_RELAXED);
}

void xa_purge_pay_owed(void) {
  if (unlikely(xa_fork_owner)) return;   /* inside fork: our locks are held */
  size_t owed = xa_budget_take_owed();
  /* what the cache still holds over the budget now: its own decay or
   * budget may have purged meanwhile */
  size_t arena_dirty = xa_arena_dirty_bytes(), over = xa_budget_over(arena_dirty, xa_arena_budget_bytes());
  size_t d = xa_budget_share(owed, over, __atomic_load_n(&xa_budget_huge_dirty, __ATOMIC_RELAXED), xa_budget_huge_slack());
  if (d) xa_huge_purge_bytes(d);
}

void xa_purge_start_wanted(void) {
  if (unlikely(xa_fork_owner)) return;   /* inside fork: our locks are held */
  __atomic_store_n(&xa_purge_wanted, 0, __ATOMIC_RELAXED);
  /* Asked once: if the thread cannot start, purging stays inline. */
  __atomic_store_n(&xa_purge_map_trigger, SIZE_MAX, __ATOMIC_RELAXED);
  xa_pressure_arm();           /* from now on the memory limit is watched */
  if (thread_wanted()) start_thread();
}

bool xa_purge_thread_running(void) { return __atomic_load_n(&thread_state, __ATOMIC_ACQUIRE) != 0; }

/* Inline mode: one pass per epoch, from whichever slow path comes first. */
static void purge_tick(void) {
  if (xa_opt.dirty_decay_ms < 0 || xa_purge_thread_running()) return;
  uint64_t now = xa_os_now(), next = __atomic_load_n(&inline_next, __ATOMIC_RELAXED);
  if (now < next) return;
  if (!__atomic_compare_exchange_n(&inline_next, &next, now + epoch_ns(), false, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
    return;   /* another thread runs this pass */
  xa_purge_pass(now);
}

void xa_purge_reclaim_soon(void) {
  if (unlikely(xa_fork_owner) || !xa_tcache_reclaim_on()) return;     /* inside fork; no reclaims */
  if (!__atomic_load_n(&quick_left, __ATOMIC_RELAXED) && xa_tcache_sharing() <= CROWD_CACHES) return;
  uint64_t now = xa_os_now(), next = __atomic_load_n(&quick_next, __ATOMIC_RELAXED);
  if (now < next || !__atomic_compare_exchange_n(&quick_next, &next, now + QUICK_RECLAIM_NS, false, __ATOMIC_RELAXED,
                                                 __ATOMIC_RELAXED))
    return;                  /* too soon, or another thread looks */
  /* An episode goes on while passes empty caches: the first look only
   * notes each cache's calls, so two passes without progress end it. */
  unsigned before = xa_tcache_sharing();
  int left = __atomic_load_n(&quick_left, __ATOMIC_RELAXED);
  __atomic_store_n(&reclaim_next, now + reclaim_ns(), __ATOMIC_RELAXED);
  xa_tcache_reclaim(false);
  left = xa_tcache_sharing() < before ? 2 : left ? left - 1 : 1;
  __atomic_store_n(&quick_left, left, __ATOMIC_RELAXED);
}

void xa_purge_watch_caches(void) {
  __atomic_thread_fence(__ATOMIC_SEQ_CST);  /* our bin's objects before idle's read */
  if (__atomic_load_n(&thread_idle, __ATOMIC_RELAXED)) xa_purge_notify();
}

void xa_purge_notify(void) {
  if (unlikely(xa_fork_owner)) return;    /* inside fork: purge_mutex is held */
  if (xa_opt.dirty_decay_ms == 0) {     /* purge at once, inline */
    xa_arena_purge_all();
    xa_huge_cache_decay(UINT64_MAX);
    return;
  }
  if (xa_opt.dirty_decay_ms < 0) return;
  if (!xa_purge_thread_running()) {  /* inline until the thread runs */
    xa_purge_want();
    purge_tick();
    return;
  }
  __atomic_thread_fence(__ATOMIC_SEQ_CST);  /* our dirty pages before idle's read */
  if (__atomic_load_n(&thread_idle, __ATOMIC_SEQ_CST)) {
    pthread_mutex_lock(&purge_mutex);
    __atomic_store_n(&thread_idle, 0, __ATOMIC_SEQ_CST);
    pthread_cond_signal(&purge_cond);
    pthread_mutex_unlock(&purge_mutex);
  }
}

void xa_purge_prefork(void) { pthread_mutex_lock(&purge_mutex); }
void xa_purge_postfork_parent(void) { pthread_mutex_unlock(&purge_mutex); }
/* The thread does not exist in the child: the child's next allocation slow
 * path starts one if the parent had one. */
void xa_purge_postfork_child(void) {
  xa_pressure_postfork_child();
  /* The forking thread is the child's main thread: watched if it holds
   * the value (it was the parent's main thread). */
  __atomic_store_n(&main_watched, main_watched && pthread_getspecific(main_key) != NULL, __ATOMIC_RELAXED);
  main_ended = false;
  pthread_mutex_init(&purge_mutex, NULL);
  pthread_cond_init(&purge_cond, NULL);
  xa_purge_wanted = thread_state;
  xa_purge_map_trigger = thread_state ? SIZE_MAX : 2 * XA_CHUNK_SIZE;
  thread_state = 0;
  thread_idle = 0;
  reclaim_next = 0;
  adapt_busy = 0;       /* a fork that came during the purger's judgement */
}
