#!/bin/bash
# gpu-lease-check.sh -- one short GPU call, run from the repository root with build-gpu/ (the
# static build, and host-cost-probe built from scripts/host-cost-probe.c) and build-peers/
# carried: the host's cost of each OpenCL call a kqcl op makes, the decode bench in F32 and Q8
# with the Llama-3-8B layer on the host clock, then the device suites (default path; the
# precision suite on the portable path too) side by side once the timing is done.
set -u
. build-peers/device/opencl-env.sh
export KQCL_TEST_DATA=$PWD/tests/data LD_LIBRARY_PATH=$PWD/build-gpu/lib-extra${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} KQCL_DEVICES=gpu
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
build-gpu/host-cost-probe 2>&1 | tee $OUT/host-cost.txt
KQCL_CACHE_DIR=/tmp/kc-b build-gpu/tools/kqcl bench --type q4_K,q6_K,q8_0,q4_0 --n 1,8 --precision f32,q8 --no-unfused > $OUT/bench.md 2>&1
grep -E "^\| q|streaming" $OUT/bench.md
KQCL_CACHE_DIR=/tmp/kc-b build-gpu/tools/kqcl bench --model llama3-8b --precision f32,q8,auto --host-clock > $OUT/llama3-host.md 2>&1
grep -E "^llama3|^\| ffn|^\| attn" $OUT/llama3-host.md
for t in test_device test_precision test_layer test_numbers; do
  ( KQCL_CACHE_DIR=/tmp/kc-a timeout 240 build-gpu/tests/$t > $OUT/$t-auto.txt 2>&1; echo "$t auto rc=$? $(tail -1 $OUT/$t-auto.txt)" ) &
done
( KQCL_PORTABLE=1 KQCL_CACHE_DIR=/tmp/kc-p timeout 240 build-gpu/tests/test_precision > $OUT/test_precision-portable.txt 2>&1
  echo "test_precision portable rc=$? $(tail -1 $OUT/test_precision-portable.txt)" ) &
wait
grep -h ":[EF]:" $OUT/test_*.txt | head
