#!/bin/sh
# check-layers.sh SRCDIR BUILDDIR -- `make check-layers`: lib/'s files form one-way floors, as
# lib/FLOORS orders them (lowest first): no include or call arrow from a lower floor to a higher
# one, no cycle among modules (foo.c + foo.h). Run it after the library is built: the call arrows
# come from the objects under BUILDDIR/lib (nm). Exit 0: clean; 1: an upward arrow, a cycle or a
# file on no floor; 2: cannot check (no FLOORS, no objects, bad arguments).
# The work is in check-layers.py beside this file (python3's standard library and binutils' nm;
# PYTHON and NM in the environment name others; CHECK_LAYERS_VERBOSE=1 prints every arrow).
exec "${PYTHON:-python3}" "$(dirname "$0")/check-layers.py" "$@"
