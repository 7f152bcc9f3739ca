#!/bin/bash
# gpu-check.sh BUILD OUT -- every test suite on the GPU, once on the default kernels
# (KQCL_KERNELS=auto: inline PTX and tensor cores on NVIDIA) and once on the portable GPU kernels
# (KQCL_PORTABLE=1: what AMD and Intel GPUs run). The first thing each GPU lease runs; its table
# goes into doc/reliability.md with the date.
# PATHS="auto" or "portable" runs one path only (two instances with their own OUT run side by side).
# Needs the OpenCL environment (shared/device/opencl-env.sh) sourced first. BUILD is an
# out-of-tree static build (../configure --disable-shared); the Check binaries need
# libsubunit.so.0 on LD_LIBRARY_PATH (copy it into BUILD/lib-extra).
# test_faults preloads an OpenCL shim built as a shared module, which a static build lacks: it
# runs on PoCL in CI, not here.
set -u
build=${1:-build-gpu}
out=${2:-/tmp/kqcl-gpu-check}
mkdir -p "$out"
[ -d "$build/lib-extra" ] && export LD_LIBRARY_PATH="$PWD/$build/lib-extra${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export KQCL_TEST_DATA=$PWD/tests/data KQCL_CACHE_DIR=/tmp/kqcl-check-cache KQCL_DEVICES=${KQCL_DEVICES:-gpu}
export KQCL_BUILDDIR=$PWD/$build # test_cli runs BUILD/tools/kqcl
export CK_DEFAULT_TIMEOUT=${CK_DEFAULT_TIMEOUT:-120} KQCL_SOAK_SECONDS=${KQCL_SOAK_SECONDS:-10}
suites=${SUITES:-test_codec test_device test_precision test_buffer test_layer test_numbers test_gguf test_multi test_bigtensor test_threads test_hostile test_cli test_soak}
"$build/tools/kqcl" devices > "$out/devices.txt" 2>&1
printf '| path | suite | result | seconds |\n| --- | --- | --- | --- |\n' > "$out/summary.md"
failed=0
for path in ${PATHS:-auto portable}; do
  for s in $suites; do
    log="$out/$path-$s.txt"
    t0=$(date +%s.%N)
    if [ "$path" = portable ]; then
      KQCL_PORTABLE=1 timeout 900 "$build/tests/$s" > "$log" 2>&1
    else
      timeout 900 "$build/tests/$s" > "$log" 2>&1
    fi
    rc=$?
    t1=$(date +%s.%N)
    line=$(grep -E '^[0-9]+%: Checks' "$log" | tail -1)
    [ -n "$line" ] || line="exit $rc"
    [ $rc -eq 0 ] || failed=1
    printf '| %s | %s | %s | %.1f |\n' "$path" "$s" "$line" "$(awk "BEGIN{print $t1 - $t0}")" >> "$out/summary.md"
    [ $rc -eq 0 ] || grep -E ':[EF]:' "$log" | head -20 | sed "s/^/    $path $s: /"
  done
done
cat "$out/summary.md"
exit $failed
