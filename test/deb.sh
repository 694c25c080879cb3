#!/bin/sh
# deb.sh: the Debian packaging in debian/.
#  (a) dpkg-buildpackage -us -uc -b in a copy of the tree (under $BUILD, so
#      nothing is written next to $SRC) builds libxalloc$SOVER,
#      libxalloc-dev and xalloc; dpkg-source -b builds the native source
#      package; debian/libxalloc0.symbols matches the library's exports.
#  (b) the tree stays clean: what the build writes is ignored by git, and
#      `debian/rules clean` removes all of it.
#  (c) the changelog's version is `make print-version` (include/xalloc.h).
#  (d) each .deb holds exactly the expected files and links, owned by root,
#      and the packages depend on each other at the exact version.
#  (e) lintian on the .changes and the .dsc prints no E: and no W: line.
#  (f) the packages extracted into a scratch root (dpkg-deb -x; the system
#      is not touched): a program built against the extracted header and
#      -lxalloc runs with malloc served by the extracted library (dladdr,
#      xalloc_ctl statistics, malloc_usable_size), and so does one linked
#      with the extracted libxalloc.a; LD_PRELOAD of libxalloc.so.0 works
#      in cat and python3; the extracted wrapper runs commands with it;
#      pkg-config finds xalloc.pc through PKG_CONFIG_SYSROOT_DIR.
#  (g) only as root with XALLOC_TEST_DEB_INSTALL=1 (a throwaway machine):
#      dpkg -i of the three packages, `cc prog.c -lxalloc` and `xalloc --
#      true` against the installed system, then dpkg -r and dpkg --purge
#      leave none of their files behind.  Nothing is installed when any
#      of those files (or a `make install` copy in /usr/local) is there.
#
# Needs dpkg-dev, debhelper and lintian, plus the Build-Depends of
# debian/control (build-essential, valgrind); pkg-config and python3 for
# two of the checks, root for (g).  A missing one is a `skip:` line and
# exit 0, unless XALLOC_TEST_DEB_REQUIRED is set (to anything but empty or
# 0): then it is a FAIL.
# Env: XALLOC_SO, XALLOC_A, BUILD, SRC, CC.  Exit status: the number of
# failed checks.

set -u
export LC_ALL=C
. "${SRC:?SRC must be set}/test/lib/common.sh"
tu_setup deb
unset LIBDIR          # a make variable here: keep it out of the way
case ${XALLOC_TEST_DEB_REQUIRED:-0} in
0) required= ;;
*) required=1 ;;
esac

# missing WHAT PACKAGE: a tool or file is not there; skip the part that
# needs it, or fail when the Debian checks are required
missing() {
    if [ -n "$required" ]; then
        fail "$1 not installed (apt-get install $2); XALLOC_TEST_DEB_REQUIRED is set"
    else
        echo "skip: $1 not installed (apt-get install $2)"
        skipped=1
    fi
}
skipped=
# finish: the closing line and exit status of the script
finish() {
    if [ $fails -ne 0 ]; then
        echo "deb.sh: $fails check(s) FAILED"
    elif [ -n "$skipped" ]; then
        echo "deb.sh: passed, but checks were skipped (see above)"
    else
        echo "deb.sh: all checks passed"
    fi
    exit $fails
}
# show FILE [LINES]: the end of FILE, indented, under a FAIL line
show() {
    tail -"${2:-15}" "$1" | sed 's/^/    /'
}

# ---- tools ------------------------------------------------------------------------
absent=
command -v dpkg-buildpackage >/dev/null 2>&1 || absent="$absent dpkg-buildpackage:dpkg-dev"
command -v dh >/dev/null 2>&1 || absent="$absent dh:debhelper"
command -v lintian >/dev/null 2>&1 || absent="$absent lintian:lintian"
if [ -n "$absent" ]; then
    for a in $absent; do missing "${a%%:*}" "${a#*:}"; done
    finish
fi
ARCH=$(dpkg-architecture -qDEB_HOST_ARCH 2>/dev/null)
MA=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null)
if [ -z "$ARCH" ] || [ -z "$MA" ]; then
    fail "dpkg-architecture does not tell the host architecture"
    finish
fi
if ! grep -q "^Architecture:.* \($ARCH\|any\)\( \|\$\)" "$SRC/debian/control"; then
    echo "skip: debian/control builds no package for $ARCH (xalloc supports 64-bit x86 and ARM)"
    finish
fi
# the Build-Depends (build-essential is implied)
if ! dpkg-checkbuilddeps "$SRC/debian/control" >"$W/builddeps.log" 2>&1; then
    unmet=$(sed -n 's/.*[Uu]nmet build dependencies: //p' "$W/builddeps.log")
    if [ -n "$unmet" ]; then
        missing "build dependencies '$unmet'" "$(echo "$unmet" | sed 's/([^)]*)//g; s/\[[^]]*\]//g; s/,//g' | tr -s ' ' | sed 's/ *$//')"
    else
        fail "dpkg-checkbuilddeps:"
        show "$W/builddeps.log"
    fi
    finish
fi

# The version, soname version and package names.
VER=$(env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s -C "$SRC" print-version 2>/dev/null)
soname=$(readelf -d "$XALLOC_SO" 2>/dev/null | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p')
SOVER=${soname#libxalloc.so.}
case $VER.$SOVER in
[0-9]*.[0-9]*.[0-9]*.[0-9]*) ;;
*) echo "FAIL: cannot tell the version ('$VER') or soname ('$soname')"; exit 1 ;;
esac
LIB=libxalloc$SOVER
DEV=libxalloc-dev
TOOL=xalloc
for p in $LIB $DEV $TOOL; do
    grep -qx "Package: $p" "$SRC/debian/control" ||
        fail "debian/control has no package $p (soname $soname: the library package is $LIB)"
done
[ $fails -eq 0 ] || finish

# ---- (c) version ---------------------------------------------------------------------
DEBVER=$(dpkg-parsechangelog -l "$SRC/debian/changelog" -S Version 2>"$W/changelog.err")
upstream=${DEBVER#*:}
case $upstream in *-*) upstream=${upstream%-*} ;; esac
fmt=$(cat "$SRC/debian/source/format" 2>/dev/null)
if [ "$upstream" = "$VER" ]; then
    ok "debian/changelog: version $DEBVER, upstream $upstream = make print-version"
else
    fail "debian/changelog's version $DEBVER (upstream '$upstream') is not make print-version's $VER: add a changelog entry (dch -v) $(cat "$W/changelog.err")"
fi
case $fmt.$DEBVER in
"3.0 (native)".*-*) fail "native source format with a Debian revision in $DEBVER" ;;
"3.0 (quilt)".*-*) ;;
"3.0 (quilt)".*) fail "quilt source format needs a Debian revision (-1) in $DEBVER" ;;
"3.0 (native)".*) ;;
*) fail "debian/source/format is '$fmt'" ;;
esac
FILEVER=${DEBVER#*:}

# ---- (a) build in a copy ------------------------------------------------------------
# The tree: the files git knows or would add, else (no git checkout) the
# directory less build outputs and local configuration.
T=$W/tree
S=$T/xalloc-$VER
mkdir -p "$S" || exit 1
if command -v git >/dev/null 2>&1 &&
    [ "$(git -C "$SRC" rev-parse --show-toplevel 2>/dev/null)" = "$(cd "$SRC" && pwd -P)" ]; then
    have_git=1
    # --ignore-failed-read: files deleted but not yet committed
    (cd "$SRC" && git ls-files -z --cached --others --exclude-standard |
        tar --null -T - --ignore-failed-read -cf - 2>/dev/null) | (cd "$S" && tar -xf -)
else
    have_git=
    (cd "$SRC" && tar -cf - --exclude=./build --exclude=./lib --exclude=./.git --exclude='./xalloc-*.tar.gz' \
        --exclude=./bench/results --exclude=./bench/bin --exclude=./config.mk --exclude=./config.log \
        --exclude=./config.status --exclude=./configure --exclude=./autom4te.cache \
        --exclude='*.o' --exclude='*.so' --exclude='*.a' .) | (cd "$S" && tar -xf -)
fi
if [ ! -f "$S/debian/rules" ] || [ ! -f "$S/Makefile" ]; then
    fail "cannot copy the tree to $S"
    finish
fi
# list_tree DIR: every file and link under DIR, relative, sorted
list_tree() {
    (cd "$1" && find . \( -type f -o -type l \) | sed 's|^\./||' | sort)
}
list_tree "$S" >"$W/tree.before"

# The build's environment: none of the variables of an outer make or of
# the caller that would move the installation or change the flags.
debenv() {
    env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u DESTDIR -u PREFIX -u LIBDIR -u INCLUDEDIR -u BINDIR \
        -u MANDIR -u PKGCONFIGDIR -u CFLAGS -u CPPFLAGS -u LDFLAGS -u XALLOC_CONF "$@"
}
# the source package too, for lintian's checks of debian/ itself
(cd "$T" && debenv dpkg-source -b "xalloc-$VER") >"$W/source.log" 2>&1 ||
    { fail "dpkg-source -b:"; show "$W/source.log"; }
start=$(date +%s)
(cd "$S" && debenv dpkg-buildpackage -us -uc -b) >"$W/build.log" 2>&1
rc=$?
CHANGES=$T/xalloc_${FILEVER}_$ARCH.changes
DSC=$T/xalloc_$FILEVER.dsc
deb() { echo "$T/$1_${FILEVER}_$ARCH.deb"; }
if [ $rc -ne 0 ] || [ ! -f "$CHANGES" ]; then
    fail "dpkg-buildpackage -us -uc -b (rc=$rc), see $W/build.log:"
    show "$W/build.log" 25
    finish
fi
built=
for p in $LIB $DEV $TOOL; do
    [ -f "$(deb "$p")" ] || fail "no $(deb "$p")"
    built="$built $(basename "$(deb "$p")")"
done
ok "dpkg-buildpackage -us -uc -b in $(($(date +%s) - start)) s:$built"
# dpkg-gensymbols only warns about exports missing from the symbols file
if grep -q 'dpkg-gensymbols: warning: .*new \(symbols\|libraries\) appeared' "$W/build.log"; then
    fail "debian/$LIB.symbols lacks symbols of the library (add them, version $DEBVER):"
    grep '^+ ' "$W/build.log" | head -20 | sed 's/^/    /'
else
    ok "debian/$LIB.symbols: every exported symbol listed"
fi

# ---- (b) the tree after the build, and after debian/rules clean ------------------------
list_tree "$S" >"$W/tree.built"
comm -13 "$W/tree.before" "$W/tree.built" >"$W/tree.new"
if [ -n "$have_git" ]; then
    git -C "$SRC" check-ignore --stdin <"$W/tree.new" >"$W/tree.ignored" 2>/dev/null
    sort -o "$W/tree.ignored" "$W/tree.ignored"
    if comm -23 "$W/tree.new" "$W/tree.ignored" | grep -q .; then
        fail "the build leaves files that git would list as untracked (add them to .gitignore):"
        comm -23 "$W/tree.new" "$W/tree.ignored" | head -10 | sed 's/^/    /'
    else
        ok "all $(wc -l <"$W/tree.new" | tr -d ' ') files the build writes are ignored by git"
    fi
fi
(cd "$S" && debenv debian/rules clean) >"$W/clean.log" 2>&1 || { fail "debian/rules clean:"; show "$W/clean.log"; }
list_tree "$S" >"$W/tree.clean"
if cmp -s "$W/tree.before" "$W/tree.clean"; then
    ok "debian/rules clean restores the tree"
else
    fail "after debian/rules clean the tree differs from the copy (- copy, + after clean):"
    diff "$W/tree.before" "$W/tree.clean" | grep '^[<>]' | head -10 | sed 's/^</    -/; s/^>/    +/'
fi

# ---- (d) contents and relations -----------------------------------------------------------
L=usr/lib/$MA
cat >"$W/$LIB.expected" <<EOF
$L/libxalloc.so.$SOVER -> libxalloc.so.$VER
$L/libxalloc.so.$VER
usr/share/doc/$LIB/changelog.gz
usr/share/doc/$LIB/copyright
EOF
cat >"$W/$DEV.expected" <<EOF
$L/libxalloc.a
$L/libxalloc.so -> libxalloc.so.$SOVER
$L/pkgconfig/xalloc.pc
usr/include/xalloc.h
usr/share/doc/$DEV/README.md.gz
usr/share/doc/$DEV/changelog.gz
usr/share/doc/$DEV/copyright
usr/share/man/man3/xalloc.3.gz
usr/share/man/man3/xalloc_ctl.3.gz -> xalloc.3.gz
usr/share/man/man3/xalloc_purge.3.gz -> xalloc.3.gz
usr/share/man/man3/xalloc_stats_print.3.gz -> xalloc.3.gz
usr/share/man/man3/xalloc_version.3.gz -> xalloc.3.gz
EOF
cat >"$W/$TOOL.expected" <<EOF
usr/bin/xalloc
usr/share/doc/$TOOL/changelog.gz
usr/share/doc/$TOOL/copyright
usr/share/man/man1/xalloc.1.gz
EOF
for p in $LIB $DEV $TOOL; do
    sort -o "$W/$p.expected" "$W/$p.expected"
    dpkg-deb -c "$(deb "$p")" >"$W/$p.contents" 2>&1 || { fail "dpkg-deb -c $(deb "$p")"; continue; }
    # "perms owner size date time ./path [-> target]", directories left out
    awk '$1 !~ /^d/ { sub(/^\.\//, "", $6); print $6 ($7 == "->" ? " -> " $8 : "") }' "$W/$p.contents" |
        sort >"$W/$p.got"
    if cmp -s "$W/$p.expected" "$W/$p.got"; then
        ok "$p: exactly the $(wc -l <"$W/$p.got" | tr -d ' ') expected files and links"
    else
        fail "$p: files differ from the expected ones (- expected, + in the package):"
        diff "$W/$p.expected" "$W/$p.got" | grep '^[<>]' | sed 's/^</    -/; s/^>/    +/'
    fi
    awk '$2 != "root/root" { print "    " $0 }' "$W/$p.contents" >"$W/$p.owners"
    [ -s "$W/$p.owners" ] && { fail "$p: files not owned by root/root:"; cat "$W/$p.owners"; }
done
grep -q "^-rwxr-xr-x .* \./usr/bin/xalloc\$" "$W/$TOOL.contents" || fail "usr/bin/xalloc is not mode 755"
grep -q "^-rw-r--r-- .* \./$L/libxalloc.so.$VER\$" "$W/$LIB.contents" || fail "libxalloc.so.$VER is not mode 644"
# field PKG NAME: a control field of a built package
field() { dpkg-deb -f "$(deb "$1")" "$2" 2>/dev/null; }
for p in $DEV $TOOL; do
    case ", $(field "$p" Depends), " in
    *", $LIB (= $DEBVER), "*) ;;
    *) fail "$p does not depend on $LIB (= $DEBVER): Depends: $(field "$p" Depends)" ;;
    esac
done
case $(field "$LIB" Depends) in
libc6*) ;;
*) fail "$LIB: Depends: '$(field "$LIB" Depends)' (shlibs:Depends should give libc6)" ;;
esac
if [ "$(field "$LIB" Multi-Arch)" != same ] || [ "$(field "$DEV" Multi-Arch)" != same ]; then
    fail "$LIB and $DEV should be Multi-Arch: same"
fi
dpkg-deb -I "$(deb "$LIB")" symbols >"$W/symbols" 2>&1
if grep -q "^libxalloc.so.$SOVER $LIB " "$W/symbols" && grep -q '^ malloc@Base ' "$W/symbols" &&
    grep -q '^ xalloc_version@Base ' "$W/symbols" && dpkg-deb -I "$(deb "$LIB")" triggers 2>/dev/null | grep -q ldconfig; then
    ok "$LIB: Depends $(field "$LIB" Depends); symbols ($(grep -c '@Base' "$W/symbols") symbols) and ldconfig trigger"
else
    fail "$LIB: no symbols file for libxalloc.so.$SOVER or no ldconfig trigger:"
    show "$W/symbols" 5
fi

# ---- (e) lintian ---------------------------------------------------------------------------
lintian "$CHANGES" "$DSC" >"$W/lintian.out" 2>&1
rc=$?
if grep -q '^[EW]: ' "$W/lintian.out"; then
    fail "lintian: errors or warnings:"
    grep '^[EW]: ' "$W/lintian.out" | sed 's/^/    /'
elif [ $rc -ne 0 ]; then
    fail "lintian exited with $rc:"
    show "$W/lintian.out"
else
    ok "lintian $(basename "$CHANGES") $(basename "$DSC"): no E: or W: ($(grep -c '^[A-Z]: ' "$W/lintian.out") other tags)"
fi

# ---- (f) the packages, extracted --------------------------------------------------------------
R=$W/root
mkdir -p "$R"
for p in $LIB $DEV $TOOL; do
    dpkg-deb -x "$(deb "$p")" "$R" || fail "dpkg-deb -x $(deb "$p")"
done
RL=$R/$L
cat >"$W/prog.c" <<'EOF'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xalloc.h>

/* bytes in live blocks, from xalloc's statistics */
static uint64_t allocated(void)
{
    uint64_t v;
    size_t len = sizeof v;
    return xalloc_ctl("stats.allocated", &v, &len, NULL, 0) == 0 ? v : UINT64_MAX;
}

int main(void)
{
    uint64_t before = allocated();
    char *big = malloc(200000);
    char *small = malloc(20);
    if (!big || !small) return 1;
    memset(big, 1, 200000);
    uint64_t after = allocated();
    /* xalloc's size classes are multiples of 16; glibc would answer 24 */
    size_t usable = malloc_usable_size(small);
    printf("version %s header %s\n", xalloc_version(), XALLOC_VERSION);
    printf("stats.allocated grew by 200000+: %s\n",
           before != UINT64_MAX && after != UINT64_MAX && after - before >= 200000 ? "yes" : "no");
    printf("usable size of 20 bytes: %s\n", usable >= 20 && usable % 16 == 0 ? "a multiple of 16" : "other");
    Dl_info d;
    void *m = dlsym(RTLD_DEFAULT, "malloc");
    if (m && dladdr(m, &d) && d.dli_fname) printf("malloc from %s\n", d.dli_fname);
    free(small);
    free_sized(big, 200000);
    return 0;
}
EOF
# check_prog NAME MALLOC-FROM-PATTERN CMD...: run a build of prog.c; malloc
# must come from a file that matches the shell pattern
check_prog() {
    name=$1 from=$2
    shift 2
    "$@" >"$W/$name.out" 2>&1
    rc=$?
    mfrom=$(sed -n 's/^malloc from //p' "$W/$name.out")
    # shellcheck disable=SC2254
    case $mfrom in
    $from) from_ok=1 ;;
    *) from_ok= ;;
    esac
    if [ $rc -eq 0 ] && [ -n "$from_ok" ] && grep -qx "version $VER header $VER" "$W/$name.out" &&
        grep -qx "stats.allocated grew by 200000+: yes" "$W/$name.out" &&
        grep -qx "usable size of 20 bytes: a multiple of 16" "$W/$name.out"; then
        ok "$name: $(grep '^malloc from' "$W/$name.out"), statistics and usable size are xalloc's"
    else
        fail "$name (rc=$rc):"
        show "$W/$name.out"
    fi
}
# shellcheck disable=SC2086
if $CC -O1 -I"$R/usr/include" -o "$W/prog" "$W/prog.c" -L"$RL" -lxalloc >"$W/prog.ld" 2>&1; then
    check_prog "extracted -lxalloc" "$RL/libxalloc.so.$SOVER" env LD_LIBRARY_PATH="$RL" "$W/prog"
else
    fail "cannot build against the extracted header and library:"
    show "$W/prog.ld"
fi
if $CC -O1 -I"$R/usr/include" -o "$W/prog_a" "$W/prog.c" "$RL/libxalloc.a" -pthread >"$W/prog_a.ld" 2>&1; then
    check_prog "extracted libxalloc.a" "$W/prog_a" "$W/prog_a"
else
    fail "cannot link the extracted libxalloc.a:"
    show "$W/prog_a.ld"
fi
LD_PRELOAD=$RL/libxalloc.so.$SOVER cat /proc/self/maps >"$W/maps.out" 2>&1
if grep -q " $RL/libxalloc.so.$VER\$" "$W/maps.out"; then
    ok "LD_PRELOAD=.../libxalloc.so.$SOVER cat /proc/self/maps: the library is mapped"
else
    fail "LD_PRELOAD=$RL/libxalloc.so.$SOVER cat: not mapped:"
    show "$W/maps.out" 5
fi
if command -v python3 >/dev/null 2>&1; then
    LD_PRELOAD=$RL/libxalloc.so.$SOVER python3 -c '
import ctypes
f = ctypes.CDLL(None).xalloc_version
f.restype = ctypes.c_char_p
d = {i: str(i) * 4 for i in range(100000)}
print("xalloc_version", f().decode(), len(d))' >"$W/python3.out" 2>&1
    if [ "$(cat "$W/python3.out")" = "xalloc_version $VER 100000" ]; then
        ok "LD_PRELOAD=.../libxalloc.so.$SOVER python3: xalloc_version() = $VER"
    else
        fail "python3 under the extracted library printed:"
        show "$W/python3.out" 5
    fi
else
    missing python3 python3
fi
X=$R/usr/bin/xalloc
if grep -qx "installed_lib='/$L/libxalloc.so.$SOVER'" "$X" && grep -qx "wrapper_version='$VER'" "$X"; then
    ok "wrapper: preloads /$L/libxalloc.so.$SOVER, version $VER"
else
    fail "wrapper $X: library path or version not /$L/libxalloc.so.$SOVER, $VER:"
    grep -n "^installed_lib=\|^wrapper_version=" "$X" | sed 's/^/    /'
fi
# shellcheck disable=SC2016
out=$("$X" --lib "$RL/libxalloc.so.$SOVER" -- sh -c 'echo "$LD_PRELOAD"' 2>&1)
"$X" --lib "$RL/libxalloc.so.$SOVER" --version >"$W/version.out" 2>&1
if "$X" --lib "$RL/libxalloc.so.$SOVER" -- true && [ "$out" = "$RL/libxalloc.so.$SOVER" ] &&
    grep -q "^library $RL/libxalloc.so.$SOVER: .*$VER" "$W/version.out"; then
    ok "extracted wrapper --lib ...: preloads it, runs true, --version $(tr '\n' ';' <"$W/version.out")"
else
    fail "extracted wrapper with --lib: LD_PRELOAD='$out', --version: $(tr '\n' ';' <"$W/version.out" 2>/dev/null)"
fi
if command -v pkg-config >/dev/null 2>&1; then
    # only the extracted xalloc.pc; keep -I/-L of the (sysroot's) system dirs
    flags=$(env -u PKG_CONFIG_PATH PKG_CONFIG_LIBDIR="$RL/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$R" \
        PKG_CONFIG_ALLOW_SYSTEM_CFLAGS=1 PKG_CONFIG_ALLOW_SYSTEM_LIBS=1 pkg-config --cflags --libs xalloc 2>&1)
    pcver=$(env -u PKG_CONFIG_PATH PKG_CONFIG_LIBDIR="$RL/pkgconfig" pkg-config --modversion xalloc 2>&1)
    # shellcheck disable=SC2086,SC2116
    flags=$(echo $flags)            # pkg-config ends with a space
    # shellcheck disable=SC2086
    if [ "$flags" = "-I$R/usr/include -L$RL -lxalloc" ] && [ "$pcver" = "$VER" ] &&
        $CC -O1 -o "$W/prog_pc" "$W/prog.c" $flags >"$W/prog_pc.ld" 2>&1 &&
        LD_LIBRARY_PATH=$RL "$W/prog_pc" >"$W/prog_pc.out" 2>&1; then
        ok "pkg-config (sysroot $R): $flags, version $pcver; the program builds and runs"
    else
        fail "pkg-config with the extracted xalloc.pc: flags '$flags', version '$pcver':"
        cat "$W/prog_pc.ld" "$W/prog_pc.out" 2>/dev/null | head -10 | sed 's/^/    /'
    fi
else
    missing pkg-config pkg-config
fi

# ---- (g) real installation (root, XALLOC_TEST_DEB_INSTALL=1) --------------------------------------
if [ "${XALLOC_TEST_DEB_INSTALL:-}" != 1 ]; then
    echo "skip: dpkg -i of the packages (set XALLOC_TEST_DEB_INSTALL=1 as root on a throwaway machine)"
    finish
fi
if [ "$(id -u)" != 0 ]; then
    if [ -n "$required" ]; then
        fail "XALLOC_TEST_DEB_INSTALL=1 needs root for dpkg -i; XALLOC_TEST_DEB_REQUIRED is set"
    else
        echo "skip: dpkg -i of the packages (XALLOC_TEST_DEB_INSTALL=1) needs root"
        skipped=1
    fi
    finish
fi
# the packages' files (not directories), absolute
cat "$W/$LIB.got" "$W/$DEV.got" "$W/$TOOL.got" | sed 's/ -> .*//; s|^|/|' >"$W/files"
present=
for p in $LIB $DEV $TOOL; do
    case $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) in
    *not-installed* | "") ;;
    *) present="$present package:$p" ;;
    esac
done
# a `make install` copy under /usr/local would come first for cc and PATH
for f in $(cat "$W/files") /usr/local/lib/libxalloc.so /usr/local/include/xalloc.h /usr/local/bin/xalloc; do
    if [ -e "$f" ] || [ -L "$f" ]; then present="$present $f"; fi
done
if [ -n "$present" ]; then
    # dpkg would take these over and dpkg --purge would delete them
    fail "not installing: already on this system:$present"
    finish
fi
PKGS="$LIB $DEV $TOOL"
# purge_all: remove the packages, whatever happened before (on a signal)
# shellcheck disable=SC2317
purge_all() {
    # shellcheck disable=SC2086
    dpkg --purge $PKGS >>"$W/purge.log" 2>&1
}
trap 'purge_all; exit 1' INT TERM HUP
if DEBIAN_FRONTEND=noninteractive dpkg -i "$(deb "$LIB")" "$(deb "$DEV")" "$(deb "$TOOL")" >"$W/install.log" 2>&1; then
    ok "dpkg -i $PKGS"
else
    fail "dpkg -i:"
    show "$W/install.log"
fi
for p in $PKGS; do
    st=$(dpkg-query -W -f='${Status} ${Version}' "$p" 2>&1)
    [ "$st" = "install ok installed $DEBVER" ] || fail "$p after dpkg -i: '$st'"
done
if ldconfig -p | grep -q "libxalloc.so.$SOVER .*=> .*/$MA/libxalloc.so.$SOVER\$"; then
    ok "ldconfig's cache has libxalloc.so.$SOVER"
else
    fail "libxalloc.so.$SOVER is not in ldconfig's cache after dpkg -i"
fi
if $CC -O1 -o "$W/prog_sys" "$W/prog.c" -lxalloc >"$W/prog_sys.ld" 2>&1; then
    # the loader may name it through /lib (merged /usr)
    check_prog "installed: cc prog.c -lxalloc" "*/$MA/libxalloc.so.$SOVER" "$W/prog_sys"
else
    fail "cc prog.c -lxalloc against the installed packages:"
    show "$W/prog_sys.ld"
fi
xw=$(command -v xalloc)
# shellcheck disable=SC2016
out=$(xalloc -- sh -c 'echo "$LD_PRELOAD"' 2>&1)
if [ "$xw" = /usr/bin/xalloc ] && xalloc -- /bin/true && [ "$out" = "/$L/libxalloc.so.$SOVER" ] &&
    xalloc --version 2>&1 | grep -q "^library /$L/libxalloc.so.$SOVER: .*$VER"; then
    ok "installed: xalloc -- /bin/true; it preloads /$L/libxalloc.so.$SOVER"
else
    fail "installed wrapper: command -v xalloc = '$xw', LD_PRELOAD='$out', --version: $(xalloc --version 2>&1 | tr '\n' ';')"
fi
if command -v pkg-config >/dev/null 2>&1; then
    pcver=$(env -u PKG_CONFIG_PATH -u PKG_CONFIG_LIBDIR -u PKG_CONFIG_SYSROOT_DIR pkg-config --modversion xalloc 2>&1)
    if [ "$pcver" = "$VER" ]; then ok "installed: pkg-config --modversion xalloc = $VER"; else
        fail "installed: pkg-config --modversion xalloc: '$pcver'"; fi
fi
# shellcheck disable=SC2086
dpkg -r $TOOL $DEV $LIB >"$W/remove.log" 2>&1 || { fail "dpkg -r:"; show "$W/remove.log"; }
left=$(while read -r f; do if [ -e "$f" ] || [ -L "$f" ]; then echo "$f"; fi; done <"$W/files")
if [ -z "$left" ]; then ok "dpkg -r $TOOL $DEV $LIB: no file left"; else
    fail "after dpkg -r these are still there: $left"; fi
# shellcheck disable=SC2086
dpkg --purge $TOOL $DEV $LIB >"$W/purge.log" 2>&1 || { fail "dpkg --purge:"; show "$W/purge.log"; }
trap - INT TERM HUP
for p in $PKGS; do
    case $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) in
    *not-installed* | "") ;;
    *) fail "$p after dpkg --purge: $(dpkg-query -W -f='${Status}' "$p" 2>&1)" ;;
    esac
done
ldconfig -p | grep -q "libxalloc.so.$SOVER " && fail "libxalloc.so.$SOVER is still in ldconfig's cache after dpkg --purge"
left=$(while read -r f; do if [ -e "$f" ] || [ -L "$f" ]; then echo "$f"; fi; done <"$W/files")
if [ -z "$left" ]; then ok "dpkg --purge: the packages are gone, no file left, not in ldconfig's cache"; else
    fail "after dpkg --purge these are still there: $left"; fi
finish
