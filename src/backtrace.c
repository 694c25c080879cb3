/* Frame-pointer stack walks (backtrace.h). */
#include "backtrace.h"
#include "os.h"
#include <dlfcn.h>
#include <elf.h>
#include <unwind.h>
#include <link.h>
#include <string.h>

/* The mapping holding the thread's stack, as found at its first walk
 * (again when the stack pointer leaves it: a signal stack, a coroutine). */
static __thread uintptr_t stack_lo __attribute__((tls_model("initial-exec")));
static __thread uintptr_t stack_hi __attribute__((tls_model("initial-exec")));
/* The executable segment of the ELF object whose header is at base. */
static void text_of(uintptr_t base, uintptr_t *lo, uintptr_t *hi) {
  const ElfW(Ehdr) *eh = (const void *)base;
  const ElfW(Phdr) *ph = (const void *)(base + eh->e_phoff);
  uintptr_t first = UINTPTR_MAX;
  *lo = UINTPTR_MAX;
  *hi = 0;
  for (unsigned i = 0; i < eh->e_phnum; i++)
    if (ph[i].p_type == PT_LOAD && ph[i].p_vaddr < first) first = ph[i].p_vaddr;
  uintptr_t bias = base - first;
  for (unsigned i = 0; i < eh->e_phnum; i++) {
    if (ph[i].p_type != PT_LOAD || !(ph[i].p_flags & PF_X)) continue;
    if (bias + ph[i].p_vaddr < *lo) *lo = bias + ph[i].p_vaddr;
    if (bias + ph[i].p_vaddr + ph[i].p_memsz > *hi) *hi = bias + ph[i].p_vaddr + ph[i].p_memsz;
  }
}

/* xalloc's code, whose frames the walk leaves out.  Linked from
 * libxalloc.a, it is the section xalloc_text (the Makefile gathers it
 * there), whose bounds the linker defines; as libxalloc.so, the object's
 * executable segment, found from its own ELF header.  Neither (objects
 * built some other way): the frames are kept and pprof drops them by
 * name (prof.c's drop_frames). */
static uintptr_t self_lo, self_hi;
extern const char __start_xalloc_text[] __attribute__((weak, visibility("hidden")));
extern const char __stop_xalloc_text[] __attribute__((weak, visibility("hidden")));
extern const ElfW(Ehdr) __ehdr_start __attribute__((weak, visibility("hidden")));
extern ElfW(Dyn) _DYNAMIC[] __attribute__((weak, visibility("hidden")));

void xa_backtrace_init(void) {
  uintptr_t lo = (uintptr_t)__start_xalloc_text, hi = (uintptr_t)__stop_xalloc_text;
  if (!lo) {
    /* a shared object of ours has a soname (the Makefile links with one) */
    bool shared = false;
    for (const ElfW(Dyn) *d = _DYNAMIC; d && d->d_tag != DT_NULL; d++) shared |= d->d_tag == DT_SONAME;
    if (shared && &__ehdr_start) text_of((uintptr_t)&__ehdr_start, &lo, &hi);
  }
  if (lo < hi && lo <= (uintptr_t)xa_backtrace && (uintptr_t)xa_backtrace < hi) {
    self_lo = lo;
    self_hi = hi;
  }
}

bool xa_backtrace_in_loader(uintptr_t pc) {
  static uintptr_t lo, hi;
  static int known;
  if (!__atomic_load_n(&known, __ATOMIC_ACQUIRE)) {
    uintptr_t base = xa_os_loader_base(), l = 0, h = 0;
    if (base && !memcmp((const void *)base, ELFMAG, SELFMAG)) text_of(base, &l, &h);
    lo = l;
    hi = h;
    __atomic_store_n(&known, 1, __ATOMIC_RELEASE);
  }
  return pc >= lo && pc < hi;
}

bool xa_backtrace_skips_self(void) { return self_hi != 0; }

struct find { uintptr_t addr, lo, hi; };

static bool find_stack(const struct xa_os_mapping *m, void *arg) {
  struct find *f = arg;
  if (f->addr < m->start) return false;         /* in address order: passed it */
  if (f->addr >= m->end) return true;
  if (m->r && m->w) {
    f->lo = m->start;
    f->hi = m->end;
  }
  return false;
}

/* libgcc's unwinder (prof_unwind:libgcc), found at load: it reads the
 * unwind tables (.eh_frame), so it also walks code built without frame
 * pointers.  It finds a frame's tables with _dl_find_object, which takes
 * no lock in glibc 2.35 and later (GCC 12's libgcc uses it); it allocates
 * nothing on this path.  A thread inside it is not walked again (a malloc
 * it might make would sample with an empty stack). */
static _Unwind_Reason_Code (*unwind_backtrace)(_Unwind_Trace_Fn, void *);
static _Unwind_Ptr (*unwind_get_ip)(struct _Unwind_Context *);
static __thread bool unwinding __attribute__((tls_model("initial-exec")));

struct walk { uintptr_t *pcs; unsigned n, max; bool inside; };

static _Unwind_Reason_Code unwind_step(struct _Unwind_Context *ctx, void *arg) {
  struct walk *w = arg;
  uintptr_t ip = (uintptr_t)unwind_get_ip(ctx);
  if (ip < 4096) return _URC_END_OF_STACK;
  if (w->inside && ip >= self_lo && ip < self_hi) return _URC_NO_REASON;
  w->inside = false;
  w->pcs[w->n++] = ip;
  return w->n < w->max ? _URC_NO_REASON : _URC_END_OF_STACK;
}

bool xa_backtrace_use_unwinder(void) {
  void *h = NULL;
  void *bt = dlsym(RTLD_DEFAULT, "_Unwind_Backtrace"), *ip = dlsym(RTLD_DEFAULT, "_Unwind_GetIP");
  if (!bt || !ip) {             /* a C program: libgcc_s is not loaded yet */
    h = dlopen("libgcc_s.so.1", RTLD_NOW | RTLD_LOCAL);
    bt = h ? dlsym(h, "_Unwind_Backtrace") : NULL;
    ip = h ? dlsym(h, "_Unwind_GetIP") : NULL;
  }
  if (!bt || !ip) return false;
  unwind_get_ip = (_Unwind_Ptr (*)(struct _Unwind_Context *))ip;
  /* a first walk here, at load: libgcc sets its tables up once (under
   * pthread_once), not from inside a malloc */
  uintptr_t pcs[4];
  struct walk w = {pcs, 0, 4, false};
  ((_Unwind_Reason_Code (*)(_Unwind_Trace_Fn, void *))bt)(unwind_step, &w);
  __atomic_store_n(&unwind_backtrace, (_Unwind_Reason_Code (*)(_Unwind_Trace_Fn, void *))bt, __ATOMIC_RELEASE);
  return true;
}

XA_NOINLINE unsigned xa_backtrace(uintptr_t *pcs, unsigned max) {
  _Unwind_Reason_Code (*bt)(_Unwind_Trace_Fn, void *) = __atomic_load_n(&unwind_backtrace, __ATOMIC_ACQUIRE);
  if (bt) {
    if (unwinding) return 0;
    unwinding = true;
    struct walk w = {pcs, 0, max, self_hi != 0};
    bt(unwind_step, &w);
    unwinding = false;
    return w.n;
  }
  uintptr_t fp = (uintptr_t)__builtin_frame_address(0), sp = fp;
  /* The range learnt may be stale: a coroutine's stack unmapped, and a
   * smaller mapping made at the same place.  Its last page still mapped
   * says it is not (one mincore). */
  if (sp < stack_lo || sp >= stack_hi || !xa_os_is_mapped((const void *)(stack_hi - 1))) {
    struct find f = {sp, 0, 0};
    xa_os_maps(find_stack, &f);
    stack_lo = f.lo;
    stack_hi = f.hi;
    if (!f.hi) return 0;
  }
  unsigned n = 0;
  bool inside = self_hi != 0;          /* still in xalloc's frames */
  while (n < max) {
    if ((fp & (sizeof(uintptr_t) - 1)) || fp < sp || fp > stack_hi - 2 * sizeof(uintptr_t)) break;
    uintptr_t next = ((const uintptr_t *)fp)[0], ret = ((const uintptr_t *)fp)[1];
    if (ret < 4096) break;
    if (!(inside && ret >= self_lo && ret < self_hi)) {
      inside = false;
      pcs[n++] = ret;
    }
    if (next <= fp) break;             /* frames go up the stack: a loop or garbage */
    fp = next;
  }
  return n;
}
