#!/bin/bash
# gpu-lease-quick.sh first|stash|second -- a GPU lease that does not wait for llama.cpp to build
# there: build-llama/ carries a CPU-only llama.cpp (0c1e570, GGML_NATIVE=OFF: llama-bench,
# llama-perplexity, greedy-logits) made on the sandbox. Three calls, the model in two parts:
#   first   (carry build-gpu/tests, attn-probe*, host-cost-probe, lib-extra, build-llama,
#           build-peers): attn-probe beside the earlier build's, every suite on both kernel
#           paths and host-cost-probe, while
#           llama.cpp with CUDA builds in the background for the peer's figures (gpu-lease-lib.sh);
#   stash   (carry build-model/part00): the model's first part kept in /tmp;
#   second  (carry build-model/part01): the module's profile over 200 greedy graphs beside the
#           earlier module in build-gpu/ggml/before/, the q8_0-cache runs (gpu-lease-q8kv.sh),
#           llama-bench tg128 of this module and the earlier one in turn, and CUDA's where its
#           build has finished.
set -u
. build-peers/device/opencl-env.sh
. scripts/gpu-lease-lib.sh
case ${1:?first or second} in
first)
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  lease_start_llama_build 2>/dev/null
  export KQCL_TEST_DATA=$PWD/tests/data LD_LIBRARY_PATH=$PWD/build-gpu/lib-extra${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  build-gpu/attn-probe > $OUT/attn-probe.txt 2>&1; echo "attn-probe rc=$?"
  build-gpu/attn-probe-before > $OUT/attn-probe-before.txt 2>&1; echo "attn-probe-before rc=$?"
  paste -d' ' <(cut -d'|' -f2-5 $OUT/attn-probe.txt) <(cut -d'|' -f5 $OUT/attn-probe-before.txt) | grep -v '^ *$'
  # Every suite on both kernel paths, eight at a time, each under its own cap.
  suite() { local t=$1 p=$2
    ( [ $p = portable ] && export KQCL_PORTABLE=1
      KQCL_DEVICES=gpu KQCL_CACHE_DIR=/tmp/kc-$p-$t timeout 150 build-gpu/tests/$t > $OUT/$t-$p.txt 2>&1
      echo "$t $p rc=$? $(grep -E '^[0-9]+%' $OUT/$t-$p.txt | tail -1)" ) ; }
  export -f suite
  for t in build-gpu/tests/test_*; do for p in auto portable; do echo "$(basename $t) $p"; done; done |
    xargs -P 8 -L 1 bash -c 'suite $0 $1' | sort
  grep -h ":[EF]:" $OUT/test_*-*.txt | head -8
  build-gpu/host-cost-probe 2>&1 | tail -9
  ;;
stash)
  cp build-model/part00 /tmp/smol.part00 && echo "part00 kept"
  ;;
second)
  M=/tmp/smol.gguf
  lease_join_model $M || exit 1
  export GGML_BACKEND_PATH=$PWD/build-gpu/ggml/libggml-kqcl.so KQCL_CACHE_DIR=/tmp/kc-ggml KQCL_DEVICES=gpu
  export LD_LIBRARY_PATH=$PWD/build-llama${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  L=$PWD/build-llama BEFORE=$PWD/build-gpu/ggml/before/libggml-kqcl.so
  P="The capital of France is Paris. Here is a short history of the city:"
  G() { local name=$1 mod=$2
    GGML_BACKEND_PATH=$mod timeout 90 $L/greedy-logits $M KQCL0 200 "$P" fa > $OUT/greedy-$name.tsv 2> $OUT/greedy-$name.err
    echo "greedy $name rc=$?"; grep -h "^KQCL0: " $OUT/greedy-$name.err | sed 's/^KQCL0: //'; }
  KQCL_GGML_PROFILE=1 G prof $GGML_BACKEND_PATH
  KQCL_GGML_PROFILE=1 KQCL_CACHE_DIR=/tmp/kc-before G prof-before $BEFORE
  KQCL_GGML_PROFILE=ops G ops $GGML_BACKEND_PATH
  bash scripts/ggml-greedy.sh compare $OUT/greedy-prof-before.tsv $OUT/greedy-prof.tsv
  B=$L M=$M T=$PWD/doc/perf.md bash scripts/gpu-lease-q8kv.sh --have-llama 2>&1
  bench() { local name=$1 b=$2; shift 2
    timeout 60 $b/llama-bench -m $M -p 0 -n 128 -r 5 -fa 1 -ngl 99 "$@" > $OUT/bench-$name.md 2> $OUT/bench-$name.err
    echo "bench $name rc=$? $(grep -E 'tg128|pp512' $OUT/bench-$name.md | awk -F'|' '{ printf "%s%s", $(NF-2), $(NF-1) }')"; }
  bench kqcl-1 $L -dev KQCL0
  GGML_BACKEND_PATH=$BEFORE KQCL_CACHE_DIR=/tmp/kc-before bench before-1 $L -dev KQCL0
  bench kqcl-2 $L -dev KQCL0 -p 512
  cat /tmp/lbuild.done 2>/dev/null
  [ -e /tmp/lbuild.done ] && LD_LIBRARY_PATH=/tmp/llama-build/bin bench cuda-1 /tmp/llama-build/bin -dev CUDA0
  GGML_BACKEND_PATH=$BEFORE KQCL_CACHE_DIR=/tmp/kc-before bench before-2 $L -dev KQCL0
  [ -e /tmp/lbuild.done ] && LD_LIBRARY_PATH=/tmp/llama-build/bin bench cuda-2 /tmp/llama-build/bin -dev CUDA0 -p 512
  ;;
esac
