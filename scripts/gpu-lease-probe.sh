#!/bin/bash
# gpu-lease-probe.sh -- first call of a two-call GPU lease (issue 22's decode probe, issue 20's
# speed), run from the repository root with build-gpu/, build-peers/ and build-model/part00
# carried: llama.cpp (CUDA) built in the background for the second call
# (gpu-lease-speed.sh), and meanwhile the suites named in SUITES (default test_precision and
# test_layer) on both kernel paths, host-cost-probe when built, and scripts/gpu-decode-probe.sh
# on the static kqcl (PROBE_S=0: not); with OPS, ggml's test-backend-ops of those ops on both
# kernel paths once llama.cpp is built.
set -u
T0=$(date +%s)
. build-peers/device/opencl-env.sh
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1 | tee $OUT/gpu.txt
. scripts/gpu-lease-lib.sh
lease_start_llama_build
# the suites that hold this session's new code, both paths
export KQCL_TEST_DATA=$PWD/tests/data LD_LIBRARY_PATH=$PWD/build-gpu/lib-extra${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
for p in auto portable; do
  ( [ $p = portable ] && export KQCL_PORTABLE=1
    for t in ${SUITES:-test_precision test_layer}; do
      KQCL_DEVICES=gpu KQCL_CACHE_DIR=/tmp/kc-$p timeout 150 build-gpu/tests/$t > $OUT/$t-$p.txt 2>&1
      echo "$t $p rc=$? $(tail -1 $OUT/$t-$p.txt)"
    done ) &
done
wait
grep -h ":[EF]:" $OUT/test_*-*.txt | head -10
echo "suites done in $(( $(date +%s) - T0 )) s"
[ -x build-gpu/host-cost-probe ] && build-gpu/host-cost-probe 2>&1 | tee $OUT/host-cost.txt
[ "${PROBE_S:-400}" != 0 ] && timeout ${PROBE_S:-400} bash scripts/gpu-decode-probe.sh build-gpu $OUT/probe 2>&1 | cut -c1-240
for i in $(seq 1 100); do [ -e /tmp/lbuild.done ] && break; [ $(( $(date +%s) - T0 )) -gt 560 ] && break; sleep 3; done
cat /tmp/lbuild.done 2>/dev/null; tail -2 /tmp/lbuild.log
# OPS (a test-backend-ops -o list): ggml's own judge of the module on the GPU, both kernel
# paths side by side, each within OPS_S seconds (default 120)
if [ -n "${OPS:-}" ] && [ -e /tmp/lbuild.done ]; then
  for p in auto portable; do
    ( [ $p = portable ] && export KQCL_PORTABLE=1
      KQCL_DEVICES=gpu KQCL_CACHE_DIR=/tmp/kc-ops-$p GGML_TEST_LOG=$OUT/ops-$p.log timeout ${OPS_S:-120} \
        bash scripts/ggml-test-ops.sh /tmp/llama-build/bin/test-backend-ops $PWD/build-gpu/ggml/libggml-kqcl.so "$OPS" \
        > $OUT/ops-$p.txt 2>&1; echo "ops $p rc=$? $(grep -E '^  all' $OUT/ops-$p.txt)" ) &
  done
  wait
fi
echo "call 1 done in $(( $(date +%s) - T0 )) s"
