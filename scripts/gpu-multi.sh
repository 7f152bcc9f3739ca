#!/bin/bash
# gpu-multi.sh BUILD OUT -- one lease of a two-GPU machine: the suites on the GPUs, q4_K on one
# and two GPUs (rows and columns split), the collectives, and the Llama-3-8B decode sweep on one
# GPU. Needs the OpenCL environment (shared/device/opencl-env.sh) sourced first.
# Variants, each a space-separated list of environment settings "VAR=value[;VAR=value]":
# ONE_VARIANTS (one GPU, --n 64,512), SPLIT_VARIANTS (rows split, n = 512), COLL_VARIANTS
# (--collectives). SKIP_TESTS=1 and SKIP_LLAMA=1 leave those parts out.
set -u
build=${1:-build-gpu}
out=${2:-/tmp/kqcl-gpu}
mkdir -p "$out"
export KQCL_TEST_DATA=$PWD/tests/data KQCL_CACHE_DIR=/tmp/kqcl-cache
kqcl=$build/tools/kqcl
{ clinfo -l; "$kqcl" devices; } > "$out/devices.txt" 2>&1; grep -E '^\*?[ 0-9]+:' "$out/devices.txt"
if [ -z "${SKIP_TESTS:-}" ]; then
  echo "== suites on the GPUs"
  KQCL_DEVICES=gpu timeout 300 "$build/tests/test_multi" > "$out/test_multi.txt" 2>&1; tail -1 "$out/test_multi.txt"
  KQCL_DEVICES=0 timeout 300 "$build/tests/test_device" > "$out/test_device.txt" 2>&1; tail -1 "$out/test_device.txt"
fi
echo "== q4_K on one GPU (device events, then host clock), then split over both"
{ KQCL_DEVICES=0 "$kqcl" bench --type q4_K --n 1,8,512 --rotate 0 --no-unfused
  KQCL_DEVICES=0 "$kqcl" bench --type q4_K --n 1,8,512 --rotate 0 --no-unfused --host-clock
  KQCL_DEVICES=gpu "$kqcl" bench --type q4_K --n 1,8,512 --split rows --no-unfused
  KQCL_DEVICES=gpu "$kqcl" bench --type q4_K --n 1,8,512 --split cols --no-unfused; } 2>&1 | grep -v '^  ' | tee "$out/split.md"
echo "== one GPU, prefill variants"
for v in ${ONE_VARIANTS:-}; do
  env ${v//;/ } KQCL_DEVICES=0 "$kqcl" bench --type ${ONE_TYPES:-q4_K} --n ${ONE_NS:-64,512} --rotate 0 --no-unfused \
    2>/dev/null | grep '^| q' | sed "s/^/$v /"
done | tee "$out/one-variants.md"
echo "== row split, prefill tile variants"
for v in ${SPLIT_VARIANTS:-}; do
  env ${v//;/ } KQCL_DEVICES=gpu "$kqcl" bench --type q4_K --n 512 --split rows --no-unfused 2>/dev/null | grep '^| q' | sed "s/^/$v /"
done | tee "$out/split-variants.md"
echo "== collectives over both GPUs"
KQCL_DEVICES=gpu "$kqcl" bench --collectives 2>&1 | tee "$out/collectives.txt"
for v in ${COLL_VARIANTS:-}; do
  echo "$v:"; env ${v//;/ } KQCL_DEVICES=gpu "$kqcl" bench --collectives 2>&1 | grep -E '^ +[0-9]+ |^latency'
done | tee -a "$out/collectives.txt"
if [ -z "${SKIP_LLAMA:-}" ]; then
  echo "== llama3-8b decode on one GPU"
  KQCL_DEVICES=0 "$kqcl" bench --model llama3-8b 2>&1 | grep -v '^  ' | tee "$out/llama3.md"
fi
