#!/bin/sh
# run-check-layers.sh -- tests scripts/check-layers.sh on small trees built here with cc: a clean
# two-floor tree (built in tree and out of tree, with libtool's .libs/ copies) passes; an upward
# call, an upward include, a cycle of calls, a cycle through a module's header, a folder missing
# from FLOORS and a file on no floor each fail (exit 1) and are named; no FLOORS and no objects
# cannot be checked (exit 2). Exit 0 when every case comes out as expected, 1 otherwise.
top=${srcdir:-$(dirname "$0")/..}
checker="$top/scripts/check-layers.sh"
cc=${CC:-cc}
work=$(mktemp -d "${TMPDIR:-/tmp}/kqcl-layers.XXXXXX") || exit 99
trap 'rm -rf "$work"' EXIT
failures=0

# put FILE TEXT: writes TEXT (with \n for a new line) to FILE, making its folder.
put() {
    mkdir -p "$(dirname "$1")" && printf '%b' "$2" > "$1"
}

# clean_tree DIR: floor a (x.c, x.h) below floor b (y.c, y.h, z.c); b's files use a's and z.c
# uses y.c (an arrow within a floor); x.h includes a header outside lib/, which draws no arrow.
clean_tree() {
    put "$1/lib/FLOORS" '# lowest first\na\nb\n'
    put "$1/include/kqcl.h" 'typedef int kq_int;\n'
    put "$1/lib/a/x.h" '#include "kqcl.h"\nkq_int a_x(void);\n'
    put "$1/lib/a/x.c" '#include "x.h"\nkq_int a_x(void) { return 1; }\n'
    put "$1/lib/b/y.h" 'int b_y(void);\n'
    put "$1/lib/b/y.c" '#include "y.h"\n#include "../a/x.h"\nint b_y(void) { return a_x() + 1; }\n'
    put "$1/lib/b/z.c" '#include "y.h"\nint b_z(void) { return b_y(); }\n'
}

# build SRC BUILD: compiles every lib/ .c as libtool would name it, plus a .libs/ copy of each.
build() {
    for c in $(cd "$1" && find lib -name '*.c'); do
        d="$2/$(dirname "$c")"
        o="libkqcl_core_la-$(basename "$c" .c).o"
        if ! { mkdir -p "$d/.libs" && $cc -c -I"$1/include" -I"$1/lib" "$1/$c" -o "$d/$o" &&
               cp "$d/$o" "$d/.libs/$o"; }; then
            echo "run-check-layers: cannot compile $c"
            exit 99
        fi
    done
}

# expect NAME SRC BUILD RC PATTERN...: the checker on SRC BUILD exits RC and prints every PATTERN.
expect() {
    name=$1 src=$2 build=$3 want=$4
    shift 4
    "$checker" "$src" "$build" > "$work/$name.out" 2>&1
    rc=$?
    missing=""
    for pattern in "$@"; do
        grep -q -F -e "$pattern" "$work/$name.out" || missing="$missing [$pattern]"
    done
    if [ "$rc" -eq "$want" ] && [ -z "$missing" ]; then
        echo "ok   $name (exit $rc)"
    else
        echo "FAIL $name: exit $rc (wanted $want), missing from the output:${missing:- nothing}"
        sed 's/^/     | /' "$work/$name.out"
        failures=$((failures + 1))
    fi
}

# case_of NAME RC PATTERN...: builds $work/NAME out of tree and expects RC and the PATTERNs.
case_of() {
    name=$1
    shift
    build "$work/$name" "$work/$name-build"
    expect "$name" "$work/$name" "$work/$name-build" "$@"
}

clean_tree "$work/clean"
case_of clean 0 'no cycle, no upward arrow'
clean_tree "$work/intree"
build "$work/intree" "$work/intree"
expect intree "$work/intree" "$work/intree" 0 '2 floors, 5 files, 4 include arrows, 2 call arrows'

clean_tree "$work/upcall"
# w.c uses nothing of floor a, so the upward arrow makes no cycle: it is caught on its own.
put "$work/upcall/lib/b/w.c" 'int b_w(void) { return 5; }\n'
put "$work/upcall/lib/a/x.c" '#include "x.h"\nint b_w(void);\nkq_int a_x(void) { return b_w(); }\n'
case_of upcall 1 'upward arrow: lib/a/x.c -> lib/b/w.c (call b_w)' '1 upward arrow, 0 cycles'

clean_tree "$work/upinclude"
put "$work/upinclude/lib/a/x.c" '#include "x.h"\n#include "../b/y.h"\nint a_x(void) { return 1; }\n'
case_of upinclude 1 'upward arrow: lib/a/x.c -> lib/b/y.h (include "../b/y.h" line 2)' '1 upward arrow,'

clean_tree "$work/callcycle"
put "$work/callcycle/lib/b/y.c" '#include "../a/x.h"\nint b_z(void);\nint b_y(void) { return a_x() + b_z(); }\n'
case_of callcycle 1 'cycle among 2 modules: b/y b/z' 'path: b/y -> b/z -> b/y' \
    'lib/b/y.c -> lib/b/z.c (call b_z)' '0 upward arrows, 1 cycle,'

# z.c includes y.h, y.c calls z.c: y.c and y.h are one module, so the two files make a cycle.
clean_tree "$work/headercycle"
put "$work/headercycle/lib/b/y.c" '#include "y.h"\nint b_z(void);\nint b_y(void) { return 0; }\nint b_w(void) { return b_z(); }\n'
put "$work/headercycle/lib/b/z.c" '#include "y.h"\nint b_z(void) { return 2; }\n'
case_of headercycle 1 'cycle among 2 modules: b/y b/z' 'lib/b/z.c -> lib/b/y.h (include "y.h" line 1)'

clean_tree "$work/unlisted"
put "$work/unlisted/lib/c/w.c" 'int c_w(void) { return 3; }\n'
case_of unlisted 1 'folder lib/c is not listed in lib/FLOORS'

clean_tree "$work/nofloor"
put "$work/nofloor/lib/v.c" 'int v(void) { return 4; }\n'
case_of nofloor 1 'file lib/v.c is on no floor'

# The same file on the pseudo-floor `.`, lowest: x.c's call down to it is allowed.
clean_tree "$work/topfloor"
put "$work/topfloor/lib/FLOORS" '.\na\nb\n'
put "$work/topfloor/lib/v.c" 'int v(void) { return 4; }\n'
put "$work/topfloor/lib/a/x.c" '#include "x.h"\nint v(void);\nkq_int a_x(void) { return v(); }\n'
case_of topfloor 0 '3 floors, 6 files, 4 include arrows, 3 call arrows: no cycle, no upward arrow'

clean_tree "$work/nofloors"
rm "$work/nofloors/lib/FLOORS"
case_of nofloors 2 'lib/FLOORS is missing'

clean_tree "$work/unbuilt"
mkdir -p "$work/unbuilt-build/lib"
expect unbuilt "$work/unbuilt" "$work/unbuilt-build" 2 'no objects under'

if [ "$failures" -ne 0 ]; then
    echo "run-check-layers: $failures case(s) came out wrong"
    exit 1
fi
echo "run-check-layers: every case came out as expected"
