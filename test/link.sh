#!/bin/sh
# link.sh: the ways of using xalloc other than LD_PRELOAD.
#  (a) dynamic: link with -L<libdir> -lxalloc (+ rpath); malloc must resolve
#      into libxalloc (dladdr of dlsym(RTLD_DEFAULT, "malloc")).
#  (b) static archive into a dynamic executable: cc prog.c $XALLOC_A; malloc
#      must be defined by the executable itself (and so also serve libc's
#      internal allocations: strdup, stdio, regcomp, ...).
#  (c) fully static: cc -static prog.c $XALLOC_A; must link (a failure
#      prints the linker error) and run; glibc's malloc.o must not be
#      linked in as well.
#  In (a)-(c) the same multi-threaded workload (malloc/free/realloc/calloc/
#  posix_memalign/aligned_alloc, cross-thread frees, libc-internal
#  allocations, fork) must print the same deterministic result, and a free
#  of a stack address must be caught by xalloc ("xalloc: free: ", SIGABRT),
#  which proves xalloc's free is the one in use.
#  (d) dlopen/dlclose 100 times of a library that allocates in its
#      constructor, frees in its destructor, uses dynamic TLS, and exchanges
#      blocks with the host; under LD_PRELOAD and with a host linked -lxalloc.
#
# Env: XALLOC_SO, XALLOC_A, BUILD, SRC, CC.  Exit 0 = all passed.

set -u
. "${SRC:?SRC must be set}/test/lib/common.sh"
tu_setup link

cat >"$W/prog.c" <<'EOF'
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <regex.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#ifndef NO_DL
#include <dlfcn.h>
#endif
#include "xalloc.h"

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "CHECK FAILED line %d: %s\n", __LINE__, #c); exit(2); } } while (0)

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct { unsigned char *p; size_t n; unsigned char v; } shared[64];

static void *worker(void *arg)
{
    unsigned id = (unsigned)(uintptr_t)arg;
    uint64_t x = 88172645463325252ull ^ (id * 2654435761u);
    unsigned long sum = 0;
    for (int i = 0; i < 20000; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        size_t n = (x % 100 < 97) ? x % 1000 + 1 : x % 300000 + 1;
        unsigned char v = (unsigned char)(id * 31 + i);
        unsigned char *p = NULL;
        switch (i % 4) {
        case 0: p = malloc(n); break;
        case 1: p = calloc(1, n); CHECK(p && p[0] == 0 && p[n - 1] == 0); break;
        case 2: CHECK(posix_memalign((void **)&p, 64, n) == 0); CHECK(((uintptr_t)p & 63) == 0); break;
        default: p = aligned_alloc(256, n); CHECK(((uintptr_t)p & 255) == 0); break;
        }
        CHECK(p != NULL);
        memset(p, v, n);
        p = realloc(p, n * 2);
        CHECK(p != NULL && p[0] == v && p[n - 1] == v);
        sum += n;
        /* swap with a shared slot: frees what another thread allocated */
        unsigned s = (unsigned)(x >> 20) % 64;
        pthread_mutex_lock(&mu);
        unsigned char *old = shared[s].p;
        size_t on = shared[s].n;
        unsigned char ov = shared[s].v;
        shared[s].p = p; shared[s].n = n; shared[s].v = v;
        pthread_mutex_unlock(&mu);
        if (old) {
            CHECK(old[0] == ov && old[on - 1] == ov);
            free(old);
        }
    }
    return (void *)(uintptr_t)sum;
}

static unsigned long libc_internal(void)
{
    unsigned long sum = 0;
    /* allocations made inside libc, released with our free */
    char *s = strdup("hello, xalloc");
    CHECK(s);
    sum += strlen(s);
    free(s);
    char *a = NULL;
    CHECK(asprintf(&a, "%s-%d-%0500d", "asprintf", 42, 7) > 0);
    sum += strlen(a);
    free(a);
    char *buf = NULL;
    size_t len = 0;
    FILE *ms = open_memstream(&buf, &len);
    CHECK(ms);
    for (int i = 0; i < 20000; i++) fprintf(ms, "line %d\n", i);
    fclose(ms);
    sum += len;
    FILE *in = fmemopen(buf, len, "r");
    CHECK(in);
    char *line = NULL;
    size_t cap = 0;
    ssize_t r;
    while ((r = getline(&line, &cap, in)) > 0) sum += (unsigned long)r;
    free(line);
    fclose(in);
    free(buf);
    regex_t re;
    CHECK(regcomp(&re, "^l(i)ne [0-9]+$", REG_EXTENDED) == 0);
    CHECK(regexec(&re, "line 123", 0, NULL, 0) == 0);
    regfree(&re);
    FILE *f = fopen("/proc/self/status", "r");
    CHECK(f);
    char tmp[256];
    while (fgets(tmp, sizeof tmp, f)) ;
    fclose(f);
    char *rp = realpath(".", NULL);
    CHECK(rp);
    free(rp);
    return sum;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "run";
    if (strcmp(mode, "where") == 0) {
#ifdef NO_DL
        puts("where: n/a");
#else
        Dl_info dm, dx;
        void *m = dlsym(RTLD_DEFAULT, "malloc");
        CHECK(m && dladdr(m, &dm) && dladdr((void *)main, &dx));
        if (dm.dli_fbase == dx.dli_fbase) puts("malloc-in-exe");
        else if (dm.dli_fname && strstr(dm.dli_fname, "libxalloc")) puts("malloc-in-libxalloc");
        else printf("malloc-in-other: %s\n", dm.dli_fname ? dm.dli_fname : "?");
        /* the address the program calls is the one dlsym finds */
        printf("same-malloc: %d\n", m == (void *)malloc);
#endif
        return 0;
    }
    if (strcmp(mode, "misuse") == 0) {
        char stackbuf[64];
        memset(stackbuf, 0, sizeof stackbuf);
        void *volatile bad = stackbuf + 16;
        free(bad);
        puts("misuse not detected");
        return 0;
    }
    /* run */
    pthread_t t[4];
    for (int i = 0; i < 4; i++) CHECK(pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)(i + 1)) == 0);
    unsigned long total = 0;
    for (int i = 0; i < 4; i++) {
        void *r;
        pthread_join(t[i], &r);
        total += (unsigned long)(uintptr_t)r;
    }
    for (int i = 0; i < 64; i++) free(shared[i].p);
    total += libc_internal();
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        void *p = malloc(100000);
        if (!p) _exit(3);
        free(p);
        _exit(libc_internal() ? 0 : 4);
    }
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    volatile size_t huge = (size_t)-1;
    errno = 0;
    CHECK(malloc(huge) == NULL && errno == ENOMEM);
    printf("ok version=%s total=%lu\n", xalloc_version(), total);
    return 0;
}
EOF

# check_run NAME BIN EXPECTED_WHERE: run the workload, "where" and "misuse"
check_run() {
    name=$1
    bin=$2
    want_where=$3
    timeout 120 "$bin" run >"$W/$name.run" 2>"$W/$name.run.err"
    rc=$?
    if [ $rc -ne 0 ] || ! grep -q '^ok version=' "$W/$name.run"; then
        fail "$name: workload failed (rc=$rc):"
        cat "$W/$name.run" "$W/$name.run.err" | head -20 | sed 's/^/    /'
    elif grep -q 'xalloc: ' "$W/$name.run.err"; then
        fail "$name: workload produced an xalloc report:"
        head -5 "$W/$name.run.err" | sed 's/^/    /'
    else
        ok "$name: workload: $(cat "$W/$name.run")"
        cat "$W/$name.run" >>"$W/all.run"
    fi
    if [ -n "$want_where" ]; then
        "$bin" where >"$W/$name.where" 2>&1
        if ! grep -qx "$want_where" "$W/$name.where" || ! grep -qx 'same-malloc: 1' "$W/$name.where"; then
            fail "$name: expected '$want_where', got:"
            sed 's/^/    /' "$W/$name.where"
        else
            ok "$name: $want_where"
        fi
    fi
    timeout 60 "$bin" misuse >"$W/$name.misuse" 2>"$W/$name.misuse.err"
    rc=$?
    if [ $rc -ne 134 ] || ! grep -q '^xalloc: free: ' "$W/$name.misuse.err"; then
        fail "$name: free(stack address) not reported by xalloc (want exit 134 = SIGABRT and a line 'xalloc: free: ...'; got rc=$rc and stderr:)"
        head -5 "$W/$name.misuse.err" | sed 's/^/    /'
    else
        ok "$name: misuse caught: $(head -1 "$W/$name.misuse.err")"
    fi
}

: >"$W/all.run"

# ---- (a) dynamic, -lxalloc ----------------------------------------------------------
if $CC -std=gnu11 -O1 -pthread -I"$SRC/include" -o "$W/prog_dyn" "$W/prog.c" \
    -L"$LIBDIR" -Wl,-rpath,"$LIBDIR" -lxalloc >"$W/dyn.ld" 2>&1; then
    check_run "dynamic(-lxalloc)" "$W/prog_dyn" "malloc-in-libxalloc"
else
    fail "dynamic link with -lxalloc failed:"
    cat "$W/dyn.ld"
fi

# ---- (b) static archive into a dynamic executable -----------------------------------
if $CC -std=gnu11 -O1 -pthread -I"$SRC/include" -o "$W/prog_ar" "$W/prog.c" "$XALLOC_A" >"$W/ar.ld" 2>&1; then
    check_run "archive(libxalloc.a)" "$W/prog_ar" "malloc-in-exe"
    if ldd "$W/prog_ar" 2>/dev/null | grep -q libxalloc; then
        fail "archive: executable still depends on libxalloc.so"
    fi
else
    fail "linking $XALLOC_A into a dynamic executable failed:"
    cat "$W/ar.ld"
fi

# ---- (c) fully static -----------------------------------------------------------------
if $CC -std=gnu11 -O1 -static -pthread -DNO_DL -I"$SRC/include" -o "$W/prog_static" "$W/prog.c" "$XALLOC_A" \
    >"$W/static.ld" 2>&1; then
    if nm "$W/prog_static" 2>/dev/null | grep -Eq ' t (_int_malloc|_int_free|sysmalloc)$'; then
        fail "static: glibc's own malloc (_int_malloc) was linked in next to xalloc"
    fi
    if readelf -l "$W/prog_static" 2>/dev/null | grep -q 'INTERP'; then
        fail "static: the binary is not static"
    fi
    check_run "static(-static libxalloc.a)" "$W/prog_static" ""
else
    fail "fully static link (-static prog.c libxalloc.a -pthread) failed; linker output:"
    sed 's/^/    /' "$W/static.ld"
fi

# all variants must compute the same result
if [ -s "$W/all.run" ]; then
    if [ "$(sort -u "$W/all.run" | wc -l)" -ne 1 ]; then
        fail "variants disagree on the workload result:"
        sed 's/^/    /' "$W/all.run"
    fi
fi

# ---- (d) dlopen/dlclose ----------------------------------------------------------------
cat >"$W/plugin.c" <<'EOF'
#include <stdlib.h>
#include <string.h>
static void *blocks[24];
static char *name;
static __thread char *tls_block; /* dynamic TLS: glibc allocates it with malloc */
static __thread int tls_counter;

__attribute__((constructor)) static void plugin_init(void)
{
    for (int i = 0; i < 24; i++) {
        size_t n = (size_t)1 << i; /* 1 B .. 8 MiB */
        blocks[i] = malloc(n);
        if (!blocks[i]) abort();
        memset(blocks[i], i, n);
    }
    name = strdup("plugin");
}

__attribute__((destructor)) static void plugin_fini(void)
{
    for (int i = 0; i < 24; i++) {
        size_t n = (size_t)1 << i;
        if (((unsigned char *)blocks[i])[0] != i || ((unsigned char *)blocks[i])[n - 1] != i) abort();
        free(blocks[i]);
    }
    if (strcmp(name, "plugin") != 0) abort();
    free(name);
}

void *plug_alloc(size_t n) { char *p = malloc(n); if (p) memset(p, 0x5a, n); return p; }
int plug_free(void *p, size_t n)
{
    unsigned char *c = p;
    int ok = c[0] == 0x33 && c[n - 1] == 0x33;
    free(p);
    return ok;
}
int plug_tls(void)
{
    if (!tls_block) { tls_block = malloc(1000); if (!tls_block) abort(); memset(tls_block, 7, 1000); }
    tls_counter++;
    int ok = tls_block[999] == 7;
    if (tls_counter == 3) { free(tls_block); tls_block = NULL; tls_counter = 0; }
    return ok;
}
void *plug_malloc_addr(void) { return (void *)malloc; }
EOF

cat >"$W/host.c" <<'EOF'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int (*p_tls)(void);
static void *tls_thread(void *a)
{
    int ok = 1;
    for (int i = 0; i < 5; i++) ok &= p_tls();
    return ok ? NULL : (void *)1;
}

int main(int argc, char **argv)
{
    const char *path = argv[1];
    int rounds = 100;
    for (int r = 0; r < rounds; r++) {
        void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!h) { fprintf(stderr, "dlopen: %s\n", dlerror()); return 1; }
        void *(*alloc)(size_t) = (void *(*)(size_t))dlsym(h, "plug_alloc");
        int (*pfree)(void *, size_t) = (int (*)(void *, size_t))dlsym(h, "plug_free");
        void *(*maddr)(void) = (void *(*)(void))dlsym(h, "plug_malloc_addr");
        p_tls = (int (*)(void))dlsym(h, "plug_tls");
        if (!alloc || !pfree || !p_tls || !maddr) { fprintf(stderr, "dlsym failed\n"); return 1; }
        if (r == 0) {
            Dl_info di;
            if (dladdr(maddr(), &di) && di.dli_fname) printf("plugin malloc: %s\n", strstr(di.dli_fname, "libxalloc") ? "libxalloc" : di.dli_fname);
        }
        /* blocks cross the library boundary both ways */
        size_t n = 1000 + (size_t)r * 5000;
        unsigned char *p = alloc(n);
        if (!p || p[0] != 0x5a || p[n - 1] != 0x5a) { fprintf(stderr, "plug_alloc bad\n"); return 1; }
        free(p);
        unsigned char *q = malloc(n);
        memset(q, 0x33, n);
        if (!pfree(q, n)) { fprintf(stderr, "plug_free saw bad contents\n"); return 1; }
        pthread_t t[3];
        for (int i = 0; i < 3; i++) pthread_create(&t[i], NULL, tls_thread, NULL);
        for (int i = 0; i < 3; i++) {
            void *res;
            pthread_join(t[i], &res);
            if (res) { fprintf(stderr, "plugin TLS bad\n"); return 1; }
        }
        if (!p_tls()) { fprintf(stderr, "plugin TLS bad (main)\n"); return 1; }
        if (dlclose(h) != 0) { fprintf(stderr, "dlclose: %s\n", dlerror()); return 1; }
    }
    printf("ok %d dlopen/dlclose rounds\n", rounds);
    return 0;
}
EOF

if ! $CC -O1 -fPIC -shared -pthread -o "$W/plugin.so" "$W/plugin.c" >"$W/plugin.ld" 2>&1; then
    fail "cannot build plugin.so:"
    cat "$W/plugin.ld"
elif ! $CC -O1 -pthread -o "$W/host" "$W/host.c" -ldl >"$W/host.ld" 2>&1; then
    fail "cannot build host:"
    cat "$W/host.ld"
else
    # reference without xalloc (checks the test itself)
    if ! timeout 120 "$W/host" "$W/plugin.so" >"$W/host.ref" 2>&1; then
        fail "dlopen test fails even without xalloc:"
        cat "$W/host.ref"
    fi
    LD_PRELOAD=$XALLOC_SO timeout 120 "$W/host" "$W/plugin.so" >"$W/host.pre" 2>&1
    rc=$?
    if [ $rc -ne 0 ] || ! grep -q '^ok 100 ' "$W/host.pre" || ! grep -q '^plugin malloc: libxalloc$' "$W/host.pre"; then
        fail "dlopen/dlclose x100 under LD_PRELOAD (rc=$rc):"
        sed 's/^/    /' "$W/host.pre" | head -10
    else
        ok "dlopen/dlclose x100 under LD_PRELOAD"
    fi
    if $CC -O1 -pthread -o "$W/host_x" "$W/host.c" -L"$LIBDIR" -Wl,-rpath,"$LIBDIR" -Wl,--no-as-needed -lxalloc -ldl \
        >"$W/host_x.ld" 2>&1; then
        timeout 120 "$W/host_x" "$W/plugin.so" >"$W/host_x.out" 2>&1
        rc=$?
        if [ $rc -ne 0 ] || ! grep -q '^ok 100 ' "$W/host_x.out" || ! grep -q '^plugin malloc: libxalloc$' "$W/host_x.out"; then
            fail "dlopen/dlclose x100 with a host linked -lxalloc (rc=$rc):"
            sed 's/^/    /' "$W/host_x.out" | head -10
        else
            ok "dlopen/dlclose x100 with a host linked -lxalloc"
        fi
    else
        fail "cannot link host with -lxalloc:"
        cat "$W/host_x.ld"
    fi
fi

if [ $fails -ne 0 ]; then
    echo "link.sh: $fails check(s) FAILED"
    exit 1
fi
echo "link.sh: all checks passed"
exit 0
