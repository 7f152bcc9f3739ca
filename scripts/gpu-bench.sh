#!/bin/bash
# gpu-bench.sh BUILD OUT -- what one lease of a GPU machine runs: device list, the test suite
# on the GPU, the default bench, decode variants side by side, a tiled-kernel sweep, and the
# compiled kernels (PTX on NVIDIA) of one bench run. Logs go to OUT.
# Needs the OpenCL environment (shared/device/opencl-env.sh) sourced first.
# DECODE_VARIANTS: space-separated environment settings, each "VAR=value[;VAR=value]".
set -u
build=${1:-build-gpu}
out=${2:-/tmp/kqcl-gpu}
mkdir -p "$out"
export KQCL_TEST_DATA=$PWD/tests/data KQCL_CACHE_DIR=/tmp/kqcl-cache KQCL_DEVICES=${KQCL_DEVICES:-gpu}
kqcl=$build/tools/kqcl
{ clinfo -l; "$kqcl" devices; } > "$out/devices.txt" 2>&1
echo "== tests on the GPU"
timeout 300 "$build/tests/test_device" > "$out/test_device.txt" 2>&1; tail -3 "$out/test_device.txt"
echo "== default bench"
"$kqcl" bench --n 1,8,512 > "$out/bench.md" 2>&1; grep -v '^  ' "$out/bench.md"
echo "== decode variants"
for v in ${DECODE_VARIANTS:-KQCL_PORTABLE=1 KQCL_MMA=0 KQCL_MMA_TUNE=8,1 KQCL_MMA_TUNE=4,1 KQCL_MMA_TUNE=16,1 KQCL_MMA_TUNE=8,2}; do
  env ${v//;/ } "$kqcl" bench --type ${DECODE_TYPES:-q4_K,q5_K,q6_K,q8_K} --n ${DECODE_NS:-1,8} --no-unfused \
    2>/dev/null | grep '^| q' | sed "s/^/$v /"
done | tee "$out/decode-variants.md"
echo "== prefill variants"
for v in ${PREFILL_VARIANTS:-KQCL_MMA=0}; do
  env ${v//;/ } "$kqcl" bench --type ${PREFILL_TYPES:-q4_K} --n 512 --no-unfused --rotate 0 \
    2>/dev/null | grep '^| q' | sed "s/^/$v /"
done | tee "$out/prefill-variants.md"
echo "== compiled kernels"
mkdir -p /tmp/kqcl-ptx
KQCL_CACHE=off KQCL_DUMP_BINARIES=/tmp/kqcl-ptx "$kqcl" bench --type q4_K --n 1,512 --no-unfused --rotate 0 --reps 3 \
  > /dev/null 2>&1
tar -C /tmp -czf "$out/ptx.tgz" kqcl-ptx && ls /tmp/kqcl-ptx
