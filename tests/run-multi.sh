#!/bin/sh
# run-multi.sh -- the multi-device suite on PoCL: two devices of one kind, then two of different
# speed ("basic" runs a work-group on one thread, "pthread" on all cores), then one device alone
# (a placed tensor on one device is a plain one: the GPU machines have one GPU). Skips (77) when
# PoCL cannot give two devices. test_buffer runs beside it: buffers and views on the second device.
builddir=${KQCL_BUILDDIR:-.}
prog="$builddir/tests/test_multi"
KQCL_DEVICES=all
export KQCL_DEVICES
status=0
for devices in "pthread pthread" "basic pthread" "pthread"; do
    echo "== POCL_DEVICES=\"$devices\""
    POCL_DEVICES="$devices" "$prog"
    rc=$?
    [ $rc -eq 0 ] || status=$rc
    POCL_DEVICES="$devices" "$builddir/tests/test_buffer"
    rc=$?
    [ $rc -eq 0 ] || status=$rc
done
exit $status
