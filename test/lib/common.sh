# common.sh: the preamble the test/*.sh scripts share (sourced, not run).
# tu_setup NAME: check the environment the Makefile passes (XALLOC_SO,
# XALLOC_A, BUILD, SRC), make a fresh work directory $W = $BUILD/NAME.d,
# set LIBDIR, and define the ok/fail reporters (fail counts into $fails).
tu_setup() {
    : "${XALLOC_SO:?XALLOC_SO must be set}"
    : "${XALLOC_A:?XALLOC_A must be set}"
    : "${BUILD:?BUILD must be set}"
    : "${SRC:?SRC must be set}"
    CC=${CC:-cc}
    CXX=${CXX:-c++}
    W=$BUILD/$1.d
    rm -rf "$W"
    mkdir -p "$W" || exit 1
    W=$(cd "$W" && pwd -P)
    LIBDIR=$(dirname "$XALLOC_SO")
    fails=0
    for f in "$XALLOC_SO" "$XALLOC_A"; do
        [ -f "$f" ] || { echo "FAIL: $f does not exist"; exit 1; }
    done
}
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok() { echo "ok:   $*"; }
