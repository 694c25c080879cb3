#!/bin/sh
# layering.sh: the modules of src/ form a ladder, each using only modules
# below it.  A module is a .c file with its header (arena.c, arena.h and
# arena_private.h are the module arena; fastpath.h is one of its own).
#  (a) include graph: no circle among the modules, as the #include "x.h"
#      lines of src/ draw it;
#  (b) link graph: no circle among the objects of libxalloc.a, as their
#      symbols draw it (an object that uses a function or variable another
#      defines depends on it).  This catches a call or a shared variable
#      that an include line does not show.  The fast path and its slow path
#      (fastpath.h, malloc.c) are one object: the only circle the design
#      has does not show here;
#  (c) struct xa_arena's layout (arena_private.h) is included by arena.c
#      alone, and <sys/mman.h> by os.c alone.
# On failure it prints the circle, as tsort reports it.  On success it
# prints the ladder, lowest module first.
#
# Env: XALLOC_A, SRC (and what test/lib/common.sh wants).  Needs nm and
# tsort.  Exit 0 = all passed.

set -u
. "${SRC:?SRC must be set}/test/lib/common.sh"
tu_setup layering

# "user used" pairs, one a line; tsort fails on a circle and names it.
check_ladder() {   # name file
    if tsort "$2" >"$W/$1.order" 2>"$W/$1.err"; then
        ok "$1 graph has no circle: $(tr '\n' ' ' <"$W/$1.order" | sed 's/ $//')"
    else
        fail "$1 graph has a circle:"
        grep -v 'input contains a loop' "$W/$1.err" | sed 's/^tsort: /    /'
    fi
}

# (a) src/*.c and src/*.h, module by base name
for f in "$SRC"/src/*.c "$SRC"/src/*.h; do
    m=$(basename "$f"); m=${m%.*}; m=${m%_private}
    sed -n 's/^#include "\([^"]*\)\.h".*/\1/p' "$f" | while read -r h; do
        [ -f "$SRC/src/$h.h" ] || continue   # the public xalloc.h is no module
        h=${h%_private}
        [ "$h" = "$m" ] || echo "$h $m"
    done
done | sort -u >"$W/include.pairs"
check_ladder include "$W/include.pairs"

# (b) members of the archive: who defines what, who uses what
nm -A "$XALLOC_A" 2>/dev/null | awk '
    { n = split($1, p, ":"); o = p[n - 1]; sub(/\.o$/, "", o) }
    $(NF - 1) == "U" { use[o, $NF] = 1; next }
    $(NF - 1) ~ /^[TDBRVWC]$/ { def[$NF] = o }
    END { for (k in use) { split(k, q, SUBSEP); d = def[q[2]];
                          if (d != "" && d != q[1]) print d, q[1] } }' |
    sort -u >"$W/link.pairs"
if [ -s "$W/link.pairs" ]; then
    check_ladder link "$W/link.pairs"
else
    fail "no symbols read from $XALLOC_A (is nm installed?)"
fi

# (c) headers only one file may include
only_in() {   # header file why
    users=$(grep -l "#include $1" "$SRC"/src/*.c "$SRC"/src/*.h | xargs -n1 basename | tr '\n' ' ')
    if [ "$users" = "$2 " ]; then ok "$1: included by $2 only"
    else fail "$1 included by: $users($3)"; fi
}
only_in '"arena_private.h"' arena.c "struct xa_arena is private to arena.c"
only_in '<sys/mman.h>' os.c "os.c is the only file that talks to the kernel about memory"

if [ "$fails" -ne 0 ]; then
    echo "layering.sh: $fails check(s) FAILED"
    exit 1
fi
echo "layering.sh: all checks passed"
exit 0
