#!/bin/bash
# gpu-lease-quick.sh first|stash|second|third -- one GPU lease in four calls fired back to back
# (the machine idles out 30 s after a call), from the repository root:
#   first   (carry build-gpu, build-peers): llama.cpp with CUDA starts building in the background
#           (gpu-lease-lib.sh; its llama-bench, greedy-logits and test-backend-ops serve kqcl's
#           module too, through GGML_BACKEND_PATH); meanwhile attn-probe, every suite on both
#           kernel paths (eight at a time, each under its own cap) and host-cost-probe;
#   stash   (carry build-model/part00): the model's first part kept in /tmp;
#   second  (carry build-model/part01): SmolLM2 joined; the module's profile over 200 greedy
#           graphs beside the earlier module in build-gpu/ggml/before/ (if there); llama-bench
#           tg128 and pp512 of this module, the earlier one and CUDA in turn;
#   third   (no carry): the greedy tokens and perplexity of kqcl on both paths against the
#           exact weights and CUDA; ggml's test-backend-ops on both paths; the q8_0-cache runs
#           (gpu-lease-q8kv.sh).
set -u
. build-peers/device/opencl-env.sh
. scripts/gpu-lease-lib.sh
B=/tmp/llama-build/bin
M=/tmp/smol.gguf
MOD=$PWD/build-gpu/ggml/libggml-kqcl.so
BEFORE=$PWD/build-gpu/ggml/before/libggml-kqcl.so
P="The capital of France is Paris. Here is a short history of the city:"
wait_llama() { local i; for i in $(seq 1 ${1:-200}); do [ -e /tmp/lbuild.done ] && break; sleep 1; done
  cat /tmp/lbuild.done 2>/dev/null || { echo "llama.cpp not built yet"; tail -3 /tmp/lbuild.log; return 1; }; }
case ${1:?first, stash, second or third} in
first)
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  lease_start_llama_build 2>/dev/null
  export KQCL_TEST_DATA=$PWD/tests/data LD_LIBRARY_PATH=$PWD/build-gpu/lib-extra${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  KQCL_DEVICES=gpu KQCL_CACHE_DIR=/tmp/kc-probe build-gpu/attn-probe > $OUT/attn-probe.txt 2>&1; echo "attn-probe rc=$?"
  cut -c1-160 $OUT/attn-probe.txt | tail -30
  suite() { local t=$1 p=$2
    ( [ $p = portable ] && export KQCL_PORTABLE=1
      cd build-gpu # test_cli and test_hostile run ./tools/kqcl
      KQCL_DEVICES=gpu KQCL_CACHE_DIR=/tmp/kc-$p-$t timeout 200 tests/$t > $OUT/$t-$p.txt 2>&1
      echo "$t $p rc=$? $(grep -E '^[0-9]+%' $OUT/$t-$p.txt | tail -1)" ) ; }
  export -f suite
  for t in build-gpu/tests/test_*; do for p in auto portable; do echo "$(basename $t) $p"; done; done |
    xargs -P 8 -L 1 bash -c 'suite $0 $1' | sort
  grep -h ":[EF]:" $OUT/test_*-*.txt | head -8
  KQCL_DEVICES=gpu build-gpu/host-cost-probe 2>&1 | tail -9
  cat /tmp/lbuild.done 2>/dev/null; tail -1 /tmp/lbuild.log
  ;;
stash)
  cp build-model/part00 /tmp/smol.part00 && echo "part00 kept"; cat /tmp/lbuild.done 2>/dev/null
  ;;
second)
  lease_join_model $M || exit 1
  wait_llama 240 || exit 1
  export GGML_BACKEND_PATH=$MOD KQCL_CACHE_DIR=/tmp/kc-ggml KQCL_DEVICES=gpu
  G() { local name=$1 mod=$2
    GGML_BACKEND_PATH=$mod timeout 90 $B/greedy-logits $M KQCL0 200 "$P" fa > $OUT/greedy-$name.tsv 2> $OUT/greedy-$name.err
    echo "greedy $name rc=$?"; grep -h "^KQCL0: " $OUT/greedy-$name.err | sed 's/^KQCL0: //'; }
  KQCL_GGML_PROFILE=1 G prof $MOD
  [ -f $BEFORE ] && KQCL_GGML_PROFILE=1 KQCL_CACHE_DIR=/tmp/kc-before G prof-before $BEFORE
  KQCL_GGML_PROFILE=ops G ops $MOD
  [ -f $BEFORE ] && KQCL_GGML_PROFILE=ops KQCL_CACHE_DIR=/tmp/kc-before G ops-before $BEFORE
  [ -f $BEFORE ] && bash scripts/ggml-greedy.sh compare $OUT/greedy-prof-before.tsv $OUT/greedy-prof.tsv
  bench() { local name=$1; shift
    timeout 90 $B/llama-bench -m $M -r 5 -fa 1 -ngl 99 "$@" > $OUT/bench-$name.md 2> $OUT/bench-$name.err
    echo "bench $name rc=$? $(grep -E 'tg128|pp512' $OUT/bench-$name.md | awk -F'|' '{ printf "%s%s  ", $(NF-2), $(NF-1) }')"; }
  bench cuda-1 -dev CUDA0 -p 512 -n 128
  bench kqcl-1 -dev KQCL0 -p 512 -n 128
  [ -f $BEFORE ] && GGML_BACKEND_PATH=$BEFORE KQCL_CACHE_DIR=/tmp/kc-before bench before-1 -dev KQCL0 -p 0 -n 128
  KQCL_PORTABLE=1 KQCL_CACHE_DIR=/tmp/kc-ggml-p bench portable-1 -dev KQCL0 -p 512 -n 128
  bench kqcl-2 -dev KQCL0 -p 0 -n 128
  [ -f $BEFORE ] && GGML_BACKEND_PATH=$BEFORE KQCL_CACHE_DIR=/tmp/kc-before bench before-2 -dev KQCL0 -p 0 -n 128
  KQCL_GGML_FUSION=0 bench nofusion -dev KQCL0 -p 0 -n 128
  bench cuda-2 -dev CUDA0 -p 512 -n 128
  ;;
third)
  wait_llama 10 || exit 1
  T=/tmp/llama-src/llama.cpp/README.md
  export GGML_BACKEND_PATH=$MOD KQCL_CACHE_DIR=/tmp/kc-ggml KQCL_DEVICES=gpu
  $B/llama-quantize --allow-requantize $M /tmp/smol-f32.gguf F32 > /tmp/quant.log 2>&1; echo "quantize rc=$?"
  Gx() { local name=$1 model=$2 dev=$3; timeout 60 $B/greedy-logits $model $dev 64 "$P" fa > $OUT/greedy-$name.tsv 2> $OUT/greedy-$name.err; echo "greedy $name rc=$?"; }
  CUDA_VISIBLE_DEVICES= Gx exact /tmp/smol-f32.gguf cpu
  Gx cuda $M CUDA0
  Gx kqcl $M KQCL0
  KQCL_PORTABLE=1 KQCL_CACHE_DIR=/tmp/kc-ggml-p Gx kqcl-portable $M KQCL0
  for x in cuda kqcl kqcl-portable; do bash scripts/ggml-greedy.sh compare $OUT/greedy-exact.tsv $OUT/greedy-$x.tsv; done
  ppl() { local name=$1; shift; timeout 60 $B/llama-perplexity "$@" > $OUT/ppl-$name.log 2>&1; echo "ppl $name rc=$? $(grep -o 'Final estimate.*' $OUT/ppl-$name.log)"; }
  C="-f $T -c 512 --chunks 5 -fa on"
  CUDA_VISIBLE_DEVICES= ppl exact -m /tmp/smol-f32.gguf $C -ngl 0
  ppl cuda -m $M $C -ngl 99 -dev CUDA0
  ppl kqcl -m $M $C -ngl 99 -dev KQCL0
  KQCL_PORTABLE=1 KQCL_CACHE_DIR=/tmp/kc-ggml-p ppl kqcl-portable -m $M $C -ngl 99 -dev KQCL0
  OPS=MUL_MAT,GET_ROWS,SET_ROWS,ADD,SUB,MUL,DIV,SCALE,SILU,GELU,RELU,SWIGLU,GEGLU,RMS_NORM,RMS_NORM_MUL_ADD,ADD_RMS_NORM,SOFT_MAX,ROPE,ROPE_SET_ROWS,RMS_NORM_MUL_ROPE,ADD_ADD,MUL_MAT_VEC_FUSION,MUL_MAT_HADAMARD,CPY,DUP,CONT
  for p in auto portable; do
    ( [ $p = portable ] && export KQCL_PORTABLE=1 KQCL_CACHE_DIR=/tmp/kc-ggml-p
      GGML_TEST_LOG=$OUT/ops-$p.log timeout 150 bash scripts/ggml-test-ops.sh $B/test-backend-ops $MOD $OPS > $OUT/ops-$p.txt 2>&1
      echo "ops $p rc=$? $(tail -1 $OUT/ops-$p.txt)"
      GGML_TEST_PARAMS='kv=(113|256|512),' GGML_TEST_LOG=$OUT/fa-$p.log timeout 100 bash scripts/ggml-test-ops.sh $B/test-backend-ops $MOD FLASH_ATTN_EXT > $OUT/fa-$p.txt 2>&1
      echo "fa $p rc=$? $(tail -1 $OUT/fa-$p.txt)" ) &
  done
  wait
  B=$B M=$M T=$T bash scripts/gpu-lease-q8kv.sh --have-llama 2>&1 | head -40
  ;;
esac
