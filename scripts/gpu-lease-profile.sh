#!/bin/bash
# gpu-lease-profile.sh -- the call after gpu-lease-probe.sh on the same warm machine
# (build-model/part01 carried): where a SmolLM2 decode step's time goes on the GPU, and whether a
# change moved it. The module's own profile over 200 greedy graphs (KQCL_GGML_PROFILE=1: the
# host's enqueue time a graph and the device's end; =ops: each kind of step's host and device
# time, the queue timed) on both kernel paths, with build-gpu/ggml/before/ (an earlier commit's
# module) beside where carried, then llama-bench tg128 of CUDA, this module and the earlier one
# in turn, so that the machine's drift shows in the repeats.
set -u
. scripts/gpu-lease-lib.sh
lease_second_call || exit 1
[ -e build-gpu/segv-trace.so ] && export LD_PRELOAD=$PWD/build-gpu/segv-trace.so
P="The capital of France is Paris. Here is a short history of the city:"
BEFORE=$PWD/build-gpu/ggml/before/libggml-kqcl.so
G() { local name=$1 mod=$2
  GGML_BACKEND_PATH=$mod timeout 90 "$B/greedy-logits" $M KQCL0 200 "$P" fa > $OUT/greedy-$name.tsv 2> $OUT/greedy-$name.err
  echo "greedy $name rc=$?"; grep -h "^KQCL0: " $OUT/greedy-$name.err | sed 's/^KQCL0: //'; }
KQCL_GGML_PROFILE=1 G prof $MOD
[ -e $BEFORE ] && KQCL_GGML_PROFILE=1 KQCL_CACHE_DIR=/tmp/kc-before G prof-before $BEFORE
KQCL_GGML_PROFILE=ops G ops $MOD
KQCL_PORTABLE=1 KQCL_GGML_PROFILE=1 G prof-portable $MOD
KQCL_PORTABLE=1 KQCL_GGML_PROFILE=ops G ops-portable $MOD
[ -e $BEFORE ] && cmp -s $OUT/greedy-prof.tsv $OUT/greedy-prof-before.tsv && echo "greedy: the same tokens and logits as before"
bench() { local name=$1; shift
  timeout 100 "$B/llama-bench" -m $M -p 0 -n 128 -r 5 -fa 1 -ngl 99 "$@" > $OUT/bench-$name.md 2> $OUT/bench-$name.err
  echo "bench $name rc=$? $(grep -E 'tg128' $OUT/bench-$name.md | awk -F'|' '{ print $(NF-1) }')"; }
bench cuda-1 -dev CUDA0
bench kqcl-1 -dev KQCL0
[ -e $BEFORE ] && GGML_BACKEND_PATH=$BEFORE KQCL_CACHE_DIR=/tmp/kc-before bench before-1 -dev KQCL0
bench kqcl-2 -dev KQCL0
[ -e $BEFORE ] && GGML_BACKEND_PATH=$BEFORE KQCL_CACHE_DIR=/tmp/kc-before bench before-2 -dev KQCL0
KQCL_PORTABLE=1 bench kqcl-portable -dev KQCL0
bench cuda-2 -dev CUDA0
