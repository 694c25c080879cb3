/* The lock used for arenas and global tables: a pthread mutex, which on
 * glibc never allocates, plus a count of contended acquisitions. */
#ifndef XA_LOCK_H
#define XA_LOCK_H
#include "internal.h"
#include <pthread.h>

typedef struct {
  pthread_mutex_t m;
  uint64_t contended;   /* times the lock was found taken */
} xa_lock_t;

#define XA_LOCK_INIT { PTHREAD_MUTEX_INITIALIZER, 0 }

/* Set in the forking thread from our prefork handler until the postfork
 * handlers: it already holds every lock, and other atfork handlers (which
 * run inside that window) may allocate, so its lock calls are no-ops. */
XA_HIDDEN extern __thread bool xa_fork_owner __attribute__((tls_model("initial-exec")));

/* An address of the calling thread's own (its TLS): the same in a fork
 * child for the thread that forked, whose other threads are gone. */
XA_INLINE const void *xa_thread_self(void) { return &xa_fork_owner; }

XA_INLINE void xa_lock(xa_lock_t *l) {
  if (unlikely(xa_fork_owner)) return;
  if (unlikely(pthread_mutex_trylock(&l->m) != 0)) {
    pthread_mutex_lock(&l->m);
    l->contended++;
  }
}
/* l if it is free now; false (nothing held) if another thread has it. */
XA_INLINE bool xa_trylock(xa_lock_t *l) {
  if (unlikely(xa_fork_owner)) return true;
  return pthread_mutex_trylock(&l->m) == 0;
}
XA_INLINE void xa_unlock(xa_lock_t *l) {
  if (unlikely(xa_fork_owner)) return;
  pthread_mutex_unlock(&l->m);
}
/* In a fork child: the lock may be held by a thread that no longer exists. */
XA_INLINE void xa_lock_reinit(xa_lock_t *l) { pthread_mutex_init(&l->m, NULL); }
#endif
