#!/bin/sh
# atload.sh: what xalloc does at load and at exit, in programs that never
# allocate and in programs that close stderr (issue 14):
#   - XALLOC_CONF=help and bad-option warnings print at load (preloaded,
#     -lxalloc and a static program that never calls malloc);
#   - `xalloc --stats -- true` prints statistics;
#   - the man page's example `xalloc --conf narenas:1 --stats -- sort big.txt`
#     prints them although sort closes stderr before it exits;
#   - stats_file:PATH with %p writes them to a file named by the pid;
#   - a program that closes stderr and puts a data file on every descriptor
#     number (xalloc's kept duplicate included) gets no statistics in it.
. "$SRC/test/lib/common.sh"
tu_setup atload
export LC_ALL=C
WRAP="sh $SRC/tools/xalloc.in --lib $XALLOC_SO"

has() { grep -q -- "$2" "$1"; }

# 1. help and warnings at load, preloaded into programs that never allocate
XALLOC_CONF=help LD_PRELOAD=$XALLOC_SO /bin/true 2>"$W/help.err"
if has "$W/help.err" "xalloc options" && has "$W/help.err" "stats_file"; then ok "help at load (/bin/true)"
else fail "XALLOC_CONF=help /bin/true printed no option list"; cat "$W/help.err"; fi
XALLOC_CONF=no_such_option:1 LD_PRELOAD=$XALLOC_SO /bin/true 2>"$W/warn.err"
if [ "$(grep -c "unknown option 'no_such_option'" "$W/warn.err")" = 1 ]; then ok "warning at load, once"
else fail "bad option: want one warning"; cat "$W/warn.err"; fi

# 2. the same for -lxalloc and the static archive, in a C program that
# never calls malloc (it refers to it, so that the static link takes
# xalloc's; it prints its pid for the stats_file check)
cat >"$W/noalloc.c" <<'EOF'
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc > 99) free(malloc(1));   /* never runs */
    if (argc > 1) {
        char b[24];
        int n = sizeof b, pid = (int)getpid();
        b[--n] = '\n';
        do b[--n] = (char)('0' + pid % 10); while ((pid /= 10) > 0);
        if (write(1, b + n, sizeof b - (size_t)n) < 0) return 1;
    }
    return 0;
}
EOF
$CC -o "$W/noalloc_dyn" "$W/noalloc.c" -L"$LIBDIR" -Wl,-rpath,"$LIBDIR" -Wl,--no-as-needed -lxalloc -pthread ||
    fail "build noalloc_dyn"
$CC -static -o "$W/noalloc_static" "$W/noalloc.c" "$XALLOC_A" -pthread || fail "build noalloc_static"
for prog in noalloc_dyn noalloc_static; do
    XALLOC_CONF=help "$W/$prog" 2>"$W/$prog.err"
    if has "$W/$prog.err" "xalloc options"; then ok "help at load ($prog)"
    else fail "$prog: XALLOC_CONF=help printed nothing"; fi
    XALLOC_CONF=stats_print:true "$W/$prog" 2>"$W/$prog.stats"
    if has "$W/$prog.stats" "xalloc statistics"; then ok "statistics at exit ($prog)"
    else fail "$prog: stats_print printed nothing"; fi
done

# 3. the wrapper on a program that never allocates
$WRAP --stats -- true 2>"$W/true.err"
if has "$W/true.err" "xalloc statistics"; then ok "xalloc --stats -- true"
else fail "xalloc --stats -- true printed no statistics"; cat "$W/true.err"; fi

# 4. the man page's example: sort closes stderr in its exit handler
seq 100000 | awk '{ print ($1 * 7919) % 100003 }' >"$W/big.txt"
(cd "$W" && $WRAP --conf narenas:1 --stats -- sort big.txt >"$W/sorted.out" 2>"$W/sort.err" </dev/null)
if has "$W/sort.err" "xalloc statistics" && sort "$W/big.txt" | cmp -s - "$W/sorted.out"; then
    ok "xalloc --conf narenas:1 --stats -- sort big.txt (sort closes stderr)"
else fail "the man page's sort example printed no statistics"; head -5 "$W/sort.err"; fi
(cd "$W" && XALLOC_CONF=stats_print:true,stats_format:json LD_PRELOAD=$XALLOC_SO ls big.txt >/dev/null 2>"$W/ls.err")
if has "$W/ls.err" '"xalloc":{"version"'; then ok "stats_format:json from ls (closes stderr)"
else fail "ls: no JSON statistics"; fi

# 5. stats_file with %p
rm -f "$W"/stats.*.txt
XALLOC_CONF="stats_print:true,stats_file:$W/stats.%p.txt" "$W/noalloc_dyn" pid >"$W/pid" 2>"$W/sf.err"
pid=$(cat "$W/pid")
if [ -s "$W/stats.$pid.txt" ] && has "$W/stats.$pid.txt" "xalloc statistics" && ! has "$W/sf.err" "xalloc"; then
    ok "stats_file:$W/stats.%p.txt"
else fail "stats_file: no $W/stats.$pid.txt, or statistics on stderr"; ls "$W"; fi
XALLOC_CONF="stats_print:true,stats_file:/nonexistent-dir/x" LD_PRELOAD=$XALLOC_SO /bin/true 2>"$W/sfbad.err"
if has "$W/sfbad.err" "xalloc: stats_file: cannot open"; then ok "stats_file that cannot be opened: one line"
else fail "stats_file unopenable: no message"; cat "$W/sfbad.err"; fi

# 6. the kept duplicate is checked before it is written to
cat >"$W/reuse.c" <<'EOF'
/* Closes stderr and puts a data file on every open descriptor from 2 up,
 * the allocator's kept duplicate of stderr included. */
#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
    int data = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (data < 0) return 2;
    int fds[4096], n = 0;
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    while (d && (e = readdir(d)) && n < 4096) {
        int fd = atoi(e->d_name);
        if (fd >= 3 && fd != data && fd != dirfd(d)) fds[n++] = fd;
    }
    closedir(d);
    for (int i = 0; i < n; i++) dup2(data, fds[i]);
    dup2(data, 2);
    if (write(data, "data\n", 5) != 5) return 3;
    return 0;
}
EOF
$CC -o "$W/reuse" "$W/reuse.c" || fail "build reuse"
XALLOC_CONF=stats_print:true LD_PRELOAD=$XALLOC_SO "$W/reuse" "$W/reuse.dat" 2>"$W/reuse.err"
rc=$?
if [ $rc -eq 0 ] && [ "$(cat "$W/reuse.dat")" = data ]; then ok "statistics never land in a file that took stderr's numbers"
else fail "reuse: exit $rc, data file holds: $(head -c 200 "$W/reuse.dat")"; fi

[ $fails -eq 0 ] && echo "atload.sh: all checks passed"
exit $fails
