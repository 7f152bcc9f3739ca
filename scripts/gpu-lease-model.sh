#!/bin/bash
# gpu-lease-model.sh -- the call after gpu-lease.sh on the same warm machine, build-model/part01
# carried: SmolLM2 joined and checked, test-backend-ops on both paths, perplexity, greedy tokens and
# llama-bench for kqcl (-nkvo, -fa 1), CUDA and the CPU in the same lease.
# GPU call 2: SmolLM2 through llama.cpp on KQCL0 (both paths), CUDA0 and the CPU.
set -u
. scripts/gpu-lease-lib.sh
lease_second_call || exit 1
$B/llama-quantize --allow-requantize $M /tmp/smol-f32.gguf F32 > /tmp/quant.log 2>&1; echo "quantize rc=$?"
for p in auto portable; do
  [ $p = portable ] && export KQCL_PORTABLE=1
  GGML_TEST_LOG=$OUT/ops-$p.log timeout 200 bash scripts/ggml-test-ops.sh $B/test-backend-ops $MOD MUL_MAT,GET_ROWS,SET_ROWS,ADD,SUB,MUL,DIV,SCALE,SILU,GELU,RELU,SWIGLU,GEGLU,RMS_NORM,RMS_NORM_MUL_ADD,ADD_RMS_NORM,SOFT_MAX,ROPE,ROPE_SET_ROWS,CPY,DUP,CONT,FLASH_ATTN_EXT > $OUT/ops-$p.txt 2>&1
  echo "ops $p rc=$?"; cat $OUT/ops-$p.txt | tail -30
  unset KQCL_PORTABLE
done
ppl() { local name=$1; shift; timeout 100 "$B/llama-perplexity" "$@" > $OUT/ppl-$name.log 2>&1; echo "ppl $name rc=$? $(grep -o 'Final estimate.*' $OUT/ppl-$name.log) $(grep -o 'offloaded.*layers' $OUT/ppl-$name.log)"; }
C="-f $T -c 512 --chunks 5 -fa off"
ppl exact -m /tmp/smol-f32.gguf $C -ngl 0 -nr -dev none
CUDA_VISIBLE_DEVICES= ppl cpu -m $M $C -ngl 0 -nr
CUDA_VISIBLE_DEVICES= ppl cpu-repack -m $M $C -ngl 0
ppl cuda -m $M $C -ngl 99 -dev CUDA0
ppl kqcl -m $M $C -ngl 99 -dev KQCL0 -nkvo
KQCL_PORTABLE=1 ppl kqcl-portable -m $M $C -ngl 99 -dev KQCL0 -nkvo
KQCL_PRECISION=q8 ppl kqcl-q8 -m $M $C -ngl 99 -dev KQCL0 -nkvo
ppl kqcl-fa -m $M -f $T -c 512 --chunks 5 -fa on -ngl 99 -dev KQCL0
ppl cuda-fa -m $M -f $T -c 512 --chunks 5 -fa on -ngl 99 -dev CUDA0
P="The capital of France is Paris. Here is a short history of the city:"
G() { local name=$1; shift; timeout 60 "$B/greedy-logits" "$@" "$P" > $OUT/greedy-$name.tsv 2> $OUT/greedy-$name.err; echo "greedy $name rc=$?"; }
G exact /tmp/smol-f32.gguf cpu 64
CUDA_VISIBLE_DEVICES= G cpu $M cpu 64
G cuda $M CUDA0 64
G kqcl $M KQCL0 64
KQCL_PORTABLE=1 G kqcl-portable $M KQCL0 64
KQCL_PRECISION=q8 G kqcl-q8 $M KQCL0 64
for x in cpu cuda kqcl kqcl-portable kqcl-q8; do bash scripts/ggml-greedy.sh compare $OUT/greedy-exact.tsv $OUT/greedy-$x.tsv; done
for x in cuda kqcl kqcl-q8; do bash scripts/ggml-greedy.sh compare $OUT/greedy-cpu.tsv $OUT/greedy-$x.tsv; done
bench() { local name=$1; shift; timeout 120 "$B/llama-bench" -m $M -p 512 -n 128 -r 3 -fa 0 "$@" > $OUT/bench-$name.md 2> $OUT/bench-$name.err; echo "bench $name rc=$?"; grep -E "pp512|tg128" $OUT/bench-$name.md; }
bench cuda -ngl 99 -dev CUDA0
bench kqcl -ngl 99 -dev KQCL0 -nkvo 1
KQCL_PORTABLE=1 bench kqcl-portable -ngl 99 -dev KQCL0 -nkvo 1
KQCL_PRECISION=q8 bench kqcl-q8 -ngl 99 -dev KQCL0 -nkvo 1
timeout 200 "$B/llama-bench" -m $M -p 512 -n 128 -r 3 -fa 1 -ngl 99 -dev KQCL0 > $OUT/bench-kqcl-fa.md 2>&1; grep -E "pp512|tg128" $OUT/bench-kqcl-fa.md
timeout 100 "$B/llama-bench" -m $M -p 512 -n 128 -r 3 -fa 1 -ngl 99 -dev CUDA0 > $OUT/bench-cuda-fa.md 2>&1; grep -E "pp512|tg128" $OUT/bench-cuda-fa.md
CUDA_VISIBLE_DEVICES= bench cpu -ngl 0 --repack 0
CUDA_VISIBLE_DEVICES= bench cpu-repack -ngl 0
bench cuda-again -ngl 99 -dev CUDA0
