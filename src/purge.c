/* The purger thread and its inline fallback (mechanism; the policy is in
 * decay.c, the madvise in os.c). */
#include "purge.h"
#include "arena.h"
#include "huge.h"
#include "lock.h"
#include "options.h"
#include "os.h"
#include <pthread.h>
#include <signal.h>
#include <time.h>

static pthread_mutex_t purge_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t purge_cond = PTHREAD_COND_INITIALIZER;
static int thread_state;        /* 0 none, 1 starting or running */
static int thread_idle;         /* waiting on purge_cond */
static uint64_t inline_next;    /* inline mode: time of the next pass */

static uint64_t epoch_ns(void) {
  long ms = xa_opt.dirty_decay_ms > 0 ? xa_opt.dirty_decay_ms : 1000;
  return (uint64_t)ms * 1000000u / XA_DECAY_EPOCHS;
}

/* Work left for later passes (racy reads: a hint). */
static size_t pending(void) {
  size_t dirty = 0;
  for (unsigned i = 0; i < xa_narenas; i++) {
    struct xa_arena *a = xa_arenas[i];
    dirty += __atomic_load_n(&a->dirty_pages, __ATOMIC_RELAXED);
    if (xa_opt.muzzy_decay_ms >= 0) dirty += __atomic_load_n(&a->muzzy_pages, __ATOMIC_RELAXED);
    dirty += __atomic_load_n(&a->dirty_slabs.head, __ATOMIC_RELAXED) != NULL;
  }
  size_t n, bytes, cached;
  xa_huge_stats(&n, &bytes, &cached);
  return dirty + cached;
}

size_t xa_purge_pass(uint64_t now) {
  for (unsigned i = 0; i < xa_narenas; i++) xa_arena_decay(xa_arenas[i], now);
  xa_huge_cache_decay(now);
  return pending();
}

static void *purger_main(void *arg) {
  (void)arg;
  for (;;) {
    if (xa_purge_pass(xa_os_now()) == 0 || xa_opt.dirty_decay_ms < 0) {
      /* Nothing to decay: sleep until notified. */
      pthread_mutex_lock(&purge_mutex);
      __atomic_store_n(&thread_idle, 1, __ATOMIC_SEQ_CST);
      /* Pairs with the fence in xa_purge_notify: either the notifier sees
       * idle and wakes us, or we see its dirty pages here and stay up. */
      __atomic_thread_fence(__ATOMIC_SEQ_CST);
      if (pending() && xa_opt.dirty_decay_ms >= 0) __atomic_store_n(&thread_idle, 0, __ATOMIC_SEQ_CST);
      while (__atomic_load_n(&thread_idle, __ATOMIC_SEQ_CST)) pthread_cond_wait(&purge_cond, &purge_mutex);
      pthread_mutex_unlock(&purge_mutex);
    } else {
      uint64_t ns = epoch_ns();
      struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
      nanosleep(&ts, NULL);
    }
  }
  return NULL;
}

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
  pthread_attr_setstacksize(&attr, 64 * 1024);
  if (pthread_create(&t, &attr, purger_main, NULL) != 0)
    __atomic_store_n(&thread_state, 0, __ATOMIC_RELEASE);   /* try again later */
  pthread_attr_destroy(&attr);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
}

void xa_purge_start(void) {
  if (unlikely(xa_fork_owner)) return;
  if (xa_opt.background_thread && xa_opt.dirty_decay_ms > 0 && !xa_purge_thread_running()) start_thread();
}

bool xa_purge_thread_running(void) { return __atomic_load_n(&thread_state, __ATOMIC_ACQUIRE) != 0; }

void xa_purge_tick(void) {
  if (xa_opt.background_thread || xa_opt.dirty_decay_ms < 0) return;
  uint64_t now = xa_os_now(), next = __atomic_load_n(&inline_next, __ATOMIC_RELAXED);
  if (now < next) return;
  if (!__atomic_compare_exchange_n(&inline_next, &next, now + epoch_ns(), false, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
    return;   /* another thread runs this pass */
  xa_purge_pass(now);
}

void xa_purge_notify(void) {
  if (unlikely(xa_fork_owner)) return;    /* inside fork: purge_mutex is held */
  if (xa_opt.dirty_decay_ms == 0) {     /* purge at once, inline */
    for (unsigned i = 0; i < xa_narenas; i++) xa_arena_purge(xa_arenas[i]);
    xa_huge_cache_decay(UINT64_MAX);
    return;
  }
  if (xa_opt.dirty_decay_ms < 0) return;
  if (!xa_opt.background_thread) { xa_purge_tick(); return; }
  if (!xa_purge_thread_running()) { start_thread(); return; }
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
/* The thread does not exist in the child: the next notify starts one. */
void xa_purge_postfork_child(void) {
  pthread_mutex_init(&purge_mutex, NULL);
  pthread_cond_init(&purge_cond, NULL);
  thread_state = 0;
  thread_idle = 0;
}
