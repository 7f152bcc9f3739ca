#!/bin/bash
# gpu-bench.sh BUILD OUT -- what one lease of a GPU machine runs: device list, the test suite
# on the GPU, the default bench, and sweeps of the kernels' tunables. Full logs go to OUT;
# a short table is printed last. Needs the OpenCL environment (shared/device/opencl-env.sh).
set -u
build=${1:-build-gpu}
out=${2:-/tmp/kqcl-gpu}
mkdir -p "$out"
export KQCL_TEST_DATA=$PWD/tests/data KQCL_CACHE_DIR=/tmp/kqcl-cache
clinfo -l > "$out/clinfo.txt" 2>&1
"$build/tools/kqcl" devices > "$out/devices.txt" 2>&1
echo "== tests on the GPU"
KQCL_DEVICES=gpu timeout 300 "$build/tests/test_device" > "$out/test_device.txt" 2>&1; tail -3 "$out/test_device.txt"
echo "== default bench"
KQCL_DEVICES=gpu "$build/tools/kqcl" bench --n 1,8,512 > "$out/bench.md" 2> "$out/bench.err"; cat "$out/bench.md"
echo "== matvec sweep (threads_per_row,row_groups,rows_per_thread)"
for v in ${MATVEC_SWEEP:-32,4,1 32,4,2 32,4,4 64,2,2 64,2,4 128,2,1 128,2,2 128,2,4 256,1,2 256,1,4}; do
  KQCL_MATVEC=$v KQCL_DEVICES=gpu "$build/tools/kqcl" bench --type ${SWEEP_TYPES:-q4_K,q6_K} --n 1,8 --no-unfused \
    2>/dev/null | grep '^| q' | sed "s/^/$v /"
done | tee "$out/matvec-sweep.md"
echo "== tiled sweep (tile_m,tile_n,wpt_m,wpt_n,kunits)"
for v in ${MATMUL_SWEEP:-64,64,4,4,2 128,128,8,8,1 128,128,8,8,2 128,64,8,4,2 64,128,4,8,2 128,128,8,8,4}; do
  KQCL_MATMUL=$v KQCL_DEVICES=gpu "$build/tools/kqcl" bench --type q4_K --n 512 --no-unfused --rotate 0 \
    2>/dev/null | grep '^| q' | sed "s/^/$v /"
done | tee "$out/matmul-sweep.md"
