#!/bin/bash
# gpu-lease-q8kv.sh -- a call after gpu-lease-probe.sh on the same warm machine (build-model/part01
# carried), for doc/reliability.md issue 20 row 4: SmolLM2 with a q8_0 KV cache in four streams
# dies on NVIDIA inside clEnqueueNDRangeKernel. Runs the failing case and its neighbours with
# scripts/subbuf-overlap-shim.c (a launch given two sub-buffers of one buffer overlapping in
# part) and scripts/segv-trace.c (the stack of the crash) preloaded, and kqcl's build logs
# printed, so that the next lease sees what the driver was handed; OVL_TRACE=1 tells every launch,
# and the last ones before a crash are printed.
# With --have-llama the caller has set B (llama.cpp's binaries), M (the model) and T (a text).
set -u
. scripts/gpu-lease-lib.sh
if [ "${1:-}" != --have-llama ]; then lease_second_call || exit 1; fi
ocl=$(ldconfig -p | awk '/libOpenCL\.so\.1 / { print $NF; exit }')
cc -O1 -shared -fPIC -o /tmp/ovl.so scripts/subbuf-overlap-shim.c -ldl || exit 1
pre="/tmp/ovl.so $PWD/build-gpu/segv-trace.so $ocl"
ppl() { local name=$1; shift
  OVL_TRACE=1 LD_PRELOAD="$pre" timeout 60 "$B/llama-perplexity" -m $M -f $T -c 512 --chunks 5 -fa on -ngl 99 -dev KQCL0 "$@" \
    > $OUT/ppl-$name.log 2>&1
  echo "ppl $name rc=$? $(grep -o 'Final estimate.*' $OUT/ppl-$name.log)"
  grep -E "^ovl:|warning|segv-trace" $OUT/ppl-$name.log | sort | uniq -c | head -12
  echo "launches: $(grep -c '^ovl-launch' $OUT/ppl-$name.log); the last three:"
  grep '^ovl-launch' $OUT/ppl-$name.log | tail -3 | cut -c1-700; }
ppl q8-streams -ctk q8_0 -ctv q8_0
KQCL_GGML_FUSION=0 ppl q8-streams-nofusion -ctk q8_0 -ctv q8_0
# the q8_0 streams' views start 0x19800 (512 cells of 204 bytes) apart, 2 KiB but not 4 KiB
# aligned; an f16 cache's 0x30000: with 1024 cells (two streams) they start 4 KiB aligned, and
# KQCL_TEST_VIEW_ALIGN=4096 copies the views off 4 KiB
ppl q8-streams-c1024 -ctk q8_0 -ctv q8_0 -c 1024 --chunks 2
KQCL_TEST_VIEW_ALIGN=4096 ppl q8-streams-align4k -ctk q8_0 -ctv q8_0
ppl q8-unified -ctk q8_0 -ctv q8_0 -kvu
ppl q8k-f16v -ctk q8_0 -ctv f16
ppl f16-streams
