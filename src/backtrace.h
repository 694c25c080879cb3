/* Call stacks for the heap profiler, by the frame-pointer chain: each
 * frame holds the caller's frame pointer and the return address, so the
 * walk is a few loads per frame, with no unwind tables, no malloc and no
 * lock (the unwinders of libgcc and libunwind take the loader's lock and
 * may allocate).  Every read is checked to lie in the mapping that holds
 * the calling thread's stack (learnt once per thread from
 * /proc/self/maps), so a broken chain ends the walk instead of faulting.
 *
 * Code built without frame pointers (-fomit-frame-pointer, gcc's default
 * at -O1 and above on x86_64) keeps other values in the frame-pointer
 * register: the first frame, the allocation's call site, is always
 * right (xalloc itself keeps frame pointers); the frames above it are
 * right as far as the callers keep frame pointers, and the walk stops, or
 * at worst records a few addresses that name no caller, where they do
 * not.  Build with -fno-omit-frame-pointer (Fedora and Ubuntu 24.04 build
 * their packages so) for whole stacks, or use libgcc's unwinder
 * (prof_unwind:libgcc), which reads the unwind tables every binary keeps
 * for C++ exceptions and debuggers, at several times the cost per frame. */
#ifndef XA_BACKTRACE_H
#define XA_BACKTRACE_H
#include "internal.h"

/* Find xalloc's own code, whose frames the walk leaves out (the section
 * xalloc_text: see the Makefile).  Without it (objects built otherwise),
 * its frames are recorded too and the profile names them for pprof to
 * drop (prof.c's drop_frames). */
XA_HIDDEN void xa_backtrace_init(void);
/* Fill pcs[0..max) with the return addresses of the calling thread's
 * stack, innermost first, xalloc's own frames left out; returns how
 * many. */
XA_HIDDEN unsigned xa_backtrace(uintptr_t *pcs, unsigned max);
/* Is pc in the dynamic loader's code?  (Blocks it allocates stay until
 * exit, as the C library's own: the leak report tells them apart.) */
XA_HIDDEN bool xa_backtrace_in_loader(uintptr_t pc);
/* Walk with libgcc's unwinder from now on (prof_unwind:libgcc): from the
 * library's constructor only, as it may load libgcc_s.so.1.  False if
 * the unwinder cannot be found (frame pointers stay in use). */
XA_HIDDEN bool xa_backtrace_use_unwinder(void);
/* Was xalloc's code found (xa_backtrace leaves its frames out)? */
XA_HIDDEN bool xa_backtrace_skips_self(void);
#endif
