#!/bin/sh
# configure.sh: the optional autoconf front end (configure.ac) generates a
# configure script whose config.mk the Makefile obeys: prefix, debug and
# stats options reach the build.  Needs autoconf (Debian package autoconf).
# Env: SRC, BUILD.  Exit 0 = pass.
set -u
command -v autoconf >/dev/null 2>&1 || { echo "FAIL: autoconf missing (apt-get install autoconf)"; exit 1; }
W=$BUILD/configure.d
rm -rf "$W" && mkdir -p "$W/src" || exit 1
# a copy of the sources without build products
(cd "$SRC" && tar -cf - --exclude=./build --exclude=./lib --exclude=./.git --exclude=./bench/results .) |
    (cd "$W/src" && tar -xf -) || { echo "FAIL: cannot copy the sources"; exit 1; }
cd "$W/src" || exit 1
rm -f config.mk
autoconf >"$W/autoconf.log" 2>&1 || { echo "FAIL: autoconf: $(tail -3 "$W/autoconf.log")"; exit 1; }
./configure --prefix=/opt/xa-test --enable-debug --disable-stats >"$W/configure.log" 2>&1 ||
    { echo "FAIL: configure: $(tail -3 "$W/configure.log")"; exit 1; }
fails=0
for want in 'PREFIX *:= /opt/xa-test' 'DEBUG *:= 1' 'STATS *:= 0'; do
    grep -q "^$want\$" config.mk || { echo "FAIL: config.mk lacks '$want'"; fails=$((fails + 1)); }
done
flags=$(env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -n -B lib 2>/dev/null | grep -c -- '-DXA_DEBUG=1 -DXA_STATS=0')
[ "$flags" -gt 0 ] || { echo "FAIL: the build does not use the configured DEBUG/STATS"; fails=$((fails + 1)); }
env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s lib >"$W/make.log" 2>&1 || { echo "FAIL: make lib: $(tail -3 "$W/make.log")"; fails=$((fails + 1)); }
[ -f lib/libxalloc.so ] || { echo "FAIL: no lib/libxalloc.so"; fails=$((fails + 1)); }
ip=$(env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -n install DESTDIR=/tmp/nowhere 2>/dev/null | grep -c /opt/xa-test)
[ "$ip" -gt 0 ] || { echo "FAIL: make install ignores the configured prefix"; fails=$((fails + 1)); }
[ $fails -eq 0 ] && echo "ok:   configure: prefix, --enable-debug, --disable-stats reach the build"

# Every standard directory and CPPFLAGS reach the build and the install.
f0=$fails
./configure --prefix=/usr --libdir=/usr/lib/xa-multi --includedir=/usr/include/xa --bindir=/usr/xbin \
    --mandir=/usr/xman CPPFLAGS=-DXA_CONFIGURE_PROBE=1 >"$W/configure2.log" 2>&1 ||
    { echo "FAIL: configure with directories: $(tail -3 "$W/configure2.log")"; fails=$((fails + 1)); }
env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -n install DESTDIR=/nowhere >"$W/install2.n" 2>&1
for want in /nowhere/usr/lib/xa-multi/libxalloc.so.0 /nowhere/usr/include/xa/xalloc.h /nowhere/usr/xbin/xalloc \
    /nowhere/usr/xman/man3 /nowhere/usr/lib/xa-multi/pkgconfig/xalloc.pc; do
    grep -qF "$want" "$W/install2.n" || { echo "FAIL: make install ignores the configured directory of $want"; fails=$((fails + 1)); }
done
env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -n -B lib 2>/dev/null | grep -q -- '-DXA_CONFIGURE_PROBE=1' ||
    { echo "FAIL: CPPFLAGS given to configure do not reach the compiler"; fails=$((fails + 1)); }
[ $fails -eq $f0 ] && echo "ok:   configure: --libdir, --includedir, --bindir, --mandir and CPPFLAGS are honoured"

# --prefix=/usr alone puts the library in the multiarch directory.
ma=$(${CC:-cc} -print-multiarch 2>/dev/null)
if [ -n "$ma" ]; then
    ./configure --prefix=/usr >"$W/configure3.log" 2>&1 ||
        { echo "FAIL: configure --prefix=/usr: $(tail -3 "$W/configure3.log")"; fails=$((fails + 1)); }
    if env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -n install DESTDIR=/nowhere 2>/dev/null |
        grep -qF "/nowhere/usr/lib/$ma/libxalloc.so.0"; then
        echo "ok:   configure --prefix=/usr: library into /usr/lib/$ma"
    else
        echo "FAIL: configure --prefix=/usr does not install into /usr/lib/$ma"; fails=$((fails + 1))
    fi
else
    echo "skip: the compiler names no multiarch directory"
fi
exit $fails
