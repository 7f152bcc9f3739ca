#!/bin/bash
# gpu-lease-speed.sh -- the call after gpu-lease-probe.sh on the same warm machine,
# build-model/part01 carried: SmolLM2 through llama.cpp with everything on KQCL0 (-fa 1) on both
# kernel paths, perplexity and greedy tokens against CUDA and the exact weights, and
# llama-bench for kqcl, CUDA and the CPU in the same lease; with build-gpu/ggml/before/ (an
# earlier commit's module) carried, that module's profile and llama-bench beside.
set -u
. scripts/gpu-lease-lib.sh
lease_second_call || exit 1
# a crash prints its stack (scripts/segv-trace.c), where the lease has it
[ -e build-gpu/segv-trace.so ] && export LD_PRELOAD=$PWD/build-gpu/segv-trace.so
$B/llama-quantize --allow-requantize $M /tmp/smol-f32.gguf F32 > /tmp/quant.log 2>&1; echo "quantize rc=$?"
ppl() { local name=$1; shift; timeout 100 "$B/llama-perplexity" "$@" > $OUT/ppl-$name.log 2>&1; echo "ppl $name rc=$? $(grep -c segv-trace $OUT/ppl-$name.log) $(grep -o 'Final estimate.*' $OUT/ppl-$name.log) $(grep -o 'offloaded.*layers' $OUT/ppl-$name.log)"; }
C="-f $T -c 512 --chunks 5 -fa on"
ppl kqcl-fa -m $M $C -ngl 99 -dev KQCL0
KQCL_PORTABLE=1 ppl kqcl-fa-portable -m $M $C -ngl 99 -dev KQCL0
KQCL_GGML_FUSION=0 ppl kqcl-fa-nofusion -m $M $C -ngl 99 -dev KQCL0
P="The capital of France is Paris. Here is a short history of the city:"
G() { local name=$1 model=$2 dev=$3; shift 3; timeout 60 "$B/greedy-logits" $model $dev 64 "$P" "$@" > $OUT/greedy-$name.tsv 2> $OUT/greedy-$name.err; echo "greedy $name rc=$?"; }
G exact /tmp/smol-f32.gguf cpu
G cuda $M CUDA0 fa
G kqcl $M KQCL0 fa
KQCL_PORTABLE=1 G kqcl-portable $M KQCL0 fa
KQCL_GGML_PROFILE=1 G kqcl-profile $M KQCL0 fa; grep -h "graphs," $OUT/greedy-kqcl-profile.err
KQCL_GGML_PROFILE=1 KQCL_GGML_FUSION=0 G kqcl-profile-nofusion $M KQCL0 fa; grep -h "graphs," $OUT/greedy-kqcl-profile-nofusion.err
[ -e $PWD/build-gpu/ggml/before/libggml-kqcl.so ] && GGML_BACKEND_PATH=$PWD/build-gpu/ggml/before/libggml-kqcl.so KQCL_CACHE_DIR=/tmp/kc-before KQCL_GGML_PROFILE=1 G kqcl-profile-before $M KQCL0 fa && grep -h "graphs," $OUT/greedy-kqcl-profile-before.err
for x in cuda kqcl kqcl-portable; do bash scripts/ggml-greedy.sh compare $OUT/greedy-exact.tsv $OUT/greedy-$x.tsv; done
bench() { local name=$1; shift; timeout 150 "$B/llama-bench" -m $M -p 512 -n 128 -r 3 "$@" > $OUT/bench-$name.md 2> $OUT/bench-$name.err; echo "bench $name rc=$?"; grep -E "pp512|tg128" $OUT/bench-$name.md; }
bench cuda-fa -fa 1 -ngl 99 -dev CUDA0
bench kqcl-fa -fa 1 -ngl 99 -dev KQCL0
# the module of an earlier commit beside this one, in the same lease, where carried
BEFORE=$PWD/build-gpu/ggml/before/libggml-kqcl.so
[ -e $BEFORE ] && GGML_BACKEND_PATH=$BEFORE KQCL_CACHE_DIR=/tmp/kc-before bench kqcl-before-fa -fa 1 -ngl 99 -dev KQCL0
KQCL_PORTABLE=1 bench kqcl-fa-portable -fa 1 -ngl 99 -dev KQCL0
KQCL_GGML_FUSION=0 bench kqcl-fa-nofusion -fa 1 -ngl 99 -dev KQCL0
bench cuda -fa 0 -ngl 99 -dev CUDA0
CUDA_VISIBLE_DEVICES= bench cpu -ngl 0 -fa 1
bench cuda-fa-again -fa 1 -ngl 99 -dev CUDA0
