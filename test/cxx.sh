#!/bin/sh
# cxx.sh: the C++ operators new/delete that libxalloc exports itself
# (src/cxx_new.c).
#  (a) nm -D: libxalloc.so exports every operator new/delete that
#      libstdc++.so.6 exports (20 with GCC 12).
#  (b) a C++ program exercising every variant: plain, array, nothrow, sized
#      delete (explicit and compiler-emitted: virtual destructors, arrays with
#      a cookie), aligned new for alignments 1..1 MiB (explicit calls and
#      over-aligned types), aligned sized/nothrow delete, containers, threads
#      deleting each other's objects; failures: std::bad_alloc for an
#      impossible size (plain, array, aligned) and for an alignment that is
#      not a power of two, nullptr from the nothrow forms, a new_handler that
#      is called until it uninstalls itself (throwing and nothrow forms), a
#      handler that throws bad_alloc (the exception crosses xalloc's C
#      frames; the nothrow forms return nullptr), and a handler that frees a
#      reserve under RLIMIT_AS so that the retry succeeds.  Built four ways:
#      without xalloc (checks the test itself against libstdc++), linked
#      -lxalloc, linked with libxalloc.a, fully static with libxalloc.a; the
#      plain build also runs under LD_PRELOAD.  All dynamic runs must print
#      the same result (the static one skips the throwing handler in nothrow
#      new, which only libstdc++'s shared library can catch for xalloc).
#  (c) which operator new a program gets: dladdr(&operator new) is in
#      libxalloc with -lxalloc and under LD_PRELOAD, in the executable with
#      libxalloc.a.
#  (d) misuse is caught: sized delete with a wrong size, aligned delete with
#      an alignment the block does not have (xalloc's one-line report, abort).
#  (e) a C program under LD_PRELOAD that dlopens a C++ plugin RTLD_LOCAL
#      (libstdc++ not global): bad_alloc still reaches the plugin's catch,
#      the new_handler is called, nothrow new with a throwing handler gives
#      nullptr; and a C program without libstdc++ calling operator new for
#      an impossible size gets xalloc's one-line message and abort.
#
# Env: XALLOC_SO, XALLOC_A, BUILD, SRC, CC, CXX.  Exit 0 = all passed.

set -u
export LC_ALL=C
. "${SRC:?SRC must be set}/test/lib/common.sh"
tu_setup cxx
if ! command -v "$CXX" >/dev/null 2>&1; then
    echo "FAIL: no C++ compiler '$CXX' (install the Debian package g++, part of build-essential)"
    exit 1
fi

# ---- (a) exported operators ---------------------------------------------------
OPS="_Znwm _Znam _ZnwmRKSt9nothrow_t _ZnamRKSt9nothrow_t _ZdlPv _ZdaPv _ZdlPvm _ZdaPvm
_ZdlPvRKSt9nothrow_t _ZdaPvRKSt9nothrow_t _ZnwmSt11align_val_t _ZnamSt11align_val_t
_ZnwmSt11align_val_tRKSt9nothrow_t _ZnamSt11align_val_tRKSt9nothrow_t _ZdlPvSt11align_val_t
_ZdaPvSt11align_val_t _ZdlPvmSt11align_val_t _ZdaPvmSt11align_val_t
_ZdlPvSt11align_val_tRKSt9nothrow_t _ZdaPvSt11align_val_tRKSt9nothrow_t"
nm -D --defined-only "$XALLOC_SO" | awk '$2 == "T" || $2 == "W" { sub(/@.*/, "", $3); print $3 }' | sort >"$W/xalloc.syms"
stdcxx=$($CXX -print-file-name=libstdc++.so.6)
if [ -f "$stdcxx" ]; then
    nm -D --defined-only "$stdcxx" | awk '{ sub(/@.*/, "", $3); print $3 }' |
        grep -E '^_Z(n[wa]|d[la])' | sort -u >"$W/stdcxx.ops"
else
    echo "note: $CXX -print-file-name=libstdc++.so.6 found nothing; checking the GCC 12 list"
    : >"$W/stdcxx.ops"
fi
missing=
for s in $OPS $(cat "$W/stdcxx.ops"); do
    grep -qx "$s" "$W/xalloc.syms" || missing="$missing $s"
done
# shellcheck disable=SC2046,SC2086 # word lists
nops=$(printf '%s\n' $OPS $(cat "$W/stdcxx.ops") | sort -u | wc -l)
if [ -n "$missing" ]; then
    fail "libxalloc.so does not export:$missing"
else
    ok "libxalloc.so exports all $nops operator new/delete symbols of libstdc++"
fi
# every strong undefined symbol must come from glibc (versioned GLIBC_*)
nm -D "$XALLOC_SO" | awk '$1 == "U" && $2 !~ /@GLIBC_/ { print $2 }' >"$W/strong"
if [ -s "$W/strong" ]; then
    fail "libxalloc.so has strong references outside glibc (the C++ runtime must stay weak):"
    sed 's/^/    /' "$W/strong"
elif readelf -d "$XALLOC_SO" | grep NEEDED | grep -v -E 'libc\.so|libpthread\.so|ld-linux' >"$W/needed"; then
    fail "libxalloc.so needs more than libc:"
    sed 's/^/    /' "$W/needed"
else
    ok "libxalloc.so needs only $(readelf -d "$XALLOC_SO" | sed -n 's/.*NEEDED.*\[\(.*\)\]/\1/p' | tr '\n' ' ' | sed 's/ $//')"
fi

# ---- (b) the C++ program --------------------------------------------------------
cat >"$W/ops.cpp" <<'EOF'
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <vector>
#include <sys/resource.h>
#ifndef NO_DL
#include <dlfcn.h>
#endif

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "CHECK FAILED line %d: %s\n", __LINE__, #c); exit(2); } } while (0)

static unsigned long checks;
#define OK(c) do { CHECK(c); checks++; } while (0)

/* Keep the compiler from eliding new/delete pairs. */
static void escape(void *p) { asm volatile("" : : "r"(p) : "memory"); }
static void *keep(void *p) { escape(p); return p; }
static bool is_aligned(const void *p, size_t a) { return ((uintptr_t)p & (a - 1)) == 0; }
static void use(void *p, size_t n, int v)
{
    escape(p);
    if (n) { memset(p, v, n); OK(((unsigned char *)p)[0] == (unsigned char)v && ((unsigned char *)p)[n - 1] == (unsigned char)v); }
}

struct Base { virtual ~Base() {} int b[3]; };
struct Derived : Base { char pad[200]; ~Derived() override { pad[0] = 0; } };
struct alignas(64) Over { char c[100]; };
struct alignas(4096) Page { char c[5000]; ~Page() { c[0] = 0; } };

static volatile size_t impossible = SIZE_MAX / 2;

static int calls, limit;
static char *reserve;
static void counting_handler() { if (++calls >= limit) std::set_new_handler(nullptr); }
static void throwing_handler() { calls++; throw std::bad_alloc(); }
static void reserve_handler()
{
    calls++;
    delete[] reserve;
    reserve = nullptr;
    std::set_new_handler(nullptr);
}

template <class F> static bool throws_bad_alloc(F f)
{
    try { f(); } catch (const std::bad_alloc &) { return true; }
    return false;
}

static void plain()
{
    static const size_t sizes[] = {0, 1, 8, 16, 17, 100, 1000, 4096, 32768, 32769, 100000, (size_t)3 << 20};
    for (size_t n : sizes) {
        void *p = ::operator new(n); use(p, n, 1); ::operator delete(p);
        p = ::operator new(n); use(p, n, 2); ::operator delete(p, n);
        p = ::operator new[](n); use(p, n, 3); ::operator delete[](p);
        p = ::operator new[](n); use(p, n, 4); ::operator delete[](p, n);
        p = ::operator new(n, std::nothrow); OK(p); use(p, n, 5); ::operator delete(p, std::nothrow);
        p = ::operator new[](n, std::nothrow); OK(p); use(p, n, 6); ::operator delete[](p, std::nothrow);
    }
    ::operator delete(nullptr); ::operator delete[](nullptr); ::operator delete(nullptr, (size_t)8);
    ::operator delete(nullptr, std::align_val_t(64));
    /* compiler-emitted sized deletes */
    for (int i = 0; i < 1000; i++) {
        Base *b = i % 2 ? new Derived : new Base;
        escape(b);
        delete b;                                   /* sized: the dynamic type's size */
        Derived *a = new Derived[1 + i % 9];        /* array cookie */
        escape(a);
        delete[] a;
        std::string *s = new std::string(i % 300, 'x');
        OK(s->size() == (size_t)(i % 300));
        delete s;
    }
    std::map<int, std::string> m;
    std::vector<std::vector<int>> vv;
    for (int i = 0; i < 20000; i++) {
        m[i % 3000] = std::string(i % 77, 'a' + i % 26);
        vv.emplace_back(i % 50, i);
        if (vv.size() > 500) vv.erase(vv.begin(), vv.begin() + 250);
    }
    OK(m.size() == 3000);
}

static void aligned()
{
    for (size_t a = 1; a <= ((size_t)1 << 20); a *= 2) {
        std::align_val_t al = std::align_val_t(a);
        const size_t sizes[] = {1, a / 2 + 1, a, 3 * a + 5};
        for (size_t n : sizes) {
            void *p = ::operator new(n, al); OK(is_aligned(p, a)); use(p, n, 7); ::operator delete(p, al);
            p = ::operator new(n, al); OK(is_aligned(p, a)); use(p, n, 8); ::operator delete(p, n, al);
            p = ::operator new[](n, al); OK(is_aligned(p, a)); use(p, n, 9); ::operator delete[](p, al);
            p = ::operator new[](n, al); OK(is_aligned(p, a)); use(p, n, 10); ::operator delete[](p, n, al);
            p = ::operator new(n, al, std::nothrow); OK(p && is_aligned(p, a)); use(p, n, 11); ::operator delete(p, al, std::nothrow);
            p = ::operator new[](n, al, std::nothrow); OK(p && is_aligned(p, a)); use(p, n, 12); ::operator delete[](p, al, std::nothrow);
        }
    }
    for (int i = 0; i < 200; i++) {
        Over *o = new Over; OK(is_aligned(o, 64)); use(o, sizeof *o, 13); delete o;
        Over *oa = new Over[1 + i % 7]; OK(is_aligned(oa, 64)); delete[] oa;
        Over *on = new (std::nothrow) Over; OK(on && is_aligned(on, 64)); delete on;
        Page *pg = new Page[1 + i % 3]; OK(is_aligned(pg, 4096)); escape(pg); delete[] pg;
        std::vector<Over> v(i % 40); OK(is_aligned(v.data(), 64) || v.empty());
    }
}

static void failures()
{
    size_t big = impossible;
    OK(!std::get_new_handler());
    /* no handler: bad_alloc / nullptr */
    OK(throws_bad_alloc([&] { escape(::operator new(big)); }));
    OK(throws_bad_alloc([&] { escape(new char[big]); }));
    OK(throws_bad_alloc([&] { escape(::operator new(big, std::align_val_t(64))); }));
    OK(throws_bad_alloc([&] { escape(::operator new[](big, std::align_val_t(4096))); }));
    OK(keep(::operator new(big, std::nothrow)) == nullptr);
    OK(keep(new (std::nothrow) char[big]) == nullptr);
    OK(keep(::operator new(big, std::align_val_t(64), std::nothrow)) == nullptr);
    OK(keep(::operator new[](big, std::align_val_t(64), std::nothrow)) == nullptr);
    /* alignment not a power of two: bad_alloc, as libstdc++ does */
    OK(throws_bad_alloc([&] { escape(::operator new(16, std::align_val_t(48))); }));
    OK(keep(::operator new(16, std::align_val_t(48), std::nothrow)) == nullptr);
    /* the handler is called until it uninstalls itself */
    calls = 0; limit = 3; std::set_new_handler(counting_handler);
    OK(throws_bad_alloc([&] { escape(::operator new(big)); }) && calls == 3);
    calls = 0; limit = 2; std::set_new_handler(counting_handler);
    OK(keep(::operator new[](big, std::nothrow)) == nullptr && calls == 2);
    calls = 0; limit = 4; std::set_new_handler(counting_handler);
    OK(throws_bad_alloc([&] { escape(::operator new(big, std::align_val_t(256))); }) && calls == 4);
    OK(!std::get_new_handler());
    /* a handler that throws */
    calls = 0; std::set_new_handler(throwing_handler);
    OK(throws_bad_alloc([&] { escape(new char[big]); }) && calls == 1);
#ifndef NO_DL
    /* ... from a nothrow new: nullptr (xalloc lets libstdc++'s nothrow
     * operator catch it; a fully static program cannot, it terminates) */
    OK(keep(::operator new(big, std::nothrow)) == nullptr && calls == 2);
    OK(keep(new (std::nothrow) char[big]) == nullptr && calls == 3);
    OK(keep(::operator new(big, std::align_val_t(128), std::nothrow)) == nullptr && calls == 4);
    OK(keep(::operator new[](big, std::align_val_t(128), std::nothrow)) == nullptr && calls == 5);
#endif
    std::set_new_handler(nullptr);
    /* a handler that frees a reserve: the retry succeeds (address space
     * limited so that the request fails until the reserve is gone; the
     * reserve is larger than xalloc's 1 GiB regions of address space, so
     * no free room is left beside it) */
    const size_t R = (size_t)1280 << 20, N = (size_t)200 << 20;
    reserve = new char[R];
    use(reserve, 4096, 14);
    FILE *f = fopen("/proc/self/status", "r");
    CHECK(f);
    char line[256];
    long vm_kb = -1;
    while (fgets(line, sizeof line, f)) sscanf(line, "VmSize: %ld kB", &vm_kb);
    fclose(f);
    CHECK(vm_kb > 0);
    struct rlimit old, lim;
    CHECK(getrlimit(RLIMIT_AS, &old) == 0);
    lim = old;
    lim.rlim_cur = (rlim_t)vm_kb * 1024 + ((rlim_t)96 << 20);
    if (old.rlim_cur != RLIM_INFINITY && old.rlim_cur < lim.rlim_cur) {
        fprintf(stderr, "note: RLIMIT_AS already set; reserve test skipped\n");
        delete[] reserve;
    } else {
        CHECK(setrlimit(RLIMIT_AS, &lim) == 0);
        calls = 0;
        std::set_new_handler(reserve_handler);
        char *p = nullptr;
        bool threw = throws_bad_alloc([&] { p = new char[N]; });
        CHECK(setrlimit(RLIMIT_AS, &old) == 0);
        OK(!threw && p && calls == 1 && reserve == nullptr && !std::get_new_handler());
        use(p, 1 << 20, 15);
        delete[] p;
    }
}

static std::mutex mu;
static std::vector<Base *> shared;
static void threads()
{
    std::vector<std::thread> ts;
    for (int t = 0; t < 4; t++)
        ts.emplace_back([t] {
            for (int i = 0; i < 20000; i++) {
                Base *b = (i + t) % 3 ? new Derived : new Base;
                Base *old = nullptr;
                {
                    std::lock_guard<std::mutex> g(mu);
                    shared.push_back(b);
                    if (shared.size() > 100) { old = shared.front(); shared.erase(shared.begin()); }
                }
                delete old;               /* often another thread's object */
                std::string s(i % 500, 'q');
                escape(&s);
            }
        });
    for (auto &t : ts) t.join();
    for (Base *b : shared) delete b;
    shared.clear();
}

#ifndef NO_DL
static const char *where(void *fn)
{
    static char buf[512];
    Dl_info d, m;
    if (!dladdr(fn, &d) || !dladdr((void *)&where, &m)) return "unknown";
    if (d.dli_fbase == m.dli_fbase) return "exe";
    if (d.dli_fname && strstr(d.dli_fname, "libxalloc")) return "libxalloc";
    snprintf(buf, sizeof buf, "other:%s", d.dli_fname ? d.dli_fname : "?");
    return buf;
}
#endif

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "run";
    if (!strcmp(mode, "where")) {
#ifndef NO_DL
        void *nw = (void *)static_cast<void *(*)(size_t)>(&::operator new);
        void *dl = (void *)static_cast<void (*)(void *, size_t)>(&::operator delete);
        void *na = (void *)static_cast<void *(*)(size_t, std::align_val_t)>(&::operator new[]);
        printf("operator new: %s\n", where(nw));
        printf("operator delete(void *, size_t): %s\n", where(dl));
        printf("operator new[](size_t, align_val_t): %s\n", where(na));
        printf("dlsym agrees: %d\n", dlsym(RTLD_DEFAULT, "_Znwm") == nw);
#endif
        return 0;
    }
    if (!strcmp(mode, "badsize")) {
        char *p = new char[100];
        escape(p);
        ::operator delete[](p, 5000);
        puts("wrong size not detected");
        return 0;
    }
    if (!strcmp(mode, "doubledelete")) {
        /* sized delete takes the thread cache's fast path: it must mark the
         * block freed as free() does, so the second delete is caught */
        long *p = new long[4];
        escape(p);
        ::operator delete[](p, 4 * sizeof(long));
        escape(p);
        ::operator delete[](p, 4 * sizeof(long));
        puts("double delete not detected");
        return 0;
    }
    if (!strcmp(mode, "badalign")) {
        void *p;
        do p = ::operator new(100, std::align_val_t(64)); while (is_aligned(p, (size_t)1 << 20));
        escape(p);
        ::operator delete(p, std::align_val_t((size_t)1 << 20));
        puts("wrong alignment not detected");
        return 0;
    }
    plain();
    aligned();
    failures();
    threads();
    printf("ok: %lu checks\n", checks);
    return 0;
}
EOF

CXXFLAGS="-std=c++17 -O1 -g -pthread -Wall -Wno-unused-result"
# run_ops NAME BIN [ENV...]: the workload must print "ok: N checks" and
# nothing from xalloc on stderr
run_ops() {
    name=$1 bin=$2
    shift 2
    env "$@" timeout 120 "$bin" run >"$W/$name.out" 2>"$W/$name.err"
    rc=$?
    if [ $rc -ne 0 ] || ! grep -q '^ok: [0-9]* checks$' "$W/$name.out"; then
        fail "$name: workload failed (rc=$rc):"
        cat "$W/$name.out" "$W/$name.err" | head -20 | sed 's/^/    /'
    elif grep -q -E 'xalloc: |ERROR: ld.so' "$W/$name.err"; then
        fail "$name: stderr has a report:"
        head -5 "$W/$name.err" | sed 's/^/    /'
    else
        ok "$name: $(cat "$W/$name.out")$(grep '^note' "$W/$name.err" | sed 's/^/; /')"
        [ "$name" = "-static libxalloc.a" ] || cat "$W/$name.out" >>"$W/all.out"
    fi
}
# check_where NAME BIN WANT [ENV...]: the operators resolve to WANT
check_where() {
    name=$1 bin=$2 want=$3
    shift 3
    env "$@" "$bin" where >"$W/$name.where" 2>&1
    if [ "$(grep -c ": $want\$" "$W/$name.where")" -ne 3 ] || ! grep -q '^dlsym agrees: 1$' "$W/$name.where"; then
        fail "$name: operators expected in $want, got:"
        sed 's/^/    /' "$W/$name.where"
    else
        ok "$name: operator new/delete resolve to $want"
    fi
}
# check_misuse NAME BIN MODE EXPECTED-LINE-PREFIX [ENV...]
check_misuse() {
    name=$1 bin=$2 mode=$3 want=$4
    shift 4
    env "$@" timeout 60 "$bin" "$mode" >"$W/$name.$mode.out" 2>"$W/$name.$mode.err"
    rc=$?
    if [ $rc -ne 134 ] || ! grep -q "^$want" "$W/$name.$mode.err"; then
        fail "$name: $mode not reported (want exit 134 and '$want...'; rc=$rc):"
        cat "$W/$name.$mode.out" "$W/$name.$mode.err" | head -5 | sed 's/^/    /'
    else
        ok "$name: $mode caught: $(head -1 "$W/$name.$mode.err")"
    fi
}

: >"$W/all.out"
# reference: libstdc++'s own operators (checks the test)
if $CXX $CXXFLAGS -o "$W/ops_plain" "$W/ops.cpp" >"$W/plain.ld" 2>&1; then
    run_ops "reference (no xalloc)" "$W/ops_plain"
    run_ops "LD_PRELOAD" "$W/ops_plain" LD_PRELOAD="$XALLOC_SO"
    check_where "LD_PRELOAD" "$W/ops_plain" libxalloc LD_PRELOAD="$XALLOC_SO"
    check_misuse "LD_PRELOAD" "$W/ops_plain" badsize "xalloc: free_sized: size does not match block" LD_PRELOAD="$XALLOC_SO"
    check_misuse "LD_PRELOAD" "$W/ops_plain" badalign "xalloc: free_aligned_sized: " LD_PRELOAD="$XALLOC_SO"
    check_misuse "LD_PRELOAD" "$W/ops_plain" doubledelete "xalloc: free[a-z_]*: double free" LD_PRELOAD="$XALLOC_SO"
else
    fail "cannot compile the C++ test program:"
    head -20 "$W/plain.ld"
fi

if $CXX $CXXFLAGS -I"$SRC/include" -o "$W/ops_dyn" "$W/ops.cpp" -L"$LIBDIR" -Wl,-rpath,"$LIBDIR" -lxalloc \
    >"$W/dyn.ld" 2>&1; then
    run_ops "-lxalloc" "$W/ops_dyn"
    check_where "-lxalloc" "$W/ops_dyn" libxalloc
    check_misuse "-lxalloc" "$W/ops_dyn" badsize "xalloc: free_sized: size does not match block"
else
    fail "linking the C++ program with -lxalloc failed:"
    head -20 "$W/dyn.ld"
fi

if $CXX $CXXFLAGS -o "$W/ops_ar" "$W/ops.cpp" "$XALLOC_A" >"$W/ar.ld" 2>&1; then
    run_ops "libxalloc.a" "$W/ops_ar"
    check_where "libxalloc.a" "$W/ops_ar" exe
    check_misuse "libxalloc.a" "$W/ops_ar" badalign "xalloc: free_aligned_sized: "
else
    fail "linking the C++ program with libxalloc.a failed:"
    head -20 "$W/ar.ld"
fi

if $CXX $CXXFLAGS -static -DNO_DL -o "$W/ops_static" "$W/ops.cpp" "$XALLOC_A" >"$W/static.ld" 2>&1; then
    run_ops "-static libxalloc.a" "$W/ops_static"
    if ! nm "$W/ops_static" | grep -q ' T _Znwm$' || ! nm "$W/ops_static" | grep -q ' T xalloc_version$'; then
        fail "-static: operator new is not xalloc's (no xalloc_version next to it)"
    fi
    check_misuse "-static libxalloc.a" "$W/ops_static" badsize "xalloc: free_sized: size does not match block"
    check_misuse "-static libxalloc.a" "$W/ops_static" doubledelete "xalloc: free[a-z_]*: double free"
elif grep -q -E 'cannot find -l(stdc\+\+|c|m)' "$W/static.ld"; then
    echo "skip: no static libstdc++/libc to link a -static C++ program"
else
    fail "linking the C++ program -static with libxalloc.a failed:"
    head -20 "$W/static.ld"
fi

if [ -s "$W/all.out" ] && [ "$(sort -u "$W/all.out" | wc -l)" -ne 1 ]; then
    fail "the builds disagree:"
    sed 's/^/    /' "$W/all.out"
fi

# ---- (e) libstdc++ not in the global scope; no libstdc++ at all -------------------
cat >"$W/plugin.cpp" <<'EOF'
#include <cstdint>
#include <new>
#include <string>
#include <vector>
static volatile size_t impossible = SIZE_MAX / 2;
static int calls;
static void handler() { if (++calls == 2) std::set_new_handler(nullptr); }
static void throwing_handler() { calls++; throw std::bad_alloc(); }
extern "C" int plugin_run(void)
{
    std::vector<std::string> v;
    for (int i = 0; i < 10000; i++) v.push_back(std::string(i % 100, 'p'));
    int r = 0;
    try { char *p = new char[impossible]; asm volatile("" : : "r"(p)); } catch (const std::bad_alloc &) { r |= 1; }
    std::set_new_handler(handler);
    try { char *p = new char[impossible]; asm volatile("" : : "r"(p)); } catch (const std::bad_alloc &) { r |= calls == 2 ? 2 : 0; }
    std::set_new_handler(throwing_handler);
    char *q = new (std::nothrow) char[impossible];
    asm volatile("" : : "r"(q));
    if (!q && calls == 3) r |= 4;
    std::set_new_handler(nullptr);
    return r == 7 && v.size() == 10000 ? 0 : 10 + r;
}
EOF
cat >"$W/host.c" <<'EOF'
#include <dlfcn.h>
#include <stdio.h>
int main(int argc, char **argv)
{
    void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!h) { fprintf(stderr, "dlopen: %s\n", dlerror()); return 1; }
    int (*run)(void) = (int (*)(void))dlsym(h, "plugin_run");
    if (!run) return 1;
    int r = run();
    printf("plugin_run: %d\n", r);
    return r;
}
EOF
cat >"$W/cnew.c" <<'EOF'
#include <stdint.h>
#include <stdio.h>
void *_Znwm(size_t);
void _ZdlPv(void *);
int main(void)
{
    void *p = _Znwm(100);
    _ZdlPv(p);
    volatile size_t big = SIZE_MAX / 2;
    p = _Znwm(big);
    printf("operator new returned %p\n", p);
    return 0;
}
EOF
if $CXX -std=c++17 -O1 -fPIC -shared -o "$W/plugin.so" "$W/plugin.cpp" >"$W/plugin.ld" 2>&1 &&
    $CC -O1 -o "$W/host" "$W/host.c" >"$W/host.ld" 2>&1; then
    LD_PRELOAD=$XALLOC_SO timeout 60 "$W/host" "$W/plugin.so" >"$W/host.out" 2>&1
    rc=$?
    if [ $rc -ne 0 ]; then
        fail "C host, C++ plugin dlopened RTLD_LOCAL, under LD_PRELOAD: rc=$rc"
        sed 's/^/    /' "$W/host.out" | head -5
    else
        ok "C host + RTLD_LOCAL C++ plugin under LD_PRELOAD: bad_alloc and new_handler work"
    fi
else
    fail "cannot build the plugin test:"
    cat "$W/plugin.ld" "$W/host.ld" | head -10
fi
if $CC -O1 -o "$W/cnew" "$W/cnew.c" -L"$LIBDIR" -Wl,-rpath,"$LIBDIR" -lxalloc >"$W/cnew.ld" 2>&1; then
    timeout 60 "$W/cnew" >"$W/cnew.out" 2>"$W/cnew.err"
    rc=$?
    if [ $rc -ne 134 ] || ! grep -q '^xalloc: operator new: out of memory, and no C++ runtime' "$W/cnew.err"; then
        fail "C program calling operator new without libstdc++: want exit 134 and xalloc's message, rc=$rc:"
        cat "$W/cnew.out" "$W/cnew.err" | head -5 | sed 's/^/    /'
    else
        ok "no libstdc++: $(head -1 "$W/cnew.err")"
    fi
else
    fail "cannot link cnew.c:"
    head -5 "$W/cnew.ld"
fi

if [ $fails -ne 0 ]; then
    echo "cxx.sh: $fails check(s) FAILED"
    exit 1
fi
echo "cxx.sh: all checks passed"
exit 0
