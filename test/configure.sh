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
for want in 'PREFIX  := /opt/xa-test' 'DEBUG   := 1' 'STATS   := 0'; do
    grep -qF "$want" config.mk || { echo "FAIL: config.mk lacks '$want'"; fails=$((fails + 1)); }
done
flags=$(env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -n -B lib 2>/dev/null | grep -c -- '-DXA_DEBUG=1 -DXA_STATS=0')
[ "$flags" -gt 0 ] || { echo "FAIL: the build does not use the configured DEBUG/STATS"; fails=$((fails + 1)); }
env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s lib >"$W/make.log" 2>&1 || { echo "FAIL: make lib: $(tail -3 "$W/make.log")"; fails=$((fails + 1)); }
[ -f lib/libxalloc.so ] || { echo "FAIL: no lib/libxalloc.so"; fails=$((fails + 1)); }
ip=$(env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -n install DESTDIR=/tmp/nowhere 2>/dev/null | grep -c /opt/xa-test)
[ "$ip" -gt 0 ] || { echo "FAIL: make install ignores the configured prefix"; fails=$((fails + 1)); }
[ $fails -eq 0 ] && echo "ok:   configure: prefix, --enable-debug, --disable-stats reach the build"
exit $fails
