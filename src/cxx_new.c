/* The C++ replaceable allocation functions (operator new/delete, all 20
 * that libstdc++ exports), defined in C by their Itanium-mangled names so
 * that libxalloc needs no libstdc++.  A program linked with -lxalloc or
 * libxalloc.a, or run under LD_PRELOAD, finds these before libstdc++'s, so
 * new/delete take xalloc's fast paths instead of going through libstdc++'s
 * calls to malloc/free.
 *
 * Failure: a throwing new calls the installed std::new_handler and retries
 * while allocation fails, and throws std::bad_alloc when no handler is
 * installed; the nothrow forms return NULL instead (also when the handler
 * throws).  Handler and exception come from libstdc++ through weak
 * references, which resolve in any C++ program (libstdc++ is loaded); this
 * file is compiled with -fexceptions (mk/install.mk) so that exceptions
 * unwind through it.
 *
 * Checks: sized delete checks the size like free_sized, aligned delete the
 * alignment (and size) like free_aligned_sized; a mismatch is reported and
 * aborts like any other misuse. */
#define _GNU_SOURCE
#include "fastpath.h"
#include "os.h"
#include "xalloc.h"

#include <dlfcn.h>
#include <malloc.h>

typedef void (*new_handler_fn)(void);
typedef struct nothrow_t nothrow_t;   /* std::nothrow_t: only its address is passed */

/* std::get_new_handler() and std::__throw_bad_alloc() from libstdc++. */
extern __attribute__((weak, visibility("default"))) new_handler_fn _ZSt15get_new_handlerv(void);
extern __attribute__((weak, visibility("default"), noreturn)) void _ZSt17__throw_bad_allocv(void);
/* Weak, so that a fully static C++ program does not drag them in. */
#pragma weak dlsym
#pragma weak dlclose

/* A function of libstdc++ itself, if it is loaded (also when it was
 * dlopened RTLD_LOCAL).  dlopen is found at run time: a link-time reference
 * would make every static link with libxalloc.a warn about dlopen.
 * The loader calls are allowed here, unlike anywhere under malloc/free
 * (see purge.c): this runs only when operator new has found no memory,
 * with no xalloc lock held, and glibc never calls operator new while it
 * holds the loader's (recursive) lock. */
static void *libstdcxx_sym(const char *name) {
  if (!dlsym || !dlclose) return NULL;
  void *(*open)(const char *, int) = (void *(*)(const char *, int))dlsym(RTLD_DEFAULT, "dlopen");
  void *h = open ? open("libstdc++.so.6", RTLD_LAZY | RTLD_NOLOAD) : NULL;
  if (!h) return NULL;
  void *f = dlsym(h, name);
  dlclose(h);
  return f;
}

/* The weak reference, else (xalloc was loaded before libstdc++, e.g.
 * preloaded into a C program that later dlopens a C++ library with
 * RTLD_LOCAL) the function looked up in libstdc++. */
static void *cxx_runtime(void *weak_ref, const char *name) {
  return weak_ref ? weak_ref : libstdcxx_sym(name);
}

/* align 0: plain new, else a power of two. */
static inline void *alloc(size_t n, size_t align) { return align ? memalign(align, n) : xa_malloc_fast(n); }

/* No memory and no handler: throw std::bad_alloc, or NULL for nothrow. */
XA_COLD static void *bad_alloc(bool nothrow) {
  if (nothrow) return NULL;
  void (*throw_bad_alloc)(void) = (void (*)(void))
      cxx_runtime((void *)_ZSt17__throw_bad_allocv, "_ZSt17__throw_bad_allocv");
  if (throw_bad_alloc) throw_bad_alloc();
  static const char msg[] = "xalloc: operator new: out of memory, and no C++ runtime to throw std::bad_alloc\n";
  xa_os_write_err(msg, sizeof msg - 1);
  xa_os_abort();
}

/* Allocation failed: call the new_handler and retry while there is one. */
XA_NOINLINE XA_COLD static void *new_failed(size_t n, size_t align, bool nothrow) {
  for (;;) {
    new_handler_fn (*get)(void) = (new_handler_fn(*)(void))
        cxx_runtime((void *)_ZSt15get_new_handlerv, "_ZSt15get_new_handlerv");
    new_handler_fn h = get ? get() : NULL;
    if (!h) return bad_alloc(nothrow);
    h();                                 /* may free memory, throw or exit */
    void *p = alloc(n, align);
    if (p) return p;
  }
}

static inline void *new_impl(size_t n, size_t align) {
  void *p = alloc(n, align);
  return likely(p != NULL) ? p : new_failed(n, align, false);
}

/* Plain new: malloc's fast path, which tail-calls this when it cannot
 * serve n.  Checking the fast path's result instead would make new call
 * the slow path and so set up a stack frame on every call (6 instructions
 * more than malloc's 16). */
XA_NOINLINE static void *new_slow(size_t n) {
  void *p = xa_malloc_slow(n);
  return likely(p != NULL) ? p : new_failed(n, 0, false);
}

/* A nothrow form failed.  The new_handler may throw, and C cannot catch,
 * so let libstdc++'s own operator of the same name run the loop: it calls
 * our throwing operator inside a try block and returns NULL for whatever
 * it throws.  Without libstdc++ (a static program) run the loop here. */
XA_NOINLINE XA_COLD static void *nothrow_failed(size_t n, size_t align, const nothrow_t *t, const char *name,
                                                void *self) {
  void *f = libstdcxx_sym(name);
  if (!f || f == self) return new_failed(n, align, true);
  if (align) return ((void *(*)(size_t, size_t, const nothrow_t *))f)(n, align, t);
  return ((void *(*)(size_t, const nothrow_t *))f)(n, t);
}

static inline void *new_nothrow(size_t n, size_t align, const nothrow_t *t, const char *name, void *self) {
  void *p = alloc(n, align);
  return likely(p != NULL) ? p : nothrow_failed(n, align, t, name, self);
}
#define NOTHROW(n, align, t, fn) new_nothrow(n, align, t, #fn, (void *)fn)

/* Like libstdc++: an alignment that is not a power of two is bad_alloc. */
#define BAD_ALIGN(align) unlikely((align) == 0 || ((align) & ((align) - 1)))

/* Sized delete: free()'s push when n is of the class of the small block
 * p; anything else (large blocks, a size from another class, a full bin,
 * invalid pointers) goes to free_sized's checking path, which accepts what
 * realloc may have left and reports a wrong size. */
static inline void delete_sized(void *p, size_t n) {
  if (likely(xa_free_sized_fast(p, n))) return;
  xa_free_sized_checked(p, n);
}

/* Aligned delete: checked like free_aligned_sized; without a size, only
 * the alignment. */
static inline void delete_aligned(void *p, size_t n, size_t align) {
  xa_free_aligned(p, align, n, true, "free_aligned_sized");
}
static inline void delete_aligned_unsized(void *p, size_t align) {
  xa_free_aligned(p, align, 0, false, "free_aligned_sized");
}

#define NEW XA_EXPORT __attribute__((malloc))

/* operator new(size_t), new[](size_t), and their nothrow forms */
NEW XA_ENTRY void *_Znwm(size_t n) { return xa_malloc_fast_or(n, new_slow); }
NEW XA_ENTRY void *_Znam(size_t n) { return xa_malloc_fast_or(n, new_slow); }
NEW void *_ZnwmRKSt9nothrow_t(size_t n, const nothrow_t *t) { return NOTHROW(n, 0, t, _ZnwmRKSt9nothrow_t); }
NEW void *_ZnamRKSt9nothrow_t(size_t n, const nothrow_t *t) { return NOTHROW(n, 0, t, _ZnamRKSt9nothrow_t); }
/* operator new(size_t, align_val_t), new[], nothrow forms */
NEW void *_ZnwmSt11align_val_t(size_t n, size_t al) { return BAD_ALIGN(al) ? bad_alloc(false) : new_impl(n, al); }
NEW void *_ZnamSt11align_val_t(size_t n, size_t al) { return BAD_ALIGN(al) ? bad_alloc(false) : new_impl(n, al); }
NEW void *_ZnwmSt11align_val_tRKSt9nothrow_t(size_t n, size_t al, const nothrow_t *t) {
  return BAD_ALIGN(al) ? NULL : NOTHROW(n, al, t, _ZnwmSt11align_val_tRKSt9nothrow_t);
}
NEW void *_ZnamSt11align_val_tRKSt9nothrow_t(size_t n, size_t al, const nothrow_t *t) {
  return BAD_ALIGN(al) ? NULL : NOTHROW(n, al, t, _ZnamSt11align_val_tRKSt9nothrow_t);
}

/* operator delete(void *), delete[], nothrow forms, sized forms */
XA_EXPORT XA_ENTRY void _ZdlPv(void *p) { xa_free_fast(p); }
XA_EXPORT XA_ENTRY void _ZdaPv(void *p) { xa_free_fast(p); }
XA_EXPORT void _ZdlPvRKSt9nothrow_t(void *p, const nothrow_t *t) { xa_free_fast(p); }
XA_EXPORT void _ZdaPvRKSt9nothrow_t(void *p, const nothrow_t *t) { xa_free_fast(p); }
XA_EXPORT XA_ENTRY void _ZdlPvm(void *p, size_t n) { delete_sized(p, n); }
XA_EXPORT XA_ENTRY void _ZdaPvm(void *p, size_t n) { delete_sized(p, n); }
/* operator delete(void *, align_val_t), delete[], nothrow and sized forms */
XA_EXPORT void _ZdlPvSt11align_val_t(void *p, size_t al) { delete_aligned_unsized(p, al); }
XA_EXPORT void _ZdaPvSt11align_val_t(void *p, size_t al) { delete_aligned_unsized(p, al); }
XA_EXPORT void _ZdlPvSt11align_val_tRKSt9nothrow_t(void *p, size_t al, const nothrow_t *t) { delete_aligned_unsized(p, al); }
XA_EXPORT void _ZdaPvSt11align_val_tRKSt9nothrow_t(void *p, size_t al, const nothrow_t *t) { delete_aligned_unsized(p, al); }
XA_EXPORT void _ZdlPvmSt11align_val_t(void *p, size_t n, size_t al) { delete_aligned(p, n, al); }
XA_EXPORT void _ZdaPvmSt11align_val_t(void *p, size_t n, size_t al) { delete_aligned(p, n, al); }
