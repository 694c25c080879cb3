#!/bin/sh
# preload.sh: run real, unmodified programs under LD_PRELOAD=$XALLOC_SO and
# check that their output is identical to a run without the preload, that
# they exit the same way, and that nothing is reported on stderr.
#
# Env (set by `make check-preload`): XALLOC_SO (abs path of libxalloc.so),
# BUILD (scratch dir), CC, CXX.  Exit 0 = all passed.
#
# Programs: a C probe that shows malloc resolves into libxalloc, cat of
# /proc/self/maps, sort of a ~50 MB file (in memory and with an external
# merge, 2 threads), python3 (pymalloc and PYTHONMALLOC=malloc; also forking
# while threads allocate), perl, an 8-thread C++ program (vector/map/string,
# cross-thread frees), sh pipelines (fork/exec), gcc compiling a C file
# (the object file must be byte-identical), and sqlite3 if installed.

# SC2002: `cat` is the preloaded process under test; SC2016: the single-quoted
# programs are for perl/sh; SC2086: $CC/$CXX may carry flags.
# shellcheck disable=SC2002,SC2016,SC2086
set -u
: "${XALLOC_SO:?XALLOC_SO must be set}"
: "${BUILD:?BUILD must be set}"
CC=${CC:-cc}
CXX=${CXX:-c++}
export LC_ALL=C

W=$BUILD/preload.d
rm -rf "$W"
mkdir -p "$W" || exit 1

fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
T0=$(date +%s)
ok() { echo "ok:   $* [$(($(date +%s) - T0))s]"; }

if [ ! -f "$XALLOC_SO" ]; then
    echo "FAIL: $XALLOC_SO does not exist"
    exit 1
fi

# Does a preloaded run's stderr show the preload failing or xalloc
# reporting something?
bad_stderr() {
    grep -E 'xalloc: |cannot be preloaded|ERROR: ld\.so|symbol lookup error' "$1" >/dev/null 2>&1
}

# run_cmp NAME CMD...: run CMD without and with the preload (stdin from
# /dev/null, 120 s hang guard each) and compare exit status and stdout.
run_cmp() {
    name=$1
    shift
    timeout 120 "$@" </dev/null >"$W/$name.ref" 2>"$W/$name.ref.err"
    rc1=$?
    LD_PRELOAD=$XALLOC_SO timeout 120 "$@" </dev/null >"$W/$name.out" 2>"$W/$name.err"
    rc2=$?
    if [ "$rc1" -ne 0 ]; then
        fail "$name: reference run (no preload) failed with $rc1; stderr:"
        sed 's/^/    /' "$W/$name.ref.err" | head -20
        return 1
    fi
    if [ "$rc2" -ne "$rc1" ]; then
        fail "$name: exit status $rc2 under preload (expected $rc1); stderr:"
        sed 's/^/    /' "$W/$name.err" | head -20
        return 1
    fi
    if bad_stderr "$W/$name.err"; then
        fail "$name: stderr under preload:"
        sed 's/^/    /' "$W/$name.err" | head -20
        return 1
    fi
    if ! cmp -s "$W/$name.ref" "$W/$name.out"; then
        fail "$name: stdout differs under preload (see $W/$name.ref and $W/$name.out)"
        diff "$W/$name.ref" "$W/$name.out" | head -10 | sed 's/^/    /'
        return 1
    fi
    ok "$name ($(wc -c <"$W/$name.out" | tr -d ' ') bytes of identical output)"
    return 0
}

# ---- 1. is xalloc really active? --------------------------------------------
cat >"$W/probe.c" <<'EOF'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(void)
{
    Dl_info di;
    void *m = dlsym(RTLD_DEFAULT, "malloc");
    void *f = dlsym(RTLD_DEFAULT, "free");
    const char *(*ver)(void) = (const char *(*)(void))dlsym(RTLD_DEFAULT, "xalloc_version");
    if (!m || !dladdr(m, &di)) { printf("malloc: unresolved\n"); return 1; }
    printf("malloc: %s\n", di.dli_fname);
    if (!f || !dladdr(f, &di)) { printf("free: unresolved\n"); return 1; }
    printf("free: %s\n", di.dli_fname);
    printf("xalloc_version: %s\n", ver ? ver() : "(none)");
    /* libc-internal allocations are freed by the interposed free */
    char *s = strdup("probe");
    free(s);
    return 0;
}
EOF
if ! $CC -O1 -o "$W/probe" "$W/probe.c" 2>"$W/probe.cc.err"; then
    fail "cannot compile probe.c:"
    cat "$W/probe.cc.err"
else
    LD_PRELOAD=$XALLOC_SO "$W/probe" >"$W/probe.out" 2>&1
    rc=$?
    if [ $rc -ne 0 ] || ! grep -q '^malloc: .*libxalloc' "$W/probe.out" ||
        ! grep -q '^free: .*libxalloc' "$W/probe.out" || grep -q 'xalloc_version: (none)' "$W/probe.out"; then
        fail "probe: under LD_PRELOAD malloc/free do not resolve into libxalloc (rc=$rc):"
        sed 's/^/    /' "$W/probe.out"
    else
        ok "probe: $(tr '\n' ' ' <"$W/probe.out")"
    fi
fi

if LD_PRELOAD=$XALLOC_SO cat /proc/self/maps 2>"$W/maps.err" | grep -q libxalloc; then
    ok "libxalloc is mapped into a preloaded cat"
else
    fail "libxalloc not found in /proc/self/maps of a preloaded cat:"
    cat "$W/maps.err"
fi
if LD_PRELOAD=$XALLOC_SO python3 -c 'import sys; sys.stdout.write(open("/proc/self/maps").read())' 2>"$W/pymaps.err" |
    grep -q libxalloc; then
    ok "libxalloc is mapped into a preloaded python3"
else
    fail "libxalloc not found in /proc/self/maps of a preloaded python3:"
    head -5 "$W/pymaps.err"
fi

# ---- 2. sort of a ~50 MB file -------------------------------------------------
awk 'BEGIN { x = 12345; for (i = 1; i <= 1200000; i++) { x = (x * 1103515245 + 12345) % 2147483648;
      printf "%d %08x line-%d %s\n", x % 1000003, x, i, substr("abcdefghijklmnopqrstuvwxyz", 1 + i % 26) } }' \
    >"$W/sort.in"
size=$(wc -c <"$W/sort.in" | tr -d ' ')
if [ "$size" -lt 40000000 ]; then
    fail "sort: generated input is only $size bytes"
fi
timeout 120 sort -k1,1n -k3 "$W/sort.in" >"$W/sort.ref" 2>"$W/sort.ref.err" || fail "sort: reference run failed"
for variant in "mem:-S 512M --parallel=2" "ext:-S 4M --parallel=2 -T $W"; do
    vname=${variant%%:*}
    vopts=${variant#*:}
    # shellcheck disable=SC2086
    LD_PRELOAD=$XALLOC_SO timeout 120 sort $vopts -k1,1n -k3 "$W/sort.in" >"$W/sort.$vname.out" 2>"$W/sort.$vname.err"
    rc=$?
    if [ $rc -ne 0 ] || bad_stderr "$W/sort.$vname.err"; then
        fail "sort ($vname): rc=$rc under preload; stderr:"
        head -10 "$W/sort.$vname.err"
    elif ! cmp -s "$W/sort.ref" "$W/sort.$vname.out"; then
        fail "sort ($vname): output differs under preload"
    else
        ok "sort ($vname, $size bytes input): identical output"
    fi
    rm -f "$W/sort.$vname.out"
done
rm -f "$W/sort.in" "$W/sort.ref"

# ---- 3. python3 -----------------------------------------------------------------
PY='
import hashlib
d = {i: str(i) * 3 for i in range(400000)}
l = [[i, str(i), (i, i * 2)] for i in range(400000)]
s = sorted(d.values(), key=lambda v: v[::-1])
del d
b = bytearray()
for i in range(20000):
    b += bytes(str(i), "ascii") * 20
big = [bytes(100000 + i) for i in range(200)]
h = hashlib.sha256()
for x in s[::997]: h.update(x.encode())
h.update(bytes(b))
print(len(l), sum(len(x) for x in big), len(b), h.hexdigest())
'
if command -v python3 >/dev/null 2>&1; then
    run_cmp python3 python3 -c "$PY"
    run_cmp python3-malloc env PYTHONMALLOC=malloc python3 -c "$PY"
    # fork while other threads allocate; children allocate and exit
    PYF='
import os, threading
stop = False
def work():
    while not stop:
        x = [str(i) * 5 for i in range(2000)]
        del x
ts = [threading.Thread(target=work) for _ in range(3)]
for t in ts: t.start()
codes = []
for i in range(30):
    pid = os.fork()
    if pid == 0:
        y = {j: [j] * 10 for j in range(20000)}
        os._exit(sum(len(v) for v in y.values()) % 250)
    codes.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
stop = True
for t in ts: t.join()
print(codes)
'
    run_cmp python3-fork env PYTHONMALLOC=malloc python3 -c "$PYF"
else
    echo "skip: python3 not installed"
fi

# ---- 4. perl --------------------------------------------------------------------
if command -v perl >/dev/null 2>&1; then
    run_cmp perl perl -e '
        my %h; $h{$_} = "v" x ($_ % 50) for 1 .. 300000;
        my @a = map { [$_, "s$_"] } 1 .. 300000;
        my $s = 0; $s += length($h{$_}) for keys %h;
        my $j = join(",", map { $_->[1] } @a[0 .. 50000]);
        delete $h{$_} for 1 .. 200000;
        my @sorted = sort { $a <=> $b } keys %h;
        print "$s ", scalar(@a), " ", length($j), " ", scalar(@sorted), " $sorted[0] $sorted[-1]\n";'
else
    echo "skip: perl not installed"
fi

# ---- 5. C++, 8 threads, cross-thread frees --------------------------------------
cat >"$W/cxx.cpp" <<'EOF'
#include <atomic>
#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>
#include <unordered_map>

static std::mutex mu;
static std::deque<std::unique_ptr<std::vector<std::string>>> box;
static std::atomic<unsigned long long> cross_total;

static unsigned long long work(int id)
{
    unsigned long long sum = 0;
    unsigned x = 1234567u * (id + 1);
    std::map<int, std::string> m;
    std::unordered_map<std::string, std::vector<int>> um;
    for (int it = 0; it < 40000; it++) {
        x = x * 1664525u + 1013904223u;
        m[(int)(x % 5000)] = std::string(x % 200, (char)('a' + it % 26));
        std::vector<int> v(x % 300, it);
        um[std::to_string(x % 3000)] = std::move(v);
        if (it % 16 == 0) {
            auto p = std::make_unique<std::vector<std::string>>();
            for (int k = 0; k < 8; k++) p->push_back(std::string(10 + (x >> 8) % 500, 'x'));
            std::unique_ptr<std::vector<std::string>> other;
            {
                std::lock_guard<std::mutex> g(mu);
                box.push_back(std::move(p));
                if (box.size() > 64) { other = std::move(box.front()); box.pop_front(); }
            }
            if (other) { /* freed here, usually by another thread than its creator */
                unsigned long long c = 0;
                for (auto &s : *other) c += s.size();
                cross_total += c;
            }
        }
        if (it % 5000 == 0) m.clear();
    }
    for (auto &kv : m) sum += kv.second.size();
    for (auto &kv : um) sum += kv.second.size() + kv.first.size();
    return sum;
}

int main()
{
    std::vector<std::thread> ts;
    std::vector<unsigned long long> res(8);
    for (int i = 0; i < 8; i++) ts.emplace_back([i, &res] { res[i] = work(i); });
    for (auto &t : ts) t.join();
    for (auto &p : box) for (auto &s : *p) cross_total += s.size();
    box.clear();
    /* per-thread sums are deterministic; which thread frees which shared
     * vector depends on scheduling, but the total over all of them is not */
    for (int i = 0; i < 8; i++) printf("thread %d: %llu\n", i, res[i]);
    printf("cross-thread total: %llu\n", cross_total.load());
    return 0;
}
EOF
if ! $CXX -O2 -pthread -o "$W/cxx" "$W/cxx.cpp" 2>"$W/cxx.cc.err"; then
    fail "cannot compile the C++ test program:"
    head -20 "$W/cxx.cc.err"
else
    run_cmp cxx "$W/cxx"
fi

# ---- 6. fork/exec: sh pipelines --------------------------------------------------
run_cmp sh-pipeline sh -c '
    i=0; while [ $i -lt 150 ]; do echo "$(echo $i | tr 0-9 a-j)-$(expr $i \* 7)"; i=$((i + 1)); done |
        sort | uniq -c | sort -rn | head -5
    seq 1 200000 | sort -r | awk "{ s += \$1 } END { print s, NR }"
    { for w in one two three; do ( echo "$w" | rev ) & done; wait; } | sort
    find /usr/include -maxdepth 1 -name "*.h" | sort | head -20 | xargs -n 5 echo'

# ---- 7. gcc compiling a C file ----------------------------------------------------
awk 'BEGIN {
    print "#include <stdio.h>\n#include <string.h>\n#include <stdlib.h>";
    for (i = 0; i < 400; i++) {
        printf "struct s%d { int a[%d]; char n[%d]; double d; };\n", i, i % 13 + 1, i % 17 + 1;
        printf "static int f%d(int x) { struct s%d v; memset(&v, 0, sizeof v); int r = 0;\n", i, i;
        printf "  for (int k = 0; k < %d; k++) { v.a[k %% %d] += x * k; r += v.a[k %% %d] ^ (x >> (k & 7)); }\n", i % 50 + 3, i % 13 + 1, i % 13 + 1;
        printf "  switch (x %% 5) { case 0: r += %d; break; case 1: r -= %d; break; default: r ^= %d; }\n", i, i * 3, i * 7;
        printf "  return r + (int)v.d; }\n";
    }
    print "int main(void) { long t = 0;";
    for (i = 0; i < 400; i++) printf "  t += f%d(%d);\n", i, i;
    print "  printf(\"%ld\\n\", t); return 0; }";
}' >"$W/gen.c"
if ! $CC -O2 -c -o "$W/gen.ref.o" "$W/gen.c" 2>"$W/gen.ref.err"; then
    fail "gcc: reference compile failed:"
    head -10 "$W/gen.ref.err"
else
    LD_PRELOAD=$XALLOC_SO timeout 120 $CC -O2 -c -o "$W/gen.o" "$W/gen.c" 2>"$W/gen.err"
    rc=$?
    if [ $rc -ne 0 ] || bad_stderr "$W/gen.err"; then
        fail "gcc under preload: rc=$rc; stderr:"
        head -10 "$W/gen.err"
    elif ! cmp -s "$W/gen.ref.o" "$W/gen.o"; then
        fail "gcc under preload produced a different object file"
    else
        ok "gcc -O2 -c under preload: identical object file"
        if LD_PRELOAD=$XALLOC_SO $CC -o "$W/gen" "$W/gen.o" 2>"$W/gen.ld.err" && ! bad_stderr "$W/gen.ld.err"; then
            run_cmp gen-run "$W/gen"
        else
            fail "link under preload failed:"
            head -10 "$W/gen.ld.err"
        fi
    fi
fi

# ---- 8. sqlite3 ------------------------------------------------------------------
if command -v sqlite3 >/dev/null 2>&1; then
    cat >"$W/q.sql" <<'EOF'
CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, v TEXT);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 200000)
INSERT INTO t SELECT x, (x * 7919) % 1009, printf('%08d-%s', x, substr('abcdefghijklmnopqrstuvwxyz', 1 + x % 26)) FROM c;
CREATE INDEX tk ON t(k, v);
SELECT k, count(*), sum(length(v)), min(v), max(v) FROM t GROUP BY k ORDER BY k LIMIT 5;
SELECT count(DISTINCT v), group_concat(id) FROM (SELECT * FROM t WHERE k = 17 ORDER BY v DESC LIMIT 20);
DELETE FROM t WHERE id % 3 = 0;
SELECT count(*), sum(k) FROM t;
EOF
    run_cmp sqlite3 sqlite3 :memory: ".read $W/q.sql"
else
    echo "skip: sqlite3 not installed"
fi

if [ $fails -ne 0 ]; then
    echo "preload.sh: $fails check(s) FAILED"
    exit 1
fi
echo "preload.sh: all checks passed"
exit 0
