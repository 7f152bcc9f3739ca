#!/bin/sh
# run-layers.sh -- make check's run of scripts/check-layers.sh on this build: lib/'s floors
# (lib/FLOORS) hold, no include or call arrow runs from a lower floor to a higher one and none
# closes a cycle (doc/design.md). `make check-layers` runs the same.
top=${srcdir:-$(dirname "$0")/..}
exec sh "$top/scripts/check-layers.sh" "$top" .
