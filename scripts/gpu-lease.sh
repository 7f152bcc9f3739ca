#!/bin/bash
# gpu-lease.sh -- one call on a lent GPU machine (under 10 minutes), run from the repository root
# with build-gpu/ (a static build: tools/kqcl, tools/kqcl-679c504 for the comparison, tests/test_*,
# lib-extra/libsubunit.so.0, ggml/libggml-kqcl.so), build-peers/ (shared/device and the pinned
# llama.cpp tarball with llama-build.sh) and build-model/part00 carried. See doc/perf.md.
# One GPU call of at most ~580 s: llama.cpp (CUDA) built in the background; kqcl bench of 679c504
# and of this tree alternately; every suite on both kernel paths side by side (about 330 s a path
# on an H100, 2026-12-07: test_device alone 140 s); then, if time is left, ggml's test-backend-ops
# through the module (gpu-lease-model.sh runs all of them with room: 101 s a path).
set -u
T0=$(date +%s)
el() { echo "$(( $(date +%s) - T0 )) s"; }
. build-peers/device/opencl-env.sh
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1 | tee $OUT/gpu.txt
. scripts/gpu-lease-lib.sh
lease_start_llama_build
export KQCL_DEVICES=gpu KQCL_TEST_DATA=$PWD/tests/data
for round in 1 2; do
  for t in kqcl-679c504 kqcl; do
    KQCL_CACHE_DIR=/tmp/kc-$t timeout 60 build-gpu/tools/$t bench --type q4_K,q6_K,q8_0,q4_0 --n 1,8,512 --no-unfused \
      > $OUT/bench-$t-$round.md 2>&1; echo "bench $t round $round rc=$? ($(el))"
  done
done
PATHS=auto KQCL_CACHE_DIR=/tmp/kc-auto timeout 380 bash scripts/gpu-check.sh build-gpu $OUT/check-auto > $OUT/check-auto.log 2>&1 &
pa=$!
PATHS=portable KQCL_CACHE_DIR=/tmp/kc-port timeout 380 bash scripts/gpu-check.sh build-gpu $OUT/check-portable > $OUT/check-portable.log 2>&1 &
pp=$!
wait $pa; echo "auto rc=$? ($(el))"; wait $pp; echo "portable rc=$? ($(el))"
cat $OUT/check-auto/summary.md $OUT/check-portable/summary.md
grep -h ":[EF]:" $OUT/check-*/*.txt | head -20
for i in $(seq 1 30); do [ -e /tmp/lbuild.done ] && break; sleep 3; done
cat /tmp/lbuild.done 2>/dev/null; tail -2 /tmp/lbuild.log; cp /tmp/lbuild.log $OUT/
B=/tmp/llama-build/bin; MOD=$PWD/build-gpu/ggml/libggml-kqcl.so
for p in auto portable; do
  [ $(( $(date +%s) - T0 )) -gt 480 ] && break
  [ $p = portable ] && export KQCL_PORTABLE=1
  KQCL_CACHE_DIR=/tmp/kc-ggml GGML_TEST_LOG=$OUT/ops-$p.log timeout 45 bash scripts/ggml-test-ops.sh $B/test-backend-ops $MOD MUL_MAT,GET_ROWS,SET_ROWS,ADD,SUB,MUL,DIV,SCALE,SILU,GELU,RELU,SWIGLU,GEGLU,RMS_NORM,RMS_NORM_MUL_ADD,ADD_RMS_NORM,SOFT_MAX,ROPE,ROPE_SET_ROWS,CPY,DUP,CONT > $OUT/ops-$p.txt 2>&1
  echo "ops $p rc=$? ($(el))"; grep -E "^  all" $OUT/ops-$p.txt
  GGML_TEST_PARAMS='kv=(113|256|512),' KQCL_CACHE_DIR=/tmp/kc-ggml GGML_TEST_LOG=$OUT/fa-$p.log timeout 30 bash scripts/ggml-test-ops.sh $B/test-backend-ops $MOD FLASH_ATTN_EXT > $OUT/fa-$p.txt 2>&1
  echo "fa $p rc=$? ($(el))"; grep -E "^  all" $OUT/fa-$p.txt
  unset KQCL_PORTABLE
done
echo "done ($(el))"
