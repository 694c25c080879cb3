/* The lock layer's one piece of state (lock.h): set by the fork handlers
 * (init.c) in the forking thread, read by every lock call. */
#include "lock.h"

__thread bool xa_fork_owner __attribute__((tls_model("initial-exec")));
