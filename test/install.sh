#!/bin/sh
# install.sh: `make install` / `make uninstall` (mk/install.mk), the
# installed pkg-config file, wrapper and man pages.
#  (a) staged install: DESTDIR=$T/dest PREFIX=/opt/xalloc-test-<pid>: exactly
#      the expected files and links (library, soname and dev links, archive,
#      header, xalloc.pc, wrapper, man pages), the same bytes as the build;
#      the wrapper has the final library path baked in.
#  (b) with PKG_CONFIG_PATH and PKG_CONFIG_SYSROOT_DIR into DESTDIR, a C
#      program builds with `pkg-config --cflags --libs xalloc` and runs from
#      DESTDIR (LD_LIBRARY_PATH): malloc resolves into the installed
#      libxalloc, xalloc_version() matches the header and pkg-config's
#      version; the installed archive links and runs too.
#  (c) plain install with every directory variable set (PREFIX, LIBDIR,
#      INCLUDEDIR, BINDIR, MANDIR) into $T/prefix: the files land there.
#  (d) the installed wrapper on real programs: python3 (xalloc_version()
#      callable, libxalloc mapped), sort (same output), sh (XALLOC_CONF and
#      LD_PRELOAD appended to/prepended), exit statuses, --version,
#      --options, --stats (statistics printed at exit if the library has
#      stats_print, else a clear refusal); the staged wrapper finds its
#      library next to itself; tools/xalloc.in runs from the source tree.
#  (e) both man pages render with `man --warnings -l` without a warning, and
#      `man xalloc_purge` finds its page through MANPATH; xalloc(3) documents
#      every option of src/options.h and every function of xalloc.h.
#  (f) make uninstall (both installs) leaves no file or link behind.
#  (g) make dist: the tarball ships configure, unpacks, builds, installs
#      into a fresh DESTDIR and a program links against the installed copy
#      and runs; in a clone with an uncommitted change, dist names it.
#  (h) PREFIX=/usr installs into the multiarch directory; as root, an install
#      runs ldconfig only into a directory the loader searches.
#
# Needs pkg-config (Debian package pkg-config) and man (package man-db).
# Env: XALLOC_SO, XALLOC_A, BUILD, SRC, CC.  Exit 0 = all passed.

set -u
MAKE=${MAKE:-make}
export LC_ALL=C
. "${SRC:?SRC must be set}/test/lib/common.sh"
tu_setup install
unset LIBDIR          # a make variable here: keep it out of the way
have_pkgconfig=1 have_man=1
if ! command -v pkg-config >/dev/null 2>&1; then
    fail "pkg-config is not installed (Debian: apt-get install pkg-config); the pkg-config checks cannot run"
    have_pkgconfig=
fi
if ! command -v man >/dev/null 2>&1; then
    fail "man is not installed (Debian: apt-get install man-db); the man page checks cannot run"
    have_man=
fi

# The version and soname version, from the built library's file name.
real=$(readlink -f "$XALLOC_SO")
VER=${real##*/libxalloc.so.}
SOVER=${VER%%.*}
case $VER in
[0-9]*.[0-9]*.[0-9]*) ;;
*) echo "FAIL: cannot tell the version from $real"; exit 1 ;;
esac

# submake ARGS...: make in $SRC, without the variables of an outer make or
# of the environment that would move the installation
submake() {
    env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u DESTDIR -u LIBDIR -u INCLUDEDIR -u BINDIR -u MANDIR \
        -u PKGCONFIGDIR -u PREFIX $MAKE -s -C "$SRC" "$@"
}
# list_tree DIR: every file and link under DIR, relative, sorted
list_tree() {
    (cd "$1" && find . \( -type f -o -type l \) | sed 's|^\./||' | sort)
}
# expect_tree NAME DIR EXPECTED-LIST-FILE
expect_tree() {
    list_tree "$2" >"$W/$1.got"
    if cmp -s "$3" "$W/$1.got"; then
        ok "$1: exactly the $(wc -l <"$3" | tr -d ' ') expected files and links"
    else
        fail "$1: installed files differ from the expected ones (- expected, + installed):"
        diff "$3" "$W/$1.got" | grep '^[<>]' | sed 's/^</    -/; s/^>/    +/'
    fi
}
# check_link PATH TARGET
check_link() {
    if [ -L "$1" ] && [ "$(readlink "$1")" = "$2" ]; then
        ok "link $(basename "$1") -> $2"
    else
        fail "$1 should be a symbolic link to $2 (is: $(ls -l "$1" 2>&1))"
    fi
}
# check_same INSTALLED ORIGINAL
check_same() {
    if [ -f "$1" ] && [ ! -L "$1" ] && cmp -s "$1" "$2"; then :; else
        fail "$1 is missing or differs from $2"
    fi
}

# ---- (a) staged install --------------------------------------------------------
P=/opt/xalloc-test-$$
D=$W/dest
if ! submake install DESTDIR="$D" PREFIX="$P" >"$W/install.a.log" 2>&1; then
    fail "make install DESTDIR=$D PREFIX=$P failed:"
    sed 's/^/    /' "$W/install.a.log" | tail -20
fi
cat >"$W/a.expected" <<EOF
${P#/}/bin/xalloc
${P#/}/include/xalloc.h
${P#/}/lib/libxalloc.a
${P#/}/lib/libxalloc.so
${P#/}/lib/libxalloc.so.$SOVER
${P#/}/lib/libxalloc.so.$VER
${P#/}/lib/pkgconfig/xalloc.pc
${P#/}/share/man/man1/xalloc.1
${P#/}/share/man/man3/xalloc.3
${P#/}/share/man/man3/xalloc_ctl.3
${P#/}/share/man/man3/xalloc_purge.3
${P#/}/share/man/man3/xalloc_stats_print.3
${P#/}/share/man/man3/xalloc_version.3
EOF
sort -o "$W/a.expected" "$W/a.expected"
expect_tree "staged install" "$D" "$W/a.expected"
DP=$D$P
check_same "$DP/lib/libxalloc.so.$VER" "$real"
check_same "$DP/lib/libxalloc.a" "$XALLOC_A"
check_same "$DP/include/xalloc.h" "$SRC/include/xalloc.h"
# the installed pages name the installed paths and the version
for m in 1 3; do
    page=$DP/share/man/man$m/xalloc.$m
    if [ -f "$page" ] && ! grep -q '@[A-Z]*@' "$page" && grep -q "^\.TH XALLOC $m .*\"xalloc $VER\"" "$page" &&
        sed 's/\\://g' "$page" | grep -qF "$P/lib/libxalloc.so.$SOVER"; then
        ok "installed xalloc.$m names version $VER and $P/lib/libxalloc.so.$SOVER"
    else
        fail "installed xalloc.$m: placeholders left or paths/version not substituted: $(grep -n '@[A-Z]*@\|/usr/local' "$page" | head -3)"
    fi
done
check_link "$DP/lib/libxalloc.so.$SOVER" "libxalloc.so.$VER"
check_link "$DP/lib/libxalloc.so" "libxalloc.so.$SOVER"
soname=$(readelf -d "$DP/lib/libxalloc.so.$VER" 2>/dev/null | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p')
[ "$soname" = "libxalloc.so.$SOVER" ] || fail "installed library's soname is '$soname', want libxalloc.so.$SOVER"
if [ -x "$DP/bin/xalloc" ] && sh -n "$DP/bin/xalloc" &&
    grep -q "^installed_lib='$P/lib/libxalloc.so.$SOVER'\$" "$DP/bin/xalloc" &&
    grep -q "^wrapper_version='$VER'\$" "$DP/bin/xalloc" && ! grep -q '@[A-Z]*@' "$DP/bin/xalloc"; then
    ok "wrapper: executable, library path $P/lib/libxalloc.so.$SOVER and version $VER filled in"
else
    fail "wrapper $DP/bin/xalloc: not executable, bad syntax, or paths not filled in:"
    grep -n "installed_lib=\|wrapper_version=\|@[A-Z]*@" "$DP/bin/xalloc" | sed 's/^/    /'
fi
pc=$DP/lib/pkgconfig/xalloc.pc
for line in "prefix=$P" 'libdir=${prefix}/lib' 'includedir=${prefix}/include' "Version: $VER" \
    'Cflags: -I${includedir}' 'Libs: -L${libdir} -lxalloc' 'Libs.private: -pthread'; do
    grep -qxF "$line" "$pc" || fail "xalloc.pc lacks the line '$line'"
done

# ---- (b) pkg-config, build and run against the staged tree -----------------------
cat >"$W/use.c" <<'EOF'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xalloc.h>

int main(void)
{
    char *p = malloc(1000);
    if (!p) return 1;
    memset(p, 1, 1000);
    free_sized(p, 1000);
    p = aligned_alloc(4096, 5000);
    if (!p || ((unsigned long)p & 4095)) return 1;
    free_aligned_sized(p, 4096, 5000);
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", XALLOC_VERSION_MAJOR, XALLOC_VERSION_MINOR, XALLOC_VERSION_PATCH);
    printf("xalloc_version: %s (header %s)\n", xalloc_version(), want);
#ifndef NO_DL
    Dl_info d;
    void *m = dlsym(RTLD_DEFAULT, "malloc");
    if (m && dladdr(m, &d) && d.dli_fname) printf("malloc from: %s\n", d.dli_fname);
#endif
    return strcmp(xalloc_version(), want) != 0;
}
EOF
if [ -n "$have_pkgconfig" ]; then
    export PKG_CONFIG_PATH="$DP/lib/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$D"
    flags=$(pkg-config --cflags --libs xalloc 2>"$W/pc.err")
    flags=$(echo $flags)            # pkg-config ends with a space
    pcver=$(pkg-config --modversion xalloc 2>>"$W/pc.err")
    static=$(pkg-config --static --libs xalloc 2>>"$W/pc.err")
    if [ "$flags" != "-I$DP/include -L$DP/lib -lxalloc" ] || [ "$pcver" != "$VER" ]; then
        fail "pkg-config: --cflags --libs gave '$flags', --modversion '$pcver' $(cat "$W/pc.err")"
    else
        ok "pkg-config --cflags --libs xalloc: $flags"
    fi
    case " $static " in
    *" -pthread "*) ;;
    *) fail "pkg-config --static --libs xalloc lacks -pthread: '$static'" ;;
    esac
    pkg-config --validate xalloc >"$W/pc.validate" 2>&1 || {
        fail "pkg-config --validate xalloc:"
        sed 's/^/    /' "$W/pc.validate"
    }
    # shellcheck disable=SC2086
    if $CC -O1 -o "$W/use" "$W/use.c" $flags >"$W/use.ld" 2>&1; then
        LD_LIBRARY_PATH=$DP/lib "$W/use" >"$W/use.out" 2>&1
        rc=$?
        if [ $rc -ne 0 ] || ! grep -qx "xalloc_version: $VER (header $VER)" "$W/use.out" ||
            ! grep -qx "malloc from: $DP/lib/libxalloc.so.$SOVER" "$W/use.out"; then
            fail "program built with pkg-config (rc=$rc):"
            sed 's/^/    /' "$W/use.out"
        else
            ok "built with pkg-config: $(tr '\n' ';' <"$W/use.out")"
        fi
    else
        fail "cannot build with pkg-config's flags:"
        sed 's/^/    /' "$W/use.ld" | head -10
    fi
    unset PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR
fi
if $CC -O1 -I"$DP/include" -o "$W/use_ar" "$W/use.c" "$DP/lib/libxalloc.a" -pthread >"$W/use_ar.ld" 2>&1 &&
    "$W/use_ar" >"$W/use_ar.out" 2>&1 && grep -qx "malloc from: $W/use_ar" "$W/use_ar.out"; then
    ok "installed libxalloc.a: links, runs, malloc in the executable"
else
    fail "installed libxalloc.a:"
    cat "$W/use_ar.ld" "$W/use_ar.out" 2>/dev/null | head -10 | sed 's/^/    /'
fi

# ---- (c) every directory variable -------------------------------------------------
Q=$W/prefix
QL=$Q/lib/multiarch QI=$Q/include/xa QB=$Q/sbin QM=$Q/man
if ! submake install PREFIX="$Q" LIBDIR="$QL" INCLUDEDIR="$QI" BINDIR="$QB" MANDIR="$QM" LDCONFIG=true \
    >"$W/install.c.log" 2>&1; then
    fail "make install with PREFIX, LIBDIR, INCLUDEDIR, BINDIR, MANDIR failed:"
    sed 's/^/    /' "$W/install.c.log" | tail -20
fi
sort >"$W/c.expected" <<EOF
sbin/xalloc
include/xa/xalloc.h
lib/multiarch/libxalloc.a
lib/multiarch/libxalloc.so
lib/multiarch/libxalloc.so.$SOVER
lib/multiarch/libxalloc.so.$VER
lib/multiarch/pkgconfig/xalloc.pc
man/man1/xalloc.1
man/man3/xalloc.3
man/man3/xalloc_ctl.3
man/man3/xalloc_purge.3
man/man3/xalloc_stats_print.3
man/man3/xalloc_version.3
EOF
expect_tree "install with directory variables" "$Q" "$W/c.expected"
sed 's/\\://g' "$QM/man1/xalloc.1" | grep -qF "$QL/libxalloc.so.$SOVER" &&
    sed 's/\\://g' "$QM/man3/xalloc.3" | grep -qF "$QI/xalloc.h" ||
    fail "the man pages of the LIBDIR/INCLUDEDIR install do not name $QL and $QI"
check_link "$QL/libxalloc.so" "libxalloc.so.$SOVER"
grep -qxF 'libdir=${prefix}/lib/multiarch' "$QL/pkgconfig/xalloc.pc" &&
    grep -qxF 'includedir=${prefix}/include/xa' "$QL/pkgconfig/xalloc.pc" ||
    fail "xalloc.pc does not follow LIBDIR/INCLUDEDIR: $(grep dir= "$QL/pkgconfig/xalloc.pc" | tr '\n' ' ')"
if [ -n "$have_pkgconfig" ]; then
    flags=$(PKG_CONFIG_PATH=$QL/pkgconfig pkg-config --cflags --libs xalloc 2>&1)
    flags=$(echo $flags)
    # shellcheck disable=SC2086
    if $CC -O1 -o "$W/use_q" "$W/use.c" $flags >"$W/use_q.ld" 2>&1 &&
        LD_LIBRARY_PATH=$QL "$W/use_q" >"$W/use_q.out" 2>&1 &&
        grep -qx "malloc from: $QL/libxalloc.so.$SOVER" "$W/use_q.out"; then
        ok "pkg-config with LIBDIR/INCLUDEDIR: $flags"
    else
        fail "build/run with pkg-config of the second install ($flags):"
        cat "$W/use_q.ld" "$W/use_q.out" 2>/dev/null | head -10 | sed 's/^/    /'
    fi
fi

# ---- (d) the installed wrapper --------------------------------------------------------
X=$QB/xalloc
# wrap NAME WANT-RC CMD...: run CMD, exit status must be WANT-RC
wrap() {
    name=$1 want_rc=$2
    shift 2
    timeout 120 "$@" >"$W/$name.out" 2>"$W/$name.err" </dev/null
    rc=$?
    if [ "$rc" -ne "$want_rc" ]; then
        fail "$name: exit status $rc, want $want_rc:"
        cat "$W/$name.out" "$W/$name.err" | head -10 | sed 's/^/    /'
        return 1
    fi
    return 0
}
wrap version 0 "$X" --version &&
    if grep -qx "xalloc $VER" "$W/version.out" && grep -q "^library $QL/libxalloc.so.$SOVER: .*$VER" "$W/version.out"; then
        ok "xalloc --version: $(tr '\n' ';' <"$W/version.out")"
    else
        fail "xalloc --version printed:"
        sed 's/^/    /' "$W/version.out"
    fi
if wrap help 0 "$X" --help; then
    grep -q '^Usage: xalloc ' "$W/help.out" || fail "xalloc --help: no usage line"
fi
wrap conf 0 "$X" --conf narenas:1 -- sh -c 'echo "$XALLOC_CONF"' &&
    if [ "$(cat "$W/conf.out")" = "narenas:1" ]; then ok "xalloc --conf narenas:1: XALLOC_CONF=narenas:1"; else
        fail "xalloc --conf narenas:1 -- sh: XALLOC_CONF='$(cat "$W/conf.out")'"; fi
wrap conf2 0 env XALLOC_CONF=tcache:false LD_PRELOAD=/nonexistent-xalloc-test.so "$X" --conf narenas:2 \
    --conf=dirty_decay_ms:0 sh -c 'echo "$XALLOC_CONF $LD_PRELOAD"' &&
    if [ "$(cat "$W/conf2.out")" = "tcache:false,narenas:2,dirty_decay_ms:0 $QL/libxalloc.so.$SOVER:/nonexistent-xalloc-test.so" ]; then
        ok "XALLOC_CONF appended to, LD_PRELOAD prepended to"
    else
        fail "existing XALLOC_CONF/LD_PRELOAD: got '$(cat "$W/conf2.out")'"
    fi
wrap status7 7 "$X" -- sh -c 'exit 7' && ok "exit status of the command is passed on (7)"
wrap notfound 127 "$X" -- /nonexistent/command && ok "command not found: 127"
if wrap badopt 125 "$X" --no-such-option -- true; then
    if grep -q "^xalloc: unknown option '--no-such-option'" "$W/badopt.err"; then
        ok "unknown option: 125, $(cat "$W/badopt.err")"
    else
        fail "unknown option: message '$(cat "$W/badopt.err")'"
    fi
fi
wrap nocmd 125 "$X" && ok "no command: 125, $(cat "$W/nocmd.err")"
wrap options 0 "$X" --options
opts=$(sed -n 's/^  X(\([a-z_]*\),.*/\1/p' "$SRC/src/options.h")
[ -n "$opts" ] || fail "cannot read the option names from $SRC/src/options.h"
for o in $opts; do
    grep -q "^  $o (default " "$W/options.out" || fail "xalloc --options does not list $o"
done
if command -v python3 >/dev/null 2>&1; then
    wrap python3 0 "$X" -- python3 -c '
import ctypes
f = ctypes.CDLL(None).xalloc_version
f.restype = ctypes.c_char_p
maps = open("/proc/self/maps").read()
d = {i: str(i) * 4 for i in range(200000)}
print("xalloc_version", f().decode(), "mapped", [l.split()[-1] for l in maps.splitlines() if "libxalloc" in l][0], len(d))' &&
        if [ "$(cat "$W/python3.out")" = "xalloc_version $VER mapped $QL/libxalloc.so.$VER 200000" ] &&
            ! grep -q 'xalloc: ' "$W/python3.err"; then
            ok "xalloc -- python3: $(cat "$W/python3.out")"
        else
            fail "xalloc -- python3 printed:"
            cat "$W/python3.out" "$W/python3.err" | head -5 | sed 's/^/    /'
        fi
else
    echo "skip: python3 not installed"
fi
seq 1 200000 | awk '{ print ($1 * 7919) % 200003 }' >"$W/sort.in"
wrap sort 0 "$X" --conf narenas:1 -- sort -n "$W/sort.in" &&
    if sort -n "$W/sort.in" | cmp -s - "$W/sort.out" && [ ! -s "$W/sort.err" ]; then
        ok "xalloc --conf narenas:1 -- sort -n: same output"
    else
        fail "xalloc -- sort: different output or stderr: $(head -3 "$W/sort.err")"
    fi
if grep -q '^  stats_print ' "$W/options.out"; then
    expect=stats_print:true
    wrap statsconf 0 "$X" --stats -- sh -c 'echo "$XALLOC_CONF"' &&
        if [ "$(cat "$W/statsconf.out")" = "$expect" ]; then ok "xalloc --stats: XALLOC_CONF=$expect"; else
            fail "xalloc --stats: XALLOC_CONF='$(cat "$W/statsconf.out")', want $expect"; fi
    if grep -q '^  stats_format ' "$W/options.out"; then
        expect=stats_print:true,stats_format:json
        wrap statsjconf 0 "$X" --stats=json -- sh -c 'echo "$XALLOC_CONF"' &&
            if [ "$(cat "$W/statsjconf.out")" = "$expect" ]; then ok "xalloc --stats=json: XALLOC_CONF=$expect"; else
                fail "xalloc --stats=json: XALLOC_CONF='$(cat "$W/statsjconf.out")', want $expect"; fi
    fi
    if grep -q '^  stats_report ' "$W/options.out"; then
        expect=stats_print:true,stats_report:explain
        wrap explainconf 0 "$X" --explain -- sh -c 'echo "$XALLOC_CONF"' &&
            if [ "$(cat "$W/explainconf.out")" = "$expect" ]; then ok "xalloc --explain: XALLOC_CONF=$expect"; else
                fail "xalloc --explain: XALLOC_CONF='$(cat "$W/explainconf.out")', want $expect"; fi
        wrap explain 0 "$X" --explain -- sort "$W/sort.in" &&
            if grep -q '^___ xalloc explain: where the resident memory is ___$' "$W/explain.err" &&
                grep -q '^largest part an option could shrink: ' "$W/explain.err"; then
                ok "xalloc --explain -- sort: the report at exit"
            else
                fail "xalloc --explain -- sort: no report on stderr:"
                head -5 "$W/explain.err" | sed 's/^/    /'
            fi
    fi
    if grep -q '^  prof_dump_on_exit ' "$W/options.out"; then
        expect=prof:true,prof_dump_on_exit:true,prof_prefix:$W/wp
        wrap profconf 0 "$X" --prof="$W/wp" -- sh -c 'echo "$XALLOC_CONF"' &&
            if [ "$(cat "$W/profconf.out")" = "$expect" ]; then ok "xalloc --prof=PREFIX: XALLOC_CONF=$expect"; else
                fail "xalloc --prof: XALLOC_CONF='$(cat "$W/profconf.out")', want $expect"; fi
        wrap prof 0 "$X" --prof="$W/wp" -- sort "$W/sort.in" &&
            if grep -q "^xalloc: prof: .*; profile $W/wp\.[0-9]*\.0\.leak\.heap\.pb$" "$W/prof.err" &&
                [ -s "$(ls "$W"/wp.*.leak.heap.pb 2>/dev/null | head -1)" ]; then
                ok "xalloc --prof -- sort: leak profile and summary at exit"
            else
                fail "xalloc --prof -- sort: no profile or summary:"
                head -5 "$W/prof.err" | sed 's/^/    /'
            fi
    fi
    # python3 exits through exit() with stderr open (coreutils programs
    # close stderr in their own exit handler)
    if command -v python3 >/dev/null 2>&1; then
        wrap stats 0 "$X" --stats -- python3 -c 'd = [str(i) for i in range(100000)]' &&
            if [ -s "$W/stats.err" ] && ! grep -q 'xalloc: ' "$W/stats.err"; then
                ok "xalloc --stats -- python3: $(wc -l <"$W/stats.err" | tr -d ' ') lines of statistics at exit"
            else
                fail "xalloc --stats -- python3 printed nothing (or an error) on stderr:"
                head -5 "$W/stats.err" | sed 's/^/    /'
            fi
        if grep -q '^  stats_format ' "$W/options.out"; then
            wrap statsj 0 "$X" --stats=json -- python3 -c 'd = [str(i) for i in range(100000)]' &&
                if grep -q '^{' "$W/statsj.err"; then ok "xalloc --stats=json -- python3: JSON on stderr"; else
                    fail "xalloc --stats=json -- python3: no JSON on stderr:"
                    head -5 "$W/statsj.err" | sed 's/^/    /'
                fi
        fi
    fi
else
    wrap stats 125 "$X" --stats -- true &&
        if grep -q '^xalloc: --stats needs a libxalloc with the stats_print option' "$W/stats.err"; then
            ok "library without stats_print: --stats refused: $(cat "$W/stats.err")"
        else
            fail "--stats refusal message: $(cat "$W/stats.err")"
        fi
fi
# staged wrapper: its baked-in library does not exist, it uses ../lib
wrap staged 0 "$DP/bin/xalloc" -- sh -c 'echo "$LD_PRELOAD"' &&
    if [ "$(cat "$W/staged.out")" = "$DP/lib/libxalloc.so.$SOVER" ]; then
        ok "staged wrapper falls back to bin/../lib"
    else
        fail "staged wrapper preloads '$(cat "$W/staged.out")', want $DP/lib/libxalloc.so.$SOVER"
    fi
# source tree wrapper
wrap tree 0 sh "$SRC/tools/xalloc.in" --lib "$XALLOC_SO" -- sh -c 'echo "$LD_PRELOAD"' &&
    if [ "$(cat "$W/tree.out")" = "$(cd "$(dirname "$XALLOC_SO")" && pwd -P)/$(basename "$XALLOC_SO")" ]; then
        ok "tools/xalloc.in --lib runs from the source tree"
    else
        fail "tools/xalloc.in --lib $XALLOC_SO preloads '$(cat "$W/tree.out")'"
    fi
if [ "$(cd "$(dirname "$XALLOC_SO")" && pwd -P)" = "$(cd "$SRC/lib" 2>/dev/null && pwd -P)" ]; then
    wrap tree2 0 sh "$SRC/tools/xalloc.in" -- sh -c 'echo "$LD_PRELOAD"' &&
        case $(cat "$W/tree2.out") in
        "$(cd "$SRC/lib" && pwd -P)"/libxalloc.so*) ok "tools/xalloc.in finds the tree's lib/" ;;
        *) fail "tools/xalloc.in preloads '$(cat "$W/tree2.out")'" ;;
        esac
fi

# ---- (e) man pages ------------------------------------------------------------------------
if [ -n "$have_man" ]; then
    for page in "$QM/man1/xalloc.1" "$QM/man3/xalloc.3"; do
        MANWIDTH=80 man --warnings -l "$page" >"$W/man.out" 2>"$W/man.err"
        rc=$?
        if [ $rc -ne 0 ] || [ -s "$W/man.err" ] || [ "$(wc -l <"$W/man.out")" -lt 40 ]; then
            fail "man --warnings -l $page: rc=$rc, warnings:"
            head -10 "$W/man.err" | sed 's/^/    /'
        else
            ok "man -l $(basename "$page"): $(wc -l <"$W/man.out" | tr -d ' ') lines, no warnings"
        fi
    done
    MANPATH=$QM MANWIDTH=80 man 3 xalloc_purge >"$W/man.so.out" 2>"$W/man.so.err"
    if grep -q 'xalloc_purge()' "$W/man.so.out" && [ ! -s "$W/man.so.err" ]; then
        ok "man 3 xalloc_purge (MANPATH=$QM) shows xalloc(3)"
    else
        fail "man 3 xalloc_purge with MANPATH=$QM: $(head -3 "$W/man.so.err")"
    fi
fi
for o in $opts; do
    grep -q "^\.BI $o: " "$SRC/man/xalloc.3" || fail "man/xalloc.3 does not document the option $o (src/options.h)"
done
funcs=$(sed -n 's/^[a-z][a-z ]*[ *]\([a-z_0-9]*\)(.*/\1/p' "$SRC/include/xalloc.h")
[ -n "$funcs" ] || fail "cannot read the function names from $SRC/include/xalloc.h"
for fn in $funcs; do
    grep -q "^\.B[IR]\{0,1\} \"[^\"]*[ *]$fn(" "$SRC/man/xalloc.3" || fail "man/xalloc.3 has no synopsis line for $fn (include/xalloc.h)"
done
ok "xalloc(3) checked against $(echo $opts | wc -w | tr -d ' ') options and $(echo $funcs | wc -w | tr -d ' ') functions"

# ---- (h) default LIBDIR, ldconfig only where the loader looks -----------------------------
ma=$($CC -print-multiarch 2>/dev/null)
if [ -n "$ma" ]; then
    if submake -n install PREFIX=/usr DESTDIR=/nonexistent 2>/dev/null | grep -qF "/nonexistent/usr/lib/$ma/libxalloc.so.$VER"; then
        ok "PREFIX=/usr installs the library into /usr/lib/$ma"
    else
        fail "PREFIX=/usr does not install into the multiarch directory /usr/lib/$ma"
    fi
fi
if [ "$(id -u)" = 0 ]; then
    # A stand-in ldconfig: with -N -v it lists the directories the loader
    # searches (here only $W/sys); any other call is logged as a cache rebuild.
    printf '#!/bin/sh\ncase "$*" in\n"-N -v") echo "%s: (stand-in)" ;;\n*) echo "rebuild $*" >>"%s" ;;\nesac\n' \
        "$W/sys" "$W/ldconfig.calls" >"$W/fake-ldconfig"
    chmod +x "$W/fake-ldconfig"
    : >"$W/ldconfig.calls"
    submake install PREFIX="$W/priv" LDCONFIG="$W/fake-ldconfig" >"$W/install.h1.log" 2>&1 ||
        fail "make install PREFIX=$W/priv failed: $(tail -3 "$W/install.h1.log")"
    if [ ! -s "$W/ldconfig.calls" ] && grep -q "not in the loader's search path" "$W/install.h1.log"; then
        ok "install to a private prefix: no ldconfig run, a note on how to find the library"
    else
        fail "install to a private prefix ran ldconfig or gave no note: $(cat "$W/ldconfig.calls") $(tail -2 "$W/install.h1.log")"
    fi
    submake install PREFIX="$W/priv" LIBDIR="$W/sys" LDCONFIG="$W/fake-ldconfig" >"$W/install.h2.log" 2>&1 ||
        fail "make install LIBDIR=$W/sys failed: $(tail -3 "$W/install.h2.log")"
    if grep -qx "rebuild " "$W/ldconfig.calls"; then
        ok "install into a directory the loader searches: ldconfig runs"
    else
        fail "install into a searched directory did not run ldconfig: $(cat "$W/ldconfig.calls")"
    fi
    submake uninstall PREFIX="$W/priv" >/dev/null 2>&1
    submake uninstall PREFIX="$W/priv" LIBDIR="$W/sys" >/dev/null 2>&1
    rm -rf "${W:?}/priv" "${W:?}/sys"
else
    echo "skip: the ldconfig rule is checked as root only"
fi

# make dist in a clone with an uncommitted change names the change
if command -v git >/dev/null 2>&1 && git -C "$SRC" rev-parse --git-dir >/dev/null 2>&1; then
    rm -rf "${W:?}/clone"
    if git clone -q "$SRC" "$W/clone" 2>"$W/clone.err"; then
        echo "/* uncommitted */" >>"$W/clone/src/os.c"
        if submake -C "$W/clone" dist >"$W/dist.dirty.log" 2>&1 &&
            grep -q "warning: .*uncommitted" "$W/dist.dirty.log" && grep -q "M src/os.c" "$W/dist.dirty.log"; then
            ok "make dist on a tree with an uncommitted change warns and names src/os.c"
        else
            fail "make dist on a dirty tree gave no warning: $(head -3 "$W/dist.dirty.log")"
        fi
        rm -rf "${W:?}/clone"
    else
        fail "git clone of $SRC failed: $(head -2 "$W/clone.err")"
    fi
else
    echo "skip: not a git checkout: the dirty-tree warning of make dist is not checked"
fi

# ---- (f) uninstall ----------------------------------------------------------------------------
submake uninstall DESTDIR="$D" PREFIX="$P" >"$W/uninstall.a.log" 2>&1 ||
    fail "make uninstall DESTDIR=$D PREFIX=$P failed: $(tail -5 "$W/uninstall.a.log")"
submake uninstall PREFIX="$Q" LIBDIR="$QL" INCLUDEDIR="$QI" BINDIR="$QB" MANDIR="$QM" \
    >"$W/uninstall.c.log" 2>&1 || fail "make uninstall (directory variables) failed: $(tail -5 "$W/uninstall.c.log")"
: >"$W/empty"
expect_tree "after make uninstall (staged)" "$D" "$W/empty"
expect_tree "after make uninstall (directory variables)" "$Q" "$W/empty"

# ---- (g) release tarball: make dist, then build, install and use it clean --------------
( cd "$W" && rm -rf distsrc && mkdir distsrc ) || fail "cannot make $W/distsrc"
if submake dist >"$W/dist.log" 2>&1 && [ -f "$SRC/xalloc-$VER.tar.gz" ]; then
    tar -xzf "$SRC/xalloc-$VER.tar.gz" -C "$W/distsrc" && rm -f "$SRC/xalloc-$VER.tar.gz"
    DS="$W/distsrc/xalloc-$VER"
    if [ -x "$DS/configure" ] && grep -q "PACKAGE_VERSION='$VER'" "$DS/configure"; then
        ok "make dist: the tarball ships the generated configure (version $VER)"
    else
        fail "make dist: no executable configure of version $VER in the tarball"
    fi
    if env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL $MAKE -s -C "$DS" lib >"$W/dist-build.log" 2>&1 &&
       env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u PREFIX $MAKE -s -C "$DS" install DESTDIR="$W/distdest" \
           PREFIX=/usr/local LDCONFIG=true >"$W/dist-install.log" 2>&1; then
        printf '#include <stdlib.h>\n#include <string.h>\n#include <xalloc.h>\nint main(void){char *p=malloc(100);strcpy(p,"ok");return strcmp(xalloc_version(),"%s")!=0||strcmp(p,"ok")!=0;}\n' "$VER" >"$W/dist.c"
        if $CC -I"$W/distdest/usr/local/include" "$W/dist.c" -o "$W/dist.bin" -L"$W/distdest/usr/local/lib" -lxalloc \
           >"$W/dist-cc.log" 2>&1 && LD_LIBRARY_PATH="$W/distdest/usr/local/lib" "$W/dist.bin"; then
            ok "make dist: tarball builds, installs and links cleanly"
        else
            fail "program against the installed release tarball failed: $(tail -3 "$W/dist-cc.log")"
        fi
    else
        fail "release tarball does not build/install: $(tail -5 "$W/dist-build.log" "$W/dist-install.log")"
    fi
else
    fail "make dist failed: $(tail -5 "$W/dist.log")"
fi

if [ $fails -ne 0 ]; then
    echo "install.sh: $fails check(s) FAILED"
    exit 1
fi
echo "install.sh: all checks passed"
exit 0
