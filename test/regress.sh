#!/bin/sh
# regress.sh: deterministic reproducers of bugs found (and fixed) in xalloc,
# one program each in test/regress/, linked with -lxalloc and run under the
# default options and under huge_cache_bytes:0.  Exit 0 = pass, 2 = setup
# not possible on this machine (reported, not failed), else failure.
. "$SRC/test/lib/common.sh"
tu_setup regress
for src in "$SRC"/test/regress/*.c; do
    name=$(basename "$src" .c)
    $CC -O1 -g -o "$W/$name" "$src" -L"$LIBDIR" -Wl,-rpath,"$LIBDIR" -lxalloc -pthread ||
        { fail "$name: build"; continue; }
    for conf in "" huge_cache_bytes:0; do
        XALLOC_CONF=$conf "$W/$name" >"$W/$name.out" 2>&1
        rc=$?
        case $rc in
        0) ok "$name [${conf:-defaults}]" ;;
        2) echo "skip: $name [${conf:-defaults}]: $(tail -1 "$W/$name.out")" ;;
        *) fail "$name [${conf:-defaults}]: exit $rc"; cat "$W/$name.out" ;;
        esac
    done
done
[ $fails -eq 0 ] && echo "regress.sh: all checks passed"
exit $fails
