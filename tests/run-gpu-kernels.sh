#!/bin/sh
# run-gpu-kernels.sh -- the device suites again with the GPU kernel family forced
# (KQCL_KERNELS=gpu), so that the portable work-group kernels -- what an AMD or Intel GPU runs --
# are tested on PoCL's CPU devices in CI, not only the KQ_CPU kernels a CPU gets by default.
# test_multi runs on two PoCL devices, as in run-multi.sh.
builddir=${KQCL_BUILDDIR:-.}
KQCL_KERNELS=gpu
export KQCL_KERNELS
status=0
for suite in test_device test_precision test_numbers test_buffer test_layer; do
    echo "== KQCL_KERNELS=gpu $suite"
    "$builddir/tests/$suite" || status=1
done
echo "== KQCL_KERNELS=gpu POCL_DEVICES=\"pthread pthread\" test_multi"
KQCL_DEVICES=all POCL_DEVICES="pthread pthread" "$builddir/tests/test_multi" || status=1
exit $status
