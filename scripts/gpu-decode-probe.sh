#!/bin/bash
# gpu-decode-probe.sh BUILD OUT -- one GPU call (about 5 minutes) that looks for the cause of
# the decode's distance from the streaming read (issue 22): the matvec launch shapes side by
# side (KQCL_MATVEC and KQCL_MATVEC_Q8 = threads a row, row groups, rows a thread), m swept at
# one k to split the fixed cost of a launch from the streaming slope, the Llama-3-8B layer with
# the host clock, and NVIDIA's PTX of the default decode kernels. Run from the repository root
# with the OpenCL environment sourced (shared/device/opencl-env.sh).
# SHAPES: the shapes to try; TYPES: the weight types (default q4_K,q6_K,q8_0).
set -u
build=${1:-build-gpu}
out=${2:-/tmp/kqcl-probe}
mkdir -p "$out"
kqcl=$build/tools/kqcl
export KQCL_DEVICES=${KQCL_DEVICES:-gpu} KQCL_CACHE_DIR=${KQCL_CACHE_DIR:-/tmp/kqcl-probe-cache}
types=${TYPES:-q4_K,q6_K,q8_0}
T0=$(date +%s)
el() { echo "$(($(date +%s) - T0)) s"; }

echo "== shapes (n = 1, m 4096, k 14336; f32 and q8)"
"$kqcl" bench --type "$types" --n 1 --precision f32,q8 --no-unfused > "$out/shape-default.md" 2>&1
grep -E '^\| q|streaming' "$out/shape-default.md" | sed 's/^/default /'
for s in ${SHAPES:-32,4,1 32,2,1 64,2,1 64,1,1 128,1,1 32,8,1 64,1,2 128,1,2 16,8,1}; do
    KQCL_MATVEC=$s KQCL_MATVEC_Q8=$s timeout 60 "$kqcl" bench --type "$types" --n 1 --precision f32,q8 --no-unfused \
        > "$out/shape-$s.md" 2>&1
    grep -E '^\| q' "$out/shape-$s.md" | sed "s/^/$s /"
    grep -E 'error|INVALID' "$out/shape-$s.md" | head -2 | sed "s/^/$s /"
done
echo "($(el))"

echo "== m sweep (k 14336, n 1, default shapes): the slope is the streaming rate, the intercept the fixed cost"
for m in 1024 2048 4096 8192 16384; do
    timeout 60 "$kqcl" bench --type q4_K,q8_0 --m $m --n 1 --precision f32,q8 --no-unfused > "$out/m-$m.md" 2>&1
    grep -E '^\| q' "$out/m-$m.md"
done
echo "($(el))"

echo "== Llama-3-8B layer, host clock (launches counted)"
timeout 120 "$kqcl" bench --model llama3-8b --precision f32,q8,auto --host-clock > "$out/llama3-host.md" 2>&1
grep -vE '^  ' "$out/llama3-host.md" | head -40
echo "($(el))"

echo "== PTX of the default decode kernels"
mkdir -p "$out/ptx"
KQCL_CACHE=off KQCL_DUMP_BINARIES="$out/ptx" timeout 60 "$kqcl" bench --type q4_K,q8_0 --n 1 --precision f32,q8 \
    --no-unfused --rotate 0 --reps 3 > /dev/null 2>&1
ls -la "$out/ptx" | head
echo "done ($(el))"
