#!/bin/sh
# run-build-race.sh -- builds beside running kernels, two processes at once (issue 23): the api
# case of test_device (a failed build, a build with the binary cache, contexts destroyed with
# work still queued) in one process without Check's forks, twice side by side, each with a
# fresh PoCL kernel cache so every program is compiled while the other process loads the CPU.
# Before kqcl drained a PoCL queue before a build and before a context's teardown, 2 of 12
# such processes aborted inside PoCL 3.1 ("pocl_release_dlhandle_cache: Assertion
# `found->ref_count > 0' failed"; in make check's forked runs also "Failed to create kernel
# compiler pass inline-kernels"). ROUNDS (default 3) pairs; a process that fails fails the run.
builddir=${KQCL_BUILDDIR:-.}
prog="$builddir/tests/test_device"
rounds=${KQCL_RACE_ROUNDS:-3}
work=$(mktemp -d "${TMPDIR:-/tmp}/kqcl-race.XXXXXX") || exit 99
trap 'rm -rf "$work"' EXIT
status=0
r=1
while [ "$r" -le "$rounds" ]; do
    for p in a b; do
        ( POCL_CACHE_DIR="$work/pocl-$r-$p" KQCL_CACHE_DIR="$work/kqcl-$r-$p" CK_FORK=no CK_RUN_CASE=api \
          "$prog" > "$work/$r-$p.log" 2>&1; echo $? > "$work/$r-$p.rc" ) &
    done
    wait
    for p in a b; do
        rc=$(cat "$work/$r-$p.rc")
        if [ "$rc" != 0 ]; then
            echo "round $r, process $p: exit $rc"
            grep -v 'error generated' "$work/$r-$p.log" | tail -5
            status=1
        fi
    done
    r=$((r + 1))
done
[ $status -eq 0 ] && echo "run-build-race: $rounds rounds of two processes, none failed"
exit $status
